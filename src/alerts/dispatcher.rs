//! The dispatcher: sends due deliveries from the outbox, paced under Discord's limits, with
//! the digest for storms, retries for transient failures and a fallback for closed DMs.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use super::digest::{Batch, DigestPlanner, DueItem};
use super::pacing::Pacer;
use super::render::{self, AlertMessage};
use super::routing::Target;
use super::AlertsState;
use crate::config::AlertsConfig;
use crate::storage::alerts::DueDelivery;
use crate::storage::Db;

/// Recipients served per round, and deliveries read per recipient. A digest covers at most
/// `PER_TARGET_LIMIT` alerts; a larger storm continues in the next window.
const TARGETS_PER_ROUND: u32 = 200;
const PER_TARGET_LIMIT: u32 = 1000;
/// Backoff of transient failures: 2 s doubling per attempt, at most 5 minutes, plus jitter.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// Wait for a 429 that carried no `retry_after`.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(1);
/// Limit for one send, DM channel creation included; the HTTP client has its own timeout too.
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// Maximum idle sleep, so that deliveries stored by another process are picked up as well.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// Discord's rejection of a message, sorted by what the dispatcher does next.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SendError {
    /// 50007: the user does not accept DMs from the bot.
    #[error("the user does not accept DMs from the bot (50007)")]
    DmClosed,
    /// 50001 missing access, 10003 unknown channel, 50013 missing permissions.
    #[error("the channel cannot be used (Discord code {code}): {detail}")]
    ChannelUnavailable { code: isize, detail: String },
    #[error("rate limited by Discord (retry after {retry_after:?}, global {global})")]
    RateLimited {
        retry_after: Option<Duration>,
        global: bool,
    },
    /// 5xx, a timeout or a connection failure: a later attempt may succeed.
    #[error("transient failure: {0}")]
    Transient(String),
    /// Any other rejection; retrying the same message would fail again.
    #[error("rejected by Discord: {0}")]
    Permanent(String),
}

/// Sends messages to Discord. The real implementation uses serenity's `Http`; tests use a
/// recording double.
pub trait AlertSender: Send + Sync + 'static {
    /// Sends `message` to `target` and returns the id of the created message. `nonce` is unique
    /// per batch of deliveries, so Discord can drop a repeat of the same message.
    fn send(
        &self,
        target: Target,
        message: &AlertMessage,
        nonce: &str,
    ) -> impl Future<Output = Result<u64, SendError>> + Send;

    /// Handles a key that Trackly just rejected: removes the user's access to the account
    /// channel and the linked role, and tells the user by DM. Failures are only logged.
    fn key_revoked(
        &self,
        user_id: u64,
        account_id: &str,
        account_name: &str,
    ) -> impl Future<Output = ()> + Send;
}

pub struct Dispatcher<S> {
    db: Db,
    sender: Arc<S>,
    state: Arc<AlertsState>,
    planner: DigestPlanner,
    pacer: Pacer,
    send_timeout: Duration,
}

/// Counts of one dispatch round, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub messages_sent: usize,
    pub deliveries_sent: usize,
    pub deliveries_failed: usize,
    pub deliveries_retried: usize,
    pub deliveries_held: usize,
    /// Recipients and batches left for a later round because their channel was at its limit.
    pub paced: usize,
}

impl<S: AlertSender> Dispatcher<S> {
    pub fn new(db: Db, sender: Arc<S>, state: Arc<AlertsState>, config: &AlertsConfig) -> Self {
        Self {
            db,
            sender,
            state,
            planner: DigestPlanner::new(config.digest_threshold, config.digest_window_secs),
            pacer: Pacer::new(
                config.global_messages_per_sec,
                config.channel_messages_per_5s,
                Instant::now(),
            ),
            send_timeout: SEND_TIMEOUT,
        }
    }

    /// Runs rounds until `shutdown` is cancelled. A send in flight when that happens may finish
    /// within the shutdown grace time; nothing new starts.
    pub async fn run(mut self, shutdown: CancellationToken) {
        tracing::info!("alert dispatcher started");
        while !shutdown.is_cancelled() {
            let wait = match self.round(&shutdown).await {
                Ok(report) => {
                    if report.messages_sent > 0 || report.deliveries_failed > 0 {
                        tracing::debug!(?report, "dispatch round finished");
                    }
                    if report.paced > 0 {
                        Duration::from_millis(100)
                    } else {
                        self.idle_wait().await
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "dispatch round failed; retrying in 1 s");
                    Duration::from_secs(1)
                }
            };
            if wait.is_zero() {
                continue;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.state.woken() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        tracing::info!("alert dispatcher stopped");
    }

    async fn idle_wait(&self) -> Duration {
        match self.db.next_due_at().await {
            Ok(Some(at)) => (at - Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO)
                .min(IDLE_POLL),
            Ok(None) => IDLE_POLL,
            Err(error) => {
                tracing::error!(%error, "cannot read the next due delivery");
                IDLE_POLL
            }
        }
    }

    /// Sends what is due now, one recipient at a time, oldest first.
    pub async fn round(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<RoundReport, sqlx::Error> {
        let mut report = RoundReport::default();
        let targets = self.db.due_targets(Utc::now(), TARGETS_PER_ROUND).await?;
        for target in targets {
            if shutdown.is_cancelled() {
                break;
            }
            let closed_dm = match target {
                Target::Dm { user_id } => self.dm_closed(user_id).await?,
                _ => false,
            };
            // A channel at its limit is skipped before its deliveries are read.
            if !closed_dm && self.pacer.channel_ready_at(target, Instant::now()) > Instant::now() {
                report.paced += 1;
                continue;
            }
            // One time for the query and the plan, so that deliveries held until a window's end
            // are either all read with the ended window or all left for the next round.
            let now = Utc::now();
            let deliveries = self
                .db
                .due_deliveries_for(target, now, PER_TARGET_LIMIT)
                .await?;
            if deliveries.is_empty() {
                continue;
            }
            if closed_dm {
                self.fail_closed_dm(target.id(), &deliveries, &mut report)
                    .await?;
                continue;
            }

            let items: Vec<DueItem> = deliveries
                .iter()
                .map(|d| DueItem {
                    id: d.id,
                    critical: d.critical,
                })
                .collect();
            let plan = self.planner.plan(target, &items, now);
            if let Some(until) = plan.hold_until {
                self.db.hold_deliveries(&plan.held, until).await?;
                report.deliveries_held += plan.held.len();
            }

            for (index, batch) in plan.batches.iter().enumerate() {
                if shutdown.is_cancelled() {
                    break;
                }
                if self.pacer.channel_ready_at(target, Instant::now()) > Instant::now() {
                    report.paced += plan.batches[index..]
                        .iter()
                        .map(|batch| match batch {
                            Batch::Single(_) => 1,
                            Batch::Digest(ids) => ids.len(),
                        })
                        .sum::<usize>();
                    break;
                }
                let selected: Vec<&DueDelivery> = match batch {
                    Batch::Single(id) => deliveries.iter().filter(|d| d.id == *id).collect(),
                    Batch::Digest(ids) => {
                        deliveries.iter().filter(|d| ids.contains(&d.id)).collect()
                    }
                };
                if selected.is_empty() {
                    continue;
                }
                let stop = self.send_batch(target, &selected, &mut report).await?;
                if stop {
                    break;
                }
            }
        }
        Ok(report)
    }

    async fn dm_closed(&self, user_id: u64) -> Result<bool, sqlx::Error> {
        Ok(self
            .db
            .alert_preferences(user_id)
            .await?
            .is_some_and(|prefs| prefs.dm_closed))
    }

    /// Sends one message for `deliveries` and records the outcome. Returns true when the rest
    /// of this recipient's batches should wait (rate limit, closed DMs, unusable channel).
    async fn send_batch(
        &mut self,
        target: Target,
        deliveries: &[&DueDelivery],
        report: &mut RoundReport,
    ) -> Result<bool, sqlx::Error> {
        let dm_user = match target {
            Target::Dm { user_id } => Some(user_id),
            _ => None,
        };
        let message = match deliveries {
            [single] => render::alert_message(&single.event, &single.account, dm_user),
            many => {
                let items: Vec<_> = many
                    .iter()
                    .map(|d| (d.event.clone(), d.account.clone()))
                    .collect();
                render::digest_message(&items, self.planner.window_secs(), dm_user)
            }
        };
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        let nonce = format!("a{}-{}", ids[0], ids.len());

        let wait = self.pacer.take_global_slot(Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let result = match tokio::time::timeout(
            self.send_timeout,
            self.sender.send(target, &message, &nonce),
        )
        .await
        {
            Ok(result) => result,
            Err(_) => Err(SendError::Transient(format!(
                "no response within {} ms",
                self.send_timeout.as_millis()
            ))),
        };
        let now = Utc::now();
        self.pacer.record_send(target, Instant::now());

        match result {
            Ok(message_id) => {
                self.db.mark_deliveries_sent(&ids, message_id, now).await?;
                report.messages_sent += 1;
                report.deliveries_sent += ids.len();
                tracing::info!(
                    target_kind = target.kind(),
                    target_id = target.id(),
                    deliveries = ids.len(),
                    message_id,
                    "alert sent"
                );
                Ok(false)
            }
            Err(SendError::DmClosed) => {
                let user_id = target.id();
                if self.db.set_dm_closed(user_id, true).await? {
                    tracing::warn!(
                        user_id,
                        "the user does not accept DMs; alert DMs stop until their next command"
                    );
                }
                self.fail_closed_dm(user_id, deliveries_owned(deliveries).as_slice(), report)
                    .await?;
                Ok(true)
            }
            Err(SendError::ChannelUnavailable { code, detail }) => {
                tracing::error!(
                    channel_id = target.id(),
                    target_kind = target.kind(),
                    code,
                    %detail,
                    "alert channel cannot be used; delivery marked failed"
                );
                self.db
                    .mark_deliveries_failed(&ids, &format!("Discord code {code}: {detail}"))
                    .await?;
                report.deliveries_failed += ids.len();
                Ok(true)
            }
            Err(SendError::RateLimited {
                retry_after,
                global,
            }) => {
                let wait = retry_after.unwrap_or(DEFAULT_RETRY_AFTER);
                tracing::warn!(
                    target_kind = target.kind(),
                    target_id = target.id(),
                    retry_after_ms = wait.as_millis() as u64,
                    global,
                    "Discord rate limited an alert; retrying after retry_after"
                );
                self.pacer.block(target, Instant::now() + wait, global);
                let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                self.db
                    .schedule_retry(&ids, retry_at, "rate limited (429)")
                    .await?;
                report.deliveries_retried += ids.len();
                Ok(true)
            }
            Err(SendError::Transient(detail)) => {
                let attempts = deliveries.iter().map(|d| d.attempts).max().unwrap_or(0);
                let wait = backoff(attempts);
                tracing::warn!(
                    target_kind = target.kind(),
                    target_id = target.id(),
                    attempts = attempts + 1,
                    retry_in_ms = wait.as_millis() as u64,
                    %detail,
                    "alert send failed; will retry"
                );
                let retry_at = now + chrono::Duration::from_std(wait).unwrap_or_default();
                self.db.schedule_retry(&ids, retry_at, &detail).await?;
                report.deliveries_retried += ids.len();
                Ok(true)
            }
            Err(SendError::Permanent(detail)) => {
                tracing::error!(
                    target_kind = target.kind(),
                    target_id = target.id(),
                    %detail,
                    "Discord rejected an alert; delivery marked failed"
                );
                self.db.mark_deliveries_failed(&ids, &detail).await?;
                report.deliveries_failed += ids.len();
                Ok(false)
            }
        }
    }

    /// Fails DMs to a user whose DMs are closed and queues the account-channel copy of each
    /// alert when the account has a channel and the channel does not have it yet.
    async fn fail_closed_dm(
        &self,
        user_id: u64,
        deliveries: &[DueDelivery],
        report: &mut RoundReport,
    ) -> Result<(), sqlx::Error> {
        let ids: Vec<i64> = deliveries.iter().map(|d| d.id).collect();
        self.db
            .mark_deliveries_failed(&ids, "the user does not accept DMs (50007)")
            .await?;
        report.deliveries_failed += ids.len();
        let now = Utc::now();
        let mut fallbacks = 0;
        for delivery in deliveries {
            if let Some(channel) = self.db.account_channel(&delivery.account.id).await? {
                let target = Target::AccountChannel {
                    channel_id: channel.channel_id,
                };
                if self
                    .db
                    .add_delivery(delivery.event_row_id, target, delivery.critical, now)
                    .await?
                {
                    fallbacks += 1;
                }
            }
        }
        tracing::info!(
            user_id,
            failed = ids.len(),
            account_channel_copies = fallbacks,
            "alert DMs skipped because the user does not accept DMs"
        );
        if fallbacks > 0 {
            self.state.wake_dispatcher();
        }
        Ok(())
    }
}

fn deliveries_owned(deliveries: &[&DueDelivery]) -> Vec<DueDelivery> {
    deliveries.iter().map(|d| (*d).clone()).collect()
}

/// Returns the wait before retry number `attempts + 1`: exponential with up to 20% jitter.
pub fn backoff(attempts: u32) -> Duration {
    let base = BACKOFF_BASE
        .saturating_mul(2u32.saturating_pow(attempts.min(16)))
        .min(BACKOFF_MAX);
    let jitter = rand::thread_rng().gen_range(0.0..0.2);
    base + base.mul_f64(jitter)
}

#[cfg(test)]
mod tests;
