//! Who may write what, and which rule failures block a write: one table per document type and
//! path, and validation judged on the fields an edit touched.
//!
//! Pure. The phone's core runs [`judge`] on the typed record before and after an edit before
//! anything is written; the server runs it at the merge boundary on the stored record before
//! and after a push. Both see the same JSON shapes, so both ends refuse the same edits.
//!
//! **Invariant:** a rule failure that an edit did not cause never blocks it. An error in the
//! record after the edit blocks it only when the edit touched the failing field or the error is
//! new (a cross-field rule, such as an ID number's birth date against the birth date field, can
//! fail on a field next to the one touched). A bad value already in a record (written by an
//! older version or a hostile device) is listed as a problem to fix, and honest work elsewhere
//! in the record goes on.
//!
//! **Invariant:** an entry that belongs to one person (a visit, a case event, a photo
//! reference, a redaction) records its author device, stamped by the core at creation
//! ([`stamp_authors`]) and never changed; only its author edits it, and nobody deletes it. A
//! dispatcher or leader takes a wrong entry out of view by redacting it: a new entry that
//! keeps the original in the history.

use gridsync_proto::{DeviceId, DocType};
use serde_json::Value as Json;

use crate::validate::ValidationError;
use crate::workflow::Role;

/// Who may perform one kind of write on a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Who {
    /// Any device that may write the document at all (its scope and role allow the document).
    Anyone,
    /// The entry's recorded author (for a new entry: it must name the writing device).
    Author,
    /// The device that created the document (its header's creator).
    Creator,
    /// A dispatcher or leader (the town centre).
    Office,
    /// The document's creator or the town centre.
    CreatorOrOffice,
    /// Nobody: the value is fixed once written.
    Nobody,
}

impl Who {
    fn describe(self) -> &'static str {
        match self {
            Who::Anyone => "any device that may write this record",
            Who::Author => "the entry's author",
            Who::Creator => "the device that created the record",
            Who::Office => "a dispatcher or leader",
            Who::CreatorOrOffice => "the record's creator, a dispatcher or a leader",
            Who::Nobody => "nobody",
        }
    }
}

/// One row of the authorship table: a path pattern (dot-separated, `*` for any map key) and
/// who may create, edit and delete what it names.
#[derive(Debug, Clone, Copy)]
pub struct Rule {
    /// The path pattern inside the record.
    pub path: &'static str,
    /// Who may add the value (or entry) where there was none.
    pub create: Who,
    /// Who may change it (for an entry: any field inside it).
    pub edit: Who,
    /// Who may remove it.
    pub delete: Who,
    /// Whether the entry belongs to one person and carries an `author` field.
    pub authored: bool,
}

const fn field(path: &'static str, write: Who, delete: Who) -> Rule {
    Rule {
        path,
        create: write,
        edit: write,
        delete,
        authored: false,
    }
}

/// A map of entries: anyone may bring it into being (an empty map says nothing, and each entry
/// put in it is judged by its own rule); nobody replaces or removes it.
const fn container(path: &'static str) -> Rule {
    Rule {
        path,
        create: Who::Anyone,
        edit: Who::Nobody,
        delete: Who::Nobody,
        authored: false,
    }
}

const fn entry(path: &'static str, create: Who, edit: Who) -> Rule {
    Rule {
        path,
        create,
        edit,
        delete: Who::Nobody,
        authored: false,
    }
}

const fn authored(path: &'static str, edit: Who) -> Rule {
    Rule {
        path,
        create: Who::Anyone,
        edit,
        delete: Who::Nobody,
        authored: true,
    }
}

/// A redaction: added by the town centre only, fixed once written.
const fn redaction(path: &'static str) -> Rule {
    Rule {
        path,
        create: Who::Office,
        edit: Who::Nobody,
        delete: Who::Nobody,
        authored: true,
    }
}

use Who::{Anyone, Author, Creator, CreatorOrOffice, Nobody};

/// 一户一档: the household's own fields and its members are kept by everyone working the grid
/// (members leave by a recorded status, never by deletion); each visit is its author's.
const HOUSEHOLD: &[Rule] = &[
    field("address", Anyone, Nobody),
    field("number", Anyone, Anyone),
    field("registered_address", Anyone, Anyone),
    field("residence", Anyone, Nobody),
    field("flags", Anyone, Nobody),
    container("members"),
    entry("members.*", Anyone, Anyone),
    container("visits"),
    // A visit's photos are part of the visit: its author's.
    authored("visits.*", Author),
    container("redactions"),
    redaction("redactions.*"),
];

/// A case: its report belongs to whoever reported it (and the town centre, which classifies);
/// the event log, photos and redactions are append-only entries of their authors. Which events
/// a role may add is the workflow's transition table (`crate::workflow`), checked besides.
const CASE: &[Rule] = &[
    field("title", CreatorOrOffice, Nobody),
    Rule {
        path: "source",
        create: Creator,
        edit: Nobody,
        delete: Nobody,
        authored: false,
    },
    field("category", CreatorOrOffice, Nobody),
    field("subcategory", CreatorOrOffice, Nobody),
    field("location", CreatorOrOffice, CreatorOrOffice),
    field("address", CreatorOrOffice, Nobody),
    field("description", CreatorOrOffice, Nobody),
    field("urgency", CreatorOrOffice, Nobody),
    field("reported_by", CreatorOrOffice, Nobody),
    field("reported_at", CreatorOrOffice, Nobody),
    container("parties"),
    entry("parties.*", CreatorOrOffice, CreatorOrOffice),
    container("photos"),
    authored("photos.*", Nobody),
    container("events"),
    authored("events.*", Nobody),
    container("redactions"),
    redaction("redactions.*"),
];

/// A patrol is one worker's: everything in it is written by the device that started it.
const INSPECTION: &[Rule] = &[
    field("worker", Creator, Nobody),
    field("started_at", Creator, Nobody),
    field("ended_at", Creator, Creator),
    field("track", Creator, Nobody),
    container("checkpoints"),
    entry("checkpoints.*", Creator, Creator),
    container("findings"),
    entry("findings.*", Creator, Creator),
    container("photos"),
    Rule {
        path: "photos.*",
        create: Creator,
        edit: Nobody,
        delete: Nobody,
        authored: true,
    },
    container("redactions"),
    redaction("redactions.*"),
];

/// Grid records place intake cases and define the hierarchy: the town centre keeps them.
/// (The server also refuses any grid document from a device that is not the town centre's.)
const GRID: &[Rule] = &[
    field("code", CreatorOrOffice, Nobody),
    field("name", CreatorOrOffice, Nobody),
    field("roster", CreatorOrOffice, Nobody),
    field("boundary", CreatorOrOffice, CreatorOrOffice),
];

/// The authorship table of one document type.
pub fn table(doc_type: DocType) -> &'static [Rule] {
    match doc_type {
        DocType::Household => HOUSEHOLD,
        DocType::Case => CASE,
        DocType::Inspection => INSPECTION,
        DocType::Grid => GRID,
    }
}

/// The device writing, as the rules see it.
#[derive(Debug, Clone, Copy)]
pub struct Writer {
    /// The enrolled device the change's actor is bound to.
    pub device: DeviceId,
    /// The role it is enrolled with.
    pub role: Role,
    /// The device that created the document (its header's creator).
    pub creator: DeviceId,
}

impl Writer {
    fn is(&self, who: Who, entry_author: Option<&str>) -> bool {
        let office = matches!(self.role, Role::Dispatcher | Role::Leader);
        let creator = self.device == self.creator;
        match who {
            Who::Anyone => true,
            Who::Author => entry_author == Some(self.device.to_string().as_str()),
            Who::Creator => creator,
            Who::Office => office,
            Who::CreatorOrOffice => creator || office,
            Who::Nobody => false,
        }
    }
}

/// Why an edit was refused: a stable code, the field path and the rule, for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct Violation {
    /// Stable machine-readable code: `not_allowed`, `not_author`, `author_changed`,
    /// `unknown_field` or `invalid_record`.
    pub code: &'static str,
    /// The field path inside the record.
    pub path: String,
    /// The rule that was broken.
    pub message: String,
}

/// How one path differs between the record before and after an edit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Added,
    Removed,
    Changed,
}

/// One write to judge: where (record-relative path), how, and whether it lies inside an entry
/// added or removed whole (then it is judged with that entry).
#[derive(Debug)]
pub struct Touch {
    path: Vec<String>,
    kind: Kind,
    inside_whole: bool,
}

impl Touch {
    /// One Automerge operation writing (or deleting) at `path`, judged against the record
    /// before the push. The server makes these from a push's operations, so that a write the
    /// record's JSON does not show (a value that loses a conflict, an object replaced by an
    /// identical copy) is judged like any other. A delete of a map key (`map_key`) after
    /// which the key still has a value (`after`) removed only some of its concurrent values:
    /// that settles a conflict, and is judged as a change of the field, not as its removal.
    /// (A delete inside a list is judged as removing the list, as before.)
    pub fn of_op(
        path: Vec<String>,
        deletes: bool,
        map_key: bool,
        (before, after): (&Json, &Json),
    ) -> Self {
        let existed = at(before, &path).is_some();
        let inside_whole = (1..path.len()).any(|n| at(before, &path[..n]).is_none());
        let settles = map_key && at(after, &path).is_some();
        let kind = if deletes && !settles {
            Kind::Removed
        } else if existed {
            Kind::Changed
        } else {
            Kind::Added
        };
        Touch {
            path,
            kind,
            inside_whole,
        }
    }
}

/// Every path whose value differs. Maps are walked; lists and scalars are compared whole. An
/// added or removed map is reported together with everything inside it.
fn diff(before: &Json, after: &Json) -> Vec<Touch> {
    fn walk(b: &Json, a: &Json, path: &mut Vec<String>, out: &mut Vec<Touch>) {
        match (b, a) {
            (Json::Object(bm), Json::Object(am)) => {
                for (k, av) in am {
                    path.push(k.clone());
                    match bm.get(k) {
                        Some(bv) => walk(bv, av, path, out),
                        None => whole(av, Kind::Added, path, out, false),
                    }
                    path.pop();
                }
                for (k, bv) in bm {
                    if !am.contains_key(k) {
                        path.push(k.clone());
                        whole(bv, Kind::Removed, path, out, false);
                        path.pop();
                    }
                }
            }
            (b, a) if b != a => out.push(Touch {
                path: path.clone(),
                kind: Kind::Changed,
                inside_whole: false,
            }),
            _ => {}
        }
    }
    fn whole(v: &Json, kind: Kind, path: &mut Vec<String>, out: &mut Vec<Touch>, inside: bool) {
        out.push(Touch {
            path: path.clone(),
            kind,
            inside_whole: inside,
        });
        if let Json::Object(m) = v {
            for (k, cv) in m {
                path.push(k.clone());
                whole(cv, kind, path, out, true);
                path.pop();
            }
        }
    }
    let mut out = Vec::new();
    walk(before, after, &mut Vec::new(), &mut out);
    out
}

fn matches(pattern: &str, path: &[String]) -> bool {
    let mut n = 0;
    for (seg, p) in pattern.split('.').zip(path) {
        if seg != "*" && seg != p {
            return false;
        }
        n += 1;
    }
    n == path.len() && pattern.split('.').count() == n
}

fn at<'a>(json: &'a Json, path: &[String]) -> Option<&'a Json> {
    path.iter().try_fold(json, |v, seg| v.get(seg.as_str()))
}

fn author_of(entry: Option<&Json>) -> Option<&str> {
    entry.and_then(|e| e.get("author")).and_then(Json::as_str)
}

/// The most specific rule naming `path` or one of its ancestors, with the ancestor's length.
fn rule_for(rules: &'static [Rule], path: &[String]) -> Option<(&'static Rule, usize)> {
    (1..=path.len()).rev().find_map(|n| {
        rules
            .iter()
            .find(|r| matches(r.path, &path[..n]))
            .map(|r| (r, n))
    })
}

fn dotted(path: &[String]) -> String {
    path.join(".")
}

/// Checks every difference between `before` and `after` (record JSON of one document type)
/// against the authorship table, as written by `writer`.
pub fn check_authorship(
    doc_type: DocType,
    writer: &Writer,
    before: &Json,
    after: &Json,
) -> Result<(), Violation> {
    check_touches(doc_type, writer, diff(before, after), before, after)
}

/// Checks writes (`touches`) from `before` to `after` against the authorship table.
pub fn check_touches(
    doc_type: DocType,
    writer: &Writer,
    touches: impl IntoIterator<Item = Touch>,
    before: &Json,
    after: &Json,
) -> Result<(), Violation> {
    let rules = table(doc_type);
    for t in touches {
        let Some((rule, n)) = rule_for(rules, &t.path) else {
            if t.inside_whole {
                continue;
            }
            return Err(Violation {
                code: "unknown_field",
                path: dotted(&t.path),
                message: format!("a {doc_type} record has no such field"),
            });
        };
        let exact = n == t.path.len();
        if !exact && t.inside_whole {
            // Part of an entry added or removed whole: judged with that entry.
            continue;
        }
        let entry_path = &t.path[..n];
        let (op, who) = match (exact, t.kind) {
            (true, Kind::Added) => ("add", rule.create),
            (true, Kind::Removed) => ("remove", rule.delete),
            _ => ("change", rule.edit),
        };
        let old_author = author_of(at(before, entry_path));
        let new_author = author_of(at(after, entry_path));
        if rule.authored && op == "add" {
            // A new entry is the writer's own: it names the writer or (written by a build from
            // before authors were stamped) nobody.
            if new_author.is_some_and(|a| a != writer.device.to_string()) {
                return Err(Violation {
                    code: "not_author",
                    path: dotted(entry_path),
                    message: format!(
                        "a new entry must name its author's device ({}), not {}",
                        writer.device,
                        new_author.unwrap_or_default()
                    ),
                });
            }
        } else if rule.authored && op == "change" && old_author != new_author {
            return Err(Violation {
                code: "author_changed",
                path: format!("{}.author", dotted(entry_path)),
                message: "an entry's author is fixed when it is written".into(),
            });
        }
        let entry_author = if op == "add" { new_author } else { old_author };
        let allowed = match who {
            // A new authored entry is allowed to any writer (checked above to be its author).
            Who::Anyone => true,
            who => writer.is(who, entry_author),
        };
        if !allowed {
            let code = if who == Who::Author {
                "not_author"
            } else {
                "not_allowed"
            };
            return Err(Violation {
                code,
                path: dotted(&t.path),
                message: format!(
                    "{op} `{}` is for {} (this device is a {}{})",
                    rule.path,
                    who.describe(),
                    writer.role,
                    if who == Who::Author && entry_author.is_none() {
                        "; the entry has no recorded author, so it can only be redacted"
                    } else {
                        ""
                    }
                ),
            });
        }
    }
    Ok(())
}

/// Puts the writing device as `author` on every authored entry that `after` adds and that does
/// not name one yet (so the core, not the caller, says who wrote it).
pub fn stamp_authors(doc_type: DocType, device: DeviceId, before: &Json, after: &mut Json) {
    let rules = table(doc_type);
    for t in diff(before, after) {
        if t.kind != Kind::Added {
            continue;
        }
        let stamp = rules.iter().any(|r| r.authored && matches(r.path, &t.path));
        if !stamp {
            continue;
        }
        let pointer: String = t
            .path
            .iter()
            .map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1")))
            .collect();
        if let Some(Json::Object(m)) = after.pointer_mut(&pointer) {
            m.entry("author")
                .or_insert_with(|| Json::String(device.to_string()));
        }
    }
}

/// Whether the edit touched `field` (a dot path): the field itself, something inside it, or
/// a map or entry holding it.
fn touches(touched: &[Vec<String>], field: &str) -> bool {
    let field: Vec<&str> = field.split('.').collect();
    touched
        .iter()
        .any(|t| t.iter().zip(&field).all(|(a, b)| a == b))
}

/// The validation errors an edit is refused for: those on fields it touched, and those it
/// made new. Errors already in `before` on fields it left alone are not its business.
pub fn blocking_errors(
    before_json: &Json,
    after_json: &Json,
    before_errors: &[ValidationError],
    after_errors: Vec<ValidationError>,
) -> Vec<ValidationError> {
    let touched: Vec<Vec<String>> = diff(before_json, after_json)
        .into_iter()
        .filter(|t| !t.inside_whole)
        .map(|t| t.path)
        .collect();
    after_errors
        .into_iter()
        .filter(|e| !before_errors.contains(e) || touches(&touched, &e.field))
        .collect()
}

/// Paths the edit wrote (from `raw_before` to `raw_after`) that the schema does not know: they
/// are in the raw record but not in its typed reading `typed_after`.
pub fn unknown_fields(raw_before: &Json, raw_after: &Json, typed_after: &Json) -> Option<String> {
    diff(raw_before, raw_after)
        .into_iter()
        .filter(|t| t.kind != Kind::Removed)
        .find(|t| at(raw_after, &t.path).is_some() && at(typed_after, &t.path).is_none())
        .map(|t| dotted(&t.path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dev(n: u128) -> DeviceId {
        DeviceId(uuid::Uuid::from_u128(n))
    }

    fn writer(n: u128, role: Role) -> Writer {
        Writer {
            device: dev(n),
            role,
            creator: dev(1),
        }
    }

    fn household(visits: Json) -> Json {
        json!({"address": "1 号", "residence": "permanent", "flags": {}, "members": {}, "visits": visits})
    }

    #[test]
    fn only_a_visits_author_edits_it_and_nobody_deletes_it() {
        let mine = dev(2).to_string();
        let before = household(
            json!({"v1": {"worker": "张三", "at": 1, "purpose": "例行", "author": mine}}),
        );
        let mut edited = before.clone();
        edited["visits"]["v1"]["purpose"] = json!("回访");
        let w = writer(2, Role::Worker);
        assert_eq!(
            check_authorship(DocType::Household, &w, &before, &edited),
            Ok(())
        );
        let other = writer(3, Role::Worker);
        let err = check_authorship(DocType::Household, &other, &before, &edited)
            .expect_err("not the author");
        assert_eq!(
            (err.code, err.path.as_str()),
            ("not_author", "visits.v1.purpose")
        );
        let deleted = household(json!({}));
        let err =
            check_authorship(DocType::Household, &w, &before, &deleted).expect_err("no deletes");
        assert_eq!((err.code, err.path.as_str()), ("not_allowed", "visits.v1"));
        let mut stolen = before.clone();
        stolen["visits"]["v1"]["author"] = json!(dev(3).to_string());
        let err =
            check_authorship(DocType::Household, &w, &before, &stolen).expect_err("author fixed");
        assert_eq!(err.code, "author_changed");
    }

    #[test]
    fn a_new_entry_must_name_its_writer_and_is_stamped_by_the_core() {
        let before = household(json!({}));
        let mut after = household(json!({"v1": {"worker": "张三", "at": 1, "purpose": "例行"}}));
        stamp_authors(DocType::Household, dev(2), &before, &mut after);
        assert_eq!(after["visits"]["v1"]["author"], json!(dev(2).to_string()));
        assert_eq!(
            check_authorship(
                DocType::Household,
                &writer(2, Role::Worker),
                &before,
                &after
            ),
            Ok(())
        );
        let err = check_authorship(
            DocType::Household,
            &writer(3, Role::Worker),
            &before,
            &after,
        )
        .expect_err("written under another device");
        assert_eq!(err.code, "not_author");
    }

    #[test]
    fn members_are_never_deleted_and_unknown_fields_are_named() {
        let before = json!({"address": "1", "members": {"m1": {"name": "李四"}}});
        let after = json!({"address": "1", "members": {}});
        let err = check_authorship(
            DocType::Household,
            &writer(2, Role::Worker),
            &before,
            &after,
        )
        .expect_err("delete");
        assert_eq!(err.path, "members.m1");
        let after = json!({"address": "1", "members": {"m1": {"name": "李四"}}, "secret": 1});
        let err = check_authorship(
            DocType::Household,
            &writer(2, Role::Worker),
            &before,
            &after,
        )
        .expect_err("unknown");
        assert_eq!((err.code, err.path.as_str()), ("unknown_field", "secret"));
    }

    #[test]
    fn a_case_report_is_its_reporters_and_the_centres() {
        let before = json!({"title": "路灯坏了", "category": "01", "events": {}});
        let after = json!({"title": "别的", "category": "01", "events": {}});
        let dept = Writer {
            device: dev(5),
            role: Role::Department,
            creator: dev(1),
        };
        assert_eq!(
            check_authorship(DocType::Case, &dept, &before, &after).map_err(|e| e.code),
            Err("not_allowed")
        );
        let centre = Writer {
            role: Role::Dispatcher,
            ..dept
        };
        assert_eq!(
            check_authorship(DocType::Case, &centre, &before, &after),
            Ok(())
        );
        let reporter = Writer {
            device: dev(1),
            role: Role::Worker,
            creator: dev(1),
        };
        assert_eq!(
            check_authorship(DocType::Case, &reporter, &before, &after),
            Ok(())
        );
    }

    #[test]
    fn only_errors_the_edit_caused_block_it() {
        use crate::validate::Problem;
        let err = |f: &str| ValidationError {
            field: f.into(),
            problem: Problem::PhoneFormat,
        };
        let before = json!({"members": {"m1": {"phones": ["abc"], "name": "x"}}, "visits": {}});
        let after =
            json!({"members": {"m1": {"phones": ["abc"], "name": "x"}}, "visits": {"v": {}}});
        let old = [err("members.m1.phones.0")];
        assert!(blocking_errors(&before, &after, &old, old.to_vec()).is_empty());
        let touched = json!({"members": {"m1": {"phones": ["abd"], "name": "x"}}, "visits": {}});
        assert_eq!(
            blocking_errors(&before, &touched, &old, old.to_vec()).len(),
            1
        );
        let new = vec![err("members.m1.id_number")];
        assert_eq!(
            blocking_errors(&before, &after, &[], new).len(),
            1,
            "a new error blocks"
        );
    }
}
