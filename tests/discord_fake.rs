//! The fake Discord of tests/support/discord.rs against a real serenity 0.12 client, so the
//! adapter's tests can trust its JSON shapes, its REST routes and its reconnect behaviour.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serenity::all::{
    ChannelId, ClientBuilder, Context, EventHandler, GatewayIntents, HttpBuilder, Message,
    MessageId, Ready, UserId,
};
use serenity::model::channel::Channel;
use support::discord::*;
use tokio::sync::mpsc;

const BOT_ID: u64 = 1_100;
const TOKEN: &str = "fake-bot-token";
const ALICE: u64 = 42;
const GUILD: u64 = 500;
const GENERAL: u64 = 600;

#[derive(Debug)]
enum Seen {
    Ready { id: u64, name: String },
    Message(Box<Message>),
}

/// Reports every event and answers users' messages: in a guild with `say`, in a DM with a
/// reply (a message_reference). It ignores bots, itself included, as a real bot must.
struct Handler(mpsc::UnboundedSender<Seen>);

#[serenity::async_trait]
impl EventHandler for Handler {
    async fn ready(&self, _: Context, ready: Ready) {
        let _ = self.0.send(Seen::Ready {
            id: ready.user.id.get(),
            name: ready.user.name.clone(),
        });
    }

    async fn message(&self, ctx: Context, msg: Message) {
        if !msg.author.bot {
            let answer = format!("echo: {}", msg.content);
            if msg.guild_id.is_some() {
                msg.channel_id.say(&ctx.http, answer).await.unwrap();
            } else {
                msg.reply(&ctx.http, answer).await.unwrap();
            }
        }
        let _ = self.0.send(Seen::Message(Box::new(msg)));
    }
}

/// A serenity client on the fake, started in the background.
async fn connect(
    fake: &FakeDiscord,
    intents: GatewayIntents,
) -> (Arc<serenity::http::Http>, mpsc::UnboundedReceiver<Seen>) {
    let http = HttpBuilder::new(TOKEN)
        .proxy(fake.url.clone())
        .ratelimiter_disabled(true)
        .build();
    let (tx, rx) = mpsc::unbounded_channel();
    let mut client = ClientBuilder::new_with_http(http, intents)
        .event_handler(Handler(tx))
        .await
        .unwrap();
    let http = client.http.clone();
    tokio::spawn(async move { client.start().await });
    (http, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    tokio::time::timeout(Duration::from_secs(15), rx.recv())
        .await
        .expect("no event from serenity within 15 s")
        .unwrap()
}

/// The next message event from a non-bot (the bot's own echoes are skipped).
async fn next_user_message(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Message {
    loop {
        if let Seen::Message(m) = next(rx).await {
            if !m.author.bot {
                return *m;
            }
        }
    }
}

fn alice(id: u64, channel_id: u64, guild_id: Option<u64>, content: &str) -> IncomingMessage {
    IncomingMessage {
        id,
        channel_id,
        guild_id,
        author_id: ALICE,
        author_name: "alice".into(),
        content: content.into(),
        author_is_bot: false,
    }
}

fn discord_code(e: serenity::Error) -> (u16, isize) {
    match e {
        serenity::Error::Http(serenity::http::HttpError::UnsuccessfulRequest(r)) => {
            (r.status_code.as_u16(), r.error.code)
        }
        other => panic!("not a Discord error: {other:?}"),
    }
}

#[tokio::test]
async fn serenity_connects_receives_replies_and_resumes() {
    let fake = FakeDiscord::start(BOT_ID).await;
    let s = fake.state.clone();
    s.require_token(&format!("Bot {TOKEN}"));
    let intents = GatewayIntents::GUILD_MESSAGES
        | GatewayIntents::DIRECT_MESSAGES
        | GatewayIntents::MESSAGE_CONTENT;
    let (http, mut rx) = connect(&fake, intents).await;

    s.wait_identified(1).await;
    let identify = s.last_identify().unwrap();
    assert_eq!(identify["token"], format!("Bot {TOKEN}"));
    assert_eq!(identify["intents"], intents.bits());
    assert_eq!(s.gateway_queries(), ["v=10"]);
    // Only the gateway URL is fetched on start.
    assert_eq!(s.rest_calls(), [("GET".into(), "/api/v10/gateway".into())]);
    match next(&mut rx).await {
        Seen::Ready { id, name } => assert_eq!((id, name.as_str()), (BOT_ID, BOT_NAME)),
        other => panic!("expected READY, got {other:?}"),
    }

    // A guild message, answered with `say`.
    let mention = format!("<@{BOT_ID}> deploy");
    s.push_message(alice(10, GENERAL, Some(GUILD), &mention))
        .await;
    let m = next_user_message(&mut rx).await;
    assert_eq!(
        (m.id.get(), m.channel_id.get(), m.guild_id.map(|g| g.get())),
        (10, GENERAL, Some(GUILD))
    );
    assert_eq!(
        (m.author.id.get(), m.author.name.as_str()),
        (ALICE, "alice")
    );
    assert_eq!(m.content, mention);
    assert!(m.mentions_user_id(UserId::new(BOT_ID)));
    assert!(m.member.is_some());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (m.timestamp.unix_timestamp() - now).abs() < 60,
        "{}",
        m.timestamp
    );
    let posted = s.wait_posted(1).await;
    assert_eq!(posted[0].channel_id, GENERAL);
    assert_eq!(posted[0].content, format!("echo: {mention}"));
    assert_eq!(posted[0].message_reference, None);

    // The bot's own post comes back over the gateway, as on Discord.
    loop {
        if let Seen::Message(m) = next(&mut rx).await {
            if m.author.bot {
                assert_eq!(m.author.id.get(), BOT_ID);
                assert_eq!(m.content, posted[0].content);
                break;
            }
        }
    }

    // A DM, answered with a reply.
    let dm = s.dm_channel_of(ALICE);
    s.push_message(alice(11, dm, None, "status")).await;
    let m = next_user_message(&mut rx).await;
    assert_eq!((m.channel_id.get(), m.guild_id), (dm, None));
    let posted = s.wait_posted(2).await;
    assert_eq!(posted[1].channel_id, dm);
    assert_eq!(posted[1].content, "echo: status");
    assert_eq!(posted[1].message_reference, Some(11));

    // REST shapes serenity must parse.
    let me = http.get_current_user().await.unwrap();
    assert_eq!(
        (me.id.get(), me.name.as_str(), me.bot),
        (BOT_ID, BOT_NAME, true)
    );
    let app = http.get_current_application_info().await.unwrap();
    assert_eq!(app.id.get(), BOT_ID);
    assert_eq!(app.owner.unwrap().id.get(), APP_OWNER_ID);
    let bot_gateway = http.get_bot_gateway().await.unwrap();
    assert_eq!(bot_gateway.shards, 1);
    let private = UserId::new(ALICE).create_dm_channel(&http).await.unwrap();
    assert_eq!((private.id.get(), private.recipient.id.get()), (dm, ALICE));
    match ChannelId::new(dm).to_channel(&http).await.unwrap() {
        Channel::Private(c) => assert_eq!(c.recipient.name, "alice"),
        other => panic!("expected a DM channel, got {other:?}"),
    }
    match ChannelId::new(GENERAL).to_channel(&http).await.unwrap() {
        Channel::Guild(c) => assert_eq!(c.guild_id.get(), GUILD),
        other => panic!("expected a guild channel, got {other:?}"),
    }
    ChannelId::new(GENERAL)
        .broadcast_typing(&http)
        .await
        .unwrap();
    assert_eq!(s.typing(), [GENERAL]);
    let sent = ChannelId::new(GENERAL).say(&http, "direct").await.unwrap();
    assert_eq!(
        (sent.author.id.get(), sent.content.as_str()),
        (BOT_ID, "direct")
    );
    let empty = ChannelId::new(GENERAL).say(&http, "").await.unwrap_err();
    assert_eq!(discord_code(empty), (400, 50006));

    // Deletes: allowed in a guild, refused for a user's DM message, refused when forbidden.
    let general = ChannelId::new(GENERAL);
    general
        .delete_message(&http, MessageId::new(10))
        .await
        .unwrap();
    let in_dm = ChannelId::new(dm)
        .delete_message(&http, MessageId::new(11))
        .await;
    assert_eq!(discord_code(in_dm.unwrap_err()), (403, 50003));
    s.set_delete_forbidden(true);
    let refused = general.delete_message(&http, MessageId::new(12)).await;
    assert_eq!(discord_code(refused.unwrap_err()), (403, 50013));
    assert_eq!(s.deleted(), [(GENERAL, 10)]);
    assert_eq!(s.delete_attempts(), 3);

    // A dropped connection: serenity resumes, and a message pushed meanwhile (from another
    // task: the future is Send) waits for the new connection and gets through.
    let before = Instant::now();
    s.drop_connection();
    let pusher = tokio::spawn({
        let s = s.clone();
        async move {
            s.push_message(alice(13, GENERAL, Some(GUILD), "after drop"))
                .await
        }
    });
    s.wait_reconnected().await;
    eprintln!("resumed after {:?}", before.elapsed());
    assert_eq!((s.identify_count(), s.resume_count()), (1, 1));
    pusher.await.unwrap();
    let m = next_user_message(&mut rx).await;
    assert_eq!(m.content, "after drop");
    let posted = s.wait_posted(4).await;
    assert_eq!(posted[3].content, "echo: after drop");
    assert_eq!(s.gateway_queries(), ["v=10", "v=10"]);
}

/// Heartbeats are answered; a refused RESUME makes serenity IDENTIFY again; without
/// MESSAGE_CONTENT, guild messages arrive blank unless they mention the bot.
#[tokio::test]
async fn heartbeats_refused_resume_and_the_content_intent() {
    let fake = FakeDiscord::start(BOT_ID).await;
    let s = fake.state.clone();
    s.set_echo_own_messages(false);
    s.set_heartbeat_interval(Duration::from_millis(500));
    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
    let (_http, mut rx) = connect(&fake, intents).await;
    s.wait_identified(1).await;
    // Heartbeats are acknowledged: serenity would reconnect after an unanswered one.
    s.wait_heartbeats(2).await;
    assert_eq!(s.gateway_queries().len(), 1);

    s.push_message(alice(20, GENERAL, Some(GUILD), "no mention"))
        .await;
    assert_eq!(next_user_message(&mut rx).await.content, "");
    let mention = format!("<@!{BOT_ID}> hi");
    s.push_message(alice(21, GENERAL, Some(GUILD), &mention))
        .await;
    assert_eq!(next_user_message(&mut rx).await.content, mention);
    let dm = s.dm_channel_of(ALICE);
    s.push_message(alice(22, dm, None, "in a DM")).await;
    assert_eq!(next_user_message(&mut rx).await.content, "in a DM");

    s.set_refuse_resume(true);
    let before = Instant::now();
    s.drop_connection();
    s.wait_identified(2).await;
    s.wait_reconnected().await;
    eprintln!("re-identified after {:?}", before.elapsed());
    assert_eq!(s.resume_count(), 0);
    s.push_message(alice(23, dm, None, "again")).await;
    assert_eq!(next_user_message(&mut rx).await.content, "again");
}

/// A wrong token is refused at IDENTIFY with 4004, which ends serenity's `start` with an error.
#[tokio::test]
async fn a_wrong_token_fails_start() {
    let fake = FakeDiscord::start(BOT_ID).await;
    fake.state.require_token("Bot the-right-token");
    let http = HttpBuilder::new(TOKEN)
        .proxy(fake.url.clone())
        .ratelimiter_disabled(true)
        .build();
    let (tx, _rx) = mpsc::unbounded_channel();
    let mut client = ClientBuilder::new_with_http(http, GatewayIntents::GUILD_MESSAGES)
        .event_handler(Handler(tx))
        .await
        .unwrap();
    let failed = tokio::time::timeout(Duration::from_secs(15), client.start())
        .await
        .expect("start did not end");
    assert!(
        matches!(
            failed,
            Err(serenity::Error::Gateway(
                serenity::gateway::GatewayError::InvalidAuthentication
            ))
        ),
        "{failed:?}"
    );
    assert_eq!(fake.state.identify_count(), 0);
    let me = client.http.get_current_user().await.unwrap_err();
    assert_eq!(discord_code(me), (401, 0));
}
