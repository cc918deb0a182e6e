//! The sans-I/O sync engine driven directly with hand-made server answers.

use gridsync_core::Store;
use gridsync_core::records::{Household, Residence};
use gridsync_core::sync::SyncSession;
use gridsync_proto::{DocPull, PROTOCOL_VERSION, SyncResponse};
use serde_bytes::ByteBuf;

use crate::helpers::grid;

#[tokio::test]
async fn a_pulled_change_missing_its_dependency_asks_for_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = Store::open(&dir.path().join("a.db")).await.expect("a");
    let b = Store::open(&dir.path().join("b.db")).await.expect("b");
    let id = a
        .create(grid(), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    b.merge_bytes(&a.load(id).await.expect("load").save())
        .await
        .expect("b has it");
    let base = a.load(id).await.expect("load").heads();
    a.update::<Household>(id, |h| h.address = "2 号".into())
        .await
        .expect("c1");
    a.update::<Household>(id, |h| h.address = "3 号".into())
        .await
        .expect("c2");
    let changes = a.load(id).await.expect("load").changes_since(&base);
    assert_eq!(changes.len(), 2);
    // The server's answer carries only the second change (its dependency is missing).
    let mut session = SyncSession::new(b.clone());
    let (_, outbox) = session.build_request().await.expect("request");
    let resp = SyncResponse {
        version: PROTOCOL_VERSION,
        acks: vec![],
        docs: vec![DocPull {
            doc: id,
            changes: vec![ByteBuf::from(changes[1].raw_bytes().to_vec())],
            heads: vec![changes[1].hash().0],
            sync: None,
        }],
        cursor: ByteBuf::from(vec![1]),
        more: false,
        reset: false,
    };
    session
        .apply_response(&outbox, resp)
        .await
        .expect("applied");
    let (need_sync, dirty): (i64, i64) =
        sqlx::query_as("SELECT need_sync, dirty FROM doc_sync WHERE doc_id = $1")
            .bind(id.to_string())
            .fetch_one(b.pool())
            .await
            .expect("row");
    assert_eq!(
        (need_sync, dirty),
        (1, 1),
        "the document falls back to the sync protocol"
    );
    let (req, _) = session.build_request().await.expect("next request");
    assert!(
        req.docs.iter().any(|d| d.doc == id && d.sync.is_some()),
        "the next request asks for the missing change"
    );
    assert_eq!(
        b.read::<Household>(id).await.expect("read").address,
        "1 号",
        "nothing half-applied"
    );
}
