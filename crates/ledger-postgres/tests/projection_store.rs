//! The PostgreSQL projection store and log reader against a throwaway database, with a small
//! read model of two tables declared here: create, apply batches (load, inserts, upserts,
//! deletes), query with every condition, snapshot, rebuild and swap, leases; and the log read
//! by category, gap-free around a transaction in flight.
//!
//! The server is the one at `LEDGER_TEST_DATABASE_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each test creates its own database and
//! drops it afterwards.

use std::future::Future;
use std::panic::{AssertUnwindSafe, resume_unwind};
use std::time::Duration;

use chrono::{TimeZone, Utc};
use futures::{FutureExt, TryStreamExt};
use ledger_core::{
    Envelope, EventStore, ExpectedSeq, LogFilter, LogReader, NewEvent, Position, ReadAll,
    StoreError, StoreOptions, StreamName, TransactionalStore,
};
use ledger_postgres::{PgStore, ddl};
use ledger_projector::{
    Column, Condition, Index, ProjectionStore, Query, Row, Schema, Slot, Swapped, TableSpec,
    TableWrite, Tables, Value,
};
use sqlx::{AssertSqlSafe, Connection, PgConnection};

/// The server's maintenance database, where test databases are created and dropped.
fn base_url() -> String {
    std::env::var("LEDGER_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `base` with its database name replaced by `database`.
fn database_url(base: &str, database: &str) -> String {
    let (head, query) = base.split_at(base.find('?').unwrap_or(base.len()));
    let authority = head.find("://").map_or(0, |i| i + 3);
    let path = head[authority..]
        .find('/')
        .map_or(head.len(), |i| authority + i);
    format!("{}/{database}{query}", &head[..path])
}

/// Runs DDL on the maintenance database.
async fn admin(sql: String) {
    let url = base_url();
    let mut conn = PgConnection::connect(&url).await.unwrap_or_else(|e| {
        panic!(
            "cannot reach the PostgreSQL server of the tests at {url}: {e}; start it with \
             pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"
        )
    });
    sqlx::raw_sql(AssertSqlSafe(sql))
        .execute(&mut conn)
        .await
        .expect("admin statement");
    let _ = conn.close().await;
}

/// Runs `body` with a store on a fresh migrated database and its URL, then drops the
/// database, whether or not `body` panicked.
async fn with_store<F, Fut>(body: F)
where
    F: FnOnce(PgStore, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let name = format!("ledger_test_{}", uuid::Uuid::now_v7().simple());
    admin(format!("CREATE DATABASE \"{name}\"")).await;
    let url = database_url(&base_url(), &name);
    let outcome = AssertUnwindSafe(async {
        PgStore::migrate(&url).await.expect("migrate");
        let store = PgStore::connect(&url, StoreOptions::default())
            .await
            .expect("connect");
        body(store, url.clone()).await
    })
    .catch_unwind()
    .await;
    admin(format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
    if let Err(panic) = outcome {
        resume_unwind(panic);
    }
}

static ITEMS: TableSpec = TableSpec {
    name: "gadget_items",
    columns: &[
        Column::text("owner"),
        Column::int("n"),
        Column::text("label").nullable(),
        Column::time("done_at").nullable(),
    ],
    key: 2,
    indexes: &[Index {
        name: "open",
        columns: &["owner", "n"],
        only_null: Some("done_at"),
    }],
};

static TOTALS: TableSpec = TableSpec {
    name: "gadget_totals",
    columns: &[Column::text("owner"), Column::int("count")],
    key: 1,
    indexes: &[Index {
        name: "count",
        columns: &["count"],
        only_null: None,
    }],
};

static SCHEMA: Schema = Schema {
    name: "gadgets",
    version: 3,
    tables: &[ITEMS, TOTALS],
};

fn time(s: i64) -> Value {
    Value::time(Utc.timestamp_opt(1_700_000_000 + s, 123_456_789).unwrap())
}

fn item(owner: &str, n: i64, label: Option<&str>, done: Option<i64>) -> Row {
    vec![
        Value::text(owner),
        Value::Int(n),
        Value::opt_text(label),
        done.map_or(Value::Null, time),
    ]
}

fn total(owner: &str, count: i64) -> Row {
    vec![Value::text(owner), Value::Int(count)]
}

fn key(owner: &str, n: i64) -> Vec<Value> {
    vec![Value::text(owner), Value::Int(n)]
}

fn write(
    table: &'static TableSpec,
    inserts: Vec<Row>,
    upserts: Vec<Row>,
    deletes: Vec<Row>,
) -> TableWrite {
    TableWrite {
        table,
        inserts,
        upserts,
        deletes,
    }
}

/// Every row of `table`'s copy `slot`, in key order.
async fn all(store: &impl ProjectionStore, table: &'static TableSpec, slot: Slot) -> Vec<Row> {
    store
        .query(&Query::new(table, 1000).slot(slot))
        .await
        .expect("query")
}

/// The indexes of `table`.
async fn indexes(url: &str, table: &str) -> Vec<String> {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query_scalar(
        "SELECT indexname::text FROM pg_indexes WHERE tablename = $1 ORDER BY indexname",
    )
    .bind(table)
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

#[tokio::test]
async fn a_read_model_is_created_applied_queried_rebuilt_and_swapped() {
    with_store(|store, url| async move {
        let pg = store.projections();
        let live = pg.create(&SCHEMA, Slot::Live).await.unwrap();
        assert_eq!(
            (live.name.as_str(), live.slot, live.version),
            ("gadgets", Slot::Live, 3)
        );
        assert_eq!((live.position, live.events), (Position::START, 0));
        assert_eq!(
            indexes(&url, "gadget_items").await,
            ["gadget_items_open_idx", "gadget_items_pkey"]
        );

        // The tables are what the DDL says: key and non-null columns, texts in "C" order.
        let mut conn = PgConnection::connect(&url).await.unwrap();
        let columns: Vec<(String, String, String, Option<String>)> = sqlx::query_as(
            "SELECT column_name::text, data_type::text, is_nullable::text, \
             collation_name::text FROM information_schema.columns \
             WHERE table_name = 'gadget_items' ORDER BY ordinal_position",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        let c = |n: &str, t: &str, null: &str, coll: Option<&str>| {
            (
                n.to_string(),
                t.to_string(),
                null.to_string(),
                coll.map(str::to_string),
            )
        };
        assert_eq!(
            columns,
            [
                c("owner", "text", "NO", Some("C")),
                c("n", "bigint", "NO", None),
                c("label", "text", "YES", Some("C")),
                c("done_at", "timestamp with time zone", "YES", None),
            ]
        );
        assert!(ddl::create_table(&ITEMS, "gadget_items").contains("PRIMARY KEY (owner, n)"));

        // A first batch: plain inserts into both tables.
        let mut reference = Tables::new(&SCHEMA);
        let first = vec![
            write(
                &ITEMS,
                vec![
                    item("a", 1, Some("x"), None),
                    item("a", 2, None, Some(5)),
                    item("b", 1, Some("y"), None),
                    item("é", 7, Some("z"), Some(1)),
                ],
                vec![],
                vec![],
            ),
            write(
                &TOTALS,
                vec![total("a", 2), total("b", 1), total("é", 1)],
                vec![],
                vec![],
            ),
        ];
        let mut tx = pg
            .begin(&SCHEMA, &live.target(), Position(5), 5, "runner-1")
            .await
            .unwrap()
            .expect("the checkpoint is where we left it");
        assert_eq!(
            tx.load(&ITEMS, &[key("a", 1)]).await.unwrap(),
            Vec::<Row>::new()
        );
        tx.write(first.clone()).await.unwrap();
        tx.commit().await.unwrap();
        reference.write(first);
        let cp = pg.checkpoint("gadgets", Slot::Live).await.unwrap().unwrap();
        assert_eq!((cp.position, cp.events), (Position(5), 5));
        assert_eq!(cp.owner.as_deref(), Some("runner-1"));
        assert_eq!(cp.generation, live.generation);

        // A writer with the old checkpoint is turned away, writing nothing.
        assert!(
            pg.begin(&SCHEMA, &live.target(), Position(9), 4, "late")
                .await
                .unwrap()
                .is_none()
        );

        // A second batch: loads (in key order), upserts and deletes in one statement.
        let mut tx = pg
            .begin(&SCHEMA, &cp.target(), Position(8), 3, "runner-1")
            .await
            .unwrap()
            .unwrap();
        let loaded = tx
            .load(
                &ITEMS,
                &[key("a", 1), key("a", 2), key("a", 3), key("é", 7)],
            )
            .await
            .unwrap();
        assert_eq!(
            loaded,
            reference.load(&ITEMS, &[key("a", 1), key("a", 2), key("é", 7)])
        );
        let totals = tx
            .load(&TOTALS, &[vec![Value::text("a")], vec![Value::text("zz")]])
            .await
            .unwrap();
        assert_eq!(totals, [total("a", 2)]);
        let second = vec![
            write(
                &ITEMS,
                vec![],
                vec![item("a", 1, Some("x2"), Some(9)), item("c", 4, None, None)],
                vec![key("a", 2), key("b", 1)],
            ),
            write(
                &TOTALS,
                vec![],
                vec![total("a", 1), total("c", 1)],
                vec![vec![Value::text("b")]],
            ),
        ];
        tx.write(second.clone()).await.unwrap();
        tx.write(vec![write(&ITEMS, vec![], vec![], vec![])])
            .await
            .unwrap();
        tx.commit().await.unwrap();
        reference.write(second);
        for table in [&ITEMS, &TOTALS] {
            assert_eq!(all(&pg, table, Slot::Live).await, reference.rows(table));
        }
        let cp = pg.checkpoint("gadgets", Slot::Live).await.unwrap().unwrap();
        assert_eq!((cp.position, cp.events), (Position(8), 8));

        // A batch dropped before its commit leaves nothing behind.
        let mut tx = pg
            .begin(&SCHEMA, &cp.target(), Position(9), 1, "runner-1")
            .await
            .unwrap()
            .unwrap();
        tx.write(vec![write(&TOTALS, vec![total("q", 1)], vec![], vec![])])
            .await
            .unwrap();
        drop(tx);
        assert_eq!(all(&pg, &TOTALS, Slot::Live).await, reference.rows(&TOTALS));
        assert_eq!(
            pg.checkpoint("gadgets", Slot::Live)
                .await
                .unwrap()
                .unwrap()
                .position,
            Position(8)
        );

        // Queries: every condition, paging by key, matching the reference's evaluation.
        let queries = [
            Query::new(&ITEMS, 10).when(Condition::Eq("owner", Value::text("a"))),
            Query::new(&ITEMS, 10).when(Condition::Gt("n", Value::Int(1))),
            Query::new(&ITEMS, 10).when(Condition::Ge("n", Value::Int(4))),
            Query::new(&ITEMS, 10).when(Condition::Lt("done_at", time(9))),
            Query::new(&ITEMS, 10).when(Condition::Le("done_at", time(9))),
            Query::new(&ITEMS, 10).when(Condition::IsNull("done_at")),
            Query::new(&ITEMS, 10).when(Condition::Eq("label", Value::Null)),
            Query::new(&ITEMS, 10).when(Condition::Gt("owner", Value::text("b"))),
            Query::new(&ITEMS, 1).after(Some(key("a", 1))),
            Query::new(&ITEMS, 10)
                .when(Condition::IsNull("done_at"))
                .after(Some(key("a", 9))),
            Query::new(&TOTALS, 10).when(Condition::Le("count", Value::Int(1))),
            Query::new(&TOTALS, 10).after(Some(vec![Value::text("a")])),
        ];
        for q in &queries {
            let expected = reference.page(q.table, q.after.as_ref(), q.limit, |r| q.passes(r));
            assert_eq!(pg.query(q).await.unwrap(), expected, "{q:?}");
        }
        assert_eq!(
            pg.query(&queries[8]).await.unwrap(),
            [item("c", 4, None, None)]
        );
        assert_eq!(pg.query(&queries[5]).await.unwrap().len(), 1);
        for bad in [
            Query::new(&ITEMS, 10).when(Condition::IsNull("nope")),
            Query::new(&ITEMS, 10).when(Condition::Eq("n", Value::text("1"))),
        ] {
            let err = pg.query(&bad).await.unwrap_err();
            assert!(matches!(err, StoreError::Backend { .. }), "{err}");
        }

        // A snapshot pages the live rows as of one moment.
        let mut snapshot = pg.snapshot(&SCHEMA).await.unwrap();
        assert_eq!(snapshot.checkpoint().unwrap().position, Position(8));
        let page = snapshot.rows(&ITEMS, None, 2).await.unwrap();
        assert_eq!(page, reference.rows(&ITEMS)[..2]);
        let after = ITEMS.key_of(&page[1]);
        let rest = snapshot.rows(&ITEMS, Some(&after), 10).await.unwrap();
        assert_eq!(rest, reference.rows(&ITEMS)[2..]);
        drop(snapshot);

        // A rebuild fills fresh copies without indexes, indexes them, and swaps them in.
        let rebuild = pg.create(&SCHEMA, Slot::Rebuild).await.unwrap();
        assert_eq!(
            indexes(&url, "gadget_items_rebuild").await,
            ["gadget_items_rebuild_pkey"]
        );
        let mut tx = pg
            .begin(&SCHEMA, &rebuild.target(), Position(8), 8, "rebuild")
            .await
            .unwrap()
            .unwrap();
        let rows = vec![
            write(
                &ITEMS,
                vec![item("r", 1, Some("new"), None)],
                vec![],
                vec![],
            ),
            write(&TOTALS, vec![total("r", 1)], vec![], vec![]),
        ];
        tx.write(rows).await.unwrap();
        tx.commit().await.unwrap();
        assert_eq!(
            all(&pg, &ITEMS, Slot::Rebuild).await,
            [item("r", 1, Some("new"), None)]
        );
        let rebuilt = pg
            .checkpoint("gadgets", Slot::Rebuild)
            .await
            .unwrap()
            .unwrap();
        pg.build_indexes(&SCHEMA, &rebuilt.target()).await.unwrap();
        pg.build_indexes(&SCHEMA, &rebuilt.target()).await.unwrap();
        assert_eq!(
            indexes(&url, "gadget_totals_rebuild").await,
            [
                "gadget_totals_rebuild_count_idx",
                "gadget_totals_rebuild_pkey"
            ]
        );
        assert_eq!(
            pg.swap(&SCHEMA, &rebuild.target()).await.unwrap(),
            Swapped::Moved,
            "the rebuild copy moved since `rebuild` was read"
        );
        let before = pg.checkpoint("gadgets", Slot::Live).await.unwrap().unwrap();
        assert_eq!(
            pg.swap(&SCHEMA, &rebuilt.target()).await.unwrap(),
            Swapped::Yes
        );
        assert_eq!(
            all(&pg, &ITEMS, Slot::Live).await,
            [item("r", 1, Some("new"), None)]
        );
        assert_eq!(all(&pg, &TOTALS, Slot::Live).await, [total("r", 1)]);
        assert_eq!(
            indexes(&url, "gadget_items").await,
            ["gadget_items_open_idx", "gadget_items_pkey"]
        );
        assert_eq!(
            indexes(&url, "gadget_totals").await,
            ["gadget_totals_count_idx", "gadget_totals_pkey"]
        );
        assert!(indexes(&url, "gadget_items_rebuild").await.is_empty());
        assert!(
            pg.checkpoint("gadgets", Slot::Rebuild)
                .await
                .unwrap()
                .is_none()
        );
        let swapped = pg.checkpoint("gadgets", Slot::Live).await.unwrap().unwrap();
        assert_eq!((swapped.position, swapped.events), (Position(8), 8));
        assert_ne!(swapped.generation, before.generation);
        // A runner that loaded the live copy before the swap is turned away.
        assert!(
            pg.begin(&SCHEMA, &before.target(), Position(9), 1, "old")
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(pg.checkpoints().await.unwrap(), [swapped]);

        // A swap without indexes built ahead builds them; drop_rebuild removes a copy.
        let again = pg.create(&SCHEMA, Slot::Rebuild).await.unwrap();
        assert_eq!(
            pg.swap(&SCHEMA, &again.target()).await.unwrap(),
            Swapped::Yes
        );
        assert_eq!(
            indexes(&url, "gadget_items").await,
            ["gadget_items_open_idx", "gadget_items_pkey"]
        );
        assert!(all(&pg, &ITEMS, Slot::Live).await.is_empty());
        pg.create(&SCHEMA, Slot::Rebuild).await.unwrap();
        pg.drop_rebuild(&SCHEMA).await.unwrap();
        assert!(
            pg.checkpoint("gadgets", Slot::Rebuild)
                .await
                .unwrap()
                .is_none()
        );
        assert!(indexes(&url, "gadget_items_rebuild").await.is_empty());
        pg.drop_rebuild(&SCHEMA).await.unwrap();

        // A malformed spec is refused before any SQL is built from it.
        static BAD: Schema = Schema {
            name: "bad",
            version: 1,
            tables: &[TableSpec {
                name: "bad; DROP TABLE events",
                columns: &[Column::int("id")],
                key: 1,
                indexes: &[],
            }],
        };
        let err = pg.create(&BAD, Slot::Live).await.unwrap_err();
        assert!(matches!(err, StoreError::Backend { .. }), "{err}");

        // A table that is not the read model's is refused.
        static OTHER: TableSpec = TableSpec {
            name: "other",
            columns: &[Column::int("id")],
            key: 1,
            indexes: &[],
        };
        let mut snapshot = pg.snapshot(&SCHEMA).await.unwrap();
        assert!(snapshot.rows(&OTHER, None, 1).await.is_err());
    })
    .await;
}

#[tokio::test]
async fn one_runner_holds_a_read_models_lease() {
    with_store(|store, _| async move {
        let pg = store.projections();
        let mut lease = pg.lease("gadgets").await.unwrap().expect("free");
        assert!(lease.alive().await);
        assert!(pg.lease("gadgets").await.unwrap().is_none());
        let other = pg.lease("widgets").await.unwrap();
        assert!(
            other.is_some(),
            "leases of other read models are independent"
        );
        drop(lease);
        // The server notices the closed session shortly.
        let mut retaken = None;
        for _ in 0..100 {
            retaken = pg.lease("gadgets").await.unwrap();
            if retaken.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(retaken.is_some(), "a dropped lease is released");
    })
    .await;
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

async fn append(store: &PgStore, name: &str, ty: &str) -> Position {
    store
        .append(
            stream(name),
            ExpectedSeq::Any,
            vec![NewEvent::new(ty, serde_json::json!({"n": ty}))],
        )
        .await
        .unwrap()
        .position
}

#[tokio::test]
async fn the_log_is_read_by_category_in_gap_free_order() {
    with_store(|store, _| async move {
        let a = LogFilter::categories(["a"]);
        let all = LogFilter::all();
        let p1 = append(&store, "a-1", "A1").await;
        let p2 = append(&store, "b-1", "B1").await;
        let p3 = append(&store, "a-1", "A2").await;
        let p4 = append(&store, "b-1", "B2").await;
        let p5 = append(&store, "ab-1", "AB").await;

        let mark = store.log_mark().await.unwrap();
        let page = store.read_page(Position::START, &a, 10).await.unwrap();
        assert!(page.horizon >= mark);
        let got: Vec<(Position, &str, u64, &str)> = page
            .events
            .iter()
            .map(|e| {
                (
                    e.position,
                    e.stream.as_str(),
                    e.seq.0,
                    e.event_type.as_str(),
                )
            })
            .collect();
        assert_eq!(got, [(p1, "a-1", 1, "A1"), (p3, "a-1", 2, "A2")]);
        assert_eq!(page.events[0].data, r#"{"n": "A1"}"#);
        let positions = |page: ledger_core::LogPage| -> Vec<Position> {
            page.events.iter().map(|e| e.position).collect()
        };
        assert_eq!(positions(store.read_page(p1, &a, 10).await.unwrap()), [p3]);
        assert_eq!(
            positions(store.read_page(Position::START, &all, 10).await.unwrap()),
            [p1, p2, p3, p4, p5]
        );
        assert_eq!(
            positions(store.read_page(p2, &all, 2).await.unwrap()),
            [p3, p4]
        );
        let both = LogFilter::categories(["b", "ab"]);
        assert_eq!(
            positions(store.read_page(Position::START, &both, 10).await.unwrap()),
            [p2, p4, p5]
        );
        let odd = LogFilter::categories(["a-1"]);
        assert!(
            store
                .read_page(Position::START, &odd, 10)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        assert!(matches!(
            store.read_page(Position(999), &a, 10).await,
            Err(StoreError::UnknownPosition(999))
        ));

        assert!(!store.covers(Position::START, p1, &a).await.unwrap());
        assert!(store.covers(p1, p1, &a).await.unwrap());
        assert!(store.covers(p1, p2, &a).await.unwrap(), "b-1 is not read");
        assert!(
            !store.covers(p1, p4, &a).await.unwrap(),
            "a-1 #2 lies between"
        );
        assert!(store.covers(p3, p4, &a).await.unwrap());
        assert!(!store.covers(p3, p4, &all).await.unwrap());
        assert!(store.covers(p4, p2, &all).await.unwrap());
        assert!(
            store
                .covers(Position::START, p2, &LogFilter::categories(["c"]))
                .await
                .unwrap()
        );
        assert!(!store.covers(p3, Position::START, &a).await.unwrap());

        // `read_all` shares the page query: the same order and category semantics.
        let read_all = |query: ReadAll| {
            let log = store.read_all(query);
            async move {
                let all: Vec<Envelope> = log.try_collect().await.unwrap();
                all.into_iter().map(|e| e.position).collect::<Vec<_>>()
            }
        };
        assert_eq!(read_all(ReadAll::from_start()).await, [p1, p2, p3, p4, p5]);
        assert_eq!(
            read_all(ReadAll::from_start().category("a")).await,
            [p1, p3]
        );
        assert_eq!(read_all(ReadAll::after(p1).category("b")).await, [p2, p4]);
        assert!(
            read_all(ReadAll::from_start().category("a-1"))
                .await
                .is_empty()
        );
        assert_eq!(read_all(ReadAll::from_start().event_type("B2")).await, [p4]);
        assert!(!store.covers(p1, Position(999), &a).await.unwrap());
        assert!(!store.covers(Position(999), p1, &a).await.unwrap());

        assert_eq!(store.count_after(Position::START, &a).await.unwrap(), 2);
        assert_eq!(store.count_after(p1, &a).await.unwrap(), 1);
        assert_eq!(store.count_after(Position::START, &all).await.unwrap(), 5);
        assert_eq!(store.count_after(p5, &all).await.unwrap(), 0);
        assert_eq!(store.count_after(p2, &both).await.unwrap(), 2);
        assert!(matches!(
            store.count_after(Position(999), &all).await,
            Err(StoreError::UnknownPosition(999))
        ));

        // An event committed after a transaction that is still open waits for it: pages stop
        // before it, and no checkpoint covers it yet.
        let mut open = store.begin().await.unwrap();
        open.append(
            stream("a-2"),
            ExpectedSeq::NoStream,
            vec![NewEvent::new("Slow", serde_json::json!({}))],
        )
        .await
        .unwrap();
        let p7 = append(&store, "b-2", "Late").await;
        assert!(
            store
                .read_page(p5, &all, 10)
                .await
                .unwrap()
                .events
                .is_empty()
        );
        assert!(!store.covers(p5, p7, &a).await.unwrap());
        assert_eq!(store.count_after(p5, &all).await.unwrap(), 1);
        let mark = store.log_mark().await.unwrap();
        assert!(store.read_page(p5, &all, 10).await.unwrap().horizon < mark);
        open.commit().await.unwrap();
        let page = store.read_page(p5, &all, 10).await.unwrap();
        assert!(page.horizon >= mark);
        let got: Vec<&str> = page.events.iter().map(|e| e.stream.as_str()).collect();
        assert_eq!(
            got,
            ["a-2", "b-2"],
            "the slow transaction's event comes first"
        );
        assert!(!store.covers(p5, p7, &a).await.unwrap(), "a-2 lies between");
        let slow = page.events[0].position;
        assert!(store.covers(slow, p7, &a).await.unwrap());
        assert!(slow < p7);
    })
    .await;
}
