//! Races: many callers at once, through one server or several sharing a database.

use serde_json::json;
use uuid::Uuid;

use super::client::{Api, Reply, Store};
use super::commands::cmd;

/// Sends `n` requests at once; `make(i)` builds the i-th.
async fn at_once(
    api: &Api,
    n: usize,
    make: impl Fn(usize) -> (String, serde_json::Value),
) -> Vec<Reply> {
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let (url, body) = make(i);
            let api = api.clone();
            tokio::spawn(async move { api.req("POST", url).admin().json(body).send().await })
        })
        .collect();
    let mut replies = Vec::with_capacity(n);
    for t in tasks {
        replies.push(t.await.expect("a request task panicked"));
    }
    replies
}

/// `n` holders race for the lock: exactly one gets it, every other gets `lock_held`.
pub async fn race_acquire_lock_on(api: &Api, n: usize) {
    let t = api
        .register(&format!(
            "lock-race-{n}-{}",
            &Uuid::now_v7().simple().to_string()[20..]
        ))
        .await;
    let replies = at_once(api, n, |i| {
        (
            cmd(t, "acquire-lock"),
            json!({"holder": format!("tab-{i}")}),
        )
    })
    .await;
    let won: Vec<_> = replies.iter().filter(|r| r.status == 200).collect();
    assert_eq!(
        won.len(),
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    let winner = won[0].body["state"]["lock"]["holder"].clone();
    for r in replies.iter().filter(|r| r.status != 200) {
        r.expect_error(409, "lock_held");
        assert_eq!(r.body["holder"], winner);
    }
    let locks = api
        .events(&format!("tenant-{t}"))
        .await
        .into_iter()
        .filter(|e| e.event_type == "OnboardingLockAcquired")
        .count();
    assert_eq!(locks, 1);
}

/// Two tabs race for the lock.
pub async fn two_tabs_acquire_lock(store: Store) {
    race_acquire_lock_on(&Api::new(store), 2).await;
}

/// Fifty callers race for the lock.
pub async fn fifty_acquire_lock(store: Store) {
    race_acquire_lock_on(&Api::new(store), 50).await;
}

/// `n` callers complete one onboarding at once: one completion is recorded, every answer is 200
/// and exactly one says `was_already_complete: false`.
pub async fn race_complete_onboarding_on(api: &Api, n: usize) {
    let t = api
        .register(&format!(
            "complete-race-{}",
            &Uuid::now_v7().simple().to_string()[20..]
        ))
        .await;
    api.ok(t, "verify-payment", json!({"checkout_session_id": "cs"}))
        .await;
    api.ok(t, "create-organization", json!({})).await;
    api.ok(t, "provision-workspace", json!({})).await;
    api.ok(t, "issue-api-key", json!({})).await;
    let replies = at_once(api, n, |_| (cmd(t, "complete-onboarding"), json!({}))).await;
    for r in &replies {
        r.expect(200);
    }
    let first: Vec<_> = replies
        .iter()
        .filter(|r| r.body["was_already_complete"] == false)
        .collect();
    assert_eq!(first.len(), 1);
    let completed_at = &first[0].body["completed_at"];
    assert!(
        replies
            .iter()
            .all(|r| &r.body["completed_at"] == completed_at)
    );
    let completions = api
        .events(&format!("tenant-{t}"))
        .await
        .into_iter()
        .filter(|e| e.event_type == "OnboardingCompleted")
        .count();
    assert_eq!(completions, 1);
}

/// Fifty concurrent completions.
pub async fn fifty_complete_onboarding(store: Store) {
    race_complete_onboarding_on(&Api::new(store), 50).await;
}

/// `n` registrations of one slug at once: one 201, every other `slug_taken`.
pub async fn race_register_slug_on(api: &Api, n: usize) {
    let slug = format!("race-{}", &Uuid::now_v7().simple().to_string()[20..]);
    let replies = at_once(api, n, |i| {
        (
            "/v1/tenants".to_string(),
            json!({"slug": slug, "name": format!("Racer {i}")}),
        )
    })
    .await;
    let won = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(
        won,
        1,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    for r in replies.iter().filter(|r| r.status != 201) {
        r.expect_error(409, "slug_taken");
    }
    assert_eq!(api.events(&format!("slug-{slug}")).await.len(), 1);
}

/// Fifty concurrent registrations of one slug.
pub async fn fifty_register_one_slug(store: Store) {
    race_register_slug_on(&Api::new(store), 50).await;
}
