//! Group commit: the one writer every brain write goes through. Callers queue writes on a
//! bounded channel; a dedicated thread applies everything pending, makes it durable with one
//! blocking flush, and only then acknowledges each write of that batch. Many concurrent
//! writers therefore share one fsync instead of each waiting on (or deadlocking in) their own.
//!
//! The thread is a plain OS thread rather than a runtime task so the store works (and closes)
//! without a tokio runtime, and so dropping the store can join it: the engine's file lock is
//! released when the drop returns.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use super::Store;

/// Queue depth before writers wait: backpressure instead of unbounded memory.
const QUEUE: usize = 4096;
/// Most writes applied under one flush.
const MAX_BATCH: usize = 1024;

/// Key → new value (`None` deletes).
pub type Write = (Vec<u8>, Option<Vec<u8>>);

/// What the writer drives: sled in production, a failing fake in tests.
pub trait Engine: Send + 'static {
    /// Sets (or removes) one key and returns what it held before.
    fn set(&mut self, key: &[u8], value: Option<&[u8]>) -> anyhow::Result<Option<Vec<u8>>>;
    /// Applies several writes atomically: all or none.
    fn set_all(&mut self, writes: &[Write]) -> anyhow::Result<()>;
    fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
    /// Makes every write applied so far durable (fsync).
    fn flush(&mut self) -> anyhow::Result<()>;
}

/// A write the brain did not make durable: the caller must say it was not stored.
#[derive(Debug, thiserror::Error)]
#[error("not stored: {0}")]
pub struct NotStored(pub String);

fn not_stored(message: impl Into<String>) -> anyhow::Error {
    anyhow::Error::new(NotStored(message.into()))
}

/// A read-modify-write: given the current value, the new one (`None` deletes).
pub type Update = Box<dyn FnOnce(Option<&[u8]>) -> Option<Vec<u8>> + Send>;

enum Op {
    One(Write, oneshot::Sender<anyhow::Result<bool>>),
    /// Atomic because the writer is the only one: nothing else writes between read and write.
    Update(
        Vec<u8>,
        Update,
        oneshot::Sender<anyhow::Result<Option<Vec<u8>>>>,
    ),
    /// All-or-nothing (imports); acknowledged with the number of writes.
    All(Vec<Write>, oneshot::Sender<anyhow::Result<bool>>),
}

/// Counters for benchmarks and stats: how many writes each flush carried.
#[derive(Debug, Default)]
pub struct WriterStats {
    pub writes: AtomicU64,
    pub flushes: AtomicU64,
    pub failed_flushes: AtomicU64,
}

pub struct Writer {
    tx: Option<mpsc::Sender<Op>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub stats: Arc<WriterStats>,
}

impl Writer {
    pub fn start<E: Engine>(engine: E) -> std::io::Result<Writer> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let stats = Arc::new(WriterStats::default());
        let counters = stats.clone();
        let thread = std::thread::Builder::new()
            .name("brain-writer".into())
            .spawn(move || run(engine, rx, &counters))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(thread),
            stats,
        })
    }

    /// Writes waiting in the queue (not yet taken by the writer thread).
    pub fn queued(&self) -> usize {
        self.tx
            .as_ref()
            .map_or(0, |tx| tx.max_capacity() - tx.capacity())
    }

    /// Queues one write; resolves once it is durable. `Ok(true)` when the key held a value.
    pub async fn write(&self, key: Vec<u8>, value: Option<Vec<u8>>) -> anyhow::Result<bool> {
        let (ack, done) = oneshot::channel();
        self.send(Op::One((key, value), ack), done).await
    }

    /// Replaces the value at `key` with `f(current)`, atomically and durably; returns the new
    /// value.
    pub async fn update(&self, key: Vec<u8>, f: Update) -> anyhow::Result<Option<Vec<u8>>> {
        let (ack, done) = oneshot::channel();
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send(Op::Update(key, f, ack))
            .await
            .map_err(|_| not_stored("the brain's writer has stopped"))?;
        done.await
            .map_err(|_| not_stored("the brain's writer stopped before the write was durable"))?
    }

    /// [`super::Store::increment`] for the stores this writer serves: atomic because the
    /// writer is the only one.
    pub async fn increment(&self, counter: &[u8], expires_at: u64) -> anyhow::Result<u64> {
        let new = self
            .update(
                super::private_key(counter),
                Box::new(move |old| Some(super::writer_increment(old, expires_at))),
            )
            .await?;
        Ok(new.as_deref().map_or(0, super::read_count))
    }

    /// [`super::Store::put_if_absent`] for the stores this writer serves.
    pub async fn put_if_absent(
        &self,
        key: &[u8],
        value: Vec<u8>,
        expires_at: u64,
    ) -> anyhow::Result<bool> {
        let wrote = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = wrote.clone();
        self.update(
            super::private_key(key),
            Box::new(move |old| match old {
                Some(old) if super::live_until(old) => Some(old.to_vec()),
                _ => {
                    flag.store(true, Ordering::Relaxed);
                    let mut v = expires_at.to_be_bytes().to_vec();
                    v.extend_from_slice(&value);
                    Some(v)
                }
            }),
        )
        .await?;
        Ok(wrote.load(Ordering::Relaxed))
    }

    /// Queues writes that land together or not at all.
    pub async fn write_all(&self, writes: Vec<Write>) -> anyhow::Result<()> {
        let (ack, done) = oneshot::channel();
        self.send(Op::All(writes, ack), done).await.map(|_| ())
    }

    async fn send(
        &self,
        op: Op,
        done: oneshot::Receiver<anyhow::Result<bool>>,
    ) -> anyhow::Result<bool> {
        let tx = self.tx.as_ref().expect("sender lives until drop");
        tx.send(op)
            .await
            .map_err(|_| not_stored("the brain's writer has stopped"))?;
        done.await
            .map_err(|_| not_stored("the brain's writer stopped before the write was durable"))?
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the channel lets the thread finish what is queued, flush, and exit.
        self.tx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Where a writer-backed store reads: straight from the engine's data, not through the
/// queue, so reads never wait behind writes.
pub trait Reads: Send + Sync + 'static {
    fn read(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>>;
    /// Keys under `prefix`, counters and locks left out.
    fn list(&self, prefix: &[u8]) -> anyhow::Result<Vec<Vec<u8>>>;
}

/// A [`Store`] whose writes all go through one group-commit [`Writer`]: sled in production,
/// memory in tests.
pub struct GroupCommitStore<R> {
    pub(super) reads: R,
    pub(super) writer: Writer,
}

#[async_trait::async_trait]
impl<R: Reads> Store for GroupCommitStore<R> {
    async fn get(&self, key: &[u8]) -> anyhow::Result<Option<Vec<u8>>> {
        self.reads.read(key)
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
        self.reads.list(prefix)
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

fn run<E: Engine>(mut engine: E, mut rx: mpsc::Receiver<Op>, stats: &WriterStats) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        commit(&mut engine, &mut batch, stats);
    }
}

/// Applies, flushes once, acknowledges. On a failed flush every write of the batch is undone
/// (so no reader sees a value the user was told was not stored) and reported as failed.
fn commit<E: Engine>(engine: &mut E, batch: &mut Vec<Op>, stats: &WriterStats) {
    let mut undo: Vec<Write> = Vec::new();
    let mut results: Vec<(oneshot::Sender<anyhow::Result<bool>>, anyhow::Result<bool>)> =
        Vec::with_capacity(batch.len());
    type UpdateAck = oneshot::Sender<anyhow::Result<Option<Vec<u8>>>>;
    let mut updated: Vec<(UpdateAck, anyhow::Result<Option<Vec<u8>>>)> = Vec::new();
    let mut applied = 0u64;
    for op in batch.drain(..) {
        match op {
            Op::One((key, value), ack) => match engine.set(&key, value.as_deref()) {
                Ok(old) => {
                    let existed = old.is_some();
                    undo.push((key, old));
                    applied += 1;
                    results.push((ack, Ok(existed)));
                }
                Err(e) => results.push((ack, Err(not_stored(format!("{e:#}"))))),
            },
            Op::Update(key, f, ack) => {
                let r = engine.get(&key).and_then(|old| {
                    let new = f(old.as_deref());
                    engine.set(&key, new.as_deref())?;
                    undo.push((key, old));
                    applied += 1;
                    Ok(new)
                });
                updated.push((ack, r.map_err(|e| not_stored(format!("{e:#}")))));
            }
            Op::All(writes, ack) => {
                let old: anyhow::Result<Vec<Write>> = writes
                    .iter()
                    .map(|(k, _)| Ok((k.clone(), engine.get(k)?)))
                    .collect();
                match old.and_then(|old| engine.set_all(&writes).map(|()| old)) {
                    Ok(old) => {
                        applied += writes.len() as u64;
                        // Undo runs in reverse, so the earliest old value of a key wins.
                        undo.extend(old);
                        results.push((ack, Ok(true)));
                    }
                    Err(e) => results.push((ack, Err(not_stored(format!("{e:#}"))))),
                }
            }
        }
    }
    if applied > 0 {
        if let Err(e) = engine.flush() {
            stats.failed_flushes.fetch_add(1, Ordering::Relaxed);
            tracing::error!(error = %format!("{e:#}"), writes = applied, "brain flush failed; the writes of this batch were not stored");
            for (key, old) in undo.into_iter().rev() {
                let _ = engine.set(&key, old.as_deref());
            }
            let message = format!("the brain could not make the write durable: {e:#}");
            for (_, r) in results.iter_mut() {
                if r.is_ok() {
                    *r = Err(not_stored(message.clone()));
                }
            }
            for (_, r) in updated.iter_mut() {
                if r.is_ok() {
                    *r = Err(not_stored(message.clone()));
                }
            }
        } else {
            stats.flushes.fetch_add(1, Ordering::Relaxed);
            stats.writes.fetch_add(applied, Ordering::Relaxed);
        }
    }
    // A caller that gave up waiting is no reason to stop.
    for (ack, r) in results {
        let _ = ack.send(r);
    }
    for (ack, r) in updated {
        let _ = ack.send(r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::brain::memory::MemoryEngine;

    #[tokio::test]
    async fn concurrent_writes_share_flushes_and_all_land() {
        let fake = MemoryEngine::default();
        let writer = Arc::new(Writer::start(fake.clone()).unwrap());
        // Hold the first flush so the other 199 writes queue up behind it.
        fake.hold(true);
        let mut tasks = Vec::new();
        for i in 0..200u32 {
            let w = writer.clone();
            tasks.push(tokio::spawn(async move {
                w.write(format!("k{i}").into_bytes(), Some(vec![1])).await
            }));
        }
        while fake.len() + writer.queued() < 200 {
            tokio::task::yield_now().await;
        }
        fake.hold(false);
        for t in tasks {
            assert!(!t.await.unwrap().unwrap(), "each key was new");
        }
        assert_eq!(fake.len(), 200);
        let flushes = fake.flushes.load(Ordering::Relaxed);
        assert!(
            flushes < 200,
            "group commit: {flushes} flushes for 200 writes"
        );
        assert_eq!(writer.stats.writes.load(Ordering::Relaxed), 200);
    }

    #[tokio::test]
    async fn a_failed_flush_fails_and_undoes_every_write_of_its_batch() {
        let fake = MemoryEngine::default();
        let writer = Writer::start(fake.clone()).unwrap();
        writer
            .write(b"kept".to_vec(), Some(b"old".to_vec()))
            .await
            .unwrap();
        fake.broken.store(true, Ordering::Relaxed);
        let err = writer
            .write(b"kept".to_vec(), Some(b"new".to_vec()))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("could not make the write durable"),
            "{err}"
        );
        assert!(err.downcast_ref::<NotStored>().is_some());
        let err = writer
            .write_all(vec![
                (b"a".to_vec(), Some(b"1".to_vec())),
                (b"kept".to_vec(), None),
            ])
            .await
            .unwrap_err();
        assert!(err.to_string().contains("No space left"), "{err}");
        // Nothing the caller was told failed is visible.
        assert_eq!(fake.get(b"kept").unwrap().as_deref(), Some(&b"old"[..]));
        assert_eq!(fake.get(b"a").unwrap(), None);
        assert_eq!(writer.stats.failed_flushes.load(Ordering::Relaxed), 2);
        fake.broken.store(false, Ordering::Relaxed);
        assert!(writer.write(b"kept".to_vec(), None).await.unwrap());
        assert_eq!(fake.get(b"kept").unwrap(), None);
    }

    #[tokio::test]
    async fn dropping_the_writer_flushes_what_is_queued_and_joins() {
        let fake = MemoryEngine::default();
        let writer = Arc::new(Writer::start(fake.clone()).unwrap());
        writer.write(b"x".to_vec(), Some(vec![7])).await.unwrap();
        drop(writer);
        assert_eq!(fake.get(b"x").unwrap(), Some(vec![7]));
        assert!(fake.flushes.load(Ordering::Relaxed) >= 1);
    }
}
