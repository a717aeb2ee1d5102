//! The REST side: one handler receives every request, records it, checks it against the
//! OpenAPI description, applies scripted errors and routes it.

mod application;
mod channels;
mod guild;
mod interactions;
mod messages;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::State as AxumState;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::openapi::CheckedBody;
use crate::payloads::error_body;
use crate::shared::Shared;
use crate::state::State;
use crate::types::{RecordedRequest, ScriptedError};

/// Maximum length of a body excerpt in a request log line, in characters.
const LOG_BODY_CHARS: usize = 240;

/// A file part of a multipart/form-data body.
#[derive(Clone, Debug)]
pub(crate) struct FilePart {
    pub field: String,
    pub filename: String,
    pub content_type: Option<String>,
    pub data: Bytes,
}

/// A request as the route handlers see it.
pub(crate) struct Request {
    pub method: Method,
    /// Path segments after `/api/v10`.
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    pub body: CheckedBody,
    pub files: Vec<FilePart>,
}

impl Request {
    /// Returns the JSON body, or the `payload_json` part of a multipart body, or `Null`.
    pub fn json(&self) -> Value {
        match &self.body {
            CheckedBody::Json(value) => value.clone(),
            CheckedBody::Multipart {
                payload_json: Some(value),
                ..
            } => value.clone(),
            _ => Value::Null,
        }
    }

    fn segment_refs(&self) -> Vec<&str> {
        self.segments.iter().map(String::as_str).collect()
    }
}

/// A response before it becomes an HTTP response.
#[derive(Debug)]
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Option<Value>,
    pub headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub fn json(status: StatusCode, body: Value) -> Reply {
        Reply {
            status,
            body: Some(body),
            headers: Vec::new(),
        }
    }

    pub fn ok(body: Value) -> Reply {
        Reply::json(StatusCode::OK, body)
    }

    pub fn created(body: Value) -> Reply {
        Reply::json(StatusCode::CREATED, body)
    }

    pub fn no_content() -> Reply {
        Reply {
            status: StatusCode::NO_CONTENT,
            body: None,
            headers: Vec::new(),
        }
    }

    pub fn error(status: StatusCode, code: u64, message: &str) -> Reply {
        Reply::json(status, error_body(code, message))
    }

    /// Builds a 400 "Invalid Form Body" (50035) that names the field and what is wrong with it.
    pub fn invalid_form(field: &str, error_code: &str, message: &str) -> Reply {
        let mut errors = json!({});
        errors[field] = json!({ "_errors": [{ "code": error_code, "message": message }] });
        Reply::json(
            StatusCode::BAD_REQUEST,
            json!({ "code": 50035, "message": "Invalid Form Body", "errors": errors }),
        )
    }

    /// Builds a 400 "Invalid Form Body" (50035) for a nested field, with `errors` nested along
    /// the dotted `path` as Discord nests them, such as `embeds.0.fields.3.value`.
    pub fn invalid_form_at(path: &str, error_code: &str, message: &str) -> Reply {
        let mut errors = json!({ "_errors": [{ "code": error_code, "message": message }] });
        for segment in path.rsplit('.') {
            let mut parent = json!({});
            parent[segment] = errors;
            errors = parent;
        }
        Reply::json(
            StatusCode::BAD_REQUEST,
            json!({ "code": 50035, "message": "Invalid Form Body", "errors": errors }),
        )
    }

    pub fn unknown_channel() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10003, "Unknown Channel")
    }

    pub fn unknown_guild() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10004, "Unknown Guild")
    }

    pub fn unknown_member() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10007, "Unknown Member")
    }

    pub fn unknown_message() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10008, "Unknown Message")
    }

    pub fn unknown_role() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10011, "Unknown Role")
    }

    pub fn unknown_user() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10013, "Unknown User")
    }

    pub fn unknown_webhook() -> Reply {
        Reply::error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook")
    }

    pub fn missing_access() -> Reply {
        Reply::error(StatusCode::FORBIDDEN, 50001, "Missing Access")
    }

    pub fn missing_permissions() -> Reply {
        Reply::error(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
    }

    pub fn wrong_channel_type() -> Reply {
        Reply::error(
            StatusCode::BAD_REQUEST,
            50024,
            "Cannot execute action on this channel type",
        )
    }

    fn into_response(self) -> Response {
        let mut response = match self.body {
            Some(body) => (self.status, axum::Json(body)).into_response(),
            None => self.status.into_response(),
        };
        for (name, value) in self.headers {
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// Parses a path segment as a snowflake.
pub(crate) fn parse_id(segment: &str) -> Option<u64> {
    segment.parse().ok()
}

/// Handles every REST request: parse, check, script, route, record.
pub(crate) async fn handle(
    AxumState(shared): AxumState<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let path = uri.path().to_string();
    let query = uri.query().map(str::to_string);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .unwrap_or_default()
        .to_string();
    // The header's value is the bot token: only its presence is kept.
    let authorization_present = headers.contains_key(header::AUTHORIZATION);

    let (checked_body, files) = parse_body(&content_type, &body).await;
    let violations = match &shared.openapi {
        Some(spec) => spec.check(method.as_str(), &path, &checked_body),
        None => Vec::new(),
    };

    let request = Request {
        method: method.clone(),
        segments: path
            .strip_prefix("/api/v10")
            .unwrap_or("")
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_string)
            .collect(),
        query: parse_query(query.as_deref()),
        body: checked_body,
        files,
    };

    let (reply, hold) = shared.update(|state| {
        let (reply, unhandled) = respond(state, &request, &path, authorization_present);
        let hold = take_held_reply(state, method.as_str(), &path);
        record(
            state,
            RecordedRequest {
                at,
                method: method.to_string(),
                path: path.clone(),
                query: query.clone(),
                body: match &request.body {
                    CheckedBody::Empty | CheckedBody::Unreadable(_) => None,
                    _ => Some(request.json()),
                },
                raw_body_len: body.len(),
                authorization_present,
                status: reply.status.as_u16(),
            },
            &request.files,
            violations,
            unhandled,
        );
        (reply, hold)
    });
    if let Some(hold) = hold {
        tokio::time::sleep(hold).await;
    }
    reply.into_response()
}

/// Builds the reply, and returns `true` beside it when the fake does not handle the route.
fn respond(
    state: &mut State,
    request: &Request,
    path: &str,
    authorization_present: bool,
) -> (Reply, bool) {
    if let Some(reply) = take_scripted_error(state, request.method.as_str(), path) {
        return (reply, false);
    }
    if let CheckedBody::Unreadable(reason) = &request.body {
        state.log_line(format!("rejected body: {reason}"));
        return (
            Reply::error(
                StatusCode::BAD_REQUEST,
                50109,
                "The request body contains invalid JSON.",
            ),
            false,
        );
    }
    if !path.starts_with("/api/v10/") {
        return (not_found(), true);
    }
    if !authorization_present && requires_authorization(&request.segments) {
        return (
            Reply::error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"),
            false,
        );
    }

    match route(state, request) {
        Some(reply) => (reply, false),
        None => (not_found(), true),
    }
}

/// Runs one JSON request through the same path as the server, without HTTP or recording.
#[cfg(test)]
pub(crate) fn respond_for_test(
    state: &mut State,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Option<Value>) {
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    let request = Request {
        method,
        segments: path
            .strip_prefix("/api/v10")
            .unwrap_or("")
            .split('/')
            .filter(|segment| !segment.is_empty())
            .map(str::to_string)
            .collect(),
        query: parse_query(Some(query)),
        body: body.map_or(CheckedBody::Empty, CheckedBody::Json),
        files: Vec::new(),
    };
    let (reply, _) = respond(state, &request, path, true);
    (reply.status, reply.body)
}

fn not_found() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, 0, "404: Not Found")
}

/// Interaction callbacks, interaction webhooks and the gateway URL need no bot token.
fn requires_authorization(segments: &[String]) -> bool {
    let first = segments.first().map(String::as_str);
    let interaction_webhook = first == Some("webhooks") && segments.len() >= 3;
    let public = matches!(first, Some("interactions" | "gateway"));
    !(public || interaction_webhook)
}

fn route(state: &mut State, request: &Request) -> Option<Reply> {
    let segments = request.segment_refs();
    match segments.first().copied()? {
        "gateway" | "oauth2" | "users" | "applications" => {
            application::route(state, request, &segments)
        }
        "interactions" | "webhooks" => interactions::route(state, request, &segments),
        "channels" => match segments.get(2).copied() {
            Some("messages") => messages::route(state, request, &segments),
            _ => channels::route(state, request, &segments),
        },
        "guilds" => guild::route(state, request, &segments),
        _ => None,
    }
}

/// Applies the first scripted error that matches, counting down its `times`.
fn take_scripted_error(state: &mut State, method: &str, path: &str) -> Option<Reply> {
    let index = state
        .scripted
        .iter()
        .position(|error| scripted_error_matches(error, method, path))?;
    let error = state.scripted[index].clone();
    if let Some(times) = state.scripted[index].times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            state.scripted.remove(index);
        }
    }

    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut body = error_body(error.code, &error.message);
    let mut headers = Vec::new();
    if status == StatusCode::TOO_MANY_REQUESTS {
        let retry_after = error.retry_after.unwrap_or(1.0).max(0.0);
        body["retry_after"] = json!(retry_after);
        body["global"] = json!(false);
        // Discord sends the header in whole seconds, rounded up.
        headers.push((
            header::RETRY_AFTER,
            format!("{}", retry_after.ceil() as u64),
        ));
        headers.push((
            HeaderName::from_static("x-ratelimit-scope"),
            "user".to_string(),
        ));
    }
    Some(Reply {
        status,
        body: Some(body),
        headers,
    })
}

/// Returns how long to hold the reply to this request, counting down the hold's `times`.
fn take_held_reply(state: &mut State, method: &str, path: &str) -> Option<std::time::Duration> {
    let index = state
        .held_replies
        .iter()
        .position(|held| route_matches(&held.method, &held.path, method, path))?;
    let held = state.held_replies[index].clone();
    if let Some(times) = state.held_replies[index].times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            state.held_replies.remove(index);
        }
    }
    state.log_line(format!(
        "held reply: {method} {path} for {} ms",
        held.hold.as_millis()
    ));
    Some(held.hold)
}

/// Matches a scripted error's method and path pattern, where `*` stands for one segment.
pub(crate) fn scripted_error_matches(error: &ScriptedError, method: &str, path: &str) -> bool {
    route_matches(&error.method, &error.path, method, path)
}

/// Matches a method and a path pattern, where `*` stands for one segment.
fn route_matches(pattern_method: &str, pattern_path: &str, method: &str, path: &str) -> bool {
    if !pattern_method.eq_ignore_ascii_case(method) {
        return false;
    }
    let pattern: Vec<&str> = pattern_path.split('/').collect();
    let actual: Vec<&str> = path.split('/').collect();
    pattern.len() == actual.len()
        && pattern
            .iter()
            .zip(&actual)
            .all(|(expected, actual)| *expected == "*" || expected == actual)
}

fn record(
    state: &mut State,
    request: RecordedRequest,
    files: &[FilePart],
    violations: Vec<String>,
    unhandled: bool,
) {
    let target = match &request.query {
        Some(query) => format!("{}?{query}", request.path),
        None => request.path.clone(),
    };
    let mut line = format!("{} {target} -> {}", request.method, request.status);
    if let Some(body) = &request.body {
        line.push_str(&format!(" {}", excerpt(&body.to_string())));
    }
    for file in files {
        line.push_str(&format!(
            " [file {} {} ({} bytes)]",
            file.field,
            file.filename,
            file.data.len()
        ));
    }
    state.log_line(line);

    let mut reasons = violations;
    if unhandled {
        reasons.push("unhandled route".to_string());
    }
    for reason in reasons {
        let violation = format!("{} {}: {reason}", request.method, request.path);
        state.log_line(format!("  ! {violation}"));
        state.violations.push(violation);
    }
    state.requests.push(request);
}

fn excerpt(text: &str) -> String {
    if text.chars().count() <= LOG_BODY_CHARS {
        return text.to_string();
    }
    let mut short: String = text.chars().take(LOG_BODY_CHARS).collect();
    short.push('…');
    short
}

fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    query
        .unwrap_or_default()
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((name, value)) => (name.to_string(), value.to_string()),
            None => (pair.to_string(), String::new()),
        })
        .collect()
}

/// Reads a body as JSON or multipart/form-data, the two encodings Discord accepts from bots.
async fn parse_body(content_type: &str, body: &Bytes) -> (CheckedBody, Vec<FilePart>) {
    if body.is_empty() {
        return (CheckedBody::Empty, Vec::new());
    }
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();

    match media_type.as_str() {
        "application/json" => match serde_json::from_slice(body) {
            Ok(value) => (CheckedBody::Json(value), Vec::new()),
            Err(error) => (
                CheckedBody::Unreadable(format!("the body is not valid JSON: {error}")),
                Vec::new(),
            ),
        },
        "multipart/form-data" => match parse_multipart(content_type, body.clone()).await {
            Ok(parsed) => parsed,
            Err(reason) => (CheckedBody::Unreadable(reason), Vec::new()),
        },
        "" => (
            CheckedBody::Unreadable("the body has no Content-Type header".to_string()),
            Vec::new(),
        ),
        other => (
            CheckedBody::Unreadable(format!(
                "the Content-Type {other} is not supported; send application/json or \
                 multipart/form-data"
            )),
            Vec::new(),
        ),
    }
}

async fn parse_multipart(
    content_type: &str,
    body: Bytes,
) -> Result<(CheckedBody, Vec<FilePart>), String> {
    let boundary = multer::parse_boundary(content_type)
        .map_err(|error| format!("the multipart Content-Type has no boundary: {error}"))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);

    let mut payload_json = None;
    let mut text_fields = Vec::new();
    let mut files = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|error| format!("the multipart body is malformed: {error}"))?
    {
        let name = field.name().unwrap_or_default().to_string();
        let filename = field.file_name().map(str::to_string);
        let content_type = field.content_type().map(ToString::to_string);
        let data = field
            .bytes()
            .await
            .map_err(|error| format!("the multipart part {name} is malformed: {error}"))?;

        match filename {
            Some(filename) => files.push(FilePart {
                field: name,
                filename,
                content_type,
                data,
            }),
            None if name == "payload_json" => {
                let value = serde_json::from_slice(&data)
                    .map_err(|error| format!("the payload_json part is not valid JSON: {error}"))?;
                payload_json = Some(value);
            }
            None => text_fields.push((name, String::from_utf8_lossy(&data).into_owned())),
        }
    }

    let file_fields = files.iter().map(|file| file.field.clone()).collect();
    Ok((
        CheckedBody::Multipart {
            payload_json,
            text_fields,
            file_fields,
        },
        files,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripted_error_star_matches_one_segment() {
        let error = ScriptedError::new("post", "/api/v10/channels/*/messages", 403, 50007, "x");
        assert!(scripted_error_matches(
            &error,
            "POST",
            "/api/v10/channels/1/messages"
        ));
        assert!(!scripted_error_matches(
            &error,
            "GET",
            "/api/v10/channels/1/messages"
        ));
        assert!(!scripted_error_matches(
            &error,
            "POST",
            "/api/v10/channels/1/2/messages"
        ));
        assert!(!scripted_error_matches(
            &error,
            "POST",
            "/api/v10/channels/1"
        ));
    }

    #[test]
    fn parse_query_splits_pairs() {
        let query = parse_query(Some("limit=5&before=10&wait"));
        assert_eq!(query["limit"], "5");
        assert_eq!(query["before"], "10");
        assert_eq!(query["wait"], "");
    }

    #[tokio::test]
    async fn parse_body_reads_multipart_parts() {
        let body = "--b\r\nContent-Disposition: form-data; name=\"payload_json\"\r\n\r\n\
                    {\"content\":\"hi\"}\r\n--b\r\nContent-Disposition: form-data; \
                    name=\"files[0]\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\n\
                    abc\r\n--b--\r\n";
        let (checked, files) =
            parse_body("multipart/form-data; boundary=b", &Bytes::from(body)).await;

        let CheckedBody::Multipart {
            payload_json,
            file_fields,
            ..
        } = checked
        else {
            panic!("expected a multipart body, got {checked:?}");
        };
        assert_eq!(payload_json.unwrap()["content"], "hi");
        assert_eq!(file_fields, vec!["files[0]".to_string()]);
        assert_eq!(files[0].filename, "a.txt");
        assert_eq!(&files[0].data[..], b"abc");
    }

    #[tokio::test]
    async fn parse_body_flags_invalid_json() {
        let (checked, _) = parse_body("application/json", &Bytes::from("{")).await;
        assert!(matches!(checked, CheckedBody::Unreadable(_)), "{checked:?}");
    }
}
