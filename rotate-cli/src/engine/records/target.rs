//! A record stream as a [`Target`]: read from a file or stdin, written to
//! `-o` (or stdout); the input is never modified.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sink::StreamSink;
use super::source::{RecordFormat, RecordSource};
use crate::engine::error::Error;
use crate::engine::files::target::canonical_list;
use crate::engine::files::with_suffix;
use crate::engine::journal::RunParams;
use crate::engine::report::Summary;
use crate::engine::run::Engine;
use crate::engine::scan::{DryRun, Expect, ScanSink};
use crate::engine::target::{Rotation, ScanOutput, Target, TargetFuture, scan_output};

/// One JSON Lines or CSV stream.
pub struct RecordTarget {
    input: PathBuf,
    source: RecordSource,
}

impl RecordTarget {
    /// Opens `input` (`-` is stdin) as `format`.
    ///
    /// # Errors
    /// See [`RecordSource::open`].
    pub fn open(input: &Path, format: &RecordFormat) -> Result<Self, Error> {
        Ok(Self { input: input.to_path_buf(), source: RecordSource::open(input, format)? })
    }
}

/// `-o` when it names a file (not stdout).
fn output_file(output: Option<&Path>) -> Option<&Path> {
    output.filter(|o| *o != Path::new("-"))
}

impl Target for RecordTarget {
    fn kind(&self) -> &'static str {
        "records"
    }

    fn run_params(&self) -> Result<RunParams, Error> {
        Ok(RunParams::from([("targets".into(), canonical_list(std::slice::from_ref(&self.input)))]))
    }

    fn default_journal(&self, output: Option<&Path>) -> Option<PathBuf> {
        output_file(output).map(|o| with_suffix(o, ".rekey-journal"))
    }

    fn writes_stdout(&self, output: Option<&Path>) -> bool {
        output_file(output).is_none()
    }

    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary> {
        Box::pin(async move {
            let sink = StreamSink::new(run.output.map(Path::to_path_buf), &self.input, self.source.header());
            sink.check(run.resume)?;
            run.engine.run(self.source, Arc::new(sink)).await
        })
    }

    fn dry_run<'a>(self: Box<Self>, run: Rotation<'a>, sink: Arc<DryRun>) -> TargetFuture<'a, Summary> {
        Box::pin(async move { run.engine.run(self.source, sink).await })
    }

    fn scan<'a>(self: Box<Self>, engine: &'a Engine, expect: Expect) -> TargetFuture<'a, ScanOutput> {
        Box::pin(async move {
            let sink = ScanSink::new(expect);
            let summary = engine.run(self.source, Arc::clone(&sink)).await?;
            Ok(scan_output(summary, &sink))
        })
    }
}
