//! `AppState`: what every handler shares.

use std::sync::Arc;
use std::time::Duration;

use ledger_commands::{Clock, Executor, SealedLog, SealedStore, Vault};
use ledger_core::{BoxFuture, ChainLog, EventStore, KeyStore, LogReader, StoreError, StreamName};
use ledger_domain::Policy;
use ledger_projector::Projector;
use ledger_read_models::Logged;

use crate::auth::{TokenCache, sha256};
use crate::console::Secret;
use crate::error::{ApiError, Code};
use crate::metrics::{MeteredStore, Metrics};
use crate::tail::Tails;
use crate::token_registry::RegistryCache;

/// A probe `GET /readyz` runs: `Ok` when the database is reachable and its schema is current.
pub type ReadyCheck = Arc<dyn Fn() -> BoxFuture<'static, Result<(), StoreError>> + Send + Sync>;

/// Tunables of the HTTP API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    /// Largest request body accepted, in bytes (larger ones get 413 `payload_too_large`).
    pub max_body_bytes: usize,
    /// Events per page of `GET /v1/streams/{stream}/events` when the caller sends no `limit`.
    pub default_page_size: usize,
    /// Largest `limit` a caller may ask for.
    pub max_page_size: usize,
    /// Lock and API-key durations of the onboarding decisions.
    pub policy: Policy,
    /// How often a command is decided again when other writers keep winning.
    pub max_attempts: u32,
    /// Longest wait of a query's `min_position` for its projection to catch up (then 503
    /// `projection_behind`).
    pub projection_wait: Duration,
    /// How often a live progress stream looks for new events when this process did not append.
    pub progress_poll: Duration,
    /// How long a server trusts its copy of the admin token registry before it checks the
    /// registry's stream again: the longest a revoked admin token keeps working here.
    pub admin_token_refresh: Duration,
    /// Longest wait for a request's answer to start (then 503 `request_timeout`); an event
    /// stream, once started, is not cut by it.
    pub request_timeout: Duration,
    /// Longest pause while a request body arrives (then 408 `body_timeout`).
    pub body_timeout: Duration,
    /// Most live log subscribers (`GET /v1/events/live`) connected at once (then 503
    /// `too_many_subscribers`).
    pub max_live_subscribers: usize,
    /// Pause after which a quiet live log stream sends a heartbeat.
    pub live_heartbeat: Duration,
    /// A bearer token `GET /metrics` requires (besides the admin token); `None`: it is open.
    pub metrics_token: Option<String>,
    /// Tenants whose folded state commands keep in this process and decide on (0: none, every
    /// command reads its tenant's stream).
    pub state_cache: usize,
    /// How long a console session lasts after signing in.
    pub session_ttl: Duration,
    /// How long a progress link works when its request names no time.
    pub progress_link_ttl: Duration,
    /// The console's address as its users reach it (e.g. `https://ledger.example.com`): the
    /// start of progress links, and `https` marks session cookies Secure. `None`: links are
    /// built from the request's `Host`.
    pub public_url: Option<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 4 * 1024 * 1024,
            default_page_size: 100,
            max_page_size: 1000,
            policy: Policy::default(),
            max_attempts: 10,
            projection_wait: Duration::from_secs(5),
            progress_poll: Duration::from_millis(250),
            admin_token_refresh: Duration::from_secs(1),
            request_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(15),
            max_live_subscribers: 1024,
            live_heartbeat: Duration::from_secs(5),
            metrics_token: None,
            state_cache: 10_000,
            session_ttl: Duration::from_secs(8 * 3600),
            progress_link_ttl: Duration::from_secs(2 * 3600),
            public_url: None,
        }
    }
}

/// The state every handler shares; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub(crate) store: Arc<dyn EventStore>,
    pub(crate) raw_store: Arc<dyn EventStore>,
    pub(crate) vault: Option<Vault>,
    pub(crate) executor: Executor<Arc<dyn EventStore>>,
    pub(crate) local_admin_hash: Option<[u8; 32]>,
    pub(crate) admin_tokens: Arc<RegistryCache>,
    pub(crate) metrics_hash: Option<[u8; 32]>,
    pub(crate) tokens: Arc<TokenCache>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) config: Arc<ApiConfig>,
    pub(crate) ready: ReadyCheck,
    pub(crate) clock: Clock,
    pub(crate) projector: Option<Projector<Logged>>,
    pub(crate) log: Option<Arc<dyn LogReader>>,
    pub(crate) chains: Option<Arc<dyn ChainLog>>,
    pub(crate) tails: Tails,
    pub(crate) console: Arc<Secret>,
}

impl AppState {
    /// State over `store`, accepting the admin tokens stored in its registry and also
    /// `admin_token`, unless the registry lists that one as revoked.
    pub fn new(store: Arc<dyn EventStore>, admin_token: &str, config: ApiConfig) -> Self {
        Self::build(store, Some(sha256(admin_token.as_bytes())), config)
    }

    /// State over `store`, accepting only the admin tokens stored in its registry (what
    /// `ledger serve` runs: every server sharing the database accepts the same tokens).
    pub fn with_stored_admin_tokens(store: Arc<dyn EventStore>, config: ApiConfig) -> Self {
        Self::build(store, None, config)
    }

    fn build(
        store: Arc<dyn EventStore>,
        local_admin_hash: Option<[u8; 32]>,
        config: ApiConfig,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let store: Arc<dyn EventStore> = Arc::new(MeteredStore::new(store, metrics.clone()));
        let clock: Clock = Arc::new(chrono::Utc::now);
        let executor = executor(store.clone(), &config, clock.clone());
        let probe_store = store.clone();
        let ready: ReadyCheck = Arc::new(move || {
            let store = probe_store.clone();
            Box::pin(async move {
                let probe = StreamName::parse("ledger-readyz").expect("a valid stream name");
                store.stream_seq(probe).await.map(|_| ())
            })
        });
        let max_live_subscribers = config.max_live_subscribers;
        Self {
            raw_store: store.clone(),
            vault: None,
            store,
            executor,
            local_admin_hash,
            admin_tokens: Arc::new(RegistryCache::new(config.admin_token_refresh)),
            metrics_hash: config
                .metrics_token
                .as_deref()
                .map(|t| sha256(t.as_bytes())),
            tokens: Arc::new(TokenCache::default()),
            metrics,
            config: Arc::new(config),
            ready,
            clock,
            projector: None,
            log: None,
            chains: None,
            tails: Tails::new(max_live_subscribers),
            console: Arc::new(Secret::new(None)),
        }
    }

    /// The same state answering the projection queries (`GET /v1/tenants`, `/v1/locks`,
    /// `/v1/pending-syncs`, `/v1/projections`) from `projector`'s tables; without one they
    /// answer 503 `projections_unavailable`.
    pub fn with_projections(mut self, projector: Projector<Logged>) -> Self {
        self.projector = Some(projector);
        self
    }

    /// The same state serving the global log (`GET /v1/events`) from `log`; without one that
    /// route answers 503 `log_unavailable`.
    pub fn with_log(mut self, log: Arc<dyn LogReader>) -> Self {
        self.log = Some(match &self.vault {
            Some(vault) => Arc::new(SealedLog::new(log, vault.clone())),
            None => log,
        });
        self
    }

    /// The same state sealing personal fields with the tenants' keys in `keys` on every
    /// append, and opening them (`[erased]` once a tenant is erased) on every read; without
    /// keys they are stored as sent.
    pub fn with_keys(mut self, keys: Arc<dyn KeyStore>) -> Self {
        self.console = Arc::new(Secret::new(Some(keys.clone())));
        let vault = Vault::new(keys);
        self.store = Arc::new(SealedStore::new(self.raw_store.clone(), vault.clone()));
        self.executor = executor(self.store.clone(), &self.config, self.clock.clone());
        self.log = self
            .log
            .take()
            .map(|log| Arc::new(SealedLog::new(log, vault.clone())) as Arc<dyn LogReader>);
        self.vault = Some(vault);
        self
    }

    /// The vault of personal fields, when this state has keys.
    pub(crate) fn vault(&self) -> Option<&Vault> {
        self.vault.as_ref()
    }

    /// The same state serving the streams' chain heads (`GET /v1/streams/{stream}/head`) from
    /// `chains`; without them that route answers 503 `log_unavailable`.
    pub fn with_chains(mut self, chains: Arc<dyn ChainLog>) -> Self {
        self.chains = Some(chains);
        self
    }

    /// The hash chains this state serves, or 503 `log_unavailable`.
    pub(crate) fn chains(&self) -> Result<Arc<dyn ChainLog>, ApiError> {
        self.chains.clone().ok_or_else(|| {
            ApiError::new(
                Code::LogUnavailable,
                "this server does not serve the streams' hash chains",
            )
        })
    }

    /// The global log this state serves, or 503 `log_unavailable`.
    pub(crate) fn log(&self) -> Result<Arc<dyn LogReader>, ApiError> {
        self.log.clone().ok_or_else(|| {
            ApiError::new(
                Code::LogUnavailable,
                "this server does not serve the global log",
            )
        })
    }

    /// The same state deciding with another clock (for tests of expiry).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.executor = self.executor.with_clock(clock.clone());
        self.clock = clock;
        self
    }

    /// The same state with another readiness probe (e.g. a backend's schema version check).
    pub fn with_ready_check(mut self, ready: ReadyCheck) -> Self {
        self.ready = ready;
        self
    }

    /// The metrics this state records.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The store behind the API, as routes read and write it: personal fields sealed on the
    /// way in and opened on the way out when the state has keys.
    pub fn store(&self) -> &Arc<dyn EventStore> {
        &self.store
    }

    /// The store as the database holds it (personal fields sealed), for reads that need no
    /// personal field.
    pub(crate) fn raw_store(&self) -> &Arc<dyn EventStore> {
        &self.raw_store
    }
}

/// The command executor over `store`.
fn executor(
    store: Arc<dyn EventStore>,
    config: &ApiConfig,
    clock: Clock,
) -> Executor<Arc<dyn EventStore>> {
    let executor = Executor::new(store)
        .with_policy(config.policy)
        .with_max_attempts(config.max_attempts)
        .with_clock(clock);
    match config.state_cache {
        0 => executor,
        tenants => executor.with_state_cache(tenants),
    }
}
