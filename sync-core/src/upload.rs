//! The phone's photo uploads and downloads over tus 1.0 (see the server's `photos::tus`).
//!
//! After a document sync, [`SyncClient::upload_photos`] sends the queued files of documents
//! the server has acknowledged, thumbnails first. Each file starts with a creation request
//! (`POST`), whose answer is the offset the server holds: a file it already has costs no image
//! bytes, and an upload cut off earlier continues there, so a cut link costs at most the chunk
//! in flight. The offset
//! is also kept in the store, for `status`; the server's word always wins.

use base64::Engine;
use sha1::Digest;

use crate::client::{ClientError, SyncClient, TOKEN_KEY};
use crate::records::PhotoFile;
use crate::store::{QueuedFile, Store};

/// The tus version spoken.
const TUS: &str = "1.0.0";

/// How uploads run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UploadOptions {
    /// On a metered link: send thumbnails only (full images wait for Wi-Fi).
    pub metered: bool,
    /// Bytes per PATCH (a chunk cut by a dropped link is the most sent twice).
    pub chunk_bytes: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        Self {
            metered: false,
            chunk_bytes: 256 * 1024,
        }
    }
}

/// What one [`SyncClient::upload_photos`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct UploadReport {
    /// Files the server now holds whole (sent now, or already there).
    pub completed: usize,
    /// Of those, files the server already had (nothing sent).
    pub already_there: usize,
    /// Image bytes sent in PATCH bodies (chunks sent again after a cut included).
    pub bytes_sent: u64,
    /// Files left for later: their document is not acknowledged yet, or (metered) full images.
    pub deferred: usize,
    /// Files that failed this time, as `(sha256, reason)`; they stay queued.
    pub failed: Vec<(String, String)>,
}

/// What the server said about one file.
struct Offset {
    offset: u64,
    length: u64,
}

fn header_u64(resp: &reqwest::Response, name: &str) -> Option<u64> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

pub(crate) async fn server_error(resp: reqwest::Response) -> ClientError {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.unwrap_or_default();
    let (code, message) = match serde_json::from_slice::<gridsync_proto::ErrorBody>(&bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (
            status.to_string(),
            String::from_utf8_lossy(&bytes).into_owned(),
        ),
    };
    ClientError::Server {
        status,
        code,
        message,
    }
}

fn retryable(e: &ClientError) -> bool {
    match e {
        ClientError::Unreachable(_) => true,
        ClientError::Server { status, code, .. } => {
            *status >= 500
                || *status == 408
                || *status == 429
                || code == "offset_mismatch"
                || code == "checksum_mismatch"
                || code == "body_cut"
        }
        _ => false,
    }
}

impl SyncClient {
    /// Sends the queued photo files (see the module comment); one file's failure does not stop
    /// the others.
    pub async fn upload_photos(
        &self,
        store: &Store,
        opts: UploadOptions,
    ) -> Result<UploadReport, ClientError> {
        let token = store
            .meta(TOKEN_KEY)
            .await?
            .ok_or(ClientError::NotEnrolled)?;
        let mut report = UploadReport::default();
        for file in store.upload_queue().await? {
            if file.waiting_for_sync || (opts.metered && file.kind == PhotoFile::Full) {
                report.deferred += 1;
                continue;
            }
            match self
                .upload_one(store, &token, &file, &opts, &mut report)
                .await
            {
                Ok(()) => report.completed += 1,
                Err(ClientError::Server { code, .. }) if code == "photo_not_referenced" => {
                    // The server does not have the referencing change yet (another sync will
                    // bring it), or this device may no longer read it.
                    report.deferred += 1;
                }
                Err(e) => report.failed.push((file.sha256.clone(), e.to_string())),
            }
        }
        Ok(report)
    }

    async fn upload_one(
        &self,
        store: &Store,
        token: &str,
        file: &QueuedFile,
        opts: &UploadOptions,
        report: &mut UploadReport,
    ) -> Result<(), ClientError> {
        let bytes = store.read_blob(&file.sha256).await?.ok_or_else(|| {
            ClientError::BadResponse(format!("photo file {} is missing here", file.sha256))
        })?;
        let mut last = ClientError::Unreachable("no attempt made".into());
        let mut sent_any = false;
        for attempt in 0..self.retry.attempts.max(1) {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt, &last)).await;
            }
            match self
                .send_from_server_offset(store, token, file, &bytes, opts, report, &mut sent_any)
                .await
            {
                Ok(()) => {
                    if !sent_any {
                        report.already_there += 1;
                    }
                    store.set_uploaded(&file.sha256, file.size, true).await?;
                    return Ok(());
                }
                Err(e) if retryable(&e) => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// One attempt: ask where the server is, then send the rest chunk by chunk.
    #[allow(clippy::too_many_arguments)]
    async fn send_from_server_offset(
        &self,
        store: &Store,
        token: &str,
        file: &QueuedFile,
        bytes: &[u8],
        opts: &UploadOptions,
        report: &mut UploadReport,
        sent_any: &mut bool,
    ) -> Result<(), ClientError> {
        let url = format!("{}/v1/uploads/{}", self.base, file.sha256);
        // One request tells all three cases apart: the server has the file (offset = length),
        // an upload of ours is under way (its offset), or a new one starts (0).
        let mut at = self.create(token, file).await?;
        if at.length != bytes.len() as u64 {
            return Err(ClientError::BadResponse(format!(
                "the server expects {} bytes for {}, the file has {}",
                at.length,
                file.sha256,
                bytes.len()
            )));
        }
        while at.offset < at.length {
            let start = usize::try_from(at.offset).unwrap_or(usize::MAX);
            let end = (start + opts.chunk_bytes.max(1)).min(bytes.len());
            let chunk = &bytes[start..end];
            let checksum =
                base64::engine::general_purpose::STANDARD.encode(sha1::Sha1::digest(chunk));
            *sent_any = true;
            report.bytes_sent += chunk.len() as u64;
            let resp = self
                .http
                .patch(&url)
                .bearer_auth(token)
                .header("tus-resumable", TUS)
                .header("upload-offset", at.offset)
                .header("upload-checksum", format!("sha1 {checksum}"))
                .header(
                    reqwest::header::CONTENT_TYPE,
                    "application/offset+octet-stream",
                )
                .body(chunk.to_vec())
                .send()
                .await
                .map_err(|e| ClientError::Unreachable(e.to_string()))?;
            if !resp.status().is_success() {
                return Err(server_error(resp).await);
            }
            let offset = header_u64(&resp, "upload-offset").ok_or_else(|| {
                ClientError::BadResponse("PATCH answer without Upload-Offset".into())
            })?;
            if offset <= at.offset && offset < at.length {
                return Err(ClientError::BadResponse(format!(
                    "the server did not take the chunk at {}",
                    at.offset
                )));
            }
            at.offset = offset;
            if offset < at.length {
                // Progress, for `status`; the last chunk's is recorded as done by the caller.
                store.set_uploaded(&file.sha256, offset, false).await?;
            }
        }
        Ok(())
    }

    /// `POST`: creates our upload of the file, or finds the one under way or the stored file;
    /// returns the server's offset.
    async fn create(&self, token: &str, file: &QueuedFile) -> Result<Offset, ClientError> {
        let meta = base64::engine::general_purpose::STANDARD.encode(file.sha256.as_bytes());
        let resp = self
            .http
            .post(format!("{}/v1/uploads", self.base))
            .bearer_auth(token)
            .header("tus-resumable", TUS)
            .header("upload-length", file.size)
            .header("upload-metadata", format!("sha256 {meta}"))
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(server_error(resp).await);
        }
        Ok(Offset {
            offset: header_u64(&resp, "upload-offset").unwrap_or(0),
            length: file.size,
        })
    }

    /// Downloads a photo file (thumbnail or full image) into the store's photo folder, unless
    /// it is there already; returns its path.
    pub async fn fetch_photo(
        &self,
        store: &Store,
        sha256: &str,
    ) -> Result<std::path::PathBuf, ClientError> {
        let path = store
            .blob_path(sha256)
            .ok_or_else(|| ClientError::BadResponse(format!("{sha256:?} is not a SHA-256")))?;
        if store.read_blob(sha256).await?.is_some() {
            return Ok(path);
        }
        let token = store
            .meta(TOKEN_KEY)
            .await?
            .ok_or(ClientError::NotEnrolled)?;
        let resp = self
            .http
            .get(format!("{}/v1/photos/{sha256}", self.base))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(server_error(resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        store.keep_blob(sha256, bytes.to_vec()).await?;
        Ok(path)
    }
}

impl SyncClient {
    /// Reads the case indicators for `from`..`to` (`YYYY-MM-DD`, China time) grouped by
    /// `group_by` (`grid`, `department` or `category`): for dispatcher and leader devices.
    pub async fn indicators(
        &self,
        store: &Store,
        from: &str,
        to: &str,
        group_by: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let token = store
            .meta(TOKEN_KEY)
            .await?
            .ok_or(ClientError::NotEnrolled)?;
        // The values go into the URL as they are: checked to be dates or digits and a word.
        let plain = |v: &str| {
            !v.is_empty()
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !(plain(from) && plain(to) && plain(group_by)) {
            return Err(ClientError::BadResponse(
                "indicator dates are YYYY-MM-DD and the grouping a word".into(),
            ));
        }
        let resp = self
            .http
            .get(format!(
                "{}/v1/indicators?from={from}&to={to}&group_by={group_by}",
                self.base
            ))
            .bearer_auth(&token)
            .send()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(server_error(resp).await);
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::BadResponse(e.to_string()))
    }
}
