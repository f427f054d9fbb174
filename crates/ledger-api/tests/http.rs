//! The HTTP API on the in-memory store, through `tower::ServiceExt::oneshot`.
//!
//! The cases live in `suite/` and are shared with the `ledger-tests` package, which runs them on
//! SQLite and PostgreSQL and against real `ledger serve` processes.

mod suite;

use std::sync::Arc;

use ledger_memory::MemoryStore;

/// One `#[tokio::test]` per case, each on a fresh memory store.
macro_rules! memory_cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                suite::$module::$case(Arc::new(MemoryStore::new())).await;
            }
        )*
    };
}

memory_cases!(
    tenants::register_and_read,
    tenants::register_with_own_id,
    tenants::slug_taken,
    tenants::invalid_registration,
    tenants::tenant_not_found,
    tenants::register_idempotent,
    commands::onboarding_flow,
    commands::every_command,
    commands::lock_held,
    commands::invalid_transition,
    commands::expected_seq,
    commands::command_not_found,
    commands::idempotent_command,
    commands::issue_api_key_once,
    auth::tenant_token_isolation,
    auth::unauthorized,
    auth::issue_tokens,
    streams::append_and_page,
    streams::expected_seq_rules,
    streams::catalog_streams,
    streams::size_limits,
    streams::idempotent_append,
    streams::bad_stream_requests,
    bad_input::bad_input_table,
    meta::health,
    meta::openapi_document,
    meta::openapi_contract,
    meta::metrics_token,
    commands::conflict_carries_missed,
    meta::metrics,
    meta::custom_ready_check,
    races::two_tabs_acquire_lock,
    races::fifty_acquire_lock,
    races::fifty_complete_onboarding,
    races::fifty_register_one_slug,
);

/// One `#[tokio::test]` per projection case, on a fresh memory store and its projections.
macro_rules! memory_projection_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let store: suite::client::Store = Arc::new(MemoryStore::new());
                let projections = Arc::new(ledger_projections::MemoryProjections::new(store.clone()));
                suite::projections::$case(store, projections).await;
            }
        )*
    };
}

memory_projection_cases!(
    queries_read_own_writes,
    tenant_tokens_see_their_tenant,
    status_and_online_rebuild,
    projection_behind,
    own_writes_are_never_refused,
    projection_metrics,
    progress_stream,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn projections_unavailable() {
    suite::projections::projections_unavailable(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn failing_database() {
    suite::meta::failing_database().await;
}
