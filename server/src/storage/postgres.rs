//! The county's backend: one PostgreSQL database shared by any number of server processes.
//!
//! **Why a pull never misses a change committed by another process.** A pull reads the feed
//! with `seq > cursor` and then moves the cursor to the newest sequence number it saw, so it
//! would skip a change whose number is below that but which commits later. That cannot happen
//! here: every transaction that appends to the change log first updates the single
//! `seq_counter` row, and PostgreSQL holds that row lock until the transaction ends. A second
//! writer, in this process or another, waits on the lock and (read committed) then reads the
//! value the first one committed, so numbers are handed out in commit order and no number
//! becomes visible before every smaller one is. A pull reads under repeatable read, so the
//! counter, the feed and the change bytes it sends come from one snapshot.

use std::str::FromStr;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};

use super::{ChangeBus, Notice, StorageError};

/// The database the shared SQL body is compiled for here.
type Db = sqlx::Postgres;
use gridsync_core::projection::postgres as projection_sql;

// One source compiled per backend on purpose: each copy is concrete in its `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "sql/mod.rs"]
mod sql;

/// The county's backend: one PostgreSQL database, any number of server processes.
pub type PgStorage = sql::SqlStorage;

/// Where PostgreSQL differs from the portable SQL.
mod dialect {
    use super::sql::Conn;
    use crate::storage::{Notice, StorageError};

    /// Notices travel through the database to every process (this one included).
    pub(super) const NOTICES_LOCAL: bool = false;

    /// The channel every process listens on.
    pub(super) const CHANNEL: &str = "gridsync_changes";

    /// Queues the notice in the transaction: PostgreSQL delivers it when (and only if) the
    /// transaction commits.
    pub(super) async fn announce(conn: &mut Conn, notice: &Notice) -> Result<(), StorageError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(CHANNEL)
            .bind(notice.encode())
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Starts a pull's reads on one snapshot: the first statement of its transaction.
    pub(super) async fn snapshot_reads(conn: &mut Conn) -> Result<(), StorageError> {
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

impl PgStorage {
    /// Connects to the database at `url` (`postgres://...`) and migrates it.
    pub async fn connect(url: &str) -> Result<Self, StorageError> {
        let options = PgConnectOptions::from_str(url)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .connect_with(options)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        let bus = ChangeBus::default();
        let mut listener = PgListener::connect_with(&pool).await?;
        listener.listen(dialect::CHANNEL).await?;
        let storage = Self::init(pool, bus.clone()).await?;
        tokio::spawn(relay_notices(
            listener,
            bus,
            std::sync::Arc::downgrade(&storage.write_lock),
        ));
        Ok(storage)
    }
}

/// Passes every process's notices to this process's waiters, until the pool is closed or the
/// storage (`alive`) is gone. A lost connection is reconnected, and since notices sent
/// meanwhile are gone, everyone is told "anything".
async fn relay_notices(
    mut listener: PgListener,
    bus: ChangeBus,
    alive: std::sync::Weak<tokio::sync::Mutex<()>>,
) {
    while alive.strong_count() > 0 {
        match listener.try_recv().await {
            Ok(Some(n)) => bus.send(Notice::decode(n.payload())),
            Ok(None) => bus.send(Notice::anything()),
            Err(sqlx::Error::PoolClosed) => return,
            Err(e) => {
                tracing::warn!(error = %e, "change notices: listener failed; retrying");
                bus.send(Notice::anything());
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}
