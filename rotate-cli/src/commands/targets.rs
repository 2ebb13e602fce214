//! The target registry: which store a command line names, by the URL
//! scheme or path of its TARGET and the inventory flags, and which rollback
//! a journal needs, by the target kind it records. A new store adds its
//! line to [`target`] and to [`ROLLBACKS`], and its flags to `InventoryArgs`.

use std::path::Path;

use rotate_cli::engine::Target;
use rotate_cli::engine::files::FileTarget;
use rotate_cli::engine::journal::RollbackJournal;
use rotate_cli::engine::records::{RecordFormat, RecordTarget};
use rotate_cli::engine::report::Summary;
use rotate_cli::engine::table::{TableSpec, TableTarget};

use super::run::progress;
use crate::cli::InventoryArgs;
use crate::exit::CliError;

/// The target a command line names: a DynamoDB URL, an S3 URL, a database URL with
/// `--table`, one record stream (`--field`/`--column`), or files.
pub(crate) fn target(args: &InventoryArgs) -> Result<Box<dyn Target>, CliError> {
    if super::dynamodb::is_dynamodb_target(args) {
        return Ok(Box::new(super::dynamodb::target(args)?));
    }
    super::dynamodb::refuse_flags_elsewhere(args)?;
    if args.into.is_some() && args.table.is_none() {
        return Err(CliError::usage("--into is for a database --table or a dynamodb:// target"));
    }
    if super::s3::is_s3_target(args) {
        return Ok(Box::new(super::s3::target(args)?));
    }
    if let Some(table) = table(args)? {
        return Ok(Box::new(table));
    }
    if args.field.is_empty() && args.column.is_empty() {
        return Ok(Box::new(FileTarget::open(args.targets.clone(), &args.include, &args.exclude)?));
    }
    let [input] = &args.targets[..] else {
        return Err(CliError::usage(
            "a record stream (--field or --column) takes exactly one input file, or '-' for stdin",
        ));
    };
    let format = if args.field.is_empty() {
        RecordFormat::Csv(args.column.clone())
    } else {
        RecordFormat::JsonLines(args.field.clone())
    };
    Ok(Box::new(RecordTarget::open(input, &format)?))
}

/// A database URL with `--table`: the table, connected; neither: `None`.
fn table(args: &InventoryArgs) -> Result<Option<TableTarget>, CliError> {
    let url = match &args.targets[..] {
        [one] => one.to_str().filter(|t| rotate_cli::engine::table::is_database_url(t)),
        _ => None,
    };
    match (&args.table, url) {
        (Some(table), Some(url)) => {
            let url = if args.database_iam_auth {
                if !url.starts_with("postgres") {
                    return Err(CliError::usage("--database-iam-auth is for PostgreSQL on RDS (postgres://...)"));
                }
                let param = rotate_cli::engine::table::IAM_AUTH_PARAM;
                format!("{url}{}{param}=true", if url.contains('?') { '&' } else { '?' })
            } else {
                url.to_owned()
            };
            let spec = TableSpec {
                url,
                table: table.clone(),
                columns: args.column.clone(),
                ids: args.ids.clone(),
                into: args.into.clone(),
                context_columns: args.context_column.clone(),
                batch_size: args.batch_size,
            };
            Ok(Some(TableTarget::open(spec)?))
        }
        (Some(_), None) => {
            Err(CliError::usage("--table needs one database TARGET: sqlite:PATH, postgres://... or mysql://..."))
        }
        (None, Some(_)) => Err(CliError::usage("a database TARGET needs --table, --column and --id")
            .hint("e.g. rekey scan sqlite:app.db --table users --column ssn --id id")),
        (None, None) => Ok(None),
    }
}

/// What `rekey rollback` was asked, beside the journal.
pub(crate) struct RollbackRequest<'a> {
    /// `--database-url`: the database, when the journal's URL does not reach it.
    pub(crate) database_url: Option<&'a str>,
}

/// Undoes the changes a journal of one target kind records; returns the
/// summary and a line for each item left alone.
type RollbackFn = fn(&RollbackJournal, &RollbackRequest<'_>) -> Result<(Summary, Vec<String>), CliError>;

/// The rollback of each target kind, by the name journals record.
const ROLLBACKS: &[(&str, RollbackFn)] = &[
    ("files", |journal, _| Ok(rotate_cli::engine::files::rollback(journal, progress(true).as_ref())?)),
    ("records", |journal, _| Ok(rotate_cli::engine::files::rollback(journal, progress(true).as_ref())?)),
    ("table", |journal, request| Ok(rotate_cli::engine::table::rollback(journal, request.database_url)?)),
    ("s3", |journal, _| super::s3::rollback(journal)),
    (rotate_cli::engine::dynamodb::KIND, |journal, _| super::dynamodb::rollback(journal)),
];

/// Rolls back the run of `journal`, through its target kind's rollback.
pub(crate) fn rollback(journal: &Path, request: &RollbackRequest<'_>) -> Result<(Summary, Vec<String>), CliError> {
    let journal = RollbackJournal::open(journal)?;
    let kind = journal.target_kind();
    let Some((_, undo)) = ROLLBACKS.iter().find(|(name, _)| *name == kind) else {
        return Err(CliError::usage(format!(
            "journal {} is of a {kind} run, which this build of rekey cannot roll back",
            journal.path().display()
        ))
        .hint("roll it back with the rekey version that wrote it"));
    };
    undo(&journal, request)
}
