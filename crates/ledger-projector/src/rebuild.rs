//! Rebuilds: replay the whole log into fresh rebuild copies while the live copies keep serving,
//! then swap each in atomically; resumable from the rebuild copy's own checkpoint. And
//! verification: rebuild into fresh copies up to the live checkpoint and diff row by row.

use std::collections::VecDeque;
use std::time::Duration;

use ledger_core::Position;
use serde::Serialize;
use serde_json::Value as Json;
use tokio::time::Instant;

use crate::error::ProjectionError;
use crate::runner::{Ended, Projector, Until};
use crate::spec::{Schema, Slot, TableSpec};
use crate::store::{ProjectionStore, Query, Snapshot, Swapped, Target};
use crate::value::{Key, Row};

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
    /// The read models being filled together.
    pub projections: Vec<&'static str>,
    /// Events applied (including those applied before a resume).
    pub done: u64,
    /// Events in the log when this pass started (grows when `done` passes it).
    pub total: u64,
}

/// What a rebuild did.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RebuildReport {
    /// The read models rebuilt.
    pub projections: Vec<&'static str>,
    /// Events read into the copies by this run, added up over its passes (read models that
    /// read the same events share one pass); a resumed rebuild counts only the rest.
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
    /// The table.
    pub table: &'static str,
    /// The row's key, by key column.
    pub key: Json,
    /// The live row (`None`: missing from the live table).
    pub live: Option<Json>,
    /// The rebuilt row (`None`: the rebuild has no such row).
    pub rebuilt: Option<Json>,
}

/// What a verification found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VerifyReport {
    /// The read model.
    pub projection: &'static str,
    /// The live checkpoint both copies were compared at.
    pub checkpoint: u64,
    /// Rows of the live tables.
    pub live_rows: u64,
    /// Rows of the rebuilt tables.
    pub rebuilt_rows: u64,
    /// How many rows differ.
    pub differences: u64,
    /// The first differing rows (at most [`MAX_LISTED_DIFFERENCES`]).
    pub listed: Vec<Difference>,
}

impl VerifyReport {
    /// Whether the live tables equal a fresh rebuild.
    pub fn is_clean(&self) -> bool {
        self.differences == 0
    }
}

impl<E: Send + Sync + 'static> Projector<E> {
    /// Rebuilds the read models called `names`: each is replayed from the start of the log
    /// into its rebuild copy (resuming a copy of the current version left by an interrupted
    /// rebuild), copies at the same checkpoint together in one pass, and swapped in when
    /// caught up.
    pub async fn rebuild(
        &self,
        names: &[&str],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<RebuildReport, ProjectionError> {
        let mut schemas: Vec<&'static Schema> = Vec::new();
        for name in names {
            let schema = self.model(name)?.schema();
            if !schemas.iter().any(|s| s.name == schema.name) {
                schemas.push(schema);
            }
        }
        let projections: Vec<&'static str> = schemas.iter().map(|s| s.name).collect();
        let started = Instant::now();
        self.mark(&projections, true, None);
        let result = self.rebuild_inner(&schemas, progress).await;
        let error = result.as_ref().err().map(ToString::to_string);
        self.mark(&projections, false, error);
        let (events, resumed_from) = result?;
        Ok(RebuildReport {
            projections,
            events,
            resumed_from,
            elapsed: started.elapsed(),
        })
    }

    /// Starts a rebuild of `name` in the background unless this process is already rebuilding
    /// it; returns whether it started one. Its progress shows in [`Projector::status`].
    pub fn spawn_rebuild(&self, name: &str) -> Result<bool, ProjectionError> {
        let name = self.model(name)?.schema().name;
        {
            let mut rebuilds = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
            if rebuilds.get(name).is_some_and(|(running, _)| *running) {
                return Ok(false);
            }
            rebuilds.insert(name, (true, None));
        }
        let this = self.clone();
        tokio::spawn(async move {
            match this.rebuild(&[name], &mut |_| {}).await {
                Ok(report) => {
                    tracing::info!(
                        projection = name,
                        events = report.events,
                        "online rebuild done"
                    )
                }
                Err(e) => {
                    tracing::warn!(
                        projection = name,
                        error = &e as &dyn std::error::Error,
                        "online rebuild failed"
                    )
                }
            }
        });
        Ok(true)
    }

    /// Records in this process whether a rebuild of `names` runs, and how it ended.
    fn mark(&self, names: &[&'static str], running: bool, error: Option<String>) {
        let mut rebuilds = self.rebuilds.lock().unwrap_or_else(|p| p.into_inner());
        for name in names {
            if running || error.is_some() {
                rebuilds.insert(name, (running, error.clone()));
            } else {
                rebuilds.remove(name);
            }
        }
    }

    /// Whether this process is rebuilding `name` right now.
    pub fn is_rebuilding(&self, name: &str) -> bool {
        self.rebuilds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .is_some_and(|(running, _)| *running)
    }

    async fn rebuild_inner(
        &self,
        schemas: &[&'static Schema],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(u64, u64), ProjectionError> {
        // The rebuild copies: resumed when one of the current version exists.
        let mut targets: Vec<Target> = Vec::new();
        for schema in schemas {
            let cp = match self.store.checkpoint(schema.name, Slot::Rebuild).await? {
                Some(cp) if cp.version == schema.version => cp,
                _ => self.store.create(schema, Slot::Rebuild).await?,
            };
            targets.push(cp.target());
        }
        // Copies at one checkpoint that read the same events share one pass over the log.
        let mut groups: Vec<Vec<Target>> = Vec::new();
        for t in targets {
            let filter = self.filter_of(&t.name);
            match groups.iter_mut().find(|g| {
                g[0].position == t.position
                    && g[0].events == t.events
                    && self.filter_of(&g[0].name) == filter
            }) {
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

    /// The schema of the read model a target belongs to.
    fn schema_of(&self, target: &Target) -> Result<&'static Schema, ProjectionError> {
        Ok(self.model(&target.name)?.schema())
    }

    /// Catches one group of rebuild copies up with the log, then swaps each in.
    async fn fill_and_swap(
        &self,
        group: &mut [Target],
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<(), ProjectionError> {
        let mut projections = Vec::new();
        for t in group.iter() {
            projections.push(self.schema_of(t)?.name);
        }
        let filter = self.catalog.filter(&projections);
        for round in 1..=SWAP_ROUNDS {
            let mut total =
                group[0].events + self.log.count_after(group[0].position, &filter).await?;
            progress(&Progress {
                projections: projections.clone(),
                done: group[0].events,
                total,
            });
            let mut report = |targets: &[Target]| {
                total = total.max(targets[0].events);
                progress(&Progress {
                    projections: projections.clone(),
                    done: targets[0].events,
                    total,
                });
            };
            self.drive(group, Until::CaughtUp, std::future::pending(), &mut report)
                .await?;
            if round == 1 {
                // Filled: index the copies together now, so the swaps only rename.
                let mut builds = Vec::new();
                for t in group.iter() {
                    builds.push(self.store.build_indexes(self.schema_of(t)?, t));
                }
                futures::future::try_join_all(builds).await?;
            }
            if round < SWAP_ROUNDS && !self.ready_to_swap(group).await? {
                continue;
            }
            for t in group.iter() {
                if self.store.swap(self.schema_of(t)?, t).await? == Swapped::Moved {
                    return Err(ProjectionError::Moved {
                        projection: t.name.clone(),
                    });
                }
                tracing::info!(projection = %t.name, position = t.position.0, "rebuilt read model swapped in");
            }
            return Ok(());
        }
        unreachable!("the last round always swaps")
    }

    /// Whether every copy of the group is at least as far as its live copy (or the live copy
    /// is of another version or missing), so that swapping does not move readers back.
    async fn ready_to_swap(&self, group: &[Target]) -> Result<bool, ProjectionError> {
        for t in group {
            let schema = self.schema_of(t)?;
            let Some(live) = self.store.checkpoint(&t.name, Slot::Live).await? else {
                continue;
            };
            let ahead = live.version != schema.version
                || live.position == Position::START
                || live.position == t.position
                || self
                    .log
                    .covers(t.position, live.position, &self.filter_of(schema.name))
                    .await?;
            if !ahead {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Verifies `name`: takes a consistent view of the live tables, replays the log into a
    /// fresh rebuild copy up to exactly the live checkpoint, and compares the two row by row.
    /// The rebuild copy is dropped afterwards; nothing is swapped.
    pub async fn verify(
        &self,
        name: &str,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<VerifyReport, ProjectionError> {
        let schema = self.model(name)?.schema();
        let mut snapshot = self.store.snapshot(schema).await?;
        let live = snapshot.checkpoint();
        let checkpoint = live.as_ref().map_or(Position::START, |c| c.position);
        let fresh = self.store.create(schema, Slot::Rebuild).await?;
        let mut targets = [fresh.target()];
        if checkpoint != Position::START {
            let total = live.as_ref().map_or(0, |c| c.events);
            let mut report = |targets: &[Target]| {
                progress(&Progress {
                    projections: vec![schema.name],
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
        let mut report = VerifyReport {
            projection: schema.name,
            checkpoint: checkpoint.0,
            live_rows: 0,
            rebuilt_rows: 0,
            differences: 0,
            listed: Vec::new(),
        };
        for table in schema.tables {
            diff(table, snapshot.as_mut(), self.store.as_ref(), &mut report).await?;
        }
        drop(snapshot);
        self.store.drop_rebuild(schema).await?;
        Ok(report)
    }
}

/// Rows of one side of a diff, fetched page by page in key order.
struct Side<'a> {
    source: Source<'a>,
    table: &'static TableSpec,
    buffer: VecDeque<(Key, Row)>,
    after: Option<Key>,
    done: bool,
    count: u64,
}

enum Source<'a> {
    Live(&'a mut dyn Snapshot),
    Rebuilt(&'a dyn ProjectionStore),
}

impl<'a> Side<'a> {
    fn new(source: Source<'a>, table: &'static TableSpec) -> Self {
        Self {
            source,
            table,
            buffer: VecDeque::new(),
            after: None,
            done: false,
            count: 0,
        }
    }

    async fn peek(&mut self) -> Result<Option<&Key>, ProjectionError> {
        if self.buffer.is_empty() && !self.done {
            let rows = match &mut self.source {
                Source::Live(snapshot) => {
                    snapshot
                        .rows(self.table, self.after.as_ref(), DIFF_PAGE)
                        .await?
                }
                Source::Rebuilt(store) => {
                    let query = Query::new(self.table, DIFF_PAGE)
                        .slot(Slot::Rebuild)
                        .after(self.after.clone());
                    store.query(&query).await?
                }
            };
            self.done = rows.len() < DIFF_PAGE;
            let table = self.table;
            self.buffer
                .extend(rows.into_iter().map(|r| (table.key_of(&r), r)));
            self.after = self.buffer.back().map(|(k, _)| k.clone());
        }
        Ok(self.buffer.front().map(|(k, _)| k))
    }

    fn take(&mut self) -> Option<(Key, Row)> {
        let next = self.buffer.pop_front();
        self.count += u64::from(next.is_some());
        next
    }
}

/// Merges the live and the rebuilt rows of one table by key and records what differs.
async fn diff(
    table: &'static TableSpec,
    snapshot: &mut dyn Snapshot,
    store: &dyn ProjectionStore,
    report: &mut VerifyReport,
) -> Result<(), ProjectionError> {
    let mut live = Side::new(Source::Live(snapshot), table);
    let mut rebuilt = Side::new(Source::Rebuilt(store), table);
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
        report.differences += 1;
        if report.listed.len() < MAX_LISTED_DIFFERENCES {
            report.listed.push(Difference {
                table: table.name,
                key: table.key_json(&key),
                live: live_row.map(|r| table.to_json(&r)),
                rebuilt: rebuilt_row.map(|r| table.to_json(&r)),
            });
        }
    }
    report.live_rows += live.count;
    report.rebuilt_rows += rebuilt.count;
    Ok(())
}
