//! The HTTP API's suite (`api_suite/`) on every backend, in process through
//! `tower::ServiceExt::oneshot`: the one list of HTTP cases, each stamped out for memory,
//! SQLite and PostgreSQL. `log:` cases get the whole store (also the API's log reader).

/// Stamps out each HTTP case per backend: `store:` cases get a store, `log:` cases the whole
/// store (also the API's log reader), `projections:` cases a store with its read models' tables too.
macro_rules! http_cases {
    (
        store: $($module:ident :: $case:ident),* $(,)?;
        log: $($lmodule:ident :: $lcase:ident),* $(,)?;
        projections: $($pmodule:ident :: $pcase:ident),* $(,)?
    ) => {
        $(
            store_test!($lcase, |store| crate::api_suite::$lmodule::$lcase(store));
        )*
        $(
            store_test!($case, |store| crate::api_suite::$module::$case(store));
        )*
        $(
            projection_test!($pcase, |env: ledger_tests::env::Env| {
                crate::api_suite::$pmodule::$pcase(env.store, env.log, env.projections)
            });
        )*
    };
}

http_cases!(
    store:
    tenants::register_and_read,
    console::progress_links,
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
    projections::projections_unavailable,
    history::timeline_in_words,
    history::tenant_as_of,
    history::funnel_as_of,
    history::as_of_equals_the_fold_of_every_prefix,
    log::log_unavailable,
    audit::auditor_never_writes,
    audit::metadata_names_the_token;
    log:
    audit::auditor_reads_the_log,
    log::log_pages,
    log::log_tenant_scope,
    log::log_bad_queries,
    live::live_follows_writers_and_a_late_commit,
    live::live_resumes_from_last_event_id,
    live::idle_subscribers_share_one_tail,
    subscriptions::subscription_group,
    subscriptions::multi_stream_append,
    subscriptions::exactly_once;
    projections:
    projections::queries_read_own_writes,
    console::sign_in_sessions,
    projections::tenant_tokens_see_their_tenant,
    projections::status_and_online_rebuild,
    projections::projection_behind,
    projections::own_writes_are_never_refused,
    projections::projection_metrics,
    projections::progress_stream,
    projections::funnel_counts_once,
    audit_queries::audit_filters,
    audit_queries::audit_bad_queries,
);

// Personal fields sealed at rest, open on every route, `[erased]` after an erasure.
projection_test!(erasure_everywhere, |env: ledger_tests::env::Env| {
    crate::api_suite::erasure::erasure_everywhere(env)
});
projection_test!(
    live_subscribers_see_the_erasure,
    |env: ledger_tests::env::Env| {
        crate::api_suite::erasure::live_subscribers_see_the_erasure(env)
    }
);

/// A database that fails every operation: every route answers with the store's error, never
/// a panic or a hang (no backend: the store is a fake).
#[tokio::test]
async fn failing_database() {
    crate::api_suite::meta::failing_database().await;
}
