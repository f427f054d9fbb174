//! What every backend checks before it touches storage for a read model, as a store error: a
//! malformed spec, a copy or a table addressed with another read model's schema, a query that
//! names a column its table lacks, compares with a value of another type, lists more than
//! [`MAX_IN_VALUES`] values to match, or pages after something that is no key of its table.
//! These are bugs of the caller, never of the data.

use ledger_core::StoreError;

use crate::spec::{Schema, TableSpec};
use crate::store::{Condition, MAX_IN_VALUES, Query, Target};
use crate::value::Value;

/// `schema` is well formed (see [`Schema::validate`]).
pub fn schema_usable(schema: &Schema) -> Result<(), StoreError> {
    schema
        .validate()
        .map_err(|e| StoreError::backend_with("a read model's tables cannot be built", e))
}

/// `table` is well formed (see [`TableSpec::validate`]).
pub fn table_usable(table: &TableSpec) -> Result<(), StoreError> {
    table
        .validate()
        .map_err(|e| StoreError::backend_with("a read model's tables cannot be built", e))
}

/// `target` is a copy of `schema`.
pub fn copy_of(schema: &Schema, target: &Target) -> Result<(), StoreError> {
    if target.name == schema.name {
        return Ok(());
    }
    Err(StoreError::backend(format!(
        "a copy of {} was addressed with the tables of {}",
        target.name, schema.name
    )))
}

/// `table` is one of `schema`'s tables.
pub fn table_of(schema: &Schema, table: &TableSpec) -> Result<(), StoreError> {
    if schema.tables.iter().any(|t| t == table) {
        return Ok(());
    }
    Err(StoreError::backend(format!(
        "table {} is not a table of {}",
        table.name, schema.name
    )))
}

impl Query {
    /// Checks the query against its table: every condition names one of its columns and
    /// compares it with values of the column's type, its `In` lists hold at most
    /// [`MAX_IN_VALUES`] values together, and `after` is a whole key.
    pub fn check(&self) -> Result<(), StoreError> {
        let spec = self.table;
        let listed: usize = self
            .conditions
            .iter()
            .map(|c| match c {
                Condition::In(_, values) => values.len(),
                _ => 0,
            })
            .sum();
        if listed > MAX_IN_VALUES {
            return Err(StoreError::backend(format!(
                "a query of {} lists {listed} values to match, more than {MAX_IN_VALUES}",
                spec.name
            )));
        }
        for condition in &self.conditions {
            let Some(i) = spec.column(condition.column()) else {
                return Err(StoreError::backend(format!(
                    "a query of {} names no column of it: {}",
                    spec.name,
                    condition.column()
                )));
            };
            let values = match condition {
                Condition::Eq(_, v)
                | Condition::Gt(_, v)
                | Condition::Ge(_, v)
                | Condition::Lt(_, v)
                | Condition::Le(_, v) => std::slice::from_ref(v),
                Condition::In(_, values) => values.as_slice(),
                Condition::IsNull(_) => continue,
            };
            if let Some(value) = values.iter().find(|v| !v.fits(spec.columns[i].ty)) {
                return Err(StoreError::backend(format!(
                    "a query of {} compares column {} with {value:?}",
                    spec.name, spec.columns[i].name
                )));
            }
        }
        if let Some(after) = &self.after {
            let key = spec.key_columns();
            let fits = after
                .iter()
                .zip(key)
                .all(|(v, c)| *v != Value::Null && v.fits(c.ty));
            if after.len() != key.len() || !fits {
                return Err(StoreError::backend(format!(
                    "a query of {} pages after {after:?}, which is no key of it",
                    spec.name
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{Column, Slot};

    static T: TableSpec = TableSpec {
        name: "t",
        columns: &[Column::text("id"), Column::int("n")],
        key: 1,
        indexes: &[],
    };
    static S: Schema = Schema {
        name: "s",
        version: 1,
        tables: &[T],
    };
    static OTHER: TableSpec = TableSpec {
        name: "u",
        columns: &[Column::text("id")],
        key: 1,
        indexes: &[],
    };

    #[test]
    fn bad_addresses_and_queries_are_backend_errors() {
        assert!(schema_usable(&S).is_ok() && table_usable(&T).is_ok());
        assert!(table_of(&S, &T).is_ok());
        assert_eq!(table_of(&S, &OTHER).unwrap_err().code(), "internal");
        let target = Target {
            name: "x".into(),
            slot: Slot::Live,
            generation: 1,
            position: ledger_core::Position::START,
            events: 0,
        };
        assert!(copy_of(&S, &target).is_err());
        assert!(
            Query::new(&T, 1)
                .when(Condition::Eq("n", Value::Int(1)))
                .check()
                .is_ok()
        );
        for bad in [
            Query::new(&T, 1).when(Condition::IsNull("nope")),
            Query::new(&T, 1).when(Condition::Gt("n", Value::text("1"))),
            Query::new(&T, 1).after(Some(vec![])),
            Query::new(&T, 1).after(Some(vec![Value::Null])),
            Query::new(&T, 1).after(Some(vec![Value::Int(1)])),
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn in_lists_are_typed_and_bounded() {
        let listed = |n: usize| (0..n).map(|i| Value::Int(i as i64)).collect::<Vec<_>>();
        for good in [
            Query::new(&T, 1).when(Condition::In("n", vec![])),
            Query::new(&T, 1).when(Condition::In("n", vec![Value::Int(1)])),
            Query::new(&T, 1).when(Condition::In("n", vec![Value::Int(1), Value::Null])),
            Query::new(&T, 1).when(Condition::In(
                "id",
                vec![Value::text("a"), Value::text("b")],
            )),
            Query::new(&T, 1).when(Condition::In("n", listed(MAX_IN_VALUES))),
            Query::new(&T, 1)
                .when(Condition::In("n", listed(MAX_IN_VALUES - 1)))
                .when(Condition::In("id", vec![Value::text("a")]))
                .when(Condition::Eq("n", Value::Int(1))),
        ] {
            assert!(good.check().is_ok(), "{:?}", good.conditions.len());
        }
        let mistyped = Query::new(&T, 1).when(Condition::In(
            "n",
            vec![Value::Int(1), Value::text("2"), Value::Int(3)],
        ));
        let err = mistyped.check().unwrap_err();
        assert_eq!(err.code(), "internal");
        assert!(
            err.to_string().contains("column n with Text(\"2\")"),
            "{err}"
        );
        let unknown = Query::new(&T, 1).when(Condition::In("nope", vec![Value::Int(1)]));
        assert!(unknown.check().is_err());
        for (too_many, what) in [
            (
                Query::new(&T, 1).when(Condition::In("n", listed(MAX_IN_VALUES + 1))),
                "one list",
            ),
            (
                Query::new(&T, 1)
                    .when(Condition::In("n", listed(MAX_IN_VALUES)))
                    .when(Condition::In("n", listed(1))),
                "two lists together",
            ),
        ] {
            let err = too_many.check().unwrap_err();
            assert_eq!(err.code(), "internal", "{what}");
            assert!(
                err.to_string().contains(&format!(
                    "lists {} values to match, more than {MAX_IN_VALUES}",
                    MAX_IN_VALUES + 1
                )),
                "{what}: {err}"
            );
        }
        assert_eq!(MAX_IN_VALUES, 30_000);
    }
}
