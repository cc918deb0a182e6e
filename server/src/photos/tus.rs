//! Resumable uploads, tus 1.0 (core, creation, checksum, expiration), keyed by the file's
//! SHA-256: `POST /v1/uploads` (Upload-Length, Upload-Metadata `sha256 <base64>`) creates the
//! device's upload of that file at `/v1/uploads/<sha256>`; `HEAD` tells the offset the server
//! holds; `PATCH` appends at that offset (Upload-Checksum `sha1|sha256 <base64>` per chunk).
//! A file the server already holds is complete at once (offset = length, no bytes sent).
//!
//! A chunk whose body is cut short is dropped whole (the client resends it: at most one
//! chunk of a cut upload travels twice); a chunk is stored before the offset moves, so a crash
//! between the two costs the same. On the last chunk the server reads the chunks back, checks
//! the hash, the type and that the bytes decode as an image, then writes the file once.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use futures_util::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use sha2::Digest;

use gridsync_core::clock::now_ms;
use gridsync_proto::DeviceId;

use super::{MAX_CHUNK_BYTES, MAX_PHOTO_BYTES, UPLOAD_EXPIRY, blob_path, is_sha256};
use crate::auth::Device;
use crate::http::{ApiError, AppState, authenticate};
use crate::storage::{BlobRow, Storage, UploadRow};

/// The protocol version spoken.
const TUS_VERSION: &str = "1.0.0";
/// The extensions supported.
const TUS_EXTENSIONS: &str = "creation,checksum,expiration";
/// The largest edge of an image the server decodes whole (thumbnails, and full images that
/// have none); the pipeline's full images are 1600 px.
const MAX_COMPARED_EDGE: u32 = 8192;
/// The checksum algorithms a PATCH may use.
const TUS_CHECKSUMS: &str = "sha1,sha256";

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Adds `Tus-Resumable` (and, to a version refusal, `Tus-Version`) to every upload answer.
pub(super) async fn version_header(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    if resp.status() == StatusCode::PRECONDITION_FAILED {
        resp.headers_mut()
            .insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    }
    resp
}

/// Every tus request but OPTIONS must say which version it speaks.
fn check_version(headers: &HeaderMap) -> Result<(), ApiError> {
    match header_str(headers, "tus-resumable") {
        Some(TUS_VERSION) => Ok(()),
        other => Err(ApiError::TusVersion(other.unwrap_or("none").to_owned())),
    }
}

fn chunk_prefix(sha256: &str, device: DeviceId) -> object_store::path::Path {
    object_store::path::Path::from(format!("partial/{sha256}/{device}"))
}

fn chunk_path(sha256: &str, device: DeviceId, offset: u64) -> object_store::path::Path {
    object_store::path::Path::from(format!("partial/{sha256}/{device}/{offset:020}"))
}

fn tus_response(status: StatusCode) -> axum::http::response::Builder {
    Response::builder()
        .status(status)
        .header("tus-resumable", TUS_VERSION)
        .header(header::CACHE_CONTROL, "no-store")
}

fn offset_response(status: StatusCode, offset: u64, length: u64) -> Response {
    tus_response(status)
        .header("upload-offset", offset)
        .header("upload-length", length)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// `OPTIONS`: what this server speaks.
pub(super) async fn options() -> Response {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("tus-resumable", TUS_VERSION)
        .header("tus-version", TUS_VERSION)
        .header("tus-extension", TUS_EXTENSIONS)
        .header("tus-max-size", MAX_PHOTO_BYTES)
        .header("tus-checksum-algorithm", TUS_CHECKSUMS)
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// The hash named in `Upload-Metadata` (`sha256 <base64 of the lower-case hex>`).
fn metadata_sha256(headers: &HeaderMap) -> Result<String, ApiError> {
    let meta = header_str(headers, "upload-metadata").ok_or_else(|| {
        ApiError::BadHeader("Upload-Metadata must name the file: `sha256 <base64 of hex>`".into())
    })?;
    for pair in meta.split(',') {
        let mut it = pair.trim().splitn(2, ' ');
        if it.next() == Some("sha256") {
            let raw = it.next().unwrap_or("").trim();
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(raw)
                .map_err(|e| ApiError::BadHeader(format!("Upload-Metadata sha256: {e}")))?;
            let hex = String::from_utf8(bytes)
                .map_err(|_| ApiError::BadHeader("Upload-Metadata sha256: not text".into()))?
                .to_ascii_lowercase();
            if !is_sha256(&hex) {
                return Err(ApiError::BadHeader(format!(
                    "Upload-Metadata sha256: {hex:?} is not a SHA-256 in hex"
                )));
            }
            return Ok(hex);
        }
    }
    Err(ApiError::BadHeader(
        "Upload-Metadata has no `sha256` entry".into(),
    ))
}

fn parse_u64(headers: &HeaderMap, name: &'static str) -> Result<u64, ApiError> {
    header_str(headers, name)
        .ok_or_else(|| ApiError::BadHeader(format!("{name} is required")))?
        .trim()
        .parse()
        .map_err(|_| ApiError::BadHeader(format!("{name} must be a whole number of bytes")))
}

/// How a readable document references a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Referenced {
    /// No document the device may read references it (with that length).
    No,
    /// As a full image that has a thumbnail (the near-duplicate check uses the thumbnail).
    Full,
    /// As a thumbnail, or as a full image without one: its perceptual hash is kept.
    Compared,
}

/// How `device` may send or fetch the file `sha256` of length `length` (any length when
/// `None`): whether a document it may read references it with that length, and as what.
pub(super) async fn referenced<S: Storage>(
    state: &AppState<S>,
    device: &Device,
    sha256: &str,
    length: Option<u64>,
) -> Result<Referenced, ApiError> {
    let mut found = Referenced::No;
    for r in state.storage.photo_refs(sha256).await? {
        let (size, compared) = if r.thumb_sha256.as_deref() == Some(sha256) {
            (r.thumb_size, true)
        } else {
            (Some(r.size), r.thumb_sha256.is_none())
        };
        let fits = length.is_none_or(|l| size.and_then(|s| u64::try_from(s).ok()) == Some(l));
        if fits && state.storage.may_read(device, r.doc_id, &r.grid).await? {
            if compared {
                return Ok(Referenced::Compared);
            }
            found = Referenced::Full;
        }
    }
    Ok(found)
}

/// `POST /v1/uploads`: creates (or finds) this device's upload of a referenced file.
pub(super) async fn create<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let _permit = crate::http::admit(&state)?;
    let device = authenticate(&state, &headers).await?;
    let sha256 = metadata_sha256(&headers)?;
    let length = parse_u64(&headers, "upload-length")?;
    if length == 0 || length > MAX_PHOTO_BYTES {
        return Err(ApiError::PhotoTooLarge {
            length,
            max: MAX_PHOTO_BYTES,
        });
    }
    if referenced(&state, &device, &sha256, Some(length)).await? == Referenced::No {
        return Err(ApiError::PhotoNotReferenced(sha256));
    }
    let location = format!("/v1/uploads/{sha256}");
    if let Some(blob) = state.storage.blob(&sha256).await? {
        let mut resp = offset_response(StatusCode::CREATED, blob.size, blob.size);
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    let up = state
        .storage
        .create_upload(&UploadRow {
            sha256: sha256.clone(),
            device: device.id,
            length,
            offset: 0,
            created_at: now_ms(),
        })
        .await?;
    if up.length != length {
        return Err(ApiError::LengthMismatch {
            declared: length,
            under_way: up.length,
        });
    }
    Ok(tus_response(StatusCode::CREATED)
        .header(header::LOCATION, location)
        .header("upload-offset", up.offset)
        .header("upload-expires", expires(up.created_at))
        .body(Body::empty())
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response()))
}

/// The `Upload-Expires` value (RFC 9110 date) of an upload created at `created_at`.
fn expires(created_at: i64) -> String {
    let at = created_at + i64::try_from(UPLOAD_EXPIRY.as_millis()).unwrap_or(0);
    let t = time::OffsetDateTime::from_unix_timestamp(at / 1000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).unwrap_or_default()
}

/// `HEAD /v1/uploads/<sha256>`: how much of the file the server holds for this device.
pub(super) async fn head<S: Storage>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let device = authenticate(&state, &headers).await?;
    if !is_sha256(&sha256) {
        return Err(ApiError::UploadNotFound);
    }
    if let Some(blob) = state.storage.blob(&sha256).await?
        && referenced(&state, &device, &sha256, None).await? != Referenced::No
    {
        return Ok(offset_response(StatusCode::OK, blob.size, blob.size));
    }
    match state.storage.upload(&sha256, device.id).await? {
        Some(up) => Ok(offset_response(StatusCode::OK, up.offset, up.length)),
        None => Err(ApiError::UploadNotFound),
    }
}

/// Checks a chunk against its `Upload-Checksum` header, when there is one.
fn check_checksum(headers: &HeaderMap, chunk: &[u8]) -> Result<(), ApiError> {
    let Some(v) = header_str(headers, "upload-checksum") else {
        return Ok(());
    };
    let (alg, b64) = v
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiError::BadHeader("Upload-Checksum is `<algorithm> <base64>`".into()))?;
    let want = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .map_err(|e| ApiError::BadHeader(format!("Upload-Checksum: {e}")))?;
    let got = match alg {
        "sha1" => sha1::Sha1::digest(chunk).to_vec(),
        "sha256" => sha2::Sha256::digest(chunk).to_vec(),
        other => return Err(ApiError::ChecksumAlgorithm(other.to_owned())),
    };
    if got == want {
        Ok(())
    } else {
        Err(ApiError::ChecksumMismatch(format!(
            "the chunk's {alg} does not match Upload-Checksum; it was not stored, send it again"
        )))
    }
}

/// Reads at most `max` bytes of the body; `Ok(None)` when the body broke off (a cut link).
/// A body of exactly the room left is read to its end, so the connection stays open for the
/// next request; of a longer one the rest is not read (the client learns the offset reached
/// from the answer, and the connection closes).
async fn read_chunk(body: Body, max: usize) -> Option<Vec<u8>> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::with_capacity(max.min(1024 * 1024));
    while let Some(part) = stream.next().await {
        let part = part.ok()?;
        if buf.len() == max && !part.is_empty() {
            break;
        }
        let room = max - buf.len();
        buf.extend_from_slice(&part[..part.len().min(room)]);
    }
    Some(buf)
}

/// `PATCH /v1/uploads/<sha256>`: appends one chunk at `Upload-Offset`.
pub(super) async fn patch<S: Storage>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    check_version(&headers)?;
    let _permit = crate::http::admit(&state)?;
    let device = authenticate(&state, &headers).await?;
    crate::http::expect_content_type(&headers, "application/offset+octet-stream")?;
    if !is_sha256(&sha256) {
        return Err(ApiError::UploadNotFound);
    }
    let offset = parse_u64(&headers, "upload-offset")?;
    let kind = referenced(&state, &device, &sha256, None).await?;
    if let Some(blob) = state.storage.blob(&sha256).await?
        && kind != Referenced::No
    {
        // Another upload (another phone's) completed it meanwhile: nothing more to send, and
        // this device's chunks are not needed.
        discard(&state, &sha256, device.id).await;
        return Ok(offset_response(
            StatusCode::NO_CONTENT,
            blob.size,
            blob.size,
        ));
    }
    if kind == Referenced::No {
        // The device lost the document (a case taken from its department, a photo
        // redacted) since it started: its upload ends here.
        discard(&state, &sha256, device.id).await;
        return Err(ApiError::PhotoNotReferenced(sha256));
    }
    let up = state
        .storage
        .upload(&sha256, device.id)
        .await?
        .ok_or(ApiError::UploadNotFound)?;
    if offset != up.offset {
        return Err(ApiError::OffsetMismatch {
            expected: up.offset,
            found: offset,
        });
    }
    let room = usize::try_from(up.length.saturating_sub(up.offset))
        .unwrap_or(MAX_CHUNK_BYTES)
        .min(MAX_CHUNK_BYTES);
    let declared =
        header_str(&headers, "content-length").and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|n| n > room as u64) && headers.contains_key("upload-checksum") {
        // Only part of it would be taken, and a checksum covers all of it.
        return Err(ApiError::PhotoTooLarge {
            length: declared.unwrap_or(0),
            max: room as u64,
        });
    }
    let Some(chunk) = read_chunk(body, room).await else {
        return Err(ApiError::BodyCut(
            "the chunk was cut short and not stored; HEAD for the offset and send it again".into(),
        ));
    };
    check_checksum(&headers, &chunk)?;
    if offset == 0 && !chunk.is_empty() && !gridsync_core::photo::is_stored_type(&chunk) {
        return Err(ApiError::PhotoType(
            "the file does not start like a JPEG, PNG or WebP image".into(),
        ));
    }
    let new_offset = offset + chunk.len() as u64;
    if new_offset == up.length {
        // The last chunk is not stored as an object: it completes the file in memory.
        complete(&state, &device, &up, chunk, kind).await?;
        return Ok(offset_response(
            StatusCode::NO_CONTENT,
            up.length,
            up.length,
        ));
    }
    if !chunk.is_empty() {
        state
            .config
            .photos
            .store
            .put(
                &chunk_path(&sha256, device.id, offset),
                PutPayload::from(chunk),
            )
            .await
            .map_err(|e| ApiError::Blobs(e.to_string()))?;
        if !state
            .storage
            .advance_upload(&sha256, device.id, offset, new_offset)
            .await?
        {
            return Err(ApiError::OffsetMismatch {
                expected: new_offset,
                found: offset,
            });
        }
    }
    Ok(offset_response(
        StatusCode::NO_CONTENT,
        new_offset,
        up.length,
    ))
}

/// Reads an upload's stored chunks back, appends the last one, verifies and stores the file
/// once; a file that fails a check is thrown away with its chunks.
async fn complete<S: Storage>(
    state: &AppState<S>,
    device: &Device,
    up: &UploadRow,
    last: Vec<u8>,
    kind: Referenced,
) -> Result<(), ApiError> {
    let store = state.config.photos.store.clone();
    let mut bytes = if up.offset == 0 {
        Vec::new()
    } else {
        match read_chunks(store.as_ref(), up).await {
            Ok(b) => b,
            Err(e) => {
                discard(state, &up.sha256, device.id).await;
                return Err(e);
            }
        }
    };
    bytes.extend_from_slice(&last);
    drop(last);
    let sha = up.sha256.clone();
    let compared = kind == Referenced::Compared;
    let checked =
        tokio::task::spawn_blocking(move || verify(&sha, &bytes, compared).map(|p| (p, bytes)))
            .await
            .map_err(|_| ApiError::Panicked)?;
    let ((mime, phash), bytes) = match checked {
        Ok(v) => v,
        Err(e) => {
            discard(state, &up.sha256, device.id).await;
            tracing::warn!(device = %device.id, sha256 = %up.sha256, error = %e, "upload refused");
            return Err(e);
        }
    };
    let size = bytes.len() as u64;
    let opts = PutOptions {
        mode: PutMode::Create,
        ..Default::default()
    };
    match store
        .put_opts(&blob_path(&up.sha256), PutPayload::from(bytes), opts)
        .await
    {
        // Another upload of the same file got there first: the bytes are the same (same hash).
        Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
        Err(e) => return Err(ApiError::Blobs(e.to_string())),
    }
    let first = state
        .storage
        .insert_blob(&BlobRow {
            sha256: up.sha256.clone(),
            size,
            mime: mime.to_owned(),
            phash,
            stored_at: now_ms(),
            device: device.id,
        })
        .await?;
    if up.offset > 0 {
        delete_chunks(store.as_ref(), &up.sha256, device.id).await;
    }
    tracing::info!(device = %device.id, sha256 = %up.sha256, size, first, "photo stored");
    Ok(())
}

async fn read_chunks(store: &dyn ObjectStore, up: &UploadRow) -> Result<Vec<u8>, ApiError> {
    let mut metas: Vec<object_store::ObjectMeta> = store
        .list(Some(&chunk_prefix(&up.sha256, up.device)))
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<Result<_, _>>()
        .map_err(|e| ApiError::Blobs(e.to_string()))?;
    metas.sort_by(|a, b| a.location.as_ref().cmp(b.location.as_ref()));
    let mut out = Vec::with_capacity(usize::try_from(up.length).unwrap_or(0));
    for m in metas {
        let at: u64 = m
            .location
            .filename()
            .and_then(|f| f.parse().ok())
            .unwrap_or(u64::MAX);
        if at >= up.offset {
            // Stored by a request whose offset update never happened (a crash between the
            // two): not part of the upload; the chunk is sent again.
            continue;
        }
        if at != out.len() as u64 {
            // A chunk left over from a retried request that was overtaken: skip what is
            // covered, refuse a gap.
            if at < out.len() as u64 {
                continue;
            }
            return Err(ApiError::Blobs(format!(
                "upload {} has a gap at byte {}",
                up.sha256,
                out.len()
            )));
        }
        let b = store
            .get(&m.location)
            .await
            .map_err(|e| ApiError::Blobs(e.to_string()))?
            .bytes()
            .await
            .map_err(|e| ApiError::Blobs(e.to_string()))?;
        out.extend_from_slice(&b);
    }
    if out.len() as u64 != up.offset {
        return Err(ApiError::Blobs(format!(
            "upload {} holds {} of its {} bytes",
            up.sha256,
            out.len(),
            up.offset
        )));
    }
    Ok(out)
}

/// Checks a finished file: its hash, its type and its header; a file that is compared
/// (a thumbnail, or a full image without one) is decoded whole for its perceptual hash.
/// Returns its MIME type and perceptual hash.
fn verify(
    sha256: &str,
    bytes: &[u8],
    compared: bool,
) -> Result<(&'static str, Option<u64>), ApiError> {
    let got = gridsync_core::photo::sha256_hex(bytes);
    if got != sha256 {
        return Err(ApiError::HashMismatch {
            expected: sha256.to_owned(),
            found: got,
        });
    }
    let format = image::guess_format(bytes)
        .map_err(|_| ApiError::PhotoType("not a JPEG, PNG or WebP image".into()))?;
    let mime = match format {
        image::ImageFormat::Jpeg => "image/jpeg",
        image::ImageFormat::Png => "image/png",
        image::ImageFormat::WebP => "image/webp",
        other => return Err(ApiError::PhotoType(format!("{other:?} is not stored"))),
    };
    if !compared {
        // A full image is checked to its header (decoding 2 MP again costs more than the
        // rest of its upload); its thumbnail is what is compared.
        image::ImageReader::with_format(std::io::Cursor::new(bytes), format)
            .into_dimensions()
            .map_err(|e| ApiError::PhotoType(format!("the image header does not decode: {e}")))?;
        return Ok((mime, None));
    }
    // A thumbnail is small; a header that claims more is a bomb, not a photo.
    let mut reader = image::ImageReader::with_format(std::io::Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    limits.max_image_width = Some(MAX_COMPARED_EDGE);
    limits.max_image_height = Some(MAX_COMPARED_EDGE);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| ApiError::PhotoType(format!("the image does not decode: {e}")))?;
    Ok((mime, Some(perceptual_hash(&img))))
}

/// The 64-bit perceptual hash (gradient, 8×8) the near-duplicate check compares.
pub fn perceptual_hash(img: &image::DynamicImage) -> u64 {
    let hasher = image_hasher::HasherConfig::new()
        .hash_size(8, 8)
        .hash_alg(image_hasher::HashAlg::Gradient)
        .to_hasher();
    let h = hasher.hash_image(img);
    let mut b = [0u8; 8];
    for (dst, src) in b.iter_mut().zip(h.as_bytes()) {
        *dst = *src;
    }
    u64::from_be_bytes(b)
}

/// Deletes the chunk objects of a device's upload of a file (best effort: a chunk left
/// behind by a failed delete is never read again; see `read_chunks`).
async fn delete_chunks(store: &dyn ObjectStore, sha256: &str, device: DeviceId) {
    let metas: Vec<_> = store
        .list(Some(&chunk_prefix(sha256, device)))
        .collect::<Vec<_>>()
        .await;
    for m in metas.into_iter().flatten() {
        let _ = store.delete(&m.location).await;
    }
}

/// Forgets a device's upload of a file and deletes its chunks.
pub(super) async fn discard<S: Storage>(state: &AppState<S>, sha256: &str, device: DeviceId) {
    delete_chunks(state.config.photos.store.as_ref(), sha256, device).await;
    if let Err(e) = state.storage.delete_upload(sha256, device).await {
        tracing::warn!(sha256, error = %e, "could not forget an upload");
    }
}
