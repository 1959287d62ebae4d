//! A fake Slack on 127.0.0.1 for integration tests of deputy's Slack adapter: the few Web API
//! methods the adapter calls (`apps.connections.open`, `auth.test`, `chat.postMessage`,
//! `chat.postEphemeral`, `conversations.open`, `views.open`) and the Socket Mode websocket that
//! `apps.connections.open` points at. Tests push `events_api` envelopes (an `app_mention`, a
//! direct message), `slash_commands` envelopes and `interactive` envelopes (`block_actions`,
//! `view_submission`) down the socket, then look at what the bot acked, posted and opened.
//!
//! Like Slack, the fake hands out a `trigger_id` with each slash command and click, and
//! `views.open` accepts it once, within 3 s, for the user it was given to.
//!
//! The fake speaks Slack's wire format, not slack-morphism's: it does not use the client's
//! models, so a shape the client cannot parse shows up as a failed test, not as a fake that
//! agrees with the client by construction. Payloads are modelled on what Slack really sends
//! (including the `rich_text` blocks), because slack-morphism turns an event it cannot parse
//! into `SlackEventCallbackBody::Unknown` and still acks the envelope.
//!
//! slack-morphism builds method URLs as `format!("{api_url}/{method}")`, so `api_url` has no
//! trailing slash. A request to any other path (a doubled slash, say) gets a 404 and shows up in
//! `api_calls()` as `"404 <path>"`, so a wrong base URL fails loudly.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::{Json, Router};
use serde_json::{json, Map, Value};
use tokio::sync::{mpsc, watch};

pub const APP_TOKEN: &str = "xapp-1-test";
pub const BOT_TOKEN: &str = "xoxb-test";
pub const BOT_USER: &str = "U0BOT";
pub const BOT_ID: &str = "B0BOT";
pub const APP_ID: &str = "A0APP";
/// The workspace `auth.test` reports; events carry whatever team the test gives them.
pub const TEAM_ID: &str = "T0TEAM";

/// Slack's documented limit for a message's `text`; the fake answers `msg_too_long` above it.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// How long any `wait_*` waits before failing the test.
const WAIT: Duration = Duration::from_secs(30);

/// An `app_mention` to send. Fields go out verbatim: `text` should contain `<@U0BOT>` as
/// Slack's would, and `ts` should look like `"1700000000.000100"`.
#[derive(Clone, Debug, Default)]
pub struct Mention {
    pub team: String,
    pub channel: String,
    pub user: String,
    pub text: String,
    pub ts: String,
    /// Set when the mention is a reply inside a thread.
    pub thread_ts: Option<String>,
    pub event_id: String,
}

/// A `message` event in the bot's IM channel (`channel_type: "im"`).
#[derive(Clone, Debug, Default)]
pub struct DirectMessage {
    pub team: String,
    /// An IM channel id, `D...`.
    pub channel: String,
    pub user: String,
    pub text: String,
    pub ts: String,
    pub event_id: String,
}

/// A message the bot posted successfully.
#[derive(Clone, Debug)]
pub struct Posted {
    /// `"chat.postMessage"` or `"chat.postEphemeral"`.
    pub method: String,
    pub channel: String,
    /// The user an ephemeral message was shown to.
    pub user: Option<String>,
    /// Empty when the message had only blocks.
    pub text: String,
    pub thread_ts: Option<String>,
    /// slack-morphism's request models have no `mrkdwn` field, so through it this is `None`.
    pub mrkdwn: Option<bool>,
    /// The bearer token the call carried.
    pub token: String,
    /// The Block Kit blocks, as sent.
    pub blocks: Option<Value>,
}

impl Posted {
    /// `(action_id, label, style)` of every button in the message's blocks.
    pub fn buttons(&self) -> Vec<(String, String, Option<String>)> {
        let mut out = Vec::new();
        for block in self
            .blocks
            .iter()
            .flat_map(|b| b.as_array().into_iter().flatten())
        {
            for e in block["elements"].as_array().into_iter().flatten() {
                if e["type"] == "button" {
                    out.push((
                        e["action_id"].as_str().unwrap_or("").to_string(),
                        e["text"]["text"].as_str().unwrap_or("").to_string(),
                        e["style"].as_str().map(str::to_string),
                    ));
                }
            }
        }
        out
    }

    /// The URL of every link button.
    pub fn button_urls(&self) -> Vec<String> {
        let mut out = Vec::new();
        for block in self
            .blocks
            .iter()
            .flat_map(|b| b.as_array().into_iter().flatten())
        {
            for e in block["elements"].as_array().into_iter().flatten() {
                if let Some(url) = e["url"].as_str() {
                    out.push(url.to_string());
                }
            }
        }
        out
    }
}

/// A modal the bot opened with `views.open`.
#[derive(Clone, Debug)]
pub struct OpenedView {
    pub id: String,
    /// The user whose trigger opened it (the only one who can submit it).
    pub user: String,
    pub team: String,
    pub callback_id: String,
    pub private_metadata: String,
    /// The whole view as the bot sent it.
    pub view: Value,
}

/// A trigger the fake handed out, as Slack does with each slash command and click.
struct Trigger {
    user: String,
    team: String,
    issued: Instant,
    used: bool,
}

pub struct FakeSlack {
    /// `http://127.0.0.1:P/api`, for `SlackClientHyperConnector::with_slack_api_url`.
    pub api_url: String,
    pub state: Arc<SlackState>,
}

impl FakeSlack {
    pub async fn start() -> FakeSlack {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (changed, _) = watch::channel(0);
        let state = Arc::new(SlackState {
            addr,
            inner: Mutex::new(Inner::default()),
            changed,
        });
        let app = Router::new()
            .route("/api/{method}", any(web_api))
            .route("/link/", get(link))
            .fallback(not_found)
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        FakeSlack {
            api_url: format!("http://{addr}/api"),
            state,
        }
    }
}

pub struct SlackState {
    addr: SocketAddr,
    inner: Mutex<Inner>,
    /// Bumped after every change to `inner`, so waiters re-check without polling.
    changed: watch::Sender<u64>,
}

#[derive(Default)]
struct Inner {
    api_calls: Vec<String>,
    posted: Vec<Posted>,
    acks: Vec<String>,
    sent_at: HashMap<String, Instant>,
    acked_at: HashMap<String, Instant>,
    /// How often each event_id went out, for Slack's retry fields.
    event_sends: HashMap<String, u32>,
    /// Tickets handed out by `apps.connections.open`, each good for one websocket.
    tickets: Vec<String>,
    /// Open sockets that have had their hello, oldest first; events go to the newest.
    sockets: Vec<(u64, mpsc::UnboundedSender<String>)>,
    /// Events go to this socket instead, while set.
    target: Option<usize>,
    pings: usize,
    /// Frames from the client that were not acks.
    bad_frames: Vec<String>,
    /// Errors to answer instead of the next calls to a method (see `fail_next`).
    failures: HashMap<String, VecDeque<String>>,
    counter: u64,
    triggers: HashMap<String, Trigger>,
    views: Vec<OpenedView>,
    /// The payload of each ack that carried one (slash commands, interactions).
    ack_payloads: HashMap<String, Value>,
    /// Every request body the Web API received, verbatim, to search for secrets.
    bodies: Vec<String>,
}

impl Inner {
    fn next(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// A message timestamp for something the bot posts, unique within the run.
    fn next_ts(&mut self) -> String {
        let n = self.next();
        format!("{}.{n:06}", unix_now())
    }
}

impl SlackState {
    fn update<T>(&self, f: impl FnOnce(&mut Inner) -> T) -> T {
        let out = f(&mut self.inner.lock().unwrap());
        self.changed.send_modify(|v| *v += 1);
        out
    }

    /// Waits until `check` finds what it looks for, failing the test after 30 s.
    async fn wait_for<T>(&self, what: &str, check: impl Fn(&Inner) -> Option<T>) -> T {
        // Subscribing before the first check means a change between the check and the
        // `changed()` below still wakes us.
        let mut rx = self.changed.subscribe();
        let found = tokio::time::timeout(WAIT, async {
            loop {
                let found = check(&self.inner.lock().unwrap());
                if let Some(v) = found {
                    return v;
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        found.unwrap_or_else(|_| {
            let inner = self.inner.lock().unwrap();
            panic!(
                "fake Slack: no {what} after {WAIT:?}; api calls: {:?}; acks: {:?}; \
                 posted: {:?}; frames that were no ack: {:?}",
                inner.api_calls, inner.acks, inner.posted, inner.bad_frames
            )
        })
    }

    /// Resolves once a Socket Mode connection is open and has been sent its `hello`.
    pub async fn wait_connected(&self) {
        self.wait_for("Socket Mode connection", |i| {
            (!i.sockets.is_empty()).then_some(())
        })
        .await
    }

    /// Resolves once `n` Socket Mode connections are open (several replicas).
    pub async fn wait_connections(&self, n: usize) {
        self.wait_for(&format!("{n} Socket Mode connections"), |i| {
            (i.sockets.len() >= n).then_some(())
        })
        .await
    }

    /// Sends the same `app_mention` event to every open connection, each in an envelope of
    /// its own, as Slack may when several connections are open; returns the envelope ids.
    pub async fn send_mention_to_all(&self, m: Mention) -> Vec<String> {
        let n = self.inner.lock().unwrap().sockets.len();
        let mut ids = Vec::new();
        for socket in 0..n {
            self.update(|i| i.target = Some(socket));
            ids.push(self.send_mention(m.clone()).await);
        }
        self.update(|i| i.target = None);
        ids
    }

    /// Sends an `events_api` envelope with an `app_mention`; returns its envelope id.
    /// Sending an `event_id` again marks the envelope as Slack's retry of it.
    pub async fn send_mention(&self, m: Mention) -> String {
        let mut event = json!({
            "client_msg_id": client_msg_id(&m.event_id),
            "type": "app_mention",
            "text": m.text,
            "user": m.user,
            "ts": m.ts,
            "blocks": rich_text_blocks(&m.text),
            "team": m.team,
            "channel": m.channel,
            "event_ts": m.ts,
        });
        if let Some(thread_ts) = &m.thread_ts {
            event["thread_ts"] = json!(thread_ts);
        }
        self.send_event(&m.team, &m.event_id, &m.ts, event).await
    }

    /// Sends an `events_api` envelope with a `message` in an IM; returns its envelope id.
    pub async fn send_dm(&self, m: DirectMessage) -> String {
        let event = json!({
            "client_msg_id": client_msg_id(&m.event_id),
            "type": "message",
            "text": m.text,
            "user": m.user,
            "ts": m.ts,
            "blocks": rich_text_blocks(&m.text),
            "team": m.team,
            "channel": m.channel,
            "event_ts": m.ts,
            "channel_type": "im",
        });
        self.send_event(&m.team, &m.event_id, &m.ts, event).await
    }

    /// Sends a `slash_commands` envelope (`/deputy <text>`) with a fresh trigger; returns the
    /// envelope id.
    pub async fn send_slash_command(
        &self,
        team: &str,
        channel: &str,
        user: &str,
        text: &str,
    ) -> String {
        let trigger = self.issue_trigger(team, user);
        let payload = json!({
            "token": "fake-verification-token",
            "team_id": team,
            "team_domain": "deputy-test",
            "channel_id": channel,
            "channel_name": if channel.starts_with('D') { "directmessage" } else { "general" },
            "user_id": user,
            "user_name": user.to_lowercase(),
            "command": "/deputy",
            "text": text,
            "api_app_id": APP_ID,
            "is_enterprise_install": "false",
            "response_url": format!("https://hooks.slack.com/commands/{team}/1/fake"),
            "trigger_id": trigger,
        });
        self.send_envelope("slash_commands", payload, true).await
    }

    /// Sends an `interactive` `block_actions` envelope: `user` clicked the button
    /// `action_id` on a message in `channel` (an ephemeral one when `ephemeral`).
    pub async fn click(
        &self,
        team: &str,
        channel: &str,
        user: &str,
        action_id: &str,
        ephemeral: bool,
    ) -> String {
        let trigger = self.issue_trigger(team, user);
        let ts = self.update(|i| i.next_ts());
        let mut payload = json!({
            "type": "block_actions",
            "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": team },
            "api_app_id": APP_ID,
            "token": "fake-verification-token",
            "container": {
                "type": "message",
                "message_ts": ts,
                "channel_id": channel,
                "is_ephemeral": ephemeral,
            },
            "trigger_id": trigger,
            "team": { "id": team, "domain": "deputy-test" },
            "enterprise": null,
            "is_enterprise_install": false,
            "channel": { "id": channel, "name": "general" },
            "state": { "values": {} },
            "response_url": format!("https://hooks.slack.com/actions/{team}/1/fake"),
            "actions": [{
                "action_id": action_id,
                "block_id": "b1",
                "text": { "type": "plain_text", "text": "button", "emoji": true },
                "type": "button",
                "action_ts": ts,
            }],
        });
        // Slack leaves the message out for ephemeral messages.
        if !ephemeral {
            payload["message"] = json!({
                "type": "message", "user": BOT_USER, "bot_id": BOT_ID, "text": "…", "ts": ts,
            });
        }
        self.send_envelope("interactive", payload, false).await
    }

    /// The same click sent to every open connection, as a redelivery may reach several
    /// replicas; returns the envelope ids.
    pub async fn click_on_all(
        &self,
        team: &str,
        channel: &str,
        user: &str,
        action_id: &str,
    ) -> Vec<String> {
        let n = self.inner.lock().unwrap().sockets.len();
        let mut ids = Vec::new();
        for socket in 0..n {
            self.update(|i| i.target = Some(socket));
            ids.push(self.click(team, channel, user, action_id, true).await);
        }
        self.update(|i| i.target = None);
        ids
    }

    /// `user` submits the modal `view_id` with `value` in its one text input: a
    /// `view_submission` envelope built from the view as the bot opened it.
    pub async fn submit_view(&self, view_id: &str, user: &str, value: &str) -> String {
        let view = self
            .views()
            .into_iter()
            .find(|v| v.id == view_id)
            .expect("a view the bot opened");
        self.submit_view_as(&view, user, value).await
    }

    /// A `view_submission` of `view` (which may be altered, or never opened) by `user`.
    pub async fn submit_view_as(&self, view: &OpenedView, user: &str, value: &str) -> String {
        let mut values = Map::new();
        for block in view.view["blocks"].as_array().into_iter().flatten() {
            if block["type"] == "input" {
                let element = &block["element"];
                values.insert(
                    block["block_id"].as_str().unwrap_or("b0").to_string(),
                    json!({ element["action_id"].as_str().unwrap_or("a0"): {
                        "type": element["type"], "value": value,
                    }}),
                );
            }
        }
        let mut full = view.view.clone();
        full["id"] = json!(view.id);
        full["team_id"] = json!(view.team);
        full["state"] = json!({ "values": values });
        full["hash"] = json!("1700000000.fakehash");
        full["callback_id"] = json!(view.callback_id);
        full["private_metadata"] = json!(view.private_metadata);
        full["app_id"] = json!(APP_ID);
        full["bot_id"] = json!(BOT_ID);
        full["root_view_id"] = json!(view.id);
        full["previous_view_id"] = Value::Null;
        let payload = json!({
            "type": "view_submission",
            "team": { "id": view.team, "domain": "deputy-test" },
            "user": { "id": user, "username": user.to_lowercase(), "name": user.to_lowercase(), "team_id": view.team },
            "api_app_id": APP_ID,
            "token": "fake-verification-token",
            "trigger_id": self.issue_trigger(&view.team, user),
            "view": full,
            "response_urls": [],
            "is_enterprise_install": false,
            "enterprise": null,
        });
        self.send_envelope("interactive", payload, true).await
    }

    /// Modals the bot opened, in order.
    pub fn views(&self) -> Vec<OpenedView> {
        self.inner.lock().unwrap().views.clone()
    }

    /// Resolves once at least `n` modals were opened; returns them all.
    pub async fn wait_views(&self, n: usize) -> Vec<OpenedView> {
        self.wait_for(&format!("{n} opened views"), |i| {
            (i.views.len() >= n).then(|| i.views.clone())
        })
        .await
    }

    /// The payload the bot acked `envelope_id` with, if any.
    pub fn ack_payload(&self, envelope_id: &str) -> Option<Value> {
        self.inner
            .lock()
            .unwrap()
            .ack_payloads
            .get(envelope_id)
            .cloned()
    }

    /// Every Web API request body received so far, verbatim.
    pub fn bodies(&self) -> Vec<String> {
        self.inner.lock().unwrap().bodies.clone()
    }

    fn issue_trigger(&self, team: &str, user: &str) -> String {
        self.update(|i| {
            let n = i.next();
            let trigger = format!("{n}.1700000000.fa4e{n:08x}");
            i.triggers.insert(
                trigger.clone(),
                Trigger {
                    user: user.to_string(),
                    team: team.to_string(),
                    issued: Instant::now(),
                    used: false,
                },
            );
            trigger
        })
    }

    async fn send_envelope(&self, kind: &str, payload: Value, accepts_payload: bool) -> String {
        self.wait_connected().await;
        self.update(|i| {
            let n = i.next();
            let envelope_id = format!("e0a1b2c3-0000-4000-8000-{n:012}");
            let envelope = json!({
                "envelope_id": envelope_id,
                "payload": payload,
                "type": kind,
                "accepts_response_payload": accepts_payload,
            });
            let (_, socket) = match i.target {
                Some(t) => &i.sockets[t],
                None => i.sockets.last().expect("connected above"),
            };
            let _ = socket.send(envelope.to_string());
            i.sent_at.insert(envelope_id.clone(), Instant::now());
            envelope_id
        })
    }

    async fn send_event(&self, team: &str, event_id: &str, ts: &str, event: Value) -> String {
        self.wait_connected().await;
        // Slack's event_time is whole seconds; take it from the message ts like Slack does.
        let event_time = ts
            .split('.')
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or_else(unix_now);
        self.update(|i| {
            let n = i.next();
            let envelope_id = format!("e0a1b2c3-0000-4000-8000-{n:012}");
            let attempt = i.event_sends.entry(event_id.to_string()).or_insert(0);
            let (retry_attempt, retry_reason) = match *attempt {
                0 => (0, ""),
                n => (n, "timeout"),
            };
            *attempt += 1;
            let envelope = json!({
                "envelope_id": envelope_id,
                "payload": {
                    "token": "fake-verification-token",
                    "team_id": team,
                    "context_team_id": team,
                    "context_enterprise_id": null,
                    "api_app_id": APP_ID,
                    "event": event,
                    "type": "event_callback",
                    "event_id": event_id,
                    "event_time": event_time,
                    "authorizations": [{
                        "enterprise_id": null,
                        "team_id": team,
                        "user_id": BOT_USER,
                        "is_bot": true,
                        "is_enterprise_install": false,
                    }],
                    "is_ext_shared_channel": false,
                    "event_context": format!("4-fake-{event_id}"),
                },
                "type": "events_api",
                "accepts_response_payload": false,
                "retry_attempt": retry_attempt,
                "retry_reason": retry_reason,
            });
            let (_, socket) = match i.target {
                Some(t) => &i.sockets[t],
                None => i.sockets.last().expect("connected above"),
            };
            // A closed socket is noticed by its task, which removes it; the envelope is
            // lost as it would be on a dropped connection.
            let _ = socket.send(envelope.to_string());
            i.sent_at.insert(envelope_id.clone(), Instant::now());
            envelope_id
        })
    }

    /// Resolves when `envelope_id` has been acked; returns how long after sending it the
    /// ack came.
    pub async fn wait_acked(&self, envelope_id: &str) -> Duration {
        self.wait_for(&format!("ack of {envelope_id}"), |i| {
            let acked = i.acked_at.get(envelope_id)?;
            let sent = i
                .sent_at
                .get(envelope_id)
                .expect("the fake sent this envelope");
            Some(acked.duration_since(*sent))
        })
        .await
    }

    /// Envelope ids acked so far, in order, repeats included.
    pub fn acks(&self) -> Vec<String> {
        self.inner.lock().unwrap().acks.clone()
    }

    pub fn posted(&self) -> Vec<Posted> {
        self.inner.lock().unwrap().posted.clone()
    }

    /// Resolves once at least `n` messages were posted; returns them all.
    pub async fn wait_posted(&self, n: usize) -> Vec<Posted> {
        self.wait_for(&format!("{n} posted messages"), |i| {
            (i.posted.len() >= n).then(|| i.posted.clone())
        })
        .await
    }

    /// Every Web API method called, in order, failed calls included.
    pub fn api_calls(&self) -> Vec<String> {
        self.inner.lock().unwrap().api_calls.clone()
    }

    /// Resolves once the client has sent at least `n` websocket pings. The fake answers
    /// them with pongs (axum does); a client that saw no pongs would reconnect instead.
    pub async fn wait_pings(&self, n: usize) {
        self.wait_for(&format!("{n} pings"), |i| (i.pings >= n).then_some(()))
            .await
    }

    /// Makes the next call to `method` fail with `error` (queued per method). `"ratelimited"`
    /// answers HTTP 429 with `Retry-After: 1`, as Slack does.
    pub fn fail_next(&self, method: &str, error: &str) {
        self.update(|i| {
            i.failures
                .entry(method.to_string())
                .or_default()
                .push_back(error.to_string())
        });
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn client_msg_id(event_id: &str) -> String {
    let digits: String = event_id.bytes().map(|b| format!("{b:02x}")).collect();
    let tail = format!("{digits:0>12}");
    format!("c11e0000-0000-4000-8000-{}", &tail[tail.len() - 12..])
}

/// The `rich_text` block Slack attaches to a user's message, with `<@U…>` mentions as
/// `user` elements and everything else as `text`.
fn rich_text_blocks(text: &str) -> Value {
    let mut elements = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("<@") {
        let Some(len) = rest[start..].find('>') else {
            break;
        };
        if start > 0 {
            elements.push(json!({ "type": "text", "text": &rest[..start] }));
        }
        let user = &rest[start + 2..start + len];
        let user = user.split('|').next().unwrap_or(user);
        elements.push(json!({ "type": "user", "user_id": user }));
        rest = &rest[start + len + 1..];
    }
    if !rest.is_empty() {
        elements.push(json!({ "type": "text", "text": rest }));
    }
    json!([{
        "type": "rich_text",
        "block_id": "fAkE1",
        "elements": [{ "type": "rich_text_section", "elements": elements }],
    }])
}

fn slack_error(error: &str) -> Response {
    Json(json!({ "ok": false, "error": error })).into_response()
}

async fn not_found(State(s): State<Arc<SlackState>>, uri: Uri) -> Response {
    s.update(|i| i.api_calls.push(format!("404 {}", uri.path())));
    (StatusCode::NOT_FOUND, "not found").into_response()
}

/// Query, form and JSON parameters merged into one object, as Slack accepts all three.
fn params(headers: &HeaderMap, query: Option<String>, body: &Bytes) -> Map<String, Value> {
    let mut out = Map::new();
    let mut add_form = |raw: &[u8]| {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(raw).unwrap_or_default();
        for (k, v) in pairs {
            out.insert(k, Value::String(v));
        }
    };
    add_form(query.unwrap_or_default().as_bytes());
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.starts_with("application/json") {
        if let Ok(Value::Object(body)) = serde_json::from_slice(body) {
            out.extend(body);
        }
    } else {
        add_form(body);
    }
    out
}

/// A string parameter; JSON bodies may carry numbers or booleans where forms carry text.
fn str_param(p: &Map<String, Value>, key: &str) -> Option<String> {
    match p.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

fn bool_param(p: &Map<String, Value>, key: &str) -> Option<bool> {
    match p.get(key)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

async fn web_api(
    State(s): State<Arc<SlackState>>,
    Path(method): Path<String>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    s.update(|i| i.bodies.push(String::from_utf8_lossy(&body).into_owned()));
    let p = params(&headers, query, &body);
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_string)
        .or_else(|| str_param(&p, "token"));
    let failure = s.update(|i| {
        i.api_calls.push(method.clone());
        i.failures.get_mut(&method).and_then(VecDeque::pop_front)
    });

    let wanted = match method.as_str() {
        "apps.connections.open" => APP_TOKEN,
        "auth.test" | "chat.postMessage" | "chat.postEphemeral" | "conversations.open"
        | "views.open" => BOT_TOKEN,
        _ => return slack_error("unknown_method"),
    };
    let Some(token) = token else {
        return slack_error("not_authed");
    };
    if token != wanted {
        return slack_error("invalid_auth");
    }
    match failure.as_deref() {
        Some("ratelimited") => {
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, "1")],
                Json(json!({ "ok": false, "error": "ratelimited" })),
            )
                .into_response()
        }
        Some(error) => return slack_error(error),
        None => {}
    }

    match method.as_str() {
        "apps.connections.open" => {
            let ticket = s.update(|i| {
                let ticket = format!("ticket-{}", i.next());
                i.tickets.push(ticket.clone());
                ticket
            });
            Json(json!({
                "ok": true,
                "url": format!("ws://{}/link/?ticket={ticket}&app_id={APP_ID}", s.addr),
            }))
            .into_response()
        }
        "auth.test" => Json(json!({
            "ok": true,
            "url": "https://deputy-test.slack.com/",
            "team": "Deputy Test",
            "user": "deputy",
            "team_id": TEAM_ID,
            "user_id": BOT_USER,
            "bot_id": BOT_ID,
            "is_enterprise_install": false,
        }))
        .into_response(),
        "chat.postMessage" | "chat.postEphemeral" => post(&s, &method, &p, token),
        "conversations.open" => conversations_open(&p),
        "views.open" => views_open(&s, &p),
        _ => unreachable!("methods are checked above"),
    }
}

fn post(s: &SlackState, method: &str, p: &Map<String, Value>, token: String) -> Response {
    let Some(channel) = str_param(p, "channel") else {
        return slack_error("channel_not_found");
    };
    let ephemeral = method == "chat.postEphemeral";
    let user = str_param(p, "user");
    if ephemeral && user.is_none() {
        return slack_error("user_not_in_channel");
    }
    let text = str_param(p, "text");
    let has_blocks = ["blocks", "attachments", "markdown_text"]
        .iter()
        .any(|k| p.get(*k).is_some_and(|v| !v.is_null()));
    if text.as_deref().unwrap_or("").is_empty() && !has_blocks {
        return slack_error("no_text");
    }
    let text = text.unwrap_or_default();
    if text.chars().count() > MAX_TEXT_CHARS {
        return slack_error("msg_too_long");
    }
    let thread_ts = str_param(p, "thread_ts");
    let blocks = match p.get("blocks") {
        // A form body carries blocks as a JSON string.
        Some(Value::String(b)) => serde_json::from_str(b).ok(),
        Some(Value::Null) | None => None,
        Some(b) => Some(b.clone()),
    };
    if let Some(blocks) = &blocks {
        if let Err(e) = check_blocks(blocks, false) {
            return slack_error(&format!("invalid_blocks: {e}"));
        }
    }
    let ts = s.update(|i| {
        i.posted.push(Posted {
            method: method.to_string(),
            channel: channel.clone(),
            user,
            text: text.clone(),
            thread_ts: thread_ts.clone(),
            mrkdwn: bool_param(p, "mrkdwn"),
            token,
            blocks,
        });
        i.next_ts()
    });
    if ephemeral {
        return Json(json!({ "ok": true, "message_ts": ts })).into_response();
    }
    // Posting to a user id lands in the bot's DM with them, which is what Slack reports.
    let channel = match channel.strip_prefix('U') {
        Some(_) => format!("D{channel}"),
        None => channel,
    };
    let mut message = json!({
        "type": "message",
        "user": BOT_USER,
        "bot_id": BOT_ID,
        "app_id": APP_ID,
        "text": text,
        "ts": ts,
        "team": TEAM_ID,
    });
    if let Some(thread_ts) = thread_ts {
        message["thread_ts"] = json!(thread_ts);
    }
    Json(json!({ "ok": true, "channel": channel, "ts": ts, "message": message })).into_response()
}

/// Checks blocks as Slack's Block Kit validation would for what deputy sends: known types,
/// section text within 3,000 characters, buttons with a label of at most 75 characters and
/// an `action_id` of at most 255, styles `primary` or `danger`, `input` blocks only in modals.
fn check_blocks(blocks: &Value, modal: bool) -> Result<(), String> {
    let blocks = blocks.as_array().ok_or("blocks is not an array")?;
    if blocks.is_empty() || blocks.len() > 50 {
        return Err("a message or view has 1 to 50 blocks".into());
    }
    for b in blocks {
        match b["type"].as_str() {
            Some("section") => {
                let text = b["text"]["text"].as_str().ok_or("section without text")?;
                if text.is_empty() || text.chars().count() > 3000 {
                    return Err("section text must be 1 to 3000 characters".into());
                }
            }
            Some("actions") => {
                let elements = b["elements"].as_array().ok_or("actions without elements")?;
                if elements.is_empty() || elements.len() > 25 {
                    return Err("actions holds 1 to 25 elements".into());
                }
                for e in elements {
                    if e["type"] != "button" || e["text"]["type"] != "plain_text" {
                        return Err(format!("unexpected element {e}"));
                    }
                    let label = e["text"]["text"].as_str().unwrap_or("");
                    let action = e["action_id"].as_str().unwrap_or("");
                    if label.is_empty() || label.chars().count() > 75 || action.len() > 255 {
                        return Err(format!("bad button {e}"));
                    }
                    if let Some(style) = e.get("style").and_then(Value::as_str) {
                        if style != "primary" && style != "danger" {
                            return Err(format!("bad button style {style}"));
                        }
                    }
                }
            }
            Some("context") => {}
            Some("input") if modal => {
                if b["label"]["type"] != "plain_text" || b["element"]["type"].as_str().is_none() {
                    return Err(format!("bad input block {b}"));
                }
            }
            other => return Err(format!("block type {other:?} not allowed here")),
        }
    }
    Ok(())
}

/// `views.open`: a modal opened with a trigger the fake handed out within 3 s and not used
/// before, as Slack allows.
fn views_open(s: &SlackState, p: &Map<String, Value>) -> Response {
    let Some(trigger) = str_param(p, "trigger_id") else {
        return slack_error("invalid_arguments");
    };
    let view: Value = match p.get("view") {
        Some(Value::String(v)) => serde_json::from_str(v).unwrap_or(Value::Null),
        Some(v) => v.clone(),
        None => Value::Null,
    };
    if view["type"] != "modal" {
        return slack_error("invalid_arguments");
    }
    let title = view["title"]["text"].as_str().unwrap_or("");
    if view["title"]["type"] != "plain_text" || title.is_empty() || title.chars().count() > 24 {
        return slack_error("invalid_arguments");
    }
    if let Err(e) = check_blocks(&view["blocks"], true) {
        return slack_error(&format!("invalid_arguments: {e}"));
    }
    let callback_id = view["callback_id"].as_str().unwrap_or("").to_string();
    let private_metadata = view["private_metadata"].as_str().unwrap_or("").to_string();
    if callback_id.len() > 255 || private_metadata.len() > 3000 {
        return slack_error("invalid_arguments");
    }
    let opened = s.update(|i| {
        let t = i.triggers.get_mut(&trigger)?;
        if t.used || t.issued.elapsed() > Duration::from_secs(3) {
            return None;
        }
        t.used = true;
        let (user, team) = (t.user.clone(), t.team.clone());
        let id = format!("V{:010}", i.next());
        let opened = OpenedView {
            id,
            user,
            team,
            callback_id,
            private_metadata,
            view: view.clone(),
        };
        i.views.push(opened.clone());
        Some(opened)
    });
    let Some(opened) = opened else {
        return slack_error("expired_trigger_id");
    };
    let mut answer = view;
    answer["id"] = json!(opened.id);
    answer["team_id"] = json!(opened.team);
    answer["state"] = json!({ "values": {} });
    answer["hash"] = json!("1700000000.fakehash");
    answer["app_id"] = json!(APP_ID);
    answer["bot_id"] = json!(BOT_ID);
    answer["root_view_id"] = json!(opened.id);
    answer["previous_view_id"] = Value::Null;
    Json(json!({ "ok": true, "view": answer })).into_response()
}

fn conversations_open(p: &Map<String, Value>) -> Response {
    // slack-morphism sends `users` as a JSON array; Slack documents a comma-separated string.
    let users: Vec<String> = match p.get("users") {
        Some(Value::Array(users)) => users
            .iter()
            .filter_map(|u| u.as_str().map(str::to_string))
            .collect(),
        Some(Value::String(users)) => users
            .split(',')
            .filter(|u| !u.is_empty())
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    };
    let id = match (users.as_slice(), str_param(p, "channel")) {
        ([], Some(channel)) => channel,
        ([], None) => return slack_error("users_list_not_supplied"),
        ([user], _) => format!("D{user}"),
        (many, _) => format!("G{}", many.join("")),
    };
    Json(json!({
        "ok": true,
        "no_op": false,
        "already_open": false,
        "channel": { "id": id },
    }))
    .into_response()
}

async fn link(
    State(s): State<Arc<SlackState>>,
    Query(q): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    let valid = s.update(|i| {
        let ticket = q.get("ticket")?;
        let at = i.tickets.iter().position(|t| t == ticket)?;
        Some(i.tickets.remove(at))
    });
    if valid.is_none() {
        return (StatusCode::UNAUTHORIZED, "invalid ticket").into_response();
    }
    ws.on_upgrade(move |socket| serve_socket(s, socket))
}

async fn serve_socket(s: Arc<SlackState>, mut socket: WebSocket) {
    let num_connections = s.inner.lock().unwrap().sockets.len() + 1;
    let hello = json!({
        "type": "hello",
        "num_connections": num_connections,
        "debug_info": {
            "host": "applink-fake",
            "build_number": 1,
            "approximate_connection_time": 18060,
        },
        "connection_info": { "app_id": APP_ID },
    });
    if socket
        .send(Message::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    let (tx, mut rx) = mpsc::unbounded_channel();
    let id = s.update(|i| {
        let id = i.next();
        i.sockets.push((id, tx));
        id
    });
    loop {
        tokio::select! {
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => record_ack(&s, text.as_str()),
                // tungstenite queues the pong itself; it goes out on the next recv.
                Some(Ok(Message::Ping(_))) => s.update(|i| i.pings += 1),
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            outgoing = rx.recv() => {
                let Some(text) = outgoing else { break };
                if socket.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        }
    }
    s.update(|i| i.sockets.retain(|(sid, _)| *sid != id));
}

/// Socket Mode acks are `{"envelope_id": "..."}`, with a `payload` for commands and
/// interactions.
/// Anything else is kept for the diagnostics of a failed wait: a panic here would only end
/// this socket's task, not the test.
fn record_ack(s: &SlackState, text: &str) {
    let frame = serde_json::from_str::<Value>(text).ok();
    let envelope_id = frame
        .as_ref()
        .and_then(|v| v.get("envelope_id")?.as_str().map(str::to_string));
    let payload = frame.and_then(|mut v| v.get_mut("payload").map(Value::take));
    s.update(|i| match envelope_id {
        Some(envelope_id) => {
            if let Some(payload) = payload {
                i.ack_payloads.insert(envelope_id.clone(), payload);
            }
            i.acked_at
                .entry(envelope_id.clone())
                .or_insert_with(Instant::now);
            i.acks.push(envelope_id);
        }
        None => i.bad_frames.push(text.to_string()),
    });
}
