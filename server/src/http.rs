//! The HTTP surface: `POST /v1/sync`, `POST /v1/enroll`, `GET /healthz`, `GET /metrics`.
//!
//! Handlers are thin: parse, authenticate, call storage, map the result. Every failure of one
//! request becomes that request's typed error; nothing a client sends can take the process down.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use gridsync_proto::{
    DecodeError, EnrollRequest, EnrollResponse, ErrorBody, ErrorDetail, SyncRequest, SyncResponse,
    limits,
};
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::metrics::Phase;
use gridsync_core::Document;
use gridsync_core::clock::now_ms;
use gridsync_core::records::{Case, CaseSource, Gps, Party, Urgency, polygon_contains};
use gridsync_core::workflow::{Action, Actor, Reference, act};
use gridsync_proto::{DocId, GridCode, GridLevel, RecordId};

use crate::auth::{Device, Role, new_token, normalize_code, secret_hash};
use crate::indicators::GroupBy;
use crate::storage::{Cursor, EnrollError, PullBudget, Storage, StorageError};

/// Server settings that handlers read.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests processed at once; more wait in the queue (syncs) or get 503 with
    /// Retry-After.
    pub max_in_flight: usize,
    /// Syncs that may wait for a free slot, before their bodies are read (a reconnect burst
    /// waits instead of being refused and sending its bodies again); more get 503 at once.
    pub queue: usize,
    /// Longest a sync waits in the queue before it gets 503.
    pub queue_wait: Duration,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Caps on one pull.
    pub pull_budget: PullBudget,
    /// Departments, category table and working calendar.
    pub reference: Arc<Reference>,
    /// Where photo files are kept, and the evidence check settings.
    pub photos: crate::photos::PhotoConfig,
    /// Live-sync requests (`GET /v1/sync/live`) waiting at once; more get 503.
    pub max_live: usize,
    /// The console's sessions and sign-in rules.
    pub console: crate::console::ConsoleConfig,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            queue: 2048,
            queue_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(180),
            pull_budget: PullBudget::default(),
            reference: Arc::new(Reference::builtin()),
            photos: Default::default(),
            max_live: 20_000,
            console: Default::default(),
        }
    }
}

/// Everything a handler needs; cheap to clone.
pub struct AppState<S> {
    /// The storage.
    pub storage: Arc<S>,
    /// Settings.
    pub config: Arc<Config>,
    in_flight: Arc<Semaphore>,
    waiting: Arc<std::sync::atomic::AtomicUsize>,
    live: Arc<Semaphore>,
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
            config: self.config.clone(),
            in_flight: self.in_flight.clone(),
            waiting: self.waiting.clone(),
            live: self.live.clone(),
        }
    }
}

impl<S: Storage> AppState<S> {
    /// State over a storage with the given settings.
    pub fn new(storage: S, config: Config) -> Self {
        let permits = config.max_in_flight.max(1);
        let live = Arc::new(Semaphore::new(config.max_live.max(1)));
        Self {
            live,
            storage: Arc::new(storage),
            config: Arc::new(config),
            in_flight: Arc::new(Semaphore::new(permits)),
            waiting: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
        }
    }
}

/// Every error a request can get, each with a status and a stable code.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// No or unknown bearer token.
    #[error("a valid device token is required (Authorization: Bearer ...)")]
    Unauthorized,
    /// The device was revoked.
    #[error("this device was revoked; enroll it again to sync")]
    Revoked,
    /// The request names another device than the token's.
    #[error("the request is for device {claimed}, but the token belongs to {actual}")]
    DeviceMismatch {
        /// The device in the request.
        claimed: String,
        /// The token's device.
        actual: String,
    },
    /// The request names an actor that is not bound to the token's device.
    #[error("actor {actor} is not bound to device {device}")]
    ForeignActor {
        /// The actor in the request.
        actor: String,
        /// The token's device.
        device: String,
    },
    /// Two copies of this store wrote under the actor the request names: take a fresh one.
    #[error("actor {0} was also used by a copy of this store; take a fresh actor and pull again")]
    ActorRetired(String),
    /// The body did not decode.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The body is larger than the server reads.
    #[error("request body: {0}")]
    Body(String),
    /// The body ended before its declared length (the link was cut mid-request).
    #[error("request body: {0}")]
    BodyCut(String),
    /// The body is not of the type this endpoint reads.
    #[error("content type {found:?} is not accepted here; send {expected}")]
    UnsupportedMediaType {
        /// What the request said.
        found: String,
        /// What the endpoint reads.
        expected: &'static str,
    },
    /// The cursor was not issued by this server.
    #[error("{0}")]
    BadCursor(String),
    /// Bad JSON in a JSON endpoint.
    #[error("{0}")]
    BadJson(String),
    /// Enrollment failed.
    #[error(transparent)]
    Enroll(EnrollError),
    /// Too many requests at once.
    #[error("the server is busy; retry shortly")]
    Busy,
    /// The device's role may not use this endpoint.
    #[error("{0}")]
    Forbidden(String),
    /// An intake case that cannot be accepted: the field and the reason.
    #[error("{0}")]
    InvalidCase(String),
    /// No grid holds the reported location.
    #[error("{0}")]
    NoGrid(String),
    /// Bad query parameters.
    #[error("{0}")]
    BadQuery(String),
    /// A tus request without `Tus-Resumable: 1.0.0`.
    #[error("this server speaks tus 1.0.0 (Tus-Resumable was {0})")]
    TusVersion(String),
    /// A missing or malformed header.
    #[error("{0}")]
    BadHeader(String),
    /// An upload of a file no document the device may read references (with that length).
    #[error(
        "no document you may read references photo {0} with this length; sync the document \
         first"
    )]
    PhotoNotReferenced(String),
    /// A photo over the size limit (or empty).
    #[error("a photo of {length} bytes cannot be stored (1 to {max} bytes)")]
    PhotoTooLarge {
        /// Its declared length.
        length: u64,
        /// The limit.
        max: u64,
    },
    /// An upload was made again with another length than the one under way.
    #[error("an upload of this file with {under_way} bytes is under way; {declared} declared")]
    LengthMismatch {
        /// The new declaration.
        declared: u64,
        /// The upload's length.
        under_way: u64,
    },
    /// No upload of this file by this device.
    #[error("no upload of this file is under way for this device; create it with POST")]
    UploadNotFound,
    /// A PATCH at another offset than the server's.
    #[error("the server holds {expected} bytes of this upload; the chunk was sent for {found}")]
    OffsetMismatch {
        /// The server's offset.
        expected: u64,
        /// The request's.
        found: u64,
    },
    /// A chunk whose checksum does not match.
    #[error("{0}")]
    ChecksumMismatch(String),
    /// A checksum algorithm this server does not compute.
    #[error("checksum algorithm {0:?} is not supported (sha1, sha256)")]
    ChecksumAlgorithm(String),
    /// A finished upload whose bytes do not hash to its name; it was thrown away.
    #[error("the uploaded bytes hash to {found}, not {expected}; nothing was stored")]
    HashMismatch {
        /// The name.
        expected: String,
        /// What the bytes hash to.
        found: String,
    },
    /// Not an image type the server stores; nothing was stored.
    #[error("{0}")]
    PhotoType(String),
    /// No such photo for this device (or none it may see).
    #[error("no photo {0}")]
    PhotoNotFound(String),
    /// The photo is referenced but its file has not been uploaded yet.
    #[error("photo {0} has not been uploaded yet")]
    PhotoNotUploaded(String),
    /// A Range outside the file.
    #[error("the range is outside the file ({size} bytes)")]
    RangeNotSatisfiable {
        /// The file's size.
        size: u64,
    },
    /// The object store failed (details in the log).
    #[error("photo store: {0}")]
    Blobs(String),
    /// A storage failure (details in the log).
    #[error("internal error")]
    Internal(#[from] StorageError),
    /// A handler panicked (a bug; details in the log).
    #[error("internal error")]
    Panicked,
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Revoked => (StatusCode::FORBIDDEN, "device_revoked"),
            ApiError::DeviceMismatch { .. } => (StatusCode::FORBIDDEN, "device_mismatch"),
            ApiError::ForeignActor { .. } => (StatusCode::FORBIDDEN, "actor_mismatch"),
            ApiError::ActorRetired(_) => (StatusCode::CONFLICT, "actor_retired"),
            ApiError::Decode(DecodeError::TooLarge { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "too_large")
            }
            ApiError::Decode(DecodeError::UnsupportedVersion { .. }) => {
                (StatusCode::BAD_REQUEST, "unsupported_version")
            }
            ApiError::Decode(DecodeError::OverLimit { .. }) => {
                (StatusCode::PAYLOAD_TOO_LARGE, "over_limit")
            }
            ApiError::Decode(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Body(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_large"),
            ApiError::BodyCut(_) => (StatusCode::BAD_REQUEST, "body_cut"),
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::BadCursor(_) => (StatusCode::BAD_REQUEST, "bad_cursor"),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Enroll(EnrollError::InvalidCode) => (StatusCode::BAD_REQUEST, "invalid_code"),
            ApiError::Enroll(EnrollError::NeedsCodeForDevice(_)) => {
                (StatusCode::CONFLICT, "code_for_device_required")
            }
            ApiError::Enroll(EnrollError::AlreadyEnrolled(_)) => {
                (StatusCode::CONFLICT, "already_enrolled")
            }
            ApiError::Enroll(EnrollError::Invalid(_)) => {
                (StatusCode::BAD_REQUEST, "invalid_enrollment")
            }
            ApiError::Enroll(_) | ApiError::Internal(_) | ApiError::Panicked => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::InvalidCase(_) => (StatusCode::BAD_REQUEST, "invalid_case"),
            ApiError::NoGrid(_) => (StatusCode::BAD_REQUEST, "no_grid"),
            ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
            ApiError::TusVersion(_) => (StatusCode::PRECONDITION_FAILED, "unsupported_tus_version"),
            ApiError::BadHeader(_) => (StatusCode::BAD_REQUEST, "bad_header"),
            ApiError::PhotoNotReferenced(_) => (StatusCode::FORBIDDEN, "photo_not_referenced"),
            ApiError::PhotoTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "photo_too_large"),
            ApiError::LengthMismatch { .. } => (StatusCode::CONFLICT, "length_mismatch"),
            ApiError::UploadNotFound => (StatusCode::NOT_FOUND, "upload_not_found"),
            ApiError::OffsetMismatch { .. } => (StatusCode::CONFLICT, "offset_mismatch"),
            ApiError::ChecksumMismatch(_) => (CHECKSUM_MISMATCH, "checksum_mismatch"),
            ApiError::ChecksumAlgorithm(_) => (StatusCode::BAD_REQUEST, "checksum_algorithm"),
            ApiError::HashMismatch { .. } => (CHECKSUM_MISMATCH, "hash_mismatch"),
            ApiError::PhotoType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_photo_type")
            }
            ApiError::PhotoNotFound(_) => (StatusCode::NOT_FOUND, "photo_not_found"),
            ApiError::PhotoNotUploaded(_) => (StatusCode::NOT_FOUND, "photo_not_uploaded"),
            ApiError::RangeNotSatisfiable { .. } => {
                (StatusCode::RANGE_NOT_SATISFIABLE, "range_not_satisfiable")
            }
            ApiError::Blobs(_) => (StatusCode::SERVICE_UNAVAILABLE, "photo_store_unavailable"),
        }
    }
}

/// tus's status for a checksum that does not match (460, defined by the checksum extension).
const CHECKSUM_MISMATCH: StatusCode = match StatusCode::from_u16(460) {
    Ok(s) => s,
    Err(_) => StatusCode::BAD_REQUEST,
};

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(error = ?self, "request failed");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message: self.to_string(),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::RangeNotSatisfiable { size } = &self
            && let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}"))
        {
            resp.headers_mut().insert(header::CONTENT_RANGE, v);
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        resp
    }
}

/// The whole server as a router (for `serve` and for tests on a real port).
pub fn app<S: Storage>(state: AppState<S>) -> Router {
    let timeout = state.config.request_timeout;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics::<S>))
        .route("/v1/enroll", post(enroll::<S>))
        .route(
            "/v1/sync",
            post(sync::<S>).layer(axum::middleware::from_fn_with_state(
                state.clone(),
                admit_queued::<S>,
            )),
        )
        .route("/v1/intake/cases", post(intake::<S>))
        .route("/v1/indicators", get(indicators::<S>))
        .route("/v1/time-flags", get(time_flags::<S>))
        .merge(crate::live::routes::<S>())
        .merge(crate::photos::routes::<S>())
        .merge(crate::register::routes::routes::<S>())
        .merge(crate::console::routes::<S>())
        // The decoder enforces the message limit itself with a typed error; the transport
        // limit only stops a client from making the server buffer far more than that.
        .layer(DefaultBodyLimit::max(limits::MAX_MESSAGE_BYTES + 1024))
        // A bug that panics in one request becomes that request's 500, never the process's end.
        .layer(CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                tracing::error!("a request handler panicked");
                ApiError::Panicked.into_response()
            },
        ))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            timeout,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &axum::http::Request<_>| {
                let path = req
                    .extensions()
                    .get::<axum::extract::MatchedPath>()
                    .map_or(req.uri().path(), |p| p.as_str());
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path, request_id = id)
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// How long a connection may take to send a request's headers, and stay idle between
/// requests, before the server closes it: a phone on a weak link sends a few hundred bytes of
/// headers in well under this, while a connection that trickles them (or never sends any)
/// would otherwise hold a socket and a task for ever.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `router` on `listener` until `shutdown` resolves, then lets requests under way
/// finish. Each connection must deliver a request's headers within `header_timeout`, also
/// while it waits between requests (hyper's header-read timer), so slow or silent clients
/// are dropped instead of piling up.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    header_timeout: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::server::graceful::GracefulShutdown;
    use hyper_util::service::TowerToHyperService;

    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: pause briefly instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out as soon as they are written (no Nagle delay behind a small header).
        let _ = stream.set_nodelay(true);
        // The peer's address travels as a header only the server sets (for the console's
        // audit log); one a client sent is dropped.
        let peer_ip = axum::http::HeaderValue::from_str(&peer.ip().to_string()).ok();
        let service = TowerToHyperService::new(tower::ServiceExt::map_request(
            router.clone(),
            move |mut req: axum::http::Request<hyper::body::Incoming>| {
                let h = req.headers_mut();
                h.remove(crate::console::session::PEER_HEADER);
                if let Some(ip) = &peer_ip {
                    h.insert(crate::console::session::PEER_HEADER, ip.clone());
                }
                req
            },
        ));
        let conn = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(header_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    graceful.shutdown().await;
    Ok(())
}

/// Bounds the work in flight: a busy server says so (503 + Retry-After) instead of queueing
/// without end.
impl<S> AppState<S> {
    /// A place among the live-sync waiters (they do not hold sync slots: a long poll does no
    /// work while it waits), or 503 when all are taken.
    pub(crate) fn live_slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
        self.live
            .clone()
            .try_acquire_owned()
            .map_err(|_| ApiError::Busy)
    }
}

pub(crate) fn admit<S>(state: &AppState<S>) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy)
}

/// Admits a sync, waiting for a free slot when all are taken: up to `queue_wait`, and only
/// while fewer than `queue` others wait (then 503 at once). Runs as a layer before the
/// handler's extractors, so a waiting request's body is not read yet (it stays in the
/// socket) and a refused one was never read at all.
async fn admit_queued<S>(
    State(state): State<AppState<S>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    use std::sync::atomic::Ordering;
    let permit = match state.in_flight.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            struct Leave<'a>(&'a std::sync::atomic::AtomicUsize);
            impl Drop for Leave<'_> {
                fn drop(&mut self) {
                    self.0.fetch_sub(1, Ordering::SeqCst);
                }
            }
            let ahead = state.waiting.fetch_add(1, Ordering::SeqCst);
            let _leave = Leave(&state.waiting);
            if ahead >= state.config.queue {
                return Err(ApiError::Busy);
            }
            let wait = state.config.queue_wait;
            match tokio::time::timeout(wait, state.in_flight.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => return Err(ApiError::Busy),
            }
        }
    };
    let resp = next.run(req).await;
    drop(permit);
    Ok(resp)
}

/// Reads a request body: over the limit is 413, a body that ended early (a cut link) is 400.
fn read_body(
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Bytes, ApiError> {
    use axum::extract::rejection::{BytesRejection, FailedToBufferBody};
    body.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(FailedToBufferBody::LengthLimitError(l)) => {
            ApiError::Body(l.body_text())
        }
        other => ApiError::BodyCut(other.body_text()),
    })
}

/// Refuses a body whose declared type is not `expected` (parameters such as `charset` aside).
pub(crate) fn expect_content_type(
    headers: &HeaderMap,
    expected: &'static str,
) -> Result<(), ApiError> {
    let found = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let essence = found.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case(expected) {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            found: found.to_owned(),
            expected,
        })
    }
}

/// `GET /metrics`: per-phase timings and cache counters (Prometheus text; counters only, no
/// names or records, see `crate::metrics`).
async fn metrics<S: Storage>(State(state): State<AppState<S>>) -> Response {
    let text = state
        .storage
        .phases()
        .render(state.storage.doc_cache_stats());
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response()
}

async fn healthz() -> &'static str {
    "ok"
}

pub(crate) async fn authenticate<S: Storage>(
    state: &AppState<S>,
    headers: &HeaderMap,
) -> Result<Device, ApiError> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    match state.storage.device_by_token(&secret_hash(token)).await? {
        None => Err(ApiError::Unauthorized),
        Some((_, Some(_))) => Err(ApiError::Revoked),
        Some((device, None)) => Ok(device),
    }
}

async fn enroll<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    expect_content_type(&headers, "application/json")?;
    let body = read_body(body)?;
    let req: EnrollRequest = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadJson(format!("enroll request: {e}")))?;
    let token = new_token();
    let device = state
        .storage
        .redeem_enrollment(
            &secret_hash(&normalize_code(&req.code)),
            req.device,
            &secret_hash(&token),
        )
        .await
        .map_err(|e| match e {
            EnrollError::Storage(s) => ApiError::Internal(s),
            other => ApiError::Enroll(other),
        })?;
    tracing::info!(device = %device.id, name = %device.name, role = %device.role, "device enrolled");
    Ok(Json(EnrollResponse {
        token,
        device: device.id,
        name: device.name,
        role: device.role.to_string(),
        scopes: device.scopes.iter().map(ToString::to_string).collect(),
        department: device.department,
    }))
}

async fn sync<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    // Admitted by `admit_queued` before the body was read.
    let phases = state.storage.phases();
    let timer = phases.time(Phase::Auth);
    let device = authenticate(&state, &headers).await?;
    drop(timer);
    let timer = phases.time(Phase::Decode);
    expect_content_type(&headers, gridsync_proto::CONTENT_TYPE)?;
    let body = read_body(body)?;
    let req = SyncRequest::decode(&body)?;
    drop(timer);
    if req.device != device.id {
        return Err(ApiError::DeviceMismatch {
            claimed: req.device.to_string(),
            actual: device.id.to_string(),
        });
    }
    let replica = if req.actor.is_empty() {
        gridsync_core::document::actor_for(device.id)
    } else {
        automerge::ActorId::from(req.actor.as_ref())
    };
    if gridsync_core::document::device_of(&replica) != Some(device.id) {
        return Err(ApiError::ForeignActor {
            actor: replica.to_hex_string(),
            device: device.id.to_string(),
        });
    }
    // A version 1 phone cannot take a fresh actor: it keeps getting per-document refusals
    // (as before protocol 2) rather than being shut out.
    if req.version >= 2 && state.storage.actor_retired(&replica).await? {
        return Err(ApiError::ActorRetired(replica.to_hex_string()));
    }
    let cursor = Cursor::decode(&req.cursor).map_err(ApiError::BadCursor)?;
    let receipt = crate::storage::Receipt::now(req.clock);
    let merged = state.storage.merge(&device, &req.docs, receipt).await?;
    let timer = phases.time(Phase::Pull);
    let pull = state
        .storage
        .pull(
            &device,
            &replica,
            &cursor,
            PullBudget {
                snapshots: req.version >= 4,
                ..state.config.pull_budget
            },
        )
        .await?;
    drop(timer);
    let _timer = phases.time(Phase::Encode);
    let mut docs = pull.docs;
    docs.extend(merged.sync_replies);
    // Answered in the version asked in: the layout is the same, and an older phone refuses a
    // version it does not know.
    let resp = SyncResponse {
        version: req.version,
        acks: merged.acks,
        docs,
        cursor: ByteBuf::from(pull.cursor.encode()),
        more: pull.more,
        reset: pull.reset,
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(gridsync_proto::CONTENT_TYPE),
        )],
        resp.encode(),
    )
        .into_response())
}

/// `POST /v1/intake/cases` body: one case from the 12345 hotline or a residents' mini-program.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeCase {
    /// The caller's order number; repeating it returns the same case (idempotent).
    pub order_no: String,
    /// `hotline12345` (default) or `resident`.
    #[serde(default)]
    pub source: Option<String>,
    /// Short title.
    pub title: String,
    /// 小类 code from the category table.
    pub subcategory: String,
    /// What the resident reported.
    pub description: String,
    /// Address of the problem.
    pub address: String,
    /// The grid, when the caller knows it.
    #[serde(default)]
    pub grid: Option<String>,
    /// Where the problem is (used to find the grid when none is given).
    #[serde(default)]
    pub location: Option<Gps>,
    /// Urgent cases get the category's urgent time limit.
    #[serde(default)]
    pub urgent: bool,
    /// The resident who called.
    #[serde(default)]
    pub reporter: Option<IntakeReporter>,
}

/// The resident behind an intake case.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeReporter {
    /// Name.
    pub name: String,
    /// Phone.
    #[serde(default)]
    pub phone: String,
}

/// `POST /v1/intake/cases` answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct IntakeAccepted {
    /// The case document.
    pub case: DocId,
    /// The grid it was placed in.
    pub grid: String,
    /// False when this order number was already taken in (nothing new was created).
    pub created: bool,
}

/// Refuses control characters in an intake case's text (line breaks and tabs are allowed in
/// the description only): they break exports, screens and the 12345 system's own records.
fn check_intake_text(req: &IntakeCase) -> Result<(), ApiError> {
    let mut fields: Vec<(&str, &str, bool)> = vec![
        ("order_no", &req.order_no, false),
        ("title", &req.title, false),
        ("subcategory", &req.subcategory, false),
        ("description", &req.description, true),
        ("address", &req.address, false),
    ];
    if let Some(r) = &req.reporter {
        fields.push(("reporter.name", &r.name, false));
        fields.push(("reporter.phone", &r.phone, false));
    }
    for (field, text, multiline) in fields {
        if let Some((at, c)) = text
            .chars()
            .enumerate()
            .find(|(_, c)| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')))
        {
            return Err(ApiError::InvalidCase(format!(
                "{field}: control character U+{:04X} at position {at} is not allowed",
                u32::from(c)
            )));
        }
    }
    Ok(())
}

async fn place<S: Storage>(state: &AppState<S>, req: &IntakeCase) -> Result<GridCode, ApiError> {
    if let Some(g) = &req.grid {
        let code = GridCode::parse(g).map_err(|e| ApiError::InvalidCase(format!("grid: {e}")))?;
        if code.level() < GridLevel::Grid {
            return Err(ApiError::InvalidCase(format!(
                "grid: {code} is a {}, not a grid",
                code.level().as_str()
            )));
        }
        // Only a grid the town centre registered: a made-up code would put the case where no
        // worker and no dispatcher looks.
        if !state
            .storage
            .grids()
            .await?
            .iter()
            .any(|g| g.code == code.as_str())
        {
            return Err(ApiError::InvalidCase(format!(
                "grid: no grid {code} is registered on this server"
            )));
        }
        return Ok(code);
    }
    let Some(at) = req.location else {
        return Err(ApiError::InvalidCase(
            "grid: give a grid code or a location".into(),
        ));
    };
    gridsync_core::validate::check_gps(at.lat, at.lon)
        .map_err(|p| ApiError::InvalidCase(format!("location: {p}")))?;
    // The deepest unit whose boundary holds the point (a micro-grid over its grid).
    let grids = state.storage.grids().await?;
    grids
        .iter()
        .filter_map(|g| {
            let boundary: Vec<[f64; 2]> = serde_json::from_str(&g.boundary).ok()?;
            let code = GridCode::parse(&g.code).ok()?;
            (code.level() >= GridLevel::Grid && polygon_contains(&boundary, at.lat, at.lon))
                .then_some(code)
        })
        .max_by_key(|c| c.level())
        .ok_or_else(|| ApiError::NoGrid(format!("no grid's boundary holds {}, {}", at.lat, at.lon)))
}

async fn intake<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let _permit = admit(&state)?;
    let key = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let source = state
        .storage
        .intake_source(&secret_hash(key))
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let source_name = source.name.clone();
    expect_content_type(&headers, "application/json")?;
    let body = read_body(body)?;
    let req: IntakeCase = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadJson(format!("intake case: {e}")))?;
    let order_no = req.order_no.trim();
    if order_no.is_empty() || order_no.len() > 100 {
        return Err(ApiError::InvalidCase(
            "order_no: is required (at most 100 characters)".into(),
        ));
    }
    if let Some(id) = state.storage.intake_order(&source_name, order_no).await? {
        let grid = state
            .storage
            .load(id)
            .await?
            .map(|d| d.header().scope.to_string())
            .unwrap_or_default();
        return Ok((
            StatusCode::OK,
            Json(IntakeAccepted {
                case: id,
                grid,
                created: false,
            }),
        )
            .into_response());
    }
    check_intake_text(&req)?;
    let case_source = match req.source.as_deref().unwrap_or("hotline12345") {
        "hotline12345" => CaseSource::Hotline12345,
        "resident" => CaseSource::Resident,
        other => {
            return Err(ApiError::InvalidCase(format!(
                "source: {other:?} is not hotline12345 or resident"
            )));
        }
    };
    if state.config.reference.category(&req.subcategory).is_none() {
        return Err(ApiError::InvalidCase(format!(
            "subcategory: {:?} is not in the category table",
            req.subcategory
        )));
    }
    let grid = place(&state, &req).await?;
    if let Some(towns) = &source.towns
        && !towns.iter().any(|t| t.contains(&grid))
    {
        return Err(ApiError::InvalidCase(format!(
            "grid: {grid} is outside the towns this intake key serves ({})",
            crate::auth::join_scopes(towns)
        )));
    }
    let now = now_ms();
    let mut case = Case {
        title: req.title.clone(),
        source: case_source,
        category: req.subcategory.chars().take(2).collect(),
        subcategory: req.subcategory.clone(),
        location: req.location,
        address: req.address.clone(),
        description: req.description.clone(),
        urgency: if req.urgent {
            Urgency::Urgent
        } else {
            Urgency::Normal
        },
        reported_by: req
            .reporter
            .as_ref()
            .map_or_else(|| source_name.clone(), |r| r.name.clone()),
        reported_at: now,
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    };
    if let Some(r) = &req.reporter {
        case.parties.insert(
            RecordId::new(),
            Party {
                name: r.name.clone(),
                phone: r.phone.clone(),
                household: None,
                resident: None,
                role: "reporter".into(),
            },
        );
    }
    let actor = Actor {
        name: source_name.clone(),
        role: Role::Intake,
        dept: None,
    };
    let note = format!("{source_name} 工单 {order_no}");
    act(
        &mut case,
        Action::Report,
        &actor,
        now,
        &note,
        Default::default(),
    )
    .map_err(|e| ApiError::InvalidCase(e.to_string()))?;
    let device = state.storage.service_device(crate::Service::Intake).await?;
    let doc = Document::create(DocId::new(), grid.clone(), device, &case)
        .map_err(|e| ApiError::InvalidCase(e.to_string()))?;
    let (id, created) = state
        .storage
        .create_intake_case(&source_name, order_no, doc)
        .await?;
    tracing::info!(case = %id, grid = %grid, source = %source_name, order_no, created, "intake case");
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(IntakeAccepted {
            case: id,
            grid: grid.to_string(),
            created,
        }),
    )
        .into_response())
}

/// `GET /v1/indicators` parameters.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct IndicatorQuery {
    /// Start (inclusive): `YYYY-MM-DD` (China time) or milliseconds.
    pub from: String,
    /// End (exclusive): `YYYY-MM-DD` (China time) or milliseconds.
    pub to: String,
    /// `grid`, `department` or `category`.
    pub group_by: Option<GroupBy>,
}

/// A query time: milliseconds, or a `YYYY-MM-DD` date meaning its midnight in China time.
pub(crate) fn parse_instant(field: &str, v: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = v.parse::<i64>() {
        return Ok(ms);
    }
    let date = gridsync_core::validate::parse_date(v).ok_or_else(|| {
        ApiError::BadQuery(format!(
            "{field}: {v:?} is neither YYYY-MM-DD nor milliseconds"
        ))
    })?;
    let offset =
        time::UtcOffset::from_hms(8, 0, 0).map_err(|e| ApiError::BadQuery(e.to_string()))?;
    let t = date.midnight().assume_offset(offset);
    Ok(i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}

async fn indicators<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    query: Result<axum::extract::Query<IndicatorQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let device = authenticate(&state, &headers).await?;
    if !matches!(device.role, Role::Dispatcher | Role::Leader) {
        return Err(ApiError::Forbidden(format!(
            "indicators are for dispatchers and leaders, not a {}",
            device.role
        )));
    }
    let axum::extract::Query(q) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let from = parse_instant("from", &q.from)?;
    let to = parse_instant("to", &q.to)?;
    if to <= from {
        return Err(ApiError::BadQuery("to: must be after from".into()));
    }
    let group_by = q.group_by.unwrap_or(GroupBy::Grid);
    let (groups, total) = crate::indicators::for_scope(&state, from, to, group_by, &|g| {
        GridCode::parse(g).is_ok_and(|g| crate::merge::in_scope(&device, &g))
    })
    .await?;
    Ok(Json(serde_json::json!({
        "from": from,
        "to": to,
        "group_by": group_by,
        "groups": groups,
        "total": total,
    })))
}

/// `GET /v1/time-flags`: the entry times flagged as implausible in the caller's scope, for
/// dispatchers and leaders (the rule is in `gridsync_core::time_flags` and docs/API.md).
async fn time_flags<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let device = authenticate(&state, &headers).await?;
    if !matches!(device.role, Role::Dispatcher | Role::Leader) {
        return Err(ApiError::Forbidden(format!(
            "time flags are for dispatchers and leaders, not a {}",
            device.role
        )));
    }
    let flags: Vec<_> = state
        .storage
        .flagged_times()
        .await?
        .into_iter()
        .filter(|f| GridCode::parse(&f.scope).is_ok_and(|g| crate::merge::in_scope(&device, &g)))
        .collect();
    Ok(Json(serde_json::json!({ "flags": flags })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use tower::ServiceExt;

    async fn state(max_in_flight: usize) -> (AppState<crate::SqliteStorage>, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::SqliteStorage::open(dir.path())
            .await
            .expect("storage");
        let config = Config {
            max_in_flight,
            queue: 0,
            ..Config::default()
        };
        (AppState::new(storage, config), dir)
    }

    #[tokio::test]
    async fn a_sync_waits_in_the_queue_for_a_slot_and_only_so_long() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = crate::SqliteStorage::open(dir.path())
            .await
            .expect("storage");
        let config = Config {
            max_in_flight: 1,
            queue: 8,
            queue_wait: Duration::from_millis(300),
            ..Config::default()
        };
        let state = AppState::new(storage, config);
        let post = || {
            axum::http::Request::post("/v1/sync")
                .body(Body::empty())
                .expect("request")
        };
        // Slot taken; it frees while the request waits: the request is served (401: no token).
        let held = admit(&state).expect("the only permit");
        let router = app(state.clone());
        let waiting = tokio::spawn(router.clone().oneshot(post()));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!waiting.is_finished(), "it waits rather than being refused");
        drop(held);
        let resp = waiting.await.expect("join").expect("response");
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
        // Slot taken for longer than the queue wait: 503 with Retry-After, after the wait.
        let held = admit(&state).expect("the only permit");
        let start = std::time::Instant::now();
        let resp = router.oneshot(post()).await.expect("response");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(start.elapsed() >= Duration::from_millis(300));
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        drop(held);
        assert_eq!(
            state.waiting.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "nobody is left counted in the queue"
        );
    }

    #[tokio::test]
    async fn a_busy_server_answers_503_with_retry_after() {
        let (state, _dir) = state(1).await;
        let held = admit(&state).expect("the only permit");
        let resp = app(state.clone())
            .oneshot(
                axum::http::Request::post("/v1/sync")
                    .body(Body::from(vec![1u8]))
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "1");
        let body = axum::body::to_bytes(resp.into_body(), 4096)
            .await
            .expect("body");
        let e: ErrorBody = serde_json::from_slice(&body).expect("json");
        assert_eq!(e.error.code, "busy");
        drop(held);
        let resp = app(state)
            .oneshot(
                axum::http::Request::post("/v1/sync")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(
            resp.status(),
            StatusCode::UNAUTHORIZED,
            "admitted once the permit is free"
        );
    }

    #[tokio::test]
    async fn health_and_request_ids() {
        let (state, _dir) = state(4).await;
        let resp = app(state)
            .oneshot(
                axum::http::Request::get("/healthz")
                    .body(Body::empty())
                    .expect("request"),
            )
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        assert!(resp.headers().contains_key("x-request-id"));
    }
}
