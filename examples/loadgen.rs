//! The load generator: a fast upstream on 127.0.0.1 that checks each user's own credential
//! (HTTP Basic, an OAuth 1.0a HMAC-SHA1 signature verified apart from deputy's signing, or
//! an OAuth 2.0 bearer), N linked users, and M pack commands driven through the real
//! dispatcher in this process (`--mode dispatch`) or through the `deputy shell` binary over a
//! pipe (`--mode shell`). Prints throughput, latency percentiles, the latency deputy adds on
//! top of the upstream's own time, and (shell mode) deputy's peak RSS.
//!
//! ```sh
//! cargo build --release && cargo run --release --example loadgen -- --kind apikey --users 1000 --messages 10000
//! ```
//!
//! Deterministic: user of command j is `(j * 7919) % users`; no randomness anywhere. With
//! `--rate`, command j is offered at j / rate seconds, evenly spaced (`--bursty` keeps the
//! old pacing on tokio's 1 ms timer, which offers each millisecond's commands at once). The
//! clock starts once deputy has answered a first command, so start-up is not in the figures.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::IntoResponse;
use base64::Engine;
use clap::{Parser, ValueEnum};
use deputy::brain::seal::Sealer;
use deputy::brain::{Brain, KeyPath, Owner};
use secrecy::SecretString;

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Kind {
    Apikey,
    Oauth1,
    Oauth2,
}

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
enum Mode {
    /// Through `deputy shell` over a pipe (end to end).
    Shell,
    /// `Dispatcher::handle` in this process.
    Dispatch,
}

#[derive(Parser)]
struct Args {
    #[arg(long, value_enum, default_value = "apikey")]
    kind: Kind,
    #[arg(long, value_enum, default_value = "shell")]
    mode: Mode,
    #[arg(long, default_value_t = 1000)]
    users: usize,
    #[arg(long, default_value_t = 10_000)]
    messages: usize,
    /// Messages per second to offer (open loop); as fast as deputy takes them when absent.
    #[arg(long)]
    rate: Option<u64>,
    /// With `--rate`: let each millisecond's commands go at once (tokio's timer) instead of
    /// evenly spaced.
    #[arg(long)]
    bursty: bool,
    /// Write each command's offer time and latency (µs, one command a line) to this file, to
    /// find where a latency tail comes from.
    #[arg(long)]
    latencies: Option<PathBuf>,
    /// The deputy binary for shell mode.
    #[arg(long, default_value = "target/release/deputy")]
    bin: PathBuf,
}

// The fake upstream shares deputy's 2 cores; a real one would not, so it gets the fast
// allocator deputy ships with and takes as little of them as it can.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==";
const CONSUMER_KEY: &str = "load-consumer";
const CONSUMER_SECRET: &str = "load-consumer-secret";

/// What the upstream counts: verified calls and the time spent inside its handler.
#[derive(Default)]
struct Upstream {
    ok: AtomicU64,
    refused: AtomicU64,
    handler_ns: AtomicU64,
}

impl Upstream {
    /// Forgets the warm-up's calls.
    fn reset(&self) {
        self.ok.store(0, Ordering::Relaxed);
        self.handler_ns.store(0, Ordering::Relaxed);
    }
}

fn user_number(s: &str, prefix: &str) -> Option<usize> {
    s.strip_prefix(prefix)?.parse().ok()
}

/// The user a request authenticates as, checked the way the real service would.
fn authenticate(kind: Kind, port: u16, uri: &Uri, headers: &HeaderMap) -> Option<usize> {
    let auth = headers.get("authorization")?.to_str().ok()?;
    match kind {
        Kind::Apikey => {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.strip_prefix("Basic ")?)
                .ok()?;
            let (user, token) = std::str::from_utf8(&raw).ok()?.split_once(':')?;
            let n = user_number(user, "u")?;
            (token == format!("tok-{n}")).then_some(n)
        }
        Kind::Oauth2 => user_number(auth.strip_prefix("Bearer ")?, "at-"),
        Kind::Oauth1 => {
            let url = format!("http://127.0.0.1:{port}{uri}");
            let req = deputy::sandbox::oauth1_verify::SignedRequest {
                method: "GET",
                url: &url,
                authorization: Some(auth),
                content_type: None,
                body: b"",
            };
            let v = deputy::sandbox::oauth1_verify::verify(
                &req,
                |k| (k == CONSUMER_KEY).then(|| CONSUMER_SECRET.to_string()),
                |t| user_number(t, "tk-").map(|n| format!("ts-{n}")),
            )
            .ok()?;
            user_number(v.token.as_deref()?, "tk-")
        }
    }
}

async fn start_upstream(kind: Kind) -> (u16, Arc<Upstream>) {
    let stats = Arc::new(Upstream::default());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let s = stats.clone();
    let app = axum::Router::new().route(
        "/item",
        axum::routing::get(move |uri: Uri, headers: HeaderMap| {
            let s = s.clone();
            async move {
                let start = Instant::now();
                let r = match authenticate(kind, port, &uri, &headers) {
                    Some(n) => {
                        s.ok.fetch_add(1, Ordering::Relaxed);
                        axum::Json(serde_json::json!({ "user": format!("u{n}") })).into_response()
                    }
                    None => {
                        s.refused.fetch_add(1, Ordering::Relaxed);
                        (StatusCode::UNAUTHORIZED, "bad credential").into_response()
                    }
                };
                s.handler_ns
                    .fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
                r
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (port, stats)
}

fn pack(kind: Kind, port: u16) -> String {
    let auth = match kind {
        Kind::Apikey => "auth = { kind = \"basic\", hint = \"user:token\" }".to_string(),
        Kind::Oauth1 => "[service.auth]\nkind = \"oauth1\"\nrequest_token_url = \"/oauth/request_token\"\nauthorize_url = \"/oauth/authorize\"\naccess_token_url = \"/oauth/access_token\"".into(),
        Kind::Oauth2 => "[service.auth]\nkind = \"oauth2\"\ngrant = \"device\"\ndevice_authorization_url = \"/device\"\nauthorize_url = \"/authorize\"\ntoken_url = \"/token\"".into(),
    };
    format!(
        "[service]\nname = \"load\"\nprefixes = [\"load\"]\nsummary = \"the load generator's upstream\"\nbase_url = \"http://127.0.0.1:{port}\"\n{auth}\n\n[[command]]\nname = \"item\"\nhelp = \"Fetch the item\"\npath = \"/item\"\nreply = \"ok {{{{ body.user }}}}\"\n"
    )
}

fn credential(kind: Kind, n: usize) -> serde_json::Value {
    match kind {
        Kind::Apikey => {
            serde_json::json!({"kind": "api_key", "secret": format!("u{n}:tok-{n}"), "linked_at": 0})
        }
        Kind::Oauth1 => serde_json::json!({"kind": "oauth1", "token": format!("tk-{n}"),
            "token_secret": format!("ts-{n}"), "user_id": null, "screen_name": null, "linked_at": 0}),
        Kind::Oauth2 => serde_json::json!({"kind": "oauth2", "access_token": format!("at-{n}"),
            "refresh_token": null, "expires_at": null, "scopes": [], "linked_at": 0}),
    }
}

/// A deputy installation: config, the load pack, and N users linked in its brain.
async fn install(dir: &Path, kind: Kind, port: u16, users: usize) -> PathBuf {
    std::fs::create_dir_all(dir.join("packs")).unwrap();
    std::fs::write(dir.join("packs/load.toml"), pack(kind, port)).unwrap();
    let config = dir.join("deputy.toml");
    std::fs::write(
        &config,
        format!(
            "[bot]\npacks = {:?}\n\n[brain]\npath = {:?}\n\n# A load test floods on purpose.\n[limits]\ncommands_per_minute = 0\n\n[http]\nmax_concurrent = 4096\n\n[services.load]\nconsumer_key = \"{CONSUMER_KEY}\"\nclient_id = \"load-client\"\n",
            dir.join("packs"),
            dir.join("brain")
        ),
    )
    .unwrap();
    let sealer = Sealer::new(&SecretString::from(SECRET.to_string()), &[]).unwrap();
    let brain = Brain::open_dir(&dir.join("brain"), sealer).unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..users {
        let brain = brain.clone();
        tasks.spawn(async move {
            let owner = Owner {
                adapter: "shell".into(),
                workspace: "local".into(),
                user: format!("u{n}"),
            };
            brain
                .put(&KeyPath::credential(&owner, "load"), &credential(kind, n))
                .await
                .unwrap();
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
    config
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// One command: when it was offered (from the start of the run) and how long its answer took.
#[derive(Clone, Copy)]
struct Sample {
    sent: Duration,
    latency: Duration,
}

fn report(args: &Args, elapsed: Duration, mut samples: Vec<Sample>, upstream: &Upstream) {
    if let Some(path) = &args.latencies {
        use std::io::Write;
        samples.sort_by_key(|s| s.sent);
        let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
        for s in &samples {
            writeln!(f, "{} {}", s.sent.as_micros(), s.latency.as_micros()).unwrap();
        }
        f.flush().unwrap();
    }
    let mut latencies: Vec<Duration> = samples.iter().map(|s| s.latency).collect();
    latencies.sort();
    let n = latencies.len();
    let ok = upstream.ok.load(Ordering::Relaxed);
    let upstream_mean =
        Duration::from_nanos(upstream.handler_ns.load(Ordering::Relaxed) / ok.max(1));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "mode {:?}, kind {:?}, {} users, {n} commands in {:.3} s: {:.0} commands/s",
        args.mode,
        args.kind,
        args.users,
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64()
    );
    println!(
        "latency ms: p50 {:.3}  p90 {:.3}  p99 {:.3}  max {:.3}",
        ms(percentile(&latencies, 0.5)),
        ms(percentile(&latencies, 0.9)),
        ms(percentile(&latencies, 0.99)),
        ms(percentile(&latencies, 1.0))
    );
    println!(
        "added by deputy (latency minus the upstream handler's mean {:.3} ms): p50 {:.3}  p99 {:.3}",
        ms(upstream_mean),
        ms(percentile(&latencies, 0.5).saturating_sub(upstream_mean)),
        ms(percentile(&latencies, 0.99).saturating_sub(upstream_mean))
    );
    println!(
        "upstream: {ok} verified, {} refused",
        upstream.refused.load(Ordering::Relaxed)
    );
    assert_eq!(
        ok as usize, n,
        "every command reached the upstream as its user"
    );
}

fn user_of(j: usize, users: usize) -> usize {
    (j * 7919) % users
}

/// Holds a pacing thread back until each command is due: command `j` at `j / rate` seconds
/// from `start`, evenly spaced on the OS timer (tens of µs late at most), or with `--bursty`
/// on tokio's timer, whose 1 ms wheel lets each millisecond's commands go at once. Without a
/// rate it never waits.
struct Pacer {
    start: Instant,
    rate: Option<u64>,
    /// The runtime whose timer `--bursty` waits on.
    bursty: Option<tokio::runtime::Runtime>,
}

impl Pacer {
    fn new(start: Instant, args: &Args) -> Pacer {
        let bursty = args.bursty.then(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_time()
                .build()
                .unwrap()
        });
        Pacer {
            start,
            rate: args.rate,
            bursty,
        }
    }

    fn wait(&self, j: usize) {
        let Some(rate) = self.rate else { return };
        let due =
            self.start + Duration::from_nanos((j as u128 * 1_000_000_000 / rate as u128) as u64);
        match &self.bursty {
            // The timer is made inside the runtime, which it needs.
            Some(rt) => rt.block_on(async { tokio::time::sleep_until(due.into()).await }),
            None => std::thread::sleep(due.saturating_duration_since(Instant::now())),
        }
    }
}

/// Kills deputy if the load generator panics before it exits.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Drives `deputy shell` from two threads of its own, a writer and a reader, so the load
/// generator's own scheduling adds as little as it can to what is measured.
fn run_shell(args: &Args, config: &Path, upstream: &Upstream) {
    use std::io::{BufRead, Write};
    let mut child = KillOnDrop(
        std::process::Command::new(&args.bin)
            .arg("--config")
            .arg(config)
            .args(["shell", "--show-user"])
            .env("DEPUTY_SECRET", SECRET)
            .env("DEPUTY_LOAD_CONSUMER_SECRET", CONSUMER_SECRET)
            .env("DEPUTY_LOAD_CLIENT_SECRET", "load-client-secret")
            .env("RUST_LOG", "error")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start {}: {e} (cargo build --release)",
                    args.bin.display()
                )
            }),
    );
    let pid = child.0.id();
    let mut stdin = child.0.stdin.take().unwrap();
    let out = std::io::BufReader::with_capacity(64 * 1024, child.0.stdout.take().unwrap());
    // Per user, the send times of commands not yet answered (a user's replies come in order).
    let sent: Arc<std::sync::Mutex<Vec<VecDeque<Instant>>>> =
        Arc::new(std::sync::Mutex::new(vec![VecDeque::new(); args.users]));
    // The clock starts once deputy has answered one command: start-up is measured on its own
    // (start → first reply), and the first command also opens the upstream connection.
    stdin.write_all(b"/user u0\nload item\n").unwrap();
    let mut lines = out.lines();
    let first = lines.next().expect("deputy started").unwrap();
    assert_eq!(first, "[u0] ok u0", "the warm-up command failed");
    upstream.reset();
    let (users, messages, rate) = (args.users, args.messages, args.rate);
    let start = Instant::now();
    let pacer = Pacer::new(start, args);
    let s = sent.clone();
    let writer = std::thread::spawn(move || {
        let mut buf = Vec::with_capacity(64 * 1024);
        for j in 0..messages {
            pacer.wait(j);
            let u = user_of(j, users);
            buf.extend_from_slice(format!("/user u{u}\nload item\n").as_bytes());
            s.lock().unwrap()[u].push_back(Instant::now());
            if rate.is_some() || buf.len() > 32 * 1024 || j + 1 == messages {
                stdin.write_all(&buf).unwrap();
                buf.clear();
            }
        }
        // Closing stdin tells deputy the input is over.
        drop(stdin);
    });
    let mut samples = Vec::with_capacity(messages);
    while samples.len() < messages {
        let line = lines.next().expect("deputy answered everything").unwrap();
        let now = Instant::now();
        let (who, text) = line
            .strip_prefix('[')
            .and_then(|l| l.split_once("] "))
            .unwrap_or_else(|| panic!("unexpected output: {line}"));
        assert_eq!(text, format!("ok {who}"), "a wrong or failed answer");
        let u: usize = user_number(who, "u").unwrap();
        let t = sent.lock().unwrap()[u].pop_front().unwrap();
        samples.push(Sample {
            sent: t - start,
            latency: now - t,
        });
    }
    let elapsed = start.elapsed();
    let peak = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_string())
        })
        .unwrap_or_else(|| "?".into());
    writer.join().unwrap();
    assert!(child.0.wait().unwrap().success());
    report(args, elapsed, samples, upstream);
    println!("deputy peak RSS: {peak} kB");
}

/// User `u`'s `load item`, in a direct message in the shell.
fn message(u: usize, id: String) -> deputy::chat::Message {
    deputy::chat::Message {
        adapter: "shell".into(),
        workspace: "local".into(),
        user: format!("u{u}"),
        user_name: format!("u{u}"),
        channel: format!("dm:u{u}"),
        id,
        thread: None,
        direct: true,
        text: "load item".into(),
    }
}

async fn run_dispatch(args: &Args, config: &Path, upstream: &Upstream) {
    std::env::set_var("DEPUTY_LOAD_CONSUMER_SECRET", CONSUMER_SECRET);
    std::env::set_var("DEPUTY_LOAD_CLIENT_SECRET", "load-client-secret");
    let config = deputy::app::load_config(config, true).unwrap();
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let sealer = Sealer::new(&SecretString::from(SECRET.to_string()), &[]).unwrap();
    let brain = deputy::app::open_brain(&config, sealer).unwrap();
    let d = deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap();
    struct Null;
    #[async_trait::async_trait]
    impl deputy::chat::Adapter for Null {
        async fn send(
            &self,
            _: &deputy::chat::Message,
            _: deputy::chat::Reply,
        ) -> anyhow::Result<()> {
            Ok(())
        }
        async fn delete(&self, _: &deputy::chat::Message) -> deputy::chat::Deleted {
            deputy::chat::Deleted::Unsupported
        }
    }
    // One task per user, each running its commands in order, as the runner would; a pacer
    // thread offers each command to its user's task when it is due. Latency counts from then,
    // so time spent waiting for a worker counts too.
    let mut queues = Vec::with_capacity(args.users);
    let mut tasks = tokio::task::JoinSet::new();
    for u in 0..args.users {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Instant)>();
        queues.push(tx);
        let d = d.clone();
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while let Some((j, sent)) = rx.recv().await {
                let replies = d.handle(&message(u, j.to_string()), &Null).await;
                lat.push((sent, sent.elapsed()));
                assert_eq!(replies[0].text, format!("ok u{u}"));
            }
            lat
        });
    }
    // As in shell mode, one command first opens the upstream connection, off the clock.
    let warm = message(0, "warm-up".into());
    assert_eq!(d.handle(&warm, &Null).await[0].text, "ok u0");
    upstream.reset();
    let (users, messages) = (args.users, args.messages);
    let start = Instant::now();
    let pacer = Pacer::new(start, args);
    let pacer = std::thread::spawn(move || {
        for j in 0..messages {
            pacer.wait(j);
            let _ = queues[user_of(j, users)].send((j, Instant::now()));
        }
    });
    let mut samples = Vec::new();
    while let Some(r) = tasks.join_next().await {
        samples.extend(r.unwrap().into_iter().map(|(sent, latency)| Sample {
            sent: sent - start,
            latency,
        }));
    }
    pacer.join().unwrap();
    report(args, start.elapsed(), samples, upstream);
}

fn main() {
    let args = Args::parse();
    // The upstream gets a runtime (and core) of its own, like a real service would.
    let upstream_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (port, upstream) = upstream_rt.block_on(start_upstream(args.kind));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    rt.block_on(async {
        let config = install(dir.path(), args.kind, port, args.users).await;
        match args.mode {
            Mode::Shell => tokio::task::block_in_place(|| run_shell(&args, &config, &upstream)),
            Mode::Dispatch => run_dispatch(&args, &config, &upstream).await,
        }
    });
}
