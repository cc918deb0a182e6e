//! `grid`, `household`, `resident` and `visit`: the household archive (一户一档) from a
//! terminal.

use anyhow::Result;
use clap::{Args, Subcommand};
use gridsync_core::app::vocab::{
    relation_code_label, residence_code_label, resident_status_code_label,
};
use gridsync_core::app::{
    HouseholdEdit, NewHousehold, NewResident, NewVisit, Page, PersonFields, Replica, ResidentEdit,
};
use gridsync_core::records::RosterEntry;
use gridsync_proto::{DocId, RecordId};
use serde_json::json;

use super::{Out, fmt_time, lines};

#[derive(Subcommand)]
pub(crate) enum GridCmd {
    /// Add a grid unit (its level follows from the code's length).
    Add {
        /// Hierarchical code.
        #[arg(long)]
        code: String,
        /// Display name.
        #[arg(long)]
        name: String,
    },
    /// Put a worker on a grid's roster.
    Roster {
        /// The grid document.
        id: DocId,
        /// Worker id (e.g. staff number).
        #[arg(long)]
        worker_id: String,
        /// Worker's name.
        #[arg(long)]
        name: String,
        /// Phone.
        #[arg(long, default_value = "")]
        phone: String,
        /// grid_worker, part_time or leader.
        #[arg(long, default_value = "grid_worker")]
        duty: String,
    },
    /// List grid units.
    List {
        /// Only units under this code.
        #[arg(long)]
        within: Option<String>,
    },
}

#[derive(Subcommand)]
pub(crate) enum HouseholdCmd {
    /// Register a household.
    Add {
        /// Its grid.
        #[arg(long)]
        grid: String,
        /// Standard address.
        #[arg(long)]
        address: String,
        /// 常住, 流动 or 人户分离 (permanent, floating, separated).
        #[arg(long)]
        residence: Option<String>,
        /// Flags (空巢, 独居, 出租屋, 低保 ...); repeatable.
        #[arg(long = "flag")]
        flags: Vec<String>,
    },
    /// Change a household's address, residence status or flags.
    Edit {
        /// The household.
        id: DocId,
        /// New address.
        #[arg(long)]
        address: Option<String>,
        /// New residence status.
        #[arg(long)]
        residence: Option<String>,
        /// Flags to add.
        #[arg(long = "add-flag")]
        add_flags: Vec<String>,
        /// Flags to remove.
        #[arg(long = "remove-flag")]
        remove_flags: Vec<String>,
    },
    /// List households.
    List {
        /// Only this grid (or anything under this unit).
        #[arg(long)]
        grid: Option<String>,
    },
    /// Show a household: members, visits, past requests, conflicts.
    Show {
        /// The household.
        id: DocId,
    },
}

#[derive(Args)]
pub(crate) struct PersonArgs {
    /// 18-character ID number (gender and birth date are taken from it).
    #[arg(long)]
    id_number: Option<String>,
    /// 男 or 女 (male, female).
    #[arg(long)]
    gender: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    birth_date: Option<String>,
    /// Phone; repeatable.
    #[arg(long = "phone")]
    phones: Vec<String>,
    /// Work or study.
    #[arg(long)]
    work: Option<String>,
    /// Key-person category (独居老人, 残疾人 ...); repeatable.
    #[arg(long = "category")]
    categories: Vec<String>,
}

impl From<PersonArgs> for PersonFields {
    fn from(p: PersonArgs) -> Self {
        PersonFields {
            id_number: p.id_number,
            gender: p.gender,
            birth_date: p.birth_date,
            phones: p.phones,
            work: p.work,
            categories: p.categories,
        }
    }
}

#[derive(Subcommand)]
pub(crate) enum ResidentCmd {
    /// Add a member to a household.
    Add {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// Full name.
        #[arg(long)]
        name: String,
        /// 与户主关系: 户主, 配偶, 子, 女, 父亲, 母亲, 孙子, 孙女, 兄弟姐妹, 儿媳, 租客, 其他 ...
        #[arg(long)]
        relation: String,
        #[command(flatten)]
        person: PersonArgs,
    },
    /// Change a member's details, or record a move-out or death.
    Edit {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// The resident.
        #[arg(long)]
        resident: RecordId,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New relation.
        #[arg(long)]
        relation: Option<String>,
        #[command(flatten)]
        person: PersonArgs,
        /// Moved out on this date (YYYY-MM-DD).
        #[arg(long)]
        moved_out: Option<String>,
        /// Died on this date (YYYY-MM-DD).
        #[arg(long)]
        deceased: Option<String>,
        /// Was never a member: entered by mistake (误录). Kept in the archive with this
        /// status; members are never deleted.
        #[arg(long)]
        entered_by_mistake: bool,
    },
    /// Find residents by (part of) their name or by ID number, a page at a time.
    Search {
        /// Name, part of a name, or ID number.
        name: String,
        /// Hits to skip (the next page starts where the last ended).
        #[arg(long, default_value_t = 0)]
        offset: u32,
        /// Hits per page (1–500).
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Subcommand)]
pub(crate) enum VisitCmd {
    /// Record a visit to a household.
    Add {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// Why.
        #[arg(long)]
        purpose: String,
        /// What was found.
        #[arg(long, default_value = "")]
        findings: String,
        /// Latitude.
        #[arg(long, requires = "lon", allow_hyphen_values = true)]
        lat: Option<f64>,
        /// Longitude.
        #[arg(long, requires = "lat", allow_hyphen_values = true)]
        lon: Option<f64>,
        /// Who visited (default: this phone's worker).
        #[arg(long)]
        worker: Option<String>,
    },
    /// Change a visit this phone recorded.
    Edit {
        /// The household.
        #[arg(long)]
        household: DocId,
        /// The visit.
        #[arg(long)]
        visit: RecordId,
        /// New purpose.
        #[arg(long)]
        purpose: Option<String>,
        /// New findings.
        #[arg(long)]
        findings: Option<String>,
    },
}

pub(crate) async fn grid(app: &Replica, out: &Out, cmd: GridCmd) -> Result<()> {
    match cmd {
        GridCmd::Add { code, name } => {
            let id = app.add_grid(&code, &name).await?;
            out.print(&json!({"id": id, "code": code}), || {
                format!("grid {code}: {id}")
            })
        }
        GridCmd::Roster {
            id,
            worker_id,
            name,
            phone,
            duty,
        } => {
            app.add_to_roster(id, &worker_id, RosterEntry { name, phone, duty })
                .await?;
            out.print(&json!({"grid": id, "worker_id": worker_id}), || {
                format!("{worker_id} added to the roster")
            })
        }
        GridCmd::List { within } => {
            let rows = app.grids(within.as_deref()).await?;
            out.print(&rows, || {
                lines(&rows, "no grid units", |g| {
                    format!(
                        "{}  {:<10} {}  ({} on roster)",
                        g.code, g.level, g.name, g.roster_size
                    )
                })
            })
        }
    }
}

pub(crate) async fn household(app: &Replica, out: &Out, cmd: HouseholdCmd) -> Result<()> {
    match cmd {
        HouseholdCmd::Add {
            grid,
            address,
            residence,
            flags,
        } => {
            let id = app
                .add_household(NewHousehold {
                    grid,
                    address,
                    residence,
                    flags,
                })
                .await?;
            out.print(&json!({"id": id}), || format!("household {id}"))
        }
        HouseholdCmd::Edit {
            id,
            address,
            residence,
            add_flags,
            remove_flags,
        } => {
            let changed = app
                .edit_household(
                    id,
                    HouseholdEdit {
                        address,
                        residence,
                        add_flags,
                        remove_flags,
                    },
                )
                .await?;
            out.print(&json!({"id": id, "changed": changed}), || {
                if changed { "saved" } else { "nothing changed" }.into()
            })
        }
        HouseholdCmd::List { grid } => {
            let rows = app.households(grid.as_deref()).await?;
            out.print(&rows, || {
                lines(&rows, "no households", |h| {
                    format!(
                        "{}  {}  户主 {}  {} 人  走访 {} 次{}",
                        h.doc_id,
                        h.address,
                        h.head_name.as_deref().unwrap_or("-"),
                        h.member_count,
                        h.visit_count,
                        if h.conflict_count > 0 {
                            "  ⚠ 有冲突"
                        } else {
                            ""
                        }
                    )
                })
            })
        }
        HouseholdCmd::Show { id } => {
            let h = app.household(id).await?;
            out.print(&h, || {
                let mut s = format!("{}  ({}, grid {})\n", h.address, h.residence, h.grid);
                if !h.number.is_empty() {
                    s += &format!("户号: {}\n", h.number);
                }
                if !h.registered_address.is_empty() {
                    s += &format!("户籍地址: {}\n", h.registered_address);
                }
                if !h.flags.is_empty() {
                    s += &format!("户标签: {}\n", h.flags.join("、"));
                }
                s += "成员:\n";
                for m in &h.members {
                    s += &format!(
                        "  {} {} {} {} {} {} {}{}\n",
                        m.id,
                        m.relation_label,
                        m.name,
                        m.gender_label.as_deref().unwrap_or(""),
                        m.birth_date.as_deref().unwrap_or(""),
                        m.phones.join(","),
                        m.work,
                        if m.status == "在住" {
                            String::new()
                        } else {
                            format!(" [{} {}]", m.status, m.status_date.as_deref().unwrap_or(""))
                        }
                    );
                }
                s += "走访:\n";
                for v in &h.visits {
                    s += &format!(
                        "  {} {} {} {}\n",
                        fmt_time(v.at),
                        v.worker,
                        v.purpose,
                        v.findings
                    );
                }
                s += "诉求:\n";
                for c in &h.past_requests {
                    s += &format!("  {} {} [{}]\n", fmt_time(c.reported_at), c.title, c.status);
                }
                for c in &h.conflicts {
                    s += &format!(
                        "⚠ conflict at {}: {}\n",
                        c.path,
                        c.values
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" | ")
                    );
                }
                for p in &h.problems {
                    s += &format!(
                        "⚠ to fix: {}: {} (`resolve {id} --path {} --value JSON`)\n",
                        p.field, p.problem, p.field
                    );
                }
                s.trim_end().to_owned()
            })
        }
    }
}

pub(crate) async fn resident(app: &Replica, out: &Out, cmd: ResidentCmd) -> Result<()> {
    match cmd {
        ResidentCmd::Add {
            household,
            name,
            relation,
            person,
        } => {
            let rid = app
                .add_resident(
                    household,
                    NewResident {
                        name,
                        relation,
                        person: person.into(),
                    },
                )
                .await?;
            out.print(&json!({"resident": rid, "household": household}), || {
                format!("resident {rid}")
            })
        }
        ResidentCmd::Edit {
            household,
            resident,
            name,
            relation,
            person,
            moved_out,
            deceased,
            entered_by_mistake,
        } => {
            let changed = app
                .edit_resident(
                    household,
                    resident,
                    ResidentEdit {
                        name,
                        relation,
                        person: person.into(),
                        moved_out,
                        deceased,
                        entered_by_mistake,
                    },
                )
                .await?;
            out.print(&json!({"resident": resident, "changed": changed}), || {
                if changed { "saved" } else { "nothing changed" }.into()
            })
        }
        ResidentCmd::Search {
            name,
            offset,
            limit,
        } => {
            let page = app.search_residents(&name, Page { offset, limit }).await?;
            out.print(&page, || {
                if page.hits.is_empty() {
                    return format!("no resident matches {name:?}");
                }
                let mut s = String::new();
                for h in &page.hits {
                    s += &format!(
                        "{} ({}, {}) {} {}\n  household {} at {} ({}, {}{})\n",
                        h.resident.name,
                        relation_code_label(&h.resident.relation),
                        h.resident.birth_date.as_deref().unwrap_or("?"),
                        h.resident.phones,
                        h.resident.work,
                        h.household.doc_id,
                        h.household.address,
                        residence_code_label(&h.household.residence),
                        h.household.member_count,
                        if h.household.flags.is_empty() {
                            String::new()
                        } else {
                            format!(", {}", h.household.flags)
                        }
                    );
                    for m in &h.family {
                        s += &format!(
                            "  · {} {} {} {} [{}]\n",
                            relation_code_label(&m.relation),
                            m.name,
                            m.birth_date.as_deref().unwrap_or(""),
                            m.work,
                            resident_status_code_label(&m.status)
                        );
                    }
                    for c in &h.past_requests {
                        s += &format!(
                            "  ↳ {} {} [{}]\n",
                            fmt_time(c.reported_at),
                            c.title,
                            c.status
                        );
                    }
                }
                let end = u64::from(page.offset) + page.hits.len() as u64;
                s += &format!("{}–{} of {}", page.offset + 1, end, page.total);
                if page.more {
                    s += &format!("; next page: --offset {end}");
                }
                s
            })
        }
    }
}

pub(crate) async fn visit(app: &Replica, out: &Out, cmd: VisitCmd) -> Result<()> {
    match cmd {
        VisitCmd::Add {
            household,
            purpose,
            findings,
            lat,
            lon,
            worker,
        } => {
            let vid = app
                .add_visit(NewVisit {
                    household: Some(household),
                    purpose,
                    findings,
                    gps: lat.zip(lon),
                    worker,
                })
                .await?;
            out.print(&json!({"visit": vid, "household": household}), || {
                format!("visit {vid} recorded")
            })
        }
        VisitCmd::Edit {
            household,
            visit,
            purpose,
            findings,
        } => {
            let changed = app.edit_visit(household, visit, purpose, findings).await?;
            out.print(&json!({"visit": visit, "changed": changed}), || {
                if changed { "saved" } else { "nothing changed" }.into()
            })
        }
    }
}
