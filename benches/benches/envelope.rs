//! The envelope against raw AES-256-GCM measured in the same run, so that
//! ratios mean something on a noisy machine: records (seal and open with a
//! cached data key), framed streams of 1 GiB on one thread and on every core,
//! and legacy CBC records.
//!
//! The envelope runs on envelope-core's default backend: RustCrypto, or
//! aws-lc-rs with `--features aws-lc`. Group names carry the backend, so both
//! runs' results sit side by side for `benches/report.py`:
//!
//! ```sh
//! cargo bench -p rekey-benches --bench envelope
//! cargo bench -p rekey-benches --bench envelope --features aws-lc
//! python3 benches/report.py
//! ```

use std::hint::black_box;
use std::io::{Read, Write};

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use envelope_core::hazmat::{
    AeadBackend, Envelope, ParseOptions, StreamDecryptor, StreamOptions, encrypt_stream_with, seal, seal_into,
};
use envelope_core::internals::Gcm;
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext, Plaintext};
use rekey_benches::local_materials;

const SIZES: [(usize, &str); 4] = [(64, "64 B"), (1024, "1 KiB"), (64 * 1024, "64 KiB"), (16 << 20, "16 MiB")];
const GIB: u64 = 1 << 30;
const FRAME: u32 = 1 << 16;

/// `group [aws-lc-rs]` or `group [rustcrypto]`: every group carries the
/// backend this run's envelope uses, so the two runs' results (each with its
/// own raw references) do not overwrite each other.
fn group_name(group: &str) -> String {
    match AeadBackend::DEFAULT {
        AeadBackend::AwsLc => format!("{group} [aws-lc-rs]"),
        _ => format!("{group} [rustcrypto]"),
    }
}

fn aws_lc_key() -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"))
}

fn raw_nonce(i: u64) -> Nonce {
    let mut nonce = [0; 12];
    nonce[4..].copy_from_slice(&i.to_be_bytes());
    Nonce::assume_unique_for_key(nonce)
}

fn rustcrypto() -> Gcm {
    Gcm::with_backend(AeadBackend::RustCrypto, &[7; 32]).expect("always built")
}

fn records(c: &mut Criterion) {
    let context = EncryptionContext::from_pairs([("table", "orders")]).expect("context");
    let (_, materials) = local_materials(&context);
    let (gcm, lc) = (rustcrypto(), aws_lc_key());
    let mut group = c.benchmark_group(group_name("seal"));
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        // The data key is cached: every message derives its own keys from it.
        group.bench_with_input(BenchmarkId::new("envelope", name), &plaintext, |b, p| {
            b.iter(|| seal(&materials, &context, black_box(p)).expect("seal"));
        });
        // The same into one output buffer reused from record to record, as
        // the raw references below reuse theirs.
        group.bench_with_input(BenchmarkId::new("envelope-into", name), &plaintext, |b, p| {
            let mut out = Vec::new();
            b.iter(|| seal_into(&materials, &context, black_box(p), &mut out).expect("seal"));
        });
        group.bench_with_input(BenchmarkId::new("raw-rustcrypto", name), &plaintext, |b, p| {
            let mut buf = p.clone();
            b.iter(|| gcm.seal_in_place(&[0; 12], b"", black_box(&mut buf)).expect("seal"));
        });
        group.bench_with_input(BenchmarkId::new("raw-aws-lc-rs", name), &plaintext, |b, p| {
            let mut buf = p.clone();
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([0; 12]);
                lc.seal_in_place_separate_tag(nonce, Aad::empty(), black_box(&mut buf)).expect("seal")
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group(group_name("open"));
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        let sealed = seal(&materials, &context, &plaintext).expect("seal");
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        // Parse, check the commitment, decrypt, and drop (zeroize) the
        // plaintext, with the data key already unwrapped (cached).
        group.bench_with_input(BenchmarkId::new("envelope", name), &sealed, |b, s| {
            b.iter(|| {
                let envelope = Envelope::parse(black_box(s), &ParseOptions::default()).expect("parse");
                envelope.open_plaintext(&materials.data_key).expect("open")
            });
        });
        // The same into one plaintext buffer reused from record to record.
        group.bench_with_input(BenchmarkId::new("envelope-into", name), &sealed, |b, s| {
            let mut out = Plaintext::new();
            b.iter(|| {
                let envelope = Envelope::parse(black_box(s), &ParseOptions::default()).expect("parse");
                envelope.open_into(&materials.data_key, &mut out).expect("open");
            });
        });
        // The same through `open`, whose `Zeroizing<Vec<u8>>` is wiped byte by byte.
        group.bench_with_input(BenchmarkId::new("envelope-zeroizing-vec", name), &sealed, |b, s| {
            b.iter(|| {
                let envelope = Envelope::parse(black_box(s), &ParseOptions::default()).expect("parse");
                envelope.open(&materials.data_key).expect("open")
            });
        });
        let mut ciphertext = plaintext.clone();
        let tag = gcm.seal_in_place(&[0; 12], b"", &mut ciphertext).expect("seal");
        group.bench_with_input(BenchmarkId::new("raw-rustcrypto", name), &ciphertext, |b, ct| {
            // Out of place, as the envelope opens: from the input into an output buffer.
            let mut out = vec![0u8; size];
            b.iter(|| gcm.open_to(&[0; 12], b"", black_box(ct), &tag, &mut out).expect("open"));
        });
        let mut sealed_lc = plaintext.clone();
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        let tag_lc = lc.seal_in_place_separate_tag(nonce, Aad::empty(), &mut sealed_lc).expect("seal");
        sealed_lc.extend_from_slice(tag_lc.as_ref());
        group.bench_with_input(BenchmarkId::new("raw-aws-lc-rs", name), &sealed_lc, |b, s| {
            // Out of place, as the envelope opens: from the input into an output buffer.
            let mut out = vec![0u8; size];
            b.iter(|| {
                let nonce = Nonce::assume_unique_for_key([0; 12]);
                let (ct, tag) = s.split_at(size);
                lc.open_separate_gather(nonce, Aad::empty(), black_box(ct), tag, &mut out).expect("open")
            });
        });
    }
    group.finish();
}

/// A reader of `len` pattern bytes made on the fly: 1 GiB without 1 GiB of memory.
struct Pattern {
    left: u64,
}

impl Read for Pattern {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(usize::try_from(self.left).unwrap_or(usize::MAX));
        buf[..n].fill(0x5a);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Keeps the first bytes written (the header and some frames) and counts the rest.
struct Keep {
    kept: Vec<u8>,
    total: u64,
}

impl Write for Keep {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let room = (1usize << 20).saturating_sub(self.kept.len()).min(buf.len());
        self.kept.extend_from_slice(&buf[..room]);
        self.total += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn streaming(c: &mut Criterion) {
    let context = EncryptionContext::new();
    let (keyring, materials) = local_materials(&context);
    let cores = StreamOptions::default();
    let mut group = c.benchmark_group(group_name("framed"));
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB));

    // The references: 1 GiB sealed in 64 KiB pieces in one cache-hot buffer,
    // with no reading or writing at all.
    let lc = aws_lc_key();
    group.bench_function("raw-aws-lc-rs 1 GiB", |b| {
        let mut buf = vec![0x5a; FRAME as usize];
        b.iter(|| {
            for i in 0..GIB / u64::from(FRAME) {
                let tag = lc.seal_in_place_separate_tag(raw_nonce(i), Aad::empty(), &mut buf).expect("seal");
                black_box(tag.as_ref()[0]);
            }
        });
    });
    // How far the machine's cores scale raw AES-GCM: 1 GiB split evenly
    // between as many threads as the envelope's default uses.
    let threads = cores.threads();
    group.bench_function("raw-aws-lc-rs 1 GiB, all cores", |b| {
        b.iter(|| {
            std::thread::scope(|s| {
                for t in 0..threads as u64 {
                    let lc = &lc;
                    s.spawn(move || {
                        let mut buf = vec![0x5a; FRAME as usize];
                        let pieces = GIB / u64::from(FRAME) / threads as u64;
                        for i in t * pieces..(t + 1) * pieces {
                            let tag =
                                lc.seal_in_place_separate_tag(raw_nonce(i), Aad::empty(), &mut buf).expect("seal");
                            black_box(tag.as_ref()[0]);
                        }
                    });
                }
            });
        });
    });
    let gcm = rustcrypto();
    group.bench_function("raw-rustcrypto 1 GiB", |b| {
        let mut buf = vec![0x5a; FRAME as usize];
        b.iter(|| {
            for i in 0..GIB / u64::from(FRAME) {
                let mut nonce = [0; 12];
                nonce[4..].copy_from_slice(&i.to_be_bytes());
                black_box(gcm.seal_in_place(&nonce, b"", &mut buf).expect("seal"));
            }
        });
    });

    // The ciphertext to decrypt is made once, into memory.
    let mut sealed = Vec::with_capacity(usize::try_from(GIB + (GIB >> 10)).expect("fits"));
    encrypt_stream_with(&materials, &context, FRAME, &cores, Pattern { left: GIB }, &mut sealed).expect("encrypt");
    // What decrypting 1 GiB held in memory costs at the least: raw aws-lc-rs
    // opening 64 KiB pieces (ciphertext and tag) from memory into one
    // cache-hot buffer.
    let piece = FRAME as usize + 16;
    let mut raw_sealed = Vec::with_capacity(usize::try_from(GIB / u64::from(FRAME)).expect("fits") * piece);
    for i in 0..GIB / u64::from(FRAME) {
        let mut frame = vec![0x5a; FRAME as usize];
        let tag = lc.seal_in_place_separate_tag(raw_nonce(i), Aad::empty(), &mut frame).expect("seal");
        raw_sealed.extend_from_slice(&frame);
        raw_sealed.extend_from_slice(tag.as_ref());
    }
    group.bench_function("raw-aws-lc-rs open 1 GiB from memory", |b| {
        let mut out = vec![0u8; FRAME as usize];
        b.iter(|| {
            for (i, sealed) in (0..).zip(raw_sealed.chunks(piece)) {
                let (ct, tag) = sealed.split_at(FRAME as usize);
                lc.open_separate_gather(raw_nonce(i), Aad::empty(), ct, tag, &mut out).expect("open");
            }
        });
    });
    // The same on every core, each thread opening its share: what the
    // machine's memory lets decryption from memory reach at most.
    group.bench_function("raw-aws-lc-rs open 1 GiB from memory, all cores", |b| {
        let pieces = raw_sealed.chunks(piece).count();
        let share = pieces.div_ceil(threads);
        b.iter(|| {
            std::thread::scope(|s| {
                for (t, part) in raw_sealed.chunks(share * piece).enumerate() {
                    let lc = &lc;
                    s.spawn(move || {
                        let mut out = vec![0u8; FRAME as usize];
                        for (i, sealed) in (t as u64 * share as u64..).zip(part.chunks(piece)) {
                            let (ct, tag) = sealed.split_at(FRAME as usize);
                            lc.open_separate_gather(raw_nonce(i), Aad::empty(), ct, tag, &mut out).expect("open");
                        }
                    });
                }
            });
        });
    });
    drop(raw_sealed);
    for (threads, options) in [("1 thread", StreamOptions::with_threads(1)), ("all cores", cores)] {
        group.bench_function(format!("envelope encrypt 1 GiB, {threads}"), |b| {
            b.iter(|| {
                let mut sink = Keep { kept: Vec::new(), total: 0 };
                encrypt_stream_with(&materials, &context, FRAME, &options, Pattern { left: GIB }, &mut sink)
                    .expect("encrypt");
                sink.total
            });
        });
        group.bench_function(format!("envelope decrypt 1 GiB, {threads}"), |b| {
            b.iter(|| {
                let decryptor = StreamDecryptor::new(&sealed[..], &ParseOptions::default()).expect("header");
                let header = decryptor.header().clone();
                let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).expect("unwrap");
                decryptor.decrypt_to_with(&key, &options, std::io::sink()).expect("decrypt")
            });
        });
    }
    group.finish();
}

fn legacy(c: &mut Criterion) {
    let key = DataKey::from_bytes([3; 32]);
    let mut group = c.benchmark_group(group_name("legacy"));
    for (text, name) in [("i want to back to home".to_owned(), "22 B"), ("x".repeat(1024), "1 KiB")] {
        let record = encrypt_legacy_record_for_fixtures(&key, b"0123456789abcdef", &text, InnerEncoding::Base64);
        group.throughput(Throughput::Elements(1));
        group.bench_function(BenchmarkId::new("decrypt", name), |b| {
            b.iter(|| decrypt_legacy_record(&key, black_box(&record), InnerEncoding::Base64).expect("decrypt"));
        });
    }
    group.finish();
}

criterion_group!(benches, records, streaming, legacy);
criterion_main!(benches);
