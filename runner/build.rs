//! Keeps `runner/wit/` identical to the WIT shipped in the `spin-sdk`
//! package the guests build against, so host and guests cannot drift.
//!
//! `bindgen!` needs a path inside this crate, so the WIT is vendored in
//! `runner/wit/`; this script finds the `spin-sdk` version in the workspace
//! `Cargo.lock`, locates that package in Cargo's registry source cache and
//! fails the build if any file differs (or is missing on either side). When
//! the registry copy is not on disk (e.g. vendored sources) it only warns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn main() {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let lock = manifest_dir.join("../Cargo.lock");
    let ours = manifest_dir.join("wit");
    println!("cargo:rerun-if-changed={}", lock.display());
    println!("cargo:rerun-if-changed={}", ours.display());

    let Some(version) = spin_sdk_version(&lock) else {
        println!("cargo:warning=spin-sdk not found in Cargo.lock; WIT drift check skipped");
        return;
    };
    let Some(theirs) = registry_wit(&version) else {
        println!("cargo:warning=spin-sdk {version} sources not in the cargo registry cache; WIT drift check skipped");
        return;
    };
    println!("cargo:rerun-if-changed={}", theirs.display());
    let a = files(&ours);
    let b = files(&theirs);
    let mut diffs = Vec::new();
    for (rel, content) in &b {
        match a.get(rel) {
            None => diffs.push(format!("missing in runner/wit: {rel}")),
            Some(c) if c != content => diffs.push(format!("differs: {rel}")),
            _ => {}
        }
    }
    for rel in a.keys() {
        if !b.contains_key(rel) {
            diffs.push(format!("not in spin-sdk {version}: {rel}"));
        }
    }
    if !diffs.is_empty() {
        panic!(
            "runner/wit differs from spin-sdk {version}'s wit ({}):\n  {}\nrefresh it with:\n  rm -rf runner/wit && cp -r {} runner/wit",
            theirs.display(),
            diffs.join("\n  "),
            theirs.display()
        );
    }
}

fn spin_sdk_version(lock: &Path) -> Option<String> {
    let text = std::fs::read_to_string(lock).ok()?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"spin-sdk\"" {
            let v = lines.next()?.trim();
            return v
                .strip_prefix("version = \"")
                .and_then(|v| v.strip_suffix('"'))
                .map(String::from);
        }
    }
    None
}

fn registry_wit(version: &str) -> Option<PathBuf> {
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))?;
    let src = home.join("registry/src");
    std::fs::read_dir(src).ok()?.flatten().find_map(|index| {
        let wit = index.path().join(format!("spin-sdk-{version}/wit"));
        wit.is_dir().then_some(wit)
    })
}

fn files(root: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if let Ok(bytes) = std::fs::read(&p) {
                let rel = p.strip_prefix(root).unwrap().to_string_lossy().replace('\\', "/");
                out.insert(rel, bytes);
            }
        }
    }
    out
}
