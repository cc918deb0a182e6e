//! kill -9 during a write loop: every write that returned is on disk, the store opens cleanly.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use gridsync_core::Store;
use gridsync_core::records::Household;
use gridsync_proto::DocId;

use crate::helpers::grid;

/// Runs `gridsync-field seed` (one durable write per line it prints), kills it with SIGKILL
/// after `kill_after` lines, and returns the (household, optional visit) pairs it confirmed.
fn run_and_kill(
    store: &std::path::Path,
    args: &[&str],
    kill_after: usize,
) -> Vec<(DocId, Option<String>)> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(store)
        .arg("--json")
        .arg("seed")
        .arg("--grid")
        .arg(grid().as_str())
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gridsync-field");
    let stdout = child.stdout.take().expect("stdout");
    let mut confirmed = Vec::new();
    for line in BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        let id: DocId = v["household"]
            .as_str()
            .expect("id")
            .parse()
            .expect("doc id");
        confirmed.push((
            id,
            v.get("visit").and_then(|x| x.as_str()).map(str::to_owned),
        ));
        if confirmed.len() == kill_after {
            child.kill().expect("SIGKILL");
            break;
        }
    }
    let _ = child.wait();
    confirmed
}

#[tokio::test]
async fn sigkill_during_writes_loses_nothing_that_returned() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("phone.db");
    // Households one per transaction, then visits appended one write at a time (this crosses
    // compaction several times); kill at different points.
    let households = run_and_kill(
        &path,
        &["--households", "40", "--batch", "1", "--visits", "200"],
        37,
    );
    assert_eq!(households.len(), 37);
    // The killed process's hold on the store went with it: the next command opens it at once.
    let out = Command::new(env!("CARGO_BIN_EXE_gridsync-field"))
        .arg("--store")
        .arg(&path)
        .args(["--wait", "0", "household", "list"])
        .output()
        .expect("run gridsync-field");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&path).await.expect("store opens after SIGKILL");
    for (id, _) in &households {
        store
            .read::<Household>(*id)
            .await
            .expect("every confirmed household is there");
    }
    store.close().await;

    let path2 = dir.path().join("phone2.db");
    let confirmed = run_and_kill(
        &path2,
        &["--households", "3", "--batch", "1", "--visits", "500"],
        3 + 150,
    );
    let store = Store::open(&path2)
        .await
        .expect("store opens after SIGKILL");
    let mut expected_visits = 0;
    for (id, visit) in &confirmed {
        let h: Household = store.read(*id).await.expect("household");
        if let Some(v) = visit {
            expected_visits += 1;
            let vid = v.parse().expect("record id");
            assert!(h.visits.contains_key(&vid), "confirmed visit {v} lost");
        }
    }
    assert_eq!(expected_visits, 150);
    // The store keeps working: a further write and a reopen.
    let (first, _) = confirmed[0];
    store
        .update::<Household>(first, |h| h.address = "新地址".into())
        .await
        .expect("write after crash");
    assert_eq!(
        store.read::<Household>(first).await.expect("read").address,
        "新地址"
    );
}
