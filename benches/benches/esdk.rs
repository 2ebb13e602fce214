//! AWS Encryption SDK messages (`envelope_core::esdk`) against raw
//! aws-lc-rs AES-256-GCM measured in the same run: decrypt with the data
//! key in hand (what follows the keyring's unwrap), and encrypt with the
//! wrapped keys given, unsigned (0x0478) and signed (0x0578, with the
//! `aws-lc` feature only).
//!
//! ```sh
//! cargo bench -p rekey-benches --bench esdk --features aws-lc -- --warm-up-time 1 --measurement-time 3
//! ```

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use envelope_core::esdk::{Encryptor, Message, PlaintextDataKey, RawAesKeyring, Suite, WrappedKey};
use envelope_core::hazmat::AeadBackend;
use envelope_core::{EncryptionContext, Plaintext};

const SIZES: [(usize, &str); 2] = [(64, "64 B"), (16 << 20, "16 MiB")];

fn group_name(group: &str) -> String {
    match AeadBackend::DEFAULT {
        AeadBackend::AwsLc => format!("{group} [aws-lc-rs]"),
        _ => format!("{group} [rustcrypto]"),
    }
}

fn suites() -> Vec<(Suite, &'static str)> {
    let mut suites = vec![(Suite::Aes256GcmHkdfSha512Commit, "0x0478")];
    if cfg!(feature = "aws-lc") {
        suites.push((Suite::Aes256GcmHkdfSha512CommitEcdsaP384, "0x0578"));
    }
    suites
}

fn context() -> EncryptionContext {
    EncryptionContext::from_pairs([("table", "orders")]).expect("context")
}

/// An encryptor, its data key and one raw-AES-wrapped key.
fn setup(suite: Suite, frame_len: u32) -> (Encryptor, PlaintextDataKey, Vec<WrappedKey>) {
    let encryptor = Encryptor::new(suite, &context()).expect("encryptor").with_frame_len(frame_len).expect("frame");
    let key = PlaintextDataKey::generate(suite).expect("random");
    let keyring = RawAesKeyring::new("bench", "key", &[7; 32]).expect("keyring");
    let wrapped = vec![keyring.wrap(&key, encryptor.encryption_context()).expect("wrap")];
    (encryptor, key, wrapped)
}

fn aws_lc_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"))
}

fn decrypt(c: &mut Criterion) {
    let lc = aws_lc_key();
    let mut group = c.benchmark_group(group_name("esdk decrypt"));
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            group.sample_size(10);
        }
        for (suite, suite_name) in suites() {
            for frame_len in [4096u32, 65536] {
                if size < 4096 && frame_len != 4096 {
                    continue;
                }
                let (encryptor, key, wrapped) = setup(suite, frame_len);
                let message = encryptor.encrypt(&key, &wrapped, &plaintext).expect("encrypt");
                let id = BenchmarkId::new(format!("{suite_name} frame {frame_len}"), name);
                // Parse and decrypt, into one output buffer reused as the raw reference reuses its own.
                group.bench_with_input(id, &message, |b, m| {
                    let mut out = Plaintext::new();
                    b.iter(|| {
                        let message = Message::parse(black_box(m)).expect("parse");
                        message.decrypt_into(&key, &mut out).expect("decrypt");
                    });
                });
            }
        }
        let mut ciphertext = plaintext.clone();
        let tag = lc
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut ciphertext)
            .expect("seal");
        group.bench_with_input(BenchmarkId::new("raw aws-lc-rs AES-256-GCM", name), &ciphertext, |b, ct| {
            let mut out = vec![0; ct.len()];
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([0; 12]);
                lc.open_separate_gather(nonce, Aad::empty(), black_box(ct), tag.as_ref(), &mut out).expect("open")
            });
        });
        // The same bytes in frame-sized pieces, one call each, as a framed
        // message must be opened: what per-call costs add on aws-lc-rs.
        for piece in [4096usize, 65536] {
            if size < piece {
                continue;
            }
            let pieces: Vec<(Vec<u8>, Vec<u8>)> = plaintext
                .chunks(piece)
                .map(|p| {
                    let mut c = p.to_vec();
                    let t = lc
                        .seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), &mut c)
                        .expect("seal");
                    (c, t.as_ref().to_vec())
                })
                .collect();
            let id = BenchmarkId::new(format!("raw aws-lc-rs AES-256-GCM, {piece}-byte pieces"), name);
            group.bench_with_input(id, &pieces, |b, pieces| {
                let mut out = vec![0; size];
                b.iter(|| {
                    for ((c, t), o) in pieces.iter().zip(out.chunks_mut(piece)) {
                        let nonce = Nonce::assume_unique_for_key([0; 12]);
                        lc.open_separate_gather(nonce, Aad::empty(), black_box(c), t, o).expect("open");
                    }
                });
            });
        }
    }
    group.finish();
}

fn encrypt(c: &mut Criterion) {
    let lc = aws_lc_key();
    let mut group = c.benchmark_group(group_name("esdk encrypt"));
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size > 1 << 20 {
            group.sample_size(10);
        }
        for (suite, suite_name) in suites() {
            let (_, key, wrapped) = setup(suite, 4096);
            // A new encryptor per message (for 0x0578 that is a new P-384
            // key); the data key and its wrapped form are reused, as with a
            // data key cache.
            group.bench_with_input(BenchmarkId::new(format!("{suite_name} frame 4096"), name), &plaintext, |b, p| {
                b.iter(|| {
                    let encryptor = Encryptor::new(suite, &context()).expect("encryptor");
                    encryptor.encrypt(&key, &wrapped, black_box(p)).expect("encrypt")
                });
            });
        }
        group.bench_with_input(BenchmarkId::new("raw aws-lc-rs AES-256-GCM", name), &plaintext, |b, p| {
            let mut buf = p.clone();
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([0; 12]);
                lc.seal_in_place_separate_tag(nonce, Aad::empty(), black_box(&mut buf)).expect("seal")
            });
        });
    }
    group.finish();
}

criterion_group!(benches, decrypt, encrypt);
criterion_main!(benches);
