//! Queries for the digest windows that the alert dispatcher keeps across restarts.

use chrono::{DateTime, Duration, Utc};
use sqlx::Row;

use super::{from_millis, snowflake_from_db, snowflake_to_db, to_millis, Db};
use crate::alerts::digest::WindowState;
use crate::alerts::Target;

/// SQL condition on a `digest_windows` row `w` that is true while the window still matters,
/// with `?1` the start time in milliseconds at or before which a window has ended. A window
/// matters until it ends. An overflowed window that has ended still matters while its target
/// has pending non-critical deliveries, because those are the held alerts its digest owes.
const WINDOW_IN_USE: &str = "(w.started_at_ms > ?1 OR (w.overflowed = 1 AND EXISTS (
         SELECT 1 FROM alert_deliveries d
         WHERE d.target_kind = w.target_kind AND d.target_id = w.target_id
           AND d.status = 'pending' AND d.critical = 0)))";

/// Returns the start, in milliseconds, at or before which a window of `length` has ended at
/// `now`.
fn ended_start_ms(now: DateTime<Utc>, length: Duration) -> i64 {
    now.checked_sub_signed(length).map_or(i64::MIN, to_millis)
}

impl Db {
    /// Returns the stored windows that still matter at `now` for windows of `length`: those
    /// that have not ended, and ended overflowed windows whose target still has pending
    /// non-critical deliveries, because those deliveries must go out as the window's digest.
    pub async fn digest_windows(
        &self,
        now: DateTime<Utc>,
        length: Duration,
    ) -> Result<Vec<(Target, WindowState)>, sqlx::Error> {
        let sql = format!(
            "SELECT w.target_kind, w.target_id, w.started_at_ms, w.sent_count, w.overflowed,
                 w.digest_last_id
             FROM digest_windows w WHERE {WINDOW_IN_USE}
             ORDER BY w.target_kind, w.target_id"
        );
        let rows = sqlx::query(&sql)
            .bind(ended_start_ms(now, length))
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("target_kind")?;
                let id = snowflake_from_db(row.try_get("target_id")?);
                let target = Target::from_parts(&kind, id).ok_or_else(|| {
                    sqlx::Error::Decode(
                        format!("digest window of {id} has unknown target {kind:?}").into(),
                    )
                })?;
                let sent: i64 = row.try_get("sent_count")?;
                let state = WindowState {
                    start: from_millis(row.try_get("started_at_ms")?),
                    sent: u32::try_from(sent).unwrap_or(u32::MAX),
                    overflowed: row.try_get::<i64, _>("overflowed")? != 0,
                    digest_last_id: row.try_get("digest_last_id")?,
                };
                Ok((target, state))
            })
            .collect()
    }

    /// Inserts the window of `target`, or replaces the one stored. The start is stored in
    /// whole milliseconds.
    pub async fn save_digest_window(
        &self,
        target: Target,
        state: WindowState,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO digest_windows (target_kind, target_id, started_at_ms, sent_count,
                 overflowed, digest_last_id)
             VALUES (?, ?, ?, ?, ?, ?)
             ON CONFLICT (target_kind, target_id) DO UPDATE SET
                 started_at_ms = excluded.started_at_ms, sent_count = excluded.sent_count,
                 overflowed = excluded.overflowed, digest_last_id = excluded.digest_last_id",
        )
        .bind(target.kind())
        .bind(snowflake_to_db(target.id()))
        .bind(to_millis(state.start))
        .bind(i64::from(state.sent))
        .bind(i64::from(state.overflowed))
        .bind(state.digest_last_id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Deletes the window of `target` and returns whether one was stored.
    pub async fn delete_digest_window(&self, target: Target) -> Result<bool, sqlx::Error> {
        let result =
            sqlx::query("DELETE FROM digest_windows WHERE target_kind = ? AND target_id = ?")
                .bind(target.kind())
                .bind(snowflake_to_db(target.id()))
                .execute(self.pool())
                .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Deletes the windows that no longer matter at `now` for windows of `length`, the
    /// complement of [`Db::digest_windows`], and returns how many were deleted.
    pub async fn delete_ended_digest_windows(
        &self,
        now: DateTime<Utc>,
        length: Duration,
    ) -> Result<u64, sqlx::Error> {
        let sql = format!("DELETE FROM digest_windows AS w WHERE NOT {WINDOW_IN_USE}");
        let result = sqlx::query(&sql)
            .bind(ended_start_ms(now, length))
            .execute(self.pool())
            .await?;
        Ok(result.rows_affected())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::alerts::Event;
    use crate::storage::alerts::PollAccount;
    use crate::storage::test_db;

    const ALICE: Target = Target::Dm { user_id: 7 };
    const BOB: Target = Target::Dm { user_id: 8 };
    const CHANNEL: Target = Target::AllAlerts { channel_id: 9 };

    fn length() -> Duration {
        Duration::seconds(60)
    }

    /// Returns `now` rounded down to whole milliseconds, as the table stores it.
    fn stored_time(now: DateTime<Utc>) -> DateTime<Utc> {
        from_millis(to_millis(now))
    }

    /// Stores one pending delivery of a new event for `target`.
    async fn pending_delivery(db: &Db, target: Target, event_id: &str, type_name: &str) {
        let event = Event::from_feed(
            &json!({"id": event_id, "type": type_name, "data": {}}),
            Utc::now(),
        )
        .unwrap();
        let account = PollAccount {
            account_id: "acc_1".into(),
            account_name: "Acme".into(),
        };
        let created = db
            .store_single_alert(&account, &event, target, Utc::now())
            .await
            .unwrap();
        assert_eq!(created, 1);
    }

    #[tokio::test]
    async fn window_save_load_round_trip() {
        let (db, _dir) = test_db().await;
        let now = Utc::now();
        let alice = WindowState {
            start: now,
            sent: 5,
            overflowed: true,
            digest_last_id: None,
        };
        let channel = WindowState {
            start: now - Duration::seconds(10),
            sent: 2,
            overflowed: false,
            digest_last_id: None,
        };
        db.save_digest_window(ALICE, alice).await.unwrap();
        db.save_digest_window(CHANNEL, channel).await.unwrap();

        let loaded = db.digest_windows(now, length()).await.unwrap();
        let expected_alice = WindowState {
            start: stored_time(now),
            ..alice
        };
        let expected_channel = WindowState {
            start: stored_time(channel.start),
            ..channel
        };
        assert_eq!(
            loaded,
            vec![(CHANNEL, expected_channel), (ALICE, expected_alice)]
        );
    }

    #[tokio::test]
    async fn window_save_replaces_stored() {
        let (db, _dir) = test_db().await;
        let now = stored_time(Utc::now());
        let first = WindowState {
            start: now,
            sent: 1,
            overflowed: false,
            digest_last_id: None,
        };
        db.save_digest_window(ALICE, first).await.unwrap();
        let second = WindowState {
            sent: 3,
            overflowed: true,
            digest_last_id: Some(42),
            ..first
        };
        db.save_digest_window(ALICE, second).await.unwrap();

        let loaded = db.digest_windows(now, length()).await.unwrap();
        assert_eq!(loaded, vec![(ALICE, second)]);
    }

    #[tokio::test]
    async fn window_delete_removes_one_target() {
        let (db, _dir) = test_db().await;
        let now = stored_time(Utc::now());
        let state = WindowState {
            start: now,
            sent: 1,
            overflowed: false,
            digest_last_id: None,
        };
        db.save_digest_window(ALICE, state).await.unwrap();
        db.save_digest_window(BOB, state).await.unwrap();

        assert!(db.delete_digest_window(ALICE).await.unwrap());
        assert!(
            !db.delete_digest_window(ALICE).await.unwrap(),
            "already gone"
        );
        let loaded = db.digest_windows(now, length()).await.unwrap();
        assert_eq!(loaded, vec![(BOB, state)]);
    }

    #[tokio::test]
    async fn ended_windows_pruned_unless_digest_owed() {
        let (db, _dir) = test_db().await;
        let now = stored_time(Utc::now());
        let ended = now - Duration::seconds(61);
        let open = WindowState {
            start: now - Duration::seconds(59),
            sent: 5,
            overflowed: true,
            digest_last_id: None,
        };
        let quiet_ended = WindowState {
            start: ended,
            sent: 2,
            overflowed: false,
            digest_last_id: None,
        };
        let owed = WindowState {
            start: ended,
            sent: 5,
            overflowed: true,
            digest_last_id: None,
        };
        let channel_without_pending = owed;
        db.save_digest_window(BOB, open).await.unwrap();
        db.save_digest_window(Target::Dm { user_id: 10 }, quiet_ended)
            .await
            .unwrap();
        db.save_digest_window(ALICE, owed).await.unwrap();
        db.save_digest_window(CHANNEL, channel_without_pending)
            .await
            .unwrap();
        // Alice's held alert is pending, but the channel has only a critical one.
        pending_delivery(&db, ALICE, "evt_held", "delivery_failure").await;
        pending_delivery(&db, CHANNEL, "evt_critical", "service.outage").await;

        let expected = vec![(ALICE, owed), (BOB, open)];
        assert_eq!(db.digest_windows(now, length()).await.unwrap(), expected);
        assert_eq!(
            db.delete_ended_digest_windows(now, length()).await.unwrap(),
            2,
            "the quiet window and the channel's window"
        );
        assert_eq!(
            db.delete_ended_digest_windows(now, length()).await.unwrap(),
            0
        );
        let remaining: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM digest_windows")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(remaining, 2);
        assert_eq!(db.digest_windows(now, length()).await.unwrap(), expected);
    }

    #[tokio::test]
    async fn window_ends_exactly_at_length() {
        let (db, _dir) = test_db().await;
        let start = stored_time(Utc::now());
        let state = WindowState {
            start,
            sent: 1,
            overflowed: false,
            digest_last_id: None,
        };
        db.save_digest_window(ALICE, state).await.unwrap();
        let just_before = start + length() - Duration::milliseconds(1);
        assert_eq!(
            db.digest_windows(just_before, length())
                .await
                .unwrap()
                .len(),
            1
        );
        let end = start + length();
        assert!(db.digest_windows(end, length()).await.unwrap().is_empty());
        assert_eq!(
            db.delete_ended_digest_windows(end, length()).await.unwrap(),
            1
        );
    }

    #[tokio::test]
    async fn huge_window_length_keeps_windows() {
        let (db, _dir) = test_db().await;
        let now = stored_time(Utc::now());
        let state = WindowState {
            start: now,
            sent: 1,
            overflowed: false,
            digest_last_id: None,
        };
        db.save_digest_window(ALICE, state).await.unwrap();
        let length = Duration::MAX;
        assert_eq!(db.digest_windows(now, length).await.unwrap().len(), 1);
        assert_eq!(
            db.delete_ended_digest_windows(now, length).await.unwrap(),
            0
        );
    }
}
