//! An in-memory store behind the same group-commit writer as sled, for tests: nothing is
//! durable, and its "disk" can be made to fail or to stall on demand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::writer::{Engine, GroupCommitStore, Reads, Write, Writer};

type Map = Arc<Mutex<BTreeMap<Vec<u8>, Vec<u8>>>>;

/// The writer's side of the memory store, with its switches.
#[derive(Clone, Default)]
pub struct MemoryEngine {
    data: Map,
    /// Every flush fails while set ("No space left on device").
    pub broken: Arc<AtomicBool>,
    /// Flushes so far.
    pub flushes: Arc<AtomicU64>,
    /// While `true`, flushes wait, so writes pile up behind the one in progress.
    pub held: Arc<(Mutex<bool>, Condvar)>,
}

impl MemoryEngine {
    pub fn len(&self) -> usize {
        self.data.lock().expect("memory store poisoned").len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn hold(&self, held: bool) {
        *self.held.0.lock().expect("memory store poisoned") = held;
        self.held.1.notify_all();
    }
}

impl Engine for MemoryEngine {
    fn set(&mut self, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<Option<Vec<u8>>> {
        let mut d = self.data.lock().expect("memory store poisoned");
        Ok(match value {
            Some(v) => d.insert(key.to_vec(), v.to_vec()),
            None => d.remove(key),
        })
    }

    fn set_all(&mut self, writes: &[Write]) -> anyhow::Result<()> {
        for (k, v) in writes {
            self.set(k, v.as_deref())?;
        }
        Ok(())
    }

    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self
            .data
            .lock()
            .expect("memory store poisoned")
            .get(key)
            .cloned())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        let (held, cv) = &*self.held;
        let _open = cv
            .wait_while(held.lock().expect("memory store poisoned"), |h| *h)
            .expect("memory store poisoned");
        self.flushes.fetch_add(1, Ordering::Relaxed);
        if self.broken.load(Ordering::Relaxed) {
            anyhow::bail!("No space left on device (injected)")
        }
        Ok(())
    }
}

impl Reads for MemoryEngine {
    fn read(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Engine::get(self, key)
    }

    fn list(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(self
            .data
            .lock()
            .expect("memory store poisoned")
            .range(prefix.to_vec()..)
            .map(|(k, _)| k)
            .take_while(|k| k.starts_with(prefix))
            .filter(|k| !super::is_private(k))
            .cloned()
            .collect())
    }
}

/// In memory, behind the same writer as sled.
pub type MemoryStore = GroupCommitStore<MemoryEngine>;

impl GroupCommitStore<MemoryEngine> {
    pub fn new() -> std::io::Result<MemoryStore> {
        let engine = MemoryEngine::default();
        Ok(GroupCommitStore {
            writer: Writer::start(engine.clone())?,
            reads: engine,
        })
    }

    /// The switches of this store's "disk".
    pub fn engine(&self) -> &MemoryEngine {
        &self.reads
    }
}
