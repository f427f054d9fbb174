//! Operator pages: the compensation queue (`/ui/queue`), the read models (`/ui/projections`,
//! live) and the onboarding funnel (`/ui/funnel`). Each reads through the JSON API's handlers
//! and each action writes through the API's own command path, so the console shows and does
//! exactly what the API would.

mod funnel;
mod projections;
mod queue;

use axum::Router;
use axum::routing::{get, post};
use maud::{Markup, html};

use crate::state::AppState;

/// This module's routes.
pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/ui/queue", get(queue::page))
        .route("/ui/queue/{action}", post(queue::action))
        .route("/ui/projections", get(projections::page))
        .route("/ui/projections/events", get(projections::events))
        .route("/ui/projections/{name}/rebuild", post(projections::rebuild))
        .route("/ui/funnel", get(funnel::page))
}

/// A line above a page's content: what the last action did, or why it was refused.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) enum Notice {
    /// Nothing to say.
    #[default]
    None,
    /// The action succeeded (`p#notice.success`).
    Done(String),
    /// Worth knowing, not a failure (`p#notice.notice`).
    Note(String),
    /// The action was refused, with the API's message (`p#action-error.alert`).
    Refused(String),
}

impl Notice {
    /// The notice as a paragraph (nothing for [`Notice::None`]).
    pub(crate) fn render(&self) -> Markup {
        html! {
            @match self {
                Notice::None => {}
                Notice::Done(text) => p id="notice" class="success" role="status" { (text) },
                Notice::Note(text) => p id="notice" class="notice" role="status" { (text) },
                Notice::Refused(text) => p id="action-error" class="alert" role="alert" { (text) },
            }
        }
    }
}

/// `path` with the non-empty `pairs` as its query string, percent-encoded.
pub(crate) fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let query: Vec<String> = pairs
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// `text` percent-encoded for a query string (every byte but the unreserved ones).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `Some(text)` unless it is absent or blank (an empty form field means "no filter").
pub(crate) fn given(text: Option<String>) -> Option<String> {
    text.map(|t| t.trim().to_string()).filter(|t| !t.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_leave_out_empty_values_and_encode_the_rest() {
        assert_eq!(with_query("/ui/queue", &[("status", "")]), "/ui/queue");
        assert_eq!(
            with_query(
                "/ui/queue",
                &[("status", "pending_sync"), ("t", "a b&c=d/é")]
            ),
            "/ui/queue?status=pending_sync&t=a%20b%26c%3Dd%2F%C3%A9"
        );
    }

    #[test]
    fn notices_render_with_their_ids() {
        assert_eq!(Notice::None.render().into_string(), "");
        assert!(
            Notice::Done("ok <b>".into())
                .render()
                .into_string()
                .contains(r#"id="notice" class="success""#)
        );
        let refused = Notice::Refused("<script>".into()).render().into_string();
        assert!(refused.contains(r#"id="action-error" class="alert""#));
        assert!(refused.contains("&lt;script&gt;"));
        assert_eq!(given(Some("  ".into())), None);
        assert_eq!(given(Some(" x ".into())), Some("x".into()));
    }
}
