//! One workload at a time, for `valgrind --tool=callgrind` (instruction
//! counts are repeatable on a busy machine where wall-clock time is not):
//! the 16 MiB framed SDK decrypt of `benches/benches/esdk.rs` and its raw
//! aws-lc-rs references over the same bytes.
//!
//! ```text
//! esdk_profile setup FRAME      make the message only (the baseline to subtract)
//! esdk_profile esdk FRAME       make it, then parse and decrypt it once
//! esdk_profile raw-pieces FRAME raw AES-256-GCM over 16 MiB in FRAME-byte calls
//! esdk_profile raw-one          raw AES-256-GCM over 16 MiB in one call
//! ```

use std::hint::black_box;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use envelope_core::EncryptionContext;
use envelope_core::esdk::{Encryptor, Message, PlaintextDataKey, RawAesKeyring, Suite};

const SIZE: usize = 16 << 20;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let frame = |i: usize| args.get(i).and_then(|f| f.parse::<usize>().ok()).unwrap_or(4096);
    match args.first().map(String::as_str) {
        Some("setup") => drop(black_box(message(frame(1)))),
        Some("esdk") => {
            let (message, key) = message(frame(1));
            let parsed = Message::parse(&message).expect("parse");
            let plaintext = parsed.decrypt(&key).expect("decrypt");
            assert_eq!(plaintext.len(), SIZE);
        }
        Some("raw-pieces") => raw(frame(1)),
        Some("raw-one") => raw(SIZE),
        _ => {
            eprintln!("usage: esdk_profile setup|esdk|raw-pieces FRAME | raw-one");
            std::process::exit(2);
        }
    }
}

/// A 0x0478 message of 16 MiB in `frame`-byte frames, and its data key.
fn message(frame: usize) -> (Vec<u8>, PlaintextDataKey) {
    let suite = Suite::Aes256GcmHkdfSha512Commit;
    let context = EncryptionContext::from_pairs([("table", "orders")]).expect("context");
    let encryptor = Encryptor::new(suite, &context)
        .and_then(|e| e.with_frame_len(u32::try_from(frame).expect("frame")))
        .expect("encryptor");
    let key = PlaintextDataKey::generate(suite).expect("random");
    let keyring = RawAesKeyring::new("bench", "key", &[7; 32]).expect("keyring");
    let wrapped = vec![keyring.wrap(&key, encryptor.encryption_context()).expect("wrap")];
    let message = encryptor.encrypt(&key, &wrapped, &vec![0x5a; SIZE]).expect("encrypt");
    (message, key)
}

/// Seals 16 MiB in `piece`-byte calls, then opens them: the opening is what
/// the profile compares (the sealing is the same work as `setup`'s).
fn raw(piece: usize) {
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"));
    let mut data = vec![0x5a; SIZE];
    let tags: Vec<_> = data
        .chunks_mut(piece)
        .map(|c| key.seal_in_place_separate_tag(Nonce::assume_unique_for_key([0; 12]), Aad::empty(), c).expect("seal"))
        .collect();
    let mut out = vec![0; SIZE];
    for ((c, t), o) in data.chunks(piece).zip(&tags).zip(out.chunks_mut(piece)) {
        let nonce = Nonce::assume_unique_for_key([0; 12]);
        key.open_separate_gather(nonce, Aad::empty(), black_box(c), t.as_ref(), o).expect("open");
    }
    black_box(&out);
}
