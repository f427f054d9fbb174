//! Signing in and out: a token pasted once becomes a sealed session cookie.

use axum::Form;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::http::header::SET_COOKIE;
use axum::response::{IntoResponse, Response};
use maud::html;
use serde::Deserialize;

use super::page::page;
use super::session::{
    COOKIE_NAME, SIGN_IN_COOKIE, Sealed, Session, clear, cookie, csrf_matches, new_csrf, over_tls,
    seal, set_cookie,
};
use super::{ConsoleError, see_other};
use crate::auth::{Caller, authenticate};
use crate::state::AppState;

/// How long the sign-in form's pairing cookie lives, in seconds.
const SIGN_IN_FORM_SECONDS: i64 = 3600;

/// Where a signed-in person starts: the tenants, or a tenant token's own tenant.
pub(crate) fn home(caller: &Caller) -> String {
    match caller {
        Caller::Tenant(id) => format!("/ui/tenants/{id}"),
        Caller::Admin { .. } | Caller::Auditor { .. } => "/ui/tenants".to_string(),
    }
}

/// `GET /ui`: the sign-in page, or the console's first page for a signed-in person.
pub(crate) async fn show(
    session: Option<Session>,
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Response {
    match session {
        Some(session) => see_other(&home(&session.caller)),
        None => sign_in_page(&state, &headers, None, axum::http::StatusCode::OK),
    }
}

/// The sign-in form with a fresh pairing cookie, and `problem` when the last try failed.
fn sign_in_page(
    state: &AppState,
    headers: &HeaderMap,
    problem: Option<&str>,
    status: axum::http::StatusCode,
) -> Response {
    let pairing = new_csrf();
    let body = page(
        "Sign in",
        None,
        html! {
            section class="card sign-in" {
                h1 { "Sign in" }
                p class="muted" {
                    "Paste an admin, auditor or tenant token. It is kept sealed in a cookie of this browser only, and checked again on every page."
                }
                @if let Some(problem) = problem {
                    p id="sign-in-error" class="alert" role="alert" { (problem) }
                }
                form id="sign-in" method="post" action="/ui/sign-in" autocomplete="off" {
                    input type="hidden" name="csrf" value=(pairing);
                    label for="token" { "Token" }
                    input id="token" name="token" type="password" required autofocus
                        autocomplete="off" spellcheck="false";
                    p { button type="submit" { "Sign in" } }
                }
            }
        },
    );
    let secure = over_tls(headers, state);
    (
        status,
        [(
            SET_COOKIE,
            set_cookie(SIGN_IN_COOKIE, &pairing, SIGN_IN_FORM_SECONDS, secure),
        )],
        body,
    )
        .into_response()
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub(crate) struct SignInForm {
    token: Option<String>,
    csrf: Option<String>,
}

/// `POST /ui/sign-in`: checks the token and starts a session.
pub(crate) async fn sign_in(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Result<Response, ConsoleError> {
    let paired = cookie(&headers, SIGN_IN_COOKIE).unwrap_or("");
    if paired.is_empty() || !csrf_matches(paired, form.csrf.as_deref()) {
        return Err(ConsoleError::csrf());
    }
    let token = form.token.as_deref().unwrap_or("").trim();
    if token.is_empty() {
        return Ok(sign_in_page(
            &state,
            &headers,
            Some("Paste a token to sign in."),
            axum::http::StatusCode::BAD_REQUEST,
        ));
    }
    let caller = match authenticate(&state, token).await {
        Ok((caller, _)) => caller,
        Err(e) if e.status() == axum::http::StatusCode::UNAUTHORIZED => {
            let problem = e.body().message;
            return Ok(sign_in_page(
                &state,
                &headers,
                Some(&problem),
                axum::http::StatusCode::UNAUTHORIZED,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let keys = state.console.keys().await?;
    let ttl = state.config.session_ttl.as_secs() as i64;
    let now = (state.clock)().timestamp();
    let sealed = Sealed {
        token: token.to_string(),
        expires: now + ttl,
        csrf: new_csrf(),
    };
    let secure = over_tls(&headers, &state);
    let mut response = see_other(&home(&caller));
    let out = response.headers_mut();
    out.append(
        SET_COOKIE,
        set_cookie(COOKIE_NAME, &seal(keys, &sealed), ttl, secure),
    );
    out.append(SET_COOKIE, set_cookie(SIGN_IN_COOKIE, "", 0, secure));
    Ok(response)
}

/// The sign-out form's field.
#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    csrf: Option<String>,
}

/// `POST /ui/sign-out`: ends the session (clears its cookie).
pub(crate) async fn sign_out(
    session: Session,
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<SignOutForm>,
) -> Result<Response, ConsoleError> {
    session.check_csrf(form.csrf.as_deref())?;
    let mut response = see_other("/ui");
    clear(response.headers_mut(), over_tls(&headers, &state));
    Ok(response)
}
