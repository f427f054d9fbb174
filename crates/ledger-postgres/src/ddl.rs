//! The DDL of a read model's tables, generated from its specs: `CREATE TABLE`, its indexes,
//! and the statements that drop, index and swap copies.
//!
//! The store builds SQL only from specs it checked first: lowercase identifiers, short enough
//! that no derived name (`<table>_rebuild_<index>_idx`) exceeds PostgreSQL's 63 bytes.
//! Values never appear in DDL.

use std::fmt::Write;

use ledger_core::StoreError;
use ledger_projector::{ColumnType, Schema, Slot, TableSpec, check};

/// The longest identifier PostgreSQL keeps without truncating it.
const MAX_IDENTIFIER: usize = 63;

/// The SQL type of a column type: texts compare by bytes (`COLLATE "C"`), as the read
/// models' keys order.
pub(crate) fn sql_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text COLLATE \"C\"",
        ColumnType::Int => "bigint",
        ColumnType::Time => "timestamptz",
    }
}

/// The SQL type of an array of values of a column type (for binds).
pub(crate) fn array_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text[]",
        ColumnType::Int => "bigint[]",
        ColumnType::Time => "timestamptz[]",
    }
}

/// The SQL type of one value of a column type (for binds).
pub(crate) fn scalar_type(ty: ColumnType) -> &'static str {
    match ty {
        ColumnType::Text => "text",
        ColumnType::Int => "bigint",
        ColumnType::Time => "timestamptz",
    }
}

/// Checks that `schema` is well formed and that every name derived from it fits a
/// PostgreSQL identifier; the only gate between a spec and the SQL built from it.
pub(crate) fn check(schema: &Schema) -> Result<(), StoreError> {
    check::schema_usable(schema)?;
    for spec in schema.tables {
        check_names(spec)?;
    }
    Ok(())
}

/// Checks one table's spec (see [`check`]).
pub(crate) fn check_table(spec: &TableSpec) -> Result<(), StoreError> {
    check::table_usable(spec)?;
    check_names(spec)
}

/// Checks that the names derived from a valid spec fit an identifier.
fn check_names(spec: &TableSpec) -> Result<(), StoreError> {
    let shadow = spec.table(Slot::Rebuild);
    let longest = spec
        .indexes
        .iter()
        .map(|i| i.name_on(&shadow))
        .chain([format!("{shadow}_pkey")])
        .chain(spec.columns.iter().map(|c| c.name.to_string()))
        .find(|name| name.len() > MAX_IDENTIFIER);
    match longest {
        Some(name) => Err(StoreError::backend(format!(
            "table {}: the name {name} is longer than PostgreSQL's {MAX_IDENTIFIER} bytes",
            spec.name
        ))),
        None => Ok(()),
    }
}

/// `CREATE TABLE` for `spec` under the name `table`: one line per column (aligned), texts
/// `text COLLATE "C"`, integers `bigint`, times `timestamptz`, `NOT NULL` unless nullable,
/// and the primary key `<table>_pkey` over the key columns.
pub fn create_table(spec: &TableSpec, table: &str) -> String {
    let width = spec.columns.iter().map(|c| c.name.len()).max().unwrap_or(0);
    let mut sql = format!("CREATE TABLE {table} (\n");
    for c in spec.columns {
        let null = if c.nullable { "" } else { " NOT NULL" };
        let _ = writeln!(
            sql,
            "    {:width$} {}{null},",
            c.name,
            sql_type(c.ty),
            width = width
        );
    }
    let key: Vec<&str> = spec.key_columns().iter().map(|c| c.name).collect();
    let _ = writeln!(
        sql,
        "    CONSTRAINT {table}_pkey PRIMARY KEY ({})\n);",
        key.join(", ")
    );
    sql
}

/// The secondary indexes of `spec` on the table `table`, one statement a line:
/// `CREATE INDEX <table>_<name>_idx ON <table> (<columns>) [WHERE <column> IS NULL];`
/// (empty when it has none).
pub fn create_indexes(spec: &TableSpec, table: &str) -> String {
    indexes(spec, table, "CREATE INDEX")
}

/// The index statements of `spec` on `table`, each starting with `create`.
fn indexes(spec: &TableSpec, table: &str, create: &str) -> String {
    let mut sql = String::new();
    for index in spec.indexes {
        let _ = write!(
            sql,
            "{create} {} ON {table} ({})",
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

/// The index statements of `spec` on `table`, skipping indexes that exist.
pub(crate) fn create_missing_indexes(spec: &TableSpec, table: &str) -> String {
    indexes(spec, table, "CREATE INDEX IF NOT EXISTS")
}

/// (Re)creates `slot`'s copy of every table of `schema`, empty: dropped if it exists, created
/// with its indexes when the copy is live (a rebuild copy gets them when it goes live).
pub(crate) fn recreate(schema: &Schema, slot: Slot) -> String {
    let mut sql = String::new();
    for spec in schema.tables {
        let table = spec.table(slot);
        let _ = writeln!(sql, "DROP TABLE IF EXISTS {table};");
        sql += &create_table(spec, &table);
        if slot == Slot::Live {
            sql += &create_indexes(spec, &table);
        }
    }
    sql
}

/// Drops the rebuild copy of every table of `schema`.
pub(crate) fn drop_rebuild(schema: &Schema) -> String {
    let mut sql = String::new();
    for spec in schema.tables {
        let _ = writeln!(sql, "DROP TABLE IF EXISTS {};", spec.table(Slot::Rebuild));
    }
    sql
}

/// Builds the indexes of every rebuild table of `schema` that lacks them, one maintenance
/// worker each (the copies of a rebuild build their indexes at the same time). Runs inside a
/// transaction (`SET LOCAL`).
pub(crate) fn build_rebuild_indexes(schema: &Schema) -> String {
    let mut sql = String::from("SET LOCAL max_parallel_maintenance_workers = 0;\n");
    for spec in schema.tables {
        sql += &create_missing_indexes(spec, &spec.table(Slot::Rebuild));
    }
    sql
}

/// Replaces every live table of `schema` with its rebuild copy: drops the live table, renames
/// the copy, its primary key and the indexes built ahead, and builds those that are missing.
pub(crate) fn swap(schema: &Schema) -> String {
    let mut sql = String::new();
    for spec in schema.tables {
        let (live, shadow) = (spec.table(Slot::Live), spec.table(Slot::Rebuild));
        let _ = write!(
            sql,
            "DROP TABLE IF EXISTS {live};\n\
             ALTER TABLE {shadow} RENAME TO {live};\n\
             ALTER TABLE {live} RENAME CONSTRAINT {shadow}_pkey TO {live}_pkey;\n"
        );
        // Indexes built ahead keep their work; the others are built now.
        for index in spec.indexes {
            let _ = writeln!(
                sql,
                "ALTER INDEX IF EXISTS {} RENAME TO {};",
                index.name_on(&shadow),
                index.name_on(&live)
            );
        }
        sql += &create_missing_indexes(spec, &live);
    }
    sql
}

#[cfg(test)]
mod tests {
    use ledger_projector::{Column, Index};

    use super::*;

    static ITEMS: TableSpec = TableSpec {
        name: "items",
        columns: &[
            Column::text("owner"),
            Column::int("n"),
            Column::text("label").nullable(),
            Column::time("done_at").nullable(),
        ],
        key: 2,
        indexes: &[
            Index {
                name: "open",
                columns: &["owner"],
                only_null: Some("done_at"),
            },
            Index {
                name: "label",
                columns: &["label", "owner", "n"],
                only_null: None,
            },
        ],
    };

    static SCHEMA: Schema = Schema {
        name: "items",
        version: 1,
        tables: &[ITEMS],
    };

    #[test]
    fn tables_and_indexes_are_generated_from_the_spec() {
        assert_eq!(
            create_table(&ITEMS, "items"),
            "CREATE TABLE items (\n    \
                 owner   text COLLATE \"C\" NOT NULL,\n    \
                 n       bigint NOT NULL,\n    \
                 label   text COLLATE \"C\",\n    \
                 done_at timestamptz,\n    \
                 CONSTRAINT items_pkey PRIMARY KEY (owner, n)\n);\n"
        );
        assert_eq!(
            create_indexes(&ITEMS, "items_rebuild"),
            "CREATE INDEX items_rebuild_open_idx ON items_rebuild (owner) \
             WHERE done_at IS NULL;\n\
             CREATE INDEX items_rebuild_label_idx ON items_rebuild (label, owner, n);\n"
        );
        assert_eq!(create_indexes(&SCHEMA_NO_INDEX.tables[0], "x"), "");
        assert!(
            recreate(&SCHEMA, Slot::Rebuild)
                .starts_with("DROP TABLE IF EXISTS items_rebuild;\nCREATE TABLE items_rebuild (\n")
        );
        assert!(!recreate(&SCHEMA, Slot::Rebuild).contains("INDEX"));
        assert!(recreate(&SCHEMA, Slot::Live).ends_with("(label, owner, n);\n"));
    }

    static SCHEMA_NO_INDEX: Schema = Schema {
        name: "bare",
        version: 1,
        tables: &[TableSpec {
            name: "bare",
            columns: &[Column::int("id")],
            key: 1,
            indexes: &[],
        }],
    };

    #[test]
    fn swaps_rename_the_copy_and_its_indexes() {
        assert_eq!(
            swap(&SCHEMA),
            "DROP TABLE IF EXISTS items;\n\
             ALTER TABLE items_rebuild RENAME TO items;\n\
             ALTER TABLE items RENAME CONSTRAINT items_rebuild_pkey TO items_pkey;\n\
             ALTER INDEX IF EXISTS items_rebuild_open_idx RENAME TO items_open_idx;\n\
             ALTER INDEX IF EXISTS items_rebuild_label_idx RENAME TO items_label_idx;\n\
             CREATE INDEX IF NOT EXISTS items_open_idx ON items (owner) WHERE done_at IS NULL;\n\
             CREATE INDEX IF NOT EXISTS items_label_idx ON items (label, owner, n);\n"
        );
        assert_eq!(
            build_rebuild_indexes(&SCHEMA_NO_INDEX),
            "SET LOCAL max_parallel_maintenance_workers = 0;\n"
        );
        assert_eq!(
            drop_rebuild(&SCHEMA),
            "DROP TABLE IF EXISTS items_rebuild;\n"
        );
    }

    #[test]
    fn malformed_or_overlong_specs_are_refused() {
        assert!(check(&SCHEMA).is_ok());
        static LONG: TableSpec = TableSpec {
            name: "a_table_name_of_exactly_forty_bytes_xxxx",
            columns: &[Column::int("id")],
            key: 1,
            indexes: &[Index {
                name: "an_index_name",
                columns: &["id"],
                only_null: None,
            }],
        };
        assert!(check_table(&LONG).is_err());
        static BAD: TableSpec = TableSpec {
            name: "Bad",
            columns: &[Column::int("id")],
            key: 1,
            indexes: &[],
        };
        assert!(check_table(&BAD).is_err());
    }
}
