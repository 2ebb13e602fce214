//! `rekey encrypt`.

use std::io::{self, IsTerminal, Read, Write};
use std::process::ExitCode;

use envelope_core::{EncryptionContext, Keyring};

use envelope_core::hazmat::{Materials, encode_text, encrypt_stream, generate_materials, seal};
use zeroize::{Zeroize, Zeroizing};

use super::files::{self, CountingReader, CountingWriter, Direction, Job, Metadata, Plan, Record};
use super::{Output, byte_progress, input_len, open_input};
use crate::cli::EncryptArgs;
use crate::exit::{CliError, Code};
use crate::keys::{Keys, parse_context};

/// The most a `--text` input may be: the single-shot form is held in memory.
pub(super) const MAX_TEXT_INPUT: u64 = 64 << 20;

/// The form of the output.
#[derive(Debug, Clone, Copy)]
enum Form {
    /// Framed binary envelopes, streamed.
    Binary { frame_size: u32 },
    /// One single-shot envelope in base64.
    Text,
    /// One text envelope per line of the input.
    Lines,
}

pub(crate) async fn run(keys: &Keys, args: EncryptArgs) -> Result<ExitCode, CliError> {
    let context = parse_context(&args.context)?;
    let frame_size = args.frame_size.unwrap_or(envelope_core::hazmat::DEFAULT_FRAME_LEN);
    envelope_core::hazmat::BodyForm::framed(frame_size).map_err(|e| CliError::usage(format!("--frame-size: {e}")))?;
    let form = if args.lines {
        Form::Lines
    } else if args.text {
        Form::Text
    } else {
        Form::Binary { frame_size }
    };
    let plan = files::plan(&args.files, Direction::Encrypt, args.force)?;
    if let Plan::Single(job) = &plan
        && matches!(form, Form::Binary { .. })
        && job.output.as_ref().is_none_or(|o| o.as_os_str() == "-")
        && io::stdout().is_terminal()
    {
        return Err(CliError::usage("refusing to write binary ciphertext to a terminal")
            .hint("write it to a file with -o FILE or into a pipe, or pass --text for base64"));
    }
    let keyrings = keys.encrypting(&args.keys).await?;
    let keyrings: Vec<&dyn Keyring> = keyrings.iter().map(AsRef::as_ref).collect();
    // One data key for this invocation. Each envelope still gets its own
    // message id and so its own derived key (format §5), which is what makes
    // caching a data key across records and files safe.
    let materials = generate_materials(&keyrings, &context).await?;
    let mut metadata = Metadata::open(args.files.metadata_output.as_deref())?;
    match plan {
        Plan::Single(job) => {
            let result = encrypt_job(&materials, &context, form, &job, args.force, true);
            metadata.write(&job, Direction::Encrypt, result.as_ref())?;
            metadata.finish()?;
            result.map_err(|e| super::naming(e, &job))?;
            Ok(ExitCode::SUCCESS)
        }
        Plan::Many { jobs, out_dir } => {
            files::run_many(jobs, &out_dir, Direction::Encrypt, &mut metadata, async |job: &Job| {
                encrypt_job(&materials, &context, form, job, args.force, false)
            })
            .await
        }
    }
}

/// Encrypts one input into one output.
fn encrypt_job(
    materials: &Materials,
    context: &EncryptionContext,
    form: Form,
    job: &Job,
    force: bool,
    show_bar: bool,
) -> Result<Record, CliError> {
    let mut input = CountingReader { inner: open_input(job.input.as_deref())?, count: 0 };
    let mut output = Output::open(job.output.as_ref(), force, false)?;
    let mut counted = CountingWriter { inner: &mut output, count: 0 };
    let mut records = None;
    match form {
        Form::Lines => {
            let mut lines = SecretLines::new(&mut input);
            let mut n = 0;
            while let Some((line, ending)) = lines.next_line().map_err(|e| CliError::io("cannot read the input", e))? {
                let sealed = seal(materials, context, line)?;
                counted
                    .write_all(encode_text(&sealed).as_bytes())
                    .and_then(|()| counted.write_all(ending))
                    .map_err(|e| CliError::io("cannot write the output", e))?;
                n += 1;
            }
            records = Some(n);
        }
        Form::Text => {
            let plaintext =
                read_secret(&mut input, MAX_TEXT_INPUT + 1).map_err(|e| CliError::io("cannot read the input", e))?;
            if plaintext.len() as u64 > MAX_TEXT_INPUT {
                return Err(CliError::new(Code::BadInput, "the input is too large for --text (64 MiB at most)")
                    .hint("use the binary form (without --text), which streams"));
            }
            let sealed = seal(materials, context, &plaintext)?;
            writeln!(counted, "{}", encode_text(&sealed)).map_err(|e| CliError::io("cannot write the output", e))?;
        }
        Form::Binary { frame_size } => {
            let bar = if show_bar {
                byte_progress(input_len(job.input.as_deref()))
            } else {
                indicatif::ProgressBar::hidden()
            };
            encrypt_stream(materials, context, frame_size, bar.wrap_read(&mut input), &mut counted)?;
            bar.finish_and_clear();
        }
    }
    let output_bytes = counted.count;
    output.finish()?;
    let key_ids: Vec<String> =
        materials.encrypted_data_keys.iter().map(|e| format!("{}:{}", e.provider_id(), e.key_id())).collect();
    tracing::info!("encrypted {} to {} under {}", job.input_name(), job.output_name(), key_ids.join(", "));
    Ok(Record {
        input_bytes: input.count,
        output_bytes,
        key_ids,
        context: context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
        records,
    })
}

/// Grows a zeroizing buffer by hand: a `Vec` that reallocates leaves the old
/// copy of its contents behind, unzeroized, in freed memory; here the old
/// buffer is zeroized when the new one replaces it.
fn reserve_secret(buf: &mut Zeroizing<Vec<u8>>, additional: usize) {
    if buf.capacity() - buf.len() >= additional {
        return;
    }
    let wanted = buf.len().saturating_add(additional).max(buf.capacity().saturating_mul(2)).max(4096);
    let mut bigger = Zeroizing::new(Vec::with_capacity(wanted));
    bigger.extend_from_slice(buf);
    *buf = bigger;
}

/// Reads `input` to its end, or to `limit` bytes, into memory that is
/// zeroized on drop and leaves no copy behind as it grows.
pub(super) fn read_secret(mut input: impl Read, limit: u64) -> io::Result<Zeroizing<Vec<u8>>> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let mut buf = Zeroizing::new(Vec::new());
    let mut chunk = Zeroizing::new([0u8; 8192]);
    while buf.len() < limit {
        let want = chunk.len().min(limit - buf.len());
        let n = match input.read(&mut chunk[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        reserve_secret(&mut buf, n);
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(buf)
}

/// The lines of a plaintext input, each without its ending (`\n`, `\r\n`,
/// or none for a last line without one), handed out with the ending so
/// that the output can keep it: `--lines` round trips byte for byte. Each
/// line sits in one zeroizing buffer that is reused and grown without leaving
/// copies; a line that is not UTF-8 is an error, as `BufRead::lines` makes it.
pub(super) struct SecretLines<R> {
    input: R,
    chunk: Zeroizing<Vec<u8>>,
    start: usize,
    end: usize,
    line: Zeroizing<Vec<u8>>,
    done: bool,
}

impl<R: Read> SecretLines<R> {
    pub(super) fn new(input: R) -> Self {
        Self {
            input,
            chunk: Zeroizing::new(vec![0u8; 1 << 16]),
            start: 0,
            end: 0,
            line: Zeroizing::new(Vec::with_capacity(4096)),
            done: false,
        }
    }

    pub(super) fn next_line(&mut self) -> io::Result<Option<(&[u8], &'static [u8])>> {
        self.line.zeroize();
        loop {
            if self.start == self.end {
                if self.done {
                    return Ok(if self.line.is_empty() { None } else { Some(self.finish()?) });
                }
                match self.input.read(&mut self.chunk) {
                    Ok(0) => self.done = true,
                    Ok(n) => (self.start, self.end) = (0, n),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
                continue;
            }
            let available = &self.chunk[self.start..self.end];
            let (taken, newline) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (i + 1, true),
                None => (available.len(), false),
            };
            reserve_secret(&mut self.line, taken);
            self.line.extend_from_slice(&available[..taken]);
            self.start += taken;
            if newline {
                return Ok(Some(self.finish()?));
            }
        }
    }

    /// The line without its ending, checked to be UTF-8, and the ending.
    fn finish(&mut self) -> io::Result<(&[u8], &'static [u8])> {
        let (len, ending): (usize, &'static [u8]) = if self.line.ends_with(b"\r\n") {
            (self.line.len() - 2, b"\r\n")
        } else if self.line.ends_with(b"\n") {
            (self.line.len() - 1, b"\n")
        } else {
            (self.line.len(), b"")
        };
        let line = &self.line[..len];
        std::str::from_utf8(line)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "stream did not contain valid UTF-8"))?;
        Ok((line, ending))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out at most `step` bytes a call.
    struct Trickle<'a>(&'a [u8], usize);

    impl Read for Trickle<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = self.1.min(buf.len()).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    fn lines_of(input: &[u8], step: usize) -> io::Result<Vec<Vec<u8>>> {
        let mut lines = SecretLines::new(Trickle(input, step));
        let mut out = Vec::new();
        while let Some((line, _)) = lines.next_line()? {
            out.push(line.to_vec());
        }
        Ok(out)
    }

    #[test]
    fn secret_lines_split_like_bufread_lines() {
        let long = "x".repeat(200_000);
        let input = format!("a\r\n\nb\n{long}\nlast");
        for step in [1, 7, 1 << 16, usize::MAX] {
            let want: Vec<Vec<u8>> =
                io::BufRead::lines(input.as_bytes()).map(|l| l.expect("utf-8").into_bytes()).collect();
            assert_eq!(lines_of(input.as_bytes(), step).expect("lines"), want, "step {step}");
        }
        assert!(lines_of(b"", 3).expect("empty").is_empty());
        assert_eq!(lines_of(b"\n", 3).expect("one empty line"), vec![Vec::<u8>::new()]);
        assert_eq!(lines_of(b"ok\n\xff\n", 3).expect_err("not UTF-8").kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn secret_lines_hand_out_each_ending() {
        let mut lines = SecretLines::new(Trickle(b"a\r\nb\n\r\nlast\r", 2));
        let mut got = Vec::new();
        while let Some((line, ending)) = lines.next_line().expect("lines") {
            got.push((line.to_vec(), ending.to_vec()));
        }
        let want: Vec<(Vec<u8>, Vec<u8>)> = [("a", "\r\n"), ("b", "\n"), ("", "\r\n"), ("last\r", "")]
            .iter()
            .map(|(l, e)| (l.as_bytes().to_vec(), e.as_bytes().to_vec()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn read_secret_reads_to_the_limit() {
        let data = vec![7u8; 100_000];
        assert_eq!(read_secret(Trickle(&data, 999), 1 << 20).expect("read").as_slice(), data.as_slice());
        assert_eq!(read_secret(Trickle(&data, 999), 10).expect("read").len(), 10);
    }
}
