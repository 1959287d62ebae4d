//! Calling a service's API as the user: build the request from a pack's templates, attach the
//! user's credential, enforce timeouts, and turn every outcome into either a response for the
//! reply template or a [`CallError`] a user can act on. One audit line per call.
//!
//! A service's timeout bounds the whole call: waiting for a turn ([`faults`]: a per-service
//! limit on calls in flight), every attempt and the waits between them, and the body, which
//! is read chunk by chunk and never past `[http] max_body_bytes`.
//!
//! reqwest builds each request (and signs it, for OAuth 1.0a) and hyper's pooled client sends
//! it: reqwest's own client layers, a redirect policy consulted even when none is followed and
//! the URL parsed twice more, cost about a fifth of an as-user command. When the environment
//! names a proxy (`HTTPS_PROXY` and the like), reqwest sends it instead, as it honours those.

mod faults;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::Bytes;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Deserialize;

use crate::brain::Owner;
use crate::config::{HttpConfig, ServiceOverride};
use crate::secret::Consumer;

pub use faults::parse_retry_after;

/// The most of a refusal's body (a 4xx) read for its message.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;

/// hyper's pooled HTTP/1.1 client over rustls, for pack calls.
type Direct =
    hyper_util::client::legacy::Client<hyper_rustls::HttpsConnector<HttpConnector>, reqwest::Body>;

/// How long an unused pooled connection is kept (reqwest's default, kept when calls moved).
const POOL_IDLE: Duration = Duration::from_secs(90);

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    /// `None` when a proxy is configured in the environment: reqwest then sends every call.
    direct: Option<Direct>,
    default_timeout: Duration,
    max_body: usize,
    faults: Arc<faults::Faults>,
}

/// A fully rendered request.
#[derive(Debug)]
pub struct Call {
    pub method: reqwest::Method,
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Option<(String, String)>,
    pub response: ResponseKind,
}

/// How the answer to a call is read (a pack's `response`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ResponseKind {
    /// The body is JSON (`body.field` in the reply); an empty body is allowed.
    #[default]
    Json,
    /// The body is text (`body` is a string).
    Text,
    /// The body is `application/x-www-form-urlencoded` (OAuth 1.0a token replies).
    Form,
}

/// Which service a call goes to: its name (for the audit line) and its own timeout.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub name: &'a str,
    pub timeout: Option<Duration>,
}

/// How a call is authenticated. The auth kinds build it from the user's credential.
#[derive(Debug, Clone)]
pub enum Auth<'a> {
    Anonymous,
    /// An API key applied as a header (Basic, Bearer, a custom header), marked sensitive.
    Key {
        header: String,
        value: String,
    },
    /// An OAuth 2.0 access token (`Authorization: Bearer`).
    Bearer(&'a str),
    /// An OAuth 1.0a signature with the consumer and, when there is one, a token and its
    /// secret (a request token while signing in, an access token after).
    OAuth1 {
        consumer: &'a Consumer,
        token: Option<(&'a str, &'a str)>,
    },
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: BTreeMap<String, String>,
    pub body: serde_json::Value,
}

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("timed out after {0} s")]
    Timeout(u64),
    #[error("could not connect")]
    Connect,
    /// The connection broke after the request was sent (a reset, a closed connection).
    #[error("connection broken")]
    Broken,
    /// No turn to call the service came: every slot stayed taken until the deadline, or
    /// `[http] max_waiting` calls were already waiting. (seconds, slots)
    #[error("busy")]
    Busy(u64, usize),
    /// The body was longer than the limit (in bytes); reading stopped there.
    #[error("body too large")]
    TooLarge(usize),
    #[error("credential rejected (HTTP {0})")]
    Rejected(u16),
    #[error("not found (HTTP 404)")]
    NotFound,
    #[error("rate limited")]
    RateLimited(Option<u64>),
    #[error("server error (HTTP {0})")]
    Server(u16),
    #[error("refused (HTTP {0})")]
    Refused(u16, Option<String>),
    #[error("unreadable response")]
    Unreadable,
    /// The request has a shape deputy's OAuth 1.0a signer is known to sign wrongly.
    #[error("cannot be signed: {0}")]
    Unsignable(String),
    #[error("{0}")]
    Other(String),
}

impl CallError {
    /// The failure in plain words for the user, with no advice about their credential.
    pub fn explain(self, name: &str) -> String {
        match self {
            CallError::Rejected(status) => format!("{name} refused it (HTTP {status})."),
            CallError::NotFound => {
                format!("{name} says that does not exist (HTTP 404). Check the name and try again.")
            }
            CallError::RateLimited(Some(s)) => {
                format!("{name} is rate-limiting requests; try again in {s} s.")
            }
            CallError::RateLimited(None) => {
                format!("{name} is rate-limiting requests; try again in a minute.")
            }
            CallError::Server(status) => {
                format!("{name} had a server error (HTTP {status}); try again later.")
            }
            CallError::Refused(status, Some(m)) => {
                format!("{name} refused the request (HTTP {status}): {m}")
            }
            CallError::Refused(status, None) => {
                format!("{name} refused the request (HTTP {status}).")
            }
            CallError::Timeout(s) => {
                format!("{name} did not answer within {s} s; try again later.")
            }
            CallError::Connect => {
                format!("I couldn't reach {name} (connection failed); try again later.")
            }
            CallError::Broken => {
                format!(
                    "The connection to {name} broke before it finished answering; try again later."
                )
            }
            CallError::Busy(secs, slots) => format!(
                "{name} is busy: all {slots} of my calls to it are still waiting for answers \
                 and yours got no turn (I wait at most {secs} s), so I did not send it. Try \
                 again in a minute."
            ),
            CallError::TooLarge(limit) => format!(
                "{name} answered with more than {}, so I stopped reading and did nothing with \
                 it. Ask for less (a narrower search, fewer results), or ask the operator to \
                 raise [http] max_body_bytes.",
                size(limit)
            ),
            CallError::Unreadable => {
                format!("{name} answered with something I couldn't read (expected JSON).")
            }
            CallError::Unsignable(why) => {
                tracing::error!(service = %name, why = %why, "request cannot be signed correctly");
                format!("I can't sign this request for {name} correctly ({why}); the command pack needs fixing, so please tell the operator.")
            }
            CallError::Other(m) => format!("The call to {name} failed: {m}."),
        }
    }
}

impl Upstream {
    pub fn new(http: &HttpConfig, extra_roots: &[String]) -> anyhow::Result<Upstream> {
        let mut builder = reqwest::Client::builder();
        // A private CA (a self-hosted service, or a test's loopback TLS server).
        for pem in extra_roots {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes())?);
        }
        let client = builder
            .connect_timeout(Duration::from_secs(http.connect_timeout_secs))
            // A redirect could carry the user's credential to another host: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(USER_AGENT)
            .build()?;
        let direct = (!proxy_in_env())
            .then(|| direct_client(http, extra_roots))
            .transpose()?;
        Ok(Upstream {
            client,
            direct,
            default_timeout: Duration::from_secs(http.timeout_secs),
            max_body: http.max_body_bytes,
            faults: Arc::new(faults::Faults::new(http)),
        })
    }

    /// Applies the operator's per-service `max_concurrent` and `retries`.
    pub fn with_services(
        mut self,
        http: &HttpConfig,
        services: &BTreeMap<String, ServiceOverride>,
    ) -> Upstream {
        self.faults = Arc::new(faults::Faults::new(http).with_services(services));
        self
    }

    /// The shared HTTP client (for the OAuth 2.0 library's requests).
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    /// A body read by a caller with its own request (the OAuth 2.0 token endpoint), under the
    /// same `[http] max_body_bytes` cap as every API answer.
    pub async fn read_body(
        &self,
        resp: reqwest::Response,
        service: &str,
        secs: u64,
    ) -> Result<Vec<u8>, CallError> {
        let resp = http::Response::<reqwest::Body>::from(resp);
        read_limited(resp, self.max_body, service, |e| {
            classify(&e, secs, service)
        })
        .await
    }

    /// Calls to `service` waiting for a turn (every slot to it is taken).
    pub fn waiting(&self, service: &str) -> usize {
        self.faults.waiting(service)
    }

    pub fn timeout_for(&self, service: Target<'_>) -> Duration {
        service.timeout.unwrap_or(self.default_timeout)
    }

    /// Sends `call` as `owner`, logging one audit line whatever happens.
    pub async fn send(
        &self,
        owner: &Owner,
        service: Target<'_>,
        command: &str,
        call: Call,
        auth: Auth<'_>,
    ) -> Result<Response, CallError> {
        let started = Instant::now();
        let timeout = self.timeout_for(service);
        let result = self.send_inner(service, call, auth, timeout).await;
        let status = match &result {
            Ok(r) => r.status.to_string(),
            Err(CallError::Rejected(s) | CallError::Server(s) | CallError::Refused(s, _)) => {
                s.to_string()
            }
            Err(CallError::NotFound) => "404".into(),
            Err(CallError::RateLimited(_)) => "429".into(),
            Err(e) => e.to_string(),
        };
        metrics::counter!(
            "deputy_commands_total",
            "service" => service.name.to_string(),
            "command" => command.to_string(),
            "outcome" => crate::metrics::outcome(&status),
        )
        .increment(1);
        metrics::histogram!("deputy_upstream_seconds", "service" => service.name.to_string())
            .record(started.elapsed().as_secs_f64());
        tracing::info!(
            target: "deputy::audit",
            adapter = %owner.adapter,
            workspace = %owner.workspace,
            user = %owner.user,
            service = %service.name,
            command,
            status = %status,
            ms = started.elapsed().as_millis() as u64,
            "upstream call"
        );
        result
    }

    /// The request with its credential applied.
    fn builder(
        &self,
        service: Target<'_>,
        call: &Call,
        auth: Auth<'_>,
    ) -> Result<reqwest::RequestBuilder, CallError> {
        let accept = match call.response {
            ResponseKind::Form => "application/x-www-form-urlencoded",
            _ => "application/json",
        };
        let req = if let Auth::OAuth1 { consumer, token } = &auth {
            use reqwest_oauth1::OAuthClientProvider;
            check_signable(&call.url)?;
            let mut secrets =
                reqwest_oauth1::Secrets::new(&*consumer.key, consumer.secret.expose());
            if let Some((t, s)) = *token {
                secrets = secrets.token(t, s);
            }
            // The signature covers the method, the URL and its query (the crate moves
            // `oauth_*` query parameters into the header); headers and a JSON body are not
            // part of it (RFC 5849), so they are added below like for any other call.
            self.client
                .clone()
                .oauth1(secrets)
                .request(call.method.clone(), call.url.clone())
                .generate_signature()
                .map_err(|e| {
                    tracing::error!(service = %service.name, error = %e, "OAuth 1.0a signing failed");
                    CallError::Unsignable("the signer refused it".into())
                })?
        } else {
            self.client.request(call.method.clone(), call.url.clone())
        };
        // No reqwest timeout: `send_inner` bounds the whole attempt, body included, with one
        // deadline, and a second timer per request would only cost.
        let mut req = req.header(reqwest::header::ACCEPT, accept);
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some((body, content_type)) = &call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type.as_str())
                .body(body.clone());
        }
        match auth {
            Auth::Key { header, value } => {
                let name = reqwest::header::HeaderName::from_bytes(header.as_bytes())
                    .map_err(|e| CallError::Other(e.to_string()))?;
                let mut value = reqwest::header::HeaderValue::from_str(&value).map_err(|_| {
                    CallError::Other("the stored key has characters a header cannot carry".into())
                })?;
                // Marked sensitive so HTTP-layer debug logging redacts it.
                value.set_sensitive(true);
                req = req.header(name, value);
            }
            Auth::Bearer(token) => {
                let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                    .map_err(|_| {
                        CallError::Other("the stored token is not valid in a header".into())
                    })?;
                value.set_sensitive(true);
                req = req.header(reqwest::header::AUTHORIZATION, value);
            }
            Auth::Anonymous | Auth::OAuth1 { .. } => {}
        }
        Ok(req)
    }

    /// The call within its deadline: a turn, then attempts and the waits between them.
    async fn send_inner(
        &self,
        service: Target<'_>,
        call: Call,
        auth: Auth<'_>,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let secs = timeout.as_secs();
        let Some(_slot) = self.faults.slot(service.name, deadline).await else {
            let slots = self.faults.limit(service.name);
            tracing::warn!(service = %service.name, slots, "no free slot to the service within the timeout");
            return Err(CallError::Busy(secs, slots));
        };
        let repeatable = faults::repeatable(&call.method);
        let mut done = 0;
        loop {
            let attempt = self.attempt(service, &call, auth.clone(), secs);
            let result = tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or_else(|_| {
                    tracing::warn!(service = %service.name, secs, "upstream call timed out");
                    Err(CallError::Timeout(secs))
                });
            let Err(error) = &result else {
                return result;
            };
            let Some(wait) = self
                .faults
                .retry_after(service.name, error, repeatable, done)
            else {
                return result;
            };
            if tokio::time::Instant::now() + wait >= deadline {
                return result;
            }
            tracing::info!(service = %service.name, attempt = done + 1, wait_ms = wait.as_millis() as u64, error = %error, "retrying upstream call");
            tokio::time::sleep(wait).await;
            done += 1;
        }
    }

    /// One attempt: send, then read the answer.
    async fn attempt(
        &self,
        service: Target<'_>,
        call: &Call,
        auth: Auth<'_>,
        secs: u64,
    ) -> Result<Response, CallError> {
        let req = self.builder(service, call, auth)?;
        let Some(direct) = &self.direct else {
            let resp = req
                .send()
                .await
                .map_err(|e| classify(&e, secs, service.name))?;
            let resp = http::Response::<reqwest::Body>::from(resp);
            return self
                .answer(resp, service, call.response, |e| {
                    classify(&e, secs, service.name)
                })
                .await;
        };
        let mut req: http::Request<reqwest::Body> =
            req.build()
                .and_then(http::Request::try_from)
                .map_err(|e| classify(&e, secs, service.name))?;
        req.headers_mut()
            .entry(reqwest::header::USER_AGENT)
            .or_insert(reqwest::header::HeaderValue::from_static(USER_AGENT));
        let resp = direct
            .request(req)
            .await
            .map_err(|e| classify_direct(&e, secs, service.name))?;
        self.answer(resp, service, call.response, |e| {
            tracing::warn!(service = %service.name, error = %chain(&e), "upstream body failed");
            CallError::Broken
        })
        .await
    }

    /// The answer as the reply sees it, or the error its status means.
    async fn answer<B: hyper::body::Body<Data = Bytes> + Unpin>(
        &self,
        resp: http::Response<B>,
        service: Target<'_>,
        kind: ResponseKind,
        body_error: impl Fn(B::Error) -> CallError,
    ) -> Result<Response, CallError> {
        let status = resp.status().as_u16();
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
            .collect();
        match status {
            401 | 403 => return Err(CallError::Rejected(status)),
            404 => return Err(CallError::NotFound),
            429 => {
                let retry = headers
                    .get("retry-after")
                    .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
                return Err(CallError::RateLimited(retry));
            }
            500..=599 => return Err(CallError::Server(status)),
            400..=499 => {
                let limit = MAX_ERROR_BODY_BYTES.min(self.max_body);
                let body = read_limited(resp, limit, service.name, body_error)
                    .await
                    .ok();
                let message = body.and_then(|b| upstream_message(&b));
                return Err(CallError::Refused(status, message));
            }
            _ => {}
        }
        let bytes = read_limited(resp, self.max_body, service.name, body_error).await?;
        Ok(Response {
            status,
            headers,
            body: decode_body(kind, bytes)?,
        })
    }
}

/// A successful answer's body as the reply templates see it (`body`), read as `kind` says.
/// Pure, so the fuzz target (`deputy::fuzzing`) reads answers exactly as a call does.
pub fn decode_body(kind: ResponseKind, bytes: Vec<u8>) -> Result<serde_json::Value, CallError> {
    Ok(match kind {
        _ if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::Value::Null,
        ResponseKind::Json => serde_json::from_slice(&bytes).map_err(|_| CallError::Unreadable)?,
        ResponseKind::Text => {
            serde_json::Value::String(String::from_utf8(bytes).map_err(|_| CallError::Unreadable)?)
        }
        ResponseKind::Form => {
            let pairs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).map_err(|_| CallError::Unreadable)?;
            // An HTML error page also parses as a form (one odd key): insist on plain keys.
            let plain = |k: &str| {
                !k.is_empty()
                    && k.chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            };
            if pairs.is_empty() || !pairs.iter().all(|(k, _)| plain(k)) {
                return Err(CallError::Unreadable);
            }
            serde_json::Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, serde_json::Value::String(v)))
                    .collect(),
            )
        }
    })
}

/// Refuses the query shapes reqwest-oauth1 0.3 is known to sign wrongly (see
/// `shared/crate-notes.md`): a repeated key (it sorts by decoded value, RFC 5849 by encoded)
/// and a key that needs percent-encoding (it does not encode keys). Sending them would only
/// earn a 401 that looks like a bad token.
fn check_signable(url: &reqwest::Url) -> Result<(), CallError> {
    let mut seen = std::collections::HashSet::new();
    for (k, _) in url.query_pairs() {
        if k.starts_with("oauth_") {
            continue;
        }
        let plain = k
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'));
        if !plain {
            return Err(CallError::Unsignable(format!(
                "query parameter name {k:?} needs percent-encoding"
            )));
        }
        if !seen.insert(k.to_string()) {
            return Err(CallError::Unsignable(format!(
                "query parameter {k:?} appears more than once"
            )));
        }
    }
    Ok(())
}

/// The body, read chunk by chunk and never past `limit` bytes: a larger answer is cut off
/// (the connection dropped) rather than buffered.
async fn read_limited<B: hyper::body::Body<Data = Bytes> + Unpin>(
    resp: http::Response<B>,
    limit: usize,
    service: &str,
    body_error: impl Fn(B::Error) -> CallError,
) -> Result<Vec<u8>, CallError> {
    let too_large = |seen: String| {
        tracing::warn!(service, limit, seen = %seen, "upstream body over the limit; not read");
        CallError::TooLarge(limit)
    };
    let declared = resp
        .headers()
        .get(reqwest::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if let Some(len) = declared.filter(|l| *l > limit as u64) {
        return Err(too_large(format!("content-length {len}")));
    }
    let mut body = resp.into_body();
    let mut out = Vec::new();
    while let Some(frame) = body.frame().await {
        let Ok(chunk) = frame.map_err(&body_error)?.into_data() else {
            continue; // trailers
        };
        if out.len() + chunk.len() > limit {
            return Err(too_large(format!("more than {limit} bytes")));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// deputy's `User-Agent` on every call.
const USER_AGENT: &str = concat!("deputy/", env!("CARGO_PKG_VERSION"));

/// The proxy variables set in the environment (reqwest reads these, and `NO_PROXY`).
pub fn proxy_variables() -> Vec<String> {
    ["HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY"]
        .iter()
        .flat_map(|k| [k.to_string(), k.to_ascii_lowercase()])
        .filter(|k| std::env::var_os(k).is_some_and(|v| !v.is_empty()))
        .collect()
}

/// Whether the environment names a proxy, so reqwest must send every call.
fn proxy_in_env() -> bool {
    !proxy_variables().is_empty()
}

/// hyper's client with what reqwest's had: the web PKI's roots and the operator's, TLS 1.2 and
/// 1.3 through ring, HTTP/1.1, the connect timeout, `TCP_NODELAY`, idle connections kept 90 s.
fn direct_client(http: &HttpConfig, extra_roots: &[String]) -> anyhow::Result<Direct> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    for pem in extra_roots {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            roots.add(cert.map_err(|e| anyhow::anyhow!("a CA certificate: {e}"))?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(Duration::from_secs(http.connect_timeout_secs)));
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    Ok(
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .pool_timer(hyper_util::rt::TokioTimer::new())
            .pool_idle_timeout(POOL_IDLE)
            .build(connector),
    )
}

/// An error and its causes, outermost first.
fn causes<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> impl Iterator<Item = &'a (dyn std::error::Error + 'static)> {
    std::iter::successors(Some(e), |e| e.source())
}

/// An error and its causes on one line, for the log (hyper's own text is only the kind).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    causes(e)
        .map(|e| e.to_string())
        .collect::<Vec<_>>()
        .join(": ")
}

/// A failed send on the direct client, sorted as [`classify`] sorts reqwest's: a connection
/// that was never made (timed out or refused), or one that broke once the request was out.
fn classify_direct(e: &hyper_util::client::legacy::Error, secs: u64, service: &str) -> CallError {
    tracing::warn!(service, error = %chain(e), "upstream request failed");
    let timed_out = causes(e).any(|s| {
        s.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::TimedOut)
    });
    match (e.is_connect(), timed_out) {
        (true, true) => CallError::Timeout(secs),
        (true, false) => CallError::Connect,
        (false, _) => CallError::Broken,
    }
}

fn classify(e: &reqwest::Error, secs: u64, service: &str) -> CallError {
    // The full error goes to the log (it names the host, never the credential, which lives in
    // a header); the user gets the short kind.
    tracing::warn!(service, error = %e, "upstream request failed");
    if e.is_timeout() {
        CallError::Timeout(secs)
    } else if e.is_connect() {
        CallError::Connect
    } else if e.is_decode() {
        CallError::Unreadable
    } else if e.is_body() || e.is_request() {
        CallError::Broken
    } else {
        CallError::Other("the request failed".into())
    }
}

/// A byte count for people: `4 MiB`, `64 KiB`, `900 bytes`.
fn size(bytes: usize) -> String {
    match bytes {
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{} MiB", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{} KiB", b >> 10),
        b => format!("{b} bytes"),
    }
}

/// A short human message from a JSON error body (`message`, `error`, `detail`), if any.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let m = ["message", "error_description", "error", "detail", "title"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|m| m.as_str()))?;
    Some(m.chars().take(200).collect())
}
