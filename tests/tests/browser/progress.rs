//! The progress page of a signed link, live in a browser: the stages turn done in order as the
//! commands land through the API (with how soon the page shows each), two tabs sharing one
//! lock, and a failed step told in plain words.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::{Value, json};

use super::driver::{Browser, WAIT};
use super::setup::{Console, LIVE, STAGES, median_and_max, stage, stage_in};

/// The `[stage, state]` pairs of the page's stages, in the page's order.
async fn states(browser: &Browser) -> Vec<(String, String)> {
    let pairs = browser
        .eval(
            "return Array.from(document.querySelectorAll('ol#stages > li'))\
               .map(li => [li.dataset.stage, li.dataset.state]);",
        )
        .await;
    pairs
        .as_array()
        .expect("an array of pairs")
        .iter()
        .map(|p| {
            (
                p[0].as_str().unwrap_or_default().to_string(),
                p[1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// What the stages should read: the first `done` done, then the next running while a lock is
/// held (`running`), the rest waiting.
fn expected(done: usize, running: bool) -> Vec<(String, String)> {
    STAGES
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let state = if i < done {
                "done"
            } else if i == done && running {
                "running"
            } else {
                "waiting"
            };
            (s.to_string(), state.to_string())
        })
        .collect()
}

/// Records in the page, for each `stage=state` and for `welcome`, the first time (browser
/// clock, ms since the epoch) the live panel showed it.
const WATCH: &str = "window.__seen = {};
var target = document.getElementById('progress');
var record = function () {
  document.querySelectorAll('#stages li[data-stage]').forEach(function (li) {
    var key = li.dataset.stage + '=' + li.dataset.state;
    if (!(key in window.__seen)) { window.__seen[key] = Date.now(); }
  });
  if (document.getElementById('welcome') && !('welcome' in window.__seen)) {
    window.__seen.welcome = Date.now();
  }
};
record();
new MutationObserver(record).observe(target, {childList: true, subtree: true});
return true;";

/// Milliseconds since the Unix epoch now.
fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970")
        .as_millis() as u64
}

// Seed 002 FIX-003: each command of the onboarding turns its stage done on the open page, in
// order, without a reload; then "Welcome aboard!".
store_test!(databases: progress_stages_turn_done_in_order, |db| async move {
    let Some(c) = Console::start(&db).await else {
        return;
    };
    let tenant = c.api.register("stages").await;
    let link = c.link(tenant, Some("tab-a"), None).await;
    c.follow(&link).await;
    assert_eq!(states(&c.browser).await, expected(0, false));
    c.browser.eval(WATCH).await;

    let tab_a = || json!({"holder": "tab-a"});
    let steps: [(&str, Value, usize, &str); 6] = [
        ("acquire-lock", tab_a(), 0, "running"),
        (
            "verify-payment",
            json!({"checkout_session_id": "cs_1", "holder": "tab-a"}),
            0,
            "done",
        ),
        ("create-organization", tab_a(), 1, "done"),
        ("provision-workspace", tab_a(), 2, "done"),
        ("issue-api-key", tab_a(), 3, "done"),
        ("complete-onboarding", tab_a(), 4, "done"),
    ];
    let mut polled = Vec::new();
    let mut in_page = Vec::new();
    for (command, body, index, state) in steps {
        c.command(tenant, command, body).await;
        let (answered, answered_ms) = (Instant::now(), epoch_ms());
        let name = STAGES[index];
        c.browser.wait_for_within(&stage_in(name, state), WAIT).await;
        polled.push(answered.elapsed());
        let seen = c.browser.eval(&format!("return window.__seen['{name}={state}'];")).await;
        let seen = seen
            .as_u64()
            .unwrap_or_else(|| panic!("the page did not record {name}={state}: {seen}"));
        in_page.push(Duration::from_millis(seen.saturating_sub(answered_ms)));
        let done = if state == "done" { index + 1 } else { index };
        assert_eq!(
            states(&c.browser).await,
            expected(done, done < STAGES.len()),
            "after {command}, only the stages before and with {name} are done"
        );
        if command == "create-organization" {
            c.screenshot("progress-running").await;
        }
    }
    c.browser.wait_for_text("#welcome", "Welcome aboard!").await;
    assert!(
        c.browser.eval("return window.__seen['verifying_payment=done'] > 0;").await == json!(true),
        "the page was reloaded: the watcher is gone"
    );
    c.screenshot("progress-complete").await;

    let (median, max) = median_and_max(&polled);
    let (page_median, page_max) = median_and_max(&in_page);
    println!(
        "progress page, command answered -> page shows it, over {} commands on {:?}: \
         polled every 10 ms: median {median:?}, max {max:?}; seen in the page: median \
         {page_median:?}, max {page_max:?}",
        polled.len(),
        db.kind,
    );
    c.stop().await;
});

// While tab-a holds the lock, the page of a link made for tab-b says setup is in progress in
// another tab until the lock's expiry; tab-a's own page does not. Released, the notice goes
// without a reload, and tab-b can go on.
store_test!(databases: two_tabs_one_lock, |db| async move {
    let Some(c) = Console::start(&db).await else {
        return;
    };
    let tenant = c.api.register("two-tabs").await;
    c.command(tenant, "acquire-lock", json!({"holder": "tab-a"}))
        .await;
    let (link_a, link_b) = tokio::join!(
        c.link(tenant, Some("tab-a"), None),
        c.link(tenant, Some("tab-b"), None)
    );

    let tab_b = c.browser.window().await;
    c.follow(&link_b).await;
    c.browser
        .wait_for_text("#lock-notice", "Setup is in progress in another tab.")
        .await;
    let view = c.api.get(format!("/v1/tenants/{tenant}")).await;
    view.expect(200);
    let expires: DateTime<Utc> = view.body["lock"]["expires_at"]
        .as_str()
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no lock expiry in {}", view.text));
    let shown: DateTime<Utc> = c
        .browser
        .attr("#lock-notice time", "datetime")
        .await
        .and_then(|t| t.parse().ok())
        .expect("the notice's <time> has a datetime");
    assert_eq!(shown, expires.trunc_subsecs(0), "the notice shows the lock's expiry");
    assert_eq!(
        c.browser.text_of("#lock-notice time").await,
        expires.format("%H:%M:%S UTC").to_string()
    );
    assert_eq!(states(&c.browser).await, expected(0, true));
    c.screenshot("progress-other-tab").await;

    let tab_a = c.browser.new_tab().await;
    c.follow(&link_a).await;
    assert_eq!(states(&c.browser).await, expected(0, true));
    assert!(
        !c.browser.exists("#lock-notice").await,
        "tab-a's own page says another tab has the lock:\n{}",
        c.browser.body_text().await
    );

    c.browser.switch_to(&tab_b).await;
    c.browser.eval("window.__same_page = true; return true;").await;
    c.command(tenant, "release-lock", json!({"holder": "tab-a"}))
        .await;
    c.browser.wait_for_gone("#lock-notice").await;
    assert_eq!(
        c.browser.eval("return window.__same_page === true;").await,
        json!(true),
        "the notice went with a reload, not live"
    );
    c.command(tenant, "acquire-lock", json!({"holder": "tab-b"}))
        .await;
    c.command(
        tenant,
        "verify-payment",
        json!({"checkout_session_id": "cs_1", "holder": "tab-b"}),
    )
    .await;
    c.browser
        .wait_for(&stage_in("verifying_payment", "done"))
        .await;
    assert_eq!(states(&c.browser).await, expected(1, true));
    assert!(!c.browser.exists("#lock-notice").await);

    // Tab-a's page now follows tab-b's lock.
    c.browser.switch_to(&tab_a).await;
    c.browser
        .wait_for_text("#lock-notice", "Setup is in progress in another tab.")
        .await;
    c.browser
        .wait_for(&stage_in("verifying_payment", "done"))
        .await;
    c.stop().await;
});

/// Words that would tell how the system is built, never shown to the person onboarding.
const TECHNICAL: [&str; 5] = ["sql", "sqlx", "constraint", "panicked", "duplicate key"];

/// Panics when the page's text, or its markup, shows a failure's technical code.
async fn assert_plain(browser: &Browser) {
    let text = browser.body_text().await.to_lowercase();
    let markup = browser
        .eval("return document.documentElement.outerHTML;")
        .await
        .as_str()
        .unwrap_or_default()
        .to_lowercase();
    for word in TECHNICAL {
        assert!(!text.contains(word), "the page shows {word:?}:\n{text}");
        assert!(!markup.contains(word), "the page's markup holds {word:?}");
    }
}

// A failed step shows the stage as failed with friendly words and what happens next, never
// the failure's code; the page, and the sign-in page, fit a phone's width with every control
// labelled.
store_test!(databases: failed_step_is_friendly, |db| async move {
    let Some(c) = Console::start(&db).await else {
        return;
    };
    let tenant = c.api.register("workspace").await;
    let tab_a = || json!({"holder": "tab-a"});
    c.command(tenant, "acquire-lock", tab_a()).await;
    c.command(
        tenant,
        "verify-payment",
        json!({"checkout_session_id": "cs_1", "holder": "tab-a"}),
    )
    .await;
    c.command(tenant, "create-organization", tab_a()).await;
    let link = c.link(tenant, Some("tab-a"), None).await;
    c.follow(&link).await;
    assert_eq!(states(&c.browser).await, expected(2, true));
    assert!(!c.browser.exists("#failure").await);

    c.command(
        tenant,
        "record-step-failure",
        json!({
            "stage": "setting_up_workspace",
            "code": "sqlx::error: duplicate key value violates unique constraint \"workspaces_pkey\"",
            "holder": "tab-a",
        }),
    )
    .await;
    c.browser
        .wait_for_text("#failure .message", "We could not set up your workspace.")
        .await;
    c.browser
        .wait_for_text("#failure .next", "the step will be retried")
        .await;
    c.browser
        .wait_for(&stage_in("setting_up_workspace", "failed"))
        .await;
    assert_plain(&c.browser).await;

    c.command(
        tenant,
        "record-step-failure",
        json!({"stage": "setting_up_workspace", "code": "quota_exceeded", "holder": "tab-a"}),
    )
    .await;
    c.browser
        .wait_for_text(
            "#failure .message",
            "Your plan's limit was reached while setting up.",
        )
        .await;
    assert!(
        c.browser
            .text_of("#failure .next")
            .await
            .contains("Upgrade your plan or remove unused workspaces, then try again."),
        "{}",
        c.browser.body_text().await
    );
    assert_eq!(
        c.browser
            .attr(&stage("setting_up_workspace"), "data-state")
            .await
            .as_deref(),
        Some("failed")
    );
    assert_plain(&c.browser).await;
    assert!(
        !c.browser.body_text().await.contains("quota_exceeded"),
        "the page shows the failure's code"
    );
    c.browser.assert_labelled().await;
    c.screenshot("progress-failed").await;

    // A phone's width: the progress page and the sign-in page fit without sideways scrolling.
    c.browser.mobile().await;
    c.browser.wait_for(LIVE).await;
    c.browser.assert_no_horizontal_scroll().await;
    c.open("/ui").await;
    c.browser.wait_for("form#sign-in input#token").await;
    c.browser.assert_no_horizontal_scroll().await;
    c.browser.assert_labelled().await;
    c.stop().await;
});
