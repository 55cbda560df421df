//! `GET /docs`: the API reference page, rendering `/openapi.json` with
//! Swagger UI. Contract: [`kit::contract::DOCS`]. No database, no network,
//! no secrets: the page and its assets are embedded at build time (no CDN
//! at run time), assets under content-hashed names cached for a year.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use kit::pipeline::Ctx;
use kit::problem::{Problem, ProblemKind};
use spin_sdk::http::Request;
use spin_sdk::http_service;

/// The plain bytes of an embedded gzip member (RFC 1952) as build.rs wrote
/// it: a 10-byte header without optional fields, the DEFLATE data, then
/// CRC-32 and size, which are not checked again here (the bytes are ours,
/// embedded at build time).
fn inflate(gzipped: &[u8]) -> Option<Vec<u8>> {
    let deflated = gzipped.get(10..gzipped.len().checked_sub(8)?)?;
    miniz_oxide::inflate::decompress_to_vec(deflated).ok()
}

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

const PAGE: &str = include_str!(concat!(env!("OUT_DIR"), "/index.html"));

/// The page may load only what this app serves; Swagger UI sets inline
/// styles, and its logo is a data: image.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; \
                   frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

#[http_service]
async fn handle(request: Request) -> impl spin_sdk::http::IntoResponse {
    kit::spin::serve_empty(&kit::contract::DOCS, request, async |ctx: &Ctx| {
        let rest = ctx.path_info();
        match rest {
            "" | "/" => Ok(page()),
            _ => rest
                .strip_prefix("/assets/")
                .and_then(|name| asset(ctx, name))
                .ok_or_else(|| Problem::new(ProblemKind::NotFound, "no such page or asset under /docs")),
        }
    })
    .await
}

fn page() -> Response<Bytes> {
    let mut response = Response::new(Bytes::from_static(PAGE.as_bytes()));
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    // Small, and names the current assets: always revalidated.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    response
}

fn asset(ctx: &Ctx, name: &str) -> Option<Response<Bytes>> {
    let (_, content_type, gzipped) = ASSETS.iter().find(|(n, ..)| *n == name)?;
    let gzip = kit::negotiate::accepts(&ctx.head.headers, &header::ACCEPT_ENCODING, "gzip");
    let body = if gzip {
        Bytes::from_static(gzipped)
    } else {
        Bytes::from(inflate(gzipped)?)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=31536000, immutable"),
    );
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if gzip {
        headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    Some(response)
}
