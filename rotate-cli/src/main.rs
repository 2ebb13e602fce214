//! `rekey`: envelope encryption and key rotation around AWS KMS.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod exit;
mod keys;
mod kms;
mod logging;

use rotate_cli::fsio as output;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::exit::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::Code::Usage as u8) } else { ExitCode::SUCCESS };
        }
    };
    logging::init(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rekey: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::Code::Io as u8);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rekey: error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let keys = keys::Keys::new(cli.keystore, kms::Kms::new(cli.kms));
    match cli.command {
        Command::Keys(command) => commands::keys::run(&keys, command),
        Command::Encrypt(args) => commands::encrypt::run(&keys, args).await,
        Command::Decrypt(args) => commands::decrypt::run(&keys, args).await,
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Rewrap(args) => commands::rotate::rewrap(&keys, args).await,
        Command::Reencrypt(args) => commands::rotate::reencrypt(&keys, args).await,
        Command::Rollback(args) => commands::rotate::rollback(args),
        Command::Scan(args) => commands::rotate::scan(args).await,
        Command::S3(cli::S3Command::SseRotate(args)) => commands::s3::sse_rotate(args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut command, "rekey", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            let command = <Cli as clap::CommandFactory>::command();
            clap_mangen::Man::new(command)
                .render(&mut std::io::stdout())
                .map_err(|e| CliError::io("writing the man page", e))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
