//! Cross-crate integration tests: one binary, one build.

mod bench_quick;
