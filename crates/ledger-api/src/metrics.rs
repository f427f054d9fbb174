//! Prometheus metrics kept in process memory and rendered as text at `GET /metrics`.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::Method;
use axum::response::Response;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use ledger_core::{
    AppendResult, BoxFuture, EventStore, EventStream, ExpectedSeq, NewEvent, Position, ReadAll,
    Seq, StoreError, StreamAppend, StreamName,
};
use ledger_projector::{ProjectionError, ProjectionStatus, Projector, State};
use ledger_read_models::Logged;

/// Longest wait for the first event after a projection's checkpoint, to date its lag.
const LAG_READ_TIMEOUT: Duration = Duration::from_millis(500);

tokio::task_local! {
    /// While a request is served: whether the store refused one of its appends for a stale
    /// expected seq (and [`MeteredStore`] counted it).
    static STORE_CONFLICT: Cell<bool>;
}

/// Marks an answer that reports a conflict, with the stream category, so that
/// [`count_conflicts`] counts it unless the store already did.
#[derive(Clone, Debug)]
pub(crate) struct ConflictOn(pub String);

/// Serves `request` (a request's future), counting a conflict it answers that no store
/// append counted: a stale expected seq refused before anything was appended. Together with
/// [`MeteredStore`], every conflict is counted exactly once.
pub(crate) async fn count_conflicts(
    metrics: &Metrics,
    request: impl Future<Output = Response>,
) -> Response {
    STORE_CONFLICT
        .scope(Cell::new(false), async move {
            let response = request.await;
            let counted = STORE_CONFLICT.with(Cell::get);
            if let (false, Some(ConflictOn(category))) = (counted, response.extensions().get()) {
                metrics.conflict(category);
            }
            response
        })
        .await
}

/// The `method` label of a request: a standard method, else `other`, so a client cannot
/// grow the label set.
pub(crate) fn method_label(method: &Method) -> &'static str {
    const KNOWN: [Method; 9] = [
        Method::GET,
        Method::HEAD,
        Method::POST,
        Method::PUT,
        Method::DELETE,
        Method::PATCH,
        Method::OPTIONS,
        Method::CONNECT,
        Method::TRACE,
    ];
    KNOWN
        .iter()
        .find(|m| *m == method)
        .map_or("other", |m| m.as_str())
}

/// What `/metrics` shows of one projection.
#[derive(Clone, Debug)]
pub(crate) struct ProjectionSample {
    /// Its status.
    pub status: ProjectionStatus,
    /// Age of the oldest event it has not applied (0 when caught up; `None` when unknown).
    pub lag_seconds: Option<f64>,
}

/// The status of every projection of `projector`, with the age of its oldest unapplied event
/// (read from `events`).
pub(crate) async fn projection_samples(
    projector: &Projector<Logged>,
    events: &dyn EventStore,
    now: DateTime<Utc>,
) -> Result<Vec<ProjectionSample>, ProjectionError> {
    let mut samples = Vec::new();
    for status in projector.status().await? {
        let lag_seconds = if status.lag == 0 {
            Some(0.0)
        } else {
            let mut query = ReadAll::after(Position(status.checkpoint));
            if let Ok(model) = projector.catalog().get(status.name)
                && let [category] = model.categories()
            {
                query = query.category(*category);
            }
            let mut log = events.read_all(query);
            match tokio::time::timeout(LAG_READ_TIMEOUT, log.next()).await {
                Ok(Some(Ok(oldest))) => {
                    Some((now - oldest.recorded_at).num_milliseconds().max(0) as f64 / 1000.0)
                }
                _ => None,
            }
        };
        samples.push(ProjectionSample {
            status,
            lag_seconds,
        });
    }
    Ok(samples)
}

/// Upper bounds (seconds) of the append latency histogram's buckets.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// A cumulative latency histogram.
#[derive(Clone, Debug, Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

impl Histogram {
    fn observe(&mut self, seconds: f64) {
        for (bound, count) in BUCKETS.iter().zip(self.counts.iter_mut()) {
            if seconds <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += seconds;
    }
}

#[derive(Debug, Default)]
struct Inner {
    requests: BTreeMap<(String, String, u16), u64>,
    appends: BTreeMap<&'static str, Histogram>,
    conflicts: BTreeMap<String, u64>,
    replays: BTreeMap<&'static str, u64>,
}

/// The server's counters and histograms.
#[derive(Debug, Default)]
pub struct Metrics {
    inner: Mutex<Inner>,
}

impl Metrics {
    fn with<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut inner)
    }

    /// Counts one answered request by route template, method (see [`method_label`]) and
    /// status.
    pub fn request(&self, route: &str, method: &str, status: u16) {
        self.with(|i| {
            *i.requests
                .entry((route.to_string(), method.to_string(), status))
                .or_default() += 1
        });
    }

    /// Records how long a store append (`append`, `append_multi`) took.
    pub fn append_latency(&self, kind: &'static str, took: Duration) {
        self.with(|i| {
            i.appends
                .entry(kind)
                .or_default()
                .observe(took.as_secs_f64())
        });
    }

    /// Counts an append the store refused because the stream was not at the expected seq (a
    /// stale caller, or a race the executor then decides again), by stream category.
    pub fn conflict(&self, category: &str) {
        self.with(|i| *i.conflicts.entry(category.to_string()).or_default() += 1);
    }

    /// Counts a retried request answered with the first request's outcome.
    pub fn replay(&self, kind: &'static str) {
        self.with(|i| *i.replays.entry(kind).or_default() += 1);
    }

    /// The Prometheus text exposition of everything recorded so far.
    pub fn render(&self) -> String {
        self.render_with(&[])
    }

    /// [`render`](Self::render), plus the projections' gauges.
    pub(crate) fn render_with(&self, projections: &[ProjectionSample]) -> String {
        let mut out = String::new();
        out.push_str("# HELP ledger_build_info The running ledger's version.\n");
        out.push_str("# TYPE ledger_build_info gauge\n");
        let _ = writeln!(
            out,
            "ledger_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        );
        render_projections(&mut out, projections);
        out.push_str(&self.render_counters());
        out
    }

    fn render_counters(&self) -> String {
        self.with(|i| {
            let mut out = String::new();
            out.push_str("# HELP ledger_http_requests_total HTTP requests answered, by route template, method and status.\n");
            out.push_str("# TYPE ledger_http_requests_total counter\n");
            for ((route, method, status), n) in &i.requests {
                let _ = writeln!(
                    out,
                    "ledger_http_requests_total{{route=\"{}\",method=\"{}\",status=\"{status}\"}} {n}",
                    escape(route),
                    escape(method)
                );
            }
            out.push_str("# HELP ledger_append_duration_seconds Time the store took to append, by operation.\n");
            out.push_str("# TYPE ledger_append_duration_seconds histogram\n");
            for (kind, h) in &i.appends {
                for (bound, count) in BUCKETS.iter().zip(h.counts) {
                    let _ = writeln!(
                        out,
                        "ledger_append_duration_seconds_bucket{{kind=\"{kind}\",le=\"{bound}\"}} {count}"
                    );
                }
                let _ = writeln!(
                    out,
                    "ledger_append_duration_seconds_bucket{{kind=\"{kind}\",le=\"+Inf\"}} {}",
                    h.count
                );
                let _ = writeln!(out, "ledger_append_duration_seconds_sum{{kind=\"{kind}\"}} {}", h.sum);
                let _ = writeln!(out, "ledger_append_duration_seconds_count{{kind=\"{kind}\"}} {}", h.count);
            }
            out.push_str("# HELP ledger_append_conflicts_total Appends the store refused for a stale expected seq, by stream category.\n");
            out.push_str("# TYPE ledger_append_conflicts_total counter\n");
            for (category, n) in &i.conflicts {
                let _ = writeln!(
                    out,
                    "ledger_append_conflicts_total{{category=\"{}\"}} {n}",
                    escape(category)
                );
            }
            out.push_str("# HELP ledger_idempotent_replays_total Retried requests answered with the first outcome, writing nothing.\n");
            out.push_str("# TYPE ledger_idempotent_replays_total counter\n");
            for (kind, n) in &i.replays {
                let _ = writeln!(out, "ledger_idempotent_replays_total{{kind=\"{kind}\"}} {n}");
            }
            out
        })
    }
}

/// An event store that records append latency and conflicts in [`Metrics`].
pub(crate) struct MeteredStore {
    inner: Arc<dyn EventStore>,
    metrics: Arc<Metrics>,
}

impl MeteredStore {
    /// Wraps `inner`, recording into `metrics`.
    pub(crate) fn new(inner: Arc<dyn EventStore>, metrics: Arc<Metrics>) -> Self {
        Self { inner, metrics }
    }

    fn record<T>(&self, op: &'static str, started: Instant, result: &Result<T, StoreError>) {
        self.metrics.append_latency(op, started.elapsed());
        if let Err(StoreError::Conflict(c)) = result {
            self.metrics.conflict(c.stream.category());
            let _ = STORE_CONFLICT.try_with(|counted| counted.set(true));
        }
    }
}

impl EventStore for MeteredStore {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.append(stream, expected, events).await;
            self.record("append", started, &result);
            result
        })
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        Box::pin(async move {
            let started = Instant::now();
            let result = self.inner.append_multi(appends).await;
            self.record("append_multi", started, &result);
            result
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        self.inner.stream_seq(stream)
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        self.inner.read_stream(stream, from)
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        self.inner.read_all(query)
    }

    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        self.inner.write_fault()
    }
}

/// The gauges of each projection: checkpoint, lag in events and seconds, state, rebuild.
fn render_projections(out: &mut String, samples: &[ProjectionSample]) {
    if samples.is_empty() {
        return;
    }
    type Gauge = (
        &'static str,
        &'static str,
        fn(&ProjectionSample) -> Option<f64>,
    );
    let gauges: [Gauge; 5] = [
        (
            "ledger_projection_checkpoint",
            "Position of the last event the projection applied (0: none).",
            |s| Some(s.status.checkpoint as f64),
        ),
        (
            "ledger_projection_lag_events",
            "Events of the log after the projection's checkpoint.",
            |s| Some(s.status.lag as f64),
        ),
        (
            "ledger_projection_lag_seconds",
            "Age of the oldest event the projection has not applied (0 when caught up).",
            |s| s.lag_seconds,
        ),
        (
            "ledger_projection_rebuild_done_events",
            "Events a rebuild in progress has applied.",
            |s| s.status.rebuild.as_ref().map(|r| r.done as f64),
        ),
        (
            "ledger_projection_rebuild_total_events",
            "Events a rebuild in progress has to apply in all.",
            |s| s.status.rebuild.as_ref().map(|r| r.total as f64),
        ),
    ];
    for (name, help, value) in gauges {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for sample in samples {
            if let Some(v) = value(sample) {
                let _ = writeln!(out, "{name}{{projection=\"{}\"}} {v}", sample.status.name);
            }
        }
    }
    out.push_str("# HELP ledger_projection_state 1 for the state the projection is in: live, rebuilding or catching_up.\n");
    out.push_str("# TYPE ledger_projection_state gauge\n");
    for sample in samples {
        for (state, label) in [
            (State::Live, "live"),
            (State::Rebuilding, "rebuilding"),
            (State::CatchingUp, "catching_up"),
        ] {
            let _ = writeln!(
                out,
                "ledger_projection_state{{projection=\"{}\",state=\"{label}\"}} {}",
                sample.status.name,
                u8::from(sample.status.state == state)
            );
        }
    }
}

/// Escapes a Prometheus label value.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_each_family() {
        let m = Metrics::default();
        m.request("/v1/tenants/{id}", "GET", 200);
        m.request("/v1/tenants/{id}", "GET", 200);
        m.append_latency("command", Duration::from_millis(3));
        m.conflict("tenant");
        m.replay("command");
        let text = m.render();
        assert!(text.contains(
            "ledger_http_requests_total{route=\"/v1/tenants/{id}\",method=\"GET\",status=\"200\"} 2"
        ));
        assert!(
            text.contains("ledger_append_duration_seconds_bucket{kind=\"command\",le=\"0.005\"} 1")
        );
        assert!(
            text.contains("ledger_append_duration_seconds_bucket{kind=\"command\",le=\"0.001\"} 0")
        );
        assert!(text.contains("ledger_append_conflicts_total{category=\"tenant\"} 1"));
        assert!(text.contains("ledger_idempotent_replays_total{kind=\"command\"} 1"));
    }
}
