//! PNG decoded row by row, giving way as it goes.
//!
//! The `image` crate decodes a PNG in one call, and a PNG's cost follows its
//! pixels, not its bytes: a 2 KB bilevel 4000x4000 file inflates to 16 MB of
//! rows. Decoding through the `png` crate's row API (the same decoder, with
//! the same `EXPAND` transformation `image` sets) lets the caller's `pause`
//! run every [`PAUSE_BYTES`] of decoded rows. The result is the image
//! `image` would have decoded, sample for sample (a test holds the two equal
//! over every colour type, bit depth and interlacing).

use super::{ImagingError, MEMORY_BUDGET};
use image::{DynamicImage, ImageBuffer};
use png::{BitDepth, ColorType, InterlaceInfo, Transformations};
use std::io::Cursor;

/// Decoded bytes between two pauses: about a millisecond of inflating and
/// unfiltering in the component.
pub(super) const PAUSE_BYTES: usize = 256 * 1024;

/// Decodes `input` (a PNG whose header [`super::open`] has accepted), calling
/// `pause` every [`PAUSE_BYTES`] of decoded rows.
pub(super) fn decode(input: &[u8], pause: &mut dyn FnMut()) -> Result<DynamicImage, ImagingError> {
    let limits = png::Limits {
        bytes: usize::try_from(MEMORY_BUDGET).unwrap_or(usize::MAX),
    };
    let mut decoder = png::Decoder::new_with_limits(Cursor::new(input), limits);
    decoder.set_transformations(Transformations::EXPAND);
    let mut reader = decoder.read_info().map_err(corrupt)?;
    let (width, height) = (reader.info().width, reader.info().height);
    let (color, depth) = reader.output_color_type();
    let too_large = || ImagingError::Corrupt("the decoded image does not fit in memory".into());
    let stride = reader.output_line_size(width).ok_or_else(too_large)?;
    let size = reader.output_buffer_size().ok_or_else(too_large)?;
    let wrap = |image: Option<DynamicImage>| {
        image.ok_or_else(|| ImagingError::Corrupt("the decoded rows do not fill the image".into()))
    };
    if depth == BitDepth::Sixteen {
        // Decoded straight into the u16 buffer `image` keeps, as `image`
        // itself does, so a 16-bit PNG costs no second copy.
        let mut samples = vec![0u16; size / 2];
        read_rows(&mut reader, bytemuck::cast_slice_mut(&mut samples), stride, pause)?;
        for sample in &mut samples {
            *sample = u16::from_be(*sample);
        }
        wrap(match color {
            ColorType::Grayscale => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageLuma16),
            ColorType::GrayscaleAlpha => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageLumaA16),
            ColorType::Rgb => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageRgb16),
            ColorType::Rgba => ImageBuffer::from_raw(width, height, samples).map(DynamicImage::ImageRgba16),
            ColorType::Indexed => return Err(unexpanded(color, depth)),
        })
    } else if depth == BitDepth::Eight {
        let mut pixels = vec![0u8; size];
        read_rows(&mut reader, &mut pixels, stride, pause)?;
        wrap(match color {
            ColorType::Grayscale => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageLuma8),
            ColorType::GrayscaleAlpha => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageLumaA8),
            ColorType::Rgb => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8),
            ColorType::Rgba => ImageBuffer::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8),
            ColorType::Indexed => return Err(unexpanded(color, depth)),
        })
    } else {
        Err(unexpanded(color, depth))
    }
}

/// Decodes every row into `pixels` (`stride` bytes a row), de-interlacing
/// Adam7 passes in place, calling `pause` every [`PAUSE_BYTES`] decoded.
fn read_rows(
    reader: &mut png::Reader<Cursor<&[u8]>>,
    pixels: &mut [u8],
    stride: usize,
    pause: &mut dyn FnMut(),
) -> Result<(), ImagingError> {
    let mut since_pause = 0;
    let mut paced = |n: usize| {
        since_pause += n;
        if since_pause >= PAUSE_BYTES {
            pause();
            since_pause = 0;
        }
    };
    if reader.info().interlaced {
        let (color, depth) = reader.output_color_type();
        let bits_per_pixel = color.samples() as u8 * depth as u8;
        while let Some(row) = reader.next_interlaced_row().map_err(corrupt)? {
            let InterlaceInfo::Adam7(pass) = row.interlace() else {
                return Err(ImagingError::Corrupt("an interlaced PNG gave a plain row".into()));
            };
            png::expand_interlaced_row(pixels, stride, row.data(), pass, bits_per_pixel);
            paced(row.data().len());
        }
    } else {
        for line in pixels.chunks_exact_mut(stride) {
            if reader.read_row(line).map_err(corrupt)?.is_none() {
                return Err(ImagingError::Corrupt("the PNG data ends before its last row".into()));
            }
            paced(stride);
        }
        // Past the last row this reads the rest of the image data and
        // checks it, as `image`'s one-call decode does.
        reader.read_row(&mut []).map_err(corrupt)?;
    }
    Ok(())
}

/// `EXPAND` leaves no palette and no depth under 8 bits: reaching this is a
/// change in the `png` crate, refused rather than misread.
fn unexpanded(color: ColorType, depth: BitDepth) -> ImagingError {
    ImagingError::Unsupported(format!("this variant (PNG {color:?} at {depth:?} bits)"))
}

fn corrupt(error: png::DecodingError) -> ImagingError {
    match error {
        png::DecodingError::LimitsExceeded => {
            ImagingError::Corrupt("the decoder would need more memory than the budget".into())
        }
        other => ImagingError::Corrupt(other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imaging::tests::crc32;
    use image::ImageDecoder;
    use image::codecs::png::PngDecoder;

    /// What `image` decodes in one call.
    fn reference(bytes: &[u8]) -> DynamicImage {
        let decoder = PngDecoder::new(Cursor::new(bytes)).unwrap();
        assert!(decoder.total_bytes() > 0);
        DynamicImage::from_decoder(decoder).unwrap()
    }

    /// A PNG of `samples` written by the `png` crate, optionally with a
    /// palette and transparency, never interlaced (the crate cannot).
    fn encoded(
        (w, h): (u32, u32),
        color: ColorType,
        depth: BitDepth,
        samples: &[u8],
        palette: Option<(&[u8], &[u8])>,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, w, h);
        encoder.set_color(color);
        encoder.set_depth(depth);
        if let Some((rgb, alpha)) = palette {
            encoder.set_palette(rgb.to_vec());
            encoder.set_trns(alpha.to_vec());
        }
        let mut writer = encoder.write_header().unwrap();
        writer.write_image_data(samples).unwrap();
        writer.finish().unwrap();
        out
    }

    /// An Adam7-interlaced 8-bit PNG (`channels` 1 or 4), written by hand:
    /// each pass's rows with filter 0, in stored deflate blocks.
    fn adam7(w: u32, h: u32, channels: usize, pixel: impl Fn(u32, u32) -> Vec<u8>) -> Vec<u8> {
        const PASSES: [(u32, u32, u32, u32); 7] = [
            (0, 0, 8, 8),
            (4, 0, 8, 8),
            (0, 4, 4, 8),
            (2, 0, 4, 4),
            (0, 2, 2, 4),
            (1, 0, 2, 2),
            (0, 1, 1, 2),
        ];
        let mut raw = Vec::new();
        for (x0, y0, dx, dy) in PASSES {
            if x0 >= w || y0 >= h {
                continue;
            }
            for y in (y0..h).step_by(dy as usize) {
                raw.push(0);
                for x in (x0..w).step_by(dx as usize) {
                    raw.extend(pixel(x, y));
                }
            }
        }
        let mut zlib = vec![0x78, 0x01];
        let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
        for (i, block) in blocks.iter().enumerate() {
            zlib.push(u8::from(i + 1 == blocks.len()));
            let len = block.len() as u16;
            zlib.extend(len.to_le_bytes());
            zlib.extend((!len).to_le_bytes());
            zlib.extend_from_slice(block);
        }
        let (mut a, mut b) = (1u32, 0u32);
        for byte in &raw {
            a = (a + u32::from(*byte)) % 65_521;
            b = (b + a) % 65_521;
        }
        zlib.extend(((b << 16) | a).to_be_bytes());
        let color = if channels == 1 { 0 } else { 6 };
        let mut ihdr = [w.to_be_bytes(), h.to_be_bytes()].concat();
        ihdr.extend([8, color, 0, 0, 1]);
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        for (kind, data) in [(b"IHDR", ihdr), (b"IDAT", zlib), (b"IEND", Vec::new())] {
            out.extend((data.len() as u32).to_be_bytes());
            let chunk = [&kind[..], &data].concat();
            out.extend_from_slice(&chunk);
            out.extend(crc32(&chunk).to_be_bytes());
        }
        out
    }

    fn assert_same_as_image(bytes: &[u8]) -> usize {
        let mut pauses = 0;
        let ours = decode(bytes, &mut || pauses += 1).unwrap();
        let theirs = reference(bytes);
        assert_eq!(ours.color(), theirs.color());
        assert_eq!((ours.width(), ours.height()), (theirs.width(), theirs.height()));
        assert!(ours.as_bytes() == theirs.as_bytes(), "samples differ");
        pauses
    }

    #[test]
    fn decodes_every_colour_type_and_depth_as_image_does() {
        let (w, h) = (37u32, 23u32);
        let n = (w * h) as usize;
        let ramp = |k: usize| (0..n * k).map(|i| (i * 7 % 251) as u8).collect::<Vec<u8>>();
        let cases: Vec<(ColorType, BitDepth, Vec<u8>)> = vec![
            (ColorType::Grayscale, BitDepth::Eight, ramp(1)),
            (ColorType::GrayscaleAlpha, BitDepth::Eight, ramp(2)),
            (ColorType::Rgb, BitDepth::Eight, ramp(3)),
            (ColorType::Rgba, BitDepth::Eight, ramp(4)),
            (ColorType::Grayscale, BitDepth::Sixteen, ramp(2)),
            (ColorType::GrayscaleAlpha, BitDepth::Sixteen, ramp(4)),
            (ColorType::Rgb, BitDepth::Sixteen, ramp(6)),
            (ColorType::Rgba, BitDepth::Sixteen, ramp(8)),
            // Bilevel: 5 bytes a row of 37 pixels.
            (
                ColorType::Grayscale,
                BitDepth::One,
                (0..5 * h as usize).map(|i| (i * 37) as u8).collect(),
            ),
        ];
        for (color, depth, samples) in cases {
            assert_same_as_image(&encoded((w, h), color, depth, &samples, None));
        }
        // A 4-bit palette with transparency expands to RGBA.
        let indices: Vec<u8> = (0..19 * h as usize).map(|i| (i * 13) as u8).collect();
        let palette: Vec<u8> = (0..16 * 3).map(|i| (i * 5) as u8).collect();
        let alpha: Vec<u8> = (0..16).map(|i| (i * 16) as u8).collect();
        let png = encoded(
            (w, h),
            ColorType::Indexed,
            BitDepth::Four,
            &indices,
            Some((&palette, &alpha)),
        );
        assert_same_as_image(&png);
    }

    #[test]
    fn decodes_adam7_interlaced_images_as_image_does() {
        for (w, h) in [(1, 1), (3, 2), (9, 17), (64, 33)] {
            assert_same_as_image(&adam7(w, h, 1, |x, y| vec![(x * 3 + y * 5) as u8]));
            assert_same_as_image(&adam7(w, h, 4, |x, y| vec![x as u8, y as u8, (x ^ y) as u8, 200]));
        }
    }

    #[test]
    fn gives_way_while_decoding_a_small_file_with_many_pixels() {
        // 1000x1000 bilevel, all black: a few hundred bytes that inflate to
        // a megabyte of 8-bit rows, so about four pauses.
        let png = encoded(
            (1000, 1000),
            ColorType::Grayscale,
            BitDepth::One,
            &vec![0; 125 * 1000],
            None,
        );
        assert!(png.len() < 2_000, "{} bytes", png.len());
        assert_eq!(assert_same_as_image(&png), 1_000_000 / PAUSE_BYTES);
        let interlaced = adam7(1000, 1000, 1, |_, _| vec![0]);
        assert!(assert_same_as_image(&interlaced) >= 1_000_000 / PAUSE_BYTES - 1);
    }

    #[test]
    fn truncated_data_is_corrupt_not_a_panic() {
        let png = encoded((50, 50), ColorType::Rgb, BitDepth::Eight, &vec![9; 50 * 50 * 3], None);
        for cut in [png.len() / 2, png.len() - 20, 60] {
            assert!(
                matches!(decode(&png[..cut], &mut || ()), Err(ImagingError::Corrupt(_))),
                "cut at {cut}"
            );
        }
    }
}
