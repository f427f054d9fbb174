//! The console's stylesheet and script, embedded in the binary (no build step), cached by
//! browsers for five minutes.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, Code};
use crate::input::ApiPath;

/// The stylesheet.
const CSS: &str = include_str!("assets/console.css");
/// The script: live updates (EventSource) and confirmations.
const JS: &str = include_str!("assets/console.js");

/// The URL of the stylesheet.
pub(crate) fn css_url() -> &'static str {
    "/ui/assets/console.css"
}

/// The URL of the script.
pub(crate) fn js_url() -> &'static str {
    "/ui/assets/console.js"
}

/// `GET /ui/assets/{file}`.
pub(crate) async fn serve(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (JS, "text/javascript; charset=utf-8"),
        _ => {
            return Err(ApiError::new(
                Code::NotFound,
                "the console has no such asset",
            ));
        }
    };
    Ok((
        [(CONTENT_TYPE, kind), (CACHE_CONTROL, "public, max-age=300")],
        body,
    )
        .into_response())
}
