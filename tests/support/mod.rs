//! Test support: a Jenkins-like server on 127.0.0.1 that checks HTTP Basic auth the way
//! Jenkins does and records who called, and a harness that runs the real `deputy` binary
//! through its shell adapter.
#![allow(dead_code)]

pub mod discord;
pub mod slack;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};

use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine;
use tokio::sync::Notify;

pub const ALICE_KEY: &str = "alice:11a2b3c4d5e6alicetoken";
pub const BOB_KEY: &str = "bob:99f8e7d6c5b4bobtoken";
pub const SECRET_A: &str = "aGVsbG8gdGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGtleSAxMjM0NTY3OA==";
pub const SECRET_B: &str = "c29tZSBvdGhlciBzZWNyZXQgdGhhdCBpcyBhbHNvIGxvbmcgZW5vdWdo";

/// One call the fake accepted or refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The authenticated Jenkins user, or `None` when the call carried no valid credential.
    pub user: Option<String>,
    pub method: String,
    pub path: String,
    pub query: String,
}

impl Seen {
    /// `user` stopped the last build of `job`.
    pub fn abort(user: &str, job: &str) -> Seen {
        Seen {
            user: Some(user.into()),
            method: "POST".into(),
            path: format!("/job/{job}/lastBuild/stop"),
            query: String::new(),
        }
    }
}

#[derive(Default)]
pub struct JenkinsState {
    pub seen: Mutex<Vec<Seen>>,
    /// `jobs/slow` waits for this before answering.
    pub release_slow: Notify,
    /// Signalled when a `slow` request has arrived (and is waiting).
    pub slow_started: Notify,
}

pub struct FakeJenkins {
    pub url: String,
    pub state: Arc<JenkinsState>,
}

impl FakeJenkins {
    pub async fn start() -> FakeJenkins {
        let state = Arc::new(JenkinsState::default());
        let app = Router::new()
            .route("/me/api/json", get(me))
            .route("/api/json", get(jobs))
            .route("/job/{job}/buildWithParameters", post(build))
            .route("/job/{job}/lastBuild/api/json", get(last))
            .route("/job/{job}/lastBuild/stop", post(stop))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeJenkins { url, state }
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.state.seen.lock().unwrap().clone()
    }
}

/// The user a Basic header authenticates, checked against the tokens Jenkins issued.
fn authenticate(headers: &HeaderMap) -> Option<String> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let pair = String::from_utf8(decoded).ok()?;
    let valid: HashMap<&str, &str> = [ALICE_KEY, BOB_KEY]
        .iter()
        .map(|k| k.split_once(':').unwrap())
        .collect();
    let (user, token) = pair.split_once(':')?;
    // Generated users for load and crash tests: `uN` with token `tok-N`.
    let generated = user
        .strip_prefix('u')
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .is_some_and(|n| token == format!("tok-{n}"));
    (generated || valid.get(user) == Some(&token)).then(|| user.to_string())
}

fn record(
    state: &JenkinsState,
    headers: &HeaderMap,
    method: &str,
    path: String,
    query: String,
) -> Result<String, Box<Response>> {
    let user = authenticate(headers);
    state.seen.lock().unwrap().push(Seen {
        user: user.clone(),
        method: method.into(),
        path,
        query,
    });
    user.ok_or_else(|| {
        Box::new(
            (
                StatusCode::UNAUTHORIZED,
                [("www-authenticate", "Basic realm=\"Jenkins\"")],
                "Invalid password/token",
            )
                .into_response(),
        )
    })
}

async fn me(State(s): State<Arc<JenkinsState>>, headers: HeaderMap) -> Response {
    match record(&s, &headers, "GET", "/me/api/json".into(), String::new()) {
        Ok(user) => {
            axum::Json(serde_json::json!({ "id": user, "fullName": format!("{user} (full name)") }))
                .into_response()
        }
        Err(r) => *r,
    }
}

async fn jobs(
    State(s): State<Arc<JenkinsState>>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let query = q.get("tree").cloned().unwrap_or_default();
    match record(&s, &headers, "GET", "/api/json".into(), query) {
        Ok(_) => axum::Json(serde_json::json!({ "jobs": [
            { "name": "deploy", "color": "blue" },
            { "name": "nightly", "color": "red" }
        ]}))
        .into_response(),
        Err(r) => *r,
    }
}

async fn build(
    State(s): State<Arc<JenkinsState>>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
    raw: axum::extract::RawQuery,
) -> Response {
    let path = format!("/job/{job}/buildWithParameters");
    match record(&s, &headers, "POST", path, raw.0.unwrap_or_default()) {
        Ok(_) => (
            StatusCode::CREATED,
            [("location", "http://jenkins.test/queue/item/17/")],
        )
            .into_response(),
        Err(r) => *r,
    }
}

async fn stop(
    State(s): State<Arc<JenkinsState>>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/job/{job}/lastBuild/stop");
    match record(&s, &headers, "POST", path, String::new()) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(r) => *r,
    }
}

async fn last(
    State(s): State<Arc<JenkinsState>>,
    UrlPath(job): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let path = format!("/job/{job}/lastBuild/api/json");
    if let Err(r) = record(&s, &headers, "GET", path, String::new()) {
        return *r;
    }
    match job.as_str() {
        "boom" => (
            StatusCode::INTERNAL_SERVER_ERROR,
            "java.lang.NullPointerException",
        )
            .into_response(),
        "garbage" => (
            StatusCode::OK,
            [("content-type", "application/json")],
            "<html>oops",
        )
            .into_response(),
        "busy" => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "7")], "").into_response(),
        "missing" => (StatusCode::NOT_FOUND, "").into_response(),
        // Never answers: the client's timeout must fire.
        "hang" => std::future::pending::<Response>().await,
        "slow" => {
            let released = s.release_slow.notified();
            s.slow_started.notify_one();
            released.await;
            last_build("slow")
        }
        other => last_build(other),
    }
}

fn last_build(job: &str) -> Response {
    axum::Json(serde_json::json!({
        "fullDisplayName": format!("{job} #42"),
        "result": "SUCCESS",
        "url": format!("http://jenkins.test/job/{job}/42/"),
    }))
    .into_response()
}

/// A deputy installation in a temp dir: config, packs (the repository's own), brain.
pub struct Deputy {
    pub dir: tempfile::TempDir,
    pub secret: Option<String>,
    /// Extra environment for the process.
    pub env: Vec<(String, String)>,
}

impl Deputy {
    /// Config pointing the shipped jenkins pack at `jenkins_url`, plus `extra` TOML.
    pub fn new(jenkins_url: &str, extra: &str) -> Deputy {
        let dir = tempfile::tempdir().unwrap();
        let packs = Path::new(env!("CARGO_MANIFEST_DIR")).join("commands");
        std::fs::write(
            dir.path().join("deputy.toml"),
            format!(
                "[bot]\npacks = {packs:?}\n\n[brain]\npath = \"data\"\n\n[services.jenkins]\nbase_url = \"{jenkins_url}\"\n{extra}\n"
            ),
        )
        .unwrap();
        Deputy {
            dir,
            secret: Some(SECRET_A.into()),
            env: Vec::new(),
        }
    }

    /// Adds `line` to the config's `[bot]` table (`confirm_ttl_secs = 0`).
    pub fn bot(&self, line: &str) {
        let path = self.config();
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(
            &path,
            text.replacen("[bot]\n", &format!("[bot]\n{line}\n"), 1),
        )
        .unwrap();
    }

    /// Config pointing the shipped twitter pack at a sandbox provider, with its consumer.
    pub fn twitter(provider_url: &str, extra: &str) -> Deputy {
        let mut d = Deputy::new(
            "http://127.0.0.1:9",
            &format!(
                "\n[services.twitter]\nbase_url = \"{provider_url}\"\nconsumer_key = \"{}\"\n{extra}",
                deputy::sandbox::CONSUMER_KEY
            ),
        );
        d.env.push((
            "DEPUTY_TWITTER_CONSUMER_SECRET".into(),
            deputy::sandbox::CONSUMER_SECRET.into(),
        ));
        d
    }

    /// Puts the brain on a Redis server instead of sled.
    pub fn use_redis(&self, url: &str) {
        let config = std::fs::read_to_string(self.config()).unwrap();
        assert!(config.contains("[brain]\n"));
        std::fs::write(
            self.config(),
            config.replace("[brain]\n", &format!("[brain]\nurl = \"{url}\"\n")),
        )
        .unwrap();
    }

    /// Points the config at another packs folder.
    pub fn use_packs(&self, dir: &Path) {
        let config = std::fs::read_to_string(self.config()).unwrap();
        let line = config
            .lines()
            .find(|l| l.starts_with("packs ="))
            .unwrap()
            .to_string();
        std::fs::write(
            self.config(),
            config.replace(&line, &format!("packs = {dir:?}")),
        )
        .unwrap();
    }

    pub fn config(&self) -> PathBuf {
        self.dir.path().join("deputy.toml")
    }

    pub fn brain_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_deputy"));
        c.arg("--config").arg(self.config()).args(args);
        c.env_remove("DEPUTY_SECRET")
            .env_remove("DEPUTY_SECRET_PREVIOUS");
        c.env("RUST_LOG", "info");
        if let Some(s) = &self.secret {
            c.env("DEPUTY_SECRET", s);
        }
        c.env_remove("DEPUTY_TWITTER_CONSUMER_KEY")
            .env_remove("DEPUTY_TWITTER_CONSUMER_SECRET");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.current_dir(self.dir.path());
        c
    }

    /// Runs `deputy shell ARGS` with `lines` on stdin; returns once it has exited.
    pub async fn shell(&self, args: &[&str], lines: &[&str]) -> Run {
        let mut all = vec!["shell"];
        all.extend_from_slice(args);
        self.run_with_input(&all, lines).await
    }

    /// Runs deputy with `lines` on stdin (then end of input) and waits for it to exit. Async,
    /// so the test's fake servers keep serving meanwhile.
    pub async fn run_with_input(&self, args: &[&str], lines: &[&str]) -> Run {
        use tokio::io::AsyncWriteExt;
        let mut child = self.spawn(args);
        let mut stdin = child.stdin.take().unwrap();
        let input: String = lines.iter().map(|l| format!("{l}\n")).collect();
        // Written while the output is read: a long input must not wait on a full stdout pipe.
        let writer = tokio::spawn(async move {
            let _ = stdin.write_all(input.as_bytes()).await;
        });
        let output = child.wait_with_output().await.unwrap();
        writer.await.unwrap();
        Run(output)
    }

    /// Starts deputy with piped stdin, stdout and stderr, for tests that talk to it live.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::from(self.command(args))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

pub struct Run(pub Output);

impl Run {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.0.stdout).into_owned()
    }
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.0.stderr).into_owned()
    }
    pub fn code(&self) -> Option<i32> {
        self.0.status.code()
    }
    /// Panics with both streams unless the run exited 0.
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code(),
            Some(0),
            "stdout:\n{}\nstderr:\n{}",
            self.stdout(),
            self.stderr()
        );
        self
    }
}

/// Every file under `dir` with its bytes, for before/after comparisons and plaintext scans.
pub fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out.sort();
    out
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

pub const GITLAB_TOKEN: &str = "glpat-alice0123456789abcdef";

/// What the fake GitLab saw: (token valid?, method, raw path, JSON body).
pub type GitlabSeen = Arc<Mutex<Vec<(bool, String, String, serde_json::Value)>>>;

/// A GitLab-like server checking the `PRIVATE-TOKEN` header, as GitLab does.
pub async fn fake_gitlab() -> (String, GitlabSeen) {
    let seen: GitlabSeen = Arc::default();
    let s = seen.clone();
    let app = Router::new().fallback(move |req: axum::extract::Request| {
        let s = s.clone();
        async move {
            let ok = req.headers().get("private-token").and_then(|v| v.to_str().ok())
                == Some(GITLAB_TOKEN);
            let method = req.method().to_string();
            let path = req.uri().path().to_string();
            let bytes = axum::body::to_bytes(req.into_body(), 1 << 20).await.unwrap();
            let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
            s.lock()
                .unwrap()
                .push((ok, method.clone(), path.clone(), body.clone()));
            if !ok {
                return (StatusCode::UNAUTHORIZED, axum::Json(serde_json::json!({"message": "401 Unauthorized"}))).into_response();
            }
            match (method.as_str(), path.as_str()) {
                ("GET", "/api/v4/user") => axum::Json(serde_json::json!({"name": "Alice A", "username": "alice"})).into_response(),
                ("POST", "/api/v4/projects/team%2Fapp/issues") => (
                    StatusCode::CREATED,
                    axum::Json(serde_json::json!({"iid": 7, "web_url": "http://gitlab.test/team/app/-/issues/7", "title": body["title"]})),
                )
                    .into_response(),
                _ => StatusCode::NOT_FOUND.into_response(),
            }
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

/// A deputy process talked to line by line.
pub struct Live {
    pub child: tokio::process::Child,
    stdin: Option<tokio::process::ChildStdin>,
    out: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl Live {
    pub fn start(deputy: &Deputy, args: &[&str]) -> Live {
        use tokio::io::AsyncBufReadExt;
        let mut child = deputy.spawn(args);
        let stdin = child.stdin.take();
        let out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        Live { child, stdin, out }
    }

    pub async fn send(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .await
            .unwrap();
    }

    /// The next line deputy prints (a reply), or a panic after 20 s.
    pub async fn line(&mut self) -> String {
        let line = tokio::time::timeout(std::time::Duration::from_secs(20), self.out.next_line())
            .await
            .expect("a reply within 20 s")
            .unwrap();
        match line {
            Some(l) => l,
            None => {
                use tokio::io::AsyncReadExt;
                let mut err = String::new();
                if let Some(mut e) = self.child.stderr.take() {
                    let _ = e.read_to_string(&mut err).await;
                }
                panic!("deputy exited; stderr:\n{err}")
            }
        }
    }

    /// Sends a message and returns the first line of its reply.
    pub async fn ask(&mut self, line: &str) -> String {
        self.send(line).await;
        self.line().await
    }

    /// Closes stdin, waits for a clean exit, and returns what deputy logged.
    pub async fn finish_with_log(mut self) -> String {
        use tokio::io::AsyncReadExt;
        self.stdin.take();
        while let Ok(Some(_)) = self.out.next_line().await {}
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).await.unwrap();
        }
        assert!(self.child.wait().await.unwrap().success(), "{err}");
        err
    }

    /// Closes stdin and waits for a clean exit.
    pub async fn finish(mut self) -> Vec<String> {
        self.stdin.take();
        let mut rest = Vec::new();
        while let Ok(Some(l)) = self.out.next_line().await {
            rest.push(l);
        }
        assert!(self.child.wait().await.unwrap().success());
        rest
    }
}

/// The user code in a device-flow setupauth reply ("… enter the code WDJB-MJHT . …").
pub fn user_code(reply: &str) -> String {
    let after = reply
        .split("enter the code ")
        .nth(1)
        .unwrap_or_else(|| panic!("no code in {reply:?}"));
    after.split_whitespace().next().unwrap().to_string()
}

/// The sign-in link in a setupauth reply.
pub fn link_in(reply: &str) -> String {
    let start = reply
        .find("http://")
        .unwrap_or_else(|| panic!("no link in {reply:?}"));
    reply[start..]
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// Plays the browser on the sandbox's authorize page: approves as `screen_name` and reads
/// the PIN the page shows.
pub async fn approve_and_read_pin(link: &str, screen_name: &str) -> String {
    let page = reqwest::get(format!("{link}&screen_name={screen_name}"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let start = page.find("<code id=\"pin\">").expect("a PIN on the page") + 15;
    let end = start + page[start..].find("</code>").unwrap();
    page[start..end].to_string()
}

impl Deputy {
    /// Config pointing a github pack at a fake OAuth 2.0 provider, trusting its TLS
    /// certificate. `pack` replaces the shipped `github.toml` when given.
    pub fn github(
        provider: &deputy::sandbox::oauth2::OAuth2Provider,
        pack: Option<&str>,
        extra: &str,
    ) -> Deputy {
        let mut d = Deputy::new(
            "http://127.0.0.1:9",
            &format!(
                "\n[services.github]\nbase_url = \"{url}/api\"\nauth_base_url = \"{url}\"\nclient_id = \"{id}\"\n\n[http]\nca_file = \"ca.pem\"\n{extra}",
                url = provider.url,
                id = deputy::sandbox::oauth2::CLIENT_ID,
            ),
        );
        std::fs::write(d.dir.path().join("ca.pem"), &provider.ca_pem).unwrap();
        if let Some(pack) = pack {
            let packs = d.dir.path().join("packs");
            std::fs::create_dir_all(&packs).unwrap();
            std::fs::write(packs.join("github.toml"), pack).unwrap();
            d.use_packs(&packs);
            // The jenkins override in the base config needs its pack too.
            std::fs::copy(
                concat!(env!("CARGO_MANIFEST_DIR"), "/commands/jenkins.toml"),
                packs.join("jenkins.toml"),
            )
            .unwrap();
        }
        d.env.push((
            "DEPUTY_GITHUB_CLIENT_SECRET".into(),
            deputy::sandbox::oauth2::CLIENT_SECRET.into(),
        ));
        d
    }
}

/// The shipped github pack with some lines replaced (a test's variant of it).
pub fn github_pack(replace: &[(&str, &str)]) -> String {
    let mut pack =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/commands/github.toml"))
            .unwrap();
    for (from, to) in replace {
        assert!(pack.contains(from), "{from:?} not in github.toml");
        pack = pack.replace(from, to);
    }
    pack
}

/// A free port on 127.0.0.1 for deputy's own listener.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A real Redis on a loopback port of its own, with the persistence the README recommends
/// (AOF, fsync on every write). Killed on drop.
pub struct RedisServer {
    pub port: u16,
    pub dir: tempfile::TempDir,
    child: Option<tokio::process::Child>,
}

impl RedisServer {
    pub async fn start() -> RedisServer {
        let dir = tempfile::tempdir().unwrap();
        let mut r = RedisServer {
            port: free_port(),
            dir,
            child: None,
        };
        r.restart().await;
        r
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts (again) on the same port and data directory; returns once it accepts
    /// connections (it says so on stdout).
    pub async fn restart(&mut self) {
        use tokio::io::AsyncBufReadExt;
        let mut child = tokio::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("redis-server must be installed (.ci/run installs it from Debian's packages)");
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(20), out.next_line())
                .await
                .expect("redis-server ready within 20 s")
                .unwrap()
                .expect("redis-server exited before it was ready");
            if line.contains("Ready to accept connections") {
                break;
            }
        }
        // Keep reading so a full pipe never stalls the server.
        tokio::spawn(async move { while let Ok(Some(_)) = out.next_line().await {} });
        self.child = Some(child);
    }

    /// SIGKILL: whatever was acknowledged must be in the AOF already.
    pub async fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.start_kill().unwrap();
            c.wait().await.unwrap();
        }
    }
}

/// The magic code the browser flow's last page shows ("Your code is 123456").
pub fn magic_code(page: &str) -> String {
    page.split("Your code is ")
        .nth(1)
        .expect("a magic code")
        .chars()
        .take(6)
        .collect()
}
