//! `gridsync-field photo ...`: add a camera file to a case stage, a visit or a patrol, list a
//! document's photos with their upload state, fetch a photo from the server.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use gridsync_core::app::{NewPhoto, Replica};
use gridsync_core::photo::PhotoOptions;
use gridsync_core::store::PhotoTarget;
use gridsync_proto::{DocId, RecordId};
use serde_json::json;

use super::{Out, fmt_time};

#[derive(Subcommand)]
pub(crate) enum PhotoCmd {
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
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// The phone's longitude.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
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

pub(crate) async fn run(app: &Replica, out: &Out, cmd: PhotoCmd) -> Result<()> {
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
            let bytes =
                std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
            let (id, photo) = app
                .add_photo(NewPhoto {
                    target,
                    stage,
                    bytes,
                    fix: lat.zip(lon),
                    options: PhotoOptions {
                        long_edge,
                        quality,
                        ..PhotoOptions::default()
                    },
                })
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
            let photos = app.photos(id).await?;
            out.print(&photos, || {
                if photos.is_empty() {
                    return "no photos".to_owned();
                }
                photos
                    .iter()
                    .map(|p| {
                        let state = if !p.on_this_phone {
                            "on the server (fetch to see it)"
                        } else if p.uploaded {
                            "uploaded"
                        } else {
                            "waiting to upload"
                        };
                        format!(
                            "{}  {}  {}  {}  {} bytes  {}\n  full {}{}",
                            p.id,
                            p.entry,
                            p.stage_label,
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
            let path = app.fetch_photo(&sha256).await?;
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
