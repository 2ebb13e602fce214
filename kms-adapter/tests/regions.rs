//! Which region each request goes to, and the explanations of keys that do
//! not exist, against a scripted fake KMS endpoint that records the region
//! each request was signed for (moto cannot decrypt what a multi-Region key
//! wrapped, nor refuse ListAliases).

mod common;

use std::time::Duration;

use common::{Reply, Seen, client, fake_kms_logged};
use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring};
use kms_adapter::{DiscoveryFilter, KmsErrorKind, KmsKeyring};

const MRK_EAST: &str = "arn:aws:kms:us-east-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
const MRK_WEST: &str = "arn:aws:kms:eu-west-1:111122223333:key/mrk-1234abcd12ab34cd56ef1234567890ab";
const WEST: &str = "arn:aws:kms:eu-west-1:111122223333:key/11111111-2222-3333-4444-555555555555";

fn edk(label: &str) -> EncryptedDataKey {
    EncryptedDataKey::new("aws-kms", label, vec![7; 96]).expect("edk")
}

fn not_found(message: &str) -> Reply {
    Reply::Answer("400 Bad Request", format!(r#"{{"__type":"NotFoundException","message":"{message}"}}"#))
}

fn requests(log: &std::sync::Mutex<Vec<Seen>>) -> Vec<(String, String)> {
    log.lock().expect("lock").iter().map(|s| (s.region.clone(), s.operation.clone())).collect()
}

fn pair(region: &str, operation: &str) -> (String, String) {
    (region.to_owned(), format!("trentservice.{operation}"))
}

#[tokio::test]
async fn a_decrypt_goes_to_the_region_of_the_key_arn() {
    let (url, _, log) = fake_kms_logged(vec![Reply::DecryptedBy(WEST.to_owned())]).await;
    let kms = client(&url, 2, Duration::from_secs(5));
    assert_eq!(kms.region(), Some("us-east-1"));
    let keyring = KmsKeyring::decrypt_only(kms.clone(), &[WEST.to_owned()]).await.expect("keyring");
    keyring.unwrap(&[edk(WEST)], &EncryptionContext::new()).await.expect("decrypted");
    // A direct call, and discovery (which pins the wrapped key's label), too.
    kms.decrypt(&[7; 96], Some(WEST), &EncryptionContext::new()).await.expect("direct");
    let filter = DiscoveryFilter::new("aws", ["111122223333"]).expect("filter");
    KmsKeyring::discovery(kms.clone(), filter)
        .unwrap(&[edk(WEST)], &EncryptionContext::new())
        .await
        .expect("discovery");
    assert_eq!(
        requests(&log),
        [pair("eu-west-1", "decrypt"), pair("eu-west-1", "decrypt"), pair("eu-west-1", "decrypt")]
    );
    // The counters are shared by the client made for eu-west-1.
    assert_eq!(kms.metrics().calls_of("Decrypt"), 3);
}

#[tokio::test]
async fn a_replica_of_an_allowed_multi_region_key_unwraps_through_the_allowed_key() {
    let (url, _, log) = fake_kms_logged(vec![Reply::DecryptedBy(MRK_EAST.to_owned())]).await;
    let kms = client(&url, 2, Duration::from_secs(5));
    let keyring = KmsKeyring::decrypt_only(kms, &[MRK_EAST.to_owned()]).await.expect("keyring");
    assert!(keyring.can_unwrap(&edk(MRK_WEST)), "a replica of an allowed key");
    keyring.unwrap(&[edk(MRK_WEST)], &EncryptionContext::new()).await.expect("decrypted by the primary");
    let seen = log.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].region, "us-east-1", "the allowed key's region");
    assert!(seen[0].body.contains(&format!(r#""KeyId":"{MRK_EAST}""#)), "pinned to the allowed key: {}", seen[0].body);
    // Another account's key of the same id is not a replica.
    let other = MRK_WEST.replace("111122223333", "444455556666");
    assert!(!keyring.can_unwrap(&edk(&other)));
}

#[tokio::test]
async fn a_qualified_reference_reaches_its_region() {
    let (url, _, log) = fake_kms_logged(vec![Reply::DecryptedBy(WEST.to_owned())]).await;
    let kms = client(&url, 2, Duration::from_secs(5));
    kms.decrypt(&[7; 96], Some("11111111-2222-3333-4444-555555555555?region=eu-west-1"), &EncryptionContext::new())
        .await
        .expect("decrypted");
    let seen = log.lock().expect("lock").clone();
    assert_eq!((seen[0].region.as_str(), seen[0].operation.as_str()), ("eu-west-1", "trentservice.decrypt"));
    assert!(seen[0].body.contains(r#""KeyId":"11111111-2222-3333-4444-555555555555""#), "{}", seen[0].body);
    // A profile needs the standard configuration chain.
    let err = kms.decrypt(&[7; 96], Some("alias/a?profile=prod"), &EncryptionContext::new()).await.expect_err("fixed");
    assert_eq!(err.kind(), KmsErrorKind::Invalid);
    assert!(err.to_string().contains("an AWS profile needs a client from the standard configuration chain"), "{err}");
}

#[tokio::test]
async fn a_missing_alias_lists_the_aliases_and_suggests_the_closest() {
    let aliases = r#"{"Aliases":[{"AliasName":"alias/aws/ebs"},{"AliasName":"alias/orders"},{"AliasName":"alias/billing"}],"Truncated":false}"#;
    let (url, _, log) = fake_kms_logged(vec![
        not_found("Alias arn:aws:kms:eu-west-1:111122223333:alias/ordres is not found."),
        Reply::Answer("200 OK", aliases.to_owned()),
    ])
    .await;
    let kms = client(&url, 2, Duration::from_secs(5));
    let err = KmsKeyring::new(kms.clone(), "alias/ordres?region=eu-west-1", &[]).await.expect_err("missing");
    assert_eq!(err.kind(), KmsErrorKind::KeyNotFound);
    assert_eq!(
        err.to_string(),
        "KMS DescribeKey with key alias/ordres?region=eu-west-1 failed: the key does not exist (NotFoundException: \
         Alias arn:aws:kms:eu-west-1:111122223333:alias/ordres is not found.); the aliases in eu-west-1 are \
         alias/billing, alias/orders"
    );
    assert_eq!(err.suggestion(), Some("alias/orders?region=eu-west-1"));
    assert_eq!(requests(&log), [pair("eu-west-1", "describekey"), pair("eu-west-1", "listaliases")]);
    assert_eq!(kms.metrics().calls_of("ListAliases"), 1);
}

#[tokio::test]
async fn a_missing_alias_when_aliases_may_not_be_listed() {
    let (url, _, _) = fake_kms_logged(vec![
        not_found("Alias arn:aws:kms:us-east-1:111122223333:alias/ordres is not found."),
        Reply::Answer(
            "400 Bad Request",
            r#"{"__type":"AccessDeniedException","message":"not authorized to perform kms:ListAliases"}"#.to_owned(),
        ),
    ])
    .await;
    let kms = client(&url, 2, Duration::from_secs(5));
    let err = KmsKeyring::new(kms, "alias/ordres", &[]).await.expect_err("missing");
    assert_eq!(
        err.to_string(),
        "KMS DescribeKey with key alias/ordres failed: the key does not exist (NotFoundException: \
         Alias arn:aws:kms:us-east-1:111122223333:alias/ordres is not found.); the caller may not list the \
         aliases of us-east-1 (kms:ListAliases) to suggest one"
    );
    assert_eq!(err.suggestion(), None);
}

#[tokio::test]
async fn a_bare_name_is_answered_without_listing() {
    let (url, _, log) = fake_kms_logged(vec![not_found("Invalid keyId orders")]).await;
    let kms = client(&url, 2, Duration::from_secs(5));
    let err = KmsKeyring::decrypt_only(kms, &["orders".to_owned()]).await.expect_err("bare");
    assert_eq!(err.suggestion(), Some("alias/orders"));
    assert!(
        err.to_string()
            .ends_with("orders is neither a key id, a key ARN nor an alias name: an alias is written alias/orders"),
        "{err}"
    );
    assert_eq!(requests(&log), [pair("us-east-1", "describekey")]);
}
