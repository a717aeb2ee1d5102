//! Logging setup. Every line passes through a redacting writer, so a secret that reaches a log
//! line through any crate (the bot token, or an API key inside a logged gateway payload) is
//! replaced before it is written. Log sources that write payloads as raw bytes, where the writer
//! cannot recognise a secret, are capped below the level that writes them, whatever `RUST_LOG`
//! sets.

use std::io::{self, Write};
use std::sync::Arc;

use tracing::{Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
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

/// Log targets whose events are capped at a level, each covering its submodules, because more
/// detailed events write payloads as bytes. The versions named are those in Cargo.lock.
const LEVEL_CAPS: &[(&str, Level)] = &[
    // tungstenite 0.21 logs each frame it sends or receives at TRACE with the payload as decimal
    // bytes, so the identify frame would put the bot token in the log.
    ("tungstenite", Level::DEBUG),
    ("tokio_tungstenite", Level::DEBUG),
    // serenity 0.12.5 logs a gateway payload that it cannot decompress or parse at DEBUG as
    // zlib-compressed bytes. An interaction in such a payload can carry the API key given to
    // `/sms link`.
    ("serenity::gateway::ws", Level::INFO),
];

/// Log targets whose spans are dropped while their events still pass. serenity 0.12.5 records
/// the whole REST request in its `request`, `perform` and `build` spans at INFO, with the body
/// as decimal bytes, and every event inside such a span would repeat it.
const DROPPED_SPAN_TARGETS: &[&str] = &["serenity::http"];

/// Returns whether `target` is `module` or one of its submodules.
fn target_within(target: &str, module: &str) -> bool {
    target
        .strip_prefix(module)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with("::"))
}

/// Returns whether [`LEVEL_CAPS`] and [`DROPPED_SPAN_TARGETS`] let a span or event pass.
pub fn passes_payload_caps(target: &str, level: &Level, is_span: bool) -> bool {
    if is_span
        && DROPPED_SPAN_TARGETS
            .iter()
            .any(|module| target_within(target, module))
    {
        return false;
    }
    LEVEL_CAPS
        .iter()
        .filter(|(module, _)| target_within(target, module))
        .all(|(_, max_level)| level <= max_level)
}

/// A global filter applying [`passes_payload_caps`]. It sits beside the `RUST_LOG` filter, and a
/// span or event is logged only when both let it pass, so the caps hold for any directive,
/// including span directives such as `[request]=trace`. A cap lowers a level but never raises it.
struct PayloadCaps;

impl<S: Subscriber> Layer<S> for PayloadCaps {
    fn enabled(&self, metadata: &Metadata<'_>, _context: Context<'_, S>) -> bool {
        passes_payload_caps(metadata.target(), metadata.level(), metadata.is_span())
    }
}

/// Parses `RUST_LOG`-style `directives`, or returns the default filter `info` with the parse
/// error when they are invalid.
pub fn env_filter(directives: Option<&str>) -> (EnvFilter, Option<String>) {
    match directives {
        None => (EnvFilter::new("info"), None),
        Some(directives) => match EnvFilter::try_new(directives) {
            Ok(filter) => (filter, None),
            Err(error) => (EnvFilter::new("info"), Some(error.to_string())),
        },
    }
}

/// Builds the subscriber: `filter` and the payload caps, then output to `writer` without colours.
fn subscriber<W>(filter: EnvFilter, writer: W) -> impl Subscriber + Send + Sync
where
    W: for<'a> MakeWriter<'a> + Send + Sync + 'static,
{
    tracing_subscriber::registry()
        .with(filter)
        .with(PayloadCaps)
        .with(
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(false),
        )
}

/// Installs the global subscriber: `RUST_LOG` filters (default `info`), capped for the targets
/// in [`LEVEL_CAPS`] and [`DROPPED_SPAN_TARGETS`], with output to stdout and `secrets` redacted.
/// Secrets shorter than 8 characters are not searched for, because replacing such short
/// strings would garble ordinary words.
pub fn init(secrets: Vec<String>) {
    let secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 8).collect();
    let directives = std::env::var("RUST_LOG").ok();
    let (filter, parse_error) = env_filter(directives.as_deref());
    let writer = RedactingMakeWriter {
        secrets: Arc::new(secrets),
    };
    // A second init (as in tests) keeps the first subscriber.
    let _ = subscriber(filter, writer).try_init();
    if let Some(error) = parse_error {
        tracing::warn!(%error, "RUST_LOG is invalid; logging at info instead");
    }
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

    /// Collects everything the subscriber writes, for assertions on the log output.
    #[derive(Clone, Default)]
    struct CapturedOutput(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for CapturedOutput {
        fn write(&mut self, buffer: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buffer);
            Ok(buffer.len())
        }

        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for CapturedOutput {
        type Writer = CapturedOutput;

        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    /// Emits one event per target and level through the subscriber that `init` installs, built
    /// from `directives`, and returns the output.
    fn log_with(directives: &str) -> String {
        let (filter, error) = env_filter(Some(directives));
        assert_eq!(error, None, "{directives}");
        let output = CapturedOutput::default();
        tracing::subscriber::with_default(subscriber(filter, output.clone()), || {
            tracing::trace!(target: "tungstenite::protocol", "tungstenite-trace");
            tracing::debug!(target: "tungstenite::protocol", "tungstenite-debug");
            tracing::trace!(target: "tokio_tungstenite", "tokio-ws-trace");
            tracing::debug!(target: "serenity::gateway::ws", "serenity-ws-debug");
            tracing::info!(target: "serenity::gateway::ws", "serenity-ws-info");
            tracing::trace!(target: "serenity::gateway::shard", "serenity-shard-trace");
            tracing::trace!(target: "trackly_bot::alerts", "bot-trace");
            let span = tracing::info_span!(target: "serenity::http::client", "request", req = "body-bytes");
            span.in_scope(|| tracing::warn!(target: "serenity::http::ratelimiting", "http-warn"));
        });
        let bytes = output.0.lock().unwrap().clone();
        String::from_utf8(bytes).unwrap()
    }

    #[test]
    fn caps_payload_targets_at_trace() {
        for directives in [
            "trace",
            "tungstenite=trace,tokio_tungstenite=trace,serenity=trace,trackly_bot=trace",
            "tungstenite::protocol=trace,serenity::gateway::ws=trace,trace",
            "[request]=trace,trace",
        ] {
            let output = log_with(directives);
            assert!(
                !output.contains("tungstenite-trace"),
                "{directives}: {output}"
            );
            assert!(
                output.contains("tungstenite-debug"),
                "{directives}: {output}"
            );
            assert!(!output.contains("tokio-ws-trace"), "{directives}: {output}");
            assert!(
                !output.contains("serenity-ws-debug"),
                "{directives}: {output}"
            );
            assert!(
                output.contains("serenity-ws-info"),
                "{directives}: {output}"
            );
            assert!(
                output.contains("serenity-shard-trace"),
                "{directives}: {output}"
            );
            assert!(output.contains("bot-trace"), "{directives}: {output}");
            assert!(output.contains("http-warn"), "{directives}: {output}");
            assert!(!output.contains("body-bytes"), "{directives}: {output}");
        }
    }

    #[test]
    fn caps_never_raise_a_level() {
        let output = log_with("warn");
        assert!(!output.contains("tungstenite-debug"), "{output}");
        assert!(!output.contains("serenity-ws-info"), "{output}");
        assert!(output.contains("http-warn"), "{output}");
    }

    #[test]
    fn payload_caps_respect_module_boundaries() {
        assert!(!passes_payload_caps("tungstenite", &Level::TRACE, false));
        assert!(passes_payload_caps("tungstenite", &Level::DEBUG, false));
        assert!(!passes_payload_caps(
            "tungstenite::protocol::frame",
            &Level::TRACE,
            false
        ));
        assert!(passes_payload_caps(
            "tungstenite_extra",
            &Level::TRACE,
            false
        ));
        assert!(!passes_payload_caps(
            "serenity::http::client",
            &Level::INFO,
            true
        ));
        assert!(passes_payload_caps(
            "serenity::http::client",
            &Level::TRACE,
            false
        ));
        assert!(passes_payload_caps(
            "serenity::gateway::shard",
            &Level::TRACE,
            true
        ));
    }

    #[test]
    fn env_filter_falls_back_to_info() {
        let (filter, error) = env_filter(Some("tungstenite=loud"));
        assert!(error.is_some());
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
        let (filter, error) = env_filter(None);
        assert_eq!(error, None);
        assert_eq!(
            filter.max_level_hint(),
            Some(tracing::level_filters::LevelFilter::INFO)
        );
    }

    #[test]
    fn redacts_every_occurrence_and_typos() {
        let text = "\"value\":\"trk_0123456789abcdef0123456789abcdef\",x=trk_0123456789abcdef0123";
        let redacted = redact(text, &[]);
        assert_eq!(redacted, "\"value\":\"trk_<redacted>\",x=trk_<redacted>");
    }
}
