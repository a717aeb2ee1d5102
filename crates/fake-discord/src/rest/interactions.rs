//! Interaction callbacks, followups and edits of interaction messages.

use std::time::Instant;

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::messages::{check_message_body, store_attachments, BodyUse};
use super::{parse_id, Reply, Request};
use crate::payloads::{self, MessageFields};
use crate::state::{now_timestamp, Interaction, State};
use crate::types::EPHEMERAL_FLAG;

/// Message flag of a deferred response that still shows "thinking".
const LOADING_FLAG: u64 = 1 << 7;

/// Message type of a reply to a slash command.
const CHAT_INPUT_COMMAND_MESSAGE: u64 = 20;

/// Interaction type of a slash command.
const APPLICATION_COMMAND: u64 = 2;
/// Interaction type of a component (button) click.
const MESSAGE_COMPONENT: u64 = 3;
/// Interaction type of a modal submission.
const MODAL_SUBMIT: u64 = 5;

pub(super) fn route(state: &mut State, request: &Request, segments: &[&str]) -> Option<Reply> {
    let method = &request.method;
    match segments {
        ["interactions", interaction_id, token, "callback"] if method == Method::POST => {
            Some(callback(state, request, interaction_id, token))
        }
        ["webhooks", application_id, token] if method == Method::POST => {
            Some(followup(state, request, application_id, token))
        }
        ["webhooks", application_id, token, "messages", message_id] => {
            webhook_message(state, request, application_id, token, message_id)
        }
        _ => None,
    }
}

fn unknown_interaction() -> Reply {
    Reply::error(StatusCode::NOT_FOUND, 10062, "Unknown interaction")
}

fn callback(state: &mut State, request: &Request, interaction_id: &str, token: &str) -> Reply {
    let Some(interaction) = parse_id(interaction_id)
        .and_then(|interaction_id| state.interactions.get(&interaction_id))
        .filter(|interaction| interaction.token == token)
        .cloned()
    else {
        return unknown_interaction();
    };
    // NOTE: Discord rejects a first callback after 3 seconds and a token after 15 minutes. The
    // fake accepts both and records the delay, which tests read with `first_response_delay`.
    if !interaction.record.callbacks.is_empty() {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        );
    }

    let body = request.json();
    let Some(callback_type) = body["type"].as_u64() else {
        return Reply::invalid_form("type", "BASE_TYPE_REQUIRED", "This field is required");
    };
    let from_component = interaction.component_message_id.is_some();
    // poise 0.7's `execute_modal` acknowledges every modal submission with type 6, also when a
    // slash command (not a component) opened the modal, so the fake accepts that.
    let allowed = match callback_type {
        4 | 5 => true,
        6 => from_component || interaction.kind == MODAL_SUBMIT,
        7 => from_component,
        9 => interaction.kind == APPLICATION_COMMAND || interaction.kind == MESSAGE_COMPONENT,
        _ => false,
    };
    if !allowed {
        return Reply::invalid_form(
            "type",
            "INTERACTION_RESPONSE_TYPE_INVALID",
            &format!(
                "Callback type {callback_type} is not valid for interaction type {}",
                interaction.kind
            ),
        );
    }

    let data = body.get("data").cloned().unwrap_or(Value::Null);
    let original_message_id = match callback_type {
        4 => {
            if let Err(reply) = check_message_body(&data, false, BodyUse::Create) {
                return reply;
            }
            Some(create_response_message(state, &interaction, &data, false))
        }
        5 => Some(create_response_message(state, &interaction, &data, true)),
        6 => interaction.component_message_id,
        7 => {
            if let Err(reply) = check_message_body(&data, false, BodyUse::Edit) {
                return reply;
            }
            if let Some(message) = interaction
                .component_message_id
                .and_then(|message_id| state.messages.get_mut(&message_id))
            {
                edit_message(&mut message.value, &data, &[]);
            }
            interaction.component_message_id
        }
        _ => {
            if let Err(reply) = check_modal(&data) {
                return reply;
            }
            None
        }
    };

    let Some(stored) = state.interactions.get_mut(&interaction.record.id) else {
        return unknown_interaction();
    };
    stored.original_message_id = original_message_id;
    stored.record.push_callback(Instant::now(), body);
    let line = format!(
        "interaction {}: callback type {callback_type}",
        interaction.record.id
    );
    state.log_line(line);
    Reply::no_content()
}

/// Checks the fields Discord requires of a modal: `custom_id`, `title` and at least one row.
fn check_modal(data: &Value) -> Result<(), Reply> {
    for field in ["custom_id", "title"] {
        if data[field].as_str().is_none_or(str::is_empty) {
            return Err(Reply::invalid_form(
                &format!("data.{field}"),
                "BASE_TYPE_REQUIRED",
                "This field is required",
            ));
        }
    }
    if data["components"].as_array().is_none_or(Vec::is_empty) {
        return Err(Reply::invalid_form(
            "data.components",
            "BASE_TYPE_REQUIRED",
            "A modal needs at least one component",
        ));
    }
    Ok(())
}

/// Creates the message of a type 4 callback, or the "thinking" message of a type 5 callback.
fn create_response_message(
    state: &mut State,
    interaction: &Interaction,
    data: &Value,
    deferred: bool,
) -> u64 {
    let message_id = state.next_id();
    let flags = data["flags"].as_u64().unwrap_or(0);
    let ephemeral = flags & EPHEMERAL_FLAG != 0;

    let mut body = if deferred { json!({}) } else { data.clone() };
    if deferred {
        body["flags"] = json!((flags & EPHEMERAL_FLAG) | LOADING_FLAG);
    }
    let message = build_interaction_message(state, interaction, message_id, &body, Vec::new());
    state.store_message(message, ephemeral);
    if let Some(stored) = state.interactions.get_mut(&interaction.record.id) {
        stored.message_ids.push(message_id);
    }
    message_id
}

fn build_interaction_message(
    state: &State,
    interaction: &Interaction,
    message_id: u64,
    body: &Value,
    attachments: Vec<Value>,
) -> Value {
    let bot = state.bot_user();
    let kind = if interaction.kind == APPLICATION_COMMAND {
        CHAT_INPUT_COMMAND_MESSAGE
    } else {
        0
    };
    payloads::message(
        MessageFields {
            id: message_id,
            channel_id: interaction.channel_id,
            guild_id: interaction.guild_id,
            author: &bot,
            timestamp: &now_timestamp(),
            kind,
            application_id: Some(state.config.application_id),
            attachments,
        },
        body,
    )
}

/// Finds the interaction of a webhook token, checking the application id in the path.
fn interaction_for_token(state: &State, application_id: &str, token: &str) -> Option<Interaction> {
    if parse_id(application_id) != Some(state.config.application_id) {
        return None;
    }
    let interaction_id = state.tokens.get(token)?;
    state.interactions.get(interaction_id).cloned()
}

fn followup(state: &mut State, request: &Request, application_id: &str, token: &str) -> Reply {
    // Discord accepts followups only after the interaction was acknowledged.
    let Some(interaction) = interaction_for_token(state, application_id, token)
        .filter(|interaction| !interaction.record.callbacks.is_empty())
    else {
        return Reply::unknown_webhook();
    };

    let body = request.json();
    if let Err(reply) = check_message_body(&body, !request.files.is_empty(), BodyUse::Create) {
        return reply;
    }

    let message_id = state.next_id();
    let attachments = store_attachments(state, &request.files, &body);
    let message = build_interaction_message(state, &interaction, message_id, &body, attachments);
    let ephemeral = body["flags"].as_u64().unwrap_or(0) & EPHEMERAL_FLAG != 0;
    state.store_message(message.clone(), ephemeral);

    if let Some(stored) = state.interactions.get_mut(&interaction.record.id) {
        stored.message_ids.push(message_id);
        stored.record.push_followup(body);
    }
    Reply::ok(message)
}

fn webhook_message(
    state: &mut State,
    request: &Request,
    application_id: &str,
    token: &str,
    message_segment: &str,
) -> Option<Reply> {
    let method = request.method.clone();
    if method != Method::GET && method != Method::PATCH && method != Method::DELETE {
        return None;
    }
    let Some(interaction) = interaction_for_token(state, application_id, token) else {
        return Some(Reply::unknown_webhook());
    };
    let message_id = if message_segment == "@original" {
        interaction.original_message_id
    } else {
        parse_id(message_segment).filter(|message_id| {
            interaction.message_ids.contains(message_id)
                || interaction.original_message_id == Some(*message_id)
        })
    };
    let Some(message_id) = message_id.filter(|id| state.messages.contains_key(id)) else {
        return Some(Reply::unknown_message());
    };

    let reply = if method == Method::GET {
        Reply::ok(state.messages[&message_id].value.clone())
    } else if method == Method::DELETE {
        state.messages.remove(&message_id);
        Reply::no_content()
    } else {
        let body = request.json();
        if let Err(reply) = check_message_body(&body, !request.files.is_empty(), BodyUse::Edit) {
            return Some(reply);
        }
        let attachments = store_attachments(state, &request.files, &body);
        let Some(message) = state.messages.get_mut(&message_id) else {
            return Some(Reply::unknown_message());
        };
        edit_message(&mut message.value, &body, &attachments);
        let edited = message.value.clone();
        if let Some(stored) = state.interactions.get_mut(&interaction.record.id) {
            stored.record.push_edit(body);
        }
        Reply::ok(edited)
    };
    Some(reply)
}

/// Applies an edit as Discord does: the ephemeral flag stays, "thinking" ends, and new files are
/// appended to the attachments.
pub(super) fn edit_message(message: &mut Value, body: &Value, new_attachments: &[Value]) {
    let old_flags = message["flags"].as_u64().unwrap_or(0);
    payloads::apply_message_edit(message, body);
    let new_flags = message["flags"].as_u64().unwrap_or(0);
    message["flags"] = json!((new_flags | (old_flags & EPHEMERAL_FLAG)) & !LOADING_FLAG);
    message["edited_timestamp"] = json!(now_timestamp());

    if !new_attachments.is_empty() {
        let mut attachments = message["attachments"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        attachments.extend_from_slice(new_attachments);
        message["attachments"] = Value::Array(attachments);
    }
}
