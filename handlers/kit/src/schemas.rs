//! The JSON Schema documents of `schemas/`, embedded at build time.
//!
//! `schemas/` is the single source of truth for bodies, responses, config and
//! problems; nothing here restates a constraint.

pub const ORDER_CREATE_REQUEST: &str = include_str!("../../../schemas/order-create.request.json");
pub const ORDER_CREATED_RESPONSE: &str = include_str!("../../../schemas/order-created.response.json");
pub const ORDER_RESPONSE: &str = include_str!("../../../schemas/order.response.json");
pub const HEALTH_RESPONSE: &str = include_str!("../../../schemas/health.response.json");
pub const PROBLEM: &str = include_str!("../../../schemas/problem.json");
pub const CONFIG: &str = include_str!("../../../schemas/config.json");
pub const IMAGE_RESIZE_REQUEST: &str = include_str!("../../../schemas/image-resize.request.json");
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
pub mod generated {
    #[jsonschema::validator(path = "../../schemas/order-create.request.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct OrderCreateRequest;

    #[jsonschema::validator(path = "../../schemas/config.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct Config;

    #[jsonschema::validator(path = "../../schemas/image-resize.request.json", validate_formats = true, pattern_options = { engine = regex })]
    pub struct ImageResizeRequest;
}
