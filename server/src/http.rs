//! The HTTP surface: `POST /v1/sync`, `POST /v1/enroll`, `GET /healthz`.
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
    DecodeError, EnrollRequest, EnrollResponse, ErrorBody, ErrorDetail, PROTOCOL_VERSION,
    SyncRequest, SyncResponse, limits,
};
use serde_bytes::ByteBuf;
use tokio::sync::Semaphore;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{Device, new_token, normalize_code, secret_hash};
use crate::storage::{Cursor, EnrollError, PullBudget, Storage, StorageError};

/// Server settings that handlers read.
#[derive(Debug, Clone)]
pub struct Config {
    /// Requests processed at once; more get 503 with Retry-After.
    pub max_in_flight: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Caps on one pull.
    pub pull_budget: PullBudget,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            max_in_flight: 64,
            request_timeout: Duration::from_secs(60),
            pull_budget: PullBudget::default(),
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
}

impl<S> Clone for AppState<S> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
            config: self.config.clone(),
            in_flight: self.in_flight.clone(),
        }
    }
}

impl<S: Storage> AppState<S> {
    /// State over a storage with the given settings.
    pub fn new(storage: S, config: Config) -> Self {
        let permits = config.max_in_flight.max(1);
        Self {
            storage: Arc::new(storage),
            config: Arc::new(config),
            in_flight: Arc::new(Semaphore::new(permits)),
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
    /// The body did not decode.
    #[error("{0}")]
    Decode(#[from] DecodeError),
    /// The body could not be read or is too large.
    #[error("request body: {0}")]
    Body(String),
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
    /// A storage failure (details in the log).
    #[error("internal error")]
    Internal(#[from] StorageError),
}

impl ApiError {
    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Revoked => (StatusCode::FORBIDDEN, "device_revoked"),
            ApiError::DeviceMismatch { .. } => (StatusCode::FORBIDDEN, "device_mismatch"),
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
            ApiError::BadCursor(_) => (StatusCode::BAD_REQUEST, "bad_cursor"),
            ApiError::BadJson(_) => (StatusCode::BAD_REQUEST, "malformed_request"),
            ApiError::Enroll(EnrollError::InvalidCode) => (StatusCode::BAD_REQUEST, "invalid_code"),
            ApiError::Enroll(EnrollError::AlreadyEnrolled(_)) => {
                (StatusCode::CONFLICT, "already_enrolled")
            }
            ApiError::Enroll(_) | ApiError::Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            ApiError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        }
    }
}

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
        .route("/v1/enroll", post(enroll::<S>))
        .route("/v1/sync", post(sync::<S>))
        // The decoder enforces the message limit itself with a typed error; the transport
        // limit only stops a client from making the server buffer far more than that.
        .layer(DefaultBodyLimit::max(limits::MAX_MESSAGE_BYTES + 1024))
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

async fn healthz() -> &'static str {
    "ok"
}

async fn authenticate<S: Storage>(
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
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let body = body.map_err(|e| ApiError::Body(e.body_text()))?;
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
    }))
}

async fn sync<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    // Bound the work in flight: a busy server says so instead of queueing without end.
    let _permit = state
        .in_flight
        .clone()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy)?;
    let device = authenticate(&state, &headers).await?;
    let body = body.map_err(|e| ApiError::Body(e.body_text()))?;
    let req = SyncRequest::decode(&body)?;
    if req.device != device.id {
        return Err(ApiError::DeviceMismatch {
            claimed: req.device.to_string(),
            actual: device.id.to_string(),
        });
    }
    let cursor = Cursor::decode(&req.cursor).map_err(ApiError::BadCursor)?;
    let merged = state.storage.merge(&device, &req.docs).await?;
    let pull = state
        .storage
        .pull(&device, &cursor, state.config.pull_budget)
        .await?;
    let mut docs = pull.docs;
    docs.extend(merged.sync_replies);
    let resp = SyncResponse {
        version: PROTOCOL_VERSION,
        acks: merged.acks,
        docs,
        cursor: ByteBuf::from(pull.cursor.encode()),
        more: pull.more,
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
