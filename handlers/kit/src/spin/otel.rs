//! The request's spans through Spin's `wasi:otel` tracing interface
//! (feature `otel`).
//!
//! Spin 4.1 links `wasi:otel` only under `spin up --experimental-wasi-otel`,
//! and a component that imports it does not start without that flag; so
//! spans are a separate build (`make components-otel`, `make up-otel`),
//! and the default components import nothing of it. With the flag and an
//! `OTEL_EXPORTER_OTLP_ENDPOINT`, Spin hands the guest its span
//! (`outer-span-context`), tracks the guest's open spans so its own work
//! (a SQLite or PostgreSQL call) nests under them, and exports what the
//! guest ends with its own spans.
//!
//! Measured on Spin 4.1 (`make test-otel`): for a WASI 0.3 component, as
//! these are, `outer-span-context` answers an all-zero context, because
//! wasmtime's handler runs the guest on a task of its own, outside Spin's
//! `execute_wasm_component` span (spin `crates/trigger-http/src/wasip3.rs`);
//! for the same reason Spin's own spans of the guest's calls (e.g.
//! `spin_variables.get`) start traces of their own. The pipeline then hangs
//! the component's span under the caller's `traceparent` span, in the
//! caller's trace, beside Spin's request span ([`crate::pipeline`]); should
//! a later Spin give a span, it becomes the parent.
//!
//! No maintained crate binds `wasi:otel@0.2.0-rc.2` for a guest without
//! bringing the OpenTelemetry SDK into the component, so the bindings are
//! generated here from the WIT in `handlers/kit/wit`.

use crate::span::{FinishedSpan, HostSpan, SpanExporter, SpanIds, SpanKind};
use std::time::{SystemTime, UNIX_EPOCH};

mod bindings {
    #![allow(missing_docs, unreachable_pub, clippy::all)]
    spin_sdk::wit_bindgen::generate!({
        runtime_path: "spin_sdk::wit_bindgen::rt",
        world: "orders-api:spans/spans",
        path: "wit",
        generate_all,
    });
}

use bindings::wasi::clocks::wall_clock::Datetime;
use bindings::wasi::otel::tracing as wasi;
use bindings::wasi::otel::types::{InstrumentationScope, KeyValue};

/// Spin's `wasi:otel` as the pipeline's span exporter.
pub static WASI_OTEL: WasiOtel = WasiOtel;

/// Sends spans to the host with `on-start` / `on-end`.
pub struct WasiOtel;

impl SpanExporter for WasiOtel {
    fn host_span(&self) -> Option<HostSpan> {
        let host = wasi::outer_span_context();
        // Spin writes ids as unpadded hex numbers (`{:x}`): pad them back,
        // in the lower case W3C ids are written in.
        Some(HostSpan {
            trace_id: format!("{:0>32}", host.trace_id.to_ascii_lowercase()),
            span_id: format!("{:0>16}", host.span_id.to_ascii_lowercase()),
            sampled: host.trace_flags.contains(wasi::TraceFlags::SAMPLED),
        })
    }

    fn start(&self, span: &SpanIds) {
        wasi::on_start(&context(span));
    }

    fn end(&self, span: FinishedSpan) {
        let data = wasi::SpanData {
            span_context: context(&span.ids),
            parent_span_id: span.parent_span_id,
            span_kind: match span.kind {
                SpanKind::Internal => wasi::SpanKind::Internal,
                SpanKind::Client => wasi::SpanKind::Client,
            },
            name: span.name.into_owned(),
            start_time: datetime(span.start),
            end_time: datetime(span.end),
            attributes: span
                .attributes
                .iter()
                .map(|(key, value)| KeyValue {
                    key: (*key).to_string(),
                    value: value.to_json(),
                })
                .collect(),
            events: Vec::new(),
            links: Vec::new(),
            status: match span.error {
                Some(description) => wasi::Status::Error(description),
                None => wasi::Status::Unset,
            },
            instrumentation_scope: InstrumentationScope {
                name: "orders-api".to_string(),
                version: Some(env!("CARGO_PKG_VERSION").to_string()),
                schema_url: None,
                attributes: Vec::new(),
            },
            dropped_attributes: 0,
            dropped_events: 0,
            dropped_links: 0,
        };
        wasi::on_end(&data);
    }
}

/// A recorded span's context: sampled (only sampled requests record), local.
fn context(ids: &SpanIds) -> wasi::SpanContext {
    wasi::SpanContext {
        trace_id: ids.trace_id.clone(),
        span_id: ids.span_id.clone(),
        trace_flags: wasi::TraceFlags::SAMPLED,
        is_remote: false,
        trace_state: Vec::new(),
    }
}

fn datetime(time: SystemTime) -> Datetime {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    Datetime {
        seconds: since.as_secs(),
        nanoseconds: since.subsec_nanos(),
    }
}
