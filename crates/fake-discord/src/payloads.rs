//! JSON objects shaped as Discord sends them, built from the fake's state.
//!
//! serenity drops a gateway payload that fails to deserialize without logging it, so every
//! builder here is covered by a test that deserializes its output with serenity's own types.

use serde_json::{json, Value};

use crate::config::FakeDiscordConfig;
use crate::types::FakeUser;

/// Attachment size limit sent with interactions, in bytes (Discord's default of 10 MiB).
pub const ATTACHMENT_SIZE_LIMIT: u64 = 10 * 1024 * 1024;

/// Heartbeat interval sent in HELLO, in milliseconds (Discord's usual value).
pub const HEARTBEAT_INTERVAL_MS: u64 = 41_250;

/// Guild channel types used by the fake.
pub const GUILD_TEXT: u64 = 0;
pub const DM: u64 = 1;
pub const GUILD_CATEGORY: u64 = 4;
pub const PUBLIC_THREAD: u64 = 11;
pub const PRIVATE_THREAD: u64 = 12;

/// A guild role.
#[derive(Clone, Debug)]
pub struct Role {
    pub id: u64,
    pub name: String,
    pub permissions: u64,
    pub position: u64,
    /// The bot's own managed role carries the bot's id.
    pub bot_id: Option<u64>,
}

/// Returns a snowflake as Discord sends it: a decimal string.
pub fn id(value: u64) -> Value {
    Value::String(value.to_string())
}

pub fn user(user: &FakeUser) -> Value {
    json!({
        "id": id(user.id),
        "username": user.username,
        "global_name": null,
        "discriminator": "0",
        "avatar": null,
        "bot": user.bot,
        "system": false,
        "banner": null,
        "accent_color": null,
        "public_flags": 0,
        "flags": 0,
        "avatar_decoration_data": null,
    })
}

/// The bot's user as `GET /users/@me` and READY return it.
pub fn current_user(config: &FakeDiscordConfig) -> Value {
    let mut value = user(&bot_user(config));
    value["verified"] = json!(true);
    value["mfa_enabled"] = json!(false);
    value["locale"] = json!("en-US");
    value["premium_type"] = json!(0);
    value
}

pub fn bot_user(config: &FakeDiscordConfig) -> FakeUser {
    FakeUser {
        id: config.bot_user_id,
        username: config.bot_username.clone(),
        bot: true,
    }
}

/// The application as `GET /oauth2/applications/@me` returns it. `owner` owns the application.
pub fn application(config: &FakeDiscordConfig, owner: &FakeUser) -> Value {
    json!({
        "id": id(config.application_id),
        "name": config.bot_username,
        "icon": null,
        "description": "",
        "summary": "",
        "type": null,
        "rpc_origins": [],
        "bot_public": false,
        "bot_require_code_grant": false,
        "bot": user(&bot_user(config)),
        "terms_of_service_url": null,
        "privacy_policy_url": null,
        "owner": user(owner),
        "verify_key": "0".repeat(64),
        "team": null,
        "guild_id": null,
        "primary_sku_id": null,
        "slug": null,
        "cover_image": null,
        "flags": 0,
        "approximate_guild_count": 1,
        "redirect_uris": [],
        "interactions_endpoint_url": null,
        "role_connections_verification_url": null,
        "tags": [],
        "install_params": null,
        "integration_types_config": {"0": {}},
        "custom_install_url": null,
    })
}

pub fn role(role: &Role) -> Value {
    let tags = match role.bot_id {
        Some(bot_id) => json!({ "bot_id": id(bot_id) }),
        None => json!({}),
    };
    json!({
        "id": id(role.id),
        "name": role.name,
        "color": 0,
        "colors": {"primary_color": 0, "secondary_color": null, "tertiary_color": null},
        "hoist": false,
        "icon": null,
        "unicode_emoji": null,
        "position": role.position,
        "permissions": role.permissions.to_string(),
        "managed": role.bot_id.is_some(),
        "mentionable": false,
        "flags": 0,
        "tags": tags,
    })
}

/// Builds a guild member. `permissions` (the member's permissions in a channel) is only present
/// in interactions.
pub fn member(
    user_value: &FakeUser,
    roles: &[u64],
    joined_at: &str,
    permissions: Option<u64>,
) -> Value {
    let mut value = json!({
        "user": user(user_value),
        "nick": null,
        "avatar": null,
        "banner": null,
        "roles": roles.iter().map(|role| id(*role)).collect::<Vec<_>>(),
        "joined_at": joined_at,
        "premium_since": null,
        "deaf": false,
        "mute": false,
        "flags": 0,
        "pending": false,
        "communication_disabled_until": null,
        "unusual_dm_activity_until": null,
    });
    if let Some(permissions) = permissions {
        value["permissions"] = json!(permissions.to_string());
    }
    value
}

/// Fields of a guild channel as `POST /guilds/{guild}/channels` stores them.
pub struct GuildChannelFields<'a> {
    pub id: u64,
    pub guild_id: u64,
    pub kind: u64,
    pub name: &'a str,
    pub position: u64,
    pub parent_id: Option<u64>,
    pub topic: Option<&'a str>,
    pub permission_overwrites: Vec<Value>,
}

pub fn guild_channel(fields: GuildChannelFields<'_>) -> Value {
    json!({
        "id": id(fields.id),
        "type": fields.kind,
        "guild_id": id(fields.guild_id),
        "name": fields.name,
        "position": fields.position,
        "permission_overwrites": fields.permission_overwrites,
        "parent_id": fields.parent_id.map(id),
        "topic": fields.topic,
        "nsfw": false,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "flags": 0,
    })
}

/// A permission overwrite as Discord returns it. `kind` is 0 for a role and 1 for a member.
pub fn overwrite(target_id: u64, kind: u64, allow: u64, deny: u64) -> Value {
    json!({
        "id": id(target_id),
        "type": kind,
        "allow": allow.to_string(),
        "deny": deny.to_string(),
    })
}

/// Fields of a thread channel.
pub struct ThreadFields<'a> {
    pub id: u64,
    pub guild_id: u64,
    pub parent_id: u64,
    pub owner_id: u64,
    pub kind: u64,
    pub name: &'a str,
    pub invitable: bool,
    pub auto_archive_duration: u64,
    pub created_at: &'a str,
}

pub fn thread_channel(fields: ThreadFields<'_>) -> Value {
    json!({
        "id": id(fields.id),
        "type": fields.kind,
        "guild_id": id(fields.guild_id),
        "parent_id": id(fields.parent_id),
        "owner_id": id(fields.owner_id),
        "name": fields.name,
        "last_message_id": null,
        "rate_limit_per_user": 0,
        "message_count": 0,
        "member_count": 1,
        "total_message_sent": 0,
        "flags": 0,
        "thread_metadata": {
            "archived": false,
            "auto_archive_duration": fields.auto_archive_duration,
            "archive_timestamp": fields.created_at,
            "locked": false,
            "invitable": fields.invitable,
            "create_timestamp": fields.created_at,
        },
    })
}

/// A thread member as `GET /channels/{thread}/thread-members` returns it.
pub fn thread_member(thread_id: u64, user_id: u64, joined_at: &str) -> Value {
    json!({
        "id": id(thread_id),
        "user_id": id(user_id),
        "join_timestamp": joined_at,
        "flags": 0,
    })
}

/// Builds a DM channel with one recipient.
pub fn private_channel(channel_id: u64, recipient: &FakeUser) -> Value {
    json!({
        "id": id(channel_id),
        "type": DM,
        "last_message_id": null,
        "recipients": [user(recipient)],
        "flags": 0,
    })
}

/// Builds the attachment object stored with a message.
pub fn attachment(
    attachment_id: u64,
    filename: &str,
    content_type: Option<&str>,
    size: usize,
    description: Option<&str>,
) -> Value {
    let url = format!("https://cdn.discordapp.com/attachments/{attachment_id}/{filename}");
    json!({
        "id": id(attachment_id),
        "filename": filename,
        "description": description,
        "content_type": content_type,
        "size": size,
        "url": url,
        "proxy_url": url,
        "ephemeral": false,
    })
}

/// Fields of a message that are not copied from the request body.
pub struct MessageFields<'a> {
    pub id: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    pub author: &'a FakeUser,
    pub timestamp: &'a str,
    /// Message type: 0 for a plain message, 20 for a reply to a slash command.
    pub kind: u64,
    /// Set for messages sent through an interaction's webhook.
    pub application_id: Option<u64>,
    pub attachments: Vec<Value>,
}

/// Builds a full message from a create request body (`content`, `embeds`, `components`, `flags`,
/// `tts`) and the fields the fake assigns.
pub fn message(fields: MessageFields<'_>, body: &Value) -> Value {
    let mut value = json!({
        "id": id(fields.id),
        "channel_id": id(fields.channel_id),
        "author": user(fields.author),
        "content": "",
        "timestamp": fields.timestamp,
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "mention_channels": [],
        "attachments": fields.attachments,
        "embeds": [],
        "components": [],
        "reactions": [],
        "pinned": false,
        "type": fields.kind,
        "flags": 0,
    });
    if let Some(guild_id) = fields.guild_id {
        value["guild_id"] = id(guild_id);
    }
    if let Some(application_id) = fields.application_id {
        value["application_id"] = id(application_id);
        value["webhook_id"] = id(application_id);
    }
    apply_message_edit(&mut value, body);
    value
}

/// Copies the editable fields of a create or edit request body onto a stored message.
pub fn apply_message_edit(message: &mut Value, body: &Value) {
    if let Some(content) = body.get("content") {
        message["content"] = match content {
            Value::String(_) => content.clone(),
            _ => json!(""),
        };
    }
    if let Some(embeds) = body.get("embeds").filter(|embeds| embeds.is_array()) {
        message["embeds"] = stored_embeds(embeds);
    }
    if let Some(components) = body.get("components").filter(|value| value.is_array()) {
        message["components"] = components.clone();
    }
    if let Some(flags) = body.get("flags").and_then(Value::as_u64) {
        message["flags"] = json!(flags);
    }
    if let Some(tts) = body.get("tts").and_then(Value::as_bool) {
        message["tts"] = json!(tts);
    }
}

/// Returns the embeds as Discord stores them: the request's embed objects with `type: "rich"`.
fn stored_embeds(embeds: &Value) -> Value {
    let embeds = embeds
        .as_array()
        .into_iter()
        .flatten()
        .filter(|embed| embed.is_object())
        .map(|embed| {
            let mut embed = embed.clone();
            if embed.get("type").is_none_or(Value::is_null) {
                embed["type"] = json!("rich");
            }
            embed
        })
        .collect();
    Value::Array(embeds)
}

/// Builds a command as Discord returns it after registration, from one item of the request body
/// and the ids the fake assigned.
pub fn command(body: &Value, command_id: u64, application_id: u64, guild_id: Option<u64>) -> Value {
    let mut value = json!({
        "id": id(command_id),
        "type": body.get("type").and_then(Value::as_u64).unwrap_or(1),
        "application_id": id(application_id),
        "name": body.get("name").cloned().unwrap_or(json!("")),
        "name_localizations": body.get("name_localizations").cloned().unwrap_or(Value::Null),
        "description": body.get("description").cloned().unwrap_or(json!("")),
        "description_localizations": body
            .get("description_localizations")
            .cloned()
            .unwrap_or(Value::Null),
        "options": body.get("options").cloned().filter(Value::is_array).unwrap_or(json!([])),
        "default_member_permissions": body
            .get("default_member_permissions")
            .map(|value| match value {
                Value::Number(number) => json!(number.to_string()),
                other => other.clone(),
            })
            .unwrap_or(Value::Null),
        "dm_permission": body.get("dm_permission").and_then(Value::as_bool).unwrap_or(true),
        "nsfw": body.get("nsfw").and_then(Value::as_bool).unwrap_or(false),
        "integration_types": body.get("integration_types").cloned().filter(Value::is_array).unwrap_or(json!([0])),
        "contexts": body.get("contexts").cloned().unwrap_or(Value::Null),
        "version": id(command_id),
    });
    if let Some(guild_id) = guild_id {
        value["guild_id"] = id(guild_id);
    }
    value
}

/// Builds the READY dispatch data. `shard` repeats the `[id, count]` of IDENTIFY.
pub fn ready(
    config: &FakeDiscordConfig,
    session_id: &str,
    resume_gateway_url: &str,
    shard: Option<&Value>,
) -> Value {
    let mut value = json!({
        "v": 10,
        "user": current_user(config),
        "guilds": [{"id": id(config.guild_id), "unavailable": true}],
        "session_id": session_id,
        "resume_gateway_url": resume_gateway_url,
        "application": {"id": id(config.application_id), "flags": 0},
        "private_channels": [],
        "presences": [],
        "relationships": [],
        "geo_ordered_rtc_regions": [],
    });
    if let Some(shard) = shard {
        value["shard"] = shard.clone();
    }
    value
}

/// Everything GUILD_CREATE carries besides the guild's own settings.
pub struct GuildContents {
    pub roles: Vec<Value>,
    pub members: Vec<Value>,
    pub channels: Vec<Value>,
    pub threads: Vec<Value>,
    pub owner_id: u64,
    pub joined_at: String,
}

/// Builds the GUILD_CREATE dispatch data, which serenity reads as a full `Guild`.
pub fn guild(config: &FakeDiscordConfig, contents: GuildContents) -> Value {
    let member_count = contents.members.len();
    let mut value = json!({
        "id": id(config.guild_id),
        "name": "Trackly Test Guild",
        "icon": null,
        "icon_hash": null,
        "splash": null,
        "discovery_splash": null,
        "owner_id": id(contents.owner_id),
        "afk_channel_id": null,
        "afk_timeout": 300,
        "widget_enabled": false,
        "widget_channel_id": null,
        "verification_level": 1,
        "default_message_notifications": 1,
        "explicit_content_filter": 2,
        "roles": contents.roles,
        "emojis": [],
        "features": [],
        "mfa_level": 0,
        "application_id": null,
        "system_channel_id": id(config.general_channel_id()),
        "system_channel_flags": 0,
        "rules_channel_id": null,
        "max_presences": null,
        "max_members": 500_000,
        "vanity_url_code": null,
        "description": null,
        "banner": null,
        "premium_tier": 0,
        "premium_subscription_count": 0,
        "preferred_locale": "en-US",
        "public_updates_channel_id": null,
        "max_video_channel_users": 25,
        "max_stage_video_channel_users": 50,
        "nsfw_level": 0,
        "stickers": [],
        "premium_progress_bar_enabled": false,
        "safety_alerts_channel_id": null,
        "incidents_data": null,
    });

    // Fields that only GUILD_CREATE carries.
    let create_fields = json!({
        "joined_at": contents.joined_at,
        "large": false,
        "unavailable": false,
        "member_count": member_count,
        "voice_states": [],
        "members": contents.members,
        "channels": contents.channels,
        "threads": contents.threads,
        "presences": [],
        "stage_instances": [],
        "guild_scheduled_events": [],
        "soundboard_sounds": [],
    });
    if let (Some(guild), Value::Object(extra)) = (value.as_object_mut(), create_fields) {
        guild.extend(extra);
    }
    value
}

/// Context of an interaction: the channel, the user and, in a guild, the member.
pub struct InteractionContext<'a> {
    pub id: u64,
    pub token: &'a str,
    pub application_id: u64,
    pub user: &'a FakeUser,
    pub channel_id: u64,
    /// The channel's name and type, when the channel is stored in the fake.
    pub channel: Option<Value>,
    /// Guild, member roles, joined_at and the member's permissions in the channel.
    pub guild: Option<GuildMemberContext<'a>>,
    pub app_permissions: u64,
}

pub struct GuildMemberContext<'a> {
    pub guild_id: u64,
    pub roles: &'a [u64],
    pub joined_at: &'a str,
    pub permissions: u64,
}

/// Builds an INTERACTION_CREATE payload of `kind` (2 command, 3 component, 5 modal submit) with `data`.
pub fn interaction(context: InteractionContext<'_>, kind: u64, data: Value) -> Value {
    let mut value = json!({
        "id": id(context.id),
        "application_id": id(context.application_id),
        "type": kind,
        "token": context.token,
        "version": 1,
        "channel_id": id(context.channel_id),
        "app_permissions": context.app_permissions.to_string(),
        "locale": "en-US",
        "entitlements": [],
        "attachment_size_limit": ATTACHMENT_SIZE_LIMIT,
        "data": data,
    });
    if let Some(channel) = context.channel {
        value["channel"] = channel;
    }

    match context.guild {
        Some(guild) => {
            value["guild_id"] = id(guild.guild_id);
            value["guild_locale"] = json!("en-US");
            value["member"] = member(
                context.user,
                guild.roles,
                guild.joined_at,
                Some(guild.permissions),
            );
            value["authorizing_integration_owners"] = json!({ "0": id(guild.guild_id) });
            value["context"] = json!(0);
        }
        None => {
            value["user"] = user(context.user);
            // A guild-installed app invoked in a DM with the bot reports guild id 0.
            value["authorizing_integration_owners"] = json!({ "0": "0" });
            value["context"] = json!(1);
        }
    }
    value
}

/// `data` of a slash command interaction. `options` are already shaped as Discord sends them.
pub fn command_data(
    command_id: u64,
    name: &str,
    guild_id: Option<u64>,
    options: Vec<Value>,
) -> Value {
    let mut data = json!({
        "id": id(command_id),
        "name": name,
        "type": 1,
        "options": options,
    });
    if let Some(guild_id) = guild_id {
        data["guild_id"] = id(guild_id);
    }
    data
}

/// `data` of a modal submission with one action row per text input.
pub fn modal_submit_data(custom_id: &str, fields: &[(String, String)]) -> Value {
    let rows: Vec<Value> = fields
        .iter()
        .map(|(input_id, value)| {
            json!({
                "type": 1,
                "components": [{"type": 4, "custom_id": input_id, "value": value}],
            })
        })
        .collect();
    json!({ "custom_id": custom_id, "components": rows })
}

/// `data` of a button click.
pub fn button_data(custom_id: &str) -> Value {
    json!({ "custom_id": custom_id, "component_type": 2 })
}

/// Builds a gateway dispatch frame (op 0).
pub fn dispatch_frame(event: &str, sequence: u64, data: Value) -> Value {
    json!({ "op": 0, "t": event, "s": sequence, "d": data })
}

/// Builds the HELLO frame (op 10).
pub fn hello_frame() -> Value {
    json!({ "op": 10, "d": { "heartbeat_interval": HEARTBEAT_INTERVAL_MS }, "s": null, "t": null })
}

/// Builds an error body as Discord sends it.
pub fn error_body(code: u64, message: &str) -> Value {
    json!({ "code": code, "message": message })
}
