//! Database tables as rotation targets, through the real binary: SQLite
//! files made here (no server), and a real PostgreSQL cluster started by
//! `bash scripts/test.sh` (scripts/postgres.sh) with KMS fixtures from the
//! local KMS server, made by boto3 and the blog's own Python code.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Env, Pg, pg_database, python};
use rusqlite::Connection;
use rusqlite::types::Value as Sql;
use serde_json::Value;

const ROWS: usize = 400;

/// Every row of `table`, in id order, every column as stored.
fn snapshot(db: &Path, table: &str) -> Vec<Vec<Sql>> {
    let conn = Connection::open(db).expect("open");
    let mut stmt = conn.prepare(&format!("SELECT * FROM {table} ORDER BY 1")).expect("prepare");
    let width = stmt.column_count();
    stmt.query_map([], |r| (0..width).map(|i| r.get::<_, Sql>(i)).collect::<Result<Vec<_>, _>>())
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows")
}

fn plaintext(i: usize) -> Vec<u8> {
    format!("ssn {i:09}").into_bytes()
}

/// `users(id, tenant, name, ssn TEXT, card BLOB, note)`: text envelopes
/// bound to the row's tenant, binary envelopes, NULLs, an empty string, a
/// garbage value and an envelope not bound to its row.
fn sqlite_users(env: &Env, rows: usize) -> PathBuf {
    let db = env.path("app.db");
    let mut conn = Connection::open(&db).expect("create");
    conn.execute_batch(
        "CREATE TABLE users (id INTEGER PRIMARY KEY, tenant TEXT NOT NULL, name TEXT, ssn TEXT, card BLOB, note TEXT)",
    )
    .expect("schema");
    let tx = conn.transaction().expect("tx");
    for i in 0..rows {
        let tenant = format!("t{}", i % 7);
        let ssn: Sql = match i {
            5 => Sql::Null,
            6 => Sql::Text(String::new()),
            7 => Sql::Text("not an envelope at all".into()),
            // Sealed for another tenant's row: not bound to this one.
            8 => Sql::Text(envelope_core::hazmat::encode_text(&env.seal_local(
                "old",
                &[("tenant", "t9")],
                &plaintext(i),
            ))),
            _ => Sql::Text(envelope_core::hazmat::encode_text(&env.seal_local(
                "old",
                &[("tenant", &tenant)],
                &plaintext(i),
            ))),
        };
        let card =
            if i % 10 == 3 { Sql::Null } else { Sql::Blob(env.seal_local("old", &[("tenant", &tenant)], b"4111")) };
        let note = if i % 2 == 0 { Sql::Null } else { Sql::Text(format!("note {i}")) };
        tx.execute(
            "INSERT INTO users VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            rusqlite::params![i64::try_from(i).expect("small") * 3 + 1, tenant, format!("user{i}"), ssn, card, note],
        )
        .expect("insert");
    }
    tx.commit().expect("commit");
    db
}

/// Runs rekey expecting exit `code`; returns its JSON summary.
fn summary(env: &Env, args: &[&str], code: i32) -> Value {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// The error codes of a failure report, sorted.
fn failure_codes(report: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(report).expect("failure report");
    let mut codes: Vec<String> = text
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).expect("report line")["error_code"].as_str().expect("code").to_owned()
        })
        .collect();
    codes.sort();
    codes
}

fn db_url(db: &Path) -> String {
    format!("sqlite:{}", db.display())
}

#[test]
fn sqlite_envelopes_are_rewrapped_in_place_bound_to_their_rows_and_rolled_back_byte_for_byte() {
    let env = Env::with_keys(&["old", "new"]);
    let db = sqlite_users(&env, ROWS);
    let before = snapshot(&db, "users");
    let url = db_url(&db);
    let s = summary(
        &env,
        &[
            "rewrap",
            "--to",
            "local:new",
            "--from",
            "local:old",
            &url,
            "--table",
            "users",
            "--column",
            "ssn",
            "--column",
            "card",
            "--id",
            "id",
            "--context-column",
            "tenant",
            "--batch-size",
            "64",
            "--json",
            "--journal",
            "j",
        ],
        6,
    );
    let cards = ROWS - ROWS.div_ceil(10);
    // ssn: every row but NULL, empty, garbage and the unbound one.
    assert_eq!(s["rewrapped"], u64::try_from(ROWS - 4 + cards).expect("small"), "{s}");
    assert_eq!(s["failed"], 2, "{s}");
    assert_eq!(s["empty"], u64::try_from(2 + (ROWS - cards)).expect("small"), "{s}");
    let report = std::fs::read_to_string(env.path("j.failures.jsonl")).expect("failure report");
    assert!(report.contains("users id=22 ssn") && report.contains("bad_input"), "{report}");
    assert!(report.contains("users id=25 ssn") && report.contains("context_mismatch"), "{report}");

    let after = snapshot(&db, "users");
    assert_eq!(after.len(), before.len());
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!(old[..3], new[..3], "id, tenant and name unchanged");
        assert_eq!(old[5], new[5], "note unchanged");
        let tenant = format!("t{}", i % 7);
        match (&old[3], &new[3]) {
            (Sql::Text(o), Sql::Text(n)) if (5..=8).contains(&i) => assert_eq!(o, n, "row {i} left alone"),
            (Sql::Text(_), Sql::Text(n)) => {
                let (plain, context) = env.open_with(n.as_bytes(), &["new"]).expect("opens with only the new key");
                assert_eq!(plain, plaintext(i));
                assert_eq!(context.get("tenant"), Some(&tenant), "still bound to its row");
            }
            (o, n) => assert_eq!(o, n, "NULLs stay NULL"),
        }
        match (&old[4], &new[4]) {
            (Sql::Blob(_), Sql::Blob(n)) => {
                assert!(n.starts_with(b"RKY"), "binary stays binary");
                assert_eq!(env.open_with(n, &["new"]).expect("opens").0, b"4111");
            }
            (o, n) => assert_eq!(o, n),
        }
    }

    // A rerun changes nothing: everything is under the new key.
    let again = summary(
        &env,
        &[
            "rewrap",
            "--to",
            "local:new",
            "--from",
            "local:old",
            &url,
            "--table",
            "users",
            "--column",
            "ssn",
            "--column",
            "card",
            "--id",
            "id",
            "--context-column",
            "tenant",
            "--json",
            "--journal",
            "j2",
        ],
        6,
    );
    assert_eq!(again["rewrapped"], 0, "{again}");

    let r = env.json(&["rollback", "--journal", "j", "--json"]);
    assert_eq!(r["restored"], u64::try_from(ROWS - 4 + cards).expect("small"), "{r}");
    assert_eq!(snapshot(&db, "users"), before, "rollback returns every row byte for byte");
}

#[test]
fn shadow_column_is_filled_and_verified_and_originals_stay_untouched() {
    let env = Env::with_keys(&["old", "new"]);
    let db = sqlite_users(&env, 120);
    Connection::open(&db).expect("open").execute_batch("ALTER TABLE users ADD COLUMN ssn_v2 TEXT").expect("alter");
    let before = snapshot(&db, "users");
    let url = db_url(&db);
    let args = [
        "reencrypt",
        "--to",
        "local:new",
        "--from",
        "local:old",
        &url,
        "--table",
        "users",
        "--column",
        "ssn",
        "--into",
        "ssn_v2",
        "--id",
        "id",
        "--context-column",
        "tenant",
        "--verify",
        "--json",
    ];
    let out = env.run(&[&args[..], &["--journal", "j"]].concat());
    assert_eq!(out.status.code(), Some(6), "two bad rows: {}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(s["reencrypted"], 120 - 4, "{s}");
    let after = snapshot(&db, "users");
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!(old[..6], new[..6], "originals untouched");
        match (&old[3], &new[6]) {
            (_, Sql::Null) => assert!((5..=8).contains(&i), "row {i} has no shadow value"),
            (Sql::Text(o), Sql::Text(n)) => {
                assert_eq!(env.open_with(n.as_bytes(), &["new"]).expect("shadow opens").0, plaintext(i));
                assert_eq!(env.open_with(o.as_bytes(), &["old"]).expect("original opens").0, plaintext(i));
            }
            other => panic!("row {i}: {other:?}"),
        }
    }
    // `rekey verify` with the same arguments proves each copy against its original.
    let check = |failures: &str| {
        let check: Vec<&str> = ["verify"].iter().chain(&args).copied().filter(|a| *a != "--verify").collect();
        summary(&env, &[&check[..], &["--failures", failures, "--no-progress"]].concat(), 6)
    };
    let s = check("f1.jsonl");
    assert_eq!(
        (s["verified"].as_u64(), s["failed"].as_u64(), s["empty"].as_u64()),
        (Some(116), Some(2), Some(2)),
        "{s}"
    );
    assert_eq!(s["proven_without_decrypting"], 0, "re-encrypted copies are decrypted: {s}");
    assert_eq!(failure_codes(&env.path("f1.jsonl")), ["not_copied", "not_copied"]);
    // Copies swapped between rows: one of the same tenant (another plaintext), one of another tenant.
    let conn = Connection::open(&db).expect("open");
    let shadow = |i: usize| -> String {
        conn.query_row("SELECT ssn_v2 FROM users WHERE id = ?1", [i64::try_from(i * 3 + 1).expect("small")], |r| {
            r.get(0)
        })
        .expect("shadow")
    };
    let (kept10, kept11) = (shadow(10), shadow(11));
    let set = |i: usize, v: &str| {
        conn.execute(
            "UPDATE users SET ssn_v2 = ?1 WHERE id = ?2",
            rusqlite::params![v, i64::try_from(i * 3 + 1).expect("small")],
        )
        .expect("tamper");
    };
    set(10, &shadow(17));
    set(11, &shadow(12));
    let s = check("f2.jsonl");
    assert_eq!((s["verified"].as_u64(), s["failed"].as_u64()), (Some(114), Some(4)), "{s}");
    assert_eq!(failure_codes(&env.path("f2.jsonl")), ["context_mismatch", "not_copied", "not_copied", "verify_failed"]);
    set(10, &kept10);
    set(11, &kept11);

    // Filled shadows are skipped on a second run.
    let again = env.run(&[&args[..], &["--journal", "j2"]].concat());
    let again: Value = serde_json::from_slice(&again.stdout).expect("summary");
    assert_eq!(again["reencrypted"], 0, "{again}");
    assert_eq!(again["skipped"], 120 - 4, "the unbound and garbage rows fail again: {again}");

    // Rollback empties the shadow column again.
    env.json(&["rollback", "--journal", "j", "--json"]);
    assert_eq!(snapshot(&db, "users"), before);
}

#[test]
fn verify_proves_rewrapped_shadow_copies_without_decrypting_and_decrypts_the_rest() {
    let env = Env::with_keys(&["old", "new"]);
    let db = sqlite_users(&env, 60);
    Connection::open(&db).expect("open").execute_batch("ALTER TABLE users ADD COLUMN card_v2 BLOB").expect("alter");
    let url = db_url(&db);
    let args = [
        "rewrap",
        "--to",
        "local:new",
        "--from",
        "local:old",
        &url,
        "--table",
        "users",
        "--column",
        "card",
        "--into",
        "card_v2",
        "--id",
        "id",
        "--context-column",
        "tenant",
        "--json",
        "--no-progress",
    ];
    let cards = 60 - 6; // every tenth row (i % 10 == 3) has no card
    assert_eq!(summary(&env, &[&args[..], &["--journal", "j"]].concat(), 0)["rewrapped"], cards);
    let check: Vec<&str> = ["verify"].iter().chain(&args).copied().collect();
    let s = summary(&env, &check, 0);
    assert_eq!((s["verified"].as_u64(), s["proven_without_decrypting"].as_u64()), (Some(cards), Some(cards)), "{s}");
    assert_eq!(s["empty"], 6, "{s}");

    // Another row's copy of the same tenant holds the same plaintext under another data key:
    // still a faithful copy, but only decryption can tell.
    let conn = Connection::open(&db).expect("open");
    conn.execute("UPDATE users SET card_v2 = (SELECT card_v2 FROM users WHERE id = 1 + 3 * 7) WHERE id = 1", [])
        .expect("swap");
    let s = summary(&env, &check, 0);
    assert_eq!(
        (s["verified"].as_u64(), s["proven_without_decrypting"].as_u64()),
        (Some(cards), Some(cards - 1)),
        "{s}"
    );
    // A copy under a key the run did not write to is not proof.
    let foreign = env.seal_local("old", &[("tenant", "t0")], b"4111");
    conn.execute("UPDATE users SET card_v2 = ?1 WHERE id = 1", [foreign]).expect("plant");
    let s = summary(&env, &[&check[..], &["--failures", "f.jsonl"]].concat(), 6);
    assert_eq!((s["verified"].as_u64(), s["failed"].as_u64()), (Some(cards - 1), Some(1)), "{s}");
}

#[test]
fn sigkill_at_random_moments_then_resume_finishes_every_row_once_and_rollback_restores_all() {
    let env = Env::with_keys(&["old", "new"]);
    let rows = 6000;
    let db = env.path("big.db");
    {
        let mut conn = Connection::open(&db).expect("create");
        conn.execute_batch(
            "CREATE TABLE items (k TEXT NOT NULL, n INTEGER NOT NULL, v BLOB, PRIMARY KEY (k, n)) WITHOUT ROWID",
        )
        .expect("schema");
        let tx = conn.transaction().expect("tx");
        for i in 0..rows {
            let sealed = env.seal_local("old", &[], &plaintext(i));
            tx.execute(
                "INSERT INTO items VALUES (?1, ?2, ?3)",
                rusqlite::params![format!("k{}", i % 13), i64::try_from(i).expect("small"), sealed],
            )
            .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let before = snapshot(&db, "items");
    let url = db_url(&db);
    let args = [
        "rewrap",
        "--to",
        "local:new",
        &url,
        "--table",
        "items",
        "--column",
        "v",
        "--id",
        "k,n",
        "--batch-size",
        "100",
        "--journal",
        "j",
        "--json",
        "--resume",
    ];
    let mut seed = 0x2545_f491_u64;
    let mut kills = 0;
    for _ in 0..4 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let mut child = env.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
        std::thread::sleep(Duration::from_millis(100 + seed % 400));
        if child.try_wait().expect("wait").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        }
        child.wait().expect("reap");
    }
    let s = env.json(&args);
    assert_eq!(s["failed"], 0, "{s}");
    let after = snapshot(&db, "items");
    assert_eq!(after.len(), rows, "no row lost or added ({kills} kills)");
    for (i, row) in after.iter().enumerate() {
        let Sql::Blob(v) = &row[2] else { panic!("row {i} is not a blob") };
        let n = usize::try_from(match row[1] {
            Sql::Integer(n) => n,
            _ => -1,
        })
        .expect("n");
        assert_eq!(env.open_with(v, &["new"]).expect("opens with the new key").0, plaintext(n), "row {i}");
    }
    let r = env.json(&["rollback", "--journal", "j", "--json"]);
    assert_eq!(r["failed"], 0, "{r}");
    assert_eq!(snapshot(&db, "items"), before, "byte for byte after {kills} kills");
}

#[test]
fn bad_input_is_refused_before_any_write_naming_what_exists() {
    let env = Env::with_keys(&["old", "new"]);
    let db = sqlite_users(&env, 12);
    let url = db_url(&db);
    let rewrap = |extra: &[&str]| {
        let mut args = vec!["rewrap", "--to", "local:new", &url];
        args.extend_from_slice(extra);
        env.fails(&args, 2)
    };
    let e = rewrap(&["--table", "userz", "--column", "ssn", "--id", "id"]);
    assert!(e.contains("no table \"userz\"") && e.contains("users"), "{e}");
    let e = rewrap(&["--table", "users", "--column", "sn", "--id", "id"]);
    assert!(e.contains("no column \"sn\"") && e.contains("id, tenant, name, ssn, card, note"), "{e}");
    let e = rewrap(&["--table", "users", "--column", "ssn", "--id", "tenant"]);
    assert!(e.contains("do not identify rows") && e.contains("occur more than once"), "{e}");
    let e = rewrap(&["--table", "users", "--column", "ssn"]);
    assert!(e.contains("--id"), "{e}");
    let e = env.fails(&["rewrap", "--to", "local:new", &url, "--column", "ssn", "--id", "id"], 2);
    assert!(e.contains("--table"), "{e}");
    let e = env
        .fails(&["rewrap", "--to", "local:new", "sqlite:missing.db", "--table", "t", "--column", "c", "--id", "i"], 2);
    assert!(e.contains("does not exist"), "{e}");
    assert!(!env.path("app.db.users.rekey-journal").exists(), "no journal for a refused run");

    // A scan reads the table without any key.
    let out = env.ok(&["scan", &url, "--table", "users", "--column", "ssn", "--id", "id", "--json"]);
    let scan: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(scan["envelopes"], 12 - 3, "{scan}");
    assert_eq!(scan["empty"], 2, "{scan}");
}

// ---------------------------------------------------------------------------
// PostgreSQL and the local KMS server.

fn kms_fixture(env: &Env, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop/kms_fixtures.py");
    let out = Command::new(python()).arg(script).args(args).current_dir(env.dir.path()).output().expect("python");
    assert!(out.status.success(), "kms_fixtures.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

#[test]
#[ignore = "needs PostgreSQL and the local KMS server: bash scripts/test.sh"]
fn postgres_100k_legacy_records_move_to_kms_in_place_while_an_application_writes() {
    let env = Env::with_keys(&[]);
    let (k1, k2) = (kms_fixture(&env, &["create-key"]), kms_fixture(&env, &["create-key"]));
    let rows: u64 = 100_000;
    kms_fixture(&env, &["legacy-export", &k1, &rows.to_string(), "users.jsonl", "datakey.bin"]);
    let url = pg_database("rekey_legacy");
    let pg = Pg::connect(&url);
    pg.exec("CREATE TABLE users (id bigint PRIMARY KEY, tenant_id int NOT NULL, name text, ssn text, note text)");
    let expected: Vec<String> = std::fs::read_to_string(env.path("users.jsonl.expected"))
        .expect("expected")
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("json")["ssn"].as_str().expect("str").to_owned())
        .collect();
    let records: Vec<Value> = std::fs::read_to_string(env.path("users.jsonl"))
        .expect("export")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    for chunk in records.chunks(10_000) {
        let ids: Vec<i64> = chunk.iter().map(|r| r["id"].as_i64().expect("id")).collect();
        let tenants: Vec<i32> = ids.iter().map(|i| i32::try_from(i % 10).expect("small")).collect();
        let names: Vec<String> = chunk.iter().map(|r| r["name"].as_str().expect("name").to_owned()).collect();
        let ssns: Vec<Option<String>> = chunk
            .iter()
            .map(|r| match r["id"].as_i64().expect("id") % 997 {
                0 => None,
                1 => Some(String::new()),
                _ => Some(r["ssn"].as_str().expect("ssn").to_owned()),
            })
            .collect();
        let notes: Vec<Option<String>> = ids.iter().map(|i| (i % 3 == 0).then(|| format!("note {i}"))).collect();
        pg.rt
            .block_on(pg.client.execute(
                "INSERT INTO users SELECT * FROM unnest($1::int8[], $2::int4[], $3::text[], $4::text[], $5::text[])",
                &[&ids, &tenants, &names, &ssns, &notes],
            ))
            .expect("insert");
    }
    let before = pg.snapshot("users");

    // The application: its own key (not in rekey's keystore), 500 rows updated during the run.
    let app = Env::with_keys(&["app"]);
    let mut chosen: Vec<i64> = Vec::new();
    let mut x = 0x9e37_79b9_u64;
    while chosen.len() < 500 {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        let id = i64::try_from((x >> 33) % rows).expect("small");
        if id % 997 > 1 && !chosen.contains(&id) {
            chosen.push(id);
        }
    }
    let writes: Vec<(i64, String)> = chosen
        .iter()
        .map(|id| {
            (
                *id,
                envelope_core::hazmat::encode_text(&app.seal_local(
                    "app",
                    &[("tenant_id", &(id % 10).to_string())],
                    b"app",
                )),
            )
        })
        .collect();
    let journal = env.path("users.rekey-journal");
    let writer = {
        let (url, writes, journal) = (url.clone(), writes.clone(), journal.clone());
        std::thread::spawn(move || {
            let pg = Pg::connect(&url);
            // Start once rekey has passed its preflight and opened its journal.
            while !journal.exists() {
                std::thread::sleep(Duration::from_millis(5));
            }
            for (n, (id, value)) in writes.iter().enumerate() {
                pg.rt
                    .block_on(pg.client.execute("UPDATE users SET ssn = $2 WHERE id = $1", &[id, value]))
                    .expect("application update");
                if n % 10 == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        })
    };
    let out = Command::new(Env::bin())
        .args([
            "reencrypt",
            "--items",
            "legacy",
            "--legacy-edk",
            "datakey.bin",
            "--to",
            &format!("kms:{k2}"),
            &url,
            "--table",
            "users",
            "--column",
            "ssn",
            "--id",
            "id",
            "--context-column",
            "tenant_id",
            "--json",
            "--journal",
            journal.to_str().expect("utf-8"),
        ])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .stdin(Stdio::null())
        .output()
        .expect("rekey");
    writer.join().expect("writer");
    let s: Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let nulls_and_empties = (0..rows).filter(|i| i % 997 <= 1).count() as u64;
    let changed = s["reencrypted"].as_u64().expect("count");
    let failed = s["failed"].as_u64().expect("count");
    assert_eq!(s["empty"], nulls_and_empties, "{s}");
    assert_eq!(changed + failed, rows - nulls_and_empties, "{s}");
    assert!(failed <= 500, "only the application's rows may fail: {s}");

    let after = pg.snapshot("users");
    assert_eq!(after.len(), before.len(), "row count unchanged");
    let written: BTreeMap<i64, String> = writes.into_iter().collect();
    let mut lines = Vec::new();
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!((&old[..3], &old[4]), (&new[..3], &new[4]), "other columns unchanged, row {i}");
        let id = i64::try_from(i).expect("small");
        if let Some(app_value) = written.get(&id) {
            assert_eq!(new[3].as_deref(), Some(app_value.as_str()), "the application's write to row {id} won");
        } else if id % 997 <= 1 {
            assert_eq!(old[3], new[3], "NULL and empty left alone");
        } else {
            let text = new[3].as_deref().expect("value");
            let header = envelope_core::hazmat::Envelope::parse(
                &envelope_core::hazmat::decode_text(text).expect("text form"),
                &envelope_core::hazmat::ParseOptions::default(),
            )
            .expect("an envelope")
            .header()
            .clone();
            assert_eq!(header.context.get("tenant_id"), Some((id % 10).to_string().as_str()), "bound to its row");
            lines.push((id % 10, text.to_owned(), expected[i].clone()));
        }
    }
    // Every row decrypts to its original text, with only the new KMS key allowed
    // (sorted by tenant: consecutive records share a data key, one Decrypt each).
    lines.sort_by_key(|(tenant, _, _)| *tenant);
    let texts: Vec<&str> = lines.iter().map(|(_, t, _)| t.as_str()).collect();
    std::fs::write(env.path("ssn.enc"), texts.join("\n") + "\n").expect("write");
    let out = Command::new(Env::bin())
        .args(["decrypt", "--lines", "--key", &format!("kms:{k2}"), "ssn.enc", "-o", "ssn.txt"])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .output()
        .expect("decrypt");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let decrypted = std::fs::read_to_string(env.path("ssn.txt")).expect("plaintexts");
    let want: Vec<&str> = lines.iter().map(|(_, _, e)| e.as_str()).collect();
    assert_eq!(decrypted.lines().collect::<Vec<_>>(), want);

    // Rollback: every row rekey changed is back byte for byte; the application's rows stay its own.
    let out = Command::new(Env::bin())
        .args(["rollback", "--journal", journal.to_str().expect("utf-8"), "--json"])
        .current_dir(env.dir.path())
        .output()
        .expect("rollback");
    // Rows the application rewrote after rekey are conflicts, left as they are (exit 6).
    let r: Value = serde_json::from_slice(&out.stdout).expect("rollback summary");
    assert!(r["failed"].as_u64().expect("count") <= 500, "{r}");
    assert_eq!(r["restored"].as_u64().expect("count") + r["failed"].as_u64().expect("count"), changed, "{r}");
    let restored = pg.snapshot("users");
    for (i, (old, now)) in before.iter().zip(&restored).enumerate() {
        let id = i64::try_from(i).expect("small");
        match written.get(&id) {
            Some(app_value) => assert_eq!(now[3].as_deref(), Some(app_value.as_str())),
            None => assert_eq!(old, now, "row {id} restored"),
        }
    }
}

#[test]
#[ignore = "needs PostgreSQL and the local KMS server: bash scripts/test.sh"]
fn sqlite_bare_kms_keys_in_a_blob_column_are_rewrapped_with_reencrypt_and_boto3_opens_them() {
    let env = Env::with_keys(&[]);
    let (k1, k2) = (kms_fixture(&env, &["create-key"]), kms_fixture(&env, &["create-key"]));
    kms_fixture(&env, &["bare-edks", &k1, "40", "edks", r#"{"purpose":"backup"}"#]);
    let expected: BTreeMap<String, String> =
        serde_json::from_str(&std::fs::read_to_string(env.path("edks.expected.json")).expect("expected"))
            .expect("json");
    let db = env.path("keys.db");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch("CREATE TABLE keys (name TEXT PRIMARY KEY, blob BLOB)").expect("schema");
    for name in expected.keys() {
        let blob = std::fs::read(env.path(&format!("edks/{name}"))).expect("blob");
        conn.execute("INSERT INTO keys VALUES (?1, ?2)", rusqlite::params![name, blob]).expect("insert");
    }
    let url = db_url(&db);
    let out = Command::new(Env::bin())
        .args([
            "rewrap",
            "--items",
            "edk",
            "--from",
            &format!("kms:{k1}"),
            "--to",
            &format!("kms:{k2}"),
            "--source-context",
            "purpose=backup",
            "--dest-context",
            "purpose=restore",
            &url,
            "--table",
            "keys",
            "--column",
            "blob",
            "--id",
            "name",
            "--json",
        ])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .output()
        .expect("rekey");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s: Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(s["rewrapped"], 40, "{s}");
    assert_eq!(s["kms"]["calls"]["ReEncrypt"], 40, "{s}");
    std::fs::create_dir(env.path("new")).expect("mkdir");
    for row in snapshot(&db, "keys") {
        let (Sql::Text(name), Sql::Blob(blob)) = (&row[0], &row[1]) else { panic!("{row:?}") };
        std::fs::write(env.path(&format!("new/{name}")), blob).expect("write");
    }
    let decrypted: BTreeMap<String, String> =
        serde_json::from_str(&kms_fixture(&env, &["decrypt-edks", "new", r#"{"purpose":"restore"}"#])).expect("json");
    assert_eq!(decrypted, expected, "boto3 decrypts every new blob to the same data key");
}

#[test]
#[ignore = "needs PostgreSQL and the local KMS server: bash scripts/test.sh"]
fn postgres_bad_input_is_refused_clearly() {
    let env = Env::with_keys(&["old", "new"]);
    let url = pg_database("rekey_bad");
    let pg = Pg::connect(&url);
    pg.exec(
        "CREATE TABLE t (id int, tenant int, v text, n int, b bytea); \
         INSERT INTO t VALUES (1, 1, 'x', 1, NULL), (1, 2, 'y', 2, NULL), (2, 1, 'garbage', 3, '\\x00')",
    );
    let run = |extra: &[&str]| {
        let mut args = vec!["rewrap", "--to", "local:new", url.as_str()];
        args.extend_from_slice(extra);
        env.fails(&args, 2)
    };
    let e = run(&["--table", "nope", "--column", "v", "--id", "id"]);
    assert!(e.contains("no table \"nope\"") && e.contains("public.t"), "{e}");
    let e = run(&["--table", "t", "--column", "w", "--id", "id"]);
    assert!(e.contains("its columns are: id, tenant, v, n, b"), "{e}");
    let e = run(&["--table", "t", "--column", "n", "--id", "id"]);
    assert!(e.contains("is of type integer"), "{e}");
    let e = run(&["--table", "t", "--column", "v", "--id", "id"]);
    assert!(e.contains("do not identify rows"), "{e}");
    let e = env.fails(
        &[
            "rewrap",
            "--to",
            "local:new",
            &format!("{url}?sslmode=verify-full"),
            "--table",
            "t",
            "--column",
            "v",
            "--id",
            "id,tenant",
        ],
        2,
    );
    assert!(e.contains("needs the CA that signed the server's certificate"), "{e}");
    // Composite ids are fine; the garbage row is reported and the run goes on.
    pg.exec("UPDATE t SET v = NULL WHERE v <> 'garbage'");
    let out =
        env.run(&["rewrap", "--to", "local:new", &url, "--table", "t", "--column", "v", "--id", "id,tenant", "--json"]);
    assert_eq!(out.status.code(), Some(6), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "needs PostgreSQL and the local KMS server: bash scripts/test.sh"]
fn postgres_a_role_that_may_not_update_is_refused_before_any_write() {
    let env = Env::with_keys(&["old", "new"]);
    let url = pg_database("rekey_grants");
    let pg = Pg::connect(&url);
    let sealed = envelope_core::hazmat::encode_text(&env.seal_local("old", &[], b"ssn 1"));
    pg.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, '{sealed}' FROM generate_series(1, 50) g; \
         DROP ROLE IF EXISTS rekey_reader; CREATE ROLE rekey_reader LOGIN; GRANT SELECT ON t TO rekey_reader"
    ));
    let before = pg.snapshot("t");
    let reader = url.replacen("://rekey@", "://rekey_reader@", 1);
    assert_ne!(reader, url, "the test URL names the user rekey");
    let args = ["rewrap", "--to", "local:new", "--from", "local:old", &reader, "--table", "t", "--column", "v"];
    let e = env.fails(&[&args[..], &["--id", "id", "--journal", "j"]].concat(), 4);
    assert!(e.contains("role rekey_reader may not UPDATE column \"v\""), "{e}");
    assert!(e.contains("GRANT UPDATE (\"v\") ON"), "the hint says what to grant: {e}");
    assert_eq!(pg.snapshot("t"), before);
    let journal = std::fs::read_to_string(env.path("j")).unwrap_or_default();
    assert!(!journal.contains("\"row\""), "no row was journaled: {journal}");
    pg.exec("GRANT UPDATE (v) ON t TO rekey_reader");
    assert_eq!(summary(&env, &[&args[..], &["--id", "id", "--journal", "j2", "--json"]].concat(), 0)["rewrapped"], 50);
}

#[test]
#[ignore = "needs PostgreSQL and the local KMS server: bash scripts/test.sh"]
fn postgres_connection_lost_mid_run_is_resumable() {
    let env = Env::with_keys(&["old", "new"]);
    let url = pg_database("rekey_lost");
    let pg = Pg::connect(&url);
    let rows = 20_000;
    let sealed = envelope_core::hazmat::encode_text(&env.seal_local("old", &[], b"ssn 1"));
    pg.exec(&format!(
        "CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t SELECT g, '{sealed}' FROM generate_series(1, {rows}) g"
    ));
    let args = [
        "rewrap",
        "--to",
        "local:new",
        "--from",
        "local:old",
        &url,
        "--table",
        "t",
        "--column",
        "v",
        "--id",
        "id",
        "--batch-size",
        "200",
        "--journal",
        "j",
        "--json",
        "--no-progress",
    ];
    let child = env.cmd(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    // Once a batch is committed, every connection of rekey's is cut.
    let journal = env.path("j");
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&journal).unwrap_or_default().contains("\"checkpoint\"") {
        assert!(std::time::Instant::now() < deadline, "no checkpoint within a minute");
        std::thread::sleep(Duration::from_millis(5));
    }
    pg.exec("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'rekey'");
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run could not finish without its connections: {stderr}");
    assert_ne!(out.status.code(), Some(101), "no panic: {stderr}");
    assert!(stderr.contains("--resume"), "the error says how to go on: {stderr}");

    let s = summary(&env, &[&args[..], &["--resume"]].concat(), 0);
    // Resumed after the last committed batch (whose counts it carries on), not restarted: a
    // restart would find the committed rows already under the new key and skip them.
    assert_eq!((s["rewrapped"].as_u64(), s["skipped"].as_u64()), (Some(rows), Some(0)), "{s}");
    let values = pg.snapshot("t");
    assert_eq!(values.len(), usize::try_from(rows).expect("small"));
    let mut distinct: Vec<&str> = values.iter().map(|r| r[1].as_deref().expect("value")).collect();
    distinct.sort_unstable();
    distinct.dedup();
    for v in distinct {
        assert_eq!(env.open_with(v.as_bytes(), &["new"]).expect("opens with only the new key").0, b"ssn 1");
    }
}

#[test]
fn envelopes_in_a_column_become_compact_keyset_records_through_the_engine() {
    let env = Env::with_keys(&["old", "new"]);
    let db = sqlite_users(&env, 60);
    Connection::open(&db).expect("open").execute_batch("ALTER TABLE users ADD COLUMN ssn_v2 TEXT").expect("alter");
    env.ok(&["keyset", "create", "--key", "local:new", "app.keyset"]);
    let before = snapshot(&db, "users");
    let url = db_url(&db);
    let args = [
        "reencrypt",
        "--keyset",
        "app.keyset",
        "--from",
        "local:old",
        &url,
        "--table",
        "users",
        "--column",
        "ssn",
        "--id",
        "id",
        "--context-column",
        "tenant",
        "--json",
        "--no-progress",
    ];
    // The garbage row (7) and the envelope bound to another tenant (8) fail; NULL and '' are left alone.
    let s = summary(&env, &[&args[..], &["--journal", "j"]].concat(), 6);
    assert_eq!((s["reencrypted"].as_u64(), s["failed"].as_u64(), s["empty"].as_u64()), (Some(56), Some(2), Some(2)));

    let keyset =
        envelope_core::keyset::Keyset::from_text(&std::fs::read_to_string(env.path("app.keyset")).expect("read"))
            .expect("keyset file");
    let keyring = env.keyring("new");
    let handle = futures_block_on(keyset.unwrap(&[&keyring])).expect("unwrap");
    let after = snapshot(&db, "users");
    for (i, row) in after.iter().enumerate() {
        if let (Sql::Text(v), Sql::Text(tenant)) = (&row[3], &row[1])
            && !(6..=8).contains(&i)
        {
            assert!(v.len() <= 64 && v.starts_with('w'), "row {i}: a compact record: {v}");
            let context = envelope_core::EncryptionContext::from_pairs([("tenant", tenant.as_str())]).expect("context");
            assert_eq!(handle.decrypt_text(v, &context).expect("opens").as_bytes(), plaintext(i), "row {i}");
            let other = envelope_core::EncryptionContext::from_pairs([("tenant", "t99")]).expect("context");
            assert!(handle.decrypt_text(v, &other).is_err(), "bound to its row");
        }
    }
    // Done is done: a rerun finds every record under the primary key.
    assert_eq!(summary(&env, &[&args[..], &["--journal", "j2"]].concat(), 6)["skipped"], 56);
    // Shadow copies, proven by `rekey verify` with the same arguments.
    let shadow = [&args[..], &["--into", "ssn_v2"]].concat();
    env.json(&["rollback", "--journal", "j", "--json"]);
    assert_eq!(snapshot(&db, "users"), before, "rollback restores every envelope byte for byte");
    assert_eq!(summary(&env, &[&shadow[..], &["--journal", "j4"]].concat(), 6)["reencrypted"], 56);
    let check: Vec<&str> = ["verify"].iter().chain(&shadow).copied().collect();
    let s = summary(&env, &check, 6);
    assert_eq!((s["verified"].as_u64(), s["failed"].as_u64()), (Some(56), Some(2)), "{s}");
}

/// Runs a future whose keyrings need no runtime (local keys) to completion.
fn futures_block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().build().expect("runtime").block_on(future)
}
