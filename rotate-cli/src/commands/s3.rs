//! S3 targets on the command line: `rekey rewrap s3://... --metadata-key`
//! (method A), `rekey scan s3://...`, `rekey s3 sse-rotate` (method B) and
//! the rollback of their journals. The work is in
//! [`rotate_cli::engine::s3`]; this turns flags into a source and a sink.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use aws_sdk_s3::Client;
use rotate_cli::engine::journal::RollbackJournal;
use rotate_cli::engine::report::{FailureLog, Stop, Summary};
use rotate_cli::engine::s3::{ClientSettings, ObjectSink, S3Job, S3Source, S3Target, SseJob, SseMethod};
use rotate_cli::engine::scan::DryRun;
use rotate_cli::engine::{Engine, Settings};
use serde_json::json;

use super::run::{INTERRUPTED, cancel_on_signals, check_writable, print_summary, progress, settings};
use crate::cli::{InventoryArgs, SseMethodArg, SseRotateArgs};
use crate::exit::{CliError, Code};
use crate::keys::parse_context;

/// Whether the command line's targets are one S3 URL.
pub(crate) fn is_s3_target(args: &InventoryArgs) -> bool {
    matches!(&args.targets[..], [one] if one.to_str().is_some_and(rotate_cli::engine::s3::is_s3_url))
}

/// The S3 target of `args` (see [`is_s3_target`]).
pub(crate) fn target(args: &InventoryArgs) -> Result<S3Target, CliError> {
    if !args.field.is_empty() || !args.column.is_empty() || args.table.is_some() {
        return Err(CliError::usage("--field, --column and --table are not for S3 targets")
            .hint("name the metadata entry holding the data key with --metadata-key NAME"));
    }
    let target = args.targets[0].to_str().unwrap_or_default();
    let s3 = &args.s3;
    let sse_context = if s3.sse_context.is_empty() { None } else { Some(parse_context(&s3.sse_context)?) };
    let probe_context = match &s3.probe_context {
        Some(pairs) => Some(parse_context(pairs)?),
        None => None,
    };
    Ok(S3Target {
        url: target.parse()?,
        include: args.include.clone(),
        exclude: args.exclude.clone(),
        metadata_key: s3.metadata_key.clone(),
        path_style: s3.s3_path_style,
        object_list: s3.object_list.clone(),
        sse_context,
        backup_prefix: s3.backup_prefix.clone(),
        probe_context,
    })
}

async fn s3_client(path_style: bool) -> Result<Client, CliError> {
    Ok(rotate_cli::engine::s3::client(&ClientSettings { path_style, ..ClientSettings::default() }).await?)
}

/// A KMS key as S3 reports it (an ARN), from DescribeKey; also checks it is usable.
async fn resolve_key(kms: &kms_adapter::Kms, key: &str) -> Result<String, CliError> {
    let key = key.strip_prefix("kms:").unwrap_or(key);
    let d = kms.describe(key).await.map_err(|e| {
        let e: envelope_core::KeyringError = e.into();
        CliError::new(Code::Kms, format!("cannot use KMS key {key}: {e}"))
    })?;
    Ok(d.arn)
}

/// `rekey s3 sse-rotate`: method B on the engine.
pub(crate) async fn sse_rotate(args: SseRotateArgs) -> Result<ExitCode, CliError> {
    let target = args.target;
    let inventory = &target.inventory;
    if !is_s3_target(inventory) {
        return Err(CliError::usage("sse-rotate takes one target, s3://BUCKET or s3://BUCKET/PREFIX"));
    }
    if inventory.s3.metadata_key.is_some() || target.output.is_some() || target.verify {
        return Err(CliError::usage("--metadata-key, -o and --verify are not for sse-rotate")
            .hint("to re-wrap data keys kept in metadata, use `rekey rewrap s3://... --metadata-key NAME`"));
    }
    let spec = self::target(inventory)?;
    if args.part_size < rotate_cli::engine::s3::MIN_PART_SIZE {
        return Err(CliError::usage("--part-size must be at least 5 MiB (5242880), S3's smallest part"));
    }
    let kms = kms_adapter::Kms::from_env(&kms_adapter::KmsConfig::default()).await;
    let to = resolve_key(&kms, &args.to).await?;
    let mut from = Vec::new();
    for key in &args.from {
        // A retired source key may not be describable any more: keep it as given.
        from.push(resolve_key(&kms, key).await.unwrap_or_else(|_| key.strip_prefix("kms:").unwrap_or(key).to_owned()));
    }
    let mut method = match args.method {
        SseMethodArg::Auto => SseMethod::Auto,
        SseMethodArg::Update => SseMethod::Update,
        SseMethodArg::Copy => SseMethod::Copy,
    };
    let client = spec.client().await?;
    if let Some(dir) = &args.emit_batch_job {
        let sizes = (args.bucket_key, args.multipart_threshold, args.part_size);
        return emit_batch_job(dir, client, &spec, &target, method, (to, from), sizes).await;
    }
    if method != SseMethod::Copy && !target.dry_run {
        let supported =
            rotate_cli::engine::s3::update_supported(&client, &spec.url.bucket, &spec.url.prefix, &to).await?;
        match (supported, method) {
            (true, _) => {}
            (false, SseMethod::Update) => {
                return Err(CliError::usage("the endpoint does not implement UpdateObjectEncryption")
                    .hint("rerun with --method copy (or --method auto) to change keys by self-copies"));
            }
            (false, _) => {
                eprintln!(
                    "rekey: the endpoint does not implement UpdateObjectEncryption; changing keys by self-copies"
                );
                method = SseMethod::Copy;
            }
        }
    }
    // An object's SSE key id is what its writer gave: often an alias (its
    // name or ARN), which S3 keeps as given. A --from alias therefore also
    // matches by its name, beside the key it resolves to.
    let mut matching = from.clone();
    for key in &args.from {
        let given = key.strip_prefix("kms:").unwrap_or(key);
        if given.contains("alias/") && !matching.iter().any(|m| m == given) {
            matching.push(given.to_owned());
        }
    }
    let job = S3Job::Sse(SseJob {
        to: to.clone(),
        from: matching,
        method,
        bucket_key: args.bucket_key,
        multipart_from: args.multipart_threshold,
        part_size: args.part_size,
    });
    let mut params = rotate_cli::engine::s3::run_params(&spec.url, &job, spec.sse_context_header().as_deref());
    params.insert("shard".into(), inventory.shard.map(|s| s.to_string()).unwrap_or_default());
    let journal_path = target.journal.clone().unwrap_or_else(|| S3Source::default_journal(&spec.url));
    if !target.dry_run {
        check_writable(&journal_path)?;
    }
    let failures_path = target
        .failures
        .clone()
        .or_else(|| Some(rotate_cli::engine::files::with_suffix(&journal_path, ".failures.jsonl")))
        .filter(|_| !target.dry_run);
    let settings = Settings { preflight: false, journal: Some((journal_path, params)), ..settings(&target) };
    let versioning = client.get_bucket_versioning().bucket(&spec.url.bucket).send().await.ok();
    let versioned = versioning.as_ref().and_then(|v| v.status()).is_some_and(|s| s.as_str() == "Enabled");
    let source = spec.listed(S3Source::new(client, spec.url.clone(), job, &spec.include, &spec.exclude, None)?)?;
    let engine = Engine {
        operation: "sse-rotate",
        settings,
        transform: None,
        failures: Arc::new(FailureLog::new(failures_path)),
        progress: progress(!target.no_progress),
        cancel: cancel_on_signals(),
    };
    let mut summary = if target.dry_run {
        let dry = DryRun::new();
        let mut summary = engine.run(source, Arc::clone(&dry)).await?;
        let update = match method {
            SseMethod::Copy => "s3:GetObject, s3:PutObject, s3:GetObjectTagging, s3:PutObjectTagging (the copy)",
            SseMethod::Update => "s3:UpdateObjectEncryption",
            SseMethod::Auto => {
                "s3:UpdateObjectEncryption (or, where unavailable, s3:GetObject, s3:PutObject, s3:GetObjectTagging, s3:PutObjectTagging)"
            }
        };
        let mut iam = vec![format!("s3:ListBucket on arn:aws:s3:::{}", spec.url.bucket), update.to_owned()];
        iam.push(format!("kms:GenerateDataKey and kms:Decrypt on {to}"));
        if !from.is_empty() {
            iam.push(format!("kms:Decrypt on {}", from.join(", ")));
        }
        summary.extra.push(("iam_actions".into(), json!(iam)));
        summary.extra.push(("destination".into(), json!(to)));
        summary
            .extra
            .push(("journal_estimate".into(), json!(format!("about {} KiB", dry.journal_bytes().div_ceil(1024)))));
        if !versioned {
            summary.extra.push((
                "warning".into(),
                json!("versioning is off on this bucket: no earlier version is kept; the journal holds what rollback needs (the old key settings)"),
            ));
        }
        summary
    } else {
        engine.run(source, ObjectSink::new()).await?
    };
    if !from.is_empty() {
        // Objects under other keys are left out by --from, not by a flag the operator did not give.
        let flags = target.sample.is_some() || target.limit.is_some() || target.inventory.shard.is_some();
        summary.not_selected_reason = if flags {
            "under a key --from does not name, or outside --sample/--shard/--limit"
        } else {
            "under a key --from does not name"
        };
    }
    summary.extra.push(("versioned_bucket".into(), json!(versioned)));
    summary.extra.push(("method".into(), json!(method.name())));
    print_summary(&summary, target.json, false);
    if summary.stopped == Some(Stop::Interrupted) {
        eprintln!("rekey: interrupted; rerun the same command with --resume");
        return Ok(ExitCode::from(INTERRUPTED));
    }
    Ok(if summary.counts.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

/// `sse-rotate --emit-batch-job DIR`: the engine reads each object (HeadObject:
/// `--from`, objects already under the key, `--sample`, `--shard`, `--limit`
/// apply), changes nothing, and writes the manifest and the job for S3 Batch
/// Operations.
async fn emit_batch_job(
    dir: &Path,
    client: Client,
    spec: &S3Target,
    target: &crate::cli::TargetArgs,
    method: SseMethod,
    (to, from): (String, Vec<String>),
    (bucket_key, multipart_from, part_size): (Option<bool>, u64, u64),
) -> Result<ExitCode, CliError> {
    let job = SseJob { to, from, method, bucket_key, multipart_from, part_size };
    let sink = rotate_cli::engine::s3::BatchJobSink::new(dir, &spec.url.bucket, job.clone())?;
    let source =
        spec.listed(S3Source::new(client, spec.url.clone(), S3Job::Sse(job), &spec.include, &spec.exclude, None)?)?;
    // --emit-batch-job conflicts with --dry-run and --resume; the sink writes only the manifest.
    let settings = Settings { preflight: false, ..settings(target) };
    let engine = Engine {
        operation: "emit-batch-job",
        settings,
        transform: None,
        failures: Arc::new(FailureLog::new(target.failures.clone())),
        progress: progress(!target.no_progress),
        cancel: cancel_on_signals(),
    };
    let mut summary = engine.run(source, Arc::clone(&sink)).await?;
    let manifest = dir.join("manifest.csv");
    let job_file = dir.join("job.json");
    summary.extra.push(("manifest".into(), json!(manifest.display().to_string())));
    summary.extra.push(("manifest_objects".into(), json!(sink.rows())));
    summary.extra.push(("job".into(), json!(job_file.display().to_string())));
    print_summary(&summary, target.json, false);
    eprintln!(
        "rekey: nothing was changed. To run the job with S3 Batch Operations:\n  \
         aws s3 cp {m} s3://MANIFEST_BUCKET/MANIFEST_KEY\n  \
         aws s3api head-object --bucket MANIFEST_BUCKET --key MANIFEST_KEY --query ETag --output text\n  \
         # fill ACCOUNT_ID, MANIFEST_BUCKET, MANIFEST_KEY, MANIFEST_ETAG, REPORT_BUCKET and the role in {j}, then:\n  \
         aws s3control create-job --cli-input-json file://{j}",
        m = manifest.display(),
        j = job_file.display()
    );
    Ok(if summary.counts.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

/// Rolls back an S3 run (`rekey rollback` is synchronous: this steps aside
/// from the async worker while the requests run).
pub(crate) fn rollback(journal: &RollbackJournal) -> Result<(Summary, Vec<String>), CliError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            let path_style = std::env::var("AWS_S3_FORCE_PATH_STYLE").is_ok_and(|v| v.eq_ignore_ascii_case("true"));
            let client = s3_client(path_style).await?;
            Ok(rotate_cli::engine::s3::rollback(&client, journal).await?)
        })
    })
}
