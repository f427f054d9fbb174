//! Concurrent appends agree with a serial model: many tasks append to shared and private streams
//! with every kind of expectation, replays and reused ids; the successful appends, replayed in
//! position order into a fresh memory store, rebuild every stream exactly, and every conflict,
//! replay and refusal agrees with the final log. Nothing is lost, skipped or written twice.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Instant;

use ledger_core::{
    AppendResult, Conflict, Envelope, EventStore, ExpectedSeq, NewEvent, Seq, StoreError,
    StreamName,
};
use ledger_memory::MemoryStore;
use ledger_tests::Store;
use ledger_tests::fixtures::*;
use serde_json::json;
use uuid::Uuid;

/// Concurrent appending tasks.
const TASKS: usize = 24;
/// Appends each task makes, one after the other.
const OPS: usize = 40;
/// Streams every task writes to.
const CONTESTED: usize = 3;
/// The seed of every task's choices (`LEDGER_GROUP_MODEL_SEED` overrides it).
const SEED: u64 = 0x6c65_6467_6572_2d67;

/// A small deterministic generator (splitmix64), so a failing run's choices can be repeated.
struct Rng(u64);

impl Rng {
    /// The next 64 random bits.
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// One of `items` (not empty).
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// How a reused-id append differs from the append that stored the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reuse {
    /// Same stream and type, other data.
    Data,
    /// Same stream and data, other type.
    Type,
    /// The same event exactly, to another stream.
    Stream,
    /// A fresh event first, then the id with other data.
    Mixed,
}

/// What an operation is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// A new batch of fresh events.
    Fresh,
    /// The batch first sent by operation `of` of the same task, sent again unchanged.
    Replay { of: usize },
    /// A batch carrying the id `id`, stored before by another append of this task.
    Reuse { id: Uuid, how: Reuse },
}

/// One append a task made.
#[derive(Clone, Debug)]
struct Op {
    task: usize,
    index: usize,
    kind: Kind,
    stream: StreamName,
    expected: ExpectedSeq,
    events: Vec<NewEvent>,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "task {} op {} ({:?}): append {} event(s) to {} expecting {:?}: [",
            self.task,
            self.index,
            self.kind,
            self.events.len(),
            self.stream,
            self.expected
        )?;
        for (i, e) in self.events.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} {} {}", e.event_id, e.event_type, e.data)?;
        }
        write!(f, "] (seed {})", seed())
    }
}

/// What the store answered.
#[derive(Clone)]
enum Outcome {
    /// Written now.
    Written(AppendResult),
    /// An idempotent retry: the original result, `replayed: true`.
    Replayed(AppendResult),
    /// Refused: the stream was not where the expectation said.
    Conflict(Conflict),
    /// Refused: `event_id_reused` naming this id.
    Reused(Uuid),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Written(r) => write!(f, "written {r:?}"),
            Outcome::Replayed(r) => write!(f, "replayed {r:?}"),
            Outcome::Conflict(c) => write!(f, "{}", brief(c)),
            Outcome::Reused(id) => write!(f, "event_id_reused {id}"),
        }
    }
}

/// A conflict in one line: its seqs and the seqs and ids of the missed events.
fn brief(c: &Conflict) -> String {
    let missed: Vec<String> = c
        .missed
        .iter()
        .map(|e| format!("{}@{} {}", e.seq, e.position, e.event_id))
        .collect();
    format!(
        "conflict on {} expecting {:?} at seq {}, missed [{}]{}",
        c.stream,
        c.expected,
        c.current_seq,
        missed.join(", "),
        if c.missed_truncated { " and more" } else { "" }
    )
}

/// A batch a task sent, and what became of it.
struct Batch {
    /// The operation that sent it first.
    first_op: usize,
    stream: StreamName,
    expected: ExpectedSeq,
    events: Vec<NewEvent>,
    /// The stored id this batch reuses, for reused-id batches.
    reuses: Option<Uuid>,
    /// The result of the send that wrote it, once one did.
    written: Option<AppendResult>,
}

/// The seed of this run.
fn seed() -> u64 {
    std::env::var("LEDGER_GROUP_MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(SEED)
}

/// The streams every task writes to.
fn contested() -> Vec<StreamName> {
    (0..CONTESTED)
        .map(|i| stream(&format!("grpshared-{i}")))
        .collect()
}

/// The stream only task `task` writes to.
fn own(task: usize) -> StreamName {
    stream(&format!("grpown-{task}"))
}

/// An expectation for a stream the task last saw at `seen`: any, no_stream, exists, the seq it
/// saw, or a wrong one (stale, or ahead of it).
fn expectation(rng: &mut Rng, seen: u64) -> ExpectedSeq {
    match rng.below(10) {
        0 | 1 => ExpectedSeq::Any,
        2 => ExpectedSeq::NoStream,
        3 => ExpectedSeq::Exists,
        4..=6 => ExpectedSeq::Exact(Seq(seen)),
        _ if seen > 0 && rng.below(2) == 0 => ExpectedSeq::Exact(Seq(rng.below(seen))),
        _ => ExpectedSeq::Exact(Seq(seen + 1 + rng.below(3))),
    }
}

/// Chooses the next operation of a task and records its batch (new, or the one it resends).
///
/// After a conflict on a shared stream (`retry`), the task often appends to it again at the
/// seq the conflict reported, as an optimistic writer does, so that shared streams see many
/// conditional appends racing with a fresh view.
fn choose(
    rng: &mut Rng,
    task: usize,
    index: usize,
    seen: &HashMap<StreamName, u64>,
    retry: Option<&StreamName>,
    batches: &mut Vec<Batch>,
) -> (Op, usize) {
    let seen_of = |s: &StreamName| seen.get(s).copied().unwrap_or(0);
    let written: Vec<usize> = (0..batches.len())
        .filter(|&b| batches[b].written.is_some() && batches[b].reuses.is_none())
        .collect();
    let retry = retry.filter(|_| rng.below(2) == 0).cloned();
    let roll = if retry.is_some() { 100 } else { rng.below(100) };
    if roll < 20 && !batches.is_empty() {
        let b = rng.below(batches.len() as u64) as usize;
        let batch = &batches[b];
        let op = Op {
            task,
            index,
            kind: Kind::Replay { of: batch.first_op },
            stream: batch.stream.clone(),
            expected: batch.expected,
            events: batch.events.clone(),
        };
        return (op, b);
    }
    let (kind, stream, events) = if roll < 32 && !written.is_empty() {
        let source = &batches[*rng.pick(&written)];
        let old = rng.pick(&source.events).clone();
        let how = *rng.pick(&[Reuse::Data, Reuse::Type, Reuse::Stream, Reuse::Mixed]);
        let other_data = NewEvent {
            data: json!({ "reused": old.data.clone() }),
            ..old.clone()
        };
        let (stream, events) = match how {
            Reuse::Data => (source.stream.clone(), vec![other_data]),
            Reuse::Type => {
                let other_type = NewEvent {
                    event_type: format!("{}Again", old.event_type),
                    ..old.clone()
                };
                (source.stream.clone(), vec![other_type])
            }
            Reuse::Stream if source.stream == own(task) => {
                (rng.pick(&contested()).clone(), vec![old.clone()])
            }
            Reuse::Stream => (own(task), vec![old.clone()]),
            Reuse::Mixed => {
                let fresh = ev("Noted", json!({ "task": task, "op": index, "i": 0 }));
                (source.stream.clone(), vec![fresh, other_data])
            }
        };
        let id = old.event_id;
        (Kind::Reuse { id, how }, stream, events)
    } else {
        let stream = match &retry {
            Some(s) => s.clone(),
            None if rng.below(100) < 60 => rng.pick(&contested()).clone(),
            None => own(task),
        };
        let events = (0..1 + rng.below(3))
            .map(|i| {
                let event_type = *rng.pick(&["Opened", "Noted", "Closed"]);
                ev(event_type, json!({ "task": task, "op": index, "i": i }))
            })
            .collect();
        (Kind::Fresh, stream, events)
    };
    let expected = match retry {
        Some(_) => ExpectedSeq::Exact(Seq(seen_of(&stream))),
        None => expectation(rng, seen_of(&stream)),
    };
    let reuses = match kind {
        Kind::Reuse { id, .. } => Some(id),
        _ => None,
    };
    batches.push(Batch {
        first_op: index,
        stream: stream.clone(),
        expected,
        events: events.clone(),
        reuses,
        written: None,
    });
    let op = Op {
        task,
        index,
        kind,
        stream,
        expected,
        events,
    };
    (op, batches.len() - 1)
}

/// Runs one task's operations in order, checking each answer against what the task knows.
async fn run_task(store: Store, task: usize) -> Vec<(Op, Outcome)> {
    let mut rng = Rng(seed() ^ (task as u64 + 1).wrapping_mul(0xd1b5_4a32_d192_ed03));
    let mine = own(task);
    // The last seq this task saw of each stream; streams only grow, so what it sees next can
    // never be less.
    let mut seen: HashMap<StreamName, u64> = HashMap::new();
    let mut batches: Vec<Batch> = Vec::new();
    // The shared stream the last operation conflicted on.
    let mut retry: Option<StreamName> = None;
    let mut records = Vec::with_capacity(OPS);
    for index in 0..OPS {
        let (op, b) = choose(&mut rng, task, index, &seen, retry.as_ref(), &mut batches);
        retry = None;
        let answer = store
            .append(op.stream.clone(), op.expected, op.events.clone())
            .await;
        let outcome = match answer {
            Ok(r) if r.replayed => Outcome::Replayed(r),
            Ok(r) => Outcome::Written(r),
            Err(StoreError::Conflict(c)) => Outcome::Conflict(*c),
            Err(StoreError::EventIdReused { event_id }) => Outcome::Reused(event_id),
            Err(e) => panic!("{op}: failed: {e:?}"),
        };
        let batch = &mut batches[b];
        let before = seen.get(&op.stream).copied().unwrap_or(0);
        if let Some(id) = batch.reuses {
            assert!(
                matches!(outcome, Outcome::Reused(got) if got == id),
                "{op}: expected event_id_reused for {id}, got {outcome:?}"
            );
        } else if let Some(original) = &batch.written {
            let want = AppendResult {
                replayed: true,
                ..original.clone()
            };
            assert!(
                matches!(&outcome, Outcome::Replayed(r) if *r == want),
                "{op}: a retry of a written batch must answer {want:?}, got {outcome:?}"
            );
        } else {
            match &outcome {
                Outcome::Written(r) => {
                    assert_eq!(r.stream, op.stream, "{op}: {r:?}");
                    assert!(
                        r.first_seq.0 >= 1
                            && r.last_seq.0 + 1 == r.first_seq.0 + op.events.len() as u64,
                        "{op}: seqs that do not fit the batch: {r:?}"
                    );
                    assert!(
                        op.expected.admits(Seq(r.first_seq.0 - 1)),
                        "{op}: written after seq {} which the expectation does not admit: {r:?}",
                        r.first_seq.0 - 1
                    );
                    assert!(
                        r.first_seq.0 > before,
                        "{op}: written at {r:?}, but this task saw the stream at {before} before"
                    );
                    if op.stream == mine {
                        assert_eq!(r.first_seq, Seq(before + 1), "{op}: own stream, {r:?}");
                    }
                    seen.insert(op.stream.clone(), r.last_seq.0);
                    batch.written = Some(r.clone());
                }
                Outcome::Conflict(c) => {
                    assert_eq!(c.stream, op.stream, "{op}: {}", brief(c));
                    assert_eq!(c.expected, op.expected, "{op}: {}", brief(c));
                    assert!(
                        !op.expected.admits(c.current_seq),
                        "{op}: a conflict at a seq the expectation admits: {}",
                        brief(c)
                    );
                    assert!(
                        c.current_seq.0 >= before,
                        "{op}: {}, but this task saw the stream at {before} before",
                        brief(c)
                    );
                    if op.stream == mine {
                        assert_eq!(c.current_seq, Seq(before), "{op}: own stream, {}", brief(c));
                    }
                    seen.insert(op.stream.clone(), c.current_seq.0);
                    retry = Some(op.stream.clone()).filter(|s| *s != mine);
                }
                other => {
                    panic!("{op}: never written, so expected written or conflict, got {other:?}")
                }
            }
        }
        records.push((op, outcome));
    }
    records
}

/// Asserts that `stored` holds `op`'s events exactly, at `r`'s seqs, ending at `r`'s position.
fn assert_written(stored: &[Envelope], op: &Op, r: &AppendResult) {
    let range = r.first_seq.0.saturating_sub(1) as usize..r.last_seq.0 as usize;
    let Some(got) = stored.get(range) else {
        panic!(
            "{op}: written at {r:?}, but the stream holds {} events",
            stored.len()
        );
    };
    for (e, want) in got.iter().zip(&op.events) {
        assert_eq!(e.event_id, want.event_id, "{op}: seq {} of {r:?}", e.seq);
        assert_eq!(e.event_type, want.event_type, "{op}: seq {}", e.seq);
        assert_eq!(e.data, want.data, "{op}: seq {}", e.seq);
        assert_eq!(e.metadata, want.metadata, "{op}: seq {}", e.seq);
    }
    assert_eq!(
        got.last().map(|e| e.position),
        Some(r.position),
        "{op}: {r:?}"
    );
}

store_test!(
    concurrent_appends_match_a_serial_model,
    |store| async move {
        let started = Instant::now();
        let tasks: Vec<_> = (0..TASKS)
            .map(|task| tokio::spawn(run_task(store.clone(), task)))
            .collect();
        let mut records = Vec::with_capacity(TASKS * OPS);
        for t in tasks {
            records.extend(t.await.expect("an appending task panicked"));
        }
        let appended = started.elapsed();
        check(&store, &records).await;
        eprintln!(
            "{} appends in {appended:?} ({}), checked in {:?}",
            records.len(),
            summary(&records),
            started.elapsed() - appended
        );
    }
);

/// Checks every answer in `records` against the store's final state and the serial model.
async fn check(store: &Store, records: &[(Op, Outcome)]) {
    // The final state of every stream an operation named: gapless, positions growing with seqs.
    let names: HashSet<StreamName> = records.iter().map(|(op, _)| op.stream.clone()).collect();
    let mut streams: HashMap<StreamName, Vec<Envelope>> = HashMap::new();
    for s in names {
        let events = read_stream(&**store, &s, 1).await;
        assert_eq!(
            seqs(&events),
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "{s} is not gapless from 1"
        );
        for w in events.windows(2) {
            assert!(
                w[0].position < w[1].position,
                "{s}: seq {} is at position {}, seq {} at {}",
                w[0].seq,
                w[0].position,
                w[1].seq,
                w[1].position
            );
        }
        streams.insert(s, events);
    }
    let log = whole_log(&**store).await;
    let by_id: HashMap<Uuid, &Envelope> = log.iter().map(|e| (e.event_id, e)).collect();
    assert_eq!(by_id.len(), log.len(), "an event id is stored twice");

    // Every written append is stored as answered; the log holds them and nothing else.
    let mut written: Vec<(&Op, &AppendResult)> = records
        .iter()
        .filter_map(|(op, outcome)| match outcome {
            Outcome::Written(r) => Some((op, r)),
            _ => None,
        })
        .collect();
    for (op, r) in &written {
        assert_written(&streams[&op.stream], op, r);
    }
    let events_written: usize = written.iter().map(|(op, _)| op.events.len()).sum();
    assert_eq!(
        log.len(),
        events_written,
        "the log holds {} events, the written appends {events_written}",
        log.len()
    );

    // The written appends in position order, with the same expectations, rebuild every stream
    // in a serial store.
    written.sort_by_key(|(_, r)| r.position);
    let model = MemoryStore::new();
    for (op, r) in &written {
        let again = model
            .append(op.stream.clone(), op.expected, op.events.clone())
            .await
            .unwrap_or_else(|e| panic!("{op}: answered {r:?}, but the model refuses it: {e:?}"));
        assert!(!again.replayed, "{op}: the model replays it");
        assert_eq!(
            (again.first_seq, again.last_seq),
            (r.first_seq, r.last_seq),
            "{op}: the model writes it elsewhere"
        );
    }
    for (s, real) in &streams {
        let modelled = read_stream(&model, s, 1).await;
        assert_eq!(
            real.len(),
            modelled.len(),
            "{s}: the model's length differs"
        );
        for (got, want) in real.iter().zip(&modelled) {
            assert_eq!(
                (got.event_id, got.seq, &got.event_type, &got.data),
                (want.event_id, want.seq, &want.event_type, &want.data),
                "{s}: the model differs"
            );
        }
    }

    // Conflicts show the events after the expectation as stored, replays the original result,
    // reused ids name stored events.
    let originals: HashMap<(usize, usize), &AppendResult> = written
        .iter()
        .map(|(op, r)| ((op.task, op.index), *r))
        .collect();
    for (op, outcome) in records {
        match outcome {
            Outcome::Written(_) => {}
            Outcome::Conflict(c) => check_conflict(&streams[&op.stream], op, c),
            Outcome::Replayed(r) => {
                let Kind::Replay { of } = op.kind else {
                    panic!("{op}: a replay of a new batch: {r:?}");
                };
                // The send that wrote the batch: its first send or an earlier retry.
                let original = records
                    .iter()
                    .filter(|(o, _)| o.task == op.task && o.index < op.index)
                    .filter(|(o, _)| o.index == of || o.kind == op.kind)
                    .find_map(|(o, _)| originals.get(&(o.task, o.index)));
                let Some(original) = original else {
                    panic!("{op}: replayed {r:?}, but no earlier send of it was written");
                };
                let want = AppendResult {
                    replayed: true,
                    ..(*original).clone()
                };
                assert_eq!(r, &want, "{op}");
            }
            Outcome::Reused(id) => {
                let Some(stored) = by_id.get(id) else {
                    panic!("{op}: event_id_reused names {id}, which is not stored");
                };
                let as_sent = op.events.iter().any(|e| {
                    e.event_id == *id
                        && stored.stream == op.stream
                        && stored.event_type == e.event_type
                        && stored.data == e.data
                });
                assert!(
                    !as_sent,
                    "{op}: refused as reused, but {id} is stored as sent"
                );
            }
        }
    }
}

/// Asserts that conflict `c` of `op` shows the events of the final stream `real` after the
/// expected seq, up to the seq it reports and at most the limit, and that this seq was reached.
fn check_conflict(real: &[Envelope], op: &Op, c: &Conflict) {
    let limit = ledger_tests::options().limits.max_missed_events as u64;
    let head = real.len() as u64;
    assert!(
        c.current_seq.0 <= head,
        "{op}: {}, beyond the final head {head}",
        brief(c)
    );
    let after = op.expected.missed_after().0;
    let missed = c.current_seq.0.saturating_sub(after);
    let shown = missed.min(limit);
    assert_eq!(c.missed.len() as u64, shown, "{op}: {}", brief(c));
    assert_eq!(c.missed_truncated, missed > limit, "{op}: {}", brief(c));
    let want = &real[after.min(head) as usize..(after + shown).min(head) as usize];
    for (got, want) in c.missed.iter().zip(want) {
        let fields = |e: &Envelope| {
            let (id, seq, position) = (e.event_id, e.seq, e.position);
            (id, seq, position, e.event_type.clone(), e.data.clone())
        };
        assert_eq!(
            fields(got),
            fields(want),
            "{op}: a missed event of {} is not the stored one",
            brief(c)
        );
    }
}

/// How many appends of each answer `records` holds, for the test's output.
fn summary(records: &[(Op, Outcome)]) -> String {
    let shared = contested();
    let (mut written, mut exact, mut conflicts, mut replays, mut reused) = (0, 0, 0, 0, 0);
    for (op, outcome) in records {
        match outcome {
            Outcome::Written(_) => {
                written += 1;
                if shared.contains(&op.stream) && matches!(op.expected, ExpectedSeq::Exact(_)) {
                    exact += 1;
                }
            }
            Outcome::Conflict(_) => conflicts += 1,
            Outcome::Replayed(_) => replays += 1,
            Outcome::Reused(_) => reused += 1,
        }
    }
    assert!(
        written > 0 && conflicts > 0 && replays > 0 && reused > 0,
        "the run did not exercise every answer: {written} written, {conflicts} conflicts, \
         {replays} replays, {reused} reused ids"
    );
    format!(
        "{written} written, {exact} of them to a shared stream at an exact seq; \
         {conflicts} conflicts, {replays} replays, {reused} reused ids"
    )
}
