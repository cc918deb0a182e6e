//! `GET /v1/exports/{cases|indicators|households}` for dispatcher and leader devices: the same
//! tables as `gridsync-server export`, bounded by the device's towns (and `within`), ID
//! numbers and phones masked for leaders.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gridsync_proto::GridCode;

use super::export::{self, ExportFormat, Mask, Scope};
use crate::auth::Role;
use crate::http::{ApiError, authenticate, parse_instant};
use crate::indicators::GroupBy;
use crate::{AppState, Storage};

/// The export routes.
pub fn routes<S: Storage>() -> Router<AppState<S>> {
    Router::new().route("/v1/exports/{kind}", get(export_file::<S>))
}

/// `GET /v1/exports/{kind}` query.
#[derive(Debug, serde::Deserialize)]
pub struct ExportQuery {
    /// `xlsx` (default) or `csv`.
    pub format: Option<String>,
    /// Start (inclusive) for cases and indicators: `YYYY-MM-DD` (China time) or ms.
    pub from: Option<String>,
    /// End (exclusive).
    pub to: Option<String>,
    /// Only this unit (inside the device's towns).
    pub within: Option<String>,
    /// For indicators: the grouping of the first sheet (and of CSV).
    pub group_by: Option<GroupBy>,
}

async fn export_file<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(kind): Path<String>,
    query: Result<Query<ExportQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    // An export holds a request slot like any other request, so a burst of them waits its
    // turn (503 + Retry-After) instead of starving the phones' syncs.
    let _permit = crate::http::admit(&state)?;
    let device = authenticate(&state, &headers).await?;
    if !matches!(device.role, Role::Dispatcher | Role::Leader) {
        return Err(ApiError::Forbidden(format!(
            "exports are for dispatchers and leaders, not a {}",
            device.role
        )));
    }
    let Query(q) = query.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let format = match &q.format {
        Some(f) => f
            .parse::<ExportFormat>()
            .map_err(|e| ApiError::BadQuery(format!("format: {e}")))?,
        None => ExportFormat::Xlsx,
    };
    let within = q
        .within
        .as_deref()
        .map(|w| GridCode::parse(w.trim()).map_err(|e| ApiError::BadQuery(format!("within: {e}"))))
        .transpose()?;
    if let Some(w) = &within
        && !crate::merge::in_scope(&device, w)
    {
        return Err(ApiError::Forbidden(format!(
            "within: {w} is outside the units this device serves"
        )));
    }
    let period = || -> Result<(i64, i64), ApiError> {
        let from = parse_instant(
            "from",
            q.from
                .as_deref()
                .ok_or_else(|| ApiError::BadQuery("from: is required".into()))?,
        )?;
        let to = parse_instant(
            "to",
            q.to.as_deref()
                .ok_or_else(|| ApiError::BadQuery("to: is required".into()))?,
        )?;
        if to <= from {
            return Err(ApiError::BadQuery("to: must be after from".into()));
        }
        Ok((from, to))
    };
    let role = device.role;
    let scope = Scope {
        device: Some(device),
        within,
    };
    let tables = match kind.as_str() {
        "cases" => {
            let (from, to) = period()?;
            export::cases(
                state.storage.as_ref(),
                &state.config.reference,
                from,
                to,
                &scope,
            )
            .await?
        }
        "indicators" => {
            let (from, to) = period()?;
            let first = q.group_by.unwrap_or(GroupBy::Grid);
            let mut groupings = vec![first];
            groupings.extend(
                [GroupBy::Grid, GroupBy::Department, GroupBy::Category]
                    .into_iter()
                    .filter(|g| *g != first),
            );
            export::indicators(&state, from, to, &scope, &groupings).await?
        }
        "households" => {
            export::households(state.storage.as_ref(), &scope, Mask::for_role(role)).await?
        }
        other => {
            return Err(ApiError::BadQuery(format!(
                "{other:?} is not an export (cases, indicators or households)"
            )));
        }
    };
    if let Some(t) = tables.iter().find(|t| t.rows.len() >= export::MAX_ROWS) {
        return Err(ApiError::BadQuery(format!(
            "the {} sheet would have {} rows, more than a spreadsheet holds; narrow it with \
             `within` or a shorter period",
            t.name,
            t.rows.len()
        )));
    }
    // Writing a workbook is CPU work: off the async workers, like the merges' Automerge work.
    let bytes = tokio::task::spawn_blocking(move || export::encode(&tables, format))
        .await
        .map_err(|_| ApiError::Panicked)?
        .map_err(|e| {
            tracing::error!(error = %e, "writing an export failed");
            ApiError::BadQuery("the export could not be written".into())
        })?;
    let disposition = format!("attachment; filename=\"{kind}.{}\"", format.extension());
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static(format.content_type()),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_str(&disposition)
                    .unwrap_or_else(|_| HeaderValue::from_static("attachment")),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        bytes,
    )
        .into_response())
}
