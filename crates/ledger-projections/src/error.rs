//! What running, rebuilding or querying projections can fail with.

use ledger_core::{Position, StoreError};

use crate::Kind;

/// A failure of the projection machinery; each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event log or the projection tables failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint moved under an applier: another runner or rebuild wrote the same copy.
    #[error("the checkpoint of {kind} moved: another runner or rebuild is writing it")]
    Moved {
        /// The projection.
        kind: Kind,
    },
    /// The projection has not reached a position in time.
    #[error("{kind} has not reached position {wanted} yet (its checkpoint is {checkpoint})")]
    Behind {
        /// The projection.
        kind: Kind,
        /// The position waited for.
        wanted: Position,
        /// Where the projection is.
        checkpoint: Position,
    },
    /// A position the log should hold was not found by a replay.
    #[error("position {0} was not found in the log while replaying it")]
    NotInLog(Position),
    /// The background reader stopped unexpectedly.
    #[error("the log reader of {kind} stopped unexpectedly")]
    ReaderGone {
        /// The projection.
        kind: Kind,
    },
    /// An applier task panicked while writing a batch (nothing of the batch was committed).
    #[error("the applier of {kind} stopped unexpectedly")]
    ApplierGone {
        /// The projection.
        kind: Kind,
    },
}

impl ProjectionError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ProjectionError::Store(e) => e.code(),
            ProjectionError::Moved { .. } => "projection_moved",
            ProjectionError::Behind { .. } => "projection_behind",
            ProjectionError::NotInLog(_) => "position_not_in_log",
            ProjectionError::ReaderGone { .. } | ProjectionError::ApplierGone { .. } => "internal",
        }
    }
}
