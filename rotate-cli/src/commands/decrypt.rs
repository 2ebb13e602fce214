//! `rekey decrypt`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use envelope_core::{DataKey, EncryptedDataKey, EncryptionContext, Keyring};

use envelope_core::hazmat::{
    Envelope, ParseOptions, StreamDecryptor, decode_text, unwrap_data_key_checked, verify_commitment,
};

use envelope_core::esdk::{Message, PlaintextDataKey};
use rotate_cli::engine::format::esdk;

use super::files::{self, CountingReader, CountingWriter, Direction, Job, Metadata, Plan, Record};
use super::{Output, byte_progress, input_len, open_input};
use crate::cli::DecryptArgs;
use crate::exit::{CliError, Code};
use crate::keys::{Keys, parse_context};

/// The most a text-form input may be; the binary form streams.
const MAX_TEXT_INPUT: u64 = 128 << 20;
/// The most an AWS Encryption SDK message may be: it is read whole.
const MAX_ESDK_INPUT: u64 = 1 << 30;

pub(crate) async fn run(keys: &Keys, args: DecryptArgs) -> Result<ExitCode, CliError> {
    let (pairs, required): (Vec<String>, Vec<String>) = args.context.iter().cloned().partition(|c| c.contains('='));
    let expected = parse_context(&pairs)?;
    let options = ParseOptions { max_encrypted_data_keys: args.max_encrypted_data_keys };
    let plan = files::plan(&args.files, Direction::Decrypt, args.force)?;
    let keyrings = keys.decrypting(&args.keys, &args.discovery).await?;
    if keyrings.is_empty() {
        return Err(CliError::usage("no key may decrypt: the local keystore is empty and no --key was given")
            .hint("pass --key local:NAME or --key kms:KEY, or --kms-discovery --discovery-account ACCOUNT_ID"));
    }
    let keyrings: Vec<&dyn Keyring> = keyrings.iter().map(AsRef::as_ref).collect();
    let mut unwrapper = Unwrapper { keyrings, expected, required, last: None };
    let mut metadata = Metadata::open(args.files.metadata_output.as_deref())?;
    let how = How { lines: args.lines, force: args.force, options, allow_non_committing: args.allow_non_committing };
    match plan {
        Plan::Single(job) => {
            let result = decrypt_job(&mut unwrapper, &how, &job, true).await;
            metadata.write(&job, Direction::Decrypt, result.as_ref())?;
            metadata.finish()?;
            result.map_err(|e| super::naming(e, &job))?;
            Ok(ExitCode::SUCCESS)
        }
        Plan::Many { jobs, out_dir } => {
            files::run_many(jobs, &out_dir, Direction::Decrypt, &mut metadata, async |job: &Job| {
                decrypt_job(&mut unwrapper, &how, job, false).await
            })
            .await
        }
    }
}

/// How every input is decrypted.
struct How {
    lines: bool,
    force: bool,
    options: ParseOptions,
    /// AWS Encryption SDK messages on suites without key commitment are read too.
    allow_non_committing: bool,
}

/// Decrypts one input into one output.
async fn decrypt_job(unwrapper: &mut Unwrapper<'_>, how: &How, job: &Job, show_bar: bool) -> Result<Record, CliError> {
    let input = BufReader::with_capacity(1 << 16, open_input(job.input.as_deref())?);
    let mut input = CountingReader { inner: input, count: 0 };
    let mut output = Output::open(job.output.as_ref(), how.force, true)?;
    let mut counted = CountingWriter { inner: &mut output, count: 0 };
    let mut record = Record::default();
    if how.lines {
        let mut line = Vec::new();
        let mut number = 0u64;
        loop {
            line.clear();
            if input.read_until(b'\n', &mut line).map_err(|e| CliError::io("cannot read the input", e))? == 0 {
                break;
            }
            number += 1;
            // The plaintext line gets the envelope line's ending: byte for byte what was encrypted.
            let (text, ending): (&[u8], &[u8]) = if line.ends_with(b"\r\n") {
                (&line[..line.len() - 2], b"\r\n")
            } else if line.ends_with(b"\n") {
                (&line[..line.len() - 1], b"\n")
            } else {
                (&line[..], b"")
            };
            let text = std::str::from_utf8(text)
                .map_err(|_| at_line(CliError::new(Code::BadInput, "not a text envelope (not UTF-8)"), number))?;
            let plaintext = unwrapper.open_text(text, how, &mut record).await.map_err(|e| at_line(e, number))?;
            counted
                .write_all(&plaintext)
                .and_then(|()| counted.write_all(ending))
                .map_err(|e| CliError::io("cannot write the output", e))?;
        }
        record.records = Some(number);
    } else if let Some(text) = esdk_form(&mut input)? {
        // An AWS Encryption SDK message is read whole: its reader checks
        // every frame and the signature before any plaintext is released.
        let mut bytes = Vec::new();
        (&mut input)
            .take(MAX_ESDK_INPUT)
            .read_to_end(&mut bytes)
            .map_err(|e| CliError::io("cannot read the input", e))?;
        if bytes.len() as u64 >= MAX_ESDK_INPUT {
            return Err(CliError::new(
                Code::BadInput,
                "the AWS Encryption SDK message is larger than rekey reads (1 GiB)",
            )
            .hint("decrypt it with the AWS Encryption SDK CLI, which streams"));
        }
        if text {
            let text = std::str::from_utf8(&bytes).map_err(|_| CliError::new(Code::BadInput, "not base64 text"))?;
            bytes = decode_text(text)?;
        }
        let plaintext = unwrapper.open_esdk(&bytes, how, &mut record).await?;
        counted.write_all(&plaintext).map_err(|e| CliError::io("cannot write the output", e))?;
    } else if is_text_form(&mut input)? {
        let mut text = String::new();
        (&mut input)
            .take(MAX_TEXT_INPUT)
            .read_to_string(&mut text)
            .map_err(|_| CliError::new(Code::BadInput, "the text form is not valid UTF-8 base64"))?;
        let plaintext = unwrapper.open_text(&text, how, &mut record).await?;
        counted.write_all(&plaintext).map_err(|e| CliError::io("cannot write the output", e))?;
    } else {
        let bar =
            if show_bar { byte_progress(input_len(job.input.as_deref())) } else { indicatif::ProgressBar::hidden() };
        let decryptor = StreamDecryptor::new(bar.wrap_read(&mut input), &how.options)?;
        let header = decryptor.header().clone();
        note_header(&mut record, &header.encrypted_data_keys, &header.context);
        let check = |k: &DataKey| verify_commitment(&header, k).is_ok();
        let key = unwrapper.data_key(&header.encrypted_data_keys, &header.context, &check).await?;
        decryptor.decrypt_to(&key, &mut counted)?;
        bar.finish_and_clear();
    }
    record.output_bytes = counted.count;
    output.finish()?;
    record.input_bytes = input.count;
    tracing::info!(
        "decrypted {} to {} (wrapped under {})",
        job.input_name(),
        job.output_name(),
        record.key_ids.join(", ")
    );
    Ok(record)
}

/// Adds an envelope's key ids and context to the audit record (once each).
fn note_header(record: &mut Record, edks: &[EncryptedDataKey], context: &EncryptionContext) {
    for e in edks {
        let id = format!("{}:{}", e.provider_id(), e.key_id());
        if !record.key_ids.contains(&id) {
            record.key_ids.push(id);
        }
    }
    if record.context.is_empty() {
        record.context = context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
    }
}

/// Unwraps data keys, checking the expected context first and reusing the
/// last key when consecutive records share their wrapped keys.
///
/// A data key is only taken if it passes the envelope's key commitment: an
/// encrypted data key that unwraps to another data key (planted by anyone who
/// can wrap under one of the same keys) is passed over for the next one.
struct Unwrapper<'a> {
    keyrings: Vec<&'a dyn Keyring>,
    expected: EncryptionContext,
    /// Keys the context must hold, whatever their values (`--context KEY`).
    required: Vec<String>,
    last: Option<(Vec<EncryptedDataKey>, EncryptionContext, DataKey)>,
}

impl Unwrapper<'_> {
    async fn data_key(
        &mut self,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
        check: &(dyn Fn(&DataKey) -> bool + Sync),
    ) -> Result<DataKey, CliError> {
        context.require(&self.expected)?;
        if let Some(missing) = self.required.iter().find(|k| context.get(k).is_none()) {
            return Err(CliError::new(
                Code::Authentication,
                format!("the encryption context has no {missing:?}, which --context {missing} requires"),
            )
            .hint("rekey inspect shows the context it was encrypted with"));
        }
        if let Some((e, c, key)) = &self.last
            && e == edks
            && c == context
            && check(key)
        {
            return Ok(key.duplicate());
        }
        let key = unwrap_data_key_checked(&self.keyrings, edks, context, check).await?;
        self.last = Some((edks.to_vec(), context.clone(), key.duplicate()));
        Ok(key)
    }

    async fn open_text(
        &mut self,
        text: &str,
        how: &How,
        record: &mut Record,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
        let bytes = decode_text(text)?;
        if esdk::has_esdk_prefix(&bytes) {
            return self.open_esdk(&bytes, how, record).await;
        }
        let envelope = Envelope::parse(&bytes, &how.options)?;
        note_header(record, &envelope.header().encrypted_data_keys, &envelope.header().context);
        let check = |k: &DataKey| envelope.verify_data_key(k).is_ok();
        let key = self.data_key(&envelope.header().encrypted_data_keys, &envelope.header().context, &check).await?;
        Ok(envelope.open(&key)?)
    }

    /// Decrypts an AWS Encryption SDK message with the run's keys: each AWS
    /// KMS wrapped key an allowed keyring accepts, until one opens the whole
    /// message (commitment, header tag, signature, every frame).
    async fn open_esdk(
        &mut self,
        bytes: &[u8],
        how: &How,
        record: &mut Record,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
        let mut options = esdk::describe_options();
        options.max_wrapped_keys = how.options.max_encrypted_data_keys;
        options.allow_non_committing = how.allow_non_committing;
        let message = Message::parse_with(bytes, &options)?;
        let suite = message.suite();
        if !suite.is_committing() && !how.allow_non_committing {
            return Err(CliError::new(
                Code::Authentication,
                format!(
                    "the AWS Encryption SDK message uses {}, which has no key commitment: one message can decrypt \
                     to different plaintexts under different wrapped keys, so it is refused by default",
                    suite.name()
                ),
            )
            .hint(
                "pass --allow-non-committing to read it, then move such messages with `rekey reencrypt --items esdk`",
            ));
        }
        let context = EncryptionContext::from_pairs(message.encryption_context())?;
        let edks = esdk::kms_wrapped_keys(message.wrapped_keys());
        note_header(record, &edks, &context);
        if suite.data_key_len() != 32 {
            return self.open_esdk_short_key(&message, &edks, &context).await;
        }
        let opened = std::sync::Mutex::new(None);
        let check = |k: &DataKey| match message.decrypt(&PlaintextDataKey::from(k.duplicate())) {
            Ok(plaintext) => {
                if let Ok(mut slot) = opened.lock() {
                    *slot = Some(plaintext);
                }
                true
            }
            Err(_) => false,
        };
        self.data_key(&edks, &context, &check).await?;
        let plaintext = opened
            .into_inner()
            .ok()
            .flatten()
            .ok_or_else(|| CliError::new(Code::Authentication, "the message did not decrypt"))?;
        Ok(zeroize::Zeroizing::new(plaintext.as_bytes().to_vec()))
    }
}

impl Unwrapper<'_> {
    /// Opens a message on an AES-128 or AES-192 suite: its 16- or 24-byte
    /// data key is unwrapped by each allowed keyring that accepts a wrapped
    /// key, until one opens the whole message (not cached: such keys are
    /// not rekey's 32-byte `DataKey`).
    async fn open_esdk_short_key(
        &self,
        message: &Message<'_>,
        edks: &[EncryptedDataKey],
        context: &EncryptionContext,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
        context.require(&self.expected)?;
        if let Some(missing) = self.required.iter().find(|k| context.get(k).is_none()) {
            return Err(CliError::new(
                Code::Authentication,
                format!("the encryption context has no {missing:?}, which --context {missing} requires"),
            ));
        }
        let mut last = None;
        for edk in edks {
            for keyring in self.keyrings.iter().filter(|k| k.can_unwrap(edk)) {
                match keyring.unwrap_esdk(std::slice::from_ref(edk), context).await {
                    Ok(key) => match message.decrypt(&key) {
                        Ok(plaintext) => return Ok(zeroize::Zeroizing::new(plaintext.as_bytes().to_vec())),
                        Err(e) => last = Some(CliError::from(e)),
                    },
                    Err(e) => last = Some(CliError::from(e)),
                }
            }
        }
        Err(last.unwrap_or_else(|| CliError::from(envelope_core::hazmat::no_matching_key(edks))))
    }
}

/// Whether the input is an AWS Encryption SDK message: `Some(false)` for
/// the binary form, `Some(true)` for its base64 text (which starts `AYA`
/// for version 1, `AgR4` or `AgV4` for version 2).
fn esdk_form(input: &mut impl BufRead) -> Result<Option<bool>, CliError> {
    let head = input.fill_buf().map_err(|e| CliError::io("cannot read the input", e))?;
    if esdk::has_esdk_prefix(head) {
        return Ok(Some(false));
    }
    let text = head.trim_ascii_start();
    Ok([&b"AYA"[..], b"AgR4", b"AgV4"].iter().any(|p| text.starts_with(p)).then_some(true))
}

/// Whether the input starts like the text form (`UktZ`, base64 of `RKY`).
fn is_text_form(input: &mut impl BufRead) -> Result<bool, CliError> {
    let head = input.fill_buf().map_err(|e| CliError::io("cannot read the input", e))?;
    if head.is_empty() {
        return Err(CliError::new(Code::BadInput, "the input is empty"));
    }
    Ok(head.trim_ascii_start().starts_with(b"UktZ"))
}

fn at_line(e: CliError, line: u64) -> CliError {
    CliError { message: format!("line {line}: {}", e.message), ..e }
}
