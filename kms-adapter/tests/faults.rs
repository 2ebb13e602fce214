//! Faults the local KMS server cannot make: throttling and slow answers,
//! from a scripted fake KMS endpoint on 127.0.0.1. The retries are the SDK's
//! own; these tests check that they happen, are counted, and end in typed errors.

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{KEY, Reply, client, fake_kms};
use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring, KeyringErrorKind};
use kms_adapter::{KmsErrorKind, KmsKeyring};

fn edk() -> EncryptedDataKey {
    EncryptedDataKey::new("aws-kms", KEY, vec![7; 96]).expect("edk")
}

#[tokio::test]
async fn throttling_then_success_is_retried_and_counted() {
    let (url, seen) = fake_kms(vec![Reply::Throttle, Reply::Throttle, Reply::Decrypted]).await;
    let kms = client(&url, 5, Duration::from_secs(5));
    let keyring = KmsKeyring::decrypt_only(kms.clone(), &[KEY.to_owned()]).await.expect("keyring");
    keyring.unwrap(&[edk()], &EncryptionContext::new()).await.expect("decrypted after two throttles");
    let m = kms.metrics();
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!((m.calls_of("Decrypt"), m.retries, m.throttles), (1, 2, 2));
}

#[tokio::test]
async fn throttling_past_the_patience_is_a_typed_error() {
    let (url, seen) = fake_kms(vec![Reply::Throttle]).await;
    // Throttles are retried by the adapter (not the SDK, whose max attempts
    // are for faults) until the client's patience runs out.
    let kms = client(&url, 3, Duration::from_secs(5)).with_throttle_patience(Duration::from_millis(300));
    let err = kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect_err("throttled");
    assert_eq!(err.kind(), KmsErrorKind::Throttled);
    assert!(err.to_string().contains("throttled after all retries"), "{err}");
    let seen = seen.load(Ordering::SeqCst);
    assert!(seen >= 3, "retried while patient: {seen}");
    let keyring_error: envelope_core::KeyringError = err.into();
    assert_eq!(keyring_error.kind(), KeyringErrorKind::Throttled);
    let m = kms.metrics();
    assert_eq!((m.calls_of("Decrypt"), m.throttles), (1, seen as u64));
}

#[tokio::test]
async fn throttles_are_not_retried_by_the_sdk_nor_limited_by_its_attempts() {
    // Five throttles, then the answer: with max attempts 2, only the
    // adapter's retries get there, and the SDK's retry budget is untouched.
    let mut script = vec![Reply::Throttle; 5];
    script.push(Reply::Decrypted);
    let (url, seen) = fake_kms(script).await;
    let kms = client(&url, 2, Duration::from_secs(5));
    kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect("answered after five throttles");
    assert_eq!(seen.load(Ordering::SeqCst), 6);
    let m = kms.metrics();
    assert_eq!((m.calls_of("Decrypt"), m.retries, m.throttles), (1, 5, 5));
}

#[tokio::test]
async fn a_timed_out_attempt_is_retried() {
    let (url, seen) = fake_kms(vec![Reply::Hang(Duration::from_secs(5)), Reply::Decrypted]).await;
    let kms = client(&url, 3, Duration::from_millis(300));
    let (key, used) = kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect("second attempt");
    assert_eq!(used, KEY);
    assert_eq!(key.expose_secret(), &[0x41; 32]);
    assert_eq!(seen.load(Ordering::SeqCst), 2);
    assert_eq!(kms.metrics().retries, 1);
}

#[tokio::test]
async fn a_server_that_never_answers_is_a_network_error() {
    let (url, _) = fake_kms(vec![Reply::Hang(Duration::from_secs(5))]).await;
    let kms = client(&url, 2, Duration::from_millis(200));
    let err = kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect_err("timeout");
    assert_eq!(err.kind(), KmsErrorKind::Network);
}
