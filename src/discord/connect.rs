//! Reaching Discord before the gateway starts: the token is checked and the gateway address is
//! fetched through the configured REST base, with retries while Discord cannot be reached.
//!
//! serenity fetches the gateway address once when the client is built and falls back to
//! Discord's public gateway when that request fails, even with a REST base of its own; the
//! address found here replaces whatever serenity found.

use std::time::Duration;

use poise::serenity_prelude as serenity;
use rand::Rng;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

/// Wait before the first retry; it doubles up to [`LONGEST_RETRY`].
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(60);
/// Longest `Retry-After` honoured as given; Discord's global bans are shorter.
const LONGEST_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// A setup problem that keeps the bot from using Discord at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error(
        "Discord rejected DISCORD_TOKEN: reset the token in the developer portal (Bot tab) \
         and set DISCORD_TOKEN to the new value"
    )]
    TokenRejected,
    #[error(
        "Discord refused the gateway intents the bot asks for: enable them for the \
         application in the developer portal (Bot tab, Privileged Gateway Intents)"
    )]
    IntentsRefused,
    #[error(
        "{base} answered HTTP {status} to GET {path}; check discord.rest_base_url (it must \
         point at Discord or a proxy that forwards /api/v10) and DISCORD_TOKEN"
    )]
    Refused {
        base: String,
        path: &'static str,
        status: u16,
    },
    #[error("cannot build the HTTP client for Discord: {0}")]
    Client(String),
}

/// The result of one request or attempt to reach Discord.
#[derive(Debug, PartialEq)]
enum Attempt {
    Ready(String),
    Fatal(ConnectError),
    RateLimited(Duration),
    Unreachable(String),
}

/// Checks the token and reads the gateway address through the REST base, with requests of its
/// own so that every status and `Retry-After` is seen.
pub struct DiscordProbe {
    client: reqwest::Client,
    /// Origin that `/api/v10/...` is appended to, such as `https://discord.com`.
    base: String,
    authorization: String,
}

impl DiscordProbe {
    /// `rest_base_url` as configured (empty for Discord itself) and the bot token.
    pub fn new(
        rest_base_url: &str,
        token: &str,
        request_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ConnectError::Client(error.to_string()))?;
        let base = if rest_base_url.is_empty() {
            "https://discord.com".to_owned()
        } else {
            rest_base_url.trim_end_matches('/').to_owned()
        };
        Ok(Self {
            client,
            base,
            authorization: format!("Bot {token}"),
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &'static str) -> Result<reqwest::Response, Attempt> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, &self.authorization)
            .send()
            .await
            .map_err(|error| Attempt::Unreachable(error.without_url().to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let header_wait = retry_after_header(response.headers());
        let body: Option<serde_json::Value> = response.json().await.ok();
        Err(classify(
            &self.base,
            path,
            status,
            header_wait,
            body.as_ref(),
        ))
    }

    async fn attempt(&self) -> Attempt {
        // GET /users/@me needs a valid token; GET /gateway does not.
        if let Err(attempt) = self.get("/api/v10/users/@me").await {
            return attempt;
        }
        match self.get("/api/v10/gateway").await {
            Ok(response) => match response.json::<serde_json::Value>().await {
                Ok(body) => match body["url"].as_str() {
                    Some(url) => Attempt::Ready(url.to_owned()),
                    None => Attempt::Unreachable("GET /gateway answered without a url".to_owned()),
                },
                Err(error) => Attempt::Unreachable(format!(
                    "GET /gateway answered with a body that is not JSON: {}",
                    error.without_url()
                )),
            },
            Err(attempt) => attempt,
        }
    }
}

/// Sorts a failed answer: a bad token or any other 4xx is fatal, 429 waits for its
/// `Retry-After` (the header, else the body's `retry_after`), and 5xx is retried.
fn classify(
    base: &str,
    path: &'static str,
    status: StatusCode,
    header_wait: Option<Duration>,
    body: Option<&serde_json::Value>,
) -> Attempt {
    match status.as_u16() {
        401 => Attempt::Fatal(ConnectError::TokenRejected),
        429 => {
            let body_wait = body
                .and_then(|body| body["retry_after"].as_f64())
                .filter(|seconds| seconds.is_finite() && *seconds >= 0.0)
                .map(Duration::from_secs_f64);
            Attempt::RateLimited(
                header_wait
                    .or(body_wait)
                    .unwrap_or(FIRST_RETRY)
                    .min(LONGEST_RETRY_AFTER),
            )
        }
        code @ 400..=499 => Attempt::Fatal(ConnectError::Refused {
            base: base.to_owned(),
            path,
            status: code,
        }),
        code => Attempt::Unreachable(format!("{path} answered HTTP {code}")),
    }
}

fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

/// Checks the token and returns the gateway address, retrying with backoff while Discord
/// cannot be reached, and after `Retry-After` when it rate limits. Returns `None` when
/// shutdown is requested first.
pub async fn reach_discord(
    probe: &DiscordProbe,
    shutdown: &CancellationToken,
) -> Result<Option<String>, ConnectError> {
    let mut failures = 0u32;
    loop {
        let result = tokio::select! {
            result = probe.attempt() => result,
            () = shutdown.cancelled() => return Ok(None),
        };
        let wait = match result {
            Attempt::Ready(url) => {
                if failures > 0 {
                    tracing::info!(
                        rest_base = probe.base(),
                        failures,
                        "Discord can be reached again"
                    );
                }
                return Ok(Some(url));
            }
            Attempt::Fatal(error) => return Err(error),
            Attempt::RateLimited(retry_after) => {
                failures += 1;
                let wait = retry_after + jitter(retry_after.min(FIRST_RETRY));
                tracing::warn!(
                    rest_base = probe.base(),
                    attempt = failures,
                    retry_in_ms = wait.as_millis() as u64,
                    "Discord rate limited the start; retrying after its Retry-After"
                );
                wait
            }
            Attempt::Unreachable(error) => {
                failures += 1;
                let wait = retry_delay(failures, rand::thread_rng().gen_range(0.0..0.2));
                tracing::error!(
                    rest_base = probe.base(),
                    attempt = failures,
                    retry_in_ms = wait.as_millis() as u64,
                    %error,
                    "cannot reach Discord; check discord.rest_base_url and the network; retrying"
                );
                wait
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = shutdown.cancelled() => return Ok(None),
        }
    }
}

/// Returns up to a fifth of `span`, at random.
fn jitter(span: Duration) -> Duration {
    span.mul_f64(rand::thread_rng().gen_range(0.0..0.2))
}

/// Returns the wait after `failures` failed attempts (at least 1), with `jitter` (0 to 1)
/// added as a share of the wait.
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    let base = FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(failures.saturating_sub(1).min(16)))
        .min(LONGEST_RETRY);
    base + base.mul_f64(jitter.clamp(0.0, 1.0))
}

/// Returns the setup problem behind a gateway error that no retry can fix.
pub fn fatal_gateway_error(error: &serenity::Error) -> Option<ConnectError> {
    match error {
        serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication) => {
            Some(ConnectError::TokenRejected)
        }
        serenity::Error::Gateway(
            serenity::GatewayError::DisallowedGatewayIntents
            | serenity::GatewayError::InvalidGatewayIntents,
        ) => Some(ConnectError::IntentsRefused),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_up_to_a_minute() {
        assert_eq!(retry_delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(retry_delay(2, 0.0), Duration::from_secs(2));
        assert_eq!(retry_delay(4, 0.0), Duration::from_secs(8));
        assert_eq!(retry_delay(7, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(u32::MAX, 0.0), Duration::from_secs(60));
        assert_eq!(retry_delay(1, 0.2), Duration::from_millis(1200));
        assert_eq!(retry_delay(7, 5.0), Duration::from_secs(120));
    }

    #[test]
    fn answers_are_sorted() {
        let classify = |status: u16, header: Option<u64>, body: serde_json::Value| {
            classify(
                "http://127.0.0.1:1",
                "/api/v10/users/@me",
                StatusCode::from_u16(status).unwrap(),
                header.map(Duration::from_secs),
                Some(&body),
            )
        };
        assert_eq!(
            classify(401, None, serde_json::json!({})),
            Attempt::Fatal(ConnectError::TokenRejected)
        );
        assert!(matches!(
            classify(404, None, serde_json::json!({})),
            Attempt::Fatal(ConnectError::Refused { status: 404, .. })
        ));
        assert_eq!(
            classify(429, Some(7), serde_json::json!({"retry_after": 2.5})),
            Attempt::RateLimited(Duration::from_secs(7)),
            "the header wins"
        );
        assert_eq!(
            classify(429, None, serde_json::json!({"retry_after": 2.5})),
            Attempt::RateLimited(Duration::from_millis(2500))
        );
        assert_eq!(
            classify(429, Some(86_400), serde_json::json!({})),
            Attempt::RateLimited(LONGEST_RETRY_AFTER)
        );
        assert!(matches!(
            classify(502, None, serde_json::json!({})),
            Attempt::Unreachable(_)
        ));
        let refused = ConnectError::Refused {
            base: "http://127.0.0.1:1".to_owned(),
            path: "/api/v10/users/@me",
            status: 404,
        };
        assert!(refused.to_string().contains("discord.rest_base_url"));
    }

    #[test]
    fn gateway_setup_errors_are_fatal() {
        let token = serenity::Error::Gateway(serenity::GatewayError::InvalidAuthentication);
        assert_eq!(
            fatal_gateway_error(&token),
            Some(ConnectError::TokenRejected)
        );
        let intents = serenity::Error::Gateway(serenity::GatewayError::DisallowedGatewayIntents);
        assert_eq!(
            fatal_gateway_error(&intents),
            Some(ConnectError::IntentsRefused)
        );
        let other = serenity::Error::Gateway(serenity::GatewayError::ReconnectFailure);
        assert_eq!(fatal_gateway_error(&other), None);
        assert!(ConnectError::TokenRejected
            .to_string()
            .contains("DISCORD_TOKEN"));
    }
}
