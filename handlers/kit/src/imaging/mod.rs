//! The image pipeline of `POST /images/resize` (feature `imaging`): decode a
//! JPEG, PNG or WebP, apply its EXIF orientation, resize it and encode it
//! again, with every limit of issue 4 enforced before the memory is spent.
//!
//! Plain Rust over byte slices, so it is tested natively; [`route`] turns an
//! HTTP request into a [`Job`] ([`prepare`]), admits it against the host's
//! [`budget`] and runs it ([`Job::run`]).
//!
//! Choices (measured; see the closing note of issue 4):
//! - header: the `image` crate, with only its JPEG, PNG and WebP codecs,
//!   sniffs the format and reads the header first, so the pixel cap and the
//!   memory budget are checked before any pixel buffer exists;
//! - decoders: JPEG through `jpeg-decoder`, giving way as it reads, at 1/2,
//!   1/4 or 1/8 scale when the output is that much smaller (sharp's
//!   shrink-on-load); PNG through the `png` crate row by row, giving way
//!   between rows (`png_rows`); WebP through `image` (`image-webp`) in one
//!   call, its [`Limits`] bounding what it may allocate. `image`'s own JPEG
//!   decoder (zune-jpeg) decodes only what `jpeg-decoder` does not take
//!   (CMYK);
//! - resizer: `fast_image_resize`, Lanczos3 like `sharp`, alpha premultiplied;
//! - encoders: libwebp for lossy WebP (see [`webp`]), the `image` crate's
//!   pure-Rust JPEG and PNG encoders.

pub mod budget;
pub mod footprint;
mod png_rows;
pub mod route;
mod scale;
#[cfg(test)]
mod test_images;
#[cfg(test)]
mod tests;
mod webp;

use fast_image_resize::{PixelType, images::Image};
use image::codecs::jpeg::JpegEncoder;
use image::codecs::png::PngEncoder;
use image::metadata::Orientation;
use image::{ColorType, DynamicImage, ExtendedColorType, ImageDecoder, ImageEncoder, ImageFormat, ImageReader, Limits};
use serde::Deserialize;
use std::io::Cursor;

/// Largest accepted encoded image (the raw body of the binary form, the
/// decoded `imageData` of the JSON form).
pub const MAX_IMAGE_BYTES: usize = crate::contract::IMAGE_LIMIT;

/// Largest accepted pixel count, read from the header before decoding. A
/// 40 MP image decodes to 160 MB of RGBA; anything bigger is refused as a
/// likely decompression bomb.
pub const MAX_PIXELS: u64 = 40_000_000;

/// The most memory one request's pixel buffers may need at once. Spin 4.1
/// sets no per-instance limit by default (its pooling allocator allows
/// 4 GiB), but hosts do (`--max-instance-memory`; Akamai Functions: 128 MiB)
/// and an instance may serve several requests at once, so each request
/// keeps to its own budget, leaving room for the code, the body (up to
/// 14 MiB of JSON, its parsed string and the decoded image) and the
/// allocator's slack. [`resize`] estimates the peak from the header
/// and the plan, before decoding, and refuses what would not fit: a 40 MP
/// JPEG fits for thumbnails but not for a 4096x4096 output, a 16-bit RGBA
/// PNG fits up to about 16 MP. It also bounds what a decoder may allocate.
pub const MEMORY_BUDGET: u64 = 192 * 1024 * 1024;

/// Largest output side, as in the request schema.
pub const MAX_SIDE: u32 = 4096;

/// How the image fills the requested box (`sharp`'s `fit`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Exactly width x height; the image covers the box, centre-cropped.
    #[default]
    Cover,
    /// Exactly width x height; the whole image, letterboxed (transparent when
    /// the image has alpha and the output format keeps it, black otherwise).
    Contain,
    /// Exactly width x height; the aspect ratio is not kept.
    Fill,
    /// The whole image inside the box, aspect kept: one side may be smaller.
    Inside,
}

/// The output encoding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Lossy WebP (libwebp), the smallest of the three: the default.
    #[default]
    Webp,
    /// Baseline JPEG, for clients without WebP; no alpha (flattened on black).
    Jpeg,
    /// Lossless PNG, alpha kept; `quality` does not apply.
    Png,
}

impl Format {
    /// Every format, in the order of preference that breaks ties in `Accept`.
    pub const ALL: [Format; 3] = [Format::Webp, Format::Jpeg, Format::Png];

    /// The `Content-Type` of a raw answer in this format.
    pub fn media_type(self) -> &'static str {
        match self {
            Format::Webp => "image/webp",
            Format::Jpeg => "image/jpeg",
            Format::Png => "image/png",
        }
    }

    fn has_alpha(self) -> bool {
        self != Format::Jpeg
    }
}

/// The default `quality`, as in the request schema.
pub const DEFAULT_QUALITY: u8 = 85;

/// What to make of the image. The route fills it from a validated request,
/// so the ranges of the schema hold; [`resize`] still refuses a zero side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    /// The box's width in pixels, as displayed (after EXIF orientation).
    pub width: u32,
    /// The box's height in pixels, as displayed (after EXIF orientation).
    pub height: u32,
    /// How the image fills the box.
    pub fit: Fit,
    /// The encoding of the result.
    pub format: Format,
    /// 1..=100; used by WebP and JPEG, ignored by PNG (lossless).
    pub quality: u8,
}

/// An encoded result.
#[derive(Debug, PartialEq, Eq)]
pub struct Resized {
    /// The encoded image: the raw answer, or the base64 of the JSON one.
    pub bytes: Vec<u8>,
    /// The encoding of `bytes`.
    pub format: Format,
    /// The output's width: under the box's for `inside` if the aspect says so.
    pub width: u32,
    /// The output's height: under the box's for `inside` if the aspect says so.
    pub height: u32,
}

/// Why an image was refused. Each maps to its own problem type.
#[derive(Debug, PartialEq, Eq)]
pub enum ImagingError {
    /// More encoded bytes than [`MAX_IMAGE_BYTES`].
    TooManyBytes(usize),
    /// Not a JPEG, PNG or WebP (the name of what it is, when known).
    Unsupported(String),
    /// The header declares more than [`MAX_PIXELS`].
    TooManyPixels {
        /// The declared width, named in the answer's detail.
        width: u32,
        /// The declared height, named in the answer's detail.
        height: u32,
    },
    /// The work would need more than [`MEMORY_BUDGET`] bytes at its peak.
    TooMuchMemory {
        /// The image's width, named in the answer's detail.
        width: u32,
        /// The image's height, named in the answer's detail.
        height: u32,
        /// The estimated peak, so the detail can say how far over it is.
        bytes: u64,
    },
    /// The work fits [`MEMORY_BUDGET`], but the instance may not grow to
    /// hold it (the host limits an instance's memory).
    InstanceTooSmall {
        /// The job's estimated peak, input included, that the allocator refused.
        bytes: u64,
    },
    /// Truncated or corrupt data, or a decoder that would allocate too much.
    Corrupt(String),
    /// The parameters cannot be honoured (a zero or too large side).
    BadParams(String),
    /// An encoder failed on a valid image: a defect, not the caller's fault.
    Encode(String),
}

impl std::fmt::Display for ImagingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImagingError::TooManyBytes(n) => write!(f, "the image is {n} bytes; the limit is {MAX_IMAGE_BYTES} bytes"),
            ImagingError::Unsupported(what) => {
                write!(f, "{what} is not supported; send a JPEG, PNG or WebP image")
            }
            ImagingError::TooManyPixels { width, height } => write!(
                f,
                "the image declares {width}x{height} = {} pixels; the limit is {MAX_PIXELS}",
                u64::from(*width) * u64::from(*height)
            ),
            ImagingError::TooMuchMemory { width, height, bytes } => write!(
                f,
                "resizing this {width}x{height} image to the requested box would need about {} MiB; \
                 the limit is {} MiB: ask for a smaller box or send a smaller image",
                bytes.div_ceil(1 << 20),
                MEMORY_BUDGET >> 20
            ),
            ImagingError::InstanceTooSmall { bytes } => write!(
                f,
                "resizing this image to the requested box would need about {} MiB, more than this host \
                 lets an instance hold: ask for a smaller box or send a smaller image",
                bytes.div_ceil(1 << 20)
            ),
            ImagingError::Corrupt(why) => write!(f, "the image could not be decoded: {why}"),
            ImagingError::BadParams(why) | ImagingError::Encode(why) => f.write_str(why),
        }
    }
}

/// Decodes `input`, resizes it per `params` and encodes the result.
pub fn resize(input: &[u8], params: &Params) -> Result<Resized, ImagingError> {
    resize_with(input, params, &mut || ())
}

/// [`prepare`] then [`Job::run`].
pub fn resize_with(input: &[u8], params: &Params, pause: &mut dyn FnMut()) -> Result<Resized, ImagingError> {
    prepare(input, params)?.run(pause)
}

/// A resize whose header has been read and whose peak memory is known,
/// before any pixel is decoded: what the caller needs to admit it.
pub struct Job<'a> {
    input: &'a [u8],
    params: Params,
    decoder: Box<dyn ImageDecoder + 'a>,
    header: Header,
    plan: Plan,
    keep_alpha: bool,
    peak_bytes: u64,
}

/// Reads the header of `input` and plans the resize: every refusal that
/// does not need the pixels (size, format, pixel cap, memory) happens here.
pub fn prepare<'a>(input: &'a [u8], params: &Params) -> Result<Job<'a>, ImagingError> {
    if input.len() > MAX_IMAGE_BYTES {
        return Err(ImagingError::TooManyBytes(input.len()));
    }
    for side in [params.width, params.height] {
        if !(1..=MAX_SIDE).contains(&side) {
            return Err(ImagingError::BadParams(format!(
                "width and height must be 1..={MAX_SIDE}"
            )));
        }
    }
    let (decoder, header) = open(input)?;
    let keep_alpha = header.color.has_alpha() && params.format.has_alpha();
    // The box is asked for as displayed, i.e. after the EXIF orientation; we
    // resize the stored pixels into the box turned back, then orient the small
    // result, which is far cheaper than rotating the full-size image.
    let plan = Plan::new(
        params.fit,
        header.stored((header.width, header.height)),
        (params.width, params.height),
    );
    let plan = Plan {
        content: header.stored(plan.content),
        canvas: header.stored(plan.canvas),
        crop: plan.crop,
    };
    let channels: u64 = if keep_alpha { 4 } else { 3 };
    let peak_bytes = header.peak_bytes(channels, plan.content, plan.canvas);
    if peak_bytes > MEMORY_BUDGET {
        return Err(ImagingError::TooMuchMemory {
            width: header.width,
            height: header.height,
            bytes: peak_bytes,
        });
    }
    Ok(Job {
        input,
        params: *params,
        decoder: Box::new(decoder),
        header,
        plan,
        keep_alpha,
        peak_bytes,
    })
}

impl Job<'_> {
    /// The most memory the job holds at once: its pixel buffers at their
    /// peak (at most [`MEMORY_BUDGET`]) and the encoded input.
    pub fn peak_bytes(&self) -> u64 {
        self.peak_bytes + self.input.len() as u64
    }

    /// Whether this instance can hold the job: asks the allocator for the
    /// job's peak in one block and gives it back (the allocator keeps the
    /// grown memory for the job). Where the host limits an instance's
    /// memory (`--max-instance-memory`; Akamai Functions: 128 MiB) the block
    /// is refused, and the job with it, as `image-too-large`, instead of the
    /// instance trapping halfway through the decode (an empty 500).
    pub fn fits_in_instance(&self) -> Result<(), ImagingError> {
        let bytes = self.peak_bytes();
        let refused = || ImagingError::InstanceTooSmall { bytes };
        let size = usize::try_from(bytes).map_err(|_| refused())?;
        Vec::<u8>::new().try_reserve_exact(size).map_err(|_| refused())
    }

    /// Decodes, resizes and encodes, calling `pause` every millisecond or
    /// so of work: while decoding a PNG (every [`png_rows::PAUSE_BYTES`] of rows)
    /// or a JPEG shrunk on load (every [`DECODE_PAUSE_BYTES`] of its data),
    /// between strips of the resize (every [`scale::STRIP_PIXELS`]), while
    /// encoding WebP (every row of macroblocks) and between stages. A host
    /// that runs a guest on one thread until it returns (Spin) can use it to
    /// serve other requests in between.
    pub fn run(self, pause: &mut dyn FnMut()) -> Result<Resized, ImagingError> {
        self.run_in_stages(pause, &mut |_| ())
    }

    /// [`Job::run`], telling `stage` as each [`Stage`] begins (a caller
    /// times them as spans); a failure belongs to the last stage told.
    pub fn run_in_stages(self, pause: &mut dyn FnMut(), stage: &mut dyn FnMut(Stage)) -> Result<Resized, ImagingError> {
        let Job {
            input,
            params,
            decoder,
            header,
            plan,
            keep_alpha,
            ..
        } = self;
        let (content_w, content_h) = plan.content;
        let (canvas_w, canvas_h) = plan.canvas;
        let channels: u64 = if keep_alpha { 4 } else { 3 };
        stage(Stage::Decode);
        let image = match shrink_on_load(input, (header.width, header.height), plan.content, pause) {
            Some(smaller) => smaller,
            None if header.format == ImageFormat::Png => png_rows::decode(input, pause)?,
            None => DynamicImage::from_decoder(decoder).map_err(decode_error)?,
        };
        pause();
        let (width, height) = (image.width(), image.height());
        let (pixels, pixel_type) = if keep_alpha {
            (image.into_rgba8().into_raw(), PixelType::U8x4)
        } else if image.color().has_alpha() {
            // JPEG has no alpha: flatten onto black, as sharp (libvips) does.
            (flatten_on_black(&image.into_rgba8().into_raw()), PixelType::U8x3)
        } else {
            (image.into_rgb8().into_raw(), PixelType::U8x3)
        };
        pause();
        stage(Stage::Resize);
        let content = if (content_w, content_h) == (width, height) {
            pixels
        } else {
            let source = Image::from_vec_u8(width, height, pixels, pixel_type).map_err(scale::internal)?;
            scale::resize(source, plan.content, plan.crop, pause)?
        };
        let canvas = if plan.canvas == plan.content {
            content
        } else {
            letterbox(&content, plan.content, plan.canvas, channels as usize)
        };
        let mut out = if keep_alpha {
            image::RgbaImage::from_raw(canvas_w, canvas_h, canvas).map(DynamicImage::ImageRgba8)
        } else {
            image::RgbImage::from_raw(canvas_w, canvas_h, canvas).map(DynamicImage::ImageRgb8)
        }
        .ok_or_else(|| ImagingError::Encode("pixel buffer size".into()))?;
        out.apply_orientation(header.orientation);
        pause();
        let (width, height) = (out.width(), out.height());
        stage(Stage::Encode);
        let bytes = encode(&out, &params, pause)?;
        stage(Stage::Done);
        Ok(Resized {
            bytes,
            format: params.format,
            width,
            height,
        })
    }
}

/// The stages of [`Job::run_in_stages`], in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// The pixels decoded (shrunk on load when the format allows).
    Decode,
    /// Scaled, cropped or letterboxed into the box, and oriented.
    Resize,
    /// Encoded in the output format.
    Encode,
    /// The encoded bytes are ready.
    Done,
}

impl Stage {
    /// The stage's span name.
    pub fn span_name(self) -> &'static str {
        match self {
            Stage::Decode => "image decode",
            Stage::Resize => "image resize",
            Stage::Encode => "image encode",
            Stage::Done => "image done",
        }
    }
}

/// A refusal on a span: its class, never the image's details.
impl crate::span::SpanError for ImagingError {
    fn error_type(&self) -> &'static str {
        match self {
            ImagingError::TooManyBytes(_) => "too-many-bytes",
            ImagingError::Unsupported(_) => "unsupported-image",
            ImagingError::TooManyPixels { .. } => "too-many-pixels",
            ImagingError::TooMuchMemory { .. } => "too-much-memory",
            ImagingError::InstanceTooSmall { .. } => "instance-too-small",
            ImagingError::Corrupt(_) => "corrupt-image",
            ImagingError::BadParams(_) => "bad-parameters",
            ImagingError::Encode(_) => "encode-failed",
        }
    }

    fn description(&self) -> String {
        format!("image refused: {}", self.error_type())
    }
}

/// What the output is made of, in displayed orientation.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    /// The size of the output image.
    canvas: (u32, u32),
    /// The size the image is resized to, centred on the canvas.
    content: (u32, u32),
    /// Crop the source to the content's aspect ratio first (cover).
    crop: bool,
}

impl Plan {
    fn new(fit: Fit, (src_w, src_h): (u32, u32), (box_w, box_h): (u32, u32)) -> Plan {
        let boxed = (box_w, box_h);
        match fit {
            Fit::Cover => Plan {
                canvas: boxed,
                content: boxed,
                crop: true,
            },
            Fit::Fill => Plan {
                canvas: boxed,
                content: boxed,
                crop: false,
            },
            Fit::Inside | Fit::Contain => {
                // The largest size of the source's aspect that fits the box;
                // f64 is exact for these integers, and each side stays >= 1.
                let scale = (f64::from(box_w) / f64::from(src_w)).min(f64::from(box_h) / f64::from(src_h));
                let side = |s: u32, max: u32| ((f64::from(s) * scale).round() as u32).clamp(1, max);
                let content = (side(src_w, box_w), side(src_h, box_h));
                let canvas = if fit == Fit::Inside { content } else { boxed };
                Plan {
                    canvas,
                    content,
                    crop: false,
                }
            }
        }
    }
}

/// Whether the orientation turns the image by a quarter.
fn swaps_sides(orientation: Orientation) -> bool {
    matches!(
        orientation,
        Orientation::Rotate90 | Orientation::Rotate270 | Orientation::Rotate90FlipH | Orientation::Rotate270FlipH
    )
}

/// Centres `content` on a canvas of zeros: transparent for RGBA, black for RGB.
fn letterbox(content: &[u8], (w, h): (u32, u32), (cw, ch): (u32, u32), channels: usize) -> Vec<u8> {
    let (w, h, cw, ch) = (w as usize, h as usize, cw as usize, ch as usize);
    let mut canvas = vec![0u8; cw * ch * channels];
    let (left, top) = ((cw - w) / 2, (ch - h) / 2);
    for (y, row) in content.chunks_exact(w * channels).enumerate() {
        let start = ((top + y) * cw + left) * channels;
        canvas[start..start + row.len()].copy_from_slice(row);
    }
    canvas
}

fn encode(image: &DynamicImage, params: &Params, pause: &mut dyn FnMut()) -> Result<Vec<u8>, ImagingError> {
    let (w, h) = (image.width(), image.height());
    let alpha = image.color().has_alpha();
    let color = if alpha {
        ExtendedColorType::Rgba8
    } else {
        ExtendedColorType::Rgb8
    };
    let mut out = Vec::new();
    let written = match params.format {
        Format::Webp => return webp::encode(image.as_bytes(), (w, h), alpha, params.quality, pause),
        Format::Jpeg => {
            JpegEncoder::new_with_quality(&mut out, params.quality).write_image(image.as_bytes(), w, h, color)
        }
        Format::Png => PngEncoder::new(&mut out).write_image(image.as_bytes(), w, h, color),
    };
    written.map_err(|e| ImagingError::Encode(format!("{:?} encoding failed: {e}", params.format)))?;
    Ok(out)
}

/// What the header says, before any pixel is decoded.
#[derive(Clone, Copy, Debug)]
struct Header {
    width: u32,
    height: u32,
    orientation: Orientation,
    color: ColorType,
    format: ImageFormat,
    /// What the decoder needs besides its output, per pixel: the
    /// coefficients of a progressive JPEG (i16 for each of 3 samples), the
    /// ARGB or YUV planes of WebP; PNG and baseline JPEG decode row by row.
    decoder_bytes_per_pixel: u64,
}

impl Header {
    /// A size as displayed turned into the stored pixels' orientation.
    fn stored(&self, (w, h): (u32, u32)) -> (u32, u32) {
        if swaps_sides(self.orientation) { (h, w) } else { (w, h) }
    }

    /// An upper bound of the bytes alive at once, phase by phase: decoding,
    /// conversion to 8-bit RGB(A), resizing (fast_image_resize's vertical
    /// pass keeps a source-wide, destination-high buffer, and premultiplies
    /// a copy of the source when there is alpha), letterboxing and encoding.
    fn peak_bytes(&self, channels: u64, (content_w, content_h): (u32, u32), (canvas_w, canvas_h): (u32, u32)) -> u64 {
        let pixels = u64::from(self.width) * u64::from(self.height);
        let decoded = pixels * u64::from(self.color.bytes_per_pixel());
        let converted = pixels * channels;
        let decode = decoded + pixels * self.decoder_bytes_per_pixel;
        let convert = if decoded == converted {
            decoded
        } else {
            decoded + converted
        };
        let content = u64::from(content_w) * u64::from(content_h) * channels;
        let premultiplied = if channels == 4 { converted } else { 0 };
        let vertical_pass = u64::from(self.width) * u64::from(content_h) * channels;
        let resize = converted + premultiplied + vertical_pass + content;
        let canvas = u64::from(canvas_w) * u64::from(canvas_h) * channels;
        // Letterboxing keeps both; orienting copies the canvas; encoders
        // produce at most about one more canvas.
        let finish = content + 2 * canvas;
        decode.max(convert).max(resize).max(finish)
    }
}

/// Reads the header and refuses what is over the pixel cap; the decoder is
/// left ready to decode.
fn open(input: &[u8]) -> Result<(impl ImageDecoder + '_, Header), ImagingError> {
    let mut reader = ImageReader::new(Cursor::new(input))
        .with_guessed_format()
        .map_err(|e| ImagingError::Corrupt(e.to_string()))?;
    let format = match reader.format() {
        Some(format @ (ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP)) => format,
        Some(other) => return Err(ImagingError::Unsupported(format!("{other:?}"))),
        None => return Err(ImagingError::Unsupported("the data (not a known image format)".into())),
    };
    let decoder_bytes_per_pixel = match format {
        ImageFormat::Jpeg if jpeg_is_progressive(input) => 6,
        ImageFormat::WebP => 4,
        _ => 0,
    };
    if format == ImageFormat::Jpeg && !jpeg_is_complete(input) {
        // zune-jpeg fills a truncated scan with grey and succeeds; sharp
        // (libvips, fail on warnings) refuses such a file, and so do we.
        return Err(ImagingError::Corrupt(
            "the JPEG data ends before its last scan does".into(),
        ));
    }
    // A PNG may declare up to 2^31 pixels a side, far past what the decoder
    // agrees to open (it fails with a limits error that says nothing of the
    // size): read the declared size from IHDR first, so such a file is
    // `image-too-large` like every other pixel bomb, not `corrupt-image`.
    if format == ImageFormat::Png
        && let Some((width, height)) = png_declared_size(input)
        && u64::from(width) * u64::from(height) > MAX_PIXELS
    {
        return Err(ImagingError::TooManyPixels { width, height });
    }
    let mut limits = Limits::default();
    limits.max_alloc = Some(MEMORY_BUDGET);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(ImagingError::TooManyPixels { width, height });
    }
    if width == 0 || height == 0 {
        return Err(ImagingError::Corrupt("the image has no pixels".into()));
    }
    // A broken EXIF block is no reason to refuse the pixels.
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let header = Header {
        width,
        height,
        orientation,
        color: decoder.color_type(),
        format,
        decoder_bytes_per_pixel,
    };
    Ok((decoder, header))
}

/// A JPEG decoded by `jpeg-decoder`, pausing as it reads, straight at 1/2,
/// 1/4 or 1/8 of its size when the result still covers `content` (the size
/// it is resized to): the reduced IDCT skips most of the decoding work,
/// which is what sharp's shrink-on-load does. Otherwise at full size, still
/// pausing: `image`'s own JPEG decoder (zune-jpeg) is about 1.6x faster
/// natively (12 MP: 41 ms against 66 ms) but decodes in one call, and a
/// 20 MP image is then a few hundred milliseconds of a worker that nothing
/// else can use. `None` when the image is not a JPEG or is in a pixel format
/// this path does not take (CMYK): `image` then decodes it.
fn shrink_on_load(
    input: &[u8],
    (width, height): (u32, u32),
    (content_w, content_h): (u32, u32),
    pause: &mut dyn FnMut(),
) -> Option<DynamicImage> {
    if !input.starts_with(&[0xFF, 0xD8]) {
        return None;
    }
    let headroom =
        (f64::from(width) / f64::from(content_w.max(1))).min(f64::from(height) / f64::from(content_h.max(1)));
    let factor = [8u32, 4, 2]
        .into_iter()
        .find(|&k| f64::from(k) <= headroom)
        .unwrap_or(1);
    let wanted = |side: u32| u16::try_from(side.div_ceil(factor)).ok();
    let mut decoder = jpeg_decoder::Decoder::new(Pausing::new(input, pause));
    decoder.set_max_decoding_buffer_size(usize::try_from(MEMORY_BUDGET).ok()?);
    decoder.read_info().ok()?;
    let (w, h) = decoder.scale(wanted(width)?, wanted(height)?).ok()?;
    let pixels = decoder.decode().ok()?;
    let format = decoder.info()?.pixel_format;
    let (w, h) = (u32::from(w), u32::from(h));
    match format {
        jpeg_decoder::PixelFormat::RGB24 => image::RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
        jpeg_decoder::PixelFormat::L8 => image::GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        _ => None,
    }
}

/// How much compressed data a JPEG decode reads between two pauses: about
/// half a millisecond of decoding in the component (the 400 KB bench photo
/// decodes at half size in about 20 ms under wasmtime). 8 and 16 KiB
/// measured the same under Spin (GET while resizing, `make bench`).
pub const DECODE_PAUSE_BYTES: usize = 8 * 1024;

/// The input as jpeg-decoder reads it, calling `pause` every
/// [`DECODE_PAUSE_BYTES`]. jpeg-decoder pulls the entropy-coded data a byte at
/// a time as it decodes and transforms each row of blocks, so the pauses fall
/// between rows of work, not before or after all of it.
struct Pausing<'a> {
    data: &'a [u8],
    pause: &'a mut dyn FnMut(),
    until_pause: usize,
}

impl<'a> Pausing<'a> {
    fn new(data: &'a [u8], pause: &'a mut dyn FnMut()) -> Self {
        Pausing {
            data,
            pause,
            until_pause: DECODE_PAUSE_BYTES,
        }
    }

    /// Notes `n` more bytes read, pausing when they complete an interval.
    fn count(&mut self, n: usize) {
        if n >= self.until_pause {
            (self.pause)();
            self.until_pause = DECODE_PAUSE_BYTES;
        } else {
            self.until_pause -= n;
        }
    }
}

impl std::io::Read for Pausing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = std::io::Read::read(&mut self.data, buf)?;
        self.count(n);
        Ok(n)
    }

    // What jpeg-decoder calls for every byte: the slice's own, which has a
    // one-byte fast path, instead of the default loop over `read`.
    fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        std::io::Read::read_exact(&mut self.data, buf)?;
        self.count(buf.len());
        Ok(())
    }
}

/// Whether the JPEG has a progressive frame (SOF2), whose decoder keeps every
/// coefficient until the last scan. An SOF2 inside an EXIF thumbnail also
/// counts: the estimate errs on the safe side.
fn jpeg_is_progressive(input: &[u8]) -> bool {
    input.windows(2).any(|w| w == [0xFF, 0xC2])
}

/// The width and height a PNG's IHDR chunk declares (it must come first,
/// right after the 8-byte signature).
fn png_declared_size(input: &[u8]) -> Option<(u32, u32)> {
    let ihdr = input.get(8..24)?;
    if &ihdr[4..8] != b"IHDR" {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes([ihdr[at], ihdr[at + 1], ihdr[at + 2], ihdr[at + 3]]);
    Some((be(8), be(12)))
}

/// Whether an end-of-image marker follows the last start-of-scan marker.
/// Both are unambiguous: inside entropy-coded data a 0xFF byte is always
/// followed by 0x00 or a restart marker. Looking after the *last* scan skips
/// an EXIF thumbnail's own markers, which come before the main image.
fn jpeg_is_complete(input: &[u8]) -> bool {
    let Some(last_scan) = input.windows(2).rposition(|w| w == [0xFF, 0xDA]) else {
        return false;
    };
    input[last_scan..].windows(2).any(|w| w == [0xFF, 0xD9])
}

fn decode_error(error: image::ImageError) -> ImagingError {
    match error {
        image::ImageError::Unsupported(e) => ImagingError::Unsupported(format!("this variant ({e})")),
        other => ImagingError::Corrupt(other.to_string()),
    }
}

fn flatten_on_black(rgba: &[u8]) -> Vec<u8> {
    rgba.chunks_exact(4)
        .flat_map(|p| {
            let a = u16::from(p[3]);
            [0, 1, 2].map(|i| ((u16::from(p[i]) * a + 127) / 255) as u8)
        })
        .collect()
}
