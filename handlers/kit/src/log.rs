//! Structured logs: one JSON object per line on stdout, which Spin collects
//! per component. The shape follows pino's, which the original service used.
//!
//! The logger is the request's one telemetry handle: it also opens the
//! request's spans ([`Logger::span`]), which are recorded only in a build
//! and a host that trace ([`crate::span`]).

use crate::config::LogLevel;
use crate::span::{Span, SpanKind, Tracer};
use crate::trace_context::TraceContext;
use serde_json::Value;
use std::io::Write;

/// A logger bound to one component and one request.
#[derive(Clone, Debug)]
pub struct Logger {
    component: &'static str,
    request_id: String,
    /// The request's trace and span (W3C Trace Context), on every line so a
    /// trace finds its lines and a line its trace.
    trace: TraceContext,
    level: LogLevel,
    tracer: Tracer,
}

impl Logger {
    /// A logger writing lines at `level` or more severe, each tagged with
    /// `component`, `request_id` and the ids of `trace`.
    pub fn new(component: &'static str, request_id: String, trace: TraceContext, level: LogLevel) -> Self {
        Logger {
            component,
            request_id,
            trace,
            level,
            tracer: Tracer::off(),
        }
    }

    /// The same logger, opening its spans with `tracer`.
    pub fn with_tracer(self, tracer: Tracer) -> Self {
        Logger { tracer, ..self }
    }

    /// Whether this request's spans are recorded, so a caller can skip
    /// naming one.
    pub fn is_tracing(&self) -> bool {
        self.tracer.is_recording()
    }

    /// Starts a span of this request under the component's span; it ends
    /// when dropped. A no-op unless the request is traced.
    pub fn span(&self, name: impl Into<std::borrow::Cow<'static, str>>, kind: SpanKind) -> Span {
        self.tracer.child(&self.trace.trace_id, &self.trace.span_id, name, kind)
    }

    /// The request's id, which the answer also carries (`x-request-id`,
    /// a problem's `requestId`) so a client's report finds its lines.
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Changes the threshold, for when the config is read after the logger
    /// was made.
    pub fn set_level(&mut self, level: LogLevel) {
        self.level = level;
    }

    /// Whether a line at `level` would be written, so a caller can skip
    /// building costly fields.
    pub fn enabled(&self, level: LogLevel) -> bool {
        level <= self.level
    }

    /// A failure the request could not recover from.
    pub fn error(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Error, msg, fields)
    }

    /// A failure worth an operator's look that the request survived.
    pub fn warn(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Warn, msg, fields)
    }

    /// The normal course of a request (its summary line).
    pub fn info(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Info, msg, fields)
    }

    /// Detail for tracing one request, off by default.
    pub fn debug(&self, msg: &str, fields: &[(&str, Value)]) {
        self.log(LogLevel::Debug, msg, fields)
    }

    /// Writes one line at `level` if the threshold lets it through.
    pub fn log(&self, level: LogLevel, msg: &str, fields: &[(&str, Value)]) {
        if !self.enabled(level) {
            return;
        }
        let line = self.line(level, msg, fields);
        // One write per line so concurrent instances never interleave a line.
        let _ = std::io::stdout().lock().write_all(line.as_bytes());
    }

    /// The line as written, newline included: written straight into one
    /// buffer (no intermediate map), in pino's order (`time`, `level`,
    /// `msg`, `component`, `requestId`, `traceId`, `spanId`, then `fields`).
    pub fn line(&self, level: LogLevel, msg: &str, fields: &[(&str, Value)]) -> String {
        let mut line = Vec::with_capacity(192 + 32 * fields.len());
        line.extend_from_slice(b"{\"time\":\"");
        line.extend_from_slice(crate::time::now().as_bytes());
        line.extend_from_slice(b"\",\"level\":\"");
        line.extend_from_slice(level.as_str().as_bytes());
        line.extend_from_slice(b"\",\"msg\":");
        push_json(&mut line, msg);
        line.extend_from_slice(b",\"component\":");
        push_json(&mut line, self.component);
        line.extend_from_slice(b",\"requestId\":");
        push_json(&mut line, &self.request_id);
        // Hex digits only: no escaping needed.
        line.extend_from_slice(b",\"traceId\":\"");
        line.extend_from_slice(self.trace.trace_id.as_bytes());
        line.extend_from_slice(b"\",\"spanId\":\"");
        line.extend_from_slice(self.trace.span_id.as_bytes());
        line.push(b'"');
        for (key, value) in fields {
            line.push(b',');
            push_json(&mut line, key);
            line.push(b':');
            push_json(&mut line, value);
        }
        line.extend_from_slice(b"}\n");
        String::from_utf8(line).expect("serde_json writes UTF-8")
    }
}

/// Appends `value` as JSON (strings escaped).
fn push_json<T: serde::Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    serde_json::to_writer(out, value).expect("log values serialise");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn trace() -> TraceContext {
        let mut headers = http::HeaderMap::new();
        headers.insert(
            "traceparent",
            http::HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        TraceContext::from_headers(&headers)
    }

    #[test]
    fn line_has_the_common_fields_and_extra_ones() {
        let logger = Logger::new("orders-get", "req-9".into(), trace(), LogLevel::Info);
        let line = logger.line(LogLevel::Info, "request completed", &[("status", json!(200))]);
        assert!(line.ends_with('\n') && !line.trim_end().contains('\n'));
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["level"], "info");
        assert_eq!(v["component"], "orders-get");
        assert_eq!(v["requestId"], "req-9");
        assert_eq!(v["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(v["spanId"].as_str().map(str::len), Some(16));
        assert_eq!(v["status"], 200);
        let time = v["time"].as_str().unwrap();
        assert!(
            chrono::DateTime::parse_from_rfc3339(time).is_ok() && time.ends_with('Z') && time.len() == 24,
            "{time}"
        );
    }

    #[test]
    fn line_escapes_and_keeps_pinos_order() {
        let logger = Logger::new("c", "id \"quoted\"".into(), trace(), LogLevel::Info);
        let line = logger.line(LogLevel::Warn, "a\nb", &[("path", json!("/x\u{1}")), ("n", json!(1.5))]);
        assert!(line.starts_with("{\"time\":\"") && line.ends_with("}\n") && line.matches('\n').count() == 1);
        let v: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (v["msg"].as_str(), v["requestId"].as_str()),
            (Some("a\nb"), Some("id \"quoted\""))
        );
        assert_eq!((v["path"].as_str(), v["n"].as_f64()), (Some("/x\u{1}"), Some(1.5)));
        let keys: Vec<&str> = [
            "time",
            "level",
            "msg",
            "component",
            "requestId",
            "traceId",
            "spanId",
            "path",
            "n",
        ]
        .into();
        let mut at = 0;
        for key in keys {
            let found = line[at..]
                .find(&format!("\"{key}\":"))
                .unwrap_or_else(|| panic!("{key} in order"));
            at += found;
        }
    }

    #[test]
    fn levels_filter() {
        let logger = Logger::new("c", "r".into(), trace(), LogLevel::Warn);
        assert!(logger.enabled(LogLevel::Error) && logger.enabled(LogLevel::Warn));
        assert!(!logger.enabled(LogLevel::Info) && !logger.enabled(LogLevel::Debug));
    }
}
