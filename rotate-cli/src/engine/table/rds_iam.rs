//! RDS IAM database authentication: the password is a SigV4-presigned
//! `GET https://HOST:PORT/?Action=connect&DBUser=USER` for the service
//! `rds-db`, valid 15 minutes, written without its `https://` (what
//! boto3's `generate_db_auth_token` and the AWS CLI's
//! `rds generate-db-auth-token` make). One is made for every connection,
//! from the same AWS configuration chain as KMS, and never logged: the
//! signing runs with tracing switched off (aws-sigv4 traces the canonical
//! request, which holds a session token), and the token lives only in the
//! connection's settings.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use zeroize::Zeroizing;

use crate::engine::error::{Error, ErrorKind};

/// How long a token may be used to log in.
const VALID_FOR: Duration = Duration::from_secs(900);

/// SigV4's URI encoding: everything but `A-Z a-z 0-9 - _ . ~` as `%XX`.
fn uri_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The token for `user` at `host:port` in `region`, signed at `time`.
///
/// # Errors
/// Only if SigV4 refuses the request (a host that is not a host name).
pub(super) fn auth_token(
    host: &str,
    port: u16,
    user: &str,
    region: &str,
    credentials: &Credentials,
    time: SystemTime,
) -> Result<Zeroizing<String>, Error> {
    let failed = |e: &dyn std::fmt::Display| {
        Error::new(ErrorKind::Io, format!("cannot sign an RDS IAM token for {host}:{port}: {e}"))
    };
    let query = format!("Action=connect&DBUser={}", uri_encode(user));
    let uri = format!("https://{host}:{port}/?{query}");
    let identity = Identity::from(credentials.clone());
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::QueryParams;
    settings.expires_in = Some(VALID_FOR);
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(region)
        .name("rds-db")
        .time(time)
        .settings(settings)
        .build()
        .map_err(|e| failed(&e))?
        .into();
    let request =
        SignableRequest::new("GET", Cow::Borrowed(uri.as_str()), std::iter::empty(), SignableBody::Bytes(&[]))
            .map_err(|e| failed(&e))?;
    // aws-sigv4 traces the canonical request (with any session token): not here.
    let signed =
        tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || sign(request, &params))
            .map_err(|e| failed(&e))?;
    let (instructions, _) = signed.into_parts();
    let mut token = Zeroizing::new(format!("{host}:{port}/?{query}"));
    // boto3's order: the signature last (aws-sigv4 puts a session token after it).
    let mut params: Vec<_> = instructions.params().iter().collect();
    params.sort_by_key(|(name, _)| *name == "X-Amz-Signature");
    for (name, value) in params {
        token.push('&');
        token.push_str(name);
        token.push('=');
        token.push_str(&uri_encode(value));
    }
    Ok(token)
}

/// The region an RDS endpoint name holds (`NAME.ID.REGION.rds.amazonaws.com`).
fn region_of_endpoint(host: &str) -> Option<&str> {
    let host = host.strip_suffix('.').unwrap_or(host);
    let rest = host.strip_suffix(".rds.amazonaws.com").or_else(|| host.strip_suffix(".rds.amazonaws.com.cn"))?;
    rest.rsplit('.').next().filter(|r| !r.is_empty())
}

/// A fresh token from the AWS configuration chain (environment, profile,
/// SSO, instance or container role), in the endpoint's region when its name
/// holds one, else the configuration's.
///
/// # Errors
/// No credentials or no region, with what to set.
pub(super) async fn fresh_token(host: &str, port: u16, user: &str) -> Result<Zeroizing<String>, Error> {
    use aws_credential_types::provider::ProvideCredentials;
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest()).load().await;
    let region = match region_of_endpoint(host) {
        Some(r) => r.to_owned(),
        None => sdk.region().map(ToString::to_string).ok_or_else(|| {
            Error::usage(format!("RDS IAM authentication to {host}: no AWS region to sign for"))
                .hint("set AWS_REGION (or the profile's region) to the database's region")
        })?,
    };
    let provider = sdk.credentials_provider().ok_or_else(|| {
        Error::usage("RDS IAM authentication: no AWS credentials provider is configured")
            .hint("set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run where a role is attached")
    })?;
    let credentials = provider.provide_credentials().await.map_err(|e| {
        Error::new(ErrorKind::Io, format!("RDS IAM authentication: cannot get AWS credentials: {e}"))
            .hint("check AWS_PROFILE (aws sso login), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    })?;
    auth_token(host, port, user, &region, &credentials, SystemTime::now())
}

/// The region a token would be signed for, for messages.
pub(super) fn region_hint(host: &str) -> Option<String> {
    region_of_endpoint(host).map(str::to_owned).or_else(|| std::env::var("AWS_REGION").ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOST: &str = "db1.abc123xyz.eu-west-1.rds.amazonaws.com";
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    fn at_2026() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600)
    }

    /// Tokens printed by boto3 1.44.5 (scripts/interop/rds_auth_token.py ... --at 1767225600).
    #[test]
    fn tokens_match_boto3_generate_db_auth_token() {
        let creds = Credentials::new("AKIDEXAMPLE", SECRET, None, None, "test");
        let token = auth_token(HOST, 5432, "app_user", "eu-west-1", &creds, at_2026()).expect("token");
        assert_eq!(
            token.as_str(),
            "db1.abc123xyz.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app_user\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIDEXAMPLE%2F20260101%2Feu-west-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Signature=d813a13430cef6c967399e2ba902e2eb0201f4ba4f42b948883e369704d76858"
        );
        let creds = Credentials::new("ASIAEXAMPLE", SECRET, Some("IQoJb3JpZ2luX2VjE/+session==".into()), None, "test");
        let token = auth_token(HOST, 5432, "app user+1@x", "eu-west-1", &creds, at_2026()).expect("token");
        assert_eq!(
            token.as_str(),
            "db1.abc123xyz.eu-west-1.rds.amazonaws.com:5432/?Action=connect&DBUser=app%20user%2B1%40x\
             &X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=ASIAEXAMPLE%2F20260101%2Feu-west-1%2Frds-db%2Faws4_request\
             &X-Amz-Date=20260101T000000Z&X-Amz-Expires=900&X-Amz-SignedHeaders=host\
             &X-Amz-Security-Token=IQoJb3JpZ2luX2VjE%2F%2Bsession%3D%3D\
             &X-Amz-Signature=87003c6cfd851dcf90177d6ac0f9f906cf3fdc3918dced0dc254f3690945f833"
        );
    }

    /// The same against boto3 run now, for other hosts, ports, users, regions and a session token.
    #[test]
    #[ignore = "needs the test venv with boto3: bash scripts/test.sh"]
    fn tokens_match_boto3_run_live() {
        let python = std::env::var("REKEY_TEST_PYTHON").expect("REKEY_TEST_PYTHON: run `bash scripts/test.sh`");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/interop/rds_auth_token.py");
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
        let cases = [
            ("mydb.cluster-c0ffee.us-east-1.rds.amazonaws.com", 5432, "rekey", "us-east-1", None),
            ("proxy.example.internal", 6543, "app-user_01", "ap-southeast-2", Some("sess/+=token")),
            ("10.0.0.7", 15432, "naïve user", "eu-central-1", None),
        ];
        for (host, port, user, region, session) in cases {
            let mut args =
                vec![host.to_owned(), port.to_string(), user.to_owned(), region.to_owned(), "AKIDLIVE".into()];
            args.push(SECRET.into());
            args.extend(session.map(str::to_owned));
            args.extend(["--at".to_owned(), now.to_string()]);
            let out = std::process::Command::new(&python).arg(script).args(&args).output().expect("python");
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let boto3 = String::from_utf8(out.stdout).expect("utf-8");
            let creds = Credentials::new("AKIDLIVE", SECRET, session.map(str::to_owned), None, "test");
            let time = SystemTime::UNIX_EPOCH + Duration::from_secs(now);
            let ours = auth_token(host, port, user, region, &creds, time).expect("token");
            assert_eq!(ours.as_str(), boto3.trim(), "{host}:{port} {user} {region}");
        }
    }

    #[test]
    fn regions_come_from_rds_endpoint_names() {
        assert_eq!(region_of_endpoint("db1.abc123xyz.eu-west-1.rds.amazonaws.com"), Some("eu-west-1"));
        assert_eq!(region_of_endpoint("db1.abc.cn-north-1.rds.amazonaws.com.cn"), Some("cn-north-1"));
        assert_eq!(region_of_endpoint("db.example.com"), None);
    }

    #[test]
    fn user_names_are_encoded_like_sigv4() {
        assert_eq!(uri_encode("a b/c+d~e_f.g-h@i"), "a%20b%2Fc%2Bd~e_f.g-h%40i");
    }
}
