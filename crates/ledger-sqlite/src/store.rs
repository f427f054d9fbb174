//! The store: connection settings, the writer and reader pools, opening and migrating.

use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use futures::StreamExt;
use ledger_core::{
    AppendResult, AppendTx, BoxFuture, ChainHead, ChainLog, ChainScope, ChainStream, ChainedEvent,
    Committer, EventStore, EventStream, ExpectedSeq, GroupLimits, GroupWriter, HeadCache, NewEvent,
    Position, ReadAll, Seq, StoreError, StoreOptions, StreamAppend, StreamHead, StreamName,
    TransactionalStore, validate_appends, validate_batch,
};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::append::Batch;
use crate::checkpoint::Checkpointer;
use crate::error::{fault_of, store_err};
use crate::group::{Prepared, SqliteGroups};
use crate::health::{Fault, WriteHealth, outside_transaction};
use crate::schema;
use crate::tx::SqliteTx;
use crate::wakeup::Watcher;
use crate::{append, chain, read};

/// How long a statement waits for another process's write lock before it reports `Unavailable`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// WAL pages after which a commit checkpoints the WAL into the database file and restarts it.
/// The task of `crate::checkpoint` has copied nearly all of it by then, so the commit holding
/// the writer has little left to do; without the task, each such checkpoint copies it all. An
/// append writes three pages (the row and two indexes), so SQLite's default of 1000 pages would
/// make checkpoints a large share of small appends.
const WAL_AUTOCHECKPOINT_PAGES: u32 = 10_000;

/// Size the WAL file is truncated back to after a checkpoint resets it.
const JOURNAL_SIZE_LIMIT_BYTES: u64 = 64 * 1024 * 1024;

/// How long a writer waits for the writer connection (held by other writers and open
/// transactions of this process).
const WRITER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a reader waits for a reader connection.
const READER_ACQUIRE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long opening a database keeps retrying while the file is locked by another opener.
const OPEN_RETRY_FOR: Duration = Duration::from_secs(10);

/// SQLite's largest `max_page_count`: no limit below the file format's own.
const NO_PAGE_LIMIT: u32 = 0xffff_fffe;

/// An event store in one SQLite file; clones share the same connections.
#[derive(Clone)]
pub struct SqliteStore {
    pub(crate) inner: Arc<Inner>,
}

/// The pools and settings shared by clones, streams and transactions.
pub(crate) struct Inner {
    /// The single writer connection: every write goes through it, so in-process writers queue
    /// here instead of spinning in SQLite's busy handler.
    pub(crate) writer: SqlitePool,
    /// Connections for reads.
    pub(crate) reader: SqlitePool,
    /// Limits and page size.
    pub(crate) options: StoreOptions,
    /// Whether writes succeed; read by the writer pool's hooks too.
    pub(crate) health: Arc<WriteHealth>,
    /// Wakes projection runners when another connection appends (see `crate::wakeup`).
    pub(crate) wakeups: Watcher,
    /// Where recently written streams end, so appends chain without reading the head.
    pub(crate) heads: Arc<HeadCache>,
    /// Writes appends, alone or in groups.
    groups: Arc<SqliteGroups>,
    /// Combines concurrent appends into one transaction; started by the first append.
    committer: OnceLock<Committer<Prepared>>,
    /// Checkpoints the WAL off the writers' path while the store lives (see `crate::checkpoint`).
    _checkpointer: Checkpointer,
}

impl Inner {
    /// The committer appends queue for, started on first use on the caller's runtime. It has
    /// one lane that writes one group at a time: there is one writer connection.
    fn committer(&self) -> &Committer<Prepared> {
        self.committer.get_or_init(|| {
            let limits = GroupLimits {
                lanes: 1,
                in_flight: 1,
                ..self.options.group
            };
            let (committer, lanes) = Committer::start(self.groups.clone(), limits);
            for lane in lanes {
                tokio::spawn(lane);
            }
            committer
        })
    }
}

impl SqliteStore {
    /// Opens the database at `url` (`sqlite://path`, `sqlite:path`, or a plain file path): a missing file is
    /// created and migrated; an existing database with no ledger tables (schema version 0) is migrated too;
    /// otherwise the schema version is checked (SchemaMismatch{found, needed} when behind or ahead).
    pub async fn open(url: &str, options: StoreOptions) -> Result<SqliteStore, StoreError> {
        let connect = connect_options(url)?;
        retry_while_locked(|| Self::open_once(connect.clone(), options.clone())).await
    }

    /// One attempt of [`Self::open`]; a failure says whether another attempt may succeed.
    async fn open_once(
        connect: SqliteConnectOptions,
        options: StoreOptions,
    ) -> Result<SqliteStore, (StoreError, Retry)> {
        let health = Arc::new(WriteHealth::default());
        let writer = writer_pool(connect.clone(), &health)
            .await
            .map_err(Retry::of_connect)?;
        {
            let mut conn = writer.acquire().await.map_err(Retry::of_connect)?;
            let state = schema::schema_state(&mut conn)
                .await
                .map_err(Retry::of_store)?;
            if state.found == 0 && !state.ahead && state.dirty.is_none() {
                schema::migrate(&mut conn).await.map_err(Retry::of_store)?;
            } else {
                state.check().map_err(Retry::of_store)?;
            }
        }
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(READER_ACQUIRE_TIMEOUT)
            .test_before_acquire(false)
            .after_release(outside_transaction)
            .connect_with(connect.clone())
            .await
            .map_err(Retry::of_connect)?;
        let heads = Arc::new(HeadCache::new(options.head_cache));
        let groups = Arc::new(SqliteGroups {
            writer: writer.clone(),
            heads: heads.clone(),
            health: health.clone(),
            limits: options.limits,
        });
        Ok(SqliteStore {
            inner: Arc::new(Inner {
                writer,
                reader,
                health,
                _checkpointer: Checkpointer::start(connect.clone()),
                wakeups: Watcher::new(connect),
                heads,
                groups,
                committer: OnceLock::new(),
                options,
            }),
        })
    }

    /// Applies pending migrations; returns (version before, version after).
    pub async fn migrate(url: &str) -> Result<(i64, i64), StoreError> {
        let connect = connect_options(url)?;
        retry_while_locked(|| Self::migrate_once(connect.clone())).await
    }

    /// One attempt of [`Self::migrate`]; a failure says whether another attempt may succeed.
    async fn migrate_once(
        connect: SqliteConnectOptions,
    ) -> Result<(i64, i64), (StoreError, Retry)> {
        let health = Arc::new(WriteHealth::default());
        let writer = writer_pool(connect, &health)
            .await
            .map_err(Retry::of_connect)?;
        let result = async {
            let mut conn = writer.acquire().await.map_err(Retry::of_connect)?;
            schema::migrate(&mut conn).await.map_err(Retry::of_store)
        }
        .await;
        writer.close().await;
        result
    }

    /// The schema version this code needs (the highest migration number).
    pub fn required_schema_version() -> i64 {
        schema::required_version()
    }

    /// Caps the database file at `pages` pages for this process's writes (SQLite's
    /// `max_page_count`, kept when the writer reconnects): a write that needs more fails as on
    /// a full disk. `None` lifts the cap. Lets tests fill the disk without filling one.
    pub async fn set_page_limit(&self, pages: Option<u32>) -> Result<(), StoreError> {
        let pages = pages.unwrap_or(NO_PAGE_LIMIT);
        let writer = &self.inner.writer;
        let options = (*writer.connect_options())
            .clone()
            .pragma("max_page_count", pages.to_string());
        writer.set_connect_options(options);
        let mut conn = writer.acquire().await.map_err(store_err)?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .execute(&mut *conn)
        .await
        .map_err(store_err)?;
        Ok(())
    }
}

/// Connection settings for `url`: WAL, `synchronous = NORMAL`, a busy timeout, foreign keys,
/// and the file created when missing.
fn connect_options(url: &str) -> Result<SqliteConnectOptions, StoreError> {
    let base = if url.starts_with("sqlite:") {
        SqliteConnectOptions::from_str(url)
            .map_err(|e| StoreError::InvalidInput(format!("invalid SQLite URL {url:?}: {e}")))?
    } else {
        SqliteConnectOptions::new().filename(url)
    };
    Ok(base
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(BUSY_TIMEOUT)
        .foreign_keys(true)
        .pragma("wal_autocheckpoint", WAL_AUTOCHECKPOINT_PAGES.to_string())
        .pragma("journal_size_limit", JOURNAL_SIZE_LIMIT_BYTES.to_string()))
}

/// The pool of exactly one connection that every write goes through, kept open so its
/// prepared statements stay cached; it is replaced by a fresh one after a failed write (see
/// [`WriteHealth`]) and never handed out inside a transaction.
async fn writer_pool(
    connect: SqliteConnectOptions,
    health: &Arc<WriteHealth>,
) -> Result<SqlitePool, sqlx::Error> {
    let health = health.clone();
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .acquire_timeout(WRITER_ACQUIRE_TIMEOUT)
        .idle_timeout(None)
        .max_lifetime(None)
        .test_before_acquire(false)
        .before_acquire(move |_, _| {
            let keep = health.keep();
            Box::pin(async move { Ok(keep) })
        })
        .after_release(outside_transaction)
        .connect_with(connect)
        .await
}

/// Runs `attempt` until it succeeds or fails for good: several processes creating one new
/// file at once can find it locked while another switches it to WAL or migrates it, and SQLite
/// answers that without waiting in its busy handler, so such a failure is retried for a while.
async fn retry_while_locked<T, F, Fut>(mut attempt: F) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (StoreError, Retry)>>,
{
    let deadline = std::time::Instant::now() + OPEN_RETRY_FOR;
    let mut delay = Duration::from_millis(10);
    loop {
        match attempt().await {
            Err((_, Retry::Yes)) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_millis(200));
            }
            result => return result.map_err(|(error, _)| error),
        }
    }
}

/// Whether opening again may succeed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Retry {
    /// The file was locked (by another process creating, switching to WAL or migrating it).
    Yes,
    /// Anything else, a read-only file or directory included.
    No,
}

impl Retry {
    /// A failure to connect: retried while the file is locked.
    fn of_connect(error: sqlx::Error) -> (StoreError, Retry) {
        let retry = if fault_of(&error) == Fault::Locked {
            Retry::Yes
        } else {
            Retry::No
        };
        (store_err(error), retry)
    }

    /// A failure of the schema check or migration: retried while the database is unavailable.
    fn of_store(error: StoreError) -> (StoreError, Retry) {
        let retry = if matches!(error, StoreError::Unavailable { .. }) {
            Retry::Yes
        } else {
            Retry::No
        };
        (error, retry)
    }
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            validate_batch(&events, &self.inner.options.limits)?;
            let batch = Batch::encode(stream, expected, events)?;
            // Chained before it queues, so the hashing is not done by the committer.
            let chained = append::prepare(&self.inner.heads, &batch);
            let stream = batch.stream.clone();
            let request = Prepared { batch, chained };
            let committer = self.inner.committer();
            // Alone (nothing else queued or being written) or ungrouped: written at once.
            let alone = committer.alone();
            if alone.is_some() || self.inner.options.group.max_appends <= 1 {
                return self.inner.groups.write_one(request).await;
            }
            committer.append(&stream, request).await
        })
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        Box::pin(async move {
            let limits = &self.inner.options.limits;
            validate_appends(&appends, limits)?;
            let batches = appends
                .iter()
                .map(|a| Batch::encode(a.stream.clone(), a.expected, a.events.clone()))
                .collect::<Result<Vec<_>, _>>()?;
            let written = async {
                let mut tx = self
                    .inner
                    .writer
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(store_err)?;
                let mut results = Vec::with_capacity(appends.len());
                for batch in &batches {
                    match append::append_in_tx(&mut tx, batch, limits).await {
                        Ok(written) => results.push(written),
                        Err(error) => {
                            // The answer is already known; a failed rollback changes nothing in
                            // it (and the connection does not go back into service inside it).
                            let _ = tx.rollback().await;
                            return Err(error);
                        }
                    }
                }
                tx.commit().await.map_err(store_err)?;
                Ok(results
                    .into_iter()
                    .map(|(result, hash)| {
                        if let Some(hash) = hash {
                            let head = ChainHead {
                                seq: result.last_seq,
                                hash,
                            };
                            self.inner.heads.put(result.stream.as_str(), head);
                        }
                        result
                    })
                    .collect())
            };
            self.inner.health.record(written.await)
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(async move { read::stream_seq(&self.inner.reader, &stream).await })
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        read::read_stream(self.inner.clone(), stream, from).boxed()
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        read::read_all(self.inner.clone(), query).boxed()
    }

    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async move {
            let fault = self.inner.health.fault(&self.inner.writer).await?;
            Some(fault.reason().to_string())
        })
    }
}

impl ChainLog for SqliteStore {
    fn chains(&self, scope: ChainScope) -> ChainStream {
        chain::chains(self.inner.clone(), scope)
    }

    fn chained_log(&self, after: Position) -> ChainStream {
        chain::log(self.inner.clone(), after)
    }

    fn stream_head(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StreamHead>, StoreError>> {
        Box::pin(chain::head(&self.inner.reader, stream))
    }

    fn chained_at(
        &self,
        stream: StreamName,
        seq: Seq,
    ) -> BoxFuture<'_, Result<Option<ChainedEvent>, StoreError>> {
        Box::pin(chain::at(&self.inner.reader, stream, seq))
    }

    fn import(&self, events: ChainStream) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let loaded = async {
                let mut conn = self.inner.writer.acquire().await.map_err(store_err)?;
                chain::import(&mut conn, events).await
            };
            self.inner.health.record(loaded.await)
        })
    }
}

impl TransactionalStore for SqliteStore {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AppendTx>, StoreError>> {
        Box::pin(async move {
            let tx = self
                .inner
                .writer
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(|e| self.inner.health.failed(store_err(e)))?;
            Ok(Box::new(SqliteTx::new(tx, self.inner.clone())) as Box<dyn AppendTx>)
        })
    }
}
