//! The sandbox's fake OAuth 2.0 provider, shaped like GitHub's, on 127.0.0.1: for tests of
//! deputy's OAuth 2.0 client and for trying it offline with `deputy shell --sandbox`.
//!
//! [`OAuth2Provider::start`] (in `github.rs`) serves one router twice, over plain http ([`OAuth2Provider::url`])
//! and over TLS with a throw-away self-signed certificate ([`OAuth2Provider::tls_url`],
//! trusted through [`OAuth2Provider::ca_pem`]):
//! - `POST /login/device/code`, `GET /login/device`: the device flow (RFC 8628), with
//!   `slow_down` and a growing interval for clients that poll too fast;
//! - `GET /login/oauth/authorize`: the consent page of the authorization code flow, PKCE
//!   S256 only (RFC 7636);
//! - `POST /login/oauth/access_token`: device code, authorization code and refresh token
//!   grants (RFC 6749), with refresh-token rotation and reuse detection;
//! - `POST /login/oauth/revoke`: revocation (RFC 7009), refused unless over TLS, because a
//!   real provider only offers it over https and the oauth2 crate insists on that;
//! - `/api/...`: the resource server behind the access tokens, given to
//!   `OAuth2Provider::serve` (the GitHub-shaped API of `github.rs`, which uses this file,
//!   never the other way round).
//!
//! Every token and revocation request must authenticate the client ([`CLIENT_ID`],
//! [`CLIENT_SECRET`]) with HTTP Basic or in the body. [`OAuth2State`] records every request
//! and poll, counts refreshes, revocations and detected token theft, and lets a test inject
//! faults, approve device codes or expire access tokens.
//!
//! Nothing here talks to the internet, and every account is made up: any login name is
//! accepted on the consent pages.

#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State as AxState};
use axum::http::header::{AUTHORIZATION, CACHE_CONTROL, PRAGMA, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use axum_server::tls_rustls::RustlsConfig;
use base64::engine::general_purpose::{STANDARD as BASE64, URL_SAFE_NO_PAD as BASE64URL};
use base64::Engine as _;
use percent_encoding::percent_decode_str;
use rand::Rng as _;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use tokio::sync::Notify;

use super::{
    esc, fault_response, page, page_refusal, random_token, redirect, refuse, tls, Fault, Rejected,
};

pub const CLIENT_ID: &str = "sandbox-client-id";
pub const CLIENT_SECRET: &str = "sandbox-client-secret";

const DEVICE_GRANT: &str = "urn:ietf:params:oauth:grant-type:device_code";
/// How long an authorization code can be exchanged (RFC 6749 4.1.2 recommends at most 10
/// minutes).
const CODE_TTL: Duration = Duration::from_secs(600);
/// What RFC 8628 3.5 adds to the polling interval on every `slow_down`.
const SLOW_DOWN_STEP_SECS: u64 = 5;
/// RFC 8628 6.1: consonants only (no vowels, so no words), no look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";
/// GitHub's limit on login names.
const MAX_LOGIN_CHARS: usize = 39;

/// Knobs of the fake provider. The defaults are 1 s, 600 s and 3600 s: shorter than GitHub's
/// (5 s, 900 s, 8 h) so that the shell and tests do not sit waiting.
#[derive(Clone, Debug)]
pub struct OAuth2Options {
    /// The minimum seconds between two polls of one device code. 0 disables `slow_down`.
    pub device_interval_secs: u64,
    /// Lifetime of a device code; 0 makes every device code expire at once.
    pub device_expires_in_secs: u64,
    /// Lifetime of an access token (refresh tokens do not expire).
    pub access_token_ttl_secs: u64,
    /// How long a refresh grant takes to answer, as a real token endpoint can; 0 answers at
    /// once.
    pub refresh_delay_ms: u64,
}

impl Default for OAuth2Options {
    fn default() -> Self {
        OAuth2Options {
            device_interval_secs: 1,
            device_expires_in_secs: 600,
            access_token_ttl_secs: 3600,
            refresh_delay_ms: 0,
        }
    }
}

/// A running fake OAuth 2.0 provider.
pub struct OAuth2Provider {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub url: String,
    /// `https://127.0.0.1:PORT`, no trailing slash: the same router over TLS.
    pub tls_url: String,
    /// PEM of the self-signed certificate of [`Self::tls_url`] (SANs `127.0.0.1` and
    /// `localhost`); clients trust it as their root.
    pub ca_pem: String,
    pub state: Arc<OAuth2State>,
    shutdown: Arc<Notify>,
    tls_handle: axum_server::Handle,
}

impl OAuth2Provider {
    /// Binds two ports on 127.0.0.1 and serves, on the current tokio runtime, until
    /// [`OAuth2Provider::shutdown`] or the runtime ends, with `api` (the resource server
    /// behind the tokens) under `/api`. Dropping the provider does not stop it.
    /// [`OAuth2Provider::start`] (in `github.rs`) serves it with the GitHub-shaped API: the API
    /// uses this provider, and this file does not know the API.
    pub(super) async fn serve(
        options: OAuth2Options,
        api: Router<Arc<OAuth2State>>,
    ) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("binding the OAuth 2.0 sandbox to 127.0.0.1")?;
        let url = format!("http://{}", listener.local_addr()?);
        // A std listener, bound here, so the https URL is known before the state is built.
        let tls_listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .context("binding the OAuth 2.0 sandbox's TLS port on 127.0.0.1")?;
        let tls_url = format!("https://{}", tls_listener.local_addr()?);
        let cert = tls::self_signed()?;

        let state = Arc::new(OAuth2State::new(url.clone(), tls_url.clone(), options));
        let app = Router::new()
            .route("/", get(index))
            .route("/login/device/code", post(device_code))
            .route("/login/device", get(device_page))
            .route("/login/oauth/authorize", get(authorize))
            .route("/login/oauth/access_token", post(access_token))
            .route("/login/oauth/revoke", post(revoke))
            .nest("/api", api)
            .layer(middleware::from_fn_with_state(state.clone(), observe))
            .with_state(state.clone());
        // Outermost, so `observe` and the handlers can tell which listener a request came in on.
        let plain = app.clone().layer(Extension(Transport::Plain));
        let secure = app.layer(Extension(Transport::Tls));

        let shutdown = Arc::new(Notify::new());
        let signal = shutdown.clone();
        tokio::spawn(async move {
            let stop = async move { signal.notified().await };
            if let Err(e) = axum::serve(listener, plain)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::warn!("OAuth 2.0 sandbox server stopped: {e}");
            }
        });
        let tls_handle = axum_server::Handle::new();
        let server =
            axum_server::from_tcp_rustls(tls_listener, RustlsConfig::from_config(cert.config))
                .handle(tls_handle.clone());
        tokio::spawn(async move {
            if let Err(e) = server.serve(secure.into_make_service()).await {
                tracing::warn!("OAuth 2.0 sandbox TLS server stopped: {e}");
            }
        });
        Ok(OAuth2Provider {
            url,
            tls_url,
            ca_pem: cert.ca_pem,
            state,
            shutdown,
            tls_handle,
        })
    }

    /// Stops accepting connections on both ports; requests in flight may finish (a
    /// [`Fault::Hang`] never does, its client has to give up).
    pub fn shutdown(&self) {
        // notify_one keeps a permit, so this works even before the server first polls.
        self.shutdown.notify_one();
        self.tls_handle.graceful_shutdown(None);
    }
}

/// Which listener a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Transport {
    Plain,
    Tls,
}

/// One request to the provider, as it saw it.
#[derive(Clone, Debug)]
pub struct Recorded2 {
    pub method: String,
    pub path: String,
    /// The response status; 0 while in flight (or for a [`Fault::Hang`]).
    pub status: u16,
    /// Whether the client authenticated, on the endpoints that check it (device code, token,
    /// revocation); `None` elsewhere and when the request failed before the check.
    pub client_ok: Option<bool>,
    /// Why it was refused, which OAuth error it got, or which fault it got: for test failure
    /// messages.
    pub note: Option<String>,
    /// It came in over the TLS listener.
    pub tls: bool,
}

/// What happened, on a response that is not a refusal, for [`Recorded2::note`].
#[derive(Clone)]
struct Note(String);

/// Marks a response with the outcome of client authentication, for [`Recorded2::client_ok`].
#[derive(Clone, Copy)]
struct ClientChecked(bool);

/// Everything the provider remembers, shared by the handlers and the test that started it.
pub struct OAuth2State {
    pub(super) url: String,
    tls_url: String,
    options: OAuth2Options,
    inner: Mutex<Inner>,
    /// Woken on every device-code poll, for [`OAuth2State::wait_polls`].
    polled: tokio::sync::Notify,
}

#[derive(Default)]
pub(super) struct Inner {
    requests: Vec<Recorded2>,
    faults: VecDeque<(String, Fault)>,
    /// By device code.
    devices: HashMap<String, Device>,
    /// By authorization code; used codes stay, so reuse gets a precise error.
    codes: HashMap<String, AuthCode>,
    grants: HashMap<u64, Grant>,
    next_grant: u64,
    access_tokens: HashMap<String, AccessToken>,
    /// Rotated (used) refresh tokens stay, so their reuse can be detected.
    refresh_tokens: HashMap<String, RefreshToken>,
    polls: Vec<Instant>,
    slow_downs: usize,
    refreshes: usize,
    revocations: usize,
    reuse_revocations: usize,
    /// Answer the next device poll `slow_down` whatever its timing (tests of the client).
    force_slow_down: bool,
    pub(super) issues: Vec<Issue>,
    /// Every secret handed out (device codes, authorization codes, access and refresh
    /// tokens), for tests that check none of them leaks.
    issued: Vec<String>,
}

struct Device {
    /// As shown to the user, `WDJB-MJHT`.
    user_code: String,
    scopes: Vec<String>,
    expires_at: Instant,
    /// Grows by [`SLOW_DOWN_STEP_SECS`] on every `slow_down`.
    interval_secs: u64,
    last_poll: Option<Instant>,
    decision: Decision,
}

#[derive(Clone)]
enum Decision {
    Pending,
    Approved(String),
    Denied,
}

struct AuthCode {
    login: String,
    scopes: Vec<String>,
    redirect_uri: String,
    /// BASE64URL-NOPAD(SHA256(code_verifier)), from the authorization request.
    challenge: String,
    expires_at: Instant,
    used: bool,
}

/// One user's consent: all tokens descending from one device or authorization code, revoked
/// together.
struct Grant {
    login: String,
    scopes: Vec<String>,
    revoked: bool,
}

struct AccessToken {
    grant: u64,
    expires_at: Instant,
}

struct RefreshToken {
    grant: u64,
    used: bool,
}

/// An issue of the GitHub-shaped API.
#[derive(Clone, Debug)]
pub(super) struct Issue {
    /// `owner/name`, as first written.
    pub(super) repo: String,
    pub(super) number: u64,
    pub(super) title: String,
    pub(super) body: Option<String>,
    pub(super) author: String,
}

/// Who an access token speaks for.
pub(super) struct Caller {
    pub(super) login: String,
    pub(super) scopes: Vec<String>,
}

impl OAuth2State {
    fn new(url: String, tls_url: String, options: OAuth2Options) -> Self {
        let seed = |number, title: &str, author: &str| Issue {
            repo: "octo/hello".to_string(),
            number,
            title: title.to_string(),
            body: None,
            author: author.to_string(),
        };
        let inner = Inner {
            next_grant: 1,
            issues: vec![
                seed(1, "Greeting is not localized", "octo"),
                seed(2, "Add a README", "hubot"),
            ],
            ..Inner::default()
        };
        OAuth2State {
            url,
            tls_url,
            options,
            inner: Mutex::new(inner),
            polled: tokio::sync::Notify::new(),
        }
    }

    /// Every secret the provider has handed out: device codes, authorization codes, access
    /// and refresh tokens.
    pub fn secrets_issued(&self) -> Vec<String> {
        self.lock().issued.clone()
    }

    /// Every request, in order of arrival.
    pub fn requests(&self) -> Vec<Recorded2> {
        self.lock().requests.clone()
    }

    /// When each device-code token request (with valid client credentials) arrived, in order.
    pub fn polls(&self) -> Vec<Instant> {
        self.lock().polls.clone()
    }

    /// Resolves once `n` device-code polls have arrived; panics after 30 s.
    pub async fn wait_polls(&self, n: usize) {
        let wait = async {
            loop {
                let woken = self.polled.notified();
                if self.lock().polls.len() >= n {
                    return;
                }
                woken.await;
            }
        };
        tokio::time::timeout(Duration::from_secs(30), wait)
            .await
            .unwrap_or_else(|_| panic!("fewer than {n} device polls within 30 s"));
    }

    /// How many `slow_down` errors the token endpoint has sent.
    pub fn slow_downs_sent(&self) -> usize {
        self.lock().slow_downs
    }

    /// How many refresh-token grants succeeded.
    pub fn refreshes(&self) -> usize {
        self.lock().refreshes
    }

    /// How many revocation requests were answered 200, whether or not the token was known
    /// (RFC 7009 2.2).
    pub fn revocations(&self) -> usize {
        self.lock().revocations
    }

    /// How many grants were revoked because an already-rotated refresh token came back.
    pub fn grants_revoked_for_reuse(&self) -> usize {
        self.lock().reuse_revocations
    }

    /// Seeded and created issues as (repo `owner/name`, number, title, author login), in
    /// order of creation.
    pub fn issues(&self) -> Vec<(String, u64, String, String)> {
        let inner = self.lock();
        let issues = inner.issues.iter();
        issues
            .map(|i| (i.repo.clone(), i.number, i.title.clone(), i.author.clone()))
            .collect()
    }

    /// Every access token issued to `login` so far expires now (401 on `/api`); their
    /// refresh tokens keep working, so a client has to refresh.
    pub fn expire_access_tokens_of(&self, login: &str) {
        let now = Instant::now();
        let mut inner = self.lock();
        let Inner {
            grants,
            access_tokens,
            ..
        } = &mut *inner;
        for token in access_tokens.values_mut() {
            if grants.get(&token.grant).is_some_and(|g| g.login == login) {
                token.expires_at = token.expires_at.min(now);
            }
        }
    }

    /// The next request whose path starts with `path_prefix` gets `fault` instead of normal
    /// handling. Faults queue up (first in, first out) and each is used once; a faulted
    /// request is still recorded.
    pub fn fail_next(&self, path_prefix: &str, fault: Fault) {
        self.lock()
            .faults
            .push_back((path_prefix.to_string(), fault));
    }

    /// How many access tokens would be accepted on `/api` right now.
    pub fn valid_access_tokens(&self) -> usize {
        let now = Instant::now();
        let inner = self.lock();
        let live = |t: &&AccessToken| {
            t.expires_at > now && inner.grants.get(&t.grant).is_some_and(|g| !g.revoked)
        };
        inner.access_tokens.values().filter(live).count()
    }

    /// The next device-code poll gets `slow_down` (and the interval grows), however late it
    /// comes: lets a test check that the client then waits longer.
    pub fn force_slow_down_next(&self) {
        self.lock().force_slow_down = true;
    }

    /// Revokes every grant of `login`, as a user would on the provider's settings page: their
    /// access and refresh tokens stop working.
    pub fn revoke_grants_of(&self, login: &str) {
        for grant in self.lock().grants.values_mut() {
            if grant.login == login {
                grant.revoked = true;
            }
        }
    }

    /// Approves a pending, unexpired device code for `login`, as the device page would.
    /// The user code is matched ignoring case and dashes (RFC 8628 6.1).
    pub fn approve_device(&self, user_code: &str, login: &str) -> bool {
        valid_login(login)
            && matches!(
                self.decide(user_code, Decision::Approved(login.to_string())),
                Decided::Done
            )
    }

    /// Denies a pending, unexpired device code, as the device page would.
    pub fn deny_device(&self, user_code: &str) -> bool {
        matches!(self.decide(user_code, Decision::Denied), Decided::Done)
    }

    /// Who `token` speaks for, or why it is refused.
    pub(super) fn caller(&self, token: &str) -> Result<Caller, &'static str> {
        let inner = self.lock();
        let access = inner
            .access_tokens
            .get(token)
            .ok_or("unknown access token")?;
        let grant = inner
            .grants
            .get(&access.grant)
            .ok_or("unknown access token")?;
        if grant.revoked {
            return Err("the access token's grant has been revoked");
        }
        if access.expires_at <= Instant::now() {
            return Err("the access token has expired");
        }
        Ok(Caller {
            login: grant.login.clone(),
            scopes: grant.scopes.clone(),
        })
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking handler must not take the whole sandbox down with it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn take_fault(&self, path: &str) -> Option<Fault> {
        let mut inner = self.lock();
        let i = inner.faults.iter().position(|(p, _)| path.starts_with(p))?;
        inner.faults.remove(i).map(|(_, fault)| fault)
    }

    fn decide(&self, user_code: &str, decision: Decision) -> Decided {
        let wanted = normalize_user_code(user_code);
        let now = Instant::now();
        let mut inner = self.lock();
        let found = inner.devices.values_mut().find(|d| {
            normalize_user_code(&d.user_code) == wanted && d.expires_at > now && !wanted.is_empty()
        });
        match found {
            None => Decided::Unknown,
            Some(device) if !matches!(device.decision, Decision::Pending) => Decided::Already,
            Some(device) => {
                device.decision = decision;
                Decided::Done
            }
        }
    }
}

enum Decided {
    Done,
    /// No such code, or it expired.
    Unknown,
    /// Approved or denied before.
    Already,
}

impl Inner {
    fn new_grant(&mut self, login: String, scopes: Vec<String>) -> u64 {
        let id = self.next_grant;
        self.next_grant += 1;
        let grant = Grant {
            login,
            scopes,
            revoked: false,
        };
        self.grants.insert(id, grant);
        id
    }

    /// A new access and refresh token for `grant`: the token endpoint's 200.
    fn issue(&mut self, grant: u64, ttl_secs: u64) -> Response {
        let access = format!("gho_{}", random_token(36));
        let refresh = format!("ghr_{}", random_token(76));
        let expires_at = Instant::now() + Duration::from_secs(ttl_secs);
        let scope = self
            .grants
            .get(&grant)
            .map(|g| g.scopes.join(" "))
            .unwrap_or_default();
        self.issued.extend([access.clone(), refresh.clone()]);
        self.access_tokens
            .insert(access.clone(), AccessToken { grant, expires_at });
        let token = RefreshToken { grant, used: false };
        self.refresh_tokens.insert(refresh.clone(), token);
        let body = json!({
            "access_token": access,
            "token_type": "bearer",
            "expires_in": ttl_secs,
            "refresh_token": refresh,
            "scope": scope,
        });
        (no_store(), Json(body)).into_response()
    }

    fn revoke_grant(&mut self, grant: u64) {
        if let Some(grant) = self.grants.get_mut(&grant) {
            grant.revoked = true;
        }
    }
}

/// Runs in front of every route: records the request and its outcome, and applies injected
/// faults.
async fn observe(AxState(s): AxState<Arc<OAuth2State>>, req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let method = req.method().to_string();
    let tls = req.extensions().get::<Transport>() == Some(&Transport::Tls);
    let index = {
        let mut inner = s.lock();
        inner.requests.push(Recorded2 {
            method: method.clone(),
            path: path.clone(),
            status: 0,
            client_ok: None,
            note: None,
            tls,
        });
        inner.requests.len() - 1
    };
    let update = |f: &dyn Fn(&mut Recorded2)| {
        if let Some(rec) = s.lock().requests.get_mut(index) {
            f(rec);
        }
    };

    let response = match s.take_fault(&path) {
        Some(fault) => {
            let note = format!("injected fault {fault:?}");
            update(&|rec| rec.note = Some(note.clone()));
            fault_response(fault, &path).await
        }
        None => next.run(req).await,
    };
    let client_ok = response.extensions().get::<ClientChecked>().map(|c| c.0);
    let rejected = response.extensions().get::<Rejected>().map(|r| r.0.clone());
    if let Some(why) = &rejected {
        tracing::debug!(%method, path, "OAuth 2.0 sandbox refused a request: {why}");
    }
    let note = rejected.or_else(|| response.extensions().get::<Note>().map(|n| n.0.clone()));
    let status = response.status().as_u16();
    update(&|rec| {
        rec.status = status;
        rec.client_ok = client_ok;
        if note.is_some() {
            rec.note.clone_from(&note);
        }
    });
    response
}

/// Form or query parameters, with RFC 6749 3.1's rules: a parameter may appear only once,
/// and one without a value counts as absent.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(input: &[u8]) -> Result<Params, String> {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(input)
            .map_err(|e| format!("malformed form-urlencoded parameters: {e}"))?;
        let mut seen = HashSet::new();
        if let Some((name, _)) = pairs.iter().find(|(n, _)| !seen.insert(n.as_str())) {
            return Err(format!("parameter {name:?} appears more than once"));
        }
        Ok(Params(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, v)| n == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

/// Space-separated scopes, each once, in order.
fn split_scopes(scope: Option<&str>) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for s in scope
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
    {
        if !scopes.iter().any(|seen| seen == s) {
            scopes.push(s.to_string());
        }
    }
    scopes
}

/// An RFC 6749 5.2 error body. Every token-endpoint error goes through here, so the
/// request log says which one the client got.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = json!({"error": error, "error_description": description});
    refuse(
        (status, no_store(), Json(body)),
        format!("{error}: {description}"),
    )
}

/// RFC 6749 5.1: token endpoint responses must not be cached.
fn no_store() -> [(HeaderName, &'static str); 2] {
    [(CACHE_CONTROL, "no-store"), (PRAGMA, "no-cache")]
}

fn invalid_request(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_request", description)
}

fn invalid_grant(description: &str) -> Response {
    oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description)
}

/// Why a request that must authenticate the client was refused before its handler ran.
enum ClientError {
    /// The form itself is malformed; the client was not checked.
    Malformed(String),
    /// RFC 6749 2.3: one method per request; this is `invalid_request`, not a bad client.
    TwoMethods,
    Invalid(String),
}

impl ClientError {
    fn response(self) -> Response {
        let mut response = match self {
            ClientError::Malformed(why) => return invalid_request(&why),
            ClientError::TwoMethods => invalid_request(
                "client credentials were sent both in the Authorization header and in the body",
            ),
            ClientError::Invalid(why) => {
                let mut response = oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &why);
                // RFC 6749 5.2: a 401 names the scheme the client can use.
                let challenge = "Basic realm=\"deputy sandbox\"".parse();
                if let Ok(challenge) = challenge {
                    response.headers_mut().insert(WWW_AUTHENTICATE, challenge);
                }
                response
            }
        };
        response.extensions_mut().insert(ClientChecked(false));
        response
    }
}

/// Checks the client's credentials: HTTP Basic (RFC 6749 2.3.1, both halves
/// form-urlencoded before base64) or `client_id` and `client_secret` in the body. With
/// `secret_required` false (the device authorization request) a `client_id` alone is
/// enough, but a secret that is sent must be right.
fn authenticate_client(
    headers: &HeaderMap,
    params: &Params,
    secret_required: bool,
) -> Result<(), ClientError> {
    let invalid = |why: &str| Err(ClientError::Invalid(why.to_string()));
    let basic = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
        .map(|(_, credentials)| credentials.trim());
    if let Some(credentials) = basic {
        if params.get("client_secret").is_some() {
            return Err(ClientError::TwoMethods);
        }
        let Some((id, secret)) = decode_basic(credentials) else {
            return invalid("malformed HTTP Basic credentials");
        };
        if params.get("client_id").is_some_and(|body_id| body_id != id) {
            return invalid(
                "client_id in the body differs from the one in the Authorization header",
            );
        }
        return if id != CLIENT_ID {
            invalid("unknown client_id")
        } else if secret != CLIENT_SECRET {
            invalid("wrong client secret")
        } else {
            Ok(())
        };
    }
    match (params.get("client_id"), params.get("client_secret")) {
        (None, _) => invalid("client authentication is required: HTTP Basic, or client_id and client_secret in the body"),
        (Some(id), _) if id != CLIENT_ID => invalid("unknown client_id"),
        (Some(_), None) if secret_required => invalid("client_secret is required"),
        (Some(_), Some(secret)) if secret != CLIENT_SECRET => invalid("wrong client secret"),
        (Some(_), _) => Ok(()),
    }
}

/// `base64(urlencode(id) ":" urlencode(secret))` to (id, secret).
fn decode_basic(credentials: &str) -> Option<(String, String)> {
    let decoded = String::from_utf8(BASE64.decode(credentials).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unform = |s: &str| {
        let s = s.replace('+', " ");
        percent_decode_str(&s)
            .decode_utf8()
            .ok()
            .map(|s| s.into_owned())
    };
    Some((unform(id)?, unform(secret)?))
}

/// Parses a form body and authenticates the client: the common start of the device code,
/// token and revocation endpoints.
fn client_request(
    headers: &HeaderMap,
    body: &[u8],
    secret_required: bool,
) -> Result<Params, ClientError> {
    let params = Params::parse(body).map_err(ClientError::Malformed)?;
    authenticate_client(headers, &params, secret_required)?;
    Ok(params)
}

/// Stamps a response of an endpoint whose client authenticated.
fn client_ok(mut response: Response) -> Response {
    response.extensions_mut().insert(ClientChecked(true));
    response
}

fn new_user_code() -> String {
    let mut rng = rand::thread_rng();
    let mut letter = || char::from(USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())]);
    let first: String = (0..4).map(|_| letter()).collect();
    let second: String = (0..4).map(|_| letter()).collect();
    format!("{first}-{second}")
}

/// Upper case, letters and digits only: what users type is compared this way (RFC 8628 6.1).
fn normalize_user_code(code: &str) -> String {
    code.chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

fn valid_login(login: &str) -> bool {
    !login.is_empty()
        && login.len() <= MAX_LOGIN_CHARS
        && login
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// RFC 7636 4.1: 43 to 128 unreserved characters (a S256 challenge has the same shape).
fn valid_pkce_string(s: &str) -> bool {
    (43..=128).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

/// RFC 7636 4.2, S256: BASE64URL-NOPAD(SHA256(ASCII(code_verifier))).
fn s256(verifier: &str) -> String {
    BASE64URL.encode(Sha256::digest(verifier.as_bytes()))
}

/// An absolute http(s) URL with a host and no whitespace or fragment (RFC 6749 3.1.2).
fn is_redirect_uri(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !url.contains('#') && !url.chars().any(char::is_whitespace)
    })
}

/// RFC 8628 3.1 / 3.2.
async fn device_code(
    AxState(s): AxState<Arc<OAuth2State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match client_request(&headers, &body, false) {
        Ok(params) => params,
        Err(refused) => return refused.response(),
    };
    let scopes = split_scopes(params.get("scope"));
    let device_code = random_token(40);
    let expires_in = s.options.device_expires_in_secs;
    let interval = s.options.device_interval_secs;
    let mut inner = s.lock();
    // Two live devices with one user code would let one user approve the other's device.
    let mut user_code = new_user_code();
    while inner.devices.values().any(|d| d.user_code == user_code) {
        user_code = new_user_code();
    }
    inner.issued.push(device_code.clone());
    inner.devices.insert(
        device_code.clone(),
        Device {
            user_code: user_code.clone(),
            scopes,
            expires_at: Instant::now() + Duration::from_secs(expires_in),
            interval_secs: interval,
            last_poll: None,
            decision: Decision::Pending,
        },
    );
    drop(inner);
    let verification_uri = format!("{}/login/device", s.url);
    let complete = format!("{verification_uri}?user_code={user_code}");
    client_ok(
        Json(json!({
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": verification_uri,
            "verification_uri_complete": complete,
            "expires_in": expires_in,
            "interval": interval,
        }))
        .into_response(),
    )
}

/// The page the user opens on another device: enter the code, approve or deny.
async fn device_page(AxState(s): AxState<Arc<OAuth2State>>, RawQuery(query): RawQuery) -> Response {
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(why) => return page_refusal(StatusCode::BAD_REQUEST, &why),
    };
    let user_code = params.get("user_code");
    let login = params.get("login");
    let deny = params.get("deny") == Some("1");
    let Some(user_code) = user_code else {
        return device_form("");
    };
    let decision = match (deny, login) {
        (true, _) => Decision::Denied,
        (false, None) => return device_form(user_code),
        (false, Some(login)) if !valid_login(login) => {
            return page_refusal(
                StatusCode::BAD_REQUEST,
                "login may contain only letters, digits, - and _",
            )
        }
        (false, Some(login)) => Decision::Approved(login.to_string()),
    };
    match s.decide(user_code, decision.clone()) {
        Decided::Unknown => page_refusal(StatusCode::NOT_FOUND, "unknown or expired code"),
        Decided::Already => page_refusal(
            StatusCode::CONFLICT,
            "this code has already been approved or denied",
        ),
        Decided::Done => match decision {
            Decision::Approved(login) => page(
                StatusCode::OK,
                "Device approved",
                &format!(
                    "<p>Device approved for {}. You can close this page and go back to your device.</p>",
                    esc(&login)
                ),
            ),
            _ => refuse(
                page(
                    StatusCode::OK,
                    "Device denied",
                    "<p>The device was not given access.</p>",
                ),
                "the user denied the device",
            ),
        },
    }
}

fn device_form(user_code: &str) -> Response {
    let form = format!(
        "<p>This is the deputy sandbox, a local fake of GitHub: no real account is involved, \
         pick any login.</p>\n\
         <form method=\"get\" action=\"/login/device\">\n\
         <label>Code <input type=\"text\" name=\"user_code\" value=\"{}\" placeholder=\"WDJB-MJHT\"></label>\n\
         <label>Login <input type=\"text\" name=\"login\" value=\"alice\"></label>\n\
         <button type=\"submit\">Approve</button>\n\
         <button type=\"submit\" name=\"deny\" value=\"1\">Deny</button>\n</form>",
        esc(user_code)
    );
    page(StatusCode::OK, "Activate a device", &form)
}

/// The consent page of the authorization code flow (RFC 6749 4.1.1, RFC 7636 4.3). Errors
/// about the client or the redirect URI must not redirect (4.1.2.1), so all are pages here.
async fn authorize(AxState(s): AxState<Arc<OAuth2State>>, RawQuery(query): RawQuery) -> Response {
    let bad = |why: &str| page_refusal(StatusCode::BAD_REQUEST, why);
    let params = match Params::parse(query.unwrap_or_default().as_bytes()) {
        Ok(params) => params,
        Err(why) => return bad(&why),
    };
    if params.get("client_id") != Some(CLIENT_ID) {
        return bad("unknown or missing client_id");
    }
    let Some(redirect_uri) = params.get("redirect_uri").filter(|u| is_redirect_uri(u)) else {
        return bad("redirect_uri is required: an absolute http(s) URL without a fragment");
    };
    if params.get("response_type") != Some("code") {
        return bad("response_type must be code");
    }
    if params.get("code_challenge_method") != Some("S256") {
        return bad("code_challenge_method must be S256 (PKCE is required, plain is not accepted)");
    }
    let Some(challenge) = params
        .get("code_challenge")
        .filter(|c| valid_pkce_string(c))
    else {
        return bad("code_challenge is required: BASE64URL(SHA256(code_verifier)), 43 characters");
    };
    let state = params.get("state");
    let with_state = |mut pairs: Vec<(&'static str, String)>| {
        if let Some(state) = state {
            pairs.push(("state", state.to_string()));
        }
        pairs
    };

    if params.get("deny") == Some("1") {
        let pairs = with_state(vec![("error", "access_denied".to_string())]);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
        return refuse(redirect(redirect_uri, &pairs), "the user denied access");
    }
    let Some(login) = params.get("login") else {
        return consent_page(&params);
    };
    if !valid_login(login) {
        return bad("login may contain only letters, digits, - and _");
    }
    let code = random_token(32);
    s.lock().issued.push(code.clone());
    s.lock().codes.insert(
        code.clone(),
        AuthCode {
            login: login.to_string(),
            scopes: split_scopes(params.get("scope")),
            redirect_uri: redirect_uri.to_string(),
            challenge: challenge.to_string(),
            expires_at: Instant::now() + CODE_TTL,
            used: false,
        },
    );
    let pairs = with_state(vec![("code", code)]);
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (*n, v.as_str())).collect();
    redirect(redirect_uri, &pairs)
}

const AUTHORIZE_PARAMS: [&str; 7] = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
];

fn consent_page(params: &Params) -> Response {
    let present: Vec<(&str, &str)> = AUTHORIZE_PARAMS
        .iter()
        .filter_map(|&name| Some((name, params.get(name)?)))
        .collect();
    let hidden: String = present
        .iter()
        .map(|(n, v)| {
            format!(
                "<input type=\"hidden\" name=\"{n}\" value=\"{}\">\n",
                esc(v)
            )
        })
        .collect();
    let mut deny = present.clone();
    deny.push(("deny", "1"));
    let deny = serde_urlencoded::to_string(&deny).unwrap_or_default();
    let scope = params.get("scope").unwrap_or("(none)");
    let body = format!(
        "<p>This is the deputy sandbox, a local fake of GitHub: no real account is involved, \
         pick any login.</p>\n\
         <p>Requested scopes: <code>{}</code></p>\n\
         <form method=\"get\" action=\"/login/oauth/authorize\">\n{hidden}\
         <label>Login <input type=\"text\" name=\"login\" value=\"alice\"></label>\n\
         <button type=\"submit\">Authorize</button>\n</form>\n\
         <p><a href=\"/login/oauth/authorize?{}\">Deny</a></p>",
        esc(scope),
        esc(&deny)
    );
    page(
        StatusCode::OK,
        "Authorize deputy (sandbox) to use your account?",
        &body,
    )
}

/// The token endpoint (RFC 6749 3.2): device code, authorization code and refresh grants.
async fn access_token(
    AxState(s): AxState<Arc<OAuth2State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let params = match client_request(&headers, &body, true) {
        Ok(params) => params,
        Err(refused) => return refused.response(),
    };
    client_ok(match params.get("grant_type") {
        None => invalid_request("grant_type is required"),
        Some(DEVICE_GRANT) => device_grant(&s, &params),
        Some("authorization_code") => code_grant(&s, &params),
        Some("refresh_token") => {
            let delay = s.options.refresh_delay_ms;
            if delay > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(delay)).await;
            }
            refresh_grant(&s, &params)
        }
        Some(other) => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            &format!("grant_type {other:?} is not supported"),
        ),
    })
}

/// RFC 8628 3.4 / 3.5.
fn device_grant(s: &OAuth2State, params: &Params) -> Response {
    let Some(device_code) = params.get("device_code") else {
        return invalid_request("device_code is required");
    };
    let now = Instant::now();
    let mut inner = s.lock();
    inner.polls.push(now);
    s.polled.notify_waiters();
    let Some(device) = inner.devices.get_mut(device_code) else {
        return invalid_grant("unknown or already used device_code");
    };
    if device.expires_at <= now {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "expired_token",
            "the device code has expired; start over",
        );
    }
    // With a 0 s interval no poll is too soon.
    let interval = Duration::from_secs(device.interval_secs);
    let too_soon = device
        .last_poll
        .is_some_and(|last| now.duration_since(last) < interval);
    device.last_poll = Some(now);
    let too_soon = too_soon || std::mem::take(&mut inner.force_slow_down);
    let Some(device) = inner.devices.get_mut(device_code) else {
        return invalid_grant("unknown or already used device_code");
    };
    if too_soon {
        device.interval_secs += SLOW_DOWN_STEP_SECS;
        let interval = device.interval_secs;
        inner.slow_downs += 1;
        let description = format!("polled too fast; wait at least {interval} s between polls");
        // GitHub also says what the new interval is; RFC 8628 clients just add 5 s.
        let body =
            json!({"error": "slow_down", "error_description": description, "interval": interval});
        let response = (StatusCode::BAD_REQUEST, no_store(), Json(body));
        return refuse(response, format!("slow_down: {description}"));
    }
    match device.decision.clone() {
        Decision::Pending => oauth_error(
            StatusCode::BAD_REQUEST,
            "authorization_pending",
            "the user has not approved the device yet",
        ),
        Decision::Denied => oauth_error(
            StatusCode::BAD_REQUEST,
            "access_denied",
            "the user denied the device",
        ),
        Decision::Approved(login) => {
            let scopes = std::mem::take(&mut device.scopes);
            // Consumed: the tokens are handed out once.
            inner.devices.remove(device_code);
            let grant = inner.new_grant(login, scopes);
            inner.issue(grant, s.options.access_token_ttl_secs)
        }
    }
}

/// RFC 6749 4.1.3 with RFC 7636 4.6. A failed check leaves the code usable, so a test can
/// try the wrong verifier and then the right one.
fn code_grant(s: &OAuth2State, params: &Params) -> Response {
    let Some(code) = params.get("code") else {
        return invalid_request("code is required");
    };
    let mut inner = s.lock();
    let Some(auth) = inner.codes.get_mut(code) else {
        return invalid_grant("unknown authorization code");
    };
    if auth.used {
        return invalid_grant("the authorization code has already been used");
    }
    if auth.expires_at <= Instant::now() {
        return invalid_grant("the authorization code has expired");
    }
    if params.get("redirect_uri") != Some(auth.redirect_uri.as_str()) {
        return invalid_grant("redirect_uri does not match the one of the authorization request");
    }
    let Some(verifier) = params.get("code_verifier") else {
        return invalid_grant("code_verifier is required (PKCE)");
    };
    if !valid_pkce_string(verifier) {
        return invalid_grant(
            "code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~ (RFC 7636 4.1)",
        );
    }
    if s256(verifier) != auth.challenge {
        return invalid_grant(
            "PKCE check failed: BASE64URL(SHA256(code_verifier)) does not equal code_challenge",
        );
    }
    auth.used = true;
    let (login, scopes) = (auth.login.clone(), auth.scopes.clone());
    let grant = inner.new_grant(login, scopes);
    inner.issue(grant, s.options.access_token_ttl_secs)
}

/// RFC 6749 6 with rotation (RFC 9700 4.14.2): each refresh token works once, and one
/// coming back after rotation means two parties hold it, so the grant is revoked.
fn refresh_grant(s: &OAuth2State, params: &Params) -> Response {
    let Some(token) = params.get("refresh_token") else {
        return invalid_request("refresh_token is required");
    };
    let mut inner = s.lock();
    let Some(refresh) = inner.refresh_tokens.get(token) else {
        return invalid_grant("unknown refresh token");
    };
    let (grant_id, used) = (refresh.grant, refresh.used);
    let Some(grant) = inner.grants.get(&grant_id) else {
        return invalid_grant("unknown refresh token");
    };
    if grant.revoked {
        return invalid_grant("the grant of this refresh token has been revoked");
    }
    if used {
        inner.revoke_grant(grant_id);
        inner.reuse_revocations += 1;
        return invalid_grant(
            "the refresh token was already used (rotated); the whole grant is revoked as a precaution",
        );
    }
    // A narrower scope is allowed by RFC 6749 6 but the sandbox always grants the original
    // one; a wider one is refused.
    let wider = split_scopes(params.get("scope"))
        .into_iter()
        .find(|s| !grant.scopes.contains(s));
    if let Some(extra) = wider {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            &format!("scope {extra:?} was not granted originally"),
        );
    }
    if let Some(refresh) = inner.refresh_tokens.get_mut(token) {
        refresh.used = true;
    }
    inner.refreshes += 1;
    inner.issue(grant_id, s.options.access_token_ttl_secs)
}

/// RFC 7009. Over TLS only; any token of a grant ends the whole grant.
async fn revoke(
    AxState(s): AxState<Arc<OAuth2State>>,
    transport: Option<Extension<Transport>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if transport.map(|Extension(t)| t) != Some(Transport::Tls) {
        let mut response = invalid_request("revocation requires https");
        let why = format!(
            "revocation requires https (use {}/login/oauth/revoke)",
            s.tls_url
        );
        response.extensions_mut().insert(Rejected(why));
        return response;
    }
    let params = match client_request(&headers, &body, true) {
        Ok(params) => params,
        Err(refused) => return refused.response(),
    };
    let Some(token) = params.get("token") else {
        return client_ok(invalid_request("token is required"));
    };
    // token_type_hint only speeds up the lookup on a real server (RFC 7009 2.1); both
    // tables are searched whatever it says.
    let mut inner = s.lock();
    let grant = match inner.access_tokens.get(token) {
        Some(access) => Some(access.grant),
        None => inner.refresh_tokens.get(token).map(|r| r.grant),
    };
    inner.revocations += 1;
    let note = match grant {
        Some(grant) => {
            inner.revoke_grant(grant);
            format!("revoked grant {grant}")
        }
        // RFC 7009 2.2: an unknown token is not an error; the client wanted it gone.
        None => "unknown token; nothing to revoke".to_string(),
    };
    drop(inner);
    let mut response = client_ok(StatusCode::OK.into_response());
    response.extensions_mut().insert(Note(note));
    response
}

async fn index(AxState(s): AxState<Arc<OAuth2State>>) -> Html<String> {
    Html(format!(
        r#"<!doctype html><html><head><meta charset="utf-8"><title>deputy sandbox: OAuth 2.0</title></head><body>
<h1>deputy sandbox: OAuth 2.0</h1>
<p>A local fake of GitHub's OAuth 2.0 provider and API at {url} (and over TLS at {tls_url}), for
trying deputy offline and for tests. Nothing here talks to the internet; every account is made up.
Client id <code>{CLIENT_ID}</code>, secret <code>{CLIENT_SECRET}</code>.</p>
<ul>
<li><code>POST /login/device/code</code>, then <a href="/login/device">/login/device</a> to enter the code</li>
<li><code>GET /login/oauth/authorize</code> (authorization code with PKCE S256)</li>
<li><code>POST /login/oauth/access_token</code> (device code, authorization code, refresh token)</li>
<li><code>POST /login/oauth/revoke</code> (https only)</li>
<li><code>GET /api/user</code>, <code>GET</code>/<code>POST /api/repos/OWNER/REPO/issues</code> (Bearer token; creating needs scope <code>repo</code>)</li>
</ul>
</body></html>
"#,
        url = esc(&s.url),
        tls_url = esc(&s.tls_url),
    ))
}
