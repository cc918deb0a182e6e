//! Throwaway PostgreSQL databases for tests and the bench: each gets its own database on the
//! server at `GRIDSYNC_TEST_POSTGRES` (default `postgres://postgres@127.0.0.1:5432/postgres`,
//! the server every development and CI machine runs), dropped when it is done.

use anyhow::{Context, Result};
use sqlx::Connection;

/// The administrative connection the test databases are made through.
pub fn admin_url() -> String {
    std::env::var("GRIDSYNC_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

/// A database of its own for one test or bench run.
#[derive(Debug)]
pub struct TestDatabase {
    /// Its URL, for `PgStorage::connect` or `gridsync-server --database`.
    pub url: String,
    name: String,
}

impl TestDatabase {
    /// Creates an empty database with a fresh name.
    pub async fn create() -> Result<Self> {
        let admin = admin_url();
        let name = format!("gridsync_t_{}", uuid::Uuid::now_v7().simple());
        let mut conn = sqlx::PgConnection::connect(&admin)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {admin}"))?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        Ok(Self {
            url: format!("{base}/{name}"),
            name,
        })
    }

    /// Drops the database (every connection to it is ended first).
    pub async fn drop_now(self) -> Result<()> {
        let mut conn = sqlx::PgConnection::connect(&admin_url()).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        conn.close().await?;
        Ok(())
    }
}
