//! Client for the Trackly SMS API. Every path and field the bot uses is in this module, so a
//! change to the API is a change here only.

mod retry;
mod types;

use std::fmt;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE, RETRY_AFTER};
pub use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::config::TracklyConfig;
pub use retry::RetryPolicy;
pub use types::{format_count, Account, Balance, EventsPage, Money, Usage, UsagePeriod};
use types::{AccountEnvelope, BalanceEnvelope, UsageEnvelope};

const API_KEY_HEADER: &str = "X-Api-Key";
const KEY_PREFIX: &str = "trk_";
const KEY_BODY_LEN: usize = 32;

/// A Trackly API key whose format was checked. It never prints: `Debug` and `Display` show the
/// masked form only, and the memory is wiped on drop.
#[derive(Clone)]
pub struct ApiKey(Zeroizing<String>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyFormatError {
    #[error("the key is empty")]
    Empty,
    #[error("the key must start with `trk_`")]
    MissingPrefix,
    #[error(
        "the key must have exactly 32 letters or digits after `trk_`, but it has {0} characters"
    )]
    WrongLength(usize),
    #[error("the key may contain only letters and digits after `trk_`")]
    InvalidCharacter,
}

impl ApiKey {
    /// Checks the format `trk_` + 32 ASCII letters or digits (hex keys are a subset), after
    /// trimming surrounding white space that copy and paste often adds.
    pub fn parse(input: &str) -> Result<ApiKey, KeyFormatError> {
        let key = input.trim();
        if key.is_empty() {
            return Err(KeyFormatError::Empty);
        }
        let body = key
            .strip_prefix(KEY_PREFIX)
            .ok_or(KeyFormatError::MissingPrefix)?;
        let length = body.chars().count();
        if length != KEY_BODY_LEN {
            return Err(KeyFormatError::WrongLength(length));
        }
        if !body.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(KeyFormatError::InvalidCharacter);
        }
        Ok(ApiKey(Zeroizing::new(key.to_owned())))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn masked(&self) -> String {
        crate::crypto::mask_api_key(&self.0)
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({})", self.masked())
    }
}

impl fmt::Display for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Errors of a Trackly call, sorted by what the user or the bot should do about them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TracklyError {
    /// Any 401: the key is wrong, deleted or rotated.
    #[error("the API key was rejected (HTTP 401, code {code:?})")]
    InvalidKey { code: Option<String> },
    #[error("the Trackly account is suspended")]
    Suspended,
    #[error("the account does not have the {product} product enabled")]
    ProductNotEnabled { product: String },
    #[error("Trackly refused the request (HTTP 403): {message}")]
    Forbidden { message: String },
    #[error("Trackly reported that the resource does not exist")]
    NotFound,
    /// 400 `invalid_cursor` from `GET /events`: the feed does not recognise the `after` cursor.
    #[error("Trackly rejected the event feed cursor (HTTP 400 invalid_cursor)")]
    InvalidCursor,
    #[error("Trackly is rate limiting requests (retry after {retry_after:?})")]
    RateLimited { retry_after: Option<Duration> },
    #[error("Trackly is unavailable: {detail}")]
    Unavailable { detail: String },
    #[error("Trackly did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("Trackly returned an unexpected response: {detail}")]
    UnexpectedResponse { detail: String },
}

impl TracklyError {
    /// Returns whether a later attempt may succeed: 5xx, 429, connection failures and timeouts.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            TracklyError::RateLimited { .. }
                | TracklyError::Unavailable { .. }
                | TracklyError::TimedOut(_)
        )
    }

    /// Returns a short machine-readable kind for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            TracklyError::InvalidKey { .. } => "invalid_key",
            TracklyError::Suspended => "suspended",
            TracklyError::ProductNotEnabled { .. } => "product_not_enabled",
            TracklyError::Forbidden { .. } => "forbidden",
            TracklyError::NotFound => "not_found",
            TracklyError::InvalidCursor => "invalid_cursor",
            TracklyError::RateLimited { .. } => "rate_limited",
            TracklyError::Unavailable { .. } => "unavailable",
            TracklyError::TimedOut(_) => "timed_out",
            TracklyError::UnexpectedResponse { .. } => "unexpected_response",
        }
    }
}

#[derive(Deserialize)]
struct ErrorBody {
    error: Option<String>,
    code: Option<String>,
    message: Option<String>,
}

#[derive(Clone)]
pub struct TracklyClient {
    http: reqwest::Client,
    base_url: String,
    request_timeout: Duration,
    policy: RetryPolicy,
}

impl TracklyClient {
    pub fn new(config: &TracklyConfig) -> Result<TracklyClient, reqwest::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .connect_timeout(config.connect_timeout())
            // reqwest strips only standard credential headers on a cross-origin redirect, so
            // following one could send `X-Api-Key` to another host. Trackly does not redirect.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("trackly-bot/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(TracklyClient {
            http,
            base_url: config.base_url.trim_end_matches('/').to_owned(),
            request_timeout: config.request_timeout(),
            policy: RetryPolicy {
                max_retries: config.max_retries,
                budget: config.retry_budget(),
                ..RetryPolicy::default()
            },
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `GET /account`: who the key belongs to. Only a 200 here links a key.
    pub async fn account(&self, key: &ApiKey) -> Result<Account, TracklyError> {
        let envelope: AccountEnvelope = self.get_json(key, "/account", &[]).await?;
        Ok(envelope.account)
    }

    /// `GET /usage?period=...`
    pub async fn usage(&self, key: &ApiKey, period: UsagePeriod) -> Result<Usage, TracklyError> {
        let envelope: UsageEnvelope = self
            .get_json(key, "/usage", &[("period", period.as_query())])
            .await?;
        Ok(envelope.usage)
    }

    /// `GET /billing/balance`
    pub async fn balance(&self, key: &ApiKey) -> Result<Balance, TracklyError> {
        let envelope: BalanceEnvelope = self.get_json(key, "/billing/balance", &[]).await?;
        Ok(envelope.balance)
    }

    /// `GET /events?after=...&limit=...`: the account's alert feed, oldest first. Without
    /// `after` the page is empty and its cursor points at the newest event.
    pub async fn events(
        &self,
        key: &ApiKey,
        after: Option<&str>,
        limit: u32,
    ) -> Result<EventsPage, TracklyError> {
        let limit = limit.clamp(1, 500).to_string();
        let mut query = vec![("limit", limit.as_str())];
        if let Some(after) = after {
            query.push(("after", after));
        }
        self.get_json(key, "/events", &query).await
    }

    /// Sends one unauthenticated request and returns the HTTP status and how long it took: a 401
    /// still proves that Trackly is reachable. No retries, so `/sms status` stays quick.
    pub async fn probe(&self) -> Result<(StatusCode, Duration), TracklyError> {
        let started = Instant::now();
        let url = format!("{}/account", self.base_url);
        let timeout = self.request_timeout.min(Duration::from_secs(5));
        match self.http.get(url).timeout(timeout).send().await {
            Ok(response) => Ok((response.status(), started.elapsed())),
            Err(error) => Err(transport_error(&error, timeout)),
        }
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        key: &ApiKey,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, TracklyError> {
        let url = format!("{}{path}", self.base_url);
        let url = url.as_str();
        self.policy
            .run(path, |timeout| async move {
                self.get_json_once(key, url, path, query, timeout).await
            })
            .await
    }

    async fn get_json_once<T: DeserializeOwned>(
        &self,
        key: &ApiKey,
        url: &str,
        path: &str,
        query: &[(&str, &str)],
        budget_left: Duration,
    ) -> Result<T, TracklyError> {
        let timeout = self.request_timeout.min(budget_left);
        let mut key_header =
            HeaderValue::from_str(key.expose()).map_err(|_| TracklyError::UnexpectedResponse {
                detail: "the API key is not a valid header value".to_owned(),
            })?;
        key_header.set_sensitive(true);

        let started = Instant::now();
        let request = self
            .http
            .get(url)
            .query(query)
            .header(API_KEY_HEADER, key_header)
            .timeout(timeout);
        let response = request
            .send()
            .await
            .map_err(|error| transport_error(&error, timeout))?;
        let status = response.status();
        let retry_after = parse_retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|error| transport_error(&error, timeout))?;
        tracing::debug!(
            path,
            status = status.as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "trackly request finished"
        );

        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|error| {
                TracklyError::UnexpectedResponse {
                    detail: format!(
                        "HTTP {status} with a body that does not match the contract: {error}"
                    ),
                }
            });
        }
        Err(classify_error(status, &body, retry_after))
    }
}

fn transport_error(error: &reqwest::Error, timeout: Duration) -> TracklyError {
    if error.is_timeout() {
        TracklyError::TimedOut(timeout)
    } else if error.is_connect() {
        TracklyError::Unavailable {
            detail: "connection failed".to_owned(),
        }
    } else {
        TracklyError::Unavailable {
            detail: format!("request failed: {error}"),
        }
    }
}

fn parse_retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    let seconds: f64 = value.parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// Maps a non-2xx response to an error, switching on `code` when present and falling back to the
/// `error` text, because Trackly omits `code` on some responses (the suspension 403 among them).
fn classify_error(status: StatusCode, body: &[u8], retry_after: Option<Duration>) -> TracklyError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().and_then(|b| b.code.clone());
    let text = parsed
        .as_ref()
        .and_then(|b| b.error.clone().or_else(|| b.message.clone()))
        .unwrap_or_default();

    match status.as_u16() {
        401 => TracklyError::InvalidKey { code },
        403 => {
            if let Some(product) = code.as_deref().and_then(|c| c.strip_suffix("_not_enabled")) {
                TracklyError::ProductNotEnabled {
                    product: product.to_owned(),
                }
            } else if parsed.is_none() {
                TracklyError::UnexpectedResponse {
                    detail: format!("HTTP {status} with a body that is not JSON"),
                }
            } else if text.to_ascii_lowercase().contains("suspend")
                || (code.is_none() && parsed.as_ref().is_some_and(|b| b.error.is_some()))
            {
                // Trackly's suspension 403 has an `error` text and no code. A 403 without an
                // `error` field, such as `{}` or `{"message": ...}` from a gateway in front of
                // Trackly, is not taken for a suspension, which would pause the account's
                // alerts.
                TracklyError::Suspended
            } else {
                TracklyError::Forbidden { message: text }
            }
        }
        300..=399 => TracklyError::UnexpectedResponse {
            detail: format!("HTTP {status}: a redirect, which is not followed"),
        },
        404 => TracklyError::NotFound,
        400 if code.as_deref() == Some("not_found") => TracklyError::NotFound,
        400 if code.as_deref() == Some("invalid_cursor") => TracklyError::InvalidCursor,
        429 => TracklyError::RateLimited { retry_after },
        500..=599 => TracklyError::Unavailable {
            detail: format!("HTTP {status}"),
        },
        _ => TracklyError::UnexpectedResponse {
            detail: format!("HTTP {status}: {text}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_format_accepts_letters_and_hex() {
        assert!(ApiKey::parse("trk_AbCdAbCdAbCdAbCd0123012301230123").is_ok());
        assert!(ApiKey::parse("  trk_0123456789abcdef0123456789abcdef\n").is_ok());
    }

    #[test]
    fn key_format_errors_are_specific() {
        assert_eq!(ApiKey::parse(" ").unwrap_err(), KeyFormatError::Empty);
        assert_eq!(
            ApiKey::parse("sk_0123456789abcdef0123456789abcdef").unwrap_err(),
            KeyFormatError::MissingPrefix
        );
        assert_eq!(
            ApiKey::parse("trk_0123").unwrap_err(),
            KeyFormatError::WrongLength(4)
        );
        assert_eq!(
            ApiKey::parse("trk_0123456789abcdef0123456789abcde!").unwrap_err(),
            KeyFormatError::InvalidCharacter
        );
        assert_eq!(
            ApiKey::parse("trk_0123456789abcdef0123456789abcdeé").unwrap_err(),
            KeyFormatError::InvalidCharacter
        );
    }

    #[test]
    fn key_debug_is_masked() {
        let key = ApiKey::parse("trk_AbCdAbCdAbCdAbCd0123012301230123").unwrap();
        assert_eq!(format!("{key:?}"), "ApiKey(trk_…0123)");
        assert_eq!(key.to_string(), "trk_…0123");
    }

    fn classify(status: u16, body: &str) -> TracklyError {
        classify_error(StatusCode::from_u16(status).unwrap(), body.as_bytes(), None)
    }

    #[test]
    fn classify_documented_errors() {
        assert_eq!(
            classify(
                401,
                r#"{"error":"Invalid API key","code":"invalid_api_key"}"#
            ),
            TracklyError::InvalidKey {
                code: Some("invalid_api_key".into())
            }
        );
        assert_eq!(
            classify(401, "not json"),
            TracklyError::InvalidKey { code: None }
        );
        assert_eq!(
            classify(403, r#"{"error":"Account is suspended"}"#),
            TracklyError::Suspended
        );
        assert_eq!(
            classify(403, r#"{"error":"Account on hold"}"#),
            TracklyError::Suspended,
            "Trackly's 403 without a code is the suspension answer"
        );
        for body in [r#"{}"#, r#"{"message":"Forbidden"}"#] {
            assert!(
                matches!(classify(403, body), TracklyError::Forbidden { .. }),
                "{body} is not Trackly's suspension answer"
            );
        }
        assert_eq!(
            classify(
                403,
                r#"{"error":"Account suspended","code":"account_suspended"}"#
            ),
            TracklyError::Suspended
        );
        assert_eq!(
            classify(
                403,
                r#"{"error":"Email is not enabled","code":"email_not_enabled"}"#
            ),
            TracklyError::ProductNotEnabled {
                product: "email".into()
            }
        );
        assert_eq!(
            classify(403, r#"{"error":"Nope","code":"forbidden"}"#),
            TracklyError::Forbidden {
                message: "Nope".into()
            }
        );
        assert_eq!(
            classify(404, r#"{"error":"x","code":"not_found"}"#),
            TracklyError::NotFound
        );
        assert_eq!(
            classify(400, r#"{"error":"x","code":"not_found"}"#),
            TracklyError::NotFound
        );
        assert_eq!(
            classify(400, r#"{"error":"Invalid cursor","code":"invalid_cursor"}"#),
            TracklyError::InvalidCursor
        );
        assert!(matches!(
            classify(503, "<html>"),
            TracklyError::Unavailable { .. }
        ));
        assert!(matches!(
            classify(418, r#"{"error":"teapot"}"#),
            TracklyError::UnexpectedResponse { .. }
        ));
        assert!(matches!(
            classify(307, ""),
            TracklyError::UnexpectedResponse { .. }
        ));
        assert!(matches!(
            classify(403, "<html>forbidden</html>"),
            TracklyError::UnexpectedResponse { .. }
        ));
    }

    #[test]
    fn retry_after_parses_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(parse_retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("0.5"));
        assert_eq!(
            parse_retry_after(&headers),
            Some(Duration::from_millis(500))
        );
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(parse_retry_after(&headers), None);
    }
}
