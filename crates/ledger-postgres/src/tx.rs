//! Write transactions that stage appends and commit later, how every transaction of this
//! crate is opened and ended, and database work that a caller dropped midway cannot cancel.
//!
//! sqlx 0.9.0 returns a connection whose future was dropped during a statement to the pool
//! with the statement still running; the pool's check on release then waits for it. A lost
//! race's unique violation then surfaces as a warning and the connection is closed; a dropped
//! `COMMIT` is followed by the `ROLLBACK` the dropped transaction queues ("there is no
//! transaction in progress"). HTTP clients that go away, timeouts and aborted tasks all drop
//! futures midway, so every operation that writes or ends a transaction runs on a task it does
//! not share with its caller ([`to_completion`]).

use std::future::Future;
use std::sync::Arc;

use ledger_core::{
    AppendResult, AppendTx, BoxFuture, ExpectedSeq, Limits, NewEvent, StoreError, StreamName,
    validate_batch,
};
use sqlx::{PgPool, Postgres, Transaction};

use crate::append::{
    Attempt, Explained, MAX_TRIES, Mode, Refusal, conflict, contention, explain, read_head,
    stream_seq, try_insert,
};
use crate::error::from_sqlx;
use crate::wakeup::Notifier;

/// Runs `work` on a task of its own and waits for its result; if the caller is dropped
/// meanwhile, `work` still runs to its end (and its result is dropped). A panic in `work`
/// resumes in the caller.
pub(crate) async fn to_completion<T: Send + 'static>(
    work: impl Future<Output = T> + Send + 'static,
) -> Result<T, StoreError> {
    match tokio::spawn(work).await {
        Ok(done) => Ok(done),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(StoreError::unavailable_with(
            "database work was cancelled by the runtime shutting down",
            e,
        )),
    }
}

/// Opens a transaction on a pooled connection with `BEGIN`, or with `statement` (a `BEGIN`
/// with options or settings), such that a caller dropped meanwhile cannot leave the
/// connection inside it.
///
/// sqlx 0.9.0 counts a transaction as open only once its `BEGIN` has answered, and rolls back
/// only counted ones when dropped (transact-rs/sqlx#4393): a future dropped while `BEGIN` is in
/// flight (an aborted log reader, a timeout, a client gone) returned its connection to the pool
/// inside the transaction, and the next user's statements ran in it. So the `BEGIN` runs on a
/// task of its own, which finishes even when its caller is gone; the transaction it opened is
/// then dropped, and rolled back, like any other.
pub(crate) async fn begin(
    pool: &PgPool,
    statement: Option<&'static str>,
) -> Result<Transaction<'static, Postgres>, StoreError> {
    let pool = pool.clone();
    let opening = to_completion(async move {
        match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        }
    });
    opening.await?.map_err(from_sqlx)
}

/// Commits `tx` on a task of its own: a `COMMIT` whose caller is dropped still answers
/// before the connection goes back to the pool (see the module doc).
pub(crate) async fn commit(tx: Transaction<'static, Postgres>) -> Result<(), StoreError> {
    to_completion(tx.commit()).await?.map_err(from_sqlx)
}

/// Ends a read-only transaction without waiting: dropping it queues its `ROLLBACK`, which
/// the pool sends with its check when the connection comes back, so there is no statement
/// in flight for a dropped caller to cut short.
pub(crate) fn end_read_only(tx: Transaction<'static, Postgres>) {
    drop(tx);
}

/// An open PostgreSQL write transaction; each of its statements runs on a task of its own,
/// so a caller dropped midway leaves no statement running on its connection.
pub(crate) struct PgTx(
    /// The transaction, between two operations; `None` once one was dropped midway (that
    /// operation's task then rolled the transaction back).
    Option<Open>,
);

/// The state of a [`PgTx`].
struct Open {
    /// The transaction the appends run in.
    tx: Transaction<'static, Postgres>,
    /// For explaining refusals after the transaction was aborted.
    pool: PgPool,
    /// Input limits.
    limits: Limits,
    /// Set once a statement failed: PostgreSQL then refuses everything but a rollback.
    aborted: bool,
    /// Set once an append wrote events (not a replay): the commit then notifies.
    wrote: bool,
    /// Tells other processes after the commit.
    wakeup: Arc<Notifier>,
}

impl PgTx {
    /// Wraps an open transaction.
    pub(crate) fn new(
        tx: Transaction<'static, Postgres>,
        pool: PgPool,
        limits: Limits,
        wakeup: Arc<Notifier>,
    ) -> Self {
        Self(Some(Open {
            tx,
            pool,
            limits,
            aborted: false,
            wrote: false,
            wakeup,
        }))
    }

    /// The transaction, unless an operation on it was dropped midway.
    fn take(&mut self) -> Result<Open, StoreError> {
        self.0.take().ok_or_else(|| {
            StoreError::backend(
                "an earlier append of this transaction was dropped midway, which rolled it \
                 back; nothing was committed",
            )
        })
    }
}

impl Open {
    /// Stages one append, answering refusals as the autocommit append does where it can.
    async fn stage(
        &mut self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, StoreError> {
        validate_batch(&events, &self.limits)?;
        if self.aborted {
            return Err(aborted_error());
        }
        for _ in 0..MAX_TRIES {
            let head = read_head(&mut *self.tx, &stream).await.map_err(|err| {
                self.aborted = true;
                from_sqlx(err)
            })?;
            let attempt = if expected.admits(head.seq) {
                try_insert(&mut *self.tx, Mode::InTx, &stream, head, &events).await
            } else {
                Ok(Attempt::Refused(Refusal::NotAdmitted))
            };
            let refusal = match attempt {
                Ok(Attempt::Written(result, _)) => return Ok(result),
                Ok(Attempt::Refused(refusal)) => refusal,
                Err(err) => {
                    self.aborted = true;
                    return Err(from_sqlx(err));
                }
            };
            if refusal == Refusal::NotAdmitted {
                // The transaction is intact: explain inside it, staged appends included.
                let explained = explain(&mut self.tx, &stream, expected, &events, &self.limits)
                    .await
                    .inspect_err(|e| self.aborted = !is_answer(e))?;
                match explained {
                    Explained::Replayed(result) => return Ok(result),
                    // Another writer committed between the two statements: try again.
                    Explained::Admitted => continue,
                }
            }
            // A unique violation aborted the transaction; explain from committed state. A
            // replay or a lost race can no longer be answered with success, so they become
            // conflicts: the caller rolls back, and its retry is answered properly.
            self.aborted = true;
            let mut conn = self.pool.acquire().await.map_err(from_sqlx)?;
            return match explain(&mut conn, &stream, expected, &events, &self.limits).await? {
                Explained::Replayed(_) | Explained::Admitted => {
                    let head = stream_seq(&mut conn, &stream).await?;
                    Err(conflict(&mut conn, &stream, expected, head, &self.limits).await?)
                }
            };
        }
        Err(contention(&stream))
    }

    /// Commits, or rolls back and fails when a statement failed; a commit that wrote
    /// events notifies other processes.
    async fn commit(self) -> Result<(), StoreError> {
        if self.aborted {
            self.tx.rollback().await.map_err(from_sqlx)?;
            return Err(aborted_error());
        }
        self.tx.commit().await.map_err(from_sqlx)?;
        if self.wrote {
            self.wakeup.appended();
        }
        Ok(())
    }
}

/// Whether `err` is an answer about the append rather than a failure of the database.
fn is_answer(err: &StoreError) -> bool {
    matches!(
        err,
        StoreError::Conflict(_) | StoreError::EventIdReused { .. }
    )
}

/// The error of using a transaction after one of its statements failed.
fn aborted_error() -> StoreError {
    StoreError::backend(
        "the transaction failed earlier and must be rolled back; nothing was committed",
    )
}

impl AppendTx for PgTx {
    fn append(
        &mut self,
        stream: StreamName,
        expected: ExpectedSeq,
        events: Vec<NewEvent>,
    ) -> BoxFuture<'_, Result<AppendResult, StoreError>> {
        Box::pin(async move {
            let mut open = self.take()?;
            let (open, staged) = to_completion(async move {
                let staged = open.stage(stream, expected, events).await;
                open.wrote |= matches!(&staged, Ok(r) if !r.replayed);
                (open, staged)
            })
            .await?;
            self.0 = Some(open);
            staged
        })
    }

    fn commit(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            let open = self.take()?;
            to_completion(open.commit()).await?
        })
    }

    fn rollback(mut self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            // After an operation dropped midway, the transaction is rolled back already.
            let Some(open) = self.0.take() else {
                return Ok(());
            };
            to_completion(open.tx.rollback()).await?.map_err(from_sqlx)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_finishes_when_its_caller_is_dropped() {
        let finished = Arc::new(AtomicBool::new(false));
        let flag = finished.clone();
        let caller = to_completion(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            flag.store(true, Ordering::SeqCst);
        });
        let gave_up = tokio::time::timeout(Duration::from_millis(1), caller).await;
        assert!(gave_up.is_err());
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(finished.load(Ordering::SeqCst));
    }
}
