//! Architecture invariants from ARCHITECTURE.md, checked against the source tree.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Every crate directory under `crates/`, by name.
fn crates() -> Vec<(String, PathBuf)> {
    let mut all: Vec<_> = fs::read_dir(root().join("crates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("Cargo.toml").exists())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), p))
        .collect();
    all.sort();
    assert!(all.len() >= 5, "expected the ledger crates under crates/");
    all
}

/// Names of a crate's normal (non-dev) dependencies.
fn dependencies(dir: &Path) -> BTreeSet<String> {
    let manifest = fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    let mut deps = BTreeSet::new();
    let mut in_deps = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_deps = line == "[dependencies]";
        } else if in_deps && let Some((name, _)) = line.split_once('=') {
            deps.insert(name.trim().split('.').next().unwrap().to_string());
        }
    }
    deps
}

/// Every `.rs` file under `dir/src`, with its text.
fn sources(dir: &Path) -> Vec<(PathBuf, String)> {
    fn walk(dir: &Path, out: &mut Vec<(PathBuf, String)>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push((path.clone(), fs::read_to_string(&path).unwrap()));
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("src"), &mut out);
    out
}

/// File names of a directory, sorted.
fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

const BACKENDS: [&str; 2] = ["ledger-postgres", "ledger-sqlite"];

#[test]
fn only_backend_crates_know_sqlx_or_hold_sql() {
    for (name, dir) in crates() {
        if BACKENDS.contains(&name.as_str()) {
            assert!(
                dependencies(&dir).contains("sqlx"),
                "{name} should use sqlx"
            );
            continue;
        }
        assert!(
            !dependencies(&dir).contains("sqlx"),
            "{name} must not depend on sqlx"
        );
        for (path, text) in sources(&dir) {
            let code = text.lines().filter(|l| !l.trim_start().starts_with("//"));
            for line in code {
                for needle in [
                    "use sqlx",
                    "sqlx::query(",
                    "sqlx::Error",
                    "INSERT INTO ",
                    "DELETE FROM ",
                ] {
                    assert!(!line.contains(needle), "{}: {line}", path.display());
                }
            }
        }
    }
}

#[test]
fn only_the_cli_uses_anyhow() {
    for (name, dir) in crates() {
        if name != "ledger-cli" {
            assert!(
                !dependencies(&dir).contains("anyhow"),
                "{name} must not use anyhow"
            );
        }
    }
}

#[test]
fn core_and_domain_do_no_io() {
    let io = ["sqlx", "tokio", "axum", "reqwest"];
    for name in ["ledger-core", "ledger-domain"] {
        let dir = root().join("crates").join(name);
        let deps = dependencies(&dir);
        for dep in io {
            assert!(!deps.contains(dep), "{name} must not depend on {dep}");
        }
        for (path, text) in sources(&dir) {
            for needle in ["std::fs", "std::net", "std::process", "tokio::"] {
                assert!(!text.contains(needle), "{} uses {needle}", path.display());
            }
        }
    }
    let domain = root().join("crates/ledger-domain");
    for (path, text) in sources(&domain) {
        assert!(!text.contains("async "), "{} is async", path.display());
        assert!(
            !text.contains("Utc::now"),
            "{} reads the clock",
            path.display()
        );
    }
}

#[test]
fn backends_mirror_each_other_file_for_file() {
    let [pg, sqlite] = BACKENDS.map(|b| file_names(&root().join("crates").join(b).join("src")));
    assert_eq!(
        pg, sqlite,
        "ledger-postgres and ledger-sqlite must have the same src files"
    );
}

#[test]
fn migrations_have_the_same_numbers_and_names() {
    let pg = file_names(&root().join("migrations/postgres"));
    let sqlite = file_names(&root().join("migrations/sqlite"));
    assert!(!pg.is_empty());
    assert_eq!(pg, sqlite);
}
