//! Operator pages, read-only: the tenants (search, counts per phase, a page of the list), one
//! tenant (its folded state, lock, syncs and timeline, now or as of an instant) and the
//! onboarding locks. Every page reads through the JSON API's own functions with the signed-in
//! caller, so a tenant token sees only its own tenant here as it does there.

mod detail;
mod list;
mod locks;

use axum::Router;
use axum::routing::get;
use chrono::{DateTime, Utc};
use ledger_domain::Phase;
use maud::{Markup, html};

use super::page::time;
use crate::state::AppState;

/// This module's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/tenants", get(list::page))
        .route("/ui/tenants/{id}", get(detail::page))
        .route("/ui/locks", get(locks::page))
}

/// A phase as a person reads it.
fn phase_label(phase: Phase) -> &'static str {
    match phase {
        Phase::NotStarted => "Not started",
        Phase::PaymentVerified => "Payment verified",
        Phase::OrganizationCreated => "Organisation created",
        Phase::WorkspaceProvisioned => "Workspace provisioned",
        Phase::ApiKeyIssued => "API key issued",
        Phase::Completed => "Completed",
    }
}

/// The console page of a tenant.
fn tenant_href(id: &str) -> String {
    format!("/ui/tenants/{id}")
}

/// A time, or a dash when there is none.
fn maybe_time(at: Option<DateTime<Utc>>) -> Markup {
    html! {
        @match at {
            Some(at) => (time(at)),
            None => span class="muted" { "—" },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_phase_has_its_own_label() {
        let labels: std::collections::HashSet<_> =
            Phase::ALL.into_iter().map(phase_label).collect();
        assert_eq!(labels.len(), Phase::ALL.len());
        assert_eq!(phase_label(Phase::ApiKeyIssued), "API key issued");
    }

    #[test]
    fn a_missing_time_reads_as_a_dash() {
        assert!(maybe_time(None).into_string().contains('—'));
        let at = DateTime::parse_from_rfc3339("2026-01-20T14:03:12Z")
            .unwrap()
            .to_utc();
        assert!(
            maybe_time(Some(at))
                .into_string()
                .contains("2026-01-20T14:03:12Z")
        );
    }
}
