//! `gridsync-bench [--quick] [--only SCENARIO]`: runs every benchmark scenario (or one) and
//! prints one JSON object of named metrics. `--quick` runs them small, for CI: results are
//! checked, times are not.

use anyhow::{Result, bail};

fn main() -> Result<()> {
    let usage = format!(
        "usage: gridsync-bench [--quick] [--only {}]",
        gridsync_tests::bench::SCENARIOS.join("|")
    );
    let mut quick = false;
    let mut only = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--quick" => quick = true,
            "--only" => match args.next() {
                Some(s) if gridsync_tests::bench::SCENARIOS.contains(&s.as_str()) => only = Some(s),
                other => bail!("--only: unknown scenario {other:?} ({usage})"),
            },
            "-h" | "--help" => {
                println!("{usage}");
                return Ok(());
            }
            other => bail!("unknown argument {other:?} ({usage})"),
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let metrics = runtime.block_on(gridsync_tests::bench::run(quick, only.as_deref()))?;
    println!("{}", serde_json::to_string_pretty(&metrics)?);
    Ok(())
}
