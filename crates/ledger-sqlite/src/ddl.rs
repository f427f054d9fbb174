//! The SQLite tables of a read model, generated from its table specs.
//!
//! The text is deterministic, in the style of `projections/sqlite/*.sql` (a test compares the
//! two): `STRICT, WITHOUT ROWID` tables, names and types aligned in columns, `NOT NULL` unless
//! the column is nullable, the primary key inline when it is one column, and one
//! `CREATE INDEX <table>_<name>_idx` line per index. Times are `TEXT`: fixed-width RFC 3339 UTC
//! with six fractional digits ([`ledger_projector::time_text`]), so text order is time order.
//! Identifiers come only from specs that passed `TableSpec::validate`.

use std::fmt::Write;

use ledger_projector::{ColumnType, TableSpec};

/// The SQL type of a column type.
pub(crate) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text | ColumnType::Time => "TEXT",
        ColumnType::Int => "INTEGER",
    }
}

/// `CREATE TABLE <table> (...) STRICT, WITHOUT ROWID;` for `spec`, ending with a newline.
pub fn create_table(spec: &TableSpec, table: &str) -> String {
    let name_width = spec.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let type_width = spec
        .columns
        .iter()
        .map(|c| sql_type(c.ty).len())
        .max()
        .unwrap_or(0);
    let inline_key = spec.key == 1;
    let mut lines: Vec<String> = spec
        .columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let mut constraints = String::new();
            if !c.nullable {
                constraints += "NOT NULL";
            }
            if inline_key && i == 0 {
                constraints += " PRIMARY KEY";
            }
            let ty = sql_type(c.ty);
            if constraints.is_empty() {
                format!("    {:<name_width$} {ty}", c.name)
            } else {
                format!(
                    "    {:<name_width$} {ty:<type_width$} {}",
                    c.name,
                    constraints.trim_start()
                )
            }
        })
        .collect();
    if !inline_key {
        let key: Vec<&str> = spec.key_columns().iter().map(|c| c.name).collect();
        lines.push(format!("    PRIMARY KEY ({})", key.join(", ")));
    }
    format!(
        "CREATE TABLE {table} (\n{}\n) STRICT, WITHOUT ROWID;\n",
        lines.join(",\n")
    )
}

/// One `CREATE INDEX <table>_<name>_idx ON <table> (...) [WHERE <column> IS NULL];` line per
/// index of `spec` (nothing when it has none).
pub fn create_indexes(spec: &TableSpec, table: &str) -> String {
    let mut sql = String::new();
    for index in spec.indexes {
        let _ = write!(
            sql,
            "CREATE INDEX {} ON {table} ({})",
            index.name_on(table),
            index.columns.join(", ")
        );
        if let Some(column) = index.only_null {
            let _ = write!(sql, " WHERE {column} IS NULL");
        }
        sql += ";\n";
    }
    sql
}

/// `DROP TABLE IF EXISTS <table>;` (its indexes go with it).
pub(crate) fn drop_table(table: &str) -> String {
    format!("DROP TABLE IF EXISTS {table};\n")
}

#[cfg(test)]
mod tests {
    use ledger_projector::{Column, Index};

    use super::*;

    static LEASES: TableSpec = TableSpec {
        name: "leases",
        columns: &[
            Column::text("account_id"),
            Column::text("holder"),
            Column::time("acquired_at"),
            Column::time("expires_at"),
            Column::time("released_at").nullable(),
            Column::text("release_reason").nullable(),
        ],
        key: 1,
        indexes: &[Index {
            name: "unreleased",
            columns: &["account_id"],
            only_null: Some("released_at"),
        }],
    };

    static DELIVERIES: TableSpec = TableSpec {
        name: "deliveries",
        columns: &[
            Column::text("account_id"),
            Column::text("target"),
            Column::text("status"),
            Column::int("attempts"),
            Column::int("retry_count"),
            Column::text("last_error").nullable(),
            Column::time("first_failed_at").nullable(),
            Column::time("updated_at"),
        ],
        key: 2,
        indexes: &[Index {
            name: "status",
            columns: &["status", "account_id", "target"],
            only_null: None,
        }],
    };

    #[test]
    fn tables_are_written_in_the_style_of_the_projection_files() {
        assert_eq!(
            create_table(&LEASES, "{table}"),
            "CREATE TABLE {table} (\n\
             \x20   account_id     TEXT NOT NULL PRIMARY KEY,\n\
             \x20   holder         TEXT NOT NULL,\n\
             \x20   acquired_at    TEXT NOT NULL,\n\
             \x20   expires_at     TEXT NOT NULL,\n\
             \x20   released_at    TEXT,\n\
             \x20   release_reason TEXT\n\
             ) STRICT, WITHOUT ROWID;\n"
        );
        assert_eq!(
            create_indexes(&LEASES, "{table}"),
            "CREATE INDEX {table}_unreleased_idx ON {table} (account_id) \
             WHERE released_at IS NULL;\n"
        );
        assert_eq!(
            create_table(&DELIVERIES, "deliveries_rebuild"),
            "CREATE TABLE deliveries_rebuild (\n\
             \x20   account_id      TEXT    NOT NULL,\n\
             \x20   target          TEXT    NOT NULL,\n\
             \x20   status          TEXT    NOT NULL,\n\
             \x20   attempts        INTEGER NOT NULL,\n\
             \x20   retry_count     INTEGER NOT NULL,\n\
             \x20   last_error      TEXT,\n\
             \x20   first_failed_at TEXT,\n\
             \x20   updated_at      TEXT    NOT NULL,\n\
             \x20   PRIMARY KEY (account_id, target)\n\
             ) STRICT, WITHOUT ROWID;\n"
        );
        assert_eq!(
            create_indexes(&DELIVERIES, "deliveries"),
            "CREATE INDEX deliveries_status_idx ON deliveries \
             (status, account_id, target);\n"
        );
        let bare = TableSpec {
            indexes: &[],
            ..DELIVERIES
        };
        assert_eq!(create_indexes(&bare, "x"), "");
    }
}
