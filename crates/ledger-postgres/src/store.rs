//! The PostgreSQL store: connection pool, schema check and the store traits.

use std::sync::{Arc, OnceLock};

use ledger_core::{
    AppendResult, AppendTx, Baseline, BaselineLookup, BenchRow, BoxFuture, ChainLog, ChainScope,
    ChainStream, ChainedEvent, Committer, EventStore, EventStream, ExpectedSeq, GroupWriter,
    HeadCache, NewEvent, Position, ReadAll, Seq, StoreError, StoreOptions, StreamAppend,
    StreamHead, StreamName, TransactionalStore, validate_batch,
};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::error::from_sqlx;
use crate::group::PgGroups;
use crate::tx::{PgTx, to_completion};
use crate::wakeup::Notifier;
use crate::{append, baseline, chain, health, read, schema};

/// An event store in a PostgreSQL database; clones share one connection pool.
#[derive(Clone)]
pub struct PgStore {
    /// The connection pool.
    pub(crate) pool: PgPool,
    /// Limits, page size, pool size and settle timeout.
    options: Arc<StoreOptions>,
    /// Tells other processes, after the commit, that appends happened (see `crate::wakeup`).
    wakeup: Arc<Notifier>,
    /// Where recently written streams end, so appends chain without reading the head.
    pub(crate) heads: Arc<HeadCache>,
    /// Writes appends, alone or in groups.
    groups: Arc<PgGroups>,
    /// Combines concurrent appends into groups; started by the first append.
    committer: Arc<OnceLock<Committer<StreamAppend>>>,
}

impl PgStore {
    /// Connects, checks the schema version (SchemaMismatch{found, needed} when behind or ahead; an empty database is found = 0).
    pub async fn connect(url: &str, options: StoreOptions) -> Result<PgStore, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            // Also bounds each connection attempt, so a server that refuses or a host that
            // does not answer makes a request fail within this time, not hang.
            .acquire_timeout(options.acquire_timeout)
            // No ping before each use: an append stays one round trip. A connection that
            // died while idle fails its next statement with `Unavailable` and is dropped.
            .test_before_acquire(false)
            .connect(url)
            .await
            .map_err(from_sqlx)?;
        let mut conn = pool.acquire().await.map_err(from_sqlx)?;
        schema::state(&mut conn).await?.check()?;
        drop(conn);
        let wakeup = Arc::new(Notifier::new(pool.clone()));
        let heads = Arc::new(HeadCache::new(options.head_cache));
        let groups = Arc::new(PgGroups {
            pool: pool.clone(),
            heads: heads.clone(),
            limits: options.limits,
            wakeup: wakeup.clone(),
        });
        Ok(PgStore {
            wakeup,
            heads,
            groups,
            committer: Arc::new(OnceLock::new()),
            pool,
            options: Arc::new(options),
        })
    }

    /// Waits (briefly, at most a second) until other processes have been notified of the
    /// appends this store made so far: what a process calls before it exits, since the
    /// notifications are sent in the background after each commit.
    pub async fn flush_wakeups(&self) {
        self.wakeup.flush().await;
    }

    /// Applies pending migrations; returns (version before, version after).
    pub async fn migrate(url: &str) -> Result<(i64, i64), StoreError> {
        schema::migrate(url).await
    }

    /// The schema version this code needs (the highest migration number).
    pub fn required_schema_version() -> i64 {
        schema::required_version()
    }

    /// The committer appends queue for, started on first use on the caller's runtime.
    fn committer(&self) -> &Committer<StreamAppend> {
        self.committer.get_or_init(|| {
            let (committer, lanes) = Committer::start(self.groups.clone(), self.options.group);
            for lane in lanes {
                tokio::spawn(lane);
            }
            committer
        })
    }

    /// Events fetched per page by the read streams.
    fn page_size(&self) -> usize {
        self.options.read_page_size.max(1)
    }
}

impl EventStore for PgStore {
    fn append(
        &self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        // Queued appends are written by the committer's task, to their end even if their
        // caller is dropped (see `crate::tx`), and other processes hear of them after the
        // commit either way.
        let checked = validate_batch(&events, &self.options.limits);
        if let Err(invalid) = checked {
            return Box::pin(async move { Err(invalid) });
        }
        let append = StreamAppend {
            stream,
            expected,
            events,
        };
        Box::pin(async move {
            let committer = self.committer();
            // Alone (nothing else queued or being written) or ungrouped: written at once.
            let alone = committer.alone();
            if alone.is_some() || self.options.group.max_appends <= 1 {
                let groups = self.groups.clone();
                return to_completion(async move {
                    let _alone = alone;
                    groups.write_one(append).await
                })
                .await?;
            }
            let stream = append.stream.clone();
            committer.append(&stream, append).await
        })
    }

    fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> BoxFuture<'_, Result<Vec<AppendResult>, StoreError>> {
        let (pool, limits) = (self.pool.clone(), self.options.limits);
        let (wakeup, heads) = (self.wakeup.clone(), self.heads.clone());
        Box::pin(async move {
            to_completion(async move {
                let result = append::append_multi(&pool, &heads, &limits, appends).await;
                if matches!(&result, Ok(rs) if rs.iter().any(|r| !r.replayed)) {
                    wakeup.appended();
                }
                result
            })
            .await?
        })
    }

    fn stream_seq(&self, stream: StreamName) -> BoxFuture<'_, Result<Seq, StoreError>> {
        Box::pin(async move {
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            append::stream_seq(&mut conn, &stream).await
        })
    }

    fn read_stream(&self, stream: StreamName, from: Seq) -> EventStream {
        read::read_stream(self.pool.clone(), self.page_size(), stream, from)
    }

    fn read_all(&self, query: ReadAll) -> EventStream {
        read::read_all(
            self.pool.clone(),
            self.page_size(),
            self.options.settle_timeout,
            query,
        )
    }

    fn write_fault(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(health::write_fault(&self.pool))
    }
}

impl TransactionalStore for PgStore {
    fn begin(&self) -> BoxFuture<'_, Result<Box<dyn AppendTx>, StoreError>> {
        Box::pin(async move {
            let tx = crate::tx::begin(&self.pool, None).await?;
            let tx = PgTx::new(
                tx,
                self.pool.clone(),
                self.options.limits,
                self.wakeup.clone(),
            );
            Ok(Box::new(tx) as Box<dyn AppendTx>)
        })
    }
}

impl ChainLog for PgStore {
    fn chains(&self, scope: ChainScope) -> ChainStream {
        chain::chains(self.pool.clone(), scope)
    }

    fn chained_log(&self, after: Position) -> ChainStream {
        chain::log(self.pool.clone(), after)
    }

    fn stream_head(
        &self,
        stream: StreamName,
    ) -> BoxFuture<'_, Result<Option<StreamHead>, StoreError>> {
        Box::pin(chain::head(&self.pool, stream))
    }

    fn chained_at(
        &self,
        stream: StreamName,
        seq: Seq,
    ) -> BoxFuture<'_, Result<Option<ChainedEvent>, StoreError>> {
        Box::pin(chain::at(&self.pool, stream, seq))
    }

    fn import(&self, events: ChainStream) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(async move {
            let loaded = chain::import(&self.pool, events).await?;
            if loaded > 0 {
                self.wakeup.appended();
            }
            Ok(loaded)
        })
    }
}

impl Baseline for PgStore {
    fn baseline_chain_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(chain::raw_scan(&self.pool))
    }

    fn baseline_reset(&self) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(baseline::reset(&self.pool))
    }

    fn baseline_insert(&self, rows: Vec<BenchRow>) -> BoxFuture<'_, Result<(), StoreError>> {
        Box::pin(baseline::insert(&self.pool, rows))
    }

    fn baseline_scan(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(baseline::scan(&self.pool))
    }

    fn log_len(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
        Box::pin(baseline::log_len(&self.pool))
    }

    fn baseline_lookup<'a>(
        &'a self,
        lookup: &'a BaselineLookup,
    ) -> BoxFuture<'a, Result<u64, StoreError>> {
        Box::pin(baseline::lookup(&self.pool, lookup))
    }
}
