//! What every backend checks before it touches storage for a read model, as a store error: a
//! malformed spec, a copy or a table addressed with another read model's schema, a query that
//! names a column its table lacks, compares with a value of another type, or pages after
//! something that is no key of its table. These are bugs of the caller, never of the data.

use ledger_core::StoreError;

use crate::spec::{Schema, TableSpec};
use crate::store::{Condition, Query, Target};
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
    /// compares it with a value of the column's type, and `after` is a whole key.
    pub fn check(&self) -> Result<(), StoreError> {
        let spec = self.table;
        for condition in &self.conditions {
            let Some(i) = spec.column(condition.column()) else {
                return Err(StoreError::backend(format!(
                    "a query of {} names no column of it: {}",
                    spec.name,
                    condition.column()
                )));
            };
            let value = match condition {
                Condition::Eq(_, v)
                | Condition::Gt(_, v)
                | Condition::Ge(_, v)
                | Condition::Lt(_, v)
                | Condition::Le(_, v) => v,
                Condition::IsNull(_) => continue,
            };
            if !value.fits(spec.columns[i].ty) {
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
}
