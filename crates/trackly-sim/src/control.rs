//! Control API under `/_control`, for local runs and curl: the HTTP form of the
//! [`SimHandle`](crate::SimHandle) methods.

use std::fmt::Write as _;
use std::future::{ready, Ready};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use serde_path_to_error::Segment;
use tracing::{info, warn};

use crate::api::{json_error, ApiError};
use crate::fault::Fault;
use crate::seed::{key_fingerprint, AccountStatus};
use crate::state::{SimError, SimState};

/// Routes of the control API, to be merged into the simulator's router.
///
/// Each route rejects other methods with a JSON 405 that names the methods it serves, and axum
/// adds the `Allow` header.
pub(crate) fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route(
            "/_control/faults",
            get(list_faults)
                .post(add_fault)
                .delete(clear_faults)
                .fallback(reject_method(&[Method::GET, Method::POST, Method::DELETE])),
        )
        .route(
            "/_control/requests",
            get(list_requests)
                .delete(clear_requests)
                .fallback(reject_method(&[Method::GET, Method::DELETE])),
        )
        .route(
            "/_control/accounts/{id}/events",
            post(append_events).fallback(reject_method(&[Method::POST])),
        )
        .route(
            "/_control/accounts/{id}/status",
            post(set_account_status).fallback(reject_method(&[Method::POST])),
        )
        .route(
            "/_control/keys/revoke",
            post(revoke_key).fallback(reject_method(&[Method::POST])),
        )
        .route(
            "/_control/reset",
            post(reset).fallback(reject_method(&[Method::POST])),
        )
}

/// Builds the handler for methods a control route does not serve. `allowed` must list the
/// methods of the route's handlers, which axum also sends in the `Allow` header.
fn reject_method(
    allowed: &'static [Method],
) -> impl Fn(Method, Uri) -> Ready<Response> + Clone + Send + Sync + 'static {
    move |method, uri| {
        let allowed: Vec<&str> = allowed.iter().map(Method::as_str).collect();
        warn!(%method, path = uri.path(), "control: method not allowed");
        ready(json_error(
            StatusCode::METHOD_NOT_ALLOWED,
            &format!(
                "Method {method} is not allowed on {}. Allowed methods: {}",
                uri.path(),
                allowed.join(", ")
            ),
            Some("method_not_allowed"),
        ))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsBody {
    events: Vec<Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusBody {
    status: AccountStatus,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    key: String,
}

/// Parses a JSON body whatever its `Content-Type`, so that a plain `curl -d` works too.
fn parse_body<T: DeserializeOwned>(body: &Bytes, example: &str) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        warn!("control: rejected an empty request body");
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            format!("Missing request body: expected JSON such as {example}"),
            "invalid_body",
        ));
    }

    let mut deserializer = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let location = readable_location(error.path());
        let at = location
            .as_deref()
            .map(|location| format!(" at `{location}`"))
            .unwrap_or_default();
        warn!(location, error = %error.inner(), "control: rejected request body");
        ApiError::new(
            StatusCode::BAD_REQUEST,
            format!(
                "Invalid request body{at}: {}. Expected JSON such as {example}",
                error.inner()
            ),
            "invalid_body",
        )
    })
}

/// Formats the location of an invalid value, such as `events[0].data`, or `None` for the body
/// as a whole. serde_path_to_error cannot name a map key that failed to parse (a syntax error
/// such as a trailing comma), so the location stops before it. serde_json's message still gives
/// the line and column.
fn readable_location(path: &serde_path_to_error::Path) -> Option<String> {
    let mut location = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => {
                let _ = write!(location, "[{index}]");
            }
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !location.is_empty() {
                    location.push('.');
                }
                location.push_str(name);
            }
            Segment::Unknown => break,
        }
    }
    (!location.is_empty()).then_some(location)
}

fn sim_error_response(error: &SimError) -> Response {
    let (status, code) = match error {
        SimError::UnknownAccount(_) => (StatusCode::NOT_FOUND, "unknown_account"),
        SimError::UnknownKey(_) => (StatusCode::NOT_FOUND, "unknown_key"),
        SimError::InvalidEvent { .. } => (StatusCode::BAD_REQUEST, "invalid_event"),
    };
    json_error(status, &error.to_string(), Some(code))
}

async fn list_faults(State(sim): State<Arc<SimState>>) -> Response {
    Json(json!({ "faults": sim.faults() })).into_response()
}

async fn add_fault(State(sim): State<Arc<SimState>>, body: Bytes) -> Response {
    let fault: Fault = match parse_body(
        &body,
        r#"{"path": "/account", "times": 1, "kind": "unauthorized"}"#,
    ) {
        Ok(fault) => fault,
        Err(error) => return error.into_response(),
    };
    if let Err(message) = fault.validate() {
        warn!(%message, "control: rejected fault");
        return json_error(StatusCode::BAD_REQUEST, &message, Some("invalid_fault"));
    }

    info!(fault = ?fault, "control: fault added");
    sim.add_fault(fault);
    (StatusCode::CREATED, Json(json!({ "faults": sim.faults() }))).into_response()
}

async fn clear_faults(State(sim): State<Arc<SimState>>) -> Response {
    let cleared = sim.clear_faults();
    info!(cleared, "control: faults cleared");
    Json(json!({ "cleared": cleared })).into_response()
}

async fn list_requests(State(sim): State<Arc<SimState>>) -> Response {
    Json(json!({ "requests": sim.requests() })).into_response()
}

async fn clear_requests(State(sim): State<Arc<SimState>>) -> Response {
    let cleared = sim.clear_requests();
    info!(cleared, "control: request log cleared");
    Json(json!({ "cleared": cleared })).into_response()
}

async fn append_events(
    State(sim): State<Arc<SimState>>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> Response {
    let example = r#"{"events": [{"type": "opt_out", "data": {"phone_number": "+14155551234"}}]}"#;
    let body: EventsBody = match parse_body(&body, example) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };

    match sim.append_events(&account_id, body.events) {
        Ok(cursors) => {
            info!(
                account_id,
                appended = cursors.len(),
                "control: events appended"
            );
            Json(json!({
                "account_id": account_id,
                "appended": cursors.len(),
                "cursors": cursors,
            }))
            .into_response()
        }
        Err(error) => {
            warn!(account_id, %error, "control: events rejected");
            sim_error_response(&error)
        }
    }
}

async fn set_account_status(
    State(sim): State<Arc<SimState>>,
    Path(account_id): Path<String>,
    body: Bytes,
) -> Response {
    let body: StatusBody = match parse_body(&body, r#"{"status": "suspended"}"#) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };

    match sim.set_account_status(&account_id, body.status) {
        Ok(()) => {
            info!(account_id, status = %body.status, "control: account status set");
            Json(json!({ "account_id": account_id, "status": body.status })).into_response()
        }
        Err(error) => {
            warn!(account_id, %error, "control: account status not set");
            sim_error_response(&error)
        }
    }
}

async fn revoke_key(State(sim): State<Arc<SimState>>, body: Bytes) -> Response {
    let body: RevokeBody = match parse_body(&body, r#"{"key": "trk_..."}"#) {
        Ok(body) => body,
        Err(error) => return error.into_response(),
    };
    let fingerprint = key_fingerprint(&body.key);

    match sim.revoke_key(&body.key) {
        Ok(()) => {
            info!(key = %fingerprint, "control: key revoked");
            Json(json!({ "revoked_key_fingerprint": fingerprint })).into_response()
        }
        Err(error) => {
            warn!(key = %fingerprint, %error, "control: key not revoked");
            sim_error_response(&error)
        }
    }
}

async fn reset(State(sim): State<Arc<SimState>>) -> Response {
    let faults_cleared = sim.clear_faults();
    let requests_cleared = sim.clear_requests();
    info!(faults_cleared, requests_cleared, "control: reset");
    Json(json!({
        "faults_cleared": faults_cleared,
        "requests_cleared": requests_cleared,
    }))
    .into_response()
}
