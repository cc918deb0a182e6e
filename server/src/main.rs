//! The gridsync-server binary; everything is in [`gridsync_server::cli`].

fn main() -> anyhow::Result<()> {
    gridsync_server::cli::main()
}
