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

/// `user add | disable | enable | reset-password`: the accounts an operator makes on the
/// command line sign in to the console (and stop signing in when disabled).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_accounts_are_made_and_disabled_on_the_command_line() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str], stdin: Option<&str>| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-test-server"))
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run gridsync-server");
        if let Some(s) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(s.as_bytes())
                .expect("write");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("output")
    };
    let add = |login: &str, extra: &[&str]| {
        let mut args = vec![
            "user",
            "add",
            "--login",
            login,
            "--name",
            "王调度",
            "--towns",
            "330102001",
        ];
        args.extend_from_slice(extra);
        run(&args, None)
    };
    let out = add("wang", &["--role", "dispatcher"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let password = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert_eq!(
        password.chars().count(),
        16,
        "a generated password, printed once"
    );
    // Mistakes are refused with what was wrong.
    let out = add("wang", &["--role", "dispatcher"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("已存在"));
    let out = add("li", &["--role", "clerk"]);
    assert_eq!(out.status.code(), Some(1), "a clerk needs a department");
    let out = add("li", &["--role", "janitor"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
    let out = run(
        &[
            "user",
            "reset-password",
            "--login",
            "wang",
            "--password-stdin",
        ],
        Some("short\n"),
    );
    assert_eq!(out.status.code(), Some(1), "a weak password is refused");
    // The account signs in to a server on the same data directory.
    let storage = gridsync_server::SqliteStorage::open(dir.path())
        .await
        .expect("open");
    let server = gridsync_tests::LocalServer::serve(storage, Default::default())
        .await
        .expect("server");
    let mut c = gridsync_tests::console::ConsoleClient::new(&server.url).expect("client");
    assert_eq!(
        c.sign_in("wang", &password).await.expect("sign in").status,
        303
    );
    let out = run(&["user", "disable", "--login", "wang"], None);
    assert!(out.status.success());
    assert_eq!(
        c.get("/console/").await.expect("inbox").status,
        303,
        "its session ended"
    );
    assert_eq!(
        c.sign_in("wang", &password).await.expect("sign in").status,
        401
    );
    run(&["user", "enable", "--login", "wang"], None);
    let out = run(
        &[
            "user",
            "reset-password",
            "--login",
            "wang",
            "--password-stdin",
        ],
        Some("新的调度密码-2026\n"),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        c.sign_in("wang", &password).await.expect("sign in").status,
        401,
        "the old one is gone"
    );
    assert_eq!(
        c.sign_in("wang", "新的调度密码-2026")
            .await
            .expect("sign in")
            .status,
        303
    );
    let out = run(&["user", "list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).contains("wang\t王调度\tdispatcher"));
}
