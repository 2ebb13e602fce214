//! `rekey`: envelope encryption and key rotation around AWS KMS.
#![forbid(unsafe_code)]

mod cli;
mod commands;
mod exit;
mod key_spec;
mod keys;
mod kms;
mod logging;
mod ui;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::rotate::Action;
use crate::exit::CliError;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() { ExitCode::from(exit::Code::Usage as u8) } else { ExitCode::SUCCESS };
        }
    };
    ui::set_quiet(cli.quiet);
    logging::init(cli.verbose, cli.quiet);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("rekey: error: cannot start the async runtime: {e}");
            return ExitCode::from(exit::Code::Io as u8);
        }
    };
    let result = runtime.block_on(run(cli));
    logging::finish();
    match result {
        Ok(code) => code,
        // The reader of stdout went away (`| head`): what it wanted, it has.
        Err(e) if e.closed_pipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rekey: error: {e}");
            e.exit_code()
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    let kms_args = cli.command.kms_args().cloned().unwrap_or_default();
    let keystore =
        cli.keystore.or_else(|| std::env::var_os("REKEY_KEYSTORE").filter(|v| !v.is_empty()).map(Into::into));
    let keys = keys::Keys::new(keystore, kms::Kms::new(kms_args));
    match cli.command {
        Command::Keys(command) => commands::keys::run(&keys, command),
        Command::Encrypt(args) if args.keyset.is_some() => commands::keyset::encrypt(&keys, args).await,
        Command::Decrypt(args) if args.keyset.is_some() => commands::keyset::decrypt(&keys, args).await,
        Command::Encrypt(args) if args.format == cli::OutputFormat::Esdk => {
            commands::encrypt_esdk::run(&keys, args).await
        }
        Command::Encrypt(args) => commands::encrypt::run(&keys, args).await,
        Command::Decrypt(args) => commands::decrypt::run(&keys, args).await,
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Rewrap(args) => commands::rotate::rewrap(&keys, args, Action::Rotate).await,
        Command::Reencrypt(args) => commands::rotate::reencrypt(&keys, args, Action::Rotate).await,
        Command::Rollback(args) => commands::rotate::rollback(args),
        Command::Verify(cli::VerifyCommand::Rewrap(args)) => {
            commands::rotate::rewrap(&keys, args, Action::Verify).await
        }
        Command::Verify(cli::VerifyCommand::Reencrypt(args)) => {
            commands::rotate::reencrypt(&keys, args, Action::Verify).await
        }
        Command::Scan(args) => commands::rotate::scan(args).await,
        Command::Keyset(command) => commands::keyset::run(&keys, command).await,
        Command::S3(cli::S3Command::SseRotate(args)) => commands::s3::sse_rotate(args).await,
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            // Generated into memory: clap_complete panics on a write error.
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut command, "rekey", &mut script);
            ui::out(&String::from_utf8_lossy(&script))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(args) => commands::man::run(&args),
        Command::Demo(args) => commands::demo::run(args, |cli| Box::pin(run(cli))).await,
    }
}
