//! The networked store: Redis, shared by several deputy replicas. The same sealed bytes as
//! sled, one Redis key per record (`<prefix>r:<key path>`), the canary at `<prefix>canary`,
//! counters and locks at `<prefix>n:…` with Redis's own expiry. A write is acknowledged when
//! Redis has answered it; how durable that is depends on the server's `appendfsync` (the
//! README recommends `appendonly yes` + `appendfsync always`).
//!
//! The connection manager reconnects by itself: while Redis is away every call fails with
//! [`Unavailable`] (users are told the brain is unreachable), and the next call after it is
//! back succeeds, with no restart.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, IntoConnectionInfo};
use secrecy::{ExposeSecret, SecretString};

use super::writer::Write;
use super::Store;

/// The brain cannot be reached: nothing was read or written.
#[derive(Debug, thiserror::Error)]
#[error("the brain at {0} cannot be reached: {1}")]
pub struct Unavailable(pub String, pub String);

pub struct RedisStore {
    conn: ConnectionManager,
    prefix: String,
    /// The URL without any password, for messages.
    shown: String,
}

/// `redis://user:pass@host` → `redis://user:***@host`.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "(an unparsable URL)".into(),
    }
}

impl RedisStore {
    /// Connects and checks the server answers. `password` (from the environment) replaces
    /// any in the URL.
    pub async fn connect(
        url: &str,
        password: Option<&SecretString>,
        prefix: &str,
    ) -> Result<RedisStore, String> {
        let shown = redact(url);
        let mut info = url
            .into_connection_info()
            .map_err(|e| format!("[brain] url {shown} is not a Redis URL: {e}"))?;
        if let Some(p) = password {
            let settings = info
                .redis_settings()
                .clone()
                .set_password(p.expose_secret());
            info = info.set_redis_settings(settings);
        }
        let client = redis::Client::open(info).map_err(|e| format!("[brain] url {shown}: {e}"))?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(Duration::from_secs(5)))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_secs(2));
        let mut conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| format!("cannot reach the brain at {shown}: {e}"))?;
        let _: String = redis::cmd("PING")
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("the brain at {shown} does not answer: {e}"))?;
        Ok(RedisStore {
            conn,
            prefix: prefix.to_string(),
            shown,
        })
    }

    fn record(&self, key: &[u8]) -> Vec<u8> {
        let mut k = format!("{}r:", self.prefix).into_bytes();
        k.extend_from_slice(key);
        k
    }

    fn counter(&self, key: &[u8]) -> Vec<u8> {
        let mut k = format!("{}n:", self.prefix).into_bytes();
        k.extend_from_slice(key);
        k
    }

    pub fn canary_key(&self) -> String {
        format!("{}canary", self.prefix)
    }

    fn down(&self, e: redis::RedisError) -> anyhow::Error {
        anyhow::Error::new(Unavailable(self.shown.clone(), e.to_string()))
    }

    /// The canary's sealed bytes, if any.
    pub async fn canary(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let mut c = self.conn.clone();
        c.get(self.canary_key()).await.map_err(|e| self.down(e))
    }

    pub async fn set_canary(&self, sealed: Vec<u8>) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        c.set::<_, _, ()>(self.canary_key(), sealed)
            .await
            .map_err(|e| self.down(e))
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }
}

fn ttl_secs(expires_at: u64) -> u64 {
    expires_at.saturating_sub(super::now_unix()).max(1)
}

/// `*`, `?`, `[`, `]` and `\` are glob characters to SCAN's MATCH.
fn glob_escape(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + 1);
    for &b in bytes {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

#[async_trait::async_trait]
impl Store for RedisStore {
    async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        let mut c = self.conn.clone();
        c.get(self.record(key)).await.map_err(|e| self.down(e))
    }

    async fn put(&self, key: &[u8], value: Vec<u8>) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        c.set::<_, _, ()>(self.record(key), value)
            .await
            .map_err(|e| self.down(e))
    }

    async fn put_expiring(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        c.set_ex::<_, _, ()>(self.record(key), value, ttl_secs(expires_at))
            .await
            .map_err(|e| self.down(e))
    }

    async fn delete(&self, key: &[u8]) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let n: u64 = c.del(self.record(key)).await.map_err(|e| self.down(e))?;
        Ok(n > 0)
    }

    async fn put_all(&self, writes: Vec<Write>) -> anyhow::Result<()> {
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (k, v) in writes {
            match v {
                Some(v) => pipe.set(self.record(&k), v).ignore(),
                None => pipe.del(self.record(&k)).ignore(),
            };
        }
        let mut c = self.conn.clone();
        pipe.query_async::<()>(&mut c)
            .await
            .map_err(|e| self.down(e))
    }

    async fn keys(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>> {
        let mut pattern = glob_escape(&self.record(prefix));
        pattern.push(b'*');
        let strip = self.record(b"").len();
        let mut c = self.conn.clone();
        let mut cursor: u64 = 0;
        let mut out = Vec::new();
        loop {
            let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut c)
                .await
                .map_err(|e| self.down(e))?;
            out.extend(batch.into_iter().map(|k| k[strip..].to_vec()));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn increment(&self, counter: &[u8], expires_at: u64) -> anyhow::Result<u64> {
        let key = self.counter(counter);
        let mut c = self.conn.clone();
        let (n,): (u64,) = redis::pipe()
            .atomic()
            .incr(&key, 1)
            .expire_at(&key, expires_at as i64)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(|e| self.down(e))?;
        Ok(n)
    }

    async fn put_if_absent(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<bool> {
        let mut c = self.conn.clone();
        let set: Option<String> = redis::cmd("SET")
            .arg(self.counter(key))
            .arg(value)
            .arg("NX")
            .arg("EX")
            .arg(ttl_secs(expires_at))
            .query_async(&mut c)
            .await
            .map_err(|e| self.down(e))?;
        Ok(set.is_some())
    }

    async fn remove_marker(&self, key: &[u8]) -> anyhow::Result<()> {
        let mut c = self.conn.clone();
        c.del::<_, ()>(self.counter(key))
            .await
            .map_err(|e| self.down(e))
    }
}
