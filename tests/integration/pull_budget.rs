//! A pull's memory is bounded by bytes, not by change count: with 5,000 changes of ~4 KiB in
//! one scope, each page stays under its byte budget and the storage reads no more change bytes
//! than it sends (plus one change).

use gridsync_core::records::{Household, Residence};
use gridsync_proto::{DeviceId, RecordId};
use gridsync_server::Storage;
use gridsync_server::auth::{Device, Role};
use gridsync_server::storage::{Cursor, PullBudget};
use rand::Rng;

use crate::harness::{GRID_A, Phone, TestServer, code, sample_visit};

/// ~4 KiB of findings that do not compress (1,400 random CJK characters, 3 bytes each).
fn findings(rng: &mut impl Rng) -> String {
    (0..1_400)
        .map(|_| char::from_u32(rng.random_range(0x4E00..0x9FA5)).expect("CJK"))
        .collect()
}

#[tokio::test]
async fn a_pull_over_5000_large_changes_reads_only_the_bytes_it_sends() {
    let server = TestServer::start().await;
    let seed = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let mut rng = rand::rng();
    let records: Vec<Household> = (0..5_000)
        .map(|i| {
            let mut h = Household::new(format!("{i} 号"), Residence::Permanent);
            let mut visit = sample_visit("周网格", i);
            visit.findings = findings(&mut rng);
            h.visits.insert(RecordId::new(), visit);
            h
        })
        .collect();
    seed.store
        .create_many(code(GRID_A), &records)
        .await
        .expect("import");
    seed.sync().await;
    assert_eq!(server.change_count().await, 5_000);
    let largest: i64 = sqlx::query_scalar("SELECT MAX(length(bytes)) FROM changes")
        .fetch_one(server.storage.pool())
        .await
        .expect("largest");
    let largest = usize::try_from(largest).expect("size");
    assert!(largest >= 4_096, "changes are large: {largest}");

    let reader = Device {
        id: DeviceId::new(),
        name: "吴网格".into(),
        role: Role::Worker,
        scopes: vec![code(GRID_A)],
        department: None,
    };
    let budget = PullBudget::default();
    let mut cursor = Cursor::default();
    let (mut pages, mut received) = (0, 0);
    loop {
        let pull = server
            .storage
            .pull(
                &reader,
                &gridsync_core::document::actor_for(reader.id),
                &cursor,
                budget,
            )
            .await
            .expect("pull");
        pages += 1;
        let changes: Vec<usize> = pull
            .docs
            .iter()
            .flat_map(|d| d.changes.iter().map(|c| c.len()))
            .collect();
        let sent: usize = changes.iter().sum();
        assert!(
            sent <= budget.max_bytes || changes.len() == 1,
            "page {pages} sent {sent} bytes in {} changes",
            changes.len()
        );
        assert!(
            pull.bytes_loaded <= sent + largest,
            "page {pages} read {} change bytes to send {sent}",
            pull.bytes_loaded
        );
        received += changes.len();
        cursor = pull.cursor;
        if !pull.more {
            break;
        }
        assert!(pages < 100, "the pull keeps moving");
    }
    assert_eq!(received, 5_000, "every change arrived once");
    assert!(pages >= 5, "~20 MiB in pages of 4 MiB: {pages}");

    // A change larger than the whole budget still moves the cursor.
    let tiny = PullBudget {
        max_bytes: 1,
        ..budget
    };
    let first = server
        .storage
        .pull(
            &reader,
            &gridsync_core::document::actor_for(reader.id),
            &Cursor::default(),
            tiny,
        )
        .await
        .expect("pull");
    let sent: Vec<usize> = first
        .docs
        .iter()
        .flat_map(|d| d.changes.iter().map(|c| c.len()))
        .collect();
    assert_eq!(sent.len(), 1, "one change, over budget");
    assert!(first.more);
    assert!(first.bytes_loaded <= sent[0] + largest);
    let second = server
        .storage
        .pull(
            &reader,
            &gridsync_core::document::actor_for(reader.id),
            &first.cursor,
            tiny,
        )
        .await
        .expect("pull");
    assert_ne!(
        second.docs[0].doc, first.docs[0].doc,
        "and the next page moves on"
    );
}
