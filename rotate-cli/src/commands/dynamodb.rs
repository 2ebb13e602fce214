//! DynamoDB targets on the command line: `rekey rewrap|reencrypt|scan
//! dynamodb://TABLE --attribute NAME` and the rollback of their journals.
//! The work is in [`rotate_cli::engine::dynamodb`]; this turns flags into a
//! target.

use rotate_cli::engine::dynamodb::{DEFAULT_SEGMENTS, DynamoClient, DynamoSpec, DynamoTarget};
use rotate_cli::engine::journal::RollbackJournal;
use rotate_cli::engine::report::Summary;

use crate::cli::InventoryArgs;
use crate::exit::CliError;
use crate::keys::parse_context;

/// Whether the command line's targets are one `dynamodb://` URL.
pub(crate) fn is_dynamodb_target(args: &InventoryArgs) -> bool {
    matches!(&args.targets[..], [one] if one.to_str().is_some_and(rotate_cli::engine::dynamodb::is_dynamodb_url))
}

/// The DynamoDB target of `args` (see [`is_dynamodb_target`]).
pub(crate) fn target(args: &InventoryArgs) -> Result<DynamoTarget, CliError> {
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
        segments: d.segments.unwrap_or(DEFAULT_SEGMENTS),
    };
    spec.check()?;
    let probe_context = match &args.s3.probe_context {
        Some(pairs) => Some(parse_context(pairs)?),
        None => None,
    };
    Ok(DynamoTarget { spec, probe_context })
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

/// Rolls back a DynamoDB run (`rekey rollback` is synchronous: this steps
/// aside from the async worker while the requests run).
pub(crate) fn rollback(journal: &RollbackJournal) -> Result<(Summary, Vec<String>), CliError> {
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
