//! `rekey demo`: the main job end to end, with local keys and no AWS.
//!
//! Each step is a real `rekey` command line, printed, parsed by the same
//! clap definitions and run through the same dispatch as when typed: the
//! demo is a script of commands, not a second implementation. Between
//! steps it checks the results (decrypted files equal the originals) and
//! says so; it stops at the first step that fails.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, DemoArgs};

/// How the demo runs a parsed command line: the binary's own dispatch,
/// handed in so this module need not import the binary's root.
pub(crate) type Dispatch = fn(Cli) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<ExitCode, CliError>>>>;
use crate::exit::{CliError, Code};
use crate::ui;

/// The sample plaintexts: a report, a file of records (one a line), and a
/// nested note, so the tree mirroring shows.
const SAMPLES: [(&str, &str); 3] = [
    ("plain/report.txt", include_str!("../../../examples/report.txt")),
    ("plain/records.txt", include_str!("../../../examples/records.txt")),
    ("plain/notes/todo.txt", "rotate the demo key before the audit\n"),
];

pub(crate) async fn run(args: DemoArgs, dispatch: Dispatch) -> Result<ExitCode, CliError> {
    let dir = match args.dir {
        Some(dir) => {
            let empty = std::fs::read_dir(&dir).map_or(true, |mut entries| entries.next().is_none());
            if !empty {
                return Err(CliError::usage(format!("{} is not empty", dir.display()))
                    .hint("give a new or empty directory, or none for a temporary one"));
            }
            std::fs::create_dir_all(&dir).map_err(|e| CliError::io(format!("cannot create {}", dir.display()), e))?;
            dir
        }
        None => new_temp_dir()?,
    };
    let dir = dir.canonicalize().map_err(|e| CliError::io(format!("cannot use {}", dir.display()), e))?;
    // Relative paths in the commands below, exactly as printed.
    std::env::set_current_dir(&dir).map_err(|e| CliError::io(format!("cannot enter {}", dir.display()), e))?;
    for (path, text) in SAMPLES {
        let path = Path::new(path);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| CliError::io(format!("cannot create {}", parent.display()), e))?;
        }
        std::fs::write(path, text).map_err(|e| CliError::io(format!("cannot write {}", path.display()), e))?;
    }
    let demo = Demo { keystore: dir.join("keys"), dispatch };
    ui::outln!("rekey demo: encrypt files and records under a local key, rotate them to a new key with a journal,")?;
    ui::outln!("verify, and roll back; no AWS account needed. Working in {}", dir.display())?;
    ui::outln!("To run the steps by hand, in a shell:")?;
    ui::outln!("  cd {} && export REKEY_KEYSTORE=$PWD/keys", dir.display())?;

    demo.step("1. Two local keys: the current one and its successor", &["keys", "create", "demo"]).await?;
    demo.command(&["keys", "create", "demo-2026"]).await?;

    demo.step(
        "2. Encrypt a directory of files, mirrored into vault/ (binary envelopes, name + .rky)",
        &["encrypt", "--key", "local:demo", "--context", "app=demo", "-r", "plain", "-o", "vault"],
    )
    .await?;
    demo.step(
        "3. Encrypt records, one text envelope per line (for database columns and JSON fields)",
        &["encrypt", "--key", "local:demo", "--lines", "plain/records.txt", "-o", "records.enc"],
    )
    .await?;
    demo.step("4. What an envelope says, without any key", &["inspect", "vault/report.txt.rky"]).await?;

    demo.step(
        "5. Rotate the vault to the new key: wrapped data keys replaced, bodies untouched, every change journaled and verified",
        &["rewrap", "--to", "local:demo-2026", "--from", "local:demo", "--verify", "vault"],
    )
    .await?;
    demo.step(
        "6. Only the new key is needed now: decrypt with it alone and compare",
        &["decrypt", "--key", "local:demo-2026", "--context", "app=demo", "-r", "vault", "-o", "check"],
    )
    .await?;
    demo.same("plain", "check", "diff -r plain check")?;
    demo.step("7. Records round trip byte for byte", &["decrypt", "--lines", "records.enc", "-o", "records.txt"])
        .await?;
    demo.same("plain/records.txt", "records.txt", "cmp plain/records.txt records.txt")?;

    demo.step("8. Undo the rotation from its journal", &["rollback", "--journal", "vault.rekey-journal"]).await?;
    demo.step(
        "9. The old key opens the vault again",
        &["decrypt", "--key", "local:demo", "-r", "vault", "-o", "check-after-rollback"],
    )
    .await?;
    demo.same("plain", "check-after-rollback", "diff -r plain check-after-rollback")?;

    ui::outln!("\ndemo: all good. Everything is in {}; remove it when done.", dir.display())?;
    ui::outln!("Next: `rekey rewrap --help` for KMS keys, record streams, tables and S3; `rekey man rewrap`.")?;
    Ok(ExitCode::SUCCESS)
}

struct Demo {
    keystore: PathBuf,
    dispatch: Dispatch,
}

impl Demo {
    /// Prints a step's title, then its command.
    async fn step(&self, title: &str, args: &[&str]) -> Result<(), CliError> {
        ui::outln!("\n{title}")?;
        self.command(args).await
    }

    /// Prints a command line, then runs it as `rekey` would.
    async fn command(&self, args: &[&str]) -> Result<(), CliError> {
        ui::outln!("$ rekey {}", args.join(" "))?;
        self.quiet(args).await
    }

    /// Runs a command line through the binary's own parser and dispatch,
    /// with the demo's keystore (what `REKEY_KEYSTORE` says by hand).
    async fn quiet(&self, args: &[&str]) -> Result<(), CliError> {
        let keystore = self.keystore.display().to_string();
        let argv = ["rekey"].iter().chain(args).copied().chain(["--keystore", keystore.as_str()]);
        let cli = Cli::try_parse_from(argv)
            .map_err(|e| CliError::new(Code::Usage, format!("demo: the command line does not parse: {e}")))?;
        let code = (self.dispatch)(cli).await?;
        if code != ExitCode::SUCCESS {
            return Err(CliError::new(Code::Partial, format!("demo: `rekey {}` did not succeed", args.join(" "))));
        }
        Ok(())
    }

    /// Checks that two files or trees hold the same bytes; says so with the
    /// command that checks it by hand.
    fn same(&self, want: &str, got: &str, by_hand: &str) -> Result<(), CliError> {
        let (want_files, got_files) = (tree(Path::new(want))?, tree(Path::new(got))?);
        if want_files != got_files {
            return Err(CliError::new(Code::Authentication, format!("demo: {got} differs from {want}")));
        }
        ui::outln!("ok: {got} matches {want}, {} ({by_hand})", ui::plural(want_files.len() as u64, "file", "files"))
    }
}

/// Every file under `path` (or the file itself): relative name and bytes.
fn tree(path: &Path) -> Result<Vec<(PathBuf, Vec<u8>)>, CliError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(path).sort_by_file_name() {
        let entry = entry.map_err(|e| CliError::new(Code::Io, format!("cannot list {}: {e}", path.display())))?;
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path())
                .map_err(|e| CliError::io(format!("cannot read {}", entry.path().display()), e))?;
            files.push((entry.path().strip_prefix(path).unwrap_or(entry.path()).to_path_buf(), bytes));
        }
    }
    Ok(files)
}

/// A new directory under the system's temporary directory, kept after the
/// demo so its files can be looked at.
fn new_temp_dir() -> Result<PathBuf, CliError> {
    let base = std::env::temp_dir();
    let stamp = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    for attempt in 0..100u32 {
        let dir = base.join(format!(
            "rekey-demo-{}-{}",
            std::process::id(),
            stamp.wrapping_add(u128::from(attempt)) % 1_000_000
        ));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(CliError::io(format!("cannot create {}", dir.display()), e)),
        }
    }
    Err(CliError::new(Code::Io, format!("cannot create a new directory in {}", base.display()))
        .hint("name one: rekey demo DIR"))
}
