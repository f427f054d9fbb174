//! `decide`: what a command appends, given the state and the time.

use chrono::{DateTime, Utc};

use crate::{Command, DomainError, Policy, Stage, SyncStatus, TenantEvent, TenantState};

/// What a command decided: the events to append (possibly none).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// Events to append, in order; empty when the command's effect is already recorded.
    pub events: Vec<TenantEvent>,
    /// True when nothing is appended because the effect is already in the history
    /// (e.g. `was_already_complete` for `complete-onboarding`).
    pub already_done: bool,
}

impl Decision {
    fn append(events: Vec<TenantEvent>) -> Self {
        Self {
            events,
            already_done: false,
        }
    }

    fn nothing() -> Self {
        Self {
            events: Vec::new(),
            already_done: true,
        }
    }
}

/// Decides what `command` appends to a tenant in `state` at `now`.
pub fn decide(
    command: &Command,
    state: &TenantState,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Result<Decision, DomainError> {
    validate(command)?;
    if let Command::EraseTenant {} = command {
        // Not gated by the phase or the lock: an erasure request must never be blocked.
        if !state.is_registered() {
            return Err(DomainError::TenantNotFound);
        }
        if state.is_erased() {
            return Ok(Decision::nothing());
        }
        return Ok(Decision::append(vec![TenantEvent::TenantErased {
            at: now,
        }]));
    }
    if let Some(erased_at) = state.erased_at {
        return Err(DomainError::TenantErased { erased_at });
    }
    if let Command::RegisterTenant { slug, name } = command {
        if state.is_registered() {
            return Err(DomainError::TenantExists);
        }
        return Ok(Decision::append(vec![TenantEvent::TenantRegistered {
            slug: slug.clone(),
            name: name.clone(),
            at: now,
        }]));
    }
    if !state.is_registered() {
        return Err(DomainError::TenantNotFound);
    }
    if let Some(holder) = command.step_holder() {
        check_lock(state, holder, now)?;
    }
    match command {
        Command::RegisterTenant { .. } | Command::EraseTenant {} => {
            unreachable!("handled above")
        }
        Command::VerifyPayment {
            checkout_session_id,
            ..
        } => step(state, command, Stage::VerifyingPayment, || {
            TenantEvent::PaymentVerified {
                checkout_session_id: checkout_session_id.clone(),
                at: now,
            }
        }),
        Command::CreateOrganization { .. } => {
            step(state, command, Stage::CreatingOrganization, || {
                TenantEvent::OrganizationCreated { at: now }
            })
        }
        Command::ProvisionWorkspace { .. } => {
            step(state, command, Stage::SettingUpWorkspace, || {
                TenantEvent::WorkspaceProvisioned { at: now }
            })
        }
        Command::IssueApiKey { fingerprint, .. } => {
            step(state, command, Stage::GeneratingApiKey, || {
                TenantEvent::ApiKeyIssued {
                    fingerprint: fingerprint.clone(),
                    reveal_expires_at: now + policy.api_key_reveal_window,
                    at: now,
                }
            })
        }
        Command::CompleteOnboarding { .. } => step(state, command, Stage::Finalizing, || {
            TenantEvent::OnboardingCompleted { at: now }
        }),
        Command::AcquireLock { holder } => {
            check_lock(state, Some(holder), now)?;
            Ok(Decision::append(vec![
                TenantEvent::OnboardingLockAcquired {
                    holder: holder.clone(),
                    at: now,
                    expires_at: now + policy.lock_ttl,
                },
            ]))
        }
        Command::ReleaseLock { holder, reason } => match state.active_lock(now) {
            None => Ok(Decision::nothing()),
            Some(_) => {
                check_lock(state, Some(holder), now)?;
                Ok(Decision::append(vec![
                    TenantEvent::OnboardingLockReleased {
                        holder: holder.clone(),
                        reason: reason.clone().unwrap_or_else(|| "released".to_string()),
                        at: now,
                    },
                ]))
            }
        },
        Command::RecordStepFailure { stage, code, .. } => {
            if state.phase != stage.requires() {
                return Err(invalid(state, command));
            }
            Ok(Decision::append(vec![TenantEvent::OnboardingStepFailed {
                stage: *stage,
                code: code.clone(),
                at: now,
            }]))
        }
        Command::RecordSyncFailure { target, last_error } => {
            let pending = sync_status(state, target) == Some(SyncStatus::PendingSync);
            let attempts = if pending {
                state.syncs[target].attempts + 1
            } else {
                1
            };
            Ok(Decision::append(vec![TenantEvent::BackendSyncFailed {
                target: target.clone(),
                attempts,
                last_error: last_error.clone(),
                at: now,
            }]))
        }
        Command::RecordSyncRetry { target } => match sync_status(state, target) {
            Some(SyncStatus::PendingSync) => {
                Ok(Decision::append(vec![TenantEvent::BackendSyncRetried {
                    target: target.clone(),
                    at: now,
                }]))
            }
            _ => Err(DomainError::SyncNotPending {
                target: target.clone(),
            }),
        },
        Command::RecordSyncSuccess { target } => match sync_status(state, target) {
            Some(SyncStatus::Synced) => Ok(Decision::nothing()),
            _ => Ok(Decision::append(vec![TenantEvent::BackendSynced {
                target: target.clone(),
                at: now,
            }])),
        },
        Command::AbandonSync { target, reason } => match sync_status(state, target) {
            Some(SyncStatus::PendingSync) => {
                Ok(Decision::append(vec![TenantEvent::BackendSyncAbandoned {
                    target: target.clone(),
                    reason: reason.clone(),
                    at: now,
                }]))
            }
            Some(SyncStatus::Failed) => Ok(Decision::nothing()),
            _ => Err(DomainError::SyncNotPending {
                target: target.clone(),
            }),
        },
        Command::BackfillPhase { phase } => {
            if state.phase >= *phase {
                Ok(Decision::nothing())
            } else {
                Ok(Decision::append(vec![
                    TenantEvent::OnboardingPhaseBackfilled {
                        phase: *phase,
                        at: now,
                    },
                ]))
            }
        }
    }
}

/// A forward step: appends when the tenant is just before `stage`, nothing when past it.
fn step(
    state: &TenantState,
    command: &Command,
    stage: Stage,
    event: impl FnOnce() -> TenantEvent,
) -> Result<Decision, DomainError> {
    if state.phase >= stage.target() {
        Ok(Decision::nothing())
    } else if state.phase == stage.requires() {
        Ok(Decision::append(vec![event()]))
    } else {
        Err(invalid(state, command))
    }
}

/// Refuses when a lock held by someone other than `holder` is active at `now`.
fn check_lock(
    state: &TenantState,
    holder: Option<&str>,
    now: DateTime<Utc>,
) -> Result<(), DomainError> {
    match state.active_lock(now) {
        Some(lock) if Some(lock.holder.as_str()) != holder => Err(DomainError::LockHeld {
            holder: lock.holder.clone(),
            expires_at: lock.expires_at,
        }),
        _ => Ok(()),
    }
}

fn sync_status(state: &TenantState, target: &str) -> Option<SyncStatus> {
    state.syncs.get(target).map(|s| s.status)
}

fn invalid(state: &TenantState, command: &Command) -> DomainError {
    DomainError::InvalidTransition {
        phase: state.phase,
        command: command.name(),
    }
}

/// Refuses empty or malformed fields before any rule runs.
fn validate(command: &Command) -> Result<(), DomainError> {
    let required: &[(&str, &str)] = match command {
        Command::RegisterTenant { slug, name } => {
            if !valid_slug(slug) {
                return Err(DomainError::InvalidSlug(slug.clone()));
            }
            &[("name", name)]
        }
        Command::VerifyPayment {
            checkout_session_id,
            ..
        } => &[("checkout_session_id", checkout_session_id)],
        Command::AcquireLock { holder } | Command::ReleaseLock { holder, .. } => {
            &[("holder", holder)]
        }
        Command::IssueApiKey { fingerprint, .. } => &[("fingerprint", fingerprint)],
        Command::RecordStepFailure { code, .. } => &[("code", code)],
        Command::RecordSyncFailure { target, last_error } => {
            &[("target", target), ("last_error", last_error)]
        }
        Command::RecordSyncRetry { target } | Command::RecordSyncSuccess { target } => {
            &[("target", target)]
        }
        Command::AbandonSync { target, reason } => &[("target", target), ("reason", reason)],
        Command::CreateOrganization { .. }
        | Command::ProvisionWorkspace { .. }
        | Command::CompleteOnboarding { .. }
        | Command::BackfillPhase { .. }
        | Command::EraseTenant {} => &[],
    };
    if let Some(Some(holder)) = command.step_holder()
        && holder.trim().is_empty()
    {
        return Err(DomainError::InvalidCommand(
            "holder must not be empty".into(),
        ));
    }
    for (field, value) in required {
        if value.trim().is_empty() {
            return Err(DomainError::InvalidCommand(format!(
                "{field} must not be empty"
            )));
        }
        if value.len() > 1000 {
            return Err(DomainError::InvalidCommand(format!(
                "{field} must be at most 1000 bytes"
            )));
        }
    }
    Ok(())
}

/// Slugs: 2-63 of `a-z0-9-`, no leading or trailing hyphen.
fn valid_slug(slug: &str) -> bool {
    (2..=63).contains(&slug.len())
        && slug
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !slug.starts_with('-')
        && !slug.ends_with('-')
}
