//! `Envelope::open_plaintext` and its `Plaintext`: the same bytes as `open`,
//! for both body forms, and nothing of the contents in `Debug`.

mod common;

use common::{context, framed, keyring, materials};
use envelope_core::{Envelope, ParseOptions, seal};

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
