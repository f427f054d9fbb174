//! The in-process signal that wakes runners (and live progress streams) as soon as this
//! process appends, instead of at their next poll.

use std::sync::Arc;

use ledger_core::{
    AppendResult, BoxFuture, EventStore, EventStream, ExpectedSeq, NewEvent, ReadAll, Seq,
    StoreError, StreamAppend, StreamName,
};
use tokio::sync::watch;

/// A counter of appends made in this process; receivers wake when it moves.
#[derive(Clone, Debug)]
pub struct Signal(Arc<watch::Sender<u64>>);

impl Default for Signal {
    fn default() -> Self {
        Self::new()
    }
}

impl Signal {
    /// A new signal.
    pub fn new() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }

    /// Tells every receiver that something was appended.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that wakes (`changed()`) after the next [`notify`](Self::notify).
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// An event store that fires a [`Signal`] after every successful append.
pub struct SignalingStore<S> {
    inner: S,
    signal: Signal,
}

impl<S> SignalingStore<S> {
    /// `inner`, firing `signal` after its appends.
    pub fn new(inner: S, signal: Signal) -> Self {
        Self { inner, signal }
    }
}

impl<S: EventStore> EventStore for SignalingStore<S> {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            let result = self.inner.append(stream, expected, events).await;
            if matches!(&result, Ok(r) if !r.replayed) {
                self.signal.notify();
            }
            result
        })
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        Box::pin(async move {
            let result = self.inner.append_multi(appends).await;
            if result.is_ok() {
                self.signal.notify();
            }
            result
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        self.inner.stream_seq(stream)
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        self.inner.read_stream(stream, from)
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        self.inner.read_all(query)
    }

    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        self.inner.write_fault()
    }
}
