//! The dispatcher: sends due deliveries from the outbox, paced under Discord's limits, with
//! the digest for storms, retries for transient failures and a fallback for closed DMs.
//!
//! The digest windows are planned in memory and written to the database on every change, and
//! the first round restores them, so that a restart continues each recipient's window.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::digest::{Batch, DigestPlanner, DueItem, Plan, WindowState};
use super::event::EventKind;
use super::pacing::Pacer;
use super::render::{self, AlertMessage};
use super::routing::Target;
use super::AlertsState;
use crate::config::AlertsConfig;
use crate::storage::alerts::DueDelivery;
use crate::storage::{Db, LinkStatus};

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
    /// 401, or 403 without a channel code: the bot's token or its permissions are wrong, not
    /// the message, so every send would fail the same way until an operator fixes them.
    #[error("Discord rejected the bot's credentials: {0}")]
    Unauthorized(String),
    /// Any other rejection of this message, such as 50035 invalid form body; retrying the same
    /// message would fail again.
    #[error("rejected by Discord: {0}")]
    Permanent(String),
}

/// Sends messages to Discord. The real implementation uses serenity's `Http`; tests use a
/// recording double.
pub trait AlertSender: Send + Sync + 'static {
    /// Sends `message` to `target` and returns the id of the created message. `nonce` is derived
    /// from the exact set of deliveries the message carries (see [`message_nonce`]), so Discord
    /// can drop a repeat of the same message but never a message with other alerts.
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
    /// The digest windows. Only this task plans, so the planner is authoritative while the
    /// bot runs, and the database copy is read only on the next start.
    planner: DigestPlanner,
    /// Whether the stored digest windows were restored into `planner`.
    windows_restored: bool,
    pacer: Pacer,
    send_timeout: Duration,
    /// Set after Discord rejected the bot's credentials: no send starts before this time.
    paused_until: Option<Instant>,
    /// Consecutive rounds stopped by rejected credentials, for the backoff.
    unauthorized_rounds: u32,
}

/// Counts of one dispatch round, for tests and logs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RoundReport {
    pub messages_sent: usize,
    pub deliveries_sent: usize,
    pub deliveries_failed: usize,
    pub deliveries_retried: usize,
    pub deliveries_held: usize,
    /// DMs the recipient no longer wants when they are due (see [`Dispatcher::round`]).
    pub deliveries_skipped: usize,
    /// Recipients and batches left for a later round because their channel was at its limit.
    pub paced: usize,
    /// Whether the round stopped because Discord rejected the bot's credentials; every pending
    /// delivery stays pending until the pause ends.
    pub unauthorized: bool,
}

impl<S: AlertSender> Dispatcher<S> {
    pub fn new(db: Db, sender: Arc<S>, state: Arc<AlertsState>, config: &AlertsConfig) -> Self {
        Self {
            db,
            sender,
            state,
            planner: DigestPlanner::new(config.digest_threshold, config.digest_window_secs),
            windows_restored: false,
            pacer: Pacer::new(
                config.global_messages_per_sec,
                config.channel_messages_per_5s,
                Instant::now(),
            ),
            send_timeout: SEND_TIMEOUT,
            paused_until: None,
            unauthorized_rounds: 0,
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
                    if let Some(until) = self.paused_until {
                        until.saturating_duration_since(Instant::now())
                    } else if report.paced > 0 {
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

    /// Sends what is due now, one recipient at a time, oldest first. A DM that its recipient no
    /// longer wants is marked skipped instead. That is the case when the user is no longer
    /// linked to the alert's account, or when their current mute, toggles or minimum severity
    /// exclude it. A critical alert passes the mute, and a `/alerts test` alert passes all three.
    ///
    /// The first round restores the stored digest windows before it plans anything. When that
    /// fails, the round returns the error and sends nothing.
    pub async fn round(
        &mut self,
        shutdown: &CancellationToken,
    ) -> Result<RoundReport, sqlx::Error> {
        if !self.windows_restored {
            self.restore_windows().await?;
        }
        let mut report = RoundReport::default();
        if let Some(until) = self.paused_until {
            if until > Instant::now() {
                report.unauthorized = true;
                return Ok(report);
            }
            self.paused_until = None;
        }
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
            let mut deliveries = self
                .db
                .due_deliveries_for(target, now, PER_TARGET_LIMIT)
                .await?;
            if let Target::Dm { user_id } = target {
                deliveries = self
                    .skip_unwanted_dms(user_id, deliveries, &mut report)
                    .await?;
            }
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
                    created_at: d.created_at,
                })
                .collect();
            // An ended window whose held alerts are all gone (sent, skipped, failed for good)
            // owes no digest any more.
            if let Some(end) = self.planner.owed_digest_end(target, now) {
                if !self.db.pending_non_critical_before(target, end).await? {
                    let before = self.planner.window(target);
                    self.planner.end_window(target, now);
                    self.store_window(target, before).await;
                }
            }
            let window_before = self.planner.window(target);
            let plan = self.planner.plan(target, &items, now);
            // The window is stored before the held deliveries are delayed, so that a crash in
            // between leaves them due and the restored window delays them again.
            self.store_window(target, window_before).await;
            if let Some(until) = plan.hold_until {
                self.db.hold_deliveries(&plan.held, until).await?;
                report.deliveries_held += plan.held.len();
            }

            self.send_plan(target, &plan, &deliveries, shutdown, &mut report)
                .await?;
            if report.unauthorized {
                break;
            }
        }
        Ok(report)
    }

    /// Sends the batches of one recipient's plan in order, stopping at the first that has to
    /// wait, and updates the recipient's window with what Discord confirmed.
    async fn send_plan(
        &mut self,
        target: Target,
        plan: &Plan,
        deliveries: &[DueDelivery],
        shutdown: &CancellationToken,
        report: &mut RoundReport,
    ) -> Result<(), sqlx::Error> {
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
                Batch::Digest(ids) => deliveries.iter().filter(|d| ids.contains(&d.id)).collect(),
            };
            if selected.is_empty() {
                continue;
            }
            let outcome = self.send_batch(target, &selected, report).await?;
            if outcome == BatchOutcome::Wait {
                break;
            }
            let before = self.planner.window(target);
            if plan.ends_window && index + 1 == plan.batches.len() {
                self.planner.end_window(target, Utc::now());
            } else if outcome == BatchOutcome::Sent
                && matches!(batch, Batch::Single(_))
                && !selected.iter().any(|d| d.critical)
            {
                self.planner.single_sent(target);
            }
            self.store_window(target, before).await;
        }

        Ok(())
    }

    /// Loads the digest windows stored by an earlier run into the planner, after deleting those
    /// that no longer matter. A failed deletion is only logged, because loading filters the
    /// same way.
    async fn restore_windows(&mut self) -> Result<(), sqlx::Error> {
        let now = Utc::now();
        let length = self.planner.window_length();
        let deleted = match self.db.delete_ended_digest_windows(now, length).await {
            Ok(deleted) => deleted,
            Err(error) => {
                tracing::error!(
                    %error,
                    "failed to delete the ended digest windows, which stay stored until a later start"
                );
                0
            }
        };
        let windows = self.db.digest_windows(now, length).await?;
        for (target, state) in &windows {
            self.planner.restore(*target, *state);
            // Alerts held until the end of a longer window, from a configuration before the
            // restart, come due at the end of the window as it is now.
            self.db
                .release_held_after(*target, state.start + length)
                .await?;
        }
        self.windows_restored = true;
        tracing::info!(
            restored = windows.len(),
            deleted,
            "digest windows restored from the database"
        );
        Ok(())
    }

    /// Writes the digest window of `target` to the database when planning changed it from
    /// `before`, or deletes it when planning ended it. A failed write is only logged, because
    /// sending goes on with the window in memory. Only a restart before the next successful
    /// write loses the change.
    async fn store_window(&self, target: Target, before: Option<WindowState>) {
        let after = self.planner.window(target);
        if after == before {
            return;
        }
        let result = match after {
            Some(state) => self.db.save_digest_window(target, state).await,
            None => self.db.delete_digest_window(target).await.map(|_| ()),
        };
        if let Err(error) = result {
            tracing::error!(
                target_kind = target.kind(),
                target_id = target.id(),
                %error,
                "failed to store the digest window, so a restart before its next change \
                 restores the window stored before, or none"
            );
        }
    }

    /// Marks skipped the DMs that `user_id` no longer wants and returns the others.
    async fn skip_unwanted_dms(
        &self,
        user_id: u64,
        deliveries: Vec<DueDelivery>,
        report: &mut RoundReport,
    ) -> Result<Vec<DueDelivery>, sqlx::Error> {
        let link = self
            .db
            .link(user_id)
            .await?
            .filter(|link| link.status != LinkStatus::Revoked);
        let preferences = self
            .db
            .alert_preferences(user_id)
            .await?
            .unwrap_or_default();
        let now = Utc::now();
        let mut other_account = Vec::new();
        let mut unwanted = Vec::new();
        let mut wanted = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            let linked = link
                .as_ref()
                .is_some_and(|link| link.account_id == delivery.account.id);
            if !linked {
                other_account.push(delivery.id);
            } else if delivery.event.kind != EventKind::Test
                && !preferences.wants(&delivery.event, now)
            {
                unwanted.push(delivery.id);
            } else {
                wanted.push(delivery);
            }
        }
        if !other_account.is_empty() {
            self.db
                .mark_deliveries_skipped(
                    &other_account,
                    "the user is no longer linked to the alert's account",
                )
                .await?;
            tracing::info!(
                user_id,
                skipped = other_account.len(),
                "alert DMs skipped because the user is no longer linked to the alerts' account"
            );
        }
        if !unwanted.is_empty() {
            self.db
                .mark_deliveries_skipped(
                    &unwanted,
                    "excluded by the user's current mute, toggles or minimum severity",
                )
                .await?;
            tracing::info!(
                user_id,
                skipped = unwanted.len(),
                "alert DMs skipped because the user's current preferences exclude them"
            );
        }
        report.deliveries_skipped += other_account.len() + unwanted.len();
        Ok(wanted)
    }

    async fn dm_closed(&self, user_id: u64) -> Result<bool, sqlx::Error> {
        Ok(self
            .db
            .alert_preferences(user_id)
            .await?
            .is_some_and(|prefs| prefs.dm_closed))
    }

    /// Sends one message for `deliveries` and records the outcome: sent, failed for good, or
    /// kept for later, in which case the rest of this recipient's batches wait too (rate limit,
    /// transient failure, closed DMs, unusable channel, rejected credentials).
    async fn send_batch(
        &mut self,
        target: Target,
        deliveries: &[&DueDelivery],
        report: &mut RoundReport,
    ) -> Result<BatchOutcome, sqlx::Error> {
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
        let nonce = message_nonce(&ids);

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
                self.unauthorized_rounds = 0;
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
                Ok(BatchOutcome::Sent)
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
                Ok(BatchOutcome::Wait)
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
                Ok(BatchOutcome::Wait)
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
                Ok(BatchOutcome::Wait)
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
                Ok(BatchOutcome::Wait)
            }
            Err(SendError::Unauthorized(detail)) => {
                let wait = backoff(self.unauthorized_rounds);
                self.unauthorized_rounds = self.unauthorized_rounds.saturating_add(1);
                self.paused_until = Some(Instant::now() + wait);
                report.unauthorized = true;
                tracing::error!(
                    target_kind = target.kind(),
                    target_id = target.id(),
                    %detail,
                    retry_in_ms = wait.as_millis() as u64,
                    "Discord rejected the bot's token or permissions; all alert sends pause and \
                     deliveries stay pending (check the bot token and its permissions)"
                );
                Ok(BatchOutcome::Wait)
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
                Ok(BatchOutcome::Failed)
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
        let fallbacks = self
            .db
            .fail_dms_with_fallback(
                deliveries,
                "the user does not accept DMs (50007)",
                Utc::now(),
            )
            .await?;
        report.deliveries_failed += deliveries.len();
        tracing::info!(
            user_id,
            failed = deliveries.len(),
            account_channel_copies = fallbacks,
            "alert DMs skipped because the user does not accept DMs"
        );
        if fallbacks > 0 {
            self.state.wake_dispatcher();
        }
        Ok(())
    }
}

/// Outcome of sending one batch of deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchOutcome {
    /// Discord confirmed the message.
    Sent,
    /// Marked failed for good; the next batches go on.
    Failed,
    /// Kept for a later attempt, or handed elsewhere; the recipient's next batches wait too.
    Wait,
}

/// Returns the nonce of a message carrying the deliveries `ids`: `d` and the id for one
/// delivery, else `g` and a 64-bit FNV-1a hash of all the ids in order, within Discord's 25
/// characters. A retry of the same deliveries reuses the nonce; another set gets another one,
/// barring a hash collision.
pub fn message_nonce(ids: &[i64]) -> String {
    if let [id] = ids {
        return format!("d{id}");
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for id in ids {
        for byte in id.to_le_bytes() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("g{hash:016x}")
}

fn deliveries_owned(deliveries: &[&DueDelivery]) -> Vec<DueDelivery> {
    deliveries.iter().map(|d| (*d).clone()).collect()
}

/// Returns the wait before retry number `attempts + 1`: exponential with up to 20% jitter.
pub fn backoff(attempts: u32) -> Duration {
    crate::backoff::exponential(
        BACKOFF_BASE,
        BACKOFF_MAX,
        attempts,
        crate::backoff::random_jitter(),
    )
}

#[cfg(test)]
mod tests;
