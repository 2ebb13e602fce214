//! The front door: `Encryptor` round trips (records and streams, blocking and
//! async), expected contexts, and the data key cache's limits, coalescing and
//! decrypt side, on a keyring that counts its calls.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use envelope_core::{
    CachePolicy, DataKey, EncryptedDataKey, EncryptionContext, Encryptor, Error, Expect, Keyring, KeyringError,
    KeyringErrorKind, KeyringFuture, LocalKey, LocalKeyring,
};

use envelope_core::hazmat::{Envelope, ParseOptions};
use proptest::prelude::*;

fn context(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::from_pairs(pairs.iter().copied()).expect("valid context")
}

fn local(name: &str) -> LocalKeyring {
    LocalKeyring::new(LocalKey::generate(name).expect("valid name"))
}

/// A minimal executor: polls the future on this thread, parking between wake-ups.
fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

/// A local keyring that counts its calls and, when gated, answers `generate`
/// only once the gate opens: a stand-in for a slow KMS.
struct Counting {
    inner: LocalKeyring,
    generates: AtomicUsize,
    unwraps: AtomicUsize,
    gate: Option<Arc<Gate>>,
    fail: bool,
}

#[derive(Default)]
struct Gate {
    open: AtomicBool,
    wakers: Mutex<Vec<Waker>>,
}

impl Gate {
    fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
        for waker in self.wakers.lock().expect("lock").drain(..) {
            waker.wake();
        }
    }
}

struct Gated(Arc<Gate>);

impl Future for Gated {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut wakers = self.0.wakers.lock().expect("lock");
        if self.0.open.load(Ordering::SeqCst) {
            return Poll::Ready(());
        }
        wakers.push(cx.waker().clone());
        Poll::Pending
    }
}

impl Counting {
    fn new(name: &str) -> Self {
        Self { inner: local(name), generates: 0.into(), unwraps: 0.into(), gate: None, fail: false }
    }

    fn gated(name: &str, gate: &Arc<Gate>) -> Self {
        Self { gate: Some(Arc::clone(gate)), ..Self::new(name) }
    }

    fn generates(&self) -> usize {
        self.generates.load(Ordering::SeqCst)
    }

    fn unwraps(&self) -> usize {
        self.unwraps.load(Ordering::SeqCst)
    }
}

impl Keyring for Counting {
    fn provider_id(&self) -> &str {
        self.inner.provider_id()
    }
    fn key_id(&self) -> &str {
        self.inner.key_id()
    }
    fn can_unwrap(&self, edk: &EncryptedDataKey) -> bool {
        self.inner.can_unwrap(edk)
    }
    fn needs_runtime(&self) -> bool {
        self.gate.is_some()
    }
    fn generate<'a>(&'a self, context: &'a EncryptionContext) -> KeyringFuture<'a, (DataKey, EncryptedDataKey)> {
        self.generates.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move {
            if let Some(gate) = &self.gate {
                Gated(Arc::clone(gate)).await;
            }
            if self.fail {
                return Err(KeyringError::new(KeyringErrorKind::Unavailable, "the test KMS is down"));
            }
            self.inner.generate_sync(context)
        })
    }
    fn wrap<'a>(&'a self, key: &'a DataKey, context: &'a EncryptionContext) -> KeyringFuture<'a, EncryptedDataKey> {
        self.inner.wrap(key, context)
    }
    fn unwrap<'a>(
        &'a self,
        edks: &'a [EncryptedDataKey],
        context: &'a EncryptionContext,
    ) -> KeyringFuture<'a, DataKey> {
        self.unwraps.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap(edks, context)
    }
}

/// An encryptor on a counting keyring that tests keep a handle to.
fn counted(keyring: Counting, policy: Option<CachePolicy>) -> (Encryptor, Arc<Counting>) {
    let keyring = Arc::new(keyring);
    let mut builder = Encryptor::builder().shared_keyring(keyring.clone()).frame_len(64);
    if let Some(policy) = policy {
        builder = builder.cache(policy);
    }
    (builder.build().expect("encryptor"), keyring)
}

fn message_id(envelope: &[u8]) -> [u8; 32] {
    Envelope::parse(envelope, &ParseOptions::default()).expect("parse").header().message_id
}

fn edks(envelope: &[u8]) -> Vec<EncryptedDataKey> {
    Envelope::parse(envelope, &ParseOptions::default()).expect("parse").header().encrypted_data_keys.clone()
}

fn context_strategy() -> impl Strategy<Value = EncryptionContext> {
    proptest::collection::btree_map("[a-z]{1,8}", "[ -~]{0,12}", 0..4)
        .prop_map(|pairs| EncryptionContext::from_pairs(pairs).expect("valid context"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn records_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..300), ctx in context_strategy(), cached in any::<bool>()) {
        let mut builder = Encryptor::builder().keyring(local("k"));
        if cached {
            builder = builder.cache(CachePolicy::new(Duration::from_secs(60)));
        }
        let encryptor = builder.build().expect("encryptor");
        let sealed = encryptor.encrypt_sync(&ctx, &plaintext).expect("encrypt");
        let opened = encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("decrypt");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
        let sealed = block_on(encryptor.encrypt(&ctx, &plaintext)).expect("encrypt");
        let opened = block_on(encryptor.decrypt(&sealed, Expect::Contains(&EncryptionContext::new()))).expect("decrypt");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
    }

    #[test]
    fn streams_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..700), ctx in context_strategy(), frame_len in 1u32..100) {
        let encryptor = Encryptor::builder().keyring(local("k")).frame_len(frame_len).build().expect("encryptor");
        let mut sealed = Vec::new();
        let n = encryptor.encrypt_stream_sync(&ctx, &plaintext[..], &mut sealed).expect("encrypt");
        prop_assert_eq!(n, plaintext.len() as u64);
        let mut opened = Vec::new();
        encryptor.decrypt_stream_sync(&sealed[..], &mut opened, Expect::Exactly(&ctx)).expect("decrypt");
        prop_assert_eq!(&opened, &plaintext);
        // Both forms go through both readers.
        let opened = encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("in memory");
        prop_assert_eq!(opened.as_bytes(), &plaintext[..]);
        let record = encryptor.encrypt_sync(&ctx, &plaintext).expect("record");
        let mut opened = Vec::new();
        encryptor.decrypt_stream_sync(&record[..], &mut opened, Expect::Exactly(&ctx)).expect("record as a stream");
        prop_assert_eq!(&opened, &plaintext);
    }

    #[test]
    fn async_streams_round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..700), ctx in context_strategy(), frame_len in 1u32..100) {
        let encryptor = Encryptor::builder().keyring(local("k")).frame_len(frame_len).build().expect("encryptor");
        let mut sealed = Vec::new();
        let n = block_on(encryptor.encrypt_stream(&ctx, &plaintext[..], &mut sealed)).expect("encrypt");
        prop_assert_eq!(n, plaintext.len() as u64);
        let mut opened = Vec::new();
        block_on(encryptor.decrypt_stream(&sealed[..], &mut opened, Expect::Exactly(&ctx))).expect("decrypt");
        prop_assert_eq!(&opened, &plaintext);
        // The async writer's output is the blocking reader's input and back.
        let mut opened = Vec::new();
        encryptor.decrypt_stream_sync(&sealed[..], &mut opened, Expect::Exactly(&ctx)).expect("blocking reader");
        prop_assert_eq!(&opened, &plaintext);
        let mut blocking = Vec::new();
        encryptor.encrypt_stream_sync(&ctx, &plaintext[..], &mut blocking).expect("blocking writer");
        let mut opened = Vec::new();
        block_on(encryptor.decrypt_stream(&blocking[..], &mut opened, Expect::Exactly(&ctx))).expect("async reader");
        prop_assert_eq!(&opened, &plaintext);
        let record = encryptor.encrypt_sync(&ctx, &plaintext).expect("record");
        let mut opened = Vec::new();
        block_on(encryptor.decrypt_stream(&record[..], &mut opened, Expect::Exactly(&ctx))).expect("record");
        prop_assert_eq!(&opened, &plaintext);
    }

    /// Every truncation of a stream fails in the async reader, as in the blocking one.
    #[test]
    fn async_reader_refuses_truncation_and_extension(len in 0usize..200, cut in any::<prop::sample::Index>()) {
        let encryptor = Encryptor::builder().keyring(local("k")).frame_len(16).build().expect("encryptor");
        let ctx = EncryptionContext::new();
        let mut sealed = Vec::new();
        encryptor.encrypt_stream_sync(&ctx, &vec![3u8; len][..], &mut sealed).expect("encrypt");
        let cut = cut.index(sealed.len());
        let result = block_on(encryptor.decrypt_stream(&sealed[..cut], Vec::new(), Expect::Exactly(&ctx)));
        prop_assert!(result.is_err());
        let mut extended = sealed.clone();
        extended.push(0);
        let result = block_on(encryptor.decrypt_stream(&extended[..], Vec::new(), Expect::Exactly(&ctx)));
        prop_assert!(matches!(result, Err(Error::Format(_))));
    }
}

#[test]
fn a_wrong_expected_context_is_refused_before_any_unwrap() {
    let (encryptor, keyring) = counted(Counting::new("k"), None);
    let ctx = context(&[("table", "orders"), ("tenant", "7")]);
    let sealed = encryptor.encrypt_sync(&ctx, b"secret").expect("encrypt");
    let refuse = |expected: Expect<'_>, key: &str| {
        match encryptor.decrypt_sync(&sealed, expected) {
            Err(Error::ContextMismatch { key: k }) => assert_eq!(k, key),
            other => panic!("expected a context mismatch on {key}, got {other:?}"),
        }
        let mut out = Vec::new();
        match encryptor.decrypt_stream_sync(&sealed[..], &mut out, expected) {
            Err(Error::ContextMismatch { key: k }) => assert_eq!(k, key),
            other => panic!("expected a context mismatch on {key}, got {other:?}"),
        }
        assert!(out.is_empty());
    };
    // Exact: a different value, a missing pair, an extra pair.
    refuse(Expect::Exactly(&context(&[("table", "orders"), ("tenant", "8")])), "tenant");
    refuse(Expect::Exactly(&context(&[("table", "orders")])), "tenant");
    refuse(Expect::Exactly(&context(&[("a", "1"), ("table", "orders"), ("tenant", "7")])), "a");
    refuse(Expect::Exactly(&EncryptionContext::new()), "table");
    // Subset: a missing or different required pair.
    refuse(Expect::Contains(&context(&[("tenant", "8")])), "tenant");
    refuse(Expect::Contains(&context(&[("region", "eu")])), "region");
    assert_eq!(keyring.unwraps(), 0, "the context is checked before any keyring call");
    // The message says what differs, never the plaintext.
    let error = encryptor.decrypt_sync(&sealed, Expect::Exactly(&context(&[("tenant", "7")]))).expect_err("refused");
    assert!(error.to_string().contains("\"table\""), "{error}");
    assert!(!error.to_string().contains("secret"));

    // Subset mode accepts any superset; exact mode only the context itself.
    for required in [&context(&[("tenant", "7")]), &context(&[]), &ctx] {
        assert_eq!(&encryptor.decrypt_sync(&sealed, Expect::Contains(required)).expect("subset")[..], b"secret");
    }
    assert_eq!(&encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("exact")[..], b"secret");
}

#[test]
fn the_sync_methods_refuse_a_keyring_that_needs_a_runtime() {
    let gate = Arc::new(Gate::default());
    let (encryptor, keyring) = counted(Counting::gated("k", &gate), None);
    let error = encryptor.encrypt_sync(&EncryptionContext::new(), b"x").expect_err("needs async");
    assert!(matches!(&error, Error::Keyring(e) if e.kind() == KeyringErrorKind::Unsupported), "{error}");
    assert!(error.to_string().contains("async"), "{error}");
    assert_eq!(keyring.generates(), 0, "not even called");

    // The same with a warm cache: whether a blocking call works must not
    // depend on what happens to be cached.
    let gate = Arc::new(Gate::default());
    gate.open();
    let (encryptor, _) = counted(Counting::gated("k", &gate), Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = EncryptionContext::new();
    let sealed = block_on(encryptor.encrypt(&ctx, b"x")).expect("async encrypt");
    block_on(encryptor.decrypt(&sealed, Expect::Exactly(&ctx))).expect("async decrypt, cached now");
    let refused =
        |r: Result<(), Error>| matches!(r, Err(Error::Keyring(e)) if e.kind() == KeyringErrorKind::Unsupported);
    assert!(refused(encryptor.encrypt_sync(&ctx, b"x").map(drop)), "encrypt_sync on a warm cache");
    assert!(refused(encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).map(drop)), "decrypt_sync on a warm cache");
    assert!(refused(encryptor.decrypt_stream_sync(&sealed[..], Vec::new(), Expect::Exactly(&ctx)).map(drop)));
    assert!(refused(encryptor.encrypt_stream_sync(&ctx, &b"x"[..], Vec::new()).map(drop)));
}

#[test]
fn a_data_key_is_reused_up_to_max_messages() {
    let policy = CachePolicy::new(Duration::from_secs(600)).max_messages(3);
    let (encryptor, keyring) = counted(Counting::new("k"), Some(policy));
    let ctx = context(&[("t", "1")]);
    let sealed: Vec<_> = (0..7).map(|_| encryptor.encrypt_sync(&ctx, b"record").expect("encrypt")).collect();
    assert_eq!(keyring.generates(), 3, "7 messages at 3 per data key");
    assert_eq!(edks(&sealed[0]), edks(&sealed[2]), "one data key for the first three");
    assert_ne!(edks(&sealed[2]), edks(&sealed[3]), "a new one for the fourth");
    // Each message still has its own id, hence its own body key.
    let mut ids: Vec<_> = sealed.iter().map(|s| message_id(s)).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 7);
    // Another context gets another data key.
    encryptor.encrypt_sync(&context(&[("t", "2")]), b"record").expect("encrypt");
    assert_eq!(keyring.generates(), 4);
}

#[test]
fn a_data_key_is_reused_up_to_max_bytes() {
    let policy = CachePolicy::new(Duration::from_secs(600)).max_bytes(100);
    let (encryptor, keyring) = counted(Counting::new("k"), Some(policy));
    let ctx = EncryptionContext::new();
    let a = encryptor.encrypt_sync(&ctx, &[0; 60]).expect("encrypt");
    let b = encryptor.encrypt_sync(&ctx, &[0; 40]).expect("encrypt");
    assert_eq!(keyring.generates(), 1, "60 + 40 bytes fit 100");
    assert_eq!(edks(&a), edks(&b));
    let c = encryptor.encrypt_sync(&ctx, &[0; 1]).expect("encrypt");
    assert_eq!(keyring.generates(), 2, "the 101st byte needs a new key");
    assert_ne!(edks(&b), edks(&c));
    // A message over the limit on its own gets a key that is not cached.
    encryptor.encrypt_sync(&ctx, &[0; 101]).expect("encrypt");
    encryptor.encrypt_sync(&ctx, &[0; 101]).expect("encrypt");
    assert_eq!(keyring.generates(), 4);
    // Streams, of unknown length, never share a key.
    for _ in 0..2 {
        encryptor.encrypt_stream_sync(&ctx, &b"abc"[..], Vec::new()).expect("stream");
    }
    assert_eq!(keyring.generates(), 6);
}

#[test]
fn a_data_key_is_not_reused_past_max_age() {
    let policy = CachePolicy::new(Duration::from_millis(40));
    let (encryptor, keyring) = counted(Counting::new("k"), Some(policy));
    let ctx = EncryptionContext::new();
    let first = encryptor.encrypt_sync(&ctx, b"x").expect("encrypt");
    std::thread::sleep(Duration::from_millis(80));
    let second = encryptor.encrypt_sync(&ctx, b"x").expect("encrypt");
    assert_eq!(keyring.generates(), 2);
    assert_ne!(edks(&first), edks(&second));
    // The decrypt side expires too: the first decrypt is cached, the one after max age is not.
    encryptor.decrypt_sync(&second, Expect::Exactly(&ctx)).expect("decrypt");
    std::thread::sleep(Duration::from_millis(80));
    encryptor.decrypt_sync(&second, Expect::Exactly(&ctx)).expect("decrypt");
    assert_eq!(keyring.unwraps(), 2);
}

#[test]
fn without_a_cache_every_message_has_its_own_data_key() {
    let (encryptor, keyring) = counted(Counting::new("k"), None);
    let ctx = EncryptionContext::new();
    let a = encryptor.encrypt_sync(&ctx, b"x").expect("encrypt");
    let b = encryptor.encrypt_sync(&ctx, b"x").expect("encrypt");
    assert_ne!(edks(&a), edks(&b));
    encryptor.decrypt_sync(&a, Expect::Exactly(&ctx)).expect("decrypt");
    encryptor.decrypt_sync(&a, Expect::Exactly(&ctx)).expect("decrypt");
    assert_eq!((keyring.generates(), keyring.unwraps()), (2, 2));
}

/// Polls every future once per round until all are done, on this thread.
fn join_all<F: Future + Unpin>(mut futures: Vec<F>, mut between: impl FnMut(usize)) -> Vec<F::Output> {
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    let mut cx = Context::from_waker(Waker::noop());
    for round in 0.. {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none()
                && let Poll::Ready(done) = Pin::new(future).poll(&mut cx)
            {
                *output = Some(done);
            }
        }
        if outputs.iter().all(Option::is_some) {
            break;
        }
        assert!(round < 100, "the futures do not finish");
        between(round);
    }
    outputs.into_iter().map(|o| o.expect("done")).collect()
}

#[test]
fn concurrent_misses_make_one_keyring_call() {
    let gate = Arc::new(Gate::default());
    let (encryptor, keyring) = counted(Counting::gated("k", &gate), Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = context(&[("t", "1")]);
    let tasks: Vec<_> = (0..16).map(|_| Box::pin(encryptor.encrypt(&ctx, b"record"))).collect();
    // All sixteen start and wait; then the one keyring call answers.
    let sealed = join_all(tasks, |round| {
        assert_eq!(keyring.generates(), 1, "one call while waiting");
        if round == 0 {
            gate.open();
        }
    });
    assert_eq!(keyring.generates(), 1);
    let first = edks(sealed[0].as_ref().expect("encrypt"));
    for s in &sealed {
        assert_eq!(edks(s.as_ref().expect("encrypt")), first);
    }

    // The same across threads, each blocking on its own task.
    let gate = Arc::new(Gate::default());
    let (encryptor, keyring) = counted(Counting::gated("k", &gate), Some(CachePolicy::new(Duration::from_secs(60))));
    std::thread::scope(|scope| {
        let handles: Vec<_> =
            (0..8).map(|_| scope.spawn(|| block_on(encryptor.encrypt(&ctx, b"record")).expect("encrypt"))).collect();
        std::thread::sleep(Duration::from_millis(100));
        gate.open();
        for handle in handles {
            handle.join().expect("thread");
        }
    });
    assert_eq!(keyring.generates(), 1);
}

#[test]
fn a_failed_call_fails_every_waiter_once() {
    let gate = Arc::new(Gate::default());
    let failing = Counting { fail: true, ..Counting::gated("k", &gate) };
    let (encryptor, keyring) = counted(failing, Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = EncryptionContext::new();
    let tasks: Vec<_> = (0..5).map(|_| Box::pin(encryptor.encrypt(&ctx, b"r"))).collect();
    let results = join_all(tasks, |_| gate.open());
    assert_eq!(keyring.generates(), 1);
    for result in results {
        assert!(matches!(result, Err(Error::Keyring(e)) if e.kind() == KeyringErrorKind::Unavailable));
    }
}

#[test]
fn a_cancelled_call_lets_a_waiter_take_over() {
    let gate = Arc::new(Gate::default());
    let (encryptor, keyring) = counted(Counting::gated("k", &gate), Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = EncryptionContext::new();
    let mut leader = Box::pin(encryptor.encrypt(&ctx, b"r"));
    let mut waiter = Box::pin(encryptor.encrypt(&ctx, b"r"));
    let mut cx = Context::from_waker(Waker::noop());
    assert!(leader.as_mut().poll(&mut cx).is_pending());
    assert!(waiter.as_mut().poll(&mut cx).is_pending());
    drop(leader); // the task asking the keyring is cancelled
    gate.open();
    let sealed = join_all(vec![waiter], |_| {});
    assert!(sealed[0].is_ok());
    assert_eq!(keyring.generates(), 2, "the waiter asked again");
}

#[test]
fn a_decrypt_cache_hit_makes_no_keyring_call() {
    let (encryptor, keyring) = counted(Counting::new("k"), Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = context(&[("t", "1")]);
    let sealed: Vec<_> = (0..10u8).map(|i| encryptor.encrypt_sync(&ctx, &[i; 40]).expect("encrypt")).collect();
    for (i, s) in (0..10u8).zip(&sealed) {
        assert_eq!(&encryptor.decrypt_sync(s, Expect::Exactly(&ctx)).expect("decrypt")[..], &[i; 40]);
        let mut out = Vec::new();
        encryptor.decrypt_stream_sync(&s[..], &mut out, Expect::Exactly(&ctx)).expect("stream");
        block_on(encryptor.decrypt(s, Expect::Exactly(&ctx))).expect("async");
    }
    assert_eq!(keyring.unwraps(), 1, "one unwrap for ten records under one data key");

    // Another encryptor, whose cache is its own, with the same key: still one unwrap for all.
    let reader = Encryptor::builder().shared_keyring(keyring.clone()).cache(CachePolicy::new(Duration::from_secs(60)));
    let reader = reader.build().expect("encryptor");
    for s in &sealed {
        reader.decrypt_sync(s, Expect::Exactly(&ctx)).expect("decrypt");
    }
    assert_eq!(keyring.unwraps(), 2);
}

/// A tampered body still fails with the one authentication error when the
/// data key comes from the cache, and a cached key never opens an envelope
/// whose commitment names another key.
#[test]
fn a_cached_key_opens_only_its_own_envelopes() {
    let (encryptor, keyring) = counted(Counting::new("k"), Some(CachePolicy::new(Duration::from_secs(60))));
    let ctx = EncryptionContext::new();
    let sealed = encryptor.encrypt_sync(&ctx, b"original").expect("encrypt");
    encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("decrypt, cached now");
    let mut tampered = sealed.clone();
    *tampered.last_mut().expect("not empty") ^= 1;
    assert!(matches!(encryptor.decrypt_sync(&tampered, Expect::Exactly(&ctx)), Err(Error::Authentication)));

    // Another message under another data key, with this message's key list
    // planted in front of its own: the cached key fails its commitment, and
    // the keyrings find the right one, as they would without a cache.
    let other_keyring = Arc::new(local("other"));
    let other = Encryptor::builder().shared_keyring(other_keyring.clone()).build().expect("encryptor");
    let other = other.encrypt_sync(&ctx, b"other").expect("encrypt");
    let parsed = Envelope::parse(&other, &ParseOptions::default()).expect("parse");
    let mut list = edks(&sealed);
    list.extend(parsed.header().encrypted_data_keys.iter().cloned());
    let planted = parsed.with_encrypted_data_keys(&list).expect("rewrap");
    let reader = Encryptor::builder()
        .shared_keyring(keyring.clone())
        .shared_decrypt_only_keyring(other_keyring)
        .cache(CachePolicy::new(Duration::from_secs(60)))
        .build()
        .expect("encryptor");
    // Our message with the same key list: its data key is cached under that list.
    let ours = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let ours = ours.with_encrypted_data_keys(&list).expect("rewrap");
    assert_eq!(&reader.decrypt_sync(&ours, Expect::Exactly(&ctx)).expect("decrypt")[..], b"original");
    let before = keyring.unwraps();
    let opened = reader.decrypt_sync(&planted, Expect::Exactly(&ctx)).expect("the right key is found");
    assert_eq!(&opened[..], b"other");
    assert_eq!(keyring.unwraps(), before + 1, "the keyrings were asked after the cached key failed");
}

#[test]
fn debug_shows_no_key_bytes() {
    let keyring = Arc::new(local("debug-key"));
    let encryptor = Encryptor::builder()
        .shared_keyring(keyring.clone())
        .cache(CachePolicy::new(Duration::from_secs(60)))
        .build()
        .expect("encryptor");
    let ctx = context(&[("t", "1")]);
    let sealed = encryptor.encrypt_sync(&ctx, b"plaintext-marker").expect("encrypt");
    encryptor.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("decrypt");
    let header = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse").header().clone();
    let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).expect("unwrap");
    let debug = format!("{encryptor:?} {encryptor:#?} {:?}", Encryptor::builder());
    let bytes = key.expose_secret();
    for needle in [format!("{bytes:?}"), hex(bytes), format!("{:?}", &bytes[..4]), "plaintext-marker".to_owned()] {
        assert!(!debug.contains(&needle), "Debug shows {needle}: {debug}");
    }
    assert!(debug.contains("rekey-local:debug-key/v1"), "{debug}");
    assert!(debug.contains("encrypt_entries: 1") && debug.contains("decrypt_entries: 1"), "{debug}");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn several_keyrings_each_decrypt_and_decrypt_only_ones_do_not_wrap() {
    let (a, b, old) = (Arc::new(local("a")), Arc::new(local("b")), Arc::new(local("old")));
    let both = Encryptor::builder().shared_keyring(a.clone()).shared_keyring(b.clone()).build().expect("encryptor");
    let ctx = EncryptionContext::new();
    let sealed = both.encrypt_sync(&ctx, b"x").expect("encrypt");
    assert_eq!(edks(&sealed).len(), 2);
    for keyring in [&a, &b] {
        let only = Encryptor::builder().shared_keyring(keyring.clone()).build().expect("encryptor");
        assert_eq!(&only.decrypt_sync(&sealed, Expect::Exactly(&ctx)).expect("decrypt")[..], b"x");
    }
    let old_sealed = Encryptor::builder().shared_keyring(old.clone()).build().expect("e").encrypt_sync(&ctx, b"y");
    let old_sealed = old_sealed.expect("encrypt");
    let without_old = Encryptor::builder().shared_keyring(a.clone()).build().expect("encryptor");
    assert!(matches!(without_old.decrypt_sync(&old_sealed, Expect::Exactly(&ctx)), Err(Error::Keyring(_))));
    let reader = Encryptor::builder().shared_keyring(a.clone()).shared_decrypt_only_keyring(old.clone());
    let reader = reader.build().expect("encryptor");
    assert_eq!(&reader.decrypt_sync(&old_sealed, Expect::Exactly(&ctx)).expect("old key decrypts")[..], b"y");
    let new_sealed = reader.encrypt_sync(&ctx, b"z").expect("encrypt");
    assert_eq!(edks(&new_sealed).len(), 1, "the decrypt-only key does not wrap");
    assert!(Encryptor::builder().build().is_err(), "no keyring");
    assert!(Encryptor::builder().keyring(local("k")).frame_len(0).build().is_err());
}
