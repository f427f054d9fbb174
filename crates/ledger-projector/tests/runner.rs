//! The runner, rebuilds and verification on the memory backend.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::TryStreamExt;
use futures::stream::BoxStream;
use ledger_core::{BoxFuture, EventStore, Position, ReadAll, StoreError};
use ledger_memory::MemoryStore;
use ledger_projections::generate::{Append, history, random_steps};
use ledger_projections::{
    Batch, Checkpoint, Decoded, Kind, Lease, LogPage, MemoryProjections, ProjectionError,
    ProjectionStatus, ProjectionStore, Projector, ProjectorOptions, Query, RowKey, Rows, Signal,
    SignalingStore, Slot, Snapshot, State, Swapped, Target, reference,
};
use tokio::sync::oneshot;

async fn append_all(store: &dyn EventStore, appends: Vec<Append>) -> Position {
    let mut last = Position::START;
    for a in appends {
        last = store
            .append(a.stream, a.expected, a.events)
            .await
            .unwrap()
            .position;
    }
    last
}

/// Every row of one live projection.
async fn live_rows(store: &dyn ProjectionStore, kind: Kind) -> Rows {
    store
        .query(&Query::page(kind, Slot::Live, None, usize::MAX))
        .await
        .unwrap()
}

/// What the log says the rows must be.
async fn expected(store: &dyn EventStore, kind: Kind) -> Rows {
    let all: Vec<_> = store
        .read_all(ReadAll::from_start())
        .try_collect()
        .await
        .unwrap();
    let changes: Vec<_> = all
        .into_iter()
        .filter_map(|e| Decoded::from_envelope(e).change)
        .collect();
    reference(kind, &changes)
}

fn setup(batch_size: usize) -> (Arc<dyn EventStore>, Arc<MemoryProjections>, Projector) {
    let signal = Signal::new();
    let memory: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let store: Arc<dyn EventStore> = Arc::new(SignalingStore::new(memory, signal.clone()));
    let projections = Arc::new(MemoryProjections::new(store.clone()));
    let projector = Projector::new(store.clone(), projections.clone())
        .with_options(ProjectorOptions {
            batch_size,
            rebuild_batch_size: batch_size,
            // Pages that do not line up with batches: both boundaries get crossed.
            read_page: batch_size + batch_size / 2 + 1,
            ..ProjectorOptions::default()
        })
        .with_signal(signal);
    (store, projections, projector)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_catches_up_and_follows() {
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let (store, projections, projector) = setup(7);
    append_all(&*store, history(1, 10, &random_steps(1, 10, 400), start)).await;
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let projector = projector.clone();
        tokio::spawn(async move {
            projector
                .run(&Kind::ALL, async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let last = append_all(&*store, history(2, 10, &random_steps(2, 10, 400), start)).await;
    for kind in Kind::ALL {
        projector
            .wait_for(kind, last, Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(
            live_rows(&*projections, kind).await,
            expected(&*store, kind).await
        );
    }
    let status = projector.status().await.unwrap();
    assert!(
        status.iter().all(|s| s.lag == 0 && s.events > 0),
        "{status:?}"
    );
    stop.send(()).unwrap();
    runner.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_in_a_fresh_fold_and_verify_finds_tampering() {
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let (store, projections, projector) = setup(13);
    append_all(&*store, history(3, 6, &random_steps(3, 6, 300), start)).await;
    let report = projector.rebuild(&Kind::ALL, &mut |_| {}).await.unwrap();
    assert!(report.events > 0);
    for kind in Kind::ALL {
        assert_eq!(
            live_rows(&*projections, kind).await,
            expected(&*store, kind).await
        );
        let verified = projector.verify(kind, &mut |_| {}).await.unwrap();
        assert!(verified.is_clean(), "{verified:?}");
    }
    let Rows::TenantPhase(rows) = live_rows(&*projections, Kind::TenantPhase).await else {
        unreachable!()
    };
    let mut altered = serde_json::to_value(&rows[0]).unwrap();
    altered["name"] = "tampered by hand".into();
    projections.tamper(
        Kind::TenantPhase,
        RowKey::tenant(&rows[0].tenant_id),
        altered,
    );
    let verified = projector
        .verify(Kind::TenantPhase, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(verified.differences, 1, "{verified:?}");
    assert_eq!(verified.listed[0].key, RowKey::tenant(&rows[0].tenant_id));
    assert!(
        projections
            .checkpoint(Kind::TenantPhase, Slot::Rebuild)
            .await
            .unwrap()
            .is_none()
    );
}

/// Memory projections whose `apply` panics once, on its `at`th call, and refuses batches as a
/// full disk would while `full` is set.
struct Faulty {
    inner: Arc<MemoryProjections>,
    calls: AtomicUsize,
    at: usize,
    full: AtomicBool,
}

impl ProjectionStore for Faulty {
    fn read_log(
        &self,
        after: Position,
        limit: usize,
    ) -> BoxFuture<'_, Result<LogPage, StoreError>> {
        self.inner.read_log(after, limit)
    }
    fn log_mark(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.log_mark()
    }
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        self.inner.checkpoints()
    }
    fn checkpoint(
        &self,
        kind: Kind,
        slot: Slot,
    ) -> BoxFuture<'_, Result<Option<Checkpoint>, StoreError>> {
        self.inner.checkpoint(kind, slot)
    }
    fn create(&self, kind: Kind, slot: Slot) -> BoxFuture<'_, Result<Checkpoint, StoreError>> {
        self.inner.create(kind, slot)
    }
    fn drop_rebuild(&self, kind: Kind) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.drop_rebuild(kind)
    }
    fn apply<'a>(
        &'a self,
        target: &'a Target,
        batch: &'a Batch,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<bool, StoreError>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            panic!("a bug in an applier");
        }
        if self.full.load(Ordering::SeqCst) {
            let full = StoreError::unavailable("disk full");
            return Box::pin(async { Err(full) });
        }
        self.inner.apply(target, batch, owner)
    }
    fn build_indexes<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.build_indexes(rebuilt)
    }
    fn swap<'a>(&'a self, rebuilt: &'a Target) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        self.inner.swap(rebuilt)
    }
    fn snapshot(&self, kind: Kind) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        self.inner.snapshot(kind)
    }
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Rows, StoreError>> {
        self.inner.query(query)
    }
    fn covers(
        &self,
        checkpoint: Position,
        position: Position,
    ) -> BoxFuture<'_, Result<bool, StoreError>> {
        self.inner.covers(checkpoint, position)
    }
    fn events_after(&self, position: Position) -> BoxFuture<'_, Result<u64, StoreError>> {
        self.inner.events_after(position)
    }
    fn lease(&self, kind: Kind) -> BoxFuture<'_, Result<Option<Box<dyn Lease>>, StoreError>> {
        self.inner.lease(kind)
    }
    fn wakeups(&self) -> BoxStream<'static, ()> {
        self.inner.wakeups()
    }
    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }
}

/// A panic while writing a batch ends the pass with an error (it used to leave the pass
/// waiting forever for the batch); the next pass resumes from the last committed batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_applier_fails_the_pass_and_the_next_one_resumes() {
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let memory = Arc::new(MemoryProjections::new(store.clone()));
    let panics = Arc::new(Faulty {
        inner: memory.clone(),
        calls: AtomicUsize::new(0),
        at: 3,
        full: AtomicBool::new(false),
    });
    append_all(&*store, history(1, 6, &random_steps(2, 6, 150), start)).await;
    let projector = Projector::new(store.clone(), panics.clone()).with_options(ProjectorOptions {
        batch_size: 7,
        rebuild_batch_size: 7,
        read_page: 11,
        ..ProjectorOptions::default()
    });
    let pass = tokio::time::timeout(
        Duration::from_secs(60),
        projector.catch_up(Kind::TenantPhase),
    )
    .await
    .expect("the pass ends");
    let error = pass.expect_err("the applier panicked");
    assert!(
        matches!(
            error,
            ProjectionError::ApplierGone {
                kind: Kind::TenantPhase
            }
        ),
        "{error:?}"
    );
    assert_eq!(error.code(), "internal");
    let applied = memory
        .checkpoint(Kind::TenantPhase, Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        applied.events,
        3 * 7,
        "the batches before the panic are kept"
    );

    projector.catch_up(Kind::TenantPhase).await.unwrap();
    assert_eq!(
        live_rows(&*memory, Kind::TenantPhase).await,
        expected(&*store, Kind::TenantPhase).await
    );
}

/// Waits (at most 30 s) until the status of `kind` satisfies `done`.
async fn status_until(
    projector: &Projector,
    kind: Kind,
    done: impl Fn(&ProjectionStatus) -> bool,
) -> ProjectionStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = projector.status().await.unwrap();
        let status = status.into_iter().find(|s| s.name == kind).unwrap();
        if done(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "{status:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A runner whose batches fail says `failing` with the failure's code instead of `live`,
/// retries with backoff and, once batches succeed again, catches up by itself.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_runner_says_so_and_resumes() {
    let start = Utc.with_ymd_and_hms(2026, 1, 20, 9, 0, 0).unwrap();
    let store: Arc<dyn EventStore> = Arc::new(MemoryStore::new());
    let memory = Arc::new(MemoryProjections::new(store.clone()));
    let faulty = Arc::new(Faulty {
        inner: memory.clone(),
        calls: AtomicUsize::new(0),
        at: usize::MAX,
        full: AtomicBool::new(true),
    });
    append_all(&*store, history(1, 6, &random_steps(3, 6, 100), start)).await;
    let projector = Projector::new(store.clone(), faulty.clone()).with_options(ProjectorOptions {
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(100),
        ..ProjectorOptions::default()
    });
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = projector.clone();
    let running = tokio::spawn(async move {
        runner
            .run(&[Kind::TenantPhase], async {
                let _ = stopped.await;
            })
            .await;
    });

    let failing = status_until(&projector, Kind::TenantPhase, |s| s.state == State::Failing).await;
    assert_eq!(failing.error, Some("unavailable"));
    assert!(failing.lag > 0);
    // Backing off to one try per 100 ms (a loaded machine only makes fewer).
    let tries = faulty.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = faulty.calls.load(Ordering::SeqCst) - tries;
    assert!(more <= 10, "{more} tries in 300 ms");

    faulty.full.store(false, Ordering::SeqCst);
    let live = status_until(&projector, Kind::TenantPhase, |s| s.lag == 0).await;
    assert_eq!((live.state, live.error), (State::Live, None));
    assert_eq!(
        live_rows(&*memory, Kind::TenantPhase).await,
        expected(&*store, Kind::TenantPhase).await
    );
    let _ = stop.send(());
    running.await.unwrap();
}
