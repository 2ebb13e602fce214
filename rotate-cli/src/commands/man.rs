//! `rekey man`: the manual pages, one per command (`rekey(1)`,
//! `rekey-rewrap(1)`, `rekey-s3-sse-rotate(1)`), all from the clap
//! definitions that `--help` shows.

use std::process::ExitCode;

use clap::CommandFactory;

use crate::cli::{Cli, ManArgs};
use crate::exit::CliError;
use crate::ui;

/// The command tree as the pages describe it: built, so subcommands carry
/// their full names (`rekey-rewrap`).
fn tree() -> clap::Command {
    let mut command = Cli::command().disable_help_subcommand(true);
    command.build();
    command
}

pub(crate) fn run(args: &ManArgs) -> Result<ExitCode, CliError> {
    let root = tree();
    if let Some(dir) = &args.dir {
        std::fs::create_dir_all(dir).map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
        clap_mangen::generate_to(root.clone(), dir)
            .map_err(|e| CliError::io(format!("cannot write the pages into {}", dir.display()), e))?;
        let pages = page_names(&root);
        ui::outln!(
            "wrote {} into {}: {}",
            ui::plural(pages.len() as u64, "page", "pages"),
            dir.display(),
            pages.join(", ")
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let mut command = &root;
    for name in &args.command {
        command = command.find_subcommand(name).ok_or_else(|| {
            let known: Vec<&str> = command.get_subcommands().map(clap::Command::get_name).collect();
            CliError::usage(format!("no page for {name:?}: the commands here are {}", known.join(", ")))
                .hint("`rekey man --dir DIR` writes every page")
        })?;
    }
    let mut page = Vec::new();
    clap_mangen::Man::new(command.clone())
        .render(&mut page)
        .map_err(|e| CliError::io("cannot render the man page", e))?;
    if std::io::IsTerminal::is_terminal(&std::io::stdout()) && show_with_man(&page) {
        return Ok(ExitCode::SUCCESS);
    }
    // Off a terminal (a pipe, `> rekey-rewrap.1`): the roff source, for man or a packager.
    ui::out(&String::from_utf8_lossy(&page))?;
    Ok(ExitCode::SUCCESS)
}

/// On a terminal, the page rendered as `man` would show it (`man -l -`,
/// with its pager); `false` when `man` cannot be run, so the roff is printed.
fn show_with_man(page: &[u8]) -> bool {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let Ok(mut child) = Command::new("man").args(["-l", "-"]).stdin(Stdio::piped()).spawn() else {
        return false;
    };
    if let Some(mut stdin) = child.stdin.take() {
        // A pager quit early closes the pipe: not an error.
        let _ = stdin.write_all(page);
    }
    child.wait().is_ok_and(|status| status.success())
}

/// The file names `generate_to` writes: every command, depth first.
fn page_names(command: &clap::Command) -> Vec<String> {
    let mut names = Vec::new();
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
        names.extend(page_names(sub));
    }
    names.push(format!("{}.1", command.get_display_name().unwrap_or_else(|| command.get_name())));
    names
}
