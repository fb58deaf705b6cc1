//! [`Progress`]: what has been reported, kept across runs. The timestamp file holds the end
//! of the last period wholly accepted (`%Y-%m-%dT%H:%M:%SZ`, the Python tool's file and
//! format); beside it, `<timestamp file>.sent` lists the metrics of the period in progress
//! that the API accepted, one JSON key a line, so that a run cut off in the middle of a
//! period sends only the rest of it next time.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::error::{Error, Result};
use super::report::{Period, parse_date, zulu};

/// The timestamp file and the record of metrics sent; both writes are flushed to disk
/// before the next metric goes out.
#[derive(Debug)]
pub struct Progress {
    timestamp: PathBuf,
    sent: PathBuf,
}

fn io<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> Error + 'a {
    move |source| Error::Progress {
        action,
        path: path.to_owned(),
        source,
    }
}

impl Progress {
    /// Progress kept in `timestamp_file` (and `<timestamp_file>.sent`).
    pub fn new(timestamp_file: impl Into<PathBuf>) -> Self {
        let timestamp = timestamp_file.into();
        let mut sent = timestamp.clone().into_os_string();
        sent.push(".sent");
        Self {
            timestamp,
            sent: sent.into(),
        }
    }

    /// The timestamp file.
    pub fn timestamp_file(&self) -> &Path {
        &self.timestamp
    }

    /// The time in the timestamp file; `None` if there is none yet. Content that is not a
    /// date is logged and taken as none, as the Python tool does.
    pub fn last_end(&self) -> Result<Option<i64>> {
        let text = match fs::read_to_string(&self.timestamp) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io("cannot read timestamp file", &self.timestamp)(e)),
        };
        match parse_date(&text) {
            Ok(t) => Ok(Some(t)),
            Err(e) => {
                tracing::warn!(file = %self.timestamp.display(), "timestamp file ignored: {e}");
                Ok(None)
            }
        }
    }

    /// The keys of the metrics of `period` already accepted.
    pub fn sent_in(&self, period: Period) -> Result<HashSet<String>> {
        let text = match fs::read_to_string(&self.sent) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(HashSet::new()),
            Err(e) => return Err(io("cannot read", &self.sent)(e)),
        };
        let prefix = format!("[{}", serde_json::Value::from(zulu(period.start)));
        Ok(text
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(str::to_owned)
            .collect())
    }

    /// Records that the metric with `key` was accepted (appended and flushed to disk).
    pub fn mark_sent(&self, key: &str) -> Result<()> {
        let err = io("cannot record a metric sent in", &self.sent);
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.sent)
            .map_err(io("cannot record a metric sent in", &self.sent))?;
        f.write_all(format!("{key}\n").as_bytes())
            .and_then(|()| f.sync_data())
            .map_err(err)
    }

    /// Records that every metric up to `end` was accepted: writes the timestamp file
    /// (replaced atomically, never moved back) and forgets the metrics sent.
    pub fn advance(&self, end: i64) -> Result<()> {
        if self.last_end()?.is_some_and(|t| t >= end) {
            return self.forget_sent();
        }
        let mut tmp = self.timestamp.clone().into_os_string();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let write = || -> std::io::Result<()> {
            let mut f = File::create(&tmp)?;
            f.write_all(zulu(end).as_bytes())?;
            f.sync_all()?;
            fs::rename(&tmp, &self.timestamp)
        };
        write().map_err(io("cannot write timestamp file", &self.timestamp))?;
        self.forget_sent()
    }

    fn forget_sent(&self) -> Result<()> {
        match fs::remove_file(&self.sent) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(io("cannot remove", &self.sent)(e))
            }
            _ => Ok(()),
        }
    }
}
