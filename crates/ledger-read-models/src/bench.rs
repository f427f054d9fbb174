//! Events for benchmarks (`ledger bench`): the tenant the rebuild benchmark appends many times.

use chrono::{DateTime, Duration, Utc};
use ledger_core::NewEvent;
use ledger_domain::TenantEvent;

/// An onboarding event as an event to append.
pub fn to_new_event(event: &TenantEvent) -> NewEvent {
    let (ty, data) = event.to_parts();
    NewEvent::new(ty, data)
}

/// The benchmark's tenant number `i`: ten events from registration to completion, with a
/// lock and a failed, then retried, downstream sync, starting at `at`; every read model has
/// rows to write for it.
pub fn bench_tenant(at: DateTime<Utc>, i: usize) -> Vec<NewEvent> {
    let s = |n: i64| at + Duration::seconds(n);
    let holder = format!("worker-{}", i % 8);
    let events = [
        TenantEvent::TenantRegistered {
            slug: format!("bench-{i}"),
            name: format!("Bench tenant {i}"),
            at: s(0),
        },
        TenantEvent::OnboardingLockAcquired {
            holder: holder.clone(),
            at: s(1),
            expires_at: s(61),
        },
        TenantEvent::PaymentVerified {
            checkout_session_id: format!("cs_live_{i:012}"),
            at: s(2),
        },
        TenantEvent::OrganizationCreated { at: s(3) },
        TenantEvent::BackendSyncFailed {
            target: "crm".into(),
            attempts: 1,
            last_error: "crm timed out after 30s".into(),
            at: s(4),
        },
        TenantEvent::WorkspaceProvisioned { at: s(5) },
        TenantEvent::ApiKeyIssued {
            fingerprint: format!("fp_{i:016x}"),
            reveal_expires_at: s(6 + 7200),
            at: s(6),
        },
        TenantEvent::BackendSyncRetried {
            target: "crm".into(),
            at: s(7),
        },
        TenantEvent::OnboardingCompleted { at: s(8) },
        TenantEvent::OnboardingLockReleased {
            holder,
            reason: "completed".into(),
            at: s(9),
        },
    ];
    events.iter().map(to_new_event).collect()
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use ledger_core::{Position, RawEvent, Seq};
    use ledger_projector::{Batch, Decode, Tables};

    use super::*;
    use crate::{Decoder, catalog};

    #[test]
    fn a_bench_tenant_writes_a_row_to_every_table() {
        let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let events = bench_tenant(start, 3);
        assert_eq!(events.len(), 10);
        let batch: Batch<_> = events
            .into_iter()
            .enumerate()
            .map(|(i, e)| {
                let raw = RawEvent {
                    position: Position(i as u64 + 1),
                    stream: "tenant-b3".into(),
                    seq: Seq(i as u64 + 1),
                    event_type: e.event_type,
                    data: e.data.to_string(),
                    metadata: e.metadata.to_string(),
                    recorded_at: start,
                };
                (raw.position, Decoder.decode(raw))
            })
            .collect();
        assert_eq!(batch.events().len(), 10, "every event decodes");
        for model in catalog().models() {
            let mut tables = Tables::new(model.schema());
            tables.apply(&**model, &batch).unwrap();
            for table in model.schema().tables {
                // The trail holds a row per event; the others one per tenant or day.
                let want = if table.name == crate::audit_trail::TABLE.name {
                    10
                } else {
                    1
                };
                assert_eq!(tables.rows(table).len(), want, "{}", table.name);
            }
        }
    }
}
