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

/// On the disk `target/` is on: /tmp may be a tmpfs whose fsync costs nothing.
fn scratch() -> tempfile::TempDir {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap()
}

fn brain(dir: &std::path::Path) -> Brain {
    let secret =
        SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string());
    Brain::open_dir(dir, Sealer::new(&secret, &[]).unwrap()).unwrap()
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
        let credential = serde_json::json!({
            "kind": "api_key",
            "secret": "alice:11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6",
            "linked_at": 1790000000u64
        });
        group.bench_function(format!("{writers} concurrent writer(s)"), |b| {
            b.iter_custom(|iters| {
                rt.block_on(async {
                    let start = Instant::now();
                    let mut tasks = Vec::new();
                    for w in 0..writers as u64 {
                        let (brain, next, credential) =
                            (brain.clone(), next.clone(), credential.clone());
                        // Writer w does every writers-th write of this sample.
                        let mine = (iters + writers as u64 - 1 - w) / writers as u64;
                        tasks.push(tokio::spawn(async move {
                            for _ in 0..mine {
                                let n = next.fetch_add(1, Ordering::Relaxed);
                                let owner = Owner {
                                    adapter: "slack".into(),
                                    workspace: "T0001".into(),
                                    user: format!("U{n:08}"),
                                };
                                brain
                                    .put(&KeyPath::credential(&owner, "jenkins"), &credential)
                                    .await
                                    .unwrap();
                            }
                        }));
                    }
                    for t in tasks {
                        t.await.unwrap();
                    }
                    start.elapsed()
                })
            })
        });
    }
    group.finish();
}

/// The read path of every command: one record from sled, opened and parsed.
fn get_and_unseal(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = scratch();
    let brain = brain(dir.path());
    let keys: Vec<KeyPath> = (0..10_000)
        .map(|n| {
            KeyPath::credential(
                &Owner {
                    adapter: "slack".into(),
                    workspace: "T0001".into(),
                    user: format!("U{n:08}"),
                },
                "jenkins",
            )
        })
        .collect();
    rt.block_on(async {
        for k in &keys {
            brain
                .put(k, &serde_json::json!({"kind": "api_key", "secret": "alice:11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6", "linked_at": 1790000000u64}))
                .await
                .unwrap();
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

criterion_group!(benches, fsync_rate, acknowledged_writes, get_and_unseal);
criterion_main!(benches);
