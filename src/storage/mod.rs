//! The SQLite database: opening it with explicit WAL and busy-timeout settings, the embedded
//! migrations, and typed queries grouped by feature.

pub mod alerts;
pub mod digest;
pub mod links;
pub mod tickets;

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

pub use links::{AccountChannel, AttemptOutcome, AttemptSlot, Link, LinkStatus, NewLink};
pub use tickets::{NewTicket, Reservation, ReservationRecord, ReservationState, TicketFilter};

/// Migrations compiled into the binary, applied on every start.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Clone)]
pub struct Db {
    pool: SqlitePool,
}

impl Db {
    /// Opens (creating when missing) the database at `path` and applies pending migrations.
    pub async fn open(
        path: &Path,
        busy_timeout: Duration,
        max_connections: u32,
    ) -> anyhow::Result<Db> {
        if let Some(parent) = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            if !parent.is_dir() {
                anyhow::bail!(
                    "cannot open the database at {}: the directory {} does not exist; create it or change database.path",
                    path.display(),
                    parent.display()
                );
            }
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // NORMAL is durable across application crashes in WAL mode; only an OS crash or
            // power loss can undo the last commits.
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(busy_timeout)
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(max_connections)
            .connect_with(options)
            .await
            .map_err(|error| {
                anyhow::anyhow!("cannot open the database at {}: {error}", path.display())
            })?;
        MIGRATOR.run(&pool).await.map_err(|error| {
            anyhow::anyhow!(
                "cannot apply migrations to the database at {}: {error}",
                path.display()
            )
        })?;
        Ok(Db { pool })
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Runs `SELECT 1` and returns how long the round trip took.
    pub async fn ping(&self) -> Result<Duration, sqlx::Error> {
        let started = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(started.elapsed())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

pub(crate) fn to_millis(time: DateTime<Utc>) -> i64 {
    time.timestamp_millis()
}

pub(crate) fn from_millis(millis: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(millis)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// Stores a Discord snowflake in an INTEGER column. Snowflakes are below 2^63 until the year
/// 2084, so the conversion is lossless.
pub(crate) fn snowflake_to_db(id: u64) -> i64 {
    id as i64
}

pub(crate) fn snowflake_from_db(id: i64) -> u64 {
    id as u64
}

#[cfg(test)]
pub(crate) async fn test_db() -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let db = Db::open(&dir.path().join("test.db"), Duration::from_secs(5), 2)
        .await
        .unwrap();
    (db, dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn open_sets_wal_and_busy_timeout() {
        let (db, _dir) = test_db().await;
        let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(mode, "wal");
        let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(timeout, 5000);
    }

    #[tokio::test]
    async fn reopen_keeps_data_and_migrations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("again.db");
        let db = Db::open(&path, Duration::from_secs(1), 1).await.unwrap();
        sqlx::query("INSERT INTO account_channels VALUES ('acc_1', 1, 2, 3)")
            .execute(db.pool())
            .await
            .unwrap();
        db.close().await;
        let db = Db::open(&path, Duration::from_secs(1), 1).await.unwrap();
        let count: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM account_channels")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(count, 1);
    }

    #[tokio::test]
    async fn open_names_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing").join("bot.db");
        let error = Db::open(&path, Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap();
        assert!(error.to_string().contains("does not exist"), "{error}");
    }

    #[test]
    fn millis_round_trip() {
        let now = Utc.timestamp_millis_opt(1_733_337_600_123).unwrap();
        assert_eq!(from_millis(to_millis(now)), now);
    }
}
