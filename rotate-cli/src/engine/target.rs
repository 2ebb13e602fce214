//! The target seam: what one kind of store (a directory of files, a record
//! stream, a table, a bucket) brings to a run. The engine owns the loop; a
//! [`Target`] owns what differs between stores: its kind (the journal's
//! `target`), its run parameters, where its journal goes, whether `-o`
//! applies, and how it builds its [`Source`](super::Source) and
//! [`Sink`](super::Sink) for a rotation, a dry run, a scan and (where it
//! keeps shadow copies) a verification.
//!
//! Sources and sinks have associated types, so the trait runs the engine
//! itself and returns boxed futures: the binary holds a `Box<dyn Target>`
//! and never names a store's types.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use serde_json::Value;

use super::error::Error;
use super::journal::RunParams;
use super::report::Summary;
use super::run::Engine;
use super::scan::{DryRun, Expect, ScanSink};
use super::table::CopyCheck;
use super::transform::Transform;

/// A boxed future, so that [`Target`] stays object-safe.
pub type TargetFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, Error>> + Send + 'a>>;

/// What a rotation needs besides the target.
pub struct Rotation<'a> {
    /// The engine, with its settings and journal.
    pub engine: &'a Engine,
    /// What to do to each item.
    pub transform: &'a Arc<Transform>,
    /// Count the units ahead, for a progress bar with a total.
    pub count_ahead: bool,
    /// `-o`, where the target takes it (record streams).
    pub output: Option<&'a Path>,
    /// The run continues an earlier one (`--resume`).
    pub resume: bool,
}

/// What a scan found: its summary, and its report for people and as JSON.
pub struct ScanOutput {
    /// The engine's summary (units, interruption).
    pub summary: Summary,
    /// The report as text.
    pub text: String,
    /// The report as JSON.
    pub json: Value,
}

/// One kind of store, as a run sees it.
pub trait Target: Send {
    /// The kind's name: the journal's `target`, and the rollback registry's key.
    fn kind(&self) -> &'static str;

    /// The parameters a run on this target records for `--resume` to compare.
    ///
    /// # Errors
    /// A parameter that cannot be put in a journal.
    fn run_params(&self) -> Result<RunParams, Error>;

    /// The journal when none is named: `None` where a run keeps none by
    /// default (a stream to stdout). `output` is `-o`.
    fn default_journal(&self, output: Option<&Path>) -> Option<PathBuf>;

    /// Why `-o` does not apply to this target (the error's text), or `None` when it does.
    fn refuses_output(&self) -> Option<&'static str> {
        None
    }

    /// Whether a run writes its output to stdout (so the summary goes to stderr).
    fn writes_stdout(&self, _output: Option<&Path>) -> bool {
        false
    }

    /// Rotates every item, through the engine.
    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary>;

    /// Runs the engine with `sink`, which writes nothing.
    fn dry_run<'a>(self: Box<Self>, run: Rotation<'a>, sink: Arc<DryRun>) -> TargetFuture<'a, Summary>;

    /// Counts what the target holds, through the engine; `expect` says what items are.
    fn scan<'a>(self: Box<Self>, engine: &'a Engine, expect: Expect) -> TargetFuture<'a, ScanOutput>;

    /// The target's own IAM actions, for the dry run's report.
    fn iam_actions(&self) -> Vec<String> {
        Vec::new()
    }

    /// What the dry run should say about the target (e.g. whether a bucket keeps versions).
    fn dry_run_notes(&self) -> TargetFuture<'_, Vec<String>> {
        Box::pin(async { Ok(Vec::new()) })
    }

    /// Whether this target has shadow copies to verify (`rekey verify`).
    ///
    /// # Errors
    /// A usage error saying why not.
    fn can_verify(&self) -> Result<(), Error> {
        Err(Error::usage("rekey verify checks a database column filled with --into; name a database"))
    }

    /// Checks every shadow copy with `check`; writes nothing.
    fn verify<'a>(
        self: Box<Self>,
        _engine: &'a Engine,
        _check: Arc<CopyCheck>,
        _count_ahead: bool,
    ) -> TargetFuture<'a, Summary> {
        Box::pin(async {
            Err(Error::usage("rekey verify checks a database column filled with --into; name a database"))
        })
    }
}

/// A scan through the common [`ScanSink`]: its report, with the units counted.
pub(crate) fn scan_output(summary: Summary, sink: &ScanSink) -> ScanOutput {
    let report = sink.report();
    let mut json = report.to_json();
    json["units"] = serde_json::json!(summary.counts.items() + summary.counts.not_selected);
    ScanOutput { summary, text: report.to_text(), json }
}
