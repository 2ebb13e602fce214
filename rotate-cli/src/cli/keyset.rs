//! `rekey keyset`: keysets and compact records.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::key_spec::KeySpec;

/// `rekey keyset …`
#[derive(Debug, Subcommand)]
pub(crate) enum KeysetCommand {
    /// Create a keyset file with one data key, wrapped by every --key
    Create {
        /// Key to wrap the keyset's data keys with (local:NAME or kms:KEY); repeat for several copies
        #[arg(long = "key", short = 'k', required = true, value_name = "KEYREF")]
        keys: Vec<KeySpec>,
        /// The keyset file to create (mode 0600)
        file: PathBuf,
    },
    /// Show a keyset's keys, their purposes and wrapping keys (no key is unwrapped)
    List {
        /// Print JSON
        #[arg(long)]
        json: bool,
        /// The keyset file
        file: PathBuf,
    },
    /// Add a new data key, wrapped by every --key, and make it the primary; older keys still decrypt
    Rotate {
        /// Key to wrap the new data key with; repeatable
        #[arg(long = "key", short = 'k', required = true, value_name = "KEYREF")]
        keys: Vec<KeySpec>,
        /// The keyset file
        file: PathBuf,
    },
    /// Import the blog's single stored data key as a read-only entry for its legacy CBC records
    ImportLegacy {
        /// The stored KMS CiphertextBlob: a file (raw or base64) or base64 text
        #[arg(long, value_name = "FILE|BASE64", required_unless_present = "legacy_key_file")]
        legacy_edk: Option<String>,
        /// The KMS encryption context the blob was made with (the blog used none); repeatable
        #[arg(long, value_name = "KEY=VALUE")]
        legacy_context: Vec<String>,
        /// The raw 32-byte legacy data key in a file (tests and offline migrations)
        #[arg(long, value_name = "FILE", conflicts_with = "legacy_edk")]
        legacy_key_file: Option<PathBuf>,
        /// Key to wrap the imported key with; repeatable
        #[arg(long = "key", short = 'k', required = true, value_name = "KEYREF")]
        keys: Vec<KeySpec>,
        /// The keyset file
        file: PathBuf,
    },
    /// Re-wrap the keyset's data keys from the --from keys to --to (KMS ReEncrypt: one call per data key,
    /// no record touched)
    Rewrap {
        /// The key to wrap under
        #[arg(long, value_name = "KEYREF")]
        to: KeySpec,
        /// Source keys whose copies are replaced (the allow-list); repeatable
        #[arg(long, required = true, value_name = "KEYREF")]
        from: Vec<KeySpec>,
        /// Print the summary as JSON
        #[arg(long)]
        json: bool,
        /// The keyset file
        file: PathBuf,
    },
    /// Remove a key that is not the primary; its records become unreadable
    Remove {
        /// The key id (8 hex digits, as `keyset list` shows)
        key_id: String,
        /// The keyset file
        file: PathBuf,
    },
    /// Encrypt into compact records under the keyset's primary key
    Encrypt(RecordArgs),
    /// Decrypt compact records
    Decrypt(RecordArgs),
    /// Turn envelopes, legacy CBC records, or records of older keyset keys into compact records under the
    /// primary
    Reencrypt(KeysetReencryptArgs),
}

/// What `encrypt`, `decrypt` and `reencrypt` read and write.
#[derive(Debug, Args)]
pub(crate) struct RecordArgs {
    /// The keyset file
    #[arg(long, value_name = "FILE")]
    pub(crate) keyset: PathBuf,
    /// Key allowed to unwrap the keyset (local:NAME or kms:KEY); repeatable. Default: every local key and
    /// the KMS keys the keyset names
    #[arg(long = "key", short = 'k', value_name = "KEYREF")]
    pub(crate) keys: Vec<KeySpec>,
    /// Context pair bound to every record (authenticated, not stored); repeatable
    #[arg(long = "context", short = 'c', value_name = "KEY=VALUE")]
    pub(crate) context: Vec<String>,
    /// One record per input line (line endings kept; empty lines left alone)
    #[arg(long, conflicts_with_all = ["field", "column"])]
    pub(crate) lines: bool,
    /// JSON Lines input: the field (a JSON pointer such as /ssn) to transform; repeatable
    #[arg(long, value_name = "POINTER", conflicts_with = "column")]
    pub(crate) field: Vec<String>,
    /// CSV input with a header row: the column to transform; repeatable
    #[arg(long, value_name = "NAME")]
    pub(crate) column: Vec<String>,
    /// Output file (written atomically), or stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,
    /// Replace an existing output; write plaintext to a terminal
    #[arg(long)]
    pub(crate) force: bool,
    /// Input file, or stdin
    pub(crate) input: Option<PathBuf>,
}

/// `rekey keyset reencrypt`.
#[derive(Debug, Args)]
pub(crate) struct KeysetReencryptArgs {
    #[command(flatten)]
    pub(crate) records: RecordArgs,
    /// Keys allowed to decrypt envelope records (local:NAME or kms:KEY); repeatable
    #[arg(long, value_name = "KEYREF")]
    pub(crate) from: Vec<KeySpec>,
    /// Legacy records lack the inner base64 layer
    #[arg(long)]
    pub(crate) legacy_raw: bool,
}
