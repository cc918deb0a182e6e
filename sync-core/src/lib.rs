//! gridsync-core: the CRDT core that runs on the phone (through FFI) and inside the merge server.
//!
//! - [`records`]: the grid-work records (grid, household with residents and visits, inspection,
//!   case) as typed serde data, with [`validate`] rules that name the field and the problem.
//! - [`rules`]: who may write what (the authorship table) and which problems block an edit,
//!   judged the same way on the phone before a write and on the server at a merge.
//! - [`document`]: one record as one Automerge document with an immutable header; edits touch
//!   only changed fields, concurrent edits of one field surface as conflicts.
//! - [`store`]: the phone's durable local store (SQLite through sqlx): change chunks plus
//!   compacted snapshots, and relational projections updated in the same transaction.
//! - [`sync`]: the phone's side of the batched sync protocol, sans-I/O over the store;
//!   [`client`]: its HTTP transport with backoff; [`upload`]: photo files over tus.
//! - [`app`]: the app API (feature `client`): one async, typed facade for the phone app and
//!   `gridsync-field` over the store, records, workflow, sync and photos.
//! - [`evidence`]: questions about case photos (taken before the report or dispatch, far from
//!   the place, the same or a near-identical image on another case), flagged, never refused.
//! - [`photo`]: the on-device photo pipeline (upright, downscaled, metadata-free JPEGs and
//!   thumbnails addressed by SHA-256, with EXIF time and GPS kept as evidence).
//! - [`vocab`]: the vocabularies people type and read (codes, Chinese labels, synonyms), shared
//!   by the app API and the server's register import.
//! - [`time_flags`]: which entry times a phone's clock cannot have given honestly.
//! - [`workflow`]: the case loop (report → dispatch → handle → check → close → follow-up) as
//!   a state machine derived from the case's event log, with deadlines on a working calendar.

#[cfg(feature = "client")]
pub mod app;
#[cfg(feature = "client")]
pub mod client;
pub mod clock;
pub mod document;
pub mod evidence;
pub mod photo;
pub mod projection;
pub mod records;
pub mod rules;
pub mod sample;
pub mod store;
pub mod sync;
pub mod time_flags;
#[cfg(feature = "client")]
pub mod upload;
pub mod validate;
pub mod vocab;
pub mod workflow;

pub use document::{DocError, Document, FieldConflict};
pub use store::{Store, StoreError, StoreOptions};
