//! Unit tests of the S3 target's parsing and checks.

use super::backup::{backup_run, check_backup_prefix};
use super::client::{S3Url, check_endpoint, same_key};
use super::copy::{encode_key, percent_decode};
use super::listing::{BoundedLines, MAX_LIST_LINE};

#[test]
fn urls_keys_and_endpoints() {
    let u: S3Url = "s3://b/p/q".parse().expect("url");
    assert_eq!((u.bucket.as_str(), u.prefix.as_str()), ("b", "p/q"));
    let whole: S3Url = "s3://b".parse().expect("url");
    assert_eq!(whole.prefix, "");
    assert!("s3:///x".parse::<S3Url>().is_err() && "b/x".parse::<S3Url>().is_err());
    let arn = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab";
    assert!(same_key(arn, "1234abcd-12ab-34cd-56ef-1234567890ab"));
    assert!(same_key("kms:1234abcd-12ab-34cd-56ef-1234567890ab", arn));
    assert!(!same_key(arn, "other"));
    assert_eq!(encode_key("a b/c+d"), "a%20b/c%2Bd");
    assert_eq!(percent_decode("a%20b/c%2Bd+e").as_deref(), Some("a b/c+d e"));
    assert!(percent_decode("bad%2").is_none());
    assert!(check_endpoint("http://127.0.0.1:5000").is_ok());
    assert!(check_endpoint("http://[::1]:5000/").is_ok());
    assert!(check_endpoint("https://s3.example.com").is_ok());
    assert!(check_endpoint("http://s3.example.com").is_err());
}

#[test]
fn object_list_lines_are_read_with_a_bound() {
    let long = "x".repeat(MAX_LIST_LINE * 3);
    let text = format!("a\n{long}\nb\r\n{long}");
    let lines: Vec<(String, bool)> =
        BoundedLines(Box::new(std::io::Cursor::new(text.into_bytes()))).map(|l| l.expect("line")).collect();
    let shape: Vec<(usize, bool)> = lines.iter().map(|(l, cut)| (l.len(), *cut)).collect();
    assert_eq!(shape, [(1, false), (MAX_LIST_LINE, true), (2, false), (MAX_LIST_LINE, true)]);
    assert_eq!((lines[0].0.as_str(), lines[2].0.as_str()), ("a", "b\r"));
}

#[test]
fn backup_prefixes_that_could_meet_the_rotated_objects_are_refused() {
    let url: S3Url = "s3://b/data/".parse().expect("url");
    for bad in ["", "data/", "data/old/", "d", "data"] {
        let e = check_backup_prefix(&url, bad).expect_err(bad);
        assert!(e.message.contains("--backup-prefix") && e.hint.is_some(), "{bad:?}: {}", e.message);
    }
    assert!(check_backup_prefix(&url, ".rekey-backup/").is_ok() && check_backup_prefix(&url, "dat/").is_ok());
    let whole: S3Url = "s3://b".parse().expect("url");
    assert!(check_backup_prefix(&whole, ".rekey-backup/").is_ok(), "left out of a whole bucket's listing");
    assert!(check_backup_prefix(&whole, "").is_err());
    let run = backup_run();
    assert!(run.len() == 25 && run.as_bytes()[8] == b'T' && run.as_bytes()[15] == b'Z', "{run}");
}

#[test]
fn scans_count_s3_encryption_client_objects_and_flag_cbc() {
    let meta = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    };
    let mut counts = super::S3ecCounts::default();
    let v1_kms = meta(&[
        ("x-amz-key", "AQID"),
        ("x-amz-iv", "AAAAAAAAAAAAAAAAAAAAAA=="),
        ("x-amz-matdesc", r#"{"kms_cmk_id":"key/k1"}"#),
    ]);
    counts.add("a", &v1_kms);
    counts.add("b", &meta(&[("x-amz-c", "115"), ("x-amz-d", "AAEC"), ("x-amz-i", "AAEC")]));
    counts.add("b.instruction", &meta(&[]));
    counts.add("c", &meta(&[("owner", "x")]));
    counts.add("d", &meta(&[("x-amz-key", "AQID"), ("x-amz-key-v2", "AQID")]));
    assert_eq!(counts.keys.get("kms (legacy) key/k1"), Some(&1));
    assert_eq!(counts.versions.get("V1"), Some(&1));
    assert_eq!((counts.unauthenticated, counts.key_in_instruction_file, counts.instruction_files), (1, 1, 1));
    assert_eq!(counts.malformed, 1);
    assert!(counts.to_text().contains("unauthenticated (AES/CBC), migrate"));
    assert_eq!(counts.to_json()["objects"], 2);
}
