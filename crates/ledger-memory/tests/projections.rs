//! The in-memory projection storage and log reader, on a tiny read model of two tables (a text
//! and integer key, a nullable time, a partial index), checked against the engine's `Tables`.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use ledger_core::{
    EventStore, ExpectedSeq, LogFilter, LogReader, NewEvent, Position, StreamName,
    TransactionalStore,
};
use ledger_memory::{MemoryProjections, MemoryStore};
use ledger_projector::{
    Batch, Column, Condition, Index, Key, Keys, Plan, ProjectionStore, Query, ReadModel, Row,
    RowError, Rows, Schema, Seen, Slot, Swapped, TableSpec, TableWrite, Tables, Target, Value,
    fold,
};
use serde_json::json;

static ITEMS: TableSpec = TableSpec {
    name: "items",
    columns: &[
        Column::text("owner"),
        Column::int("n"),
        Column::int("count"),
        Column::time("closed_at").nullable(),
    ],
    key: 2,
    indexes: &[Index {
        name: "open",
        columns: &["owner", "n"],
        only_null: Some("closed_at"),
    }],
};

static OWNERS: TableSpec = TableSpec {
    name: "owners",
    columns: &[Column::text("owner"), Column::int("items")],
    key: 1,
    indexes: &[],
};

static SCHEMA: Schema = Schema {
    name: "items",
    version: 2,
    tables: &[ITEMS, OWNERS],
};

/// `(owner, n, closed at)`: counts an item, or closes it.
type Event = (&'static str, i64, Option<DateTime<Utc>>);

struct Items;

fn key(owner: &str, n: i64) -> Key {
    vec![Value::text(owner), Value::Int(n)]
}

fn at(second: i64) -> DateTime<Utc> {
    Utc.timestamp_opt(1_800_000_000 + second, 999_999_999)
        .unwrap()
}

impl ReadModel<Event> for Items {
    fn schema(&self) -> &'static Schema {
        &SCHEMA
    }

    fn categories(&self) -> &'static [&'static str] {
        &["item"]
    }

    fn keys(&self, (owner, n, _): &Event, keys: &mut Keys) {
        keys.add(0, key(owner, *n));
        keys.add(1, vec![Value::text(*owner)]);
    }

    fn apply(&self, (owner, n, closed): &Event, rows: &mut Rows) -> Result<(), RowError> {
        let mut new = false;
        rows.update(0, &key(owner, *n), |row| match (row.as_mut(), closed) {
            (Some(row), Some(t)) => row[3] = Value::time(*t),
            (Some(row), None) => {
                if let Value::Int(c) = &mut row[2] {
                    *c += 1;
                }
            }
            (None, Some(_)) => {}
            (None, None) => {
                new = true;
                *row = Some(vec![
                    Value::text(*owner),
                    Value::Int(*n),
                    Value::Int(1),
                    Value::Null,
                ]);
            }
        })?;
        rows.update(1, &[Value::text(*owner)], |row| {
            let items = match row.as_ref().map(|r| &r[1]) {
                Some(Value::Int(i)) => *i,
                _ => 0,
            };
            *row = Some(vec![
                Value::text(*owner),
                Value::Int(items + i64::from(new)),
            ]);
        })
    }
}

fn events() -> Vec<Vec<Event>> {
    vec![
        vec![("ann", 1, None), ("ann", 2, None), ("bob", 1, None)],
        vec![("ann", 1, None), ("ann", 1, Some(at(1))), ("cy", 7, None)],
        vec![
            ("bob", 1, Some(at(2))),
            ("bob", 3, None),
            ("zed", 1, Some(at(3))),
        ],
    ]
}

fn batch(first: u64, events: &[Event]) -> Batch<Event> {
    events
        .iter()
        .enumerate()
        .map(|(i, e)| (Position(first + i as u64), Some(*e)))
        .collect()
}

async fn apply(
    store: &MemoryProjections,
    target: &Target,
    batch: &Batch<Event>,
    seen: Option<&mut Seen>,
) -> Option<Target> {
    let to = batch.last().unwrap();
    let mut tx = store
        .begin(&SCHEMA, target, to, batch.len(), "runner-1")
        .await
        .unwrap()?;
    let plan = Plan::of(&Items, batch, seen);
    let mut loaded = Vec::new();
    for (i, table) in SCHEMA.tables.iter().enumerate() {
        loaded.push(tx.load(table, &plan.to_load(i)).await.unwrap());
    }
    tx.write(fold(&Items, plan, loaded, batch).unwrap())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    Some(Target {
        position: to,
        events: target.events + batch.len(),
        ..target.clone()
    })
}

async fn fill(store: &MemoryProjections, slot: Slot, replay: bool) -> (Target, Tables) {
    let mut target = store.create(&SCHEMA, slot).await.unwrap().target();
    let mut tables = Tables::new(&SCHEMA);
    let mut seen = Seen::new();
    let mut next = 1;
    for events in events() {
        let b = batch(next, &events);
        next += events.len() as u64;
        tables.apply(&Items, &b).unwrap();
        target = apply(store, &target, &b, replay.then_some(&mut seen))
            .await
            .unwrap();
    }
    (target, tables)
}

#[tokio::test]
async fn batches_queries_snapshots_and_swaps() {
    let store = MemoryProjections::new();
    assert!(store.checkpoints().await.unwrap().is_empty());
    let created = store.create(&SCHEMA, Slot::Live).await.unwrap();
    assert_eq!((created.version, created.position), (2, Position::START));
    let (live, expected) = fill(&store, Slot::Live, false).await;
    assert_eq!(live.position, Position(9));
    for table in SCHEMA.tables {
        assert_eq!(
            store.query(&Query::new(table, 100)).await.unwrap(),
            expected.rows(table)
        );
    }
    let checkpoint = store
        .checkpoint("items", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(checkpoint.target(), live);
    assert_eq!(checkpoint.owner.as_deref(), Some("runner-1"));

    // Every condition, against `Query::passes` on the engine's tables.
    for condition in [
        Condition::Eq("owner", Value::text("ann")),
        Condition::Gt("count", Value::Int(1)),
        Condition::Ge("n", Value::Int(2)),
        Condition::Lt("n", Value::Int(2)),
        Condition::Le("closed_at", Value::time(at(1))),
        Condition::IsNull("closed_at"),
    ] {
        let query = Query::new(&ITEMS, 100).when(condition);
        let want = expected.page(&ITEMS, None, 100, |r| query.passes(r));
        assert!(!want.is_empty(), "{query:?}");
        assert_eq!(store.query(&query).await.unwrap(), want);
    }
    let paged = Query::new(&ITEMS, 2)
        .when(Condition::IsNull("closed_at"))
        .after(Some(key("ann", 2)));
    let rows = store.query(&paged).await.unwrap();
    let keys: Vec<Key> = rows.iter().map(|r| ITEMS.key_of(r)).collect();
    assert_eq!(keys, [key("bob", 3), key("cy", 7)]);
    let rows = store
        .query(&Query::new(&ITEMS, 100).slot(Slot::Rebuild))
        .await
        .unwrap();
    assert!(rows.is_empty(), "no rebuild copy yet");
    for bad in [
        Query::new(&ITEMS, 1).when(Condition::IsNull("nope")),
        Query::new(&ITEMS, 1).when(Condition::Eq("n", Value::text("1"))),
        Query::new(&ITEMS, 1).after(Some(vec![Value::text("ann")])),
    ] {
        assert_eq!(store.query(&bad).await.unwrap_err().code(), "internal");
    }

    // A snapshot keeps its view while a batch commits.
    let mut snapshot = store.snapshot(&SCHEMA).await.unwrap();
    let more = batch(10, &[("ann", 9, None)]);
    let live = apply(&store, &live, &more, None).await.unwrap();
    assert_eq!(
        snapshot.rows(&OWNERS, None, 100).await.unwrap(),
        expected.rows(&OWNERS)
    );
    assert_eq!(
        snapshot
            .rows(&ITEMS, Some(&key("bob", 1)), 1)
            .await
            .unwrap(),
        expected.rows(&ITEMS)[3..4]
    );
    assert_eq!(snapshot.checkpoint(), Some(checkpoint));
    let mut expected = expected;
    expected.apply(&Items, &more).unwrap();
    assert_eq!(
        store.query(&Query::new(&OWNERS, 100)).await.unwrap(),
        expected.rows(&OWNERS)
    );

    // A rebuild into fresh tables, swapped in.
    let (rebuilt, _) = fill(&store, Slot::Rebuild, true).await;
    let rebuilt = apply(&store, &rebuilt, &more, None).await.unwrap();
    let moved = Target {
        generation: rebuilt.generation + 1,
        ..rebuilt.clone()
    };
    assert_eq!(store.swap(&SCHEMA, &moved).await.unwrap(), Swapped::Moved);
    assert!(
        store
            .checkpoint("items", Slot::Rebuild)
            .await
            .unwrap()
            .is_some()
    );
    store.build_indexes(&SCHEMA, &rebuilt).await.unwrap();
    assert_eq!(store.swap(&SCHEMA, &rebuilt).await.unwrap(), Swapped::Yes);
    let swapped = store
        .checkpoint("items", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((swapped.position, swapped.events), (Position(10), 10));
    assert_ne!(swapped.generation, rebuilt.generation);
    for table in SCHEMA.tables {
        assert_eq!(
            store.query(&Query::new(table, 100)).await.unwrap(),
            expected.rows(table)
        );
    }
    // The old live target moved.
    let late = batch(11, &[("dee", 1, None)]);
    assert!(apply(&store, &live, &late, None).await.is_none());
    assert_eq!(store.checkpoints().await.unwrap().len(), 1);
    store.create(&SCHEMA, Slot::Rebuild).await.unwrap();
    store.drop_rebuild(&SCHEMA).await.unwrap();
    assert_eq!(store.checkpoints().await.unwrap().len(), 1);
    assert!(store.lease("items").await.unwrap().unwrap().alive().await);
}

#[tokio::test]
async fn a_batch_sees_its_own_writes_and_nothing_lands_until_it_commits() {
    let store = MemoryProjections::new();
    let created = store.create(&SCHEMA, Slot::Live).await.unwrap();
    let row = vec![Value::text("a"), Value::Int(1), Value::Int(5), Value::Null];
    let write = |upserts: Vec<Row>, deletes: Vec<Key>| TableWrite {
        table: &ITEMS,
        inserts: Vec::new(),
        upserts,
        deletes,
    };
    let mut tx = store
        .begin(&SCHEMA, &created.target(), Position(1), 1, "x")
        .await
        .unwrap()
        .unwrap();
    tx.write(vec![write(vec![row.clone()], vec![])])
        .await
        .unwrap();
    let keys = [key("a", 1), key("b", 1)];
    assert_eq!(
        tx.load(&ITEMS, &keys).await.unwrap(),
        std::slice::from_ref(&row)
    );
    assert!(
        store
            .query(&Query::new(&ITEMS, 10))
            .await
            .unwrap()
            .is_empty()
    );

    // Another batch waits for this one.
    let waiting = {
        let store = store.clone();
        let target = created.target();
        tokio::spawn(async move {
            let tx = store
                .begin(&SCHEMA, &target, Position(1), 1, "y")
                .await
                .unwrap();
            tx.is_some()
        })
    };
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert!(!waiting.is_finished());
    drop(tx);
    assert!(waiting.await.unwrap(), "the dropped batch moved nothing");
    assert_eq!(
        store
            .checkpoint("items", Slot::Live)
            .await
            .unwrap()
            .unwrap(),
        created
    );
    assert!(
        store
            .query(&Query::new(&ITEMS, 10))
            .await
            .unwrap()
            .is_empty()
    );

    // Written, then deleted in the same batch; committed without moving the position, as an
    // operator's edit would be.
    let mut tx = store
        .begin(&SCHEMA, &created.target(), Position::START, 0, "operator")
        .await
        .unwrap()
        .unwrap();
    let other = vec![Value::text("b"), Value::Int(1), Value::Int(2), Value::Null];
    tx.write(vec![write(vec![row.clone(), other.clone()], vec![])])
        .await
        .unwrap();
    tx.write(vec![write(vec![], vec![key("a", 1)])])
        .await
        .unwrap();
    assert_eq!(
        tx.load(&ITEMS, &keys).await.unwrap(),
        std::slice::from_ref(&other)
    );
    tx.commit().await.unwrap();
    assert_eq!(store.query(&Query::new(&ITEMS, 10)).await.unwrap(), [other]);
    let after = store
        .checkpoint("items", Slot::Live)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((after.position, after.events), (Position::START, 0));
    assert_eq!(after.owner.as_deref(), Some("operator"));

    // A table of another read model is refused.
    let mut tx = store
        .begin(&SCHEMA, &after.target(), Position(1), 1, "x")
        .await
        .unwrap()
        .unwrap();
    static STRANGER: TableSpec = TableSpec {
        name: "stranger",
        columns: &[Column::int("id")],
        key: 1,
        indexes: &[],
    };
    assert!(tx.load(&STRANGER, &[]).await.is_err());
}

#[tokio::test]
async fn the_store_keeps_one_set_of_read_models() {
    let store = MemoryStore::new();
    store
        .projections()
        .create(&SCHEMA, Slot::Live)
        .await
        .unwrap();
    assert_eq!(
        store
            .clone()
            .projections()
            .checkpoints()
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(
        MemoryProjections::new()
            .checkpoints()
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn the_log_is_read_in_commit_order_by_category() {
    let store = MemoryStore::new();
    let s = |n: &str| StreamName::parse(n).unwrap();
    let ev = |n: u64| NewEvent::new("Happened", json!({ "n": n }));
    store
        .append(s("item-1"), ExpectedSeq::NoStream, vec![ev(1)])
        .await
        .unwrap();
    let mut tx = store.begin().await.unwrap();
    tx.append(s("other-1"), ExpectedSeq::NoStream, vec![ev(2)])
        .await
        .unwrap();
    tx.append(s("item-2"), ExpectedSeq::NoStream, vec![ev(3), ev(4)])
        .await
        .unwrap();
    let filter = LogFilter::categories(["item"]);
    assert_eq!(
        store.count_after(Position::START, &filter).await.unwrap(),
        1
    );
    tx.commit().await.unwrap();
    let page = store.read_page(Position(1), &filter, 10).await.unwrap();
    assert_eq!(page.horizon, u64::MAX);
    let got: Vec<(u64, &str, u64, &str)> = page
        .events
        .iter()
        .map(|e| (e.position.0, e.stream.as_str(), e.seq.0, e.data.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (3, "item-2", 1, r#"{"n":3}"#),
            (4, "item-2", 2, r#"{"n":4}"#)
        ]
    );
    assert_eq!(store.log_mark().await.unwrap(), 0);
    assert_eq!(store.count_after(Position(1), &filter).await.unwrap(), 2);
    assert_eq!(
        store
            .count_after(Position::START, &LogFilter::all())
            .await
            .unwrap(),
        4
    );
    assert!(
        store
            .covers(Position(1), Position(2), &filter)
            .await
            .unwrap()
    );
    assert!(
        !store
            .covers(Position(1), Position(3), &filter)
            .await
            .unwrap()
    );
    assert!(
        !store
            .covers(Position(1), Position(2), &LogFilter::all())
            .await
            .unwrap()
    );
    assert!(
        !store
            .covers(Position(9), Position(5), &filter)
            .await
            .unwrap()
    );
    assert!(
        !store
            .covers(Position(9), Position::START, &filter)
            .await
            .unwrap()
    );
    assert!(
        store
            .read_page(Position(4), &filter, 10)
            .await
            .unwrap()
            .events
            .is_empty()
    );
}
