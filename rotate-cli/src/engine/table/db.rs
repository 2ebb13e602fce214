//! The database connection, on a thread of its own.

use std::sync::mpsc;

use super::mysql;
use super::pg_config::redact_url;
use super::postgres;
use super::spec::{Db, TableSpec, sqlite_path};
use super::sqlite;
use crate::engine::error::{Error, ErrorKind};

/// Opens the database of `spec` and checks the table, its columns and ids.
pub(super) fn connect(spec: &TableSpec) -> Result<Box<dyn Db>, Error> {
    if let Some(path) = sqlite_path(&spec.url) {
        Ok(Box::new(sqlite::SqliteDb::open(path, spec)?))
    } else if spec.url.starts_with("postgres://") || spec.url.starts_with("postgresql://") {
        Ok(Box::new(postgres::PgDb::open(&spec.url, spec)?))
    } else if spec.url.starts_with("mysql://") || spec.url.starts_with("mariadb://") {
        Ok(Box::new(mysql::MysqlDb::open(&spec.url, spec)?))
    } else {
        Err(Error::usage(format!("{} is not a database URL", redact_url(&spec.url)))
            .hint("write sqlite:PATH, postgres://USER@HOST:PORT/DB or mysql://USER@HOST:PORT/DB"))
    }
}

type Job = Box<dyn FnOnce(&mut dyn Db) + Send>;

/// A connection on its own thread: its calls block the caller, never an
/// async worker (they step aside with `block_in_place`).
pub(super) struct DbThread {
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl DbThread {
    pub(super) fn start(spec: TableSpec) -> Result<Self, Error> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready, opened) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("rekey-db".into())
            .spawn(move || {
                let mut db = match connect(&spec) {
                    Ok(db) => {
                        let _ = ready.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = ready.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(db.as_mut());
                }
            })
            .map_err(|e| Error::io("cannot start the database thread", &e))?;
        let this = Self { jobs: Some(jobs), thread: Some(thread) };
        blocking(|| opened.recv())
            .map_err(|_| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))??;
        Ok(this)
    }

    /// Sends `f` to the connection without waiting; the answer comes on the receiver.
    pub(super) fn send<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> T + Send + 'static,
    ) -> Result<mpsc::Receiver<T>, Error> {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |db| {
            let _ = tx.send(f(db));
        });
        self.jobs
            .as_ref()
            .and_then(|j| j.send(job).ok())
            .ok_or_else(|| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))?;
        Ok(rx)
    }

    /// Runs `f` on the connection and waits for it.
    pub(super) fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Db) -> T + Send + 'static,
    ) -> Result<T, Error> {
        let rx = self.send(f)?;
        wait(&rx)
    }
}

impl Drop for DbThread {
    fn drop(&mut self) {
        drop(self.jobs.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

pub(super) fn wait<T>(rx: &mpsc::Receiver<T>) -> Result<T, Error> {
    blocking(|| rx.recv()).map_err(|_| Error::new(ErrorKind::Io, "internal error: the database thread stopped"))
}

/// Runs a blocking call; on a multi-thread async worker, lets the runtime
/// move its other tasks elsewhere meanwhile.
pub(super) fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => tokio::task::block_in_place(f),
        _ => f(),
    }
}
