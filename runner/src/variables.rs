//! Application variables as Spin resolves them: `--variable k=v` beats the
//! `SPIN_VARIABLE_<NAME>` environment beats the manifest `default`; component
//! variables are `{{ name }}` templates over application variables.
//!
//! Secret values are wrapped so that `Debug` never shows them.

use crate::manifest::Manifest;
use anyhow::{Result, anyhow, bail};
use std::collections::{BTreeMap, HashMap};
use std::fmt;

/// A string template: literal text with `{{ variable }}` references.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Lit(String),
    Var(String),
}

impl Template {
    /// Parses `s`; a malformed or non-`lower_snake` reference is an error.
    pub(crate) fn parse(s: &str) -> Result<Template> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(start) = rest.find("{{") {
            if start > 0 {
                parts.push(Part::Lit(rest[..start].to_string()));
            }
            let after = &rest[start + 2..];
            let end = after
                .find("}}")
                .ok_or_else(|| anyhow!("unterminated `{{{{` in {s:?}"))?;
            let name = after[..end].trim();
            if !crate::manifest::is_lower_snake(name) {
                bail!("invalid variable reference {{{{ {name} }}}} in {s:?}");
            }
            parts.push(Part::Var(name.to_string()));
            rest = &after[end + 2..];
        }
        if rest.contains("}}") {
            bail!("unmatched `}}}}` in {s:?}");
        }
        if !rest.is_empty() {
            parts.push(Part::Lit(rest.to_string()));
        }
        Ok(Template { parts })
    }

    /// The variable names referenced, in order.
    pub(crate) fn references(&self) -> impl Iterator<Item = &str> {
        self.parts.iter().filter_map(|p| match p {
            Part::Var(v) => Some(v.as_str()),
            Part::Lit(_) => None,
        })
    }

    /// Renders with resolved application variables; the result is secret if
    /// any referenced variable is.
    pub(crate) fn render(&self, vars: &ResolvedVariables) -> Result<Value> {
        let mut out = String::new();
        let mut secret = false;
        for p in &self.parts {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => {
                    let val = vars
                        .get(v)
                        .ok_or_else(|| anyhow!("application variable {v:?} is not declared"))?;
                    secret |= val.secret;
                    out.push_str(&val.value);
                }
            }
        }
        Ok(Value { value: out, secret })
    }

    /// Renders with `value_of`, or `None` when a reference has no value.
    pub(crate) fn render_with<'a>(&self, value_of: impl Fn(&str) -> Option<&'a str>) -> Option<String> {
        self.parts.iter().try_fold(String::new(), |mut out, p| {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v) => out.push_str(value_of(v)?),
            }
            Some(out)
        })
    }
}

/// A resolved value; `secret` values print as `<secret>`.
#[derive(Clone, PartialEq)]
pub(crate) struct Value {
    pub(crate) value: String,
    pub(crate) secret: bool,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("<secret>")
        } else {
            write!(f, "{:?}", self.value)
        }
    }
}

/// Where variable values come from, highest priority first.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sources {
    /// `--variable k=v` pairs, in command-line order (a later pair wins).
    pub(crate) cli: Vec<(String, String)>,
    /// The environment consulted for `SPIN_VARIABLE_<NAME>`.
    pub(crate) env: HashMap<String, String>,
}

/// Application variables after resolution.
#[derive(Debug, Clone, Default)]
pub(crate) struct ResolvedVariables {
    values: BTreeMap<String, Value>,
}

impl ResolvedVariables {
    /// The value of application variable `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name)
    }
}

/// Name of the environment variable Spin's env provider reads for `name`.
pub(crate) fn env_name(name: &str) -> String {
    format!("SPIN_VARIABLE_{}", name.to_ascii_uppercase())
}

/// Resolves every application variable, collecting all problems.
pub(crate) fn resolve(manifest: &Manifest, sources: &Sources) -> Result<ResolvedVariables, Vec<String>> {
    let mut problems = Vec::new();
    let mut cli: HashMap<&str, &str> = HashMap::new();
    for (k, v) in &sources.cli {
        if !manifest.variables.contains_key(k) {
            problems.push(format!(
                "--variable {k}: no application variable {k:?} is declared in [variables]"
            ));
        }
        cli.insert(k, v);
    }
    let mut values = BTreeMap::new();
    for (name, decl) in &manifest.variables {
        let value = cli
            .get(name.as_str())
            .map(|v| v.to_string())
            .or_else(|| sources.env.get(&env_name(name)).cloned())
            .or_else(|| decl.default.clone());
        match value {
            Some(value) => {
                values.insert(
                    name.clone(),
                    Value {
                        value,
                        secret: decl.secret,
                    },
                );
            }
            None => problems.push(format!(
                "required variable {name:?} has no value: pass --variable {name}=... or set {}",
                env_name(name)
            )),
        }
    }
    if problems.is_empty() {
        Ok(ResolvedVariables { values })
    } else {
        Err(problems)
    }
}

/// Parses a `--variable` argument: `k=v`, or `k=@file` to read the value
/// from a file as `spin up` does.
pub fn parse_cli_variable(arg: &str) -> Result<(String, String)> {
    let (k, v) = arg
        .split_once('=')
        .ok_or_else(|| anyhow!("--variable expects KEY=VALUE, got {arg:?}"))?;
    let v = match v.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).map_err(|e| anyhow!("--variable {k}=@{path}: {e}"))?,
        None => v.to_string(),
    };
    Ok((k.to_string(), v))
}

/// Component variables rendered for one component.
pub(crate) fn component_variables(
    manifest: &Manifest,
    component: &str,
    app_vars: &ResolvedVariables,
) -> Result<HashMap<String, Value>> {
    let decl = manifest
        .components
        .get(component)
        .ok_or_else(|| anyhow!("no component {component:?}"))?;
    decl.variables
        .iter()
        .map(|(k, t)| Ok((k.clone(), Template::parse(t)?.render(app_vars)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "app"
[variables]
log_level = { default = "info" }
db_host = { default = "localhost" }
api_token = { required = true, secret = true }
[[trigger.http]]
route = "/..."
component = "c"
[component.c]
source = "c.wasm"
variables = { url = "postgres://{{ db_host }}:5432/app", token = "Bearer {{api_token}}", level = "{{ log_level }}", plain = "x" }
"#;

    fn manifest() -> Manifest {
        Manifest::parse(MANIFEST, PathBuf::from(".")).unwrap()
    }

    fn sources(cli: &[(&str, &str)], env: &[(&str, &str)]) -> Sources {
        Sources {
            cli: cli.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            env: env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
        }
    }

    #[test]
    fn templates_parse() {
        let t = Template::parse("a{{ x }}b{{y_z}}").unwrap();
        assert_eq!(t.references().collect::<Vec<_>>(), ["x", "y_z"]);
        assert!(Template::parse("{{ x").is_err());
        assert!(Template::parse("{{ X }}").is_err());
        assert!(Template::parse("a }} b").is_err());
        assert!(Template::parse("no refs").unwrap().references().next().is_none());
    }

    #[test]
    fn precedence_cli_env_default() {
        let m = manifest();
        let r = resolve(&m, &sources(&[("api_token", "t")], &[])).unwrap();
        assert_eq!(r.get("db_host").unwrap().value, "localhost");
        let r = resolve(
            &m,
            &sources(&[("api_token", "t")], &[("SPIN_VARIABLE_DB_HOST", "env-host")]),
        )
        .unwrap();
        assert_eq!(r.get("db_host").unwrap().value, "env-host");
        let r = resolve(
            &m,
            &sources(
                &[("api_token", "t"), ("db_host", "cli-host")],
                &[("SPIN_VARIABLE_DB_HOST", "env-host")],
            ),
        )
        .unwrap();
        assert_eq!(r.get("db_host").unwrap().value, "cli-host");
        // The env provider satisfies required variables too.
        let r = resolve(&m, &sources(&[], &[("SPIN_VARIABLE_API_TOKEN", "e")])).unwrap();
        assert_eq!(r.get("api_token").unwrap().value, "e");
    }

    #[test]
    fn missing_required_and_undeclared_cli_are_reported() {
        let m = manifest();
        let problems = resolve(&m, &sources(&[("nope", "1")], &[])).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems
                .iter()
                .any(|p| p.contains("api_token") && p.contains("SPIN_VARIABLE_API_TOKEN"))
        );
        assert!(problems.iter().any(|p| p.contains("nope")));
    }

    #[test]
    fn component_templates_render_and_secrets_stay_hidden() {
        let m = manifest();
        let r = resolve(&m, &sources(&[("api_token", "s3cr3t")], &[])).unwrap();
        let vars = component_variables(&m, "c", &r).unwrap();
        assert_eq!(vars["url"].value, "postgres://localhost:5432/app");
        assert!(!vars["url"].secret);
        assert_eq!(vars["token"].value, "Bearer s3cr3t");
        assert!(vars["token"].secret);
        assert_eq!(vars["plain"].value, "x");
        let shown = format!("{vars:?} {r:?}");
        assert!(!shown.contains("s3cr3t"), "{shown}");
    }

    #[test]
    fn cli_variable_syntax() {
        assert_eq!(
            parse_cli_variable("a=b=c").unwrap(),
            ("a".to_string(), "b=c".to_string())
        );
        assert!(parse_cli_variable("novalue").is_err());
    }
}
