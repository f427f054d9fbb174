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
    let [pg, mut sqlite] = BACKENDS.map(|b| file_names(&root().join("crates").join(b).join("src")));
    // SQLite's only file of its own: the WAL checkpoints a server database makes itself.
    let own = sqlite.iter().position(|f| f == "checkpoint.rs");
    sqlite.remove(own.expect("ledger-sqlite checkpoints its WAL"));
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

/// The workspace's own crates and, for each, the workspace crates it depends on (normal
/// dependencies), as `cargo metadata` reports them.
fn dependency_graph() -> std::collections::BTreeMap<String, BTreeSet<String>> {
    let output = std::process::Command::new(env!("CARGO"))
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .current_dir(root())
        .output()
        .expect("cargo metadata runs");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let metadata: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let packages = metadata["packages"].as_array().unwrap();
    let ours: BTreeSet<String> = packages
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .filter(|n| n.starts_with("ledger-") && n != "ledger-tests")
        .collect();
    packages
        .iter()
        .filter(|p| ours.contains(p["name"].as_str().unwrap()))
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d["kind"].is_null())
                .map(|d| d["name"].as_str().unwrap().to_string())
                .filter(|d| ours.contains(d))
                .collect();
            (p["name"].as_str().unwrap().to_string(), deps)
        })
        .collect()
}

/// Every crate `name` depends on, directly or not.
fn reaches(
    graph: &std::collections::BTreeMap<String, BTreeSet<String>>,
    name: &str,
) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![name.to_string()];
    while let Some(n) = todo.pop() {
        for d in graph.get(&n).into_iter().flatten() {
            if seen.insert(d.clone()) {
                todo.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn the_diagram_in_architecture_md_is_the_dependency_graph() {
    let text = fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text
        .find("```text dependencies")
        .expect("ARCHITECTURE.md lists the dependencies in a ```text dependencies block");
    let block = &text[start..];
    let block = &block[block.find('\n').unwrap() + 1..];
    let block = &block[..block.find("```").unwrap()];
    let mut written = std::collections::BTreeMap::new();
    for line in block.lines().filter(|l| !l.trim().is_empty()) {
        let (name, deps) = line.split_once("->").unwrap_or((line, ""));
        let deps: BTreeSet<String> = deps
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty() && *d != "(nothing)")
            .map(str::to_string)
            .collect();
        written.insert(name.trim().to_string(), deps);
    }
    assert_eq!(
        written,
        dependency_graph(),
        "ARCHITECTURE.md's dependency list is stale"
    );
    // Every crate of the list is drawn in the diagram above it.
    let diagram = &text[..start];
    for name in written.keys() {
        assert!(
            diagram.contains(name.as_str()),
            "the diagram does not show {name}"
        );
    }
}

#[test]
fn backends_and_the_engine_know_no_domain_and_no_read_model() {
    let graph = dependency_graph();
    let domain = [
        "ledger-domain",
        "ledger-read-models",
        "ledger-commands",
        "ledger-api",
    ];
    for name in [
        "ledger-core",
        "ledger-projector",
        "ledger-postgres",
        "ledger-sqlite",
        "ledger-memory",
    ] {
        let reached = reaches(&graph, name);
        for d in domain {
            assert!(!reached.contains(d), "{name} depends on {d}");
        }
        // The core's docs use tenant streams as examples of stream names; its code knows none.
        if name == "ledger-core" {
            continue;
        }
        for (path, text) in sources(&root().join("crates").join(name)) {
            for needle in [
                "tenant",
                "phase",
                "onboarding_",
                "pending_sync",
                "include_str!(\"../../../projections",
            ] {
                assert!(
                    !text.to_lowercase().contains(needle),
                    "{} mentions {needle:?}",
                    path.display()
                );
            }
        }
    }
    // Only the read models and the crates above them know the domain.
    for (name, _) in crates() {
        let knows = reaches(&graph, &name).contains("ledger-domain");
        let may = [
            "ledger-domain",
            "ledger-read-models",
            "ledger-commands",
            "ledger-api",
            "ledger-cli",
        ];
        if knows {
            assert!(
                may.contains(&name.as_str()),
                "{name} must not know the domain"
            );
        }
    }
}

#[test]
fn read_model_columns_are_named_in_their_module_and_sql_only() {
    use ledger_projector::ReadModel;
    let catalog = ledger_read_models::catalog();
    // Names the domain and the core use for their own fields are their vocabulary, and so are
    // the fields of the API's views of the domain's state (`GET /v1/tenants/{id}`).
    let mut domain: String = ["crates/ledger-domain", "crates/ledger-core"]
        .into_iter()
        .flat_map(|dir| sources(&root().join(dir)))
        .map(|(_, t)| t)
        .collect();
    domain += &fs::read_to_string(root().join("crates/ledger-api/src/views.rs")).unwrap();
    // Code only: a comment may name what a read model counts.
    let mut files = Vec::new();
    for (_, dir) in crates() {
        for (path, text) in sources(&dir) {
            let code: String = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            files.push((path, code));
        }
    }
    for model in catalog.models() {
        let schema = ReadModel::schema(&**model);
        let module = root()
            .join("crates/ledger-read-models/src")
            .join(format!("{}.rs", schema.name));
        assert!(module.exists(), "{} has its own module", schema.name);
        for table in schema.tables {
            for column in table.columns {
                let word = column.name;
                if is_word_in(&domain, word) {
                    continue;
                }
                for (path, text) in &files {
                    // The read models' own tests and reference may check any column.
                    let tests = path.starts_with(root().join("crates/ledger-read-models/src"))
                        && path
                            .file_name()
                            .is_some_and(|f| f.to_string_lossy().contains("test"));
                    if *path == module || tests {
                        continue;
                    }
                    assert!(
                        !is_word_in(text, word),
                        "{} names the column {word} of {}",
                        path.display(),
                        table.name
                    );
                }
            }
        }
    }
}

/// Whether `word` occurs in `text` as a whole identifier.
fn is_word_in(text: &str, word: &str) -> bool {
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back().is_none_or(|c| !ident(c));
        let after = text[i + word.len()..]
            .chars()
            .next()
            .is_none_or(|c| !ident(c));
        before && after
    })
}
