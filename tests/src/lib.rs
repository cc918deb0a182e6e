//! Shared helpers for gridsync's cross-crate integration tests and the `gridsync-bench` binary.

pub mod bench;
