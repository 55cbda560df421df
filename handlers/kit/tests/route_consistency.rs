//! The places a route or component is named agree with each other: spin.toml
//! (its `[[trigger.http]]` routes and `[component.<id>]` tables), the
//! workspace members in Cargo.toml (`handlers/<id>`), the Makefile's
//! `COMPONENTS` (what `make components` builds), kit's contract
//! (`kit::contract::ALL` and `DOCS`), and the schema files `kit::schemas`
//! embeds. A route added to only some of them fails here, each missing piece
//! named with where it goes, rather than later as a 404, a component `make`
//! never builds, or an OpenAPI document without the route.
//!
//! spin.toml and Cargo.toml are read with the TOML parser; the Makefile only
//! for its `COMPONENTS :=` line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// The repository root, where spin.toml lives.
fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("read {relative}: {e}"))
}

fn parse_toml(relative: &str) -> toml::Table {
    read(relative)
        .parse()
        .unwrap_or_else(|e| panic!("{relative} is not valid TOML: {e}"))
}

/// Fails with every problem found, one a line.
#[track_caller]
fn assert_none(problems: Vec<String>, what: &str) {
    assert!(problems.is_empty(), "{what}:\n  - {}\n", problems.join("\n  - "));
}

/// spin.toml, as far as these checks read it.
struct Manifest {
    /// The `[[trigger.http]]` entries, (route, component), in file order.
    triggers: Vec<(String, String)>,
    /// The `[component.<id>]` tables: id -> `source`.
    sources: BTreeMap<String, String>,
    /// id -> `[component.<id>.build] command`, where there is one.
    build_commands: BTreeMap<String, String>,
}

fn manifest() -> Manifest {
    let spin = parse_toml("spin.toml");
    assert_eq!(
        spin.get("spin_manifest_version").and_then(|v| v.as_integer()),
        Some(2),
        "spin.toml: these checks read a Spin manifest of version 2"
    );
    let triggers = spin
        .get("trigger")
        .and_then(|t| t.get("http"))
        .and_then(|h| h.as_array())
        .expect("spin.toml has [[trigger.http]] entries")
        .iter()
        .enumerate()
        .map(|(i, trigger)| {
            let field = |name: &str| {
                trigger
                    .get(name)
                    .and_then(|v| v.as_str())
                    .unwrap_or_else(|| {
                        panic!(
                            "spin.toml: [[trigger.http]] number {} has no string `{name}` (components are \
                             named, as [component.<id>] tables, not written inline)",
                            i + 1
                        )
                    })
                    .to_string()
            };
            (field("route"), field("component"))
        })
        .collect();
    let mut sources = BTreeMap::new();
    let mut build_commands = BTreeMap::new();
    let components = spin
        .get("component")
        .and_then(|c| c.as_table())
        .expect("spin.toml has [component.<id>] tables");
    for (id, component) in components {
        let source = component.get("source").and_then(|s| s.as_str()).unwrap_or_else(|| {
            panic!("spin.toml: [component.{id}] has no `source` path (a local .wasm file of the workspace)")
        });
        sources.insert(id.clone(), source.to_string());
        if let Some(command) = component
            .get("build")
            .and_then(|b| b.get("command"))
            .and_then(|c| c.as_str())
        {
            build_commands.insert(id.clone(), command.to_string());
        }
    }
    Manifest {
        triggers,
        sources,
        build_commands,
    }
}

/// `[workspace] members` of the root Cargo.toml.
fn workspace_members() -> BTreeSet<String> {
    parse_toml("Cargo.toml")
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .expect("Cargo.toml has [workspace] members")
        .iter()
        .map(|m| {
            m.as_str()
                .expect("Cargo.toml: workspace members are strings")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// The directories under handlers/ that hold a crate, except kit (the
/// shared library): each should be one component.
fn handler_crates() -> BTreeSet<String> {
    std::fs::read_dir(root().join("handlers"))
        .expect("read handlers/")
        .map(|entry| entry.expect("read handlers/").path())
        .filter(|dir| dir.join("Cargo.toml").is_file())
        .map(|dir| dir.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "kit")
        .collect()
}

/// The Makefile's `COMPONENTS := ...`: the packages `make components`
/// builds (`-p` each), whose `.wasm` spin.toml serves.
fn makefile_components() -> Vec<String> {
    let makefile = read("Makefile").replace("\\\n", " ");
    let lines: Vec<&str> = makefile
        .lines()
        .filter(|line| {
            line.split_once(":=")
                .is_some_and(|(name, _)| name.trim() == "COMPONENTS")
        })
        .collect();
    assert_eq!(
        lines.len(),
        1,
        "Makefile: expected one `COMPONENTS := ...` line, found {lines:?}"
    );
    let value = lines[0].split_once(":=").unwrap().1;
    value
        .split('#')
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// handlers/<id>/Cargo.toml.
fn crate_manifest(id: &str) -> Option<toml::Table> {
    let path = format!("handlers/{id}/Cargo.toml");
    root().join(&path).is_file().then(|| parse_toml(&path))
}

/// (1) Every component of spin.toml is a crate `handlers/<id>`, a member of
/// the workspace and in the Makefile's COMPONENTS, and the other way round;
/// within spin.toml, every trigger names a declared component and every
/// component has a trigger.
#[test]
fn spin_components_are_the_workspace_handlers_and_the_makefile_components() {
    let manifest = manifest();
    let spin: BTreeSet<&str> = manifest.sources.keys().map(String::as_str).collect();
    let members = workspace_members();
    let crates = handler_crates();
    let listed = makefile_components();
    let make: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    let mut problems = Vec::new();

    for id in &spin {
        if !crates.contains(*id) {
            problems.push(format!(
                "spin.toml has [component.{id}], but there is no crate handlers/{id}/: create it (its \
                 Cargo.toml and src/lib.rs), or remove the component from spin.toml"
            ));
        }
        if !members.contains(&format!("handlers/{id}")) {
            problems.push(format!(
                "spin.toml has [component.{id}], but \"handlers/{id}\" is not a workspace member: add it to \
                 [workspace] members in Cargo.toml"
            ));
        }
        if !make.contains(id) {
            problems.push(format!(
                "spin.toml has [component.{id}], but the Makefile's COMPONENTS does not list it (`make \
                 components` would never build it): add {id} to the `COMPONENTS :=` line of the Makefile"
            ));
        }
    }
    for id in &crates {
        if !spin.contains(id.as_str()) {
            problems.push(format!(
                "handlers/{id}/ is a crate, but spin.toml has no [component.{id}]: add one (source, \
                 variables, build), with a [[trigger.http]] for each of its routes"
            ));
        }
        if !members.contains(&format!("handlers/{id}")) {
            problems.push(format!(
                "handlers/{id}/ is a crate, but not a workspace member: add \"handlers/{id}\" to [workspace] \
                 members in Cargo.toml"
            ));
        }
        if !make.contains(id.as_str()) {
            problems.push(format!(
                "handlers/{id}/ is a crate, but the Makefile's COMPONENTS does not list it: add {id} to the \
                 `COMPONENTS :=` line of the Makefile"
            ));
        }
    }
    for id in &make {
        if !spin.contains(id) {
            problems.push(format!(
                "the Makefile's COMPONENTS lists {id}, but spin.toml has no [component.{id}]: add it there \
                 (and a [[trigger.http]] for its route), or remove {id} from the `COMPONENTS :=` line"
            ));
        }
    }
    if make.len() != listed.len() {
        problems.push(format!("the Makefile's COMPONENTS lists a component twice: {listed:?}"));
    }
    for (route, component) in &manifest.triggers {
        if !spin.contains(component.as_str()) {
            problems.push(format!(
                "spin.toml: the [[trigger.http]] of {route} names component {component:?}, which has no \
                 [component.{component}] table: add one to spin.toml"
            ));
        }
    }
    for id in &spin {
        if !manifest.triggers.iter().any(|(_, component)| component == id) {
            problems.push(format!(
                "spin.toml: [component.{id}] serves no route: add a [[trigger.http]] with route = \"...\" and \
                 component = \"{id}\" (and the route's Route in kit::contract::ALL)"
            ));
        }
    }
    assert_none(
        problems,
        "spin.toml, the workspace (Cargo.toml, handlers/) and the Makefile's COMPONENTS disagree",
    );
}

/// (2) Each component's `source` is the `.wasm` that `make components`
/// (`cargo build --profile component --target wasm32-wasip2 -p <id>`) makes
/// of its crate: target/wasm32-wasip2/component/<lib name>.wasm, the lib
/// name being the package name with `-` as `_`. The package name is the
/// component id, since the Makefile's COMPONENTS serves as both (`-p`), and
/// the component's `spin build` command builds that package.
#[test]
fn each_component_source_is_its_crates_wasm() {
    let manifest = manifest();
    let mut problems = Vec::new();
    for (id, source) in &manifest.sources {
        // A component without a crate is (1)'s failure.
        let Some(cargo) = crate_manifest(id) else { continue };
        let package = cargo
            .get("package")
            .and_then(|p| p.get("name"))
            .and_then(|n| n.as_str())
            .unwrap_or_else(|| panic!("handlers/{id}/Cargo.toml has no [package] name"));
        let lib = cargo
            .get("lib")
            .and_then(|l| l.get("name"))
            .and_then(|n| n.as_str())
            .map_or_else(|| package.replace('-', "_"), String::from);
        let expected = format!("target/wasm32-wasip2/component/{lib}.wasm");
        if *source != expected {
            problems.push(format!(
                "spin.toml: [component.{id}] source = {source:?}, but its crate handlers/{id} (package \
                 {package:?}) builds to {expected:?}: set source = {expected:?}"
            ));
        }
        if package != id {
            problems.push(format!(
                "handlers/{id}/Cargo.toml names its package {package:?}, not {id:?}: the Makefile's \
                 COMPONENTS passes component ids to `cargo build -p`, so name the package {id:?}"
            ));
        }
        if let Some(command) = manifest.build_commands.get(id) {
            let words: Vec<&str> = command.split_whitespace().collect();
            let builds_it = words
                .windows(2)
                .any(|w| matches!(w[0], "-p" | "--package") && w[1] == package);
            if !builds_it {
                problems.push(format!(
                    "spin.toml: [component.{id}.build] command = {command:?} does not build package \
                     {package:?}: use `cargo build --profile component --target wasm32-wasip2 -p {package}`"
                ));
            }
        }
    }
    assert_none(problems, "spin.toml's component sources do not match their crates");
}

/// (3) The (route, component) pairs of spin.toml's triggers are those of
/// kit's contract: every route of `contract::ALL`, and `contract::DOCS` (the
/// reference page, outside the OpenAPI document). A component may serve
/// several routes, each a trigger of its own (images-resize: /images/resize
/// and /images/resize/raw).
#[test]
fn spin_toml_routes_are_the_contracts_routes() {
    let manifest = manifest();
    let docs = &kit::contract::DOCS;
    let contract: Vec<(&str, &str)> = kit::contract::ALL
        .iter()
        .map(|route| (route.path, route.component))
        .chain([(docs.path, docs.component)])
        .collect();
    let mut problems = Vec::new();

    let mut spin_by_route: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (route, component) in &manifest.triggers {
        spin_by_route.entry(route).or_default().push(component);
    }
    let mut contract_by_route: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (path, component) in &contract {
        contract_by_route.entry(path).or_default().insert(component);
    }
    for (route, components) in &spin_by_route {
        if components.len() > 1 {
            problems.push(format!(
                "spin.toml has {} [[trigger.http]] entries for route {route:?} ({components:?}): keep one",
                components.len()
            ));
        }
    }
    for (path, components) in &contract_by_route {
        if components.len() > 1 {
            problems.push(format!(
                "kit::contract gives {path:?} to several components ({components:?}): one Route per path, in \
                 handlers/kit/src/contract.rs"
            ));
        }
    }

    let spin: BTreeSet<(&str, &str)> = manifest
        .triggers
        .iter()
        .map(|(route, component)| (route.as_str(), component.as_str()))
        .collect();
    let contract: BTreeSet<(&str, &str)> = contract.into_iter().collect();
    for (route, component) in spin.difference(&contract) {
        let elsewhere = match contract_by_route.get(route) {
            Some(others) => format!(" (kit::contract gives {route:?} to {others:?})"),
            None => String::new(),
        };
        problems.push(format!(
            "spin.toml routes {route:?} to {component:?}, but kit::contract has no Route with path = {route:?} \
             and component = {component:?}{elsewhere}: declare it in handlers/kit/src/contract.rs and list it \
             in contract::ALL, or remove that [[trigger.http]] from spin.toml"
        ));
    }
    for (path, component) in contract.difference(&spin) {
        let elsewhere = match spin_by_route.get(path) {
            Some(others) => format!(" (spin.toml routes {path:?} to {others:?})"),
            None => String::new(),
        };
        problems.push(format!(
            "kit::contract declares {path:?} served by {component:?}, but spin.toml has no [[trigger.http]] \
             with route = {path:?} and component = {component:?}{elsewhere}: add one to spin.toml"
        ));
    }
    assert_none(problems, "spin.toml's routes and kit::contract's routes disagree");
}

/// (4) The files schemas/*.json are the schemas kit embeds
/// (`kit::schemas::ALL`, which the OpenAPI document and the validators are
/// made from), each under its own name.
#[test]
fn schema_files_are_the_embedded_schemas() {
    let files: BTreeSet<String> = std::fs::read_dir(root().join("schemas"))
        .expect("read schemas/")
        .map(|entry| entry.expect("read schemas/").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .collect();
    let embedded: BTreeSet<&str> = kit::schemas::ALL.iter().map(|(name, _)| *name).collect();
    let mut problems = Vec::new();
    for file in &files {
        if !embedded.contains(file.as_str()) {
            problems.push(format!(
                "schemas/{file} is not embedded: add a const with include_str!(\"../../../schemas/{file}\") \
                 and its (\"{file}\", text) entry to kit::schemas::ALL in handlers/kit/src/schemas.rs"
            ));
        }
    }
    for (name, text) in kit::schemas::ALL {
        if !files.contains(*name) {
            problems.push(format!(
                "kit::schemas::ALL names {name:?}, but there is no schemas/{name}: add the file, or remove the \
                 entry from handlers/kit/src/schemas.rs"
            ));
        } else if *text != read(&format!("schemas/{name}")) {
            problems.push(format!(
                "kit::schemas::ALL pairs {name:?} with another text than schemas/{name}: give it the const \
                 that includes that file (handlers/kit/src/schemas.rs)"
            ));
        }
    }
    if embedded.len() != kit::schemas::ALL.len() {
        problems.push("kit::schemas::ALL lists a schema twice (handlers/kit/src/schemas.rs)".to_string());
    }
    assert_none(problems, "schemas/ and kit::schemas::ALL disagree");
}
