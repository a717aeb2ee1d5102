use std::collections::VecDeque;
use std::sync::Mutex;

use serde_json::json;

use super::*;
use crate::alerts::Event;
use crate::config::AlertsConfig;
use crate::crypto::SealedKey;
use crate::storage::alerts::{PollAccount, RoutedEvent};
use crate::storage::{test_db, AccountChannel, NewLink};

const ALICE: u64 = 7;
const ACCOUNT_CHANNEL: u64 = 500;
const ALL_ALERTS: u64 = 900;

/// Records every message and returns scripted results, then success.
#[derive(Default)]
struct RecordingSender {
    sent: Mutex<Vec<(Target, AlertMessage)>>,
    /// Target and start time of every call to `send`, failed ones included.
    attempts: Mutex<Vec<(Target, Instant)>>,
    script: Mutex<VecDeque<Result<u64, SendError>>>,
}

impl RecordingSender {
    fn script(&self, result: Result<u64, SendError>) {
        self.script.lock().unwrap().push_back(result);
    }

    fn sent(&self) -> Vec<(Target, AlertMessage)> {
        self.sent.lock().unwrap().clone()
    }

    fn sent_to(&self, target: Target) -> usize {
        self.sent().iter().filter(|(t, _)| *t == target).count()
    }

    /// Returns the start time of every send to `target`, in order.
    fn attempt_times(&self, target: Target) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .filter(|(t, _)| *t == target)
            .map(|(_, at)| *at)
            .collect()
    }

    fn all_attempt_times(&self) -> Vec<Instant> {
        self.attempts
            .lock()
            .unwrap()
            .iter()
            .map(|(_, at)| *at)
            .collect()
    }
}

impl AlertSender for RecordingSender {
    async fn send(
        &self,
        target: Target,
        message: &AlertMessage,
        _nonce: &str,
    ) -> Result<u64, SendError> {
        self.attempts.lock().unwrap().push((target, Instant::now()));
        let scripted = self.script.lock().unwrap().pop_front();
        match scripted {
            Some(Err(error)) => Err(error),
            _ => {
                let mut sent = self.sent.lock().unwrap();
                sent.push((target, message.clone()));
                Ok(1000 + sent.len() as u64)
            }
        }
    }

    async fn key_revoked(&self, _user_id: u64, _account_id: &str, _account_name: &str) {}
}

fn config(threshold: u32) -> AlertsConfig {
    AlertsConfig {
        digest_threshold: threshold,
        digest_window_secs: 60,
        global_messages_per_sec: 50,
        channel_messages_per_5s: 5,
        ..AlertsConfig::default()
    }
}

async fn setup() -> (Db, tempfile::TempDir) {
    let (db, dir) = test_db().await;
    let key = SealedKey {
        key_id: "k1".into(),
        bytes: vec![1; 40],
    };
    db.upsert_link(&NewLink {
        discord_user_id: ALICE,
        account_id: "acc_1",
        account_name: "Acme",
        role: "owner",
        sealed_key: &key,
        key_masked: "trk_…0000",
        now: Utc::now(),
    })
    .await
    .unwrap();
    db.save_account_channel(
        &AccountChannel {
            account_id: "acc_1".into(),
            guild_id: 1,
            channel_id: ACCOUNT_CHANNEL,
        },
        Utc::now(),
    )
    .await
    .unwrap();
    (db, dir)
}

async fn store(db: &Db, events: &[(&str, &str)], targets: Vec<Target>) {
    let parsed: Vec<Event> = events
        .iter()
        .map(|(id, kind)| {
            Event::from_feed(&json!({"id": id, "type": kind, "data": {}}), Utc::now()).unwrap()
        })
        .collect();
    let routed: Vec<RoutedEvent<'_>> = parsed
        .iter()
        .map(|event| RoutedEvent {
            event,
            payload: json!({"id": event.id, "type": event.type_name, "data": {}}).to_string(),
            targets: targets.clone(),
        })
        .collect();
    let account = PollAccount {
        account_id: "acc_1".into(),
        account_name: "Acme".into(),
    };
    let cursor = db.alert_cursor("acc_1").await.unwrap().cursor;
    let next = format!("{}+", cursor.as_deref().unwrap_or("c"));
    let stored = db
        .store_fetched_page(&account, &routed, cursor.as_deref(), &next, Utc::now())
        .await
        .unwrap();
    assert!(!stored.superseded, "acc_1 has no usable link in this test");
}

fn dispatcher(
    db: &Db,
    sender: &Arc<RecordingSender>,
    threshold: u32,
) -> Dispatcher<RecordingSender> {
    Dispatcher::new(
        db.clone(),
        Arc::clone(sender),
        Arc::new(AlertsState::new()),
        &config(threshold),
    )
}

#[tokio::test]
async fn sends_once_and_marks_sent() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("evt_1", "delivery_failure")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();

    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 1);
    let again = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(again.messages_sent, 0);
    let sent = sender.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].1.mute_button.as_deref(), Some("alerts:mute1h:7"));
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn dm_closed_marks_user_and_falls_back() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("evt_1", "opt_out"), ("evt_2", "opt_out")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    let sender = Arc::new(RecordingSender::default());
    sender.script(Err(SendError::DmClosed));
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();

    dispatcher.round(&shutdown).await.unwrap();
    assert!(
        db.alert_preferences(ALICE)
            .await
            .unwrap()
            .unwrap()
            .dm_closed
    );
    dispatcher.round(&shutdown).await.unwrap();
    dispatcher.round(&shutdown).await.unwrap();

    let channel = Target::AccountChannel {
        channel_id: ACCOUNT_CHANNEL,
    };
    assert_eq!(
        sender.sent_to(channel),
        2,
        "both alerts reach the account channel"
    );
    assert_eq!(sender.sent_to(Target::Dm { user_id: ALICE }), 0);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
}

#[tokio::test]
async fn transient_failure_retried_later() {
    let (db, _dir) = setup().await;
    let target = Target::AllAlerts {
        channel_id: ALL_ALERTS,
    };
    store(&db, &[("evt_1", "service.outage")], vec![target]).await;
    let sender = Arc::new(RecordingSender::default());
    sender.script(Err(SendError::Transient("HTTP 502".into())));
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();

    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(report.deliveries_retried, 1);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 1);
    let next = db.next_due_at().await.unwrap().unwrap();
    assert!(next > Utc::now() + chrono::Duration::seconds(1), "{next}");
    assert_eq!(sender.sent_to(target), 0);
}

#[tokio::test]
async fn unusable_channel_fails_without_retry() {
    let (db, _dir) = setup().await;
    let target = Target::AllAlerts {
        channel_id: ALL_ALERTS,
    };
    store(&db, &[("evt_1", "service.outage")], vec![target]).await;
    let sender = Arc::new(RecordingSender::default());
    sender.script(Err(SendError::ChannelUnavailable {
        code: 50001,
        detail: "Missing Access".into(),
    }));
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();
    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(report.deliveries_failed, 1);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
    assert_eq!(db.next_due_at().await.unwrap(), None);
}

#[tokio::test]
async fn storm_holds_rest_for_digest() {
    let (db, _dir) = setup().await;
    let events: Vec<(String, &str)> = (0..30)
        .map(|index| {
            (
                format!("evt_{index}"),
                if index < 2 {
                    "service.outage"
                } else {
                    "delivery_failure"
                },
            )
        })
        .collect();
    let borrowed: Vec<(&str, &str)> = events
        .iter()
        .map(|(id, kind)| (id.as_str(), *kind))
        .collect();
    let target = Target::Dm { user_id: ALICE };
    store(&db, &borrowed, vec![target]).await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 3);
    let shutdown = CancellationToken::new();

    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(
        report.messages_sent, 5,
        "2 critical and 3 within the threshold: {report:?}"
    );
    assert_eq!(report.deliveries_held, 25);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 25);
    let due = db.next_due_at().await.unwrap().unwrap();
    assert!(due > Utc::now() + chrono::Duration::seconds(50), "{due}");
}

async fn link_alice(db: &Db, account_id: &str) {
    link_user(db, ALICE, account_id).await;
}

async fn link_user(db: &Db, user_id: u64, account_id: &str) {
    let key = SealedKey {
        key_id: "k1".into(),
        bytes: vec![2; 40],
    };
    db.upsert_link(&NewLink {
        discord_user_id: user_id,
        account_id,
        account_name: "Other Co",
        role: "owner",
        sealed_key: &key,
        key_masked: "trk_…0001",
        now: Utc::now(),
    })
    .await
    .unwrap();
}

async fn delivery_statuses(db: &Db) -> Vec<String> {
    sqlx::query_scalar("SELECT status FROM alert_deliveries ORDER BY id")
        .fetch_all(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn relink_drops_queued_old_account_dm() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("e1", "delivery_failure")],
        vec![
            Target::Dm { user_id: ALICE },
            Target::AllAlerts {
                channel_id: ALL_ALERTS,
            },
        ],
    )
    .await;
    link_alice(&db, "acc_2").await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 5);
    dispatcher.round(&CancellationToken::new()).await.unwrap();
    assert_eq!(sender.sent_to(Target::Dm { user_id: ALICE }), 0);
    assert_eq!(
        sender.sent_to(Target::AllAlerts {
            channel_id: ALL_ALERTS
        }),
        1
    );
}

#[tokio::test]
async fn dm_of_other_account_skipped() {
    let (db, _dir) = setup().await;
    // Alice moves to another account; a poll of the old account, which another user keeps
    // linked, routed before the move and stores its DM afterwards.
    link_user(&db, ALICE + 1, "acc_1").await;
    link_alice(&db, "acc_2").await;
    store(
        &db,
        &[("e1", "delivery_failure")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let report = dispatcher.round(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.deliveries_skipped, 1);
    assert_eq!(report.messages_sent, 0);
    assert!(sender.sent().is_empty());
    assert_eq!(delivery_statuses(&db).await, ["skipped"]);
}

#[tokio::test]
async fn revoked_link_dm_skipped() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("e1", "delivery_failure")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    // Revoke without the storage cleanup, as a second process could have.
    sqlx::query("UPDATE links SET status = 'revoked'")
        .execute(db.pool())
        .await
        .unwrap();
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let report = dispatcher.round(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.deliveries_skipped, 1);
    assert!(sender.sent().is_empty());
}

#[tokio::test]
async fn unauthorized_keeps_outbox_pending() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[
            ("e1", "delivery_failure"),
            ("e2", "opt_out"),
            ("e3", "service.outage"),
        ],
        vec![
            Target::Dm { user_id: ALICE },
            Target::AllAlerts {
                channel_id: ALL_ALERTS,
            },
        ],
    )
    .await;
    let sender = Arc::new(RecordingSender::default());
    for _ in 0..10 {
        sender.script(Err(SendError::Unauthorized(
            "HTTP 401, code 0: 401: Unauthorized".into(),
        )));
    }
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();

    let report = dispatcher.round(&shutdown).await.unwrap();
    assert!(report.unauthorized);
    assert_eq!(report.deliveries_failed, 0);
    assert_eq!(report.deliveries_retried, 0);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 6);
    assert_eq!(
        sender.script.lock().unwrap().len(),
        9,
        "one send, then the round stops"
    );

    // The pause keeps the next round from sending anything.
    let paused = dispatcher.round(&shutdown).await.unwrap();
    assert!(paused.unauthorized);
    assert_eq!(sender.script.lock().unwrap().len(), 9);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 6);
}

#[tokio::test]
async fn unauthorized_pause_ends_and_sends() {
    let (db, _dir) = setup().await;
    let target = Target::AllAlerts {
        channel_id: ALL_ALERTS,
    };
    store(&db, &[("e1", "service.outage")], vec![target]).await;
    let sender = Arc::new(RecordingSender::default());
    sender.script(Err(SendError::Unauthorized("HTTP 403, code none".into())));
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let shutdown = CancellationToken::new();
    dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(sender.sent_to(target), 0);

    dispatcher.paused_until = Some(Instant::now());
    let report = dispatcher.round(&shutdown).await.unwrap();
    assert!(!report.unauthorized);
    assert_eq!(report.deliveries_sent, 1);
    assert_eq!(sender.sent_to(target), 1);
}

#[tokio::test]
async fn mute_during_storm_stops_queued_rest() {
    let (db, _dir) = setup().await;
    let ids: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    let events: Vec<(&str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), "delivery_failure"))
        .collect();
    let alice = Target::Dm { user_id: ALICE };
    store(&db, &events, vec![alice]).await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = Dispatcher::new(
        db.clone(),
        Arc::clone(&sender),
        Arc::new(AlertsState::new()),
        &AlertsConfig {
            digest_window_secs: 1,
            ..config(2)
        },
    );
    let shutdown = CancellationToken::new();
    let first = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(first.messages_sent, 2);
    assert_eq!(first.deliveries_held, 6);

    // Alice presses "Mute 1 h"; then a critical alert arrives.
    db.set_alert_mute(
        ALICE,
        Some(Utc::now() + chrono::Duration::hours(1)),
        Utc::now(),
    )
    .await
    .unwrap();
    store(&db, &[("critical1", "service.outage")], vec![alice]).await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let second = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(second.deliveries_skipped, 6);
    assert_eq!(second.deliveries_sent, 1);

    let sent = sender.sent();
    assert_eq!(sent.len(), 3);
    assert_eq!(sent[2].1.embeds[0].title, "Service outage");
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
    let statuses = delivery_statuses(&db).await;
    assert_eq!(statuses.iter().filter(|s| *s == "skipped").count(), 6);
    assert!(!statuses.iter().any(|s| s == "failed"));
}

#[tokio::test]
async fn toggle_off_skips_queued_dm() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("e1", "opt_out")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    let changes = crate::alerts::PreferenceChanges {
        opt_outs: Some(false),
        ..Default::default()
    };
    db.update_alert_preferences(ALICE, &changes, Utc::now())
        .await
        .unwrap();
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 5);
    let report = dispatcher.round(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.deliveries_skipped, 1);
    assert!(sender.sent().is_empty());
}

#[tokio::test]
async fn dm_closed_fallback_fails_and_copies() {
    let (db, _dir) = setup().await;
    store(
        &db,
        &[("e1", "opt_out")],
        vec![Target::Dm { user_id: ALICE }],
    )
    .await;
    let due = db.due_deliveries(Utc::now(), 10).await.unwrap();
    let copies = db
        .fail_dms_with_fallback(&due, "closed", Utc::now())
        .await
        .unwrap();
    assert_eq!(copies, 1);
    assert_eq!(delivery_statuses(&db).await, ["failed", "pending"]);
    // A second attempt on the same rows changes nothing.
    let again = db
        .fail_dms_with_fallback(&due, "closed", Utc::now())
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(delivery_statuses(&db).await, ["failed", "pending"]);
}

#[test]
fn nonce_depends_on_every_delivery() {
    assert_eq!(message_nonce(&[42]), "d42");
    let digest = message_nonce(&[5, 6, 7]);
    assert_eq!(
        digest,
        message_nonce(&[5, 6, 7]),
        "a retry reuses the nonce"
    );
    assert_ne!(
        digest,
        message_nonce(&[5, 6, 8]),
        "same first id and length"
    );
    assert_ne!(digest, message_nonce(&[5, 6]));
    assert!(digest.len() <= 25);
    assert!(message_nonce(&[i64::MAX]).len() <= 25);
}

/// The digest window of [`short_window_dispatcher`], in seconds: short for a fast test, long
/// enough that the steps meant to happen inside it do so on a busy machine.
const SHORT_WINDOW_SECS: u64 = 2;

/// Sleeps until a window of [`SHORT_WINDOW_SECS`] that starts now has ended.
async fn sleep_past_short_window() {
    tokio::time::sleep(Duration::from_millis(SHORT_WINDOW_SECS * 1000 + 100)).await;
}

/// Returns a dispatcher for `threshold` with a digest window of [`SHORT_WINDOW_SECS`].
fn short_window_dispatcher(
    db: &Db,
    sender: &Arc<RecordingSender>,
    threshold: u32,
) -> Dispatcher<RecordingSender> {
    Dispatcher::new(
        db.clone(),
        Arc::clone(sender),
        Arc::new(AlertsState::new()),
        &AlertsConfig {
            digest_window_secs: SHORT_WINDOW_SECS,
            ..config(threshold)
        },
    )
}

/// Stores `count` non-critical alerts for Alice with event ids `{prefix}0`, `{prefix}1`, ….
async fn store_storm(db: &Db, prefix: &str, count: usize) {
    let ids: Vec<String> = (0..count).map(|i| format!("{prefix}{i}")).collect();
    let events: Vec<(&str, &str)> = ids
        .iter()
        .map(|id| (id.as_str(), "delivery_failure"))
        .collect();
    store(db, &events, vec![Target::Dm { user_id: ALICE }]).await;
}

/// Returns the footer of each message sent so far, in order.
fn footers(sender: &RecordingSender) -> Vec<String> {
    sender
        .sent()
        .iter()
        .map(|(_, message)| message.embeds[0].footer.clone())
        .collect()
}

/// Returns a dispatcher for `threshold` with a window of an hour, which no step of a test
/// outlives by accident; [`end_stored_windows`] ends it.
fn hour_window_dispatcher(
    db: &Db,
    sender: &Arc<RecordingSender>,
    threshold: u32,
) -> Dispatcher<RecordingSender> {
    Dispatcher::new(
        db.clone(),
        Arc::clone(sender),
        Arc::new(AlertsState::new()),
        &AlertsConfig {
            digest_window_secs: 3600,
            ..config(threshold)
        },
    )
}

/// Moves the stored windows and the alerts an hour and a second back, and makes every pending
/// alert due, as if the windows had ended. A dispatcher made afterwards restores them ended.
async fn end_stored_windows(db: &Db) {
    for sql in [
        "UPDATE digest_windows SET started_at_ms = started_at_ms - 3601000",
        "UPDATE alert_deliveries SET created_at_ms = created_at_ms - 3601000",
        "UPDATE alert_deliveries SET next_attempt_at_ms = 0 WHERE status = 'pending'",
    ] {
        sqlx::query(sql).execute(db.pool()).await.unwrap();
    }
}

async fn stored_window_count(db: &Db) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM digest_windows")
        .fetch_one(db.pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn restart_in_window_sends_one_digest() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 8).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();

    let mut before_restart = hour_window_dispatcher(&db, &sender, 2);
    let first = before_restart.round(&shutdown).await.unwrap();
    assert_eq!(first.messages_sent, 2);
    assert_eq!(first.deliveries_held, 6);
    assert_eq!(stored_window_count(&db).await, 1);
    drop(before_restart);

    // The restarted dispatcher delays what arrives during the window, as the old one would.
    let mut after_restart = hour_window_dispatcher(&db, &sender, 2);
    store_storm(&db, "late", 2).await;
    let during = after_restart.round(&shutdown).await.unwrap();
    assert_eq!(during.messages_sent, 0, "{during:?}");
    assert_eq!(during.deliveries_held, 2);
    drop(after_restart);

    end_stored_windows(&db).await;
    let mut after_end = hour_window_dispatcher(&db, &sender, 2);
    let report = after_end.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 1, "{report:?}");
    assert_eq!(report.deliveries_sent, 8);

    let footers = footers(&sender);
    assert_eq!(footers.len(), 3, "2 singles and 1 digest: {footers:?}");
    assert!(!footers[0].starts_with("Digest of "), "{footers:?}");
    assert!(!footers[1].starts_with("Digest of "), "{footers:?}");
    assert!(footers[2].starts_with("Digest of 8 alerts"), "{footers:?}");
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
    assert_eq!(
        stored_window_count(&db).await,
        0,
        "the digest ends the window"
    );
}

#[tokio::test]
async fn restart_after_window_sends_one_digest() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 8).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();

    let mut before_restart = short_window_dispatcher(&db, &sender, 2);
    let first = before_restart.round(&shutdown).await.unwrap();
    assert_eq!(first.messages_sent, 2);
    assert_eq!(first.deliveries_held, 6);
    drop(before_restart);

    // The bot stays down past the window end, and the ended window still owes its digest.
    sleep_past_short_window().await;
    let mut after_restart = short_window_dispatcher(&db, &sender, 2);
    let report = after_restart.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 1, "{report:?}");
    assert_eq!(report.deliveries_sent, 6);
    assert_eq!(report.deliveries_held, 0);

    let footers = footers(&sender);
    assert_eq!(footers.len(), 3, "2 singles and 1 digest: {footers:?}");
    assert!(footers[2].starts_with("Digest of 6 alerts"), "{footers:?}");
    assert_eq!(stored_window_count(&db).await, 0);
}

#[tokio::test]
async fn quiet_window_restored_counts_singles() {
    let (db, _dir) = setup().await;
    store_storm(&db, "a", 1).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    let mut before_restart = dispatcher(&db, &sender, 2);
    assert_eq!(
        before_restart.round(&shutdown).await.unwrap().messages_sent,
        1
    );
    drop(before_restart);

    // One single is left in the restored window, so the second of two new alerts is held.
    store_storm(&db, "b", 2).await;
    let mut after_restart = dispatcher(&db, &sender, 2);
    let report = after_restart.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 1, "{report:?}");
    assert_eq!(report.deliveries_held, 1);
    assert_eq!(sender.sent().len(), 2);
}

#[tokio::test]
async fn window_write_failure_still_sends() {
    let (db, _dir) = setup().await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    let mut dispatcher = dispatcher(&db, &sender, 2);
    // The first round restores the stored windows, of which there are none. Dropping the
    // table then makes every window write fail.
    dispatcher.round(&shutdown).await.unwrap();
    sqlx::query("DROP TABLE digest_windows")
        .execute(db.pool())
        .await
        .unwrap();

    store_storm(&db, "s", 5).await;
    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 2, "{report:?}");
    assert_eq!(report.deliveries_held, 3);
    assert_eq!(db.pending_delivery_count().await.unwrap(), 3);
}

#[tokio::test]
async fn window_restore_failure_sends_nothing() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 1).await;
    sqlx::query("DROP TABLE digest_windows")
        .execute(db.pool())
        .await
        .unwrap();
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = dispatcher(&db, &sender, 2);
    let result = dispatcher.round(&CancellationToken::new()).await;
    assert!(result.is_err(), "{result:?}");
    assert!(sender.sent().is_empty());
    assert_eq!(db.pending_delivery_count().await.unwrap(), 1);
}

#[tokio::test]
async fn failed_digest_is_retried_as_one_digest() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 8).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    let mut dispatcher = short_window_dispatcher(&db, &sender, 2);
    let first = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(first.messages_sent, 2);
    assert_eq!(first.deliveries_held, 6);

    sleep_past_short_window().await;
    sender.script(Err(SendError::Transient("HTTP 502".into())));
    let failed = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(failed.deliveries_retried, 6, "{failed:?}");
    assert_eq!(
        stored_window_count(&db).await,
        1,
        "the digest is still owed"
    );

    // The retry comes due after a restart; it is one digest, not 2 singles and a new window.
    sqlx::query("UPDATE alert_deliveries SET next_attempt_at_ms = 0 WHERE status = 'pending'")
        .execute(db.pool())
        .await
        .unwrap();
    let mut restarted = short_window_dispatcher(&db, &sender, 2);
    let retry = restarted.round(&shutdown).await.unwrap();
    assert_eq!(retry.messages_sent, 1, "{retry:?}");
    assert_eq!(retry.deliveries_sent, 6);
    let footers = footers(&sender);
    assert_eq!(footers.len(), 3, "2 singles and 1 digest: {footers:?}");
    assert!(footers[2].starts_with("Digest of 6 alerts"), "{footers:?}");
    assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
    assert_eq!(stored_window_count(&db).await, 0);
}

/// Stores one critical alert per id in `ids` for `target`. Critical alerts are never held for a
/// digest, so each is its own message.
async fn store_critical(db: &Db, ids: &[&str], target: Target) {
    let events: Vec<(&str, &str)> = ids.iter().map(|id| (*id, "service.outage")).collect();
    store(db, &events, vec![target]).await;
}

/// Returns the largest number of `times` that fall within any span of length `span`.
fn max_within(times: &[Instant], span: Duration) -> usize {
    times
        .iter()
        .map(|start| {
            times
                .iter()
                .filter(|at| **at >= *start && at.duration_since(*start) < span)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn channel_limit_paces_sends() {
    let (db, _dir) = setup().await;
    let all_alerts = Target::AllAlerts {
        channel_id: ALL_ALERTS,
    };
    let account_channel = Target::AccountChannel {
        channel_id: ACCOUNT_CHANNEL,
    };
    store_critical(&db, &["a1", "a2", "a3", "a4", "a5"], all_alerts).await;
    store_critical(&db, &["b1", "b2", "b3"], account_channel).await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = Dispatcher::new(
        db.clone(),
        Arc::clone(&sender),
        Arc::new(AlertsState::new()),
        &AlertsConfig {
            channel_messages_per_5s: 2,
            ..config(100)
        },
    );
    let shutdown = CancellationToken::new();

    let first = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(first.messages_sent, 4, "2 per channel: {first:?}");
    assert_eq!(
        first.paced, 4,
        "3 left on all-alerts, 1 on the account channel"
    );
    assert_eq!(sender.sent_to(all_alerts), 2);
    assert_eq!(sender.sent_to(account_channel), 2);

    // The dispatcher runs the next round 100 ms after a paced one. Within the 5-second window
    // every such round finds both channels at their limit and sends nothing.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let report = dispatcher.round(&shutdown).await.unwrap();
        assert_eq!(report.messages_sent, 0, "{report:?}");
        assert_eq!(report.paced, 2, "one per channel at its limit: {report:?}");
    }
    let window = Duration::from_secs(5);
    assert_eq!(max_within(&sender.attempt_times(all_alerts), window), 2);
    assert_eq!(
        max_within(&sender.attempt_times(account_channel), window),
        2
    );
    assert_eq!(
        db.pending_delivery_count().await.unwrap(),
        4,
        "paced deliveries stay pending"
    );
}

#[tokio::test]
async fn global_rate_spaces_sends() {
    let (db, _dir) = setup().await;
    let target = Target::AllAlerts {
        channel_id: ALL_ALERTS,
    };
    store_critical(&db, &["g1", "g2", "g3", "g4", "g5"], target).await;
    let sender = Arc::new(RecordingSender::default());
    let mut dispatcher = Dispatcher::new(
        db.clone(),
        Arc::clone(&sender),
        Arc::new(AlertsState::new()),
        &AlertsConfig {
            global_messages_per_sec: 10,
            channel_messages_per_5s: 50,
            ..config(100)
        },
    );

    let report = dispatcher.round(&CancellationToken::new()).await.unwrap();
    assert_eq!(report.messages_sent, 5, "{report:?}");
    assert_eq!(report.paced, 0, "{report:?}");
    // 10 per second gives one slot every 100 ms, so the fifth send starts at least 400 ms after
    // the first slot. The first send takes its slot at once, and the margin covers the time
    // between that slot and the send.
    let times = sender.all_attempt_times();
    assert_eq!(times.len(), 5);
    let span = times[4].duration_since(times[0]);
    assert!(
        span >= Duration::from_millis(350),
        "5 sends within {span:?}"
    );
}

#[tokio::test]
async fn alert_during_failed_digest_waits_for_it() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 8).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    let mut dispatcher = short_window_dispatcher(&db, &sender, 2);
    dispatcher.round(&shutdown).await.unwrap();

    sleep_past_short_window().await;
    sender.script(Err(SendError::Transient("HTTP 502".into())));
    let failed = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(failed.deliveries_retried, 6, "{failed:?}");

    // A new alert arrives while the digest waits for its retry: it is held, not sent alone.
    sqlx::query("UPDATE alert_deliveries SET next_attempt_at_ms = ? WHERE status = 'pending'")
        .bind((Utc::now() + chrono::Duration::hours(1)).timestamp_millis())
        .execute(db.pool())
        .await
        .unwrap();
    store_storm(&db, "late", 1).await;
    let waiting = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(waiting.messages_sent, 0, "{waiting:?}");
    assert_eq!(waiting.deliveries_held, 1);

    // The retry is the same digest; only then does the late alert go, opening a new window.
    sqlx::query("UPDATE alert_deliveries SET next_attempt_at_ms = 0 WHERE status = 'pending'")
        .execute(db.pool())
        .await
        .unwrap();
    let retry = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(retry.deliveries_sent, 6, "{retry:?}");
    sqlx::query("UPDATE alert_deliveries SET next_attempt_at_ms = 0 WHERE status = 'pending'")
        .execute(db.pool())
        .await
        .unwrap();
    let late = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(late.deliveries_sent, 1, "{late:?}");
    let footers = footers(&sender);
    assert_eq!(footers.len(), 4, "{footers:?}");
    assert!(footers[2].starts_with("Digest of 6 alerts"), "{footers:?}");
    assert!(footers[3].ends_with("event late0"), "{footers:?}");
}

#[tokio::test]
async fn window_ends_when_its_held_alerts_are_gone() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 8).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    let mut dispatcher = short_window_dispatcher(&db, &sender, 2);
    dispatcher.round(&shutdown).await.unwrap();

    // Alice mutes; the held alerts are skipped when they come due.
    db.set_alert_mute(
        ALICE,
        Some(Utc::now() + chrono::Duration::hours(1)),
        Utc::now(),
    )
    .await
    .unwrap();
    sleep_past_short_window().await;
    let skipped = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(skipped.deliveries_skipped, 6, "{skipped:?}");

    // After the mute, a new storm starts a new window: singles first, not a digest at once.
    db.set_alert_mute(ALICE, None, Utc::now()).await.unwrap();
    store_storm(&db, "n", 4).await;
    let report = dispatcher.round(&shutdown).await.unwrap();
    assert_eq!(report.messages_sent, 2, "{report:?}");
    assert_eq!(report.deliveries_held, 2);
    let footers = footers(&sender);
    assert!(
        footers.iter().all(|footer| !footer.starts_with("Digest")),
        "{footers:?}"
    );
}

#[tokio::test]
async fn shorter_window_after_restart_releases_held_alerts() {
    let (db, _dir) = setup().await;
    store_storm(&db, "s", 6).await;
    let sender = Arc::new(RecordingSender::default());
    let shutdown = CancellationToken::new();
    // Before the restart the window was an hour long.
    let mut long = hour_window_dispatcher(&db, &sender, 2);
    let first = long.round(&shutdown).await.unwrap();
    assert_eq!(first.deliveries_held, 4);
    drop(long);
    let held_until = db.next_due_at().await.unwrap().unwrap();
    assert!(held_until > Utc::now() + chrono::Duration::minutes(59));

    let short_config = AlertsConfig {
        digest_window_secs: 30,
        ..config(2)
    };
    let mut short = Dispatcher::new(
        db.clone(),
        Arc::clone(&sender),
        Arc::new(AlertsState::new()),
        &short_config,
    );
    short.round(&shutdown).await.unwrap();
    let due = db.next_due_at().await.unwrap().unwrap();
    assert!(
        due <= held_until - chrono::Duration::minutes(59)
            && due > held_until - chrono::Duration::minutes(61),
        "held until {due}, an hour-long window ended at {held_until}"
    );
}
