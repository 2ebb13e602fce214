//! The CLI as a person meets it (issue 14): closed pipes, the demo,
//! directories, byte-exact `--lines`, terminals (under a pseudo-terminal
//! made by util-linux `script`), logs, inspect, man pages and help. The
//! real binary, exact output where a person reads it.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::Env;

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn write(env: &Env, path: &str, content: &[u8]) {
    let path = env.path(path);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, content).expect("write");
}

/// Runs with `stdin` fed to the process.
fn run_with_stdin(env: &Env, args: &[&str], stdin: &[u8]) -> std::process::Output {
    let mut child =
        env.cmd(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
    let mut input = child.stdin.take().expect("stdin");
    let data = stdin.to_vec();
    let feeder = std::thread::spawn(move || {
        let _ = input.write_all(&data);
    });
    let out = child.wait_with_output().expect("wait");
    feeder.join().expect("feeder");
    out
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let env = Env::with_keys(&["a"]);
    write(&env, "plain.txt", b"hello\n");
    env.ok(&["encrypt", "--key", "local:a", "--text", "plain.txt", "-o", "plain.txt.rky"]);
    for args in [
        &["completions", "bash"][..],
        &["man"],
        &["man", "rewrap"],
        &["keys", "list"],
        &["inspect", "plain.txt.rky"],
        &["decrypt", "plain.txt.rky"],
        &["encrypt", "--key", "local:a", "--lines", "plain.txt"],
    ] {
        let mut child = env.cmd(args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawn");
        // The reader goes away before the first write: every write fails with EPIPE.
        drop(child.stdout.take());
        let out = child.wait_with_output().expect("wait");
        assert_eq!(out.status.code(), Some(0), "rekey {args:?}: {}", text(&out.stderr));
        assert_eq!(text(&out.stderr), "", "rekey {args:?}");
    }
}

#[test]
fn demo_runs_the_main_job_with_local_keys() {
    let env = Env::with_keys(&[]);
    let out = env.ok(&["demo", "d"]);
    let stdout = text(&out.stdout);
    let dir = env.path("d").canonicalize().expect("demo dir");
    for line in [
        format!("  cd {} && export REKEY_KEYSTORE=$PWD/keys", dir.display()),
        "$ rekey keys create demo".to_owned(),
        "$ rekey encrypt --key local:demo --context app=demo -r plain -o vault".to_owned(),
        "encrypted 3 files (388 B) into vault".to_owned(),
        "$ rekey encrypt --key local:demo --lines plain/records.txt -o records.enc".to_owned(),
        "$ rekey rewrap --to local:demo-2026 --from local:demo --verify vault".to_owned(),
        "$ rekey decrypt --key local:demo-2026 --context app=demo -r vault -o check".to_owned(),
        "ok: check matches plain, 3 files (diff -r plain check)".to_owned(),
        "ok: records.txt matches plain/records.txt, 1 file (cmp plain/records.txt records.txt)".to_owned(),
        "$ rekey rollback --journal vault.rekey-journal".to_owned(),
        "ok: check-after-rollback matches plain, 3 files (diff -r plain check-after-rollback)".to_owned(),
        format!("demo: all good. Everything is in {}; remove it when done.", dir.display()),
    ] {
        assert!(stdout.lines().any(|l| l == line), "missing {line:?} in:\n{stdout}");
    }
    assert!(stdout.contains("rewrap: 3 items in ") && stdout.contains("3 rewrapped, 0 failed"), "{stdout}");
    assert!(stdout.contains("rollback: 3 items in ") && stdout.contains("3 restored, 0 failed"), "{stdout}");
    assert_eq!(text(&out.stderr), "");
    assert!(dir.join("vault.rekey-journal").is_file());

    let err = env.fails(&["demo", "d"], 2);
    assert!(err.starts_with("rekey: error: d is not empty\n"), "{err}");
}

#[test]
fn directories_are_encrypted_into_a_mirrored_tree_and_back() {
    let env = Env::with_keys(&["a"]);
    write(&env, "d/a.txt", b"alpha\n");
    write(&env, "d/sub/b.txt", b"beta\n");
    write(&env, "d/sub/c.log", b"log\n");

    let err = env.fails(&["encrypt", "--key", "local:a", "d"], 2);
    assert_eq!(
        err,
        "rekey: error: d is a directory\n  hint: pass -r to work on the files under it, with -o DIR for the results\n"
    );
    let err = env.fails(&["encrypt", "--key", "local:a", "-r", "d"], 2);
    assert_eq!(
        err,
        "rekey: error: a directory needs an output directory\n  hint: pass -o DIR (created if missing); the tree under each directory is mirrored there\n"
    );

    let out = env.ok(&["encrypt", "--key", "local:a", "-r", "d", "-o", "out", "--exclude", "*.log"]);
    assert_eq!(text(&out.stdout), "encrypted 2 files (11 B) into out\n");
    assert!(env.path("out/a.txt.rky").is_file() && env.path("out/sub/b.txt.rky").is_file());
    assert!(!env.path("out/sub/c.log.rky").exists());

    let err = env.fails(&["encrypt", "--key", "local:a", "-r", "d", "-o", "out", "--exclude", "*.log"], 4);
    assert_eq!(
        err,
        "rekey: error: 2 outputs already exist (first: out/a.txt.rky)\n  hint: pass --force to replace them, or choose another -o DIR\n"
    );
    env.ok(&["encrypt", "--key", "local:a", "-r", "d", "-o", "out", "--include", "*.txt", "--force"]);

    let out = env.ok(&["decrypt", "-r", "out", "-o", "back"]);
    assert_eq!(text(&out.stdout), "decrypted 2 files (11 B) into back\n");
    assert_eq!(std::fs::read(env.path("back/a.txt")).expect("a"), b"alpha\n");
    assert_eq!(std::fs::read(env.path("back/sub/b.txt")).expect("b"), b"beta\n");

    // Several files, one bad: the others are done, the bad one is named, exit 6.
    write(&env, "out/zz.rky", b"not an envelope");
    let out = env.run(&["decrypt", "-r", "out", "-o", "back2"]);
    assert_eq!(out.status.code(), Some(6), "{}", text(&out.stderr));
    assert!(text(&out.stderr).starts_with("rekey: error: out/zz.rky: "), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "decrypted 2 files (11 B) into back2, 1 failed\n");

    // One file: its errors name it too.
    let err = env.fails(&["decrypt", "out/zz.rky"], 1);
    assert!(err.starts_with("rekey: error: out/zz.rky: "), "{err}");
    let err = env.fails(&["encrypt", "--key", "local:a", "d/a.txt", "d/sub/b.txt"], 2);
    assert!(err.starts_with("rekey: error: several inputs need an output directory\n"), "{err}");
}

#[test]
fn metadata_output_has_one_line_per_file() {
    let env = Env::with_keys(&["a"]);
    write(&env, "d/a.txt", b"alpha\n");
    write(&env, "d/b.txt", b"beta\n");
    env.ok(&["encrypt", "--key", "local:a", "-c", "app=x", "-r", "d", "-o", "out", "--metadata-output", "m.jsonl"]);
    env.ok(&["decrypt", "-r", "out", "-o", "back", "--metadata-output", "m.jsonl"]);
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(env.path("m.jsonl"))
        .expect("metadata")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 4);
    assert_eq!(lines[0]["operation"], "encrypt");
    assert_eq!(lines[0]["input"], "d/a.txt");
    assert_eq!(lines[0]["output"], "out/a.txt.rky");
    assert_eq!(lines[0]["outcome"], "ok");
    assert_eq!(lines[0]["input_bytes"], 6);
    assert_eq!(lines[0]["context"]["app"], "x");
    assert_eq!(lines[0]["key_ids"][0], "rekey-local:a/v1");
    assert_eq!(lines[3]["operation"], "decrypt");
    assert_eq!(lines[3]["output"], "back/b.txt");
    assert_eq!(lines[3]["output_bytes"], 5);
}

/// xorshift64*: a reproducible stream of cases without a dependency.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        usize::try_from(self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n as u64).expect("below n")
    }
}

#[test]
fn lines_round_trip_byte_for_byte() {
    let env = Env::with_keys(&["a"]);
    let pieces = ["a", "b c", "é", "🔑", "\t", "x\ry", "", "record-42"];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut cases: Vec<Vec<u8>> =
        vec![b"a\r\nb\nlast".to_vec(), b"\n".to_vec(), b"only".to_vec(), b"\r\n\r\n".to_vec()];
    for _ in 0..40 {
        let mut case = String::new();
        for _ in 0..=rng.below(6) {
            for _ in 0..rng.below(4) {
                case.push_str(pieces[rng.below(pieces.len())]);
            }
            case.push_str(["\n", "\r\n"][rng.below(2)]);
        }
        if rng.below(2) == 0 {
            // No final newline.
            case.push_str(pieces[rng.below(pieces.len())]);
            case.push('z');
        }
        cases.push(case.into_bytes());
    }
    for case in cases {
        let sealed = run_with_stdin(&env, &["encrypt", "--key", "local:a", "--lines"], &case);
        assert!(sealed.status.success(), "{}", text(&sealed.stderr));
        let opened = run_with_stdin(&env, &["decrypt", "--lines"], &sealed.stdout);
        assert!(opened.status.success(), "{}", text(&opened.stderr));
        assert_eq!(opened.stdout, case, "{:?}", text(&case));
    }
}

#[test]
fn decrypt_context_key_alone_must_be_present() {
    let env = Env::with_keys(&["a"]);
    env.encrypt("local:a", b"secret", "app=x", &env.path("s.rky"), false);
    let out = env.ok(&["decrypt", "--context", "app", "s.rky"]);
    assert_eq!(out.stdout, b"secret");
    let err = env.fails(&["decrypt", "--context", "tenant", "s.rky"], 3);
    assert_eq!(
        err,
        "rekey: error: s.rky: the encryption context has no \"tenant\", which --context tenant requires\n  hint: rekey inspect shows the context it was encrypted with\n"
    );
}

#[test]
fn inspect_reads_lines_files_and_tells_kms_blobs_apart() {
    let env = Env::with_keys(&["a"]);
    write(&env, "r.txt", b"one\ntwo\nthree\n");
    env.ok(&["encrypt", "--key", "local:a", "--lines", "r.txt", "-o", "r.enc"]);
    let out = env.ok(&["inspect", "r.enc"]);
    let stdout = text(&out.stdout);
    assert!(
        stdout.starts_with(
            "3 text envelopes, one per line (as `rekey encrypt --lines` writes them); wrapped under: rekey-local: a/v1\nline 1:\nrekey envelope, format version 1 (text form)\n"
        ),
        "{stdout}"
    );
    let out = env.ok(&["inspect", "--json", "r.enc"]);
    let reports: Vec<serde_json::Value> =
        text(&out.stdout).lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(reports.len(), 3);
    assert_eq!(reports[2]["line"], 3);

    use base64::Engine as _;
    let b64 = |raw: &[u8]| base64::engine::general_purpose::STANDARD.encode(raw);
    // The layout of a real KMS blob: 01 02 02 00, then opaque bytes.
    let mut blob = vec![1u8, 2, 2, 0];
    blob.extend((0..180u8).map(|i| i.wrapping_mul(37)));
    write(&env, "blob.b64", b64(&blob).as_bytes());
    let out = env.ok(&["inspect", "--json", "blob.b64"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["format"], "kms-ciphertext-blob", "{v}");
    // A legacy-looking record of a KMS blob's size is called possibly one.
    let record: Vec<u8> = (0..176u8).map(|i| i.wrapping_mul(91).wrapping_add(7)).collect();
    write(&env, "rec.b64", b64(&record).as_bytes());
    let out = env.ok(&["inspect", "rec.b64"]);
    assert!(text(&out.stdout).starts_with("legacy-cbc\n"), "{}", text(&out.stdout));
    assert!(text(&out.stdout).contains("possibly a bare KMS ciphertext blob"), "{}", text(&out.stdout));
}

#[test]
fn logs_are_plain_off_a_terminal_and_repeats_collapse() {
    let env = Env::with_keys(&["a"]);
    for i in 0..3 {
        write(&env, &format!("d/f{i}"), b"plain, not an envelope");
    }
    let out = env.run(&["rewrap", "--to", "local:a", "--journal", "j1", "d"]);
    assert_eq!(out.status.code(), Some(6));
    let stderr = text(&out.stderr);
    let first = format!(
        "rekey: warning: the text form is not valid base64 item={:?} code=bad_input",
        env.path("d/f0").canonicalize().expect("f0").display().to_string()
    );
    assert_eq!(
        stderr,
        format!("{first}\nrekey: warning: the text form is not valid base64 (2 more like this; -v shows each)\n")
    );
    let out = env.run(&["-v", "rewrap", "--to", "local:a", "--journal", "j2", "d"]);
    assert_eq!(text(&out.stderr).matches("rekey: warning: the text form is not valid base64 item=").count(), 3);
    let out = env.run(&["-q", "rewrap", "--to", "local:a", "--journal", "j3", "d"]);
    assert_eq!(text(&out.stderr), "");

    write(&env, "e/a.txt", b"alpha");
    let out = env.ok(&["-v", "encrypt", "--key", "local:a", "-r", "e", "-o", "out"]);
    assert_eq!(text(&out.stderr), "rekey: info: encrypted e/a.txt to out/a.txt.rky under rekey-local:a/v1\n");
    let out = env.ok(&["-q", "encrypt", "--key", "local:a", "-r", "e", "-o", "out2"]);
    assert_eq!((text(&out.stdout), text(&out.stderr)), (String::new(), String::new()));
}

#[test]
fn man_pages_for_every_command_and_kms_options_only_where_kms_is_used() {
    let env = Env::with_keys(&[]);
    let page = text(&env.ok(&["man", "rewrap"]).stdout);
    assert!(page.contains(".TH rekey-rewrap 1"), "{page}");
    assert!(page.contains("kms\\-max\\-attempts"), "{page}");
    let page = text(&env.ok(&["man", "s3", "sse-rotate"]).stdout);
    assert!(page.contains(".TH rekey-s3-sse-rotate 1"), "{page}");
    let err = env.fails(&["man", "nope"], 2);
    assert!(err.starts_with("rekey: error: no page for \"nope\": the commands here are keys, encrypt,"), "{err}");

    let out = env.ok(&["man", "--dir", "pages"]);
    assert!(
        text(&out.stdout).starts_with("wrote ")
            && text(&out.stdout).contains(" pages into pages: rekey-keys-create.1, "),
        "{}",
        text(&out.stdout)
    );
    for page in
        ["rekey.1", "rekey-rewrap.1", "rekey-keys-create.1", "rekey-s3-sse-rotate.1", "rekey-demo.1", "rekey-man.1"]
    {
        assert!(env.path("pages").join(page).is_file(), "{page}");
    }

    for (command, kms) in [
        (&["completions", "--help"][..], false),
        (&["man", "--help"], false),
        (&["scan", "--help"], false),
        (&["inspect", "--help"], false),
        (&["keys", "create", "--help"], false),
        (&["encrypt", "--help"], true),
        (&["decrypt", "--help"], true),
        (&["rewrap", "--help"], true),
        (&["reencrypt", "--help"], true),
    ] {
        let help = text(&env.ok(command).stdout);
        assert_eq!(help.contains("--kms-max-attempts"), kms, "{command:?}");
        assert_eq!(help.contains("\nKMS client options:\n"), kms, "{command:?}");
    }
    // The harness sets REKEY_KEYSTORE: usage lines must not show --keystore as required.
    let err = env.fails(&["encrypt"], 2);
    assert!(err.contains("Usage: rekey encrypt --key <KEYREF> [INPUT]..."), "{err}");
    assert!(!err.contains("--keystore"), "{err}");
}

/// Runs `rekey ARGS` under a pseudo-terminal (stdin, stdout and stderr all
/// the terminal), feeding `keys` once it started; returns what the
/// terminal showed. `None` when util-linux `script` is missing.
fn under_pty(env: &Env, args: &str, keys: &[u8], extra_env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: util-linux `script` is not installed");
        return None;
    }
    let line = format!("{} {args}", Env::bin().display());
    let mut cmd = Command::new("script");
    cmd.args(["-qec", &line, "/dev/null"])
        .current_dir(env.dir.path())
        .env("REKEY_KEYSTORE", env.path("keys"))
        .env_remove("RUST_LOG")
        .env_remove("NO_COLOR")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("script");
    let mut stdin = child.stdin.take().expect("stdin");
    std::thread::sleep(Duration::from_millis(500));
    let _ = stdin.write_all(keys);
    let _ = stdin.flush();
    // script forwards its input to the terminal and then ends it.
    drop(stdin);
    let mut stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        let mut all = Vec::new();
        let _ = stdout.read_to_end(&mut all);
        all
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "rekey {args} hung under a terminal");
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(text(&reader.join().expect("reader")))
}

#[test]
fn terminals_get_no_binary_ciphertext_and_a_note_when_stdin_is_read() {
    let env = Env::with_keys(&["a"]);
    write(&env, "p.txt", b"hello");
    let Some(shown) = under_pty(&env, "encrypt --key local:a p.txt", b"", &[]) else { return };
    assert!(shown.starts_with("rekey: error: refusing to write binary ciphertext to a terminal\r\n"), "{shown:?}");
    assert!(shown.contains("pass --text for base64"), "{shown:?}");
    let shown = under_pty(&env, "encrypt --key local:a --text p.txt", b"", &[]).expect("pty");
    assert!(shown.starts_with("UktZ"), "{shown:?}");

    // Ctrl-D ends the terminal's input: the note came first, then the empty input's error.
    for command in ["inspect", "decrypt", "encrypt --key local:a --text -o out.txt"] {
        let shown = under_pty(&env, command, b"\x04", &[]).expect("pty");
        assert!(
            shown.starts_with(
                "rekey: reading standard input from the terminal; end it with Ctrl-D (or pass a file)\r\n"
            ),
            "{command}: {shown:?}"
        );
    }
    assert!(Path::new(&env.path("out.txt")).is_file());
}

/// Issue 24, item 11: `rekey man rewrap` on a terminal shows the page
/// rendered (through `man -l -`), not its roff source; off a terminal it
/// stays roff, for `man -l` or a packager.
#[test]
fn man_pages_are_rendered_on_a_terminal() {
    let env = Env::with_keys(&[]);
    if Command::new("man").arg("--version").output().is_err() {
        eprintln!("skipped: man is not installed");
        return;
    }
    let Some(shown) = under_pty(&env, "man rewrap", b"", &[("MANPAGER", "cat"), ("PAGER", "cat")]) else { return };
    assert!(!shown.contains(".TH ") && !shown.contains(".SH "), "roff on a terminal: {shown:?}");
    assert!(shown.contains("NAME") && shown.contains("rekey-rewrap"), "{shown:?}");
    let piped = text(&env.ok(&["man", "rewrap"]).stdout);
    assert!(piped.starts_with(".ie \\n(.g .ds Aq") || piped.contains(".TH "), "{piped:?}");
}

#[test]
fn colour_only_on_a_terminal_and_never_with_no_color() {
    let env = Env::with_keys(&["a"]);
    write(&env, "d/f", b"plain, not an envelope");
    let Some(shown) = under_pty(&env, "rewrap --to local:a --no-progress --journal j1 d", b"", &[]) else { return };
    assert!(shown.contains("rekey: \x1b[33mwarning\x1b[0m: the text form is not valid base64"), "{shown:?}");
    let shown =
        under_pty(&env, "rewrap --to local:a --no-progress --journal j2 d", b"", &[("NO_COLOR", "1")]).expect("pty");
    assert!(shown.contains("rekey: warning: the text form is not valid base64"), "{shown:?}");
    assert!(!shown.contains('\x1b'), "{shown:?}");
}

#[test]
fn rotations_write_metadata_and_log_each_item_with_v() {
    let env = Env::with_keys(&["old", "new"]);
    std::fs::create_dir(env.path("v")).expect("mkdir");
    env.encrypt("local:old", b"one", "n=1", &env.path("v/a.rky"), false);
    let out = env.ok(&["-v", "rewrap", "--to", "local:new", "--metadata-output", "m.jsonl", "v"]);
    let item = env.path("v/a.rky").canonicalize().expect("a").display().to_string();
    assert!(
        text(&out.stderr).contains(&format!("rekey: info: rewrap: {item}: rewrapped to rekey-local:new/v1\n")),
        "{}",
        text(&out.stderr)
    );
    let line: serde_json::Value =
        serde_json::from_str(std::fs::read_to_string(env.path("m.jsonl")).expect("metadata").trim()).expect("json");
    assert_eq!(line["operation"], "rewrap");
    assert_eq!(line["item"], item.as_str());
    assert_eq!(line["outcome"], "rewrapped");
}
