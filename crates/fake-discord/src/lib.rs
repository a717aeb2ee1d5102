//! A local fake of Discord's REST API (v10) and gateway for end-to-end tests of a serenity or
//! poise bot.
//!
//! The fake serves REST and the gateway on 127.0.0.1. Point the bot at it with
//! `HttpBuilder::new(token).proxy(fake.rest_base()).ratelimiter_disabled(true)`; serenity then
//! requests `GET /api/v10/gateway` for the websocket URL. Tests inject slash commands, modal
//! submissions and button clicks as INTERACTION_CREATE dispatches and inspect the callbacks,
//! followups, messages, channels and roles the bot produced.
//!
//! Every request is recorded, and checked against Discord's OpenAPI description when the file
//! is available (see [`FakeDiscordConfig::openapi_spec`]). [`FakeDiscord::request_log`] gives
//! one line per request and gateway event for failure output.
//!
//! ```no_run
//! use std::time::Duration;
//! use fake_discord::{FakeDiscord, FakeDiscordConfig, FakeUser, SlashCommand};
//!
//! # async fn example() -> anyhow::Result<()> {
//! let fake = FakeDiscord::start(FakeDiscordConfig::default()).await?;
//! // ... start the bot with fake.rest_base() as its proxy ...
//! fake.wait_for_ready(Duration::from_secs(10)).await?;
//! fake.wait_for_commands(Duration::from_secs(10)).await?;
//! let sent = fake
//!     .send_command(SlashCommand {
//!         user: FakeUser::new(42, "alice"),
//!         guild_id: Some(fake.config().guild_id),
//!         channel_id: fake.config().general_channel_id(),
//!         name: "sms".into(),
//!         subcommand: Some("status".into()),
//!         options: vec![],
//!         member_roles: vec![],
//!     })
//!     .await?;
//! let record = fake
//!     .wait_for_interaction(&sent, Duration::from_secs(5), |record| record.last_text().is_some())
//!     .await?;
//! assert!(record.is_ephemeral(), "{}", fake.request_log());
//! fake.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod fake;
mod gateway;
mod inject;
mod openapi;
mod payloads;
mod permissions;
mod rest;
mod shared;
mod state;
mod types;

pub use config::{FakeDiscordConfig, OPENAPI_SPEC_ENV};
pub use fake::FakeDiscord;
pub use types::{
    ButtonClick, CommandScope, FakeUser, HeldReply, InteractionRecord, InteractionRef, ModalSubmit,
    OptionValue, RecordedRequest, RegisteredCommands, ScriptedError, SlashCommand, EPHEMERAL_FLAG,
};

#[cfg(test)]
mod payload_tests;
