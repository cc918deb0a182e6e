//! Photos end to end on a real server (object store in its data folder): uploads go after the
//! documents that reference them, thumbnails first; a cut link resends at most one chunk; a
//! known file costs no bytes; a wrong file is refused and nothing is kept; downloads are scoped
//! to who may read a referencing document; evidence photos are questioned, never refused.

use std::time::Duration;

use base64::Engine;
use gridsync_core::clock::now_ms;
use gridsync_core::photo::PhotoOptions;
use gridsync_core::records::{Gps, PhotoStage};
use gridsync_core::sample::{CameraExif, camera_photo};
use gridsync_core::store::PhotoTarget;
use gridsync_core::upload::UploadOptions;
use gridsync_core::workflow::Action;
use gridsync_proto::DocId;
use gridsync_server::auth::Role;
use gridsync_server::storage::PhotoStorage;
use gridsync_tests::proxy::{Link, Proxy};

use crate::harness::{GRID_A, GRID_B, Phone, TOWN, TestServer, code, quick_retry, sample_case};

const CHUNK: usize = 32 * 1024;

fn opts() -> UploadOptions {
    UploadOptions {
        chunk_bytes: CHUNK,
        ..UploadOptions::default()
    }
}

fn http() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

/// A case in `grid` reported by `phone`, with a photo at `stage` from `input`.
async fn case_with_photo(
    phone: &Phone,
    grid: &str,
    stage: PhotoStage,
    input: Vec<u8>,
) -> (DocId, gridsync_core::records::PhotoRef) {
    let id = phone
        .store
        .create(code(grid), &sample_case())
        .await
        .expect("case");
    let (_, photo) = phone
        .store
        .add_photo(
            PhotoTarget::Case(id),
            stage,
            input,
            PhotoOptions::default(),
            None,
        )
        .await
        .expect("photo");
    (id, photo)
}

fn thumb(p: &gridsync_core::records::PhotoRef) -> &str {
    p.thumb_sha256.as_deref().expect("thumbnail")
}

async fn get(
    server: &TestServer,
    phone: &Phone,
    sha: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut req = http()
        .get(format!("{}/v1/photos/{sha}", server.url))
        .bearer_auth(phone.token().await);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.expect("send")
}

async fn error_code(resp: reqwest::Response) -> (u16, String) {
    let status = resp.status().as_u16();
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.unwrap_or_default()).unwrap_or_default();
    (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
}

/// Files under the server's object store, relative to it.
fn stored_files(server: &TestServer, under: &str) -> Vec<String> {
    let root = server.data_dir().join("photos").join(under);
    let mut out = Vec::new();
    let mut stack = vec![root.clone()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(&root).expect("inside").display().to_string());
            }
        }
    }
    out.sort();
    out
}

#[tokio::test]
async fn photos_upload_after_their_case_and_are_served_only_to_readers() {
    let server = TestServer::start().await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let other = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_B]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let input = camera_photo(3000, 2000, &CameraExif::default(), 1);
    let (case, photo) = case_with_photo(&worker, GRID_A, PhotoStage::Before, input).await;

    // Before the case reached the server, nothing goes.
    let early = worker
        .client
        .upload_photos(&worker.store, opts())
        .await
        .expect("upload");
    assert_eq!(
        (early.completed, early.deferred, early.bytes_sent),
        (0, 2, 0)
    );
    worker.sync().await;
    let report = worker
        .client
        .upload_photos(&worker.store, opts())
        .await
        .expect("upload");
    assert_eq!(report.completed, 2, "{report:?}");
    assert_eq!(
        report.bytes_sent,
        photo.size + photo.thumb_size.expect("size")
    );
    assert!(report.failed.is_empty());
    assert!(worker.store.upload_queue().await.expect("queue").is_empty());
    let blobs = stored_files(&server, "blobs");
    assert_eq!(blobs.len(), 2);
    assert!(
        stored_files(&server, "partial").is_empty(),
        "no chunks left"
    );

    // The dispatcher (whole town) reads the case, so it gets both files, byte for byte.
    dispatcher.sync().await;
    for (sha, _, _) in photo.files() {
        let path = dispatcher
            .client
            .fetch_photo(&dispatcher.store, sha)
            .await
            .expect("fetch");
        let bytes = std::fs::read(path).expect("read");
        assert_eq!(gridsync_core::photo::sha256_hex(&bytes), sha);
    }
    let full = photo.sha256.as_str();
    let resp = get(&server, &dispatcher, full, &[]).await;
    assert_eq!(resp.status().as_u16(), 200);
    let etag = resp.headers()["etag"].to_str().expect("etag").to_owned();
    assert_eq!(etag, format!("\"{full}\""));
    assert!(
        resp.headers()["cache-control"]
            .to_str()
            .expect("cc")
            .contains("immutable")
    );
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let all = resp.bytes().await.expect("body");
    let resp = get(&server, &dispatcher, full, &[("range", "bytes=100-199")]).await;
    assert_eq!(resp.status().as_u16(), 206);
    assert_eq!(
        resp.headers()["content-range"].to_str().expect("range"),
        format!("bytes 100-199/{}", photo.size)
    );
    assert_eq!(resp.bytes().await.expect("body"), all.slice(100..200));
    let resp = get(&server, &dispatcher, full, &[("range", "bytes=-10")]).await;
    assert_eq!(
        resp.bytes().await.expect("body"),
        all.slice(all.len() - 10..)
    );
    let resp = get(&server, &dispatcher, full, &[("if-none-match", &etag)]).await;
    assert_eq!(resp.status().as_u16(), 304);
    let resp = get(&server, &dispatcher, full, &[("range", "bytes=999999999-")]).await;
    assert_eq!(
        error_code(resp).await,
        (416, "range_not_satisfiable".into())
    );

    // A worker of another grid cannot read the case: the photo does not exist for it.
    for sha in [full, thumb(&photo)] {
        assert_eq!(
            error_code(get(&server, &other, sha, &[]).await).await,
            (404, "photo_not_found".into())
        );
    }
    let err = other
        .client
        .fetch_photo(&other.store, full)
        .await
        .expect_err("not in its scope");
    assert!(err.to_string().contains("photo_not_found"), "{err}");
    // Nor may it start an upload of it, nor can anyone without a token.
    let (status, code) = tus_create(&server, &other, full, photo.size).await;
    assert_eq!((status, code.as_str()), (403, "photo_not_referenced"));
    let resp = http()
        .get(format!("{}/v1/photos/{full}", server.url))
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 401);
    let _ = case;
}

async fn tus_create(server: &TestServer, phone: &Phone, sha: &str, length: u64) -> (u16, String) {
    let meta = base64::engine::general_purpose::STANDARD.encode(sha);
    let resp = http()
        .post(format!("{}/v1/uploads", server.url))
        .bearer_auth(phone.token().await)
        .header("tus-resumable", "1.0.0")
        .header("upload-length", length)
        .header("upload-metadata", format!("sha256 {meta}"))
        .send()
        .await
        .expect("send");
    let status = resp.status().as_u16();
    if status == 201 {
        return (
            status,
            resp.headers()["upload-offset"]
                .to_str()
                .expect("offset")
                .to_owned(),
        );
    }
    error_code(resp).await
}

async fn tus_patch(
    server: &TestServer,
    phone: &Phone,
    sha: &str,
    offset: u64,
    body: Vec<u8>,
    checksum: Option<String>,
) -> reqwest::Response {
    let mut req = http()
        .patch(format!("{}/v1/uploads/{sha}", server.url))
        .bearer_auth(phone.token().await)
        .header("tus-resumable", "1.0.0")
        .header("upload-offset", offset)
        .header("content-type", "application/offset+octet-stream");
    if let Some(c) = checksum {
        req = req.header("upload-checksum", c);
    }
    req.body(body).send().await.expect("send")
}

#[tokio::test]
async fn a_known_photo_costs_no_bytes_and_reuse_on_two_cases_is_flagged() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "郑网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let input = camera_photo(2400, 1800, &CameraExif::default(), 2);
    let (case_a, pa) = case_with_photo(&a, GRID_A, PhotoStage::After, input.clone()).await;
    // The same camera file on another case, from another phone: the pipeline is
    // deterministic, so it is the same two files.
    let (case_b, pb) = case_with_photo(&b, GRID_A, PhotoStage::After, input).await;
    assert_eq!(
        (pa.sha256.as_str(), thumb(&pa)),
        (pb.sha256.as_str(), thumb(&pb))
    );
    a.sync().await;
    b.sync().await;
    let first = a
        .client
        .upload_photos(&a.store, opts())
        .await
        .expect("upload");
    assert_eq!(first.completed, 2);
    let second = b
        .client
        .upload_photos(&b.store, opts())
        .await
        .expect("upload");
    assert_eq!(
        (second.completed, second.already_there, second.bytes_sent),
        (2, 2, 0)
    );
    assert_eq!(stored_files(&server, "blobs").len(), 2);

    // Nothing was refused, and the dispatcher sees both cases questioned.
    dispatcher.sync().await;
    let flags = evidence_flags(&server, &dispatcher).await;
    let reused: Vec<_> = flags
        .iter()
        .filter(|f| f["kind"] == "same_image")
        .map(|f| {
            (
                f["case"].as_str().expect("case").to_owned(),
                f["other_case"].as_str().expect("other").to_owned(),
            )
        })
        .collect();
    assert!(
        reused.contains(&(case_a.to_string(), case_b.to_string())),
        "{flags:?}"
    );
    assert!(
        reused.contains(&(case_b.to_string(), case_a.to_string())),
        "{flags:?}"
    );
    // Workers may not ask.
    let resp = http()
        .get(format!("{}/v1/evidence-flags", server.url))
        .bearer_auth(a.token().await)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 403);
}

async fn evidence_flags(server: &TestServer, phone: &Phone) -> Vec<serde_json::Value> {
    let resp = http()
        .get(format!("{}/v1/evidence-flags", server.url))
        .bearer_auth(phone.token().await)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    v["flags"].as_array().expect("flags").clone()
}

#[tokio::test]
async fn wrong_bytes_are_refused_and_nothing_is_kept() {
    let server = TestServer::start().await;
    let phone = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let (_, photo) = case_with_photo(
        &phone,
        GRID_A,
        PhotoStage::Before,
        camera_photo(800, 600, &CameraExif::default(), 3),
    )
    .await;
    phone.sync().await;
    let sha = thumb(&photo).to_owned();
    let size = photo.thumb_size.expect("size");
    let good = phone
        .store
        .read_blob(&sha)
        .await
        .expect("read")
        .expect("here");

    // A length that is not the referenced one is not an upload of this photo.
    let (status, code) = tus_create(&server, &phone, &sha, size + 1).await;
    assert_eq!((status, code.as_str()), (403, "photo_not_referenced"));
    let (status, code) = tus_create(&server, &phone, &sha, 64 * 1024 * 1024).await;
    assert_eq!((status, code.as_str()), (413, "photo_too_large"));
    // Without the protocol header, a standard client's mistake is named.
    let resp = http()
        .post(format!("{}/v1/uploads", server.url))
        .bearer_auth(phone.token().await)
        .header("upload-length", size)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.headers()["tus-version"], "1.0.0");
    assert_eq!(resp.headers()["tus-resumable"], "1.0.0");
    assert_eq!(
        error_code(resp).await,
        (412, "unsupported_tus_version".into())
    );

    assert_eq!(
        tus_create(&server, &phone, &sha, size).await,
        (201, "0".into())
    );
    // A chunk whose checksum does not match is not stored.
    let resp = tus_patch(
        &server,
        &phone,
        &sha,
        0,
        good[..100].to_vec(),
        Some("sha1 AAAAAAAAAAAAAAAAAAAAAAAAAAA=".into()),
    )
    .await;
    assert_eq!(error_code(resp).await, (460, "checksum_mismatch".into()));
    // A first chunk that is not an image is refused.
    let resp = tus_patch(
        &server,
        &phone,
        &sha,
        0,
        b"GIF89a not a photo".to_vec(),
        None,
    )
    .await;
    assert_eq!(
        error_code(resp).await,
        (415, "unsupported_photo_type".into())
    );
    // A chunk at the wrong offset is refused with the server's offset.
    let resp = tus_patch(&server, &phone, &sha, 5, good[5..10].to_vec(), None).await;
    assert_eq!(error_code(resp).await, (409, "offset_mismatch".into()));
    // Bytes of the right length and type but not the photo: refused at the end, and the
    // chunks are thrown away.
    let mut wrong = good.clone();
    let last = wrong.len() - 3;
    wrong[last] ^= 0x55;
    let resp = tus_patch(&server, &phone, &sha, 0, wrong, None).await;
    assert_eq!(error_code(resp).await, (460, "hash_mismatch".into()));
    assert!(server.storage.blob(&sha).await.expect("blob").is_none());
    assert!(
        stored_files(&server, "").is_empty(),
        "{:?}",
        stored_files(&server, "")
    );
    assert!(
        server
            .storage
            .upload(&sha, phone.store.device())
            .await
            .expect("upload")
            .is_none()
    );

    // The phone's own upload then goes through from the start.
    let report = phone
        .client
        .upload_photos(&phone.store, opts())
        .await
        .expect("upload");
    assert_eq!(report.completed, 2, "{report:?}");
    assert!(server.storage.blob(&sha).await.expect("blob").is_some());
}

#[tokio::test]
async fn a_cut_link_resends_at_most_one_chunk() {
    let server = TestServer::start().await;
    let phone = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let input = camera_photo(4000, 3000, &CameraExif::default(), 4);
    let (_, photo) = case_with_photo(&phone, GRID_A, PhotoStage::Before, input).await;
    phone.sync().await;
    let total = photo.size + photo.thumb_size.expect("size");
    // The link drops once, in the middle of the full image.
    let proxy = Proxy::start(
        &server.url,
        Link {
            cut_after: Some(photo.size / 2),
            ..Link::default()
        },
    )
    .await
    .expect("proxy");
    let client = gridsync_core::client::SyncClient::new(&proxy.url, quick_retry()).expect("client");
    let report = client
        .upload_photos(&phone.store, opts())
        .await
        .expect("upload");
    assert!(proxy.was_cut(), "the link was cut");
    assert_eq!(report.completed, 2, "resumed after the cut: {report:?}");
    let resent = report.bytes_sent - total;
    assert!(
        resent <= CHUNK as u64,
        "{resent} bytes sent twice, more than one chunk ({CHUNK})"
    );
    let stored = server
        .storage
        .blob(&photo.sha256)
        .await
        .expect("blob")
        .expect("stored");
    assert_eq!(stored.size, photo.size);
}

#[tokio::test]
async fn two_phones_uploading_one_photo_at_once_end_with_one_copy() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "郑网格", Role::Worker, &[GRID_A]).await;
    let input = camera_photo(3000, 2000, &CameraExif::default(), 5);
    let (_, pa) = case_with_photo(&a, GRID_A, PhotoStage::Before, input.clone()).await;
    let (_, _pb) = case_with_photo(&b, GRID_A, PhotoStage::Before, input).await;
    a.sync().await;
    b.sync().await;
    let small = UploadOptions {
        chunk_bytes: 8 * 1024,
        ..UploadOptions::default()
    };
    let (ra, rb) = tokio::join!(
        a.client.upload_photos(&a.store, small),
        b.client.upload_photos(&b.store, small)
    );
    let (ra, rb) = (ra.expect("a"), rb.expect("b"));
    assert_eq!((ra.completed, rb.completed), (2, 2), "{ra:?} {rb:?}");
    assert!(ra.failed.is_empty() && rb.failed.is_empty());
    assert_eq!(stored_files(&server, "blobs").len(), 2);
    assert!(stored_files(&server, "partial").is_empty());
    let stored = server
        .storage
        .blob(&pa.sha256)
        .await
        .expect("blob")
        .expect("stored");
    assert_eq!(stored.size, pa.size);
    // Whoever finished, the bytes are the photo's.
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    dispatcher.sync().await;
    dispatcher
        .client
        .fetch_photo(&dispatcher.store, &pa.sha256)
        .await
        .expect("fetch verifies the hash");
}

#[tokio::test]
async fn metered_links_send_thumbnails_only() {
    let server = TestServer::start().await;
    let phone = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let (_, photo) = case_with_photo(
        &phone,
        GRID_A,
        PhotoStage::Before,
        camera_photo(2000, 1500, &CameraExif::default(), 6),
    )
    .await;
    phone.sync().await;
    let metered = UploadOptions {
        metered: true,
        ..opts()
    };
    let r = phone
        .client
        .upload_photos(&phone.store, metered)
        .await
        .expect("upload");
    assert_eq!((r.completed, r.deferred), (1, 1));
    assert_eq!(r.bytes_sent, photo.thumb_size.expect("size"));
    let left = phone.store.upload_queue().await.expect("queue");
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].sha256, photo.sha256);
    let r = phone
        .client
        .upload_photos(&phone.store, opts())
        .await
        .expect("upload");
    assert_eq!((r.completed, r.bytes_sent), (1, photo.size));
}

#[tokio::test]
async fn a_department_sees_photos_of_the_cases_it_holds_only() {
    let server = TestServer::start().await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let d01 = crate::departments::clerk(&server, "D01", 1).await;
    let d05 = crate::departments::clerk(&server, "D05", 1).await;
    let id = crate::departments::dispatched_case(&server, &worker, &dispatcher).await;
    let (_, photo) = worker
        .store
        .add_photo(
            PhotoTarget::Case(id),
            PhotoStage::Check,
            camera_photo(1200, 900, &CameraExif::default(), 7),
            PhotoOptions::default(),
            None,
        )
        .await
        .expect("photo");
    worker.sync().await;
    let r = worker
        .client
        .upload_photos(&worker.store, opts())
        .await
        .expect("upload");
    assert_eq!(r.completed, 2);
    d01.sync().await;
    d01.client
        .fetch_photo(&d01.store, &photo.sha256)
        .await
        .expect("the lead department holds the case");
    assert_eq!(
        error_code(get(&server, &d05, &photo.sha256, &[]).await).await,
        (404, "photo_not_found".into())
    );
}

#[tokio::test]
async fn evidence_photos_taken_before_the_report_far_away_or_near_copies_are_flagged() {
    let server = TestServer::start().await;
    let worker = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let dispatcher = Phone::enroll(&server, "调度员", Role::Dispatcher, &[TOWN]).await;
    let here = Gps::new(30.274_15, 120.155_07);
    let mut reported = sample_case();
    reported.location = Some(here);
    // Reported 2025-10-09; the camera says 2025-01-01 for the first photo.
    let early = CameraExif {
        taken: Some("2025:01:01 10:00:00".into()),
        gps: Some((here.lat, here.lon)),
        ..CameraExif::default()
    };
    let far = CameraExif {
        taken: None,
        offset: None,
        gps: Some((here.lat + 0.02, here.lon)), // ~2.2 km north
        ..CameraExif::default()
    };
    // Another picture altogether (stripes, not the sample's quadrants).
    let other_scene = {
        let img = image::RgbImage::from_fn(1600, 1200, |x, y| {
            let v = if (x / 80 + y / 300) % 2 == 0 { 30 } else { 220 };
            image::Rgb([v, v / 2, 255 - v])
        });
        let mut jpeg = std::io::Cursor::new(Vec::new());
        img.write_to(&mut jpeg, image::ImageFormat::Jpeg)
            .expect("encode");
        gridsync_core::sample::with_exif(jpeg.get_ref(), &gridsync_core::sample::exif_block(&far))
    };
    let case_early = worker
        .store
        .create(code(GRID_A), &reported)
        .await
        .expect("case");
    let case_far = worker
        .store
        .create(code(GRID_A), &reported)
        .await
        .expect("case");
    let case_copy = worker
        .store
        .create(code(GRID_A), &reported)
        .await
        .expect("case");
    let scene = camera_photo(1600, 1200, &early, 8);
    for (case, input) in [
        (case_early, scene.clone()),
        (case_far, other_scene),
        // The same scene saved again at another size and quality: another file, the same picture.
        (case_copy, {
            let img = image::load_from_memory(&scene).expect("decode").resize(
                1400,
                1050,
                image::imageops::FilterType::Triangle,
            );
            let mut out = std::io::Cursor::new(Vec::new());
            img.write_to(&mut out, image::ImageFormat::Png)
                .expect("encode");
            out.into_inner()
        }),
    ] {
        worker
            .store
            .add_photo(
                PhotoTarget::Case(case),
                PhotoStage::After,
                input,
                PhotoOptions::default(),
                None,
            )
            .await
            .expect("photo");
    }
    let actor = worker.store.actor().await.expect("actor");
    for case in [case_early, case_far, case_copy] {
        worker
            .store
            .case_action(case, &actor, Action::Report, "", now_ms(), |_, _| {
                Ok(Default::default())
            })
            .await
            .expect("report");
    }
    let report = worker.sync().await;
    assert!(
        report.rejected.is_empty(),
        "nothing is refused for evidence: {report:?}"
    );
    let up = worker
        .client
        .upload_photos(&worker.store, opts())
        .await
        .expect("upload");
    assert_eq!(up.completed, 6);
    let flags = evidence_flags(&server, &dispatcher).await;
    let has = |case: DocId, kind: &str| {
        flags
            .iter()
            .any(|f| f["case"] == case.to_string() && f["kind"] == kind)
    };
    assert!(has(case_early, "before_report"), "{flags:?}");
    assert!(has(case_far, "far_from_case"), "{flags:?}");
    assert!(
        has(case_copy, "near_duplicate") && has(case_early, "near_duplicate"),
        "{flags:?}"
    );
    assert!(
        !has(case_far, "near_duplicate"),
        "a different picture: {flags:?}"
    );
    // One case's flags on request, and the indicator counts the three cases.
    let resp = http()
        .get(format!("{}/v1/evidence-flags?case={case_far}", server.url))
        .bearer_auth(dispatcher.token().await)
        .send()
        .await
        .expect("send");
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    assert!(
        v["flags"]
            .as_array()
            .expect("flags")
            .iter()
            .all(|f| f["case"] == case_far.to_string())
    );
    let resp = http()
        .get(format!(
            "{}/v1/indicators?from=2025-01-01&to=2027-01-01",
            server.url
        ))
        .bearer_auth(dispatcher.token().await)
        .send()
        .await
        .expect("send");
    let v: serde_json::Value =
        serde_json::from_slice(&resp.bytes().await.expect("body")).expect("json");
    assert_eq!(v["total"]["evidence_flagged"], 3, "{v}");
}

#[tokio::test]
async fn a_phone_killed_mid_upload_resumes_after_restart() {
    let server = TestServer::start().await;
    let phone = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let (_, photo) = case_with_photo(
        &phone,
        GRID_A,
        PhotoStage::Before,
        camera_photo(4000, 3000, &CameraExif::default(), 10),
    )
    .await;
    phone.sync().await;
    let store_path = phone._dir.path().join("phone.db");
    // A slow link, so the upload is surely under way when the phone dies.
    let slow = Proxy::start(
        &server.url,
        Link {
            delay_per_16k: Some(Duration::from_millis(40)),
            ..Link::default()
        },
    )
    .await
    .expect("proxy");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-test-phone"))
        .arg(&store_path)
        .arg(&slow.url)
        .arg("16384")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the phone");
    let device = phone.store.device();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let offset_at_kill = loop {
        if let Some(up) = server
            .storage
            .upload(&photo.sha256, device)
            .await
            .expect("upload")
            && up.offset > 0
        {
            break up.offset;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upload never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(offset_at_kill < photo.size, "killed mid-upload");
    drop(slow);

    // Restarted, the phone continues where the server is.
    // (Asynchronously: the server answering it runs on this test's runtime.)
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_gridsync-test-phone"))
        .arg(&store_path)
        .arg(&server.url)
        .arg("16384")
        .output()
        .await
        .expect("run the phone again");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("report");
    let sent = report["bytes_sent"].as_u64().expect("bytes");
    let held = server
        .storage
        .upload(&photo.sha256, device)
        .await
        .expect("upload");
    assert!(held.is_none(), "the upload finished: {report}");
    assert!(
        sent <= photo.size - offset_at_kill + 16384,
        "sent {sent} after the restart; {offset_at_kill} of {} were already there",
        photo.size
    );
    assert!(
        server
            .storage
            .blob(&photo.sha256)
            .await
            .expect("blob")
            .is_some()
    );
}
