//! Enrollment over a device's life: a revoked phone enrolls again with a new code and its
//! offline work arrives under its own id; an active one cannot be taken over; bindings that
//! would open more than they should (a clerk without a department, or below a town) are
//! refused when a code is made and when it is redeemed.

use gridsync_core::client::ClientError;
use gridsync_core::records::{Household, Residence};
use gridsync_proto::RecordId;
use gridsync_server::Storage;
use gridsync_server::auth::{Role, new_enrollment_code, normalize_code, secret_hash};
use gridsync_server::storage::EnrollError;

use crate::harness::{GRID_A, Phone, TOWN, TestServer, code, sample_visit};

fn refusal(e: ClientError) -> (u16, String) {
    match e {
        ClientError::Server { status, code, .. } => (status, code),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_revoked_phone_enrolls_again_and_its_offline_visit_arrives_under_its_id() {
    let server = TestServer::start().await;
    let phone = Phone::enroll(&server, "周网格", Role::Worker, &[GRID_A]).await;
    let hid = phone
        .store
        .create(code(GRID_A), &Household::new("1 号", Residence::Permanent))
        .await
        .expect("household");
    phone.sync().await;
    // Offline, the worker records a visit; meanwhile the operator revokes the phone (it was
    // reported lost, then found).
    let visit = RecordId::new();
    phone
        .store
        .update::<Household>(hid, |h| {
            h.visits.insert(visit, sample_visit("周网格", 1));
        })
        .await
        .expect("visit");
    let device = phone.store.device();
    assert!(server.storage.revoke(device).await.expect("revoke"));
    let e = phone
        .client
        .sync(&phone.store, 5)
        .await
        .expect_err("a revoked phone cannot sync");
    assert_eq!(refusal(e), (403, "device_revoked".to_owned()));
    assert!(
        phone.store.unsynced_count().await.expect("count") > 0,
        "the visit waits on the phone"
    );

    // Any fresh code cannot claim the revoked id (it would write under the phone's name)...
    let plain = server.enrollment("冒领", Role::Worker, &[GRID_A]).await;
    let e = phone
        .client
        .enroll(&phone.store, &plain)
        .await
        .expect_err("a plain code does not re-enroll a revoked device");
    assert_eq!(refusal(e), (409, "code_for_device_required".to_owned()));
    // ...nor a code made for another device.
    let other = server
        .enrollment_for(
            "别的手机",
            Role::Worker,
            &[GRID_A],
            Some(gridsync_proto::DeviceId::new()),
        )
        .await;
    let e = phone
        .client
        .enroll(&phone.store, &other)
        .await
        .expect_err("another device's code");
    assert_eq!(refusal(e), (400, "invalid_code".to_owned()));
    // A code made for this device re-enrolls the same store; its binding (name) is the new
    // code's.
    let code2 = server
        .enrollment_for("周网格 (新卡)", Role::Worker, &[GRID_A], Some(device))
        .await;
    let resp = phone
        .client
        .enroll(&phone.store, &code2)
        .await
        .expect("re-enroll a revoked device");
    assert_eq!(resp.device, device, "same device id");
    assert_eq!(resp.name, "周网格 (新卡)");
    let report = phone.sync().await;
    assert!(report.rejected.is_empty(), "{report:?}");
    assert_eq!(phone.store.unsynced_count().await.expect("count"), 0);
    let doc = server
        .storage
        .load(hid)
        .await
        .expect("load")
        .expect("on the server");
    let h: Household = doc.read().expect("household");
    assert!(h.visits.contains_key(&visit), "the offline visit arrived");
    let authors: Vec<String> =
        sqlx::query_scalar("SELECT device FROM changes WHERE doc_id = $1 ORDER BY seq")
            .bind(hid.to_string())
            .fetch_all(server.storage.pool())
            .await
            .expect("authors");
    assert_eq!(authors.len(), 2, "the household and the visit");
    assert!(
        authors.iter().all(|a| *a == device.to_string()),
        "attributed to the same device: {authors:?}"
    );
    let listed = server.storage.devices().await.expect("devices");
    let me = listed
        .iter()
        .find(|d| d.device == device.to_string())
        .expect("listed");
    assert_eq!(me.revoked_at, None);
    assert!(me.reenrolled_at.is_some_and(|t| t >= me.enrolled_at));
    assert_eq!(listed.len(), 1, "re-enrolled in place, not a second row");

    // Enrolling again on an enrolled store (what `gridsync-field enroll` does a second time)
    // is refused while the device is active, and the phone keeps working.
    let code3 = server.enrollment("抢占", Role::Leader, &[TOWN]).await;
    let e = phone
        .client
        .enroll(&phone.store, &code3)
        .await
        .expect_err("an active device cannot be re-bound");
    assert_eq!(refusal(e), (409, "already_enrolled".to_owned()));
    assert_eq!(
        phone.sync().await.round_trips,
        1,
        "the old token still works"
    );
}

#[tokio::test]
async fn a_clerk_without_a_department_or_below_a_town_is_never_enrolled() {
    let server = TestServer::start().await;
    let town = [code(TOWN)];
    let district = [code("33010200101")];
    for (scopes, dept) in [(&town, None), (&town, Some(" ")), (&district, Some("D01"))] {
        let refused = server
            .storage
            .create_enrollment(
                &secret_hash(&normalize_code(&new_enrollment_code())),
                "办事员",
                Role::Department,
                scopes,
                dept,
                None,
                i64::MAX,
            )
            .await;
        assert!(
            matches!(refused, Err(EnrollError::Invalid(_))),
            "{scopes:?} {dept:?}: {refused:?}"
        );
    }
    // A code stored before these checks existed is refused when redeemed.
    let legacy = new_enrollment_code();
    sqlx::query(
        "INSERT INTO enrollments (code_hash, name, role, scopes, created_at, expires_at) \
         VALUES ($1, '旧码', 'department', $2, 0, $3)",
    )
    .bind(secret_hash(&normalize_code(&legacy)))
    .bind(TOWN)
    .bind(i64::MAX)
    .execute(server.storage.pool())
    .await
    .expect("legacy code");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = gridsync_core::Store::open(&dir.path().join("p.db"))
        .await
        .expect("store");
    let client = gridsync_core::client::SyncClient::new(&server.url, crate::harness::quick_retry())
        .expect("client");
    let e = client
        .enroll(&store, &legacy)
        .await
        .expect_err("no department");
    assert_eq!(refusal(e), (400, "invalid_enrollment".to_owned()));
    assert!(server.storage.devices().await.expect("devices").is_empty());
}
