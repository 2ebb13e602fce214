//! The engine in process, with local keys: every shared flag (`--sample`,
//! `--limit`, `--shard`, `--max-failures`, `--dry-run`, `--resume`, the
//! failure report) must behave the same on every target. One table of cases,
//! run through the `Target` seam against a directory of files, a JSON Lines
//! stream, a CSV stream and a SQLite table holding the same items: a new
//! target adds a variant, its fixture and its constructor.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use envelope_core::{EncryptionContext, Keyring, Keystore, LocalKeyring};

use envelope_core::hazmat::{Materials, ParseOptions, encode_text, seal};
use rotate_cli::engine::files::FileTarget;
use rotate_cli::engine::journal::RunParams;
use rotate_cli::engine::records::{RecordFormat, RecordTarget};
use rotate_cli::engine::report::{FailureLog, Stop, Summary};
use rotate_cli::engine::scan::DryRun;
use rotate_cli::engine::table::{TableSpec, TableTarget};
use rotate_cli::engine::transform::{Rewrap, Transform};
use rotate_cli::engine::{Engine, Rotation, Settings, Shard, Silent};

/// Good items, then bad ones (not envelopes) at the start of the inventory.
const GOOD: usize = 300;
const BAD: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Files,
    JsonLines,
    Csv,
    Sqlite,
}

/// Every target the table runs on.
const TARGETS: [Target; 4] = [Target::Files, Target::JsonLines, Target::Csv, Target::Sqlite];

struct Fixture {
    dir: tempfile::TempDir,
    keystore: Keystore,
}

impl Fixture {
    fn new(target: Target) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let keystore = Keystore::new(dir.path().join("keys"));
        keystore.create_key("old").expect("old");
        keystore.create_key("new").expect("new");
        let keyring = LocalKeyring::new(keystore.load("old").expect("old"));
        let context = EncryptionContext::new();
        let items: Vec<String> = (0..BAD)
            .map(|i| format!("bad item {i}"))
            .chain((0..GOOD).map(|i| {
                let (data_key, edk) = keyring.generate_sync(&context).expect("generate");
                let materials = Materials { data_key, encrypted_data_keys: vec![edk] };
                encode_text(&seal(&materials, &context, format!("item {i}").as_bytes()).expect("seal"))
            }))
            .collect();
        let root = dir.path();
        match target {
            Target::Files => {
                std::fs::create_dir_all(root.join("vault")).expect("mkdir");
                for (i, item) in items.iter().enumerate() {
                    std::fs::write(root.join(format!("vault/{i:04}.rky")), item).expect("write");
                }
            }
            Target::JsonLines => {
                let lines: String =
                    items.iter().enumerate().map(|(i, s)| format!("{{\"id\":{i},\"s\":\"{s}\"}}\n")).collect();
                std::fs::write(root.join("in.jsonl"), lines).expect("write");
            }
            Target::Csv => {
                let rows: String = items.iter().enumerate().map(|(i, s)| format!("{i},{s}\n")).collect();
                std::fs::write(root.join("in.csv"), format!("id,s\n{rows}")).expect("write");
            }
            Target::Sqlite => {
                std::fs::create_dir_all(root.join("db")).expect("mkdir");
                let mut conn = rusqlite::Connection::open(root.join("db/app.db")).expect("create");
                conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, s TEXT)").expect("schema");
                let tx = conn.transaction().expect("tx");
                for (i, item) in items.iter().enumerate() {
                    tx.execute("INSERT INTO t VALUES (?1, ?2)", rusqlite::params![i as i64, item]).expect("insert");
                }
                tx.commit().expect("commit");
            }
        }
        Self { dir, keystore }
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    fn transform(&self, dry_run: bool) -> Arc<Transform> {
        let destination = LocalKeyring::new(self.keystore.load("new").expect("new"));
        let source = LocalKeyring::new(self.keystore.load("old").expect("old"));
        let sources: Vec<Box<dyn Keyring>> = vec![Box::new(source)];
        let strategy = Rewrap::new(Box::new(destination), Vec::new(), false);
        Arc::new(Transform::new(strategy, sources, ParseOptions::default(), false, dry_run))
    }

    async fn run(&self, target: Target, settings: Settings, journal: &str) -> Summary {
        let mut settings = settings;
        let journal = self.path(journal);
        if !settings.dry_run {
            settings.journal = Some((journal.clone(), RunParams::from([("test".into(), format!("{target:?}"))])));
        }
        let engine = Engine {
            operation: "rewrap",
            transform: Some(self.transform(settings.dry_run)),
            failures: Arc::new(FailureLog::new((!settings.dry_run).then(|| with(&journal, ".failures")))),
            progress: Arc::new(Silent),
            cancel: Arc::new(AtomicBool::new(false)),
            settings,
        };
        let dry = engine.settings.dry_run;
        let output = with(&journal, ".out");
        let store: Box<dyn rotate_cli::engine::Target> = match target {
            Target::Files => Box::new(FileTarget::open(vec![self.path("vault")], &[], &[]).expect("target")),
            Target::JsonLines => Box::new(
                RecordTarget::open(&self.path("in.jsonl"), &RecordFormat::JsonLines(vec!["/s".into()]))
                    .expect("target"),
            ),
            Target::Csv => Box::new(
                RecordTarget::open(&self.path("in.csv"), &RecordFormat::Csv(vec!["s".into()])).expect("target"),
            ),
            Target::Sqlite => Box::new(
                TableTarget::open(TableSpec {
                    url: format!("sqlite:{}", self.path("db/app.db").display()),
                    table: "t".into(),
                    columns: vec!["s".into()],
                    ids: vec!["id".into()],
                    into: None,
                    context_columns: Vec::new(),
                    batch_size: 50,
                })
                .expect("target"),
            ),
        };
        let transform = engine.transform.clone().expect("a transform");
        let rotation = Rotation {
            engine: &engine,
            transform: &transform,
            count_ahead: false,
            output: Some(&output),
            resume: engine.settings.resume,
        };
        let run = if dry { store.dry_run(rotation, DryRun::new()).await } else { store.rotate(rotation).await };
        run.expect("run")
    }
}

fn with(path: &Path, suffix: &str) -> PathBuf {
    rotate_cli::engine::files::with_suffix(path, suffix)
}

/// What a case observed: comparable across targets.
#[derive(Debug, PartialEq, Eq)]
struct Seen {
    changed: u64,
    failed: u64,
    not_selected: u64,
    done_before: u64,
    stopped: Option<Stop>,
    report_lines: usize,
}

fn seen(fixture: &Fixture, summary: &Summary, journal: &str) -> Seen {
    let report = std::fs::read_to_string(with(&fixture.path(journal), ".failures")).unwrap_or_default();
    Seen {
        changed: summary.counts.rewrapped,
        failed: summary.counts.failed,
        not_selected: summary.counts.not_selected,
        done_before: summary.counts.done_before,
        stopped: summary.stopped,
        report_lines: report.lines().count(),
    }
}

fn settings() -> Settings {
    Settings { concurrency: 4, preflight: false, ..Settings::default() }
}

/// Runs one case on every target and checks they agree; returns what they saw.
async fn on_every_target(case: &str, run: impl AsyncFn(&Fixture, Target) -> Seen) -> Seen {
    let mut results = on_each_target(run).await;
    let (_, first) = &results[0];
    for (target, result) in &results[1..] {
        assert_eq!(result, first, "{case}: {target:?} differs from files");
    }
    results.remove(0).1
}

/// Runs one case on every target; for cases keyed on unit ids, which differ
/// between targets (a path, `record N`), so only their properties compare.
async fn on_each_target(run: impl AsyncFn(&Fixture, Target) -> Seen) -> Vec<(Target, Seen)> {
    let mut results = Vec::new();
    for target in TARGETS {
        let fixture = Fixture::new(target);
        results.push((target, run(&fixture, target).await));
    }
    results
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_shared_flag_behaves_the_same_on_every_target() {
    let total = (GOOD + BAD) as u64;

    let all = on_every_target("plain run", async |f, t| {
        let s = f.run(t, settings(), "j").await;
        seen(f, &s, "j")
    })
    .await;
    assert_eq!((all.changed, all.failed, all.report_lines), (GOOD as u64, BAD as u64, BAD));

    let samples = on_each_target(async |f, t| {
        let s = f.run(t, Settings { sample_percent: Some(30.0), ..settings() }, "j").await;
        seen(f, &s, "j")
    })
    .await;
    for (target, sample) in samples {
        assert!((40..=140).contains(&sample.changed), "{target:?}: about 30% of {GOOD}: {sample:?}");
        assert_eq!(sample.changed + sample.failed + sample.not_selected, total, "{target:?}: every item accounted for");
        assert_eq!(sample.report_lines as u64, sample.failed, "{target:?}: one report line per failure");
    }

    let limit = on_every_target("--limit 7", async |f, t| {
        let s = f.run(t, Settings { limit: Some(7), ..settings() }, "j").await;
        seen(f, &s, "j")
    })
    .await;
    assert_eq!((limit.changed + limit.failed, limit.not_selected), (7, total - 7));

    let shards = on_every_target("--shard k/3", async |f, t| {
        let mut changed = 0;
        for index in 0..3 {
            let journal = format!("j{index}");
            let s = f.run(t, Settings { shard: Some(Shard { index, count: 3 }), ..settings() }, &journal).await;
            changed += s.counts.rewrapped;
            assert!(s.counts.rewrapped < GOOD as u64, "a shard is a part");
            if matches!(t, Target::JsonLines | Target::Csv) {
                // Streams write a full output per shard; the next shard reads the input again.
                std::fs::remove_file(with(&f.path(&journal), ".out")).expect("output");
            }
        }
        Seen { changed, failed: 0, not_selected: 0, done_before: 0, stopped: None, report_lines: 0 }
    })
    .await;
    assert_eq!(shards.changed, GOOD as u64, "three shards cover every item exactly once");

    let dry = on_every_target("--dry-run", async |f, t| {
        let before = std::fs::read_dir(f.dir.path()).expect("ls").count();
        let s = f.run(t, Settings { dry_run: true, ..settings() }, "j").await;
        assert_eq!(std::fs::read_dir(f.dir.path()).expect("ls").count(), before, "a dry run writes nothing");
        seen(f, &s, "j")
    })
    .await;
    assert_eq!((dry.changed, dry.failed, dry.report_lines), (GOOD as u64, BAD as u64, 0));

    let stopped = on_every_target("--max-failures 1, then --resume", async |f, t| {
        let first = f.run(t, Settings { max_failures: Some(1), concurrency: 1, ..settings() }, "j").await;
        assert_eq!(first.stopped, Some(Stop::MaxFailures));
        assert!(first.counts.rewrapped < GOOD as u64, "stopped early");
        let s = f.run(t, Settings { resume: true, ..settings() }, "j").await;
        // Files retry the items that failed; a stream has passed them through
        // already: only what was done is comparable, and it must be everything.
        Seen {
            changed: s.counts.rewrapped + s.counts.done_before,
            failed: 0,
            not_selected: 0,
            done_before: 0,
            stopped: s.stopped,
            report_lines: 0,
        }
    })
    .await;
    assert_eq!((stopped.changed, stopped.stopped), (GOOD as u64, None));
}

/// Units `unit 0` .. `unit 4`; loading `unit 2` panics, as the S3 SDK did
/// on a 70,000-character key.
struct PanickySource(u32);

impl rotate_cli::engine::Source for PanickySource {
    type Payload = ();

    fn next_unit(&mut self) -> Result<Option<rotate_cli::engine::Unit<()>>, rotate_cli::engine::error::Error> {
        self.0 += 1;
        Ok((self.0 <= 5).then(|| rotate_cli::engine::Unit::new(format!("unit {}", self.0 - 1), ())))
    }

    async fn load(unit: &mut rotate_cli::engine::Unit<()>) -> Result<(), rotate_cli::engine::error::ItemError> {
        assert!(unit.id != "unit 2", "a library's assertion on one odd item");
        unit.items = vec![rotate_cli::engine::Item::new(unit.id.clone(), Vec::new())];
        Ok(())
    }
}

/// Counts what it is given.
#[derive(Default)]
struct Counting(std::sync::atomic::AtomicU64);

impl rotate_cli::engine::Sink<()> for Counting {
    fn start(
        &self,
        _: Option<Arc<rotate_cli::engine::journal::Journal>>,
        _: Option<&rotate_cli::engine::journal::Checkpoint>,
    ) -> Result<(), rotate_cli::engine::error::Error> {
        Ok(())
    }
    async fn write(&self, _: &mut rotate_cli::engine::Unit<()>) -> Result<(), rotate_cli::engine::error::ItemError> {
        Ok(())
    }
    fn commit(
        &self,
        _: rotate_cli::engine::Unit<()>,
        _: &rotate_cli::engine::report::Counts,
    ) -> Result<Vec<rotate_cli::engine::Rejected>, rotate_cli::engine::error::Error> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(Vec::new())
    }
    fn finish(
        &self,
        _: bool,
        _: &rotate_cli::engine::report::Counts,
    ) -> Result<Vec<rotate_cli::engine::Rejected>, rotate_cli::engine::error::Error> {
        Ok(Vec::new())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_units_panic_is_one_failed_item_and_the_run_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("failures.jsonl");
    let engine = Engine {
        operation: "scan",
        settings: settings(),
        transform: None,
        failures: Arc::new(FailureLog::new(Some(report.clone()))),
        progress: Arc::new(Silent),
        cancel: Arc::new(AtomicBool::new(false)),
    };
    let sink = Arc::new(Counting::default());
    let summary = engine.run(PanickySource(0), Arc::clone(&sink)).await.expect("the run ends normally");
    assert_eq!(summary.counts.failed, 1);
    assert_eq!(sink.0.load(std::sync::atomic::Ordering::Relaxed), 5, "every unit reaches the sink, in order");
    let report = std::fs::read_to_string(report).expect("report");
    assert!(report.contains("unit 2") && report.contains("a library's assertion"), "{report}");
}
