//! Stores seen through the vault: [`SealedStore`] seals personal fields on every append and
//! opens them on every read, [`SealedLog`] opens the global log's whole events. Everything
//! above them (commands, routes, CLI reads) handles plain values; the database holds only
//! ciphertext.

use std::collections::HashSet;
use std::sync::Arc;

use futures::TryStreamExt;
use ledger_core::{
    AppendResult, BoxFuture, Envelope, EventFilter, EventStore, EventStream, ExpectedSeq,
    LogCursor, LogEvent, LogFilter, LogPage, LogReader, NewEvent, Position, ReadAll, Seq,
    StoreError, StreamAppend, StreamName,
};

use crate::vault::{Opener, SealError, Vault, has_personal_fields, subject};

/// Tenants whose keys one read keeps at most before it fetches them again.
const FETCHED_SUBJECTS: usize = 4096;

/// The refusal an append to an erased tenant gets from a store.
fn refused(e: SealError) -> StoreError {
    match e {
        SealError::Erased { tenant, erased_at } => StoreError::Erased {
            subject: tenant,
            erased_at,
        },
        SealError::Store(e) => e,
    }
}

/// An event store whose appends seal personal fields and whose reads open them.
#[derive(Clone)]
pub struct SealedStore {
    inner: Arc<dyn EventStore>,
    vault: Vault,
}

impl SealedStore {
    /// `inner` seen through `vault`.
    pub fn new(inner: Arc<dyn EventStore>, vault: Vault) -> Self {
        Self { inner, vault }
    }

    /// Opens the missed events a conflict carries.
    async fn open_conflict(&self, e: StoreError) -> StoreError {
        match e {
            StoreError::Conflict(mut c) => match self.vault.open_envelopes(&mut c.missed).await {
                Ok(()) => StoreError::Conflict(c),
                Err(e) => e,
            },
            other => other,
        }
    }

    /// Opens a stream of envelopes as it is read, fetching each tenant's key once.
    fn open_stream(&self, mut events: EventStream) -> EventStream {
        let vault = self.vault.clone();
        Box::pin(async_stream::try_stream! {
            let mut opener = Opener::default();
            let mut fetched = HashSet::new();
            while let Some(mut envelope) = events.try_next().await? {
                if let Some(subject) = subject(&envelope).filter(|_| has_personal_fields(&envelope)) {
                    if fetched.len() >= FETCHED_SUBJECTS {
                        fetched.clear();
                        opener = Opener::default();
                    }
                    if fetched.insert(subject.clone()) {
                        opener.extend(vault.opener([subject]).await?);
                    }
                    opener.open_envelope(&mut envelope);
                }
                yield envelope;
            }
        })
    }
}

impl EventStore for SealedStore {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        mut events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            self.vault
                .seal(&stream, &mut events)
                .await
                .map_err(refused)?;
            match self.inner.append(stream, expected, events).await {
                Ok(result) => Ok(result),
                Err(e) => Err(self.open_conflict(e).await),
            }
        })
    }

    fn append_multi(
        &self,
        mut appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        Box::pin(async move {
            for append in &mut appends {
                self.vault
                    .seal(&append.stream, &mut append.events)
                    .await
                    .map_err(refused)?;
            }
            match self.inner.append_multi(appends).await {
                Ok(results) => Ok(results),
                Err(e) => Err(self.open_conflict(e).await),
            }
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        self.inner.stream_seq(stream)
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        self.open_stream(self.inner.read_stream(stream, from))
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        self.open_stream(self.inner.read_all(query))
    }

    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        self.inner.write_fault()
    }
}

/// A global log whose whole events come out opened; pages of raw events (what projections
/// read) stay sealed.
#[derive(Clone)]
pub struct SealedLog {
    inner: Arc<dyn LogReader>,
    vault: Vault,
}

impl SealedLog {
    /// `inner` seen through `vault`.
    pub fn new(inner: Arc<dyn LogReader>, vault: Vault) -> Self {
        Self { inner, vault }
    }
}

impl LogReader for SealedLog {
    fn read_page<'a>(
        &'a self,
        after: Position,
        filter: &'a LogFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<LogPage, StoreError>> {
        self.inner.read_page(after, filter, limit)
    }

    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.log_mark()
    }

    fn covers<'a>(
        &'a self,
        checkpoint: Position,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        self.inner.covers(checkpoint, position, filter)
    }

    fn count_after<'a>(
        &'a self,
        position: Position,
        filter: &'a LogFilter,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        self.inner.count_after(position, filter)
    }

    fn last_position(&self) -> BoxFuture<'_, Result<Position, StoreError>> {
        self.inner.last_position()
    }

    fn read_events<'a>(
        &'a self,
        after: LogCursor,
        filter: &'a EventFilter,
        limit: usize,
    ) -> BoxFuture<'a, Result<Vec<LogEvent>, StoreError>> {
        Box::pin(async move {
            let mut events = self.inner.read_events(after, filter, limit).await?;
            let opener = self
                .vault
                .opener(events.iter().filter_map(|e| subject(&e.envelope)))
                .await?;
            events
                .iter_mut()
                .for_each(|e| opener.open_envelope(&mut e.envelope));
            Ok(events)
        })
    }

    fn cursor_at(&self, position: Position) -> BoxFuture<'_, Result<LogCursor, StoreError>> {
        self.inner.cursor_at(position)
    }

    fn events_at<'a>(
        &'a self,
        positions: &'a [Position],
    ) -> BoxFuture<'a, Result<Vec<Envelope>, StoreError>> {
        Box::pin(async move {
            let mut events = self.inner.events_at(positions).await?;
            self.vault.open_envelopes(&mut events).await?;
            Ok(events)
        })
    }
}
