//! The embedded default backend: one SQLite file (WAL, `synchronous=FULL`).

use std::path::Path;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

use super::{ChangeBus, StorageError};

/// The database the shared SQL body is compiled for here.
type Db = sqlx::Sqlite;
use gridsync_core::projection::sqlite as projection_sql;

// One source compiled per backend on purpose: each copy is concrete in its `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// The embedded default: one SQLite file.
pub type SqliteStorage = sql::SqlStorage;

/// Where SQLite differs from the portable SQL.
mod dialect {
    use super::sql::Conn;
    use crate::storage::{Notice, StorageError};

    /// One process owns the file: its own commits are all the notices there are.
    pub(super) const NOTICES_LOCAL: bool = true;

    /// Nothing to do inside the transaction (see `NOTICES_LOCAL`).
    pub(super) async fn announce(_conn: &mut Conn, _notice: &Notice) -> Result<(), StorageError> {
        Ok(())
    }

    /// Starts a pull's reads on one snapshot. A SQLite read transaction already reads one
    /// snapshot from its first statement on (WAL).
    pub(super) async fn snapshot_reads(_conn: &mut Conn) -> Result<(), StorageError> {
        Ok(())
    }
}

impl SqliteStorage {
    /// Opens (creating if needed) `DIR/gridsync.db` and migrates it.
    pub async fn open(data_dir: &Path) -> Result<Self, StorageError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| StorageError::DataDir(format!("{}: {e}", data_dir.display())))?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("gridsync.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(30));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await?;
        Self::init(pool, ChangeBus::default()).await
    }
}
