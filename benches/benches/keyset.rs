//! Compact keyset records (docs/format.md §12) against raw AES-256-GCM of
//! the same size in the same run: 64-byte records sealed and opened per
//! second on one core. The goal: at least half of raw aws-lc-rs's operations.
//!
//! ```sh
//! cargo bench -p rekey-benches --bench keyset --features aws-lc
//! ```
//!
//! The compact record runs on envelope-core's default backend (aws-lc-rs
//! with `--features aws-lc`, RustCrypto otherwise); group names carry it.

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use envelope_core::hazmat::AeadBackend;
use envelope_core::keyset::Keyset;
use envelope_core::{EncryptionContext, Keyring, LocalKey, LocalKeyring};

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let waker = std::task::Waker::noop();
    let mut cx = std::task::Context::from_waker(waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

fn group_name(group: &str) -> String {
    match AeadBackend::DEFAULT {
        AeadBackend::AwsLc => format!("{group} [aws-lc-rs]"),
        _ => format!("{group} [rustcrypto]"),
    }
}

fn compact(c: &mut Criterion) {
    let keyring = LocalKeyring::new(LocalKey::generate("bench").expect("key"));
    let keyrings: [&dyn Keyring; 1] = [&keyring];
    let keyset = block_on(Keyset::create(&keyrings)).expect("keyset");
    let handle = block_on(keyset.unwrap(&keyrings)).expect("unwrap");
    let context = EncryptionContext::new();
    let plaintext = [0x5a_u8; 64];
    let record = handle.encrypt(&plaintext, &context).expect("seal");
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"));

    let mut group = c.benchmark_group(group_name("compact record 64 B"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("compact encrypt", |b| {
        b.iter(|| handle.encrypt(black_box(&plaintext), &context).expect("seal"))
    });
    // Sixty-four records per call: one fork check for all of them.
    let batch: Vec<&[u8]> = vec![&plaintext[..]; 64];
    group.bench_function("compact encrypt, batches of 64 (per record)", |b| {
        b.iter_custom(|iters| {
            let start = std::time::Instant::now();
            for _ in 0..iters.div_ceil(64) {
                black_box(handle.encrypt_many(black_box(&batch), &context).expect("seal"));
            }
            start.elapsed().mul_f64(iters as f64 / (iters.div_ceil(64) * 64) as f64)
        });
    });
    group.bench_function("compact decrypt", |b| b.iter(|| handle.decrypt(black_box(&record), &context).expect("open")));
    // The raw references: the same 64 bytes, a fresh nonce and a fresh
    // output buffer per operation, as a record needs.
    let mut counter = 0u64;
    group.bench_function("raw aws-lc-rs seal", |b| {
        b.iter(|| {
            counter += 1;
            let mut nonce = [0; 12];
            nonce[4..].copy_from_slice(&counter.to_be_bytes());
            let mut buf = Vec::with_capacity(64 + 16);
            buf.extend_from_slice(black_box(&plaintext));
            lc.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf).expect("seal");
            buf
        });
    });
    let mut sealed = plaintext.to_vec();
    lc.seal_in_place_append_tag(Nonce::assume_unique_for_key([1; 12]), Aad::empty(), &mut sealed).expect("seal");
    group.bench_function("raw aws-lc-rs open", |b| {
        b.iter(|| {
            let mut buf = black_box(&sealed).clone();
            lc.open_in_place(Nonce::assume_unique_for_key([1; 12]), Aad::empty(), &mut buf).expect("open").len()
        });
    });
    // What the nonce's fork check costs on its own: a getpid system call
    // per record (docs: the random generator reseeds in a forked child).
    group.bench_function("getpid alone", |b| b.iter(std::process::id));
    group.bench_function("aws-lc-rs rand 12 bytes alone", |b| {
        b.iter(|| {
            let mut nonce = [0u8; 12];
            aws_lc_rs::rand::fill(&mut nonce).expect("random");
            nonce
        });
    });
    group.finish();
}

criterion_group!(benches, compact);
criterion_main!(benches);
