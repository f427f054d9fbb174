//! The web console in a real browser: headless Chromium driven over WebDriver by
//! [`driver::Browser`], against real `ledger serve` processes on SQLite and PostgreSQL.
//!
//! Each test starts one server and one browser session (about a second) and reuses them for
//! all its steps. Screenshots go to `docs/screenshots/`, taken on the SQLite run only so that
//! the two backends do not write the same file.

#![allow(dead_code)]

pub(crate) mod driver;
mod smoke;
