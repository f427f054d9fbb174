//! The `.sql` files under `projections/` document, per read model and backend, the tables the
//! backend creates from the read model's spec: their statements must be exactly what the
//! backend's DDL generator writes (with `{table}` for the table's name), and their
//! `-- version: N` line the read model's version.

use std::fs;
use std::path::Path;

use ledger_projector::{ReadModel, TableSpec};

/// The statements of a `.sql` file: every line that is not a comment or blank.
fn statements(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
        .map(|l| l.trim_end().to_string())
        .collect()
}

/// The `N` of the file's `-- version: N` line.
fn version(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("-- version:"))
        .and_then(|v| v.trim().parse().ok())
}

fn check(backend: &str, ddl: fn(&TableSpec) -> String) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("projections")
        .join(backend);
    let catalog = ledger_read_models::catalog();
    let mut files: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut names: Vec<String> = catalog.names().iter().map(|n| format!("{n}.sql")).collect();
    names.sort();
    assert_eq!(files, names, "one file per read model in {}", dir.display());
    for model in catalog.models() {
        let schema = ReadModel::schema(&**model);
        let path = dir.join(format!("{}.sql", schema.name));
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(version(&text), Some(schema.version), "{}", path.display());
        let generated: String = schema.tables.iter().map(ddl).collect();
        assert_eq!(
            statements(&text),
            statements(&generated),
            "{} is not what the backend creates; its statements should be:\n{generated}",
            path.display()
        );
    }
}

#[test]
fn postgres_files_are_the_generated_ddl() {
    check("postgres", |spec| {
        let table = "{table}";
        ledger_postgres::ddl::create_table(spec, table)
            + &ledger_postgres::ddl::create_indexes(spec, table)
    });
}

#[test]
fn sqlite_files_are_the_generated_ddl() {
    check("sqlite", |spec| {
        let table = "{table}";
        ledger_sqlite::ddl::create_table(spec, table)
            + &ledger_sqlite::ddl::create_indexes(spec, table)
    });
}
