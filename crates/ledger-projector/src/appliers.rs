//! The appliers of one pass over the log: one task per copy, each applying the batches queued
//! for it in log order, so that copies filled together never wait for each other's writes and
//! the next batch is formed while the previous ones are written.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::error::ProjectionError;
use crate::fold::{Batch, Plan, Seen, fold};
use crate::model::ReadModel;
use crate::store::{ProjectionStore, Target};

/// Batches a copy may have queued or in flight before the pass waits for it.
const DEPTH: usize = 2;

/// What an applier reports after each batch: its copy's index and the copy's new checkpoint.
type Ack = (usize, Result<Target, ProjectionError>);

/// Aborts a task when its owner is done with it.
pub(crate) struct AbortOnDrop(pub(crate) JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// One copy a pass fills: its read model and where its checkpoint is.
pub(crate) struct Copy<E> {
    /// The read model.
    pub(crate) model: Arc<dyn ReadModel<E>>,
    /// Its copy and checkpoint.
    pub(crate) target: Target,
}

/// One applier task per copy of a pass, and the acknowledgements they send back.
pub(crate) struct Appliers<E> {
    lanes: Vec<Lane<E>>,
    acks: mpsc::UnboundedReceiver<Ack>,
}

/// The queue of one copy's applier.
struct Lane<E> {
    batches: mpsc::Sender<Arc<Batch<E>>>,
    in_flight: usize,
    _task: AbortOnDrop,
}

impl<E: Send + Sync + 'static> Appliers<E> {
    /// Starts an applier for each of `copies` (dropping [`Appliers`] stops them, rolling back
    /// a batch being written). `from_empty`: the copies are filled from an empty start, so keys
    /// never seen in this pass have no rows yet.
    pub(crate) fn start(
        store: &Arc<dyn ProjectionStore>,
        copies: Vec<Copy<E>>,
        owner: &str,
        from_empty: bool,
    ) -> Self {
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let lanes = copies
            .into_iter()
            .enumerate()
            .map(|(index, copy)| {
                let (batches, rx) = mpsc::channel(DEPTH);
                let task = tokio::spawn(apply_queued(
                    store.clone(),
                    index,
                    copy,
                    owner.to_string(),
                    from_empty.then(Seen::new),
                    rx,
                    ack_tx.clone(),
                ));
                Lane {
                    batches,
                    in_flight: 0,
                    _task: AbortOnDrop(task),
                }
            })
            .collect();
        Self { lanes, acks }
    }

    /// Whether some batch is queued or being written.
    pub(crate) fn busy(&self) -> bool {
        self.lanes.iter().any(|l| l.in_flight > 0)
    }

    /// The next acknowledgement (pending forever when none can come).
    pub(crate) async fn ack(&mut self) -> Ack {
        match self.acks.recv().await {
            Some(ack) => ack,
            None => std::future::pending().await,
        }
    }

    /// Records an acknowledgement: the copy's new checkpoint goes into `targets` and `applied`
    /// is told; a failed batch is the pass's error.
    pub(crate) fn take(
        &mut self,
        (index, result): Ack,
        targets: &mut [Target],
        applied: &mut (dyn FnMut(&[Target]) + Send),
    ) -> Result<(), ProjectionError> {
        self.lanes[index].in_flight -= 1;
        targets[index] = result?;
        applied(targets);
        Ok(())
    }

    /// Queues `batch` for every copy, first waiting (and recording acknowledgements) while a
    /// copy has [`DEPTH`] batches queued.
    pub(crate) async fn send(
        &mut self,
        batch: Batch<E>,
        targets: &mut [Target],
        applied: &mut (dyn FnMut(&[Target]) + Send),
    ) -> Result<(), ProjectionError> {
        if batch.is_empty() {
            return Ok(());
        }
        let batch = Arc::new(batch);
        for index in 0..self.lanes.len() {
            while self.lanes[index].in_flight >= DEPTH {
                let ack = self.ack().await;
                self.take(ack, targets, applied)?;
            }
            let lane = &mut self.lanes[index];
            if lane.batches.send(batch.clone()).await.is_err() {
                // The applier stopped after a failure: its acknowledgement says why.
                loop {
                    let ack = self.ack().await;
                    self.take(ack, targets, applied)?;
                }
            }
            lane.in_flight += 1;
        }
        Ok(())
    }

    /// Waits until every queued batch is written, recording the acknowledgements.
    pub(crate) async fn flush(
        &mut self,
        targets: &mut [Target],
        applied: &mut (dyn FnMut(&[Target]) + Send),
    ) -> Result<(), ProjectionError> {
        while self.busy() {
            let ack = self.ack().await;
            self.take(ack, targets, applied)?;
        }
        Ok(())
    }
}

/// One copy's applier: writes each queued batch with the copy's new checkpoint, and reports;
/// stops at the first failure (or when the checkpoint moved under it, or a panic).
async fn apply_queued<E: Send + Sync + 'static>(
    store: Arc<dyn ProjectionStore>,
    index: usize,
    copy: Copy<E>,
    owner: String,
    mut seen: Option<Seen>,
    mut batches: mpsc::Receiver<Arc<Batch<E>>>,
    acks: mpsc::UnboundedSender<Ack>,
) {
    let Copy { model, mut target } = copy;
    while let Some(batch) = batches.recv().await {
        // A panic becomes the pass's error instead of a queue that is never acknowledged.
        let apply = apply(&*store, &*model, &target, &batch, &owner, seen.as_mut());
        let applied = AssertUnwindSafe(apply).catch_unwind().await;
        let projection = || target.name.clone();
        let result = match (batch.last(), applied) {
            (_, Err(_)) => Err(ProjectionError::ApplierGone {
                projection: projection(),
            }),
            (_, Ok(Err(e))) => Err(e),
            (_, Ok(Ok(false))) => Err(ProjectionError::Moved {
                projection: projection(),
            }),
            (Some(last), Ok(Ok(true))) => {
                target.position = last;
                target.events += batch.len();
                Ok(target.clone())
            }
            (None, Ok(Ok(true))) => Ok(target.clone()),
        };
        let failed = result.is_err();
        if acks.send((index, result)).is_err() || failed {
            return;
        }
    }
}

/// Applies one batch to one copy in one transaction: the checkpoint moves (false, writing
/// nothing, when it had moved under us), the rows the batch touches are loaded and folded, and
/// the changed rows are written.
async fn apply<E>(
    store: &dyn ProjectionStore,
    model: &dyn ReadModel<E>,
    target: &Target,
    batch: &Batch<E>,
    owner: &str,
    seen: Option<&mut Seen>,
) -> Result<bool, ProjectionError> {
    let Some(last) = batch.last() else {
        return Ok(true);
    };
    let schema = model.schema();
    let plan = Plan::of(model, batch, seen);
    let Some(mut tx) = store
        .begin(schema, target, last, batch.len(), owner)
        .await?
    else {
        return Ok(false);
    };
    let mut loaded = Vec::with_capacity(schema.tables.len());
    for (i, table) in schema.tables.iter().enumerate() {
        let keys = plan.to_load(i);
        loaded.push(if keys.is_empty() {
            Vec::new()
        } else {
            tx.load(table, &keys).await?
        });
    }
    let writes = fold(model, plan, loaded, batch).map_err(|source| ProjectionError::Row {
        projection: target.name.clone(),
        source,
    })?;
    tx.write(writes).await?;
    tx.commit().await?;
    Ok(true)
}
