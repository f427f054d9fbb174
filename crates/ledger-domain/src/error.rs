//! Why a command was refused.

use chrono::{DateTime, Utc};

use crate::Phase;

/// A refused command; each variant has a stable [`code`](Self::code).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    /// The tenant stream has no registration.
    #[error("tenant is not registered")]
    TenantNotFound,
    /// The tenant is already registered.
    #[error("tenant is already registered")]
    TenantExists,
    /// Another holder's lock is active.
    #[error(
        "onboarding is locked by {holder} until {expires_at}; retry after it is released or expires"
    )]
    LockHeld {
        /// Who holds the lock.
        holder: String,
        /// When it lapses unless renewed.
        expires_at: DateTime<Utc>,
    },
    /// The command does not apply in the tenant's phase.
    #[error("{command} is not possible while onboarding is in phase {phase}")]
    InvalidTransition {
        /// The tenant's phase.
        phase: Phase,
        /// The refused command's name.
        command: &'static str,
    },
    /// The named downstream sync is not waiting for compensation.
    #[error("sync to {target} is not pending")]
    SyncNotPending {
        /// The downstream system.
        target: String,
    },
    /// A slug that is not 2-63 lowercase letters, digits and inner hyphens.
    #[error(
        "slug {0:?} is invalid: use 2 to 63 lowercase letters, digits and hyphens, not starting or ending with a hyphen"
    )]
    InvalidSlug(String),
    /// A field of the command is malformed.
    #[error("{0}")]
    InvalidCommand(String),
    /// The tenant's personal data was erased; it takes no more commands.
    #[error("tenant was erased at {erased_at}; it takes no more commands")]
    TenantErased {
        /// When it was erased.
        erased_at: DateTime<Utc>,
    },
}

impl DomainError {
    /// A stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            DomainError::TenantNotFound => "tenant_not_found",
            DomainError::TenantExists => "tenant_exists",
            DomainError::LockHeld { .. } => "lock_held",
            DomainError::InvalidTransition { .. } => "invalid_transition",
            DomainError::SyncNotPending { .. } => "sync_not_pending",
            DomainError::InvalidSlug(_) => "invalid_slug",
            DomainError::InvalidCommand(_) => "invalid_command",
            DomainError::TenantErased { .. } => "tenant_erased",
        }
    }
}
