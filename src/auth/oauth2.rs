//! OAuth 2.0 from chat, with the `oauth2` crate: the device flow (RFC 8628: deputy polls in the
//! background and tells the user when they are linked), the browser flow with PKCE followed by
//! a magic code typed in chat (so a leaked sign-in link cannot link someone else's account),
//! refresh (one at a time per credential, since rotated refresh tokens must not be reused),
//! revocation on logout (RFC 7009), and per-command scopes.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, RefreshToken, RequestTokenError, RevocationUrl, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::brain::{KeyPath, Owner};
use crate::message::{reply, Handled, Internal, Message, Reply};
use crate::pack::{AuthKind, ClientAuth, Grant, OAuth2Def, Pack};
use crate::secret::Secret;
use crate::upstream::Auth;

use super::context::AuthContext;
use super::conversation::Conversation;
use super::credential::{now_secs, Credential};
use super::pending::{self, flow_key, Wrong};
use super::replies;
use super::scheme::{AuthScheme, Callback, Rejected, Step};

/// Refresh this long before the provider's expiry, so a command never races it.
const REFRESH_MARGIN_SECS: u64 = 60;

/// The configured client type (every endpoint optional, checked when used).
type Client = BasicClient<
    EndpointMaybeSet,
    EndpointMaybeSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// A transport failure talking to the provider (its text names the host, never a secret).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse, HttpError>> + Send>>;

/// Who a token-endpoint call is for, for its audit line.
struct Audit {
    owner: Owner,
    service: String,
    step: &'static str,
}

/// The HTTP client handed to `oauth2`: ours, so connection failures are logged (the crate
/// retries them silently while polling and would finally report only `expired_token`), and
/// each call writes the same audit line as an API call.
fn http(
    cx: &AuthContext,
    pack: &Pack,
    owner: &Owner,
    step: &'static str,
    failed: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> impl Fn(oauth2::HttpRequest) -> HttpFuture + Send + Sync {
    let upstream = cx.upstream.clone();
    let client = cx.upstream.client();
    let timeout = cx.upstream.timeout_for(pack.service.target());
    let audit = std::sync::Arc::new(Audit {
        owner: owner.clone(),
        service: pack.service.name.clone(),
        step,
    });
    move |request: oauth2::HttpRequest| {
        let client = client.clone();
        let upstream = upstream.clone();
        let failed = failed.clone();
        let audit = audit.clone();
        Box::pin(async move {
            let started = std::time::Instant::now();
            let (parts, body) = request.into_parts();
            let url = parts.uri.to_string();
            let sent = client
                .request(parts.method, &url)
                .headers(parts.headers)
                .body(body)
                .timeout(timeout)
                .send()
                .await;
            let status = match &sent {
                Ok(r) => r.status().as_u16().to_string(),
                Err(e) if e.is_timeout() => "timeout".into(),
                Err(_) => "unreachable".into(),
            };
            tracing::info!(
                target: "deputy::audit",
                adapter = %audit.owner.adapter,
                workspace = %audit.owner.workspace,
                user = %audit.owner.user,
                service = %audit.service,
                command = audit.step,
                status = %status,
                ms = started.elapsed().as_millis() as u64,
                "token endpoint call"
            );
            let resp = sent.map_err(|e| {
                failed.store(true, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(url = %url, error = %e, "OAuth 2.0 endpoint unreachable");
                HttpError(e.to_string())
            })?;
            let mut out = oauth2::http::Response::builder().status(resp.status());
            for (k, v) in resp.headers() {
                out = out.header(k, v);
            }
            // Capped like every upstream answer: a hostile token endpoint cannot fill memory.
            let bytes = upstream
                .read_body(resp, &audit.service, timeout.as_secs())
                .await
                .map_err(|e| HttpError(e.to_string()))?;
            out.body(bytes).map_err(|e| HttpError(e.to_string()))
        }) as HttpFuture
    }
}

fn def(pack: &Pack) -> &OAuth2Def {
    match &pack.service.auth {
        AuthKind::OAuth2(d) => d,
        _ => unreachable!("oauth2 built-ins run only for oauth2 packs"),
    }
}

/// The pack's client, or the reply saying the operator has not configured it.
fn client(cx: &AuthContext, pack: &Pack) -> Result<Client, Reply> {
    let s = &pack.service;
    let def = def(pack);
    let consumer = s.consumer.as_ref().ok_or_else(|| {
        Reply::new(format!(
            "{} is not set up on this deputy yet: the operator needs to set {} and {}.",
            s.name,
            client_env(&s.name, "ID"),
            client_env(&s.name, "SECRET"),
        ))
    })?;
    let url = |u: &Option<String>| u.as_ref().map(|u| s.auth_url(u));
    let bad = |e: oauth2::url::ParseError| {
        Reply::new(format!("{}'s pack has a bad auth URL: {e}", s.name))
    };
    let redirect = match (&cx.public_url, def.grant) {
        (Some(base), Grant::AuthorizationCode) => Some(
            RedirectUrl::new(format!(
                "{}/oauth2/{}/callback",
                base.trim_end_matches('/'),
                s.name
            ))
            .map_err(bad)?,
        ),
        _ => None,
    };
    let mut c = BasicClient::new(ClientId::new(consumer.key.clone()))
        .set_client_secret(ClientSecret::new(consumer.secret.expose().to_string()))
        .set_auth_type(match def.client_auth {
            ClientAuth::Basic => AuthType::BasicAuth,
            ClientAuth::Body => AuthType::RequestBody,
        })
        .set_auth_uri_option(
            url(&def.authorize_url)
                .map(AuthUrl::new)
                .transpose()
                .map_err(bad)?,
        )
        .set_device_authorization_url_option(
            url(&def.device_authorization_url)
                .map(DeviceAuthorizationUrl::new)
                .transpose()
                .map_err(bad)?,
        )
        .set_revocation_url_option(
            url(&def.revocation_url)
                .map(RevocationUrl::new)
                .transpose()
                .map_err(bad)?,
        )
        .set_token_uri_option(Some(
            TokenUrl::new(s.auth_url(&def.token_url)).map_err(bad)?,
        ));
    if let Some(r) = redirect {
        c = c.set_redirect_uri(r);
    }
    Ok(c)
}

/// `DEPUTY_GITHUB_CLIENT_ID` and friends.
fn client_env(service: &str, what: &str) -> String {
    format!(
        "DEPUTY_{}_CLIENT_{what}",
        service.to_uppercase().replace('-', "_")
    )
}

/// Every scope a sign-in asks for: the pack's own and every command's.
fn scopes(pack: &Pack) -> Vec<String> {
    let mut all: Vec<String> = def(pack).scopes.clone();
    for c in &pack.commands {
        for s in &c.scopes {
            if !all.contains(s) {
                all.push(s.clone());
            }
        }
    }
    all
}

fn state_key(service: &str, state: &str) -> KeyPath {
    KeyPath::of("oauth2state", &[service, state])
}

fn magic_key(owner: &Owner, service: &str) -> KeyPath {
    KeyPath::of(
        "magic",
        &[&owner.adapter, &owner.workspace, &owner.user, service],
    )
}

/// A sign-in in progress for one user.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "grant", rename_all = "snake_case")]
pub enum PendingFlow {
    /// deputy is polling; nothing for the user to type. Kept (sealed, with the device code)
    /// so that a restarted deputy resumes polling.
    Device {
        service: String,
        expires_at: u64,
        conversation: Conversation,
        /// The provider's device authorization response, as `oauth2` reads it.
        details: serde_json::Value,
    },
    /// Waiting for the browser to come back with this `state`.
    Browser { state: String, expires_at: u64 },
}

/// What the browser callback finds by `state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StateRecord {
    conversation: Conversation,
    pkce_verifier: Secret,
    expires_at: u64,
}

/// A token obtained through the browser, held until the magic code is typed in chat.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MagicPending {
    credential: Credential,
    code: Secret,
    attempts: u32,
    expires_at: u64,
}

/// `setupauth`: start the pack's grant; the reply goes only to the user.
async fn setupauth(k: &OAuth2, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
    Ok(vec![
        match start(k, cx, &Conversation::of(msg), pack).await? {
            Ok(text) => replies::sign_in(text, &pack.service.name),
            Err(r) => r,
        },
    ])
}

/// Starts a sign-in and returns the text with the link, or the reply explaining why not.
async fn start(
    k: &OAuth2,
    cx: &AuthContext,
    conversation: &Conversation,
    pack: &Pack,
) -> Step<String> {
    match def(pack).grant {
        Grant::Device => start_device(k, cx, conversation, pack).await,
        Grant::AuthorizationCode => start_browser(cx, conversation, pack).await,
    }
}

async fn start_device(
    k: &OAuth2,
    cx: &AuthContext,
    conversation: &Conversation,
    pack: &Pack,
) -> Step<String> {
    let s = &pack.service;
    let client = match client(cx, pack) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let http = http(
        cx,
        pack,
        &conversation.owner(),
        "setupauth",
        std::sync::Arc::default(),
    );
    let request = client
        .exchange_device_code()
        .map_err(|e| anyhow::anyhow!("{}: {e}", s.name))?
        .add_scopes(scopes(pack).into_iter().map(Scope::new));
    let details: oauth2::StandardDeviceAuthorizationResponse =
        match request.request_async(&http).await {
            Ok(d) => d,
            Err(e) => {
                return Ok(Err(Reply::new(format!(
                    "I couldn't start a {} sign-in: {}",
                    s.name,
                    describe(&s.name, &e)
                ))))
            }
        };
    let owner = conversation.owner();
    let details = bounded(details)?;
    let expires_in = details.expires_in();
    let (flow, until, text) = device_started(pack, conversation, &details)?;
    cx.brain
        .put_expiring(&flow_key(&owner, &s.name), &flow, until)
        .await?;
    // This replica polls it: a replica restarting meanwhile must not resume it too.
    if cx.brain.is_shared() {
        let poll_lock = format!("poll/{}", flow_key(&conversation.owner(), &s.name));
        cx.brain.unlock(&poll_lock).await?;
        cx.brain
            .try_lock(&poll_lock, expires_in.as_secs().max(1))
            .await?;
    }
    k.poll_device(cx, conversation.clone(), s.name.clone(), client, details);
    Ok(Ok(text))
}

/// What a started device flow keeps (the pending flow and when it expires) and tells the user.
fn device_started(
    pack: &Pack,
    conversation: &Conversation,
    details: &oauth2::StandardDeviceAuthorizationResponse,
) -> anyhow::Result<(PendingFlow, u64, String)> {
    let s = &pack.service;
    let expires_in = details.expires_in();
    let until = pending::expiry(expires_in.as_secs());
    let flow = PendingFlow::Device {
        service: s.name.clone(),
        expires_at: until,
        conversation: conversation.clone(),
        details: serde_json::to_value(details)?,
    };
    let text = format!(
        "To link your {} account, open {} and enter the code {} . I'll tell you here when it's done; the code works for {} minute(s).",
        s.name,
        details.verification_uri().as_str(),
        details.user_code().secret(),
        expires_in.as_secs().div_ceil(60)
    );
    Ok((flow, until, text))
}

/// Longest device-code life and poll interval taken from a provider. Real ones say 15 minutes
/// and 5 s; a larger answer (hostile or broken) would overflow the clock arithmetic (`oauth2`
/// adds 5 s to the interval on `slow_down`) or park a poll for ever.
const MAX_DEVICE_CODE_SECS: u64 = 24 * 3600;
const MAX_POLL_INTERVAL_SECS: u64 = 300;
/// Longest wait between polls after the provider could not be reached.
const MAX_POLL_BACKOFF: Duration = Duration::from_secs(30);

/// The device authorization with `expires_in` and `interval` within the limits above.
fn with_times(
    details: &oauth2::StandardDeviceAuthorizationResponse,
    expires_in: u64,
) -> serde_json::Result<oauth2::StandardDeviceAuthorizationResponse> {
    let mut v = serde_json::to_value(details)?;
    v["expires_in"] = expires_in.min(MAX_DEVICE_CODE_SECS).into();
    v["interval"] = details
        .interval()
        .as_secs()
        .min(MAX_POLL_INTERVAL_SECS)
        .into();
    serde_json::from_value(v)
}

/// [`with_times`] keeping the provider's own `expires_in` (capped).
fn bounded(
    details: oauth2::StandardDeviceAuthorizationResponse,
) -> serde_json::Result<oauth2::StandardDeviceAuthorizationResponse> {
    with_times(&details, details.expires_in().as_secs())
}

/// The background half of the device flow: poll as RFC 8628 says until the user approves,
/// declines, or the code expires; then tell the user in chat.
async fn poll_device(
    cx: &AuthContext,
    conversation: Conversation,
    service: String,
    client: Client,
    details: oauth2::StandardDeviceAuthorizationResponse,
) {
    let Some(pack) = cx.pack(&service) else {
        return;
    };
    let failed: std::sync::Arc<std::sync::atomic::AtomicBool> = std::sync::Arc::default();
    let owner = conversation.owner();
    let http = http(cx, pack, &owner, "device poll", failed.clone());
    let p = &pack.service.prefixes[0];
    let result = match client.exchange_device_access_token(&details) {
        Ok(req) => {
            req.set_max_backoff_interval(MAX_POLL_BACKOFF)
                .request_async(&http, tokio::time::sleep, Some(details.expires_in()))
                .await
        }
        Err(e) => Err(RequestTokenError::Other(e.to_string())),
    };
    if result.is_err() {
        metrics::counter!("deputy_signins_failed_total", "kind" => "oauth2").increment(1);
    }
    let text = match result {
        Ok(token) => match store(cx, &owner, pack, &token).await {
            Ok(()) => format!(
                "Linked your {service} account. Commands now run as you; `{p} logout` unlinks."
            ),
            Err(e) => {
                tracing::error!(service = %service, error = %format!("{e:#}"), "storing a device-flow token failed");
                "Sorry, I could not store your sign-in; the operator can find why in the log."
                    .to_string()
            }
        },
        Err(RequestTokenError::ServerResponse(e)) => {
            use oauth2::DeviceCodeErrorResponseType as T;
            match e.error() {
                T::AccessDenied => format!("You declined the {service} sign-in; nothing was linked."),
                T::ExpiredToken if failed.load(std::sync::atomic::Ordering::Relaxed) => format!(
                    "I couldn't reach {service}'s sign-in server before the code expired (connection failed); run `{p} setupauth` to try again."
                ),
                T::ExpiredToken => format!(
                    "The {service} code expired before it was entered; run `{p} setupauth` for a new one."
                ),
                other => format!("The {service} sign-in failed ({}); run `{p} setupauth` to try again.", other.as_ref()),
            }
        }
        Err(e) => format!(
            "The {service} sign-in failed: {} Run `{p} setupauth` to try again.",
            describe(&service, &e)
        ),
    };
    if let Err(e) = cx.brain.delete(&flow_key(&owner, &service)).await {
        tracing::warn!(error = %e, "could not drop a finished device flow");
    }
    if cx.brain.is_shared() {
        let _ = cx
            .brain
            .unlock(&format!("poll/{}", flow_key(&owner, &service)))
            .await;
    }
    cx.outbox
        .notify(&conversation.message(), Reply::private(text))
        .await;
}

/// Restarts the device-flow polls a previous run of deputy left unfinished (called once the
/// adapters are up, so the outcome can be told in chat). Returns how many resumed.
async fn resume_polls(k: &OAuth2, cx: &AuthContext) -> anyhow::Result<usize> {
    let mut resumed = 0;
    for key in cx.brain.keys("flow/").await? {
        // OAuth 1.0a flows share the prefix; they are not ours.
        let Ok(Some(PendingFlow::Device {
            service,
            expires_at,
            conversation,
            details,
        })) = cx.brain.get::<PendingFlow>(&key).await
        else {
            continue;
        };
        let pack = cx.pack(&service);
        let usable = !pending::expired(expires_at);
        let (Some(pack), true) = (pack, usable) else {
            cx.brain.delete(&key).await?;
            continue;
        };
        let (Ok(client), Ok(mut details)) = (
            client(cx, pack),
            serde_json::from_value::<oauth2::StandardDeviceAuthorizationResponse>(details),
        ) else {
            cx.brain.delete(&key).await?;
            continue;
        };
        // Poll only for what is left of the code's life.
        let left = expires_at.saturating_sub(now_secs());
        // With replicas on one brain, exactly one of them resumes each poll.
        // (A single process owns every poll; its locks would only outlive a restart.)
        if cx.brain.is_shared()
            && !cx
                .brain
                .try_lock(&format!("poll/{key}"), left.max(1))
                .await?
        {
            continue;
        }
        details = with_times(&details, left)?;
        k.poll_device(cx, conversation, service, client, details);
        resumed += 1;
    }
    Ok(resumed)
}

async fn start_browser(cx: &AuthContext, conversation: &Conversation, pack: &Pack) -> Step<String> {
    let s = &pack.service;
    if cx.public_url.is_none() {
        return Ok(Err(Reply::new(format!(
            "{} signs in through the browser, which needs deputy's public URL: the operator must set [web] public_url.",
            s.name
        ))));
    }
    let client = match client(cx, pack) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .map_err(|e| anyhow::anyhow!("{}: {e}", s.name))?
        .add_scopes(scopes(pack).into_iter().map(Scope::new))
        .set_pkce_challenge(challenge)
        .url();
    let owner = conversation.owner();
    let expires_at = pending::expiry(cx.config.flow_ttl_secs);
    // A new sign-in replaces an older one: its state stops working.
    if let Some(PendingFlow::Browser { state: old, .. }) =
        cx.brain.get(&flow_key(&owner, &s.name)).await?
    {
        cx.brain.delete(&state_key(&s.name, &old)).await?;
    }
    cx.brain
        .put_expiring(
            &state_key(&s.name, state.secret()),
            &StateRecord {
                conversation: conversation.clone(),
                pkce_verifier: Secret::new(verifier.secret().clone()),
                expires_at,
            },
            expires_at,
        )
        .await?;
    cx.brain
        .put_expiring(
            &flow_key(&owner, &s.name),
            &PendingFlow::Browser {
                state: state.secret().clone(),
                expires_at,
            },
            expires_at,
        )
        .await?;
    Ok(Ok(format!(
        "To link your {} account, open {url} , sign in, then type here the 6-digit code the page shows: `{} auth <code>`. The link works for {} minute(s) and only for you.",
        s.name,
        s.prefixes[0],
        cx.config.flow_ttl_secs.div_ceil(60)
    )))
}

/// The browser came back to `/oauth2/<service>/callback`. Returns the page text and whether
/// a magic code was issued.
async fn callback(
    cx: &AuthContext,
    service: &str,
    state: &str,
    code: Option<&str>,
) -> Result<(bool, String), Internal> {
    let Some(pack) = cx.pack(service) else {
        return Ok((false, "Unknown service.".into()));
    };
    let key = state_key(service, state);
    let Some(record) = cx.brain.get::<StateRecord>(&key).await? else {
        return Ok((
            false,
            "This sign-in is unknown, expired or already used (state mismatch). Start again from chat with setupauth.".into(),
        ));
    };
    // One use only, whatever happens next.
    cx.brain.delete(&key).await?;
    let owner = record.conversation.owner();
    cx.brain.delete(&flow_key(&owner, service)).await?;
    let to = record.conversation.message();
    let p = &pack.service.prefixes[0];
    if pending::expired(record.expires_at) {
        return Ok((
            false,
            format!("This sign-in expired. Run `{p} setupauth` in chat again."),
        ));
    }
    let Some(code) = code else {
        return Ok(replies::declined(&cx.outbox, &to, service).await);
    };
    let client = match client(cx, pack) {
        Ok(c) => c,
        Err(r) => return Ok((false, r.text)),
    };
    let http = http(cx, pack, &owner, "callback", std::sync::Arc::default());
    let exchange = client
        .exchange_code(AuthorizationCode::new(code.to_string()))
        .map_err(|e| anyhow::anyhow!("{service}: {e}"))?
        .set_pkce_verifier(PkceCodeVerifier::new(
            record.pkce_verifier.expose().to_string(),
        ));
    let token = match exchange.request_async(&http).await {
        Ok(t) => t,
        Err(e) => {
            let why = describe(service, &e);
            cx.outbox
                .notify(
                    &to,
                    Reply::private(format!(
                        "The {service} sign-in failed: {why} Run `{p} setupauth` to try again."
                    )),
                )
                .await;
            return Ok((false, format!("The sign-in failed: {why}")));
        }
    };
    let magic = format!(
        "{:06}",
        rand::Rng::gen_range(&mut rand::thread_rng(), 0..1_000_000u32)
    );
    let pending = MagicPending {
        credential: credential(pack, &token, None),
        code: Secret::new(magic.clone()),
        attempts: 0,
        expires_at: pending::expiry(cx.config.flow_ttl_secs),
    };
    cx.brain
        .put_expiring(&magic_key(&owner, service), &pending, pending.expires_at)
        .await?;
    cx.outbox.notify(
        &to,
        Reply::private(format!(
            "One more step: type the 6-digit code the {service} sign-in page shows: `{p} auth <code>`."
        )),
    )
    .await;
    Ok((
        true,
        format!("Your code is {magic}. Type `{p} auth {magic}` in chat to finish; it works only for the chat user who asked."),
    ))
}

/// `auth <code>`: the magic code from the browser flow.
async fn auth(cx: &AuthContext, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
    let s = &pack.service;
    let p = &s.prefixes[0];
    if def(pack).grant == Grant::Device {
        return reply(format!(
            "{} signs in with a device code: run `{p} setupauth`, enter the code on the page, and I'll notice by myself.",
            s.name
        ));
    }
    let code = match args {
        [c] if c.len() == 6 && c.chars().all(|c| c.is_ascii_digit()) => c,
        [] => {
            return reply(format!(
                "Send the 6-digit code the sign-in page showed: `{p} auth <code>`"
            ))
        }
        _ => {
            return reply(format!(
                "That isn't a 6-digit code. Usage: `{p} auth <code>`"
            ))
        }
    };
    let owner = msg.owner();
    let key = magic_key(&owner, &s.name);
    let Some(pending) = cx.brain.get::<MagicPending>(&key).await? else {
        return reply(format!(
            "You have no {} sign-in waiting for a code. Start one with `{p} setupauth`.",
            s.name
        ));
    };
    if pending::expired(pending.expires_at) {
        cx.brain.delete(&key).await?;
        return reply(format!(
            "That code expired; run `{p} setupauth` for a new sign-in."
        ));
    }
    if !constant_time_eq(code.as_bytes(), pending.code.expose().as_bytes()) {
        let counted =
            pending::count_wrong(&cx.brain, &key, pending.expires_at, cx.config.max_attempts);
        let left = match counted.await? {
            Wrong::LockedOut => {
                cx.brain.delete(&key).await?;
                return reply(format!(
                    "That code is wrong, and that was the last try: this sign-in is cancelled. Run `{p} setupauth` to start again."
                ));
            }
            Wrong::Left(left) => left,
        };
        return reply(format!(
            "That code is wrong. Check the sign-in page and try `{p} auth <code>` again ({}).",
            pending::tries_left(left)
        ));
    }
    cx.store(&owner, &s.name, &pending.credential).await?;
    cx.brain.delete(&key).await?;
    reply(format!(
        "Linked your {} account. Commands now run as you; `{p} logout` unlinks.",
        s.name
    ))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn credential(
    pack: &Pack,
    token: &oauth2::basic::BasicTokenResponse,
    previous: Option<&Credential>,
) -> Credential {
    let (old_refresh, old_scopes) = match previous {
        Some(Credential::OAuth2 {
            refresh_token,
            scopes,
            ..
        }) => (refresh_token.clone(), Some(scopes.clone())),
        _ => (None, None),
    };
    Credential::OAuth2 {
        access_token: Secret::new(token.access_token().secret().clone()),
        // A provider that does not rotate keeps the old refresh token valid.
        refresh_token: token
            .refresh_token()
            .map(|r| Secret::new(r.secret().clone()))
            .or(old_refresh),
        expires_at: token
            .expires_in()
            .map(|d| now_secs().saturating_add(d.as_secs())),
        // No `scope` in the answer means the requested ones were granted (RFC 6749 5.1).
        scopes: token
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .or(old_scopes)
            .unwrap_or_else(|| scopes(pack)),
        linked_at: now_secs(),
    }
}

async fn store(
    cx: &AuthContext,
    owner: &Owner,
    pack: &Pack,
    token: &oauth2::basic::BasicTokenResponse,
) -> anyhow::Result<()> {
    cx.store(owner, &pack.service.name, &credential(pack, token, None))
        .await
}

/// The user's token, refreshed first when it is about to expire. `Err` is the reply to give.
async fn usable(
    k: &OAuth2,
    cx: &AuthContext,
    msg: &Message,
    pack: &Pack,
    credential: Credential,
) -> Step<Credential> {
    let due = match &credential {
        Credential::OAuth2 {
            expires_at: Some(at),
            ..
        } => *at <= now_secs() + REFRESH_MARGIN_SECS,
        _ => false,
    };
    if due {
        refresh(k, cx, msg, pack, &credential).await
    } else {
        Ok(Ok(credential))
    }
}

/// How long one replica may hold a credential's refresh lock.
const REFRESH_LOCK_SECS: u64 = 30;

/// Refreshes `stale`, one refresh at a time per credential: whoever waited on the lock finds
/// the new token already stored and uses it, so a rotated refresh token is never reused.
async fn refresh(
    k: &OAuth2,
    cx: &AuthContext,
    msg: &Message,
    pack: &Pack,
    stale: &Credential,
) -> Step<Credential> {
    let s = &pack.service;
    let key = KeyPath::credential(&msg.owner(), &s.name);
    let lock = k.refresh_lock(&key);
    let _held = lock.lock().await;
    let access = |c: &Credential| match c {
        Credential::OAuth2 { access_token, .. } => Some(access_token.expose().to_string()),
        _ => None,
    };
    // Replicas sharing the brain take turns too: whoever holds the brain's lock refreshes,
    // the others wait for the token it stores (a rotated refresh token works only once).
    let shared = format!("refresh/{key}");
    let deadline = std::time::Instant::now() + Duration::from_secs(REFRESH_LOCK_SECS);
    // (One process alone has the in-process lock above; a brain lock would only outlive a
    // crash.)
    let replicas = cx.brain.is_shared();
    while replicas && !cx.brain.try_lock(&shared, REFRESH_LOCK_SECS).await? {
        if let Some(c) = cx.brain.get::<Credential>(&key).await? {
            if access(&c) != access(stale) {
                return Ok(Ok(c));
            }
        }
        if std::time::Instant::now() > deadline {
            return Ok(Err(Reply::new(format!(
                "I couldn't renew your {} sign-in: another of my replicas is renewing it. \
                 Try again in a moment.",
                s.name
            ))));
        }
        // Another process holds it: no event crosses processes, so look again shortly.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let result = refresh_locked(k, cx, msg, pack, stale, &key, access).await;
    if !replicas {
        return result;
    }
    if let Err(e) = cx.brain.unlock(&shared).await {
        tracing::warn!(error = %format!("{e:#}"), "could not release a refresh lock; it expires by itself");
    }
    result
}

/// The refresh itself, under both locks.
async fn refresh_locked(
    k: &OAuth2,
    cx: &AuthContext,
    msg: &Message,
    pack: &Pack,
    stale: &Credential,
    key: &KeyPath,
    access: impl Fn(&Credential) -> Option<String>,
) -> Step<Credential> {
    let s = &pack.service;
    let key = key.clone();
    let current: Option<Credential> = cx.brain.get(&key).await?;
    let current = match current {
        Some(c) if access(&c) != access(stale) => return Ok(Ok(c)),
        Some(c) => c,
        None => return Ok(Err(replies::link_first_signin(pack))),
    };
    let Credential::OAuth2 {
        refresh_token: Some(refresh_token),
        ..
    } = &current
    else {
        return Ok(Err(relink(k, cx, msg, pack, "has expired").await?));
    };
    let client = match client(cx, pack) {
        Ok(c) => c,
        Err(r) => return Ok(Err(r)),
    };
    let http = http(cx, pack, &msg.owner(), "refresh", std::sync::Arc::default());
    let result = client
        .exchange_refresh_token(&RefreshToken::new(refresh_token.expose().to_string()))
        .map_err(|e| anyhow::anyhow!("{}: {e}", s.name))?
        .request_async(&http)
        .await;
    match result {
        Ok(token) => {
            let fresh = credential(pack, &token, Some(&current));
            // Saved before use: the old refresh token is dead from now on.
            cx.brain.put(&key, &fresh).await?;
            tracing::info!(service = %s.name, user = %msg.user, "oauth2 token refreshed");
            metrics::counter!("deputy_token_refreshes_total", "service" => s.name.clone())
                .increment(1);
            Ok(Ok(fresh))
        }
        Err(RequestTokenError::ServerResponse(e))
            if matches!(e.error(), BasicErrorResponseType::InvalidGrant) =>
        {
            cx.brain.delete(&key).await?;
            Ok(Err(
                relink(k, cx, msg, pack, "has expired or was revoked").await?
            ))
        }
        Err(e) => Ok(Err(Reply::new(format!(
            "I couldn't renew your {} sign-in: {} Try again in a moment.",
            s.name,
            describe(&s.name, &e)
        )))),
    }
}

/// "Your sign-in has expired" with a fresh sign-in started in the same reply.
async fn relink(
    k: &OAuth2,
    cx: &AuthContext,
    msg: &Message,
    pack: &Pack,
    why: &str,
) -> Result<Reply, Internal> {
    let head = format!("Your {} sign-in {why}.", pack.service.name);
    Ok(match start(k, cx, &Conversation::of(msg), pack).await? {
        Ok(text) => Reply::private(format!("{head} {text}")),
        Err(r) => Reply::new(format!("{head} {}", r.text)),
    })
}

/// The command's scopes missing from the user's token, if any.
fn missing_scopes(credential: &Credential, needed: &[String]) -> Vec<String> {
    match credential {
        Credential::OAuth2 { scopes, .. } => needed
            .iter()
            .filter(|n| !scopes.contains(n))
            .cloned()
            .collect(),
        _ => Vec::new(),
    }
}

/// Revokes the token at the provider (RFC 7009), when the pack declares where.
/// `Ok(false)`: no revocation endpoint.
async fn revoke(
    cx: &AuthContext,
    owner: &Owner,
    pack: &Pack,
    credential: &Credential,
) -> Result<bool, String> {
    let Credential::OAuth2 {
        access_token,
        refresh_token,
        ..
    } = credential
    else {
        return Ok(false);
    };
    if def(pack).revocation_url.is_none() {
        return Ok(false);
    }
    let client = client(cx, pack).map_err(|r| r.text)?;
    // Revoking the refresh token ends the whole grant on providers that rotate.
    let token = match refresh_token {
        Some(r) => StandardRevocableToken::RefreshToken(RefreshToken::new(r.expose().to_string())),
        None => StandardRevocableToken::AccessToken(oauth2::AccessToken::new(
            access_token.expose().to_string(),
        )),
    };
    let request = client.revoke_token(token).map_err(|e| match e {
        oauth2::ConfigurationError::InsecureUrl(_) => {
            "its revocation URL is not https, which the OAuth library refuses".to_string()
        }
        other => other.to_string(),
    })?;
    let http = http(cx, pack, owner, "revoke", std::sync::Arc::default());
    request
        .request_async(&http)
        .await
        .map(|()| true)
        .map_err(|e| describe(&pack.service.name, &e))
}

/// A provider that answers from a list instead of the network: each call takes the next
/// answer; past the end it says `expired_token`, which ends any poll.
fn scripted(
    answers: Vec<oauth2::HttpResponse>,
) -> impl Fn(oauth2::HttpRequest) -> Result<oauth2::HttpResponse, HttpError> {
    let answers = Mutex::new(std::collections::VecDeque::from(answers));
    move |_| {
        let next = answers.lock().expect("answers poisoned").pop_front();
        next.map_or_else(
            || {
                oauth2::http::Response::builder()
                    .status(400)
                    .header("content-type", "application/json")
                    .body(br#"{"error":"expired_token"}"#.to_vec())
                    .map_err(|e| HttpError(e.to_string()))
            },
            Ok,
        )
    }
}

/// Reads a token endpoint's `answer` as a refresh does: the `oauth2` crate's own parsing
/// (status, content type, JSON, error bodies), then the credential deputy would store; a
/// failure comes back in the user's words. No network: for the fuzz target (`deputy::fuzzing`)
/// and its corpus test.
pub fn read_token_response(
    cx: &AuthContext,
    pack: &Pack,
    answer: oauth2::HttpResponse,
) -> Result<Credential, String> {
    let client = client(cx, pack).map_err(|r| r.text)?;
    let token = client
        .exchange_refresh_token(&RefreshToken::new("refresh".into()))
        .map_err(|e| e.to_string())?
        .request(&scripted(vec![answer]))
        .map_err(|e| describe(&pack.service.name, &e))?;
    Ok(credential(pack, &token, None))
}

/// Runs the device flow against scripted `answers` (the device authorization, then one per
/// poll) as `setupauth` and the background poll read them: returns what the user is told when
/// the flow starts and the credential the poll stores, or the failure in the user's words. No
/// network, no sleeping: for the fuzz target (`deputy::fuzzing`) and its corpus test.
pub fn read_device_flow(
    cx: &AuthContext,
    pack: &Pack,
    conversation: &Conversation,
    answers: Vec<oauth2::HttpResponse>,
) -> Result<(String, Credential), String> {
    let s = &pack.service;
    let client = client(cx, pack).map_err(|r| r.text)?;
    let provider = scripted(answers);
    let details: oauth2::StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .map_err(|e| e.to_string())?
        .add_scopes(scopes(pack).into_iter().map(Scope::new))
        .request(&provider)
        .map_err(|e| describe(&s.name, &e))?;
    let details = bounded(details).map_err(|e| e.to_string())?;
    let (_, _, text) = device_started(pack, conversation, &details).map_err(|e| e.to_string())?;
    let token = client
        .exchange_device_access_token(&details)
        .map_err(|e| e.to_string())?
        .set_max_backoff_interval(MAX_POLL_BACKOFF)
        .request(&provider, |_| {}, Some(details.expires_in()))
        .map_err(|e| describe(&s.name, &e))?;
    Ok((text, credential(pack, &token, None)))
}

/// A token-endpoint failure in words for the user.
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    service: &str,
    e: &RequestTokenError<RE, T>,
) -> String {
    match e {
        RequestTokenError::ServerResponse(r) => format!("{service} said {r}."),
        RequestTokenError::Request(_) => format!("I couldn't reach {service} (connection failed)."),
        RequestTokenError::Parse(_, _) => {
            format!("{service} answered with something I couldn't read.")
        }
        RequestTokenError::Other(m) => format!("{service}: {m}."),
    }
}

/// `kind = "oauth2"`, with its background work: device-flow polls by credential key (a new
/// `setupauth` or a `logout` stops the old one), and one refresh at a time per credential.
#[derive(Default)]
pub struct OAuth2 {
    polls: Mutex<HashMap<String, tokio::task::AbortHandle>>,
    refresh_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl OAuth2 {
    /// Starts polling a device flow in the background, replacing the user's previous poll.
    fn poll_device(
        &self,
        cx: &AuthContext,
        conversation: Conversation,
        service: String,
        client: Client,
        details: oauth2::StandardDeviceAuthorizationResponse,
    ) {
        let key = KeyPath::credential(&conversation.owner(), &service).to_string();
        let cx = cx.clone();
        let task = tokio::spawn(async move {
            poll_device(&cx, conversation, service, client, details).await;
        });
        let old = self
            .polls
            .lock()
            .expect("polls poisoned")
            .insert(key, task.abort_handle());
        if let Some(old) = old {
            old.abort();
        }
    }

    /// Stops the user's device-flow poll for a service, if one runs.
    fn stop_poll(&self, key: &KeyPath) {
        if let Some(h) = self
            .polls
            .lock()
            .expect("polls poisoned")
            .remove(&key.to_string())
        {
            h.abort();
        }
    }

    /// The lock that makes refreshes of one credential happen one at a time.
    fn refresh_lock(&self, key: &KeyPath) -> Arc<tokio::sync::Mutex<()>> {
        self.refresh_locks
            .lock()
            .expect("refresh locks poisoned")
            .entry(key.to_string())
            .or_default()
            .clone()
    }
}

#[async_trait::async_trait]
impl AuthScheme for OAuth2 {
    fn name(&self) -> &'static str {
        "oauth2"
    }

    fn handles(&self, kind: &AuthKind) -> bool {
        matches!(kind, AuthKind::OAuth2(_))
    }

    fn help(&self, pack: &Pack) -> String {
        let p = &pack.service.prefixes[0];
        let mut out =
            format!("Your account:\n`{p} setupauth` — get a sign-in link (sent only to you)\n");
        if def(pack).grant == Grant::AuthorizationCode {
            out.push_str(&format!(
                "`{p} auth <code>` — finish signing in with the 6-digit code the page showed\n"
            ));
        }
        out.push_str(&format!(
            "`{p} whoami` — whether you are linked, and as whom\n\
             `{p} logout` — revoke and forget your token\n"
        ));
        out
    }

    fn link_first(&self, pack: &Pack) -> Reply {
        replies::link_first_signin(pack)
    }

    fn operator_env(&self, service: &str) -> Option<(String, String)> {
        Some((client_env(service, "ID"), client_env(service, "SECRET")))
    }

    async fn setupauth(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
        setupauth(self, cx, msg, pack).await
    }

    async fn auth(&self, cx: &AuthContext, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
        auth(cx, msg, pack, args).await
    }

    /// Stops a sign-in in progress, revokes the token where the pack says how, forgets it.
    async fn logout(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
        let s = &pack.service;
        let owner = msg.owner();
        self.stop_poll(&KeyPath::credential(&owner, &s.name));
        cx.brain.delete(&flow_key(&owner, &s.name)).await?;
        let revoked = match cx.credential(&owner, &s.name).await? {
            Some(c @ Credential::OAuth2 { .. }) => Some(revoke(cx, &owner, pack, &c).await),
            _ => None,
        };
        let existed = cx.forget(&owner, &s.name).await?;
        let Some(revoked) = revoked else {
            return Ok(vec![replies::forgotten(pack, "authorization", existed)]);
        };
        reply(match revoked {
            Ok(true) => format!("Revoked your {} token at {} and deleted it here.", s.name, s.name),
            Ok(false) => format!(
                "Deleted your {} token here. {} declares no way to revoke it, so it stays valid there until it expires or you revoke it yourself.",
                s.name, s.name
            ),
            Err(why) => {
                tracing::warn!(service = %s.name, reason = %why, "token revocation failed");
                format!(
                    "Deleted your {} token here, but could not revoke it at {} ({why}): revoke it there yourself.",
                    s.name, s.name
                )
            }
        })
    }

    fn linked_as(&self, pack: &Pack, credential: &Credential) -> String {
        let scopes = match credential {
            Credential::OAuth2 { scopes, .. } if !scopes.is_empty() => scopes.join(", "),
            _ => "none".to_string(),
        };
        format!(
            "You are linked to {} (scopes: {scopes}).",
            pack.service.name
        )
    }

    /// Refuses a command whose scopes the token lacks, and refreshes a token about to expire.
    async fn prepare(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        command: &str,
        scopes: &[String],
        credential: Credential,
    ) -> Step<Credential> {
        let service = &pack.service;
        let missing = missing_scopes(&credential, scopes);
        if !missing.is_empty() {
            return Ok(Err(Reply::new(format!(
                "`{} {command}` needs the {} scope(s), which your {} sign-in does not have. Run `{} setupauth` to sign in again with them.",
                service.prefixes[0],
                missing.join(", "),
                service.name,
                service.prefixes[0]
            ))));
        }
        usable(self, cx, msg, pack, credential).await
    }

    fn apply<'a>(&self, _pack: &'a Pack, credential: &'a Credential) -> Result<Auth<'a>, Reply> {
        Ok(match credential {
            Credential::OAuth2 { access_token, .. } => Auth::Bearer(access_token.expose()),
            _ => Auth::Anonymous,
        })
    }

    /// A token the provider refuses gets one refresh and one retry.
    async fn rejected(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        credential: Option<&Credential>,
        status: u16,
        retried: bool,
    ) -> Result<Rejected, Internal> {
        if let (Some(stale @ Credential::OAuth2 { .. }), false) = (credential, retried) {
            return Ok(match refresh(self, cx, msg, pack, stale).await? {
                Ok(c) => Rejected::Retry(c),
                Err(r) => Rejected::Reply(r),
            });
        }
        let s = &pack.service;
        Ok(Rejected::Reply(Reply::new(format!(
            "{} rejected your authorization (HTTP {status}). Run `{} setupauth` to sign in again.",
            s.name, s.prefixes[0]
        ))))
    }

    async fn callback(
        &self,
        cx: &AuthContext,
        service: &str,
        q: &HashMap<String, String>,
    ) -> Option<Result<Callback, Internal>> {
        // `code` + `state`, or `error` (access_denied) + `state` (RFC 6749 4.1.2).
        let Some(state) = q.get("state") else {
            return Some(Ok(Callback::Failed(
                "This is not a complete sign-in answer (state is missing).".into(),
            )));
        };
        let code = match (q.get("code"), q.get("error")) {
            (Some(c), None) => Some(c.as_str()),
            (_, Some(_)) => None,
            (None, None) => {
                return Some(Ok(Callback::Failed(
                    "This is not a complete sign-in answer (code is missing).".into(),
                )))
            }
        };
        Some(
            callback(cx, service, state, code)
                .await
                .map(|(issued, text)| match issued {
                    true => Callback::Done(text),
                    false => Callback::Failed(text),
                }),
        )
    }

    async fn resume(&self, cx: &AuthContext) {
        match resume_polls(self, cx).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(polls = n, "resumed device-flow sign-ins"),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "could not resume device-flow sign-ins")
            }
        }
    }
}
