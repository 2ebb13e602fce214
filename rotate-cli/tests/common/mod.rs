//! The harness every CLI test shares: a temporary directory with its own
//! keystore, the real `rekey` binary run in it, and helpers to make and read
//! envelopes. `REKEY_BIN` runs the tests against another build (to watch an
//! attack succeed on an older binary before the fix).
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use envelope_core::{Keystore, LocalKeyring};

use envelope_core::hazmat::{Envelope, ParseOptions, decode_text};

/// A variable `scripts/test.sh` sets for the tests that need its servers;
/// without it those tests stop with the command that provides them.
fn set_by_test_sh(name: &str, needs: &str) -> String {
    std::env::var(name)
        .unwrap_or_else(|_| panic!("{name} is not set: these tests need {needs}; run `bash scripts/test.sh`"))
}

/// The local KMS and S3 server's endpoint.
pub fn endpoint() -> String {
    set_by_test_sh("REKEY_TEST_ENDPOINT", "the local KMS and S3 server")
}

/// The Python that runs the fixture scripts (with boto3).
pub fn python() -> String {
    set_by_test_sh("REKEY_TEST_PYTHON", "the Python environment with boto3")
}

/// The PostgreSQL server's URL.
pub fn pg_url() -> String {
    set_by_test_sh("REKEY_TEST_PG_URL", "PostgreSQL")
}

/// A fresh database for one test, dropped and created through the admin URL.
pub fn pg_database(name: &str) -> String {
    let admin = pg_url();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    rt.block_on(async {
        let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls).await.expect("connect");
        tokio::spawn(conn);
        client.batch_execute(&format!("DROP DATABASE IF EXISTS {name}")).await.expect("drop");
        client.batch_execute(&format!("CREATE DATABASE {name}")).await.expect("create");
    });
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("REKEY_TEST_PG_URL needs a database path"),
    }
}

/// An admin connection (plain, as the superuser rekey) for making and reading test tables.
pub struct Pg {
    pub rt: tokio::runtime::Runtime,
    pub client: tokio_postgres::Client,
}

impl Pg {
    pub fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let client = rt.block_on(async {
            let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect");
            tokio::spawn(conn);
            client
        });
        Self { rt, client }
    }

    pub fn exec(&self, sql: &str) {
        self.rt.block_on(self.client.batch_execute(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Every row as text, in id order.
    pub fn snapshot(&self, table: &str) -> Vec<Vec<Option<String>>> {
        let rows =
            self.rt.block_on(self.client.query(&format!("SELECT * FROM {table} ORDER BY 1"), &[])).expect("select");
        rows.iter()
            .map(|r| {
                (0..r.len())
                    .map(|i| {
                        r.try_get::<_, Option<String>>(i)
                            .or_else(|_| r.try_get::<_, Option<i64>>(i).map(|v| v.map(|v| v.to_string())))
                            .or_else(|_| r.try_get::<_, Option<i32>>(i).map(|v| v.map(|v| v.to_string())))
                            .expect("text or integer")
                    })
                    .collect()
            })
            .collect()
    }
}

/// The TLS side of the test cluster (`scripts/postgres.sh`): its CA,
/// another CA, the client certificate of the role `rekey_cert`, and the
/// password of `rekey_tls`; both roles may connect only over TLS.
pub struct PgTls {
    pub port: String,
    pub ca: String,
    pub other_ca: String,
    pub cert: String,
    pub key: String,
    pub password: String,
}

pub fn pg_tls() -> PgTls {
    let needs = "PostgreSQL with TLS";
    let url = pg_url();
    let port = url
        .split_once("127.0.0.1:")
        .and_then(|(_, rest)| rest.split('/').next())
        .unwrap_or_else(|| panic!("REKEY_TEST_PG_URL names no 127.0.0.1 port: {url}"))
        .to_owned();
    PgTls {
        port,
        ca: set_by_test_sh("REKEY_TEST_PG_TLS_CA", needs),
        other_ca: set_by_test_sh("REKEY_TEST_PG_TLS_OTHER_CA", needs),
        cert: set_by_test_sh("REKEY_TEST_PG_TLS_CERT", needs),
        key: set_by_test_sh("REKEY_TEST_PG_TLS_KEY", needs),
        password: set_by_test_sh("REKEY_TEST_PG_TLS_PASSWORD", needs),
    }
}

impl PgTls {
    /// `postgres://USERINFO@HOST:PORT/DB?QUERY`.
    pub fn url(&self, userinfo: &str, host: &str, db: &str, query: &str) -> String {
        format!("postgres://{userinfo}@{host}:{}/{db}?{query}", self.port)
    }

    /// The password role `rekey_tls` with its password.
    pub fn tls_user(&self) -> String {
        format!("rekey_tls:{}", self.password)
    }
}

/// The MariaDB server's URL (`scripts/mariadb.sh`), with the password of the user rekey.
pub fn mysql_url() -> String {
    set_by_test_sh("REKEY_TEST_MYSQL_URL", "MariaDB")
}

/// A fresh MariaDB database for one test; its URL.
pub fn mysql_database(name: &str) -> String {
    let admin = mysql_url();
    let my = My::connect(&admin);
    my.exec(&format!("DROP DATABASE IF EXISTS `{name}`; CREATE DATABASE `{name}`"));
    match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("REKEY_TEST_MYSQL_URL needs a database path"),
    }
}

/// The MariaDB server's TLS side: its CA, a CA that signed nothing there, and
/// the password of `rekey_tls` (a user created with REQUIRE SSL).
pub struct MyTls {
    pub ca: String,
    pub other_ca: String,
    pub password: String,
}

pub fn mysql_tls() -> MyTls {
    let needs = "MariaDB with TLS";
    MyTls {
        ca: set_by_test_sh("REKEY_TEST_MYSQL_TLS_CA", needs),
        other_ca: set_by_test_sh("REKEY_TEST_MYSQL_TLS_OTHER_CA", needs),
        password: set_by_test_sh("REKEY_TEST_MYSQL_TLS_PASSWORD", needs),
    }
}

/// An admin connection (as the user rekey) for making and reading test tables.
pub struct My {
    pub rt: tokio::runtime::Runtime,
    pub conn: std::cell::RefCell<mysql_async::Conn>,
}

impl My {
    pub fn connect(url: &str) -> Self {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let opts = mysql_async::Opts::from_url(url).expect("MySQL URL");
        let opts = mysql_async::OptsBuilder::from_opts(opts).prefer_socket(false);
        let conn = rt.block_on(mysql_async::Conn::new(opts)).expect("connect to MariaDB");
        Self { rt, conn: std::cell::RefCell::new(conn) }
    }

    /// Runs statements (separated by `;`) through the text protocol.
    pub fn exec(&self, sql: &str) {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn.borrow_mut();
        self.rt.block_on(conn.query_drop(sql)).unwrap_or_else(|e| panic!("{sql}: {e}"));
    }

    /// Runs one statement with parameters.
    pub fn exec_with(&self, sql: &str, params: Vec<mysql_async::Value>) -> u64 {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn.borrow_mut();
        self.rt.block_on(conn.exec_drop(sql, params)).unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.affected_rows()
    }

    /// Every row of `table`, every column as the bytes stored (integers as decimal text), in order of the first column.
    pub fn snapshot(&self, table: &str) -> Vec<Vec<Option<Vec<u8>>>> {
        use mysql_async::prelude::Queryable;
        let mut conn = self.conn.borrow_mut();
        let rows: Vec<mysql_async::Row> =
            self.rt.block_on(conn.query(format!("SELECT * FROM {table} ORDER BY 1"))).expect("select");
        rows.into_iter()
            .map(|r| {
                r.unwrap()
                    .into_iter()
                    .map(|v| match v {
                        mysql_async::Value::NULL => None,
                        mysql_async::Value::Bytes(b) => Some(b),
                        other => panic!("the text protocol gave {other:?}"),
                    })
                    .collect()
            })
            .collect()
    }
}

/// A script of `scripts/interop` (fixtures, fault and recording proxies).
pub fn interop_script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/interop").join(name)
}

/// A scratch directory with a keystore, where `rekey` runs.
pub struct Env {
    pub dir: tempfile::TempDir,
}

impl Env {
    /// A new directory whose keystore holds local keys named `keys`.
    pub fn with_keys(keys: &[&str]) -> Self {
        let env = Self { dir: tempfile::tempdir().expect("tempdir") };
        for key in keys {
            env.ok(&["keys", "create", key]);
        }
        env
    }

    pub fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub fn bin() -> PathBuf {
        std::env::var_os("REKEY_BIN").map_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_rekey")), PathBuf::from)
    }

    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(Self::bin());
        cmd.args(args)
            .current_dir(self.dir.path())
            .env("REKEY_KEYSTORE", self.path("keys"))
            .env_remove("RUST_LOG")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("run rekey")
    }

    pub fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "rekey {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        out
    }

    /// Runs a command that must fail with `code`; returns its stderr.
    pub fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {stderr}");
        stderr
    }

    /// The JSON summary a command printed on stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let out = self.ok(args);
        serde_json::from_slice(&out.stdout).expect("json summary")
    }

    pub fn keyring(&self, name: &str) -> LocalKeyring {
        LocalKeyring::new(Keystore::new(self.path("keys")).load(name).expect("key"))
    }

    pub fn encrypt(&self, key: &str, plaintext: &[u8], context: &str, out: &Path, text: bool) {
        let mut args = vec!["encrypt", "--key", key, "--context", context, "-o", out.to_str().expect("utf-8")];
        if text {
            args.push("--text");
        }
        let mut child =
            self.cmd(&args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        std::io::Write::write_all(&mut child.stdin.take().expect("stdin"), plaintext).expect("write");
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Decrypts through the binary, allowing only `keys`.
    pub fn decrypt(&self, file: &Path, keys: &[&str]) -> Result<Vec<u8>, String> {
        let mut args = vec!["decrypt".to_owned(), file.to_string_lossy().into_owned()];
        for k in keys {
            args.push("--key".into());
            args.push((*k).into());
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = self.run(&args);
        if out.status.success() { Ok(out.stdout) } else { Err(String::from_utf8_lossy(&out.stderr).into_owned()) }
    }

    /// Decrypts in process with every local key (fast, for big checks).
    pub fn decrypt_quick(&self, file: &Path) -> Option<Vec<u8>> {
        let keyring = LocalKeyring::with_allowed(None, Keystore::new(self.path("keys")).load_all().ok()?);
        let raw = std::fs::read(file).ok()?;
        let bytes = if raw.starts_with(b"RKY") { raw } else { decode_text(std::str::from_utf8(&raw).ok()?).ok()? };
        let envelope = Envelope::parse(&bytes, &ParseOptions::default()).ok()?;
        let header = envelope.header();
        for edk in &header.encrypted_data_keys {
            if let Ok(key) = keyring.unwrap_sync(std::slice::from_ref(edk), &header.context)
                && let Ok(plain) = envelope.open(&key)
            {
                return Some(plain.to_vec());
            }
        }
        None
    }

    /// Decrypts a text envelope with every local key: plaintext and key ids.
    pub fn open_text(&self, text: &str) -> (Vec<u8>, Vec<String>) {
        let keyring = LocalKeyring::with_allowed(None, Keystore::new(self.path("keys")).load_all().expect("keys"));
        let bytes = decode_text(text).expect("base64");
        let envelope = Envelope::parse(&bytes, &ParseOptions::default()).expect("envelope");
        let header = envelope.header();
        let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).expect("unwrap");
        let ids = header.encrypted_data_keys.iter().map(|e| e.key_id().to_owned()).collect();
        (envelope.open(&key).expect("open").to_vec(), ids)
    }

    /// A directory of `n` envelopes under `local:old`; returns file name → plaintext.
    pub fn vault(&self, n: usize) -> BTreeMap<String, Vec<u8>> {
        std::fs::create_dir_all(self.path("vault/sub")).expect("mkdir");
        let mut plaintexts = BTreeMap::new();
        for i in 0..n {
            let name = if i % 3 == 0 { format!("sub/item{i:05}.rky") } else { format!("item{i:05}.rky") };
            let plaintext = format!("record {i}: {}", "x".repeat(i % 50)).into_bytes();
            self.encrypt("local:old", &plaintext, &format!("n={i}"), &self.path(&format!("vault/{name}")), i % 2 == 0);
            plaintexts.insert(name, plaintext);
        }
        plaintexts
    }

    /// Every file under `dir`: relative name → bytes.
    pub fn snapshot(&self, dir: &str) -> BTreeMap<String, Vec<u8>> {
        let root = self.path(dir);
        walk(&root)
            .into_iter()
            .map(|p| {
                (p.strip_prefix(&root).expect("under root").display().to_string(), std::fs::read(&p).expect("read"))
            })
            .collect()
    }

    /// The key ids an envelope file names, as `inspect` reports them.
    pub fn key_ids(&self, file: &Path) -> Vec<String> {
        let out = self.ok(&["inspect", "--json", file.to_str().expect("utf-8")]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        v["encrypted_data_keys"]
            .as_array()
            .expect("array")
            .iter()
            .map(|e| e["key_id"].as_str().expect("str").to_owned())
            .collect()
    }
}

/// Every file under `dir`, sorted.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

impl Env {
    /// Seals `plaintext` in process under local key `key` with `context`
    /// pairs (a fresh data key each time): binary form.
    pub fn seal_local(&self, key: &str, context: &[(&str, &str)], plaintext: &[u8]) -> Vec<u8> {
        let context = envelope_core::EncryptionContext::from_pairs(context.iter().copied()).expect("context");
        let keyring = self.keyring(key);
        let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
        let materials = envelope_core::hazmat::Materials { data_key, encrypted_data_keys: vec![edk] };
        envelope_core::hazmat::seal(&materials, &context, plaintext).expect("seal")
    }

    /// Opens an envelope (binary or text form) allowing only the local keys
    /// `keys`: the plaintext and the envelope's context pairs.
    pub fn open_with(&self, item: &[u8], keys: &[&str]) -> Result<(Vec<u8>, BTreeMap<String, String>), String> {
        let store = Keystore::new(self.path("keys"));
        let allowed = keys.iter().map(|k| store.load(k).map_err(|e| e.to_string())).collect::<Result<Vec<_>, _>>()?;
        let keyring = LocalKeyring::with_allowed(None, allowed);
        let bytes = if item.starts_with(b"RKY") {
            item.to_vec()
        } else {
            decode_text(std::str::from_utf8(item).map_err(|e| e.to_string())?).map_err(|e| e.to_string())?
        };
        let envelope = Envelope::parse(&bytes, &ParseOptions::default()).map_err(|e| e.to_string())?;
        let header = envelope.header();
        let key = keyring.unwrap_sync(&header.encrypted_data_keys, &header.context).map_err(|e| e.to_string())?;
        let plain = envelope.open(&key).map_err(|e| e.to_string())?.to_vec();
        let context = header.context.iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Ok((plain, context))
    }
}
