//! `POST /images/resize` and `POST /images/resize/raw` from admitted request
//! to answer ([`crate::contract::RESIZE_IMAGE`],
//! [`crate::contract::RESIZE_IMAGE_RAW`]). The pipeline has already checked
//! the method, the media type, the body size and the schema (of the JSON
//! body, or of the query parameters of the raw form); what is left is the
//! image.

use super::budget::{RETRY_AFTER_SECONDS, Refusal, SHARED_MEMORY_BUDGET, SharedBudget, UNTRACKED_BYTES};
use super::footprint::Footprint;
use super::{DEFAULT_QUALITY, Fit, Format, ImagingError, MAX_IMAGE_BYTES, Params, Stage};
use crate::pipeline::{Ctx, RawBody, json};
use crate::problem::{FieldError, Problem, ProblemKind};
use crate::span::{Span, SpanKind};
use crate::sql::Database;
use base64::DecodeError;
use base64::Engine;
use base64::engine::DecodePaddingMode;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use serde::Deserialize;

/// The JSON body of `POST /images/resize`: the image in base64 and the
/// options.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeRequest {
    /// The image, base64 (padding optional).
    pub image_data: String,
    /// Everything but the image.
    #[serde(flatten)]
    pub options: ResizeOptions,
}

/// What to make of the image: the query parameters of the raw form, the
/// other fields of the JSON form. Optional fields take the schema's
/// defaults (a test keeps the two equal).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResizeOptions {
    /// Target width in pixels.
    pub width: u32,
    /// Target height in pixels.
    pub height: u32,
    /// How the image fills the target box.
    #[serde(default)]
    pub fit: Fit,
    /// Absent: webp for JSON, the best of `Accept` for the raw form.
    pub format: Option<Format>,
    /// Encoder quality for JPEG and lossy WebP, 1-100.
    pub quality: Option<u8>,
}

impl ResizeOptions {
    /// The job's parameters, in `format` (the caller decides it: the JSON
    /// form's default, or `Accept` for the raw form).
    fn params(&self, format: Format) -> Params {
        Params {
            width: self.width,
            height: self.height,
            fit: self.fit,
            format,
            quality: self.quality.unwrap_or(DEFAULT_QUALITY),
        }
    }
}

/// Standard alphabet, padding optional: what Node's `Buffer.from(s,
/// "base64")` callers of the original service sent, minus its silent
/// skipping of garbage.
const BASE64_IN: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// `POST /images/resize`: the image decoded from base64, resized (see
/// [`resize`]), answered as `{"image": base64}`.
pub async fn resize_json<D: Database>(
    ctx: &Ctx,
    request: ResizeRequest,
    budget: &SharedBudget<D>,
    pause: &mut dyn FnMut(),
) -> Result<Response<Bytes>, Problem> {
    let image = decode_base64(&request.image_data)?;
    let format = request.options.format.unwrap_or_default();
    let resized = resize(ctx, &image, request.options.params(format), budget, pause).await?;
    let image = STANDARD.encode(&resized);
    Ok(json(StatusCode::OK, &serde_json::json!({ "image": image })))
}

/// `POST /images/resize/raw`: the body resized (see [`resize`]) into the
/// format asked for, else the best of `Accept`, answered as the image.
pub async fn resize_raw<D: Database>(
    ctx: &Ctx,
    options: ResizeOptions,
    image: RawBody,
    budget: &SharedBudget<D>,
    pause: &mut dyn FnMut(),
) -> Result<Response<Bytes>, Problem> {
    let format = options.format.unwrap_or_else(|| negotiate(&ctx.head.headers));
    let resized = resize(ctx, &image.bytes, options.params(format), budget, pause).await?;
    let mut response = Response::new(Bytes::from(resized));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(format.media_type()));
    // The format may have come from Accept: caches must key on it.
    headers.insert(header::VARY, HeaderValue::from_static("accept"));
    Ok(response)
}

/// Resizes `image` once `budget` has room for what the instance will hold
/// at the job's peak (else `503` with `Retry-After`), then records what the
/// instance holds; `pause` as in [`super::Job::run`]. The encoded bytes.
async fn resize<D: Database>(
    ctx: &Ctx,
    image: &[u8],
    params: Params,
    budget: &SharedBudget<D>,
    pause: &mut dyn FnMut(),
) -> Result<Vec<u8>, Problem> {
    let mut claimed = false;
    let answer = resize_within(ctx, image, &params, budget, &mut claimed, pause).await;
    // Whatever the answer, the row of an instance that holds more than the
    // untracked allowance (or claimed more) now says what it holds, renewed:
    // a memory grown by this job stays grown.
    let held = Footprint::now().memory;
    if (held > UNTRACKED_BYTES || claimed)
        && let Err(e) = {
            let mut span = ctx.log.span("image budget record", SpanKind::Internal);
            span.set("app.image.held_bytes", held as i64);
            span.record(budget.record(held).await)
        }
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
    image: &[u8],
    params: &Params,
    budget: &SharedBudget<D>,
    claimed: &mut bool,
    pause: &mut dyn FnMut(),
) -> Result<Vec<u8>, Problem> {
    let refused = |e: ImagingError| {
        if matches!(e, ImagingError::Encode(_)) {
            ctx.log
                .error("image encoding failed", &[("error", serde_json::json!(e.to_string()))]);
        }
        problem(e)
    };
    let mut span = ctx.log.span("image prepare", SpanKind::Internal);
    let job = span.record(super::prepare(image, params)).map_err(refused)?;
    span.set("app.image.peak_bytes", job.peak_bytes() as i64);
    span.end();
    let at_peak = Footprint::now().with_job(job.peak_bytes());
    if at_peak > UNTRACKED_BYTES {
        let mut span = ctx.log.span("image budget claim", SpanKind::Internal);
        span.set("app.image.claim_bytes", at_peak as i64);
        match budget.claim(at_peak).await {
            Ok(()) => *claimed = true,
            Err(Refusal::Busy) => {
                span.fail("server-busy", "the shared image memory is held");
                return Err(busy());
            }
            Err(Refusal::Database(e)) => return Err(span.record(Err(e))?),
        }
    }
    job.fits_in_instance().map_err(refused)?;
    // One span per stage: telling a stage ends the span of the one before.
    let mut current = Span::none();
    let outcome = job.run_in_stages(pause, &mut |stage| {
        current = match stage {
            Stage::Done => Span::none(),
            stage => ctx.log.span(stage.span_name(), SpanKind::Internal),
        };
    });
    Ok(current.record(outcome).map_err(refused)?.bytes)
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
