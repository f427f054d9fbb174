//! Runs onboarding commands against any [`EventStore`](ledger_core::EventStore): load the tenant
//! stream, fold it, decide, append with the loaded seq as the expectation and, when another
//! writer got there first, fold the events it missed and decide again.
//!
//! This is the imperative shell around the pure `ledger-domain`; the HTTP API and Rust
//! command handlers both go through it.

mod cache;
mod erase;
mod error;
mod executor;
mod idempotency;
mod load;
mod register;
pub mod seal;
mod sealed;
mod vault;

pub use cache::StateCache;
pub use erase::{Erasure, TENANT_ERASED, erase, reapply_erasures};
pub use error::ExecuteError;
pub use executor::{Clock, CommandRequest, Executed, Executor};
pub use idempotency::Idempotency;
pub use load::{Loaded, decode, slug_stream, tenant_stream};
pub use sealed::{SealedLog, SealedStore};
pub use vault::{Opener, SealError, Vault, subject};
