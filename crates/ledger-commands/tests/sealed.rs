//! The vault against the in-memory store: personal fields sealed on append and opened on read,
//! nothing sealed (and no key made) where nothing is personal, conflicts and replays through
//! the sealed store, an erasure that refuses writes and reads `[erased]`, and the erasure
//! re-applied from the log after a key came back.

use std::sync::Arc;

use futures::TryStreamExt;
use ledger_commands::seal::{ERASED, SEALED_PREFIX};
use ledger_commands::{
    CommandRequest, ExecuteError, Executor, SealedStore, Vault, erase, reapply_erasures,
};
use ledger_core::{
    DataKey, EventStore, ExpectedSeq, KeyRecord, KeyStore, NewEvent, Seq, StoreError, StreamName,
};
use ledger_domain::{Command, DomainError};
use ledger_memory::MemoryStore;
use serde_json::{Value, json};
use uuid::Uuid;

/// A memory store, the sealed view of it and its vault.
fn stores() -> (Arc<MemoryStore>, Arc<dyn EventStore>, Vault) {
    let raw = Arc::new(MemoryStore::new());
    let vault = Vault::new(raw.clone());
    let sealed: Arc<dyn EventStore> = Arc::new(SealedStore::new(raw.clone(), vault.clone()));
    (raw, sealed, vault)
}

async fn read(store: &dyn EventStore, stream: &str) -> Vec<ledger_core::Envelope> {
    store
        .read_stream(StreamName::parse(stream).unwrap(), Seq(1))
        .try_collect()
        .await
        .unwrap()
}

fn lock(holder: &str) -> NewEvent {
    NewEvent::new(
        "OnboardingLockAcquired",
        json!({"holder": holder, "at": "2026-01-01T00:00:00Z", "expires_at": "2026-01-01T00:01:00Z"}),
    )
    .with_metadata(json!({"actor": {"role": "admin", "on_behalf_of": "alice"}}))
}

#[tokio::test]
async fn personal_fields_are_sealed_at_rest_and_open_on_read() {
    let (raw, sealed, _) = stores();
    let stream = StreamName::parse("tenant-t1").unwrap();
    sealed
        .append(stream.clone(), ExpectedSeq::NoStream, vec![lock("tab-a")])
        .await
        .unwrap();
    let stored = &read(raw.as_ref(), "tenant-t1").await[0];
    let holder = stored.data["holder"].as_str().unwrap();
    assert!(holder.starts_with(SEALED_PREFIX), "{holder}");
    let person = stored.metadata["actor"]["on_behalf_of"].as_str().unwrap();
    assert!(person.starts_with(SEALED_PREFIX), "{person}");
    assert_eq!(
        stored.metadata["actor"]["role"], "admin",
        "the rest stays as sent"
    );
    let opened = &read(sealed.as_ref(), "tenant-t1").await[0];
    assert_eq!(opened.data["holder"], "tab-a");
    assert_eq!(opened.metadata["actor"]["on_behalf_of"], "alice");
    assert_eq!(opened.data["at"], stored.data["at"]);
}

#[tokio::test]
async fn nothing_personal_costs_no_key() {
    let (raw, sealed, _) = stores();
    let plain = NewEvent::new("OrganizationCreated", json!({"at": "2026-01-01T00:00:00Z"}));
    sealed
        .append(
            StreamName::parse("tenant-t2").unwrap(),
            ExpectedSeq::NoStream,
            vec![plain],
        )
        .await
        .unwrap();
    // A stream of no tenant keeps even a personal-looking field as sent.
    sealed
        .append(
            StreamName::parse("order-1").unwrap(),
            ExpectedSeq::NoStream,
            vec![lock("x")],
        )
        .await
        .unwrap();
    assert_eq!(read(raw.as_ref(), "order-1").await[0].data["holder"], "x");
    assert!(raw.key_records().await.unwrap().is_empty());
}

#[tokio::test]
async fn replays_stay_replays_and_conflicts_carry_opened_events() {
    let (_, sealed, _) = stores();
    let stream = StreamName::parse("tenant-t3").unwrap();
    let first = lock("tab-a");
    let result = sealed
        .append(stream.clone(), ExpectedSeq::NoStream, vec![first.clone()])
        .await
        .unwrap();
    let again = sealed
        .append(stream.clone(), ExpectedSeq::NoStream, vec![first])
        .await
        .unwrap();
    assert!(again.replayed, "the same event seals to the same text");
    assert_eq!(again.last_seq, result.last_seq);
    let err = sealed
        .append(stream, ExpectedSeq::NoStream, vec![lock("tab-b")])
        .await
        .unwrap_err();
    let StoreError::Conflict(conflict) = err else {
        panic!("{err:?}")
    };
    assert_eq!(conflict.missed[0].data["holder"], "tab-a");
}

#[tokio::test]
async fn an_erased_tenant_reads_erased_and_takes_no_personal_field() {
    let (raw, sealed, vault) = stores();
    let executor = Executor::new(sealed.clone());
    let tenant = Uuid::now_v7();
    let register = Command::RegisterTenant {
        slug: "acme".into(),
        name: "Acme Private".into(),
    };
    executor
        .register(tenant, CommandRequest::new(register))
        .await
        .unwrap();
    let acquire = Command::AcquireLock {
        holder: "tab-a".into(),
    };
    executor
        .execute(tenant, CommandRequest::new(acquire.clone()))
        .await
        .unwrap();
    let erased = erase(
        &executor,
        &vault,
        tenant,
        CommandRequest::new(Command::EraseTenant {}),
    )
    .await
    .unwrap();
    assert!(erased.key_destroyed);
    assert!(!erased.executed.already_done);
    let stream = format!("tenant-{tenant}");
    let events = read(sealed.as_ref(), &stream).await;
    assert_eq!(events[0].data["name"], ERASED);
    assert_eq!(events[1].data["holder"], ERASED);
    assert_eq!(events[0].data["slug"], "acme");
    let loaded = executor.load(tenant).await.unwrap();
    assert_eq!(
        loaded.state.registration.as_ref().map(|r| r.name.as_str()),
        Some(ERASED)
    );
    // Commands are refused by the domain; a raw personal field by the vault.
    let refused = executor
        .execute(tenant, CommandRequest::new(acquire))
        .await
        .unwrap_err();
    assert!(
        matches!(
            refused,
            ExecuteError::Domain(DomainError::TenantErased { .. })
        ),
        "{refused:?}"
    );
    let raw_append = sealed
        .append(
            StreamName::parse(&stream).unwrap(),
            ExpectedSeq::Any,
            vec![lock("tab-z")],
        )
        .await
        .unwrap_err();
    assert_eq!(raw_append.code(), "tenant_erased");
    // Erasing again destroys nothing new and appends nothing.
    let again = erase(
        &executor,
        &vault,
        tenant,
        CommandRequest::new(Command::EraseTenant {}),
    )
    .await
    .unwrap();
    assert!(again.executed.already_done && !again.key_destroyed);

    // A key table restored from before the erasure brings the key back: the log destroys it
    // again.
    let back = KeyRecord {
        subject: tenant.to_string(),
        key: Some(DataKey([9; 32])),
        created_at: chrono::Utc::now(),
        erased_at: None,
    };
    let restored = Arc::new(MemoryStore::new());
    restored.import_keys(vec![back]).await.unwrap();
    let restored_vault = Vault::new(restored.clone());
    let log: Vec<_> = read(raw.as_ref(), &stream).await;
    let copy: Arc<dyn EventStore> = restored.clone();
    for event in log {
        let new = NewEvent {
            event_id: event.event_id,
            event_type: event.event_type,
            data: event.data,
            metadata: event.metadata,
        };
        copy.append(event.stream, ExpectedSeq::Any, vec![new])
            .await
            .unwrap();
    }
    assert_eq!(
        reapply_erasures(copy.as_ref(), &restored_vault)
            .await
            .unwrap(),
        1
    );
    assert_eq!(
        reapply_erasures(copy.as_ref(), &restored_vault)
            .await
            .unwrap(),
        0
    );
    let state = restored.keys(&[tenant.to_string()]).await.unwrap();
    assert!(
        matches!(
            state.get(&tenant.to_string()),
            Some(ledger_core::KeyState::Erased(_))
        ),
        "{state:?}"
    );
}

#[tokio::test]
async fn sealed_forms_find_a_value_without_opening() {
    let (raw, sealed, vault) = stores();
    sealed
        .append(
            StreamName::parse("tenant-t4").unwrap(),
            ExpectedSeq::NoStream,
            vec![lock("x")],
        )
        .await
        .unwrap();
    let stored = &read(raw.as_ref(), "tenant-t4").await[0];
    let field = ledger_domain::personal::ON_BEHALF_OF;
    for subjects in [None, Some(vec!["t4".to_string()])] {
        let forms = vault.sealed_forms(field, "alice", subjects).await.unwrap();
        assert_eq!(
            forms,
            vec![stored.metadata["actor"]["on_behalf_of"].clone()]
                .into_iter()
                .map(|v: Value| v.as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        );
    }
    let none = vault
        .sealed_forms(field, "alice", Some(vec!["other".into()]))
        .await
        .unwrap();
    assert!(none.is_empty());
}
