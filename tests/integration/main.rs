//! Cross-crate integration tests: one binary, one build.

mod app_api;
mod bench_quick;
mod clocks;
mod closed_loop;
mod console;
mod console_browser;
mod convergence;
mod crash_storm;
mod departments;
mod harness;
mod hostile;
mod liveness;
mod multi_process;
mod photos;
mod photos_s3;
mod pull_budget;
mod recovery;
mod reenroll;
mod register;
mod restore_anchor;
mod server_cli;
mod store_suite;
mod sync_props;
mod trust;
