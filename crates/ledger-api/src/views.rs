//! Response bodies: the JSON shapes clients see, documented in the OpenAPI document.

use chrono::{DateTime, Utc};
use ledger_core::{Envelope, LogCursor, LogEvent};
use ledger_domain::{Phase, Policy, Stage, SyncStatus, TenantState};
use ledger_read_models::{PhaseSchema, SyncStatusSchema};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

/// The five progress stages a person sees.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = Stage)]
#[allow(dead_code)]
pub(crate) enum StageSchema {
    VerifyingPayment,
    CreatingOrganization,
    SettingUpWorkspace,
    GeneratingApiKey,
    Finalizing,
}

/// A tenant's onboarding as its stream says it is.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct TenantView {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Its unique slug.
    pub slug: Option<String>,
    /// Its display name.
    pub name: Option<String>,
    /// When it was registered.
    pub registered_at: Option<DateTime<Utc>>,
    /// The furthest phase reached.
    #[schema(value_type = PhaseSchema)]
    pub phase: Phase,
    /// The five stages in order, with the time each completed.
    pub stages: Vec<StageView>,
    /// The last onboarding lock taken, released or not.
    pub lock: Option<LockView>,
    /// The issued API key's fingerprint (never the key).
    pub api_key: Option<ApiKeyView>,
    /// The latest step failure not yet followed by a success of that stage.
    pub last_failure: Option<FailureView>,
    /// Downstream syncs, by target.
    pub syncs: Vec<SyncView>,
    /// When onboarding completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When the tenant was erased (its personal fields read `[erased]`); it takes no more
    /// commands.
    pub erased_at: Option<DateTime<Utc>>,
    /// The stream's seq: the value to send as `expected_seq` or `If-Match`.
    pub seq: u64,
    /// The durations this server decides with.
    pub policy: PolicyView,
}

/// The durations a server decides onboarding commands with (`ledger serve --lock-ttl`,
/// `--reveal-window`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub struct PolicyView {
    /// How long a lock lasts after it is acquired or renewed, in seconds.
    pub lock_ttl_seconds: i64,
    /// How long an issued API key may be revealed, in seconds.
    pub reveal_window_seconds: i64,
}

impl From<&Policy> for PolicyView {
    fn from(p: &Policy) -> Self {
        Self {
            lock_ttl_seconds: p.lock_ttl.num_seconds(),
            reveal_window_seconds: p.api_key_reveal_window.num_seconds(),
        }
    }
}

/// One progress stage.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct StageView {
    /// The stage.
    #[schema(value_type = StageSchema)]
    pub stage: Stage,
    /// Its label for a person.
    pub label: &'static str,
    /// When it completed (absent when not done, or only backfilled).
    pub completed_at: Option<DateTime<Utc>>,
}

/// The onboarding lock.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct LockView {
    /// Who took it.
    pub holder: String,
    /// When this holder took it.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// When it was released, if it was.
    pub released_at: Option<DateTime<Utc>>,
    /// Why it was released.
    pub release_reason: Option<String>,
}

/// The issued API key's public facts.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// Fingerprint of the key.
    pub fingerprint: String,
    /// Until when it may be shown to the user.
    pub reveal_expires_at: DateTime<Utc>,
}

/// A failed stage awaiting a retry.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct FailureView {
    /// The stage.
    #[schema(value_type = StageSchema)]
    pub stage: Stage,
    /// The failure code.
    pub code: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// One downstream target's sync.
#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct SyncView {
    /// The downstream system.
    pub target: String,
    /// Current status.
    #[schema(value_type = SyncStatusSchema)]
    pub status: SyncStatus,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Retries since the first failure.
    pub retry_count: u32,
    /// The last error text.
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When anything last changed.
    pub updated_at: DateTime<Utc>,
}

/// The label of a stage.
fn label(stage: Stage) -> &'static str {
    match stage {
        Stage::VerifyingPayment => "Verifying payment",
        Stage::CreatingOrganization => "Creating organisation",
        Stage::SettingUpWorkspace => "Setting up workspace",
        Stage::GeneratingApiKey => "Generating API key",
        Stage::Finalizing => "Finalising",
    }
}

impl TenantView {
    /// The view of `state`, folded up to `seq`, decided on with `policy`.
    pub fn new(tenant_id: Uuid, state: &TenantState, seq: u64, policy: &Policy) -> Self {
        let registration = state.registration.as_ref();
        Self {
            tenant_id,
            slug: registration.map(|r| r.slug.clone()),
            name: registration.map(|r| r.name.clone()),
            registered_at: registration.map(|r| r.registered_at),
            phase: state.phase,
            stages: Stage::ALL
                .into_iter()
                .map(|stage| StageView {
                    stage,
                    label: label(stage),
                    completed_at: state.stages.get(&stage).copied(),
                })
                .collect(),
            lock: state.lock.as_ref().map(|l| LockView {
                holder: l.holder.clone(),
                acquired_at: l.acquired_at,
                expires_at: l.expires_at,
                released_at: l.released.as_ref().map(|r| r.at),
                release_reason: l.released.as_ref().map(|r| r.reason.clone()),
            }),
            api_key: state.api_key.as_ref().map(|k| ApiKeyView {
                fingerprint: k.fingerprint.clone(),
                reveal_expires_at: k.reveal_expires_at,
            }),
            last_failure: state.last_failure.as_ref().map(|f| FailureView {
                stage: f.stage,
                code: f.code.clone(),
                at: f.at,
            }),
            syncs: state
                .syncs
                .iter()
                .map(|(target, s)| SyncView {
                    target: target.clone(),
                    status: s.status,
                    attempts: s.attempts,
                    retry_count: s.retry_count,
                    last_error: s.last_error.clone(),
                    first_failed_at: s.first_failed_at,
                    updated_at: s.updated_at,
                })
                .collect(),
            completed_at: state.completed_at,
            erased_at: state.erased_at,
            seq,
            policy: policy.into(),
        }
    }
}

/// A stored event as readers see it.
#[derive(Serialize, ToSchema)]
#[schema(as = Envelope)]
#[allow(dead_code)]
pub(crate) struct EnvelopeSchema {
    /// Unique id (UUID v7 unless the writer chose one).
    event_id: Uuid,
    /// The stream.
    stream: String,
    /// Its 1-based place in the stream.
    seq: u64,
    /// Its place in the global log.
    position: u64,
    /// The event type.
    #[serde(rename = "type")]
    event_type: String,
    /// The payload.
    data: Value,
    /// `actor`, `request_id`, `correlation_id`, `causation_id` and free keys.
    metadata: Value,
    /// When the database recorded it (UTC).
    recorded_at: DateTime<Utc>,
}

/// One page of a stream.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// The events, in seq order.
    #[schema(value_type = Vec<EnvelopeSchema>)]
    pub events: Vec<Envelope>,
    /// The `from_seq` of the next page, or null when this page reaches the stream's end.
    pub next_from_seq: Option<u64>,
}

/// One event of the global log with the cursor that resumes after it.
#[derive(Serialize, ToSchema)]
#[schema(as = LogEvent)]
#[allow(dead_code)]
pub(crate) struct LogEventSchema {
    /// Resume after this event: 32 hex digits that sort (as text) in the log's order.
    cursor: String,
    /// The event.
    #[serde(flatten)]
    envelope: EnvelopeSchema,
}

/// A page of the global log.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogPageView {
    /// The events, in the log's order.
    #[schema(value_type = Vec<LogEventSchema>)]
    pub events: Vec<LogEvent>,
    /// Where to resume: the last event's cursor, or the cursor sent when the page is empty.
    #[schema(value_type = String)]
    pub next_cursor: LogCursor,
    /// Whether the page reached the end of the log as read (it holds fewer than `limit`).
    pub caught_up: bool,
}
