//! Loading a tenant stream and folding it into state.

use futures::TryStreamExt;
use ledger_core::{Envelope, EventStore, Position, Seq, StreamName};
use ledger_domain::{TenantEvent, TenantState, evolve};
use uuid::Uuid;

use crate::ExecuteError;

/// The stream of a tenant: `tenant-<uuid>`.
pub fn tenant_stream(tenant_id: Uuid) -> StreamName {
    StreamName::from_parts("tenant", &tenant_id.to_string()).expect("a uuid is a valid stream id")
}

/// The stream claiming `slug` for one tenant: `slug-<slug>`; `None` for a slug that is no
/// stream id.
pub fn slug_stream(slug: &str) -> Option<StreamName> {
    StreamName::from_parts("slug", slug).ok()
}

/// A tenant stream as loaded: its envelopes, the folded state, and where it ends.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    /// The stream's events in seq order.
    pub envelopes: Vec<Envelope>,
    /// The state folded from them.
    pub state: TenantState,
    /// The stream's seq (0 when empty).
    pub seq: Seq,
    /// The global position of the stream's last event (0 when empty).
    pub position: Position,
}

impl Loaded {
    /// Reads the whole tenant stream and folds it.
    pub async fn read<S: EventStore + ?Sized>(
        store: &S,
        stream: &StreamName,
    ) -> Result<Loaded, ExecuteError> {
        let mut loaded = Loaded::default();
        let mut events = store.read_stream(stream.clone(), Seq(1));
        while let Some(envelope) = events.try_next().await? {
            loaded.push(envelope)?;
        }
        Ok(loaded)
    }

    /// Folds one more stored event in.
    pub fn push(&mut self, envelope: Envelope) -> Result<(), ExecuteError> {
        let event = decode(&envelope)?;
        self.state = evolve(std::mem::take(&mut self.state), &event);
        self.seq = envelope.seq;
        self.position = envelope.position;
        self.envelopes.push(envelope);
        Ok(())
    }

    /// The state as it was right after the event at `seq`.
    pub fn state_at(&self, seq: Seq) -> Result<TenantState, ExecuteError> {
        let mut state = TenantState::default();
        for envelope in self.envelopes.iter().take_while(|e| e.seq <= seq) {
            state = evolve(state, &decode(envelope)?);
        }
        Ok(state)
    }
}

/// Decodes a stored envelope into an onboarding event.
pub fn decode(envelope: &Envelope) -> Result<TenantEvent, ExecuteError> {
    TenantEvent::from_parts(&envelope.event_type, &envelope.data).map_err(|e| {
        ExecuteError::CorruptHistory {
            stream: envelope.stream.clone(),
            seq: envelope.seq,
            reason: e.reason,
        }
    })
}
