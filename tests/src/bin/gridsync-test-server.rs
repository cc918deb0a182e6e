//! Runs `gridsync_server::cli::main`, the same entry point as `gridsync-server`, as a
//! separate process for the integration tests.

fn main() -> anyhow::Result<()> {
    gridsync_server::cli::main()
}
