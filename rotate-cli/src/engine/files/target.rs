//! Files and directories as a [`Target`]: rewritten in place, one unit per file.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::sink::InPlaceSink;
use super::source::FileSource;
use crate::engine::error::Error;
use crate::engine::journal::RunParams;
use crate::engine::report::Summary;
use crate::engine::run::Engine;
use crate::engine::scan::{DryRun, Expect, ScanSink};
use crate::engine::target::{Rotation, ScanOutput, Target, TargetFuture, scan_output};

/// Files and directories (recursed), filtered by globs.
pub struct FileTarget {
    source: FileSource,
}

impl FileTarget {
    /// The files under `roots`, locked for the life of the target (see [`FileSource::new`]).
    ///
    /// # Errors
    /// A missing target, a bad glob, or a target another run holds.
    pub fn open(roots: Vec<PathBuf>, include: &[String], exclude: &[String]) -> Result<Self, Error> {
        Ok(Self { source: FileSource::new(roots, include, exclude)? })
    }
}

/// The targets as a journal names them: absolute where they resolve.
pub(crate) fn canonical_list(paths: &[PathBuf]) -> String {
    let names: Vec<String> =
        paths.iter().map(|t| t.canonicalize().unwrap_or_else(|_| t.clone()).display().to_string()).collect();
    names.join(",")
}

impl Target for FileTarget {
    fn kind(&self) -> &'static str {
        "files"
    }

    fn run_params(&self) -> Result<RunParams, Error> {
        Ok(RunParams::from([("targets".into(), canonical_list(self.source.roots()))]))
    }

    fn default_journal(&self, _output: Option<&Path>) -> Option<PathBuf> {
        Some(self.source.default_journal())
    }

    fn refuses_output(&self) -> Option<&'static str> {
        Some("-o is for record streams; files and directories are rewritten in place")
    }

    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary> {
        Box::pin(async move {
            let source = if run.count_ahead { self.source.with_total()? } else { self.source };
            run.engine.run(source, Arc::new(InPlaceSink::default())).await
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
