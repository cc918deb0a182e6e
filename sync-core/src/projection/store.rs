//! Writing projection rows: one source compiled once per database (the including module
//! names it `Db`), so the phone's SQLite store and the server's backends run the same statements.

use super::super::{
    Document, PhotoRow, Projection, ProjectionError, clear_statements, project, value_rows,
};
use super::Db;

/// A connection of the including backend.
type Conn = <Db as sqlx::Database>::Connection;

/// Rows per multi-row `INSERT` (27 parameters each at most, 5,400 a statement: below both
/// engines' limits).
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
    insert_many(conn, vec![(header.id.to_string(), rows)]).await
}

/// Appends rows to a table in multi-row `INSERT`s of at most [`ROWS_PER_INSERT`] rows:
/// `$head` names the table and columns, `$k` the parameters per row, and `$bind` binds one
/// item `$it` to the query `$q`.
macro_rules! insert_all {
    ($conn:expr, $head:expr, $k:expr, $items:expr, |$q:ident, $it:ident| $bind:expr) => {
        for chunk in $items.chunks(ROWS_PER_INSERT) {
            let sql = format!("{} VALUES {}", $head, value_rows(chunk.len(), $k));
            let mut $q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for $it in chunk {
                $q = $bind;
            }
            $q.execute(&mut *$conn).await?;
        }
    };
}

/// Writes the projection rows of documents that have none yet (ids with their rows), a few
/// multi-row statements per table for all of them: what a merge of many new documents
/// writes at once (one statement per row was most of its time).
pub async fn insert_many(
    conn: &mut Conn,
    docs: Vec<(String, Projection)>,
) -> Result<(), ProjectionError> {
    let (mut grids, mut households, mut residents, mut visits) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cases, mut links, mut inspections, mut photos) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (id, rows) in docs {
        match rows {
            Projection::Grid(g) => grids.push((id, g)),
            Projection::Household {
                household,
                residents: r,
                visits: v,
                photos: p,
            } => {
                residents.extend(r.into_iter().map(|r| (id.clone(), r)));
                visits.extend(v.into_iter().map(|v| (id.clone(), v)));
                photos.extend(p);
                households.push((id, household));
            }
            Projection::Case {
                case,
                links: l,
                photos: p,
            } => {
                links.extend(l.into_iter().map(|l| (id.clone(), l)));
                photos.extend(p);
                cases.push((id, case));
            }
            Projection::Inspection {
                inspection,
                photos: p,
            } => {
                photos.extend(p);
                inspections.push((id, inspection));
            }
        }
    }
    insert_all!(
        conn,
        "INSERT INTO p_grids (doc_id, code, name, level, parent, roster_size, boundary)",
        7,
        grids,
        |q, it| q
            .bind(&it.0)
            .bind(&it.1.code)
            .bind(&it.1.name)
            .bind(&it.1.level)
            .bind(&it.1.parent)
            .bind(it.1.roster_size)
            .bind(&it.1.boundary)
    );
    insert_all!(
        conn,
        "INSERT INTO p_households (doc_id, grid, address, residence, flags, head_name, \
         member_count, visit_count, last_visit_at, conflict_count, number, registered_address)",
        12,
        households,
        |q, it| q
            .bind(&it.0)
            .bind(&it.1.grid)
            .bind(&it.1.address)
            .bind(&it.1.residence)
            .bind(&it.1.flags)
            .bind(&it.1.head_name)
            .bind(it.1.member_count)
            .bind(it.1.visit_count)
            .bind(it.1.last_visit_at)
            .bind(it.1.conflict_count)
            .bind(&it.1.number)
            .bind(&it.1.registered_address)
    );
    insert_all!(
        conn,
        "INSERT INTO p_residents (resident_id, household_id, grid, name, id_number, \
         gender, birth_date, relation, phones, work, status, categories)",
        12,
        residents,
        |q, it| q
            .bind(it.1.resident_id.to_string())
            .bind(&it.0)
            .bind(&it.1.grid)
            .bind(&it.1.name)
            .bind(&it.1.id_number)
            .bind(&it.1.gender)
            .bind(&it.1.birth_date)
            .bind(&it.1.relation)
            .bind(&it.1.phones)
            .bind(&it.1.work)
            .bind(&it.1.status)
            .bind(&it.1.categories)
    );
    insert_all!(
        conn,
        "INSERT INTO p_visits (visit_id, household_id, worker, at, purpose, findings)",
        6,
        visits,
        |q, it| q
            .bind(it.1.visit_id.to_string())
            .bind(&it.0)
            .bind(&it.1.worker)
            .bind(it.1.at)
            .bind(&it.1.purpose)
            .bind(&it.1.findings)
    );
    insert_all!(
        conn,
        "INSERT INTO p_cases (doc_id, grid, title, status, source, category, subcategory, \
         urgency, reported_at, address, lead, co, dispatched_at, deadline, amber_at, \
         handled_at, closed_at, self_closed, reworks, extensions, ever_suspended, \
         satisfaction, supervisions, event_conflicts, conflict_count, lat, lon)",
        27,
        cases,
        |q, it| q
            .bind(&it.0)
            .bind(&it.1.grid)
            .bind(&it.1.title)
            .bind(&it.1.status)
            .bind(&it.1.source)
            .bind(&it.1.category)
            .bind(&it.1.subcategory)
            .bind(&it.1.urgency)
            .bind(it.1.reported_at)
            .bind(&it.1.address)
            .bind(&it.1.lead)
            .bind(&it.1.co)
            .bind(it.1.dispatched_at)
            .bind(it.1.deadline)
            .bind(it.1.amber_at)
            .bind(it.1.handled_at)
            .bind(it.1.closed_at)
            .bind(it.1.self_closed)
            .bind(it.1.reworks)
            .bind(it.1.extensions)
            .bind(it.1.ever_suspended)
            .bind(&it.1.satisfaction)
            .bind(it.1.supervisions)
            .bind(it.1.event_conflicts)
            .bind(it.1.conflict_count)
            .bind(it.1.lat)
            .bind(it.1.lon)
    );
    insert_all!(
        conn,
        "INSERT INTO p_case_links (case_id, household_id, resident_id)",
        3,
        links,
        |q, it| q
            .bind(&it.0)
            .bind(it.1.household_id.to_string())
            .bind(it.1.resident_id.map(|r| r.to_string()))
    );
    insert_all!(
        conn,
        "INSERT INTO p_inspections (doc_id, grid, worker, started_at, ended_at, \
         track_points, findings)",
        7,
        inspections,
        |q, it| q
            .bind(&it.0)
            .bind(&it.1.grid)
            .bind(&it.1.worker)
            .bind(it.1.started_at)
            .bind(it.1.ended_at)
            .bind(it.1.track_points)
            .bind(it.1.findings)
    );
    store_photos(conn, photos).await
}

async fn store_photos(conn: &mut Conn, photos: Vec<PhotoRow>) -> Result<(), ProjectionError> {
    insert_all!(
        conn,
        "INSERT INTO p_photos (doc_id, photo_id, doc_type, grid, entry, stage, sha256, size, \
         thumb_sha256, thumb_size, mime, taken_at, lat, lon)",
        14,
        photos,
        |q, p| q
            .bind(p.doc_id.to_string())
            .bind(p.photo_id.to_string())
            .bind(&p.doc_type)
            .bind(&p.grid)
            .bind(&p.entry)
            .bind(&p.stage)
            .bind(&p.sha256)
            .bind(p.size)
            .bind(&p.thumb_sha256)
            .bind(p.thumb_size)
            .bind(&p.mime)
            .bind(p.taken_at)
            .bind(p.lat)
            .bind(p.lon)
    );
    Ok(())
}
