//! What running, rebuilding or querying read models can fail with.

use ledger_core::{Position, StoreError};

use crate::model::UnknownReadModel;
use crate::value::RowError;

/// A failure of the projection engine; each variant has a stable [`code`](Self::code).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProjectionError {
    /// The event log or the read models' tables failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// No read model has this name.
    #[error(transparent)]
    Unknown(#[from] UnknownReadModel),
    /// A read model produced a row that does not fit its table (a bug of the read model).
    #[error("the read model {projection} cannot apply a batch")]
    Row {
        /// The read model.
        projection: String,
        /// What is wrong.
        #[source]
        source: RowError,
    },
    /// A checkpoint moved under an applier: another runner or rebuild wrote the same copy.
    #[error("the checkpoint of {projection} moved: another runner or rebuild is writing it")]
    Moved {
        /// The read model.
        projection: String,
    },
    /// The read model has not reached a position in time.
    #[error("{projection} has not reached position {wanted} yet (its checkpoint is {checkpoint})")]
    Behind {
        /// The read model.
        projection: String,
        /// The position waited for.
        wanted: Position,
        /// Where the read model is.
        checkpoint: Position,
    },
    /// A position the log should hold was not found by a replay.
    #[error("position {0} was not found in the log while replaying it")]
    NotInLog(Position),
    /// The background reader stopped unexpectedly.
    #[error("the log reader of {projection} stopped unexpectedly")]
    ReaderGone {
        /// The read model.
        projection: String,
    },
    /// An applier task panicked while writing a batch (nothing of the batch was committed).
    #[error("the applier of {projection} stopped unexpectedly")]
    ApplierGone {
        /// The read model.
        projection: String,
    },
}

impl ProjectionError {
    /// A stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            ProjectionError::Store(e) => e.code(),
            ProjectionError::Unknown(_) => "unknown_projection",
            ProjectionError::Moved { .. } => "projection_moved",
            ProjectionError::Behind { .. } => "projection_behind",
            ProjectionError::NotInLog(_) => "position_not_in_log",
            ProjectionError::Row { .. }
            | ProjectionError::ReaderGone { .. }
            | ProjectionError::ApplierGone { .. } => "internal",
        }
    }
}
