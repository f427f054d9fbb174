//! Typed rows over the engine's generic ones: changing a row in a fold, reading a page.

use ledger_core::StoreError;
use ledger_projector::{ProjectionStore, Query, Record, RowError, Rows, Value};

/// Changes the typed row of `key` in table `table` of a fold: `f` gets the row (`None`: there
/// is none) and may change, create or remove it. The row's values are moved, not copied.
pub(crate) fn update<R: Record, T>(
    rows: &mut Rows,
    table: usize,
    key: &[Value],
    f: impl FnOnce(&mut Option<R>) -> T,
) -> Result<T, RowError> {
    rows.update(table, key, |row| {
        let mut typed = row.take().map(R::from_row).transpose()?;
        let out = f(&mut typed);
        *row = typed.map(R::into_row);
        Ok(out)
    })?
}

/// Runs `query` and reads its rows as `R`s (a row that does not read is a backend error: the
/// table does not hold what its spec says).
pub(crate) async fn query<R: Record>(
    store: &dyn ProjectionStore,
    query: Query,
) -> Result<Vec<R>, StoreError> {
    let rows = store.query(&query).await?;
    rows.into_iter()
        .map(|row| {
            R::from_row(row).map_err(|e| StoreError::Backend {
                message: format!("the table {} holds an unreadable row: {e}", R::TABLE.name),
                source: Some(Box::new(e)),
            })
        })
        .collect()
}

/// A key of one text value.
pub(crate) fn text_key(text: &str) -> [Value; 1] {
    [Value::Text(text.to_string())]
}

#[cfg(test)]
pub(crate) mod fake {
    //! A projection store that answers queries from rows held in memory, and fails the rest.

    use std::sync::Mutex;

    use futures::StreamExt;
    use futures::stream::BoxStream;
    use ledger_core::{BoxFuture, Position, StoreError};
    use ledger_projector::{
        ApplyTx, Checkpoint, Lease, ProjectionStore, Query, Row, Schema, Slot, Snapshot, Swapped,
        Tables, Target,
    };

    /// Rows of every table in memory; only [`ProjectionStore::query`] works.
    pub(crate) struct FakeStore {
        tables: Tables,
        /// The queries asked, in order.
        pub(crate) asked: Mutex<Vec<Query>>,
    }

    impl FakeStore {
        /// A store holding `tables`.
        pub(crate) fn new(tables: Tables) -> Self {
            Self {
                tables,
                asked: Mutex::new(Vec::new()),
            }
        }
    }

    fn refused<'a, T: Send + 'a>() -> BoxFuture<'a, Result<T, StoreError>> {
        Box::pin(async {
            Err(StoreError::InvalidInput(
                "the fake store only queries".into(),
            ))
        })
    }

    impl ProjectionStore for FakeStore {
        fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
            refused()
        }
        fn checkpoint<'a>(
            &'a self,
            _: &'a str,
            _: Slot,
        ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
            refused()
        }
        fn create<'a>(
            &'a self,
            _: &'static Schema,
            _: Slot,
        ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
            refused()
        }
        fn drop_rebuild(&self, _: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>> {
            refused()
        }
        fn begin<'a>(
            &'a self,
            _: &'static Schema,
            _: &'a Target,
            _: Position,
            _: u64,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<Box<dyn ApplyTx>>, StoreError>> {
            refused()
        }
        fn build_indexes<'a>(
            &'a self,
            _: &'static Schema,
            _: &'a Target,
        ) -> BoxFuture<'a, Result<(), StoreError>> {
            refused()
        }
        fn swap<'a>(
            &'a self,
            _: &'static Schema,
            _: &'a Target,
        ) -> BoxFuture<'a, Result<Swapped, StoreError>> {
            refused()
        }
        fn snapshot(
            &self,
            _: &'static Schema,
        ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
            refused()
        }
        fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
            self.asked.lock().unwrap().push(query.clone());
            let rows = self
                .tables
                .page(query.table, query.after.as_ref(), query.limit, |row| {
                    query.passes(row)
                });
            Box::pin(async move { Ok(rows) })
        }
        fn lease<'a>(
            &'a self,
            _: &'a str,
        ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>> {
            refused()
        }
        fn wakeups(&self) -> BoxStream<'static, ()> {
            futures::stream::pending().boxed()
        }
        fn poll_interval(&self) -> std::time::Duration {
            std::time::Duration::from_secs(1)
        }
    }
}
