//! The operator pages in a browser, by role: an admin retries and abandons failed syncs from the
//! queue and the tenants' streams record it; an auditor sees no action, and a forged one is
//! refused with nothing written. Along the way, the README's screenshots of every operator page.

use serde_json::{Value, json};
use uuid::Uuid;

use super::setup::{Console, auditor_token};
use crate::serve::ADMIN;

/// The queue's row of `tenant`'s sync to `target`.
fn row(tenant: Uuid, target: &str) -> String {
    format!("table#queue tr[data-tenant=\"{tenant}\"][data-target=\"{target}\"]")
}

/// How many `BackendSyncRetried` events the tenant's stream holds.
async fn retries(c: &Console, tenant: Uuid) -> usize {
    c.event_types(tenant)
        .await
        .iter()
        .filter(|t| *t == "BackendSyncRetried")
        .count()
}

/// Posts `fields` to the console's `/ui/queue/retry` from the page (the browser sends its
/// session cookie); `[status, body]`.
async fn post_retry(c: &Console, fields: Value) -> (u64, String) {
    let script = format!(
        "return fetch('/ui/queue/retry', {{method: 'POST', body: new URLSearchParams({fields})}})\
           .then(r => r.text().then(t => [r.status, t]));"
    );
    let answer = c.browser.eval(&script).await;
    (
        answer[0].as_u64().expect("a status"),
        answer[1].as_str().unwrap_or_default().to_string(),
    )
}

/// Walks a tenant through the whole onboarding as tab-a.
async fn onboard(c: &Console, tenant: Uuid) {
    let tab_a = || json!({"holder": "tab-a"});
    c.command(tenant, "acquire-lock", tab_a()).await;
    c.command(
        tenant,
        "verify-payment",
        json!({"checkout_session_id": "cs_1", "holder": "tab-a"}),
    )
    .await;
    for step in [
        "create-organization",
        "provision-workspace",
        "issue-api-key",
        "complete-onboarding",
    ] {
        c.command(tenant, step, tab_a()).await;
    }
}

// An admin's "Retry now" on the queue records a retry (the row's count goes up, the stream
// gains a `BackendSyncRetried`) and "Abandon" fails the sync with its reason; an auditor sees no button, and the same POST forged from their
// session answers 403, as does one without the CSRF token, and writes nothing.
store_test!(databases: queue_retry_and_abandon_by_role, |db| async move {
    let Some(c) = Console::start(&db).await else {
        return;
    };
    let auditor = auditor_token(&db, "browser-auditor").await;

    // Tenants in several phases, locks active and released, two failed syncs.
    let acme = c.api.register("acme").await;
    let globex = c.api.register("globex").await;
    let initech = c.api.register("initech").await;
    c.api.register("umbrella").await;
    onboard(&c, acme).await;
    c.command(globex, "acquire-lock", json!({"holder": "tab-a"}))
        .await;
    c.command(
        globex,
        "verify-payment",
        json!({"checkout_session_id": "cs_2", "holder": "tab-a"}),
    )
    .await;
    c.command(initech, "acquire-lock", json!({"holder": "tab-b"}))
        .await;
    c.command(initech, "release-lock", json!({"holder": "tab-b"}))
        .await;
    c.command(
        acme,
        "record-sync-failure",
        json!({"target": "crm", "last_error": "timeout"}),
    )
    .await;
    c.command(
        globex,
        "record-sync-failure",
        json!({"target": "billing", "last_error": "503 from billing"}),
    )
    .await;

    // The admin's pages, for the README at 1280 px.
    c.sign_in(ADMIN).await;
    c.browser.wait_for("table#tenants").await;
    for tenant in [acme, globex, initech] {
        c.browser
            .wait_for(&format!("table#tenants tr[data-tenant=\"{tenant}\"]"))
            .await;
    }
    assert_eq!(c.browser.find_all("ul.counts li[data-phase]").await.len(), 6);
    assert!(c.browser.exists("input#q").await && c.browser.exists("select#phase").await);
    c.browser.assert_labelled().await;
    c.screenshot("tenants").await;

    c.open(&format!("/ui/tenants/{acme}")).await;
    c.browser.wait_for("dl#tenant-state").await;
    c.browser.wait_for("table#timeline tr[data-seq]").await;
    c.browser.wait_for("table#syncs tr[data-target=\"crm\"]").await;
    c.browser.wait_for("form#as-of-form input#as_of").await;
    c.browser.assert_labelled().await;
    c.screenshot("tenant").await;

    c.open("/ui/locks").await;
    c.browser
        .wait_for(&format!("table#active-locks tr[data-tenant=\"{globex}\"]"))
        .await;
    c.browser
        .wait_for(&format!("table#expired-locks tr[data-tenant=\"{initech}\"]"))
        .await;
    c.browser.assert_labelled().await;
    c.screenshot("locks").await;

    c.open("/ui/queue").await;
    c.browser.wait_for(&row(acme, "crm")).await;
    c.browser.wait_for(&row(globex, "billing")).await;
    let count = |tenant, target| format!("{} td.retry-count", row(tenant, target));
    assert_eq!(c.browser.text_of(&count(acme, "crm")).await, "0");
    assert_eq!(c.browser.text_of(&count(globex, "billing")).await, "0");
    assert_eq!(retries(&c, acme).await, 0);
    c.browser.assert_labelled().await;
    c.browser
        .click(&format!("{} button.retry", row(acme, "crm")))
        .await;
    c.browser.wait_for("p#notice.success").await;
    c.browser.wait_for_text(&count(acme, "crm"), "1").await;
    assert_eq!(c.browser.text_of(&count(acme, "crm")).await, "1");
    assert_eq!(c.browser.text_of(&count(globex, "billing")).await, "0");
    assert_eq!(
        c.browser
            .text_of(&format!("{} td.status", row(acme, "crm")))
            .await,
        "pending_sync"
    );
    assert_eq!(retries(&c, acme).await, 1, "the retry reached the stream");
    assert_eq!(retries(&c, globex).await, 0);
    c.screenshot("queue").await;
    c.browser.mobile().await;
    c.browser.wait_for(&row(acme, "crm")).await;
    c.screenshot("queue-mobile").await;
    c.browser.desktop().await;

    // Abandoning the other sync, with a reason: it turns failed, its stream says why.
    let reason_field = format!("{} form.abandon input[name=\"reason\"]", row(globex, "billing"));
    c.browser.fill(&reason_field, "billing account closed").await;
    c.browser
        .click(&format!("{} button.abandon", row(globex, "billing")))
        .await;
    c.browser.wait_for_text("p#notice.success", "abandoned").await;
    c.browser
        .wait_for_text(&format!("{} td.status", row(globex, "billing")), "failed")
        .await;
    assert!(!c.browser.exists(&format!("{} button.abandon", row(globex, "billing"))).await);
    let abandoned = c.api.events(&format!("tenant-{globex}")).await;
    let last = abandoned.last().expect("globex has events");
    assert_eq!(last.event_type, "BackendSyncAbandoned");
    assert_eq!(last.data["reason"], "billing account closed", "{}", last.data);

    c.open("/ui/projections").await;
    c.browser.wait_for("table#projections tr[data-projection]").await;
    assert_eq!(
        c.browser
            .find_all("table#projections tr[data-projection]")
            .await
            .len(),
        5
    );
    assert!(c.browser.exists("form.rebuild button.rebuild").await);
    c.browser.assert_labelled().await;
    c.screenshot("projections").await;

    c.open("/ui/funnel").await;
    c.browser.wait_for("svg#funnel-chart").await;
    c.browser.wait_for("table#funnel tr[data-day]").await;
    c.browser.assert_labelled().await;
    c.screenshot("funnel").await;

    // The auditor: the same queue without a button; the action forged anyway is refused.
    c.sign_out().await;
    c.sign_in(&auditor).await;
    assert!(
        c.browser.text_of("form.sign-out .who").await.starts_with("auditor"),
        "signed in as {}",
        c.browser.text_of("form.sign-out .who").await
    );
    c.open("/ui/queue").await;
    c.browser.wait_for(&row(acme, "crm")).await;
    for css in ["button.retry", "button.abandon", "form.retry", "form.abandon"] {
        assert!(!c.browser.exists(css).await, "an auditor sees {css}");
    }
    c.browser.assert_labelled().await;
    let csrf = c
        .browser
        .prop("input[name=\"csrf\"]", "value")
        .await
        .expect("the auditor's page carries the session's csrf");
    let before = c.event_types(acme).await;
    let (status, page) = post_retry(
        &c,
        json!({"csrf": csrf, "tenant": acme.to_string(), "target": "crm"}),
    )
    .await;
    assert_eq!(status, 403, "an auditor's forged retry: {page}");
    assert!(page.contains("<code>forbidden</code>"), "{page}");
    let (status, page) = post_retry(
        &c,
        json!({"tenant": acme.to_string(), "target": "crm"}),
    )
    .await;
    assert_eq!(status, 403, "a retry without the csrf field: {page}");
    assert!(page.contains("<code>csrf_invalid</code>"), "{page}");
    assert_eq!(c.event_types(acme).await, before, "a refused retry wrote nothing");
    c.open("/ui/queue").await;
    assert_eq!(c.browser.text_of(&count(acme, "crm")).await, "1");
    c.sign_out().await;
    c.stop().await;
});
