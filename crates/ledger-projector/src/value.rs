//! The values of a row, read and written by the backends by column type, and the helpers a
//! read model converts its own row types with.

use chrono::{DateTime, SecondsFormat, Timelike, Utc};
use serde_json::{Map, Value as Json};

use crate::spec::{ColumnType, TableSpec};

/// One value of a row. Keys order as the tables do: texts by bytes, integers by value.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Value {
    /// No value (a nullable column).
    Null,
    /// An integer.
    Int(i64),
    /// A text.
    Text(String),
    /// A UTC time, kept to the microsecond.
    Time(DateTime<Utc>),
}

/// A row: one value per column of its table, in the table's column order.
pub type Row = Vec<Value>;

/// A row's key: the values of its table's key columns, in order.
pub type Key = Vec<Value>;

impl Value {
    /// A time value, truncated to the microsecond the tables keep.
    pub fn time(t: DateTime<Utc>) -> Value {
        Value::Time(micros(t))
    }

    /// A nullable time.
    pub fn opt_time(t: Option<DateTime<Utc>>) -> Value {
        t.map_or(Value::Null, Value::time)
    }

    /// A text value.
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }

    /// A nullable text.
    pub fn opt_text(s: Option<impl Into<String>>) -> Value {
        s.map_or(Value::Null, Value::text)
    }

    /// An unsigned integer (saturating at `i64::MAX`).
    pub fn uint(n: u64) -> Value {
        Value::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }

    /// Whether the value fits a column of type `ty` (null fits any).
    pub fn fits(&self, ty: ColumnType) -> bool {
        matches!(
            (self, ty),
            (Value::Null, _)
                | (Value::Int(_), ColumnType::Int)
                | (Value::Text(_), ColumnType::Text)
                | (Value::Time(_), ColumnType::Time)
        )
    }

    /// The value as JSON: times as fixed-width RFC 3339 UTC text with microseconds.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Null => Json::Null,
            Value::Int(n) => Json::from(*n),
            Value::Text(s) => Json::String(s.clone()),
            Value::Time(t) => Json::String(time_text(*t)),
        }
    }
}

/// `t` truncated to the microsecond.
pub fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    let extra = t.nanosecond() % 1_000;
    if extra == 0 {
        // The common case: times come from events already truncated.
        return t;
    }
    t - chrono::Duration::nanoseconds(i64::from(extra))
}

/// A time as the tables' text: RFC 3339, UTC, six fractional digits.
pub fn time_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A row that does not fit its table, or a typed row that cannot be read from one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RowError {
    /// A row with the wrong number of values.
    #[error("a row of {table} has {found} values; the table has {expected} columns")]
    Width {
        /// The table.
        table: &'static str,
        /// Its columns.
        expected: usize,
        /// The row's values.
        found: usize,
    },
    /// A value of the wrong type, or a null in a non-null column.
    #[error("column {column} of {table} cannot hold {found:?}")]
    Type {
        /// The table.
        table: &'static str,
        /// The column.
        column: &'static str,
        /// The value.
        found: Value,
    },
    /// A read model changed a row whose key it did not declare for the event.
    #[error("the read model changed a row of {table} it did not declare: {key:?}")]
    Undeclared {
        /// The table.
        table: &'static str,
        /// The row's key.
        key: Key,
    },
}

impl TableSpec {
    /// Checks that `row` has one value per column, each of its column's type.
    pub fn check(&self, row: &[Value]) -> Result<(), RowError> {
        if row.len() != self.columns.len() {
            return Err(RowError::Width {
                table: self.name,
                expected: self.columns.len(),
                found: row.len(),
            });
        }
        for (value, column) in row.iter().zip(self.columns) {
            if !value.fits(column.ty) || (*value == Value::Null && !column.nullable) {
                return Err(RowError::Type {
                    table: self.name,
                    column: column.name,
                    found: value.clone(),
                });
            }
        }
        Ok(())
    }

    /// The key of a row (its leading key values).
    pub fn key_of(&self, row: &[Value]) -> Key {
        row[..self.key.min(row.len())].to_vec()
    }

    /// A row as a JSON object keyed by column name (for reports and generic readers).
    pub fn to_json(&self, row: &[Value]) -> Json {
        let mut object = Map::new();
        for (column, value) in self.columns.iter().zip(row) {
            object.insert(column.name.to_string(), value.to_json());
        }
        Json::Object(object)
    }

    /// A key as a JSON object keyed by key column name.
    pub fn key_json(&self, key: &[Value]) -> Json {
        self.to_json(key)
    }

    /// A reader of `row`'s values in column order, for converting it into a typed row.
    pub fn cells(&'static self, row: Row) -> Result<Cells, RowError> {
        self.check(&row)?;
        Ok(Cells {
            spec: self,
            values: row.into_iter(),
            at: 0,
        })
    }
}

/// The values of one row taken in column order, typed: `text()`, `opt_time()`, ...
pub struct Cells {
    spec: &'static TableSpec,
    values: std::vec::IntoIter<Value>,
    at: usize,
}

impl Cells {
    fn next(&mut self) -> (Value, &'static str) {
        let column = self.spec.columns.get(self.at).map_or("?", |c| c.name);
        self.at += 1;
        (self.values.next().unwrap_or(Value::Null), column)
    }

    fn wrong(&self, column: &'static str, found: Value) -> RowError {
        RowError::Type {
            table: self.spec.name,
            column,
            found,
        }
    }

    /// The next value, a text.
    pub fn text(&mut self) -> Result<String, RowError> {
        match self.next() {
            (Value::Text(s), _) => Ok(s),
            (other, column) => Err(self.wrong(column, other)),
        }
    }

    /// The next value, a text or null.
    pub fn opt_text(&mut self) -> Result<Option<String>, RowError> {
        match self.next() {
            (Value::Text(s), _) => Ok(Some(s)),
            (Value::Null, _) => Ok(None),
            (other, column) => Err(self.wrong(column, other)),
        }
    }

    /// The next value, an integer.
    pub fn int(&mut self) -> Result<i64, RowError> {
        match self.next() {
            (Value::Int(n), _) => Ok(n),
            (other, column) => Err(self.wrong(column, other)),
        }
    }

    /// The next value, a non-negative integer.
    pub fn uint(&mut self) -> Result<u64, RowError> {
        match self.next() {
            (Value::Int(n), column) => {
                u64::try_from(n).map_err(|_| self.wrong(column, Value::Int(n)))
            }
            (other, column) => Err(self.wrong(column, other)),
        }
    }

    /// The next value, a time.
    pub fn time(&mut self) -> Result<DateTime<Utc>, RowError> {
        match self.next() {
            (Value::Time(t), _) => Ok(t),
            (other, column) => Err(self.wrong(column, other)),
        }
    }

    /// The next value, a time or null.
    pub fn opt_time(&mut self) -> Result<Option<DateTime<Utc>>, RowError> {
        match self.next() {
            (Value::Time(t), _) => Ok(Some(t)),
            (Value::Null, _) => Ok(None),
            (other, column) => Err(self.wrong(column, other)),
        }
    }
}

/// A typed row of one table, converted to and from the generic [`Row`] in column order.
pub trait Record: Sized {
    /// The table the rows belong to.
    const TABLE: &'static TableSpec;

    /// Reads a row of [`Self::TABLE`].
    fn from_row(row: Row) -> Result<Self, RowError>;

    /// The row's values in column order.
    fn into_row(self) -> Row;

    /// The row's key.
    fn key(&self) -> Key;
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::spec::Column;

    static SPEC: TableSpec = TableSpec {
        name: "things",
        columns: &[
            Column::text("id"),
            Column::int("n"),
            Column::time("at").nullable(),
            Column::text("note").nullable(),
        ],
        key: 1,
        indexes: &[],
    };

    #[test]
    fn rows_are_checked_and_read_in_column_order() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        let row = vec![Value::text("a"), Value::Int(3), Value::time(t), Value::Null];
        assert_eq!(SPEC.check(&row), Ok(()));
        assert_eq!(SPEC.key_of(&row), vec![Value::text("a")]);
        let json = SPEC.to_json(&row);
        assert_eq!(json["at"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(json["note"], Json::Null);
        let mut cells = SPEC.cells(row).unwrap();
        assert_eq!(cells.text().unwrap(), "a");
        assert_eq!(cells.uint().unwrap(), 3);
        assert_eq!(
            cells.opt_time().unwrap().unwrap().timestamp_subsec_nanos(),
            123_456_000
        );
        assert_eq!(cells.opt_text().unwrap(), None);
        let short = vec![Value::text("a")];
        assert!(matches!(SPEC.check(&short), Err(RowError::Width { .. })));
        let null_key = vec![Value::Null, Value::Int(1), Value::Null, Value::Null];
        assert!(matches!(
            SPEC.check(&null_key),
            Err(RowError::Type { column: "id", .. })
        ));
        let wrong = vec![Value::text("a"), Value::text("3"), Value::Null, Value::Null];
        assert!(SPEC.cells(wrong).is_err());
        let negative = vec![Value::text("a"), Value::Int(-1), Value::Null, Value::Null];
        let mut cells = SPEC.cells(negative).unwrap();
        cells.text().unwrap();
        assert!(cells.uint().is_err());
    }

    #[test]
    fn keys_order_like_the_tables() {
        let mut keys = [
            vec![Value::text("b")],
            vec![Value::text("B")],
            vec![Value::text("a"), Value::Int(10)],
            vec![Value::text("a"), Value::Int(9)],
        ];
        keys.sort();
        assert_eq!(keys[0], vec![Value::text("B")]);
        assert_eq!(keys[1], vec![Value::text("a"), Value::Int(9)]);
        assert_eq!(
            micros(Utc.timestamp_opt(5, 999_999_999).unwrap()).timestamp_subsec_nanos(),
            999_999_000
        );
        assert_eq!(Value::uint(u64::MAX), Value::Int(i64::MAX));
    }
}
