//! Lossy WebP through libwebp (BSD-3-Clause, vendored and built by
//! `libwebp-sys`). No permissively licensed pure-Rust lossy encoder exists
//! (`image-webp` is lossless only, `zenwebp` is AGPL), and libwebp is what
//! `sharp` itself uses, so sizes and quality match it.
//!
//! The simple API (`WebPEncodeRGB[A]`) uses the default preset at effort 4,
//! which is also `sharp`'s default. libwebp drops the alpha plane by itself
//! when every pixel is opaque.

use super::ImagingError;

/// Encodes tightly packed RGB (`alpha == false`) or RGBA pixels.
pub(super) fn encode(
    pixels: &[u8],
    width: u32,
    height: u32,
    alpha: bool,
    quality: u8,
) -> Result<Vec<u8>, ImagingError> {
    let channels = if alpha { 4 } else { 3 };
    let fail = |why: &str| ImagingError::Encode(format!("WebP encoding failed: {why}"));
    // libwebp takes C ints; the caller bounds each side to MAX_SIDE, so these
    // conversions fail only on a defect.
    let (w, h) = (
        i32::try_from(width).map_err(|_| fail("width"))?,
        i32::try_from(height).map_err(|_| fail("height"))?,
    );
    let stride = w.checked_mul(channels).ok_or_else(|| fail("stride"))?;
    if pixels.len() != (stride as usize) * (height as usize) {
        return Err(fail("pixel buffer size"));
    }
    let mut output: *mut u8 = std::ptr::null_mut();
    // SAFETY: `pixels` holds `height` rows of `stride` bytes (checked above)
    // and outlives the call; libwebp writes a buffer it allocated to `output`
    // and returns its length, or 0 with nothing to free.
    let size = unsafe {
        if alpha {
            libwebp_sys::WebPEncodeRGBA(pixels.as_ptr(), w, h, stride, f32::from(quality), &mut output)
        } else {
            libwebp_sys::WebPEncodeRGB(pixels.as_ptr(), w, h, stride, f32::from(quality), &mut output)
        }
    };
    if size == 0 || output.is_null() {
        return Err(fail("libwebp returned nothing"));
    }
    // SAFETY: libwebp returned `size` initialised bytes at `output`, which we
    // copy once and then free with libwebp's own allocator.
    let bytes = unsafe {
        let bytes = std::slice::from_raw_parts(output, size).to_vec();
        libwebp_sys::WebPFree(output.cast());
        bytes
    };
    Ok(bytes)
}
