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
//! - a RESUME replays the dispatches the client missed, then sends RESUMED;
//! - an interaction (INTERACTION_CREATE: 2 application command, 3 button click, 5 modal submit;
//!   no intent needed) takes one answer (POST /interactions/{id}/{token}/callback, 204) within
//!   3 s, else 404 code 10062; a second answer gets 400 code 40060. A modal (type 9) answers a
//!   command or a click, never a submission; UPDATE_MESSAGE (7) only what came from a message;
//! - the interaction token then takes followups (POST /webhooks/{app}/{token}) and edits of the
//!   original (PATCH .../messages/@original, which fills in a deferral) for 15 minutes, with no
//!   bot token needed;
//! - an ephemeral message (flag 64, only as an interaction's answer) is never echoed on the
//!   gateway, and only its user can click its buttons; a button must exist and be enabled to be
//!   clicked; a modal submission carries only each input's type, custom_id and value;
//! - application commands are checked as Discord checks them (lowercase names of 1-32
//!   characters, descriptions of 1-100) and only registered commands can be run.
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
//! - The application id that followups and command registration need is set from READY on the
//!   client's own `Http` only; another `Http` must be given it (`set_application_id`).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
/// Message flag: only the user the interaction came from sees it.
pub const EPHEMERAL: u64 = 1 << 6;
/// How long Discord waits for an interaction's first response.
pub const RESPONSE_DEADLINE: Duration = Duration::from_secs(3);
/// How long an interaction token takes followups and edits.
const TOKEN_LIFETIME: Duration = Duration::from_secs(15 * 60);

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

/// A message the bot posted: in a channel, or as an interaction's response or followup.
#[derive(Clone, Debug)]
pub struct Posted {
    /// Its message id (clicks on its buttons name it).
    pub id: u64,
    pub channel_id: u64,
    /// The current content: an edit (PATCH @original, UPDATE_MESSAGE) replaces it.
    pub content: String,
    /// The message it replies to.
    pub message_reference: Option<u64>,
    /// Flag 64: only `ephemeral_to` sees it; only an interaction's answer can be ephemeral.
    pub ephemeral: bool,
    /// The user an ephemeral message is shown to.
    pub ephemeral_to: Option<u64>,
    /// The action rows as sent (an edit that sends `components` replaces them).
    pub components: Vec<Value>,
    /// The interaction it answers (a type 4 response, the deferred original, a followup).
    pub interaction: Option<u64>,
}

/// One button of a posted message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Button {
    pub custom_id: Option<String>,
    pub url: Option<String>,
    pub label: String,
    pub style: u64,
    pub disabled: bool,
}

impl Posted {
    /// Every button in its action rows, in order.
    pub fn buttons(&self) -> Vec<Button> {
        let mut out = Vec::new();
        for row in &self.components {
            for b in row["components"].as_array().into_iter().flatten() {
                if b["type"] == 2 {
                    out.push(Button {
                        custom_id: b["custom_id"].as_str().map(str::to_string),
                        url: b["url"].as_str().map(str::to_string),
                        label: b["label"].as_str().unwrap_or("").to_string(),
                        style: b["style"].as_u64().unwrap_or(0),
                        disabled: b["disabled"].as_bool().unwrap_or(false),
                    });
                }
            }
        }
        out
    }

    /// The custom_id of the button labelled `label`; panics with the buttons it has.
    pub fn button(&self, label: &str) -> String {
        let buttons = self.buttons();
        buttons
            .iter()
            .find(|b| b.label == label)
            .and_then(|b| b.custom_id.clone())
            .unwrap_or_else(|| panic!("no button {label:?} on {self:?}"))
    }
}

/// What the bot answered to one interaction (POST /interactions/{id}/{token}/callback).
#[derive(Clone, Debug)]
pub struct Callback {
    pub interaction_id: u64,
    /// 4 message, 5 deferred message, 6 deferred update, 7 update message, 9 modal.
    pub kind: u64,
    /// `data` as sent (flags, content, components; a modal's custom_id, title, components).
    pub data: Value,
}

impl Callback {
    pub fn ephemeral(&self) -> bool {
        self.data["flags"].as_u64().unwrap_or(0) & EPHEMERAL != 0
    }
}

/// A modal the bot opened for a user, until it is submitted.
#[derive(Clone, Debug)]
pub struct Modal {
    pub custom_id: String,
    pub title: String,
    /// The text inputs: (custom_id, style: 1 short / 2 paragraph, label).
    pub inputs: Vec<(String, u64, String)>,
    /// The interaction it answered.
    pub opened_by: u64,
}

/// Where a user acts: their id and name, the channel, and its guild (`None`: a DM).
#[derive(Clone, Debug)]
pub struct Actor {
    pub user_id: u64,
    pub name: String,
    pub channel_id: u64,
    pub guild_id: Option<u64>,
}

/// An interaction as a test forges it, for what Discord's own client would not send (a custom_id
/// on no message, a submission for a modal never opened).
#[derive(Clone, Debug)]
pub struct RawInteraction {
    pub actor: Actor,
    /// 2 application command, 3 message component, 5 modal submit.
    pub kind: u64,
    pub data: Value,
    /// The message a component is on (a posted message's id).
    pub message_id: Option<u64>,
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
                next_interaction: 8_000_000,
                next_command: 3_000_000,
                response_deadline: Some(RESPONSE_DEADLINE),
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
    /// Every REST request body, in order (a secret must be in none of them).
    bodies: Vec<String>,
    /// message id -> index in `posted`.
    message_index: HashMap<u64, usize>,
    next_interaction: u64,
    issued: HashMap<u64, Issued>,
    callbacks: Vec<Callback>,
    /// Refused callbacks: (interaction id, status, Discord code).
    refused_callbacks: Vec<(u64, u16, u64)>,
    response_deadline: Option<Duration>,
    /// The modal open for each user.
    modals: HashMap<u64, Modal>,
    /// Registered application commands: (guild, command JSON); `None` is global.
    commands: Vec<(Option<u64>, Value)>,
    command_puts: usize,
    next_command: u64,
}

/// An interaction the fake sent, as its callback and webhook endpoints check it.
struct Issued {
    token: String,
    kind: u64,
    actor: Actor,
    message_id: Option<u64>,
    at: Instant,
    /// The callback type once answered.
    answered: Option<u64>,
    /// The message the response created (type 4, or a deferral's first edit).
    original: Option<u64>,
    /// Type 5 with flag 64: the original, once edited in, is ephemeral.
    deferred_ephemeral: bool,
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

    /// Every REST request body so far (JSON as sent; empty for a GET).
    pub fn bodies(&self) -> Vec<String> {
        self.lock().bodies.clone()
    }

    /// The posted message with this id, as it is now (after edits).
    pub fn message(&self, id: u64) -> Option<Posted> {
        let i = self.lock();
        i.message_index.get(&id).map(|&k| i.posted[k].clone())
    }

    /// Resolves with the first posted message for which `pred` holds.
    pub async fn wait_message(&self, what: &str, pred: impl Fn(&Posted) -> bool) -> Posted {
        self.wait_until(what, |i| i.posted.iter().any(&pred)).await;
        self.lock()
            .posted
            .iter()
            .find(|p| pred(p))
            .cloned()
            .unwrap()
    }

    /// The bot's answers to interactions, in order.
    pub fn callbacks(&self) -> Vec<Callback> {
        self.lock().callbacks.clone()
    }

    /// Resolves with the bot's (accepted) answer to interaction `id`.
    pub async fn wait_callback(&self, id: u64) -> Callback {
        let found = |i: &Inner| i.callbacks.iter().find(|c| c.interaction_id == id).cloned();
        self.wait_until(&format!("callback for interaction {id}"), |i| {
            found(i).is_some()
        })
        .await;
        found(&self.lock()).unwrap()
    }

    /// Callbacks Discord refused: (interaction id, HTTP status, Discord error code).
    pub fn refused_callbacks(&self) -> Vec<(u64, u16, u64)> {
        self.lock().refused_callbacks.clone()
    }

    /// How long after an interaction its first answer is still taken (Discord: 3 s); `None`
    /// takes it any time.
    pub fn set_response_deadline(&self, deadline: Option<Duration>) {
        self.lock().response_deadline = deadline;
    }

    /// The modal open for `user`, if the bot opened one that is not submitted yet.
    pub fn open_modal(&self, user: u64) -> Option<Modal> {
        self.lock().modals.get(&user).cloned()
    }

    /// Resolves with the modal the bot opened for `user`.
    pub async fn wait_modal(&self, user: u64) -> Modal {
        self.wait_until(&format!("a modal for user {user}"), |i| {
            i.modals.contains_key(&user)
        })
        .await;
        self.open_modal(user).unwrap()
    }

    /// The application commands registered: (guild, command), `None` for a global one.
    pub fn commands(&self) -> Vec<(Option<u64>, Value)> {
        self.lock().commands.clone()
    }

    /// Resolves once the bot registered its commands (a PUT or POST on a commands route).
    pub async fn wait_commands(&self) -> Vec<(Option<u64>, Value)> {
        self.wait_until("command registration", |i| !i.commands.is_empty())
            .await;
        self.commands()
    }

    /// The user runs the registered chat-input command `name` with string `options`, as
    /// Discord's client lets them: panics if no such command (or option) is registered where
    /// the actor is. Returns the interaction id.
    pub async fn run_command(&self, actor: &Actor, name: &str, options: &[(&str, &str)]) -> u64 {
        let (command_id, guild) = {
            let i = self.lock();
            let found = i
                .commands
                .iter()
                .find(|(g, c)| c["name"] == name && (g.is_none() || *g == actor.guild_id));
            let Some((g, c)) = found else {
                panic!(
                    "fake discord: /{name} is not registered (commands: {:?})",
                    i.commands
                );
            };
            for (option, _) in options {
                let known = c["options"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|o| o["name"] == *option && o["type"] == 3);
                assert!(
                    known,
                    "fake discord: /{name} has no string option {option:?}: {c}"
                );
            }
            (snowflake(&c["id"]).unwrap(), *g)
        };
        let mut data = json!({
            "id": command_id.to_string(),
            "name": name,
            "type": 1,
            "options": options.iter().map(|(n, v)| json!({ "name": n, "type": 3, "value": v }))
                .collect::<Vec<_>>(),
        });
        if let Some(g) = guild {
            data["guild_id"] = json!(g.to_string());
        }
        self.push_interaction(RawInteraction {
            actor: actor.clone(),
            kind: 2,
            data,
            message_id: None,
        })
        .await
    }

    /// The user clicks the button `custom_id` on the bot's message `message_id`, if Discord's
    /// client would let them: the button exists and is enabled, and an ephemeral message is
    /// clicked only by the user it is shown to. Returns the interaction id.
    pub async fn click(
        &self,
        user_id: u64,
        name: &str,
        message_id: u64,
        custom_id: &str,
    ) -> Result<u64, String> {
        let actor = {
            let i = self.lock();
            let Some(&k) = i.message_index.get(&message_id) else {
                return Err(format!("no message {message_id}"));
            };
            let p = &i.posted[k];
            if p.ephemeral_to.is_some_and(|u| u != user_id) {
                return Err("an ephemeral message is seen only by its user".into());
            }
            let clickable = p
                .buttons()
                .iter()
                .any(|b| b.custom_id.as_deref() == Some(custom_id) && !b.disabled);
            if !clickable {
                return Err(format!("no enabled button {custom_id:?} on {p:?}"));
            }
            Actor {
                user_id,
                name: name.to_string(),
                channel_id: p.channel_id,
                guild_id: self.guild_of(&i, p.channel_id),
            }
        };
        Ok(self
            .push_interaction(RawInteraction {
                actor,
                kind: 3,
                data: json!({ "custom_id": custom_id, "component_type": 2 }),
                message_id: Some(message_id),
            })
            .await)
    }

    /// The user fills the modal the bot opened for them with `values` (one per text input, in
    /// order) and submits it; the modal closes. Panics if none is open. Returns the id.
    pub async fn submit_modal(&self, user_id: u64, values: &[&str]) -> u64 {
        let (modal, actor, message_id) = {
            let mut i = self.lock();
            let Some(modal) = i.modals.remove(&user_id) else {
                panic!("fake discord: no modal open for user {user_id}");
            };
            let from = &i.issued[&modal.opened_by];
            (modal.clone(), from.actor.clone(), from.message_id)
        };
        assert_eq!(modal.inputs.len(), values.len(), "one value per text input");
        let rows: Vec<Value> = modal
            .inputs
            .iter()
            .zip(values)
            .map(|((id, _, _), v)| {
                // Discord sends back only type, custom_id and value (serenity notes it).
                json!({ "type": 1, "components": [{ "type": 4, "custom_id": id, "value": v }] })
            })
            .collect();
        self.push_interaction(RawInteraction {
            actor,
            kind: 5,
            data: json!({ "custom_id": modal.custom_id, "components": rows }),
            message_id,
        })
        .await
    }

    /// Sends an INTERACTION_CREATE once a connection is identified (interactions need no
    /// intent); returns its id. Its token is then good for one answer within the deadline and
    /// for followups and edits for 15 minutes.
    pub async fn push_interaction(&self, raw: RawInteraction) -> u64 {
        self.wait_until("identified gateway connection", |i| {
            i.current.as_ref().is_some_and(|c| c.ready)
        })
        .await;
        assert!(
            raw.kind != 3 || raw.message_id.is_some(),
            "a click comes from a message (serenity drops a component interaction without one)"
        );
        let mut i = self.lock();
        let a = &raw.actor;
        match a.guild_id {
            Some(g) => {
                i.channel_guild.insert(a.channel_id, g);
            }
            None => {
                i.dm_recipient.insert(a.channel_id, a.user_id);
            }
        }
        i.user_names.insert(a.user_id, a.name.clone());
        i.next_interaction += 1;
        let id = i.next_interaction;
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let token = format!("aW50ZXJhY3Rpb246{id}:{nanos:08x}");
        let user = user_json(a.user_id, &a.name, false);
        let channel = self.channel_json(&i, a.channel_id);
        let mut d = json!({
            "id": id.to_string(),
            "application_id": self.bot_id.to_string(),
            "type": raw.kind,
            "data": raw.data,
            "channel_id": a.channel_id.to_string(),
            "channel": { "id": channel["id"], "type": channel["type"], "name": channel["name"] },
            "token": token,
            "version": 1,
            "app_permissions": "3072",
            "locale": "en-US",
            "entitlements": [],
            "attachment_size_limit": 26_214_400,
            "context": if a.guild_id.is_some() { 0 } else { 1 },
        });
        match a.guild_id {
            Some(g) => {
                d["guild_id"] = json!(g.to_string());
                d["guild_locale"] = json!("en-US");
                d["authorizing_integration_owners"] = json!({ "0": g.to_string() });
                d["member"] = json!({
                    "user": user, "roles": [], "joined_at": "2024-01-01T00:00:00.000000+00:00",
                    "deaf": false, "mute": false, "flags": 0, "pending": false,
                    "permissions": "3072", "nick": null, "avatar": null,
                });
            }
            None => {
                d["user"] = user;
                d["authorizing_integration_owners"] = json!({ "0": "0" });
            }
        }
        if let Some(m) = raw.message_id.filter(|m| i.message_index.contains_key(m)) {
            d["message"] = self.posted_json(&i, m, false);
        }
        i.issued.insert(
            id,
            Issued {
                token,
                kind: raw.kind,
                actor: raw.actor,
                message_id: raw.message_id,
                at: Instant::now(),
                answered: None,
                original: None,
                deferred_ephemeral: false,
            },
        );
        self.dispatch(&mut i, "INTERACTION_CREATE", d);
        drop(i);
        self.bump();
        id
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

    /// A posted message as Discord shows it: over the gateway (`with_guild`: guild_id and
    /// member) or as REST returns it.
    fn posted_json(&self, i: &Inner, id: u64, with_guild: bool) -> Value {
        let p = &i.posted[i.message_index[&id]];
        let guild = self.guild_of(i, p.channel_id);
        let mut m = self.message_json(
            i,
            id,
            p.channel_id,
            guild.filter(|_| with_guild),
            user_json(self.bot_id, BOT_NAME, true),
            &p.content,
            &p.content,
            reference_json(p.message_reference, p.channel_id, guild),
        );
        m["components"] = json!(p.components);
        if p.ephemeral {
            m["flags"] = json!(EPHEMERAL);
        }
        if p.interaction.is_some() {
            // An interaction's answer is sent by the application's webhook.
            m["webhook_id"] = json!(self.bot_id.to_string());
            m["application_id"] = json!(self.bot_id.to_string());
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

/// A refusal as Discord words it: HTTP status, Discord error code, message.
struct Refused(StatusCode, u32, &'static str);

impl Refused {
    fn response(self) -> Response {
        error(self.0, self.1, self.2)
    }
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
        i.bodies.push(String::from_utf8_lossy(&body).into_owned());
        let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
        // GET /gateway needs no token on Discord; a bad token then fails at IDENTIFY (4004),
        // which serenity reports, instead of sending it to the real gateway. Interaction
        // callbacks and webhooks are authorised by the interaction token in the path instead.
        let by_interaction_token =
            path.starts_with("/api/v10/interactions/") || path.starts_with("/api/v10/webhooks/");
        if path != "/api/v10/gateway" && !by_interaction_token && !token_ok(&i, auth) {
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
        ("POST", ["interactions", _, token, "callback"]) => match id(1) {
            Some(interaction) => callback(s, i, interaction, token, body),
            None => error(StatusCode::NOT_FOUND, 10062, "Unknown interaction"),
        },
        ("POST", ["webhooks", app, token]) => match s.webhook_interaction(i, app, token) {
            Some(interaction) => followup(s, i, interaction, body),
            None => error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
        },
        ("PATCH", ["webhooks", app, token, "messages", "@original"]) => {
            match s.webhook_interaction(i, app, token) {
                Some(interaction) => edit_original(s, i, interaction, body),
                None => error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
            }
        }
        (m @ ("PUT" | "POST" | "GET"), ["applications", app, "commands"]) => {
            commands(s, i, m, app, None, body)
        }
        (m @ ("PUT" | "POST" | "GET"), ["applications", app, "guilds", guild, "commands"]) => {
            match guild.parse::<u64>() {
                Ok(g) => commands(s, i, m, app, Some(g), body),
                Err(_) => error(StatusCode::NOT_FOUND, 10004, "Unknown Guild"),
            }
        }
        _ => not_found(),
    }
}

/// POST /interactions/{id}/{token}/callback: the one answer an interaction gets, within the
/// deadline, of a type its kind allows. 204 on success, as Discord answers it.
fn callback(s: &DiscordState, i: &mut Inner, id: u64, token: &str, body: &[u8]) -> Response {
    let deadline = i.response_deadline;
    let refuse = |i: &mut Inner, status: StatusCode, code: u64, message: &str| {
        i.refused_callbacks.push((id, status.as_u16(), code));
        error(status, code as u32, message)
    };
    let Some(issued) = i.issued.get(&id).filter(|x| x.token == token) else {
        return refuse(i, StatusCode::NOT_FOUND, 10062, "Unknown interaction");
    };
    if deadline.is_some_and(|d| issued.at.elapsed() > d) {
        return refuse(i, StatusCode::NOT_FOUND, 10062, "Unknown interaction");
    }
    if issued.answered.is_some() {
        return refuse(
            i,
            StatusCode::BAD_REQUEST,
            40060,
            "Interaction has already been acknowledged.",
        );
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return refuse(
            i,
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let kind = v["type"].as_u64().unwrap_or(0);
    let on_message = issued.message_id.is_some();
    let allowed = match (issued.kind, kind) {
        (_, 4 | 5) => true,
        // Editing the message a component is on: a click, or a modal opened from one.
        (3, 6 | 7) | (5, 6 | 7) => on_message,
        // A modal answers a command or a click, never a modal.
        (2 | 3, 9) => true,
        _ => false,
    };
    if !allowed {
        return refuse(i, StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    let data = v["data"].clone();
    let checked = match kind {
        4 => check_message_data(&data, true),
        5 => Ok(()),
        7 => check_message_data(&data, false),
        9 => check_modal(&data),
        _ => Ok(()),
    };
    if let Err(refused) = checked {
        i.refused_callbacks
            .push((id, refused.0.as_u16(), u64::from(refused.1)));
        return refused.response();
    }
    let issued = i.issued.get_mut(&id).unwrap();
    issued.answered = Some(kind);
    let actor = issued.actor.clone();
    let on = issued.message_id;
    let ephemeral = data["flags"].as_u64().unwrap_or(0) & EPHEMERAL != 0;
    match kind {
        4 => {
            let m = answer_message(s, i, id, &data, ephemeral);
            i.issued.get_mut(&id).unwrap().original = snowflake(&m["id"]);
        }
        5 => i.issued.get_mut(&id).unwrap().deferred_ephemeral = ephemeral,
        7 => {
            if let Some(m) = on {
                edit_message(i, m, &data);
            }
        }
        9 => {
            let inputs = data["components"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|row| row["components"].get(0))
                .map(|t| {
                    (
                        t["custom_id"].as_str().unwrap_or("").to_string(),
                        t["style"].as_u64().unwrap_or(0),
                        t["label"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect();
            i.modals.insert(
                actor.user_id,
                Modal {
                    custom_id: data["custom_id"].as_str().unwrap_or("").to_string(),
                    title: data["title"].as_str().unwrap_or("").to_string(),
                    inputs,
                    opened_by: id,
                },
            );
        }
        _ => {}
    }
    i.callbacks.push(Callback {
        interaction_id: id,
        kind,
        data,
    });
    StatusCode::NO_CONTENT.into_response()
}

/// A modal as Discord takes it: a title, a custom_id, one to five rows of one text input each.
fn check_modal(data: &Value) -> Result<(), Refused> {
    let invalid = || Refused(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    let len_in = |v: &Value, range: std::ops::RangeInclusive<usize>| {
        v.as_str()
            .is_some_and(|t| range.contains(&t.chars().count()))
    };
    if !len_in(&data["custom_id"], 1..=100) || !len_in(&data["title"], 1..=45) {
        return Err(invalid());
    }
    let rows = data["components"].as_array().cloned().unwrap_or_default();
    if rows.is_empty() || rows.len() > 5 {
        return Err(invalid());
    }
    for row in rows {
        let inputs = row["components"].as_array().cloned().unwrap_or_default();
        let [t] = inputs.as_slice() else {
            return Err(invalid());
        };
        let style_ok = matches!(t["style"].as_u64(), Some(1 | 2));
        if row["type"] != 1
            || t["type"] != 4
            || !style_ok
            || !len_in(&t["custom_id"], 1..=100)
            || !len_in(&t["label"], 1..=45)
        {
            return Err(invalid());
        }
    }
    Ok(())
}

/// Replaces what an edit sends (content, components) on a posted message.
fn edit_message(i: &mut Inner, message: u64, data: &Value) {
    if let Some(&k) = i.message_index.get(&message) {
        let p = &mut i.posted[k];
        if let Some(c) = data["content"].as_str() {
            p.content = c.to_string();
        }
        if let Some(rows) = data["components"].as_array() {
            p.components = rows.clone();
        }
    }
}

impl DiscordState {
    /// The interaction a webhook route names: the bot's application, a token of an answered
    /// interaction (not by a modal) no older than 15 minutes.
    fn webhook_interaction(&self, i: &Inner, app: &str, token: &str) -> Option<u64> {
        if app.parse::<u64>().ok()? != self.bot_id {
            return None;
        }
        i.issued
            .iter()
            .find(|(_, x)| {
                x.token == token
                    && matches!(x.answered, Some(4..=7))
                    && x.at.elapsed() < TOKEN_LIFETIME
            })
            .map(|(id, _)| *id)
    }
}

/// POST /webhooks/{app}/{token}: a followup message, ephemeral with flag 64.
fn followup(s: &DiscordState, i: &mut Inner, interaction: u64, body: &[u8]) -> Response {
    let v = match message_body(body, true) {
        Ok(v) => v,
        Err(refused) => return refused.response(),
    };
    let ephemeral = v["flags"].as_u64().unwrap_or(0) & EPHEMERAL != 0;
    ok(answer_message(s, i, interaction, &v, ephemeral))
}

/// A message answering `interaction` in its channel, seen only by its user if `ephemeral`.
fn answer_message(
    s: &DiscordState,
    i: &mut Inner,
    interaction: u64,
    data: &Value,
    ephemeral: bool,
) -> Value {
    let actor = i.issued[&interaction].actor.clone();
    let new = NewMessage {
        channel: actor.channel_id,
        content: data["content"].as_str().unwrap_or("").to_string(),
        components: components_of(data),
        reply_to: None,
        ephemeral_to: ephemeral.then_some(actor.user_id),
        interaction: Some(interaction),
    };
    create_message(s, i, new)
}

/// PATCH /webhooks/{app}/{token}/messages/@original: fills a deferred answer (its ephemeral
/// flag came with the deferral), or edits the answer or the message a component is on.
fn edit_original(s: &DiscordState, i: &mut Inner, interaction: u64, body: &[u8]) -> Response {
    let v = match message_body(body, false) {
        Ok(v) => v,
        Err(refused) => return refused.response(),
    };
    let issued = &i.issued[&interaction];
    let target = match issued.answered {
        Some(6 | 7) => issued.message_id,
        _ => issued.original,
    };
    match target {
        Some(m) => {
            edit_message(i, m, &v);
            ok(s.posted_json(i, m, false))
        }
        None => {
            // The deferral's "thinking…" becomes this message.
            let ephemeral = issued.deferred_ephemeral;
            let m = answer_message(s, i, interaction, &v, ephemeral);
            i.issued.get_mut(&interaction).unwrap().original = snowflake(&m["id"]);
            ok(m)
        }
    }
}

/// The application command routes: PUT overwrites the set, POST adds (or replaces by name),
/// GET lists. Names and descriptions are checked as Discord checks a chat-input command.
fn commands(
    s: &DiscordState,
    i: &mut Inner,
    method: &str,
    app: &str,
    guild: Option<u64>,
    body: &[u8],
) -> Response {
    if app.parse::<u64>().ok() != Some(s.bot_id) {
        return error(StatusCode::FORBIDDEN, 50001, "Missing Access");
    }
    if method == "GET" {
        let list: Vec<Value> = i
            .commands
            .iter()
            .filter(|(g, _)| *g == guild)
            .map(|(_, c)| c.clone())
            .collect();
        return ok(json!(list));
    }
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return error(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        );
    };
    let new: Vec<Value> = if method == "PUT" {
        match v.as_array() {
            Some(list) => list.clone(),
            None => return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body"),
        }
    } else {
        vec![v]
    };
    if !new.iter().all(command_ok) {
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    }
    if method == "PUT" {
        i.command_puts += 1;
        i.commands.retain(|(g, _)| *g != guild);
    }
    let mut made = Vec::new();
    for c in new {
        i.commands
            .retain(|(g, old)| !(*g == guild && old["name"] == c["name"]));
        i.next_command += 1;
        let mut command = json!({
            "id": i.next_command.to_string(),
            "application_id": s.bot_id.to_string(),
            "version": i.next_command.to_string(),
            "type": c["type"].as_u64().unwrap_or(1),
            "name": c["name"],
            "description": c["description"],
            "options": c["options"].as_array().cloned().unwrap_or_default(),
            "default_member_permissions": null,
            "dm_permission": c["dm_permission"].as_bool().unwrap_or(true),
            "nsfw": false,
            "integration_types": [0],
            "contexts": c["contexts"],
        });
        if let Some(g) = guild {
            command["guild_id"] = json!(g.to_string());
        }
        i.commands.push((guild, command.clone()));
        made.push(command);
    }
    if method == "PUT" {
        ok(json!(made))
    } else {
        (StatusCode::CREATED, axum::Json(made.remove(0))).into_response()
    }
}

/// A chat-input command as Discord accepts it: a lowercase name of 1-32 letters, digits, `-`
/// or `_`, a description of 1-100 characters, options likewise with required ones first.
fn command_ok(c: &Value) -> bool {
    let name_ok = |n: &Value| {
        n.as_str().is_some_and(|n| {
            (1..=32).contains(&n.chars().count())
                && n.chars()
                    .all(|ch| ch == '-' || ch == '_' || ch.is_alphanumeric())
                && n.to_lowercase() == n
        })
    };
    let description_ok = |d: &Value| {
        d.as_str()
            .is_some_and(|d| (1..=100).contains(&d.chars().count()))
    };
    let options = c["options"].as_array().cloned().unwrap_or_default();
    let mut optional_seen = false;
    let options_ok = options.len() <= 25
        && options.iter().all(|o| {
            let required = o["required"].as_bool().unwrap_or(false);
            let order_ok = !(required && optional_seen);
            optional_seen |= !required;
            name_ok(&o["name"])
                && description_ok(&o["description"])
                && matches!(o["type"].as_u64(), Some(1..=11))
                && order_ok
        });
    matches!(c["type"].as_u64(), None | Some(1))
        && name_ok(&c["name"])
        && description_ok(&c["description"])
        && options_ok
}

fn post_message(s: &DiscordState, i: &mut Inner, channel: u64, body: &[u8]) -> Response {
    // serenity sends JSON unless there are attachments (multipart), which the fake lacks.
    let v = match message_body(body, true) {
        Ok(v) => v,
        Err(refused) => return refused.response(),
    };
    // A channel message cannot be ephemeral: Discord drops the flag outside interactions.
    let reply_to = snowflake(&v["message_reference"]["message_id"]);
    let new = NewMessage {
        channel,
        content: v["content"].as_str().unwrap_or("").to_string(),
        components: components_of(&v),
        reply_to,
        ephemeral_to: None,
        interaction: None,
    };
    ok(create_message(s, i, new))
}

/// Parses and checks a message body as Discord does: content within 2000 characters, not empty
/// (unless it has components or embeds, or `allow_empty` for an edit), buttons well formed.
fn message_body(body: &[u8], require_content: bool) -> Result<Value, Refused> {
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            50109,
            "The request body contains invalid JSON.",
        ));
    };
    check_message_data(&v, require_content)?;
    Ok(v)
}

fn check_message_data(v: &Value, require_content: bool) -> Result<(), Refused> {
    let content = v["content"].as_str().unwrap_or("");
    let has_embeds = v["embeds"].as_array().is_some_and(|e| !e.is_empty());
    let has_components = v["components"].as_array().is_some_and(|c| !c.is_empty());
    if require_content && content.is_empty() && !has_embeds && !has_components {
        return Err(Refused(
            StatusCode::BAD_REQUEST,
            50006,
            "Cannot send an empty message",
        ));
    }
    let invalid = || Refused(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    if content.chars().count() > 2000 {
        return Err(invalid());
    }
    let flags = v["flags"].as_u64().unwrap_or(0);
    // SUPPRESS_EMBEDS, EPHEMERAL, SUPPRESS_NOTIFICATIONS are the flags a bot may set.
    if flags & !(4 | EPHEMERAL | 4096) != 0 {
        return Err(invalid());
    }
    let rows = v["components"].as_array().cloned().unwrap_or_default();
    if rows.len() > 5 {
        return Err(invalid());
    }
    let mut ids = HashSet::new();
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if row["type"] != 1 || buttons.is_empty() || buttons.len() > 5 {
            return Err(invalid());
        }
        for b in &buttons {
            let style = b["style"].as_u64().unwrap_or(0);
            let label_ok = b["label"]
                .as_str()
                .is_some_and(|l| (1..=80).contains(&l.chars().count()));
            let well_formed = match style {
                1..=4 => {
                    b["custom_id"].as_str().is_some_and(|c| {
                        (1..=100).contains(&c.chars().count()) && ids.insert(c.to_string())
                    }) && b["url"].is_null()
                }
                5 => b["url"].is_string() && b["custom_id"].is_null(),
                _ => false,
            };
            if b["type"] != 2 || !label_ok || !well_formed {
                return Err(invalid());
            }
        }
    }
    Ok(())
}

fn components_of(v: &Value) -> Vec<Value> {
    v["components"].as_array().cloned().unwrap_or_default()
}

/// A message the bot makes, in a channel or as an interaction's answer.
struct NewMessage {
    channel: u64,
    content: String,
    components: Vec<Value>,
    reply_to: Option<u64>,
    ephemeral_to: Option<u64>,
    interaction: Option<u64>,
}

/// Records a new bot message, echoes it on the gateway as Discord does (never an ephemeral
/// one: nobody else may see it), and returns it as REST answers it.
fn create_message(s: &DiscordState, i: &mut Inner, m: NewMessage) -> Value {
    i.next_message_id += 1;
    let id = i.next_message_id;
    i.own_messages.insert(id);
    i.message_index.insert(id, i.posted.len());
    i.posted.push(Posted {
        id,
        channel_id: m.channel,
        content: m.content.clone(),
        message_reference: m.reply_to,
        ephemeral: m.ephemeral_to.is_some(),
        ephemeral_to: m.ephemeral_to,
        components: m.components.clone(),
        interaction: m.interaction,
    });
    let guild = s.guild_of(i, m.channel);
    let needed = if guild.is_some() {
        GUILD_MESSAGES
    } else {
        DIRECT_MESSAGES
    };
    if i.echo_own_messages && m.ephemeral_to.is_none() && i.intents & needed != 0 {
        let gateway_json = s.posted_json(i, id, true);
        s.dispatch(i, "MESSAGE_CREATE", gateway_json);
    }
    s.posted_json(i, id, false)
}

fn reference_json(reply_to: Option<u64>, channel: u64, guild: Option<u64>) -> Option<Value> {
    reply_to.map(|r| {
        let mut r = json!({ "type": 0, "channel_id": channel.to_string(),
                            "message_id": r.to_string() });
        if let Some(g) = guild {
            r["guild_id"] = json!(g.to_string());
        }
        r
    })
}
