//! The handle tests use to start, drive and inspect the fake.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::{anyhow, Context};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::config::FakeDiscordConfig;
use crate::payloads::{self, GuildChannelFields};
use crate::shared::Shared;
use crate::state::{State, INTENT_GUILDS};
use crate::types::{
    ButtonClick, FakeUser, HeldReply, InteractionRecord, InteractionRef, ModalSubmit,
    RecordedRequest, RegisteredCommands, ScriptedError, SlashCommand,
};
use crate::{gateway, inject, openapi, rest};

/// How long `send_modal_submit` waits for the bot to open the modal (type 9 callback).
const MODAL_OPEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How long `send_reconnect` waits for the bot to resume or identify again.
const RECONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long `shutdown` waits for the servers to stop before aborting them.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// A running fake Discord: a REST server and a gateway server on 127.0.0.1.
///
/// Clones share the same fake. Every REST request and gateway event goes to a log that
/// [`FakeDiscord::request_log`] returns, and wait errors include it.
#[derive(Clone)]
pub struct FakeDiscord {
    shared: Arc<Shared>,
    servers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl FakeDiscord {
    /// Starts the REST and gateway servers on free ports of 127.0.0.1.
    ///
    /// Loads the OpenAPI description once per process. When the file is absent, prints
    /// `OpenAPI check skipped: <path> not found` once and checks nothing.
    pub async fn start(config: FakeDiscordConfig) -> anyhow::Result<FakeDiscord> {
        let spec_path = config.resolve_openapi_spec();
        let openapi = tokio::task::spawn_blocking(move || openapi::load(&spec_path))
            .await
            .context("loading the OpenAPI description failed")??;

        let rest_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind the fake's REST server to 127.0.0.1")?;
        let gateway_listener = TcpListener::bind("127.0.0.1:0")
            .await
            .context("failed to bind the fake's gateway server to 127.0.0.1")?;
        let rest_base = format!("http://{}", rest_listener.local_addr()?);
        let gateway_url = format!("ws://{}", gateway_listener.local_addr()?);

        let shared = Arc::new(Shared::new(config, rest_base, gateway_url, openapi));
        let rest_app = Router::new()
            .fallback(rest::handle)
            .with_state(shared.clone());
        let gateway_app = Router::new()
            .route("/", get(gateway::upgrade))
            .with_state(shared.clone());

        let servers = vec![
            spawn_server(shared.clone(), rest_listener, rest_app, "REST"),
            spawn_server(shared.clone(), gateway_listener, gateway_app, "gateway"),
        ];
        tracing::info!(rest = %shared.rest_base, gateway = %shared.gateway_url, "fake Discord started");
        Ok(FakeDiscord {
            shared,
            servers: Arc::new(Mutex::new(servers)),
        })
    }

    /// Returns the base URL to give serenity's `HttpBuilder::proxy`, `http://127.0.0.1:PORT`.
    pub fn rest_base(&self) -> String {
        self.shared.rest_base.clone()
    }

    /// Returns the gateway URL that `GET /api/v10/gateway` returns.
    pub fn gateway_url(&self) -> String {
        self.shared.gateway_url.clone()
    }

    pub fn config(&self) -> &FakeDiscordConfig {
        &self.shared.config
    }

    /// Waits until the bot sent IDENTIFY and the fake sent READY.
    pub async fn wait_for_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        self.shared
            .wait_for(
                timeout,
                || "the bot to IDENTIFY on the gateway (READY sent)".to_string(),
                |shared| (shared.lock().gateway.readies > 0).then_some(()),
            )
            .await
    }

    /// Waits until the bot registered a command list and returns the last one.
    pub async fn wait_for_commands(&self, timeout: Duration) -> anyhow::Result<RegisteredCommands> {
        self.shared
            .wait_for(
                timeout,
                || "the bot to register its commands".to_string(),
                |shared| shared.lock().commands.latest.clone(),
            )
            .await
    }

    /// Returns the last command list the bot registered (global or guild).
    pub fn registered_commands(&self) -> Option<RegisteredCommands> {
        self.shared.lock().commands.latest.clone()
    }

    /// Dispatches a slash command. Fails without sending when the bot has no ready session, or
    /// when Discord would not send the command. That is the case when the command, subcommand or
    /// an option is not registered, a required option is missing, or a value breaks the
    /// registered type, choices or limits.
    pub async fn send_command(&self, command: SlashCommand) -> anyhow::Result<InteractionRef> {
        let result = self
            .shared
            .update(|state| inject::slash_command(state, command));
        result.map_err(|error| self.error_with_log("cannot send the slash command", &error))
    }

    /// Dispatches a modal submission. First waits up to 5 seconds for the bot to open the modal
    /// with the same `custom_id`, because poise's modal collector only receives submissions that
    /// arrive after it starts. Checks the fields against the modal's text inputs.
    pub async fn send_modal_submit(&self, submit: ModalSubmit) -> anyhow::Result<InteractionRef> {
        let custom_id = submit.custom_id.clone();
        let modal = self
            .shared
            .wait_for(
                MODAL_OPEN_TIMEOUT,
                || format!("the bot to open a modal with custom_id {custom_id:?}"),
                |shared| shared.lock().open_modal(&custom_id),
            )
            .await
            .context("cannot submit the modal")?;

        let result = self
            .shared
            .update(|state| inject::modal_submit(state, submit, &modal));
        result.map_err(|error| self.error_with_log("cannot submit the modal", &error))
    }

    /// Dispatches a click on a button of a stored message, with the message's full JSON.
    pub async fn send_button_click(&self, click: ButtonClick) -> anyhow::Result<InteractionRef> {
        let result = self
            .shared
            .update(|state| inject::button_click(state, click));
        result.map_err(|error| self.error_with_log("cannot click the button", &error))
    }

    /// Returns what the bot has sent so far for an interaction.
    pub fn interaction(&self, id: u64) -> Option<InteractionRecord> {
        self.shared
            .lock()
            .interactions
            .get(&id)
            .map(|interaction| interaction.record.clone())
    }

    /// Waits until the interaction has a first callback AND `done(&record)` is true.
    pub async fn wait_for_interaction(
        &self,
        r: &InteractionRef,
        timeout: Duration,
        done: impl Fn(&InteractionRecord) -> bool,
    ) -> anyhow::Result<InteractionRecord> {
        let id = r.id;
        let shared = &self.shared;
        shared
            .wait_for(
                timeout,
                || {
                    let record = shared
                        .lock()
                        .interactions
                        .get(&id)
                        .map(|i| i.record.clone());
                    match record {
                        Some(record) => format!(
                            "interaction {id} to be answered and done (so far {} callbacks, {} \
                             followups, {} edits; texts {:?})",
                            record.callbacks.len(),
                            record.followups.len(),
                            record.edits.len(),
                            record.texts()
                        ),
                        None => format!("interaction {id}, which the fake never dispatched"),
                    }
                },
                |shared| {
                    let record = shared.lock().interactions.get(&id)?.record.clone();
                    (!record.callbacks.is_empty() && done(&record)).then_some(record)
                },
            )
            .await
    }

    /// Returns every REST request received so far, in order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// Returns the first request, received before or during the wait, that `matches`.
    pub async fn wait_for_request(
        &self,
        timeout: Duration,
        matches: impl Fn(&RecordedRequest) -> bool,
    ) -> anyhow::Result<RecordedRequest> {
        self.shared
            .wait_for(
                timeout,
                || "a matching request".to_string(),
                |shared| {
                    let requests = shared.lock().requests.clone();
                    requests.into_iter().find(|request| matches(request))
                },
            )
            .await
    }

    /// Makes matching requests fail with the scripted status and error body, before any other
    /// handling. The first matching scripted error applies.
    pub fn script_error(&self, error: ScriptedError) {
        self.shared.update(|state| {
            state.log_line(format!(
                "scripted: {} {} -> {} code {} ({})",
                error.method,
                error.path,
                error.status,
                error.code,
                error
                    .times
                    .map_or("until cleared".to_string(), |times| format!(
                        "{times} times"
                    ))
            ));
            state.scripted.push(error);
        });
    }

    pub fn clear_scripted_errors(&self) {
        self.shared.update(|state| state.scripted.clear());
    }

    /// Handles matching requests as usual but sends their reply only after the hold, so a
    /// test can stop the bot between Discord acting on a request and the bot hearing of it.
    /// A scripted error's reply is held too, and counts against the hold's `times`.
    pub fn hold_replies(&self, held: HeldReply) {
        self.shared.update(|state| {
            state.log_line(format!(
                "holding replies: {} {} for {} ms ({})",
                held.method,
                held.path,
                held.hold.as_millis(),
                held.times
                    .map_or("until cleared".to_string(), |times| format!(
                        "{times} times"
                    ))
            ));
            state.held_replies.push(held);
        });
    }

    pub fn clear_held_replies(&self) {
        self.shared.update(|state| state.held_replies.clear());
    }

    /// Returns a channel (guild channel, thread or DM) as Discord would return it, with its
    /// `permission_overwrites`.
    pub fn channel(&self, id: u64) -> Option<Value> {
        self.shared.lock().channels.get(&id).cloned()
    }

    /// Returns the guild's channels without threads, as `GET /guilds/{guild}/channels` does.
    pub fn guild_channels(&self) -> Vec<Value> {
        self.shared.lock().guild_channels()
    }

    /// Returns the guild's threads.
    pub fn threads(&self) -> Vec<Value> {
        self.shared.lock().threads()
    }

    /// Returns the ids of a thread's members.
    pub fn thread_members(&self, thread_id: u64) -> Vec<u64> {
        self.shared
            .lock()
            .thread_members
            .get(&thread_id)
            .map(|members| members.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Returns a member's role ids in the configured guild (empty for a non-member).
    pub fn member_roles(&self, user_id: u64) -> Vec<u64> {
        self.shared
            .lock()
            .members
            .get(&user_id)
            .map(|member| member.roles.clone())
            .unwrap_or_default()
    }

    /// Returns a channel's visible messages, oldest first. Ephemeral interaction responses are
    /// not part of any channel.
    pub fn messages_in(&self, channel_id: u64) -> Vec<Value> {
        self.shared.lock().channel_messages(channel_id)
    }

    /// Returns the messages in the DM channel with a user, oldest first.
    pub fn dm_messages_to(&self, user_id: u64) -> Vec<Value> {
        let state = self.shared.lock();
        match state.dm_channels.get(&user_id) {
            Some(channel_id) => state.channel_messages(*channel_id),
            None => Vec::new(),
        }
    }

    /// Returns the id of the DM channel with a user, creating the channel on first use, for
    /// DM interactions.
    pub fn dm_channel_id(&self, user_id: u64) -> u64 {
        self.shared.update(|state| state.dm_channel(user_id))
    }

    /// Returns the bytes of an uploaded attachment.
    pub fn attachment_data(&self, attachment_id: u64) -> Option<Vec<u8>> {
        self.shared.lock().attachments.get(&attachment_id).cloned()
    }

    /// Stores a message that `author` wrote in a channel or thread, with `files` (name and
    /// bytes) as attachments, and returns its id. The bot reads it through message history.
    pub fn post_user_message(
        &self,
        channel_id: u64,
        author: &FakeUser,
        content: &str,
        files: &[(String, Vec<u8>)],
    ) -> anyhow::Result<u64> {
        let result = self
            .shared
            .update(|state| inject::user_message(state, channel_id, author, content, files));
        result.map_err(|error| self.error_with_log("cannot post the user message", &error))
    }

    /// Archives a thread as Discord's auto-archive does after inactivity, and sends
    /// THREAD_UPDATE to the bot.
    pub fn auto_archive_thread(&self, thread_id: u64) -> anyhow::Result<()> {
        let result = self
            .shared
            .update(|state| inject::auto_archive_thread(state, thread_id));
        result.map_err(|error| self.error_with_log("cannot archive the thread", &error))
    }

    /// Deletes a thread with its messages, as a moderator can in Discord's client, and sends
    /// THREAD_DELETE to the bot. Later requests for the thread get 10003 Unknown Channel.
    pub fn delete_thread(&self, thread_id: u64) -> anyhow::Result<()> {
        let result = self
            .shared
            .update(|state| inject::delete_thread(state, thread_id));
        result.map_err(|error| self.error_with_log("cannot delete the thread", &error))
    }

    /// Makes the gateway refuse new connections with 503 while `refusing` is true, as during
    /// a Discord outage. A connection already open stays open.
    pub fn refuse_gateway(&self, refusing: bool) {
        self.shared.update(|state| {
            state.log_line(format!("gateway: refusing new connections: {refusing}"));
            state.gateway.refusing = refusing;
        });
    }

    /// Deletes a guild channel with its messages, as an administrator can in Discord's client,
    /// and sends CHANNEL_DELETE to the bot. Later requests for it get 10003 Unknown Channel.
    pub fn delete_channel(&self, channel_id: u64) -> anyhow::Result<()> {
        let result = self
            .shared
            .update(|state| inject::delete_channel(state, channel_id));
        result.map_err(|error| self.error_with_log("cannot delete the channel", &error))
    }

    /// Returns the messages the bot created for an interaction (responses and followups,
    /// ephemeral ones included), oldest first, so that a test can click their buttons.
    pub fn interaction_messages(&self, interaction_id: u64) -> Vec<Value> {
        let state = self.shared.lock();
        let Some(interaction) = state.interactions.get(&interaction_id) else {
            return Vec::new();
        };
        interaction
            .message_ids
            .iter()
            .filter_map(|message_id| state.messages.get(message_id))
            .map(|message| message.value.clone())
            .collect()
    }

    /// Returns a stored message, ephemeral ones included.
    pub fn message(&self, message_id: u64) -> Option<Value> {
        self.shared
            .lock()
            .messages
            .get(&message_id)
            .map(|message| message.value.clone())
    }

    /// Stores a user that `GET /users/{id}` returns and makes them a guild member.
    pub fn add_user(&self, user: FakeUser) {
        self.shared.update(|state| state.add_user(user));
    }

    /// Makes the user a guild member (storing them when new) and gives them a role, as a
    /// server admin would. Later interactions of the user carry the role.
    pub fn add_member_role(&self, user: FakeUser, role_id: u64) {
        self.shared.update(|state| {
            let user_id = user.id;
            state.add_user(user);
            if let Some(member) = state.members.get_mut(&user_id) {
                if !member.roles.contains(&role_id) {
                    member.roles.push(role_id);
                }
            }
            state.log_line(format!("role {role_id} given to user {user_id}"));
        });
    }

    /// Adds a guild channel (type 0 text, 4 category, ...) and returns its id. A connected bot
    /// receives CHANNEL_CREATE.
    pub fn add_channel(&self, name: &str, kind: u64, parent_id: Option<u64>) -> u64 {
        self.shared
            .update(|state| add_channel(state, name, kind, parent_id))
    }

    /// Returns one line per OpenAPI violation, "METHOD /api/v10/...: reason".
    pub fn openapi_violations(&self) -> Vec<String> {
        self.shared.lock().violations.clone()
    }

    /// Tells whether requests are checked against the OpenAPI description (false when the
    /// file was absent).
    pub fn openapi_checked(&self) -> bool {
        self.shared.openapi.is_some()
    }

    /// Returns the log: one line per REST request (with status, body excerpt and violations)
    /// and per gateway event, each with the seconds since start. Print it when a test fails.
    pub fn request_log(&self) -> String {
        self.shared.request_log()
    }

    /// Sends RECONNECT (op 7) and waits up to 10 seconds until the bot resumed (RESUMED sent)
    /// or identified again.
    pub async fn send_reconnect(&self) -> anyhow::Result<()> {
        let handshakes_before = self.shared.update(|state| {
            state.log_line("gateway -> RECONNECT".to_string());
            state
                .send_frame(&json!({ "op": 7, "d": null }))
                .map(|()| state.gateway.handshakes)
        });
        let handshakes_before = handshakes_before
            .map_err(|error| self.error_with_log("cannot send RECONNECT", &error))?;

        self.shared
            .wait_for(
                RECONNECT_TIMEOUT,
                || "the bot to resume after RECONNECT".to_string(),
                |shared| {
                    let gateway = &shared.lock().gateway;
                    (gateway.handshakes > handshakes_before && gateway.session_ready).then_some(())
                },
            )
            .await
    }

    /// Stops both servers and closes the gateway connection. Waits up to 5 seconds, then
    /// aborts the server tasks.
    pub async fn shutdown(&self) {
        self.shared.shutdown.send_replace(true);
        let servers: Vec<JoinHandle<()>> = self
            .servers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .drain(..)
            .collect();
        for server in servers {
            let abort = server.abort_handle();
            if tokio::time::timeout(SHUTDOWN_TIMEOUT, server)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }

    fn error_with_log(&self, context: &str, error: &str) -> anyhow::Error {
        anyhow!("{context}: {error}\nrequest log:\n{}", self.request_log())
    }
}

fn spawn_server(
    shared: Arc<Shared>,
    listener: TcpListener,
    app: Router,
    name: &'static str,
) -> JoinHandle<()> {
    let mut shutdown = shared.shutdown.subscribe();
    tokio::spawn(async move {
        let stopped = async move {
            let _ = shutdown.wait_for(|stop| *stop).await;
        };
        if let Err(error) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(%error, server = name, "fake Discord server failed");
        }
    })
}

fn add_channel(state: &mut State, name: &str, kind: u64, parent_id: Option<u64>) -> u64 {
    let channel_id = state.next_id();
    let position = state.guild_channels().len() as u64;
    let channel = payloads::guild_channel(GuildChannelFields {
        id: channel_id,
        guild_id: state.config.guild_id,
        kind,
        name,
        position,
        parent_id,
        topic: None,
        permission_overwrites: Vec::new(),
    });
    state.channels.insert(channel_id, channel.clone());
    state.dispatch_change(INTENT_GUILDS, "CHANNEL_CREATE", channel);
    channel_id
}
