//! Logging setup. Every line passes through a redacting writer, so a secret that reaches a log
//! line through any crate (the bot token, or an API key inside a logged gateway payload) is
//! replaced before it is written.

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

const REDACTED: &str = "<redacted>";
/// Letters or digits after a `trk_`-like prefix from which a word counts as a key. A real key
/// has 32; shorter runs are caught too, because a mistyped key is still mostly a real one.
const MIN_KEY_BODY: usize = 8;
/// A run of this many letters or digits is redacted even without a prefix: it may be a key
/// body pasted alone. Snowflakes (at most 20 digits) stay readable.
const MIN_BARE_RUN: usize = 28;

/// Returns the secrets set in this process's environment: the bot token and the encryption key.
pub fn env_secrets() -> Vec<String> {
    [crate::config::TOKEN_VAR, crate::config::ENCRYPTION_KEY_VAR]
        .iter()
        .filter_map(|name| std::env::var(name).ok())
        .map(|value| value.trim().to_owned())
        .filter(|value| value.len() >= 8)
        .collect()
}

/// Replaces each of `secrets` and every API-key-like word in `text`: `trk` in any case followed
/// by `_`, `-` or a space and 8 or more letters or digits, and any bare run of 28 or more.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut output = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() && output.contains(secret.as_str()) {
            output = output.replace(secret.as_str(), REDACTED);
        }
    }

    let bytes = output.as_bytes();
    let mut result = String::with_capacity(output.len());
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        let at_word_start = index == 0 || !bytes[index - 1].is_ascii_alphanumeric();
        if !at_word_start || !bytes[index].is_ascii_alphanumeric() {
            index += 1;
            continue;
        }
        let prefixed = bytes.len() >= index + 4
            && bytes[index..index + 3].eq_ignore_ascii_case(b"trk")
            && matches!(bytes[index + 3], b'_' | b'-' | b' ');
        let body_start = if prefixed { index + 4 } else { index };
        let body_len = bytes[body_start..]
            .iter()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        let minimum = if prefixed { MIN_KEY_BODY } else { MIN_BARE_RUN };
        if body_len >= minimum {
            // Keeps the prefix so that a reader still sees that a key was there.
            result.push_str(&output[copied..body_start]);
            result.push_str(REDACTED);
            copied = body_start + body_len;
            index = copied;
        } else {
            index = body_start + body_len.max(1);
        }
    }
    result.push_str(&output[copied..]);
    result
}

#[derive(Clone)]
pub struct RedactingMakeWriter {
    secrets: Arc<Vec<String>>,
}

pub struct RedactingWriter {
    secrets: Arc<Vec<String>>,
}

impl Write for RedactingWriter {
    fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
        // The fmt layer writes one whole event per call, so a secret is never split across calls.
        let text = String::from_utf8_lossy(buffer);
        io::stdout()
            .lock()
            .write_all(redact(&text, &self.secrets).as_bytes())?;
        Ok(buffer.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stdout().flush()
    }
}

impl<'a> MakeWriter<'a> for RedactingMakeWriter {
    type Writer = RedactingWriter;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter {
            secrets: Arc::clone(&self.secrets),
        }
    }
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), output to stdout with
/// `secrets` redacted. Secrets shorter than 8 characters are not searched for, because
/// replacing such short strings would garble ordinary words.
pub fn init(secrets: Vec<String>) {
    let secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let writer = RedactingMakeWriter {
        secrets: Arc::new(secrets),
    };
    // A second init (as in tests) keeps the first subscriber.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(false)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_token_and_keys() {
        let secrets = vec!["MTIzNDU2Nzg5.token.value".to_owned()];
        let line = "auth Bot MTIzNDU2Nzg5.token.value key=trk_AbCdAbCdAbCdAbCd0123012301230123 end";
        let redacted = redact(line, &secrets);
        assert_eq!(redacted, "auth Bot <redacted> key=trk_<redacted> end");
    }

    #[test]
    fn keeps_masked_and_short_words() {
        let text = "masked trk_…0123, prefix trk_ alone, short trk_abc";
        assert_eq!(redact(text, &[]), text);
    }

    #[test]
    fn redacts_prefix_variants_and_bare_bodies() {
        let body = "0123456789abcdef0123456789abcdef";
        for text in [
            format!("TRK_{body}"),
            format!("trk-{body}"),
            format!("Trk {body}"),
            format!("key {body} end"),
        ] {
            let redacted = redact(&text, &[]);
            assert!(!redacted.contains(body), "{text} became {redacted}");
            assert!(redacted.contains(REDACTED), "{redacted}");
        }
        let snowflake = "user_id=1150000000000000100 session=abc";
        assert_eq!(redact(snowflake, &[]), snowflake);
    }

    #[test]
    fn redacts_every_occurrence_and_typos() {
        let text = "\"value\":\"trk_0123456789abcdef0123456789abcdef\",x=trk_0123456789abcdef0123";
        let redacted = redact(text, &[]);
        assert_eq!(redacted, "\"value\":\"trk_<redacted>\",x=trk_<redacted>");
    }
}
