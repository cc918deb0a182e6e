//! gridsync-server: the central merge server.
//!
//! - [`merge`]: merging one device's push into one document (pure).
//! - [`storage`]: the [`storage::Storage`] trait and its SQLite implementation: change log,
//!   per-scope feed, snapshots, devices, projections.
//! - [`auth`]: roles, scopes, enrollment codes, tokens.
//! - [`http`]: the axum router ([`http::app`]) and the typed JSON errors.
//! - [`cli`]: the `gridsync-server` command line.
//! - [`console`]: the dispatch centre's web console at `/console/` (people, sessions, pages).
//! - [`routing`]: automatic dispatch (自动流转) of registered cases in marked categories.
//! - [`indicators`]: closed-loop indicators computed from the case projection.
//! - [`register`]: register import (Excel/CSV households and residents) and exports (case
//!   ledger, indicators, household archive as XLSX/CSV).
//! - [`metrics`]: per-phase timings of sync requests and the document cache's counters
//!   (`GET /metrics`).
//! - [`photos`]: photo files: resumable (tus) uploads, scoped downloads, evidence checks.

pub mod auth;
pub mod cli;
pub mod console;
pub mod http;
pub mod indicators;
pub mod live;
pub mod merge;
pub mod metrics;
pub mod photos;
pub mod register;
pub mod routing;
pub mod storage;

pub use http::{AppState, Config, HEADER_READ_TIMEOUT, app, serve};
pub use storage::{ImportRun, PgStorage, RegisterStorage, Service, SqliteStorage, Storage};
