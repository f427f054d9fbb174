//! Telling other processes that events were appended: after the commit, outside it, coalesced.
//!
//! PostgreSQL serialises the commits of transactions that notify, so a `NOTIFY` inside every
//! append made concurrent appends wait for each other. Instead, a successful append only bumps
//! a counter ([`Notifier::appended`], which never waits); a background task of the store sends
//! `SELECT pg_notify('ledger_events', '')` in a statement of its own on a pooled connection,
//! returned at once, and then pauses [`COALESCE`], so a process sends at most one notification
//! per pause however many appends it commits. Runners of other processes `LISTEN` on the
//! channel (and still poll), so a notification that is lost or fails only delays them; runners
//! of the writing process are woken in process, before any of this.
//!
//! The task starts with the first append and ends once every clone of the store is dropped
//! (after sending what is still owed); it holds no connection between two notifications and,
//! being a Tokio task, never keeps a process alive. A process about to exit calls
//! [`Notifier::flush`] so its last appends are announced.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;

use crate::tx::to_completion;

/// The channel runners listen on.
pub(crate) const CHANNEL: &str = "ledger_events";

/// Wakes the listeners of [`CHANNEL`] (in its own implicit transaction).
const NOTIFY: &str = "SELECT pg_notify('ledger_events', '')";

/// The pause after each notification, during which further appends are folded into the next.
pub(crate) const COALESCE: Duration = Duration::from_millis(5);

/// Longest a notification may take (waiting for a connection included) before it counts as
/// failed.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

/// Longest [`Notifier::flush`] waits.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(1);

/// The notifications a store owes other processes; shared by the store's clones.
pub(crate) struct Notifier {
    /// The pool the notifications are sent through.
    pool: PgPool,
    /// How many appends committed; the task announces up to this count. Dropping it ends the
    /// task.
    committed: watch::Sender<u64>,
    /// Up to which count of [`committed`](Self::committed) the task has sent (or given up on)
    /// a notification.
    announced: Arc<watch::Sender<u64>>,
    /// Held while starting the task, so that concurrent appends start only one.
    starting: Mutex<()>,
}

impl Notifier {
    /// A notifier sending through `pool`; its task starts with the first append.
    pub(crate) fn new(pool: PgPool) -> Self {
        Self {
            pool,
            committed: watch::channel(0).0,
            announced: Arc::new(watch::channel(0).0),
            starting: Mutex::new(()),
        }
    }

    /// Records that an append committed: other processes are told soon. Never waits.
    pub(crate) fn appended(&self) {
        self.committed.send_modify(|n| *n = n.wrapping_add(1));
        self.ensure_running();
    }

    /// Waits (at most [`FLUSH_TIMEOUT`]) until the appends recorded so far are announced.
    pub(crate) async fn flush(&self) {
        let owed = *self.committed.borrow();
        let mut announced = self.announced.subscribe();
        let done = announced.wait_for(|sent| *sent >= owed);
        let _ = tokio::time::timeout(FLUSH_TIMEOUT, done).await;
    }

    /// Starts the task unless it runs (it holds the only receiver of `committed`): on the
    /// first append, or after the runtime that ran it shut down.
    fn ensure_running(&self) {
        if self.committed.receiver_count() > 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::debug!("no runtime to notify other processes from");
            return;
        };
        let _starting = self.starting.lock().unwrap_or_else(|p| p.into_inner());
        if self.committed.receiver_count() > 0 {
            return;
        }
        // A new receiver has seen the current count: the task compares it with what was
        // announced, so the appends that started it are announced all the same.
        let committed = self.committed.subscribe();
        let pool = self.pool.clone();
        runtime.spawn(announce(committed, self.announced.clone(), move || {
            notify(pool.clone())
        }));
    }
}

/// The task: whenever `committed` is ahead of `announced`, calls `send` (true: it reached the
/// database) and then pauses [`COALESCE`]; returns once `committed`'s sender is dropped and
/// nothing is owed any more.
pub(crate) async fn announce<F, Fut>(
    mut committed: watch::Receiver<u64>,
    announced: Arc<watch::Sender<u64>>,
    mut send: F,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let mut failing = false;
    loop {
        let owed = *committed.borrow_and_update();
        if owed == *announced.borrow() {
            if committed.changed().await.is_err() {
                // The store is gone and everything it appended was announced.
                return;
            }
            continue;
        }
        let sent = send().await;
        if sent && failing {
            tracing::info!("notifying other processes of new events again");
        } else if !sent && !failing {
            tracing::warn!(
                "cannot notify other processes of new events; their projection runners \
                 find them at their next poll"
            );
        }
        failing = !sent;
        announced.send_replace(owed);
        tokio::time::sleep(COALESCE).await;
    }
}

/// Sends one notification on a pooled connection; false when it failed or took too long. The
/// statement runs to its end even when the wait is cut short (see `crate::tx`).
async fn notify(pool: PgPool) -> bool {
    let sent = to_completion(async move { sqlx::query(NOTIFY).execute(&pool).await });
    match tokio::time::timeout(NOTIFY_TIMEOUT, sent).await {
        Ok(Ok(Ok(_))) => true,
        Ok(Ok(Err(e))) => {
            tracing::debug!(error = %e, "the notification of new events failed");
            false
        }
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "the notification of new events was cancelled");
            false
        }
        Err(_) => {
            tracing::debug!("the notification of new events timed out");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};

    use super::*;

    /// A notifier task with a counting `send`; returns the counter, the count sender and the
    /// announced receiver.
    fn counting() -> (
        Arc<AtomicU64>,
        watch::Sender<u64>,
        watch::Receiver<u64>,
        tokio::task::JoinHandle<()>,
    ) {
        let sends = Arc::new(AtomicU64::new(0));
        let (committed, rx) = watch::channel(0u64);
        let announced = Arc::new(watch::channel(0u64).0);
        let seen = announced.subscribe();
        let counter = sends.clone();
        let task = tokio::spawn(announce(rx, announced, move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                true
            }
        }));
        (sends, committed, seen, task)
    }

    #[tokio::test]
    async fn appends_in_a_burst_are_announced_once_and_the_task_ends_with_the_store() {
        let (sends, committed, mut announced, task) = counting();
        // A single-threaded runtime: the task runs only once this test yields.
        for _ in 0..100 {
            committed.send_modify(|n| *n += 1);
        }
        announced.wait_for(|n| *n == 100).await.unwrap();
        assert_eq!(sends.load(Ordering::SeqCst), 1);

        committed.send_modify(|n| *n += 1);
        announced.wait_for(|n| *n == 101).await.unwrap();
        assert_eq!(sends.load(Ordering::SeqCst), 2);

        // Dropped with something owed: it is still sent, then the task ends.
        committed.send_modify(|n| *n += 1);
        drop(committed);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends once the store is gone")
            .unwrap();
        assert_eq!(sends.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn an_idle_task_ends_when_the_store_is_dropped() {
        let (sends, committed, _announced, task) = counting();
        tokio::task::yield_now().await;
        drop(committed);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the task ends once the store is gone")
            .unwrap();
        assert_eq!(sends.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_failing_send_does_not_stop_the_task() {
        let (committed, rx) = watch::channel(0u64);
        let announced = Arc::new(watch::channel(0u64).0);
        let mut seen = announced.subscribe();
        let task = tokio::spawn(announce(rx, announced, || async { false }));
        for n in 1..=3 {
            committed.send_replace(n);
            seen.wait_for(|sent| *sent == n).await.unwrap();
        }
        drop(committed);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .unwrap()
            .unwrap();
    }
}
