//! Reading a register file into rows of cells: Excel workbooks through `calamine` (the first
//! sheet, or one named), CSV through `csv` in UTF-8 (with or without a BOM) or GBK/GB18030
//! (what Excel in China writes). Row numbers are the ones the spreadsheet shows, so a report
//! can point a clerk at the very row.

use std::io::Cursor;

use calamine::{Data, Reader};

/// The kind of file, from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// An Excel (or OpenDocument) workbook: `.xlsx`, `.xlsm`, `.xls`, `.ods`.
    Workbook,
    /// Comma-separated text: `.csv` (or `.txt`).
    Csv,
}

impl FileKind {
    /// The kind a file name says, or why it is not one we read.
    pub fn from_name(name: &str) -> Result<Self, ReadError> {
        let lower = name.to_ascii_lowercase();
        let ext = lower.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
        match ext {
            "xlsx" | "xlsm" | "xlsb" | "xls" | "ods" => Ok(FileKind::Workbook),
            "csv" | "txt" => Ok(FileKind::Csv),
            _ => Err(ReadError::Kind(name.to_owned())),
        }
    }
}

/// One cell as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// Nothing in it.
    Empty,
    /// Text, trimmed.
    Text(String),
    /// A number Excel stored as a number (ID numbers typed without a leading `'` end up here,
    /// with their last digits lost).
    Number(f64),
    /// A date Excel stored as a date, as `YYYY-MM-DD`.
    Date(String),
}

impl Cell {
    /// Whether the cell holds nothing.
    pub fn is_empty(&self) -> bool {
        matches!(self, Cell::Empty)
    }

    /// The cell as text: numbers without a fractional part are written as integers.
    pub fn text(&self) -> String {
        match self {
            Cell::Empty => String::new(),
            Cell::Text(s) | Cell::Date(s) => s.clone(),
            Cell::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => format!("{}", *n as i64),
            Cell::Number(n) => n.to_string(),
        }
    }
}

/// One row of the sheet.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The row number the spreadsheet shows (1-based; for CSV the line the record starts on).
    pub line: usize,
    /// Its cells from column A on.
    pub cells: Vec<Cell>,
}

impl Row {
    /// The cell in column `col` (0-based), or empty.
    pub fn cell(&self, col: usize) -> &Cell {
        self.cells.get(col).unwrap_or(&Cell::Empty)
    }

    /// Whether every cell is empty (a blank line).
    pub fn is_blank(&self) -> bool {
        self.cells.iter().all(Cell::is_empty)
    }
}

/// A sheet read whole.
#[derive(Debug, Clone, PartialEq)]
pub struct Sheet {
    /// The sheet's name (`csv` for a CSV file).
    pub name: String,
    /// The text encoding a CSV file was in (`utf-8` or `gbk`); empty for a workbook.
    pub encoding: &'static str,
    /// The rows in order, blank ones included.
    pub rows: Vec<Row>,
}

/// Why a file could not be read at all.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Not a kind of file we read.
    #[error("{0}: not a register file we read (give .xlsx, .xls, .ods or .csv)")]
    Kind(String),
    /// The workbook is damaged or not a workbook.
    #[error("the workbook cannot be read: {0}")]
    Workbook(String),
    /// No sheet by that name, or no sheet at all.
    #[error("no sheet {wanted:?} in the workbook (sheets: {})", .have.join(", "))]
    NoSheet {
        /// The sheet asked for.
        wanted: String,
        /// The sheets there are.
        have: Vec<String>,
    },
    /// The CSV text is neither UTF-8 nor GBK.
    #[error("the CSV file is neither UTF-8 nor GBK text")]
    Encoding,
    /// UTF-8 text with a few damaged bytes (read as GBK it would be garbled).
    #[error("the CSV file is UTF-8 with a damaged byte on line {line}; save it again as UTF-8")]
    DamagedUtf8 {
        /// The line of the first damaged byte.
        line: usize,
    },
    /// A CSV record that cannot be parsed.
    #[error("CSV line {line}: {message}")]
    Csv {
        /// The line it starts on.
        line: usize,
        /// What the parser found.
        message: String,
    },
}

/// Reads the sheet `sheet` (or the first) of a workbook, or a CSV file.
pub fn read(bytes: &[u8], kind: FileKind, sheet: Option<&str>) -> Result<Sheet, ReadError> {
    match kind {
        FileKind::Workbook => read_workbook(bytes, sheet),
        FileKind::Csv => read_csv(bytes),
    }
}

fn read_workbook(bytes: &[u8], sheet: Option<&str>) -> Result<Sheet, ReadError> {
    let mut book = calamine::open_workbook_auto_from_rs(Cursor::new(bytes))
        .map_err(|e| ReadError::Workbook(e.to_string()))?;
    let names = book.sheet_names();
    let name = match sheet {
        Some(want) => names
            .iter()
            .find(|n| n.as_str() == want)
            .cloned()
            .ok_or_else(|| ReadError::NoSheet {
                wanted: want.to_owned(),
                have: names.clone(),
            })?,
        None => names.first().cloned().ok_or_else(|| ReadError::NoSheet {
            wanted: "(the first)".into(),
            have: Vec::new(),
        })?,
    };
    let range = book
        .worksheet_range(&name)
        .map_err(|e| ReadError::Workbook(e.to_string()))?;
    let (row0, col0) = range.start().unwrap_or((0, 0));
    let rows = range
        .rows()
        .enumerate()
        .map(|(i, cells)| {
            let mut out = vec![Cell::Empty; col0 as usize];
            out.extend(cells.iter().map(cell_of));
            Row {
                line: row0 as usize + i + 1,
                cells: out,
            }
        })
        .collect();
    Ok(Sheet {
        name,
        encoding: "",
        rows,
    })
}

fn cell_of(d: &Data) -> Cell {
    match d {
        Data::Empty => Cell::Empty,
        Data::String(s) => text_cell(s),
        Data::Int(i) => Cell::Number(*i as f64),
        Data::Float(f) => Cell::Number(*f),
        Data::Bool(b) => Cell::Text(if *b { "是" } else { "否" }.into()),
        Data::DateTime(dt) if dt.is_datetime() => match excel_date(dt.as_f64()) {
            Some(d) => Cell::Date(d),
            None => Cell::Number(dt.as_f64()),
        },
        Data::DateTime(dt) => Cell::Number(dt.as_f64()),
        Data::DateTimeIso(s) => Cell::Date(s.chars().take(10).collect()),
        Data::DurationIso(s) => text_cell(s),
        Data::Error(e) => Cell::Text(format!("#{e}")),
    }
}

fn text_cell(s: &str) -> Cell {
    let t = s.trim().trim_matches('\u{feff}').trim();
    if t.is_empty() {
        Cell::Empty
    } else {
        Cell::Text(t.to_owned())
    }
}

/// An Excel serial date (1900 system) as `YYYY-MM-DD`. Counted from 1899-12-30, which is
/// right from 1900-03-01 (serial 61) on: Excel counts a 1900-02-29 that never was, so serials
/// before it come out a day early (no living resident was born then).
fn excel_date(serial: f64) -> Option<String> {
    if !serial.is_finite() || !(1.0..2_958_466.0).contains(&serial) {
        return None;
    }
    let epoch = time::Date::from_calendar_date(1899, time::Month::December, 30).ok()?;
    let d = epoch.checked_add(time::Duration::days(serial.floor() as i64))?;
    Some(format!(
        "{:04}-{:02}-{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    ))
}

fn read_csv(bytes: &[u8]) -> Result<Sheet, ReadError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let (text, encoding): (std::borrow::Cow<'_, str>, _) = match std::str::from_utf8(bytes) {
        Ok(s) => (s.into(), "utf-8"),
        Err(e) => {
            // UTF-8 with a stray byte or two is not GBK: most of its multi-byte characters
            // decode as UTF-8, where GBK text almost never forms valid UTF-8 sequences.
            let lossy = String::from_utf8_lossy(bytes);
            let damaged = lossy.chars().filter(|c| *c == '\u{fffd}').count();
            let wide = lossy.chars().filter(|c| !c.is_ascii()).count();
            if wide >= 10 && damaged * 20 < wide {
                let line = bytes[..e.valid_up_to()]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count()
                    + 1;
                return Err(ReadError::DamagedUtf8 { line });
            }
            // GB18030 is a superset of GBK; a byte sequence neither decodes is refused rather
            // than read with replacement characters in people's names.
            let decoded = encoding_rs::GB18030
                .decode_without_bom_handling_and_without_replacement(bytes)
                .ok_or(ReadError::Encoding)?;
            (decoded, "gbk")
        }
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| ReadError::Csv {
            line: e
                .position()
                .map_or(0, |p| usize::try_from(p.line()).unwrap_or(usize::MAX)),
            message: e.to_string(),
        })?;
        let line = record
            .position()
            .map_or(rows.len() + 1, |p| usize::try_from(p.line()).unwrap_or(0));
        rows.push(Row {
            line,
            cells: record.iter().map(text_cell).collect(),
        });
    }
    Ok(Sheet {
        name: "csv".into(),
        encoding,
        rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excel_serial_dates_are_calendar_dates() {
        assert_eq!(excel_date(1.0).as_deref(), Some("1899-12-31"));
        assert_eq!(excel_date(61.0).as_deref(), Some("1900-03-01"));
        assert_eq!(excel_date(29221.0).as_deref(), Some("1980-01-01"));
        assert_eq!(excel_date(45943.5).as_deref(), Some("2025-10-13"));
        assert_eq!(excel_date(f64::NAN), None);
    }

    #[test]
    fn gbk_csv_is_decoded_and_utf8_is_kept() {
        let (gbk, _, _) = encoding_rs::GBK.encode("姓名,与户主关系\n张三,户主\n");
        let sheet = read(&gbk, FileKind::Csv, None).expect("gbk");
        assert_eq!(sheet.encoding, "gbk");
        assert_eq!(sheet.rows[1].cells[0], Cell::Text("张三".into()));
        let utf8 = "\u{feff}姓名\n李四\n";
        let sheet = read(utf8.as_bytes(), FileKind::Csv, None).expect("utf8");
        assert_eq!(sheet.encoding, "utf-8");
        assert_eq!(sheet.rows[0].cells[0], Cell::Text("姓名".into()));
        assert_eq!(sheet.rows[1].line, 2);
    }

    #[test]
    fn utf8_with_a_stray_byte_is_not_misread_as_gbk() {
        let mut bytes = "姓名,与户主关系,现住址\n张三,户主,城南社区三幢五零一\n"
            .as_bytes()
            .to_vec();
        bytes.extend_from_slice(b"\xff\n");
        bytes.extend_from_slice("李四,配偶,城南社区三幢\n".as_bytes());
        let err = read(&bytes, FileKind::Csv, None).expect_err("damaged");
        assert!(matches!(err, ReadError::DamagedUtf8 { line: 3 }), "{err}");
    }

    #[test]
    fn bytes_that_are_no_text_are_refused() {
        let err = read(&[0xff, 0xff, 0xff, 0x80], FileKind::Csv, None).expect_err("binary");
        assert!(matches!(err, ReadError::Encoding), "{err}");
        assert!(FileKind::from_name("a.pdf").is_err());
        assert_eq!(
            FileKind::from_name("户籍.XLSX").ok(),
            Some(FileKind::Workbook)
        );
    }
}
