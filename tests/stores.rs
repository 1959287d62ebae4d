//! One behaviour suite for every brain store (sled, memory, Redis on a real server), and the
//! Redis brain through the real binary: shared by restarts, migrated to and from sled,
//! unreachable at start, and lost mid-run with nothing acknowledged lost.

mod support;

use std::sync::Arc;

use deputy::brain::memory::MemoryStore;
use deputy::brain::redis::RedisStore;
use deputy::brain::sled::SledStore;
use deputy::brain::{now_unix, Store};
use support::*;

async fn behaves_like_a_store(store: Arc<dyn Store>, name: &str) {
    let later = now_unix() + 600;
    assert_eq!(store.get(b"cred/a").await.unwrap(), None, "{name}");
    store.put(b"cred/a", b"one".to_vec()).await.unwrap();
    store.put(b"cred/a", b"two".to_vec()).await.unwrap();
    assert_eq!(
        store.get(b"cred/a").await.unwrap().as_deref(),
        Some(&b"two"[..]),
        "{name}"
    );
    // Glob characters in a prefix are literal.
    store.put(b"cred/b*", b"x".to_vec()).await.unwrap();
    store.put(b"flow/a", b"f".to_vec()).await.unwrap();
    assert_eq!(
        store.keys(b"cred/").await.unwrap(),
        vec![b"cred/a".to_vec(), b"cred/b*".to_vec()],
        "{name}"
    );
    assert_eq!(
        store.keys(b"cred/b*").await.unwrap(),
        vec![b"cred/b*".to_vec()],
        "{name}"
    );
    assert_eq!(store.keys(b"").await.unwrap().len(), 3, "{name}");
    assert!(store.delete(b"cred/b*").await.unwrap(), "{name}");
    assert!(!store.delete(b"cred/b*").await.unwrap(), "{name}");
    // All or nothing, deletes included.
    store
        .put_all(vec![
            (b"cred/c".to_vec(), Some(b"c".to_vec())),
            (b"flow/a".to_vec(), None),
        ])
        .await
        .unwrap();
    assert_eq!(
        store.keys(b"").await.unwrap(),
        vec![b"cred/a".to_vec(), b"cred/c".to_vec()],
        "{name}"
    );
    // Counters and locks: atomic under concurrency, and never listed as records.
    let mut tasks = Vec::new();
    for _ in 0..50 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.increment(b"pin/alice", later).await.unwrap()
        }));
    }
    let mut counts: Vec<u64> = Vec::new();
    for t in tasks {
        counts.push(t.await.unwrap());
    }
    counts.sort();
    assert_eq!(
        counts,
        (1..=50).collect::<Vec<u64>>(),
        "{name}: each increment saw its own count"
    );
    let mut tasks = Vec::new();
    for i in 0..20u8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            s.put_if_absent(b"lock/refresh", vec![i], later)
                .await
                .unwrap()
        }));
    }
    let mut won = 0;
    for t in tasks {
        won += t.await.unwrap() as usize;
    }
    assert_eq!(won, 1, "{name}: exactly one taker of the lock");
    // Another lock is independent of the first.
    assert!(store
        .put_if_absent(b"lock/old", vec![1], now_unix() + 1)
        .await
        .unwrap());
    assert_eq!(
        store.keys(b"").await.unwrap().len(),
        2,
        "{name}: counters are not records"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_store_passes_the_same_suite() {
    let dir = tempfile::tempdir().unwrap();
    let sled = SledStore::open(&dir.path().join("db"), &dir.path().join("commit")).unwrap();
    behaves_like_a_store(Arc::new(sled), "sled").await;
    behaves_like_a_store(Arc::new(MemoryStore::new().unwrap()), "memory").await;
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url(), None, "deputy:")
        .await
        .unwrap();
    behaves_like_a_store(Arc::new(store), "redis").await;
    // Two brains on one Redis under different prefixes do not see each other.
    let other = RedisStore::connect(&redis.url(), None, "other:")
        .await
        .unwrap();
    assert!(other.keys(b"").await.unwrap().is_empty());
}

#[tokio::test]
async fn redis_pending_records_expire_natively() {
    let redis = RedisServer::start().await;
    let store = RedisStore::connect(&redis.url(), None, "deputy:")
        .await
        .unwrap();
    store
        .put_expiring(b"flow/x", b"v".to_vec(), now_unix() + 100)
        .await
        .unwrap();
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg("deputy:r:flow/x")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!((90..=100).contains(&ttl), "Redis holds the expiry: {ttl}");
}

#[tokio::test]
async fn a_redis_brain_survives_restarts_and_losing_redis_mid_run() {
    let jenkins = FakeJenkins::start().await;
    let mut redis = RedisServer::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    deputy.use_redis(&redis.url());
    let run = deputy
        .shell(
            &["--user", "alice"],
            &[&format!("jenkins setkey {ALICE_KEY}")],
        )
        .await
        .ok();
    assert!(run.stdout().starts_with("Stored"), "{}", run.stdout());
    assert!(
        !deputy.brain_dir().join("db").exists(),
        "nothing went to sled"
    );

    let mut live = Live::start(&deputy, &["shell", "--user", "bob"]);
    assert!(live
        .ask(&format!("jenkins setkey {BOB_KEY}"))
        .await
        .starts_with("Stored"));
    // Redis dies. deputy says so, stores nothing, and keeps running.
    redis.kill().await;
    let down = live.ask("jenkins whoami").await;
    assert!(down.contains("cannot reach my brain"), "{down}");
    live.send("/user carol").await;
    let down = live.ask("jenkins setkey u5:tok-5").await;
    assert!(down.contains("nothing was stored"), "{down}");
    // Back on the same port and data: no restart of deputy, nothing acknowledged lost.
    redis.restart().await;
    live.send("/user bob").await;
    assert_eq!(
        live.ask("jenkins whoami").await,
        "You are bob (full name) on Jenkins."
    );
    live.send("/user alice").await;
    assert_eq!(
        live.ask("jenkins whoami").await,
        "You are alice (full name) on Jenkins."
    );
    live.send("/user carol").await;
    assert!(live.ask("jenkins whoami").await.contains("haven't linked"));
    live.finish().await;
    let raw = std::fs::read_dir(redis.dir.path()).unwrap().count();
    assert!(raw > 0, "Redis persisted to its AOF");
    let aof: Vec<(std::path::PathBuf, Vec<u8>)> = snapshot(redis.dir.path());
    for (path, bytes) in aof {
        assert!(
            !contains(&bytes, ALICE_KEY.as_bytes()),
            "{path:?} holds a plaintext key"
        );
    }
}

#[tokio::test]
async fn redis_unreachable_at_start_is_a_clear_error() {
    let deputy = Deputy::new("http://127.0.0.1:9", "");
    let port = free_port();
    deputy.use_redis(&format!("redis://:hunter2secret@127.0.0.1:{port}/0"));
    let run = deputy.shell(&[], &["jenkins whoami"]).await;
    assert_eq!(run.code(), Some(1), "{}", run.stderr());
    assert!(
        run.stderr()
            .contains("cannot reach the brain at redis://:***@127.0.0.1"),
        "{}",
        run.stderr()
    );
    assert!(!run.stderr().contains("hunter2secret"), "{}", run.stderr());
    assert!(run.stdout().is_empty());
}

#[tokio::test]
async fn migrate_sled_to_redis_and_back_with_every_record_opening() {
    let jenkins = FakeJenkins::start().await;
    let redis = RedisServer::start().await;
    let deputy = Deputy::new(&jenkins.url, "");
    let lines: Vec<String> = (0..300)
        .flat_map(|i| {
            [
                format!("/user u{i}"),
                format!("jenkins setkey u{i}:tok-{i}"),
            ]
        })
        .collect();
    let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
    deputy.shell(&[], &refs).await.ok();
    let sled_dir = deputy.brain_dir();
    let args = |from: &str, to: &str| {
        vec![
            "brain".to_string(),
            "migrate".into(),
            "--from".into(),
            from.into(),
            "--to".into(),
            to.into(),
        ]
    };
    let migrate = |from: String, to: String| {
        let a = args(&from, &to);
        let mut c = tokio::process::Command::from(
            deputy.command(&a.iter().map(String::as_str).collect::<Vec<_>>()),
        );
        async move { Run(c.output().await.unwrap()) }
    };
    let sled_path = sled_dir.to_str().unwrap().to_string();
    let out = migrate(sled_path.clone(), redis.url()).await.ok().stdout();
    assert_eq!(
        out.trim(),
        "copied 300 record(s), 0 already there, 0 failed"
    );
    // Resumable: a second run copies nothing.
    let out = migrate(sled_path.clone(), redis.url()).await.ok().stdout();
    assert_eq!(
        out.trim(),
        "copied 0 record(s), 300 already there, 0 failed"
    );
    // deputy on Redis serves the migrated users.
    deputy.use_redis(&redis.url());
    let run = deputy
        .shell(&[], &["/user u17", "jenkins whoami"])
        .await
        .ok();
    assert_eq!(run.stdout().trim(), "You are u17 (full name) on Jenkins.");
    let verify = Run(
        tokio::process::Command::from(deputy.command(&["brain", "verify"]))
            .output()
            .await
            .unwrap(),
    )
    .ok();
    assert_eq!(verify.stdout().trim(), "all 300 record(s) open");
    let stats = Run(
        tokio::process::Command::from(deputy.command(&["brain", "stats"]))
            .output()
            .await
            .unwrap(),
    )
    .ok()
    .stdout();
    assert!(stats.contains("linked credentials: 300"), "{stats}");
    assert!(stats.contains("size: kept by Redis"), "{stats}");
    // And back to a new sled brain.
    let back = deputy.dir.path().join("back");
    let out = migrate(redis.url(), back.to_str().unwrap().to_string())
        .await
        .ok()
        .stdout();
    assert_eq!(
        out.trim(),
        "copied 300 record(s), 0 already there, 0 failed"
    );
    let brain = deputy::brain::Brain::open_dir(
        &back,
        deputy::brain::seal::Sealer::new(&secrecy::SecretString::from(SECRET_A.to_string()), &[])
            .unwrap(),
    )
    .unwrap();
    let v = deputy::brain::admin::verify(&brain).await.unwrap();
    assert_eq!((v.records, v.failures.len()), (300, 0));
    // A target sealed under another secret is refused.
    let other = Deputy {
        secret: Some(SECRET_B.into()),
        ..Deputy::new("http://127.0.0.1:9", "")
    };
    other.shell(&[], &["jenkins setkey u1:tok-1"]).await.ok();
    let refused = migrate(sled_path, other.brain_dir().to_str().unwrap().to_string()).await;
    assert_eq!(refused.code(), Some(4), "{}", refused.stderr());
}
