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
        "noop_sync_request_bytes",
        "noop_sync_response_bytes",
        "noop_sync_ms",
        "day_sync_round_trips",
        "day_sync_wire_bytes",
        "day_sync_raw_change_bytes",
        "perdoc_sync_round_trips",
        "perdoc_sync_wire_bytes",
        "perdoc_noop_sync_bytes",
        "backlog_sync_ms",
        "backlog_pull_ms",
        "storm_seconds",
        "storm_p99_ms",
        "storm_server_cpu_ms_per_change",
        "storm_seconds_postgres",
        "storm_p99_ms_postgres",
        "storm_seconds_postgres_2proc",
        "storm_server_cpu_ms_per_change_postgres_2proc",
        "storm_phase_merge_ms_per_change",
        "storm_phase_commit_ms_per_change_postgres",
        "hot_doc_push_ms_cached",
        "hot_doc_push_ms_uncached",
        "console_inbox_ms_10k_cases",
        "console_inbox_query_ms_10k_cases",
        "first_sync_seconds",
        "first_sync_bytes",
        "import_50k_residents_s",
        "import_50k_peak_rss_mb",
        "import_50k_unchanged_again_s",
        "export_cases_10k_ms",
        "export_households_50k_ms",
    ] {
        assert!(metrics[key].is_number(), "metric {key} missing: {metrics}");
    }
    let n = |k: &str| metrics[k].as_f64().expect("number");
    assert!(n("household_doc_bytes") > 1000.0);
    // Results (not times): the batched protocol's shape holds even at quick sizes.
    assert_eq!(n("noop_sync_round_trips"), 1.0);
    assert_eq!(n("day_sync_round_trips"), 1.0);
    // A backlog larger than one request goes in several (and arrives whole: checked inside).
    assert!(n("backlog_sync_round_trips") >= 2.0);
    assert!(n("noop_sync_request_bytes") + n("noop_sync_response_bytes") <= 512.0);
    assert!(
        n("perdoc_noop_sync_bytes") > n("noop_sync_request_bytes") + n("noop_sync_response_bytes")
    );
    // The storm stored every phone's 60 changes (each phone's acks are checked inside) and a
    // new phone got the whole grid.
    for suffix in ["", "_postgres", "_postgres_2proc"] {
        assert_eq!(
            n(&format!("storm_changes{suffix}")),
            n(&format!("storm_devices{suffix}")) * 60.0
        );
    }
    assert_eq!(n("first_sync_docs"), 350.0);
    // Every push after the first to the hot document merged on the cached copy, none without.
    assert_eq!(n("hot_doc_cache_hits"), n("hot_doc_pushes"));
    assert_eq!(n("hot_doc_cache_hits_uncached"), 0.0);
    assert_eq!(n("console_inbox_cases"), 500.0);
    // The register went in whole (checked row by row inside) and the ledger has every case.
    assert_eq!(n("import_residents"), 600.0);
    assert_eq!(n("export_cases"), 300.0);
}
