//! The checked-in table definitions (`projections/{postgres,sqlite}/<read model>.sql`) say
//! what the specs declare: the version, every table in order with its columns (names, types,
//! nullability), key and indexes.

use ledger_projector::{ColumnType, Schema, TableSpec};

use crate::catalog;

/// The definitions of a read model: PostgreSQL's, then SQLite's.
fn files(name: &str) -> (&'static str, &'static str) {
    match name {
        "tenant_phase" => (
            include_str!("../../../projections/postgres/tenant_phase.sql"),
            include_str!("../../../projections/sqlite/tenant_phase.sql"),
        ),
        "onboarding_locks" => (
            include_str!("../../../projections/postgres/onboarding_locks.sql"),
            include_str!("../../../projections/sqlite/onboarding_locks.sql"),
        ),
        "pending_syncs" => (
            include_str!("../../../projections/postgres/pending_syncs.sql"),
            include_str!("../../../projections/sqlite/pending_syncs.sql"),
        ),
        "onboarding_funnel" => (
            include_str!("../../../projections/postgres/onboarding_funnel.sql"),
            include_str!("../../../projections/sqlite/onboarding_funnel.sql"),
        ),
        other => panic!("no table definitions for {other}"),
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Dialect {
    Postgres,
    Sqlite,
}

/// What a definition says of one table.
#[derive(Debug, Default, PartialEq, Eq)]
struct Table {
    /// Name, type and whether it is `NOT NULL`, per column.
    columns: Vec<(String, String, bool)>,
    /// The key columns.
    key: Vec<String>,
    /// Text columns ordered by bytes (PostgreSQL's `COLLATE "C"`).
    collated: Vec<String>,
    /// Name, columns and partial-index column, per index.
    indexes: Vec<(String, Vec<String>, Option<String>)>,
}

/// The comma-separated items of `text` outside parentheses.
fn items(text: &str) -> Vec<String> {
    let mut out = vec![String::new()];
    let mut depth = 0;
    for c in text.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(String::new());
                continue;
            }
            _ => {}
        }
        out.last_mut().unwrap().push(c);
    }
    out.into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The names in `(a, b)`.
fn names(text: &str) -> Vec<String> {
    let inner = text.trim().trim_start_matches('(').trim_end_matches(')');
    inner.split(',').map(|s| s.trim().to_string()).collect()
}

/// Parses a definition's statements (comments dropped) into its tables, in order.
fn parse(sql: &str) -> Vec<Table> {
    let code: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut tables: Vec<Table> = Vec::new();
    for statement in code.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        if let Some(rest) = statement.strip_prefix("CREATE TABLE {table} (") {
            let body = &rest[..rest.rfind(')').expect("a closing parenthesis")];
            let mut table = Table::default();
            for item in items(body) {
                if let Some(pk) = item.strip_prefix("CONSTRAINT {table}_pkey PRIMARY KEY") {
                    table.key = names(pk);
                } else if let Some(pk) = item.strip_prefix("PRIMARY KEY") {
                    table.key = names(pk);
                } else {
                    let words: Vec<&str> = item.split_whitespace().collect();
                    let name = words[0].to_string();
                    if item.contains("PRIMARY KEY") {
                        table.key.push(name.clone());
                    }
                    if item.contains("COLLATE \"C\"") {
                        table.collated.push(name.clone());
                    }
                    table
                        .columns
                        .push((name, words[1].to_string(), item.contains("NOT NULL")));
                }
            }
            tables.push(table);
        } else if let Some(rest) = statement.strip_prefix("CREATE INDEX {table}_") {
            let (name, rest) = rest.split_once("_idx ON {table} ").expect("an index");
            let (columns, partial) = match rest.split_once(" WHERE ") {
                Some((columns, condition)) => {
                    let column = condition.strip_suffix(" IS NULL").expect("IS NULL");
                    (columns, Some(column.to_string()))
                }
                None => (rest, None),
            };
            let table = tables.last_mut().expect("an index after its table");
            table
                .indexes
                .push((name.to_string(), names(columns), partial));
        } else {
            panic!("an unexpected statement: {statement}");
        }
    }
    tables
}

/// What the definition of `spec` must say in `dialect`.
fn expected(spec: &TableSpec, dialect: Dialect) -> Table {
    let ty = |t: ColumnType| match (dialect, t) {
        (Dialect::Postgres, ColumnType::Text) => "text",
        (Dialect::Postgres, ColumnType::Int) => "bigint",
        (Dialect::Postgres, ColumnType::Time) => "timestamptz",
        (Dialect::Sqlite, ColumnType::Int) => "INTEGER",
        (Dialect::Sqlite, ColumnType::Text | ColumnType::Time) => "TEXT",
    };
    let key = spec.key_columns();
    Table {
        columns: spec
            .columns
            .iter()
            .map(|c| (c.name.to_string(), ty(c.ty).to_string(), !c.nullable))
            .collect(),
        key: key.iter().map(|c| c.name.to_string()).collect(),
        collated: match dialect {
            Dialect::Postgres => key
                .iter()
                .filter(|c| c.ty == ColumnType::Text)
                .map(|c| c.name.to_string())
                .collect(),
            Dialect::Sqlite => Vec::new(),
        },
        indexes: spec
            .indexes
            .iter()
            .map(|i| {
                (
                    i.name.to_string(),
                    i.columns.iter().map(|c| c.to_string()).collect(),
                    i.only_null.map(str::to_string),
                )
            })
            .collect(),
    }
}

/// The `N` of the `-- version: N` line.
fn version(sql: &str) -> Option<u32> {
    sql.lines()
        .find_map(|l| l.trim().strip_prefix("-- version:"))
        .and_then(|v| v.trim().parse().ok())
}

fn check(schema: &Schema, sql: &str, dialect: Dialect) {
    assert_eq!(
        version(sql),
        Some(schema.version),
        "{} {dialect:?}",
        schema.name
    );
    let tables = parse(sql);
    assert_eq!(
        tables.len(),
        schema.tables.len(),
        "{} {dialect:?}",
        schema.name
    );
    for (spec, table) in schema.tables.iter().zip(tables) {
        assert_eq!(table, expected(spec, dialect), "{} {dialect:?}", spec.name);
        let comment = format!("-- {}:", spec.name);
        assert!(sql.contains(&comment), "{} is described", spec.name);
    }
}

#[test]
fn the_definitions_say_what_the_specs_declare() {
    for model in catalog().models() {
        let schema = model.schema();
        let (postgres, sqlite) = files(schema.name);
        check(schema, postgres, Dialect::Postgres);
        check(schema, sqlite, Dialect::Sqlite);
    }
}

#[test]
fn the_parser_sees_what_it_must() {
    let sql = "-- t: x\n-- version: 2\nCREATE TABLE {table} (\n  a text COLLATE \"C\" NOT NULL,\n  \
               b bigint,\n  CONSTRAINT {table}_pkey PRIMARY KEY (a, b)\n);\n\
               CREATE INDEX {table}_by_b_idx ON {table} (b, a) WHERE b IS NULL;\n";
    assert_eq!(version(sql), Some(2));
    let tables = parse(sql);
    assert_eq!(
        tables,
        [Table {
            columns: vec![
                ("a".into(), "text".into(), true),
                ("b".into(), "bigint".into(), false)
            ],
            key: vec!["a".into(), "b".into()],
            collated: vec!["a".into()],
            indexes: vec![(
                "by_b".into(),
                vec!["b".into(), "a".into()],
                Some("b".into())
            )],
        }]
    );
}
