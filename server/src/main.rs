//! The gridsync-server binary.
fn main() {}
