//! The `rekey` binary's everyday commands with the local keystore: real
//! process, real files, exact exit codes and the words a person reads.

mod common;

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().expect("tempdir") }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Output {
        let mut child = Command::new(common::Env::bin())
            .args(args)
            .current_dir(self.dir.path())
            .env("REKEY_KEYSTORE", self.path("keys"))
            .env("HOME", self.path("home"))
            .env_remove("XDG_DATA_HOME")
            .env_remove("RUST_LOG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rekey");
        child.stdin.take().expect("stdin").write_all(stdin).expect("write stdin");
        child.wait_with_output().expect("wait")
    }

    fn run(&self, args: &[&str]) -> Output {
        self.run_with_stdin(args, b"")
    }

    fn ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(out.status.success(), "rekey {args:?}: {}", stderr(&out));
        out
    }

    /// Runs a failing command and checks its exit code; returns stderr.
    fn fails(&self, args: &[&str], code: i32) -> String {
        let out = self.run(args);
        assert_eq!(out.status.code(), Some(code), "rekey {args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty() || code == 2, "nothing on stdout on failure");
        let err = stderr(&out);
        assert!(!err.contains("panicked"), "{err}");
        err
    }

    fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn with_key(name: &str) -> Env {
    let env = Env::new();
    let out = env.ok(&["keys", "create", name]);
    assert!(stdout(&out).contains(&format!("use it as --key local:{name}")));
    env
}

#[test]
fn keys_create_list_rotate() {
    let env = with_key("orders");
    env.ok(&["keys", "create", "billing"]);
    let list = stdout(&env.ok(&["keys", "list"]));
    assert!(list.contains("billing") && list.contains("local:orders"), "{list}");
    let json: serde_json::Value = serde_json::from_slice(&env.ok(&["keys", "list", "--json"]).stdout).expect("json");
    assert_eq!(json[1]["name"], "orders");
    assert_eq!(json[1]["latest_version"], 1);
    assert!(stdout(&env.ok(&["keys", "rotate", "orders"])).contains("version 2"));
    let err = env.fails(&["keys", "create", "orders"], 2);
    assert!(err.contains("already exists") && err.contains("rekey keys rotate orders"), "{err}");
    let err = env.fails(&["keys", "rotate", "missing"], 4);
    assert!(err.contains("rekey keys create missing"), "{err}");
}

#[test]
fn the_default_keystore_is_under_home() {
    let env = Env::new();
    let out = Command::new(common::Env::bin())
        .args(["keys", "create", "k"])
        .env_remove("REKEY_KEYSTORE")
        .env_remove("XDG_DATA_HOME")
        .env("HOME", env.path("home"))
        .output()
        .expect("run");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(env.path("home/.local/share/rekey/keys/k.key").exists());
}

#[test]
fn round_trips_binary_text_lines_and_stdin() {
    let env = with_key("demo");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    std::fs::write(env.path("big.bin"), &big).expect("write");
    env.ok(&["encrypt", "--key", "local:demo", "-c", "app=test", "big.bin", "-o", "big.rky"]);
    env.ok(&["decrypt", "-c", "app=test", "big.rky", "-o", "big.out"]);
    assert_eq!(std::fs::read(env.path("big.out")).expect("read"), big);

    let out = env.run_with_stdin(&["encrypt", "--key", "local:demo", "--text"], b"a secret");
    let text = stdout(&out);
    assert!(text.starts_with("UktZ") && text.ends_with('\n'), "{text}");
    let plain = env.run_with_stdin(&["decrypt"], text.as_bytes());
    assert_eq!(plain.stdout, b"a secret");

    let lines = "alice\n\nbob 😀\n한국어\n";
    std::fs::write(env.path("lines.txt"), lines).expect("write");
    env.ok(&["encrypt", "--key", "local:demo", "--lines", "lines.txt", "-o", "lines.enc"]);
    assert_eq!(std::fs::read_to_string(env.path("lines.enc")).expect("read").lines().count(), 4);
    env.ok(&["decrypt", "--lines", "lines.enc", "-o", "lines.out"]);
    assert_eq!(std::fs::read_to_string(env.path("lines.out")).expect("read"), lines);
}

#[test]
fn several_keys_each_decrypt_and_rotation_keeps_old_versions() {
    let env = with_key("a");
    env.ok(&["keys", "create", "b"]);
    std::fs::write(env.path("p.txt"), "both").expect("write");
    env.ok(&["encrypt", "--key", "local:a", "--key", "local:b", "p.txt", "-o", "p.rky"]);
    for key in ["local:a", "local:b"] {
        assert_eq!(env.ok(&["decrypt", "--key", key, "p.rky"]).stdout, b"both");
    }
    env.ok(&["keys", "rotate", "a"]);
    assert_eq!(env.ok(&["decrypt", "--key", "local:a", "p.rky"]).stdout, b"both", "version 1 still decrypts");
}

#[test]
fn inspect_tells_what_an_input_is() {
    let env = with_key("demo");
    std::fs::write(env.path("p.txt"), "x").expect("write");
    env.ok(&["encrypt", "--key", "local:demo", "-c", "tenant=acme", "p.txt", "-o", "p.rky"]);
    let text = stdout(&env.ok(&["inspect", "p.rky"]));
    for want in ["format version 1", "framed, 65536 bytes per frame", "tenant=acme", "rekey-local: demo/v1"] {
        assert!(text.contains(want), "{want}: {text}");
    }
    let json: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", "--json", "p.rky"]).stdout).expect("json");
    assert_eq!(json["encrypted_data_keys"][0]["key_id"], "demo/v1");
    assert_eq!(json["context"]["tenant"], "acme");

    let key = envelope_core::DataKey::from_bytes([1; 32]);
    let legacy =
        envelope_core::legacy::encrypt_legacy_record_for_fixtures(&key, b"0123456789abcdef", "hi", Default::default());
    std::fs::write(env.path("legacy.txt"), legacy).expect("write");
    let json: serde_json::Value =
        serde_json::from_slice(&env.ok(&["inspect", "--json", "legacy.txt"]).stdout).expect("json");
    assert_eq!(json["format"], "legacy-cbc");

    let vector =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../envelope-core/tests/data/esdk/0178_frame4096_64.bin");
    std::fs::copy(vector, env.path("esdk.bin")).expect("copy");
    let shown = stdout(&env.ok(&["inspect", "esdk.bin"]));
    assert!(shown.contains("AWS Encryption SDK message, format version 1"), "{shown}");
    assert!(shown.contains("[no key commitment, unsigned]"), "{shown}");
    // Only the start of a message's header: malformed input.
    std::fs::write(env.path("esdk.bin"), b"\x02\x05\x78rest of an ESDK message").expect("write");
    env.fails(&["inspect", "esdk.bin"], 1);
    std::fs::write(env.path("garbage"), "hello world").expect("write");
    env.fails(&["inspect", "garbage"], 1);
}

#[test]
fn every_bad_input_is_a_clear_error_with_its_exit_code() {
    let env = with_key("demo");
    std::fs::write(env.path("p.txt"), "secret text").expect("write");
    env.ok(&["encrypt", "--key", "local:demo", "-c", "app=x", "p.txt", "-o", "p.rky"]);
    let good = std::fs::read(env.path("p.rky")).expect("read");

    let err = env.fails(&["decrypt", "missing.rky"], 4);
    assert!(err.contains("cannot open missing.rky"), "{err}");

    std::fs::write(env.path("truncated.rky"), &good[..good.len() - 20]).expect("write");
    let err = env.fails(&["decrypt", "truncated.rky", "-o", "out"], 1);
    assert!(err.contains("truncated"), "{err}");

    std::fs::write(env.path("garbage.rky"), "this is not an envelope").expect("write");
    assert!(env.fails(&["decrypt", "garbage.rky", "-o", "out"], 1).contains("not a rekey envelope"));
    std::fs::write(env.path("empty.rky"), "").expect("write");
    assert!(env.fails(&["decrypt", "empty.rky", "-o", "out"], 1).contains("empty"));

    let mut tampered = good.clone();
    let at = tampered.len() - 5;
    tampered[at] ^= 1;
    std::fs::write(env.path("tampered.rky"), &tampered).expect("write");
    assert!(env.fails(&["decrypt", "tampered.rky", "-o", "out"], 3).contains("authentication failed"));

    env.ok(&["keys", "create", "other"]);
    let err = env.fails(&["decrypt", "--key", "local:other", "p.rky", "-o", "out"], 3);
    assert!(err.contains("rekey-local:demo/v1"), "names the key it was made for: {err}");

    let err = env.fails(&["decrypt", "-c", "app=y", "p.rky", "-o", "out"], 3);
    assert!(err.contains("\"app\""), "{err}");

    assert!(env.fails(&["encrypt", "--key", "local:demo", "-c", "novalue", "p.txt"], 2).contains("KEY=VALUE"));
    assert!(env.fails(&["encrypt", "--key", "vault:x", "p.txt"], 2).contains("local:NAME or kms:KEY"));
    assert!(env.fails(&["encrypt", "--key", "local:nope", "p.txt"], 4).contains("does not exist"));

    // No failure left an output or a temporary file behind.
    assert!(!env.files().iter().any(|f| f == "out" || f.contains("rekey-tmp")), "{:?}", env.files());
}

#[test]
fn outputs_are_never_half_written() {
    let env = with_key("demo");
    std::fs::write(env.path("p.txt"), "secret").expect("write");
    env.ok(&["encrypt", "--key", "local:demo", "p.txt", "-o", "p.rky"]);
    std::fs::write(env.path("existing"), "keep me").expect("write");
    let err = env.fails(&["encrypt", "--key", "local:demo", "p.txt", "-o", "existing"], 4);
    assert!(err.contains("--force"), "{err}");
    assert_eq!(std::fs::read_to_string(env.path("existing")).expect("read"), "keep me");

    // A failing decrypt with --force leaves the existing output untouched.
    let good = std::fs::read(env.path("p.rky")).expect("read");
    let mut tampered = good.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    std::fs::write(env.path("bad.rky"), tampered).expect("write");
    env.fails(&["decrypt", "--force", "bad.rky", "-o", "existing"], 3);
    assert_eq!(std::fs::read_to_string(env.path("existing")).expect("read"), "keep me");
    assert!(!env.files().iter().any(|f| f.contains("rekey-tmp")), "{:?}", env.files());
    env.ok(&["decrypt", "--force", "p.rky", "-o", "existing"]);
    assert_eq!(std::fs::read_to_string(env.path("existing")).expect("read"), "secret");
    let mode = std::fs::metadata(env.path("existing")).expect("stat").permissions().mode();
    assert_eq!(mode & 0o077, 0, "decrypted output is private");
}

#[test]
fn keystore_problems_are_reported_with_the_fix() {
    let env = with_key("demo");
    std::fs::write(env.path("p.txt"), "x").expect("write");
    let key_file = env.path("keys/demo.key");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let err = env.fails(&["encrypt", "--key", "local:demo", "p.txt"], 4);
    assert!(err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).expect("chmod");

    std::fs::write(&key_file, "rekey-keystore-file v1\nname demo\nversion 1 created 0 not-base64\n").expect("write");
    let err = env.fails(&["encrypt", "--key", "local:demo", "p.txt"], 2);
    assert!(err.contains("malformed"), "{err}");
    assert!(!err.contains("not-base64"), "key material is never echoed: {err}");

    std::fs::remove_dir_all(env.path("keys")).expect("rm");
    std::fs::write(env.path("keys"), "a file where the keystore should be").expect("write");
    env.fails(&["keys", "list"], 4);
}

#[test]
fn help_completions_and_man_page() {
    let env = Env::new();
    let help = stdout(&env.ok(&["--help"]));
    assert!(help.contains("Exit codes:") && help.contains("3  authentication failed"), "{help}");
    for command in ["encrypt", "decrypt", "inspect", "rewrap", "reencrypt"] {
        assert!(stdout(&env.ok(&[command, "--help"])).contains("Examples:"), "{command}");
    }
    assert!(stdout(&env.ok(&["completions", "bash"])).contains("rekey"));
    assert!(stdout(&env.ok(&["man"])).contains(".TH"));
    env.fails(&["no-such-command"], 2);
}
