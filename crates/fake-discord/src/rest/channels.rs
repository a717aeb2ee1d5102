//! Channels, permission overwrites, threads and thread members.

use axum::http::{Method, StatusCode};
use serde_json::{json, Value};

use super::{parse_id, Reply, Request};
use crate::payloads::{self, ThreadFields, GUILD_TEXT, PRIVATE_THREAD, PUBLIC_THREAD};
use crate::permissions::parse_bits;
use crate::state::{is_thread, now_timestamp, snowflake, State, INTENT_GUILDS};

/// Channel type of an announcement channel, which can hold threads like a text channel.
const GUILD_ANNOUNCEMENT: u64 = 5;
/// Default `auto_archive_duration` of a new thread, in minutes.
const DEFAULT_AUTO_ARCHIVE_MINUTES: u64 = 4320;

pub(super) fn route(state: &mut State, request: &Request, segments: &[&str]) -> Option<Reply> {
    let method = &request.method;
    let channel_id = segments.get(1).and_then(|segment| parse_id(segment));
    let Some(channel_id) = channel_id.filter(|id| state.channels.contains_key(id)) else {
        // Known route shapes on an unknown channel get Discord's "Unknown Channel".
        return is_channel_route(segments).then(Reply::unknown_channel);
    };

    let reply = match (segments, method.clone()) {
        (["channels", _], Method::GET) => Reply::ok(state.channels[&channel_id].clone()),
        (["channels", _], Method::PATCH) => modify_channel(state, request, channel_id),
        (["channels", _], Method::DELETE) => delete_channel(state, channel_id),
        (["channels", _, "permissions", target], Method::PUT) => {
            put_overwrite(state, request, channel_id, target)
        }
        (["channels", _, "permissions", target], Method::DELETE) => {
            delete_overwrite(state, channel_id, target)
        }
        (["channels", _, "threads"], Method::POST) => create_thread(state, request, channel_id),
        (["channels", _, "thread-members"], Method::GET) => list_thread_members(state, channel_id),
        (["channels", _, "thread-members", user], method) => {
            let user_id = if *user == "@me" {
                Some(state.config.bot_user_id)
            } else {
                parse_id(user)
            };
            let Some(user_id) = user_id else {
                return Some(Reply::unknown_member());
            };
            match method {
                Method::GET => get_thread_member(state, channel_id, user_id),
                Method::PUT => add_thread_member(state, channel_id, user_id),
                Method::DELETE => remove_thread_member(state, channel_id, user_id),
                _ => return None,
            }
        }
        _ => return None,
    };
    Some(reply)
}

fn is_channel_route(segments: &[&str]) -> bool {
    matches!(
        segments,
        ["channels", _]
            | ["channels", _, "permissions", _]
            | ["channels", _, "threads"]
            | ["channels", _, "thread-members"]
            | ["channels", _, "thread-members", _]
    )
}

/// Sends CHANNEL_* or THREAD_* for a changed channel, as Discord does.
fn dispatch_channel_event(state: &mut State, action: &str, channel: Value) {
    let family = if is_thread(&channel) {
        "THREAD"
    } else {
        "CHANNEL"
    };
    if snowflake(&channel["guild_id"]).is_some() {
        state.dispatch_change(INTENT_GUILDS, &format!("{family}_{action}"), channel);
    }
}

fn modify_channel(state: &mut State, request: &Request, channel_id: u64) -> Reply {
    let body = request.json();
    if !body.is_object() {
        return Reply::invalid_form("_root", "BASE_TYPE_DICT", "The body must be an object");
    }
    if let Some(name) = body.get("name") {
        if name
            .as_str()
            .is_none_or(|name| name.is_empty() || name.chars().count() > 100)
        {
            return Reply::invalid_form(
                "name",
                "BASE_TYPE_BAD_LENGTH",
                "Must be between 1 and 100 in length.",
            );
        }
    }
    if let Some(overwrites) = body.get("permission_overwrites").filter(|v| !v.is_null()) {
        if let Err(reply) = normalize_overwrites(overwrites) {
            return reply;
        }
    }

    let Some(channel) = state.channels.get_mut(&channel_id) else {
        return Reply::unknown_channel();
    };
    // Discord accepts changes to an archived thread only in a request that also unarchives it.
    let unarchives = body.get("archived") == Some(&Value::Bool(false));
    if is_thread(channel) && channel["thread_metadata"]["archived"] == true && !unarchives {
        return Reply::error(StatusCode::BAD_REQUEST, 50083, "Thread is archived");
    }
    if is_thread(channel) {
        for key in ["name", "rate_limit_per_user", "flags", "applied_tags"] {
            if let Some(value) = body.get(key) {
                channel[key] = value.clone();
            }
        }
        for key in ["archived", "locked", "invitable", "auto_archive_duration"] {
            if let Some(value) = body.get(key).filter(|value| !value.is_null()) {
                channel["thread_metadata"][key] = value.clone();
            }
        }
        if body.get("archived").is_some() {
            channel["thread_metadata"]["archive_timestamp"] = json!(now_timestamp());
        }
    } else {
        for key in [
            "name",
            "topic",
            "position",
            "nsfw",
            "rate_limit_per_user",
            "parent_id",
        ] {
            if let Some(value) = body.get(key) {
                channel[key] = match key {
                    "parent_id" => snowflake(value).map_or(Value::Null, payloads::id),
                    _ => value.clone(),
                };
            }
        }
        if let Some(overwrites) = body.get("permission_overwrites") {
            channel["permission_overwrites"] =
                Value::Array(normalize_overwrites(overwrites).unwrap_or_default());
        }
    }

    let updated = channel.clone();
    dispatch_channel_event(state, "UPDATE", updated.clone());
    Reply::ok(updated)
}

fn delete_channel(state: &mut State, channel_id: u64) -> Reply {
    let Some(channel) = state.channels.remove(&channel_id) else {
        return Reply::unknown_channel();
    };
    state
        .dm_channels
        .retain(|_, dm_channel_id| *dm_channel_id != channel_id);
    state.thread_members.remove(&channel_id);
    dispatch_channel_event(state, "DELETE", channel.clone());
    Reply::ok(channel)
}

/// Converts request overwrites to Discord's stored form: string ids and bitsets, integer type.
pub(super) fn normalize_overwrites(overwrites: &Value) -> Result<Vec<Value>, Reply> {
    let Some(items) = overwrites.as_array() else {
        return Err(Reply::invalid_form(
            "permission_overwrites",
            "BASE_TYPE_ARRAY",
            "Must be an array",
        ));
    };
    items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            let Some(target_id) = snowflake(&item["id"]) else {
                return Err(Reply::invalid_form(
                    &format!("permission_overwrites.{index}.id"),
                    "BASE_TYPE_REQUIRED",
                    "This field is required",
                ));
            };
            let kind = item["type"].as_u64().unwrap_or(0);
            Ok(payloads::overwrite(
                target_id,
                kind,
                parse_bits(item.get("allow")),
                parse_bits(item.get("deny")),
            ))
        })
        .collect()
}

fn put_overwrite(state: &mut State, request: &Request, channel_id: u64, target: &str) -> Reply {
    let Some(target_id) = parse_id(target) else {
        return Reply::invalid_form(
            "overwrite_id",
            "NUMBER_TYPE_COERCE",
            "Value is not snowflake.",
        );
    };
    let body = request.json();
    let Some(kind) = body["type"].as_u64().filter(|kind| *kind <= 1) else {
        return Reply::invalid_form(
            "type",
            "BASE_TYPE_CHOICES",
            "Must be 0 (role) or 1 (member).",
        );
    };
    let overwrite = payloads::overwrite(
        target_id,
        kind,
        parse_bits(body.get("allow")),
        parse_bits(body.get("deny")),
    );

    let Some(channel) = state.channels.get_mut(&channel_id) else {
        return Reply::unknown_channel();
    };
    if snowflake(&channel["guild_id"]).is_none() {
        return Reply::wrong_channel_type();
    }
    let mut overwrites = channel["permission_overwrites"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    match overwrites
        .iter_mut()
        .find(|existing| snowflake(&existing["id"]) == Some(target_id))
    {
        Some(existing) => *existing = overwrite,
        None => overwrites.push(overwrite),
    }
    channel["permission_overwrites"] = Value::Array(overwrites);

    let updated = channel.clone();
    dispatch_channel_event(state, "UPDATE", updated);
    Reply::no_content()
}

fn delete_overwrite(state: &mut State, channel_id: u64, target: &str) -> Reply {
    let target_id = parse_id(target);
    let Some(channel) = state.channels.get_mut(&channel_id) else {
        return Reply::unknown_channel();
    };
    if let Some(overwrites) = channel["permission_overwrites"].as_array_mut() {
        overwrites.retain(|existing| snowflake(&existing["id"]) != target_id);
    }
    let updated = channel.clone();
    dispatch_channel_event(state, "UPDATE", updated);
    Reply::no_content()
}

fn create_thread(state: &mut State, request: &Request, parent_id: u64) -> Reply {
    let parent = state.channels[&parent_id].clone();
    let parent_type = parent["type"].as_u64();
    if parent_type != Some(GUILD_TEXT) && parent_type != Some(GUILD_ANNOUNCEMENT) {
        return Reply::wrong_channel_type();
    }

    let body = request.json();
    let name = body["name"].as_str().unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        return Reply::invalid_form(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        );
    }
    // Without a starter message Discord creates a private thread unless `type` sets another type.
    let kind = body["type"].as_u64().unwrap_or(PRIVATE_THREAD);
    if kind != PRIVATE_THREAD && kind != PUBLIC_THREAD {
        return Reply::invalid_form("type", "BASE_TYPE_CHOICES", "Must be 11 or 12.");
    }

    let thread_id = state.next_id();
    let created_at = now_timestamp();
    let mut thread = payloads::thread_channel(ThreadFields {
        id: thread_id,
        guild_id: state.config.guild_id,
        parent_id,
        owner_id: state.config.bot_user_id,
        kind,
        name,
        invitable: body["invitable"].as_bool().unwrap_or(true),
        auto_archive_duration: body["auto_archive_duration"]
            .as_u64()
            .unwrap_or(DEFAULT_AUTO_ARCHIVE_MINUTES),
        created_at: &created_at,
    });
    state.channels.insert(thread_id, thread.clone());
    state
        .thread_members
        .entry(thread_id)
        .or_default()
        .insert(state.config.bot_user_id, created_at.clone());

    thread["member"] = json!({ "join_timestamp": created_at, "flags": 0 });
    let mut event = thread.clone();
    event["newly_created"] = json!(true);
    dispatch_channel_event(state, "CREATE", event);
    Reply::created(thread)
}

fn thread_or_error(state: &State, channel_id: u64) -> Result<Value, Reply> {
    let channel = state.channels[&channel_id].clone();
    if is_thread(&channel) {
        Ok(channel)
    } else {
        Err(Reply::wrong_channel_type())
    }
}

fn list_thread_members(state: &State, thread_id: u64) -> Reply {
    if let Err(reply) = thread_or_error(state, thread_id) {
        return reply;
    }
    let members = state
        .thread_members
        .get(&thread_id)
        .into_iter()
        .flatten()
        .map(|(user_id, joined_at)| payloads::thread_member(thread_id, *user_id, joined_at))
        .collect();
    Reply::ok(Value::Array(members))
}

fn get_thread_member(state: &State, thread_id: u64, user_id: u64) -> Reply {
    if let Err(reply) = thread_or_error(state, thread_id) {
        return reply;
    }
    match state
        .thread_members
        .get(&thread_id)
        .and_then(|members| members.get(&user_id))
    {
        Some(joined_at) => Reply::ok(payloads::thread_member(thread_id, user_id, joined_at)),
        None => Reply::unknown_member(),
    }
}

fn add_thread_member(state: &mut State, thread_id: u64, user_id: u64) -> Reply {
    let thread = match thread_or_error(state, thread_id) {
        Ok(thread) => thread,
        Err(reply) => return reply,
    };
    if thread["thread_metadata"]["archived"] == true {
        return Reply::error(StatusCode::BAD_REQUEST, 50083, "Thread is archived");
    }
    // Only guild members can join a thread.
    if !state.members.contains_key(&user_id) {
        return Reply::unknown_member();
    }

    let members = state.thread_members.entry(thread_id).or_default();
    members.entry(user_id).or_insert_with(now_timestamp);
    let count = members.len();
    if let Some(thread) = state.channels.get_mut(&thread_id) {
        thread["member_count"] = json!(count.min(50));
    }
    Reply::no_content()
}

fn remove_thread_member(state: &mut State, thread_id: u64, user_id: u64) -> Reply {
    if let Err(reply) = thread_or_error(state, thread_id) {
        return reply;
    }
    let members = state.thread_members.entry(thread_id).or_default();
    members.remove(&user_id);
    let count = members.len();
    if let Some(thread) = state.channels.get_mut(&thread_id) {
        thread["member_count"] = json!(count.min(50));
    }
    Reply::no_content()
}
