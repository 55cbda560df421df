//! Spans of a request's own steps, as children of the host's request span:
//! one span for the component's handling of the request, and under it
//! authentication, validation, each database statement and the image
//! stages.
//!
//! Recording is off unless the host gives a place to send spans (a
//! [`SpanExporter`]: Spin's `wasi:otel`, in the `otel` build) and the trace
//! is sampled (by the host's span, else by the caller's `traceparent`; a
//! trace the component starts is). Off, a [`Tracer`] is `None` inside and
//! every [`Span`] is a no-op: no id drawn, no clock read, nothing
//! allocated.
//!
//! Attribute names follow OpenTelemetry's semantic conventions where one
//! exists (`db.system.name`, `db.operation.name`, `http.route`,
//! `error.type`); none carries a parameter value, a header or a body.

use std::borrow::Cow;
use std::time::SystemTime;

/// Where spans go, and the host's side of the trace.
pub trait SpanExporter {
    /// The host's span the component runs in, when the host is tracing.
    fn host_span(&self) -> Option<HostSpan>;
    /// A span started (the host tracks it, so its own work nests below).
    fn start(&self, span: &SpanIds);
    /// A span ended, with everything it recorded.
    fn end(&self, span: FinishedSpan);
}

/// The host's span: the parent of the component's own.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostSpan {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// 16 lower-case hex digits.
    pub span_id: String,
    /// Whether the host records this trace.
    pub sampled: bool,
}

impl HostSpan {
    /// A context naming a real span (ids well formed, not all zero).
    pub fn is_valid(&self) -> bool {
        crate::trace_context::is_id(&self.trace_id, 32) && crate::trace_context::is_id(&self.span_id, 16)
    }
}

/// The ids of one span.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanIds {
    /// The trace: 32 lower-case hex digits.
    pub trace_id: String,
    /// This span: 16 lower-case hex digits.
    pub span_id: String,
}

/// What a span is, in OpenTelemetry's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    /// Work inside the component.
    Internal,
    /// A call to another service (a database statement).
    Client,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// A string.
    Str(Cow<'static, str>),
    /// An integer.
    Int(i64),
}

impl From<&'static str> for Value {
    fn from(s: &'static str) -> Self {
        Value::Str(Cow::Borrowed(s))
    }
}

impl From<String> for Value {
    fn from(s: String) -> Self {
        Value::Str(Cow::Owned(s))
    }
}

impl From<u32> for Value {
    fn from(n: u32) -> Self {
        Value::Int(n.into())
    }
}

impl From<i64> for Value {
    fn from(n: i64) -> Self {
        Value::Int(n)
    }
}

impl Value {
    /// The value as JSON text, the encoding `wasi:otel` attributes use.
    pub fn to_json(&self) -> String {
        match self {
            Value::Str(s) => serde_json::to_string(s).expect("strings serialise"),
            Value::Int(n) => n.to_string(),
        }
    }
}

/// A span as it ended.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedSpan {
    /// Its ids.
    pub ids: SpanIds,
    /// The span it belongs under (empty for the trace's first span).
    pub parent_span_id: String,
    /// What it is.
    pub kind: SpanKind,
    /// Its name.
    pub name: Cow<'static, str>,
    /// When it started.
    pub start: SystemTime,
    /// When it ended.
    pub end: SystemTime,
    /// Its attributes, in the order set.
    pub attributes: Vec<(&'static str, Value)>,
    /// Why it failed, when it did (the span's status).
    pub error: Option<String>,
}

/// Where a request's spans go: nowhere when off. The ids they hang under
/// are the request's own ([`crate::log::Logger`] keeps them once), so a
/// tracer is only the exporter, and copies freely.
#[derive(Clone, Copy, Default)]
pub struct Tracer(Option<&'static dyn SpanExporter>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.is_recording() {
            "Tracer(recording)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// A tracer that records nothing.
    pub fn off() -> Self {
        Tracer(None)
    }

    /// A tracer sending its spans to `exporter`.
    pub fn to(exporter: &'static dyn SpanExporter) -> Self {
        Tracer(Some(exporter))
    }

    /// Whether spans are recorded.
    pub fn is_recording(&self) -> bool {
        self.0.is_some()
    }

    /// Starts the span `ids` (the component's, say) under the span
    /// `parent_span_id` (empty: none, the trace starts here); it ends when
    /// dropped.
    pub fn start(&self, ids: SpanIds, parent_span_id: String, name: &'static str, kind: SpanKind) -> Span {
        self.open(ids, parent_span_id, Cow::Borrowed(name), kind)
    }

    /// Starts a new span of trace `trace_id` under the span `parent_span_id`;
    /// it ends when dropped. Off, nothing is drawn or copied.
    pub fn child(
        &self,
        trace_id: &str,
        parent_span_id: &str,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
    ) -> Span {
        if !self.is_recording() {
            return Span(None);
        }
        let ids = SpanIds {
            trace_id: trace_id.to_string(),
            span_id: crate::trace_context::new_span_id(),
        };
        self.open(ids, parent_span_id.to_string(), name.into(), kind)
    }

    fn open(&self, ids: SpanIds, parent_span_id: String, name: Cow<'static, str>, kind: SpanKind) -> Span {
        let Some(exporter) = self.0 else {
            return Span(None);
        };
        exporter.start(&ids);
        Span(Some(Box::new(Open {
            exporter,
            span: FinishedSpan {
                ids,
                parent_span_id,
                kind,
                name,
                start: SystemTime::now(),
                end: SystemTime::UNIX_EPOCH,
                attributes: Vec::new(),
                error: None,
            },
        })))
    }
}

/// An open span; dropping it ends it.
#[must_use = "a span ends when dropped"]
pub struct Span(Option<Box<Open>>);

struct Open {
    exporter: &'static dyn SpanExporter,
    span: FinishedSpan,
}

impl Span {
    /// A span that records nothing.
    pub fn none() -> Self {
        Span(None)
    }

    /// Sets an attribute (only computed values that are not the caller's
    /// data: names, counts, sizes, types).
    pub fn set(&mut self, key: &'static str, value: impl Into<Value>) {
        if let Some(open) = &mut self.0 {
            open.span.attributes.push((key, value.into()));
        }
    }

    /// Marks the span failed: its status is `error` with `description`, and
    /// `error.type` names the kind of failure.
    pub fn fail(&mut self, error_type: &'static str, description: impl Into<String>) {
        if let Some(open) = &mut self.0 {
            open.span.attributes.push(("error.type", error_type.into()));
            open.span.error = Some(description.into());
        }
    }

    /// Records `result`'s failure, if any, with [`Span::fail`], and hands it
    /// back.
    pub fn record<T, E: SpanError>(&mut self, result: Result<T, E>) -> Result<T, E> {
        if let Err(e) = &result {
            self.fail(e.error_type(), e.description());
        }
        result
    }

    /// Ends the span now.
    pub fn end(self) {}
}

impl Drop for Span {
    fn drop(&mut self) {
        if let Some(mut open) = self.0.take() {
            open.span.end = SystemTime::now();
            open.exporter.end(open.span);
        }
    }
}

/// A failure a span can record: its `error.type` and a description that
/// holds no caller data.
pub trait SpanError {
    /// The kind of failure (`error.type`).
    fn error_type(&self) -> &'static str;
    /// A short description for the span's status.
    fn description(&self) -> String;
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::cell::RefCell;

    /// An exporter that keeps what it is given, for tests.
    #[derive(Default)]
    pub(crate) struct Recorder {
        pub(crate) host: Option<HostSpan>,
        pub(crate) started: RefCell<Vec<SpanIds>>,
        pub(crate) ended: RefCell<Vec<FinishedSpan>>,
    }

    impl SpanExporter for Recorder {
        fn host_span(&self) -> Option<HostSpan> {
            self.host.clone()
        }
        fn start(&self, span: &SpanIds) {
            self.started.borrow_mut().push(span.clone());
        }
        fn end(&self, span: FinishedSpan) {
            self.ended.borrow_mut().push(span);
        }
    }

    /// A recorder that lives for the test run (exporters are `'static`).
    pub(crate) fn recorder(host: Option<HostSpan>) -> &'static Recorder {
        Box::leak(Box::new(Recorder {
            host,
            ..Recorder::default()
        }))
    }

    fn root() -> SpanIds {
        SpanIds {
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            span_id: "00f067aa0ba902b7".into(),
        }
    }

    #[test]
    fn children_hang_under_the_component_span_which_hangs_under_the_host() {
        let recorder = recorder(None);
        let tracer = Tracer::to(recorder);
        let root_span = tracer.start(root(), "b7ad6b7169203331".into(), "orders-get", SpanKind::Internal);
        let ids = root();
        let mut child = tracer.child(&ids.trace_id, &ids.span_id, "SELECT orders", SpanKind::Client);
        child.set("db.system.name", "sqlite");
        child.end();
        root_span.end();
        let ended = recorder.ended.borrow();
        assert_eq!(ended.len(), 2);
        let (child, root) = (&ended[0], &ended[1]);
        assert_eq!(root.parent_span_id, "b7ad6b7169203331");
        assert_eq!(root.name, "orders-get");
        assert_eq!(child.parent_span_id, root.ids.span_id);
        assert_eq!(child.ids.trace_id, root.ids.trace_id);
        assert_ne!(child.ids.span_id, root.ids.span_id);
        assert_eq!(child.ids.span_id.len(), 16);
        assert_eq!(child.kind, SpanKind::Client);
        assert_eq!(child.attributes, vec![("db.system.name", Value::from("sqlite"))]);
        assert!(child.start <= child.end);
        // Every span ended was started first (the host refuses others).
        assert_eq!(recorder.started.borrow().len(), 2);
        assert_eq!(recorder.started.borrow()[1], child.ids);
    }

    #[test]
    fn failures_become_the_status() {
        let recorder = recorder(None);
        let tracer = Tracer::to(recorder);
        let _root = tracer.start(root(), "b7ad6b7169203331".into(), "healthz", SpanKind::Internal);
        let ids = root();
        let mut span = tracer.child(&ids.trace_id, &ids.span_id, "authenticate", SpanKind::Internal);
        span.fail("unauthorized", "no bearer token");
        drop(span);
        let ended = recorder.ended.borrow();
        assert_eq!(ended[0].error.as_deref(), Some("no bearer token"));
        assert_eq!(ended[0].attributes, vec![("error.type", Value::from("unauthorized"))]);
    }

    #[test]
    fn off_records_nothing() {
        let tracer = Tracer::off();
        let mut span = tracer.child("t", "p", "validate", SpanKind::Internal);
        span.set("k", "v");
        span.fail("x", "y");
        assert!(!tracer.is_recording());
    }

    #[test]
    fn values_are_json() {
        assert_eq!(Value::from("a\"b").to_json(), r#""a\"b""#);
        assert_eq!(Value::from(42u32).to_json(), "42");
    }

    #[test]
    fn host_span_validity() {
        let host = |t: &str, s: &str| HostSpan {
            trace_id: t.into(),
            span_id: s.into(),
            sampled: true,
        };
        assert!(host("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7").is_valid());
        assert!(!host(&"0".repeat(32), "00f067aa0ba902b7").is_valid());
        assert!(!host("4bf92f3577b34da6a3ce929d0e0e4736", "").is_valid());
    }
}
