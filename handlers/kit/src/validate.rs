//! JSON parsing and JSON Schema 2020-12 validation, with every failure located.
//!
//! Every validator is generated at build time from its file in `schemas/`
//! ([`crate::schemas::generated`]): a fresh instance validates without
//! compiling a schema, and a component carries no schema compiler (2.1 MB of
//! jsonschema's code, with the regex engines it pulls in, in every component
//! while one was reachable). `format` is asserted, not an annotation, as the
//! contract requires.

use crate::problem::{FieldError, MAX_REPORTED_ERRORS, Problem, ProblemKind};
use jsonschema::error::ValidationErrorKind;
use serde_json::Value;

/// A validator's error walk, as generated at build time.
pub type ErrorsOf = for<'i> fn(&'i Value) -> jsonschema::ErrorIterator<'i>;

/// A schema's validator, generated at build time.
#[derive(Clone, Copy)]
pub struct Schema {
    errors_of: ErrorsOf,
}

impl Schema {
    /// The schema whose generated error walk is `errors_of`.
    pub const fn generated(errors_of: ErrorsOf) -> Schema {
        Schema { errors_of }
    }

    fn iter_errors<'i>(&self, instance: &'i Value) -> jsonschema::ErrorIterator<'i> {
        (self.errors_of)(instance)
    }

    /// The failed constraints, in document order; empty when `instance` is
    /// valid. The walk stops one past [`MAX_REPORTED_ERRORS`]: an answer lists
    /// no more, and a hostile body must not buy unbounded work.
    pub fn errors(&self, instance: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for error in self.iter_errors(instance) {
            if errors.len() > MAX_REPORTED_ERRORS {
                break;
            }
            let pointer = error.instance_path().as_str().to_string();
            match error.kind() {
                // One entry per unknown property, located at the property itself.
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        errors.push(FieldError::at_pointer(
                            format!("{pointer}/{}", escape_pointer_token(name)),
                            "additionalProperties",
                            "unknown property",
                        ));
                    }
                }
                kind => errors.push(FieldError::at_pointer(
                    pointer,
                    kind.keyword(),
                    error.masked().to_string(),
                )),
            }
        }
        errors
    }

    /// Whether `instance` passes, stopping at the first failure instead of
    /// listing them all.
    pub fn is_valid(&self, instance: &Value) -> bool {
        self.iter_errors(instance).next().is_none()
    }

    /// Every failed constraint of a flat object of query parameters, each
    /// located by the parameter's name rather than a pointer.
    pub fn parameter_errors(&self, parameters: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        for error in self.iter_errors(parameters) {
            if errors.len() > MAX_REPORTED_ERRORS {
                break;
            }
            match error.kind() {
                ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for name in unexpected {
                        errors.push(FieldError::at_parameter(
                            name,
                            "additionalProperties",
                            "unknown parameter",
                        ));
                    }
                }
                ValidationErrorKind::Required { property } => errors.push(FieldError::at_parameter(
                    property.as_str().unwrap_or_default(),
                    "required",
                    "is required",
                )),
                kind => {
                    let pointer = error.instance_path().as_str();
                    // The first reference token is the parameter's name.
                    let name = pointer.split('/').nth(1).unwrap_or_default();
                    let name = name.replace("~1", "/").replace("~0", "~");
                    errors.push(FieldError::at_parameter(
                        name,
                        kind.keyword(),
                        error.masked().to_string(),
                    ));
                }
            }
        }
        errors
    }
}

/// Escapes one reference token (RFC 6901 §3).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// The most JSON values (scalars, arrays and objects, nested ones included)
/// a body may hold: far more than any route's schema admits, and few enough
/// that a hostile 14 MiB body of `[0,0,0,...]` is refused before it is parsed
/// into millions of values.
pub const MAX_JSON_VALUES: usize = 10_000;

/// Whether `body` holds more than `limit` JSON values, counted without
/// parsing: one for the top-level value, and one more for every `[`, `{` and
/// `,` outside strings. For valid JSON that is exact but for empty arrays
/// and objects (each counted once more), so it never undercounts; and it
/// costs one pass over the bytes, whatever they are.
pub fn exceeds_values(body: &[u8], limit: usize) -> bool {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &byte in body {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                values += 1;
                if values > limit {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Parses a request body, answering `400 malformed-json` with the line,
/// column and byte offset of the first error.
pub fn parse_json(body: &[u8]) -> Result<Value, Problem> {
    let text = std::str::from_utf8(body).map_err(|e| {
        let offset = e.valid_up_to();
        let (line, column) = line_column(&body[..offset]);
        Problem::new(
            ProblemKind::MalformedJson,
            format!("body is not valid UTF-8 at line {line}, column {column} (byte offset {offset})"),
        )
    })?;
    serde_json::from_str(text).map_err(|e| {
        let offset = byte_offset(text, e.line(), e.column());
        Problem::new(
            ProblemKind::MalformedJson,
            format!("{} (byte offset {offset})", describe(&e)),
        )
    })
}

fn describe(e: &serde_json::Error) -> String {
    // serde_json's Display already says "at line L column C".
    let text = e.to_string();
    if e.is_eof() && text.is_empty() {
        "unexpected end of body".into()
    } else {
        text
    }
}

fn line_column(prefix: &[u8]) -> (usize, usize) {
    let line = prefix.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = prefix.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
    (line, column)
}

/// serde_json counts lines from 1 and columns (in bytes) from 1; column 0
/// means "before the first byte of the line".
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let line_start: usize = text
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    (line_start + column.saturating_sub(1)).min(text.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> Schema {
        Schema::generated(crate::schemas::generated::OrderCreateRequest::iter_errors)
    }

    #[test]
    fn reports_every_failed_constraint_with_its_pointer() {
        let body = json!({
            "userId": "not-a-uuid",
            "items": [{"productId": "", "quantity": 0}, {"productId": "x", "quantity": 1.5, "colour": "red"}],
            "coupon": "FREE"
        });
        let mut found: Vec<(String, String)> = order_schema()
            .errors(&body)
            .into_iter()
            .map(|e| match e.location {
                crate::problem::Location::Pointer(p) => (p, e.keyword),
                other => panic!("{other:?}"),
            })
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                ("/coupon".into(), "additionalProperties".into()),
                ("/items/0/productId".into(), "minLength".into()),
                ("/items/0/quantity".into(), "minimum".into()),
                ("/items/1/colour".into(), "additionalProperties".into()),
                ("/items/1/quantity".into(), "type".into()),
                ("/userId".into(), "format".into()),
            ]
        );
    }

    #[test]
    fn messages_never_echo_the_value() {
        let secret = "s3cr3t-value-that-must-not-leak";
        let errors = order_schema().errors(&json!({"userId": secret, "items": []}));
        assert!(!errors.is_empty());
        for e in errors {
            assert!(!e.message.contains(secret), "{}", e.message);
        }
    }

    #[test]
    fn missing_fields_are_reported_at_their_parent() {
        let errors = order_schema().errors(&json!({}));
        let keywords: Vec<_> = errors
            .iter()
            .map(|e| (e.keyword.as_str(), e.location.clone()))
            .collect();
        assert_eq!(keywords.len(), 2, "{errors:?}");
        assert!(
            keywords
                .iter()
                .all(|(k, l)| *k == "required" && *l == crate::problem::Location::Pointer(String::new()))
        );
    }

    #[test]
    fn array_bounds_are_checked() {
        let many: Vec<_> = (0..101).map(|_| json!({"productId": "p", "quantity": 1})).collect();
        let uid = "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e";
        assert_eq!(
            order_schema().errors(&json!({"userId": uid, "items": many}))[0].keyword,
            "maxItems"
        );
        assert_eq!(
            order_schema().errors(&json!({"userId": uid, "items": []}))[0].keyword,
            "minItems"
        );
        assert!(order_schema().is_valid(&json!({"userId": uid, "items": [{"productId": "p", "quantity": 10000}]})));
    }

    #[test]
    fn pointer_tokens_are_escaped() {
        let errors = order_schema().errors(&json!({"a/b~c": 1, "userId": "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e", "items": [{"productId": "p", "quantity": 1}]}));
        assert_eq!(errors[0].location, crate::problem::Location::Pointer("/a~1b~0c".into()));
    }

    /// The generated validator finds what jsonschema's own compiler finds
    /// from the same file (the compiler runs here, in tests only).
    #[test]
    fn build_time_and_run_time_validators_agree() {
        let document: Value = serde_json::from_str(crate::schemas::ORDER_CREATE_REQUEST).unwrap();
        let compiled = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&document)
            .unwrap();
        let keys = |errors: jsonschema::ErrorIterator<'_>| -> Vec<(String, String)> {
            let mut keys: Vec<_> = errors
                .map(|e| (e.instance_path().as_str().to_string(), e.kind().keyword().to_string()))
                .collect();
            keys.sort();
            keys
        };
        for body in [
            json!({"userId": "x", "items": [{"productId": "", "quantity": 0, "z": 1}], "extra": true}),
            json!({"items": "none"}),
            json!([]),
            json!({"userId": "0b6f1a53-6c1f-4d7e-9a43-2f1f4a0c9b1e", "items": [{"productId": "p", "quantity": 3}]}),
        ] {
            assert_eq!(
                keys(order_schema().iter_errors(&body)),
                keys(compiled.iter_errors(&body)),
                "{body}"
            );
        }
    }

    #[test]
    fn malformed_json_says_where() {
        let p = parse_json(b"{\n  \"a\": 1,\n  \"b\": }").unwrap_err();
        assert_eq!(p.kind, ProblemKind::MalformedJson);
        assert!(p.detail.contains("line 3 column 8"), "{}", p.detail);
        assert!(p.detail.contains("byte offset 19"), "{}", p.detail);
        let p = parse_json(b"").unwrap_err();
        assert!(p.detail.contains("line 1 column 0"), "{}", p.detail);
    }

    #[test]
    fn non_utf8_says_where() {
        let p = parse_json(b"{\"a\": \"\xff\"}").unwrap_err();
        assert_eq!(p.kind, ProblemKind::MalformedJson);
        assert!(p.detail.contains("byte offset 7"), "{}", p.detail);
        assert!(p.detail.contains("line 1, column 8"), "{}", p.detail);
    }
}
