//! Serving the API on a TCP port until a shutdown signal: stop accepting at once, let requests in
//! flight finish within the grace period, end event streams, then close what is left.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::{Extension, Router};
use ledger_core::EventStore;
use tokio::net::TcpListener;

use crate::listener::{ConnectionLimits, Connections};
use crate::routes::app;
use crate::shutdown::Draining;
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
    /// Bounds on connections and on shutdown.
    pub limits: ConnectionLimits,
}

/// Why the server could not start.
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
    /// The bound listener could not tell its address.
    #[error("cannot read the listening address: {0}")]
    Address(#[source] std::io::Error),
}

/// A bound server, not yet serving: its address is known (useful with port 0).
pub struct Server {
    listener: TcpListener,
    addr: SocketAddr,
    app: Router,
    limits: ConnectionLimits,
}

impl Server {
    /// Binds `listen` for the API over `state`, with the default [`ConnectionLimits`].
    pub async fn bind(listen: SocketAddr, state: AppState) -> Result<Self, ServeError> {
        let bind_err = |source| ServeError::Bind {
            addr: listen,
            source,
        };
        let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
        Self::from_listener(listener, state)
    }

    /// The API over `state` on a listener the caller bound (e.g. before opening the database,
    /// so that a busy port fails before anything is created).
    pub fn from_listener(listener: TcpListener, state: AppState) -> Result<Self, ServeError> {
        let addr = listener.local_addr().map_err(ServeError::Address)?;
        Ok(Self {
            listener,
            addr,
            app: app(state),
            limits: ConnectionLimits::default(),
        })
    }

    /// The same server with other connection limits.
    pub fn with_limits(mut self, limits: ConnectionLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves until `shutdown` completes; then stops accepting, ends event streams, lets
    /// requests in flight finish and closes what is still open after the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        tracing::info!(
            addr = %self.addr,
            max_connections = self.limits.max_connections,
            "serving the ledger API"
        );
        let (start_draining, draining) = Draining::channel();
        let app = self.app.layer(Extension(draining.clone()));
        let mut connections = Connections::new(self.limits);
        connections
            .accept(&self.listener, &app, &draining, shutdown)
            .await;
        drop(self.listener);
        let _ = start_draining.send(true);
        connections.drain().await;
        tracing::info!("the ledger API stopped");
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
        .with_limits(config.limits)
        .run(shutdown)
        .await;
    Ok(())
}
