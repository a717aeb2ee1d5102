//! Conformance check of requests against Discord's OpenAPI 3.1 description.
//!
//! Each request is matched to a path template and method of the description. A JSON body is
//! validated against the operation's `application/json` request schema, whose `$ref`s resolve
//! inside the description. A multipart body is validated as the form it stands for: the fields of
//! `payload_json` plus one string per file part, against the `multipart/form-data` schema.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use anyhow::Context;
use jsonschema::{Draft, Validator};
use serde_json::{json, Map, Value};

/// Base URI under which the description is registered, so `#/components/...` refs resolve in it.
const DOCUMENT_URI: &str = "urn:discord-openapi";

/// Maximum length of one validation message in a violation line, in characters.
const MAX_MESSAGE_CHARS: usize = 300;

/// Maximum number of schema errors reported for one request.
const MAX_ERRORS: usize = 3;

/// A request body in the form the checker validates.
#[derive(Clone, Debug)]
pub(crate) enum CheckedBody {
    Empty,
    Json(Value),
    /// A multipart/form-data body: the parsed `payload_json` part (if any) and the other parts.
    Multipart {
        payload_json: Option<Value>,
        text_fields: Vec<(String, String)>,
        file_fields: Vec<String>,
    },
    /// A body the fake could not read, with the reason.
    Unreadable(String),
}

/// Descriptions loaded in this process by path. `None` marks a missing file, so its notice
/// prints once.
static SPECS: OnceLock<Mutex<HashMap<PathBuf, Option<Arc<Spec>>>>> = OnceLock::new();

/// Loads the description at `path` once per process. Returns `Ok(None)` and prints
/// "OpenAPI check skipped: <path> not found" once when the file does not exist.
pub(crate) fn load(path: &Path) -> anyhow::Result<Option<Arc<Spec>>> {
    let specs = SPECS.get_or_init(Default::default);
    let mut specs = specs.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(spec) = specs.get(path) {
        return Ok(spec.clone());
    }

    if !path.exists() {
        eprintln!("OpenAPI check skipped: {} not found", path.display());
        specs.insert(path.to_path_buf(), None);
        return Ok(None);
    }

    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read the OpenAPI description {}", path.display()))?;
    let document: Value = serde_json::from_str(&text).with_context(|| {
        format!(
            "the OpenAPI description {} is not valid JSON; restore the file or point \
             DISCORD_OPENAPI_SPEC at a valid copy",
            path.display()
        )
    })?;
    let spec = Arc::new(Spec::new(document).with_context(|| {
        format!(
            "the OpenAPI description {} has no usable `paths`",
            path.display()
        )
    })?);
    specs.insert(path.to_path_buf(), Some(spec.clone()));
    Ok(Some(spec))
}

/// One path template of the description, split into segments.
struct PathTemplate {
    template: String,
    /// `None` for a `{parameter}` segment, which matches any one segment.
    segments: Vec<Option<String>>,
    methods: Vec<String>,
}

/// Kind of request schema that a validator checks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum MediaKind {
    Json,
    Multipart,
    /// The schema of the multipart `payload_json` property, where the description has one.
    MultipartPayloadJson,
}

/// Discord's OpenAPI description with a cache of compiled request body validators.
pub(crate) struct Spec {
    document: Value,
    templates: Vec<PathTemplate>,
    /// Compiled validators by the JSON Pointer of their schema in the description.
    validators: Mutex<HashMap<String, Arc<Result<Validator, String>>>>,
}

impl Spec {
    fn new(mut document: Value) -> anyhow::Result<Spec> {
        relax_schemas(&mut document);

        let paths = document
            .get("paths")
            .and_then(Value::as_object)
            .context("`paths` is missing or not an object")?;
        let templates = paths
            .iter()
            .map(|(template, item)| PathTemplate {
                template: template.clone(),
                segments: split_path(template)
                    .map(|segment| {
                        let is_parameter = segment.starts_with('{') && segment.ends_with('}');
                        (!is_parameter).then(|| segment.to_string())
                    })
                    .collect(),
                methods: item
                    .as_object()
                    .map(|item| {
                        item.keys()
                            .filter(|key| HTTP_METHODS.contains(&key.as_str()))
                            .cloned()
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();

        Ok(Spec {
            document,
            templates,
            validators: Mutex::new(HashMap::new()),
        })
    }

    /// Checks one request and returns a reason for each way it breaks the description.
    /// `path` includes the `/api/v10` prefix.
    pub(crate) fn check(&self, method: &str, path: &str, body: &CheckedBody) -> Vec<String> {
        let Some(api_path) = path.strip_prefix("/api/v10") else {
            return vec!["the path is outside the API base /api/v10".to_string()];
        };
        let method = method.to_ascii_lowercase();

        let Some(template) = self.match_template(api_path) else {
            return vec!["no path in the OpenAPI description matches".to_string()];
        };
        if !template.methods.contains(&method) {
            return vec![format!(
                "the OpenAPI description has no {} operation for {}",
                method.to_ascii_uppercase(),
                template.template
            )];
        }

        let operation = &self.document["paths"][&template.template][&method];
        self.check_body(&template.template, &method, operation, body)
    }

    /// Finds the template that matches `api_path`, preferring literal segments over parameters
    /// (so `/users/@me` wins over `/users/{user_id}`).
    fn match_template(&self, api_path: &str) -> Option<&PathTemplate> {
        let segments: Vec<&str> = split_path(api_path).collect();
        self.templates
            .iter()
            .filter(|template| {
                template.segments.len() == segments.len()
                    && template
                        .segments
                        .iter()
                        .zip(&segments)
                        .all(|(expected, actual)| expected.as_deref().is_none_or(|e| e == *actual))
            })
            .min_by_key(|template| {
                // Parameters at earlier positions make a template less specific.
                template
                    .segments
                    .iter()
                    .map(|segment| u8::from(segment.is_none()))
                    .collect::<Vec<_>>()
            })
    }

    fn check_body(
        &self,
        template: &str,
        method: &str,
        operation: &Value,
        body: &CheckedBody,
    ) -> Vec<String> {
        let Some(request_body) = operation.get("requestBody") else {
            // Discord ignores a body on operations that take none.
            return Vec::new();
        };
        let content = &request_body["content"];
        let required = request_body.get("required").and_then(Value::as_bool) == Some(true);

        match body {
            CheckedBody::Empty if required => vec!["the request body is missing".to_string()],
            CheckedBody::Empty => Vec::new(),
            CheckedBody::Unreadable(reason) => vec![reason.clone()],
            CheckedBody::Json(value) => {
                if content.get("application/json").is_none() {
                    return vec![format!(
                        "the operation does not accept application/json (it accepts {})",
                        media_types(content)
                    )];
                }
                self.validate(template, method, MediaKind::Json, value)
            }
            CheckedBody::Multipart {
                payload_json,
                text_fields,
                file_fields,
            } => {
                let Some(multipart) = content.get("multipart/form-data") else {
                    return vec![format!(
                        "the operation does not accept multipart/form-data (it accepts {})",
                        media_types(content)
                    )];
                };
                if multipart
                    .pointer("/schema/properties/payload_json")
                    .is_some()
                {
                    return match payload_json {
                        Some(value) => {
                            self.validate(template, method, MediaKind::MultipartPayloadJson, value)
                        }
                        None => Vec::new(),
                    };
                }

                let form = form_object(payload_json.as_ref(), text_fields, file_fields);
                match form {
                    Ok(form) => self.validate(template, method, MediaKind::Multipart, &form),
                    Err(reason) => vec![reason],
                }
            }
        }
    }

    fn validate(
        &self,
        template: &str,
        method: &str,
        kind: MediaKind,
        instance: &Value,
    ) -> Vec<String> {
        let pointer = self.schema_pointer(template, method, kind);
        let errors = match self.errors_at(&pointer, instance) {
            Ok(errors) => errors,
            Err(reason) => return vec![reason],
        };
        if errors.is_empty() {
            return Vec::new();
        }

        let detail = match self.closest_alternative(&pointer, instance) {
            Some((name, errors)) => format!(
                "{} (closest alternative: {name})",
                errors
                    .iter()
                    .take(MAX_ERRORS)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
            None => errors
                .iter()
                .take(MAX_ERRORS)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        };
        vec![format!(
            "the request body does not match the OpenAPI schema: {detail}"
        )]
    }

    /// For a schema that is a union (`anyOf`/`oneOf`), finds the closest alternative and returns
    /// its name and errors, because a bare "matches none of the alternatives" does not show
    /// which field is wrong. Discord's unions are distinguished by their `type` field, so an
    /// alternative whose `type` matches comes first, then the one with the fewest errors.
    fn closest_alternative(
        &self,
        pointer: &str,
        instance: &Value,
    ) -> Option<(String, Vec<String>)> {
        let schema = self.document.pointer(pointer)?;
        let (keyword, branches) = ["anyOf", "oneOf"]
            .into_iter()
            .find_map(|keyword| Some((keyword, schema.get(keyword)?.as_array()?)))?;

        let mut closest: Option<(String, Vec<String>)> = None;
        for (index, branch) in branches.iter().enumerate() {
            let errors = self
                .errors_at(&format!("{pointer}/{keyword}/{index}"), instance)
                .ok()?;
            if errors.is_empty() {
                // Several alternatives of a `oneOf` match, which the original error reports.
                return None;
            }
            let name = branch
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|reference| reference.rsplit('/').next())
                .map_or_else(|| format!("alternative {index}"), str::to_string);
            if closest
                .as_ref()
                .is_none_or(|(_, best)| distance(&errors) < distance(best))
            {
                closest = Some((name, errors));
            }
        }
        closest
    }

    /// Validates `instance` against the schema at `pointer` in the description and returns one
    /// message per error, each starting with the location in the body.
    fn errors_at(&self, pointer: &str, instance: &Value) -> Result<Vec<String>, String> {
        let validator = self.validator(pointer);
        let validator = validator.as_ref().as_ref().map_err(Clone::clone)?;
        Ok(validator
            .iter_errors(instance)
            .map(|error| {
                let location = format!("body{}", error.instance_path);
                truncate(
                    &format!("{location}: {}", error.masked()),
                    MAX_MESSAGE_CHARS,
                )
            })
            .collect())
    }

    /// Returns the JSON Pointer of one operation's request schema inside the description.
    fn schema_pointer(&self, template: &str, method: &str, kind: MediaKind) -> String {
        let operation = format!("/paths/{}/{method}", escape_pointer_segment(template));
        let multipart = format!("{operation}/requestBody/content/multipart~1form-data/schema");
        match kind {
            MediaKind::Json => format!("{operation}/requestBody/content/application~1json/schema"),
            MediaKind::Multipart => multipart,
            MediaKind::MultipartPayloadJson => {
                let property = format!("{multipart}/properties/payload_json");
                // A description may give the JSON part's schema as `contentSchema` of a string.
                if self
                    .document
                    .pointer(&format!("{property}/contentSchema"))
                    .is_some()
                {
                    format!("{property}/contentSchema")
                } else {
                    property
                }
            }
        }
    }

    /// Returns the compiled validator for the schema at `pointer`, building it on first use.
    fn validator(&self, pointer: &str) -> Arc<Result<Validator, String>> {
        let mut validators = self
            .validators
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(validator) = validators.get(pointer) {
            return validator.clone();
        }

        let validator = Arc::new(self.build_validator(pointer));
        validators.insert(pointer.to_string(), validator.clone());
        validator
    }

    fn build_validator(&self, pointer: &str) -> Result<Validator, String> {
        let root = json!({ "$ref": format!("{DOCUMENT_URI}#{}", percent_encode(pointer)) });
        jsonschema::options()
            .with_draft(Draft::Draft202012)
            .with_resource(
                DOCUMENT_URI,
                Draft::Draft202012.create_resource(self.document.clone()),
            )
            .build(&root)
            .map_err(|error| {
                format!("the OpenAPI schema at {pointer} could not be compiled: {error}")
            })
    }
}

/// Orders an alternative's errors for [`Spec::closest_alternative`]: a mismatch of the
/// top-level `type` field first, then the error count.
fn distance(errors: &[String]) -> (bool, usize) {
    let type_mismatch = errors.iter().any(|error| error.starts_with("body/type:"));
    (type_mismatch, errors.len())
}

const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];

fn split_path(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|segment| !segment.is_empty())
}

fn media_types(content: &Value) -> String {
    content
        .as_object()
        .map(|content| content.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// Builds the object a multipart form stands for: the fields of `payload_json`, the other text
/// parts, and an empty string for each file part.
fn form_object(
    payload_json: Option<&Value>,
    text_fields: &[(String, String)],
    file_fields: &[String],
) -> Result<Value, String> {
    let mut form = match payload_json {
        Some(Value::Object(fields)) => fields.clone(),
        Some(_) => return Err("the payload_json part is not a JSON object".to_string()),
        None => Map::new(),
    };
    for (name, value) in text_fields {
        form.insert(name.clone(), Value::String(value.clone()));
    }
    for name in file_fields {
        form.insert(name.clone(), Value::String(String::new()));
    }
    Ok(Value::Object(form))
}

/// Escapes one JSON Pointer segment (RFC 6901).
fn escape_pointer_segment(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// Percent-encodes the characters of a JSON Pointer that are not allowed in a URI fragment.
fn percent_encode(pointer: &str) -> String {
    let mut encoded = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        let allowed = byte.is_ascii_alphanumeric() || b"/-._~!$&'()*+,;=:@".contains(&byte);
        if allowed {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let mut truncated: String = text.chars().take(max_chars).collect();
    truncated.push('…');
    truncated
}

/// Property names that carry a permission bitset.
const PERMISSION_PROPERTIES: [&str; 4] =
    ["allow", "deny", "permissions", "default_member_permissions"];

/// Widens two types of the description to what Discord accepts and serenity 0.12 sends:
///
/// - `SnowflakeType` is a decimal string in the description, but Discord also accepts a JSON
///   integer, which serenity sends for placeholder attachment ids.
/// - Permission bitsets are integers in the description, but Discord documents them as decimal
///   strings, which serenity sends.
fn relax_schemas(document: &mut Value) {
    if let Some(snowflake) = document.pointer_mut("/components/schemas/SnowflakeType") {
        let string_form = snowflake.clone();
        *snowflake = json!({
            "anyOf": [string_form, {"type": "integer", "minimum": 0}]
        });
    }
    relax_permission_properties(document);
}

fn relax_permission_properties(value: &mut Value) {
    match value {
        Value::Object(object) => {
            if let Some(Value::Object(properties)) = object.get_mut("properties") {
                for name in PERMISSION_PROPERTIES {
                    if let Some(property) = properties.get_mut(name) {
                        if allows_integer(property) {
                            let integer_form = property.clone();
                            *property = json!({
                                "anyOf": [integer_form, {"type": "string", "pattern": "^[0-9]+$"}]
                            });
                        }
                    }
                }
            }
            for child in object.values_mut() {
                relax_permission_properties(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(relax_permission_properties),
        _ => {}
    }
}

fn allows_integer(schema: &Value) -> bool {
    match schema.get("type") {
        Some(Value::String(kind)) => kind == "integer",
        Some(Value::Array(kinds)) => kinds.iter().any(|kind| kind == "integer"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small_spec() -> Spec {
        Spec::new(json!({
            "openapi": "3.1.0",
            "paths": {
                "/users/@me": {"get": {}},
                "/users/{user_id}": {"get": {}},
                "/channels/{channel_id}/messages": {
                    "post": {"requestBody": {"required": true, "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/Message"}},
                        "multipart/form-data": {"schema": {"allOf": [
                            {"$ref": "#/components/schemas/Message"},
                            {"type": "object", "properties": {"files[0]": {"type": "string"}}}
                        ]}}
                    }}}
                },
                "/channels/{channel_id}/permissions/{overwrite_id}": {
                    "put": {"requestBody": {"content": {"application/json": {"schema": {
                        "type": "object",
                        "properties": {
                            "id": {"$ref": "#/components/schemas/SnowflakeType"},
                            "allow": {"type": ["integer", "null"]}
                        }
                    }}}}}
                }
            },
            "components": {"schemas": {
                "SnowflakeType": {"type": "string", "pattern": "^(0|[1-9][0-9]*)$"},
                "Message": {"type": "object", "properties": {
                    "content": {"type": ["string", "null"], "maxLength": 10}
                }}
            }}
        }))
        .unwrap()
    }

    #[test]
    fn check_prefers_literal_segments() {
        let spec = small_spec();
        let template = spec.match_template("/users/@me").unwrap();
        assert_eq!(template.template, "/users/@me");
        let template = spec.match_template("/users/42").unwrap();
        assert_eq!(template.template, "/users/{user_id}");
    }

    #[test]
    fn check_reports_schema_errors_with_location() {
        let spec = small_spec();
        let path = "/api/v10/channels/1/messages";

        let valid = CheckedBody::Json(json!({"content": "hi"}));
        assert!(spec.check("POST", path, &valid).is_empty());

        let invalid = CheckedBody::Json(json!({"content": 5}));
        let violations = spec.check("POST", path, &invalid);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].contains("body/content"), "{violations:?}");
    }

    #[test]
    fn check_multipart_validates_payload_json_fields() {
        let spec = small_spec();
        let path = "/api/v10/channels/1/messages";
        let body = |content: Value| CheckedBody::Multipart {
            payload_json: Some(json!({ "content": content })),
            text_fields: Vec::new(),
            file_fields: vec!["files[0]".to_string()],
        };

        assert!(spec.check("POST", path, &body(json!("short"))).is_empty());
        let violations = spec.check("POST", path, &body(json!("far too long for the limit")));
        assert_eq!(violations.len(), 1, "{violations:?}");
    }

    #[test]
    fn check_accepts_string_permissions_and_integer_snowflakes() {
        let spec = small_spec();
        let path = "/api/v10/channels/1/permissions/2";
        let body = CheckedBody::Json(json!({"id": 0, "allow": "1024"}));
        assert!(spec.check("PUT", path, &body).is_empty());

        let body = CheckedBody::Json(json!({"allow": "all"}));
        assert_eq!(spec.check("PUT", path, &body).len(), 1);
    }

    #[test]
    fn check_flags_unknown_method_and_missing_body() {
        let spec = small_spec();
        let violations = spec.check("DELETE", "/api/v10/users/@me", &CheckedBody::Empty);
        assert!(
            violations[0].contains("no DELETE operation"),
            "{violations:?}"
        );

        let violations = spec.check("POST", "/api/v10/channels/1/messages", &CheckedBody::Empty);
        assert!(violations[0].contains("missing"), "{violations:?}");

        let violations = spec.check("GET", "/api/v9/users/@me", &CheckedBody::Empty);
        assert!(violations[0].contains("outside"), "{violations:?}");
    }

    #[test]
    fn percent_encode_escapes_braces() {
        assert_eq!(percent_encode("/paths/~1a~1{id}"), "/paths/~1a~1%7Bid%7D");
    }
}
