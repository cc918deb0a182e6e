//! The gridsync-server binary; everything is in [`gridsync_server::cli`].

fn main() -> std::process::ExitCode {
    gridsync_server::cli::main()
}
