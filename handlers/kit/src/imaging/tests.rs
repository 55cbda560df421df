//! The pipeline natively: every parameter, every limit, exact output sizes
//! (by decoding the outputs), both request forms through the HTTP pipeline,
//! and a property test over hostile inputs of the decode path.

use super::budget::{Refusal, SHARED_MEMORY_BUDGET, SharedBudget};
use super::route::{ResizeOptions, ResizeRequest, decode_base64, negotiate};
use super::test_images::{gradient, jpeg, png, png_rgba};
use super::*;
use crate::config::Config;
use crate::contract::{RESIZE_IMAGE, RESIZE_IMAGE_RAW, is_raw_resize};
use crate::pipeline::{Ctx, Incoming, RawBody, serve_json, serve_raw};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use image::codecs::webp::WebPEncoder;
use image::{GenericImageView, ImageEncoder, RgbImage, RgbaImage};
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::sql::{Database, DbError, Dialect, SqlValue};
#[path = "../../tests/support/sqlite.rs"]
mod sqlite;
use sqlite::Sqlite;

// ---- test images, made here rather than committed ----

fn webp_lossless(img: &RgbImage) -> Vec<u8> {
    let mut out = Vec::new();
    WebPEncoder::new_lossless(&mut out)
        .write_image(img.as_raw(), img.width(), img.height(), ExtendedColorType::Rgb8)
        .unwrap();
    out
}

/// Left half opaque red, right half fully transparent.
fn half_transparent(w: u32, h: u32) -> RgbaImage {
    RgbaImage::from_fn(w, h, |x, _| {
        if x < w / 2 {
            image::Rgba([255, 0, 0, 255])
        } else {
            image::Rgba([0, 0, 255, 0])
        }
    })
}

/// A JPEG whose EXIF says "rotate 90° clockwise to display" (orientation 6).
fn jpeg_with_orientation(img: &RgbImage, orientation: u8) -> Vec<u8> {
    let plain = jpeg(img);
    let tiff: Vec<u8> = [
        &b"MM\0\x2a\0\0\0\x08"[..],                            // big-endian TIFF header, IFD at 8
        &[0, 1],                                               // one entry
        &[0x01, 0x12, 0, 3, 0, 0, 0, 1, 0, orientation, 0, 0], // Orientation, SHORT, 1
        &[0, 0, 0, 0],                                         // no next IFD
    ]
    .concat();
    let payload = [&b"Exif\0\0"[..], &tiff].concat();
    let length = (payload.len() + 2) as u16;
    [&plain[..2], &[0xFF, 0xE1], &length.to_be_bytes(), &payload, &plain[2..]].concat()
}

fn params(width: u32, height: u32, fit: Fit, format: Format) -> Params {
    Params {
        width,
        height,
        fit,
        format,
        quality: DEFAULT_QUALITY,
    }
}

fn decoded(resized: &Resized) -> DynamicImage {
    let guessed = image::guess_format(&resized.bytes).unwrap();
    let expected = match resized.format {
        Format::Webp => ImageFormat::WebP,
        Format::Jpeg => ImageFormat::Jpeg,
        Format::Png => ImageFormat::Png,
    };
    assert_eq!(guessed, expected);
    let image = image::load_from_memory(&resized.bytes).unwrap();
    assert_eq!((image.width(), image.height()), (resized.width, resized.height));
    image
}

// ---- parameters ----

#[test]
fn every_fit_gives_the_documented_size_in_every_format() {
    let inputs = [
        ("jpeg", jpeg(&gradient(400, 300))),
        ("png", png(&gradient(400, 300))),
        ("webp", webp_lossless(&gradient(400, 300))),
    ];
    for (name, input) in &inputs {
        for format in Format::ALL {
            for (fit, expected) in [
                (Fit::Cover, (256, 256)),
                (Fit::Contain, (256, 256)),
                (Fit::Fill, (256, 256)),
                (Fit::Inside, (256, 192)),
            ] {
                let out = resize(input, &params(256, 256, fit, format)).unwrap();
                assert_eq!((out.width, out.height), expected, "{name} {fit:?} {format:?}");
                decoded(&out);
            }
        }
    }
}

#[test]
fn resize_with_pauses_between_stages_and_while_encoding_webp() {
    // A host that cannot preempt the guest relies on these pauses (Spin: the
    // images-resize component yields its thread there), so none may go.
    // Grain makes the JPEG big, like a photo's: about 700 KB for 1 MP.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let grainy = RgbImage::from_fn(1024, 1024, |x, y| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let grain = (state >> 59) as u8;
        image::Rgb([(x / 4) as u8 + grain, (y / 4) as u8 + grain, 128 + grain])
    });
    let input = jpeg(&grainy);
    let count = |format| {
        let mut pauses = 0;
        let plain = resize(&input, &params(256, 256, Fit::Cover, format)).unwrap();
        let paused = resize_with(&input, &params(256, 256, Fit::Cover, format), &mut || pauses += 1).unwrap();
        assert_eq!(plain.bytes, paused.bytes, "pausing must not change the output");
        pauses
    };
    // While decoding (the JPEG is shrunk on load to 512x512), once per
    // DECODE_PAUSE_BYTES read; then after decoding and after resizing.
    let decoding = input.len() / DECODE_PAUSE_BYTES;
    assert!(
        decoding >= 16,
        "a {} byte JPEG is too small to show the pauses",
        input.len()
    );
    let png = count(Format::Png);
    assert!(
        (decoding + 2..=decoding + 3).contains(&png),
        "{png} pauses for {decoding} while decoding"
    );
    // And libwebp's hook, at least once per row of 16-pixel macroblocks.
    let webp = count(Format::Webp);
    assert!(webp >= png + 256 / 16, "{webp} pauses");
}

#[test]
fn extreme_boxes() {
    let input = jpeg(&gradient(300, 200));
    for (w, h) in [(1, 1), (1, 4096), (4096, 1), (4096, 4096)] {
        for fit in [Fit::Cover, Fit::Contain, Fit::Fill] {
            let out = resize(&input, &params(w, h, fit, Format::Png)).unwrap();
            assert_eq!((out.width, out.height), (w, h), "{fit:?}");
        }
        let out = resize(&input, &params(w, h, Fit::Inside, Format::Png)).unwrap();
        assert!(out.width <= w && out.height <= h && out.width >= 1 && out.height >= 1);
    }
    // Same size: no resampling at all, still re-encoded: the pixels are
    // what the JPEG decoder (jpeg-decoder, pausing) gives.
    let out = resize(&input, &params(300, 200, Fit::Cover, Format::Png)).unwrap();
    let pixels = jpeg_decoder::Decoder::new(&input[..]).decode().unwrap();
    assert_eq!(decoded(&out).to_rgb8().into_raw(), pixels);
}

#[test]
fn zero_or_oversized_sides_are_refused() {
    let input = png(&gradient(8, 8));
    for (w, h) in [(0, 10), (10, 0), (4097, 10)] {
        assert!(matches!(
            resize(&input, &params(w, h, Fit::Cover, Format::Png)),
            Err(ImagingError::BadParams(_))
        ));
    }
}

#[test]
fn cover_crops_the_centre_and_contain_letterboxes() {
    // Wide source: a red band left, green middle, blue right.
    let source = RgbImage::from_fn(300, 100, |x, _| match x {
        0..100 => image::Rgb([255, 0, 0]),
        100..200 => image::Rgb([0, 255, 0]),
        _ => image::Rgb([0, 0, 255]),
    });
    let input = png(&source);
    let cover = decoded(&resize(&input, &params(50, 50, Fit::Cover, Format::Png)).unwrap()).to_rgb8();
    // The centre square is all green: nothing of the red or blue bands.
    assert!(cover.pixels().all(|p| p[1] > 200 && p[0] < 40 && p[2] < 40));
    let contain = decoded(&resize(&input, &params(60, 60, Fit::Contain, Format::Png)).unwrap()).to_rgb8();
    // 60x20 of image centred on black: rows 0..20 and 40..60 are black.
    assert_eq!(contain.get_pixel(30, 5).0, [0, 0, 0]);
    assert_eq!(contain.get_pixel(30, 55).0, [0, 0, 0]);
    assert!(contain.get_pixel(30, 30)[1] > 200);
    let fill = decoded(&resize(&input, &params(30, 90, Fit::Fill, Format::Png)).unwrap()).to_rgb8();
    assert!(fill.get_pixel(2, 45)[0] > 200 && fill.get_pixel(27, 45)[2] > 200);
}

#[test]
fn quality_changes_lossy_sizes_only() {
    let input = jpeg(&gradient(600, 400));
    for format in [Format::Webp, Format::Jpeg] {
        let low = resize(
            &input,
            &Params {
                quality: 10,
                ..params(300, 200, Fit::Cover, format)
            },
        )
        .unwrap();
        let high = resize(
            &input,
            &Params {
                quality: 100,
                ..params(300, 200, Fit::Cover, format)
            },
        )
        .unwrap();
        assert!(low.bytes.len() < high.bytes.len(), "{format:?}");
    }
    let a = resize(
        &input,
        &Params {
            quality: 10,
            ..params(300, 200, Fit::Cover, Format::Png)
        },
    )
    .unwrap();
    let b = resize(
        &input,
        &Params {
            quality: 100,
            ..params(300, 200, Fit::Cover, Format::Png)
        },
    )
    .unwrap();
    assert_eq!(a.bytes, b.bytes);
}

#[test]
fn exif_orientation_is_applied() {
    // Stored 200x100: left half red, right half blue. Orientation 6 displays
    // it turned 90° clockwise: 100x200, red on top.
    let stored = RgbImage::from_fn(200, 100, |x, _| {
        if x < 100 {
            image::Rgb([255, 0, 0])
        } else {
            image::Rgb([0, 0, 255])
        }
    });
    let input = jpeg_with_orientation(&stored, 6);
    let out = resize(&input, &params(50, 50, Fit::Inside, Format::Png)).unwrap();
    assert_eq!((out.width, out.height), (25, 50));
    let img = decoded(&out).to_rgb8();
    assert!(img.get_pixel(12, 5)[0] > 200, "red on top");
    assert!(img.get_pixel(12, 45)[2] > 200, "blue at the bottom");
    // Cover into a wide box: the box is read as displayed.
    let out = resize(&input, &params(80, 20, Fit::Cover, Format::Png)).unwrap();
    assert_eq!((out.width, out.height), (80, 20));
    // Orientation 3 (180°): blue left, red right.
    let out = resize(
        &jpeg_with_orientation(&stored, 3),
        &params(40, 20, Fit::Fill, Format::Png),
    )
    .unwrap();
    let img = decoded(&out).to_rgb8();
    assert!(img.get_pixel(2, 10)[2] > 200 && img.get_pixel(37, 10)[0] > 200);
}

#[test]
fn alpha_is_kept_where_the_format_has_it() {
    let input = png_rgba(&half_transparent(200, 100));
    for format in [Format::Webp, Format::Png] {
        let img = decoded(&resize(&input, &params(100, 50, Fit::Fill, format)).unwrap());
        assert!(img.color().has_alpha(), "{format:?}");
        assert_eq!(img.get_pixel(90, 25)[3], 0, "{format:?}: transparent side");
        assert_eq!(img.get_pixel(10, 25)[3], 255, "{format:?}: opaque side");
    }
    // JPEG: flattened onto black.
    let img = decoded(&resize(&input, &params(100, 50, Fit::Fill, Format::Jpeg)).unwrap()).to_rgb8();
    assert!(img.get_pixel(10, 25)[0] > 200);
    assert!(img.get_pixel(90, 25).0.iter().all(|&c| c < 30));
    // Contain pads with transparency when alpha is kept.
    let img = decoded(&resize(&input, &params(100, 100, Fit::Contain, Format::Png)).unwrap());
    assert_eq!(img.get_pixel(10, 5)[3], 0);
}

#[test]
fn schema_defaults_and_bounds_are_the_code_s() {
    let schema: Value = serde_json::from_str(crate::schemas::IMAGE_RESIZE_REQUEST).unwrap();
    let p = &schema["properties"];
    assert_eq!(
        serde_json::from_value::<Fit>(p["fit"]["default"].clone()).unwrap(),
        Fit::default()
    );
    assert_eq!(
        serde_json::from_value::<Format>(p["format"]["default"].clone()).unwrap(),
        Format::default()
    );
    assert_eq!(p["quality"]["default"], DEFAULT_QUALITY);
    assert_eq!(p["width"]["maximum"], MAX_SIDE);
    assert_eq!(p["height"]["maximum"], MAX_SIDE);
    for fit in p["fit"]["enum"].as_array().unwrap() {
        serde_json::from_value::<Fit>(fit.clone()).unwrap();
    }
    for format in p["format"]["enum"].as_array().unwrap() {
        let format = serde_json::from_value::<Format>(format.clone()).unwrap();
        assert!(Format::ALL.contains(&format));
    }
}

// ---- limits ----

#[test]
fn too_many_bytes_is_refused_before_decoding() {
    let big = vec![0u8; MAX_IMAGE_BYTES + 1];
    assert_eq!(
        resize(&big, &params(10, 10, Fit::Cover, Format::Webp)),
        Err(ImagingError::TooManyBytes(MAX_IMAGE_BYTES + 1))
    );
}

#[test]
fn unsupported_formats_are_named() {
    for (data, name) in [
        (&b"GIF89a\x01\0\x01\0\0\0\0;"[..], "Gif"),
        (&b"BM\x3a\0\0\0\0\0\0\0\x36\0\0\0"[..], "Bmp"),
        (&b"hello, world"[..], "not a known image format"),
        (&b""[..], "not a known image format"),
    ] {
        match resize(data, &params(10, 10, Fit::Cover, Format::Webp)) {
            Err(ImagingError::Unsupported(what)) => assert!(what.contains(name), "{what}"),
            other => panic!("{name}: {other:?}"),
        }
    }
}

/// Small real files whose headers claim a huge size: decompression bombs.
fn bombs() -> Vec<(&'static str, Vec<u8>, (u32, u32))> {
    let mut jpeg = jpeg(&gradient(16, 16));
    let sof = jpeg.windows(2).position(|w| w == [0xFF, 0xC0]).unwrap();
    jpeg[sof + 5..sof + 9].copy_from_slice(&[0x1F, 0x40, 0x1F, 0x40]); // 8000x8000
    let mut png = png(&gradient(16, 16));
    png[16..24].copy_from_slice(&[0, 0, 0x27, 0x10, 0, 0, 0x13, 0x88]); // 10000x5000
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    let mut huge_png = png.clone();
    huge_png[16..24].copy_from_slice(&[0, 1, 0x86, 0xA0, 0, 1, 0x86, 0xA0]); // 100000x100000
    let crc = crc32(&huge_png[12..29]);
    huge_png[29..33].copy_from_slice(&crc.to_be_bytes());
    let mut webp = webp_lossless(&gradient(16, 16));
    let vp8l = webp.windows(4).position(|w| w == b"VP8L").unwrap() + 9; // past size and 0x2f
    // 14 bits of width-1 then 14 of height-1, LSB first: 16382 each.
    webp[vp8l] = 0xFE;
    webp[vp8l + 1] = 0xBF;
    webp[vp8l + 2] = 0xFF;
    webp[vp8l + 3] |= 0x0F;
    vec![
        ("jpeg", jpeg, (8000, 8000)),
        ("png", png, (10000, 5000)),
        ("png beyond the decoder's own limits", huge_png, (100_000, 100_000)),
        ("webp", webp, (16383, 16383)),
    ]
}

#[test]
fn declared_pixel_bombs_are_refused_from_the_header() {
    for (name, data, (width, height)) in bombs() {
        assert_eq!(
            resize(&data, &params(10, 10, Fit::Cover, Format::Webp)),
            Err(ImagingError::TooManyPixels { width, height }),
            "{name}"
        );
    }
}

/// A real 16x16 file of `kind` whose header is patched to `w`x`h`.
fn patched(kind: &str, w: u16, h: u16) -> Vec<u8> {
    match kind {
        "jpeg" => {
            let mut jpeg = jpeg(&gradient(16, 16));
            let sof = jpeg.windows(2).position(|x| x == [0xFF, 0xC0]).unwrap();
            jpeg[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
            jpeg[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
            jpeg
        }
        "png16" => {
            let img = image::ImageBuffer::<image::Rgba<u16>, _>::from_pixel(16, 16, image::Rgba([1, 2, 3, 4]));
            let mut png = Vec::new();
            PngEncoder::new(&mut png)
                .write_image(
                    &img.as_raw().iter().flat_map(|v| v.to_be_bytes()).collect::<Vec<_>>(),
                    16,
                    16,
                    ExtendedColorType::Rgba16,
                )
                .unwrap();
            png[16..20].copy_from_slice(&u32::from(w).to_be_bytes());
            png[20..24].copy_from_slice(&u32::from(h).to_be_bytes());
            let crc = crc32(&png[12..29]);
            png[29..33].copy_from_slice(&crc.to_be_bytes());
            png
        }
        _ => unreachable!(),
    }
}

#[test]
fn work_over_the_memory_budget_is_refused_from_the_header() {
    let too_much = |r: Result<Resized, ImagingError>| matches!(r, Err(ImagingError::TooMuchMemory { .. }));
    // 32 MP baseline JPEG: a thumbnail fits, a 4096x4096 output does not.
    let big = patched("jpeg", 8000, 4000);
    assert!(!too_much(resize(&big, &params(256, 256, Fit::Cover, Format::Webp))));
    assert!(too_much(resize(&big, &params(4096, 4096, Fit::Cover, Format::Webp))));
    // 24 MP of 16-bit RGBA: 192 MB decoded plus 96 MB converted.
    let deep = patched("png16", 6000, 4000);
    assert!(too_much(resize(&deep, &params(64, 64, Fit::Cover, Format::Png))));
    assert!(!too_much(resize(
        &patched("png16", 3000, 3000),
        &params(64, 64, Fit::Cover, Format::Png)
    )));
}

#[test]
fn peak_estimate_follows_the_phases() {
    let header = |color, extra| Header {
        width: 1000,
        height: 1000,
        orientation: Orientation::NoTransforms,
        color,
        format: ImageFormat::Jpeg,
        decoder_bytes_per_pixel: extra,
    };
    let n = 1_000_000;
    // RGB8 JPEG to a tiny box: the decoded image dominates.
    let rgb = header(ColorType::Rgb8, 0).peak_bytes(3, (10, 10), (10, 10));
    assert_eq!(rgb, 3 * n + 1000 * 10 * 3 + 300);
    // Progressive: the coefficients come on top while decoding.
    assert_eq!(header(ColorType::Rgb8, 6).peak_bytes(3, (10, 10), (10, 10)), 9 * n);
    // 16-bit RGBA: decoded and converted copies at once.
    assert_eq!(header(ColorType::Rgba16, 0).peak_bytes(4, (10, 10), (10, 10)), 12 * n);
    // Alpha: a premultiplied copy of the source while resizing.
    let rgba = header(ColorType::Rgba8, 0).peak_bytes(4, (10, 10), (10, 10));
    assert_eq!(rgba, 4 * n + 4 * n + 1000 * 10 * 4 + 400);
}

#[test]
fn truncated_and_corrupt_files_are_refused() {
    let img = gradient(64, 64);
    for (name, data) in [("png", png(&img)), ("webp", webp_lossless(&img)), ("jpeg", jpeg(&img))] {
        for cut in [data.len() / 2, 40, 20] {
            let result = resize(&data[..cut], &params(10, 10, Fit::Cover, Format::Webp));
            assert!(
                matches!(result, Err(ImagingError::Corrupt(_))),
                "{name} cut at {cut}: {result:?}"
            );
        }
    }
    // A PNG with its pixel data scrambled: the zlib stream breaks.
    let mut broken = png(&img);
    let idat = broken.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut broken[idat + 6..idat + 40] {
        *b ^= 0x5A;
    }
    assert!(matches!(
        resize(&broken, &params(10, 10, Fit::Cover, Format::Webp)),
        Err(ImagingError::Corrupt(_))
    ));
}

// ---- the route: base64, Accept, both forms through the HTTP pipeline ----

#[test]
fn base64_padding_is_optional_and_errors_say_where() {
    assert_eq!(decode_base64(&STANDARD.encode(b"abcd")).unwrap(), b"abcd");
    assert_eq!(decode_base64(&STANDARD_NO_PAD.encode(b"abcd")).unwrap(), b"abcd");
    let problem = decode_base64("iVBO*w0K").unwrap_err();
    assert_eq!(problem.kind, crate::problem::ProblemKind::InvalidBase64);
    assert!(problem.detail.contains("offset 4"), "{}", problem.detail);
    assert_eq!(
        problem.errors[0].location,
        crate::problem::Location::Pointer("/imageData".into())
    );
    assert_eq!(
        decode_base64("abcde").unwrap_err().kind,
        crate::problem::ProblemKind::InvalidBase64
    );
    // Oversized from the length alone, before decoding.
    let huge = "A".repeat((MAX_IMAGE_BYTES / 3 + 2) * 4);
    assert_eq!(
        decode_base64(&huge).unwrap_err().kind,
        crate::problem::ProblemKind::PayloadTooLarge
    );
}

#[test]
fn accept_picks_the_format() {
    let with = |accept: &str| {
        let mut h = HeaderMap::new();
        h.insert("accept", HeaderValue::from_str(accept).unwrap());
        negotiate(&h)
    };
    assert_eq!(negotiate(&HeaderMap::new()), Format::Webp);
    assert_eq!(with("image/png"), Format::Png);
    assert_eq!(with("image/jpeg;q=0.9, image/png;q=0.5"), Format::Jpeg);
    assert_eq!(with("image/png, image/jpeg"), Format::Jpeg);
    assert_eq!(with("IMAGE/PNG; q=1, */*;q=0.1"), Format::Png);
    assert_eq!(with("image/png;q=0, image/*"), Format::Webp);
    assert_eq!(with("text/html"), Format::Webp);
}

/// A shared budget over a fresh in-memory SQLite database.
fn budget() -> SharedBudget<Sqlite> {
    let db = Sqlite(rusqlite::Connection::open_in_memory().unwrap());
    futures::executor::block_on(SharedBudget::open(db, "test-instance")).unwrap()
}

fn send(request: Request<Bytes>) -> (Response<Bytes>, Option<Value>) {
    send_with(request, &budget())
}

fn send_with(request: Request<Bytes>, budget: &SharedBudget<Sqlite>) -> (Response<Bytes>, Option<Value>) {
    // As the handler dispatches (handlers/images-resize).
    let raw = is_raw_resize(request.uri().path());
    let (head, body) = request.into_parts();
    let incoming = Incoming::new(head, body, Ok(Config::default()));
    let response = futures::executor::block_on(async {
        if raw {
            serve_raw(
                &RESIZE_IMAGE_RAW,
                incoming,
                async |ctx: &Ctx, options: ResizeOptions, image: RawBody| {
                    route::resize_raw(ctx, options, image, budget, &mut || ()).await
                },
            )
            .await
        } else {
            serve_json(&RESIZE_IMAGE, incoming, async |ctx: &Ctx, request: ResizeRequest| {
                route::resize_json(ctx, request, budget, &mut || ()).await
            })
            .await
        }
    });
    let value = serde_json::from_slice(response.body()).ok();
    (response, value)
}

fn post(uri: &str, content_type: &str, body: impl Into<Bytes>) -> Request<Bytes> {
    Request::post(uri)
        .header("content-type", content_type)
        .body(body.into())
        .unwrap()
}

#[test]
fn json_form_answers_base64_webp_by_default() {
    let body = json!({"imageData": STANDARD.encode(jpeg(&gradient(400, 300))), "width": 256, "height": 256});
    let (r, v) = send(post("/images/resize", "application/json", body.to_string()));
    assert_eq!(r.status(), 200, "{v:?}");
    assert_eq!(r.headers()["content-type"], "application/json");
    let bytes = STANDARD.decode(v.unwrap()["image"].as_str().unwrap()).unwrap();
    assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::WebP);
    assert_eq!(image::load_from_memory(&bytes).unwrap().dimensions(), (256, 256));
}

#[test]
fn json_form_honours_every_field() {
    let body = json!({
        "imageData": STANDARD_NO_PAD.encode(png(&gradient(400, 300))),
        "width": 100, "height": 100, "fit": "inside", "format": "jpeg", "quality": 50
    });
    let (r, v) = send(post("/images/resize", "application/json", body.to_string()));
    let bytes = STANDARD.decode(v.unwrap()["image"].as_str().unwrap()).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(image::guess_format(&bytes).unwrap(), ImageFormat::Jpeg);
    assert_eq!(image::load_from_memory(&bytes).unwrap().dimensions(), (100, 75));
}

#[test]
fn json_form_problems() {
    let image = STANDARD.encode(png(&gradient(8, 8)));
    for (body, status, type_uri) in [
        // Not base64: the schema's pattern says so, by pointer.
        (
            json!({"imageData": "%%%", "width": 1, "height": 1}),
            400,
            "/problems/validation-failed",
        ),
        (
            json!({"imageData": "0", "width": 1, "height": 1}),
            400,
            "/problems/validation-failed",
        ),
        (
            json!({"imageData": STANDARD.encode(b"GIF89a...."), "width": 1, "height": 1}),
            415,
            "/problems/unsupported-image",
        ),
        (
            json!({"imageData": image, "width": 0, "height": 5000, "fit": "crop"}),
            400,
            "/problems/validation-failed",
        ),
        (json!({"width": 1, "height": 1}), 400, "/problems/validation-failed"),
        (
            json!({"imageData": STANDARD.encode(&bombs()[0].1), "width": 1, "height": 1}),
            422,
            "/problems/image-too-large",
        ),
        (
            json!({"imageData": STANDARD.encode(&png(&gradient(64, 64))[..100]), "width": 1, "height": 1}),
            422,
            "/problems/corrupt-image",
        ),
    ] {
        let (r, v) = send(post("/images/resize", "application/json", body.to_string()));
        let v = v.unwrap();
        assert_eq!(r.status(), status, "{v}");
        assert_eq!(v["type"], type_uri);
    }
    let (_, v) = send(post(
        "/images/resize",
        "application/json",
        json!({"imageData": image, "width": 0, "height": 5000, "fit": "crop", "x": 1}).to_string(),
    ));
    assert_eq!(v.unwrap()["errors"].as_array().unwrap().len(), 4);
}

#[test]
fn binary_form_answers_bytes_with_their_type() {
    let input = jpeg(&gradient(400, 300));
    let (r, _) = send(post(
        "/images/resize/raw?width=64&height=32",
        "image/jpeg",
        input.clone(),
    ));
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/webp");
    assert_eq!(r.headers()["vary"], "accept");
    assert_eq!(image::load_from_memory(r.body()).unwrap().dimensions(), (64, 32));
    // Accept, then an explicit format that wins over it.
    let mut request = post(
        "/images/resize/raw?width=64&height=32&fit=inside",
        "application/octet-stream",
        input.clone(),
    );
    request
        .headers_mut()
        .insert("accept", HeaderValue::from_static("image/png"));
    let (r, _) = send(request);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(image::load_from_memory(r.body()).unwrap().dimensions(), (43, 32));
    let mut request = post(
        "/images/resize/raw?width=64&height=32&format=jpeg&quality=40",
        "image/png",
        input,
    );
    request
        .headers_mut()
        .insert("accept", HeaderValue::from_static("image/png"));
    let (r, _) = send(request);
    assert_eq!(r.headers()["content-type"], "image/jpeg");
}

#[test]
fn binary_form_checks_its_parameters_by_name() {
    let (r, v) = send(post(
        "/images/resize/raw?width=abc&width=2&height=5000&fit=crop&quality=1.5&imageData=x&colour=red",
        "image/png",
        png(&gradient(8, 8)),
    ));
    assert_eq!(r.status(), 400);
    let v = v.unwrap();
    assert_eq!(v["type"], "/problems/invalid-parameter");
    let mut found: Vec<(String, String)> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["parameter"].as_str().unwrap().into(),
                e["keyword"].as_str().unwrap().into(),
            )
        })
        .collect();
    found.sort();
    let expected = [
        ("colour", "additionalProperties"),
        ("fit", "enum"),
        ("height", "maximum"),
        ("imageData", "additionalProperties"),
        ("quality", "type"),
        ("width", "duplicate"),
        ("width", "type"),
    ];
    assert_eq!(found, expected.map(|(p, k)| (p.to_string(), k.to_string())));
    let (_, v) = send(post("/images/resize/raw", "image/png", png(&gradient(8, 8))));
    let v = v.unwrap();
    let names: Vec<&str> = v["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["parameter"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["width", "height"]);
}

#[test]
fn binary_form_limits_and_media_types() {
    // Declared over 10 MiB: refused before reading.
    let mut request = post("/images/resize/raw?width=1&height=1", "image/png", Bytes::new());
    request
        .headers_mut()
        .insert("content-length", HeaderValue::from(MAX_IMAGE_BYTES + 1));
    let (r, _) = send(request);
    assert_eq!(r.status(), 413);
    // Actually over.
    let (r, _) = send(post(
        "/images/resize/raw?width=1&height=1",
        "image/png",
        vec![0u8; MAX_IMAGE_BYTES + 1],
    ));
    assert_eq!(r.status(), 413);
    // The JSON form may be bigger (base64), the binary form may not.
    let (r, _) = send(post(
        "/images/resize",
        "application/json",
        vec![b' '; MAX_IMAGE_BYTES + 1],
    ));
    assert_eq!(r.status(), 400);
    for content_type in ["text/plain", "image/gif", "multipart/form-data"] {
        let (r, v) = send(post(
            "/images/resize/raw?width=1&height=1",
            content_type,
            png(&gradient(8, 8)),
        ));
        assert_eq!(r.status(), 415);
        assert!(v.unwrap()["detail"].as_str().unwrap().contains("image/png"));
    }
    // The format is sniffed: a PNG sent as image/jpeg is still a PNG.
    let (r, _) = send(post(
        "/images/resize/raw?width=4&height=4",
        "image/jpeg; charset=x",
        png(&gradient(8, 8)),
    ));
    assert_eq!(r.status(), 200);
    let (r, v) = send(post(
        "/images/resize/raw?width=4&height=4",
        "image/png",
        b"not an image".to_vec(),
    ));
    assert_eq!(r.status(), 415);
    assert_eq!(v.unwrap()["type"], "/problems/unsupported-image");
    for (_, bomb, _) in bombs() {
        let (r, v) = send(post("/images/resize/raw?width=4&height=4", "image/png", bomb));
        assert_eq!(r.status(), 422);
        assert_eq!(v.unwrap()["type"], "/problems/image-too-large");
    }
}

// ---- hostile inputs: nothing may panic ----

/// Valid small files of each input format, with alpha and EXIF, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let img = gradient(24, 16);
    vec![
        jpeg(&img),
        jpeg_with_orientation(&img, 6),
        png(&img),
        png_rgba(&half_transparent(12, 9)),
        webp_lossless(&img),
        resize(&png(&img), &params(20, 12, Fit::Fill, Format::Webp))
            .unwrap()
            .bytes,
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Truncate(usize),
    Insert(usize, Vec<u8>),
    Overwrite(usize, Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(i, x)| Mutation::Flip(i, x)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Mutation::Insert(i, b)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8)).prop_map(|(i, b)| Mutation::Overwrite(i, b)),
    ]
}

fn apply(mut data: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let n = data.len().max(1);
        match m {
            Mutation::Flip(i, x) => {
                if let Some(b) = data.get_mut(i % n) {
                    *b ^= x;
                }
            }
            Mutation::Truncate(i) => data.truncate(i % n),
            Mutation::Insert(i, bytes) => {
                let at = (i % n).min(data.len());
                data.splice(at..at, bytes.iter().copied());
            }
            Mutation::Overwrite(i, bytes) => {
                for (k, b) in bytes.iter().enumerate() {
                    if let Some(slot) = data.get_mut((i + k) % n) {
                        *slot = *b;
                    }
                }
            }
        }
    }
    data
}

proptest! {
    // 300 cases per property in `make test`; PROPTEST_CASES=N for a long run.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(300),
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn mutated_images_never_panic(
        seed in 0..6usize,
        mutations in proptest::collection::vec(mutation(), 1..6),
        fit in prop_oneof![Just(Fit::Cover), Just(Fit::Contain), Just(Fit::Fill), Just(Fit::Inside)],
        format in prop_oneof![Just(Format::Webp), Just(Format::Jpeg), Just(Format::Png)],
        w in 1..40u32,
        h in 1..40u32,
    ) {
        let data = apply(seeds()[seed].clone(), &mutations);
        match resize(&data, &params(w, h, fit, format)) {
            Ok(out) => {
                let img = image::load_from_memory(&out.bytes).unwrap();
                prop_assert_eq!((img.width(), img.height()), (out.width, out.height));
            }
            Err(ImagingError::Encode(e)) => prop_assert!(false, "encoder failed: {}", e),
            Err(_) => {}
        }
    }

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..2048), prefix in 0..4usize) {
        // Start with a real signature so the decoders, not the sniffer, see it.
        let magic: [&[u8]; 4] = [b"", b"\xFF\xD8\xFF", b"\x89PNG\r\n\x1a\n", b"RIFF\0\0\0\0WEBPVP8 "];
        let data = [magic[prefix], &data].concat();
        let _ = resize(&data, &params(8, 8, Fit::Cover, Format::Png));
    }
}

#[test]
fn a_full_shared_budget_is_a_503_with_retry_after_and_nothing_decoded() {
    use futures::executor::block_on;
    let dir = tempfile::tempdir().unwrap();
    let open = |name: &str| {
        let db = Sqlite(rusqlite::Connection::open(dir.path().join("db")).unwrap());
        block_on(SharedBudget::open(db, name)).unwrap()
    };
    let (ours, other) = (open("ours"), open("other"));
    block_on(other.claim(SHARED_MEMORY_BUDGET)).unwrap();
    // A 2000x2000 output is past the untracked allowance, so it claims.
    let image = png(&gradient(64, 48));
    let request = |body: Vec<u8>| {
        post(
            "/images/resize/raw?width=2000&height=2000&format=jpeg",
            "image/png",
            body,
        )
    };
    let (response, body) = send_with(request(image.clone()), &ours);
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body = body.unwrap();
    assert_eq!(body["type"], "/problems/server-busy");
    assert!(body["detail"].as_str().unwrap().contains("256 MiB"), "{body}");
    // The header is read before the budget is asked: a broken one is its
    // own problem, whatever the load.
    let (response, _) = send_with(request(image[..40].to_vec()), &ours);
    assert_eq!(response.status(), 422);
    // Once the other instance holds nothing, the same request is served.
    block_on(other.record(0)).unwrap();
    let (response, _) = send_with(request(image), &ours);
    assert_eq!(response.status(), 200);
    // Ours then records what it holds (natively no linear memory: 0), so
    // the other may take everything again.
    assert_eq!(block_on(other.claim(SHARED_MEMORY_BUDGET)), Ok(()));
    assert_eq!(block_on(ours.claim(1)), Err(Refusal::Busy));
}

/// CRC-32 (ISO-HDLC), for writing or rewriting a PNG chunk (also used by
/// `png_rows`' tests).
pub(super) fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = 0xFFFF_FFFFu32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
