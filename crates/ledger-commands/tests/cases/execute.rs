// The executor's cases, included by `execute.rs` (every command reads its stream) and
// `execute_cached.rs` (commands decide on cached states).

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use futures::future::join_all;
use ledger_commands::{CommandRequest, ExecuteError, Executor, Idempotency, tenant_stream};
use ledger_core::{EventStore, ExpectedSeq, NewEvent, Seq, StreamName};
use ledger_domain::{Command, Phase};
use ledger_memory::MemoryStore;
use uuid::Uuid;

fn executor() -> Executor<MemoryStore> {
    configure(Executor::new(MemoryStore::new()))
}

fn register(slug: &str) -> CommandRequest {
    CommandRequest::new(Command::RegisterTenant {
        slug: slug.into(),
        name: "Acme".into(),
    })
}

async fn registered(ex: &Executor<MemoryStore>, slug: &str) -> Uuid {
    let id = Uuid::now_v7();
    ex.register(id, register(slug)).await.unwrap();
    id
}

async fn run(
    ex: &Executor<MemoryStore>,
    id: Uuid,
    cmd: Command,
) -> Result<ledger_commands::Executed, ExecuteError> {
    ex.execute(id, CommandRequest::new(cmd)).await
}

async fn types(ex: &Executor<MemoryStore>, stream: StreamName) -> Vec<String> {
    use futures::TryStreamExt;
    let all: Vec<_> = ex
        .store()
        .read_stream(stream, Seq(1))
        .try_collect()
        .await
        .unwrap();
    all.into_iter().map(|e| e.event_type).collect()
}

#[tokio::test]
async fn a_whole_onboarding() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    for cmd in [
        Command::VerifyPayment {
            checkout_session_id: "cs_1".into(),
            holder: None,
        },
        Command::CreateOrganization { holder: None },
        Command::ProvisionWorkspace { holder: None },
        Command::IssueApiKey {
            fingerprint: "fp".into(),
            holder: None,
        },
    ] {
        let done = run(&ex, id, cmd).await.unwrap();
        assert_eq!(done.appended.len(), 1);
    }
    let done = run(&ex, id, Command::CompleteOnboarding { holder: None })
        .await
        .unwrap();
    assert_eq!(
        (done.seq, done.state.phase, done.already_done),
        (Seq(6), Phase::Completed, false)
    );
    let again = run(&ex, id, Command::CompleteOnboarding { holder: None })
        .await
        .unwrap();
    assert!(again.appended.is_empty() && again.already_done);
    assert_eq!(again.state.completed_at, done.state.completed_at);
    assert_eq!(again.seq, Seq(6));
    assert_eq!(
        types(&ex, StreamName::parse("slug-acme").unwrap()).await,
        ["SlugClaimed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_completions_append_one_event() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    for cmd in [Command::BackfillPhase {
        phase: Phase::ApiKeyIssued,
    }] {
        run(&ex, id, cmd).await.unwrap();
    }
    let ex = Arc::new(ex.with_max_attempts(60));
    let results = join_all((0..50).map(|_| {
        let ex = ex.clone();
        tokio::spawn(
            async move { run(&ex, id, Command::CompleteOnboarding { holder: None }).await },
        )
    }))
    .await;
    let outcomes: Vec<_> = results.into_iter().map(|r| r.unwrap().unwrap()).collect();
    assert_eq!(outcomes.iter().filter(|o| !o.already_done).count(), 1);
    let completed_at = outcomes[0].state.completed_at;
    assert!(
        outcomes
            .iter()
            .all(|o| o.state.completed_at == completed_at)
    );
    let all = types(&ex, tenant_stream(id)).await;
    assert_eq!(
        all.iter().filter(|t| *t == "OnboardingCompleted").count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_tabs_racing_for_the_lock_get_one_winner() {
    let ex = Arc::new(executor().with_max_attempts(60));
    let id = registered(&ex, "acme").await;
    let results = join_all((0..50).map(|i| {
        let ex = ex.clone();
        tokio::spawn(async move {
            run(
                &ex,
                id,
                Command::AcquireLock {
                    holder: format!("tab-{i}"),
                },
            )
            .await
        })
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    let winners = results.iter().filter(|r| r.is_ok()).count();
    let held = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == "lock_held"))
        .count();
    assert_eq!((winners, held), (1, 49));
    let all = types(&ex, tenant_stream(id)).await;
    assert_eq!(
        all.iter()
            .filter(|t| *t == "OnboardingLockAcquired")
            .count(),
        1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_registrations_of_one_slug_get_one_winner() {
    let ex = Arc::new(executor());
    let results = join_all((0..50).map(|_| {
        let ex = ex.clone();
        tokio::spawn(async move { ex.register(Uuid::now_v7(), register("acme")).await })
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| r.as_ref().unwrap_err().code() == "slug_taken")
    );
    assert_eq!(
        types(&ex, StreamName::parse("slug-acme").unwrap())
            .await
            .len(),
        1
    );
}

#[tokio::test]
async fn registering_twice_is_tenant_exists_and_bad_slugs_are_refused() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    let err = ex.register(id, register("other")).await.unwrap_err();
    assert_eq!(err.code(), "tenant_exists");
    let err = ex
        .register(Uuid::now_v7(), register("Not A Slug"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "invalid_slug");
    let err = run(
        &ex,
        Uuid::now_v7(),
        Command::CreateOrganization { holder: None },
    )
    .await
    .unwrap_err();
    assert_eq!(err.code(), "tenant_not_found");
}

#[tokio::test]
async fn a_stale_expected_seq_is_a_conflict_and_writes_nothing() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    run(
        &ex,
        id,
        Command::VerifyPayment {
            checkout_session_id: "cs".into(),
            holder: None,
        },
    )
    .await
    .unwrap();
    let mut req = CommandRequest::new(Command::CreateOrganization { holder: None });
    req.expected = Some(Seq(1));
    let err = ex.execute(id, req.clone()).await.unwrap_err();
    let ExecuteError::Conflict(c) = err else {
        panic!("expected a conflict, got {err:?}")
    };
    assert_eq!(
        (c.expected, c.current_seq, c.missed.len()),
        (ExpectedSeq::Exact(Seq(1)), Seq(2), 1)
    );
    assert_eq!(types(&ex, tenant_stream(id)).await.len(), 2);
    req.expected = Some(Seq(2));
    assert_eq!(ex.execute(id, req).await.unwrap().seq, Seq(3));
}

#[tokio::test]
async fn a_caller_expected_seq_loses_to_a_concurrent_writer() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    // Another writer appends between this caller's read (seq 1) and its append.
    let other = NewEvent::new(
        "PaymentVerified",
        serde_json::json!({"checkout_session_id": "cs", "at": "2026-01-20T09:00:00Z"}),
    );
    ex.store()
        .append(tenant_stream(id), ExpectedSeq::Exact(Seq(1)), vec![other])
        .await
        .unwrap();
    let mut req = CommandRequest::new(Command::CreateOrganization { holder: None });
    req.expected = Some(Seq(1));
    assert_eq!(ex.execute(id, req).await.unwrap_err().code(), "conflict");
}

fn idem(key: &str, fingerprint: &str) -> Option<Idempotency> {
    Some(Idempotency {
        key: key.into(),
        fingerprint: fingerprint.into(),
    })
}

#[tokio::test]
async fn an_idempotent_retry_answers_the_first_response() {
    let t = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let clock_ex = executor().with_clock(Arc::new(move || t));
    let id = registered(&clock_ex, "acme").await;
    let mut req = CommandRequest::new(Command::VerifyPayment {
        checkout_session_id: "cs".into(),
        holder: None,
    });
    req.idempotency = idem("k-1", "body-a");
    let first = clock_ex.execute(id, req.clone()).await.unwrap();
    // Later, the same request again: same answer, nothing written.
    let later = clock_ex
        .clone()
        .with_clock(Arc::new(move || t + Duration::minutes(5)));
    let again = later.execute(id, req.clone()).await.unwrap();
    assert!(again.replayed);
    assert_eq!(
        (again.seq, &again.appended, &again.state),
        (first.seq, &first.appended, &first.state)
    );
    assert_eq!(types(&later, tenant_stream(id)).await.len(), 2);
    // Even after more events were appended.
    run(&later, id, Command::CreateOrganization { holder: None })
        .await
        .unwrap();
    let third = later.execute(id, req.clone()).await.unwrap();
    assert_eq!(
        (third.seq, third.state.phase),
        (first.seq, Phase::PaymentVerified)
    );
    // The same key with another body is refused.
    req.idempotency = idem("k-1", "body-b");
    assert_eq!(
        later.execute(id, req).await.unwrap_err().code(),
        "idempotency_key_reused"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_retries_of_one_request_write_once() {
    let ex = Arc::new(executor());
    let id = registered(&ex, "acme").await;
    let mut req = CommandRequest::new(Command::AcquireLock {
        holder: "tab-a".into(),
    });
    req.idempotency = idem("k-lock", "body");
    let results = join_all((0..20).map(|_| {
        let (ex, req) = (ex.clone(), req.clone());
        tokio::spawn(async move { ex.execute(id, req).await })
    }))
    .await;
    let seqs: Vec<_> = results
        .into_iter()
        .map(|r| r.unwrap().unwrap().seq)
        .collect();
    assert!(seqs.iter().all(|s| *s == Seq(2)), "{seqs:?}");
    assert_eq!(types(&ex, tenant_stream(id)).await.len(), 2);
}

#[tokio::test]
async fn an_idempotent_registration_retry_answers_the_first_response() {
    let ex = executor();
    let id = Uuid::now_v7();
    let mut req = register("acme");
    req.idempotency = idem("reg-1", "body");
    let first = ex.register(id, req.clone()).await.unwrap();
    let again = ex.register(id, req.clone()).await.unwrap();
    assert!(again.replayed);
    assert_eq!((again.seq, again.position), (first.seq, first.position));
    req.idempotency = idem("reg-1", "other-body");
    assert_eq!(
        ex.register(id, req).await.unwrap_err().code(),
        "idempotency_key_reused"
    );
}

#[tokio::test]
async fn a_corrupt_event_is_reported_not_folded() {
    let ex = executor();
    let id = registered(&ex, "acme").await;
    let junk = NewEvent::new("PaymentVerified", serde_json::json!({"nope": true}));
    ex.store()
        .append(tenant_stream(id), ExpectedSeq::Any, vec![junk])
        .await
        .unwrap();
    let err = run(&ex, id, Command::CreateOrganization { holder: None })
        .await
        .unwrap_err();
    assert_eq!(err.code(), "corrupt_history");
}
