//! Connecting to MySQL or MariaDB, and errors that say what failed and what to do.
//!
//! TLS is rustls with the aws-lc-rs provider the tree already links.
//! `ssl-mode` as the `mysql` client: PREFERRED tries TLS (unverified) and
//! falls back to plain text only when the server has no TLS; REQUIRED
//! encrypts without checking the certificate; VERIFY_CA checks it against
//! `ssl-ca`; VERIFY_IDENTITY also checks the host name. A connection beyond
//! this machine that ends up unencrypted is refused unless the URL says
//! `ssl-mode=DISABLED`.

use std::time::Duration;

use mysql_async::{Conn, OptsBuilder, SslOpts};

use super::mysql_config::{MysqlConfig, SslMode, parse};
use super::pg_config::redact_url;
use crate::engine::error::{Error, ErrorKind};

/// How long a connection attempt may take before it is called unanswered.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// MySQL and MariaDB error codes rekey explains.
mod code {
    pub(super) const DBACCESS_DENIED: u16 = 1044;
    pub(super) const ACCESS_DENIED: u16 = 1045;
    pub(super) const BAD_DB: u16 = 1049;
    pub(super) const SERVER_SHUTDOWN: u16 = 1053;
    pub(super) const TABLEACCESS_DENIED: u16 = 1142;
    pub(super) const COLUMNACCESS_DENIED: u16 = 1143;
    pub(super) const READ_ONLY: u16 = 1290;
    pub(super) const QUERY_INTERRUPTED: u16 = 1317;
    pub(super) const CONNECTION_KILLED: u16 = 1927;
    pub(super) const SECURE_TRANSPORT_REQUIRED: u16 = 3159;
    pub(super) const CLIENT_INTERACTION_TIMEOUT: u16 = 4031;
}

/// Whether a server error means the table's privileges are missing.
pub(super) fn is_privilege_error(e: &mysql_async::Error) -> bool {
    matches!(e, mysql_async::Error::Server(s) if matches!(s.code, code::TABLEACCESS_DENIED | code::COLUMNACCESS_DENIED))
}

/// The rustls error inside a driver error, if the failure was TLS.
fn tls_error(e: &mysql_async::Error) -> Option<&rustls::Error> {
    match e {
        mysql_async::Error::Io(mysql_async::IoError::Tls(mysql_async::TlsError::Tls(t))) => Some(t),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => io.get_ref().and_then(|i| i.downcast_ref()),
        _ => None,
    }
}

/// An error from a statement: what was being done, the server's words, and the next step.
pub(super) fn db_error(what: &str, e: &mysql_async::Error) -> Error {
    let message = match e {
        mysql_async::Error::Server(s) => format!("{what}: {} (error {}, SQLSTATE {})", s.message, s.code, s.state),
        other => format!("{what}: {other}"),
    };
    let error = Error::new(ErrorKind::Io, message);
    match e {
        mysql_async::Error::Server(s) => match s.code {
            code::TABLEACCESS_DENIED | code::COLUMNACCESS_DENIED => {
                error.hint("grant this user SELECT and UPDATE on the table (GRANT SELECT, UPDATE ON ... TO ...)")
            }
            code::READ_ONLY => error.hint("the server is read-only (a replica?); connect to the primary"),
            code::CONNECTION_KILLED
            | code::SERVER_SHUTDOWN
            | code::QUERY_INTERRUPTED
            | code::CLIENT_INTERACTION_TIMEOUT => {
                error.hint("the connection was lost; rerun the same command with --resume")
            }
            _ => error,
        },
        _ => error.hint("the connection was lost; rerun the same command with --resume"),
    }
}

/// A failed connection attempt, named: no route, TLS, certificate, authentication, access.
fn connect_error(config: &MysqlConfig, url: &str, e: &mysql_async::Error) -> Error {
    let place = format!("{}:{}", config.host, config.port);
    let at = redact_url(url);
    if let Some(tls) = tls_error(e) {
        let text = tls.to_string();
        let (what, hint) = match tls {
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName)
            | rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForNameContext { .. }) => (
                format!("the server's certificate is not for host {:?}", config.host),
                "connect by the name the certificate holds, or use ssl-mode=VERIFY_CA to check only the CA",
            ),
            rustls::Error::InvalidCertificate(_) => (
                "the server's certificate was refused".to_owned(),
                "set ssl-ca to the CA that signed the server's certificate (for RDS and Aurora, the RDS CA bundle)",
            ),
            _ => ("the TLS handshake failed".to_owned(), "check the server's TLS settings and ssl-mode"),
        };
        return Error::new(ErrorKind::Io, format!("cannot connect to {at}: {what} ({text})")).hint(hint);
    }
    match e {
        mysql_async::Error::Server(s) => {
            let base = format!("cannot connect to {at}: {} (error {})", s.message, s.code);
            let hint = match s.code {
                code::ACCESS_DENIED => format!(
                    "authentication failed for user {:?} (password from {}); put the password in the URL, an \
                     option file (defaults-file=PATH, or ~/.my.cnf) or MYSQL_PWD; a user created with REQUIRE SSL \
                     also needs TLS (ssl-mode=REQUIRED or stronger)",
                    config.user, config.password_source
                ),
                code::DBACCESS_DENIED => format!("GRANT SELECT, UPDATE ON the table TO the user {:?}", config.user),
                code::BAD_DB => "name an existing database in the URL: mysql://USER@HOST:PORT/DB".to_owned(),
                code::SECURE_TRANSPORT_REQUIRED => "the server requires TLS: drop ssl-mode=DISABLED".to_owned(),
                _ => "check the URL and that the server accepts this user from this host".to_owned(),
            };
            Error::new(ErrorKind::Io, base).hint(hint)
        }
        mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer) => Error::new(
            ErrorKind::Io,
            format!(
                "cannot connect to {at}: the server does not speak TLS and ssl-mode={} requires it",
                config.mode.name()
            ),
        )
        .hint("enable TLS on the server (ssl-cert, ssl-key); only on this machine may ssl-mode=DISABLED be used"),
        mysql_async::Error::Driver(mysql_async::DriverError::UnknownAuthPlugin { name }) => Error::new(
            ErrorKind::Io,
            format!("cannot connect to {at}: the server asks for the {name} authentication method"),
        )
        .hint("rekey speaks caching_sha2_password and mysql_native_password; give the user one of them"),
        mysql_async::Error::Io(mysql_async::IoError::Io(io)) => {
            let (what, hint) = match io.kind() {
                std::io::ErrorKind::ConnectionRefused => {
                    ("nothing listens there (connection refused)", "check the host and port, and that the server runs")
                }
                std::io::ErrorKind::TimedOut => {
                    ("no answer (timed out)", "check the host, the port, and any firewall or security group")
                }
                _ => ("the network failed", "check the host name, the port and the route to the server"),
            };
            Error::new(ErrorKind::Io, format!("cannot connect to {at} ({place}): {what}: {io}")).hint(hint)
        }
        other => Error::new(ErrorKind::Io, format!("cannot connect to {at}: {other}"))
            .hint("check the URL, ssl-mode and ssl-ca"),
    }
}

fn ssl_opts(config: &MysqlConfig, mode: SslMode) -> SslOpts {
    let mut ssl = SslOpts::default();
    // With ssl-ca, only that CA (no built-in roots); without, the modes that need one are refused earlier.
    if let Some(ca) = &config.ca {
        ssl = ssl.with_root_certs(vec![ca.clone().into()]).with_disable_built_in_roots(true);
    }
    if let (Some(cert), Some(key)) = (&config.cert, &config.key) {
        ssl = ssl.with_client_identity(Some(mysql_async::ClientIdentity::new(cert.clone().into(), key.clone().into())));
    }
    match mode {
        // PREFERRED and REQUIRED encrypt without checking who answers, as the mysql client does.
        SslMode::Disabled | SslMode::Preferred | SslMode::Required => ssl.with_danger_accept_invalid_certs(true),
        SslMode::VerifyCa => ssl.with_danger_skip_domain_validation(true),
        SslMode::VerifyIdentity => ssl,
    }
}

fn options(config: &MysqlConfig, tls: Option<SslOpts>) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(config.host.clone())
        .tcp_port(config.port)
        .user(Some(config.user.clone()))
        .pass(config.password.clone())
        .db_name(config.database.clone())
        .ssl_opts(tls)
        // The TCP connection asked for, never a switch to the server's socket.
        .prefer_socket(false)
        .tcp_nodelay(true)
        .tcp_keepalive(Some(Duration::from_secs(60)))
        .stmt_cache_size(64)
        .connect_attribute("program_name", "rekey")
}

async fn attempt(config: &MysqlConfig, url: &str, tls: Option<SslOpts>) -> Result<Conn, mysql_async::Error> {
    match tokio::time::timeout(CONNECT_TIMEOUT, Conn::new(options(config, tls))).await {
        Ok(result) => result,
        Err(_) => Err(mysql_async::Error::Io(mysql_async::IoError::Io(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            format!("no answer from {} within {}s", redact_url(url), CONNECT_TIMEOUT.as_secs()),
        )))),
    }
}

/// Connects as the URL, the option file and `MYSQL_PWD` say.
pub(super) fn connect(rt: &tokio::runtime::Runtime, url: &str) -> Result<(Conn, MysqlConfig), Error> {
    let config = parse(url, &|k| std::env::var(k).ok())?;
    let conn = rt.block_on(async {
        match config.mode {
            SslMode::Disabled => attempt(&config, url, None).await,
            SslMode::Preferred => match attempt(&config, url, Some(ssl_opts(&config, SslMode::Preferred))).await {
                Err(mysql_async::Error::Driver(mysql_async::DriverError::NoClientSslFlagFromServer)) => {
                    attempt(&config, url, None).await.map(|c| (c, false))
                }
                other => other.map(|c| (c, true)),
            }
            .map(|(c, encrypted)| {
                if !encrypted {
                    tracing::warn!(host = %config.host, "the server does not speak TLS: connected unencrypted");
                }
                c
            }),
            mode => attempt(&config, url, Some(ssl_opts(&config, mode))).await,
        }
    });
    let conn = conn.map_err(|e| connect_error(&config, url, &e))?;
    Ok((conn, config))
}

/// Refuses a connection beyond this machine that ended up unencrypted
/// without `ssl-mode=DISABLED` written out.
pub(super) fn check_encrypted(config: &MysqlConfig, encrypted: bool, url: &str) -> Result<(), Error> {
    if encrypted || config.is_loopback() || (config.mode == SslMode::Disabled && config.mode_written) {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Io,
        format!("{} is reached without TLS; rekey does not send keys and passwords in the clear", redact_url(url)),
    )
    .hint("enable TLS on the server and add ssl-mode=VERIFY_IDENTITY&ssl-ca=CA.pem, or write ssl-mode=DISABLED"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unencrypted_beyond_this_machine_is_refused_unless_disabled_is_written() {
        let config = |url: &str| parse(url, &|_| None).expect("parses");
        let remote = config("mysql://app@db.example.com/app");
        let e = check_encrypted(&remote, false, "mysql://app@db.example.com/app").expect_err("refused");
        assert!(e.to_string().contains("without TLS"), "{e}");
        assert!(check_encrypted(&remote, true, "").is_ok(), "encrypted is fine");
        assert!(check_encrypted(&config("mysql://app@127.0.0.1/app"), false, "").is_ok(), "loopback");
        assert!(check_encrypted(&config("mysql://app@[::1]:3306/app"), false, "").is_ok(), "loopback");
        let disabled = config("mysql://app@db.example.com/app?ssl-mode=DISABLED");
        assert!(check_encrypted(&disabled, false, "").is_ok(), "written out");
    }
}
