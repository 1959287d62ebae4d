//! Calling a service's API as the user: build the request from a pack's templates, attach the
//! user's credential, enforce timeouts, and turn every outcome into either a response for the
//! reply template or a [`CallError`] a user can act on. One audit line per call.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::auth::Credential;
use crate::brain::Owner;
use crate::config::HttpConfig;
use crate::pack::{ResponseKind, Service};

/// Largest upstream body deputy reads; a larger one is refused rather than buffered.
const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone)]
pub struct Upstream {
    client: reqwest::Client,
    default_timeout: Duration,
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
    #[error("{0}")]
    Other(String),
}

impl Upstream {
    pub fn new(http: &HttpConfig) -> anyhow::Result<Upstream> {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(http.connect_timeout_secs))
            // A redirect could carry the user's credential to another host: never follow.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("deputy/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Upstream {
            client,
            default_timeout: Duration::from_secs(http.timeout_secs),
        })
    }

    pub fn timeout_for(&self, service: &Service) -> Duration {
        service.timeout.unwrap_or(self.default_timeout)
    }

    /// Sends `call` as `owner`, logging one audit line whatever happens.
    pub async fn send(
        &self,
        owner: &Owner,
        service: &Service,
        command: &str,
        call: Call,
        credential: Option<&Credential>,
    ) -> Result<Response, CallError> {
        let started = Instant::now();
        let timeout = self.timeout_for(service);
        let result = self.send_inner(service, call, credential, timeout).await;
        let status = match &result {
            Ok(r) => r.status.to_string(),
            Err(CallError::Rejected(s) | CallError::Server(s) | CallError::Refused(s, _)) => {
                s.to_string()
            }
            Err(CallError::NotFound) => "404".into(),
            Err(CallError::RateLimited(_)) => "429".into(),
            Err(e) => e.to_string(),
        };
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

    async fn send_inner(
        &self,
        service: &Service,
        call: Call,
        credential: Option<&Credential>,
        timeout: Duration,
    ) -> Result<Response, CallError> {
        let mut req = self
            .client
            .request(call.method.clone(), call.url.clone())
            .timeout(timeout)
            .header(reqwest::header::ACCEPT, "application/json");
        for (k, v) in &call.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        if let Some((body, content_type)) = call.body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        if let Some(c) = credential {
            req = c
                .apply(&service.auth, req)
                .map_err(|e| CallError::Other(e.to_string()))?;
        }
        let secs = timeout.as_secs();
        let resp = req
            .send()
            .await
            .map_err(|e| classify(&e, secs, &service.name))?;
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
                    .and_then(|v| v.trim().parse::<u64>().ok());
                return Err(CallError::RateLimited(retry));
            }
            500..=599 => return Err(CallError::Server(status)),
            400..=499 => {
                let body = read_limited(resp, secs, &service.name).await.ok();
                let message = body.and_then(|b| upstream_message(&b));
                return Err(CallError::Refused(status, message));
            }
            _ => {}
        }
        let bytes = read_limited(resp, secs, &service.name).await?;
        let body = match call.response {
            _ if bytes.iter().all(u8::is_ascii_whitespace) => serde_json::Value::Null,
            ResponseKind::Json => {
                serde_json::from_slice(&bytes).map_err(|_| CallError::Unreadable)?
            }
            ResponseKind::Text => serde_json::Value::String(
                String::from_utf8(bytes).map_err(|_| CallError::Unreadable)?,
            ),
        };
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

async fn read_limited(
    mut resp: reqwest::Response,
    secs: u64,
    service: &str,
) -> Result<Vec<u8>, CallError> {
    let mut out = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| classify(&e, secs, service))?
    {
        if out.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(CallError::Unreadable);
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

fn classify(e: &reqwest::Error, secs: u64, service: &str) -> CallError {
    // The full error goes to the log (it names the host, never the credential, which lives in
    // a header); the user gets the short kind.
    tracing::warn!(service, error = %e, "upstream request failed");
    if e.is_timeout() {
        CallError::Timeout(secs)
    } else if e.is_connect() {
        CallError::Connect
    } else if e.is_decode() || e.is_body() {
        CallError::Unreadable
    } else {
        CallError::Other("the request failed".into())
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
