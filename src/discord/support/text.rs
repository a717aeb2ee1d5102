//! Discord's length limits and markdown escaping for text that users or Trackly provide.
//!
//! Discord rejects a whole message with 400 (code 50035) when one part is too long, so every
//! subject, account name and reason is clipped before it is sent. Limits are counted in
//! characters (Unicode scalar values), as Discord counts them.

use poise::serenity_prelude as serenity;

pub use crate::text_limits::{
    clip, MAX_CONTENT, MAX_DESCRIPTION, MAX_EMBED_TOTAL, MAX_FIELDS, MAX_FIELD_NAME,
    MAX_FIELD_VALUE, MAX_TITLE,
};

const ELLIPSIS: char = '…';

/// Characters that start Discord markdown: emphasis, code, spoilers, quotes, headings, lists,
/// masked links and mentions. A backslash before each makes Discord show it as typed.
const MARKDOWN_CHARS: &[char] = &[
    '\\', '*', '_', '~', '`', '|', '>', '<', '#', '-', '[', ']', '(', ')', ':', '@',
];

/// Escapes Discord markdown in `text`, so that a subject such as `[pay here](https://…)` shows
/// as typed instead of as a masked link.
pub fn escape_markdown(text: &str) -> String {
    escape_clip(text, usize::MAX)
}

/// Escapes Discord markdown and clips the result to `max` characters without splitting an
/// escape from the character it protects.
pub fn escape_clip(text: &str, max: usize) -> String {
    let mut escaped = String::new();
    let mut length = 0;
    let mut chars = text.chars().peekable();
    while let Some(character) = chars.next() {
        let width = if MARKDOWN_CHARS.contains(&character) {
            2
        } else {
            1
        };
        // Keep one character free for the ellipsis unless this is the last character.
        let reserve = usize::from(chars.peek().is_some());
        if length + width + reserve > max {
            if max > 0 {
                escaped.push(ELLIPSIS);
            }
            return escaped;
        }
        if width == 2 {
            escaped.push('\\');
        }
        escaped.push(character);
        length += width;
    }
    escaped
}

/// Formats `text` as inline code, clipped to `max` characters inside the backticks. Backticks
/// in the text are dropped because inline code cannot contain them.
pub fn code_span(text: &str, max: usize) -> String {
    let plain: String = text.chars().filter(|character| *character != '`').collect();
    format!("`{}`", clip(&plain, max))
}

/// An embed whose text is clipped to Discord's limits when it is built.
#[derive(Debug, Clone, Default)]
pub struct LimitedEmbed {
    title: String,
    description: Option<String>,
    fields: Vec<(String, String, bool)>,
    colour: u32,
}

impl LimitedEmbed {
    pub fn new(title: impl Into<String>, colour: u32) -> LimitedEmbed {
        LimitedEmbed {
            title: title.into(),
            colour,
            ..LimitedEmbed::default()
        }
    }

    pub fn title(mut self, title: impl Into<String>) -> LimitedEmbed {
        self.title = title.into();
        self
    }

    pub fn description(mut self, description: impl Into<String>) -> LimitedEmbed {
        self.description = Some(description.into());
        self
    }

    pub fn field(
        mut self,
        name: impl Into<String>,
        value: impl Into<String>,
        inline: bool,
    ) -> LimitedEmbed {
        self.fields.push((name.into(), value.into(), inline));
        self
    }

    /// Clips every part to its limit, keeps the first 25 fields, and then drops fields from
    /// the end while the total is above 6000 characters.
    pub fn build(self) -> serenity::CreateEmbed {
        let title = clip(&self.title, MAX_TITLE);
        let description = self
            .description
            .map(|description| clip(&description, MAX_DESCRIPTION));
        let mut fields: Vec<(String, String, bool)> = self
            .fields
            .into_iter()
            .take(MAX_FIELDS)
            .map(|(name, value, inline)| {
                (
                    clip(&name, MAX_FIELD_NAME),
                    clip(&value, MAX_FIELD_VALUE),
                    inline,
                )
            })
            .collect();
        let count = |text: &str| text.chars().count();
        let total = |fields: &[(String, String, bool)]| {
            count(&title)
                + description.as_deref().map_or(0, count)
                + fields
                    .iter()
                    .map(|(name, value, _)| count(name) + count(value))
                    .sum::<usize>()
        };
        while total(&fields) > MAX_EMBED_TOTAL && fields.pop().is_some() {}

        let mut embed = serenity::CreateEmbed::new()
            .title(title)
            .colour(self.colour);
        if let Some(description) = description {
            embed = embed.description(description);
        }
        embed.fields(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_counts_characters() {
        assert_eq!(clip("short", 10), "short");
        assert_eq!(clip("abcdef", 4), "abc…");
        let clipped = clip(&"é".repeat(30), 10);
        assert_eq!(clipped.chars().count(), 10);
        assert!(clipped.ends_with('…'));
        assert_eq!(clip("abc", 0), "");
    }

    #[test]
    fn escape_neutralises_masked_links_and_mentions() {
        let escaped = escape_markdown("[pay](https://evil.example) **now** <@1> @everyone");
        assert_eq!(
            escaped,
            "\\[pay\\]\\(https\\://evil.example\\) \\*\\*now\\*\\* \\<\\@1\\> \\@everyone"
        );
        assert_eq!(escape_markdown("Acme Promotions"), "Acme Promotions");
    }

    #[test]
    fn escape_clip_keeps_escapes_whole() {
        let text = "a[b]c".repeat(100);
        for max in 1..40 {
            let clipped = escape_clip(&text, max);
            assert!(clipped.chars().count() <= max, "{max}: {clipped}");
            let body = clipped.trim_end_matches('…');
            let trailing = body.chars().rev().take_while(|c| *c == '\\').count();
            assert_eq!(trailing % 2, 0, "{max}: a dangling backslash in {clipped}");
        }
        // A text that fits exactly needs no ellipsis.
        assert_eq!(escape_clip("ab[", 4), "ab\\[");
    }

    #[test]
    fn code_span_drops_backticks() {
        assert_eq!(code_span("acc_`x`", 10), "`acc_x`");
        assert_eq!(code_span(&"n".repeat(20), 5), "`nnnn…`");
    }

    #[test]
    fn limited_embed_respects_every_limit() {
        let mut embed = LimitedEmbed::new("t".repeat(300), 1).description("d".repeat(5000));
        for index in 0..30 {
            embed = embed.field(
                format!("{index}{}", "n".repeat(300)),
                "v".repeat(2000),
                true,
            );
        }
        let json = serde_json::to_value(embed.build()).unwrap();
        let length = |value: &serde_json::Value| value.as_str().unwrap().chars().count();
        assert_eq!(length(&json["title"]), MAX_TITLE);
        assert_eq!(length(&json["description"]), MAX_DESCRIPTION);
        let fields = json["fields"].as_array().unwrap();
        assert!(fields.len() <= MAX_FIELDS);
        let mut total = length(&json["title"]) + length(&json["description"]);
        for field in fields {
            assert!(length(&field["name"]) <= MAX_FIELD_NAME);
            assert!(length(&field["value"]) <= MAX_FIELD_VALUE);
            total += length(&field["name"]) + length(&field["value"]);
        }
        assert!(total <= MAX_EMBED_TOTAL, "{total}");
    }
}
