//! The benchmark binary's quick mode runs every scenario and checks its results.

use std::process::Command;

#[test]
fn bench_quick_runs_every_scenario() {
    let out = Command::new(env!("CARGO_BIN_EXE_gridsync-bench"))
        .arg("--quick")
        .output()
        .expect("run gridsync-bench");
    assert!(
        out.status.success(),
        "gridsync-bench --quick failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    for key in [
        "bulk_import_50_households_ms",
        "household_doc_bytes",
        "store_open_and_list_50_households_ms",
    ] {
        assert!(metrics[key].is_number(), "metric {key} missing: {metrics}");
    }
    assert!(metrics["household_doc_bytes"].as_u64().expect("bytes") > 1000);
}
