//! The component's Spin variables as one typed, validated value.
//!
//! This is the env validation of the original service: every variable is
//! checked against `schemas/config.json`, every bad one is reported by name
//! (never by value: `database_url` is a secret), and a component refuses to
//! serve with a bad config. `make up` runs the same check before serving.

use crate::auth::AuthConfig;
use crate::durability::Durability;
use crate::outbound::{AllowedHost, AllowedHosts};
use crate::problem::{FieldError, Location, Problem, ProblemKind};
use crate::validate::Schema;
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::fmt;

/// The deployment environment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppEnv {
    /// A developer's machine (the default).
    Development,
    /// A test run.
    Test,
    /// Serving real users: `jwt_secret` must also look random.
    Production,
}

/// Lowest level that reaches the logs; ordered from most to least severe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Warnings and errors.
    Warn,
    /// Informational lines too (the default).
    Info,
    /// Everything, debugging detail included.
    Debug,
}

impl LogLevel {
    /// The `level` field of a log line, as `log_level` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
        }
    }
}

/// Where orders live.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseConfig {
    /// Spin's `default` SQLite database.
    Sqlite,
    /// A PostgreSQL server; the URL holds credentials.
    Postgres(Secret),
}

impl fmt::Debug for DatabaseConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DatabaseConfig::Sqlite => f.write_str("Sqlite"),
            DatabaseConfig::Postgres(_) => f.write_str("Postgres(..)"),
        }
    }
}

/// A value that must never be printed: `Debug` and `Display` redact it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value so that it can no longer be printed by accident.
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    /// The value itself, for the one place that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A component's typed config. Variables not mapped into the component take
/// their schema default.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Where the app runs (`app_env`).
    pub app_env: AppEnv,
    /// The least severe level logged (`log_level`).
    pub log_level: LogLevel,
    /// Where orders live (`database_url`).
    pub database: DatabaseConfig,
    /// How durable a SQLite commit is (`sqlite_synchronous`); unused with
    /// PostgreSQL.
    pub sqlite_synchronous: Durability,
    /// Present when `jwt_secret` is mapped into the component.
    pub auth: Option<AuthConfig>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            app_env: AppEnv::Development,
            log_level: LogLevel::Info,
            database: DatabaseConfig::Sqlite,
            sqlite_synchronous: Durability::default(),
            auth: None,
        }
    }
}

/// Every bad variable, by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// One entry per problem, at the variable's name.
    pub errors: Vec<FieldError>,
}

impl ConfigError {
    /// A required variable that is not mapped into the component.
    pub fn missing(name: &str) -> Self {
        ConfigError {
            errors: vec![FieldError::at_parameter(
                name,
                "required",
                "the variable is required by this component",
            )],
        }
    }

    /// The names of the bad variables, for messages and logs.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self
            .errors
            .iter()
            .filter_map(|e| match &e.location {
                Location::Parameter(name) => Some(name.as_str()),
                Location::Pointer(_) => None,
            })
            .collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// The `500` a component answers when it meets a bad config anyway.
    pub fn to_problem(&self) -> Problem {
        Problem::new(
            ProblemKind::InvalidConfig,
            format!("invalid Spin variable(s): {}", self.names().join(", ")),
        )
        .with_errors(self.errors.clone())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            let name = match &e.location {
                Location::Parameter(name) | Location::Pointer(name) => name,
            };
            write!(f, "{name}: {} ({})", e.message, e.keyword)?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The variable names a config may hold, from `schemas/config.json`.
pub fn variable_names() -> Vec<String> {
    let schema: Value = serde_json::from_str(crate::schemas::CONFIG).expect("config schema is JSON");
    schema["properties"]
        .as_object()
        .expect("config schema has properties")
        .keys()
        .cloned()
        .collect()
}

impl Config {
    /// Validates raw variable values (all strings, as Spin gives them) and
    /// builds the typed config. Absent variables take their default.
    pub fn from_values(values: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        check(values)?;
        let get = |name: &str| values.get(name).map(String::as_str);
        let app_env = match get("app_env").unwrap_or("development") {
            "production" => AppEnv::Production,
            "test" => AppEnv::Test,
            _ => AppEnv::Development,
        };
        let log_level = match get("log_level").unwrap_or("info") {
            "error" => LogLevel::Error,
            "warn" => LogLevel::Warn,
            "debug" => LogLevel::Debug,
            _ => LogLevel::Info,
        };
        let database = match get("database_url").unwrap_or("") {
            "" => DatabaseConfig::Sqlite,
            url => DatabaseConfig::Postgres(Secret::new(url.to_string())),
        };
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty()).map(String::from);
        let auth = get("jwt_secret").map(|secret| AuthConfig {
            secret: Secret::new(secret.to_string()),
            issuer: non_empty("jwt_issuer"),
            audience: non_empty("jwt_audience"),
        });
        let sqlite_synchronous = get("sqlite_synchronous")
            .and_then(Durability::parse)
            .unwrap_or_default();
        Ok(Config {
            app_env,
            log_level,
            database,
            sqlite_synchronous,
            auth,
        })
    }
}

/// Checks raw values against `schemas/config.json`, reporting every bad
/// variable by name. Used by components and by `make up` before serving.
pub fn check(values: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    let schema = Schema::generated(crate::schemas::generated::Config::iter_errors);
    let object: Map<String, Value> = values
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    let errors: Vec<FieldError> = schema
        .errors(&Value::Object(object))
        .into_iter()
        .map(|e| {
            let name = match e.location {
                Location::Pointer(p) => p.trim_start_matches('/').to_string(),
                Location::Parameter(p) => p,
            };
            let message = match e.keyword.as_str() {
                "additionalProperties" => "not a variable of this app".to_string(),
                _ => e.message,
            };
            FieldError {
                location: Location::Parameter(name),
                keyword: e.keyword,
                message,
            }
        })
        .collect();
    let mut errors = errors;
    if errors.is_empty() {
        errors.extend(check_database_host(values));
        errors.extend(check_secret_strength(values));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ConfigError { errors })
    }
}

/// Markers of a value copied from an example rather than generated (the
/// deploy Secret's placeholder is `REPLACE_ME-...`), compared without case.
const PLACEHOLDERS: &[&str] = &["replace_me", "replace-me", "changeme", "change-me", "placeholder"];

/// The fewest distinct bytes a production `jwt_secret` may have: 32 random
/// bytes, even base64- or hex-encoded, have far more; `aaaa...` or a short
/// word repeated to length do not.
const MIN_DISTINCT_SECRET_BYTES: usize = 12;

/// `jwt_secret` must not be a placeholder (anywhere) nor obviously weak (in
/// production): anyone who knows it can sign tokens for every user. Values
/// stay out of the messages.
fn check_secret_strength(values: &BTreeMap<String, String>) -> Vec<FieldError> {
    let Some(secret) = values.get("jwt_secret") else {
        return Vec::new();
    };
    let lower = secret.to_ascii_lowercase();
    if PLACEHOLDERS.iter().any(|p| lower.contains(p)) {
        return vec![FieldError::at_parameter(
            "jwt_secret",
            "placeholder",
            "is an example placeholder; generate one (e.g. openssl rand -base64 48)",
        )];
    }
    let distinct = secret.bytes().collect::<std::collections::BTreeSet<u8>>().len();
    if values.get("app_env").map(String::as_str) == Some("production") && distinct < MIN_DISTINCT_SECRET_BYTES {
        return vec![FieldError::at_parameter(
            "jwt_secret",
            "weak",
            "is too repetitive to be a random key; generate one (e.g. openssl rand -base64 48)",
        )];
    }
    Vec::new()
}

/// `database_url` must name servers the components may reach, or every
/// order request would fail with `503`. `spin.toml` grants them
/// `postgres://{{ db_host }}` in `allowed_outbound_hosts`, so `db_host` is
/// read as that entry and each server is checked as Spin checks it
/// ([`crate::outbound`]): wildcards, port ranges and the default port 5432
/// as Spin has them, and an IPv6 host never passes. The URL's authority and
/// any `host` / `hostaddr` query parameters all count. Values stay out of
/// the messages.
fn check_database_host(values: &BTreeMap<String, String>) -> Vec<FieldError> {
    let url = values.get("database_url").map(String::as_str).unwrap_or("");
    if url.is_empty() {
        return Vec::new();
    }
    // The schema checks only the prefix `postgres` (its keywords need no
    // regex engine); the scheme is checked here, with the hosts.
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return vec![FieldError::at_parameter(
            "database_url",
            "pattern",
            "must be empty or start with postgres:// or postgresql://",
        )];
    }
    let db_host = values.get("db_host").map(String::as_str).unwrap_or("localhost:5432");
    let allowed: AllowedHosts = match AllowedHost::parse_rendered(&format!("postgres://{db_host}")) {
        Ok(entry) => entry.into_iter().collect(),
        Err(_) => {
            return vec![FieldError::at_parameter(
                "db_host",
                "allowed_outbound_hosts",
                "is not a host Spin accepts in allowed_outbound_hosts (host[:port], `*` or `*.domain` hosts, ports `*` or a..b)",
            )];
        }
    };
    let servers = database_servers(url);
    if !servers.is_empty() && servers.iter().all(|(host, port)| allowed.allows_postgres(host, *port)) {
        return Vec::new();
    }
    vec![
        FieldError::at_parameter(
            "database_url",
            "db_host",
            "names a database server that db_host does not allow (components may reach only db_host)",
        ),
        FieldError::at_parameter(
            "db_host",
            "database_url",
            "does not allow the database server that database_url names",
        ),
    ]
}

/// `(host, port)` of every server a `postgres://` URL makes libpq-style
/// clients reach: the authority's, and those of `host` / `hostaddr`
/// parameters. Hosts are as the client holds them (an IPv6 address without
/// brackets); a `hostaddr`, always an address, is bracketed when IPv6 so
/// that an allow-list entry can name it. A port applies to the hosts that
/// give none.
fn database_servers(url: &str) -> Vec<(String, Option<u16>)> {
    let Some((_, rest)) = url.split_once("://") else {
        return Vec::new();
    };
    let (before_query, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = before_query.split('/').next().unwrap_or("");
    let hosts = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let mut servers = Vec::new();
    let mut default_port = None;
    for host in hosts.split(',').filter(|h| !h.is_empty()) {
        let (name, port) = split_host_port(host);
        default_port = default_port.or(port);
        servers.push((name, port));
    }
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if key == "port" {
            default_port = value.parse().ok();
        } else if key == "host" {
            servers.extend(value.split(',').map(|h| (h.to_string(), None)));
        } else if key == "hostaddr" {
            let bracketed = |a: &str| {
                if a.contains(':') {
                    format!("[{a}]")
                } else {
                    a.to_string()
                }
            };
            servers.extend(value.split(',').map(|a| (bracketed(a), None)));
        }
    }
    servers
        .into_iter()
        .map(|(host, port)| (host, port.or(default_port)))
        .collect()
}

fn split_host_port(text: &str) -> (String, Option<u16>) {
    let (host, port) = match text.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, rest)) => (h, rest.strip_prefix(':')),
            None => (v6, None),
        },
        None => match text.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (text, None),
        },
    };
    (host.to_string(), port.and_then(|p| p.parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_apply_when_nothing_is_mapped() {
        assert_eq!(Config::from_values(&BTreeMap::new()).unwrap(), Config::default());
    }

    #[test]
    fn typed_values() {
        let c = Config::from_values(&values(&[
            ("app_env", "production"),
            ("log_level", "debug"),
            ("database_url", "postgres://u:p@db:5432/orders"),
            ("db_host", "db:5432"),
            ("sqlite_synchronous", "full"),
        ]))
        .unwrap();
        assert_eq!(c.app_env, AppEnv::Production);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.sqlite_synchronous, Durability::Full);
        assert_eq!(Config::default().sqlite_synchronous, Durability::Normal);
        assert!(
            matches!(&c.database, DatabaseConfig::Postgres(url) if url.expose() == "postgres://u:p@db:5432/orders")
        );
    }

    #[test]
    fn every_bad_variable_is_named_and_no_value_leaks() {
        let secret = "mysql://root:hunter2@db";
        let err = Config::from_values(&values(&[
            ("app_env", "staging"),
            ("log_level", "verbose"),
            ("database_url", secret),
            ("sqlite_synchronous", "off"),
        ]))
        .unwrap_err();
        assert_eq!(
            err.names(),
            vec!["app_env", "database_url", "log_level", "sqlite_synchronous"]
        );
        let shown = format!("{err} {:?} {:?}", err, err.to_problem());
        assert!(
            !shown.contains("hunter2") && !shown.contains("staging") && !shown.contains("verbose"),
            "{shown}"
        );
        assert_eq!(err.to_problem().kind, ProblemKind::InvalidConfig);
    }

    #[test]
    fn jwt_secret_is_at_least_32_bytes_and_never_shown() {
        let short = "too-short-secret";
        let err = Config::from_values(&values(&[("jwt_secret", short)])).unwrap_err();
        assert_eq!(err.names(), vec!["jwt_secret"]);
        assert!(!format!("{err} {err:?}").contains(short));
        let c = Config::from_values(&values(&[("jwt_secret", &"k".repeat(32)), ("jwt_issuer", "")])).unwrap();
        let auth = c.auth.unwrap();
        assert_eq!(auth.issuer, None);
        assert!(!format!("{auth:?}").contains("kkkk"));
    }

    #[test]
    fn placeholder_and_weak_secrets_are_refused() {
        let example = "REPLACE_ME-at-least-32-random-bytes";
        for env in ["development", "production"] {
            let err = Config::from_values(&values(&[("app_env", env), ("jwt_secret", example)])).unwrap_err();
            assert_eq!(err.names(), vec!["jwt_secret"]);
            assert!(!format!("{err} {err:?}").contains("REPLACE"), "{err}");
        }
        let weak = "abcabcabcabcabcabcabcabcabcabcabcabc";
        assert!(Config::from_values(&values(&[("app_env", "development"), ("jwt_secret", weak)])).is_ok());
        let err = Config::from_values(&values(&[("app_env", "production"), ("jwt_secret", weak)])).unwrap_err();
        assert_eq!(err.names(), vec!["jwt_secret"]);
        let random = "q3N8vX0pL7kR2mZ9tB4wY6cF1hJ5sD8gA0eU3iO7yT2=";
        assert!(Config::from_values(&values(&[("app_env", "production"), ("jwt_secret", random)])).is_ok());
    }

    #[test]
    fn unknown_variables_are_rejected() {
        let err = check(&values(&[("jwt_secrett", "x")])).unwrap_err();
        assert_eq!(err.names(), vec!["jwt_secrett"]);
    }

    #[test]
    fn database_url_must_name_the_server_db_host_allows() {
        let ok = [
            ("postgres://u:p@localhost/orders", "localhost:5432"),
            ("postgres://u:p@localhost/orders", "localhost"),
            ("postgres://u:p@db.internal:6543/orders", "db.internal:6543"),
            ("postgres://u:p@db.internal:6543/orders", "*.internal:*"),
            ("postgresql://u@db:5433/o?sslmode=require", "db:5433"),
            ("postgres://u@DB:6001/o", "db:6000..6100"),
            ("postgres://u@127.0.0.1/o", "127.1"),
            ("postgres://u@localhost/o?hostaddr=::1", "*:*"),
        ];
        for (url, host) in ok {
            let v = values(&[("database_url", url), ("db_host", host)]);
            assert!(check(&v).is_ok(), "{url} with {host}");
        }
        let bad = [
            ("postgres://u:hunter2@evil.example/orders", "localhost:5432"),
            ("postgres://u:hunter2@localhost:5433/orders", "localhost:5432"),
            (
                "postgres://u:hunter2@localhost/orders?hostaddr=10.1.2.3",
                "localhost:5432",
            ),
            ("postgres://u:hunter2@localhost/orders?host=evil.example", "localhost"),
            // Half-open, as in Spin: 6100 is outside 6000..6100.
            ("postgres://u:hunter2@db:6100/o", "db:6000..6100"),
            // Spin's PostgreSQL host never lets an IPv6 host through.
            ("postgres://u:hunter2@[::1]:5432/orders", "[::1]:5432"),
            // `*.internal` covers names under it, not `internal` itself.
            ("postgres://u:hunter2@internal/o", "*.internal:*"),
        ];
        for (url, host) in bad {
            let err = check(&values(&[("database_url", url), ("db_host", host)])).unwrap_err();
            assert_eq!(err.names(), vec!["database_url", "db_host"], "{url}");
            assert!(!format!("{err} {:?}", err.to_problem()).contains("hunter2"));
        }
        // Unmapped db_host means its default, localhost:5432.
        assert!(check(&values(&[("database_url", "postgres://u@elsewhere/o")])).is_err());
    }

    #[test]
    fn database_url_is_empty_or_a_postgres_url() {
        for url in [
            "",
            "postgres://u@localhost/o",
            "postgresql://u@localhost/o",
            "postgres://localhost",
        ] {
            assert!(check(&values(&[("database_url", url)])).is_ok(), "{url:?}");
        }
        for url in [
            "postgres://",
            "postgresql://",
            "postgresx://u@localhost/o",
            "postgres:/u@localhost/o",
            "postgres://u@local host/o",
            "mysql://u@localhost/o",
            " postgres://u@localhost/o",
        ] {
            // Refused, naming database_url (and db_host too when the URL
            // names no server it could allow).
            let err = check(&values(&[("database_url", url)])).unwrap_err();
            assert_eq!(err.names()[0], "database_url", "{url:?}");
        }
    }

    #[test]
    fn db_host_must_be_an_entry_spin_accepts() {
        for host in ["a*b", "db:99999", "db:x", "*.*.internal"] {
            let v = values(&[("database_url", "postgres://u:hunter2@db/o"), ("db_host", host)]);
            let err = check(&v).unwrap_err();
            assert_eq!(err.names(), vec!["db_host"], "{host}");
            assert!(!format!("{err}").contains(host), "{err}");
        }
        // Unused with SQLite: not checked.
        assert!(check(&values(&[("db_host", "a*b")])).is_ok());
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let c = Config::from_values(&values(&[
            ("database_url", "postgresql://u:pw@h/db"),
            ("db_host", "h:5432"),
        ]))
        .unwrap();
        assert!(!format!("{c:?}").contains("pw"));
    }
}
