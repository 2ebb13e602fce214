//! The `rekey` command and its subcommands: what parsing, `--help`, completions and the man page start from.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use super::common::{DecryptArgs, EncryptArgs, InspectArgs, KmsArgs};
use super::keyset::KeysetCommand;
use super::rotation::{ReencryptArgs, RewrapArgs, RollbackArgs, ScanArgs, VERIFY_EXAMPLES, VerifyCommand};
use super::s3::S3Command;
use crate::exit::EXIT_CODES_HELP;

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
    Keyset(KeysetCommand),
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
  rekey decrypt --context app -r vault/ -o docs/
  rekey decrypt --key kms:alias/app message.sdk -o message.txt   # an AWS Encryption SDK message";

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
    --table users --column ssn --id id --context-column tenant_id
  rekey reencrypt --items esdk --from kms:alias/old --to kms:alias/new ./sdk-messages   # AWS Encryption SDK messages";
