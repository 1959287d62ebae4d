//! The Discord adapter, on serenity 0.12: gateway events in, REST replies out. A Discord user
//! id is one person in every server and in DMs, so identities live in one `global` workspace.
//! Replies meant only for the user (sign-in links, key warnings) go by DM.

use std::sync::{Arc, OnceLock};

use serenity::all::{
    ChannelId, Context, CreateMessage, EventHandler, GatewayIntents, Http, HttpBuilder, MessageId,
    Ready, ShardManager, UserId,
};

use super::{split::split, Adapter, Deleted, Message, Reply, Runner, Visibility};

pub const ADAPTER: &str = "discord";
/// Discord user ids are global: one namespace for every server and DM.
pub const WORKSPACE: &str = "global";
/// Discord's limit on one message's content.
pub const MAX_MESSAGE: usize = 2000;

/// The intents deputy needs. MESSAGE_CONTENT is privileged: enable it in the developer portal,
/// or guild messages arrive empty unless they mention the bot.
pub fn intents() -> GatewayIntents {
    GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT
}

/// The adapter half that sends: serenity's HTTP client.
pub struct DiscordAdapter {
    http: Arc<Http>,
    /// The bot's own user id, learnt from READY.
    bot_id: OnceLock<UserId>,
    /// The name deputy answers to, so `<@id> …` can be rewritten to `@name …`.
    name: String,
}

impl DiscordAdapter {
    async fn post(&self, channel: ChannelId, text: &str) -> anyhow::Result<()> {
        for chunk in split(text, MAX_MESSAGE) {
            channel
                .send_message(&self.http, CreateMessage::new().content(chunk))
                .await?;
        }
        Ok(())
    }
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

fn parse_id(s: &str) -> anyhow::Result<u64> {
    s.parse::<u64>()
        .map_err(|_| anyhow::anyhow!("{s:?} is not a Discord id"))
}

#[async_trait::async_trait]
impl Adapter for DiscordAdapter {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        let channel = ChannelId::new(parse_id(&to.channel)?);
        if reply.visibility == Visibility::OnlyUser && !to.direct {
            // Nobody else in the channel may read it: DM the user, and say so in the channel.
            let user = UserId::new(parse_id(&to.user)?);
            let dm = user.create_dm_channel(&self.http).await?;
            self.post(dm.id, &reply.text).await?;
            return self
                .post(
                    channel,
                    &format!("<@{}>, I sent you a direct message.", to.user),
                )
                .await;
        }
        self.post(channel, &reply.text).await
    }

    async fn delete(&self, message: &Message) -> Deleted {
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
        let channel = ChannelId::new(parse_id(&message.channel).ok()?);
        Some(Box::new(channel.start_typing(&self.http)))
    }
}

/// The adapter half that receives: serenity's event handler.
struct Handler {
    adapter: Arc<DiscordAdapter>,
    runner: Arc<Runner>,
}

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _ctx: Context, ready: Ready) {
        let _ = self.adapter.bot_id.set(ready.user.id);
        tracing::info!(bot = %ready.user.name, id = %ready.user.id, "discord connected");
    }

    async fn message(&self, _ctx: Context, msg: serenity::all::Message) {
        let bot_id = self.adapter.bot_id.get().copied();
        let Some(message) = message_of(&msg, bot_id, &self.adapter.name) else {
            return;
        };
        self.runner
            .submit(message, self.adapter.clone() as Arc<dyn Adapter>);
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
            bot_id: OnceLock::new(),
            name: runner.dispatcher().addressing.name.clone(),
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
