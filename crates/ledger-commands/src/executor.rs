//! The command executor: load, fold, decide, append, rebase on conflict.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use ledger_core::{
    Conflict, EventStore, ExpectedSeq, NewEvent, Position, Seq, StoreError, StreamName,
};
use ledger_domain::{Command, Policy, TenantEvent, TenantState, decide, evolve};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::cache::{Cached, StateCache};
use crate::idempotency::{FINGERPRINT_KEY, KEY_KEY};
use crate::{ExecuteError, Idempotency, Loaded, tenant_stream};

/// Where decisions get the time from.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// Runs onboarding commands against a store.
#[derive(Clone)]
pub struct Executor<S> {
    pub(crate) store: S,
    pub(crate) policy: Policy,
    pub(crate) max_attempts: u32,
    pub(crate) clock: Clock,
    pub(crate) cache: Option<Arc<StateCache>>,
}

/// One command as a caller sends it.
#[derive(Clone, Debug)]
pub struct CommandRequest {
    /// What to do.
    pub command: Command,
    /// The caller's own expected seq: when set it is used as is and a mismatch is a conflict;
    /// when absent the executor rebases on conflicts and decides again.
    pub expected: Option<Seq>,
    /// Metadata for every appended event (actor, request_id, correlation_id, ...).
    pub metadata: Map<String, Value>,
    /// The caller's idempotency key, if any.
    pub idempotency: Option<Idempotency>,
}

impl CommandRequest {
    /// A request with no expectation, metadata or idempotency key.
    pub fn new(command: Command) -> Self {
        Self {
            command,
            expected: None,
            metadata: Map::new(),
            idempotency: None,
        }
    }
}

/// The answer to an executed command.
#[derive(Clone, Debug, PartialEq)]
pub struct Executed {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The stream's seq after the command.
    pub seq: Seq,
    /// The global position of the stream's last event.
    pub position: Position,
    /// Types of the events this command appended (empty when it appended nothing).
    pub appended: Vec<String>,
    /// The tenant's state after the command.
    pub state: TenantState,
    /// True when nothing was appended because the effect was already recorded.
    pub already_done: bool,
    /// True when this answers a retried request with the first request's outcome.
    pub replayed: bool,
}

impl<S: EventStore> Executor<S> {
    /// An executor with the default policy, 10 attempts and the system clock.
    pub fn new(store: S) -> Self {
        Self {
            store,
            policy: Policy::default(),
            max_attempts: 10,
            clock: Arc::new(Utc::now),
            cache: None,
        }
    }

    /// The same executor deciding on the folded states of at most `capacity` tenants kept in
    /// this process (see [`StateCache`]); without one every command reads its tenant's whole
    /// stream.
    pub fn with_state_cache(mut self, capacity: usize) -> Self {
        self.cache = Some(Arc::new(StateCache::new(capacity)));
        self
    }

    /// The cache of folded states, if there is one.
    pub fn state_cache(&self) -> Option<&StateCache> {
        self.cache.as_deref()
    }

    /// The same executor with another policy.
    pub fn with_policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// The same executor with another clock.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The same executor trying at most `attempts` times when other writers win.
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The underlying store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The policy decisions use.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Loads and folds a tenant's stream.
    pub async fn load(&self, tenant_id: Uuid) -> Result<Loaded, ExecuteError> {
        Loaded::read(&self.store, &tenant_stream(tenant_id)).await
    }

    /// Executes a command against an existing tenant (registration: [`Self::register`]).
    pub async fn execute(
        &self,
        tenant_id: Uuid,
        request: CommandRequest,
    ) -> Result<Executed, ExecuteError> {
        let stream = tenant_stream(tenant_id);
        // Idempotent retries look for their first outcome in the whole stream.
        let cached = match request.idempotency {
            None => self.cached(tenant_id, request.expected),
            Some(_) => None,
        };
        // A cached state is trusted only once the database agreed with its seq: an append
        // expecting it succeeded or conflicted, or the stream's seq was read.
        let mut fresh = cached.is_none();
        let mut loaded = match cached {
            Some(loaded) => loaded,
            None => Loaded::read(&self.store, &stream).await?,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            if let Some(idem) = &request.idempotency
                && let Some(first) = replay(tenant_id, &stream, &loaded, idem)?
            {
                return Ok(first);
            }
            if let Some(expected) = request.expected
                && expected != loaded.seq
            {
                return Err(stale(&stream, expected, &loaded));
            }
            let decided = decide(
                &request.command,
                &loaded.state,
                (self.clock)(),
                &self.policy,
            );
            // A refusal or a no-op decided on a cached state stands only if nobody wrote since.
            let appends = decided.as_ref().is_ok_and(|d| !d.events.is_empty());
            if !fresh && !appends {
                fresh = true;
                if self.store.stream_seq(stream.clone()).await? != loaded.seq {
                    loaded = Loaded::read(&self.store, &stream).await?;
                    continue;
                }
            }
            self.keep(tenant_id, &loaded);
            let decision = decided?;
            if decision.events.is_empty() {
                return Ok(Executed {
                    tenant_id,
                    seq: loaded.seq,
                    position: loaded.position,
                    appended: Vec::new(),
                    state: loaded.state,
                    already_done: decision.already_done,
                    replayed: false,
                });
            }
            let events = to_new_events(&stream, &decision.events, &request);
            let expected = ExpectedSeq::Exact(loaded.seq);
            match self.store.append(stream.clone(), expected, events).await {
                Ok(result) => {
                    let state = decision.events.iter().fold(loaded.state, evolve);
                    self.keep_state(tenant_id, &state, result.last_seq, result.position);
                    return Ok(Executed {
                        tenant_id,
                        seq: result.last_seq,
                        position: result.position,
                        appended: types(&decision.events),
                        state,
                        already_done: false,
                        replayed: false,
                    });
                }
                Err(StoreError::Conflict(conflict)) => {
                    if request.expected.is_some() || attempt >= self.max_attempts {
                        self.forget(tenant_id);
                        return Err(ExecuteError::Conflict(conflict));
                    }
                    loaded = self.rebase(&stream, loaded, *conflict).await?;
                    fresh = true;
                }
                // A concurrent retry of the same idempotent request won with other timestamps:
                // reload and answer with its outcome.
                Err(StoreError::EventIdReused { .. })
                    if request.idempotency.is_some() && attempt < self.max_attempts =>
                {
                    loaded = Loaded::read(&self.store, &stream).await?;
                }
                Err(e) => {
                    self.forget(tenant_id);
                    return Err(e.into());
                }
            }
        }
    }

    /// The tenant's cached state as a loaded stream without its events, when the cache holds
    /// it (and, for a caller's own expected seq, holds it at that seq).
    fn cached(&self, tenant_id: Uuid, expected: Option<Seq>) -> Option<Loaded> {
        let cached = self.cache.as_ref()?.get(tenant_id)?;
        if expected.is_some_and(|e| e != cached.seq) {
            return None;
        }
        Some(Loaded {
            envelopes: Vec::new(),
            state: cached.state,
            seq: cached.seq,
            position: cached.position,
        })
    }

    /// Keeps a loaded tenant's state in the cache.
    fn keep(&self, tenant_id: Uuid, loaded: &Loaded) {
        self.keep_state(tenant_id, &loaded.state, loaded.seq, loaded.position);
    }

    /// Keeps a tenant's state at `seq` in the cache (an erased tenant's is dropped).
    pub(crate) fn keep_state(
        &self,
        tenant_id: Uuid,
        state: &TenantState,
        seq: Seq,
        position: Position,
    ) {
        // An erased tenant takes no more commands, and its state holds what it had in plain
        // text: it is not kept.
        if state.is_erased() {
            self.forget(tenant_id);
            return;
        }
        if let Some(cache) = &self.cache {
            let cached = Cached {
                state: state.clone(),
                seq,
                position,
            };
            cache.put(tenant_id, cached);
        }
    }

    /// Drops the tenant from the cache (after an erasure, or a failure that says nothing of
    /// where its stream stands).
    pub fn forget(&self, tenant_id: Uuid) {
        if let Some(cache) = &self.cache {
            cache.forget(tenant_id);
        }
    }

    /// Brings `loaded` up to date with the events a conflict says were missed.
    async fn rebase(
        &self,
        stream: &StreamName,
        mut loaded: Loaded,
        conflict: Conflict,
    ) -> Result<Loaded, ExecuteError> {
        let contiguous = conflict
            .missed
            .first()
            .is_none_or(|e| e.seq == loaded.seq.plus(1));
        if conflict.missed_truncated || !contiguous {
            return Loaded::read(&self.store, stream).await;
        }
        for envelope in conflict.missed {
            loaded.push(envelope)?;
        }
        Ok(loaded)
    }
}

/// The conflict for a caller whose expected seq no longer matches the stream.
fn stale(stream: &StreamName, expected: Seq, loaded: &Loaded) -> ExecuteError {
    let missed = loaded
        .envelopes
        .iter()
        .filter(|e| e.seq > expected)
        .cloned()
        .collect();
    let limit = ledger_core::Limits::default().max_missed_events;
    match Conflict::error(
        stream,
        ExpectedSeq::Exact(expected),
        loaded.seq,
        missed,
        limit,
    ) {
        StoreError::Conflict(c) => ExecuteError::Conflict(c),
        other => ExecuteError::Store(other),
    }
}

/// The stored outcome of an earlier request with the same idempotency key, if there is one.
pub(crate) fn replay(
    tenant_id: Uuid,
    stream: &StreamName,
    loaded: &Loaded,
    idem: &Idempotency,
) -> Result<Option<Executed>, ExecuteError> {
    let first_id = idem.event_id(stream.as_str(), 0);
    let Some(first) = loaded.envelopes.iter().find(|e| e.event_id == first_id) else {
        return Ok(None);
    };
    if first.metadata.get(FINGERPRINT_KEY).and_then(Value::as_str) != Some(&idem.fingerprint) {
        return Err(ExecuteError::IdempotencyKeyReused {
            key: idem.key.clone(),
        });
    }
    let ours: Vec<_> = loaded
        .envelopes
        .iter()
        .filter(|e| e.metadata.get(KEY_KEY).and_then(Value::as_str) == Some(&idem.key))
        .filter(|e| e.seq >= first.seq)
        .collect();
    let last = ours.last().expect("the first event is among them");
    Ok(Some(Executed {
        tenant_id,
        seq: last.seq,
        position: last.position,
        appended: ours.iter().map(|e| e.event_type.clone()).collect(),
        state: loaded.state_at(last.seq)?,
        already_done: false,
        replayed: true,
    }))
}

/// The decided events as store events, with ids and metadata.
pub(crate) fn to_new_events(
    stream: &StreamName,
    events: &[TenantEvent],
    request: &CommandRequest,
) -> Vec<NewEvent> {
    let mut metadata = request.metadata.clone();
    if let Some(idem) = &request.idempotency {
        idem.stamp(&mut metadata);
    }
    events
        .iter()
        .enumerate()
        .map(|(i, event)| {
            let (event_type, data) = event.to_parts();
            let new =
                NewEvent::new(event_type, data).with_metadata(Value::Object(metadata.clone()));
            match &request.idempotency {
                Some(idem) => new.with_id(idem.event_id(stream.as_str(), i)),
                None => new,
            }
        })
        .collect()
}

/// The type names of decided events.
pub(crate) fn types(events: &[TenantEvent]) -> Vec<String> {
    events.iter().map(|e| e.event_type().to_string()).collect()
}
