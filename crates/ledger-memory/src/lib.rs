//! An in-memory [`EventStore`](ledger_core::EventStore) with the same semantics as the
//! database backends, for fast tests and for embedding in other crates' unit tests; it serves
//! its log to the projection engine ([`LogReader`](ledger_core::LogReader)) and keeps read
//! models' tables for any spec ([`MemoryProjections`]).

mod chain;
mod keys;
mod log;
mod projection;
mod store;
mod tx;

pub use projection::MemoryProjections;
pub use store::MemoryStore;
