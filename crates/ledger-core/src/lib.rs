//! Core vocabulary of the onboarding ledger: stream names, sequences, positions, events,
//! envelopes, the store traits every backend implements and the store's error type.
//!
//! This crate does no I/O and knows no database. Backends (`ledger-postgres`, `ledger-sqlite`,
//! `ledger-memory`) implement [`EventStore`]; everything above them depends only on this crate.

mod baseline;
pub mod chain;
mod counted;
mod cursor;
mod error;
mod event;
mod expected;
pub mod group;
mod keys;
mod limits;
mod log;
mod replay;
mod seq;
mod store;
mod stream;
pub mod trail;
pub mod verify;

pub use baseline::{Baseline, BaselineLookup, BenchRow};
pub use chain::{
    ChainHash, ChainHead, ChainLog, ChainScope, ChainStream, ChainedEvent, HeadCache, Link,
    StreamHead,
};
pub use counted::CountedLog;
pub use cursor::{EventFilter, LogCursor, LogEvent, ParseCursorError};
pub use error::{BoxError, Conflict, MAX_REPORTED_MISSED, StoreError, schema_message};
pub use event::{AppendResult, Envelope, NewEvent, StreamAppend};
pub use expected::{ExpectedSeq, ParseExpectedSeqError};
pub use group::{Alone, Committer, GroupLimits, GroupWriter};
pub use keys::{DataKey, KeyRecord, KeyState, KeyStore, fold_key_records};
pub use limits::{Limits, validate_appends, validate_batch};
pub use log::{LogFilter, LogPage, LogReader, RawEvent};
pub use replay::match_replay;
pub use seq::{Position, Seq};
pub use store::{AppendTx, EventStore, EventStream, ReadAll, StoreOptions, TransactionalStore};
pub use stream::StreamName;
pub use trail::Trail;

/// A boxed, sendable future, the return type of the store traits' async methods.
pub type BoxFuture<'a, T> = futures::future::BoxFuture<'a, T>;
