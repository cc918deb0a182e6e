//! Photos on the phone: the pipeline's two files in the store's photo folder, the reference in
//! its document, and the upload queue.
//!
//! **Invariant:** a photo reference is committed only after both its files are on disk
//! (written to a temporary name, synced, renamed, folder synced), and the upload queue is the
//! referenced files the server has not confirmed: a projection of the documents, so a kill -9
//! at any point leaves either no reference or a queued one, never a reference whose file
//! cannot be sent.

use std::io::Write;
use std::path::{Path, PathBuf};

use gridsync_proto::{DocId, RecordId};

use super::{Store, StoreError};
use crate::photo::{PhotoOptions, Processed};
use crate::records::{Case, Gps, Household, Inspection, PhotoFile, PhotoRef, PhotoStage};

/// Where a photo belongs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PhotoTarget {
    /// A case, at the photo's stage.
    Case(DocId),
    /// A visit of a household (only its author may add to it).
    Visit {
        /// The household.
        household: DocId,
        /// The visit.
        visit: RecordId,
    },
    /// A patrol, optionally at one checkpoint.
    Inspection {
        /// The inspection.
        doc: DocId,
        /// The checkpoint it documents.
        checkpoint: Option<RecordId>,
    },
}

impl PhotoTarget {
    /// The document that holds the reference.
    pub fn doc(&self) -> DocId {
        match self {
            PhotoTarget::Case(d) => *d,
            PhotoTarget::Visit { household, .. } => *household,
            PhotoTarget::Inspection { doc, .. } => *doc,
        }
    }
}

/// One file waiting to be uploaded.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueuedFile {
    /// Its SHA-256 (its name on both ends).
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Thumbnail or full image.
    pub kind: PhotoFile,
    /// The document that references it (uploads wait until the server has it).
    pub doc_id: DocId,
    /// Bytes the server said it holds at the last attempt.
    pub uploaded: u64,
    /// Whether the referencing document still waits for its sync.
    pub waiting_for_sync: bool,
}

impl QueuedFile {
    /// Bytes still to send.
    pub fn left(&self) -> u64 {
        self.size.saturating_sub(self.uploaded)
    }
}

/// The photo folder of the store at `path`.
pub(super) fn blob_dir_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".blobs");
    PathBuf::from(name)
}

fn blob_err(path: &Path, e: impl std::fmt::Display) -> StoreError {
    StoreError::Blob {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Writes `bytes` as `dir/name` so that the file is either absent or whole after any crash.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), StoreError> {
    std::fs::create_dir_all(dir).map_err(|e| blob_err(dir, e))?;
    let target = dir.join(name);
    if std::fs::metadata(&target).is_ok_and(|m| m.len() == bytes.len() as u64) {
        // Content-addressed: a file of this name and length already holds these bytes
        // (a shorter one is a leftover of a crash on a filesystem that reorders; rewrite).
        return Ok(());
    }
    let tmp = dir.join(format!(".{name}.{}.tmp", uuid::Uuid::now_v7()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        std::fs::rename(&tmp, &target)?;
        // The rename is durable only once the folder's entry is.
        std::fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(|e| blob_err(&target, e))
}

impl Store {
    /// The folder holding this store's photo files.
    pub fn blob_dir(&self) -> &Path {
        &self.blob_dir
    }

    /// Where the file with this hash is (or would be) kept.
    pub fn blob_path(&self, sha256: &str) -> Option<PathBuf> {
        is_sha256(sha256).then(|| self.blob_dir.join(sha256))
    }

    /// The bytes of a stored photo file, when this phone has it.
    pub async fn read_blob(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let Some(path) = self.blob_path(sha256) else {
            return Ok(None);
        };
        match tokio::fs::read(&path).await {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(blob_err(&path, e)),
        }
    }

    /// Keeps a downloaded file under its hash after checking the bytes are that hash.
    pub async fn keep_blob(&self, sha256: &str, bytes: Vec<u8>) -> Result<(), StoreError> {
        if !is_sha256(sha256) || crate::photo::sha256_hex(&bytes) != sha256 {
            return Err(StoreError::Corrupt(format!(
                "the bytes received for photo {sha256} do not have that hash"
            )));
        }
        let dir = self.blob_dir.clone();
        let name = sha256.to_owned();
        tokio::task::spawn_blocking(move || write_atomically(&dir, &name, &bytes))
            .await
            .map_err(|e| StoreError::Corrupt(format!("photo writer stopped: {e}")))?
    }

    /// Processes a camera file (see [`crate::photo`]), keeps its two files and adds the
    /// reference to `target` at `stage`, in one document change. `fix` is the phone's own
    /// position, used when the photo carries no GPS. Returns the photo's id and reference.
    pub async fn add_photo(
        &self,
        target: PhotoTarget,
        stage: PhotoStage,
        input: Vec<u8>,
        opts: PhotoOptions,
        fix: Option<Gps>,
    ) -> Result<(RecordId, PhotoRef), StoreError> {
        let processed: Processed =
            tokio::task::spawn_blocking(move || crate::photo::process(&input, &opts))
                .await
                .map_err(|e| StoreError::Corrupt(format!("photo pipeline stopped: {e}")))??;
        self.add_processed(target, stage, &processed, fix).await
    }

    /// Adds an already processed photo (see [`Store::add_photo`]).
    pub async fn add_processed(
        &self,
        target: PhotoTarget,
        stage: PhotoStage,
        p: &Processed,
        fix: Option<Gps>,
    ) -> Result<(RecordId, PhotoRef), StoreError> {
        let dir = self.blob_dir.clone();
        let files = [
            (p.thumb_sha256.clone(), p.thumb.clone()),
            (p.full_sha256.clone(), p.full.clone()),
        ];
        tokio::task::spawn_blocking(move || {
            files
                .iter()
                .try_for_each(|(name, bytes)| write_atomically(&dir, name, bytes))
        })
        .await
        .map_err(|e| StoreError::Corrupt(format!("photo writer stopped: {e}")))??;
        let mut photo = PhotoRef::from_processed(p, stage, crate::clock::now_ms(), fix);
        let id = RecordId::new();
        let doc = target.doc();
        let mut missing = None;
        match target {
            PhotoTarget::Case(_) => {
                self.update::<Case>(doc, |c| {
                    c.photos.insert(id, photo.clone());
                })
                .await?;
            }
            PhotoTarget::Visit { visit, .. } => {
                self.update::<Household>(doc, |h| match h.visits.get_mut(&visit) {
                    Some(v) => {
                        v.photos.insert(id, photo.clone());
                    }
                    None => missing = Some(format!("household {doc} has no visit {visit}")),
                })
                .await?;
            }
            PhotoTarget::Inspection { checkpoint, .. } => {
                photo.checkpoint = checkpoint;
                self.update::<Inspection>(doc, |i| {
                    if let Some(cp) = checkpoint
                        && !i.checkpoints.contains_key(&cp)
                    {
                        missing = Some(format!("patrol {doc} has no checkpoint {cp}"));
                        return;
                    }
                    i.photos.insert(id, photo.clone());
                })
                .await?;
            }
        }
        if let Some(m) = missing {
            return Err(StoreError::NoSuchEntry(m));
        }
        Ok((id, photo))
    }

    /// Every photo a document references (not redacted), in id order.
    pub async fn photos_of(
        &self,
        doc: DocId,
    ) -> Result<Vec<crate::projection::PhotoRow>, StoreError> {
        Ok(
            sqlx::query_as("SELECT * FROM p_photos WHERE doc_id = ?1 ORDER BY entry, photo_id")
                .bind(doc.to_string())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// The files this phone holds that the server has not confirmed, thumbnails first (then
    /// by document and hash). Files of documents the server has not acknowledged yet are
    /// listed with `waiting_for_sync`. (References pulled from other phones have no file here
    /// and are not this phone's to send.)
    pub async fn upload_queue(&self) -> Result<Vec<QueuedFile>, StoreError> {
        let rows: Vec<(String, i64, String, String, i64, i64)> = sqlx::query_as(
            "SELECT f.sha256, f.size, f.kind, MIN(f.doc_id), COALESCE(MAX(u.upload_offset), 0), \
                    MIN(COALESCE(s.dirty, 1)) \
             FROM (SELECT doc_id, thumb_sha256 AS sha256, thumb_size AS size, 'thumb' AS kind \
                   FROM p_photos WHERE thumb_sha256 IS NOT NULL \
                   UNION ALL SELECT doc_id, sha256, size, 'full' FROM p_photos) f \
             LEFT JOIN photo_uploads u ON u.sha256 = f.sha256 \
             LEFT JOIN doc_sync s ON s.doc_id = f.doc_id \
             WHERE u.done_at IS NULL \
             GROUP BY f.sha256, f.size, f.kind \
             ORDER BY f.kind DESC, MIN(f.doc_id), f.sha256",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for (sha256, size, kind, doc, offset, dirty) in rows {
            let local = self
                .blob_path(&sha256)
                .is_some_and(|p| std::fs::metadata(p).is_ok_and(|m| m.len() == size as u64));
            if !local {
                continue;
            }
            out.push(QueuedFile {
                doc_id: doc
                    .parse()
                    .map_err(|e| StoreError::Corrupt(format!("p_photos doc {doc}: {e}")))?,
                size: u64::try_from(size).unwrap_or(0),
                kind: if kind == "thumb" {
                    PhotoFile::Thumb
                } else {
                    PhotoFile::Full
                },
                uploaded: u64::try_from(offset).unwrap_or(0),
                waiting_for_sync: dirty != 0,
                sha256,
            });
        }
        Ok(out)
    }

    /// Records what the server holds of a file; `done` once it confirmed the whole file.
    pub async fn set_uploaded(
        &self,
        sha256: &str,
        offset: u64,
        done: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO photo_uploads (sha256, upload_offset, done_at) VALUES (?1, ?2, ?3) \
             ON CONFLICT (sha256) DO UPDATE SET upload_offset = excluded.upload_offset, \
             done_at = COALESCE(photo_uploads.done_at, excluded.done_at)",
        )
        .bind(sha256)
        .bind(i64::try_from(offset).unwrap_or(i64::MAX))
        .bind(done.then(crate::clock::now_ms))
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
