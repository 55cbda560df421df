//! Lossy WebP through libwebp (BSD-3-Clause, vendored and built by
//! `libwebp-sys`). No permissively licensed pure-Rust lossy encoder exists
//! (`image-webp` is lossless only, `zenwebp` is AGPL), and libwebp is what
//! `sharp` itself uses, so sizes and quality match it.
//!
//! The advanced API configured as the simple one (`WebPEncodeRGB[A]`) is: the
//! default preset at effort 4, which is also `sharp`'s default, lossy, YUV
//! input. The advanced API is used for its progress hook only, through which
//! the caller's `pause` runs between macroblock rows. libwebp drops the alpha
//! plane by itself when every pixel is opaque.

use super::ImagingError;
use libwebp_sys::{WebPConfig, WebPMemoryWriter, WebPPicture, WebPPreset};
use std::ffi::c_int;

/// Encodes tightly packed RGB (`alpha == false`) or RGBA pixels, calling
/// `pause` as the encoder progresses.
pub(super) fn encode(
    pixels: &[u8],
    (width, height): (u32, u32),
    alpha: bool,
    quality: u8,
    pause: &mut dyn FnMut(),
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
    let config = WebPConfig::new_with_preset(WebPPreset::WEBP_PRESET_DEFAULT, f32::from(quality))
        .map_err(|()| fail("configuration"))?;
    let mut picture = WebPPicture::new().map_err(|()| fail("picture"))?;
    // SAFETY: an all-zero writer is what WebPMemoryWriterInit makes of it.
    let mut writer: WebPMemoryWriter = unsafe { std::mem::zeroed() };
    // The hook gets a thin pointer; it points at the fat `&mut dyn FnMut`.
    let mut pause: &mut dyn FnMut() = pause;
    picture.width = w;
    picture.height = h;
    picture.writer = Some(libwebp_sys::WebPMemoryWrite);
    picture.custom_ptr = (&raw mut writer).cast();
    picture.progress_hook = Some(progress);
    picture.user_data = (&raw mut pause).cast();
    // SAFETY: `pixels` holds `height` rows of `stride` bytes (checked above);
    // `writer` and `pause` outlive the encode, which is the only user of the
    // pointers to them; the picture's own buffers are freed before returning,
    // and the writer's buffer is copied once, then freed by libwebp.
    unsafe {
        libwebp_sys::WebPMemoryWriterInit(&mut writer);
        let imported = if alpha {
            libwebp_sys::WebPPictureImportRGBA(&mut picture, pixels.as_ptr(), stride)
        } else {
            libwebp_sys::WebPPictureImportRGB(&mut picture, pixels.as_ptr(), stride)
        };
        let encoded = imported != 0 && libwebp_sys::WebPEncode(&config, &mut picture) != 0;
        let error = picture.error_code;
        libwebp_sys::WebPPictureFree(&mut picture);
        // A successful encode wrote at least the RIFF header; never make a
        // slice of a null pointer.
        let written = encoded && !writer.mem.is_null() && writer.size > 0;
        let bytes = written.then(|| std::slice::from_raw_parts(writer.mem, writer.size).to_vec());
        libwebp_sys::WebPMemoryWriterClear(&mut writer);
        bytes.ok_or_else(|| fail(&format!("{error:?}")))
    }
}

/// libwebp's progress hook: runs the caller's pause; 1 = go on.
unsafe extern "C" fn progress(_percent: c_int, picture: *const WebPPicture) -> c_int {
    // SAFETY: `user_data` is the `&mut &mut dyn FnMut()` set in `encode`,
    // alive for the whole WebPEncode call that calls this hook.
    let pause = unsafe { &mut *(*picture).user_data.cast::<&mut dyn FnMut()>() };
    pause();
    1
}
