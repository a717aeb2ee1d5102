//! Queries for alerts: preferences, feed cursors, fetched events and the delivery outbox.

use chrono::{DateTime, Utc};
use sqlx::{Row, Sqlite, Transaction};

use super::{from_millis, snowflake_from_db, snowflake_to_db, to_millis, Db};
use crate::alerts::{
    AccountLabel, Event, PreferenceChanges, Preferences, Recipient, Severity, Target,
};

/// An account with at least one active link, as the poller reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollAccount {
    pub account_id: String,
    pub account_name: String,
}

/// One event of a fetched page with the targets routing chose for it.
pub struct RoutedEvent<'a> {
    pub event: &'a Event,
    /// The event as received, stored for rendering and audit.
    pub payload: String,
    pub targets: Vec<Target>,
}

/// Counts of a stored page: repeated events are counted but add nothing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredPage {
    pub new_events: usize,
    pub repeated_events: usize,
    pub new_deliveries: usize,
    /// True when nothing was stored because the account lost its last usable link or its
    /// cursor moved while the page was being fetched.
    pub superseded: bool,
}

/// A delivery that is due, with what is needed to render it.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub id: i64,
    pub event_row_id: i64,
    pub target: Target,
    pub critical: bool,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub event: Event,
    pub account: AccountLabel,
}

/// The poller's view of one account's feed position.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CursorState {
    pub cursor: Option<String>,
    pub last_polled_at: Option<DateTime<Utc>>,
}

const PREFERENCE_COLUMNS: &str = "delivery_failures, opt_outs, inbound_sms, billing, \
     spam_complaints, service, minimum_severity, muted_until_ms, dm_closed";

fn preferences_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Preferences, sqlx::Error> {
    let flag = |name: &str| -> Result<bool, sqlx::Error> { Ok(row.try_get::<i64, _>(name)? != 0) };
    let severity: String = row.try_get("minimum_severity")?;
    Ok(Preferences {
        delivery_failures: flag("delivery_failures")?,
        opt_outs: flag("opt_outs")?,
        inbound_sms: flag("inbound_sms")?,
        billing: flag("billing")?,
        spam_complaints: flag("spam_complaints")?,
        service: flag("service")?,
        minimum_severity: severity
            .parse()
            .map_err(|error: String| sqlx::Error::Decode(error.into()))?,
        muted_until: row
            .try_get::<Option<i64>, _>("muted_until_ms")?
            .map(from_millis),
        dm_closed: flag("dm_closed")?,
    })
}

/// Creates the user's preferences with the defaults unless they exist, inside a caller's
/// transaction, so that relinking keeps earlier settings.
pub(crate) async fn ensure_preferences(
    tx: &mut Transaction<'_, Sqlite>,
    discord_user_id: u64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO alert_preferences (discord_user_id, updated_at_ms) VALUES (?, ?)
         ON CONFLICT (discord_user_id) DO NOTHING",
    )
    .bind(snowflake_to_db(discord_user_id))
    .bind(to_millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Deletes the user's preferences and pending DMs inside a caller's transaction.
pub(crate) async fn delete_user_alerts(
    tx: &mut Transaction<'_, Sqlite>,
    discord_user_id: u64,
) -> Result<(), sqlx::Error> {
    let user = snowflake_to_db(discord_user_id);
    sqlx::query("DELETE FROM alert_preferences WHERE discord_user_id = ?")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "DELETE FROM alert_deliveries
         WHERE target_kind = 'dm' AND target_id = ? AND status = 'pending'",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Removes what a user's link to `account_id` leaves behind once the link is deleted, revoked
/// or moved to another account, inside a caller's transaction. It deletes the user's pending
/// DMs of that account's alerts. When no active or suspended link of the account remains, it
/// also deletes the account's feed cursor, so that a later link starts at the newest event.
pub(crate) async fn forget_user_account(
    tx: &mut Transaction<'_, Sqlite>,
    discord_user_id: u64,
    account_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM alert_deliveries
         WHERE target_kind = 'dm' AND target_id = ? AND status = 'pending'
           AND event_row_id IN (SELECT id FROM alert_events WHERE account_id = ?)",
    )
    .bind(snowflake_to_db(discord_user_id))
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "DELETE FROM alert_cursors WHERE account_id = ?1
           AND NOT EXISTS (SELECT 1 FROM links WHERE account_id = ?1 AND status != 'revoked')",
    )
    .bind(account_id)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Db {
    pub async fn alert_preferences(
        &self,
        discord_user_id: u64,
    ) -> Result<Option<Preferences>, sqlx::Error> {
        let sql =
            format!("SELECT {PREFERENCE_COLUMNS} FROM alert_preferences WHERE discord_user_id = ?");
        sqlx::query(&sql)
            .bind(snowflake_to_db(discord_user_id))
            .fetch_optional(self.pool())
            .await?
            .map(|row| preferences_from_row(&row))
            .transpose()
    }

    /// Applies the given changes and returns the result, or `None` when the user has no
    /// preferences because they are not linked.
    pub async fn update_alert_preferences(
        &self,
        discord_user_id: u64,
        changes: &PreferenceChanges,
        now: DateTime<Utc>,
    ) -> Result<Option<Preferences>, sqlx::Error> {
        let flag = |value: Option<bool>| value.map(i64::from);
        sqlx::query(
            "UPDATE alert_preferences SET
                 delivery_failures = COALESCE(?, delivery_failures),
                 opt_outs = COALESCE(?, opt_outs),
                 inbound_sms = COALESCE(?, inbound_sms),
                 billing = COALESCE(?, billing),
                 spam_complaints = COALESCE(?, spam_complaints),
                 service = COALESCE(?, service),
                 minimum_severity = COALESCE(?, minimum_severity),
                 updated_at_ms = ?
             WHERE discord_user_id = ?",
        )
        .bind(flag(changes.delivery_failures))
        .bind(flag(changes.opt_outs))
        .bind(flag(changes.inbound_sms))
        .bind(flag(changes.billing))
        .bind(flag(changes.spam_complaints))
        .bind(flag(changes.service))
        .bind(changes.minimum_severity.map(Severity::as_str))
        .bind(to_millis(now))
        .bind(snowflake_to_db(discord_user_id))
        .execute(self.pool())
        .await?;
        self.alert_preferences(discord_user_id).await
    }

    /// Sets or clears the mute end; returns false when the user has no preferences.
    pub async fn set_alert_mute(
        &self,
        discord_user_id: u64,
        until: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE alert_preferences SET muted_until_ms = ?, updated_at_ms = ?
             WHERE discord_user_id = ?",
        )
        .bind(until.map(to_millis))
        .bind(to_millis(now))
        .bind(snowflake_to_db(discord_user_id))
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Sets the DMs-closed flag and returns whether it changed.
    pub async fn set_dm_closed(
        &self,
        discord_user_id: u64,
        closed: bool,
    ) -> Result<bool, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE alert_preferences SET dm_closed = ?
             WHERE discord_user_id = ? AND dm_closed != ?",
        )
        .bind(i64::from(closed))
        .bind(snowflake_to_db(discord_user_id))
        .bind(i64::from(closed))
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected() == 1)
    }

    /// Returns the accounts with at least one active link.
    pub async fn accounts_to_poll(&self) -> Result<Vec<PollAccount>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT account_id, MAX(account_name) AS account_name FROM links
             WHERE status = 'active' GROUP BY account_id ORDER BY account_id",
        )
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PollAccount {
                    account_id: row.try_get("account_id")?,
                    account_name: row.try_get("account_name")?,
                })
            })
            .collect()
    }

    /// Returns the accounts whose links are all suspended or revoked, with at least one
    /// suspended, and whose last poll attempt was before `last_polled_before` (or never), so
    /// that the poller can check at a slow pace whether the suspension ended.
    pub async fn suspended_accounts_due(
        &self,
        last_polled_before: DateTime<Utc>,
    ) -> Result<Vec<PollAccount>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT l.account_id, MAX(l.account_name) AS account_name FROM links l
             LEFT JOIN alert_cursors c ON c.account_id = l.account_id
             WHERE c.last_polled_at_ms IS NULL OR c.last_polled_at_ms < ?
             GROUP BY l.account_id
             HAVING SUM(l.status = 'active') = 0 AND SUM(l.status = 'suspended') > 0
             ORDER BY l.account_id",
        )
        .bind(to_millis(last_polled_before))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(PollAccount {
                    account_id: row.try_get("account_id")?,
                    account_name: row.try_get("account_name")?,
                })
            })
            .collect()
    }

    /// Returns the ids of the users with a suspended link to the account, oldest link first.
    pub async fn suspended_link_users(&self, account_id: &str) -> Result<Vec<u64>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT discord_user_id FROM links WHERE account_id = ? AND status = 'suspended'
             ORDER BY linked_at_ms, discord_user_id",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(snowflake_from_db).collect())
    }

    /// Marks every suspended link of the account active again, after a call with one of its
    /// keys succeeded, and returns the number of links changed.
    pub async fn reactivate_account_links(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE links SET status = 'active', status_changed_at_ms = ?
             WHERE account_id = ? AND status = 'suspended'",
        )
        .bind(to_millis(now))
        .bind(account_id)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Returns the ids of the users with an active link to the account, oldest link first, so
    /// the poller tries their keys in a stable order.
    pub async fn active_link_users(&self, account_id: &str) -> Result<Vec<u64>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT discord_user_id FROM links WHERE account_id = ? AND status = 'active'
             ORDER BY linked_at_ms, discord_user_id",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(snowflake_from_db).collect())
    }

    /// Returns the users linked to the account (revoked links excluded) with their
    /// preferences; a user without a preferences row gets the defaults.
    pub async fn account_recipients(
        &self,
        account_id: &str,
    ) -> Result<Vec<Recipient>, sqlx::Error> {
        let sql = format!(
            "SELECT l.discord_user_id AS user_id, p.discord_user_id AS has_preferences, {}
             FROM links l LEFT JOIN alert_preferences p ON p.discord_user_id = l.discord_user_id
             WHERE l.account_id = ? AND l.status != 'revoked' ORDER BY l.discord_user_id",
            PREFERENCE_COLUMNS
                .split(", ")
                .map(|column| format!("p.{column}"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let rows = sqlx::query(&sql)
            .bind(account_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|row| {
                let has_preferences: Option<i64> = row.try_get("has_preferences")?;
                let preferences = match has_preferences {
                    Some(_) => preferences_from_row(row)?,
                    None => Preferences::default(),
                };
                Ok(Recipient {
                    user_id: snowflake_from_db(row.try_get("user_id")?),
                    preferences,
                })
            })
            .collect()
    }

    /// Marks every active link of the account suspended, after the feed returned 403
    /// suspended. The account is polled again once a command with one of its keys succeeds.
    pub async fn suspend_account_links(
        &self,
        account_id: &str,
        now: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE links SET status = 'suspended', status_changed_at_ms = ?
             WHERE account_id = ? AND status = 'active'",
        )
        .bind(to_millis(now))
        .bind(account_id)
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    pub async fn alert_cursor(&self, account_id: &str) -> Result<CursorState, sqlx::Error> {
        let row =
            sqlx::query("SELECT cursor, last_polled_at_ms FROM alert_cursors WHERE account_id = ?")
                .bind(account_id)
                .fetch_optional(self.pool())
                .await?;
        match row {
            None => Ok(CursorState::default()),
            Some(row) => Ok(CursorState {
                cursor: row.try_get("cursor")?,
                last_polled_at: row
                    .try_get::<Option<i64>, _>("last_polled_at_ms")?
                    .map(from_millis),
            }),
        }
    }

    /// Clears the account's feed cursor after Trackly rejected it, so that the next poll starts
    /// at the newest event, and records `error`.
    pub async fn reset_alert_cursor(
        &self,
        account_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO alert_cursors (account_id, cursor, last_polled_at_ms, last_error)
             VALUES (?, NULL, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET cursor = NULL,
                 last_polled_at_ms = excluded.last_polled_at_ms, last_error = excluded.last_error",
        )
        .bind(account_id)
        .bind(to_millis(now))
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Records a poll that failed before any page was stored.
    pub async fn record_poll_error(
        &self,
        account_id: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO alert_cursors (account_id, last_polled_at_ms, last_error) VALUES (?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET last_polled_at_ms = excluded.last_polled_at_ms,
                 last_error = excluded.last_error",
        )
        .bind(account_id)
        .bind(to_millis(now))
        .bind(error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Stores one fetched page: the new events, their deliveries and the cursor advance, in one
    /// immediate transaction, so a crash leaves either all of it or none. An event id already
    /// stored for the account adds nothing.
    ///
    /// `read_from` is the cursor the page was fetched after. The page is stored only while the
    /// account still has an active or suspended link and its cursor is still `read_from`.
    /// Otherwise nothing changes and the result is marked superseded, so that a poll that
    /// overlapped the removal of the account's last link cannot write the old cursor back.
    pub async fn store_fetched_page(
        &self,
        account: &PollAccount,
        events: &[RoutedEvent<'_>],
        read_from: Option<&str>,
        next_cursor: &str,
        now: DateTime<Utc>,
    ) -> Result<StoredPage, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let mut stored = StoredPage::default();
        let current: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM links WHERE account_id = ?1 AND status != 'revoked')
                 AND (SELECT cursor FROM alert_cursors WHERE account_id = ?1) IS ?2",
        )
        .bind(&account.account_id)
        .bind(read_from)
        .fetch_one(&mut *tx)
        .await?;
        if current == 0 {
            tx.rollback().await?;
            stored.superseded = true;
            return Ok(stored);
        }
        let now_ms = to_millis(now);
        for routed in events {
            let event = routed.event;
            let row_id: Option<i64> = sqlx::query_scalar(
                "INSERT INTO alert_events (account_id, account_name, event_id, event_type, severity,
                     occurred_at_ms, payload, received_at_ms)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                 ON CONFLICT (account_id, event_id) DO NOTHING
                 RETURNING id",
            )
            .bind(&account.account_id)
            .bind(&account.account_name)
            .bind(&event.id)
            .bind(&event.type_name)
            .bind(event.severity.as_str())
            .bind(to_millis(event.occurred_at))
            .bind(&routed.payload)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
            let Some(row_id) = row_id else {
                stored.repeated_events += 1;
                continue;
            };
            stored.new_events += 1;
            let critical = event.severity == Severity::Critical;
            for target in &routed.targets {
                stored.new_deliveries +=
                    insert_delivery(&mut tx, row_id, *target, critical, now).await?;
            }
        }
        sqlx::query(
            "INSERT INTO alert_cursors (account_id, cursor, last_polled_at_ms, last_error)
             VALUES (?, ?, ?, NULL)
             ON CONFLICT (account_id) DO UPDATE SET cursor = excluded.cursor,
                 last_polled_at_ms = excluded.last_polled_at_ms, last_error = NULL",
        )
        .bind(&account.account_id)
        .bind(next_cursor)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(stored)
    }

    /// Stores a synthetic event for one recipient, as `/alerts test` does, and returns the
    /// number of deliveries created (0 when the event id was used before).
    pub async fn store_single_alert(
        &self,
        account: &PollAccount,
        event: &Event,
        target: Target,
        now: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let payload = serde_json::json!({
            "id": event.id, "type": event.type_name, "severity": event.severity.as_str(),
            "occurred_at": event.occurred_at.to_rfc3339(), "data": event.data,
        })
        .to_string();
        let row_id: Option<i64> = sqlx::query_scalar(
            "INSERT INTO alert_events (account_id, account_name, event_id, event_type, severity,
                 occurred_at_ms, payload, received_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)
             ON CONFLICT (account_id, event_id) DO NOTHING RETURNING id",
        )
        .bind(&account.account_id)
        .bind(&account.account_name)
        .bind(&event.id)
        .bind(&event.type_name)
        .bind(event.severity.as_str())
        .bind(to_millis(event.occurred_at))
        .bind(payload)
        .bind(to_millis(now))
        .fetch_optional(&mut *tx)
        .await?;
        let created = match row_id {
            Some(row_id) => {
                let critical = event.severity == Severity::Critical;
                insert_delivery(&mut tx, row_id, target, critical, now).await?
            }
            None => 0,
        };
        tx.commit().await?;
        Ok(created)
    }

    /// Returns the targets with pending deliveries due at `now`, the one with the oldest due
    /// delivery first.
    pub async fn due_targets(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<Target>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT target_kind, target_id, MIN(id) AS oldest FROM alert_deliveries
             WHERE status = 'pending' AND next_attempt_at_ms <= ?
             GROUP BY target_kind, target_id ORDER BY oldest LIMIT ?",
        )
        .bind(to_millis(now))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("target_kind")?;
                Target::from_parts(&kind, snowflake_from_db(row.try_get("target_id")?)).ok_or_else(
                    || sqlx::Error::Decode(format!("unknown delivery target {kind:?}").into()),
                )
            })
            .collect()
    }

    /// Returns pending deliveries due at `now`, oldest first.
    pub async fn due_deliveries(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, sqlx::Error> {
        self.select_due(None, now, limit).await
    }

    /// Returns the pending deliveries of one target due at `now`, oldest first.
    pub async fn due_deliveries_for(
        &self,
        target: Target,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, sqlx::Error> {
        self.select_due(Some(target), now, limit).await
    }

    async fn select_due(
        &self,
        target: Option<Target>,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<DueDelivery>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT d.id, d.event_row_id, d.target_kind, d.target_id, d.critical, d.attempts,
                    d.created_at_ms, e.account_id, e.account_name, e.payload, e.received_at_ms
             FROM alert_deliveries d JOIN alert_events e ON e.id = d.event_row_id
             WHERE d.status = 'pending' AND d.next_attempt_at_ms <= ?1
               AND (?2 IS NULL OR (d.target_kind = ?2 AND d.target_id = ?3))
             ORDER BY d.id LIMIT ?4",
        )
        .bind(to_millis(now))
        .bind(target.map(Target::kind))
        .bind(target.map(|target| snowflake_to_db(target.id())))
        .bind(i64::from(limit))
        .fetch_all(self.pool())
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let kind: String = row.try_get("target_kind")?;
            let target = Target::from_parts(&kind, snowflake_from_db(row.try_get("target_id")?))
                .ok_or_else(|| {
                    sqlx::Error::Decode(format!("delivery {id} has unknown target {kind:?}").into())
                })?;
            let payload: String = row.try_get("payload")?;
            let value: serde_json::Value = serde_json::from_str(&payload)
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
            let event = Event::from_feed(&value, from_millis(row.try_get("received_at_ms")?))
                .map_err(|error| sqlx::Error::Decode(Box::new(error)))?;
            due.push(DueDelivery {
                id,
                event_row_id: row.try_get("event_row_id")?,
                target,
                critical: row.try_get::<i64, _>("critical")? != 0,
                attempts: u32::try_from(row.try_get::<i64, _>("attempts")?).unwrap_or(u32::MAX),
                created_at: from_millis(row.try_get("created_at_ms")?),
                event,
                account: AccountLabel {
                    id: row.try_get("account_id")?,
                    name: row.try_get("account_name")?,
                },
            });
        }
        Ok(due)
    }

    /// Marks deliveries sent after Discord confirmed the message that carried them.
    pub async fn mark_deliveries_sent(
        &self,
        ids: &[i64],
        message_id: u64,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_deliveries SET status = 'sent', sent_at_ms = ?, message_id = ?,
                     attempts = attempts + 1, last_error = NULL
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(to_millis(now))
            .bind(snowflake_to_db(message_id))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Keeps deliveries pending for another attempt at `retry_at`.
    pub async fn schedule_retry(
        &self,
        ids: &[i64],
        retry_at: DateTime<Utc>,
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_deliveries SET attempts = attempts + 1, next_attempt_at_ms = ?,
                     last_error = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(to_millis(retry_at))
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Moves deliveries to `failed` for good; they are never retried.
    pub async fn mark_deliveries_failed(
        &self,
        ids: &[i64],
        error: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_deliveries SET status = 'failed', attempts = attempts + 1,
                     last_error = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(error)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Moves deliveries to `skipped`: the recipient no longer wants them, so they are never sent.
    pub async fn mark_deliveries_skipped(
        &self,
        ids: &[i64],
        reason: &str,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_deliveries SET status = 'skipped', last_error = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(reason)
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Fails DMs the user cannot receive (50007) and queues an account-channel copy of each
    /// alert whose account has a channel, in one transaction, so that a crash cannot lose both.
    /// Returns the number of copies created; a channel that already has the alert gets none.
    pub async fn fail_dms_with_fallback(
        &self,
        deliveries: &[DueDelivery],
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<usize, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let mut copies = 0;
        for delivery in deliveries {
            let updated = sqlx::query(
                "UPDATE alert_deliveries SET status = 'failed', attempts = attempts + 1,
                     last_error = ?
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(error)
            .bind(delivery.id)
            .execute(&mut *tx)
            .await?;
            if updated.rows_affected() == 0 {
                continue;
            }
            let channel: Option<i64> =
                sqlx::query_scalar("SELECT channel_id FROM account_channels WHERE account_id = ?")
                    .bind(&delivery.account.id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(channel) = channel {
                let target = Target::AccountChannel {
                    channel_id: snowflake_from_db(channel),
                };
                copies += insert_delivery(
                    &mut tx,
                    delivery.event_row_id,
                    target,
                    delivery.critical,
                    now,
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(copies)
    }

    /// Delays pending deliveries that are due earlier than `until`, without counting an
    /// attempt, as the digest does with alerts it holds for the end of a window.
    pub async fn hold_deliveries(
        &self,
        ids: &[i64],
        until: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        for id in ids {
            sqlx::query(
                "UPDATE alert_deliveries SET next_attempt_at_ms = MAX(next_attempt_at_ms, ?)
                 WHERE id = ? AND status = 'pending'",
            )
            .bind(to_millis(until))
            .bind(id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Moves the pending non-critical deliveries of `target` that are due after `end` to `end`.
    pub async fn release_held_after(
        &self,
        target: Target,
        end: DateTime<Utc>,
    ) -> Result<u64, sqlx::Error> {
        let result = sqlx::query(
            "UPDATE alert_deliveries SET next_attempt_at_ms = ?1
             WHERE target_kind = ?2 AND target_id = ?3 AND status = 'pending' AND critical = 0
               AND next_attempt_at_ms > ?1",
        )
        .bind(to_millis(end))
        .bind(target.kind())
        .bind(snowflake_to_db(target.id()))
        .execute(self.pool())
        .await?;
        Ok(result.rows_affected())
    }

    /// Returns whether `target` has a pending non-critical delivery created before `before`.
    pub async fn pending_non_critical_before(
        &self,
        target: Target,
        before: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let found: i64 = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM alert_deliveries
             WHERE target_kind = ? AND target_id = ? AND status = 'pending' AND critical = 0
               AND created_at_ms < ?)",
        )
        .bind(target.kind())
        .bind(snowflake_to_db(target.id()))
        .bind(to_millis(before))
        .fetch_one(self.pool())
        .await?;
        Ok(found != 0)
    }

    /// Returns the number of pending deliveries.
    pub async fn pending_delivery_count(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("SELECT COUNT(*) FROM alert_deliveries WHERE status = 'pending'")
            .fetch_one(self.pool())
            .await
    }

    /// Returns when the next pending delivery becomes due, if any is pending.
    pub async fn next_due_at(&self) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
        let next: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(next_attempt_at_ms) FROM alert_deliveries WHERE status = 'pending'",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(next.map(from_millis))
    }
}

async fn insert_delivery(
    tx: &mut Transaction<'_, Sqlite>,
    event_row_id: i64,
    target: Target,
    critical: bool,
    now: DateTime<Utc>,
) -> Result<usize, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO alert_deliveries (event_row_id, target_kind, target_id, critical, status,
             next_attempt_at_ms, created_at_ms)
         VALUES (?, ?, ?, ?, 'pending', ?, ?)
         ON CONFLICT (event_row_id, target_kind, target_id) DO NOTHING",
    )
    .bind(event_row_id)
    .bind(target.kind())
    .bind(snowflake_to_db(target.id()))
    .bind(i64::from(critical))
    .bind(to_millis(now))
    .bind(to_millis(now))
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::SealedKey;
    use crate::storage::{test_db, NewLink};
    use serde_json::json;

    fn event(id: &str, type_name: &str) -> Event {
        Event::from_feed(
            &json!({"id": id, "type": type_name, "data": {}}),
            Utc::now(),
        )
        .unwrap()
    }

    fn account() -> PollAccount {
        PollAccount {
            account_id: "acc_1".into(),
            account_name: "Acme".into(),
        }
    }

    async fn link(db: &Db, user: u64, account_id: &str) {
        let key = SealedKey {
            key_id: "k1".into(),
            bytes: vec![1; 40],
        };
        db.upsert_link(&NewLink {
            discord_user_id: user,
            account_id,
            account_name: "Acme",
            role: "owner",
            sealed_key: &key,
            key_masked: "trk_…0000",
            now: Utc::now(),
        })
        .await
        .unwrap();
    }

    #[tokio::test]
    async fn repeated_event_adds_no_delivery() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        let first = event("evt_1", "delivery_failure");
        let targets = vec![
            Target::Dm { user_id: 7 },
            Target::AllAlerts { channel_id: 9 },
        ];
        let page = [RoutedEvent {
            event: &first,
            payload: json!({"id": "evt_1", "type": "delivery_failure"}).to_string(),
            targets: targets.clone(),
        }];
        let stored = db
            .store_fetched_page(&account(), &page, None, "c_1", Utc::now())
            .await
            .unwrap();
        assert_eq!(stored.new_events, 1);
        assert_eq!(stored.new_deliveries, 2);

        let again = db
            .store_fetched_page(&account(), &page, Some("c_1"), "c_2", Utc::now())
            .await
            .unwrap();
        assert_eq!(again.new_events, 0);
        assert_eq!(again.repeated_events, 1);
        assert_eq!(again.new_deliveries, 0);
        assert_eq!(db.pending_delivery_count().await.unwrap(), 2);
        assert_eq!(
            db.alert_cursor("acc_1").await.unwrap().cursor.as_deref(),
            Some("c_2")
        );
    }

    #[tokio::test]
    async fn due_deliveries_round_trip_and_sent() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        let first = event("evt_1", "service.outage");
        let page = [RoutedEvent {
            event: &first,
            payload: json!({"id": "evt_1", "type": "service.outage", "data": {"component": "api"}})
                .to_string(),
            targets: vec![Target::AllAlerts { channel_id: 9 }],
        }];
        db.store_fetched_page(&account(), &page, None, "c_1", Utc::now())
            .await
            .unwrap();
        let due = db.due_deliveries(Utc::now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert!(due[0].critical);
        assert_eq!(due[0].target, Target::AllAlerts { channel_id: 9 });
        assert_eq!(due[0].event.data["component"], "api");
        assert_eq!(due[0].account.name, "Acme");

        db.mark_deliveries_sent(&[due[0].id], 55, Utc::now())
            .await
            .unwrap();
        assert!(db.due_deliveries(Utc::now(), 10).await.unwrap().is_empty());
        assert_eq!(db.pending_delivery_count().await.unwrap(), 0);
    }

    #[tokio::test]
    async fn retry_delays_and_failed_stops() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        let first = event("evt_1", "opt_out");
        let page = [RoutedEvent {
            event: &first,
            payload: json!({"id": "evt_1", "type": "opt_out"}).to_string(),
            targets: vec![Target::Dm { user_id: 1 }, Target::Dm { user_id: 2 }],
        }];
        let now = Utc::now();
        db.store_fetched_page(&account(), &page, None, "c_1", now)
            .await
            .unwrap();
        let due = db.due_deliveries(now, 10).await.unwrap();
        db.schedule_retry(
            &[due[0].id],
            now + chrono::Duration::seconds(30),
            "HTTP 503",
        )
        .await
        .unwrap();
        db.mark_deliveries_failed(&[due[1].id], "missing access")
            .await
            .unwrap();
        assert!(db.due_deliveries(now, 10).await.unwrap().is_empty());
        let later = db
            .due_deliveries(now + chrono::Duration::seconds(31), 10)
            .await
            .unwrap();
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].attempts, 1);
    }

    #[tokio::test]
    async fn link_creates_defaults_and_relink_keeps_them() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        assert_eq!(
            db.alert_preferences(7).await.unwrap(),
            Some(Preferences::default())
        );
        let changes = PreferenceChanges {
            inbound_sms: Some(true),
            ..PreferenceChanges::default()
        };
        db.update_alert_preferences(7, &changes, Utc::now())
            .await
            .unwrap();
        link(&db, 7, "acc_2").await;
        assert!(db.alert_preferences(7).await.unwrap().unwrap().inbound_sms);
    }

    #[tokio::test]
    async fn preference_update_changes_only_given() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        let none = PreferenceChanges::default();
        // Each step sets one option to the opposite of its default. Every other setting must keep
        // what the earlier steps left. A step is the option's name, the change, and what the
        // change does to the expected preferences.
        type Step = (&'static str, PreferenceChanges, fn(&mut Preferences));
        let steps: [Step; 7] = [
            (
                "delivery_failures",
                PreferenceChanges {
                    delivery_failures: Some(false),
                    ..none.clone()
                },
                |p| p.delivery_failures = false,
            ),
            (
                "opt_outs",
                PreferenceChanges {
                    opt_outs: Some(false),
                    ..none.clone()
                },
                |p| p.opt_outs = false,
            ),
            (
                "inbound_sms",
                PreferenceChanges {
                    inbound_sms: Some(true),
                    ..none.clone()
                },
                |p| p.inbound_sms = true,
            ),
            (
                "billing",
                PreferenceChanges {
                    billing: Some(false),
                    ..none.clone()
                },
                |p| p.billing = false,
            ),
            (
                "spam_complaints",
                PreferenceChanges {
                    spam_complaints: Some(false),
                    ..none.clone()
                },
                |p| p.spam_complaints = false,
            ),
            (
                "service",
                PreferenceChanges {
                    service: Some(false),
                    ..none.clone()
                },
                |p| p.service = false,
            ),
            (
                "minimum_severity",
                PreferenceChanges {
                    minimum_severity: Some(Severity::High),
                    ..none.clone()
                },
                |p| p.minimum_severity = Severity::High,
            ),
        ];
        // A mute and the DMs-closed mark are not options of `/alerts configure`, so they stay.
        let until = from_millis(to_millis(Utc::now() + chrono::Duration::hours(1)));
        assert!(db.set_alert_mute(7, Some(until), Utc::now()).await.unwrap());
        assert!(db.set_dm_closed(7, true).await.unwrap());
        let mut expected = Preferences {
            muted_until: Some(until),
            dm_closed: true,
            ..Preferences::default()
        };
        for (option, changes, change_expected) in steps {
            change_expected(&mut expected);
            let saved = db
                .update_alert_preferences(7, &changes, Utc::now())
                .await
                .unwrap();
            assert_eq!(saved.as_ref(), Some(&expected), "after setting {option}");
            assert_eq!(
                db.alert_preferences(7).await.unwrap().as_ref(),
                Some(&expected),
                "stored after setting {option}"
            );
        }

        let unchanged = db.update_alert_preferences(7, &none, Utc::now()).await;
        assert_eq!(
            unchanged.unwrap(),
            Some(expected),
            "an empty change keeps every setting"
        );
        let unlinked = db.update_alert_preferences(8, &none, Utc::now()).await;
        assert_eq!(
            unlinked.unwrap(),
            None,
            "a user without a link has no preferences"
        );
    }

    #[tokio::test]
    async fn unlink_deletes_preferences_and_pending_dms() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        let first = event("evt_1", "delivery_failure");
        let page = [RoutedEvent {
            event: &first,
            payload: json!({"id": "evt_1", "type": "delivery_failure"}).to_string(),
            targets: vec![
                Target::Dm { user_id: 7 },
                Target::AllAlerts { channel_id: 9 },
            ],
        }];
        db.store_fetched_page(&account(), &page, None, "c_1", Utc::now())
            .await
            .unwrap();
        db.delete_link(7).await.unwrap();
        assert_eq!(db.alert_preferences(7).await.unwrap(), None);
        let due = db.due_deliveries(Utc::now(), 10).await.unwrap();
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].target, Target::AllAlerts { channel_id: 9 });
    }

    #[tokio::test]
    async fn recipients_and_poll_accounts() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        link(&db, 8, "acc_1").await;
        link(&db, 9, "acc_2").await;
        db.set_link_status(9, crate::storage::LinkStatus::Revoked, Utc::now())
            .await
            .unwrap();
        let accounts = db.accounts_to_poll().await.unwrap();
        assert_eq!(accounts.len(), 1);
        assert_eq!(accounts[0].account_id, "acc_1");
        let recipients = db.account_recipients("acc_1").await.unwrap();
        assert_eq!(
            recipients.iter().map(|r| r.user_id).collect::<Vec<_>>(),
            [7, 8]
        );
        assert!(db.account_recipients("acc_2").await.unwrap().is_empty());

        assert_eq!(
            db.suspend_account_links("acc_1", Utc::now()).await.unwrap(),
            2
        );
        assert!(db.accounts_to_poll().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn dm_closed_flag_reports_change() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        assert!(db.set_dm_closed(7, true).await.unwrap());
        assert!(!db.set_dm_closed(7, true).await.unwrap());
        assert!(db.alert_preferences(7).await.unwrap().unwrap().dm_closed);
        assert!(db.set_dm_closed(7, false).await.unwrap());
    }

    async fn store_dm_page(db: &Db, user: u64) {
        let first = event("evt_1", "delivery_failure");
        let page = [RoutedEvent {
            event: &first,
            payload: json!({"id": "evt_1", "type": "delivery_failure"}).to_string(),
            targets: vec![
                Target::Dm { user_id: user },
                Target::AllAlerts { channel_id: 9 },
            ],
        }];
        db.store_fetched_page(&account(), &page, None, "c_1", Utc::now())
            .await
            .unwrap();
    }

    async fn pending_targets(db: &Db) -> Vec<Target> {
        db.due_deliveries(Utc::now(), 10)
            .await
            .unwrap()
            .into_iter()
            .map(|delivery| delivery.target)
            .collect()
    }

    #[tokio::test]
    async fn relink_elsewhere_drops_old_dms() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        store_dm_page(&db, 7).await;
        link(&db, 7, "acc_1").await;
        assert_eq!(
            pending_targets(&db).await.len(),
            2,
            "same account keeps DMs"
        );

        link(&db, 7, "acc_2").await;
        assert_eq!(
            pending_targets(&db).await,
            [Target::AllAlerts { channel_id: 9 }]
        );
    }

    #[tokio::test]
    async fn revocation_drops_pending_dms() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        store_dm_page(&db, 7).await;
        db.set_link_status(7, crate::storage::LinkStatus::Suspended, Utc::now())
            .await
            .unwrap();
        assert_eq!(pending_targets(&db).await.len(), 2, "suspension keeps DMs");

        assert!(db
            .set_link_status(7, crate::storage::LinkStatus::Revoked, Utc::now())
            .await
            .unwrap());
        assert_eq!(
            pending_targets(&db).await,
            [Target::AllAlerts { channel_id: 9 }]
        );
    }

    #[tokio::test]
    async fn last_link_removal_deletes_cursor() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        link(&db, 8, "acc_1").await;
        link(&db, 9, "acc_1").await;
        store_dm_page(&db, 7).await;
        let cursor = || async { db.alert_cursor("acc_1").await.unwrap().cursor };

        db.delete_link(7).await.unwrap();
        assert_eq!(cursor().await.as_deref(), Some("c_1"));
        link(&db, 8, "acc_2").await;
        assert_eq!(cursor().await.as_deref(), Some("c_1"));
        db.set_link_status(9, crate::storage::LinkStatus::Revoked, Utc::now())
            .await
            .unwrap();
        assert_eq!(cursor().await, None, "no usable link of acc_1 is left");
    }

    #[tokio::test]
    async fn page_of_overlapping_poll_is_dropped() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        store_dm_page(&db, 7).await;
        let late = event("evt_late", "delivery_failure");
        let page = [RoutedEvent {
            event: &late,
            payload: json!({"id": "evt_late", "type": "delivery_failure"}).to_string(),
            targets: vec![Target::Dm { user_id: 7 }],
        }];

        // The poll read c_1, then the last link went away and the cursor with it.
        db.delete_link(7).await.unwrap();
        let stored = db
            .store_fetched_page(&account(), &page, Some("c_1"), "c_2", Utc::now())
            .await
            .unwrap();
        assert!(stored.superseded);
        assert_eq!(stored.new_events, 0);
        assert_eq!(db.alert_cursor("acc_1").await.unwrap().cursor, None);

        // Relinked before the late page arrived: the cursor no longer matches what the poll
        // read, so the new link still starts at the newest event.
        link(&db, 7, "acc_1").await;
        let stored = db
            .store_fetched_page(&account(), &page, Some("c_1"), "c_2", Utc::now())
            .await
            .unwrap();
        assert!(stored.superseded);
        assert_eq!(db.alert_cursor("acc_1").await.unwrap().cursor, None);

        let stored = db
            .store_fetched_page(&account(), &page, None, "c_3", Utc::now())
            .await
            .unwrap();
        assert!(!stored.superseded);
        assert_eq!(stored.new_deliveries, 1);
        assert_eq!(
            db.alert_cursor("acc_1").await.unwrap().cursor.as_deref(),
            Some("c_3")
        );
    }

    #[tokio::test]
    async fn unlink_of_last_link_deletes_cursor() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        store_dm_page(&db, 7).await;
        db.delete_link(7).await.unwrap();
        assert_eq!(
            db.alert_cursor("acc_1").await.unwrap(),
            CursorState::default()
        );
    }

    #[tokio::test]
    async fn skipped_deliveries_leave_outbox() {
        let (db, _dir) = test_db().await;
        link(&db, 7, "acc_1").await;
        store_dm_page(&db, 7).await;
        let due = db.due_deliveries(Utc::now(), 10).await.unwrap();
        db.mark_deliveries_skipped(&[due[0].id], "muted")
            .await
            .unwrap();
        assert_eq!(db.pending_delivery_count().await.unwrap(), 1);
        let status: String = sqlx::query_scalar("SELECT status FROM alert_deliveries WHERE id = ?")
            .bind(due[0].id)
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(status, "skipped");
    }
}
