//! Measures the AWS Encryption SDK for Rust with a raw AES keyring, for the
//! peers table: messages/s at 64 B and 1 KiB, MB/s at 16 MiB, and the size of
//! a 64 B message, for the unsigned committing suite and the signed default.
//! Prints one JSON object per suite.

use std::collections::HashMap;
use std::time::Instant;

use aws_esdk::client as esdk_client;
use aws_esdk::material_providers::client as mpl_client;
use aws_esdk::material_providers::types::material_providers_config::MaterialProvidersConfig;
use aws_esdk::material_providers::types::{AesWrappingAlg, EsdkAlgorithmSuiteId};
use aws_esdk::types::aws_encryption_sdk_config::AwsEncryptionSdkConfig;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let client = esdk_client::Client::from_conf(AwsEncryptionSdkConfig::builder().build()?)?;
    let mpl = mpl_client::Client::from_conf(MaterialProvidersConfig::builder().build()?)?;
    let keyring = mpl
        .create_raw_aes_keyring()
        .key_namespace("peers")
        .key_name("wrapping-key")
        .wrapping_key(vec![7u8; 32])
        .wrapping_alg(AesWrappingAlg::AlgAes256GcmIv12Tag16)
        .send()
        .await?;
    let context: HashMap<String, String> = HashMap::new();
    let suites = [
        ("unsigned, committing (0x0478)", EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKey),
        ("default, committing, ECDSA P-384 (0x0578)", EsdkAlgorithmSuiteId::AlgAes256GcmHkdfSha512CommitKeyEcdsaP384),
    ];
    for (name, suite) in suites {
        // Encrypts `data` once and returns the ciphertext's length.
        let encrypt = |data: Vec<u8>| {
            let (client, keyring, context, suite) = (&client, &keyring, &context, suite.clone());
            async move {
                let response = client
                    .encrypt()
                    .plaintext(data)
                    .keyring(keyring.clone())
                    .encryption_context(context.clone())
                    .algorithm_suite_id(suite)
                    .send()
                    .await?;
                Ok::<usize, BoxError>(response.ciphertext.map_or(0, |c| c.as_ref().len()))
            }
        };
        let mut rates = Vec::new();
        for (len, count) in [(64usize, 2000usize), (1024, 2000), (16 << 20, 3)] {
            let mut runs = Vec::new();
            for _ in 0..5 {
                let start = Instant::now();
                for _ in 0..count {
                    encrypt(vec![0x5a; len]).await?;
                }
                runs.push(count as f64 / start.elapsed().as_secs_f64());
            }
            runs.sort_by(f64::total_cmp);
            rates.push(runs[2]);
        }
        let size_64 = encrypt(vec![0x5a; 64]).await?;
        println!(
            "{{\"suite\": \"{name}\", \"per_s_64\": {:.0}, \"per_s_1k\": {:.0}, \"mbps_16m\": {:.0}, \"bytes_64\": {size_64}}}",
            rates[0],
            rates[1],
            rates[2] * 16.0 * 1048576.0 / 1e6
        );
    }
    Ok(())
}
