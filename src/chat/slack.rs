//! The Slack adapter over Socket Mode (slack-morphism): no public URL needed. Events are
//! acknowledged at once (the work is queued, not awaited, since slack-morphism acks when the
//! callback returns and Slack redelivers after 3 s); a redelivered event is handled once.
//! A Slack user id belongs to one workspace, so identities are keyed by team id.
//!
//! Interactivity arrives over the same socket: the `/deputy …` slash command (a message with
//! a `trigger_id`), button clicks (`block_actions`) and modal submissions (`view_submission`).
//! A reply that asks for a [`SecretForm`] opens a modal (`views.open`) with the trigger of
//! the message it answers; the modal's value comes back as an [`Interaction::Form`] and is
//! never posted anywhere.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper_util::client::legacy::connect::{Connect, HttpConnector};
use slack_morphism::prelude::*;

use super::{
    split::split, Adapter, Button, ButtonStyle, Deleted, Interaction, Message, Reply, Runner,
    SecretForm, Surfaces, Visibility,
};
use crate::message::LINK_BUTTON_ID;
use crate::secret::Secret;

pub const ADAPTER: &str = "slack";
/// Slack truncates `text` past 40,000 characters and recommends far less; stay readable.
pub const MAX_MESSAGE: usize = 3900;
/// A section block's text holds at most 3,000 characters: replies with buttons split there.
const MAX_SECTION: usize = 2900;
/// Slack honours a `trigger_id` for 3 s; one older than this is not worth trying.
const TRIGGER_LIFE: Duration = Duration::from_secs(3);
/// The modal's one input, as `view_submission` reports its value.
const FORM_BLOCK: &str = "deputy_secret";
const FORM_ACTION: &str = "secret";
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
    /// Triggers of slash commands and clicks not yet used to open a modal, by the id of the
    /// message standing for them.
    triggers: Mutex<HashMap<String, (SlackTriggerId, Instant)>>,
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

impl<H: Send + Sync + Clone + Connect + 'static> SlackAdapter<H> {
    /// Remembers the trigger a form may be opened with in answer to `message_id`.
    fn keep_trigger(&self, message_id: &str, trigger: SlackTriggerId) {
        let mut triggers = self.triggers.lock().expect("triggers poisoned");
        triggers.retain(|_, (_, at)| at.elapsed() < TRIGGER_LIFE);
        triggers.insert(message_id.to_string(), (trigger, Instant::now()));
    }

    fn take_trigger(&self, message_id: &str) -> Option<SlackTriggerId> {
        let mut triggers = self.triggers.lock().expect("triggers poisoned");
        triggers
            .remove(message_id)
            .filter(|(_, at)| at.elapsed() < TRIGGER_LIFE)
            .map(|(t, _)| t)
    }

    /// Opens the private form as a modal. The conversation travels in `private_metadata`, so
    /// the submission is answered where the form was asked for.
    async fn open_form(
        &self,
        trigger: SlackTriggerId,
        form: &SecretForm,
        to: &Message,
    ) -> anyhow::Result<()> {
        let mut input = SlackBlockPlainTextInputElement::new().with_action_id(FORM_ACTION.into());
        if !form.hint.is_empty() {
            input = input.with_placeholder(form.hint.as_str().into());
        }
        let blocks: Vec<SlackBlock> = vec![
            SlackInputBlock::new(
                form.label.as_str().into(),
                SlackInputBlockElement::PlainTextInput(input),
            )
            .with_block_id(FORM_BLOCK.into())
            .into(),
            SlackContextBlock::new(vec![SlackContextBlockElement::Plain(
                SlackBlockPlainText::new(
                    "Slack has no password field, so the key shows while you type it; it never \
                     becomes a message and is stored encrypted."
                        .into(),
                ),
            )])
            .into(),
        ];
        let metadata = match &to.thread {
            Some(t) => format!("{} {t}", to.channel),
            None => to.channel.clone(),
        };
        let view = SlackView::Modal(
            SlackModalView::new(form.title.as_str().into(), blocks)
                .with_submit("Link".into())
                .with_close("Cancel".into())
                .with_callback_id(form.id.clone().into())
                .with_private_metadata(metadata),
        );
        self.client
            .open_session(&self.bot_token)
            .views_open(&SlackApiViewsOpenRequest::new(trigger, view))
            .await?;
        Ok(())
    }
}

/// Block Kit for a reply with buttons: its text in a section, the buttons in an action row.
fn blocks(text: &str, buttons: &[Button]) -> Vec<SlackBlock> {
    let elements = buttons
        .iter()
        .map(|b| {
            let mut e = SlackBlockButtonElement::new(b.label.as_str().into())
                .with_action_id(b.id.clone().into());
            match b.style {
                ButtonStyle::Primary => e = e.with_style(SlackBlockButtonStyle::Primary),
                ButtonStyle::Danger => e = e.with_style(SlackBlockButtonStyle::Danger),
                ButtonStyle::Secondary => {}
            }
            if let Some(url) = b.url.as_deref().and_then(|u| reqwest::Url::parse(u).ok()) {
                e = e.with_url(url);
            }
            SlackActionBlockElement::Button(e)
        })
        .collect();
    vec![
        SlackSectionBlock::new()
            .with_text(SlackBlockText::MarkDown(SlackBlockMarkDownText::new(
                text.to_string(),
            )))
            .into(),
        SlackActionsBlock::new(elements).into(),
    ]
}

#[async_trait::async_trait]
impl<H: Send + Sync + Clone + Connect + 'static> Adapter for SlackAdapter<H> {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        let mut reply = reply;
        if let Some(form) = reply.form.take() {
            match self.take_trigger(&to.id) {
                Some(trigger) => match self.open_form(trigger, &form, to).await {
                    Ok(()) => return Ok(()),
                    Err(e) => tracing::warn!(error = %e, "could not open a Slack modal"),
                },
                None => tracing::warn!("no Slack trigger left to open a modal with"),
            }
            // The reply's text says what to do instead, to the user alone.
            reply.visibility = Visibility::OnlyUser;
        }
        let session = self.client.open_session(&self.bot_token);
        let channel = SlackChannelId::new(to.channel.clone());
        let thread = to.thread.clone().map(SlackTs::new);
        let max = if reply.buttons.is_empty() {
            MAX_MESSAGE
        } else {
            MAX_SECTION
        };
        let chunks = split(&reply.text, max);
        let last = chunks.len().saturating_sub(1);
        for (n, chunk) in chunks.into_iter().enumerate() {
            let mut content = SlackMessageContent::new();
            if n == last && !reply.buttons.is_empty() {
                content = content.with_blocks(blocks(&chunk, &reply.buttons));
            }
            let content = content.with_text(chunk);
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

    fn surfaces(&self, message: &Message) -> Surfaces {
        let triggers = self.triggers.lock().expect("triggers poisoned");
        Surfaces {
            buttons: true,
            forms: triggers
                .get(&message.id)
                .is_some_and(|(_, at)| at.elapsed() < TRIGGER_LIFE),
        }
    }
}

/// The adapter's shared state, from a listener callback's user state.
async fn shared_state<H: Send + Sync + Clone + Connect + 'static>(
    states: &SlackClientEventsUserState,
) -> Option<Arc<Shared<H>>> {
    let states = states.read().await;
    states.get_user_state::<Arc<Shared<H>>>().cloned()
}

/// `/deputy <text>`: handled like a message addressed to the bot; its trigger lets a reply
/// open a modal. Acked with an empty payload: the answers are posted as they come.
async fn on_command<H: Send + Sync + Clone + Connect + 'static>(
    event: SlackCommandEvent,
    _client: Arc<SlackClient<SlackClientHyperConnector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackCommandEventResponse> {
    let empty = SlackCommandEventResponse::new(SlackMessageContent::new());
    let Some(shared) = shared_state::<H>(&states).await else {
        return Ok(empty);
    };
    let adapter = &shared.adapter;
    let channel = event.channel_id.to_string();
    let user = event.user_id.to_string();
    let id = format!("command:{}", event.trigger_id);
    adapter.keep_trigger(&id, event.trigger_id.clone());
    let message = Message {
        adapter: ADAPTER.into(),
        workspace: event.team_id.to_string(),
        user: user.clone(),
        user_name: user,
        // Slack's DM channel ids start with D.
        direct: channel.starts_with('D'),
        channel,
        id,
        thread: None,
        text: format!(
            "@{} {}",
            adapter.name,
            event.text.as_deref().unwrap_or("").trim()
        ),
    };
    shared
        .runner
        .submit(message, shared.adapter.clone() as Arc<dyn Adapter>);
    Ok(empty)
}

/// Button clicks and modal submissions, handed to the dispatcher, which checks who, what and
/// whether it is still valid. Other interaction kinds are acked and dropped.
async fn on_interaction<H: Send + Sync + Clone + Connect + 'static>(
    event: SlackInteractionEvent,
    _client: Arc<SlackClient<SlackClientHyperConnector<H>>>,
    states: SlackClientEventsUserState,
) -> UserCallbackResult<SlackInteractionResponse> {
    let Some(shared) = shared_state::<H>(&states).await else {
        return Ok(SlackInteractionResponse::Empty);
    };
    let adapter = &shared.adapter;
    let from =
        |team: &SlackTeamId, user: &SlackUserId, channel: String, thread, id: String| Message {
            adapter: ADAPTER.into(),
            workspace: team.to_string(),
            user: user.to_string(),
            user_name: user.to_string(),
            direct: channel.starts_with('D'),
            channel,
            id,
            thread,
            text: String::new(),
        };
    match event {
        SlackInteractionEvent::BlockActions(e) => {
            let Some(user) = &e.user else {
                return Ok(SlackInteractionResponse::Empty);
            };
            let channel =
                e.channel
                    .as_ref()
                    .map(|c| c.id.to_string())
                    .or_else(|| match &e.container {
                        SlackInteractionActionContainer::Message(m) => {
                            m.channel_id.as_ref().map(ToString::to_string)
                        }
                        _ => None,
                    });
            let Some(channel) = channel else {
                return Ok(SlackInteractionResponse::Empty);
            };
            for action in e.actions.iter().flatten() {
                let id = action.action_id.to_string();
                // Link buttons open a page; Slack reports their clicks anyway. Every other id
                // goes to the dispatcher, which refuses what it did not offer.
                if id == LINK_BUTTON_ID {
                    continue;
                }
                let key = format!("action:{}", e.trigger_id);
                adapter.keep_trigger(&key, e.trigger_id.clone());
                let from = from(&e.team.id, &user.id, channel.clone(), None, key);
                shared.runner.interact(
                    from,
                    Interaction::Button { id },
                    shared.adapter.clone() as Arc<dyn Adapter>,
                );
            }
        }
        SlackInteractionEvent::ViewSubmission(e) => {
            let SlackView::Modal(modal) = &e.view.view else {
                return Ok(SlackInteractionResponse::Empty);
            };
            // Slack sends an app only its own views; an id deputy did not make is refused by
            // the dispatcher, with a reply.
            let id = modal
                .callback_id
                .as_ref()
                .map(ToString::to_string)
                .unwrap_or_default();
            let value = e
                .view
                .state_params
                .state
                .as_ref()
                .and_then(|s| s.values.get(&SlackBlockId::new(FORM_BLOCK.into())))
                .and_then(|b| b.get(&SlackActionId::new(FORM_ACTION.into())))
                .and_then(|v| v.value.clone())
                .unwrap_or_default();
            let metadata = modal.private_metadata.clone().unwrap_or_default();
            let (channel, thread) = match metadata.split_once(' ') {
                Some((c, t)) => (c.to_string(), Some(t.to_string())),
                None => (metadata, None),
            };
            let key = format!("view:{}", e.view.state_params.id);
            let from = from(&e.team.id, &e.user.id, channel, thread, key);
            let form = Interaction::Form {
                id,
                value: Secret::new(value),
            };
            // A key that cannot be right is shown beside the input and the modal stays open,
            // so the user fixes it rather than asking for a new form.
            if let Some(problem) = shared.runner.dispatcher().check_form(&from, &form).await {
                let errors = HashMap::from([(FORM_BLOCK.to_string(), problem)]);
                return Ok(SlackInteractionResponse::ViewSubmission(
                    SlackViewSubmissionResponse::Errors(SlackViewSubmissionErrorsResponse::new(
                        errors,
                    )),
                ));
            }
            shared
                .runner
                .interact(from, form, shared.adapter.clone() as Arc<dyn Adapter>);
        }
        _ => {}
    }
    // An empty ack closes the modal.
    Ok(SlackInteractionResponse::Empty)
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
            triggers: Mutex::default(),
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
        let callbacks = SlackSocketModeListenerCallbacks::new()
            .with_push_events(on_push_event::<H>)
            .with_command_events(on_command::<H>)
            .with_interaction_events(on_interaction::<H>);
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
