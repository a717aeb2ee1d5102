//! The `/api/v2` endpoints. One entry point records each request, applies a matching fault,
//! authenticates the key and then responds with the shapes of the Trackly API contract.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{SecondsFormat, Utc};
use serde_json::{json, Map, Value};
use tracing::{debug, info};

use crate::fault::{immediate_response, FaultKind};
use crate::feed::UnknownCursor;
use crate::periods::Period;
use crate::seed::{key_fingerprint, SeedAccount};
use crate::server::ConnectionCloser;
use crate::state::{AuthFailure, Caller, RecordedRequest, SimError, SimState};
use crate::NO_ANSWER_HOLD;

pub(crate) const API_PREFIX: &str = "/api/v2";

const LISTS_DEFAULT_PER_PAGE: u64 = 50;
const LISTS_MAX_PER_PAGE: u64 = 100;
const EVENTS_DEFAULT_LIMIT: u64 = 100;
const EVENTS_MAX_LIMIT: u64 = 500;

/// The endpoints under `/api/v2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    Account,
    Usage,
    Balance,
    Lists,
    Events,
}

impl Endpoint {
    const ALL: [Endpoint; 5] = [
        Endpoint::Account,
        Endpoint::Usage,
        Endpoint::Balance,
        Endpoint::Lists,
        Endpoint::Events,
    ];

    /// Returns the path without the `/api/v2` prefix, as requests are recorded and faults match.
    fn path(self) -> &'static str {
        match self {
            Endpoint::Account => "/account",
            Endpoint::Usage => "/usage",
            Endpoint::Balance => "/billing/balance",
            Endpoint::Lists => "/lists",
            Endpoint::Events => "/events",
        }
    }

    /// Finds the endpoint of a path without the `/api/v2` prefix. The match is exact, so a
    /// trailing slash or a different case finds none.
    fn from_path(path: &str) -> Option<Endpoint> {
        Endpoint::ALL
            .into_iter()
            .find(|endpoint| endpoint.path() == path)
    }
}

/// Paths of the endpoints under `/api/v2`, without the prefix, such as `"/account"`.
pub(crate) fn endpoint_paths() -> impl Iterator<Item = &'static str> {
    Endpoint::ALL.into_iter().map(Endpoint::path)
}

/// Reports whether `path` (without the `/api/v2` prefix) is an endpoint the simulator serves.
pub(crate) fn is_endpoint_path(path: &str) -> bool {
    Endpoint::from_path(path).is_some()
}

/// Builds an error body in the API's format: `{"error": ..., "code": ...}`, without `code` when
/// it is `None`.
pub(crate) fn json_error(status: StatusCode, error: &str, code: Option<&str>) -> Response {
    let mut body = Map::new();
    body.insert("error".into(), Value::from(error));
    if let Some(code) = code {
        body.insert("code".into(), Value::from(code));
    }
    (status, Json(Value::Object(body))).into_response()
}

/// An error response with a `code`, for endpoint code that returns `Result`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: StatusCode,
    pub error: String,
    pub code: String,
}

impl ApiError {
    pub fn new(status: StatusCode, error: impl Into<String>, code: &str) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            code: code.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        json_error(self.status, &self.error, Some(&self.code))
    }
}

/// Handles every request under `/api/v2` and records it with the status of its response.
pub(crate) async fn handle_api_request(
    State(sim): State<Arc<SimState>>,
    request: Request,
) -> Response {
    let (parts, _body) = request.into_parts();
    let path = api_path(parts.uri.path()).to_string();
    let key = api_key(&parts.headers);
    let fingerprint = key.as_deref().map(key_fingerprint);

    let record_id = sim.record_request(RecordedRequest {
        method: parts.method.to_string(),
        path: path.clone(),
        query: parts.uri.query().map(str::to_string),
        api_key_present: key.is_some(),
        key_fingerprint: fingerprint.clone(),
        status: 0,
        received_at: Utc::now(),
    });

    let closer = parts.extensions.get::<ConnectionCloser>().cloned();
    let response = answer(
        &sim,
        &parts.method,
        &parts.uri,
        &path,
        key.as_deref(),
        closer,
    )
    .await;

    let status = response.status().as_u16();
    sim.set_request_status(record_id, status);
    debug!(method = %parts.method, path, status, key = fingerprint.as_deref(), "API request handled");
    response
}

fn api_path(full_path: &str) -> &str {
    match full_path.strip_prefix(API_PREFIX) {
        Some("") | None => "/",
        Some(rest) => rest,
    }
}

/// Reads `X-Api-Key`, where an empty value counts as missing. A value that is not UTF-8 is
/// converted lossily, so it fails as an invalid key rather than a missing one.
fn api_key(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("x-api-key")?;
    let key = String::from_utf8_lossy(value.as_bytes()).trim().to_string();
    (!key.is_empty()).then_some(key)
}

async fn answer(
    sim: &SimState,
    method: &Method,
    uri: &Uri,
    path: &str,
    key: Option<&str>,
    closer: Option<ConnectionCloser>,
) -> Response {
    if let Some(fault) = sim.take_fault(key, path) {
        info!(
            kind = fault.kind.name(),
            path,
            key = key.map(key_fingerprint).as_deref(),
            times_remaining = fault.times.map(|times| times.saturating_sub(1)),
            "fault applied"
        );
        match &fault.kind {
            FaultKind::Delay { ms } => tokio::time::sleep(Duration::from_millis(*ms)).await,
            FaultKind::NoAnswer => return hold_without_answer(closer).await,
            kind => {
                if let Some(response) = immediate_response(kind) {
                    return response;
                }
            }
        }
    }

    answer_normally(sim, method, uri, path, key)
}

/// Keeps the request open for [`NO_ANSWER_HOLD`], then has the connection closed without a
/// response. Shutting the simulator down closes it earlier.
async fn hold_without_answer(closer: Option<ConnectionCloser>) -> Response {
    tokio::time::sleep(NO_ANSWER_HOLD).await;
    if let Some(closer) = closer {
        closer.close();
    }
    // The connection task drops this future once it receives the close request.
    std::future::pending().await
}

fn answer_normally(
    sim: &SimState,
    method: &Method,
    uri: &Uri,
    path: &str,
    key: Option<&str>,
) -> Response {
    let Some(endpoint) = Endpoint::from_path(path) else {
        return json_error(
            StatusCode::NOT_FOUND,
            &format!("Not found: no endpoint at {API_PREFIX}{path}"),
            Some("not_found"),
        );
    };
    if method != Method::GET {
        let mut response = json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!("Method {method} is not allowed on {API_PREFIX}{path}; use GET"),
            Some("method_not_allowed"),
        );
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return response;
    }

    let caller = match sim.authenticate(key) {
        Ok(caller) => caller,
        Err(failure) => return auth_failure_response(failure),
    };

    let params = match Query::<HashMap<String, String>>::try_from_uri(uri) {
        Ok(Query(params)) => params,
        Err(rejection) => {
            return json_error(
                StatusCode::BAD_REQUEST,
                &format!("Invalid query string: {}", rejection.body_text()),
                Some("invalid_query"),
            )
        }
    };

    let result = match endpoint {
        Endpoint::Account => account(sim, &caller),
        Endpoint::Usage => usage(sim, &caller, &params),
        Endpoint::Balance => balance(sim, &caller),
        Endpoint::Lists => lists(sim, &caller, &params),
        Endpoint::Events => events(sim, &caller, &params),
    };
    result.unwrap_or_else(IntoResponse::into_response)
}

fn auth_failure_response(failure: AuthFailure) -> Response {
    match failure {
        AuthFailure::MissingKey => json_error(
            StatusCode::UNAUTHORIZED,
            "Missing API key: send it in the X-Api-Key header",
            Some("missing_api_key"),
        ),
        AuthFailure::InvalidKey => json_error(
            StatusCode::UNAUTHORIZED,
            "Invalid API key",
            Some("invalid_api_key"),
        ),
        // The real API sends this 403 without a code.
        AuthFailure::Suspended => json_error(StatusCode::FORBIDDEN, "Account is suspended", None),
    }
}

type EndpointResult = Result<Response, ApiError>;

fn inconsistent_state(error: SimError) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Simulator state is inconsistent: {error}"),
        "internal_error",
    )
}

fn caller_account(sim: &SimState, caller: &Caller) -> Result<SeedAccount, ApiError> {
    // Accounts are never removed, so an authenticated caller always has one.
    sim.account(&caller.account_id).map_err(inconsistent_state)
}

fn account(sim: &SimState, caller: &Caller) -> EndpointResult {
    let account = caller_account(sim, caller)?;
    let body = json!({
        "account": {
            "id": account.id,
            "name": account.name,
            "status": account.status.as_str(),
            "role": caller.role,
            "created_at": account.created_at,
        }
    });
    Ok(Json(body).into_response())
}

fn usage(sim: &SimState, caller: &Caller, params: &HashMap<String, String>) -> EndpointResult {
    let period = match params.get("period") {
        None => Period::Month,
        Some(value) => Period::parse(value).ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("Invalid period {value:?}: use today, week, month or all"),
                "invalid_period",
            )
        })?,
    };
    let account = caller_account(sim, caller)?;
    let totals = period.totals(&account.usage);
    let now = Utc::now();

    let mut usage = Map::new();
    usage.insert("period".into(), Value::from(period.as_str()));
    if let Some(start) = period.start(now) {
        usage.insert("start".into(), Value::from(format_time(start)));
    }
    usage.insert("end".into(), Value::from(format_time(now)));
    usage.insert(
        "outbound_messages".into(),
        Value::from(totals.outbound_messages),
    );
    usage.insert(
        "inbound_messages".into(),
        Value::from(totals.inbound_messages),
    );
    usage.insert("segments".into(), Value::from(totals.segments));
    usage.insert("estimated_cost".into(), json!(totals.estimated_cost));

    Ok(Json(json!({ "usage": usage })).into_response())
}

fn balance(sim: &SimState, caller: &Caller) -> EndpointResult {
    let account = caller_account(sim, caller)?;
    let balance = &account.balance;
    let body = json!({
        "balance": {
            "unbilled_segments": balance.unbilled_segments,
            "estimated_amount": balance.estimated_amount,
            "last_billed_at": balance.last_billed_at,
            "next_charge_at_segments": balance.next_charge_at_segments,
        }
    });
    Ok(Json(body).into_response())
}

fn lists(sim: &SimState, caller: &Caller, params: &HashMap<String, String>) -> EndpointResult {
    let page = parse_number(params, "page", 1, 1..=u64::from(u32::MAX), "invalid_page")?;
    let per_page = parse_number(
        params,
        "per_page",
        LISTS_DEFAULT_PER_PAGE,
        1..=LISTS_MAX_PER_PAGE,
        "invalid_per_page",
    )?;
    let account = caller_account(sim, caller)?;

    // NOTE: the contract fixes only the pagination object, so the `lists` key and the item fields
    // (id, name, number) are this simulator's choice. An account with no lists has 0 pages.
    let total = account.lists.len() as u64;
    let total_pages = total.div_ceil(per_page);
    // A page past the last one is empty rather than an error.
    let skip = usize::try_from((page - 1).saturating_mul(per_page)).unwrap_or(usize::MAX);
    let take = usize::try_from(per_page).unwrap_or(usize::MAX);
    let lists: Vec<&_> = account.lists.iter().skip(skip).take(take).collect();

    let body = json!({
        "lists": lists,
        "pagination": {
            "page": page,
            "per_page": per_page,
            "total": total,
            "total_pages": total_pages,
        }
    });
    Ok(Json(body).into_response())
}

fn events(sim: &SimState, caller: &Caller, params: &HashMap<String, String>) -> EndpointResult {
    let limit = parse_number(
        params,
        "limit",
        EVENTS_DEFAULT_LIMIT,
        1..=EVENTS_MAX_LIMIT,
        "invalid_limit",
    )?;
    let after = params.get("after").map(String::as_str);

    let page = sim
        .events_page(
            &caller.account_id,
            after,
            usize::try_from(limit).unwrap_or(usize::MAX),
        )
        .map_err(inconsistent_state)?
        .map_err(|UnknownCursor| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Invalid cursor {:?}: pass a next_cursor value from an earlier answer, or \
                     omit `after` to start at the newest event",
                    after.unwrap_or_default()
                ),
                "invalid_cursor",
            )
        })?;

    let body = json!({
        "events": page.events,
        "next_cursor": page.next_cursor,
        "has_more": page.has_more,
    });
    Ok(Json(body).into_response())
}

/// Reads an optional whole-number query parameter. A value that is not a number in `range` is a
/// 400 error with `code`.
fn parse_number(
    params: &HashMap<String, String>,
    name: &str,
    default: u64,
    range: RangeInclusive<u64>,
    code: &str,
) -> Result<u64, ApiError> {
    let Some(value) = params.get(name) else {
        return Ok(default);
    };
    value
        .parse::<u64>()
        .ok()
        .filter(|number| range.contains(number))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!(
                    "Invalid {name} {value:?}: use a whole number from {} to {}",
                    range.start(),
                    range.end()
                ),
                code,
            )
        })
}

fn format_time(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_path_strips_prefix() {
        assert_eq!(api_path("/api/v2/account"), "/account");
        assert_eq!(api_path("/api/v2/billing/balance"), "/billing/balance");
        assert_eq!(api_path("/api/v2"), "/");
        assert_eq!(api_path("/api/v2/"), "/");
    }

    #[test]
    fn endpoint_paths_round_trip() {
        let paths: Vec<&str> = endpoint_paths().collect();
        assert_eq!(
            paths,
            [
                "/account",
                "/usage",
                "/billing/balance",
                "/lists",
                "/events"
            ]
        );
        for path in paths {
            assert!(is_endpoint_path(path), "{path}");
        }
        for path in ["/", "/acount", "/account/", "/Account", "/api/v2/account"] {
            assert!(!is_endpoint_path(path), "{path}");
        }
    }

    #[test]
    fn parse_number_bounds() {
        let params: HashMap<String, String> = [
            ("limit".to_string(), "500".to_string()),
            ("page".to_string(), "0".to_string()),
            ("per_page".to_string(), "ten".to_string()),
        ]
        .into();
        assert_eq!(
            parse_number(&params, "limit", 100, 1..=500, "invalid_limit").ok(),
            Some(500)
        );
        assert_eq!(
            parse_number(&params, "absent", 7, 1..=500, "x").ok(),
            Some(7)
        );

        let page = parse_number(&params, "page", 1, 1..=10, "invalid_page").unwrap_err();
        assert_eq!(page.status, StatusCode::BAD_REQUEST);
        assert_eq!(page.code, "invalid_page");
        assert!(page.error.contains("\"0\""), "{}", page.error);
        let per_page =
            parse_number(&params, "per_page", 50, 1..=100, "invalid_per_page").unwrap_err();
        assert_eq!(per_page.code, "invalid_per_page");
    }
}
