//! Interop with boto3, a real KMS client nobody here wrote: a data key boto3
//! made is re-wrapped by `KmsKeyring` and boto3 decrypts it again, under the
//! new key and context, to the same bytes.

use std::process::Command;

use envelope_core::{EncryptedDataKey, EncryptionContext, Keyring};
use kms_adapter::{Kms, KmsConfig, KmsKeyring};

fn python(code: &str, args: &[&str]) -> String {
    let python = std::env::var("REKEY_TEST_PYTHON")
        .unwrap_or_else(|_| panic!("REKEY_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`"));
    let out = Command::new(python).arg("-c").arg(code).args(args).output().expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

const MAKE: &str = r#"
import base64, json, sys, boto3
kms = boto3.client("kms")
old = kms.create_key()["KeyMetadata"]["Arn"]
new = kms.create_key()["KeyMetadata"]["Arn"]
dk = kms.generate_data_key(KeyId=old, KeySpec="AES_256", EncryptionContext={"purpose": "file-backup"})
print(json.dumps({"old": old, "new": new, "blob": base64.b64encode(dk["CiphertextBlob"]).decode(),
                  "plaintext": base64.b64encode(dk["Plaintext"]).decode()}))
"#;

const DECRYPT: &str = r#"
import base64, sys, json, boto3
out = boto3.client("kms").decrypt(CiphertextBlob=base64.b64decode(sys.argv[1]), KeyId=sys.argv[2],
                                  EncryptionContext=json.loads(sys.argv[3]))
print(base64.b64encode(out["Plaintext"]).decode())
"#;

#[tokio::test]
#[ignore = "needs the local KMS server: bash scripts/test.sh"]
async fn a_boto3_data_key_rewrapped_here_decrypts_in_boto3() {
    use base64::Engine;
    let made: serde_json::Value = serde_json::from_str(&python(MAKE, &[])).expect("json");
    let (old, new) = (made["old"].as_str().expect("old"), made["new"].as_str().expect("new"));
    let blob = base64::engine::general_purpose::STANDARD.decode(made["blob"].as_str().expect("blob")).expect("b64");

    let kms = Kms::from_env(&KmsConfig::default()).await;
    let keyring = KmsKeyring::new(kms.clone(), new, &[]).await.expect("keyring");
    let source_ring = KmsKeyring::decrypt_only(kms, &[old.to_owned()]).await.expect("source keyring");
    let edk = EncryptedDataKey::new("aws-kms", old, blob).expect("edk");
    let source = EncryptionContext::from_pairs([("purpose", "file-backup")]).expect("ctx");
    let dest = EncryptionContext::from_pairs([("purpose", "file-backup"), ("rotated", "2026-11-23")]).expect("ctx");
    let moved = keyring.rewrap(&edk, &source, &dest, &[&source_ring]).await.expect("ReEncrypt").edk;

    let new_blob = base64::engine::general_purpose::STANDARD.encode(moved.wrapped());
    let decrypted = python(DECRYPT, &[&new_blob, new, r#"{"purpose": "file-backup", "rotated": "2026-11-23"}"#]);
    assert_eq!(decrypted, made["plaintext"].as_str().expect("plaintext"), "boto3 gets the same data key back");
}
