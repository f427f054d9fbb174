//! Rebuilds: replay the whole log into fresh rebuild copies while the live copies keep serving,
//! then swap each in atomically; resumable from the rebuild copy's own checkpoint. And
//! verification: rebuild into fresh copies up to the live checkpoint and diff row by row.

use std::collections::VecDeque;
use std::time::Duration;

use ledger_core::Position;
use serde::Serialize;
use serde_json::Value;
use tokio::time::Instant;

use crate::error::ProjectionError;
use crate::rows::RowKey;
use crate::runner::{Ended, Projector, Until};
use crate::store::{ProjectionStore, Query, Snapshot, Swapped, Target};
use crate::{Kind, Slot};

/// Rounds of catching up a rebuild makes before it swaps even though the live copy is further
/// along (the live runner then continues from the rebuilt checkpoint).
const SWAP_ROUNDS: usize = 3;

/// Rows fetched per page by a diff.
const DIFF_PAGE: usize = 1000;

/// Differences kept in a verify report (all are counted).
pub const MAX_LISTED_DIFFERENCES: usize = 100;

/// How far a rebuild or verification is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// The projections being filled together.
    pub kinds: Vec<Kind>,
    /// Events applied (including those applied before a resume).
    pub done: u64,
    /// Events in the log when this pass started (grows when `done` passes it).
    pub total: u64,
}

/// What a rebuild did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebuildReport {
    /// The projections rebuilt.
    pub kinds: Vec<Kind>,
    /// Events applied by this run (a resumed rebuild counts only the rest).
    pub events: u64,
    /// Events the rebuilt copies had applied before this run (0 unless resumed).
    pub resumed_from: u64,
    /// How long it took.
    #[serde(serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// One row that differs between the live and the rebuilt copy.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Difference {
    /// The row's key.
    pub key: RowKey,
    /// The live row (`None`: missing from the live table).
    pub live: Option<Value>,
    /// The rebuilt row (`None`: the rebuild has no such row).
    pub rebuilt: Option<Value>,
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The projection.
    pub kind: Kind,
    /// The live checkpoint both copies were compared at.
    pub checkpoint: u64,
    /// Rows of the live table.
    pub live_rows: u64,
    /// Rows of the rebuilt table.
    pub rebuilt_rows: u64,
    /// How many rows differ.
    pub differences: u64,
    /// The first differing rows (at most [`MAX_LISTED_DIFFERENCES`]).
    pub listed: Vec<Difference>,
}

impl VerifyReport {
    /// Whether the live table equals a fresh rebuild.
    pub fn is_clean(&self) -> bool {
        self.differences == 0
    }
}

impl Projector {
    /// Rebuilds `kinds`: each is replayed from the start of the log into its rebuild copy
    /// (resuming a copy of the current version left by an interrupted rebuild), copies at the
    /// same checkpoint together in one pass, and swapped in when caught up.
    pub async fn rebuild(
        &self,
        kinds: &[Kind],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<RebuildReport, ProjectionError> {
        let started = Instant::now();
        self.mark(kinds, true, None);
        let result = self.rebuild_inner(kinds, progress).await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.mark(kinds, false, error);
        let (events, resumed_from) = result?;
        Ok(RebuildReport {
            kinds: kinds.to_vec(),
            events,
            resumed_from,
            elapsed: started.elapsed(),
        })
    }

    /// Starts a rebuild of `kind` in the background unless this process is already rebuilding
    /// it; returns whether it started one. Its progress shows in [`Projector::status`].
    pub fn spawn_rebuild(&self, kind: Kind) -> bool {
        {
            let mut rebuilds = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
            if rebuilds.get(&kind).is_some_and(|(running, _)| *running) {
                return false;
            }
            rebuilds.insert(kind, (true, None));
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.rebuild(&[kind], &mut |_| {}).await {
                Ok(report) => {
                    tracing::info!(projection = %kind, events = report.events, "online rebuild done")
                }
                Err(e) => {
                    tracing::warn!(projection = %kind, error = &e as &dyn std::error::Error, "online rebuild failed")
                }
            }
        });
        true
    }

    /// Records in this process whether a rebuild of `kinds` runs, and how it ended.
    fn mark(&self, kinds: &[Kind], running: bool, error: Option<String>) {
        let mut rebuilds = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
        for kind in kinds {
            if running || error.is_some() {
                rebuilds.insert(*kind, (running, error.clone()));
            } else {
                rebuilds.remove(kind);
            }
        }
    }

    /// Whether this process is rebuilding `kind` right now.
    pub fn is_rebuilding(&self, kind: Kind) -> bool {
        self.rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&kind)
            .is_some_and(|(running, _)| *running)
    }

    async fn rebuild_inner(
        &self,
        kinds: &[Kind],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(u64, u64), ProjectionError> {
        // The rebuild copies: resumed when one of the current version exists.
        let mut targets: Vec<Target> = Vec::new();
        for &kind in kinds {
            let cp = match self.store.checkpoint(kind, Slot::Rebuild).await? {
                Some(cp) if cp.version == kind.version() => cp,
                _ => self.store.create(kind, Slot::Rebuild).await?,
            };
            targets.push(cp.target());
        }
        // Copies at one checkpoint share one pass over the log.
        let mut groups: Vec<Vec<Target>> = Vec::new();
        for t in targets {
            match groups
                .iter_mut()
                .find(|g| g[0].position == t.position && g[0].events == t.events)
            {
                Some(g) => g.push(t),
                None => groups.push(vec![t]),
            }
        }
        let (mut applied, mut resumed_from) = (0, 0);
        for mut group in groups {
            let start = group[0].events;
            resumed_from = resumed_from.max(start);
            self.fill_and_swap(&mut group, progress).await?;
            applied += group[0].events - start;
        }
        Ok((applied, resumed_from))
    }

    /// Catches one group of rebuild copies up with the log, then swaps each in.
    async fn fill_and_swap(
        &self,
        group: &mut [Target],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), ProjectionError> {
        let kinds: Vec<Kind> = group.iter().map(|t| t.kind).collect();
        for round in 1..=SWAP_ROUNDS {
            let mut total = group[0].events + self.store.events_after(group[0].position).await?;
            progress(&Progress {
                kinds: kinds.clone(),
                done: group[0].events,
                total,
            });
            let mut report = |targets: &[Target]| {
                total = total.max(targets[0].events);
                progress(&Progress {
                    kinds: kinds.clone(),
                    done: targets[0].events,
                    total,
                });
            };
            self.drive(group, Until::CaughtUp, std::future::pending(), &mut report)
                .await?;
            if round == 1 {
                // Filled: index the copies together now, so the swaps only rename.
                futures::future::try_join_all(group.iter().map(|t| self.store.build_indexes(t)))
                    .await?;
            }
            if round < SWAP_ROUNDS && !self.ready_to_swap(group).await? {
                continue;
            }
            for t in group.iter() {
                if self.store.swap(t).await? == Swapped::Moved {
                    return Err(ProjectionError::Moved { kind: t.kind });
                }
                tracing::info!(projection = %t.kind, position = t.position.0, "rebuilt projection swapped in");
            }
            return Ok(());
        }
        unreachable!("the last round always swaps")
    }

    /// Whether every copy of the group is at least as far as its live copy (or the live copy
    /// is of another version or missing), so that swapping does not move readers back.
    async fn ready_to_swap(&self, group: &[Target]) -> Result<bool, ProjectionError> {
        for t in group {
            let Some(live) = self.store.checkpoint(t.kind, Slot::Live).await? else {
                continue;
            };
            let ahead = live.version != t.kind.version()
                || live.position == Position::START
                || live.position == t.position
                || self.store.covers(t.position, live.position).await?;
            if !ahead {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Verifies `kind`: takes a consistent view of the live table, replays the log into a fresh
    /// rebuild copy up to exactly the live checkpoint, and compares the two row by row. The
    /// rebuild copy is dropped afterwards; nothing is swapped.
    pub async fn verify(
        &self,
        kind: Kind,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VerifyReport, ProjectionError> {
        let mut snapshot = self.store.snapshot(kind).await?;
        let live = snapshot.checkpoint();
        let checkpoint = live.as_ref().map_or(Position::START, |c| c.position);
        let fresh = self.store.create(kind, Slot::Rebuild).await?;
        let mut targets = [fresh.target()];
        if checkpoint != Position::START {
            let total = live.as_ref().map_or(0, |c| c.events);
            let mut report = |targets: &[Target]| {
                progress(&Progress {
                    kinds: vec![kind],
                    done: targets[0].events,
                    total: total.max(targets[0].events),
                })
            };
            let ended = self
                .drive(
                    &mut targets,
                    Until::Position(checkpoint),
                    std::future::pending(),
                    &mut report,
                )
                .await?;
            debug_assert_eq!(ended, Ended::Reached);
        }
        let report = diff(kind, checkpoint, snapshot.as_mut(), self.store.as_ref()).await;
        drop(snapshot);
        self.store.drop_rebuild(kind).await?;
        report
    }
}

/// Rows of one side of a diff, fetched page by page in key order.
struct Side<'a> {
    source: Source<'a>,
    buffer: VecDeque<(RowKey, Value)>,
    after: Option<RowKey>,
    done: bool,
    count: u64,
}

enum Source<'a> {
    Live(&'a mut dyn Snapshot),
    Rebuilt(&'a dyn ProjectionStore, Kind),
}

impl<'a> Side<'a> {
    fn new(source: Source<'a>) -> Self {
        Self {
            source,
            buffer: VecDeque::new(),
            after: None,
            done: false,
            count: 0,
        }
    }

    async fn peek(&mut self) -> Result<Option<&RowKey>, ProjectionError> {
        if self.buffer.is_empty() && !self.done {
            let rows = match &mut self.source {
                Source::Live(snapshot) => snapshot.rows(self.after.clone(), DIFF_PAGE).await?,
                Source::Rebuilt(store, kind) => {
                    let query = Query::page(*kind, Slot::Rebuild, self.after.clone(), DIFF_PAGE);
                    store.query(&query).await?
                }
            };
            self.done = rows.len() < DIFF_PAGE;
            self.buffer.extend(rows.keyed_json());
            self.after = self.buffer.back().map(|(k, _)| k.clone());
        }
        Ok(self.buffer.front().map(|(k, _)| k))
    }

    fn take(&mut self) -> Option<(RowKey, Value)> {
        let next = self.buffer.pop_front();
        self.count += u64::from(next.is_some());
        next
    }
}

/// Merges the live and the rebuilt rows by key and lists what differs.
async fn diff(
    kind: Kind,
    checkpoint: Position,
    snapshot: &mut dyn Snapshot,
    store: &dyn ProjectionStore,
) -> Result<VerifyReport, ProjectionError> {
    let mut live = Side::new(Source::Live(snapshot));
    let mut rebuilt = Side::new(Source::Rebuilt(store, kind));
    let mut differences = 0u64;
    let mut listed = Vec::new();
    loop {
        let l = live.peek().await?.cloned();
        let r = rebuilt.peek().await?.cloned();
        let (key, live_row, rebuilt_row) = match (l, r) {
            (None, None) => break,
            (Some(l), Some(r)) if l == r => {
                let (_, a) = live.take().expect("peeked");
                let (_, b) = rebuilt.take().expect("peeked");
                if a == b {
                    continue;
                }
                (l, Some(a), Some(b))
            }
            (Some(l), r) if r.as_ref().is_none_or(|r| l < *r) => {
                let (_, a) = live.take().expect("peeked");
                (l, Some(a), None)
            }
            (_, Some(r)) => {
                let (_, b) = rebuilt.take().expect("peeked");
                (r, None, Some(b))
            }
            (Some(_), None) => unreachable!("covered by the arm above"),
        };
        differences += 1;
        if listed.len() < MAX_LISTED_DIFFERENCES {
            listed.push(Difference {
                key,
                live: live_row,
                rebuilt: rebuilt_row,
            });
        }
    }
    Ok(VerifyReport {
        kind,
        checkpoint: checkpoint.0,
        live_rows: live.count,
        rebuilt_rows: rebuilt.count,
        differences,
        listed,
    })
}
