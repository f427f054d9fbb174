//! `GET /v1/events/live`: live subscribers catch up, then follow writers and a late commit,
//! each event exactly once and in order; `Last-Event-ID` resumes exactly; idle subscribers
//! share one tail of the log instead of reading the database each.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ledger_api::ApiConfig;
use ledger_core::{CountedLog, ExpectedSeq, NewEvent, Seq, StreamName};
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, Live};

/// Writers appending while subscribers follow.
const WRITERS: usize = 6;
/// Appends per writer.
const APPENDS: usize = 10;

/// An event with a fresh id.
fn event(event_type: &str, data: Value) -> NewEvent {
    NewEvent::new(event_type, data)
}

/// Opens a live NDJSON stream with `query`.
async fn open_ndjson(api: &Api, query: &str) -> Live {
    let live = api
        .req("GET", format!("/v1/events/live?{query}"))
        .admin()
        .header("accept", "application/x-ndjson")
        .open()
        .await;
    assert_eq!(live.status.as_u16(), 200);
    assert_eq!(
        live.headers.get("content-type").unwrap(),
        "application/x-ndjson"
    );
    live
}

/// Reads `n` events off a live NDJSON stream.
async fn take(live: &mut Live, n: usize) -> Vec<Value> {
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        out.push(live.ndjson().await.expect("the live stream ended early"));
    }
    out
}

/// Panics unless `events` are each once, with growing cursors, and in seq order per stream.
pub fn assert_exactly_once_in_order(events: &[Value]) {
    let cursors: Vec<&str> = events
        .iter()
        .map(|e| e["cursor"].as_str().unwrap())
        .collect();
    assert!(
        cursors.windows(2).all(|w| w[0] < w[1]),
        "cursors out of order"
    );
    let ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), events.len(), "an event came twice");
    let mut last: HashMap<&str, u64> = HashMap::new();
    for e in events {
        let seq = e["seq"].as_u64().unwrap();
        let prev = last.insert(e["stream"].as_str().unwrap(), seq).unwrap_or(0);
        assert_eq!(seq, prev + 1, "{e}");
    }
}

/// Live subscribers (all events, and one category) catch up on what was there, then get
/// every event six writers and a late transaction append, each once and in order.
pub async fn live_follows_writers_and_a_late_commit(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store.clone());
    store
        .append(
            StreamName::parse("before-1").unwrap(),
            ExpectedSeq::NoStream,
            vec![event("Before", json!({}))],
        )
        .await
        .unwrap();
    let mut all = open_ndjson(&api, "").await;
    let mut others = open_ndjson(&api, "category=other").await;
    let first = take(&mut all, 1).await;
    assert_eq!(first[0]["type"], "Before");

    let mut late = store.begin().await.unwrap();
    late.append(
        StreamName::parse("late-1").unwrap(),
        ExpectedSeq::NoStream,
        vec![event("Late", json!({}))],
    )
    .await
    .unwrap();
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = StreamName::parse(format!("other-{w}")).unwrap();
            for i in 0..APPENDS {
                store
                    .append(
                        s.clone(),
                        ExpectedSeq::Exact(Seq(i as u64)),
                        vec![event("Other", json!({"w": w, "i": i}))],
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    late.commit().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    let total = WRITERS * APPENDS + 1;
    let mut got = first;
    got.extend(take(&mut all, total).await);
    assert_exactly_once_in_order(&got);
    assert!(
        got.iter().any(|e| e["type"] == "Late"),
        "the late commit was skipped"
    );
    let filtered = take(&mut others, WRITERS * APPENDS).await;
    assert_exactly_once_in_order(&filtered);
    assert!(filtered.iter().all(|e| e["type"] == "Other"));
    // Nothing more comes: one more append is the next event on both.
    store
        .append(
            StreamName::parse("other-0").unwrap(),
            ExpectedSeq::Exact(Seq(APPENDS as u64)),
            vec![event("Other", json!({"last": true}))],
        )
        .await
        .unwrap();
    assert_eq!(take(&mut all, 1).await[0]["data"], json!({"last": true}));
    assert_eq!(take(&mut others, 1).await[0]["data"], json!({"last": true}));
}

/// Server-Sent Events carry the cursor as `id`; reconnecting with `Last-Event-ID` resumes
/// right after it; bad headers and too many subscribers have their codes.
pub async fn live_resumes_from_last_event_id(store: ledger_tests::Store) {
    let config = ApiConfig {
        max_live_subscribers: 2,
        ..ApiConfig::default()
    };
    let api = Api::with_log_config(store.clone(), store.clone(), config);
    let s = StreamName::parse("resume-1").unwrap();
    for i in 0..8u64 {
        store
            .append(
                s.clone(),
                ExpectedSeq::Exact(Seq(i)),
                vec![event("Step", json!({"i": i}))],
            )
            .await
            .unwrap();
    }
    let mut live = api.req("GET", "/v1/events/live").admin().open().await;
    assert_eq!(live.status.as_u16(), 200);
    let mut ids = Vec::new();
    for i in 0..5 {
        let e = live.sse().await.unwrap();
        assert_eq!(e.event, "event");
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["data"]["i"], i);
        assert_eq!(Some(data["cursor"].as_str().unwrap().to_string()), e.id);
        ids.push(e.id.unwrap());
    }
    // Two are connected at most.
    let _second = api.req("GET", "/v1/events/live").admin().open().await;
    let third = api.get("/v1/events/live").await;
    third.expect_error(503, "too_many_subscribers");
    drop(live);
    drop(_second);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut again = api
        .req("GET", "/v1/events/live")
        .admin()
        .header("last-event-id", ids[4].clone())
        .open()
        .await;
    assert_eq!(again.status.as_u16(), 200);
    for i in 5..8 {
        let e = again.sse().await.unwrap();
        let data: Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(data["data"]["i"], i, "resumed at the wrong event");
    }
    drop(again);
    tokio::time::sleep(Duration::from_millis(50)).await;
    api.req("GET", "/v1/events/live")
        .admin()
        .header("last-event-id", "7")
        .send()
        .await
        .expect_error(400, "invalid_header");
    api.get("/v1/events/live?seconds=0")
        .await
        .expect_error(400, "invalid_query");
    // `seconds` ends the stream: the whole answer arrives.
    let r = api
        .req("GET", "/v1/events/live?seconds=1&type=Step")
        .admin()
        .header("accept", "application/x-ndjson")
        .send()
        .await;
    r.expect(200);
    let events = r.ndjson();
    assert_eq!(events.len(), 8);
    assert_exactly_once_in_order(&events);
}

/// Subscribers connected at once in [`idle_subscribers_share_one_tail`].
const SUBSCRIBERS: usize = 200;
/// Appends while they are connected.
const LIVE_APPENDS: usize = 10;

/// 200 caught-up subscribers cost the database the tail's reads, not one read each per
/// append: the reads of the log are counted while ten events are appended and delivered to all.
pub async fn idle_subscribers_share_one_tail(store: ledger_tests::Store) {
    let counting = Arc::new(CountedLog::new(store.clone()));
    let api = Api::with_log(store.clone(), counting.clone());
    let s = StreamName::parse("shared-1").unwrap();
    store
        .append(
            s.clone(),
            ExpectedSeq::NoStream,
            vec![event("Start", json!({}))],
        )
        .await
        .unwrap();
    let mut subscribers = Vec::new();
    for _ in 0..SUBSCRIBERS {
        let mut live = open_ndjson(&api, "").await;
        assert_eq!(take(&mut live, 1).await[0]["type"], "Start");
        subscribers.push(live);
    }
    let before = counting.reads() as usize;
    for i in 0..LIVE_APPENDS {
        let id = Uuid::now_v7();
        store
            .append(
                s.clone(),
                ExpectedSeq::Exact(Seq(i as u64 + 1)),
                vec![NewEvent::new("Tick", json!({"i": i})).with_id(id)],
            )
            .await
            .unwrap();
        for live in &mut subscribers {
            let e = take(live, 1).await;
            assert_eq!(e[0]["event_id"], id.to_string());
        }
    }
    let reads = counting.reads() as usize - before;
    eprintln!("{SUBSCRIBERS} live subscribers, {LIVE_APPENDS} appends: {reads} reads of the log");
    assert!(
        reads < SUBSCRIBERS,
        "{SUBSCRIBERS} subscribers made {reads} reads of the log for {LIVE_APPENDS} appends"
    );
}
