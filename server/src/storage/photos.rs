//! What the server keeps about photo files: which documents reference a file (the `p_photos`
//! projection, written with the document's other projections), the files it holds (hash
//! verified), and uploads under way (one per file and device; the bytes live in the object
//! store, see `crate::photos`).

use std::collections::HashMap;
use std::future::Future;

use super::StorageError;
use crate::auth::Device;
use gridsync_core::projection::PhotoRow;
use gridsync_proto::{DeviceId, DocId};

/// A file the server holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    /// Its SHA-256 (lower-case hex).
    pub sha256: String,
    /// Its length.
    pub size: u64,
    /// Its type, from its signature.
    pub mime: String,
    /// Its perceptual hash (64 bits), when it decoded as an image.
    pub phash: Option<u64>,
    /// When it was stored.
    pub stored_at: i64,
    /// The device whose upload completed it.
    pub device: DeviceId,
}

/// An upload under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    /// The file's SHA-256.
    pub sha256: String,
    /// The uploading device.
    pub device: DeviceId,
    /// The file's declared length.
    pub length: u64,
    /// Bytes received so far.
    pub offset: u64,
    /// When it was created (uploads expire a day later).
    pub created_at: i64,
}

/// The photo side of the storage (part of [`super::Storage`]).
pub trait PhotoStorage: Send + Sync + 'static {
    /// The photo references that name `sha256` as their full image or thumbnail.
    fn photo_refs(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Vec<PhotoRow>, StorageError>> + Send;
    /// Whether `device` may read the document `doc` in scope `grid` (what a pull would give
    /// it): a grid inside one of its scopes, or, for a department clerk, a case dispatched to
    /// its department now in one of its towns.
    fn may_read(
        &self,
        device: &Device,
        doc: DocId,
        grid: &str,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// The stored file with this hash.
    fn blob(
        &self,
        sha256: &str,
    ) -> impl Future<Output = Result<Option<BlobRow>, StorageError>> + Send;
    /// Records a stored file; `false` when another upload recorded it first.
    fn insert_blob(
        &self,
        blob: &BlobRow,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// The device's upload of `sha256`, if one is under way.
    fn upload(
        &self,
        sha256: &str,
        device: DeviceId,
    ) -> impl Future<Output = Result<Option<UploadRow>, StorageError>> + Send;
    /// Starts an upload, or returns the one under way (an upload is resumed, never restarted).
    fn create_upload(
        &self,
        upload: &UploadRow,
    ) -> impl Future<Output = Result<UploadRow, StorageError>> + Send;
    /// Moves an upload's offset from `from` to `to`; `false` if it was not at `from` (another
    /// request of the same device moved it).
    fn advance_upload(
        &self,
        sha256: &str,
        device: DeviceId,
        from: u64,
        to: u64,
    ) -> impl Future<Output = Result<bool, StorageError>> + Send;
    /// Forgets an upload (completed, refused or expired).
    fn delete_upload(
        &self,
        sha256: &str,
        device: DeviceId,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Uploads created before `before`.
    fn uploads_before(
        &self,
        before: i64,
    ) -> impl Future<Output = Result<Vec<UploadRow>, StorageError>> + Send;
    /// Every case photo reference (for the evidence checks).
    fn case_photos(&self) -> impl Future<Output = Result<Vec<PhotoRow>, StorageError>> + Send;
    /// The perceptual hashes of the stored files, by SHA-256.
    fn phashes(&self) -> impl Future<Output = Result<HashMap<String, u64>, StorageError>> + Send;
}
