//! Logging setup. Every line passes through a redacting writer, so a secret that reaches a log
//! line through any crate (the bot token, or an API key inside a logged gateway payload) is
//! replaced before it is written.

use std::io::{self, Write};
use std::sync::Arc;

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

const REDACTED: &str = "<redacted>";
const API_KEY_PREFIX: &str = "trk_";
/// Letters or digits after `trk_` from which a word counts as a key. A real key has 32; shorter
/// runs are caught too, because a mistyped key is still mostly a real one.
const MIN_KEY_BODY: usize = 8;

/// Replaces each of `secrets` and every API-key-like word in `text`.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut output = text.to_owned();
    for secret in secrets {
        if !secret.is_empty() && output.contains(secret.as_str()) {
            output = output.replace(secret.as_str(), REDACTED);
        }
    }
    if !output.contains(API_KEY_PREFIX) {
        return output;
    }

    let mut result = String::with_capacity(output.len());
    let mut rest = output.as_str();
    while let Some(position) = rest.find(API_KEY_PREFIX) {
        let after = &rest[position + API_KEY_PREFIX.len()..];
        let body_len = after
            .bytes()
            .take_while(|b| b.is_ascii_alphanumeric())
            .count();
        result.push_str(&rest[..position + API_KEY_PREFIX.len()]);
        if body_len >= MIN_KEY_BODY {
            result.push_str(REDACTED);
            rest = &after[body_len..];
        } else {
            rest = after;
        }
    }
    result.push_str(rest);
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
    fn redacts_every_occurrence_and_typos() {
        let text = "\"value\":\"trk_0123456789abcdef0123456789abcdef\",x=trk_0123456789abcdef0123";
        let redacted = redact(text, &[]);
        assert_eq!(redacted, "\"value\":\"trk_<redacted>\",x=trk_<redacted>");
    }
}
