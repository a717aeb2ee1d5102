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
        check_database_path(path)?;
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
            .map_err(|error| open_error(path, &error))?;
        if let Err(error) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(path, &error));
        }
        if let Err(error) = check_writable(&pool).await {
            pool.close().await;
            return Err(open_error(path, &error));
        }
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

/// Rejects a `database.path` that SQLite cannot open, before it tries: a directory, or a file
/// whose directory is missing.
fn check_database_path(path: &Path) -> anyhow::Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "cannot open the database at {}: it is a directory, but database.path must be a file, such as {}; change database.path",
            path.display(),
            path.join("trackly-bot.db").display()
        );
    }
    let Some(parent) = path
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
    else {
        return Ok(());
    };
    if parent.exists() && !parent.is_dir() {
        anyhow::bail!(
            "cannot open the database at {}: {} is not a directory; change database.path",
            path.display(),
            parent.display()
        );
    }
    if !parent.is_dir() {
        anyhow::bail!(
            "cannot open the database at {}: the directory {} does not exist; create it or change database.path",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}

/// Runs a statement that needs a write lock but changes no row. SQLite opens a write-protected
/// file read-only without an error, and `BEGIN IMMEDIATE` and migrations that are all applied
/// succeed on it, so without this check the first failed write would come when a user runs a
/// command.
async fn check_writable(pool: &SqlitePool) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM _sqlx_migrations WHERE 0")
        .execute(pool)
        .await?;
    Ok(())
}

/// SQLite's primary result codes for a file it may not open or write: SQLITE_PERM,
/// SQLITE_READONLY and SQLITE_CANTOPEN. Extended codes carry the primary code in their low byte,
/// as 1544 (SQLITE_READONLY_DIRECTORY) does.
const ACCESS_RESULT_CODES: [i32; 3] = [3, 8, 14];

/// Returns whether `error` means that the process may not read or write the database file or
/// create files in its directory.
fn is_access_error(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(error) => error
            .code()
            .and_then(|code| code.parse::<i32>().ok())
            .is_some_and(|code| ACCESS_RESULT_CODES.contains(&(code & 0xff))),
        sqlx::Error::Io(error) => error.kind() == std::io::ErrorKind::PermissionDenied,
        _ => false,
    }
}

/// Returns the SQLite message and code of `error` without sqlx's formatting.
fn describe_sqlx_error(error: &sqlx::Error) -> String {
    match error {
        sqlx::Error::Database(error) => match error.code() {
            Some(code) => format!("{} (SQLite code {code})", error.message()),
            None => error.message().to_owned(),
        },
        other => other.to_string(),
    }
}

/// Explains an access failure on the database at `path`, naming the file, its directory and
/// the WAL files that SQLite creates beside it.
fn access_error(path: &Path, error: &sqlx::Error) -> anyhow::Error {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let directory = absolute
        .parent()
        .map(|parent| parent.display().to_string())
        .unwrap_or_else(|| ".".to_owned());
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string());
    anyhow::anyhow!(
        "cannot open the database at {}: {}. The bot needs read and write access to the file and to its directory {directory}, because SQLite in WAL mode creates {name}-wal and {name}-shm there; fix the permissions or change database.path",
        path.display(),
        describe_sqlx_error(error)
    )
}

fn open_error(path: &Path, error: &sqlx::Error) -> anyhow::Error {
    if is_access_error(error) {
        return access_error(path, error);
    }
    anyhow::anyhow!(
        "cannot open the database at {}: {}",
        path.display(),
        describe_sqlx_error(error)
    )
}

fn migrate_error(path: &Path, error: &sqlx::migrate::MigrateError) -> anyhow::Error {
    use sqlx::migrate::MigrateError;

    match error {
        MigrateError::Execute(inner) | MigrateError::ExecuteMigration(inner, _)
            if is_access_error(inner) =>
        {
            access_error(path, inner)
        }
        other => anyhow::anyhow!(
            "cannot apply migrations to the database at {}: {other}",
            path.display()
        ),
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

    #[tokio::test]
    async fn open_rejects_directory_path() {
        let dir = tempfile::tempdir().unwrap();
        let error = Db::open(dir.path(), Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains(&dir.path().display().to_string()), "{error}");
        assert!(error.contains("is a directory"), "{error}");
        assert!(error.contains("must be a file"), "{error}");
    }

    #[tokio::test]
    async fn open_rejects_file_as_directory() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("notes.txt");
        std::fs::write(&file, "x").unwrap();
        let error = Db::open(&file.join("bot.db"), Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert!(error.contains("notes.txt is not a directory"), "{error}");
    }

    /// Sets `mode` on `path` and restores 0o700 when dropped, so that the temporary directory
    /// can be removed.
    struct ModeGuard(std::path::PathBuf);

    impl ModeGuard {
        fn set(path: &Path, mode: u32) -> ModeGuard {
            use std::os::unix::fs::PermissionsExt;

            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
            ModeGuard(path.to_path_buf())
        }
    }

    impl Drop for ModeGuard {
        fn drop(&mut self) {
            use std::os::unix::fs::PermissionsExt;

            let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        }
    }

    /// Returns whether file modes restrict this process. They do not for root, which may write
    /// anywhere; the tests that need them print a note and return early then.
    fn file_modes_enforced(dir: &Path) -> bool {
        let probe = dir.join("probe");
        std::fs::create_dir(&probe).unwrap();
        let enforced = {
            let _guard = ModeGuard::set(&probe, 0o500);
            std::fs::File::create(probe.join("file")).is_err()
        };
        std::fs::remove_dir_all(&probe).unwrap();
        if !enforced {
            eprintln!("NOTE: skipped, because file modes do not restrict this user (root)");
        }
        enforced
    }

    fn assert_access_message(error: &str, path: &Path) {
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("read and write access"), "{error}");
        assert!(error.contains("its directory"), "{error}");
        assert!(error.contains("bot.db-wal"), "{error}");
        assert!(error.contains("bot.db-shm"), "{error}");
    }

    #[tokio::test]
    async fn open_explains_unwritable_directory() {
        let dir = tempfile::tempdir().unwrap();
        if !file_modes_enforced(dir.path()) {
            return;
        }
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let path = data.join("bot.db");
        let _guard = ModeGuard::set(&data, 0o500);

        let error = Db::open(&path, Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert_access_message(&error, &path);
    }

    #[tokio::test]
    async fn open_explains_read_only_file() {
        let dir = tempfile::tempdir().unwrap();
        if !file_modes_enforced(dir.path()) {
            return;
        }
        let path = dir.path().join("bot.db");
        Db::open(&path, Duration::from_secs(1), 1)
            .await
            .unwrap()
            .close()
            .await;
        let _guard = ModeGuard::set(&path, 0o400);

        let error = Db::open(&path, Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert_access_message(&error, &path);
    }

    #[tokio::test]
    async fn open_explains_file_in_read_only_directory() {
        let dir = tempfile::tempdir().unwrap();
        if !file_modes_enforced(dir.path()) {
            return;
        }
        let data = dir.path().join("data");
        std::fs::create_dir(&data).unwrap();
        let path = data.join("bot.db");
        Db::open(&path, Duration::from_secs(1), 1)
            .await
            .unwrap()
            .close()
            .await;
        let _guard = ModeGuard::set(&data, 0o500);

        let error = Db::open(&path, Duration::from_secs(1), 1)
            .await
            .err()
            .unwrap()
            .to_string();
        assert_access_message(&error, &path);
    }

    #[test]
    fn millis_round_trip() {
        let now = Utc.timestamp_millis_opt(1_733_337_600_123).unwrap();
        assert_eq!(from_millis(to_millis(now)), now);
    }
}
