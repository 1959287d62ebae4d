//! A hostile or failing upstream, on 127.0.0.1, written at the byte level so it can do what
//! real servers do on a bad day: stall, reset the connection, trickle a body, answer 100 MB,
//! answer garbage, answer 429 with `Retry-After`, fail once then succeed. It counts every
//! request, so a test can tell a GET that was retried from a POST that must never be sent
//! twice.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deputy::brain::Owner;
use deputy::config::{HttpConfig, ServiceOverride};
use deputy::upstream::{Auth, Call, CallError, ResponseKind, Target, Upstream};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

#[derive(Default)]
struct Counts {
    /// Requests per "METHOD /path".
    seen: Mutex<HashMap<String, usize>>,
    /// Bytes of the huge body the server managed to hand to the socket.
    huge_written: AtomicU64,
    /// Woken when a `/stall` request has arrived.
    stalled: Notify,
}

impl Counts {
    fn of(&self, what: &str) -> usize {
        self.seen.lock().unwrap().get(what).copied().unwrap_or(0)
    }
}

struct Hostile {
    url: String,
    counts: Arc<Counts>,
}

const HUGE: u64 = 100 * 1024 * 1024;

impl Hostile {
    async fn start() -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(socket, c.clone()));
            }
        });
        Hostile { url, counts }
    }
}

/// Reads one request head (and skips its body); `None` when the client went away.
async fn read_head(socket: &mut TcpStream) -> Option<(String, String)> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&byte[..n]);
    }
    let head = String::from_utf8_lossy(&buf).to_string();
    let mut first = head.lines().next()?.split(' ');
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap_or(0);
    let body_seen = buf.len() - (buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4);
    let mut left = length.saturating_sub(body_seen);
    while left > 0 {
        let n = socket.read(&mut byte).await.ok()?;
        if n == 0 {
            return None;
        }
        left = left.saturating_sub(n);
    }
    Some((method, path))
}

fn ok_json(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn serve(mut socket: TcpStream, counts: Arc<Counts>) {
    // Keep-alive: several requests may come on one connection.
    while let Some((method, path)) = read_head(&mut socket).await {
        let n = {
            let mut seen = counts.seen.lock().unwrap();
            let n = seen.entry(format!("{method} {path}")).or_default();
            *n += 1;
            *n
        };
        let (route, arg) = path.split_once('?').unwrap_or((&path, ""));
        let answer = match route {
            "/ok" => ok_json(r#"{"ok":true}"#),
            "/stall" => {
                counts.stalled.notify_one();
                std::future::pending::<()>().await;
                unreachable!()
            }
            "/trickle" => {
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 600\r\n\r\n")
                    .await;
                for _ in 0..600 {
                    if socket.write_all(b" ").await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                return;
            }
            "/huge" => {
                // Chunked, so no length warns the client: it must count as it reads.
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                let chunk = vec![b'7'; 64 * 1024];
                let framed = [
                    format!("{:x}\r\n", chunk.len()).into_bytes(),
                    chunk,
                    b"\r\n".to_vec(),
                ]
                .concat();
                while counts.huge_written.load(Ordering::SeqCst) < HUGE {
                    if socket.write_all(&framed).await.is_err() {
                        return;
                    }
                    counts.huge_written.fetch_add(64 * 1024, Ordering::SeqCst);
                }
                let _ = socket.write_all(b"0\r\n\r\n").await;
                return;
            }
            "/declared-huge" => {
                let _ = socket
                    .write_all(
                        format!("HTTP/1.1 200 OK\r\ncontent-length: {HUGE}\r\n\r\n").as_bytes(),
                    )
                    .await;
                return;
            }
            "/garbage-json" => ok_json("<html>oops"),
            "/not-http" => "SSH-2.0-OpenSSH_9.6\r\n\r\n".to_string(),
            "/reset-once" if n == 1 => {
                // Close with RST instead of FIN: a connection reset by peer. (Deprecated for
                // blocking on drop, which a zero linger never does.)
                #[allow(deprecated)]
                let _ = socket.set_linger(Some(Duration::ZERO));
                return;
            }
            "/reset-once" => ok_json(r#"{"ok":"after a reset"}"#),
            "/fail-once" if n == 1 => {
                "HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n".to_string()
            }
            "/fail-once" => ok_json(r#"{"ok":"after a 503"}"#),
            "/limited" if n == 1 => format!(
                "HTTP/1.1 429 Too Many Requests\r\nretry-after: {}\r\ncontent-length: 0\r\n\r\n",
                arg.replace("%20", " ")
            ),
            "/limited" => ok_json(r#"{"ok":"after waiting"}"#),
            _ => "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".to_string(),
        };
        if socket.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn owner() -> Owner {
    Owner {
        adapter: "test".into(),
        workspace: "w".into(),
        user: "alice".into(),
    }
}

fn upstream(http: HttpConfig) -> Upstream {
    Upstream::new(&http, &[]).unwrap()
}

fn http() -> HttpConfig {
    HttpConfig {
        retry_backoff_ms: 10,
        ..HttpConfig::default()
    }
}

async fn call(
    u: &Upstream,
    service: &str,
    secs: u64,
    method: &str,
    url: String,
) -> Result<deputy::upstream::Response, CallError> {
    let call = Call {
        method: method.parse().unwrap(),
        url: url.parse().unwrap(),
        headers: vec![],
        body: (method == "POST").then(|| ("{}".to_string(), "application/json".to_string())),
        response: ResponseKind::Json,
    };
    let target = Target {
        name: service,
        timeout: Some(Duration::from_secs(secs)),
    };
    u.send(&owner(), target, "test", call, Auth::Anonymous)
        .await
}

#[tokio::test]
async fn the_service_timeout_bounds_a_stalled_answer_and_a_trickled_body() {
    let h = Hostile::start().await;
    let u = upstream(http());
    let r = call(&u, "svc", 1, "GET", format!("{}/stall", h.url)).await;
    assert!(matches!(r, Err(CallError::Timeout(1))), "{r:?}");
    // A body that keeps coming, one byte at a time, for a minute: cut at the timeout.
    let r = call(&u, "svc", 1, "GET", format!("{}/trickle", h.url)).await;
    assert!(matches!(r, Err(CallError::Timeout(1))), "{r:?}");
    assert_eq!(
        CallError::Timeout(1).explain("svc"),
        "svc did not answer within 1 s; try again later."
    );
}

#[tokio::test]
async fn a_huge_body_is_cut_off_while_streaming_and_the_user_is_told() {
    let h = Hostile::start().await;
    let u = upstream(HttpConfig {
        max_body_bytes: 1024 * 1024,
        ..http()
    });
    let r = call(&u, "svc", 30, "GET", format!("{}/huge", h.url)).await;
    assert!(matches!(r, Err(CallError::TooLarge(1048576))), "{r:?}");
    // deputy stopped reading and dropped the connection: the server could not push the
    // 100 MB (what it handed over is the limit plus the sockets' buffers).
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let before = h.counts.huge_written.load(Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            if h.counts.huge_written.load(Ordering::SeqCst) == before {
                break;
            }
        }
    })
    .await
    .unwrap();
    let written = h.counts.huge_written.load(Ordering::SeqCst);
    println!("of a 100 MiB answer the server could hand over {written} bytes");
    assert!(written < HUGE / 4, "the server wrote {written} bytes");
    // A length announced up front is refused before reading anything.
    let r = call(&u, "svc", 30, "GET", format!("{}/declared-huge", h.url)).await;
    assert!(matches!(r, Err(CallError::TooLarge(_))), "{r:?}");
    let text = CallError::TooLarge(1048576).explain("svc");
    assert!(
        text.starts_with("svc answered with more than 1 MiB, so I stopped reading"),
        "{text}"
    );
    assert!(text.contains("[http] max_body_bytes"), "{text}");
}

#[tokio::test]
async fn garbage_gets_a_clear_error() {
    let h = Hostile::start().await;
    let u = upstream(http());
    let r = call(&u, "svc", 5, "GET", format!("{}/garbage-json", h.url)).await;
    assert!(matches!(r, Err(CallError::Unreadable)), "{r:?}");
    let r = call(&u, "svc", 5, "POST", format!("{}/not-http", h.url)).await;
    assert!(matches!(r, Err(CallError::Broken)), "{r:?}");
    assert_eq!(h.counts.of("POST /not-http"), 1);
}

#[tokio::test]
async fn a_get_is_retried_after_a_503_or_a_reset_and_a_post_is_never_sent_twice() {
    let h = Hostile::start().await;
    let u = upstream(http());
    let r = call(&u, "svc", 10, "GET", format!("{}/fail-once", h.url))
        .await
        .unwrap();
    assert_eq!(r.body["ok"], "after a 503");
    assert_eq!(h.counts.of("GET /fail-once"), 2);
    let r = call(&u, "svc", 10, "GET", format!("{}/reset-once", h.url))
        .await
        .unwrap();
    assert_eq!(r.body["ok"], "after a reset");
    assert_eq!(h.counts.of("GET /reset-once"), 2);

    let r = call(&u, "svc", 10, "POST", format!("{}/fail-once", h.url)).await;
    assert!(matches!(r, Err(CallError::Server(503))), "{r:?}");
    assert_eq!(h.counts.of("POST /fail-once"), 1);
    let r = call(&u, "svc", 10, "POST", format!("{}/reset-once", h.url)).await;
    assert!(matches!(r, Err(CallError::Broken)), "{r:?}");
    assert_eq!(h.counts.of("POST /reset-once"), 1);
    assert_eq!(
        CallError::Broken.explain("svc"),
        "The connection to svc broke before it finished answering; try again later."
    );

    // Retries are bounded: with none configured, the first failure is the answer.
    let none = upstream(HttpConfig {
        retries: 0,
        ..http()
    });
    let h2 = Hostile::start().await;
    let r = call(&none, "svc", 10, "GET", format!("{}/fail-once", h2.url)).await;
    assert!(matches!(r, Err(CallError::Server(503))), "{r:?}");
    assert_eq!(h2.counts.of("GET /fail-once"), 1);
}

#[tokio::test]
async fn a_short_retry_after_is_waited_out_and_a_long_one_is_told() {
    let h = Hostile::start().await;
    let u = upstream(http());
    let r = call(&u, "svc", 10, "GET", format!("{}/limited?1", h.url))
        .await
        .unwrap();
    assert_eq!(r.body["ok"], "after waiting");
    assert_eq!(h.counts.of("GET /limited?1"), 2);
    // Longer than [http] retry_after_max_secs: the user is told when to come back.
    let r = call(&u, "svc", 10, "GET", format!("{}/limited?120", h.url)).await;
    assert!(matches!(r, Err(CallError::RateLimited(Some(120)))), "{r:?}");
    assert_eq!(h.counts.of("GET /limited?120"), 1);
    // Longer than what is left of the call's timeout: told too, not waited for.
    let r = call(&u, "svc", 2, "GET", format!("{}/limited?5", h.url)).await;
    assert!(matches!(r, Err(CallError::RateLimited(Some(5)))), "{r:?}");
    // An HTTP date is read too; a POST is never repeated.
    let r = call(&u, "svc", 10, "POST", format!("{}/limited?1", h.url)).await;
    assert!(matches!(r, Err(CallError::RateLimited(Some(1)))), "{r:?}");
    assert_eq!(h.counts.of("POST /limited?1"), 1);
    let date = httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(300));
    let r = call(
        &u,
        "svc",
        10,
        "GET",
        format!("{}/limited?{}", h.url, date.replace(' ', "%20")),
    )
    .await;
    assert!(
        matches!(r, Err(CallError::RateLimited(Some(s))) if (295..=300).contains(&s)),
        "{r:?}"
    );
}

#[tokio::test]
async fn a_stalled_service_holds_only_its_own_slots_and_others_keep_answering() {
    let h = Hostile::start().await;
    let mut services = std::collections::BTreeMap::new();
    services.insert(
        "stuck".to_string(),
        ServiceOverride {
            max_concurrent: Some(2),
            ..ServiceOverride::default()
        },
    );
    let http = HttpConfig {
        max_waiting: 2,
        ..http()
    };
    let u = upstream(http.clone()).with_services(&http, &services);
    // Two calls hang on the stuck service: every slot to it is taken.
    let mut holders = Vec::new();
    for _ in 0..2 {
        let stalled = h.counts.stalled.notified();
        let (u, url) = (u.clone(), format!("{}/stall", h.url));
        holders.push(tokio::spawn(async move {
            call(&u, "stuck", 600, "GET", url).await
        }));
        stalled.await;
    }
    // Two more wait for a turn ([http] max_waiting); a fifth is refused at once.
    let mut waiters = Vec::new();
    for _ in 0..2 {
        let (u, url) = (u.clone(), format!("{}/ok", h.url));
        waiters.push(tokio::spawn(async move {
            call(&u, "stuck", 600, "GET", url).await
        }));
    }
    while u.waiting("stuck") < 2 {
        tokio::task::yield_now().await;
    }
    let r = call(&u, "stuck", 600, "GET", format!("{}/ok", h.url)).await;
    assert!(matches!(r, Err(CallError::Busy(600, 2))), "{r:?}");
    assert_eq!(h.counts.of("GET /ok"), 0, "nothing was sent");
    let text = CallError::Busy(600, 2).explain("stuck");
    assert!(
        text.starts_with("stuck is busy: all 2 of my calls to it are still waiting"),
        "{text}"
    );
    // Every other service is answered meanwhile, as often as asked.
    for _ in 0..20 {
        let r = call(&u, "other", 5, "GET", format!("{}/ok", h.url)).await;
        assert_eq!(r.unwrap().body["ok"], true);
    }
    // A waiter whose own timeout passes without a turn is told the service is busy.
    waiters.pop().unwrap().abort();
    while u.waiting("stuck") > 1 {
        tokio::task::yield_now().await;
    }
    let r = call(&u, "stuck", 1, "GET", format!("{}/ok", h.url)).await;
    assert!(matches!(r, Err(CallError::Busy(1, 2))), "{r:?}");
    assert_eq!(
        h.counts.of("GET /ok"),
        20,
        "only the other service's calls were sent"
    );
    // A holder giving up frees its slot: a waiter goes through.
    holders.remove(0).abort();
    let done = waiters.remove(0).await.unwrap().unwrap();
    assert_eq!(done.body["ok"], true);
    for t in holders.into_iter().chain(waiters) {
        t.abort();
    }
}

#[tokio::test]
async fn through_the_shell_a_stalled_service_answers_busy_and_others_keep_answering() {
    let jenkins = support::FakeJenkins::start().await;
    let (gitlab, _) = support::fake_gitlab().await;
    // One call in flight to Jenkins and one waiting, at most.
    let deputy = support::Deputy::new(
        &jenkins.url,
        &format!("max_concurrent = 1\n\n[http]\nmax_waiting = 1\n\n[services.gitlab]\nbase_url = \"{gitlab}\""),
    );
    let mut live = support::Live::start(&deputy, &["shell", "--show-user"]);
    for n in 1..=3 {
        live.send(&format!("/user u{n}")).await;
        let r = live.ask(&format!("jenkins setkey u{n}:tok-{n}")).await;
        assert!(r.contains("Stored"), "{r}");
    }
    live.send("/user alice").await;
    let r = live
        .ask(&format!("gl setkey {}", support::GITLAB_TOKEN))
        .await;
    assert!(r.contains("Stored"), "{r}");
    // u1's call hangs in Jenkins; u2 and u3 race for the one waiting place.
    live.send("/user u1\njenkins last slow").await;
    jenkins.state.slow_started.notified().await;
    live.send("/user u2\njenkins last two\n/user u3\njenkins last three")
        .await;
    let busy = live.line().await;
    let waiter = if busy.starts_with("[u2] ") {
        "[u3] three #42"
    } else {
        "[u2] two #42"
    };
    assert!(
        busy.contains("] jenkins is busy: all 1 of my calls to it are still waiting"),
        "{busy}"
    );
    // Another service answers at once meanwhile.
    live.send("/user alice").await;
    assert_eq!(
        live.ask("gl whoami").await,
        "[alice] You are Alice A (@alice) on GitLab."
    );
    jenkins.state.release_slow.notify_one();
    let mut rest = vec![live.line().await, live.line().await];
    rest.sort();
    assert!(rest[0].starts_with("[u1] slow #42"), "{rest:?}");
    assert!(rest[1].starts_with(waiter), "{rest:?}");
    live.finish().await;
    let calls: Vec<_> = jenkins.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(calls.len(), 2, "the busy call was never sent: {calls:?}");
}
