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
