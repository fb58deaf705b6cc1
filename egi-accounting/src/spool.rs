//! Where messages go: a python-dirq `QueueSimple` spool for the APEL SSM sender, or a
//! writer such as standard output.
//!
//! The spool layout is python-dirq's (what `ssmsend` reads with `path_type: dirq`):
//! intermediate directories `%08x` of the Unix time rounded down to 60 s, element files of
//! 14 lowercase hex digits (`%08x` seconds, `%05x` microseconds, one digit from the PID).
//! An element is written to `<name>.tmp`, synced, hard-linked to its final name (a fresh
//! name on `EEXIST`) and the temporary file unlinked, so a reader never sees a partial
//! element. A run's messages stay temporary files until [`Sink::commit`] links them all, so
//! a run that fails while writing leaves nothing the sender could pick up, and a failure
//! while linking removes what that commit linked.
//!
//! python-dirq is a small on-disk protocol with no Rust implementation, hence this module.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::apel::ApelMessage;
use crate::error::{Error, Result};

/// A destination for messages, written one at a time within a delivery that ends with
/// [`commit`](Sink::commit) or [`roll_back`](Sink::roll_back).
pub trait Sink {
    /// Writes one message of the current delivery.
    fn write(&mut self, message: &ApelMessage) -> Result<()>;

    /// Ends the current delivery: what it wrote stays.
    fn commit(&mut self) -> Result<()>;

    /// Ends the current delivery in failure: removes what it wrote, where the sink can
    /// (a spool can; a terminal cannot).
    fn roll_back(&mut self);

    /// Writes every message, or none: on error nothing of this call is left behind where
    /// the sink can take it back. Returns how many messages were written.
    fn deliver(&mut self, messages: &[ApelMessage]) -> Result<usize> {
        for m in messages {
            if let Err(e) = self.write(m) {
                self.roll_back();
                return Err(e);
            }
        }
        match self.commit() {
            Ok(()) => Ok(messages.len()),
            Err(e) => {
                self.roll_back();
                Err(e)
            }
        }
    }
}

/// A python-dirq `QueueSimple` directory.
#[derive(Debug, Clone)]
pub struct DirqSpool {
    path: PathBuf,
    rndhex: u32,
    pending: Vec<Staged>,
    #[cfg(test)]
    fail_after: Option<usize>,
}

/// The name of an element added to a [`DirqSpool`]: `<dir>/<element>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementName(String);

impl ElementName {
    /// `<dir>/<element>`, as python-dirq names elements.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl DirqSpool {
    /// Opens (and creates, with parents, if needed) the spool directory.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        fs::create_dir_all(&path)
            .map_err(|e| Error::io("cannot create spool directory", &path, e))?;
        if !path.is_dir() {
            return Err(Error::io(
                "spool is not a directory:",
                &path,
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        Ok(Self {
            path,
            rndhex: std::process::id() % 16,
            pending: Vec::new(),
            #[cfg(test)]
            fail_after: None,
        })
    }

    /// The spool directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Adds one element atomically.
    pub fn add(&self, body: &[u8]) -> Result<ElementName> {
        let staged = self.stage(body)?;
        self.publish(&staged)
    }

    /// Writes `body` to a synced `<name>.tmp` in the current intermediate directory: not
    /// yet an element (readers ignore `.tmp`; python-dirq purges stale ones after 300 s).
    fn stage(&self, body: &[u8]) -> Result<Staged> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let secs = now.as_secs();
        let dir_name = format!("{:08x}", secs - secs % 60);
        let dir = self.path.join(&dir_name);
        fs::create_dir_all(&dir)
            .map_err(|e| Error::io("cannot create spool directory", &dir, e))?;
        let mut micros = now.subsec_micros();
        let (tmp, mut file) = loop {
            let tmp = dir.join(format!("{}.tmp", self.element(secs, micros)));
            match OpenOptions::new().write(true).create_new(true).open(&tmp) {
                Ok(f) => break (tmp, f),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    micros = (micros + 1) % 1_000_000
                }
                Err(e) => return Err(Error::io("cannot create spool element", &tmp, e)),
            }
        };
        let written = file.write_all(body).and_then(|()| file.sync_all());
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io("cannot write spool element", &tmp, e));
        }
        Ok(Staged {
            dir,
            dir_name,
            tmp,
            secs,
            micros,
        })
    }

    /// Hard-links a staged file to a fresh element name and removes the temporary name.
    fn publish(&self, staged: &Staged) -> Result<ElementName> {
        let mut micros = staged.micros;
        let name = loop {
            let name = self.element(staged.secs, micros);
            match fs::hard_link(&staged.tmp, staged.dir.join(&name)) {
                Ok(()) => break name,
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    micros = (micros + 1) % 1_000_000
                }
                Err(e) => return Err(Error::io("cannot link spool element", &staged.tmp, e)),
            }
        };
        // The element exists now: a temporary name left behind is harmless (readers skip it
        // and python-dirq purges it), so failing to remove it must not fail the add.
        if let Err(e) = fs::remove_file(&staged.tmp) {
            tracing::warn!(file = %staged.tmp.display(), error = %e, "cannot remove temporary spool file");
        }
        // Make the new directory entry durable before reporting success.
        if let Ok(d) = File::open(&staged.dir) {
            let _ = d.sync_all();
        }
        Ok(ElementName(format!("{}/{name}", staged.dir_name)))
    }

    fn element(&self, secs: u64, micros: u32) -> String {
        format!(
            "{:08x}{:05x}{:01x}",
            secs & 0xffff_ffff,
            micros,
            self.rndhex
        )
    }

    /// Removes an element this process added (used to roll back a failed delivery).
    pub fn remove(&self, name: &ElementName) -> Result<()> {
        let path = self.path.join(&name.0);
        fs::remove_file(&path).map_err(|e| Error::io("cannot remove spool element", &path, e))
    }
}

/// A message written to a temporary file, not yet an element.
#[derive(Debug, Clone)]
struct Staged {
    dir: PathBuf,
    dir_name: String,
    tmp: PathBuf,
    secs: u64,
    micros: u32,
}

/// Messages are staged as temporary files while a run writes them, and only become
/// elements at [`Sink::commit`]: the sender never sees part of a run that then fails.
impl Sink for DirqSpool {
    fn write(&mut self, message: &ApelMessage) -> Result<()> {
        #[cfg(test)]
        if self.fail_after == Some(self.pending.len()) {
            return Err(Error::io(
                "injected failure",
                &self.path,
                io::Error::other("test"),
            ));
        }
        let staged = self.stage(message.as_str().as_bytes())?;
        self.pending.push(staged);
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        let mut published = Vec::with_capacity(self.pending.len());
        for staged in &self.pending {
            match self.publish(staged) {
                Ok(name) => published.push(name),
                Err(e) => {
                    // Take back what this commit already published; roll_back removes
                    // the staged files.
                    for name in &published {
                        if let Err(undo) = self.remove(name) {
                            tracing::error!(element = name.as_str(), error = %undo, "cannot roll back spool element");
                        }
                    }
                    return Err(e);
                }
            }
        }
        tracing::info!(spool = %self.path.display(), messages = published.len(), "messages spooled");
        self.pending.clear();
        Ok(())
    }

    fn roll_back(&mut self) {
        for staged in self.pending.drain(..) {
            if let Err(e) = fs::remove_file(&staged.tmp)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::error!(file = %staged.tmp.display(), error = %e, "cannot remove staged spool file");
            }
        }
    }
}

/// Writes messages to any writer (standard output for a dry run), separated by a blank
/// line, as they come. What was written cannot be taken back: a failed run may leave the
/// first messages on the terminal, never in a spool.
#[derive(Debug)]
pub struct WriterSink<W: Write> {
    writer: W,
    name: &'static str,
    written: usize,
}

impl<W: Write> WriterSink<W> {
    /// Wraps a writer; `name` appears in error messages (e.g. "standard output").
    pub fn new(writer: W, name: &'static str) -> Self {
        Self {
            writer,
            name,
            written: 0,
        }
    }

    /// The wrapped writer.
    pub fn into_inner(self) -> W {
        self.writer
    }
}

impl<W: Write> Sink for WriterSink<W> {
    fn write(&mut self, message: &ApelMessage) -> Result<()> {
        let sep: &[u8] = if self.written > 0 { b"\n" } else { b"" };
        self.writer
            .write_all(sep)
            .and_then(|()| self.writer.write_all(message.as_str().as_bytes()))
            .map_err(|e| Error::io("cannot write to", self.name, e))?;
        self.written += 1;
        Ok(())
    }

    fn commit(&mut self) -> Result<()> {
        self.written = 0;
        self.writer
            .flush()
            .map_err(|e| Error::io("cannot write to", self.name, e))
    }

    fn roll_back(&mut self) {
        self.written = 0;
        let _ = self.writer.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apel::tests::record;
    use crate::apel::{Limits, messages};

    fn elements(root: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for d in fs::read_dir(root).unwrap() {
            let d = d.unwrap().path();
            for e in fs::read_dir(&d).unwrap() {
                out.push(e.unwrap().path());
            }
        }
        out.sort();
        out
    }

    fn three_messages() -> Vec<ApelMessage> {
        let records: Vec<_> = (0..3).map(|i| record(&format!("u{i}"))).collect();
        let limits = Limits {
            max_records: std::num::NonZeroUsize::MIN,
            ..Limits::default()
        };
        messages(&records, limits)
    }

    #[test]
    fn elements_follow_the_dirq_layout() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = DirqSpool::open(dir.path().join("spool")).unwrap();
        assert_eq!(spool.deliver(&three_messages()).unwrap(), 3);
        let files = elements(spool.path());
        assert_eq!(files.len(), 3);
        for f in &files {
            let name = f.file_name().unwrap().to_str().unwrap();
            let parent = f.parent().unwrap().file_name().unwrap().to_str().unwrap();
            assert_eq!(name.len(), 14, "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            );
            assert_eq!(parent.len(), 8);
            let secs = u64::from_str_radix(parent, 16).unwrap();
            assert_eq!(secs % 60, 0);
            assert!(
                fs::read_to_string(f)
                    .unwrap()
                    .starts_with("APEL-cloud-message: v0.4\n")
            );
        }
    }

    #[test]
    fn a_failed_delivery_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = DirqSpool::open(dir.path()).unwrap();
        spool.fail_after = Some(2);
        assert!(spool.deliver(&three_messages()).is_err());
        assert!(elements(spool.path()).is_empty());
        // A later delivery is unaffected, and commits what it wrote.
        spool.fail_after = None;
        assert_eq!(spool.deliver(&three_messages()).unwrap(), 3);
        spool.roll_back();
        assert_eq!(elements(spool.path()).len(), 3);
    }

    #[test]
    fn written_messages_are_not_elements_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = DirqSpool::open(dir.path()).unwrap();
        for m in &three_messages() {
            spool.write(m).unwrap();
        }
        let files = elements(spool.path());
        assert_eq!(files.len(), 3);
        assert!(
            files
                .iter()
                .all(|f| f.extension().is_some_and(|e| e == "tmp"))
        );
        spool.commit().unwrap();
        let files = elements(spool.path());
        assert_eq!(files.len(), 3);
        assert!(files.iter().all(|f| f.extension().is_none()), "{files:?}");
    }

    #[test]
    fn an_unwritable_spool_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        fs::write(&file, "x").unwrap();
        let err = DirqSpool::open(file.join("spool")).unwrap_err();
        assert!(
            err.to_string().contains("cannot create spool directory"),
            "{err}"
        );
        assert!(DirqSpool::open(&file).is_err());
    }

    #[test]
    fn writer_sink_writes_all_messages() {
        let mut sink = WriterSink::new(Vec::new(), "buffer");
        assert_eq!(sink.deliver(&three_messages()).unwrap(), 3);
        let text = String::from_utf8(sink.into_inner()).unwrap();
        assert_eq!(text.matches("APEL-cloud-message: v0.4").count(), 3);
    }
}
