//! The Discord adapter end to end: a real serenity client inside `deputy run`, against a fake
//! Discord on 127.0.0.1 (REST through serenity's proxy setting, a fake gateway on a websocket).

mod support;

use support::discord::{FakeDiscord, IncomingMessage, BOT_NAME};
use support::*;

const BOT: u64 = 4242;
const GUILD: u64 = 77;
const CHANNEL: u64 = 1001;
const ALICE: u64 = 501;

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
