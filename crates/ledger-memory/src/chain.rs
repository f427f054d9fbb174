//! The hash chains of the in-memory log: walks, exports, heads and imports, as the database
//! backends offer them.

use futures::StreamExt;
use ledger_core::chain::{ChainScope, ChainStream, ChainedEvent, StreamHead};
use ledger_core::{BoxFuture, ChainLog, Position, Seq, StoreError, StreamName};

use crate::log::Log;
use crate::store::MemoryStore;

impl Log {
    /// The event at `index` with its links.
    fn chained(&self, index: usize) -> ChainedEvent {
        let (prev, hash) = self.links[index];
        ChainedEvent {
            envelope: self.events[index].clone(),
            prev_hash: Some(prev),
            hash: Some(hash),
        }
    }
}

impl MemoryStore {
    /// A snapshot of the events `pick` chooses from the committed log, with their links.
    fn snapshot(&self, pick: impl FnOnce(&Log) -> Vec<usize>) -> Vec<ChainedEvent> {
        let log = self.shared.log.read().expect("memory log lock poisoned");
        pick(&log).into_iter().map(|i| log.chained(i)).collect()
    }
}

impl ChainLog for MemoryStore {
    fn chains(&self, scope: ChainScope) -> ChainStream {
        let events = self.snapshot(|log| {
            let mut names: Vec<&StreamName> = match &scope.stream {
                Some(stream) => log
                    .streams
                    .get_key_value(stream)
                    .map(|(k, _)| k)
                    .into_iter()
                    .collect(),
                None => log.streams.keys().collect(),
            };
            names.sort_unstable_by(|a, b| a.as_str().cmp(b.as_str()));
            names
                .into_iter()
                .flat_map(|name| log.streams[name].iter().copied())
                .filter(|&i| log.events[i].position > scope.after)
                .collect()
        });
        futures::stream::iter(events.into_iter().map(Ok)).boxed()
    }

    fn chained_log(&self, after: Position) -> ChainStream {
        let events = self.snapshot(|log| {
            (0..log.events.len())
                .filter(|&i| log.events[i].position > after)
                .collect()
        });
        futures::stream::iter(events.into_iter().map(Ok)).boxed()
    }

    fn stream_head(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StreamHead>, StoreError>> {
        let head = self.snapshot(|log| {
            log.streams
                .get(&stream)
                .and_then(|v| v.last().copied())
                .into_iter()
                .collect()
        });
        Box::pin(async move {
            Ok(head.into_iter().next().map(|e| StreamHead {
                hash: e.hash.expect("the memory log chains every event"),
                seq: e.envelope.seq,
                position: e.envelope.position,
                stream,
            }))
        })
    }

    fn chained_at(
        &self,
        stream: StreamName,
        seq: Seq,
    ) -> BoxFuture<'_, Result<Option<ChainedEvent>, StoreError>> {
        let found = self.snapshot(|log| {
            let index = (seq.0 as usize).checked_sub(1);
            log.streams
                .get(&stream)
                .and_then(|v| index.and_then(|i| v.get(i)).copied())
                .into_iter()
                .collect()
        });
        Box::pin(async move { Ok(found.into_iter().next()) })
    }

    fn import(&self, mut events: ChainStream) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let mut loaded = Vec::new();
            while let Some(event) = events.next().await {
                loaded.push(event?);
            }
            let _writer = self.shared.writer.lock().await;
            let mut log = self.shared.log.write().expect("memory log lock poisoned");
            if !log.events.is_empty() {
                return Err(StoreError::InvalidInput(
                    "the target log is not empty: an import loads into an empty database".into(),
                ));
            }
            if let Some(e) = loaded
                .iter()
                .find(|e| e.hash.is_none() || e.prev_hash.is_none())
            {
                return Err(StoreError::InvalidInput(format!(
                    "event {} of {} has no hash",
                    e.envelope.seq, e.envelope.stream
                )));
            }
            let n = loaded.len() as u64;
            for e in loaded {
                let links = (e.prev_hash.unwrap_or_default(), e.hash.unwrap_or_default());
                log.load(e.envelope, links);
            }
            Ok(n)
        })
    }
}
