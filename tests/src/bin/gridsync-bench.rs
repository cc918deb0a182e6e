//! `gridsync-bench [--quick]`: runs every benchmark scenario and prints one JSON object of
//! named metrics. `--quick` runs them small, for CI: results are checked, times are not.

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let mut quick = false;
    for arg in std::env::args().skip(1) {
        match arg.as_str() {
            "--quick" => quick = true,
            "-h" | "--help" => {
                println!("usage: gridsync-bench [--quick]");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} (usage: gridsync-bench [--quick])"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let metrics = runtime.block_on(gridsync_tests::bench::run(quick))?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(())
}
