//! The poller: reads `GET /events` for every account with an active link and stores new events
//! and their deliveries in the outbox.

use std::sync::Arc;
use std::time::Instant;

use chrono::Utc;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::dispatcher::AlertSender;
use super::event::{Event, EventKind, UnknownTypeLog};
use super::routing::{route, InternalChannels};
use super::{AlertsState, PollStatus};
use crate::config::AlertsConfig;
use crate::linking::{AccountCallError, LinkService};
use crate::storage::alerts::{PollAccount, RoutedEvent};
use crate::trackly::TracklyError;

/// Pages read per account in one run, so one busy feed cannot hold a run for ever; the rest is
/// read in the next run.
const MAX_PAGES_PER_RUN: usize = 50;
/// A suspended account is checked with one key once per this many poll intervals, at most
/// every `SUSPENDED_RETRY_MAX`, so that it resumes by itself once Trackly reactivates it.
const SUSPENDED_RETRY_INTERVALS: u32 = 10;
const SUSPENDED_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(300);

/// Returns the time between two checks of a suspended account under `config`.
pub fn suspended_retry_interval(config: &AlertsConfig) -> std::time::Duration {
    config
        .poll_interval()
        .saturating_mul(SUSPENDED_RETRY_INTERVALS)
        .min(SUSPENDED_RETRY_MAX)
}

/// Reason polling one account stopped early.
#[derive(Debug, thiserror::Error)]
pub enum PollError {
    #[error("no linked key of the account is accepted any more")]
    NoValidKey,
    #[error("the account is suspended")]
    Suspended,
    #[error("Trackly rejected the feed cursor again right after a reset")]
    InvalidCursor,
    #[error("trackly: {0}")]
    Trackly(TracklyError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("internal: {0}")]
    Internal(anyhow::Error),
}

/// Counts of one account's poll.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountPoll {
    pub pages: usize,
    pub new_events: usize,
    pub repeated_events: usize,
    pub new_deliveries: usize,
}

pub struct Poller<S> {
    links: LinkService,
    sender: Arc<S>,
    state: Arc<AlertsState>,
    config: AlertsConfig,
    internal: InternalChannels,
    unknown_types: UnknownTypeLog,
}

impl<S: AlertSender> Poller<S> {
    pub fn new(
        links: LinkService,
        sender: Arc<S>,
        state: Arc<AlertsState>,
        config: AlertsConfig,
    ) -> Self {
        let internal = InternalChannels {
            all_alerts: config.all_alerts_channel_id,
            billing_alerts: config.billing_alerts_channel_id,
        };
        Self {
            links,
            sender,
            state,
            config,
            internal,
            unknown_types: UnknownTypeLog::default(),
        }
    }

    /// Polls every `poll_interval_ms` until `shutdown` is cancelled. A run in progress is
    /// dropped at cancellation; what it committed stays committed, page by page.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        tracing::info!(
            interval_ms = self.config.poll_interval_ms,
            page_size = self.config.page_size,
            "alert poller started"
        );
        let mut interval = tokio::time::interval(self.config.poll_interval());
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = interval.tick() => {}
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = Arc::clone(&self).run_once() => {}
            }
        }
        tracing::info!("alert poller stopped");
    }

    /// Polls every account once, at most `max_concurrent_accounts` at a time, within
    /// `poll_timeout_ms`.
    pub async fn run_once(self: Arc<Self>) -> PollStatus {
        let started = Instant::now();
        let mut status = PollStatus {
            last_run_at: Some(Utc::now()),
            ..PollStatus::default()
        };
        let accounts = match self.accounts_for_run().await {
            Ok(accounts) => accounts,
            Err(error) => {
                tracing::error!(%error, "cannot list the accounts to poll");
                self.state.set_status(status.clone());
                return status;
            }
        };

        let permits = Arc::new(Semaphore::new(self.config.max_concurrent_accounts.max(1)));
        let mut tasks = JoinSet::new();
        for account in accounts {
            let (poller, permits) = (Arc::clone(&self), Arc::clone(&permits));
            tasks.spawn(async move {
                let _permit = permits.acquire_owned().await;
                let result = poller.poll_account(&account).await;
                (account, result)
            });
        }

        let deadline = tokio::time::sleep(self.config.poll_timeout());
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                joined = tasks.join_next() => {
                    let Some(joined) = joined else { break };
                    match joined {
                        Ok((_, Ok(poll))) => {
                            status.accounts_polled += 1;
                            status.new_deliveries += poll.new_deliveries;
                        }
                        Ok((account, Err(error))) => {
                            status.accounts_failed += 1;
                            self.record_failure(&account, &error).await;
                        }
                        Err(error) => {
                            status.accounts_failed += 1;
                            tracing::error!(%error, "an account poll task failed");
                        }
                    }
                }
                _ = &mut deadline => {
                    let left = tasks.len();
                    tasks.abort_all();
                    status.accounts_failed += left;
                    tracing::warn!(
                        timeout_ms = self.config.poll_timeout_ms,
                        accounts_left = left,
                        "poll run timed out; the remaining accounts are polled in the next run"
                    );
                    break;
                }
            }
        }
        status.last_run_ms = started.elapsed().as_millis() as u64;
        if status.new_deliveries > 0 {
            self.state.wake_dispatcher();
        }
        self.state.set_status(status.clone());
        status
    }

    /// Returns the accounts with an active link, then the suspended accounts due for a check.
    async fn accounts_for_run(&self) -> Result<Vec<PollAccount>, sqlx::Error> {
        let db = self.links.db();
        let mut accounts = db.accounts_to_poll().await?;
        let since = chrono::Duration::from_std(self.suspended_retry_interval())
            .unwrap_or_else(|_| chrono::Duration::minutes(5));
        accounts.extend(db.suspended_accounts_due(Utc::now() - since).await?);
        Ok(accounts)
    }

    /// Returns the time between two checks of a suspended account.
    pub fn suspended_retry_interval(&self) -> std::time::Duration {
        suspended_retry_interval(&self.config)
    }

    async fn record_failure(&self, account: &PollAccount, error: &PollError) {
        match error {
            PollError::Suspended => tracing::warn!(
                account_id = %account.account_id,
                retry_in_s = self.suspended_retry_interval().as_secs(),
                "account suspended; its alerts pause and the feed is checked again later"
            ),
            PollError::NoValidKey => tracing::warn!(
                account_id = %account.account_id,
                "no linked key of the account is accepted; its alerts stop until a user relinks"
            ),
            other => {
                tracing::warn!(account_id = %account.account_id, error = %other, "account poll failed")
            }
        }
        if let Err(db_error) = self
            .links
            .db()
            .record_poll_error(&account.account_id, &error.to_string(), Utc::now())
            .await
        {
            tracing::error!(account_id = %account.account_id, error = %db_error, "cannot record the poll error");
        }
    }

    /// Reads the account's feed from its cursor until there is no more, storing each page.
    /// Keys are tried in link order: a key that gets 401 is revoked and the next one is used.
    /// An account without an active link is checked with the key of its oldest suspended link,
    /// and a success makes all its suspended links active again. A cursor that Trackly rejects
    /// (400 `invalid_cursor`) is cleared, and the feed is read again from its newest event.
    pub async fn poll_account(&self, account: &PollAccount) -> Result<AccountPoll, PollError> {
        let db = self.links.db();
        let mut cursor = db.alert_cursor(&account.account_id).await?.cursor;
        let mut result = AccountPoll::default();
        let mut users = db.active_link_users(&account.account_id).await?;
        let suspended = users.is_empty();
        if suspended {
            users = db.suspended_link_users(&account.account_id).await?;
            users.truncate(1);
        }
        let mut user_index = 0;
        let mut cursor_reset = false;

        while result.pages < MAX_PAGES_PER_RUN {
            let Some(&user_id) = users.get(user_index) else {
                return Err(PollError::NoValidKey);
            };
            let after = cursor.clone();
            let limit = self.config.page_size;
            let call = self
                .links
                .call(user_id, move |client, key| async move {
                    client.events(&key, after.as_deref(), limit).await
                })
                .await;
            let page = match call {
                Ok((_, page)) => page,
                Err(AccountCallError::KeyRejected {
                    newly_revoked,
                    account_id,
                    account_name,
                }) => {
                    if newly_revoked {
                        self.sender
                            .key_revoked(user_id, &account_id, &account_name)
                            .await;
                    }
                    user_index += 1;
                    continue;
                }
                Err(
                    AccountCallError::Revoked
                    | AccountCallError::NotLinked
                    | AccountCallError::Undecryptable(_),
                ) => {
                    user_index += 1;
                    continue;
                }
                Err(AccountCallError::Suspended) => {
                    db.suspend_account_links(&account.account_id, Utc::now())
                        .await?;
                    return Err(PollError::Suspended);
                }
                Err(AccountCallError::Trackly(TracklyError::InvalidCursor)) if !cursor_reset => {
                    tracing::error!(
                        account_id = %account.account_id,
                        cursor = cursor.as_deref().unwrap_or("none"),
                        "Trackly rejected the feed cursor; starting again at the newest event, \
                         so events since the last successful poll are not alerted"
                    );
                    db.reset_alert_cursor(
                        &account.account_id,
                        "Trackly rejected the feed cursor (invalid_cursor); reset to the newest event",
                        Utc::now(),
                    )
                    .await?;
                    cursor = None;
                    cursor_reset = true;
                    continue;
                }
                Err(AccountCallError::Trackly(TracklyError::InvalidCursor)) => {
                    return Err(PollError::InvalidCursor)
                }
                Err(AccountCallError::Trackly(error)) => return Err(PollError::Trackly(error)),
                Err(AccountCallError::Internal(error)) => return Err(PollError::Internal(error)),
            };

            if suspended && result.pages == 0 {
                let reactivated = db
                    .reactivate_account_links(&account.account_id, Utc::now())
                    .await?;
                tracing::info!(
                    account_id = %account.account_id,
                    reactivated_links = reactivated,
                    "account no longer suspended; its alerts resume"
                );
            }
            let stored = self
                .store_page(account, &page.events, cursor.as_deref(), &page.next_cursor)
                .await?;
            if stored.superseded {
                tracing::info!(
                    account_id = %account.account_id,
                    "the account's links or feed cursor changed during the poll; \
                     the page is dropped and the next run reads from the current cursor"
                );
                break;
            }
            result.pages += 1;
            result.new_events += stored.new_events;
            result.repeated_events += stored.repeated_events;
            result.new_deliveries += stored.new_deliveries;
            if stored.new_deliveries > 0 {
                self.state.wake_dispatcher();
            }
            if cursor.is_none() {
                tracing::info!(
                    account_id = %account.account_id,
                    cursor = %page.next_cursor,
                    "feed cursor initialised at the newest event"
                );
            }
            cursor = Some(page.next_cursor);
            if !page.has_more {
                break;
            }
        }
        if result.new_events > 0 || result.repeated_events > 0 {
            tracing::info!(
                account_id = %account.account_id,
                pages = result.pages,
                new_events = result.new_events,
                repeated_events = result.repeated_events,
                new_deliveries = result.new_deliveries,
                "events fetched"
            );
        }
        Ok(result)
    }

    /// Routes one page and stores it with the cursor advance in one transaction.
    async fn store_page(
        &self,
        account: &PollAccount,
        raw_events: &[serde_json::Value],
        read_from: Option<&str>,
        next_cursor: &str,
    ) -> Result<crate::storage::alerts::StoredPage, PollError> {
        let db = self.links.db();
        let now = Utc::now();
        let mut events = Vec::with_capacity(raw_events.len());
        for raw in raw_events {
            match Event::from_feed(raw, now) {
                Ok(event) => {
                    if let EventKind::Unknown(name) = &event.kind {
                        if self.unknown_types.first_sighting(name) {
                            tracing::warn!(
                                event_type = %name,
                                event_id = %event.id,
                                "unknown event type; delivering it as a generic alert (logged once per type)"
                            );
                        }
                    }
                    events.push((event, raw.to_string()));
                }
                Err(error) => tracing::warn!(
                    account_id = %account.account_id,
                    %error,
                    "skipping a malformed feed event"
                ),
            }
        }

        let recipients = if events.is_empty() {
            Vec::new()
        } else {
            db.account_recipients(&account.account_id).await?
        };
        let account_channel = if events.is_empty() {
            None
        } else {
            db.account_channel(&account.account_id)
                .await?
                .map(|channel| channel.channel_id)
        };
        let routed: Vec<RoutedEvent<'_>> = events
            .iter()
            .map(|(event, payload)| RoutedEvent {
                event,
                payload: payload.clone(),
                targets: route(event, &recipients, account_channel, self.internal, now),
            })
            .collect();
        Ok(db
            .store_fetched_page(account, &routed, read_from, next_cursor, now)
            .await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::{AlertMessage, SendError, Target};
    use crate::config::{LinkingConfig, TracklyConfig};
    use crate::crypto::KeyCipher;
    use crate::storage::test_db;
    use crate::trackly::TracklyClient;
    use serde_json::json;
    use std::sync::Mutex;
    use std::time::Duration;
    use trackly_sim::{AccountStatus, Fault, FaultKind, Seed, SeedKey, SimHandle, Simulator};

    const OWNER_KEY: &str = "trk_TESTacmeOWNERkey0000000000000001";
    const MEMBER_KEY: &str = "trk_TESTacmeMEMBERkey000000000000002";
    const ACME: &str = "acc_8f2k1q";
    /// The demo seed's second account and its owner's key.
    const BLUEFIN: &str = "acc_3m7x9p";
    const BLUEFIN_KEY: &str = "trk_TESTbluefinOWNERkey0000000000003";
    /// A third account that `three_account_seed` adds to the demo seed.
    const THIRD: &str = "acc_third1";
    const THIRD_KEY: &str = "trk_TESTthirdOWNERkey000000000000005";

    #[derive(Default)]
    struct NoticeRecorder {
        notices: Mutex<Vec<u64>>,
    }

    impl AlertSender for NoticeRecorder {
        async fn send(&self, _: Target, _: &AlertMessage, _: &str) -> Result<u64, SendError> {
            Err(SendError::Permanent("not used by the poller".into()))
        }

        async fn key_revoked(&self, user_id: u64, _account_id: &str, _account_name: &str) {
            self.notices.lock().unwrap().push(user_id);
        }
    }

    struct Setup {
        poller: Arc<Poller<NoticeRecorder>>,
        sender: Arc<NoticeRecorder>,
        sim: SimHandle,
        links: LinkService,
        _dir: tempfile::TempDir,
    }

    async fn setup() -> Setup {
        setup_with(AlertsConfig {
            all_alerts_channel_id: Some(900),
            page_size: 2,
            ..AlertsConfig::default()
        })
        .await
    }

    async fn setup_with(config: AlertsConfig) -> Setup {
        start_setup(config, Seed::demo(), &[(1, OWNER_KEY), (2, MEMBER_KEY)]).await
    }

    /// Starts the simulator with `seed` and links each user to the account of its key.
    async fn start_setup(config: AlertsConfig, seed: Seed, users: &[(u64, &str)]) -> Setup {
        let sim = Simulator::start(seed, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let (db, dir) = test_db().await;
        let trackly = TracklyClient::new(&TracklyConfig {
            base_url: sim.base_url(),
            max_retries: 0,
            ..TracklyConfig::default()
        })
        .unwrap();
        let cipher = Arc::new(KeyCipher::new(&[7; 32], "k1"));
        let links = LinkService::new(db, trackly, cipher, LinkingConfig::default());
        for (user_id, key) in users {
            links.link(*user_id, key, Utc::now()).await.unwrap();
        }
        let sender = Arc::new(NoticeRecorder::default());
        let poller = Arc::new(Poller::new(
            links.clone(),
            Arc::clone(&sender),
            Arc::new(AlertsState::new()),
            config,
        ));
        Setup {
            poller,
            sender,
            sim,
            links,
            _dir: dir,
        }
    }

    fn account() -> PollAccount {
        PollAccount {
            account_id: ACME.into(),
            account_name: "Acme Promotions".into(),
        }
    }

    fn outage(id: &str) -> serde_json::Value {
        json!({"id": id, "type": "service.outage", "data": {"component": "api"}})
    }

    #[tokio::test]
    async fn first_poll_starts_at_newest_event() {
        let setup = setup().await;
        setup.sim.append_events(ACME, vec![outage("old1")]).unwrap();
        let first = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(first.new_events, 0, "history is not replayed");
        let db = setup.links.db();
        assert!(db.alert_cursor(ACME).await.unwrap().cursor.is_some());

        let events = (1..=5).map(|n| outage(&format!("new{n}"))).collect();
        setup.sim.append_events(ACME, events).unwrap();
        let second = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(second.new_events, 5);
        assert_eq!(second.pages, 3, "page_size 2 reads 5 events in 3 pages");
        // Two DMs and the all-alerts copy for each critical event.
        assert_eq!(second.new_deliveries, 15);
        assert_eq!(db.pending_delivery_count().await.unwrap(), 15);
    }

    #[tokio::test]
    async fn rejected_key_falls_back_to_next_link() {
        let setup = setup().await;
        setup.poller.poll_account(&account()).await.unwrap();
        setup.sim.revoke_key(OWNER_KEY).unwrap();
        setup.sim.append_events(ACME, vec![outage("e1")]).unwrap();

        let poll = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(poll.new_events, 1);
        let owner = setup.links.db().link(1).await.unwrap().unwrap();
        assert_eq!(owner.status, crate::storage::LinkStatus::Revoked);
        assert_eq!(*setup.sender.notices.lock().unwrap(), vec![1]);

        setup.sim.revoke_key(MEMBER_KEY).unwrap();
        let error = setup.poller.poll_account(&account()).await.unwrap_err();
        assert!(matches!(error, PollError::NoValidKey), "{error}");
        assert_eq!(*setup.sender.notices.lock().unwrap(), vec![1, 2]);
    }

    #[tokio::test]
    async fn suspended_account_pauses() {
        let setup = setup().await;
        setup.poller.poll_account(&account()).await.unwrap();
        setup
            .sim
            .set_account_status(ACME, AccountStatus::Suspended)
            .unwrap();
        let error = setup.poller.poll_account(&account()).await.unwrap_err();
        assert!(matches!(error, PollError::Suspended), "{error}");
        let accounts = setup.links.db().accounts_to_poll().await.unwrap();
        assert!(
            accounts.iter().all(|a| a.account_id != ACME),
            "a suspended account is not polled: {accounts:?}"
        );
    }

    #[tokio::test]
    async fn malformed_events_skipped_not_fatal() {
        let setup = setup().await;
        setup.poller.poll_account(&account()).await.unwrap();
        setup
            .sim
            .append_events(
                ACME,
                vec![
                    json!({"id": "bad", "data": {}}),
                    outage("good"),
                    outage("good"),
                ],
            )
            .unwrap();
        let poll = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(poll.new_events, 1);
        assert_eq!(poll.repeated_events, 1);
    }

    #[tokio::test]
    async fn invalid_cursor_resets_to_newest() {
        let setup = setup().await;
        let db = setup.links.db();
        setup.poller.poll_account(&account()).await.unwrap();
        sqlx::query("UPDATE alert_cursors SET cursor = 'c_gone'")
            .execute(db.pool())
            .await
            .unwrap();
        setup.sim.append_events(ACME, vec![outage("lost")]).unwrap();

        let reset = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(reset.new_events, 0, "the reset starts at the newest event");
        let cursor = db.alert_cursor(ACME).await.unwrap().cursor;
        assert!(cursor.is_some());
        assert_ne!(cursor.as_deref(), Some("c_gone"));

        setup
            .sim
            .append_events(ACME, vec![outage("after")])
            .unwrap();
        let resumed = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(resumed.new_events, 1, "polling resumed after the reset");
    }

    #[tokio::test]
    async fn relink_after_unlink_starts_at_newest() {
        let setup = setup().await;
        setup.poller.poll_account(&account()).await.unwrap();
        setup.links.unlink(1).await.unwrap();
        setup.links.unlink(2).await.unwrap();
        let events = (0..7).map(|n| outage(&format!("old{n}"))).collect();
        setup.sim.append_events(ACME, events).unwrap();

        setup.links.link(1, OWNER_KEY, Utc::now()).await.unwrap();
        let poll = setup.poller.poll_account(&account()).await.unwrap();
        assert_eq!(poll.new_events, 0, "history is not replayed to a new link");
        assert_eq!(setup.links.db().pending_delivery_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn suspended_account_resumes_by_itself() {
        let setup = setup_with(AlertsConfig {
            all_alerts_channel_id: Some(900),
            poll_interval_ms: 20,
            ..AlertsConfig::default()
        })
        .await;
        let poller = Arc::clone(&setup.poller);
        let db = setup.links.db();
        assert_eq!(poller.suspended_retry_interval().as_millis(), 200);
        Arc::clone(&poller).run_once().await;
        setup
            .sim
            .set_account_status(ACME, AccountStatus::Suspended)
            .unwrap();
        let suspended = Arc::clone(&poller).run_once().await;
        assert_eq!(suspended.accounts_failed, 1);
        assert!(db.accounts_to_poll().await.unwrap().is_empty());

        setup
            .sim
            .set_account_status(ACME, AccountStatus::Active)
            .unwrap();
        setup.sim.append_events(ACME, vec![outage("back")]).unwrap();
        let too_soon = Arc::clone(&poller).run_once().await;
        assert_eq!(too_soon.accounts_polled + too_soon.accounts_failed, 0);

        tokio::time::sleep(std::time::Duration::from_millis(250)).await;
        let resumed = Arc::clone(&poller).run_once().await;
        assert_eq!(resumed.accounts_polled, 1);
        assert!(resumed.new_deliveries > 0, "{resumed:?}");
        for user in [1, 2] {
            let link = db.link(user).await.unwrap().unwrap();
            assert_eq!(link.status, crate::storage::LinkStatus::Active);
        }
        assert_eq!(db.accounts_to_poll().await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn still_suspended_probe_keeps_pause() {
        let setup = setup().await;
        setup.poller.poll_account(&account()).await.unwrap();
        setup
            .sim
            .set_account_status(ACME, AccountStatus::Suspended)
            .unwrap();
        let error = setup.poller.poll_account(&account()).await.unwrap_err();
        assert!(matches!(error, PollError::Suspended), "{error}");
        let again = setup.poller.poll_account(&account()).await.unwrap_err();
        assert!(matches!(again, PollError::Suspended), "{again}");
        let db = setup.links.db();
        for user in [1, 2] {
            let link = db.link(user).await.unwrap().unwrap();
            assert_eq!(link.status, crate::storage::LinkStatus::Suspended);
        }
    }

    /// Returns the demo seed plus a third account, `THIRD`, with the one key `THIRD_KEY`.
    fn three_account_seed() -> Seed {
        let mut seed = Seed::demo();
        let mut third = seed.accounts[1].clone();
        third.id = THIRD.into();
        third.name = "Third Line Texts".into();
        third.keys = vec![SeedKey {
            key: THIRD_KEY.into(),
            role: "owner".into(),
        }];
        third.lists.clear();
        seed.accounts.push(third);
        seed
    }

    /// Starts a poller for three accounts with one linked user each.
    async fn setup_three_accounts(config: AlertsConfig) -> Setup {
        let users = [(1, OWNER_KEY), (3, BLUEFIN_KEY), (4, THIRD_KEY)];
        start_setup(config, three_account_seed(), &users).await
    }

    /// Delays every `GET /events` response by `ms`, or only those for `key` when one is given.
    fn slow_feed(sim: &SimHandle, key: Option<&str>, ms: u64) {
        sim.add_fault(Fault {
            key: key.map(str::to_owned),
            path: Some("/events".into()),
            times: None,
            kind: FaultKind::Delay { ms },
        });
    }

    /// Returns the time each `GET /events` request reached the simulator, oldest first.
    fn feed_request_times(sim: &SimHandle) -> Vec<chrono::DateTime<Utc>> {
        let mut times: Vec<_> = sim
            .requests()
            .into_iter()
            .filter(|request| request.path == "/events")
            .map(|request| request.received_at)
            .collect();
        times.sort();
        times
    }

    #[tokio::test]
    async fn concurrent_account_polls_limited() {
        // Long enough that scheduling delays on a busy machine stay far below it.
        const FEED_DELAY_MS: u64 = 1_500;
        let setup = setup_three_accounts(AlertsConfig {
            max_concurrent_accounts: 2,
            poll_timeout_ms: 10_000,
            ..AlertsConfig::default()
        })
        .await;
        slow_feed(&setup.sim, None, FEED_DELAY_MS);

        let status = Arc::clone(&setup.poller).run_once().await;
        assert_eq!(status.accounts_polled, 3, "{status:?}");
        assert_eq!(status.accounts_failed, 0, "{status:?}");
        let db = setup.links.db();
        for account_id in [ACME, BLUEFIN, THIRD] {
            let cursor = db.alert_cursor(account_id).await.unwrap().cursor;
            assert!(cursor.is_some(), "{account_id} was not polled");
        }

        // An account's poll keeps its permit until the delayed response arrived, at least
        // FEED_DELAY_MS after the simulator received the request. So polls whose requests
        // arrived less than FEED_DELAY_MS apart ran at the same time.
        let times = feed_request_times(&setup.sim);
        assert_eq!(times.len(), 3, "one feed request per account: {times:?}");
        let delay = chrono::Duration::milliseconds(FEED_DELAY_MS as i64);
        assert!(
            times[2] - times[0] >= delay,
            "3 polls ran at the same time under a limit of 2: {times:?}"
        );
        assert!(
            times[1] - times[0] < delay,
            "2 polls should run at the same time: {times:?}"
        );
        assert!(
            status.last_run_ms >= 2 * FEED_DELAY_MS,
            "the third account waits for a permit: {status:?}"
        );
    }

    #[tokio::test]
    async fn run_stops_at_poll_timeout() {
        // Long enough for the two fast polls on a busy machine, far below the slow feed.
        const TIMEOUT_MS: u64 = 3_000;
        let setup = setup_three_accounts(AlertsConfig {
            max_concurrent_accounts: 3,
            poll_timeout_ms: TIMEOUT_MS,
            ..AlertsConfig::default()
        })
        .await;
        // Only Acme's feed is slow, and the other two respond at once.
        slow_feed(&setup.sim, Some(OWNER_KEY), 30_000);

        let started = std::time::Instant::now();
        let status = Arc::clone(&setup.poller).run_once().await;
        let elapsed = started.elapsed();
        assert!(
            elapsed >= Duration::from_millis(TIMEOUT_MS),
            "the run ended before its timeout: {elapsed:?}"
        );
        assert!(
            elapsed < Duration::from_millis(25_000),
            "the run waited for the slow feed: {elapsed:?}"
        );
        assert_eq!(status.accounts_polled, 2, "{status:?}");
        assert_eq!(
            status.accounts_failed, 1,
            "the account cut off by the timeout counts as failed: {status:?}"
        );
        assert!(status.last_run_ms >= TIMEOUT_MS, "{status:?}");
        assert_eq!(
            setup.poller.state.status(),
            status,
            "the run's status is published for /sms status"
        );
        let db = setup.links.db();
        assert_eq!(
            db.alert_cursor(ACME).await.unwrap().cursor,
            None,
            "the cut-off poll stored nothing"
        );
        assert!(db.alert_cursor(BLUEFIN).await.unwrap().cursor.is_some());
        assert!(db.alert_cursor(THIRD).await.unwrap().cursor.is_some());

        // The next run polls the cut-off account again.
        setup.sim.clear_faults();
        let next = Arc::clone(&setup.poller).run_once().await;
        assert_eq!(next.accounts_polled, 3, "{next:?}");
        assert_eq!(next.accounts_failed, 0, "{next:?}");
        assert!(db.alert_cursor(ACME).await.unwrap().cursor.is_some());
    }
}
