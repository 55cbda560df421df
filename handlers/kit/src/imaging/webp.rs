//! Lossy WebP through libwebp (BSD-3-Clause, vendored and built by
//! `libwebp-sys`). No permissively licensed pure-Rust lossy encoder exists
//! (`image-webp` is lossless only, `zenwebp` is AGPL), and libwebp is what
//! `sharp` itself uses, so sizes and quality match it.
//!
//! The advanced API with the default preset, lossy, YUV input, like the simple
//! one (`WebPEncodeRGB[A]`), but at effort ("method") [`METHOD`] instead of 4;
//! its progress hook runs the caller's `pause` between macroblock rows.
//! libwebp drops the alpha plane by itself when every pixel is opaque.

use super::ImagingError;
use libwebp_sys::{WebPConfig, WebPMemoryWriter, WebPPicture, WebPPreset};
use std::ffi::c_int;

/// libwebp's effort, 0 (fastest) to 6. `sharp` uses 4; 2 skips the
/// rate-distortion search of the intra modes and is what we use. Measured by
/// `bench/imaging/run.sh` (1 MP JPEG -> 256x256 cover, q85): effort 4 gives
/// 5,860 bytes at SSIM 0.9146, 2 gives 6,046 bytes (+3%) at SSIM 0.9128, and
/// sharp gives 5,928 at 0.9015, so within the 5% size band at better
/// quality, while the component encodes in 13.5 ms instead of 34 ms
/// (wasmtime, scalar libwebp). Natively, effort 3 took as long as 4, and 1
/// and 0 gave 20-30% more bytes.
const METHOD: c_int = 2;

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
    let mut config = WebPConfig::new_with_preset(WebPPreset::WEBP_PRESET_DEFAULT, f32::from(quality))
        .map_err(|()| fail("configuration"))?;
    config.method = METHOD;
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
