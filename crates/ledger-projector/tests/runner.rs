//! The engine on the memory backend, with a small read model of its own: the runner catches up
//! and follows, rebuilds swap in a fresh fold, verify finds rows changed by hand, a panicking
//! applier fails its pass, and a failing runner says so and resumes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use futures::stream::BoxStream;
use ledger_core::{
    BoxFuture, EventStore, ExpectedSeq, LogReader, NewEvent, Position, RawEvent, StoreError,
    StreamName,
};
use ledger_memory::{MemoryProjections, MemoryStore};
use ledger_projector::{
    ApplyTx, Catalog, Checkpoint, Column, Decode, Keys, Lease, ProjectionError, ProjectionStatus,
    ProjectionStore, Projector, ProjectorOptions, Query, ReadModel, Row, RowError, Rows, Schema,
    Signal, SignalingStore, Slot, Snapshot, State, Swapped, TableSpec, Target, Value,
};
use serde_json::json;
use tokio::sync::oneshot;

/// A word said in a `word-<speaker>` stream.
struct Said {
    speaker: String,
    word: String,
}

struct Words;

impl Decode<Said> for Words {
    fn decode(&self, raw: RawEvent) -> Option<Said> {
        let speaker = raw.stream.strip_prefix("word-")?.to_string();
        let data: serde_json::Value = serde_json::from_str(&raw.data).ok()?;
        Some(Said {
            speaker,
            word: data["word"].as_str()?.to_string(),
        })
    }
}

static COUNTS: TableSpec = TableSpec {
    name: "word_counts",
    columns: &[
        Column::text("word"),
        Column::int("n"),
        Column::text("last_speaker"),
    ],
    key: 1,
    indexes: &[],
};

static SPEAKERS: TableSpec = TableSpec {
    name: "word_speakers",
    columns: &[Column::text("speaker"), Column::int("said")],
    key: 1,
    indexes: &[],
};

static SCHEMA: Schema = Schema {
    name: "words",
    version: 1,
    tables: &[COUNTS, SPEAKERS],
};

/// Counts each word and each speaker's words.
struct WordCounts;

impl ReadModel<Said> for WordCounts {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &["word"]
    }

    fn keys(&self, e: &Said, keys: &mut Keys) {
        keys.add(0, vec![Value::text(&e.word)]);
        keys.add(1, vec![Value::text(&e.speaker)]);
    }

    fn apply(&self, e: &Said, rows: &mut Rows) -> Result<(), RowError> {
        rows.update(0, &[Value::text(&e.word)], |row| {
            let n = match row.as_ref().map(|r| &r[1]) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            *row = Some(vec![
                Value::text(&e.word),
                Value::Int(n + 1),
                Value::text(&e.speaker),
            ]);
        })?;
        rows.update(1, &[Value::text(&e.speaker)], |row| {
            let n = match row.as_ref().map(|r| &r[1]) {
                Some(Value::Int(n)) => *n,
                _ => 0,
            };
            *row = Some(vec![Value::text(&e.speaker), Value::Int(n + 1)]);
        })
    }
}

fn catalog() -> Catalog<Said> {
    Catalog::new(Arc::new(Words), vec![Arc::new(WordCounts)]).unwrap()
}

/// Appends `n` words said by a few speakers (and unrelated events the read model skips);
/// returns the last position.
async fn say(store: &dyn EventStore, seed: u64, n: u64) -> Position {
    let mut last = Position::START;
    for i in 0..n {
        let speaker = format!("s{}", (seed * 7 + i) % 5);
        let word = format!("w{}", (seed * 13 + i * i) % 11);
        let stream = StreamName::parse(format!("word-{speaker}")).unwrap();
        let event = NewEvent::new("Said", json!({ "word": word }));
        last = store
            .append(stream, ExpectedSeq::Any, vec![event])
            .await
            .unwrap()
            .position;
        if i % 10 == 0 {
            let other = StreamName::parse(format!("other-{i}")).unwrap();
            store
                .append(
                    other,
                    ExpectedSeq::Any,
                    vec![NewEvent::new("Else", json!({}))],
                )
                .await
                .unwrap();
        }
    }
    last
}

/// What the log says the tables must hold.
async fn expected(log: &dyn LogReader) -> (Vec<Row>, Vec<Row>) {
    let filter = ledger_core::LogFilter::categories(["word"]);
    let page = log
        .read_page(Position::START, &filter, usize::MAX)
        .await
        .unwrap();
    let (mut words, mut speakers) = (BTreeMap::new(), BTreeMap::new());
    for raw in page.events {
        let said = Words.decode(raw).unwrap();
        let w = words.entry(said.word.clone()).or_insert((0, String::new()));
        w.0 += 1;
        w.1 = said.speaker.clone();
        *speakers.entry(said.speaker).or_insert(0) += 1;
    }
    (
        words
            .into_iter()
            .map(|(w, (n, s))| vec![Value::text(w), Value::Int(n), Value::text(s)])
            .collect(),
        speakers
            .into_iter()
            .map(|(s, n)| vec![Value::text(s), Value::Int(n)])
            .collect(),
    )
}

async fn rows(store: &dyn ProjectionStore, table: &'static TableSpec) -> Vec<Row> {
    store.query(&Query::new(table, usize::MAX)).await.unwrap()
}

async fn assert_projected(log: &dyn LogReader, store: &dyn ProjectionStore) {
    let (words, speakers) = expected(log).await;
    assert!(!words.is_empty());
    assert_eq!(rows(store, &COUNTS).await, words);
    assert_eq!(rows(store, &SPEAKERS).await, speakers);
}

struct Setup {
    events: Arc<dyn EventStore>,
    log: Arc<MemoryStore>,
    projections: Arc<MemoryProjections>,
}

fn setup() -> Setup {
    let log = Arc::new(MemoryStore::new());
    Setup {
        events: log.clone(),
        log,
        projections: Arc::new(MemoryProjections::new()),
    }
}

fn options(batch_size: usize) -> ProjectorOptions {
    ProjectorOptions {
        batch_size,
        rebuild_batch_size: batch_size,
        // Pages that do not line up with batches: both boundaries get crossed.
        read_page: batch_size + batch_size / 2 + 1,
        retry_delay: Duration::from_millis(20),
        max_retry_delay: Duration::from_millis(100),
        ..ProjectorOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runner_catches_up_and_follows() {
    let s = setup();
    let signal = Signal::new();
    let signaled: Arc<dyn EventStore> =
        Arc::new(SignalingStore::new(s.events.clone(), signal.clone()));
    say(&*signaled, 1, 200).await;
    let projector = Projector::new(s.log.clone(), s.projections.clone(), catalog())
        .with_options(options(7))
        .with_signal(signal);
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = {
        let projector = projector.clone();
        tokio::spawn(async move {
            projector
                .run(&["words"], async {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let last = say(&*signaled, 2, 200).await;
    projector
        .wait_for("words", last, Duration::from_secs(10))
        .await
        .unwrap();
    assert_projected(&*s.log, &*s.projections).await;
    let status = projector.status().await.unwrap();
    assert!(
        status.iter().all(|s| s.lag == 0 && s.events == 400),
        "{status:?}"
    );
    // An event the read model does not read is covered as soon as everything before it is.
    let other = s
        .events
        .append(
            StreamName::parse("other-x").unwrap(),
            ExpectedSeq::Any,
            vec![NewEvent::new("Else", json!({}))],
        )
        .await
        .unwrap()
        .position;
    projector
        .wait_for("words", other, Duration::from_secs(10))
        .await
        .unwrap();
    assert!(matches!(
        projector.wait_for("nope", other, Duration::ZERO).await,
        Err(ProjectionError::Unknown(_))
    ));
    stop.send(()).unwrap();
    runner.await.unwrap().unwrap();
    assert!(
        projector
            .run(&["nope"], std::future::pending())
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_swaps_in_a_fresh_fold_and_verify_finds_rows_changed_by_hand() {
    let s = setup();
    say(&*s.events, 3, 300).await;
    let projector =
        Projector::new(s.log.clone(), s.projections.clone(), catalog()).with_options(options(13));
    projector.catch_up("words").await.unwrap();
    let report = projector.rebuild(&["words"], &mut |_| {}).await.unwrap();
    assert_eq!(
        (report.projections.as_slice(), report.events),
        (&["words"][..], 300)
    );
    assert_projected(&*s.log, &*s.projections).await;
    let verified = projector.verify("words", &mut |_| {}).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.live_rows, verified.rebuilt_rows);

    // An operator edits a row and removes another, without moving the checkpoint.
    let live = s
        .projections
        .checkpoint("words", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    let target = live.target();
    let mut tx: Box<dyn ApplyTx> = s
        .projections
        .begin(&SCHEMA, &target, live.position, 0, "by hand")
        .await
        .unwrap()
        .unwrap();
    let mut changed = rows(&*s.projections, &COUNTS).await.remove(0);
    changed[2] = Value::text("tampered");
    let gone = rows(&*s.projections, &SPEAKERS).await.remove(0);
    tx.write(vec![
        ledger_projector::TableWrite {
            table: &COUNTS,
            inserts: vec![],
            upserts: vec![changed.clone()],
            deletes: vec![],
        },
        ledger_projector::TableWrite {
            table: &SPEAKERS,
            inserts: vec![],
            upserts: vec![],
            deletes: vec![SPEAKERS.key_of(&gone)],
        },
    ])
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let verified = projector.verify("words", &mut |_| {}).await.unwrap();
    assert_eq!(verified.differences, 2, "{verified:?}");
    assert_eq!(verified.listed[0].table, "word_counts");
    assert_eq!(
        verified.listed[0].live.as_ref().unwrap()["last_speaker"],
        "tampered"
    );
    assert_eq!(verified.listed[1].table, "word_speakers");
    assert_eq!(verified.listed[1].live, None);
    assert!(
        s.projections
            .checkpoint("words", Slot::Rebuild)
            .await
            .unwrap()
            .is_none()
    );
    projector.rebuild(&["words"], &mut |_| {}).await.unwrap();
    assert!(
        projector
            .verify("words", &mut |_| {})
            .await
            .unwrap()
            .is_clean()
    );

    // A checkpoint at an event the read model does not read (as a reader of the whole log
    // leaves it): verify replays exactly the events up to it, and the runner goes on from it.
    let other = s
        .events
        .append(
            StreamName::parse("other-last").unwrap(),
            ExpectedSeq::Any,
            vec![NewEvent::new("Else", json!({}))],
        )
        .await
        .unwrap()
        .position;
    let later = say(&*s.events, 6, 20).await;
    let live = s
        .projections
        .checkpoint("words", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    let tx = s
        .projections
        .begin(
            &SCHEMA,
            &live.target(),
            other,
            0,
            "a reader of the whole log",
        )
        .await
        .unwrap()
        .unwrap();
    tx.commit().await.unwrap();
    let verified = projector.verify("words", &mut |_| {}).await.unwrap();
    assert!(verified.is_clean(), "{verified:?}");
    assert_eq!(verified.checkpoint, other.0);
    projector.catch_up("words").await.unwrap();
    projector
        .wait_for("words", later, Duration::from_secs(10))
        .await
        .unwrap();
    assert_projected(&*s.log, &*s.projections).await;
}

/// Memory projections whose batches panic once, on the `at`th, and fail as a full disk would
/// while `full` is set.
struct Faulty {
    inner: Arc<MemoryProjections>,
    calls: AtomicUsize,
    at: usize,
    full: AtomicBool,
}

impl ProjectionStore for Faulty {
    fn checkpoints(&self) -> BoxFuture<'_, Result<Vec<Checkpoint>, StoreError>> {
        self.inner.checkpoints()
    }
    fn checkpoint<'a>(
        &'a self,
        name: &'a str,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Option<Checkpoint>, StoreError>> {
        self.inner.checkpoint(name, slot)
    }
    fn create<'a>(
        &'a self,
        schema: &'static Schema,
        slot: Slot,
    ) -> BoxFuture<'a, Result<Checkpoint, StoreError>> {
        self.inner.create(schema, slot)
    }
    fn drop_rebuild(&self, schema: &'static Schema) -> BoxFuture<'_, Result<(), StoreError>> {
        self.inner.drop_rebuild(schema)
    }
    fn begin<'a>(
        &'a self,
        schema: &'static Schema,
        target: &'a Target,
        to: Position,
        events: u64,
        owner: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn ApplyTx>>, StoreError>> {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            panic!("a bug in an applier");
        }
        if self.full.load(Ordering::SeqCst) {
            let full = StoreError::unavailable("disk full");
            return Box::pin(async { Err(full) });
        }
        self.inner.begin(schema, target, to, events, owner)
    }
    fn build_indexes<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        self.inner.build_indexes(schema, rebuilt)
    }
    fn swap<'a>(
        &'a self,
        schema: &'static Schema,
        rebuilt: &'a Target,
    ) -> BoxFuture<'a, Result<Swapped, StoreError>> {
        self.inner.swap(schema, rebuilt)
    }
    fn snapshot(
        &self,
        schema: &'static Schema,
    ) -> BoxFuture<'_, Result<Box<dyn Snapshot>, StoreError>> {
        self.inner.snapshot(schema)
    }
    fn query<'a>(&'a self, query: &'a Query) -> BoxFuture<'a, Result<Vec<Row>, StoreError>> {
        self.inner.query(query)
    }
    fn lease<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Option<Box<dyn Lease>>, StoreError>> {
        self.inner.lease(name)
    }
    fn wakeups(&self) -> BoxStream<'static, ()> {
        self.inner.wakeups()
    }
    fn poll_interval(&self) -> Duration {
        self.inner.poll_interval()
    }
}

/// A panic while writing a batch ends the pass with an error (instead of a pass waiting
/// forever for the batch); the next pass resumes from the last committed batch.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_applier_fails_the_pass_and_the_next_one_resumes() {
    let s = setup();
    let faulty = Arc::new(Faulty {
        inner: s.projections.clone(),
        calls: AtomicUsize::new(0),
        at: 3,
        full: AtomicBool::new(false),
    });
    say(&*s.events, 4, 150).await;
    let projector =
        Projector::new(s.log.clone(), faulty.clone(), catalog()).with_options(options(7));
    let pass = tokio::time::timeout(Duration::from_secs(60), projector.catch_up("words"))
        .await
        .expect("the pass ends");
    let error = pass.expect_err("the applier panicked");
    assert!(
        matches!(&error, ProjectionError::ApplierGone { projection } if projection == "words"),
        "{error:?}"
    );
    assert_eq!(error.code(), "internal");
    let applied = s
        .projections
        .checkpoint("words", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        applied.events,
        3 * 7,
        "the batches before the panic are kept"
    );
    projector.catch_up("words").await.unwrap();
    assert_projected(&*s.log, &*s.projections).await;
}

/// Waits (at most 30 s) until the status of `words` satisfies `done`.
async fn status_until(
    projector: &Projector<Said>,
    done: impl Fn(&ProjectionStatus) -> bool,
) -> ProjectionStatus {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let status = projector.status().await.unwrap().remove(0);
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
    let s = setup();
    let faulty = Arc::new(Faulty {
        inner: s.projections.clone(),
        calls: AtomicUsize::new(0),
        at: usize::MAX,
        full: AtomicBool::new(true),
    });
    say(&*s.events, 5, 100).await;
    let projector =
        Projector::new(s.log.clone(), faulty.clone(), catalog()).with_options(options(2000));
    let (stop, stopped) = oneshot::channel::<()>();
    let runner = projector.clone();
    let running = tokio::spawn(async move {
        runner
            .run(&["words"], async {
                let _ = stopped.await;
            })
            .await
    });
    let failing = status_until(&projector, |s| s.state == State::Failing).await;
    assert_eq!(failing.error, Some("unavailable"));
    assert!(failing.lag > 0);
    // Backing off to one try per 100 ms (a loaded machine only makes fewer).
    let tries = faulty.calls.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let more = faulty.calls.load(Ordering::SeqCst) - tries;
    assert!(more <= 10, "{more} tries in 300 ms");
    faulty.full.store(false, Ordering::SeqCst);
    let live = status_until(&projector, |s| s.lag == 0).await;
    assert_eq!((live.state, live.error), (State::Live, None));
    assert_projected(&*s.log, &*s.projections).await;
    let _ = stop.send(());
    running.await.unwrap().unwrap();
}
