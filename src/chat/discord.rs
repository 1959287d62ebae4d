//! The Discord adapter, on serenity 0.12: gateway events in, REST replies out. A Discord user
//! id is one person in every server and in DMs, so identities live in one `global` workspace.
//! Replies meant only for the user (sign-in links, key warnings) go by DM, or ephemerally
//! (flag 64) when they answer an interaction.
//!
//! Interactions (the `/deputy` application command, clicks on deputy's buttons, submitted
//! modals) are answered through the interaction's own token: the first reply is the
//! interaction's one response (a message, or a modal for the private key form), later ones
//! are followups. Discord drops an interaction left unanswered for 3 s, so one still waiting
//! for the dispatcher after [`ANSWER_WITHIN`] is deferred ("deputy is thinking…", seen only by
//! the user) and its first reply fills that in.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serenity::all::{
    ActionRowComponent, ButtonStyle as DiscordButtonStyle, ChannelId, Command,
    CommandDataOptionValue, CommandOptionType, Context, CreateActionRow, CreateButton,
    CreateCommand, CreateCommandOption, CreateInputText, CreateInteractionResponse,
    CreateInteractionResponseFollowup, CreateInteractionResponseMessage, CreateMessage,
    CreateModal, EditInteractionResponse, EventHandler, GatewayIntents, Http, HttpBuilder,
    InputTextStyle, Interaction as Event, InteractionId, MessageFlags, MessageId, Ready,
    ShardManager, User, UserId,
};

use tokio::sync::watch;

use super::{split::split, Adapter, Deleted, Message, Reply, Runner, Visibility};
use crate::dispatch::offer::{self, Action};
use crate::message::{Button, ButtonStyle, Interaction, SecretForm, Surfaces};
use crate::secret::Secret;

pub const ADAPTER: &str = "discord";
/// Discord user ids are global: one namespace for every server and DM.
pub const WORKSPACE: &str = "global";
/// Discord's limit on one message's content.
pub const MAX_MESSAGE: usize = 2000;
/// How long the dispatcher has to produce the first reply to an interaction before deputy
/// defers it; Discord's own limit is 3 s.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// How long an interaction token takes followups (Discord: 15 minutes; a minute spare).
const TOKEN_LIFETIME: Duration = Duration::from_secs(14 * 60);
/// Discord's limits on buttons: five to a row, five rows to a message.
const BUTTONS_PER_ROW: usize = 5;
const MAX_BUTTONS: usize = 25;
/// The application command's one option: what the user would write after `@deputy`.
pub const COMMAND_OPTION: &str = "command";
/// The custom_id of the key form's one text input.
const FORM_INPUT: &str = "secret";
/// Messages standing for an interaction carry an id with this prefix (never a message id).
const INTERACTION_PREFIX: &str = "interaction-";

/// The intents deputy needs. MESSAGE_CONTENT is privileged: enable it in the developer portal,
/// or guild messages arrive empty unless they mention the bot. Interactions need no intent.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The application command's name: the bot's name where Discord accepts it (lowercase
/// letters, digits, `-`, `_`; 1-32 characters), else `deputy`.
pub fn command_name(bot_name: &str) -> String {
    let name = bot_name.to_lowercase();
    let ok = (1..=32).contains(&name.chars().count())
        && name
            .chars()
            .all(|c| c == '-' || c == '_' || c.is_alphanumeric());
    if ok {
        name
    } else {
        "deputy".into()
    }
}

const COMMAND_DESCRIPTION: &str = "Run a deputy command, as you would after @deputy (try: help)";
const OPTION_DESCRIPTION: &str = "What to run, such as: jenkins build deploy, or jenkins setkey";

/// The one application command deputy registers: `/deputy command: <what to run>`.
fn application_command(name: &str) -> CreateCommand {
    CreateCommand::new(name)
        .description(COMMAND_DESCRIPTION)
        .add_option(
            CreateCommandOption::new(
                CommandOptionType::String,
                COMMAND_OPTION,
                OPTION_DESCRIPTION,
            )
            .required(true),
        )
}

/// What kind of interaction a [`Pending`] answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Command,
    Component,
    Modal,
}

/// Where the interaction's answer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Not answered: the first reply may be a message or a modal.
    Fresh,
    /// Deferred ("thinking…", ephemeral): the first reply edits it in.
    Deferred,
    /// Answered: later replies are followups.
    Answered,
}

/// An interaction deputy has not finished answering.
struct Pending {
    id: InteractionId,
    token: String,
    kind: Kind,
    at: Instant,
    /// Held across the HTTP call that answers, so a reply and the deferral never race.
    state: tokio::sync::Mutex<State>,
}

/// The adapter half that sends: serenity's HTTP client.
pub struct DiscordAdapter {
    http: Arc<Http>,
    /// The bot's own user id, learnt from READY. serenity runs each event's handler in its own
    /// task, so a message may be handled before READY's handler has run: it waits for this.
    bot_id: watch::Sender<Option<UserId>>,
    /// The name deputy answers to, so `<@id> …` can be rewritten to `@name …`.
    name: String,
    /// Interactions by the id of the [`Message`] standing for them.
    pending: Mutex<HashMap<String, Arc<Pending>>>,
}

impl DiscordAdapter {
    async fn post(&self, channel: ChannelId, text: &str, buttons: &[Button]) -> anyhow::Result<()> {
        let chunks = split(text, MAX_MESSAGE);
        let last = chunks.len().saturating_sub(1);
        for (n, chunk) in chunks.into_iter().enumerate() {
            let mut message = CreateMessage::new().content(chunk);
            if n == last && !buttons.is_empty() {
                message = message.components(action_rows(buttons));
            }
            channel.send_message(&self.http, message).await?;
        }
        Ok(())
    }

    /// Deputy's own id, once READY has said it: serenity runs each event handler in its own
    /// task, so a message can arrive before READY's handler stored the id.
    async fn own_id(&self) -> Option<UserId> {
        let mut ready = self.bot_id.subscribe();
        ready
            .wait_for(Option::is_some)
            .await
            .map(|id| *id)
            .ok()
            .flatten()
    }

    /// Remembers an interaction under a new message id, forgetting those whose token expired.
    fn remember(&self, id: InteractionId, token: &str, kind: Kind) -> (String, Arc<Pending>) {
        let key = format!("{INTERACTION_PREFIX}{id}");
        let pending = Arc::new(Pending {
            id,
            token: token.to_string(),
            kind,
            at: Instant::now(),
            state: tokio::sync::Mutex::new(State::Fresh),
        });
        let mut map = self.pending.lock().expect("interaction map poisoned");
        map.retain(|_, p| p.at.elapsed() < TOKEN_LIFETIME);
        map.insert(key.clone(), pending.clone());
        (key, pending)
    }

    fn pending(&self, message: &Message) -> Option<Arc<Pending>> {
        let map = self.pending.lock().expect("interaction map poisoned");
        map.get(&message.id)
            .filter(|p| p.at.elapsed() < TOKEN_LIFETIME)
            .cloned()
    }

    /// Defers the interaction if nothing has answered it within [`ANSWER_WITHIN`].
    fn defer_if_slow(self: &Arc<Self>, pending: Arc<Pending>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(ANSWER_WITHIN).await;
            let mut state = pending.state.lock().await;
            if *state != State::Fresh {
                return;
            }
            let deferral = CreateInteractionResponse::Defer(
                CreateInteractionResponseMessage::new().ephemeral(true),
            );
            match this
                .http
                .create_interaction_response(pending.id, &pending.token, &deferral, vec![])
                .await
            {
                Ok(()) => *state = State::Deferred,
                Err(e) => {
                    tracing::warn!(error = %e, "could not defer a Discord interaction");
                    // Whatever happened, the one response is spent or lost: later replies
                    // can only be followups.
                    *state = State::Answered;
                }
            }
        });
    }

    /// Answers a click by editing the message it was on: the same text, no buttons. Replies
    /// then go out as followups.
    async fn retire_buttons(self: &Arc<Self>, pending: &Arc<Pending>, text: &str) {
        let mut state = pending.state.lock().await;
        let update = CreateInteractionResponse::UpdateMessage(
            CreateInteractionResponseMessage::new()
                .content(text)
                .components(Vec::new()),
        );
        if let Err(e) = self
            .http
            .create_interaction_response(pending.id, &pending.token, &update, vec![])
            .await
        {
            tracing::warn!(error = %e, "could not take the buttons off a Discord message");
            // The response may still be free: the usual deferral then covers a slow reply.
            drop(state);
            self.defer_if_slow(pending.clone());
            return;
        }
        *state = State::Answered;
    }

    /// Sends `reply` as the answer to an interaction: its response (a message, or the modal
    /// of a key form), the deferred response filled in, or a followup.
    async fn answer(&self, pending: &Pending, reply: Reply) -> anyhow::Result<()> {
        let mut state = pending.state.lock().await;
        let ephemeral = reply.visibility == Visibility::OnlyUser;
        if let (State::Fresh, Some(form)) = (*state, &reply.form) {
            if pending.kind != Kind::Modal {
                let modal = CreateInteractionResponse::Modal(key_modal(form));
                match self
                    .http
                    .create_interaction_response(pending.id, &pending.token, &modal, vec![])
                    .await
                {
                    Ok(()) => {
                        *state = State::Answered;
                        return Ok(());
                    }
                    Err(e) => {
                        // A refused modal leaves the response unused: the form's text, which
                        // says what to do instead, takes it below.
                        tracing::warn!(error = %e, "could not open a Discord modal");
                    }
                }
            }
        }
        let chunks = split(&reply.text, MAX_MESSAGE);
        let last = chunks.len().saturating_sub(1);
        for (n, chunk) in chunks.into_iter().enumerate() {
            let rows = if n == last {
                action_rows(&reply.buttons)
            } else {
                Vec::new()
            };
            match *state {
                State::Fresh => {
                    let message = CreateInteractionResponseMessage::new()
                        .content(chunk)
                        .ephemeral(ephemeral)
                        .components(rows);
                    let response = CreateInteractionResponse::Message(message);
                    // Spent even if it failed: a second response would be refused.
                    *state = State::Answered;
                    self.http
                        .create_interaction_response(pending.id, &pending.token, &response, vec![])
                        .await?;
                }
                // The deferral is ephemeral: a private reply fills it in, a public one goes
                // out as a followup after it says so.
                State::Deferred if ephemeral => {
                    let edit = EditInteractionResponse::new()
                        .content(chunk)
                        .components(rows);
                    *state = State::Answered;
                    self.http
                        .edit_original_interaction_response(&pending.token, &edit, vec![])
                        .await?;
                }
                State::Deferred => {
                    let edit = EditInteractionResponse::new().content("Done: answered below.");
                    *state = State::Answered;
                    self.http
                        .edit_original_interaction_response(&pending.token, &edit, vec![])
                        .await?;
                    self.followup(pending, chunk, rows, false).await?;
                }
                State::Answered => self.followup(pending, chunk, rows, ephemeral).await?,
            }
        }
        Ok(())
    }

    async fn followup(
        &self,
        pending: &Pending,
        text: String,
        rows: Vec<CreateActionRow>,
        ephemeral: bool,
    ) -> anyhow::Result<()> {
        let followup = CreateInteractionResponseFollowup::new()
            .content(text)
            .ephemeral(ephemeral)
            .components(rows);
        self.http
            .create_followup_message(&pending.token, &followup, vec![])
            .await?;
        Ok(())
    }
}

/// The key form as a Discord modal: one short text input. Discord has no password style, so
/// the key shows on the user's screen while typed, but it never becomes a message.
fn key_modal(form: &SecretForm) -> CreateModal {
    let input = CreateInputText::new(InputTextStyle::Short, &form.label, FORM_INPUT)
        .placeholder(&form.hint)
        .required(true);
    CreateModal::new(&form.id, &form.title).components(vec![CreateActionRow::InputText(input)])
}

/// Buttons as action rows: five to a row, at most Discord's 25 (the rest are dropped).
fn action_rows(buttons: &[Button]) -> Vec<CreateActionRow> {
    if buttons.len() > MAX_BUTTONS {
        tracing::warn!(
            count = buttons.len(),
            "a reply has more buttons than Discord shows"
        );
    }
    buttons
        .iter()
        .take(MAX_BUTTONS)
        .map(|b| match &b.url {
            Some(url) => CreateButton::new_link(url).label(&b.label),
            None => CreateButton::new(&b.id)
                .label(&b.label)
                .style(match b.style {
                    ButtonStyle::Primary => DiscordButtonStyle::Primary,
                    ButtonStyle::Danger => DiscordButtonStyle::Danger,
                    ButtonStyle::Secondary => DiscordButtonStyle::Secondary,
                }),
        })
        .collect::<Vec<_>>()
        .chunks(BUTTONS_PER_ROW)
        .map(|row| CreateActionRow::Buttons(row.to_vec()))
        .collect()
}

fn parse_id(s: &str) -> anyhow::Result<u64> {
    s.parse::<u64>()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a Discord id"))
}

#[async_trait::async_trait]
impl Adapter for DiscordAdapter {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        if let Some(pending) = self.pending(to) {
            return self.answer(&pending, reply).await;
        }
        let channel = ChannelId::new(parse_id(&to.channel)?);
        if reply.visibility == Visibility::OnlyUser && !to.direct {
            // Nobody else in the channel may read it (a plain message in a guild cannot be
            // ephemeral): DM the user, and say so in the channel.
            let user = UserId::new(parse_id(&to.user)?);
            let dm = user.create_dm_channel(&self.http).await?;
            self.post(dm.id, &reply.text, &reply.buttons).await?;
            return self
                .post(
                    channel,
                    &format!("<@{}>, I sent you a direct message.", to.user),
                    &[],
                )
                .await;
        }
        self.post(channel, &reply.text, &reply.buttons).await
    }

    async fn delete(&self, message: &Message) -> Deleted {
        if message.id.starts_with(INTERACTION_PREFIX) {
            // A slash command is no message; its text is shown only with a public answer.
            return Deleted::Refused(
                "a slash command leaves no message to delete; my answer to it is private".into(),
            );
        }
        let (Ok(channel), Ok(id)) = (parse_id(&message.channel), parse_id(&message.id)) else {
            return Deleted::Refused("the message has no Discord id".into());
        };
        match self
            .http
            .delete_message(
                ChannelId::new(channel),
                MessageId::new(id),
                Some("it held a secret"),
            )
            .await
        {
            Ok(()) => Deleted::Yes,
            Err(serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r))) => {
                Deleted::Refused(match r.error.code {
                    50013 => "I lack the Manage Messages permission here".to_string(),
                    50003 => "Discord does not let bots delete messages in a DM".to_string(),
                    _ => format!("Discord answered {}", r.status_code),
                })
            }
            Err(e) => Deleted::Refused(format!("Discord could not be reached: {e}")),
        }
    }

    async fn busy(&self, message: &Message) -> Option<Box<dyn Send>> {
        if message.id.starts_with(INTERACTION_PREFIX) {
            // Discord shows its own "thinking…" for a deferred interaction.
            return None;
        }
        let channel = ChannelId::new(parse_id(&message.channel).ok()?);
        Some(Box::new(channel.start_typing(&self.http)))
    }

    fn surfaces(&self, message: &Message) -> Surfaces {
        // A modal answers a command or a click, never a submitted modal, and only as the
        // interaction's first response.
        let forms = self.pending(message).is_some_and(|p| {
            p.kind != Kind::Modal && p.state.try_lock().is_ok_and(|state| *state == State::Fresh)
        });
        Surfaces {
            buttons: true,
            forms,
        }
    }
}

/// The adapter half that receives: serenity's event handler.
struct Handler {
    adapter: Arc<DiscordAdapter>,
    runner: Arc<Runner>,
}

impl Handler {
    /// A [`Message`] standing for an interaction by `user` in `channel`.
    fn from(
        &self,
        key: String,
        user: &User,
        channel: ChannelId,
        direct: bool,
        text: String,
    ) -> Message {
        Message {
            adapter: ADAPTER.into(),
            workspace: WORKSPACE.into(),
            user: user.id.to_string(),
            user_name: user.name.clone(),
            channel: channel.to_string(),
            id: key,
            thread: None,
            direct,
            text,
        }
    }

    /// Registers `/deputy` unless Discord already has it as deputy would register it: a
    /// create counts against Discord's daily limit, a reconnect should not spend it.
    async fn register_command(&self, http: &Http) -> anyhow::Result<()> {
        let name = command_name(&self.adapter.name);
        let existing = Command::get_global_commands(http).await?;
        let same = existing.iter().any(|c| {
            c.name == name
                && c.description == COMMAND_DESCRIPTION
                && matches!(c.options.as_slice(), [o] if o.name == COMMAND_OPTION
                    && o.kind == CommandOptionType::String
                    && o.description == OPTION_DESCRIPTION
                    && o.required)
        });
        if !same {
            Command::create_global_command(http, application_command(&name)).await?;
            tracing::info!(command = %name, "registered the Discord application command");
        }
        Ok(())
    }
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        self.adapter.bot_id.send_replace(Some(ready.user.id));
        // Followups and command registration name the application; READY tells it.
        self.adapter.http.set_application_id(ready.application.id);
        tracing::info!(bot = %ready.user.name, id = %ready.user.id, "discord connected");
        // One replica registers the command: the one running shard 0 (which also gets DMs).
        if ready.shard.map_or(true, |s| s.id.0 == 0) {
            if let Err(e) = self.register_command(&self.adapter.http).await {
                tracing::warn!(error = %e, "could not register the Discord application command");
            }
        }
    }

    async fn message(&self, _ctx: Context, msg: serenity::all::Message) {
        if msg.author.bot {
            return;
        }
        let bot_id = self.adapter.own_id().await;
        let Some(message) = message_of(&msg, bot_id, &self.adapter.name) else {
            return;
        };
        self.runner
            .submit(message, self.adapter.clone() as Arc<dyn Adapter>);
    }

    async fn interaction_create(&self, _ctx: Context, event: Event) {
        let adapter = self.adapter.clone() as Arc<dyn Adapter>;
        match event {
            Event::Command(c) => {
                let text = c.data.options.iter().find_map(|o| match &o.value {
                    CommandDataOptionValue::String(s) if o.name == COMMAND_OPTION => {
                        Some(s.clone())
                    }
                    _ => None,
                });
                let (key, pending) = self.adapter.remember(c.id, &c.token, Kind::Command);
                self.adapter.defer_if_slow(pending);
                let direct = c.guild_id.is_none();
                // Addressed to the bot by name, so the dispatcher's rules apply as to a mention.
                let text = format!("@{} {}", self.adapter.name, text.unwrap_or_default());
                let message = self.from(key, &c.user, c.channel_id, direct, text);
                self.runner.submit(message, adapter);
            }
            Event::Component(c) => {
                let (key, pending) = self.adapter.remember(c.id, &c.token, Kind::Component);
                let link = matches!(offer::parse_id(&c.data.custom_id), Some((_, Action::Link)));
                // Only the user an ephemeral message or a DM is for can click it.
                let theirs = c.guild_id.is_none()
                    || c.message
                        .flags
                        .is_some_and(|f| f.contains(MessageFlags::EPHEMERAL));
                if theirs && !link {
                    // Confirm / Cancel: deputy's buttons work once, so take them off the
                    // message at once; that is also the response Discord wants within 3 s,
                    // and the replies follow it.
                    self.adapter
                        .retire_buttons(&pending, &c.message.content)
                        .await;
                } else {
                    // A link click is answered with the key form's modal, which must be the
                    // first response; on a public message anyone may click.
                    self.adapter.defer_if_slow(pending);
                }
                let from = self.from(
                    key,
                    &c.user,
                    c.channel_id,
                    c.guild_id.is_none(),
                    String::new(),
                );
                let interaction = Interaction::Button {
                    id: c.data.custom_id.clone(),
                };
                self.runner.interact(from, interaction, adapter);
            }
            Event::Modal(m) => {
                let (key, pending) = self.adapter.remember(m.id, &m.token, Kind::Modal);
                self.adapter.defer_if_slow(pending);
                // The key form has one input; its value is the only thing deputy reads.
                let value = m
                    .data
                    .components
                    .iter()
                    .flat_map(|row| &row.components)
                    .find_map(|c| match c {
                        ActionRowComponent::InputText(t) => t.value.clone(),
                        _ => None,
                    })
                    .unwrap_or_default();
                let from = self.from(
                    key,
                    &m.user,
                    m.channel_id,
                    m.guild_id.is_none(),
                    String::new(),
                );
                let interaction = Interaction::Form {
                    id: m.data.custom_id.clone(),
                    value: Secret::new(value),
                };
                self.runner.interact(from, interaction, adapter);
            }
            _ => {}
        }
    }
}

/// A connected Discord client and what is needed to stop it.
pub struct Discord {
    pub client: serenity::Client,
}

impl Discord {
    /// Builds the client; `proxy` replaces discord.com for REST (the gateway URL then comes
    /// from that server's `/api/v10/gateway`).
    pub async fn new(
        token: &str,
        proxy: Option<&str>,
        runner: Arc<Runner>,
    ) -> anyhow::Result<Discord> {
        let adapter = Arc::new(DiscordAdapter {
            http: Arc::new(build_http(token, proxy)),
            bot_id: watch::Sender::new(None),
            name: runner.dispatcher().addressing.name.clone(),
            pending: Mutex::new(HashMap::new()),
        });
        runner
            .dispatcher()
            .register_adapter(ADAPTER, adapter.clone() as Arc<dyn Adapter>);
        let client =
            serenity::all::ClientBuilder::new_with_http(build_http(token, proxy), intents())
                .event_handler(Handler { adapter, runner })
                .await?;
        Ok(Discord { client })
    }

    pub fn shard_manager(&self) -> Arc<ShardManager> {
        self.client.shard_manager.clone()
    }
}

fn build_http(token: &str, proxy: Option<&str>) -> Http {
    let mut http = HttpBuilder::new(token);
    if let Some(proxy) = proxy {
        // serenity ignores the proxy while its rate limiter is on (crate-notes); a proxy such
        // as nirn-proxy does the rate limiting itself.
        http = http.proxy(proxy).ratelimiter_disabled(true);
    }
    http.build()
}

/// `<@123> jenkins …` / `<@!123> jenkins …` → `@deputy jenkins …`, so the dispatcher's
/// addressing rules apply unchanged.
fn normalize(text: &str, bot_id: Option<UserId>, name: &str) -> String {
    if let Some(id) = bot_id {
        for mention in [format!("<@{id}>"), format!("<@!{id}>")] {
            if let Some(rest) = text.trim_start().strip_prefix(&mention) {
                return format!("@{name} {}", rest.trim_start());
            }
        }
    }
    text.to_string()
}

/// The [`Message`] a MESSAGE_CREATE carries for deputy, or `None` for a bot's (our own replies
/// come back as MESSAGE_CREATE too: never answer a bot). `bot_id` is deputy's own id once
/// READY said it, `name` the name it answers to. Pure, so the fuzz target
/// (`deputy::fuzzing`) reads events exactly as the adapter does.
pub fn message_of(
    msg: &serenity::all::Message,
    bot_id: Option<UserId>,
    name: &str,
) -> Option<Message> {
    if msg.author.bot {
        return None;
    }
    Some(Message {
        adapter: ADAPTER.into(),
        workspace: WORKSPACE.into(),
        user: msg.author.id.to_string(),
        user_name: msg.author.name.clone(),
        // A thread is a channel on Discord: replying to channel_id answers in the thread.
        channel: msg.channel_id.to_string(),
        id: msg.id.to_string(),
        thread: None,
        direct: msg.guild_id.is_none(),
        text: normalize(&msg.content, bot_id, name),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_named_after_the_bot_where_discord_allows() {
        assert_eq!(command_name("Deputy"), "deputy");
        assert_eq!(command_name("ops-bot_2"), "ops-bot_2");
        assert_eq!(command_name("my bot"), "deputy");
        assert_eq!(command_name(&"x".repeat(33)), "deputy");
    }

    #[test]
    fn buttons_fill_rows_of_five_up_to_twenty_five() {
        let buttons: Vec<Button> = (0..27)
            .map(|n| Button::new(format!("b{n}"), "x", ButtonStyle::Primary))
            .collect();
        let rows = serde_json::to_value(action_rows(&buttons)).unwrap();
        let sizes: Vec<usize> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["components"].as_array().unwrap().len())
            .collect();
        assert_eq!(sizes, [5, 5, 5, 5, 5]);
        let link =
            serde_json::to_value(action_rows(&[Button::link("Sign in", "https://x.test/a")]))
                .unwrap();
        let b = &link[0]["components"][0];
        assert_eq!(
            (b["style"].as_u64(), b["url"].as_str()),
            (Some(5), Some("https://x.test/a"))
        );
        assert!(b["custom_id"].is_null());
        let danger = serde_json::to_value(action_rows(&[Button::new(
            "dp1.x.yes",
            "Confirm",
            ButtonStyle::Danger,
        )]))
        .unwrap();
        assert_eq!(danger[0]["components"][0]["style"], 4);
        assert_eq!(danger[0]["components"][0]["custom_id"], "dp1.x.yes");
    }
}
