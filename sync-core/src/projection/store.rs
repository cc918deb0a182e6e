//! Writing projection rows: one source compiled once per database (the including module
//! names it `Db`), so the phone's SQLite store and the server's backends run the same statements.

use super::super::{
    Document, PhotoRow, Projection, ProjectionError, clear_statements, project, value_rows,
};
use super::Db;

/// A connection of the including backend.
type Conn = <Db as sqlx::Database>::Connection;

/// Rows per multi-row `INSERT` (12 parameters each at most: far below both engines' limits).
const ROWS_PER_INSERT: usize = 200;

/// Empties every projection table (before a rebuild).
pub async fn clear(conn: &mut Conn) -> Result<(), ProjectionError> {
    for sql in [
        "DELETE FROM p_grids",
        "DELETE FROM p_households",
        "DELETE FROM p_residents",
        "DELETE FROM p_visits",
        "DELETE FROM p_cases",
        "DELETE FROM p_case_links",
        "DELETE FROM p_inspections",
        "DELETE FROM p_photos",
    ] {
        sqlx::query(sql).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Replaces one document's rows in the projection tables (the same schema on phone and
/// server). The SQL is portable (numbered parameters, delete-then-insert) so a PostgreSQL
/// store can run the same statements.
pub async fn store(conn: &mut Conn, doc: &Document) -> Result<(), ProjectionError> {
    let rows = project(doc)?;
    store_rows(conn, doc.header(), rows).await
}

/// Replaces the projection rows of one document with `rows` (made by [`project`] beforehand,
/// so a writer holding a lock does only the SQL).
pub async fn store_rows(
    conn: &mut Conn,
    header: &gridsync_proto::DocHeader,
    rows: Projection,
) -> Result<(), ProjectionError> {
    let id = header.id.to_string();
    for sql in clear_statements(header.doc_type) {
        sqlx::query(*sql).bind(&id).execute(&mut *conn).await?;
    }
    insert_rows(conn, header, rows).await
}

/// Writes the projection rows of a document that has none yet (one just created): what
/// [`store_rows`] does without clearing first.
pub async fn insert_rows(
    conn: &mut Conn,
    header: &gridsync_proto::DocHeader,
    rows: Projection,
) -> Result<(), ProjectionError> {
    let id = header.id.to_string();
    match rows {
        Projection::Grid(g) => {
            sqlx::query(
                "INSERT INTO p_grids (doc_id, code, name, level, parent, roster_size, boundary) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(g.code)
            .bind(g.name)
            .bind(g.level)
            .bind(g.parent)
            .bind(g.roster_size)
            .bind(g.boundary)
            .execute(&mut *conn)
            .await?;
        }
        Projection::Household {
            household: h,
            residents,
            visits,
            photos,
        } => {
            sqlx::query(
                "INSERT INTO p_households (doc_id, grid, address, residence, flags, head_name, \
                 member_count, visit_count, last_visit_at, conflict_count, number, registered_address) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            )
            .bind(&id)
            .bind(h.grid)
            .bind(h.address)
            .bind(h.residence)
            .bind(h.flags)
            .bind(h.head_name)
            .bind(h.member_count)
            .bind(h.visit_count)
            .bind(h.last_visit_at)
            .bind(h.conflict_count)
            .bind(h.number)
            .bind(h.registered_address)
            .execute(&mut *conn)
            .await?;
            for chunk in residents.chunks(ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO p_residents (resident_id, household_id, grid, name, id_number, \
                     gender, birth_date, relation, phones, work, status, categories) VALUES {}",
                    value_rows(chunk.len(), 12)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for r in chunk {
                    q = q
                        .bind(r.resident_id.to_string())
                        .bind(&id)
                        .bind(&r.grid)
                        .bind(&r.name)
                        .bind(&r.id_number)
                        .bind(&r.gender)
                        .bind(&r.birth_date)
                        .bind(&r.relation)
                        .bind(&r.phones)
                        .bind(&r.work)
                        .bind(&r.status)
                        .bind(&r.categories);
                }
                q.execute(&mut *conn).await?;
            }
            for chunk in visits.chunks(ROWS_PER_INSERT) {
                let sql = format!(
                    "INSERT INTO p_visits (visit_id, household_id, worker, at, purpose, findings) \
                     VALUES {}",
                    value_rows(chunk.len(), 6)
                );
                let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
                for v in chunk {
                    q = q
                        .bind(v.visit_id.to_string())
                        .bind(&id)
                        .bind(&v.worker)
                        .bind(v.at)
                        .bind(&v.purpose)
                        .bind(&v.findings);
                }
                q.execute(&mut *conn).await?;
            }
            store_photos(conn, photos).await?;
        }
        Projection::Case {
            case: c,
            links,
            photos,
        } => {
            sqlx::query(
                "INSERT INTO p_cases (doc_id, grid, title, status, source, category, subcategory, \
                 urgency, reported_at, address, lead, co, dispatched_at, deadline, amber_at, \
                 handled_at, closed_at, self_closed, reworks, extensions, ever_suspended, \
                 satisfaction, supervisions, event_conflicts, conflict_count, lat, lon) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
                 $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27)",
            )
            .bind(&id)
            .bind(c.grid)
            .bind(c.title)
            .bind(c.status)
            .bind(c.source)
            .bind(c.category)
            .bind(c.subcategory)
            .bind(c.urgency)
            .bind(c.reported_at)
            .bind(c.address)
            .bind(c.lead)
            .bind(c.co)
            .bind(c.dispatched_at)
            .bind(c.deadline)
            .bind(c.amber_at)
            .bind(c.handled_at)
            .bind(c.closed_at)
            .bind(c.self_closed)
            .bind(c.reworks)
            .bind(c.extensions)
            .bind(c.ever_suspended)
            .bind(c.satisfaction)
            .bind(c.supervisions)
            .bind(c.event_conflicts)
            .bind(c.conflict_count)
            .bind(c.lat)
            .bind(c.lon)
            .execute(&mut *conn)
            .await?;
            for l in links {
                sqlx::query(
                    "INSERT INTO p_case_links (case_id, household_id, resident_id) \
                     VALUES ($1, $2, $3)",
                )
                .bind(&id)
                .bind(l.household_id.to_string())
                .bind(l.resident_id.map(|r| r.to_string()))
                .execute(&mut *conn)
                .await?;
            }
            store_photos(conn, photos).await?;
        }
        Projection::Inspection {
            inspection: i,
            photos,
        } => {
            sqlx::query(
                "INSERT INTO p_inspections (doc_id, grid, worker, started_at, ended_at, \
                 track_points, findings) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&id)
            .bind(i.grid)
            .bind(i.worker)
            .bind(i.started_at)
            .bind(i.ended_at)
            .bind(i.track_points)
            .bind(i.findings)
            .execute(&mut *conn)
            .await?;
            store_photos(conn, photos).await?;
        }
    }
    Ok(())
}

async fn store_photos(conn: &mut Conn, photos: Vec<PhotoRow>) -> Result<(), ProjectionError> {
    for p in photos {
        sqlx::query(
            "INSERT INTO p_photos (doc_id, photo_id, doc_type, grid, entry, stage, sha256, size, \
             thumb_sha256, thumb_size, mime, taken_at, lat, lon) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        )
        .bind(p.doc_id.to_string())
        .bind(p.photo_id.to_string())
        .bind(p.doc_type)
        .bind(p.grid)
        .bind(p.entry)
        .bind(p.stage)
        .bind(p.sha256)
        .bind(p.size)
        .bind(p.thumb_sha256)
        .bind(p.thumb_size)
        .bind(p.mime)
        .bind(p.taken_at)
        .bind(p.lat)
        .bind(p.lon)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
