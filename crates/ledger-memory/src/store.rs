//! The in-memory store.

use std::sync::{Arc, RwLock};

use futures::StreamExt;
use ledger_core::{
    AppendResult, AppendTx, BoxFuture, Envelope, EventStore, EventStream, ExpectedSeq, NewEvent,
    Position, ReadAll, Seq, StoreError, StoreOptions, StreamAppend, StreamName, TransactionalStore,
    validate_appends,
};
use tokio::sync::Mutex;

use crate::log::Log;
use crate::projection::MemoryProjections;
use crate::tx::MemoryTx;

/// An event store held in process memory; clones share the same log.
#[derive(Clone, Default)]
pub struct MemoryStore {
    pub(crate) shared: Arc<Shared>,
}

/// State shared by clones and open transactions.
#[derive(Default)]
pub(crate) struct Shared {
    /// The committed log.
    pub(crate) log: RwLock<Log>,
    /// Held by whoever writes, so a transaction can stage appends across awaits.
    pub(crate) writer: Arc<Mutex<()>>,
    /// Limits and page size.
    pub(crate) options: StoreOptions,
    /// The read models kept beside this log.
    pub(crate) projections: MemoryProjections,
    /// The key table (see `crate::keys`).
    pub(crate) keys: crate::keys::Keys,
}

impl MemoryStore {
    /// An empty store with default options.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store with the given options.
    pub fn with_options(options: StoreOptions) -> Self {
        Self {
            shared: Arc::new(Shared {
                options,
                ..Shared::default()
            }),
        }
    }

    /// The read models kept beside this log (every call returns the same tables).
    pub fn projections(&self) -> MemoryProjections {
        self.shared.projections.clone()
    }

    /// Runs `pick` on the committed log under its read lock.
    fn page<T>(
        shared: &Shared,
        pick: impl FnOnce(&Log) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        pick(&shared.log.read().expect("memory log lock poisoned"))
    }
}

impl EventStore for MemoryStore {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        let appends = vec![StreamAppend::new(stream, expected, events)];
        Box::pin(async move { Ok(self.append_multi(appends).await?.remove(0)) })
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        Box::pin(async move {
            let limits = &self.shared.options.limits;
            validate_appends(&appends, limits)?;
            let _writer = self.shared.writer.lock().await;
            let mut log = self.shared.log.write().expect("memory log lock poisoned");
            let mut staged = Vec::new();
            let mut results = Vec::with_capacity(appends.len());
            for a in &appends {
                let planned = log.plan(&staged, &a.stream, a.expected, &a.events, limits)?;
                results.push(planned.result(&a.stream));
                staged.extend(planned.into_envelopes());
            }
            log.commit(staged);
            Ok(results)
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(async move {
            let log = self.shared.log.read().expect("memory log lock poisoned");
            Ok(Seq(log.streams.get(&stream).map_or(0, |v| v.len() as u64)))
        })
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        let shared = self.shared.clone();
        let page = shared.options.read_page_size.max(1);
        async_stream::try_stream! {
            // Seqs are 1-based and gapless, so seq n sits at index n - 1 of the stream.
            let mut next = from.0.max(1) as usize - 1;
            loop {
                let batch = MemoryStore::page(&shared, |log| {
                    let Some(idx) = log.streams.get(&stream) else { return Ok(Vec::new()) };
                    Ok(idx.iter().skip(next).take(page).map(|&i| log.events[i].clone()).collect())
                })?;
                let done = batch.len() < page;
                next += batch.len();
                for e in batch {
                    yield e;
                }
                if done {
                    break;
                }
            }
        }
        .boxed()
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        let shared = self.shared.clone();
        let page = shared.options.read_page_size.max(1);
        async_stream::try_stream! {
            let mut after = query.after;
            loop {
                let (batch, scanned_to, done) = MemoryStore::page(&shared, |log| {
                    let start = start_index(log, after)?;
                    let mut batch = Vec::new();
                    let mut last = after;
                    let mut scanned = 0;
                    for e in log.events[start..].iter().take(page) {
                        scanned += 1;
                        last = e.position;
                        if matches(&query, e) {
                            batch.push(e.clone());
                        }
                    }
                    Ok((batch, last, scanned < page))
                })?;
                after = scanned_to;
                for e in batch {
                    yield e;
                }
                if done {
                    break;
                }
            }
        }
        .boxed()
    }
}

/// Index of the first event after `after`; `after` must be the start or a stored position.
fn start_index(log: &Log, after: Position) -> Result<usize, StoreError> {
    if after == Position::START {
        return Ok(0);
    }
    log.events
        .binary_search_by_key(&after, |e| e.position)
        .map(|i| i + 1)
        .map_err(|_| StoreError::UnknownPosition(after.0))
}

/// Whether `e` passes the read's category and type filters.
fn matches(query: &ReadAll, e: &Envelope) -> bool {
    query
        .category
        .as_deref()
        .is_none_or(|c| e.stream.category() == c)
        && query
            .event_type
            .as_deref()
            .is_none_or(|t| e.event_type == t)
}

impl TransactionalStore for MemoryStore {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AppendTx>, StoreError>> {
        Box::pin(async move {
            let guard = self.shared.writer.clone().lock_owned().await;
            Ok(Box::new(MemoryTx::new(self.shared.clone(), guard)) as Box<dyn AppendTx>)
        })
    }
}
