//! The embedded store: sled 0.34.7. Every write is flushed before it is acknowledged, since
//! sled's own background flush runs only every 500 ms.

use std::path::Path;

use super::Store;

pub struct SledStore {
    db: sled::Db,
}

impl SledStore {
    /// Opens the database; a second open of the same path (another process) fails on sled's
    /// file lock, which this message explains.
    pub fn open(path: &Path) -> Result<SledStore, String> {
        sled::Config::new()
            .path(path)
            .open()
            .map(|db| SledStore { db })
            .map_err(|e| {
                // sled wraps the lock failure in a custom io::Error; its text is the signal.
                if e.to_string().contains("could not acquire lock") {
                    "another deputy process has this brain open (one process per sled brain; \
                     use a networked brain for several replicas)"
                        .to_string()
                } else {
                    format!("cannot open the database: {e}")
                }
            })
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        Ok(self.db.get(key)?.map(|v| v.to_vec()))
    }

    async fn put(&self, key: &[u8], value: Vec<u8>) -> anyhow::Result<()> {
        self.db.insert(key, value)?;
        self.db.flush_async().await?;
        Ok(())
    }

    async fn delete(&self, key: &[u8]) -> anyhow::Result<bool> {
        let existed = self.db.remove(key)?.is_some();
        self.db.flush_async().await?;
        Ok(existed)
    }

    async fn keys(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        self.db
            .scan_prefix(prefix)
            .keys()
            .map(|k| Ok(k?.to_vec()))
            .collect()
    }
}
