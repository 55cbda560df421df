//! The resize itself (Lanczos3, as `sharp`), done in strips of output rows
//! with a pause between strips.
//!
//! `fast_image_resize` resizes in one call; a 4096x4096 output is hundreds
//! of milliseconds of one worker. Each output row depends only on its own
//! window of source rows, so resizing the output strip by strip, each strip
//! from the matching band of the source, does the same work in slices.
//! Alpha is premultiplied once, in place, before the strips, and divided
//! out of the whole output after them, which is what the library does inside
//! its one call (and saves it a premultiplied copy of the source).

use super::ImagingError;
use fast_image_resize::images::{CroppedImageMut, Image};
use fast_image_resize::{CropBox, FilterType, MulDiv, PixelType, ResizeAlg, ResizeOptions, Resizer};

/// Output pixels resized between two pauses: about a millisecond of work in
/// the component for a moderate downscale.
pub(super) const STRIP_PIXELS: u32 = 64 * 1024;

/// Resizes `source` to `size`, cropping the source to the output's aspect
/// ratio first (centred) when `crop`, calling `pause` between strips.
pub(super) fn resize(
    mut source: Image<'static>,
    (width, height): (u32, u32),
    crop: bool,
    pause: &mut dyn FnMut(),
) -> Result<Vec<u8>, ImagingError> {
    let pixel_type = source.pixel_type();
    let (source_w, source_h) = (source.width(), source.height());
    let region = if crop {
        CropBox::fit_src_into_dst_size(source_w, source_h, width, height, Some((0.5, 0.5)))
    } else {
        CropBox {
            left: 0.0,
            top: 0.0,
            width: f64::from(source_w),
            height: f64::from(source_h),
        }
    };
    let alpha = pixel_type == PixelType::U8x4;
    let mul_div = MulDiv::new();
    if alpha {
        mul_div.multiply_alpha_inplace(&mut source).map_err(internal)?;
    }
    let mut target = Image::new(width, height, pixel_type);
    let mut resizer = Resizer::new();
    let rows = (STRIP_PIXELS / width).clamp(1, height);
    // Where output row `y` starts in the source; the last edge is the
    // region's own, so float rounding never reaches past the image.
    let edge = |y: u32| {
        if y == height {
            region.top + region.height
        } else {
            region.top + f64::from(y) * (region.height / f64::from(height))
        }
    };
    let mut y = 0;
    while y < height {
        let n = rows.min(height - y);
        let (top, bottom) = (edge(y), edge(y + n));
        let options = ResizeOptions::new()
            .resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3))
            .crop(region.left, top, region.width, bottom - top)
            .use_alpha(false);
        let mut strip = CroppedImageMut::new(&mut target, 0, y, width, n).map_err(internal)?;
        resizer.resize(&source, &mut strip, &options).map_err(internal)?;
        y += n;
        pause();
    }
    if alpha {
        mul_div.divide_alpha_inplace(&mut target).map_err(internal)?;
    }
    Ok(target.into_vec())
}

/// fast_image_resize refuses only mismatched buffers, pixel types and crop
/// boxes, which the code above rules out: reaching this is a defect.
pub(super) fn internal(error: impl std::fmt::Display) -> ImagingError {
    ImagingError::Encode(format!("resize failed: {error}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The library's one-call resize, as the pipeline did before strips.
    fn one_call(source: &Image<'static>, (w, h): (u32, u32), crop: bool) -> Vec<u8> {
        let mut target = Image::new(w, h, source.pixel_type());
        let mut options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
        if crop {
            options = options.fit_into_destination(Some((0.5, 0.5)));
        }
        Resizer::new().resize(source, &mut target, &options).unwrap();
        target.into_vec()
    }

    fn noise(w: u32, h: u32, channels: u32) -> Vec<u8> {
        let mut state = 0x2545_f491_u32;
        (0..w * h * channels)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 17;
                state ^= state << 5;
                // Every fourth sample of RGBA is alpha: some 0, some 255.
                if channels == 4 && i % 4 == 3 {
                    [0, 255, 128, 7][(state % 4) as usize]
                } else {
                    state as u8
                }
            })
            .collect()
    }

    /// How many samples differ and by how much at most; colours of RGBA
    /// compared premultiplied (the colour of a nearly transparent pixel is
    /// noise, and both results divide it out of a premultiplied value).
    fn difference(a: &[u8], b: &[u8], channels: usize) -> (usize, u8) {
        let weigh = |p: &[u8], i: usize| {
            if channels == 4 && i < 3 {
                (u16::from(p[i]) * u16::from(p[3]) / 255) as u8
            } else {
                p[i]
            }
        };
        let diffs = a
            .chunks_exact(channels)
            .zip(b.chunks_exact(channels))
            .flat_map(|(p, q)| (0..channels).map(move |i| weigh(p, i).abs_diff(weigh(q, i))));
        diffs.fold((0, 0), |(n, most), d| (n + usize::from(d > 0), most.max(d)))
    }

    /// A strip's source band starts at a fraction computed per strip, so an
    /// output row's centre can differ from the one-call centre in the last
    /// bits of an f64, and a pure crop of RGBA (which the library copies
    /// without premultiplying) goes through premultiplied alpha here: some
    /// samples move by one or two levels, no more.
    #[test]
    fn strips_give_the_one_call_result_within_rounding() {
        let shapes = [
            ((640, 480), (64, 64)),
            ((640, 480), (1000, 700)),
            ((300, 900), (299, 901)),
            ((97, 1000), (3, 1000)),
            ((1000, 97), (1000, 3)),
            ((513, 257), (512, 256)),
        ];
        for ((sw, sh), (dw, dh)) in shapes {
            for (pixel_type, channels) in [(PixelType::U8x3, 3), (PixelType::U8x4, 4)] {
                for crop in [false, true] {
                    let pixels = noise(sw, sh, channels);
                    let source = Image::from_vec_u8(sw, sh, pixels, pixel_type).unwrap();
                    let expected = one_call(&source, (dw, dh), crop);
                    let mut pauses = 0u32;
                    let got = resize(source, (dw, dh), crop, &mut || pauses += 1).unwrap();
                    let case = format!("{sw}x{sh} -> {dw}x{dh}, {channels} channels, crop {crop}");
                    let (differ, most) = difference(&got, &expected, channels as usize);
                    assert!(
                        most <= 2,
                        "{case}: {differ} of {} samples differ, by up to {most}",
                        got.len()
                    );
                    assert_eq!(pauses, dh.div_ceil((STRIP_PIXELS / dw).clamp(1, dh)), "{case}");
                }
            }
        }
    }
}
