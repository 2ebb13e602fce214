//! `rekey decrypt`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use envelope_core::{
    DataKey, EncryptedDataKey, EncryptionContext, Envelope, Keyring, ParseOptions, StreamDecryptor, decode_text,
    unwrap_data_key_checked, verify_commitment,
};

use super::{Output, byte_progress, input_len, open_input};
use crate::cli::DecryptArgs;
use crate::exit::{CliError, Code};
use crate::keys::{Keys, parse_context};

/// The most a text-form input may be; the binary form streams.
const MAX_TEXT_INPUT: u64 = 128 << 20;

pub(crate) async fn run(keys: &Keys, args: DecryptArgs) -> Result<ExitCode, CliError> {
    let expected = parse_context(&args.context)?;
    let options = ParseOptions { max_encrypted_data_keys: args.max_encrypted_data_keys };
    let keyrings = keys.decrypting(&args.keys, &args.discovery).await?;
    if keyrings.is_empty() {
        return Err(CliError::usage("no key may decrypt: the local keystore is empty and no --key was given")
            .hint("pass --key local:NAME or --key kms:KEY, or --kms-discovery --discovery-account ACCOUNT_ID"));
    }
    let keyrings: Vec<&dyn Keyring> = keyrings.iter().map(AsRef::as_ref).collect();
    let mut unwrapper = Unwrapper { keyrings, expected, last: None };
    let mut input = BufReader::with_capacity(1 << 16, open_input(args.input.as_deref())?);
    let mut output = Output::open(args.output.as_ref(), args.force, true)?;

    if args.lines {
        for (number, line) in input.lines().enumerate() {
            let line = line.map_err(|e| CliError::io("cannot read the input", e))?;
            let plaintext = unwrapper.open_text(&line, &options).await.map_err(|e| at_line(e, number + 1))?;
            output
                .write_all(&plaintext)
                .and_then(|()| output.write_all(b"\n"))
                .map_err(|e| CliError::io("cannot write the output", e))?;
        }
    } else if is_text_form(&mut input)? {
        let mut text = String::new();
        input
            .take(MAX_TEXT_INPUT)
            .read_to_string(&mut text)
            .map_err(|_| CliError::new(Code::BadInput, "the text form is not valid UTF-8 base64"))?;
        let plaintext = unwrapper.open_text(&text, &options).await?;
        output.write_all(&plaintext).map_err(|e| CliError::io("cannot write the output", e))?;
    } else {
        let bar = byte_progress(input_len(args.input.as_deref()));
        let decryptor = StreamDecryptor::new(bar.wrap_read(input), &options)?;
        let header = decryptor.header().clone();
        let check = |k: &DataKey| verify_commitment(&header, k).is_ok();
        let key = unwrapper.data_key(&header.encrypted_data_keys, &header.context, &check).await?;
        decryptor.decrypt_to(&key, &mut output)?;
        bar.finish_and_clear();
    }
    output.finish()?;
    Ok(ExitCode::SUCCESS)
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

    async fn open_text(&mut self, text: &str, options: &ParseOptions) -> Result<zeroize::Zeroizing<Vec<u8>>, CliError> {
        let bytes = decode_text(text)?;
        let envelope = Envelope::parse(&bytes, options)?;
        let check = |k: &DataKey| envelope.verify_data_key(k).is_ok();
        let key = self.data_key(&envelope.header().encrypted_data_keys, &envelope.header().context, &check).await?;
        Ok(envelope.open(&key)?)
    }
}

/// Whether the input starts like the text form (`UktZ`, base64 of `RKY`).
fn is_text_form(input: &mut impl BufRead) -> Result<bool, CliError> {
    let head = input.fill_buf().map_err(|e| CliError::io("cannot read the input", e))?;
    if head.is_empty() {
        return Err(CliError::new(Code::BadInput, "the input is empty"));
    }
    Ok(head.trim_ascii_start().starts_with(b"UktZ"))
}

fn at_line(e: CliError, line: usize) -> CliError {
    CliError { message: format!("line {line}: {}", e.message), ..e }
}
