//! Automatic routing (自动流转): a registered case whose 小类 is marked for it is dispatched to
//! the category's default lead and co-departments, with the deadline of its time limit, by
//! the server's routing service: a writer of its own (never an enrolled device) acting as a
//! dispatcher of the case's town, through the merge path like every other write. The event
//! names the rule, so the case shows why it went where it went.
//!
//! Routing runs right after a registration in the console, and for registrations that
//! arrive from phones within about a second of their commit (at most one pass a second) and
//! once a minute.

use std::time::Duration;

use gridsync_core::clock::now_ms;
use gridsync_core::records::Case;
use gridsync_core::workflow::{Action, Actor, Role, Status, act, plan_dispatch};
use gridsync_proto::DocId;

use crate::auth::Device;
use crate::console::ConsoleError;
use crate::console::act::write_case;
use crate::storage::Service;
use crate::{AppState, Storage};

/// The name the routing service's events carry.
pub const ROUTER_NAME: &str = "自动流转";

/// One routing attempt at a time in this process: a registration in the console waits for a
/// pass the commit notice started, so the dispatcher sees the case dispatched when the page
/// comes back. (Across processes, `claim_routing` keeps it to one dispatch.)
static ROUTING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Dispatches case `id` if it is registered and its 小类 is marked; returns whether it did.
pub async fn route_case<S: Storage>(state: &AppState<S>, id: DocId) -> Result<bool, ConsoleError> {
    let _one = ROUTING.lock().await;
    let Some(doc) = state.storage.load(id).await? else {
        return Ok(false);
    };
    let Ok(case) = doc.read::<Case>() else {
        return Ok(false);
    };
    let st = case.state();
    if st.status != Status::Registered {
        return Ok(false);
    }
    let town = doc.header().scope.town();
    let marked = state
        .storage
        .auto_routes(std::slice::from_ref(&town))
        .await?;
    let Some(rule) = marked.iter().find(|r| r.subcategory == case.subcategory) else {
        return Ok(false);
    };
    let by = &rule.set_by;
    let now = now_ms();
    // One dispatch per registration, whichever task or process gets here first.
    let registration = st
        .applied
        .last()
        .map(ToString::to_string)
        .unwrap_or_default();
    if !state.storage.claim_routing(id, &registration, now).await? {
        return Ok(false);
    }
    let mut data = plan_dispatch(&case, &state.config.reference, now, None, None)
        .map_err(|e| ConsoleError::Refused(e.to_string()))?;
    let category = state
        .config
        .reference
        .category(&case.subcategory)
        .map_or_else(|| case.subcategory.clone(), |c| c.name.clone());
    data.insert(
        "rule".into(),
        format!("小类「{category}」登记后自动派往默认部门（{by} 设置）"),
    );
    let device = Device {
        id: state.storage.service_device(Service::Routing).await?,
        name: ROUTER_NAME.into(),
        role: Role::Dispatcher,
        scopes: vec![town],
        department: None,
    };
    let actor = Actor {
        name: ROUTER_NAME.into(),
        role: Role::Dispatcher,
        dept: None,
    };
    write_case(state, &device, id, |c| {
        // Looked at again on the state as loaded now: a case dispatched meanwhile is left.
        if c.state().status != Status::Registered {
            return Ok(());
        }
        act(
            c,
            Action::Dispatch,
            &actor,
            now,
            "按自动流转规则派遣",
            data.clone(),
        )
        .map(|_| ())
        .map_err(|e| ConsoleError::Refused(e.to_string()))
    })
    .await?;
    tracing::info!(case = %id, "dispatched by automatic routing");
    Ok(true)
}

/// Routes every registered case in a marked 小类; returns how many were dispatched.
pub async fn route_pending<S: Storage>(state: &AppState<S>) -> Result<usize, ConsoleError> {
    let mut n = 0;
    for id in state.storage.cases_to_route().await? {
        match route_case(state, id).await {
            Ok(true) => n += 1,
            Ok(false) => {}
            Err(e) => tracing::warn!(case = %id, error = %e, "automatic dispatch failed"),
        }
    }
    Ok(n)
}

/// Runs routing after commits (at most one pass a second: a storm's thousands of commits cost
/// a few queries, not one each) and once a minute, for as long as the server runs.
pub async fn run<S: Storage>(state: AppState<S>) {
    let mut watch = state.storage.watch();
    loop {
        if let Err(e) = route_pending(&state).await {
            tracing::warn!(error = %e, "automatic routing pass failed");
        }
        let _ = tokio::time::timeout(Duration::from_secs(60), watch.next()).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        watch.drain();
    }
}
