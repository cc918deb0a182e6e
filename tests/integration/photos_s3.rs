//! Photos on an S3-compatible bucket: the same uploads and downloads with the object store on
//! moto's S3 server (PyPI `moto[server]`, the only S3-compatible server the package registries
//! offer here), started as a process on a loopback port. Without `moto_server` on the PATH
//! the test installs the pinned version into a virtual environment under the target folder
//! once (about a minute), so `cargo test` needs nothing installed by hand.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use gridsync_core::photo::PhotoOptions;
use gridsync_core::records::PhotoStage;
use gridsync_core::sample::{CameraExif, camera_photo};
use gridsync_core::store::PhotoTarget;
use gridsync_core::upload::UploadOptions;
use gridsync_server::auth::Role;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::harness::{GRID_A, Phone, TOWN, TestServer, code, sample_case};

const MOTO: &str = "moto[server]==5.2.5";

/// The `moto_server` program: on the PATH, or installed into `target/tmp/moto-venv`.
fn moto_server() -> PathBuf {
    if let Ok(out) = Command::new("moto_server").arg("--help").output()
        && out.status.success()
    {
        return PathBuf::from("moto_server");
    }
    let venv = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("moto-venv");
    let bin = venv.join("bin").join("moto_server");
    if !bin.exists() {
        let ok = Command::new("python3")
            .args(["-m", "venv"])
            .arg(&venv)
            .status()
            .is_ok_and(|s| s.success())
            && Command::new(venv.join("bin").join("pip"))
                .args(["install", "--quiet", MOTO])
                .status()
                .is_ok_and(|s| s.success());
        assert!(
            ok,
            "installing {MOTO} from PyPI into {} failed",
            venv.display()
        );
    }
    bin
}

struct Moto(Child);

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn start_moto() -> (Moto, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    // Held at once, so the server is stopped however this function ends.
    let moto = Moto(
        Command::new(moto_server())
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server"),
    );
    let url = format!("http://127.0.0.1:{port}");
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http.get(&url).send().await.is_ok() {
            // An unsigned request is enough for moto to make the bucket.
            let made = http
                .put(format!("{url}/gridsync-photos"))
                .send()
                .await
                .expect("create bucket");
            assert!(made.status().is_success(), "{}", made.status());
            return (moto, url);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start on {url}");
}

#[tokio::test]
async fn photos_go_to_an_s3_bucket_and_come_back() {
    let (_moto, endpoint) = start_moto().await;
    let bucket: Arc<dyn ObjectStore> = Arc::new(
        object_store::aws::AmazonS3Builder::new()
            .with_endpoint(&endpoint)
            .with_bucket_name("gridsync-photos")
            .with_region("us-east-1")
            .with_access_key_id("test")
            .with_secret_access_key("test")
            .with_allow_http(true)
            .build()
            .expect("s3 store"),
    );
    let server = TestServer::start_with_photos(bucket.clone()).await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let case = worker
        .store
        .create(code(GRID_A), &sample_case())
        .await
        .expect("case");
    let (_, photo) = worker
        .store
        .add_photo(
            PhotoTarget::Case(case),
            PhotoStage::Before,
            camera_photo(3000, 2000, &CameraExif::default(), 11),
            PhotoOptions::default(),
            None,
        )
        .await
        .expect("photo");
    worker.sync().await;
    let opts = UploadOptions {
        chunk_bytes: 64 * 1024,
        ..UploadOptions::default()
    };
    let r = worker
        .client
        .upload_photos(&worker.store, opts)
        .await
        .expect("upload");
    assert_eq!(r.completed, 2, "{r:?}");

    // The files are objects in the bucket, and the chunks are gone.
    for (sha, size, _) in photo.files() {
        let meta = bucket
            .head(&object_store::path::Path::from(format!("blobs/{sha}")))
            .await
            .expect("object in the bucket");
        assert_eq!(meta.size, size);
    }
    let partial: Vec<_> = bucket
        .list(Some(&object_store::path::Path::from("partial")))
        .collect()
        .await;
    assert!(partial.is_empty(), "{partial:?}");

    dispatcher.sync().await;
    let path = dispatcher
        .client
        .fetch_photo(&dispatcher.store, &photo.sha256)
        .await
        .expect("fetch");
    let bytes = std::fs::read(path).expect("read");
    assert_eq!(gridsync_core::photo::sha256_hex(&bytes), photo.sha256);
    // Nothing is left to send.
    let again = worker
        .client
        .upload_photos(&worker.store, opts)
        .await
        .expect("upload");
    assert_eq!((again.completed, again.bytes_sent), (0, 0));
}
