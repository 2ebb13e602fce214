//! Logs go to stderr: warnings by default, `-q` errors only, `-v` what rekey
//! does to each item (item, action, key), `-vv` rekey's debug lines, `-vvv`
//! rekey's trace and the AWS SDK's debug lines. `RUST_LOG` replaces the
//! level choice, never the cap below.
//!
//! Nothing of ours logs a secret: data keys have no printable form. The
//! crates below us are another matter: at trace level the AWS SDK prints each
//! request it signs, bodies included once `LOG_SIGNABLE_BODY=true` (which its
//! own trace suggests setting), and a KMS Encrypt request carries a plaintext
//! data key; the HTTP/2 and TLS crates trace frames and records. So events
//! and spans of hyper, h2, http, rustls, tower and their kin are capped at
//! info, and those of the AWS SDK (`aws_*`, `aws_smithy_*`) at info too, or
//! at debug with `-vvv`: the SDK's debug lines name operations, endpoints,
//! retries and timeouts, never a body (bodies appear only in aws-sigv4's
//! trace lines). The cap is a second filter every event must pass, so no
//! directive, however specific, can lift it.
//!
//! Colour only when stderr is a terminal and `NO_COLOR` is unset. At the
//! default level a warning repeated with the same message (one per failed
//! item, say) is printed once, and the count of the others at the end.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::{Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The most verbose level the crates of [`is_capped`] may log at.
const CAP: Level = Level::INFO;
/// The AWS SDK's cap with `-vvv`.
const SDK_CAP_VERY_VERBOSE: Level = Level::DEBUG;

/// Crates whose logs can carry request bodies, headers or TLS records.
const CAPPED_CRATES: [&str; 14] = [
    "hyper",
    "hyper_util",
    "hyper_rustls",
    "h2",
    "http",
    "http_body",
    "http_body_util",
    "rustls",
    "tokio_rustls",
    "rustls_native_certs",
    "tower",
    "tower_http",
    "reqwest",
    "webpki",
];

/// rekey's own crates: the levels `-v` and `-vv` turn up.
const OURS: [&str; 4] = ["rekey", "rotate_cli", "envelope_core", "kms_adapter"];

fn krate(target: &str) -> &str {
    target.split("::").next().unwrap_or(target)
}

fn is_sdk(target: &str) -> bool {
    let krate = krate(target);
    krate.starts_with("aws_") || krate.starts_with("aws-")
}

/// Whether events of `target` (a module path, or a `log` record's target)
/// are capped.
fn is_capped(target: &str) -> bool {
    is_sdk(target) || CAPPED_CRATES.contains(&krate(target))
}

/// Whether an event or span at `level` from `target` may be logged at all,
/// at verbosity `verbose`.
fn allowed(target: &str, level: &Level, verbose: u8) -> bool {
    if !is_capped(target) {
        return true;
    }
    let cap = if verbose >= 3 && is_sdk(target) { SDK_CAP_VERY_VERBOSE } else { CAP };
    *level <= cap
}

/// The filter `-q` and `-v`s ask for, when `RUST_LOG` is unset.
fn default_directives(verbose: u8, quiet: bool) -> String {
    let (ours, others) = match (quiet, verbose) {
        (true, _) => ("error", "error"),
        (false, 0) => ("warn", "warn"),
        (false, 1) => ("info", "warn"),
        (false, 2) => ("debug", "warn"),
        (false, _) => ("trace", "debug"),
    };
    let mut directives = others.to_owned();
    for krate in OURS {
        let _ = write!(directives, ",{krate}={ours}");
    }
    directives
}

/// Warnings already printed, by message, and how many more were held back.
static REPEATS: OnceLock<Mutex<HashMap<String, u64>>> = OnceLock::new();

/// Sets up logging for `-v` (counted) and `-q`.
pub(crate) fn init(verbose: u8, quiet: bool) {
    let requested =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_directives(verbose, quiet)));
    let cap = filter_fn(move |metadata| allowed(metadata.target(), metadata.level(), verbose));
    let colour = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let format = Format { colour, timestamps: verbose >= 2, collapse: verbose == 0 };
    let layer = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .event_format(format)
        .with_filter(requested.and(cap));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

/// Prints how many times each collapsed warning was held back; call once, at the end.
pub(crate) fn finish() {
    let Some(repeats) = REPEATS.get() else { return };
    let Ok(repeats) = repeats.lock() else { return };
    let mut held: Vec<_> = repeats.iter().filter(|(_, n)| **n > 0).collect();
    held.sort();
    for (message, n) in held {
        eprintln!("rekey: warning: {message} ({} more like this; -v shows each)", crate::ui::count(*n));
    }
}

/// One line per event: `rekey: warning: MESSAGE key=value …`.
struct Format {
    colour: bool,
    timestamps: bool,
    collapse: bool,
}

/// Collects an event's message and its other fields.
#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
}

impl<S, N> FormatEvent<S, N> for Format
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, _ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> std::fmt::Result {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let level = *event.metadata().level();
        if self.collapse && level == Level::WARN {
            let repeats = REPEATS.get_or_init(|| Mutex::new(HashMap::new()));
            if let Ok(mut seen) = repeats.lock() {
                match seen.get_mut(&fields.message) {
                    Some(n) => {
                        *n += 1;
                        return Ok(());
                    }
                    None => {
                        seen.insert(fields.message.clone(), 0);
                    }
                }
            }
        }
        let (name, colour) = match level {
            Level::ERROR => ("error", "31"),
            Level::WARN => ("warning", "33"),
            Level::INFO => ("info", "32"),
            Level::DEBUG => ("debug", "34"),
            Level::TRACE => ("trace", "35"),
        };
        write!(writer, "rekey: ")?;
        if self.timestamps {
            write!(writer, "{} ", humantime_now())?;
        }
        if self.colour {
            write!(writer, "\x1b[{colour}m{name}\x1b[0m: ")?;
        } else {
            write!(writer, "{name}: ")?;
        }
        if self.timestamps && !OURS.contains(&krate(event.metadata().target())) {
            write!(writer, "[{}] ", event.metadata().target())?;
        }
        writeln!(writer, "{}{}", fields.message, fields.rest)
    }
}

/// Seconds and milliseconds since the Unix epoch: enough to see where time goes.
fn humantime_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    format!("{}.{:03}", now.as_secs(), now.subsec_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_http_and_tls_crates_are_capped_at_info() {
        for verbose in 0..=2 {
            for target in [
                "aws_smithy_runtime::client::orchestrator",
                "aws_sigv4::http_request::sign",
                "aws_sdk_kms::operation::encrypt",
                "aws_config",
                "hyper_util::client::legacy::pool",
                "h2::codec::framed_write",
                "rustls::client::hs",
                "tower::buffer",
            ] {
                assert!(is_capped(target), "{target}");
                assert!(allowed(target, &Level::INFO, verbose) && allowed(target, &Level::WARN, verbose), "{target}");
                assert!(
                    !allowed(target, &Level::DEBUG, verbose) && !allowed(target, &Level::TRACE, verbose),
                    "{target}"
                );
            }
        }
        for ours in ["rekey", "rotate_cli::engine", "envelope_core", "kms_adapter::client", "awsome"] {
            assert!(!is_capped(ours), "{ours}");
            assert!(allowed(ours, &Level::TRACE, 0), "{ours}");
        }
    }

    #[test]
    fn very_verbose_lifts_the_sdk_to_debug_only_and_never_http_or_tls() {
        assert!(allowed("aws_smithy_runtime::client::orchestrator", &Level::DEBUG, 3));
        assert!(!allowed("aws_sigv4::http_request::sign", &Level::TRACE, 9), "signed bodies are traced");
        for target in ["hyper_util::client", "h2::codec", "rustls::client", "tower::buffer"] {
            assert!(!allowed(target, &Level::DEBUG, 9), "{target}");
        }
    }

    #[test]
    fn verbosity_turns_up_ours_first() {
        assert_eq!(default_directives(0, false), "warn,rekey=warn,rotate_cli=warn,envelope_core=warn,kms_adapter=warn");
        assert!(default_directives(1, false).starts_with("warn,rekey=info"));
        assert!(default_directives(2, false).starts_with("warn,rekey=debug"));
        assert!(default_directives(3, false).starts_with("debug,rekey=trace"));
        assert!(default_directives(3, true).starts_with("error,rekey=error"));
    }
}
