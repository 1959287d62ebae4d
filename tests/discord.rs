//! The Discord adapter end to end: a real serenity client inside `deputy run`, against a fake
//! Discord on 127.0.0.1 (REST through serenity's proxy setting, a fake gateway on a websocket).

mod support;

use support::discord::{Actor, FakeDiscord, IncomingMessage, RawInteraction, BOT_NAME};
use support::*;

const BOT: u64 = 4242;
const GUILD: u64 = 77;
const CHANNEL: u64 = 1001;
const ALICE: u64 = 501;
const BOB: u64 = 502;

fn discord_deputy(jenkins: &str, fake: &FakeDiscord, extra: &str) -> Deputy {
    let mut d = Deputy::new(
        jenkins,
        &format!(
            "\n[discord]\nenabled = true\nproxy = \"{}\"\n{extra}",
            fake.url
        ),
    );
    d.env
        .push(("DISCORD_TOKEN".into(), "test-bot-token".into()));
    d
}

fn msg(id: u64, channel: u64, guild: Option<u64>, content: &str) -> IncomingMessage {
    IncomingMessage {
        id,
        channel_id: channel,
        guild_id: guild,
        author_id: ALICE,
        author_name: "alice".into(),
        content: content.into(),
        author_is_bot: false,
    }
}

fn sigterm(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test]
async fn mentions_dms_secrets_and_identity_across_server_and_dm() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    let identify = fake.state.last_identify().unwrap();
    assert_eq!(identify["token"], "Bot test-bot-token");
    let intents = identify["intents"].as_u64().unwrap();
    assert_ne!(intents & (1 << 15), 0, "MESSAGE_CONTENT intent requested");

    // A mention in a server: the reply goes to that channel.
    fake.state
        .push_message(msg(1, CHANNEL, Some(GUILD), &format!("<@{BOT}> help")))
        .await;
    let posted = fake.state.wait_posted(1).await;
    assert_eq!(posted[0].channel_id, CHANNEL);
    assert!(
        posted[0].content.contains("I run commands"),
        "{:?}",
        posted[0]
    );
    // Chatter without a mention gets nothing (and no typing).
    fake.state
        .push_message(msg(2, CHANNEL, Some(GUILD), "jenkins is slow today"))
        .await;

    // A key pasted in the server: deleted, not stored, warning by DM.
    let key = format!("<@!{BOT}> jenkins setkey {ALICE_KEY}");
    fake.state
        .push_message(msg(3, CHANNEL, Some(GUILD), &key))
        .await;
    let posted = fake.state.wait_posted(3).await;
    assert_eq!(fake.state.deleted(), vec![(CHANNEL, 3)]);
    let dm = fake.state.dm_channel_of(ALICE);
    let warning = posted
        .iter()
        .find(|p| p.channel_id == dm)
        .expect("a DM warning");
    assert!(
        warning.content.contains("treat it as exposed"),
        "{warning:?}"
    );
    assert!(
        warning.content.contains("I deleted your message"),
        "{warning:?}"
    );
    assert!(posted
        .iter()
        .any(|p| p.channel_id == CHANNEL && p.content.contains("sent you a direct message")));
    assert!(posted.iter().all(|p| !p.content.contains("alicetoken")));

    // The key in a DM, then a command in the server: Jenkins sees alice.
    fake.state
        .push_message(msg(4, dm, None, &format!("jenkins setkey {ALICE_KEY}")))
        .await;
    let posted = fake.state.wait_posted(4).await;
    assert!(
        posted[3].content.starts_with("Stored your jenkins key"),
        "{:?}",
        posted[3]
    );
    fake.state
        .push_message(msg(
            5,
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT}> jenkins build deploy"),
        ))
        .await;
    let posted = fake.state.wait_posted(5).await;
    assert!(
        posted[4].content.starts_with("Started deploy as alice"),
        "{:?}",
        posted[4]
    );
    assert_eq!(
        jenkins.seen().last().unwrap().user.as_deref(),
        Some("alice")
    );
    assert!(
        fake.state.typing().contains(&CHANNEL),
        "typing while Jenkins answered"
    );
    assert_eq!(fake.state.deleted().len(), 1);

    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
    let _ = BOT_NAME;
}

#[tokio::test]
async fn a_refused_delete_is_reported_and_long_replies_are_split() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let packs = tempfile::tempdir().unwrap();
    std::fs::write(
        packs.path().join("long.toml"),
        format!(
            "[service]\nname = \"long\"\nprefixes = [\"long\"]\nbase_url = \"{}\"\nauth = {{ kind = \"basic\" }}\n\n[[command]]\nname = \"reply\"\nhelp = \"x\"\npath = \"/me/api/json\"\nreply = \"\"\"\n{{% for i in range(400) %}}line {{{{ i }}}} of a long reply\n{{% endfor %}}\"\"\"\n",
            jenkins.url
        ),
    )
    .unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/commands/jenkins.toml"),
        packs.path().join("jenkins.toml"),
    )
    .unwrap();
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    deputy.use_packs(packs.path());
    let child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;

    fake.state.set_delete_forbidden(true);
    fake.state
        .push_message(msg(
            1,
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT}> jenkins setkey {ALICE_KEY}"),
        ))
        .await;
    let posted = fake.state.wait_posted(2).await;
    let warning = posted.iter().find(|p| p.channel_id != CHANNEL).unwrap();
    assert!(
        warning.content.contains(
            "I could not delete your message (I lack the Manage Messages permission here)"
        ),
        "{warning:?}"
    );
    assert!(fake.state.deleted().is_empty());
    assert_eq!(fake.state.delete_attempts(), 1);

    let dm = fake.state.dm_channel_of(ALICE);
    fake.state
        .push_message(msg(2, dm, None, &format!("long setkey {ALICE_KEY}")))
        .await;
    fake.state.wait_posted(3).await;
    fake.state
        .push_message(msg(
            3,
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT}> long reply"),
        ))
        .await;
    let posted = fake.state.wait_posted(5).await;
    let parts: Vec<_> = posted[3..]
        .iter()
        .filter(|p| p.content.contains("of a long reply"))
        .collect();
    assert!(parts.len() >= 2, "{posted:?}");
    for p in &parts {
        assert!(p.content.chars().count() <= 2000, "{}", p.content.len());
        assert!(!p.content.starts_with('\n'));
    }
    assert!(parts[0].content.starts_with("line 0 of a long reply"));
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("could not delete a message holding a secret"),
        "{stderr}"
    );
    assert!(!stderr.contains("alicetoken") && !stderr.contains("test-bot-token"));
}

#[tokio::test]
async fn reconnects_after_the_gateway_drops_and_shutdown_finishes_replies_in_flight() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    let dm = fake.state.dm_channel_of(ALICE);
    fake.state
        .push_message(msg(1, dm, None, &format!("jenkins setkey {ALICE_KEY}")))
        .await;
    fake.state.wait_posted(1).await;

    fake.state.drop_connection();
    fake.state.wait_reconnected().await;
    fake.state
        .push_message(msg(2, dm, None, "jenkins last after-reconnect"))
        .await;
    let posted = fake.state.wait_posted(2).await;
    assert!(
        posted[1].content.starts_with("after-reconnect #42"),
        "{:?}",
        posted[1]
    );

    // A reply in flight when SIGTERM arrives is still sent before deputy exits.
    let started = jenkins.state.slow_started.notified();
    fake.state
        .push_message(msg(3, dm, None, "jenkins last slow"))
        .await;
    started.await;
    sigterm(&child);
    jenkins.state.release_slow.notify_one();
    let status = child.wait().await.unwrap();
    assert!(status.success());
    let posted = fake.state.posted();
    assert!(
        posted.iter().any(|p| p.content.starts_with("slow #42")),
        "{posted:?}"
    );
}

#[tokio::test]
async fn run_refuses_to_start_without_the_token() {
    let fake = FakeDiscord::start(BOT).await;
    let mut deputy = discord_deputy("http://127.0.0.1:9", &fake, "");
    deputy.env.clear();
    for args in [&["run"][..], &["check"]] {
        let run = deputy.run_with_input(args, &[]).await;
        assert_eq!(run.code(), Some(3), "{args:?}");
        assert!(
            run.stderr().contains("DISCORD_TOKEN is not set"),
            "{}",
            run.stderr()
        );
    }
    assert_eq!(fake.state.identify_count(), 0);
}

#[tokio::test]
async fn a_replica_runs_only_the_shards_it_is_given() {
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy("http://127.0.0.1:9", &fake, "shards = \"1/2\"\n");
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    let identify = fake.state.last_identify().unwrap();
    assert_eq!(identify["shard"], serde_json::json!([1, 2]), "{identify}");
    assert_eq!(
        fake.state.identify_count(),
        1,
        "shard 0 is another replica's"
    );
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());

    let bad = discord_deputy("http://127.0.0.1:9", &fake, "shards = \"2-3/2\"\n");
    let run = Run(tokio::process::Command::from(bad.command(&["check"]))
        .output()
        .await
        .unwrap());
    assert_eq!(run.code(), Some(3), "{}", run.stderr());
    assert!(
        run.stderr().contains("shards 2 to 3 are not within 0 to 1"),
        "{}",
        run.stderr()
    );
}

fn actor(user_id: u64, channel_id: u64, guild_id: Option<u64>) -> Actor {
    let name = if user_id == ALICE { "alice" } else { "bob" };
    Actor {
        user_id,
        name: name.into(),
        channel_id,
        guild_id,
    }
}

/// A pack whose `deploy` asks for confirmation, on the fake Jenkins's build route.
fn ops_packs(jenkins: &str) -> tempfile::TempDir {
    let packs = tempfile::tempdir().unwrap();
    std::fs::write(
        packs.path().join("ops.toml"),
        format!(
            "[service]\nname = \"ops\"\nprefixes = [\"ops\"]\nbase_url = \"{jenkins}\"\n\
             auth = {{ kind = \"basic\", hint = \"user:token\" }}\n\n[[command]]\nname = \"deploy\"\n\
             help = \"Deploy <job>\"\nargs = [\"job\"]\nconfirm = true\nmethod = \"POST\"\n\
             path = \"/job/{{{{ job | segment }}}}/buildWithParameters\"\n\
             reply = \"Started {{{{ job }}}} as {{{{ user.name }}}}\"\n"
        ),
    )
    .unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/commands/jenkins.toml"),
        packs.path().join("jenkins.toml"),
    )
    .unwrap();
    packs
}

/// A click on `message`'s button `custom_id` by `who`, as Discord's client would no longer
/// offer it (the buttons are gone, or the message is someone else's): a replay or a forgery.
fn click_on(who: &Actor, message: u64, custom_id: &str) -> RawInteraction {
    RawInteraction {
        actor: who.clone(),
        kind: 3,
        data: serde_json::json!({ "custom_id": custom_id, "component_type": 2 }),
        message_id: Some(message),
    }
}

/// `/deputy command: <text>` by `who`; the interaction's id.
async fn slash(fake: &FakeDiscord, who: &Actor, text: &str) -> u64 {
    fake.state
        .run_command(who, "deputy", &[("command", text)])
        .await
}

/// Alice presses the button labelled `label` on `question`; the answer that follows.
async fn press(
    fake: &FakeDiscord,
    question: &support::discord::Posted,
    label: &str,
) -> support::discord::Posted {
    let custom_id = question.button(label);
    let click = fake
        .state
        .click(ALICE, "alice", question.id, &custom_id)
        .await
        .unwrap();
    answer_to(fake, click).await
}

fn buttons_gone(fake: &FakeDiscord, message: u64) -> bool {
    fake.state.message(message).unwrap().buttons().is_empty()
}

/// The interaction's answer as a posted message (a type 4 response or a filled deferral).
async fn answer_to(fake: &FakeDiscord, interaction: u64) -> support::discord::Posted {
    fake.state
        .wait_message(&format!("the answer to interaction {interaction}"), |p| {
            p.interaction == Some(interaction)
        })
        .await
}

#[tokio::test]
async fn a_key_through_a_modal_is_stored_used_and_never_posted() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    let child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;

    // `/deputy` is registered once, with one required text option.
    let commands = fake.state.wait_commands().await;
    assert_eq!(commands.len(), 1, "{commands:?}");
    let (guild, command) = &commands[0];
    assert_eq!((guild, command["name"].as_str()), (&None, Some("deputy")));
    assert_eq!(command["options"][0]["name"], "command");
    assert_eq!(command["options"][0]["type"], 3);
    assert_eq!(command["options"][0]["required"], true);

    // `@deputy jenkins setkey` in a server: a plain message cannot be ephemeral, so the
    // "Link your account" button goes by DM.
    fake.state
        .push_message(msg(
            1,
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT}> jenkins setkey"),
        ))
        .await;
    let dm = fake.state.dm_channel_of(ALICE);
    let offer = fake
        .state
        .wait_message("the link button by DM", |p| p.channel_id == dm)
        .await;
    let link = offer.button("Link your account");
    fake.state
        .wait_message("the channel notice", |p| {
            p.channel_id == CHANNEL && p.content.contains("sent you a direct message")
        })
        .await;
    assert!(
        fake.state.deleted().is_empty(),
        "a bare setkey holds no secret"
    );

    // The click opens a modal with one short text input; nothing is posted.
    let click = fake
        .state
        .click(ALICE, "alice", offer.id, &link)
        .await
        .unwrap();
    let opened = fake.state.wait_callback(click).await;
    assert_eq!(opened.kind, 9, "{opened:?}");
    let modal = fake.state.wait_modal(ALICE).await;
    assert_eq!(modal.inputs.len(), 1, "{modal:?}");
    assert_eq!(modal.inputs[0].1, 1, "short style");
    assert!(modal.title.contains("jenkins"), "{modal:?}");
    let submit = fake.state.submit_modal(ALICE, &[ALICE_KEY]).await;
    let stored = answer_to(&fake, submit).await;
    assert!(
        stored.content.starts_with("Stored your jenkins key"),
        "{stored:?}"
    );
    assert!(stored.ephemeral, "{stored:?}");

    // The key is used: a command through `/deputy` in the server reaches Jenkins as alice,
    // and the public result is a public answer.
    let run = slash(
        &fake,
        &actor(ALICE, CHANNEL, Some(GUILD)),
        "jenkins build deploy",
    )
    .await;
    let started = answer_to(&fake, run).await;
    assert!(
        started.content.starts_with("Started deploy as alice"),
        "{started:?}"
    );
    assert!(!started.ephemeral);
    assert_eq!(
        jenkins.seen().last().unwrap().user.as_deref(),
        Some("alice")
    );

    // `/deputy jenkins setkey` answers with the modal at once; a value that cannot be a key
    // gets a clear private error and changes nothing; the next form takes the key.
    let setkey = || async {
        let id = slash(&fake, &actor(ALICE, CHANNEL, Some(GUILD)), "jenkins setkey").await;
        assert_eq!(fake.state.wait_callback(id).await.kind, 9);
    };
    setkey().await;
    let submit = fake.state.submit_modal(ALICE, &["no colon here"]).await;
    let wrong = answer_to(&fake, submit).await;
    assert!(wrong.ephemeral, "{wrong:?}");
    assert!(wrong.content.contains("joined by a colon"), "{wrong:?}");
    let run = slash(
        &fake,
        &actor(ALICE, CHANNEL, Some(GUILD)),
        "jenkins build after-typo",
    )
    .await;
    let kept = answer_to(&fake, run).await;
    assert!(
        kept.content.starts_with("Started after-typo as alice"),
        "{kept:?}"
    );
    setkey().await;
    let submit = fake.state.submit_modal(ALICE, &[ALICE_KEY]).await;
    assert!(answer_to(&fake, submit)
        .await
        .content
        .starts_with("Stored your jenkins key"));

    // A key typed into `/deputy` in a server is refused (only bob saw his command: the answer
    // is ephemeral) and not stored.
    let bob = actor(BOB, CHANNEL, Some(GUILD));
    let typed = slash(&fake, &bob, &format!("jenkins setkey {BOB_KEY}")).await;
    let refused = answer_to(&fake, typed).await;
    assert!(refused.ephemeral, "{refused:?}");
    assert!(
        refused
            .content
            .contains("keys are accepted only in a direct message"),
        "{refused:?}"
    );
    let run = slash(&fake, &bob, "jenkins build deploy").await;
    assert!(!answer_to(&fake, run).await.content.starts_with("Started"));
    assert!(jenkins
        .seen()
        .iter()
        .all(|s| s.user.as_deref() != Some("bob")));

    // The key is in no message and no request body deputy sent, nor in its log.
    let secret = ALICE_KEY.split_once(':').unwrap().1;
    for body in fake.state.bodies() {
        assert!(
            !body.contains(secret) && !body.contains("bobtoken"),
            "{body}"
        );
    }
    for posted in fake.state.posted() {
        assert!(!posted.content.contains(secret), "{posted:?}");
    }
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stderr).contains(secret));
}

#[tokio::test]
async fn confirmations_accepted_declined_by_another_user_and_expired() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let packs = ops_packs(&jenkins.url);
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    deputy.use_packs(packs.path());
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    fake.state.wait_commands().await;
    let dm = fake.state.dm_channel_of(ALICE);
    fake.state
        .push_message(msg(1, dm, None, &format!("ops setkey {ALICE_KEY}")))
        .await;
    fake.state.wait_posted(1).await;
    let builds = || jenkins.seen().iter().filter(|s| s.method == "POST").count();
    let alice = actor(ALICE, CHANNEL, Some(GUILD));

    // Accepted: the question is ephemeral, with Confirm and Cancel; the call goes out only
    // after the click, as alice.
    let asked = slash(&fake, &alice, "ops deploy prod").await;
    let question = answer_to(&fake, asked).await;
    assert!(question.ephemeral, "{question:?}");
    assert!(question.content.contains("ops deploy prod"), "{question:?}");
    assert_eq!(builds(), 0, "nothing runs before the click");
    let confirm = question.button("Confirm");
    let done = press(&fake, &question, "Confirm").await;
    assert!(
        done.content.starts_with("Started prod as alice"),
        "{done:?}"
    );
    assert_eq!(builds(), 1);
    assert_eq!(
        jenkins.seen().last().unwrap().user.as_deref(),
        Some("alice")
    );
    // The buttons are gone from the question; the same click again (a replay): refused,
    // nothing runs twice.
    assert!(buttons_gone(&fake, question.id));
    assert!(fake
        .state
        .click(ALICE, "alice", question.id, &confirm)
        .await
        .is_err());
    let replay = fake
        .state
        .push_interaction(click_on(&alice, question.id, &confirm))
        .await;
    let refused = answer_to(&fake, replay).await;
    assert!(
        refused.content.contains("expired or was already used"),
        "{refused:?}"
    );
    assert!(refused.ephemeral);
    assert_eq!(builds(), 1);

    // Declined.
    let asked = slash(&fake, &alice, "ops deploy prod").await;
    let question = answer_to(&fake, asked).await;
    let cancel = question.button("Cancel");
    let click = fake
        .state
        .click(ALICE, "alice", question.id, &cancel)
        .await
        .unwrap();
    assert!(answer_to(&fake, click)
        .await
        .content
        .starts_with("Cancelled"));
    // Cancel took the buttons away and used the offer up: Confirm (replayed) does nothing.
    assert!(buttons_gone(&fake, question.id));
    let confirm = question.button("Confirm");
    let late = fake
        .state
        .push_interaction(click_on(&alice, question.id, &confirm))
        .await;
    assert!(answer_to(&fake, late)
        .await
        .content
        .contains("expired or was already used"));
    assert_eq!(builds(), 1);

    // Another user: Discord shows an ephemeral message only to alice, so bob's click can only
    // be forged; deputy refuses it and alice's question still stands.
    let asked = slash(&fake, &alice, "ops deploy prod").await;
    let question = answer_to(&fake, asked).await;
    let confirm = question.button("Confirm");
    assert!(fake
        .state
        .click(BOB, "bob", question.id, &confirm)
        .await
        .is_err());
    let forged = fake
        .state
        .push_interaction(click_on(
            &actor(BOB, CHANNEL, Some(GUILD)),
            question.id,
            &confirm,
        ))
        .await;
    let refused = answer_to(&fake, forged).await;
    assert!(
        refused.content.contains("offered to someone else"),
        "{refused:?}"
    );
    assert_eq!(refused.ephemeral_to, Some(BOB));
    assert_eq!(builds(), 1);
    // (The forged click took the buttons off too; alice's own click still counts.)
    let click = fake
        .state
        .push_interaction(click_on(&alice, question.id, &confirm))
        .await;
    assert!(answer_to(&fake, click)
        .await
        .content
        .starts_with("Started prod as alice"));
    assert_eq!(builds(), 2);

    // A mention in the server: a plain message there cannot be ephemeral, so the question
    // comes by DM, and Confirm there runs it.
    fake.state
        .push_message(msg(
            2,
            CHANNEL,
            Some(GUILD),
            &format!("<@{BOT}> ops deploy stage"),
        ))
        .await;
    let question = fake
        .state
        .wait_message("the question by DM", |p| {
            p.channel_id == dm && p.content.contains("ops deploy stage")
        })
        .await;
    assert!(!question.ephemeral);
    let done = press(&fake, &question, "Confirm").await;
    assert!(
        done.content.starts_with("Started stage as alice"),
        "{done:?}"
    );
    assert!(buttons_gone(&fake, question.id));
    assert_eq!(builds(), 3);
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());

    // Expired: a deputy that gives no time to confirm, so every question has expired when
    // its button is pressed.
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    deputy.use_packs(packs.path());
    let mut config = std::fs::read_to_string(deputy.config()).unwrap();
    config = config.replacen("[bot]\n", "[bot]\nconfirm_ttl_secs = 0\n", 1);
    std::fs::write(deputy.config(), config).unwrap();
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    fake.state.wait_commands().await;
    let asked = slash(&fake, &alice, "ops deploy prod").await;
    let question = answer_to(&fake, asked).await;
    assert!(question.content.contains("within 0 s"), "{question:?}");
    let click = fake
        .state
        .click(ALICE, "alice", question.id, &question.button("Confirm"))
        .await
        .unwrap();
    let expired = answer_to(&fake, click).await;
    assert!(expired.content.contains("expired"), "{expired:?}");
    assert_eq!(builds(), 3);
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn forged_stale_and_unknown_interactions_are_refused_and_store_nothing() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    fake.state.wait_commands().await;
    let alice = actor(ALICE, CHANNEL, Some(GUILD));
    let bob = actor(BOB, CHANNEL, Some(GUILD));

    // Alice's form is open; bob submits a key under its custom_id: refused, nothing stored.
    let opened = slash(&fake, &alice, "jenkins setkey").await;
    assert_eq!(fake.state.wait_callback(opened).await.kind, 9);
    let form = fake.state.wait_modal(ALICE).await;
    let submit = |who: Actor, custom_id: String, value: &str| RawInteraction {
        actor: who,
        kind: 5,
        data: serde_json::json!({ "custom_id": custom_id, "components": [
            { "type": 1, "components": [{ "type": 4, "custom_id": "secret", "value": value }] }
        ] }),
        message_id: None,
    };
    let forged = fake
        .state
        .push_interaction(submit(bob.clone(), form.custom_id.clone(), BOB_KEY))
        .await;
    let refused = answer_to(&fake, forged).await;
    assert!(
        refused.content.contains("offered to someone else"),
        "{refused:?}"
    );
    assert!(refused.ephemeral);
    let whoami = slash(&fake, &bob, "jenkins build x").await;
    let answer = answer_to(&fake, whoami).await;
    assert!(!answer.content.starts_with("Started"), "{answer:?}");
    assert!(
        jenkins.seen().iter().all(|s| s.user.is_none()),
        "bob's key was not stored"
    );

    // Alice's own submission works once; replaying it is refused and changes nothing.
    let first = fake.state.submit_modal(ALICE, &[ALICE_KEY]).await;
    assert!(answer_to(&fake, first)
        .await
        .content
        .starts_with("Stored your jenkins key"));
    let replay = fake
        .state
        .push_interaction(submit(alice.clone(), form.custom_id.clone(), BOB_KEY))
        .await;
    let refused = answer_to(&fake, replay).await;
    assert!(
        refused.content.contains("expired or was already used"),
        "{refused:?}"
    );
    let run = slash(&fake, &alice, "jenkins build deploy").await;
    let started = answer_to(&fake, run).await;
    assert!(started.content.starts_with("Started deploy as alice"));
    assert_eq!(
        jenkins.seen().last().unwrap().user.as_deref(),
        Some("alice")
    );

    // Custom ids deputy never made (as if forged onto one of its messages, or left by an
    // older bot): clicks and a submission, refused.
    for (kind, data) in [
        (
            3,
            serde_json::json!({ "custom_id": "another-bot:approve", "component_type": 2 }),
        ),
        (
            3,
            serde_json::json!({ "custom_id": format!("dp1.{}.yes", "0".repeat(32)), "component_type": 2 }),
        ),
    ] {
        let id = fake
            .state
            .push_interaction(RawInteraction {
                actor: alice.clone(),
                kind,
                data,
                message_id: Some(started.id),
            })
            .await;
        let refused = answer_to(&fake, id).await;
        assert!(
            refused.content.contains("I don't know that button or form")
                || refused.content.contains("expired or was already used"),
            "{refused:?}"
        );
        assert!(refused.ephemeral);
    }
    let unknown = fake
        .state
        .push_interaction(submit(alice.clone(), "dp1.nothing.key".into(), BOB_KEY))
        .await;
    assert!(answer_to(&fake, unknown)
        .await
        .content
        .contains("I don't know that button or form"));
    let run = slash(&fake, &alice, "jenkins build again").await;
    assert!(answer_to(&fake, run)
        .await
        .content
        .starts_with("Started again as alice"));
    assert_eq!(
        jenkins.seen().last().unwrap().user.as_deref(),
        Some("alice")
    );
    for body in fake.state.bodies() {
        assert!(!body.contains("bobtoken"), "{body}");
    }
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn a_slow_command_is_deferred_then_answered() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeDiscord::start(BOT).await;
    let deputy = discord_deputy(&jenkins.url, &fake, "");
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_identified(1).await;
    fake.state.wait_commands().await;
    let dm = fake.state.dm_channel_of(ALICE);
    fake.state
        .push_message(msg(1, dm, None, &format!("jenkins setkey {ALICE_KEY}")))
        .await;
    fake.state.wait_posted(1).await;

    // Jenkins holds the answer: deputy defers within Discord's 3 s (the fake refuses later
    // answers), ephemerally, then fills it in and posts the public result below it.
    let started = jenkins.state.slow_started.notified();
    let id = slash(
        &fake,
        &actor(ALICE, CHANNEL, Some(GUILD)),
        "jenkins last slow",
    )
    .await;
    started.await;
    let deferred = fake.state.wait_callback(id).await;
    assert_eq!(deferred.kind, 5, "{deferred:?}");
    assert!(deferred.ephemeral());
    jenkins.state.release_slow.notify_one();
    let result = fake
        .state
        .wait_message("the public result", |p| {
            p.interaction == Some(id) && p.content.starts_with("slow #42")
        })
        .await;
    assert!(!result.ephemeral, "{result:?}");
    assert!(fake.state.refused_callbacks().is_empty());
    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}
