//! Re-encrypting a large file as a stream, with the original kept as a hard link until the run is done.

use std::fs::File;
use std::path::{Path, PathBuf};

use std::io::{Read, Write};

use envelope_core::hazmat::{ParseOptions, StreamDecryptor, encrypt_stream};
use zeroize::Zeroizing;

use super::base::*;
use crate::engine::error::{ItemError, ItemErrorCode};
use crate::engine::transform::StreamJob;

/// Decrypts `reader` with the job's data key in one thread and seals the
/// plaintext in this one, through a bounded channel of zeroized chunks:
/// constant memory, and no plaintext ever on disk.
pub(crate) fn reencrypt_stream(
    job: &StreamJob,
    reader: &mut (dyn Read + Send),
    writer: &mut dyn Write,
) -> Result<(), ItemError> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Zeroizing<Vec<u8>>>(PIPE_CHUNKS);
    std::thread::scope(|scope| {
        let decrypting = scope.spawn(move || -> Result<(), ItemError> {
            let decryptor = StreamDecryptor::new(&mut *reader, &ParseOptions::default())?;
            decryptor.decrypt_to(&job.data_key, PipeWriter { tx })?;
            // Read to the end, so the hash covers the whole original.
            std::io::copy(reader, &mut std::io::sink()).map_err(|e| io_error("cannot read", &e))?;
            Ok(())
        });
        let sealed = encrypt_stream(&job.materials, &job.context, job.frame_len, PipeReader::new(rx), writer);
        // The decrypting side's verdict comes first: a failure there ends the
        // pipe early, and a sealed prefix must never pass for the whole.
        decrypting.join().map_err(|_| ItemError::new(ItemErrorCode::Io, "the decrypting thread failed"))??;
        sealed.map(|_| ()).map_err(ItemError::from)
    })
}

/// `--verify` of a streamed re-encryption: the new envelope decrypts, frame
/// by frame, with the new data key.
pub(super) fn verify_stream(job: &StreamJob, written: &Path) -> Result<(), ItemError> {
    let file = File::open(written).map_err(|e| io_error("cannot read back", &e))?;
    StreamDecryptor::new(std::io::BufReader::new(file), &ParseOptions::default())
        .and_then(|d| d.decrypt_to(&job.materials.data_key, std::io::sink()))
        .map(|_| ())
        .map_err(|e| ItemError::new(ItemErrorCode::VerifyFailed, format!("the new envelope does not decrypt: {e}")))
}

/// A second link to the original, beside it, so the rename leaves it on disk.
pub(super) fn link_backup(path: &Path) -> std::io::Result<PathBuf> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    for n in 0u32.. {
        let backup = dir.join(format!(".{name}{BACKUP_MARK}{n}"));
        match std::fs::hard_link(path, &backup) {
            Ok(()) => return Ok(backup),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => {}
            Err(e) => return Err(e),
        }
    }
    unreachable!("the loop returns")
}

/// The decrypting end of the pipe: each write is one zeroized chunk.
pub(super) struct PipeWriter {
    tx: std::sync::mpsc::SyncSender<Zeroizing<Vec<u8>>>,
}

impl Write for PipeWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.tx.send(Zeroizing::new(buf.to_vec())).map_err(|_| std::io::Error::other("the sealing side stopped"))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The sealing end of the pipe.
pub(crate) struct PipeReader {
    rx: std::sync::mpsc::Receiver<Zeroizing<Vec<u8>>>,
    chunk: Zeroizing<Vec<u8>>,
    at: usize,
}

impl PipeReader {
    /// Reads the chunks sent on `rx`, in order, until the sender is dropped.
    pub(crate) fn new(rx: std::sync::mpsc::Receiver<Zeroizing<Vec<u8>>>) -> Self {
        Self { rx, chunk: Zeroizing::new(Vec::new()), at: 0 }
    }
}

impl Read for PipeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.at == self.chunk.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.chunk = chunk;
                    self.at = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = buf.len().min(self.chunk.len() - self.at);
        buf[..n].copy_from_slice(&self.chunk[self.at..self.at + n]);
        self.at += n;
        Ok(n)
    }
}
