//! The embedded store: sled 0.34.7. Reads go straight to sled; every write goes through the
//! group-commit [`Writer`], which acknowledges only after a blocking `flush()` has returned.
//! `flush_async` is never called: concurrent calls of it deadlock in 0.34 (sled #1308).
//!
//! sled recovers from a torn tail by dropping it, which is right after a crash but hides a
//! truncated or damaged file just as quietly. So every flush also stores a commit number in
//! sled and, once durable, in the `commit` file beside the database: a database that opens
//! with an older commit than the file names has lost acknowledged writes, and is refused.

use std::path::Path;

use super::writer::{Engine, GroupCommitStore, Reads, Write, Writer};

/// Reads straight from sled; writes through the group-commit writer.
pub type SledStore = GroupCommitStore<sled::Db>;

struct SledEngine {
    db: sled::Db,
    /// Holds only the commit number, out of the records' way.
    meta: sled::Tree,
    commit: u64,
    commit_file: std::fs::File,
}

const COMMIT_KEY: &[u8] = b"commit";

/// The commit file: the number, then its complement, so a torn or garbled file is told
/// apart from a real number.
fn encode_commit(n: u64) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[..8].copy_from_slice(&n.to_be_bytes());
    b[8..].copy_from_slice(&(!n).to_be_bytes());
    b
}

fn decode_commit(b: &[u8]) -> Option<u64> {
    let n = u64::from_be_bytes(b.get(..8)?.try_into().ok()?);
    let check = u64::from_be_bytes(b.get(8..16)?.try_into().ok()?);
    (check == !n).then_some(n)
}

impl Engine for SledEngine {
    fn set(&mut self, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<Option<Vec<u8>>> {
        let old = match value {
            Some(v) => self.db.insert(key, v)?,
            None => self.db.remove(key)?,
        };
        Ok(old.map(|v| v.to_vec()))
    }

    fn set_all(&mut self, writes: &[Write]) -> anyhow::Result<()> {
        let mut batch = sled::Batch::default();
        for (k, v) in writes {
            match v {
                Some(v) => batch.insert(k.as_slice(), v.as_slice()),
                None => batch.remove(k.as_slice()),
            }
        }
        Ok(self.db.apply_batch(batch)?)
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        use std::os::unix::fs::FileExt;
        let next = self.commit + 1;
        self.meta.insert(COMMIT_KEY, &next.to_be_bytes())?;
        self.db.flush()?;
        self.commit = next;
        // Not synced: after a crash the file may name an older commit (a lower bound is all
        // the check needs), never a newer one, since it is written after sled's flush.
        self.commit_file.write_all_at(&encode_commit(next), 0)?;
        Ok(())
    }
}

/// How long an open waits for sled's file lock before saying another process holds it.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// sled wraps the lock failure in a custom io::Error; its text is the signal.
fn is_lock_error(e: &sled::Error) -> bool {
    e.to_string().contains("could not acquire lock")
}

/// One attempt at opening, with the panic hook silenced: a damaged file must give an error,
/// not a panic message. The hook is global, so two opens at once (tests do that) must not
/// interleave their swaps, or the second would put the first's silent hook back for good.
fn open_quietly(path: &Path) -> std::thread::Result<sled::Result<sled::Db>> {
    static HOOK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _swapping = HOOK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    // No flusher thread: the writer flushes every acknowledged write itself, so sled's 500 ms
    // background flush would only be one more thread waking for nothing.
    let opened =
        std::panic::catch_unwind(|| sled::Config::new().path(path).flush_every_ms(None).open());
    std::panic::set_hook(hook);
    opened
}

impl GroupCommitStore<sled::Db> {
    /// Opens the database; a second open of the same path (another process) fails on sled's
    /// file lock, which this message explains. A damaged database is an error, not a panic.
    pub fn open(path: &Path, commit_path: &Path) -> Result<SledStore, String> {
        // sled releases its file lock when the last of its handles goes, and its I/O threads
        // may hold one a moment after this process dropped the brain: wait that out briefly.
        let started = std::time::Instant::now();
        let opened = loop {
            let opened = open_quietly(path);
            let locked = matches!(&opened, Ok(Err(e)) if is_lock_error(e));
            if !locked || started.elapsed() >= LOCK_WAIT {
                break opened;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        let db = match opened {
            Ok(Ok(db)) => db,
            Ok(Err(sled::Error::Corruption { .. })) => {
                return Err(format!(
                    "the database {} is damaged: sled found corrupted data (restore the brain \
                     from a backup)",
                    path.display()
                ))
            }
            Ok(Err(e)) => {
                return Err(if is_lock_error(&e) {
                    "another deputy process has this brain open (one process per sled brain; \
                     stop it first, or use a networked brain for several replicas)"
                        .to_string()
                } else {
                    format!(
                        "cannot open the database {}: {e} (restore the brain from a backup)",
                        path.display()
                    )
                });
            }
            Err(_) => {
                return Err(format!(
                    "the database {} is damaged and cannot be read (restore the brain from a \
                     backup)",
                    path.display()
                ))
            }
        };
        let damaged = |what: String| {
            format!(
                "the database {} is damaged: {what} (restore the brain from a backup)",
                path.display()
            )
        };
        let meta = db.open_tree("meta").map_err(|e| damaged(e.to_string()))?;
        let stored = match meta.get(COMMIT_KEY).map_err(|e| damaged(e.to_string()))? {
            Some(v) => u64::from_be_bytes(
                v.as_ref()
                    .try_into()
                    .map_err(|_| damaged("its commit number is garbled".into()))?,
            ),
            None => 0,
        };
        let confirmed = match std::fs::read(commit_path) {
            // Created at open, written at the first flush: empty means nothing committed yet.
            Ok(bytes) if bytes.is_empty() => 0,
            Ok(bytes) => decode_commit(&bytes).unwrap_or_else(|| {
                tracing::warn!(file = %commit_path.display(), "the commit file is garbled; the check for lost writes is skipped this once");
                0
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(format!("cannot read {}: {e}", commit_path.display())),
        };
        if stored < confirmed {
            return Err(damaged(format!(
                "it holds commit {stored}, but {} records that commit {confirmed} was made \
                 durable, so acknowledged writes are missing (the file was truncated, \
                 replaced or corrupted)",
                commit_path.display()
            )));
        }
        let commit_file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .open(commit_path)
            .map_err(|e| format!("cannot open {}: {e}", commit_path.display()))?;
        let engine = SledEngine {
            db: db.clone(),
            meta,
            commit: stored,
            commit_file,
        };
        let writer =
            Writer::start(engine).map_err(|e| format!("cannot start the brain's writer: {e}"))?;
        Ok(GroupCommitStore { reads: db, writer })
    }
}

impl Reads for sled::Db {
    fn read(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(sled::Tree::get(self, key)?.map(|v| v.to_vec()))
    }

    fn list(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        for k in self.scan_prefix(prefix).keys() {
            let k = k?;
            if !super::is_private(&k) {
                out.push(k.to_vec());
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_waits_out_a_lock_released_a_moment_later() {
        let dir = tempfile::tempdir().unwrap();
        let (db, commit) = (dir.path().join("db"), dir.path().join("commit"));
        let held = SledStore::open(&db, &commit).unwrap();
        // Released 100 ms from now, as when sled's own threads let go of a dropped brain.
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(held);
        });
        let again = SledStore::open(&db, &commit);
        release.join().unwrap();
        assert!(again.is_ok(), "{:?}", again.err());
    }

    #[test]
    fn a_lock_held_longer_is_another_process() {
        let dir = tempfile::tempdir().unwrap();
        let (db, commit) = (dir.path().join("db"), dir.path().join("commit"));
        let _held = SledStore::open(&db, &commit).unwrap();
        let started = std::time::Instant::now();
        let err = SledStore::open(&db, &commit).err().unwrap();
        assert!(
            err.starts_with("another deputy process has this brain open"),
            "{err}"
        );
        assert!(started.elapsed() >= LOCK_WAIT);
    }
}
