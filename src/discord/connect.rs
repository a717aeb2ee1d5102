//! Reaching Discord before the gateway starts: the token is checked and the gateway address is
//! fetched through the configured REST base, with retries while Discord cannot be reached.
//!
//! serenity fetches the gateway address once when the client is built. When that request
//! fails, it falls back to Discord's public gateway, even with a REST base of its own, so the
//! address found here replaces whatever serenity found.

use std::time::Duration;

use poise::serenity_prelude as serenity;
use reqwest::StatusCode;
use tokio_util::sync::CancellationToken;

use crate::backoff;

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
         point at Discord or a proxy that forwards /api/v10, with the final address if it \
         redirects) and DISCORD_TOKEN"
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
    authorization: zeroize::Zeroizing<String>,
}

impl DiscordProbe {
    /// `rest_base_url` as configured (empty for Discord itself) and the bot token.
    pub fn new(
        rest_base_url: &str,
        token: &str,
        request_timeout: Duration,
    ) -> Result<Self, ConnectError> {
        // Discord may block requests without a bot User-Agent, so the probe sends serenity's.
        let client = reqwest::Client::builder()
            .user_agent(serenity::constants::USER_AGENT)
            .connect_timeout(Duration::from_secs(5))
            .timeout(request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|error| ConnectError::Client(error.to_string()))?;
        let authorization = zeroize::Zeroizing::new(format!("Bot {token}"));
        if reqwest::header::HeaderValue::from_str(&authorization).is_err() {
            return Err(ConnectError::Client(
                "DISCORD_TOKEN contains characters that an HTTP header cannot carry; copy the \
                 token again from the developer portal"
                    .to_owned(),
            ));
        }
        let base = if rest_base_url.is_empty() {
            "https://discord.com".to_owned()
        } else {
            rest_base_url.trim_end_matches('/').to_owned()
        };
        Ok(Self {
            client,
            base,
            authorization,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    async fn get(&self, path: &'static str) -> Result<reqwest::Response, Attempt> {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header(reqwest::header::AUTHORIZATION, self.authorization.as_str())
            .send()
            .await
            .map_err(|error| Attempt::Unreachable(describe_send_error(error)))?;
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

/// Describes a request that got no answer, with its causes (refused, DNS, TLS, timeout) and
/// without the URL.
fn describe_send_error(error: reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Classifies a failed response. A bad token, a redirect or another 4xx is fatal, and 429 waits
/// for its `Retry-After` (the header, else the body's `retry_after`). 408, 425 and 5xx are
/// retried.
///
/// NOTE: this has run only against the fake Discord and a local stub. Whether real Discord or
/// Cloudflare in front of it ever returns another 4xx to a valid bot is untested.
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
        code @ (300..=399 | 400..=407 | 409..=424 | 426..=499) => {
            Attempt::Fatal(ConnectError::Refused {
                base: base.to_owned(),
                path,
                status: code,
            })
        }
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
                let wait = retry_after
                    + retry_after
                        .min(FIRST_RETRY)
                        .mul_f64(backoff::random_jitter());
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
                let wait = retry_delay(failures, backoff::random_jitter());
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

/// Returns the wait after `failures` failed attempts (at least 1), with `jitter` (0 to 1)
/// added as a share of the wait.
fn retry_delay(failures: u32, jitter: f64) -> Duration {
    backoff::exponential(
        FIRST_RETRY,
        LONGEST_RETRY,
        failures.saturating_sub(1),
        jitter,
    )
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

    /// Serves every request on 127.0.0.1 with `status` and `body` and returns the address and
    /// the heads of the requests received.
    async fn stub_server(
        status: &'static str,
        body: &'static str,
    ) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = format!("http://{}", listener.local_addr().unwrap());
        let heads = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let seen = std::sync::Arc::clone(&heads);
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut head = Vec::new();
                let mut buffer = [0u8; 1024];
                while !head.ends_with(b"\r\n\r\n") {
                    match socket.read(&mut buffer).await {
                        Ok(0) | Err(_) => break,
                        Ok(read) => head.extend_from_slice(&buffer[..read]),
                    }
                }
                let gateway = String::from_utf8_lossy(&head).contains("/gateway ");
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&head).to_lowercase());
                let body = if gateway && status.starts_with("200") {
                    r#"{"url":"ws://127.0.0.1:9"}"#
                } else {
                    body
                };
                let reply = format!(
                    "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                     location: https://elsewhere.invalid/\r\ncontent-length: {}\r\n\
                     connection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        (address, heads)
    }

    #[tokio::test]
    async fn probe_request_headers_and_paths() {
        let (address, heads) = stub_server("200 OK", r#"{"id":"1","username":"bot"}"#).await;
        let probe = DiscordProbe::new(
            &format!("{address}/"),
            "MTIz.probe.token",
            Duration::from_secs(5),
        )
        .unwrap();
        assert_eq!(
            probe.attempt().await,
            Attempt::Ready("ws://127.0.0.1:9".to_owned())
        );
        let heads = heads.lock().unwrap().clone();
        assert_eq!(heads.len(), 2, "{heads:?}");
        assert!(
            heads[0].starts_with("get /api/v10/users/@me http/1.1"),
            "{heads:?}"
        );
        assert!(
            heads[1].starts_with("get /api/v10/gateway http/1.1"),
            "{heads:?}"
        );
        for head in &heads {
            assert!(
                head.contains("authorization: bot mtiz.probe.token"),
                "{head}"
            );
            assert!(head.contains("user-agent: discordbot"), "{head}");
        }
    }

    #[tokio::test]
    async fn probe_redirect_and_closed_port() {
        let (address, _) = stub_server("301 Moved Permanently", "").await;
        let probe = DiscordProbe::new(&address, "t", Duration::from_secs(5)).unwrap();
        assert!(matches!(
            probe.attempt().await,
            Attempt::Fatal(ConnectError::Refused { status: 301, .. })
        ));

        // A port that was free a moment ago has no listener.
        let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let closed_base = format!("http://{}", free.local_addr().unwrap());
        drop(free);
        let closed = DiscordProbe::new(&closed_base, "t", Duration::from_secs(5)).unwrap();
        match closed.attempt().await {
            Attempt::Unreachable(text) => {
                assert!(text.starts_with("connection failed: "), "{text}");
                assert!(!text.contains("/api/v10"), "{text}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn token_unfit_for_a_header_is_fatal() {
        assert!(matches!(
            DiscordProbe::new("", "bad\ntoken", Duration::from_secs(5)),
            Err(ConnectError::Client(_))
        ));
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
        for transient in [408, 425, 502] {
            assert!(
                matches!(
                    classify(transient, None, serde_json::json!({})),
                    Attempt::Unreachable(_)
                ),
                "{transient}"
            );
        }
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
