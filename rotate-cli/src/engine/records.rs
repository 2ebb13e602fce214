//! Record streams (database exports): JSON Lines with items in fields named
//! by JSON Pointer, or CSV with items in named columns. Every other field is
//! left as it is and the order of records is kept.
//!
//! The input is never modified. Output to a file goes to `OUT.rekey-partial`
//! and is renamed into place at the end; the journal checkpoints (records
//! consumed, output bytes durable), so `--resume` truncates the partial
//! output to the last checkpoint and carries on from there.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use super::files::with_suffix;
use super::journal::{self, Entry, Journal};
use super::report::{FailureLog, Stats, Summary};
use super::transform::{ItemError, Outcome, Transform};
use super::{Settings, apply_with_retries, ordered_pipeline, progress_bar};
use crate::exit::{CliError, Code};

/// Records between durable checkpoints.
const CHECKPOINT_EVERY: u64 = 4096;
/// Records per worker task.
const BATCH: usize = 64;

/// How records are laid out.
pub(crate) enum RecordFormat {
    /// JSON Lines; the items are string values at these JSON Pointers.
    JsonLines(Vec<String>),
    /// CSV with a header row; the items are in these columns.
    Csv(Vec<String>),
}

/// One record stream.
pub(crate) struct RecordStream {
    pub(crate) input: PathBuf,
    pub(crate) output: Option<PathBuf>,
    pub(crate) format: RecordFormat,
}

/// A record on its way through the engine: its raw form and the items in it.
struct Record {
    number: u64,
    fields: RecordFields,
}

enum RecordFields {
    /// A JSON line as read; workers parse it, keeping parsing off the reader.
    JsonLine(String),
    Json(serde_json::Value),
    Csv(csv::StringRecord),
}

impl RecordStream {
    pub(crate) async fn run(
        &self,
        transform: Arc<Transform>,
        settings: &Settings,
        operation: &'static str,
    ) -> Result<Summary, CliError> {
        let start = Instant::now();
        let stats = Arc::new(Stats::default());
        let stdin = self.input == Path::new("-");
        let input: Box<dyn Read + Send> = if stdin {
            Box::new(io::stdin())
        } else {
            Box::new(
                File::open(&self.input)
                    .map_err(|e| CliError::io(format!("cannot open {}", self.input.display()), e))?,
            )
        };
        let output_file = self.output.as_ref().filter(|p| *p != Path::new("-"));
        let journal_path = settings.journal.clone().or_else(|| output_file.map(|o| with_suffix(o, ".rekey-journal")));
        let failures_path =
            settings.failures.clone().or_else(|| journal_path.as_ref().map(|j| with_suffix(j, ".failures.jsonl")));
        let failures_path = failures_path.filter(|_| !settings.dry_run);
        let failures = Arc::new(FailureLog::new(failures_path));

        // Where to write, and from which record to start.
        let (mut sink, skip_records, journal) = match (output_file, settings.dry_run) {
            (Some(out), false) => {
                let journal_path = journal_path.clone().unwrap_or_else(|| with_suffix(out, ".rekey-journal"));
                let resume_from =
                    if settings.resume && journal_path.exists() { last_checkpoint(&journal_path)? } else { None };
                let run = Entry::Run {
                    operation: operation.to_owned(),
                    targets: vec![self.input.display().to_string()],
                    version: 1,
                };
                let journal = Journal::open(&journal_path, settings.resume, &run)?;
                let partial = with_suffix(out, ".rekey-partial");
                let (file, skip, written) = open_partial(&partial, resume_from)?;
                (
                    Sink::File {
                        writer: BufWriter::with_capacity(1 << 16, file),
                        partial,
                        target: out.clone(),
                        written,
                    },
                    skip,
                    Some(journal),
                )
            }
            (_, true) => (Sink::Discard, 0, None),
            (None, false) => (Sink::Stdout(BufWriter::new(io::stdout())), 0, None),
        };

        let bar = progress_bar(settings.progress && output_file.is_some(), None);
        let attempts = settings.item_attempts.max(1);
        let mut reader = Reader::new(input, &self.format)?;
        if let Some(header) = reader.csv_header()
            && skip_records == 0
        {
            sink.write_csv(header)?;
        }
        let pointers = Arc::new(match &self.format {
            RecordFormat::JsonLines(p) => p.clone(),
            RecordFormat::Csv(columns) => reader.column_indexes(columns)?.iter().map(ToString::to_string).collect(),
        });

        let mut taken = 0u64;
        let limit = settings.limit;
        let mut records = std::iter::from_fn(|| reader.next_record().transpose())
            .filter(|r| r.as_ref().map_or(true, |rec| rec.number > skip_records))
            .take_while(move |_| {
                taken += 1;
                limit.is_none_or(|l| taken <= l)
            });
        // Records travel in small batches: one task per batch rather than per
        // record keeps scheduling costs off the profile; order is kept either way.
        let batches = std::iter::from_fn(move || {
            let batch: Result<Vec<Record>, CliError> = records.by_ref().take(BATCH).collect();
            match batch {
                Ok(b) if b.is_empty() => None,
                other => Some(other),
            }
        });
        let work = |batch: Vec<Record>| {
            let transform = Arc::clone(&transform);
            let pointers = Arc::clone(&pointers);
            async move {
                let mut done = Vec::with_capacity(batch.len());
                for record in batch {
                    done.push(process_record(&transform, record, &pointers, attempts).await);
                }
                done
            }
        };
        let max_failures = settings.max_failures;
        let mut consumed = skip_records;
        let mut aborted = false;
        ordered_pipeline(batches, settings.concurrency, work, |batch| {
            for (number, encoded, results) in batch {
                bar.inc(1);
                consumed = number;
                for (item, result, attempts) in results {
                    if stats.count(&failures, &item, operation, result, attempts)?
                        && max_failures.is_some_and(|m| Stats::get(&stats.failed) >= m)
                    {
                        aborted = true;
                    }
                }
                sink.write_bytes(&encoded)?;
                if consumed % CHECKPOINT_EVERY == 0
                    && let Some(journal) = &journal
                {
                    let output_bytes = sink.sync()?;
                    journal.append(&Entry::Checkpoint { records: consumed, output_bytes }, true)?;
                }
                if aborted {
                    return Ok(false);
                }
            }
            Ok(true)
        })
        .await?;
        bar.finish_and_clear();
        failures.finish()?;

        let mut summary = Summary::from_stats(operation, &stats, start.elapsed());
        summary.dry_run = settings.dry_run;
        summary.failures = failures.path().map(Path::to_path_buf);
        if aborted {
            // Leave the partial output and checkpoint for --resume; nothing is renamed.
            if let Some(journal) = &journal {
                let bytes = sink.sync()?;
                journal.append(&Entry::Checkpoint { records: consumed, output_bytes: bytes }, true)?;
            }
            summary
                .extra
                .push(("stopped".into(), "early: --max-failures was reached; the output is incomplete".into()));
        } else {
            let output = sink.finish()?;
            if let (Some(journal), Some(output)) = (&journal, output) {
                journal.append(&Entry::Complete { output: output.display().to_string() }, true)?;
            }
        }
        summary.journal = journal.as_ref().map(|j| j.path().to_path_buf());
        Ok(summary)
    }
}

type ItemResult = (String, Result<Outcome, ItemError>, u32);

/// Transforms every item of one record, replacing those that changed. A
/// failed item keeps its original value, so the output stays complete.
/// Returns the record's number, its encoded output line and the item results.
async fn process_record(
    transform: &Transform,
    mut record: Record,
    pointers: &[String],
    attempts: u32,
) -> (u64, Vec<u8>, Vec<ItemResult>) {
    let mut results = Vec::with_capacity(pointers.len());
    if let RecordFields::JsonLine(line) = &mut record.fields {
        match serde_json::from_str(line) {
            Ok(value) => record.fields = RecordFields::Json(value),
            Err(e) => {
                // Not JSON: reported, and passed through as it was.
                let error = ItemError::input(format!("the record is not JSON: {e}"));
                results.push((format!("record {}", record.number), Err(error), 1));
                let mut out = std::mem::take(line).into_bytes();
                out.push(b'\n');
                return (record.number, out, results);
            }
        }
    }
    for pointer in pointers {
        let item_id = format!("record {} {pointer}", record.number);
        let value = match &record.fields {
            RecordFields::Json(v) => v.pointer(pointer).and_then(|v| v.as_str()).map(str::to_owned),
            RecordFields::Csv(r) => pointer.parse::<usize>().ok().and_then(|i| r.get(i)).map(str::to_owned),
            RecordFields::JsonLine(_) => None,
        };
        let Some(value) = value else {
            results.push((item_id, Err(ItemError::input("the field is missing or not a string")), 1));
            continue;
        };
        if value.is_empty() {
            // Empty values (NULL exports) are left alone and not counted.
            continue;
        }
        let (result, tries) = apply_with_retries(transform, value.as_bytes(), attempts).await;
        let result = match result {
            // A dry run's plan: nothing to store; pass the item on as the sample.
            Ok(Outcome::Changed { kind, .. }) if transform.dry_run => {
                Ok(Outcome::Changed { new: value.into_bytes(), kind })
            }
            Ok(Outcome::Changed { new, kind }) => match String::from_utf8(new) {
                Ok(text) => {
                    set_field(&mut record.fields, pointer, text);
                    Ok(Outcome::Changed { new: Vec::new(), kind })
                }
                Err(_) => Err(ItemError::input("a binary item cannot be stored in a text field")),
            },
            other => other,
        };
        results.push((item_id, result, tries));
    }
    match encode_record(&record.fields) {
        Ok(out) => (record.number, out, results),
        Err(e) => {
            results.push((format!("record {}", record.number), Err(ItemError::input(e)), 1));
            (record.number, Vec::new(), results)
        }
    }
}

/// The output line of a record.
fn encode_record(fields: &RecordFields) -> Result<Vec<u8>, String> {
    match fields {
        RecordFields::Json(v) => {
            let mut line = serde_json::to_vec(v).map_err(|e| format!("cannot encode the record: {e}"))?;
            line.push(b'\n');
            Ok(line)
        }
        RecordFields::JsonLine(line) => Ok(format!("{line}\n").into_bytes()),
        RecordFields::Csv(r) => {
            let mut w = csv::Writer::from_writer(Vec::new());
            w.write_record(r).map_err(|e| format!("cannot encode the CSV record: {e}"))?;
            w.into_inner().map_err(|e| format!("cannot encode the CSV record: {e}"))
        }
    }
}

fn set_field(fields: &mut RecordFields, pointer: &str, text: String) {
    match fields {
        RecordFields::Json(v) => {
            if let Some(slot) = v.pointer_mut(pointer) {
                *slot = serde_json::Value::String(text);
            }
        }
        RecordFields::JsonLine(_) => {}
        RecordFields::Csv(r) => {
            if let Ok(index) = pointer.parse::<usize>() {
                let mut fields: Vec<String> = r.iter().map(str::to_owned).collect();
                if let Some(slot) = fields.get_mut(index) {
                    *slot = text;
                }
                *r = csv::StringRecord::from(fields);
            }
        }
    }
}

enum Reader {
    Json { lines: io::Lines<BufReader<Box<dyn Read + Send>>>, number: u64 },
    Csv { reader: csv::Reader<Box<dyn Read + Send>>, header: csv::StringRecord, number: u64 },
}

impl Reader {
    fn new(input: Box<dyn Read + Send>, format: &RecordFormat) -> Result<Self, CliError> {
        match format {
            RecordFormat::JsonLines(_) => {
                Ok(Self::Json { lines: BufReader::with_capacity(1 << 16, input).lines(), number: 0 })
            }
            RecordFormat::Csv(_) => {
                let mut reader = csv::ReaderBuilder::new().has_headers(true).flexible(false).from_reader(input);
                let header = reader
                    .headers()
                    .map_err(|e| CliError::new(Code::BadInput, format!("cannot read the CSV header: {e}")))?
                    .clone();
                Ok(Self::Csv { reader, header, number: 0 })
            }
        }
    }

    fn csv_header(&self) -> Option<&csv::StringRecord> {
        match self {
            Self::Csv { header, .. } => Some(header),
            Self::Json { .. } => None,
        }
    }

    fn column_indexes(&self, columns: &[String]) -> Result<Vec<usize>, CliError> {
        let header = self.csv_header().ok_or_else(|| CliError::usage("--column needs a CSV input"))?;
        columns
            .iter()
            .map(|c| {
                header
                    .iter()
                    .position(|h| h == c)
                    .ok_or_else(|| CliError::usage(format!("the CSV has no column {c:?}")))
            })
            .collect()
    }

    fn next_record(&mut self) -> Result<Option<Record>, CliError> {
        match self {
            Self::Json { lines, number } => {
                let Some(line) = lines.next() else {
                    return Ok(None);
                };
                *number += 1;
                let line = line.map_err(|e| CliError::io("cannot read the input", e))?;
                Ok(Some(Record { number: *number, fields: RecordFields::JsonLine(line) }))
            }
            Self::Csv { reader, number, .. } => {
                let mut record = csv::StringRecord::new();
                match reader.read_record(&mut record) {
                    Ok(false) => Ok(None),
                    Ok(true) => {
                        *number += 1;
                        Ok(Some(Record { number: *number, fields: RecordFields::Csv(record) }))
                    }
                    Err(e) => Err(CliError::new(Code::BadInput, format!("bad CSV record: {e}"))),
                }
            }
        }
    }
}

enum Sink {
    File { writer: BufWriter<File>, partial: PathBuf, target: PathBuf, written: u64 },
    Stdout(BufWriter<io::Stdout>),
    Discard,
}

impl Sink {
    fn writer(&mut self) -> Option<&mut dyn Write> {
        match self {
            Self::File { writer, .. } => Some(writer),
            Self::Stdout(w) => Some(w),
            Self::Discard => None,
        }
    }

    fn write_bytes(&mut self, bytes: &[u8]) -> Result<(), CliError> {
        if let Self::File { written, .. } = self {
            *written += bytes.len() as u64;
        }
        if let Some(w) = self.writer() {
            w.write_all(bytes).map_err(|e| CliError::io("cannot write the output", e))?;
        }
        Ok(())
    }

    fn write_csv(&mut self, record: &csv::StringRecord) -> Result<(), CliError> {
        let bytes = encode_record(&RecordFields::Csv(record.clone())).map_err(|e| CliError::new(Code::Io, e))?;
        self.write_bytes(&bytes)
    }

    /// Makes everything written so far durable; returns the byte count.
    fn sync(&mut self) -> Result<u64, CliError> {
        match self {
            Self::File { writer, written, .. } => {
                writer.flush().map_err(|e| CliError::io("cannot write the output", e))?;
                writer.get_ref().sync_data().map_err(|e| CliError::io("cannot sync the output", e))?;
                Ok(*written)
            }
            Self::Stdout(w) => {
                w.flush().map_err(|e| CliError::io("cannot write to stdout", e))?;
                Ok(0)
            }
            Self::Discard => Ok(0),
        }
    }

    /// Syncs and renames the partial output into place.
    fn finish(mut self) -> Result<Option<PathBuf>, CliError> {
        self.sync()?;
        match self {
            Self::File { partial, target, .. } => {
                std::fs::rename(&partial, &target)
                    .map_err(|e| CliError::io(format!("cannot rename to {}", target.display()), e))?;
                crate::output::sync_dir(&target).map_err(|e| CliError::io("cannot sync the output directory", e))?;
                Ok(Some(target))
            }
            _ => Ok(None),
        }
    }
}

/// The last durable checkpoint of a record-stream journal: (records, output bytes).
fn last_checkpoint(journal_path: &Path) -> Result<Option<(u64, u64)>, CliError> {
    let mut last = None;
    for entry in journal::read(journal_path)? {
        match entry {
            Entry::Checkpoint { records, output_bytes } => last = Some((records, output_bytes)),
            Entry::Complete { output } => {
                return Err(CliError::usage(format!("this run already finished and wrote {output}"))
                    .hint("remove the journal to run again"));
            }
            _ => {}
        }
    }
    Ok(last)
}

/// Opens the partial output: truncated to the checkpoint when resuming,
/// new otherwise. Returns the file, how many records it already holds and its length.
fn open_partial(partial: &Path, resume_from: Option<(u64, u64)>) -> Result<(File, u64, u64), CliError> {
    let io_err = |e| CliError::io(format!("cannot open {}", partial.display()), e);
    match resume_from {
        Some((records, bytes)) if partial.exists() => {
            let mut file = OpenOptions::new().read(true).write(true).open(partial).map_err(io_err)?;
            file.set_len(bytes).map_err(io_err)?;
            file.seek(io::SeekFrom::End(0)).map_err(io_err)?;
            Ok((file, records, bytes))
        }
        _ => {
            let mut options = OpenOptions::new();
            options.write(true).create(true).truncate(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
            Ok((options.open(partial).map_err(io_err)?, 0, 0))
        }
    }
}
