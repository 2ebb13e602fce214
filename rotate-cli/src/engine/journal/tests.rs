//! The journal's own tests: torn and altered lines, full disks, resume checks.

use std::io::Write;

use super::appender::*;
use super::entry::*;
use super::lines::*;
use super::read::*;
use super::resume::*;

fn params(to: &str) -> RunParams {
    RunParams::from([("operation".into(), "rewrap".into()), ("to".into(), to.into())])
}

#[test]
fn a_torn_last_line_is_cut_and_a_damaged_middle_line_is_loud() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j");
    {
        let (j, _) = Journal::open(&path, false, &params("a")).expect("open");
        j.append(&Entry::Done { item: "x".into() }, true).expect("append");
        j.append(&Entry::Done { item: "y".into() }, true).expect("append");
    }
    let full = std::fs::read(&path).expect("read");
    // Tear the last line in the middle.
    std::fs::write(&path, &full[..full.len() - 7]).expect("tear");
    let (j, entries) = Journal::open(&path, true, &params("a")).expect("resume");
    assert_eq!(entries.len(), 2, "the torn line is gone");
    j.append(&Entry::Done { item: "z".into() }, true).expect("append after repair");
    drop(j);
    let (_, entries) = read_locked(&path).expect("read");
    assert_eq!(entries.last(), Some(&Entry::Done { item: "z".into() }));

    // Flip one character of the second line: loud, wherever it is.
    let mut bytes = std::fs::read(&path).expect("read");
    let second = bytes.iter().position(|b| *b == b'\n').expect("a line") + 30;
    bytes[second] ^= 1;
    std::fs::write(&path, &bytes).expect("damage");
    let err = Journal::open(&path, true, &params("a")).expect_err("damaged");
    assert!(err.message.contains("line 2"), "{}", err.message);
}

/// A file on a disk that fills up after `room` more bytes.
struct FillingDisk {
    data: Vec<u8>,
    room: usize,
}

impl Write for FillingDisk {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.room == 0 {
            return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
        }
        let n = buf.len().min(self.room);
        self.data.extend_from_slice(&buf[..n]);
        self.room -= n;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl AppendTarget for FillingDisk {
    fn len(&self) -> std::io::Result<u64> {
        Ok(self.data.len() as u64)
    }
    fn cut(&mut self, len: u64) -> std::io::Result<()> {
        self.data.truncate(usize::try_from(len).expect("small"));
        Ok(())
    }
    fn sync(&self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn an_append_that_fills_the_disk_part_way_leaves_no_fragment() {
    let first = encode_line(&Entry::Done { item: "x".into() }).expect("line");
    let second = encode_line(&Entry::Done { item: "y".into() }).expect("line");
    let mut disk = FillingDisk { data: first.clone(), room: 10 };
    let err = append_to(&mut disk, &second, true).expect_err("disk full");
    assert_eq!(err.raw_os_error(), Some(libc::ENOSPC));
    assert_eq!(disk.data, first, "the 10 bytes that fitted are cut off again");
    // Room again (another process freed some): the next entry starts on a line of its own.
    disk.room = usize::MAX;
    append_to(&mut disk, &second, true).expect("append");
    let read = read_lines(&disk.data);
    assert!(read.damaged.is_empty() && read.entries.len() == 2, "{:?}", read.damaged);
}

#[test]
fn rollback_reads_past_a_torn_or_altered_middle_line_and_resume_names_which() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j");
    let line = |item: &str| encode_line(&Entry::Done { item: item.into() }).expect("line");
    let run = encode_line(&Entry::Run { version: FORMAT_VERSION, params: params("a") }).expect("line");
    // What a partial write followed by a successful append leaves: a fragment, then a whole entry.
    let fragment = &line("y")[..20];
    let torn = [run.clone(), line("x"), fragment.to_vec(), line("z"), line("w")].concat();
    std::fs::write(&path, &torn).expect("write");
    let err = Journal::open(&path, true, &params("a")).expect_err("torn");
    assert!(err.message.contains("line 3 is torn"), "{}", err.message);
    assert!(err.hint.as_deref().is_some_and(|h| h.contains("rekey rollback")), "{:?}", err.hint);
    let (_, entries, skipped) = read_for_rollback(&path).expect("read past it");
    let items: Vec<_> =
        entries.iter().filter_map(|e| if let Entry::Done { item } = e { Some(item.as_str()) } else { None }).collect();
    assert_eq!(items, ["x", "z", "w"], "the entry after the fragment is read too");
    assert!(skipped.len() == 1 && skipped[0].contains("line 3 is torn"), "{skipped:?}");

    // One character of a whole line changed: altered, not torn.
    let mut altered = line("y");
    altered[30] ^= 1;
    std::fs::write(&path, [run, line("x"), altered, line("w")].concat()).expect("write");
    let err = Journal::open(&path, true, &params("a")).expect_err("altered");
    assert!(err.message.contains("line 3 was altered"), "{}", err.message);
    let (_, entries, skipped) = read_for_rollback(&path).expect("read past it");
    assert_eq!(entries.len(), 3);
    assert!(skipped.len() == 1 && skipped[0].contains("line 3 was altered"), "{skipped:?}");
}

#[test]
fn resume_with_other_parameters_is_refused_naming_the_difference() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j");
    drop(Journal::open(&path, false, &params("kms:a")).expect("open"));
    let err = Journal::open(&path, true, &params("kms:b")).expect_err("other --to");
    assert!(err.message.contains("to: the journal has kms:a, this command has kms:b"), "{}", err.message);
    assert!(Journal::open(&path, false, &params("kms:a")).is_err(), "exists without --resume");
}

#[test]
fn a_version_2_journal_with_debug_contexts_resumes_and_a_changed_context_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j");
    let mut before = params("kms:a");
    before.insert("source_context".into(), r#"{"tenant": "t\"1"}"#.into());
    before.insert("context".into(), "None".into());
    let run = encode_line(&Entry::Run { version: 2, params: before }).expect("line");
    std::fs::write(&path, run).expect("write");
    let mut now = params("kms:a");
    now.insert("source_context".into(), context_param([("tenant", "t\"1")]));
    now.insert("context".into(), String::new());
    assert_eq!(now["source_context"], r#"{"tenant":"t\"1"}"#, "canonical JSON");
    drop(Journal::open(&path, true, &now).expect("the same run, in version 3's form"));
    now.insert("source_context".into(), context_param([("tenant", "t2")]));
    let err = Journal::open(&path, true, &now).expect_err("another context");
    assert!(
        err.message
            .contains(r#"source_context: the journal has {"tenant": "t\"1"}, this command has {"tenant": "t2"}"#),
        "{}",
        err.message
    );

    // A keyset run's context was never optional.
    let mut keyset = params("kms:a");
    keyset.insert("keyset".into(), "ks".into());
    keyset.insert("context".into(), context_param([("a", "b")]));
    assert_eq!(in_version_2_form(&keyset)["context"], r#"{"a": "b"}"#);
    let mut one = params("kms:a");
    one.insert("context".into(), context_param([("a", "b")]));
    assert_eq!(in_version_2_form(&one)["context"], r#"Some({"a": "b"})"#);
}

#[test]
fn a_second_run_cannot_open_a_journal_in_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("j");
    let (_held, _) = Journal::open(&path, false, &params("a")).expect("open");
    let err = Journal::open(&path, true, &params("a")).expect_err("locked");
    assert!(err.message.contains("another rekey run"), "{}", err.message);
}
