//! The phone library through its generated bindings: Kotlin and Swift are generated (and must
//! be), and a pytest suite drives the Python bindings against a real `gridsync-server` on a
//! loopback port — two phones enroll, one records offline, both sync, the other sees it.

use std::path::{Path, PathBuf};
use std::process::Command;

use gridsync_proto::GridCode;
use gridsync_server::auth::Role;
use gridsync_tests::LocalServer;

const GRID: &str = "33010200101001002";

/// The cdylib cargo built for this test run (beside this test's executable).
fn library() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let deps = exe.parent().expect("deps folder");
    let name = format!(
        "{}gridsync_ffi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    [deps.join(&name), deps.join("..").join(&name)]
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{name} not found beside {}", exe.display()))
}

fn generate(language: &str, out: &Path) {
    let status = Command::new(env!("CARGO_BIN_EXE_uniffi-bindgen"))
        .args([
            "generate",
            "--no-format",
            "--language",
            language,
            "--out-dir",
        ])
        .arg(out)
        .arg(library())
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run uniffi-bindgen");
    assert!(status.success(), "generating {language} bindings failed");
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read dir").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                found.push(
                    p.file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                );
            }
        }
    }
    found
}

/// A Python that has pytest: the machine's, or a venv under the target folder with pytest
/// installed from PyPI the first time.
fn python_with_pytest() -> PathBuf {
    let system = PathBuf::from("python3");
    let has_pytest = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pytest"])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if has_pytest(&system) {
        return system;
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("pytest-venv");
    let py = venv.join("bin").join("python");
    if !has_pytest(&py) {
        let made = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(&py)
                .args(["-m", "pip", "install", "--quiet", "pytest==8.3.4"])
                .status()
                .is_ok_and(|s| s.success());
        assert!(made, "could not install pytest into {}", venv.display());
    }
    py
}

#[test]
fn kotlin_and_swift_bindings_generate() {
    let out = tempfile::tempdir().expect("tempdir");
    generate("kotlin", &out.path().join("kotlin"));
    generate("swift", &out.path().join("swift"));
    let kotlin = files_under(&out.path().join("kotlin"));
    assert!(kotlin.iter().any(|f| f == "gridsync_ffi.kt"), "{kotlin:?}");
    let swift = files_under(&out.path().join("swift"));
    for f in [
        "gridsync_ffi.swift",
        "gridsync_ffiFFI.h",
        "gridsync_ffiFFI.modulemap",
    ] {
        assert!(swift.iter().any(|s| s == f), "{f} missing: {swift:?}");
    }
    let kt = std::fs::read_to_string(
        out.path()
            .join("kotlin/uniffi/gridsync_ffi/gridsync_ffi.kt"),
    )
    .expect("kotlin source");
    // The app's surface is there, async functions as coroutines.
    assert!(
        kt.contains("suspend fun `sync`"),
        "no suspend sync in the Kotlin bindings"
    );
    assert!(
        kt.contains("interface PhoneListener"),
        "no listener interface"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_suite_passes_against_a_real_server() {
    let work = tempfile::tempdir().expect("tempdir");
    let bindings = work.path().join("python");
    generate("python", &bindings);
    std::fs::copy(
        library(),
        bindings.join(library().file_name().expect("name")),
    )
    .expect("copy the library beside its bindings");
    let data = work.path().join("server");
    let server = LocalServer::start(&data, gridsync_server::Config::default())
        .await
        .expect("server");
    let grid = GridCode::parse(GRID).expect("grid");
    let code_a = server
        .enrollment("周网格", Role::Worker, std::slice::from_ref(&grid))
        .await
        .expect("code");
    let code_b = server
        .enrollment("吴网格", Role::Worker, std::slice::from_ref(&grid))
        .await
        .expect("code");
    let photo = work.path().join("after.jpg");
    std::fs::write(
        &photo,
        gridsync_core::sample::camera_photo(
            1200,
            900,
            &gridsync_core::sample::CameraExif::default(),
            7,
        ),
    )
    .expect("photo");
    let big = work.path().join("camera.jpg");
    std::fs::write(
        &big,
        gridsync_core::sample::camera_photo(
            4000,
            3000,
            &gridsync_core::sample::CameraExif::default(),
            8,
        ),
    )
    .expect("photo");
    let python = python_with_pytest();
    let suite = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python");
    let stores = work.path().join("stores");
    std::fs::create_dir_all(&stores).expect("stores");
    let mut cmd = Command::new(python);
    cmd.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"])
        .arg(&suite)
        .env("GRIDSYNC_BINDINGS", &bindings)
        .env("GRIDSYNC_URL", &server.url)
        .env("GRIDSYNC_CODE_A", &code_a)
        .env("GRIDSYNC_CODE_B", &code_b)
        .env("GRIDSYNC_GRID", GRID)
        .env("GRIDSYNC_PHOTO", &photo)
        .env("GRIDSYNC_BIG_PHOTO", &big)
        .env("GRIDSYNC_STORES", &stores);
    // The server answers on this runtime's threads while pytest runs.
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("run pytest");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "pytest failed:\n{text}");
    assert!(
        text.contains("5 passed"),
        "expected the whole suite to run:\n{text}"
    );
}
