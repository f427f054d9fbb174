//! Serving the API on a TCP port until a shutdown signal, finishing requests in flight.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use ledger_core::EventStore;
use tokio::net::TcpListener;

use crate::raw_errors::JsonErrors;
use crate::routes::app;
use crate::state::{ApiConfig, AppState};

/// What `serve` needs: where to listen, the store, the admin token and the API's tunables.
pub struct ServeConfig {
    /// The address to listen on (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The event store (the caller picks the backend).
    pub store: Arc<dyn EventStore>,
    /// The admin's bearer token.
    pub admin_token: String,
    /// Tunables.
    pub api: ApiConfig,
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// Serving failed.
    #[error("the server failed: {0}")]
    Serve(std::io::Error),
}

/// A bound server, not yet serving: its address is known (useful with port 0).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Router,
}

impl Server {
    /// Binds `listen` for the API over `state`.
    pub async fn bind(listen: SocketAddr, state: AppState) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        let addr = listener.local_addr().map_err(bind_err)?;
        Ok(Self {
            listener,
            addr,
            app: app(state),
        })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes, then stops accepting and lets requests in flight finish.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServeError> {
        tracing::info!(addr = %self.addr, "serving the ledger API");
        axum::serve(JsonErrors(self.listener), self.app)
            .with_graceful_shutdown(shutdown)
            .await
            .map_err(ServeError::Serve)?;
        tracing::info!("the ledger API stopped");
        Ok(())
    }
}

/// Serves the API described by `config` until `shutdown` completes; requests in flight finish.
pub async fn serve(
    config: ServeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let state = AppState::new(config.store, &config.admin_token, config.api);
    Server::bind(config.listen, state)
        .await?
        .run(shutdown)
        .await
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
