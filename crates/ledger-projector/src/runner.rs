//! The runner: reads the global log from a projection's checkpoint in batches and applies each
//! batch with its new checkpoint in one transaction; catches up, then follows the log live.
//!
//! A background task reads and decodes the log (pages of up to [`ProjectorOptions::read_page`]
//! events, one page ahead) while each copy's applier task writes the batches queued for it
//! (see [`crate::appliers`]), so reading, forming batches and writing overlap, and copies
//! filled together do not wait for each other. Batches are as large as what has been read and
//! not queued yet, up to [`ProjectorOptions::batch_size`]: one event when the log is quiet
//! (low latency), full batches when catching up (throughput).

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{LogFilter, LogReader, Position, RawEvent, StoreError};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

use crate::appliers::{AbortOnDrop, Appliers, Copy};
use crate::error::ProjectionError;
use crate::fold::Batch;
use crate::model::{Catalog, Decode, ReadModel};
use crate::signal::Signal;
use crate::spec::Slot;
use crate::store::{Checkpoint, Lease, ProjectionStore, Target};

/// Longest wait for more events to fill a batch while the reader is in the middle of the log.
const FILL_WAIT: Duration = Duration::from_millis(20);

/// Lag (in events) from which a live projection reports `catching_up` rather than `live`.
pub const CATCHING_UP_LAG: u64 = 1000;

/// Tunables of the runner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProjectorOptions {
    /// Most events applied to a live copy in one transaction.
    pub batch_size: usize,
    /// Most events applied to a rebuild copy in one transaction (rebuilds and verifications
    /// replay the whole log: larger transactions, fewer of them).
    pub rebuild_batch_size: usize,
    /// Most events read from the log per query; a page is split into batches. Pages start at
    /// a batch and grow to this while the reader keeps finding full ones, so that a replay
    /// reads with few queries (each one restarts the database's scan while the reader waits).
    pub read_page: usize,
    /// Who applies: recorded in the checkpoint of each batch (default `pid-<pid>`).
    pub owner: String,
    /// How often a standby runner tries to take a projection's lease.
    pub lease_retry: Duration,
    /// How often a running runner checks that it still holds its lease.
    pub lease_check: Duration,
    /// How long a runner waits after a failure before it starts again; the wait doubles with
    /// each failure in a row, up to `max_retry_delay`.
    pub retry_delay: Duration,
    /// Longest wait of a runner between two failed attempts.
    pub max_retry_delay: Duration,
    /// How often a caught-up runner looks for new events when nothing woke it (`None`: the
    /// store's [`ProjectionStore::poll_interval`]).
    pub poll_interval: Option<Duration>,
}

impl Default for ProjectorOptions {
    fn default() -> Self {
        Self {
            batch_size: 2000,
            rebuild_batch_size: 10_000,
            read_page: 30_000,
            owner: format!("pid-{}", std::process::id()),
            lease_retry: Duration::from_millis(500),
            lease_check: Duration::from_secs(2),
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(5),
            poll_interval: None,
        }
    }
}

/// How far a projection's live copy is, as `GET /v1/projections` shows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Applied up to (nearly) the end of the log.
    Live,
    /// A rebuild is filling a fresh copy (the live copy keeps serving).
    Rebuilding,
    /// The live copy is more than [`CATCHING_UP_LAG`] events behind, or was never created.
    CatchingUp,
    /// This process's runner failed to apply the events after the checkpoint (`error` says
    /// why) and retries with backoff.
    Failing,
}

/// A projection's status.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ProjectionStatus {
    /// The read model.
    pub name: &'static str,
    /// The version of its live tables (the code's version when there are none yet).
    pub version: u32,
    /// The position of the last event applied to the live tables (0: none).
    pub checkpoint: u64,
    /// Events of the log after the checkpoint.
    pub lag: u64,
    /// `live`, `rebuilding`, `catching_up` or `failing`.
    pub state: State,
    /// The code of the runner's last failure while it is `failing` (e.g. `unavailable`).
    pub error: Option<&'static str>,
    /// Events applied to the live tables.
    pub events: u64,
    /// The runner that applied the last batch.
    pub owner: Option<String>,
    /// The rebuild in progress, if any.
    pub rebuild: Option<RebuildStatus>,
}

/// A rebuild in progress (or that stopped; it resumes from its checkpoint).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebuildStatus {
    /// The version being built.
    pub version: u32,
    /// The position of the last event applied to the rebuild copy.
    pub checkpoint: u64,
    /// Events applied to the rebuild copy.
    pub done: u64,
    /// Events in the log (done plus what is left).
    pub total: u64,
    /// Whether this process is running it right now.
    pub running: bool,
    /// Why it stopped, when it failed in this process.
    pub error: Option<String>,
}

/// Rebuilds running (true) or failed (with why) in this process, by projection.
pub(crate) type Rebuilds = BTreeMap<&'static str, (bool, Option<String>)>;

/// A live runner's failures in a row: the last one's code and how many.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Failures {
    code: &'static str,
    count: u32,
}

/// The wait before the next attempt after `count` failures in a row: `first`, doubling, at
/// most `most`.
fn backoff(first: Duration, most: Duration, count: u32) -> Duration {
    let doublings = count.saturating_sub(1).min(16);
    first.saturating_mul(1 << doublings).min(most.max(first))
}

/// Runs, rebuilds and reports on read models over one event log and one projection store.
pub struct Projector<E> {
    pub(crate) log: Arc<dyn LogReader>,
    pub(crate) store: Arc<dyn ProjectionStore>,
    pub(crate) catalog: Catalog<E>,
    pub(crate) options: ProjectorOptions,
    signal: Option<Signal>,
    applied: Arc<watch::Sender<u64>>,
    pub(crate) rebuilds: Arc<Mutex<Rebuilds>>,
    failures: Arc<Mutex<BTreeMap<&'static str, Failures>>>,
}

impl<E> Clone for Projector<E> {
    fn clone(&self) -> Self {
        Self {
            log: self.log.clone(),
            store: self.store.clone(),
            catalog: self.catalog.clone(),
            options: self.options.clone(),
            signal: self.signal.clone(),
            applied: self.applied.clone(),
            rebuilds: self.rebuilds.clone(),
            failures: self.failures.clone(),
        }
    }
}

/// Where [`Projector::drive`] stops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Until {
    /// When the log has been read to its end once.
    CaughtUp,
    /// Right after applying the event at this position.
    Position(Position),
    /// Never: follow the log live until stopped.
    Stopped,
}

/// Why [`Projector::drive`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    /// The end of the log was reached.
    CaughtUp,
    /// The position was reached.
    Reached,
    /// The stop future completed.
    Stopped,
}

/// What the log reader sends the decoder (`P`: raw events), and the decoder the applier
/// (`P`: decoded events).
enum Item<P> {
    Events(P),
    CaughtUp,
    Failed(StoreError),
}

/// A page of decoded events.
type Decoded<E> = Vec<(Position, Option<E>)>;

/// What wakes a caught-up reader.
struct Wake {
    signal: Option<watch::Receiver<u64>>,
    wakeups: BoxStream<'static, ()>,
    poll: Duration,
}

impl Wake {
    async fn wait(&mut self) {
        let signal = async {
            match self.signal.as_mut() {
                Some(rx) => {
                    if rx.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
                None => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            () = signal => {}
            Some(()) = self.wakeups.next() => {}
            () = tokio::time::sleep(self.poll) => {}
        }
    }
}

/// How long a reader that must reach the end of the log waits for transactions that were in
/// flight when it started (then it reports the end it has, and a later read resumes).
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest pause between two reads while waiting for in-flight transactions.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// Where a log reader reads.
struct Source {
    log: Arc<dyn LogReader>,
    filter: LogFilter,
}

/// Decodes the pages the reader sends, in order, each event once, while the reader fetches the
/// next page; stops when either side goes away.
async fn decode<E>(
    decoder: Arc<dyn Decode<E>>,
    mut pages: mpsc::Receiver<Item<Vec<RawEvent>>>,
    tx: mpsc::Sender<Item<Decoded<E>>>,
) {
    while let Some(item) = pages.recv().await {
        let item = match item {
            Item::Events(raw) => Item::Events(
                raw.into_iter()
                    .map(|raw| (raw.position, decoder.decode(raw)))
                    .collect(),
            ),
            Item::CaughtUp => Item::CaughtUp,
            Item::Failed(e) => Item::Failed(e),
        };
        if tx.send(item).await.is_err() {
            return;
        }
    }
}

/// Reads the log after `after` page by page for the decoder, until it goes away. Pages start
/// at `pages.0` events and double after each full one, up to `pages.1`: the first batches of a
/// catch-up are applied at once, and a long replay runs with few queries. Without `follow` it
/// stops at the end, having first waited for the transactions in flight when it started (so
/// "caught up" includes them). With `follow` it waits for new events at the end, and after
/// each wake-up waits likewise for the transactions in flight then (at most a poll interval:
/// polling takes over from there). The next page is read while the previous one is decoded
/// and applied.
async fn read_log(
    source: Source,
    mut after: Position,
    pages: (usize, usize),
    follow: Option<Wake>,
    tx: mpsc::Sender<Item<Vec<RawEvent>>>,
) {
    let (first, most) = (pages.0.max(1), pages.1.max(pages.0).max(1));
    let mut page = first;
    let mut follow = follow;
    let mut mark = None;
    let settle_for = follow
        .as_ref()
        .map_or(SETTLE_TIMEOUT, |wake| wake.poll.min(SETTLE_TIMEOUT));
    let (mut waited, mut pause) = (Duration::ZERO, Duration::from_millis(1));
    loop {
        // The log's end when reading starts and after each wake-up: what woke the reader may
        // have committed while older transactions still ran (anywhere on a PostgreSQL server),
        // hidden from reads until they end, and no other wake-up may follow.
        if mark.is_none() {
            match source.log.log_mark().await {
                Ok(m) => mark = Some(m),
                Err(e) => {
                    let _ = tx.send(Item::Failed(e)).await;
                    return;
                }
            }
            (waited, pause) = (Duration::ZERO, Duration::from_millis(1));
        }
        let read = match source.log.read_page(after, &source.filter, page).await {
            Ok(read) => read,
            Err(e) => {
                let _ = tx.send(Item::Failed(e)).await;
                return;
            }
        };
        let short = read.events.len() < page;
        if let Some(last) = read.events.last() {
            after = last.position;
            if tx.send(Item::Events(read.events)).await.is_err() {
                return;
            }
        }
        if !short {
            page = (page * 2).min(most);
            continue;
        }
        page = first;
        if let Some(mark) = mark
            && read.horizon < mark
            && waited < settle_for
        {
            tokio::time::sleep(pause).await;
            waited += pause;
            pause = (pause * 2).min(SETTLE_POLL);
            continue;
        }
        if tx.send(Item::CaughtUp).await.is_err() {
            return;
        }
        match follow.as_mut() {
            Some(wake) => {
                wake.wait().await;
                mark = None;
            }
            None => return,
        }
    }
}

impl<E: Send + Sync + 'static> Projector<E> {
    /// A projector of `catalog`'s read models over the log of `log` and the tables of `store`.
    pub fn new(
        log: Arc<dyn LogReader>,
        store: Arc<dyn ProjectionStore>,
        catalog: Catalog<E>,
    ) -> Self {
        Self {
            log,
            store,
            catalog,
            options: ProjectorOptions::default(),
            signal: None,
            applied: Arc::new(watch::channel(0).0),
            rebuilds: Arc::default(),
            failures: Arc::default(),
        }
    }

    /// The same projector with other options.
    pub fn with_options(mut self, options: ProjectorOptions) -> Self {
        self.options = options;
        self
    }

    /// The same projector woken by `signal` (appends of this process) as well as by polling.
    pub fn with_signal(mut self, signal: Signal) -> Self {
        self.signal = Some(signal);
        self
    }

    /// The in-process append signal, if any.
    pub fn signal(&self) -> Option<&Signal> {
        self.signal.as_ref()
    }

    /// The projection store.
    pub fn store(&self) -> &Arc<dyn ProjectionStore> {
        &self.store
    }

    /// The log.
    pub fn log(&self) -> &Arc<dyn LogReader> {
        &self.log
    }

    /// The read models.
    pub fn catalog(&self) -> &Catalog<E> {
        &self.catalog
    }

    /// The options.
    pub fn options(&self) -> &ProjectorOptions {
        &self.options
    }

    /// The read model called `name`.
    pub(crate) fn model(&self, name: &str) -> Result<Arc<dyn ReadModel<E>>, ProjectionError> {
        Ok(self.catalog.get(name)?.clone())
    }

    /// The events the read model called `name` reads.
    pub(crate) fn filter_of(&self, name: &str) -> LogFilter {
        self.catalog.filter(&[name])
    }

    fn wake(&self) -> Wake {
        Wake {
            signal: self.signal.as_ref().map(Signal::subscribe),
            wakeups: self.store.wakeups(),
            poll: self
                .options
                .poll_interval
                .unwrap_or_else(|| self.store.poll_interval()),
        }
    }

    /// Applies the log to `targets` (copies at one checkpoint) batch by batch from their
    /// checkpoint until `until` or `stop`, calling `progress` after each batch.
    pub(crate) async fn drive(
        &self,
        targets: &mut [Target],
        until: Until,
        stop: impl Future<Output = ()>,
        progress: &mut (dyn FnMut(&[Target]) + Send),
    ) -> Result<Ended, ProjectionError> {
        let projection = targets[0].name.clone();
        let batch_size = match targets[0].slot {
            Slot::Live => self.options.batch_size,
            Slot::Rebuild => self.options.rebuild_batch_size,
        }
        .max(1);
        let names: Vec<&str> = targets.iter().map(|t| t.name.as_str()).collect();
        let mut copies = Vec::with_capacity(targets.len());
        for t in targets.iter() {
            copies.push(Copy {
                model: self.model(&t.name)?,
                target: t.clone(),
            });
        }
        let filter = self.catalog.filter(&names);
        let source = Source {
            log: self.log.clone(),
            filter: filter.clone(),
        };
        let (raw_tx, raw_rx) = mpsc::channel(1);
        let (tx, mut rx) = mpsc::channel(1);
        let follow = (until == Until::Stopped).then(|| self.wake());
        let from = targets[0].position;
        let _reader = AbortOnDrop(tokio::spawn(read_log(
            source,
            from,
            (batch_size, self.options.read_page),
            follow,
            raw_tx,
        )));
        let _decoder = AbortOnDrop(tokio::spawn(decode(
            self.catalog.decoder().clone(),
            raw_rx,
            tx,
        )));
        let mut stop = pin!(stop);
        // Copies filled from empty in this pass: keys never seen have no rows to load.
        let mut appliers = Appliers::start(
            &self.store,
            copies,
            &self.options.owner,
            from == Position::START,
        );
        let mut applied = |targets: &[Target]| {
            if targets[0].slot == Slot::Live {
                self.applied.send_modify(|n| *n = n.wrapping_add(1));
            }
            progress(targets);
        };
        let mut batch = Batch::new();
        let mut deadline = Instant::now();
        loop {
            // Between batches, stop when told to; within one, wait a little for the reader to
            // fill it while it is in the middle of the log (one transaction per handful of
            // events would be slow). At the end of the log queue it at once, for low latency.
            // Meanwhile, record what the appliers report.
            let item = tokio::select! {
                biased;
                ack = appliers.ack(), if appliers.busy() => {
                    appliers.take(ack, targets, &mut applied)?;
                    continue;
                }
                () = &mut stop, if batch.is_empty() => return Ok(Ended::Stopped),
                () = tokio::time::sleep_until(deadline), if !batch.is_empty() => {
                    let full = std::mem::take(&mut batch);
                    appliers.send(full, targets, &mut applied).await?;
                    continue;
                }
                item = rx.recv() => item,
            };
            let Some(item) = item else {
                return Err(ProjectionError::ReaderGone { projection });
            };
            match item {
                Item::Events(mut events) => {
                    if batch.is_empty() {
                        deadline = Instant::now() + FILL_WAIT;
                    }
                    // Up to a position: only the events at or before it in read order (it
                    // need not be an event this pass reads, e.g. a checkpoint written by a
                    // reader of the whole log).
                    let mut reached = false;
                    if let Until::Position(p) = until {
                        let keep = self.covered(p, &events, &filter).await?;
                        reached = keep < events.len();
                        events.truncate(keep);
                    }
                    for (position, event) in events {
                        batch.push(position, event);
                        if until == Until::Position(position) {
                            reached = true;
                            break;
                        }
                        if batch.len() >= batch_size as u64 {
                            let full = std::mem::take(&mut batch);
                            appliers.send(full, targets, &mut applied).await?;
                        }
                    }
                    if reached {
                        appliers.send(batch, targets, &mut applied).await?;
                        appliers.flush(targets, &mut applied).await?;
                        return Ok(Ended::Reached);
                    }
                }
                Item::CaughtUp => {
                    let rest = std::mem::take(&mut batch);
                    appliers.send(rest, targets, &mut applied).await?;
                    appliers.flush(targets, &mut applied).await?;
                    match until {
                        Until::CaughtUp => return Ok(Ended::CaughtUp),
                        // Every event this pass reads up to the position was applied.
                        Until::Position(p) if self.log.last_position().await? >= p => {
                            return Ok(Ended::Reached);
                        }
                        Until::Position(p) => return Err(ProjectionError::NotInLog(p)),
                        Until::Stopped => {}
                    }
                }
                Item::Failed(e) => {
                    appliers.send(batch, targets, &mut applied).await?;
                    appliers.flush(targets, &mut applied).await?;
                    return Err(e.into());
                }
            }
        }
    }

    /// How many of `events` (consecutive in read order) come at or before position `p` in
    /// read order: one look at the page's last event, and a binary search in the page that
    /// holds `p`'s place.
    async fn covered(
        &self,
        p: Position,
        events: &[(Position, Option<E>)],
        filter: &LogFilter,
    ) -> Result<usize, ProjectionError> {
        let at_or_before = |e: Position| async move {
            Ok::<bool, ProjectionError>(e == p || self.log.covers(p, e, filter).await?)
        };
        let Some(&(last, _)) = events.last() else {
            return Ok(0);
        };
        if at_or_before(last).await? {
            return Ok(events.len());
        }
        // The first event past `p` lies in this page: events[..lo] are before it.
        let (mut lo, mut hi) = (0, events.len() - 1);
        while lo < hi {
            let mid = (lo + hi) / 2;
            if at_or_before(events[mid].0).await? {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok(lo)
    }

    /// Runs the live runners of the read models called `names` until `shutdown` completes:
    /// each takes its read model's lease (standing by while another runner holds it), creates
    /// the read model or rebuilds it when its version changed, then applies the log as it
    /// grows. Failures are logged and retried; this returns only at shutdown. Unknown names
    /// are an error, before anything runs.
    pub async fn run(
        &self,
        names: &[&str],
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProjectionError> {
        let mut models = Vec::new();
        for name in names {
            models.push(self.model(name)?.schema().name);
        }
        let (stop_tx, stop_rx) = watch::channel(false);
        let runners = models.into_iter().map(|name| {
            let mut stop = stop_rx.clone();
            async move {
                self.run_one(name, async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
            }
        });
        let all = futures::future::join_all(runners);
        let mut all = pin!(all);
        tokio::select! {
            _ = &mut all => {}
            () = shutdown => {
                let _ = stop_tx.send(true);
                all.await;
            }
        }
        Ok(())
    }

    /// One read model's runner: lease, then apply; on failure or a lost lease, start over.
    async fn run_one(&self, name: &'static str, shutdown: impl Future<Output = ()> + Send) {
        let mut shutdown = pin!(shutdown);
        loop {
            let lease = tokio::select! {
                () = &mut shutdown => return,
                lease = self.take_lease(name) => lease,
            };
            tracing::info!(projection = name, owner = %self.options.owner, "applying");
            let outcome = tokio::select! {
                () = &mut shutdown => return,
                outcome = self.serve(name, lease) => outcome,
            };
            match outcome {
                Ok(()) => {
                    tracing::warn!(projection = name, "lost the projection lease; standing by")
                }
                Err(e) => {
                    let failures = self.failed(name, e.code());
                    let delay = backoff(
                        self.options.retry_delay,
                        self.options.max_retry_delay,
                        failures,
                    );
                    tracing::warn!(
                        projection = name,
                        error = &e as &dyn std::error::Error,
                        failures,
                        retry_in_ms = delay.as_millis() as u64,
                        "the projection runner failed; retrying"
                    );
                    tokio::select! {
                        () = &mut shutdown => return,
                        () = self.retry_wait(delay) => {}
                    }
                }
            }
        }
    }

    /// The wait after a failure: `delay`, cut short by an append of this process once
    /// [`ProjectorOptions::retry_delay`] has passed (the store takes writes again).
    async fn retry_wait(&self, delay: Duration) {
        let until = Instant::now() + delay;
        let mut appended = self.signal.as_ref().map(Signal::subscribe);
        tokio::time::sleep(self.options.retry_delay.min(delay)).await;
        let appended = async {
            let changed = match appended.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !changed {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = tokio::time::sleep_until(until) => {}
            () = appended => {}
        }
    }

    /// Records a failure of `name`'s runner; returns how many in a row.
    fn failed(&self, name: &'static str, code: &'static str) -> u32 {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let entry = failures.entry(name).or_insert(Failures { code, count: 0 });
        entry.code = code;
        entry.count = entry.count.saturating_add(1);
        entry.count
    }

    /// Forgets the failures of `name`'s runner: it applied a batch.
    fn recovered(&self, name: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    /// Waits until this runner holds `name`'s lease.
    async fn take_lease(&self, name: &str) -> Box<dyn Lease> {
        loop {
            match self.store.lease(name).await {
                Ok(Some(lease)) => return lease,
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(
                        projection = name,
                        error = &e as &dyn std::error::Error,
                        "cannot ask for the projection lease"
                    )
                }
            }
            tokio::time::sleep(self.options.lease_retry).await;
        }
    }

    /// Applies `name` live while `lease` holds; returns `Ok` when the lease is lost.
    async fn serve(&self, name: &str, mut lease: Box<dyn Lease>) -> Result<(), ProjectionError> {
        loop {
            let checkpoint = self.live_checkpoint(name).await?;
            let mut targets = [checkpoint.target()];
            let check = self.options.lease_check;
            let lost = async {
                loop {
                    tokio::time::sleep(check).await;
                    if !lease.alive().await {
                        return;
                    }
                }
            };
            match self
                .drive(&mut targets, Until::Stopped, lost, &mut |_| {
                    self.recovered(name)
                })
                .await
            {
                Ok(_) => return Ok(()),
                Err(ProjectionError::Moved { .. }) => {
                    tracing::info!(
                        projection = name,
                        "the live checkpoint moved (a rebuild was swapped in); reloading it"
                    );
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies the log to the live copy of `name` until it has read the log to its end, as a
    /// runner would (creating the read model, or rebuilding it when its version changed) but
    /// without taking the lease; returns the new live checkpoint.
    pub async fn catch_up(&self, name: &str) -> Result<Checkpoint, ProjectionError> {
        let checkpoint = self.live_checkpoint(name).await?;
        let mut targets = [checkpoint.target()];
        self.drive(
            &mut targets,
            Until::CaughtUp,
            std::future::pending(),
            &mut |_| {},
        )
        .await?;
        self.store
            .checkpoint(name, Slot::Live)
            .await?
            .ok_or_else(|| ProjectionError::Moved {
                projection: name.to_string(),
            })
    }

    /// The live checkpoint of `name`, creating the read model when it does not exist and
    /// rebuilding it when its tables are of another version.
    async fn live_checkpoint(&self, name: &str) -> Result<Checkpoint, ProjectionError> {
        let schema = self.model(name)?.schema();
        match self.store.checkpoint(name, Slot::Live).await? {
            None => Ok(self.store.create(schema, Slot::Live).await?),
            Some(cp) if cp.version != schema.version => {
                tracing::warn!(
                    projection = name,
                    from = cp.version,
                    to = schema.version,
                    "the read model's version changed: rebuilding it"
                );
                self.rebuild(&[name], &mut |_| {}).await?;
                self.store
                    .checkpoint(name, Slot::Live)
                    .await?
                    .ok_or_else(|| ProjectionError::Moved {
                        projection: name.to_string(),
                    })
            }
            Some(cp) => Ok(cp),
        }
    }

    /// Waits until the live copy of `name` has seen everything up to the event at `position`,
    /// at most `timeout`; `Behind` with the current checkpoint when it has not.
    pub async fn wait_for(
        &self,
        name: &str,
        position: Position,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let filter = self.filter_of(self.model(name)?.schema().name);
        let deadline = Instant::now() + timeout;
        let mut applied = self.applied.subscribe();
        loop {
            // A read model never created has seen nothing, whatever the position.
            let live = self.store.checkpoint(name, Slot::Live).await?;
            let checkpoint = live.as_ref().map_or(Position::START, |c| c.position);
            if live.is_some() && self.log.covers(checkpoint, position, &filter).await? {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ProjectionError::Behind {
                    projection: name.to_string(),
                    wanted: position,
                    checkpoint,
                });
            }
            // Woken by this process's runners, or polling for runners of other processes.
            let pause = (deadline - now).min(Duration::from_millis(10));
            let _ = tokio::time::timeout(pause, applied.changed()).await;
        }
    }

    /// The status of every read model of the catalog.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let checkpoints = self.store.checkpoints().await?;
        let running = self
            .rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let failures = self
            .failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut all = Vec::new();
        for model in self.catalog.models() {
            let schema = model.schema();
            let name = schema.name;
            let filter = self.filter_of(name);
            let find = |slot| {
                checkpoints
                    .iter()
                    .find(|c| c.name == name && c.slot == slot)
                    .cloned()
            };
            let live = find(Slot::Live);
            let position = live.as_ref().map_or(Position::START, |c| c.position);
            let lag = self.log.count_after(position, &filter).await?;
            let (running_here, error) = running.get(name).cloned().unwrap_or((false, None));
            let rebuild = match find(Slot::Rebuild) {
                Some(r) => Some(RebuildStatus {
                    version: r.version,
                    checkpoint: r.position.0,
                    done: r.events,
                    total: r.events + self.log.count_after(r.position, &filter).await?,
                    running: running_here,
                    error,
                }),
                None if running_here || error.is_some() => Some(RebuildStatus {
                    version: schema.version,
                    checkpoint: 0,
                    done: 0,
                    total: self.log.count_after(Position::START, &filter).await?,
                    running: running_here,
                    error,
                }),
                None => None,
            };
            // A failure is current while there is something left to apply.
            let error = failures.get(name).filter(|_| lag > 0).map(|f| f.code);
            let state = if error.is_some() {
                State::Failing
            } else if rebuild
                .as_ref()
                .is_some_and(|r| r.running || r.error.is_none())
            {
                State::Rebuilding
            } else if live.is_none() || lag > CATCHING_UP_LAG {
                State::CatchingUp
            } else {
                State::Live
            };
            all.push(ProjectionStatus {
                name,
                version: live.as_ref().map_or(schema.version, |c| c.version),
                checkpoint: position.0,
                lag,
                state,
                error,
                events: live.as_ref().map_or(0, |c| c.events),
                owner: live.and_then(|c| c.owner),
                rebuild,
            });
        }
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_up_to_the_most() {
        let (first, most) = (Duration::from_secs(1), Duration::from_secs(5));
        let waits: Vec<u64> = (1..=5).map(|n| backoff(first, most, n).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        assert_eq!(backoff(first, most, u32::MAX), most);
        assert_eq!(backoff(first, Duration::ZERO, 3), first);
    }
}
