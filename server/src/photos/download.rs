//! Scoped photo downloads (`GET /v1/photos/<sha256>`, with Range, ETag and immutable
//! caching) and the evidence flags of case photos (`GET /v1/evidence-flags`).

use std::collections::HashSet;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use object_store::ObjectStoreExt;

use gridsync_core::evidence::EvidenceFlag;
use gridsync_proto::{DocId, GridCode};

use super::{blob_path, is_sha256};
use crate::auth::{Device, Role};
use crate::http::{ApiError, AppState, authenticate};
use crate::storage::{Storage, StorageError};

/// One byte range of a file of `size` bytes, from a `Range` header (`bytes=a-b`, `bytes=a-`,
/// `bytes=-n`); `Ok(None)` for none or a form this server ignores (several ranges: the whole
/// file is sent, as RFC 9110 allows).
fn parse_range(headers: &HeaderMap, size: u64) -> Result<Option<(u64, u64)>, ApiError> {
    let Some(v) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    let Some(spec) = v.trim().strip_prefix("bytes=") else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let unsatisfiable = || ApiError::RangeNotSatisfiable { size };
    let (a, b) = spec.split_once('-').ok_or_else(unsatisfiable)?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().map_err(|_| unsatisfiable())?;
            if n == 0 {
                return Err(unsatisfiable());
            }
            (size.saturating_sub(n), size.saturating_sub(1))
        }
        (a, "") => (
            a.parse().map_err(|_| unsatisfiable())?,
            size.saturating_sub(1),
        ),
        (a, b) => {
            let a: u64 = a.parse().map_err(|_| unsatisfiable())?;
            let b: u64 = b.parse().map_err(|_| unsatisfiable())?;
            (a, b.min(size.saturating_sub(1)))
        }
    };
    if size == 0 || start > end || start >= size {
        return Err(unsatisfiable());
    }
    Ok(Some((start, end)))
}

/// `GET /v1/photos/<sha256>`: a thumbnail or full image, to a device that may read a document
/// referencing it (any other device gets 404, as if it did not exist).
pub(super) async fn get<S: Storage>(
    State(state): State<AppState<S>>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let _permit = crate::http::admit(&state)?;
    let device = authenticate(&state, &headers).await?;
    if !is_sha256(&sha256)
        || super::tus::referenced(&state, &device, &sha256, None).await?
            == super::tus::Referenced::No
    {
        return Err(ApiError::PhotoNotFound(sha256));
    }
    let Some(blob) = state.storage.blob(&sha256).await? else {
        return Err(ApiError::PhotoNotUploaded(sha256));
    };
    let etag = format!("\"{sha256}\"");
    let base = |status: StatusCode| {
        Response::builder()
            .status(status)
            .header(header::ETAG, &etag)
            // Content-addressed: the bytes behind this URL never change. `private`: the
            // answer depends on who asks.
            .header(
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable",
            )
            .header(header::ACCEPT_RANGES, "bytes")
            .header("x-content-type-options", "nosniff")
    };
    let matches_etag = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches_etag {
        return base(StatusCode::NOT_MODIFIED)
            .body(Body::empty())
            .map_err(|e| ApiError::Blobs(e.to_string()));
    }
    let store = state.config.photos.store.clone();
    let path = blob_path(&sha256);
    match parse_range(&headers, blob.size)? {
        Some((start, end)) => {
            let bytes = store
                .get_range(&path, start..end + 1)
                .await
                .map_err(|e| ApiError::Blobs(e.to_string()))?;
            base(StatusCode::PARTIAL_CONTENT)
                .header(header::CONTENT_TYPE, &blob.mime)
                .header(
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{}", blob.size),
                )
                .header(header::CONTENT_LENGTH, bytes.len())
                .body(Body::from(bytes))
                .map_err(|e| ApiError::Blobs(e.to_string()))
        }
        None => {
            let got = store
                .get(&path)
                .await
                .map_err(|e| ApiError::Blobs(e.to_string()))?;
            let stream = got.into_stream().map(|r| r.map_err(std::io::Error::other));
            base(StatusCode::OK)
                .header(header::CONTENT_TYPE, &blob.mime)
                .header(header::CONTENT_LENGTH, blob.size)
                .body(Body::from_stream(stream))
                .map_err(|e| ApiError::Blobs(e.to_string()))
        }
    }
}

/// The evidence flags of the cases in `device`'s scopes (all of them for `None`).
pub async fn evidence_flags<S: Storage>(
    state: &AppState<S>,
    device: Option<&Device>,
) -> Result<Vec<EvidenceFlag>, StorageError> {
    let cases = state.storage.cases().await?;
    let photos = state.storage.case_photos().await?;
    let phash = state.storage.phashes().await?;
    // Duplicates are looked for across every case (a photo reused from another grid is just
    // as questionable), then only the flags of cases the device may see are kept.
    let flags =
        gridsync_core::evidence::check(&cases, &photos, &phash, &state.config.photos.evidence);
    let Some(device) = device else {
        return Ok(flags);
    };
    let visible: HashSet<DocId> = cases
        .iter()
        .filter(|c| {
            GridCode::parse(&c.grid).is_ok_and(|g| device.scopes.iter().any(|s| s.contains(&g)))
        })
        .map(|c| c.doc_id)
        .collect();
    Ok(flags
        .into_iter()
        .filter(|f| visible.contains(&f.case))
        .collect())
}

/// `GET /v1/evidence-flags` query.
#[derive(Debug, serde::Deserialize)]
pub(super) struct FlagQuery {
    /// Only this case's flags.
    case: Option<DocId>,
}

/// `GET /v1/evidence-flags[?case=ID]`: for dispatchers and leaders.
pub(super) async fn flags<S: Storage>(
    State(state): State<AppState<S>>,
    Query(q): Query<FlagQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let device = authenticate(&state, &headers).await?;
    if !matches!(device.role, Role::Dispatcher | Role::Leader) {
        return Err(ApiError::Forbidden(format!(
            "evidence flags are for dispatchers and leaders, not a {}",
            device.role
        )));
    }
    let flags: Vec<EvidenceFlag> = evidence_flags(&state, Some(&device))
        .await?
        .into_iter()
        .filter(|f| q.case.is_none_or(|c| c == f.case))
        .collect();
    Ok(Json(serde_json::json!({ "flags": flags })))
}
