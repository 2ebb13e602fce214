//! A scripted fake KMS endpoint on 127.0.0.1, for what the local KMS
//! server cannot do (throttling, slow answers, answers naming another key).
#![allow(dead_code, unreachable_pub)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_sdk_kms::config::retry::RetryConfig;
use aws_sdk_kms::config::timeout::TimeoutConfig;
use aws_sdk_kms::config::{BehaviorVersion, Credentials, Region};
use base64::Engine;
use kms_adapter::Kms;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/11111111-2222-3333-4444-555555555555";

/// The plaintext data key every Decrypt answer carries.
pub const DATA_KEY: [u8; 32] = [0x41; 32];

fn decrypted(key: &str) -> String {
    format!(
        r#"{{"KeyId":"{key}","Plaintext":"{}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
        base64::engine::general_purpose::STANDARD.encode(DATA_KEY)
    )
}

#[derive(Clone)]
pub enum Reply {
    Throttle,
    Hang(Duration),
    Decrypted,
    /// A Decrypt answer naming this key as the one used.
    DecryptedBy(String),
    /// Any answer: the HTTP status line's code and text, and the JSON body.
    Answer(&'static str, String),
}

/// One request the fake saw: the region it was signed for, its operation
/// (`TrentService.Decrypt`) and its JSON body.
#[derive(Debug, Clone)]
pub struct Seen {
    pub region: String,
    pub operation: String,
    pub body: String,
}

/// Serves `script` in order (the last reply repeats); returns the endpoint
/// and the count of requests seen.
pub async fn fake_kms(script: Vec<Reply>) -> (String, Arc<AtomicUsize>) {
    let (url, seen, _) = fake_kms_logged(script).await;
    (url, seen)
}

/// As [`fake_kms`], and the requests seen, in order.
pub async fn fake_kms_logged(script: Vec<Reply>) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<Seen>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::clone(&log);
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let seen = Arc::new(AtomicUsize::new(0));
    let script = Arc::new(Mutex::new(script));
    let counter = Arc::clone(&seen);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (script, counter, requests) = (Arc::clone(&script), Arc::clone(&counter), Arc::clone(&requests));
            tokio::spawn(async move {
                loop {
                    let Some(request) = read_request(&mut socket).await else {
                        return;
                    };
                    requests.lock().expect("lock").push(request);
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
                        Reply::Decrypted => ("200 OK", decrypted(KEY)),
                        Reply::DecryptedBy(key) => ("200 OK", decrypted(&key)),
                        Reply::Answer(status, body) => (status, body),
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
    (url, seen, log)
}

/// Reads one HTTP request (headers and a Content-Length body).
async fn read_request(socket: &mut tokio::net::TcpStream) -> Option<Seen> {
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
    let header = |name: &str| headers.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_default().trim().to_owned();
    // Credential=KEY/DATE/REGION/kms/aws4_request
    let region = header("authorization:").split('/').nth(2).unwrap_or_default().to_owned();
    Some(Seen { region, operation: header("x-amz-target:"), body: String::from_utf8_lossy(&body).into_owned() })
}

pub fn client(url: &str, max_attempts: u32, attempt_timeout: Duration) -> Kms {
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
