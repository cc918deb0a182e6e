//! `gridsync-server` as an operator uses it: a mistake gets its message and exit code 1, not
//! a stack trace.

use std::process::Command;

#[test]
fn an_operators_mistake_is_a_message_not_a_stack_trace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run gridsync-server")
    };
    let out = run(&[
        "intake-key",
        "create",
        "--name",
        "12345",
        "--towns",
        "33010200101001002",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("error: --towns"), "{stderr}");
    assert!(!stderr.contains("backtrace"), "{stderr}");
    let out = run(&[
        "intake-key",
        "create",
        "--name",
        "12345",
        "--towns",
        "330102001",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim().len(),
        64,
        "the key, once"
    );
}

#[test]
fn device_list_prints_json_for_scripts_and_a_bad_data_dir_is_not_called_corrupt() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |data: &std::path::Path, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
            .arg("--data-dir")
            .arg(data)
            .args(args)
            .env("RUST_BACKTRACE", "1")
            .output()
            .expect("run gridsync-server")
    };
    let out = run(
        dir.path(),
        &[
            "device",
            "enroll",
            "--name",
            "周网格",
            "--role",
            "worker",
            "--grids",
            "33010200101001002",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Codes are not devices until redeemed: the list is empty, as JSON, not as nothing.
    let out = run(dir.path(), &["device", "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    assert_eq!(listed, serde_json::json!([]));
    // A data directory that cannot be made is the operator's path mistake, said as such.
    let out = run(
        std::path::Path::new("/proc/no-such-dir"),
        &["device", "list"],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("data directory /proc/no-such-dir"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("corrupt") && !stderr.contains("backtrace"),
        "{stderr}"
    );
}
