//! The Slack adapter over Socket Mode (slack-morphism): no public URL needed. Events are
//! acknowledged at once (the work is queued, not awaited, since slack-morphism acks when the
//! callback returns and Slack redelivers after 3 s); a redelivered event is handled once.
//! A Slack user id belongs to one workspace, so identities are keyed by team id.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use slack_morphism::prelude::*;

use super::{split::split, Adapter, Deleted, Message, Reply, Runner, Visibility};

pub const ADAPTER: &str = "slack";
/// Slack truncates `text` past 40,000 characters and recommends far less; stay readable.
pub const MAX_MESSAGE: usize = 3900;
/// How many recent event ids are remembered to drop Slack's redeliveries.
const SEEN_EVENTS: usize = 2048;

/// What the event callback needs (slack-morphism callbacks are plain functions, so this
/// travels in its user-state map).
/// How long an event id is remembered across replicas (Slack retries within minutes).
const SEEN_EVENT_SECS: u64 = 3600;

struct Shared<H: Send + Sync + Clone + Connect + 'static> {
    adapter: Arc<SlackAdapter<H>>,
    runner: Arc<Runner>,
    seen: Mutex<(HashSet<String>, VecDeque<String>)>,
}

pub struct SlackAdapter<H: Send + Sync + Clone + Connect + 'static> {
    client: Arc<SlackClient<SlackClientHyperConnector<H>>>,
    bot_token: SlackApiToken,
    /// The bot's own user id (from auth.test), to read `<@U…>` mentions and skip our echoes.
    bot_user: String,
    name: String,
}

/// `<@U0BOT> jenkins …` → `@deputy jenkins …`, so the dispatcher's addressing applies.
fn normalize(text: &str, bot_user: &str, name: &str) -> String {
    let mention = format!("<@{bot_user}>");
    match text.trim_start().strip_prefix(&mention) {
        Some(rest) => format!("@{name} {}", rest.trim_start()),
        None => text.to_string(),
    }
}

/// The [`Message`] an Events API callback carries for deputy, if any: an `app_mention`, or a
/// direct message from a person (not our own posts, other bots, edits or deletions).
/// `bot_user` is deputy's Slack user id, `name` the name it answers to. Pure, so the fuzz
/// target (`deputy::fuzzing`) reads events exactly as the adapter does.
pub fn message_of(event: SlackPushEventCallback, bot_user: &str, name: &str) -> Option<Message> {
    let team = event.team_id.to_string();
    match event.event {
        SlackEventCallbackBody::AppMention(e) => {
            let ts = e.origin.ts.to_string();
            Some(Message {
                adapter: ADAPTER.into(),
                workspace: team,
                user: e.user.to_string(),
                user_name: e.user.to_string(),
                // In app_mention the channel is top-level, not in `origin` (crate-notes).
                channel: e.channel.to_string(),
                // Answer in the mention's thread, or start one on the mention.
                thread: Some(e.origin.thread_ts.map_or(ts.clone(), |t| t.to_string())),
                id: ts,
                direct: false,
                text: normalize(e.content.text.as_deref().unwrap_or(""), bot_user, name),
            })
        }
        SlackEventCallbackBody::Message(e) => {
            let is_im = e
                .origin
                .channel_type
                .as_ref()
                .is_some_and(|t| t.to_string() == "im");
            let user = e.sender.user.as_ref().map(ToString::to_string);
            // Our own posts, other bots, edits and deletions are not commands.
            match (is_im, user, &e.sender.bot_id, &e.subtype, &e.origin.channel) {
                (true, Some(user), None, None, Some(channel)) if user != bot_user => {
                    Some(Message {
                        adapter: ADAPTER.into(),
                        workspace: team,
                        user: user.clone(),
                        user_name: user,
                        channel: channel.to_string(),
                        thread: e.origin.thread_ts.map(|t| t.to_string()),
                        id: e.origin.ts.to_string(),
                        direct: true,
                        text: normalize(
                            e.content
                                .as_ref()
                                .and_then(|c| c.text.as_deref())
                                .unwrap_or(""),
                            bot_user,
                            name,
                        ),
                    })
                }
                _ => None,
            }
        }
        _ => None,
    }
}

#[async_trait::async_trait]
impl<H: Send + Sync + Clone + Connect + 'static> Adapter for SlackAdapter<H> {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        let session = self.client.open_session(&self.bot_token);
        let channel = SlackChannelId::new(to.channel.clone());
        let thread = to.thread.clone().map(SlackTs::new);
        for chunk in split(&reply.text, MAX_MESSAGE) {
            let content = SlackMessageContent::new().with_text(chunk);
            if reply.visibility == Visibility::OnlyUser && !to.direct {
                // Only the user sees it (sign-in links, key warnings).
                let mut req = SlackApiChatPostEphemeralRequest::new(
                    channel.clone(),
                    SlackUserId::new(to.user.clone()),
                    content,
                );
                req.thread_ts = thread.clone();
                session.chat_post_ephemeral(&req).await?;
            } else {
                let mut req = SlackApiChatPostMessageRequest::new(channel.clone(), content);
                req.thread_ts = thread.clone();
                session.chat_post_message(&req).await?;
            }
        }
        Ok(())
    }

    async fn delete(&self, _message: &Message) -> Deleted {
        // Slack lets a bot delete only its own messages.
        Deleted::Unsupported
    }
}

async fn on_push_event<H: Send + Sync + Clone + Connect + 'static>(
    event: SlackPushEventCallback,
    _client: Arc<SlackClient<SlackClientHyperConnector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<()> {
    let shared = {
        let states = states.read().await;
        states.get_user_state::<Arc<Shared<H>>>().cloned()
    };
    let Some(shared) = shared else {
        return Ok(());
    };
    {
        let mut seen = shared.seen.lock().expect("seen poisoned");
        let id = event.event_id.to_string();
        if !seen.0.insert(id.clone()) {
            tracing::debug!(event_id = %id, "dropping a redelivered Slack event");
            return Ok(());
        }
        seen.1.push_back(id);
        if seen.1.len() > SEEN_EVENTS {
            if let Some(old) = seen.1.pop_front() {
                seen.0.remove(&old);
            }
        }
    }
    // Slack may deliver an event to any open connection, so replicas sharing a brain agree
    // there which of them takes it. A brain that cannot be reached does not drop events.
    let id = event.event_id.to_string();
    let brain = &shared.runner.dispatcher().brain;
    let first = if brain.is_shared() {
        brain
            .first_sighting(&format!("slack-event/{id}"), SEEN_EVENT_SECS)
            .await
    } else {
        Ok(true)
    };
    match first {
        Ok(false) => {
            tracing::debug!(event_id = %id, "another replica took this Slack event");
            return Ok(());
        }
        Ok(true) => {}
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "could not check a Slack event against the brain")
        }
    }
    let adapter = &shared.adapter;
    let message = message_of(event, &adapter.bot_user, &adapter.name);
    if let Some(message) = message {
        // Queued, not awaited: the envelope is acked as soon as this returns.
        shared
            .runner
            .submit(message, shared.adapter.clone() as Arc<dyn Adapter>);
    }
    Ok(())
}

/// A running Socket Mode listener; [`Slack::stop`] closes its connections.
pub struct Slack {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Slack {
    /// Connects with the app token (`xapp-…`) and answers with the bot token (`xoxb-…`).
    /// `api_url` replaces `https://slack.com/api` (a plain-http URL is allowed for tests).
    pub async fn start(
        api_url: Option<&str>,
        connections: u32,
        app_token: &str,
        bot_token: &str,
        runner: Arc<Runner>,
    ) -> anyhow::Result<Slack> {
        // slack-morphism joins the base and the method with a `/` of its own.
        let api_url = api_url.map(|u| u.trim_end_matches('/'));
        match api_url {
            Some(url) if url.starts_with("http://") => {
                let connector = SlackClientHyperConnector::with_connector(HttpConnector::new())
                    .with_slack_api_url(url);
                Self::start_with(connector, app_token, bot_token, runner, connections).await
            }
            other => {
                let mut connector = SlackClientHyperConnector::new()?;
                if let Some(url) = other {
                    connector = connector.with_slack_api_url(url);
                }
                Self::start_with(connector, app_token, bot_token, runner, connections).await
            }
        }
    }

    async fn start_with<H: Send + Sync + Clone + Connect + 'static>(
        connector: SlackClientHyperConnector<H>,
        app_token: &str,
        bot_token: &str,
        runner: Arc<Runner>,
        connections: u32,
    ) -> anyhow::Result<Slack> {
        let client = Arc::new(SlackClient::new(connector));
        let bot_token = SlackApiToken::new(bot_token.into());
        let me = client.open_session(&bot_token).auth_test().await?;
        tracing::info!(team = %me.team_id, bot = %me.user_id, "slack authenticated");
        let adapter = Arc::new(SlackAdapter {
            client: client.clone(),
            bot_token,
            bot_user: me.user_id.to_string(),
            name: runner.dispatcher().addressing.name.clone(),
        });
        runner
            .dispatcher()
            .register_adapter(ADAPTER, adapter.clone() as Arc<dyn Adapter>);
        let shared = Arc::new(Shared {
            adapter,
            runner,
            seen: Mutex::default(),
        });
        let environment = Arc::new(
            SlackClientEventsListenerEnvironment::new(client.clone())
                .with_error_handler(|e, _client, _states| {
                    tracing::warn!(error = %e, "slack socket mode error");
                    axum::http::StatusCode::OK
                })
                .with_user_state(shared),
        );
        let callbacks =
            SlackSocketModeListenerCallbacks::new().with_push_events(on_push_event::<H>);
        let listener = SlackClientSocketModeListener::new(
            &SlackClientSocketModeConfig::new().with_max_connections_count(connections),
            environment,
            callbacks,
        );
        listener
            .listen_for(&SlackApiToken::new(app_token.into()))
            .await?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            listener.start().await;
            let _ = stopped.await;
            listener.shutdown().await;
        });
        Ok(Slack { stop, task })
    }

    /// Closes the Socket Mode connections and waits until they are closed.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
