//! Checkpoints of the write-ahead log, off the writers' path.
//!
//! In WAL mode, a commit that leaves the WAL past `wal_autocheckpoint` pages copies the WAL
//! into the database file and syncs both before it returns, holding the one writer
//! connection meanwhile: under a steady load, one append in many waited for a whole
//! checkpoint (the tail of every command behind it). So each store runs a task that makes a
//! `PASSIVE` checkpoint every [`EVERY`] (10 ms) on a connection of its own: it copies what no
//! reader still needs without taking the write lock, so appends carry on during it. While writes
//! go on it cannot restart the WAL; the writers' own checkpoint still does, every
//! `wal_autocheckpoint` pages, but finds almost nothing left to copy. It is also the backstop
//! when the task cannot keep up or its runtime is gone. Durability is unchanged: a commit is in
//! the WAL either way.
//!
//! The task ends when the store is dropped (with its last clone); it holds no reference to the
//! store, so it never keeps one alive.

use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::watch;

/// How often the task checkpoints.
pub(crate) const EVERY: Duration = Duration::from_millis(10);

/// The pause after a failure (the file cannot be opened or written just now).
const RETRY: Duration = Duration::from_secs(1);

/// Copies the WAL's frames that no reader needs into the database file, without waiting.
const CHECKPOINT: &str = "PRAGMA wal_checkpoint(PASSIVE)";

/// Runs the checkpoint task of one store; dropping it stops the task.
pub(crate) struct Checkpointer {
    /// Dropped with the store: the task sees its receiver close and ends.
    _running: watch::Sender<()>,
}

impl Checkpointer {
    /// Starts the task on the current Tokio runtime (none: the writers' checkpoints do all).
    pub(crate) fn start(connect: SqliteConnectOptions) -> Self {
        let (running, stopped) = watch::channel(());
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(run(connect, stopped));
            }
            Err(_) => tracing::debug!("no runtime to checkpoint the WAL from"),
        }
        Self { _running: running }
    }
}

/// Checkpoints every [`EVERY`] until `stopped` closes. A failure is logged, and the task
/// pauses [`RETRY`] before it opens a new connection. It never creates the file: one removed
/// under it stays removed.
async fn run(connect: SqliteConnectOptions, mut stopped: watch::Receiver<()>) {
    let connect = connect.create_if_missing(false);
    let mut conn: Option<SqliteConnection> = None;
    let mut pause = EVERY;
    loop {
        tokio::select! {
            closed = stopped.changed() => if closed.is_err() {
                break;
            },
            () = tokio::time::sleep(pause) => {}
        }
        pause = RETRY;
        let c = match conn.as_mut() {
            Some(c) => c,
            None => match SqliteConnection::connect_with(&connect).await {
                Ok(opened) => conn.insert(opened),
                Err(error) => {
                    tracing::debug!(%error, "the WAL checkpointer could not open its connection");
                    continue;
                }
            },
        };
        match sqlx::query(CHECKPOINT).execute(&mut *c).await {
            Ok(_) => pause = EVERY,
            Err(error) => {
                tracing::debug!(%error, "a WAL checkpoint failed; the checkpointer reconnects");
                conn = None;
            }
        }
    }
    if let Some(conn) = conn {
        let _ = conn.close().await;
    }
}
