//! The command line, declared once: parsing, `--help`, completions and the
//! man page all come from these types.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::EXIT_CODES_HELP;
use crate::keys::KeySpec;

/// Envelope encryption and key rotation with AWS KMS or local keys.
#[derive(Debug, Parser)]
#[command(name = "rekey", version, after_help = EXIT_CODES_HELP, max_term_width = 100)]
pub(crate) struct Cli {
    /// Local keystore directory [env: REKEY_KEYSTORE] [default: $XDG_DATA_HOME/rekey/keys or
    /// ~/.local/share/rekey/keys]
    // REKEY_KEYSTORE is read in main, not by clap: an `env` argument counts
    // as given, and clap's usage lines then show it as if it were required.
    #[arg(long, global = true, value_name = "DIR")]
    pub(crate) keystore: Option<PathBuf>,

    /// More log output on stderr: -v what is done to each item, -vv rekey's debug lines, -vvv the AWS
    /// SDK's debug lines too. RUST_LOG replaces the levels, but the AWS SDK, HTTP and TLS crates never
    /// log below info (debug for the SDK with -vvv), whatever RUST_LOG or LOG_SIGNABLE_BODY say: their
    /// traces would print request bodies, and KMS requests carry data keys
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub(crate) verbose: u8,

    /// Only errors on stderr: no warnings, notes, summaries of file commands or progress bars
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub(crate) quiet: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

/// How to reach AWS KMS. Credentials, region and endpoint come from the
/// standard AWS chain (AWS_PROFILE, AWS_REGION, AWS_ENDPOINT_URL, SSO, IMDS).
/// Flattened, under their own heading, into the commands that use KMS only.
#[derive(Debug, Args, Clone)]
pub(crate) struct KmsArgs {
    /// Most attempts per KMS call, retries on throttling and faults included
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub(crate) kms_max_attempts: u32,

    /// SDK retry mode
    #[arg(long, value_enum, default_value_t = RetryMode::Standard)]
    pub(crate) kms_retry_mode: RetryMode,

    /// Seconds before one KMS request attempt is abandoned and retried
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub(crate) kms_attempt_timeout: f64,

    /// Seconds before a KMS call, retries included, fails
    #[arg(long, default_value_t = 60.0, value_name = "SECONDS")]
    pub(crate) kms_operation_timeout: f64,

    /// Most KMS requests per second, across all workers (0: no limit)
    #[arg(long, default_value_t = 0.0, value_name = "RPS")]
    pub(crate) max_rps: f64,
}

impl Default for KmsArgs {
    /// The defaults of the options above, for commands without them.
    fn default() -> Self {
        Self {
            kms_max_attempts: 8,
            kms_retry_mode: RetryMode::Standard,
            kms_attempt_timeout: 10.0,
            kms_operation_timeout: 60.0,
            max_rps: 0.0,
        }
    }
}

/// The AWS SDK's retry modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RetryMode {
    /// Exponential backoff with jitter.
    Standard,
    /// Standard plus client-side rate limiting when throttled.
    Adaptive,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Manage the local keystore
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Encrypt a file, stdin or records into envelopes
    #[command(after_help = ENCRYPT_EXAMPLES)]
    Encrypt(EncryptArgs),
    /// Decrypt envelopes
    #[command(after_help = DECRYPT_EXAMPLES)]
    Decrypt(DecryptArgs),
    /// Show what an envelope's header says, without any key
    #[command(after_help = INSPECT_EXAMPLES)]
    Inspect(InspectArgs),
    /// Replace the wrapped data keys of stored envelopes; bodies stay untouched
    #[command(after_help = REWRAP_EXAMPLES)]
    Rewrap(RewrapArgs),
    /// Decrypt and encrypt again under a fresh data key (also: off legacy CBC records)
    #[command(after_help = REENCRYPT_EXAMPLES)]
    Reencrypt(ReencryptArgs),
    /// Put every item of a rotation back as it was, from its journal
    Rollback(RollbackArgs),
    /// Check a shadow column filled with `--into`: the same rewrap or reencrypt command, with `verify` in front
    #[command(subcommand, after_help = VERIFY_EXAMPLES)]
    Verify(VerifyCommand),
    /// Count items per wrapping key (and legacy, bare, unreadable) without any key
    #[command(after_help = SCAN_EXAMPLES)]
    Scan(ScanArgs),
    /// Keysets and compact records: a few wrapped data keys in one file, records that name them by id
    #[command(subcommand)]
    Keyset(crate::commands::keyset::KeysetCommand),
    /// S3 operations that are not item rotations (SSE-KMS key changes)
    #[command(subcommand)]
    S3(S3Command),
    /// Print shell completions
    Completions {
        /// The shell
        shell: clap_complete::Shell,
    },
    /// Print a man page (roff), or write every page into a directory
    #[command(after_help = MAN_EXAMPLES)]
    Man(ManArgs),
    /// Try the main job end to end with local keys, no AWS: encrypt, rotate, verify, roll back
    #[command(after_help = DEMO_EXAMPLES)]
    Demo(DemoArgs),
}

impl Command {
    /// The KMS client options of the commands that have them.
    pub(crate) fn kms_args(&self) -> Option<&KmsArgs> {
        match self {
            Self::Encrypt(a) => Some(&a.kms),
            Self::Decrypt(a) => Some(&a.kms),
            Self::Rewrap(a) => Some(&a.kms),
            Self::Reencrypt(a) | Self::Verify(VerifyCommand::Reencrypt(a)) => Some(&a.kms),
            Self::Verify(VerifyCommand::Rewrap(a)) => Some(&a.kms),
            _ => None,
        }
    }
}

/// `rekey man`.
#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// The page: a subcommand such as `rewrap` or `s3 sse-rotate` (`rekey-rewrap(1)`) [default: rekey(1)]
    #[arg(value_name = "COMMAND", num_args = 0..)]
    pub(crate) command: Vec<String>,
    /// Write every page (rekey.1, rekey-encrypt.1, ...) into DIR instead, for packagers
    #[arg(long, value_name = "DIR", conflicts_with = "command")]
    pub(crate) dir: Option<PathBuf>,
}

/// `rekey demo`.
#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to work: a new or empty directory [default: a new directory under the system's temporary directory]
    pub(crate) dir: Option<PathBuf>,
}

const MAN_EXAMPLES: &str = "\
Examples:
  rekey man | man -l -
  rekey man rewrap | man -l -
  rekey man s3 sse-rotate > rekey-s3-sse-rotate.1
  rekey man --dir target/man";

const DEMO_EXAMPLES: &str = "\
Examples:
  cargo run --release -p rotate-cli -- demo
  rekey demo ./rekey-demo";

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Create a new local key
    Create {
        /// Key name: letters, digits, '_', '-', '.'
        name: String,
    },
    /// List local keys and their versions
    List {
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Add a new version to a key; old versions still decrypt
    Rotate {
        /// Key name
        name: String,
    },
}

/// Several inputs, directories, an output directory: shared by encrypt and decrypt.
#[derive(Debug, Args)]
pub(crate) struct FilesArgs {
    /// Input files or directories ('-' or none: stdin)
    #[arg(value_name = "INPUT")]
    pub(crate) inputs: Vec<PathBuf>,
    /// Output file, or with several inputs or a directory the output directory (mirroring the tree)
    /// [default: stdout]; written atomically
    #[arg(short, long, value_name = "FILE|DIR")]
    pub(crate) output: Option<PathBuf>,
    /// Walk directories given as inputs
    #[arg(short, long)]
    pub(crate) recursive: bool,
    /// With -r: only files matching this glob (relative to the directory); repeatable
    #[arg(long, value_name = "GLOB", requires = "recursive")]
    pub(crate) include: Vec<String>,
    /// With -r: skip files matching this glob; repeatable
    #[arg(long, value_name = "GLOB", requires = "recursive")]
    pub(crate) exclude: Vec<String>,
    /// Suffix of encrypted file names in an output directory: added by encrypt, removed by decrypt
    /// (which adds .decrypted to names without it)
    #[arg(long, default_value = ".rky", value_name = "SUFFIX")]
    pub(crate) suffix: String,
    /// One JSON line per input (input, output, key ids, context, sizes, outcome) appended to FILE, for audits
    #[arg(long, value_name = "FILE")]
    pub(crate) metadata_output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct EncryptArgs {
    /// Key to encrypt under (local:NAME or kms:KEY); repeat to let any of them decrypt. With --keyset: keys
    /// that may unwrap the keyset
    #[arg(long = "key", short = 'k', required_unless_present = "keyset", value_name = "KEYREF")]
    pub(crate) keys: Vec<KeySpec>,
    /// Write compact records of this keyset (one input, whole or --lines; see `rekey keyset`)
    #[arg(long, value_name = "FILE")]
    pub(crate) keyset: Option<PathBuf>,
    /// Encryption context pair, authenticated and passed to KMS; repeatable
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub(crate) context: Vec<String>,
    #[command(flatten)]
    pub(crate) files: FilesArgs,
    /// Write the base64 text form (single-shot; for database columns and JSON)
    #[arg(long, conflicts_with = "lines")]
    pub(crate) text: bool,
    /// Encrypt each input line as its own record, one text envelope per output line (line endings and a
    /// missing final newline are kept)
    #[arg(long)]
    pub(crate) lines: bool,
    /// Plaintext bytes per frame of the binary (framed) form
    #[arg(long, default_value_t = envelope_core::DEFAULT_FRAME_LEN, value_name = "BYTES")]
    pub(crate) frame_size: u32,
    /// Replace outputs that exist
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten, next_help_heading = "KMS client options")]
    pub(crate) kms: KmsArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DecryptArgs {
    /// Key allowed to decrypt (local:NAME or kms:KEY); repeatable. Default: every local key
    #[arg(long = "key", short = 'k', value_name = "KEYREF")]
    pub(crate) keys: Vec<KeySpec>,
    /// Read compact records of this keyset (one input, whole or --lines; see `rekey keyset`)
    #[arg(long, value_name = "FILE")]
    pub(crate) keyset: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) discovery: DiscoveryArgs,
    /// Required encryption context pair, or KEY alone: that key must be present with any value;
    /// decryption is refused otherwise. Repeatable
    #[arg(long = "context", short = 'c', value_name = "KEY[=VALUE]")]
    pub(crate) context: Vec<String>,
    #[command(flatten)]
    pub(crate) files: FilesArgs,
    /// Decrypt one text envelope per input line (line endings are kept)
    #[arg(long)]
    pub(crate) lines: bool,
    /// Write plaintext to a terminal, or replace outputs that exist
    #[arg(long)]
    pub(crate) force: bool,
    /// Most encrypted data keys accepted in one envelope
    #[arg(long, default_value_t = envelope_core::DEFAULT_MAX_ENCRYPTED_DATA_KEYS, value_name = "N")]
    pub(crate) max_encrypted_data_keys: usize,
    #[command(flatten, next_help_heading = "KMS client options")]
    pub(crate) kms: KmsArgs,
}

/// KMS discovery mode: KMS keys that are not named may decrypt, but only
/// keys of the accounts named here, in one partition (the AWS Encryption
/// SDK's discovery filter). Flattened into every command that decrypts.
#[derive(Debug, Args, Clone, Default, PartialEq, Eq)]
pub(crate) struct DiscoveryArgs {
    /// Let KMS keys named in the data try to decrypt, if they belong to a --discovery-account
    #[arg(long, requires = "discovery_accounts")]
    pub(crate) kms_discovery: bool,
    /// AWS account (12 digits) whose KMS keys discovery may use; repeatable, required by --kms-discovery
    #[arg(long = "discovery-account", value_name = "ACCOUNT_ID", requires = "kms_discovery")]
    pub(crate) discovery_accounts: Vec<String>,
    /// AWS partition of the discovery accounts (aws, aws-cn, aws-us-gov, ...)
    #[arg(long, default_value = "aws", value_name = "PARTITION", requires = "kms_discovery")]
    pub(crate) discovery_partition: String,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// Input file [default: stdin]
    pub(crate) input: Option<PathBuf>,
    /// Machine-readable output
    #[arg(long)]
    pub(crate) json: bool,
}

/// What the items of a rotation are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ItemKind {
    /// rekey envelopes, binary or text form (detected)
    Envelope,
    /// Bare KMS ciphertext blobs (encrypted data keys), binary or base64
    Edk,
    /// Legacy AES-CBC records (reencrypt only)
    Legacy,
}

/// What to work on: files and directories, or one record stream.
#[derive(Debug, Args)]
pub(crate) struct InventoryArgs {
    /// Files or directories (recursed) rewritten in place, one record file with --field/--column ('-' is stdin),
    /// or a database (sqlite:PATH, postgres://...) with --table
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
    /// Database table (TARGET is sqlite:PATH or postgres://...; PG* variables and ~/.pgpass apply)
    #[arg(long, value_name = "[SCHEMA.]TABLE", conflicts_with_all = ["field", "include", "exclude"])]
    pub(crate) table: Option<String>,
    /// Table: the columns identifying a row (a primary key or unique index on exactly them)
    #[arg(long = "id", value_name = "COL[,COL]", value_delimiter = ',', requires = "table")]
    pub(crate) ids: Vec<String>,
    /// Table: write new values into this shadow column, leaving --column untouched
    #[arg(long, value_name = "COLUMN", requires = "table")]
    pub(crate) into: Option<String>,
    /// Table: bind each item to its row with this column's value in the encryption context; repeatable
    #[arg(long, value_name = "COL", requires = "table")]
    pub(crate) context_column: Vec<String>,
    /// Table: rows per page and per transaction
    #[arg(long, default_value_t = rotate_cli::engine::table::DEFAULT_BATCH_SIZE, value_name = "N")]
    pub(crate) batch_size: usize,
    /// Only shard I of N (0 <= I < N), by a hash of each item's id: N copies on N machines cover every item once
    #[arg(long, value_name = "I/N")]
    pub(crate) shard: Option<rotate_cli::engine::Shard>,
    #[command(flatten)]
    pub(crate) s3: S3Args,
}

/// Targets and engine settings shared by rewrap and reencrypt.
#[derive(Debug, Args)]
pub(crate) struct TargetArgs {
    #[command(flatten)]
    pub(crate) inventory: InventoryArgs,
    /// Record stream output [default: stdout]
    #[arg(short, long, value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Items in parallel
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
    /// Check every new wrapped key or envelope against the original before writing it
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
    /// Only replace wrapped keys of these keys; repeatable (default: all)
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

const VERIFY_EXAMPLES: &str = "\
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

const ENCRYPT_EXAMPLES: &str = "\
Examples:
  rekey keys create demo
  rekey encrypt --key local:demo --context app=billing report.pdf -o report.pdf.rky
  echo -n 'card 4111' | rekey encrypt --key local:demo --text
  rekey encrypt --key local:demo --lines names.txt -o names.enc
  rekey encrypt --key kms:alias/app --key local:backup data.bin -o data.rky
  rekey encrypt --key local:demo -r docs/ --exclude '*.tmp' -o vault/ --metadata-output audit.jsonl";

const DECRYPT_EXAMPLES: &str = "\
Examples:
  rekey decrypt report.pdf.rky -o report.pdf
  rekey decrypt --key kms:alias/app --context app=billing data.rky -o data.bin
  rekey decrypt --lines names.enc -o names.txt
  rekey decrypt --context app -r vault/ -o docs/";

const INSPECT_EXAMPLES: &str = "\
Examples:
  rekey inspect report.pdf.rky
  rekey inspect --json < record.txt";

const REWRAP_EXAMPLES: &str = "\
Examples:
  rekey rewrap --to kms:alias/new --dry-run ./vault
  rekey rewrap --to kms:alias/new --from kms:alias/old --verify ./vault
  rekey rewrap --to local:k2 --field /card export.jsonl -o export.new.jsonl
  rekey rewrap --items edk --to kms:alias/new --source-context app=x keys/
  rekey rewrap --to local:k2 sqlite:app.db --table users --column ssn --id id
  rekey rewrap s3://bucket/docs/ --metadata-key edk --to kms:alias/new --from kms:alias/old
  rekey rollback --journal ./vault.rekey-journal";

const SCAN_EXAMPLES: &str = "\
Examples:
  rekey scan ./vault
  rekey scan --json --field /ssn users.jsonl
  rekey scan --shard 0/4 ./vault";

const REENCRYPT_EXAMPLES: &str = "\
Examples:
  rekey reencrypt --items legacy --legacy-edk datakey.bin --to kms:alias/new --field /ssn users.jsonl -o users.new.jsonl
  rekey reencrypt --to local:k2 --context app=billing ./vault
  rekey reencrypt --items legacy --legacy-edk datakey.bin --to kms:alias/new postgres://app@127.0.0.1/app \\
    --table users --column ssn --id id --context-column tenant_id";

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
    /// Set by `rewrap --metadata-key`: the destination context, with which a
    /// rerun recognises data keys already under the destination.
    #[arg(skip)]
    pub(crate) probe_context: Option<Vec<String>>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum S3Command {
    /// Change the SSE-KMS key of objects: UpdateObjectEncryption (no data moved), or a self-copy
    #[command(after_help = SSE_ROTATE_EXAMPLES)]
    SseRotate(SseRotateArgs),
}

/// How `rekey s3 sse-rotate` changes an object's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum SseMethodArg {
    /// UpdateObjectEncryption; the copy where the endpoint does not implement it
    Auto,
    /// UpdateObjectEncryption only
    Update,
    /// A self-copy carrying every property over (multipart above --multipart-threshold)
    Copy,
}

/// `rekey s3 sse-rotate`.
#[derive(Debug, Args)]
pub(crate) struct SseRotateArgs {
    /// The KMS key objects should be under (key id, ARN or alias; `kms:` prefix optional)
    #[arg(long, value_name = "KMS_KEY")]
    pub(crate) to: String,
    /// Only objects under this KMS key; repeatable (default: every object not under --to)
    #[arg(long, value_name = "KMS_KEY")]
    pub(crate) from: Vec<String>,
    /// How to change the key
    #[arg(long, value_enum, default_value_t = SseMethodArg::Auto)]
    pub(crate) method: SseMethodArg,
    /// Set the S3 Bucket Key on (true) or off (false) [default: keep each object's]
    #[arg(long, value_name = "BOOL")]
    pub(crate) bucket_key: Option<bool>,
    /// Copies of objects larger than this are made in parts (UploadPartCopy); S3 allows one copy up to 5 GiB
    #[arg(long, default_value_t = rotate_cli::engine::s3::MAX_SINGLE_COPY, value_name = "BYTES")]
    pub(crate) multipart_threshold: u64,
    /// Part size of a multipart copy (at least 5 MiB)
    #[arg(long, default_value_t = rotate_cli::engine::s3::DEFAULT_PART_SIZE, value_name = "BYTES")]
    pub(crate) part_size: u64,
    /// Change nothing: write an S3 Batch Operations manifest and job definition for the same change into DIR
    #[arg(long, value_name = "DIR", conflicts_with_all = ["dry_run", "resume"])]
    pub(crate) emit_batch_job: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub(crate) target: TargetArgs,
}

const SSE_ROTATE_EXAMPLES: &str = "\
Examples:
  rekey s3 sse-rotate s3://bucket/logs/ --to alias/logs-2026 --dry-run
  rekey s3 sse-rotate s3://bucket/logs/ --to alias/logs-2026 --from alias/logs --sample 1
  rekey s3 sse-rotate s3://bucket/logs/ --to alias/logs-2026 --from alias/logs --resume
  rekey rollback --journal s3-bucket-logs.rekey-journal";
