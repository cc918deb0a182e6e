//! `gridsync-field photo ...`: add a camera file to a case stage, a visit or a patrol, list a
//! document's photos with their upload state, fetch a photo from the server.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gridsync_core::Store;
use gridsync_core::client::{RetryPolicy, SyncClient};
use gridsync_core::photo::PhotoOptions;
use gridsync_core::records::{Gps, PhotoStage};
use gridsync_core::store::PhotoTarget;
use gridsync_proto::{DocId, RecordId};
use serde_json::json;

use super::{Out, fmt_time, parse_enum};

/// Photo commands.
#[derive(Subcommand)]
pub(super) enum PhotoCmd {
    /// Add a photo (JPEG, PNG or WebP; HEIC must be converted to JPEG first). It is turned
    /// upright, downscaled, stripped of metadata (capture time and GPS are kept in the
    /// record) and queued for upload after the next document sync.
    Add {
        /// The camera file.
        file: PathBuf,
        /// A case: the photo documents one stage of it.
        #[arg(long, conflicts_with_all = ["household", "inspection"])]
        case: Option<DocId>,
        /// before, during, after, check or record (default: record, or before for a case).
        #[arg(long)]
        stage: Option<String>,
        /// A household, with `--visit`: the photo belongs to that visit.
        #[arg(long, requires = "visit", conflicts_with = "inspection")]
        household: Option<DocId>,
        /// The visit (of `--household`).
        #[arg(long, requires = "household")]
        visit: Option<RecordId>,
        /// A patrol.
        #[arg(long)]
        inspection: Option<DocId>,
        /// The patrol's checkpoint the photo documents.
        #[arg(long, requires = "inspection")]
        checkpoint: Option<RecordId>,
        /// The phone's latitude, used when the photo has no GPS of its own.
        #[arg(long, requires = "lon")]
        lat: Option<f64>,
        /// The phone's longitude.
        #[arg(long, requires = "lat")]
        lon: Option<f64>,
        /// Longest edge of the stored image, in pixels.
        #[arg(long, default_value_t = PhotoOptions::default().long_edge)]
        long_edge: u32,
        /// JPEG quality, 1–100.
        #[arg(long, default_value_t = PhotoOptions::default().quality)]
        quality: u8,
    },
    /// List a document's photos and whether their files reached the server.
    List {
        /// The case, household or patrol.
        id: DocId,
    },
    /// Download a photo file (thumbnail or full image, by its hash) from the server.
    Fetch {
        /// The file's SHA-256 (from `photo list`).
        sha256: String,
        /// Also copy it here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub(super) async fn run(store: &Store, out: &Out, cmd: PhotoCmd) -> Result<()> {
    match cmd {
        PhotoCmd::Add {
            file,
            case,
            stage,
            household,
            visit,
            inspection,
            checkpoint,
            lat,
            lon,
            long_edge,
            quality,
        } => {
            let target = match (case, household.zip(visit), inspection) {
                (Some(c), None, None) => PhotoTarget::Case(c),
                (None, Some((household, visit)), None) => PhotoTarget::Visit { household, visit },
                (None, None, Some(doc)) => PhotoTarget::Inspection { doc, checkpoint },
                _ => bail!(
                    "name where the photo belongs: --case, --household with --visit, or --inspection"
                ),
            };
            let stage: PhotoStage = match (&stage, target) {
                (Some(s), _) => parse_enum(s)
                    .map_err(anyhow::Error::msg)
                    .context("--stage")?,
                (None, PhotoTarget::Case(_)) => PhotoStage::Before,
                (None, _) => PhotoStage::Record,
            };
            if !(1..=100).contains(&quality) {
                bail!("--quality: must be 1 to 100");
            }
            if long_edge < 64 {
                bail!("--long-edge: must be at least 64 pixels");
            }
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let opts = PhotoOptions {
                long_edge,
                quality,
                ..PhotoOptions::default()
            };
            let fix = lat.zip(lon).map(|(lat, lon)| Gps::new(lat, lon));
            let (id, photo) = store
                .add_photo(target, stage, bytes, opts, fix)
                .await
                .with_context(|| format!("adding {}", file.display()))?;
            out.print(&json!({"photo": id, "ref": photo}), || {
                format!(
                    "photo {id} added ({} bytes, {}×{}, taken {}{}); it uploads after the next sync",
                    photo.size,
                    photo.width.unwrap_or(0),
                    photo.height.unwrap_or(0),
                    fmt_time(photo.taken_at),
                    photo
                        .gps
                        .map(|g| format!(" at {:.5},{:.5}", g.lat, g.lon))
                        .unwrap_or_default()
                )
            })
        }
        PhotoCmd::List { id } => {
            let photos = store.photos_of(id).await?;
            let queue = store.upload_queue().await?;
            let pending = |sha: &str| queue.iter().any(|f| f.sha256 == sha);
            let here = |sha: &str| store.blob_path(sha).is_some_and(|p| p.exists());
            let rows: Vec<_> = photos
                .iter()
                .map(|p| {
                    json!({
                        "photo": p.photo_id,
                        "entry": p.entry,
                        "stage": p.stage,
                        "taken_at": p.taken_at,
                        "lat": p.lat,
                        "lon": p.lon,
                        "sha256": p.sha256,
                        "thumb_sha256": p.thumb_sha256,
                        "size": p.size,
                        "on_this_phone": here(&p.sha256),
                        "uploaded": here(&p.sha256) && !pending(&p.sha256),
                    })
                })
                .collect();
            out.print(&rows, || {
                if photos.is_empty() {
                    return "no photos".to_owned();
                }
                photos
                    .iter()
                    .map(|p| {
                        let state = if !here(&p.sha256) {
                            "on the server (fetch to see it)"
                        } else if pending(&p.sha256) {
                            "waiting to upload"
                        } else {
                            "uploaded"
                        };
                        format!(
                            "{}  {}  {}  {}  {} bytes  {}\n  full {}{}",
                            p.photo_id,
                            p.entry,
                            p.stage,
                            fmt_time(p.taken_at),
                            p.size,
                            state,
                            p.sha256,
                            p.thumb_sha256
                                .as_ref()
                                .map(|t| format!("\n  thumb {t}"))
                                .unwrap_or_default()
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            })
        }
        PhotoCmd::Fetch { sha256, out: copy } => {
            let server = SyncClient::enrolled_server(store)
                .await?
                .context("this phone is not enrolled with a server")?;
            let client = SyncClient::new(&server, RetryPolicy::default())?;
            let path = client.fetch_photo(store, &sha256).await?;
            if let Some(to) = &copy {
                std::fs::copy(&path, to).with_context(|| format!("writing {}", to.display()))?;
            }
            let shown = copy.unwrap_or(path);
            out.print(&json!({"sha256": sha256, "path": shown}), || {
                format!("photo {sha256} is at {}", shown.display())
            })
        }
    }
}
