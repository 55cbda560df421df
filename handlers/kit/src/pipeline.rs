//! The HTTP contract every route keeps, in one place.
//!
//! A handler serves its route through the entry point of the route's kind,
//! so a handler and its route cannot disagree about the body:
//! [`serve_empty`] (no body), [`serve_json`] (a JSON body, validated, as the
//! route's type) and [`serve_raw`] (the raw bytes, other fields as query
//! parameters). Each takes the [`Incoming`] request and the route's own logic
//! as an async closure, and runs, in order:
//!
//! 1. request id (the caller's when sane), trace context (the caller's
//!    `traceparent` when valid), logger; where spans are recorded (the
//!    `otel` build: [`crate::span`]), the component's span, under which
//!    authentication, validation and the logic's own steps open theirs;
//! 2. `405` + `Allow` for a method the route does not serve;
//! 3. `500 invalid-config` naming each bad variable;
//! 4. authentication, on routes with `auth`: `401` before the body is read;
//! 5. the body, by kind: `415` for a `Content-Encoding` other than
//!    `identity`; for JSON, `415` unless `application/json` (charset
//!    optional, UTF-8 only), `413` past the limit (from `Content-Length`
//!    before reading, and while reading; also past 10,000 JSON values,
//!    counted before parsing), `400 malformed-json` with the position, `400
//!    validation-failed` with every failed constraint (at most 100 listed,
//!    `errorsTruncated` past that); for raw bodies, `415` unless one of the
//!    route's media types, `400 invalid-parameter` for the query (checked
//!    before reading), then the same `413`;
//! 6. the route's logic, whose [`Problem`]s become problem answers (server
//!    errors logged with their cause);
//! 7. `x-request-id` and `Content-Length` on every answer (`HEAD` keeps
//!    `GET`'s length and drops the body), one summary log line (`method`,
//!    route template `path`, `status`, `durationMs`).

use crate::auth::Caller;
use crate::config::{Config, ConfigError, LogLevel};
use crate::contract::{BodyContract, EmptyRoute, JsonRoute, RawContract, RawRoute, Route};
use crate::log::Logger;
use crate::negotiate;
use crate::problem::{FieldError, MAX_REPORTED_ERRORS, Problem, ProblemKind};
use crate::request_id;
use crate::span::{self, HostSpan, Span, SpanError, SpanExporter, SpanIds, SpanKind, Tracer};
use crate::trace_context::TraceContext;
use crate::validate::{MAX_JSON_VALUES, exceeds_values, parse_json};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use http::{HeaderValue, Method, Response, StatusCode, header, request::Parts};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use std::time::Instant;

/// Where a request body comes from: the Spin adapter streams it from the
/// host, tests hand over bytes.
#[allow(async_fn_in_trait)]
pub trait BodySource {
    /// Reads the whole body, giving up with [`BodyError::TooLarge`] as soon
    /// as more than `limit` bytes have arrived.
    async fn read(self, limit: usize) -> Result<Bytes, BodyError>;
}

/// Why a body could not be read.
#[derive(Debug)]
pub enum BodyError {
    /// More than the limit arrived.
    TooLarge,
    /// The client went away or the transport failed.
    Failed(String),
}

impl BodySource for Bytes {
    async fn read(self, limit: usize) -> Result<Bytes, BodyError> {
        if self.len() > limit {
            Err(BodyError::TooLarge)
        } else {
            Ok(self)
        }
    }
}

/// One request as the host hands it over.
pub struct Incoming<B> {
    /// Method, URI and headers.
    pub head: Parts,
    /// The body, read only when the route has one and the head passed.
    pub body: B,
    /// The component's config, or why it is invalid (answered as `500`).
    pub config: Result<Config, ConfigError>,
    /// The request's time: one clock reading, movable in tests.
    pub now: DateTime<Utc>,
    /// Where the request's spans go, in a build that records them.
    pub spans: Option<&'static dyn SpanExporter>,
}

impl<B> Incoming<B> {
    /// A request arriving now.
    pub fn new(head: Parts, body: B, config: Result<Config, ConfigError>) -> Self {
        Incoming {
            head,
            body,
            config,
            now: Utc::now(),
            spans: None,
        }
    }

    /// The same request, its spans sent to `exporter` when the host traces
    /// it.
    pub fn traced_by(self, exporter: &'static dyn SpanExporter) -> Self {
        Incoming {
            spans: Some(exporter),
            ..self
        }
    }

    /// The same request at another time, for tests that move the clock.
    pub fn at(self, now: DateTime<Utc>) -> Self {
        Incoming { now, ..self }
    }
}

/// What the route's logic gets besides its input.
pub struct Ctx {
    /// The route being served.
    pub route: &'static Route,
    /// Method, URI and headers.
    pub head: Parts,
    /// The component's validated config.
    pub config: Config,
    /// The request's logger: its request id and trace context (the caller's
    /// `traceparent` when valid) on every line.
    pub log: Logger,
    /// The authenticated caller, on routes with `auth`.
    pub caller: Option<Caller>,
    /// The request's time.
    pub now: DateTime<Utc>,
}

/// A body taken as it came, not parsed: the input of a [`RawRoute`].
#[derive(Clone, Debug)]
pub struct RawBody {
    /// The `Content-Type` essence, lower case (e.g. `image/png`).
    pub media_type: String,
    /// The bytes, at most the route's raw limit.
    pub bytes: Bytes,
}

impl Ctx {
    /// A path parameter, as Spin passes it in `spin-path-match-<name>`.
    pub fn param(&self, name: &str) -> Option<&str> {
        spin_header(&self.head, &format!("spin-path-match-{name}"))
    }

    /// The rest of the path after a wildcard route's prefix (Spin's
    /// `spin-path-info`), empty when there is none.
    pub fn path_info(&self) -> &str {
        spin_header(&self.head, "spin-path-info").unwrap_or("")
    }

    /// The request id: the caller's `x-request-id` when sane, else ours.
    pub fn request_id(&self) -> &str {
        self.log.request_id()
    }
}

/// A header Spin sets for the component. Spin appends its own value after
/// any the client sent under the same name, so only the last one is Spin's:
/// a client must not choose the route's parameters (`spin-path-match-id:
/// <another order>`) or the docs asset (`spin-path-info`).
fn spin_header<'h>(head: &'h Parts, name: &str) -> Option<&'h str> {
    head.headers.get_all(name).iter().next_back()?.to_str().ok()
}

/// Serves a route without a body.
pub async fn serve_empty<B, F>(route: &'static EmptyRoute, request: Incoming<B>, logic: F) -> Response<Bytes>
where
    F: AsyncFnOnce(&Ctx) -> Result<Response<Bytes>, Problem>,
{
    let no_body = async |_: &Parts, _: B, _: &Logger| Ok(());
    serve(route, request, no_body, async move |ctx: &Ctx, (): ()| logic(ctx).await).await
}

/// Serves a route taking a JSON body: the logic gets it as `T` once it
/// passed the route's schema.
pub async fn serve_json<B, T, F>(route: &'static JsonRoute, request: Incoming<B>, logic: F) -> Response<Bytes>
where
    B: BodySource,
    T: DeserializeOwned,
    F: AsyncFnOnce(&Ctx, T) -> Result<Response<Bytes>, Problem>,
{
    let read = async |head: &Parts, body: B, log: &Logger| read_json(route.body(), head, body, log).await;
    serve(route, request, read, logic).await
}

/// Serves a route taking a raw body: the logic gets the query parameters
/// as `P`, once they passed the route's schema, and the bytes.
pub async fn serve_raw<B, P, F>(route: &'static RawRoute, request: Incoming<B>, logic: F) -> Response<Bytes>
where
    B: BodySource,
    P: DeserializeOwned,
    F: AsyncFnOnce(&Ctx, P, RawBody) -> Result<Response<Bytes>, Problem>,
{
    let read = async |head: &Parts, body: B, log: &Logger| read_raw(route.body(), head, body, log).await;
    let logic = async move |ctx: &Ctx, (parameters, raw): (P, RawBody)| logic(ctx, parameters, raw).await;
    serve(route, request, read, logic).await
}

/// Steps 1 to 7 for a route of any kind; `read` is step 5.
async fn serve<B, I>(
    route: &'static Route,
    request: Incoming<B>,
    read: impl AsyncFnOnce(&Parts, B, &Logger) -> Result<I, Problem>,
    logic: impl AsyncFnOnce(&Ctx, I) -> Result<Response<Bytes>, Problem>,
) -> Response<Bytes> {
    let started = Instant::now();
    let Incoming {
        head,
        body,
        config,
        now,
        spans,
    } = request;
    let request_id = request_id::accept_or_generate(head.headers.get(request_id::HEADER).map(HeaderValue::as_bytes));
    let level = config.as_ref().map(|c| c.log_level).unwrap_or(LogLevel::Info);
    let (trace, tracer, mut root) = start_trace(route, &head, spans);
    let log = Logger::new(route.component, request_id, trace, level).with_tracer(tracer);
    let method = head.method.clone();
    let instance = head.uri.path().to_string();

    let outcome = match admit(route, &head, config, &log, now) {
        Ok(Admitted { config, caller }) => match read(&head, body, &log).await {
            Ok(input) => {
                let ctx = Ctx {
                    route,
                    head,
                    config,
                    log: log.clone(),
                    caller,
                    now,
                };
                logic(&ctx, input).await
            }
            Err(problem) => Err(problem),
        },
        Err(problem) => Err(problem),
    };
    let mut response = match outcome {
        Ok(response) => response,
        Err(problem) => {
            if problem.status().is_server_error() {
                root.fail(problem.error_type(), problem.description());
                let mut fields = vec![
                    ("problem", json!(problem.kind.type_uri())),
                    ("detail", json!(problem.detail)),
                ];
                fields.extend(problem.cause.as_ref().map(|cause| ("cause", json!(cause))));
                log.error("request failed", &fields);
            }
            problem.into_response(&instance, log.request_id())
        }
    };
    finish(&mut response, &method, &log);
    let status = response.status().as_u16();
    let duration_ms = (started.elapsed().as_secs_f64() * 1000.0 * 1000.0).round() / 1000.0;
    let fields = [
        ("method", json!(method.as_str())),
        ("path", json!(route.path)),
        ("status", json!(status)),
        ("durationMs", json!(duration_ms)),
    ];
    let level = if status >= 500 { LogLevel::Error } else { LogLevel::Info };
    log.log(level, "request completed", &fields);
    root.set("http.request.method", method_name(&method));
    root.set("http.route", route.path);
    root.set("http.response.status_code", u32::from(status));
    response
}

/// Step 1's trace: the caller's context, or the host's span's when the host
/// gives one. Where spans go (`spans`), the component's span is open under
/// the host's span, or else under the caller's (Spin 4.1 gives a WASI 0.3
/// component no span: `spin::otel`), or it starts the trace; the tracer
/// opens the others under it. A trace the host or the caller did not
/// sample records nothing.
fn start_trace(route: &Route, head: &Parts, spans: Option<&'static dyn SpanExporter>) -> (TraceContext, Tracer, Span) {
    let trace = TraceContext::from_headers(&head.headers);
    let Some(exporter) = spans else {
        return (trace, Tracer::off(), Span::none());
    };
    let (trace, parent, sampled) = match exporter.host_span().filter(HostSpan::is_valid) {
        Some(host) => {
            let trace = trace.within(&host);
            (trace, host.span_id, host.sampled)
        }
        None => {
            let parent = trace.parent_span_id.clone();
            let sampled = trace.sampled || parent.is_none();
            (trace, parent.unwrap_or_default(), sampled)
        }
    };
    if !sampled {
        return (trace, Tracer::off(), Span::none());
    }
    let ids = SpanIds {
        trace_id: trace.trace_id.clone(),
        span_id: trace.span_id.clone(),
    };
    let tracer = Tracer::to(exporter);
    let root = tracer.start(ids, parent, route.component, SpanKind::Internal);
    (trace, tracer, root)
}

/// The method's name as a `'static` attribute value.
fn method_name(method: &Method) -> span::Value {
    match *method {
        Method::GET => "GET".into(),
        Method::HEAD => "HEAD".into(),
        Method::POST => "POST".into(),
        Method::PUT => "PUT".into(),
        Method::DELETE => "DELETE".into(),
        Method::PATCH => "PATCH".into(),
        Method::OPTIONS => "OPTIONS".into(),
        _ => "_OTHER".into(),
    }
}

/// What steps 2 to 4 let through.
struct Admitted {
    config: Config,
    /// The authenticated caller, on routes with `auth`.
    caller: Option<Caller>,
}

/// Steps 2 to 4: the method, the config and the caller, before any body.
fn admit(
    route: &Route,
    head: &Parts,
    config: Result<Config, ConfigError>,
    log: &Logger,
    now: DateTime<Utc>,
) -> Result<Admitted, Problem> {
    if !route.allows(&head.method) {
        let allow = HeaderValue::from_str(&route.allow_header()).expect("method names are valid header text");
        return Err(Problem::new(
            ProblemKind::MethodNotAllowed,
            format!(
                "{} does not serve {}; use {}",
                route.path,
                head.method,
                route.allow_header()
            ),
        )
        .with_header(header::ALLOW, allow));
    }
    let config = match config {
        Ok(config) => config,
        Err(e) => {
            log.error("invalid config", &[("variables", json!(e.names()))]);
            return Err(e.to_problem());
        }
    };
    let caller = match route.auth {
        Some(authenticate) => {
            let Some(auth) = &config.auth else {
                log.error("invalid config", &[("variables", json!(["jwt_secret"]))]);
                return Err(ConfigError::missing("jwt_secret").to_problem());
            };
            let mut span = log.span("authenticate", SpanKind::Internal);
            Some(span.record(authenticate(&head.headers, auth, now.timestamp()))?)
        }
        None => None,
    };
    Ok(Admitted { config, caller })
}

/// Step 5 of a JSON route: the body as `T`, once it passed its schema.
async fn read_json<B: BodySource, T: DeserializeOwned>(
    contract: &BodyContract,
    head: &Parts,
    body: B,
    log: &Logger,
) -> Result<T, Problem> {
    check_identity_encoding(head)?;
    check_json_content_type(head)?;
    let bytes = read_within(head, body, contract.limit, log).await?;
    if exceeds_values(&bytes, MAX_JSON_VALUES) {
        return Err(Problem::new(
            ProblemKind::PayloadTooLarge,
            format!("the body holds more than {MAX_JSON_VALUES} JSON values"),
        ));
    }
    let mut span = log.span("validate request body", SpanKind::Internal);
    span.set("http.request.body.size", bytes.len() as i64);
    let value = span.record(parse_json(&bytes))?;
    let errors = contract.validator().errors(&value);
    if !errors.is_empty() {
        let detail = count_failures(errors.len(), "constraint(s)");
        span.set("app.validation.error_count", errors.len() as i64);
        return span.record(Err(
            Problem::new(ProblemKind::ValidationFailed, detail).with_errors(errors)
        ));
    }
    span.end();
    // JSON Schema counts 851.0 as an integer; so do the route's types.
    serde_json::from_value(integral_floats_as_integers(value)).map_err(|e| {
        // The schema admitted what the type refuses: a defect of ours.
        log.error(
            "body passed its schema but not its type",
            &[("error", json!(e.to_string()))],
        );
        Problem::internal()
    })
}

/// Step 5 of a raw route: the query parameters as `P` (checked before the
/// body is read) and the bytes.
async fn read_raw<B: BodySource, P: DeserializeOwned>(
    (contract, raw): (&BodyContract, &RawContract),
    head: &Parts,
    body: B,
    log: &Logger,
) -> Result<(P, RawBody), Problem> {
    check_identity_encoding(head)?;
    let media_type = raw_media_type(head, raw)?;
    let mut span = log.span("validate query parameters", SpanKind::Internal);
    let parameters = span.record(query_parameters(head, contract, raw))?;
    span.end();
    let bytes = read_within(head, body, raw.limit, log).await?;
    Ok((parameters, RawBody { media_type, bytes }))
}

/// The body, `413` past `limit`: from `Content-Length` before reading, and
/// while reading.
async fn read_within<B: BodySource>(head: &Parts, body: B, limit: usize, log: &Logger) -> Result<Bytes, Problem> {
    let too_large = || {
        Problem::new(
            ProblemKind::PayloadTooLarge,
            format!("the body limit of this route is {limit} bytes for this Content-Type"),
        )
    };
    if declared_length(head).is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match body.read(limit).await {
        Ok(bytes) => Ok(bytes),
        Err(BodyError::TooLarge) => Err(too_large()),
        Err(BodyError::Failed(e)) => {
            log.warn("body read failed", &[("error", json!(e))]);
            Err(Problem::new(
                ProblemKind::MalformedJson,
                "the body could not be read completely",
            ))
        }
    }
}

/// The `detail` of a problem listing `count` failures (of `what`), saying
/// so when the list is cut at [`MAX_REPORTED_ERRORS`].
fn count_failures(count: usize, what: &str) -> String {
    if count > MAX_REPORTED_ERRORS {
        format!("more than {MAX_REPORTED_ERRORS} {what} failed; errors lists the first {MAX_REPORTED_ERRORS}")
    } else {
        format!("{count} {what} failed; see errors")
    }
}

/// Numbers with no fractional part (`851.0`) as integers: JSON Schema's
/// `integer` admits them, and serde's integer types would refuse them.
fn integral_floats_as_integers(value: Value) -> Value {
    match value {
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            // Exact in an f64, so the conversion loses nothing.
            Some(f) if f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0 => {
                if f >= 0.0 {
                    Value::from(f as u64)
                } else {
                    Value::from(f as i64)
                }
            }
            _ => Value::Number(n),
        },
        Value::Array(items) => Value::Array(items.into_iter().map(integral_floats_as_integers).collect()),
        Value::Object(fields) => Value::Object(
            fields
                .into_iter()
                .map(|(k, v)| (k, integral_floats_as_integers(v)))
                .collect(),
        ),
        other => other,
    }
}

fn declared_length(head: &Parts) -> Option<u64> {
    head.headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// The `Content-Type` essence, lower case, when it is one of the route's raw
/// media types (parameters such as `charset` mean nothing to bytes); `415`
/// otherwise.
fn raw_media_type(head: &Parts, raw: &RawContract) -> Result<String, Problem> {
    let value = head.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let essence = value.map(|v| negotiate::media_type(v).0.to_ascii_lowercase());
    match essence {
        Some(essence) if raw.media_types.contains(&essence.as_str()) => Ok(essence),
        _ => Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            format!(
                "this route takes the raw body; send Content-Type: {}",
                raw.media_types.join(", ")
            ),
        )),
    }
}

/// The query string as a JSON object for the raw form's parameter schema:
/// integers become numbers, everything else stays a string (so `width=1.5`
/// or `width=abc` fail the schema's `type`). Every failure is reported, each
/// named by its parameter, as `400 invalid-parameter`.
fn query_parameters<T: DeserializeOwned>(
    head: &Parts,
    contract: &BodyContract,
    raw: &RawContract,
) -> Result<T, Problem> {
    let mut object = serde_json::Map::new();
    let mut errors = Vec::new();
    for (name, value) in form_urlencoded::parse(head.uri.query().unwrap_or_default().as_bytes()) {
        if object.contains_key(name.as_ref()) {
            errors.push(FieldError::at_parameter(name, "duplicate", "given more than once"));
            continue;
        }
        let value = value.parse::<i64>().map_or_else(|_| json!(value), |n| json!(n));
        object.insert(name.into_owned(), value);
    }
    // The body's own validator, the raw field's stand-in in its place: one
    // generated validator serves both forms. The field itself is the body,
    // never a parameter.
    if object.contains_key(raw.field) {
        errors.push(FieldError::at_parameter(
            raw.field,
            "additionalProperties",
            "unknown parameter",
        ));
    }
    let mut checked = object.clone();
    checked.insert(raw.field.to_string(), json!(raw.stand_in));
    errors.extend(contract.validator().parameter_errors(&Value::Object(checked)));
    let parameters = Value::Object(object);
    if !errors.is_empty() {
        let detail = count_failures(errors.len(), "query parameter constraint(s)");
        return Err(Problem::new(ProblemKind::InvalidParameter, detail).with_errors(errors));
    }
    serde_json::from_value(parameters).map_err(|e| {
        Problem::new(
            ProblemKind::InvalidParameter,
            format!("parameters do not match the route's type: {e}"),
        )
    })
}

/// A body must come as it is: `Content-Encoding` absent or `identity`. A
/// gzip (or any other) coding would otherwise be parsed as if it were plain,
/// and decoding it here would let a small body expand past the route's
/// limit, so it is `415` (RFC 9110 §15.5.16).
fn check_identity_encoding(head: &Parts) -> Result<(), Problem> {
    let plain = head.headers.get_all(header::CONTENT_ENCODING).iter().all(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',')
                .map(str::trim)
                .all(|coding| coding.is_empty() || coding.eq_ignore_ascii_case("identity"))
        })
    });
    if plain {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::UnsupportedMediaType,
            "this route takes unencoded bodies: send it without Content-Encoding",
        ))
    }
}

/// `application/json`, any case, with at most a UTF-8 `charset` parameter.
fn check_json_content_type(head: &Parts) -> Result<(), Problem> {
    let unsupported = |what: &str| {
        Problem::new(
            ProblemKind::UnsupportedMediaType,
            format!("{what}; send Content-Type: application/json"),
        )
    };
    let Some(value) = head.headers.get(header::CONTENT_TYPE) else {
        return Err(unsupported("the request has no Content-Type"));
    };
    let value = value
        .to_str()
        .map_err(|_| unsupported("the Content-Type is not readable"))?;
    let (essence, parameters) = negotiate::media_type(value);
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(unsupported("this route does not accept this media type"));
    }
    for (name, value) in parameters {
        if !name.eq_ignore_ascii_case("charset") || !value.eq_ignore_ascii_case("utf-8") {
            return Err(unsupported("only the charset=utf-8 parameter is accepted"));
        }
    }
    Ok(())
}

fn finish(response: &mut Response<Bytes>, method: &Method, log: &Logger) {
    let id = HeaderValue::from_str(log.request_id()).expect("request ids are visible ASCII");
    let length = HeaderValue::from(response.body().len());
    let headers = response.headers_mut();
    headers.insert(request_id::HEADER, id);
    // Every answer is framed by its length, never chunked: Spin's server does
    // not set TCP_NODELAY, so the final chunk of a chunked answer waits for
    // the client's delayed ACK (~40 ms per request on a keep-alive
    // connection). `HEAD` announces the length `GET` would send (RFC 9110
    // 9.3.2); the host writes no body for it.
    headers.insert(header::CONTENT_LENGTH, length);
    if method == Method::HEAD {
        *response.body_mut() = Bytes::new();
    }
}

/// A JSON answer.
pub fn json<T: Serialize>(status: StatusCode, value: &T) -> Response<Bytes> {
    json_bytes(
        status,
        Bytes::from(serde_json::to_vec(value).expect("answers always serialise")),
    )
}

/// A JSON answer already serialised.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response<Bytes> {
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::contract::{BodyContract, DEFAULT_JSON_LIMIT};

    fn incoming(head: Parts, body: &'static [u8]) -> Incoming<Bytes> {
        Incoming::new(head, Bytes::from_static(body), Ok(Config::default()))
    }

    /// Routes of the tests' own, without auth, to test the contract alone.
    static CREATE_ORDER: JsonRoute = JsonRoute::new(Route {
        component: "test-post",
        path: "/orders",
        methods: &[Method::POST],
        operation_id: "testPost",
        summary: "",
        body: Some(BodyContract::new(
            "order-create.request.json",
            crate::schemas::ORDER_CREATE_REQUEST,
            crate::schemas::generated::OrderCreateRequest::iter_errors,
            DEFAULT_JSON_LIMIT,
        )),
        responses: &[],
        problems: &[],
        auth: None,
    });
    static GET_ORDER: EmptyRoute = EmptyRoute::new(Route {
        component: "test-get",
        path: "/orders/:id",
        methods: &[Method::GET],
        operation_id: "testGet",
        summary: "",
        body: None,
        responses: &[],
        problems: &[],
        auth: None,
    });
    use http::Request;

    fn head(method: &str, content_type: Option<&str>) -> Parts {
        let mut b = Request::builder().method(method).uri("/orders");
        if let Some(ct) = content_type {
            b = b.header("content-type", ct);
        }
        b.body(()).unwrap().into_parts().0
    }

    fn run(route: &'static JsonRoute, head: Parts, body: &'static [u8]) -> (Response<Bytes>, Value) {
        let response = futures::executor::block_on(serve_json(
            route,
            incoming(head, body),
            async |_ctx: &Ctx, body: Value| Ok(json(StatusCode::OK, &body)),
        ));
        let value = serde_json::from_slice(response.body()).unwrap_or(Value::Null);
        (response, value)
    }

    const VALID: &[u8] =
        br#"{"userId":"0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e","items":[{"productId":"a","quantity":1}]}"#;

    #[test]
    fn valid_body_reaches_the_logic() {
        let (r, v) = run(
            &CREATE_ORDER,
            head("POST", Some("application/json; charset=UTF-8")),
            VALID,
        );
        assert_eq!(r.status(), 200);
        assert_eq!(v["items"][0]["quantity"], 1);
        assert!(r.headers().contains_key("x-request-id"));
    }

    #[test]
    fn wrong_method_is_405_with_allow() {
        let (r, v) = run(&CREATE_ORDER, head("PUT", Some("application/json")), VALID);
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()["allow"], "POST");
        assert_eq!(v["type"], "/problems/method-not-allowed");
    }

    #[test]
    fn content_types() {
        for bad in [
            None,
            Some("text/plain"),
            Some("application/json; charset=latin1"),
            Some("application/jsonx"),
        ] {
            let (r, v) = run(&CREATE_ORDER, head("POST", bad), VALID);
            assert_eq!(r.status(), 415, "{bad:?}");
            assert_eq!(v["type"], "/problems/unsupported-media-type");
        }
        let (r, _) = run(&CREATE_ORDER, head("POST", Some("Application/JSON")), VALID);
        assert_eq!(r.status(), 200);
    }

    #[test]
    fn answers_to_hostile_bodies_stay_small() {
        // 5,000 unknown properties: 100 listed, and the answer says it is cut.
        let members: Vec<String> = (0..5000).map(|i| format!("\"x{i}\":0")).collect();
        let body: &'static [u8] = Box::leak(format!("{{{}}}", members.join(",")).into_bytes().into_boxed_slice());
        let (r, v) = run(&CREATE_ORDER, head("POST", Some("application/json")), body);
        assert_eq!(r.status(), 400);
        assert_eq!(v["errors"].as_array().unwrap().len(), MAX_REPORTED_ERRORS);
        assert_eq!(v["errorsTruncated"], true);
        assert!(v["detail"].as_str().unwrap().starts_with("more than 100"));
        assert!(r.body().len() < 16 * 1024, "{} bytes", r.body().len());
        // More values than any route needs: refused before parsing.
        let many: &'static [u8] = Box::leak(
            format!("[{}0]", "0,".repeat(MAX_JSON_VALUES))
                .into_bytes()
                .into_boxed_slice(),
        );
        let (r, v) = run(&CREATE_ORDER, head("POST", Some("application/json")), many);
        assert_eq!(r.status(), 413);
        assert_eq!(v["type"], "/problems/payload-too-large");
        // A few errors: listed in full, no flag.
        let (_, v) = run(
            &CREATE_ORDER,
            head("POST", Some("application/json")),
            b"{\"items\": []}",
        );
        assert!(v.get("errorsTruncated").is_none());
    }

    #[test]
    fn value_counts_bound_every_body() {
        assert!(!exceeds_values(b"[1,2,3]", 4) && exceeds_values(b"[1,2,3]", 3));
        assert!(!exceeds_values(br#"{"a":"[,,,{\"","b":[]}"#, 4));
        assert!(!exceeds_values(b"", 1) && !exceeds_values(b"not json", 1));
    }

    #[test]
    fn encoded_bodies_are_415() {
        for coding in ["gzip", "br", "identity, gzip", "GZIP"] {
            let mut h = head("POST", Some("application/json"));
            h.headers.insert("content-encoding", HeaderValue::from_static(coding));
            let (r, v) = run(&CREATE_ORDER, h, VALID);
            assert_eq!(r.status(), 415, "{coding}");
            assert_eq!(v["type"], "/problems/unsupported-media-type");
        }
        let mut h = head("POST", Some("application/json"));
        h.headers
            .insert("content-encoding", HeaderValue::from_static("Identity"));
        assert_eq!(run(&CREATE_ORDER, h, VALID).0.status(), 200);
    }

    #[test]
    fn only_spins_own_routing_headers_count() {
        // Spin appends its values after any the client sent.
        let mut h = head("GET", None);
        h.headers
            .append("spin-path-match-id", HeaderValue::from_static("forged"));
        h.headers
            .append("spin-path-match-id", HeaderValue::from_static("from-spin"));
        h.headers
            .append("spin-path-info", HeaderValue::from_static("/assets/forged.js"));
        h.headers.append("spin-path-info", HeaderValue::from_static(""));
        let r = futures::executor::block_on(serve_empty(&GET_ORDER, incoming(h, b""), async |c: &Ctx| {
            Ok(json(StatusCode::OK, &(c.param("id"), c.path_info())))
        }));
        assert_eq!(r.body().as_ref(), br#"["from-spin",""]"#);
    }

    #[test]
    fn declared_oversize_is_413_before_reading() {
        let mut h = head("POST", Some("application/json"));
        h.headers.insert("content-length", HeaderValue::from(70_000));
        let (r, v) = run(&CREATE_ORDER, h, VALID);
        assert_eq!(r.status(), 413);
        assert_eq!(v["type"], "/problems/payload-too-large");
    }

    #[test]
    fn actual_oversize_is_413() {
        let big: &'static [u8] = Box::leak(vec![b' '; 64 * 1024 + 1].into_boxed_slice());
        let (r, _) = run(&CREATE_ORDER, head("POST", Some("application/json")), big);
        assert_eq!(r.status(), 413);
    }

    #[test]
    fn malformed_and_invalid() {
        let (r, v) = run(&CREATE_ORDER, head("POST", Some("application/json")), b"{\"userId\": ");
        assert_eq!(r.status(), 400);
        assert_eq!(v["type"], "/problems/malformed-json");
        let (r, v) = run(
            &CREATE_ORDER,
            head("POST", Some("application/json")),
            b"{\"items\": []}",
        );
        assert_eq!(r.status(), 400);
        assert_eq!(v["type"], "/problems/validation-failed");
        assert_eq!(v["errors"].as_array().unwrap().len(), 2);
        assert_eq!(v["instance"], "/orders");
        assert_eq!(v["requestId"], r.headers()["x-request-id"].to_str().unwrap());
    }

    const HOST_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    const CALLER: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn host(sampled: bool) -> Option<crate::span::HostSpan> {
        Some(crate::span::HostSpan {
            trace_id: HOST_TRACE.into(),
            span_id: "b7ad6b7169203331".into(),
            sampled,
        })
    }

    /// The spans of a request sent with `traceparent` to a host that gives
    /// the span `host`, in the order they ended.
    fn traced(
        host: Option<crate::span::HostSpan>,
        traceparent: Option<&'static str>,
        body: &'static [u8],
    ) -> (Response<Bytes>, Vec<crate::span::FinishedSpan>) {
        let recorder = crate::span::tests::recorder(host);
        let mut head = head("POST", Some("application/json"));
        if let Some(value) = traceparent {
            head.headers.insert("traceparent", HeaderValue::from_static(value));
        }
        let request = incoming(head, body).traced_by(recorder);
        let response = futures::executor::block_on(serve_json(&CREATE_ORDER, request, async |ctx: &Ctx, _: Value| {
            let _statement = ctx.log.span("SELECT orders", crate::span::SpanKind::Client);
            Ok(json(StatusCode::OK, &"stored"))
        }));
        let ended = recorder.ended.borrow().clone();
        assert_eq!(
            recorder.started.borrow().len(),
            ended.len(),
            "every span started is ended"
        );
        (response, ended)
    }

    #[test]
    fn a_traced_request_has_its_steps_under_the_component_span() {
        let (response, spans) = traced(host(true), Some(CALLER), VALID);
        assert_eq!(response.status(), 200);
        let names: Vec<&str> = spans.iter().map(|s| s.name.as_ref()).collect();
        assert_eq!(names, ["validate request body", "SELECT orders", "test-post"]);
        let root = spans.last().unwrap();
        // The host's span is the component's parent, the host's trace its trace.
        assert_eq!(root.parent_span_id, "b7ad6b7169203331");
        assert_eq!(root.ids.trace_id, HOST_TRACE);
        for step in &spans[..2] {
            assert_eq!(step.parent_span_id, root.ids.span_id);
            assert_eq!(step.ids.trace_id, root.ids.trace_id);
        }
        assert!(root.attributes.contains(&("http.route", "/orders".into())));
        assert!(root.attributes.contains(&("http.response.status_code", 200u32.into())));
        assert_eq!(root.error, None);

        let (response, spans) = traced(host(true), None, b"{\"items\": []}");
        assert_eq!(response.status(), 400);
        let validate = &spans[0];
        assert_eq!(validate.name, "validate request body");
        assert_eq!(validate.error.as_deref(), Some("Request validation failed"));
        assert!(
            validate
                .attributes
                .contains(&("error.type", "validation-failed".into()))
        );
        assert_eq!(spans.len(), 2, "the logic never ran: {spans:?}");
        // A client error is not the component's failure.
        assert_eq!(spans[1].error, None);
    }

    #[test]
    fn without_a_host_span_the_callers_span_is_the_parent() {
        let (_, spans) = traced(None, Some(CALLER), VALID);
        let root = spans.last().unwrap();
        assert_eq!(root.ids.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(root.parent_span_id, "00f067aa0ba902b7");
        // No caller either: the component starts the trace.
        let (_, spans) = traced(None, None, VALID);
        let root = spans.last().unwrap();
        assert_eq!((root.ids.trace_id.len(), root.parent_span_id.as_str()), (32, ""));
        assert_eq!(spans[0].parent_span_id, root.ids.span_id);
    }

    #[test]
    fn an_unsampled_trace_records_nothing() {
        assert!(traced(host(false), Some(CALLER), VALID).1.is_empty());
        let unsampled = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00";
        assert!(traced(None, Some(unsampled), VALID).1.is_empty());
    }

    #[test]
    fn bad_config_is_500_naming_the_variable() {
        let bad = Config::from_values(&[("log_level".to_string(), "loud".to_string())].into()).unwrap_err();
        let r = futures::executor::block_on(serve_empty(
            &GET_ORDER,
            Incoming::new(head("GET", None), Bytes::new(), Err(bad)),
            async |_ctx: &Ctx| Ok(json(StatusCode::OK, &1)),
        ));
        assert_eq!(r.status(), 500);
        let v: Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(v["type"], "/problems/invalid-config");
        assert_eq!(v["errors"][0]["parameter"], "log_level");
        assert!(!r.body().windows(4).any(|w| w == b"loud"));
    }

    #[test]
    fn head_has_the_head_of_get_without_a_body() {
        let r = futures::executor::block_on(serve_empty(
            &GET_ORDER,
            incoming(head("HEAD", None), b""),
            async |_ctx: &Ctx| Ok(json(StatusCode::OK, &"twelve chars")),
        ));
        assert_eq!(r.status(), 200);
        assert!(r.body().is_empty());
        assert_eq!(r.headers()["content-type"], "application/json");
        // The length GET would send: `"twelve chars"` is 14 bytes.
        assert_eq!(r.headers()["content-length"], "14");
    }

    #[test]
    fn callers_request_id_is_echoed() {
        let mut h = head("GET", None);
        h.headers.insert("x-request-id", HeaderValue::from_static("trace-abc"));
        let r = futures::executor::block_on(serve_empty(&GET_ORDER, incoming(h, b""), async |c: &Ctx| {
            Ok(json(StatusCode::OK, &c.request_id().to_string()))
        }));
        assert_eq!(r.headers()["x-request-id"], "trace-abc");
        assert_eq!(r.body().as_ref(), b"\"trace-abc\"");
    }
}
