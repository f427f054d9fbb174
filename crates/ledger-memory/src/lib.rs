//! An in-memory [`EventStore`](ledger_core::EventStore) with the same semantics as the
//! database backends, for fast tests and for embedding in other crates' unit tests.

mod log;
mod store;
mod tx;

pub use store::MemoryStore;
