//! Write transactions held open by the caller, on the writer connection.

use std::sync::Arc;

use ledger_core::{
    AppendResult, AppendTx, BoxFuture, ExpectedSeq, Limits, NewEvent, StoreError, StreamName,
    validate_batch,
};
use sqlx::{Sqlite, Transaction};

use crate::append::{self, Batch};
use crate::error::store_err;
use crate::store::Inner;

/// An open `BEGIN IMMEDIATE` transaction on the writer connection; other writers of this
/// process wait for the connection until it ends.
pub(crate) struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
    limits: Limits,
    inner: Arc<Inner>,
}

impl SqliteTx {
    /// Wraps an open write transaction of the store `inner`, which records its outcome.
    pub(crate) fn new(tx: Transaction<'static, Sqlite>, inner: Arc<Inner>) -> Self {
        let limits = inner.options.limits;
        Self { tx, limits, inner }
    }
}

impl AppendTx for SqliteTx {
    fn append(
        &mut self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            validate_batch(&events, &self.limits)?;
            let batch = Batch::encode(stream.clone(), expected, events)?;
            // The cached head would be stale after the commit; the next append reads it.
            self.inner.heads.forget(stream.as_str());
            append::append_in_tx(&mut self.tx, &batch, &self.limits)
                .await
                .map(|(result, _)| result)
                .map_err(|e| self.inner.health.failed(e))
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        let Self { tx, inner, .. } = *self;
        Box::pin(async move { inner.health.record(tx.commit().await.map_err(store_err)) })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.rollback().await.map_err(store_err) })
    }
}
