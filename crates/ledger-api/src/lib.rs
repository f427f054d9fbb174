//! The ledger's HTTP command API (axum).
//!
//! [`app`] builds the router over an [`AppState`] (an `Arc<dyn EventStore>`, a copy of the
//! admin token registry, a tenant token cache, metrics and [`ApiConfig`]); [`serve`] serves it with graceful
//! shutdown. Every error is an [`ApiError`]: `{"error": code, "message": text, ...}` with a
//! status from one exhaustive match ([`Code::status`]). The OpenAPI document at
//! `/openapi.json` is generated from the handlers' annotations.
//!
//! This crate never picks a backend or reads configuration: the CLI does and hands it a store.

mod activity;
mod admin_token;
mod auth;
mod console;
mod context;
mod error;
mod follow;
mod history;
mod input;
mod listener;
mod metrics;
mod openapi;
mod quote;
mod raw_errors;
mod routes;
mod serve;
mod shutdown;
mod state;
mod tail;
mod timeouts;
pub mod token_registry;
mod views;

pub use admin_token::{
    AdminTokenError, AdminTokenOrigin, AdminTokenSource, AdminTokenStart, TokenFileError,
    read_admin_token_file, settle_admin_token,
};
pub use auth::{
    Actor, Caller, MAX_ON_BEHALF_OF_LEN, ON_BEHALF_OF, TOKEN_ISSUED, TOKEN_METADATA_KEY,
    TOKEN_STREAM_CATEGORY, TenantTokenIssued, TokenRef, Writer, generate_admin_token,
    tenant_token_name,
};
pub use context::RequestContext;
pub use error::{ApiError, Code, ErrorBody};
pub use history::{
    TenantAsOf, Timeline, TimelineEntry, funnel_as_of, parse_as_of, tenant_as_of, tenant_timeline,
};
pub use listener::ConnectionLimits;
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use routes::app;
pub use routes::audit::{AuditPage, AuditQuery, AuditSearch};
pub use routes::commands::COMMANDS;
pub use routes::erase::Erased;
pub use serve::{ServeConfig, ServeError, Server, serve};
pub use shutdown::shutdown_signal;
pub use state::{ApiConfig, AppState, ReadyCheck};
pub use views::{EventPage, PolicyView, TenantView};

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    routes::documented().1
}
