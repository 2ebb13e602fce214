//! The local keystore on disk: creation, rotation, permissions, bad files.

mod common;

use common::context;
use envelope_core::{KeyringErrorKind, Keystore, LocalKeyring, Materials, seal};
use std::os::unix::fs::PermissionsExt;

fn store() -> (tempfile::TempDir, Keystore) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Keystore::new(dir.path().join("keys"));
    (dir, store)
}

#[test]
fn create_list_rotate_and_old_versions_still_decrypt() {
    let (_dir, store) = store();
    let info = store.create_key("orders").expect("create");
    assert_eq!(info.latest_version, 1);
    let ctx = context(&[("table", "orders")]);

    let v1 = LocalKeyring::new(store.load("orders").expect("load"));
    let (data_key, edk) = v1.generate_sync(&ctx).expect("generate");
    assert_eq!(edk.key_id(), "orders/v1");
    let old = seal(&Materials { data_key, encrypted_data_keys: vec![edk] }, &ctx, b"row 1").expect("seal");

    assert_eq!(store.rotate_key("orders").expect("rotate").latest_version, 2);
    let v2 = LocalKeyring::new(store.load("orders").expect("load"));
    let (_, edk2) = v2.generate_sync(&ctx).expect("generate");
    assert_eq!(edk2.key_id(), "orders/v2");
    assert_eq!(common::memory_open(&v2, &old).expect("v1 data opens after rotation"), b"row 1");

    store.create_key("billing").expect("second key");
    let names: Vec<String> = store.list().expect("list").into_iter().map(|k| k.name).collect();
    assert_eq!(names, ["billing", "orders"]);

    let mode = std::fs::metadata(store.dir().join("orders.key")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let dir_mode = std::fs::metadata(store.dir()).expect("stat").permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);
}

#[test]
fn creating_an_existing_key_fails_and_keeps_it() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    let before = std::fs::read(store.dir().join("k.key")).expect("read");
    let err = store.create_key("k").expect_err("exists");
    assert!(err.to_string().contains("already exists"), "{err}");
    assert_eq!(std::fs::read(store.dir().join("k.key")).expect("read"), before);
    let leftovers: Vec<_> = std::fs::read_dir(store.dir()).expect("ls").collect();
    assert_eq!(leftovers.len(), 1, "no temporary files are left behind");
}

#[test]
fn key_files_others_can_read_are_refused() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    let path = store.dir().join("k.key");
    for mode in [0o644, 0o640, 0o606, 0o620] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        let err = store.load("k").expect_err("open permissions");
        assert_eq!(err.kind(), KeyringErrorKind::AccessDenied);
        assert!(err.to_string().contains("chmod 600"), "says how to fix it: {err}");
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    store.load("k").expect("private again");
}

#[test]
fn missing_bad_and_malformed_keys_are_clear_errors() {
    let (_dir, store) = store();
    let err = store.load("nope").expect_err("missing");
    assert_eq!(err.kind(), KeyringErrorKind::KeyNotFound);
    assert!(err.to_string().contains("rekey keys create nope"), "{err}");
    for bad_name in ["", ".hidden", "a/b", "../x", "white space", &"x".repeat(65)] {
        assert_eq!(store.create_key(bad_name).expect_err(bad_name).kind(), KeyringErrorKind::Invalid);
    }
    store.create_key("k").expect("create");
    let path = store.dir().join("k.key");
    let good = std::fs::read_to_string(&path).expect("read");
    let secret_line = good.lines().nth(2).expect("a version line").to_owned();
    let malformed = [
        String::new(),
        good.replace("rekey-keystore-file v1", "something else"),
        good.replace("name k", "name other"),
        good.replace("version 1 ", "version 2 "),
        format!("{good}version 3 created 0 AAAA\n"),
        "rekey-keystore-file v1\nname k\n".to_owned(),
    ];
    for text in malformed {
        std::fs::write(&path, &text).expect("write");
        let err = store.load("k").expect_err("malformed");
        assert_eq!(err.kind(), KeyringErrorKind::Invalid, "{err}");
        let secret = secret_line.rsplit(' ').next().expect("key field");
        assert!(!err.to_string().contains(secret), "errors never echo key bytes");
    }
}

#[test]
fn local_key_debug_shows_no_bytes() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    let key = store.load("k").expect("load");
    assert_eq!(format!("{key:?}"), r#"LocalKey { name: "k", versions: 1 }"#);
}
