//! One module per subcommand.

pub(crate) mod audit;
pub(crate) mod decrypt;
pub(crate) mod demo;
pub(crate) mod dynamodb;
pub(crate) mod encrypt;
pub(crate) mod encrypt_esdk;
pub(crate) mod files;
pub(crate) mod inspect;
pub(crate) mod keys;
pub(crate) mod keyset;
pub(crate) mod man;
pub(crate) mod rotate;
pub(crate) mod run;
pub(crate) mod s3;
pub(crate) mod targets;

use std::fs::File;
use std::io::{self, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use crate::exit::{CliError, Code};
use rotate_cli::fsio::AtomicFile;

/// Opens the input: a file, or stdin for none or `-`. On a terminal, stdin
/// is read after a note saying so: a command waiting silently looks hung.
pub(crate) fn open_input(path: Option<&Path>) -> Result<Box<dyn Read>, CliError> {
    match path {
        Some(p) if p != Path::new("-") => {
            if p.is_dir() {
                return Err(CliError::usage(format!("{} is a directory", p.display()))
                    .hint("pass -r to work on the files under it, with -o DIR for the results"));
            }
            let file = File::open(p).map_err(|e| CliError::io(format!("cannot open {}", p.display()), e))?;
            Ok(Box::new(io::BufReader::with_capacity(1 << 16, file)))
        }
        _ => {
            if io::stdin().is_terminal() {
                crate::ui::note("reading standard input from the terminal; end it with Ctrl-D (or pass a file)");
            }
            Ok(Box::new(io::stdin().lock()))
        }
    }
}

/// `e` with the input's path in front, so that an error names its file.
pub(crate) fn naming(e: CliError, job: &files::Job) -> CliError {
    match &job.input {
        Some(path) if path.as_os_str() != "-" && !e.closed_pipe && !e.message.contains(&path.display().to_string()) => {
            CliError { message: format!("{}: {}", path.display(), e.message), ..e }
        }
        _ => e,
    }
}

/// Where a command's output goes: a file written atomically, or stdout.
pub(crate) enum Output {
    File(AtomicFile),
    Stdout(io::StdoutLock<'static>),
}

impl Output {
    /// Opens the output. An existing file is replaced only with `force`;
    /// `plaintext` refuses a terminal on stdout unless `force`.
    pub(crate) fn open(path: Option<&PathBuf>, force: bool, plaintext: bool) -> Result<Self, CliError> {
        match path {
            Some(p) if p != Path::new("-") => {
                if p.exists() && !force {
                    return Err(CliError::new(Code::Io, format!("{} already exists", p.display()))
                        .hint("pass --force to replace it"));
                }
                let file = AtomicFile::create(p, None)
                    .map_err(|e| CliError::io(format!("cannot write {}", p.display()), e))?;
                Ok(Self::File(file))
            }
            _ => {
                if plaintext && !force && io::stdout().is_terminal() {
                    return Err(CliError::usage("refusing to write decrypted data to a terminal")
                        .hint("use -o FILE, a pipe, or --force"));
                }
                Ok(Self::Stdout(io::stdout().lock()))
            }
        }
    }

    /// Makes the output final: renames the file into place, or flushes stdout.
    pub(crate) fn finish(self) -> Result<(), CliError> {
        match self {
            Self::File(file) => file.commit().map_err(|e| CliError::io("cannot finish the output file", e)),
            Self::Stdout(mut out) => out.flush().map_err(|e| CliError::io("cannot write to stdout", e)),
        }
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::File(f) => f.write(buf),
            Self::Stdout(s) => s.write(buf),
        }
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::File(f) => f.write_vectored(bufs),
            Self::Stdout(s) => s.write_vectored(bufs),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::File(f) => f.flush(),
            Self::Stdout(s) => s.flush(),
        }
    }
}

/// A progress bar on stderr for `total` bytes, shown only on a terminal and
/// for inputs big enough to be worth it.
pub(crate) fn byte_progress(total: Option<u64>) -> indicatif::ProgressBar {
    match total {
        Some(len) if len >= 8 << 20 && io::stderr().is_terminal() && !crate::ui::quiet() => {
            let bar = indicatif::ProgressBar::new(len);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }
        _ => indicatif::ProgressBar::hidden(),
    }
}

/// The size of the input file, if it is one.
pub(crate) fn input_len(path: Option<&Path>) -> Option<u64> {
    path.filter(|p| *p != Path::new("-")).and_then(|p| std::fs::metadata(p).ok()).map(|m| m.len())
}
