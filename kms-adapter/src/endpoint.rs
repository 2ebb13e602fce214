//! No data key over plain HTTP: an `http://` endpoint (from
//! `AWS_ENDPOINT_URL`, `AWS_ENDPOINT_URL_KMS`, a profile's `endpoint_url` or
//! code) would carry GenerateDataKey and Decrypt answers, and Encrypt
//! requests, in clear. It is allowed only on the loopback interface, where
//! the test servers run; anything else is refused before a request is signed
//! or sent, by an interceptor on every request, whatever set the endpoint.

use std::net::IpAddr;

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;

/// Why a request was refused: its endpoint is plain HTTP to a host that is
/// not the loopback interface.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PlainHttpRefused {
    pub(crate) host: String,
}

impl std::fmt::Display for PlainHttpRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "refusing to send KMS requests over plain HTTP to {}: data keys would cross the network in clear; \
             use an https:// endpoint (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_KMS or the profile's endpoint_url), \
             plain http:// is allowed only for 127.0.0.0/8, ::1 and localhost",
            self.host
        )
    }
}

impl std::error::Error for PlainHttpRefused {}

/// Checks an endpoint URL: `https://` anywhere, `http://` only to a
/// loopback host.
///
/// # Errors
/// The refusal, naming the host, for plain HTTP elsewhere.
pub(crate) fn check_endpoint(url: &str) -> Result<(), PlainHttpRefused> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return Ok(());
    };
    if !scheme.eq_ignore_ascii_case("http") {
        return Ok(());
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if is_loopback(host) { Ok(()) } else { Err(PlainHttpRefused { host: host.to_owned() }) }
}

fn is_loopback(host: &str) -> bool {
    let name = host.strip_suffix('.').unwrap_or(host);
    name.eq_ignore_ascii_case("localhost") || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Refuses, before signing, any request whose endpoint fails [`check_endpoint`].
#[derive(Debug)]
pub(crate) struct PlainHttpGuard;

impl Intercept for PlainHttpGuard {
    fn name(&self) -> &'static str {
        "RekeyPlainHttpGuard"
    }

    fn read_before_signing(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        check_endpoint(context.request().uri())?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only_for_plain_http() {
        for ok in [
            "https://kms.us-east-1.amazonaws.com",
            "https://10.0.0.5:4566/",
            "http://127.0.0.1:5000",
            "http://127.9.8.7",
            "HTTP://LOCALHOST:4566/path",
            "http://localhost.",
            "http://[::1]:8080/",
            "http://user:pw@127.0.0.1:1/",
        ] {
            assert_eq!(check_endpoint(ok), Ok(()), "{ok}");
        }
        for bad in [
            "http://10.0.0.5:4566",
            "http://kms.example.com",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "http://[::2]:80",
            "http://0.0.0.0:5000",
            "http://127.0.0.1@evil.example/",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let err = check_endpoint(bad).expect_err(bad);
            assert!(err.to_string().contains("plain HTTP"), "{err}");
        }
    }
}
