//! The sandbox: a local fake of X (Twitter) and of a Jenkins-like API-key service on
//! 127.0.0.1. `deputy shell --sandbox` points the bot at it so a newcomer can try the OAuth
//! 1.0a PIN flow offline, and integration tests use it as the fake upstream.
//!
//! [`Provider::start`] serves (see [`x`] and [`jenkins`] for the details):
//! - `/oauth/request_token`, `/oauth/authorize`, `/oauth/access_token`: the three-legged
//!   OAuth 1.0a flow, PIN (`oob`) or callback URL;
//! - `/2/users/me`, `/2/tweets`, `/2/tweets/search/recent`: a sliver of the X API v2;
//! - `/jenkins/...`: a Jenkins API behind HTTP Basic auth (any user, password
//!   [`JENKINS_TOKEN`]).
//!
//! Signed requests are checked by [`oauth1_verify`], an RFC 5849 verifier written apart from
//! deputy's client, so that a signing mistake in the client shows up here as a 401 instead of
//! being mirrored. [`State`] records every X request and lets a test inject faults
//! ([`State::fail_next`]) or revoke a user's tokens.
//!
//! [`oauth2::OAuth2Provider`] is the OAuth 2.0 side: device flow, authorization code with
//! PKCE, rotating refresh tokens, RFC 7009 revocation over loopback TLS, and a GitHub-shaped
//! API, for `gh` in the sandbox and the OAuth 2.0 tests.

mod github;
mod jenkins;
pub mod oauth1_verify;
pub mod oauth2;
#[cfg(test)]
mod tests;
mod tls;
mod x;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::header::CONTENT_TYPE;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use rand::distributions::{Alphanumeric, DistString};
use tokio::sync::Notify;

pub use jenkins::Build;

pub const CONSUMER_KEY: &str = "sandbox-consumer-key";
pub const CONSUMER_SECRET: &str = "sandbox-consumer-secret";
/// API token the sandbox Jenkins accepts for any user name: `alice:sandbox-token`.
pub const JENKINS_TOKEN: &str = "sandbox-token";

/// Bodies are small JSON or form documents; anything bigger is a client bug.
const MAX_BODY: usize = 64 * 1024;

/// A running sandbox.
pub struct Provider {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    pub state: Arc<State>,
    shutdown: Arc<Notify>,
}

impl Provider {
    /// Binds 127.0.0.1:0 and serves, on the current tokio runtime, until
    /// [`Provider::shutdown`] or the runtime ends. Dropping the `Provider` does not stop it.
    pub async fn start() -> anyhow::Result<Provider> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the sandbox to 127.0.0.1")?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(State::new(url.clone()));
        let app = Router::new()
            .route("/", get(index))
            .merge(x::routes())
            .nest("/jenkins", jenkins::routes())
            .layer(middleware::from_fn_with_state(state.clone(), observe))
            .with_state(state.clone());
        let shutdown = Arc::new(Notify::new());
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let stop = async move { signal.notified().await };
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!("sandbox server stopped: {e}");
            }
        });
        Ok(Provider {
            url,
            state,
            shutdown,
        })
    }

    /// Stops accepting connections; requests in flight may finish (a [`Fault::Hang`] never
    /// does, its client has to give up).
    pub fn shutdown(&self) {
        // notify_one keeps a permit, so this works even before the server first polls.
        self.shutdown.notify_one();
    }
}

/// What the sandbox does instead of handling a request (see [`State::fail_next`]).
#[derive(Clone, Debug)]
pub enum Fault {
    /// That status, with a short text body.
    Status(u16),
    /// 429 with `Retry-After` (and X's `x-rate-limit-*` headers).
    RateLimited { retry_after_secs: u64 },
    /// 200 with the body `<html>garbage` under the endpoint's usual content type.
    Garbage,
    /// Never answers.
    Hang,
}

/// One request to `/oauth/*` or `/2/*`, as the sandbox saw it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// The raw query string, without `?`.
    pub query: String,
    /// The OAuth signature, timestamp and nonce checked out. Always false for the unsigned
    /// `/oauth/authorize` page.
    pub signature_ok: bool,
    /// The screen name of the access token, when one was used and valid.
    pub user: Option<String>,
    /// Why it was refused (or which fault it got), for test failure messages.
    pub rejection: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Tweet {
    pub id: String,
    /// Screen name.
    pub author: String,
    pub text: String,
    /// RFC 3339, UTC.
    pub created_at: String,
}

/// Everything the sandbox remembers, shared by the handlers and the test that started it.
pub struct State {
    url: String,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    faults: VecDeque<(String, Fault)>,
    request_tokens: HashMap<String, x::RequestToken>,
    access_tokens: HashMap<String, x::AccessToken>,
    access_tokens_issued: usize,
    /// Every secret handed out (request token secrets, PINs, access tokens and their
    /// secrets), for tests that check none of them leaks.
    issued: Vec<String>,
    /// (consumer key, nonce) of every request whose signature checked out.
    nonces: HashSet<(String, String)>,
    /// Oldest first.
    tweets: Vec<Tweet>,
    next_tweet_id: u64,
    builds: Vec<Build>,
    /// Jobs whose last build was stopped, and by whom.
    aborts: Vec<(String, String)>,
}

impl State {
    fn new(url: String) -> State {
        let state = State {
            url,
            inner: Mutex::new(Inner {
                next_tweet_id: 1_900_000_000_000_000_000,
                ..Inner::default()
            }),
        };
        let now = unix_now();
        for (ago, author, text) in [
            (
                3600,
                "ferris",
                "Sideways since 2015. Still the happiest crab in Rust land.",
            ),
            (
                1800,
                "tokio_rs",
                "Tokio 1.50: faster timers for async Rust. #rustlang",
            ),
            (
                600,
                "rustlang",
                "Rust 1.95 is out! Read the release notes on the blog. #rustlang",
            ),
        ] {
            state.add_tweet(author, text, now - ago);
        }
        state
    }

    /// Every request to `/oauth/*` and `/2/*`, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Seeded and posted tweets, oldest first.
    pub fn tweets(&self) -> Vec<Tweet> {
        self.lock().tweets.clone()
    }

    /// Builds started on the sandbox Jenkins, oldest first.
    pub fn builds(&self) -> Vec<Build> {
        self.lock().builds.clone()
    }

    /// `(job, user)` of every `lastBuild/stop`, oldest first.
    pub fn aborts(&self) -> Vec<(String, String)> {
        self.lock().aborts.clone()
    }

    /// The next request whose path starts with `path_prefix` gets `fault` instead of normal
    /// handling. Faults queue up (first in, first out) and each is used once; a faulted X
    /// request is still recorded.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault) {
        self.lock()
            .faults
            .push_back((path_prefix.to_string(), fault));
    }

    /// Every access token issued to `screen_name` stops working (401 on `/2/*`).
    pub fn revoke_tokens_of(&self, screen_name: &str) {
        for token in self.lock().access_tokens.values_mut() {
            if token.screen_name == screen_name {
                token.revoked = true;
            }
        }
    }

    /// Every secret the provider has handed out: request token secrets, PINs (verifiers),
    /// access tokens and access token secrets.
    pub fn secrets_issued(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// How many access tokens `/oauth/access_token` has handed out.
    pub fn access_tokens_issued(&self) -> usize {
        self.lock().access_tokens_issued
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not take the whole sandbox down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn add_tweet(&self, author: &str, text: &str, at: u64) -> Tweet {
        let mut inner = self.lock();
        inner.next_tweet_id += 1;
        let tweet = Tweet {
            id: inner.next_tweet_id.to_string(),
            author: author.to_string(),
            text: text.to_string(),
            created_at: rfc3339(at),
        };
        inner.tweets.push(tweet.clone());
        tweet
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let i = inner.faults.iter().position(|(p, _)| path.starts_with(p))?;
        inner.faults.remove(i).map(|(_, fault)| fault)
    }
}

/// Marks a response as a refusal, so [`observe`] records and logs why.
#[derive(Clone)]
struct Rejected(String);

fn refuse(response: impl IntoResponse, why: impl Into<String>) -> Response {
    let mut response = response.into_response();
    response.extensions_mut().insert(Rejected(why.into()));
    response
}

/// Runs in front of every route: buffers the body, checks the OAuth signature of X API
/// calls, records X requests, and applies injected faults.
async fn observe(AxState(s): AxState<Arc<State>>, req: Request, next: Next) -> Response {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_owned();
    let body = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(body) => body,
        Err(e) => return (StatusCode::PAYLOAD_TOO_LARGE, format!("body: {e}")).into_response(),
    };
    let is_x = path.starts_with("/oauth/") || path.starts_with("/2/");
    let signed = (is_x && path != "/oauth/authorize").then(|| x::check(&s, &parts, &body));
    let index = is_x.then(|| {
        let mut inner = s.lock();
        inner.requests.push(Recorded {
            method: parts.method.to_string(),
            path: path.clone(),
            query: parts.uri.query().unwrap_or_default().to_string(),
            signature_ok: matches!(signed, Some(Ok(_))),
            user: signed.as_ref().and_then(|r| r.as_ref().ok()?.user.clone()),
            rejection: signed.as_ref().and_then(|r| r.as_ref().err().cloned()),
        });
        inner.requests.len() - 1
    });
    let method = parts.method.clone();
    let note = |why: String| {
        tracing::debug!(%method, path, "sandbox refused a request: {why}");
        if let Some(i) = index {
            if let Some(rec) = s.lock().requests.get_mut(i) {
                rec.rejection = Some(why);
            }
        }
    };

    if let Some(fault) = s.take_fault(&path) {
        let why = match signed.as_ref().and_then(|r| r.as_ref().err()) {
            Some(reason) => format!("injected fault {fault:?} (also refused: {reason})"),
            None => format!("injected fault {fault:?}"),
        };
        note(why);
        return fault_response(fault, &path).await;
    }
    let mut req = Request::from_parts(parts, Body::from(body));
    match signed {
        Some(Err(reason)) => {
            note(reason.clone());
            return x::unauthorized(&path, &reason);
        }
        Some(Ok(signed)) => {
            req.extensions_mut().insert(signed);
        }
        None => {}
    }
    let response = next.run(req).await;
    if let Some(Rejected(why)) = response.extensions().get::<Rejected>() {
        note(why.clone());
    }
    response
}

async fn fault_response(fault: Fault, path: &str) -> Response {
    match fault {
        Fault::Status(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            (status, format!("sandbox: injected status {code}")).into_response()
        }
        Fault::RateLimited { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [
                ("retry-after", retry_after_secs.to_string()),
                ("x-rate-limit-remaining", "0".to_string()),
                (
                    "x-rate-limit-reset",
                    (unix_now() + retry_after_secs).to_string(),
                ),
            ],
            "Too Many Requests",
        )
            .into_response(),
        Fault::Garbage => {
            let content_type = if path.starts_with("/oauth/") {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            };
            ([(CONTENT_TYPE, content_type)], "<html>garbage").into_response()
        }
        Fault::Hang => std::future::pending().await,
    }
}

async fn index(AxState(s): AxState<Arc<State>>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>deputy sandbox</title></head><body>
<h1>deputy sandbox</h1>
<p>A local fake of X (Twitter) and of Jenkins at {url}, for trying deputy offline and for tests.
Nothing here talks to the internet; every account is made up.</p>
<h2>X (OAuth 1.0a, consumer key <code>{CONSUMER_KEY}</code>)</h2>
<ul>
<li><code>POST /oauth/request_token</code> (signed, <code>oauth_callback</code> = <code>oob</code> or a URL)</li>
<li><code>GET /oauth/authorize?oauth_token=T</code> (the browser page; gives a PIN for <code>oob</code>)</li>
<li><code>POST /oauth/access_token</code> (signed with the request token, <code>oauth_verifier</code>)</li>
<li><code>GET /2/users/me</code>, <code>POST /2/tweets</code>, <code>GET /2/tweets/search/recent?query=Q</code></li>
</ul>
<h2>Jenkins (HTTP Basic, any user, API token <code>{JENKINS_TOKEN}</code>)</h2>
<ul>
<li><code>GET /jenkins/me/api/json</code>, <code>GET /jenkins/api/json</code></li>
<li><code>POST /jenkins/job/NAME/buildWithParameters</code>, <code>GET /jenkins/job/NAME/lastBuild/api/json</code></li>
</ul>
</body></html>
"#,
        url = s.url
    ))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `secs` since the epoch as RFC 3339 UTC with milliseconds, the way X writes `created_at`.
fn rfc3339(secs: u64) -> String {
    // Days to civil date: Howard Hinnant's `civil_from_days`, for days >= 0.
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.000Z")
}

/// An unguessable token (thread_rng is a CSPRNG).
fn random_token(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), len)
}

/// Capitalizes the first letter: `alice` -> `Alice`, for display names.
fn capitalized(name: &str) -> String {
    let mut chars = name.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// Escapes text for HTML.
/// A minimal HTML page for the browser-facing endpoints (authorize, device pages).
fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n"
    );
    (status, Html(html)).into_response()
}

/// A refusal shown as a page, recorded like any refusal.
fn page_refusal(status: StatusCode, reason: &str) -> Response {
    refuse(
        page(status, "deputy sandbox", &format!("<p>{}</p>", esc(reason))),
        reason,
    )
}

/// A 302 to `target` with `pairs` added to its query (OAuth callbacks and redirect URIs).
fn redirect(target: &str, pairs: &[(&str, &str)]) -> Response {
    let sep = if target.contains('?') { '&' } else { '?' };
    let query = serde_urlencoded::to_string(pairs).unwrap_or_default();
    (
        StatusCode::FOUND,
        [(
            axum::http::header::LOCATION,
            format!("{target}{sep}{query}"),
        )],
    )
        .into_response()
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
