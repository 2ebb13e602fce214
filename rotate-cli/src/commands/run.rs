//! What every rotation command does around the engine: its settings from
//! the flags, the journal's place, signals, the progress bar, the summary.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rotate_cli::engine::report::Summary;
use rotate_cli::engine::{Progress, Settings};

use crate::cli::TargetArgs;
use crate::exit::{CliError, Code};

/// The exit status of a run stopped by SIGINT or SIGTERM (128 + SIGINT).
pub(crate) const INTERRUPTED: u8 = 130;

/// The engine settings the rotation flags ask for (no journal: the caller names it).
pub(crate) fn settings(target: &TargetArgs) -> Settings {
    Settings {
        concurrency: target.concurrency,
        item_attempts: target.item_attempts,
        max_failures: target.max_failures,
        sample_percent: target.sample,
        shard: target.inventory.shard,
        limit: target.limit,
        dry_run: target.dry_run,
        resume: target.resume,
        preflight: !target.no_preflight,
        journal: None,
    }
}

/// Refuses a journal location that cannot be written, before any side effect.
pub(crate) fn check_writable(journal: &Path) -> Result<(), CliError> {
    let dir = match journal.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let meta = std::fs::metadata(dir).map_err(|e| {
        CliError::io(format!("the journal's directory {} cannot be used", dir.display()), e)
            .hint("choose another place with --journal FILE (a directory that exists and you may write)")
    })?;
    if meta.permissions().readonly() {
        return Err(CliError::new(Code::Io, format!("the journal's directory {} is read-only", dir.display()))
            .hint("choose another place with --journal FILE"));
    }
    Ok(())
}

/// Prints a run's summary: on stderr when stdout carries the output.
pub(crate) fn print_summary(summary: &Summary, json: bool, stdout_busy: bool) {
    let text = if json { summary.to_json().to_string() + "\n" } else { summary.to_text() };
    if stdout_busy {
        eprint!("{text}");
    } else {
        print!("{text}");
    }
}

/// A flag set by SIGINT or SIGTERM: the engine stops taking new units,
/// finishes those in flight, syncs the journal and returns.
pub(crate) fn cancel_on_signals() -> Arc<AtomicBool> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = Arc::clone(&flag);
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut int), Ok(mut term)) = (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) else {
                return;
            };
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
        eprintln!("rekey: stopping: finishing the items in flight (press Ctrl-C again to abandon them)");
        set.store(true, Ordering::Relaxed);
    });
    flag
}

/// A progress bar on stderr when it is a terminal: over units, or over the
/// input's bytes for streams.
struct Bar(indicatif::ProgressBar, AtomicBool);

impl Bar {
    fn is_bytes(&self) -> bool {
        self.1.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Progress for Bar {
    fn total(&self, units: u64) {
        self.0.set_length(units);
        self.0.set_style(style("{bar:30} {pos}/{len} {rate} eta {eta} {msg}"));
    }

    fn advance(&self, units: u64, failed: u64) {
        if !self.is_bytes() {
            self.0.inc(units);
        }
        if failed > 0 {
            self.0.set_message(format!("{failed} failed"));
        }
    }

    fn bytes(&self, read: u64, total: u64) {
        if !self.is_bytes() {
            // The spinner becomes a bar over the input's bytes.
            self.0.set_length(total);
            self.0.set_style(style("{bar:30} {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}"));
            self.1.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.0.set_position(read);
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

fn style(template: &str) -> indicatif::ProgressStyle {
    crate::ui::bar_style(template)
}

/// Progress for a run: a bar on a terminal, nothing otherwise.
pub(crate) fn progress(enabled: bool) -> Arc<dyn Progress> {
    use std::io::IsTerminal;
    if !enabled || crate::ui::quiet() || !std::io::stderr().is_terminal() {
        return Arc::new(rotate_cli::engine::Silent);
    }
    let bar = indicatif::ProgressBar::new_spinner();
    bar.set_style(style("{spinner} {pos} {rate} {msg}"));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Arc::new(Bar(bar, AtomicBool::new(false)))
}
