//! Faults the local KMS server cannot make: throttling and slow answers,
//! from a scripted fake KMS endpoint on 127.0.0.1. The retries are the SDK's
//! own; these tests check that they happen, are counted, and end in typed errors.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring, KeyringErrorKind};
use kms_adapter::{Kms, KmsErrorKind, KmsKeyring};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555";

#[derive(Clone)]
enum Reply {
    Throttle,
    Hang(Duration),
    Decrypted,
}

/// Serves `script` in order (the last reply repeats); returns the endpoint
/// and the count of requests seen.
async fn fake_kms(script: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Mutex::new(script));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (script, counter) = (Arc::clone(&script), Arc::clone(&counter));
            tokio::spawn(async move {
                loop {
                    if read_request(&mut socket).await.is_none() {
                        return;
                    }
                    counter.fetch_add(1, Ordering::SeqCst);
                    let reply = {
                        let mut s = script.lock().expect("lock");
                        if s.len() > 1 { s.remove(0) } else { s[0].clone() }
                    };
                    let (status, body) = match reply {
                        Reply::Throttle => (
                            "400 Bad Request",
                            r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.to_owned(),
                        ),
                        Reply::Hang(d) => {
                            tokio::time::sleep(d).await;
                            return;
                        }
                        Reply::Decrypted => (
                            "200 OK",
                            format!(
                                r#"{{"KeyId":"{KEY}","Plaintext":"{}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
                                base64::engine::general_purpose::STANDARD.encode([0x41u8; 32])
                            ),
                        ),
                    };
                    let response = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if socket.write_all(response.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, seen)
}

/// Reads one HTTP request (headers and a Content-Length body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if socket.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let headers = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    socket.read_exact(&mut body).await.ok()?;
    Some(())
}

fn client(url: &str, max_attempts: u32, attempt_timeout: Duration) -> Kms {
    let builder = aws_sdk_kms::config::Builder::new()
        .behavior_version(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "test"))
        .retry_config(
            RetryConfig::standard().with_max_attempts(max_attempts).with_initial_backoff(Duration::from_millis(5)),
        )
        .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(attempt_timeout).build());
    Kms::from_sdk_config(builder)
}

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
async fn throttling_past_the_limit_is_a_typed_error() {
    let (url, seen) = fake_kms(vec![Reply::Throttle]).await;
    let kms = client(&url, 3, Duration::from_secs(5));
    let err = kms.decrypt(&[7; 96], Some(KEY), &EncryptionContext::new()).await.expect_err("throttled");
    assert_eq!(err.kind, KmsErrorKind::Throttled);
    assert!(err.to_string().contains("throttled after all retries"), "{err}");
    assert_eq!(seen.load(Ordering::SeqCst), 3, "max attempts");
    let keyring_error: envelope_core::KeyringError = err.into();
    assert_eq!(keyring_error.kind(), KeyringErrorKind::Throttled);
    assert_eq!(kms.metrics().throttles, 3);
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
    assert_eq!(err.kind, KmsErrorKind::Network);
}
