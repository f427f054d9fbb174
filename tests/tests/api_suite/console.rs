//! The console's HTTP contract without a browser: progress links (signed, expiring, refused
//! when changed) and sign-in sessions (sealed cookie, CSRF on every form, sign-out).

use std::sync::Arc;
use std::time::Duration;

use ledger_api::ApiConfig;
use ledger_core::LogReader;
use ledger_projector::ProjectionStore;

use serde_json::json;
use uuid::Uuid;

use super::client::{Api, Reply, Store};

/// The `name=value` of the cookie `name` a reply sets.
fn set_cookie(reply: &Reply, name: &str) -> Option<String> {
    reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_string)
}

/// The value of the first hidden `csrf` field of a page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..].split('"').next().unwrap().to_string()
}

/// `name=value` only, as a request's `Cookie` header sends it.
fn pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_string()
}

/// A registered tenant and a progress link to it (`holder`, `ttl`).
async fn link(api: &Api, tenant: Uuid, body: serde_json::Value) -> Reply {
    api.req("POST", format!("/v1/tenants/{tenant}/progress-link"))
        .admin()
        .json(body)
        .send()
        .await
}

/// A link opens the progress page until it expires; a changed link is refused; bad requests
/// get their codes.
pub async fn progress_links(store: Store) {
    let api = Api::new(store);
    let tenant = api.register("linked").await;
    let r = link(&api, tenant, json!({"holder": "tab-b"})).await;
    r.expect(201);
    let path = r.body["path"].as_str().unwrap().to_string();
    assert!(
        path.starts_with(&format!("/ui/progress/{tenant}?")),
        "{path}"
    );
    assert!(
        !path.contains("tab-b"),
        "the holder stays out of the URL: {path}"
    );
    let expires: chrono::DateTime<chrono::Utc> =
        r.body["expires_at"].as_str().unwrap().parse().unwrap();
    let ttl = expires - chrono::Utc::now();
    assert!(
        ttl > chrono::TimeDelta::minutes(119) && ttl <= chrono::TimeDelta::hours(2),
        "{ttl}"
    );

    let page = api.get(path.clone()).await;
    assert_eq!(page.status.as_u16(), 200, "{}", page.text);
    assert!(page.text.contains("Verifying payment"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));

    api.ok(tenant, "acquire-lock", json!({"holder": "tab-a"}))
        .await;
    let page = api.get(path.clone()).await;
    assert!(
        page.text.contains("Setup is in progress in another tab"),
        "{}",
        page.text
    );
    let mine = link(&api, tenant, json!({"holder": "tab-a"})).await;
    let page = api.get(mine.body["path"].as_str().unwrap()).await;
    assert!(!page.text.contains("another tab"), "{}", page.text);

    let sig_at = path.find("sig=").unwrap() + 4;
    let mut flipped = path.clone();
    let c = if &path[sig_at..sig_at + 1] == "0" {
        "1"
    } else {
        "0"
    };
    flipped.replace_range(sig_at..sig_at + 1, c);
    let later = path.replace("exp=", "exp=1");
    let other = path.replace(&tenant.to_string(), &Uuid::now_v7().to_string());
    let cut = path[..path.find("&sig=").unwrap()].to_string();
    for bad in [flipped, later, other, cut] {
        let r = api.get(bad.clone()).await;
        assert_eq!(r.status.as_u16(), 403, "{bad}: {}", r.text);
        assert!(r.text.contains("link_invalid"), "{}", r.text);
        let events = api.get(bad.replace('?', "/events?")).await;
        assert_eq!(events.status.as_u16(), 403, "{}", events.text);
    }

    let short = link(&api, tenant, json!({"ttl_seconds": 1})).await;
    short.expect(201);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let r = api.get(short.body["path"].as_str().unwrap()).await;
    assert_eq!(r.status.as_u16(), 410, "{}", r.text);
    assert!(r.text.contains("link_expired"), "{}", r.text);

    link(&api, tenant, json!({"ttl_seconds": 0}))
        .await
        .expect_error(422, "invalid_body");
    link(&api, tenant, json!({"ttl_seconds": 604_801}))
        .await
        .expect_error(422, "invalid_body");
    link(&api, tenant, json!({"holder": ""}))
        .await
        .expect_error(422, "invalid_body");
    link(&api, tenant, json!({"holder": "a\nb"}))
        .await
        .expect_error(422, "invalid_body");
    link(&api, tenant, json!({"tab": "x"}))
        .await
        .expect_error(422, "invalid_body");
    link(&api, Uuid::now_v7(), json!({}))
        .await
        .expect_error(404, "tenant_not_found");
    let other = api.register("linked-other").await;
    let token = api.tenant_token(other).await;
    api.req("POST", format!("/v1/tenants/{tenant}/progress-link"))
        .token(&token)
        .send()
        .await
        .expect_error(403, "forbidden");
    api.req("POST", format!("/v1/tenants/{other}/progress-link"))
        .token(&token)
        .send()
        .await
        .expect(201);
    api.req("POST", format!("/v1/tenants/{tenant}/progress-link"))
        .send()
        .await
        .expect_error(401, "unauthorized");
}

/// Signs in with `token` through the form; the reply of the POST.
async fn sign_in(api: &Api, token: &str) -> Reply {
    let form = api.get("/ui").await;
    let pairing = set_cookie(&form, "ledger_sign_in").expect("the form's pairing cookie");
    let csrf = csrf_of(&form.text);
    api.req("POST", "/ui/sign-in")
        .header("cookie", pair(&pairing))
        .header("content-type", "application/x-www-form-urlencoded")
        .raw(format!("token={token}&csrf={csrf}"))
        .send()
        .await
}

/// Signing in sets a sealed, HttpOnly, SameSite=Strict cookie that never shows the token; a
/// form without its CSRF token is refused; signing out clears the cookie.
pub async fn sign_in_sessions(
    store: Store,
    log: Arc<dyn LogReader>,
    projections: Arc<dyn ProjectionStore>,
) {
    let api = Api::with_projections(store, log, projections, ApiConfig::default());
    let first = api.get("/ui").await;
    assert_eq!(first.status.as_u16(), 200);
    assert!(first.text.contains("Sign in") && first.text.contains("<label for=\"token\">"));

    let no_pairing = api
        .req("POST", "/ui/sign-in")
        .header("content-type", "application/x-www-form-urlencoded")
        .raw(format!("token={}&csrf={}", api.admin, csrf_of(&first.text)))
        .send()
        .await;
    assert_eq!(no_pairing.status.as_u16(), 403, "{}", no_pairing.text);
    assert!(no_pairing.text.contains("csrf_invalid"));
    assert!(set_cookie(&no_pairing, "ledger_session").is_none());

    let wrong = sign_in(&api, "la_not-a-token").await;
    assert_eq!(wrong.status.as_u16(), 401, "{}", wrong.text);
    assert!(wrong.text.contains("id=\"sign-in-error\""));
    assert!(set_cookie(&wrong, "ledger_session").is_none());

    let ok = sign_in(&api, &api.admin).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text);
    assert_eq!(ok.header("location"), Some("/ui/tenants"));
    let session = set_cookie(&ok, "ledger_session").expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/ui"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain HTTP: {session}");
    assert!(!session.contains(&api.admin), "{session}");
    let cookie = pair(&session);

    let home = api
        .req("GET", "/ui")
        .header("cookie", cookie.clone())
        .send()
        .await;
    assert_eq!(home.status.as_u16(), 303);
    let tls = sign_in_over_tls(&api).await;
    assert!(tls.contains("Secure"), "{tls}");

    let forged = api
        .req("GET", "/ui")
        .header("cookie", format!("{cookie}x"))
        .send()
        .await;
    assert_eq!(forged.status.as_u16(), 200, "a forged cookie is no session");

    let tenants = api
        .req("GET", "/ui/tenants")
        .header("cookie", cookie.clone())
        .send()
        .await;
    assert_eq!(tenants.status.as_u16(), 200, "{}", tenants.text);
    assert!(!tenants.text.contains(&api.admin));
    let csrf = csrf_of(&tenants.text);
    let out = |body: String| {
        api.req("POST", "/ui/sign-out")
            .header("cookie", cookie.clone())
            .header("content-type", "application/x-www-form-urlencoded")
            .raw(body)
            .send()
    };
    let refused = out(String::new()).await;
    assert_eq!(refused.status.as_u16(), 403, "{}", refused.text);
    let refused = out("csrf=0000".into()).await;
    assert_eq!(refused.status.as_u16(), 403, "{}", refused.text);
    let signed_out = out(format!("csrf={csrf}")).await;
    assert_eq!(signed_out.status.as_u16(), 303);
    let cleared = set_cookie(&signed_out, "ledger_session").unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");

    let tenant = api.register("signed-in").await;
    let token = api.tenant_token(tenant).await;
    let ok = sign_in(&api, &token).await;
    assert_eq!(ok.status.as_u16(), 303, "{}", ok.text);
    assert_eq!(
        ok.header("location"),
        Some(format!("/ui/tenants/{tenant}").as_str())
    );
}

/// The session cookie set through a proxy that says the request came over TLS.
async fn sign_in_over_tls(api: &Api) -> String {
    let form = api.get("/ui").await;
    let pairing = set_cookie(&form, "ledger_sign_in").unwrap();
    let csrf = csrf_of(&form.text);
    let r = api
        .req("POST", "/ui/sign-in")
        .header("cookie", pair(&pairing))
        .header("x-forwarded-proto", "https")
        .header("content-type", "application/x-www-form-urlencoded")
        .raw(format!("token={}&csrf={csrf}", api.admin))
        .send()
        .await;
    set_cookie(&r, "ledger_session").unwrap()
}
