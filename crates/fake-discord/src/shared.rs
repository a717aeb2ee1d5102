//! State shared by the REST handler, the gateway sessions and the test-facing handle.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::FakeDiscordConfig;
use crate::openapi::Spec;
use crate::state::State;

pub(crate) struct Shared {
    pub config: FakeDiscordConfig,
    pub rest_base: String,
    pub gateway_url: String,
    pub openapi: Option<Arc<Spec>>,
    state: Mutex<State>,
    /// Counter bumped after every change, which waiters watch.
    changes: watch::Sender<u64>,
    /// Set to true to stop the servers and close gateway connections.
    pub shutdown: watch::Sender<bool>,
}

impl Shared {
    pub fn new(
        config: FakeDiscordConfig,
        rest_base: String,
        gateway_url: String,
        openapi: Option<Arc<Spec>>,
    ) -> Shared {
        let state = State::new(config.clone(), gateway_url.clone());
        Shared {
            config,
            rest_base,
            gateway_url,
            openapi,
            state: Mutex::new(state),
            changes: watch::channel(0).0,
            shutdown: watch::channel(false).0,
        }
    }

    /// Locks the state for reading. A panic in another holder does not make the state unusable.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs a change on the state and wakes every waiter.
    pub fn update<T>(&self, change: impl FnOnce(&mut State) -> T) -> T {
        let result = change(&mut self.lock());
        self.changes.send_modify(|version| *version += 1);
        result
    }

    /// Waits until `check` returns a value or `timeout` passes. `describe` explains what was
    /// awaited in the error, which also carries the request log. `check` runs without the state
    /// lock and takes it itself, so a caller's predicate inside may call back into the fake.
    pub async fn wait_for<T>(
        &self,
        timeout: Duration,
        describe: impl FnOnce() -> String,
        mut check: impl FnMut(&Shared) -> Option<T>,
    ) -> anyhow::Result<T> {
        let deadline = tokio::time::Instant::now() + timeout;
        // Subscribing before the first check means no change between check and wait is missed.
        let mut changes = self.changes.subscribe();
        loop {
            if let Some(value) = check(self) {
                return Ok(value);
            }
            let changed = tokio::time::timeout_at(deadline, changes.changed()).await;
            if !matches!(changed, Ok(Ok(()))) {
                if let Some(value) = check(self) {
                    return Ok(value);
                }
                anyhow::bail!(
                    "timed out after {timeout:?} waiting for {}\nrequest log:\n{}",
                    describe(),
                    self.request_log()
                );
            }
        }
    }

    pub fn request_log(&self) -> String {
        let state = self.lock();
        if state.log.is_empty() {
            return "(no requests or gateway events)".to_string();
        }
        state.log.join("\n")
    }
}
