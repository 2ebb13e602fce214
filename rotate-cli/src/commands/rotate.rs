//! `rekey rewrap`, `rekey reencrypt` and `rekey rollback`: they turn the
//! command line into a `Transform` and a target, and hand both to the engine.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use envelope_core::legacy::InnerEncoding;
use envelope_core::{DataKey, EncryptedDataKey, ParseOptions};
use serde_json::json;

use crate::cli::{ItemKind, ReencryptArgs, RewrapArgs, RollbackArgs, TargetArgs};
use crate::engine::transform::{KeyMatcher, Mode, Outcome, Transform};
use crate::engine::{FileTargets, RecordFormat, RecordStream, Settings, Summary, rollback_files};
use crate::exit::{CliError, Code};
use crate::keys::{KeySpec, Keys, kms_keys, parse_context};

pub(crate) async fn rewrap(keys: &Keys, args: RewrapArgs) -> Result<ExitCode, CliError> {
    let destination = keys.wrapping(&args.to, &[]).await?;
    let mode = match args.items {
        ItemKind::Envelope => Mode::Rewrap {
            from: matchers(keys, &args.from).await?,
            remove: matchers(keys, &args.remove).await?,
            add: args.add,
        },
        ItemKind::Edk => {
            if destination.provider_id() != crate::kms::PROVIDER_ID {
                return Err(CliError::usage(
                    "bare encrypted data keys are KMS ciphertext blobs: --to must be a kms: key",
                ));
            }
            let source_context = parse_context(&args.source_context)?;
            let dest_context =
                if args.dest_context.is_empty() { source_context.clone() } else { parse_context(&args.dest_context)? };
            Mode::RewrapBare { source_context, dest_context }
        }
        ItemKind::Legacy => {
            return Err(CliError::usage("legacy records hold no wrapped key to replace")
                .hint("move them with `rekey reencrypt --items legacy`"));
        }
    };
    let sources = keys.decrypting(&args.from, args.kms_discovery).await?;
    let iam = iam_actions("rewrap", &args.to, &args.from, args.target.verify);
    run(
        keys,
        Transform::new(mode, destination, sources, ParseOptions::default(), args.target.verify),
        args.target,
        "rewrap",
        iam,
        kms_keys(&args.from),
    )
    .await
}

pub(crate) async fn reencrypt(keys: &Keys, args: ReencryptArgs) -> Result<ExitCode, CliError> {
    let destination = keys.wrapping(&args.to, &[]).await?;
    let context = if args.context.is_empty() { None } else { Some(parse_context(&args.context)?) };
    let legacy = match args.items {
        ItemKind::Legacy => Some((
            legacy_key(keys, &args).await?,
            if args.legacy_raw { InnerEncoding::Raw } else { InnerEncoding::Base64 },
        )),
        ItemKind::Envelope => None,
        ItemKind::Edk => {
            return Err(CliError::usage("bare encrypted data keys are re-wrapped, not re-encrypted")
                .hint("use `rekey rewrap --items edk`"));
        }
    };
    let sources = keys.decrypting(&args.from, args.kms_discovery).await?;
    let mode = Mode::Reencrypt { context, legacy };
    let iam = iam_actions("reencrypt", &args.to, &args.from, args.target.verify);
    run(
        keys,
        Transform::new(mode, destination, sources, ParseOptions::default(), args.target.verify),
        args.target,
        "reencrypt",
        iam,
        kms_keys(&args.from),
    )
    .await
}

pub(crate) fn rollback(args: RollbackArgs) -> Result<ExitCode, CliError> {
    let summary = rollback_files(&args.journal)?;
    print_summary(&summary, args.json, false);
    Ok(if summary.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

async fn run(
    keys: &Keys,
    mut transform: Transform,
    target: TargetArgs,
    operation: &'static str,
    iam: Vec<String>,
    source_keys: Vec<String>,
) -> Result<ExitCode, CliError> {
    if target.concurrency == 0 {
        return Err(CliError::usage("--concurrency must be at least 1"));
    }
    if let Some(p) = target.sample
        && !(0.0..=100.0).contains(&p)
    {
        return Err(CliError::usage("--sample is a percentage from 0 to 100"));
    }
    transform.dry_run = target.dry_run;
    let mut preflight = Vec::new();
    if target.dry_run {
        // DescribeKey on the destination and on the KMS source keys named.
        let destination = (transform.destination.provider_id() == crate::kms::PROVIDER_ID)
            .then(|| transform.destination.key_id().to_owned());
        for key in destination.into_iter().chain(source_keys) {
            preflight.push(keys.kms().preflight(&key).await?);
        }
    }
    let settings = Settings {
        concurrency: target.concurrency,
        item_attempts: target.item_attempts,
        max_failures: target.max_failures,
        sample_percent: target.sample,
        limit: target.limit,
        dry_run: target.dry_run,
        resume: target.resume,
        journal: target.journal.clone(),
        failures: target.failures.clone(),
        progress: !target.no_progress,
    };
    let transform = Arc::new(transform);
    let records = !target.field.is_empty() || !target.column.is_empty();
    let mut summary = if records {
        let [input] = &target.targets[..] else {
            return Err(CliError::usage(
                "a record stream (--field or --column) takes exactly one input file, or '-' for stdin",
            ));
        };
        let format = if target.field.is_empty() {
            RecordFormat::Csv(target.column.clone())
        } else {
            for pointer in &target.field {
                if !pointer.starts_with('/') {
                    return Err(CliError::usage(format!(
                        "--field {pointer:?} is not a JSON Pointer; write it as /name or /outer/inner"
                    )));
                }
            }
            RecordFormat::JsonLines(target.field.clone())
        };
        RecordStream { input: input.clone(), output: target.output.clone(), format }
            .run(Arc::clone(&transform), &settings, operation)
            .await?
    } else {
        if target.output.is_some() {
            return Err(CliError::usage("-o is for record streams; files and directories are rewritten in place"));
        }
        FileTargets::new(target.targets.clone(), &target.include, &target.exclude)?
            .run(Arc::clone(&transform), &settings, operation)
            .await?
    };
    if target.dry_run {
        let sample = match summary.sample.take() {
            Some(item) => match transform.apply_now(&item).await {
                Ok(Outcome::Changed { .. }) => "one item re-processed in memory: ok".to_owned(),
                Ok(Outcome::Skipped) => "sample already done".to_owned(),
                Err(e) => format!("one item re-processed in memory FAILED: {} ({})", e.message, e.code),
            },
            None => "no item would change".to_owned(),
        };
        summary.extra.push(("preflight".into(), json!(preflight)));
        summary.extra.push(("sample".into(), json!(sample)));
        summary.extra.push(("iam_actions".into(), json!(iam)));
    }
    summary.kms = keys.kms().usage();
    let stdout_busy = records && target.output.as_ref().is_none_or(|o| o == &PathBuf::from("-"));
    print_summary(&summary, target.json, stdout_busy);
    Ok(if summary.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

fn print_summary(summary: &Summary, json: bool, stdout_busy: bool) {
    let text = if json { summary.to_json().to_string() + "\n" } else { summary.to_text() };
    if stdout_busy {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

async fn matchers(keys: &Keys, specs: &[KeySpec]) -> Result<Vec<KeyMatcher>, CliError> {
    let mut out = Vec::new();
    for spec in specs {
        out.push(KeyMatcher::for_keyring(keys.wrapping(spec, &[]).await?.as_ref()));
    }
    Ok(out)
}

/// The legacy data key: unwrapped once from its KMS ciphertext blob, or
/// read from a raw key file (tests and offline migrations).
async fn legacy_key(keys: &Keys, args: &ReencryptArgs) -> Result<DataKey, CliError> {
    if let Some(path) = &args.legacy_key_file {
        let bytes = zeroize::Zeroizing::new(
            std::fs::read(path).map_err(|e| CliError::io(format!("cannot read {}", path.display()), e))?,
        );
        return DataKey::try_from_slice(&bytes)
            .map_err(|_| CliError::usage("--legacy-key-file must hold exactly 32 bytes"));
    }
    let Some(edk) = &args.legacy_edk else {
        return Err(CliError::usage(
            "legacy records need their data key: --legacy-edk FILE|BASE64 (or --legacy-key-file)",
        ));
    };
    let blob = match std::fs::read(edk) {
        Ok(bytes) => match std::str::from_utf8(&bytes).ok().and_then(|t| STANDARD.decode(t.trim_ascii()).ok()) {
            Some(decoded) => decoded,
            None => bytes,
        },
        Err(_) => STANDARD
            .decode(edk.trim())
            .map_err(|_| CliError::usage("--legacy-edk is neither a readable file nor base64"))?,
    };
    let context = parse_context(&args.legacy_context)?;
    let edk = EncryptedDataKey::new(crate::kms::PROVIDER_ID, "", blob)
        .map_err(|e| CliError::usage(format!("--legacy-edk: {e}")))?;
    keys.kms().decrypt_bare(&edk, &context).await
}

/// The IAM actions a run needs, for the dry run's report.
fn iam_actions(operation: &str, to: &KeySpec, from: &[KeySpec], verify: bool) -> Vec<String> {
    let mut actions = Vec::new();
    let sources = if from.is_empty() {
        "the source keys".to_owned()
    } else {
        from.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
    };
    match (operation, to) {
        ("rewrap", KeySpec::Kms(key)) => {
            actions.push(format!("kms:ReEncryptFrom on {sources} (KMS sources)"));
            actions.push(format!("kms:ReEncryptTo on {key}"));
            actions.push(format!("kms:Encrypt on {key} (local sources only)"));
            if verify {
                actions.push(format!("kms:Decrypt on {key} (--verify)"));
            }
            actions.push(format!("kms:DescribeKey on {key}"));
        }
        ("rewrap", KeySpec::Local(_)) => actions.push(format!("kms:Decrypt on {sources} (KMS sources only)")),
        (_, KeySpec::Kms(key)) => {
            actions.push(format!("kms:Decrypt on {sources}"));
            actions.push(format!("kms:GenerateDataKey on {key}"));
            if verify {
                actions.push(format!("kms:Decrypt on {key} (--verify)"));
            }
            actions.push(format!("kms:DescribeKey on {key}"));
        }
        (_, KeySpec::Local(_)) => actions.push(format!("kms:Decrypt on {sources} (KMS sources only)")),
    }
    actions
}
