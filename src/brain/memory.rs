//! An in-memory store behind the same group-commit writer as sled, for tests: nothing is
//! durable, and its "disk" can be made to fail or to stall on demand.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use super::writer::{Engine, Write, Writer};
use super::Store;

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

pub struct MemoryStore {
    engine: MemoryEngine,
    writer: Writer,
}

impl MemoryStore {
    pub fn new() -> std::io::Result<MemoryStore> {
        let engine = MemoryEngine::default();
        Ok(MemoryStore {
            writer: Writer::start(engine.clone())?,
            engine,
        })
    }

    /// The switches of this store's "disk".
    pub fn engine(&self) -> &MemoryEngine {
        &self.engine
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.engine.get(key)
    }

    async fn put(&self, key: &[u8], value: Vec<u8>) -> anyhow::Result<()> {
        self.writer
            .write(key.to_vec(), Some(value))
            .await
            .map(|_| ())
    }

    async fn delete(&self, key: &[u8]) -> anyhow::Result<bool> {
        self.writer.write(key.to_vec(), None).await
    }

    async fn put_all(&self, writes: Vec<Write>) -> anyhow::Result<()> {
        self.writer.write_all(writes).await
    }

    async fn keys(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        Ok(self
            .engine
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

    async fn increment(&self, counter: &[u8], expires_at: u64) -> anyhow::Result<u64> {
        self.writer.increment(counter, expires_at).await
    }

    async fn put_if_absent(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<bool> {
        self.writer.put_if_absent(key, value, expires_at).await
    }

    async fn remove_marker(&self, key: &[u8]) -> anyhow::Result<()> {
        self.writer
            .write(super::private_key(key), None)
            .await
            .map(|_| ())
    }
}
