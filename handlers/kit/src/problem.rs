//! RFC 9457 problem details.
//!
//! Every error answer of every route is a [`Problem`]. Its `type` comes from a
//! closed set, [`ProblemKind`], which mirrors the `x-problem-types` catalogue
//! of `schemas/problem.json` (a test keeps the two equal), so a client can
//! branch on `type` and find each one documented in the OpenAPI document.

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The media type of every error body.
pub const CONTENT_TYPE: &str = "application/problem+json";

/// One kind of problem: a stable `type` URI reference, a title and a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProblemKind {
    /// `400`: the body is JSON but breaks the route's schema.
    ValidationFailed,
    /// `400`: the body is not JSON; `detail` gives the line and column.
    MalformedJson,
    /// `400`: a path or query parameter is malformed.
    InvalidParameter,
    /// `401`: no valid bearer token.
    Unauthorized,
    /// `403`: the token's user may not do this.
    Forbidden,
    /// `404`: no such resource.
    NotFound,
    /// `405`: the route does not serve this method; `Allow` says which it does.
    MethodNotAllowed,
    /// `413`: the body is over the route's limit, refused before parsing.
    PayloadTooLarge,
    /// `415`: the body's `Content-Type` is not one the route accepts.
    UnsupportedMediaType,
    /// `422`: an `Idempotency-Key` reused with a different body.
    IdempotencyKeyReused,
    /// `500`: a Spin variable of the component is missing or invalid.
    InvalidConfig,
    /// `500`: an unexpected failure; the log line has the cause.
    InternalError,
    /// `503`: the database did not answer in time or refused.
    DependencyUnavailable,
    /// `400`: `imageData` passed the schema's pattern yet would not decode.
    InvalidBase64,
    /// `415`: the bytes are not a JPEG, PNG or still WebP image.
    UnsupportedImage,
    /// `422`: the image is over the pixel cap or the memory budget.
    ImageTooLarge,
    /// `422`: the image is truncated or corrupt.
    CorruptImage,
    /// `503`: the host's shared image memory is held; retry later.
    ServerBusy,
}

impl ProblemKind {
    /// Every kind, in the order of the catalogue in `schemas/problem.json`.
    pub const ALL: &'static [ProblemKind] = &[
        ProblemKind::ValidationFailed,
        ProblemKind::MalformedJson,
        ProblemKind::InvalidParameter,
        ProblemKind::Unauthorized,
        ProblemKind::Forbidden,
        ProblemKind::NotFound,
        ProblemKind::MethodNotAllowed,
        ProblemKind::PayloadTooLarge,
        ProblemKind::UnsupportedMediaType,
        ProblemKind::IdempotencyKeyReused,
        ProblemKind::InvalidConfig,
        ProblemKind::InternalError,
        ProblemKind::DependencyUnavailable,
        ProblemKind::InvalidBase64,
        ProblemKind::UnsupportedImage,
        ProblemKind::ImageTooLarge,
        ProblemKind::CorruptImage,
        ProblemKind::ServerBusy,
    ];

    /// The `type` member: a URI reference, stable across releases.
    pub fn type_uri(self) -> &'static str {
        match self {
            ProblemKind::ValidationFailed => "/problems/validation-failed",
            ProblemKind::MalformedJson => "/problems/malformed-json",
            ProblemKind::InvalidParameter => "/problems/invalid-parameter",
            ProblemKind::Unauthorized => "/problems/unauthorized",
            ProblemKind::Forbidden => "/problems/forbidden",
            ProblemKind::NotFound => "/problems/not-found",
            ProblemKind::MethodNotAllowed => "/problems/method-not-allowed",
            ProblemKind::PayloadTooLarge => "/problems/payload-too-large",
            ProblemKind::UnsupportedMediaType => "/problems/unsupported-media-type",
            ProblemKind::IdempotencyKeyReused => "/problems/idempotency-key-reused",
            ProblemKind::InvalidConfig => "/problems/invalid-config",
            ProblemKind::InternalError => "/problems/internal-error",
            ProblemKind::DependencyUnavailable => "/problems/dependency-unavailable",
            ProblemKind::InvalidBase64 => "/problems/invalid-base64",
            ProblemKind::UnsupportedImage => "/problems/unsupported-image",
            ProblemKind::ImageTooLarge => "/problems/image-too-large",
            ProblemKind::CorruptImage => "/problems/corrupt-image",
            ProblemKind::ServerBusy => "/problems/server-busy",
        }
    }

    /// The `title` member: a short summary, the same for every answer of
    /// this kind.
    pub fn title(self) -> &'static str {
        match self {
            ProblemKind::ValidationFailed => "Request validation failed",
            ProblemKind::MalformedJson => "Malformed JSON",
            ProblemKind::InvalidParameter => "Invalid parameter",
            ProblemKind::Unauthorized => "Unauthorized",
            ProblemKind::Forbidden => "Forbidden",
            ProblemKind::NotFound => "Not found",
            ProblemKind::MethodNotAllowed => "Method not allowed",
            ProblemKind::PayloadTooLarge => "Payload too large",
            ProblemKind::UnsupportedMediaType => "Unsupported media type",
            ProblemKind::IdempotencyKeyReused => "Idempotency key reused",
            ProblemKind::InvalidConfig => "Invalid configuration",
            ProblemKind::InternalError => "Internal error",
            ProblemKind::DependencyUnavailable => "Dependency unavailable",
            ProblemKind::InvalidBase64 => "Invalid base64",
            ProblemKind::UnsupportedImage => "Unsupported image",
            ProblemKind::ImageTooLarge => "Image too large",
            ProblemKind::CorruptImage => "Corrupt image",
            ProblemKind::ServerBusy => "Server busy",
        }
    }

    /// The HTTP status every answer of this kind carries.
    pub fn status(self) -> StatusCode {
        match self {
            ProblemKind::ValidationFailed | ProblemKind::MalformedJson | ProblemKind::InvalidParameter => {
                StatusCode::BAD_REQUEST
            }
            ProblemKind::Unauthorized => StatusCode::UNAUTHORIZED,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProblemKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProblemKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::IdempotencyKeyReused => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::InvalidConfig | ProblemKind::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
            ProblemKind::DependencyUnavailable | ProblemKind::ServerBusy => StatusCode::SERVICE_UNAVAILABLE,
            ProblemKind::InvalidBase64 => StatusCode::BAD_REQUEST,
            ProblemKind::UnsupportedImage => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProblemKind::ImageTooLarge | ProblemKind::CorruptImage => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
}

/// Where a failed constraint is: in the body, or in a named parameter.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Location {
    /// A JSON pointer (RFC 6901) into the request body; `""` is the whole body.
    Pointer(String),
    /// The name of a path or query parameter, or of a config variable.
    Parameter(String),
}

/// One failed constraint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Where the constraint failed; flattened to `pointer` or `parameter`.
    #[serde(flatten)]
    pub location: Location,
    /// The JSON Schema keyword that failed (`minimum`, `format`, ...).
    pub keyword: String,
    /// A sentence for humans. It never repeats the offending value, so that a
    /// secret or a huge string is never echoed back.
    pub message: String,
}

impl FieldError {
    /// An error in the body, at a JSON pointer.
    pub fn at_pointer(pointer: impl Into<String>, keyword: &str, message: impl Into<String>) -> Self {
        Self {
            location: Location::Pointer(pointer.into()),
            keyword: keyword.into(),
            message: message.into(),
        }
    }

    /// An error in a path or query parameter, or a config variable.
    pub fn at_parameter(name: impl Into<String>, keyword: &str, message: impl Into<String>) -> Self {
        Self {
            location: Location::Parameter(name.into()),
            keyword: keyword.into(),
            message: message.into(),
        }
    }
}

/// The most located errors one answer lists. A hostile body can break a
/// schema in millions of places (every unknown property of a 14 MiB
/// object); listing them all would turn a small request into a huge answer.
/// Past this many the list is cut and `errorsTruncated` says so.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// An error answer, before the pipeline adds `instance` and `requestId`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Gives the answer its `type`, `title` and status.
    pub kind: ProblemKind,
    /// The `detail` member: what went wrong with this request, for humans.
    pub detail: String,
    /// At most [`MAX_REPORTED_ERRORS`].
    pub errors: Vec<FieldError>,
    /// Whether `errors` was cut at [`MAX_REPORTED_ERRORS`].
    pub errors_truncated: bool,
    /// Extra response headers (`Allow` for 405, `WWW-Authenticate` for 401).
    pub headers: Vec<(HeaderName, HeaderValue)>,
    /// What went wrong underneath, for the log line only, never the answer
    /// (a driver's message may name hosts or statements).
    pub cause: Option<String>,
}

impl Problem {
    /// A problem with no located errors, headers or cause yet.
    pub fn new(kind: ProblemKind, detail: impl Into<String>) -> Self {
        Self {
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            errors_truncated: false,
            headers: Vec::new(),
            cause: None,
        }
    }

    /// The located errors, cut at [`MAX_REPORTED_ERRORS`] (then
    /// `errors_truncated` is set).
    pub fn with_errors(mut self, mut errors: Vec<FieldError>) -> Self {
        self.errors_truncated = errors.len() > MAX_REPORTED_ERRORS;
        errors.truncate(MAX_REPORTED_ERRORS);
        self.errors = errors;
        self
    }

    /// Adds a response header.
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Records the underlying error, which the pipeline logs with the
    /// request's id when it answers.
    pub fn with_cause(mut self, cause: impl std::fmt::Display) -> Self {
        self.cause = Some(cause.to_string());
        self
    }

    /// A `500` whose detail is safe to show: the cause goes to the log only.
    pub fn internal() -> Self {
        Self::new(
            ProblemKind::InternalError,
            "The request could not be completed; see the log line with this requestId.",
        )
    }

    /// The HTTP status of the answer, set by its kind.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The full `application/problem+json` answer.
    pub fn into_response(self, instance: &str, request_id: &str) -> Response<Bytes> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Body<'a> {
            #[serde(rename = "type")]
            type_uri: &'a str,
            title: &'a str,
            status: u16,
            detail: &'a str,
            instance: &'a str,
            request_id: &'a str,
            #[serde(skip_serializing_if = "<[_]>::is_empty")]
            errors: &'a [FieldError],
            #[serde(skip_serializing_if = "std::ops::Not::not")]
            errors_truncated: bool,
        }
        let body = Body {
            type_uri: self.kind.type_uri(),
            title: self.kind.title(),
            status: self.kind.status().as_u16(),
            detail: &self.detail,
            instance,
            request_id,
            errors: &self.errors,
            errors_truncated: self.errors_truncated,
        };
        let bytes = serde_json::to_vec(&body).expect("a problem always serialises");
        let mut response = Response::new(Bytes::from(bytes));
        *response.status_mut() = self.kind.status();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        for (name, value) in self.headers {
            headers.append(name, value);
        }
        response
    }
}

/// A problem on a span: its type's last segment (`validation-failed`) and
/// its title, never the detail, which may quote the request.
impl crate::span::SpanError for Problem {
    fn error_type(&self) -> &'static str {
        self.kind.type_uri().trim_start_matches("/problems/")
    }

    fn description(&self) -> String {
        self.kind.title().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn kinds_match_the_catalogue_in_the_problem_schema() {
        let schema: Value = serde_json::from_str(crate::schemas::PROBLEM).unwrap();
        let catalogue = schema["x-problem-types"].as_array().unwrap();
        assert_eq!(catalogue.len(), ProblemKind::ALL.len());
        for (entry, kind) in catalogue.iter().zip(ProblemKind::ALL) {
            assert_eq!(entry["type"], kind.type_uri());
            assert_eq!(entry["title"], kind.title());
            assert_eq!(entry["status"], kind.status().as_u16());
        }
    }

    #[test]
    fn response_carries_every_member_and_extra_headers() {
        let problem = Problem::new(ProblemKind::MethodNotAllowed, "use GET")
            .with_header(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        let response = problem.into_response("/orders/1", "req-1");
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()[header::ALLOW], "GET, HEAD");
        assert_eq!(response.headers()[header::CONTENT_TYPE], CONTENT_TYPE);
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["type"], "/problems/method-not-allowed");
        assert_eq!(body["instance"], "/orders/1");
        assert_eq!(body["requestId"], "req-1");
        assert!(body.get("errors").is_none());
    }

    #[test]
    fn field_errors_serialise_with_pointer_or_parameter() {
        let e = serde_json::to_value(FieldError::at_pointer("/items/0/quantity", "minimum", "must be >= 1")).unwrap();
        assert_eq!(
            e,
            serde_json::json!({"pointer": "/items/0/quantity", "keyword": "minimum", "message": "must be >= 1"})
        );
        let e = serde_json::to_value(FieldError::at_parameter("id", "format", "must be a UUID")).unwrap();
        assert_eq!(e["parameter"], "id");
    }
}
