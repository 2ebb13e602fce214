//! An S3 bucket (or prefix) as a [`Target`]: method A (`--metadata-key`)
//! or rekey envelopes as object bodies; scans report SSE keys too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use aws_sdk_s3::Client;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use envelope_core::EncryptionContext;
use serde_json::json;

use super::backup::check_backup_prefix;
use super::client::{ClientSettings, S3Url, client};
use super::listing::S3Source;
use super::object::{Probe, S3Job};
use super::rollback::run_params;
use super::scan::S3ScanSink;
use super::sink::ObjectSink;
use crate::engine::error::Error;
use crate::engine::journal::RunParams;
use crate::engine::report::Summary;
use crate::engine::run::Engine;
use crate::engine::scan::{DryRun, Expect};
use crate::engine::target::{Rotation, ScanOutput, Target, TargetFuture};

/// The objects under an S3 URL, and how to read them.
#[derive(Debug, Clone)]
pub struct S3Target {
    /// `s3://BUCKET/PREFIX`.
    pub url: S3Url,
    /// Only keys (relative to the prefix) matching these globs.
    pub include: Vec<String>,
    /// Skip keys matching these globs.
    pub exclude: Vec<String>,
    /// Method A: the user-metadata entry holding a wrapped data key.
    pub metadata_key: Option<String>,
    /// Path-style addressing.
    pub path_style: bool,
    /// Take the keys from this file instead of listing the bucket.
    pub object_list: Option<PathBuf>,
    /// The SSE-KMS encryption context every copy carries.
    pub sse_context: Option<EncryptionContext>,
    /// Where an unversioned bucket's originals are copied first (envelope bodies).
    pub backup_prefix: String,
    /// A rewrap of method A: the destination context, so a rerun skips
    /// objects already under the destination.
    pub probe_context: Option<EncryptionContext>,
}

impl S3Target {
    /// What a rotation of this target does to each object.
    ///
    /// # Errors
    /// An empty `--metadata-key`, or a backup prefix that overlaps the target.
    pub fn job(&self) -> Result<S3Job, Error> {
        match &self.metadata_key {
            Some(name) if !name.is_empty() => Ok(S3Job::MetadataKey { name: name.clone() }),
            Some(_) => Err(Error::usage("--metadata-key needs the name of the metadata entry holding the data key")),
            // Without --metadata-key, the objects' bodies are rekey envelopes.
            None => {
                check_backup_prefix(&self.url, &self.backup_prefix)?;
                Ok(S3Job::Envelope { backup_prefix: self.backup_prefix.clone() })
            }
        }
    }

    /// `--sse-context` as S3's `x-amz-server-side-encryption-context` takes it: base64 of a JSON object.
    pub fn sse_context_header(&self) -> Option<String> {
        let context = self.sse_context.as_ref()?;
        let object: serde_json::Map<String, serde_json::Value> =
            context.iter().map(|(k, v)| (k.to_owned(), json!(v))).collect();
        Some(STANDARD.encode(serde_json::Value::Object(object).to_string()))
    }

    /// An S3 client with this target's addressing.
    ///
    /// # Errors
    /// The AWS configuration cannot be loaded.
    pub async fn client(&self) -> Result<Client, Error> {
        client(&ClientSettings { path_style: self.path_style, ..ClientSettings::default() }).await
    }

    /// `source` reading `--object-list` when one is named, giving copies `--sse-context`.
    ///
    /// # Errors
    /// The object list cannot be opened.
    pub fn listed(&self, source: S3Source) -> Result<S3Source, Error> {
        let source = source.with_sse_context(self.sse_context_header());
        Ok(match &self.object_list {
            Some(path) => source.with_list(path)?,
            None => source,
        })
    }

    /// The source of a rotation; the probe (a rewrap of bare data keys)
    /// lets a rerun skip objects already under the destination key.
    async fn rotation_source(&self, transform: &Arc<crate::engine::transform::Transform>) -> Result<S3Source, Error> {
        let probe = self.probe_context.clone().map(|context| Probe::new(Arc::clone(transform), context));
        let source =
            S3Source::new(self.client().await?, self.url.clone(), self.job()?, &self.include, &self.exclude, probe)?;
        self.listed(source)
    }
}

impl Target for S3Target {
    fn kind(&self) -> &'static str {
        "s3"
    }

    fn run_params(&self) -> Result<RunParams, Error> {
        Ok(run_params(&self.url, &self.job()?, self.sse_context_header().as_deref()))
    }

    fn default_journal(&self, _output: Option<&Path>) -> Option<PathBuf> {
        Some(S3Source::default_journal(&self.url))
    }

    fn refuses_output(&self) -> Option<&'static str> {
        Some("-o is for record streams; S3 objects are copied onto themselves")
    }

    fn rotate<'a>(self: Box<Self>, run: Rotation<'a>) -> TargetFuture<'a, Summary> {
        Box::pin(async move { run.engine.run(self.rotation_source(run.transform).await?, ObjectSink::new()).await })
    }

    fn dry_run<'a>(self: Box<Self>, run: Rotation<'a>, sink: Arc<DryRun>) -> TargetFuture<'a, Summary> {
        Box::pin(async move { run.engine.run(self.rotation_source(run.transform).await?, sink).await })
    }

    fn scan<'a>(self: Box<Self>, engine: &'a Engine, _expect: Expect) -> TargetFuture<'a, ScanOutput> {
        Box::pin(async move {
            let job = S3Job::Scan { metadata_key: self.metadata_key.clone() };
            let source =
                S3Source::new(self.client().await?, self.url.clone(), job, &self.include, &self.exclude, None)?;
            let sink = S3ScanSink::new();
            let summary = engine.run(self.listed(source)?, Arc::clone(&sink)).await?;
            let report = sink.report();
            let mut json = report.to_json();
            json["objects"] = json!(report.sse.values().sum::<u64>() + report.unreadable);
            Ok(ScanOutput { summary, text: report.to_text(self.metadata_key.as_deref()), json })
        })
    }

    fn iam_actions(&self) -> Vec<String> {
        let b = &self.url.bucket;
        vec![
            format!("s3:ListBucket on arn:aws:s3:::{b}"),
            format!(
                "s3:GetObject, s3:PutObject, s3:GetObjectTagging, s3:PutObjectTagging on arn:aws:s3:::{b}/{}*",
                self.url.prefix
            ),
            "kms:Decrypt and kms:GenerateDataKey on the SSE-KMS key of SSE-KMS objects (the self-copy)".into(),
        ]
    }

    fn dry_run_notes(&self) -> TargetFuture<'_, Vec<String>> {
        Box::pin(async move {
            let client = self.client().await?;
            let versioning = client.get_bucket_versioning().bucket(&self.url.bucket).send().await.ok();
            let enabled = versioning.as_ref().and_then(|v| v.status()).is_some_and(|s| s.as_str() == "Enabled");
            Ok(vec![if enabled {
                format!("s3://{}: versioning is on; each object's previous version stays as a backup", self.url.bucket)
            } else {
                format!(
                    "s3://{}: WARNING versioning is off: no earlier version is kept; the journal holds the old data \
                     keys rollback needs (keep it)",
                    self.url.bucket
                )
            }])
        })
    }
}
