//! The photo pipeline and the phone's photo store: upright output for every EXIF orientation,
//! evidence kept and everything else stripped, sizes, typed errors, the upload queue.

use gridsync_core::Store;
use gridsync_core::photo::{PhotoError, PhotoOptions, process, process_plain};
use gridsync_core::records::{Case, EvidenceSource, PhotoFile, PhotoStage};
use gridsync_core::sample::{CameraExif, camera_photo};
use gridsync_core::store::PhotoTarget;

use crate::helpers::{case, grid};

fn decode(jpeg: &[u8]) -> image::RgbImage {
    image::load_from_memory_with_format(jpeg, image::ImageFormat::Jpeg)
        .expect("output decodes")
        .into_rgb8()
}

/// The colour at the centre of a quadrant: which of red, green, blue, white it is.
fn quadrant(img: &image::RgbImage, right: bool, bottom: bool) -> &'static str {
    let (w, h) = img.dimensions();
    let x = if right { w * 3 / 4 } else { w / 4 };
    let y = if bottom { h * 3 / 4 } else { h / 4 };
    let [r, g, b] = img.get_pixel(x, y).0;
    match (r > 150, g > 150, b > 150) {
        (true, false, false) => "red",
        (false, true, false) => "green",
        (false, false, true) => "blue",
        (true, true, true) => "white",
        _ => "other",
    }
}

#[test]
fn every_exif_orientation_comes_out_upright() {
    for orientation in 1..=8u16 {
        let meta = CameraExif {
            orientation,
            ..CameraExif::default()
        };
        // Upright 120×80; orientations 5–8 are stored 80×120.
        let input = camera_photo(120, 80, &meta, 1);
        let out = process(&input, &PhotoOptions::default()).expect("processes");
        for (bytes, name) in [(&out.full, "full"), (&out.thumb, "thumb")] {
            let img = decode(bytes);
            assert_eq!(
                img.dimensions(),
                (120, 80),
                "orientation {orientation}, {name}: upright size"
            );
            let corners = [
                quadrant(&img, false, false),
                quadrant(&img, true, false),
                quadrant(&img, false, true),
                quadrant(&img, true, true),
            ];
            assert_eq!(
                corners,
                ["red", "green", "blue", "white"],
                "orientation {orientation}, {name}: quadrants"
            );
        }
        assert_eq!((out.width, out.height), (120, 80));
    }
}

fn has_exif(jpeg: &[u8]) -> bool {
    let mut c = std::io::Cursor::new(jpeg);
    exif::Reader::new().read_from_container(&mut c).is_ok()
        || jpeg.windows(6).any(|w| w == b"Exif\0\0")
}

#[test]
fn time_and_gps_are_kept_as_evidence_and_every_tag_is_gone_from_the_files() {
    let meta = CameraExif {
        orientation: 6,
        gps: Some((-33.856_8, -151.215_3)),
        ..CameraExif::default()
    };
    let input = camera_photo(200, 100, &meta, 2);
    assert!(has_exif(&input), "the fixture carries EXIF");
    assert!(input.windows(12).any(|w| w == b"SN-0042-1337"));
    let out = process(&input, &PhotoOptions::default()).expect("processes");
    // 2026-11-30 09:15:42 +08:00
    assert_eq!(out.taken_at, Some(1_796_001_342_000));
    let gps = out.gps.expect("gps kept");
    assert!((gps.lat + 33.856_8).abs() < 1e-4, "{gps:?}");
    assert!((gps.lon + 151.215_3).abs() < 1e-4, "{gps:?}");
    for bytes in [&out.full, &out.thumb] {
        assert!(!has_exif(bytes), "no EXIF block in the output");
        for secret in [&b"SN-0042-1337"[..], b"GridPhone", "王建国".as_bytes()] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        // Nothing but the image itself: no APPn segment other than JFIF's APP0.
        let mut i = 2;
        while i + 4 <= bytes.len() && bytes[i] == 0xFF {
            let marker = bytes[i + 1];
            if marker == 0xDA {
                break;
            }
            assert!(
                !(0xE1..=0xEF).contains(&marker) && marker != 0xFE,
                "metadata segment {marker:02x} in the output"
            );
            let len = usize::from(u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]));
            i += 2 + len;
        }
    }
    assert_eq!(out.full_sha256, gridsync_core::photo::sha256_hex(&out.full));
    assert_eq!(
        out.thumb_sha256,
        gridsync_core::photo::sha256_hex(&out.thumb)
    );
}

#[test]
fn a_capture_time_without_offset_is_china_time_and_no_exif_is_no_evidence() {
    let meta = CameraExif {
        offset: None,
        ..CameraExif::default()
    };
    let out = process(&camera_photo(64, 48, &meta, 3), &PhotoOptions::default()).expect("ok");
    assert_eq!(out.taken_at, Some(1_796_001_342_000));
    let bare = CameraExif {
        taken: None,
        offset: None,
        gps: None,
        ..CameraExif::default()
    };
    let out = process(&camera_photo(64, 48, &bare, 3), &PhotoOptions::default()).expect("ok");
    assert_eq!((out.taken_at, out.gps), (None, None));
    // The reference then takes the phone's clock and fix, and says so.
    let fix = gridsync_core::records::Gps::new(30.0, 120.0);
    let r =
        gridsync_core::records::PhotoRef::from_processed(&out, PhotoStage::After, 42, Some(fix));
    assert_eq!(r.taken_at, 42);
    assert_eq!(r.time_source, Some(EvidenceSource::Device));
    assert_eq!(r.gps_source, Some(EvidenceSource::Device));
}

#[test]
fn a_camera_photo_is_downscaled_and_its_thumbnail_made() {
    let input = camera_photo(4000, 3000, &CameraExif::default(), 4);
    let fast = process(&input, &PhotoOptions::default()).expect("fast route");
    assert_eq!((fast.width, fast.height), (1600, 1200));
    assert_eq!(decode(&fast.thumb).dimensions(), (320, 240));
    assert!(
        fast.full.len() * 100 <= input.len() * 15,
        "output {} of input {}",
        fast.full.len(),
        input.len()
    );
    // The reduced-DCT route looks like the plain route: same size, close pixels.
    let plain = process_plain(&input, &PhotoOptions::default()).expect("plain route");
    let (a, b) = (decode(&fast.full), decode(&plain.full));
    assert_eq!(a.dimensions(), b.dimensions());
    let diff: u64 = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| u64::from(x.abs_diff(*y)))
        .sum();
    let mean = diff as f64 / a.as_raw().len() as f64;
    assert!(mean < 8.0, "mean channel difference {mean}");
    // A small photo is never enlarged.
    let small = process(
        &camera_photo(640, 480, &CameraExif::default(), 5),
        &PhotoOptions::default(),
    )
    .expect("small");
    assert_eq!((small.width, small.height), (640, 480));
}

#[test]
fn png_and_webp_are_read_too() {
    let img = image::RgbImage::from_fn(300, 200, |x, _| image::Rgb([(x % 256) as u8, 90, 160]));
    for fmt in [image::ImageFormat::Png, image::ImageFormat::WebP] {
        let mut bytes = std::io::Cursor::new(Vec::new());
        img.write_to(&mut bytes, fmt).expect("encode fixture");
        let out = process(bytes.get_ref(), &PhotoOptions::default()).expect("processes");
        assert_eq!((out.width, out.height), (300, 200), "{fmt:?}");
        assert_eq!(&out.full[..3], &[0xFF, 0xD8, 0xFF], "stored as JPEG");
    }
}

#[test]
fn bad_files_get_typed_errors() {
    let opts = PhotoOptions::default();
    let good = camera_photo(400, 300, &CameraExif::default(), 6);
    assert_eq!(process(&[], &opts), Err(PhotoError::Empty));
    assert!(matches!(
        process(b"this is a note, not a photo", &opts),
        Err(PhotoError::Unsupported { .. })
    ));
    let heic = b"\0\0\0\x18ftypheic\0\0\0\0mif1heic";
    let e = process(heic, &opts).expect_err("heic");
    assert_eq!(e, PhotoError::Heic);
    assert!(e.to_string().contains("JPEG"), "{e}");
    // Cut in the middle of the image data.
    let cut = &good[..good.len() / 2];
    assert!(
        matches!(
            process(cut, &opts),
            Err(PhotoError::Corrupt { format: "jpeg", .. })
        ),
        "{:?}",
        process(cut, &opts)
    );
    // A header that claims an enormous image is refused before any pixel is allocated.
    let mut huge = good.clone();
    let sof = huge
        .windows(2)
        .position(|w| w == [0xFF, 0xC0])
        .expect("baseline SOF");
    huge[sof + 5..sof + 9].copy_from_slice(&[0xFF, 0xFF, 0xFF, 0xFF]);
    assert!(matches!(
        process(&huge, &opts),
        Err(PhotoError::TooLarge { .. })
    ));
}

async fn phone() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("phone.db"))
        .await
        .expect("store");
    (dir, store)
}

#[tokio::test]
async fn an_added_photo_is_on_disk_referenced_and_queued_thumbnail_first() {
    let (_dir, store) = phone().await;
    let id = store.create(grid(), &case()).await.expect("case");
    let input = camera_photo(2000, 1500, &CameraExif::default(), 7);
    let (pid, photo) = store
        .add_photo(
            PhotoTarget::Case(id),
            PhotoStage::After,
            input,
            PhotoOptions::default(),
            None,
        )
        .await
        .expect("added");
    let c: Case = store.read(id).await.expect("read");
    let stored = &c.photos[&pid];
    assert_eq!(stored.sha256, photo.sha256);
    assert_eq!(stored.author, Some(store.device()));
    assert_eq!(stored.time_source, Some(EvidenceSource::Exif));
    for (sha, size, _) in photo.files() {
        let bytes = store.read_blob(sha).await.expect("read").expect("on disk");
        assert_eq!(bytes.len() as u64, size);
        assert_eq!(gridsync_core::photo::sha256_hex(&bytes), sha);
    }
    let queue = store.upload_queue().await.expect("queue");
    assert_eq!(
        queue.iter().map(|f| f.kind).collect::<Vec<_>>(),
        [PhotoFile::Thumb, PhotoFile::Full]
    );
    assert!(
        queue.iter().all(|f| f.waiting_for_sync),
        "the case is not synced yet"
    );
    store
        .set_uploaded(&queue[0].sha256, queue[0].size, true)
        .await
        .expect("mark");
    assert_eq!(store.upload_queue().await.expect("queue").len(), 1);
    // A photo for a visit that does not exist changes nothing.
    let hh = store
        .create(grid(), &crate::helpers::household())
        .await
        .expect("household");
    let err = store
        .add_photo(
            PhotoTarget::Visit {
                household: hh,
                visit: gridsync_proto::RecordId::new(),
            },
            PhotoStage::Record,
            camera_photo(100, 100, &CameraExif::default(), 8),
            PhotoOptions::default(),
            None,
        )
        .await
        .expect_err("no such visit");
    assert!(err.to_string().contains("no visit"), "{err}");
    assert!(store.photos_of(hh).await.expect("photos").is_empty());
}
