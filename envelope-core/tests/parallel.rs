//! Framed streams on several threads: the bytes written, the plaintext
//! released and the error on damaged input are exactly those of one thread.

mod common;

use common::{context, keyring, materials};
use envelope_core::hazmat::{Materials, ParseOptions, StreamDecryptor, StreamOptions};
use envelope_core::internals::encrypt_stream_with_options_and_message_id;
use envelope_core::{DataKey, EncryptionContext};

/// Small frames, so that a batch (at most 1,024 frames) is 64 KiB and a few
/// batches stay quick in a debug build.
const FRAME: u32 = 64;
const WORD: usize = 4;
const TAG: usize = 16;

fn seal(materials: &Materials, context: &EncryptionContext, plaintext: &[u8], threads: usize) -> Vec<u8> {
    let mut out = Vec::new();
    let options = StreamOptions::with_threads(threads);
    encrypt_stream_with_options_and_message_id(materials, context, FRAME, &options, plaintext, &mut out, [7; 32])
        .expect("encrypt");
    out
}

/// The outcome of decrypting `input`: what was written, and the result.
fn open(key: &DataKey, input: &[u8], threads: usize) -> (Vec<u8>, Result<u64, String>) {
    let mut written = Vec::new();
    let result = StreamDecryptor::new(input, &ParseOptions::default())
        .and_then(|d| d.decrypt_to_with(key, &StreamOptions::with_threads(threads), &mut written))
        .map_err(|e| format!("{e} / {e:?}"));
    (written, result)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| u8::try_from(i % 251).expect("small")).collect()
}

#[test]
fn encryption_is_byte_identical_on_any_number_of_threads() {
    let keyring = keyring("k");
    let context = context(&[("a", "b")]);
    let materials = materials(&keyring, &context);
    let batch = 1024 * FRAME as usize; // the pipeline's batch of plaintext
    for len in [0, 1, 64, batch - 1, batch, batch + 1, 2 * batch + 64, 3 * batch + 77] {
        let plaintext = pattern(len);
        let one = seal(&materials, &context, &plaintext, 1);
        for threads in [2, 3, 5] {
            assert!(one == seal(&materials, &context, &plaintext, threads), "{len} bytes on {threads} threads");
        }
        let (written, result) = open(&materials.data_key, &one, 3);
        assert_eq!(result, Ok(len as u64));
        assert!(written == plaintext, "{len} bytes round trip");
    }
}

#[test]
fn decryption_fails_exactly_as_one_thread_does() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let plaintext = pattern(3 * 1024 * FRAME as usize + 100);
    let sealed = seal(&materials, &context, &plaintext, 1);
    let slot = WORD + FRAME as usize + TAG;
    let frames = plaintext.len().div_ceil(FRAME as usize);
    let body = sealed.len() - (frames - 1) * slot - (WORD + plaintext.len() % FRAME as usize + TAG);
    let frame_at = |k: usize| body + k * slot;

    let mut damaged: Vec<(String, Vec<u8>)> = Vec::new();
    for k in [0, 1023, 1024, 2000, frames - 1] {
        let mut d = sealed.clone();
        d[frame_at(k) + WORD + 10] ^= 1;
        damaged.push((format!("ciphertext of frame {k} flipped"), d));
        let mut d = sealed.clone();
        d[frame_at(k)] ^= 0x80;
        damaged.push((format!("final flag of frame {k} flipped"), d));
    }
    for cut in [frame_at(1500), frame_at(1500) + 2, frame_at(2100) + 100, sealed.len() - 1] {
        damaged.push((format!("truncated at {cut}"), sealed[..cut].to_vec()));
    }
    let mut d = sealed.clone();
    d.push(0);
    damaged.push(("one byte appended".into(), d));
    let mut d = sealed.clone();
    d.extend_from_slice(&sealed[frame_at(3)..frame_at(4)]);
    damaged.push(("a frame appended after the final one".into(), d));
    let mut d = sealed.clone();
    d.copy_within(frame_at(1500)..frame_at(1501), frame_at(1501));
    damaged.push(("frame 1500 duplicated over 1501".into(), d));
    let mut d = sealed.clone();
    d[frame_at(2500) + 2] = 0x20; // a length past the frame length
    damaged.push(("frame 2500's length broken".into(), d));

    for (what, input) in &damaged {
        let (one_written, one_result) = open(&materials.data_key, input, 1);
        assert!(one_result.is_err(), "{what}: must fail");
        assert!(plaintext.starts_with(&one_written), "{what}: only verified plaintext is written");
        for threads in [2, 4] {
            let (written, result) = open(&materials.data_key, input, threads);
            assert_eq!(result, one_result, "{what} on {threads} threads");
            assert!(written == one_written, "{what} on {threads} threads: same plaintext released");
        }
    }
}

#[test]
fn in_memory_open_of_a_large_framed_envelope() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let plaintext = pattern(300 << 10);
    let sealed = seal(&materials, &context, &plaintext, 2);
    assert!(common::memory_open(&keyring, &sealed).expect("open") == plaintext);
    let mut bad = sealed.clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    assert!(matches!(common::memory_open(&keyring, &bad), Err(envelope_core::Error::Authentication)));
}
