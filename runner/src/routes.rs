//! HTTP route matching with Spin's rules (`crates/routes`): exact segments,
//! `:name` segments, a trailing `/...` wildcard; the most specific route wins
//! (segment by segment, left to right: exact beats `:name` beats wildcard);
//! a duplicated route pattern is replaced by the later declaration (Spin warns).

use anyhow::{Result, bail};

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Exact(String),
    Param(String),
}

/// A `route` of the manifest, parsed. (Not `kit::contract::Route`, which is
/// one of the app's own routes as the handlers declare it.)
#[derive(Debug, Clone)]
pub(crate) struct RoutePattern {
    /// As written in the manifest.
    pub(crate) raw: String,
    segments: Vec<Segment>,
    wildcard: bool,
}

impl RoutePattern {
    /// Parses `raw` after Spin's normalisation (absolutise, strip one
    /// trailing `/`).
    pub(crate) fn parse(raw: &str) -> Result<RoutePattern> {
        let mut based = if raw.starts_with('/') {
            raw.to_string()
        } else {
            format!("/{raw}")
        };
        if based.len() > 1 && based.ends_with('/') {
            based.pop();
        }
        let (body, wildcard) = match based.strip_suffix("/...") {
            Some(b) => (b.to_string(), true),
            None => match based.strip_suffix("/*") {
                Some(b) => (b.to_string(), true),
                None => (based.clone(), false),
            },
        };
        let mut segments = Vec::new();
        for seg in body.split('/').skip(1) {
            if seg.is_empty() {
                if body == "/" {
                    continue;
                }
                bail!("empty path segment");
            }
            if seg == "..." || seg == "*" {
                bail!("a wildcard is only allowed as the last segment (`/...`)");
            }
            if let Some(name) = seg.strip_prefix(':') {
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    bail!("invalid parameter segment {seg:?}");
                }
                segments.push(Segment::Param(name.to_string()));
            } else {
                segments.push(Segment::Exact(seg.to_string()));
            }
        }
        Ok(RoutePattern {
            raw: raw.to_string(),
            segments,
            wildcard,
        })
    }
}

/// The result of routing one request path.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteMatch {
    /// The component that serves the request.
    pub(crate) component: String,
    /// The route as written in the manifest (`spin-raw-component-route`).
    pub(crate) raw_route: String,
    /// `:name` captures in route order.
    pub(crate) named: Vec<(String, String)>,
    /// The part matched by a trailing wildcard (`spin-path-info`).
    pub(crate) path_info: String,
}

impl RouteMatch {
    /// Base path plus route; the runner only supports the base `/`, so this is
    /// the absolutised raw route (`spin-matched-route`).
    pub(crate) fn based_route(&self) -> String {
        let r = if self.raw_route.starts_with('/') {
            self.raw_route.clone()
        } else {
            format!("/{}", self.raw_route)
        };
        // One trailing `/` goes, so the root route `/` is "" (as in Spin).
        match r.strip_suffix('/') {
            Some(stripped) if !r.ends_with("/.../") => stripped.to_string(),
            _ => r,
        }
    }

    /// The raw route without a trailing wildcard (`spin-component-route`).
    pub(crate) fn raw_route_or_prefix(&self) -> &str {
        self.raw_route.strip_suffix("/...").unwrap_or(&self.raw_route)
    }
}

/// The app's routes, matched as Spin matches them.
#[derive(Debug, Clone, Default)]
pub(crate) struct Router {
    routes: Vec<(RoutePattern, String)>,
}

/// A route declared twice: the later declaration wins, as in Spin.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Duplicate {
    /// The route as written.
    pub(crate) route: String,
    /// The component of the earlier declaration, which never serves it.
    pub(crate) replaced: String,
    /// The component that serves it.
    pub(crate) effective: String,
}

impl Router {
    /// Builds from `(route, component)` in manifest order.
    pub(crate) fn build<'a>(routes: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<(Router, Vec<Duplicate>)> {
        let mut out: Vec<(RoutePattern, String)> = Vec::new();
        let mut duplicates = Vec::new();
        for (raw, component) in routes {
            let route = RoutePattern::parse(raw)?;
            // Spin de-duplicates on the raw route text, keeping the position
            // of the first declaration and the component of the last.
            if let Some(existing) = out.iter_mut().find(|(r, _)| r.raw == route.raw) {
                duplicates.push(Duplicate {
                    route: raw.to_string(),
                    replaced: existing.1.clone(),
                    effective: component.to_string(),
                });
                existing.1 = component.to_string();
            } else {
                out.push((route, component.to_string()));
            }
        }
        Ok((Router { routes: out }, duplicates))
    }

    /// `(raw route, component)` in declaration order.
    pub(crate) fn routes(&self) -> impl Iterator<Item = (&str, &str)> {
        self.routes.iter().map(|(r, c)| (r.raw.as_str(), c.as_str()))
    }

    /// Finds the most specific route matching `path` (no query string).
    pub(crate) fn route(&self, path: &str) -> Option<RouteMatch> {
        let trimmed = path.strip_prefix('/').unwrap_or(path);
        let ends_with_slash = trimmed.ends_with('/');
        let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
        let segs: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        let mut best: Option<(Vec<u8>, &RoutePattern, &String)> = None;
        for (route, component) in &self.routes {
            if !matches(route, &segs) {
                continue;
            }
            let key = specificity(route, segs.len());
            if best.as_ref().is_none_or(|(k, _, _)| key < *k) {
                best = Some((key, route, component));
            }
        }
        let (_, route, component) = best?;
        let named = route
            .segments
            .iter()
            .zip(&segs)
            .filter_map(|(s, v)| match s {
                Segment::Param(n) => Some((n.clone(), v.to_string())),
                Segment::Exact(_) => None,
            })
            .collect();
        let path_info = if route.wildcard {
            let rest = &segs[route.segments.len()..];
            match (rest.is_empty(), ends_with_slash) {
                (true, false) => String::new(),
                (true, true) => "/".to_string(),
                (false, false) => format!("/{}", rest.join("/")),
                (false, true) => format!("/{}/", rest.join("/")),
            }
        } else {
            String::new()
        };
        Some(RouteMatch {
            component: component.clone(),
            raw_route: route.raw.clone(),
            named,
            path_info,
        })
    }
}

fn matches(route: &RoutePattern, segs: &[&str]) -> bool {
    let n = route.segments.len();
    if segs.len() < n || (!route.wildcard && segs.len() != n) {
        return false;
    }
    route.segments.iter().zip(segs).all(|(s, v)| match s {
        Segment::Exact(e) => e == v,
        Segment::Param(_) => !v.is_empty(),
    })
}

/// Lexicographic specificity key, lower is more specific: per path position,
/// exact (0) < `:name` (1) < end of a route matching the whole path (2) <
/// trailing wildcard (3).
fn specificity(route: &RoutePattern, len: usize) -> Vec<u8> {
    (0..=len)
        .map(|i| match route.segments.get(i) {
            Some(Segment::Exact(_)) => 0,
            Some(Segment::Param(_)) => 1,
            None if route.wildcard => 3,
            None => 2,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router(routes: &[(&str, &str)]) -> Router {
        Router::build(routes.iter().map(|(r, c)| (*r, *c))).unwrap().0
    }

    #[test]
    fn matching_table() {
        let r = router(&[
            ("/", "root"),
            ("/foo", "foo"),
            ("/foo/bar", "foobar"),
            ("/foo/:id", "foo-id"),
            ("/foo/:id/...", "foo-id-wild"),
            ("/one/...", "one"),
            ("/one/two/...", "onetwo"),
            ("/one/two/three/...", "onetwothree"),
            ("/a/:x/c", "a-x-c"),
            ("/:y/b/c", "y-b-c"),
        ]);
        let cases: &[(&str, Option<&str>)] = &[
            ("/", Some("root")),
            ("/foo", Some("foo")),
            ("/foo/", Some("foo")),
            ("/foo/bar", Some("foobar")),
            ("/foo/42", Some("foo-id")),
            ("/foo/42/x/y", Some("foo-id-wild")),
            ("/one", Some("one")),
            ("/one/two/three/four", Some("onetwothree")),
            ("/one/two/x", Some("onetwo")),
            ("/a/b/c", Some("a-x-c")),
            ("/z/b/c", Some("y-b-c")),
            ("/nope", None),
            ("/foobar", None),
        ];
        for (path, want) in cases {
            assert_eq!(
                r.route(path).map(|m| m.component),
                want.map(str::to_string),
                "path {path}"
            );
        }
    }

    #[test]
    fn exact_beats_wildcard_and_root_wildcard_catches_all() {
        let r = router(&[("/...", "all"), ("/one", "one")]);
        assert_eq!(r.route("/one").unwrap().component, "one");
        assert_eq!(r.route("/").unwrap().component, "all");
        assert_eq!(r.route("/x/y").unwrap().component, "all");
    }

    #[test]
    fn path_info_and_captures_follow_spin() {
        let r = router(&[("/test/...", "t"), ("/1/:two/...", "n")]);
        assert_eq!(r.route("/test").unwrap().path_info, "");
        assert_eq!(r.route("/test/").unwrap().path_info, "/");
        assert_eq!(r.route("/test/hello").unwrap().path_info, "/hello");
        assert_eq!(r.route("/test/hello/").unwrap().path_info, "/hello/");
        let m = r.route("/1/2/3").unwrap();
        assert_eq!(m.named, vec![("two".to_string(), "2".to_string())]);
        assert_eq!(m.path_info, "/3");
        assert_eq!(m.raw_route_or_prefix(), "/1/:two");
        assert_eq!(m.based_route(), "/1/:two/...");
    }

    #[test]
    fn duplicates_last_one_wins() {
        let (r, dups) = Router::build([("/", "a"), ("/foo", "first"), ("/foo", "second")]).unwrap();
        assert_eq!(r.route("/foo").unwrap().component, "second");
        assert_eq!(r.routes().count(), 2);
        assert_eq!(
            dups,
            vec![Duplicate {
                route: "/foo".into(),
                replaced: "first".into(),
                effective: "second".into()
            }]
        );
    }

    #[test]
    fn invalid_routes() {
        assert!(RoutePattern::parse("/a/.../b").is_err());
        assert!(RoutePattern::parse("/a//b").is_err());
        assert!(RoutePattern::parse("/a/:").is_err());
        assert!(RoutePattern::parse("relative").is_ok());
    }
}
