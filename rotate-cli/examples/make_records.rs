//! Makes large record streams for the rotation benchmarks
//! (scripts/bench-rotation.sh): JSON Lines whose `/secret` field holds either
//! a text envelope under a local key, or a legacy CBC record.
//!
//! `cargo run --release -p rotate-cli --example make_records -- envelope KEYSTORE KEY COUNT OUT`
//! `cargo run --release -p rotate-cli --example make_records -- legacy KEYFILE COUNT OUT`
//! `cargo run --release -p rotate-cli --example make_records -- files KEYSTORE KEY COUNT DIR` (small envelope files)

use std::io::{BufWriter, Write};

use envelope_core::hazmat::{Materials, encode_text, seal};
use envelope_core::legacy::{InnerEncoding, encrypt_legacy_record_for_fixtures};
use envelope_core::{DataKey, EncryptionContext, Keystore, LocalKeyring};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["envelope", keystore, key, count, out] => {
            let keyring = LocalKeyring::new(Keystore::new(keystore).load(key)?);
            let context = EncryptionContext::from_pairs([("table", "users")])?;
            let mut w = BufWriter::new(std::fs::File::create(out)?);
            let mut materials = None;
            for i in 0..count.parse::<u64>()? {
                // Each record gets its own data key, as an application that
                // encrypts record by record would: the rewrap does real work per record.
                let (data_key, edk) = keyring.generate_sync(&context)?;
                materials = Some(Materials { data_key, encrypted_data_keys: vec![edk] });
                let m = materials.as_ref().ok_or("unset")?;
                let secret = encode_text(&seal(m, &context, format!("customer-{i:08}@example.com").as_bytes())?);
                writeln!(w, "{{\"id\":{i},\"plan\":\"basic\",\"secret\":\"{secret}\"}}")?;
            }
            drop(materials);
            w.flush()?;
        }
        ["legacy", key_file, count, out] => {
            let key = DataKey::try_from_slice(&std::fs::read(key_file)?)?;
            let iv = *b"blog-fixed-iv-16";
            let mut w = BufWriter::new(std::fs::File::create(out)?);
            for i in 0..count.parse::<u64>()? {
                let record = encrypt_legacy_record_for_fixtures(
                    &key,
                    &iv,
                    &format!("i want to back to home {i}"),
                    InnerEncoding::Base64,
                );
                writeln!(w, "{{\"id\":{i},\"plan\":\"basic\",\"secret\":\"{record}\"}}")?;
            }
            w.flush()?;
        }
        ["files", keystore, key, count, dir] => {
            let keyring = LocalKeyring::new(Keystore::new(keystore).load(key)?);
            let context = EncryptionContext::from_pairs([("app", "vault")])?;
            for i in 0..count.parse::<u64>()? {
                // A directory per thousand files, as stores of documents are laid out.
                let sub = std::path::Path::new(dir).join(format!("{:04}", i / 1000));
                std::fs::create_dir_all(&sub)?;
                let (data_key, edk) = keyring.generate_sync(&context)?;
                let m = Materials { data_key, encrypted_data_keys: vec![edk] };
                std::fs::write(
                    sub.join(format!("{i:08}.rky")),
                    seal(&m, &context, format!("document {i}").as_bytes())?,
                )?;
            }
        }
        _ => {
            return Err(
                "usage: make_records envelope KEYSTORE KEY COUNT OUT | legacy KEYFILE COUNT OUT | files KEYSTORE KEY COUNT DIR"
                    .into(),
            );
        }
    }
    Ok(())
}
