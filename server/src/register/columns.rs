//! Which column holds what: the register's fields, the headers towns usually give them, an
//! optional mapping file that names other headers, and finding the header row (below a
//! title row, under merged group headings, with vertically merged cells).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::read::{Row, Sheet};

/// One field of the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    /// 户号.
    Number,
    /// 网格 (a grid code or a registered grid's name).
    Grid,
    /// 户主姓名.
    HeadName,
    /// 姓名.
    Name,
    /// 身份证号.
    IdNumber,
    /// 与户主关系.
    Relation,
    /// 性别.
    Gender,
    /// 出生日期.
    BirthDate,
    /// 联系电话 (several separated by commas or spaces).
    Phone,
    /// 现住址: the household's standard address.
    Address,
    /// 户籍地址.
    RegisteredAddress,
    /// 工作单位.
    Work,
    /// 人员类别 (重点人群, several separated by commas).
    Categories,
    /// 居住类型 (常住, 流动, 人户分离).
    Residence,
    /// 户标签 (空巢, 独居, 出租屋 ...).
    Flags,
}

/// Every field with its mapping-file key and the headers it is found under by default (the
/// first is the one exports write).
pub const FIELDS: &[(Field, &str, &[&str])] = &[
    (Field::Number, "number", &["户号", "户编号", "户籍编号"]),
    (
        Field::Grid,
        "grid",
        &["网格", "所属网格", "网格编码", "网格代码", "网格名称"],
    ),
    (Field::HeadName, "head_name", &["户主姓名", "户主"]),
    (
        Field::Name,
        "name",
        &["姓名", "居民姓名", "成员姓名", "人员姓名"],
    ),
    (
        Field::IdNumber,
        "id_number",
        &[
            "身份证号",
            "身份证号码",
            "公民身份号码",
            "公民身份证号码",
            "证件号码",
            "身份证",
        ],
    ),
    (
        Field::Relation,
        "relation",
        &["与户主关系", "与户主的关系", "关系"],
    ),
    (Field::Gender, "gender", &["性别"]),
    (
        Field::BirthDate,
        "birth_date",
        &["出生日期", "出生年月", "出生年月日"],
    ),
    (
        Field::Phone,
        "phone",
        &["联系电话", "电话", "手机", "手机号", "手机号码", "联系方式"],
    ),
    (
        Field::Address,
        "address",
        &[
            "现住址",
            "居住地址",
            "现居住地址",
            "住址",
            "标准地址",
            "地址",
        ],
    ),
    (
        Field::RegisteredAddress,
        "registered_address",
        &["户籍地址", "户籍地", "户籍所在地"],
    ),
    (
        Field::Work,
        "work",
        &["工作单位", "工作单位及职务", "工作单位或学校", "单位"],
    ),
    (
        Field::Categories,
        "categories",
        &["人员类别", "重点人群", "人员类型"],
    ),
    (
        Field::Residence,
        "residence",
        &["居住类型", "居住状态", "人户状态"],
    ),
    (Field::Flags, "flags", &["户标签", "户类别"]),
];

impl Field {
    /// The mapping-file key (`id_number`).
    pub fn key(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, _, _)| *f == self)
            .map_or("", |(_, k, _)| k)
    }

    /// The header exports write for it (`身份证号`).
    pub fn header(self) -> &'static str {
        FIELDS
            .iter()
            .find(|(f, _, _)| *f == self)
            .map_or("", |(_, _, h)| h[0])
    }
}

/// A mapping file: which sheet, which row holds the headers, and headers for fields whose
/// column is called something else (`{"columns": {"id_number": "证件号"}}`). Everything is
/// optional; a field not named keeps its default headers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    /// The sheet to read (default: the first).
    #[serde(default)]
    pub sheet: Option<String>,
    /// The row number (as the spreadsheet shows it) of the header row (default: found).
    #[serde(default)]
    pub header_row: Option<usize>,
    /// Field key → the header of its column.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
}

impl Mapping {
    /// Parses a mapping file (JSON), refusing unknown keys and unknown fields with the list.
    pub fn from_json(text: &str) -> Result<Self, String> {
        let m: Mapping = serde_json::from_str(text).map_err(|e| format!("mapping file: {e}"))?;
        for key in m.columns.keys() {
            if !FIELDS.iter().any(|(_, k, _)| k == key) {
                let keys: Vec<&str> = FIELDS.iter().map(|(_, k, _)| *k).collect();
                return Err(format!(
                    "mapping file: columns.{key}: not a register field; fields: {}",
                    keys.join(", ")
                ));
            }
        }
        Ok(m)
    }

    fn field_of(&self, header: &str) -> Option<Field> {
        let h = normalize(header);
        if h.is_empty() {
            return None;
        }
        // A header the mapping names wins over the defaults.
        for (f, key, _) in FIELDS {
            if self.columns.get(*key).is_some_and(|m| normalize(m) == h) {
                return Some(*f);
            }
        }
        FIELDS
            .iter()
            .filter(|(_, key, _)| !self.columns.contains_key(*key))
            .find(|(_, _, names)| names.iter().any(|n| normalize(n) == h))
            .map(|(f, _, _)| *f)
    }
}

/// A header as compared: no spaces, no required-field marks, no bracketed notes
/// (「身份证号码（18位）*」 is 「身份证号码」).
fn normalize(s: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for c in s.chars() {
        match c {
            '(' | '（' | '[' | '【' => depth += 1,
            ')' | '）' | ']' | '】' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_whitespace() || matches!(c, '*' | '＊' | ':' | '：' | '\u{feff}') => {}
            c => out.push(c),
        }
    }
    out
}

/// Where the header is and which column holds each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    /// Index into the sheet's rows of the header row.
    pub header_index: usize,
    /// The row number of the header row.
    pub header_line: usize,
    /// Field → (column, the header as written).
    pub columns: BTreeMap<Field, (usize, String)>,
    /// Headers of columns not read because an earlier column holds the same field.
    pub ignored: Vec<String>,
}

impl Layout {
    /// The column of a field, if the sheet has it.
    pub fn col(&self, f: Field) -> Option<usize> {
        self.columns.get(&f).map(|(c, _)| *c)
    }

    /// The header a field's column has in the file (for reports), or the default one.
    pub fn header(&self, f: Field) -> String {
        self.columns
            .get(&f)
            .map_or_else(|| f.header().to_owned(), |(_, h)| h.clone())
    }
}

/// Rows searched for the header when the mapping does not say.
const HEADER_SEARCH: usize = 20;

/// Finds the header row (the row among the first 20 naming the most fields; it must name
/// 姓名) and maps its columns. A column whose header cell is empty takes the header of the
/// cell above (vertically merged headings keep their text in the top cell).
pub fn layout(sheet: &Sheet, mapping: &Mapping) -> Result<Layout, String> {
    let candidates: Vec<usize> = match mapping.header_row {
        Some(line) => {
            let i = sheet
                .rows
                .iter()
                .position(|r| r.line == line)
                .ok_or_else(|| format!("mapping file: header_row {line} is not in the sheet"))?;
            vec![i]
        }
        None => (0..sheet.rows.len().min(HEADER_SEARCH)).collect(),
    };
    let mut best: Option<Layout> = None;
    for i in candidates {
        let (columns, ignored) = map_row(&sheet.rows, i, mapping);
        if !columns.contains_key(&Field::Name) {
            continue;
        }
        if best
            .as_ref()
            .is_none_or(|b| columns.len() > b.columns.len())
        {
            best = Some(Layout {
                header_index: i,
                header_line: sheet.rows[i].line,
                columns,
                ignored,
            });
        }
    }
    best.ok_or_else(|| {
        let names: Vec<&str> = FIELDS[3].2.to_vec();
        format!(
            "no header row found: none of the first {HEADER_SEARCH} rows has a name column ({}); \
             name the headers in a mapping file (--mapping)",
            names.join(" / ")
        )
    })
}

fn map_row(
    rows: &[Row],
    i: usize,
    mapping: &Mapping,
) -> (BTreeMap<Field, (usize, String)>, Vec<String>) {
    let mut out = BTreeMap::new();
    let mut ignored = Vec::new();
    let width = rows[i].cells.len();
    for col in 0..width {
        // The cell itself, or for an empty one the nearest non-empty cell above (at most two).
        let mut header = rows[i].cell(col).text();
        let mut up = i;
        while header.is_empty() && up > 0 && i - up < 2 {
            up -= 1;
            header = rows[up].cell(col).text();
        }
        if let Some(f) = mapping.field_of(&header) {
            match out.entry(f) {
                std::collections::btree_map::Entry::Occupied(_) => ignored.push(header),
                std::collections::btree_map::Entry::Vacant(v) => {
                    v.insert((col, header));
                }
            }
        }
    }
    (out, ignored)
}

#[cfg(test)]
mod tests {
    use super::super::read::Cell;
    use super::*;

    fn row(line: usize, cells: &[&str]) -> Row {
        Row {
            line,
            cells: cells
                .iter()
                .map(|c| {
                    if c.is_empty() {
                        Cell::Empty
                    } else {
                        Cell::Text((*c).into())
                    }
                })
                .collect(),
        }
    }

    #[test]
    fn the_header_is_found_under_a_title_and_merged_headings() {
        let sheet = Sheet {
            name: "s".into(),
            encoding: "",
            rows: vec![
                row(1, &["城南社区居民登记表", "", "", ""]),
                row(2, &["网格", "基本信息", "", "联系电话"]),
                row(3, &["", "姓名", "身份证号码（18位）*", ""]),
                row(4, &["330102001001", "张三", "x", "1"]),
            ],
        };
        let l = layout(&sheet, &Mapping::default()).expect("layout");
        assert_eq!(l.header_line, 3);
        assert_eq!(l.col(Field::Grid), Some(0));
        assert_eq!(l.col(Field::Name), Some(1));
        assert_eq!(l.col(Field::IdNumber), Some(2));
        assert_eq!(l.col(Field::Phone), Some(3));
    }

    #[test]
    fn a_mapping_names_other_headers_and_unknown_fields_are_refused() {
        let m = Mapping::from_json(r#"{"columns": {"name": "居民", "id_number": "证件号"}}"#)
            .expect("mapping");
        let sheet = Sheet {
            name: "s".into(),
            encoding: "",
            rows: vec![row(1, &["居民", "证件号", "姓名"])],
        };
        let l = layout(&sheet, &m).expect("layout");
        assert_eq!(l.col(Field::Name), Some(0));
        assert_eq!(l.col(Field::IdNumber), Some(1));
        let e = Mapping::from_json(r#"{"columns": {"nmae": "x"}}"#).expect_err("typo");
        assert!(e.contains("columns.nmae") && e.contains("id_number"), "{e}");
        assert!(Mapping::from_json(r#"{"colums": {}}"#).is_err());
    }
}
