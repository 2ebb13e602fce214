//! PostgreSQL over TLS through the real binary, against the test cluster's
//! TLS side (`bash scripts/test.sh`; scripts/postgres.sh makes a throwaway
//! CA with openssl, `ssl=on`, and roles that may connect only over TLS):
//! libpq's sslmodes and certificate checks, client certificates, and
//! refusals that name what failed and write nothing.

mod common;

use common::{Env, Pg, pg_database, pg_tls};

const ROWS: usize = 300;

/// A database `name` with `t(id, v)`: ROWS text envelopes under local:old.
fn table(env: &Env, name: &str) -> (String, Pg) {
    let admin = pg_database(name);
    let pg = Pg::connect(&admin);
    let mut values = Vec::new();
    for i in 0..ROWS {
        let sealed = envelope_core::hazmat::encode_text(&env.seal_local("old", &[], format!("ssn {i:09}").as_bytes()));
        values.push(format!("({i}, '{sealed}')"));
    }
    pg.exec(&format!("CREATE TABLE t (id int PRIMARY KEY, v text); INSERT INTO t VALUES {}", values.join(", ")));
    (admin, pg)
}

fn rewrap(url: &str) -> Vec<&str> {
    vec!["rewrap", "--to", "local:new", "--from", "local:old", url, "--table", "t", "--column", "v", "--id", "id"]
}

fn scan(url: &str) -> Vec<&str> {
    vec!["scan", url, "--table", "t", "--column", "v", "--id", "id", "--json"]
}

/// Runs a command that must be refused with exit `code`: nothing changed in
/// the table, no journal left; returns stderr.
fn refused(env: &Env, pg: &Pg, args: &[&str], code: i32) -> String {
    let before = pg.snapshot("t");
    let journal = env.path("refused.journal");
    let journal = journal.to_str().expect("utf-8");
    let stderr = env.fails(&[args, &["--journal", journal]].concat(), code);
    assert_eq!(pg.snapshot("t"), before, "a refused run wrote nothing");
    assert!(!std::path::Path::new(journal).exists(), "a refused run leaves no journal");
    stderr
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn a_rotation_over_verify_full_rewraps_every_row_and_keeps_no_password() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, pg) = table(&env, "rekey_tls_full");
    let tls = pg_tls();
    let url =
        tls.url(&tls.tls_user(), "127.0.0.1", "rekey_tls_full", &format!("sslmode=verify-full&sslrootcert={}", tls.ca));
    let out = env.ok(&[&rewrap(&url)[..], &["--journal", "j", "--json"]].concat());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["rewrapped"], ROWS, "{summary}");
    for row in pg.snapshot("t") {
        let value = row[1].as_deref().expect("value");
        assert!(env.open_with(value.as_bytes(), &["new"]).is_ok(), "row {:?} is under the new key", row[0]);
    }
    let journal = std::fs::read_to_string(env.path("j")).expect("journal");
    assert!(!journal.contains(&tls.password), "the journal holds no password");
    assert!(!String::from_utf8_lossy(&out.stderr).contains(&tls.password));
    // The same by host name, with the settings from libpq's variables instead of the URL.
    let by_name = tls.url(&tls.tls_user(), "localhost", "rekey_tls_full", "");
    let out =
        env.cmd(&scan(&by_name)).env("PGSSLMODE", "verify-full").env("PGSSLROOTCERT", &tls.ca).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn require_and_the_default_sslmode_encrypt_without_checking() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, _pg) = table(&env, "rekey_tls_require");
    let tls = pg_tls();
    for query in ["sslmode=require", "", "sslmode=prefer", "sslmode=allow"] {
        let url = tls.url(&tls.tls_user(), "127.0.0.1", "rekey_tls_require", query);
        env.ok(&scan(&url));
    }
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn a_certificate_from_another_ca_is_refused_and_nothing_is_written() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, pg) = table(&env, "rekey_tls_other_ca");
    let tls = pg_tls();
    for mode in ["verify-full", "verify-ca", "require"] {
        let url = tls.url(
            &tls.tls_user(),
            "127.0.0.1",
            "rekey_tls_other_ca",
            &format!("sslmode={mode}&sslrootcert={}", tls.other_ca),
        );
        let e = refused(&env, &pg, &rewrap(&url), 4);
        assert!(e.contains("is not signed by a CA in sslrootcert"), "{mode}: {e}");
        assert!(e.contains("hint: set sslrootcert to the CA bundle"), "{mode}: {e}");
        assert!(!e.contains(&tls.password), "{e}");
    }
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn a_wrong_host_name_is_refused_under_verify_full_and_accepted_under_verify_ca() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, pg) = table(&env, "rekey_tls_name");
    let tls = pg_tls();
    // The server's certificate names localhost and 127.0.0.1; this name reaches it through hostaddr.
    let query = |mode: &str| format!("hostaddr=127.0.0.1&sslmode={mode}&sslrootcert={}", tls.ca);
    let url = tls.url(&tls.tls_user(), "db.wrong.example", "rekey_tls_name", &query("verify-full"));
    let e = refused(&env, &pg, &rewrap(&url), 4);
    assert!(e.contains("not valid for the host name"), "{e}");
    assert!(e.contains("sslmode=verify-ca"), "the hint names the weaker check: {e}");
    let url = tls.url(&tls.tls_user(), "db.wrong.example", "rekey_tls_name", &query("verify-ca"));
    let out = env.ok(&[&rewrap(&url)[..], &["--json"]].concat());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["rewrapped"], ROWS, "{summary}");
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn sslmode_disable_is_refused_by_the_server_with_a_clear_message() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, pg) = table(&env, "rekey_tls_disable");
    let tls = pg_tls();
    let url = tls.url(&tls.tls_user(), "127.0.0.1", "rekey_tls_disable", "sslmode=disable");
    let e = refused(&env, &pg, &rewrap(&url), 4);
    assert!(e.contains("pg_hba.conf refuses this connection"), "{e}");
    assert!(e.contains("accepts only TLS connections here") && e.contains("not sslmode=disable"), "{e}");
    assert!(!e.contains(&tls.password), "{e}");
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn client_certificates_log_in_where_pg_hba_says_cert() {
    let env = Env::with_keys(&["old", "new"]);
    let (_, pg) = table(&env, "rekey_tls_cert");
    let tls = pg_tls();
    let base = format!("sslmode=verify-full&sslrootcert={}", tls.ca);
    let url = tls.url(
        "rekey_cert",
        "localhost",
        "rekey_tls_cert",
        &format!("{base}&sslcert={}&sslkey={}", tls.cert, tls.key),
    );
    let out = env.ok(&[&rewrap(&url)[..], &["--json"]].concat());
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("summary");
    assert_eq!(summary["rewrapped"], ROWS, "{summary}");
    // The same through PGSSLCERT and PGSSLKEY.
    let plain = tls.url("rekey_cert", "localhost", "rekey_tls_cert", &base);
    let out = env.cmd(&scan(&plain)).env("PGSSLCERT", &tls.cert).env("PGSSLKEY", &tls.key).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Without one, the server refuses, and the message says to give one.
    let e = refused(&env, &pg, &rewrap(&plain), 4);
    assert!(e.contains("sslcert"), "{e}");
}

#[test]
#[ignore = "needs the local PostgreSQL servers: bash scripts/test.sh"]
fn a_server_that_is_not_there_is_named() {
    let env = Env::with_keys(&["old", "new"]);
    // A port nothing listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let e = env.fails(&rewrap(&format!("postgres://rekey@127.0.0.1:{port}/x")), 4);
    assert!(e.contains("connection refused") && e.contains("hint: check the host and port"), "{e}");
}
