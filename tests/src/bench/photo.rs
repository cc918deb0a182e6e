//! Photos: the on-device pipeline on a generated 12 MP camera JPEG against the plain route
//! measured in the same run, output size, and uploads over loopback (throughput, bytes sent
//! again after a cut link, bytes sent for a photo the server already has).

use std::time::Instant;

use anyhow::{Result, ensure};
use gridsync_core::photo::{PhotoOptions, process, process_plain};
use gridsync_core::records::{Case, CaseSource, PhotoStage, Urgency};
use gridsync_core::sample::{CameraExif, camera_photo};
use gridsync_core::store::PhotoTarget;
use gridsync_core::upload::UploadOptions;
use serde_json::{Map, Value, json};

use super::{grid, ms, server_and_two_workers};
use crate::proxy::{Link, Proxy};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn case() -> Case {
    Case {
        title: "路灯不亮".into(),
        source: CaseSource::Inspection,
        category: "01".into(),
        subcategory: "0102".into(),
        location: None,
        address: "城南社区 3 幢".into(),
        description: "3 幢门口路灯不亮".into(),
        urgency: Urgency::Normal,
        reported_by: "周网格".into(),
        reported_at: gridsync_core::clock::now_ms(),
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    }
}

/// The photo scenario (see the module comment). Quick mode uses a 3 MP photo and one run.
pub async fn photo_scenario(quick: bool, out: &mut Map<String, Value>) -> Result<()> {
    let (w, h, runs) = if quick {
        (2000, 1500, 1)
    } else {
        (4000, 3000, 7)
    };
    let input = camera_photo(w, h, &CameraExif::default(), 42);
    let opts = PhotoOptions::default();
    // One thread: both routes run here, on this thread, one after the other.
    let mut fast = Vec::new();
    let mut plain = Vec::new();
    let mut result = None;
    for _ in 0..runs {
        let start = Instant::now();
        result = Some(process(&input, &opts)?);
        fast.push(ms(start));
        let start = Instant::now();
        let p = process_plain(&input, &opts)?;
        plain.push(ms(start));
        ensure!(p.width == 1600 && p.height == 1200, "plain route size");
    }
    let result = result.ok_or_else(|| anyhow::anyhow!("no run"))?;
    ensure!(
        (result.width, result.height) == (1600, 1200),
        "downscaled to 1600 px"
    );
    let (fast, plain) = (median(fast), median(plain));
    let suffix = if quick { "3mp" } else { "12mp" };
    out.insert("photo_input_bytes".into(), json!(input.len()));
    out.insert(format!("photo_pipeline_ms_{suffix}"), json!(fast));
    out.insert(format!("photo_pipeline_plain_ms_{suffix}"), json!(plain));
    out.insert(
        "photo_pipeline_speedup".into(),
        json!((plain / fast * 100.0).round() / 100.0),
    );
    let ratio = (result.full.len() + result.thumb.len()) as f64 / input.len() as f64;
    out.insert(
        "photo_output_bytes_ratio".into(),
        json!((ratio * 10_000.0).round() / 10_000.0),
    );
    ensure!(ratio < 1.0, "the output is smaller than the camera file");

    // Uploads on loopback: `n` photos on cases, synced, then their files.
    let dir = tempfile::tempdir()?;
    let (server, (a, client_a), (b, client_b)) = server_and_two_workers(dir.path()).await?;
    let n = if quick { 3 } else { 20 };
    let mut photos = Vec::new();
    for i in 0..n {
        let id = a.create(grid(), &case()).await?;
        let p = process(&camera_photo(w, h, &CameraExif::default(), i), &opts)?;
        let (_, r) = a
            .add_processed(PhotoTarget::Case(id), PhotoStage::Before, &p, None)
            .await?;
        photos.push(r);
    }
    client_a.sync(&a, 20).await?;
    let total: u64 = photos
        .iter()
        .map(|p| p.size + p.thumb_size.unwrap_or(0))
        .sum();
    let start = Instant::now();
    let report = client_a.upload_photos(&a, UploadOptions::default()).await?;
    let secs = start.elapsed().as_secs_f64();
    ensure!(
        report.completed == 2 * n as usize && report.bytes_sent == total,
        "every file uploaded once: {report:?}"
    );
    out.insert("photo_upload_bytes".into(), json!(total));
    out.insert(
        "photo_upload_mb_per_s_loopback".into(),
        json!(((total as f64 / 1_048_576.0 / secs) * 100.0).round() / 100.0),
    );

    // A cut link in the middle of one photo's full image: what is sent twice.
    let cut_case = a.create(grid(), &case()).await?;
    let p = process(&camera_photo(w, h, &CameraExif::default(), 99), &opts)?;
    let (_, cut_ref) = a
        .add_processed(PhotoTarget::Case(cut_case), PhotoStage::Before, &p, None)
        .await?;
    client_a.sync(&a, 20).await?;
    let files = cut_ref.size + cut_ref.thumb_size.unwrap_or(0);
    let proxy = Proxy::start(
        &server.url,
        Link {
            cut_after: Some(cut_ref.size / 2),
            ..Link::default()
        },
    )
    .await?;
    let via = gridsync_core::client::SyncClient::new(
        &proxy.url,
        gridsync_core::client::RetryPolicy::default(),
    )?;
    // Chunks smaller than the file, so the cut lands inside an upload of several.
    let opts_up = UploadOptions {
        chunk_bytes: 64 * 1024,
        ..UploadOptions::default()
    };
    let cut = via.upload_photos(&a, opts_up).await?;
    ensure!(
        proxy.was_cut() && cut.completed == 2,
        "resumed after the cut: {cut:?}"
    );
    out.insert("photo_chunk_bytes".into(), json!(opts_up.chunk_bytes));
    out.insert(
        "photo_resume_resent_bytes".into(),
        json!(cut.bytes_sent.saturating_sub(files)),
    );

    // The same camera file on another phone's case: the server has it already.
    let dup_case = b.create(grid(), &case()).await?;
    b.add_processed(PhotoTarget::Case(dup_case), PhotoStage::Before, &p, None)
        .await?;
    client_b.sync(&b, 20).await?;
    let dup = client_b.upload_photos(&b, UploadOptions::default()).await?;
    ensure!(dup.completed == 2, "known files complete: {dup:?}");
    out.insert("photo_dedup_resent_bytes".into(), json!(dup.bytes_sent));
    a.close().await;
    b.close().await;
    Ok(())
}
