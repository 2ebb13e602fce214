//! `KmsKeyring` against a real KMS API: the local moto server that
//! `bash scripts/test.sh` starts. Each test makes its own keys.

use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring, KeyringErrorKind};

use envelope_core::hazmat::{Envelope, Materials, ParseOptions, generate_materials, seal, unwrap_data_key};
use kms_adapter::{DiscoveryFilter, Kms, KmsConfig, KmsErrorKind, KmsKeyring};

fn endpoint() -> String {
    std::env::var("REKEY_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("REKEY_TEST_ENDPOINT is not set: these tests need the local KMS server; run them with `bash scripts/test.sh`")
    })
}

async fn kms() -> Kms {
    // SAFETY of the environment: scripts/test.sh exports AWS_ENDPOINT_URL and test credentials.
    assert_eq!(std::env::var("AWS_ENDPOINT_URL").ok(), Some(endpoint()), "run with `bash scripts/test.sh`");
    Kms::from_env(&KmsConfig::default()).await
}

/// Makes a key with the SDK directly (the adapter never creates keys).
async fn create_key() -> String {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let client = aws_sdk_kms::Client::new(&config);
    let out = client.create_key().send().await.expect("CreateKey on the local server");
    out.key_metadata().and_then(|m| m.arn()).expect("arn").to_owned()
}

async fn create_alias(name: &str, key: &str) {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    aws_sdk_kms::Client::new(&config)
        .create_alias()
        .alias_name(name)
        .target_key_id(key)
        .send()
        .await
        .expect("CreateAlias");
}

fn ctx(pairs: &[(&str, &str)]) -> EncryptionContext {
    EncryptionContext::from_pairs(pairs.iter().copied()).expect("context")
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn generate_then_unwrap() {
    let key = create_key().await;
    let keyring = KmsKeyring::new(kms().await, &key, &[]).await.expect("keyring");
    assert_eq!(keyring.key_id(), key);
    let context = ctx(&[("tenant", "acme")]);
    let (data_key, edk) = keyring.generate(&context).await.expect("GenerateDataKey");
    assert_eq!(edk.provider_id(), "aws-kms");
    assert_eq!(edk.key_id(), key);
    let unwrapped = keyring.unwrap(std::slice::from_ref(&edk), &context).await.expect("Decrypt");
    assert!(unwrapped == data_key);
    let m = keyring.kms().metrics();
    assert_eq!((m.calls_of("DescribeKey"), m.calls_of("GenerateDataKey"), m.calls_of("Decrypt")), (1, 1, 1));
    assert_eq!(m.retries, 0);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn rewrap_moves_a_key_to_another_kms_key_without_the_plaintext() {
    let (old, new) = (create_key().await, create_key().await);
    let kms = kms().await;
    let old_ring = KmsKeyring::new(kms.clone(), &old, &[]).await.expect("old");
    let new_ring = KmsKeyring::new(kms.clone(), &new, &[]).await.expect("new");
    let (source_ctx, dest_ctx) = (ctx(&[("purpose", "backup")]), ctx(&[("purpose", "backup"), ("rotated", "2026")]));
    let (data_key, edk) = old_ring.generate(&source_ctx).await.expect("generate");
    let rewrapped = new_ring.rewrap(&edk, &source_ctx, &dest_ctx, &[&old_ring]).await.expect("ReEncrypt");
    assert!(rewrapped.data_key.is_none(), "ReEncrypt keeps the data key inside KMS");
    let moved = rewrapped.edk;
    assert_eq!(moved.key_id(), new);
    // Only the new key is allowed, and only the new context opens it.
    let only_new = KmsKeyring::decrypt_only(kms.clone(), std::slice::from_ref(&new)).await.expect("keyring");
    assert!(only_new.unwrap(std::slice::from_ref(&moved), &dest_ctx).await.expect("decrypt") == data_key);
    let err = only_new.unwrap(std::slice::from_ref(&moved), &source_ctx).await.expect_err("old context");
    assert_eq!(err.kind(), KeyringErrorKind::InvalidCiphertext);
    assert_eq!(kms.metrics().calls_of("ReEncrypt"), 1);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn rewrap_refuses_a_key_relabelled_as_an_allowed_source() {
    // The attack: a data key wrapped under a third key, its key id field
    // rewritten to name the allowed source. The local server ignores the
    // pinned SourceKeyId, so only the check of its answer stands in the way.
    let (old, new, third) = (create_key().await, create_key().await, create_key().await);
    let kms = kms().await;
    let old_ring = KmsKeyring::new(kms.clone(), &old, &[]).await.expect("old");
    let new_ring = KmsKeyring::new(kms.clone(), &new, &[]).await.expect("new");
    let third_ring = KmsKeyring::new(kms.clone(), &third, &[]).await.expect("third");
    let context = ctx(&[]);
    let (_, planted) = third_ring.generate(&context).await.expect("generate");
    let relabelled = EncryptedDataKey::new("aws-kms", old.clone(), planted.wrapped().to_vec()).expect("edk");
    let err = new_ring.rewrap(&relabelled, &context, &context, &[&old_ring]).await.expect_err("must be refused");
    assert!(err.to_string().contains(&third), "the error names the key KMS really used: {err}");
    // And a key no source allows never reaches KMS.
    let before = kms.metrics().calls_of("ReEncrypt");
    let err = new_ring.rewrap(&planted, &context, &context, &[&old_ring]).await.expect_err("not allowed");
    assert_eq!(err.kind(), KeyringErrorKind::NoMatchingKey);
    assert_eq!(kms.metrics().calls_of("ReEncrypt"), before);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn wrong_context_tampering_and_unknown_keys_fail_clearly() {
    let key = create_key().await;
    let kms = kms().await;
    let keyring = KmsKeyring::new(kms.clone(), &key, &[]).await.expect("keyring");
    let context = ctx(&[("a", "1")]);
    let (_, edk) = keyring.generate(&context).await.expect("generate");

    let err = keyring.unwrap(std::slice::from_ref(&edk), &ctx(&[("a", "2")])).await.expect_err("wrong context");
    assert_eq!(err.kind(), KeyringErrorKind::InvalidCiphertext);
    assert!(err.to_string().contains("KMS Decrypt"), "{err}");

    let mut wrapped = edk.wrapped().to_vec();
    let last = wrapped.len() - 1;
    wrapped[last] ^= 1;
    let tampered = EncryptedDataKey::new("aws-kms", key.clone(), wrapped).expect("edk");
    let err = keyring.unwrap(std::slice::from_ref(&tampered), &context).await.expect_err("tampered");
    assert_eq!(err.kind(), KeyringErrorKind::InvalidCiphertext);
    let truncated = EncryptedDataKey::new("aws-kms", key.clone(), edk.wrapped()[..20].to_vec()).expect("edk");
    assert!(keyring.unwrap(std::slice::from_ref(&truncated), &context).await.is_err());

    let missing = "arn:aws:kms:us-east-1:123456789012:key/00000000-0000-0000-0000-000000000000";
    let err = KmsKeyring::new(kms.clone(), missing, &[]).await.expect_err("unknown key");
    assert_eq!(err.kind(), KmsErrorKind::KeyNotFound);
    assert!(err.to_string().contains(missing), "names the key: {err}");
    let err = KmsKeyring::new(kms, "not a key!", &[]).await.expect_err("malformed");
    assert_eq!(err.kind(), KmsErrorKind::Invalid);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn strict_mode_refuses_keys_off_the_allow_list_without_calling_kms() {
    let (a, b) = (create_key().await, create_key().await);
    let kms_a = kms().await;
    let (_, edk) = KmsKeyring::new(kms_a, &a, &[]).await.expect("a").generate(&ctx(&[])).await.expect("generate");

    let kms_b = kms().await;
    let only_b = KmsKeyring::decrypt_only(kms_b.clone(), &[b]).await.expect("keyring");
    assert!(!only_b.can_unwrap(&edk));
    let err = unwrap_data_key(&[&only_b], std::slice::from_ref(&edk), &ctx(&[])).await.expect_err("not allowed");
    assert_eq!(err.kind(), KeyringErrorKind::NoMatchingKey);
    assert!(err.to_string().contains(&a), "names the key the data was made for: {err}");
    assert_eq!(kms_b.metrics().calls_of("Decrypt"), 0, "no request for a key off the list");

    // Discovery: any key of the trusted accounts, and only those.
    let account = a.split(':').nth(4).expect("an ARN's account").to_owned();
    let elsewhere =
        KmsKeyring::discovery(kms_b.clone(), DiscoveryFilter::new("aws", ["000011112222"]).expect("filter"));
    let err = unwrap_data_key(&[&elsewhere], std::slice::from_ref(&edk), &ctx(&[])).await.expect_err("other account");
    assert_eq!(err.kind(), KeyringErrorKind::NoMatchingKey);
    assert_eq!(kms_b.metrics().calls_of("Decrypt"), 0, "no request for a key outside the filter");
    let discovery = KmsKeyring::discovery(kms_b.clone(), DiscoveryFilter::new("aws", [account]).expect("filter"));
    discovery.unwrap(std::slice::from_ref(&edk), &ctx(&[])).await.expect("discovery accepts the account's keys");
    assert_eq!(kms_b.metrics().calls_of("Decrypt"), 1);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn aliases_resolve_to_key_arns() {
    let key = create_key().await;
    let alias = format!("alias/rekey-test-{}", key.rsplit('/').next().expect("id"));
    create_alias(&alias, &key).await;
    let kms = kms().await;
    let by_alias = KmsKeyring::new(kms.clone(), &alias, &[]).await.expect("alias resolves");
    assert_eq!(by_alias.key_id(), key, "the EDKs carry the key ARN, not the alias");
    let (data_key, edk) = by_alias.generate(&ctx(&[])).await.expect("generate");
    let allowed_by_alias = KmsKeyring::decrypt_only(kms.clone(), std::slice::from_ref(&alias)).await.expect("keyring");
    assert!(allowed_by_alias.unwrap(std::slice::from_ref(&edk), &ctx(&[])).await.expect("decrypt") == data_key);
    let description = kms.describe(&alias).await.expect("describe");
    assert_eq!(description.arn, key);
    description.check_usable().expect("enabled symmetric key");
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn an_existing_data_key_is_wrapped_with_encrypt() {
    let key = create_key().await;
    let keyring = KmsKeyring::new(kms().await, &key, &[]).await.expect("keyring");
    let local = envelope_core::DataKey::generate().expect("random");
    let context = ctx(&[("moved", "from-local")]);
    let edk = keyring.wrap(&local, &context).await.expect("Encrypt");
    assert!(keyring.unwrap(std::slice::from_ref(&edk), &context).await.expect("Decrypt") == local);
    assert_eq!(keyring.kms().metrics().calls_of("Encrypt"), 1);
}

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn envelope_round_trip_end_to_end() {
    let (a, b) = (create_key().await, create_key().await);
    let kms = kms().await;
    let first = KmsKeyring::new(kms.clone(), &a, &[]).await.expect("a");
    let second = KmsKeyring::new(kms.clone(), &b, &[]).await.expect("b");
    let context = ctx(&[("table", "orders"), ("column", "card")]);
    let materials: Materials = generate_materials(&[&first, &second], &context).await.expect("materials");
    let sealed = seal(&materials, &context, b"4111 1111 1111 1111").expect("seal");

    let envelope = Envelope::parse(&sealed, &ParseOptions::default()).expect("parse");
    assert_eq!(envelope.header().encrypted_data_keys.len(), 2);
    // Either key alone decrypts.
    for allowed in [a, b] {
        let ring = KmsKeyring::decrypt_only(kms.clone(), &[allowed]).await.expect("keyring");
        let key = unwrap_data_key(&[&ring], &envelope.header().encrypted_data_keys, &envelope.header().context)
            .await
            .expect("unwrap");
        assert_eq!(&envelope.open(&key).expect("open")[..], b"4111 1111 1111 1111");
    }
}
