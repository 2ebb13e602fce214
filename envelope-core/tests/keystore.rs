//! The local keystore on disk: creation, rotation, permissions, bad files.

mod common;

use common::context;
use envelope_core::hazmat::{Materials, seal};
use envelope_core::{KeyringErrorKind, Keystore, LocalKeyring};
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

fn assert_refused(store: &Keystore, name: &str, words: &str) {
    let err = store.load(name).expect_err("refused");
    assert_eq!(err.kind(), KeyringErrorKind::AccessDenied, "{err}");
    assert!(err.to_string().contains(words), "says why ({words}): {err}");
}

#[test]
fn a_key_file_reached_through_a_symlink_is_refused() {
    let (dir, store) = store();
    store.create_key("real").expect("create");
    // A link inside the keystore to a private key file elsewhere (or to
    // another key): the file itself is 0600 and ours, only the path is a link.
    let outside = dir.path().join("elsewhere.key");
    std::fs::copy(store.dir().join("real.key"), &outside).expect("copy");
    std::fs::set_permissions(&outside, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::symlink(&outside, store.dir().join("planted.key")).expect("symlink");
    std::fs::write(
        &outside,
        std::fs::read_to_string(store.dir().join("real.key")).expect("read").replace("name real", "name planted"),
    )
    .expect("write");
    assert_refused(&store, "planted", "symbolic link");
    std::os::unix::fs::symlink(store.dir().join("real.key"), store.dir().join("alias.key")).expect("symlink");
    assert_refused(&store, "alias", "symbolic link");
    store.load("real").expect("the real file still loads");
}

#[test]
fn a_key_file_owned_by_someone_else_is_refused() {
    use std::os::unix::fs::MetadataExt;
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    let path = store.dir().join("k.key");
    let me = std::fs::metadata(&path).expect("stat").uid();
    if me != 0 {
        eprintln!("skipped: only root can give a file to another user");
        return;
    }
    std::os::unix::fs::chown(&path, Some(65534), None).expect("chown to nobody");
    assert_refused(&store, "k", "owned by");
    let err = store.rotate_key("k").expect_err("no rotation of someone else's file either");
    assert_eq!(err.kind(), KeyringErrorKind::AccessDenied, "{err}");
}

#[test]
fn a_key_path_that_is_not_a_regular_file_is_refused() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    let as_dir = store.dir().join("dir.key");
    std::fs::create_dir(&as_dir).expect("mkdir");
    std::fs::set_permissions(&as_dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    assert_refused(&store, "dir", "not a regular file");

    // A FIFO would block a plain open until someone writes to it.
    let fifo = store.dir().join("fifo.key");
    let made = std::process::Command::new("mkfifo").arg("-m").arg("600").arg(&fifo).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipped the FIFO case: no mkfifo");
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let store2 = store.clone();
    std::thread::spawn(move || {
        let _ = tx.send(store2.load("fifo").map(|_| ()).map_err(|e| (e.kind(), e.to_string())));
    });
    let answer = rx.recv_timeout(std::time::Duration::from_secs(5)).expect("loading a FIFO must not hang");
    let (kind, message) = answer.expect_err("refused");
    assert_eq!(kind, KeyringErrorKind::AccessDenied, "{message}");
    assert!(message.contains("not a regular file"), "{message}");
}

#[test]
fn a_keystore_directory_others_can_write_is_refused() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    for mode in [0o770, 0o707, 0o777, 0o1777, 0o720] {
        std::fs::set_permissions(store.dir(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        assert_refused(&store, "k", "chmod 700");
        let err = store.create_key("other").expect_err("no new key there either");
        assert_eq!(err.kind(), KeyringErrorKind::AccessDenied, "{err}");
        let err = store.rotate_key("k").expect_err("no rotation there either");
        assert_eq!(err.kind(), KeyringErrorKind::AccessDenied, "{err}");
        assert!(store.list().is_err(), "nor a listing");
    }
    for mode in [0o700, 0o750, 0o755] {
        std::fs::set_permissions(store.dir(), std::fs::Permissions::from_mode(mode)).expect("chmod");
        store.load("k").expect("only the owner can write: fine");
    }
}

#[test]
fn the_directories_rekey_creates_are_private() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Keystore::new(dir.path().join("a/b/keys"));
    store.create_key("k").expect("create");
    for path in [dir.path().join("a"), dir.path().join("a/b"), dir.path().join("a/b/keys")] {
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "{}", path.display());
    }
}

#[test]
fn racing_rotations_never_lose_a_version() {
    let (_dir, store) = store();
    store.create_key("k").expect("create");
    const THREADS: usize = 4;
    const ROUNDS: usize = 15;
    let barrier = std::sync::Barrier::new(THREADS);
    let results: Vec<Vec<(u32, Vec<u8>)>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..THREADS)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let mut mine = Vec::new();
                    for _ in 0..ROUNDS {
                        let info = store.rotate_key("k").expect("rotate");
                        // Wrap something with the version this rotation made,
                        // as a user would right after `rekey keys rotate`.
                        let key = store.load("k").expect("load");
                        let ring = LocalKeyring::new(key);
                        let ctx = context(&[]);
                        let (data_key, edk) = ring.generate_sync(&ctx).expect("wrap");
                        let sealed =
                            seal(&Materials { data_key, encrypted_data_keys: vec![edk] }, &ctx, b"x").expect("seal");
                        mine.push((info.latest_version, sealed));
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    let mut versions: Vec<u32> = results.iter().flatten().map(|(v, _)| *v).collect();
    versions.sort_unstable();
    let expected: Vec<u32> = (2..=u32::try_from(THREADS * ROUNDS + 1).expect("small")).collect();
    assert_eq!(versions, expected, "every rotation made its own version");
    let key = store.load("k").expect("load");
    assert_eq!(key.latest_version(), expected.last().copied().expect("some"));
    let ring = LocalKeyring::new(key);
    for (_, sealed) in results.iter().flatten() {
        assert_eq!(common::memory_open(&ring, sealed).expect("every wrapped key still opens"), b"x");
    }
}
