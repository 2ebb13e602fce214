//! `rekey rewrap`, `rekey reencrypt` and `rekey rollback`: thin front ends
//! of the rotation engine.

use std::process::ExitCode;

use crate::cli::{ReencryptArgs, RewrapArgs, RollbackArgs};
use crate::exit::CliError;
use crate::keys::Keys;

pub(crate) async fn rewrap(_keys: &Keys, _args: RewrapArgs) -> Result<ExitCode, CliError> {
    Err(CliError::usage("rewrap is not implemented yet"))
}

pub(crate) async fn reencrypt(_keys: &Keys, _args: ReencryptArgs) -> Result<ExitCode, CliError> {
    Err(CliError::usage("reencrypt is not implemented yet"))
}

pub(crate) fn rollback(_args: RollbackArgs) -> Result<ExitCode, CliError> {
    Err(CliError::usage("rollback is not implemented yet"))
}
