//! The known-answer vectors decrypted by an independent reader written from
//! docs/format.md alone (scripts/interop/reference_decrypt.py, Python with
//! `cryptography`): evidence that the document specifies the format fully.

use std::process::Command;

#[test]
#[ignore = "needs Python with cryptography: bash scripts/test.sh"]
fn an_implementation_written_from_the_spec_reads_the_vectors() {
    let python = std::env::var("REKEY_TEST_PYTHON").unwrap_or_else(|_| {
        panic!("REKEY_TEST_PYTHON is not set: run the tests with `bash scripts/test.sh`, which installs the Python test tools")
    });
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(&python)
        .arg(format!("{root}/scripts/interop/reference_decrypt.py"))
        .arg(format!("{root}/envelope-core/tests/data/envelope_vectors.json"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(stdout.lines().filter(|l| l.starts_with("ok ")).count(), 6, "{stdout}");
}
