//! [`PhotoStorage`] over the backend's SQL.

use std::collections::HashMap;

use gridsync_core::projection::PhotoRow;
use gridsync_proto::{DeviceId, DocId, GridCode};
use sqlx::Row;

use super::{DbRow, SqlStorage};
use crate::auth::{Device, Role};
use crate::storage::{BlobRow, PhotoStorage, StorageError, UploadRow};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn parse_upload(row: &DbRow) -> Result<UploadRow, StorageError> {
    let device: String = row.try_get("device")?;
    Ok(UploadRow {
        sha256: row.try_get("sha256")?,
        device: device
            .parse()
            .map_err(|e| StorageError::Corrupt(format!("uploads.device {device}: {e}")))?,
        length: u64::try_from(row.try_get::<i64, _>("length")?).unwrap_or(0),
        offset: u64::try_from(row.try_get::<i64, _>("upload_offset")?).unwrap_or(0),
        created_at: row.try_get("created_at")?,
    })
}

impl PhotoStorage for SqlStorage {
    async fn photo_refs(&self, sha256: &str) -> Result<Vec<PhotoRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_photos WHERE sha256 = $1 OR thumb_sha256 = $1 ORDER BY doc_id",
        )
        .bind(sha256)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn may_read(
        &self,
        device: &Device,
        doc: DocId,
        grid: &str,
    ) -> Result<bool, StorageError> {
        let Ok(grid) = GridCode::parse(grid) else {
            return Ok(false);
        };
        let inside = device.scopes.iter().any(|s| s.contains(&grid));
        match (device.role, &device.department) {
            (Role::Department, Some(dept)) => {
                if !inside {
                    return Ok(false);
                }
                let n: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM case_departments WHERE doc_id = $1 AND dept = $2",
                )
                .bind(doc.to_string())
                .bind(dept)
                .fetch_one(&self.pool)
                .await?;
                Ok(n > 0)
            }
            (Role::Department, None) => Ok(false),
            _ => Ok(inside),
        }
    }

    async fn blob(&self, sha256: &str) -> Result<Option<BlobRow>, StorageError> {
        let Some(row) = sqlx::query(
            "SELECT sha256, size, mime, phash, stored_at, device FROM blobs WHERE sha256 = $1",
        )
        .bind(sha256)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let device: String = row.try_get("device")?;
        let phash: Option<String> = row.try_get("phash")?;
        Ok(Some(BlobRow {
            sha256: row.try_get("sha256")?,
            size: u64::try_from(row.try_get::<i64, _>("size")?).unwrap_or(0),
            mime: row.try_get("mime")?,
            phash: phash.and_then(|h| u64::from_str_radix(&h, 16).ok()),
            stored_at: row.try_get("stored_at")?,
            device: device
                .parse()
                .map_err(|e| StorageError::Corrupt(format!("blobs.device {device}: {e}")))?,
        }))
    }

    async fn insert_blob(&self, blob: &BlobRow) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "INSERT INTO blobs (sha256, size, mime, phash, stored_at, device) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(&blob.sha256)
        .bind(to_i64(blob.size))
        .bind(&blob.mime)
        .bind(blob.phash.map(|h| format!("{h:016x}")))
        .bind(blob.stored_at)
        .bind(blob.device.to_string())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM uploads WHERE sha256 = $1 AND device = $2")
            .bind(&blob.sha256)
            .bind(blob.device.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn upload(
        &self,
        sha256: &str,
        device: DeviceId,
    ) -> Result<Option<UploadRow>, StorageError> {
        let row = sqlx::query("SELECT * FROM uploads WHERE sha256 = $1 AND device = $2")
            .bind(sha256)
            .bind(device.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(parse_upload).transpose()
    }

    async fn create_upload(&self, upload: &UploadRow) -> Result<UploadRow, StorageError> {
        sqlx::query(
            "INSERT INTO uploads (sha256, device, length, upload_offset, created_at) \
             VALUES ($1, $2, $3, 0, $4) ON CONFLICT (sha256, device) DO NOTHING",
        )
        .bind(&upload.sha256)
        .bind(upload.device.to_string())
        .bind(to_i64(upload.length))
        .bind(upload.created_at)
        .execute(&self.pool)
        .await?;
        self.upload(&upload.sha256, upload.device)
            .await?
            .ok_or_else(|| StorageError::Corrupt("an upload vanished as it was made".into()))
    }

    async fn advance_upload(
        &self,
        sha256: &str,
        device: DeviceId,
        from: u64,
        to: u64,
    ) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE uploads SET upload_offset = $1 \
             WHERE sha256 = $2 AND device = $3 AND upload_offset = $4",
        )
        .bind(to_i64(to))
        .bind(sha256)
        .bind(device.to_string())
        .bind(to_i64(from))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_upload(&self, sha256: &str, device: DeviceId) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM uploads WHERE sha256 = $1 AND device = $2")
            .bind(sha256)
            .bind(device.to_string())
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn uploads_before(&self, before: i64) -> Result<Vec<UploadRow>, StorageError> {
        let rows = sqlx::query("SELECT * FROM uploads WHERE created_at < $1")
            .bind(before)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(parse_upload).collect()
    }

    async fn case_photos(&self) -> Result<Vec<PhotoRow>, StorageError> {
        Ok(sqlx::query_as(
            "SELECT * FROM p_photos WHERE doc_type = 'case' ORDER BY doc_id, photo_id",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    async fn phashes(&self) -> Result<HashMap<String, u64>, StorageError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT sha256, phash FROM blobs WHERE phash IS NOT NULL")
                .fetch_all(&self.pool)
                .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(s, h)| Some((s, u64::from_str_radix(&h, 16).ok()?)))
            .collect())
    }
}
