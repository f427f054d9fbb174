//! The console answers in a browser at all: the sign-in page renders with a labelled token field.

use ledger_tests::backend::Kind;

use super::driver::Browser;
use crate::serve::{ADMIN, serve_with};

store_test!(databases: sign_in_page_renders, |db| async move {
    let (browser, server) = tokio::join!(Browser::start(), async {
        db.migrate().await.unwrap();
        serve_with(&db, Some(ADMIN), &[]).await
    });
    let Some(browser) = browser else { return };
    browser.goto(&format!("http://{}/ui", server.addr)).await;
    browser.wait_for_text("body", "Sign in").await;
    assert!(browser.exists("input#token").await, "no input#token on the sign-in page");
    assert!(
        browser.exists("label[for=\"token\"]").await,
        "the token field has no <label for=\"token\">"
    );
    if db.kind == Kind::Sqlite {
        browser.screenshot("sign-in").await;
    }
    browser.close().await;
    server.stop().await;
});
