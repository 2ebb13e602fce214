//! Envelope seal/open and framed streaming against raw AES-256-GCM of the same
//! backend (RustCrypto, through `envelope_core::Gcm`) and of aws-lc-rs,
//! measured in the same run so their ratios are meaningful on a noisy machine.

use std::hint::black_box;
use std::io::{Read, Write};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use envelope_core::legacy::{InnerEncoding, decrypt_legacy_record, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext, Envelope, Gcm, ParseOptions, StreamDecryptor, encrypt_stream, seal};
use rekey_benches::local_materials;

const SIZES: [(usize, &str); 4] = [(64, "64 B"), (1024, "1 KiB"), (64 * 1024, "64 KiB"), (16 << 20, "16 MiB")];

fn records(c: &mut Criterion) {
    let context = EncryptionContext::from_pairs([("table", "orders")]).expect("context");
    let (keyring, materials) = local_materials(&context);
    let gcm = Gcm::new(&[7; 32]);
    let lc = aws_lc_rs::aead::LessSafeKey::new(
        aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &[7; 32]).expect("key"),
    );
    let mut group = c.benchmark_group("seal");
    for (size, name) in SIZES {
        let plaintext = vec![0x5a; size];
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        group.bench_with_input(BenchmarkId::new("envelope", name), &plaintext, |b, p| {
            b.iter(|| seal(&materials, &context, black_box(p)).expect("seal"));
        });
        group.bench_with_input(BenchmarkId::new("raw-rustcrypto", name), &plaintext, |b, p| {
            let mut buf = p.clone();
            b.iter(|| gcm.seal_in_place(&[0; 12], b"", black_box(&mut buf)).expect("seal"));
        });
        group.bench_with_input(BenchmarkId::new("raw-aws-lc-rs", name), &plaintext, |b, p| {
            let mut buf = p.clone();
            b.iter(|| {
                let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key([0; 12]);
                lc.seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), black_box(&mut buf)).expect("seal")
            });
        });
    }
    group.finish();

    let mut group = c.benchmark_group("open");
    for (size, name) in SIZES {
        let sealed = seal(&materials, &context, &vec![0x5a; size]).expect("seal");
        group.throughput(Throughput::Bytes(size as u64));
        if size >= 1 << 20 {
            group.sample_size(20);
        }
        // Parse, unwrap the data key with the local keyring, check the commitment, decrypt.
        group.bench_with_input(BenchmarkId::new("envelope", name), &sealed, |b, s| {
            b.iter(|| {
                let envelope = Envelope::parse(black_box(s), &ParseOptions::default()).expect("parse");
                let header = envelope.header();
                let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).expect("unwrap");
                envelope.open(&key).expect("open")
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
    const GIB: u64 = 1 << 30;
    let context = EncryptionContext::new();
    let (keyring, materials) = local_materials(&context);
    let mut group = c.benchmark_group("framed");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(GIB));
    group.bench_function("encrypt 1 GiB", |b| {
        b.iter(|| {
            let mut sink = Keep { kept: Vec::new(), total: 0 };
            encrypt_stream(&materials, &context, 1 << 16, Pattern { left: GIB }, &mut sink).expect("encrypt");
            sink.total
        });
    });
    // The 1 GiB ciphertext is made once, frame by frame, into memory.
    let mut sealed = Vec::with_capacity(usize::try_from(GIB + (GIB >> 10)).expect("fits"));
    encrypt_stream(&materials, &context, 1 << 16, Pattern { left: GIB }, &mut sealed).expect("encrypt");
    group.bench_function("decrypt 1 GiB", |b| {
        b.iter(|| {
            let decryptor = StreamDecryptor::new(&sealed[..], &ParseOptions::default()).expect("header");
            let header = decryptor.header().clone();
            let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).expect("unwrap");
            decryptor.decrypt_to(&key, std::io::sink()).expect("decrypt")
        });
    });
    group.finish();
}

fn legacy(c: &mut Criterion) {
    let key = DataKey::from_bytes([3; 32]);
    let mut group = c.benchmark_group("legacy");
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
