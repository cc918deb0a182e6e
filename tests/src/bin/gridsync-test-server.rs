//! Runs `gridsync_server::cli::main`, the same entry point as `gridsync-server`, as a
//! separate process for the integration tests.

fn main() -> std::process::ExitCode {
    gridsync_server::cli::main()
}
