//! Enrollment, sync with progress, what is waiting, photos and indicators through the app API.

use gridsync_proto::{DocId, RecordId};
use serde::{Deserialize, Serialize};

use super::{AppError, Replica, error, vocab};
use crate::client::{RetryPolicy, SyncClient, SyncReport};
use crate::photo::PhotoOptions;
use crate::records::Gps;
use crate::store::{PhotoTarget, Quarantined, QueuedFile, SetAside};
use crate::upload::{UploadOptions, UploadReport};

/// How to sync.
#[derive(Debug, Clone, Deserialize)]
pub struct SyncOptions {
    /// The server (default: the one this phone enrolled with).
    pub server: Option<String>,
    /// Offer refused documents now instead of after their backoff.
    pub retry_refused: bool,
    /// On a metered link: thumbnails only.
    pub metered: bool,
    /// Upload photos after the documents.
    pub photos: bool,
    /// Stop after this many rounds in a row that moved nothing.
    pub max_idle_rounds: usize,
}

impl Default for SyncOptions {
    fn default() -> Self {
        Self {
            server: None,
            retry_refused: false,
            metered: false,
            photos: true,
            max_idle_rounds: 20,
        }
    }
}

/// Where a sync is: sent to the listener after every round and every photo file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SyncProgress {
    /// `documents` or `photos`.
    pub phase: String,
    /// Round trips so far.
    pub round_trips: u64,
    /// Documents the server acknowledged so far.
    pub acked: u64,
    /// Changes received so far.
    pub pulled_changes: u64,
    /// Bytes sent so far (documents).
    pub bytes_sent: u64,
    /// Bytes received so far.
    pub bytes_received: u64,
}

/// What a sync did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncOutcome {
    /// The documents part.
    pub documents: SyncReport,
    /// The photos part (when photos were uploaded).
    pub photos: Option<UploadReport>,
}

/// What is waiting on this phone.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncStatus {
    /// The server, once enrolled.
    pub server: Option<String>,
    /// Documents with changes the server has not acknowledged.
    pub unsynced_documents: i64,
    /// Documents the server refused, with the reason and when they are offered again.
    pub set_aside: Vec<SetAside>,
    /// Pulled documents this version cannot read (upgrade the app).
    pub quarantined: Vec<Quarantined>,
    /// This phone's copies rebased after a store copy wrote the same changes: (doc, when, why).
    pub superseded: Vec<(DocId, i64, String)>,
    /// Photo files to upload.
    pub upload_queue: Vec<QueuedFile>,
    /// Bytes of photos left to upload.
    pub upload_bytes_left: u64,
}

/// A photo of a record, with whether its files are here and uploaded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PhotoView {
    /// Photo id.
    pub id: String,
    /// The entry it belongs to (`photos`, `visits.<id>.photos` ...).
    pub entry: String,
    /// Stage code.
    pub stage: String,
    /// Stage label.
    pub stage_label: String,
    /// When taken.
    pub taken_at: i64,
    /// Where taken.
    pub lat: Option<f64>,
    /// Where taken.
    pub lon: Option<f64>,
    /// Full image's SHA-256.
    pub sha256: String,
    /// Thumbnail's SHA-256.
    pub thumb_sha256: Option<String>,
    /// Full image's size.
    pub size: i64,
    /// Whether the full image is on this phone.
    pub on_this_phone: bool,
    /// Whether the server confirmed it.
    pub uploaded: bool,
}

/// What enrollment gave this phone (the token stays in the store, never in an answer).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Enrollment {
    /// The device id the server knows.
    pub device: String,
    /// The device's name.
    pub name: String,
    /// Its role.
    pub role: String,
    /// The grid scopes it may read and write.
    pub scopes: Vec<String>,
    /// Its department, for a clerk.
    pub department: Option<String>,
}

/// A photo to add, and where it belongs.
#[derive(Debug, Clone)]
pub struct NewPhoto {
    /// The record and entry.
    pub target: PhotoTarget,
    /// Stage (处置前, 处置后 ... or codes); `before` for a case, `record` otherwise.
    pub stage: Option<String>,
    /// The camera file's bytes (JPEG, PNG or WebP).
    pub bytes: Vec<u8>,
    /// The phone's own position, used when the photo has no GPS.
    pub fix: Option<(f64, f64)>,
    /// Pipeline options.
    pub options: PhotoOptions,
}

impl Replica {
    pub(crate) async fn client(&self, server: Option<&str>) -> Result<SyncClient, AppError> {
        let url = match server {
            Some(s) => s.to_owned(),
            None => match self.store.meta("server_url").await? {
                Some(s) => s,
                None if self.store.meta("worker").await?.is_none() => {
                    return Err(AppError::NotSetUp(error::NOT_INITIALISED.into()));
                }
                None => return Err(AppError::NotSetUp(error::NOT_ENROLLED.into())),
            },
        };
        SyncClient::new(&url, RetryPolicy::default())
            .map_err(|e| AppError::invalid("server", e.to_string()))
    }

    /// Enrolls this phone with the one-time code the operator gave.
    pub async fn enroll(&self, server: &str, code: &str) -> Result<Enrollment, AppError> {
        if code.trim().is_empty() {
            return Err(AppError::invalid("code", "the enrollment code is required"));
        }
        let client = self.client(Some(server)).await?;
        let r = client.enroll(&self.store, code.trim()).await?;
        Ok(Enrollment {
            device: r.device.to_string(),
            name: r.name,
            role: r.role,
            scopes: r.scopes,
            department: r.department,
        })
    }

    /// Sends this phone's work and receives everyone else's, then uploads photos; progress
    /// and changed documents go to the listener.
    pub async fn sync(&self, opts: SyncOptions) -> Result<SyncOutcome, AppError> {
        let client = self.client(opts.server.as_deref()).await?;
        // A second sync waits for the first (pull-to-refresh during a background sync).
        let _one = self.sync_lock.lock().await;
        if opts.retry_refused {
            self.store.retry_set_aside().await?;
        }
        let listener = self.listener();
        let observer = listener.clone();
        let mut observe = move |r: &SyncReport, docs: &[DocId]| {
            if let Some(l) = &observer {
                l.progress(&progress("documents", r));
                if !docs.is_empty() {
                    l.changed(docs);
                }
            }
        };
        let documents = client
            .sync_observed(&self.store, opts.max_idle_rounds.max(1), &mut observe)
            .await?;
        let photos = if opts.photos {
            let report = client
                .upload_photos(
                    &self.store,
                    UploadOptions {
                        metered: opts.metered,
                        ..UploadOptions::default()
                    },
                )
                .await?;
            if let Some(l) = &listener {
                let mut p = progress("photos", &documents);
                p.bytes_sent += report.bytes_sent;
                l.progress(&p);
            }
            Some(report)
        } else {
            None
        };
        Ok(SyncOutcome { documents, photos })
    }

    /// What is waiting to sync or upload, and what the server refused.
    pub async fn status(&self) -> Result<SyncStatus, AppError> {
        let s = &self.store;
        let upload_queue = s.upload_queue().await?;
        Ok(SyncStatus {
            server: s.meta("server_url").await?,
            unsynced_documents: s.unsynced_count().await?,
            set_aside: s.set_aside().await?,
            quarantined: s.quarantined().await?,
            superseded: s.superseded().await?,
            upload_bytes_left: upload_queue.iter().map(|f| f.left()).sum(),
            upload_queue,
        })
    }

    /// Adds a photo: processed on a blocking thread (upright, downscaled, no metadata), both
    /// files kept, the reference added in one change. Returns the photo's id.
    pub async fn add_photo(
        &self,
        p: NewPhoto,
    ) -> Result<(RecordId, crate::records::PhotoRef), AppError> {
        let stage = match (&p.stage, p.target) {
            (Some(s), _) => vocab::photo_stage(s)?,
            (None, PhotoTarget::Case(_)) => crate::records::PhotoStage::Before,
            (None, _) => crate::records::PhotoStage::Record,
        };
        if !(1..=100).contains(&p.options.quality) {
            return Err(AppError::invalid("quality", "must be 1 to 100"));
        }
        if p.options.long_edge < 64 {
            return Err(AppError::invalid("long_edge", "must be at least 64 pixels"));
        }
        let fix = match p.fix {
            Some((lat, lon)) => {
                crate::validate::check_gps(lat, lon)
                    .map_err(|e| AppError::invalid("fix", e.to_string()))?;
                Some(Gps::new(lat, lon))
            }
            None => None,
        };
        let doc = p.target.doc();
        let added = self
            .store
            .add_photo(p.target, stage, p.bytes, p.options, fix)
            .await?;
        self.changed(&[doc]);
        Ok(added)
    }

    /// The photos of a record, with their upload state.
    pub async fn photos(&self, doc: DocId) -> Result<Vec<PhotoView>, AppError> {
        let rows = self.store.photos_of(doc).await?;
        let queue = self.store.upload_queue().await?;
        let pending = |sha: &str| queue.iter().any(|f| f.sha256 == sha);
        let here = |sha: &str| self.store.blob_path(sha).is_some_and(|p| p.exists());
        Ok(rows
            .into_iter()
            .map(|p| PhotoView {
                id: p.photo_id.to_string(),
                on_this_phone: here(&p.sha256),
                uploaded: here(&p.sha256) && !pending(&p.sha256),
                entry: p.entry,
                stage_label: vocab::photo_stage_label(&p.stage),
                stage: p.stage,
                taken_at: p.taken_at,
                lat: p.lat,
                lon: p.lon,
                sha256: p.sha256,
                thumb_sha256: p.thumb_sha256,
                size: p.size,
            })
            .collect())
    }

    /// The photo files waiting to upload, thumbnails first.
    pub async fn upload_queue(&self) -> Result<Vec<QueuedFile>, AppError> {
        Ok(self.store.upload_queue().await?)
    }

    /// Downloads a photo file from the server (unless it is here); returns its path.
    pub async fn fetch_photo(&self, sha256: &str) -> Result<std::path::PathBuf, AppError> {
        // A file this phone holds needs no server (nor enrollment).
        if let Some(path) = self.store.blob_path(sha256)
            && self.store.read_blob(sha256).await?.is_some()
        {
            return Ok(path);
        }
        let client = self.client(None).await?;
        Ok(client.fetch_photo(&self.store, sha256).await?)
    }

    /// The case indicators from the server (dispatcher and leader devices) for
    /// `from`..`to` (`YYYY-MM-DD`), grouped by `grid`, `department` or `category`.
    pub async fn indicators(
        &self,
        from: &str,
        to: &str,
        group_by: &str,
    ) -> Result<serde_json::Value, AppError> {
        for (field, d) in [("from", from), ("to", to)] {
            if crate::validate::parse_date(d).is_none() {
                return Err(AppError::invalid(
                    field,
                    format!("{d:?} is not a YYYY-MM-DD date"),
                ));
            }
        }
        if !["grid", "department", "category"].contains(&group_by) {
            return Err(AppError::invalid(
                "group_by",
                format!("{group_by:?}: accepted: grid, department, category"),
            ));
        }
        let role = self.store.role().await?;
        if !matches!(
            role,
            crate::workflow::Role::Dispatcher | crate::workflow::Role::Leader
        ) {
            return Err(AppError::NotAllowed(format!(
                "indicators are for dispatcher and leader devices; this one is a {role}"
            )));
        }
        let client = self.client(None).await?;
        Ok(client.indicators(&self.store, from, to, group_by).await?)
    }
}

fn progress(phase: &str, r: &SyncReport) -> SyncProgress {
    SyncProgress {
        phase: phase.into(),
        round_trips: r.round_trips as u64,
        acked: r.acked as u64,
        pulled_changes: r.pulled_changes as u64,
        bytes_sent: r.bytes_sent as u64,
        bytes_received: r.bytes_received as u64,
    }
}
