//! The phone's photo pipeline: from the camera's file to the two files that travel (a
//! downscaled full image and a thumbnail), both upright JPEGs with no metadata, addressed by
//! SHA-256; capture time and GPS are kept as evidence fields of the photo reference instead.
//!
//! **Route.** A camera JPEG (12 MP and up) is decoded at a reduced DCT scale (1/2, 1/4 or 1/8,
//! the smallest that still covers the target size): the inverse DCT then produces a quarter or
//! less of the pixels, which is most of a JPEG decode's time, and no detail is lost that the
//! downscale would keep, since the SIMD resizer (`fast_image_resize`, Lanczos3) makes the exact
//! size from there. The orientation is applied to the downscaled image (a quarter of the
//! pixels to move), and the thumbnail is made from the downscaled image, not the original.
//! Both are encoded by a SIMD JPEG encoder (`jpeg-encoder`), four times faster than `image`'s.
//! Measured on this machine (`gridsync-bench --only photo`, 12 MP): the reduced-scale decode
//! is about two thirds of the time (entropy decoding does not shrink with the scale), resizing
//! and encoding a sixth each; a full decode with `image`'s faster decoder (zune-jpeg) took
//! 40 % longer than the reduced-scale one.
//! PNG and WebP are decoded whole by `image` (screenshots and messaging apps, rarely large).
//! HEIC (iPhone's default) cannot be decoded: the app hands over JPEG (`PhotoError::Heic`).
//! The plain route (`process_plain`: full decode, `image`'s resize, encode) is kept for the
//! benchmark's comparison.

pub mod meta;

use std::io::Cursor;

use fast_image_resize as fr;
use image::{ImageEncoder, RgbImage};
use sha2::{Digest, Sha256};

use crate::records::{Gps, Millis};

/// How the pipeline sizes and encodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhotoOptions {
    /// Longest edge of the full image in pixels (a smaller photo is never enlarged).
    pub long_edge: u32,
    /// Longest edge of the thumbnail.
    pub thumb_edge: u32,
    /// JPEG quality of both, 1–100.
    pub quality: u8,
}

impl Default for PhotoOptions {
    fn default() -> Self {
        Self {
            long_edge: 1600,
            thumb_edge: 320,
            quality: 80,
        }
    }
}

/// The largest photo decoded, in pixels (a 108 MP phone camera fits; a crafted header that
/// claims more would make the phone allocate gigabytes).
pub const MAX_INPUT_PIXELS: u64 = 120_000_000;
/// The largest PNG or WebP decoded, in pixels (decoded whole: screenshots, not cameras).
pub const MAX_WHOLE_PIXELS: u64 = 40_000_000;
/// The most memory the JPEG decoder may take for its buffers (a progressive JPEG keeps every
/// coefficient whatever the scale).
const MAX_JPEG_BUFFER: usize = 768 * 1024 * 1024;
/// The largest input file read.
pub const MAX_INPUT_BYTES: usize = 64 * 1024 * 1024;
/// The MIME type of everything the pipeline writes.
pub const OUTPUT_MIME: &str = "image/jpeg";

/// Why a photo could not be processed; nothing is written when it fails.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PhotoError {
    /// The file is empty.
    #[error("the photo file is empty")]
    Empty,
    /// HEIC/HEIF (the iPhone's default format), which this build cannot decode.
    #[error(
        "the photo is HEIC/HEIF, which gridsync cannot decode; hand over a JPEG \
         (iOS: request JPEG from the picker, or set Camera → Formats → Most Compatible)"
    )]
    Heic,
    /// Not a JPEG, PNG or WebP image.
    #[error("the file is not a JPEG, PNG or WebP photo ({found})")]
    Unsupported {
        /// What the first bytes look like.
        found: String,
    },
    /// The image is damaged or cut short.
    #[error("the {format} photo is damaged or incomplete: {reason}")]
    Corrupt {
        /// `jpeg`, `png` or `webp`.
        format: &'static str,
        /// What the decoder said.
        reason: String,
    },
    /// More pixels or bytes than the pipeline decodes.
    #[error("the photo is too large: {what} (at most {max})")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit.
        max: String,
    },
    /// Re-encoding or resizing failed (a bug or an exhausted device).
    #[error("processing the photo failed: {0}")]
    Process(String),
}

/// A processed photo: the two files and the evidence read from the original.
#[derive(Debug, Clone, PartialEq)]
pub struct Processed {
    /// The full image (JPEG, upright, no metadata).
    pub full: Vec<u8>,
    /// Lower-case hex SHA-256 of `full`.
    pub full_sha256: String,
    /// The thumbnail (JPEG, upright, no metadata).
    pub thumb: Vec<u8>,
    /// Lower-case hex SHA-256 of `thumb`.
    pub thumb_sha256: String,
    /// Width of the full image.
    pub width: u32,
    /// Height of the full image.
    pub height: u32,
    /// Capture time from EXIF, when the camera wrote one.
    pub taken_at: Option<Millis>,
    /// GPS from EXIF, when the camera wrote one.
    pub gps: Option<Gps>,
}

/// Input formats the pipeline reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Jpeg,
    Png,
    WebP,
}

impl Format {
    fn name(self) -> &'static str {
        match self {
            Format::Jpeg => "jpeg",
            Format::Png => "png",
            Format::WebP => "webp",
        }
    }
}

/// What kind of image `bytes` hold, by their signature.
fn sniff(bytes: &[u8]) -> Result<Format, PhotoError> {
    if bytes.is_empty() {
        return Err(PhotoError::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(Format::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(Format::Png);
    }
    if bytes.len() >= 12 && &bytes[..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(Format::WebP);
    }
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let brand = &bytes[8..12];
        if [
            b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
        ]
        .iter()
        .any(|b| brand == *b)
        {
            return Err(PhotoError::Heic);
        }
        return Err(PhotoError::Unsupported {
            found: format!("ISO media, brand {:?}", String::from_utf8_lossy(brand)),
        });
    }
    let shown: String = bytes
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ");
    Err(PhotoError::Unsupported {
        found: format!("starts with {shown}"),
    })
}

/// Whether `bytes` start like an image this project stores (JPEG, PNG or WebP); the server's
/// type check on uploads.
pub fn is_stored_type(bytes: &[u8]) -> bool {
    sniff(bytes).is_ok()
}

fn too_large_pixels(w: u32, h: u32) -> Result<(), PhotoError> {
    if u64::from(w) * u64::from(h) > MAX_INPUT_PIXELS || w == 0 || h == 0 {
        return Err(PhotoError::TooLarge {
            what: format!("{w}×{h} pixels"),
            max: format!("{MAX_INPUT_PIXELS} pixels"),
        });
    }
    Ok(())
}

/// `w`×`h` scaled so the long edge is at most `edge` (never enlarged, never below 1 pixel).
pub fn fit(w: u32, h: u32, edge: u32) -> (u32, u32) {
    let long = w.max(h);
    if long <= edge {
        return (w, h);
    }
    let scale = |v: u32| (u64::from(v) * u64::from(edge) + u64::from(long) / 2) / u64::from(long);
    let sw = u32::try_from(scale(w)).unwrap_or(edge).max(1);
    let sh = u32::try_from(scale(h)).unwrap_or(edge).max(1);
    (sw, sh)
}

/// Runs the pipeline on one camera file.
pub fn process(input: &[u8], opts: &PhotoOptions) -> Result<Processed, PhotoError> {
    if input.len() > MAX_INPUT_BYTES {
        return Err(PhotoError::TooLarge {
            what: format!("{} bytes", input.len()),
            max: format!("{MAX_INPUT_BYTES} bytes"),
        });
    }
    let format = sniff(input)?;
    let facts = meta::read(input);
    let decoded = match format {
        Format::Jpeg => decode_jpeg_scaled(input, opts.long_edge)?,
        Format::Png | Format::WebP => decode_whole(input, format)?,
    };
    let (tw, th) = fit(decoded.width(), decoded.height(), opts.long_edge);
    let full = orient(resize(&decoded, tw, th)?, facts.orientation);
    drop(decoded);
    let (thw, thh) = fit(full.width(), full.height(), opts.thumb_edge);
    let thumb = resize(&full, thw, thh)?;
    finish(&full, &thumb, opts.quality, facts, encode)
}

/// The plain route, kept for the benchmark: full decode, `image`'s own resize (Lanczos3),
/// orientation and encoder. Produces the same kind of output as [`process`].
pub fn process_plain(input: &[u8], opts: &PhotoOptions) -> Result<Processed, PhotoError> {
    let format = sniff(input)?;
    let facts = meta::read(input);
    let decoded = decode_whole(input, format)?;
    let (tw, th) = fit(decoded.width(), decoded.height(), opts.long_edge);
    let full = image::imageops::resize(&decoded, tw, th, image::imageops::FilterType::Lanczos3);
    let full = orient(full, facts.orientation);
    let (thw, thh) = fit(full.width(), full.height(), opts.thumb_edge);
    let thumb = image::imageops::resize(&full, thw, thh, image::imageops::FilterType::Lanczos3);
    finish(&full, &thumb, opts.quality, facts, encode_plain)
}

fn finish(
    full: &RgbImage,
    thumb: &RgbImage,
    quality: u8,
    facts: meta::ExifFacts,
    encode: fn(&RgbImage, u8) -> Result<Vec<u8>, PhotoError>,
) -> Result<Processed, PhotoError> {
    let full_bytes = encode(full, quality)?;
    let thumb_bytes = encode(thumb, quality)?;
    Ok(Processed {
        full_sha256: sha256_hex(&full_bytes),
        thumb_sha256: sha256_hex(&thumb_bytes),
        full: full_bytes,
        thumb: thumb_bytes,
        width: full.width(),
        height: full.height(),
        taken_at: facts.taken_at,
        gps: facts.gps,
    })
}

/// Lower-case hex SHA-256 of `bytes`: the address of a stored file.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn corrupt(format: Format, e: impl std::fmt::Display) -> PhotoError {
    PhotoError::Corrupt {
        format: format.name(),
        reason: e.to_string(),
    }
}

/// Decodes a JPEG at the smallest DCT scale that still covers `long_edge` (see the module
/// comment for why), into RGB.
fn decode_jpeg_scaled(input: &[u8], long_edge: u32) -> Result<RgbImage, PhotoError> {
    let mut dec = jpeg_decoder::Decoder::new(Cursor::new(input));
    dec.set_max_decoding_buffer_size(MAX_JPEG_BUFFER);
    dec.read_info().map_err(|e| corrupt(Format::Jpeg, e))?;
    let info = dec
        .info()
        .ok_or_else(|| corrupt(Format::Jpeg, "no frame header"))?;
    let (w, h) = (u32::from(info.width), u32::from(info.height));
    too_large_pixels(w, h)?;
    let (rw, rh) = fit(w, h, long_edge);
    let (sw, sh) = dec
        .scale(
            u16::try_from(rw).unwrap_or(u16::MAX),
            u16::try_from(rh).unwrap_or(u16::MAX),
        )
        .map_err(|e| corrupt(Format::Jpeg, e))?;
    let pixels = dec.decode().map_err(|e| corrupt(Format::Jpeg, e))?;
    let (sw, sh) = (u32::from(sw), u32::from(sh));
    let n = sw as usize * sh as usize;
    let rgb = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        jpeg_decoder::PixelFormat::L16 => pixels
            .chunks_exact(2)
            .flat_map(|p| [p[0], p[0], p[0]])
            .collect(),
        // The decoder hands Adobe CMYK back inverted-free; a plain conversion is enough for
        // evidence photos (CMYK JPEGs come from scanners, not phones).
        jpeg_decoder::PixelFormat::CMYK32 => pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let k = u16::from(p[3]);
                let ch = |c: u8| u8::try_from(u16::from(c) * k / 255).unwrap_or(255);
                [ch(p[0]), ch(p[1]), ch(p[2])]
            })
            .collect(),
    };
    if rgb.len() < n * 3 {
        return Err(corrupt(
            Format::Jpeg,
            "fewer pixels than the header declares",
        ));
    }
    RgbImage::from_raw(sw, sh, rgb).ok_or_else(|| corrupt(Format::Jpeg, "pixel buffer size"))
}

fn decode_whole(input: &[u8], format: Format) -> Result<RgbImage, PhotoError> {
    let fmt = match format {
        Format::Jpeg => image::ImageFormat::Jpeg,
        Format::Png => image::ImageFormat::Png,
        Format::WebP => image::ImageFormat::WebP,
    };
    let mut reader = image::ImageReader::with_format(Cursor::new(input), fmt);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_INPUT_PIXELS * 4);
    reader.limits(limits);
    let (w, h) = reader.into_dimensions().map_err(|e| corrupt(format, e))?;
    too_large_pixels(w, h)?;
    let mut reader = image::ImageReader::with_format(Cursor::new(input), fmt);
    let mut limits = image::Limits::default();
    limits.max_alloc = Some(MAX_INPUT_PIXELS * 4);
    reader.limits(limits);
    let img = reader.decode().map_err(|e| corrupt(format, e))?;
    Ok(img.into_rgb8())
}

/// Resizes with the SIMD resizer (Lanczos3); a same-size call is a copy.
fn resize(src: &RgbImage, w: u32, h: u32) -> Result<RgbImage, PhotoError> {
    if (w, h) == src.dimensions() {
        return Ok(src.clone());
    }
    let from =
        fr::images::ImageRef::new(src.width(), src.height(), src.as_raw(), fr::PixelType::U8x3)
            .map_err(|e| PhotoError::Process(e.to_string()))?;
    let mut to = fr::images::Image::new(w, h, fr::PixelType::U8x3);
    let options =
        fr::ResizeOptions::new().resize_alg(fr::ResizeAlg::Convolution(fr::FilterType::Lanczos3));
    fr::Resizer::new()
        .resize(&from, &mut to, &options)
        .map_err(|e| PhotoError::Process(e.to_string()))?;
    RgbImage::from_raw(w, h, to.into_vec())
        .ok_or_else(|| PhotoError::Process("resized buffer size".into()))
}

/// Turns a stored image upright per its EXIF orientation (1–8).
fn orient(img: RgbImage, orientation: u8) -> RgbImage {
    use image::imageops::{flip_horizontal, flip_vertical, rotate90, rotate180, rotate270};
    match orientation {
        2 => flip_horizontal(&img),
        3 => rotate180(&img),
        4 => flip_vertical(&img),
        5 => flip_horizontal(&rotate90(&img)),
        6 => rotate90(&img),
        7 => flip_horizontal(&rotate270(&img)),
        8 => rotate270(&img),
        _ => img,
    }
}

/// Encodes RGB pixels as a baseline JPEG (4:2:0) with no metadata segments at all, with the
/// SIMD encoder (`jpeg-encoder`: about 4× faster than `image`'s on 2 MP here).
fn encode(img: &RgbImage, quality: u8) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::with_capacity(img.len() / 8);
    let (w, h) = (
        u16::try_from(img.width()).map_err(|e| PhotoError::Process(e.to_string()))?,
        u16::try_from(img.height()).map_err(|e| PhotoError::Process(e.to_string()))?,
    );
    jpeg_encoder::Encoder::new(&mut out, quality.clamp(1, 100))
        .encode(img.as_raw(), w, h, jpeg_encoder::ColorType::Rgb)
        .map_err(|e| PhotoError::Process(e.to_string()))?;
    Ok(out)
}

/// The plain route's encoder: `image`'s own.
fn encode_plain(img: &RgbImage, quality: u8) -> Result<Vec<u8>, PhotoError> {
    let mut out = Vec::with_capacity(img.len() / 8);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .write_image(
            img.as_raw(),
            img.width(),
            img.height(),
            image::ExtendedColorType::Rgb8,
        )
        .map_err(|e| PhotoError::Process(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fit_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(4000, 3000, 1600), (1600, 1200));
        assert_eq!(fit(3000, 4000, 1600), (1200, 1600));
        assert_eq!(fit(800, 600, 1600), (800, 600));
        assert_eq!(fit(10_000, 1, 320), (320, 1));
    }

    #[test]
    fn signatures_name_what_they_are() {
        assert_eq!(sniff(b""), Err(PhotoError::Empty));
        assert_eq!(sniff(b"\0\0\0\x18ftypheic\0\0\0\0"), Err(PhotoError::Heic));
        assert!(matches!(
            sniff(b"hello, world"),
            Err(PhotoError::Unsupported { .. })
        ));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Ok(Format::Jpeg));
    }
}
