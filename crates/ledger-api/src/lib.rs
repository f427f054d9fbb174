//! The ledger's HTTP command API (axum).
//!
//! [`app`] builds the router over an [`AppState`] (an `Arc<dyn EventStore>`, the admin token's
//! hash, a tenant token cache, metrics and [`ApiConfig`]); [`serve`] serves it with graceful
//! shutdown. Every error is an [`ApiError`]: `{"error": code, "message": text, ...}` with a
//! status from one table ([`status_of`]). The OpenAPI document at `/openapi.json` is generated
//! from the handlers' annotations.
//!
//! This crate never picks a backend or reads configuration: the CLI does and hands it a store.

mod admin_token;
mod auth;
mod context;
mod error;
mod input;
mod metrics;
mod openapi;
mod quote;
mod raw_errors;
mod routes;
mod serve;
mod state;
mod views;

pub use admin_token::{TokenFileError, load_or_create_admin_token_file, read_admin_token_file};
pub use auth::{
    Caller, TOKEN_ISSUED, TOKEN_STREAM_CATEGORY, TenantTokenIssued, generate_admin_token,
};
pub use context::RequestContext;
pub use error::{ApiError, ErrorBody, status_of};
pub use metrics::Metrics;
pub use openapi::ApiDoc;
pub use routes::app;
pub use routes::commands::COMMANDS;
pub use serve::{ServeConfig, ServeError, Server, serve, shutdown_signal};
pub use state::{ApiConfig, AppState, ReadyCheck};
pub use views::{EventPage, TenantView};

/// The OpenAPI document of every route, as served at `/openapi.json`.
pub fn openapi() -> serde_json::Value {
    routes::documented().1
}
