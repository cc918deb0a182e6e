//! Tests of gridsync-core as a library user sees it: documents, merge, the local store.

mod app;
mod cli;
mod crash;
mod documents;
mod field_usability;
mod helpers;
mod merge_props;
mod photo;
mod records;
mod schema;
mod store;
mod sync_engine;
mod workflow;
