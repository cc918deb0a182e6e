//! Small value types used by several records.

use gridsync_proto::DeviceId;
use serde::{Deserialize, Serialize};

use crate::validate::{Checker, Problem};

/// A moment as milliseconds since the Unix epoch (UTC): compact in Automerge and unambiguous.
pub type Millis = i64;

/// A GPS fix (WGS-84 as the phone reports it).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Gps {
    /// Latitude in degrees, -90..=90.
    pub lat: f64,
    /// Longitude in degrees, -180..=180.
    pub lon: f64,
    /// Horizontal accuracy in metres, when the phone knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acc: Option<f64>,
}

impl Gps {
    /// A fix without an accuracy figure.
    pub fn new(lat: f64, lon: f64) -> Self {
        Self {
            lat,
            lon,
            acc: None,
        }
    }

    pub(crate) fn check(&self, c: &mut Checker, field: &str) {
        c.gps(field, self.lat, self.lon);
        if let Some(acc) = self.acc
            && !(acc.is_finite() && acc >= 0.0)
        {
            c.fail(
                &format!("{field}.acc"),
                Problem::Inconsistent("accuracy must be a non-negative number of metres"),
            );
        }
    }
}

/// At which stage of the work a photo was taken; cases keep photos by stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoStage {
    /// When the problem was found or reported (处置前).
    Before,
    /// While it is being handled (处置中).
    During,
    /// After handling, as evidence for closing (处置后).
    After,
    /// On-site check (核查) or follow-up visit.
    Check,
    /// A household visit or patrol, not tied to a case stage.
    Record,
}

/// A photo kept as evidence: the bytes travel separately, content-addressed by SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhotoRef {
    /// Lower-case hex SHA-256 of the stored (re-encoded) image.
    pub sha256: String,
    /// The stage of the work it documents.
    pub stage: PhotoStage,
    /// Capture time from the camera (EXIF), ms since the epoch.
    pub taken_at: Millis,
    /// Where it was taken, from EXIF or the phone's fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps: Option<Gps>,
    /// Size of the stored image in bytes.
    pub size: u64,
    /// MIME type of the stored image.
    pub mime: String,
    /// The device that took it (stamped by the core; see `crate::rules`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<DeviceId>,
    /// Lower-case hex SHA-256 of its thumbnail (made by the photo pipeline; references from
    /// before it have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_sha256: Option<String>,
    /// Size of the thumbnail in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_size: Option<u64>,
    /// Width of the stored image in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    /// Height of the stored image in pixels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
    /// Where `taken_at` came from: the camera's EXIF or the phone's clock when it was added.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_source: Option<EvidenceSource>,
    /// Where `gps` came from: the camera's EXIF or the phone's own fix.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gps_source: Option<EvidenceSource>,
    /// The inspection checkpoint it documents (inspection photos only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint: Option<gridsync_proto::RecordId>,
}

/// Where an evidence field of a photo came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceSource {
    /// Read from the photo's EXIF block (the camera's own record).
    Exif,
    /// The phone's clock or fix when the photo was added (no EXIF value).
    Device,
}

impl PhotoRef {
    /// A reference with only the required fields (no thumbnail, no GPS, no evidence sources):
    /// for references made by hand or before the photo pipeline.
    pub fn new(
        sha256: impl Into<String>,
        stage: PhotoStage,
        taken_at: Millis,
        size: u64,
        mime: &str,
    ) -> Self {
        Self {
            sha256: sha256.into(),
            stage,
            taken_at,
            gps: None,
            size,
            mime: mime.into(),
            author: None,
            thumb_sha256: None,
            thumb_size: None,
            width: None,
            height: None,
            time_source: None,
            gps_source: None,
            checkpoint: None,
        }
    }

    /// A reference to a photo the pipeline processed, at `stage`; `now` and `fix` stand in
    /// for capture time and GPS the camera did not record.
    pub fn from_processed(
        p: &crate::photo::Processed,
        stage: PhotoStage,
        now: Millis,
        fix: Option<Gps>,
    ) -> Self {
        let (taken_at, time_source) = match p.taken_at {
            Some(t) => (t, EvidenceSource::Exif),
            None => (now, EvidenceSource::Device),
        };
        let (gps, gps_source) = match (p.gps, fix) {
            (Some(g), _) => (Some(g), Some(EvidenceSource::Exif)),
            (None, Some(g)) => (Some(g), Some(EvidenceSource::Device)),
            (None, None) => (None, None),
        };
        Self {
            sha256: p.full_sha256.clone(),
            stage,
            taken_at,
            gps,
            size: p.full.len() as u64,
            mime: crate::photo::OUTPUT_MIME.into(),
            author: None,
            thumb_sha256: Some(p.thumb_sha256.clone()),
            thumb_size: Some(p.thumb.len() as u64),
            width: Some(p.width),
            height: Some(p.height),
            time_source: Some(time_source),
            gps_source,
            checkpoint: None,
        }
    }

    /// The stored files of this photo as `(sha256, size, kind)`: the thumbnail first, then the
    /// full image (the order uploads go in).
    pub fn files(&self) -> Vec<(&str, u64, PhotoFile)> {
        let mut out = Vec::with_capacity(2);
        if let (Some(t), Some(n)) = (&self.thumb_sha256, self.thumb_size) {
            out.push((t.as_str(), n, PhotoFile::Thumb));
        }
        out.push((self.sha256.as_str(), self.size, PhotoFile::Full));
        out
    }
}

/// Which of a photo's two files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PhotoFile {
    /// The thumbnail (uploaded first; enough on a metered link).
    Thumb,
    /// The full image.
    Full,
}

impl PhotoFile {
    /// The name stored in queues and projections.
    pub fn as_str(self) -> &'static str {
        match self {
            PhotoFile::Thumb => "thumb",
            PhotoFile::Full => "full",
        }
    }
}

const PHOTO_MIMES: &[&str] = &["image/jpeg", "image/png", "image/webp"];

impl PhotoRef {
    pub(crate) fn check(&self, c: &mut Checker) {
        c.sha256("sha256", &self.sha256);
        c.one_of("mime", &self.mime, PHOTO_MIMES);
        if self.size == 0 {
            c.fail("size", Problem::Inconsistent("a photo cannot be empty"));
        }
        match (&self.thumb_sha256, self.thumb_size) {
            (Some(t), Some(n)) => {
                c.sha256("thumb_sha256", t);
                if n == 0 {
                    c.fail(
                        "thumb_size",
                        Problem::Inconsistent("a thumbnail cannot be empty"),
                    );
                }
            }
            (None, None) => {}
            (Some(_), None) => c.fail(
                "thumb_size",
                Problem::Inconsistent("a thumbnail needs its size"),
            ),
            (None, Some(_)) => c.fail(
                "thumb_sha256",
                Problem::Inconsistent("a thumbnail size needs the thumbnail's hash"),
            ),
        }
        if let Some(g) = &self.gps {
            g.check(c, "gps");
        }
    }
}

/// A dispatcher's or leader's note that takes an entry out of view (a visit entered on the wrong
/// household, a photo of the wrong place): the entry itself stays in the history, and
/// projections and lists leave it out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Redaction {
    /// The entry's path inside the record, e.g. `visits.<id>`.
    pub target: String,
    /// Why it was redacted.
    pub reason: String,
    /// When, by the redactor's clock.
    pub at: Millis,
    /// The redacting device (stamped by the core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<DeviceId>,
}

impl Redaction {
    pub(crate) fn check(&self, c: &mut Checker, entries: &[&str]) {
        c.required("reason", &self.reason, 500);
        // Exactly `map.key`: a redaction hides one whole entry, never a part of one.
        let names_entry = self.target.split_once('.').is_some_and(|(map, key)| {
            entries.contains(&map) && !key.is_empty() && !key.contains('.')
        });
        if !names_entry {
            c.fail(
                "target",
                Problem::Inconsistent("a redaction names one entry, such as visits.<id>"),
            );
        }
    }
}

/// The ids of entries of map `map` that a redaction takes out of view.
pub fn redacted<'a>(
    redactions: impl IntoIterator<Item = &'a Redaction>,
    map: &str,
) -> std::collections::BTreeSet<String> {
    redactions
        .into_iter()
        .filter_map(|r| r.target.split_once('.'))
        .filter(|(m, id)| *m == map && !id.contains('.'))
        .map(|(_, id)| id.to_owned())
        .collect()
}

/// Serde helper: a set of short strings stored as an Automerge map `{item: true}`, so two
/// phones adding different items at once both keep theirs (a list would interleave or conflict).
pub mod set_as_map {
    use std::collections::{BTreeMap, BTreeSet};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Writes the set as a map of `item -> true`.
    pub fn serialize<S: Serializer>(set: &BTreeSet<String>, s: S) -> Result<S::Ok, S::Error> {
        set.iter()
            .map(|k| (k.as_str(), true))
            .collect::<BTreeMap<_, _>>()
            .serialize(s)
    }

    /// Reads a map of `item -> bool`, keeping the items that are `true`.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeSet<String>, D::Error> {
        let map = BTreeMap::<String, bool>::deserialize(d)?;
        Ok(map
            .into_iter()
            .filter(|(_, v)| *v)
            .map(|(k, _)| k)
            .collect())
    }
}
