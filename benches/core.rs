//! Criterion benchmarks for the hot paths with no network: sealing and opening a credential,
//! and one message through addressing → tokenizing → routing → brain lookup → reply.

use criterion::{criterion_group, criterion_main, Criterion};
use deputy::brain::seal::Sealer;
use deputy::chat::{Adapter, Deleted, Message, Reply};
use deputy::config::Config;
use secrecy::SecretString;

// The allocator the deputy binary ships with, so these figures are the binary's.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn secret() -> SecretString {
    SecretString::from("aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==".to_string())
}

fn seal(c: &mut Criterion) {
    let sealer = Sealer::new(&secret(), &[]).unwrap();
    let path = b"cred/discord/global/123456789012345678/jenkins";
    let plain = br#"{"kind":"api_key","secret":"alice:11a2b3c4d5e6f7a8b9c0d1e2f3a4b5c6","linked_at":1790000000}"#;
    let sealed = sealer.seal(path, plain);
    c.bench_function("seal credential (90 B)", |b| {
        b.iter(|| sealer.seal(path, plain))
    });
    c.bench_function("open credential (90 B)", |b| {
        b.iter(|| sealer.open(path, &sealed).unwrap())
    });
}

struct Null;

#[async_trait::async_trait]
impl Adapter for Null {
    async fn send(&self, _: &Message, _: Reply) -> anyhow::Result<()> {
        Ok(())
    }
    async fn delete(&self, _: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

fn dispatch(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.brain.path = dir.path().join("brain");
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let brain = deputy::app::open_brain(&config, Sealer::new(&secret(), &[]).unwrap()).unwrap();
    let d = deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap();
    let msg = |text: &str| Message {
        adapter: "bench".into(),
        workspace: "w".into(),
        user: "alice".into(),
        user_name: "alice".into(),
        channel: "c".into(),
        id: "1".into(),
        thread: None,
        direct: false,
        text: text.into(),
    };
    let adapter = Null;
    for (name, text) in [
        ("message: help", "@deputy help"),
        (
            "message: unlinked command (brain miss)",
            "@deputy jenkins build deploy a=1 b=2",
        ),
        ("message: typo suggestion", "@deputy jenkins bild deploy"),
        ("message: not addressed", "just chatting about jenkins"),
    ] {
        let m = msg(text);
        c.bench_function(name, |b| {
            b.to_async(&rt)
                .iter(|| async { d.handle(&m, &adapter).await })
        });
    }
}

criterion_group!(benches, seal, dispatch);
criterion_main!(benches);
