//! `spin.toml` (manifest v2): the subset of Spin's schema the runner hosts.
//!
//! Every table is `deny_unknown_fields`: a key the runner does not implement
//! must stop startup instead of being silently ignored, because Spin (the
//! production engine) would act on it.

use anyhow::{Context, Result, anyhow, bail};
use kit::outbound::AllowedHost;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The parsed manifest plus the directory it was read from.
#[derive(Debug, Clone)]
pub(crate) struct Manifest {
    pub(crate) dir: PathBuf,
    pub(crate) application: Application,
    pub(crate) variables: BTreeMap<String, VariableDecl>,
    pub(crate) http_triggers: Vec<HttpTrigger>,
    pub(crate) components: BTreeMap<String, ComponentDecl>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: toml::Value,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, VariableDecl>,
    #[serde(default)]
    trigger: Triggers,
    #[serde(default)]
    component: BTreeMap<String, ComponentDecl>,
}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Application {
    pub(crate) name: String,
    #[serde(default)]
    pub(crate) version: String,
    // The keys below are checked for their type, as Spin checks them, and
    // otherwise unused.
    #[serde(default, rename = "description")]
    _description: String,
    #[serde(default, rename = "authors")]
    _authors: Vec<String>,
    /// Settings for external tools; Spin itself ignores this table, so do we.
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Table>,
}

/// `[variables]` entry. Spin requires exactly one of `default` / `required`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VariableDecl {
    #[serde(default)]
    pub(crate) default: Option<String>,
    #[serde(default)]
    pub(crate) required: bool,
    #[serde(default)]
    pub(crate) secret: bool,
    #[serde(default, rename = "description")]
    _description: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Triggers {
    #[serde(default)]
    http: Vec<HttpTrigger>,
}

/// One `[[trigger.http]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HttpTrigger {
    #[serde(default, rename = "id")]
    _id: String,
    pub(crate) route: RouteConfig,
    pub(crate) component: toml::Value,
}

impl HttpTrigger {
    /// The component id; inline component tables are not supported.
    pub(crate) fn component_id(&self) -> Result<&str> {
        self.component.as_str().ok_or_else(|| {
            anyhow!("inline `component = {{ ... }}` tables in [[trigger.http]] are not supported by the runner; reference a [component.<id>] instead")
        })
    }
}

/// `route = "/path"` or `route = { private = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(crate) enum RouteConfig {
    Route(String),
    Private(PrivateRoute),
}

/// `route = { private = true }`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PrivateRoute {
    pub(crate) private: bool,
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ComponentDecl {
    pub(crate) source: toml::Value,
    #[serde(default, rename = "description")]
    _description: String,
    #[serde(default)]
    pub(crate) variables: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) environment: BTreeMap<String, String>,
    #[serde(default)]
    pub(crate) files: Vec<toml::Value>,
    #[serde(default)]
    pub(crate) exclude_files: Vec<String>,
    #[serde(default)]
    pub(crate) allowed_outbound_hosts: Vec<String>,
    #[serde(default)]
    pub(crate) key_value_stores: Vec<String>,
    #[serde(default)]
    pub(crate) sqlite_databases: Vec<String>,
    #[serde(default)]
    pub(crate) build: Option<BuildConfig>,
    /// Settings for external tools; ignored as Spin ignores it.
    #[serde(default, rename = "tool")]
    _tool: Option<toml::Table>,
}

/// `[component.<id>.build]`, used by `spin build`; the runner only validates it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildConfig {
    pub(crate) command: toml::Value,
    #[serde(default, rename = "workdir")]
    _workdir: Option<String>,
    #[serde(default, rename = "watch")]
    _watch: Vec<String>,
}

/// Label of the only SQLite database / key-value store Spin defines without a
/// runtime config file.
pub(crate) const DEFAULT_LABEL: &str = "default";

impl Manifest {
    /// Reads and validates the manifest at `path`.
    pub(crate) fn load(path: &Path) -> Result<Manifest> {
        let text = std::fs::read_to_string(path).with_context(|| format!("cannot read manifest {}", path.display()))?;
        let dir = path
            .parent()
            .map(|p| {
                if p.as_os_str().is_empty() {
                    PathBuf::from(".")
                } else {
                    p.to_path_buf()
                }
            })
            .unwrap_or_else(|| PathBuf::from("."));
        Self::parse(&text, dir).with_context(|| format!("invalid manifest {}", path.display()))
    }

    /// Parses and validates the manifest text; `dir` resolves relative paths.
    pub(crate) fn parse(text: &str, dir: PathBuf) -> Result<Manifest> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| anyhow!("{e}"))?;
        if raw.spin_manifest_version.as_integer() != Some(2) {
            bail!(
                "spin_manifest_version must be 2 (got {}); only manifest v2 is supported",
                raw.spin_manifest_version
            );
        }
        let manifest = Manifest {
            dir,
            application: raw.application,
            variables: raw.variables,
            http_triggers: raw.trigger.http,
            components: raw.component,
        };
        let problems = manifest.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("\n"));
        }
        Ok(manifest)
    }

    /// Every structural problem Spin would refuse, or that the runner cannot honour.
    fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.application.name.is_empty() {
            problems.push("[application] name must not be empty".to_string());
        }
        for (name, var) in &self.variables {
            if !is_lower_snake(name) {
                problems.push(format!(
                    "variable name {name:?} must be lower_snake_case (a-z, 0-9, single underscores, starting with a letter)"
                ));
            }
            match (&var.default, var.required) {
                (Some(_), true) => problems.push(format!(
                    "variable {name:?}: `default` and `required = true` are mutually exclusive"
                )),
                (None, false) => problems.push(format!(
                    "variable {name:?} must have either a `default` or `required = true`"
                )),
                _ => {}
            }
        }
        for trigger in &self.http_triggers {
            match trigger.component_id() {
                Ok(id) if !self.components.contains_key(id) => problems.push(format!(
                    "[[trigger.http]] route {:?} refers to component {id:?} which is not defined",
                    trigger.route_display()
                )),
                Ok(_) => {}
                Err(e) => problems.push(e.to_string()),
            }
            match &trigger.route {
                RouteConfig::Route(r) => {
                    if let Err(e) = crate::routes::RoutePattern::parse(r) {
                        problems.push(format!("invalid route {r:?}: {e}"));
                    }
                }
                RouteConfig::Private(p) if !p.private => problems.push(format!(
                    "route must be a string pattern or '{{ private = true }}': component {:?} has {{ private = false }}",
                    trigger.component.as_str().unwrap_or("?")
                )),
                RouteConfig::Private(_) => problems.push(format!(
                    "private routes (route = {{ private = true }}) are only reachable through service chaining, which the runner does not support (component {:?})",
                    trigger.component.as_str().unwrap_or("?")
                )),
            }
        }
        for (id, c) in &self.components {
            if !is_kebab(id) {
                problems.push(format!(
                    "component id {id:?} must be kebab-case (a-z, 0-9, single dashes, starting with a letter)"
                ));
            }
            if !c.source.is_str() {
                problems.push(format!(
                    "component {id:?}: only a local file `source = \"path.wasm\"` is supported by the runner (no URL or registry sources)"
                ));
            }
            if !c.files.is_empty() || !c.exclude_files.is_empty() {
                problems.push(format!(
                    "component {id:?}: `files` / `exclude_files` are not supported by the runner"
                ));
            }
            for name in c.variables.keys() {
                if !is_lower_snake(name) {
                    problems.push(format!(
                        "component {id:?}: variable name {name:?} must be lower_snake_case"
                    ));
                }
            }
            for (name, template) in &c.variables {
                match crate::variables::Template::parse(template) {
                    Ok(t) => {
                        for r in t.references() {
                            if !self.variables.contains_key(r) {
                                problems.push(format!(
                                    "component {id:?}: variable {name:?} refers to application variable {r:?} which is not declared in [variables]"
                                ));
                            }
                        }
                    }
                    Err(e) => problems.push(format!(
                        "component {id:?}: variable {name:?} has an invalid template: {e}"
                    )),
                }
            }
            for entry in &c.allowed_outbound_hosts {
                problems.extend(self.allowed_host_problem(id, entry));
            }
            // Spin refuses at startup a grant for a label that no runtime config
            // defines; without a runtime config only `default` exists.
            for db in &c.sqlite_databases {
                if db != DEFAULT_LABEL {
                    problems.push(format!(
                        "component {id:?} uses SQLite database {db:?} which is not defined (only \"default\" exists without a runtime config file, which the runner does not support)"
                    ));
                }
            }
            for kv in &c.key_value_stores {
                if kv != DEFAULT_LABEL {
                    problems.push(format!(
                        "component {id:?} uses key-value store {kv:?} which is not defined (only \"default\" exists without a runtime config file)"
                    ));
                }
            }
            if let Some(b) = &c.build {
                let ok = match &b.command {
                    toml::Value::String(_) => true,
                    toml::Value::Array(a) => a.iter().all(|v| v.is_str()),
                    _ => false,
                };
                if !ok {
                    problems.push(format!(
                        "component {id:?}: build.command must be a string or a list of strings"
                    ));
                }
            }
        }
        problems
    }

    /// What Spin's loader refuses in one `allowed_outbound_hosts` entry: a
    /// bad template, a reference to an undeclared variable, a literal entry
    /// that does not parse, or a templated one that does not parse once
    /// rendered with the variables' defaults (checked only when every
    /// variable it uses has one; the rest is known at startup).
    fn allowed_host_problem(&self, id: &str, entry: &str) -> Option<String> {
        let template = match crate::variables::Template::parse(entry) {
            Ok(t) => t,
            Err(e) => {
                return Some(format!(
                    "component {id:?}: allowed_outbound_hosts entry {entry:?} has an invalid template: {e}"
                ));
            }
        };
        if let Some(r) = template.references().find(|r| !self.variables.contains_key(*r)) {
            return Some(format!(
                "component {id:?}: allowed_outbound_hosts entry {entry:?} refers to application variable {r:?} which is not declared in [variables]"
            ));
        }
        let literal = template.references().next().is_none();
        let rendered = template.render_with(|name| self.variables.get(name)?.default.as_deref())?;
        let parsed = if literal {
            AllowedHost::parse(&rendered).map(Some)
        } else {
            AllowedHost::parse_rendered(&rendered)
        };
        let e = parsed.err()?;
        Some(if literal {
            format!("component {id:?}: invalid allowed_outbound_hosts entry {entry:?}: {e}")
        } else {
            format!(
                "component {id:?}: allowed_outbound_hosts entry {entry:?} is invalid with the variables' defaults: {e}"
            )
        })
    }

    /// Absolute-or-manifest-relative path of a component's wasm.
    pub(crate) fn source_path(&self, id: &str) -> Result<PathBuf> {
        let c = self.components.get(id).ok_or_else(|| anyhow!("no component {id:?}"))?;
        let src = c
            .source
            .as_str()
            .ok_or_else(|| anyhow!("component {id:?} has no local source"))?;
        Ok(self.dir.join(src))
    }
}

impl HttpTrigger {
    fn route_display(&self) -> String {
        match &self.route {
            RouteConfig::Route(r) => r.clone(),
            RouteConfig::Private(_) => "{ private = true }".into(),
        }
    }
}

/// Spin's `LowerSnakeId`: lowercase words of `[a-z0-9]` joined by single `_`,
/// first word starting with a letter.
pub(crate) fn is_lower_snake(s: &str) -> bool {
    is_word_id(s, '_')
}

/// Spin's `KebabId`: lowercase words of `[a-z0-9]` joined by single `-`,
/// first word starting with a letter.
pub(crate) fn is_kebab(s: &str) -> bool {
    is_word_id(s, '-')
}

fn is_word_id(s: &str, sep: char) -> bool {
    if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        return false;
    }
    s.split(sep)
        .all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest> {
        Manifest::parse(text, PathBuf::from("."))
    }

    const BASE: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
version = "0.1.0"
authors = ["me"]
[variables]
db_host = { default = "localhost" }
token = { required = true, secret = true }
[[trigger.http]]
route = "/orders/..."
component = "orders"
[component.orders]
source = "orders.wasm"
variables = { host = "{{ db_host }}", token = "{{token}}" }
sqlite_databases = ["default"]
allowed_outbound_hosts = ["postgres://{{ db_host }}:5432"]
environment = { RUST_LOG = "info" }
[component.orders.build]
command = "cargo build --release"
watch = ["src/**/*.rs"]
"#;

    #[test]
    fn accepts_supported_shape() {
        let m = parse(BASE).unwrap();
        assert_eq!(m.application.name, "app");
        assert_eq!(m.http_triggers.len(), 1);
        assert!(m.variables["token"].secret);
        assert_eq!(m.source_path("orders").unwrap(), PathBuf::from("./orders.wasm"));
    }

    #[test]
    fn unknown_keys_are_errors() {
        for (from, to) in [
            ("authors = [\"me\"]", "authors = [\"me\"]\nfrobnicate = 1"),
            ("environment = {", "ai_models = [\"llama2-chat\"]\nenvironment = {"),
            (
                "[[trigger.http]]",
                "[[trigger.redis]]\nchannel = \"x\"\ncomponent = \"orders\"\n[[trigger.http]]",
            ),
            (
                "route = \"/orders/...\"",
                "route = \"/orders/...\"\nexecutor = { type = \"wagi\" }",
            ),
            (
                "db_host = { default = \"localhost\" }",
                "db_host = { default = \"localhost\", sekret = true }",
            ),
            ("watch = [", "shell = true\nwatch = ["),
        ] {
            let text = BASE.replace(from, to);
            assert_ne!(text, BASE, "replacement {from:?} did not apply");
            let err = parse(&text).unwrap_err().to_string();
            assert!(err.contains("unknown field"), "{from:?} -> {err}");
        }
    }

    #[test]
    fn refuses_what_spin_refuses() {
        let cases = [
            ("spin_manifest_version = 2", "spin_manifest_version = 1", "must be 2"),
            (
                "db_host = { default = \"localhost\" }",
                "db_host = { default = \"localhost\", required = true }",
                "mutually exclusive",
            ),
            (
                "db_host = { default = \"localhost\" }",
                "db_host = { secret = true }",
                "either a `default`",
            ),
            ("{{ db_host }}\", token", "{{ nope }}\", token", "\"nope\""),
            (
                "sqlite_databases = [\"default\"]",
                "sqlite_databases = [\"other\"]",
                "not defined",
            ),
            ("component = \"orders\"", "component = \"missing\"", "not defined"),
            ("component.orders", "component.Orders", "kebab-case"),
            (
                "route = \"/orders/...\"",
                "route = { private = false }",
                "private = false",
            ),
            (
                "source = \"orders.wasm\"",
                "source = { url = \"https://x/y.wasm\", digest = \"sha256:0\" }",
                "local file",
            ),
            ("environment = {", "files = [\"static/**\"]\nenvironment = {", "files"),
            (
                "\"postgres://{{ db_host }}:5432\"",
                "\"postgres://{{ db_host }}:5432\", \"nonsense\"",
                "allowed_outbound_hosts",
            ),
            (
                "db_host = { default = \"localhost\" }",
                "db_host = { default = \"a*b\" }",
                "invalid with the variables' defaults",
            ),
            (
                "\"postgres://{{ db_host }}:5432\"",
                "\"postgres://{{ nope }}\"",
                "\"nope\" which is not declared",
            ),
        ];
        for (from, to, needle) in cases {
            let text = BASE.replace(from, to);
            assert_ne!(text, BASE, "replacement {from:?} did not apply");
            let err = format!("{:#}", parse(&text).unwrap_err());
            assert!(err.contains(needle), "{to:?}: expected {needle:?} in {err}");
        }
    }

    #[test]
    fn allow_list_templates_are_checked_with_the_defaults() {
        let with = |hosts: &str, db_host: &str| {
            let text = BASE
                .replace("\"postgres://{{ db_host }}:5432\"", hosts)
                .replace("db_host = { default = \"localhost\" }", db_host);
            parse(&text).map_err(|e| format!("{e:#}"))
        };
        // A required variable has no default: the entry waits for startup.
        assert!(with("\"postgres://{{ token }}\"", "db_host = { default = \"localhost\" }").is_ok());
        // Rendered `https://` (an optional endpoint left empty) is dropped.
        assert!(with("\"https://{{ db_host }}\"", "db_host = { default = \"\" }").is_ok());
        // `postgres://` is not: Spin drops only `http://` and `https://`.
        let err = with("\"postgres://{{ db_host }}\"", "db_host = { default = \"\" }").unwrap_err();
        assert!(err.contains("host is empty"), "{err}");
        // Port ranges, as Spin has them.
        assert!(
            with(
                "\"postgres://{{ db_host }}:5000..5010\"",
                "db_host = { default = \"db\" }"
            )
            .is_ok()
        );
        // A literal empty entry is not dropped.
        assert!(with("\"\"", "db_host = { default = \"db\" }").is_err());
    }

    #[test]
    fn id_shapes() {
        assert!(is_kebab("orders-create"));
        assert!(is_kebab("a1-b2"));
        assert!(!is_kebab("orders--create"));
        assert!(!is_kebab("-orders"));
        assert!(!is_kebab("orders_create"));
        assert!(is_lower_snake("db_host"));
        assert!(!is_lower_snake("DB_HOST"));
        assert!(!is_lower_snake("1db"));
        assert!(!is_lower_snake("db__host"));
    }
}
