//! DynamoDB targets on the command line: `rekey rewrap|reencrypt|scan
//! dynamodb://TABLE --attribute NAME` and the rollback of their journals.
//! The work is in [`rotate_cli::engine::dynamodb`]; this turns flags into a
//! spec, a source and a sink.

use std::path::Path;

use rotate_cli::engine::Shard;
use rotate_cli::engine::dynamodb::{DynamoClient, DynamoSource, DynamoSpec};
use rotate_cli::engine::report::Summary;
use rotate_cli::engine::s3::Probe;

use crate::cli::InventoryArgs;
use crate::exit::CliError;

/// Whether the command line's targets are one `dynamodb://` URL.
pub(crate) fn is_dynamodb_target(args: &InventoryArgs) -> bool {
    matches!(&args.targets[..], [one] if one.to_str().is_some_and(rotate_cli::engine::dynamodb::is_dynamodb_url))
}

/// The DynamoDB target of `args` (see [`is_dynamodb_target`]); `concurrency`
/// gives the number of scan segments unless `--segments` does.
pub(crate) fn spec(args: &InventoryArgs, concurrency: usize) -> Result<DynamoSpec, CliError> {
    if !args.field.is_empty() || !args.column.is_empty() || args.table.is_some() || !args.ids.is_empty() {
        return Err(CliError::usage("--field, --column, --table and --id are not for DynamoDB targets")
            .hint("name the attributes holding the items with --attribute NAME; the key comes from the table"));
    }
    if !args.include.is_empty() || !args.exclude.is_empty() || !args.context_column.is_empty() {
        return Err(CliError::usage("--include, --exclude and --context-column are not for DynamoDB targets")
            .hint("bind items to attributes with --context-attribute NAME"));
    }
    let target = args.targets[0].to_str().unwrap_or_default();
    let d = &args.dynamodb;
    let spec = DynamoSpec {
        table: rotate_cli::engine::dynamodb::parse_url(target)?,
        attributes: d.attribute.clone(),
        into: args.into.clone(),
        context_attributes: d.context_attribute.clone(),
        version_attribute: d.version_attribute.clone(),
        segments: d.segments.unwrap_or_else(|| u32::try_from(concurrency.max(1)).unwrap_or(u32::MAX)),
    };
    spec.check()?;
    Ok(spec)
}

/// Refuses DynamoDB-only flags on another target.
pub(crate) fn refuse_flags_elsewhere(args: &InventoryArgs) -> Result<(), CliError> {
    let d = &args.dynamodb;
    if !d.attribute.is_empty()
        || !d.context_attribute.is_empty()
        || d.version_attribute.is_some()
        || d.segments.is_some()
    {
        return Err(CliError::usage(
            "--attribute, --context-attribute, --version-attribute and --segments are for dynamodb://TABLE targets",
        ));
    }
    Ok(())
}

/// The source of a run on `spec`; `shard` takes every Nth scan segment,
/// `probe` tells blobs under the destination already from failures.
pub(crate) async fn source(
    spec: &DynamoSpec,
    shard: Option<Shard>,
    probe: Option<Probe>,
) -> Result<(DynamoSource, DynamoClient), CliError> {
    let client = DynamoClient::from_env().await?;
    Ok((DynamoSource::open(client.clone(), spec.clone(), shard, probe).await?, client))
}

/// The DynamoDB actions a rotation needs, for the dry run.
pub(crate) fn iam_actions(spec: &DynamoSpec) -> Vec<String> {
    vec![format!(
        "dynamodb:DescribeTable, dynamodb:Scan, dynamodb:UpdateItem (and dynamodb:GetItem for rollback) on \
         arn:aws:dynamodb:REGION:ACCOUNT:table/{}",
        spec.table
    )]
}

/// Rolls back a DynamoDB run (`rekey rollback` is synchronous: this steps
/// aside from the async worker while the requests run).
pub(crate) fn rollback(journal: &Path) -> Result<(Summary, Vec<String>), CliError> {
    let handle = tokio::runtime::Handle::current();
    tokio::task::block_in_place(|| {
        handle.block_on(async {
            let client = DynamoClient::from_env().await?;
            let (mut summary, conflicts) = rotate_cli::engine::dynamodb::rollback(&client, journal).await?;
            summary.extra.push(("dynamodb_throttled_retries".into(), serde_json::json!(client.throttled())));
            Ok((summary, conflicts))
        })
    })
}
