//! trackly-bot: the Discord bot of Trackly SMS.
//!
//! `discord` is the edge that talks to Discord; `linking`, `trackly`, `storage`, `crypto` and
//! `config` below it take plain values and are tested without Discord.

pub mod alerts;
pub mod app;
pub mod backoff;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod discord;
pub mod health;
pub mod linking;
pub mod state;
pub mod storage;
pub mod telemetry;
pub mod text_limits;
pub mod tickets;
pub mod trackly;
