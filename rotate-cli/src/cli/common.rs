//! Options several commands share: KMS settings, files, keys, discovery.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::key_spec::KeySpec;

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

    /// Most KMS requests per second, across all workers (0: no cap). Below it the rate adapts to KMS's
    /// quota: it backs off on ThrottlingException and probes back up; throttled requests are retried
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
    /// What to write: rekey envelopes, or AWS Encryption SDK messages (version 2, framed, key commitment)
    /// that the SDKs and aws-encryption-cli decrypt; those take kms:KEY keys only
    #[arg(long, value_enum, default_value_t = OutputFormat::Rekey, conflicts_with = "keyset")]
    pub(crate) format: OutputFormat,
    /// --format esdk: the message's algorithm suite, named as the SDKs name it
    #[arg(long, value_enum, default_value_t = EsdkAlgorithm::Signed, value_name = "SUITE")]
    pub(crate) algorithm: EsdkAlgorithm,
    /// Plaintext bytes per frame of the binary (framed) form [default: 65536; 4096 with --format esdk, as
    /// the SDKs]
    #[arg(long, value_name = "BYTES")]
    pub(crate) frame_size: Option<u32>,
    /// Replace outputs that exist
    #[arg(long)]
    pub(crate) force: bool,
    #[command(flatten, next_help_heading = "KMS client options")]
    pub(crate) kms: KmsArgs,
}

/// The ciphertext format a command writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum OutputFormat {
    /// rekey envelopes (docs/format.md)
    Rekey,
    /// AWS Encryption SDK messages (docs/format.md §14)
    Esdk,
}

/// The AWS Encryption SDK suites rekey writes: the committing ones, named
/// as the SDKs and aws-encryption-cli's `--algorithm` name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum EsdkAlgorithm {
    /// 0x0578, the SDKs' default: key commitment and an ECDSA P-384 signature
    #[value(name = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY_ECDSA_P384", alias = "0x0578")]
    Signed,
    /// 0x0478: key commitment, unsigned (smaller, faster; any holder of the data key can make messages)
    #[value(name = "AES_256_GCM_HKDF_SHA512_COMMIT_KEY", alias = "0x0478")]
    Unsigned,
}

impl EsdkAlgorithm {
    /// The suite it names.
    pub(crate) fn suite(self) -> envelope_core::esdk::Suite {
        match self {
            Self::Signed => envelope_core::esdk::Suite::Aes256GcmHkdfSha512CommitEcdsaP384,
            Self::Unsigned => envelope_core::esdk::Suite::Aes256GcmHkdfSha512Commit,
        }
    }
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
    #[arg(long, default_value_t = envelope_core::hazmat::DEFAULT_MAX_ENCRYPTED_DATA_KEYS, value_name = "N")]
    pub(crate) max_encrypted_data_keys: usize,
    /// AWS Encryption SDK messages: also read suites without key commitment (the SDKs'
    /// REQUIRE_ENCRYPT_ALLOW_DECRYPT); such a message can decrypt to different plaintexts under different keys
    #[arg(long)]
    pub(crate) allow_non_committing: bool,
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
    /// Input file [default: stdin], or s3://BUCKET/KEY: an object's S3 Encryption Client metadata (HeadObject,
    /// and its instruction file KEY.instruction when the key is there)
    pub(crate) input: Option<PathBuf>,
    /// Machine-readable output
    #[arg(long)]
    pub(crate) json: bool,
}
