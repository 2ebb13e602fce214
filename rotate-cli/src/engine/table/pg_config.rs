//! How a PostgreSQL URL becomes a connection's settings, as libpq users
//! expect: the URL first, then `PGHOST`, `PGPORT`, `PGUSER`, `PGDATABASE`,
//! `PGPASSWORD`, and the password file (`PGPASSFILE` or `~/.pgpass`,
//! ignored when others may read it); and the URL without its password,
//! for journals and messages.

use std::str::FromStr;

use tokio_postgres::Config;
use tokio_postgres::config::{Host, SslMode};

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

/// The connection settings: the URL, then the libpq environment and password file.
pub(super) fn config(url: &str) -> Result<Config, Error> {
    let mut config = Config::from_str(url).map_err(|e| {
        Error::usage(format!("{} is not a PostgreSQL URL this build reads: {e}", redact_url(url)))
            .hint("write postgres://USER@HOST:PORT/DB (sslmode may be disable or prefer)")
    })?;
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let ssl_env = env("PGSSLMODE");
    let strict = matches!(config.get_ssl_mode(), SslMode::Require)
        || (!url.contains("sslmode=")
            && ssl_env.as_deref().is_some_and(|m| matches!(m, "require" | "verify-ca" | "verify-full")));
    if strict {
        return Err(Error::usage("sslmode=require: this build of rekey speaks PostgreSQL without TLS").hint(
            "connect over loopback or a Unix socket with sslmode=disable (or prefer), or through a local TLS tunnel",
        ));
    }
    if config.get_hosts().is_empty() {
        match env("PGHOST") {
            Some(h) => {
                config.host(h.split(',').next().unwrap_or(&h));
            }
            None if std::path::Path::new("/var/run/postgresql").is_dir() => {
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
    if config.get_password().is_none() {
        if let Some(p) = env("PGPASSWORD") {
            config.password(p);
        } else if let Some(p) = pgpass(&config) {
            config.password(p);
        }
    }
    config.application_name("rekey");
    Ok(config)
}

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

    #[test]
    fn require_is_refused_not_downgraded() {
        let e = config("postgres://u@127.0.0.1/db?sslmode=require").expect_err("refused");
        assert!(e.message.contains("without TLS"), "{}", e.message);
    }
}
