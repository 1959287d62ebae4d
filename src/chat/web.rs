//! The web chat adapter: an embeddable page (`/chat`) and its WebSocket (`/chat/ws`) on
//! deputy's HTTP listener, for a bot inside the operator's own site. Who is talking comes only
//! from the site's signed token ([`identity`]), checked on the upgrade together with the
//! page's `Origin` and the user's connection cap, so a refused client never gets a socket and
//! nothing it sends is read. A web session is private to its user: every message is a direct
//! message, and credentials live under `web/<workspace>/<user>`.
//!
//! The token travels in `Sec-WebSocket-Protocol` (the page offers `deputy` and the token;
//! deputy answers `deputy`): the one header a browser lets a page set on a WebSocket, kept
//! out of URLs and so out of access logs, proxies and history.

pub mod identity;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message as Frame, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::json;
use tokio::sync::{mpsc, watch};

use self::identity::{Identity, Refused, Verified};
use super::{Adapter, Deleted, Message, Reply, Runner};
use crate::config::{origin_of, Config, WebChatConfig};

pub const ADAPTER: &str = "web";
/// The subprotocol the page offers beside its token, and the one deputy selects.
pub const PROTOCOL: &str = "deputy";
/// The close code when the token expires mid-session: the page fetches a fresh token and
/// reconnects.
pub const CLOSE_EXPIRED: u16 = 4001;
/// Frames queued for one connection before it counts as stuck.
const QUEUE: usize = 256;

const PAGE: &str = include_str!("web/chat.html");
const SCRIPT: &str = include_str!("web/chat.js");
const STYLE: &str = include_str!("web/chat.css");

type UserKey = (String, String);
/// Open connections by (workspace, user), then by connection id.
type Sessions = Mutex<HashMap<UserKey, HashMap<String, mpsc::Sender<String>>>>;

/// The running web chat: its routes, and a stop that closes every open session.
pub struct WebChat {
    shared: Arc<Shared>,
}

struct Shared {
    runner: Arc<Runner>,
    identity: Identity,
    limits: WebChatConfig,
    /// Allowed `Origin`s: `[web.chat] allowed_origins` and deputy's own (`public_url`'s).
    origins: Vec<String>,
    /// Without `public_url`, deputy's own page is recognised by `Origin` matching `Host`.
    same_host: bool,
    /// The clock skew allowed on `exp`: a session ends that long after it, as a new
    /// connection would be refused only then.
    leeway: u64,
    adapter: Arc<WebAdapter>,
    stop: watch::Sender<bool>,
    page: String,
}

/// The half the dispatcher and the Outbox talk to.
#[derive(Clone)]
pub struct WebAdapter {
    sessions: Arc<Sessions>,
}

impl WebChat {
    /// Builds the chat from the config (the identity key is read now: a missing secret or an
    /// unreadable PEM stops start-up) and registers the adapter for messages outside a reply.
    pub fn start(config: &Config, runner: Arc<Runner>) -> Result<WebChat, String> {
        let identity = Identity::from_config(config, runner.dispatcher().upstream.client())?;
        let mut origins = Vec::new();
        if let Some(url) = &config.web.public_url {
            origins.push(origin_of(url).map_err(|m| format!("[web] public_url: {m}"))?);
        }
        for o in &config.web.chat.allowed_origins {
            origins.push(origin_of(o).map_err(|m| format!("[web.chat] allowed_origins: {m}"))?);
        }
        let adapter = Arc::new(WebAdapter {
            sessions: Arc::default(),
        });
        runner
            .dispatcher()
            .register_adapter(ADAPTER, adapter.clone() as Arc<dyn Adapter>);
        let page = PAGE
            .replace("{{origins}}", &escape(&json!(origins).to_string()))
            .replace("{{name}}", &escape(&runner.dispatcher().addressing.name));
        let (stop, _) = watch::channel(false);
        Ok(WebChat {
            shared: Arc::new(Shared {
                runner,
                identity,
                limits: config.web.chat.clone(),
                same_host: config.web.public_url.is_none(),
                leeway: config.web.identity.as_ref().map_or(0, |i| i.leeway_secs),
                origins,
                adapter,
                stop,
                page,
            }),
        })
    }

    /// `/chat` (the page), `/chat/chat.js`, `/chat/chat.css` and `/chat/ws`.
    pub fn router(&self) -> Router {
        Router::new()
            .route("/chat", get(page))
            .route(
                "/chat/chat.js",
                get(|| async { asset("text/javascript; charset=utf-8", SCRIPT) }),
            )
            .route(
                "/chat/chat.css",
                get(|| async { asset("text/css; charset=utf-8", STYLE) }),
            )
            .route("/chat/ws", get(upgrade))
            .with_state(self.shared.clone())
    }

    /// Closes every open session (code 1001: the page reconnects when deputy is back).
    pub fn stop(&self) {
        let _ = self.shared.stop.send(true);
    }
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

/// `/chat`: framed only by the allowed origins; scripts and styles only from deputy itself.
async fn page(State(s): State<Arc<Shared>>) -> Response {
    let ancestors = std::iter::once("'self'".to_string())
        .chain(s.origins.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ");
    let csp = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors {ancestors}"
    );
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8".to_string()),
            (header::CONTENT_SECURITY_POLICY, csp),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff".into()),
            (header::REFERRER_POLICY, "no-referrer".into()),
            (header::CACHE_CONTROL, "no-store".into()),
        ],
        s.page.clone(),
    )
        .into_response()
}

/// Escapes text for an HTML attribute or element.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

fn refuse(status: StatusCode, why: impl std::fmt::Display) -> Response {
    (status, format!("{why}\n")).into_response()
}

/// The upgrade: origin, token, connection cap, in that order; only then a socket.
async fn upgrade(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let origin = headers
        .get(header::ORIGIN)
        .and_then(|o| o.to_str().ok())
        .unwrap_or("");
    if !s.origin_allowed(origin, &headers) {
        tracing::info!(origin = %origin.chars().take(100).collect::<String>(), "web chat: origin refused");
        return refuse(
            StatusCode::FORBIDDEN,
            format!("origin {origin:?} may not open this chat; the operator lists allowed origins in [web.chat] allowed_origins"),
        );
    }
    let token = ws
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .map(str::trim)
        .find(|p| *p != PROTOCOL);
    let offered = ws
        .requested_protocols()
        .any(|p| p.to_str().is_ok_and(|p| p.trim() == PROTOCOL));
    let who = match token.filter(|_| offered) {
        None => Err(Refused::Missing),
        Some(token) => s.identity.verify(token).await,
    };
    let who = match who {
        Ok(who) => who,
        Err(why) => {
            tracing::info!(reason = %why, "web chat: token refused");
            return refuse(StatusCode::UNAUTHORIZED, why);
        }
    };
    let id = format!("c{:016x}", rand::random::<u64>());
    let (tx, rx) = mpsc::channel(QUEUE);
    let slot = match Slot::take(
        &s.adapter.sessions,
        &who,
        &id,
        tx,
        s.limits.max_connections_per_user,
    ) {
        Some(slot) => slot,
        None => {
            tracing::info!(workspace = %who.workspace, user = %who.user, "web chat: too many connections");
            return refuse(
                StatusCode::TOO_MANY_REQUESTS,
                format!(
                    "you have {} chat sessions open already; close one and try again",
                    s.limits.max_connections_per_user
                ),
            );
        }
    };
    // The protocol's own cap sits above the message limit (JSON escapes can grow text sixfold):
    // a frame over it closes the connection; a message between the two gets a polite refusal.
    let hard = s.limits.max_message_bytes.saturating_mul(6) + 1024;
    ws.protocols([PROTOCOL])
        .max_message_size(hard)
        .max_frame_size(hard)
        .on_upgrade(move |socket| session(socket, s, who, id, slot, rx))
}

impl Shared {
    fn origin_allowed(&self, origin: &str, headers: &HeaderMap) -> bool {
        if origin.is_empty() {
            return false;
        }
        if self.origins.iter().any(|o| o == origin) {
            return true;
        }
        // deputy's own page when it does not know its public URL: same host as requested.
        self.same_host
            && headers
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .is_some_and(|host| {
                    origin == format!("http://{host}") || origin == format!("https://{host}")
                })
    }
}

/// One open connection in [`Sessions`], released when the session ends (or when the upgrade
/// never happens).
struct Slot {
    sessions: Arc<Sessions>,
    key: UserKey,
    id: String,
}

impl Slot {
    fn take(
        sessions: &Arc<Sessions>,
        who: &Verified,
        id: &str,
        tx: mpsc::Sender<String>,
        max: usize,
    ) -> Option<Slot> {
        let key = (who.workspace.clone(), who.user.clone());
        let mut all = sessions.lock().expect("sessions poisoned");
        let mine = all.entry(key.clone()).or_default();
        if mine.len() >= max {
            return None;
        }
        mine.insert(id.to_string(), tx);
        Some(Slot {
            sessions: sessions.clone(),
            key,
            id: id.to_string(),
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut all = self.sessions.lock().expect("sessions poisoned");
        if let Some(mine) = all.get_mut(&self.key) {
            mine.remove(&self.id);
            if mine.is_empty() {
                all.remove(&self.key);
            }
        }
    }
}

/// A token bucket: `burst` messages at once, refilled at `per_minute`.
struct Bucket {
    tokens: f64,
    burst: f64,
    per_sec: f64,
    at: tokio::time::Instant,
}

impl Bucket {
    fn new(burst: u32, per_minute: u32) -> Bucket {
        Bucket {
            tokens: f64::from(burst),
            burst: f64::from(burst),
            per_sec: f64::from(per_minute) / 60.0,
            at: tokio::time::Instant::now(),
        }
    }

    fn take(&mut self) -> bool {
        let now = tokio::time::Instant::now();
        let refill = now.duration_since(self.at).as_secs_f64() * self.per_sec;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

fn frame(value: serde_json::Value) -> Frame {
    Frame::text(value.to_string())
}

/// One connection: messages in, replies out, until the page leaves, the token expires or
/// deputy stops.
async fn session(
    mut socket: WebSocket,
    s: Arc<Shared>,
    who: Verified,
    id: String,
    _slot: Slot,
    mut out: mpsc::Receiver<String>,
) {
    tracing::info!(workspace = %who.workspace, user = %who.user, connection = %id, "web chat session opened");
    let hello = json!({
        "type": "hello",
        "user": who.user,
        "name": who.name,
        "workspace": who.workspace,
        "expires_at": who.expires_at,
        "bot": s.runner.dispatcher().addressing.name,
        "max_message_bytes": s.limits.max_message_bytes,
    });
    if socket.send(frame(hello)).await.is_err() {
        return;
    }
    // The first instant a new connection with this token would be refused: jsonwebtoken
    // accepts a token through the whole second `exp + leeway`.
    let refused_from = std::time::UNIX_EPOCH + Duration::from_secs(who.expires_at + s.leeway + 1);
    let left = refused_from
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let expires = tokio::time::Instant::now() + left;
    let mut bucket = Bucket::new(s.limits.burst, s.limits.messages_per_minute);
    let mut stop = s.stop.subscribe();
    let mut seq = 0u64;
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Frame::Text(text))) => {
                    if let Some(answer) = s.take(&who, &id, &mut seq, &mut bucket, text.as_str()) {
                        if socket.send(frame(json!({"type": "error", "text": answer}))).await.is_err() {
                            break;
                        }
                    }
                }
                Some(Ok(Frame::Binary(_))) => {
                    let text = "send text frames: {\"type\":\"message\",\"text\":\"…\"}";
                    if socket.send(frame(json!({"type": "error", "text": text}))).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Frame::Close(_))) | None => break,
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::info!(connection = %id, error = %e, "web chat connection failed");
                    break;
                }
            },
            Some(text) = out.recv() => {
                if socket.send(Frame::text(text)).await.is_err() {
                    break;
                }
            }
            _ = tokio::time::sleep_until(expires) => {
                let text = "Your sign-in for this chat has expired. Reconnect with a fresh token (reload the page).";
                let _ = socket.send(frame(json!({"type": "expired", "text": text}))).await;
                let _ = socket.send(Frame::Close(Some(CloseFrame {
                    code: CLOSE_EXPIRED,
                    reason: "token expired".into(),
                }))).await;
                break;
            }
            _ = stop.changed() => {
                let _ = socket.send(Frame::Close(Some(CloseFrame {
                    code: 1001,
                    reason: "deputy is stopping".into(),
                }))).await;
                break;
            }
        }
    }
    tracing::info!(workspace = %who.workspace, user = %who.user, connection = %id, "web chat session closed");
}

impl Shared {
    /// Reads one frame from the page and queues it for the dispatcher; returns what to tell
    /// the page when it is refused instead.
    fn take(
        &self,
        who: &Verified,
        id: &str,
        seq: &mut u64,
        bucket: &mut Bucket,
        raw: &str,
    ) -> Option<String> {
        #[derive(serde::Deserialize)]
        struct In {
            #[serde(rename = "type")]
            kind: String,
            text: String,
        }
        let text = match serde_json::from_str::<In>(raw) {
            Ok(m) if m.kind == "message" => m.text,
            _ => {
                return Some(
                    "I could not read that frame: send {\"type\":\"message\",\"text\":\"…\"}"
                        .into(),
                )
            }
        };
        let max = self.limits.max_message_bytes;
        if text.len() > max {
            return Some(format!(
                "That message is {} bytes; the limit is {max}. It was not sent.",
                text.len()
            ));
        }
        if !bucket.take() {
            return Some(format!(
                "Slow down: at most {} messages a minute. That message was not handled.",
                self.limits.messages_per_minute
            ));
        }
        if text.trim().is_empty() {
            return None;
        }
        *seq += 1;
        let message = Message {
            adapter: ADAPTER.into(),
            workspace: who.workspace.clone(),
            user: who.user.clone(),
            user_name: who.name.clone(),
            channel: id.to_string(),
            id: format!("{id}-{seq}"),
            thread: None,
            // The session is the user's own: only they and the bot see it.
            direct: true,
            text,
        };
        self.runner
            .submit(message, self.adapter.clone() as Arc<dyn Adapter>);
        None
    }
}

impl WebAdapter {
    /// The connections a reply to `to` goes to: the one it came from while it is open, else
    /// every open session of the user (a sign-in that finishes after a reload).
    fn targets(&self, to: &Message) -> Vec<mpsc::Sender<String>> {
        let all = self.sessions.lock().expect("sessions poisoned");
        let Some(mine) = all.get(&(to.workspace.clone(), to.user.clone())) else {
            return Vec::new();
        };
        match mine.get(&to.channel) {
            Some(tx) => vec![tx.clone()],
            None => mine.values().cloned().collect(),
        }
    }

    fn push(&self, to: &Message, value: serde_json::Value) -> anyhow::Result<()> {
        let targets = self.targets(to);
        anyhow::ensure!(
            !targets.is_empty(),
            "web user {} has no open chat session",
            to.user
        );
        let text = value.to_string();
        for tx in targets {
            if tx.try_send(text.clone()).is_err() {
                tracing::warn!(user = %to.user, "a web chat connection is not reading; a frame was dropped");
            }
        }
        Ok(())
    }
}

/// Shown while a command runs; dropping it tells the page the bot is done.
struct Busy {
    adapter: WebAdapter,
    to: Message,
}

impl Drop for Busy {
    fn drop(&mut self) {
        let _ = self
            .adapter
            .push(&self.to, json!({"type": "busy", "on": false}));
    }
}

#[async_trait::async_trait]
impl Adapter for WebAdapter {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        self.push(to, json!({"type": "reply", "text": reply.text}))
    }

    async fn delete(&self, _message: &Message) -> Deleted {
        // Nothing to delete: a web session is never shared, so a key sent there is private.
        Deleted::Unsupported
    }

    async fn busy(&self, message: &Message) -> Option<Box<dyn Send>> {
        self.push(message, json!({"type": "busy", "on": true}))
            .ok()?;
        Some(Box::new(Busy {
            adapter: self.clone(),
            to: message.clone(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_refuses() {
        let mut b = Bucket::new(3, 60);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
    }

    #[test]
    fn escape_leaves_no_markup() {
        assert_eq!(
            escape("<a href='x'>&\""),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;"
        );
    }
}
