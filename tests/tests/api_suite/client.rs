//! The suite's HTTP client: requests to the API either in process (`tower::ServiceExt::oneshot`
//! on the router) or over TCP to running `ledger serve` processes, round-robin.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use futures::TryStreamExt;
use http_body_util::BodyExt;
use ledger_api::{ApiConfig, AppState, app};
use ledger_core::{ChainLog, KeyStore, LogReader};
use ledger_core::{EventStore, ReadAll, Seq, StreamName};
use ledger_projector::{ProjectionStore, Projector, Signal, SignalingStore};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;
use uuid::Uuid;

/// The admin token of in-process test APIs.
pub const ADMIN: &str = "test-admin-token-0123456789";

/// The store a case runs against.
pub type Store = Arc<dyn EventStore>;

/// Where requests go.
#[derive(Clone)]
enum Transport {
    /// The router, in process.
    Oneshot(Router),
    /// Running servers, taken in turn.
    Tcp(Arc<Vec<SocketAddr>>, Arc<AtomicUsize>),
}

/// An API under test, plus its store for checks behind its back.
#[derive(Clone)]
pub struct Api {
    transport: Transport,
    /// The admin token.
    pub admin: String,
    /// The store behind the API.
    pub store: Store,
    /// The projection runners of an API built [`with_projections`](Api::with_projections).
    runners: Option<Arc<Runners>>,
}

/// Projection runners in a background task, stopped when the last API clone is dropped.
struct Runners(tokio::task::JoinHandle<()>);

impl Drop for Runners {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Reply {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` when it is not JSON).
    pub body: Value,
    /// The body as text.
    pub text: String,
}

impl Reply {
    /// The error code of an error body.
    pub fn code(&self) -> &str {
        self.body["error"].as_str().unwrap_or("")
    }

    /// The body as NDJSON: one value per line, blank (heartbeat) lines skipped.
    pub fn ndjson(&self) -> Vec<Value> {
        self.text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Panics unless the status is `status` (and, for errors, the body has a code and message).
    #[track_caller]
    pub fn expect(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.as_u16(),
            status,
            "unexpected answer: {}",
            self.text
        );
        if status >= 400 {
            assert!(
                !self.code().is_empty(),
                "error without a code: {}",
                self.text
            );
            assert!(
                self.body["message"].as_str().is_some_and(|m| !m.is_empty()),
                "error without a message: {}",
                self.text
            );
        }
        self
    }

    /// Panics unless this is an error with `status` and `code`.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> &Self {
        self.expect(status);
        assert_eq!(self.code(), code, "unexpected error: {}", self.text);
        self
    }
}

impl Api {
    /// The API over `store` in process, with default tunables.
    pub fn new(store: Store) -> Self {
        Self::with_config(store, ApiConfig::default())
    }

    /// The API over `store` in process that also serves the streams' chain heads from `chains`.
    pub fn with_chains(store: Store, chains: Arc<dyn ChainLog>) -> Self {
        let state = AppState::new(store.clone(), ADMIN, ApiConfig::default()).with_chains(chains);
        Self {
            transport: Transport::Oneshot(app(state)),
            admin: ADMIN.to_string(),
            store,
            runners: None,
        }
    }

    /// The API over `store` in process, with `config`.
    pub fn with_config(store: Store, config: ApiConfig) -> Self {
        let state = AppState::new(store.clone(), ADMIN, config);
        Self {
            transport: Transport::Oneshot(app(state)),
            admin: ADMIN.to_string(),
            store,
            runners: None,
        }
    }

    /// The API over `store` in process that also serves the global log from `log`.
    pub fn with_log(store: Store, log: Arc<dyn LogReader>) -> Self {
        Self::with_log_config(store, log, ApiConfig::default())
    }

    /// [`with_log`](Self::with_log) with `config`.
    pub fn with_log_config(store: Store, log: Arc<dyn LogReader>, config: ApiConfig) -> Self {
        let state = AppState::new(store.clone(), ADMIN, config).with_log(log);
        Self {
            transport: Transport::Oneshot(app(state)),
            admin: ADMIN.to_string(),
            store,
            runners: None,
        }
    }

    /// The API over `store` in process, serving the read models kept in `projections` by
    /// runners in this process (reading `log`, woken by the API's appends), with `config`.
    pub fn with_projections(
        store: Store,
        log: Arc<dyn LogReader>,
        projections: Arc<dyn ProjectionStore>,
        config: ApiConfig,
    ) -> Self {
        Self::served(store, log, projections, None, config)
    }

    /// [`with_projections`](Self::with_projections) sealing personal fields with the tenants'
    /// keys in `keys`, as `ledger serve` does.
    pub fn with_keys(
        store: Store,
        log: Arc<dyn LogReader>,
        projections: Arc<dyn ProjectionStore>,
        keys: Arc<dyn KeyStore>,
    ) -> Self {
        Self::served(store, log, projections, Some(keys), ApiConfig::default())
    }

    /// The API with read models kept by runners in this process, and keys when given.
    fn served(
        store: Store,
        log: Arc<dyn LogReader>,
        projections: Arc<dyn ProjectionStore>,
        keys: Option<Arc<dyn KeyStore>>,
        config: ApiConfig,
    ) -> Self {
        let signal = Signal::new();
        let signaled: Store = Arc::new(SignalingStore::new(store.clone(), signal.clone()));
        let projector = Projector::new(log.clone(), projections, ledger_read_models::catalog())
            .with_signal(signal);
        let runner = projector.clone();
        let task = tokio::spawn(async move {
            let names = runner.catalog().names();
            runner
                .run(&names, std::future::pending())
                .await
                .expect("the catalog's read models run");
        });
        let mut state = AppState::new(signaled, ADMIN, config)
            .with_projections(projector)
            .with_log(log);
        if let Some(keys) = keys {
            state = state.with_keys(keys);
        }
        Self {
            transport: Transport::Oneshot(app(state)),
            admin: ADMIN.to_string(),
            store,
            runners: Some(Arc::new(Runners(task))),
        }
    }

    /// An API served by `router` (built by the caller) over `store`.
    pub fn from_router(router: Router, store: Store) -> Self {
        Self {
            transport: Transport::Oneshot(router),
            admin: ADMIN.to_string(),
            store,
            runners: None,
        }
    }

    /// Running servers at `addrs` sharing `store`, reached over TCP in turn.
    pub fn tcp(addrs: Vec<SocketAddr>, admin: String, store: Store) -> Self {
        Self {
            transport: Transport::Tcp(Arc::new(addrs), Arc::new(AtomicUsize::new(0))),
            admin,
            store,
            runners: None,
        }
    }

    /// A request.
    pub fn req(&self, method: &str, uri: impl Into<String>) -> Req {
        Req {
            api: self.clone(),
            method: Method::from_bytes(method.as_bytes()).expect("a method"),
            uri: uri.into(),
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A GET with the admin token.
    pub async fn get(&self, uri: impl Into<String>) -> Reply {
        self.req("GET", uri).admin().send().await
    }

    /// Registers a tenant with `slug` (admin) and returns its id.
    pub async fn register(&self, slug: &str) -> Uuid {
        let r = self
            .req("POST", "/v1/tenants")
            .admin()
            .json(json!({"slug": slug, "name": format!("{slug} Ltd")}))
            .send()
            .await;
        r.expect(201);
        r.body["tenant_id"].as_str().unwrap().parse().unwrap()
    }

    /// Issues a tenant token (admin).
    pub async fn tenant_token(&self, tenant: Uuid) -> String {
        let r = self
            .req("POST", format!("/v1/tenants/{tenant}/tokens"))
            .admin()
            .send()
            .await;
        r.expect(201);
        r.body["token"].as_str().unwrap().to_string()
    }

    /// Runs a command with the admin token.
    pub async fn command(&self, tenant: Uuid, name: &str, body: Value) -> Reply {
        self.req("POST", format!("/v1/tenants/{tenant}/commands/{name}"))
            .admin()
            .json(body)
            .send()
            .await
    }

    /// Runs a command that must succeed.
    pub async fn ok(&self, tenant: Uuid, name: &str, body: Value) -> Reply {
        let r = self.command(tenant, name, body).await;
        r.expect(200);
        r
    }

    /// The seq of `stream`, read from the store directly.
    pub async fn seq(&self, stream: &str) -> u64 {
        self.store
            .stream_seq(StreamName::parse(stream).unwrap())
            .await
            .unwrap()
            .0
    }

    /// The events of `stream`, read from the store directly.
    pub async fn events(&self, stream: &str) -> Vec<ledger_core::Envelope> {
        self.store
            .read_stream(StreamName::parse(stream).unwrap(), Seq(1))
            .try_collect()
            .await
            .unwrap()
    }

    /// The number of events in the whole log.
    pub async fn log_len(&self) -> usize {
        let all: Vec<_> = self
            .store
            .read_all(ReadAll::from_start())
            .try_collect()
            .await
            .unwrap();
        all.len()
    }
}

/// A request being built.
pub struct Req {
    api: Api,
    method: Method,
    uri: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Req {
    /// With a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// With `Authorization: Bearer <token>`.
    pub fn token(self, token: &str) -> Self {
        self.header("authorization", format!("Bearer {token}"))
    }

    /// With the admin token.
    pub fn admin(self) -> Self {
        let admin = self.api.admin.clone();
        self.token(&admin)
    }

    /// With a JSON body.
    pub fn json(mut self, body: Value) -> Self {
        self.body = serde_json::to_vec(&body).unwrap();
        self.header("content-type", "application/json")
    }

    /// With a raw body.
    pub fn raw(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    /// Sends it.
    pub async fn send(self) -> Reply {
        match &self.api.transport {
            Transport::Oneshot(router) => {
                let mut request = Request::builder()
                    .method(self.method.clone())
                    .uri(&self.uri);
                for (k, v) in &self.headers {
                    request = request.header(k.as_str(), v.as_str());
                }
                let request = request.body(Body::from(self.body.clone())).unwrap();
                let response = router.clone().oneshot(request).await.unwrap();
                let status = response.status();
                let headers = response.headers().clone();
                let bytes = response.into_body().collect().await.unwrap().to_bytes();
                reply(status, headers, &bytes)
            }
            Transport::Tcp(addrs, next) => {
                let addr = addrs[next.fetch_add(1, Ordering::Relaxed) % addrs.len()];
                tcp_send(addr, &self).await
            }
        }
    }
}

impl Req {
    /// Sends it in process and hands back the answer's body as it streams.
    pub async fn open(self) -> Live {
        let Transport::Oneshot(router) = &self.api.transport else {
            panic!("streamed answers are read in process only");
        };
        let mut request = Request::builder()
            .method(self.method.clone())
            .uri(&self.uri);
        for (k, v) in &self.headers {
            request = request.header(k.as_str(), v.as_str());
        }
        let request = request.body(Body::from(self.body.clone())).unwrap();
        let response = router.clone().oneshot(request).await.unwrap();
        Live {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.into_body(),
            buf: Vec::new(),
        }
    }
}

/// How long a streamed answer may stay silent before a case fails instead of hanging.
const STREAM_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// An answer whose body is read as it streams (live event streams).
pub struct Live {
    /// The status.
    pub status: StatusCode,
    /// The headers.
    pub headers: HeaderMap,
    body: Body,
    buf: Vec<u8>,
}

/// One Server-Sent Event.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    /// Its `event` field.
    pub event: String,
    /// Its `id` field.
    pub id: Option<String>,
    /// Its `data`.
    pub data: String,
}

impl Live {
    /// The next line of the body (without its newline); `None` at its end.
    pub async fn line(&mut self) -> Option<String> {
        loop {
            if let Some(i) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=i).collect();
                return Some(String::from_utf8_lossy(&line[..i]).to_string());
            }
            let frame = tokio::time::timeout(STREAM_PATIENCE, self.body.frame())
                .await
                .expect("the stream stayed silent too long");
            match frame {
                None => return None,
                Some(frame) => {
                    if let Ok(data) = frame.expect("the stream failed").into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }

    /// The next NDJSON value, skipping blank (heartbeat) lines; `None` at the end.
    pub async fn ndjson(&mut self) -> Option<Value> {
        loop {
            let line = self.line().await?;
            if !line.trim().is_empty() {
                return Some(serde_json::from_str(&line).expect("a JSON line"));
            }
        }
    }

    /// The next Server-Sent Event, skipping comments; `None` at the end.
    pub async fn sse(&mut self) -> Option<SseEvent> {
        let mut event = SseEvent::default();
        let mut any = false;
        loop {
            let line = self.line().await?;
            if line.is_empty() {
                if any {
                    return Some(event);
                }
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            any = true;
            let (field, value) = line.split_once(':').unwrap_or((&line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "event" => event.event = value.to_string(),
                "id" => event.id = Some(value.to_string()),
                "data" => event.data.push_str(value),
                _ => {}
            }
        }
    }
}

fn reply(status: StatusCode, headers: HeaderMap, bytes: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(bytes).to_string();
    let body = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        text,
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`).
async fn tcp_send(addr: SocketAddr, req: &Req) -> Reply {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to the server at {addr}: {e}"));
    let mut head = format!(
        "{} {} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-length: {}\r\n",
        req.method,
        req.uri,
        req.body.len()
    );
    for (k, v) in &req.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&req.body).await.unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.unwrap();
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let mut headers = HeaderMap::new();
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            headers.append(
                HeaderName::from_bytes(k.trim().as_bytes()).unwrap(),
                HeaderValue::from_str(v.trim()).unwrap(),
            );
        }
    }
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers
        .get("transfer-encoding")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"chunked"));
    if chunked {
        body = dechunk(&body);
    }
    reply(StatusCode::from_u16(status).unwrap(), headers, &body)
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = raw.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&raw[..eol]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&raw[eol + 2..eol + 2 + size]);
        raw = &raw[eol + 2 + size + 2..];
    }
}
