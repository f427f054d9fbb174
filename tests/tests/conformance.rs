//! The ledger's test suite, one binary: every conformance case is written once and stamped out
//! per backend (memory, SQLite, PostgreSQL) by `store_test!`; see `macros.rs`.
//!
//! PostgreSQL cases need a server (`LEDGER_TEST_DATABASE_URL`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`); each case gets its own throwaway database.

// The macro that stamps a case out per backend.
#[macro_use]
mod macros;

// The architecture invariants of ARCHITECTURE.md, checked against the source tree.
mod architecture;
// Expected seqs: every variant succeeding and failing, and what a conflict carries.
mod expected;
// One stream: atomic batches, consecutive seqs, reads from a seq across pages, stream_seq.
mod streams;
// The global log: after a position, filtered by category and type, across pages, bad positions.
mod read_all;
// Many tasks racing for one stream with the same expectation: one wins, the rest conflict.
mod races;
// Appends arriving together commit together; a lone one at once; grouping can be turned off.
mod group_commit;
// Concurrent appends (shared and private streams, every expectation, replays, reused ids) agree with a serial model.
mod group_model;
// Idempotent retries return the original result; reused event ids are refused.
mod idempotency;
// Whole events after a cursor: pages, filters, and a consumer that keeps only its cursor.
mod log_cursor;
// Multi-stream appends commit together or not at all.
mod multi;
// Hash chains: every append chains its events; tampering is named by stream and seq; pinned
// heads; chains filled in by a migration; an export loads as it was.
mod chains;
// The key table: one key per subject, races, erasure with tombstones, bulk lookups, import.
mod keys;
// No reader skips an event whose transaction commits after later events.
mod gap_free;
// Refused input: each limit gives its code and writes nothing.
mod bad_input;
// The database itself (no memory backend): append-only triggers, schema versions, files.
mod database;
// Other processes: `ledger` CLI processes racing for a stream, its errors and its output.
mod cli;
// The HTTP API's suite, each case written once in `api_suite/` and stamped out on every
// backend, in process (`http`) and against real `ledger serve` processes (`serve`).
mod api_suite;
mod http;
// `ledger audit`: a tenant's state as of an instant and its timeline, as the routes answer.
mod audit_cli;
// `ledger verify`, `export` and `import` end to end, heads pinned over HTTP, the example checker.
mod integrity_cli;
// `ledger erase` end to end: no plain personal value nor key left in the database's bytes.
mod erasure_cli;
// An audit search by on_behalf_of over more sealed forms than one query lists.
mod audit_shares;
// Real `ledger serve` processes: startup, tokens, graceful shutdown, races across three servers.
mod serve;
// Admin tokens stored in the database: shared by servers, issued and revoked with `ledger token`.
mod tokens;
// Bounds on what a client can hold: shutdown with event streams and slow clients, timeouts,
// the connection limit.
mod serve_limits;
// PostgreSQL faults against real servers: the database unreachable behind a cut proxy, aborted requests.
mod faults_postgres;
// SQLite faults a server recovers from without a restart: a full disk, a read-only file.
mod faults_sqlite;
// The HTTP contract of a real server: bounded, JSON error bodies even for requests hyper
// refuses, a position beyond the log refused at once, a protected /metrics.
mod contract;
// Projections on every backend: batches equal a rebuild equal the fold, late commits, rebuilds
// under writers, --verify, a killed runner, two runner processes on PostgreSQL, the HTTP queries.
mod projections;
// The read models' `.sql` files are the DDL each backend generates from their specs.
mod read_model_sql;
// Wake-ups across processes, outside the append: a runner process woken by other processes'
// appends well before its poll; PostgreSQL's old notify trigger is gone after migrating.
mod wakeups;
// `ledger bench http`: a spawned server loaded over HTTP, every figure reported, on both backends.
mod bench_http;
// The web console in headless Chromium over WebDriver, against real servers on both databases.
mod browser;
