//! The register's side of the storage (part of [`super::Storage`]): finding stored households
//! by 户号 and residents by ID number for an import, the archive for an export, the import log
//! and the value each field had in the register when last imported.

use std::future::Future;

use super::{ImportRun, ImportState, StorageError};
use gridsync_core::projection::{HouseholdRow, ResidentRow};
use gridsync_proto::{DocId, GridCode};

/// The register's side of the storage.
pub trait RegisterStorage {
    /// Households whose register number (户号) is one of `numbers`.
    fn households_numbered(
        &self,
        numbers: &[String],
    ) -> impl Future<Output = Result<Vec<HouseholdRow>, StorageError>> + Send;
    /// Residents whose ID number is one of `id_numbers`.
    fn residents_with_id(
        &self,
        id_numbers: &[String],
    ) -> impl Future<Output = Result<Vec<ResidentRow>, StorageError>> + Send;
    /// Residents of the households within a unit (or all), by household.
    fn residents_within(
        &self,
        within: Option<&GridCode>,
    ) -> impl Future<Output = Result<Vec<ResidentRow>, StorageError>> + Send;
    /// Records (or updates, by its actor) one register import run.
    fn record_import(
        &self,
        run: &ImportRun,
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// The values the last imports set in these households.
    fn import_state(
        &self,
        docs: &[DocId],
    ) -> impl Future<Output = Result<Vec<ImportState>, StorageError>> + Send;
    /// The households an import created without 户号, by their key (`grid|head's name`).
    fn imported_keys(
        &self,
        keys: &[String],
    ) -> impl Future<Output = Result<Vec<ImportState>, StorageError>> + Send;
    /// Remembers values an import set (replacing earlier ones of the same field).
    fn save_import_state(
        &self,
        rows: &[ImportState],
    ) -> impl Future<Output = Result<(), StorageError>> + Send;
    /// Every register import run, newest first.
    fn imports(&self) -> impl Future<Output = Result<Vec<ImportRun>, StorageError>> + Send;
}
