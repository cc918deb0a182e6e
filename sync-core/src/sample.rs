//! Deterministic, realistic sample records for demos, tests and benchmarks: the same seed
//! always gives the same household, with valid ID numbers and phones.

use std::collections::BTreeSet;

use gridsync_proto::RecordId;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use uuid::Uuid;

use crate::records::{Gps, Household, Millis, Relation, Residence, Resident, Visit};
use crate::validate::id_check_char;

const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "黄", "赵", "吴", "周", "徐", "孙", "马", "朱", "胡",
];
const GIVEN: &[&str] = &[
    "伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟",
    "涛", "明", "超", "秀兰", "霞",
];
const WORK: &[&str] = &[
    "城南小学 教师",
    "个体经营",
    "务农",
    "退休",
    "杭州某物流公司 司机",
    "在读 初二",
    "社区卫生服务站 护士",
    "待业",
];
const PURPOSES: &[&str] = &[
    "日常走访",
    "重点人员回访",
    "政策宣传",
    "矛盾纠纷排查",
    "安全隐患检查",
];
const FINDINGS: &[&str] = &[
    "家中情况正常",
    "老人血压偏高，已提醒就医",
    "反映楼道灯损坏",
    "出租房新增租客两名，已登记",
    "",
];

/// A time-ordered id made from a seeded generator (so samples are reproducible).
pub fn seeded_id(rng: &mut StdRng) -> RecordId {
    let millis: u64 = 1_760_000_000_000 + rng.random_range(0..10_000_000_000u64);
    let rand_bytes: [u8; 10] = rng.random();
    RecordId(uuid::Builder::from_unix_timestamp_millis(millis, &rand_bytes).into_uuid())
}

/// A valid resident ID number for a birth date and sex, from a seeded generator.
pub fn id_number(rng: &mut StdRng, birth: &str, male: bool) -> String {
    let area = "330102";
    let seq: u32 = rng.random_range(0..50);
    let sex_digit = if male {
        1 + 2 * rng.random_range(0..5)
    } else {
        2 * rng.random_range(0..5)
    };
    let first17 = format!("{area}{}{seq:02}{sex_digit}", birth.replace('-', ""));
    let check = id_check_char(&first17).unwrap_or('0');
    format!("{first17}{check}")
}

/// A household of `residents` members and `visits` visits, reproducible from `seed`.
pub fn household(seed: u64, residents: usize, visits: usize) -> Household {
    let mut rng = StdRng::seed_from_u64(seed);
    let surname = SURNAMES[rng.random_range(0..SURNAMES.len())];
    let mut h = Household::new(
        format!(
            "城南社区 {} 幢 {} 单元 {}0{} 室",
            rng.random_range(1..40),
            rng.random_range(1..4),
            rng.random_range(1..19),
            rng.random_range(1..5)
        ),
        [
            Residence::Permanent,
            Residence::Floating,
            Residence::Separated,
        ][rng.random_range(0..3)],
    );
    if rng.random_bool(0.2) {
        h.flags.insert("rental".into());
    }
    if rng.random_bool(0.1) {
        h.flags.insert("empty_nest".into());
    }
    for i in 0..residents {
        let relation = match i {
            0 => Relation::Head,
            1 => Relation::Spouse,
            _ => Relation::Child,
        };
        let male = if i == 1 { false } else { rng.random_bool(0.5) };
        let year = if i < 2 {
            rng.random_range(1950..1985)
        } else {
            rng.random_range(1990..2015)
        };
        let birth = format!(
            "{year}-{:02}-{:02}",
            rng.random_range(1..13),
            rng.random_range(1..29)
        );
        let name = if i == 1 {
            format!(
                "{}{}",
                SURNAMES[rng.random_range(0..SURNAMES.len())],
                GIVEN[rng.random_range(0..GIVEN.len())]
            )
        } else {
            format!("{surname}{}", GIVEN[rng.random_range(0..GIVEN.len())])
        };
        let mut r = Resident::new(name, relation);
        r.id_number = Some(id_number(&mut rng, &birth, male));
        r.gender = Some(if male { "male" } else { "female" }.into());
        r.birth_date = Some(birth);
        if i < 2 {
            r.phones = vec![format!(
                "13{}{:08}",
                rng.random_range(3..10),
                rng.random_range(0..100_000_000u32)
            )];
        }
        r.work = WORK[rng.random_range(0..WORK.len())].into();
        if year < 1960 && rng.random_bool(0.3) {
            r.categories = BTreeSet::from(["elderly_alone".to_owned()]);
        }
        h.members.insert(seeded_id(&mut rng), r);
    }
    let base: Millis = 1_760_000_000_000;
    for _ in 0..visits {
        let v = Visit {
            worker: "周网格".into(),
            at: base + rng.random_range(0..30_000_000_000i64),
            gps: Some(Gps::new(
                30.25 + rng.random_range(0.0..0.01),
                120.16 + rng.random_range(0.0..0.01),
            )),
            purpose: PURPOSES[rng.random_range(0..PURPOSES.len())].into(),
            findings: FINDINGS[rng.random_range(0..FINDINGS.len())].into(),
            photos: Default::default(),
            cases: Vec::new(),
            author: None,
        };
        h.visits.insert(seeded_id(&mut rng), v);
    }
    h
}

/// A fixed id for fixtures (the same on every run).
pub fn fixed_id(n: u128) -> Uuid {
    Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0000 | n)
}
