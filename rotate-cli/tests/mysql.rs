//! MySQL and MariaDB tables as rotation targets, through the real binary,
//! against the real MariaDB server `bash scripts/test.sh` starts
//! (scripts/mariadb.sh), over TLS too.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::{Env, My, mysql_database, mysql_tls};
use mysql_async::Value as V;
use serde_json::Value;

fn plaintext(i: usize) -> Vec<u8> {
    format!("ssn {i:09}").into_bytes()
}

/// The password of the URL, for runs whose URL (a journal's) has none.
fn password(url: &str) -> String {
    let userinfo = url.split_once("://").and_then(|(_, r)| r.split_once('@')).map(|(u, _)| u).expect("userinfo");
    userinfo.split_once(':').map(|(_, p)| p.to_owned()).expect("a password in REKEY_TEST_MYSQL_URL")
}

/// `users(id, tenant, ssn TEXT, card VARBINARY, note)`: text envelopes
/// bound to the row's tenant, binary envelopes, NULLs, an empty string, a
/// garbage value and an envelope not bound to its row.
fn users(env: &Env, my: &My, rows: usize) {
    my.exec(
        "CREATE TABLE users (id BIGINT PRIMARY KEY, tenant VARCHAR(8) NOT NULL, ssn TEXT, card VARBINARY(1024), \
         note TEXT) CHARACTER SET utf8mb4",
    );
    let mut values = Vec::new();
    for i in 0..rows {
        let tenant = format!("t{}", i % 7);
        let ssn = match i {
            5 => V::NULL,
            6 => V::Bytes(Vec::new()),
            7 => V::Bytes(b"not an envelope at all".to_vec()),
            8 => V::Bytes(
                envelope_core::hazmat::encode_text(&env.seal_local("old", &[("tenant", "t9")], &plaintext(i)))
                    .into_bytes(),
            ),
            _ => V::Bytes(
                envelope_core::hazmat::encode_text(&env.seal_local("old", &[("tenant", &tenant)], &plaintext(i)))
                    .into_bytes(),
            ),
        };
        let card = if i % 10 == 3 { V::NULL } else { V::Bytes(env.seal_local("old", &[("tenant", &tenant)], b"4111")) };
        let note = if i % 2 == 0 { V::NULL } else { V::Bytes(format!("note {i}").into_bytes()) };
        values.push(vec![
            V::Int(i64::try_from(i).expect("small") * 3 + 1),
            V::Bytes(tenant.into_bytes()),
            ssn,
            card,
            note,
        ]);
    }
    for chunk in values.chunks(500) {
        let marks = vec!["(?, ?, ?, ?, ?)"; chunk.len()].join(", ");
        my.exec_with(&format!("INSERT INTO users VALUES {marks}"), chunk.concat());
    }
}

fn summary(env: &Env, args: &[&str], code: i32) -> Value {
    let out = env.run(args);
    assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

fn text(cell: &Option<Vec<u8>>) -> &str {
    std::str::from_utf8(cell.as_deref().expect("a value")).expect("utf-8")
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_envelopes_are_rewrapped_in_place_bound_to_their_rows_and_rolled_back_byte_for_byte() {
    let env = Env::with_keys(&["old", "new"]);
    let url = mysql_database("rekey_inplace");
    let my = My::connect(&url);
    let rows = 400;
    users(&env, &my, rows);
    let before = my.snapshot("users");
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
    ];
    // A dry run and a scan write nothing.
    summary(&env, &[&args[..], &["--dry-run", "--journal", "dry"]].concat(), 6);
    assert_eq!(my.snapshot("users"), before, "a dry run writes nothing");
    let scan = env.run(&["scan", &url, "--table", "users", "--column", "ssn", "--id", "id", "--json"]);
    assert!(scan.status.code().is_some_and(|c| c != 101), "{}", String::from_utf8_lossy(&scan.stderr));
    assert!(String::from_utf8_lossy(&scan.stdout).contains("local:old"), "{}", String::from_utf8_lossy(&scan.stdout));

    let s = summary(&env, &[&args[..], &["--journal", "j"]].concat(), 6);
    let cards = rows - rows.div_ceil(10);
    assert_eq!(s["rewrapped"], u64::try_from(rows - 4 + cards).expect("small"), "{s}");
    assert_eq!(s["failed"], 2, "{s}");
    let journal = std::fs::read_to_string(env.path("j")).expect("journal");
    assert!(!journal.contains(&password(&url)), "no password in the journal");
    assert!(journal.contains("mysql://rekey@127.0.0.1"), "the journal names the database without its password");

    let after = my.snapshot("users");
    assert_eq!(after.len(), before.len());
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!((&old[..2], &old[4]), (&new[..2], &new[4]), "id, tenant and note unchanged");
        let tenant = format!("t{}", i % 7);
        if (5..=8).contains(&i) {
            assert_eq!(old[2], new[2], "row {i} left alone");
        } else {
            let (plain, context) = env.open_with(text(&new[2]).as_bytes(), &["new"]).expect("opens with the new key");
            assert_eq!((plain, context.get("tenant")), (plaintext(i), Some(&tenant)), "row {i}");
        }
        match (&old[3], &new[3]) {
            (Some(_), Some(n)) => assert_eq!(env.open_with(n, &["new"]).expect("opens").0, b"4111"),
            (o, n) => assert_eq!(o, n, "NULLs stay NULL"),
        }
    }
    let again = summary(&env, &[&args[..], &["--journal", "j2"]].concat(), 6);
    assert_eq!(again["rewrapped"], 0, "{again}");

    // Rollback reads the password from MYSQL_PWD: the journal has none.
    let out =
        env.cmd(&["rollback", "--journal", "j", "--json"]).env("MYSQL_PWD", password(&url)).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(my.snapshot("users"), before, "rollback returns every row byte for byte");
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_an_application_writing_during_the_run_is_never_overwritten() {
    let env = Env::with_keys(&["old", "new"]);
    let app = Env::with_keys(&["app"]);
    let url = mysql_database("rekey_concurrent");
    let my = My::connect(&url);
    let rows: i64 = 30_000;
    my.exec("CREATE TABLE t (id INT PRIMARY KEY, v VARCHAR(1024))");
    let sealed = envelope_core::hazmat::encode_text(&env.seal_local("old", &[], b"ssn 1"));
    for start in (1..=rows).step_by(1000) {
        let marks = vec!["(?, ?)"; 1000].join(", ");
        let params = (start..start + 1000).flat_map(|i| [V::Int(i), V::Bytes(sealed.clone().into_bytes())]).collect();
        my.exec_with(&format!("INSERT INTO t VALUES {marks}"), params);
    }
    let app_value = envelope_core::hazmat::encode_text(&app.seal_local("app", &[], b"app"));
    let journal = env.path("j");
    let writer = {
        let (url, journal, value) = (url.clone(), journal.clone(), app_value.clone());
        std::thread::spawn(move || {
            let my = My::connect(&url);
            while !journal.exists() {
                std::thread::sleep(Duration::from_millis(2));
            }
            let mut ids = Vec::new();
            for n in 0..400_i64 {
                let id = (n * 7919) % rows + 1;
                my.exec_with("UPDATE t SET v = ? WHERE id = ?", vec![V::Bytes(value.clone().into_bytes()), V::Int(id)]);
                ids.push(id);
            }
            ids
        })
    };
    let out = env.run(&[
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
        "500",
        "--journal",
        journal.to_str().expect("utf-8"),
        "--json",
        "--no-progress",
    ]);
    let written = writer.join().expect("writer");
    let s: Value = serde_json::from_slice(&out.stdout).expect("summary");
    // The application's rows fail (changed during the run, or already under its key); nothing else does.
    let (rewrapped, failed) = (s["rewrapped"].as_u64().expect("count"), s["failed"].as_u64().expect("count"));
    assert_eq!(rewrapped + failed, u64::try_from(rows).expect("small"), "{s}");
    assert!(failed <= 400, "{s}");
    let after = my.snapshot("t");
    for id in &written {
        let row = &after[usize::try_from(id - 1).expect("small")];
        assert_eq!(text(&row[1]), app_value, "the application's write to row {id} won");
    }
    let mut others = 0;
    for row in &after {
        let id: i64 = text(&row[0]).parse().expect("id");
        if !written.contains(&id) {
            assert_eq!(env.open_with(text(&row[1]).as_bytes(), &["new"]).expect("new key").0, b"ssn 1");
            others += 1;
        }
    }
    assert!(others > 0);
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_sigkill_then_resume_finishes_every_row_and_a_lost_connection_is_resumable() {
    let env = Env::with_keys(&["old", "new"]);
    let url = mysql_database("rekey_lost");
    let my = My::connect(&url);
    let rows: i64 = 20_000;
    my.exec("CREATE TABLE t (id INT PRIMARY KEY, v BLOB)");
    let sealed = env.seal_local("old", &[], b"ssn 1");
    for start in (1..=rows).step_by(1000) {
        let marks = vec!["(?, ?)"; 1000].join(", ");
        let params = (start..start + 1000).flat_map(|i| [V::Int(i), V::Bytes(sealed.clone())]).collect();
        my.exec_with(&format!("INSERT INTO t VALUES {marks}"), params);
    }
    let before = my.snapshot("t");
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
    let wait_for_checkpoint = || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !std::fs::read_to_string(env.path("j")).unwrap_or_default().contains("\"checkpoint\"") {
            assert!(std::time::Instant::now() < deadline, "no checkpoint within a minute");
            std::thread::sleep(Duration::from_millis(2));
        }
    };
    // SIGKILL once a batch is committed.
    let mut child = env.cmd(&args).stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawn");
    wait_for_checkpoint();
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    // Resume, then cut every connection of rekey's once it has committed again.
    std::fs::write(env.path("mark"), "").expect("mark");
    let resumed = [&args[..], &["--resume"]].concat();
    let child = env.cmd(&resumed).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let checkpoints = || std::fs::read_to_string(env.path("j")).unwrap_or_default().matches("\"checkpoint\"").count();
    let seen = checkpoints();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while checkpoints() == seen {
        assert!(std::time::Instant::now() < deadline, "no new checkpoint within a minute");
        std::thread::sleep(Duration::from_millis(2));
    }
    let admin = My::connect(&common::mysql_url());
    admin.exec(
        "BEGIN NOT ATOMIC FOR p IN (SELECT ID FROM information_schema.PROCESSLIST \
         WHERE DB = 'rekey_lost' AND ID <> CONNECTION_ID()) DO KILL CONNECTION p.ID; END FOR; END",
    );
    drop(my);
    let out = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run could not finish without its connection: {stderr}");
    assert_ne!(out.status.code(), Some(101), "no panic: {stderr}");
    assert!(stderr.contains("--resume"), "the error says how to go on: {stderr}");
    let s = summary(&env, &resumed, 0);
    // Resumed after the last committed batch, not restarted: a restart would skip the rows done.
    assert_eq!(s["skipped"], 0, "{s}");
    let my = My::connect(&url);
    let after = my.snapshot("t");
    assert_eq!(after.len(), before.len());
    for row in &after {
        let value = row[1].as_deref().expect("value");
        assert_eq!(env.open_with(value, &["new"]).expect("every row under the new key").0, b"ssn 1");
    }
    let out =
        env.cmd(&["rollback", "--journal", "j", "--json"]).env("MYSQL_PWD", password(&url)).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(my.snapshot("t"), before, "rollback restores every row byte for byte");
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_a_user_that_may_not_update_is_refused_before_any_write_and_bad_input_clearly() {
    let env = Env::with_keys(&["old", "new"]);
    let url = mysql_database("rekey_grants");
    let my = My::connect(&url);
    let sealed = envelope_core::hazmat::encode_text(&env.seal_local("old", &[], b"ssn 1"));
    my.exec(&format!(
        "CREATE TABLE t (id INT PRIMARY KEY, v TEXT, n INT); \
         INSERT INTO t SELECT seq, '{sealed}', seq % 10 FROM seq_1_to_50; \
         DROP USER IF EXISTS 'rekey_reader'@'127.0.0.1'; \
         CREATE USER 'rekey_reader'@'127.0.0.1' IDENTIFIED BY 'reader-pw'; \
         GRANT SELECT ON rekey_grants.t TO 'rekey_reader'@'127.0.0.1'"
    ));
    let before = my.snapshot("t");
    let reader = format!("mysql://rekey_reader@{}", url.split_once('@').expect("host").1);
    let args =
        ["rewrap", "--to", "local:new", "--from", "local:old", &reader, "--table", "t", "--column", "v", "--id", "id"];
    let e = env.fails(&args, 4);
    assert!(e.contains("authentication failed for user \"rekey_reader\""), "no password: {e}");
    let run = |extra: &[&str], code: i32| {
        let out = env.cmd(&[&args[..], extra].concat()).env("MYSQL_PWD", "reader-pw").output().expect("run");
        assert_eq!(out.status.code(), Some(code), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = run(&["--journal", "j"], 4);
    assert!(e.contains("may not UPDATE column \"v\""), "{e}");
    assert!(e.contains("GRANT UPDATE (`v`) ON `rekey_grants`.`t` TO 'rekey_reader'@'127.0.0.1'"), "{e}");
    assert!(!e.contains("reader-pw"), "{e}");
    assert_eq!(my.snapshot("t"), before);
    let journal = std::fs::read_to_string(env.path("j")).unwrap_or_default();
    assert!(!journal.contains("\"row\""), "no row was journaled: {journal}");
    my.exec("GRANT UPDATE (v) ON rekey_grants.t TO 'rekey_reader'@'127.0.0.1'");
    run(&["--journal", "j2"], 0);

    let bad = |extra: &[&str]| {
        let mut all = vec!["rewrap", "--to", "local:new", url.as_str()];
        all.extend_from_slice(extra);
        env.fails(&all, 2)
    };
    let e = bad(&["--table", "nope", "--column", "v", "--id", "id"]);
    assert!(e.contains("no table \"nope\"") && e.contains("its tables are: t"), "{e}");
    let e = bad(&["--table", "t", "--column", "w", "--id", "id"]);
    assert!(e.contains("its columns are: id, v, n"), "{e}");
    let e = bad(&["--table", "t", "--column", "n", "--id", "id"]);
    assert!(e.contains("is of type int"), "{e}");
    let e = bad(&["--table", "t", "--column", "v", "--id", "n"]);
    assert!(e.contains("do not identify rows") && e.contains("10 values occur more than once"), "{e}");
    let e = bad(&["--table", "t`; DROP TABLE t; --", "--column", "v", "--id", "id"]);
    assert!(e.contains("no table"), "{e}");
    assert_eq!(my.snapshot("t").len(), 50, "the hostile name broke nothing");
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_shadow_column_is_filled_and_verified_over_verify_identity_and_another_ca_is_refused() {
    let env = Env::with_keys(&["old", "new"]);
    let tls = mysql_tls();
    let plain = mysql_database("rekey_shadow");
    let my = My::connect(&plain);
    users(&env, &my, 120);
    my.exec("ALTER TABLE users ADD COLUMN ssn_v2 TEXT");
    let before = my.snapshot("users");
    let host_port_db = plain.split_once('@').expect("host").1.replacen("127.0.0.1", "localhost", 1);
    let url = |query: &str| format!("mysql://rekey_tls:{}@{host_port_db}?{query}", tls.password);
    let good = url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", tls.ca));
    let args = [
        "reencrypt",
        "--to",
        "local:new",
        "--from",
        "local:old",
        &good,
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
        "--json",
        "--no-progress",
    ];
    // Another CA, and no TLS for a user that requires it: refused, nothing written.
    let other = url(&format!("ssl-mode=VERIFY_IDENTITY&ssl-ca={}", tls.other_ca));
    let e = env.fails(&[&args[..5], &[other.as_str()], &args[6..]].concat(), 4);
    assert!(e.contains("certificate was refused"), "{e}");
    let disabled = url("ssl-mode=DISABLED");
    let e = env.fails(&[&args[..5], &[disabled.as_str()], &args[6..]].concat(), 4);
    assert!(e.contains("REQUIRE SSL") && !e.contains(&tls.password), "{e}");
    assert_eq!(my.snapshot("users"), before);

    let s = summary(&env, &[&args[..], &["--journal", "j"]].concat(), 6);
    assert_eq!(s["reencrypted"], 120 - 4, "{s}");
    let after = my.snapshot("users");
    for (i, (old, new)) in before.iter().zip(&after).enumerate() {
        assert_eq!(old[..5], new[..5], "originals untouched");
        match &new[5] {
            None => assert!((5..=8).contains(&i), "row {i} has no shadow value"),
            Some(v) => assert_eq!(env.open_with(v, &["new"]).expect("shadow opens").0, plaintext(i)),
        }
    }
    let check: Vec<&str> = ["verify"].iter().chain(&args).copied().collect();
    let s = summary(&env, &[&check[..], &["--failures", "f.jsonl"]].concat(), 6);
    assert_eq!((s["verified"].as_u64(), s["failed"].as_u64()), (Some(116), Some(2)), "{s}");
    // A copy swapped between rows is caught.
    my.exec(
        "UPDATE users SET ssn_v2 = (SELECT x.ssn_v2 FROM (SELECT ssn_v2 FROM users WHERE id = 52) x) WHERE id = 31",
    );
    let s = summary(&env, &[&check[..], &["--failures", "f2.jsonl"]].concat(), 6);
    assert_eq!((s["verified"].as_u64(), s["failed"].as_u64()), (Some(115), Some(3)), "{s}");
    let out = env.cmd(&["rollback", "--journal", "j", "--json"]).env("MYSQL_PWD", &tls.password).output().expect("run");
    let r: Value = serde_json::from_slice(&out.stdout).expect("rollback summary");
    assert_eq!(r["failed"], 1, "the tampered row is a conflict, left alone: {r}");
    let restored = my.snapshot("users");
    for (i, (old, now)) in before.iter().zip(&restored).enumerate() {
        if i != 10 {
            assert_eq!(old, now, "row {i} restored");
        }
    }
}

#[test]
#[ignore = "needs MariaDB: bash scripts/test.sh"]
fn mysql_composite_text_ids_in_other_collations_and_hostile_names_rotate_and_roll_back() {
    let env = Env::with_keys(&["old", "new"]);
    let url = mysql_database("rekey_ids");
    let my = My::connect(&url);
    my.exec(
        "CREATE TABLE `we``ird` (tenant VARCHAR(10) CHARACTER SET latin1 NOT NULL, \
         `na``me` VARCHAR(20) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL, \
         `v; DROP TABLE x` BLOB, PRIMARY KEY (tenant, `na``me`))",
    );
    let mut params = Vec::new();
    for i in 0..300 {
        let name = format!("Ünïcode-{i:03}");
        params.extend([
            V::Bytes(format!("t{}", i % 3).into_bytes()),
            V::Bytes(name.into_bytes()),
            V::Bytes(env.seal_local("old", &[], format!("v{i}").as_bytes())),
        ]);
    }
    my.exec_with(&format!("INSERT INTO `we``ird` VALUES {}", vec!["(?, ?, ?)"; 300].join(", ")), params);
    let before = my.snapshot("`we``ird`");
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
            "we`ird",
            "--column",
            "v; DROP TABLE x",
            "--id",
            "tenant,na`me",
            "--batch-size",
            "50",
            "--journal",
            "j",
            "--json",
            "--no-progress",
        ],
        0,
    );
    assert_eq!(s["rewrapped"], 300, "{s}");
    for row in my.snapshot("`we``ird`") {
        assert!(env.open_with(row[2].as_deref().expect("value"), &["new"]).is_ok(), "{row:?}");
    }
    let out =
        env.cmd(&["rollback", "--journal", "j", "--json"]).env("MYSQL_PWD", password(&url)).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(my.snapshot("`we``ird`"), before, "rollback restores every row byte for byte");
}
