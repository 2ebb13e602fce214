//! The front door (`envelope_core::Encryptor`) with a `KmsKeyring`, against
//! the local moto server that `bash scripts/test.sh` starts: records and
//! streams round trip, concurrent cache misses cost one GenerateDataKey,
//! cached decryption one Decrypt, and a wrong context no call at all.

use std::time::Duration;

use envelope_core::{CachePolicy, EncryptionContext, Encryptor, Error, Expect, KeyringErrorKind};
use kms_adapter::{Kms, KmsConfig, KmsKeyring};

async fn kms() -> Kms {
    let endpoint = std::env::var("REKEY_TEST_ENDPOINT").unwrap_or_else(|_| {
        panic!("REKEY_TEST_ENDPOINT is not set: these tests need the local KMS server; run them with `bash scripts/test.sh`")
    });
    assert_eq!(std::env::var("AWS_ENDPOINT_URL").ok(), Some(endpoint), "run with `bash scripts/test.sh`");
    Kms::from_env(&KmsConfig::default()).await
}

/// Makes a key with the SDK directly (the adapter never creates keys).
async fn create_key() -> String {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let out = aws_sdk_kms::Client::new(&config).create_key().send().await.expect("CreateKey on the local server");
    out.key_metadata().and_then(|m| m.arn()).expect("arn").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn a_kms_encryptor_coalesces_misses_and_caches_data_keys() {
    let key = create_key().await;
    let writer_kms = kms().await;
    let keyring = KmsKeyring::new(writer_kms.clone(), &key, &[]).await.expect("keyring");
    let policy = CachePolicy::new(Duration::from_secs(300)).max_messages(1000);
    let encryptor = Encryptor::builder().keyring(keyring).cache(policy).build().expect("encryptor");
    let context = EncryptionContext::from_pairs([("tenant", "acme"), ("table", "orders")]).expect("context");

    // Sixteen tasks miss the cache at once: one GenerateDataKey.
    let tasks: Vec<_> = (0..16u8)
        .map(|i| {
            let (encryptor, context) = (encryptor.clone(), context.clone());
            tokio::spawn(async move { encryptor.encrypt(&context, &[i; 64]).await.expect("encrypt") })
        })
        .collect();
    let mut records = Vec::new();
    for task in tasks {
        records.push(task.await.expect("task"));
    }
    assert_eq!(writer_kms.metrics().calls_of("GenerateDataKey"), 1);

    // A reader with only Decrypt rights on the key: one Decrypt for all sixteen.
    let reader_kms = kms().await;
    let reader_ring = KmsKeyring::decrypt_only(reader_kms.clone(), std::slice::from_ref(&key)).await.expect("keyring");
    let reader = Encryptor::builder()
        .keyring(reader_ring)
        .cache(CachePolicy::new(Duration::from_secs(300)))
        .build()
        .expect("encryptor");
    for (i, record) in (0..16u8).zip(&records) {
        let plaintext = reader.decrypt(record, Expect::Exactly(&context)).await.expect("decrypt");
        assert_eq!(plaintext.as_bytes(), &[i; 64]);
    }
    assert_eq!(reader_kms.metrics().calls_of("Decrypt"), 1);

    // A wrong context is refused before KMS is asked; the blocking forms refuse KMS.
    let other = EncryptionContext::from_pairs([("tenant", "other")]).expect("context");
    let error = reader.decrypt(&records[0], Expect::Contains(&other)).await.expect_err("wrong context");
    assert!(matches!(error, Error::ContextMismatch { .. }), "{error}");
    let error = encryptor.encrypt_sync(&context, b"x").expect_err("KMS needs the async form");
    assert!(matches!(&error, Error::Keyring(e) if e.kind() == KeyringErrorKind::Unsupported), "{error}");
    assert_eq!(reader_kms.metrics().calls_of("Decrypt"), 1);

    // Streams over tokio's I/O traits: a data key of their own each.
    let plaintext: Vec<u8> = (0..200_000u32).flat_map(u32::to_be_bytes).collect();
    let mut sealed = Vec::new();
    encryptor.encrypt_stream(&context, &plaintext[..], &mut sealed).await.expect("encrypt stream");
    assert_eq!(writer_kms.metrics().calls_of("GenerateDataKey"), 2);
    let mut opened = Vec::new();
    reader.decrypt_stream(&sealed[..], &mut opened, Expect::Exactly(&context)).await.expect("decrypt stream");
    assert_eq!(opened, plaintext);
}
