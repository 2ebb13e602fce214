//! Every change to an envelope is caught: flipped bits, truncation, frame
//! reordering, duplication, extension, and a wrapped key of another data key.

mod common;

use common::*;
use envelope_core::hazmat::{Envelope, Materials, ParseOptions, seal};
use envelope_core::{Error, FormatError, KeyringErrorKind};

/// Byte ranges of the EDK list in an envelope with one EDK.
fn edk_span(sealed: &[u8]) -> std::ops::Range<usize> {
    let envelope = Envelope::parse(sealed, &ParseOptions::default()).expect("parse");
    let mut core = Vec::new();
    envelope_core::internals::encode_header_core(envelope.header(), &mut core);
    let mut whole = Vec::new();
    envelope.header().encode(&mut whole).expect("encode");
    core.len()..whole.len()
}

fn assert_rejected(keyring: &envelope_core::LocalKeyring, bytes: &[u8], what: &str) {
    assert!(memory_open(keyring, bytes).is_err(), "in-memory open accepted {what}");
    assert!(stream_open(keyring, bytes).is_err(), "streaming open accepted {what}");
}

#[test]
fn every_bit_flip_of_a_single_shot_envelope_fails() {
    let keyring = keyring("k");
    let ctx = context(&[("tenant", "acme")]);
    let sealed = seal(&materials(&keyring, &ctx), &ctx, b"attack at dawn").expect("seal");
    let edks = edk_span(&sealed);
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_rejected(&keyring, &bad, &format!("bit {bit}"));
        // Bits inside the wrapped key fail at unwrap, before the body.
        if edks.contains(&(bit / 8)) {
            let err = memory_open(&keyring, &bad).expect_err("rejected");
            assert!(
                matches!(&err, Error::Format(_) | Error::Keyring(_)),
                "bit {bit} in the key list should fail at parse or unwrap, got {err:?}"
            );
        }
    }
}

#[test]
fn every_bit_flip_of_a_framed_envelope_fails() {
    let keyring = keyring("k");
    let ctx = context(&[("purpose", "backup")]);
    let sealed = framed(&materials(&keyring, &ctx), &ctx, 7, b"twenty bytes of text");
    for bit in 0..sealed.len() * 8 {
        let mut bad = sealed.clone();
        bad[bit / 8] ^= 1 << (bit % 8);
        assert_rejected(&keyring, &bad, &format!("bit {bit}"));
    }
}

#[test]
fn truncation_at_every_offset_fails() {
    let keyring = keyring("k");
    let ctx = context(&[("a", "b")]);
    let materials = materials(&keyring, &ctx);
    for sealed in [seal(&materials, &ctx, b"some record").expect("seal"), framed(&materials, &ctx, 4, b"some record")] {
        for len in 0..sealed.len() {
            assert_rejected(&keyring, &sealed[..len], &format!("truncation to {len}"));
        }
    }
}

#[test]
fn appended_bytes_fail() {
    let keyring = keyring("k");
    let ctx = context(&[]);
    let materials = materials(&keyring, &ctx);
    let mut framed_extended = framed(&materials, &ctx, 4, b"abcdefgh");
    framed_extended.push(0);
    let err = stream_open(&keyring, &framed_extended).expect_err("extension");
    assert!(matches!(err, Error::Format(FormatError::TrailingBytes)), "{err:?}");
    let mut single_extended = seal(&materials, &ctx, b"abc").expect("seal");
    single_extended.push(0);
    assert!(matches!(memory_open(&keyring, &single_extended), Err(Error::Authentication)));
}

/// Splits a framed envelope into its header and its frames (frame length 4,
/// so every full frame is 4 + 4 + 16 bytes).
fn split_frames(sealed: &[u8]) -> (Vec<u8>, Vec<Vec<u8>>) {
    let envelope = Envelope::parse(sealed, &ParseOptions::default()).expect("parse");
    let header_len = sealed.len() - envelope.body_len();
    let mut frames = Vec::new();
    let mut rest = &sealed[header_len..];
    while !rest.is_empty() {
        let len = (u32::from_be_bytes(rest[..4].try_into().expect("4 bytes")) & 0x7fff_ffff) as usize;
        let (frame, tail) = rest.split_at(4 + len + 16);
        frames.push(frame.to_vec());
        rest = tail;
    }
    (sealed[..header_len].to_vec(), frames)
}

#[test]
fn reordered_duplicated_and_dropped_frames_fail() {
    let keyring = keyring("k");
    let ctx = context(&[]);
    let sealed = framed(&materials(&keyring, &ctx), &ctx, 4, b"aaaabbbbccccdd");
    let (header, frames) = split_frames(&sealed);
    assert_eq!(frames.len(), 4);
    let join = |order: &[usize]| {
        let mut out = header.clone();
        for &i in order {
            out.extend_from_slice(&frames[i]);
        }
        out
    };
    assert_eq!(stream_open(&keyring, &join(&[0, 1, 2, 3])).expect("intact"), b"aaaabbbbccccdd");
    for order in [&[1, 0, 2, 3][..], &[0, 2, 1, 3], &[0, 0, 1, 2, 3], &[0, 1, 3], &[0, 1, 2], &[0, 1, 2, 3, 3]] {
        assert_rejected(&keyring, &join(order), &format!("frame order {order:?}"));
    }
}

#[test]
fn frames_from_another_message_fail() {
    let keyring = keyring("k");
    let ctx = context(&[]);
    let materials = materials(&keyring, &ctx);
    let (header_a, frames_a) = split_frames(&framed(&materials, &ctx, 4, b"aaaabbbbcc"));
    let (_, frames_b) = split_frames(&framed(&materials, &ctx, 4, b"ccccddddee"));
    let mut mixed = header_a;
    mixed.extend_from_slice(&frames_a[0]);
    mixed.extend_from_slice(&frames_b[1]);
    mixed.extend_from_slice(&frames_a[2]);
    assert_rejected(&keyring, &mixed, "a frame of another message under the same data key");
}

#[test]
fn a_wrapped_key_of_another_data_key_fails_the_commitment() {
    let keyring = keyring("k");
    let ctx = context(&[("tenant", "acme")]);
    let sealed = seal(&materials(&keyring, &ctx), &ctx, b"secret").expect("seal");
    // Another message's EDK: same keyring, same context, different data key.
    let Materials { encrypted_data_keys: other_edks, .. } = materials(&keyring, &ctx);
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let swapped = envelope.with_encrypted_data_keys(&other_edks).expect("encode");
    // The EDK unwraps fine (it is genuine), but the commitment rejects its key.
    let swapped_env = Envelope::parse(&swapped, &ParseOptions::default()).expect("parse");
    let key = keyring.unwrap_sync(&swapped_env.header().encrypted_data_keys, &ctx).expect("genuine EDK unwraps");
    assert!(matches!(swapped_env.verify_data_key(&key), Err(Error::Authentication)));
    assert!(matches!(swapped_env.open(&key), Err(Error::Authentication)));
    assert!(matches!(stream_open(&keyring, &swapped), Err(Error::Authentication)));
}

#[test]
fn wrong_key_and_wrong_context_fail() {
    let keyring = keyring("k");
    let ctx = context(&[("tenant", "acme")]);
    let sealed = seal(&materials(&keyring, &ctx), &ctx, b"secret").expect("seal");
    let err = memory_open(&self::keyring("other"), &sealed).expect_err("another key");
    match err {
        Error::Keyring(e) => {
            assert_eq!(e.kind(), KeyringErrorKind::NoMatchingKey);
            assert!(e.to_string().contains("rekey-local:k/v1"), "names the key it was made for: {e}");
        }
        other => panic!("expected a keyring error, got {other:?}"),
    }
    // The same key under another context: the wrapped key does not unwrap.
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let err =
        keyring.unwrap_sync(&envelope.header().encrypted_data_keys, &context(&[("tenant", "evil")])).expect_err("ctx");
    assert_eq!(err.kind(), KeyringErrorKind::InvalidCiphertext);
}

#[test]
fn authentication_failures_are_indistinguishable() {
    let keyring = keyring("k");
    let ctx = context(&[]);
    let sealed = seal(&materials(&keyring, &ctx), &ctx, b"secret").expect("seal");
    let mut tag_flipped = sealed.clone();
    *tag_flipped.last_mut().expect("non-empty") ^= 1;
    let mut body_flipped = sealed.clone();
    let at = sealed.len() - 17;
    body_flipped[at] ^= 1;
    let messages: Vec<String> = [tag_flipped, body_flipped]
        .iter()
        .map(|b| memory_open(&keyring, b).expect_err("tampered").to_string())
        .collect();
    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    let commitment_error =
        envelope.open(&envelope_core::DataKey::from_bytes([9; 32])).expect_err("wrong key").to_string();
    assert_eq!(messages[0], messages[1]);
    assert_eq!(messages[0], commitment_error);
}

#[test]
fn garbage_and_empty_inputs_are_format_errors() {
    let keyring = keyring("k");
    for input in [&b""[..], b"R", b"RK", b"hello world", b"RKY\x02", b"RKY\x01\x00\x09", b"RKY\x01\x00\x01\x07"] {
        let err = memory_open(&keyring, input).expect_err("garbage");
        assert!(matches!(err, Error::Format(_)), "{input:?}: {err:?}");
        assert!(stream_open(&keyring, input).is_err());
    }
}
