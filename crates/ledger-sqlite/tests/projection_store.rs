//! The generic projection storage and the log reader of the SQLite store, on a tiny read model
//! of two tables (a text and integer key, a nullable time, a partial index), checked against
//! the engine's in-memory `Tables` and, case by case, against `ledger-memory`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::{
    EventStore, ExpectedSeq, LogFilter, LogReader, NewEvent, Position, StoreOptions, StreamName,
};
use ledger_memory::{MemoryProjections, MemoryStore};
use ledger_projector::{
    Batch, Checkpoint, Column, Condition, Index, Key, Keys, Plan, ProjectionStore, Query,
    ReadModel, Row, RowError, Rows, Schema, Seen, Slot, Swapped, TableSpec, Tables, Target, Value,
    fold,
};
use ledger_sqlite::SqliteStore;
use serde_json::json;
use sqlx::Connection as _;

/// One score of a player in a round, finished or not.
static SCORES: TableSpec = TableSpec {
    name: "scores",
    columns: &[
        Column::text("player"),
        Column::int("round"),
        Column::int("points"),
        Column::time("finished_at").nullable(),
        Column::text("note").nullable(),
    ],
    key: 2,
    indexes: &[Index {
        name: "open",
        columns: &["player", "round"],
        only_null: Some("finished_at"),
    }],
};

/// Each player's total.
static TOTALS: TableSpec = TableSpec {
    name: "score_totals",
    columns: &[
        Column::text("player"),
        Column::int("total"),
        Column::time("last_at"),
    ],
    key: 1,
    indexes: &[Index {
        name: "total",
        columns: &["total", "player"],
        only_null: None,
    }],
};

static SCHEMA: Schema = Schema {
    name: "scores",
    version: 3,
    tables: &[SCORES, TOTALS],
};

/// The events of the tiny read model.
#[derive(Clone, Debug)]
enum Game {
    Score(&'static str, i64, i64, DateTime<Utc>),
    Finish(&'static str, i64, DateTime<Utc>),
    Drop(&'static str, i64),
}

struct Scores;

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_700_000_000 + second, 123_456_789)
        .unwrap()
}

fn score_key(player: &str, round: i64) -> Key {
    vec![Value::text(player), Value::Int(round)]
}

impl ReadModel<Game> for Scores {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &["game"]
    }

    fn keys(&self, event: &Game, keys: &mut Keys) {
        match event {
            Game::Score(p, r, ..) | Game::Drop(p, r) => {
                keys.add(0, score_key(p, *r));
                keys.add(1, vec![Value::text(*p)]);
            }
            Game::Finish(p, r, _) => keys.add(0, score_key(p, *r)),
        }
    }

    fn apply(&self, event: &Game, rows: &mut Rows) -> Result<(), RowError> {
        match event {
            Game::Score(p, r, points, t) => {
                rows.update(0, &score_key(p, *r), |row| {
                    let before = match row.as_ref().map(|r| &r[2]) {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    *row = Some(vec![
                        Value::text(*p),
                        Value::Int(*r),
                        Value::Int(before + points),
                        Value::Null,
                        Value::text(format!("\"{p}\"\n é ' --")),
                    ]);
                })?;
                rows.update(1, &[Value::text(*p)], |row| {
                    let total = match row.as_ref().map(|r| &r[1]) {
                        Some(Value::Int(n)) => *n,
                        _ => 0,
                    };
                    *row = Some(vec![
                        Value::text(*p),
                        Value::Int(total + points),
                        Value::time(*t),
                    ]);
                })
            }
            Game::Finish(p, r, t) => rows.update(0, &score_key(p, *r), |row| {
                if let Some(row) = row {
                    row[3] = Value::time(*t);
                    row[4] = Value::Null;
                }
            }),
            Game::Drop(p, r) => {
                let mut points = 0;
                rows.update(0, &score_key(p, *r), |row| {
                    if let Some(Value::Int(n)) = row.as_ref().map(|r| &r[2]) {
                        points = *n;
                    }
                    *row = None;
                })?;
                rows.update(1, &[Value::text(*p)], |row| {
                    if let Some(Value::Int(n)) = row.as_mut().map(|r| &mut r[1]) {
                        *n -= points;
                    }
                })
            }
        }
    }
}

/// The batches of the scenario: positions 1.., in order.
fn batches() -> Vec<Vec<Game>> {
    use Game::*;
    vec![
        vec![
            Score("ann", 1, 10, at(1)),
            Score("bob", 1, 7, at(2)),
            Score("ann", 2, 3, at(3)),
            Score("ann", 1, 5, at(4)),
        ],
        vec![
            Finish("ann", 1, at(5)),
            Score("cy", 10, -4, at(6)),
            Score("bob", 2, 1, at(7)),
            Finish("nobody", 1, at(8)),
        ],
        vec![
            Drop("bob", 1),
            Score("ann", 2, 2, at(9)),
            Score("dee", 1, 0, at(10)),
            Drop("zed", 9),
        ],
    ]
}

fn batch(first: u64, events: &[Game]) -> Batch<Game> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| (Position(first + i as u64), Some(e.clone())))
        .collect()
}

/// Applies one batch through the store as the runner does: begin, load, fold, write, commit.
/// `None` when the checkpoint had moved.
async fn apply(
    store: &dyn ProjectionStore,
    target: &Target,
    batch: &Batch<Game>,
    seen: Option<&mut Seen>,
) -> Option<Target> {
    let to = batch.last().unwrap();
    let mut tx = store
        .begin(&SCHEMA, target, to, batch.len(), "test")
        .await
        .unwrap()?;
    let plan = Plan::of(&Scores, batch, seen);
    let mut loaded = Vec::new();
    for (i, table) in SCHEMA.tables.iter().enumerate() {
        let keys = plan.to_load(i);
        loaded.push(tx.load(table, &keys).await.unwrap());
    }
    let writes = fold(&Scores, plan, loaded, batch).unwrap();
    tx.write(writes).await.unwrap();
    tx.commit().await.unwrap();
    Some(Target {
        position: to,
        events: target.events + batch.len(),
        ..target.clone()
    })
}

/// Applies every batch to a fresh copy, returning where it ends.
async fn fill(store: &dyn ProjectionStore, slot: Slot, replay: bool) -> Target {
    let mut target = store.create(&SCHEMA, slot).await.unwrap().target();
    let mut seen = Seen::new();
    let mut next = 1;
    for events in batches() {
        let b = batch(next, &events);
        next += events.len() as u64;
        let seen = replay.then_some(&mut seen);
        target = apply(store, &target, &b, seen).await.unwrap();
    }
    target
}

/// The rows the engine's in-memory tables hold after every batch.
fn reference() -> Tables {
    let mut tables = Tables::new(&SCHEMA);
    let mut next = 1;
    for events in batches() {
        tables.apply(&Scores, &batch(next, &events)).unwrap();
        next += events.len() as u64;
    }
    tables
}

/// Every page of `query`, following `after`, at most `limit` rows each.
async fn all_pages(store: &dyn ProjectionStore, query: Query) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut query = query;
    loop {
        let page = store.query(&query).await.unwrap();
        let done = page.len() < query.limit;
        let last = page.last().map(|r| query.table.key_of(r));
        rows.extend(page);
        if done {
            return rows;
        }
        query = query.after(last);
    }
}

/// The whole scenario against one store.
async fn scenario(store: &dyn ProjectionStore) {
    assert_eq!(store.checkpoint("scores", Slot::Live).await.unwrap(), None);
    let created: Checkpoint = store.create(&SCHEMA, Slot::Live).await.unwrap();
    assert_eq!(
        (created.name.as_str(), created.slot, created.version),
        ("scores", Slot::Live, 3)
    );
    assert_eq!((created.position, created.events), (Position::START, 0));

    // A batch dropped before its commit writes nothing.
    let first = batch(1, &batches()[0]);
    {
        let mut tx = store
            .begin(&SCHEMA, &created.target(), Position(4), 4, "dropped")
            .await
            .unwrap()
            .unwrap();
        let writes = fold(
            &Scores,
            Plan::of(&Scores, &first, None),
            vec![vec![], vec![]],
            &first,
        )
        .unwrap();
        tx.write(writes).await.unwrap();
    }
    assert_eq!(
        store.checkpoint("scores", Slot::Live).await.unwrap(),
        Some(created.clone())
    );
    assert!(
        store
            .query(&Query::new(&SCORES, 10))
            .await
            .unwrap()
            .is_empty()
    );

    let live = fill(store, Slot::Live, false).await;
    let expected = reference();
    for table in SCHEMA.tables {
        assert_eq!(
            store.query(&Query::new(table, 100)).await.unwrap(),
            expected.rows(table),
            "{}",
            table.name
        );
        assert_eq!(
            all_pages(store, Query::new(table, 2)).await,
            expected.rows(table)
        );
    }
    let checkpoint = store
        .checkpoint("scores", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.target(), live);
    assert_eq!(checkpoint.owner.as_deref(), Some("test"));
    assert_eq!((checkpoint.position, checkpoint.events), (Position(12), 12));

    // A target the checkpoint has left: nothing is written.
    let stale = batch(5, &batches()[1]);
    assert!(
        apply(store, &created.target(), &stale, None)
            .await
            .is_none()
    );

    // Every condition, alone and together, paged, against `Query::passes`.
    let t = Value::time(at(5));
    let conditions = [
        Condition::Eq("player", Value::text("ann")),
        Condition::Gt("points", Value::Int(0)),
        Condition::Ge("points", Value::Int(0)),
        Condition::Lt("round", Value::Int(2)),
        Condition::Le("round", Value::Int(2)),
        Condition::IsNull("finished_at"),
        Condition::Le("finished_at", t.clone()),
        Condition::Gt("finished_at", t.clone()),
        Condition::Eq("note", Value::Null),
        Condition::Eq("note", Value::text("\"ann\"\n é ' --")),
    ];
    let mut queries: Vec<Query> = conditions
        .iter()
        .map(|c| Query::new(&SCORES, 100).when(c.clone()))
        .collect();
    queries.push(
        Query::new(&SCORES, 100)
            .when(Condition::Eq("player", Value::text("ann")))
            .when(Condition::IsNull("finished_at"))
            .after(Some(score_key("ann", 1))),
    );
    queries.push(
        Query::new(&TOTALS, 100)
            .when(Condition::Ge("last_at", Value::time(at(6))))
            .when(Condition::Lt("total", Value::Int(100))),
    );
    for query in queries {
        let want = expected.page(query.table, query.after.as_ref(), query.limit, |r| {
            query.passes(r)
        });
        assert_eq!(store.query(&query).await.unwrap(), want, "{query:?}");
        assert_eq!(all_pages(store, query.clone()).await.len(), want.len());
        let one = Query {
            limit: 1,
            ..query.clone()
        };
        assert_eq!(store.query(&one).await.unwrap(), want[..want.len().min(1)]);
    }
    let open = store
        .query(&Query::new(&SCORES, 100).when(Condition::IsNull("finished_at")))
        .await
        .unwrap();
    assert_eq!(open.len(), 4, "{open:?}");
    let unknown = Query::new(&SCORES, 10).when(Condition::Eq("nope", Value::Int(1)));
    assert_eq!(store.query(&unknown).await.unwrap_err().code(), "internal");
    let mistyped = Query::new(&SCORES, 10).when(Condition::Eq("round", Value::text("1")));
    assert_eq!(store.query(&mistyped).await.unwrap_err().code(), "internal");

    // A snapshot keeps its view while a batch commits.
    let mut snapshot = store.snapshot(&SCHEMA).await.unwrap();
    assert_eq!(snapshot.checkpoint(), Some(checkpoint.clone()));
    let before = snapshot.rows(&SCORES, None, 2).await.unwrap();
    assert_eq!(before, expected.rows(&SCORES)[..2]);
    let more = batch(13, &[Game::Score("ann", 1, 1, at(20))]);
    let live = apply(store, &live, &more, None).await.unwrap();
    let after = score_key("ann", 2);
    assert_eq!(
        snapshot.rows(&SCORES, Some(&after), 100).await.unwrap(),
        expected.rows(&SCORES)[2..]
    );
    assert_eq!(
        snapshot.rows(&TOTALS, None, 100).await.unwrap(),
        expected.rows(&TOTALS)
    );
    drop(snapshot);
    let mut expected = expected;
    expected.apply(&Scores, &more).unwrap();
    assert_eq!(
        store.query(&Query::new(&TOTALS, 100)).await.unwrap(),
        expected.rows(&TOTALS)
    );

    // A rebuild fills fresh tables (keys never seen are inserted plainly) and swaps them in.
    let rebuilt = fill(store, Slot::Rebuild, true).await;
    let rebuilt = apply(store, &rebuilt, &more, None).await.unwrap();
    assert_eq!(
        store
            .query(&Query::new(&SCORES, 100).slot(Slot::Rebuild))
            .await
            .unwrap(),
        expected.rows(&SCORES)
    );
    let wrong = Target {
        position: Position(1),
        ..rebuilt.clone()
    };
    assert_eq!(store.swap(&SCHEMA, &wrong).await.unwrap(), Swapped::Moved);
    store.build_indexes(&SCHEMA, &rebuilt).await.unwrap();
    assert_eq!(store.swap(&SCHEMA, &rebuilt).await.unwrap(), Swapped::Yes);
    assert_eq!(
        store.checkpoint("scores", Slot::Rebuild).await.unwrap(),
        None
    );
    let swapped = store
        .checkpoint("scores", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (swapped.position, swapped.events, swapped.version),
        (rebuilt.position, rebuilt.events, 3)
    );
    assert_ne!(swapped.generation, rebuilt.generation);
    assert_ne!(swapped.generation, live.generation);
    for table in SCHEMA.tables {
        assert_eq!(
            store.query(&Query::new(table, 100)).await.unwrap(),
            expected.rows(table)
        );
    }
    // The old live target moved: nothing commits through it.
    let late = batch(14, &[Game::Drop("ann", 1)]);
    assert!(apply(store, &live, &late, None).await.is_none());
    assert!(apply(store, &swapped.target(), &late, None).await.is_some());
    assert_eq!(
        store.checkpoints().await.unwrap().len(),
        1,
        "only the live copy is left"
    );

    // A rebuild copy that is dropped leaves the live one alone.
    store.create(&SCHEMA, Slot::Rebuild).await.unwrap();
    store.drop_rebuild(&SCHEMA).await.unwrap();
    assert_eq!(
        store.checkpoint("scores", Slot::Rebuild).await.unwrap(),
        None
    );
    assert_eq!(
        store.query(&Query::new(&SCORES, 100)).await.unwrap().len(),
        4
    );
    assert!(store.lease("scores").await.unwrap().unwrap().alive().await);
    assert!(store.poll_interval() <= Duration::from_secs(1));
}

async fn open(dir: &tempfile::TempDir) -> SqliteStore {
    let path = dir.path().join("ledger.db");
    SqliteStore::open(path.to_str().unwrap(), StoreOptions::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn sqlite_keeps_any_read_model() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await;
    let projections = store.projections();
    scenario(&projections).await;

    // The live tables carry their indexes under the live names, the partial one included.
    let mut conn = sqlx::SqliteConnection::connect(dir.path().join("ledger.db").to_str().unwrap())
        .await
        .unwrap();
    let indexes: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL \
         AND tbl_name LIKE 'score%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    let names: Vec<&str> = indexes.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["score_totals_total_idx", "scores_open_idx"]);
    assert!(indexes[1].1.ends_with("WHERE finished_at IS NULL"));
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'score%' ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(tables, ["score_totals", "scores"]);
}

#[tokio::test]
async fn memory_agrees() {
    scenario(&MemoryProjections::new()).await;
}

/// Batches of more rows than one write statement carries, through the update and the insert
/// paths, against the engine's tables.
async fn large_batches(store: &dyn ProjectionStore) {
    const PLAYERS: [&str; 7] = ["p0", "p1", "p2", "p3", "p4", "p5", "p6"];
    let events: Vec<Game> = (0..300)
        .map(|i| Game::Score(PLAYERS[i % 7], (i % 41) as i64, i as i64, at(i as i64)))
        .collect();
    let mut expected = Tables::new(&SCHEMA);
    for slot in [Slot::Live, Slot::Rebuild] {
        let mut target = store.create(&SCHEMA, slot).await.unwrap().target();
        let mut seen = Seen::new();
        let mut next = 1;
        for part in events.chunks(130) {
            let b = batch(next, part);
            next += part.len() as u64;
            if slot == Slot::Live {
                expected.apply(&Scores, &b).unwrap();
            }
            let seen = (slot == Slot::Rebuild).then_some(&mut seen);
            target = apply(store, &target, &b, seen).await.unwrap();
        }
        for table in SCHEMA.tables {
            let query = Query::new(table, 1000).slot(slot);
            assert_eq!(store.query(&query).await.unwrap(), expected.rows(table));
        }
    }
    assert_eq!(expected.rows(&SCORES).len(), 287);
}

#[tokio::test]
async fn large_batches_are_written_in_chunks() {
    let dir = tempfile::tempdir().unwrap();
    large_batches(&open(&dir).await.projections()).await;
    large_batches(&MemoryProjections::new()).await;
}

#[tokio::test]
async fn malformed_specs_are_refused_before_any_sql() {
    static BAD: Schema = Schema {
        name: "bad",
        version: 1,
        tables: &[TableSpec {
            name: "bad; DROP TABLE events",
            columns: &[Column::text("a")],
            key: 1,
            indexes: &[],
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).await.projections();
    let error = store.create(&BAD, Slot::Live).await.unwrap_err();
    assert_eq!(error.code(), "internal");
    let query = Query::new(&BAD.tables[0], 1);
    assert_eq!(store.query(&query).await.unwrap_err().code(), "internal");
}

fn s(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

fn ev(n: u64) -> NewEvent {
    NewEvent::new("Happened", json!({ "n": n }))
}

/// The log reader of both stores: pages, category filters, `covers` and `count_after`.
async fn reads_the_log<S: EventStore + LogReader>(store: &S) {
    store
        .append(s("a-1"), ExpectedSeq::NoStream, vec![ev(1), ev(2)])
        .await
        .unwrap();
    store
        .append(s("b-1"), ExpectedSeq::NoStream, vec![ev(3)])
        .await
        .unwrap();
    store
        .append(s("ab-1"), ExpectedSeq::NoStream, vec![ev(4)])
        .await
        .unwrap();
    store
        .append(s("a-2"), ExpectedSeq::NoStream, vec![ev(5)])
        .await
        .unwrap();
    let all = LogFilter::all();
    let a = LogFilter::categories(["a"]);
    let b = LogFilter::categories(["b", "zz"]);
    let page = store.read_page(Position::START, &all, 100).await.unwrap();
    assert_eq!(page.horizon, u64::MAX);
    let positions: Vec<u64> = page.events.iter().map(|e| e.position.0).collect();
    assert_eq!(positions, [1, 2, 3, 4, 5]);
    let first = &page.events[0];
    assert_eq!((first.stream.as_str(), first.seq.0), ("a-1", 1));
    assert_eq!(first.event_type, "Happened");
    let data: serde_json::Value = serde_json::from_str(&first.data).unwrap();
    assert_eq!(data, json!({ "n": 1 }));

    let page = store.read_page(Position(1), &a, 100).await.unwrap();
    let streams: Vec<&str> = page.events.iter().map(|e| e.stream.as_str()).collect();
    assert_eq!(streams, ["a-1", "a-2"]);
    let page = store.read_page(Position::START, &a, 1).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let page = store.read_page(Position::START, &b, 100).await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].position, Position(3));
    assert!(
        store
            .read_page(Position(5), &all, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );

    assert_eq!(store.log_mark().await.unwrap(), 0);
    assert_eq!(store.count_after(Position::START, &all).await.unwrap(), 5);
    assert_eq!(store.count_after(Position(2), &a).await.unwrap(), 1);
    assert_eq!(store.count_after(Position(3), &b).await.unwrap(), 0);

    // Covered: the event exists and nothing of the filter lies between.
    assert!(
        !store
            .covers(Position(5), Position::START, &all)
            .await
            .unwrap()
    );
    assert!(!store.covers(Position(5), Position(6), &all).await.unwrap());
    assert!(store.covers(Position(2), Position(2), &all).await.unwrap());
    assert!(store.covers(Position(5), Position(3), &all).await.unwrap());
    assert!(!store.covers(Position(2), Position(3), &all).await.unwrap());
    assert!(store.covers(Position(2), Position(4), &a).await.unwrap());
    assert!(!store.covers(Position(2), Position(5), &a).await.unwrap());
    assert!(
        store
            .covers(Position::START, Position(2), &b)
            .await
            .unwrap()
    );
    assert!(
        !store
            .covers(Position::START, Position(3), &b)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn sqlite_reads_the_log_by_category() {
    let dir = tempfile::tempdir().unwrap();
    reads_the_log(&open(&dir).await).await;
}

#[tokio::test]
async fn memory_reads_the_log_by_category() {
    reads_the_log(&MemoryStore::new()).await;
}
