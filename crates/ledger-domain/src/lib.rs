//! Tenant onboarding as a pure decider: `decide(command, state, now, policy) -> events` and
//! `evolve(state, event) -> state`.
//!
//! No I/O, nothing async, no clock: time comes in as `now` and goes out inside the events, so
//! folding the same history always gives the same state.

mod command;
mod decide;
mod error;
mod event;
mod friendly;
pub mod personal;
mod phase;
mod policy;
mod state;
#[cfg(test)]
mod tests;
mod time;
mod words;

pub use command::Command;
pub use decide::{Decision, decide};
pub use error::DomainError;
pub use event::{DecodeError, SlugClaimed, TenantEvent};
pub use friendly::{Friendly, KNOWN_CODES, friendly};
pub use phase::{Phase, Stage};
pub use policy::Policy;
pub use state::{
    ApiKey, Lock, LockRelease, Registration, StepFailure, SyncState, SyncStatus, TenantState,
    evolve, fold,
};
pub use words::describe;
