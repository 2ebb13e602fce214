//! `Envelope::open_plaintext` and its `Plaintext`: the same bytes as `open`,
//! for both body forms, and nothing of the contents in `Debug`; `seal_into`
//! and `open_into` over reused buffers.

mod common;

use common::{context, framed, keyring, materials};
use envelope_core::{Envelope, ParseOptions, Plaintext, seal, seal_into};

#[test]
fn open_plaintext_matches_open_for_both_body_forms() {
    let keyring = keyring("k");
    let context = context(&[("a", "b")]);
    let materials = materials(&keyring, &context);
    for len in [0, 1, 64, 70_000, 1 << 20] {
        let plaintext: Vec<u8> = (0..len).map(|i| (i % 253) as u8).collect();
        for sealed in
            [seal(&materials, &context, &plaintext).expect("seal"), framed(&materials, &context, 4096, &plaintext)]
        {
            let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
            let opened = envelope.open_plaintext(&materials.data_key).expect("open");
            assert!(opened.as_bytes() == plaintext.as_slice(), "{len} bytes");
            assert!(*envelope.open(&materials.data_key).expect("open") == plaintext, "{len} bytes");
            assert_eq!(format!("{opened:?}"), format!("Plaintext({len} bytes)"));
            assert!(opened.into_zeroizing().as_slice() == plaintext.as_slice());
        }
    }
}

#[test]
fn a_tampered_envelope_gives_no_plaintext() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let mut sealed = seal(&materials, &context, &[7; 100_000]).expect("seal");
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    assert!(matches!(envelope.open_plaintext(&materials.data_key), Err(envelope_core::Error::Authentication)));
}

/// Buffers reused from record to record, larger and smaller, across the
/// in-place and the two-buffer paths (64 KiB): each result is exactly the
/// new record, with nothing left over from the one before.
#[test]
fn reused_buffers_hold_exactly_the_latest_record() {
    let keyring = keyring("k");
    let context = context(&[("a", "b")]);
    let materials = materials(&keyring, &context);
    let (mut sealed, mut opened) = (Vec::new(), Plaintext::new());
    for (i, len) in [200_000usize, 70_000, 100, 0, 65_535, 65_536, 300_000, 1].into_iter().enumerate() {
        let plaintext: Vec<u8> = (0..len).map(|j| u8::try_from((i * 7 + j) % 251).expect("below 251")).collect();
        seal_into(&materials, &context, &plaintext, &mut sealed).expect("seal");
        let fresh = seal(&materials, &context, &plaintext).expect("seal");
        assert_eq!(sealed.len(), fresh.len(), "{len} bytes");
        let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
        envelope.open_into(&materials.data_key, &mut opened).expect("open");
        assert!(opened.as_bytes() == plaintext.as_slice(), "{len} bytes");
    }
}

#[test]
fn open_into_a_reused_buffer_leaves_no_plaintext_on_failure() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let mut opened = Plaintext::new();
    let first = seal(&materials, &context, &[9; 100_000]).expect("seal");
    Envelope::parse(&first, &ParseOptions::default())
        .expect("parse")
        .open_into(&materials.data_key, &mut opened)
        .expect("open");
    for len in [100_000, 50] {
        let mut sealed = seal(&materials, &context, &vec![7; len]).expect("seal");
        let last = sealed.len() - 1;
        sealed[last] ^= 1;
        let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
        let result = envelope.open_into(&materials.data_key, &mut opened);
        assert!(matches!(result, Err(envelope_core::Error::Authentication)), "{len} bytes");
        assert!(
            opened.iter().all(|&b| b == 0),
            "{len} bytes: the old record's plaintext or unauthenticated bytes remain"
        );
    }
    // A wrong key fails at the commitment, before any decryption: the old record is wiped too.
    Envelope::parse(&first, &ParseOptions::default())
        .expect("parse")
        .open_into(&materials.data_key, &mut opened)
        .expect("open");
    let other = common::materials(&common::keyring("other"), &context);
    let envelope = Envelope::parse(&first, &ParseOptions::default()).expect("parse");
    assert!(envelope.open_into(&other.data_key, &mut opened).is_err());
    assert!(opened.is_empty());
}

/// A framed body that fails part way through leaves nothing of the record
/// opened before it in the reused buffer.
#[test]
fn open_into_a_reused_buffer_leaves_nothing_when_a_framed_body_fails() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let mut opened = Plaintext::new();
    let first = seal(&materials, &context, &[9; 10_000]).expect("seal");
    Envelope::parse(&first, &ParseOptions::default())
        .expect("parse")
        .open_into(&materials.data_key, &mut opened)
        .expect("open");
    let mut sealed = framed(&materials, &context, 1000, &[7; 5000]);
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    assert!(matches!(envelope.open_into(&materials.data_key, &mut opened), Err(envelope_core::Error::Authentication)));
    assert!(opened.iter().all(|&b| b == 0), "the earlier record's plaintext is still in the buffer");
}
