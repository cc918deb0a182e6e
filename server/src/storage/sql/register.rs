//! [`RegisterStorage`] over the backend's SQL.

use gridsync_core::projection::{HouseholdRow, ResidentRow};
use gridsync_proto::{DocId, GridCode};
use sqlx::AssertSqlSafe;

use super::{DbRow, IN_CHUNK, Pool, SqlStorage, placeholders, prefix_range};
use crate::storage::{ImportRun, ImportState, RegisterStorage, StorageError};

/// `select` (ending in `WHERE column`) ` IN (...)` over `values`, in chunks of at most
/// [`IN_CHUNK`] values.
async fn select_in<T>(pool: &Pool, select: &str, values: &[String]) -> Result<Vec<T>, StorageError>
where
    T: for<'r> sqlx::FromRow<'r, DbRow> + Send + Unpin,
{
    let mut out = Vec::new();
    for chunk in values.chunks(IN_CHUNK) {
        let sql = format!("{select} IN ({})", placeholders(chunk.len()));
        let mut q = sqlx::query_as(AssertSqlSafe(sql));
        for v in chunk {
            q = q.bind(v);
        }
        out.extend(q.fetch_all(pool).await?);
    }
    Ok(out)
}

/// Rows per `INSERT` of import state (four parameters each: far below the parameter limits).
const STATE_ROWS_PER_STATEMENT: usize = 250;

impl RegisterStorage for SqlStorage {
    async fn households_numbered(
        &self,
        numbers: &[String],
    ) -> Result<Vec<HouseholdRow>, StorageError> {
        select_in(
            self.pool(),
            "SELECT * FROM p_households WHERE number",
            numbers,
        )
        .await
    }

    async fn residents_with_id(
        &self,
        id_numbers: &[String],
    ) -> Result<Vec<ResidentRow>, StorageError> {
        select_in(
            self.pool(),
            "SELECT * FROM p_residents WHERE id_number",
            id_numbers,
        )
        .await
    }

    async fn residents_within(
        &self,
        within: Option<&GridCode>,
    ) -> Result<Vec<ResidentRow>, StorageError> {
        let (lo, hi) = prefix_range(within);
        Ok(sqlx::query_as(
            "SELECT * FROM p_residents WHERE grid >= $1 AND grid < $2 \
             ORDER BY grid, household_id, resident_id",
        )
        .bind(lo)
        .bind(hi)
        .fetch_all(self.pool())
        .await?)
    }

    async fn record_import(&self, run: &ImportRun) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO imports (actor, device, file_name, file_sha256, operator, started_at, \
             rows_total, rows_bad, created, updated, unchanged) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (actor) DO UPDATE SET rows_total = excluded.rows_total, \
             rows_bad = excluded.rows_bad, created = excluded.created, \
             updated = excluded.updated, unchanged = excluded.unchanged",
        )
        .bind(&run.actor)
        .bind(run.device.to_string())
        .bind(&run.file_name)
        .bind(&run.file_sha256)
        .bind(&run.operator)
        .bind(run.started_at)
        .bind(run.rows_total)
        .bind(run.rows_bad)
        .bind(run.created)
        .bind(run.updated)
        .bind(run.unchanged)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    async fn import_state(&self, docs: &[DocId]) -> Result<Vec<ImportState>, StorageError> {
        select_in(
            self.pool(),
            "SELECT * FROM import_state WHERE doc_id",
            &docs.iter().map(|d| d.to_string()).collect::<Vec<_>>(),
        )
        .await
    }

    async fn imported_keys(&self, keys: &[String]) -> Result<Vec<ImportState>, StorageError> {
        select_in(self.pool(), "SELECT * FROM import_state WHERE key", keys).await
    }

    async fn save_import_state(&self, rows: &[ImportState]) -> Result<(), StorageError> {
        let mut tx = self.pool().begin().await?;
        // Many rows per statement: an import of a town remembers tens of thousands.
        for chunk in rows.chunks(STATE_ROWS_PER_STATEMENT) {
            let values: Vec<String> = (0..chunk.len())
                .map(|i| {
                    let b = i * 4;
                    format!("(${}, ${}, ${}, ${})", b + 1, b + 2, b + 3, b + 4)
                })
                .collect();
            let sql = format!(
                "INSERT INTO import_state (doc_id, member, fields, key) VALUES {} \
                 ON CONFLICT (doc_id, member) DO UPDATE SET fields = excluded.fields, \
                 key = excluded.key",
                values.join(", ")
            );
            let mut q = sqlx::query(AssertSqlSafe(sql));
            for r in chunk {
                q = q
                    .bind(r.doc_id.to_string())
                    .bind(&r.member)
                    .bind(&r.fields)
                    .bind(&r.key);
            }
            q.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn imports(&self) -> Result<Vec<ImportRun>, StorageError> {
        Ok(
            sqlx::query_as("SELECT * FROM imports ORDER BY started_at DESC, actor")
                .fetch_all(self.pool())
                .await?,
        )
    }
}
