//! Running one projection case on one backend: what the `projection_test!` macro's generated
//! tests call. A case gets an [`Env`]: a fresh store, its log reader and its read models'
//! tables, and the database itself where there is one.

use std::future::Future;
use std::sync::Arc;

use ledger_core::LogReader;
use ledger_memory::{MemoryProjections, MemoryStore};
use ledger_postgres::PgStore;
use ledger_projector::{ProjectionStore, Projector, ProjectorOptions};
use ledger_read_models::Logged;
use ledger_sqlite::SqliteStore;

use crate::backend::{Db, Kind, postgres_db, sqlite_db};
use crate::{Store, options};

/// A store, its log and its read models' tables.
#[derive(Clone)]
pub struct Env {
    /// The event store.
    pub store: Store,
    /// The same store's log, for the projector.
    pub log: Arc<dyn LogReader>,
    /// The read models' tables.
    pub projections: Arc<dyn ProjectionStore>,
    /// The database, for the cases that need it (`None` on the memory backend).
    pub db: Option<Db>,
}

impl Env {
    /// The store as an event store.
    pub fn events(&self) -> Arc<dyn ledger_core::EventStore> {
        self.store.clone()
    }

    /// A projector of every read model over this store, applying `batch_size` events per
    /// transaction and reading pages that do not line up with the batches.
    pub fn projector(&self, batch_size: usize) -> Projector<Logged> {
        Projector::new(
            self.log.clone(),
            self.projections.clone(),
            ledger_read_models::catalog(),
        )
        .with_options(ProjectorOptions {
            batch_size,
            rebuild_batch_size: batch_size,
            read_page: batch_size + batch_size / 2 + 1,
            ..ProjectorOptions::default()
        })
    }
}

/// Opens a store and its read models' tables on a fresh database (migrating it).
pub async fn open(db: &Db) -> Env {
    db.migrate()
        .await
        .unwrap_or_else(|e| panic!("migrating {db}: {e}"));
    let (store, projections): (Store, Arc<dyn ProjectionStore>) = match db.kind {
        Kind::Sqlite => {
            let s = SqliteStore::open(&db.url, options()).await.unwrap();
            let p = Arc::new(s.projections());
            (Arc::new(s), p)
        }
        Kind::Postgres => {
            let s = PgStore::connect(&db.url, options()).await.unwrap();
            let p = Arc::new(s.projections());
            (Arc::new(s), p)
        }
    };
    Env {
        log: store.clone(),
        store,
        projections,
        db: Some(db.clone()),
    }
}

/// Runs `body` on a fresh memory store and memory tables.
pub async fn memory<F, Fut>(body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    let store: Store = Arc::new(MemoryStore::with_options(options()));
    body(Env {
        log: store.clone(),
        store,
        projections: Arc::new(MemoryProjections::new()),
        db: None,
    })
    .await;
}

/// Runs `body` on a fresh SQLite file.
pub async fn sqlite<F, Fut>(body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    sqlite_db(|db| async move { body(open(&db).await).await }).await;
}

/// Runs `body` on a fresh PostgreSQL database.
pub async fn postgres<F, Fut>(body: F)
where
    F: FnOnce(Env) -> Fut,
    Fut: Future<Output = ()>,
{
    postgres_db(|db| async move { body(open(&db).await).await }).await;
}
