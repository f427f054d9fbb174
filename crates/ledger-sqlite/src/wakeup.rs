//! Waking projection runners when another connection appends: one of another process, or the
//! writer of this one.
//!
//! SQLite has no `LISTEN`. What it has is `PRAGMA data_version`, which changes on a connection
//! when any other connection (of any process) has committed to the file since the connection
//! last looked; reading it is a look at the WAL index, no table is read. So while anyone
//! follows the log ([`Watcher::subscribe`]), one task per store reads it every [`EVERY`] on a
//! dedicated connection of its own (not a pooled one), and when it moved checks whether the
//! log grew (`max(position)`: projection commits move `data_version` too) before it wakes the
//! subscribers. Appends themselves do nothing more than commit.
//!
//! The task ends once the last subscriber is gone; it holds no reference to the store, so it
//! never keeps one (or, being a Tokio task, a process) alive. Runners still poll: a watcher
//! that cannot open its connection only delays them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::watch;

/// How often the watcher reads `data_version`.
pub(crate) const EVERY: Duration = Duration::from_millis(5);

/// The pause before opening the watcher's connection again after it failed.
const RETRY: Duration = Duration::from_secs(1);

/// Changes when another connection commits to the file.
const DATA_VERSION: &str = "PRAGMA data_version";

/// The end of the log (positions only grow: events are never deleted).
const LOG_END: &str = "SELECT coalesce(max(position), 0) FROM events";

/// The sender of a running watcher's wake-ups; the task holds a clone.
type Wakes = Arc<watch::Sender<u64>>;

/// The wake-ups of one database file, shared by the store's clones and its projections.
pub(crate) struct Watcher {
    /// How the watcher's own connection is opened (as the store's readers are).
    connect: SqliteConnectOptions,
    /// The running watcher's sender, if one runs.
    running: Arc<Mutex<Option<Wakes>>>,
}

impl Watcher {
    /// A watcher of the file `connect` opens; its task starts with the first subscriber.
    pub(crate) fn new(connect: SqliteConnectOptions) -> Self {
        Self {
            connect,
            running: Arc::default(),
        }
    }

    /// A stream that yields after other connections appended (and once when the watcher
    /// (re)connects, for what it cannot have seen); it never ends while the watcher runs.
    pub(crate) fn subscribe(&self) -> BoxStream<'static, ()> {
        let rx = self.receiver();
        futures::stream::unfold(rx, |mut rx| async move {
            rx.changed().await.ok().map(|()| ((), rx))
        })
        .boxed()
    }

    /// A receiver of the running watcher, starting one if none runs.
    fn receiver(&self) -> watch::Receiver<u64> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        // Only the slot holds the sender once the task is gone (its runtime shut down).
        if let Some(wakes) = running.as_ref()
            && Arc::strong_count(wakes) > 1
        {
            return wakes.subscribe();
        }
        let (tx, rx) = watch::channel(0u64);
        let wakes = Arc::new(tx);
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                *running = Some(wakes.clone());
                runtime.spawn(watch_file(
                    self.connect.clone(),
                    wakes,
                    self.running.clone(),
                ));
            }
            Err(_) => *running = None,
        }
        rx
    }
}

/// Whether the watcher should end: nobody subscribes any more. Decided under the slot's lock,
/// so that a subscriber arriving meanwhile either gets this watcher's receiver before the
/// check or finds the slot empty and starts another.
fn retire(wakes: &Wakes, running: &Mutex<Option<Wakes>>) -> bool {
    if wakes.receiver_count() > 0 {
        return false;
    }
    let mut slot = running.lock().unwrap_or_else(|p| p.into_inner());
    if wakes.receiver_count() > 0 {
        return false;
    }
    if slot.as_ref().is_some_and(|s| Arc::ptr_eq(s, wakes)) {
        *slot = None;
    }
    true
}

/// Wakes `wakes`' subscribers.
fn wake(wakes: &Wakes) {
    wakes.send_modify(|n| *n = n.wrapping_add(1));
}

/// The watcher task: reads `data_version` every [`EVERY`] until nobody subscribes.
async fn watch_file(
    connect: SqliteConnectOptions,
    wakes: Wakes,
    running: Arc<Mutex<Option<Wakes>>>,
) {
    let mut conn: Option<SqliteConnection> = None;
    // The last `data_version` and end of the log seen on the current connection.
    let mut seen: Option<(i64, i64)> = None;
    let mut failing = false;
    loop {
        if retire(&wakes, &running) {
            if let Some(conn) = conn {
                let _ = conn.close().await;
            }
            return;
        }
        let open = match conn.as_mut() {
            Some(open) => open,
            None => match SqliteConnection::connect_with(&connect).await {
                Ok(opened) => conn.insert(opened),
                Err(e) => {
                    if !failing {
                        tracing::warn!(
                            error = %e,
                            "cannot watch the database for other processes' appends; \
                             projection runners poll meanwhile"
                        );
                    }
                    failing = true;
                    pause(&wakes, RETRY).await;
                    continue;
                }
            },
        };
        match look(open, seen).await {
            Ok((now, grew)) => {
                if failing {
                    tracing::info!("watching the database for other processes' appends again");
                    failing = false;
                }
                // The first look on a connection wakes too: appends may have committed
                // while it was being opened.
                if grew || seen.is_none() {
                    wake(&wakes);
                }
                seen = Some(now);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!(
                        error = %e,
                        "lost the connection watching for other processes' appends"
                    );
                }
                failing = true;
                seen = None;
                if let Some(conn) = conn.take() {
                    let _ = conn.close().await;
                }
                pause(&wakes, RETRY).await;
                continue;
            }
        }
        pause(&wakes, EVERY).await;
    }
}

/// Waits `how_long`, or less once nobody subscribes any more.
async fn pause(wakes: &Wakes, how_long: Duration) {
    tokio::select! {
        () = tokio::time::sleep(how_long) => {}
        () = wakes.closed() => {}
    }
}

/// Reads `data_version`, and the log's end when it moved; returns both and whether the log
/// grew since `seen`.
async fn look(
    conn: &mut SqliteConnection,
    seen: Option<(i64, i64)>,
) -> Result<((i64, i64), bool), sqlx::Error> {
    let version: i64 = sqlx::query_scalar(DATA_VERSION)
        .fetch_one(&mut *conn)
        .await?;
    if let Some((before, end)) = seen
        && before == version
    {
        return Ok(((version, end), false));
    }
    let end: i64 = sqlx::query_scalar(LOG_END).fetch_one(&mut *conn).await?;
    let grew = seen.is_some_and(|(_, before)| end > before);
    Ok(((version, end), grew))
}
