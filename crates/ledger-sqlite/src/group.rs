//! Group commit on SQLite: a group of appends is one `BEGIN IMMEDIATE` transaction on the
//! writer connection, so the WAL is written and synced once for all of them. Inside it each
//! append is its usual conditional insert (chained before it was queued) and, when refused,
//! is examined under the write lock: its answer (a conflict, a replay, a reused id) is final
//! and leaves the others alone. If the database itself fails, the transaction is rolled back
//! and every append of the group takes the single-append path, which reports the failure.

use std::collections::HashSet;
use std::sync::Arc;

use ledger_core::{
    AppendResult, BoxFuture, ChainHash, ChainHead, GroupWriter, HeadCache, Limits, StoreError,
    StreamName,
};
use sqlx::SqlitePool;

use crate::append::{self, Batch, Chained};
use crate::error::{is_unique_violation, store_err};
use crate::health::WriteHealth;
use crate::together::{self, Outcome};

/// An append as queued: encoded, and chained when its stream's head was known.
pub(crate) struct Prepared {
    pub(crate) batch: Batch,
    pub(crate) chained: Option<Chained>,
}

/// Writes groups of appends for the store's committer.
pub(crate) struct SqliteGroups {
    pub(crate) writer: SqlitePool,
    pub(crate) heads: Arc<HeadCache>,
    pub(crate) health: Arc<WriteHealth>,
    pub(crate) limits: Limits,
}

/// One append's outcome inside the group's transaction: its result and, when it wrote, the
/// hash its stream ends with.
type Staged = Result<(AppendResult, Option<ChainHash>), StoreError>;

impl SqliteGroups {
    /// The single-append path, in autocommit on the writer connection.
    async fn single(&self, request: Prepared) -> Result<AppendResult, StoreError> {
        let written = async {
            let mut conn = self.writer.acquire().await.map_err(store_err)?;
            append::append_autocommit(
                &mut conn,
                &self.heads,
                &request.batch,
                request.chained,
                &self.limits,
            )
            .await
        };
        self.health.record(written.await)
    }

    /// Stages every append of the group in one transaction and commits it; `Err` (nothing
    /// committed) when the database failed. The first append of each stream that was chained
    /// before it queued goes into one statement with the others (see `crate::together`); the
    /// rest, and those that statement left out, follow one by one.
    async fn stage_all(&self, group: &mut [Prepared]) -> Result<Vec<Staged>, StoreError> {
        let mut tx = self
            .writer
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(store_err)?;
        let mut staged: Vec<Option<Staged>> = group.iter().map(|_| None).collect();
        let picked = pick(group);
        if picked.len() > 1 {
            let appends: Vec<(&Batch, &Chained)> = picked
                .iter()
                .filter_map(|&i| Some((&group[i].batch, group[i].chained.as_ref()?)))
                .collect();
            match together::insert(&mut tx, &appends).await {
                Ok(outcomes) => {
                    for (&i, outcome) in picked.iter().zip(outcomes) {
                        let chained = group[i].chained.take();
                        if let (Outcome::Written(result), Some(chained)) = (outcome, chained) {
                            staged[i] = Some(Ok((result, Some(chained.last_hash()))));
                        }
                    }
                }
                // A stored id: SQLite undid the statement alone; each append goes one by one.
                Err(error) if is_unique_violation(&error) => {}
                Err(error) => {
                    let _ = tx.rollback().await;
                    return Err(store_err(error));
                }
            }
        }
        for (request, slot) in group.iter_mut().zip(staged.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let chained = request.chained.take();
            let outcome =
                append::append_prepared_in_tx(&mut tx, &request.batch, chained, &self.limits).await;
            match outcome {
                Err(error) if !is_answer(&error) => {
                    // The answer is the failure; dropping `tx` rolls back as well.
                    let _ = tx.rollback().await;
                    return Err(error);
                }
                outcome => *slot = Some(outcome),
            }
        }
        tx.commit().await.map_err(store_err)?;
        Ok(staged.into_iter().flatten().collect())
    }
}

impl SqliteGroups {
    /// A group of appends to distinct streams, all chained, is one statement in autocommit;
    /// those it left out then go alone. The group comes back when it is not such a group or
    /// the statement failed (and wrote nothing).
    async fn write_at_once(
        &self,
        group: Vec<Prepared>,
    ) -> Result<Vec<Result<AppendResult, StoreError>>, Vec<Prepared>> {
        if pick(&group).len() < group.len() {
            return Err(group);
        }
        let outcomes = async {
            let appends: Vec<(&Batch, &Chained)> = group
                .iter()
                .filter_map(|r| Some((&r.batch, r.chained.as_ref()?)))
                .collect();
            let mut conn = self.writer.acquire().await.ok()?;
            together::insert(&mut conn, &appends).await.ok()
        }
        .await;
        let Some(outcomes) = outcomes else {
            return Err(group);
        };
        let _ = self.health.record(Ok::<(), StoreError>(()));
        let mut results = Vec::with_capacity(group.len());
        for (request, outcome) in group.into_iter().zip(outcomes) {
            match (outcome, request.chained) {
                (Outcome::Written(result), Some(chained)) => {
                    let head = ChainHead {
                        seq: result.last_seq,
                        hash: chained.last_hash(),
                    };
                    self.heads.put(request.batch.stream.as_str(), head);
                    results.push(Ok(result));
                }
                _ => {
                    self.heads.forget(request.batch.stream.as_str());
                    let alone = Prepared {
                        batch: request.batch,
                        chained: None,
                    };
                    results.push(self.single(alone).await);
                }
            }
        }
        Ok(results)
    }
}

/// The appends that go into one statement: the first of each stream, if it was chained,
/// while the rows fit.
fn pick(group: &[Prepared]) -> Vec<usize> {
    let mut seen = HashSet::new();
    let mut rows = 0;
    let mut picked = Vec::new();
    for (i, request) in group.iter().enumerate() {
        let first = seen.insert(request.batch.stream.as_str());
        let size = request.batch.len();
        if first && request.chained.is_some() && rows + size <= together::MAX_ROWS {
            rows += size;
            picked.push(i);
        }
    }
    picked
}

/// Whether `error` answers the append (it is refused) rather than reports a failure of the
/// database.
fn is_answer(error: &StoreError) -> bool {
    !matches!(
        error,
        StoreError::Unavailable { .. } | StoreError::Backend { .. }
    )
}

impl GroupWriter for SqliteGroups {
    type Request = Prepared;

    fn stream(request: &Prepared) -> &StreamName {
        &request.batch.stream
    }

    fn events(request: &Prepared) -> usize {
        request.batch.len()
    }

    // Inside the transaction a later append of a stream sees the earlier one's rows.
    const ONE_PER_STREAM: bool = false;

    fn write_one(&self, request: Prepared) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(self.single(request))
    }

    fn write_group(
        &self,
        group: Vec<Prepared>,
    ) -> BoxFuture<'_, Vec<Result<AppendResult, StoreError>>> {
        Box::pin(async move {
            let mut group = match self.write_at_once(group).await {
                Ok(results) => return results,
                Err(group) => group,
            };
            match self.stage_all(&mut group).await {
                Ok(staged) => {
                    let _ = self.health.record(Ok::<(), StoreError>(()));
                    staged
                        .into_iter()
                        .zip(&group)
                        .map(|(outcome, request)| {
                            let stream = request.batch.stream.as_str();
                            match outcome {
                                Ok((result, Some(hash))) => {
                                    let head = ChainHead {
                                        seq: result.last_seq,
                                        hash,
                                    };
                                    self.heads.put(stream, head);
                                    Ok(result)
                                }
                                Ok((result, None)) => Ok(result),
                                Err(error) => {
                                    self.heads.forget(stream);
                                    Err(error)
                                }
                            }
                        })
                        .collect()
                }
                Err(error) => {
                    let _ = self.health.failed(error);
                    // Nothing was committed: each append goes alone and gets its own answer.
                    let mut results = Vec::with_capacity(group.len());
                    for request in group {
                        self.heads.forget(request.batch.stream.as_str());
                        results.push(self.single(request).await);
                    }
                    results
                }
            }
        })
    }
}
