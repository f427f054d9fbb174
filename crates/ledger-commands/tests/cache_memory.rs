//! What the state cache costs in memory, counted byte for byte: tenants are onboarded through an
//! executor with a cache, then forgotten one by one; the heap bytes that go with them are the
//! cache's entries (the tenants' folded states and the cache's own bookkeeping).

use std::alloc::System;

use ledger_commands::{CommandRequest, Executor};
use ledger_domain::Command;
use ledger_memory::MemoryStore;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use uuid::Uuid;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

/// Tenants onboarded for the measurement.
const TENANTS: usize = 2_000;

/// The most a cached tenant may cost: `--state-cache 10000` then stays under 40 MiB.
const MOST_BYTES_PER_TENANT: f64 = 4_096.0;

/// Live heap bytes since `region` started.
fn live(region: &Region<'_, System>) -> i64 {
    let change = region.change();
    change.bytes_allocated as i64 - change.bytes_deallocated as i64
        + change.bytes_reallocated as i64
}

/// Everything a tenant goes through: paid, set up, a key, two syncs (one failing), done, and
/// the lock taken and kept by its holder.
fn onboarding() -> Vec<Command> {
    let holder = || Some("tab-a".to_string());
    vec![
        Command::AcquireLock {
            holder: "tab-a".into(),
        },
        Command::VerifyPayment {
            checkout_session_id: "cs_live_a1B2c3D4e5F6g7H8i9J0".into(),
            holder: holder(),
        },
        Command::CreateOrganization { holder: holder() },
        Command::ProvisionWorkspace { holder: holder() },
        Command::IssueApiKey {
            fingerprint: "sha256:9f2c4e1b7a0d3c5e".into(),
            holder: holder(),
        },
        Command::RecordSyncSuccess {
            target: "billing".into(),
        },
        Command::RecordSyncFailure {
            target: "crm".into(),
            last_error: "crm answered 503 Service Unavailable".into(),
        },
        Command::CompleteOnboarding { holder: holder() },
        Command::AcquireLock {
            holder: "tab-a".into(),
        },
    ]
}

#[tokio::test]
async fn a_cached_tenant_costs_under_four_kib() {
    let executor = Executor::new(MemoryStore::new()).with_state_cache(TENANTS);
    let mut tenants = Vec::with_capacity(TENANTS);
    for n in 0..TENANTS {
        let id = Uuid::now_v7();
        let register = Command::RegisterTenant {
            slug: format!("tenant-{n:05}"),
            name: format!("Tenant {n} GmbH"),
        };
        executor
            .register(id, CommandRequest::new(register))
            .await
            .unwrap();
        for command in onboarding() {
            executor
                .execute(id, CommandRequest::new(command))
                .await
                .unwrap();
        }
        tenants.push(id);
    }
    let cache = executor.state_cache().unwrap();
    assert_eq!(cache.len(), TENANTS);

    let region = Region::new(GLOBAL);
    for id in &tenants {
        cache.forget(*id);
    }
    assert!(cache.is_empty());
    let freed = -live(&region);
    let per_tenant = freed as f64 / TENANTS as f64;
    println!(
        "state cache: {freed} bytes for {TENANTS} onboarded tenants, {per_tenant:.0} bytes a tenant"
    );
    assert!(
        per_tenant > 0.0 && per_tenant <= MOST_BYTES_PER_TENANT,
        "{per_tenant:.0} bytes a cached tenant"
    );
}
