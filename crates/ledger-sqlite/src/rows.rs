//! Rows of any table spec in SQLite: the statements that load, write, delete and page them,
//! values bound or encoded, and rows decoded by column type.
//!
//! A batch's keys travel as one bound JSON array (each key an array of values) that
//! `json_each` unpacks, so a table's load and its deletes are one statement each, whatever the
//! batch's size. Rows are written by multi-row `INSERT ... VALUES ... ON CONFLICT DO UPDATE`
//! statements of up to [`CHUNK`] rows, every value bound: measured, that is about 1.5 times as
//! fast as unpacking rows from JSON (which parses every row's text again per column), and
//! about 3 times as fast as one statement per row. A chunk of fewer rows is padded to the
//! next power of two by repeating its last row (the upsert writes it again, unchanged), so a
//! table has at most seven write statements, prepared once. Identifiers come only from specs
//! that passed `TableSpec::validate`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use ledger_core::StoreError;
use ledger_projector::{ColumnType, Condition, Key, Query, Row, Slot, TableSpec, Value, time_text};
use sqlx::Sqlite;
use sqlx::query::Query as SqlxQuery;
use sqlx::sqlite::{SqliteArguments, SqliteRow};

/// A statement of one table, built once per spec and copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Statement {
    /// The rows whose keys are in the JSON array `?1`.
    Load,
    /// Inserts or replaces this many rows (a power of two up to [`CHUNK`]), bound in order.
    Upsert(usize),
    /// Deletes the rows whose keys are in the JSON array `?1`.
    Delete,
}

/// The statements built so far, by spec (specs are `'static`, so the address names one), copy
/// and kind.
#[derive(Default)]
pub(crate) struct Statements {
    built: Mutex<HashMap<(usize, Slot, Statement), Arc<str>>>,
}

impl Statements {
    /// The text of `statement` on `slot`'s copy of `spec`, which must be validated.
    pub(crate) fn get(
        &self,
        spec: &'static TableSpec,
        slot: Slot,
        statement: Statement,
    ) -> Arc<str> {
        let key = (std::ptr::from_ref(spec) as usize, slot, statement);
        let mut built = self.built.lock().unwrap_or_else(|p| p.into_inner());
        built
            .entry(key)
            .or_insert_with(|| {
                let table = spec.table(slot);
                match statement {
                    Statement::Load => load_sql(spec, &table),
                    Statement::Upsert(rows) => upsert_sql(spec, &table, rows),
                    Statement::Delete => delete_sql(spec, &table),
                }
                .into()
            })
            .clone()
    }
}

/// The column names, comma-separated.
fn names<'a>(columns: impl IntoIterator<Item = &'a str>) -> String {
    columns.into_iter().collect::<Vec<_>>().join(", ")
}

/// `value ->> 0, value ->> 1, ...`: the first `n` values of a `json_each` row.
fn unpacked(n: usize) -> String {
    let values: Vec<String> = (0..n).map(|i| format!("value ->> {i}")).collect();
    values.join(", ")
}

/// The key columns, comma-separated.
fn key_names(spec: &TableSpec) -> String {
    names(spec.key_columns().iter().map(|c| c.name))
}

/// The key as a row value, `(a, b)` (or `a` when it is one column).
fn key_tuple(spec: &TableSpec) -> String {
    if spec.key == 1 {
        key_names(spec)
    } else {
        format!("({})", key_names(spec))
    }
}

/// The rows of `table` whose keys are in the JSON array of keys `?1`, in key order.
pub(crate) fn load_sql(spec: &TableSpec, table: &str) -> String {
    format!(
        "SELECT {} FROM {table} WHERE {} IN (SELECT {} FROM json_each(?1)) ORDER BY {}",
        names(spec.columns.iter().map(|c| c.name)),
        key_tuple(spec),
        unpacked(spec.key),
        key_names(spec),
    )
}

/// Most rows one write statement carries.
pub(crate) const CHUNK: usize = 64;

/// Inserts `rows` rows, their values bound in column order, into `table`; a row whose key
/// exists replaces it (a row given twice is written twice).
pub(crate) fn upsert_sql(spec: &TableSpec, table: &str, rows: usize) -> String {
    let placeholders = vec!["?"; spec.columns.len()].join(", ");
    let values = vec![format!("({placeholders})"); rows].join(", ");
    let mut sql = format!(
        "INSERT INTO {table} ({}) VALUES {values} ON CONFLICT ({}) DO ",
        names(spec.columns.iter().map(|c| c.name)),
        key_names(spec),
    );
    let updates: Vec<String> = spec.columns[spec.key..]
        .iter()
        .map(|c| format!("{0} = excluded.{0}", c.name))
        .collect();
    if updates.is_empty() {
        sql += "NOTHING";
    } else {
        let _ = write!(sql, "UPDATE SET {}", updates.join(", "));
    }
    sql
}

/// The write statements of `rows` rows: chunks of [`CHUNK`] rows, the last one padded to a
/// power of two; each as (rows it carries, statement size).
pub(crate) fn chunks(rows: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..rows).step_by(CHUNK).map(move |start| {
        let n = (rows - start).min(CHUNK);
        (n, n.next_power_of_two())
    })
}

/// Deletes the rows of `table` whose keys are in the JSON array of keys `?1`.
pub(crate) fn delete_sql(spec: &TableSpec, table: &str) -> String {
    format!(
        "DELETE FROM {table} WHERE {} IN (SELECT {} FROM json_each(?1))",
        key_tuple(spec),
        unpacked(spec.key),
    )
}

/// A page query and the values it binds, in parameter order.
pub(crate) struct PageSql<'q> {
    /// The statement.
    pub(crate) sql: String,
    /// Its parameters but the limit, which comes last.
    pub(crate) params: Vec<&'q Value>,
}

/// The page `query` asks for: its conditions (an `In` list of several values as one
/// parameter each), the rows after its key, in key order, at most its limit. A query that
/// fails [`Query::check`] is an error.
pub(crate) fn page_sql(query: &Query) -> Result<PageSql<'_>, StoreError> {
    let spec = query.table;
    let mut sql = format!(
        "SELECT {} FROM {} WHERE true",
        names(spec.columns.iter().map(|c| c.name)),
        spec.table(query.slot),
    );
    query.check()?;
    let listed: usize = query
        .conditions
        .iter()
        .map(|c| match c {
            Condition::In(_, values) => values.len(),
            _ => 1,
        })
        .sum();
    let mut params = Vec::with_capacity(listed + spec.key);
    for condition in &query.conditions {
        let column = spec
            .column(condition.column())
            .map(|i| &spec.columns[i])
            .expect("a checked query names its table's columns");
        let (op, value) = match condition {
            Condition::Eq(_, v) => ("=", v),
            Condition::Gt(_, v) => (">", v),
            Condition::Ge(_, v) => (">=", v),
            Condition::Lt(_, v) => ("<", v),
            Condition::Le(_, v) => ("<=", v),
            Condition::IsNull(_) => {
                let _ = write!(sql, " AND {} IS NULL", column.name);
                continue;
            }
            // One value is `Eq` (the same statement, the same plans); none matches no row.
            Condition::In(_, values) => match values.as_slice() {
                [] => {
                    sql += " AND false";
                    continue;
                }
                [v] => ("=", v),
                several => {
                    let first = params.len() + 1;
                    params.extend(several);
                    let placeholders: Vec<String> = (first..first + several.len())
                        .map(|n| format!("?{n}"))
                        .collect();
                    let _ = write!(sql, " AND {} IN ({})", column.name, placeholders.join(", "));
                    continue;
                }
            },
        };
        params.push(value);
        let _ = write!(sql, " AND {} {op} ?{}", column.name, params.len());
    }
    let (beyond, direction) = if query.descending {
        ("<", " DESC")
    } else {
        (">", "")
    };
    if let Some(after) = &query.after {
        let first = params.len() + 1;
        params.extend(after.iter());
        let placeholders: Vec<String> =
            (first..first + spec.key).map(|n| format!("?{n}")).collect();
        if spec.key == 1 {
            let _ = write!(sql, " AND {} {beyond} {}", key_names(spec), placeholders[0]);
        } else {
            let _ = write!(
                sql,
                " AND {} {beyond} ({})",
                key_tuple(spec),
                placeholders.join(", ")
            );
        }
    }
    let order: Vec<String> = spec
        .key_columns()
        .iter()
        .map(|c| format!("{}{direction}", c.name))
        .collect();
    let _ = write!(
        sql,
        " ORDER BY {} LIMIT ?{}",
        order.join(", "),
        params.len() + 1
    );
    Ok(PageSql { sql, params })
}

/// Binds a value by its type: times as their fixed-width text.
pub(crate) fn bind<'q>(
    query: SqlxQuery<'q, Sqlite, SqliteArguments>,
    value: Value,
) -> SqlxQuery<'q, Sqlite, SqliteArguments> {
    match value {
        Value::Null => query.bind(None::<i64>),
        Value::Int(n) => query.bind(n),
        Value::Text(s) => query.bind(s),
        Value::Time(t) => query.bind(time_text(t)),
    }
}

/// Keys as one JSON array of arrays of values, times as their fixed-width text.
pub(crate) fn json_keys(keys: &[Key]) -> String {
    let mut out: Vec<u8> = Vec::with_capacity(keys.len() * 24 + 2);
    out.push(b'[');
    for (i, row) in keys.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'[');
        for (j, value) in row.iter().enumerate() {
            if j > 0 {
                out.push(b',');
            }
            match value {
                Value::Null => out.extend_from_slice(b"null"),
                Value::Int(n) => {
                    let _ = write!(out, "{n}");
                }
                Value::Text(s) => {
                    serde_json::to_writer(&mut out, s.as_str()).expect("a string serializes")
                }
                Value::Time(t) => {
                    // Digits, `-`, `:`, `.`, `T` and `Z`: nothing to escape.
                    out.push(b'"');
                    out.extend_from_slice(time_text(*t).as_bytes());
                    out.push(b'"');
                }
            }
        }
        out.push(b']');
    }
    out.push(b']');
    String::from_utf8(out).expect("JSON text is UTF-8")
}

/// Decodes a row of `spec` selected in column order, by column type.
pub(crate) fn decode(spec: &TableSpec, row: &SqliteRow) -> Result<Row, sqlx::Error> {
    use sqlx::Row as _;
    let mut values = Vec::with_capacity(spec.columns.len());
    for (i, column) in spec.columns.iter().enumerate() {
        let value = match column.ty {
            ColumnType::Text => row
                .try_get::<Option<String>, _>(i)?
                .map_or(Value::Null, Value::Text),
            ColumnType::Int => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null, Value::Int),
            ColumnType::Time => match row.try_get::<Option<&str>, _>(i)? {
                None => Value::Null,
                Some(text) => Value::Time(parse_time(text).ok_or_else(|| {
                    sqlx::Error::Decode(
                        format!("column {} holds no time: {text:?}", column.name).into(),
                    )
                })?),
            },
        };
        values.push(value);
    }
    Ok(values)
}

/// A time written by [`time_text`] (`YYYY-MM-DDTHH:MM:SS.ffffffZ`), read without a general
/// parser; any other RFC 3339 text is read too.
pub(crate) fn parse_time(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    let fixed = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if fixed {
        let n = |from: usize, to: usize| {
            b[from..to].iter().try_fold(0u32, |n, &c| {
                c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0'))
            })
        };
        let date = NaiveDate::from_ymd_opt(i32::try_from(n(0, 4)?).ok()?, n(5, 7)?, n(8, 10)?);
        let time = NaiveTime::from_hms_micro_opt(n(11, 13)?, n(14, 16)?, n(17, 19)?, n(20, 26)?);
        if let (Some(date), Some(time)) = (date, time) {
            return Some(date.and_time(time).and_utc());
        }
    }
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ledger_projector::{Column, Index, MAX_IN_VALUES};

    use super::*;

    static PAIRS: TableSpec = TableSpec {
        name: "pairs",
        columns: &[
            Column::text("a"),
            Column::int("b"),
            Column::text("c"),
            Column::time("d").nullable(),
        ],
        key: 2,
        indexes: &[Index {
            name: "open",
            columns: &["c"],
            only_null: Some("d"),
        }],
    };

    static ONES: TableSpec = TableSpec {
        name: "ones",
        columns: &[Column::int("id")],
        key: 1,
        indexes: &[],
    };

    #[test]
    fn statements_are_built_from_the_spec() {
        assert_eq!(
            load_sql(&PAIRS, "pairs"),
            "SELECT a, b, c, d FROM pairs WHERE (a, b) IN \
             (SELECT value ->> 0, value ->> 1 FROM json_each(?1)) ORDER BY a, b"
        );
        assert_eq!(
            upsert_sql(&PAIRS, "pairs", 2),
            "INSERT INTO pairs (a, b, c, d) VALUES (?, ?, ?, ?), (?, ?, ?, ?) \
             ON CONFLICT (a, b) DO UPDATE SET c = excluded.c, d = excluded.d"
        );
        assert_eq!(
            upsert_sql(&ONES, "ones_rebuild", 1),
            "INSERT INTO ones_rebuild (id) VALUES (?) ON CONFLICT (id) DO NOTHING"
        );
        assert_eq!(chunks(0).count(), 0);
        assert_eq!(chunks(1).collect::<Vec<_>>(), [(1, 1)]);
        assert_eq!(chunks(5).collect::<Vec<_>>(), [(5, 8)]);
        assert_eq!(
            chunks(2 * CHUNK + 33).collect::<Vec<_>>(),
            [(CHUNK, CHUNK), (CHUNK, CHUNK), (33, 64)]
        );
        assert_eq!(
            delete_sql(&ONES, "ones"),
            "DELETE FROM ones WHERE id IN (SELECT value ->> 0 FROM json_each(?1))"
        );
        assert_eq!(
            delete_sql(&PAIRS, "pairs"),
            "DELETE FROM pairs WHERE (a, b) IN (SELECT value ->> 0, value ->> 1 FROM json_each(?1))"
        );
        let statements = Statements::default();
        let first = statements.get(&PAIRS, Slot::Rebuild, Statement::Load);
        assert!(first.contains("FROM pairs_rebuild "));
        assert!(Arc::ptr_eq(
            &first,
            &statements.get(&PAIRS, Slot::Rebuild, Statement::Load)
        ));
    }

    #[test]
    fn page_queries_bind_every_value_and_check_columns() {
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let query = Query::new(&PAIRS, 10)
            .when(Condition::Eq("c", Value::text("x")))
            .when(Condition::IsNull("d"))
            .when(Condition::Lt("d", Value::time(t)))
            .after(Some(vec![Value::text("k"), Value::Int(3)]))
            .slot(Slot::Rebuild);
        let page = page_sql(&query).unwrap();
        assert_eq!(
            page.sql,
            "SELECT a, b, c, d FROM pairs_rebuild WHERE true AND c = ?1 AND d IS NULL \
             AND d < ?2 AND (a, b) > (?3, ?4) ORDER BY a, b LIMIT ?5"
        );
        assert_eq!(page.params.len(), 4);
        let ones = Query::new(&ONES, 1).after(Some(vec![Value::Int(1)]));
        assert_eq!(
            page_sql(&ones).unwrap().sql,
            "SELECT id FROM ones WHERE true AND id > ?1 ORDER BY id LIMIT ?2"
        );
        let unknown = Query::new(&ONES, 1).when(Condition::Eq("nope", Value::Int(1)));
        assert_eq!(page_sql(&unknown).err().unwrap().code(), "internal");
        let mistyped = Query::new(&ONES, 1).when(Condition::Eq("id", Value::text("1")));
        assert!(page_sql(&mistyped).is_err());
        let short = Query::new(&PAIRS, 1).after(Some(vec![Value::text("k")]));
        assert!(page_sql(&short).is_err());
    }

    #[test]
    fn keys_travel_as_json_arrays_and_times_read_back() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_000).unwrap();
        let keys = [
            vec![
                Value::text("a\"\n"),
                Value::Int(-7),
                Value::text("é"),
                Value::time(t),
            ],
            vec![
                Value::text("b"),
                Value::Int(i64::MAX),
                Value::text(""),
                Value::Null,
            ],
        ];
        let json = json_keys(&keys);
        assert_eq!(
            json,
            format!(
                r#"[["a\"\n",-7,"é","2023-11-14T22:13:20.123456Z"],["b",{},"",null]]"#,
                i64::MAX
            )
        );
        let back: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(back[0][0], "a\"\n");
        assert_eq!(json_keys(&[]), "[]");
        assert_eq!(parse_time("2023-11-14T22:13:20.123456Z"), Some(t));
        assert_eq!(parse_time("2023-11-14T23:13:20.123456+01:00"), Some(t));
        assert_eq!(parse_time("2023-11-14T22:13:2x.123456Z"), None);
        assert_eq!(parse_time("2023-13-14T22:13:20.123456Z"), None);
    }

    #[test]
    fn in_lists_bind_each_value_and_one_value_is_eq() {
        let t = Utc.timestamp_opt(1_700_000_000, 0).unwrap();
        let several = Query::new(&PAIRS, 10)
            .when(Condition::In(
                "c",
                vec![Value::text("x"), Value::Null, Value::text("y")],
            ))
            .when(Condition::Ge("b", Value::Int(2)))
            .when(Condition::In("d", vec![Value::time(t), Value::Null]))
            .after(Some(vec![Value::text("k"), Value::Int(3)]))
            .descending(true);
        let page = page_sql(&several).unwrap();
        assert_eq!(
            page.sql,
            "SELECT a, b, c, d FROM pairs WHERE true AND c IN (?1, ?2, ?3) AND b >= ?4 \
             AND d IN (?5, ?6) AND (a, b) < (?7, ?8) ORDER BY a DESC, b DESC LIMIT ?9"
        );
        assert_eq!(
            page.params,
            [
                &Value::text("x"),
                &Value::Null,
                &Value::text("y"),
                &Value::Int(2),
                &Value::time(t),
                &Value::Null,
                &Value::text("k"),
                &Value::Int(3),
            ]
        );

        // One value renders (and binds) exactly as `Eq` does.
        for value in [Value::Int(7), Value::Null] {
            let one =
                page_sql_of(Query::new(&ONES, 3).when(Condition::In("id", vec![value.clone()])));
            let eq = page_sql_of(Query::new(&ONES, 3).when(Condition::Eq("id", value)));
            assert_eq!(one, eq);
        }
        assert_eq!(
            page_sql_of(Query::new(&ONES, 3).when(Condition::In("id", vec![Value::Int(7)]))).0,
            "SELECT id FROM ones WHERE true AND id = ?1 ORDER BY id LIMIT ?2"
        );

        // None matches no row and binds nothing.
        let none = Query::new(&ONES, 3)
            .when(Condition::In("id", vec![]))
            .when(Condition::Gt("id", Value::Int(1)));
        assert_eq!(
            page_sql_of(none),
            (
                "SELECT id FROM ones WHERE true AND false AND id > ?1 ORDER BY id LIMIT ?2"
                    .to_string(),
                vec![Value::Int(1)]
            )
        );

        // The most values a query may list, each a parameter; more, or a mistyped one, refused.
        let most: Vec<Value> = (0..MAX_IN_VALUES as i64).map(Value::Int).collect();
        let (sql, params) = page_sql_of(
            Query::new(&ONES, 1)
                .when(Condition::In("id", most.clone()))
                .after(Some(vec![Value::Int(0)])),
        );
        assert_eq!(params.len(), MAX_IN_VALUES + 1);
        assert!(sql.starts_with("SELECT id FROM ones WHERE true AND id IN (?1, ?2, "));
        assert!(sql.ends_with(&format!(
            "?{MAX_IN_VALUES}) AND id > ?{} ORDER BY id LIMIT ?{}",
            MAX_IN_VALUES + 1,
            MAX_IN_VALUES + 2
        )));
        let mut more = most;
        more.push(Value::Int(-1));
        assert!(page_sql(&Query::new(&ONES, 1).when(Condition::In("id", more))).is_err());
        let mistyped =
            Query::new(&ONES, 1).when(Condition::In("id", vec![Value::Int(1), Value::text("2")]));
        assert!(page_sql(&mistyped).is_err());
    }

    /// The SQL and the values of a page query.
    fn page_sql_of(query: Query) -> (String, Vec<Value>) {
        let page = page_sql(&query).unwrap();
        (page.sql, page.params.into_iter().cloned().collect())
    }
}
