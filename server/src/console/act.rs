//! A person's case actions from the console, written the way a phone writes them: the
//! workflow operation edits the case under an actor bound to the person's own replica, and
//! the change goes through [`Storage::merge`], where the same role, department and workflow
//! checks run as for any device. There is no second code path for the rules.
//!
//! Each write takes a fresh actor of the person's replica (`fresh_actor`): two server
//! processes writing for the same person at once can never reuse a sequence number.

use std::str::FromStr;

use axum::body::Bytes;
use axum::extract::{Multipart, Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Redirect, Response};
use object_store::{PutMode, PutOptions, PutPayload};

use gridsync_core::clock::now_ms;
use gridsync_core::document::fresh_actor;
use gridsync_core::records::{Case, PhotoRef, PhotoStage};
use gridsync_core::workflow::{
    Action, Actor, TimeLimit, act, plan_dispatch, plan_extension, plan_resume,
};
use gridsync_proto::{AckStatus, DocId, DocPush};
use serde_bytes::ByteBuf;

use super::pages::visible_case;
use super::session::{self, CSRF_FIELD, check_csrf, signed_in};
use super::{ConsoleError, FormData};
use crate::auth::Device;
use crate::storage::console::ConsoleUser;
use crate::storage::{BlobRow, Receipt};
use crate::{AppState, Storage};

/// Whether the console offers `action`: every workflow action but the grid worker's own
/// (reporting, and handling a case alone), which stay on the phone.
pub fn console_offers(action: Action) -> bool {
    !matches!(
        action,
        Action::Report | Action::SelfHandle | Action::CloseSelf
    )
}

/// The replica a person writes as: their device id, role, towns and department.
pub fn person_device(user: &ConsoleUser) -> Result<Device, ConsoleError> {
    let role = user
        .role
        .workflow_role()
        .ok_or_else(|| ConsoleError::Forbidden("运维账号不处理案件。".into()))?;
    let id = user
        .device_id
        .ok_or_else(|| ConsoleError::Forbidden("该账号没有可写入的身份，请联系运维。".into()))?;
    Ok(Device {
        id,
        name: user.name.clone(),
        role,
        scopes: user.towns.clone(),
        department: user.dept.clone(),
    })
}

/// The workflow actor of a person.
pub fn person_actor(user: &ConsoleUser, device: &Device) -> Actor {
    Actor {
        name: user.name.clone(),
        role: device.role,
        dept: user.dept.clone(),
    }
}

/// Edits case `id` as `device` (any writer: a person's replica, the routing service) and
/// merges the change through the merge path; a refusal there writes nothing.
pub async fn write_case<S: Storage>(
    state: &AppState<S>,
    device: &Device,
    id: DocId,
    edit: impl FnOnce(&mut Case) -> Result<(), ConsoleError>,
) -> Result<(), ConsoleError> {
    write_doc(state, device, id, |doc| {
        let mut outcome = Ok(());
        doc.update::<Case>(|c| outcome = edit(c))
            .map_err(|e| ConsoleError::Refused(format!("修改未通过校验：{e}")))?;
        outcome
    })
    .await
}

/// Edits document `id` as `device` through `edit` (any `Document` operation: an update, a
/// conflict resolved) and merges the change; a refusal there writes nothing.
pub async fn write_doc<S: Storage>(
    state: &AppState<S>,
    device: &Device,
    id: DocId,
    edit: impl FnOnce(&mut gridsync_core::Document) -> Result<(), ConsoleError>,
) -> Result<(), ConsoleError> {
    let mut doc = state
        .storage
        .load(id)
        .await?
        .ok_or_else(|| ConsoleError::NotFound("案件不存在。".into()))?;
    doc.automerge().set_actor(fresh_actor(device.id));
    doc.set_role(device.role);
    let before = doc.heads();
    edit(&mut doc)?;
    let changes = doc.changes_since(&before);
    if changes.is_empty() {
        return Ok(());
    }
    let push = DocPush {
        doc: id,
        header: None,
        heads: doc.heads().iter().map(|h| h.0).collect(),
        changes: changes
            .iter()
            .map(|c| ByteBuf::from(c.raw_bytes().to_vec()))
            .collect(),
        sync: None,
    };
    let merged = state
        .storage
        .merge(device, &[push], Receipt::now(0))
        .await?;
    match merged.acks.first().map(|a| &a.status) {
        Some(AckStatus::Stored { .. }) => Ok(()),
        Some(AckStatus::Rejected { code, message }) => Err(ConsoleError::Refused(format!(
            "服务器拒绝了这次修改（{code}）：{message}"
        ))),
        Some(AckStatus::NeedSync) | None => Err(ConsoleError::Refused(
            "案件刚被他人修改，请刷新后重试。".into(),
        )),
    }
}

/// The event data an action needs, from the form (dispatch plans the deadline on the working
/// calendar; an extension and a resume move it).
fn action_data<S: Storage>(
    state: &AppState<S>,
    case: &Case,
    action: Action,
    form: &FormData,
    now: i64,
) -> Result<std::collections::BTreeMap<String, String>, ConsoleError> {
    let reference = &state.config.reference;
    let refused = |e: gridsync_core::workflow::WorkflowError| ConsoleError::Refused(e.to_string());
    Ok(match action {
        Action::Dispatch => {
            let lead = form.need("lead", "主办部门")?.to_owned();
            let co: Vec<String> = form.all("co").into_iter().filter(|c| *c != lead).collect();
            plan_dispatch(case, reference, now, Some(&lead), Some(&co)).map_err(refused)?
        }
        Action::ApproveExtension => {
            let days: u32 = form
                .need("days", "延长工作日")?
                .parse()
                .ok()
                .filter(|d| (1..=30).contains(d))
                .ok_or_else(|| ConsoleError::bad("延长工作日", "应为 1–30 的整数"))?;
            plan_extension(&case.state(), reference, TimeLimit::WorkingDays(days))
        }
        Action::Resume => plan_resume(&case.state(), reference, now),
        Action::FollowUp => {
            let s = form.need("satisfaction", "满意度")?;
            gridsync_core::workflow::Satisfaction::from_str(s)
                .map_err(|e| ConsoleError::bad("满意度", e))?;
            [("satisfaction".to_owned(), s.to_owned())].into()
        }
        Action::Merge => {
            let into = form.need("into", "合并到案件编号")?;
            let into_id = DocId::from_str(into)
                .map_err(|_| ConsoleError::bad("合并到案件编号", "不是案件编号"))?;
            [("into".to_owned(), into_id.to_string())].into()
        }
        _ => Default::default(),
    })
}

/// `POST /console/cases/{id}/act`: one workflow action by the signed-in person.
pub async fn act_form<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    let (doc, case) = visible_case(&state, &signed, &id).await?;
    let id = doc.id();
    let action = Action::from_str(form.need("action", "操作")?)
        .ok()
        .filter(|a| console_offers(*a))
        .ok_or_else(|| ConsoleError::bad("操作", "控制台不提供这个操作"))?;
    if action == Action::Merge {
        let into = form.need("into", "合并到案件编号")?;
        if into == id.to_string() {
            return Err(ConsoleError::bad("合并到案件编号", "不能合并到自身"));
        }
        visible_case(&state, &signed, into)
            .await
            .map_err(|_| ConsoleError::bad("合并到案件编号", "没有这个案件，或不在您的范围内"))?;
    }
    let now = now_ms();
    let note = form.get("note").unwrap_or_default().to_owned();
    let result = async {
        let data = action_data(&state, &case, action, &form, now)?;
        let device = person_device(&signed.user)?;
        let actor = person_actor(&signed.user, &device);
        write_case(&state, &device, id, |c| {
            act(c, action, &actor, now, &note, data.clone())
                .map(|_| ())
                .map_err(|e| ConsoleError::Refused(e.to_string()))
        })
        .await?;
        Ok::<_, ConsoleError>(data)
    }
    .await;
    let name = format!("case.{}", action.as_str());
    match result {
        Ok(data) => {
            let detail = data
                .iter()
                .filter(|(k, _)| {
                    matches!(
                        k.as_str(),
                        "lead" | "co" | "deadline" | "satisfaction" | "into"
                    )
                })
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ");
            session::audit(
                &state,
                &headers,
                &signed.user.login,
                &name,
                &id.to_string(),
                "ok",
                &detail,
            )
            .await?;
            if action == Action::Register {
                // A category marked for automatic dispatch goes on at once.
                if let Err(e) = crate::routing::route_case(&state, id).await {
                    tracing::warn!(case = %id, error = %e, "automatic dispatch after registration failed");
                }
            }
            Ok(
                Redirect::to(&format!("/console/cases/{id}?done={}", action.as_str()))
                    .into_response(),
            )
        }
        Err(e) => {
            session::audit(
                &state,
                &headers,
                &signed.user.login,
                &name,
                &id.to_string(),
                "refused",
                &e.to_string(),
            )
            .await?;
            Err(e)
        }
    }
}

/// Runs a browser's photo through the pipeline, stores its files and adds it to the case as
/// the person; returns the stored file's SHA-256.
async fn store_photo<S: Storage>(
    state: &AppState<S>,
    user: &ConsoleUser,
    id: DocId,
    case: &Case,
    stage: Option<&str>,
    file: Option<Vec<u8>>,
) -> Result<String, ConsoleError> {
    if case.state().status.is_finished() {
        return Err(ConsoleError::Refused("案件已办结，不能再添加照片。".into()));
    }
    let stage = match stage {
        Some("before") => PhotoStage::Before,
        Some("during") => PhotoStage::During,
        Some("after") | None => PhotoStage::After,
        Some("check") => PhotoStage::Check,
        Some(other) => return Err(ConsoleError::bad("阶段", format!("未知的阶段 {other}"))),
    };
    let input = file
        .filter(|f| !f.is_empty())
        .ok_or_else(|| ConsoleError::bad("照片", "请选择一张照片"))?;
    let device = person_device(user)?;
    let processed = tokio::task::spawn_blocking(move || {
        gridsync_core::photo::process(&input, &Default::default())
    })
    .await
    .map_err(|e| ConsoleError::Refused(format!("照片处理中断：{e}")))?
    .map_err(|e| ConsoleError::bad("照片", e.to_string()))?;
    let thumb_phash = image::load_from_memory(&processed.thumb)
        .ok()
        .map(|img| crate::photos::perceptual_hash(&img));
    for (sha, bytes, phash) in [
        (&processed.thumb_sha256, &processed.thumb, thumb_phash),
        (&processed.full_sha256, &processed.full, None),
    ] {
        let path = crate::photos::blob_path(sha);
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match state
            .config
            .photos
            .store
            .put_opts(&path, PutPayload::from(bytes.clone()), opts)
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => {}
            Err(e) => return Err(ConsoleError::Refused(format!("照片未能保存：{e}"))),
        }
        state
            .storage
            .insert_blob(&BlobRow {
                sha256: sha.clone(),
                size: bytes.len() as u64,
                mime: "image/jpeg".into(),
                phash,
                stored_at: now_ms(),
                device: device.id,
            })
            .await?;
    }
    let photo = PhotoRef::from_processed(&processed, stage, now_ms(), None);
    write_case(state, &device, id, |c| {
        c.photos
            .insert(gridsync_proto::RecordId::new(), photo.clone());
        Ok(())
    })
    .await?;
    Ok(processed.full_sha256)
}

/// Largest photo the console accepts from a browser (as a phone's camera file).
pub const MAX_UPLOAD: usize = 20 * 1024 * 1024;

/// `POST /console/cases/{id}/photos` (multipart: `_csrf`, `stage`, `photo`): adds a photo to
/// a case, through the photo pipeline (re-encoded, thumbnail, no metadata) and the merge path.
pub async fn add_photo<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    mut multipart: Multipart,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let (mut csrf, mut stage, mut file) = (None, None, None);
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| ConsoleError::bad("照片", e.to_string()))?
    {
        match field.name() {
            Some(CSRF_FIELD) => csrf = field.text().await.ok(),
            Some("stage") => stage = field.text().await.ok(),
            Some("photo") => {
                let bytes = field
                    .bytes()
                    .await
                    .map_err(|e| ConsoleError::bad("照片", e.to_string()))?;
                if bytes.len() > MAX_UPLOAD {
                    return Err(ConsoleError::bad("照片", "超过 20 MB"));
                }
                file = Some(bytes.to_vec());
            }
            _ => {}
        }
    }
    check_csrf(&signed, &headers, csrf.as_deref())?;
    let (doc, case) = visible_case(&state, &signed, &id).await?;
    let id = doc.id();
    let result = store_photo(&state, &signed.user, id, &case, stage.as_deref(), file).await;
    session::audit(
        &state,
        &headers,
        &signed.user.login,
        "case.photo",
        &id.to_string(),
        if result.is_ok() { "ok" } else { "refused" },
        &match &result {
            Ok(sha) => sha.clone(),
            Err(e) => e.to_string(),
        },
    )
    .await?;
    result?;
    Ok(Redirect::to(&format!("/console/cases/{id}?done=photo")).into_response())
}

/// `POST /console/cases/{id}/resolve` (`path`, `choice`): settles a field two people wrote at
/// once by writing the value chosen among the concurrent ones (as the person, through the
/// merge path).
pub async fn resolve<S: Storage>(
    State(state): State<AppState<S>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ConsoleError> {
    let signed = signed_in(&state, &headers).await?;
    let form = FormData::parse(&body)?;
    check_csrf(&signed, &headers, form.get(CSRF_FIELD))?;
    let (doc, _) = visible_case(&state, &signed, &id).await?;
    let id = doc.id();
    let path = form.need("path", "字段")?.to_owned();
    let choice: usize = form
        .need("choice", "取值")?
        .parse()
        .map_err(|_| ConsoleError::bad("取值", "不是序号"))?;
    let conflict = doc
        .conflicts()
        .into_iter()
        .find(|c| c.path == path)
        .ok_or_else(|| ConsoleError::Refused("这个字段已经没有冲突了，请刷新。".into()))?;
    let value = conflict
        .values
        .get(choice)
        .cloned()
        .ok_or_else(|| ConsoleError::bad("取值", "没有这个取值"))?;
    let device = person_device(&signed.user)?;
    let result = write_doc(&state, &device, id, |d| {
        d.resolve::<Case>(&path, value.clone())
            .map(|_| ())
            .map_err(|e| ConsoleError::Refused(format!("未能采用该值：{e}")))
    })
    .await;
    let outcome = if result.is_ok() { "ok" } else { "refused" };
    session::audit(
        &state,
        &headers,
        &signed.user.login,
        "case.resolve",
        &id.to_string(),
        outcome,
        &path,
    )
    .await?;
    result?;
    Ok(Redirect::to(&format!("/console/cases/{id}?done=resolve")).into_response())
}
