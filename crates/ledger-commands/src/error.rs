//! Why a command could not be executed.

use ledger_core::{Conflict, Seq, StoreError, StreamName};
use ledger_domain::DomainError;

use crate::SealError;

/// A command that was refused or could not run; each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecuteError {
    /// The domain refused the command.
    #[error(transparent)]
    Domain(#[from] DomainError),
    /// The caller's expected seq was stale, or other writers kept winning every retry.
    #[error("conflict on {}: expected {}, stream is at {}", .0.stream, .0.expected, .0.current_seq)]
    Conflict(Box<Conflict>),
    /// The slug already belongs to another tenant.
    #[error("slug {slug} is already taken")]
    SlugTaken {
        /// The slug.
        slug: String,
    },
    /// An idempotency key was sent again with a different request.
    #[error("idempotency key {key:?} was already used for a different request")]
    IdempotencyKeyReused {
        /// The key.
        key: String,
    },
    /// A stored event of the tenant stream is not a valid onboarding event.
    #[error("event {seq} of {stream} is not a valid onboarding event: {reason}")]
    CorruptHistory {
        /// The stream.
        stream: StreamName,
        /// The event's seq.
        seq: Seq,
        /// What is wrong.
        reason: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ExecuteError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(c) => ExecuteError::Conflict(c),
            StoreError::Erased { erased_at, .. } => {
                ExecuteError::Domain(DomainError::TenantErased { erased_at })
            }
            other => ExecuteError::Store(other),
        }
    }
}

impl From<SealError> for ExecuteError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::Erased { erased_at, .. } => {
                ExecuteError::Domain(DomainError::TenantErased { erased_at })
            }
            SealError::Store(e) => e.into(),
        }
    }
}

impl ExecuteError {
    /// A stable snake_case code for this error.
    pub fn code(&self) -> &'static str {
        match self {
            ExecuteError::Domain(e) => e.code(),
            ExecuteError::Conflict(_) => "conflict",
            ExecuteError::SlugTaken { .. } => "slug_taken",
            ExecuteError::IdempotencyKeyReused { .. } => "idempotency_key_reused",
            ExecuteError::CorruptHistory { .. } => "corrupt_history",
            ExecuteError::Store(e) => e.code(),
        }
    }
}
