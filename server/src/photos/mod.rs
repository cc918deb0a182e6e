//! Photo files on the server: resumable uploads (tus 1.0: core, creation, checksum,
//! expiration; `tus.rs`), scoped downloads and the evidence checks (`download.rs`), over an
//! `object_store` (a folder under the data dir by default, or an S3-compatible bucket).
//!
//! Layout in the object store: `blobs/<sha256>` for a stored file (written once, with
//! `PutMode::Create`, after its hash was verified), `partial/<sha256>/<device>/<offset>` for
//! the chunks of an upload under way (one upload per file and device, so one device can
//! never spoil another's). Upload state (length, offset) is in the database, so any server
//! process can continue any upload.
//!
//! **Invariant:** a file is served only to a device that may read a document referencing it,
//! and stored only if such a document exists, its length is the referenced length and its
//! bytes hash to its name; a file is never overwritten.

mod download;
mod tus;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use object_store::ObjectStore;

use crate::http::AppState;
use crate::storage::Storage;

pub use download::evidence_flags;
pub use tus::perceptual_hash;

/// The largest photo file stored (the pipeline's full images are a few hundred KB; a camera
/// original a standard client might send stays under this).
pub const MAX_PHOTO_BYTES: u64 = 20 * 1024 * 1024;
/// The most bytes one PATCH stores; a client that sends more is told the offset reached and
/// sends the rest in the next request (tus allows a server to accept less).
pub const MAX_CHUNK_BYTES: usize = 4 * 1024 * 1024;
/// How long an unfinished upload is kept.
pub const UPLOAD_EXPIRY: Duration = Duration::from_secs(24 * 3600);

/// Where the server keeps photo files, and the evidence settings.
#[derive(Debug, Clone)]
pub struct PhotoConfig {
    /// The object store.
    pub store: Arc<dyn ObjectStore>,
    /// Evidence check settings (radius, near-duplicate distance).
    pub evidence: gridsync_core::evidence::EvidenceRules,
}

impl Default for PhotoConfig {
    /// An in-memory store: for tests that do not look at photos. `serve` always configures a
    /// folder or a bucket.
    fn default() -> Self {
        Self {
            store: Arc::new(object_store::memory::InMemory::new()),
            evidence: Default::default(),
        }
    }
}

/// Why the configured object store could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("photo store {url}: {reason}")]
pub struct StoreConfigError {
    url: String,
    reason: String,
}

/// Opens the object store named by `url`: `s3://bucket` (endpoint, credentials and region
/// from the standard `AWS_*` environment variables, e.g. `AWS_ENDPOINT` for a local
/// S3-compatible server, `AWS_ALLOW_HTTP=true` for plain HTTP), or, with no URL, the folder
/// `data_dir/photos`.
pub fn open_store(
    url: Option<&str>,
    data_dir: &std::path::Path,
) -> Result<Arc<dyn ObjectStore>, StoreConfigError> {
    let err = |url: &str, e: &dyn std::fmt::Display| StoreConfigError {
        url: url.to_owned(),
        reason: e.to_string(),
    };
    match url {
        None => {
            let dir = data_dir.join("photos");
            std::fs::create_dir_all(&dir).map_err(|e| err(&dir.display().to_string(), &e))?;
            // fsync: a file the server acknowledged is on disk, like the database row
            // that says it is stored.
            let fs = object_store::local::LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| err(&dir.display().to_string(), &e))?
                .with_fsync(true)
                .with_automatic_cleanup(true);
            Ok(Arc::new(fs))
        }
        Some(u) if u.starts_with("s3://") => {
            // reqwest is built without a crypto provider; S3 over HTTPS needs one.
            let _ = rustls::crypto::ring::default_provider().install_default();
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_url(u)
                .build()
                .map_err(|e| err(u, &e))?;
            Ok(Arc::new(s3))
        }
        Some(u) => Err(err(
            u,
            &"only s3:// URLs are supported (or none, for a local folder)",
        )),
    }
}

/// The photo routes, merged into [`crate::http::app`].
pub fn routes<S: Storage>() -> Router<AppState<S>> {
    let uploads = Router::new()
        .route("/v1/uploads", post(tus::create::<S>).options(tus::options))
        .route(
            "/v1/uploads/{sha256}",
            axum::routing::head(tus::head::<S>)
                .patch(tus::patch::<S>)
                .options(tus::options),
        )
        // tus: every answer (errors included) says the protocol version.
        .layer(axum::middleware::map_response(tus::version_header));
    Router::new()
        .merge(uploads)
        .route("/v1/photos/{sha256}", get(download::get::<S>))
        .route("/v1/evidence-flags", get(download::flags::<S>))
}

/// Deletes uploads older than [`UPLOAD_EXPIRY`] and their chunks; returns how many.
pub async fn expire_uploads<S: Storage>(
    state: &AppState<S>,
) -> Result<usize, crate::storage::StorageError> {
    let cutoff = gridsync_core::clock::now_ms()
        - i64::try_from(UPLOAD_EXPIRY.as_millis()).unwrap_or(i64::MAX);
    let old = state.storage.uploads_before(cutoff).await?;
    for u in &old {
        tus::discard(state, &u.sha256, u.device).await;
    }
    Ok(old.len())
}

/// Whether `s` is a lower-case hex SHA-256.
fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The object-store path of a stored file.
pub(crate) fn blob_path(sha256: &str) -> object_store::path::Path {
    object_store::path::Path::from(format!("blobs/{sha256}"))
}
