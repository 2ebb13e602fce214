//! Each strategy on its own, with local keys: what it changes, what it
//! skips, and the attacks it must refuse.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::hazmat::{Envelope, Materials, ParseOptions, encode_text, seal};
use envelope_core::legacy::{InnerEncoding, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring, Keystore, LocalKeyring};

use super::*;
use crate::engine::error::ItemErrorCode;
use crate::engine::format::Encoding;
use crate::engine::item::Item;

/// Two local keys, `old` and `new`, in a throwaway keystore.
struct Keys {
    _dir: tempfile::TempDir,
    store: Keystore,
}

impl Keys {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let store = Keystore::new(dir.path());
        for name in ["old", "new"] {
            store.create_key(name).expect("a key");
        }
        Self { _dir: dir, store }
    }

    fn ring(&self, name: &str) -> LocalKeyring {
        LocalKeyring::new(self.store.load(name).expect("a key"))
    }

    fn old(&self) -> Box<dyn Keyring> {
        Box::new(self.ring("old"))
    }

    fn new_key(&self) -> Box<dyn Keyring> {
        Box::new(self.ring("new"))
    }

    fn transform(&self, strategy: impl Strategy + 'static, dry_run: bool) -> Transform {
        Transform::new(strategy, vec![self.old()], ParseOptions::default(), true, dry_run)
    }
}

fn run<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(future)
}

fn context() -> EncryptionContext {
    let mut c = EncryptionContext::new();
    c.insert("tenant", "7").expect("a pair");
    c
}

/// An envelope under `keyring` holding `plaintext`.
fn envelope(keyring: &LocalKeyring, plaintext: &[u8]) -> Vec<u8> {
    let (data_key, edk) = keyring.generate_sync(&context()).expect("generate");
    seal(&Materials { data_key, encrypted_data_keys: vec![edk] }, &context(), plaintext).expect("seal")
}

fn open(keyring: &LocalKeyring, bytes: &[u8]) -> Vec<u8> {
    let envelope = Envelope::parse(bytes, &ParseOptions::default()).expect("parse");
    let key = keyring.unwrap_sync(&envelope.header().encrypted_data_keys, &envelope.header().context).expect("unwrap");
    envelope.open_plaintext(&key).expect("open").as_bytes().to_vec()
}

fn changed(outcome: Outcome) -> (Vec<u8>, ChangeKind, Option<Vec<EncryptedDataKey>>) {
    match outcome {
        Outcome::Changed { new, kind, old_edks, .. } => (new, kind, old_edks),
        other => panic!("expected a change, got {other:?}"),
    }
}

#[test]
fn rewrap_replaces_the_source_key_keeps_the_text_form_and_is_idempotent() {
    let keys = Keys::new();
    let item = envelope(&keys.ring("old"), b"card");
    let text = format!("{}\n", encode_text(&item)).into_bytes();
    let transform = keys.transform(Rewrap::new(keys.new_key(), Vec::new(), false), false);
    let (new, kind, old_edks) = changed(run(transform.apply_now(&text, &EncryptionContext::new())).expect("rewrap"));
    assert_eq!(kind, ChangeKind::Rewrapped);
    assert!(new.ends_with(b"\n"), "text stays text, newline kept");
    let new_bytes = Encoding::text_of(&new).decode(&new).expect("base64");
    assert_eq!(open(&keys.ring("new"), &new_bytes), b"card");
    let old = Envelope::parse(&item, &ParseOptions::default()).expect("parse");
    assert_eq!(old_edks.as_deref(), Some(old.header().encrypted_data_keys.as_slice()), "the undo record");
    let edks =
        Envelope::parse(&new_bytes, &ParseOptions::default()).expect("parse").header().encrypted_data_keys.clone();
    assert_eq!(edks.len(), 1, "the old key is gone");
    assert!(matches!(run(transform.apply_now(&new, &EncryptionContext::new())), Ok(Outcome::Skipped)));
    assert_eq!(transform.destination_label(), format!("rekey-local:{}", keys.ring("new").key_id()));
}

#[test]
fn rewrap_refuses_a_planted_key_that_holds_another_data_key() {
    let keys = Keys::new();
    let old = keys.ring("old");
    let item = envelope(&old, b"card");
    // The attacker relabels nothing: the wrapped key really is under the
    // old key, but it holds a data key of their choosing.
    let planted = old.wrap_sync(&DataKey::from_bytes([9; 32]), &context()).expect("wrap");
    let parsed = Envelope::parse(&item, &ParseOptions::default()).expect("parse");
    let forged = parsed.with_encrypted_data_keys(&[planted]).expect("forge");
    let transform = keys.transform(Rewrap::new(keys.new_key(), Vec::new(), false), false);
    let error = run(transform.apply_now(&forged, &EncryptionContext::new())).expect_err("planted key");
    assert_eq!(error.code, ItemErrorCode::Authentication, "{error}");
}

#[test]
fn rewrap_requires_the_row_context() {
    let keys = Keys::new();
    let item = envelope(&keys.ring("old"), b"card");
    let mut row = EncryptionContext::new();
    row.insert("tenant", "8").expect("a pair");
    let transform = keys.transform(Rewrap::new(keys.new_key(), Vec::new(), false), false);
    let error = run(transform.apply_now(&item, &row)).expect_err("moved to another row");
    assert_eq!(error.code, ItemErrorCode::ContextMismatch, "{error}");
}

#[test]
fn bare_keys_are_rewrapped_to_the_same_data_key_and_the_copy_is_checked() {
    let keys = Keys::new();
    let old = keys.ring("old");
    let (data_key, edk) = old.generate_sync(&context()).expect("generate");
    let item = format!("{}\n", STANDARD.encode(edk.wrapped())).into_bytes();
    let transform = keys.transform(RewrapBare::new(keys.new_key(), context(), context()), false);
    let (new, kind, _) = changed(run(transform.apply_now(&item, &EncryptionContext::new())).expect("rewrap"));
    assert_eq!(kind, ChangeKind::Rewrapped);
    let blob = STANDARD.decode(new.trim_ascii()).expect("base64 kept");
    let new_keyring = keys.ring("new");
    let under_new = EncryptedDataKey::new("rekey-local", new_keyring.key_id(), blob).expect("edk");
    assert!(new_keyring.unwrap_sync(&[under_new], &context()).expect("unwrap") == data_key);
    let original = Item::new("row 1".into(), item);
    assert_eq!(run(transform.check_copy(&original, &new)).expect("same key"), Proof::SameDataKey);
    // A copy holding another data key is caught.
    let other = new_keyring.wrap_sync(&DataKey::from_bytes([1; 32]), &context()).expect("wrap");
    let error = run(transform.check_copy(&original, other.wrapped())).expect_err("another key");
    assert_eq!(error.code, ItemErrorCode::VerifyFailed);
}

#[test]
fn legacy_records_become_envelopes_and_the_copy_is_proven_by_plaintext() {
    let keys = Keys::new();
    let data_key = DataKey::from_bytes([3; 32]);
    let record = encrypt_legacy_record_for_fixtures(&data_key, b"0123456789abcdef", "4111", InnerEncoding::Base64);
    let legacy = Some((DataKey::from_bytes([3; 32]), InnerEncoding::Base64));
    let transform = keys.transform(Reencrypt::new(keys.new_key(), None, legacy), false);
    let (new, kind, _) =
        changed(run(transform.apply_now(record.as_bytes(), &EncryptionContext::new())).expect("reencrypt"));
    assert_eq!(kind, ChangeKind::FromLegacy);
    let bytes = Encoding::text_of(&new).decode(&new).expect("text, as the record was");
    assert_eq!(open(&keys.ring("new"), &bytes), b"4111");
    let original = Item::new("record 1".into(), record.into_bytes());
    assert_eq!(run(transform.check_copy(&original, &new)).expect("same plaintext"), Proof::SamePlaintext);
}

#[test]
fn reencrypt_skips_only_what_the_destination_really_opens() {
    let keys = Keys::new();
    let new = keys.ring("new");
    let done = envelope(&new, b"card");
    let transform = keys.transform(Reencrypt::new(keys.new_key(), None, None), false);
    assert!(matches!(run(transform.apply_now(&done, &EncryptionContext::new())), Ok(Outcome::Skipped)));
    // Labelled with the destination, but holding a data key the commitment
    // refuses: not skipped, and the sources cannot open it either.
    let parsed = Envelope::parse(&done, &ParseOptions::default()).expect("parse");
    let label_only = new.wrap_sync(&DataKey::from_bytes([5; 32]), &context()).expect("wrap");
    let forged = parsed.with_encrypted_data_keys(&[label_only]).expect("forge");
    assert!(run(transform.apply_now(&forged, &EncryptionContext::new())).is_err());
}

#[test]
fn a_dry_run_forecasts_without_keys() {
    let keys = Keys::new();
    let item = envelope(&keys.ring("old"), b"card");
    let transform = keys.transform(Rewrap::new(keys.new_key(), Vec::new(), false), true);
    let (new, kind, _) = changed(run(transform.apply(&Item::new("a".into(), item.clone()))).expect("plan"));
    assert_eq!((new, kind), (item, ChangeKind::Rewrapped), "a dry run writes the item itself");
    assert_eq!(transform.planned_calls(1), vec!["none: local keys only".to_owned()]);
    let not_envelope = Item::new("b".into(), b"plain".to_vec());
    assert!(run(transform.apply(&not_envelope)).is_err(), "the forecast fails what the run would");
}
