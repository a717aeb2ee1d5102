//! The guild, its roles, channels and members.

use axum::http::Method;
use serde_json::{json, Value};

use super::channels::normalize_overwrites;
use super::{parse_id, Reply, Request};
use crate::payloads::{self, GuildChannelFields, GUILD_CATEGORY};
use crate::state::{snowflake, State, INTENT_GUILDS, INTENT_GUILD_MEMBERS};

/// Channel types `POST /guilds/{guild}/channels` accepts: text, voice, category, announcement,
/// stage, forum, media.
const CREATABLE_CHANNEL_TYPES: [u64; 7] = [0, 2, 4, 5, 13, 15, 16];

pub(super) fn route(state: &mut State, request: &Request, segments: &[&str]) -> Option<Reply> {
    let method = request.method.clone();
    let known_shape = matches!(
        segments,
        ["guilds", _]
            | ["guilds", _, "roles"]
            | ["guilds", _, "channels"]
            | ["guilds", _, "members", _]
            | ["guilds", _, "members", _, "roles", _]
    );
    if !known_shape {
        return None;
    }
    if segments.get(1).and_then(|segment| parse_id(segment)) != Some(state.config.guild_id) {
        return Some(Reply::unknown_guild());
    }

    let reply = match (segments, method) {
        (["guilds", _], Method::GET) => Reply::ok(state.guild_payload()),
        (["guilds", _, "roles"], Method::GET) => Reply::ok(Value::Array(
            state.roles.iter().map(payloads::role).collect(),
        )),
        (["guilds", _, "channels"], Method::GET) => Reply::ok(Value::Array(state.guild_channels())),
        (["guilds", _, "channels"], Method::POST) => create_channel(state, request),
        (["guilds", _, "members", user], Method::GET) => {
            match parse_id(user).and_then(|user_id| state.member_json(user_id)) {
                Some(member) => Reply::ok(member),
                None => Reply::unknown_member(),
            }
        }
        (["guilds", _, "members", user, "roles", role], Method::PUT) => {
            change_role(state, user, role, true)
        }
        (["guilds", _, "members", user, "roles", role], Method::DELETE) => {
            change_role(state, user, role, false)
        }
        _ => return None,
    };
    Some(reply)
}

fn create_channel(state: &mut State, request: &Request) -> Reply {
    let body = request.json();
    let name = body["name"].as_str().unwrap_or_default();
    if name.is_empty() || name.chars().count() > 100 {
        return Reply::invalid_form(
            "name",
            "BASE_TYPE_BAD_LENGTH",
            "Must be between 1 and 100 in length.",
        );
    }
    let kind = body["type"].as_u64().unwrap_or(payloads::GUILD_TEXT);
    if !CREATABLE_CHANNEL_TYPES.contains(&kind) {
        return Reply::invalid_form(
            "type",
            "BASE_TYPE_CHOICES",
            "Value must be one of {0, 2, 4, 5, 13, 15, 16}.",
        );
    }

    let parent_id = snowflake(&body["parent_id"]);
    if let Some(parent_id) = parent_id {
        let parent_is_category = state
            .channels
            .get(&parent_id)
            .is_some_and(|parent| parent["type"] == GUILD_CATEGORY);
        if kind == GUILD_CATEGORY || !parent_is_category {
            return Reply::invalid_form(
                "parent_id",
                "CHANNEL_PARENT_INVALID",
                "The parent must be a category of this guild.",
            );
        }
    }
    let overwrites = match body
        .get("permission_overwrites")
        .filter(|value| !value.is_null())
    {
        Some(overwrites) => match normalize_overwrites(overwrites) {
            Ok(overwrites) => overwrites,
            Err(reply) => return reply,
        },
        None => Vec::new(),
    };

    let channel_id = state.next_id();
    let position = state.guild_channels().len() as u64;
    let channel = payloads::guild_channel(GuildChannelFields {
        id: channel_id,
        guild_id: state.config.guild_id,
        kind,
        name,
        position,
        parent_id,
        topic: body["topic"].as_str(),
        permission_overwrites: overwrites,
    });
    state.channels.insert(channel_id, channel.clone());
    state.dispatch_change(INTENT_GUILDS, "CHANNEL_CREATE", channel.clone());
    Reply::created(channel)
}

/// Adds or removes a member's role. Like Discord, the bot may only manage roles below its own
/// highest role, and never a managed role.
fn change_role(state: &mut State, user: &str, role: &str, add: bool) -> Reply {
    let Some(user_id) = parse_id(user).filter(|id| state.members.contains_key(id)) else {
        return Reply::unknown_member();
    };
    let Some(role) =
        parse_id(role).and_then(|role_id| state.roles.iter().find(|r| r.id == role_id))
    else {
        return Reply::unknown_role();
    };
    let role = role.clone();

    let bot_top_position = state
        .members
        .get(&state.config.bot_user_id)
        .map(|member| {
            state
                .roles
                .iter()
                .filter(|role| member.roles.contains(&role.id))
                .map(|role| role.position)
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0);
    if role.bot_id.is_some()
        || role.id == state.config.everyone_role_id
        || role.position >= bot_top_position
    {
        return Reply::missing_permissions();
    }

    let Some(member) = state.members.get_mut(&user_id) else {
        return Reply::unknown_member();
    };
    if add {
        if !member.roles.contains(&role.id) {
            member.roles.push(role.id);
        }
    } else {
        member.roles.retain(|role_id| *role_id != role.id);
    }

    if let Some(mut event) = state.member_json(user_id) {
        event["guild_id"] = json!(state.config.guild_id.to_string());
        state.dispatch_change(INTENT_GUILD_MEMBERS, "GUILD_MEMBER_UPDATE", event);
    }
    Reply::no_content()
}
