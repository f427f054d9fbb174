//! Durable subscriptions and consumer groups over HTTP, multi-stream appends, and
//! exactly-once processing with an ack carried by the results' append.

use std::collections::{HashMap, HashSet};

use ledger_core::{ExpectedSeq, NewEvent, Seq, StreamName};
use serde_json::{Value, json};

use super::client::Api;

/// Streams of the category the group subscribes to.
const STREAMS: usize = 12;
/// Events per stream.
const PER_STREAM: u64 = 3;

/// Appends `PER_STREAM` events to each of `STREAMS` `job-*` streams and some noise.
async fn seed(api: &Api) {
    for s in 0..STREAMS {
        let stream = StreamName::parse(format!("job-{s}")).unwrap();
        for i in 0..PER_STREAM {
            api.store
                .append(
                    stream.clone(),
                    ExpectedSeq::Exact(Seq(i)),
                    vec![NewEvent::new("Queued", json!({"s": s, "i": i}))],
                )
                .await
                .unwrap();
        }
        api.store
            .append(
                StreamName::parse(format!("noise-{s}")).unwrap(),
                ExpectedSeq::Any,
                vec![NewEvent::new("Noise", json!({}))],
            )
            .await
            .unwrap();
    }
}

/// A member's next page.
async fn page(api: &Api, name: &str, member: u32, members: u32, limit: usize) -> Value {
    let r = api
        .get(format!(
            "/v1/subscriptions/{name}/events?member={member}&members={members}&limit={limit}"
        ))
        .await;
    r.expect(200);
    r.body.clone()
}

/// Acks `cursor` for `member`.
async fn ack(api: &Api, name: &str, member: u32, cursor: &str) -> Value {
    let r = api
        .req("POST", format!("/v1/subscriptions/{name}/ack"))
        .admin()
        .json(json!({"member": member, "cursor": cursor}))
        .send()
        .await;
    r.expect(200);
    r.body.clone()
}

/// Three members of a group read and ack until caught up: every event once, each stream at one
/// member in order; a member that restarts resumes from its ack. Runs in process or against
/// several servers.
pub async fn group_on(api: &Api) {
    let name = "jobs";
    let def = json!({"categories": ["job"], "members": 3});
    let r = api
        .req("PUT", format!("/v1/subscriptions/{name}"))
        .admin()
        .json(def.clone())
        .send()
        .await;
    r.expect(201);
    assert_eq!(r.body["definition"]["members"], 3);
    api.req("PUT", format!("/v1/subscriptions/{name}"))
        .admin()
        .json(def)
        .send()
        .await
        .expect(200);
    api.req("PUT", format!("/v1/subscriptions/{name}"))
        .admin()
        .json(json!({"categories": ["other"], "members": 3}))
        .send()
        .await
        .expect_error(409, "subscription_exists");
    seed(api).await;

    let mut owner: HashMap<String, u32> = HashMap::new();
    let mut seen: HashSet<String> = HashSet::new();
    for member in 0..3u32 {
        let mut last_seq: HashMap<String, u64> = HashMap::new();
        let mut first_page = true;
        loop {
            let body = page(api, name, member, 3, 4).await;
            let events = body["events"].as_array().unwrap();
            for e in events {
                let stream = e["stream"].as_str().unwrap().to_string();
                assert!(stream.starts_with("job-"), "{stream}");
                assert_eq!(
                    *owner.entry(stream.clone()).or_insert(member),
                    member,
                    "{stream} went to two members"
                );
                let seq = e["seq"].as_u64().unwrap();
                assert_eq!(
                    seq,
                    last_seq.get(&stream).copied().unwrap_or(0) + 1,
                    "{stream} out of order"
                );
                last_seq.insert(stream, seq);
                assert!(
                    seen.insert(e["event_id"].as_str().unwrap().to_string()),
                    "an event twice"
                );
            }
            let next = body["next_cursor"].as_str().unwrap().to_string();
            let acked = ack(api, name, member, &next).await;
            assert_eq!(acked["checkpoint"], next.as_str());
            if first_page {
                first_page = false;
                // A restarted worker resumes from its ack: the next page starts there.
                let again = page(api, name, member, 3, 4).await;
                assert_eq!(again["checkpoint"], next.as_str());
            }
            if body["caught_up"].as_bool().unwrap() {
                break;
            }
        }
    }
    assert_eq!(seen.len(), STREAMS * PER_STREAM as usize, "events lost");
    assert_eq!(
        owner.values().collect::<HashSet<_>>().len(),
        3,
        "a member got no stream"
    );
    // Acks move forward only.
    let back = ack(api, name, 0, &"0".repeat(32)).await;
    assert_eq!(back["moved"], false);
    // The group size is the subscription's.
    let wrong = format!("/v1/subscriptions/{name}/events?member=0&members=2");
    api.get(wrong).await.expect_error(409, "group_mismatch");
    let beyond = format!("/v1/subscriptions/{name}/events?member=3");
    api.get(beyond).await.expect_error(409, "group_mismatch");
    let put = |body: Option<Value>| {
        let req = api.req("PUT", "/v1/subscriptions/other").admin();
        match body {
            Some(body) => req.json(body),
            None => req,
        }
    };
    put(None).send().await.expect_error(400, "invalid_json");
    let upper = json!({"categories": ["Tenant"]});
    put(Some(upper))
        .send()
        .await
        .expect_error(422, "invalid_body");
    api.get("/v1/subscriptions/nobody/events")
        .await
        .expect_error(404, "subscription_not_found");
}

/// The consumer group in process.
pub async fn subscription_group(store: ledger_tests::Store) {
    group_on(&Api::with_log(store.clone(), store)).await;
}

/// Posts a multi-stream append.
async fn post_events(api: &Api, body: Value) -> super::client::Reply {
    api.req("POST", "/v1/events")
        .admin()
        .json(body)
        .send()
        .await
}

/// Several streams at once, all or nothing; bad requests have their codes.
pub async fn multi_stream_append(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    let r = post_events(&api, json!({"appends": [
        {"stream": "a-1", "expected_seq": "no_stream", "events": [{"type": "A", "data": {}}]},
        {"stream": "b-1", "expected_seq": 0, "events": [{"type": "B", "data": {}}, {"type": "B", "data": {}}]},
    ]})).await;
    r.expect(200);
    assert_eq!(r.body["results"][1]["last_seq"], 2);
    assert_eq!(r.body["checkpoint"], Value::Null);
    // One stale expectation: nothing written anywhere.
    let r = post_events(
        &api,
        json!({"appends": [
            {"stream": "a-1", "expected_seq": 1, "events": [{"type": "A", "data": {}}]},
            {"stream": "b-1", "expected_seq": 1, "events": [{"type": "B", "data": {}}]},
        ]}),
    )
    .await;
    r.expect_error(409, "conflict");
    assert_eq!(api.seq("a-1").await, 1);
    assert_eq!(api.seq("b-1").await, 2);
    for (body, status, code) in [
        (json!({"appends": []}), 422, "invalid_body"),
        (
            json!({"appends": [{"stream": "a-1", "events": [{"type": "A", "data": {}}]}]}),
            422,
            "invalid_body",
        ),
        (
            json!({"appends": [{"stream": "Bad", "expected_seq": 0, "events": [{"type": "A", "data": {}}]}]}),
            422,
            "invalid_stream_name",
        ),
        (
            json!({"appends": [{"stream": "c-1", "expected_seq": 0, "events": []}]}),
            422,
            "empty_batch",
        ),
        (
            json!({"appends": [{"stream": "c-1", "expected_seq": 0, "events": [{"type": "A", "data": {}}]}], "ack": {"subscription": "none", "cursor": "0".repeat(32)}}),
            404,
            "subscription_not_found",
        ),
    ] {
        post_events(&api, body).await.expect_error(status, code);
    }
    assert_eq!(api.seq("c-1").await, 0);
    // A tenant token writes only its own stream.
    let t = api.register("multi-a").await;
    let token = api.tenant_token(t).await;
    api.req("POST", "/v1/events")
        .token(&token)
        .json(json!({"appends": [{"stream": "a-1", "expected_seq": 1, "events": [{"type": "A", "data": {}}]}]}))
        .send()
        .await
        .expect_error(403, "forbidden");
}

/// Two workers as the same member race to append results with the same ack: one commits,
/// the other gets 409 and nothing of it is written; a worker that stops between its append
/// and its next read processes nothing twice.
pub async fn exactly_once(store: ledger_tests::Store) {
    let api = Api::with_log(store.clone(), store);
    api.req("PUT", "/v1/subscriptions/once")
        .admin()
        .json(json!({"categories": ["job"]}))
        .send()
        .await
        .expect(201);
    seed(&api).await;
    let first = page(&api, "once", 0, 1, 5).await;
    let from = first["checkpoint"].as_str().unwrap().to_string();
    let next = first["next_cursor"].as_str().unwrap().to_string();
    let result = |worker: &str| {
        json!({
            "appends": [{"stream": format!("result-{worker}"), "expected_seq": "any", "events": [{"type": "Done", "data": {"n": 5}}]}],
            "ack": {"subscription": "once", "cursor": next, "after": from},
        })
    };
    let (a, b) = tokio::join!(
        post_events(&api, result("a")),
        post_events(&api, result("b"))
    );
    let statuses = [a.status.as_u16(), b.status.as_u16()];
    assert!(
        statuses.contains(&200) && statuses.contains(&409),
        "{statuses:?}"
    );
    let loser = if a.status.as_u16() == 409 { &a } else { &b };
    assert_eq!(loser.code(), "checkpoint_moved");
    assert_eq!(
        api.seq("result-a").await + api.seq("result-b").await,
        1,
        "both results were written"
    );
    // The same ack again (a retry after a crash) is refused, with or without `after`.
    post_events(&api, result("c"))
        .await
        .expect_error(409, "checkpoint_moved");
    let no_after = json!({"appends": [{"stream": "result-d", "expected_seq": "any", "events": [{"type": "Done", "data": {}}]}], "ack": {"subscription": "once", "cursor": next}});
    post_events(&api, no_after)
        .await
        .expect_error(409, "checkpoint_moved");
    assert_eq!(api.seq("result-c").await + api.seq("result-d").await, 0);

    // A job that processes everything, stopping after an append now and then: each event's
    // result is written once.
    let mut processed = 5usize;
    loop {
        let body = page(&api, "once", 0, 1, 4).await;
        let events = body["events"].as_array().unwrap().clone();
        if events.is_empty() {
            break;
        }
        let r = post_events(&api, json!({
            "appends": [{"stream": "result-job", "expected_seq": "any", "events": events.iter().map(|e| json!({"type": "Done", "data": {"of": e["event_id"]}})).collect::<Vec<_>>()}],
            "ack": {"subscription": "once", "cursor": body["next_cursor"], "after": body["checkpoint"]},
        })).await;
        r.expect(200);
        processed += events.len();
        // "Killed" here: the next loop turn reads from the stored checkpoint, as a restart does.
    }
    assert_eq!(processed, STREAMS * PER_STREAM as usize);
    let done = api.events("result-job").await;
    let ofs: HashSet<String> = done
        .iter()
        .map(|e| e.data["of"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ofs.len(), done.len(), "an event was processed twice");
    assert_eq!(done.len(), STREAMS * PER_STREAM as usize - 5);
    // A single-stream append carries an ack too.
    api.store
        .append(
            StreamName::parse("job-0").unwrap(),
            ExpectedSeq::Any,
            vec![NewEvent::new("Queued", json!({"late": true}))],
        )
        .await
        .unwrap();
    let body = page(&api, "once", 0, 1, 10).await;
    assert_eq!(body["events"].as_array().unwrap().len(), 1);
    let single = json!({
        "expected_seq": "any",
        "events": [{"type": "Done", "data": {"late": true}}],
        "ack": {"subscription": "once", "cursor": body["next_cursor"], "after": body["checkpoint"]},
    });
    let post = || {
        api.req("POST", "/v1/streams/result-single/events")
            .admin()
            .json(single.clone())
            .send()
    };
    post().await.expect(200);
    post().await.expect_error(409, "checkpoint_moved");
    assert_eq!(api.seq("result-single").await, 1);
}

/// Writers racing the group in [`group_under_writers_on`].
const RACING_WRITERS: usize = 6;
/// Appends per racing writer.
const RACING_APPENDS: u64 = 10;

/// A consumer group of three and a live subscriber (a stream bounded by `seconds`) follow
/// the log while six writers append and one transaction commits late: every event reaches
/// the group exactly once (each stream one member, in order) and the live subscriber exactly
/// once, in order. `store` is a store on the servers' database (for the late transaction).
pub async fn group_under_writers_on(api: &Api, store: ledger_tests::Store) {
    let name = "racing";
    api.req("PUT", format!("/v1/subscriptions/{name}"))
        .admin()
        .json(json!({"categories": ["work"], "members": 3}))
        .send()
        .await
        .expect(201);
    let start = api.get("/v1/events?limit=1000").await;
    let mut cursor = start.body["next_cursor"].as_str().unwrap().to_string();
    loop {
        let more = api
            .get(format!("/v1/events?limit=1000&cursor={cursor}"))
            .await;
        let next = more.body["next_cursor"].as_str().unwrap().to_string();
        if next == cursor {
            break;
        }
        cursor = next;
    }
    let live = {
        let api = api.clone();
        let uri = format!("/v1/events/live?category=work&seconds=8&cursor={cursor}");
        tokio::spawn(async move {
            api.req("GET", uri)
                .admin()
                .header("accept", "application/x-ndjson")
                .send()
                .await
        })
    };
    let expected = RACING_WRITERS * RACING_APPENDS as usize + 1;
    let mut late = store.begin().await.unwrap();
    late.append(
        StreamName::parse("work-late").unwrap(),
        ExpectedSeq::NoStream,
        vec![NewEvent::new("Late", json!({}))],
    )
    .await
    .unwrap();
    let mut writers = Vec::new();
    for w in 0..RACING_WRITERS {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let s = StreamName::parse(format!("work-{w}")).unwrap();
            for i in 0..RACING_APPENDS {
                store
                    .append(
                        s.clone(),
                        ExpectedSeq::Exact(Seq(i)),
                        vec![NewEvent::new("Work", json!({"w": w, "i": i}))],
                    )
                    .await
                    .unwrap();
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }));
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(u32, Value)>::new()));
    let mut members = Vec::new();
    for member in 0..3u32 {
        let (api, seen) = (api.clone(), seen.clone());
        members.push(tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
            loop {
                let body = page(&api, name, member, 3, 7).await;
                let events = body["events"].as_array().unwrap().clone();
                let next = body["next_cursor"].as_str().unwrap().to_string();
                if next != body["checkpoint"].as_str().unwrap() {
                    ack(&api, name, member, &next).await;
                }
                let total = {
                    let mut seen = seen.lock().unwrap();
                    seen.extend(events.into_iter().map(|e| (member, e)));
                    seen.len()
                };
                if total >= expected || tokio::time::Instant::now() > deadline {
                    return;
                }
                if body["caught_up"].as_bool().unwrap() {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
            }
        }));
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    late.commit().await.unwrap();
    for w in writers {
        w.await.unwrap();
    }
    for m in members {
        m.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    let ids: HashSet<&str> = seen
        .iter()
        .map(|(_, e)| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), seen.len(), "the group processed an event twice");
    assert_eq!(seen.len(), expected, "the group missed events");
    let mut owner: HashMap<&str, u32> = HashMap::new();
    let mut last: HashMap<&str, u64> = HashMap::new();
    for (member, e) in &seen {
        let stream = e["stream"].as_str().unwrap();
        assert_eq!(
            *owner.entry(stream).or_insert(*member),
            *member,
            "{stream} at two members"
        );
        let seq = e["seq"].as_u64().unwrap();
        assert_eq!(
            seq,
            last.get(stream).copied().unwrap_or(0) + 1,
            "{stream} out of order"
        );
        last.insert(stream, seq);
    }
    let live = live.await.unwrap();
    live.expect(200);
    let events = live.ndjson();
    super::live::assert_exactly_once_in_order(&events);
    let live_ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        live_ids, ids,
        "the live stream and the group saw different events"
    );
}
