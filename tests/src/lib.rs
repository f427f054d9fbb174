//! Shared helpers of the ledger test suite.
//!
//! The suite itself lives in `tests/tests/`: one test binary whose cases are written once and
//! stamped out per backend (memory, SQLite, PostgreSQL) by the `store_test!` macro. This library
//! holds what the cases share: the backends' throwaway databases ([`pg`], [`sqlite`]), the
//! functions the macros call to run one case on one backend ([`backend`], and with the read
//! models' tables [`env`]), small builders
//! and readers ([`fixtures`]) and a TCP proxy a test can cut ([`proxy`]).

pub mod backend;
pub mod env;
pub mod fixtures;
pub mod pg;
pub mod proxy;
pub mod sqlite;

use std::sync::Arc;
use std::time::Duration;

use ledger_core::{ChainLog, KeyStore, LogReader, StoreOptions, TransactionalStore};

/// What every backend's store is: transactional appends, paged reads of the log, its hash
/// chains and its key table.
pub trait LedgerStore: TransactionalStore + LogReader + ChainLog + KeyStore {}

impl<T: TransactionalStore + LogReader + ChainLog + KeyStore> LedgerStore for T {}

/// The store a conformance case runs against: any backend, shareable across tasks.
pub type Store = Arc<dyn LedgerStore>;

/// How long the tests' global reads wait for in-flight transactions (PostgreSQL).
///
/// PostgreSQL transaction ids are cluster-wide: a global read waits for every transaction that
/// was running when it started, in any database of the server, so other tests (or anything
/// else on a shared server) can delay it. The suite's checks read the whole log and need it to
/// be complete, so they wait longer than the default; only the gap-free case sets it short.
pub const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);

/// The options most cases use: a small read page, so that reads cross page boundaries, and a
/// long [`SETTLE_TIMEOUT`].
pub fn options() -> StoreOptions {
    StoreOptions {
        read_page_size: 7,
        max_connections: 10,
        settle_timeout: SETTLE_TIMEOUT,
        ..StoreOptions::default()
    }
}
