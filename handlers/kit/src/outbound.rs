//! `allowed_outbound_hosts`, in one place: which entries Spin 4.1 accepts and
//! which outbound addresses they let through. The components' config check
//! ([`crate::config`]) and the local runner's hosts both use it, so neither
//! can drift from the other or from Spin.
//!
//! The rules are Spin's (`crates/outbound-networking-config/src/allowed_hosts.rs`),
//! written again here without its `url` and `ip_network` dependencies:
//!
//! - An entry is `scheme://host[:port]`, with at most one trailing `/` and no
//!   path. Surrounding whitespace is ignored.
//! - The scheme is `*` or letters only, compared exactly (URL schemes are
//!   lowercase, so an entry must be too).
//! - The host is `*` (any host); `*.example.com` (any name *under*
//!   `example.com`, not `example.com` itself); `self` or `self.alt` (relative
//!   requests only, so never an absolute address); a CIDR block such as
//!   `10.0.0.0/8` or `2001:db8::/32`; or one host: a name (compared without
//!   case), an IPv4 address in any WHATWG form (`127.1` is `127.0.0.1`), or a
//!   bracketed IPv6 address. `{a,b}` lists, and `*` anywhere else, are
//!   refused.
//! - The port is `*`, a number, or a half-open range `a..b` (`5000..5010`
//!   allows 5000 to 5009; `b <= a` allows nothing). An entry without a port
//!   gets its scheme's well-known one ([`well_known_port`]); a scheme without
//!   one needs a port. An address without a port is likewise checked on its
//!   scheme's well-known port.
//! - An entry rendered from a `{{ variable }}` template that comes out empty,
//!   `http://` or `https://` is dropped ([`AllowedHost::parse_rendered`]).
//!
//! Two things of Spin's are not modelled: a non-ASCII (IDN) name is compared
//! as written, lowercased, where Spin compares its punycode form; and Spin
//! turns `*.spin.internal` into one entry per component of the app (service
//! chaining), which neither the app nor the runner uses.
//!
//! Error messages never quote the entry: a templated entry may hold a secret,
//! so the caller decides whether to show it.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The port Spin assumes for `scheme` when an entry or an address gives
/// none.
pub fn well_known_port(scheme: &str) -> Option<u16> {
    Some(match scheme {
        "postgres" => 5432,
        "mysql" => 3306,
        "redis" => 6379,
        "mqtt" => 1883,
        "http" => 80,
        "https" => 443,
        _ => return None,
    })
}

/// Why an `allowed_outbound_hosts` entry was refused; the entry itself is
/// left out (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidAllowedHost(&'static str);

impl fmt::Display for InvalidAllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for InvalidAllowedHost {}

/// One `allowed_outbound_hosts` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedHost {
    /// `None` for `*`.
    scheme: Option<String>,
    host: HostPattern,
    port: PortPattern,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Any,
    /// `*.example.com`, held as `.example.com`.
    Subdomain(String),
    /// `self` / `self.alt`: only relative requests, which this module never
    /// sees.
    OnlySelf,
    Exact(Host),
    Cidr(Cidr),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PortPattern {
    Any,
    /// `start..end`, end exclusive (a `u32` so that a single port 65535 fits).
    Ports {
        start: u16,
        end: u32,
    },
}

/// A host as the URL standard reads one: a lowercased name or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Host {
    Name(String),
    V4(Ipv4Addr),
    V6(Ipv6Addr),
}

/// An address block, its host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl AllowedHost {
    /// Parses one literal entry (`scheme://host[:port]`), as Spin does when it
    /// loads the manifest.
    pub fn parse(entry: &str) -> Result<AllowedHost, InvalidAllowedHost> {
        let entry = entry.trim();
        let Some((scheme, rest)) = entry.split_once("://") else {
            return Err(InvalidAllowedHost(match entry {
                "" | "*" | ":" | "?" => {
                    "not of the form scheme://host[:port] (each part may be `*`; `*://*:*` allows everything)"
                }
                "insecure:allow-all" => "`insecure:allow-all` is not accepted: `*://*:*` allows everything",
                _ => "no scheme (such as `http://` or `*://`)",
            }));
        };
        let (host, port) = split_host_port(rest)?;
        // Spin reports a bad port before a bad scheme or host.
        let port = PortPattern::parse(port, scheme)?;
        let scheme = match scheme {
            "*" => None,
            s if s.starts_with('{') => return Err(InvalidAllowedHost("scheme lists are not supported")),
            s if !s.chars().all(char::is_alphabetic) => {
                return Err(InvalidAllowedHost("the scheme may hold only letters (or be `*`)"));
            }
            s => Some(s.to_string()),
        };
        let host = HostPattern::parse(host)?;
        Ok(AllowedHost { scheme, host, port })
    }

    /// Parses an entry rendered from a `{{ variable }}` template. Spin drops
    /// one that renders empty, `http://` or `https://` (an optional endpoint
    /// left unset): `Ok(None)`.
    pub fn parse_rendered(rendered: &str) -> Result<Option<AllowedHost>, InvalidAllowedHost> {
        match rendered {
            "" | "http://" | "https://" => Ok(None),
            _ => AllowedHost::parse(rendered).map(Some),
        }
    }

    /// Whether this entry lets a component reach `host` (as a URL writes it:
    /// an IPv6 address in brackets) over `scheme` (lowercase) on `port`
    /// (`None`: the scheme's well-known port).
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        if self.scheme.as_deref().is_some_and(|s| s != scheme) {
            return false;
        }
        let Ok(host) = Host::parse(host) else {
            return false;
        };
        let host_allowed = match &self.host {
            HostPattern::Any => true,
            HostPattern::Subdomain(suffix) => matches!(&host, Host::Name(name) if name.ends_with(suffix.as_str())),
            HostPattern::OnlySelf => false,
            HostPattern::Exact(exact) => *exact == host,
            HostPattern::Cidr(block) => block.contains(&host),
        };
        host_allowed && self.port.allows(port.or_else(|| well_known_port(scheme)))
    }
}

/// Splits what follows `://` into host and port text. A `:` may belong to
/// the host (an IPv6 address or block), so when the whole text reads as a
/// host there is no port.
fn split_host_port(rest: &str) -> Result<(&str, &str), InvalidAllowedHost> {
    let Some((host, tail)) = rest.rsplit_once(':') else {
        return Ok((rest, ""));
    };
    if tail.is_empty() {
        return Ok((host, ""));
    }
    if HostPattern::parse(rest).is_ok() {
        return Ok((rest, ""));
    }
    match tail.split_once('/') {
        Some((_, path)) if !path.is_empty() => Err(InvalidAllowedHost("a path is not allowed")),
        Some((port, _)) => Ok((host, port)),
        None => Ok((host, tail)),
    }
}

impl HostPattern {
    fn parse(host: &str) -> Result<HostPattern, InvalidAllowedHost> {
        let host = host.trim();
        match host {
            "*" => return Ok(HostPattern::Any),
            "self" | "self.alt" => return Ok(HostPattern::OnlySelf),
            _ if host.starts_with('{') => return Err(InvalidAllowedHost("host lists are not supported")),
            _ => {}
        }
        if let Some(block) = Cidr::parse(host) {
            return Ok(HostPattern::Cidr(block));
        }
        let host = host.strip_suffix('/').unwrap_or(host);
        if host.contains('/') {
            return Err(InvalidAllowedHost("a path is not allowed"));
        }
        if let Some(domain) = host.strip_prefix("*.") {
            if domain.contains('*') {
                return Err(InvalidAllowedHost(
                    "`*` may only be a whole host or a leading `*.` label",
                ));
            }
            return match Host::parse(domain) {
                Ok(Host::Name(name)) => Ok(HostPattern::Subdomain(format!(".{name}"))),
                Ok(_) => Err(InvalidAllowedHost("a `*.` wildcard must be followed by a domain name")),
                Err(e) => Err(e),
            };
        }
        if host.contains('*') {
            return Err(InvalidAllowedHost(
                "`*` may only be a whole host or a leading `*.` label",
            ));
        }
        Host::parse(host).map(HostPattern::Exact)
    }
}

impl PortPattern {
    fn parse(port: &str, scheme: &str) -> Result<PortPattern, InvalidAllowedHost> {
        let number = |text: &str| {
            text.parse::<u16>()
                .map_err(|_| InvalidAllowedHost("the port must be a number up to 65535, a range `a..b`, or `*`"))
        };
        if port.is_empty() {
            return well_known_port(scheme)
                .map(PortPattern::single)
                .ok_or(InvalidAllowedHost("no port, and the scheme has no well-known port"));
        }
        if port == "*" {
            return Ok(PortPattern::Any);
        }
        if port.starts_with('{') {
            return Err(InvalidAllowedHost("port lists are not supported"));
        }
        match port.split_once("..") {
            Some((start, end)) => Ok(PortPattern::Ports {
                start: number(start)?,
                end: number(end)?.into(),
            }),
            None => number(port).map(PortPattern::single),
        }
    }

    fn single(port: u16) -> PortPattern {
        PortPattern::Ports {
            start: port,
            end: u32::from(port) + 1,
        }
    }

    fn allows(self, port: Option<u16>) -> bool {
        match self {
            PortPattern::Any => true,
            PortPattern::Ports { start, end } => port.is_some_and(|p| p >= start && u32::from(p) < end),
        }
    }
}

impl Host {
    /// The URL standard's host parser, less IDNA: `[v6]`, an IPv4 address in
    /// any of its forms when the last label is a number, else a name
    /// (percent-decoded and lowercased) without forbidden code points.
    fn parse(text: &str) -> Result<Host, InvalidAllowedHost> {
        if let Some(inner) = text.strip_prefix('[') {
            return inner
                .strip_suffix(']')
                .and_then(|v6| v6.parse().ok())
                .map(Host::V6)
                .ok_or(InvalidAllowedHost("not a valid IPv6 address"));
        }
        let decoded = percent_decode(text);
        let name = if decoded.is_ascii() {
            decoded.to_ascii_lowercase()
        } else {
            decoded.to_lowercase()
        };
        if name.is_empty() {
            return Err(InvalidAllowedHost("the host is empty"));
        }
        if name.chars().any(is_forbidden_in_domain) {
            return Err(InvalidAllowedHost("the host holds a character no host name may hold"));
        }
        if ends_in_number(&name) {
            return parse_ipv4(&name)
                .map(Host::V4)
                .ok_or(InvalidAllowedHost("not a valid IPv4 address"));
        }
        Ok(Host::Name(name))
    }
}

/// The URL standard's forbidden domain code points.
fn is_forbidden_in_domain(c: char) -> bool {
    c <= '\u{1f}'
        || matches!(
            c,
            ' ' | '#' | '%' | '/' | ':' | '<' | '>' | '?' | '@' | '[' | '\\' | ']' | '^' | '|' | '\u{7f}'
        )
}

/// Decodes `%XX` escapes; a `%` not followed by two hex digits stays.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (
            bytes[i],
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the last label (ignoring one trailing dot) is a number, which
/// makes the URL standard read the whole host as an IPv4 address.
fn ends_in_number(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// One part of an IPv4 address: decimal, `0x` hex or `0`-prefixed octal.
/// `Some(None)` is a well-formed number too large for 32 bits.
fn ipv4_number(part: &str) -> Option<Option<u32>> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) = if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
        (hex, 16)
    } else if part.len() > 1
        && let Some(octal) = part.strip_prefix('0')
    {
        (octal, 8)
    } else {
        (part, 10)
    };
    if digits.is_empty() {
        return Some(Some(0));
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    Some(u32::from_str_radix(digits, radix).ok())
}

/// The URL standard's IPv4 parser: one to four numbers, the last filling the
/// bytes the others leave.
fn parse_ipv4(name: &str) -> Option<Ipv4Addr> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let parts: Vec<&str> = name.split('.').collect();
    if parts.len() > 4 {
        return None;
    }
    let numbers: Vec<u32> = parts.iter().map(|p| ipv4_number(p).flatten()).collect::<Option<_>>()?;
    let (last, leading) = numbers.split_last()?;
    if leading.iter().any(|&n| n > 255) {
        return None;
    }
    let last_bits = 8 * (4 - leading.len() as u32);
    if last_bits < 32 && *last >= 1 << last_bits {
        return None;
    }
    let high = leading
        .iter()
        .enumerate()
        .fold(0u32, |acc, (i, &n)| acc | (n << (24 - 8 * i as u32)));
    Some(Ipv4Addr::from(high | last))
}

impl Cidr {
    /// `address/prefix` with a plain (unbracketed) address; host bits are
    /// cleared, as Spin does.
    fn parse(text: &str) -> Option<Cidr> {
        let (address, prefix) = text.split_once('/')?;
        let address: IpAddr = address.parse().ok()?;
        let prefix: u8 = prefix.parse().ok()?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        if prefix > bits {
            return None;
        }
        let network = match address {
            IpAddr::V4(a) => IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask32(prefix))),
            IpAddr::V6(a) => IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask128(prefix))),
        };
        Some(Cidr { network, prefix })
    }

    fn contains(&self, host: &Host) -> bool {
        match (self.network, host) {
            (IpAddr::V4(net), Host::V4(a)) => u32::from(*a) & mask32(self.prefix) == u32::from(net),
            (IpAddr::V6(net), Host::V6(a)) => u128::from(*a) & mask128(self.prefix) == u128::from(net),
            _ => false,
        }
    }
}

fn mask32(prefix: u8) -> u32 {
    u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0)
}

fn mask128(prefix: u8) -> u128 {
    u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0)
}

/// A component's whole allow-list: an address passes if any entry allows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedHosts {
    hosts: Vec<AllowedHost>,
}

impl FromIterator<AllowedHost> for AllowedHosts {
    fn from_iter<I: IntoIterator<Item = AllowedHost>>(iter: I) -> Self {
        AllowedHosts {
            hosts: iter.into_iter().collect(),
        }
    }
}

impl AllowedHosts {
    /// Parses literal entries (templates already rendered and dropped as
    /// [`AllowedHost::parse_rendered`] says); the first bad one fails.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowedHosts, InvalidAllowedHost> {
        entries.iter().map(|e| AllowedHost::parse(e.as_ref())).collect()
    }

    /// Whether no entry is left, so nothing may be reached.
    pub fn is_empty(&self) -> bool {
        self.hosts.is_empty()
    }

    /// Whether any entry allows `host` (URL form) over `scheme` on `port`;
    /// see [`AllowedHost::allows`].
    pub fn allows(&self, scheme: &str, host: &str, port: Option<u16>) -> bool {
        self.hosts.iter().any(|h| h.allows(scheme, host, port))
    }

    /// Whether `url` may be reached, read as Spin reads the address a
    /// component asks for: `scheme://[userinfo@]host[:port][/...]`, or
    /// without `scheme://`, in which case `default_scheme` applies. An
    /// address that does not read as a URL with a host is refused.
    pub fn allows_url(&self, url: &str, default_scheme: &str) -> bool {
        match split_url(url) {
            Some((scheme, host, port)) => {
                let scheme = scheme.map_or_else(|| default_scheme.to_string(), str::to_ascii_lowercase);
                self.allows(&scheme, host, port)
            }
            None => false,
        }
    }

    /// Whether a PostgreSQL connection to `host` (as a connection string
    /// names it: an IPv6 address without brackets) on `port` may be made.
    /// Spin's PostgreSQL host checks `host[:port]` as a URL with the
    /// `postgres` scheme, so an IPv6 host, which then does not read as a URL,
    /// is always refused, here as there.
    pub fn allows_postgres(&self, host: &str, port: Option<u16>) -> bool {
        let address = match port {
            Some(port) => format!("{host}:{port}"),
            None => host.to_string(),
        };
        self.allows_url(&address, "postgres")
    }
}

/// `(scheme, host, port)` of an address. The userinfo may hold anything
/// (Spin escapes it before parsing), so the host starts after the first `@`
/// that precedes any `/`.
fn split_url(url: &str) -> Option<(Option<&str>, &str, Option<u16>)> {
    let (scheme, rest) = match url.split_once("://") {
        Some((scheme, rest)) if is_url_scheme(scheme) => (Some(scheme), rest),
        _ => (None, url),
    };
    let rest = match rest.find('@') {
        Some(at) if rest.find('/').is_none_or(|slash| at < slash) => &rest[at + 1..],
        _ => rest,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let authority = authority.rsplit_once('@').map_or(authority, |(_, a)| a);
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']')? + 1;
        match &authority[end..] {
            "" => (&authority[..end], ""),
            after => (&authority[..end], after.strip_prefix(':')?),
        }
    } else {
        authority.split_once(':').unwrap_or((authority, ""))
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        "" => None,
        p if p.bytes().all(|b| b.is_ascii_digit()) => Some(p.parse().ok()?),
        _ => return None,
    };
    Some((scheme, host, port))
}

/// RFC 3986: a letter, then letters, digits, `+`, `-` or `.`.
fn is_url_scheme(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts(entries: &[&str]) -> AllowedHosts {
        AllowedHosts::parse(entries).unwrap_or_else(|e| panic!("{entries:?}: {e}"))
    }

    #[test]
    fn exact_hosts_use_the_scheme_port_when_none_is_given() {
        let a = hosts(&["postgres://db.internal", "http://Example.COM:8080/"]);
        assert!(a.allows("postgres", "db.internal", None));
        assert!(a.allows("postgres", "DB.Internal", Some(5432)));
        assert!(!a.allows("postgres", "db.internal", Some(5433)));
        assert!(!a.allows("mysql", "db.internal", Some(5432)));
        assert!(!a.allows("postgres", "other", None));
        assert!(a.allows("http", "example.com", Some(8080)));
        assert!(!a.allows("http", "example.com", None));
        // The address's scheme decides its default port, not the entry's.
        let any_scheme = hosts(&["*://db:5432"]);
        assert!(any_scheme.allows("postgres", "db", None));
        assert!(!any_scheme.allows("mqtt", "db", None));
        assert!(!hosts(&["*://db:*"]).allows("tcp", "other", Some(1)));
        assert!(hosts(&["*://db:*"]).allows("tcp", "db", None));
    }

    #[test]
    fn wildcards_cover_subdomains_not_the_domain() {
        let a = hosts(&["postgres://*.Example.com:*"]);
        assert!(a.allows("postgres", "db.example.com", Some(1)));
        assert!(a.allows("postgres", "a.b.example.com", None));
        assert!(!a.allows("postgres", "example.com", None));
        assert!(!a.allows("postgres", "myexample.com", None));
        assert!(hosts(&["*://*:*"]).allows("anything", "10.0.0.1", Some(9)));
    }

    #[test]
    fn port_ranges_are_half_open() {
        let a = hosts(&["*://localhost:5000..5010"]);
        assert!(a.allows("postgres", "localhost", Some(5000)));
        assert!(a.allows("postgres", "localhost", Some(5009)));
        assert!(!a.allows("postgres", "localhost", Some(5010)));
        assert!(!a.allows("postgres", "localhost", None));
        // Spin accepts an empty range; it allows nothing.
        assert!(!hosts(&["postgres://h:6000..6000"]).allows("postgres", "h", Some(6000)));
        assert!(hosts(&["postgres://h:65535"]).allows("postgres", "h", Some(65535)));
    }

    #[test]
    fn addresses_compare_as_addresses() {
        let a = hosts(&["postgres://127.1", "postgres://[::1]", "postgres://[2001:db8::1]:6000"]);
        assert!(a.allows("postgres", "127.0.0.1", None));
        assert!(a.allows("postgres", "[0:0::1]", Some(5432)));
        assert!(a.allows("postgres", "[2001:DB8::1]", Some(6000)));
        assert!(!a.allows("postgres", "::1", None), "a URL host brackets IPv6");
        let blocks = hosts(&["*://10.1.2.3/8:80", "http://2001:db8::/32", "https://127.0.0.0/24"]);
        assert!(blocks.allows("tcp", "10.200.0.1", Some(80)));
        assert!(!blocks.allows("tcp", "11.0.0.1", Some(80)));
        assert!(blocks.allows("http", "[2001:db8:abcd::1]", None));
        assert!(!blocks.allows("http", "[2001:db9::1]", None));
        assert!(blocks.allows("https", "127.0.0.9", None));
        assert!(!blocks.allows("https", "localhost", None), "a block holds no names");
    }

    #[test]
    fn self_never_matches_an_absolute_address() {
        let a = hosts(&["http://self", "http://self.alt"]);
        assert!(!a.allows("http", "self", None));
        assert!(!a.allows("http", "localhost", None));
    }

    #[test]
    fn entries_spin_refuses() {
        for bad in [
            "",
            "*",
            "localhost",
            "localhost:5432",
            "insecure:allow-all",
            "postgres://",
            "postgres://a/b",
            "postgres://a:5432/b",
            "foo://host",
            "*://host",
            "*://127.0.0.0/24",
            "postgres://a*b",
            "postgres://*.*.example.com",
            "postgres://*.127.0.0.1",
            "postgres://{a,b}",
            "{http,https}://a",
            "postgres+tls://a",
            "postgres://a:{1,2}",
            "postgres://a:99999",
            "postgres://a:1..70000",
            "postgres://a:8080..",
            "postgres://a:80:90",
            "http://example.com//",
            "http://[::1",
            "http://[::1]junk",
            "http://[::1]::80",
            "http://exa[mple.com",
            "http://example%.com",
            "http://example%GG.com",
            "http://1.2.3.4.5",
            "http://256.0.0.1",
        ] {
            assert!(AllowedHost::parse(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn entries_spin_accepts() {
        for good in [
            "postgres://localhost",
            "postgres://localhost:",
            " postgres://localhost:5432/ ",
            "*://*:*",
            "http://*",
            "mqtt://broker",
            "postgres://[::1]",
            "postgres://[::1]:*",
            "postgres://[::1]:8000..9000",
            "http://ff00::/8",
            "http://2001:db8::/32:443",
            "postgres://0x7f.1",
            "http://example%2Ecom",
            "postgres://h:6000..5000",
            "postgres://under_score.example",
        ] {
            assert!(AllowedHost::parse(good).is_ok(), "{good:?} was refused");
        }
        assert_eq!(
            AllowedHost::parse("http://example%2Ecom"),
            AllowedHost::parse("http://EXAMPLE.com")
        );
    }

    #[test]
    fn errors_do_not_quote_the_entry() {
        let e = AllowedHost::parse("postgres://s3cr3t:99999").unwrap_err();
        assert!(
            !e.to_string().contains("s3cr3t") && !e.to_string().contains("99999"),
            "{e}"
        );
    }

    #[test]
    fn rendered_entries_left_empty_are_dropped() {
        for dropped in ["", "http://", "https://"] {
            assert_eq!(AllowedHost::parse_rendered(dropped), Ok(None));
        }
        assert!(AllowedHost::parse_rendered("postgres://").is_err());
        assert!(AllowedHost::parse_rendered("postgres://db").unwrap().is_some());
    }

    #[test]
    fn urls_read_as_spin_reads_them() {
        let a = hosts(&["mysql://xyz.com", "https://api.example.com", "postgres://db:6543"]);
        assert!(a.allows_url("mysql://user:pass#word@xyz.com", "mysql"));
        assert!(a.allows_url("user:p@ss@xyz.com/db", "mysql"));
        assert!(a.allows_url("https://api.example.com/v1/x?y#z", "https"));
        assert!(a.allows_url("api.example.com:443", "https"));
        assert!(!a.allows_url("http://api.example.com", "https"));
        assert!(a.allows_url("db:6543", "postgres"));
        assert!(!a.allows_url("db", "postgres"));
        assert!(!a.allows_url("db:port", "postgres"));
        assert!(!a.allows_url("", "postgres"));
        assert!(!AllowedHosts::default().allows_url("https://api.example.com", "https"));
    }

    #[test]
    fn postgres_hosts_are_checked_as_spin_checks_them() {
        let a = hosts(&["postgres://db.local", "postgres://[::1]:*", "postgres://127.0.0.1"]);
        assert!(a.allows_postgres("db.local", None));
        assert!(a.allows_postgres("db.local", Some(5432)));
        assert!(!a.allows_postgres("db.local", Some(5433)));
        assert!(a.allows_postgres("127.0.0.1", None));
        // tokio-postgres holds IPv6 hosts without brackets: never a URL host.
        assert!(!a.allows_postgres("::1", Some(5432)));
        assert!(a.allows_postgres("[::1]", Some(5432)));
    }

    #[test]
    fn ipv4_forms() {
        assert_eq!(parse_ipv4("127.1"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_ipv4("0x7f.0.0.1."), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_ipv4("017.0.0.1"), Some(Ipv4Addr::new(15, 0, 0, 1)));
        assert_eq!(parse_ipv4("2130706433"), Some(Ipv4Addr::new(127, 0, 0, 1)));
        assert_eq!(parse_ipv4("1.2.65536"), None);
        assert_eq!(parse_ipv4("1.2.3.08"), None);
        assert_eq!(parse_ipv4("4294967296"), None);
        assert!(ends_in_number("example.0x1f") && !ends_in_number("example.com"));
    }
}
