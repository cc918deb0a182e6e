//! What the pipeline reads from a photo's EXIF block: orientation, capture time and GPS. Every
//! other tag (camera serial numbers, owner names, thumbnails, maker notes) is never copied: the
//! re-encoded files carry pixels only.

use exif::{In, Tag, Value};

use crate::records::{Gps, Millis};

/// The evidence and layout facts of one photo's EXIF block (all optional: screenshots and
/// many messaging apps strip EXIF).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ExifFacts {
    /// EXIF orientation 1–8 (1 = upright as stored).
    pub orientation: u8,
    /// Capture time (DateTimeOriginal, with OffsetTimeOriginal when given).
    pub taken_at: Option<Millis>,
    /// Where the camera was.
    pub gps: Option<Gps>,
}

/// China Standard Time, for a capture time without an offset tag: cameras write local time
/// and every deployment of gridsync is in China (no daylight saving).
const DEFAULT_OFFSET_MINUTES: i16 = 8 * 60;

/// Reads the facts; a photo without EXIF, or with a block that does not parse, has none
/// (orientation 1), which is never an error: the reference then takes the phone's time and fix.
pub fn read(bytes: &[u8]) -> ExifFacts {
    let mut cursor = std::io::Cursor::new(bytes);
    let Ok(exif) = exif::Reader::new().read_from_container(&mut cursor) else {
        return ExifFacts {
            orientation: 1,
            ..Default::default()
        };
    };
    let orientation = exif
        .get_field(Tag::Orientation, In::PRIMARY)
        .and_then(|f| f.value.get_uint(0))
        .and_then(|v| u8::try_from(v).ok())
        .filter(|v| (1..=8).contains(v))
        .unwrap_or(1);
    ExifFacts {
        orientation,
        taken_at: taken_at(&exif),
        gps: gps(&exif),
    }
}

fn ascii(exif: &exif::Exif, tag: Tag) -> Option<&[u8]> {
    match &exif.get_field(tag, In::PRIMARY)?.value {
        Value::Ascii(v) => v.first().map(Vec::as_slice),
        _ => None,
    }
}

fn taken_at(exif: &exif::Exif) -> Option<Millis> {
    let raw = ascii(exif, Tag::DateTimeOriginal).or_else(|| ascii(exif, Tag::DateTime))?;
    let mut dt = exif::DateTime::from_ascii(raw).ok()?;
    if let Some(off) = ascii(exif, Tag::OffsetTimeOriginal) {
        let _ = dt.parse_offset(off);
    }
    let month = time::Month::try_from(dt.month).ok()?;
    let date = time::Date::from_calendar_date(i32::from(dt.year), month, dt.day).ok()?;
    let clock = time::Time::from_hms(dt.hour, dt.minute, dt.second).ok()?;
    let offset = i32::from(dt.offset.unwrap_or(DEFAULT_OFFSET_MINUTES));
    let offset = time::UtcOffset::from_whole_seconds(offset * 60).ok()?;
    let at = time::PrimitiveDateTime::new(date, clock).assume_offset(offset);
    let ms = at.unix_timestamp().checked_mul(1000)?;
    Some(ms + i64::from(dt.nanosecond.unwrap_or(0) / 1_000_000))
}

fn degrees(exif: &exif::Exif, tag: Tag, negative_ref: Tag, negative: u8) -> Option<f64> {
    let Value::Rational(parts) = &exif.get_field(tag, In::PRIMARY)?.value else {
        return None;
    };
    let part = |i: usize| parts.get(i).map(|r| r.to_f64()).filter(|v| v.is_finite());
    let value = part(0)? + part(1).unwrap_or(0.0) / 60.0 + part(2).unwrap_or(0.0) / 3600.0;
    let sign = match ascii(exif, negative_ref).and_then(|r| r.first()) {
        Some(c) if c.eq_ignore_ascii_case(&negative) => -1.0,
        _ => 1.0,
    };
    Some(sign * value)
}

fn gps(exif: &exif::Exif) -> Option<Gps> {
    let lat = degrees(exif, Tag::GPSLatitude, Tag::GPSLatitudeRef, b'S')?;
    let lon = degrees(exif, Tag::GPSLongitude, Tag::GPSLongitudeRef, b'W')?;
    // A camera without a fix writes 0/0 or garbage: keep only a position on the globe.
    let on_globe = (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon);
    (on_globe && !(lat == 0.0 && lon == 0.0)).then(|| Gps::new(lat, lon))
}
