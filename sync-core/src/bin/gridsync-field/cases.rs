//! `case`: report, edit, act on, list and show cases (问题诉求).

use anyhow::Result;
use clap::Subcommand;
use gridsync_core::app::{ActionRequest, CaseFilter, NewCase, Replica};
use gridsync_proto::DocId;
use serde_json::json;

use super::{Out, fmt_time, lines};

#[derive(Subcommand)]
pub(crate) enum CaseCmd {
    /// Report a problem.
    Report {
        /// The grid it is in.
        #[arg(long)]
        grid: String,
        /// Short title.
        #[arg(long)]
        title: String,
        /// 巡查发现, 走访发现, 群众反映, 12345 or 上级交办 (inspection, visit, resident,
        /// hotline12345, assigned).
        #[arg(long)]
        source: Option<String>,
        /// 小类 code from the category table (`gridsync-field categories`).
        #[arg(long)]
        subcategory: String,
        /// Address.
        #[arg(long)]
        address: String,
        /// What is wrong.
        #[arg(long)]
        description: String,
        /// Mark as urgent.
        #[arg(long)]
        urgent: bool,
        /// Latitude.
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
        /// Name of the resident reporting or involved.
        #[arg(long)]
        party: Option<String>,
        /// That person's phone.
        #[arg(long, requires = "party")]
        party_phone: Option<String>,
        /// That person's household (links the case to the archive).
        #[arg(long, requires = "party")]
        party_household: Option<DocId>,
    },
    /// Edit a case's title or description.
    Edit {
        /// The case.
        id: DocId,
        /// New title.
        #[arg(long)]
        title: Option<String>,
        /// New description (merged as text with concurrent edits).
        #[arg(long)]
        description: Option<String>,
    },
    /// Take a workflow action (code or label: `sign` or 签收); `case actions ID` lists the
    /// ones allowed now.
    Act {
        /// The case.
        id: DocId,
        /// The action.
        action: String,
        /// Reason, result or instruction.
        #[arg(long, default_value = "")]
        note: String,
        /// dispatch: the lead department (default: the category's).
        #[arg(long)]
        lead: Option<String>,
        /// dispatch: co-departments, comma-separated (default: the category's).
        #[arg(long)]
        co: Option<String>,
        /// follow_up: 满意, 基本满意 or 不满意.
        #[arg(long)]
        satisfaction: Option<String>,
        /// merge: the case this one duplicates.
        #[arg(long)]
        into: Option<DocId>,
        /// request_extension / approve_extension: working days asked for or granted.
        #[arg(long)]
        extra_days: Option<u32>,
    },
    /// The actions this device may take on a case now.
    Actions {
        /// The case.
        id: DocId,
    },
    /// List cases.
    List {
        /// Only this status (code or label, e.g. dispatched or 已派遣).
        #[arg(long)]
        status: Option<String>,
    },
    /// Show one case: its details, timeline, departments, deadline, follow-up and photos.
    Show {
        /// The case.
        id: DocId,
    },
}

pub(crate) async fn run(app: &Replica, out: &Out, cmd: CaseCmd) -> Result<()> {
    match cmd {
        CaseCmd::Report {
            grid,
            title,
            source,
            subcategory,
            address,
            description,
            urgent,
            lat,
            lon,
            party,
            party_phone,
            party_household,
        } => {
            let id = app
                .report_case(NewCase {
                    grid,
                    title,
                    source,
                    subcategory,
                    address,
                    description,
                    urgent,
                    gps: lat.zip(lon),
                    party_name: party,
                    party_phone,
                    party_household,
                })
                .await?;
            out.print(&json!({"id": id}), || format!("case {id} reported"))
        }
        CaseCmd::Edit {
            id,
            title,
            description,
        } => {
            let changed = app.edit_case(id, title, description).await?;
            out.print(&json!({"id": id, "changed": changed}), || {
                if changed { "saved" } else { "nothing changed" }.into()
            })
        }
        CaseCmd::Act {
            id,
            action,
            note,
            lead,
            co,
            satisfaction,
            into,
            extra_days,
        } => {
            let co = co.map(|c| {
                c.split([',', '，'])
                    .map(|d| d.trim().to_owned())
                    .filter(|d| !d.is_empty())
                    .collect()
            });
            let eid = app
                .act(
                    id,
                    ActionRequest {
                        action: action.clone(),
                        note,
                        lead,
                        co,
                        satisfaction,
                        into,
                        extra_days,
                    },
                )
                .await?;
            let action = gridsync_core::app::vocab::action(&action)?;
            out.print(&json!({"event": eid, "action": action}), || {
                format!("{} recorded ({eid})", action.as_str())
            })
        }
        CaseCmd::Actions { id } => {
            let actions = app.allowed_actions(id).await?;
            out.print(&actions, || {
                lines(
                    &actions,
                    "nothing this device may do on this case now",
                    |a| {
                        format!(
                            "{} ({}){}",
                            a.label,
                            a.code,
                            if a.needs_note { "  needs --note" } else { "" }
                        )
                    },
                )
            })
        }
        CaseCmd::List { status } => {
            let rows = app.cases(CaseFilter { status }).await?;
            out.print(&rows, || {
                lines(&rows, "no cases", |c| {
                    format!(
                        "{}  {}  [{}] {}  {}{}",
                        c.doc_id,
                        fmt_time(c.reported_at),
                        c.status,
                        c.title,
                        c.address,
                        if c.conflict_count > 0 {
                            "  ⚠ 有冲突"
                        } else {
                            ""
                        }
                    )
                })
            })
        }
        CaseCmd::Show { id } => {
            let c = app.case(id).await?;
            out.print(&c, || show(&c))
        }
    }
}

/// A case as people read it: labels, not internal names.
fn show(c: &gridsync_core::app::CaseView) -> String {
    let dept = |d: &gridsync_core::app::DeptRef| {
        if d.name.is_empty() {
            d.code.clone()
        } else {
            format!("{} {}", d.code, d.name)
        }
    };
    let mut s = format!(
        "{}  【{}】{}\n",
        c.title,
        c.status_label,
        if c.urgent { "  紧急" } else { "" }
    );
    s += &format!(
        "类别: {} {}  来源: {}  网格: {}\n",
        c.subcategory, c.category_name, c.source, c.grid
    );
    s += &format!("地址: {}\n", c.address);
    s += &format!("描述: {}\n", c.description);
    s += &format!("上报: {} {}\n", c.reported_by, fmt_time(c.reported_at));
    for (name, phone) in &c.parties {
        s += &format!("当事人: {name} {phone}\n");
    }
    if let Some(lead) = &c.lead {
        s += &format!("主办: {}", dept(lead));
        if !c.co.is_empty() {
            s += &format!(
                "  协办: {}",
                c.co.iter().map(dept).collect::<Vec<_>>().join("、")
            );
        }
        s += "\n";
    }
    if let Some(d) = c.deadline {
        s += &format!(
            "时限: {}{}{}{}{}\n",
            fmt_time(d),
            if c.overdue {
                "  🔴 已超期"
            } else if c.amber {
                "  🟠 临期"
            } else {
                ""
            },
            if c.urged { "  催办" } else { "" },
            if c.extensions > 0 {
                format!("  (延期 {} 次)", c.extensions)
            } else {
                String::new()
            },
            if c.extension_pending {
                "  延期申请待批"
            } else {
                ""
            }
        );
    }
    if let Some(sat) = &c.satisfaction {
        s += &format!("回访满意度: {sat}\n");
    }
    if c.reworks > 0 {
        s += &format!("返工: {} 次\n", c.reworks);
    }
    s += "办理过程:\n";
    for e in &c.timeline {
        s += &format!(
            "  {} {}{} {}{}{}\n",
            fmt_time(e.at),
            e.by,
            e.dept
                .as_deref()
                .map(|d| format!("({d})"))
                .unwrap_or_default(),
            e.label,
            if e.note.is_empty() {
                String::new()
            } else {
                format!(": {}", e.note)
            },
            if e.applied { "" } else { "  ⚠ 未生效" }
        );
    }
    for sup in &c.supervisions {
        s += &format!("督办 {} {}: {}\n", fmt_time(sup.at), sup.by, sup.note);
    }
    if !c.photos.is_empty() {
        s += "照片:\n";
        for p in &c.photos {
            s += &format!(
                "  {} {} {}\n",
                p.stage_label,
                fmt_time(p.taken_at),
                if p.uploaded {
                    "已上传"
                } else if p.on_this_phone {
                    "待上传"
                } else {
                    "在服务器"
                }
            );
        }
    }
    for x in &c.event_conflicts {
        s += &format!("⚠ {x}\n");
    }
    for f in &c.time_flags {
        s += &format!("⚠ time {f}\n");
    }
    for x in &c.conflicts {
        s += &format!(
            "⚠ conflict at {}: {}\n",
            x.path,
            x.values
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" | ")
        );
    }
    if !c.allowed_actions.is_empty() {
        s += &format!(
            "可办理: {}",
            c.allowed_actions
                .iter()
                .map(|a| format!("{} ({})", a.label, a.code))
                .collect::<Vec<_>>()
                .join("、")
        );
    }
    s.trim_end().to_owned()
}
