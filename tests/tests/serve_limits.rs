//! What a client can hold, against real `ledger serve` processes: shutdown ends event streams
//! and cuts whatever is left after the grace period; slow headers, silent connections and
//! stalled bodies are closed; a slow answer is cut; the connection limit holds and is logged once.

use std::time::{Duration, Instant};

use ledger_tests::backend::{Db, sqlite_db};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::process::Command;
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout};

use crate::serve::{ADMIN, Served, client, serve_command, start};

/// How long a test waits for what the server must do within a second or two of its deadline.
const SOON: Duration = Duration::from_secs(10);

/// The `ledger serve` command on `db` with `flags`, logging warnings to its stderr.
fn serve_warning(db: &Db, flags: &[&str]) -> Command {
    let mut command = serve_command(db, Some(ADMIN), flags);
    command.env("RUST_LOG", "warn");
    command
}

/// A server on a fresh SQLite database with `flags`, logging warnings to its stderr.
async fn serve_with(db: &Db, flags: &[&str]) -> Served {
    start(serve_warning(db, flags)).await
}

/// `command` run under an open-file limit of `limit` (through `sh -c 'ulimit -n'`).
fn with_open_file_limit(command: &Command, limit: u32) -> Command {
    let inner = command.as_std();
    let mut limited = Command::new("sh");
    limited
        .arg("-c")
        .arg(format!("ulimit -n {limit} && exec \"$@\""))
        .arg("sh")
        .arg(inner.get_program())
        .args(inner.get_args())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    for (name, value) in inner.get_envs() {
        match value {
            Some(value) => limited.env(name, value),
            None => limited.env_remove(name),
        };
    }
    limited
}

/// Sends SIGTERM and asserts that the server exits 0 within `SOON`; returns its stderr.
async fn stops_soon(mut server: Served) -> String {
    server.terminate().await;
    let asked = Instant::now();
    let status = timeout(SOON, server.child.wait())
        .await
        .unwrap_or_else(|_| panic!("the server still runs {SOON:?} after SIGTERM"))
        .unwrap();
    assert!(status.success(), "ledger serve exited with {status}");
    assert!(asked.elapsed() < SOON);
    let mut log = String::new();
    if let Some(mut stderr) = server.child.stderr.take() {
        stderr.read_to_string(&mut log).await.unwrap();
    }
    log
}

/// Reads until the server closes the connection (end of stream or reset), at most `SOON`.
async fn read_until_closed(conn: &mut (impl AsyncReadExt + Unpin)) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = timeout(SOON, async {
        loop {
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(
        closed.is_ok(),
        "the server kept the connection open for {SOON:?}: {text}"
    );
    text
}

/// Reads a response head (up to the blank line) from `conn`.
async fn read_head(conn: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut byte = [0u8; 1];
    while !got.ends_with(b"\r\n\r\n") {
        let n = timeout(SOON, conn.read(&mut byte)).await.unwrap().unwrap();
        assert_ne!(n, 0, "closed before a response head");
        got.push(byte[0]);
    }
    String::from_utf8(got).unwrap()
}

/// Writes a request head one byte per second and never finishes it, for at most a minute.
fn slowloris(mut conn: OwnedWriteHalf) -> JoinHandle<()> {
    tokio::spawn(async move {
        let start = b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-slow: ".iter();
        for byte in start.chain(std::iter::repeat(&b'a')).take(60) {
            if conn.write_all(&[*byte]).await.is_err() {
                return;
            }
            sleep(Duration::from_secs(1)).await;
        }
    })
}

/// `GET /healthz` on `conn`, keeping it open; the response head.
async fn healthz(conn: &mut TcpStream) -> String {
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let head = read_head(conn).await;
    let length = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|n| n.trim().parse::<usize>().unwrap())
        })
        .expect("a content-length");
    let mut body = vec![0u8; length];
    conn.read_exact(&mut body).await.unwrap();
    head
}

/// An open progress stream receives a `shutdown` event with a `retry` on SIGTERM, then ends; an
/// idle kept-alive connection is closed; the server exits 0 (it used to wait for the clients).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_event_streams() {
    sqlite_db(|db| async move {
        let server = serve_with(&db, &["--shutdown-grace", "2s"]).await;
        let tenant = client(&db, vec![server.addr]).await.register("held").await;
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        let request = format!(
            "GET /v1/tenants/{tenant}/progress HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\n\r\n"
        );
        conn.write_all(request.as_bytes()).await.unwrap();
        let head = read_head(&mut conn).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.contains("text/event-stream"), "{head}");
        sleep(Duration::from_millis(300)).await;
        server.terminate().await;
        let rest = read_until_closed(&mut conn).await;
        assert!(rest.contains("event: shutdown"), "{rest}");
        assert!(rest.contains("retry:"), "{rest}");
        assert_eq!(read_until_closed(&mut kept).await, "");
        stops_soon(server).await;
    })
    .await;
}

/// A client that sends its headers one byte per second is closed after `--header-timeout`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_at_the_header_timeout() {
    sqlite_db(|db| async move {
        let server = serve_with(&db, &["--header-timeout", "1s"]).await;
        let (mut read, write) = TcpStream::connect(server.addr).await.unwrap().into_split();
        let drip = slowloris(write);
        let started = Instant::now();
        read_until_closed(&mut read).await;
        assert!(started.elapsed() < SOON);
        drip.abort();
        stops_soon(server).await;
    })
    .await;
}

/// A connection that never sends a byte, or sends no other request after its first, is closed
/// after `--idle-timeout`; the header timeout does not cut a kept-alive connection's wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_at_the_idle_timeout() {
    sqlite_db(|db| async move {
        let flags = ["--idle-timeout", "3s", "--header-timeout", "1s"];
        let server = serve_with(&db, &flags).await;
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        sleep(Duration::from_secs(2)).await;
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        assert_eq!(read_until_closed(&mut silent).await, "");
        assert_eq!(read_until_closed(&mut kept).await, "");
        stops_soon(server).await;
    })
    .await;
}

/// A body that stops halfway is answered 408 `body_timeout` after `--body-timeout`, and the
/// connection is closed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_body_is_answered_at_the_body_timeout() {
    sqlite_db(|db| async move {
        let server = serve_with(&db, &["--body-timeout", "1s"]).await;
        let mut conn = TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "POST /v1/streams/stalled-1/events HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{{\"events\":"
        );
        conn.write_all(head.as_bytes()).await.unwrap();
        let answer = read_until_closed(&mut conn).await;
        assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
        assert!(answer.contains("\"error\":\"body_timeout\""), "{answer}");
        stops_soon(server).await;
    })
    .await;
}

/// A request not answered within `--request-timeout` gets 503 `request_timeout` (here a query
/// waiting for a projection that no runner moves, which would wait 5 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_answer_is_cut_at_the_request_timeout() {
    sqlite_db(|db| async move {
        let flags = ["--request-timeout", "1s", "--no-projections"];
        let server = serve_with(&db, &flags).await;
        let api = client(&db, vec![server.addr]).await;
        api.register("slow-answer").await;
        let asked = Instant::now();
        let r = api.get("/v1/tenants?min_position=1").await;
        r.expect_error(503, "request_timeout");
        assert!(
            asked.elapsed() < Duration::from_secs(4),
            "{:?}",
            asked.elapsed()
        );
        assert!(r.header("x-request-id").is_some());
        stops_soon(server).await;
    })
    .await;
}

/// SIGTERM with a slow-header client connected: the server still exits 0 once the grace period
/// is over, long before the header timeout would close that client.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_not_held_by_a_slow_client() {
    sqlite_db(|db| async move {
        let flags = ["--shutdown-grace", "2s", "--header-timeout", "60s"];
        let server = serve_with(&db, &flags).await;
        let (_read, write) = TcpStream::connect(server.addr).await.unwrap().into_split();
        let drip = slowloris(write);
        sleep(Duration::from_secs(2)).await;
        stops_soon(server).await;
        drip.abort();
    })
    .await;
}

/// With `--max-connections 8` and 20 idle sockets, the connection already open is still served,
/// the limit is logged once, and new connections are served once the idle ones leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_limit_holds_and_is_logged_once() {
    sqlite_db(|db| async move {
        let server = serve_with(&db, &["--max-connections", "8"]).await;
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        let mut idle = Vec::new();
        for _ in 0..20 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        sleep(Duration::from_millis(500)).await;
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        drop(idle);
        drop(kept);
        let mut fresh = timeout(SOON, TcpStream::connect(server.addr))
            .await
            .unwrap()
            .unwrap();
        let head = timeout(SOON, healthz(&mut fresh)).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let log = stops_soon(server).await;
        let warnings = log.matches("the connection limit is reached").count();
        assert_eq!(warnings, 1, "{log}");
    })
    .await;
}

/// Under an open-file limit of 64 and `--max-connections 1000`, 80 idle sockets exhaust the
/// descriptors: that is logged once, the open connection is still served, and new connections
/// are served once the idle ones leave.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_descriptors_is_logged_once() {
    sqlite_db(|db| async move {
        let command = serve_warning(&db, &["--max-connections", "1000"]);
        let server = start(with_open_file_limit(&command, 64)).await;
        let mut kept = TcpStream::connect(server.addr).await.unwrap();
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        let mut idle = Vec::new();
        for _ in 0..80 {
            idle.push(TcpStream::connect(server.addr).await.unwrap());
        }
        sleep(Duration::from_millis(500)).await;
        assert!(healthz(&mut kept).await.starts_with("HTTP/1.1 200"));
        drop(idle);
        let mut fresh = TcpStream::connect(server.addr).await.unwrap();
        let head = timeout(SOON, healthz(&mut fresh)).await.unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        let log = stops_soon(server).await;
        let warnings = log.matches("cannot accept connections").count();
        assert_eq!(warnings, 1, "{log}");
    })
    .await;
}
