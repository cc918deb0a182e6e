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

/// What a sample camera photo's EXIF block says (see [`camera_photo`]).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraExif {
    /// EXIF orientation 1–8.
    pub orientation: u16,
    /// DateTimeOriginal as the camera writes it (`YYYY:MM:DD HH:MM:SS`, local time).
    pub taken: Option<String>,
    /// OffsetTimeOriginal (`+08:00`), when the camera writes one.
    pub offset: Option<String>,
    /// Latitude and longitude in signed degrees.
    pub gps: Option<(f64, f64)>,
    /// Other tags a camera writes (make, model, software, owner): the pipeline must drop them.
    pub identifying: bool,
}

impl Default for CameraExif {
    fn default() -> Self {
        Self {
            orientation: 1,
            taken: Some("2026:11:30 09:15:42".into()),
            offset: Some("+08:00".into()),
            gps: Some((30.274_15, 120.155_07)),
            identifying: true,
        }
    }
}

fn rational_degrees(v: f64) -> Vec<exif::Rational> {
    let v = v.abs();
    let deg = v.trunc();
    let min = ((v - deg) * 60.0).trunc();
    let sec = ((v - deg) * 60.0 - min) * 60.0;
    vec![
        exif::Rational::from((deg as u32, 1)),
        exif::Rational::from((min as u32, 1)),
        exif::Rational::from(((sec * 10_000.0).round() as u32, 10_000)),
    ]
}

/// The EXIF block (a TIFF structure) for `meta`.
pub fn exif_block(meta: &CameraExif) -> Vec<u8> {
    use exif::{Field, In, Tag, Value};
    let ascii = |s: &str| Value::Ascii(vec![s.as_bytes().to_vec()]);
    let mut fields = vec![Field {
        tag: Tag::Orientation,
        ifd_num: In::PRIMARY,
        value: Value::Short(vec![meta.orientation]),
    }];
    if let Some(t) = &meta.taken {
        fields.push(Field {
            tag: Tag::DateTimeOriginal,
            ifd_num: In::PRIMARY,
            value: ascii(t),
        });
    }
    if let Some(o) = &meta.offset {
        fields.push(Field {
            tag: Tag::OffsetTimeOriginal,
            ifd_num: In::PRIMARY,
            value: ascii(o),
        });
    }
    if let Some((lat, lon)) = meta.gps {
        fields.push(Field {
            tag: Tag::GPSLatitudeRef,
            ifd_num: In::PRIMARY,
            value: ascii(if lat < 0.0 { "S" } else { "N" }),
        });
        fields.push(Field {
            tag: Tag::GPSLatitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(rational_degrees(lat)),
        });
        fields.push(Field {
            tag: Tag::GPSLongitudeRef,
            ifd_num: In::PRIMARY,
            value: ascii(if lon < 0.0 { "W" } else { "E" }),
        });
        fields.push(Field {
            tag: Tag::GPSLongitude,
            ifd_num: In::PRIMARY,
            value: Value::Rational(rational_degrees(lon)),
        });
    }
    if meta.identifying {
        for (tag, v) in [
            (Tag::Make, "GridPhone"),
            (Tag::Model, "GP-12 Pro"),
            (Tag::Software, "camera 4.2"),
            (Tag::Artist, "王建国"),
            (Tag::BodySerialNumber, "SN-0042-1337"),
        ] {
            fields.push(Field {
                tag,
                ifd_num: In::PRIMARY,
                value: ascii(v),
            });
        }
    }
    let mut w = exif::experimental::Writer::new();
    for f in &fields {
        w.push_field(f);
    }
    let mut out = std::io::Cursor::new(Vec::new());
    // Writing into memory cannot fail for these well-formed fields.
    let _ = w.write(&mut out, false);
    out.into_inner()
}

/// Puts an EXIF block into a JPEG as its APP1 segment, right after the start marker.
pub fn with_exif(jpeg: &[u8], block: &[u8]) -> Vec<u8> {
    let len = u16::try_from(block.len() + 8).unwrap_or(u16::MAX);
    let mut out = Vec::with_capacity(jpeg.len() + block.len() + 10);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xE1]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(b"Exif\0\0");
    out.extend_from_slice(block);
    out.extend_from_slice(&jpeg[2..]);
    out
}

/// A synthetic camera photo of `width`×`height` as stored by a camera (so for orientations
/// 5–8 the stored image is the upright one turned on its side), JPEG at quality 92, with the
/// EXIF block `meta`. The upright picture has four quadrants (red top-left, green top-right,
/// blue bottom-left, white bottom-right) over camera-like grain and detail, so a wrong turn
/// shows and the encoder has a scene's detail to work on; `seed` varies the detail.
pub fn camera_photo(width: u32, height: u32, meta: &CameraExif, seed: u64) -> Vec<u8> {
    let upright = |x: u32, y: u32| -> [u8; 3] {
        let (right, bottom) = (x >= width / 2, y >= height / 2);
        let base: [u8; 3] = match (right, bottom) {
            (false, false) => [220, 30, 30],
            (true, false) => [30, 200, 40],
            (false, true) => [30, 40, 210],
            (true, true) => [235, 235, 235],
        };
        // Fine grain (sensor noise) plus detail at 12 px (leaves, bricks), which survives
        // the downscale as real scenes do.
        let grain =
            (x.wrapping_mul(7919) ^ y.wrapping_mul(104_729) ^ (seed as u32).wrapping_mul(31)) % 23;
        let (bx, by) = (x / 12, y / 12);
        let block = (bx.wrapping_mul(2_654_435_761) ^ by.wrapping_mul(40_503) ^ (seed as u32))
            .wrapping_mul(2_246_822_519)
            >> 27;
        let t = u8::try_from(grain + block * 3 / 2).unwrap_or(0);
        base.map(|c| c.saturating_sub(34).saturating_add(t))
    };
    // The stored image: orientations 5–8 store the picture turned, width and height swapped.
    let (sw, sh) = if meta.orientation >= 5 {
        (height, width)
    } else {
        (width, height)
    };
    let (w, h) = (width - 1, height - 1);
    let mut img = image::RgbImage::new(sw, sh);
    for (sx, sy, px) in img.enumerate_pixels_mut() {
        // Where stored pixel (sx, sy) is in the upright picture, per the EXIF table.
        let (x, y) = match meta.orientation {
            2 => (w - sx, sy),
            3 => (w - sx, h - sy),
            4 => (sx, h - sy),
            5 => (sy, sx),
            6 => (w - sy, sx),
            7 => (w - sy, h - sx),
            8 => (sy, h - sx),
            _ => (sx, sy),
        };
        *px = image::Rgb(upright(x, y));
    }
    let mut jpeg = Vec::new();
    let enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 92);
    if image::ImageEncoder::write_image(enc, img.as_raw(), sw, sh, image::ExtendedColorType::Rgb8)
        .is_err()
    {
        return Vec::new();
    }
    with_exif(&jpeg, &exif_block(meta))
}
