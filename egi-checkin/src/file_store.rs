//! An encrypted token store in a directory, safe to share between processes.
//!
//! One file per identity, `<hex of key>.tokens`: `EGICHK1\n`, a random 24-byte nonce, then
//! the [`TokenSet`] as JSON sealed with XChaCha20-Poly1305 (the identity key is authenticated
//! too, so a file copied to another identity's name does not decrypt). Files are written
//! with mode 0600 to a temporary name, synced and renamed over the old one (readers see the
//! old or the new file, never half of one); writers take an exclusive `flock` on
//! `<hex>.lock`, and [`TokenStore::lock`] takes one on `<hex>.refresh.lock` so that two
//! processes never refresh the same grant at once.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fs4::fs_std::FileExt;
use secrecy::zeroize::Zeroize;
use secrecy::{ExposeSecret, SecretBox};

use crate::error::{Error, Result};
use futures_util::future::BoxFuture;

use crate::store::{StoreLock, TokenStore};
use crate::token::TokenSet;

const MAGIC: &[u8; 8] = b"EGICHK1\n";
const NONCE_LEN: usize = 24;
const AAD_PREFIX: &[u8] = b"egi-checkin token file v1\0";
/// Longest identity key. File names are its hex plus at most 33 bytes (the temporary file
/// `.<hex>.<pid, up to 10 digits>.<16 hex>.tmp`), and must fit in 255 bytes: 2 × 110 + 33.
const MAX_KEY_LEN: usize = 110;

/// A 256-bit key for [`EncryptedFileStore`]. `Debug` shows nothing of it.
pub struct FileStoreKey(SecretBox<[u8; 32]>);

impl fmt::Debug for FileStoreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FileStoreKey([redacted])")
    }
}

impl FileStoreKey {
    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        Self(SecretBox::new(Box::new(bytes)))
    }

    /// A new random key.
    pub fn generate() -> Self {
        let key = XChaCha20Poly1305::generate_key(&mut OsRng);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(&key);
        Self::from_bytes(bytes)
    }

    /// Reads a 32-byte key file, or creates one (mode 0600) with a new random key.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match fs::read(path) {
            Ok(mut bytes) => {
                let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
                    Error::Config(format!(
                        "key file {} does not hold 32 bytes",
                        path.display()
                    ))
                });
                bytes.zeroize();
                key.map(Self::from_bytes)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let key = Self::generate();
                let mut file = OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| io_error("create", path, e))?;
                file.write_all(key.0.expose_secret())
                    .and_then(|()| file.sync_all())
                    .map_err(|e| io_error("write", path, e))?;
                Ok(key)
            }
            Err(e) => Err(io_error("read", path, e)),
        }
    }
}

fn io_error(action: &str, path: &Path, e: std::io::Error) -> Error {
    Error::store(format!("{action} {}", path.display()), e)
}

/// The encrypted file store; see the module documentation.
#[derive(Clone)]
pub struct EncryptedFileStore {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    cipher: XChaCha20Poly1305,
}

impl fmt::Debug for EncryptedFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EncryptedFileStore")
            .field("dir", &self.inner.dir)
            .finish_non_exhaustive()
    }
}

impl EncryptedFileStore {
    /// A store in `dir` (created with mode 0700 if missing).
    pub fn new(dir: impl Into<PathBuf>, key: &FileStoreKey) -> Result<Self> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|e| io_error("create directory", &dir, e))?;
        let cipher = XChaCha20Poly1305::new(key.0.expose_secret().into());
        Ok(Self {
            inner: Arc::new(Inner { dir, cipher }),
        })
    }

    /// The file holding `key`'s tokens.
    pub fn path_of(&self, key: &str) -> Result<PathBuf> {
        self.inner.path(key, "tokens")
    }

    async fn blocking<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Inner) -> Result<T> + Send + 'static,
    {
        let inner = Arc::clone(&self.inner);
        tokio::task::spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::store("run a file operation", e))?
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn aad(key: &str) -> Vec<u8> {
    [AAD_PREFIX, key.as_bytes()].concat()
}

/// Seals `plaintext` for `key` (pure but for the random nonce).
fn seal(cipher: &XChaCha20Poly1305, key: &str, plaintext: &[u8]) -> Result<Vec<u8>> {
    let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: &aad(key),
            },
        )
        .map_err(|_| Error::Config("encryption failed".into()))?;
    Ok([MAGIC.as_slice(), nonce.as_slice(), &sealed].concat())
}

/// Opens a file's bytes for `key`; `None` if the format is wrong or authentication fails.
fn open(cipher: &XChaCha20Poly1305, key: &str, bytes: &[u8]) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(MAGIC.as_slice())?;
    if rest.len() < NONCE_LEN {
        return None;
    }
    let (nonce, sealed) = rest.split_at(NONCE_LEN);
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: &aad(key),
            },
        )
        .ok()
}

impl Inner {
    fn path(&self, key: &str, suffix: &str) -> Result<PathBuf> {
        if key.is_empty() || key.len() > MAX_KEY_LEN {
            return Err(Error::Config(format!(
                "identity keys must have 1 to {MAX_KEY_LEN} bytes"
            )));
        }
        Ok(self.dir.join(format!("{}.{suffix}", hex(key.as_bytes()))))
    }

    fn lock_file(&self, key: &str, suffix: &str) -> Result<File> {
        let path = self.path(key, suffix)?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| io_error("open", &path, e))?;
        FileExt::lock_exclusive(&file).map_err(|e| io_error("lock", &path, e))?;
        Ok(file)
    }

    fn load(&self, key: &str) -> Result<Option<TokenSet>> {
        let path = self.path(key, "tokens")?;
        let mut bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("read", &path, e)),
        };
        let plain = open(&self.cipher, key, &bytes);
        bytes.zeroize();
        let mut plain = plain.ok_or_else(|| Error::Decrypt(path.clone()))?;
        let set = std::str::from_utf8(&plain)
            .ok()
            .and_then(|json| TokenSet::from_json(json).ok());
        plain.zeroize();
        set.map(Some).ok_or(Error::Decrypt(path))
    }

    fn save(&self, key: &str, tokens: &TokenSet) -> Result<()> {
        let _lock = self.lock_file(key, "lock")?;
        let path = self.path(key, "tokens")?;
        let sealed = seal(
            &self.cipher,
            key,
            tokens.to_json().expose_secret().as_bytes(),
        )?;
        let tmp = self.dir.join(format!(
            ".{}.{}.{:016x}.tmp",
            hex(key.as_bytes()),
            std::process::id(),
            fastrand::u64(..)
        ));
        let written = (|| {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&tmp)?;
            file.write_all(&sealed)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            // The rename itself is durable once the directory is synced.
            File::open(&self.dir)?.sync_all()
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        written.map_err(|e| io_error("write", &path, e))
    }

    fn remove(&self, key: &str) -> Result<()> {
        let _lock = self.lock_file(key, "lock")?;
        let path = self.path(key, "tokens")?;
        match fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(io_error("remove", &path, e)),
            _ => Ok(()),
        }
    }
}

impl TokenStore for EncryptedFileStore {
    fn load<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<Option<TokenSet>>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |s| s.load(&key)))
    }

    fn save<'a>(&'a self, key: &'a str, tokens: &'a TokenSet) -> BoxFuture<'a, Result<()>> {
        let (key, tokens) = (key.to_owned(), tokens.clone());
        Box::pin(self.blocking(move |s| s.save(&key, &tokens)))
    }

    fn remove<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<()>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |s| s.remove(&key)))
    }

    fn lock<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<StoreLock>> {
        let key = key.to_owned();
        Box::pin(self.blocking(move |s| s.lock_file(&key, "refresh.lock").map(StoreLock::new)))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;

    fn set(access: &str) -> TokenSet {
        TokenSet::new(
            access.into(),
            SystemTime::now(),
            Some(Duration::from_secs(60)),
        )
        .with_refresh_token(format!("refresh-of-{access}").into())
    }

    #[tokio::test]
    async fn longest_key_fits_every_file_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EncryptedFileStore::new(dir.path().join("tokens"), &FileStoreKey::generate())
            .expect("store");
        // The longest key: lock, temporary and token files all have names within 255 bytes.
        let key = "k".repeat(MAX_KEY_LEN);
        let _held = store.lock(&key).await.expect("refresh lock");
        store.save(&key, &set("a")).await.expect("save");
        let back = store.load(&key).await.expect("load").expect("stored");
        assert_eq!(back.access_token().expose_secret(), "a");
        let longest_temp = 1 + 2 * MAX_KEY_LEN + 1 + u32::MAX.to_string().len() + 1 + 16 + 4;
        assert!(longest_temp <= 255, "{longest_temp}");
        // One byte more is refused up front, not by the file system halfway through.
        let e = store
            .save(&"k".repeat(MAX_KEY_LEN + 1), &set("a"))
            .await
            .expect_err("too long");
        assert!(matches!(e, Error::Config(_)), "{e}");
    }

    #[tokio::test]
    async fn round_trip_encrypted_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = EncryptedFileStore::new(dir.path().join("tokens"), &FileStoreKey::generate())
            .expect("store");
        assert!(store.load("alice@egi.eu").await.expect("load").is_none());
        store
            .save("alice@egi.eu", &set("secret-access"))
            .await
            .expect("save");
        let path = store.path_of("alice@egi.eu").expect("path");
        let raw = fs::read(&path).expect("file");
        assert!(raw.starts_with(MAGIC));
        assert!(!raw.windows(13).any(|w| w == b"secret-access"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            fs::metadata(&path).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        let back = store
            .load("alice@egi.eu")
            .await
            .expect("load")
            .expect("stored");
        assert_eq!(back.access_token().expose_secret(), "secret-access");
        assert_eq!(
            back.refresh_token().map(|t| t.expose_secret()),
            Some("refresh-of-secret-access")
        );
        store.remove("alice@egi.eu").await.expect("remove");
        assert!(store.load("alice@egi.eu").await.expect("load").is_none());
        assert!(!format!("{store:?}{:?}", FileStoreKey::generate()).contains("cipher"));
    }

    #[tokio::test]
    async fn wrong_key_swapped_file_and_tampering_are_detected() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = FileStoreKey::from_bytes([7; 32]);
        let store = EncryptedFileStore::new(dir.path(), &key).expect("store");
        store.save("alice", &set("a")).await.expect("save");
        store.save("bob", &set("b")).await.expect("save");
        let other =
            EncryptedFileStore::new(dir.path(), &FileStoreKey::from_bytes([8; 32])).expect("store");
        assert!(matches!(other.load("alice").await, Err(Error::Decrypt(_))));
        // Bob's file under Alice's name does not decrypt: the identity is authenticated.
        fs::copy(
            store.path_of("bob").expect("path"),
            store.path_of("alice").expect("path"),
        )
        .expect("copy");
        assert!(matches!(store.load("alice").await, Err(Error::Decrypt(_))));
        let path = store.path_of("bob").expect("path");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).expect("write");
        assert!(matches!(store.load("bob").await, Err(Error::Decrypt(_))));
        assert!(store.load("").await.is_err());
    }

    #[tokio::test]
    async fn concurrent_writers_from_two_store_instances_never_tear_a_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = [3u8; 32];
        let a = EncryptedFileStore::new(dir.path(), &FileStoreKey::from_bytes(key)).expect("store");
        let b = EncryptedFileStore::new(dir.path(), &FileStoreKey::from_bytes(key)).expect("store");
        let mut tasks = Vec::new();
        for i in 0..40 {
            let store = if i % 2 == 0 { a.clone() } else { b.clone() };
            tasks.push(tokio::spawn(async move {
                store
                    .save("carol", &set(&format!("token-{i}")))
                    .await
                    .expect("save");
                store.load("carol").await.expect("load").expect("present")
            }));
        }
        for t in tasks {
            let read = t.await.expect("task");
            assert!(read.access_token().expose_secret().starts_with("token-"));
        }
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[tokio::test]
    async fn refresh_lock_excludes_another_store_instance() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a =
            EncryptedFileStore::new(dir.path(), &FileStoreKey::from_bytes([1; 32])).expect("store");
        let b =
            EncryptedFileStore::new(dir.path(), &FileStoreKey::from_bytes([1; 32])).expect("store");
        let held = a.lock("dave").await.expect("lock");
        let waiting = tokio::spawn(async move { b.lock("dave").await.map(|_| ()) });
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "the second lock must wait");
        drop(held);
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("acquired after release")
            .expect("task")
            .expect("lock");
    }

    #[test]
    fn key_file_is_created_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("key");
        let k1 = FileStoreKey::load_or_create(&path).expect("create");
        let k2 = FileStoreKey::load_or_create(&path).expect("load");
        assert_eq!(k1.0.expose_secret(), k2.0.expose_secret());
        fs::write(&path, b"short").expect("write");
        assert!(FileStoreKey::load_or_create(&path).is_err());
    }
}
