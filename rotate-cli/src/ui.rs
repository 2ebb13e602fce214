//! What a person sees besides logs: standard output that ends quietly when
//! the reader goes away (`rekey … | head -1`), notes on stderr that `-q`
//! silences, and numbers written for people (`1,912/s`, `1 item`).

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use crate::exit::CliError;

static QUIET: AtomicBool = AtomicBool::new(false);

/// Sets `-q`: no notes, summaries of file commands or progress bars.
pub(crate) fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Whether `-q` was given.
pub(crate) fn quiet() -> bool {
    QUIET.load(Ordering::Relaxed)
}

/// Writes `text` to standard output and flushes it. A closed pipe becomes a
/// [`CliError`] that `main` turns into a quiet exit (`println!` would panic).
pub(crate) fn out(text: &str) -> Result<(), CliError> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(|e| CliError::io("cannot write to stdout", e))
}

/// `println!` for standard output through [`out`]: returns a `Result`.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::ui::out(&format!("{}\n", format_args!($($arg)*)))
    };
}
pub(crate) use outln;

/// A note for the person at the terminal, on stderr, unless `-q`. A closed
/// stderr is ignored: there is nobody left to tell.
pub(crate) fn note(message: &str) {
    if !quiet() {
        let _ = writeln!(io::stderr().lock(), "rekey: {message}");
    }
}

/// `n` with thousands separators: `20,002`.
pub(crate) fn count(n: u64) -> String {
    grouped(&n.to_string())
}

/// A whole number's digits with thousands separators.
fn grouped(digits: &str) -> String {
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 file`, `2 files`: `n` (with separators) and the noun, plural unless one.
pub(crate) fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", count(n), if n == 1 { one } else { many })
}

/// A byte count for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub(crate) fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// A progress bar style from `template`, where `{rate}` is the items per
/// second as a whole number with separators (`1,912/s`; indicatif's own
/// `{per_sec}` prints four decimals).
pub(crate) fn bar_style(template: &str) -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template(template)
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
        .with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let per_sec = state.per_sec();
            let per_sec = if per_sec.is_finite() && per_sec > 0.0 { per_sec } else { 0.0 };
            let _ = write!(w, "{}/s", grouped(&format!("{per_sec:.0}")));
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_for_people() {
        assert_eq!(count(0), "0");
        assert_eq!(count(999), "999");
        assert_eq!(count(1_912), "1,912");
        assert_eq!(count(20_002), "20,002");
        assert_eq!(count(1_234_567), "1,234,567");
        assert_eq!(plural(1, "item", "items"), "1 item");
        assert_eq!(plural(2_000, "item", "items"), "2,000 items");
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(12 << 20), "12.0 MiB");
    }
}
