//! Scriptable faults: error responses, broken bodies, delays and missing responses that replace
//! or hold back the normal response.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use crate::api::{endpoint_paths, is_endpoint_path, json_error, API_PREFIX};
use crate::seed::key_fingerprint;
use crate::NO_ANSWER_HOLD;

/// Maximum wait of a `delay` fault, in milliseconds: 10 minutes, the time a `no_answer` fault
/// keeps a request open.
pub(crate) const MAX_DELAY_MS: u64 = NO_ANSWER_HOLD.as_secs() * 1000;

/// A fault and the requests it applies to.
///
/// The first matching fault whose `times` is not used up applies, and each application uses up one.
/// Faults apply before authentication, so a fault on a key the seed does not contain still applies.
///
/// In JSON the kind's fields sit beside the others:
/// `{"path": "/usage", "times": 1, "kind": "rate_limited", "retry_after_secs": 5}`.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// Only requests whose `X-Api-Key` is exactly this key; `None` matches any request.
    pub key: Option<String>,
    /// Only this endpoint path, matched exactly, without the `/api/v2` prefix and query
    /// (`"/account"`); `None` matches any.
    pub path: Option<String>,
    /// Number of matching requests the fault applies to, at least 1; `None` keeps it until it is
    /// cleared.
    pub times: Option<u32>,
    #[serde(flatten)]
    pub kind: FaultKind,
}

// serde's `flatten` lets a misspelled field (`"tims": 1`) pass silently beside a unit variant, and
// a fault that then applies forever is hard to spot, so every field is checked here by name.
impl<'de> Deserialize<'de> for Fault {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Fault, D::Error> {
        let mut fields = Map::<String, Value>::deserialize(deserializer)?;
        let key = take_optional_field(&mut fields, "key", "a string")?;
        let path = take_optional_field(&mut fields, "path", "a string such as \"/account\"")?;
        let times = take_optional_field(&mut fields, "times", &times_range())?;

        let kind_field_names: Vec<String> = fields.keys().cloned().collect();
        let kind = FaultKind::deserialize(Value::Object(fields)).map_err(D::Error::custom)?;

        // Serializing the kind lists every field its variant has, optional ones included as null.
        let Ok(Value::Object(known)) = serde_json::to_value(&kind) else {
            return Err(D::Error::custom(
                "fault kind did not serialize to an object",
            ));
        };
        if let Some(unknown) = kind_field_names
            .iter()
            .find(|name| !known.contains_key(*name))
        {
            let mut expected: Vec<&str> = vec!["key", "path", "times"];
            expected.extend(known.keys().map(String::as_str));
            return Err(D::Error::custom(format!(
                "unknown field `{unknown}` for a fault of kind `{}`. Valid fields: {}",
                kind.name(),
                expected.join(", ")
            )));
        }

        Ok(Fault {
            key,
            path,
            times,
            kind,
        })
    }
}

/// Removes an optional field from a fault's JSON object; a missing field or null is `None`.
/// `expected` describes a valid value for the error message, such as "a string".
fn take_optional_field<T: DeserializeOwned, E: serde::de::Error>(
    fields: &mut Map<String, Value>,
    name: &str,
    expected: &str,
) -> Result<Option<T>, E> {
    let Some(value) = fields.remove(name) else {
        return Ok(None);
    };
    serde_json::from_value::<Option<T>>(value.clone()).map_err(|_| {
        E::custom(format!(
            "invalid `{name}`: expected {expected}, found {}",
            describe_json(&value)
        ))
    })
}

/// Describes a JSON value for an error message: numbers and booleans as written, other values
/// by type only, so that a misplaced key is not echoed.
fn describe_json(value: &Value) -> String {
    match value {
        Value::Null => "null".to_string(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(_) => "a string".to_string(),
        Value::Array(_) => "an array".to_string(),
        Value::Object(_) => "an object".to_string(),
    }
}

/// Describes the valid values of `times`, for error messages.
fn times_range() -> String {
    format!(
        "a whole number from 1 to {}, or no `times` to keep the fault until it is cleared",
        u32::MAX
    )
}

// Shows only the last 4 characters of the key, like every log line of the simulator.
impl fmt::Debug for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fault")
            .field(
                "key",
                &self
                    .key
                    .as_deref()
                    .map(|key| format!("…{}", key_fingerprint(key))),
            )
            .field("path", &self.path)
            .field("times", &self.times)
            .field("kind", &self.kind)
            .finish()
    }
}

/// Effect of a fault on a matching request. In JSON the variant name is the `kind` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultKind {
    /// Waits `ms` milliseconds, at most 600000 (10 minutes), then responds normally.
    Delay { ms: u64 },
    /// 401 `{"error": "Invalid API key", "code": "invalid_api_key"}`.
    Unauthorized,
    /// 403 `{"error": "Account is suspended"}` with no `code`, as the real API sends it.
    Suspended,
    /// 403 with code `<product>_not_enabled`, for example `email_not_enabled`.
    NotEnabled { product: String },
    /// 429, with a `Retry-After` header (seconds) when `retry_after_secs` is set.
    RateLimited {
        #[serde(default)]
        retry_after_secs: Option<u64>,
    },
    /// The given 5xx status with a JSON error body. A status outside 500..=599 becomes 500.
    ServerError { status: u16 },
    /// 200 with a `Content-Type: application/json` body that is not valid JSON.
    MalformedJson,
    /// 200 with valid JSON that has none of the fields any endpoint returns.
    WrongShape,
    /// Accepts the request and never responds. The connection is closed without a response after
    /// [`NO_ANSWER_HOLD`](crate::NO_ANSWER_HOLD) or when the simulator shuts down.
    NoAnswer,
}

impl FaultKind {
    /// Returns the `kind` name used in JSON and logs.
    pub fn name(&self) -> &'static str {
        match self {
            FaultKind::Delay { .. } => "delay",
            FaultKind::Unauthorized => "unauthorized",
            FaultKind::Suspended => "suspended",
            FaultKind::NotEnabled { .. } => "not_enabled",
            FaultKind::RateLimited { .. } => "rate_limited",
            FaultKind::ServerError { .. } => "server_error",
            FaultKind::MalformedJson => "malformed_json",
            FaultKind::WrongShape => "wrong_shape",
            FaultKind::NoAnswer => "no_answer",
        }
    }
}

impl Fault {
    /// Checks that the fault can apply to a request for an endpoint and that its values are in
    /// range. The control API rejects a fault that fails this check.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(key) = &self.key {
            validate_key(key)?;
        }
        if let Some(path) = &self.path {
            validate_path(path)?;
        }
        if self.times == Some(0) {
            return Err(format!(
                "invalid times 0: such a fault never applies. Expected {}",
                times_range()
            ));
        }
        match &self.kind {
            FaultKind::Delay { ms } if *ms > MAX_DELAY_MS => Err(format!(
                "invalid delay ms {ms}: expected at most {MAX_DELAY_MS} (10 minutes). Use the \
                 no_answer kind for a request that never gets a response"
            )),
            FaultKind::ServerError { status } if !(500..=599).contains(status) => Err(format!(
                "invalid server_error status {status}: expected a status from 500 to 599"
            )),
            FaultKind::NotEnabled { product } if !is_product_name(product) => Err(format!(
                "invalid not_enabled product {product:?}: expected lower-case letters, digits or \
                 underscores, such as \"email\""
            )),
            _ => Ok(()),
        }
    }

    /// Reports whether the fault applies to a request with this key and path.
    pub(crate) fn matches(&self, key: Option<&str>, path: &str) -> bool {
        let key_matches = match &self.key {
            Some(wanted) => key == Some(wanted.as_str()),
            None => true,
        };
        let path_matches = match &self.path {
            Some(wanted) => wanted == path,
            None => true,
        };
        key_matches && path_matches
    }
}

/// Checks that some request can carry the key. The simulator trims the `X-Api-Key` header and
/// treats an empty one as missing, so an empty key or one with whitespace at either end never
/// matches, and a header cannot carry control characters.
fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err(
            "invalid fault key: the key is empty. Leave out `key` to match requests with any key \
             or none"
                .to_string(),
        );
    }
    if key.trim() != key || key.chars().any(char::is_control) {
        return Err(format!(
            "invalid fault key ending in {:?}: the key has whitespace at either end or control \
             characters, which no X-Api-Key header carries. Send the key exactly as the client \
             sends it",
            key_fingerprint(key.trim_end())
        ));
    }
    Ok(())
}

/// Checks that the path is one of the endpoints. Faults match the request path exactly, without
/// the `/api/v2` prefix and the query, so a fault on any other path could only replace the 404
/// of a path the simulator does not serve, which is almost always a typo.
fn validate_path(path: &str) -> Result<(), String> {
    if is_endpoint_path(path) {
        return Ok(());
    }

    let valid_paths: Vec<&str> = endpoint_paths().collect();
    let suggestion = match suggest_endpoint_path(path) {
        Some(endpoint) => format!(" Did you mean \"{endpoint}\"?"),
        None => String::new(),
    };
    Err(format!(
        "invalid fault path {path:?}: no endpoint has this path.{suggestion} A fault path is \
         matched exactly against the request path without the {API_PREFIX} prefix and the \
         query. Valid paths: {}",
        valid_paths.join(", ")
    ))
}

/// Finds the endpoint that a path written with the `/api/v2` prefix, a query, a trailing slash,
/// no leading slash or in another case would name.
fn suggest_endpoint_path(path: &str) -> Option<&'static str> {
    let without_query = path.split(['?', '#']).next().unwrap_or_default();
    let lower = without_query.trim().to_ascii_lowercase();
    let without_prefix = lower.strip_prefix(API_PREFIX).unwrap_or(&lower);
    let trimmed = without_prefix.trim_matches('/');
    let candidate = format!("/{trimmed}");
    endpoint_paths().find(|endpoint| *endpoint == candidate)
}

fn is_product_name(product: &str) -> bool {
    !product.is_empty()
        && product
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Builds the response of a fault that responds at once.
///
/// `Delay` and `NoAnswer` change when (or whether) a response is sent, not what it is, so they
/// return `None`.
pub(crate) fn immediate_response(kind: &FaultKind) -> Option<Response> {
    let response = match kind {
        FaultKind::Delay { .. } | FaultKind::NoAnswer => return None,
        FaultKind::Unauthorized => json_error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key",
            Some("invalid_api_key"),
        ),
        FaultKind::Suspended => json_error(StatusCode::FORBIDDEN, "Account is suspended", None),
        FaultKind::NotEnabled { product } => json_error(
            StatusCode::FORBIDDEN,
            &format!("The {product} product is not enabled for this account; contact support to enable it"),
            Some(&format!("{product}_not_enabled")),
        ),
        FaultKind::RateLimited { retry_after_secs } => {
            let mut response = json_error(
                StatusCode::TOO_MANY_REQUESTS,
                "Too many requests",
                Some("rate_limited"),
            );
            if let Some(seconds) = retry_after_secs {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*seconds));
            }
            response
        }
        FaultKind::ServerError { status } => {
            let status = StatusCode::from_u16(*status)
                .ok()
                .filter(StatusCode::is_server_error)
                .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let reason = status.canonical_reason().unwrap_or("Server error");
            json_error(status, reason, Some("server_error"))
        }
        FaultKind::MalformedJson => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            // A body cut off in the middle, as a proxy that drops the connection would leave it.
            r#"{"account": {"id": "acc_8f2k1q", "name": "Acme Prom"#,
        )
            .into_response(),
        FaultKind::WrongShape => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            r#"{"result": "ok", "items": [1, 2, 3], "meta": {"shape": "unexpected"}}"#,
        )
            .into_response(),
    };
    Some(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fault(key: Option<&str>, path: Option<&str>) -> Fault {
        Fault {
            key: key.map(str::to_string),
            path: path.map(str::to_string),
            times: None,
            kind: FaultKind::Unauthorized,
        }
    }

    #[test]
    fn matching_by_key_and_path() {
        assert!(fault(None, None).matches(None, "/account"));
        assert!(fault(Some("k1"), None).matches(Some("k1"), "/usage"));
        assert!(!fault(Some("k1"), None).matches(Some("k2"), "/usage"));
        assert!(!fault(Some("k1"), None).matches(None, "/usage"));
        assert!(fault(None, Some("/usage")).matches(Some("k1"), "/usage"));
        assert!(!fault(None, Some("/usage")).matches(Some("k1"), "/account"));
        assert!(fault(Some("k1"), Some("/usage")).matches(Some("k1"), "/usage"));
        assert!(!fault(Some("k1"), Some("/usage")).matches(Some("k1"), "/account"));
    }

    #[test]
    fn json_form_uses_kind_tag() {
        let parsed: Fault = serde_json::from_str(
            r#"{"path": "/usage", "times": 2, "kind": "rate_limited", "retry_after_secs": 7}"#,
        )
        .unwrap();
        assert_eq!(parsed.path.as_deref(), Some("/usage"));
        assert_eq!(parsed.times, Some(2));
        assert_eq!(
            parsed.kind,
            FaultKind::RateLimited {
                retry_after_secs: Some(7)
            }
        );

        let written = serde_json::to_value(&parsed).unwrap();
        assert_eq!(written["kind"], "rate_limited");
        assert_eq!(written["retry_after_secs"], 7);
    }

    #[test]
    fn json_form_rejects_misspelled_fields() {
        let typo = serde_json::from_str::<Fault>(r#"{"kind": "unauthorized", "tims": 1}"#);
        let message = typo.unwrap_err().to_string();
        assert!(message.contains("`tims`"), "{message}");
        assert!(message.contains("kind `unauthorized`"), "{message}");
        assert!(message.contains("key, path, times, kind"), "{message}");

        let missing = serde_json::from_str::<Fault>(r#"{"kind": "server_error"}"#);
        let message = missing.unwrap_err().to_string();
        assert!(message.contains("status"), "{message}");
    }

    #[test]
    fn validate_rejects_bad_values() {
        let mut bad_status = fault(None, None);
        bad_status.kind = FaultKind::ServerError { status: 404 };
        assert!(bad_status.validate().unwrap_err().contains("404"));

        let mut bad_product = fault(None, None);
        bad_product.kind = FaultKind::NotEnabled {
            product: "E mail".into(),
        };
        assert!(bad_product.validate().is_err());

        assert!(fault(None, Some("/api/v2/account")).validate().is_err());
        assert!(fault(None, Some("account")).validate().is_err());
        assert!(fault(None, Some("/account")).validate().is_ok());
    }

    #[test]
    fn validate_accepts_every_endpoint_path() {
        for path in endpoint_paths() {
            assert_eq!(fault(None, Some(path)).validate(), Ok(()), "{path}");
        }
        assert_eq!(fault(None, None).validate(), Ok(()));
    }

    #[test]
    fn validate_rejects_unknown_paths() {
        let cases = [
            ("/acount", None),
            ("/", None),
            ("", None),
            ("/billing", None),
            ("/api/v2/account", Some("/account")),
            ("account", Some("/account")),
            ("/usage?period=week", Some("/usage")),
            ("/lists/", Some("/lists")),
            ("/Events", Some("/events")),
            ("/api/v2/billing/balance", Some("/billing/balance")),
        ];
        for (path, suggestion) in cases {
            let message = fault(None, Some(path)).validate().unwrap_err();
            assert!(message.contains(&format!("{path:?}")), "{message}");
            assert!(
                message.contains("/account, /usage, /billing/balance, /lists, /events"),
                "{message}"
            );
            match suggestion {
                Some(endpoint) => assert!(
                    message.contains(&format!("Did you mean \"{endpoint}\"?")),
                    "{message}"
                ),
                None => assert!(!message.contains("Did you mean"), "{message}"),
            }
        }
    }

    #[test]
    fn validate_rejects_zero_times() {
        let mut never = fault(None, None);
        never.times = Some(0);
        let message = never.validate().unwrap_err();
        assert!(message.contains("times 0"), "{message}");
        assert!(message.contains(&u32::MAX.to_string()), "{message}");

        never.times = Some(1);
        assert_eq!(never.validate(), Ok(()));
    }

    #[test]
    fn validate_bounds_delay() {
        let mut delay = fault(None, None);
        delay.kind = FaultKind::Delay { ms: MAX_DELAY_MS };
        assert_eq!(delay.validate(), Ok(()));
        delay.kind = FaultKind::Delay { ms: 0 };
        assert_eq!(delay.validate(), Ok(()));

        delay.kind = FaultKind::Delay {
            ms: MAX_DELAY_MS + 1,
        };
        let message = delay.validate().unwrap_err();
        assert!(message.contains("600001"), "{message}");
        assert!(message.contains("600000"), "{message}");
    }

    #[test]
    fn validate_rejects_keys_no_request_carries() {
        let empty = fault(Some(""), None).validate().unwrap_err();
        assert!(empty.contains("empty"), "{empty}");

        for key in [" trk_key0001", "trk_key0001 ", "trk_key\n0001"] {
            let message = fault(Some(key), None).validate().unwrap_err();
            assert!(message.contains("whitespace"), "{key:?}: {message}");
            assert!(!message.contains("trk_key"), "the key is echoed: {message}");
        }
        assert_eq!(fault(Some("trk_unknown0001"), None).validate(), Ok(()));
    }

    #[test]
    fn json_form_explains_invalid_times() {
        let cases = [
            ("-1", "found -1"),
            ("\"two\"", "found a string"),
            ("1.5", "found 1.5"),
            ("4294967296", "found 4294967296"),
            ("[1]", "found an array"),
        ];
        for (times, found) in cases {
            let text = format!(r#"{{"kind": "unauthorized", "times": {times}}}"#);
            let message = serde_json::from_str::<Fault>(&text)
                .unwrap_err()
                .to_string();
            assert!(message.contains("invalid `times`"), "{message}");
            assert!(message.contains("whole number from 1"), "{message}");
            assert!(message.contains(found), "{message}");
        }

        let key = serde_json::from_str::<Fault>(
            r#"{"kind": "unauthorized", "key": ["trk_TESTacmeOWNERkey0000000000000001"]}"#,
        );
        let message = key.unwrap_err().to_string();
        assert!(message.contains("invalid `key`"), "{message}");
        assert!(
            !message.contains("trk_TEST"),
            "the key is echoed: {message}"
        );
    }

    #[test]
    fn debug_hides_the_key() {
        let text = format!(
            "{:?}",
            fault(Some("trk_0123456789abcdefABCDEF0123456789"), None)
        );
        assert!(!text.contains("trk_0123"), "{text}");
        assert!(text.contains("6789"), "{text}");
    }
}
