//! Cases (问题诉求) and their workflow through the app API: report with the category table
//! checked, the actions allowed now for this device, acting, and a readable record of a case.

use std::collections::BTreeMap;

use gridsync_proto::{DocId, RecordId};
use serde::{Deserialize, Serialize};

use super::field::grid_code;
use super::{AppError, ConflictView, Replica, conflict_views, vocab};
use crate::clock::now_ms;
use crate::projection::CaseRow;
use crate::records::{Case, Gps, Party, Urgency};
use crate::workflow::{
    Action, Satisfaction, TimeLimit, act, available_actions, needs_note, plan_dispatch,
    plan_extension, plan_resume,
};

/// A department, by code and name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeptRef {
    /// Code (`D01`).
    pub code: String,
    /// Name (empty when the reference data lacks it).
    pub name: String,
}

/// A problem to report.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct NewCase {
    /// The grid it is in.
    pub grid: String,
    /// Short title.
    pub title: String,
    /// Where it came from (巡查发现, 走访发现, 群众反映, 12345 ... or the codes); inspection
    /// when empty.
    pub source: Option<String>,
    /// 小类 code from the category table.
    pub subcategory: String,
    /// Address.
    pub address: String,
    /// What is wrong.
    pub description: String,
    /// Urgent.
    pub urgent: bool,
    /// Where (latitude, longitude).
    pub gps: Option<(f64, f64)>,
    /// The resident reporting or involved: name.
    pub party_name: Option<String>,
    /// That person's phone.
    pub party_phone: Option<String>,
    /// That person's household (links the case to the archive).
    pub party_household: Option<DocId>,
}

/// Which cases to list.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CaseFilter {
    /// Only this status (code or label).
    pub status: Option<String>,
}

/// A workflow action with the values some actions need.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ActionRequest {
    /// The action (code or label: `sign` or 签收).
    pub action: String,
    /// Reason, result or instruction.
    pub note: String,
    /// dispatch: the lead department (default: the category's).
    pub lead: Option<String>,
    /// dispatch: co-departments (default: the category's).
    pub co: Option<Vec<String>>,
    /// follow_up: 满意, 基本满意 or 不满意.
    pub satisfaction: Option<String>,
    /// merge: the case this one duplicates.
    pub into: Option<DocId>,
    /// request/approve extension: working days (3 when not given).
    pub extra_days: Option<u32>,
}

/// An action the app may offer now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActionInfo {
    /// Code (`sign`).
    pub code: String,
    /// Label (签收).
    pub label: String,
    /// Whether the note (reason or result) is required.
    pub needs_note: bool,
}

/// One event of a case's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EventView {
    /// Event id.
    pub id: RecordId,
    /// When (the author's clock).
    pub at: i64,
    /// Who.
    pub by: String,
    /// Their role.
    pub role: String,
    /// Their department, for clerks.
    pub dept: Option<String>,
    /// The action's code.
    pub kind: String,
    /// The action's label.
    pub label: String,
    /// Reason, result or instruction.
    pub note: String,
    /// Whether the fold applied it (an event not allowed where it landed is kept, shown, and
    /// not applied).
    pub applied: bool,
}

/// A case as a readable record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaseView {
    /// Case id.
    pub id: DocId,
    /// Grid code.
    pub grid: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Address.
    pub address: String,
    /// Source label.
    pub source: String,
    /// Urgent.
    pub urgent: bool,
    /// 大类 code and name.
    pub category: String,
    /// 小类 code.
    pub subcategory: String,
    /// 小类 and 大类 names, when the category table has them.
    pub category_name: String,
    /// Who reported it, and when.
    pub reported_by: String,
    /// When reported.
    pub reported_at: i64,
    /// Status code.
    pub status: String,
    /// Status label.
    pub status_label: String,
    /// Lead department.
    pub lead: Option<DeptRef>,
    /// Co-departments.
    pub co: Vec<DeptRef>,
    /// Deadline.
    pub deadline: Option<i64>,
    /// Past the deadline and not handled.
    pub overdue: bool,
    /// 25 % or less of the time left.
    pub amber: bool,
    /// 催办.
    pub urged: bool,
    /// Approved extensions.
    pub extensions: u32,
    /// An extension request waits.
    pub extension_pending: bool,
    /// Results sent back.
    pub reworks: u32,
    /// 回访 satisfaction, as its label.
    pub satisfaction: Option<String>,
    /// 督办 notices: when, who, instruction.
    pub supervisions: Vec<EventView>,
    /// The timeline, oldest first.
    pub timeline: Vec<EventView>,
    /// Photos, by stage.
    pub photos: Vec<super::PhotoView>,
    /// People involved: name and phone.
    pub parties: Vec<(String, String)>,
    /// Events not applied, with why.
    pub event_conflicts: Vec<String>,
    /// Times flagged as not given honestly.
    pub time_flags: Vec<String>,
    /// Fields with concurrent values.
    pub conflicts: Vec<ConflictView>,
    /// What this device may do now.
    pub allowed_actions: Vec<ActionInfo>,
    /// The whole derived state (for tools that need more than the fields above).
    pub state: crate::workflow::CaseState,
    /// The record itself.
    pub case: Case,
}

/// Working days asked for when an extension request says nothing.
const DEFAULT_EXTRA_DAYS: u32 = 3;

/// The working days the latest extension request asked for.
fn requested_days(case: &Case) -> Option<u32> {
    crate::workflow::fold_order(case)
        .iter()
        .rev()
        .filter_map(|id| case.events.get(id))
        .find(|e| e.kind == Action::RequestExtension.as_str())
        .and_then(|e| e.data.get("extra_days"))
        .and_then(|d| d.parse().ok())
}

fn action_info(a: Action) -> ActionInfo {
    ActionInfo {
        code: a.as_str().into(),
        label: vocab::action_label(a).into(),
        needs_note: needs_note(a),
    }
}

impl Replica {
    /// Reports a problem; the 小类 must be in the category table. Returns the case's id.
    pub async fn report_case(&self, c: NewCase) -> Result<DocId, AppError> {
        let grid = grid_code("grid", &c.grid)?;
        let sub = c.subcategory.trim();
        if self.reference.category(sub).is_none() {
            let known: Vec<String> = self
                .reference
                .categories
                .iter()
                .map(|k| format!("{} {}/{}", k.code, k.major_name, k.name))
                .collect();
            return Err(AppError::invalid(
                "subcategory",
                format!(
                    "{sub:?} is not in the category table; known: {}",
                    known.join(", ")
                ),
            ));
        }
        let source = match &c.source {
            Some(s) => vocab::case_source(s)?,
            None => crate::records::CaseSource::Inspection,
        };
        let location = match c.gps {
            Some((lat, lon)) => {
                crate::validate::check_gps(lat, lon)
                    .map_err(|e| AppError::invalid("gps", e.to_string()))?;
                Some(Gps::new(lat, lon))
            }
            None => None,
        };
        let who = self.worker().await?;
        let now = now_ms();
        let mut case = Case {
            title: c.title,
            source,
            category: sub.chars().take(2).collect(),
            subcategory: sub.to_owned(),
            location,
            address: c.address,
            description: c.description,
            urgency: if c.urgent {
                Urgency::Urgent
            } else {
                Urgency::Normal
            },
            reported_by: who,
            reported_at: now,
            parties: Default::default(),
            photos: Default::default(),
            events: Default::default(),
            redactions: Default::default(),
        };
        if let Some(name) = c.party_name.filter(|n| !n.trim().is_empty()) {
            case.parties.insert(
                RecordId::new(),
                Party {
                    name,
                    phone: c.party_phone.unwrap_or_default(),
                    household: c.party_household,
                    resident: None,
                    role: "reporter".into(),
                },
            );
        }
        let actor = self.store.actor().await?;
        act(&mut case, Action::Report, &actor, now, "", BTreeMap::new())?;
        let id = self.store.create(grid, &case).await?;
        self.changed(&[id]);
        Ok(id)
    }

    /// Edits a case's title or description; returns whether anything changed.
    pub async fn edit_case(
        &self,
        id: DocId,
        title: Option<String>,
        description: Option<String>,
    ) -> Result<bool, AppError> {
        let changed = self
            .store
            .update::<Case>(id, |c| {
                if let Some(t) = title {
                    c.title = t;
                }
                if let Some(d) = description {
                    c.description = d;
                }
            })
            .await?;
        if changed {
            self.changed(&[id]);
        }
        Ok(changed)
    }

    /// Cases on this phone, newest first; an unknown status is refused with the list.
    pub async fn cases(&self, filter: CaseFilter) -> Result<Vec<CaseRow>, AppError> {
        let status = filter.status.as_deref().map(vocab::status).transpose()?;
        Ok(self.store.cases(status.map(|s| s.as_str())).await?)
    }

    /// The actions this device may take on a case now.
    pub async fn allowed_actions(&self, id: DocId) -> Result<Vec<ActionInfo>, AppError> {
        let case: Case = self.store.read(id).await?;
        let actor = self.store.actor().await?;
        let state = case.state();
        Ok(self
            .offered(&case, &state, &actor, now_ms())
            .into_iter()
            .map(action_info)
            .collect())
    }

    /// What the app offers: the actions the fold would apply, less a dispatch this phone
    /// cannot plan (its category table lacks the case's 小类).
    fn offered(
        &self,
        case: &Case,
        state: &crate::workflow::CaseState,
        actor: &crate::workflow::Actor,
        now: i64,
    ) -> Vec<Action> {
        available_actions(case, state, actor.role, actor.dept.as_deref(), now)
            .into_iter()
            .filter(|a| {
                *a != Action::Dispatch || self.reference.category(&case.subcategory).is_some()
            })
            .collect()
    }

    /// Takes a workflow action; returns the event's id. A refused action writes nothing and
    /// says why.
    pub async fn act(&self, id: DocId, req: ActionRequest) -> Result<RecordId, AppError> {
        let action = vocab::action(&req.action)?;
        let satisfaction: Option<Satisfaction> = req
            .satisfaction
            .as_deref()
            .map(vocab::satisfaction)
            .transpose()?;
        if action == Action::FollowUp && satisfaction.is_none() {
            return Err(AppError::invalid(
                "satisfaction",
                "a follow-up records the resident's satisfaction: 满意, 基本满意 or 不满意",
            ));
        }
        if action == Action::Merge {
            let Some(into) = req.into else {
                return Err(AppError::invalid(
                    "into",
                    "merge needs the case this one duplicates",
                ));
            };
            if into == id {
                return Err(AppError::invalid(
                    "into",
                    "a case cannot be merged into itself",
                ));
            }
            let target: Case =
                self.store
                    .read(into)
                    .await
                    .map_err(|e| match AppError::from(e) {
                        AppError::NotFound(_) => {
                            AppError::invalid("into", format!("no case {into} on this phone"))
                        }
                        other => other,
                    })?;
            if target.state().status == crate::workflow::Status::Merged {
                return Err(AppError::invalid(
                    "into",
                    format!("case {into} is itself merged into another; merge into that one"),
                ));
            }
        }
        if needs_note(action) && req.note.trim().is_empty() {
            return Err(AppError::invalid(
                "note",
                format!("{} needs a reason or result", vocab::action_label(action)),
            ));
        }
        for d in req.lead.iter().chain(req.co.iter().flatten()) {
            if !self.reference.has_department(d) {
                return Err(self.unknown_department(
                    if req.lead.as_deref() == Some(d) {
                        "lead"
                    } else {
                        "co"
                    },
                    d,
                ));
            }
        }
        let extending = matches!(action, Action::RequestExtension | Action::ApproveExtension);
        if extending && req.extra_days.is_some_and(|d| d == 0 || d > 60) {
            return Err(AppError::invalid("extra_days", "1 to 60 working days"));
        }
        let actor = self.store.actor().await?;
        let now = now_ms();
        let reference = &self.reference;
        let eid = self
            .store
            .case_action(id, &actor, action, &req.note, now, |case, state| {
                let mut data = BTreeMap::new();
                match action {
                    Action::Dispatch => {
                        return plan_dispatch(
                            case,
                            reference,
                            now,
                            req.lead.as_deref(),
                            req.co.as_deref(),
                        );
                    }
                    Action::ApproveExtension => {
                        // What the department asked for, unless the approver grants otherwise.
                        let days = req
                            .extra_days
                            .or_else(|| requested_days(case))
                            .unwrap_or(DEFAULT_EXTRA_DAYS);
                        return Ok(plan_extension(
                            state,
                            reference,
                            TimeLimit::WorkingDays(days),
                        ));
                    }
                    Action::RequestExtension => {
                        let days = req.extra_days.unwrap_or(DEFAULT_EXTRA_DAYS);
                        data.insert("extra_days".into(), days.to_string());
                    }
                    Action::Resume => return Ok(plan_resume(state, reference, now)),
                    Action::FollowUp => {
                        if let Some(s) = satisfaction {
                            data.insert(
                                "satisfaction".into(),
                                serde_json::to_value(s)
                                    .ok()
                                    .and_then(|v| v.as_str().map(str::to_owned))
                                    .unwrap_or_default(),
                            );
                        }
                    }
                    Action::Merge => {
                        if let Some(i) = req.into {
                            data.insert("into".into(), i.to_string());
                        }
                    }
                    _ => {}
                }
                Ok(data)
            })
            .await?;
        self.changed(&[id]);
        Ok(eid)
    }

    /// A case as a readable record: labels, departments by name, the timeline, deadlines and
    /// flags, satisfaction, photos, conflicts, and what this device may do now.
    pub async fn case(&self, id: DocId) -> Result<CaseView, AppError> {
        let doc = self.store.load(id).await?;
        let case: Case = doc.read().map_err(crate::store::StoreError::from)?;
        let state = case.state();
        let now = now_ms();
        let flags = state.flags(now);
        let actor = self.store.actor().await?;
        let event = |eid: &RecordId| {
            case.events.get(eid).map(|e| EventView {
                id: *eid,
                at: e.at,
                by: e.by.clone(),
                role: e.role.clone(),
                dept: e.dept.clone(),
                kind: e.kind.clone(),
                label: vocab::event_label(&e.kind),
                note: e.note.clone(),
                applied: state.applied.contains(eid),
            })
        };
        let mut timeline: Vec<EventView> = case.events.keys().filter_map(event).collect();
        timeline.sort_by_key(|e| (e.at, e.id));
        let category_name = self
            .reference
            .category(&case.subcategory)
            .map(|c| format!("{}/{}", c.major_name, c.name))
            .unwrap_or_default();
        let satisfaction = state.satisfaction.map(|s| {
            let code = serde_json::to_value(s)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default();
            vocab::satisfaction_label(&code)
        });
        Ok(CaseView {
            id,
            grid: doc.header().scope.to_string(),
            title: case.title.clone(),
            description: case.description.clone(),
            address: case.address.clone(),
            source: vocab::case_source_label(case.source),
            urgent: case.urgency == Urgency::Urgent,
            category: case.category.clone(),
            subcategory: case.subcategory.clone(),
            category_name,
            reported_by: case.reported_by.clone(),
            reported_at: case.reported_at,
            status: state.status.as_str().into(),
            status_label: vocab::status_label(state.status).into(),
            lead: state.lead.as_deref().map(|d| self.dept_ref(d)),
            co: state.co.iter().map(|d| self.dept_ref(d)).collect(),
            deadline: state.deadline,
            overdue: flags.overdue,
            amber: flags.amber,
            urged: flags.urged,
            extensions: state.extensions,
            extension_pending: state.extension_pending,
            reworks: state.reworks,
            satisfaction,
            supervisions: state
                .supervisions
                .iter()
                .filter_map(|s| event(&s.event))
                .collect(),
            timeline,
            photos: self.photos(id).await?,
            parties: case
                .parties
                .values()
                .map(|p| (p.name.clone(), p.phone.clone()))
                .collect(),
            event_conflicts: state
                .conflicts
                .iter()
                .map(|x| {
                    format!(
                        "{} by {} not applied while {}: {}",
                        vocab::event_label(&x.kind),
                        x.by,
                        vocab::status_label(x.landed_in),
                        x.reason
                    )
                })
                .collect(),
            time_flags: state
                .time_flags
                .iter()
                .map(|f| {
                    format!(
                        "{} at {}: {}",
                        f.path,
                        crate::clock::format_china(f.at),
                        f.reason
                    )
                })
                .collect(),
            conflicts: conflict_views(&doc.conflicts()),
            allowed_actions: self
                .offered(&case, &state, &actor, now)
                .into_iter()
                .map(action_info)
                .collect(),
            state,
            case,
        })
    }
}
