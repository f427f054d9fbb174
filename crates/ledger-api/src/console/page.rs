//! The page shell every console page shares: head, navigation, sign-out, and the error page.

use axum::http::StatusCode;
use axum::response::Html;
use chrono::{DateTime, Utc};
use maud::{DOCTYPE, Markup, html};

use super::assets::{css_url, js_url};
use super::session::Session;
use crate::auth::Caller;
use crate::error::Code;

/// The sections of the operator console, as the navigation lists them.
const SECTIONS: &[(&str, &str)] = &[
    ("/ui/tenants", "Tenants"),
    ("/ui/locks", "Locks"),
    ("/ui/queue", "Queue"),
    ("/ui/projections", "Projections"),
    ("/ui/funnel", "Funnel"),
];

/// A whole page: `title`, the navigation of `session` (none on public pages), `content`.
pub(crate) fn page(title: &str, session: Option<&Session>, content: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Onboarding ledger" }
                link rel="stylesheet" href=(css_url());
                script src=(js_url()) defer {}
            }
            body {
                a class="skip" href="#main" { "Skip to content" }
                @if let Some(session) = session {
                    (navigation(session))
                }
                main id="main" tabindex="-1" { (content) }
            }
        }
    };
    Html(markup.into_string())
}

/// The navigation of a signed-in person, with who they are and the sign-out button.
fn navigation(session: &Session) -> Markup {
    let who = match &session.caller {
        Caller::Admin { token } => format!("admin · {token}"),
        Caller::Auditor { token } => format!("auditor · {token}"),
        Caller::Tenant(id) => format!("tenant · {id}"),
    };
    html! {
        header class="top" {
            nav aria-label="Console" {
                a class="brand" href="/ui" { "Ledger" }
                @match &session.caller {
                    Caller::Tenant(id) => {
                        a href={ "/ui/tenants/" (id) } { "My tenant" }
                    }
                    _ => {
                        @for (href, label) in SECTIONS {
                            a href=(href) { (label) }
                        }
                    }
                }
            }
            form class="sign-out" method="post" action="/ui/sign-out" {
                span class="who" { (who) }
                (csrf_field(session))
                button type="submit" { "Sign out" }
            }
        }
    }
}

/// The hidden CSRF field every form of a session carries.
pub(crate) fn csrf_field(session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(session.csrf); }
}

/// A link to a tenant's page, showing the start of its id (the whole id in its title and for
/// screen readers), so tables of tenants stay narrow.
pub(crate) fn tenant_link(id: &str) -> Markup {
    let short: String = id.chars().take(8).collect();
    html! {
        a href={ "/ui/tenants/" (id) } title=(id) aria-label={ "Tenant " (id) } {
            code { (short) "…" }
        }
    }
}

/// A time as a person reads it, in a `<time>` element a script or a test can read exactly.
pub(crate) fn time(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// A time of day, for times within the hour.
pub(crate) fn clock(at: DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)) {
            (at.format("%H:%M:%S UTC"))
        }
    }
}

/// The page of a refused or failed request: its status, stable code and message (the API's
/// message, which never holds SQL or driver text). A progress link's refusal is read by the
/// person onboarding, who has no console to go back to.
pub(crate) fn error_page(status: StatusCode, code: Code, message: &str) -> Html<String> {
    let title = status.canonical_reason().unwrap_or("Error");
    let public = matches!(code, Code::LinkInvalid | Code::LinkExpired);
    page(
        title,
        None,
        html! {
            section class="error card" {
                h1 { (title) }
                p id="error-message" { (sentence(message)) }
                p class="code muted" { "Code: " code { (code.as_str()) } }
                @if public {
                    p { "The app that sent you here can give you a new link." }
                } @else {
                    p { a href="/ui" { "Back to the console" } }
                }
            }
        },
    )
}

/// `text` as a sentence: capitalised, ending with a full stop.
fn sentence(text: &str) -> String {
    let mut chars = text.trim().chars();
    let mut out: String = match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => return String::new(),
    };
    if !out.ends_with(['.', '!', '?']) {
        out.push('.');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_as_sentences() {
        assert_eq!(sentence("this link has expired"), "This link has expired.");
        assert_eq!(sentence("Done!"), "Done!");
        assert_eq!(sentence(""), "");
    }

    #[test]
    fn link_refusals_do_not_send_people_to_the_console() {
        let page = error_page(StatusCode::GONE, Code::LinkExpired, "expired").0;
        assert!(!page.contains("href=\"/ui\""), "{page}");
        let page = error_page(StatusCode::FORBIDDEN, Code::Forbidden, "no").0;
        assert!(page.contains("href=\"/ui\""), "{page}");
    }
}
