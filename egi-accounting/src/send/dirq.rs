//! Reading a python-dirq `QueueSimple` spool as python-dirq readers (SSM's `send_all`) do, so
//! this sender can run beside SSM on the same spool without sending anything twice.
//!
//! - Elements are `<dir>/<name>`: `dir` 8 and `name` 14 lowercase hex digits; anything else
//!   (`.tmp`, `.lck`, upper case, top-level files) is not an element. Directories and the
//!   names in each are taken in sorted order, as python-dirq iterates.
//! - [`DirqReader::lock`] hard-links `<name>.lck` to the element; `EEXIST` (someone holds it)
//!   or `ENOENT` (someone removed it) means "not ours": skip it. On success the element's
//!   mtime is set to now, so that a lock's age counts from its taking.
//! - [`DirqReader::remove`] unlinks the element, then the lock. [`DirqReader::unlock`]
//!   unlinks only the lock.
//! - [`DirqReader::purge`] does what SSM does after a run: removes `.tmp` files older than
//!   300 s, unlocks locks older than 600 s (their holder died) and removes empty
//!   intermediate directories but the newest.

use std::fs::{self, File, FileTimes};
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::error::{Error, Result};

/// python-dirq's default age of a stale temporary file.
pub const MAX_TEMP: Duration = Duration::from_secs(300);
/// python-dirq's default age of a stale lock.
pub const MAX_LOCK: Duration = Duration::from_secs(600);

/// The name of a spool element, `<dir>/<name>`; also the message id (`empa-id`, `empaid`)
/// SSM sends it under.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementId(String);

impl ElementId {
    /// `<dir>/<name>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    #[cfg(test)]
    pub(crate) fn for_tests(id: &str) -> Self {
        Self(id.to_owned())
    }
}

impl std::fmt::Display for ElementId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn is_hex_name(name: &str, len: usize) -> bool {
    name.len() == len && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A reader of a python-dirq `QueueSimple` directory.
#[derive(Debug, Clone)]
pub struct DirqReader {
    path: PathBuf,
}

impl DirqReader {
    /// A reader of the spool at `path` (which must exist).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        if !path.is_dir() {
            return Err(Error::spool(
                "spool is not a directory:",
                &path,
                io::Error::from(io::ErrorKind::NotFound),
            ));
        }
        Ok(Self { path })
    }

    /// The spool directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn sorted_names(dir: &Path, len: usize) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries =
            fs::read_dir(dir).map_err(|e| Error::spool("cannot list spool directory", dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| Error::spool("cannot list spool directory", dir, e))?;
            if let Some(name) = entry.file_name().to_str()
                && is_hex_name(name, len)
            {
                names.push(name.to_owned());
            }
        }
        names.sort_unstable();
        Ok(names)
    }

    /// Every element, locked or not, in python-dirq's order.
    pub fn elements(&self) -> Result<Vec<ElementId>> {
        let mut out = Vec::new();
        for dir in Self::sorted_names(&self.path, 8)? {
            match Self::sorted_names(&self.path.join(&dir), 14) {
                Ok(names) => out.extend(names.into_iter().map(|n| ElementId(format!("{dir}/{n}")))),
                // Purged by another reader meanwhile.
                Err(Error::Spool { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn element_path(&self, id: &ElementId) -> PathBuf {
        self.path.join(&id.0)
    }

    fn lock_path(&self, id: &ElementId) -> PathBuf {
        self.path.join(format!("{}.lck", id.0))
    }

    /// Locks an element; `Ok(false)` when another reader holds it or removed it.
    pub fn lock(&self, id: &ElementId) -> Result<bool> {
        let path = self.element_path(id);
        let lock = self.lock_path(id);
        match fs::hard_link(&path, &lock) {
            Ok(()) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                ) =>
            {
                return Ok(false);
            }
            Err(e) => return Err(Error::spool("cannot lock spool element", &path, e)),
        }
        let touched = File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_times(FileTimes::new().set_modified(SystemTime::now())));
        match touched {
            Ok(()) => Ok(true),
            // Locked and removed by another reader while we linked.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let _ = fs::remove_file(&lock);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_file(&lock);
                Err(Error::spool("cannot touch spool element", &path, e))
            }
        }
    }

    /// Reads a locked element (through its lock, as python-dirq does).
    pub fn get(&self, id: &ElementId) -> Result<Vec<u8>> {
        let lock = self.lock_path(id);
        fs::read(&lock).map_err(|e| Error::spool("cannot read spool element", lock, e))
    }

    /// Removes a locked element.
    pub fn remove(&self, id: &ElementId) -> Result<()> {
        let path = self.element_path(id);
        fs::remove_file(&path)
            .map_err(|e| Error::spool("cannot remove spool element", &path, e))?;
        let lock = self.lock_path(id);
        fs::remove_file(&lock).map_err(|e| Error::spool("cannot remove spool lock", lock, e))
    }

    /// Unlocks an element, leaving it for the next run.
    pub fn unlock(&self, id: &ElementId) -> Result<()> {
        let lock = self.lock_path(id);
        match fs::remove_file(&lock) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::spool("cannot unlock spool element", lock, e)),
        }
    }

    /// Tidies the spool as SSM does after sending (python-dirq's `purge()` with its
    /// defaults): stale temporary files and locks, empty directories but the newest.
    pub fn purge(&self, max_temp: Duration, max_lock: Duration) -> Result<()> {
        let now = SystemTime::now();
        let dirs = Self::sorted_names(&self.path, 8)?;
        for dir in &dirs {
            let dir = self.path.join(dir);
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                let max = if name.ends_with(".tmp") {
                    max_temp
                } else if name.ends_with(".lck") {
                    max_lock
                } else {
                    continue;
                };
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|m| now.duration_since(m).ok());
                if age.is_some_and(|a| a > max) {
                    tracing::warn!(file = %entry.path().display(), "removing stale spool file");
                    match fs::remove_file(entry.path()) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => {
                            return Err(Error::spool("cannot remove stale", entry.path(), e));
                        }
                    }
                }
            }
        }
        if let Some((_newest, older)) = dirs.split_last() {
            for dir in older {
                // Fails (and is left) when not empty, or gone already.
                let _ = fs::remove_dir(self.path.join(dir));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::DirqSpool;

    fn spool_with(bodies: &[&str]) -> (tempfile::TempDir, DirqReader, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let spool = DirqSpool::open(dir.path()).unwrap();
        let names = bodies
            .iter()
            .map(|b| spool.add(b.as_bytes()).unwrap().as_str().to_owned())
            .collect();
        let reader = DirqReader::open(dir.path()).unwrap();
        (dir, reader, names)
    }

    #[test]
    fn reads_what_the_spool_writes_in_order() {
        let (dir, reader, mut names) = spool_with(&["a", "b", "c"]);
        // Not elements: a temporary file, a lock alone, upper case, a top-level file.
        let sub = dir.path().join(&names[0][..8]);
        fs::write(sub.join("0123456789abcd.tmp"), "t").unwrap();
        fs::write(sub.join("0123456789ABCD"), "t").unwrap();
        fs::write(dir.path().join("0123456789abcd"), "t").unwrap();
        fs::create_dir(dir.path().join("not-hex!")).unwrap();
        names.sort();
        let ids = reader.elements().unwrap();
        let got: Vec<_> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        assert_eq!(got, names);
        assert!(reader.lock(&ids[1]).unwrap());
        assert_eq!(reader.get(&ids[1]).unwrap().len(), 1);
        // A locked element is still an element, and cannot be locked twice.
        assert_eq!(reader.elements().unwrap().len(), 3);
        assert!(!reader.lock(&ids[1]).unwrap());
        reader.remove(&ids[1]).unwrap();
        assert_eq!(reader.elements().unwrap().len(), 2);
        assert!(!reader.lock(&ids[1]).unwrap(), "a removed element");
        assert!(reader.lock(&ids[0]).unwrap());
        reader.unlock(&ids[0]).unwrap();
        assert!(reader.lock(&ids[0]).unwrap(), "unlocked, lockable again");
    }

    #[test]
    fn purge_releases_stale_locks_and_temporary_files_only() {
        let (dir, reader, _) = spool_with(&["a", "b"]);
        let ids = reader.elements().unwrap();
        assert!(reader.lock(&ids[0]).unwrap());
        assert!(reader.lock(&ids[1]).unwrap());
        let sub = dir.path().join(&ids[0].as_str()[..8]);
        let tmp = sub.join("0123456789abcd.tmp");
        fs::write(&tmp, "t").unwrap();
        let old = SystemTime::now() - Duration::from_secs(700);
        // An old lock (a dead holder); the element shares its inode, so its time too.
        File::options()
            .write(true)
            .open(reader.lock_path(&ids[0]))
            .unwrap()
            .set_times(FileTimes::new().set_modified(old))
            .unwrap();
        reader.purge(MAX_TEMP, MAX_LOCK).unwrap();
        assert!(!reader.lock_path(&ids[0]).exists(), "stale lock released");
        assert!(reader.lock_path(&ids[1]).exists(), "fresh lock kept");
        assert!(tmp.exists(), "fresh temporary file kept");
        reader.purge(Duration::ZERO, MAX_LOCK).unwrap();
        assert!(!tmp.exists());
        assert_eq!(
            reader.elements().unwrap().len(),
            2,
            "elements are never purged"
        );
    }

    #[test]
    fn a_missing_spool_is_a_clear_error() {
        let err = DirqReader::open("/nonexistent/spool").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/spool"), "{err}");
    }
}
