//! Keysets and compact records (docs/format.md §12): round trips, the one
//! authentication error, tampering, the substituted-wrapping attack, rotation,
//! legacy import, the keyset file and its stores.

mod common;

use std::os::unix::fs::PermissionsExt;

use envelope_core::keyset::{
    COMPACT_OVERHEAD, FileKeysetStore, KeyId, KeyPurpose, Keyset, KeysetStore, MemoryKeysetStore,
};
use envelope_core::legacy::InnerEncoding;
use envelope_core::{
    DataKey, EncryptedDataKey, EncryptionContext, Error, FormatError, Keyring, KeyringErrorKind, LocalKey, LocalKeyring,
};
use proptest::prelude::*;

use common::{context, keyring};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn create(keyring: &dyn Keyring) -> Keyset {
    block_on(Keyset::create(&[keyring])).expect("create")
}

/// A keyset with two records keys (the second primary) under one local key.
fn two_keys(keyring: &dyn Keyring) -> Keyset {
    let mut keyset = create(keyring);
    block_on(keyset.rotate(&[keyring])).expect("rotate");
    keyset
}

const BLOG_MESSAGE: &[u8] = b"i want to back to home";

#[test]
fn the_blogs_message_is_76_characters_and_round_trips() {
    let kr = keyring("app");
    let handle = block_on(create(&kr).unwrap(&[&kr])).expect("unwrap");
    let record = handle.encrypt_text(BLOG_MESSAGE, &EncryptionContext::new()).expect("seal");
    assert_eq!(record.len(), 76, "5-byte prefix + 12-byte nonce + 22 + 16-byte tag = 55 bytes = 76 base64 chars");
    assert!(record.len() <= 88, "the blog's own length");
    assert_eq!(handle.decrypt_text(&record, &EncryptionContext::new()).expect("open").as_bytes(), BLOG_MESSAGE);
    assert_eq!(COMPACT_OVERHEAD, 33, "Tink's overhead: 5 + 12 + 16");
    // Two seals of one text differ (random nonces).
    assert_ne!(record, handle.encrypt_text(BLOG_MESSAGE, &EncryptionContext::new()).expect("seal"));
}

fn arb_context() -> impl Strategy<Value = EncryptionContext> {
    proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,12}", 0..4)
        .prop_map(|m| EncryptionContext::from_pairs(m).expect("valid"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..600), ctx in arb_context()) {
        let kr = keyring("app");
        let handle = block_on(create(&kr).unwrap(&[&kr])).expect("unwrap");
        let record = handle.encrypt(&plaintext, &ctx).expect("seal");
        prop_assert_eq!(record.len(), plaintext.len() + COMPACT_OVERHEAD);
        let opened = handle.decrypt(&record, &ctx).expect("open");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
        let text = handle.encrypt_text(&plaintext, &ctx).expect("seal");
        let opened = handle.decrypt_text(&text, &ctx).expect("open");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
    }

    #[test]
    fn another_key_keyset_or_context_is_the_one_authentication_error(
        plaintext in proptest::collection::vec(any::<u8>(), 0..100),
        ctx in arb_context(),
        other_ctx in arb_context(),
    ) {
        let kr = keyring("app");
        let keyset = two_keys(&kr);
        let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
        let record = handle.encrypt(&plaintext, &ctx).expect("seal");

        // Another keyset under the same wrapping key: other keyset id, other keys.
        let other = block_on(create(&kr).unwrap(&[&kr])).expect("unwrap");
        prop_assert!(matches!(other.decrypt(&record, &ctx), Err(Error::Authentication)));

        // The same keyset's other data key: relabel the record to it.
        let old = keyset.keys()[0].id();
        let mut relabelled = record.clone();
        relabelled[1..5].copy_from_slice(&old.0.to_be_bytes());
        prop_assert!(matches!(handle.decrypt(&relabelled, &ctx), Err(Error::Authentication)));

        // Another context.
        if other_ctx != ctx {
            prop_assert!(matches!(handle.decrypt(&record, &other_ctx), Err(Error::Authentication)));
        }
    }
}

#[test]
fn every_bit_flip_and_every_truncation_is_rejected() {
    let kr = keyring("app");
    let handle = block_on(create(&kr).unwrap(&[&kr])).expect("unwrap");
    let ctx = context(&[("column", "ssn")]);
    let record = handle.encrypt(BLOG_MESSAGE, &ctx).expect("seal");
    for bit in 0..record.len() * 8 {
        let mut bad = record.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        match handle.decrypt(&bad, &ctx) {
            Err(Error::Authentication) => {}
            // Only the magic byte is a format error; everything else is opaque.
            Err(Error::Format(_)) if bit < 8 => {}
            other => panic!("bit {bit}: {other:?}"),
        }
    }
    for len in 0..record.len() {
        match handle.decrypt(&record[..len], &ctx) {
            Err(Error::Authentication) if len >= COMPACT_OVERHEAD => {}
            Err(Error::Format(_)) if len < COMPACT_OVERHEAD => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    let mut extended = record.clone();
    extended.push(0);
    assert!(matches!(handle.decrypt(&extended, &ctx), Err(Error::Authentication)));
}

/// The lines of key `index`'s wrapped copies in a keyset file.
fn wrap_lines(text: &str, index: usize) -> Vec<String> {
    let mut key = None;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.starts_with("key ") {
            key = Some(key.map_or(0, |k| k + 1));
        } else if line.starts_with("wrap ") && key == Some(index) {
            out.push(line.to_owned());
        }
    }
    out
}

/// The attack: whoever can edit the keyset file moves key 1's wrapped copy
/// (same local wrapping key) into key 0's entry, so that key 0's id would
/// yield key 1's data key. Without the binding context and the commitment
/// check the unwrap succeeds with the wrong key; with them it is refused.
#[test]
fn fail_a_wrapped_key_substituted_from_another_entry_is_refused_at_unwrap() {
    let kr = keyring("app");
    let keyset = two_keys(&kr);
    let text = keyset.to_text();
    let (first, second) = (wrap_lines(&text, 0), wrap_lines(&text, 1));
    let swapped = text.replacen(&first[0], &second[0], 1);
    let tampered = Keyset::from_text(&swapped).expect("still a well-formed file");
    match block_on(tampered.unwrap(&[&kr])) {
        Err(Error::Keyring(e)) => {
            assert_eq!(e.kind(), KeyringErrorKind::InvalidCiphertext, "{e}");
            assert!(e.message().contains(&keyset.keys()[0].id().to_string()), "names the key: {e}");
        }
        other => panic!("a substituted wrapped key must be refused, got {other:?}"),
    }

    // The commitment moved along with the wrapped key: the id still differs.
    let first_key_line = text.lines().find(|l| l.starts_with("key ")).expect("key line").to_owned();
    let second_key_line = text.lines().filter(|l| l.starts_with("key ")).nth(1).expect("key line").to_owned();
    let commitment_of = |line: &str| line.rsplit(' ').next().expect("commitment").to_owned();
    let both = swapped.replacen(&commitment_of(&first_key_line), &commitment_of(&second_key_line), 1);
    let tampered = Keyset::from_text(&both).expect("well-formed");
    assert!(block_on(tampered.unwrap(&[&kr])).is_err());

    // A data key wrapped by the same local key for another keyset.
    let other = create(&kr);
    let foreign = wrap_lines(&other.to_text(), 0);
    let moved = Keyset::from_text(&text.replacen(&first[0], &foreign[0], 1)).expect("well-formed");
    assert!(block_on(moved.unwrap(&[&kr])).is_err());

    // A data key wrapped with no binding at all (an application's own GenerateDataKey).
    let (_, plain_edk) = kr.generate_sync(&EncryptionContext::new()).expect("generate");
    let plain_line = format!("wrap {} {} {}", plain_edk.provider_id(), plain_edk.key_id(), base64(plain_edk.wrapped()));
    let planted = Keyset::from_text(&text.replacen(&first[0], &plain_line, 1)).expect("well-formed");
    assert!(block_on(planted.unwrap(&[&kr])).is_err());
}

/// A keyring that wraps without the context, as a naive keyset would: the
/// commitment check alone still refuses a substituted key.
struct ContextBlind(LocalKeyring);

impl Keyring for ContextBlind {
    fn provider_id(&self) -> &str {
        self.0.provider_id()
    }
    fn key_id(&self) -> &str {
        self.0.key_id()
    }
    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.0.can_unwrap(edk)
    }
    fn generate<'a>(
        &'a self,
        _context: &'a EncryptionContext,
    ) -> envelope_core::KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        Box::pin(std::future::ready(self.0.generate_sync(&EncryptionContext::new())))
    }
    fn wrap<'a>(
        &'a self,
        key: &'a DataKey,
        _context: &'a EncryptionContext,
    ) -> envelope_core::KeyringFuture<'a, EncryptedDataKey> {
        Box::pin(std::future::ready(self.0.wrap_sync(key, &EncryptionContext::new())))
    }
    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        _context: &'a EncryptionContext,
    ) -> envelope_core::KeyringFuture<'a, DataKey> {
        Box::pin(std::future::ready(self.0.unwrap_sync(edks, &EncryptionContext::new())))
    }
}

#[test]
fn fail_the_commitment_refuses_a_substituted_key_even_when_the_keyring_ignores_the_context() {
    let kr = ContextBlind(keyring("app"));
    let keyset = two_keys(&kr);
    let text = keyset.to_text();
    let swapped = text.replacen(&wrap_lines(&text, 0)[0], &wrap_lines(&text, 1)[0], 1);
    let tampered = Keyset::from_text(&swapped).expect("well-formed");
    assert!(matches!(block_on(tampered.unwrap(&[&kr])), Err(Error::Authentication)));
    assert!(block_on(keyset.unwrap(&[&kr])).is_ok());
}

#[test]
fn fail_an_edited_purpose_or_commitment_does_not_unwrap() {
    let kr = keyring("app");
    let keyset = create(&kr);
    let text = keyset.to_text();
    let purpose = Keyset::from_text(
        &text
            .replacen(" records created", " legacy-cbc created", 1)
            .replace(&format!("primary {}", keyset.primary().expect("primary")), "primary none"),
    )
    .expect("well-formed");
    assert!(block_on(purpose.unwrap(&[&kr])).is_err(), "the purpose is bound into the wrapping");
    let key_line = text.lines().find(|l| l.starts_with("key ")).expect("key line");
    let commitment = key_line.rsplit(' ').next().expect("commitment");
    let flipped = format!("{}{}", if commitment.starts_with('0') { "1" } else { "0" }, &commitment[1..]);
    let edited = Keyset::from_text(&text.replacen(commitment, &flipped, 1)).expect("well-formed");
    assert!(block_on(edited.unwrap(&[&kr])).is_err());
}

#[test]
fn rotation_keeps_old_records_readable_and_seals_with_the_new_primary() {
    let kr = keyring("app");
    let mut keyset = create(&kr);
    let first = keyset.primary().expect("primary");
    let old =
        block_on(keyset.unwrap(&[&kr])).expect("unwrap").encrypt(b"old", &EncryptionContext::new()).expect("seal");
    let second = block_on(keyset.rotate(&[&kr])).expect("rotate");
    assert_ne!(first, second);
    assert_eq!(keyset.primary(), Some(second));
    let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
    let new = handle.encrypt(b"new", &EncryptionContext::new()).expect("seal");
    assert_eq!(&new[1..5], &second.0.to_be_bytes());
    assert_eq!(handle.decrypt(&old, &EncryptionContext::new()).expect("old opens").as_bytes(), b"old");
    assert_eq!(handle.records_sealed(), 1);
    // Removing the old key makes its records unreadable, with the one error.
    assert!(keyset.remove_key(second).is_err(), "the primary cannot be removed");
    keyset.remove_key(first).expect("remove");
    let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
    assert!(matches!(handle.decrypt(&old, &EncryptionContext::new()), Err(Error::Authentication)));
}

#[test]
fn rewrap_moves_every_key_to_the_new_wrapping_key_without_touching_records() {
    let k1 = keyring("k1");
    let k2 = keyring("k2");
    let mut keyset = two_keys(&k1);
    let handle = block_on(keyset.unwrap(&[&k1])).expect("unwrap");
    let records: Vec<Vec<u8>> = (0..50)
        .map(|i| handle.encrypt(format!("record {i}").as_bytes(), &EncryptionContext::new()).expect("seal"))
        .collect();
    let summary = block_on(keyset.rewrap(&k2, &[&k1])).expect("rewrap");
    assert_eq!(summary.rewrapped.len(), 2, "one re-wrap per data key, none per record");
    assert!(keyset.keys().iter().all(|k| k.wraps().iter().all(|w| w.key_id() == k2.key_id())));
    // Only k2 is needed now; k1 cannot unwrap anything.
    assert!(block_on(keyset.unwrap(&[&k1])).is_err());
    let handle = block_on(keyset.unwrap(&[&k2])).expect("unwrap with k2 only");
    for (i, record) in records.iter().enumerate() {
        assert_eq!(
            handle.decrypt(record, &EncryptionContext::new()).expect("open").as_bytes(),
            format!("record {i}").as_bytes()
        );
    }
    // A rerun has nothing to do.
    let again = block_on(keyset.rewrap(&k2, &[&k1])).expect("rerun");
    assert!(again.rewrapped.is_empty());
    assert_eq!(again.already.len(), 2);
}

#[derive(serde::Deserialize)]
struct LegacyFixtures {
    data_key_hex: String,
    records: Vec<LegacyRecord>,
}

#[derive(serde::Deserialize)]
struct LegacyRecord {
    plaintext: String,
    record: String,
}

#[test]
fn the_blogs_records_are_read_through_an_imported_legacy_key() {
    let fixtures: LegacyFixtures = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/legacy/blog_records.json"))
            .expect("fixtures"),
    )
    .expect("json");
    let legacy_key = DataKey::try_from_slice(&hex::decode(&fixtures.data_key_hex).expect("hex")).expect("32 bytes");
    let kms_like = keyring("blog");
    // The blog's stored blob: the data key wrapped with no context.
    let blob = kms_like.wrap_sync(&legacy_key, &EncryptionContext::new()).expect("wrap");

    let kr = keyring("app");
    let mut keyset = create(&kr);
    let id =
        block_on(keyset.import_legacy_wrapped(&blob, &EncryptionContext::new(), &[&kms_like], &[&kr])).expect("import");
    assert_eq!(keyset.key(id).expect("entry").purpose(), KeyPurpose::LegacyCbc);
    assert!(keyset.set_primary(id).is_err(), "a legacy key never encrypts");
    assert!(block_on(keyset.import_legacy(&legacy_key, &[&kr])).is_err(), "one legacy key per keyset");
    let keyset = Keyset::from_text(&keyset.to_text()).expect("round trip");

    // Only the keyset's own wrapping key is needed now, not the blog's.
    let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
    for r in &fixtures.records {
        let text = handle.decrypt_legacy(&r.record, InnerEncoding::Base64).expect("legacy record");
        assert_eq!(text.as_str(), r.plaintext);
        // Moved to a compact record.
        let compact = handle.encrypt_text(text.as_bytes(), &EncryptionContext::new()).expect("seal");
        assert_eq!(
            handle.decrypt_text(&compact, &EncryptionContext::new()).expect("open").as_bytes(),
            r.plaintext.as_bytes()
        );
    }
    // A compact record naming the legacy key is refused: GCM never uses it.
    let mut record = handle.encrypt(b"x", &EncryptionContext::new()).expect("seal");
    record[1..5].copy_from_slice(&id.0.to_be_bytes());
    assert!(matches!(handle.decrypt(&record, &EncryptionContext::new()), Err(Error::Authentication)));
}

#[test]
fn the_committed_keyset_file_vector_opens_through_the_public_api() {
    let vectors: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keyset_vectors.json")).expect("read"),
    )
    .expect("json");
    let file = &vectors["keyset_files"][0];
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let key_path = dir.path().join("kat.key");
    std::fs::write(&key_path, file["local_key_file"].as_str().expect("text")).expect("write");
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let kr = LocalKeyring::new(envelope_core::Keystore::new(dir.path()).load("kat").expect("load"));
    let keyset = Keyset::from_text(file["keyset"].as_str().expect("text")).expect("parse");
    assert_eq!(keyset.to_text(), file["keyset"].as_str().expect("text"));
    let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
    let ctx = context(&[("app", "kat")]);
    let plaintext = handle.decrypt_text(file["record"].as_str().expect("record"), &ctx).expect("open");
    assert_eq!(plaintext.as_bytes(), file["plaintext"].as_str().expect("text").as_bytes());
}

#[test]
fn fail_malformed_keyset_files_name_the_line() {
    let kr = keyring("app");
    let text = two_keys(&kr).to_text();
    // Every truncation short of the whole file is refused (a cut file loses a key or a newline).
    for len in 0..text.len() {
        if text.is_char_boundary(len) {
            assert!(Keyset::from_text(&text[..len]).is_err(), "truncated to {len}");
        }
    }
    let cases: Vec<(String, usize)> = vec![
        (text.replacen("rekey-keyset v1", "rekey-keyset v2", 1), 1),
        (text.replacen("\nkeyset ", "\nkeyset  ", 1), 2),
        (text.replacen("\nprimary ", "\nprimary 0", 1), 3),
        (text.replacen("\nkey ", "\nkey 0", 1), 4),
        (text.replacen(" created ", " created 0", 1), 4),
        (text.replacen("\nwrap ", "\nwrap  ", 1), 5),
        (text.replace('\n', "\r\n"), 1),
        (format!("{text}\n"), 0),
    ];
    for (bad, line) in cases {
        match Keyset::from_text(&bad) {
            Err(FormatError::Keyset { line: got, .. }) if line == 0 || got == line => {}
            other => panic!("expected an error on line {line}, got {other:?} for\n{bad}"),
        }
    }
    let text_primary = two_keys(&kr).to_text();
    let wrong_primary = text_primary.replacen("\nprimary ", "\nprimary ffffffff\nx", 1);
    assert!(Keyset::from_text(&wrong_primary).is_err());
    assert!(Keyset::from_text("").is_err());
    assert!("1A2B3C4D".parse::<KeyId>().is_err());
}

#[test]
fn file_store_saves_atomically_privately_and_refuses_lost_updates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("app.keyset");
    let store = FileKeysetStore::new(&path);
    assert!(block_on(store.load()).expect("load").is_none());
    let kr = keyring("app");
    let keyset = create(&kr);
    block_on(store.save(&keyset, None)).expect("create");
    assert_eq!(std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777, 0o600);
    assert!(block_on(store.save(&keyset, None)).is_err(), "creating over an existing keyset is a conflict");

    let mut a = block_on(store.load()).expect("load").expect("present");
    let mut b = a.clone();
    let before = a.clone();
    block_on(a.rotate(&[&kr])).expect("rotate a");
    block_on(b.rotate(&[&kr])).expect("rotate b");
    block_on(store.save(&a, Some(&before))).expect("a saves");
    let lost = block_on(store.save(&b, Some(&before)));
    assert!(matches!(&lost, Err(Error::Keyring(e)) if e.message().contains("changed since")), "{lost:?}");
    assert_eq!(block_on(store.load()).expect("load"), Some(a));

    // Another writer could choose our keys: refuse group-writable files and links.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o620)).expect("chmod");
    assert!(matches!(store.load_sync(), Err(Error::Keyring(e)) if e.kind() == KeyringErrorKind::AccessDenied));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let link = dir.path().join("link.keyset");
    std::os::unix::fs::symlink(&path, &link).expect("symlink");
    assert!(
        matches!(FileKeysetStore::new(&link).load_sync(), Err(Error::Keyring(e)) if e.kind() == KeyringErrorKind::AccessDenied)
    );
    // No temporary files left behind.
    let names: Vec<_> = std::fs::read_dir(dir.path()).expect("dir").map(|e| e.expect("entry").file_name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
}

#[test]
fn memory_store_is_compare_and_swap() {
    let store = MemoryKeysetStore::new();
    let kr = keyring("app");
    let keyset = create(&kr);
    block_on(store.save(&keyset, None)).expect("save");
    assert!(block_on(store.save(&keyset, None)).is_err());
    let mut next = keyset.clone();
    block_on(next.rotate(&[&kr])).expect("rotate");
    block_on(store.save(&next, Some(&keyset))).expect("swap");
    assert_eq!(block_on(store.load()).expect("load"), Some(next));
}

#[test]
fn nothing_secret_in_debug_or_the_file() {
    let kr = keyring("app");
    let keyset = create(&kr);
    let handle = block_on(keyset.unwrap(&[&kr])).expect("unwrap");
    let debug = format!("{handle:?} {keyset:?}");
    assert!(debug.contains("KeysetHandle"));
    assert!(!debug.contains("wrapped: ["), "{debug}");
    let _ = LocalKey::generate("x");
}

fn base64(bytes: &[u8]) -> String {
    envelope_core::hazmat::encode_text(bytes)
}

#[test]
fn encrypt_many_seals_each_with_its_own_nonce() {
    let kr = keyring("app");
    let handle = block_on(create(&kr).unwrap(&[&kr])).expect("unwrap");
    let ctx = context(&[("t", "u")]);
    let plaintexts: Vec<Vec<u8>> = (0..100).map(|i| format!("record {i}").into_bytes()).collect();
    let refs: Vec<&[u8]> = plaintexts.iter().map(Vec::as_slice).collect();
    let records = handle.encrypt_many(&refs, &ctx).expect("seal");
    let nonces: std::collections::HashSet<&[u8]> = records.iter().map(|r| &r[5..17]).collect();
    assert_eq!(nonces.len(), 100);
    for (record, plaintext) in records.iter().zip(&plaintexts) {
        assert_eq!(handle.decrypt(record, &ctx).expect("open").as_bytes(), plaintext.as_slice());
    }
    assert_eq!(handle.records_sealed(), 100);
}
