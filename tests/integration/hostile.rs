//! Bad input and bad actors: typed 4xx errors and nothing changed; scopes enforced both ways;
//! spoofed actors refused; revoked devices shut out.

use gridsync_core::records::{Household, Residence};
use gridsync_core::sync::SyncSession;
use gridsync_proto::{AckStatus, DocPush, ErrorBody, PROTOCOL_VERSION, SyncResponse, limits};
use gridsync_server::Storage;
use gridsync_server::auth::Role;
use serde_bytes::ByteBuf;

use crate::harness::{GRID_A, GRID_B, Phone, TOWN, TestServer, assert_converged, code};

struct Raw {
    http: reqwest::Client,
    url: String,
}

impl Raw {
    fn new(server: &TestServer) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            http: reqwest::Client::new(),
            url: format!("{}/v1/sync", server.url),
        }
    }

    async fn post(&self, token: Option<&str>, body: Vec<u8>) -> (u16, Vec<u8>) {
        self.post_as(token, Some(gridsync_proto::CONTENT_TYPE), body)
            .await
    }

    async fn post_as(
        &self,
        token: Option<&str>,
        content_type: Option<&str>,
        body: Vec<u8>,
    ) -> (u16, Vec<u8>) {
        let mut req = self.http.post(&self.url).body(body);
        if let Some(t) = content_type {
            req = req.header("content-type", t);
        }
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.expect("send");
        let status = resp.status().as_u16();
        (status, resp.bytes().await.expect("body").to_vec())
    }

    async fn error(&self, token: Option<&str>, body: Vec<u8>) -> (u16, String, String) {
        let (status, bytes) = self.post(token, body).await;
        let e: ErrorBody = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            panic!(
                "status {status}: not a JSON error: {}",
                String::from_utf8_lossy(&bytes)
            )
        });
        (status, e.error.code, e.error.message)
    }
}

async fn token(p: &Phone) -> String {
    p.store
        .meta("device_token")
        .await
        .expect("meta")
        .expect("enrolled")
}

#[tokio::test]
async fn malformed_truncated_oversized_and_unauthenticated_requests_get_typed_errors() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    a.store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    let t = token(&a).await;
    let raw = Raw::new(&server);
    let mut session = SyncSession::new(a.store.clone());
    let (req, _) = session.build_request().await.expect("request");
    let good = req.encode();
    let before = server.change_count().await;

    let (s, code_, msg) = raw.error(Some(&t), good[..good.len() / 2].to_vec()).await;
    assert_eq!((s, code_.as_str()), (400, "malformed_request"), "{msg}");
    let (s, code_, _) = raw.error(Some(&t), b"hello, server".to_vec()).await;
    assert_eq!(
        (s, code_.as_str()),
        (400, "unsupported_version"),
        "garbage reads as a version"
    );
    let (s, code_, _) = raw.error(Some(&t), vec![]).await;
    assert_eq!((s, code_.as_str()), (400, "malformed_request"));
    let mut next = req.clone();
    next.version = PROTOCOL_VERSION + 1;
    let (s, code_, msg) = raw.error(Some(&t), next.encode()).await;
    assert_eq!((s, code_.as_str()), (400, "unsupported_version"));
    assert!(
        msg.contains(&format!("version {}", PROTOCOL_VERSION + 1)),
        "{msg}"
    );
    let (s, code_, _) = raw
        .error(Some(&t), vec![0u8; limits::MAX_MESSAGE_BYTES + 2048])
        .await;
    assert_eq!((s, code_.as_str()), (413, "too_large"));
    let mut many = req.clone();
    many.docs = (0..=limits::MAX_DOCS_PER_BATCH)
        .map(|_| DocPush {
            doc: gridsync_proto::DocId::new(),
            header: None,
            heads: vec![],
            changes: vec![],
            sync: None,
        })
        .collect();
    let (s, code_, _) = raw.error(Some(&t), many.encode()).await;
    assert_eq!((s, code_.as_str()), (413, "over_limit"));
    let mut bad_cursor = req.clone();
    bad_cursor.cursor = ByteBuf::from(vec![0xff; 10]);
    let (s, code_, _) = raw.error(Some(&t), bad_cursor.encode()).await;
    assert_eq!((s, code_.as_str()), (400, "bad_cursor"));
    let (s, code_, _) = raw.error(None, good.clone()).await;
    assert_eq!((s, code_.as_str()), (401, "unauthorized"));
    let (s, code_, _) = raw.error(Some("not-a-token"), good.clone()).await;
    assert_eq!((s, code_.as_str()), (401, "unauthorized"));
    assert_eq!(
        server.change_count().await,
        before,
        "no bad request changed anything"
    );

    // A change that is not an Automerge change is refused for that document only.
    let mut junk = req.clone();
    junk.docs[0].changes = vec![ByteBuf::from(vec![1, 2, 3])];
    let (s, bytes) = raw.post(Some(&t), junk.encode()).await;
    assert_eq!(s, 200);
    let resp = SyncResponse::decode(&bytes).expect("response");
    assert!(
        matches!(&resp.acks[0].status, AckStatus::Rejected { code, .. } if code == "bad_change")
    );
    assert_eq!(server.change_count().await, before);
}

#[tokio::test]
async fn replayed_requests_are_harmless_and_other_devices_cannot_replay_them() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    a.store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    let raw = Raw::new(&server);
    let (req, _) = SyncSession::new(a.store.clone())
        .build_request()
        .await
        .expect("request");
    let ta = token(&a).await;
    let (s1, _) = raw.post(Some(&ta), req.encode()).await;
    let after_first = server.change_count().await;
    // The same request again (a retry after a lost response, or a replay): stored once.
    let (s2, bytes) = raw.post(Some(&ta), req.encode()).await;
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(
        server.change_count().await,
        after_first,
        "a replay stores nothing new"
    );
    let resp = SyncResponse::decode(&bytes).expect("response");
    assert!(matches!(resp.acks[0].status, AckStatus::Stored { .. }));
    // Another device replaying it under its own token is refused outright.
    let tb = token(&b).await;
    let (s, code_, _) = raw.error(Some(&tb), req.encode()).await;
    assert_eq!((s, code_.as_str()), (403, "device_mismatch"));
    // With the device field rewritten to its own id, B only re-sends changes the server
    // already has from their author: nothing is accepted in B's name.
    let mut forged = req.clone();
    forged.device = b.store.device();
    forged.actor = serde_bytes::ByteBuf::from(
        gridsync_core::document::actor_for(b.store.device())
            .to_bytes()
            .to_vec(),
    );
    forged.docs[0].header = None;
    let (s, bytes) = raw.post(Some(&tb), forged.encode()).await;
    assert_eq!(s, 200);
    let resp = SyncResponse::decode(&bytes).expect("response");
    assert!(
        matches!(&resp.acks[0].status, AckStatus::Stored { .. }),
        "re-sending changes the server already has from their author is a no-op"
    );
    assert_eq!(server.change_count().await, after_first);
}

#[tokio::test]
async fn spoofed_actors_are_refused() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    // A writes offline; B gets hold of A's unsynced changes and pushes them as its own.
    let id = a
        .store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    let (mut req, _) = SyncSession::new(a.store.clone())
        .build_request()
        .await
        .expect("request");
    req.device = b.store.device();
    let raw = Raw::new(&server);
    // Claiming to be a replica writing as A's actor is refused outright...
    let (s, c, _) = raw.error(Some(&token(&b).await), req.encode()).await;
    assert_eq!((s, c.as_str()), (403, "actor_mismatch"));
    // ...and so is each change written by A, pushed as B's own replica.
    req.actor = serde_bytes::ByteBuf::from(
        gridsync_core::document::actor_for(b.store.device())
            .to_bytes()
            .to_vec(),
    );
    let (s, bytes) = raw.post(Some(&token(&b).await), req.encode()).await;
    assert_eq!(s, 200);
    let resp = SyncResponse::decode(&bytes).expect("response");
    let AckStatus::Rejected { code: c, message } = &resp.acks[0].status else {
        panic!("expected a rejection, got {:?}", resp.acks[0].status);
    };
    assert_eq!(c, "actor_mismatch", "{message}");
    assert_eq!(server.change_count().await, 0);
    assert!(server.storage.load(id).await.expect("load").is_none());
    // A's own sync still works afterwards.
    a.sync().await;
    assert!(server.storage.load(id).await.expect("load").is_some());
}

#[tokio::test]
async fn scopes_hold_in_both_directions() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "A 格", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "B 格", Role::Worker, &[GRID_B]).await;
    let d = Phone::enroll(&server, "调度", Role::Dispatcher, &[TOWN]).await;
    let in_a = a
        .store
        .create(
            code(GRID_A),
            &Household::new("A 1 号", Residence::Permanent),
        )
        .await
        .expect("a");
    let in_b = b
        .store
        .create(
            code(GRID_B),
            &Household::new("B 1 号", Residence::Permanent),
        )
        .await
        .expect("b");
    // A writes a record for B's grid: refused, kept on A's phone with the reason.
    let stray = a
        .store
        .create(code(GRID_B), &Household::new("越界", Residence::Permanent))
        .await
        .expect("stray");
    let report = a.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "out_of_scope");
    assert!(
        a.store.load(stray).await.is_ok(),
        "nothing recorded is lost on the phone"
    );
    assert_eq!(a.store.set_aside().await.expect("set aside").len(), 1);
    b.sync().await;
    d.sync().await;
    a.sync().await;
    // Reads: each worker sees only its grid; the dispatcher sees the town.
    assert!(
        a.store.load(in_b).await.is_err(),
        "A must not receive B's grid"
    );
    assert!(
        b.store.load(in_a).await.is_err(),
        "B must not receive A's grid"
    );
    assert!(d.store.load(in_a).await.is_ok() && d.store.load(in_b).await.is_ok());
    assert!(server.storage.load(stray).await.expect("load").is_none());
    // Writes: B cannot change A's household even if it somehow holds it.
    let bytes = d.store.load(in_a).await.expect("d has it").save();
    b.store.merge_bytes(&bytes).await.expect("smuggled copy");
    b.store
        .update::<Household>(in_a, |h| h.address = "B 改的".into())
        .await
        .expect("local edit");
    let report = b.sync().await;
    assert_eq!(report.rejected.len(), 1);
    assert_eq!(report.rejected[0].1, "out_of_scope");
    let (json, _) = server.record(in_a).await.expect("server copy");
    assert_eq!(json["address"], "A 1 号");
}

#[tokio::test]
async fn a_revoked_device_is_shut_out_at_once() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "丢失的手机", Role::Worker, &[GRID_A]).await;
    let b = Phone::enroll(&server, "吴网格", Role::Worker, &[GRID_A]).await;
    a.sync().await;
    assert!(
        server
            .storage
            .revoke(a.store.device())
            .await
            .expect("revoke")
    );
    a.store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("create");
    let err = a.client.sync(&a.store, 5).await.expect_err("revoked");
    assert!(err.to_string().contains("device_revoked"), "{err}");
    assert_eq!(server.change_count().await, 0);
    b.sync().await;
    assert_converged(&server, &[&b]).await;
}

#[tokio::test]
async fn grid_records_and_what_the_workflow_reads_are_guarded() {
    use gridsync_core::records::Grid;
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let d = Phone::enroll(&server, "调度", Role::Dispatcher, &[TOWN]).await;
    let grid = |c: &str| Grid {
        code: c.into(),
        name: "网格".into(),
        roster: Default::default(),
        boundary: vec![[30.0, 120.0], [30.0, 121.0], [31.0, 121.0], [31.0, 120.0]],
    };
    // A worker may not draw grids (they steer where intake cases go).
    a.store
        .create(code(GRID_A), &grid(GRID_A))
        .await
        .expect("local");
    let report = a.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "role_mismatch");
    // A dispatcher's grid record must live in its own scope.
    d.store
        .create(code(GRID_A), &grid(GRID_B))
        .await
        .expect("local");
    let report = d.sync().await;
    assert_eq!(report.rejected.len(), 1, "{report:?}");
    assert_eq!(report.rejected[0].1, "header_mismatch");

    assert_eq!(
        a.store.unsynced_count().await.expect("count"),
        1,
        "refused work stays on the phone, still offered"
    );
}

#[tokio::test]
async fn wrong_content_types_get_415_and_a_cut_body_gets_400() {
    let server = TestServer::start().await;
    let a = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let t = token(&a).await;
    let raw = Raw::new(&server);
    let (req, _) = SyncSession::new(a.store.clone())
        .build_request()
        .await
        .expect("request");
    for ct in [None, Some("application/json"), Some("text/plain")] {
        let (s, bytes) = raw.post_as(Some(&t), ct, req.encode()).await;
        let e: ErrorBody = serde_json::from_slice(&bytes).expect("json error");
        assert_eq!(
            (s, e.error.code.as_str()),
            (415, "unsupported_media_type"),
            "{ct:?}"
        );
    }
    let http = reqwest::Client::new();
    let key = server.intake_key("12345", &[TOWN]).await;
    for path in ["/v1/enroll", "/v1/intake/cases"] {
        let resp = http
            .post(format!("{}{path}", server.url))
            .bearer_auth(&key)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status().as_u16(), 415, "{path}");
    }
    // A body cut off mid-way: Content-Length promises more than arrives, then the link goes.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = server.url.trim_start_matches("http://").to_owned();
    let mut conn = tokio::net::TcpStream::connect(&addr)
        .await
        .expect("connect");
    let body = req.encode();
    let head = format!(
        "POST /v1/sync HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {t}\r\n\
         Content-Type: {}\r\nContent-Length: {}\r\n\r\n",
        gridsync_proto::CONTENT_TYPE,
        body.len() + 1000
    );
    conn.write_all(head.as_bytes()).await.expect("head");
    conn.write_all(&body).await.expect("part of the body");
    conn.shutdown().await.expect("cut");
    let mut answer = String::new();
    let _ = conn.read_to_string(&mut answer).await;
    assert!(
        answer.starts_with("HTTP/1.1 400"),
        "a cut body is a bad request, not too large: {answer:?}"
    );
    assert_eq!(server.change_count().await, 0, "nothing of it was stored");
}

#[tokio::test]
async fn slow_or_silent_connections_are_closed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = gridsync_server::SqliteStorage::open(dir.path())
        .await
        .expect("storage");
    let router = gridsync_server::app(gridsync_server::AppState::new(
        storage,
        gridsync_server::Config::default(),
    ));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(gridsync_server::serve(
        listener,
        router,
        std::time::Duration::from_millis(300),
        std::future::pending(),
    ));
    // Reads until the server closes the connection; the deadline only keeps a broken server
    // from hanging the test.
    async fn closed_by_server(conn: &mut tokio::net::TcpStream) -> String {
        let mut seen = Vec::new();
        let read = tokio::time::timeout(std::time::Duration::from_secs(20), async {
            let mut buf = [0u8; 1024];
            loop {
                match conn.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                }
            }
        })
        .await;
        assert!(read.is_ok(), "the server kept the connection open");
        String::from_utf8_lossy(&seen).into_owned()
    }
    // Headers that never finish (a slowloris).
    let mut slow = tokio::net::TcpStream::connect(addr).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("part of the headers");
    let answer = closed_by_server(&mut slow).await;
    assert!(!answer.contains("200 OK"), "{answer}");
    // A kept-alive connection that goes quiet after its request.
    let mut idle = tokio::net::TcpStream::connect(addr).await.expect("connect");
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let answer = closed_by_server(&mut idle).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "served first: {answer}");
}
