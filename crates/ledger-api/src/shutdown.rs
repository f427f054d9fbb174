//! Shutting down: the signal that starts it, and the handle everything long-lived watches.

use std::future::Future;

use tokio::sync::watch;

/// Completes once the server starts shutting down. The accept loop, connections waiting for
/// their first request and Server-Sent Event streams each watch a clone, so none of them keeps
/// the process alive past the shutdown grace period.
#[derive(Clone, Debug)]
pub(crate) struct Draining(watch::Receiver<bool>);

impl Draining {
    /// The sender that starts the shutdown, and the handle that observes it.
    pub(crate) fn channel() -> (watch::Sender<bool>, Self) {
        let (start, observe) = watch::channel(false);
        (start, Self(observe))
    }

    /// Completes once shutdown has started (at once if it already has, or if the server is gone).
    pub(crate) async fn started(&mut self) {
        let _ = self.0.wait_for(|draining| *draining).await;
    }
}

/// Completes when the server starts shutting down; never without a server (in-process use,
/// where no handle is given).
pub(crate) async fn shutting_down(draining: &mut Option<Draining>) {
    match draining {
        Some(d) => d.started().await,
        None => std::future::pending().await,
    }
}

/// A future that completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The signal handlers are installed when this is called (inside a Tokio runtime), not when the
/// future is first polled, so a signal sent right after the server says it is ready is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    let (interrupt, terminate) = {
        use tokio::signal::unix::{SignalKind, signal};
        (
            signal(SignalKind::interrupt()).ok(),
            signal(SignalKind::terminate()).ok(),
        )
    };
    async move {
        #[cfg(unix)]
        {
            let wait = |s: Option<tokio::signal::unix::Signal>| async move {
                match s {
                    Some(mut s) => {
                        s.recv().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = wait(interrupt) => {}
                () = wait(terminate) => {}
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        tracing::info!("shutdown signal received: finishing requests in flight");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn draining_completes_for_every_observer_once_started() {
        let (start, mut first) = Draining::channel();
        let mut second = first.clone();
        let waiting = tokio::spawn(async move { first.started().await });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        start.send(true).unwrap();
        waiting.await.unwrap();
        // A late observer sees it at once.
        tokio::time::timeout(std::time::Duration::from_secs(1), second.started())
            .await
            .unwrap();
    }
}
