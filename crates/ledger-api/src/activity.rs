//! What one connection is doing, for its deadlines: waiting for a request (closed after the
//! idle timeout), reading a request's headers (closed after the header timeout, counted from
//! their first byte) or answering (bounded by the request and body timeouts instead).
//!
//! hyper's own `header_read_timeout` counts the wait between two requests of a kept-alive
//! connection into the header time, so it cannot keep an idle connection for a minute while
//! giving headers ten seconds; this does, by watching the socket's reads and the service's calls.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Which deadline applies to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Waiting for the first byte of a request.
    Idle,
    /// Reading a request's headers.
    Head,
    /// Answering a request (its body, the handler, the response).
    Busy,
}

impl Phase {
    const ALL: [Phase; 3] = [Phase::Idle, Phase::Head, Phase::Busy];
}

/// A connection's phase and when it began, shared by its socket, its service and its watchdog.
pub(crate) struct Activity {
    epoch: Instant,
    /// The phase (low 2 bits) and its start in milliseconds after `epoch` (the rest).
    state: AtomicU64,
    changed: Notify,
}

impl Activity {
    /// A connection whose first request has begun to arrive.
    pub(crate) fn reading_head() -> Arc<Self> {
        let activity = Arc::new(Self {
            epoch: Instant::now(),
            state: AtomicU64::new(0),
            changed: Notify::new(),
        });
        activity.enter(Phase::Head);
        activity
    }

    fn load(&self) -> u64 {
        self.state.load(Ordering::Acquire)
    }

    fn pack(&self, phase: Phase) -> u64 {
        let since = self.epoch.elapsed().as_millis() as u64;
        since << 2 | phase as u64
    }

    fn unpack(&self, state: u64) -> (Phase, Instant) {
        let phase = Phase::ALL[(state & 3) as usize];
        (phase, self.epoch + Duration::from_millis(state >> 2))
    }

    fn enter(&self, phase: Phase) {
        self.state.store(self.pack(phase), Ordering::Release);
        self.changed.notify_waiters();
    }

    /// The first byte of a request arrived (when the connection was idle).
    fn received(&self) {
        let current = self.load();
        if self.unpack(current).0 == Phase::Idle
            && self
                .state
                .compare_exchange(
                    current,
                    self.pack(Phase::Head),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.changed.notify_waiters();
        }
    }

    /// A request's headers are complete: it is being answered.
    pub(crate) fn answering(&self) {
        self.enter(Phase::Busy);
    }

    /// The response is sent (or abandoned): the connection waits for the next request.
    fn answered(&self) {
        self.enter(Phase::Idle);
    }

    /// Completes with the phase whose deadline passed: `idle` after the last response, `header`
    /// after a request's first byte; never while a request is being answered.
    pub(crate) async fn overdue(&self, idle: Duration, header: Duration) -> Phase {
        loop {
            let changed = self.changed.notified();
            let state = self.load();
            let (phase, since) = self.unpack(state);
            let deadline = match phase {
                Phase::Idle => since + idle,
                Phase::Head => since + header,
                Phase::Busy => {
                    changed.await;
                    continue;
                }
            };
            tokio::select! {
                () = tokio::time::sleep_until(deadline) => {
                    if self.load() == state {
                        return phase;
                    }
                }
                () = changed => {}
            }
        }
    }
}

/// A socket that tells its [`Activity`] when a request starts to arrive.
pub(crate) struct Watched<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Watched<S> {
    /// `io`, reporting to `activity`.
    pub(crate) fn new(io: S, activity: Arc<Activity>) -> Self {
        Self { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Watched<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.received();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Watched<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// A response body that tells its [`Activity`] when it is done (sent or dropped).
pub(crate) struct UntilSent {
    body: Body,
    activity: Arc<Activity>,
}

impl UntilSent {
    /// `body`, reporting to `activity`.
    pub(crate) fn new(body: Body, activity: Arc<Activity>) -> Self {
        Self { body, activity }
    }
}

impl HttpBody for UntilSent {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Drop for UntilSent {
    fn drop(&mut self) {
        self.activity.answered();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: Duration = Duration::from_secs(60);
    const HEADER: Duration = Duration::from_secs(10);

    /// Whether `overdue` completes within `wait` of (paused) time.
    async fn overdue_within(activity: &Activity, wait: Duration) -> Option<Phase> {
        tokio::time::timeout(wait, activity.overdue(IDLE, HEADER))
            .await
            .ok()
    }

    #[tokio::test(start_paused = true)]
    async fn headers_get_the_header_timeout_and_waits_get_the_idle_timeout() {
        let activity = Activity::reading_head();
        assert_eq!(
            overdue_within(&activity, HEADER + Duration::from_millis(5)).await,
            Some(Phase::Head)
        );

        let activity = Activity::reading_head();
        activity.answering();
        assert_eq!(overdue_within(&activity, IDLE * 2).await, None);
        drop(UntilSent::new(Body::empty(), activity.clone()));
        // Idle after the response: the header timeout no longer applies, the idle one does.
        assert_eq!(overdue_within(&activity, HEADER * 2).await, None);
        assert_eq!(overdue_within(&activity, IDLE).await, Some(Phase::Idle));
    }

    #[tokio::test(start_paused = true)]
    async fn a_byte_after_idling_starts_the_header_timeout() {
        let activity = Activity::reading_head();
        activity.answering();
        activity.answered();
        tokio::time::advance(Duration::from_secs(30)).await;
        activity.received();
        assert_eq!(
            overdue_within(&activity, HEADER - Duration::from_secs(1)).await,
            None
        );
        assert_eq!(
            overdue_within(&activity, Duration::from_secs(2)).await,
            Some(Phase::Head)
        );
    }
}
