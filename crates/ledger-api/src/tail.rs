//! The shared tail of the global log behind every live subscriber (`GET /v1/events/live`).
//!
//! One task per server follows the log and keeps its most recent events in a bounded ring;
//! every subscriber that has caught up takes its events from there, so N idle subscribers cost
//! one database read per wake-up, not N. The ring holds every event after its `base` in read
//! order (the tail reads gap-free pages), so a subscriber whose own cursor was reached by
//! gap-free reads and is at or past `base` finds everything it has not seen in the ring, or
//! later in it. A subscriber behind `base` (slow, or resuming from long ago) pages from the
//! database instead: nothing is buffered for it.
//!
//! The task starts with the first subscriber and ends once the last one is gone.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use ledger_core::{EventFilter, LogCursor, LogEvent, LogReader, StoreError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

/// Events the ring keeps.
const RING: usize = 4096;

/// Events per read of the tail task.
const PAGE: usize = 500;

/// Longest pause before the tail task reads again after a failed read.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What wakes the tail task besides its poll: this process's appends, other processes'.
pub(crate) struct Wakers {
    /// Fires after this process appends.
    pub(crate) local: Option<watch::Receiver<u64>>,
    /// Fires after other processes may have appended (made anew for each tail task).
    pub(crate) remote: Option<Arc<dyn Fn() -> BoxStream<'static, ()> + Send + Sync>>,
    /// How often the task reads when nothing woke it.
    pub(crate) poll: Duration,
}

/// The recent events: every event after `base` up to `end`, in read order.
struct Ring {
    /// Everything after this cursor is held (or not yet read).
    base: LogCursor,
    /// The last event read (`base` while none was).
    end: LogCursor,
    /// The events in `(base, end]`.
    events: VecDeque<Arc<Outgoing>>,
    /// The last read failed: subscribers wait for the next success.
    failing: bool,
}

/// The state a tail task and its subscribers share.
struct Shared {
    /// The ring.
    ring: Mutex<Ring>,
    /// Moves each time the ring grows.
    grown: watch::Sender<u64>,
}

/// An event as live streams send it: serialized once, shared by every subscriber.
pub(crate) struct Outgoing {
    /// The event.
    pub(crate) event: LogEvent,
    /// Its JSON text, as `GET /v1/events` gives it.
    pub(crate) json: String,
}

impl Outgoing {
    /// `event`, serialized.
    pub(crate) fn new(event: LogEvent) -> Arc<Self> {
        let json = serde_json::to_string(&event).expect("an event serializes");
        Arc::new(Self { event, json })
    }
}

/// What a subscriber at a cursor finds in the ring.
pub(crate) enum Found {
    /// Its cursor is before the ring: it must read from the database.
    Behind,
    /// The events after its cursor that pass its filter (at most the number asked), and the
    /// cursor it has now seen everything up to.
    Events(Vec<Arc<Outgoing>>, LogCursor),
}

/// A subscriber's handle on the running tail; the task ends when the last one is dropped.
pub(crate) struct Subscription {
    shared: Arc<Shared>,
    grown: watch::Receiver<u64>,
    _permit: OwnedSemaphorePermit,
}

impl Subscription {
    /// The events after `cursor` passing `filter`, at most `max` (see [`Found`]).
    pub(crate) fn after(&self, cursor: LogCursor, filter: &EventFilter, max: usize) -> Found {
        let ring = self.shared.ring.lock().unwrap_or_else(|p| p.into_inner());
        if cursor < ring.base || ring.failing {
            return Found::Behind;
        }
        let start = ring.events.partition_point(|e| e.event.cursor <= cursor);
        let mut out = Vec::new();
        let mut reached = cursor.max(ring.end);
        for event in ring.events.range(start..) {
            if out.len() == max {
                reached = out
                    .last()
                    .map_or(cursor, |e: &Arc<Outgoing>| e.event.cursor);
                break;
            }
            let envelope = &event.event.envelope;
            if filter.matches(envelope.stream.as_str(), &envelope.event_type) {
                out.push(event.clone());
            }
        }
        Found::Events(out, reached)
    }

    /// Completes after the ring has grown since the last call (or the task stopped).
    pub(crate) async fn grown(&mut self) {
        if self.grown.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Starts and finds the server's tail; clones share it.
#[derive(Clone)]
pub(crate) struct Tails {
    running: Arc<Mutex<Weak<Shared>>>,
    permits: Arc<Semaphore>,
}

/// Every subscriber slot is taken.
#[derive(Debug, thiserror::Error)]
#[error("{0} live subscribers are connected to this server, its most")]
pub(crate) struct TooManySubscribers(pub(crate) usize);

impl Tails {
    /// No tail yet; at most `max_subscribers` at once.
    pub(crate) fn new(max_subscribers: usize) -> Self {
        Self {
            running: Arc::new(Mutex::new(Weak::new())),
            permits: Arc::new(Semaphore::new(max_subscribers)),
        }
    }

    /// A subscription to the running tail, starting one over `log` if none runs.
    pub(crate) async fn subscribe(
        &self,
        log: &Arc<dyn LogReader>,
        wakers: impl FnOnce() -> Wakers,
        max_subscribers: usize,
    ) -> Result<Result<Subscription, TooManySubscribers>, StoreError> {
        let Ok(permit) = self.permits.clone().try_acquire_owned() else {
            return Ok(Err(TooManySubscribers(max_subscribers)));
        };
        let running = self
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        let shared = match running {
            Some(shared) => shared,
            None => {
                let base = log.cursor_at(log.last_position().await?).await?;
                let mut slot = self.running.lock().unwrap_or_else(|p| p.into_inner());
                match slot.upgrade() {
                    Some(shared) => shared,
                    None => {
                        let shared = Arc::new(Shared {
                            ring: Mutex::new(Ring {
                                base,
                                end: base,
                                events: VecDeque::new(),
                                failing: false,
                            }),
                            grown: watch::channel(0).0,
                        });
                        *slot = Arc::downgrade(&shared);
                        tokio::spawn(follow(Arc::downgrade(&shared), log.clone(), wakers()));
                        shared
                    }
                }
            }
        };
        let grown = shared.grown.subscribe();
        Ok(Ok(Subscription {
            shared,
            grown,
            _permit: permit,
        }))
    }
}

/// The tail task: reads what follows the ring's end whenever woken, until no subscriber is
/// left.
async fn follow(shared: Weak<Shared>, log: Arc<dyn LogReader>, mut wakers: Wakers) {
    let mut remote = wakers.remote.as_ref().map(|make| make());
    let mut backoff = Duration::from_millis(50);
    loop {
        let Some(strong) = shared.upgrade() else {
            return;
        };
        let end = strong.ring.lock().unwrap_or_else(|p| p.into_inner()).end;
        let mut wait = wakers.poll;
        match log.read_events(end, &EventFilter::all(), PAGE).await {
            Ok(events) => {
                backoff = Duration::from_millis(50);
                let full = events.len() == PAGE;
                let grew = !events.is_empty();
                // Serialized once here, outside the lock, for every subscriber.
                let events: Vec<Arc<Outgoing>> = events.into_iter().map(Outgoing::new).collect();
                {
                    let mut ring = strong.ring.lock().unwrap_or_else(|p| p.into_inner());
                    ring.failing = false;
                    if let Some(last) = events.last() {
                        ring.end = last.event.cursor;
                    }
                    ring.events.extend(events);
                    while ring.events.len() > RING {
                        if let Some(old) = ring.events.pop_front() {
                            ring.base = old.event.cursor;
                        }
                    }
                }
                if grew {
                    strong.grown.send_modify(|n| *n = n.wrapping_add(1));
                }
                if full {
                    continue;
                }
            }
            Err(error) => {
                tracing::warn!(
                    error = &error as &dyn std::error::Error,
                    "live log: reading the log failed; retrying"
                );
                strong
                    .ring
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .failing = true;
                strong.grown.send_modify(|n| *n = n.wrapping_add(1));
                wait = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
        drop(strong);
        let local = async {
            let alive = match wakers.local.as_mut() {
                Some(rx) => rx.changed().await.is_ok(),
                None => false,
            };
            if !alive {
                std::future::pending::<()>().await;
            }
        };
        let other = async {
            let alive = match remote.as_mut() {
                Some(stream) => stream.next().await.is_some(),
                None => false,
            };
            if !alive {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            () = local => {}
            () = other => {}
            () = tokio::time::sleep(wait) => {}
        }
    }
}
