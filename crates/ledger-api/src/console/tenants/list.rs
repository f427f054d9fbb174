//! `GET /ui/tenants?q=&phase=&cursor=`: the search form, the tenants per phase, and a page of
//! the tenants (or the tenant a slug names).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use ledger_core::Seq;
use ledger_domain::{Phase, SlugClaimed};
use ledger_projector::Record;
use ledger_read_models::{TenantFilter, TenantPhaseRow, parse_phase, phase_text, tenant_phase};
use maud::{Markup, html};
use serde::Deserialize;
use uuid::Uuid;

use super::{phase_label, tenant_href};
use crate::auth::Caller;
use crate::console::page::{page as shell, time};
use crate::console::{ConsoleError, Session, see_other};
use crate::error::ApiError;
use crate::input::{ApiQuery, tenant_id};
use crate::routes::queries::{self, TenantPage, TenantsQuery};
use crate::state::AppState;

/// Rows read per page while counting the tenants per phase.
const COUNT_PAGE: usize = 1000;

/// The page's query: the search text, the phase filter and the list's cursor.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ListQuery {
    /// A tenant id or a slug.
    q: Option<String>,
    /// Only tenants in this phase (empty: all).
    phase: Option<String>,
    /// The `next_cursor` of the previous page.
    cursor: Option<String>,
}

/// How many tenants are in each phase, in the order of [`Phase::ALL`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct PhaseCounts([u64; 6]);

impl PhaseCounts {
    /// Counts one tenant in `phase`.
    fn add(&mut self, phase: Phase) {
        if let Some(i) = Phase::ALL.iter().position(|p| *p == phase) {
            self.0[i] += 1;
        }
    }

    /// Each phase with its count.
    fn iter(&self) -> impl Iterator<Item = (Phase, u64)> + '_ {
        Phase::ALL.into_iter().zip(self.0)
    }

    /// Every tenant counted.
    fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

/// What the table shows.
enum Listing {
    /// A page of the tenants.
    Page(TenantPage),
    /// The tenant a searched slug names, if any.
    Slug {
        slug: String,
        rows: Vec<TenantPhaseRow>,
    },
}

/// `GET /ui/tenants`: a full tenant id goes straight to that tenant's page (303) when it
/// exists; any other search text is a slug.
pub(crate) async fn page(
    session: Session,
    State(state): State<AppState>,
    query: Result<ApiQuery<ListQuery>, ApiError>,
) -> Result<Response, ConsoleError> {
    let ApiQuery(query) = query?;
    let search = non_empty(query.q.as_deref());
    let phase = non_empty(query.phase.as_deref());
    if let Some(id) = search.and_then(|q| tenant_id(q).ok()) {
        session.caller.require_tenant(id)?;
        let loaded = state.executor.load(id).await.map_err(ApiError::from)?;
        if loaded.state.is_registered() {
            return Ok(see_other(&tenant_href(&id.to_string())));
        }
    }
    let listing = match search {
        Some(q) => {
            let rows = find_slug(&state, &session.caller, &q.to_ascii_lowercase(), phase).await?;
            Listing::Slug {
                slug: q.to_string(),
                rows,
            }
        }
        None => {
            let q = TenantsQuery {
                phase: phase.map(str::to_string),
                limit: None,
                cursor: query.cursor.clone(),
                min_position: None,
            };
            let page =
                queries::list_tenants(session.caller.clone(), State(state.clone()), ApiQuery(q))
                    .await?;
            Listing::Page(page.0)
        }
    };
    let counts = phase_counts(&state, &session.caller).await?;
    let selected = phase.and_then(|p| parse_phase(&p.to_ascii_uppercase()));
    let body = html! {
        h1 { "Tenants" }
        (search_form(search.unwrap_or_default(), selected))
        h2 id="counts-heading" { "By phase" }
        p class="muted" { (counts.total()) " tenants in all." }
        (counts_list(&counts, selected))
        (listing_section(&listing, selected))
    };
    Ok(shell("Tenants", Some(&session), body).into_response())
}

/// `text` trimmed, unless it is empty.
fn non_empty(text: Option<&str>) -> Option<&str> {
    text.map(str::trim).filter(|t| !t.is_empty())
}

/// The tenant that claimed `slug` (see `ledger_commands::register`): the first event of its
/// `slug-<slug>` stream names it.
async fn slug_owner(state: &AppState, slug: &str) -> Result<Option<Uuid>, ApiError> {
    let Some(stream) = ledger_commands::slug_stream(slug) else {
        return Ok(None);
    };
    let mut events = state.raw_store().read_stream(stream, Seq(1));
    let Some(claim) = events.try_next().await? else {
        return Ok(None);
    };
    Ok(serde_json::from_value::<SlugClaimed>(claim.data)
        .ok()
        .and_then(|c| Uuid::try_parse(&c.tenant_id).ok()))
}

/// The `tenant_phase` row of the tenant that claimed `slug`, if `caller` may see it (and it is
/// in `phase`, when given). A claimed tenant the read model has not listed yet is left out.
async fn find_slug(
    state: &AppState,
    caller: &Caller,
    slug: &str,
    phase: Option<&str>,
) -> Result<Vec<TenantPhaseRow>, ConsoleError> {
    let Some(owner) = slug_owner(state, slug).await? else {
        return Ok(Vec::new());
    };
    if caller.require_tenant(owner).is_err() {
        return Ok(Vec::new());
    }
    // The owner's own scope narrows the API's list to exactly its row, its name opened and
    // the phase filter checked as the API checks them; `caller` may see that tenant.
    let q = TenantsQuery {
        phase: phase.map(str::to_string),
        limit: None,
        cursor: None,
        min_position: None,
    };
    let page =
        queries::list_tenants(Caller::Tenant(owner), State(state.clone()), ApiQuery(q)).await?;
    Ok(page.0.items)
}

/// The tenants `caller` may see, counted per phase. Every `tenant_phase` row is read, a page
/// of [`COUNT_PAGE`] at a time: O(tenants) on every view of the page.
async fn phase_counts(state: &AppState, caller: &Caller) -> Result<PhaseCounts, ApiError> {
    let store = queries::projector(state)?.store();
    let filter = TenantFilter {
        tenant: queries::tenant_of(caller),
        phase: None,
    };
    let mut counts = PhaseCounts::default();
    let mut after = None;
    loop {
        let rows = tenant_phase::page(store.as_ref(), filter.clone(), after, COUNT_PAGE).await?;
        rows.iter().for_each(|r| counts.add(r.phase));
        if rows.len() < COUNT_PAGE {
            return Ok(counts);
        }
        after = rows.last().map(Record::key);
    }
}

/// The search form: slug or id, and the phase.
fn search_form(q: &str, selected: Option<Phase>) -> Markup {
    html! {
        form id="search" class="filters" method="get" action="/ui/tenants" role="search" {
            div {
                label for="q" { "Search by slug or id" }
                input id="q" name="q" type="search" value=(q) autocomplete="off" spellcheck="false";
            }
            div {
                label for="phase" { "Phase" }
                select id="phase" name="phase" {
                    option value="" selected[selected.is_none()] { "All" }
                    @for p in Phase::ALL {
                        option value=(phase_text(p)) selected[selected == Some(p)] { (phase_label(p)) }
                    }
                }
            }
            div { button type="submit" { "Search" } }
        }
    }
}

/// The tenants per phase, each linking to the list of that phase.
fn counts_list(counts: &PhaseCounts, selected: Option<Phase>) -> Markup {
    html! {
        ul class="counts" id="phase-counts" aria-labelledby="counts-heading" {
            @for (phase, n) in counts.iter() {
                li data-phase=(phase_text(phase)) {
                    a href={ "/ui/tenants?phase=" (phase_text(phase)) }
                        aria-current=[(selected == Some(phase)).then_some("true")] {
                        (phase_label(phase)) ": " strong class="count" { (n) }
                    }
                }
            }
        }
    }
}

/// The table of what was listed or found, with the way to the next page.
fn listing_section(listing: &Listing, selected: Option<Phase>) -> Markup {
    match listing {
        Listing::Page(page) => html! {
            h2 { "All tenants" @if let Some(p) = selected { " · " (phase_label(p)) } }
            (tenants_table(&page.items))
            (next_link(page.next_cursor.as_deref(), selected))
        },
        Listing::Slug { slug, rows } => html! {
            h2 { "Search results" }
            @if rows.is_empty() {
                p id="no-match" class="notice" role="status" {
                    "No tenant with "
                    @if tenant_id(slug).is_ok() { "id or " }
                    "slug “" (slug) "”"
                    @if let Some(p) = selected { " in phase " (phase_label(p)) }
                    "."
                }
            }
            (tenants_table(rows))
            p { a href="/ui/tenants" { "Show all tenants" } }
        },
    }
}

/// A link to the next page of the list, when there is one.
fn next_link(cursor: Option<&str>, selected: Option<Phase>) -> Markup {
    html! {
        @if let Some(cursor) = cursor {
            p {
                a id="next-page" rel="next" href={
                    "/ui/tenants?"
                    @if let Some(p) = selected { "phase=" (phase_text(p)) "&" }
                    "cursor=" (cursor)
                } { "Next page" }
            }
        }
    }
}

/// The tenants, each row linking to its tenant's page.
fn tenants_table(rows: &[TenantPhaseRow]) -> Markup {
    html! {
        div class="table-wrap" tabindex="0" role="region" aria-label="Tenants" {
            table id="tenants" {
                thead {
                    tr {
                        th scope="col" { "Slug" }
                        th scope="col" { "Name" }
                        th scope="col" { "Phase" }
                        th scope="col" { "Last change" }
                    }
                }
                tbody {
                    @for row in rows {
                        tr data-tenant=(row.tenant_id) {
                            td {
                                a href=(tenant_href(&row.tenant_id)) {
                                    (row.slug.as_deref().unwrap_or(&row.tenant_id))
                                }
                            }
                            td { (row.name.as_deref().unwrap_or("—")) }
                            td data-phase=(phase_text(row.phase)) { (phase_label(row.phase)) }
                            td { (time(row.updated_at)) }
                        }
                    }
                    @if rows.is_empty() {
                        tr { td colspan="4" class="muted" { "No tenants." } }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;

    fn at() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-01-20T14:03:12Z")
            .unwrap()
            .to_utc()
    }

    fn row(id: &str, slug: &str, phase: Phase) -> TenantPhaseRow {
        TenantPhaseRow {
            slug: Some(slug.into()),
            name: Some("<Acme & Co>".into()),
            phase,
            ..TenantPhaseRow::new(id, at())
        }
    }

    #[test]
    fn counts_list_every_phase_with_its_count_and_link() {
        let mut counts = PhaseCounts::default();
        for phase in [Phase::Completed, Phase::NotStarted, Phase::Completed] {
            counts.add(phase);
        }
        assert_eq!(counts.total(), 3);
        let html = counts_list(&counts, Some(Phase::Completed)).into_string();
        assert_eq!(html.matches("<li data-phase=").count(), 6);
        assert!(html.contains(
            r#"<li data-phase="COMPLETED"><a href="/ui/tenants?phase=COMPLETED" aria-current="true">Completed: <strong class="count">2</strong></a></li>"#
        ));
        assert!(html.contains(
            r#"<li data-phase="PAYMENT_VERIFIED"><a href="/ui/tenants?phase=PAYMENT_VERIFIED">Payment verified: <strong class="count">0</strong></a></li>"#
        ));
    }

    #[test]
    fn the_search_form_labels_its_controls_and_keeps_the_choice() {
        let html = search_form("ac\"me", Some(Phase::ApiKeyIssued)).into_string();
        assert!(html.contains(r#"<label for="q">Search by slug or id</label>"#));
        assert!(html.contains(r#"value="ac&quot;me""#));
        assert!(html.contains(r#"<label for="phase">Phase</label>"#));
        assert!(
            html.contains(r#"<option value="API_KEY_ISSUED" selected>API key issued</option>"#)
        );
        assert!(html.contains(r#"<option value="">All</option>"#));
        assert_eq!(html.matches("<option").count(), 7);
    }

    #[test]
    fn rows_link_to_their_tenant_and_escape_names() {
        let html = tenants_table(&[row("t-1", "acme", Phase::PaymentVerified)]).into_string();
        assert!(
            html.contains(r#"<tr data-tenant="t-1"><td><a href="/ui/tenants/t-1">acme</a></td>"#)
        );
        assert!(html.contains("&lt;Acme &amp; Co&gt;"));
        assert!(html.contains("Payment verified"));
        assert!(html.contains("2026-01-20 14:03:12 UTC"));
        assert!(tenants_table(&[]).into_string().contains("No tenants."));
    }

    #[test]
    fn a_slug_without_a_tenant_says_so_and_pages_link_onwards() {
        let none = Listing::Slug {
            slug: "nope".into(),
            rows: Vec::new(),
        };
        assert!(
            listing_section(&none, None)
                .into_string()
                .contains("No tenant with slug “nope”.")
        );
        let page = Listing::Page(TenantPage {
            items: vec![row("t-1", "acme", Phase::NotStarted)],
            next_cursor: Some("742d31".into()),
        });
        let html = listing_section(&page, Some(Phase::NotStarted)).into_string();
        assert!(html.contains(r#"href="/ui/tenants?phase=NOT_STARTED&amp;cursor=742d31""#));
        assert!(!next_link(None, None).into_string().contains("next-page"));
        let id = Listing::Slug {
            slug: "01a23754-0000-7703-9fb2-b745acec7da2".into(),
            rows: Vec::new(),
        };
        assert!(
            listing_section(&id, None)
                .into_string()
                .contains("No tenant with id or slug “01a23754-")
        );
    }
}
