//! The projection engine: keeps read models up to date from the event log, knowing no domain
//! and no read model.
//!
//! A read model ([`ReadModel`]) declares its name, version and tables once ([`Schema`],
//! [`TableSpec`]), the stream categories it reads, and a pure `apply` from a decoded event to
//! row changes. The [`Projector`] reads the log ([`ledger_core::LogReader`]) from each read
//! model's checkpoint in batches, folds each batch ([`fold`]) and writes the changed rows with
//! the new checkpoint in one transaction through a [`ProjectionStore`], which each backend
//! implements for any spec. It catches up, follows the log live (woken in process by a
//! [`Signal`], across processes by the backend, and by polling), rebuilds into shadow tables
//! and swaps them in, and verifies a live copy against a fresh rebuild. Rows depend only on
//! the events, so replaying the log always gives the same rows.

mod appliers;
pub mod check;
mod error;
pub mod fold;
mod model;
mod rebuild;
mod runner;
mod signal;
mod spec;
mod store;
pub mod subscription;
mod value;

pub use error::ProjectionError;
pub use fold::{Batch, Keys, Plan, Rows, Seen, TableWrite, Tables, fold};
pub use model::{Catalog, Decode, ReadModel, UnknownReadModel};
pub use rebuild::{Difference, MAX_LISTED_DIFFERENCES, Progress, RebuildReport, VerifyReport};
pub use runner::{
    CATCHING_UP_LAG, ProjectionStatus, Projector, ProjectorOptions, RebuildStatus, State,
};
pub use signal::{Signal, SignalingStore};
pub use spec::{Column, ColumnType, Index, Schema, Slot, SpecError, TableSpec};
pub use store::{
    ApplyTx, Checkpoint, Condition, Lease, LocalLease, MAX_IN_VALUES, ProjectionStore, Query,
    Snapshot, Swapped, Target,
};
pub use value::{Cells, Key, Record, Row, RowError, Value, micros, time_text};
