//! Several inputs and directories for `encrypt` and `decrypt`: which file
//! goes where, checked before anything is written; a bar over the files, a
//! summary, and the `--metadata-output` audit lines.
//!
//! One input file (or stdin) keeps the single-file behaviour: output to `-o
//! FILE` or stdout. Several inputs, or a directory with `-r`, need `-o DIR`;
//! the tree under each directory is mirrored there, and each file name gets
//! `--suffix` added (encrypt) or removed (decrypt).

use std::fs::OpenOptions;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::cli::FilesArgs;
use crate::exit::{CliError, Code};
use crate::ui;

/// Which way the files go: it decides the output names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Direction {
    Encrypt,
    Decrypt,
}

impl Direction {
    fn verb(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypted",
            Self::Decrypt => "decrypted",
        }
    }
}

/// One input and where its result goes; `None` is stdin or stdout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) input: Option<PathBuf>,
    pub(crate) output: Option<PathBuf>,
}

impl Job {
    /// The input as reports name it.
    pub(crate) fn input_name(&self) -> String {
        self.input.as_ref().map_or_else(|| "-".to_owned(), |p| p.display().to_string())
    }

    /// The output as reports name it.
    pub(crate) fn output_name(&self) -> String {
        self.output.as_ref().map_or_else(|| "-".to_owned(), |p| p.display().to_string())
    }
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Plan {
    /// One input (or stdin) to one output (or stdout).
    Single(Job),
    /// Files into an output directory.
    Many { jobs: Vec<Job>, out_dir: PathBuf },
}

/// Turns the inputs into jobs; refuses what cannot work before any write:
/// a directory without `-r`, several inputs without `-o DIR`, two inputs
/// with one output name, outputs that exist (without `force`).
pub(crate) fn plan(args: &FilesArgs, direction: Direction, force: bool) -> Result<Plan, CliError> {
    let inputs: Vec<&PathBuf> = args.inputs.iter().collect();
    let stdin = Path::new("-");
    let out_is_dir = args.output.as_ref().is_some_and(|o| o.is_dir() || o.as_os_str().to_string_lossy().ends_with('/'));
    match inputs[..] {
        [] => return Ok(Plan::Single(Job { input: None, output: args.output.clone() })),
        [one] if one == stdin => return Ok(Plan::Single(Job { input: None, output: args.output.clone() })),
        [one] if !one.is_dir() && !out_is_dir => {
            return Ok(Plan::Single(Job { input: Some(one.clone()), output: args.output.clone() }));
        }
        _ => {}
    }
    if inputs.iter().any(|i| *i == stdin) {
        return Err(CliError::usage("'-' (stdin) cannot be one of several inputs"));
    }
    for input in &inputs {
        if input.is_dir() && !args.recursive {
            return Err(CliError::usage(format!("{} is a directory", input.display()))
                .hint("pass -r to work on the files under it, with -o DIR for the results"));
        }
    }
    let Some(out_dir) = args.output.clone() else {
        return Err(CliError::usage(if inputs.len() > 1 {
            "several inputs need an output directory"
        } else {
            "a directory needs an output directory"
        })
        .hint("pass -o DIR (created if missing); the tree under each directory is mirrored there"));
    };
    if out_dir.exists() && !out_dir.is_dir() {
        return Err(CliError::usage(format!("{} is not a directory", out_dir.display()))
            .hint("with several inputs or a directory, -o names the output directory"));
    }
    let include = rotate_cli::engine::files::globs(&args.include)?;
    let exclude = rotate_cli::engine::files::globs(&args.exclude)?;
    let out_canonical = out_dir.canonicalize().ok();
    let mut jobs: Vec<Job> = Vec::new();
    for root in inputs {
        if !root.is_dir() {
            let name = root.file_name().ok_or_else(|| CliError::usage(format!("{} names no file", root.display())))?;
            jobs.push(Job {
                input: Some(root.clone()),
                output: Some(out_dir.join(rename(name, direction, &args.suffix))),
            });
            continue;
        }
        // The output directory may sit inside an input: never read our own results.
        let is_out_dir = |p: &Path| out_canonical.as_ref().is_some_and(|o| p.canonicalize().is_ok_and(|p| &p == o));
        for entry in walkdir::WalkDir::new(root).sort_by_file_name().into_iter().filter_entry(|e| !is_out_dir(e.path()))
        {
            let entry = entry.map_err(|e| {
                let path = e.path().unwrap_or(root).display().to_string();
                CliError::new(
                    Code::Io,
                    format!("cannot list {path}: {}", e.io_error().map_or_else(|| e.to_string(), ToString::to_string)),
                )
            })?;
            let path = entry.path();
            if !entry.file_type().is_file() {
                continue;
            }
            let relative = path.strip_prefix(root).unwrap_or(path);
            if include.as_ref().is_some_and(|g| !g.is_match(relative))
                || exclude.as_ref().is_some_and(|g| g.is_match(relative))
            {
                continue;
            }
            let name = relative.file_name().unwrap_or_default();
            let output = out_dir.join(relative.with_file_name(rename(name, direction, &args.suffix)));
            jobs.push(Job { input: Some(path.to_path_buf()), output: Some(output) });
        }
    }
    let mut seen = std::collections::HashMap::new();
    for job in &jobs {
        if let Some(first) = seen.insert(job.output.clone(), job.input_name()) {
            return Err(CliError::usage(format!(
                "{} and {} would both be written to {}",
                first,
                job.input_name(),
                job.output_name()
            ))
            .hint("give them separate runs or output directories"));
        }
    }
    if !force {
        let existing: Vec<String> = jobs
            .iter()
            .filter_map(|j| j.output.as_ref())
            .filter(|o| o.exists())
            .map(|o| o.display().to_string())
            .collect();
        if let Some(first) = existing.first() {
            return Err(CliError::new(
                Code::Io,
                format!(
                    "{} already {} (first: {first})",
                    ui::plural(existing.len() as u64, "output", "outputs"),
                    if existing.len() == 1 { "exists" } else { "exist" }
                ),
            )
            .hint("pass --force to replace them, or choose another -o DIR"));
        }
    }
    Ok(Plan::Many { jobs, out_dir })
}

/// The output name of an input name.
fn rename(name: &std::ffi::OsStr, direction: Direction, suffix: &str) -> std::ffi::OsString {
    let text = name.to_string_lossy();
    match direction {
        Direction::Encrypt => {
            let mut out = name.to_owned();
            out.push(suffix);
            out
        }
        Direction::Decrypt => match text.strip_suffix(suffix) {
            Some(stem) if !suffix.is_empty() && !stem.is_empty() => stem.into(),
            _ => {
                let mut out = name.to_owned();
                out.push(".decrypted");
                out
            }
        },
    }
}

/// Runs `each` over the jobs of an output directory, with a bar on a
/// terminal; reports each failure with its path and goes on; prints the
/// summary. Exit 6 when some file failed.
pub(crate) async fn run_many<F>(
    jobs: Vec<Job>,
    out_dir: &Path,
    direction: Direction,
    metadata: &mut Metadata,
    mut each: F,
) -> Result<std::process::ExitCode, CliError>
where
    F: AsyncFnMut(&Job) -> Result<Record, CliError>,
{
    let bar = if io::stderr().is_terminal() && !ui::quiet() {
        let bar = indicatif::ProgressBar::new(jobs.len() as u64);
        bar.set_style(ui::bar_style("{bar:30} {pos}/{len} files {rate} eta {eta}"));
        bar
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (mut done, mut failed, mut bytes) = (0u64, 0u64, 0u64);
    for job in &jobs {
        if let Some(parent) = job.output.as_ref().and_then(|o| o.parent()) {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::io(format!("cannot create {}", parent.display()), e))?;
        }
        match each(job).await {
            Ok(record) => {
                done += 1;
                // Plaintext bytes, whichever way.
                bytes += if direction == Direction::Encrypt { record.input_bytes } else { record.output_bytes };
                metadata.write(job, direction, Ok(&record))?;
            }
            Err(e) => {
                failed += 1;
                bar.suspend(|| eprintln!("rekey: error: {}: {e}", job.input_name()));
                metadata.write(job, direction, Err(&e))?;
            }
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    if !ui::quiet() {
        ui::outln!(
            "{} {} ({}) into {}{}",
            direction.verb(),
            ui::plural(done, "file", "files"),
            ui::bytes(bytes),
            out_dir.display(),
            if failed > 0 { format!(", {} failed", ui::count(failed)) } else { String::new() }
        )?;
    }
    metadata.finish()?;
    Ok(if failed > 0 { std::process::ExitCode::from(Code::Partial as u8) } else { std::process::ExitCode::SUCCESS })
}

/// What one job did, for the summary and the audit line.
#[derive(Debug, Default)]
pub(crate) struct Record {
    pub(crate) input_bytes: u64,
    pub(crate) output_bytes: u64,
    /// `provider:key id` of each wrapped data key.
    pub(crate) key_ids: Vec<String>,
    pub(crate) context: Vec<(String, String)>,
    /// Records, with `--lines`.
    pub(crate) records: Option<u64>,
}

/// `--metadata-output`: one JSON line per input, appended.
pub(crate) struct Metadata(Option<(PathBuf, io::BufWriter<std::fs::File>)>);

impl Metadata {
    /// Opens (appends to) the file, if one was asked for.
    pub(crate) fn open(path: Option<&Path>) -> Result<Self, CliError> {
        let Some(path) = path else { return Ok(Self(None)) };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| CliError::io(format!("cannot open the metadata output {}", path.display()), e))?;
        Ok(Self(Some((path.to_path_buf(), io::BufWriter::new(file)))))
    }

    /// Appends the line of one job.
    pub(crate) fn write(
        &mut self,
        job: &Job,
        direction: Direction,
        result: Result<&Record, &CliError>,
    ) -> Result<(), CliError> {
        let Some((path, writer)) = &mut self.0 else { return Ok(()) };
        let line = metadata_line(job, direction, result);
        writeln!(writer, "{line}").map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
    }

    /// Flushes what was written.
    pub(crate) fn finish(&mut self) -> Result<(), CliError> {
        let Some((path, writer)) = &mut self.0 else { return Ok(()) };
        writer.flush().map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))
    }
}

/// The audit line of one job: names, keys, context, sizes and outcome; never content.
fn metadata_line(job: &Job, direction: Direction, result: Result<&Record, &CliError>) -> Value {
    let mut line = json!({
        "operation": match direction { Direction::Encrypt => "encrypt", Direction::Decrypt => "decrypt" },
        "input": job.input_name(),
        "output": job.output_name(),
    });
    match result {
        Ok(record) => {
            let context: serde_json::Map<String, Value> =
                record.context.iter().map(|(k, v)| (k.clone(), Value::from(v.as_str()))).collect();
            line["outcome"] = json!("ok");
            line["key_ids"] = json!(record.key_ids);
            line["context"] = Value::Object(context);
            line["input_bytes"] = json!(record.input_bytes);
            line["output_bytes"] = json!(record.output_bytes);
            if let Some(n) = record.records {
                line["records"] = json!(n);
            }
        }
        Err(e) => {
            line["outcome"] = json!("failed");
            line["exit_code"] = json!(e.code as u8);
            line["error"] = json!(e.message);
        }
    }
    line
}

/// A reader that counts the bytes it hands out.
pub(crate) struct CountingReader<R> {
    pub(crate) inner: R,
    pub(crate) count: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

impl<R: io::BufRead> io::BufRead for CountingReader<R> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.count += amount as u64;
        self.inner.consume(amount);
    }
}

/// A writer that counts the bytes it takes.
pub(crate) struct CountingWriter<'a, W> {
    pub(crate) inner: &'a mut W,
    pub(crate) count: u64,
}

impl<W: Write> Write for CountingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    // Passed on, so a batch of decrypted frames stays one system call.
    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_gain_and_lose_the_suffix() {
        let name = |n: &str, d| rename(std::ffi::OsStr::new(n), d, ".rky").to_string_lossy().into_owned();
        assert_eq!(name("a.txt", Direction::Encrypt), "a.txt.rky");
        assert_eq!(name("a.txt.rky", Direction::Decrypt), "a.txt");
        assert_eq!(name("a.bin", Direction::Decrypt), "a.bin.decrypted");
        assert_eq!(name(".rky", Direction::Decrypt), ".rky.decrypted");
    }
}
