//! Real-time alerts: the feed poller, routing by preferences, the durable outbox, the digest and
//! the paced dispatcher. Plain values throughout; Discord sending sits behind [`AlertSender`].
//!
//! The delivery guarantee: a fetched page, its deliveries and the cursor advance are committed
//! in one transaction, and a delivery becomes `sent` only after Discord confirmed the message.
//! A crash between the two sends the message again on restart. Each message carries a nonce with
//! `enforce_nonce`. For a few minutes Discord returns the first message for a repeated nonce
//! instead of creating another, so a restart within that time sends nothing twice.
//!
//! The digest windows are stored as well, so after a restart each recipient continues its
//! window, and alerts held for a digest go out as that one digest.

pub mod digest;
pub mod dispatcher;
pub mod event;
pub mod mask;
pub mod pacing;
pub mod poller;
pub mod prefs;
pub mod render;
pub mod routing;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use tokio::sync::Notify;

pub use dispatcher::{AlertSender, Dispatcher, SendError};
pub use event::{Category, Event, EventError, EventKind, Severity, TEST_TYPE_NAME};
pub use poller::Poller;
pub use prefs::{parse_mute_duration, MuteDurationError, PreferenceChanges, Preferences};
pub use render::{AccountLabel, AlertMessage, Embed, EmbedField};
pub use routing::{route, InternalChannels, Recipient, Target};

/// Summary of the last poll run, for `/sms status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollStatus {
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_run_ms: u64,
    pub accounts_polled: usize,
    pub accounts_failed: usize,
    pub new_deliveries: usize,
}

/// State shared by the poller, the dispatcher and the commands.
#[derive(Default)]
pub struct AlertsState {
    status: Mutex<PollStatus>,
    /// Wakes the dispatcher when new deliveries were stored.
    wake: Notify,
    started: AtomicBool,
    running: AtomicBool,
}

impl AlertsState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns true exactly once, for the caller that may start the poller and dispatcher, so a
    /// gateway reconnect or a second setup call can never start a second pair.
    pub fn claim_start(&self) -> bool {
        !self.started.swap(true, Ordering::SeqCst)
    }

    pub fn set_running(&self, running: bool) {
        self.running.store(running, Ordering::SeqCst);
    }

    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    pub fn status(&self) -> PollStatus {
        self.status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
            .clone()
    }

    pub(crate) fn set_status(&self, status: PollStatus) {
        *self
            .status
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = status;
    }

    /// Tells the dispatcher that deliveries are waiting.
    pub fn wake_dispatcher(&self) {
        self.wake.notify_one();
    }

    pub(crate) async fn woken(&self) {
        self.wake.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_valid_and_limits_checked() {
        let config = crate::config::Config::default();
        assert!(config.validate().is_empty(), "{:?}", config.validate());
        assert_eq!(config.alerts.digest_threshold, 5);
        assert_eq!(config.alerts.digest_window_secs, 60);

        let mut config = crate::config::Config::default();
        config.alerts.page_size = 501;
        config.alerts.global_messages_per_sec = 60;
        config.alerts.channel_messages_per_5s = 0;
        config.alerts.max_concurrent_accounts = 0;
        let problems: Vec<String> = config.validate().into_iter().map(|p| p.0).collect();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(
            problems[0].contains("alerts.page_size (501)"),
            "{problems:?}"
        );
    }

    #[test]
    fn start_claimed_once() {
        let state = AlertsState::new();
        assert!(state.claim_start());
        assert!(!state.claim_start());
        assert!(!state.claim_start());
    }
}
