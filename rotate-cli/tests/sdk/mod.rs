//! What the AWS Encryption SDK tests share: the Python fixture scripts and
//! `rekey` against the local KMS server.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Output};

use serde_json::Value;

use crate::common::{self, Env, interop_script, python};

/// Runs a fixture script with the server's endpoint; returns its stdout.
pub fn py(script: &str, args: &[&str]) -> String {
    let out = Command::new(python())
        .arg(interop_script(script))
        .args(args)
        .env("AWS_ENDPOINT_URL", common::endpoint())
        .output()
        .expect("python");
    assert!(out.status.success(), "{script} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

/// A new key on the local KMS server; its ARN.
pub fn create_key() -> String {
    py("kms_fixtures.py", &["create-key"])
}

/// `rekey` in `env` against the local KMS server.
pub fn rekey(env: &Env, args: &[&str]) -> Output {
    env.cmd(args)
        .env("AWS_ENDPOINT_URL", common::endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env_remove("AWS_PROFILE")
        .output()
        .expect("run rekey")
}

/// `rekey`, which must succeed.
pub fn ok(env: &Env, args: &[&str]) -> Output {
    let out = rekey(env, args);
    assert!(out.status.success(), "rekey {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out
}

/// `rekey`, which must succeed and print JSON.
pub fn json(env: &Env, args: &[&str]) -> Value {
    let out = ok(env, args);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)))
}

/// Standard output as text.
pub fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The JSON lines a fixture script printed.
pub fn json_lines(out: &str) -> Vec<Value> {
    out.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"))).collect()
}

/// The hex SHA-256 of `bytes`, as the fixture scripts report plaintexts.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}
