//! Process-wide runtime state shared by the commands and the health server.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use poise::serenity_prelude as serenity;

use crate::storage::Db;

pub struct BotState {
    pub started_at: Instant,
    pub db: Db,
    gateway_connected: AtomicBool,
    shard_manager: OnceLock<Arc<serenity::ShardManager>>,
}

impl BotState {
    pub fn new(db: Db) -> Self {
        Self {
            started_at: Instant::now(),
            db,
            gateway_connected: AtomicBool::new(false),
            shard_manager: OnceLock::new(),
        }
    }

    pub fn set_gateway_connected(&self, connected: bool) {
        self.gateway_connected.store(connected, Ordering::Relaxed);
    }

    pub fn gateway_connected(&self) -> bool {
        self.gateway_connected.load(Ordering::Relaxed)
    }

    pub fn set_shard_manager(&self, manager: Arc<serenity::ShardManager>) {
        // Set once at start; a second call would mean a second client, which never happens.
        let _ = self.shard_manager.set(manager);
    }

    pub fn shard_manager(&self) -> Option<&Arc<serenity::ShardManager>> {
        self.shard_manager.get()
    }
}
