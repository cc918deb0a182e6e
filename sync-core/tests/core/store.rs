//! The phone's local store: durability, projections, search, compaction, merge.

use gridsync_core::records::{Case, Household, Party, Relation, Resident, Visit};
use gridsync_core::store::{COMPACT_AFTER, Store, StoreError};
use gridsync_core::{DocError, sample};

use crate::helpers::{case, grid, household, rid};

async fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(&dir.path().join("phone.db"))
        .await
        .expect("open store")
}

#[tokio::test]
async fn writes_survive_reopen_with_projections() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let device = store.device();
    let id = store.create(grid(), &household()).await.expect("create");
    store
        .update::<Household>(id, |h| {
            h.members
                .insert(rid(2), Resident::new("李秀英", Relation::Spouse));
        })
        .await
        .expect("add member");
    store.close().await;

    let store = open(&dir).await;
    assert_eq!(store.device(), device, "device id is kept");
    let h: Household = store.read(id).await.expect("read");
    assert_eq!(h.members.len(), 2);
    let rows = store.households(Some(&grid())).await.expect("list");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].head_name.as_deref(), Some("王建国"));
    assert_eq!(rows[0].member_count, 2);
    let town = grid().town();
    assert_eq!(store.households(Some(&town)).await.expect("town").len(), 1);
    let other = gridsync_proto::GridCode::parse("33010200101001009").expect("grid");
    assert!(
        store
            .households(Some(&other))
            .await
            .expect("other")
            .is_empty()
    );
}

#[tokio::test]
async fn search_by_name_shows_family_work_and_past_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let hid = store.create(grid(), &household()).await.expect("create");
    store
        .update::<Household>(hid, |h| {
            let mut kid = Resident::new("王小明", Relation::Child);
            kid.work = "城南小学 在读".into();
            h.members.insert(rid(2), kid);
        })
        .await
        .expect("add");
    let mut c = case();
    c.parties.insert(
        rid(50),
        Party {
            name: "王建国".into(),
            phone: String::new(),
            household: Some(hid),
            resident: Some(rid(1)),
            role: "reporter".into(),
        },
    );
    let cid = store.create(grid(), &c).await.expect("case");

    let hits = store.search_residents("王").await.expect("search");
    assert_eq!(hits.len(), 2);
    let hits = store.search_residents("小明").await.expect("search");
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].resident.work, "城南小学 在读");
    assert_eq!(hits[0].household.address, "城南社区 3 幢 2 单元 501 室");
    assert_eq!(hits[0].household.residence, "permanent");
    let family: Vec<&str> = hits[0].family.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(family, ["王建国", "王小明"], "the family, head first");
    assert_eq!(
        hits[0].past_requests.len(),
        1,
        "the household's past requests"
    );
    assert_eq!(hits[0].past_requests[0].doc_id, cid);
    let family = store.residents_of(hid).await.expect("family");
    assert_eq!(family.len(), 2);
    assert_eq!(family[0].relation, "head", "head first");
    let past = store.cases_of_household(hid).await.expect("past requests");
    assert_eq!(past.len(), 1);
    assert_eq!(past[0].doc_id, cid);
    let by_id = store
        .search_residents("11010519491231002X")
        .await
        .expect("by id");
    assert_eq!(by_id.len(), 1, "ID number search");
    assert!(
        store
            .search_residents("  ")
            .await
            .expect("blank")
            .is_empty()
    );
}

#[tokio::test]
async fn invalid_update_changes_neither_document_nor_projection() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let id = store.create(grid(), &household()).await.expect("create");
    let before = store.households(None).await.expect("list");
    let err = store
        .update::<Household>(id, |h| h.address = String::new())
        .await
        .expect_err("blank address");
    assert!(
        matches!(err, StoreError::Doc(DocError::Invalid { .. })),
        "{err:?}"
    );
    assert_eq!(store.households(None).await.expect("list"), before);
    assert_eq!(
        store.read::<Household>(id).await.expect("read"),
        household()
    );
}

#[tokio::test]
async fn many_writes_compact_and_still_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let id = store.create(grid(), &household()).await.expect("create");
    let n = usize::try_from(COMPACT_AFTER).expect("small") * 2 + 5;
    for i in 0..n {
        store
            .update::<Household>(id, |h| {
                h.visits.insert(
                    rid(100 + i as u128),
                    Visit {
                        worker: "周网格".into(),
                        at: i as i64,
                        gps: None,
                        purpose: "日常走访".into(),
                        findings: format!("第 {i} 次"),
                        photos: Default::default(),
                        cases: vec![],
                        author: None,
                    },
                );
            })
            .await
            .expect("visit");
    }
    let chunks: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM doc_chunks")
        .fetch_one(store.pool())
        .await
        .expect("count");
    assert!(
        chunks <= COMPACT_AFTER,
        "compaction keeps the chunk list short: {chunks}"
    );
    store.close().await;
    let store = open(&dir).await;
    assert_eq!(
        store
            .read::<Household>(id)
            .await
            .expect("read")
            .visits
            .len(),
        n
    );
    assert_eq!(store.visits_of(id).await.expect("visits").len(), n);
}

#[tokio::test]
async fn projections_rebuild_identically() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir).await;
    let households: Vec<Household> = (0..20).map(|i| sample::household(i, 3, 4)).collect();
    store
        .create_many(grid(), &households)
        .await
        .expect("import");
    store.create(grid(), &case()).await.expect("case");
    let before = (
        store.households(None).await.expect("h"),
        store.search_residents("王").await.expect("s"),
        store.cases(None).await.expect("c"),
    );
    sqlx::query("DELETE FROM p_residents")
        .execute(store.pool())
        .await
        .expect("wipe");
    assert_eq!(store.rebuild_projections().await.expect("rebuild"), 21);
    let after = (
        store.households(None).await.expect("h"),
        store.search_residents("王").await.expect("s"),
        store.cases(None).await.expect("c"),
    );
    assert_eq!(before, after);
}

#[tokio::test]
async fn two_phones_exchange_documents_and_agree() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open(&dir.path().join("a.db")).await.expect("a");
    let b = Store::open(&dir.path().join("b.db")).await.expect("b");
    assert_ne!(a.device(), b.device());
    let id = a.create(grid(), &case()).await.expect("case");
    let bytes = a.load(id).await.expect("load").save();
    b.merge_bytes(&bytes).await.expect("b receives");
    a.update::<Case>(id, |c| c.title = "楼道灯坏了".into())
        .await
        .expect("a edits");
    // Only the reporter and the town centre edit a case's report: b is the dispatcher.
    b.set_meta("role", "dispatcher").await.expect("role");
    b.update::<Case>(id, |c| c.urgency = gridsync_core::records::Urgency::Urgent)
        .await
        .expect("b edits");
    let from_a = a.load(id).await.expect("a").save();
    let from_b = b.load(id).await.expect("b").save();
    a.merge_bytes(&from_b).await.expect("a merges");
    b.merge_bytes(&from_a).await.expect("b merges");
    let ca: Case = a.read(id).await.expect("read a");
    let cb: Case = b.read(id).await.expect("read b");
    assert_eq!(ca, cb);
    assert_eq!(ca.title, "楼道灯坏了");
    assert_eq!(ca.urgency, gridsync_core::records::Urgency::Urgent);
    assert_eq!(
        a.cases(None).await.expect("a"),
        b.cases(None).await.expect("b")
    );
}
