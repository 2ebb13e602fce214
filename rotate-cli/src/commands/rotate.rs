//! `rekey rewrap`, `rekey reencrypt`, `rekey scan` and `rekey rollback`:
//! they turn the command line into keyrings, a transform, a source and a
//! sink, and hand them to the engine; then print what it did.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use envelope_core::hazmat::ParseOptions;
use envelope_core::legacy::InnerEncoding;
use envelope_core::{DataKey, Keyring};
use rotate_cli::engine::journal::{RunParams, context_param};
use rotate_cli::engine::report::{FailureLog, Stop};
use rotate_cli::engine::scan::{DryRun, Expect};
use rotate_cli::engine::table::CopyCheck;
use rotate_cli::engine::transform::{
    Outcome, Reencrypt, ReencryptEsdk, Rewrap, RewrapBare, Strategy, ToKeyset, Transform,
};
use rotate_cli::engine::{Engine, Rotation, Settings};
use serde_json::json;

use super::run::{INTERRUPTED, cancel_on_signals, check_writable, print_summary, progress, settings};
use crate::cli::{
    DiscoveryArgs, ItemKind, OutputFormat, ReencryptArgs, RewrapArgs, RollbackArgs, ScanArgs, TargetArgs,
};
use crate::exit::{CliError, Code};
use crate::key_spec::{KeySpec, kms_keys};
use crate::keys::{Keys, legacy_data_key, parse_context};

/// What a rewrap or reencrypt command line is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Rotate the items.
    Rotate,
    /// Check the copies such a run wrote into a shadow column (`rekey verify`); write nothing.
    Verify,
}

/// Why `rekey rewrap --items esdk` is refused (docs/format.md §14).
const ESDK_REWRAP_REFUSED: &str = "AWS Encryption SDK messages cannot be re-wrapped in place: the header tag is \
AES-GCM under the message's derived key with a fixed zero IV, so re-authenticating a changed header reuses that key \
and nonce on new data, and anyone holding both headers can forge frames; signed messages would also need the \
signing key, which the SDK discarded. Nothing was written";

/// `rekey reencrypt --items s3ec` is not built yet.
fn s3ec_reencrypt_missing() -> CliError {
    CliError::usage("rekey does not re-encrypt S3 Encryption Client objects yet (their bodies stay as they are)")
        .hint("re-wrap their KMS data keys with `rekey rewrap s3://... --items s3ec`")
}

pub(crate) async fn rewrap(keys: &Keys, args: RewrapArgs, action: Action) -> Result<ExitCode, CliError> {
    if args.items == ItemKind::Esdk {
        // Before any key is resolved or anything is read or written.
        return Err(CliError::usage(ESDK_REWRAP_REFUSED).hint("use rekey reencrypt --items esdk"));
    }
    let mut args = args;
    if args.items == ItemKind::S3ec {
        if !crate::commands::s3::is_s3_target(&args.target.inventory) {
            return Err(CliError::usage("--items s3ec is for S3 objects: name one target s3://BUCKET/PREFIX"));
        }
        if !args.source_context.is_empty() || !args.dest_context.is_empty() {
            return Err(CliError::usage(
                "--items s3ec uses each object's own encryption context: drop --source-context and --dest-context",
            ));
        }
        // Each object is a bare KMS blob under its own context; reruns probe with it.
        args.target.inventory.s3.s3ec = true;
        args.target.inventory.s3.probe_context = Some(Vec::new());
    } else if args.target.inventory.s3.metadata_key.is_some() {
        // S3 method A: the metadata entry holds a bare KMS blob.
        args.items = ItemKind::Edk;
        let dest = if args.dest_context.is_empty() { &args.source_context } else { &args.dest_context };
        args.target.inventory.s3.probe_context = Some(dest.clone());
    }
    if args.items == ItemKind::Edk && crate::commands::dynamodb::is_dynamodb_target(&args.target.inventory) {
        // A rerun (or a resumed run) finds blobs under the destination already: probed, not failed.
        let dest = if args.dest_context.is_empty() { &args.source_context } else { &args.dest_context };
        args.target.inventory.s3.probe_context = Some(dest.clone());
    }
    let destination = keys.wrapping(&args.to, &[]).await?;
    let mut params = RunParams::new();
    let sources = match args.items {
        ItemKind::Edk | ItemKind::S3ec if args.from.is_empty() => {
            return Err(CliError::usage(
                "bare data keys name no key: say which keys they are under with --from kms:KEY",
            ));
        }
        _ => source_keyrings(keys, &args.from, &args.discovery).await?,
    };
    let transform = match args.items {
        ItemKind::Envelope => {
            let mut remove = Vec::new();
            for spec in &args.remove {
                remove.push(keys.wrapping(spec, &[]).await?);
            }
            params.insert("add".into(), args.add.to_string());
            params.insert("remove".into(), key_ids(&remove));
            transform(Rewrap::new(destination, remove, args.add), sources, &args.target)
        }
        ItemKind::S3ec => {
            let none = envelope_core::EncryptionContext::new();
            transform(RewrapBare::new(destination, none.clone(), none), sources, &args.target)
        }
        ItemKind::Edk => {
            let source_context = parse_context(&args.source_context)?;
            let dest_context =
                if args.dest_context.is_empty() { source_context.clone() } else { parse_context(&args.dest_context)? };
            params.insert("source_context".into(), context_param(source_context.iter()));
            params.insert("dest_context".into(), context_param(dest_context.iter()));
            transform(RewrapBare::new(destination, source_context, dest_context), sources, &args.target)
        }
        ItemKind::Legacy => {
            return Err(CliError::usage("legacy records hold no wrapped key to replace")
                .hint("move them with `rekey reencrypt --items legacy`"));
        }
        ItemKind::Esdk => return Err(CliError::usage(ESDK_REWRAP_REFUSED).hint("use rekey reencrypt --items esdk")),
    };
    params.insert("items".into(), args.items.name().into());
    key_params(&mut params, &args.from, &args.discovery);
    let iam = iam_actions("rewrap", &args.to, &args.from, args.target.verify, local_keys_exist(keys));
    match action {
        Action::Rotate => run(keys, transform, args.target, "rewrap", params, iam, kms_keys(&args.from)).await,
        Action::Verify => verify_copies(transform, args.target).await,
    }
}

pub(crate) async fn reencrypt(keys: &Keys, args: ReencryptArgs, action: Action) -> Result<ExitCode, CliError> {
    if args.format.is_some() && args.items != ItemKind::Esdk {
        return Err(CliError::usage("--format chooses what AWS Encryption SDK messages become: it needs --items esdk"));
    }
    let Some(to) = &args.to else {
        return reencrypt_to_keyset(keys, args, action).await;
    };
    if args.items == ItemKind::Esdk {
        let to = to.clone();
        return reencrypt_esdk(keys, args, &to, action).await;
    }
    let destination = keys.wrapping(to, &[]).await?;
    let context = if args.context.is_empty() { None } else { Some(parse_context(&args.context)?) };
    let mut params = RunParams::new();
    params.insert("context".into(), context.as_ref().map(|c| context_param(c.iter())).unwrap_or_default());
    params.insert("items".into(), args.items.name().into());
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
        ItemKind::S3ec => return Err(s3ec_reencrypt_missing()),
        ItemKind::Esdk => unreachable!("handled by reencrypt_esdk above"),
    };
    let sources = keys.decrypting(&args.from, &args.discovery).await?;
    key_params(&mut params, &args.from, &args.discovery);
    legacy_params(&mut params, &args);
    let mut iam = iam_actions("reencrypt", to, &args.from, args.target.verify, local_keys_exist(keys));
    iam.extend(legacy_iam(&args));
    let transform = transform(Reencrypt::new(destination, context, legacy), sources, &args.target);
    match action {
        Action::Rotate => run(keys, transform, args.target, "reencrypt", params, iam, kms_keys(&args.from)).await,
        Action::Verify => verify_copies(transform, args.target).await,
    }
}

/// `rekey reencrypt --items esdk`: AWS Encryption SDK messages into new SDK
/// messages under `to` (or, `--format rekey`, into rekey envelopes), through
/// the same engine as every rotation.
async fn reencrypt_esdk(keys: &Keys, args: ReencryptArgs, to: &KeySpec, action: Action) -> Result<ExitCode, CliError> {
    if !args.context.is_empty() {
        return Err(CliError::usage("--items esdk keeps each message's own encryption context; drop --context")
            .hint("bind messages to their rows with --context-column: their context must already hold it"));
    }
    if args.format == Some(OutputFormat::Rekey) {
        let destination = keys.wrapping(to, &[]).await?;
        let sources = keys.decrypting(&args.from, &args.discovery).await?;
        let mut params = RunParams::new();
        params.insert("items".into(), "esdk".into());
        params.insert("format".into(), "rekey".into());
        key_params(&mut params, &args.from, &args.discovery);
        let iam = iam_actions("reencrypt", to, &args.from, args.target.verify, local_keys_exist(keys));
        let strategy = Reencrypt::new(destination, None, None).converting_esdk_messages();
        let transform = transform(strategy, sources, &args.target);
        return match action {
            Action::Rotate => run(keys, transform, args.target, "reencrypt", params, iam, kms_keys(&args.from)).await,
            Action::Verify => verify_copies(transform, args.target).await,
        };
    }
    let KeySpec::Kms(_) = to else {
        return Err(CliError::usage(
            "--items esdk writes AWS Encryption SDK messages, which the SDKs open with KMS keys: --to must be kms:KEY",
        ));
    };
    if args.from.is_empty() && !args.discovery.kms_discovery {
        return Err(CliError::usage("SDK messages are under KMS keys: say which may decrypt them")
            .hint("pass --from kms:KEY (repeatable), or --kms-discovery --discovery-account ACCOUNT_ID"));
    }
    let destination = keys.wrapping(to, &[]).await?;
    let sources = keys.decrypting(&args.from, &args.discovery).await?;
    let mut params = RunParams::new();
    params.insert("items".into(), "esdk".into());
    key_params(&mut params, &args.from, &args.discovery);
    let iam = iam_actions("reencrypt", to, &args.from, args.target.verify, false);
    let transform = transform(ReencryptEsdk::new(destination), sources, &args.target);
    match action {
        Action::Rotate => run(keys, transform, args.target, "reencrypt", params, iam, kms_keys(&args.from)).await,
        Action::Verify => verify_copies(transform, args.target).await,
    }
}

/// `rekey reencrypt --keyset FILE`: items into compact records of the
/// keyset, through the same engine (journal, resume, rollback, tables).
async fn reencrypt_to_keyset(keys: &Keys, args: ReencryptArgs, action: Action) -> Result<ExitCode, CliError> {
    let Some(file) = &args.keyset else {
        return Err(CliError::usage("reencrypt needs --to KEYREF or --keyset FILE"));
    };
    let (keyset, handle) = super::keyset::open(keys, file).await?;
    let inner = if args.legacy_raw { InnerEncoding::Raw } else { InnerEncoding::Base64 };
    let legacy = match args.items {
        // The keyset's imported legacy key serves unless one is named here.
        ItemKind::Legacy if args.legacy_edk.is_none() && args.legacy_key_file.is_none() && handle.has_legacy_key() => {
            None
        }
        ItemKind::Legacy => Some(legacy_key(keys, &args).await?),
        ItemKind::Envelope => None,
        ItemKind::Edk => {
            return Err(CliError::usage("bare encrypted data keys are re-wrapped, not re-encrypted")
                .hint("use `rekey rewrap --items edk`"));
        }
        ItemKind::S3ec => return Err(s3ec_reencrypt_missing()),
        ItemKind::Esdk if args.format == Some(OutputFormat::Esdk) => {
            return Err(CliError::usage("--keyset writes compact records, not AWS Encryption SDK messages")
                .hint("drop --format esdk, or write SDK messages with --to kms:KEY instead of --keyset"));
        }
        ItemKind::Esdk => None,
    };
    let context = parse_context(&args.context)?;
    let mut params = RunParams::new();
    params.insert("context".into(), context_param(context.iter()));
    params.insert("items".into(), args.items.name().into());
    params.insert("keyset".into(), keyset.id().to_string());
    let sources = keys.decrypting(&args.from, &args.discovery).await?;
    key_params(&mut params, &args.from, &args.discovery);
    legacy_params(&mut params, &args);
    let mut strategy = ToKeyset::new(Arc::new(handle), keyset.id().to_string(), context, legacy, inner);
    if args.items == ItemKind::Esdk {
        strategy = strategy.converting_esdk_messages();
    }
    let kms_from = kms_keys(&args.from);
    let mut iam = if kms_from.is_empty() {
        vec!["none: the keyset's keys are unwrapped once at the start".to_owned()]
    } else {
        vec![format!("kms:Decrypt on {}", kms_from.join(", "))]
    };
    iam.extend(legacy_iam(&args));
    let transform = transform(strategy, sources, &args.target);
    match action {
        Action::Rotate => run(keys, transform, args.target, "reencrypt", params, iam, kms_from).await,
        Action::Verify => verify_copies(transform, args.target).await,
    }
}

/// The run's transform: `strategy` with the operator's source keys and the target's settings.
fn transform(strategy: impl Strategy + 'static, sources: Vec<Box<dyn Keyring>>, target: &TargetArgs) -> Transform {
    Transform::new(strategy, sources, ParseOptions::default(), target.verify, target.dry_run)
}

/// `rekey verify`: every copy in the shadow column checked against its
/// original with the run's keys; nothing written, no journal.
async fn verify_copies(transform: Transform, target: TargetArgs) -> Result<ExitCode, CliError> {
    let store = super::targets::target(&target.inventory)?;
    store.can_verify()?;
    if target.dry_run || target.resume || target.journal.is_some() || target.output.is_some() {
        return Err(CliError::usage("rekey verify writes nothing: drop --dry-run, --resume, --journal and -o"));
    }
    let settings = Settings { preflight: false, ..settings(&target) };
    let engine = Engine {
        operation: "verify",
        settings,
        transform: None,
        failures: Arc::new(FailureLog::new(target.failures.clone())),
        progress: progress(!target.no_progress),
        cancel: cancel_on_signals(),
    };
    let check = CopyCheck::new(Arc::new(transform));
    let mut summary = store.verify(&engine, Arc::clone(&check), !target.no_progress).await?;
    let tally = check.tally();
    // Proven copies were left as they are, which the engine counts as skipped.
    summary.counts.skipped = summary.counts.skipped.saturating_sub(tally.verified());
    summary.verified = tally.verified();
    summary.extra.push(("proven_without_decrypting".into(), json!(tally.same_data_key)));
    print_summary(&summary, target.json, false);
    if summary.stopped == Some(Stop::Interrupted) {
        return Ok(ExitCode::from(INTERRUPTED));
    }
    Ok(if summary.counts.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

/// The source keyrings of a rewrap: one per `--from` key (the allow-list),
/// every local key when none is named, or KMS discovery when asked for.
async fn source_keyrings(
    keys: &Keys,
    from: &[KeySpec],
    discovery: &DiscoveryArgs,
) -> Result<Vec<Box<dyn Keyring>>, CliError> {
    if from.is_empty() {
        return keys.decrypting(&[], discovery).await;
    }
    let mut sources = Vec::new();
    for spec in from {
        sources.push(keys.wrapping(spec, &[]).await?);
    }
    if let Some(filter) = discovery.filter()? {
        sources.push(keys.kms().decrypting_keyring(&[], Some(filter)).await?);
    }
    Ok(sources)
}

/// Every parameter that chooses the keys items may be opened with, local
/// ones included (`from` names only KMS keys, for the IAM plan), for
/// `--resume` to compare. Journals written before these were recorded lack
/// them, and are not compared on them.
fn key_params(params: &mut RunParams, from: &[KeySpec], discovery: &DiscoveryArgs) {
    let mut from: Vec<String> = from.iter().map(ToString::to_string).collect();
    from.sort();
    params.insert("source_keys".into(), from.join(","));
    let mut accounts = discovery.discovery_accounts.clone();
    accounts.sort();
    let discovery = if discovery.kms_discovery {
        format!("{} accounts {}", discovery.discovery_partition, accounts.join(","))
    } else {
        String::new()
    };
    params.insert("kms_discovery".into(), discovery);
}

/// The legacy data key's source, for `--resume` to compare: the key file's
/// path, or a fingerprint of `--legacy-edk` (a file name or a long base64
/// blob), and its KMS context.
fn legacy_params(params: &mut RunParams, args: &ReencryptArgs) {
    let key = match (&args.legacy_edk, &args.legacy_key_file) {
        (Some(edk), _) => format!("edk sha256:{}", &rotate_cli::engine::journal::sha256(edk.as_bytes())[..16]),
        (None, Some(file)) => format!("key file {}", file.display()),
        (None, None) => String::new(),
    };
    params.insert("legacy_key".into(), key);
    params.insert("legacy_context".into(), args.legacy_context.join(","));
}

fn key_ids(keyrings: &[Box<dyn Keyring>]) -> String {
    keyrings.iter().map(|k| format!("{}:{}", k.provider_id(), k.key_id())).collect::<Vec<_>>().join(",")
}

pub(crate) fn rollback(args: RollbackArgs) -> Result<ExitCode, CliError> {
    let request = super::targets::RollbackRequest { database_url: args.database_url.as_deref() };
    let (summary, conflicts) = super::targets::rollback(&args.journal, &request)?;
    for c in conflicts {
        eprintln!("rekey: rollback: {c}");
    }
    print_summary(&summary, args.json, false);
    if summary.counts.failed == 0
        && let Some(retired) = rotate_cli::engine::journal::retire_if_unchanged(&args.journal)?
    {
        // Nothing to undo, and nothing for --resume to finish: the journal
        // would only block the corrected command.
        eprintln!(
            "rekey: rollback: the run changed nothing; its journal is retired to {} and no longer blocks a new run",
            retired.display()
        );
    }
    Ok(if summary.counts.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

pub(crate) async fn scan(args: ScanArgs) -> Result<ExitCode, CliError> {
    let settings = Settings { shard: args.inventory.shard, preflight: false, ..Settings::default() };
    let expect = if args.items == ItemKind::Edk { Expect::BareKeys } else { Expect::Auto };
    let engine = Engine {
        operation: "scan",
        settings,
        transform: None,
        failures: Arc::new(FailureLog::new(None)),
        progress: progress(!args.no_progress),
        cancel: cancel_on_signals(),
    };
    let scanned = super::targets::target(&args.inventory)?.scan(&engine, expect).await?;
    if args.json {
        println!("{}", scanned.json);
    } else {
        print!("{}", scanned.text);
    }
    let summary = scanned.summary;
    Ok(if summary.stopped == Some(Stop::Interrupted) { ExitCode::from(INTERRUPTED) } else { ExitCode::SUCCESS })
}

async fn run(
    keys: &Keys,
    transform: Transform,
    target: TargetArgs,
    operation: &'static str,
    mut params: RunParams,
    mut iam: Vec<String>,
    source_keys: Vec<String>,
) -> Result<ExitCode, CliError> {
    let store = super::targets::target(&target.inventory)?;
    params.insert("operation".into(), operation.into());
    params.insert("to".into(), transform.destination_label().to_owned());
    params.insert("from".into(), source_keys.join(","));
    params.insert("fields".into(), target.inventory.field.join(","));
    params.insert("columns".into(), target.inventory.column.join(","));
    params.insert("shard".into(), target.inventory.shard.map(|s| s.to_string()).unwrap_or_default());
    params.append(&mut store.run_params()?);
    iam.extend(store.iam_actions());
    if target.output.is_some()
        && let Some(refusal) = store.refuses_output()
    {
        return Err(CliError::usage(refusal));
    }
    let output = target.output.as_deref();
    let journal_path = target.journal.clone().or_else(|| store.default_journal(output));
    let stdout_busy = store.writes_stdout(output);
    let failures_path = target
        .failures
        .clone()
        .or_else(|| journal_path.as_ref().map(|j| with_suffix(j, ".failures.jsonl")))
        .filter(|_| !target.dry_run);
    if !target.dry_run
        && let Some(journal) = &journal_path
    {
        check_writable(journal)?;
    }
    let settings = Settings { journal: journal_path.clone().map(|p| (p, params)), ..settings(&target) };
    let mut preflight = Vec::new();
    let mut sample_failed = false;
    if target.dry_run {
        // DescribeKey on the destination and on the KMS source keys named.
        let destination = transform
            .destination()
            .filter(|d| d.provider_id() == crate::kms::PROVIDER_ID)
            .map(|d| d.key_id().to_owned());
        for key in destination.into_iter().chain(source_keys) {
            preflight.push(keys.kms().preflight(&key).await?);
        }
        preflight.extend(store.dry_run_notes().await?);
    }
    let transform = Arc::new(transform);
    let engine = Engine {
        operation,
        settings,
        transform: Some(Arc::clone(&transform)),
        failures: Arc::new(FailureLog::new(failures_path)),
        progress: crate::commands::audit::wrap(
            progress(!target.no_progress),
            target.metadata_output.as_deref(),
            operation,
        )?,
        cancel: cancel_on_signals(),
    };
    let dry = DryRun::new();
    let rotation = Rotation {
        engine: &engine,
        transform: &transform,
        count_ahead: !target.no_progress,
        output,
        resume: target.resume,
    };
    let mut summary =
        if target.dry_run { store.dry_run(rotation, Arc::clone(&dry)).await? } else { store.rotate(rotation).await? };
    if target.dry_run {
        let sample = match dry.sample() {
            Some(item) => match transform.apply_sample(&item).await {
                Ok(Outcome::Changed { .. }) => format!("one item ({}) processed in memory: ok", item.name),
                Ok(_) => format!("one item ({}) processed in memory: already done", item.name),
                Err(e) => {
                    // The forecast counts what its own sample showed: that item fails.
                    let c = &mut summary.counts;
                    c.failed += 1;
                    sample_failed = true;
                    if c.rewrapped > 0 {
                        c.rewrapped -= 1;
                    } else {
                        c.reencrypted = c.reencrypted.saturating_sub(1);
                        c.from_legacy = c.from_legacy.min(c.reencrypted);
                        c.lifted = c.lifted.min(c.reencrypted);
                    }
                    format!(
                        "one item ({}) processed in memory FAILED: {e}; a real run would fail it, and likely every \
                         item like it",
                        item.name
                    )
                }
            },
            None => match dry.first_failure() {
                Some((name, why)) => format!("no item would change; one item ({name}) FAILED: {why}"),
                None => "no item would change".to_owned(),
            },
        };
        summary.extra.push(("sample".into(), json!(sample)));
        summary.extra.push((
            "kms_calls".into(),
            json!(transform.planned_calls(summary.counts.rewrapped + summary.counts.reencrypted)),
        ));
        if preflight.is_empty() {
            preflight.push("no KMS key named: nothing to check with DescribeKey".to_owned());
        }
        summary.extra.push(("preflight".into(), json!(preflight)));
        summary.extra.push(("iam_actions".into(), json!(iam)));
        summary
            .extra
            .push(("journal_estimate".into(), json!(format!("about {} KiB", dry.journal_bytes().div_ceil(1024)))));
    }
    summary.kms = keys.kms().usage();
    print_summary(&summary, target.json, stdout_busy);
    if sample_failed {
        eprintln!(
            "rekey: error: the dry run's sample item failed in memory (see \"sample\" above)\n  hint: fix its cause \
             (keys, --from, the context) and dry-run again before the real run"
        );
    }
    if summary.stopped == Some(Stop::Interrupted) {
        let total = summary.total.map_or_else(String::new, |t| format!(" of {t}"));
        eprintln!(
            "rekey: interrupted after {}{total} units; rerun the same command with --resume",
            summary.counts.items() + summary.counts.not_selected
        );
        return Ok(ExitCode::from(INTERRUPTED));
    }
    Ok(if summary.counts.failed > 0 { ExitCode::from(Code::Partial as u8) } else { ExitCode::SUCCESS })
}

/// The legacy data key: unwrapped once from its KMS ciphertext blob, or
/// read from a raw key file (tests and offline migrations).
async fn legacy_key(keys: &Keys, args: &ReencryptArgs) -> Result<DataKey, CliError> {
    legacy_data_key(keys, args.legacy_key_file.as_deref(), args.legacy_edk.as_deref(), &args.legacy_context).await
}

fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    rotate_cli::engine::files::with_suffix(path, suffix)
}

/// Whether the local keystore holds a key: without `--from`, those are the sources.
fn local_keys_exist(keys: &Keys) -> bool {
    keys.keystore().list().is_ok_and(|list| !list.is_empty())
}

/// The legacy data key's own KMS call: its blob names its key, which KMS
/// reads from it (the dry run cannot), so the plan names it by its source.
fn legacy_iam(args: &ReencryptArgs) -> Option<String> {
    args.legacy_edk.as_ref().filter(|_| args.items == ItemKind::Legacy)?;
    Some(
        "kms:Decrypt on the KMS key the legacy data key (--legacy-edk) is under, once at the start (the key its \
         blob names)"
            .to_owned(),
    )
}

/// The IAM actions a run needs, for the dry run's report: only what applies.
fn iam_actions(operation: &str, to: &KeySpec, from: &[KeySpec], verify: bool, local_keys: bool) -> Vec<String> {
    let kms_from: Vec<String> = kms_keys(from);
    // Items under local keys need kms:Encrypt only when a local key can be a source.
    let has_local_source = from.iter().any(|s| matches!(s, KeySpec::Local(_))) || (from.is_empty() && local_keys);
    let mut actions = Vec::new();
    match (operation, to) {
        ("rewrap", KeySpec::Kms(key)) => {
            if !kms_from.is_empty() {
                actions.push(format!("kms:ReEncryptFrom on {}", kms_from.join(", ")));
                actions.push(format!("kms:ReEncryptTo on {key}"));
            }
            if has_local_source {
                actions.push(format!("kms:Encrypt on {key} (items under local keys)"));
            }
            if verify {
                actions.push(format!("kms:Decrypt on {key} (--verify; brings each new data key into memory)"));
            }
            actions.push(format!("kms:DescribeKey on {key}"));
        }
        (_, KeySpec::Kms(key)) => {
            if !kms_from.is_empty() {
                actions.push(format!("kms:Decrypt on {}", kms_from.join(", ")));
            }
            actions.push(format!("kms:GenerateDataKey on {key}"));
            actions.push(format!("kms:Decrypt on {key} (items already under it, and --verify)"));
            actions.push(format!("kms:DescribeKey on {key}"));
        }
        (_, KeySpec::Local(_)) => {
            if !kms_from.is_empty() {
                actions.push(format!("kms:Decrypt on {}", kms_from.join(", ")));
            }
        }
    }
    if actions.is_empty() {
        actions.push("none: local keys only".into());
    }
    actions
}
