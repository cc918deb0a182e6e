//! Registers in, reports out: importing a town's household register from Excel or CSV
//! (`import`: checked with the phone's rules, matched against what is stored, written through
//! the merge path as the import device), and exporting cases (台账), indicators and the
//! household archive as XLSX or CSV (`export`), with ID numbers and phones masked unless the
//! caller may see them.
//!
//! - `read.rs`: a file into rows of cells (calamine for workbooks, csv in UTF-8 or GBK).
//! - `columns.rs`: the register's fields, their usual headers, the mapping file, the header row.
//! - `import.rs`: rows → households, checked, grouped, matched and written.
//! - `export.rs`: tables of cases, indicators and households, written as XLSX or CSV.
//! - `routes.rs`: `GET /v1/exports/...` for dispatcher and leader devices.

pub mod columns;
pub mod export;
pub mod import;
pub mod read;
pub mod routes;

pub use columns::{Field, Mapping};
pub use export::{ExportFormat, Mask};
pub use import::{ImportError, ImportOptions, ImportReport, RowError, import_households};
