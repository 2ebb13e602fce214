//! Logs go to stderr, quiet by default; `-v` and `RUST_LOG` turn them up.
//!
//! Nothing of ours logs a secret: data keys have no printable form. The
//! crates below us are another matter: at trace level the AWS SDK prints each
//! request it signs, bodies included once `LOG_SIGNABLE_BODY=true` (which its
//! own trace suggests setting), and a KMS Encrypt request carries a plaintext
//! data key; the HTTP/2 and TLS crates trace frames and records. So events
//! and spans of the AWS SDK (`aws_*`, `aws_smithy_*`), hyper, h2, http,
//! rustls, tower and their kin are capped at info, whatever `RUST_LOG` says:
//! the cap is a second filter every event must pass, so no directive, however
//! specific, can lift it.

use tracing::Level;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::{EnvFilter, FilterExt, filter_fn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{Layer, fmt};

/// The most verbose level the crates of [`is_capped`] may log at.
const CAP: Level = Level::INFO;

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

/// Whether events of `target` (a module path, or a `log` record's target)
/// are capped at [`CAP`].
fn is_capped(target: &str) -> bool {
    let krate = target.split("::").next().unwrap_or(target);
    krate.starts_with("aws_") || krate.starts_with("aws-") || CAPPED_CRATES.contains(&krate)
}

/// Whether an event or span at `level` from `target` may be logged at all.
fn allowed(target: &str, level: &Level) -> bool {
    !is_capped(target) || *level <= CAP
}

/// Sets up logging: `-v` info, `-vv` debug, or `RUST_LOG`; the capped crates
/// never beyond info.
pub(crate) fn init(verbose: u8) {
    let default = match verbose {
        0 => LevelFilter::WARN,
        1 => LevelFilter::INFO,
        _ => LevelFilter::DEBUG,
    };
    let requested = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default.to_string()));
    let cap = filter_fn(|metadata| allowed(metadata.target(), metadata.level()));
    let layer = fmt::layer().with_writer(std::io::stderr).with_target(false).with_filter(requested.and(cap));
    let _ = tracing_subscriber::registry().with(layer).try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_http_and_tls_crates_are_capped_at_info() {
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
            assert!(allowed(target, &Level::INFO) && allowed(target, &Level::WARN), "{target}");
            assert!(!allowed(target, &Level::DEBUG) && !allowed(target, &Level::TRACE), "{target}");
        }
        for ours in ["rekey", "rotate_cli::engine", "envelope_core", "kms_adapter::client", "awsome"] {
            assert!(!is_capped(ours), "{ours}");
            assert!(allowed(ours, &Level::TRACE), "{ours}");
        }
    }
}
