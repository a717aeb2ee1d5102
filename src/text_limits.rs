//! Discord's length limits on message and embed text, and clipping to them.
//!
//! Discord rejects a whole message with 400 (code 50035) when one part is too long. Limits are
//! counted in characters (Unicode scalar values), as Discord counts them; the figures are from
//! Discord's message resource documentation.

pub const MAX_CONTENT: usize = 2000;
pub const MAX_TITLE: usize = 256;
pub const MAX_DESCRIPTION: usize = 4096;
pub const MAX_FIELD_NAME: usize = 256;
pub const MAX_FIELD_VALUE: usize = 1024;
pub const MAX_FIELDS: usize = 25;
pub const MAX_FOOTER: usize = 2048;
/// The limit on all titles, descriptions, field names and values, footers and author names
/// of one message's embeds together.
pub const MAX_EMBED_TOTAL: usize = 6000;
pub const MAX_EMBEDS: usize = 10;

/// Clips `text` to at most `max` characters on a character boundary, ending with "…" when
/// something was cut.
pub fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    if max == 0 {
        return String::new();
    }
    let mut clipped: String = text.chars().take(max - 1).collect();
    clipped.push('…');
    clipped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_short_text() {
        assert_eq!(clip("abc", 3), "abc");
        assert_eq!(clip("", 0), "");
    }

    #[test]
    fn clip_cuts_on_character_boundary() {
        assert_eq!(clip("ééééé", 3), "éé…");
        assert_eq!(clip("abcdef", 1), "…");
        assert_eq!(clip("abcdef", 0), "");
        assert_eq!(
            clip(&"x".repeat(5000), MAX_CONTENT).chars().count(),
            MAX_CONTENT
        );
    }
}
