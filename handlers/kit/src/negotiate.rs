//! Header values with parameters, parsed in one place for every route: a
//! `Content-Type` ([`media_type`]) and the members of negotiation headers
//! (`Accept`, `Accept-Encoding`) with their quality values (RFC 9110
//! §12.4.2, [`preferences`]).
//!
//! Parameter names are case-insensitive (`q=0` and `Q=0` both refuse), and a
//! member whose `q` is not a number between 0 and 1 counts as refused: a
//! malformed preference is not taken as consent.

use http::{HeaderMap, HeaderName};

/// One member of a negotiation header: `value` without its parameters
/// (trimmed, case kept) and its quality.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Preference<'h> {
    /// The media range or coding, e.g. `image/png` or `gzip`.
    pub value: &'h str,
    /// Its weight, 0 (refused) to 1; 1 when the member has no `q`.
    pub q: f32,
}

/// A value and its `;`-separated parameters: `value` trimmed, each
/// parameter as (name, value) trimmed, the value's quotes removed.
fn split_parameters(member: &str) -> (&str, impl Iterator<Item = (&str, &str)>) {
    let mut parts = member.split(';');
    let value = parts.next().unwrap_or_default().trim();
    let parameters = parts.map(|parameter| {
        let (name, value) = parameter.split_once('=').unwrap_or((parameter, ""));
        (name.trim(), value.trim().trim_matches('"'))
    });
    (value, parameters)
}

/// A `Content-Type` value: its essence (`type/subtype`, trimmed, case kept;
/// compare case-insensitively) and its parameters (e.g. `charset`) as
/// (name, value), names compared case-insensitively.
pub fn media_type(value: &str) -> (&str, impl Iterator<Item = (&str, &str)>) {
    split_parameters(value)
}

/// Every member of every `name` header of `headers`, in order. Header values
/// that are not visible ASCII are skipped.
pub fn preferences<'h>(headers: &'h HeaderMap, name: &HeaderName) -> impl Iterator<Item = Preference<'h>> + 'h {
    headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|member| {
            let (value, parameters) = split_parameters(member);
            if value.is_empty() {
                return None;
            }
            let mut q = 1.0;
            for (name, raw) in parameters {
                if name.eq_ignore_ascii_case("q") {
                    q = raw
                        .parse::<f32>()
                        .ok()
                        .filter(|q| (0.0..=1.0).contains(q))
                        .unwrap_or(0.0);
                }
            }
            Some(Preference { value, q })
        })
}

/// Whether `token` (compared case-insensitively) is named with a non-zero
/// quality, e.g. `accepts(headers, &ACCEPT_ENCODING, "gzip")`.
pub fn accepts(headers: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    preferences(headers, name).any(|p| p.q > 0.0 && p.value.eq_ignore_ascii_case(token))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use http::header::{ACCEPT, ACCEPT_ENCODING};

    fn headers(name: &HeaderName, values: &[&'static str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(name, HeaderValue::from_static(v));
        }
        map
    }

    #[test]
    fn members_and_qualities() {
        let h = headers(&ACCEPT, &["image/png;q=0.5, IMAGE/WEBP", "*/*; Q=0.1"]);
        let all: Vec<_> = preferences(&h, &ACCEPT).collect();
        assert_eq!(
            all,
            vec![
                Preference {
                    value: "image/png",
                    q: 0.5
                },
                Preference {
                    value: "IMAGE/WEBP",
                    q: 1.0
                },
                Preference { value: "*/*", q: 0.1 },
            ]
        );
    }

    #[test]
    fn media_types_and_their_parameters() {
        let (essence, parameters) = media_type(" Application/JSON ; charset=\"UTF-8\";x ");
        assert_eq!(essence, "Application/JSON");
        assert_eq!(parameters.collect::<Vec<_>>(), vec![("charset", "UTF-8"), ("x", "")]);
        assert_eq!(media_type("").0, "");
    }

    #[test]
    fn zero_in_any_spelling_refuses() {
        for refused in [
            "gzip;q=0",
            "gzip;Q=0",
            "gzip; q=0.000",
            "GZIP ;q = 0",
            "gzip;q=abc",
            "gzip;q=2",
        ] {
            assert!(
                !accepts(&headers(&ACCEPT_ENCODING, &[refused]), &ACCEPT_ENCODING, "gzip"),
                "{refused}"
            );
        }
        for accepted in ["gzip", "br, GZip;q=0.5", "deflate;q=0", "identity, gzip;Q=1"] {
            let h = headers(&ACCEPT_ENCODING, &[accepted]);
            assert_eq!(
                accepts(&h, &ACCEPT_ENCODING, "gzip"),
                accepted != "deflate;q=0",
                "{accepted}"
            );
        }
        assert!(!accepts(&HeaderMap::new(), &ACCEPT_ENCODING, "gzip"));
    }
}
