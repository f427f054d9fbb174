//! Other processes: `ledger` CLI processes (the `ledger-under-test` binary of this package, which
//! is `ledger_cli::main`) racing for one stream of one database, its errors and its output.

use std::process::{Output, Stdio};

use ledger_core::{Envelope, Position, ReadAll};
use ledger_tests::backend::{Db, Kind};
use ledger_tests::fixtures::*;
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;

/// Processes per round.
const PROCESSES: usize = 8;
/// Rounds.
const ROUNDS: u64 = 4;

/// A `ledger` command on `db`, isolated from the caller's environment.
fn ledger(db: &Db, args: &[&str]) -> Command {
    let mut cmd = isolated();
    cmd.arg("--database-url").arg(&db.url).args(args);
    cmd
}

/// The `ledger` command without arguments, isolated from the caller's environment.
fn isolated() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ledger-under-test"));
    cmd.env_remove("LEDGER_DATABASE_URL")
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// `db`'s URL with a password added (the test server's trust auth ignores it).
pub(crate) fn with_password(db: &Db, password: &str) -> Db {
    let at = db.url.find('@').expect("the test URL names a user");
    Db {
        kind: db.kind,
        url: format!("{}:{password}{}", &db.url[..at], &db.url[at..]),
    }
}

/// A bench's JSON report, checked: it ran on `database` of `backend` and appended events.
fn bench_report(r: &Run, database: &str, backend: &str) -> Value {
    assert_eq!(r.code, 0, "{}", r.stderr);
    let report = r.json();
    assert_eq!(
        (&report["database"], &report["backend"]),
        (&json!(database), &json!(backend))
    );
    assert!(report["events"].as_u64().unwrap() > 0, "{report}");
    report
}

/// Starts a `ledger` process.
fn spawn(db: &Db, args: &[&str]) -> Child {
    ledger(db, args)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start ledger {args:?}: {e}"))
}

/// A finished process: exit code and outputs.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(output: Output) -> Self {
        Self {
            code: output
                .status
                .code()
                .expect("the ledger process was killed by a signal"),
            stdout: String::from_utf8(output.stdout).expect("stdout is not UTF-8"),
            stderr: String::from_utf8(output.stderr).expect("stderr is not UTF-8"),
        }
    }

    /// stdout as one JSON value.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON value ({e}): {:?}", self.stdout))
    }

    /// stdout as JSON lines of envelopes.
    fn envelopes(&self) -> Vec<Envelope> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not an envelope ({e}): {l}"))
            })
            .collect()
    }

    /// The JSON error on stderr (its last line; logs may come before it).
    fn error(&self) -> Value {
        let line = self
            .stderr
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!(
                "stderr does not end in a JSON error ({e}): {:?}",
                self.stderr
            )
        });
        assert!(
            v["error"].is_string() && v["message"].is_string(),
            "not an error object: {v}"
        );
        v
    }
}

/// Waits for a process.
async fn finish(child: Child) -> Run {
    Run::from(
        child
            .wait_with_output()
            .await
            .expect("waiting for ledger failed"),
    )
}

/// Runs a `ledger` command to the end.
async fn run(db: &Db, args: &[&str]) -> Run {
    finish(spawn(db, args)).await
}

/// Asserts a run failed with `exit` and the error `code`, and returns the error object.
fn failed(run: &Run, exit: i32, code: &str) -> Value {
    assert_eq!(
        run.code, exit,
        "stdout {:?}, stderr {:?}",
        run.stdout, run.stderr
    );
    let e = run.error();
    assert_eq!(e["error"], code, "{e}");
    assert!(
        run.stdout.is_empty(),
        "a failed command printed {:?}",
        run.stdout
    );
    e
}

store_test!(databases: processes_race_for_one_stream, |db| async move {
    db.migrate().await.unwrap();
    let s = "race-cli";
    let mut winners = Vec::new();
    for round in 0..ROUNDS {
        let expected = round.to_string();
        let ids: Vec<String> = (0..PROCESSES).map(|_| Uuid::now_v7().to_string()).collect();
        // Start them all, then wait for them all.
        let children: Vec<Child> = ids
            .iter()
            .enumerate()
            .map(|(p, id)| {
                let data = json!({"round": round, "process": p}).to_string();
                spawn(&db, &["append", s, "--expected", &expected, "--type", "Raced", "--data", &data, "--event-id", id])
            })
            .collect();
        let mut runs = Vec::new();
        for child in children {
            runs.push(finish(child).await);
        }
        let won: Vec<usize> = (0..PROCESSES).filter(|&p| runs[p].code == 0).collect();
        assert_eq!(won.len(), 1, "round {round}: exit codes {:?}", runs.iter().map(|r| r.code).collect::<Vec<_>>());
        let w = &runs[won[0]];
        let result = w.json();
        assert_eq!(result["stream"], s);
        assert_eq!((result["first_seq"].as_u64(), result["last_seq"].as_u64()), (Some(round + 1), Some(round + 1)));
        assert!(result["position"].as_u64().unwrap() > 0);
        for (p, r) in runs.iter().enumerate() {
            if p == won[0] {
                continue;
            }
            let e = failed(r, 3, "conflict");
            assert_eq!(e["stream"], s, "{e}");
            assert_eq!(e["expected"], round, "{e}");
            assert_eq!(e["current_seq"], round + 1, "round {round}: {e}");
        }
        winners.push(Uuid::parse_str(&ids[won[0]]).unwrap());
    }

    let store = db.open(ledger_tests::options()).await.unwrap();
    let stored = read_stream(&*store, &stream(s), 1).await;
    assert_eq!(seqs(&stored), (1..=ROUNDS).collect::<Vec<_>>(), "seqs are not gapless");
    assert_eq!(ids(&stored), winners);
    assert_eq!(whole_log(&*store).await.len() as u64, ROUNDS, "a loser wrote something");
});

store_test!(databases: bad_input_exits_2_and_writes_nothing, |db| async move {
    db.migrate().await.unwrap();
    let ok = run(&db, &["append", "cli-1", "--expected", "no-stream", "--type", "Noted", "--data", r#"{"a":1}"#]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let store = db.open(ledger_tests::options()).await.unwrap();
    let log = whole_log(&*store).await;

    let cases: [(&[&str], &str); 6] = [
        (&["append", "cli-1", "--expected", "1", "--type", "Noted", "--data", "{nope"], "invalid_json"),
        (&["append", "cli-1", "--expected", "1", "--type", "Noted", "--data", "{}", "--metadata", "[1]"], "invalid_metadata"),
        (&["append", "Cli-1", "--expected", "1", "--type", "Noted", "--data", "{}"], "invalid_stream_name"),
        (&["append", "cli-1", "--expected", "soon", "--type", "Noted", "--data", "{}"], "invalid_expected_seq"),
        (&["append", "cli-1", "--expected", "1", "--type", "Noted", "--data", "{}", "--event-id", "nope"], "invalid_event_id"),
        // An append that does not state its expected seq is refused.
        (&["append", "cli-1", "--type", "Noted", "--data", "{}"], "invalid_arguments"),
    ];
    for (args, code) in cases {
        let r = run(&db, args).await;
        let e = failed(&r, 2, code);
        assert!(!e["message"].as_str().unwrap().is_empty());
    }
    assert_eq!(whole_log(&*store).await, log, "bad input wrote something");
    let e = failed(&run(&db, &["read-all", "--after", "999999"]).await, 2, "unknown_position");
    assert!(e["message"].as_str().unwrap().contains("999999"), "{e}");
});

store_test!(databases: conflicts_retries_and_reads_print_json, |db| async move {
    db.migrate().await.unwrap();
    let id = Uuid::now_v7().to_string();
    let args = ["append", "cli-2", "--expected", "0", "--type", "Opened", "--data", r#"{"n":1}"#, "--metadata", r#"{"actor":"cli"}"#, "--event-id", &id];
    let first = run(&db, &args).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let result = first.json();
    assert_eq!((result["first_seq"].as_u64(), result["last_seq"].as_u64()), (Some(1), Some(1)));

    // A retry with the same id answers the same and writes nothing, though 0 is stale now.
    let again = run(&db, &args).await;
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.json()["position"], result["position"]);
    assert_eq!(again.json()["last_seq"], 1);

    // A conflict: exit 3, the stream, what was expected and where the stream is.
    let c = run(&db, &["append", "cli-2", "--expected", "0", "--type", "Opened", "--data", "{}"]).await;
    let e = failed(&c, 3, "conflict");
    assert_eq!((&e["stream"], &e["expected"], &e["current_seq"]), (&json!("cli-2"), &json!(0), &json!(1)), "{e}");
    assert!(e["message"].as_str().unwrap().contains("cli-2"), "{e}");
    let c = run(&db, &["append", "cli-2", "--expected", "no-stream", "--type", "Opened", "--data", "{}"]).await;
    assert_eq!(failed(&c, 3, "conflict")["expected"], "no_stream");

    for (i, t) in ["Paid", "Shipped", "Paid"].iter().enumerate() {
        let r = run(&db, &["append", "cli-2", "--expected", &(i + 1).to_string(), "--type", t, "--data", "{}"]).await;
        assert_eq!(r.code, 0, "{}", r.stderr);
    }
    let r = run(&db, &["append", "other-1", "--expected", "any", "--type", "Paid", "--data", "[]"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // `read` and `read-all` print the envelopes the store reads, one JSON line each.
    let store = db.open(ledger_tests::options()).await.unwrap();
    let s = stream("cli-2");
    let stream_events = read_stream(&*store, &s, 1).await;
    assert_eq!(stream_events.len(), 4);
    assert_eq!(stream_events[0].metadata, json!({"actor": "cli"}));
    assert_eq!(stream_events[0].event_id.to_string(), id);
    let read = run(&db, &["read", "cli-2"]).await;
    assert_eq!(read.code, 0, "{}", read.stderr);
    assert_eq!(read.envelopes(), stream_events);
    let from = run(&db, &["read", "cli-2", "--from-seq", "3"]).await;
    assert_eq!(from.envelopes(), stream_events[2..]);
    let line: Value = serde_json::from_str(read.stdout.lines().next().unwrap()).unwrap();
    for key in ["event_id", "stream", "seq", "position", "type", "data", "metadata", "recorded_at"] {
        assert!(line.get(key).is_some(), "a read line has no {key}: {line}");
    }

    let log = whole_log(&*store).await;
    assert_eq!(log.len(), 5);
    assert_eq!(run(&db, &["read-all"]).await.envelopes(), log);
    let after = log[1].position.0.to_string();
    assert_eq!(run(&db, &["read-all", "--after", &after]).await.envelopes(), log[2..]);
    let paid = read_all(&*store, ReadAll::from_start().event_type("Paid")).await;
    assert_eq!(paid.len(), 3);
    assert_eq!(run(&db, &["read-all", "--type", "Paid"]).await.envelopes(), paid);
    let others = read_all(&*store, ReadAll::after(Position::START).category("other")).await;
    assert_eq!(run(&db, &["read-all", "--category", "other"]).await.envelopes(), others);
    assert!(run(&db, &["read", "cli-none"]).await.stdout.is_empty());
});

store_test!(databases: migrate_reports_versions_and_schema_errors, |db| async move {
    if db.kind == Kind::Postgres {
        // An unmigrated PostgreSQL database: the CLI says what to do.
        let r = run(&db, &["append", "cli-3", "--expected", "any", "--type", "T", "--data", "{}"]).await;
        let e = failed(&r, 2, "schema_mismatch");
        assert!(e["message"].as_str().unwrap().contains("ledger migrate"), "{e}");
    }
    let first = run(&db, &["migrate"]).await;
    assert_eq!(first.code, 0, "{}", first.stderr);
    let v = first.json();
    let backend = match db.kind {
        Kind::Sqlite => "sqlite",
        Kind::Postgres => "postgres",
    };
    assert_eq!(v["backend"], backend);
    assert_eq!(v["from"], 0);
    let to = v["to"].as_i64().unwrap();
    assert!(to >= 1);
    let second = run(&db, &["migrate"]).await;
    assert_eq!(second.json(), json!({"backend": backend, "from": to, "to": to}));
    let r = run(&db, &["append", "cli-3", "--expected", "no_stream", "--type", "T", "--data", "{}"]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    let store = db.open(ledger_tests::options()).await.unwrap();
    assert_eq!(seq_of(&*store, &stream("cli-3")).await, 1);
});

store_test!(databases: processes_start_on_a_fresh_database_at_once, |db| async move {
    // Several `ledger migrate` at once: each succeeds and the schema is migrated once.
    let children: Vec<Child> = (0..4).map(|_| spawn(&db, &["migrate"])).collect();
    let mut versions = Vec::new();
    for child in children {
        let r = finish(child).await;
        assert_eq!(r.code, 0, "a concurrent migrate failed: {}", r.stderr);
        versions.push(r.json()["to"].as_i64().unwrap());
    }
    assert!(versions.windows(2).all(|w| w[0] == w[1]), "{versions:?}");
    assert_eq!(
        db.scalar("SELECT COUNT(*) FROM _sqlx_migrations").await,
        versions[0],
        "a migration was recorded twice"
    );
    let store = db.open(ledger_tests::options()).await.unwrap();
    assert!(whole_log(&*store).await.is_empty());
});

store_test!(databases: first_appends_on_a_missing_sqlite_file_at_once, |db| async move {
    if db.kind == Kind::Postgres {
        // A PostgreSQL database is migrated explicitly (see above); appends need it done.
        db.migrate().await.unwrap();
    }
    // Several processes append at once to a database nobody has opened yet (the default
    // SQLite file on a first run): it is created and migrated once, and every append lands.
    let children: Vec<Child> = (0..6)
        .map(|p| {
            let s = format!("first-{p}");
            spawn(&db, &["append", &s, "--expected", "no-stream", "--type", "First", "--data", "{}"])
        })
        .collect();
    for child in children {
        let r = finish(child).await;
        assert_eq!(r.code, 0, "an append on a fresh database failed: {}", r.stderr);
    }
    let store = db.open(ledger_tests::options()).await.unwrap();
    assert_eq!(whole_log(&*store).await.len(), 6);
});

/// A `ledger` command with no `--database-url` (nor `LEDGER_DATABASE_URL`) in `dir`, with its
/// temporary files in `tmp`.
fn ledger_in(dir: &std::path::Path, tmp: &std::path::Path, args: &[&str]) -> Command {
    let mut cmd = isolated();
    cmd.args(args).current_dir(dir).env("TMPDIR", tmp);
    cmd
}

/// The names of the files in `dir`.
fn files(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// `ledger --help` lists every subcommand, one line each.
#[tokio::test]
async fn help_lists_every_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let out = ledger_in(dir.path(), dir.path(), &["--help"])
        .output()
        .await
        .unwrap();
    let r = Run::from(out);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let lines: Vec<&str> = r.stdout.lines().collect();
    for name in [
        "serve", "migrate", "append", "read", "read-all", "bench", "rebuild", "project", "token",
        "audit", "verify", "export", "import",
    ] {
        let at: Vec<usize> = (0..lines.len())
            .filter(|&i| {
                lines[i].split_whitespace().next() == Some(name) && lines[i].starts_with("  ")
            })
            .collect();
        assert_eq!(at.len(), 1, "{name} is not listed once: {}", r.stdout);
        let next = lines.get(at[0] + 1).copied().unwrap_or("");
        assert!(
            !next.starts_with("           "),
            "{name} takes more than one line: {}",
            r.stdout
        );
    }
}

/// Reads, rebuilds, workers, token commands, verify and export in a directory without a
/// ledger exit 2 with what to do, and create no database (they used to create and migrate an
/// empty `ledger.db`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_of_a_missing_ledger_exit_2_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [&[&str]; 8] = [
        &["read-all"],
        &["read", "tenant-x"],
        &["rebuild", "all"],
        &["project"],
        &["token", "list"],
        &["token", "issue", "--name", "ops"],
        &["verify"],
        &["export"],
    ];
    for args in cases {
        let r = Run::from(
            ledger_in(dir.path(), dir.path(), args)
                .output()
                .await
                .unwrap(),
        );
        let e = failed(&r, 2, "no_ledger");
        assert_eq!(
            e["message"],
            "no ledger at ./ledger.db: pass --database-url or run `ledger serve` first",
            "{args:?}"
        );
        assert!(
            files(dir.path()).is_empty(),
            "{args:?} created {:?}",
            files(dir.path())
        );
    }
}

/// An empty PostgreSQL database: the message names the complete command for this database,
/// without the URL's password, and that very command fixes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_schema_message_names_the_complete_fix() {
    ledger_tests::backend::postgres_db(|db| async move {
        let secret = with_password(&db, "s3cret");
        let r = run(&secret, &["read-all"]).await;
        let e = failed(&r, 2, "schema_mismatch");
        let message = e["message"].as_str().unwrap();
        assert!(!message.contains("s3cret"), "{message}");
        let command = message.split('`').nth(1).expect("a command in backticks");
        assert_eq!(
            command,
            format!("ledger migrate --database-url {}", db.url),
            "{message}"
        );
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        let fix = Run::from(
            Command::new(env!("CARGO_BIN_EXE_ledger-under-test"))
                .args(&args)
                .env_remove("LEDGER_DATABASE_URL")
                .output()
                .await
                .unwrap(),
        );
        assert_eq!(fix.code, 0, "{}", fix.stderr);
        assert_eq!(run(&db, &["read-all"]).await.code, 0);
    })
    .await;
}

/// Without `--database-url` a benchmark runs on a temporary database and leaves the working
/// directory, and the temporary directory, as they were.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_without_a_url_leaves_the_directory_untouched() {
    let (dir, tmp) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let args = [
        "bench",
        "append",
        "--seconds",
        "1",
        "--writers",
        "2",
        "--json",
    ];
    let r = Run::from(
        ledger_in(dir.path(), tmp.path(), &args)
            .output()
            .await
            .unwrap(),
    );
    let report = bench_report(&r, "temporary", "sqlite");
    assert!(
        report["ledger_events_per_s"].is_u64(),
        "rates are whole numbers: {report}"
    );
    assert!(
        files(dir.path()).is_empty(),
        "bench wrote {:?} into the working directory",
        files(dir.path())
    );
    assert!(
        files(tmp.path()).is_empty(),
        "bench left {:?} behind",
        files(tmp.path())
    );
}

store_test!(databases: bench_refuses_a_database_with_events, |db| async move {
    db.migrate().await.unwrap();
    let ok = run(&db, &["append", "ledger-1", "--expected", "no-stream", "--type", "Kept", "--data", "{}"]).await;
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let store = db.open(ledger_tests::options()).await.unwrap();
    let log = whole_log(&*store).await;
    let bench = ["bench", "append", "--seconds", "1", "--writers", "1", "--json"];
    let e = failed(&run(&db, &bench).await, 2, "database_not_empty");
    assert!(e["message"].as_str().unwrap().contains("--allow-existing"), "{e}");
    assert_eq!(whole_log(&*store).await, log, "the refused bench wrote events");
    let baseline = match db.kind {
        Kind::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name = 'bench_baseline'",
        Kind::Postgres => "SELECT COUNT(*) FROM pg_tables WHERE tablename = 'bench_baseline'",
    };
    assert_eq!(db.scalar(baseline).await, 0, "the refused bench made its table");
    if db.kind == Kind::Sqlite {
        let e = failed(&run(&db, &["bench", "read", "--scratch"]).await, 2, "scratch_needs_postgres");
        assert!(e["message"].as_str().unwrap().contains("postgres://"), "{e}");
    }
    let mut allowed = bench.to_vec();
    allowed.push("--allow-existing");
    let r = run(&db, &allowed).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(r.json()["database"], "given");
});

/// `--scratch` with a PostgreSQL server URL benches a database it creates and drops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_scratch_creates_and_drops_a_postgres_database() {
    let server = Db {
        kind: Kind::Postgres,
        url: ledger_tests::pg::base_url(),
    };
    let scratch = "SELECT COUNT(*) FROM pg_database WHERE datname LIKE 'ledger\\_bench\\_%'";
    let before = server.scalar(scratch).await;
    let r = run(
        &server,
        &[
            "bench",
            "append",
            "--scratch",
            "--seconds",
            "1",
            "--writers",
            "2",
            "--json",
        ],
    )
    .await;
    bench_report(&r, "scratch", "postgres");
    assert_eq!(
        server.scalar(scratch).await,
        before,
        "the scratch database was not dropped"
    );
}
