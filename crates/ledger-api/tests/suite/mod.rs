//! The HTTP suite: every case is written once against an [`client::Api`] and run by the
//! in-crate tests on the memory store, and by the `ledger-tests` package on SQLite and
//! PostgreSQL, in process and against real `ledger serve` processes.

#![allow(dead_code)]

pub mod auth;
pub mod bad_input;
pub mod client;
pub mod commands;
pub mod meta;
pub mod projections;
pub mod races;
pub mod streams;
pub mod tenants;
