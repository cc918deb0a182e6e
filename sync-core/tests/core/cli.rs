//! `gridsync-field` as a person uses it: JSON output for scripts, typed refusals, exit codes.

use std::process::{Command, Output};

fn field(store: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(store)
        .args(args)
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("run gridsync-field")
}

fn json(out: &Output) -> serde_json::Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON value")
}

#[test]
fn a_worker_closes_a_small_matter_alone_from_the_terminal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("phone.db");
    json(&field(&store, &["--json", "init", "--worker", "周网格"]));
    let grid = "33010200101001002";
    let id = json(&field(
        &store,
        &[
            "--json",
            "case",
            "report",
            "--grid",
            grid,
            "--title",
            "占道堆物",
            "--subcategory",
            "0201",
            "--address",
            "城南路 8 号",
            "--description",
            "门口堆放纸箱",
        ],
    ))["id"]
        .as_str()
        .expect("id")
        .to_owned();
    json(&field(
        &store,
        &["--json", "case", "act", &id, "self_handle"],
    ));
    // Closing without an after-photo is refused with the reason, and exits non-zero.
    let refused = field(
        &store,
        &["case", "act", &id, "close_self", "--note", "已清理"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("after-photo"),
        "{refused:?}"
    );
    // A file that only starts like a JPEG is refused with the reason, and nothing is added.
    let fake = dir.path().join("fake.jpg");
    std::fs::write(&fake, b"\xff\xd8\xff\xe0 not really a jpeg").expect("photo");
    let refused = field(
        &store,
        &[
            "photo",
            "add",
            fake.to_str().expect("utf8"),
            "--case",
            &id,
            "--stage",
            "after",
        ],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("damaged or incomplete"),
        "{refused:?}"
    );
    let photo = dir.path().join("after.jpg");
    let camera = gridsync_core::sample::CameraExif::default();
    std::fs::write(
        &photo,
        gridsync_core::sample::camera_photo(800, 600, &camera, 1),
    )
    .expect("photo");
    let added = json(&field(
        &store,
        &[
            "--json",
            "photo",
            "add",
            photo.to_str().expect("utf8"),
            "--case",
            &id,
            "--stage",
            "after",
        ],
    ));
    assert_eq!(added["ref"]["time_source"], "exif");
    let listed = json(&field(&store, &["--json", "photo", "list", &id]));
    assert_eq!(listed[0]["stage"], "after");
    assert_eq!(listed[0]["uploaded"], false);
    json(&field(
        &store,
        &[
            "--json",
            "case",
            "act",
            &id,
            "close_self",
            "--note",
            "已清理",
        ],
    ));
    let shown = json(&field(&store, &["--json", "case", "show", &id]));
    assert_eq!(shown["state"]["status"], "closed");
    assert_eq!(shown["state"]["self_closed"], true);
    let listed = json(&field(
        &store,
        &["--json", "case", "list", "--status", "closed"],
    ));
    assert_eq!(listed.as_array().expect("list").len(), 1);
    // A worker may not dispatch.
    let refused = field(&store, &["case", "act", &id, "dispatch"]);
    assert!(!refused.status.success());
    // Bad input names the field.
    let bad = field(
        &store,
        &["household", "add", "--grid", grid, "--address", " "],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("address: is required"),
        "{bad:?}"
    );
    let bad = field(
        &store,
        &["household", "add", "--grid", "123", "--address", "x"],
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("grid code"),
        "{bad:?}"
    );
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = dir.path().join("phone.db");
    json(&field(&store, &["--json", "init", "--worker", "周网格"]));
    // `gridsync-field ... | head -0`: the reader is gone before the command prints.
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(&store)
        .arg("whoami")
        .env("RUST_BACKTRACE", "0")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdout.take());
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "exit {:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
}
