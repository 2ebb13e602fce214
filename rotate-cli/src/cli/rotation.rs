//! Rotation commands: what to rotate (inventory), how (target settings), and each command's options.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::common::{DiscoveryArgs, KmsArgs, OutputFormat};
use crate::key_spec::KeySpec;

/// What the items of a rotation are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ItemKind {
    /// rekey envelopes, binary or text form (detected)
    Envelope,
    /// Bare KMS ciphertext blobs (encrypted data keys), binary or base64
    Edk,
    /// Legacy AES-CBC records (reencrypt only)
    Legacy,
    /// AWS Encryption SDK messages, binary or base64 (reencrypt only, into new SDK messages)
    Esdk,
    /// S3 objects written by the Amazon S3 Encryption Client (rewrap of s3:// targets: each object's KMS-wrapped
    /// data key, under its own encryption context)
    S3ec,
}

impl ItemKind {
    /// Its name on the command line, which journals record.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Envelope => "envelope",
            Self::Edk => "edk",
            Self::Legacy => "legacy",
            Self::Esdk => "esdk",
            Self::S3ec => "s3ec",
        }
    }
}

/// What to work on: files and directories, or one record stream.
#[derive(Debug, Args)]
pub(crate) struct InventoryArgs {
    /// Files or directories (recursed) rewritten in place, one record file with --field/--column ('-' is stdin),
    /// or a database (sqlite:PATH, postgres://..., mysql://...) with --table
    #[arg(required = true, value_name = "TARGET")]
    pub(crate) targets: Vec<PathBuf>,
    /// Only files matching this glob (relative to the directory); repeatable
    #[arg(long, value_name = "GLOB")]
    pub(crate) include: Vec<String>,
    /// Skip files matching this glob; repeatable
    #[arg(long, value_name = "GLOB")]
    pub(crate) exclude: Vec<String>,
    /// JSON Lines record stream: the field holding the item, as a JSON Pointer; repeatable
    #[arg(long, value_name = "POINTER", conflicts_with = "column")]
    pub(crate) field: Vec<String>,
    /// CSV record stream or --table: the column holding the item; repeatable
    #[arg(long, value_name = "NAME")]
    pub(crate) column: Vec<String>,
    /// Database table (TARGET is sqlite:PATH, postgres://... or mysql://...; PG* variables, ~/.pgpass, ~/.my.cnf and MYSQL_PWD apply)
    #[arg(long, value_name = "[SCHEMA.]TABLE", conflicts_with_all = ["field", "include", "exclude"])]
    pub(crate) table: Option<String>,
    /// Table: the columns identifying a row (a primary key or unique index on exactly them)
    #[arg(long = "id", value_name = "COL[,COL]", value_delimiter = ',', requires = "table")]
    pub(crate) ids: Vec<String>,
    /// Table or DynamoDB: write new values into this shadow column (attribute), leaving the original untouched
    #[arg(long, value_name = "COLUMN")]
    pub(crate) into: Option<String>,
    /// Table: bind each item to its row with this column's value in the encryption context; repeatable
    #[arg(long, value_name = "COL", requires = "table")]
    pub(crate) context_column: Vec<String>,
    /// Table: log in to PostgreSQL on RDS with an IAM token (SigV4, from the AWS configuration KMS uses; TLS required)
    #[arg(long, requires = "table")]
    pub(crate) database_iam_auth: bool,
    /// Table: rows per page and per transaction
    #[arg(long, default_value_t = rotate_cli::engine::table::DEFAULT_BATCH_SIZE, value_name = "N")]
    pub(crate) batch_size: usize,
    /// Only shard I of N (0 <= I < N), by a hash of each item's id: N copies on N machines cover every item once
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<rotate_cli::engine::Shard>,
    #[command(flatten)]
    pub(crate) s3: S3Args,
    #[command(flatten)]
    pub(crate) dynamodb: DynamoArgs,
}

/// DynamoDB targets (`dynamodb://TABLE`).
#[derive(Debug, Clone, Args)]
pub(crate) struct DynamoArgs {
    /// DynamoDB: a top-level attribute (binary or string) holding the item; repeatable
    #[arg(long, value_name = "NAME")]
    pub(crate) attribute: Vec<String>,
    /// DynamoDB: bind each item to this attribute's value (string or number) in the encryption context; repeatable
    #[arg(long, value_name = "NAME")]
    pub(crate) context_attribute: Vec<String>,
    /// DynamoDB: a number the application bumps on each write; updates also require it unchanged, and bump it
    #[arg(long, value_name = "NAME")]
    pub(crate) version_attribute: Option<String>,
    /// DynamoDB: parallel scan segments of the whole table [default: 16]; every --shard process must use the same
    /// number
    #[arg(long, value_name = "N")]
    pub(crate) segments: Option<u32>,
}

/// Targets and engine settings shared by rewrap and reencrypt.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub(crate) inventory: InventoryArgs,
    /// Record stream output [default: stdout]
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Units in parallel: files and objects one each, record streams and tables in batches (64 records,
    /// 128 rows) whose items all run at once; KMS requests are paced by the adaptive rate (see --max-rps)
    #[arg(long, default_value_t = 16, value_name = "N")]
    pub(crate) concurrency: usize,
    /// Attempts per item for transient faults, on top of the SDK's retries
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub(crate) item_attempts: u32,
    /// Stop early after this many failed items
    #[arg(long, value_name = "N")]
    pub(crate) max_failures: Option<u64>,
    /// Journal file [default: next to the target, TARGET.rekey-journal]
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: Option<PathBuf>,
    /// Continue a stopped run (same command), skipping what the journal says is done
    #[arg(long)]
    pub(crate) resume: bool,
    /// Inventory and preflight only; write nothing
    #[arg(long)]
    pub(crate) dry_run: bool,
    /// Only this percentage of items, chosen deterministically by id (a later --resume does the rest)
    #[arg(long, value_name = "PERCENT")]
    pub(crate) sample: Option<f64>,
    /// Only the first N items (after --sample and --shard)
    #[arg(long, value_name = "N")]
    pub(crate) limit: Option<u64>,
    /// Check every new wrapped key or envelope against the original before writing it: one unwrap under the
    /// destination per distinct new data key (kms:Decrypt for a KMS key), which brings that data key into memory
    #[arg(long)]
    pub(crate) verify: bool,
    /// Failure report, JSON Lines [default: next to the journal, .failures.jsonl]
    #[arg(long, value_name = "FILE")]
    pub(crate) failures: Option<PathBuf>,
    /// Print the summary as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub(crate) no_progress: bool,
    /// Skip the check of the first item before anything is written
    #[arg(long)]
    pub(crate) no_preflight: bool,
    /// One JSON line per item (item, outcome, key ids, context, sizes) appended to FILE, for audits
    #[arg(long, value_name = "FILE")]
    pub(crate) metadata_output: Option<PathBuf>,
}

/// `rekey scan`.
#[derive(Debug, Args)]
pub(crate) struct ScanArgs {
    #[command(flatten)]
    pub(crate) inventory: InventoryArgs,
    /// What the items are, when they cannot tell (bare KMS blobs look like legacy records)
    #[arg(long, value_enum, default_value_t = ItemKind::Envelope)]
    pub(crate) items: ItemKind,
    /// Print the report as JSON
    #[arg(long)]
    pub(crate) json: bool,
    /// Never show a progress bar
    #[arg(long)]
    pub(crate) no_progress: bool,
}

#[derive(Debug, Args)]
pub(crate) struct RewrapArgs {
    /// The key to wrap under
    #[arg(long, value_name = "KEYREF")]
    pub(crate) to: KeySpec,
    /// Only replace wrapped keys of these keys; repeatable. KMS keys must be named here (or found with
    /// --kms-discovery); without --from, only wrapped keys under the keystore's local keys are replaced
    #[arg(long, value_name = "KEYREF")]
    pub(crate) from: Vec<KeySpec>,
    /// Keep the old wrapped keys beside the new one (a transition period)
    #[arg(long, conflicts_with = "remove")]
    pub(crate) add: bool,
    /// Drop wrapped keys of this key (after a transition period); repeatable
    #[arg(long, value_name = "KEYREF")]
    pub(crate) remove: Vec<KeySpec>,
    /// What the items are
    #[arg(long, value_enum, default_value_t = ItemKind::Envelope)]
    pub(crate) items: ItemKind,
    /// For --items edk: the context the keys were encrypted with (KEY=VALUE, repeatable)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) source_context: Vec<String>,
    /// For --items edk: the context to encrypt them with [default: the source context]
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) dest_context: Vec<String>,
    #[command(flatten)]
    pub(crate) discovery: DiscoveryArgs,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten, next_help_heading = "KMS client options")]
    pub(crate) kms: KmsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ReencryptArgs {
    /// The key to encrypt under
    #[arg(long, value_name = "KEYREF", required_unless_present = "keyset")]
    pub(crate) to: Option<KeySpec>,
    /// Re-encrypt into compact records of this keyset, under its primary key (instead of --to); the records'
    /// context is --context (plus --context-column), which an envelope's own context must match
    #[arg(long, value_name = "FILE", conflicts_with = "to")]
    pub(crate) keyset: Option<PathBuf>,
    /// --items esdk: write new SDK messages (esdk, the default) or convert them into rekey envelopes under
    /// --to (rekey), each keeping its message's encryption context; --keyset converts into compact records
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) format: Option<OutputFormat>,
    /// Keys allowed to decrypt the items (envelopes); repeatable
    #[arg(long, value_name = "KEYREF")]
    pub(crate) from: Vec<KeySpec>,
    #[command(flatten)]
    pub(crate) discovery: DiscoveryArgs,
    /// Context of the new envelopes [default: each item's own context; for legacy records, none]
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub(crate) context: Vec<String>,
    /// What the items are
    #[arg(long, value_enum, default_value_t = ItemKind::Envelope)]
    pub(crate) items: ItemKind,
    /// Legacy records: the data key's KMS CiphertextBlob (a file, or base64)
    #[arg(long, value_name = "FILE|BASE64")]
    pub(crate) legacy_edk: Option<String>,
    /// Legacy records: the KMS encryption context of --legacy-edk; repeatable
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) legacy_context: Vec<String>,
    /// Legacy records: a file holding the raw 32-byte data key (tests, offline migrations)
    #[arg(long, value_name = "FILE", conflicts_with = "legacy_edk")]
    pub(crate) legacy_key_file: Option<PathBuf>,
    /// Legacy records lack the inner base64 layer
    #[arg(long)]
    pub(crate) legacy_raw: bool,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
    #[command(flatten, next_help_heading = "KMS client options")]
    pub(crate) kms: KmsArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum VerifyCommand {
    /// Check copies made by `rekey rewrap … --into COLUMN` (same arguments)
    Rewrap(RewrapArgs),
    /// Check copies made by `rekey reencrypt … --into COLUMN` (same arguments)
    Reencrypt(ReencryptArgs),
}

pub(super) const VERIFY_EXAMPLES: &str = "\
Every row's shadow value is checked against its original with the keys of
the run: a re-wrapped copy by its data key's commitment and identical body
(no body is decrypted), a re-encrypted one by decrypting both sides. Nothing
is written. Missing copies are `not_copied`, different ones `verify_failed`.

Examples:
  rekey reencrypt --to kms:alias/new --from kms:alias/old sqlite:app.db --table users --column ssn --into ssn_v2 --id id
  rekey verify reencrypt --to kms:alias/new --from kms:alias/old sqlite:app.db --table users --column ssn --into ssn_v2 --id id";

#[derive(Debug, Args)]
pub(crate) struct RollbackArgs {
    /// The journal of the run to undo
    #[arg(long, value_name = "FILE")]
    pub(crate) journal: PathBuf,
    /// The database, when the journal's URL (kept without its password) does not reach it
    #[arg(long, value_name = "DB_URL")]
    pub(crate) database_url: Option<String>,
    /// Print the summary as JSON
    #[arg(long)]
    pub(crate) json: bool,
}

/// S3 targets (TARGET `s3://BUCKET/PREFIX`). The client uses the standard
/// AWS chain, like KMS (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3, AWS_REGION).
#[derive(Debug, Args, Clone, Default)]
pub(crate) struct S3Args {
    /// S3: the user-metadata entry (x-amz-meta-NAME) holding a KMS-encrypted data key in base64; implies --items edk
    #[arg(long, value_name = "NAME")]
    pub(crate) metadata_key: Option<String>,
    /// S3: path-style addressing, as S3-compatible servers need (also AWS_S3_FORCE_PATH_STYLE=true)
    #[arg(long)]
    pub(crate) s3_path_style: bool,
    /// S3: take the objects from FILE instead of listing the bucket: one key per line, an S3 Inventory CSV
    /// data file (gzipped or not), or an inventory's manifest.json with its data files beside it or in data/
    #[arg(long, value_name = "FILE")]
    pub(crate) object_list: Option<PathBuf>,
    /// S3: the SSE-KMS encryption context (KEY=VALUE, repeatable) the objects were written with, given again
    /// on every copy; S3 never returns it, so without this a copy keeps only S3's own (the object's ARN)
    #[arg(long, value_name = "KEY=VALUE")]
    pub(crate) sse_context: Vec<String>,
    /// S3 reencrypt on an unversioned bucket: originals are first copied to {PREFIX}{RUN}/{KEY} (same bucket; RUN names
    /// this run, so no backup is ever written over); not empty, and not overlapping the target's prefix
    #[arg(long, default_value = ".rekey-backup/", value_name = "PREFIX")]
    pub(crate) backup_prefix: String,
    /// S3, --items s3ec: the instruction file of KEY is KEY followed by this suffix
    #[arg(long, default_value = ".instruction", value_name = "SUFFIX")]
    pub(crate) instruction_suffix: String,
    /// Set by `rewrap --items s3ec`: the objects are S3 Encryption Client objects.
    #[arg(skip)]
    pub(crate) s3ec: bool,
    /// Set by `rewrap --metadata-key`: the destination context, with which a
    /// rerun recognises data keys already under the destination.
    #[arg(skip)]
    pub(crate) probe_context: Option<Vec<String>>,
}
