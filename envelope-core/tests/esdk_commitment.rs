//! The attack key commitment stops, made for real against an AWS Encryption
//! SDK message ("invisible salamanders"): a sender builds one message with
//! two wrapped keys, for two recipients, that decrypts under both data keys
//! to two different plaintexts. AES-GCM's tag is a polynomial in its GHASH
//! key, so with one free 16-byte block in the associated data (here: the
//! provider info of a third, dummy wrapped key) the header tag can be made
//! valid under both derived keys, and with one free ciphertext block the
//! frame tag too.
//!
//! A reader without the commitment check (written here as the SDK's
//! decryption steps minus that check) accepts the message for both
//! recipients; `envelope_core::esdk` refuses it for the one whose key does
//! not match the commitment.

use aes::Aes256Enc;
use aes::cipher::{BlockCipherEncrypt, KeyInit};
use envelope_core::Error;
use envelope_core::esdk::{Message, PlaintextDataKey, RawAesKeyring, WrappedKey};
use envelope_core::internals::Gcm;
use hkdf::Hkdf;
use sha2::Sha512;

const SUITE: [u8; 2] = [0x04, 0x78];

/// Multiplication in GCM's field (NIST SP 800-38D, 6.3): blocks as
/// big-endian integers, the bit order reflected.
fn gf_mul(x: u128, y: u128) -> u128 {
    let r = 0xe1u128 << 120;
    let (mut z, mut v) = (0u128, y);
    for i in 0..128 {
        if (x >> (127 - i)) & 1 == 1 {
            z ^= v;
        }
        v = if v & 1 == 1 { (v >> 1) ^ r } else { v >> 1 };
    }
    z
}

fn gf_pow(x: u128, mut e: u128) -> u128 {
    let (mut result, mut base) = (1u128 << 127, x); // 1 << 127 is the field's one
    while e > 0 {
        if e & 1 == 1 {
            result = gf_mul(result, base);
        }
        base = gf_mul(base, base);
        e >>= 1;
    }
    result
}

fn gf_inv(x: u128) -> u128 {
    gf_pow(x, u128::MAX - 1)
}

fn block(bytes: &[u8]) -> u128 {
    let mut b = [0u8; 16];
    b[..bytes.len()].copy_from_slice(bytes);
    u128::from_be_bytes(b)
}

/// The 16-byte blocks GHASH sees: AAD and ciphertext, each zero-padded,
/// then the lengths block.
fn ghash_blocks(aad: &[u8], ciphertext: &[u8]) -> Vec<u128> {
    let mut blocks: Vec<u128> = aad.chunks(16).map(block).collect();
    blocks.extend(ciphertext.chunks(16).map(block));
    blocks.push(((aad.len() as u128 * 8) << 64) | (ciphertext.len() as u128 * 8));
    blocks
}

fn ghash(h: u128, blocks: &[u128]) -> u128 {
    blocks.iter().fold(0, |y, &b| gf_mul(y ^ b, h))
}

fn aes(key: &[u8; 32], input: [u8; 16]) -> [u8; 16] {
    let mut b = input.into();
    Aes256Enc::new(&(*key).into()).encrypt_block(&mut b);
    b.into()
}

/// A derived key's GHASH key H and E_K(J0) for a 12-byte IV.
fn gcm_parts(key: &[u8; 32], iv: &[u8; 12]) -> (u128, u128) {
    let h = u128::from_be_bytes(aes(key, [0; 16]));
    let mut j0 = [0u8; 16];
    j0[..12].copy_from_slice(iv);
    j0[15] = 1;
    (h, u128::from_be_bytes(aes(key, j0)))
}

/// Sets the free block (index `free` among the GHASH blocks, which must lie
/// in `data`'s `free_at..free_at + 16`) so that the tag over (aad,
/// ciphertext) is the same under both keys. Returns that tag.
fn collide(
    keys: [&[u8; 32]; 2],
    iv: &[u8; 12],
    aad: &mut Vec<u8>,
    ciphertext: &mut Vec<u8>,
    in_aad: bool,
    free_at: usize,
) -> [u8; 16] {
    let (h1, e1) = gcm_parts(keys[0], iv);
    let (h2, e2) = gcm_parts(keys[1], iv);
    let target = if in_aad { &mut *aad } else { &mut *ciphertext };
    target[free_at..free_at + 16].fill(0);
    let blocks = ghash_blocks(aad, ciphertext);
    let index = if in_aad { free_at / 16 } else { aad.len().div_ceil(16) + free_at / 16 };
    let exponent = (blocks.len() - index) as u128;
    let rhs = e1 ^ e2 ^ ghash(h1, &blocks) ^ ghash(h2, &blocks);
    let x = gf_mul(rhs, gf_inv(gf_pow(h1, exponent) ^ gf_pow(h2, exponent)));
    let target = if in_aad { &mut *aad } else { &mut *ciphertext };
    target[free_at..free_at + 16].copy_from_slice(&x.to_be_bytes());
    let tag = e1 ^ ghash(h1, &ghash_blocks(aad, ciphertext));
    assert_eq!(tag, e2 ^ ghash(h2, &ghash_blocks(aad, ciphertext)), "the collision holds");
    tag.to_be_bytes()
}

fn derive(data_key: &[u8; 32], message_id: &[u8; 32]) -> ([u8; 32], [u8; 32]) {
    let hkdf = Hkdf::<Sha512>::new(Some(message_id), data_key);
    let mut info = SUITE.to_vec();
    info.extend_from_slice(b"DERIVEKEY");
    let (mut key, mut commitment) = ([0u8; 32], [0u8; 32]);
    hkdf.expand(&info, &mut key).expect("length");
    hkdf.expand(b"COMMITKEY", &mut commitment).expect("length");
    (key, commitment)
}

fn put16(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).expect("short").to_be_bytes());
    out.extend_from_slice(bytes);
}

fn frame_aad(message_id: &[u8; 32], len: u64) -> Vec<u8> {
    let mut aad = message_id.to_vec();
    aad.extend_from_slice(b"AWSKMSEncryptionClient Final Frame");
    aad.extend_from_slice(&1u32.to_be_bytes());
    aad.extend_from_slice(&len.to_be_bytes());
    aad
}

/// The sender's message: Alice's and Bob's keyrings each unwrap their own
/// data key; the commitment is Alice's.
fn salamander() -> (Vec<u8>, RawAesKeyring, RawAesKeyring) {
    let (alice, bob) = (
        RawAesKeyring::new("corp", "alice", &[0xa1; 32]).expect("keyring"),
        RawAesKeyring::new("corp", "bob", &[0xb0; 32]).expect("keyring"),
    );
    let (k1, k2) = ([0x11u8; 32], [0x22u8; 32]);
    let message_id = [0x5au8; 32];
    let (d1, commitment) = derive(&k1, &message_id);
    let (d2, _) = derive(&k2, &message_id);
    let empty = envelope_core::EncryptionContext::new();
    let wrapped: Vec<WrappedKey> = vec![
        alice.wrap(&PlaintextDataKey::from_slice(&k1).expect("key"), &empty).expect("wrap"),
        bob.wrap(&PlaintextDataKey::from_slice(&k2).expect("key"), &empty).expect("wrap"),
        WrappedKey { provider_id: "pad".into(), provider_info: vec![0; 40], ciphertext: vec![0; 1] },
    ];
    let mut header = vec![2, SUITE[0], SUITE[1]];
    header.extend_from_slice(&message_id);
    header.extend_from_slice(&[0, 0]); // empty context
    header.extend_from_slice(&u16::try_from(wrapped.len()).expect("three").to_be_bytes());
    let mut pad_info_at = 0;
    for w in &wrapped {
        put16(&mut header, w.provider_id.as_bytes());
        if w.provider_id == "pad" {
            pad_info_at = header.len() + 2;
        }
        put16(&mut header, &w.provider_info);
        put16(&mut header, &w.ciphertext);
    }
    header.push(2);
    header.extend_from_slice(&4096u32.to_be_bytes());
    header.extend_from_slice(&commitment);
    // A 16-byte aligned block inside the dummy key's provider info.
    let free = pad_info_at.div_ceil(16) * 16;
    assert!(free + 16 <= pad_info_at + 40);
    let tag = collide([&d1, &d2], &[0; 12], &mut header, &mut Vec::new(), true, free);
    header.extend_from_slice(&tag);

    // One final frame: the first block is Alice's plaintext under d1, the
    // second block is free; whatever Bob gets is the same bytes under d2.
    let iv = {
        let mut iv = [0u8; 12];
        iv[8..].copy_from_slice(&1u32.to_be_bytes());
        iv
    };
    // The second block is overwritten by the collision: its plaintext is noise.
    let plaintext = *b"pay alice 100EUR\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";
    let mut ciphertext = vec![0u8; 32];
    Gcm::new(&d1).seal_to(&iv, &frame_aad(&message_id, 32), &plaintext, &mut ciphertext).expect("seal");
    let tag = collide([&d1, &d2], &iv, &mut frame_aad(&message_id, 32), &mut ciphertext, false, 16);
    let mut message = header;
    message.extend_from_slice(&u32::MAX.to_be_bytes());
    message.extend_from_slice(&1u32.to_be_bytes());
    message.extend_from_slice(&iv);
    message.extend_from_slice(&32u32.to_be_bytes());
    message.extend_from_slice(&ciphertext);
    message.extend_from_slice(&tag);
    (message, alice, bob)
}

/// The SDK's decryption without the commitment check: derive, check the
/// header tag, decrypt the one frame.
fn naive_decrypt(message: &[u8], data_key: &PlaintextDataKey) -> Result<Vec<u8>, Error> {
    let parsed = Message::parse(message)?;
    let header_len = parsed.header().len();
    let mut key = [0u8; 32];
    key.copy_from_slice(data_key.expose_secret());
    let message_id: [u8; 32] = parsed.message_id().try_into().expect("v2 id");
    let (derived, _commitment_not_checked) = derive(&key, &message_id);
    let gcm = Gcm::new(&derived);
    let tag: [u8; 16] = message[header_len - 16..header_len].try_into().expect("16");
    gcm.open_to(&[0; 12], &message[..header_len - 16], &[], &tag, &mut [])?;
    let frame = &message[header_len..];
    let iv: [u8; 12] = frame[8..20].try_into().expect("12");
    let len = u32::from_be_bytes(frame[20..24].try_into().expect("4")) as usize;
    let (ciphertext, tag) = (&frame[24..24 + len], &frame[24 + len..24 + len + 16]);
    let mut out = vec![0; len];
    gcm.open_to(&iv, &frame_aad(&message_id, len as u64), ciphertext, tag.try_into().expect("16"), &mut out)?;
    Ok(out)
}

#[test]
fn the_ghash_arithmetic_matches_aes_gcm() {
    let key = [7u8; 32];
    let iv = [9u8; 12];
    let (aad, plaintext) = (b"associated data, 27 bytes..".to_vec(), b"some plaintext of 33 bytes, say!!".to_vec());
    let mut ciphertext = vec![0; plaintext.len()];
    let tag = Gcm::new(&key).seal_to(&iv, &aad, &plaintext, &mut ciphertext).expect("seal");
    let (h, e) = gcm_parts(&key, &iv);
    assert_eq!((e ^ ghash(h, &ghash_blocks(&aad, &ciphertext))).to_be_bytes(), tag);
    assert_eq!(gf_mul(h, gf_inv(h)), 1 << 127);
}

#[test]
fn a_reader_without_the_commitment_check_gives_two_recipients_two_plaintexts() {
    let (message, alice, bob) = salamander();
    let parsed = Message::parse(&message).expect("well formed");
    let alice_key = alice.unwrap(&parsed.header()).expect("alice's wrapped key");
    let bob_key = bob.unwrap(&parsed.header()).expect("bob's wrapped key");
    // The attack works on the naive reader: both accept, and differ.
    let for_alice = naive_decrypt(&message, &alice_key).expect("naive reader, alice");
    let for_bob = naive_decrypt(&message, &bob_key).expect("naive reader, bob");
    assert_eq!(&for_alice[..16], b"pay alice 100EUR");
    assert_ne!(for_alice[..16], for_bob[..16]);
    // rekey's reader: Alice's key matches the commitment; Bob's is refused
    // before any plaintext exists, in memory and streamed.
    assert_eq!(parsed.decrypt(&alice_key).expect("alice").as_bytes(), for_alice.as_slice());
    assert!(matches!(parsed.decrypt(&bob_key), Err(Error::Authentication)));
    let mut d = envelope_core::esdk::StreamDecryptor::new(message.as_slice(), &Default::default()).expect("header");
    let mut out = Vec::new();
    assert!(matches!(d.decrypt_to(&bob_key, &mut out), Err(Error::Authentication)));
    assert!(out.is_empty());
}
