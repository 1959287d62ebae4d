//! The fake Discord of tests/support/discord.rs against a real serenity 0.12 client, so the
//! adapter's tests can trust its JSON shapes, its REST routes and its reconnect behaviour.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use serenity::all::{
    ActionRowComponent, ButtonStyle, ChannelId, ClientBuilder, Command, CommandDataOptionValue,
    CommandOptionType, Context, CreateActionRow, CreateButton, CreateCommand, CreateCommandOption,
    CreateInputText, CreateInteractionResponse, CreateInteractionResponseFollowup,
    CreateInteractionResponseMessage, CreateMessage, CreateModal, EditInteractionResponse,
    EventHandler, GatewayIntents, HttpBuilder, InputTextStyle, Interaction, InteractionId, Message,
    MessageFlags, MessageId, Ready, UserId,
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
    Interaction(Box<Interaction>),
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

    async fn interaction_create(&self, _: Context, interaction: Interaction) {
        let _ = self.0.send(Seen::Interaction(Box::new(interaction)));
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

/// The next interaction (messages in between are skipped).
async fn next_interaction(rx: &mut mpsc::UnboundedReceiver<Seen>) -> Interaction {
    loop {
        if let Seen::Interaction(i) = next(rx).await {
            return *i;
        }
    }
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

fn alice_in(channel_id: u64, guild_id: Option<u64>) -> Actor {
    Actor {
        user_id: ALICE,
        name: "alice".into(),
        channel_id,
        guild_id,
    }
}

/// Application commands, modals, buttons, ephemeral answers, deferrals, followups and edits,
/// as serenity sends and parses them; and what Discord refuses (a second answer, a late one,
/// an unknown interaction, a malformed modal, a click on someone else's ephemeral message).
#[tokio::test]
async fn serenity_answers_commands_modals_and_buttons() {
    let fake = FakeDiscord::start(BOT_ID).await;
    let s = fake.state.clone();
    s.require_token(&format!("Bot {TOKEN}"));
    let intents = GatewayIntents::GUILD_MESSAGES | GatewayIntents::DIRECT_MESSAGES;
    let (http, mut rx) = connect(&fake, intents).await;
    assert!(matches!(next(&mut rx).await, Seen::Ready { .. }));

    // Registration: a bulk overwrite of the global commands (the application id came with
    // READY). A command without a description is refused, as by Discord.
    let deputy = CreateCommand::new("deputy")
        .description("Run a deputy command")
        .add_option(
            CreateCommandOption::new(CommandOptionType::String, "command", "what to run")
                .required(true),
        );
    let made = Command::set_global_commands(&http, vec![deputy])
        .await
        .unwrap();
    assert_eq!((made.len(), made[0].name.as_str()), (1, "deputy"));
    assert_eq!(made[0].options[0].kind, CommandOptionType::String);
    assert!(made[0].options[0].required);
    let bad = Command::set_global_commands(&http, vec![CreateCommand::new("Bad Name")]).await;
    assert_eq!(discord_code(bad.unwrap_err()), (400, 50035));
    assert_eq!(s.commands().len(), 1);
    assert_eq!(http.get_global_commands().await.unwrap()[0].id, made[0].id);

    // The command in a guild: a member, the option's value; answered with a modal.
    let id = s
        .run_command(
            &alice_in(GENERAL, Some(GUILD)),
            "deputy",
            &[("command", "jenkins setkey")],
        )
        .await;
    let Interaction::Command(command) = next_interaction(&mut rx).await else {
        panic!("expected a command interaction");
    };
    assert_eq!(command.id.get(), id);
    assert_eq!(command.data.name, "deputy");
    assert_eq!(command.data.id, made[0].id);
    assert_eq!(
        command.data.options[0].value,
        CommandDataOptionValue::String("jenkins setkey".into())
    );
    assert_eq!(
        (command.user.id.get(), command.user.name.as_str()),
        (ALICE, "alice")
    );
    assert_eq!(command.guild_id.map(|g| g.get()), Some(GUILD));
    assert_eq!(command.member.as_ref().unwrap().guild_id.get(), GUILD);
    assert_eq!(command.channel_id.get(), GENERAL);
    let too_long_title =
        CreateModal::new("form:1", "t".repeat(46)).components(vec![CreateActionRow::InputText(
            CreateInputText::new(InputTextStyle::Short, "Key", "key"),
        )]);
    let refused = command
        .create_response(&http, CreateInteractionResponse::Modal(too_long_title))
        .await;
    assert_eq!(discord_code(refused.unwrap_err()), (400, 50035));
    let modal =
        CreateModal::new("form:1", "Link jenkins").components(vec![CreateActionRow::InputText(
            CreateInputText::new(InputTextStyle::Short, "API key", "key").placeholder("user:token"),
        )]);
    command
        .create_response(&http, CreateInteractionResponse::Modal(modal))
        .await
        .unwrap();
    let answered = s.wait_callback(id).await;
    assert_eq!(answered.kind, 9);
    let open = s.wait_modal(ALICE).await;
    assert_eq!(open.custom_id, "form:1");
    assert_eq!(open.inputs, [("key".to_string(), 1, "API key".to_string())]);
    // One answer per interaction.
    let again = command
        .create_response(
            &http,
            CreateInteractionResponse::Message(
                CreateInteractionResponseMessage::new().content("x"),
            ),
        )
        .await;
    assert_eq!(discord_code(again.unwrap_err()), (400, 40060));

    // The submission carries the modal's custom_id and the input's value; answered with an
    // ephemeral message with buttons, seen only by alice and never echoed on the gateway.
    let id = s.submit_modal(ALICE, &["alice:s3cret"]).await;
    assert!(s.open_modal(ALICE).is_none(), "a submitted modal closes");
    let Interaction::Modal(submit) = next_interaction(&mut rx).await else {
        panic!("expected a modal submission");
    };
    assert_eq!(
        (submit.id.get(), submit.data.custom_id.as_str()),
        (id, "form:1")
    );
    assert_eq!(submit.user.id.get(), ALICE);
    assert!(
        submit.message.is_none(),
        "opened from a command, not a message"
    );
    let ActionRowComponent::InputText(input) = &submit.data.components[0].components[0] else {
        panic!("expected a text input");
    };
    assert_eq!(
        (input.custom_id.as_str(), input.value.as_deref()),
        ("key", Some("alice:s3cret"))
    );
    let buttons = CreateActionRow::Buttons(vec![
        CreateButton::new("confirm:1")
            .label("Confirm")
            .style(ButtonStyle::Danger),
        CreateButton::new("cancel:1")
            .label("Cancel")
            .style(ButtonStyle::Secondary),
    ]);
    let answer = CreateInteractionResponseMessage::new()
        .content("Stored. Run it now?")
        .ephemeral(true)
        .components(vec![buttons]);
    submit
        .create_response(&http, CreateInteractionResponse::Message(answer))
        .await
        .unwrap();
    let answered = s.wait_callback(id).await;
    assert!(
        (answered.kind, answered.ephemeral()) == (4, true),
        "{answered:?}"
    );
    let shown = s
        .wait_message("the ephemeral answer", |p| p.interaction == Some(id))
        .await;
    assert_eq!(
        (shown.ephemeral_to, shown.channel_id),
        (Some(ALICE), GENERAL)
    );
    assert_eq!(shown.button("Confirm"), "confirm:1");
    assert_eq!(shown.buttons()[1].style, 2);
    let bob = 43;
    let denied = s.click(bob, "bob", shown.id, "confirm:1").await;
    assert!(denied.unwrap_err().contains("ephemeral"));
    assert!(s.click(ALICE, "alice", shown.id, "nope").await.is_err());

    // The click: custom_id, the message it is on (ephemeral), answered by editing that message.
    let id = s
        .click(ALICE, "alice", shown.id, "confirm:1")
        .await
        .unwrap();
    let Interaction::Component(click) = next_interaction(&mut rx).await else {
        panic!("expected a component interaction");
    };
    assert_eq!(
        (click.id.get(), click.data.custom_id.as_str()),
        (id, "confirm:1")
    );
    assert_eq!(click.message.id.get(), shown.id);
    assert!(click
        .message
        .flags
        .unwrap()
        .contains(MessageFlags::EPHEMERAL));
    assert_eq!(click.user.id.get(), ALICE);
    click
        .create_response(
            &http,
            CreateInteractionResponse::UpdateMessage(
                CreateInteractionResponseMessage::new()
                    .content("Confirmed.")
                    .components(vec![]),
            ),
        )
        .await
        .unwrap();
    s.wait_callback(id).await;
    let edited = s.message(shown.id).unwrap();
    assert_eq!(edited.content, "Confirmed.");
    assert!(edited.buttons().is_empty());

    // A deferral, then the original filled in (ephemeral from the deferral), then followups.
    let dm = s.dm_channel_of(ALICE);
    let id = s
        .run_command(&alice_in(dm, None), "deputy", &[("command", "whoami")])
        .await;
    let Interaction::Command(command) = next_interaction(&mut rx).await else {
        panic!("expected a command interaction");
    };
    assert!(command.guild_id.is_none() && command.member.is_none());
    assert_eq!(command.user.id.get(), ALICE);
    command.defer_ephemeral(&http).await.unwrap();
    let original = command
        .edit_response(
            &http,
            EditInteractionResponse::new().content("You are alice."),
        )
        .await
        .unwrap();
    let first = s.message(original.id.get()).unwrap();
    assert_eq!(
        (first.content.as_str(), first.ephemeral),
        ("You are alice.", true)
    );
    assert_eq!(first.interaction, Some(id));
    let more = command
        .create_followup(
            &http,
            CreateInteractionResponseFollowup::new()
                .content("and more")
                .ephemeral(true),
        )
        .await
        .unwrap();
    assert!(more.flags.unwrap().contains(MessageFlags::EPHEMERAL));
    let public = command
        .create_followup(
            &http,
            CreateInteractionResponseFollowup::new().content("for all"),
        )
        .await
        .unwrap();
    assert!(!s.message(public.id.get()).unwrap().ephemeral);
    // A public followup comes back over the gateway; an ephemeral one does not.
    loop {
        if let Seen::Message(m) = next(&mut rx).await {
            assert_ne!(m.content, "and more");
            if m.content == "for all" {
                break;
            }
        }
    }

    // A public message with a button: anyone in the channel may click it; the member's user
    // becomes the interaction's user.
    let sent = ChannelId::new(GENERAL)
        .send_message(
            &http,
            CreateMessage::new()
                .content("Deploy prod?")
                .components(vec![CreateActionRow::Buttons(vec![CreateButton::new(
                    "confirm:2",
                )
                .label("Confirm")])]),
        )
        .await
        .unwrap();
    let id = s
        .click(bob, "bob", sent.id.get(), "confirm:2")
        .await
        .unwrap();
    let Interaction::Component(click) = next_interaction(&mut rx).await else {
        panic!("expected a component interaction");
    };
    assert_eq!(
        (click.user.id.get(), click.guild_id.map(|g| g.get())),
        (bob, Some(GUILD))
    );
    assert_eq!(click.message.content, "Deploy prod?");

    // Too late, and an interaction Discord never sent: both 10062.
    s.set_response_deadline(Some(Duration::ZERO));
    let late = click
        .create_response(&http, CreateInteractionResponse::Acknowledge)
        .await;
    assert_eq!(discord_code(late.unwrap_err()), (404, 10062));
    let unknown = http
        .create_interaction_response(
            InteractionId::new(id + 1000),
            "forged",
            &CreateInteractionResponse::Acknowledge,
            vec![],
        )
        .await;
    assert_eq!(discord_code(unknown.unwrap_err()), (404, 10062));
    assert_eq!(s.refused_callbacks().len(), 4);
}
