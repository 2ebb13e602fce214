//! `Envelope::open_plaintext` and its `Plaintext`: the same bytes as `open`,
//! for both body forms, and nothing of the contents in `Debug`; `seal_into`
//! and `open_into` over reused buffers.

mod common;

use common::{context, framed, keyring, materials};
use envelope_core::hazmat::{Envelope, ParseOptions, seal, seal_into};
use envelope_core::{DataKey, Error, Plaintext};

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

/// Parses `sealed` and opens it into `out`.
fn open_into(sealed: &[u8], data_key: &DataKey, out: &mut Plaintext) -> Result<(), Error> {
    Envelope::parse(sealed, &ParseOptions::default()).expect("parse").open_into(data_key, out)
}

/// `sealed` with its last byte (a tag's) flipped.
fn tampered(mut sealed: Vec<u8>) -> Vec<u8> {
    let last = sealed.len() - 1;
    sealed[last] ^= 1;
    sealed
}

/// Every way opening into a buffer that holds an earlier record can fail
/// (a single-shot tag, larger and smaller than that record; a framed body
/// part way through; a wrong key, at the commitment) leaves it empty:
/// nothing of the earlier record and no unauthenticated bytes.
#[test]
fn open_into_a_reused_buffer_leaves_nothing_on_failure() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let other = common::materials(&common::keyring("other"), &context);
    let earlier = seal(&materials, &context, &[9; 100_000]).expect("seal");
    let failures = [
        ("single-shot, larger", tampered(seal(&materials, &context, &[7; 100_000]).expect("seal")), &materials),
        ("single-shot, smaller", tampered(seal(&materials, &context, &[7; 50]).expect("seal")), &materials),
        ("framed", tampered(framed(&materials, &context, 1000, &[7; 5000])), &materials),
        ("wrong key", earlier.clone(), &other),
    ];
    let mut opened = Plaintext::new();
    for (what, sealed, key) in failures {
        open_into(&earlier, &materials.data_key, &mut opened).expect("open");
        assert!(matches!(open_into(&sealed, &key.data_key, &mut opened), Err(Error::Authentication)), "{what}");
        assert!(opened.is_empty(), "{what}: the buffer still holds {} bytes", opened.len());
    }
}
