//! The onboarding ledger's event store on PostgreSQL.
//!
//! Appends are one conditional `INSERT ... SELECT` per stream that the database arbitrates
//! (a unique `(stream, seq)` index); concurrent appends of one process are combined into
//! one such statement for all their streams (`group`); the global log is read in `(tx_id, position)` order up
//! to the oldest running transaction, so no reader skips an event that commits late.
//! Read models' tables are created, written and queried from their specs alone
//! ([`PgProjections`], [`ddl`]): this crate names no read model.
//! Nothing in an append notifies: other processes' runners are told after the commit, by a
//! coalesced `pg_notify` of the store's own (`wakeup`).
//! `sqlx` stays inside this crate: every failure surfaces as a [`ledger_core::StoreError`].

mod append;
mod baseline;
mod chain;
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

pub use baseline::ScratchDatabase;
pub use projection::PgProjections;
pub use store::PgStore;
