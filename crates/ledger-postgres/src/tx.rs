//! Write transactions that stage appends and commit later, and how every transaction of
//! this crate is opened.

use ledger_core::{
    AppendResult, AppendTx, BoxFuture, ExpectedSeq, Limits, NewEvent, StoreError, StreamName,
    validate_batch,
};
use sqlx::{PgPool, Postgres, Transaction};

use crate::append::{
    Attempt, Explained, MAX_TRIES, Mode, Refusal, conflict, contention, explain, stream_seq,
    try_insert,
};
use crate::error::from_sqlx;

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
    let opening = tokio::spawn(async move {
        match statement {
            Some(statement) => pool.begin_with(statement).await,
            None => pool.begin().await,
        }
    });
    opening
        .await
        .map_err(|e| StoreError::backend_with("opening a transaction failed", e))?
        .map_err(from_sqlx)
}

/// An open PostgreSQL write transaction.
pub(crate) struct PgTx {
    /// The transaction the appends run in.
    tx: Transaction<'static, Postgres>,
    /// For explaining refusals after the transaction was aborted.
    pool: PgPool,
    /// Input limits.
    limits: Limits,
    /// Set once a statement failed: PostgreSQL then refuses everything but a rollback.
    aborted: bool,
}

impl PgTx {
    /// Wraps an open transaction.
    pub(crate) fn new(tx: Transaction<'static, Postgres>, pool: PgPool, limits: Limits) -> Self {
        Self {
            tx,
            pool,
            limits,
            aborted: false,
        }
    }

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
            let attempt = try_insert(&mut *self.tx, Mode::InTx, &stream, expected, &events).await;
            let refusal = match attempt {
                Ok(Attempt::Written(result)) => return Ok(result),
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
        Box::pin(self.stage(stream, expected, events))
    }

    fn commit(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move {
            if self.aborted {
                self.tx.rollback().await.map_err(from_sqlx)?;
                return Err(aborted_error());
            }
            self.tx.commit().await.map_err(from_sqlx)
        })
    }

    fn rollback(self: Box<Self>) -> BoxFuture<'static, Result<(), StoreError>> {
        Box::pin(async move { self.tx.rollback().await.map_err(from_sqlx) })
    }
}
