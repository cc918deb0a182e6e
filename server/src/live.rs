//! Live sync for phones that are online: `GET /v1/sync/live` is a long poll that answers as
//! soon as anything in the device's feeds was committed after its cursor, by this process or
//! (on PostgreSQL, through `LISTEN`/`NOTIFY`) any other; the phone then runs an ordinary
//! `POST /v1/sync`. The answer carries no documents, so there is one sync path.
//!
//! Query: `cursor` (the phone's cursor bytes in hex, as its store keeps them; absent means
//! "from the beginning"), `actor` (the replica's actor in hex, so its own pushes do not wake it)
//! and `wait` (seconds, 1 to 60, default 25). Answer: `{"news": true}` when there is
//! something to pull, `{"news": false}` when the wait ran out.
//!
//! **Invariant:** a waiter subscribes before it looks, so a commit between the look and the
//! wait still wakes it; a notice is a hint (the database is asked again), never the news.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::http::{ApiError, AppState, authenticate};
use crate::storage::{Cursor, Storage};

/// The longest a live request waits.
pub const MAX_WAIT_SECS: u64 = 60;

/// The query of `GET /v1/sync/live`.
#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    /// The phone's cursor, hex.
    #[serde(default)]
    pub cursor: Option<String>,
    /// The replica's actor, hex.
    #[serde(default)]
    pub actor: Option<String>,
    /// Seconds to wait at most.
    #[serde(default)]
    pub wait: Option<u64>,
}

/// The answer of `GET /v1/sync/live`.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct LiveAnswer {
    /// There is something to pull: sync now.
    pub news: bool,
}

/// The live-sync route.
pub fn routes<S: Storage>() -> Router<AppState<S>> {
    Router::new().route("/v1/sync/live", get(live::<S>))
}

async fn live<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Query(q): Query<LiveQuery>,
) -> Result<Json<LiveAnswer>, ApiError> {
    let device = authenticate(&state, &headers).await?;
    let cursor = match q.cursor.as_deref().filter(|c| !c.is_empty()) {
        None => Cursor::default(),
        Some(text) => {
            if text.len() > 2 * gridsync_proto::limits::MAX_CURSOR_BYTES {
                return Err(ApiError::BadQuery(format!(
                    "cursor: longer than {} bytes",
                    gridsync_proto::limits::MAX_CURSOR_BYTES
                )));
            }
            let bytes = hex::decode(text)
                .map_err(|e| ApiError::BadQuery(format!("cursor: not hex ({e})")))?;
            Cursor::decode(&bytes).map_err(|e| ApiError::BadQuery(format!("cursor: {e}")))?
        }
    };
    let actor = q
        .actor
        .as_deref()
        .map(|hex_actor| {
            hex::decode(hex_actor)
                .map(|b| automerge::ActorId::from(b.as_slice()))
                .map_err(|e| ApiError::BadQuery(format!("actor: not hex ({e})")))
        })
        .transpose()?;
    if let Some(actor) = &actor
        && gridsync_core::document::device_of(actor) != Some(device.id)
    {
        return Err(ApiError::ForeignActor {
            actor: actor.to_hex_string(),
            device: device.id.to_string(),
        });
    }
    let wait = q.wait.unwrap_or(25);
    if !(1..=MAX_WAIT_SECS).contains(&wait) {
        return Err(ApiError::BadQuery(format!(
            "wait: {wait} seconds is outside 1 to {MAX_WAIT_SECS}"
        )));
    }
    let _slot = state.live_slot()?;
    let feeds = device.feed_scopes();
    let mut watch = state.storage.watch();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait);
    loop {
        if state
            .storage
            .has_news(&device, actor.as_ref(), &cursor)
            .await?
        {
            return Ok(Json(LiveAnswer { news: true }));
        }
        // Wait for a notice that concerns this device (others are skipped without asking the
        // database), or for the deadline.
        loop {
            let notice: Arc<_> = match tokio::time::timeout_at(deadline, watch.next()).await {
                Ok(n) => n,
                Err(_) => return Ok(Json(LiveAnswer { news: false })),
            };
            if notice.concerns(&feeds) {
                break;
            }
        }
        // Revoked (or re-enrolled with another binding) while waiting: answer as a new
        // request would.
        if authenticate(&state, &headers).await?.feed_scopes() != feeds {
            return Err(ApiError::Revoked);
        }
    }
}
