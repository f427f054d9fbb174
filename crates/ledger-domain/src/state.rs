//! The state folded from a tenant stream, and `evolve`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{Phase, Stage, TenantEvent};

/// A tenant's onboarding as its events say it is.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantState {
    /// Slug and name, once registered.
    pub registration: Option<Registration>,
    /// The furthest phase reached.
    pub phase: Phase,
    /// When each of the five stages completed (absent when never done or only backfilled).
    pub stages: BTreeMap<Stage, DateTime<Utc>>,
    /// The last lock taken, released or not.
    pub lock: Option<Lock>,
    /// The last recorded key issue (fingerprint only).
    pub api_key: Option<ApiKey>,
    /// The most recent step failure not yet followed by a success of that stage.
    pub last_failure: Option<StepFailure>,
    /// Downstream syncs by target.
    pub syncs: BTreeMap<String, SyncState>,
    /// When onboarding first completed.
    pub completed_at: Option<DateTime<Utc>>,
    /// When the tenant's personal data was first erased (its data key destroyed).
    #[serde(default)]
    pub erased_at: Option<DateTime<Utc>>,
}

/// A tenant's registration.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    /// The unique slug.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// When it was registered.
    pub registered_at: DateTime<Utc>,
}

/// The onboarding lock.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lock {
    /// Who took it.
    pub holder: String,
    /// When it was first taken by this holder.
    pub acquired_at: DateTime<Utc>,
    /// When it lapses unless renewed.
    pub expires_at: DateTime<Utc>,
    /// Set once the holder released it.
    pub released: Option<LockRelease>,
}

/// How a lock was given up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockRelease {
    /// When.
    pub at: DateTime<Utc>,
    /// Why.
    pub reason: String,
}

impl Lock {
    /// Whether the lock still holds at `now`: not released and not expired.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.released.is_none() && self.expires_at > now
    }
}

/// The issued API key's public facts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    /// Fingerprint of the key.
    pub fingerprint: String,
    /// Until when it may be revealed.
    pub reveal_expires_at: DateTime<Utc>,
}

/// A failed stage awaiting a retry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// The stage.
    pub stage: Stage,
    /// The failure code.
    pub code: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Where a downstream sync stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncStatus {
    /// Failed and waiting for compensation.
    PendingSync,
    /// Done.
    Synced,
    /// Given up.
    Failed,
}

/// One downstream target's sync history.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncState {
    /// Current status.
    pub status: SyncStatus,
    /// Failed attempts since the last success.
    pub attempts: u32,
    /// Retries started since the first failure.
    pub retry_count: u32,
    /// The last error text.
    pub last_error: Option<String>,
    /// When the current run of failures began.
    pub first_failed_at: Option<DateTime<Utc>>,
    /// When anything last changed.
    pub updated_at: DateTime<Utc>,
}

impl TenantState {
    /// Whether the tenant has been registered.
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// Whether the tenant's personal data has been erased.
    pub fn is_erased(&self) -> bool {
        self.erased_at.is_some()
    }

    /// The lock if it is active at `now`.
    pub fn active_lock(&self, now: DateTime<Utc>) -> Option<&Lock> {
        self.lock.as_ref().filter(|l| l.is_active(now))
    }

    fn reach(&mut self, stage: Stage, at: DateTime<Utc>) {
        self.phase = self.phase.max(stage.target());
        self.stages.entry(stage).or_insert(at);
        if self.last_failure.as_ref().is_some_and(|f| f.stage == stage) {
            self.last_failure = None;
        }
    }

    fn sync(&mut self, target: &str, at: DateTime<Utc>) -> &mut SyncState {
        self.syncs.entry(target.to_string()).or_insert(SyncState {
            status: SyncStatus::Synced,
            attempts: 0,
            retry_count: 0,
            last_error: None,
            first_failed_at: None,
            updated_at: at,
        })
    }
}

/// Applies one event to the state. Never fails: history is the truth.
pub fn evolve(mut state: TenantState, event: &TenantEvent) -> TenantState {
    match event {
        TenantEvent::TenantRegistered { slug, name, at } => {
            state.registration = Some(Registration {
                slug: slug.clone(),
                name: name.clone(),
                registered_at: *at,
            });
        }
        TenantEvent::PaymentVerified { at, .. } => state.reach(Stage::VerifyingPayment, *at),
        TenantEvent::OrganizationCreated { at } => state.reach(Stage::CreatingOrganization, *at),
        TenantEvent::WorkspaceProvisioned { at } => state.reach(Stage::SettingUpWorkspace, *at),
        TenantEvent::ApiKeyIssued {
            fingerprint,
            reveal_expires_at,
            at,
        } => {
            state.reach(Stage::GeneratingApiKey, *at);
            state.api_key = Some(ApiKey {
                fingerprint: fingerprint.clone(),
                reveal_expires_at: *reveal_expires_at,
            });
        }
        TenantEvent::OnboardingCompleted { at } => {
            state.reach(Stage::Finalizing, *at);
            state.completed_at.get_or_insert(*at);
        }
        TenantEvent::OnboardingPhaseBackfilled { phase, at } => {
            state.phase = state.phase.max(*phase);
            if *phase == Phase::Completed {
                state.completed_at.get_or_insert(*at);
            }
        }
        TenantEvent::OnboardingLockAcquired {
            holder,
            at,
            expires_at,
        } => {
            let renewing = state
                .lock
                .as_ref()
                .filter(|l| l.holder == *holder && l.is_active(*at));
            let acquired_at = renewing.map_or(*at, |l| l.acquired_at);
            state.lock = Some(Lock {
                holder: holder.clone(),
                acquired_at,
                expires_at: *expires_at,
                released: None,
            });
        }
        TenantEvent::OnboardingLockReleased { holder, reason, at } => {
            if let Some(lock) = state.lock.as_mut().filter(|l| l.holder == *holder) {
                lock.released = Some(LockRelease {
                    at: *at,
                    reason: reason.clone(),
                });
            }
        }
        TenantEvent::OnboardingStepFailed { stage, code, at } => {
            state.last_failure = Some(StepFailure {
                stage: *stage,
                code: code.clone(),
                at: *at,
            });
        }
        TenantEvent::BackendSyncFailed {
            target,
            attempts,
            last_error,
            at,
        } => {
            let s = state.sync(target, *at);
            if s.status != SyncStatus::PendingSync {
                s.first_failed_at = Some(*at);
                s.retry_count = 0;
            }
            s.status = SyncStatus::PendingSync;
            s.attempts = *attempts;
            s.last_error = Some(last_error.clone());
            s.updated_at = *at;
        }
        TenantEvent::BackendSyncRetried { target, at } => {
            let s = state.sync(target, *at);
            s.retry_count += 1;
            s.updated_at = *at;
        }
        TenantEvent::BackendSynced { target, at } => {
            let s = state.sync(target, *at);
            s.status = SyncStatus::Synced;
            s.attempts = 0;
            s.updated_at = *at;
        }
        TenantEvent::BackendSyncAbandoned { target, reason, at } => {
            let s = state.sync(target, *at);
            s.status = SyncStatus::Failed;
            s.last_error = Some(reason.clone());
            s.updated_at = *at;
        }
        TenantEvent::TenantErased { at } => {
            state.erased_at.get_or_insert(*at);
        }
    }
    state
}

/// Folds a whole history from the empty state.
pub fn fold<'a>(events: impl IntoIterator<Item = &'a TenantEvent>) -> TenantState {
    events.into_iter().fold(TenantState::default(), evolve)
}
