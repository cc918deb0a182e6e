//! The projection writer compiled for SQLite.

/// The database this copy of the writer speaks to.
type Db = sqlx::Sqlite;

// One source compiled per database on purpose: each copy is concrete in its `Db`.
#[allow(clippy::duplicate_mod)]
#[path = "store.rs"]
mod store;
pub use store::{clear, insert_many, insert_rows, store, store_rows};
