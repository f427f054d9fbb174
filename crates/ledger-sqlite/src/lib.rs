//! The onboarding ledger's event store in one SQLite file.
//!
//! Every write goes through a single writer connection (WAL, `synchronous = NORMAL`), so
//! positions follow commit order; reads use a separate pool. Concurrent appends of one process
//! queue for a committer that writes what has queued as one transaction (`group`). A single-stream append is one conditional `INSERT ... SELECT` statement that computes
//! the stream's head, admits the expectation and inserts at `head + i`; only a refused append
//! reads, to tell an idempotent retry, a reused event id and a conflict apart. Nothing of sqlx
//! crosses the [`ledger_core`] traits.
//!
//! The same file keeps read models for the projection engine: the store serves its log page by
//! page ([`ledger_core::LogReader`]), and [`SqliteProjections`] stores the tables, checkpoints
//! and queries of any read model from its table specs alone ([`ddl`] writes their tables).

mod append;
mod baseline;
mod chain;
mod checkpoint;
pub mod ddl;
mod error;
mod events;
mod group;
mod health;
mod keys;
mod log;
mod projection;
mod read;
mod rows;
mod schema;
mod store;
mod together;
mod tx;
mod wakeup;

pub use projection::SqliteProjections;
pub use store::SqliteStore;
