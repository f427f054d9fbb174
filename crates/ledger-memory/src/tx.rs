//! Transactions of the in-memory store: appends staged while the writer lock is held.

use std::sync::Arc;

use ledger_core::{
    AppendResult, AppendTx, BoxFuture, Envelope, ExpectedSeq, NewEvent, StoreError, StreamName,
};
use tokio::sync::OwnedMutexGuard;

use crate::store::Shared;

/// An open in-memory write transaction; other writers wait until it ends.
pub(crate) struct MemoryTx {
    shared: Arc<Shared>,
    _writer: OwnedMutexGuard<()>,
    staged: Vec<Envelope>,
}

impl MemoryTx {
    /// A transaction holding the writer lock.
    pub(crate) fn new(shared: Arc<Shared>, writer: OwnedMutexGuard<()>) -> Self {
        Self {
            shared,
            _writer: writer,
            staged: Vec::new(),
        }
    }
}

impl AppendTx for MemoryTx {
    fn append(
        &mut self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            let limits = self.shared.options.limits;
            let log = self.shared.log.read().expect("memory log lock poisoned");
            let planned = log.plan(&self.staged, &stream, expected, &events, &limits)?;
            drop(log);
            let result = planned.result(&stream);
            self.staged.extend(planned.into_envelopes());
            Ok(result)
        })
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let mut log = self.shared.log.write().expect("memory log lock poisoned");
            log.commit(self.staged);
            Ok(())
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { Ok(()) })
    }
}
