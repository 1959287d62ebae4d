//! A fake Discord on 127.0.0.1 for integration tests of deputy's Discord adapter: the REST API
//! (reached through serenity's `HttpBuilder::proxy`) and the gateway websocket, speaking the
//! JSON shapes serenity 0.12 deserializes. It records what the bot did (IDENTIFY, posts, typing,
//! deletes) and lets a test push user messages, drop the connection, and refuse deletes.
//!
//! Behaviour copied from the real service because a bot has to cope with it:
//! - the bot's own posts come back as MESSAGE_CREATE (a bot that answers every message loops);
//! - without the MESSAGE_CONTENT intent, guild messages arrive with empty content unless they
//!   mention the bot; without GUILD_MESSAGES / DIRECT_MESSAGES they do not arrive at all;
//! - in a DM the bot may delete only its own messages (403, code 50003);
//! - an empty message is refused (400, code 50006);
//! - a RESUME replays the dispatches the client missed, then sends RESUMED.
//!
//! Wire facts from serenity 0.12.5's source, so a change of version is noticed here:
//! - `ClientBuilder` awaits `GET /api/v10/gateway` (not `/gateway/bot`; that is only for
//!   `start_autosharded`) and falls back to the real gateway if it fails. Nothing else is
//!   fetched on start: no `users/@me`, no application info (READY supplies the application id).
//! - The proxy is a plain string replace of `https://discord.com` with the proxy base, so paths
//!   stay `/api/v10/...`; query strings come as `?&key=value`.
//! - The gateway URL gets `?v=10` appended (no `encoding`, no `compress`); IDENTIFY says
//!   `compress: true` but plain TEXT frames are accepted (BINARY ones are taken as zlib).
//! - The IDENTIFY and REST token is `Bot <token>`: `HttpBuilder` adds the prefix.
//! - After a dropped connection serenity reconnects at once and sends RESUME *before* reading
//!   HELLO. A refused RESUME (INVALID_SESSION false) costs it a 5 s shutdown timeout before it
//!   IDENTIFYs again, so this fake accepts resumes unless told otherwise.
//! - Every event is handled in its own task: handlers may see messages out of order.
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};

pub const BOT_NAME: &str = "deputy";
/// The guild of channels the fake has not been told about.
pub const DEFAULT_GUILD_ID: u64 = 777;
/// The application's owner in GET /oauth2/applications/@me.
pub const APP_OWNER_ID: u64 = 4242;
/// Discord's value (ms); tests finish long before the first heartbeat is due unless they
/// lower it with `set_heartbeat_interval`.
pub const HEARTBEAT_INTERVAL_MS: u64 = 41_250;
/// How long a `wait_*` may take before it panics.
const WAIT: Duration = Duration::from_secs(30);
/// Dispatches kept for replay on RESUME.
const REPLAY_LOG: usize = 1000;

// Gateway intent bits (Discord's numbering).
const GUILD_MESSAGES: u64 = 1 << 9;
const DIRECT_MESSAGES: u64 = 1 << 12;
const MESSAGE_CONTENT: u64 = 1 << 15;

/// A user's message for `push_message`.
#[derive(Clone, Debug, Default)]
pub struct IncomingMessage {
    pub id: u64,
    pub channel_id: u64,
    /// `None`: a DM.
    pub guild_id: Option<u64>,
    pub author_id: u64,
    pub author_name: String,
    pub content: String,
    pub author_is_bot: bool,
}

/// A message the bot posted.
#[derive(Clone, Debug)]
pub struct Posted {
    pub channel_id: u64,
    pub content: String,
    /// The message it replies to.
    pub message_reference: Option<u64>,
}

pub struct FakeDiscord {
    /// The REST proxy base, `http://127.0.0.1:P`.
    pub url: String,
    pub state: Arc<DiscordState>,
}

impl FakeDiscord {
    pub async fn start(bot_id: u64) -> FakeDiscord {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(DiscordState {
            bot_id,
            ws_url: format!("ws://{addr}"),
            inner: Mutex::new(Inner {
                next_message_id: 5_000_000,
                echo_own_messages: true,
                heartbeat_interval_ms: HEARTBEAT_INTERVAL_MS,
                ..Inner::default()
            }),
            changed: watch::Sender::new(0),
        });
        // The gateway sits at `/` of the same server: serenity connects to `{url}?v=10`.
        let app = Router::new()
            .route("/", get(gateway))
            .fallback(rest)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeDiscord {
            url: format!("http://{addr}"),
            state,
        }
    }
}

pub struct DiscordState {
    bot_id: u64,
    ws_url: String,
    inner: Mutex<Inner>,
    /// Bumped after every change, so waiters re-check their condition without polling.
    changed: watch::Sender<u64>,
}

/// What the fake sends on one websocket; everything goes through this queue so frames keep the
/// order in which they were decided under the lock.
enum Out {
    Text(String),
    Close(u16, &'static str),
}

struct Conn {
    id: u64,
    tx: mpsc::UnboundedSender<Out>,
    /// IDENTIFY or RESUME completed: dispatches go out on it.
    ready: bool,
}

struct Session {
    id: String,
    seq: u64,
    /// (s, frame) of the dispatches after READY, for replay on RESUME.
    log: Vec<(u64, String)>,
}

#[derive(Default)]
struct Inner {
    required_token: Option<String>,
    identify_count: usize,
    last_identify: Option<Value>,
    intents: u64,
    resume_count: usize,
    refuse_resume: bool,
    echo_own_messages: bool,
    heartbeats: usize,
    heartbeat_interval_ms: u64,
    next_conn: u64,
    current: Option<Conn>,
    session: Option<Session>,
    /// The connection `drop_connection` closed last.
    last_drop: Option<u64>,
    /// The newest connection that completed IDENTIFY or RESUME (0: none yet).
    last_ready_conn: u64,
    gateway_queries: Vec<String>,
    posted: Vec<Posted>,
    next_message_id: u64,
    own_messages: HashSet<u64>,
    deleted: Vec<(u64, u64)>,
    delete_attempts: usize,
    delete_forbidden: bool,
    typing: Vec<u64>,
    rest_calls: Vec<(String, String)>,
    channel_guild: HashMap<u64, u64>,
    dm_recipient: HashMap<u64, u64>,
    user_names: HashMap<u64, String>,
}

impl DiscordState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    /// Waits until `cond` holds; panics after 30 s with what the fake saw.
    async fn wait_until(&self, what: &str, cond: impl Fn(&Inner) -> bool) {
        // Subscribing before the first check means no change can slip in between.
        let mut rx = self.changed.subscribe();
        let waiting = async {
            while !cond(&self.lock()) {
                rx.changed().await.unwrap();
            }
        };
        if tokio::time::timeout(WAIT, waiting).await.is_err() {
            let i = self.lock();
            panic!(
                "fake discord: no {what} within {WAIT:?} (identifies: {}, resumes: {}, \
                 gateway connections: {:?}, REST calls: {:?})",
                i.identify_count, i.resume_count, i.gateway_queries, i.rest_calls
            );
        }
    }

    /// Resolves once IDENTIFY has been accepted `n` times in total (one refused for its token
    /// is not counted).
    pub async fn wait_identified(&self, n: usize) {
        self.wait_until(&format!("IDENTIFY #{n}"), |i| i.identify_count >= n)
            .await
    }

    /// IDENTIFYs accepted so far.
    pub fn identify_count(&self) -> usize {
        self.lock().identify_count
    }

    /// The last accepted IDENTIFY payload `d` (token, intents, properties, ...).
    pub fn last_identify(&self) -> Option<Value> {
        self.lock().last_identify.clone()
    }

    /// How many RESUMEs were accepted.
    pub fn resume_count(&self) -> usize {
        self.lock().resume_count
    }

    /// The query string of each gateway connection, in order (serenity: `v=10`).
    pub fn gateway_queries(&self) -> Vec<String> {
        self.lock().gateway_queries.clone()
    }

    /// Heartbeats (op 1) received.
    pub fn heartbeats(&self) -> usize {
        self.lock().heartbeats
    }

    /// Resolves once `n` heartbeats (op 1) were received in total.
    pub async fn wait_heartbeats(&self, n: usize) {
        self.wait_until(&format!("{n} heartbeats"), |i| i.heartbeats >= n)
            .await
    }

    /// The interval HELLO announces on later connections (serenity heartbeats only after it).
    pub fn set_heartbeat_interval(&self, interval: Duration) {
        self.lock().heartbeat_interval_ms = interval.as_millis() as u64;
    }

    /// Only `token` (as sent, e.g. `Bot abc`) is then accepted: IDENTIFY with another is closed
    /// with 4004 like Discord does, REST calls (but GET /gateway) with another get 401. By
    /// default any non-empty token is taken.
    pub fn require_token(&self, token: &str) {
        self.lock().required_token = Some(token.to_string());
    }

    /// Answer RESUME with INVALID_SESSION (d=false), forcing a new IDENTIFY (serenity: ~5 s).
    pub fn set_refuse_resume(&self, refuse: bool) {
        self.lock().refuse_resume = refuse;
    }

    /// Whether the bot's posts come back as MESSAGE_CREATE, as on Discord (default: yes).
    pub fn set_echo_own_messages(&self, echo: bool) {
        self.lock().echo_own_messages = echo;
    }

    /// Sends a MESSAGE_CREATE dispatch on the gateway, once a connection is identified (or
    /// resumed). Like Discord, it is withheld if the IDENTIFY intents do not cover it, and its
    /// content is blanked in a guild without MESSAGE_CONTENT unless it mentions the bot.
    pub async fn push_message(&self, m: IncomingMessage) {
        self.wait_until("identified gateway connection", |i| {
            i.current.as_ref().is_some_and(|c| c.ready)
        })
        .await;
        let mut i = self.lock();
        match m.guild_id {
            Some(g) => {
                i.channel_guild.insert(m.channel_id, g);
            }
            None => {
                i.dm_recipient.insert(m.channel_id, m.author_id);
            }
        }
        i.user_names.insert(m.author_id, m.author_name.clone());
        let needed = if m.guild_id.is_some() {
            GUILD_MESSAGES
        } else {
            DIRECT_MESSAGES
        };
        if i.intents & needed == 0 {
            // A test waiting for a reply would time out; say why.
            eprintln!(
                "fake discord: MESSAGE_CREATE {} withheld: IDENTIFY intents {:#x} lack {needed:#x}",
                m.id, i.intents
            );
            return;
        }
        let mentions_bot = mentioned_ids(&m.content).contains(&self.bot_id);
        let content = if m.guild_id.is_some()
            && i.intents & MESSAGE_CONTENT == 0
            && !mentions_bot
            && m.author_id != self.bot_id
        {
            String::new()
        } else {
            m.content.clone()
        };
        let d = self.message_json(
            &i,
            m.id,
            m.channel_id,
            m.guild_id,
            user_json(m.author_id, &m.author_name, m.author_is_bot),
            &content,
            &m.content,
            None,
        );
        self.dispatch(&mut i, "MESSAGE_CREATE", d);
        drop(i);
        self.bump();
    }

    /// POST /api/v10/channels/{id}/messages bodies, in order.
    pub fn posted(&self) -> Vec<Posted> {
        self.lock().posted.clone()
    }

    /// Resolves once at least `n` messages were posted.
    pub async fn wait_posted(&self, n: usize) -> Vec<Posted> {
        self.wait_until(&format!("{n} posted messages"), |i| i.posted.len() >= n)
            .await;
        self.posted()
    }

    /// DELETE /api/v10/channels/{c}/messages/{m} that succeeded: (channel, message).
    pub fn deleted(&self) -> Vec<(u64, u64)> {
        self.lock().deleted.clone()
    }

    pub fn delete_attempts(&self) -> usize {
        self.lock().delete_attempts
    }

    /// DELETE then answers 403 {"message":"Missing Permissions","code":50013}.
    pub fn set_delete_forbidden(&self, forbidden: bool) {
        self.lock().delete_forbidden = forbidden;
    }

    /// The DM channel the fake gives `user_id`; POST /users/@me/channels returns it too.
    pub fn dm_channel_of(&self, user_id: u64) -> u64 {
        let channel = 9_000_000 + user_id;
        self.lock().dm_recipient.insert(channel, user_id);
        channel
    }

    /// POST /api/v10/channels/{id}/typing calls.
    pub fn typing(&self) -> Vec<u64> {
        self.lock().typing.clone()
    }

    /// Closes the current gateway websocket without a close frame, as a network failure would.
    pub fn drop_connection(&self) {
        let mut i = self.lock();
        // Dropping the queue's sender ends the connection's task, which drops the socket.
        if let Some(c) = i.current.take() {
            i.last_drop = Some(c.id);
        }
        drop(i);
        self.bump();
    }

    /// Resolves when a connection opened after the last `drop_connection` has completed
    /// IDENTIFY or RESUME.
    pub async fn wait_reconnected(&self) {
        assert!(
            self.lock().last_drop.is_some(),
            "wait_reconnected before drop_connection (or nothing was connected)"
        );
        self.wait_until("reconnection after drop_connection", |i| {
            i.last_drop.is_some_and(|d| i.last_ready_conn > d)
        })
        .await
    }

    /// (method, path) of every REST call.
    pub fn rest_calls(&self) -> Vec<(String, String)> {
        self.lock().rest_calls.clone()
    }

    /// Sends a dispatch on the current session (and logs it for RESUME); without a ready
    /// connection it is only logged, as Discord would replay it.
    fn dispatch(&self, i: &mut Inner, t: &str, d: Value) {
        let Some(session) = i.session.as_mut() else {
            return;
        };
        session.seq += 1;
        let frame = json!({ "op": 0, "s": session.seq, "t": t, "d": d }).to_string();
        session.log.push((session.seq, frame.clone()));
        if session.log.len() > REPLAY_LOG {
            session.log.remove(0);
        }
        if let Some(c) = i.current.as_ref().filter(|c| c.ready) {
            let _ = c.tx.send(Out::Text(frame));
        }
    }

    fn bot_json(&self) -> Value {
        let mut u = user_json(self.bot_id, BOT_NAME, true);
        // The current user carries these too (READY, users/@me).
        u["verified"] = json!(true);
        u["mfa_enabled"] = json!(false);
        u["flags"] = json!(0);
        u["email"] = Value::Null;
        u
    }

    /// A Message object. `raw` is the unfiltered content, used for mentions (Discord keeps
    /// `mentions` even when it blanks `content`). REST responses carry no `guild_id`, gateway
    /// ones do (with `member`).
    #[allow(clippy::too_many_arguments)]
    fn message_json(
        &self,
        i: &Inner,
        id: u64,
        channel_id: u64,
        guild_id: Option<u64>,
        author: Value,
        content: &str,
        raw: &str,
        reference: Option<Value>,
    ) -> Value {
        let mentions: Vec<Value> = mentioned_ids(raw)
            .into_iter()
            .map(|uid| {
                if uid == self.bot_id {
                    user_json(uid, BOT_NAME, true)
                } else {
                    let name = i.user_names.get(&uid).cloned();
                    user_json(uid, &name.unwrap_or_else(|| format!("user{uid}")), false)
                }
            })
            .collect();
        let mut m = json!({
            "id": id.to_string(),
            "channel_id": channel_id.to_string(),
            "author": author,
            "content": content,
            "timestamp": rfc3339_now(),
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "components": [],
            "pinned": false,
            "type": if reference.is_some() { 19 } else { 0 },
            "flags": 0,
        });
        if let Some(r) = reference {
            m["message_reference"] = r;
        }
        if let Some(g) = guild_id {
            m["guild_id"] = json!(g.to_string());
            m["member"] = json!({
                "roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00",
                "deaf": false, "mute": false, "flags": 0, "pending": false,
            });
        }
        m
    }

    /// The guild of a channel, `None` for a DM channel.
    fn guild_of(&self, i: &Inner, channel: u64) -> Option<u64> {
        if i.dm_recipient.contains_key(&channel) {
            None
        } else {
            Some(*i.channel_guild.get(&channel).unwrap_or(&DEFAULT_GUILD_ID))
        }
    }

    fn channel_json(&self, i: &Inner, channel: u64) -> Value {
        match self.guild_of(i, channel) {
            None => {
                let user = i.dm_recipient[&channel];
                let name = i.user_names.get(&user).cloned();
                json!({
                    "id": channel.to_string(),
                    "type": 1,
                    "last_message_id": null,
                    "flags": 0,
                    "recipients": [user_json(user, &name.unwrap_or_else(|| format!("user{user}")), false)],
                })
            }
            Some(guild) => json!({
                "id": channel.to_string(),
                "type": 0,
                "guild_id": guild.to_string(),
                "name": format!("channel-{channel}"),
                "position": 0,
                "permission_overwrites": [],
                "nsfw": false,
                "topic": null,
                "last_message_id": null,
                "rate_limit_per_user": 0,
                "parent_id": null,
                "flags": 0,
            }),
        }
    }

    /// Handles one gateway frame from the client on connection `conn`.
    fn on_frame(&self, conn: u64, text: &str) {
        let Ok(v) = serde_json::from_str::<Value>(text) else {
            self.send(conn, Out::Close(4002, "Error while decoding payload."));
            return;
        };
        let d = &v["d"];
        let mut i = self.lock();
        let Some(c) = i.current.as_ref().filter(|c| c.id == conn) else {
            return; // dropped meanwhile
        };
        let tx = c.tx.clone();
        match v["op"].as_u64() {
            Some(1) => {
                i.heartbeats += 1;
                let _ = tx.send(Out::Text(json!({ "op": 11, "d": null }).to_string()));
            }
            Some(2) => {
                if !token_ok(&i, d["token"].as_str()) {
                    let _ = tx.send(Out::Close(4004, "Authentication failed."));
                    return;
                }
                i.identify_count += 1;
                i.last_identify = Some(d.clone());
                i.intents = d["intents"].as_u64().unwrap_or(0);
                let session_id = format!("fake-session-{}", i.identify_count);
                let mut ready = json!({
                    "v": 10,
                    "user": self.bot_json(),
                    "guilds": [],
                    "private_channels": [],
                    "session_id": session_id,
                    "session_type": "normal",
                    "resume_gateway_url": self.ws_url,
                    "application": { "id": self.bot_id.to_string(), "flags": 0 },
                });
                if d["shard"].is_array() {
                    ready["shard"] = d["shard"].clone();
                }
                let frame = json!({ "op": 0, "s": 1, "t": "READY", "d": ready });
                let _ = tx.send(Out::Text(frame.to_string()));
                i.session = Some(Session {
                    id: session_id,
                    seq: 1,
                    log: Vec::new(),
                });
                self.mark_ready(&mut i, conn);
            }
            Some(6) => {
                let resumable = !i.refuse_resume
                    && token_ok(&i, d["token"].as_str())
                    && i.session.as_ref().map(|s| s.id.as_str()) == d["session_id"].as_str();
                if !resumable {
                    let _ = tx.send(Out::Text(json!({ "op": 9, "d": false }).to_string()));
                    return;
                }
                let from = d["seq"].as_u64().unwrap_or(0);
                let session = i.session.as_mut().unwrap();
                for (_, frame) in session.log.iter().filter(|(s, _)| *s > from) {
                    let _ = tx.send(Out::Text(frame.clone()));
                }
                session.seq += 1;
                let resumed = json!({ "op": 0, "s": session.seq, "t": "RESUMED", "d": {} });
                let _ = tx.send(Out::Text(resumed.to_string()));
                i.resume_count += 1;
                self.mark_ready(&mut i, conn);
            }
            // Presence updates, member requests, ...: nothing to answer.
            _ => {}
        }
        drop(i);
        self.bump();
    }

    fn mark_ready(&self, i: &mut Inner, conn: u64) {
        if let Some(c) = i.current.as_mut().filter(|c| c.id == conn) {
            c.ready = true;
            i.last_ready_conn = conn;
        }
    }

    fn send(&self, conn: u64, out: Out) {
        if let Some(c) = self.lock().current.as_ref().filter(|c| c.id == conn) {
            let _ = c.tx.send(out);
        }
    }
}

fn token_ok(i: &Inner, token: Option<&str>) -> bool {
    match (token, &i.required_token) {
        (None | Some(""), _) => false,
        (Some(t), Some(required)) => t == required,
        (Some(_), None) => true,
    }
}

/// A user object as Discord sends it for others (no `bot` key for humans).
fn user_json(id: u64, name: &str, bot: bool) -> Value {
    let mut u = json!({
        "id": id.to_string(),
        "username": name,
        "discriminator": "0",
        "global_name": if bot { Value::Null } else { json!(name) },
        "avatar": null,
        "public_flags": 0,
    });
    if bot {
        u["bot"] = json!(true);
    }
    u
}

/// User ids mentioned as `<@id>` or `<@!id>`.
fn mentioned_ids(content: &str) -> Vec<u64> {
    let mut ids = Vec::new();
    for part in content.split("<@").skip(1) {
        let part = part.strip_prefix('!').unwrap_or(part);
        if let Some((id, _)) = part.split_once('>') {
            if let Ok(id) = id.parse::<u64>() {
                if !ids.contains(&id) {
                    ids.push(id);
                }
            }
        }
    }
    ids
}

/// Now as Discord writes timestamps: `2024-05-01T12:34:56.789000+00:00`.
fn rfc3339_now() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}+00:00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_micros()
    )
}

async fn gateway(
    State(state): State<Arc<DiscordState>>,
    RawQuery(query): RawQuery,
    ws: WebSocketUpgrade,
) -> Response {
    ws.on_upgrade(move |socket| connection(state, socket, query.unwrap_or_default()))
}

/// One gateway connection: HELLO, then frames from the client and from the fake's queue.
async fn connection(state: Arc<DiscordState>, mut socket: WebSocket, query: String) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = {
        let mut i = state.lock();
        let hello = json!({ "op": 10, "s": null, "t": null,
                            "d": { "heartbeat_interval": i.heartbeat_interval_ms } });
        let _ = tx.send(Out::Text(hello.to_string()));
        i.next_conn += 1;
        let id = i.next_conn;
        // A newer connection replaces the older one, which then only drains its queue.
        i.current = Some(Conn {
            id,
            tx,
            ready: false,
        });
        i.gateway_queries.push(query);
        id
    };
    state.bump();
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Text(text)) => {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        break;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = socket.send(Message::Close(Some(frame))).await;
                    break;
                }
                // drop_connection took the sender: end without a close frame.
                None => break,
            },
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => state.on_frame(id, text.as_str()),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    drop(socket);
    let mut i = state.lock();
    if i.current.as_ref().is_some_and(|c| c.id == id) {
        i.current = None;
    }
    drop(i);
    state.bump();
}

fn error(status: StatusCode, code: u32, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "message": message, "code": code })),
    )
        .into_response()
}

fn ok(v: Value) -> Response {
    axum::Json(v).into_response()
}

/// A snowflake in a JSON body, sent as a string (serenity) or a number.
fn snowflake(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str()?.parse().ok())
}

/// The REST API, matched by hand so every call (known or not) is recorded the same way.
async fn rest(
    State(s): State<Arc<DiscordState>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let response = {
        let mut i = s.lock();
        i.rest_calls.push((method.to_string(), path.clone()));
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        // GET /gateway needs no token on Discord; a bad token then fails at IDENTIFY (4004),
        // which serenity reports, instead of sending it to the real gateway.
        if path != "/api/v10/gateway" && !token_ok(&i, auth) {
            error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized")
        } else {
            route(&s, &mut i, &method, &path, &body)
        }
    };
    s.bump();
    response
}

fn route(s: &DiscordState, i: &mut Inner, method: &Method, path: &str, body: &[u8]) -> Response {
    let not_found = || error(StatusCode::NOT_FOUND, 0, "404: Not Found");
    let Some(rest) = path.strip_prefix("/api/v10/") else {
        return not_found();
    };
    let seg: Vec<&str> = rest.split('/').collect();
    let id = |k: usize| seg.get(k).and_then(|x| x.parse::<u64>().ok());
    match (method.as_str(), seg.as_slice()) {
        ("GET", ["gateway"]) => ok(json!({ "url": s.ws_url })),
        ("GET", ["gateway", "bot"]) => ok(json!({
            "url": s.ws_url,
            "shards": 1,
            "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 0,
                                     "max_concurrency": 1 },
        })),
        ("GET", ["users", "@me"]) => ok(s.bot_json()),
        // The bot's application shares its id, as for every bot made since 2016.
        ("GET", ["oauth2", "applications", "@me"]) => ok(json!({
            "id": s.bot_id.to_string(),
            "name": BOT_NAME,
            "icon": null,
            "description": "",
            "bot_public": false,
            "bot_require_code_grant": false,
            "owner": user_json(APP_OWNER_ID, "owner", false),
            "verify_key": "0".repeat(64),
            "team": null,
            "flags": 0,
        })),
        ("GET", ["users", _]) => match id(1) {
            Some(u) => {
                let name = i.user_names.get(&u).cloned();
                ok(user_json(
                    u,
                    &name.unwrap_or_else(|| format!("user{u}")),
                    false,
                ))
            }
            None => error(StatusCode::NOT_FOUND, 10013, "Unknown User"),
        },
        ("POST", ["users", "@me", "channels"]) => {
            let v: Value = serde_json::from_slice(body).unwrap_or_default();
            match snowflake(&v["recipient_id"]) {
                Some(user) => {
                    let channel = 9_000_000 + user;
                    i.dm_recipient.insert(channel, user);
                    ok(s.channel_json(i, channel))
                }
                None => error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body"),
            }
        }
        ("GET", ["channels", _]) => match id(1) {
            Some(c) => ok(s.channel_json(i, c)),
            None => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
        },
        ("POST", ["channels", _, "typing"]) => match id(1) {
            Some(c) => {
                i.typing.push(c);
                StatusCode::NO_CONTENT.into_response()
            }
            None => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
        },
        ("POST", ["channels", _, "messages"]) => match id(1) {
            Some(c) => post_message(s, i, c, body),
            None => error(StatusCode::NOT_FOUND, 10003, "Unknown Channel"),
        },
        ("DELETE", ["channels", _, "messages", _]) => match (id(1), id(3)) {
            (Some(c), Some(m)) => {
                i.delete_attempts += 1;
                if i.delete_forbidden {
                    error(StatusCode::FORBIDDEN, 50013, "Missing Permissions")
                } else if s.guild_of(i, c).is_none() && !i.own_messages.contains(&m) {
                    error(
                        StatusCode::FORBIDDEN,
                        50003,
                        "Cannot execute action on a DM channel",
                    )
                } else {
                    i.deleted.push((c, m));
                    StatusCode::NO_CONTENT.into_response()
                }
            }
            _ => error(StatusCode::NOT_FOUND, 10008, "Unknown Message"),
        },
        _ => not_found(),
    }
}

fn post_message(s: &DiscordState, i: &mut Inner, channel: u64, body: &[u8]) -> Response {
    // serenity sends JSON unless there are attachments (multipart), which the fake lacks.
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let content = v["content"].as_str().unwrap_or("").to_string();
    let has_embeds = v["embeds"].as_array().is_some_and(|e| !e.is_empty());
    if content.is_empty() && !has_embeds {
        return error(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        );
    }
    if content.chars().count() > 2000 {
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let reply_to = snowflake(&v["message_reference"]["message_id"]);
    i.next_message_id += 1;
    let id = i.next_message_id;
    i.own_messages.insert(id);
    i.posted.push(Posted {
        channel_id: channel,
        content: content.clone(),
        message_reference: reply_to,
    });
    let guild = s.guild_of(i, channel);
    let reference = reply_to.map(|m| {
        let mut r = json!({ "type": 0, "channel_id": channel.to_string(),
                            "message_id": m.to_string() });
        if let Some(g) = guild {
            r["guild_id"] = json!(g.to_string());
        }
        r
    });
    let rest_json = s.message_json(
        i,
        id,
        channel,
        None,
        user_json(s.bot_id, BOT_NAME, true),
        &content,
        &content,
        reference.clone(),
    );
    let needed = if guild.is_some() {
        GUILD_MESSAGES
    } else {
        DIRECT_MESSAGES
    };
    if i.echo_own_messages && i.intents & needed != 0 {
        let gateway_json = s.message_json(
            i,
            id,
            channel,
            guild,
            user_json(s.bot_id, BOT_NAME, true),
            &content,
            &content,
            reference,
        );
        s.dispatch(i, "MESSAGE_CREATE", gateway_json);
    }
    ok(rest_json)
}
