//! `allowed_outbound_hosts` entries (`scheme://host[:port]`) and the check a
//! component's outbound connection must pass, following Spin's rules: `*` may
//! stand for the scheme, the host, a leading host label (`*.example.com`) or
//! the port; a missing port means the scheme's well-known port.

use anyhow::{Result, anyhow, bail};

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Any,
    Exact(String),
    /// `*.example.com`: any host ending in `.example.com`.
    Suffix(String),
}

#[derive(Debug, Clone, PartialEq)]
enum PortPattern {
    Any,
    Range(u16, u16),
}

#[derive(Debug, Clone, PartialEq)]
pub struct AllowedHost {
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

/// Well-known ports for schemes Spin knows.
pub fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "http" => 80,
        "https" => 443,
        "postgres" => 5432,
        "mysql" => 3306,
        "redis" => 6379,
        "mqtt" => 1883,
        _ => return None,
    })
}

impl AllowedHost {
    pub fn parse(entry: &str) -> Result<AllowedHost> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| anyhow!("must be of the form scheme://host[:port]"))?;
        if scheme.is_empty() {
            bail!("missing scheme");
        }
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains('/') {
            bail!("paths are not allowed");
        }
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || !p.is_empty() => (h, Some(p)),
            _ => (rest, None),
        };
        if host.is_empty() {
            bail!("missing host");
        }
        let host = if host == "*" {
            HostPattern::Any
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if suffix.contains('*') {
                bail!("only a leading `*.` wildcard label is allowed in the host");
            }
            HostPattern::Suffix(format!(".{}", suffix.to_ascii_lowercase()))
        } else if host.contains('*') {
            bail!("only a leading `*.` wildcard label is allowed in the host");
        } else {
            HostPattern::Exact(host.to_ascii_lowercase())
        };
        let port = match port {
            Some("*") => PortPattern::Any,
            Some(p) => match p.split_once("..") {
                Some((a, b)) => {
                    let a: u16 = a.parse().map_err(|_| anyhow!("invalid port range {p:?}"))?;
                    let b: u16 = b.parse().map_err(|_| anyhow!("invalid port range {p:?}"))?;
                    if a >= b {
                        bail!("invalid port range {p:?}");
                    }
                    // Spin ranges are half-open (`a..b`).
                    PortPattern::Range(a, b - 1)
                }
                None => {
                    let n: u16 = p.parse().map_err(|_| anyhow!("invalid port {p:?}"))?;
                    PortPattern::Range(n, n)
                }
            },
            None if scheme == "*" => {
                bail!("a port is required when the scheme is `*`")
            }
            None => {
                let n =
                    default_port(scheme).ok_or_else(|| anyhow!("scheme {scheme:?} has no default port; give one"))?;
                PortPattern::Range(n, n)
            }
        };
        Ok(AllowedHost {
            scheme: (scheme != "*").then(|| scheme.to_ascii_lowercase()),
            host,
            port,
        })
    }

    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        self.scheme.as_deref().is_none_or(|s| s == scheme)
            && match &self.host {
                HostPattern::Any => true,
                HostPattern::Exact(h) => *h == host,
                HostPattern::Suffix(s) => host.ends_with(s.as_str()) && host.len() > s.len(),
            }
            && match self.port {
                PortPattern::Any => true,
                PortPattern::Range(a, b) => (a..=b).contains(&port),
            }
    }
}

/// A component's resolved allow-list.
#[derive(Debug, Clone, Default)]
pub struct AllowedHosts(pub Vec<AllowedHost>);

impl AllowedHosts {
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        self.0.iter().any(|h| h.allows(scheme, host, port))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(entries: &[&str]) -> AllowedHosts {
        AllowedHosts(entries.iter().map(|e| AllowedHost::parse(e).unwrap()).collect())
    }

    #[test]
    fn postgres_checks() {
        let a = allowed(&["postgres://db.internal:5432"]);
        assert!(a.allows("postgres", "db.internal", 5432));
        assert!(a.allows("postgres", "DB.internal", 5432));
        assert!(!a.allows("postgres", "db.internal", 5433));
        assert!(!a.allows("postgres", "other", 5432));
        assert!(!a.allows("mysql", "db.internal", 5432));

        let a = allowed(&["postgres://localhost"]);
        assert!(a.allows("postgres", "localhost", 5432));
        assert!(!a.allows("postgres", "localhost", 6543));

        let a = allowed(&["postgres://*.example.com:*"]);
        assert!(a.allows("postgres", "db.example.com", 1));
        assert!(!a.allows("postgres", "example.com", 5432));

        let a = allowed(&["*://localhost:5000..5010"]);
        assert!(a.allows("postgres", "localhost", 5009));
        assert!(!a.allows("postgres", "localhost", 5010));
        assert!(allowed(&[]).0.is_empty());
        assert!(!allowed(&[]).allows("postgres", "localhost", 5432));
    }

    #[test]
    fn invalid_entries() {
        for e in [
            "localhost",
            "postgres://",
            "postgres://a/b",
            "foo://host",
            "*://host",
            "postgres://a*b",
        ] {
            assert!(AllowedHost::parse(e).is_err(), "{e}");
        }
    }
}
