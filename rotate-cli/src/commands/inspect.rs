//! `rekey inspect`: what an input is and what its header says, without keys.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::process::ExitCode;

use envelope_core::hazmat::{BodyForm, Header, ParseOptions, StreamDecryptor, decode_text};
use envelope_core::legacy::looks_like_legacy_record;
use serde_json::{Value, json};

use super::{input_len, open_input};
use crate::cli::InspectArgs;
use crate::exit::{CliError, Code};
use crate::ui::outln;
use rotate_cli::engine::format::esdk;

const MAX_TEXT_INPUT: u64 = 128 << 20;

pub(crate) fn run(args: InspectArgs) -> Result<ExitCode, CliError> {
    if let Some(url) = args.input.as_ref().and_then(|p| p.to_str()).filter(|u| rotate_cli::engine::s3::is_s3_url(u)) {
        return super::s3::inspect(url, args.json);
    }
    let mut input = BufReader::with_capacity(1 << 16, open_input(args.input.as_deref())?);
    let head = input.fill_buf().map_err(|e| CliError::io("cannot read the input", e))?.to_vec();
    let options = ParseOptions { max_encrypted_data_keys: envelope_core::hazmat::MAX_ENCRYPTED_DATA_KEYS };
    let report = if head.starts_with(&envelope_core::hazmat::MAGIC) {
        let total = input_len(args.input.as_deref());
        let decryptor = StreamDecryptor::new(input, &options)?;
        describe(decryptor.header(), "binary", total)
    } else if esdk::has_esdk_prefix(&head) {
        let total = input_len(args.input.as_deref());
        let decryptor = envelope_core::esdk::StreamDecryptor::new(input, &esdk::describe_options())?;
        describe_esdk(&decryptor.header(), "binary", total)
    } else if let Some(layout) = kms_blob_layout(&head) {
        kms_blob(layout, head.len(), None)
    } else {
        let mut text = String::new();
        input.take(MAX_TEXT_INPUT).read_to_string(&mut text).map_err(|_| not_recognised())?;
        let lines: Vec<&str> = text.lines().map(str::trim_ascii).filter(|l| !l.is_empty()).collect();
        let trimmed = text.trim_ascii();
        if trimmed.is_empty() {
            return Err(CliError::new(Code::BadInput, "the input is empty"));
        }
        if lines.len() > 1 && lines[0].starts_with("UktZ") {
            // `rekey encrypt --lines`: one text envelope per line.
            let mut reports = Vec::with_capacity(lines.len());
            for (i, line) in lines.iter().enumerate() {
                let at = |e: CliError| CliError { message: format!("line {}: {}", i + 1, e.message), ..e };
                let bytes = decode_text(line).map_err(|e| at(e.into()))?;
                let (header, _, _) = Header::parse_prefix(&bytes, &options).map_err(|e| at(e.into()))?;
                let mut report = describe(&header, "text", Some(bytes.len() as u64));
                report["line"] = json!(i + 1);
                reports.push(report);
            }
            return print_lines(&reports, args.json);
        }
        if trimmed.starts_with("UktZ") {
            let bytes = decode_text(trimmed)?;
            let (header, _, _) = Header::parse_prefix(&bytes, &options)?;
            describe(&header, "text", Some(bytes.len() as u64))
        } else if let Some(raw) = base64_bytes(trimmed)
            && let Some(report) = esdk::with_header(&raw, |h| describe_esdk(h, "text", Some(raw.len() as u64)))
        {
            report
        } else if let Some(raw) = base64_bytes(trimmed)
            && let Some(layout) = kms_blob_layout(&raw)
        {
            kms_blob(layout, raw.len(), Some(trimmed.len()))
        } else if let Some(report) = super::keyset::inspect_compact(&lines) {
            report
        } else if looks_like_legacy_record(trimmed) {
            let raw_len = trimmed.len() / 4 * 3 - trimmed.bytes().rev().take_while(|&b| b == b'=').count();
            // Real KMS blobs of a data key are 150 to 250 bytes; a record of
            // that size cannot be told from one by its bytes alone.
            let note = if (150..=250).contains(&raw_len) {
                "looks like a legacy AES-256-CBC record (base64 of a 16-byte IV and CBC blocks), or possibly a bare KMS ciphertext blob of that size; a legacy record is unauthenticated: move it with `rekey reencrypt --items legacy`, a KMS blob with `rekey rewrap --items edk`"
            } else {
                "looks like a legacy AES-256-CBC record (base64 of a 16-byte IV and CBC blocks); it is unauthenticated: move it with `rekey reencrypt --items legacy`"
            };
            json!({
                "format": "legacy-cbc",
                "note": note,
                "iv_len": 16,
                "ciphertext_len": raw_len - 16,
                "text_len": trimmed.len(),
            })
        } else {
            return Err(not_recognised());
        }
    };
    if args.json {
        outln!("{report}")?;
    } else {
        print_text(&report)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The envelopes of a `--lines` file: JSON Lines, one report per line; or
/// the first in full, the count, and the keys and contexts of them all.
fn print_lines(reports: &[Value], json: bool) -> Result<ExitCode, CliError> {
    if json {
        for report in reports {
            outln!("{report}")?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut keys: Vec<String> = Vec::new();
    for report in reports {
        for e in report["encrypted_data_keys"].as_array().into_iter().flatten() {
            let id = format!("{}: {}", e["provider_id"].as_str().unwrap_or(""), e["key_id"].as_str().unwrap_or(""));
            if !keys.contains(&id) {
                keys.push(id);
            }
        }
    }
    outln!(
        "{} text envelopes, one per line (as `rekey encrypt --lines` writes them); wrapped under: {}",
        crate::ui::count(reports.len() as u64),
        keys.join(", ")
    )?;
    outln!("line 1:")?;
    print_text(&reports[0])?;
    outln!("(--json prints every line)")?;
    Ok(ExitCode::SUCCESS)
}

/// The layout of a bare KMS ciphertext blob, if `raw` has one.
///
/// AWS KMS blobs of symmetric keys start with the bytes 01 02 02 00 (a
/// version and a key reference header); the local KMS server the tests
/// use (moto) writes the key id as a 36-character UUID first.
fn kms_blob_layout(raw: &[u8]) -> Option<&'static str> {
    if raw.len() >= 100 && raw.starts_with(&[0x01, 0x02, 0x02, 0x00]) {
        return Some("AWS KMS");
    }
    let uuid = raw.get(..36)?;
    let is_uuid = uuid.iter().enumerate().all(|(i, &b)| match i {
        8 | 13 | 18 | 23 => b == b'-',
        _ => b.is_ascii_hexdigit(),
    });
    (is_uuid && raw.len() > 36 + 12 + 16).then_some("a local KMS emulator (moto)")
}

fn kms_blob(layout: &str, raw_len: usize, text_len: Option<usize>) -> Value {
    json!({
        "format": "kms-ciphertext-blob",
        "note": format!("a bare KMS ciphertext blob ({layout} layout), such as an encrypted data key from GenerateDataKey: it names no key rekey can read without KMS; move it with `rekey rewrap --items edk`"),
        "blob_len": raw_len,
        "text_len": text_len,
    })
}

fn base64_bytes(text: &str) -> Option<Vec<u8>> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(text).ok()
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
        "version": envelope_core::hazmat::VERSION,
        "suite": {"id": format!("0x{:04x}", header.suite.id()), "name": header.suite.name()},
        "message_id": hex(&header.message_id),
        "context": context,
        "encrypted_data_keys": edks,
        "body": body,
        "sizes": {"header": header_len, "total": total, "body": total.map(|t| t.saturating_sub(header_len as u64))},
    })
}

/// What an AWS Encryption SDK message's header says (docs/format.md §14).
fn describe_esdk(header: &envelope_core::esdk::Header<'_>, form: &str, total: Option<u64>) -> Value {
    use envelope_core::esdk::ContentType;
    let suite = header.suite();
    let context: serde_json::Map<String, Value> =
        header.encryption_context().map(|(k, v)| (k.to_owned(), Value::from(v))).collect();
    let keys: Vec<Value> = header
        .wrapped_keys()
        .map(|k| {
            let label = esdk::wrapped_key_label(&k);
            let key = label.split_once(':').map_or("", |(_, key)| key).to_owned();
            json!({"provider_id": k.provider_id(), "key": key, "wrapped_len": k.ciphertext().len()})
        })
        .collect();
    let body = match header.content_type() {
        ContentType::Framed => json!({"form": "framed", "frame_len": header.frame_length()}),
        _ => json!({"form": "non-framed"}),
    };
    let note = if suite.is_committing() {
        "rotate it with `rekey reencrypt --items esdk`"
    } else {
        "no key commitment: one message can decrypt to different plaintexts under different wrapped keys; \
         move it to a committing suite with `rekey reencrypt --items esdk`"
    };
    json!({
        "format": "aws-encryption-sdk",
        "encoding": form,
        "version": header.version(),
        "suite": {
            "id": format!("0x{:04x}", suite.id()),
            "name": suite.name(),
            "key_commitment": suite.is_committing(),
            "signed": suite.is_signed(),
            "label": esdk::suite_label(suite),
        },
        "message_id": hex(header.message_id()),
        "context": context,
        "wrapped_keys": keys,
        "body": body,
        "sizes": {"header": header.len(), "total": total},
        "note": note,
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn print_text(report: &Value) -> Result<(), CliError> {
    let mut out = String::new();
    // Writing to a String cannot fail.
    macro_rules! line {
        ($($arg:tt)*) => {{
            let _ = writeln!(out, $($arg)*);
        }};
    }
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "unknown".to_owned(),
        other => other.to_string(),
    };
    match report["format"].as_str() {
        Some("rekey-envelope") => {
            line!("rekey envelope, format version {} ({} form)", report["version"], s(&report["encoding"]));
            line!("  suite:       {} ({})", s(&report["suite"]["id"]), s(&report["suite"]["name"]));
            line!("  message id:  {}", s(&report["message_id"]));
            match report["body"]["form"].as_str() {
                Some("framed") => line!("  body:        framed, {} bytes per frame", report["body"]["frame_len"]),
                _ => line!("  body:        single-shot"),
            }
            let ctx = report["context"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>());
            match ctx {
                Some(pairs) if !pairs.is_empty() => line!("  context:     {}", pairs.join(", ")),
                _ => line!("  context:     (empty)"),
            }
            let edks = report["encrypted_data_keys"].as_array().cloned().unwrap_or_default();
            line!("  wrapped data keys: {}", edks.len());
            for e in edks {
                line!("    - {}: {} ({} bytes)", s(&e["provider_id"]), s(&e["key_id"]), e["wrapped_len"]);
            }
            line!(
                "  sizes:       header {} bytes, body {} bytes, total {} bytes",
                s(&report["sizes"]["header"]),
                s(&report["sizes"]["body"]),
                s(&report["sizes"]["total"])
            );
        }
        Some("aws-encryption-sdk") => {
            line!("AWS Encryption SDK message, format version {} ({} form)", report["version"], s(&report["encoding"]));
            line!("  suite:       {}", s(&report["suite"]["label"]));
            line!("  message id:  {}", s(&report["message_id"]));
            match report["body"]["form"].as_str() {
                Some("framed") => line!("  content:     framed, {} bytes per frame", report["body"]["frame_len"]),
                _ => line!("  content:     non-framed"),
            }
            let ctx = report["context"]
                .as_object()
                .map(|m| m.iter().map(|(k, v)| format!("{k}={}", s(v))).collect::<Vec<_>>());
            match ctx {
                Some(pairs) if !pairs.is_empty() => line!("  context:     {}", pairs.join(", ")),
                _ => line!("  context:     (empty)"),
            }
            let keys = report["wrapped_keys"].as_array().cloned().unwrap_or_default();
            line!("  wrapped data keys: {}", keys.len());
            for k in keys {
                line!("    - {}: {} ({} bytes)", s(&k["provider_id"]), s(&k["key"]), k["wrapped_len"]);
            }
            line!(
                "  sizes:       header {} bytes, total {} bytes",
                s(&report["sizes"]["header"]),
                s(&report["sizes"]["total"])
            );
            line!("  {}", s(&report["note"]));
        }
        _ => {
            line!("{}", s(&report["format"]));
            if let Some(note) = report["note"].as_str() {
                line!("  {note}");
            }
        }
    }
    crate::ui::out(&out)
}
