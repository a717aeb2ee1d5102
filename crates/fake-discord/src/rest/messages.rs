//! Channel messages: create (JSON or multipart with files), history, get, edit, delete.

use axum::http::{Method, StatusCode};
use serde_json::Value;

use super::interactions::edit_message;
use super::{parse_id, FilePart, Reply, Request};
use crate::payloads::{self, MessageFields, DM};
use crate::state::{is_thread, now_timestamp, snowflake, State};

/// Discord's limit on `content` for bots, in characters.
const MAX_CONTENT_CHARS: usize = 2000;
/// Discord's limit on embeds per message.
const MAX_EMBEDS: usize = 10;
/// Discord's limit on the characters of all embeds of a message together.
const MAX_EMBED_TOTAL_CHARS: usize = 6000;
/// Discord's limits on the parts of one embed, in characters (fields: in count).
const MAX_EMBED_TITLE_CHARS: usize = 256;
const MAX_EMBED_DESCRIPTION_CHARS: usize = 4096;
const MAX_EMBED_FIELDS: usize = 25;
const MAX_FIELD_NAME_CHARS: usize = 256;
const MAX_FIELD_VALUE_CHARS: usize = 1024;
const MAX_FOOTER_TEXT_CHARS: usize = 2048;
const MAX_AUTHOR_NAME_CHARS: usize = 256;
/// Discord's limit on a message nonce, in characters.
const MAX_NONCE_CHARS: usize = 25;
/// How long a nonce sent with `enforce_nonce` keeps returning the first message. Discord
/// documents "the past few minutes"; the fake keeps it shorter so that no test relies on more
/// than Discord promises.
const NONCE_WINDOW: std::time::Duration = std::time::Duration::from_secs(120);
/// Default and maximum of `limit` on `GET /channels/{channel}/messages`.
const DEFAULT_HISTORY_LIMIT: usize = 50;
const MAX_HISTORY_LIMIT: usize = 100;

/// Whether a body creates a message (which must not be empty) or edits one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum BodyUse {
    Create,
    Edit,
}

pub(super) fn route(state: &mut State, request: &Request, segments: &[&str]) -> Option<Reply> {
    let method = &request.method;
    let reply = match segments {
        ["channels", channel_id, "messages"] => {
            let Some(channel_id) =
                parse_id(channel_id).filter(|id| state.channels.contains_key(id))
            else {
                return Some(Reply::unknown_channel());
            };
            match *method {
                Method::GET => history(state, request, channel_id),
                Method::POST => create(state, request, channel_id),
                _ => return None,
            }
        }
        ["channels", channel_id, "messages", message_id] => {
            let channel_id = parse_id(channel_id).filter(|id| state.channels.contains_key(id));
            let Some(channel_id) = channel_id else {
                return Some(Reply::unknown_channel());
            };
            let message_id = parse_id(message_id).filter(|id| {
                state
                    .messages
                    .get(id)
                    .is_some_and(|message| !message.ephemeral && message.channel_id() == channel_id)
            });
            let Some(message_id) = message_id else {
                return Some(Reply::unknown_message());
            };
            match *method {
                Method::GET => Reply::ok(state.messages[&message_id].value.clone()),
                Method::PATCH => {
                    let channel = &state.channels[&channel_id];
                    if is_thread(channel) && channel["thread_metadata"]["archived"] == true {
                        return Some(Reply::error(
                            StatusCode::BAD_REQUEST,
                            50083,
                            "Thread is archived",
                        ));
                    }
                    edit(state, request, message_id)
                }
                Method::DELETE => {
                    state.messages.remove(&message_id);
                    Reply::no_content()
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(reply)
}

/// Checks the limits Discord enforces on a message body before it stores anything.
pub(super) fn check_message_body(
    body: &Value,
    has_files: bool,
    body_use: BodyUse,
) -> Result<(), Reply> {
    let content = body["content"].as_str().unwrap_or_default();
    if content.chars().count() > MAX_CONTENT_CHARS {
        return Err(Reply::invalid_form(
            "content",
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {MAX_CONTENT_CHARS} or fewer in length."),
        ));
    }

    let embeds = body["embeds"].as_array().cloned().unwrap_or_default();
    if embeds.len() > MAX_EMBEDS {
        return Err(Reply::invalid_form(
            "embeds",
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {MAX_EMBEDS} or fewer in length."),
        ));
    }
    for (index, embed) in embeds.iter().enumerate() {
        check_embed(index, embed)?;
    }
    let embed_chars: usize = embeds.iter().map(embed_text_chars).sum();
    if embed_chars > MAX_EMBED_TOTAL_CHARS {
        return Err(Reply::invalid_form(
            "embeds",
            "MAX_EMBED_SIZE_EXCEEDED",
            &format!("Embed size exceeds maximum size of {MAX_EMBED_TOTAL_CHARS}"),
        ));
    }

    let non_empty = |key: &str| body[key].as_array().is_some_and(|items| !items.is_empty());
    let is_empty = content.is_empty()
        && embeds.is_empty()
        && !has_files
        && !non_empty("components")
        && !non_empty("sticker_ids")
        && body.get("poll").is_none_or(Value::is_null);
    if body_use == BodyUse::Create && is_empty {
        return Err(Reply::error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        ));
    }
    Ok(())
}

/// Checks the per-part limits of one embed. Discord returns 400 with code 50035 and the
/// path of the first offending part, such as `embeds.0.fields.3.value`.
fn check_embed(index: usize, embed: &Value) -> Result<(), Reply> {
    let too_long = |path: String, value: &Value, max: usize| {
        let length = value.as_str().map_or(0, |text| text.chars().count());
        if length > max {
            Err(Reply::invalid_form_at(
                &path,
                "BASE_TYPE_MAX_LENGTH",
                &format!("Must be {max} or fewer in length."),
            ))
        } else {
            Ok(())
        }
    };
    let prefix = format!("embeds.{index}");
    too_long(
        format!("{prefix}.title"),
        &embed["title"],
        MAX_EMBED_TITLE_CHARS,
    )?;
    too_long(
        format!("{prefix}.description"),
        &embed["description"],
        MAX_EMBED_DESCRIPTION_CHARS,
    )?;
    too_long(
        format!("{prefix}.footer.text"),
        &embed["footer"]["text"],
        MAX_FOOTER_TEXT_CHARS,
    )?;
    too_long(
        format!("{prefix}.author.name"),
        &embed["author"]["name"],
        MAX_AUTHOR_NAME_CHARS,
    )?;
    let fields = embed["fields"].as_array().cloned().unwrap_or_default();
    if fields.len() > MAX_EMBED_FIELDS {
        return Err(Reply::invalid_form_at(
            &format!("{prefix}.fields"),
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {MAX_EMBED_FIELDS} or fewer in length."),
        ));
    }
    for (field_index, field) in fields.iter().enumerate() {
        let field_prefix = format!("{prefix}.fields.{field_index}");
        too_long(
            format!("{field_prefix}.name"),
            &field["name"],
            MAX_FIELD_NAME_CHARS,
        )?;
        too_long(
            format!("{field_prefix}.value"),
            &field["value"],
            MAX_FIELD_VALUE_CHARS,
        )?;
    }
    Ok(())
}

/// Counts the characters Discord adds up for the 6000 limit: title, description, field names
/// and values, footer text and author name.
fn embed_text_chars(embed: &Value) -> usize {
    let count = |value: &Value| value.as_str().map_or(0, |text| text.chars().count());
    let fields: usize = embed["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|field| count(&field["name"]) + count(&field["value"]))
        .sum();
    count(&embed["title"])
        + count(&embed["description"])
        + count(&embed["footer"]["text"])
        + count(&embed["author"]["name"])
        + fields
}

/// Stores the file parts of a multipart request and returns them as message attachments. The
/// description comes from the `attachments` entry whose id is the part's index in `files[N]`.
pub(super) fn store_attachments(state: &mut State, files: &[FilePart], body: &Value) -> Vec<Value> {
    let mut attachments = Vec::with_capacity(files.len());
    for file in files {
        let index = file
            .field
            .strip_prefix("files[")
            .and_then(|rest| rest.strip_suffix(']'))
            .and_then(|index| index.parse::<u64>().ok());
        let description = body["attachments"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|attachment| index.is_some() && snowflake(&attachment["id"]) == index)
            .and_then(|attachment| attachment["description"].as_str());

        let attachment_id = state.next_id();
        attachments.push(payloads::attachment(
            attachment_id,
            &file.filename,
            file.content_type.as_deref(),
            file.data.len(),
            description,
        ));
        state.attachments.insert(attachment_id, file.data.to_vec());
    }
    attachments
}

fn create(state: &mut State, request: &Request, channel_id: u64) -> Reply {
    let channel = state.channels[&channel_id].clone();
    if channel["type"] == DM {
        let recipient_is_bot = channel["recipients"][0]["bot"].as_bool() == Some(true);
        if recipient_is_bot {
            return Reply::error(
                StatusCode::FORBIDDEN,
                50007,
                "Cannot send messages to this user",
            );
        }
    }
    if is_thread(&channel) && channel["thread_metadata"]["locked"] == true {
        return Reply::error(StatusCode::BAD_REQUEST, 50083, "Thread is locked");
    }

    let body = request.json();
    if let Err(reply) = check_message_body(&body, !request.files.is_empty(), BodyUse::Create) {
        return reply;
    }
    let nonce = match message_nonce(&body) {
        Ok(nonce) => nonce,
        Err(reply) => return reply,
    };
    let bot = state.bot_user();
    let enforced = nonce
        .clone()
        .filter(|_| body["enforce_nonce"] == Value::Bool(true))
        .map(|nonce| (bot.id, nonce));
    if let Some(key) = &enforced {
        let earlier = state
            .nonces
            .get(key)
            .filter(|(_, first_used)| first_used.elapsed() < NONCE_WINDOW)
            .and_then(|(message_id, _)| state.messages.get(message_id))
            .map(|stored| stored.value.clone());
        if let Some(earlier) = earlier {
            state.log_line(format!(
                "nonce {:?} repeated with enforce_nonce: returned message {} again",
                key.1,
                earlier["id"].as_str().unwrap_or_default()
            ));
            return Reply::ok(earlier);
        }
    }

    // Sending into an archived, unlocked thread unarchives it, as on Discord.
    if is_thread(&channel) && channel["thread_metadata"]["archived"] == true {
        if let Some(thread) = state.channels.get_mut(&channel_id) {
            thread["thread_metadata"]["archived"] = Value::Bool(false);
        }
    }

    let message_id = state.next_id();
    let attachments = store_attachments(state, &request.files, &body);
    let mut message = payloads::message(
        MessageFields {
            id: message_id,
            channel_id,
            guild_id: snowflake(&channel["guild_id"]),
            author: &bot,
            timestamp: &now_timestamp(),
            kind: 0,
            application_id: None,
            attachments,
        },
        &body,
    );
    if let Some(nonce) = &nonce {
        message["nonce"] = Value::String(nonce.clone());
    }
    if let Some(key) = enforced {
        state
            .nonces
            .insert(key, (message_id, std::time::Instant::now()));
    }
    state.store_message(message.clone(), false);
    Reply::ok(message)
}

/// Reads the optional `nonce` of a create body, an integer or a string of at most 25
/// characters, as the text Discord compares.
fn message_nonce(body: &Value) -> Result<Option<String>, Reply> {
    let nonce = match &body["nonce"] {
        Value::Null => return Ok(None),
        Value::String(text) => text.clone(),
        Value::Number(number) if number.is_i64() || number.is_u64() => number.to_string(),
        _ => {
            return Err(Reply::invalid_form(
                "nonce",
                "BASE_TYPE_BAD_TYPE",
                "Must be an integer or a string.",
            ))
        }
    };
    if nonce.chars().count() > MAX_NONCE_CHARS {
        return Err(Reply::invalid_form(
            "nonce",
            "BASE_TYPE_MAX_LENGTH",
            &format!("Must be {MAX_NONCE_CHARS} or fewer in length."),
        ));
    }
    Ok(Some(nonce))
}

fn edit(state: &mut State, request: &Request, message_id: u64) -> Reply {
    let body = request.json();
    if let Err(reply) = check_message_body(&body, !request.files.is_empty(), BodyUse::Edit) {
        return reply;
    }
    let attachments = store_attachments(state, &request.files, &body);
    let Some(message) = state.messages.get_mut(&message_id) else {
        return Reply::unknown_message();
    };
    edit_message(&mut message.value, &body, &attachments);
    Reply::ok(message.value.clone())
}

/// Returns history newest first, as Discord does. `before`, `after` and `around` select the
/// window and `limit` (1 to 100, default 50) its size.
fn history(state: &State, request: &Request, channel_id: u64) -> Reply {
    let limit = match request.query.get("limit") {
        None => DEFAULT_HISTORY_LIMIT,
        Some(text) => match text.parse::<usize>() {
            Ok(limit) if (1..=MAX_HISTORY_LIMIT).contains(&limit) => limit,
            _ => {
                return Reply::invalid_form(
                    "limit",
                    "NUMBER_TYPE_MAX",
                    &format!("Must be between 1 and {MAX_HISTORY_LIMIT}."),
                )
            }
        },
    };
    let anchor = |name: &str| request.query.get(name).and_then(|text| parse_id(text));

    let messages = state.channel_messages(channel_id);
    let id_of = |message: &Value| snowflake(&message["id"]).unwrap_or(0);
    let mut window: Vec<Value> = if let Some(before) = anchor("before") {
        let older: Vec<Value> = messages.into_iter().filter(|m| id_of(m) < before).collect();
        older[older.len().saturating_sub(limit)..].to_vec()
    } else if let Some(after) = anchor("after") {
        messages
            .into_iter()
            .filter(|m| id_of(m) > after)
            .take(limit)
            .collect()
    } else if let Some(around) = anchor("around") {
        let position = messages
            .iter()
            .position(|m| id_of(m) >= around)
            .unwrap_or(messages.len());
        let start = position.saturating_sub(limit / 2);
        messages.into_iter().skip(start).take(limit).collect()
    } else {
        messages[messages.len().saturating_sub(limit)..].to_vec()
    };
    window.reverse();
    Reply::ok(Value::Array(window))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn error_of(body: &Value) -> Option<(u16, Value)> {
        check_message_body(body, false, BodyUse::Create)
            .err()
            .map(|reply| (reply.status.as_u16(), reply.body.unwrap_or(Value::Null)))
    }

    #[test]
    fn embed_part_limits_are_rejected_with_their_path() {
        let long = |length: usize| "x".repeat(length);
        let field = |name: String, value: String| json!({"name": name, "value": value});
        let cases = vec![
            (json!({"title": long(257)}), "title"),
            (json!({"description": long(4097)}), "description"),
            (json!({"footer": {"text": long(2049)}}), "footer"),
            (json!({"author": {"name": long(257)}}), "author"),
            (
                json!({"fields": [field("a".into(), "b".into()), field(long(257), "v".into())]}),
                "fields",
            ),
            (json!({"fields": [field("n".into(), long(1025))]}), "fields"),
            (
                json!({"fields": (0..26).map(|_| field("n".into(), "v".into())).collect::<Vec<_>>()}),
                "fields",
            ),
        ];
        for (embed, key) in cases {
            let body = json!({"embeds": [{"title": "ok"}, embed]});
            let (status, error) = error_of(&body).unwrap_or_else(|| panic!("accepted {body}"));
            assert_eq!(status, 400, "{body}");
            assert_eq!(error["code"], 50035, "{error}");
            assert!(
                error["errors"]["embeds"]["1"][key].is_object(),
                "no error at embeds.1.{key}: {error}"
            );
        }
        let nested =
            error_of(&json!({"embeds": [{"fields": [{"name": "n", "value": long(1025)}]}]}))
                .unwrap()
                .1;
        assert_eq!(
            nested["errors"]["embeds"]["0"]["fields"]["0"]["value"]["_errors"][0]["code"],
            "BASE_TYPE_MAX_LENGTH"
        );
    }

    #[test]
    fn embed_parts_at_their_limits_are_accepted() {
        let long = |length: usize| "é".repeat(length);
        let fields: Vec<Value> = (0..4)
            .map(|_| json!({"name": long(256), "value": long(1024)}))
            .collect();
        let body = json!({"embeds": [{
            "title": long(200),
            "description": long(100),
            "fields": fields,
        }]});
        assert!(error_of(&body).is_none());
        let twenty_five: Vec<Value> = (0..25)
            .map(|_| json!({"name": "n", "value": "v"}))
            .collect();
        assert!(error_of(&json!({"embeds": [{"fields": twenty_five}]})).is_none());
    }
}
