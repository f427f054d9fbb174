//! Following one tenant's stream for a live answer (`GET /v1/tenants/{id}/progress`, the
//! console's progress page): woken by this process's appends (the projector's signal) or, for
//! other processes' appends, by a poll; each read continues after the last event read.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use ledger_commands::tenant_stream;
use ledger_core::{EventStore, Seq, StoreError, StreamName};
use ledger_domain::TenantEvent;
use tokio::sync::watch;
use uuid::Uuid;

use crate::state::AppState;

/// A tenant's stream, followed after a seq.
pub(crate) struct TenantFollower {
    store: Arc<dyn EventStore>,
    stream: StreamName,
    seq: Seq,
    signal: Option<watch::Receiver<u64>>,
    poll: Duration,
}

impl TenantFollower {
    /// Follows `tenant`'s stream after `seq`, read as `state` reads it (personal fields open).
    pub(crate) fn new(state: &AppState, tenant: Uuid, seq: Seq) -> Self {
        Self {
            store: state.store.clone(),
            stream: tenant_stream(tenant),
            seq,
            signal: state
                .projector
                .as_ref()
                .and_then(|p| p.signal())
                .map(|s| s.subscribe()),
            poll: state.config.progress_poll,
        }
    }

    /// The seq of the last event read.
    pub(crate) fn seq(&self) -> Seq {
        self.seq
    }

    /// Waits for an append of this process or the poll interval.
    pub(crate) async fn wake(&mut self) {
        let signal = &mut self.signal;
        let changed = async {
            let alive = match signal.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !alive {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = changed => {}
            () = tokio::time::sleep(self.poll) => {}
        }
    }

    /// The tenant's events appended since the last read, in order with their seqs (events of
    /// other types are passed over). On a failed read nothing counts as read: the next read
    /// starts from the same place.
    pub(crate) async fn read(&mut self) -> Result<Vec<(Seq, TenantEvent)>, StoreError> {
        let mut log = self
            .store
            .read_stream(self.stream.clone(), self.seq.plus(1));
        let mut events = Vec::new();
        let mut last = self.seq;
        while let Some(envelope) = log.next().await {
            let envelope = envelope?;
            last = envelope.seq;
            if let Ok(event) = TenantEvent::from_parts(&envelope.event_type, &envelope.data) {
                events.push((envelope.seq, event));
            }
        }
        self.seq = last;
        Ok(events)
    }
}
