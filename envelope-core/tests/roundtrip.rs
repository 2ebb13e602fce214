//! Round trips over arbitrary contexts, key lists, sizes and frame lengths.

mod common;

use common::*;
use envelope_core::hazmat::{
    BodyForm, Envelope, Header, Materials, ParseOptions, Suite, decode_text, encode_text, seal,
};
use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Error, FormatError};
use proptest::prelude::*;

fn arb_context() -> impl Strategy<Value = EncryptionContext> {
    prop::collection::btree_map("[a-z0-9:_-]{1,12}|\\PC{1,8}", "\\PC{0,16}", 0..6)
        .prop_map(|pairs| EncryptionContext::from_pairs(pairs).expect("within limits"))
}

fn arb_edk() -> impl Strategy<Value = EncryptedDataKey> {
    ("[a-z-]{1,16}", "\\PC{0,40}", prop::collection::vec(any::<u8>(), 0..200))
        .prop_map(|(p, k, w)| EncryptedDataKey::new(p, k, w).expect("within limits"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn single_shot_round_trip(context in arb_context(), plaintext in prop::collection::vec(any::<u8>(), 0..3000)) {
        let keyring = keyring("k");
        let materials = materials(&keyring, &context);
        let sealed = seal(&materials, &context, &plaintext).expect("seal");
        prop_assert_eq!(memory_open(&keyring, &sealed).expect("open"), plaintext.clone());
        prop_assert_eq!(stream_open(&keyring, &sealed).expect("open"), plaintext.clone());
        let text = encode_text(&sealed);
        prop_assert_eq!(memory_open(&keyring, &decode_text(&text).expect("base64")).expect("open"), plaintext);
    }

    #[test]
    fn framed_round_trip(
        context in arb_context(),
        plaintext in prop::collection::vec(any::<u8>(), 0..2000),
        frame_len in 1u32..300,
    ) {
        let keyring = keyring("k");
        let materials = materials(&keyring, &context);
        let sealed = framed(&materials, &context, frame_len, &plaintext);
        prop_assert_eq!(stream_open(&keyring, &sealed).expect("stream"), plaintext.clone());
        prop_assert_eq!(memory_open(&keyring, &sealed).expect("memory"), plaintext);
    }

    #[test]
    fn any_number_of_edks_up_to_the_limit(edks in prop::collection::vec(arb_edk(), 0..16), position in 0usize..16) {
        let keyring = keyring("k");
        let context = context(&[("purpose", "test")]);
        let Materials { data_key, encrypted_data_keys } = materials(&keyring, &context);
        let mut all = edks;
        all.insert(position.min(all.len()), encrypted_data_keys[0].clone());
        let sealed = seal(&Materials { data_key, encrypted_data_keys: all.clone() }, &context, b"hello").expect("seal");
        let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
        prop_assert_eq!(&envelope.header().encrypted_data_keys, &all);
        prop_assert_eq!(memory_open(&keyring, &sealed).expect("open"), b"hello".to_vec());
    }

    #[test]
    fn header_parse_of_encode_is_identity(
        context in arb_context(),
        edks in prop::collection::vec(arb_edk(), 1..8),
        message_id in any::<[u8; 32]>(),
        commitment in any::<[u8; 32]>(),
        framed in prop::option::of(1u32..=(1 << 24)),
    ) {
        let body_form = match framed { Some(n) => BodyForm::framed(n).expect("in range"), None => BodyForm::SingleShot };
        let header = Header {
            suite: Suite::Aes256GcmHkdfSha256Committing,
            body_form,
            message_id,
            context,
            commitment,
            encrypted_data_keys: edks,
        };
        let mut bytes = Vec::new();
        header.encode(&mut bytes).expect("encode");
        let (parsed, core_len, len) = Header::parse_prefix(&bytes, &ParseOptions::default()).expect("parse");
        prop_assert_eq!(len, bytes.len());
        let mut core = Vec::new();
        envelope_core::internals::encode_header_core(&header, &mut core);
        prop_assert_eq!(core_len, core.len());
        prop_assert_eq!(parsed, header);
    }
}

#[test]
fn large_framed_message_spans_many_frames() {
    let keyring = keyring("k");
    let context = context(&[]);
    let materials = materials(&keyring, &context);
    let plaintext: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    for frame_len in [4096, 65536, 1_000_000, 1 << 20] {
        let sealed = framed(&materials, &context, frame_len, &plaintext);
        assert_eq!(stream_open(&keyring, &sealed).expect("stream"), plaintext, "frame length {frame_len}");
    }
}

#[test]
fn too_many_edks_is_a_clear_error() {
    let keyring = keyring("k");
    let context = context(&[]);
    let Materials { data_key, mut encrypted_data_keys } = materials(&keyring, &context);
    let extra = encrypted_data_keys[0].clone();
    encrypted_data_keys.extend(std::iter::repeat_n(extra, 20));
    let sealed = seal(&Materials { data_key, encrypted_data_keys }, &context, b"x").expect("seal");
    let err = Envelope::parse(&sealed, &ParseOptions::default()).expect_err("over the default limit");
    assert_eq!(err, FormatError::TooManyEncryptedDataKeys { count: 21, max: 16 });
    assert!(err.to_string().contains("21 encrypted data keys; at most 16"), "{err}");
    let raised = ParseOptions { max_encrypted_data_keys: 32 };
    assert!(Envelope::parse(&sealed, &raised).is_ok());
}

#[test]
fn empty_edk_list_cannot_be_sealed() {
    let materials = Materials { data_key: DataKey::from_bytes([1; 32]), encrypted_data_keys: vec![] };
    assert!(matches!(
        seal(&materials, &EncryptionContext::new(), b"x"),
        Err(Error::Format(FormatError::NoEncryptedDataKeys))
    ));
}

#[test]
fn expected_context_is_enforced() {
    let ctx = context(&[("tenant", "a"), ("purpose", "x")]);
    ctx.require(&context(&[("tenant", "a")])).expect("subset matches");
    let err = ctx.require(&context(&[("tenant", "b")])).expect_err("different value");
    assert!(err.to_string().contains("\"tenant\""), "{err}");
    assert!(ctx.require(&context(&[("other", "a")])).is_err());
}

#[test]
fn context_limits() {
    assert!(EncryptionContext::from_pairs([("", "v")]).is_err());
    assert!(EncryptionContext::from_pairs([("k".repeat(1025), "v")]).is_err());
    assert!(EncryptionContext::from_pairs((0..65).map(|i| (i.to_string(), String::new()))).is_err());
    assert!(EncryptionContext::from_pairs((0..64).map(|i| (i.to_string(), String::new()))).is_ok());
}
