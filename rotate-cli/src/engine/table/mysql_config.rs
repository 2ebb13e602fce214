//! MySQL and MariaDB connection settings, as the `mysql` client reads them.
//!
//! `mysql://USER[:PASSWORD]@HOST[:PORT]/DB?ssl-mode=...&ssl-ca=...` with
//! the client's `ssl-mode` (DISABLED, PREFERRED, REQUIRED, VERIFY_CA,
//! VERIFY_IDENTITY), `ssl-ca`, `ssl-cert` and `ssl-key`. What the URL
//! leaves out comes from an option file (`defaults-file=PATH` in the URL,
//! else `~/.my.cnf`; its `[client]` and `[rekey]` groups), and the password
//! last from `MYSQL_PWD`. The password is never part of an error, a log line
//! or the journal (which keeps [`super::redact_url`]'s form).

use std::path::{Path, PathBuf};

use super::pg_config::redact_url;
use crate::engine::error::Error;

/// MySQL's `ssl-mode`, weakest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum SslMode {
    Disabled,
    Preferred,
    Required,
    VerifyCa,
    VerifyIdentity,
}

impl SslMode {
    fn parse(text: &str) -> Option<Self> {
        Some(match text.to_ascii_uppercase().replace('-', "_").as_str() {
            "DISABLED" => Self::Disabled,
            "PREFERRED" => Self::Preferred,
            "REQUIRED" => Self::Required,
            "VERIFY_CA" => Self::VerifyCa,
            "VERIFY_IDENTITY" => Self::VerifyIdentity,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Self::Disabled => "DISABLED",
            Self::Preferred => "PREFERRED",
            Self::Required => "REQUIRED",
            Self::VerifyCa => "VERIFY_CA",
            Self::VerifyIdentity => "VERIFY_IDENTITY",
        }
    }
}

/// Where and how to connect. The password is kept out of `Debug`.
#[derive(Clone)]
pub(super) struct MysqlConfig {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) user: String,
    pub(super) password: Option<String>,
    pub(super) database: Option<String>,
    pub(super) mode: SslMode,
    /// Whether `ssl-mode` was written (in the URL or an option file).
    pub(super) mode_written: bool,
    pub(super) ca: Option<PathBuf>,
    pub(super) cert: Option<PathBuf>,
    pub(super) key: Option<PathBuf>,
    /// Where the password came from, for error hints.
    pub(super) password_source: &'static str,
}

impl std::fmt::Debug for MysqlConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("database", &self.database)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl MysqlConfig {
    /// Whether the host is this machine (where an unencrypted connection is acceptable).
    pub(super) fn is_loopback(&self) -> bool {
        self.host == "localhost"
            || self.host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
            || self.host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }
}

fn percent_decode(text: &str, what: &str, url: &str) -> Result<String, Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            let Some(byte) = hex else {
                return Err(Error::usage(format!("the {what} in {} has a bad %-escape", redact_url(url)))
                    .hint("write a literal % as %25"));
            };
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| Error::usage(format!("the {what} in {} is not UTF-8", redact_url(url))))
}

/// `key = value` pairs of the `[client]` and `[rekey]` groups of an option file.
fn option_file(path: &Path) -> Result<Vec<(String, String)>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::usage(format!("cannot read the option file {}: {e}", path.display()))
            .hint("name a readable file with defaults-file=PATH in the URL")
    })?;
    let mut out = Vec::new();
    let mut in_group = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(group) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_group = matches!(group.trim(), "client" | "rekey");
            continue;
        }
        if !in_group {
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or((line, ""));
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        out.push((key.trim().replace('_', "-"), value.to_owned()));
    }
    Ok(out)
}

/// Reads a `mysql://` URL, then the option file and `MYSQL_PWD` for what it leaves out.
pub(super) fn parse(url: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<MysqlConfig, Error> {
    let bad = |why: &str| {
        Error::usage(format!("{} is not a MySQL URL: {why}", redact_url(url)))
            .hint("write mysql://USER[:PASSWORD]@HOST[:PORT]/DB?ssl-mode=VERIFY_IDENTITY&ssl-ca=CA.pem")
    };
    let rest =
        url.strip_prefix("mysql://").or_else(|| url.strip_prefix("mariadb://")).ok_or_else(|| bad("no mysql://"))?;
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, authority),
    };
    let (url_user, url_password) = match userinfo {
        Some(u) => match u.split_once(':') {
            Some((user, pass)) => {
                (Some(percent_decode(user, "user", url)?), Some(percent_decode(pass, "password", url)?))
            }
            None => (Some(percent_decode(u, "user", url)?), None),
        },
        None => (None, None),
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(|| bad("an IPv6 host needs its closing ]"))?;
        (h.to_owned(), after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (hostport.to_owned(), None),
        }
    };
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad(&format!("port {p:?} is not a number from 1 to 65535")))?,
        None => 3306,
    };
    let mut params = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        params.push((k.replace('_', "-").to_ascii_lowercase(), percent_decode(v, "query", url)?));
    }
    for (k, _) in &params {
        if !matches!(k.as_str(), "ssl-mode" | "ssl-ca" | "ssl-cert" | "ssl-key" | "defaults-file" | "password") {
            return Err(bad(&format!("unknown parameter {k:?}"))
                .hint("the parameters are ssl-mode, ssl-ca, ssl-cert, ssl-key and defaults-file"));
        }
    }
    let param = |k: &str| params.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let defaults_file = param("defaults-file")
        .map(PathBuf::from)
        .or_else(|| lookup("HOME").map(|h| Path::new(&h).join(".my.cnf")).filter(|p| p.is_file()));
    let options = match &defaults_file {
        Some(path) => option_file(path)?,
        None => Vec::new(),
    };
    let option = |k: &str| options.iter().rev().find(|(key, _)| key == k).map(|(_, v)| v.clone());
    let setting = |k: &str| param(k).filter(|v| !v.is_empty()).or_else(|| option(k).filter(|v| !v.is_empty()));

    let written_mode = setting("ssl-mode");
    let mode = match written_mode.as_deref() {
        Some(m) => SslMode::parse(m).ok_or_else(|| {
            Error::usage(format!("ssl-mode={m} is not a MySQL ssl-mode"))
                .hint("ssl-mode is DISABLED, PREFERRED, REQUIRED, VERIFY_CA or VERIFY_IDENTITY")
        })?,
        None => SslMode::Preferred,
    };
    let ca = setting("ssl-ca").map(PathBuf::from);
    let (cert, key) = (setting("ssl-cert").map(PathBuf::from), setting("ssl-key").map(PathBuf::from));
    if mode >= SslMode::VerifyCa && ca.is_none() {
        return Err(Error::usage(format!(
            "ssl-mode={} needs the CA that signed the server's certificate",
            mode.name()
        ))
        .hint("add ssl-ca=PATH to the URL (for RDS and Aurora, the RDS CA bundle global-bundle.pem)"));
    }
    if cert.is_some() != key.is_some() {
        return Err(Error::usage("a client certificate needs both ssl-cert and ssl-key"));
    }
    if mode == SslMode::Disabled && (ca.is_some() || cert.is_some()) {
        return Err(Error::usage("ssl-mode=DISABLED with ssl-ca or ssl-cert: the certificates would not be used")
            .hint("drop ssl-mode=DISABLED to connect over TLS"));
    }
    for (what, path) in [("ssl-ca", &ca), ("ssl-cert", &cert), ("ssl-key", &key)] {
        if let Some(path) = path
            && !path.is_file()
        {
            return Err(Error::usage(format!("{what} names {}, which is not a readable file", path.display())));
        }
    }
    let (password, password_source) = match (url_password, param("password"), option("password"), lookup("MYSQL_PWD")) {
        (Some(p), _, _, _) | (None, Some(p), _, _) => (Some(p), "the URL"),
        (None, None, Some(p), _) => (Some(p), "the option file"),
        (None, None, None, Some(p)) => (Some(p), "MYSQL_PWD"),
        (None, None, None, None) => (None, "nowhere (no password)"),
    };
    let user = url_user
        .filter(|u| !u.is_empty())
        .or_else(|| option("user"))
        .or_else(|| lookup("USER"))
        .ok_or_else(|| bad("no user"))?;
    let host = if host.is_empty() { option("host").unwrap_or_else(|| "localhost".into()) } else { host };
    let database = Some(percent_decode(path, "database", url)?).filter(|d| !d.is_empty());
    Ok(MysqlConfig {
        host,
        port,
        user,
        password,
        database,
        mode,
        mode_written: written_mode.is_some(),
        ca,
        cert,
        key,
        password_source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let vars: Vec<(String, String)> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        move |k| vars.iter().find(|(key, _)| key == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn url_parts_and_modes_are_read_as_the_mysql_client_reads_them() {
        let c =
            parse("mysql://app:p%40ss@db.example.com:3307/shop?ssl-mode=verify_identity&ssl_ca=/dev/null", &env(&[]));
        // /dev/null is not a regular file: refused before any connection.
        assert!(c.is_err());
        let c = parse("mysql://app:p%40ss@db.example.com:3307/shop?ssl-mode=REQUIRED", &env(&[])).expect("parses");
        assert_eq!((c.host.as_str(), c.port, c.user.as_str()), ("db.example.com", 3307, "app"));
        assert_eq!((c.password.as_deref(), c.database.as_deref()), (Some("p@ss"), Some("shop")));
        assert_eq!(c.mode, SslMode::Required);
        assert!(!format!("{c:?}").contains("p@ss"), "no password in Debug output");
        let c = parse("mysql://app@127.0.0.1/shop", &env(&[("MYSQL_PWD", "from-env")])).expect("parses");
        assert_eq!((c.password.as_deref(), c.port, c.mode), (Some("from-env"), 3306, SslMode::Preferred));
        assert!(c.is_loopback() && !c.mode_written);
        let e = parse("mysql://app@h/db?ssl-mode=VERIFY_CA", &env(&[])).expect_err("needs a CA");
        assert!(e.to_string().contains("needs the CA"), "{e}");
        let e = parse("mysql://app:secret@h/db?sslmode=x", &env(&[])).expect_err("unknown parameter");
        assert!(!e.to_string().contains("secret"), "{e}");
    }

    #[test]
    fn an_option_file_gives_what_the_url_leaves_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("my.cnf");
        std::fs::write(&file, "[mysqld]\npassword=server\n[client]\npassword = \"from file\"\nssl_mode=DISABLED\n")
            .expect("write");
        let url = format!("mysql://app@127.0.0.1/db?defaults-file={}", file.display());
        let c = parse(&url, &env(&[("MYSQL_PWD", "env")])).expect("parses");
        assert_eq!((c.password.as_deref(), c.mode, c.mode_written), (Some("from file"), SslMode::Disabled, true));
        let c = parse(&format!("mysql://app:url@127.0.0.1/db?defaults-file={}", file.display()), &env(&[]))
            .expect("parses");
        assert_eq!(c.password.as_deref(), Some("url"), "the URL wins");
    }
}
