//! Queries for account links, account channels and link attempts.

use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{from_millis, snowflake_from_db, snowflake_to_db, to_millis, Db};
use crate::crypto::SealedKey;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkStatus {
    Active,
    /// Trackly returned 401 for the key: it was deleted or rotated.
    Revoked,
    /// Trackly returned 403 suspended for the account.
    Suspended,
}

impl LinkStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkStatus::Active => "active",
            LinkStatus::Revoked => "revoked",
            LinkStatus::Suspended => "suspended",
        }
    }

    fn parse(text: &str) -> Result<LinkStatus, sqlx::Error> {
        match text {
            "active" => Ok(LinkStatus::Active),
            "revoked" => Ok(LinkStatus::Revoked),
            "suspended" => Ok(LinkStatus::Suspended),
            other => Err(sqlx::Error::Decode(
                format!("unknown link status {other:?}").into(),
            )),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Link {
    pub discord_user_id: u64,
    pub account_id: String,
    pub account_name: String,
    pub role: String,
    pub sealed_key: SealedKey,
    pub key_masked: String,
    pub status: LinkStatus,
    pub linked_at: DateTime<Utc>,
    pub validated_at: DateTime<Utc>,
}

pub struct NewLink<'a> {
    pub discord_user_id: u64,
    pub account_id: &'a str,
    pub account_name: &'a str,
    pub role: &'a str,
    pub sealed_key: &'a SealedKey,
    pub key_masked: &'a str,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountChannel {
    pub account_id: String,
    pub guild_id: u64,
    pub channel_id: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The key was malformed or Trackly rejected it: counts against the limit.
    Failed,
    Succeeded,
    /// Trackly could not tell (unavailable, timed out): does not count against the limit.
    Inconclusive,
}

impl AttemptOutcome {
    fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Inconclusive => "inconclusive",
        }
    }
}

/// The result of asking for a link-attempt slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptSlot {
    Granted {
        attempt_id: i64,
    },
    /// Too many failures in the window; a slot frees up at `retry_at`.
    Limited {
        retry_at: DateTime<Utc>,
    },
}

const LINK_COLUMNS: &str = "discord_user_id, account_id, account_name, role, key_id, key_sealed, \
     key_masked, status, linked_at_ms, validated_at_ms";

fn link_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<Link, sqlx::Error> {
    Ok(Link {
        discord_user_id: snowflake_from_db(row.try_get("discord_user_id")?),
        account_id: row.try_get("account_id")?,
        account_name: row.try_get("account_name")?,
        role: row.try_get("role")?,
        sealed_key: SealedKey {
            key_id: row.try_get("key_id")?,
            bytes: row.try_get("key_sealed")?,
        },
        key_masked: row.try_get("key_masked")?,
        status: LinkStatus::parse(row.try_get("status")?)?,
        linked_at: from_millis(row.try_get("linked_at_ms")?),
        validated_at: from_millis(row.try_get("validated_at_ms")?),
    })
}

/// Commits a link status change and returns whether a row changed. On revocation it first
/// removes what the revoked link leaves behind (pending DMs, and the cursor of an account with no
/// usable link left).
async fn finish_status_change(
    mut tx: sqlx::Transaction<'_, sqlx::Sqlite>,
    discord_user_id: u64,
    status: LinkStatus,
    changed_account: Option<String>,
) -> Result<bool, sqlx::Error> {
    if let (LinkStatus::Revoked, Some(account_id)) = (status, &changed_account) {
        super::alerts::forget_user_account(&mut tx, discord_user_id, account_id).await?;
    }
    tx.commit().await?;
    Ok(changed_account.is_some())
}

impl Db {
    pub async fn link(&self, discord_user_id: u64) -> Result<Option<Link>, sqlx::Error> {
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE discord_user_id = ?");
        sqlx::query(&sql)
            .bind(snowflake_to_db(discord_user_id))
            .fetch_optional(self.pool())
            .await?
            .map(|row| link_from_row(&row))
            .transpose()
    }

    /// Inserts or replaces the user's link and returns the link it replaced, if any. One
    /// immediate transaction, so two relinks at once cannot both read the same old row.
    pub async fn upsert_link(&self, new: &NewLink<'_>) -> Result<Option<Link>, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("SELECT {LINK_COLUMNS} FROM links WHERE discord_user_id = ?");
        let previous = sqlx::query(&sql)
            .bind(snowflake_to_db(new.discord_user_id))
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| link_from_row(&row))
            .transpose()?;
        let now = to_millis(new.now);
        sqlx::query(
            "INSERT INTO links (discord_user_id, account_id, account_name, role, key_id, key_sealed,
                 key_masked, status, linked_at_ms, validated_at_ms, status_changed_at_ms)
             VALUES (?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)
             ON CONFLICT (discord_user_id) DO UPDATE SET
                 account_id = excluded.account_id, account_name = excluded.account_name,
                 role = excluded.role, key_id = excluded.key_id, key_sealed = excluded.key_sealed,
                 key_masked = excluded.key_masked, status = 'active',
                 linked_at_ms = excluded.linked_at_ms, validated_at_ms = excluded.validated_at_ms,
                 status_changed_at_ms = excluded.status_changed_at_ms",
        )
        .bind(snowflake_to_db(new.discord_user_id))
        .bind(new.account_id)
        .bind(new.account_name)
        .bind(new.role)
        .bind(&new.sealed_key.key_id)
        .bind(&new.sealed_key.bytes)
        .bind(new.key_masked)
        .bind(now)
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        // Default alert preferences for a first link; a relink keeps the user's settings.
        super::alerts::ensure_preferences(&mut tx, new.discord_user_id, new.now).await?;
        // A link to another account drops the user's queued DMs of the old account.
        if let Some(old) = previous
            .as_ref()
            .filter(|old| old.account_id != new.account_id)
        {
            super::alerts::forget_user_account(&mut tx, new.discord_user_id, &old.account_id)
                .await?;
        }
        tx.commit().await?;
        Ok(previous)
    }

    /// Deletes the user's link, alert preferences and pending alert DMs, and returns the link,
    /// if there was one.
    pub async fn delete_link(&self, discord_user_id: u64) -> Result<Option<Link>, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!("DELETE FROM links WHERE discord_user_id = ? RETURNING {LINK_COLUMNS}");
        let removed = sqlx::query(&sql)
            .bind(snowflake_to_db(discord_user_id))
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| link_from_row(&row))
            .transpose()?;
        super::alerts::delete_user_alerts(&mut tx, discord_user_id).await?;
        if let Some(link) = &removed {
            super::alerts::forget_user_account(&mut tx, discord_user_id, &link.account_id).await?;
        }
        tx.commit().await?;
        Ok(removed)
    }

    /// Sets the link's status and returns whether it changed, so that a caller reacts to a
    /// transition (such as the one DM on revocation) exactly once. A revocation also drops the
    /// user's pending alert DMs of the account.
    pub async fn set_link_status(
        &self,
        discord_user_id: u64,
        status: LinkStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let account_id: Option<String> = sqlx::query_scalar(
            "UPDATE links SET status = ?, status_changed_at_ms = ?
             WHERE discord_user_id = ? AND status != ? RETURNING account_id",
        )
        .bind(status.as_str())
        .bind(to_millis(now))
        .bind(snowflake_to_db(discord_user_id))
        .bind(status.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        finish_status_change(tx, discord_user_id, status, account_id).await
    }

    /// Like [`Db::set_link_status`], but only while the link still contains `sealed_key`: a response
    /// about a key the user has since replaced must not change the new link.
    pub async fn set_link_status_for_key(
        &self,
        discord_user_id: u64,
        sealed_key: &SealedKey,
        status: LinkStatus,
        now: DateTime<Utc>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool().begin_with("BEGIN IMMEDIATE").await?;
        let account_id: Option<String> = sqlx::query_scalar(
            "UPDATE links SET status = ?, status_changed_at_ms = ?
             WHERE discord_user_id = ? AND key_sealed = ? AND status != ? RETURNING account_id",
        )
        .bind(status.as_str())
        .bind(to_millis(now))
        .bind(snowflake_to_db(discord_user_id))
        .bind(&sealed_key.bytes)
        .bind(status.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        finish_status_change(tx, discord_user_id, status, account_id).await
    }

    /// Records a successful call with `sealed_key`: refreshes the account name and role, and
    /// makes a suspended link active again. A revoked link stays revoked, and a link whose key
    /// was replaced meanwhile is left alone.
    pub async fn record_validation(
        &self,
        discord_user_id: u64,
        sealed_key: &SealedKey,
        account_name: &str,
        role: &str,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "UPDATE links SET account_name = ?, role = ?, validated_at_ms = ?,
                 status = CASE WHEN status = 'suspended' THEN 'active' ELSE status END
             WHERE discord_user_id = ? AND key_sealed = ?",
        )
        .bind(account_name)
        .bind(role)
        .bind(to_millis(now))
        .bind(snowflake_to_db(discord_user_id))
        .bind(&sealed_key.bytes)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Returns the Discord users whose link to an account still grants access to its channel:
    /// active and suspended links. A revoked link's row is kept, but its user lost access.
    pub async fn account_user_ids(&self, account_id: &str) -> Result<Vec<u64>, sqlx::Error> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT discord_user_id FROM links WHERE account_id = ? AND status != 'revoked'",
        )
        .bind(account_id)
        .fetch_all(self.pool())
        .await?;
        Ok(ids.into_iter().map(snowflake_from_db).collect())
    }

    /// Returns any one stored sealed key with its owner, to check at start that the configured
    /// encryption key opens the stored values.
    pub async fn any_sealed_key(&self) -> Result<Option<(u64, SealedKey)>, sqlx::Error> {
        let row = sqlx::query("SELECT discord_user_id, key_id, key_sealed FROM links LIMIT 1")
            .fetch_optional(self.pool())
            .await?;
        row.map(|row| {
            Ok((
                snowflake_from_db(row.try_get("discord_user_id")?),
                SealedKey {
                    key_id: row.try_get("key_id")?,
                    bytes: row.try_get("key_sealed")?,
                },
            ))
        })
        .transpose()
    }

    pub async fn account_channel(
        &self,
        account_id: &str,
    ) -> Result<Option<AccountChannel>, sqlx::Error> {
        let row = sqlx::query(
            "SELECT account_id, guild_id, channel_id FROM account_channels WHERE account_id = ?",
        )
        .bind(account_id)
        .fetch_optional(self.pool())
        .await?;
        row.map(|row| {
            Ok(AccountChannel {
                account_id: row.try_get("account_id")?,
                guild_id: snowflake_from_db(row.try_get("guild_id")?),
                channel_id: snowflake_from_db(row.try_get("channel_id")?),
            })
        })
        .transpose()
    }

    pub async fn save_account_channel(
        &self,
        channel: &AccountChannel,
        now: DateTime<Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "INSERT INTO account_channels (account_id, guild_id, channel_id, created_at_ms)
             VALUES (?, ?, ?, ?)
             ON CONFLICT (account_id) DO UPDATE SET guild_id = excluded.guild_id,
                 channel_id = excluded.channel_id, created_at_ms = excluded.created_at_ms",
        )
        .bind(&channel.account_id)
        .bind(snowflake_to_db(channel.guild_id))
        .bind(snowflake_to_db(channel.channel_id))
        .bind(to_millis(now))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_account_channel(&self, account_id: &str) -> Result<(), sqlx::Error> {
        sqlx::query("DELETE FROM account_channels WHERE account_id = ?")
            .bind(account_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Reserves a link attempt for the user unless `max_failures` failed or pending attempts
    /// already fall within `window` before `now`. The check and the insert are one statement, so
    /// parallel attempts cannot pass the limit together.
    pub async fn reserve_link_attempt(
        &self,
        discord_user_id: u64,
        now: DateTime<Utc>,
        window: chrono::Duration,
        max_failures: u32,
    ) -> Result<AttemptSlot, sqlx::Error> {
        let user = snowflake_to_db(discord_user_id);
        let since = to_millis(now - window);
        // Old rows are never needed again; dropping them here keeps the table small.
        sqlx::query("DELETE FROM link_attempts WHERE discord_user_id = ? AND attempted_at_ms <= ?")
            .bind(user)
            .bind(since)
            .execute(self.pool())
            .await?;

        let granted: Option<i64> = sqlx::query_scalar(
            "INSERT INTO link_attempts (discord_user_id, attempted_at_ms, outcome)
             SELECT ?1, ?2, 'pending'
             WHERE (SELECT COUNT(*) FROM link_attempts
                    WHERE discord_user_id = ?1 AND attempted_at_ms > ?3
                      AND outcome IN ('failed', 'pending')) < ?4
             RETURNING id",
        )
        .bind(user)
        .bind(to_millis(now))
        .bind(since)
        .bind(i64::from(max_failures))
        .fetch_optional(self.pool())
        .await?;
        if let Some(attempt_id) = granted {
            return Ok(AttemptSlot::Granted { attempt_id });
        }

        // The oldest counted attempt leaves the window first.
        let oldest: Option<i64> = sqlx::query_scalar(
            "SELECT MIN(attempted_at_ms) FROM link_attempts
             WHERE discord_user_id = ? AND attempted_at_ms > ? AND outcome IN ('failed', 'pending')",
        )
        .bind(user)
        .bind(since)
        .fetch_one(self.pool())
        .await?;
        let retry_at = oldest.map(from_millis).unwrap_or(now) + window;
        Ok(AttemptSlot::Limited { retry_at })
    }

    pub async fn finish_link_attempt(
        &self,
        attempt_id: i64,
        outcome: AttemptOutcome,
    ) -> Result<(), sqlx::Error> {
        sqlx::query("UPDATE link_attempts SET outcome = ? WHERE id = ?")
            .bind(outcome.as_str())
            .bind(attempt_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::test_db;
    use chrono::Duration;

    fn sealed(byte: u8) -> SealedKey {
        SealedKey {
            key_id: "k1".into(),
            bytes: vec![byte; 40],
        }
    }

    fn new_link<'a>(user: u64, account: &'a str, key: &'a SealedKey) -> NewLink<'a> {
        NewLink {
            discord_user_id: user,
            account_id: account,
            account_name: "Acme",
            role: "owner",
            sealed_key: key,
            key_masked: "trk_…0123",
            now: Utc::now(),
        }
    }

    #[tokio::test]
    async fn upsert_returns_previous_link() {
        let (db, _dir) = test_db().await;
        let first = sealed(1);
        assert!(db
            .upsert_link(&new_link(7, "acc_a", &first))
            .await
            .unwrap()
            .is_none());

        let second = sealed(2);
        let previous = db
            .upsert_link(&new_link(7, "acc_b", &second))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(previous.account_id, "acc_a");

        let current = db.link(7).await.unwrap().unwrap();
        assert_eq!(current.account_id, "acc_b");
        assert_eq!(current.sealed_key, second);
        assert_eq!(current.status, LinkStatus::Active);
    }

    #[tokio::test]
    async fn status_change_reported_once() {
        let (db, _dir) = test_db().await;
        let key = sealed(1);
        db.upsert_link(&new_link(7, "acc_a", &key)).await.unwrap();
        assert!(db
            .set_link_status(7, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap());
        assert!(!db
            .set_link_status(7, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap());
        assert!(!db
            .set_link_status(8, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn validation_reactivates_suspended_not_revoked() {
        let (db, _dir) = test_db().await;
        let key = sealed(1);
        db.upsert_link(&new_link(7, "acc_a", &key)).await.unwrap();
        db.set_link_status(7, LinkStatus::Suspended, Utc::now())
            .await
            .unwrap();
        db.record_validation(7, &key, "Acme 2", "member", Utc::now())
            .await
            .unwrap();
        let link = db.link(7).await.unwrap().unwrap();
        assert_eq!(link.status, LinkStatus::Active);
        assert_eq!(link.account_name, "Acme 2");

        db.set_link_status(7, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap();
        db.record_validation(7, &key, "Acme 2", "member", Utc::now())
            .await
            .unwrap();
        assert_eq!(
            db.link(7).await.unwrap().unwrap().status,
            LinkStatus::Revoked
        );
    }

    #[tokio::test]
    async fn key_conditions_ignore_replaced_key() {
        let (db, _dir) = test_db().await;
        let old_key = sealed(1);
        let new_key = sealed(2);
        db.upsert_link(&new_link(7, "acc_a", &old_key))
            .await
            .unwrap();
        db.upsert_link(&new_link(7, "acc_b", &new_key))
            .await
            .unwrap();

        let changed = db
            .set_link_status_for_key(7, &old_key, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap();
        assert!(!changed, "an answer about the old key changed the new link");
        db.record_validation(7, &old_key, "Old name", "viewer", Utc::now())
            .await
            .unwrap();
        let link = db.link(7).await.unwrap().unwrap();
        assert_eq!(link.status, LinkStatus::Active);
        assert_eq!(link.account_name, "Acme");

        assert!(db
            .set_link_status_for_key(7, &new_key, LinkStatus::Revoked, Utc::now())
            .await
            .unwrap());
        assert!(
            db.account_user_ids("acc_b").await.unwrap().is_empty(),
            "a revoked link grants no channel access"
        );
        assert_eq!(db.any_sealed_key().await.unwrap().unwrap().1, new_key);
    }

    #[tokio::test]
    async fn delete_returns_removed_link() {
        let (db, _dir) = test_db().await;
        let key = sealed(1);
        db.upsert_link(&new_link(7, "acc_a", &key)).await.unwrap();
        assert_eq!(
            db.delete_link(7).await.unwrap().unwrap().account_id,
            "acc_a"
        );
        assert!(db.delete_link(7).await.unwrap().is_none());
        assert!(db.link(7).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn attempts_limited_after_failures() {
        let (db, _dir) = test_db().await;
        let now = Utc::now();
        let window = Duration::minutes(15);
        for _ in 0..5 {
            let AttemptSlot::Granted { attempt_id } =
                db.reserve_link_attempt(7, now, window, 5).await.unwrap()
            else {
                panic!("attempt was limited too early");
            };
            db.finish_link_attempt(attempt_id, AttemptOutcome::Failed)
                .await
                .unwrap();
        }
        let slot = db.reserve_link_attempt(7, now, window, 5).await.unwrap();
        assert!(matches!(slot, AttemptSlot::Limited { .. }), "{slot:?}");

        // Another user is not affected, and the window expiring frees the user.
        assert!(matches!(
            db.reserve_link_attempt(8, now, window, 5).await.unwrap(),
            AttemptSlot::Granted { .. }
        ));
        let later = now + window + Duration::seconds(1);
        assert!(matches!(
            db.reserve_link_attempt(7, later, window, 5).await.unwrap(),
            AttemptSlot::Granted { .. }
        ));
    }

    #[tokio::test]
    async fn inconclusive_attempts_do_not_count() {
        let (db, _dir) = test_db().await;
        let now = Utc::now();
        let window = Duration::minutes(15);
        for _ in 0..10 {
            let AttemptSlot::Granted { attempt_id } =
                db.reserve_link_attempt(7, now, window, 5).await.unwrap()
            else {
                panic!("inconclusive attempts were counted");
            };
            db.finish_link_attempt(attempt_id, AttemptOutcome::Inconclusive)
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn limited_slot_reports_retry_time() {
        let (db, _dir) = test_db().await;
        let start = Utc::now();
        let window = Duration::minutes(15);
        for minute in 0..2 {
            let at = start + Duration::minutes(minute);
            let AttemptSlot::Granted { attempt_id } =
                db.reserve_link_attempt(7, at, window, 2).await.unwrap()
            else {
                panic!("limited too early");
            };
            db.finish_link_attempt(attempt_id, AttemptOutcome::Failed)
                .await
                .unwrap();
        }
        let slot = db
            .reserve_link_attempt(7, start + Duration::minutes(5), window, 2)
            .await
            .unwrap();
        let AttemptSlot::Limited { retry_at } = slot else {
            panic!("not limited: {slot:?}");
        };
        assert_eq!(to_millis(retry_at), to_millis(start + window));
    }
}
