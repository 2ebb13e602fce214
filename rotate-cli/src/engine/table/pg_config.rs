//! How a PostgreSQL URL becomes a connection's settings, as libpq users
//! expect: the URL first, then `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//! `PGPASSWORD`, and the password file (`PGPASSFILE` or `~/.pgpass`,
//! ignored when others may read it); TLS as libpq reads `sslmode`,
//! `sslrootcert`, `sslcert`, `sslkey` and `sslnegotiation` (and `PGSSLMODE`,
//! `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`, `PGSSLNEGOTIATION`, and the
//! files under `~/.postgresql/`); and the URL without its password, for
//! journals and messages.
//!
//! One rule libpq lacks: nothing unencrypted leaves this machine unless
//! `sslmode=disable` was asked for (in the URL or `PGSSLMODE`). `prefer` and
//! `allow` (libpq's default is `prefer`) fall back to plain only on a Unix
//! socket or loopback; to any other host they require TLS, so a password
//! never crosses a network in clear because a server (or someone between)
//! said it does not speak TLS.

use std::str::FromStr;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode as TpSslMode};

use super::pg_tls::{Check, ClientCert, Roots, TlsSettings};
use crate::engine::error::Error;

/// The URL without a password, for journals and messages.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split_once(':').map_or(userinfo, |(u, _)| u);
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let kept: Vec<&str> = query.split('&').filter(|p| !p.starts_with("password=")).collect();
            if kept.is_empty() { path.to_owned() } else { format!("{path}?{}", kept.join("&")) }
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

/// libpq's `sslmode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

/// The URL parameter that turns on RDS IAM authentication (as `--database-iam-auth` does).
pub const IAM_AUTH_PARAM: &str = "aws_iam_auth";

/// A connection's settings: tokio-postgres's, the TLS side, and how to log in.
#[derive(Debug)]
pub(super) struct Settings {
    /// Host, port, user, database, password; `ssl_mode` already the one to ask tokio-postgres for.
    pub(super) config: Config,
    /// The sslmode in force (written, from `PGSSLMODE`, or libpq's default `prefer`).
    pub(super) mode: SslMode,
    pub(super) tls: TlsSettings,
    /// `allow`: plain first, TLS when the server refuses plain.
    pub(super) tls_after_plain: bool,
    /// Plain connections are refused because a host is off this machine
    /// (`prefer` and `allow` were raised to requiring TLS).
    pub(super) off_machine: bool,
    /// Log in with an RDS IAM token made for each connection.
    pub(super) iam: bool,
}

/// Splits the libpq parameters tokio-postgres does not read (and rekey's
/// own) out of the URL's query: (URL for tokio-postgres, taken pairs).
fn take_params(url: &str) -> (String, Vec<(String, String)>) {
    const OURS: [&str; 6] = ["sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", IAM_AUTH_PARAM];
    let Some((base, query)) = url.split_once('?') else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(k);
        if OURS.contains(&key.as_str()) {
            taken.push((key, percent_decode(v)));
        } else {
            kept.push(pair);
        }
    }
    let url = if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) };
    (url, taken)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = |j: usize| bytes.get(j).and_then(|c| char::from(*c).to_digit(16));
        match (b, hex(i + 1), hex(i + 2)) {
            (b'%', Some(h), Some(l)) => {
                out.push(u8::try_from(h * 16 + l).unwrap_or(b'?'));
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A parameter of a URL's query, as written.
fn param_in<'a>(url: &'a str, key: &str) -> Option<&'a str> {
    let (_, query) = url.split_once('?')?;
    query.split('&').find_map(|p| p.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
}

fn truthy(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on" | "")
}

/// Whether a host is this machine: a Unix socket, `localhost`, or a loopback address.
pub(super) fn on_this_machine(host: &Host) -> bool {
    match host {
        Host::Unix(_) => true,
        Host::Tcp(h) => {
            let h = h.strip_suffix('.').unwrap_or(h);
            h.eq_ignore_ascii_case("localhost")
                || h.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
    }
}

/// The connection settings: the URL, then the libpq environment and password file.
pub(super) fn settings(url: &str) -> Result<Settings, Error> {
    settings_with(url, &|k| std::env::var(k).ok())
}

/// [`settings`] with the environment read through `lookup`.
fn settings_with(url: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<Settings, Error> {
    let (pg_url, taken) = take_params(url);
    let mut config = Config::from_str(&pg_url).map_err(|e| {
        Error::usage(format!("{} is not a PostgreSQL URL this build reads: {e}", redact_url(url)))
            .hint("write postgres://USER@HOST:PORT/DB?sslmode=verify-full&sslrootcert=CA.pem")
    })?;
    let env = |k: &str| lookup(k).filter(|v| !v.is_empty());
    let param = |k: &str| taken.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let from_url_or_env = |k: &str, var: &str| param(k).filter(|v| !v.is_empty()).or_else(|| env(var));

    let home_file = |name: &str| {
        env("HOME").map(|h| std::path::Path::new(&h).join(".postgresql").join(name)).filter(|p| p.is_file())
    };
    let written_mode = from_url_or_env("sslmode", "PGSSLMODE");
    let root_setting = from_url_or_env("sslrootcert", "PGSSLROOTCERT");
    let mode = match written_mode.as_deref() {
        Some(m) => SslMode::parse(m).ok_or_else(|| {
            Error::usage(format!("sslmode={m} is not a libpq sslmode"))
                .hint("sslmode is disable, allow, prefer, require, verify-ca or verify-full")
        })?,
        // libpq 16: sslrootcert=system makes verify-full the default.
        None if root_setting.as_deref() == Some("system") => SslMode::VerifyFull,
        None => SslMode::Prefer,
    };
    let roots = match root_setting.as_deref() {
        Some("system") => Roots::System,
        Some(file) => Roots::File(file.into()),
        None => home_file("root.crt").map_or(Roots::None, Roots::File),
    };
    if roots == Roots::System && mode != SslMode::VerifyFull {
        return Err(Error::usage(format!("weak sslmode={} may not be used with sslrootcert=system", mode.name()))
            .hint("use sslmode=verify-full, as libpq requires"));
    }
    if let Roots::File(path) = &roots
        && !path.is_file()
    {
        return Err(Error::usage(format!("the root certificate file {} does not exist", path.display()))
            .hint("name the CA bundle that signed the server's certificate (sslrootcert=FILE), or sslrootcert=system for the OS roots"));
    }
    let check = match (mode, &roots) {
        (SslMode::VerifyFull, _) => Check::ChainAndName,
        (SslMode::VerifyCa, _) => Check::Chain,
        // libpq: a root certificate, when there is one, is checked in every mode that encrypts.
        (_, Roots::File(_) | Roots::System) => Check::Chain,
        (_, Roots::None) => Check::Nothing,
    };
    if check != Check::Nothing && roots == Roots::None {
        return Err(Error::usage(format!(
            "sslmode={} needs the CA that signed the server's certificate, and none is given",
            mode.name()
        ))
        .hint("add sslrootcert=CA.pem (for RDS: the region's bundle from https://truststore.pki.rds.amazonaws.com), or sslrootcert=system"));
    }
    let client = match (
        from_url_or_env("sslcert", "PGSSLCERT").map(std::path::PathBuf::from).or_else(|| home_file("postgresql.crt")),
        from_url_or_env("sslkey", "PGSSLKEY").map(std::path::PathBuf::from).or_else(|| home_file("postgresql.key")),
    ) {
        (Some(cert), Some(key)) => Some(ClientCert { cert, key }),
        (None, None) => None,
        (Some(cert), None) => {
            return Err(Error::usage(format!("sslcert={} has no key", cert.display()))
                .hint("name its private key with sslkey=FILE (or PGSSLKEY)"));
        }
        (None, Some(key)) => {
            return Err(Error::usage(format!("sslkey={} has no certificate", key.display()))
                .hint("name the client certificate with sslcert=FILE (or PGSSLCERT)"));
        }
    };
    if param("sslcrl").is_some() {
        return Err(Error::usage("sslcrl is not supported by this build of rekey")
            .hint("remove sslcrl from the URL; revoked certificates are not checked"));
    }
    let iam = param(IAM_AUTH_PARAM).is_some_and(|v| truthy(&v));

    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        match env("PGHOST") {
            Some(h) => {
                config.host(h.split(',').next().unwrap_or(&h));
            }
            None if std::path::Path::new("/var/run/postgresql").is_dir() && !iam => {
                config.host("/var/run/postgresql");
            }
            None => {
                config.host("localhost");
            }
        }
    }
    if config.get_ports().is_empty() {
        let port = env("PGPORT").and_then(|p| p.parse().ok()).unwrap_or(5432);
        config.port(port);
    }
    if config.get_user().is_none() {
        let user = env("PGUSER").or_else(|| env("USER")).or_else(|| env("LOGNAME")).ok_or_else(|| {
            Error::usage("no PostgreSQL user: put one in the URL (postgres://USER@...) or set PGUSER")
        })?;
        config.user(&user);
    }
    if config.get_dbname().is_none()
        && let Some(db) = env("PGDATABASE")
    {
        config.dbname(&db);
    }
    if config.get_connect_timeout().is_none() {
        let seconds = env("PGCONNECT_TIMEOUT").and_then(|s| s.parse().ok()).unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        if seconds > 0 {
            config.connect_timeout(std::time::Duration::from_secs(seconds));
        }
    }
    if iam {
        if config.get_password().is_some() {
            return Err(Error::usage("RDS IAM authentication and a password: the URL names both")
                .hint("remove the password from the URL; the IAM token replaces it"));
        }
        if mode == SslMode::Disable {
            return Err(Error::usage("RDS IAM authentication needs TLS, and the URL says sslmode=disable").hint(
                "use sslmode=verify-full with sslrootcert=the RDS CA bundle (the token must not cross the network in clear)",
            ));
        }
    } else if config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        } else if let Some(p) = pgpass(&config) {
            config.password(p);
        }
    }
    if param_in(&pg_url, "sslnegotiation").is_none()
        && let Some(n) = env("PGSSLNEGOTIATION")
    {
        config.ssl_negotiation(match n.as_str() {
            "direct" => tokio_postgres::config::SslNegotiation::Direct,
            "postgres" => tokio_postgres::config::SslNegotiation::Postgres,
            _ => return Err(Error::usage(format!("PGSSLNEGOTIATION={n}: it is postgres or direct"))),
        });
    }
    // The addresses connected to: hostaddr where given, else the hosts.
    let addresses: Vec<Host> = if config.get_hostaddrs().is_empty() {
        config.get_hosts().to_vec()
    } else {
        config.get_hostaddrs().iter().map(|ip| Host::Tcp(ip.to_string())).collect()
    };
    // Nothing unencrypted leaves this machine unless sslmode=disable was asked for.
    let off_machine = !addresses.iter().all(on_this_machine);
    let plain_allowed = !iam && !off_machine;
    let (tp_mode, tls_after_plain) = match mode {
        SslMode::Disable => (TpSslMode::Disable, false),
        SslMode::Allow if plain_allowed => (TpSslMode::Disable, true),
        SslMode::Prefer if plain_allowed => (TpSslMode::Prefer, false),
        _ => (TpSslMode::Require, false),
    };
    config.ssl_mode(tp_mode);
    config.application_name("rekey");
    let raised = off_machine && !iam && matches!(mode, SslMode::Allow | SslMode::Prefer);
    Ok(Settings { config, mode, tls: TlsSettings { roots, check, client }, tls_after_plain, off_machine: raised, iam })
}

/// Seconds to wait for a server that does not answer (`connect_timeout`,
/// `PGCONNECT_TIMEOUT`; 0 waits for ever, libpq's default): a dropped SYN
/// would otherwise take the kernel's two minutes to report.
const DEFAULT_CONNECT_TIMEOUT: u64 = 30;

/// The password file's entry for this connection, as libpq reads it.
fn pgpass(config: &Config) -> Option<String> {
    let path = std::env::var_os("PGPASSFILE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".pgpass")))?;
    let meta = std::fs::metadata(&path).ok()?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            tracing::warn!(file = %path.display(), "password file ignored: group or others may read it (chmod 0600)");
            return None;
        }
    }
    #[cfg(not(unix))]
    let _ = meta;
    let text = std::fs::read_to_string(&path).ok()?;
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        _ => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432).to_string();
    let user = config.get_user().unwrap_or_default();
    let db = config.get_dbname().unwrap_or(user);
    let wanted = [host.as_str(), port.as_str(), db, user];
    for line in text.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let fields = split_pgpass(line);
        let [h, p, d, u, password] = &fields[..] else {
            continue;
        };
        if [h, p, d, u].iter().zip(wanted).all(|(f, w)| f.as_str() == "*" || f.as_str() == w) {
            return Some(password.clone());
        }
    }
    None
}

/// Splits a password file line on unescaped colons, unescaping `\:` and `\\`.
fn split_pgpass(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next()
                    && let Some(f) = fields.last_mut()
                {
                    f.push(next);
                }
            }
            ':' if fields.len() < 5 => fields.push(String::new()),
            c => {
                if let Some(f) = fields.last_mut() {
                    f.push(c);
                }
            }
        }
    }
    fields
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_journals() {
        assert_eq!(redact_url("postgres://u:secret@h:5/db?sslmode=disable"), "postgres://u@h:5/db?sslmode=disable");
        assert_eq!(redact_url("postgresql://h/db?password=x&user=u"), "postgresql://h/db?user=u");
        assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    }

    #[test]
    fn password_file_lines_unescape_like_libpq() {
        assert_eq!(split_pgpass(r"h:5432:*:u:p\:w\\d:x"), vec!["h", "5432", "*", "u", r"p:w\d:x"]);
    }

    /// Settings with the libpq environment and home directory out of the way.
    fn settings_of(url: &str) -> Result<Settings, Error> {
        settings_with(url, &|_| None)
    }

    #[test]
    fn the_libpq_variables_apply_where_the_url_is_silent() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "").expect("write");
        let ca_text = ca.display().to_string();
        let vars = [("PGSSLMODE", "verify-ca"), ("PGSSLROOTCERT", ca_text.as_str()), ("PGUSER", "u")];
        let lookup = |k: &str| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| (*v).to_owned());
        let s = settings_with("postgres://db.example.com/db", &lookup).expect("from the environment");
        assert_eq!((s.mode, s.tls.check, s.tls.roots.clone()), (SslMode::VerifyCa, Check::Chain, Roots::File(ca)));
        // The URL wins over the environment.
        let s = settings_with("postgres://db.example.com/db?sslmode=verify-full", &lookup).expect("url");
        assert_eq!(s.mode, SslMode::VerifyFull);
        // PGSSLMODE=disable is as written out as the URL's.
        let plain = |k: &str| (k == "PGSSLMODE").then(|| "disable".to_owned());
        let s = settings_with("postgres://u@db.example.com/db", &plain).expect("disable");
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Disable);
    }

    #[test]
    fn sslmode_follows_libpq() {
        let s = settings_of("postgres://u@127.0.0.1/db?sslmode=require").expect("require");
        assert_eq!(
            (s.mode, s.tls.check, s.config.get_ssl_mode()),
            (SslMode::Require, Check::Nothing, TpSslMode::Require)
        );
        let s = settings_of("postgres://u@127.0.0.1/db?sslmode=disable").expect("disable");
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Disable);
        let s = settings_of("postgres://u@127.0.0.1/db?sslmode=allow").expect("allow");
        assert!(s.tls_after_plain);
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Disable);
        let s = settings_of("postgres://u@localhost/db").expect("default");
        assert_eq!((s.mode, s.config.get_ssl_mode()), (SslMode::Prefer, TpSslMode::Prefer));
        let e = settings_of("postgres://u@h/db?sslmode=verify-full").expect_err("no CA");
        assert!(e.message.contains("needs the CA"), "{}", e.message);
        let e = settings_of("postgres://u@h/db?sslmode=require&sslrootcert=system").expect_err("weak");
        assert!(e.message.contains("weak sslmode=require"), "{}", e.message);
        let s = settings_of("postgres://u@h/db?sslrootcert=system").expect("system");
        assert_eq!((s.mode, s.tls.check), (SslMode::VerifyFull, Check::ChainAndName));
        let e = settings_of("postgres://u@h/db?sslmode=verify-ca&sslrootcert=/nonexistent/ca.pem").expect_err("file");
        assert!(e.message.contains("does not exist"), "{}", e.message);
        let e = settings_of("postgres://u@h/db?sslmode=secure").expect_err("unknown mode");
        assert!(e.message.contains("not a libpq sslmode"), "{}", e.message);
        let e = settings_of("postgres://u@h/db?sslcert=/tmp/c.pem").expect_err("no key");
        assert!(e.message.contains("has no key"), "{}", e.message);
    }

    #[test]
    fn a_root_certificate_makes_require_check_the_chain() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = dir.path().join("ca%20x.pem");
        std::fs::write(&ca, "").expect("write");
        let url =
            format!("postgres://u@h/db?sslmode=require&sslrootcert={}", dir.path().join("ca%2520x.pem").display());
        let s = settings_of(&url).expect("require with a root");
        assert_eq!(s.tls.check, Check::Chain);
        assert_eq!(s.tls.roots, Roots::File(ca));
    }

    #[test]
    fn nothing_unencrypted_leaves_the_machine_unless_disable_is_written() {
        for url in [
            "postgres://u@db.example.com/db",
            "postgres://u@10.0.0.5/db?sslmode=prefer",
            "postgres://u@10.0.0.5/db?sslmode=allow",
        ] {
            let s = settings_of(url).expect(url);
            assert_eq!(s.config.get_ssl_mode(), TpSslMode::Require, "{url}");
            assert!(s.off_machine && !s.tls_after_plain, "{url}");
        }
        let s = settings_of("postgres://u@db.example.com/db?sslmode=disable").expect("disable");
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Disable);
        // A loopback hostaddr is this machine, whatever the name.
        let s = settings_of("postgres://u@db.example.com/db?hostaddr=127.0.0.1").expect("hostaddr");
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Prefer);
        let s = settings_of("postgres://u@[::1]:5433/db").expect("v6");
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Prefer);
    }

    #[test]
    fn iam_authentication_requires_tls_and_no_password() {
        let s = settings_of("postgres://u@127.0.0.1/db?aws_iam_auth=true").expect("iam");
        assert!(s.iam);
        assert_eq!(s.config.get_ssl_mode(), TpSslMode::Require);
        assert!(s.config.get_password().is_none());
        let e = settings_of("postgres://u@h/db?aws_iam_auth=1&sslmode=disable").expect_err("plain");
        assert!(e.message.contains("needs TLS"), "{}", e.message);
        let e = settings_of("postgres://u:pw@h/db?aws_iam_auth=1").expect_err("both");
        assert!(e.message.contains("password"), "{}", e.message);
    }

    #[test]
    fn libpq_parameters_are_taken_out_and_decoded() {
        let (url, taken) =
            take_params("postgres://h/db?sslmode=verify-ca&application_name=x&sslrootcert=%2Ftmp%2Fa%20b.pem");
        assert_eq!(url, "postgres://h/db?application_name=x");
        assert_eq!(taken, vec![("sslmode".into(), "verify-ca".into()), ("sslrootcert".into(), "/tmp/a b.pem".into())]);
    }
}
