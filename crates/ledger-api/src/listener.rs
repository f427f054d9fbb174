//! Accepting and holding connections within bounds: at most `max_connections` open (the rest
//! wait in the listen backlog), a connection closed after `idle_timeout` without a request (a
//! new one before hyper allocates anything for it) or `header_timeout` after a request's first
//! byte if its headers are not complete by then, bounded buffers, and a full connection table
//! or descriptor limit logged once instead of per accept.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::Request;
use axum::response::Response;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;

use crate::raw_errors::JsonErrorsIo;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;

use crate::activity::{Activity, UntilSent, Watched};
use crate::shutdown::Draining;

/// The largest read or write buffer of one connection, in bytes (hyper's floor is 8 KiB; its
/// default, 400 KiB, would let each connection hold that much).
const MAX_BUF_SIZE: usize = 64 * 1024;

/// How long accepting pauses after a failure such as running out of file descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// A warning about the same condition is repeated at most this often.
const WARN_EVERY: Duration = Duration::from_secs(60);

/// Bounds on what clients can hold at the connection level.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Most connections open at once (at least 1); further clients wait in the listen backlog
    /// until one closes.
    pub max_connections: usize,
    /// Longest a connection may wait for a request: a new one for its first byte, a kept-alive
    /// one from the end of its previous response.
    pub idle_timeout: Duration,
    /// Longest a request's headers may take, from their first byte.
    pub header_timeout: Duration,
    /// How long shutdown waits for requests in flight before it closes their connections.
    pub shutdown_grace: Duration,
}

impl ConnectionLimits {
    /// The defaults: 1024 connections, 60 s idle, 10 s for headers, 10 s of shutdown grace.
    pub const DEFAULT: Self = Self {
        max_connections: 1024,
        idle_timeout: Duration::from_secs(60),
        header_timeout: Duration::from_secs(10),
        shutdown_grace: Duration::from_secs(10),
    };
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The open connections: their count, their tasks and the hyper settings they are served with.
pub(crate) struct Connections {
    limits: ConnectionLimits,
    http: http1::Builder,
    open: Arc<Semaphore>,
    graceful: GracefulShutdown,
    tasks: JoinSet<()>,
    full: Throttle,
    failing: Throttle,
}

impl Connections {
    /// No connections yet, served within `limits`.
    pub(crate) fn new(mut limits: ConnectionLimits) -> Self {
        limits.max_connections = limits.max_connections.max(1);
        let mut http = http1::Builder::new();
        // The idle and header deadlines are the connection's own (see `activity`).
        http.header_read_timeout(None).max_buf_size(MAX_BUF_SIZE);
        Self {
            open: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            http,
            graceful: GracefulShutdown::new(),
            tasks: JoinSet::new(),
            full: Throttle::default(),
            failing: Throttle::default(),
        }
    }

    /// Accepts connections from `listener` and serves `app` on each until `stop` completes.
    pub(crate) async fn accept(
        &mut self,
        listener: &TcpListener,
        app: &Router,
        draining: &Draining,
        stop: impl Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        loop {
            let permit = tokio::select! {
                permit = self.permit() => permit,
                () = &mut stop => return,
            };
            let accepted = loop {
                tokio::select! {
                    accepted = listener.accept() => break accepted,
                    Some(_) = self.tasks.join_next() => {}
                    () = &mut stop => return,
                }
            };
            match accepted {
                Ok((stream, _)) => self.spawn(stream, permit, app.clone(), draining.clone()),
                Err(e) if is_connection_error(&e) => {}
                Err(e) => {
                    drop(permit);
                    if self.failing.due() {
                        tracing::warn!(
                            error = %e,
                            open = self.open_count(),
                            "cannot accept connections: serving the open ones and retrying; \
                             if descriptors ran out, raise the open-file limit or lower max_connections"
                        );
                    }
                    tokio::select! {
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                        () = &mut stop => return,
                    }
                }
            }
        }
    }

    /// Lets the open connections finish: idle ones close at once, the others after their
    /// response; those still open after the grace period are closed.
    pub(crate) async fn drain(mut self) {
        let grace = self.limits.shutdown_grace;
        let graceful = std::mem::take(&mut self.graceful);
        if tokio::time::timeout(grace, graceful.shutdown())
            .await
            .is_err()
        {
            tracing::warn!(
                still_open = self.open_count(),
                grace_secs = grace.as_secs_f64(),
                "connections still open after the shutdown grace period: closing them"
            );
        }
        self.tasks.shutdown().await;
    }

    /// A free connection slot, waiting (and saying so, once) when there is none.
    async fn permit(&mut self) -> OwnedSemaphorePermit {
        if let Ok(permit) = self.open.clone().try_acquire_owned() {
            return permit;
        }
        if self.full.due() {
            tracing::warn!(
                max_connections = self.limits.max_connections,
                "the connection limit is reached: serving the open connections; new ones wait until one closes"
            );
        }
        self.open
            .clone()
            .acquire_owned()
            .await
            .expect("the connection semaphore is never closed")
    }

    fn open_count(&self) -> usize {
        self.limits.max_connections - self.open.available_permits()
    }

    /// Serves one connection: waits for its first byte (at most `idle_timeout`), then hands it
    /// to hyper, watched for a graceful shutdown and for its idle and header deadlines.
    fn spawn(
        &mut self,
        stream: TcpStream,
        permit: OwnedSemaphorePermit,
        app: Router,
        mut draining: Draining,
    ) {
        let http = self.http.clone();
        let watcher = self.graceful.watcher();
        let ConnectionLimits {
            idle_timeout,
            header_timeout,
            ..
        } = self.limits;
        self.tasks.spawn(async move {
            let _permit = permit;
            let _ = stream.set_nodelay(true);
            let mut first = [0u8; 1];
            let spoke = tokio::select! {
                peeked = tokio::time::timeout(idle_timeout, stream.peek(&mut first)) => {
                    matches!(peeked, Ok(Ok(n)) if n > 0)
                }
                () = draining.started() => false,
            };
            if !spoke {
                return;
            }
            let activity = Activity::reading_head();
            // hyper's own answers to unparsable requests get the JSON error body too.
            let io = TokioIo::new(JsonErrorsIo::new(Watched::new(stream, activity.clone())));
            let conn = http.serve_connection(io, TowerToHyperService::new(watch(app, &activity)));
            tokio::select! {
                served = watcher.watch(conn) => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, "connection closed with an error");
                    }
                }
                phase = activity.overdue(idle_timeout, header_timeout) => {
                    tracing::debug!(?phase, "closed a connection past its deadline");
                }
            }
        });
    }
}

/// `app`, telling `activity` when each request is being answered and when its response is sent.
fn watch(
    app: Router,
    activity: &Arc<Activity>,
) -> impl tower::Service<
    Request<hyper::body::Incoming>,
    Response = Response<UntilSent>,
    Error = std::convert::Infallible,
    Future: Send,
> + Clone
+ Send
+ 'static {
    let started = activity.clone();
    let sent = activity.clone();
    app.map_request(move |request: Request<hyper::body::Incoming>| {
        started.answering();
        request
    })
    .map_response(move |response: Response| response.map(|body| UntilSent::new(body, sent.clone())))
}

/// Errors of one incoming connection (it went away before it was accepted), not of the listener.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    matches!(
        e.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Says when a warning about a lasting condition is due: the first time, then at most once
/// per [`WARN_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
}

impl Throttle {
    fn due(&mut self) -> bool {
        let due = self.last.is_none_or(|at| at.elapsed() >= WARN_EVERY);
        if due {
            self.last = Some(Instant::now());
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_warning_is_due_once_per_period() {
        let mut throttle = Throttle::default();
        assert!(throttle.due());
        assert!(!throttle.due());
        throttle.last = Some(Instant::now() - WARN_EVERY);
        assert!(throttle.due());
        assert!(!throttle.due());
    }
}
