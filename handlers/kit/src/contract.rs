//! The routes of the app: what each one serves and promises.
//!
//! The same [`Route`] value drives the handler's pipeline (methods, body
//! limit, body schema) and the OpenAPI document, so the two cannot disagree.
//! Paths use Spin's route syntax; `spin.toml` wires each to its component.

use crate::auth::Authenticate;
use crate::problem::ProblemKind::{self, *};
use crate::schemas::generated;
use crate::validate::{ErrorsOf, Schema};
use http::Method;

/// The default body limit for JSON routes (conventions: 64 KiB).
pub const DEFAULT_JSON_LIMIT: usize = 64 * 1024;

/// A request body a route accepts.
pub struct BodyContract {
    /// File name in `schemas/`.
    pub schema_file: &'static str,
    /// The schema text, embedded at build time.
    pub schema: &'static str,
    /// The validator generated from it at build time. A route names its
    /// own, so a component carries only the validators of its routes.
    pub validator: ErrorsOf,
    /// Largest accepted body in bytes; more is `413`, decided before parsing.
    pub limit: usize,
    /// For a route that takes a raw (non-JSON) body, unparsed: its media
    /// types and parameters. `None` for a JSON body.
    pub raw: Option<RawContract>,
}

/// A raw body: one field of a JSON schema (e.g. base64 image data) sent as
/// the whole body instead, the other fields as query parameters, validated
/// against the same schema with that field removed. Such a route takes only
/// raw bodies: one operation, one request shape (a JSON form of the same
/// fields is a route of its own).
#[derive(Debug)]
pub struct RawContract {
    /// Accepted `Content-Type` essences, lower case; others are `415`.
    pub media_types: &'static [&'static str],
    /// Largest accepted raw body in bytes.
    pub limit: usize,
    /// The JSON field the raw body stands for.
    pub field: &'static str,
    /// A value of that field that its schema accepts: the query parameters
    /// are checked with the body's own validator, this in the field's place.
    pub stand_in: &'static str,
    /// Media types of the route's raw answers (for the OpenAPI document).
    pub answers: &'static [&'static str],
}

impl BodyContract {
    /// A JSON body of at most `limit` bytes, checked with `validator`.
    pub const fn new(schema_file: &'static str, schema: &'static str, validator: ErrorsOf, limit: usize) -> Self {
        BodyContract {
            schema_file,
            schema,
            validator,
            limit,
            raw: None,
        }
    }

    /// A raw body of the media types of `raw`, its parameters in the query,
    /// validated with `schema` less the raw field.
    pub const fn raw(schema_file: &'static str, schema: &'static str, validator: ErrorsOf, raw: RawContract) -> Self {
        BodyContract {
            schema_file,
            schema,
            validator,
            limit: raw.limit,
            raw: Some(raw),
        }
    }

    /// The body's schema, as its generated validator.
    pub fn validator(&self) -> Schema {
        Schema::generated(self.validator)
    }

    /// The schema of the query parameters of the raw form: the body schema
    /// without the raw field. `None` for JSON-only bodies.
    pub fn parameters_schema(&self) -> Option<serde_json::Value> {
        let raw = self.raw.as_ref()?;
        let mut schema: serde_json::Value = serde_json::from_str(self.schema).expect("embedded schema is JSON");
        let object = schema.as_object_mut()?;
        object.remove("$id");
        object.remove("examples");
        if let Some(properties) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
            properties.remove(raw.field);
        }
        if let Some(required) = object.get_mut("required").and_then(|r| r.as_array_mut()) {
            required.retain(|name| name != raw.field);
        }
        Some(schema)
    }
}

impl std::fmt::Debug for BodyContract {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BodyContract")
            .field("schema_file", &self.schema_file)
            .field("limit", &self.limit)
            .finish()
    }
}

/// One answer a route can give with a JSON body.
#[derive(Debug)]
pub struct ResponseContract {
    /// The HTTP status of this answer.
    pub status: u16,
    /// What the answer means, for the OpenAPI document.
    pub description: &'static str,
    /// File name in `schemas/`; `None` for a document without a schema of ours.
    pub schema_file: Option<&'static str>,
}

/// One route: one Spin component.
#[derive(Debug)]
pub struct Route {
    /// The component id in `spin.toml`; also the `component` of log lines.
    pub component: &'static str,
    /// Spin route template, e.g. `/orders/:id`; also the `path` of log lines.
    pub path: &'static str,
    /// The methods served. `HEAD` is implied by `GET`.
    pub methods: &'static [Method],
    /// The OpenAPI `operationId`, stable so generated clients keep their names.
    pub operation_id: &'static str,
    /// One line for the OpenAPI document.
    pub summary: &'static str,
    /// The request body the route takes; `None` when it takes none.
    pub body: Option<BodyContract>,
    /// The answers other than problems, for the OpenAPI document.
    pub responses: &'static [ResponseContract],
    /// The problem types this route may answer, besides its responses.
    pub problems: &'static [ProblemKind],
    /// How callers prove who they are, on routes that need a bearer token
    /// (`401` before anything else is read). A function rather than a flag,
    /// so only the components of such routes carry the JWT code.
    pub auth: Option<Authenticate>,
}

impl Route {
    /// Whether the route answers `method` (`HEAD` follows `GET`).
    pub fn allows(&self, method: &Method) -> bool {
        self.methods.contains(method) || (method == Method::HEAD && self.methods.contains(&Method::GET))
    }

    /// The value of the `Allow` header.
    pub fn allow_header(&self) -> String {
        let mut names: Vec<&str> = self.methods.iter().map(Method::as_str).collect();
        if self.methods.contains(&Method::GET) && !self.methods.contains(&Method::HEAD) {
            names.push("HEAD");
        }
        names.join(", ")
    }
}

/// A route whose requests have no body: its logic gets the request head only.
#[derive(Debug)]
pub struct EmptyRoute(Route);

/// A route taking a JSON body, validated against its schema, then handed to
/// the logic as the route's type.
#[derive(Debug)]
pub struct JsonRoute(Route);

/// A route taking a raw body of its media types, its other fields as query
/// parameters ([`RawContract`]): the logic gets the parameters and the bytes.
#[derive(Debug)]
pub struct RawRoute(Route);

// Each kind checks its route's body when the static is built: a route
// declared with the wrong kind does not compile, and a handler cannot serve
// a route through another kind's entry point (`crate::pipeline`).
impl EmptyRoute {
    /// `route`, which must have no body.
    pub const fn new(route: Route) -> Self {
        assert!(route.body.is_none(), "an EmptyRoute has no body");
        EmptyRoute(route)
    }
}

impl JsonRoute {
    /// `route`, which must take a JSON body.
    pub const fn new(route: Route) -> Self {
        assert!(
            matches!(&route.body, Some(BodyContract { raw: None, .. })),
            "a JsonRoute takes a JSON body"
        );
        JsonRoute(route)
    }

    /// The body's contract.
    pub fn body(&self) -> &BodyContract {
        self.0.body.as_ref().expect("checked by new")
    }
}

impl RawRoute {
    /// `route`, which must take a raw body.
    pub const fn new(route: Route) -> Self {
        assert!(
            matches!(&route.body, Some(BodyContract { raw: Some(_), .. })),
            "a RawRoute takes a raw body"
        );
        RawRoute(route)
    }

    /// The body's contract and its raw form.
    pub fn body(&self) -> (&BodyContract, &RawContract) {
        let body = self.0.body.as_ref().expect("checked by new");
        (body, body.raw.as_ref().expect("checked by new"))
    }
}

macro_rules! deref_to_route {
    ($($kind:ty),*) => {$(
        impl std::ops::Deref for $kind {
            type Target = Route;
            fn deref(&self) -> &Route {
                &self.0
            }
        }
    )*};
}
deref_to_route!(EmptyRoute, JsonRoute, RawRoute);

/// Problems every route can answer.
const COMMON: [ProblemKind; 3] = [MethodNotAllowed, InvalidConfig, InternalError];

/// `POST /orders`: a signed-in user creates an order, idempotently by key.
pub static CREATE_ORDER: JsonRoute = JsonRoute::new(Route {
    component: "orders-create",
    path: "/orders",
    methods: &[Method::POST],
    operation_id: "createOrder",
    summary: "Create an order",
    body: Some(BodyContract::new(
        "order-create.request.json",
        crate::schemas::ORDER_CREATE_REQUEST,
        generated::OrderCreateRequest::iter_errors,
        DEFAULT_JSON_LIMIT,
    )),
    responses: &[ResponseContract {
        status: 201,
        description: "Created; `Location` is the new order's URL.",
        schema_file: Some("order-created.response.json"),
    }],
    problems: &[
        ValidationFailed,
        MalformedJson,
        PayloadTooLarge,
        UnsupportedMediaType,
        InvalidParameter,
        Unauthorized,
        Forbidden,
        IdempotencyKeyReused,
        MethodNotAllowed,
        InvalidConfig,
        InternalError,
        DependencyUnavailable,
    ],
    auth: Some(crate::auth::authenticate),
});

/// `GET /orders/:id`: a signed-in user reads an order of theirs.
pub static GET_ORDER: EmptyRoute = EmptyRoute::new(Route {
    component: "orders-get",
    path: "/orders/:id",
    methods: &[Method::GET],
    operation_id: "getOrder",
    summary: "Read an order",
    body: None,
    responses: &[ResponseContract {
        status: 200,
        description: "The order.",
        schema_file: Some("order.response.json"),
    }],
    problems: &[
        InvalidParameter,
        Unauthorized,
        NotFound,
        MethodNotAllowed,
        InvalidConfig,
        InternalError,
        DependencyUnavailable,
    ],
    auth: Some(crate::auth::authenticate),
});

/// `GET /healthz`: whether the service and its database answer.
pub static HEALTH: EmptyRoute = EmptyRoute::new(Route {
    component: "healthz",
    path: "/healthz",
    methods: &[Method::GET],
    operation_id: "health",
    summary: "Health of the service and its database",
    body: None,
    responses: &[
        ResponseContract {
            status: 200,
            description: "Every check is ok.",
            schema_file: Some("health.response.json"),
        },
        ResponseContract {
            status: 503,
            description: "A check failed; `checks` names it.",
            schema_file: Some("health.response.json"),
        },
    ],
    problems: &COMMON,
    auth: None,
});

/// `GET /openapi.json`: the OpenAPI document of [`ALL`].
pub static OPENAPI: EmptyRoute = EmptyRoute::new(Route {
    component: "openapi",
    path: "/openapi.json",
    methods: &[Method::GET],
    operation_id: "openapi",
    summary: "This OpenAPI 3.1 document",
    body: None,
    responses: &[ResponseContract {
        status: 200,
        description: "The OpenAPI document.",
        schema_file: None,
    }],
    problems: &COMMON,
    auth: None,
});

/// Largest image `POST /images/resize` takes: the raw body of the binary
/// form, the decoded `imageData` of the JSON form.
pub const IMAGE_LIMIT: usize = 10 * 1024 * 1024;

/// The JSON form carries the image in base64 (4 bytes per 3), plus room for
/// the other fields: so the same image fits either form.
pub const IMAGE_JSON_LIMIT: usize = IMAGE_LIMIT.div_ceil(3) * 4 + DEFAULT_JSON_LIMIT;

/// The problems of both forms of the resize route.
const RESIZE_PROBLEMS: &[ProblemKind] = &[
    ValidationFailed,
    MalformedJson,
    InvalidParameter,
    InvalidBase64,
    PayloadTooLarge,
    UnsupportedMediaType,
    UnsupportedImage,
    ImageTooLarge,
    CorruptImage,
    ServerBusy,
    MethodNotAllowed,
    InvalidConfig,
    InternalError,
];

/// `POST /images/resize`: an image in base64 in JSON, resized and answered
/// in base64.
pub static RESIZE_IMAGE: JsonRoute = JsonRoute::new(Route {
    component: "images-resize",
    path: "/images/resize",
    methods: &[Method::POST],
    operation_id: "resizeImage",
    summary: "Resize a JPEG, PNG or WebP image sent as base64 in JSON",
    body: Some(BodyContract::new(
        "image-resize.request.json",
        crate::schemas::IMAGE_RESIZE_REQUEST,
        generated::ImageResizeRequest::iter_errors,
        IMAGE_JSON_LIMIT,
    )),
    responses: &[ResponseContract {
        status: 200,
        description: "The resized image, `{\"image\": base64}`.",
        schema_file: Some("image-resized.response.json"),
    }],
    problems: RESIZE_PROBLEMS,
    auth: None,
});

/// The binary form of [`RESIZE_IMAGE`]: the image is the body, the other
/// fields are query parameters, the answer is the encoded image.
pub static RESIZE_IMAGE_RAW: RawRoute = RawRoute::new(Route {
    component: "images-resize",
    path: "/images/resize/raw",
    methods: &[Method::POST],
    operation_id: "resizeImageRaw",
    summary: "Resize a JPEG, PNG or WebP image sent as the raw body, parameters in the query",
    body: Some(BodyContract::raw(
        "image-resize.request.json",
        crate::schemas::IMAGE_RESIZE_REQUEST,
        generated::ImageResizeRequest::iter_errors,
        RawContract {
            media_types: &["image/jpeg", "image/png", "image/webp", "application/octet-stream"],
            limit: IMAGE_LIMIT,
            field: "imageData",
            stand_in: "AAAA",
            answers: &["image/webp", "image/jpeg", "image/png"],
        },
    )),
    responses: &[ResponseContract {
        status: 200,
        description: "The resized image's bytes, in the `format` asked for (else the best of `Accept`, else WebP).",
        schema_file: None,
    }],
    problems: RESIZE_PROBLEMS,
    auth: None,
});

/// The API reference page and its assets (Spin route `/docs/...`): a page
/// for people, not an operation of the API, so it is not in [`ALL`] (nor in
/// the OpenAPI document it renders).
pub static DOCS: EmptyRoute = EmptyRoute::new(Route {
    component: "docs",
    path: "/docs/...",
    methods: &[Method::GET],
    operation_id: "docs",
    summary: "The API reference page",
    body: None,
    responses: &[],
    problems: &[NotFound, MethodNotAllowed, InvalidConfig, InternalError],
    auth: None,
});

/// Whether a request path of the resize component is its raw form (Spin
/// routes `/images/resize/raw/` there too: trailing slashes do not change it).
pub fn is_raw_resize(path: &str) -> bool {
    path.trim_end_matches('/') == RESIZE_IMAGE_RAW.path
}

/// Every route of the API (the OpenAPI document's operations).
pub static ALL: &[&Route] = &[
    &CREATE_ORDER.0,
    &GET_ORDER.0,
    &HEALTH.0,
    &OPENAPI.0,
    &RESIZE_IMAGE.0,
    &RESIZE_IMAGE_RAW.0,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_resize_route_keeps_its_contract_with_a_trailing_slash() {
        for path in ["/images/resize/raw", "/images/resize/raw/", "/images/resize/raw//"] {
            assert!(is_raw_resize(path), "{path}");
        }
        for path in ["/images/resize", "/images/resize/", "/images/resize/rawx"] {
            assert!(!is_raw_resize(path), "{path}");
        }
    }

    #[test]
    fn head_follows_get() {
        assert!(GET_ORDER.allows(&Method::HEAD));
        assert!(!CREATE_ORDER.allows(&Method::HEAD));
        assert_eq!(GET_ORDER.allow_header(), "GET, HEAD");
        assert_eq!(CREATE_ORDER.allow_header(), "POST");
    }

    #[test]
    fn every_schema_file_named_exists() {
        let known: Vec<&str> = crate::schemas::ALL.iter().map(|(name, _)| *name).collect();
        for route in ALL {
            if let Some(body) = &route.body {
                assert!(known.contains(&body.schema_file), "{}", body.schema_file);
            }
            for r in route.responses {
                if let Some(file) = r.schema_file {
                    assert!(known.contains(&file), "{file}");
                }
            }
        }
    }
}
