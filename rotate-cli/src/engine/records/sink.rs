//! Writing records: to `-o` through a partial file checkpointed in the journal, or to stdout.

use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Seek, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::source::*;
use crate::engine::error::{Error, ErrorKind, ItemError};
use crate::engine::item::Unit;
use crate::engine::journal::{Checkpoint, Entry, Journal};
use crate::engine::ports::{Rejected, Sink};
use crate::engine::report::Counts;
use crate::engine::transform::Outcome;
use crate::fsio;

/// The record with its changed items, or `None` when it cannot be encoded.
pub(super) fn encode_changed(unit: &Unit<RecordUnit>) -> Result<Vec<u8>, String> {
    let record = &unit.payload;
    let body = strip_line_ending(&record.raw);
    let changes = unit.items.iter().enumerate().filter_map(|(i, item)| match &item.result {
        Some(Ok(Outcome::Changed { new, .. })) => Some((i, item, new)),
        _ => None,
    });
    let mut out = match &*record.fields {
        Fields::Json(pointers) => {
            let changes: Vec<(usize, &Vec<u8>)> = changes.map(|(i, _, new)| (i, new)).collect();
            let spans: Option<Vec<(Range<usize>, &Vec<u8>)>> = changes
                .iter()
                .map(|(i, new)| record.spans.get(*i).cloned().flatten().map(|span| (span, *new)))
                .collect();
            match spans {
                // Exact splices, left to right.
                Some(mut spans) => {
                    spans.sort_by_key(|(span, _)| span.start);
                    let mut line = Vec::with_capacity(body.len() + 64);
                    let mut at = 0;
                    for (span, new) in spans {
                        line.extend_from_slice(&body[at..span.start]);
                        line.extend_from_slice(&json_literal(new)?);
                        at = span.end;
                    }
                    line.extend_from_slice(&body[at..]);
                    line
                }
                None => {
                    let mut value: serde_json::Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
                    for (i, new) in changes {
                        let new =
                            String::from_utf8(new.clone()).map_err(|_| "a binary item cannot go into a JSON field")?;
                        if let Some(slot) = value.pointer_mut(&pointers[i]) {
                            *slot = serde_json::Value::String(new);
                        }
                    }
                    serde_json::to_vec(&value).map_err(|e| e.to_string())?
                }
            }
        }
        Fields::Csv(columns) => {
            let mut row = parse_csv(body).map_err(|e| e.to_string())?;
            for (i, _, new) in changes {
                if let Some(slot) = row.get_mut(columns[i].1) {
                    slot.clone_from(new);
                }
            }
            let mut writer = csv::WriterBuilder::new().terminator(csv::Terminator::Any(b'\n')).from_writer(Vec::new());
            writer.write_record(&row).map_err(|e| e.to_string())?;
            let mut bytes = writer.into_inner().map_err(|e| e.to_string())?;
            bytes.pop();
            bytes
        }
    };
    out.extend_from_slice(line_ending(&record.raw));
    Ok(out)
}

/// Where a stream's output goes.
pub(super) enum Out {
    /// `OUT.rekey-partial`, renamed to `OUT` at the end.
    File {
        writer: BufWriter<File>,
        partial: PathBuf,
        target: PathBuf,
        like: Option<PathBuf>,
        written: u64,
    },
    Stdout(BufWriter<io::Stdout>),
}

/// Writes records in order, checkpointing a file output in the journal.
pub struct StreamSink {
    output: Option<PathBuf>,
    input: Option<PathBuf>,
    header: Option<Vec<u8>>,
    state: Mutex<Option<Open>>,
}

/// An open output: where it goes, the journal, and the last record written.
pub(super) struct Open {
    out: Out,
    journal: Option<Arc<Journal>>,
    last: u64,
    checkpointed: std::time::Instant,
}

impl StreamSink {
    /// Writes to `output` (a file; `None` or `-` for stdout), starting with
    /// the CSV `header`; a file output takes the mode of the `input` file.
    pub fn new(output: Option<PathBuf>, input: &Path, header: Option<&[u8]>) -> Self {
        let output = output.filter(|o| o != Path::new("-"));
        let input = (input != Path::new("-")).then(|| input.to_path_buf());
        Self { output, input, header: header.map(<[u8]>::to_vec), state: Mutex::new(None) }
    }

    /// Checks that the output can be created, before anything is written.
    ///
    /// # Errors
    /// An existing output, or a directory that cannot be written.
    pub fn check(&self, resume: bool) -> Result<(), Error> {
        let Some(out) = &self.output else {
            return Ok(());
        };
        if out.exists() && !resume {
            return Err(
                Error::usage(format!("{} already exists", out.display())).hint("remove it or choose another -o")
            );
        }
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let probe = dir.join(format!(".rekey-probe.{}", std::process::id()));
        OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&probe)
            .and_then(|_| std::fs::remove_file(&probe))
            .map_err(|e| Error::io(format!("cannot write in {}", dir.display()), &e))
    }

    fn with_open<T>(&self, f: impl FnOnce(&mut Open) -> Result<T, Error>) -> Result<T, Error> {
        let mut guard = self.state.lock().map_err(|_| Error::new(ErrorKind::Io, "output lock poisoned"))?;
        f(guard.as_mut().ok_or_else(|| Error::new(ErrorKind::Io, "the output is not open"))?)
    }
}

impl Out {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let result = match self {
            Self::File { writer, written, .. } => {
                *written += bytes.len() as u64;
                writer.write_all(bytes)
            }
            Self::Stdout(w) => w.write_all(bytes),
        };
        result.map_err(|e| Error::io("cannot write the output", &e))
    }

    /// Makes everything written durable; returns the byte count.
    fn sync(&mut self) -> Result<u64, Error> {
        match self {
            Self::File { writer, written, .. } => {
                writer.flush().map_err(|e| Error::io("cannot write the output", &e))?;
                writer.get_ref().sync_data().map_err(|e| Error::io("cannot sync the output", &e))?;
                Ok(*written)
            }
            Self::Stdout(w) => {
                w.flush().map_err(|e| Error::io("cannot write to stdout", &e))?;
                Ok(0)
            }
        }
    }
}

impl Sink<RecordUnit> for StreamSink {
    fn start(&self, journal: Option<Arc<Journal>>, checkpoint: Option<&Checkpoint>) -> Result<(), Error> {
        let out = match &self.output {
            None => Out::Stdout(BufWriter::with_capacity(1 << 16, io::stdout())),
            Some(target) => {
                let partial = crate::engine::files::with_suffix(target, ".rekey-partial");
                let io_err = |e: io::Error| Error::io(format!("cannot open {}", partial.display()), &e);
                let (file, written) = match checkpoint.map(|c| c.output_bytes) {
                    Some(bytes) if partial.exists() => {
                        let mut file = OpenOptions::new().write(true).open(&partial).map_err(io_err)?;
                        file.set_len(bytes).map_err(io_err)?;
                        file.seek(io::SeekFrom::End(0)).map_err(io_err)?;
                        (file, bytes)
                    }
                    _ => {
                        let mut options = OpenOptions::new();
                        options.write(true).create(true).truncate(true);
                        #[cfg(unix)]
                        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                        (options.open(&partial).map_err(io_err)?, 0)
                    }
                };
                Out::File {
                    writer: BufWriter::with_capacity(1 << 16, file),
                    partial,
                    target: target.clone(),
                    like: self.input.clone(),
                    written,
                }
            }
        };
        let last = checkpoint.map_or(0, |c| c.records);
        *self.state.lock().map_err(|_| Error::new(ErrorKind::Io, "output lock poisoned"))? =
            Some(Open { out, journal, last, checkpointed: std::time::Instant::now() });
        if checkpoint.is_none()
            && let Some(header) = &self.header
        {
            self.with_open(|open| open.out.write(header))?;
        }
        Ok(())
    }

    async fn write(&self, unit: &mut Unit<RecordUnit>) -> Result<(), ItemError> {
        if unit.changed() {
            let encoded =
                encode_changed(unit).map_err(|e| ItemError::input(format!("cannot encode the record: {e}")))?;
            unit.payload.output = Some(encoded);
        }
        Ok(())
    }

    fn commit(&self, unit: Unit<RecordUnit>, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        let record = unit.payload;
        self.with_open(|open| {
            open.out.write(record.output.as_deref().unwrap_or(&record.raw))?;
            open.last = record.number;
            if open.checkpointed.elapsed() >= CHECKPOINT_EVERY
                && let Some(journal) = &open.journal
            {
                open.checkpointed = std::time::Instant::now();
                let output_bytes = open.out.sync()?;
                let at = Checkpoint { records: record.number, output_bytes, position: None };
                journal.append(&Entry::Checkpoint { at, counts: *counts }, true)?;
            }
            Ok(Vec::new())
        })
    }

    fn finish(&self, complete: bool, counts: &Counts) -> Result<Vec<Rejected>, Error> {
        let mut guard = self.state.lock().map_err(|_| Error::new(ErrorKind::Io, "output lock poisoned"))?;
        let Some(Open { mut out, journal, last, .. }) = guard.take() else {
            return Ok(Vec::new());
        };
        let bytes = out.sync()?;
        let (Out::File { partial, target, like, .. }, Some(journal)) = (out, journal) else {
            return Ok(Vec::new());
        };
        if !complete {
            // Leave the partial output and a checkpoint for --resume.
            let at = Checkpoint { records: last, output_bytes: bytes, position: None };
            journal.append(&Entry::Checkpoint { at, counts: *counts }, true)?;
            return Ok(Vec::new());
        }
        if let Some(like) = like
            && let Ok(meta) = std::fs::metadata(like)
        {
            std::fs::set_permissions(&partial, meta.permissions())
                .map_err(|e| Error::io("cannot set the output's mode", &e))?;
        }
        std::fs::rename(&partial, &target)
            .map_err(|e| Error::io(format!("cannot rename to {}", target.display()), &e))?;
        fsio::sync_dir(&target).map_err(|e| Error::io("cannot sync the output directory", &e))?;
        journal.append(&Entry::Complete { output: target.display().to_string() }, true)?;
        Ok(Vec::new())
    }
}
