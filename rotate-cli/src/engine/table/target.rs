//! A database table as a [`Target`]: columns updated in place, or copied
//! into a shadow column that `rekey verify` checks.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::pg_config::redact_url;
use super::rollback::run_params;
use super::{CopyCheck, TableSink, TableSource, TableSpec};
use crate::engine::error::Error;
use crate::engine::journal::RunParams;
use crate::engine::report::Summary;
use crate::engine::run::Engine;
use crate::engine::scan::{DryRun, Expect, ScanSink};
use crate::engine::target::{Rotation, ScanOutput, Target, TargetFuture, scan_output};

/// A table of a SQLite or PostgreSQL database, connected.
pub struct TableTarget {
    spec: TableSpec,
    source: TableSource,
}

impl TableTarget {
    /// Connects and checks the table (see [`TableSource::open`]).
    ///
    /// # Errors
    /// A bad spec, or the database's errors.
    pub fn open(spec: TableSpec) -> Result<Self, Error> {
        Ok(Self { source: TableSource::open(&spec)?, spec })
    }
}

impl Target for TableTarget {
    fn kind(&self) -> &'static str {
        "table"
    }

    fn run_params(&self) -> Result<RunParams, Error> {
        let mut params = run_params(&self.spec);
        // The URL without its password: the journal never holds one.
        params.insert("targets".into(), redact_url(&self.spec.url));
        Ok(params)
    }

    fn default_journal(&self, _output: Option<&Path>) -> Option<PathBuf> {
        Some(self.spec.default_journal())
    }

    fn refuses_output(&self) -> Option<&'static str> {
        Some("-o is for record streams; a table is updated in place (or --into a column)")
    }

    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary> {
        Box::pin(async move {
            let source = if run.count_ahead { self.source.with_total()? } else { self.source };
            run.engine.run(source, Arc::new(TableSink::new(self.spec))).await
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

    fn can_verify(&self) -> Result<(), Error> {
        if self.spec.into.is_none() {
            return Err(Error::usage("rekey verify needs --into COLUMN: the shadow column to check against --column"));
        }
        Ok(())
    }

    fn verify<'a>(
        self: Box<Self>,
        engine: &'a Engine,
        check: Arc<CopyCheck>,
        count_ahead: bool,
    ) -> TargetFuture<'a, Summary> {
        let checked = self.can_verify();
        Box::pin(async move {
            checked?;
            let source = if count_ahead { self.source.with_total()? } else { self.source };
            engine.run(source, check).await
        })
    }
}
