//! `rekey encrypt --format esdk`: AWS Encryption SDK messages (version 2,
//! framed, a committing suite) under KMS keys, for teams that keep the SDK
//! on the reading side (docs/format.md §14).
//!
//! Each message gets its own message id, and so its own derived key and key
//! commitment, from envelope-core's writer. The data key, wrapped by every
//! `--key` with the message's context as the KMS context (as the SDK's KMS
//! keyring does), is made once per invocation on the unsigned suite, whose
//! context is the same for every message; a signed message's context holds
//! its own fresh public key, so each signed message needs a data key of its
//! own (one GenerateDataKey per message, and one Encrypt per further key).

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;

use envelope_core::esdk::{DEFAULT_FRAME_LEN, Encryptor, PlaintextDataKey, Suite, WrappedKey};
use envelope_core::hazmat::{Materials, encode_text, generate_materials};
use envelope_core::{EncryptionContext, Keyring};

use super::encrypt::{MAX_TEXT_INPUT, SecretLines, read_secret};
use super::files::{self, CountingReader, CountingWriter, Direction, Job, Metadata, Plan, Record};
use super::{Output, byte_progress, input_len, open_input};
use crate::cli::EncryptArgs;
use crate::exit::{CliError, Code};
use crate::key_spec::KeySpec;
use crate::keys::{Keys, parse_context};

/// The form of the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// One binary message, streamed.
    Binary,
    /// One message in base64 and a newline.
    Text,
    /// One base64 message per line of the input.
    Lines,
}

/// The keys, suite, context and frame length of every message of one invocation.
struct Messages<'a> {
    keyrings: Vec<&'a dyn Keyring>,
    suite: Suite,
    context: EncryptionContext,
    frame_len: u32,
    /// The unsigned suite's one data key and its wrapped copies.
    shared: Option<Materials>,
}

pub(crate) async fn run(keys: &Keys, args: EncryptArgs) -> Result<ExitCode, CliError> {
    if let Some(local) = args.keys.iter().find(|k| !matches!(k, KeySpec::Kms(_))) {
        return Err(CliError::usage(format!(
            "--format esdk writes AWS Encryption SDK messages, which the SDKs open with KMS keys: {local} is not \
             kms:KEY"
        ))
        .hint("pass --key kms:KEY (an ARN lets the SDK's strict provider name the same key)"));
    }
    let context = parse_context(&args.context)?;
    let frame_len = args.frame_size.unwrap_or(DEFAULT_FRAME_LEN);
    let suite = args.algorithm.suite();
    // The checks the writer makes (reserved context keys, frame length), before any KMS call.
    Encryptor::new(Suite::Aes256GcmHkdfSha512Commit, &context)
        .and_then(|e| e.with_frame_len(frame_len))
        .map_err(|e| CliError::usage(format!("--format esdk: {e}")))?;
    let form = if args.lines {
        Form::Lines
    } else if args.text {
        Form::Text
    } else {
        Form::Binary
    };
    let plan = files::plan(&args.files, Direction::Encrypt, args.force)?;
    if let Plan::Single(job) = &plan
        && form == Form::Binary
        && job.output.as_ref().is_none_or(|o| o.as_os_str() == "-")
        && io::stdout().is_terminal()
    {
        return Err(CliError::usage("refusing to write binary ciphertext to a terminal")
            .hint("write it to a file with -o FILE or into a pipe, or pass --text for base64"));
    }
    let keyrings = keys.encrypting(&args.keys).await?;
    let keyrings: Vec<&dyn Keyring> = keyrings.iter().map(AsRef::as_ref).collect();
    let shared = if suite.is_signed() { None } else { Some(generate_materials(&keyrings, &context).await?) };
    let mut messages = Messages { keyrings, suite, context, frame_len, shared };
    let mut metadata = Metadata::open(args.files.metadata_output.as_deref())?;
    match plan {
        Plan::Single(job) => {
            let result = messages.encrypt_job(form, &job, args.force, true).await;
            metadata.write(&job, Direction::Encrypt, result.as_ref())?;
            metadata.finish()?;
            result.map_err(|e| super::naming(e, &job))?;
            Ok(ExitCode::SUCCESS)
        }
        Plan::Many { jobs, out_dir } => {
            files::run_many(jobs, &out_dir, Direction::Encrypt, &mut metadata, async |job: &Job| {
                messages.encrypt_job(form, job, args.force, false).await
            })
            .await
        }
    }
}

impl Messages<'_> {
    /// A new message's encryptor, its data key and the key's wrapped copies.
    async fn next(&self) -> Result<(Encryptor, PlaintextDataKey, Vec<WrappedKey>), CliError> {
        let encryptor = Encryptor::new(self.suite, &self.context)?.with_frame_len(self.frame_len)?;
        let fresh;
        let materials = match &self.shared {
            Some(m) => m,
            None => {
                fresh = generate_materials(&self.keyrings, encryptor.encryption_context()).await?;
                &fresh
            }
        };
        let wrapped = materials
            .encrypted_data_keys
            .iter()
            .map(|e| WrappedKey {
                provider_id: e.provider_id().to_owned(),
                provider_info: e.key_id().as_bytes().to_vec(),
                ciphertext: e.wrapped().to_vec(),
            })
            .collect();
        Ok((encryptor, PlaintextDataKey::from(materials.data_key.duplicate()), wrapped))
    }

    /// Encrypts one input into one output.
    async fn encrypt_job(&mut self, form: Form, job: &Job, force: bool, show_bar: bool) -> Result<Record, CliError> {
        let mut input = CountingReader { inner: open_input(job.input.as_deref())?, count: 0 };
        let mut output = Output::open(job.output.as_ref(), force, false)?;
        let mut counted = CountingWriter { inner: &mut output, count: 0 };
        let mut records = None;
        let mut key_ids = Vec::new();
        match form {
            Form::Lines => {
                let mut lines = SecretLines::new(&mut input);
                let mut n = 0;
                while let Some((line, ending)) =
                    lines.next_line().map_err(|e| CliError::io("cannot read the input", e))?
                {
                    let (encryptor, data_key, wrapped) = self.next().await?;
                    key_ids = labels(&wrapped);
                    let message = encryptor.encrypt(&data_key, &wrapped, line)?;
                    counted
                        .write_all(encode_text(&message).as_bytes())
                        .and_then(|()| counted.write_all(ending))
                        .map_err(|e| CliError::io("cannot write the output", e))?;
                    n += 1;
                }
                records = Some(n);
            }
            Form::Text => {
                let plaintext = read_secret(&mut input, MAX_TEXT_INPUT + 1)
                    .map_err(|e| CliError::io("cannot read the input", e))?;
                if plaintext.len() as u64 > MAX_TEXT_INPUT {
                    return Err(CliError::new(Code::BadInput, "the input is too large for --text (64 MiB at most)")
                        .hint("use the binary form (without --text), which streams"));
                }
                let (encryptor, data_key, wrapped) = self.next().await?;
                key_ids = labels(&wrapped);
                let message = encryptor.encrypt(&data_key, &wrapped, &plaintext)?;
                writeln!(counted, "{}", encode_text(&message))
                    .map_err(|e| CliError::io("cannot write the output", e))?;
            }
            Form::Binary => {
                let bar = if show_bar {
                    byte_progress(input_len(job.input.as_deref()))
                } else {
                    indicatif::ProgressBar::hidden()
                };
                let (encryptor, data_key, wrapped) = self.next().await?;
                key_ids = labels(&wrapped);
                encryptor.encrypt_stream(&data_key, &wrapped, bar.wrap_read(&mut input), &mut counted)?;
                bar.finish_and_clear();
            }
        }
        let output_bytes = counted.count;
        output.finish()?;
        tracing::info!(
            "encrypted {} to {} as AWS Encryption SDK messages ({}) under {}",
            job.input_name(),
            job.output_name(),
            self.suite.name(),
            key_ids.join(", ")
        );
        Ok(Record {
            input_bytes: input.count,
            output_bytes,
            key_ids,
            context: self.context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            records,
        })
    }
}

/// `provider:key id` of each wrapped key, as the metadata output names them.
fn labels(wrapped: &[WrappedKey]) -> Vec<String> {
    wrapped.iter().map(|w| format!("{}:{}", w.provider_id, String::from_utf8_lossy(&w.provider_info))).collect()
}
