//! [`ConsoleStorage`] over the backend's SQL.

use std::str::FromStr;

use gridsync_core::projection::CaseRow;
use gridsync_proto::{DeviceId, DocId, GridCode};
use sqlx::{AssertSqlSafe, Row};

use super::{DbRow, SqlStorage, prefix_range};
use crate::auth::join_scopes;
use crate::storage::StorageError;
use crate::storage::console::{
    AuditEntry, AutoRoute, ConsoleRole, ConsoleStorage, ConsoleUser, DeadlineFlag, InboxQuery,
    SessionRow,
};

fn parse_user(row: &DbRow) -> Result<ConsoleUser, StorageError> {
    let corrupt =
        |what: &str, e: String| StorageError::Corrupt(format!("console user {what}: {e}"));
    let towns: String = row.try_get("towns")?;
    Ok(ConsoleUser {
        login: row.try_get("login")?,
        name: row.try_get("name")?,
        role: ConsoleRole::from_str(&row.try_get::<String, _>("role")?)
            .map_err(|e| corrupt("role", e))?,
        dept: row.try_get("dept")?,
        towns: towns
            .split(',')
            .filter(|t| !t.is_empty())
            .map(GridCode::parse)
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt("towns", e.to_string()))?,
        device_id: row
            .try_get::<Option<String>, _>("device_id")?
            .map(|d| DeviceId::from_str(&d))
            .transpose()
            .map_err(|e| corrupt("device", e.to_string()))?,
        password_hash: row.try_get("password_hash")?,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        failures: row.try_get("failures")?,
        locked_until: row.try_get("locked_until")?,
        created_at: row.try_get("created_at")?,
    })
}

/// Everything but the paging of an inbox query, as SQL conditions with their parameters.
fn inbox_where(q: &InboxQuery) -> (String, Vec<Param>) {
    let mut conds: Vec<String> = Vec::new();
    let mut params: Vec<Param> = Vec::new();
    let next = |params: &mut Vec<Param>, p: Param| {
        params.push(p);
        format!("${}", params.len())
    };
    conds.push("status <> 'draft'".into());
    // Visibility first: the person's towns (none: nothing).
    if q.towns.is_empty() {
        conds.push("1 = 0".into());
    } else {
        let mut towns = Vec::new();
        for t in &q.towns {
            let (lo, hi) = prefix_range(Some(t));
            let lo = next(&mut params, Param::Text(lo));
            let hi = next(&mut params, Param::Text(hi));
            towns.push(format!("(grid >= {lo} AND grid < {hi})"));
        }
        conds.push(format!("({})", towns.join(" OR ")));
    }
    if let Some(dept) = &q.holder {
        let d = next(&mut params, Param::Text(dept.clone()));
        conds.push(format!(
            "doc_id IN (SELECT doc_id FROM case_departments WHERE dept = {d})"
        ));
    }
    if let Some(status) = &q.status {
        let s = next(&mut params, Param::Text(status.clone()));
        conds.push(format!("status = {s}"));
    }
    if let Some(within) = &q.within {
        let (lo, hi) = prefix_range(Some(within));
        let lo = next(&mut params, Param::Text(lo));
        let hi = next(&mut params, Param::Text(hi));
        conds.push(format!("grid >= {lo} AND grid < {hi}"));
    }
    if let Some(dept) = &q.dept {
        let d = next(&mut params, Param::Text(dept.clone()));
        conds.push(format!(
            "doc_id IN (SELECT doc_id FROM case_departments WHERE dept = {d})"
        ));
    }
    if let Some(category) = &q.category {
        let c = next(&mut params, Param::Text(category.clone()));
        conds.push(format!("category = {c}"));
    }
    // Amber and red only while the department's clock runs (as the indicators count overdue).
    let running = gridsync_core::workflow::STATUSES
        .iter()
        .filter(|s| s.clock_runs())
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    match q.flag {
        Some(DeadlineFlag::Red) => {
            let now = next(&mut params, Param::Int(q.now));
            conds.push(format!(
                "deadline IS NOT NULL AND deadline < {now} AND status IN ({running})"
            ));
        }
        Some(DeadlineFlag::Amber) => {
            let now = next(&mut params, Param::Int(q.now));
            conds.push(format!(
                "amber_at IS NOT NULL AND amber_at <= {now} AND deadline >= {now} \
                 AND status IN ({running})"
            ));
        }
        None => {}
    }
    if q.conflicts {
        conds.push("(event_conflicts > 0 OR conflict_count > 0)".into());
    }
    if q.times {
        conds.push("doc_id IN (SELECT doc_id FROM time_flags)".into());
    }
    (conds.join(" AND "), params)
}

/// `(grid >= lo AND grid < hi) OR ...` over `towns` (none: nothing), its parameters appended.
fn towns_condition(towns: &[GridCode], params: &mut Vec<Param>) -> String {
    if towns.is_empty() {
        return "1 = 0".into();
    }
    let mut parts = Vec::new();
    for t in towns {
        let (lo, hi) = prefix_range(Some(t));
        params.push(Param::Text(lo));
        let lo = params.len();
        params.push(Param::Text(hi));
        parts.push(format!("(grid >= ${lo} AND grid < ${})", lo + 1));
    }
    format!("({})", parts.join(" OR "))
}

/// A bound parameter of a built query.
enum Param {
    Text(String),
    Int(i64),
}

macro_rules! bind_all {
    ($q:expr, $params:expr) => {{
        let mut q = $q;
        for p in $params {
            q = match p {
                Param::Text(s) => q.bind(s.clone()),
                Param::Int(i) => q.bind(*i),
            };
        }
        q
    }};
}

impl ConsoleStorage for SqlStorage {
    async fn add_console_user(&self, user: &ConsoleUser) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO console_users (login, name, role, dept, towns, device_id, password_hash, \
             disabled, failures, locked_until, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 0, 0, $9) ON CONFLICT (login) DO NOTHING",
        )
        .bind(&user.login)
        .bind(&user.name)
        .bind(user.role.as_str())
        .bind(&user.dept)
        .bind(join_scopes(&user.towns))
        .bind(user.device_id.map(|d| d.to_string()))
        .bind(&user.password_hash)
        .bind(i64::from(user.disabled))
        .bind(user.created_at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn console_user(&self, login: &str) -> Result<Option<ConsoleUser>, StorageError> {
        sqlx::query("SELECT * FROM console_users WHERE login = $1")
            .bind(login)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| parse_user(&r))
            .transpose()
    }

    async fn console_users(&self) -> Result<Vec<ConsoleUser>, StorageError> {
        sqlx::query("SELECT * FROM console_users ORDER BY login")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(parse_user)
            .collect()
    }

    async fn set_console_password(
        &self,
        login: &str,
        password_hash: &str,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE console_users SET password_hash = $1, failures = 0, locked_until = 0 \
             WHERE login = $2",
        )
        .bind(password_hash)
        .bind(login)
        .execute(&mut *tx)
        .await?;
        // A new password ends every session made with the old one.
        sqlx::query("DELETE FROM console_sessions WHERE login = $1")
            .bind(login)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn set_console_disabled(
        &self,
        login: &str,
        disabled: bool,
    ) -> Result<bool, StorageError> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("UPDATE console_users SET disabled = $1 WHERE login = $2")
            .bind(i64::from(disabled))
            .bind(login)
            .execute(&mut *tx)
            .await?;
        if disabled {
            sqlx::query("DELETE FROM console_sessions WHERE login = $1")
                .bind(login)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn console_sign_in_failed(
        &self,
        login: &str,
        now: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Option<(i64, i64)>, StorageError> {
        // One statement, so concurrent guesses each count (no read-then-write race).
        let row = sqlx::query(
            "UPDATE console_users SET \
               failures = CASE WHEN locked_until > 0 AND locked_until <= $2 THEN 1 \
                               ELSE failures + 1 END, \
               locked_until = CASE \
                 WHEN locked_until > 0 AND locked_until <= $2 THEN 0 \
                 WHEN failures + 1 >= $3 AND locked_until <= $2 THEN $4 \
                 ELSE locked_until END \
             WHERE login = $1 RETURNING failures, locked_until",
        )
        .bind(login)
        .bind(now)
        .bind(max)
        .bind(now + lock_ms)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok((r.try_get("failures")?, r.try_get("locked_until")?)))
            .transpose()
    }

    async fn console_sign_in_ok(&self, login: &str, now: i64) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "UPDATE console_users SET failures = 0, locked_until = 0 \
             WHERE login = $1 AND locked_until <= $2 AND disabled = 0",
        )
        .bind(login)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn create_session(&self, token_hash: &str, s: &SessionRow) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO console_sessions (token_hash, login, csrf, created_at, seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(&s.login)
        .bind(&s.csrf)
        .bind(s.created_at)
        .bind(s.seen_at)
        .bind(s.expires_at)
        .execute(&self.pool)
        .await?;
        // Sessions that ran out are of no use to anyone: dropped as new ones are made.
        sqlx::query("DELETE FROM console_sessions WHERE expires_at < $1")
            .bind(s.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn session(&self, token_hash: &str) -> Result<Option<SessionRow>, StorageError> {
        sqlx::query(
            "SELECT login, csrf, created_at, seen_at, expires_at FROM console_sessions \
             WHERE token_hash = $1",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| {
            Ok(SessionRow {
                login: r.try_get("login")?,
                csrf: r.try_get("csrf")?,
                created_at: r.try_get("created_at")?,
                seen_at: r.try_get("seen_at")?,
                expires_at: r.try_get("expires_at")?,
            })
        })
        .transpose()
    }

    async fn touch_session(
        &self,
        token_hash: &str,
        seen_at: i64,
        expires_at: i64,
    ) -> Result<(), StorageError> {
        sqlx::query(
            "UPDATE console_sessions SET seen_at = $1, expires_at = $2 WHERE token_hash = $3",
        )
        .bind(seen_at)
        .bind(expires_at)
        .bind(token_hash)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn end_session(&self, token_hash: &str) -> Result<(), StorageError> {
        sqlx::query("DELETE FROM console_sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn audit(&self, e: &AuditEntry) -> Result<(), StorageError> {
        sqlx::query(
            "INSERT INTO console_audit (at, login, action, target, outcome, detail, addr) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(e.at)
        .bind(&e.login)
        .bind(&e.action)
        .bind(&e.target)
        .bind(&e.outcome)
        .bind(&e.detail)
        .bind(&e.addr)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit_log(
        &self,
        login: Option<&str>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>, StorageError> {
        let rows = match login {
            Some(l) => {
                sqlx::query(
                    "SELECT * FROM console_audit WHERE login = $1 ORDER BY id DESC LIMIT $2",
                )
                .bind(l)
                .bind(limit)
                .fetch_all(&self.pool)
                .await?
            }
            None => {
                sqlx::query("SELECT * FROM console_audit ORDER BY id DESC LIMIT $1")
                    .bind(limit)
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: r.try_get("at")?,
                    login: r.try_get("login")?,
                    action: r.try_get("action")?,
                    target: r.try_get("target")?,
                    outcome: r.try_get("outcome")?,
                    detail: r.try_get("detail")?,
                    addr: r.try_get("addr")?,
                })
            })
            .collect()
    }

    async fn inbox(&self, q: &InboxQuery) -> Result<(Vec<CaseRow>, i64), StorageError> {
        let (cond, params) = inbox_where(q);
        let n = params.len();
        let page = format!(
            "SELECT * FROM p_cases WHERE {cond} ORDER BY reported_at DESC, doc_id LIMIT ${} OFFSET ${}",
            n + 1,
            n + 2
        );
        let rows: Vec<CaseRow> = bind_all!(sqlx::query_as(AssertSqlSafe(page)), &params)
            .bind(q.limit)
            .bind(q.offset)
            .fetch_all(&self.pool)
            .await?;
        let count = format!("SELECT COUNT(*) FROM p_cases WHERE {cond}");
        let total: i64 = bind_all!(sqlx::query_scalar(AssertSqlSafe(count)), &params)
            .fetch_one(&self.pool)
            .await?;
        Ok((rows, total))
    }

    async fn grid(
        &self,
        code: &str,
    ) -> Result<Option<gridsync_core::projection::GridRow>, StorageError> {
        Ok(sqlx::query_as("SELECT * FROM p_grids WHERE code = $1")
            .bind(code)
            .fetch_optional(&self.pool)
            .await?)
    }

    async fn case_holders(&self, doc: DocId) -> Result<Vec<String>, StorageError> {
        Ok(
            sqlx::query_scalar("SELECT dept FROM case_departments WHERE doc_id = $1 ORDER BY dept")
                .bind(doc.to_string())
                .fetch_all(&self.pool)
                .await?,
        )
    }

    async fn household_cases(
        &self,
        household: DocId,
        towns: &[GridCode],
    ) -> Result<Vec<CaseRow>, StorageError> {
        let mut params = vec![Param::Text(household.to_string())];
        let within = towns_condition(towns, &mut params);
        let sql = format!(
            "SELECT * FROM p_cases WHERE doc_id IN \
             (SELECT case_id FROM p_case_links WHERE household_id = $1) \
             AND status <> 'draft' AND {within} ORDER BY reported_at DESC, doc_id"
        );
        Ok(bind_all!(sqlx::query_as(AssertSqlSafe(sql)), &params)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn residents_in_towns(
        &self,
        name: &str,
        towns: &[GridCode],
        limit: i64,
    ) -> Result<Vec<gridsync_core::projection::ResidentRow>, StorageError> {
        // Wildcards and PostgreSQL's LIKE escape character are taken out: a name is matched
        // as text on both backends.
        let pattern = format!("%{}%", name.trim().replace(['%', '_', '\\'], ""));
        let mut params = vec![
            Param::Text(pattern),
            Param::Text(name.trim().to_uppercase()),
        ];
        let within = towns_condition(towns, &mut params);
        params.push(Param::Int(limit));
        let sql = format!(
            "SELECT * FROM p_residents WHERE (name LIKE $1 OR id_number = $2) AND {within} \
             ORDER BY name, household_id, resident_id LIMIT ${}",
            params.len()
        );
        Ok(bind_all!(sqlx::query_as(AssertSqlSafe(sql)), &params)
            .fetch_all(&self.pool)
            .await?)
    }

    async fn cases_to_route(&self) -> Result<Vec<DocId>, StorageError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT c.doc_id FROM p_cases c WHERE c.status = 'registered' AND EXISTS \
             (SELECT 1 FROM auto_routes r WHERE r.subcategory = c.subcategory \
              AND c.grid >= r.town AND c.grid < r.town || ':') ORDER BY c.reported_at",
        )
        .fetch_all(&self.pool)
        .await?;
        ids.iter()
            .map(|id| DocId::from_str(id).map_err(|e| StorageError::Corrupt(e.to_string())))
            .collect()
    }

    async fn claim_routing(&self, doc: DocId, event: &str, at: i64) -> Result<bool, StorageError> {
        let done = sqlx::query(
            "INSERT INTO routing_claims (doc_id, event, claimed_at) VALUES ($1, $2, $3) \
             ON CONFLICT (doc_id, event) DO NOTHING",
        )
        .bind(doc.to_string())
        .bind(event)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn auto_routes(&self, towns: &[GridCode]) -> Result<Vec<AutoRoute>, StorageError> {
        let mut params = Vec::new();
        let list = (0..towns.len())
            .map(|i| format!("${}", i + 1))
            .collect::<Vec<_>>()
            .join(", ");
        for t in towns {
            params.push(Param::Text(t.to_string()));
        }
        if towns.is_empty() {
            return Ok(Vec::new());
        }
        let sql = format!(
            "SELECT town, subcategory, set_by, set_at FROM auto_routes WHERE town IN ({list}) \
             ORDER BY town, subcategory"
        );
        let rows = bind_all!(sqlx::query(AssertSqlSafe(sql)), &params)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(AutoRoute {
                    town: r.try_get("town")?,
                    subcategory: r.try_get("subcategory")?,
                    set_by: r.try_get("set_by")?,
                    set_at: r.try_get("set_at")?,
                })
            })
            .collect()
    }

    async fn set_auto_route(
        &self,
        town: &GridCode,
        subcategory: &str,
        on: bool,
        by: &str,
        at: i64,
    ) -> Result<(), StorageError> {
        if on {
            sqlx::query(
                "INSERT INTO auto_routes (town, subcategory, set_by, set_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (town, subcategory) DO UPDATE SET set_by = excluded.set_by, \
                 set_at = excluded.set_at",
            )
            .bind(town.to_string())
            .bind(subcategory)
            .bind(by)
            .bind(at)
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM auto_routes WHERE town = $1 AND subcategory = $2")
                .bind(town.to_string())
                .bind(subcategory)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }
}
