//! The brain: deputy's store of credentials and pending flows. Every value is sealed
//! ([`seal`]) under its own key path; the raw store ([`Store`], sled by default) only ever
//! sees ciphertext.
//!
//! On disk (`[brain] path`, 0700): `canary` (a sealed known value that tells a wrong
//! `DEPUTY_SECRET` before anything is opened or written), `db/` (sled) and `commit` (the
//! last durable commit, which tells a truncated database from a whole one).

pub mod admin;
pub mod memory;
pub mod redis;
pub mod seal;
pub mod sled;
pub mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use secrecy::SecretString;
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

use self::seal::{SealError, Sealer};

/// A raw key-value store of sealed bytes. sled today; a networked store for several replicas
/// implements the same trait.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
    /// Writes and makes the write durable before returning.
    async fn put(&self, key: &[u8], value: Vec<u8>) -> anyhow::Result<()>;
    /// Deletes durably; true when something was there.
    async fn delete(&self, key: &[u8]) -> anyhow::Result<bool>;
    /// Writes (`Some`) and deletes (`None`) that land together, durably, or not at all.
    async fn put_all(&self, writes: Vec<(Vec<u8>, Option<Vec<u8>>)>) -> anyhow::Result<()>;
    /// All keys starting with `prefix`.
    async fn keys(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>>;
    /// Like `put`, for a record that means nothing after `expires_at` (Unix seconds): a store
    /// with native expiry drops it then. Readers still check expiry themselves.
    async fn put_expiring(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<()> {
        let _ = expires_at;
        self.put(key, value).await
    }
    /// Adds one to a plain (unsealed) counter, atomically and durably, and returns the new
    /// count. Counters live apart from records: they hold no secret.
    async fn increment(&self, counter: &[u8], expires_at: u64) -> anyhow::Result<u64>;
    /// Writes `value` only if `key` holds nothing; true when it did. For locks and
    /// de-duplication: atomic across every process sharing the store.
    async fn put_if_absent(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<bool>;
    /// Drops a `put_if_absent` marker (a lock released early).
    async fn remove_marker(&self, key: &[u8]) -> anyhow::Result<()>;
}

/// Counters and locks share the embedded stores' key space under a first byte no key path
/// starts with (key paths are ASCII), and are left out of every listing.
pub(crate) fn private_key(key: &[u8]) -> Vec<u8> {
    let mut k = vec![0xff];
    k.extend_from_slice(key);
    k
}

pub(crate) fn is_private(key: &[u8]) -> bool {
    key.first() == Some(&0xff)
}

/// Unix seconds now.
pub fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A counter or lock value written through a single writer: `count` then `expires_at`.
pub(crate) fn writer_increment(old: Option<&[u8]>, expires_at: u64) -> Vec<u8> {
    let now = now_unix();
    let count = old
        .and_then(|b| {
            let count = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
            let until = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
            (until > now).then_some(count)
        })
        .unwrap_or(0);
    let mut out = (count + 1).to_be_bytes().to_vec();
    out.extend_from_slice(&expires_at.to_be_bytes());
    out
}

pub(crate) fn read_count(b: &[u8]) -> u64 {
    b.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .unwrap_or(0)
}

/// Whether a `put_if_absent` value (expiry first, then the value) is still live.
pub(crate) fn live_until(b: &[u8]) -> bool {
    b.get(..8)
        .and_then(|b| b.try_into().ok())
        .map(u64::from_be_bytes)
        .is_some_and(|until| until > now_unix())
}

/// Who a credential belongs to: the same numeric id on two platforms, or in two workspaces,
/// is two different people.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Owner {
    pub adapter: String,
    pub workspace: String,
    pub user: String,
}

/// A record's place in the brain. Components are percent-encoded so that a `/` in a user id
/// cannot make one key path look like another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyPath(String);

impl KeyPath {
    pub fn credential(owner: &Owner, service: &str) -> KeyPath {
        KeyPath::of(
            "cred",
            &[&owner.adapter, &owner.workspace, &owner.user, service],
        )
    }

    pub fn of(kind: &str, parts: &[&str]) -> KeyPath {
        let mut s =
            String::with_capacity(kind.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
        s.push_str(kind);
        for p in parts {
            s.push('/');
            // Every lookup builds a path: an id that needs no escaping is copied as it is.
            if p.bytes().all(|b| b.is_ascii_alphanumeric()) {
                s.push_str(p);
            } else {
                s.extend(percent_encoding::utf8_percent_encode(
                    p,
                    percent_encoding::NON_ALPHANUMERIC,
                ));
            }
        }
        KeyPath(s)
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl std::fmt::Display for KeyPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrainError {
    #[error(
        "DEPUTY_SECRET does not match the secret this brain ({dir}) was created with (or its \
         canary file was altered); nothing was written. Set the right secret (while rotating, the old one goes in \
         DEPUTY_SECRET_PREVIOUS)."
    )]
    WrongSecret { dir: PathBuf },
    #[error("{0}")]
    Secret(#[from] SealError),
    #[error("brain at {dir}: {message}")]
    Io { dir: PathBuf, message: String },
}

/// The sealed store.
#[derive(Clone)]
pub struct Brain {
    store: Arc<dyn Store>,
    sealer: Arc<Sealer>,
    /// Set for a Redis brain, whose canary lives in Redis rather than in a file.
    redis: Option<Arc<redis::RedisStore>>,
}

impl std::fmt::Debug for Brain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Brain")
            .field("sealer", &self.sealer)
            .finish()
    }
}

const CANARY_FILE: &str = "canary";
/// The last commit the database confirmed durable (see [`sled`]).
const COMMIT_FILE: &str = "commit";
const CANARY_PATH: &[u8] = b"meta/canary";
const CANARY_PLAINTEXT: &[u8] = b"deputy brain canary v1";
/// The development key `deputy shell` creates when no secret is given.
pub const DEV_SECRET_FILE: &str = "dev-secret";

impl Brain {
    pub fn new(store: Arc<dyn Store>, sealer: Sealer) -> Brain {
        Brain {
            store,
            sealer: Arc::new(sealer),
            redis: None,
        }
    }

    /// Connects to a Redis brain and checks its canary the way [`Brain::open_dir`] checks
    /// the file: a wrong secret is refused before anything is written.
    pub async fn open_redis(
        url: &str,
        password: Option<&SecretString>,
        prefix: &str,
        sealer: Sealer,
    ) -> Result<Brain, BrainError> {
        let io = |message: String| BrainError::Io {
            dir: PathBuf::from(redis::redact(url)),
            message,
        };
        let store = redis::RedisStore::connect(url, password, prefix)
            .await
            .map_err(io)?;
        let shown = store.shown().to_string();
        match store.canary().await.map_err(|e| io(format!("{e:#}")))? {
            Some(sealed) => match sealer.open(CANARY_PATH, &sealed) {
                Ok(plain) if plain.as_slice() == CANARY_PLAINTEXT => {}
                _ => {
                    return Err(BrainError::WrongSecret {
                        dir: PathBuf::from(shown),
                    })
                }
            },
            None => {
                if !store
                    .keys(b"")
                    .await
                    .map_err(|e| io(format!("{e:#}")))?
                    .is_empty()
                {
                    return Err(io(format!(
                        "records exist but the canary {} is missing; restore it from a backup",
                        store.canary_key()
                    )));
                }
                store
                    .set_canary(sealer.seal(CANARY_PATH, CANARY_PLAINTEXT))
                    .await
                    .map_err(|e| io(format!("cannot write the canary: {e:#}")))?;
            }
        }
        let store = Arc::new(store);
        Ok(Brain {
            store: store.clone(),
            sealer: Arc::new(sealer),
            redis: Some(store),
        })
    }

    /// Rewrites the canary with the current key, wherever this brain keeps it.
    pub async fn rewrite_canary_here(&self, dir: &Path) -> anyhow::Result<()> {
        match &self.redis {
            Some(r) => {
                r.set_canary(self.sealer.seal(CANARY_PATH, CANARY_PLAINTEXT))
                    .await
            }
            None => Ok(self.rewrite_canary(dir)?),
        }
    }

    /// The sealed canary, for copying a brain elsewhere (`brain migrate`).
    pub async fn sealed_canary(&self, dir: &Path) -> anyhow::Result<Option<Vec<u8>>> {
        match &self.redis {
            Some(r) => r.canary().await,
            None => match std::fs::read(dir.join(CANARY_FILE)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            },
        }
    }

    /// Opens (or creates) the sled brain in `dir`. The canary is checked before sled is
    /// opened, so a wrong secret changes no file.
    pub fn open_dir(dir: &Path, sealer: Sealer) -> Result<Brain, BrainError> {
        let io = |message: String| BrainError::Io {
            dir: dir.to_owned(),
            message,
        };
        check_canary(dir, &sealer)?;
        create_private_dir(dir).map_err(|e| io(format!("cannot create it: {e}")))?;
        let store = sled::SledStore::open(&dir.join("db"), &dir.join(COMMIT_FILE))
            .map_err(|e| io(e.to_string()))?;
        if !dir.join(CANARY_FILE).exists() {
            write_private(
                &dir.join(CANARY_FILE),
                &sealer.seal(CANARY_PATH, CANARY_PLAINTEXT),
            )
            .map_err(|e| io(format!("cannot write the canary: {e}")))?;
        }
        restrict_tree(dir).map_err(|e| io(format!("cannot restrict permissions: {e}")))?;
        Ok(Brain::new(Arc::new(store), sealer))
    }

    /// Whether `dir` holds a sled brain with its canary: opening it then creates nothing.
    pub fn on_disk(dir: &Path) -> bool {
        dir.join("db").exists() && dir.join(CANARY_FILE).exists()
    }

    /// Opens a brain that must already exist (administration never creates one).
    pub fn open_existing(dir: &Path, sealer: Sealer) -> Result<Brain, BrainError> {
        if !dir.join("db").exists() {
            return Err(BrainError::Io {
                dir: dir.to_owned(),
                message: "there is no brain here (nothing has been stored yet, or [brain] path \
                          points elsewhere)"
                    .into(),
            });
        }
        Brain::open_dir(dir, sealer)
    }

    /// Seals `value` under `key` and returns once the write is durable.
    pub async fn put<T: Serialize>(&self, key: &KeyPath, value: &T) -> anyhow::Result<()> {
        let plain = Zeroizing::new(serde_json::to_vec(value)?);
        let sealed = self.sealer.seal(key.as_bytes(), &plain);
        let started = std::time::Instant::now();
        let r = self.store.put(key.as_bytes(), sealed).await;
        metrics::histogram!("deputy_brain_write_seconds").record(started.elapsed().as_secs_f64());
        r
    }

    /// [`Brain::put`] for a record that means nothing after `expires_at` (a pending sign-in):
    /// a store with native expiry (Redis) drops it then; readers check expiry regardless.
    pub async fn put_expiring<T: Serialize>(
        &self,
        key: &KeyPath,
        value: &T,
        expires_at: u64,
    ) -> anyhow::Result<()> {
        let plain = Zeroizing::new(serde_json::to_vec(value)?);
        let sealed = self.sealer.seal(key.as_bytes(), &plain);
        self.store
            .put_expiring(key.as_bytes(), sealed, expires_at)
            .await
    }

    /// Opens the record at `key`. A record that does not open is an error, never `None`.
    pub async fn get<T: DeserializeOwned>(&self, key: &KeyPath) -> anyhow::Result<Option<T>> {
        let Some(sealed) = self.store.get(key.as_bytes()).await? else {
            return Ok(None);
        };
        let plain = self
            .sealer
            .open(key.as_bytes(), &sealed)
            .map_err(|e| anyhow::anyhow!("brain record {key}: {e}"))?;
        Ok(Some(serde_json::from_slice(&plain)?))
    }

    pub async fn delete(&self, key: &KeyPath) -> anyhow::Result<bool> {
        self.store.delete(key.as_bytes()).await
    }

    /// Re-seals every record sealed with an older key; returns how many were re-sealed.
    pub async fn reseal(&self) -> anyhow::Result<usize> {
        self.reseal_with(|_, _| {}).await
    }

    /// [`Brain::reseal`], reporting `(done, stale)` after each durable chunk. Each chunk lands
    /// atomically, so a re-seal killed part-way leaves every record readable (old or new key)
    /// and a second run picks up the records still stale.
    pub async fn reseal_with(
        &self,
        mut progress: impl FnMut(usize, usize),
    ) -> anyhow::Result<usize> {
        const CHUNK: usize = 256;
        let mut stale = Vec::new();
        for key in self.store.keys(b"").await? {
            if let Some(sealed) = self.store.get(&key).await? {
                if self.sealer.is_stale(&sealed) {
                    stale.push((key, sealed));
                }
            }
        }
        let total = stale.len();
        let mut done = 0;
        for chunk in stale.chunks(CHUNK) {
            let mut writes = Vec::with_capacity(chunk.len());
            for (key, sealed) in chunk {
                let plain = self
                    .sealer
                    .open(key, sealed)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", String::from_utf8_lossy(key)))?;
                writes.push((key.clone(), Some(self.sealer.seal(key, &plain))));
            }
            self.store.put_all(writes).await?;
            done += chunk.len();
            progress(done, total);
        }
        Ok(total)
    }

    /// The key paths under a prefix (such as `flow/`).
    pub async fn keys(&self, prefix: &str) -> anyhow::Result<Vec<KeyPath>> {
        Ok(self
            .store
            .keys(prefix.as_bytes())
            .await?
            .into_iter()
            .filter_map(|k| String::from_utf8(k).ok().map(KeyPath))
            .collect())
    }

    /// Takes a lock shared by every process on this brain (several replicas on one Redis),
    /// held until [`Brain::unlock`] or `ttl_secs`, whichever comes first. False when someone
    /// else holds it.
    pub async fn try_lock(&self, name: &str, ttl_secs: u64) -> anyhow::Result<bool> {
        self.store
            .put_if_absent(
                format!("lock/{name}").as_bytes(),
                b"1".to_vec(),
                now_unix() + ttl_secs,
            )
            .await
    }

    pub async fn unlock(&self, name: &str) -> anyhow::Result<()> {
        self.store
            .remove_marker(format!("lock/{name}").as_bytes())
            .await
    }

    /// Whether other processes may share this brain (Redis): only then do replicas need to
    /// agree on who handles an event.
    pub fn is_shared(&self) -> bool {
        self.redis.is_some()
    }

    /// True the first time `id` is seen by any process on this brain within `ttl_secs`: for
    /// chat events a platform may deliver to several replicas, or twice.
    pub async fn first_sighting(&self, id: &str, ttl_secs: u64) -> anyhow::Result<bool> {
        self.store
            .put_if_absent(
                format!("seen/{id}").as_bytes(),
                b"1".to_vec(),
                now_unix() + ttl_secs,
            )
            .await
    }

    /// The raw store, for administration (export, import, verify) that works on sealed bytes.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    pub fn key_id(&self) -> String {
        self.sealer.key_id()
    }

    /// Rewrites the canary with the current key (after a rotation has re-sealed everything).
    pub fn rewrite_canary(&self, dir: &Path) -> std::io::Result<()> {
        write_private(
            &dir.join(CANARY_FILE),
            &self.sealer.seal(CANARY_PATH, CANARY_PLAINTEXT),
        )
    }
}

/// Verifies the canary in `dir`, if any, without opening or writing anything.
pub fn check_canary(dir: &Path, sealer: &Sealer) -> Result<(), BrainError> {
    let file = dir.join(CANARY_FILE);
    let damaged = |message: String| BrainError::Io {
        dir: dir.to_owned(),
        message,
    };
    match std::fs::read(&file) {
        Ok(sealed) => match sealer.open(CANARY_PATH, &sealed) {
            Ok(plain) if plain.as_slice() == CANARY_PLAINTEXT => {
                if dir.join("db").exists() {
                    Ok(())
                } else {
                    // Opening would quietly start an empty brain under a canary of records
                    // that are gone.
                    Err(damaged(format!(
                        "the database {} is missing; restore it from a backup",
                        dir.join("db").display()
                    )))
                }
            }
            Err(SealError::Malformed | SealError::UnknownVersion(_)) => Err(damaged(format!(
                "the canary file {} is damaged (truncated or not written by deputy); \
                 restore it from a backup",
                file.display()
            ))),
            _ => Err(BrainError::WrongSecret {
                dir: dir.to_owned(),
            }),
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if dir.join("db").exists() {
                // A brain without its canary cannot tell a wrong secret: refuse rather than
                // seal new records under a key the old ones do not open with.
                Err(damaged(format!(
                    "the canary file {} is missing; restore it from a backup",
                    file.display()
                )))
            } else {
                Ok(())
            }
        }
        Err(e) => Err(damaged(format!("cannot read {}: {e}", file.display()))),
    }
}

/// Reads the development secret in `dir`, creating it (0600) when absent. Returns the secret
/// and whether it was just created.
pub fn dev_secret(dir: &Path) -> std::io::Result<(SecretString, bool)> {
    let path = dir.join(DEV_SECRET_FILE);
    match std::fs::read_to_string(&path) {
        Ok(s) => Ok((SecretString::from(s.trim().to_string()), false)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            create_private_dir(dir)?;
            let secret = seal::generate_secret();
            use secrecy::ExposeSecret;
            write_private(&path, secret.expose_secret().as_bytes())?;
            Ok((secret, true))
        }
        Err(e) => Err(e),
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

/// Writes a file readable by its owner only, atomically (temp file, then rename).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Directories 0700, files 0600, below `dir` (sled creates its files with the process umask).
fn restrict_tree(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let ty = entry.file_type()?;
        if ty.is_dir() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o700))?;
            restrict_tree(&entry.path())?;
        } else if ty.is_file() {
            std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn sealer(b: u8) -> Sealer {
        use base64::Engine;
        Sealer::new(
            &SecretString::from(base64::engine::general_purpose::STANDARD.encode([b; 32])),
            &[],
        )
        .unwrap()
    }

    fn owner(user: &str) -> Owner {
        Owner {
            adapter: "shell".into(),
            workspace: "local".into(),
            user: user.into(),
        }
    }

    #[tokio::test]
    async fn record_copied_to_another_user_does_not_open() {
        let dir = tempfile::tempdir().unwrap();
        let brain = Brain::open_dir(dir.path(), sealer(1)).unwrap();
        let alice = KeyPath::credential(&owner("alice"), "jenkins");
        let bob = KeyPath::credential(&owner("bob"), "jenkins");
        brain.put(&alice, &"alice:token").await.unwrap();
        let raw = brain.store.get(alice.as_bytes()).await.unwrap().unwrap();
        brain.store.put(bob.as_bytes(), raw).await.unwrap();
        let err = brain.get::<String>(&bob).await.unwrap_err().to_string();
        assert!(err.contains("does not open"), "{err}");
        assert!(!err.contains("alice:token"));
        assert_eq!(
            brain.get::<String>(&alice).await.unwrap().as_deref(),
            Some("alice:token")
        );
    }

    #[test]
    fn key_paths_cannot_collide_through_slashes() {
        let a = KeyPath::credential(&owner("a/b"), "c");
        let b = KeyPath::of("cred", &["shell", "local", "a", "b/c"]);
        assert_ne!(a, b);
    }

    #[tokio::test]
    async fn wrong_secret_refused_and_permissions_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("brain");
        {
            let brain = Brain::open_dir(&path, sealer(1)).unwrap();
            brain
                .put(&KeyPath::of("t", &["x"]), &"v".to_string())
                .await
                .unwrap();
        }
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o700);
        assert_eq!(mode(&path.join("canary")), 0o600);
        assert_eq!(mode(&path.join("db")), 0o700);
        assert!(matches!(
            Brain::open_dir(&path, sealer(2)),
            Err(BrainError::WrongSecret { .. })
        ));
        let brain = Brain::open_dir(&path, sealer(1)).unwrap();
        assert_eq!(
            brain
                .get::<String>(&KeyPath::of("t", &["x"]))
                .await
                .unwrap()
                .as_deref(),
            Some("v")
        );
    }

    #[tokio::test]
    async fn reseal_moves_records_to_the_new_key() {
        use base64::Engine;
        let dir = tempfile::tempdir().unwrap();
        let k = KeyPath::of("t", &["x"]);
        {
            let brain = Brain::open_dir(dir.path(), sealer(1)).unwrap();
            brain.put(&k, &"v".to_string()).await.unwrap();
        }
        let old = SecretString::from(base64::engine::general_purpose::STANDARD.encode([1u8; 32]));
        let new = SecretString::from(base64::engine::general_purpose::STANDARD.encode([2u8; 32]));
        // The canary still holds the old key: check_canary accepts it through `previous`.
        let rotating = Sealer::new(&new, &[old]).unwrap();
        let brain = Brain::open_dir(dir.path(), rotating).unwrap();
        assert_eq!(brain.reseal().await.unwrap(), 1);
        brain.rewrite_canary(dir.path()).unwrap();
        drop(brain);
        let brain = Brain::open_dir(dir.path(), Sealer::new(&new, &[]).unwrap()).unwrap();
        assert_eq!(brain.get::<String>(&k).await.unwrap().as_deref(), Some("v"));
    }
}
