//! What callers ask the onboarding to do.

use serde::{Deserialize, Serialize};

use crate::{Phase, Stage};

/// A request to change a tenant's onboarding; `holder` names the caller for lock checks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Command {
    /// Register a new tenant (the slug claim is appended alongside by the caller).
    RegisterTenant {
        /// The unique slug.
        slug: String,
        /// Display name.
        name: String,
    },
    /// Record a verified payment.
    VerifyPayment {
        /// The checkout session that was paid.
        checkout_session_id: String,
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Take or renew the onboarding lock.
    AcquireLock {
        /// Who takes it.
        holder: String,
    },
    /// Give the lock up.
    ReleaseLock {
        /// Who holds it.
        holder: String,
        /// Why (default "released").
        #[serde(default)]
        reason: Option<String>,
    },
    /// Record that the organisation was created.
    CreateOrganization {
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Record that the workspace was provisioned.
    ProvisionWorkspace {
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Record that an API key was issued (its fingerprint only).
    IssueApiKey {
        /// Fingerprint of the issued key.
        fingerprint: String,
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Finish onboarding.
    CompleteOnboarding {
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Record that a stage failed.
    RecordStepFailure {
        /// The stage that failed.
        stage: Stage,
        /// A machine-readable failure code.
        code: String,
        /// The caller, for lock checks.
        #[serde(default)]
        holder: Option<String>,
    },
    /// Record that a downstream sync failed.
    RecordSyncFailure {
        /// The downstream system.
        target: String,
        /// The error text.
        last_error: String,
    },
    /// Record that a failed sync is being retried.
    RecordSyncRetry {
        /// The downstream system.
        target: String,
    },
    /// Record that a downstream sync succeeded.
    RecordSyncSuccess {
        /// The downstream system.
        target: String,
    },
    /// Give up on a failed sync.
    AbandonSync {
        /// The downstream system.
        target: String,
        /// Why.
        reason: String,
    },
    /// Record a phase reached outside the normal flow.
    BackfillPhase {
        /// The phase the tenant is known to have reached.
        phase: Phase,
    },
    /// Record that the tenant's personal fields were erased (in any phase, under any lock).
    EraseTenant {},
}

impl Command {
    /// The command's kebab-case name, as in `POST /v1/tenants/{id}/commands/{name}`.
    pub fn name(&self) -> &'static str {
        match self {
            Command::RegisterTenant { .. } => "register-tenant",
            Command::VerifyPayment { .. } => "verify-payment",
            Command::AcquireLock { .. } => "acquire-lock",
            Command::ReleaseLock { .. } => "release-lock",
            Command::CreateOrganization { .. } => "create-organization",
            Command::ProvisionWorkspace { .. } => "provision-workspace",
            Command::IssueApiKey { .. } => "issue-api-key",
            Command::CompleteOnboarding { .. } => "complete-onboarding",
            Command::RecordStepFailure { .. } => "record-step-failure",
            Command::RecordSyncFailure { .. } => "record-sync-failure",
            Command::RecordSyncRetry { .. } => "record-sync-retry",
            Command::RecordSyncSuccess { .. } => "record-sync-success",
            Command::AbandonSync { .. } => "abandon-sync",
            Command::BackfillPhase { .. } => "backfill-phase",
            Command::EraseTenant {} => "erase-tenant",
        }
    }

    /// The caller named for lock checks, when the command is subject to the lock.
    pub(crate) fn step_holder(&self) -> Option<Option<&str>> {
        match self {
            Command::VerifyPayment { holder, .. }
            | Command::CreateOrganization { holder }
            | Command::ProvisionWorkspace { holder }
            | Command::IssueApiKey { holder, .. }
            | Command::CompleteOnboarding { holder }
            | Command::RecordStepFailure { holder, .. } => Some(holder.as_deref()),
            _ => None,
        }
    }
}
