//! A DynamoDB table as a [`Target`]: its attributes rotated in place (or
//! into a shadow attribute), scanned in segments.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use envelope_core::EncryptionContext;
use serde_json::json;

use super::client::DynamoClient;
use super::sink::DynamoSink;
use super::source::DynamoSource;
use super::spec::{DynamoSpec, KIND};
use crate::engine::Settings;
use crate::engine::error::Error;
use crate::engine::journal::RunParams;
use crate::engine::report::Summary;
use crate::engine::run::Engine;
use crate::engine::s3::Probe;
use crate::engine::scan::{DryRun, Expect, ScanSink};
use crate::engine::target::{Rotation, ScanOutput, Target, TargetFuture, scan_output};
use crate::engine::transform::Transform;

/// A table, its attributes, and how to tell a rerun's finished items.
#[derive(Debug, Clone)]
pub struct DynamoTarget {
    /// What to rotate.
    pub spec: DynamoSpec,
    /// A rewrap of bare data keys: the destination context, so a rerun
    /// skips blobs under the destination already.
    pub probe_context: Option<EncryptionContext>,
}

/// `engine` without its shard: the source takes the shard as scan
/// segments, and the engine selects every item it is given.
fn unsharded(engine: &Engine) -> (Engine, Option<crate::engine::Shard>) {
    let settings = Settings { shard: None, ..engine.settings.clone() };
    let unsharded = Engine {
        operation: engine.operation,
        settings,
        transform: engine.transform.clone(),
        failures: Arc::clone(&engine.failures),
        progress: Arc::clone(&engine.progress),
        cancel: Arc::clone(&engine.cancel),
    };
    (unsharded, engine.settings.shard)
}

impl DynamoTarget {
    async fn source(
        &self,
        shard: Option<crate::engine::Shard>,
        transform: Option<&Arc<Transform>>,
    ) -> Result<(DynamoSource, DynamoClient), Error> {
        let client = DynamoClient::from_env().await?;
        let probe = match (&self.probe_context, transform) {
            (Some(context), Some(t)) => Some(Probe::new(Arc::clone(t), context.clone())),
            _ => None,
        };
        Ok((DynamoSource::open(client.clone(), self.spec.clone(), shard, probe).await?, client))
    }
}

/// The summary with the throttled attempts the SDK retried.
fn counted(mut summary: Summary, client: &DynamoClient) -> Summary {
    summary.extra.push(("dynamodb_throttled_retries".into(), json!(client.throttled())));
    summary
}

impl Target for DynamoTarget {
    fn kind(&self) -> &'static str {
        KIND
    }

    fn run_params(&self) -> Result<RunParams, Error> {
        let mut params = self.spec.run_params();
        params.insert("targets".into(), format!("dynamodb://{}", self.spec.table));
        Ok(params)
    }

    fn default_journal(&self, _output: Option<&Path>) -> Option<PathBuf> {
        Some(self.spec.default_journal())
    }

    fn refuses_output(&self) -> Option<&'static str> {
        Some("-o is for record streams; DynamoDB items are updated in place")
    }

    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary> {
        Box::pin(async move {
            let (engine, shard) = unsharded(run.engine);
            let (source, client) = self.source(shard, Some(run.transform)).await?;
            let summary = engine.run(source, DynamoSink::new(self.spec.segments)).await?;
            Ok(counted(summary, &client))
        })
    }

    fn dry_run<'a>(self: Box<Self>, run: Rotation<'a>, sink: Arc<DryRun>) -> TargetFuture<'a, Summary> {
        Box::pin(async move {
            let (engine, shard) = unsharded(run.engine);
            let (source, client) = self.source(shard, Some(run.transform)).await?;
            Ok(counted(engine.run(source, sink).await?, &client))
        })
    }

    fn scan<'a>(self: Box<Self>, engine: &'a Engine, expect: Expect) -> TargetFuture<'a, ScanOutput> {
        Box::pin(async move {
            let (engine, shard) = unsharded(engine);
            let (source, _) = self.source(shard, None).await?;
            let sink = ScanSink::new(expect);
            let summary = engine.run(source, Arc::clone(&sink)).await?;
            Ok(scan_output(summary, &sink))
        })
    }

    fn iam_actions(&self) -> Vec<String> {
        vec![format!(
            "dynamodb:DescribeTable, dynamodb:Scan, dynamodb:UpdateItem (and dynamodb:GetItem for rollback) on \
             arn:aws:dynamodb:REGION:ACCOUNT:table/{}",
            self.spec.table
        )]
    }
}
