//! W3C Trace Context (`traceparent`, `tracestate`): which trace a request
//! belongs to, so its log lines can be joined with the traces of the caller
//! and of the host.
//!
//! A valid incoming `traceparent` (version `00`, lower-case hex, ids not all
//! zero) is honoured: the request keeps its trace id and its sampled flag,
//! and the caller's span becomes the parent. Anything else, or none, starts
//! a new trace, as the specification asks of a malformed header (§3.2.2).
//! Each request gets a span id of its own, the id its log lines carry.

use crate::span::HostSpan;
use http::HeaderMap;

/// The header naming the caller's trace and span.
pub const TRACEPARENT: &str = "traceparent";
/// The header of vendor-specific trace data, passed on as it came.
pub const TRACESTATE: &str = "tracestate";

/// The trace context of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TraceContext {
    /// 32 lower-case hex digits.
    pub trace_id: String,
    /// This request's span: 16 lower-case hex digits.
    pub span_id: String,
    /// The caller's span, when a valid `traceparent` named one.
    pub parent_span_id: Option<String>,
    /// Whether the caller asked for the trace to be recorded.
    pub sampled: bool,
    /// The caller's `tracestate`, when it came with a valid `traceparent`.
    pub tracestate: Option<String>,
}

impl TraceContext {
    /// The context of a request with these headers.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let parent = headers
            .get(TRACEPARENT)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_traceparent);
        let drawn = random_uuid_bytes();
        let span_id = span_id_of(&drawn);
        match parent {
            Some((trace_id, parent_span_id, sampled)) => TraceContext {
                trace_id,
                span_id,
                parent_span_id: Some(parent_span_id),
                sampled,
                tracestate: tracestate(headers),
            },
            None => {
                // A second draw for the trace, its fixed bits replaced with
                // bytes of the first that the span id left unused.
                let mut trace = random_uuid_bytes();
                (trace[6], trace[8]) = (drawn[11], drawn[12]);
                TraceContext {
                    trace_id: hex(&trace),
                    span_id,
                    parent_span_id: None,
                    sampled: false,
                    tracestate: None,
                }
            }
        }
    }

    /// The same request inside the host's span `host`, when the host traces
    /// it: the host's trace (which honoured the caller's `traceparent`, or
    /// started one) and the host's span as the parent, so the log lines name
    /// the trace the host exports.
    pub fn within(self, host: &HostSpan) -> Self {
        TraceContext {
            trace_id: host.trace_id.to_ascii_lowercase(),
            parent_span_id: Some(host.span_id.to_ascii_lowercase()),
            sampled: host.sampled,
            ..self
        }
    }

    /// The `traceparent` naming this request's span, for calls it makes.
    pub fn traceparent(&self) -> String {
        format!("00-{}-{}-{:02x}", self.trace_id, self.span_id, u8::from(self.sampled))
    }
}

/// (trace id, parent span id, sampled) of a valid version-00 header. A
/// higher version is read by its first four fields, as the specification
/// allows (§3.2.4), when those are well formed.
fn parse_traceparent(value: &str) -> Option<(String, String, bool)> {
    let value = value.trim();
    let mut fields = value.split('-');
    let version = fields.next()?;
    let trace_id = fields.next()?;
    let span_id = fields.next()?;
    let flags = fields.next()?;
    let rest = fields.next();
    let well_formed =
        is_hex(version, 2) && version != "ff" && is_id(trace_id, 32) && is_id(span_id, 16) && is_hex(flags, 2);
    // Version 00 has exactly four fields; later versions may add more.
    if !well_formed || (version == "00" && rest.is_some()) {
        return None;
    }
    let flags = u8::from_str_radix(flags, 16).ok()?;
    Some((trace_id.to_string(), span_id.to_string(), flags & 1 == 1))
}

/// The `tracestate` header(s), joined as one list, when small enough to
/// carry (the specification's limit: 32 members, 512 characters kept).
fn tracestate(headers: &HeaderMap) -> Option<String> {
    let values: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .collect();
    let joined = values.join(",");
    (!joined.is_empty() && joined.len() <= 512 && joined.split(',').count() <= 32).then_some(joined)
}

/// A trace (32) or span (16) id as W3C Trace Context writes one: `len`
/// lower-case hex digits, not all zero.
pub(crate) fn is_id(text: &str, len: usize) -> bool {
    is_hex(text, len) && text.bytes().any(|b| b != b'0')
}

/// `len` lower-case hex digits.
fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A fresh span id: 16 lower-case hex digits from one random draw.
pub(crate) fn new_span_id() -> String {
    span_id_of(&random_uuid_bytes())
}

/// A span id from eight of a draw's random bytes (bytes 11 to 15 stay
/// unused, for a trace id drawn with it).
fn span_id_of(b: &[u8; 16]) -> String {
    hex(&[b[0], b[1], b[2], b[3], b[4], b[5], b[9], b[10]])
}

/// The bytes of a v4 UUID, drawn from the host's randomness. Bytes 6 and
/// 8 carry its fixed version and variant bits; every other byte is random,
/// and only those make up ids (at most two draws per request).
fn random_uuid_bytes() -> [u8; 16] {
    *uuid::Uuid::new_v4().as_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn with(pairs: &[(&'static str, &'static str)]) -> TraceContext {
        let mut headers = HeaderMap::new();
        for (name, value) in pairs {
            headers.append(*name, HeaderValue::from_static(value));
        }
        TraceContext::from_headers(&headers)
    }

    #[test]
    fn a_valid_traceparent_is_honoured() {
        let t = with(&[(TRACEPARENT, PARENT), (TRACESTATE, "congo=t61rcWkgMzE")]);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert_eq!(t.parent_span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert!(t.sampled);
        assert!(is_hex(&t.span_id, 16) && t.span_id != "00f067aa0ba902b7");
        assert_eq!(t.tracestate.as_deref(), Some("congo=t61rcWkgMzE"));
        assert_eq!(t.traceparent(), format!("00-{}-{}-01", t.trace_id, t.span_id));
    }

    #[test]
    fn anything_else_starts_a_new_trace() {
        for bad in [
            "",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
            "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
            "garbage",
        ] {
            let t = with(&[(TRACEPARENT, bad), (TRACESTATE, "a=b")]);
            assert!(t.parent_span_id.is_none(), "{bad}");
            assert!(
                is_hex(&t.trace_id, 32) && t.trace_id != "4bf92f3577b34da6a3ce929d0e0e4736",
                "{bad}"
            );
            assert_eq!(t.tracestate, None, "{bad}");
            assert!(!t.sampled);
        }
        let none = with(&[]);
        assert!(is_hex(&none.trace_id, 32) && is_hex(&none.span_id, 16));
        assert_ne!(none.trace_id, with(&[]).trace_id);
    }

    #[test]
    fn a_later_version_is_read_by_its_first_fields() {
        let t = with(&[(
            TRACEPARENT,
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-what-comes-next",
        )]);
        assert_eq!(t.trace_id, "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(!t.sampled);
    }

    #[test]
    fn the_hosts_span_becomes_the_parent() {
        let host = HostSpan {
            trace_id: "0AF7651916CD43DD8448EB211C80319C".into(),
            span_id: "b7ad6b7169203331".into(),
            sampled: true,
        };
        let t = with(&[]).within(&host);
        assert_eq!(t.trace_id, "0af7651916cd43dd8448eb211c80319c");
        assert_eq!(t.parent_span_id.as_deref(), Some("b7ad6b7169203331"));
        assert!(t.sampled && is_hex(&t.span_id, 16));
    }
}
