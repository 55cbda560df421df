//! The JSON Schema documents of `schemas/`, embedded at build time.
//!
//! `schemas/` is the single source of truth for bodies, responses, config and
//! problems; nothing here restates a constraint.

/// The body of `POST /orders`, which the route validates.
pub const ORDER_CREATE_REQUEST: &str = include_str!("../../../schemas/order-create.request.json");
/// The `201` answer of `POST /orders`, for the OpenAPI document and tests.
pub const ORDER_CREATED_RESPONSE: &str = include_str!("../../../schemas/order-created.response.json");
/// The `200` answer of `GET /orders/{id}`, for the OpenAPI document and tests.
pub const ORDER_RESPONSE: &str = include_str!("../../../schemas/order.response.json");
/// The answer of `GET /healthz`, for the OpenAPI document.
pub const HEALTH_RESPONSE: &str = include_str!("../../../schemas/health.response.json");
/// Every error body, with the `x-problem-types` catalogue [`crate::problem::ProblemKind`] mirrors.
pub const PROBLEM: &str = include_str!("../../../schemas/problem.json");
/// The Spin variables of a component, which the config is checked against.
pub const CONFIG: &str = include_str!("../../../schemas/config.json");
/// The body of `POST /images/resize`, which the route validates.
pub const IMAGE_RESIZE_REQUEST: &str = include_str!("../../../schemas/image-resize.request.json");
/// The `200` answer of `POST /images/resize`, for the OpenAPI document.
pub const IMAGE_RESIZED_RESPONSE: &str = include_str!("../../../schemas/image-resized.response.json");

/// Every embedded schema with its file name, for the OpenAPI document.
pub const ALL: &[(&str, &str)] = &[
    ("order-create.request.json", ORDER_CREATE_REQUEST),
    ("order-created.response.json", ORDER_CREATED_RESPONSE),
    ("order.response.json", ORDER_RESPONSE),
    ("health.response.json", HEALTH_RESPONSE),
    ("problem.json", PROBLEM),
    ("config.json", CONFIG),
    ("image-resize.request.json", IMAGE_RESIZE_REQUEST),
    ("image-resized.response.json", IMAGE_RESIZED_RESPONSE),
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_schema_is_a_valid_2020_12_document() {
        for (name, text) in super::ALL {
            let value: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                value["$schema"], "https://json-schema.org/draft/2020-12/schema",
                "{name}"
            );
            jsonschema::draft202012::meta::validate(&value).unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }
}

/// Validators generated at build time from the schema files, so that a
/// fresh instance validates without compiling anything. Patterns run on the
/// `regex` crate rather than `fancy-regex`: ours need no look-around or
/// back-references, and one engine less is 160 KB less code per component.
// The macro generates `is_valid`, `validate` and `iter_errors` without docs.
#[allow(missing_docs)]
pub mod generated {
    /// Validates the body of `POST /orders` ([`super::ORDER_CREATE_REQUEST`]).
    #[jsonschema::validator(path = "../../schemas/order-create.request.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct OrderCreateRequest;

    /// Validates the config ([`super::CONFIG`]).
    #[jsonschema::validator(path = "../../schemas/config.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct Config;

    /// Validates the body of `POST /images/resize` ([`super::IMAGE_RESIZE_REQUEST`]).
    #[jsonschema::validator(path = "../../schemas/image-resize.request.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct ImageResizeRequest;
}
