//! The OpenAPI 3.1 document, assembled from the route contracts
//! ([`crate::contract::ALL`]) and the schemas of `schemas/` embedded at build
//! time. Nothing in it is written by hand, so it cannot drift from what the
//! components enforce.

use crate::contract::{ALL, Route};
use crate::problem::{CONTENT_TYPE as PROBLEM_CONTENT_TYPE, ProblemKind};
use crate::schemas;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// The document served at `/openapi.json`.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ALL {
        let path = openapi_path(route.path);
        let entry = paths.entry(path).or_insert_with(|| json!({}));
        for method in route.methods {
            entry[method.as_str().to_ascii_lowercase()] = operation(route);
        }
    }
    let mut components = Map::new();
    for (file, text) in schemas::ALL {
        components.insert(component_name(file), embedded(text));
    }
    json!({
        // The default dialect (OAS 3.1 base: JSON Schema 2020-12 plus the OAS
        // vocabulary) reads every schema of `schemas/`; naming plain 2020-12
        // instead is valid but makes renderers (Swagger UI) warn.
        "openapi": "3.1.0",
        "info": {
            "title": "Orders and images API",
            "version": env!("CARGO_PKG_VERSION"),
            "license": { "name": "Apache-2.0", "identifier": "Apache-2.0" },
            "description": description(),
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearerAuth": {
                    "type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                    "description": "HS256, `sub` = the user id, `exp` required.",
                },
            },
            "x-problem-types": problem_catalogue(),
        },
    })
}

/// [`document`] serialised, built once per instance: instances serve many
/// requests, and the document never changes while one lives.
pub fn document_json() -> bytes::Bytes {
    static DOCUMENT: std::sync::OnceLock<bytes::Bytes> = std::sync::OnceLock::new();
    DOCUMENT
        .get_or_init(|| bytes::Bytes::from(document().to_string()))
        .clone()
}

/// `/orders/:id` becomes `/orders/{id}`.
fn openapi_path(spin_route: &str) -> String {
    spin_route
        .split('/')
        .map(|segment| match segment.strip_prefix(':') {
            Some(name) => format!("{{{name}}}"),
            None => segment.to_string(),
        })
        .collect::<Vec<_>>()
        .join("/")
}

fn component_name(file: &str) -> String {
    file.trim_end_matches(".json").to_string()
}

fn schema_ref(file: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{}", component_name(file)) })
}

/// The schema as a component: `$schema` is implied by the document's dialect.
fn embedded(text: &str) -> Value {
    let mut value: Value = serde_json::from_str(text).expect("embedded schema is JSON");
    if let Some(object) = value.as_object_mut() {
        object.remove("$schema");
    }
    value
}

/// Every answer carries `x-request-id` (conventions): the caller's when sane.
fn request_id_header() -> Value {
    json!({
        "required": true,
        "description": "The request's id: the caller's `x-request-id` when it was 1-128 visible ASCII characters, a generated one otherwise.",
        "schema": { "type": "string", "pattern": "^[!-~]{1,128}$" },
    })
}

fn operation(route: &Route) -> Value {
    let raw = route.body.as_ref().and_then(|b| b.raw.as_ref());
    let mut responses = Map::new();
    for r in route.responses {
        let mut response = json!({ "description": r.description, "headers": { "x-request-id": request_id_header() } });
        response["content"] = match (raw, r.schema_file) {
            (Some(raw), _) => raw
                .answers
                .iter()
                .map(|t| {
                    (
                        t.to_string(),
                        json!({ "schema": { "type": "string", "contentMediaType": t } }),
                    )
                })
                .collect::<Map<_, _>>()
                .into(),
            (None, schema) => {
                json!({ "application/json": { "schema": schema.map(schema_ref).unwrap_or_else(|| json!({ "type": "object" })) } })
            }
        };
        if r.status == 201 {
            response["headers"]["Location"] =
                json!({ "required": true, "schema": { "type": "string" }, "description": "URL of the new resource." });
        }
        if route.operation_id == "createOrder" && r.status == 201 {
            // Stateful clients (and fuzzers) may follow a created order to its reading.
            response["links"] = json!({
                "GetOrderById": {
                    "operationId": "getOrder",
                    "parameters": { "path.id": "$response.body#/orderId" },
                    "description": "The order just created.",
                }
            });
        }
        responses.insert(r.status.to_string(), response);
    }
    let mut by_status: BTreeMap<u16, Vec<ProblemKind>> = BTreeMap::new();
    for kind in route.problems {
        by_status.entry(kind.status().as_u16()).or_default().push(*kind);
    }
    for (status, kinds) in by_status {
        let types: Vec<&str> = kinds.iter().map(|k| k.type_uri()).collect();
        let mut response = json!({
            "description": format!("Problem: {}", types.join(", ")),
            "headers": { "x-request-id": request_id_header() },
            "content": { PROBLEM_CONTENT_TYPE: { "schema": schema_ref("problem.json") } },
        });
        if kinds.contains(&ProblemKind::MethodNotAllowed) {
            response["headers"]["Allow"] = json!({ "required": true, "schema": { "type": "string" } });
        }
        if kinds.contains(&ProblemKind::Unauthorized) {
            response["headers"]["WWW-Authenticate"] =
                json!({ "required": true, "schema": { "type": "string", "pattern": "^Bearer" } });
        }
        if kinds.contains(&ProblemKind::ServerBusy) {
            response["headers"]["Retry-After"] = json!({
                "required": kinds == [ProblemKind::ServerBusy],
                "description": "Seconds to wait before retrying (on `server-busy`).",
                "schema": { "type": "integer", "minimum": 1 }
            });
        }
        responses.entry(status.to_string()).or_insert(response);
    }
    let mut parameters = vec![json!({
        "name": "x-request-id",
        "in": "header",
        "required": false,
        "description": "Echoed back when 1-128 visible ASCII characters; any other value (or none) is replaced by a generated id, never refused.",
        "schema": { "type": "string" },
    })];
    for segment in route.path.split('/') {
        if let Some(name) = segment.strip_prefix(':') {
            parameters.push(json!({
                "name": name, "in": "path", "required": true,
                "schema": { "type": "string", "format": "uuid" },
            }));
        }
    }
    let mut op = json!({
        "operationId": route.operation_id,
        "summary": route.summary,
        "parameters": parameters,
        "responses": responses,
    });
    if route.auth.is_some() {
        op["security"] = json!([{ "bearerAuth": [] }]);
    }
    if let Some(body) = &route.body {
        op["requestBody"] = match (&body.raw, body.parameters_schema()) {
            (Some(raw), Some(query)) => raw_body(&mut op, raw, &query),
            _ => json!({
                "required": true,
                "description": format!("At most {} bytes.", body.limit),
                "content": { "application/json": { "schema": schema_ref(body.schema_file) } },
            }),
        };
    }
    op
}

/// A raw body: its media types, and its other fields as query parameters.
fn raw_body(op: &mut Value, raw: &crate::contract::RawContract, parameters: &Value) -> Value {
    let required = parameters["required"].as_array().cloned().unwrap_or_default();
    let list = op["parameters"].as_array_mut().expect("parameters is a list");
    for (name, schema) in parameters["properties"].as_object().into_iter().flatten() {
        list.push(json!({
            "name": name, "in": "query", "required": required.contains(&json!(name)),
            "description": schema["description"].as_str().unwrap_or_default(),
            "schema": schema,
        }));
    }
    let content: Map<String, Value> = raw
        .media_types
        .iter()
        .map(|t| {
            (
                t.to_string(),
                json!({ "schema": { "type": "string", "contentMediaType": t } }),
            )
        })
        .collect();
    json!({
        "required": true,
        "description": format!("The `{}` itself, at most {} bytes.", raw.field, raw.limit),
        "content": content,
    })
}

fn problem_catalogue() -> Value {
    let schema: Value = serde_json::from_str(schemas::PROBLEM).expect("problem schema is JSON");
    schema["x-problem-types"].clone()
}

fn description() -> String {
    let mut text =
        String::from("Every error is RFC 9457 `application/problem+json` (schema `problem`). Problem types:\n\n");
    for entry in problem_catalogue().as_array().into_iter().flatten() {
        text.push_str(&format!(
            "- `{}` ({}): {}\n",
            entry["type"].as_str().unwrap_or_default(),
            entry["status"],
            entry["description"].as_str().unwrap_or_default()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_and_method_is_documented() {
        let doc = document();
        for route in ALL {
            for method in route.methods {
                let op = &doc["paths"][openapi_path(route.path)][method.as_str().to_ascii_lowercase()];
                assert_eq!(op["operationId"], route.operation_id);
                for r in route.responses {
                    assert!(op["responses"][r.status.to_string()].is_object());
                }
                for kind in route.problems {
                    let text = op["responses"][kind.status().as_u16().to_string()]["description"]
                        .as_str()
                        .unwrap();
                    assert!(text.contains(kind.type_uri()), "{} {text}", route.path);
                }
            }
        }
        assert!(doc["paths"]["/orders/{id}"]["get"]["parameters"][1]["name"] == "id");
        let json_form = &doc["paths"]["/images/resize"]["post"];
        assert!(json_form["requestBody"]["content"]["image/png"].is_null());
        assert!(
            json_form["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["in"] != "query")
        );
        let resize = &doc["paths"]["/images/resize/raw"]["post"];
        assert!(resize["requestBody"]["content"]["image/png"].is_object());
        assert!(resize["requestBody"]["content"]["application/json"].is_null());
        assert!(resize["responses"]["200"]["content"]["image/webp"].is_object());
        assert!(resize["responses"]["200"]["content"]["application/json"].is_null());
        let query: Vec<&str> = resize["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(query, ["fit", "format", "height", "quality", "width"]);
    }

    #[test]
    fn every_ref_resolves_and_every_problem_type_is_listed() {
        let doc = document();
        let text = doc.to_string();
        for piece in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = &piece[..piece.find('"').unwrap()];
            assert!(doc["components"]["schemas"][name].is_object(), "{name}");
        }
        for kind in ProblemKind::ALL {
            assert!(doc["info"]["description"].as_str().unwrap().contains(kind.type_uri()));
        }
        assert_eq!(doc["openapi"], "3.1.0");
    }
}
