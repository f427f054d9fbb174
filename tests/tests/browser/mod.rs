//! The web console in a real browser: headless Chromium driven over WebDriver by
//! [`driver::Browser`], against real `ledger serve` processes on SQLite and PostgreSQL.
//!
//! Each test starts one server and one browser session (about a second) and reuses them for
//! all its steps. Screenshots go to `docs/screenshots/`, taken on the SQLite run only so that
//! the two backends do not write the same file.

#![allow(dead_code)]

pub(crate) mod driver;
// What the tests share: a server, a browser and an API client each, links, sign-in, screenshots.
pub(crate) mod setup;
mod smoke;
// The live progress page: stages done in order with their latency, two tabs, friendly failures.
mod progress;
// Changed progress links answer 403 `link_invalid`, expired ones 410 `link_expired`.
mod links;
// The operator pages by role: queue retry and abandon, the auditor refused, README screenshots.
mod operators;
