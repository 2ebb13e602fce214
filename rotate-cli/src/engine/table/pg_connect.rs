//! Opening a PostgreSQL connection: the settings as libpq reads them
//! ([`super::pg_config`]), TLS ([`super::pg_tls`]), an RDS IAM token made
//! for this connection ([`super::rds_iam`]), and, when it fails, a message
//! that says which step failed (address, route, TLS, certificate,
//! `pg_hba.conf`, authentication) and what to do.

use tokio_postgres::error::SqlState;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, Config, Connection, Socket};

use super::pg_config::{IAM_AUTH_PARAM, Settings, SslMode, redact_url, settings};
use super::pg_tls::{Check, Roots, RustlsConnect, rustls_error};
use super::rds_iam;
use crate::engine::error::{Error, ErrorKind};

type Stream = <RustlsConnect as MakeTlsConnect<Socket>>::Stream;

/// Connects to `url` on `rt`, the connection's task spawned there.
///
/// # Errors
/// Usage errors for settings, and connection failures explained.
pub(super) fn connect(rt: &tokio::runtime::Runtime, url: &str) -> Result<Client, Error> {
    let settings = settings(url)?;
    let tls = settings.tls.connector()?;
    let mut config = settings.config.clone();
    if settings.iam {
        let (host, port, user) = target(&config);
        let token = rt.block_on(rds_iam::fresh_token(&host, port, &user))?;
        config.password(token.as_bytes());
    }
    let attempt = |config: &Config| rt.block_on(config.connect(tls.clone()));
    let mut result = attempt(&config);
    // `allow`: plain first; TLS when the server refuses plain.
    if settings.tls_after_plain
        && let Err(e) = &result
        && e.code() == Some(&SqlState::INVALID_AUTHORIZATION_SPECIFICATION)
    {
        config.ssl_mode(tokio_postgres::config::SslMode::Require);
        result = attempt(&config);
    }
    drop(config);
    let (client, connection): (Client, Connection<Socket, Stream>) = result.map_err(|e| explain(&e, url, &settings))?;
    rt.spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!("PostgreSQL connection: {e}");
        }
    });
    Ok(client)
}

/// The first host, port and user, as the messages and the IAM token name them.
fn target(config: &Config) -> (String, u16, String) {
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => config.get_hostaddrs().first().map(ToString::to_string).unwrap_or_default(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    (host, port, config.get_user().unwrap_or_default().to_owned())
}

/// A connection failure as a sentence and the next step.
fn explain(e: &tokio_postgres::Error, url: &str, settings: &Settings) -> Error {
    let (host, port, user) = target(&settings.config);
    let at = format!("{host}:{port}");
    let redacted = redact_url(url);
    let fail = |message: String| Error::new(ErrorKind::Io, format!("cannot connect to {redacted}: {message}"));

    if let Some(db) = e.as_db_error() {
        let text = db.message();
        let code = db.code();
        let said = format!("{text} (SQLSTATE {})", code.code());
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION
            && (text.contains("pg_hba.conf") || text.contains("no encryption"))
        {
            let err = fail(format!("the server's pg_hba.conf refuses this connection: {said}"));
            return if text.contains("no encryption") || text.contains("SSL off") {
                err.hint(format!(
                    "the server accepts only TLS connections here: use sslmode=verify-full with sslrootcert=CA.pem \
                     (or sslmode=require){}",
                    if settings.mode == SslMode::Disable { ", not sslmode=disable" } else { "" }
                ))
            } else {
                err.hint(format!(
                    "ask the database's administrator for a pg_hba.conf entry for user {user}, this database \
                     and this machine's address, or check the user and database names"
                ))
            };
        }
        if *code == SqlState::INVALID_PASSWORD
            || (*code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && text.contains("authentication failed"))
        {
            let err = fail(format!("authentication failed: {said}"));
            return if settings.iam {
                err.hint(format!(
                    "the IAM token was refused: the database user needs GRANT rds_iam TO {user}, the AWS identity an \
                     IAM policy allowing rds-db:connect on arn:aws:rds-db:{}:ACCOUNT:dbuser:RESOURCE_ID/{user}, \
                     and the database IAM authentication turned on",
                    rds_iam::region_hint(&host).unwrap_or_else(|| "REGION".to_owned())
                ))
            } else if text.contains("certificate") {
                err.hint(format!(
                    "the client certificate's common name (CN) must be {user} (or be mapped to it in pg_ident.conf); \
                     check sslcert and sslkey"
                ))
            } else {
                err.hint(format!(
                    "check the password for {user} (PGPASSWORD, ~/.pgpass, or the URL), or use RDS IAM \
                     authentication (--database-iam-auth or {IAM_AUTH_PARAM}=true)"
                ))
            };
        }
        if *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION && text.contains("client certificate") {
            return fail(format!("the server wants a client certificate: {said}")).hint(format!(
                "name a certificate for {user} signed by a CA the server trusts: sslcert=FILE and sslkey=FILE \
                 (or PGSSLCERT, PGSSLKEY)"
            ));
        }
        if *code == SqlState::INVALID_CATALOG_NAME {
            return fail(said).hint("check the database name in the URL (postgres://USER@HOST:PORT/DB)");
        }
        return fail(said).hint("check the URL, the user and the database");
    }

    if let Some(tls) = rustls_error(e) {
        return tls_failure(tls, &at, settings, fail);
    }

    let detail = source_text(e);
    if detail.contains("server does not support TLS") {
        let err = fail(format!("the server at {at} does not accept TLS connections (or is not PostgreSQL)"));
        return if settings.off_machine {
            err.hint(format!(
                "{host} is not this machine, and rekey sends nothing unencrypted across a network unless asked: \
                 turn on ssl on the server, or, on a network you trust, write sslmode=disable in the URL"
            ))
        } else if settings.iam {
            err.hint("RDS IAM authentication needs TLS: connect to a server with ssl on")
        } else {
            err.hint(format!(
                "turn on ssl on the server, or lower sslmode (sslmode={} asks for TLS)",
                mode_name(settings.mode)
            ))
        };
    }
    if let Some(io) = io_error(e) {
        use std::io::ErrorKind as K;
        return match io.kind() {
            K::ConnectionRefused => fail(format!("nothing accepts connections at {at} (connection refused)")).hint(
                "check the host and port (PGHOST, PGPORT), that the server is running, and that it listens on \
                 that address (listen_addresses)",
            ),
            K::TimedOut => fail(format!(
                "no answer from {at} within {} s",
                settings.config.get_connect_timeout().map_or(0, std::time::Duration::as_secs)
            ))
            .hint(route_hint(&host, port)),
            K::HostUnreachable | K::NetworkUnreachable => {
                fail(format!("no route to {at} ({io})")).hint(route_hint(&host, port))
            }
            K::ConnectionReset | K::UnexpectedEof | K::BrokenPipe => {
                fail(format!("the server at {at} closed the connection ({io})")).hint(
                    "it may require TLS the client did not offer, refuse the client certificate, or not be \
                     PostgreSQL: check sslmode and the port",
                )
            }
            _ if detail.contains("lookup") || detail.contains("resolve") || detail.contains("not known") => {
                fail(format!("cannot resolve the host name {host}: {detail}"))
                    .hint("check the host name in the URL (or PGHOST)")
            }
            _ => fail(detail).hint("check the URL, PGHOST/PGPORT/PGUSER, and that the server is running"),
        };
    }
    fail(detail).hint("check the URL, PGHOST/PGPORT/PGUSER, and that the server is running")
}

fn mode_name(mode: SslMode) -> &'static str {
    match mode {
        SslMode::Disable => "disable",
        SslMode::Allow => "allow",
        SslMode::Prefer => "prefer",
        SslMode::Require => "require",
        SslMode::VerifyCa => "verify-ca",
        SslMode::VerifyFull => "verify-full",
    }
}

fn route_hint(host: &str, port: u16) -> String {
    format!(
        "the network drops the traffic: check the route to {host}, firewalls, and (on AWS) the security group's \
         inbound rule for port {port}, that the database is publicly accessible or this machine is in its VPC; \
         connect_timeout=SECONDS changes the wait"
    )
}

fn tls_failure(tls: &rustls::Error, at: &str, settings: &Settings, fail: impl Fn(String) -> Error) -> Error {
    use rustls::{AlertDescription as A, CertificateError as C};
    let roots = match &settings.tls.roots {
        Roots::File(p) => format!("sslrootcert {}", p.display()),
        Roots::System => "the operating system's roots".to_owned(),
        Roots::None => "no root certificate".to_owned(),
    };
    match tls {
        rustls::Error::InvalidCertificate(C::UnknownIssuer | C::BadSignature) => {
            fail(format!("the server's certificate at {at} is not signed by a CA in {roots}")).hint(
                "set sslrootcert to the CA bundle that signed it (for RDS: the region's bundle from \
                 https://truststore.pki.rds.amazonaws.com/)",
            )
        }
        rustls::Error::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. }) => {
            fail(format!("the server's certificate is not valid for the host name in the URL ({at}): {tls}")).hint(
                "connect with a name the certificate holds (for RDS, the instance's endpoint name), or use \
                 sslmode=verify-ca to check only that a trusted CA signed it",
            )
        }
        rustls::Error::InvalidCertificate(
            C::Expired | C::ExpiredContext { .. } | C::NotValidYet | C::NotValidYetContext { .. },
        ) => fail(format!("the server's certificate at {at} is outside its validity dates: {tls}"))
            .hint("the server needs a current certificate (or this machine's clock is wrong)"),
        rustls::Error::InvalidCertificate(other) => {
            fail(format!("the server's certificate at {at} was refused: {other:?}"))
                .hint(format!("check the certificate against {roots}"))
        }
        rustls::Error::AlertReceived(
            alert @ (A::CertificateRequired
            | A::BadCertificate
            | A::UnknownCA
            | A::CertificateUnknown
            | A::AccessDenied
            | A::CertificateExpired
            | A::CertificateRevoked),
        ) => fail(format!("the server at {at} refused the client certificate in the TLS handshake ({alert:?})")).hint(
            if settings.tls.client.is_some() {
                "the server does not trust the client certificate (sslcert): it must be signed by a CA in the \
                 server's ssl_ca_file and still valid"
            } else {
                "the server asks for a client certificate: name it with sslcert=FILE and sslkey=FILE (or \
                 PGSSLCERT, PGSSLKEY, ~/.postgresql/postgresql.crt and .key)"
            },
        ),
        other => {
            fail(format!("the TLS handshake with {at} failed: {other}")).hint(if settings.tls.check == Check::Nothing {
                "check that the port is PostgreSQL's and that the server's TLS settings (ssl_min_protocol_version, \
                 ssl_ciphers) allow TLS 1.2 or 1.3"
            } else {
                "check sslrootcert and the server's TLS settings (ssl_min_protocol_version allows TLS 1.2 or 1.3)"
            })
        }
    }
}

/// The innermost I/O error under tokio-postgres's wrapper.
fn io_error(e: &tokio_postgres::Error) -> Option<&std::io::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut found = None;
    while let Some(err) = next {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            found = Some(io);
        }
        next = err.source();
    }
    found
}

/// The error's causes, outermost first.
fn source_text(e: &tokio_postgres::Error) -> String {
    let mut parts = Vec::new();
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        parts.push(err.to_string());
        next = err.source();
    }
    if parts.is_empty() { e.to_string() } else { parts.join(": ") }
}
