//! Brain write throughput: acknowledged (durable) writes per second with 1, 10 and 100
//! concurrent writers through the group-commit writer into sled, beside the disk's own
//! fsync rate, which bounds what a writer without group commit could reach.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use deputy::brain::seal::Sealer;
use deputy::brain::{Brain, KeyPath, Owner};
use secrecy::SecretString;

// The allocator the deputy binary ships with, so these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// On the disk `target/` is on: /tmp may be a tmpfs whose fsync costs nothing.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn brain(dir: &std::path::Path) -> Brain {
    let secret =
        SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string());
    Brain::open_dir(dir, Sealer::new(&secret, &[]).unwrap()).unwrap()
}

fn credential() -> serde_json::Value {
    serde_json::json!({
        "kind": "api_key",
        "secret": "alice:11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6",
        "linked_at": 1790000000u64
    })
}

fn user(n: u64) -> KeyPath {
    KeyPath::credential(
        &Owner {
            adapter: "slack".into(),
            workspace: "T0001".into(),
            user: format!("U{n:08}"),
        },
        "jenkins",
    )
}

/// `iters` acknowledged writes spread over `writers` concurrent tasks; users numbered modulo
/// `users`. Returns the wall time.
async fn puts(
    brain: &Brain,
    writers: usize,
    iters: u64,
    next: &Arc<AtomicU64>,
    users: u64,
) -> Duration {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..writers as u64 {
        let (brain, next) = (brain.clone(), next.clone());
        // Writer w does every writers-th write of this sample.
        let mine = (iters + writers as u64 - 1 - w) / writers as u64;
        tasks.push(tokio::spawn(async move {
            let credential = credential();
            for _ in 0..mine {
                let n = next.fetch_add(1, Ordering::Relaxed) % users;
                brain.put(&user(n), &credential).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    start.elapsed()
}

fn fsync_rate(c: &mut Criterion) {
    let dir = scratch();
    let mut f = std::fs::File::create(dir.path().join("f")).unwrap();
    let block = [7u8; 4096];
    c.bench_function("disk: write 4 KiB + fdatasync", |b| {
        b.iter(|| {
            f.write_all(&block).unwrap();
            f.sync_data().unwrap();
        })
    });
}

fn acknowledged_writes(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut group = c.benchmark_group("brain: acknowledged writes");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for writers in [1usize, 10, 100] {
        let dir = scratch();
        let brain = brain(dir.path());
        let next = Arc::new(AtomicU64::new(0));
        group.bench_function(format!("{writers} concurrent writer(s)"), |b| {
            b.iter_custom(|iters| rt.block_on(puts(&brain, writers, iters, &next, u64::MAX)))
        });
    }
    group.finish();
}

/// The read path of every command: one record from sled, opened and parsed.
fn get_and_unseal(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = scratch();
    let brain = brain(dir.path());
    let keys: Vec<KeyPath> = (0..10_000).map(user).collect();
    rt.block_on(async {
        for k in &keys {
            brain.put(k, &credential()).await.unwrap();
        }
    });
    let mut i = 0;
    let mut group = c.benchmark_group("brain");
    group.throughput(Throughput::Elements(1));
    group.bench_function("get + unseal a credential (10,000 stored)", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 7919) % keys.len();
            let k = &keys[i];
            let brain = &brain;
            async move { brain.get::<serde_json::Value>(k).await.unwrap().unwrap() }
        })
    });
    group.finish();
}

/// A redis-server of the bench's own, with the README's persistence (AOF, fsync always).
struct RedisServer(
    std::process::Child,
    #[allow(dead_code)] tempfile::TempDir,
    u16,
);

impl RedisServer {
    fn start() -> RedisServer {
        use std::io::BufRead;
        let dir = scratch();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = std::process::Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
            ])
            .args(["--appendonly", "yes", "--appendfsync", "always"])
            .arg("--dir")
            .arg(dir.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it)");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        for line in out.by_ref() {
            if line.unwrap().contains("Ready to accept connections") {
                break;
            }
        }
        std::thread::spawn(move || for _ in out {});
        RedisServer(child, dir, port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn redis_brain(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let server = RedisServer::start();
    let secret =
        SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string());
    let brain = rt
        .block_on(Brain::open_redis(
            &format!("redis://127.0.0.1:{}/0", server.2),
            None,
            "bench:",
            Sealer::new(&secret, &[]).unwrap(),
        ))
        .unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let mut group = c.benchmark_group("redis brain (appendfsync always)");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(5));
    for writers in [1usize, 100] {
        group.bench_function(format!("acknowledged writes, {writers} writer(s)"), |b| {
            // Over 10,000 users, so the bench does not fill the server's memory.
            b.iter_custom(|iters| rt.block_on(puts(&brain, writers, iters, &next, 10_000)))
        });
    }
    let key = user(1);
    rt.block_on(brain.put(&key, &credential())).unwrap();
    group.bench_function("get + unseal a credential", |b| {
        b.to_async(&rt)
            .iter(|| async { brain.get::<serde_json::Value>(&key).await.unwrap().unwrap() })
    });
    group.finish();
}

criterion_group!(
    benches,
    fsync_rate,
    acknowledged_writes,
    get_and_unseal,
    redis_brain
);
criterion_main!(benches);
