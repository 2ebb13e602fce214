//! The files of a run, walked lazily in a stable order and locked for its life.

use std::fs::File;
use std::path::{Path, PathBuf};

use globset::GlobSet;

use super::base::*;
use crate::engine::error::{Error, ErrorKind, ItemError, ItemErrorCode};
use crate::engine::item::{Item, Unit};
use crate::engine::ports::Source;

/// What a file unit carries.
#[derive(Debug)]
pub struct FileUnit {
    pub(super) path: PathBuf,
    pub(super) stamp: Option<Stamp>,
}

/// The files of a run: the targets walked lazily in a stable order.
pub struct FileSource {
    roots: Vec<PathBuf>,
    include: Option<GlobSet>,
    exclude: Option<GlobSet>,
    walk: Box<dyn Iterator<Item = (PathBuf, walkdir::Result<walkdir::DirEntry>)> + Send>,
    total: Option<u64>,
    _locks: Vec<File>,
}

impl FileSource {
    /// The files under `roots`, filtered by globs relative to each root.
    /// Each root is locked for the life of the source, so two runs can
    /// never work on one target at once.
    ///
    /// # Errors
    /// A missing target, a bad glob, or a target another run holds.
    pub fn new(roots: Vec<PathBuf>, include: &[String], exclude: &[String]) -> Result<Self, Error> {
        let mut locks = Vec::new();
        for root in &roots {
            if std::fs::symlink_metadata(root).is_err() {
                return Err(Error::new(ErrorKind::Io, format!("target {} does not exist", root.display())));
            }
            locks.push(lock_target(root)?);
        }
        let walk_roots = roots.clone();
        let walk = Box::new(walk_roots.into_iter().flat_map(|root| {
            walkdir::WalkDir::new(&root).sort_by_file_name().into_iter().map(move |e| (root.clone(), e))
        }));
        Ok(Self { roots, include: globs(include)?, exclude: globs(exclude)?, walk, total: None, _locks: locks })
    }

    /// Counts the files first, for a progress bar with a total.
    ///
    /// # Errors
    /// A directory that cannot be listed.
    pub fn with_total(mut self) -> Result<Self, Error> {
        let mut n = 0;
        for root in &self.roots {
            for entry in walkdir::WalkDir::new(root) {
                let entry =
                    entry.map_err(|e| Error::new(ErrorKind::Io, format!("cannot list {}: {e}", root.display())))?;
                if self.wanted(root, entry.path(), entry.file_type().is_file()) {
                    n += 1;
                }
            }
        }
        self.total = Some(n);
        Ok(self)
    }

    /// The default journal: beside the first target, named after it.
    pub fn default_journal(&self) -> PathBuf {
        let root = &self.roots[0];
        let name = root.file_name().map_or_else(|| "rekey".into(), |n| n.to_string_lossy().into_owned());
        let parent = root
            .canonicalize()
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        parent.join(format!("{name}.rekey-journal"))
    }

    /// The targets, as given.
    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    fn wanted(&self, root: &Path, path: &Path, is_file: bool) -> bool {
        let Some(name) = path.file_name().map(|n| n.to_string_lossy()) else {
            return false;
        };
        if !is_file
            || name.contains(".rekey-tmp.")
            || name.contains(BACKUP_MARK)
            || OWN_SUFFIXES.iter().any(|s| name.ends_with(s))
        {
            return false;
        }
        let relative = path.strip_prefix(root).unwrap_or(path);
        let relative = if relative.as_os_str().is_empty() { Path::new(name.as_ref()) } else { relative };
        !(self.include.as_ref().is_some_and(|g| !g.is_match(relative))
            || self.exclude.as_ref().is_some_and(|g| g.is_match(relative)))
    }
}

impl Source for FileSource {
    type Payload = FileUnit;

    fn next_unit(&mut self) -> Result<Option<Unit<FileUnit>>, Error> {
        loop {
            let Some((root, entry)) = self.walk.next() else {
                return Ok(None);
            };
            let entry = entry.map_err(|e| Error::new(ErrorKind::Io, format!("cannot list {}: {e}", root.display())))?;
            let path = entry.path();
            if entry.file_type().is_file()
                && path.file_name().is_some_and(|n| n.to_string_lossy().contains(".rekey-tmp."))
            {
                // The leftover of a write interrupted before its rename: the
                // original beside it is intact, and the target lock rules out
                // a live run owning it.
                if let Err(e) = std::fs::remove_file(path) {
                    tracing::warn!("cannot remove the stale temporary {}: {e}", path.display());
                }
                continue;
            }
            if !self.wanted(&root, path, entry.file_type().is_file()) {
                continue;
            }
            // Absolute, so a rollback from another directory finds the file.
            let id = path.canonicalize().unwrap_or_else(|_| path.to_path_buf()).display().to_string();
            return Ok(Some(Unit::new(id, FileUnit { path: path.to_path_buf(), stamp: None })));
        }
    }

    fn total(&self) -> Option<u64> {
        self.total
    }

    async fn load(unit: &mut Unit<FileUnit>) -> Result<(), ItemError> {
        let path = unit.payload.path.clone();
        let read = tokio::task::spawn_blocking(move || -> std::io::Result<(Stamp, Vec<u8>, bool)> {
            let stamp = Stamp::of(&path)?;
            if stamp.len >= STREAM_FROM
                && let Some(header) = read_framed_header(&path)?
            {
                return Ok((stamp, header, true));
            }
            Ok((stamp, std::fs::read(&path)?, false))
        })
        .await
        .map_err(|e| ItemError::new(ItemErrorCode::Io, e.to_string()))?;
        let (stamp, bytes, header_only) =
            read.map_err(|e| ItemError::new(ItemErrorCode::Io, format!("cannot read: {e}")))?;
        unit.payload.stamp = Some(stamp);
        let mut item = Item::new(unit.id.clone(), bytes);
        item.header_only = header_only;
        unit.items = vec![item];
        Ok(())
    }
}

/// Locks a target for the run: a directory itself, a single file's directory.
pub(super) fn lock_target(root: &Path) -> Result<File, Error> {
    let dir = if root.is_dir() {
        root.to_path_buf()
    } else {
        match root.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        }
    };
    let file = File::open(&dir).map_err(|e| Error::io(format!("cannot open {}", dir.display()), &e))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => {
            Err(Error::usage(format!("another rekey run is working on {} right now", root.display()))
                .hint("two runs on one target cannot run at once: wait for it, or stop it and rerun with --resume"))
        }
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io(format!("cannot lock {}", dir.display()), &e)),
    }
}
