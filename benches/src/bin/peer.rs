//! The rekey rows of the peers table (`scripts/peers/peers.py` runs this):
//! the envelope on the backend this binary was built with, and raw aws-lc-rs
//! AES-256-GCM, measured in the same process. Prints one JSON object.
//!
//! ```text
//! peer records                 records/s at 64 B and 1 KiB, MB/s at 16 MiB, bytes of a 64 B record
//! peer encrypt-file IN OUT     framed encryption of a file, as `rekey encrypt` does it
//! peer raw-file IN OUT         raw aws-lc-rs over the file in 64 KiB pieces: the ceiling
//! ```

use std::fs::File;
use std::hint::black_box;
use std::io::{Read, Write};
use std::time::Instant;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use envelope_core::EncryptionContext;
use envelope_core::hazmat::{AeadBackend, DEFAULT_FRAME_LEN, encrypt_stream, seal};
use rekey_benches::local_materials;

const RUNS: usize = 5;
const FRAME: usize = 1 << 16;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["records"] => records(),
        ["encrypt-file", input, output] => encrypt_file(input, output),
        ["raw-file", input, output] => raw_file(input, output),
        _ => Err("usage: peer records | peer encrypt-file IN OUT | peer raw-file IN OUT".into()),
    };
    match result {
        Ok(json) => println!("{json}"),
        Err(e) => {
            eprintln!("peer: {e}");
            std::process::exit(1);
        }
    }
}

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The median over [`RUNS`] runs of `iterations` calls, in calls per second.
fn median_rate(iterations: usize, mut f: impl FnMut()) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iterations {
                f();
            }
            iterations as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(f64::total_cmp);
    rates[RUNS / 2]
}

fn backend() -> &'static str {
    match AeadBackend::DEFAULT {
        AeadBackend::AwsLc => "aws-lc-rs",
        _ => "rustcrypto",
    }
}

fn records() -> Result<String> {
    let context = EncryptionContext::new();
    let (_, materials) = local_materials(&context);
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).map_err(|_| "aws-lc key")?);
    let raw = |buf: &mut Vec<u8>| {
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        let tag = lc.seal_in_place_separate_tag(nonce, Aad::empty(), buf).expect("raw seal");
        black_box(tag.as_ref()[0]);
    };
    let (small, kib, big) = (vec![0x5a; 64], vec![0x5a; 1024], vec![0x5a; 16 << 20]);
    let envelope_seal = |p: &[u8]| {
        black_box(seal(&materials, &context, p).expect("seal"));
    };
    let seal_64 = median_rate(200_000, || envelope_seal(&small));
    let seal_1k = median_rate(100_000, || envelope_seal(&kib));
    let seal_16m = median_rate(20, || envelope_seal(&big)) * 16.0 * 1048576.0 / 1e6;
    let (mut raw_small, mut raw_kib, mut raw_big) = (small.clone(), kib.clone(), big.clone());
    let raw_64 = median_rate(1_000_000, || raw(&mut raw_small));
    let raw_1k = median_rate(500_000, || raw(&mut raw_kib));
    let raw_16m = median_rate(20, || raw(&mut raw_big)) * 16.0 * 1048576.0 / 1e6;
    let record_64 = seal(&materials, &context, &small)?.len();
    Ok(format!(
        concat!(
            "{{\"backend\": \"{}\", \"seal_64_per_s\": {:.0}, \"seal_1k_per_s\": {:.0}, \"seal_16m_mbps\": {:.0}, ",
            "\"record_64_bytes\": {}, \"raw_64_per_s\": {:.0}, \"raw_1k_per_s\": {:.0}, \"raw_16m_mbps\": {:.0}}}"
        ),
        backend(),
        seal_64,
        seal_1k,
        seal_16m,
        record_64,
        raw_64,
        raw_1k,
        raw_16m
    ))
}

fn encrypt_file(input: &str, output: &str) -> Result<String> {
    let context = EncryptionContext::new();
    let (_, materials) = local_materials(&context);
    let start = Instant::now();
    let mut out = File::create(output)?;
    let bytes = encrypt_stream(&materials, &context, DEFAULT_FRAME_LEN, File::open(input)?, &mut out)?;
    out.sync_all()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(format!("{{\"backend\": \"{}\", \"bytes\": {bytes}, \"seconds\": {seconds:.4}}}", backend()))
}

fn raw_file(input: &str, output: &str) -> Result<String> {
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).map_err(|_| "aws-lc key")?);
    let start = Instant::now();
    let (mut reader, mut writer) = (File::open(input)?, File::create(output)?);
    let mut buf = vec![0u8; FRAME];
    let (mut bytes, mut counter) = (0u64, 0u64);
    loop {
        let n = read_full(&mut reader, &mut buf)?;
        if n == 0 {
            break;
        }
        let mut nonce = [0; 12];
        nonce[4..].copy_from_slice(&counter.to_be_bytes());
        let tag = lc
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut buf[..n])
            .map_err(|_| "raw seal")?;
        writer.write_all(&buf[..n])?;
        writer.write_all(tag.as_ref())?;
        bytes += n as u64;
        counter += 1;
    }
    writer.sync_all()?;
    let seconds = start.elapsed().as_secs_f64();
    Ok(format!("{{\"backend\": \"raw aws-lc-rs\", \"bytes\": {bytes}, \"seconds\": {seconds:.4}}}"))
}

fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
