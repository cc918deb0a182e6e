//! The vocabularies a worker types and reads: each term has its stable code (what records
//! store) and its Chinese label (what the app shows), and is accepted as either, or as one of
//! the common synonyms workers type (子, 女, 父亲 ... for relations). Anything else is refused
//! with the list of accepted labels. Shared by the app API and the server's register import.

use serde::Serialize;

use crate::records::{CaseSource, PhotoStage, Relation, Residence};
use crate::workflow::{ACTIONS, Action, STATUSES, Satisfaction, Status};

/// A value outside its vocabulary: the field and what was wrong (with the accepted labels).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct VocabError {
    /// The field the value was given for (`relation`, `gender`, ...).
    pub field: String,
    /// What was wrong, with the accepted values.
    pub problem: String,
}

impl VocabError {
    fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// One term of a vocabulary: the stored code and the label shown to people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Term {
    /// The stable code records store (`child`).
    pub code: String,
    /// The Chinese label (`子女`).
    pub label: String,
}

/// Every vocabulary the app shows in pickers, with labels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vocabularies {
    /// 与户主关系.
    pub relations: Vec<Term>,
    /// 居住类型.
    pub residences: Vec<Term>,
    /// 性别.
    pub genders: Vec<Term>,
    /// 户标签.
    pub household_flags: Vec<Term>,
    /// 重点人群.
    pub key_categories: Vec<Term>,
    /// Case sources.
    pub case_sources: Vec<Term>,
    /// Case statuses.
    pub statuses: Vec<Term>,
    /// Workflow actions.
    pub actions: Vec<Term>,
    /// 回访 satisfaction.
    pub satisfactions: Vec<Term>,
    /// Photo stages.
    pub photo_stages: Vec<Term>,
}

/// A vocabulary: `(code, label, synonyms)`.
type Table = &'static [(&'static str, &'static str, &'static [&'static str])];

const RELATIONS: Table = &[
    ("head", "户主", &["本人"]),
    ("spouse", "配偶", &["妻", "妻子", "夫", "丈夫", "老伴"]),
    (
        "child",
        "子女",
        &[
            "子",
            "女",
            "儿子",
            "女儿",
            "长子",
            "次子",
            "三子",
            "长女",
            "次女",
            "三女",
            "独生子",
            "独生女",
            "养子",
            "养女",
            "继子",
            "继女",
        ],
    ),
    (
        "parent",
        "父母",
        &[
            "父亲", "母亲", "父", "母", "爸爸", "妈妈", "继父", "继母", "公公", "婆婆", "岳父",
            "岳母",
        ],
    ),
    (
        "grandchild",
        "孙子女",
        &[
            "孙子",
            "孙女",
            "外孙",
            "外孙子",
            "外孙女",
            "孙子女",
            "外孙子女",
        ],
    ),
    (
        "grandparent",
        "祖父母",
        &[
            "祖父",
            "祖母",
            "外祖父",
            "外祖母",
            "爷爷",
            "奶奶",
            "外公",
            "外婆",
            "姥爷",
            "姥姥",
        ],
    ),
    (
        "sibling",
        "兄弟姐妹",
        &["兄", "弟", "姐", "妹", "哥哥", "弟弟", "姐姐", "妹妹"],
    ),
    ("child_in_law", "儿媳/女婿", &["儿媳", "儿媳妇", "女婿"]),
    ("tenant", "租客", &["租户", "承租人"]),
    ("other", "其他", &["其他亲属", "保姆", "非亲属"]),
];

const RESIDENCES: Table = &[
    ("permanent", "常住", &["常住人口"]),
    ("floating", "流动", &["流动人口"]),
    ("separated", "人户分离", &[]),
];

const RESIDENT_STATUSES: Table = &[
    ("present", "在住", &[]),
    ("moved_out", "迁出", &[]),
    ("deceased", "死亡", &[]),
    ("entered_by_mistake", "误录", &[]),
];

const GENDERS: Table = &[("male", "男", &["男性"]), ("female", "女", &["女性"])];

const HOUSEHOLD_FLAGS: Table = &[
    ("empty_nest", "空巢", &["空巢老人"]),
    ("living_alone", "独居", &[]),
    ("rental", "出租屋", &["出租房"]),
    ("low_income", "低保", &["低保户"]),
    ("disabled", "残疾", &["残疾人家庭"]),
    ("veteran", "退役军人", &[]),
    ("left_behind", "留守", &[]),
    ("poverty_watch", "防返贫监测", &[]),
];

const KEY_CATEGORIES: Table = &[
    ("elderly_alone", "独居老人", &[]),
    ("disabled", "残疾人", &[]),
    ("minor_left_behind", "留守儿童", &[]),
    ("mental_health", "严重精神障碍", &[]),
    ("community_correction", "社区矫正", &[]),
    ("released", "刑满释放", &[]),
    ("drug_rehab", "戒毒康复", &[]),
    ("petitioner", "重点信访", &[]),
    ("low_income", "低保", &[]),
];

const CASE_SOURCES: Table = &[
    ("inspection", "巡查发现", &["巡查"]),
    ("visit", "走访发现", &["走访"]),
    ("resident", "群众反映", &["居民反映"]),
    ("hotline12345", "12345热线", &["12345"]),
    ("assigned", "上级交办", &["交办"]),
];

const SATISFACTIONS: Table = &[
    ("satisfied", "满意", &[]),
    ("basically_satisfied", "基本满意", &[]),
    ("dissatisfied", "不满意", &[]),
];

const PHOTO_STAGES: Table = &[
    ("before", "处置前", &["上报"]),
    ("during", "处置中", &[]),
    ("after", "处置后", &["办结"]),
    ("check", "核查", &[]),
    ("record", "记录", &[]),
];

fn terms(table: Table) -> Vec<Term> {
    table
        .iter()
        .map(|(code, label, _)| Term {
            code: (*code).into(),
            label: (*label).into(),
        })
        .collect()
}

/// The label of `code` in `table`, or the code itself when it is not there.
fn label_in(table: Table, code: &str) -> String {
    table
        .iter()
        .find(|(c, _, _)| *c == code)
        .map_or(code, |(_, l, _)| *l)
        .to_owned()
}

/// The code `input` names in `table` (code, label or synonym), or an error for `field`
/// listing the labels accepted.
fn code_in(table: Table, field: &str, input: &str) -> Result<&'static str, VocabError> {
    let s = input.trim();
    table
        .iter()
        .find(|(code, label, syn)| *code == s || *label == s || syn.contains(&s))
        .map(|(code, _, _)| *code)
        .ok_or_else(|| {
            let accepted: Vec<String> = table
                .iter()
                .map(|(code, label, _)| format!("{label} ({code})"))
                .collect();
            VocabError::invalid(
                field,
                format!("unknown value {s:?}; accepted: {}", accepted.join(", ")),
            )
        })
}

fn typed<T: serde::de::DeserializeOwned>(code: &str, field: &str) -> Result<T, VocabError> {
    serde_json::from_value(serde_json::Value::String(code.into()))
        .map_err(|e| VocabError::invalid(field, e.to_string()))
}

/// Every vocabulary, for the app's pickers.
pub fn vocabularies() -> Vocabularies {
    let status_terms = STATUSES
        .iter()
        .map(|s| Term {
            code: s.as_str().into(),
            label: status_label(*s).into(),
        })
        .collect();
    let action_terms = ACTIONS
        .iter()
        .map(|a| Term {
            code: a.as_str().into(),
            label: action_label(*a).into(),
        })
        .collect();
    Vocabularies {
        relations: terms(RELATIONS),
        residences: terms(RESIDENCES),
        genders: terms(GENDERS),
        household_flags: terms(HOUSEHOLD_FLAGS),
        key_categories: terms(KEY_CATEGORIES),
        case_sources: terms(CASE_SOURCES),
        statuses: status_terms,
        actions: action_terms,
        satisfactions: terms(SATISFACTIONS),
        photo_stages: terms(PHOTO_STAGES),
    }
}

/// A relation to the head of household, from its code, label or a common synonym.
pub fn relation(input: &str) -> Result<Relation, VocabError> {
    typed(code_in(RELATIONS, "relation", input)?, "relation")
}

/// The Chinese label of a relation.
pub fn relation_label(r: Relation) -> String {
    label_in(RELATIONS, serde_code(&r).as_str())
}

/// The Chinese label of a stored relation code (as projections hold it).
pub fn relation_code_label(code: &str) -> String {
    label_in(RELATIONS, code)
}

/// The Chinese label of a stored residence code (as projections hold it).
pub fn residence_code_label(code: &str) -> String {
    label_in(RESIDENCES, code)
}

/// The Chinese label of a stored member status code (as projections hold it).
pub fn resident_status_code_label(code: &str) -> String {
    label_in(RESIDENT_STATUSES, code)
}

/// A residence type.
pub fn residence(input: &str) -> Result<Residence, VocabError> {
    typed(code_in(RESIDENCES, "residence", input)?, "residence")
}

/// A gender (`male`/`female`, 男/女).
pub fn gender(input: &str) -> Result<String, VocabError> {
    Ok(code_in(GENDERS, "gender", input)?.to_owned())
}

/// The Chinese label of a stored gender code.
pub fn gender_label(code: &str) -> String {
    label_in(GENDERS, code)
}

/// A household flag.
pub fn household_flag(input: &str) -> Result<String, VocabError> {
    Ok(code_in(HOUSEHOLD_FLAGS, "flag", input)?.to_owned())
}

/// The Chinese label of a household flag.
pub fn household_flag_label(code: &str) -> String {
    label_in(HOUSEHOLD_FLAGS, code)
}

/// A key-person category.
pub fn key_category(input: &str) -> Result<String, VocabError> {
    Ok(code_in(KEY_CATEGORIES, "category", input)?.to_owned())
}

/// A case source.
pub fn case_source(input: &str) -> Result<CaseSource, VocabError> {
    typed(code_in(CASE_SOURCES, "source", input)?, "source")
}

/// The Chinese label of a case source.
pub fn case_source_label(s: CaseSource) -> String {
    label_in(CASE_SOURCES, serde_code(&s).as_str())
}

/// The Chinese label of a stored case source code (as projections hold it).
pub fn case_source_code_label(code: &str) -> String {
    label_in(CASE_SOURCES, code)
}

/// The Chinese labels of a comma-separated list of household flags (as projections hold
/// them), joined with 、.
pub fn flags_label(codes: &str) -> String {
    list_label(HOUSEHOLD_FLAGS, codes)
}

/// The Chinese labels of a comma-separated list of key-person categories, joined with 、.
pub fn categories_label(codes: &str) -> String {
    list_label(KEY_CATEGORIES, codes)
}

fn list_label(table: Table, codes: &str) -> String {
    codes
        .split(',')
        .filter(|c| !c.is_empty())
        .map(|c| label_in(table, c))
        .collect::<Vec<_>>()
        .join("、")
}

/// A 回访 satisfaction.
pub fn satisfaction(input: &str) -> Result<Satisfaction, VocabError> {
    typed(
        code_in(SATISFACTIONS, "satisfaction", input)?,
        "satisfaction",
    )
}

/// The Chinese label of a stored satisfaction code.
pub fn satisfaction_label(code: &str) -> String {
    label_in(SATISFACTIONS, code)
}

/// A photo stage.
pub fn photo_stage(input: &str) -> Result<PhotoStage, VocabError> {
    typed(code_in(PHOTO_STAGES, "stage", input)?, "stage")
}

/// The Chinese label of a photo stage code.
pub fn photo_stage_label(code: &str) -> String {
    label_in(PHOTO_STAGES, code)
}

/// A case status, from its code or label.
pub fn status(input: &str) -> Result<Status, VocabError> {
    let s = input.trim();
    STATUSES
        .into_iter()
        .find(|st| st.as_str() == s || status_label(*st) == s)
        .ok_or_else(|| {
            let accepted: Vec<String> = STATUSES
                .iter()
                .map(|st| format!("{} ({})", status_label(*st), st.as_str()))
                .collect();
            VocabError::invalid(
                "status",
                format!("unknown status {s:?}; accepted: {}", accepted.join(", ")),
            )
        })
}

/// A workflow action, from its code or label.
pub fn action(input: &str) -> Result<Action, VocabError> {
    let s = input.trim();
    ACTIONS
        .into_iter()
        .find(|a| a.as_str() == s || action_label(*a) == s)
        .ok_or_else(|| {
            let accepted: Vec<String> = ACTIONS
                .iter()
                .map(|a| format!("{} ({})", action_label(*a), a.as_str()))
                .collect();
            VocabError::invalid(
                "action",
                format!("unknown action {s:?}; accepted: {}", accepted.join(", ")),
            )
        })
}

/// The Chinese label of a case status.
pub fn status_label(s: Status) -> &'static str {
    match s {
        Status::Draft => "草稿",
        Status::Reported => "已上报",
        Status::SelfHandling => "自办中",
        Status::Verifying => "核实中",
        Status::Registered => "已立案",
        Status::Rejected => "不予立案",
        Status::Merged => "已合并",
        Status::Dispatched => "已派遣",
        Status::Returned => "已回退",
        Status::InProgress => "处置中",
        Status::Suspended => "挂账",
        Status::Handled => "已办结",
        Status::Checking => "核查中",
        Status::Closed => "已结案",
        Status::FollowedUp => "已回访",
        Status::Archived => "已归档",
    }
}

/// The Chinese label of a workflow action.
pub fn action_label(a: Action) -> &'static str {
    match a {
        Action::Report => "上报",
        Action::SelfHandle => "自办",
        Action::CloseSelf => "自办结案",
        Action::Verify => "核实",
        Action::Register => "立案",
        Action::Reject => "不予立案",
        Action::Merge => "合并",
        Action::Dispatch => "派遣",
        Action::Return => "回退",
        Action::Sign => "签收",
        Action::RequestExtension => "申请延期",
        Action::ApproveExtension => "批准延期",
        Action::DenyExtension => "驳回延期",
        Action::Suspend => "挂账",
        Action::Resume => "恢复办理",
        Action::Handle => "办结",
        Action::StartCheck => "核查",
        Action::PassCheck => "核查通过",
        Action::FailCheck => "核查不通过",
        Action::FollowUp => "回访",
        Action::Archive => "归档",
        Action::Reopen => "重新办理",
        Action::Supervise => "督办",
    }
}

/// The label of an event kind as stored (an action's code), or the kind itself.
pub fn event_label(kind: &str) -> String {
    ACTIONS
        .into_iter()
        .find(|a| a.as_str() == kind)
        .map_or_else(|| kind.to_owned(), |a| action_label(a).to_owned())
}

fn serde_code<T: Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_labels_workers_type_are_accepted() {
        for (typed, want) in [
            ("子", Relation::Child),
            ("女", Relation::Child),
            ("女儿", Relation::Child),
            ("父亲", Relation::Parent),
            ("母亲", Relation::Parent),
            ("孙子", Relation::Grandchild),
            ("孙女", Relation::Grandchild),
            ("妻子", Relation::Spouse),
            ("户主", Relation::Head),
            ("child_in_law", Relation::ChildInLaw),
            ("儿媳", Relation::ChildInLaw),
        ] {
            assert_eq!(relation(typed).expect(typed), want, "{typed}");
        }
        assert_eq!(relation_label(Relation::Grandchild), "孙子女");
    }

    #[test]
    fn an_unknown_value_lists_the_chinese_labels() {
        let e = relation("表哥").expect_err("not a relation");
        let text = e.to_string();
        assert!(
            text.starts_with("relation: unknown value \"表哥\""),
            "{text}"
        );
        assert!(
            text.contains("子女 (child)") && text.contains("户主 (head)"),
            "{text}"
        );
        assert!(status("nonsense").is_err());
        assert_eq!(status("已派遣").expect("label"), Status::Dispatched);
        assert_eq!(action("签收").expect("label"), Action::Sign);
        assert!(gender("m").is_err());
        assert_eq!(gender("女").expect("label"), "female");
    }

    #[test]
    fn every_flag_and_category_the_records_accept_has_a_label() {
        let flags: Vec<&str> = HOUSEHOLD_FLAGS.iter().map(|t| t.0).collect();
        assert_eq!(flags, crate::records::HOUSEHOLD_FLAGS);
        let cats: Vec<&str> = KEY_CATEGORIES.iter().map(|t| t.0).collect();
        assert_eq!(cats, crate::records::KEY_CATEGORIES);
        use crate::records::ResidentStatus::*;
        for st in [Present, MovedOut, Deceased, EnteredByMistake] {
            assert_eq!(resident_status_code_label(&serde_code(&st)), st.label());
        }
    }
}
