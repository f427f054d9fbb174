//! What the console's browser tests share: one server, one browser and an API client per test,
//! progress links, signing in and out, the tenant's events, screenshots on SQLite only.

use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_tests::backend::{Db, Kind};
use serde_json::{Value, json};
use uuid::Uuid;

use super::driver::Browser;
use crate::api_suite::client::Api;
use crate::serve::{ADMIN, Served, client, ledger_command, serve_with};

/// The five stages of the progress page, in order, as its `data-stage` names them.
pub(crate) const STAGES: [&str; 5] = [
    "verifying_payment",
    "creating_organization",
    "setting_up_workspace",
    "generating_api_key",
    "finalizing",
];

/// The `li` of a stage on the progress page.
pub(crate) fn stage(name: &str) -> String {
    format!("ol#stages > li[data-stage=\"{name}\"]")
}

/// The `li` of a stage on the progress page in `state`.
pub(crate) fn stage_in(name: &str, state: &str) -> String {
    format!("{}[data-state=\"{state}\"]", stage(name))
}

/// The progress page once its event stream has delivered its first view (the console's script
/// stamps `data-updated` on each).
pub(crate) const LIVE: &str = "div#progress[data-updated]";

/// A progress link as the API hands it out.
#[derive(Debug, Clone)]
pub(crate) struct Link {
    /// The page's path and signed query.
    pub(crate) path: String,
    /// When it stops working.
    pub(crate) expires_at: DateTime<Utc>,
}

/// A `ledger serve` on a test's database, a browser, and the API of that server.
pub(crate) struct Console {
    pub(crate) browser: Browser,
    pub(crate) server: Served,
    pub(crate) api: Api,
    /// Whether this run writes the screenshots (the SQLite one).
    shots: bool,
}

impl Console {
    /// Migrates `db`, starts a server on it and a browser (together); `None` when the browser
    /// tests are skipped (no Chromium outside CI).
    pub(crate) async fn start(db: &Db) -> Option<Console> {
        let (browser, server) = tokio::join!(Browser::start(), async {
            db.migrate().await.unwrap();
            serve_with(db, Some(ADMIN), &[]).await
        });
        let browser = browser?;
        let api = client(db, vec![server.addr]).await;
        Some(Console {
            browser,
            server,
            api,
            shots: db.kind == Kind::Sqlite,
        })
    }

    /// The server's URL of `path`.
    pub(crate) fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    /// Opens `path` of the server in the current tab.
    pub(crate) async fn open(&self, path: &str) {
        self.browser.goto(&self.url(path)).await;
    }

    /// Saves `docs/screenshots/<name>.png` on the SQLite run.
    pub(crate) async fn screenshot(&self, name: &str) {
        if self.shots {
            self.browser.screenshot(name).await;
        }
    }

    /// A progress link to `tenant` for the tab `holder`, working for `ttl` seconds (the
    /// server's default when `None`).
    pub(crate) async fn link(&self, tenant: Uuid, holder: Option<&str>, ttl: Option<u64>) -> Link {
        let mut body = serde_json::Map::new();
        if let Some(holder) = holder {
            body.insert("holder".into(), holder.into());
        }
        if let Some(ttl) = ttl {
            body.insert("ttl_seconds".into(), ttl.into());
        }
        let r = self
            .api
            .req("POST", format!("/v1/tenants/{tenant}/progress-link"))
            .admin()
            .json(Value::Object(body))
            .send()
            .await;
        r.expect(201);
        Link {
            path: r.body["path"].as_str().expect("a link's path").to_string(),
            expires_at: r.body["expires_at"]
                .as_str()
                .and_then(|t| t.parse().ok())
                .expect("a link's expires_at"),
        }
    }

    /// Opens a progress link and waits until its page is live.
    pub(crate) async fn follow(&self, link: &Link) {
        self.open(&link.path).await;
        self.browser.wait_for(LIVE).await;
    }

    /// Runs `command` on `tenant` with `body` through the API; it must succeed.
    pub(crate) async fn command(&self, tenant: Uuid, command: &str, body: Value) -> Value {
        self.api.ok(tenant, command, body).await.body.clone()
    }

    /// The event types of the tenant's stream, in order.
    pub(crate) async fn event_types(&self, tenant: Uuid) -> Vec<String> {
        self.api
            .events(&format!("tenant-{tenant}"))
            .await
            .into_iter()
            .map(|e| e.event_type)
            .collect()
    }

    /// Signs in through the form with `token`; waits for the first page after it.
    pub(crate) async fn sign_in(&self, token: &str) {
        self.open("/ui").await;
        self.browser.fill("form#sign-in input#token", token).await;
        self.browser
            .click("form#sign-in button[type=\"submit\"]")
            .await;
        self.browser.wait_for("form.sign-out button").await;
    }

    /// Signs out with the navigation's button; waits for the sign-in form.
    pub(crate) async fn sign_out(&self) {
        self.browser.click("form.sign-out button").await;
        self.browser.wait_for("form#sign-in input#token").await;
    }

    /// Ends the browser session and stops the server.
    pub(crate) async fn stop(self) {
        self.browser.close().await;
        self.server.stop().await;
    }
}

/// Issues an auditor token called `name` with `ledger token issue` on `db`.
pub(crate) async fn auditor_token(db: &Db, name: &str) -> String {
    let out = ledger_command(db, None)
        .args(["token", "issue", "--role", "auditor", "--name", name])
        .output()
        .await
        .expect("cannot run ledger token issue");
    assert!(
        out.status.success(),
        "ledger token issue failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let issued: Value =
        serde_json::from_slice(&out.stdout).expect("ledger token issue prints JSON");
    assert_eq!(issued["role"], json!("auditor"), "{issued}");
    issued["token"]
        .as_str()
        .expect("an issued token")
        .to_string()
}

/// The median and the largest of `samples` (which must not be empty).
pub(crate) fn median_and_max(samples: &[Duration]) -> (Duration, Duration) {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let n = sorted.len();
    let median = if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2
    };
    (median, sorted[n - 1])
}
