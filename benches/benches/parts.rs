//! Where the time of a 64-byte record goes, piece by piece, and what the
//! machine allows a decryption from memory: the figures behind the "why"
//! paragraphs of `benches/RESULTS.md`.
//!
//! ```sh
//! cargo bench -p rekey-benches --bench parts --features aws-lc
//! ```
//!
//! - `sha256 compress`: one compression, two that wait on each other, two
//!   independent ones (what the key schedule pairs), eight in a chain, four
//!   independent pairs;
//! - `record pieces`: the per-message AES-GCM key setup on each backend,
//!   sealing 64 B with 110 B of associated data (a header core) including
//!   that setup, `Envelope::parse`, the commitment check alone (eight
//!   compressions), and `seal` with a fixed message id against `seal`;
//! - `memory`: copying 1 GiB out of memory in 1 MiB pieces on one and on two
//!   threads, the copy a decryption from a `Read` must make.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use envelope_core::EncryptionContext;
use envelope_core::hazmat::{AeadBackend, Envelope, ParseOptions, seal};
use envelope_core::internals::{Gcm, seal_with_message_id};
use rekey_benches::local_materials;

const SHA256_IV: [u32; 8] =
    [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

fn compress(state: &mut [u32; 8], block: &[u8; 64]) {
    sha2::block_api::compress256(state, std::slice::from_ref(block));
}

fn sha256(c: &mut Criterion) {
    let (a, b) = ([3u8; 64], [5u8; 64]);
    let mut group = c.benchmark_group("sha256 compress");
    group.bench_function("one", |bench| {
        bench.iter(|| {
            let mut s = SHA256_IV;
            compress(&mut s, black_box(&a));
            s
        });
    });
    group.bench_function("two chained", |bench| {
        bench.iter(|| {
            let mut s = SHA256_IV;
            compress(&mut s, black_box(&a));
            compress(&mut s, black_box(&b));
            s
        });
    });
    group.bench_function("two independent", |bench| {
        bench.iter(|| {
            let (mut s, mut t) = (SHA256_IV, SHA256_IV);
            compress(&mut s, black_box(&a));
            compress(&mut t, black_box(&b));
            (s, t)
        });
    });
    group.bench_function("eight chained", |bench| {
        bench.iter(|| {
            let mut s = SHA256_IV;
            for _ in 0..8 {
                compress(&mut s, black_box(&a));
            }
            s
        });
    });
    group.bench_function("eight as four independent pairs", |bench| {
        bench.iter(|| {
            let (mut s, mut t) = (SHA256_IV, SHA256_IV);
            for _ in 0..4 {
                compress(&mut s, black_box(&a));
                compress(&mut t, black_box(&b));
            }
            (s, t)
        });
    });
    group.finish();
}

fn record_pieces(c: &mut Criterion) {
    let context = EncryptionContext::from_pairs([("table", "orders")]).expect("context");
    let (_, materials) = local_materials(&context);
    let record = [0x5a; 64];
    let header_core = [1u8; 110];
    let mut group = c.benchmark_group("record pieces");
    for &backend in AeadBackend::available() {
        group.bench_function(format!("AES-GCM key setup, {}", backend.name()), |b| {
            b.iter(|| Gcm::with_backend(backend, black_box(&[7; 32])).expect("available"));
        });
        group.bench_function(format!("AES-GCM key setup and 64 B seal, {}", backend.name()), |b| {
            b.iter(|| {
                let gcm = Gcm::with_backend(backend, black_box(&[7; 32])).expect("available");
                let mut buf = record;
                gcm.seal_in_place(&[0; 12], &header_core, &mut buf).expect("seal")
            });
        });
    }
    let sealed = seal(&materials, &context, &record).expect("seal");
    group.bench_function("parse", |b| {
        b.iter(|| Envelope::parse(black_box(&sealed), &ParseOptions::default()).expect("parse"));
    });
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    group.bench_function("commitment check (eight compressions)", |b| {
        b.iter(|| envelope.verify_data_key(black_box(&materials.data_key)).expect("commitment"));
    });
    group.bench_function("seal", |b| b.iter(|| seal(&materials, &context, black_box(&record)).expect("seal")));
    group.bench_function("seal with a fixed message id", |b| {
        b.iter(|| seal_with_message_id(&materials, &context, black_box(&record), [9; 32]).expect("seal"));
    });
    group.finish();
}

fn memory(c: &mut Criterion) {
    const PIECE: usize = 1 << 20;
    let gib = vec![0x5au8; 1 << 30];
    let mut group = c.benchmark_group("memory");
    group.sample_size(10);
    for threads in [1, 2] {
        group.bench_function(format!("copy 1 GiB in 1 MiB pieces, {threads} thread(s)"), |b| {
            b.iter(|| {
                std::thread::scope(|s| {
                    for share in gib.chunks(gib.len() / threads) {
                        s.spawn(move || {
                            let mut out = vec![0u8; PIECE];
                            for piece in share.chunks(PIECE) {
                                out.copy_from_slice(piece);
                                black_box(&out);
                            }
                        });
                    }
                });
            });
        });
    }
    group.finish();
}

criterion_group!(benches, sha256, record_pieces, memory);
criterion_main!(benches);
