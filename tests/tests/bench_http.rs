//! `ledger bench http` end to end: the real binary starts its own `ledger serve`, loads it over
//! HTTP and reports every figure, on a temporary SQLite file and on a scratch PostgreSQL
//! database.

use std::process::Stdio;

use serde_json::Value;
use tokio::process::Command;

/// The figures the report must hold, each positive.
const FIGURES: [&str; 12] = [
    "requests",
    "commands_per_s",
    "p50_ms",
    "p99_ms",
    "append_events_per_s",
    "ratio",
    "long_p50_ms",
    "short_p50_ms",
    "long_over_short",
    "peak_rss_bytes",
    "connections",
    "tenants",
];

/// Runs a short `ledger bench http --json` with `extra` arguments and returns its report.
async fn bench_http(extra: &[&str]) -> Value {
    let out = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"))
        .env_remove("LEDGER_DATABASE_URL")
        .env_remove("LEDGER_ADMIN_TOKEN")
        .env("RUST_LOG", "error")
        .args(["bench", "http", "--seconds", "1", "--connections", "4"])
        .args(["--tenants", "20", "--long-events", "200", "--json"])
        .args(extra)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await
        .expect("ledger runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{}: {stdout}{stderr}", out.status);
    let report: Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    assert_eq!(report["bench"], "http", "{report}");
    assert_eq!(report["server"], "spawned", "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    for figure in FIGURES {
        let value = report[figure].as_f64();
        assert!(value.is_some_and(|v| v > 0.0), "{figure}: {report}");
    }
    report
}

/// On the default temporary SQLite file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_on_a_temporary_sqlite_file() {
    let report = bench_http(&[]).await;
    assert_eq!(report["backend"], "sqlite", "{report}");
    assert_eq!(report["database"], "temporary", "{report}");
}

/// On a scratch PostgreSQL database, dropped afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_http_on_a_scratch_postgres_database() {
    let url = ledger_tests::pg::base_url();
    let report = bench_http(&["--database-url", &url, "--scratch"]).await;
    assert_eq!(report["backend"], "postgres", "{report}");
    assert_eq!(report["database"], "scratch", "{report}");
}
