//! Rows of any table spec: the statements that load, write and page them, the typed arrays
//! and parameters they are bound with, and decoding rows by column type.
//!
//! Every value is bound, never spelled into SQL: a batch's rows go in as one typed array per
//! column (`unnest($1::text[])`, ...), borrowed from the rows, so writing allocates no
//! per-row values, and a query's `In` list as one typed array (`= ANY($1::text[])`), so the
//! statement is the same whatever the list's length; the identifiers come from specs
//! [`crate::ddl::check`] accepted.

use std::fmt::Write;

use chrono::{DateTime, Utc};
use ledger_core::StoreError;
use ledger_projector::{
    Column, ColumnType, Condition, Key, Query, Row, Slot, TableSpec, TableWrite, Value,
};
use sqlx::Row as _;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::{Postgres, query::Query as SqlxQuery};

use crate::ddl::{array_type, scalar_type};

/// A statement being bound.
pub(crate) type Statement<'q> = SqlxQuery<'q, Postgres, PgArguments>;

/// The values of one column of several rows, bound as one typed array.
#[derive(Debug, PartialEq)]
pub(crate) enum Array<'a> {
    /// `text[]`.
    Text(Vec<Option<&'a str>>),
    /// `bigint[]`.
    Int(Vec<Option<i64>>),
    /// `timestamptz[]`.
    Time(Vec<Option<DateTime<Utc>>>),
}

impl<'a> Array<'a> {
    /// An empty array for a column of type `ty`.
    fn new(ty: ColumnType, capacity: usize) -> Self {
        match ty {
            ColumnType::Text => Array::Text(Vec::with_capacity(capacity)),
            ColumnType::Int => Array::Int(Vec::with_capacity(capacity)),
            ColumnType::Time => Array::Time(Vec::with_capacity(capacity)),
        }
    }

    /// Appends `value`; false when it does not fit the array's type.
    fn push(&mut self, value: &'a Value) -> bool {
        match (self, value) {
            (Array::Text(a), Value::Text(s)) => a.push(Some(s)),
            (Array::Text(a), Value::Null) => a.push(None),
            (Array::Int(a), Value::Int(n)) => a.push(Some(*n)),
            (Array::Int(a), Value::Null) => a.push(None),
            (Array::Time(a), Value::Time(t)) => a.push(Some(*t)),
            (Array::Time(a), Value::Null) => a.push(None),
            _ => return false,
        }
        true
    }

    /// Binds the array as the next parameter.
    pub(crate) fn bind(self, q: Statement<'_>) -> Statement<'_> {
        match self {
            Array::Text(a) => q.bind(a),
            Array::Int(a) => q.bind(a),
            Array::Time(a) => q.bind(a),
        }
    }
}

/// The values of `rows` by column: one array for each of the first `width` columns of
/// `spec` (every column for rows, the key columns for keys).
fn arrays<'a>(
    spec: &TableSpec,
    width: usize,
    rows: &'a [Vec<Value>],
) -> Result<Vec<Array<'a>>, StoreError> {
    let columns = &spec.columns[..width.min(spec.columns.len())];
    let mut arrays: Vec<Array<'a>> = columns
        .iter()
        .map(|c| Array::new(c.ty, rows.len()))
        .collect();
    for row in rows {
        if row.len() != width {
            return Err(StoreError::backend(format!(
                "table {}: {} values where {width} were expected",
                spec.name,
                row.len()
            )));
        }
        for ((array, value), column) in arrays.iter_mut().zip(row).zip(columns) {
            if !array.push(value) {
                return Err(mismatch(spec, column, value));
            }
        }
    }
    Ok(arrays)
}

/// The error of a value that does not fit its column.
fn mismatch(spec: &TableSpec, column: &Column, value: &Value) -> StoreError {
    StoreError::backend(format!(
        "column {} of {} cannot hold {value:?}",
        column.name, spec.name
    ))
}

/// The column names of `columns`, comma-separated.
fn names(columns: &[Column]) -> String {
    let names: Vec<&str> = columns.iter().map(|c| c.name).collect();
    names.join(", ")
}

/// The parameters `$first..` cast to the array types of `columns`, each wrapped in `wrap`
/// (`unnest({})` or `{}`), comma-separated; advances `n` past them.
fn array_params(columns: &[Column], n: &mut usize, wrap: &str) -> String {
    let params: Vec<String> = columns
        .iter()
        .map(|c| {
            *n += 1;
            wrap.replace("{}", &format!("${n}::{}", array_type(c.ty)))
        })
        .collect();
    params.join(", ")
}

/// The condition "the key is one of the keys bound as arrays from `$n+1`".
fn key_in_arrays(spec: &TableSpec, n: &mut usize) -> String {
    let key = spec.key_columns();
    match key {
        [one] => format!("{} = ANY({})", one.name, array_params(key, n, "{}")),
        _ => format!(
            "({}) IN (SELECT * FROM unnest({}))",
            names(key),
            array_params(key, n, "{}")
        ),
    }
}

/// The rows of the keys bound as one array per key column (`$1`, ...), in key order.
pub(crate) fn load_sql(spec: &TableSpec, table: &str) -> String {
    let mut n = 0;
    format!(
        "SELECT {} FROM {table} WHERE {} ORDER BY {}",
        names(spec.columns),
        key_in_arrays(spec, &mut n),
        names(spec.key_columns())
    )
}

/// The arrays [`load_sql`] binds for `keys`.
pub(crate) fn key_arrays<'a>(
    spec: &TableSpec,
    keys: &'a [Key],
) -> Result<Vec<Array<'a>>, StoreError> {
    arrays(spec, spec.key, keys)
}

/// One statement writing every table's inserts, upserts and deletes of `writes` into the
/// copy `slot` (one data-modifying CTE each), and its arrays in bind order; `None` when
/// there is nothing to write.
pub(crate) fn write_statement<'a>(
    writes: &'a [TableWrite],
    slot: Slot,
) -> Result<Option<(String, Vec<Array<'a>>)>, StoreError> {
    let mut parts: Vec<String> = Vec::new();
    let mut binds = Vec::new();
    let mut n = 0;
    for w in writes {
        let spec = w.table;
        let table = spec.table(slot);
        let columns = names(spec.columns);
        // `unnest` per column in the select list zips the arrays row by row, without the
        // materialization `FROM unnest(a, b, ..)` does.
        if !w.inserts.is_empty() {
            let values = array_params(spec.columns, &mut n, "unnest({})");
            parts.push(format!("INSERT INTO {table} ({columns}) SELECT {values}"));
            binds.extend(arrays(spec, spec.columns.len(), &w.inserts)?);
        }
        if !w.upserts.is_empty() {
            let values = array_params(spec.columns, &mut n, "unnest({})");
            let updates: Vec<String> = spec.columns[spec.key..]
                .iter()
                .map(|c| format!("{0} = EXCLUDED.{0}", c.name))
                .collect();
            let action = if updates.is_empty() {
                "NOTHING".to_string()
            } else {
                format!("UPDATE SET {}", updates.join(", "))
            };
            parts.push(format!(
                "INSERT INTO {table} ({columns}) SELECT {values} ON CONFLICT ({}) DO {action}",
                names(spec.key_columns())
            ));
            binds.extend(arrays(spec, spec.columns.len(), &w.upserts)?);
        }
        if !w.deletes.is_empty() {
            parts.push(format!(
                "DELETE FROM {table} WHERE {}",
                key_in_arrays(spec, &mut n)
            ));
            binds.extend(arrays(spec, spec.key, &w.deletes)?);
        }
    }
    let Some(last) = parts.pop() else {
        return Ok(None);
    };
    let ctes: Vec<String> = parts
        .iter()
        .enumerate()
        .map(|(i, part)| format!("w{i} AS ({part})"))
        .collect();
    let sql = if ctes.is_empty() {
        last
    } else {
        format!("WITH {} {last}", ctes.join(", "))
    };
    Ok(Some((sql, binds)))
}

/// One value bound as a parameter, typed by its column.
#[derive(Debug, PartialEq)]
pub(crate) enum Param<'a> {
    /// `text`.
    Text(Option<&'a str>),
    /// `bigint`.
    Int(Option<i64>),
    /// `timestamptz`.
    Time(Option<DateTime<Utc>>),
    /// An array of the column's type (an `In` list).
    List(Array<'a>),
}

impl<'a> Param<'a> {
    /// `value` as a parameter of column `column` of `spec`.
    fn of(spec: &TableSpec, column: &Column, value: &'a Value) -> Result<Self, StoreError> {
        Ok(match (column.ty, value) {
            (ColumnType::Text, Value::Text(s)) => Param::Text(Some(s)),
            (ColumnType::Text, Value::Null) => Param::Text(None),
            (ColumnType::Int, Value::Int(n)) => Param::Int(Some(*n)),
            (ColumnType::Int, Value::Null) => Param::Int(None),
            (ColumnType::Time, Value::Time(t)) => Param::Time(Some(*t)),
            (ColumnType::Time, Value::Null) => Param::Time(None),
            _ => return Err(mismatch(spec, column, value)),
        })
    }

    /// Binds the value as the next parameter.
    pub(crate) fn bind(self, q: Statement<'_>) -> Statement<'_> {
        match self {
            Param::Text(v) => q.bind(v),
            Param::Int(v) => q.bind(v),
            Param::Time(v) => q.bind(v),
            Param::List(a) => a.bind(q),
        }
    }

    /// `values` as one array parameter of column `column` of `spec`.
    fn list(spec: &TableSpec, column: &Column, values: &'a [Value]) -> Result<Self, StoreError> {
        let mut array = Array::new(column.ty, values.len());
        for value in values {
            if !array.push(value) {
                return Err(mismatch(spec, column, value));
            }
        }
        Ok(Param::List(array))
    }
}

/// A page query: its SQL and its parameters in bind order (the conditions' values, the
/// `after` key, the limit). A query that fails [`Query::check`] is an error.
pub(crate) fn query_sql(query: &Query) -> Result<(String, Vec<Param<'_>>), StoreError> {
    let spec = query.table;
    let mut sql = format!(
        "SELECT {} FROM {}",
        names(spec.columns),
        spec.table(query.slot)
    );
    query.check()?;
    let mut params = Vec::new();
    let mut clauses = Vec::new();
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
                clauses.push(format!("{} IS NULL", column.name));
                continue;
            }
            // One value is `Eq` (the same statement, the same plans); none matches no row.
            Condition::In(_, values) => match values.as_slice() {
                [] => {
                    clauses.push("FALSE".to_string());
                    continue;
                }
                [v] => ("=", v),
                several => {
                    params.push(Param::list(spec, column, several)?);
                    clauses.push(format!(
                        "{} = ANY(${}::{})",
                        column.name,
                        params.len(),
                        array_type(column.ty)
                    ));
                    continue;
                }
            },
        };
        params.push(Param::of(spec, column, value)?);
        clauses.push(format!(
            "{} {op} ${}::{}",
            column.name,
            params.len(),
            scalar_type(column.ty)
        ));
    }
    if let Some(after) = &query.after {
        let key = spec.key_columns();
        let mut values = Vec::new();
        for (column, value) in key.iter().zip(after) {
            params.push(Param::of(spec, column, value)?);
            values.push(format!("${}::{}", params.len(), scalar_type(column.ty)));
        }
        let beyond = if query.descending { "<" } else { ">" };
        clauses.push(match key {
            [one] => format!("{} {beyond} {}", one.name, values[0]),
            _ => format!("({}) {beyond} ({})", names(key), values.join(", ")),
        });
    }
    if !clauses.is_empty() {
        sql += " WHERE ";
        sql += &clauses.join(" AND ");
    }
    params.push(Param::Int(Some(
        i64::try_from(query.limit).unwrap_or(i64::MAX),
    )));
    let direction = if query.descending { " DESC" } else { "" };
    let order: Vec<String> = spec
        .key_columns()
        .iter()
        .map(|c| format!("{}{direction}", c.name))
        .collect();
    let _ = write!(
        sql,
        " ORDER BY {} LIMIT ${}",
        order.join(", "),
        params.len()
    );
    Ok((sql, params))
}

/// Decodes a row of `spec`'s columns, selected in column order.
pub(crate) fn decode(spec: &TableSpec, row: &PgRow) -> Result<Row, sqlx::Error> {
    let mut values = Vec::with_capacity(spec.columns.len());
    for (i, column) in spec.columns.iter().enumerate() {
        values.push(match column.ty {
            ColumnType::Text => row
                .try_get::<Option<String>, _>(i)?
                .map_or(Value::Null, Value::Text),
            ColumnType::Int => row
                .try_get::<Option<i64>, _>(i)?
                .map_or(Value::Null, Value::Int),
            ColumnType::Time => row
                .try_get::<Option<DateTime<Utc>>, _>(i)?
                .map_or(Value::Null, Value::Time),
        });
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use ledger_projector::{Index, MAX_IN_VALUES};

    use super::*;

    static PAIRS: TableSpec = TableSpec {
        name: "pairs",
        columns: &[
            Column::text("owner"),
            Column::int("n"),
            Column::time("at").nullable(),
        ],
        key: 2,
        indexes: &[],
    };

    static SINGLE: TableSpec = TableSpec {
        name: "single",
        columns: &[Column::text("id"), Column::text("note").nullable()],
        key: 1,
        indexes: &[Index {
            name: "note",
            columns: &["note"],
            only_null: None,
        }],
    };

    #[test]
    fn loads_select_keys_from_arrays() {
        assert_eq!(
            load_sql(&SINGLE, "single"),
            "SELECT id, note FROM single WHERE id = ANY($1::text[]) ORDER BY id"
        );
        assert_eq!(
            load_sql(&PAIRS, "pairs_rebuild"),
            "SELECT owner, n, at FROM pairs_rebuild WHERE (owner, n) IN \
             (SELECT * FROM unnest($1::text[], $2::bigint[])) ORDER BY owner, n"
        );
        let keys = vec![
            vec![Value::text("a"), Value::Int(1)],
            vec![Value::text("b"), Value::Int(2)],
        ];
        assert_eq!(
            key_arrays(&PAIRS, &keys).unwrap(),
            [
                Array::Text(vec![Some("a"), Some("b")]),
                Array::Int(vec![Some(1), Some(2)])
            ]
        );
        assert!(key_arrays(&PAIRS, &[vec![Value::Int(1), Value::Int(1)]]).is_err());
        assert!(key_arrays(&PAIRS, &[vec![Value::text("a")]]).is_err());
    }

    #[test]
    fn one_statement_writes_every_table() {
        let writes = vec![
            TableWrite {
                table: &PAIRS,
                inserts: vec![vec![Value::text("a"), Value::Int(1), Value::Null]],
                upserts: vec![],
                deletes: vec![vec![Value::text("b"), Value::Int(2)]],
            },
            TableWrite {
                table: &SINGLE,
                inserts: vec![],
                upserts: vec![vec![Value::text("x"), Value::text("y")]],
                deletes: vec![vec![Value::text("z")]],
            },
        ];
        let (sql, binds) = write_statement(&writes, Slot::Live).unwrap().unwrap();
        assert_eq!(
            sql,
            "WITH w0 AS (INSERT INTO pairs (owner, n, at) SELECT unnest($1::text[]), \
             unnest($2::bigint[]), unnest($3::timestamptz[])), \
             w1 AS (DELETE FROM pairs WHERE (owner, n) IN \
             (SELECT * FROM unnest($4::text[], $5::bigint[]))), \
             w2 AS (INSERT INTO single (id, note) SELECT unnest($6::text[]), \
             unnest($7::text[]) ON CONFLICT (id) DO UPDATE SET note = EXCLUDED.note) \
             DELETE FROM single WHERE id = ANY($8::text[])"
        );
        assert_eq!(binds.len(), 8);
        assert_eq!(binds[2], Array::Time(vec![None]));
        let empty = vec![TableWrite {
            table: &PAIRS,
            inserts: vec![],
            upserts: vec![],
            deletes: vec![],
        }];
        assert_eq!(write_statement(&empty, Slot::Live).unwrap(), None);
        static KEY_ONLY: TableSpec = TableSpec {
            name: "keys",
            columns: &[Column::int("id")],
            key: 1,
            indexes: &[],
        };
        let only = vec![TableWrite {
            table: &KEY_ONLY,
            inserts: vec![],
            upserts: vec![vec![Value::Int(1)]],
            deletes: vec![],
        }];
        let (sql, _) = write_statement(&only, Slot::Rebuild).unwrap().unwrap();
        assert_eq!(
            sql,
            "INSERT INTO keys_rebuild (id) SELECT unnest($1::bigint[]) \
             ON CONFLICT (id) DO NOTHING"
        );
        let bad = vec![TableWrite {
            table: &SINGLE,
            inserts: vec![vec![Value::Int(1), Value::Null]],
            upserts: vec![],
            deletes: vec![],
        }];
        assert!(write_statement(&bad, Slot::Live).is_err());
    }

    #[test]
    fn queries_are_built_from_the_spec_and_the_conditions() {
        let q = Query::new(&PAIRS, 10)
            .when(Condition::Eq("owner", Value::text("a")))
            .when(Condition::Gt("n", Value::Int(1)))
            .when(Condition::Ge("n", Value::Int(2)))
            .when(Condition::Lt("at", Value::Null))
            .when(Condition::Le("n", Value::Int(9)))
            .when(Condition::IsNull("at"))
            .after(Some(vec![Value::text("a"), Value::Int(3)]));
        let (sql, params) = query_sql(&q).unwrap();
        assert_eq!(
            sql,
            "SELECT owner, n, at FROM pairs WHERE owner = $1::text AND n > $2::bigint \
             AND n >= $3::bigint AND at < $4::timestamptz AND n <= $5::bigint AND at IS NULL \
             AND (owner, n) > ($6::text, $7::bigint) ORDER BY owner, n LIMIT $8"
        );
        assert_eq!(params.len(), 8);
        assert_eq!(params[3], Param::Time(None));
        assert_eq!(params[7], Param::Int(Some(10)));
        let q = Query::new(&SINGLE, 5)
            .slot(Slot::Rebuild)
            .after(Some(vec![Value::text("k")]));
        assert_eq!(
            query_sql(&q).unwrap().0,
            "SELECT id, note FROM single_rebuild WHERE id > $1::text ORDER BY id LIMIT $2"
        );
        assert_eq!(
            query_sql(&Query::new(&SINGLE, 1)).unwrap().0,
            "SELECT id, note FROM single ORDER BY id LIMIT $1"
        );
        for bad in [
            Query::new(&SINGLE, 1).when(Condition::IsNull("nope")),
            Query::new(&SINGLE, 1).when(Condition::Eq("id", Value::Int(1))),
            Query::new(&SINGLE, 1).when(Condition::In("id", vec![Value::text("a"), Value::Int(1)])),
            Query::new(&SINGLE, 1).when(Condition::In("id", vec![Value::Null; MAX_IN_VALUES + 1])),
            Query::new(&PAIRS, 1).after(Some(vec![Value::text("a")])),
            Query::new(&SINGLE, 1).after(Some(vec![Value::Null])),
        ] {
            assert!(query_sql(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn in_lists_bind_one_array_and_one_value_is_eq() {
        let several = Query::new(&PAIRS, 10)
            .when(Condition::In(
                "owner",
                vec![Value::text("a"), Value::Null, Value::text("b")],
            ))
            .when(Condition::Ge("n", Value::Int(2)))
            .when(Condition::In("at", vec![Value::Null, Value::Null]))
            .after(Some(vec![Value::text("a"), Value::Int(3)]))
            .descending(true);
        let (sql, params) = query_sql(&several).unwrap();
        assert_eq!(
            sql,
            "SELECT owner, n, at FROM pairs WHERE owner = ANY($1::text[]) AND n >= $2::bigint \
             AND at = ANY($3::timestamptz[]) AND (owner, n) < ($4::text, $5::bigint) \
             ORDER BY owner DESC, n DESC LIMIT $6"
        );
        assert_eq!(
            params[0],
            Param::List(Array::Text(vec![Some("a"), None, Some("b")]))
        );
        assert_eq!(params[2], Param::List(Array::Time(vec![None, None])));
        assert_eq!(params.len(), 6);

        // One value renders (and binds) exactly as `Eq` does.
        for value in [Value::Int(7), Value::Null] {
            let one = Query::new(&PAIRS, 3).when(Condition::In("n", vec![value.clone()]));
            let eq = Query::new(&PAIRS, 3).when(Condition::Eq("n", value));
            assert_eq!(query_sql(&one).unwrap(), query_sql(&eq).unwrap());
        }
        assert_eq!(
            query_sql(&Query::new(&SINGLE, 3).when(Condition::In("id", vec![Value::text("k")])))
                .unwrap()
                .0,
            "SELECT id, note FROM single WHERE id = $1::text ORDER BY id LIMIT $2"
        );

        // None matches no row and binds nothing but the limit.
        let none = Query::new(&SINGLE, 3)
            .when(Condition::In("note", vec![]))
            .when(Condition::Eq("id", Value::text("k")));
        let (sql, params) = query_sql(&none).unwrap();
        assert_eq!(
            sql,
            "SELECT id, note FROM single WHERE FALSE AND id = $1::text ORDER BY id LIMIT $2"
        );
        assert_eq!(params, [Param::Text(Some("k")), Param::Int(Some(3))]);

        // The most values a query may list are one parameter.
        let values: Vec<Value> = (0..MAX_IN_VALUES as i64).map(Value::Int).collect();
        let most = Query::new(&PAIRS, 1).when(Condition::In("n", values));
        let (sql, params) = query_sql(&most).unwrap();
        assert_eq!(
            sql,
            "SELECT owner, n, at FROM pairs WHERE n = ANY($1::bigint[]) ORDER BY owner, n LIMIT $2"
        );
        assert!(matches!(&params[0], Param::List(Array::Int(a)) if a.len() == MAX_IN_VALUES));
    }
}
