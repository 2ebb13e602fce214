//! Talking to S3: the client built from the same configuration chain as KMS,
//! `s3://` URLs, and what S3's errors mean for an item.

use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

use crate::engine::error::{Error, ItemError, ItemErrorCode};

/// S3's limit for one CopyObject: larger objects are copied in parts.
pub const MAX_SINGLE_COPY: u64 = 5 * 1024 * 1024 * 1024;

/// Default part size of a multipart copy.
pub const DEFAULT_PART_SIZE: u64 = 512 * 1024 * 1024;

/// S3's smallest part (all but the last).
pub const MIN_PART_SIZE: u64 = 5 * 1024 * 1024;

/// Keys per ListObjectsV2 page.
pub(super) const PAGE: i32 = 1000;

/// Whether a command-line target names S3 (`s3://BUCKET[/PREFIX]`).
pub fn is_s3_url(target: &str) -> bool {
    target.starts_with("s3://")
}

/// A bucket and a key prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    /// The bucket.
    pub bucket: String,
    /// The key prefix (may be empty: the whole bucket).
    pub prefix: String,
}

impl std::str::FromStr for S3Url {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = || Error::usage(format!("{s:?} is not an S3 target; write s3://BUCKET or s3://BUCKET/PREFIX"));
        let rest = s.strip_prefix("s3://").ok_or_else(bad)?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() || bucket.contains(['*', '?', ' ']) {
            return Err(bad());
        }
        Ok(Self { bucket: bucket.to_owned(), prefix: prefix.to_owned() })
    }
}

impl std::fmt::Display for S3Url {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "s3://{}/{}", self.bucket, self.prefix)
    }
}

/// How to reach S3: the standard AWS chain (`AWS_PROFILE`, `AWS_REGION`,
/// `AWS_ENDPOINT_URL`, SSO, IMDS), as for KMS.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Path-style addressing (`http://host/bucket/key`), which S3-compatible
    /// servers need; also turned on by `AWS_S3_FORCE_PATH_STYLE=true`.
    pub path_style: bool,
    /// Most attempts per S3 call, retries included.
    pub max_attempts: u32,
    /// Seconds before one attempt is abandoned.
    pub attempt_timeout: Duration,
}

impl Default for ClientSettings {
    fn default() -> Self {
        Self { path_style: false, max_attempts: 8, attempt_timeout: Duration::from_secs(120) }
    }
}

/// An S3 client from the standard AWS configuration chain.
///
/// Checksums are computed and checked only where S3 requires them, so
/// S3-compatible servers that do not know the newer checksum headers work.
///
/// # Errors
/// A plain `http://` endpoint off the loopback interface: credentials and
/// data keys' ciphertexts would cross the network unprotected.
pub async fn client(settings: &ClientSettings) -> Result<Client, Error> {
    use aws_config::retry::RetryConfig;
    use aws_config::timeout::TimeoutConfig;
    let retry = RetryConfig::standard().with_max_attempts(settings.max_attempts.max(1));
    let timeouts = TimeoutConfig::builder().operation_attempt_timeout(settings.attempt_timeout).build();
    let shared = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .retry_config(retry)
        .timeout_config(timeouts)
        .load()
        .await;
    let s3_endpoint = std::env::var("AWS_ENDPOINT_URL_S3").ok();
    let endpoint = s3_endpoint.as_deref().or(shared.endpoint_url());
    if let Some(url) = endpoint {
        check_endpoint(url)?;
    }
    // An endpoint named by an IP address or `localhost` cannot take the
    // bucket in its host name: path style is the only style that works there.
    let by_address = endpoint.is_some_and(|url| {
        let host = endpoint_host(url);
        host == "localhost" || host.parse::<std::net::IpAddr>().is_ok()
    });
    let path_style = settings.path_style
        || by_address
        || std::env::var("AWS_S3_FORCE_PATH_STYLE").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1");
    let conf = aws_sdk_s3::config::Builder::from(&shared)
        .force_path_style(path_style)
        .request_checksum_calculation(aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired)
        .response_checksum_validation(aws_sdk_s3::config::ResponseChecksumValidation::WhenRequired)
        .build();
    Ok(Client::from_conf(conf))
}

/// Refuses a plain-HTTP endpoint that is not on the loopback interface.
pub(super) fn check_endpoint(url: &str) -> Result<(), Error> {
    check_plain_http("S3", url)
}

/// Refuses a plain-HTTP endpoint of `service` that is not on the loopback interface.
pub(crate) fn check_plain_http(service: &str, url: &str) -> Result<(), Error> {
    if !url.starts_with("http://") {
        return Ok(());
    }
    let host = endpoint_host(url);
    let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        Ok(())
    } else {
        Err(Error::usage(format!(
            "refusing the plain-HTTP {service} endpoint {url}: only loopback endpoints may skip TLS"
        ))
        .hint(format!("use an https:// endpoint (AWS_ENDPOINT_URL or AWS_ENDPOINT_URL_{})", service.to_uppercase())))
    }
}

/// The host of an endpoint URL, without port or brackets.
pub(super) fn endpoint_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    }
}

/// Runs a blocking call; on a multi-thread async worker, lets the runtime
/// move its other tasks elsewhere meanwhile.
pub(crate) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Whether two KMS key references name the same key: equal, or an ARN
/// and the key id (or alias name) it ends with.
pub fn same_key(a: &str, b: &str) -> bool {
    fn tail(k: &str) -> &str {
        if k.starts_with("arn:") { k.rsplit_once(':').map_or(k, |(_, t)| t) } else { k }
    }
    let (a, b) = (a.strip_prefix("kms:").unwrap_or(a), b.strip_prefix("kms:").unwrap_or(b));
    a == b || tail(a) == tail(b) || tail(a).strip_prefix("key/") == Some(b) || tail(b).strip_prefix("key/") == Some(a)
}

pub(super) type Response = aws_sdk_s3::config::http::HttpResponse;

pub(super) fn describe<E: ProvideErrorMetadata + std::error::Error + 'static>(e: &SdkError<E, Response>) -> String {
    match e {
        SdkError::ServiceError(s) => {
            let err = s.err();
            match (err.code(), err.message()) {
                (Some(c), Some(m)) => format!("{c}: {m}"),
                (Some(c), None) => c.to_owned(),
                _ => format!("{err:?}"),
            }
        }
        other => format!("{}", aws_sdk_s3::error::DisplayErrorContext(other)),
    }
}

pub(super) fn status<E>(e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>) -> Option<u16> {
    e.raw_response().map(|r| r.status().as_u16())
}

/// An S3 failure as an item failure: 412 is a concurrent change, 5xx and
/// timeouts are transient, 403 is access denied, 404 the object is gone.
pub(super) fn item_error<E: ProvideErrorMetadata + std::error::Error + 'static>(
    what: &str,
    e: &SdkError<E, Response>,
) -> ItemError {
    let text = format!("{what}: {}", describe(e));
    let code = match status(e) {
        Some(412) => ItemErrorCode::ChangedDuringRotation,
        Some(403) => ItemErrorCode::AccessDenied,
        Some(429 | 503) => ItemErrorCode::Throttled,
        Some(500..) => ItemErrorCode::Unavailable,
        Some(_) => ItemErrorCode::Io,
        None => ItemErrorCode::Unavailable,
    };
    ItemError::new(code, text)
}

pub(super) fn changed() -> ItemError {
    ItemError::new(
        ItemErrorCode::ChangedDuringRotation,
        "the object changed after it was read; the other writer's version was kept",
    )
}

/// The endpoint's way of saying it lacks an operation: 501 NotImplemented
/// (S3 and most compatible servers), or 405 / 400 with such a code.
pub(super) fn not_implemented<E: ProvideErrorMetadata>(
    e: &SdkError<E, aws_sdk_s3::config::http::HttpResponse>,
) -> bool {
    let code = match e {
        SdkError::ServiceError(s) => s.err().code().map(str::to_owned),
        _ => None,
    };
    status(e) == Some(501)
        || matches!(code.as_deref(), Some("NotImplemented" | "MethodNotAllowed" | "UnsupportedOperation"))
}

pub(super) fn io_error(what: &str, e: &dyn std::fmt::Display) -> ItemError {
    ItemError::new(ItemErrorCode::Io, format!("{what}: {e}"))
}
