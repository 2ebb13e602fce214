//! What the parts of the file target share: their constants, file stamps, globs and names.

use std::fs::File;
use std::path::{Path, PathBuf};

use std::io::{Read, Write};

use envelope_core::FormatError;

use envelope_core::hazmat::{BodyForm, Header, ParseOptions};
use globset::{Glob, GlobSet, GlobSetBuilder};
use sha2::{Digest, Sha256};

use crate::engine::error::{Error, ItemError, ItemErrorCode};
use crate::engine::journal::{self};

/// Suffixes of files the engine writes itself and never treats as items.
pub(super) const OWN_SUFFIXES: [&str; 3] = [".rekey-journal", ".failures.jsonl", ".rekey-partial"];
/// In names of the originals kept for rollback of streamed re-encryptions.
pub(super) const BACKUP_MARK: &str = ".rekey-orig.";
/// Framed envelopes from this size on are streamed: only their header is held.
pub(super) const STREAM_FROM: u64 = 8 << 20;
/// The largest header read when streaming.
pub(super) const MAX_HEADER: usize = 4 << 20;
/// Plaintext chunks in flight between the decrypting and the encrypting thread.
pub(crate) const PIPE_CHUNKS: usize = 8;

/// Identifies the exact file that was read: a rename over it or a write to
/// it changes at least one of these. (Not the ctime: renaming the file
/// itself, as the atomic exchange does, changes that.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    pub(super) dev: u64,
    pub(super) ino: u64,
    pub(super) len: u64,
    pub(super) mtime_ns: i128,
}

impl Stamp {
    pub(super) fn of(path: &Path) -> std::io::Result<Self> {
        let meta = std::fs::symlink_metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(Self {
                dev: meta.dev(),
                ino: meta.ino(),
                len: meta.len(),
                mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
            })
        }
        #[cfg(not(unix))]
        {
            let mtime = meta.modified()?.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as i128);
            Ok(Self { dev: 0, ino: 0, len: meta.len(), mtime_ns: mtime })
        }
    }
}

/// SHA-256 of a file, streamed.
pub(super) fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut hash = Sha256::new();
    let mut reader =
        HashingReader { inner: std::io::BufReader::with_capacity(1 << 16, File::open(path)?), hash: &mut hash };
    std::io::copy(&mut reader, &mut std::io::sink())?;
    Ok(journal::hex(&hash.finalize()))
}

/// A glob set, `None` for no patterns.
///
/// # Errors
/// A usage error naming a pattern that is not a glob.
pub fn globs(patterns: &[String]) -> Result<Option<GlobSet>, Error> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for p in patterns {
        builder.add(Glob::new(p).map_err(|e| Error::usage(format!("bad glob {p:?}: {e}")))?);
    }
    builder.build().map(Some).map_err(|e| Error::usage(format!("bad globs: {e}")))
}

/// `path` with `suffix` appended to its file name.
pub fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

pub(super) fn io_error(what: &str, e: &dyn std::fmt::Display) -> ItemError {
    ItemError::new(ItemErrorCode::Io, format!("{what}: {e}"))
}

/// The header of a framed envelope at the start of `path`, or `None` when
/// the file is something else (it is then read whole).
pub(super) fn read_framed_header(path: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let mut file = File::open(path)?;
    let mut buf = Vec::with_capacity(1 << 12);
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        match Header::parse_prefix(&buf, &ParseOptions { max_encrypted_data_keys: 255 }) {
            Ok((header, _, len)) => {
                buf.truncate(len);
                return Ok(matches!(header.body_form, BodyForm::Framed { .. }).then_some(buf));
            }
            Err(FormatError::Truncated(_)) if buf.len() < MAX_HEADER => {
                let n = file.read(&mut chunk)?;
                if n == 0 {
                    return Ok(None);
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Err(_) => return Ok(None),
        }
    }
}

pub(super) struct HashingReader<'a, R> {
    pub(super) inner: R,
    pub(super) hash: &'a mut Sha256,
}

impl<R: Read> Read for HashingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
}

pub(super) struct HashingWriter<'a, W: ?Sized> {
    pub(super) inner: &'a mut W,
    pub(super) hash: &'a mut Sha256,
}

impl<W: Write + ?Sized> Write for HashingWriter<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
