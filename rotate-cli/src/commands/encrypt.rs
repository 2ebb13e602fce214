//! `rekey encrypt`.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::ExitCode;

use envelope_core::{Keyring, encode_text, encrypt_stream, generate_materials, seal};

use super::{Output, byte_progress, input_len, open_input};
use crate::cli::EncryptArgs;
use crate::exit::{CliError, Code};
use crate::keys::{Keys, parse_context};

/// The most a `--text` input may be: the single-shot form is held in memory.
const MAX_TEXT_INPUT: u64 = 64 << 20;

pub(crate) async fn run(keys: &Keys, args: EncryptArgs) -> Result<ExitCode, CliError> {
    let context = parse_context(&args.context)?;
    envelope_core::BodyForm::framed(args.frame_size).map_err(|e| CliError::usage(format!("--frame-size: {e}")))?;
    let keyrings = keys.encrypting(&args.keys).await?;
    let keyrings: Vec<&dyn Keyring> = keyrings.iter().map(AsRef::as_ref).collect();
    // One data key for this invocation. Each envelope still gets its own
    // message id and so its own derived key (format §5), which is what makes
    // caching a data key across records safe.
    let materials = generate_materials(&keyrings, &context).await?;
    let input = open_input(args.input.as_deref())?;
    let mut output = Output::open(args.output.as_ref(), args.force, false)?;

    if args.lines {
        for line in BufReader::new(input).lines() {
            let line = zeroize::Zeroizing::new(line.map_err(|e| CliError::io("cannot read the input", e))?);
            let sealed = seal(&materials, &context, line.as_bytes())?;
            writeln!(output, "{}", encode_text(&sealed)).map_err(|e| CliError::io("cannot write the output", e))?;
        }
    } else if args.text {
        let mut plaintext = zeroize::Zeroizing::new(Vec::new());
        input
            .take(MAX_TEXT_INPUT + 1)
            .read_to_end(&mut plaintext)
            .map_err(|e| CliError::io("cannot read the input", e))?;
        if plaintext.len() as u64 > MAX_TEXT_INPUT {
            return Err(CliError::new(Code::BadInput, "the input is too large for --text (64 MiB at most)")
                .hint("use the binary form (without --text), which streams"));
        }
        let sealed = seal(&materials, &context, &plaintext)?;
        writeln!(output, "{}", encode_text(&sealed)).map_err(|e| CliError::io("cannot write the output", e))?;
    } else {
        let bar = byte_progress(input_len(args.input.as_deref()));
        encrypt_stream(&materials, &context, args.frame_size, bar.wrap_read(input), &mut output)?;
        bar.finish_and_clear();
    }
    output.finish()?;
    Ok(ExitCode::SUCCESS)
}
