//! Journals as earlier builds wrote them: format version 2, with the
//! target-specific `row` entries, still roll back; and the generic `change`
//! entry (a target's own undo record) rolls back through the registry of
//! the journal's target kind. The lines are written here in the exact
//! format (`CHECKSUM JSON`), not by the build under test.

mod common;

use common::Env;
use rotate_cli::engine::journal::{b64, sha256};
use rusqlite::Connection;
use serde_json::{Value, json};

/// One journal line: 16 hex digits of SHA-256 over the JSON, a space, the JSON.
fn line(entry: &Value) -> String {
    let json = entry.to_string();
    format!("{} {json}\n", &sha256(json.as_bytes())[..16])
}

/// A SQLite table whose rows hold what a run wrote (`NEW-i`), except row 3,
/// which an application changed since.
fn table(env: &Env) -> std::path::PathBuf {
    let db = env.path("app.db");
    let conn = Connection::open(&db).expect("create");
    conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, ssn TEXT)").expect("schema");
    for (id, value) in [(1, "NEW-1"), (2, "NEW-2"), (3, "edited by the application"), (4, "NEW-4")] {
        conn.execute("INSERT INTO users VALUES (?1, ?2)", rusqlite::params![id, value]).expect("insert");
    }
    db
}

fn values(db: &std::path::Path) -> Vec<String> {
    let conn = Connection::open(db).expect("open");
    let mut stmt = conn.prepare("SELECT ssn FROM users ORDER BY id").expect("prepare");
    stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// The run entry and undo record of a table run, as version 2 wrote them.
fn run_entry(db: &std::path::Path) -> Value {
    json!({"type": "run", "version": 2, "params": {
        "target": "table", "database": format!("sqlite:{}", db.display()), "table": "users",
        "columns": "ssn", "ids": "id", "into": "", "context_columns": "",
        "operation": "rewrap", "to": "local:new", "from": "", "fields": "", "shard": "",
        "targets": format!("sqlite:{}", db.display()),
    }})
}

fn undo(id: i64) -> Value {
    let old = format!("OLD-{id}");
    let new = format!("NEW-{id}");
    json!({"key": format!("[{id}]"), "column": "ssn", "old_sha256": sha256(old.as_bytes()),
           "new_sha256": sha256(new.as_bytes()), "old_b64": b64(old.as_bytes())})
}

#[test]
fn a_version_2_table_journal_with_row_entries_still_rolls_back() {
    let env = Env::with_keys(&[]);
    let db = table(&env);
    let mut journal = line(&run_entry(&db));
    for id in 1..=3 {
        let mut row = undo(id);
        row["type"] = json!("row");
        row["item"] = json!(format!("users id={id} ssn"));
        journal += &line(&row);
        journal += &line(&json!({"type": "done", "item": format!("users id={id} ssn")}));
    }
    let path = env.path("users.rekey-journal");
    std::fs::write(&path, journal).expect("journal");

    let out = env.run(&["rollback", "--journal", path.to_str().expect("utf-8"), "--json"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        values(&db),
        ["OLD-1", "OLD-2", "edited by the application", "NEW-4"],
        "rows 1 and 2 restored byte for byte; the edited row and the row the journal never names are left alone"
    );
    assert!(stderr.contains("users id=3 ssn: changed since the run; left as it is"), "{stderr}");
    assert_eq!(out.status.code(), Some(6), "a conflict is a partial rollback: {stderr}");
}

#[test]
fn generic_change_entries_roll_back_through_the_target_kind_and_unknown_kinds_are_refused() {
    let env = Env::with_keys(&[]);
    let db = table(&env);
    let mut journal = line(&run_entry(&db));
    for id in [1, 2, 4] {
        let item = format!("users id={id} ssn");
        journal += &line(&json!({"type": "change", "item": item, "target": "table", "undo": undo(id)}));
    }
    // An abandoned change was never made: row 4 keeps what it holds.
    journal += &line(&json!({"type": "abandoned", "item": "users id=4 ssn"}));
    let path = env.path("users.rekey-journal");
    std::fs::write(&path, journal).expect("journal");
    let summary = env.json(&["rollback", "--journal", path.to_str().expect("utf-8"), "--json"]);
    assert_eq!(values(&db), ["OLD-1", "OLD-2", "edited by the application", "NEW-4"]);
    assert_eq!(summary["restored"], 2, "{summary}");

    // A journal of a kind this build has no rollback for: a clear refusal, nothing touched.
    let mut run = run_entry(&db);
    run["params"]["target"] = json!("cassandra");
    let other = env.path("other.rekey-journal");
    std::fs::write(&other, line(&run)).expect("journal");
    let err = env.fails(&["rollback", "--journal", other.to_str().expect("utf-8")], 2);
    assert!(err.contains("is of a cassandra run, which this build of rekey cannot roll back"), "{err}");
}
