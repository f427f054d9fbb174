//! The macros that stamp every case out once per backend: one per layer, the store
//! (`store_test!`) and the read models (`projection_test!`); the HTTP cases use them too.

/// Defines one conformance case as a module with one test per backend.
///
/// `store_test!(name, |store| async move { ... })` writes the case once, generic over the
/// backend: `store` is a fresh, empty [`ledger_tests::Store`] (an `Arc<dyn TransactionalStore>`)
/// built with [`ledger_tests::options()`], and the generated tests are `name::memory`,
/// `name::sqlite` and `name::postgres`, so `cargo test name::` runs the case everywhere and
/// `cargo test ::postgres` runs one backend.
///
/// - `store_test!(name, options = EXPR, |store| ...)` builds the store with other
///   `StoreOptions` (custom limits, page size, settle timeout).
/// - `store_test!(databases: name, |db| ...)` is for the cases about the database itself (raw
///   SQL, schema versions, other processes): there is no memory backend, and `db` is a
///   [`ledger_tests::backend::Db`], a fresh database that is not migrated yet.
macro_rules! store_test {
    ($name:ident, $body:expr) => {
        store_test!($name, options = ledger_tests::options(), $body);
    };
    ($name:ident, options = $options:expr, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                ledger_tests::backend::memory($options, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::backend::sqlite($options, $body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::backend::postgres($options, $body).await;
            }
        }
    };
    (databases: $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::backend::sqlite_db($body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::backend::postgres_db($body).await;
            }
        }
    };
}

/// Defines one projection case as a module with one test per backend.
///
/// `projection_test!(name, |env| async move { ... })`: `env` is a fresh
/// [`ledger_tests::env::Env`] (a store, its log and its read models' tables) on memory, SQLite
/// and PostgreSQL. `projection_test!(databases: name, |env| ...)` leaves out the memory backend,
/// for the cases that alter tables by hand or start `ledger` processes (`env.db` is set).
macro_rules! projection_test {
    ($name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn memory() {
                ledger_tests::env::memory($body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::env::sqlite($body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::env::postgres($body).await;
            }
        }
    };
    (databases: $name:ident, $body:expr) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn sqlite() {
                ledger_tests::env::sqlite($body).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn postgres() {
                ledger_tests::env::postgres($body).await;
            }
        }
    };
}
