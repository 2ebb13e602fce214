//! `rekey keyset`: keysets and compact records (docs/format.md §12).
//!
//! A keyset file holds a few wrapped data keys; compact records name their
//! key by a 4-byte id, so a short text stays shorter than the blog's CBC
//! record while being authenticated, key-committing and rotatable.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use envelope_core::hazmat::{Envelope, ParseOptions, decode_text};
use envelope_core::keyset::{CompactRecord, FileKeysetStore, Keyset, KeysetHandle, looks_like_compact_record};
use envelope_core::legacy::InnerEncoding;
use envelope_core::{EncryptionContext, Keyring};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Output, open_input};
use crate::cli::{DiscoveryArgs, KeysetCommand, RecordArgs};
use crate::exit::{CliError, Code};
use crate::key_spec::KeySpec;
use crate::keys::{Keys, parse_context};

pub(crate) async fn run(keys: &Keys, command: KeysetCommand) -> Result<ExitCode, CliError> {
    match command {
        KeysetCommand::Create { keys: specs, file } => {
            let store = FileKeysetStore::new(&file);
            if file.exists() {
                return Err(CliError::new(Code::Io, format!("{} already exists", file.display()))
                    .hint("use `rekey keyset rotate` to add a key to it"));
            }
            let keyrings = keys.encrypting(&specs).await?;
            let keyset = Keyset::create(&refs(&keyrings)).await?;
            store.save_sync(&keyset, None)?;
            let primary = keyset.primary().map(|k| k.to_string()).unwrap_or_default();
            println!("created keyset {} in {} with key {primary} (primary)", keyset.id(), file.display());
        }
        KeysetCommand::List { json, file } => list(&load(&file)?, json),
        KeysetCommand::Rotate { keys: specs, file } => {
            let store = FileKeysetStore::new(&file);
            let before = load(&file)?;
            let mut keyset = before.clone();
            let keyrings = keys.encrypting(&specs).await?;
            let id = keyset.rotate(&refs(&keyrings)).await?;
            store.save_sync(&keyset, Some(&before))?;
            println!("added key {id} to keyset {} as the primary; records under older keys still decrypt", keyset.id());
        }
        KeysetCommand::ImportLegacy { legacy_edk, legacy_context, legacy_key_file, keys: specs, file } => {
            let store = FileKeysetStore::new(&file);
            let before = load(&file)?;
            let mut keyset = before.clone();
            let legacy =
                crate::keys::legacy_data_key(keys, legacy_key_file.as_deref(), legacy_edk.as_deref(), &legacy_context)
                    .await?;
            let keyrings = keys.encrypting(&specs).await?;
            let id = keyset.import_legacy(&legacy, &refs(&keyrings)).await?;
            store.save_sync(&keyset, Some(&before))?;
            println!(
                "imported the legacy data key as key {id} (legacy-cbc, read only) of keyset {}; \
                 move its records with `rekey keyset reencrypt --keyset {}`",
                keyset.id(),
                file.display()
            );
        }
        KeysetCommand::Rewrap { to, from, json, file } => {
            let store = FileKeysetStore::new(&file);
            let before = load(&file)?;
            let mut keyset = before.clone();
            let destination = keys.wrapping(&to, &[]).await?;
            let mut sources = Vec::with_capacity(from.len());
            for spec in &from {
                sources.push(keys.wrapping(spec, &[]).await?);
            }
            let summary = keyset.rewrap(destination.as_ref(), &refs(&sources)).await?;
            if !summary.rewrapped.is_empty() {
                store.save_sync(&keyset, Some(&before))?;
            }
            let usage = keys.kms().usage();
            if json {
                let ids = |v: &[envelope_core::keyset::KeyId]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
                let out = json!({
                    "keyset": keyset.id().to_string(),
                    "keys": keyset.keys().len(),
                    "rewrapped": ids(&summary.rewrapped),
                    "already": ids(&summary.already),
                    "kms": usage.clone().unwrap_or(Value::Null),
                });
                println!("{out}");
            } else {
                println!(
                    "keyset {}: {} of {} data keys re-wrapped to {to}, {} already there; no record was touched",
                    keyset.id(),
                    summary.rewrapped.len(),
                    keyset.keys().len(),
                    summary.already.len()
                );
                if let Some(text) = usage.as_ref().and_then(|u| u["text"].as_str()) {
                    println!("KMS: {text}");
                }
            }
        }
        KeysetCommand::Remove { key_id, file } => {
            let store = FileKeysetStore::new(&file);
            let before = load(&file)?;
            let mut keyset = before.clone();
            let id =
                key_id.parse().map_err(|_| CliError::usage(format!("{key_id:?} is not a key id (8 hex digits)")))?;
            keyset.remove_key(id)?;
            store.save_sync(&keyset, Some(&before))?;
            println!("removed key {id} from keyset {}", keyset.id());
        }
        KeysetCommand::Encrypt(args) => return records(keys, &args, Action::Encrypt).await,
        KeysetCommand::Decrypt(args) => return records(keys, &args, Action::Decrypt).await,
        KeysetCommand::Reencrypt(args) => {
            let sources = if args.from.is_empty() {
                Vec::new()
            } else {
                keys.decrypting(&args.from, &DiscoveryArgs::default()).await?
            };
            let inner = if args.legacy_raw { InnerEncoding::Raw } else { InnerEncoding::Base64 };
            return records(keys, &args.records, Action::Reencrypt { sources, inner }).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn refs(keyrings: &[Box<dyn Keyring>]) -> Vec<&dyn Keyring> {
    keyrings.iter().map(AsRef::as_ref).collect()
}

/// A keyset file and its unwrapped handle, with the keys it names (and the local keys).
pub(crate) async fn open(keys: &Keys, file: &Path) -> Result<(Keyset, KeysetHandle), CliError> {
    let keyset = load(file)?;
    let keyrings = unwrap_keyrings(keys, &keyset, &[]).await?;
    let handle = keyset.unwrap(&refs(&keyrings)).await.map_err(|e| unwrap_error(file, e))?;
    Ok((keyset, handle))
}

fn load(file: &Path) -> Result<Keyset, CliError> {
    let keyset = FileKeysetStore::new(file).load_sync()?.ok_or_else(|| {
        CliError::new(Code::Io, format!("keyset file {} does not exist", file.display()))
            .hint("create one with `rekey keyset create --key KEYREF FILE`")
    })?;
    warn_if_shared(file);
    Ok(keyset)
}

/// A keyset file others may read or write is accepted, with a warning: it
/// holds wrapped keys (and a writer could swap them), so it is kept 0600
/// like a keystore's key files.
fn warn_if_shared(file: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(file) {
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                tracing::warn!(
                    "keyset file {} is open to group or others (mode {mode:04o}); it holds the keyset's wrapped \
                     keys: `chmod 600 {}`",
                    file.display(),
                    file.display()
                );
            }
        }
    }
}

/// A keyset whose keys do not unwrap: a wrapped key that fails under its
/// own entry means the file was altered (entries swapped), not a context.
fn unwrap_error(file: &Path, e: envelope_core::Error) -> CliError {
    let altered = matches!(&e, envelope_core::Error::Keyring(k)
        if matches!(k.kind(), envelope_core::KeyringErrorKind::InvalidCiphertext));
    let err = CliError::from(e);
    if altered {
        err.hint(format!(
            "the keyset file's wrapped keys do not match their entries: {} was altered (keys swapped or replaced); \
             restore it from a backup",
            file.display()
        ))
    } else {
        err
    }
}

fn list(keyset: &Keyset, json: bool) {
    if json {
        let keys: Vec<Value> = keyset
            .keys()
            .iter()
            .map(|k| {
                json!({
                    "id": k.id().to_string(),
                    "purpose": k.purpose().as_str(),
                    "primary": keyset.primary() == Some(k.id()),
                    "created": k.created(),
                    "wrapped_by": k.wraps().iter().map(|w| format!("{}:{}", w.provider_id(), w.key_id())).collect::<Vec<_>>(),
                })
            })
            .collect();
        println!(
            "{}",
            json!({"keyset": keyset.id().to_string(), "primary": keyset.primary().map(|p| p.to_string()), "keys": keys})
        );
        return;
    }
    println!("keyset {}", keyset.id());
    println!("{:<10} {:<11} {:<8} {:<11} WRAPPED BY", "KEY", "PURPOSE", "PRIMARY", "CREATED");
    for k in keyset.keys() {
        let wrapped: Vec<String> = k.wraps().iter().map(|w| format!("{}:{}", w.provider_id(), w.key_id())).collect();
        println!(
            "{:<10} {:<11} {:<8} {:<11} {}",
            k.id().to_string(),
            k.purpose().as_str(),
            if keyset.primary() == Some(k.id()) { "yes" } else { "" },
            k.created(),
            wrapped.join(", ")
        );
    }
}

/// The keyrings that unwrap a keyset: the --key allow-list, or every local
/// key and the KMS keys the keyset itself names (its writer is trusted,
/// docs/format.md §12.8).
async fn unwrap_keyrings(keys: &Keys, keyset: &Keyset, allow: &[KeySpec]) -> Result<Vec<Box<dyn Keyring>>, CliError> {
    if !allow.is_empty() {
        return keys.decrypting(allow, &DiscoveryArgs::default()).await;
    }
    let mut named: Vec<KeySpec> = Vec::new();
    for key in keyset.keys() {
        for wrap in key.wraps() {
            let spec = KeySpec::Kms(wrap.key_id().to_owned());
            if wrap.provider_id() == crate::kms::PROVIDER_ID && !named.contains(&spec) {
                named.push(spec);
            }
        }
    }
    let mut keyrings = keys.decrypting(&[], &DiscoveryArgs::default()).await?;
    if !named.is_empty() {
        let kms: Vec<String> = crate::key_spec::kms_keys(&named);
        keyrings.push(keys.kms().decrypting_keyring(&kms, None).await?);
    }
    Ok(keyrings)
}

/// What to do with each record.
enum Action {
    Encrypt,
    Decrypt,
    Reencrypt { sources: Vec<Box<dyn Keyring>>, inner: InnerEncoding },
}

/// What reencrypt found, for its summary.
#[derive(Default)]
struct Counts {
    records: u64,
    empty: u64,
    from_envelope: u64,
    from_legacy: u64,
    from_older_key: u64,
    already: u64,
}

struct Ctx<'a> {
    handle: &'a KeysetHandle,
    context: EncryptionContext,
    action: &'a Action,
    counts: Counts,
}

impl Ctx<'_> {
    /// Transforms one value (a line, a field, a cell). Empty values stay.
    async fn value(&mut self, value: &[u8]) -> Result<Vec<u8>, CliError> {
        if value.is_empty() {
            self.counts.empty += 1;
            return Ok(Vec::new());
        }
        self.counts.records += 1;
        match self.action {
            Action::Encrypt => Ok(self.handle.encrypt_text(value, &self.context)?.into_bytes()),
            Action::Decrypt => {
                let text = std::str::from_utf8(value).map_err(|_| bad_input("a record is not base64 text"))?;
                Ok(self
                    .handle
                    .decrypt_text(text, &self.context)
                    .map_err(|e| decrypt_error(e, text, self.handle))?
                    .to_vec())
            }
            Action::Reencrypt { sources, inner } => self.reencrypt(value, sources, *inner).await,
        }
    }

    async fn reencrypt(
        &mut self,
        value: &[u8],
        sources: &[Box<dyn Keyring>],
        inner: InnerEncoding,
    ) -> Result<Vec<u8>, CliError> {
        let text = std::str::from_utf8(value).map_err(|_| bad_input("a record is not text"))?;
        let bytes = decode_text(text).ok();
        let plaintext: Zeroizing<Vec<u8>> = match bytes.as_deref() {
            Some(b) if looks_like_compact_record(b) => {
                let record = CompactRecord::parse(b)?;
                if Some(record.key_id()) == self.handle.primary() && self.handle.decrypt(b, &self.context).is_ok() {
                    self.counts.already += 1;
                    return Ok(value.to_vec());
                }
                self.counts.from_older_key += 1;
                self.handle.decrypt(b, &self.context).map_err(|e| decrypt_error(e, text, self.handle))?.into_zeroizing()
            }
            Some(b) if b.starts_with(&envelope_core::hazmat::MAGIC) => {
                if sources.is_empty() {
                    return Err(CliError::usage("an envelope record needs the keys it may be decrypted with")
                        .hint("name them with --from local:NAME or --from kms:KEY"));
                }
                let envelope = Envelope::parse(b, &ParseOptions::default())?;
                let header = envelope.header();
                let keyrings = refs(sources);
                let check = |k: &envelope_core::DataKey| envelope.verify_data_key(k).is_ok();
                let data_key = envelope_core::hazmat::unwrap_data_key_checked(
                    &keyrings,
                    &header.encrypted_data_keys,
                    &header.context,
                    &check,
                )
                .await?;
                self.counts.from_envelope += 1;
                envelope.open(&data_key)?
            }
            _ if self.handle.has_legacy_key() => {
                let plain = self.handle.decrypt_legacy(text, inner)?;
                self.counts.from_legacy += 1;
                Zeroizing::new(plain.as_bytes().to_vec())
            }
            _ => {
                return Err(bad_input(
                    "a record is neither a compact record, an envelope nor (without a legacy key) \
                                      readable as legacy CBC",
                )
                .hint("import the blog's data key first: rekey keyset import-legacy"));
            }
        };
        Ok(self.handle.encrypt_text(&plaintext, &self.context)?.into_bytes())
    }
}

fn bad_input(message: &str) -> CliError {
    CliError::new(Code::BadInput, message)
}

/// The authentication error, with a hint when the record names a key the keyset lacks (public information).
fn decrypt_error(e: envelope_core::Error, text: &str, handle: &KeysetHandle) -> CliError {
    let named = decode_text(text).ok().and_then(|b| CompactRecord::parse(&b).ok().map(|r| r.key_id()));
    let err = CliError::from(e);
    match named {
        Some(id) if !handle.has_record_key(id) => err.hint(format!(
            "the record names key {id}, which keyset {} does not hold: another keyset, or a removed key",
            handle.keyset_id()
        )),
        _ => err,
    }
}

async fn records(keys: &Keys, args: &RecordArgs, action: Action) -> Result<ExitCode, CliError> {
    let keyset = load(&args.keyset)?;
    let context = parse_context(&args.context)?;
    let keyrings = unwrap_keyrings(keys, &keyset, &args.keys).await?;
    let handle = keyset.unwrap(&refs(&keyrings)).await.map_err(|e| unwrap_error(&args.keyset, e))?;
    if !matches!(action, Action::Decrypt) && handle.primary().is_none() {
        return Err(CliError::usage("the keyset has no primary key to encrypt with")
            .hint(format!("add one with `rekey keyset rotate --key KEYREF {}`", args.keyset.display())));
    }
    let plaintext_out = matches!(action, Action::Decrypt);
    let mut input = open_input(args.input.as_deref())?;
    let mut output = Output::open(args.output.as_ref(), args.force, plaintext_out)?;
    let mut ctx = Ctx { handle: &handle, context, action: &action, counts: Counts::default() };
    if !args.field.is_empty() {
        json_lines(&mut ctx, input, &mut output, &args.field).await?;
    } else if !args.column.is_empty() {
        csv_rows(&mut ctx, input, &mut output, &args.column).await?;
    } else if args.lines {
        lines(&mut ctx, input, &mut output).await?;
    } else {
        let mut all = Zeroizing::new(Vec::new());
        input.read_to_end(&mut all).map_err(|e| CliError::io("cannot read the input", e))?;
        let value: &[u8] =
            if plaintext_out || matches!(action, Action::Reencrypt { .. }) { all.trim_ascii() } else { &all };
        let out = Zeroizing::new(ctx.value(value).await?);
        output.write_all(&out).map_err(|e| CliError::io("cannot write the output", e))?;
        if !plaintext_out {
            output.write_all(b"\n").map_err(|e| CliError::io("cannot write the output", e))?;
        }
    }
    output.finish()?;
    if let Action::Reencrypt { .. } = action {
        let c = &ctx.counts;
        eprintln!(
            "rekey: {} records: {} from envelopes, {} from legacy CBC, {} from older keyset keys, {} already under \
             the primary {}; {} empty values left alone",
            c.records,
            c.from_envelope,
            c.from_legacy,
            c.from_older_key,
            c.already,
            handle.primary().map(|p| p.to_string()).unwrap_or_default(),
            c.empty
        );
    }
    Ok(ExitCode::SUCCESS)
}

async fn lines(ctx: &mut Ctx<'_>, input: Box<dyn Read>, output: &mut Output) -> Result<(), CliError> {
    let mut reader = BufReader::with_capacity(1 << 16, input);
    let mut line = Zeroizing::new(Vec::new());
    loop {
        line.clear();
        let n = reader.read_until(b'\n', &mut line).map_err(|e| CliError::io("cannot read the input", e))?;
        if n == 0 {
            return Ok(());
        }
        let ending = if line.ends_with(b"\r\n") { 2 } else { usize::from(line.ends_with(b"\n")) };
        let (value, end) = line.split_at(line.len() - ending);
        let out = Zeroizing::new(ctx.value(value).await?);
        output.write_all(&out).and_then(|()| output.write_all(end)).map_err(|e| CliError::io("cannot write", e))?;
    }
}

async fn json_lines(
    ctx: &mut Ctx<'_>,
    input: Box<dyn Read>,
    output: &mut Output,
    fields: &[String],
) -> Result<(), CliError> {
    let reader = BufReader::with_capacity(1 << 16, input);
    for (n, line) in reader.lines().enumerate() {
        let line = Zeroizing::new(line.map_err(|e| CliError::io("cannot read the input", e))?);
        if line.trim().is_empty() {
            output.write_all(b"\n").map_err(|e| CliError::io("cannot write", e))?;
            continue;
        }
        let mut record: Value =
            serde_json::from_str(&line).map_err(|e| bad_input(&format!("line {}: not a JSON object: {e}", n + 1)))?;
        for pointer in fields {
            let slot = record.pointer_mut(pointer).ok_or_else(|| {
                bad_input(&format!("line {}: no field {pointer}", n + 1))
                    .hint("--field takes a JSON pointer such as /ssn")
            })?;
            match slot {
                Value::Null => ctx.counts.empty += 1,
                Value::String(s) => {
                    let out = Zeroizing::new(ctx.value(s.as_bytes()).await?);
                    let text = String::from_utf8(out.to_vec()).map_err(|_| {
                        bad_input(&format!("line {}: field {pointer} decrypts to bytes that are not UTF-8", n + 1))
                    })?;
                    *s = text;
                }
                _ => return Err(bad_input(&format!("line {}: field {pointer} is not a string", n + 1))),
            }
        }
        let mut text = Zeroizing::new(serde_json::to_string(&record).map_err(|e| bad_input(&e.to_string()))?);
        text.push('\n');
        output.write_all(text.as_bytes()).map_err(|e| CliError::io("cannot write", e))?;
    }
    Ok(())
}

async fn csv_rows(
    ctx: &mut Ctx<'_>,
    input: Box<dyn Read>,
    output: &mut Output,
    columns: &[String],
) -> Result<(), CliError> {
    let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input);
    let headers = reader.byte_headers().map_err(|e| bad_input(&format!("CSV header: {e}")))?.clone();
    let mut indexes = Vec::new();
    for column in columns {
        let i = headers.iter().position(|h| h == column.as_bytes()).ok_or_else(|| {
            CliError::usage(format!("the CSV has no column {column:?}"))
                .hint("--column takes a name from the header row")
        })?;
        indexes.push(i);
    }
    output.write_all(&csv_line(headers.iter())?).map_err(|e| CliError::io("cannot write", e))?;
    let mut row = csv::ByteRecord::new();
    while reader.read_byte_record(&mut row).map_err(|e| bad_input(&format!("CSV: {e}")))? {
        let mut fields: Vec<Zeroizing<Vec<u8>>> = row.iter().map(|f| Zeroizing::new(f.to_vec())).collect();
        for &i in &indexes {
            fields[i] = Zeroizing::new(ctx.value(&fields[i]).await?);
        }
        let line = Zeroizing::new(csv_line(fields.iter().map(|f| f.as_slice()))?);
        output.write_all(&line).map_err(|e| CliError::io("cannot write", e))?;
    }
    Ok(())
}

/// One CSV row, quoted as needed.
fn csv_line<'a>(fields: impl Iterator<Item = &'a [u8]>) -> Result<Vec<u8>, CliError> {
    let mut writer = csv::WriterBuilder::new().from_writer(Vec::new());
    writer.write_record(fields).map_err(|e| bad_input(&e.to_string()))?;
    writer.into_inner().map_err(|e| bad_input(&e.to_string()))
}

/// `rekey inspect` of compact records: one per line, each naming its key.
/// `None` when any line is not a compact record.
pub(crate) fn inspect_compact(lines: &[&str]) -> Option<Value> {
    let mut per_key: BTreeMap<String, u64> = BTreeMap::new();
    let mut plaintext_len = 0;
    for line in lines {
        let bytes = decode_text(line).ok()?;
        let record = CompactRecord::parse(&bytes).ok()?;
        plaintext_len = record.plaintext_len();
        *per_key.entry(record.key_id().to_string()).or_default() += 1;
    }
    let keys: Vec<String> = per_key.iter().map(|(k, n)| format!("{k} ({n})")).collect();
    let note = if lines.len() == 1 {
        format!(
            "a compact keyset record (docs/format.md §12.6) under keyset key {}, {plaintext_len} bytes of \
             plaintext, {} characters; open it with `rekey keyset decrypt --keyset FILE` (`rekey keyset list` \
             shows a keyset's keys)",
            keys.join(", "),
            lines[0].len()
        )
    } else {
        format!(
            "{} compact keyset records, per keyset key: {}; open them with `rekey keyset decrypt --keyset FILE --lines`",
            lines.len(),
            keys.join(", ")
        )
    };
    Some(json!({"format": "compact-record", "records": lines.len(), "per_key": per_key, "note": note}))
}

/// `rekey encrypt --keyset FILE`: compact records of one input (whole, or
/// `--lines`); `--key` names keys that may unwrap the keyset.
pub(crate) async fn encrypt(keys: &Keys, args: crate::cli::EncryptArgs) -> Result<ExitCode, CliError> {
    let record_args = from_files(args.keyset, args.keys, args.context, args.lines, &args.files, args.force)?;
    records(keys, &record_args, Action::Encrypt).await
}

/// `rekey decrypt --keyset FILE`, as [`encrypt`].
pub(crate) async fn decrypt(keys: &Keys, args: crate::cli::DecryptArgs) -> Result<ExitCode, CliError> {
    let record_args = from_files(args.keyset, args.keys, args.context, args.lines, &args.files, args.force)?;
    records(keys, &record_args, Action::Decrypt).await
}

fn from_files(
    keyset: Option<PathBuf>,
    keys: Vec<KeySpec>,
    context: Vec<String>,
    lines: bool,
    files: &crate::cli::FilesArgs,
    force: bool,
) -> Result<RecordArgs, CliError> {
    let keyset = keyset.ok_or_else(|| CliError::usage("--keyset is missing"))?;
    if files.inputs.len() > 1 || files.recursive {
        return Err(CliError::usage("--keyset works on one input: a record, or a file of records with --lines")
            .hint("for JSON fields or CSV columns use `rekey keyset encrypt|decrypt --field/--column`"));
    }
    Ok(RecordArgs {
        keyset,
        keys,
        context,
        lines,
        field: Vec::new(),
        column: Vec::new(),
        output: files.output.clone(),
        force,
        input: files.inputs.first().cloned(),
    })
}
