//! Erasure end to end with the real binary: a running `ledger serve` answers a tenant's
//! personal fields until `ledger erase` (another process) erases it, then `[erased]` at once;
//! no plain personal value, nor the destroyed key, is left in the SQLite file and its WAL or
//! in a `pg_dump`; `ledger verify` passes; exports carry keys only when asked, and an import
//! with them keeps the erasure.

use serde_json::Value;

use crate::api_suite::erasure::{A_ERROR, A_HOLDER, A_NAME, A_PERSON, A_SESSION, B_NAME, seed};
use crate::serve::{ADMIN, client, ledger_command, serve_with};

/// Runs `ledger <args>` on `db`: exit code, stdout, stderr.
async fn ledger(db: &ledger_tests::backend::Db, args: &[&str]) -> (i32, String, String) {
    let out = ledger_command(db, None)
        .args(args)
        .output()
        .await
        .expect("ledger runs");
    (
        out.status.code().expect("ledger exits"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The export's data key lines, by subject.
fn keys_of(export: &str) -> Vec<Value> {
    export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter_map(|v| v.get("data_key").cloned())
        .collect()
}

store_test!(databases: erase_leaves_no_plaintext_behind, |db| async move {
    db.migrate().await.unwrap();
    let server = serve_with(&db, Some(ADMIN), &[]).await;
    let api = client(&db, vec![server.addr]).await;
    let (a, b) = seed(&api).await;
    let secrets = [A_NAME, A_PERSON, A_SESSION, A_HOLDER, A_ERROR];
    let before = api.get(format!("/v1/tenants/{a}")).await;
    assert_eq!(before.body["name"], A_NAME, "{}", before.text);

    // The keys travel with an export only when asked.
    let (code, plain_export, err) = ledger(&db, &["export"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(keys_of(&plain_export).is_empty());
    for secret in secrets {
        assert!(!plain_export.contains(secret), "{secret} is exported in plain text");
    }
    let (code, keyed, err) = ledger(&db, &["export", "--with-keys"]).await;
    assert_eq!(code, 0, "{err}");
    let keys = keys_of(&keyed);
    let key_of = |t: &uuid::Uuid| {
        keys.iter()
            .find(|k| k["subject"] == t.to_string())
            .and_then(|k| k["key"].as_str())
            .map(str::to_string)
    };
    let a_key = key_of(&a).expect("A has a key");
    assert!(key_of(&b).is_some());

    // Another process erases A: the running server answers `[erased]` at once.
    let (code, out, err) = ledger(&db, &["erase", &a.to_string()]).await;
    assert_eq!(code, 0, "{out} {err}");
    let erased: Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(erased["key_destroyed"], true, "{erased}");
    assert_eq!(erased["was_already_erased"], false);
    let after = api.get(format!("/v1/tenants/{a}")).await;
    assert_eq!(after.body["name"], "[erased]", "{}", after.text);
    let log = api.get("/v1/events?limit=1000").await;
    for secret in secrets {
        assert!(!log.text.contains(secret), "{secret} is still served");
    }
    assert!(log.text.contains(B_NAME));
    api.command(a, "acquire-lock", serde_json::json!({"holder": "x"}))
        .await
        .expect_error(410, "tenant_erased");
    let (code, out, _) = ledger(&db, &["erase", &a.to_string()]).await;
    assert_eq!(code, 0);
    assert!(out.contains(r#""was_already_erased":true"#), "{out}");
    let (code, _, err) = ledger(&db, &["erase", &uuid::Uuid::now_v7().to_string()]).await;
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("tenant_not_found"), "{err}");

    // The CLI's reads open what is left and show the rest as erased; the chains verify.
    let (_, read, _) = ledger(&db, &["read", &format!("tenant-{a}")]).await;
    assert!(read.contains("[erased]") && !read.contains(A_NAME), "{read}");
    let (_, read_b, _) = ledger(&db, &["read", &format!("tenant-{b}")]).await;
    assert!(read_b.contains(B_NAME), "{read_b}");
    let (code, out, err) = ledger(&db, &["verify"]).await;
    assert_eq!(code, 0, "{out} {err}");
    let (_, keyed, _) = ledger(&db, &["export", "--with-keys"]).await;
    assert_eq!(keys_of(&keyed).len(), keys.len());
    assert_eq!(key_of_after(&keyed, &a), None, "the destroyed key is not exported");
    server.stop().await;

    // Nothing readable is left in the database's bytes.
    let key_bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&a_key[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    match db.sqlite_path() {
        Some(path) => {
            let wal = path.with_file_name("ledger.db-wal");
            for file in [path, wal] {
                let bytes = std::fs::read(&file).unwrap_or_default();
                for secret in secrets {
                    assert!(!contains(&bytes, secret.as_bytes()), "{secret} in {}", file.display());
                }
                assert!(!contains(&bytes, &key_bytes), "the key is in {}", file.display());
            }
        }
        None => {
            let dump = pg_dump(&db.url);
            for secret in secrets {
                assert!(!dump.contains(secret), "{secret} is in pg_dump");
            }
            assert!(!dump.contains(&a_key), "the key is in pg_dump");
            assert!(dump.contains("sealed:v1:"));
        }
    }

    // An import of the keyed export elsewhere keeps A erased and B readable.
    let import = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(import.path(), &keyed).unwrap();
    // The example checker skips the key lines and verifies the ciphertext's chains.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/verify_chain.py");
    let checked = tokio::process::Command::new("python3")
        .arg(script)
        .arg(import.path())
        .output()
        .await
        .expect("python3 runs");
    assert!(checked.status.success(), "{}", String::from_utf8_lossy(&checked.stdout));
    ledger_tests::backend::sqlite_db(|other| async move {
        let (code, out, err) = ledger(&other, &["import", import.path().to_str().unwrap()]).await;
        assert_eq!(code, 0, "{out} {err}");
        let (_, read, _) = ledger(&other, &["read", &format!("tenant-{a}")]).await;
        assert!(read.contains("[erased]") && !read.contains(A_NAME), "{read}");
        let (_, read_b, _) = ledger(&other, &["read", &format!("tenant-{b}")]).await;
        assert!(read_b.contains(B_NAME), "{read_b}");
    })
    .await;
    // A key table restored from before the erasure brings A's key back: the next server
    // destroys it again from the log's TenantErased.
    let literal = match db.kind {
        ledger_tests::backend::Kind::Postgres => format!("'\\x{a_key}'::bytea"),
        ledger_tests::backend::Kind::Sqlite => format!("X'{a_key}'"),
    };
    db.execute(&format!(
        "UPDATE ledger_keys SET key = {literal}, erased_at = NULL WHERE subject = '{a}'"
    ))
    .await
    .unwrap();
    let store = db.open(ledger_tests::options()).await.unwrap();
    let state = |store: ledger_tests::Store| async move {
        let keys = store.keys(&[a.to_string()]).await.unwrap();
        keys.get(&a.to_string()).cloned()
    };
    assert!(matches!(state(store.clone()).await, Some(ledger_core::KeyState::Live(_))));
    let server = serve_with(&db, Some(ADMIN), &[]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !matches!(state(store.clone()).await, Some(ledger_core::KeyState::Erased(_))) {
        assert!(std::time::Instant::now() < deadline, "the restored key was not destroyed");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    server.stop().await;

    // Without the keys, the copy is erased for every tenant.
    let plain = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(plain.path(), &plain_export).unwrap();
    ledger_tests::backend::sqlite_db(|other| async move {
        let (code, out, err) = ledger(&other, &["import", plain.path().to_str().unwrap()]).await;
        assert_eq!(code, 0, "{out} {err}");
        let (_, read_b, _) = ledger(&other, &["read", &format!("tenant-{b}")]).await;
        assert!(read_b.contains("[erased]") && !read_b.contains(B_NAME), "{read_b}");
    })
    .await;
});

/// The key of `tenant` in an export, if it has one.
fn key_of_after(export: &str, tenant: &uuid::Uuid) -> Option<String> {
    keys_of(export)
        .into_iter()
        .find(|k| k["subject"] == tenant.to_string())
        .and_then(|k| k["key"].as_str().map(str::to_string))
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `pg_dump` of the database at `url`.
fn pg_dump(url: &str) -> String {
    let out = std::process::Command::new("pg_dump")
        .arg("--no-owner")
        .arg(url)
        .output()
        .expect("pg_dump runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
