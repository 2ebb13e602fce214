//! `rekey inspect`: what an input is and what its header says, without keys.

use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;

use envelope_core::{BodyForm, Header, ParseOptions, StreamDecryptor, decode_text, legacy::looks_like_legacy_record};
use serde_json::{Value, json};

use super::{input_len, open_input};
use crate::cli::InspectArgs;
use crate::exit::{CliError, Code};

const MAX_TEXT_INPUT: u64 = 128 << 20;

pub(crate) fn run(args: InspectArgs) -> Result<ExitCode, CliError> {
    let mut input = BufReader::with_capacity(1 << 16, open_input(args.input.as_deref())?);
    let head = input.fill_buf().map_err(|e| CliError::io("cannot read the input", e))?.to_vec();
    let report = if head.starts_with(&envelope_core::MAGIC) {
        let total = input_len(args.input.as_deref());
        let options = ParseOptions { max_encrypted_data_keys: envelope_core::MAX_ENCRYPTED_DATA_KEYS };
        let decryptor = StreamDecryptor::new(input, &options)?;
        describe(decryptor.header(), "binary", total)
    } else if head.starts_with(b"\x01\x80") || head.starts_with(b"\x02\x04") || head.starts_with(b"\x02\x05") {
        json!({"format": "aws-encryption-sdk", "note": "an AWS Encryption SDK message; rekey does not read this format"})
    } else {
        let mut text = String::new();
        input.take(MAX_TEXT_INPUT).read_to_string(&mut text).map_err(|_| not_recognised())?;
        let trimmed = text.trim_ascii();
        if trimmed.starts_with("UktZ") {
            let bytes = decode_text(trimmed)?;
            let options = ParseOptions { max_encrypted_data_keys: envelope_core::MAX_ENCRYPTED_DATA_KEYS };
            let (header, _, _) = Header::parse_prefix(&bytes, &options)?;
            describe(&header, "text", Some(bytes.len() as u64))
        } else if looks_like_legacy_record(trimmed) {
            let raw_len = trimmed.len() / 4 * 3 - trimmed.bytes().rev().take_while(|&b| b == b'=').count();
            json!({
                "format": "legacy-cbc",
                "note": "looks like a legacy AES-256-CBC record (base64 of a 16-byte IV and CBC blocks); it is unauthenticated: move it with `rekey reencrypt --items legacy`",
                "iv_len": 16,
                "ciphertext_len": raw_len - 16,
                "text_len": trimmed.len(),
            })
        } else {
            return Err(not_recognised());
        }
    };
    if args.json {
        println!("{report}");
    } else {
        print_text(&report);
    }
    Ok(ExitCode::SUCCESS)
}

fn not_recognised() -> CliError {
    CliError::new(
        Code::BadInput,
        "the input is not a rekey envelope, a legacy CBC record, or an AWS Encryption SDK message",
    )
}

fn describe(header: &Header, form: &str, total: Option<u64>) -> Value {
    let mut encoded = Vec::new();
    let header_len = header.encode(&mut encoded).map(|()| encoded.len()).unwrap_or(0);
    let body = match header.body_form {
        BodyForm::SingleShot => json!({"form": "single-shot"}),
        BodyForm::Framed { frame_len } => json!({"form": "framed", "frame_len": frame_len}),
    };
    let context: serde_json::Map<String, Value> =
        header.context.iter().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    let edks: Vec<Value> = header
        .encrypted_data_keys
        .iter()
        .map(|e| json!({"provider_id": e.provider_id(), "key_id": e.key_id(), "wrapped_len": e.wrapped().len()}))
        .collect();
    json!({
        "format": "rekey-envelope",
        "encoding": form,
        "version": envelope_core::VERSION,
        "suite": {"id": format!("0x{:04x}", header.suite.id()), "name": header.suite.name()},
        "message_id": hex(&header.message_id),
        "context": context,
        "encrypted_data_keys": edks,
        "body": body,
        "sizes": {"header": header_len, "total": total, "body": total.map(|t| t.saturating_sub(header_len as u64))},
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_text(report: &Value) {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    };
    match report["format"].as_str() {
        Some("rekey-envelope") => {
            println!("rekey envelope, format version {} ({} form)", report["version"], s(&report["encoding"]));
            println!("  suite:       {} ({})", s(&report["suite"]["id"]), s(&report["suite"]["name"]));
            println!("  message id:  {}", s(&report["message_id"]));
            match report["body"]["form"].as_str() {
                Some("framed") => println!("  body:        framed, {} bytes per frame", report["body"]["frame_len"]),
                _ => println!("  body:        single-shot"),
            }
            let ctx = report["context"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>());
            match ctx {
                Some(pairs) if !pairs.is_empty() => println!("  context:     {}", pairs.join(", ")),
                _ => println!("  context:     (empty)"),
            }
            let edks = report["encrypted_data_keys"].as_array().cloned().unwrap_or_default();
            println!("  wrapped data keys: {}", edks.len());
            for e in edks {
                println!("    - {}: {} ({} bytes)", s(&e["provider_id"]), s(&e["key_id"]), e["wrapped_len"]);
            }
            println!(
                "  sizes:       header {} bytes, body {} bytes, total {} bytes",
                s(&report["sizes"]["header"]),
                s(&report["sizes"]["body"]),
                s(&report["sizes"]["total"])
            );
        }
        _ => {
            println!("{}", s(&report["format"]));
            if let Some(note) = report["note"].as_str() {
                println!("  {note}");
            }
        }
    }
}
