//! `rekey s3`: S3-only operations.

use clap::{Args, Subcommand, ValueEnum};

use super::rotation::TargetArgs;

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
