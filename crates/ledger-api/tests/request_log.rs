//! Every log line written while serving a request names the request: a 500's cause is found in
//! the log under the `X-Request-Id` the client was given.

use std::io::Write;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use ledger_api::{ApiConfig, AppState, app};
use ledger_core::{EventStore, ExpectedSeq, NewEvent, StreamName};
use ledger_memory::MemoryStore;
use serde_json::json;
use tower::ServiceExt;
use uuid::Uuid;

/// The admin token of the API under test.
const ADMIN: &str = "request-log-admin-token-0123456789";

/// A log sink the test can read back.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn the_cause_of_a_500_is_logged_under_its_request_id() {
    let captured = Captured::default();
    let sink = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::WARN)
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    // A tenant stream holding an event the onboarding domain cannot read: folding it fails.
    let store = Arc::new(MemoryStore::new());
    let tenant = Uuid::now_v7();
    let stream = StreamName::parse(format!("tenant-{tenant}")).unwrap();
    store
        .append(
            stream,
            ExpectedSeq::NoStream,
            vec![NewEvent::new("NotAnOnboardingEvent", json!({"x": 1}))],
        )
        .await
        .unwrap();
    let router = app(AppState::new(store, ADMIN, ApiConfig::default()));

    let request = Request::get(format!("/v1/tenants/{tenant}"))
        .header("authorization", format!("Bearer {ADMIN}"))
        .header("x-request-id", "req-corrupt-1")
        .body(Body::empty())
        .unwrap();
    let response = router.oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(response.headers()["x-request-id"], "req-corrupt-1");

    let log = captured.text();
    let cause = log
        .lines()
        .find(|line| line.contains("unreadable event"))
        .unwrap_or_else(|| panic!("no line logs the cause:\n{log}"));
    assert!(
        cause.contains("request_id=req-corrupt-1"),
        "the cause's line does not name the request: {cause}"
    );
}
