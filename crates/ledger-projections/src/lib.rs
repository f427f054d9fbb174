//! The onboarding ledger's read models (projections) and the machinery that keeps them.
//!
//! Three projections, each a pure `apply` of onboarding events to rows ([`apply`]), with its
//! tables defined in `projections/{postgres,sqlite}/<name>.sql` and a version there:
//!
//! - `tenant_phase`: per tenant, the phase and when each of the five stages completed;
//! - `onboarding_locks`: per tenant, the last onboarding lock;
//! - `pending_syncs`: the compensation queue, per tenant and downstream target.
//!
//! The [`Projector`] reads the global log from a projection's checkpoint in batches and writes
//! the changed rows and the new checkpoint in one transaction through a [`ProjectionStore`]
//! (implemented by each backend crate, and in memory by [`MemoryProjections`]); it catches up,
//! follows the log live, rebuilds into shadow tables and swaps them in, and verifies a live
//! table against a fresh rebuild. Rows depend only on event times, never on the clock, so
//! replaying the log always gives the same rows.

mod appliers;
pub mod apply;
mod batch;
mod error;
pub mod generate;
mod kind;
mod memory;
mod rebuild;
pub mod rows;
mod runner;
mod signal;
mod store;

pub use apply::{Table, fold, reference, rows_of_history};
pub use batch::{Batch, Change, Decoded, TENANT_CATEGORY, normalize};
pub use error::ProjectionError;
pub use kind::{Kind, Slot, UnknownProjection, definition_parts, index_names, version_of};
pub use memory::MemoryProjections;
pub use rebuild::{Difference, MAX_LISTED_DIFFERENCES, Progress, RebuildReport, VerifyReport};
pub use rows::{LockRow, PendingSyncRow, RowKey, Rows, TenantPhaseRow};
pub use runner::{
    CATCHING_UP_LAG, ProjectionStatus, Projector, ProjectorOptions, RebuildStatus, State,
};
pub use signal::{Signal, SignalingStore};
pub use store::{
    Checkpoint, Filter, Lease, LocalLease, LogPage, ProjectionStore, Query, Snapshot, Swapped,
    Target,
};
