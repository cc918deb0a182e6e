//! Shared test data.

use gridsync_core::records::{Case, CaseSource, Household, Relation, Residence, Resident, Urgency};
use gridsync_proto::{DeviceId, GridCode, RecordId};

pub fn grid() -> GridCode {
    GridCode::parse("33010200101001002").expect("valid grid")
}

pub fn device(n: u128) -> DeviceId {
    DeviceId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_8000_0000_0000_0000 | n,
    ))
}

pub fn rid(n: u128) -> RecordId {
    RecordId(uuid::Uuid::from_u128(
        0x0190_0000_0000_7000_9000_0000_0000_0000 | n,
    ))
}

pub fn household() -> Household {
    let mut h = Household::new("城南社区 3 幢 2 单元 501 室", Residence::Permanent);
    let mut head = Resident::new("王建国", Relation::Head);
    head.id_number = Some("11010519491231002X".into());
    head.gender = Some("female".into());
    head.birth_date = Some("1949-12-31".into());
    head.phones = vec!["13812345678".into()];
    h.members.insert(rid(1), head);
    h
}

pub fn case() -> Case {
    Case {
        title: "楼道灯损坏".into(),
        source: CaseSource::Inspection,
        category: "01".into(),
        subcategory: "0102".into(),
        location: None,
        address: "城南社区 3 幢".into(),
        description: "3 幢 2 单元楼道灯不亮".into(),
        urgency: Urgency::Normal,
        reported_by: "周网格".into(),
        reported_at: 1_760_000_000_000,
        parties: Default::default(),
        photos: Default::default(),
        events: Default::default(),
        redactions: Default::default(),
    }
}
