//! Gateway discovery, the current user and application, users, DMs and command registration.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{parse_id, Reply, Request};
use crate::payloads;
use crate::state::{snowflake, State};
use crate::types::CommandScope;

pub(super) fn route(state: &mut State, request: &Request, segments: &[&str]) -> Option<Reply> {
    let method = &request.method;
    let reply = match segments {
        ["gateway"] if method == Method::GET => Reply::ok(json!({ "url": state.gateway.url })),
        ["gateway", "bot"] if method == Method::GET => Reply::ok(json!({
            "url": state.gateway.url,
            "shards": 1,
            "session_start_limit": {
                "total": 1000, "remaining": 1000, "reset_after": 0, "max_concurrency": 1
            },
        })),
        ["oauth2", "applications", "@me"] if method == Method::GET => {
            Reply::ok(payloads::application(&state.config, &state.owner))
        }
        ["users", "@me"] if method == Method::GET => {
            Reply::ok(payloads::current_user(&state.config))
        }
        ["users", "@me", "channels"] if method == Method::POST => create_dm(state, request),
        ["users", user_id] if method == Method::GET => get_user(state, user_id),
        ["applications", application_id, "commands"] => {
            if !is_own_application(state, application_id) {
                return Some(Reply::missing_access());
            }
            commands(state, request, CommandScope::Global)?
        }
        ["applications", application_id, "guilds", guild_id, "commands"] => {
            if !is_own_application(state, application_id) {
                return Some(Reply::missing_access());
            }
            match parse_id(guild_id) {
                Some(guild_id) if guild_id == state.config.guild_id => {
                    commands(state, request, CommandScope::Guild(guild_id))?
                }
                // The bot is in one guild only; Discord rejects commands for any other.
                _ => Reply::missing_access(),
            }
        }
        _ => return None,
    };
    Some(reply)
}

fn is_own_application(state: &State, application_id: &str) -> bool {
    parse_id(application_id) == Some(state.config.application_id)
}

fn get_user(state: &State, user_id: &str) -> Reply {
    match parse_id(user_id).and_then(|user_id| state.users.get(&user_id)) {
        Some(user) => Reply::ok(payloads::user(user)),
        None => Reply::unknown_user(),
    }
}

fn create_dm(state: &mut State, request: &Request) -> Reply {
    let body = request.json();
    let Some(recipient_id) = snowflake(&body["recipient_id"]) else {
        return Reply::invalid_form(
            "recipient_id",
            "BASE_TYPE_REQUIRED",
            "This field is required",
        );
    };
    if !state.users.contains_key(&recipient_id) {
        return Reply::error(StatusCode::BAD_REQUEST, 50033, "Invalid Recipient(s)");
    }

    let channel_id = state.dm_channel(recipient_id);
    Reply::ok(state.channels[&channel_id].clone())
}

/// `GET` lists and `PUT` replaces the command list of one scope.
fn commands(state: &mut State, request: &Request, scope: CommandScope) -> Option<Reply> {
    if request.method == Method::GET {
        let commands = match scope {
            CommandScope::Global => state.commands.global.clone(),
            CommandScope::Guild(guild_id) => state.commands.guild.get(&guild_id).cloned(),
        };
        return Some(Reply::ok(Value::Array(commands.unwrap_or_default())));
    }
    if request.method != Method::PUT {
        return None;
    }

    let body = request.json();
    let Some(items) = body.as_array() else {
        return Some(Reply::invalid_form(
            "_root",
            "BASE_TYPE_ARRAY",
            "The body must be an array of commands",
        ));
    };
    if let Some(index) = items
        .iter()
        .position(|item| item["name"].as_str().is_none_or(str::is_empty))
    {
        return Some(Reply::invalid_form(
            &index.to_string(),
            "BASE_TYPE_REQUIRED",
            "Each command needs a name",
        ));
    }

    let commands = state.register_commands(scope, items);
    let names: Vec<&str> = commands
        .iter()
        .filter_map(|command| command["name"].as_str())
        .collect();
    let line = format!("commands registered ({scope:?}): {}", names.join(", "));
    state.log_line(line);
    Some(Reply::ok(Value::Array(commands)))
}
