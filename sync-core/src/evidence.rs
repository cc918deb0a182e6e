//! Evidence checks on case photos, the questions a supervisor asks of after-photos (销号):
//! was it taken after the case was reported and dispatched, near the place, and is it not an
//! image already used on another case. Pure, over projection rows, so the server (and a phone,
//! over what it holds) computes the same flags. **Invariant:** a flag is a question for a
//! person, never a refusal: nothing is changed or refused for it.

use std::collections::{BTreeMap, HashMap};

use gridsync_proto::{DocId, RecordId};
use serde::Serialize;

use crate::projection::{CaseRow, PhotoRow};

/// How far (metres) a photo may be from the case's location before it is flagged.
pub const DEFAULT_RADIUS_M: f64 = 500.0;
/// Perceptual hashes at most this many bits apart (of 64) are the same picture: a resized,
/// re-compressed or lightly cropped copy lands within 2–4 bits, different scenes 20 and more.
pub const NEAR_DUPLICATE_BITS: u32 = 6;

/// What is questionable about one photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceKind {
    /// Taken before the case was reported (a handling, after or check photo).
    BeforeReport,
    /// Taken before the case was first dispatched (a handling or after photo).
    BeforeDispatch,
    /// Taken farther from the case's location than the radius.
    FarFromCase,
    /// The very same image is a photo of another case.
    SameImage,
    /// A near-identical image (perceptual hash) is a photo of another case.
    NearDuplicate,
}

impl EvidenceKind {
    /// The stable name used in APIs and exports.
    pub fn as_str(self) -> &'static str {
        match self {
            EvidenceKind::BeforeReport => "before_report",
            EvidenceKind::BeforeDispatch => "before_dispatch",
            EvidenceKind::FarFromCase => "far_from_case",
            EvidenceKind::SameImage => "same_image",
            EvidenceKind::NearDuplicate => "near_duplicate",
        }
    }
}

/// One flag on one photo of one case.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EvidenceFlag {
    /// The case.
    pub case: DocId,
    /// The photo inside it.
    pub photo: RecordId,
    /// The photo's stage.
    pub stage: String,
    /// What is questionable.
    pub kind: EvidenceKind,
    /// The other case, for `same_image` and `near_duplicate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_case: Option<DocId>,
    /// A sentence for the supervisor.
    pub detail: String,
}

/// The settings of the checks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EvidenceRules {
    /// See [`DEFAULT_RADIUS_M`].
    pub radius_m: f64,
    /// See [`NEAR_DUPLICATE_BITS`].
    pub near_bits: u32,
}

impl Default for EvidenceRules {
    fn default() -> Self {
        Self {
            radius_m: DEFAULT_RADIUS_M,
            near_bits: NEAR_DUPLICATE_BITS,
        }
    }
}

/// Great-circle distance in metres (haversine on a 6,371 km sphere: well within a metre at
/// the distances that matter here).
pub fn distance_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (la1, lo1, la2, lo2) = (
        a.0.to_radians(),
        a.1.to_radians(),
        b.0.to_radians(),
        b.1.to_radians(),
    );
    let h = ((la2 - la1) / 2.0).sin().powi(2)
        + la1.cos() * la2.cos() * ((lo2 - lo1) / 2.0).sin().powi(2);
    2.0 * 6_371_000.0 * h.sqrt().asin()
}

use crate::clock::format_china as fmt_time;

/// The flags of `cases`' photos. `photos` are the case photos to judge and compare (other
/// documents' photos are ignored); `phash` maps a stored file's SHA-256 to its perceptual hash
/// (a photo is compared by its thumbnail's hash, else its full image's).
pub fn check(
    cases: &[CaseRow],
    photos: &[PhotoRow],
    phash: &HashMap<String, u64>,
    rules: &EvidenceRules,
) -> Vec<EvidenceFlag> {
    let by_id: HashMap<DocId, &CaseRow> = cases.iter().map(|c| (c.doc_id, c)).collect();
    let photos: Vec<&PhotoRow> = photos
        .iter()
        .filter(|p| p.doc_type == "case" && by_id.contains_key(&p.doc_id))
        .collect();
    let mut flags = Vec::new();
    for p in &photos {
        let c = by_id[&p.doc_id];
        let flag = |kind, other_case, detail: String| EvidenceFlag {
            case: p.doc_id,
            photo: p.photo_id,
            stage: p.stage.clone(),
            kind,
            other_case,
            detail,
        };
        let handling = matches!(p.stage.as_str(), "during" | "after");
        if (handling || p.stage == "check") && p.taken_at < c.reported_at {
            flags.push(flag(
                EvidenceKind::BeforeReport,
                None,
                format!(
                    "taken {} but the case was reported {}",
                    fmt_time(p.taken_at),
                    fmt_time(c.reported_at)
                ),
            ));
        }
        if let Some(d) = c.dispatched_at
            && handling
            && p.taken_at < d
            && p.taken_at >= c.reported_at
        {
            flags.push(flag(
                EvidenceKind::BeforeDispatch,
                None,
                format!(
                    "taken {} but the case was dispatched {}",
                    fmt_time(p.taken_at),
                    fmt_time(d)
                ),
            ));
        }
        if let (Some(plat), Some(plon), Some(clat), Some(clon)) = (p.lat, p.lon, c.lat, c.lon) {
            let d = distance_m((plat, plon), (clat, clon));
            if d > rules.radius_m {
                flags.push(flag(
                    EvidenceKind::FarFromCase,
                    None,
                    format!(
                        "taken {d:.0} m from the case's location (more than {:.0} m)",
                        rules.radius_m
                    ),
                ));
            }
        }
    }
    // The same file on two cases: by either of its files' hashes.
    let mut by_file: BTreeMap<&str, Vec<&PhotoRow>> = BTreeMap::new();
    for p in &photos {
        by_file.entry(p.sha256.as_str()).or_default().push(p);
        if let Some(t) = &p.thumb_sha256 {
            by_file.entry(t.as_str()).or_default().push(p);
        }
    }
    let mut seen = std::collections::BTreeSet::new();
    for group in by_file.values() {
        for a in group {
            for b in group {
                if a.doc_id != b.doc_id && seen.insert((a.doc_id, a.photo_id, b.doc_id)) {
                    flags.push(EvidenceFlag {
                        case: a.doc_id,
                        photo: a.photo_id,
                        stage: a.stage.clone(),
                        kind: EvidenceKind::SameImage,
                        other_case: Some(b.doc_id),
                        detail: format!("the same image is a photo of case {}", b.doc_id),
                    });
                }
            }
        }
    }
    // Near-duplicates: every pair of photos on different cases whose perceptual hashes are
    // close, but which are not the same file (flagged above). Quadratic in the case photos of
    // the scope asked about: 10,000 photos are 50 million 64-bit comparisons, well under a
    // second; a county-wide check would want an index (BK-tree) instead.
    let hashed: Vec<(&PhotoRow, u64)> = photos
        .iter()
        .filter_map(|p| {
            let h = p
                .thumb_sha256
                .as_ref()
                .and_then(|t| phash.get(t))
                .or_else(|| phash.get(&p.sha256))?;
            Some((*p, *h))
        })
        .collect();
    for (i, (a, ha)) in hashed.iter().enumerate() {
        for (b, hb) in &hashed[i + 1..] {
            if a.doc_id == b.doc_id || a.sha256 == b.sha256 {
                continue;
            }
            let bits = (ha ^ hb).count_ones();
            if bits <= rules.near_bits {
                for (x, y) in [(a, b), (b, a)] {
                    if seen.insert((x.doc_id, x.photo_id, y.doc_id)) {
                        flags.push(EvidenceFlag {
                            case: x.doc_id,
                            photo: x.photo_id,
                            stage: x.stage.clone(),
                            kind: EvidenceKind::NearDuplicate,
                            other_case: Some(y.doc_id),
                            detail: format!(
                                "nearly the same picture ({bits} of 64 bits differ) as a photo \
                                 of case {}",
                                y.doc_id
                            ),
                        });
                    }
                }
            }
        }
    }
    flags.sort_by_key(|a| (a.case, a.photo, a.kind));
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    const REPORTED: i64 = 1_790_000_000_000;

    fn id(n: u128) -> DocId {
        DocId(uuid::Uuid::from_u128(n))
    }

    fn case(n: u128, dispatched: Option<i64>, at: Option<(f64, f64)>) -> CaseRow {
        CaseRow {
            doc_id: id(n),
            grid: "33010200101001002".into(),
            title: "t".into(),
            status: "handling".into(),
            source: "inspection".into(),
            category: "01".into(),
            subcategory: "0102".into(),
            urgency: "normal".into(),
            reported_at: REPORTED,
            address: "a".into(),
            lead: None,
            co: String::new(),
            dispatched_at: dispatched,
            deadline: None,
            amber_at: None,
            handled_at: None,
            closed_at: None,
            self_closed: 0,
            reworks: 0,
            extensions: 0,
            ever_suspended: 0,
            satisfaction: None,
            supervisions: 0,
            event_conflicts: 0,
            conflict_count: 0,
            lat: at.map(|p| p.0),
            lon: at.map(|p| p.1),
        }
    }

    fn photo(case: u128, n: u128, stage: &str, at: i64, gps: Option<(f64, f64)>) -> PhotoRow {
        PhotoRow {
            doc_id: id(case),
            photo_id: RecordId(uuid::Uuid::from_u128(n)),
            doc_type: "case".into(),
            grid: "33010200101001002".into(),
            entry: "photos".into(),
            stage: stage.into(),
            sha256: format!("{n:064x}"),
            size: 100,
            thumb_sha256: Some(format!("{:064x}", n + 1000)),
            thumb_size: Some(10),
            mime: "image/jpeg".into(),
            taken_at: at,
            lat: gps.map(|p| p.0),
            lon: gps.map(|p| p.1),
        }
    }

    fn kinds(flags: &[EvidenceFlag], case: u128) -> Vec<EvidenceKind> {
        flags
            .iter()
            .filter(|f| f.case == id(case))
            .map(|f| f.kind)
            .collect()
    }

    #[test]
    fn times_before_the_report_or_the_dispatch_are_flagged_by_stage() {
        let here = (30.0, 120.0);
        let cases = [case(1, Some(REPORTED + DAY), Some(here))];
        let photos = [
            // A before-photo may predate the report; a check photo may predate dispatch.
            photo(1, 1, "before", REPORTED - DAY, Some(here)),
            photo(1, 2, "check", REPORTED + 1, Some(here)),
            photo(1, 3, "after", REPORTED - DAY, Some(here)),
            photo(1, 4, "during", REPORTED + 1, Some(here)),
            photo(1, 5, "after", REPORTED + 2 * DAY, Some(here)),
        ];
        let flags = check(&cases, &photos, &HashMap::new(), &EvidenceRules::default());
        let by_photo: Vec<(u128, EvidenceKind)> = flags
            .iter()
            .map(|f| (f.photo.0.as_u128(), f.kind))
            .collect();
        assert_eq!(
            by_photo,
            [
                (3, EvidenceKind::BeforeReport),
                (4, EvidenceKind::BeforeDispatch)
            ]
        );
    }

    #[test]
    fn far_photos_and_reused_images_are_flagged_and_near_ones_pass() {
        let here = (30.0, 120.0);
        let near = (30.003, 120.0); // ~330 m
        let far = (30.006, 120.0); // ~670 m
        let cases = [
            case(1, None, Some(here)),
            case(2, None, Some(here)),
            case(3, None, None),
        ];
        let mut reused = photo(2, 20, "after", REPORTED + 1, None);
        reused.sha256 = photo(1, 10, "after", 0, None).sha256;
        let photos = [
            photo(1, 10, "after", REPORTED + 1, Some(near)),
            photo(1, 11, "after", REPORTED + 1, Some(far)),
            reused,
            // No location on the case: nothing to compare with.
            photo(3, 30, "after", REPORTED + 1, Some(far)),
        ];
        let flags = check(&cases, &photos, &HashMap::new(), &EvidenceRules::default());
        assert_eq!(
            kinds(&flags, 1),
            [EvidenceKind::SameImage, EvidenceKind::FarFromCase]
        );
        assert_eq!(kinds(&flags, 2), [EvidenceKind::SameImage]);
        assert!(kinds(&flags, 3).is_empty());
        let same = flags.iter().find(|f| f.case == id(2)).expect("flag");
        assert_eq!(same.other_case, Some(id(1)));
        // A wider radius lets the far one pass.
        let wide = EvidenceRules {
            radius_m: 1000.0,
            ..Default::default()
        };
        assert_eq!(
            kinds(&check(&cases, &photos, &HashMap::new(), &wide), 1),
            [EvidenceKind::SameImage]
        );
    }

    #[test]
    fn near_identical_pictures_on_two_cases_are_flagged_by_their_perceptual_hash() {
        let cases = [
            case(1, None, None),
            case(2, None, None),
            case(3, None, None),
        ];
        let (a, b, c) = (
            photo(1, 1, "after", REPORTED + 1, None),
            photo(2, 2, "after", REPORTED + 1, None),
            photo(3, 3, "after", REPORTED + 1, None),
        );
        let thumb = |p: &PhotoRow| p.thumb_sha256.clone().expect("thumb");
        let phash = HashMap::from([
            (thumb(&a), 0xF0F0_F0F0_0F0F_0F0Fu64),
            (thumb(&b), 0xF0F0_F0F0_0F0F_0F0Cu64), // 2 bits apart
            (thumb(&c), 0x0F0F_0F0F_F0F0_F0F0u64), // every bit apart
        ]);
        let flags = check(&cases, &[a, b, c], &phash, &EvidenceRules::default());
        assert_eq!(kinds(&flags, 1), [EvidenceKind::NearDuplicate]);
        assert_eq!(kinds(&flags, 2), [EvidenceKind::NearDuplicate]);
        assert!(kinds(&flags, 3).is_empty());
    }

    #[test]
    fn distances_are_metres() {
        // One thousandth of a degree of latitude is about 111 m.
        let d = distance_m((30.0, 120.0), (30.001, 120.0));
        assert!((d - 111.2).abs() < 0.5, "{d}");
        assert_eq!(distance_m((30.0, 120.0), (30.0, 120.0)), 0.0);
    }
}
