//! A TCP proxy a test can cut, to take a server "down" without touching it.
//!
//! [`Proxy::start`] listens on a free local port and forwards every connection to an upstream
//! address. [`Proxy::stop`] closes the listening socket (new connections are refused, as by a
//! stopped server) and cuts every connection it forwards; [`Proxy::black_hole`] accepts
//! connections but never answers (as a host lost on the network); [`Proxy::resume`] forwards
//! again on the same port.

use std::io;
use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// A cuttable TCP proxy on `127.0.0.1`.
pub struct Proxy {
    /// Where it listens.
    addr: SocketAddr,
    /// Where it forwards to.
    upstream: SocketAddr,
    /// The accept loop while the proxy is up; it owns every forwarded connection.
    running: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> io::Result<Proxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        Ok(Proxy {
            addr,
            upstream,
            running: Some(tokio::spawn(serve(listener, Some(upstream)))),
        })
    }

    /// A proxy in front of the server of the PostgreSQL URL `url`, and `url` through it.
    pub async fn in_front_of(url: &str) -> (Proxy, String) {
        let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
        let authority = rest.split(['/', '?']).next().unwrap_or(rest);
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let target = if host_port.contains(':') {
            host_port.to_string()
        } else {
            format!("{host_port}:5432")
        };
        let upstream = tokio::net::lookup_host(&target)
            .await
            .ok()
            .and_then(|mut addrs| addrs.next())
            .unwrap_or_else(|| panic!("cannot resolve the PostgreSQL server {target} of {url}"));
        let proxy = Proxy::start(upstream)
            .await
            .unwrap_or_else(|e| panic!("cannot start a proxy in front of {upstream}: {e}"));
        let via = url.replacen(host_port, &proxy.addr().to_string(), 1);
        (proxy, via)
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Refuses new connections and cuts the open ones; returns once the port is closed.
    pub async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
            // Its listener and connections are dropped with it.
            let _ = running.await;
        }
    }

    /// Forwards again on the same port.
    pub async fn resume(&mut self) -> io::Result<()> {
        self.listen(Some(self.upstream)).await
    }

    /// Cuts the open connections, then accepts new ones on the same port and holds them
    /// without a byte in either direction.
    pub async fn black_hole(&mut self) -> io::Result<()> {
        self.listen(None).await
    }

    /// Stops, then listens again, forwarding to `upstream` or (`None`) holding connections.
    async fn listen(&mut self, upstream: Option<SocketAddr>) -> io::Result<()> {
        self.stop().await;
        let listener = TcpListener::bind(self.addr).await?;
        self.running = Some(tokio::spawn(serve(listener, upstream)));
        Ok(())
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.abort();
        }
    }
}

/// Accepts connections until aborted (which drops them all) and pipes each to `upstream`, or
/// holds it unanswered when there is none.
async fn serve(listener: TcpListener, upstream: Option<SocketAddr>) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let Ok((mut client, _)) = accepted else { continue };
                connections.spawn(async move {
                    let Some(upstream) = upstream else {
                        return std::future::pending::<()>().await;
                    };
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
            // Reap finished connections so the set stays small.
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
