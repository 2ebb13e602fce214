//! A fast fake AWS KMS for benchmarks, on the loopback interface only.
//!
//! It answers CreateKey, DescribeKey, GenerateDataKey, Encrypt, Decrypt and
//! ReEncrypt in KMS's JSON protocol (`POST /`, `X-Amz-Target:
//! TrentService.OP`, `application/x-amz-json-1.1`) with real, checkable
//! results: each key is an AES-256-GCM key of this process, a ciphertext
//! blob is `"FK1"` ‖ key id (16 bytes) ‖ nonce (12) ‖ AES-GCM(key, data,
//! AAD = the canonical encryption context) ‖ tag, so Decrypt and ReEncrypt
//! check the context and any tampering (`InvalidCiphertextException`), a
//! pinned `KeyId` / `SourceKeyId` that is not the blob's key
//! (`IncorrectKeyException`), and answer with the real key ARNs. Keys live
//! as long as the process. SigV4 signatures are not checked (any
//! credentials do): this measures the client, not authentication.
//!
//! Every answer waits `--latency-ms` (default 10, an in-region round
//! trip) with a timer, not a thread, so a client needs requests in flight
//! as with real KMS. A token bucket of `--quota` requests per second
//! (0: none), shared by every connection, admits the cryptographic
//! operations; over quota the answer is KMS's own: HTTP 400
//! `{"__type":"ThrottlingException","message":"Rate exceeded"}`. The bucket
//! holds `--burst-ms` worth of tokens (default 100 ms).
//!
//! Control, for the benchmark script (same endpoint, other targets):
//! `FakeKms.SetQuota` with `{"Quota": N}` changes the quota at once, and
//! with `"LatencyMs": MS` the latency; `FakeKms.Stats` answers the counters
//! and a per-second timeline of admitted and throttled requests since the
//! first one; `FakeKms.Reset` zeroes the counters and the timeline (keys stay).
//!
//! ```text
//! fake_kms [--port P] [--latency-ms MS] [--quota N] [--burst-ms MS] [--threads N]
//! ```
//! Prints the port it listens on (127.0.0.1), then serves until killed.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const MAGIC: &[u8; 3] = b"FK1";
const ID_LEN: usize = 16;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
const ACCOUNT: &str = "111122223333";
/// Seconds of per-second timeline kept.
const TIMELINE: usize = 3600;

struct Options {
    port: u16,
    latency: Duration,
    quota: f64,
    burst: Duration,
    threads: usize,
    region: String,
}

fn options() -> Result<Options, String> {
    let mut o = Options {
        port: 0,
        latency: Duration::from_millis(10),
        quota: 0.0,
        burst: Duration::from_millis(100),
        threads: 2,
        region: "us-east-1".into(),
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let number = || value.parse::<f64>().map_err(|_| format!("{flag}: not a number: {value}"));
        match flag.as_str() {
            "--port" => o.port = value.parse().map_err(|_| format!("--port: {value}"))?,
            "--latency-ms" => o.latency = Duration::from_secs_f64(number()? / 1000.0),
            "--quota" => o.quota = number()?,
            "--burst-ms" => o.burst = Duration::from_secs_f64(number()? / 1000.0),
            "--threads" => o.threads = value.parse().map_err(|_| format!("--threads: {value}"))?,
            "--region" => o.region = value,
            _ => return Err(format!("unknown option {flag}")),
        }
    }
    Ok(o)
}

fn main() {
    let options = match options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "fake_kms: {e}\nusage: fake_kms [--port P] [--latency-ms MS] [--quota N] [--burst-ms MS] [--threads N]"
            );
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(options.threads.max(1))
        .enable_all()
        .build()
        .expect("a tokio runtime");
    if let Err(e) = runtime.block_on(serve(options)) {
        eprintln!("fake_kms: {e}");
        std::process::exit(1);
    }
}

async fn serve(options: Options) -> std::io::Result<()> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], options.port))).await?;
    println!("{}", listener.local_addr()?.port());
    let state = Arc::new(State::new(&options));
    loop {
        let (socket, _) = listener.accept().await?;
        let _ = socket.set_nodelay(true);
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let _ = connection(socket, state).await;
        });
    }
}

/// One keep-alive HTTP/1.1 connection: requests in turn, as the SDK sends them.
async fn connection(mut socket: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    let mut out: Vec<u8> = Vec::with_capacity(1024);
    loop {
        // Headers, then the body.
        let (header_len, body_len, target, close) = loop {
            let mut headers = [httparse::EMPTY_HEADER; 32];
            let mut request = httparse::Request::new(&mut headers);
            match request.parse(&buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let mut body_len = 0usize;
                    let mut target = String::new();
                    let mut close = false;
                    for h in request.headers.iter() {
                        if h.name.eq_ignore_ascii_case("content-length") {
                            body_len =
                                std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(0);
                        } else if h.name.eq_ignore_ascii_case("x-amz-target") {
                            target = String::from_utf8_lossy(h.value).into_owned();
                        } else if h.name.eq_ignore_ascii_case("connection") {
                            close = h.value.eq_ignore_ascii_case(b"close");
                        }
                    }
                    break (n, body_len, target, close);
                }
                Ok(httparse::Status::Partial) => {
                    if buf.len() > 64 << 10 {
                        return Ok(());
                    }
                }
                Err(_) => return Ok(()),
            }
            if read_more(&mut socket, &mut buf).await? == 0 {
                return Ok(());
            }
        };
        if body_len > 1 << 20 {
            return Ok(());
        }
        while buf.len() < header_len + body_len {
            if read_more(&mut socket, &mut buf).await? == 0 {
                return Ok(());
            }
        }
        let arrived = Instant::now();
        let (status, body) = state.handle(&target, &buf[header_len..header_len + body_len]);
        buf.drain(..header_len + body_len);
        let latency = Duration::from_micros(state.latency_us.load(Ordering::Relaxed));
        if !latency.is_zero() {
            tokio::time::sleep_until((arrived + latency).into()).await;
        }
        out.clear();
        out.extend_from_slice(if status == 200 { b"HTTP/1.1 200 OK\r\n" } else { b"HTTP/1.1 400 Bad Request\r\n" });
        out.extend_from_slice(b"Content-Type: application/x-amz-json-1.1\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body.as_bytes());
        socket.write_all(&out).await?;
        if close {
            return Ok(());
        }
    }
}

async fn read_more(socket: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    buf.reserve(4096);
    socket.read_buf(buf).await
}

struct Key {
    id: [u8; ID_LEN],
    arn: String,
    aead: LessSafeKey,
}

struct Bucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

struct State {
    region: String,
    keys: RwLock<HashMap<[u8; ID_LEN], Arc<Key>>>,
    bucket: Mutex<Bucket>,
    burst: Duration,
    latency_us: AtomicU64,
    /// Nonces: a random prefix for this process, then a counter.
    nonce_prefix: [u8; 4],
    nonce_counter: AtomicU64,
    started: Mutex<Option<Instant>>,
    requests: AtomicU64,
    throttles: AtomicU64,
    errors: AtomicU64,
    /// Per second since the first request: admitted, throttled.
    timeline: Vec<(AtomicU64, AtomicU64)>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase", default)]
struct Request {
    key_id: Option<String>,
    plaintext: Option<String>,
    ciphertext_blob: Option<String>,
    encryption_context: Option<BTreeMap<String, String>>,
    source_key_id: Option<String>,
    source_encryption_context: Option<BTreeMap<String, String>>,
    destination_key_id: Option<String>,
    destination_encryption_context: Option<BTreeMap<String, String>>,
    number_of_bytes: Option<u64>,
    key_spec: Option<String>,
    quota: Option<f64>,
    latency_ms: Option<f64>,
}

type Answer = (u16, String);

fn error(kind: &str, message: &str) -> Answer {
    (400, format!(r#"{{"__type":"{kind}","message":"{message}"}}"#))
}

impl State {
    fn new(options: &Options) -> Self {
        let mut nonce_prefix = [0u8; 4];
        aws_lc_rs::rand::fill(&mut nonce_prefix).expect("random bytes");
        Self {
            region: options.region.clone(),
            keys: RwLock::default(),
            bucket: Mutex::new(Bucket {
                rate: options.quota,
                capacity: (options.quota * options.burst.as_secs_f64()).max(1.0),
                tokens: (options.quota * options.burst.as_secs_f64()).max(1.0),
                last: Instant::now(),
            }),
            burst: options.burst,
            latency_us: AtomicU64::new(u64::try_from(options.latency.as_micros()).unwrap_or(u64::MAX)),
            nonce_prefix,
            nonce_counter: AtomicU64::new(0),
            started: Mutex::new(None),
            requests: AtomicU64::new(0),
            throttles: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            timeline: (0..TIMELINE).map(|_| (AtomicU64::new(0), AtomicU64::new(0))).collect(),
        }
    }

    fn handle(&self, target: &str, body: &[u8]) -> Answer {
        let operation = target.strip_prefix("TrentService.").unwrap_or(target);
        let request: Request = match serde_json::from_slice(body) {
            Ok(r) => r,
            Err(_) if body.is_empty() => Request::default(),
            Err(e) => return error("SerializationException", &e.to_string().replace('"', "'")),
        };
        let answer = match operation {
            "GenerateDataKey" | "Encrypt" | "Decrypt" | "ReEncrypt" => {
                if !self.admit() {
                    return error("ThrottlingException", "Rate exceeded");
                }
                match operation {
                    "GenerateDataKey" => self.generate(&request),
                    "Encrypt" => self.encrypt(&request),
                    "Decrypt" => self.decrypt(&request),
                    _ => self.reencrypt(&request),
                }
            }
            "CreateKey" => self.create_key(),
            "DescribeKey" => self.describe(&request),
            "FakeKms.SetQuota" => self.set_quota(&request),
            "FakeKms.Stats" => self.stats(),
            "FakeKms.Reset" => self.reset(),
            _ => error("UnknownOperationException", "unknown operation"),
        };
        if answer.0 != 200 {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        answer
    }

    /// The shared token bucket; counts the request in the timeline either way.
    fn admit(&self) -> bool {
        let now = Instant::now();
        let started = *self.started.lock().expect("lock").get_or_insert(now);
        let second = usize::try_from(now.duration_since(started).as_secs()).unwrap_or(usize::MAX).min(TIMELINE - 1);
        self.requests.fetch_add(1, Ordering::Relaxed);
        let admitted = {
            let mut b = self.bucket.lock().expect("lock");
            if b.rate <= 0.0 {
                true
            } else {
                b.tokens = (b.tokens + now.duration_since(b.last).as_secs_f64() * b.rate).min(b.capacity);
                b.last = now;
                if b.tokens >= 1.0 {
                    b.tokens -= 1.0;
                    true
                } else {
                    false
                }
            }
        };
        let slot = &self.timeline[second];
        if admitted {
            slot.0.fetch_add(1, Ordering::Relaxed);
        } else {
            slot.1.fetch_add(1, Ordering::Relaxed);
            self.throttles.fetch_add(1, Ordering::Relaxed);
        }
        admitted
    }

    fn reset(&self) -> Answer {
        *self.started.lock().expect("lock") = None;
        for counter in [&self.requests, &self.throttles, &self.errors] {
            counter.store(0, Ordering::Relaxed);
        }
        for (ok, throttled) in &self.timeline {
            ok.store(0, Ordering::Relaxed);
            throttled.store(0, Ordering::Relaxed);
        }
        (200, "{}".into())
    }

    fn set_quota(&self, request: &Request) -> Answer {
        if let Some(ms) = request.latency_ms {
            let us = Duration::from_secs_f64(ms.max(0.0) / 1000.0).as_micros();
            self.latency_us.store(u64::try_from(us).unwrap_or(u64::MAX), Ordering::Relaxed);
            eprintln!("fake_kms: latency now {ms} ms");
        }
        let Some(quota) = request.quota else {
            return (200, "{}".into());
        };
        let quota = quota.max(0.0);
        let mut b = self.bucket.lock().expect("lock");
        b.rate = quota;
        b.capacity = (quota * self.burst.as_secs_f64()).max(1.0);
        b.tokens = b.tokens.min(b.capacity);
        b.last = Instant::now();
        eprintln!("fake_kms: quota now {quota}/s");
        (200, format!(r#"{{"Quota":{quota}}}"#))
    }

    fn stats(&self) -> Answer {
        let started = *self.started.lock().expect("lock");
        let seconds = started.map_or(0, |s| usize::try_from(s.elapsed().as_secs()).unwrap_or(0) + 1).min(TIMELINE);
        let timeline: Vec<String> = self.timeline[..seconds]
            .iter()
            .map(|(ok, th)| format!("[{},{}]", ok.load(Ordering::Relaxed), th.load(Ordering::Relaxed)))
            .collect();
        (
            200,
            format!(
                r#"{{"Requests":{},"Throttles":{},"Errors":{},"Keys":{},"Timeline":[{}]}}"#,
                self.requests.load(Ordering::Relaxed),
                self.throttles.load(Ordering::Relaxed),
                self.errors.load(Ordering::Relaxed),
                self.keys.read().expect("lock").len(),
                timeline.join(",")
            ),
        )
    }

    fn create_key(&self) -> Answer {
        let mut material = [0u8; 32];
        let mut id = [0u8; ID_LEN];
        aws_lc_rs::rand::fill(&mut material).expect("random bytes");
        aws_lc_rs::rand::fill(&mut id).expect("random bytes");
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &material).expect("a 32-byte key"));
        let arn = format!("arn:aws:kms:{}:{ACCOUNT}:key/{}", self.region, uuid(&id));
        let key = Arc::new(Key { id, arn, aead });
        self.keys.write().expect("lock").insert(id, Arc::clone(&key));
        (200, format!(r#"{{"KeyMetadata":{}}}"#, metadata(&key)))
    }

    fn describe(&self, request: &Request) -> Answer {
        match self.key(request.key_id.as_deref()) {
            Ok(key) => (200, format!(r#"{{"KeyMetadata":{}}}"#, metadata(&key))),
            Err(e) => e,
        }
    }

    /// A key by ARN or key id.
    fn key(&self, key_id: Option<&str>) -> Result<Arc<Key>, Answer> {
        let Some(key_id) = key_id else {
            return Err(error("ValidationException", "KeyId is required"));
        };
        let uuid_text = match key_id.strip_prefix("arn:") {
            Some(_) => key_id.rsplit_once(":key/").map_or("", |(_, id)| id),
            None => key_id,
        };
        let id = parse_uuid(uuid_text).ok_or_else(|| error("NotFoundException", "Invalid keyId"))?;
        let found = self.keys.read().expect("lock").get(&id).cloned();
        let key = found.ok_or_else(|| error("NotFoundException", "Key not found"))?;
        if key_id.starts_with("arn:") && key_id != key.arn {
            return Err(error("NotFoundException", "Key not found"));
        }
        Ok(key)
    }

    fn seal(&self, key: &Key, data: &[u8], context: Option<&BTreeMap<String, String>>) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..4].copy_from_slice(&self.nonce_prefix);
        nonce[4..].copy_from_slice(&self.nonce_counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
        let mut blob = Vec::with_capacity(MAGIC.len() + ID_LEN + NONCE_LEN + data.len() + TAG_LEN);
        blob.extend_from_slice(MAGIC);
        blob.extend_from_slice(&key.id);
        blob.extend_from_slice(&nonce);
        let start = blob.len();
        blob.extend_from_slice(data);
        let tag = key
            .aead
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad(context)),
                &mut blob[start..],
            )
            .expect("AES-GCM seal");
        blob.extend_from_slice(tag.as_ref());
        STANDARD.encode(&blob)
    }

    /// Opens a blob: its key and the plaintext.
    fn open(
        &self,
        blob: Option<&str>,
        pinned: Option<&str>,
        context: Option<&BTreeMap<String, String>>,
    ) -> Result<(Arc<Key>, Vec<u8>), Answer> {
        let invalid = || error("InvalidCiphertextException", "");
        let mut blob = STANDARD.decode(blob.ok_or_else(invalid)?).map_err(|_| invalid())?;
        if blob.len() < MAGIC.len() + ID_LEN + NONCE_LEN + TAG_LEN || &blob[..MAGIC.len()] != MAGIC {
            return Err(invalid());
        }
        let mut id = [0u8; ID_LEN];
        id.copy_from_slice(&blob[MAGIC.len()..MAGIC.len() + ID_LEN]);
        let key = self.keys.read().expect("lock").get(&id).cloned().ok_or_else(invalid)?;
        if let Some(pinned) = pinned {
            let pinned_key = self.key(Some(pinned))?;
            if pinned_key.id != key.id {
                return Err(error(
                    "IncorrectKeyException",
                    "The key ID in the request does not identify a CMK that can perform this operation.",
                ));
            }
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[MAGIC.len() + ID_LEN..MAGIC.len() + ID_LEN + NONCE_LEN]);
        let sealed = &mut blob[MAGIC.len() + ID_LEN + NONCE_LEN..];
        let len = key
            .aead
            .open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad(context)), sealed)
            .map_err(|_| invalid())?
            .len();
        let plaintext = sealed[..len].to_vec();
        Ok((key, plaintext))
    }

    fn generate(&self, request: &Request) -> Answer {
        let key = match self.key(request.key_id.as_deref()) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let len = match (request.number_of_bytes, request.key_spec.as_deref()) {
            (Some(n @ 1..=1024), None) => usize::try_from(n).unwrap_or(32),
            (None, Some("AES_256")) => 32,
            (None, Some("AES_128")) => 16,
            _ => return error("ValidationException", "give one of KeySpec (AES_256, AES_128) or NumberOfBytes"),
        };
        let mut data = vec![0u8; len];
        aws_lc_rs::rand::fill(&mut data).expect("random bytes");
        let blob = self.seal(&key, &data, request.encryption_context.as_ref());
        (
            200,
            format!(
                r#"{{"CiphertextBlob":"{blob}","Plaintext":"{}","KeyId":"{}","KeyMaterialId":"fake"}}"#,
                STANDARD.encode(&data),
                key.arn
            ),
        )
    }

    fn encrypt(&self, request: &Request) -> Answer {
        let key = match self.key(request.key_id.as_deref()) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let Some(data) = request.plaintext.as_deref().and_then(|p| STANDARD.decode(p).ok()) else {
            return error("ValidationException", "Plaintext is required (base64)");
        };
        let blob = self.seal(&key, &data, request.encryption_context.as_ref());
        (
            200,
            format!(r#"{{"CiphertextBlob":"{blob}","KeyId":"{}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#, key.arn),
        )
    }

    fn decrypt(&self, request: &Request) -> Answer {
        match self.open(
            request.ciphertext_blob.as_deref(),
            request.key_id.as_deref(),
            request.encryption_context.as_ref(),
        ) {
            Ok((key, data)) => (
                200,
                format!(
                    r#"{{"KeyId":"{}","Plaintext":"{}","EncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#,
                    key.arn,
                    STANDARD.encode(&data)
                ),
            ),
            Err(e) => e,
        }
    }

    fn reencrypt(&self, request: &Request) -> Answer {
        let destination = match self.key(request.destination_key_id.as_deref()) {
            Ok(k) => k,
            Err(e) => return e,
        };
        let (source, data) = match self.open(
            request.ciphertext_blob.as_deref(),
            request.source_key_id.as_deref(),
            request.source_encryption_context.as_ref(),
        ) {
            Ok(opened) => opened,
            Err(e) => return e,
        };
        let blob = self.seal(&destination, &data, request.destination_encryption_context.as_ref());
        (
            200,
            format!(
                concat!(
                    r#"{{"CiphertextBlob":"{}","KeyId":"{}","SourceKeyId":"{}","#,
                    r#""SourceEncryptionAlgorithm":"SYMMETRIC_DEFAULT","DestinationEncryptionAlgorithm":"SYMMETRIC_DEFAULT"}}"#
                ),
                blob, destination.arn, source.arn
            ),
        )
    }
}

/// The canonical encryption context: pairs sorted by key (a `BTreeMap`), each
/// part length-prefixed, so no two contexts share an encoding.
fn aad(context: Option<&BTreeMap<String, String>>) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in context.into_iter().flatten() {
        for part in [k, v] {
            out.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
            out.extend_from_slice(part.as_bytes());
        }
    }
    out
}

fn metadata(key: &Key) -> String {
    format!(
        concat!(
            r#"{{"AWSAccountId":"{}","KeyId":"{}","Arn":"{}","Enabled":true,"KeyState":"Enabled","#,
            r#""KeyUsage":"ENCRYPT_DECRYPT","KeySpec":"SYMMETRIC_DEFAULT","CustomerMasterKeySpec":"SYMMETRIC_DEFAULT","#,
            r#""Origin":"AWS_KMS","KeyManager":"CUSTOMER","EncryptionAlgorithms":["SYMMETRIC_DEFAULT"],"CreationDate":1700000000}}"#
        ),
        ACCOUNT,
        uuid(&key.id),
        key.arn
    )
}

fn uuid(id: &[u8; ID_LEN]) -> String {
    let hex: String = id.iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

fn parse_uuid(text: &str) -> Option<[u8; ID_LEN]> {
    let hex: String = text.chars().filter(|c| *c != '-').collect();
    if hex.len() != 2 * ID_LEN || text.len() != 36 {
        return None;
    }
    let mut id = [0u8; ID_LEN];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(id)
}
