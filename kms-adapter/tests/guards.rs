//! The adapter's refusals, against a scripted fake KMS endpoint: discovery
//! needs an account filter and checks it both ways, and plain HTTP is refused
//! off the loopback interface before any request.

mod common;

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::{DATA_KEY, KEY, Reply, client, fake_kms};
use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring, KeyringErrorKind};
use kms_adapter::{DiscoveryFilter, KmsErrorKind, KmsKeyring};

const OTHER_ACCOUNT: &str = "arn:aws:kms:us-east-1:444455556666:key/11111111-2222-3333-4444-555555555555";

fn edk(key_id: &str) -> EncryptedDataKey {
    EncryptedDataKey::new("aws-kms", key_id, vec![7; 96]).expect("edk")
}

fn filter(accounts: &[&str]) -> DiscoveryFilter {
    DiscoveryFilter::new("aws", accounts.iter().copied()).expect("filter")
}

#[test]
fn a_discovery_filter_needs_accounts_and_well_formed_ids() {
    assert_eq!(
        DiscoveryFilter::new("aws", Vec::<String>::new()).expect_err("no account").kind(),
        KmsErrorKind::Invalid
    );
    for bad in ["12345", "1111222233334", "11112222333x", ""] {
        assert!(DiscoveryFilter::new("aws", [bad]).is_err(), "{bad}");
    }
    assert!(DiscoveryFilter::new("", ["111122223333"]).is_err());
    assert!(DiscoveryFilter::new("AWS!", ["111122223333"]).is_err());
    let f = filter(&["111122223333"]);
    assert!(f.allows(KEY));
    assert!(!f.allows(OTHER_ACCOUNT));
    assert!(!f.allows(&KEY.replace("arn:aws:", "arn:aws-cn:")), "another partition");
    for malformed in [
        "",
        "11111111-2222-3333-4444-555555555555",
        "alias/app",
        "arn:aws:kms:us-east-1:111122223333:alias/app",
        "arn:aws:s3:us-east-1:111122223333:key/abc",
        "arn:aws:kms:us-east-1:111122223333:key/",
        "arn:aws:kms::111122223333:key/abc",
        "arn:aws:kms:us-east-1:111122223333:key/abc:extra",
        "arn:aws:kms:us-east-1:111122223333",
    ] {
        assert!(!f.allows(malformed), "{malformed:?}");
    }
}

#[tokio::test]
async fn discovery_skips_keys_outside_the_filter_without_calling_kms() {
    let (url, seen) = fake_kms(vec![Reply::Decrypted]).await;
    let kms = client(&url, 1, Duration::from_secs(5));
    let keyring = KmsKeyring::discovery(kms.clone(), filter(&["111122223333"]));
    let outside = [edk(OTHER_ACCOUNT), edk(&KEY.replace("arn:aws:", "arn:aws-cn:"))];
    for e in &outside {
        assert!(!keyring.can_unwrap(e));
    }
    let err = keyring.unwrap(&outside, &EncryptionContext::new()).await.expect_err("outside the filter");
    assert_eq!(err.kind(), KeyringErrorKind::NoMatchingKey);
    assert_eq!(seen.load(Ordering::SeqCst), 0, "no request for a key outside the filter");
    assert_eq!(kms.metrics().calls_of("Decrypt"), 0);
}

#[tokio::test]
async fn discovery_skips_a_malformed_key_id_and_goes_on() {
    let (url, seen) = fake_kms(vec![Reply::Decrypted]).await;
    let kms = client(&url, 1, Duration::from_secs(5));
    let keyring = KmsKeyring::discovery(kms, filter(&["111122223333"]));
    let edks = [edk("not a key arn"), edk("alias/planted"), edk(KEY)];
    let key = keyring.unwrap(&edks, &EncryptionContext::new()).await.expect("the well-formed one is tried");
    assert_eq!(key.expose_secret(), &DATA_KEY);
    assert_eq!(seen.load(Ordering::SeqCst), 1, "only the well-formed, allowed key was sent");
}

#[tokio::test]
async fn discovery_checks_the_key_kms_answers_with() {
    // The wrapped key is labelled with an allowed key, but KMS says another
    // account's key decrypted it (a relabelled blob): refused.
    let (url, _) = fake_kms(vec![Reply::DecryptedBy(OTHER_ACCOUNT.to_owned())]).await;
    let keyring = KmsKeyring::discovery(client(&url, 1, Duration::from_secs(5)), filter(&["111122223333"]));
    let err = keyring.unwrap(&[edk(KEY)], &EncryptionContext::new()).await.expect_err("answer outside the filter");
    assert_eq!(err.kind(), KeyringErrorKind::NoMatchingKey, "{err}");
    assert!(err.to_string().contains("444455556666"), "{err}");
}

#[tokio::test]
async fn plain_http_off_loopback_is_refused_before_any_request() {
    // TEST-NET-1: nothing answers there; a request would hang until the timeout.
    for url in ["http://192.0.2.1:9", "http://kms.example.invalid:80", "http://[2001:db8::1]:9"] {
        let kms = client(url, 3, Duration::from_secs(20));
        let started = Instant::now();
        let err = kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect_err("refused");
        assert_eq!(err.kind(), KmsErrorKind::InsecureEndpoint, "{url}: {err}");
        assert!(err.to_string().contains("plain HTTP") && err.to_string().contains("https://"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5), "refused at once, not after a connection attempt");
        assert_eq!(kms.metrics().retries, 0, "and not retried");
        let keyring_error: envelope_core::KeyringError = err.into();
        assert_eq!(keyring_error.kind(), KeyringErrorKind::Unsupported, "stops any search for another key");
    }
}

#[tokio::test]
async fn plain_http_on_loopback_still_works() {
    let (url, seen) = fake_kms(vec![Reply::Decrypted]).await;
    assert!(url.starts_with("http://127.0.0.1:"));
    let kms = client(&url.replace("127.0.0.1", "localhost"), 1, Duration::from_secs(5));
    kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect("loopback is fine");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
}
