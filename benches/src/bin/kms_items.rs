//! Makes the items of `scripts/bench-kms-quota.sh` through a KMS endpoint
//! (the fake KMS): one GenerateDataKey per item, so every item has its own
//! wrapped key, written as JSON Lines for `rekey rewrap --field`.
//!
//! ```text
//! kms_items edk KEY N OUT [KEY=VALUE...]       {"id":I,"k":"<base64 CiphertextBlob>"} per line
//! kms_items envelope KEY N OUT [KEY=VALUE...]  {"id":I,"v":"<envelope, text form>"} per line, 64 B records
//! ```
//! The encryption context is the KEY=VALUE pairs. The endpoint, region and
//! credentials come from the standard AWS variables (`AWS_ENDPOINT_URL`, …).

use std::io::Write;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envelope_core::hazmat::{Materials, encode_text, seal};
use envelope_core::{EncryptionContext, Keyring};
use kms_adapter::{Kms, KmsConfig, KmsKeyring};

/// Items made at once.
const IN_FLIGHT: usize = 256;

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("kms_items: {e}");
        std::process::exit(1);
    }
}

async fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [kind, key, n, out, pairs @ ..] = args.as_slice() else {
        return Err("usage: kms_items edk|envelope KEY N OUT [KEY=VALUE...]".into());
    };
    let envelope = match kind.as_str() {
        "edk" => false,
        "envelope" => true,
        _ => return Err(format!("{kind}: say edk or envelope").into()),
    };
    let n: usize = n.parse()?;
    let mut context = EncryptionContext::new();
    for pair in pairs {
        let (k, v) = pair.split_once('=').ok_or("context pairs are KEY=VALUE")?;
        context.insert(k, v)?;
    }
    let kms = Kms::from_env(&KmsConfig::default()).await;
    let keyring = Arc::new(KmsKeyring::new(kms.clone(), key, &[]).await?);
    let context = Arc::new(context);
    let mut lines = vec![String::new(); n];
    let mut next = 0;
    while next < n {
        let end = (next + IN_FLIGHT * 16).min(n);
        let mut tasks = tokio::task::JoinSet::new();
        for chunk_start in (next..end).step_by(16) {
            let (keyring, context) = (Arc::clone(&keyring), Arc::clone(&context));
            let chunk_end = (chunk_start + 16).min(end);
            tasks.spawn(async move {
                let mut made = Vec::with_capacity(chunk_end - chunk_start);
                for i in chunk_start..chunk_end {
                    let (data_key, edk) = keyring.generate(&context).await?;
                    let line = if envelope {
                        let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
                        let record = seal(&materials, &context, format!("record {i:0>57}").as_bytes())?;
                        format!("{{\"id\":{i},\"v\":\"{}\"}}\n", encode_text(&record))
                    } else {
                        format!("{{\"id\":{i},\"k\":\"{}\"}}\n", STANDARD.encode(edk.wrapped()))
                    };
                    made.push((i, line));
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(made)
            });
        }
        while let Some(done) = tasks.join_next().await {
            for (i, line) in done?? {
                lines[i] = line;
            }
        }
        next = end;
    }
    let mut file = std::io::BufWriter::new(std::fs::File::create(out)?);
    for line in &lines {
        file.write_all(line.as_bytes())?;
    }
    file.flush()?;
    eprintln!("kms_items: {n} items in {out} ({})", kms.metrics());
    Ok(())
}
