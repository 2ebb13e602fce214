//! One planted encrypted data key must not block decryption: an entry that
//! unwraps to another data key (anyone holding the same wrapping key can add
//! one) is passed over, and the next entry is tried.

mod common;

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use common::{context, keyring, materials};
use envelope_core::hazmat::{
    Envelope, ParseOptions, StreamDecryptor, unwrap_data_key, unwrap_data_key_checked, verify_commitment,
};
use envelope_core::{DataKey, EncryptedDataKey, Error, Keyring};

/// Local keyrings answer at once, so polling once is enough.
fn ready<F: Future>(future: F) -> F::Output {
    match pin!(future).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a local keyring future was not ready"),
    }
}

/// An envelope whose first entry wraps a different data key under the same
/// local key, followed by the real entry.
fn planted(framed: bool) -> (envelope_core::LocalKeyring, Vec<u8>, EncryptedDataKey) {
    let keyring = keyring("shared");
    let ctx = context(&[("app", "billing")]);
    let good = materials(&keyring, &ctx);
    let sealed = if framed {
        common::framed(&good, &ctx, 64, &[7u8; 300])
    } else {
        envelope_core::hazmat::seal(&good, &ctx, b"the real plaintext").expect("seal")
    };
    let other = DataKey::generate().expect("random");
    let plant = keyring.wrap_sync(&other, &ctx).expect("wrap the planted key");
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let mut edks = vec![plant.clone()];
    edks.extend(envelope.header().encrypted_data_keys.iter().cloned());
    let tampered = envelope.with_encrypted_data_keys(&edks).expect("re-encode");
    (keyring, tampered, plant)
}

#[test]
fn first_key_that_unwraps_is_the_planted_one() {
    // The attack, against the unchecked search: the planted entry wins.
    let (keyring, sealed, _) = planted(false);
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let header = envelope.header();
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let key = ready(unwrap_data_key(&keyrings, &header.encrypted_data_keys, &header.context)).expect("unwraps");
    assert!(matches!(envelope.open(&key), Err(Error::Authentication)));
}

#[test]
fn a_planted_key_first_does_not_block_decryption() {
    let (keyring, sealed, _) = planted(false);
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let header = envelope.header();
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let check = |k: &DataKey| envelope.verify_data_key(k).is_ok();
    let key = ready(unwrap_data_key_checked(&keyrings, &header.encrypted_data_keys, &header.context, &check))
        .expect("the second entry is tried");
    assert_eq!(envelope.open(&key).expect("opens").as_slice(), b"the real plaintext");
}

#[test]
fn a_planted_key_first_does_not_block_a_stream() {
    let (keyring, sealed, _) = planted(true);
    let decryptor = StreamDecryptor::new(sealed.as_slice(), &ParseOptions::default()).expect("header");
    let header = decryptor.header().clone();
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let check = |k: &DataKey| verify_commitment(&header, k).is_ok();
    let key = ready(unwrap_data_key_checked(&keyrings, &header.encrypted_data_keys, &header.context, &check))
        .expect("the second entry is tried");
    let mut out = Vec::new();
    decryptor.decrypt_to(&key, &mut out).expect("decrypts");
    assert_eq!(out, [7u8; 300]);
}

#[test]
fn only_planted_keys_give_the_one_opaque_error() {
    let (keyring, sealed, plant) = planted(false);
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let only_planted = envelope.with_encrypted_data_keys(&[plant.clone(), plant]).expect("re-encode");
    let envelope = Envelope::parse(&only_planted, &ParseOptions::default()).expect("parse");
    let header = envelope.header();
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let check = |k: &DataKey| envelope.verify_data_key(k).is_ok();
    let err = ready(unwrap_data_key_checked(&keyrings, &header.encrypted_data_keys, &header.context, &check))
        .expect_err("no entry holds the right key");
    assert!(matches!(err, Error::Authentication), "{err:?}");
}

#[test]
fn no_usable_key_is_still_no_matching_key() {
    let (_, sealed, _) = planted(false);
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let header = envelope.header();
    let stranger = keyring("stranger");
    let keyrings: [&dyn Keyring; 1] = [&stranger];
    let err = ready(unwrap_data_key_checked(&keyrings, &header.encrypted_data_keys, &header.context, &|_| true))
        .expect_err("not ours");
    let Error::Keyring(e) = err else { panic!("{err:?}") };
    assert_eq!(e.kind(), envelope_core::KeyringErrorKind::NoMatchingKey);
    assert!(e.to_string().contains("rekey-local:shared/v1"), "{e}");
}
