//! What survives a restart: users, their groups, and for each server the spawner's state
//! (KubeSpawner's keys), its URL and a hash of its API token. One JSON file, rewritten
//! atomically (a temporary file renamed over it) after every change, so a crash leaves the
//! old or the new file, never half of one.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use egi_spawner::SpawnerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The whole file.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Saved {
    /// Users by hub name.
    #[serde(default)]
    pub users: BTreeMap<String, SavedUser>,
}

/// One user.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedUser {
    /// Their groups (VOs), for profiles and accounting.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Their primary group.
    #[serde(default)]
    pub primary_group: Option<String>,
    /// Whether they logged in with Check-in (so their tokens are in the token store).
    #[serde(default)]
    pub checkin: bool,
    /// Servers that were running or starting, by name (`""` is the default server).
    #[serde(default)]
    pub servers: BTreeMap<String, SavedServer>,
}

/// One server.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct SavedServer {
    /// The spawner's state (`pod_name`, `namespace`, `pvc_name`, ...).
    pub spawner: SpawnerState,
    /// Where the server answers (the pod's address), once it was ready.
    #[serde(default)]
    pub upstream: Option<String>,
    /// SHA-256 of the server's API token (hex): the token itself is only in the pod's Secret.
    pub token_sha256: String,
    /// When it was started (RFC 3339).
    #[serde(default)]
    pub started: Option<String>,
    /// The profile and options it was started with.
    #[serde(default)]
    pub user_options: serde_json::Map<String, serde_json::Value>,
}

/// The hex SHA-256 of a token.
pub fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    /// Serialises writers: the newest content wins, never an interleaving.
    lock: std::sync::Mutex<()>,
}

impl StateFile {
    /// The file at `path` (created at the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        StateFile {
            path: path.into(),
            lock: std::sync::Mutex::new(()),
        }
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was saved; empty if there is no file yet.
    pub fn load(&self) -> std::io::Result<Saved> {
        match std::fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{}: {e}", self.path.display()),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Saved::default()),
            Err(e) => Err(e),
        }
    }

    /// Replaces the file with `saved`, atomically.
    pub fn save(&self, saved: &Saved) -> std::io::Result<()> {
        let _writer = self
            .lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let json = serde_json::to_vec_pretty(saved).map_err(std::io::Error::other)?;
        let dir = match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let tmp = dir.join(format!(
            ".{}.tmp",
            self.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        ));
        {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&json)?;
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saves_and_loads_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = StateFile::new(dir.path().join("state.json"));
        assert_eq!(file.load().unwrap(), Saved::default());
        let mut saved = Saved::default();
        let mut user = SavedUser::default();
        user.servers.insert(
            String::new(),
            SavedServer {
                token_sha256: token_hash("t"),
                upstream: Some("http://10.0.0.1:8888".into()),
                ..SavedServer::default()
            },
        );
        saved.users.insert("alice".into(), user);
        file.save(&saved).unwrap();
        assert_eq!(file.load().unwrap(), saved);
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "no temporary file is left behind");
        assert!(
            !std::fs::read_to_string(file.path())
                .unwrap()
                .contains("\"t\"")
        );
    }

    #[test]
    fn a_corrupt_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, "{ not json").unwrap();
        let e = StateFile::new(&path).load().unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::InvalidData);
    }
}
