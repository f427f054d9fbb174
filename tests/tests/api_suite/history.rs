//! A tenant's history for people: the timeline in words, the tenant and the funnel as of any
//! instant, and the property that as-of equals the fold of every prefix of a history.
//!
//! Instants are picked between the `recorded_at` times the store reports; nothing here
//! asserts on how long anything took.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use futures::TryStreamExt;
use ledger_api::{TenantAsOf, TenantView};
use ledger_core::{ReadAll, Seq};
use ledger_domain::{Policy, TenantEvent, fold};
use ledger_projector::{Decode, Record};
use ledger_read_models::testing::{Append, history, random_steps, raw_log, reference, tenant_id};
use ledger_read_models::{Change, Decoder, FunnelDay, LockRow, PendingSyncRow, onboarding_funnel};
use serde_json::{Value, json};
use uuid::Uuid;

use super::client::{Api, Store};

/// An instant as a query parameter.
fn param(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// The instant halfway between two recorded times.
fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> DateTime<Utc> {
    a + (b - a) / 2
}

/// The `recorded_at` of every event of `stream`, in seq order.
async fn recorded(api: &Api, stream: &str) -> Vec<DateTime<Utc>> {
    api.events(stream)
        .await
        .into_iter()
        .map(|e| e.recorded_at)
        .collect()
}

/// Runs onboarding commands a little apart, so that each event has its own `recorded_at`.
async fn pause() {
    tokio::time::sleep(Duration::from_millis(3)).await;
}

/// The timeline lists every event in words with who did it, the phase after and the
/// correlation id; a refused command leaves no entry; tenant tokens read only their own.
pub async fn timeline_in_words(store: Store) {
    let api = Api::new(store);
    let t = api.register("story").await;
    let other = api.register("other-story").await;
    api.req("POST", format!("/v1/tenants/{t}/commands/acquire-lock"))
        .admin()
        .header("x-correlation-id", "checkout-7")
        .json(json!({"holder": "tab-a"}))
        .send()
        .await
        .expect(200);
    // Refused: the lock is tab-a's. It appends nothing, so the timeline never shows it.
    api.command(
        t,
        "verify-payment",
        json!({"checkout_session_id": "cs_9", "holder": "tab-b"}),
    )
    .await
    .expect_error(409, "lock_held");
    api.ok(
        t,
        "verify-payment",
        json!({"checkout_session_id": "cs_123", "holder": "tab-a"}),
    )
    .await;
    let token = api.tenant_token(t).await;
    api.req("POST", format!("/v1/tenants/{t}/commands/release-lock"))
        .token(&token)
        .json(json!({"holder": "tab-a", "reason": "done"}))
        .send()
        .await
        .expect(200);

    let r = api.get(format!("/v1/tenants/{t}/timeline")).await;
    r.expect(200);
    assert_eq!(r.body["tenant_id"], t.to_string());
    assert!(r.body["next_from_seq"].is_null());
    let entries = r.body["entries"].as_array().unwrap();
    let stream = api.events(&format!("tenant-{t}")).await;
    assert_eq!(entries.len(), stream.len());
    let lines: Vec<(u64, &str, &str, &str)> = entries
        .iter()
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["type"].as_str().unwrap(),
                e["phase"].as_str().unwrap(),
                e["actor"].as_str().unwrap(),
            )
        })
        .collect();
    let tenant_actor = format!("tenant:{t}");
    assert_eq!(
        lines,
        [
            (1, "TenantRegistered", "NOT_STARTED", "admin"),
            (2, "OnboardingLockAcquired", "NOT_STARTED", "admin"),
            (3, "PaymentVerified", "PAYMENT_VERIFIED", "admin"),
            (
                4,
                "OnboardingLockReleased",
                "PAYMENT_VERIFIED",
                tenant_actor.as_str()
            ),
        ]
    );
    assert_eq!(
        entries[0]["summary"],
        r#"tenant registered as story ("story Ltd")"#
    );
    let acquired = entries[1]["summary"].as_str().unwrap();
    assert!(
        acquired.starts_with("onboarding lock acquired by tab-a until "),
        "{acquired}"
    );
    assert_eq!(entries[2]["summary"], "payment cs_123 verified");
    assert_eq!(
        entries[3]["summary"],
        "onboarding lock released by tab-a (done)"
    );
    assert_eq!(entries[1]["correlation_id"], "checkout-7");
    assert!(entries[2]["correlation_id"].is_null());
    assert!(
        entries[0]["token"].is_string(),
        "the admin token's name: {}",
        entries[0]
    );
    // A tenant token has a name too (given, or `token-` and the end of its id).
    assert!(
        entries[3]["token"]
            .as_str()
            .is_some_and(|t| t.starts_with("token-")),
        "the tenant token's name: {}",
        entries[3]
    );
    for (entry, envelope) in entries.iter().zip(&stream) {
        assert_eq!(entry["position"], envelope.position.0);
        assert_eq!(entry["request_id"], envelope.metadata["request_id"]);
        let at: DateTime<Utc> = serde_json::from_value(entry["recorded_at"].clone()).unwrap();
        assert_eq!(at, envelope.recorded_at);
    }

    // Pages.
    let first = api.get(format!("/v1/tenants/{t}/timeline?limit=3")).await;
    first.expect(200);
    assert_eq!(first.body["entries"].as_array().unwrap().len(), 3);
    assert_eq!(first.body["next_from_seq"], 4);
    let rest = api
        .get(format!("/v1/tenants/{t}/timeline?from_seq=4&limit=3"))
        .await;
    assert_eq!(rest.body["entries"].as_array().unwrap().len(), 1);
    assert_eq!(rest.body["entries"][0]["seq"], 4);
    assert!(rest.body["next_from_seq"].is_null());
    api.get(format!("/v1/tenants/{t}/timeline?limit=0"))
        .await
        .expect_error(400, "invalid_query");

    // Who may read it.
    api.req("GET", format!("/v1/tenants/{t}/timeline"))
        .token(&token)
        .send()
        .await
        .expect(200);
    api.req("GET", format!("/v1/tenants/{other}/timeline"))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("GET", format!("/v1/tenants/{t}/timeline"))
        .send()
        .await
        .expect_error(401, "unauthorized");
    api.get(format!("/v1/tenants/{}/timeline", Uuid::now_v7()))
        .await
        .expect_error(404, "tenant_not_found");
    api.get("/v1/tenants/nope/timeline")
        .await
        .expect_error(400, "invalid_tenant_id");
}

/// `GET /v1/tenants/{id}?as_of=` answers the tenant, its lock and its syncs as they were at
/// each recorded instant, 404 before its registration, 400 for a time that does not parse.
pub async fn tenant_as_of(store: Store) {
    let api = Api::new(store);
    let t = api.register("then").await;
    let other = api.register("then-other").await;
    pause().await;
    api.ok(t, "acquire-lock", json!({"holder": "tab-a"})).await;
    pause().await;
    api.ok(
        t,
        "record-sync-failure",
        json!({"target": "crm", "last_error": "timeout"}),
    )
    .await;
    pause().await;
    api.ok(
        t,
        "verify-payment",
        json!({"checkout_session_id": "cs_1", "holder": "tab-a"}),
    )
    .await;
    pause().await;
    api.ok(t, "release-lock", json!({"holder": "tab-a"})).await;
    let times = recorded(&api, &format!("tenant-{t}")).await;
    assert_eq!(times.len(), 5);

    let before = times[0] - chrono::Duration::milliseconds(1);
    api.get(format!("/v1/tenants/{t}?as_of={}", param(before)))
        .await
        .expect_error(404, "tenant_not_found");
    let mut seqs = Vec::new();
    for at in &times {
        let r = api
            .get(format!("/v1/tenants/{t}?as_of={}", param(*at)))
            .await;
        r.expect(200);
        assert!(r.header("etag").is_none());
        let then: DateTime<Utc> = serde_json::from_value(r.body["as_of"].clone()).unwrap();
        assert_eq!(then, *at);
        seqs.push(r.body["seq"].as_u64().unwrap());
    }
    // Each event's own time stands at that event (or a later one recorded at the same time).
    for (i, seq) in seqs.iter().enumerate() {
        assert!(
            *seq > i as u64 && seqs.windows(2).all(|w| w[0] <= w[1]),
            "{seqs:?}"
        );
    }
    let mid = api
        .get(format!("/v1/tenants/{t}?as_of={}", param(times[2])))
        .await;
    if seqs[2] == 3 {
        assert_eq!(mid.body["phase"], "NOT_STARTED");
        assert_eq!(mid.body["onboarding_lock"]["holder"], "tab-a");
        assert!(mid.body["onboarding_lock"]["released_at"].is_null());
        assert_eq!(mid.body["lock"]["holder"], "tab-a");
        assert_eq!(mid.body["pending_syncs"][0]["target"], "crm");
        assert_eq!(mid.body["pending_syncs"][0]["status"], "pending_sync");
    }

    // Far ahead: the live view, plus the as-of fields.
    let live = api.get(format!("/v1/tenants/{t}")).await;
    let ahead = Utc::now() + chrono::Duration::days(1);
    let r = api
        .get(format!("/v1/tenants/{t}?as_of={}", param(ahead)))
        .await;
    r.expect(200);
    let mut view = r.body.clone();
    let fields = view.as_object_mut().unwrap();
    for key in ["as_of", "onboarding_lock", "pending_syncs"] {
        assert!(fields.remove(key).is_some(), "{key}");
    }
    assert_eq!(view, live.body);
    assert_eq!(r.body["onboarding_lock"]["release_reason"], "released");
    assert_eq!(r.body["pending_syncs"].as_array().unwrap().len(), 1);
    // Other offsets are the same instant.
    let offset = ahead
        .with_timezone(&chrono::FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339()
        .replace('+', "%2B");
    let same = api.get(format!("/v1/tenants/{t}?as_of={offset}")).await;
    assert_eq!(same.body["seq"], r.body["seq"]);

    for bad in [
        "yesterday",
        "2026-01-20",
        "2026-01-20T14:03:12",
        "1768917792",
    ] {
        api.get(format!("/v1/tenants/{t}?as_of={bad}"))
            .await
            .expect_error(400, "invalid_as_of");
    }
    // The document says so.
    let doc = api.req("GET", "/openapi.json").send().await.body;
    for path in ["/v1/tenants/{id}", "/v1/funnel"] {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let as_of = params.iter().find(|p| p["name"] == "as_of").unwrap();
        assert_eq!(as_of["schema"]["format"], "date-time", "{path}");
    }
    let answer = &doc["paths"]["/v1/tenants/{id}"]["get"]["responses"]["200"]["content"]["application/json"]
        ["schema"];
    assert_eq!(answer["$ref"], "#/components/schemas/TenantAnswer");
    let either = &doc["components"]["schemas"]["TenantAnswer"]["anyOf"];
    assert_eq!(either[0]["$ref"], "#/components/schemas/TenantView");
    assert_eq!(either[1]["$ref"], "#/components/schemas/TenantAsOf");
    let as_of_schema = &doc["components"]["schemas"]["TenantAsOf"];
    assert_eq!(
        as_of_schema["allOf"][0]["$ref"],
        "#/components/schemas/TenantView"
    );
    let timeline = doc["paths"]["/v1/tenants/{id}/timeline"]["get"]["description"]
        .as_str()
        .unwrap();
    assert!(timeline.contains("appears in no timeline"), "{timeline}");

    let token = api.tenant_token(t).await;
    let own = api
        .req("GET", format!("/v1/tenants/{t}?as_of={}", param(ahead)))
        .token(&token)
        .send()
        .await;
    own.expect(200);
    api.req("GET", format!("/v1/tenants/{other}?as_of={}", param(ahead)))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
}

/// `GET /v1/funnel?as_of=` counts what was recorded by then, pages like the live funnel and
/// is the admin's only.
pub async fn funnel_as_of(store: Store) {
    let api = Api::new(store);
    let a = api.register("funnel-a").await;
    pause().await;
    api.register("funnel-b").await;
    pause().await;
    api.ok(a, "verify-payment", json!({"checkout_session_id": "cs_1"}))
        .await;
    let registered = recorded(&api, &format!("tenant-{a}")).await;
    let paid = registered[1];
    let first = registered[0];

    let count = |body: &Value, field: &str| -> u64 {
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d[field].as_u64().unwrap())
            .sum()
    };
    let r = api.get(format!("/v1/funnel?as_of={}", param(first))).await;
    r.expect(200);
    assert!(r.body["as_of"].is_string(), "{}", r.text);
    assert_eq!(count(&r.body, "registrations"), 1);
    assert_eq!(count(&r.body, "reached_payment_verified"), 0);
    let r = api.get(format!("/v1/funnel?as_of={}", param(paid))).await;
    assert_eq!(count(&r.body, "registrations"), 2);
    assert_eq!(count(&r.body, "reached_payment_verified"), 1);
    let early = first - chrono::Duration::milliseconds(1);
    let r = api.get(format!("/v1/funnel?as_of={}", param(early))).await;
    assert_eq!(r.body["items"], json!([]));
    assert!(r.body["next_cursor"].is_null());
    // Without the projections the live funnel is unavailable; as_of reads the log instead.
    api.get("/v1/funnel")
        .await
        .expect_error(503, "projections_unavailable");
    api.get("/v1/funnel?as_of=soon")
        .await
        .expect_error(400, "invalid_as_of");
    // The other parameters are checked as without as_of.
    for bad in [
        "limit=0",
        "cursor=zz",
        "from=monday",
        "min_position=9223372036854775808",
    ] {
        api.get(format!("/v1/funnel?as_of={}&{bad}", param(paid)))
            .await
            .expect_error(400, "invalid_query");
    }
    let token = api.tenant_token(a).await;
    api.req("GET", format!("/v1/funnel?as_of={}", param(paid)))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
}

/// Property: for a generated history appended one append at a time, the tenant (state, lock,
/// syncs) and the funnel as of an instant between each two appends equal the domain's fold
/// of the appends before that instant (and the read models' reference rows for them).
pub async fn as_of_equals_the_fold_of_every_prefix(store: Store) {
    let api = Api::new(store.clone());
    let run = 0xa5;
    let tenants = 3;
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 23, 50, 0).unwrap();
    let appends = history(run, tenants, &random_steps(17, tenants, 40), start);
    assert!(appends.len() > 20, "{} appends", appends.len());
    for a in &appends {
        store
            .append(a.stream.clone(), a.expected, a.events.clone())
            .await
            .unwrap();
        pause().await;
    }
    // When each append was recorded: the time of its last event.
    let log: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    let at: BTreeMap<(String, Seq), DateTime<Utc>> = log
        .iter()
        .map(|e| ((e.stream.to_string(), e.seq), e.recorded_at))
        .collect();
    let mut heads: BTreeMap<String, u64> = BTreeMap::new();
    let times: Vec<DateTime<Utc>> = appends
        .iter()
        .map(|a| {
            let head = heads.entry(a.stream.to_string()).or_default();
            *head += a.events.len() as u64;
            at[&(a.stream.to_string(), Seq(*head))]
        })
        .collect();

    let ids: Vec<String> = (0..tenants).map(|i| tenant_id(run, i)).collect();
    let mut instants = vec![(0, times[0] - chrono::Duration::milliseconds(1))];
    for k in 1..appends.len() {
        if times[k - 1] < times[k] {
            instants.push((k, between(times[k - 1], times[k])));
        }
    }
    instants.push((appends.len(), times[appends.len() - 1]));
    assert!(
        instants.len() > appends.len() / 2,
        "distinct recorded times"
    );
    for (k, instant) in instants {
        let prefix = &appends[..k];
        let changes = changes(prefix);
        for id in &ids {
            let r = api
                .get(format!("/v1/tenants/{id}?as_of={}", param(instant)))
                .await;
            match expected_tenant(id, &changes, instant) {
                None => {
                    r.expect_error(404, "tenant_not_found");
                }
                Some(want) => {
                    r.expect(200);
                    assert_eq!(
                        r.body,
                        serde_json::to_value(want).unwrap(),
                        "{id} after {k}"
                    );
                }
            }
        }
        let r = api
            .get(format!("/v1/funnel?as_of={}&limit=1000", param(instant)))
            .await;
        r.expect(200);
        let days: Vec<FunnelDay> = reference(&changes)[onboarding_funnel::DAYS.name]
            .iter()
            .map(|row| FunnelDay::from_row(row.clone()).unwrap())
            .collect();
        assert_eq!(
            r.body["items"],
            serde_json::to_value(days).unwrap(),
            "after {k}"
        );
    }
}

/// The onboarding events of `appends`, decoded as the read models decode them.
fn changes(appends: &[Append]) -> Vec<Change> {
    raw_log(appends)
        .into_iter()
        .filter_map(|raw| Decoder.decode(raw).and_then(|l| l.change))
        .collect()
}

/// The tenant `id` as of `instant` after `changes`: the domain's fold of its events, and the
/// lock and sync rows of that state; `None` when it is not registered.
fn expected_tenant(id: &str, changes: &[Change], instant: DateTime<Utc>) -> Option<TenantAsOf> {
    let events: Vec<&TenantEvent> = changes
        .iter()
        .filter(|c| c.tenant_id == id)
        .map(|c| &c.event)
        .collect();
    let state = fold(events.iter().copied());
    if !state.is_registered() {
        return None;
    }
    let uuid: Uuid = id.parse().unwrap();
    let seq = events.len() as u64;
    Some(TenantAsOf {
        as_of: instant.fixed_offset(),
        tenant: TenantView::new(uuid, &state, seq, &Policy::default()),
        onboarding_lock: LockRow::from_state(id, &state),
        pending_syncs: PendingSyncRow::from_state(id, &state),
    })
}
