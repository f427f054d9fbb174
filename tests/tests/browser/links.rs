//! Progress links that were changed or expired: the browser gets the error page with the code
//! (403 `link_invalid`, 410 `link_expired`), never the tenant's progress.

use std::time::Duration;

use super::driver::Browser;
use super::setup::Console;

/// Opens `path` in the browser and over plain HTTP; checks the status, the error page's code
/// and that no progress shows.
async fn refused(c: &Console, path: &str, status: u16, code: &str) {
    let r = c.api.req("GET", path).send().await;
    assert_eq!(r.status.as_u16(), status, "{path}: {}", r.text);
    c.open(path).await;
    c.browser.wait_for_text("p.code code", code).await;
    assert_eq!(c.browser.text_of("p.code code").await, code);
    assert!(
        !c.browser.text_of("#error-message").await.trim().is_empty(),
        "the error page of {path} says nothing"
    );
    assert_no_progress(&c.browser, path).await;
}

/// Panics when the page shows any of a tenant's progress.
async fn assert_no_progress(browser: &Browser, path: &str) {
    for css in ["#progress", "ol#stages", "#welcome", "#lock-notice"] {
        assert!(!browser.exists(css).await, "{path} shows {css}");
    }
}

/// `path` with the first hex digit of its `sig` changed.
fn flip_sig(path: &str) -> String {
    let at = path.find("sig=").expect("a signed link") + 4;
    let digit = &path[at..at + 1];
    let other = if digit == "0" { "1" } else { "0" };
    let mut flipped = path.to_string();
    flipped.replace_range(at..at + 1, other);
    flipped
}

/// `path` with its `exp` an hour later.
fn later_exp(path: &str) -> String {
    let at = path.find("exp=").expect("an expiring link") + 4;
    let end = path[at..].find('&').map_or(path.len(), |i| at + i);
    let exp: i64 = path[at..end].parse().expect("exp is Unix seconds");
    format!("{}{}{}", &path[..at], exp + 3600, &path[end..])
}

// A link with one digit of its signature flipped, or with another expiry, answers 403
// `link_invalid`; a link opened after its `ttl_seconds` answers 410 `link_expired`.
store_test!(databases: changed_or_expired_links_are_refused, |db| async move {
    let Some(c) = Console::start(&db).await else {
        return;
    };
    let tenant = c.api.register("links").await;
    // The short link first: its two seconds run while the changed links are checked.
    let short = c.link(tenant, Some("tab-b"), Some(1)).await;
    let opened_after = tokio::time::Instant::now() + Duration::from_secs(2);
    let good = c.link(tenant, Some("tab-b"), None).await;

    c.follow(&good).await;
    c.browser.wait_for("ol#stages").await;

    let flipped = flip_sig(&good.path);
    assert_ne!(flipped, good.path);
    refused(&c, &flipped, 403, "link_invalid").await;
    let later = later_exp(&good.path);
    assert_ne!(later, good.path);
    refused(&c, &later, 403, "link_invalid").await;

    tokio::time::sleep_until(opened_after).await;
    refused(&c, &short.path, 410, "link_expired").await;
    assert!(
        chrono::Utc::now() > short.expires_at,
        "the link expires at {}",
        short.expires_at
    );
    c.browser.assert_labelled().await;
    c.screenshot("link-expired").await;
    c.stop().await;
});
