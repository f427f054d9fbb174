//! The HTTP API's suite (`crates/ledger-api/tests/suite`) on every backend, in process through
//! `tower::ServiceExt::oneshot`: each case is stamped out for memory, SQLite and PostgreSQL.

/// Stamps out one HTTP case per backend.
macro_rules! http_cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        $(
            store_test!($case, |store| crate::api_suite::$module::$case(store));
        )*
    };
}

http_cases!(
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
