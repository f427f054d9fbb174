//! Tenant registration: the tenant stream and the slug claim in one atomic append.

use ledger_core::{EventStore, ExpectedSeq, NewEvent, StoreError, StreamAppend};
use ledger_domain::{Command, DomainError, SlugClaimed, TenantState, decide, evolve};
use serde_json::Value;
use uuid::Uuid;

use crate::executor::{replay, to_new_events, types};
use crate::{CommandRequest, ExecuteError, Executed, Executor, Loaded, tenant_stream};

impl<S: EventStore> Executor<S> {
    /// Registers a tenant: appends `TenantRegistered` to `tenant-<id>` and `SlugClaimed` to
    /// `slug-<slug>` atomically, both expecting `no_stream`, so exactly one of many racing
    /// registrations of a slug wins (`slug_taken` for the others).
    ///
    /// `request.command` must be [`Command::RegisterTenant`].
    pub async fn register(
        &self,
        tenant_id: Uuid,
        request: CommandRequest,
    ) -> Result<Executed, ExecuteError> {
        let Command::RegisterTenant { slug, .. } = &request.command else {
            return Err(DomainError::InvalidCommand(format!(
                "register expects register-tenant, not {}",
                request.command.name()
            ))
            .into());
        };
        let decision = decide(
            &request.command,
            &TenantState::default(),
            (self.clock)(),
            &self.policy,
        )?;
        let stream = tenant_stream(tenant_id);
        let slug_stream =
            crate::slug_stream(slug).ok_or_else(|| DomainError::InvalidSlug(slug.clone()))?;
        let tenant_events = to_new_events(&stream, &decision.events, &request);
        let claim = SlugClaimed {
            tenant_id: tenant_id.to_string(),
        };
        let claim_data = serde_json::to_value(&claim).expect("a slug claim serializes");
        let mut claim_event = NewEvent::new(SlugClaimed::TYPE, claim_data)
            .with_metadata(tenant_events[0].metadata.clone());
        if let Some(idem) = &request.idempotency {
            claim_event = claim_event.with_id(idem.event_id(slug_stream.as_str(), 0));
        }
        let appends = vec![
            StreamAppend::new(stream.clone(), ExpectedSeq::NoStream, tenant_events),
            StreamAppend::new(
                slug_stream.clone(),
                ExpectedSeq::NoStream,
                vec![claim_event],
            ),
        ];
        let err = match self.store.append_multi(appends).await {
            Ok(results) => {
                let state = decision.events.iter().fold(TenantState::default(), evolve);
                if !results[0].replayed {
                    self.keep_state(tenant_id, &state, results[0].last_seq, results[0].position);
                }
                return Ok(Executed {
                    tenant_id,
                    seq: results[0].last_seq,
                    position: results[0].position,
                    appended: types(&decision.events),
                    state,
                    already_done: false,
                    replayed: results[0].replayed,
                });
            }
            Err(err) => err,
        };
        let retried = match &err {
            StoreError::Conflict(c) => c.stream == stream,
            StoreError::EventIdReused { .. } => true,
            _ => false,
        };
        if let Some(idem) = request.idempotency.as_ref().filter(|_| retried) {
            let loaded = Loaded::read(&self.store, &stream).await?;
            if let Some(first) = replay(tenant_id, &stream, &loaded, idem)? {
                return Ok(first);
            }
        }
        Err(match err {
            StoreError::Conflict(c) if c.stream == stream => DomainError::TenantExists.into(),
            StoreError::Conflict(c) => {
                let owner = c.missed.first().and_then(|e| e.data.get("tenant_id"));
                if owner.and_then(Value::as_str) == Some(tenant_id.to_string().as_str()) {
                    DomainError::TenantExists.into()
                } else {
                    ExecuteError::SlugTaken { slug: slug.clone() }
                }
            }
            StoreError::EventIdReused { .. } if request.idempotency.is_some() => {
                ExecuteError::IdempotencyKeyReused {
                    key: request.idempotency.map(|i| i.key).unwrap_or_default(),
                }
            }
            other => other.into(),
        })
    }
}
