//! The HTTP suite: every case is written once against an [`client::Api`] and run on the
//! memory store, SQLite and PostgreSQL in process (`http.rs`), and against real `ledger serve`
//! processes (`serve.rs`).

#![allow(dead_code)]

pub mod audit;
pub mod audit_queries;
pub mod auth;
pub mod bad_input;
pub mod client;
pub mod commands;
pub mod console;
pub mod erasure;
pub mod history;
pub mod live;
pub mod log;
pub mod meta;
pub mod projections;
pub mod races;
pub mod streams;
pub mod subscriptions;
pub mod tenants;
