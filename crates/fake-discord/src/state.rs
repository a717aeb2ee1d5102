//! The fake's in-memory Discord: users, guild, channels, messages, commands and interactions.

use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::FakeDiscordConfig;
use crate::payloads::{self, GuildChannelFields, Role};
use crate::permissions;
use crate::types::{
    CommandScope, FakeUser, HeldReply, InteractionRecord, InteractionRef, RecordedRequest,
    RegisteredCommands, ScriptedError,
};

/// First snowflake the fake assigns. It lies far above the configured ids, so the two never
/// collide.
const FIRST_ASSIGNED_ID: u64 = 1_300_000_000_000_000_000;

/// Gateway intent bits that gate the dispatches the fake sends on REST changes.
pub const INTENT_GUILDS: u64 = 1 << 0;
pub const INTENT_GUILD_MEMBERS: u64 = 1 << 1;

#[derive(Clone, Debug)]
pub struct Member {
    pub roles: Vec<u64>,
    pub joined_at: String,
}

#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub value: Value,
    /// Ephemeral interaction responses do not show in the channel's history.
    pub ephemeral: bool,
}

impl StoredMessage {
    pub fn channel_id(&self) -> u64 {
        snowflake(&self.value["channel_id"]).unwrap_or(0)
    }
}

#[derive(Clone, Debug)]
pub struct Interaction {
    pub record: InteractionRecord,
    pub token: String,
    /// Interaction type: 2 command, 3 component, 5 modal submit.
    pub kind: u64,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
    /// Message that `@original` refers to: the response message after a type 4 or 5 callback,
    /// or the clicked message for a component interaction.
    pub original_message_id: Option<u64>,
    pub component_message_id: Option<u64>,
    /// Ids of the original response and the followups, which `/messages/{id}` may address.
    pub message_ids: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Commands {
    pub global: Option<Vec<Value>>,
    pub guild: BTreeMap<u64, Vec<Value>>,
    pub latest: Option<RegisteredCommands>,
    /// Ids stay the same when a command is registered again under the same scope and name, as
    /// on Discord.
    pub ids: BTreeMap<(Option<u64>, String), u64>,
}

/// A frame queued for one websocket connection.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    Close(u16, String),
}

#[derive(Debug)]
pub struct Connection {
    pub id: u64,
    pub sender: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Debug, Default)]
pub struct Gateway {
    pub connection: Option<Connection>,
    pub next_connection_id: u64,
    pub session_id: Option<String>,
    pub sequence: u64,
    pub intents: u64,
    /// True once READY or RESUMED was sent on the current connection.
    pub session_ready: bool,
    /// Number of READY and RESUMED dispatches sent so far.
    pub handshakes: u64,
    /// Number of READY dispatches sent so far.
    pub readies: u64,
    pub url: String,
    /// While true, websocket upgrades get a 503 response, as during a gateway outage.
    pub refusing: bool,
}

pub struct State {
    pub config: FakeDiscordConfig,
    pub started: Instant,
    next_id: u64,
    pub owner: FakeUser,
    pub users: BTreeMap<u64, FakeUser>,
    pub members: BTreeMap<u64, Member>,
    pub roles: Vec<Role>,
    /// Guild channels, threads and DM channels, stored as Discord returns them.
    pub channels: BTreeMap<u64, Value>,
    /// DM channel id per recipient user id.
    pub dm_channels: BTreeMap<u64, u64>,
    /// Join timestamps of thread members per thread id and user id.
    pub thread_members: BTreeMap<u64, BTreeMap<u64, String>>,
    pub messages: BTreeMap<u64, StoredMessage>,
    pub attachments: BTreeMap<u64, Vec<u8>>,
    pub commands: Commands,
    pub interactions: BTreeMap<u64, Interaction>,
    pub tokens: HashMap<String, u64>,
    pub requests: Vec<RecordedRequest>,
    pub log: Vec<String>,
    pub scripted: Vec<ScriptedError>,
    pub held_replies: Vec<HeldReply>,
    /// Message created per author id and nonce, for requests with `enforce_nonce`, with the
    /// time the nonce was first used.
    pub nonces: HashMap<(u64, String), (u64, Instant)>,
    pub violations: Vec<String>,
    pub gateway: Gateway,
}

/// Returns the current time as Discord formats timestamps.
pub fn now_timestamp() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Reads a snowflake sent as a decimal string or a JSON number.
pub fn snowflake(value: &Value) -> Option<u64> {
    match value {
        Value::String(text) => text.parse().ok(),
        Value::Number(number) => number.as_u64(),
        _ => None,
    }
}

impl State {
    pub fn new(config: FakeDiscordConfig, gateway_url: String) -> State {
        let joined_at = now_timestamp();
        let bot = payloads::bot_user(&config);
        let owner = FakeUser::new(config.guild_id + 20, "guild-owner");
        let bot_role_id = config.guild_id + 3;
        let roles = vec![
            Role {
                id: config.everyone_role_id,
                name: "@everyone".to_string(),
                permissions: permissions::EVERYONE,
                position: 0,
                bot_id: None,
            },
            Role {
                id: config.linked_role_id(),
                name: "Linked".to_string(),
                permissions: 0,
                position: 1,
                bot_id: None,
            },
            Role {
                id: config.staff_role_id(),
                name: "Staff".to_string(),
                permissions: permissions::STAFF,
                position: 2,
                bot_id: None,
            },
            Role {
                id: bot_role_id,
                name: config.bot_username.clone(),
                permissions: permissions::BOT,
                position: 3,
                bot_id: Some(config.bot_user_id),
            },
        ];

        let mut state = State {
            started: Instant::now(),
            next_id: FIRST_ASSIGNED_ID,
            owner: owner.clone(),
            users: BTreeMap::new(),
            members: BTreeMap::new(),
            roles,
            channels: BTreeMap::new(),
            dm_channels: BTreeMap::new(),
            thread_members: BTreeMap::new(),
            messages: BTreeMap::new(),
            attachments: BTreeMap::new(),
            commands: Commands::default(),
            interactions: BTreeMap::new(),
            tokens: HashMap::new(),
            requests: Vec::new(),
            log: Vec::new(),
            scripted: Vec::new(),
            held_replies: Vec::new(),
            nonces: HashMap::new(),
            violations: Vec::new(),
            gateway: Gateway {
                url: gateway_url,
                ..Gateway::default()
            },
            config,
        };

        state.users.insert(bot.id, bot.clone());
        state.members.insert(
            bot.id,
            Member {
                roles: vec![bot_role_id],
                joined_at: joined_at.clone(),
            },
        );
        state.add_user(owner);
        let general = payloads::guild_channel(GuildChannelFields {
            id: state.config.general_channel_id(),
            guild_id: state.config.guild_id,
            kind: payloads::GUILD_TEXT,
            name: "general",
            position: 0,
            parent_id: None,
            topic: None,
            permission_overwrites: Vec::new(),
        });
        state
            .channels
            .insert(state.config.general_channel_id(), general);
        state
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Adds a log line prefixed with the time since the fake started.
    pub fn log_line(&mut self, line: String) {
        let elapsed = self.started.elapsed().as_secs_f64();
        self.log.push(format!("{elapsed:8.3}s {line}"));
    }

    /// Stores a user and makes them a guild member (keeping the roles of a known member).
    pub fn add_user(&mut self, user: FakeUser) {
        self.members.entry(user.id).or_insert_with(|| Member {
            roles: Vec::new(),
            joined_at: now_timestamp(),
        });
        self.users.insert(user.id, user);
    }

    pub fn bot_user(&self) -> FakeUser {
        payloads::bot_user(&self.config)
    }

    pub fn role_permissions(&self) -> Vec<(u64, u64)> {
        self.roles
            .iter()
            .map(|role| (role.id, role.permissions))
            .collect()
    }

    /// Computes a member's permissions in a channel, using a thread's parent overwrites.
    pub fn member_permissions(&self, user_id: u64, roles: &[u64], channel_id: u64) -> u64 {
        let mut channel = self.channels.get(&channel_id);
        if let Some(parent) = channel
            .filter(|channel| is_thread(channel))
            .and_then(|thread| snowflake(&thread["parent_id"]))
        {
            channel = self.channels.get(&parent);
        }
        let overwrites = channel
            .and_then(|channel| channel["permission_overwrites"].as_array())
            .cloned()
            .unwrap_or_default();

        permissions::in_channel(
            self.config.everyone_role_id,
            &self.role_permissions(),
            user_id,
            roles,
            &overwrites,
        )
    }

    pub fn bot_permissions(&self, channel_id: u64) -> u64 {
        let roles = self
            .members
            .get(&self.config.bot_user_id)
            .map(|member| member.roles.clone())
            .unwrap_or_default();
        self.member_permissions(self.config.bot_user_id, &roles, channel_id)
    }

    pub fn member_json(&self, user_id: u64) -> Option<Value> {
        let user = self.users.get(&user_id)?;
        let member = self.members.get(&user_id)?;
        Some(payloads::member(
            user,
            &member.roles,
            &member.joined_at,
            None,
        ))
    }

    /// Returns the DM channel with a user, creating it on first use.
    pub fn dm_channel(&mut self, user_id: u64) -> u64 {
        if let Some(channel_id) = self.dm_channels.get(&user_id) {
            return *channel_id;
        }
        let channel_id = self.next_id();
        let recipient = self
            .users
            .get(&user_id)
            .cloned()
            .unwrap_or_else(|| FakeUser::new(user_id, format!("user-{user_id}")));
        self.channels.insert(
            channel_id,
            payloads::private_channel(channel_id, &recipient),
        );
        self.dm_channels.insert(user_id, channel_id);
        channel_id
    }

    /// Lists the guild's channels without threads, as `GET /guilds/{guild}/channels` does.
    pub fn guild_channels(&self) -> Vec<Value> {
        self.channels
            .values()
            .filter(|channel| snowflake(&channel["guild_id"]) == Some(self.config.guild_id))
            .filter(|channel| !is_thread(channel))
            .cloned()
            .collect()
    }

    pub fn threads(&self) -> Vec<Value> {
        self.channels
            .values()
            .filter(|channel| snowflake(&channel["guild_id"]) == Some(self.config.guild_id))
            .filter(|channel| is_thread(channel))
            .cloned()
            .collect()
    }

    /// Lists the visible messages of a channel, oldest first.
    pub fn channel_messages(&self, channel_id: u64) -> Vec<Value> {
        self.messages
            .values()
            .filter(|message| !message.ephemeral && message.channel_id() == channel_id)
            .map(|message| message.value.clone())
            .collect()
    }

    /// Stores a new message and updates the channel's `last_message_id`.
    pub fn store_message(&mut self, value: Value, ephemeral: bool) {
        let Some(message_id) = snowflake(&value["id"]) else {
            return;
        };
        let channel_id = snowflake(&value["channel_id"]).unwrap_or(0);
        if !ephemeral {
            if let Some(channel) = self.channels.get_mut(&channel_id) {
                channel["last_message_id"] = payloads::id(message_id);
                if is_thread(channel) {
                    let count = channel["message_count"].as_u64().unwrap_or(0) + 1;
                    channel["message_count"] = json!(count);
                    channel["total_message_sent"] = json!(count);
                }
            }
        }
        self.messages
            .insert(message_id, StoredMessage { value, ephemeral });
    }

    /// Builds the GUILD_CREATE data from the current state.
    pub fn guild_payload(&self) -> Value {
        let members = self
            .members
            .keys()
            .filter_map(|user_id| self.member_json(*user_id))
            .collect();
        payloads::guild(
            &self.config,
            payloads::GuildContents {
                roles: self.roles.iter().map(payloads::role).collect(),
                members,
                channels: self.guild_channels(),
                threads: self.threads(),
                owner_id: self.owner.id,
                joined_at: self
                    .members
                    .get(&self.config.bot_user_id)
                    .map(|member| member.joined_at.clone())
                    .unwrap_or_else(now_timestamp),
            },
        )
    }

    pub fn ready_payload(&self, shard: Option<&Value>) -> Value {
        let session_id = self.gateway.session_id.clone().unwrap_or_default();
        payloads::ready(&self.config, &session_id, &self.gateway.url, shard)
    }

    /// Sends a frame to the connected bot.
    pub fn send_frame(&mut self, frame: &Value) -> Result<(), String> {
        let connection = self
            .gateway
            .connection
            .as_ref()
            .ok_or("the bot is not connected to the gateway")?;
        connection
            .sender
            .send(Outgoing::Text(frame.to_string()))
            .map_err(|_| "the gateway connection closed".to_string())
    }

    /// Sends a dispatch (op 0) with the next sequence number.
    pub fn dispatch(&mut self, event: &str, data: Value) -> Result<u64, String> {
        if self.gateway.connection.is_none() {
            return Err(format!(
                "cannot send {event}: the bot is not connected to the gateway"
            ));
        }
        self.gateway.sequence += 1;
        let sequence = self.gateway.sequence;
        self.send_frame(&payloads::dispatch_frame(event, sequence, data))?;
        self.log_line(format!("gateway -> {event} s={sequence}"));
        Ok(sequence)
    }

    /// Sends a dispatch that mirrors a REST change, when the session is ready and its intents
    /// include `intent`. Discord sends these events too, and they keep serenity's cache current.
    pub fn dispatch_change(&mut self, intent: u64, event: &str, data: Value) {
        if self.gateway.session_ready && self.gateway.intents & intent != 0 {
            if let Err(error) = self.dispatch(event, data) {
                self.log_line(format!("gateway: {error}"));
            }
        }
    }

    /// Registers a command list under a scope and returns it as Discord does, with ids.
    pub fn register_commands(&mut self, scope: CommandScope, body: &[Value]) -> Vec<Value> {
        let guild_id = match scope {
            CommandScope::Global => None,
            CommandScope::Guild(guild_id) => Some(guild_id),
        };
        let mut commands = Vec::with_capacity(body.len());
        for item in body {
            let name = item["name"].as_str().unwrap_or_default().to_string();
            let key = (guild_id, name);
            let command_id = match self.commands.ids.get(&key) {
                Some(command_id) => *command_id,
                None => {
                    let command_id = self.next_id();
                    self.commands.ids.insert(key, command_id);
                    command_id
                }
            };
            commands.push(payloads::command(
                item,
                command_id,
                self.config.application_id,
                guild_id,
            ));
        }

        match guild_id {
            None => self.commands.global = Some(commands.clone()),
            Some(guild_id) => {
                self.commands.guild.insert(guild_id, commands.clone());
            }
        }
        self.commands.latest = Some(RegisteredCommands {
            scope,
            commands: commands.clone(),
        });
        commands
    }

    /// Finds a registered command by name that applies to a guild (guild commands first) or
    /// to DMs (global commands only).
    pub fn find_command(&self, name: &str, guild_id: Option<u64>) -> Option<Value> {
        let by_name = |commands: &Vec<Value>| {
            commands
                .iter()
                .find(|command| command["name"] == name && command["type"] == 1)
                .cloned()
        };
        let guild_command = guild_id
            .and_then(|guild_id| self.commands.guild.get(&guild_id))
            .and_then(by_name);
        guild_command.or_else(|| self.commands.global.as_ref().and_then(by_name))
    }

    /// Creates the record and payload of a new interaction and returns both.
    pub fn new_interaction(
        &mut self,
        kind: u64,
        user: &FakeUser,
        guild_id: Option<u64>,
        channel_id: u64,
        data: Value,
    ) -> (InteractionRef, Value) {
        let interaction_id = self.next_id();
        let token = format!("fake-interaction-token-{interaction_id}");

        let member = self.members.get(&user.id).cloned();
        let guild = guild_id.map(|guild_id| {
            let member = member.clone().unwrap_or(Member {
                roles: Vec::new(),
                joined_at: now_timestamp(),
            });
            (guild_id, member)
        });
        let permissions = guild.as_ref().map_or(0, |(_, member)| {
            self.member_permissions(user.id, &member.roles, channel_id)
        });
        let channel = self.channels.get(&channel_id).map(|channel| {
            json!({
                "id": channel["id"],
                "type": channel["type"],
                "name": channel.get("name").cloned().unwrap_or(Value::Null),
                "guild_id": channel.get("guild_id").cloned().unwrap_or(Value::Null),
                "parent_id": channel.get("parent_id").cloned().unwrap_or(Value::Null),
            })
        });

        let payload = payloads::interaction(
            payloads::InteractionContext {
                id: interaction_id,
                token: &token,
                application_id: self.config.application_id,
                user,
                channel_id,
                channel,
                guild: guild
                    .as_ref()
                    .map(|(guild_id, member)| payloads::GuildMemberContext {
                        guild_id: *guild_id,
                        roles: &member.roles,
                        joined_at: &member.joined_at,
                        permissions,
                    }),
                app_permissions: self.bot_permissions(channel_id),
            },
            kind,
            data,
        );

        self.tokens.insert(token.clone(), interaction_id);
        self.interactions.insert(
            interaction_id,
            Interaction {
                record: InteractionRecord::new(interaction_id, Instant::now()),
                token: token.clone(),
                kind,
                channel_id,
                guild_id,
                original_message_id: None,
                component_message_id: None,
                message_ids: Vec::new(),
            },
        );
        (
            InteractionRef {
                id: interaction_id,
                token,
            },
            payload,
        )
    }

    /// Finds the modal the bot opened with this `custom_id` and returns its data.
    pub fn open_modal(&self, custom_id: &str) -> Option<Value> {
        self.interactions.values().find_map(|interaction| {
            interaction
                .record
                .callbacks
                .iter()
                .filter(|(_, body)| body["type"] == 9)
                .map(|(_, body)| &body["data"])
                .find(|data| data["custom_id"] == custom_id)
                .cloned()
        })
    }
}

pub fn is_thread(channel: &Value) -> bool {
    matches!(channel["type"].as_u64(), Some(10..=12))
}
