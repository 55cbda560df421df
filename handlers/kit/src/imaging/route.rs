//! `POST /images/resize` from admitted request to answer
//! ([`crate::contract::RESIZE_IMAGE`]). The pipeline has already checked the
//! method, the media type, the body size and the schema (of the JSON body, or
//! of the query parameters of the binary form); what is left is the image.

use super::budget::{RETRY_AFTER_SECONDS, Refusal, SHARED_MEMORY_BUDGET, SharedBudget, UNTRACKED_BYTES};
use super::footprint::Footprint;
use super::{DEFAULT_QUALITY, Fit, Format, ImagingError, MAX_IMAGE_BYTES, Params};
use crate::orders::store_problem;
use crate::pipeline::{Ctx, json};
use crate::problem::{FieldError, Problem, ProblemKind};
use crate::sql::Database;
use base64::DecodeError;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Deserialize;
use std::borrow::Cow;

/// The JSON body, or the query parameters of the binary form (which has no
/// `imageData`: the body is the image). Optional fields take the schema's
/// defaults (a test keeps the two equal).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeRequest {
    #[serde(default)]
    pub image_data: Option<String>,
    pub width: u32,
    pub height: u32,
    #[serde(default)]
    pub fit: Fit,
    /// Absent: webp for JSON, the best of `Accept` for the binary form.
    pub format: Option<Format>,
    pub quality: Option<u8>,
}

/// Standard alphabet, padding optional: what Node's `Buffer.from(s,
/// "base64")` callers of the original service sent, minus its silent
/// skipping of garbage.
const BASE64_IN: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Resizes the image of an admitted request once `budget` has room for
/// what the instance will hold at the job's peak (else `503` with
/// `Retry-After`), then records what the instance holds; `pause` as in
/// [`super::Job::run`].
pub async fn resize<D: Database>(
    ctx: &Ctx,
    request: ResizeRequest,
    budget: &SharedBudget<D>,
    pause: &mut dyn FnMut(),
) -> Result<Response<Bytes>, Problem> {
    let mut claimed = false;
    let answer = resize_within(ctx, request, budget, &mut claimed, pause).await;
    // Whatever the answer, the row of an instance that holds more than the
    // untracked allowance (or claimed more) now says what it holds, renewed:
    // a memory grown by this job stays grown.
    let held = Footprint::now().memory;
    if (held > UNTRACKED_BYTES || claimed)
        && let Err(e) = budget.record(held).await
    {
        ctx.log.warn(
            "image memory not recorded",
            &[("error", serde_json::json!(e.to_string()))],
        );
    }
    answer
}

async fn resize_within<D: Database>(
    ctx: &Ctx,
    request: ResizeRequest,
    budget: &SharedBudget<D>,
    claimed: &mut bool,
    pause: &mut dyn FnMut(),
) -> Result<Response<Bytes>, Problem> {
    let (image, binary) = match (&ctx.raw, &request.image_data) {
        (Some(raw), _) => (Cow::Borrowed(raw.bytes.as_ref()), true),
        (None, Some(text)) => (Cow::Owned(decode_base64(text)?), false),
        // The schema requires imageData in the JSON form.
        (None, None) => return Err(Problem::internal()),
    };
    let format = match request.format {
        Some(format) => format,
        None if binary => negotiate(&ctx.head.headers),
        None => Format::default(),
    };
    let params = Params {
        width: request.width,
        height: request.height,
        fit: request.fit,
        format,
        quality: request.quality.unwrap_or(DEFAULT_QUALITY),
    };
    let refused = |e: ImagingError| {
        if matches!(e, ImagingError::Encode(_)) {
            ctx.log
                .error("image encoding failed", &[("error", serde_json::json!(e.to_string()))]);
        }
        problem(e)
    };
    let job = super::prepare(&image, &params).map_err(refused)?;
    let at_peak = Footprint::now().with_job(job.peak_bytes());
    if at_peak > UNTRACKED_BYTES {
        match budget.claim(at_peak).await {
            Ok(()) => *claimed = true,
            Err(Refusal::Busy) => return Err(busy()),
            Err(Refusal::Database(e)) => return Err(store_problem(ctx, e)),
        }
    }
    job.fits_in_instance().map_err(refused)?;
    let resized = job.run(pause).map_err(refused)?;
    if !binary {
        let image = STANDARD.encode(&resized.bytes);
        return Ok(json(StatusCode::OK, &serde_json::json!({ "image": image })));
    }
    let mut response = Response::new(Bytes::from(resized.bytes));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(resized.format.media_type()),
    );
    // The format may have come from Accept: caches must key on it.
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// Decodes `imageData`, refusing an oversized image from its length alone.
pub fn decode_base64(text: &str) -> Result<Vec<u8>, Problem> {
    // 3 bytes per 4 characters, less padding: at least this many bytes.
    let at_least = text.trim_end_matches('=').len() / 4 * 3;
    if at_least > MAX_IMAGE_BYTES {
        return Err(problem(ImagingError::TooManyBytes(at_least)));
    }
    BASE64_IN.decode(text).map_err(|e| {
        let why = match e {
            DecodeError::InvalidByte(offset, _) => format!("invalid character at offset {offset}"),
            DecodeError::InvalidLength(length) => format!("a length of {length} symbols is impossible"),
            DecodeError::InvalidLastSymbol(offset, _) => format!("invalid last symbol at offset {offset}"),
            DecodeError::InvalidPadding => "invalid padding".to_string(),
        };
        Problem::new(ProblemKind::InvalidBase64, format!("imageData is not base64: {why}")).with_errors(vec![
            FieldError::at_pointer("/imageData", "contentEncoding", format!("must be base64: {why}")),
        ])
    })
}

/// The format the caller prefers by `Accept`: the highest `q` among ours,
/// ties in the order of [`Format::ALL`]; webp when none is named.
pub fn negotiate(headers: &HeaderMap) -> Format {
    let mut best: Option<(f32, usize)> = None;
    for preference in crate::negotiate::preferences(headers, &header::ACCEPT) {
        let Some(index) = Format::ALL
            .iter()
            .position(|f| preference.value.eq_ignore_ascii_case(f.media_type()))
        else {
            continue;
        };
        let q = preference.q;
        if q > 0.0 && best.is_none_or(|(bq, bi)| q > bq || (q == bq && index < bi)) {
            best = Some((q, index));
        }
    }
    best.map_or(Format::default(), |(_, index)| Format::ALL[index])
}

/// The shared budget is held by other instances.
fn busy() -> Problem {
    Problem::new(
        ProblemKind::ServerBusy,
        format!(
            "the image instances of this host hold its image memory ({} MiB); retry after {RETRY_AFTER_SECONDS} s",
            SHARED_MEMORY_BUDGET >> 20
        ),
    )
    .with_header(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS))
}

/// Each refusal as its own problem type.
fn problem(error: ImagingError) -> Problem {
    let kind = match &error {
        ImagingError::TooManyBytes(_) => ProblemKind::PayloadTooLarge,
        ImagingError::Unsupported(_) => ProblemKind::UnsupportedImage,
        ImagingError::TooManyPixels { .. }
        | ImagingError::TooMuchMemory { .. }
        | ImagingError::InstanceTooSmall { .. } => ProblemKind::ImageTooLarge,
        ImagingError::Corrupt(_) => ProblemKind::CorruptImage,
        ImagingError::BadParams(_) => ProblemKind::ValidationFailed,
        ImagingError::Encode(_) => return Problem::internal(),
    };
    Problem::new(kind, error.to_string())
}
