//! The appliers of one pass over the log: one task per copy, each applying the batches queued
//! for it in log order, so that copies filled together never wait for each other's writes and
//! the next batch is formed while the previous ones are written.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::batch::Batch;
use crate::error::ProjectionError;
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

/// One applier task per copy of a pass, and the acknowledgements they send back.
pub(crate) struct Appliers {
    lanes: Vec<Lane>,
    acks: mpsc::UnboundedReceiver<Ack>,
}

/// The queue of one copy's applier.
struct Lane {
    batches: mpsc::Sender<Arc<Batch>>,
    in_flight: usize,
    _task: AbortOnDrop,
}

impl Appliers {
    /// Starts an applier for each of `targets` (dropping [`Appliers`] stops them, rolling back
    /// a batch being written).
    pub(crate) fn start(store: &Arc<dyn ProjectionStore>, targets: &[Target], owner: &str) -> Self {
        let (ack_tx, acks) = mpsc::unbounded_channel();
        let lanes = targets
            .iter()
            .enumerate()
            .map(|(index, target)| {
                let (batches, rx) = mpsc::channel(DEPTH);
                let task = tokio::spawn(apply_queued(
                    store.clone(),
                    index,
                    target.clone(),
                    owner.to_string(),
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
        batch: Batch,
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
async fn apply_queued(
    store: Arc<dyn ProjectionStore>,
    index: usize,
    mut target: Target,
    owner: String,
    mut batches: mpsc::Receiver<Arc<Batch>>,
    acks: mpsc::UnboundedSender<Ack>,
) {
    while let Some(batch) = batches.recv().await {
        // A panic becomes the pass's error instead of a queue that is never acknowledged.
        let apply = async { store.apply(&target, &batch, &owner).await };
        let applied = AssertUnwindSafe(apply).catch_unwind().await;
        let result = match (batch.last(), applied) {
            (_, Err(_)) => Err(ProjectionError::ApplierGone { kind: target.kind }),
            (_, Ok(Err(e))) => Err(e.into()),
            (_, Ok(Ok(false))) => Err(ProjectionError::Moved { kind: target.kind }),
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
