//! The Slack adapter end to end: slack-morphism's Socket Mode client inside `deputy run`,
//! against a fake Slack on 127.0.0.1 (Web API over plain HTTP, Socket Mode on a websocket).

mod support;

use std::time::Duration;

use support::slack::{DirectMessage, FakeSlack, Mention, APP_TOKEN, BOT_TOKEN, BOT_USER};
use support::*;

fn slack_deputy(jenkins: &str, fake: &FakeSlack) -> Deputy {
    let mut d = Deputy::new(
        jenkins,
        // One Socket Mode connection, so every event arrives once on a known socket.
        &format!(
            "\n[slack]\nenabled = true\napi_url = \"{}/\"\nconnections = 1\n",
            // A trailing slash, as an operator may well write it.
            fake.api_url
        ),
    );
    d.env.push(("SLACK_APP_TOKEN".into(), APP_TOKEN.into()));
    d.env.push(("SLACK_BOT_TOKEN".into(), BOT_TOKEN.into()));
    d
}

fn mention(team: &str, user: &str, text: &str, ts: &str, event_id: &str) -> Mention {
    Mention {
        team: team.into(),
        channel: "C0GENERAL".into(),
        user: user.into(),
        text: format!("<@{BOT_USER}> {text}"),
        ts: ts.into(),
        thread_ts: None,
        event_id: event_id.into(),
    }
}

fn dm(team: &str, user: &str, text: &str, ts: &str, event_id: &str) -> DirectMessage {
    DirectMessage {
        team: team.into(),
        channel: format!("D{user}"),
        user: user.into(),
        text: text.into(),
        ts: ts.into(),
        event_id: event_id.into(),
    }
}

fn sigterm(child: &tokio::process::Child) {
    let pid = nix::unistd::Pid::from_raw(child.id().expect("running") as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
}

#[tokio::test]
async fn mentions_thread_dms_answer_and_redeliveries_are_handled_once() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    let child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;

    let env = fake
        .state
        .send_mention(mention("T1", "U1", "help", "100.1", "Ev1"))
        .await;
    assert!(fake.state.wait_acked(&env).await < Duration::from_secs(3));
    let posted = fake.state.wait_posted(1).await;
    assert_eq!(posted[0].method, "chat.postMessage");
    assert_eq!(posted[0].channel, "C0GENERAL");
    assert_eq!(
        posted[0].thread_ts.as_deref(),
        Some("100.1"),
        "threaded on the mention"
    );
    assert!(posted[0].text.contains("I run commands"));
    assert_eq!(posted[0].token, BOT_TOKEN);

    // Slack redelivers the same event (same event_id, new envelope): acked, not answered again.
    let again = fake
        .state
        .send_mention(mention("T1", "U1", "help", "100.1", "Ev1"))
        .await;
    fake.state.wait_acked(&again).await;
    let env = fake
        .state
        .send_dm(dm("T1", "U1", "jenkins bild", "100.2", "Ev2"))
        .await;
    fake.state.wait_acked(&env).await;
    let posted = fake.state.wait_posted(2).await;
    assert_eq!(posted[1].channel, "DU1");
    assert!(
        posted[1].text.contains("Did you mean `jenkins build`?"),
        "{:?}",
        posted[1]
    );
    assert_eq!(
        posted.len(),
        2,
        "the redelivered mention got no second reply"
    );

    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    // Neither platform token nor the user's key shows up in the log.
    let log = String::from_utf8_lossy(&out.stderr);
    for secret in [APP_TOKEN, BOT_TOKEN, "alicetoken"] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
    assert!(log.contains("slack authenticated"), "{log}");
}

#[tokio::test]
async fn a_key_in_a_channel_is_refused_ephemerally_and_workspaces_are_separate() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;

    fake.state
        .send_mention(mention(
            "T1",
            "U1",
            &format!("jenkins setkey {ALICE_KEY}"),
            "1.1",
            "E1",
        ))
        .await;
    let posted = fake.state.wait_posted(1).await;
    assert_eq!(posted[0].method, "chat.postEphemeral");
    assert_eq!(posted[0].user.as_deref(), Some("U1"));
    assert!(posted[0].text.contains("rotate it now"), "{:?}", posted[0]);
    assert!(!posted[0].text.contains("alicetoken"));

    // Nothing was stored: the DM says so.
    fake.state
        .send_dm(dm("T1", "U1", "jenkins whoami", "1.2", "E2"))
        .await;
    let posted = fake.state.wait_posted(2).await;
    assert!(
        posted[1].text.starts_with("You haven't linked"),
        "{:?}",
        posted[1]
    );

    // Linked in workspace T1 …
    fake.state
        .send_dm(dm(
            "T1",
            "U1",
            &format!("jenkins setkey {ALICE_KEY}"),
            "1.3",
            "E3",
        ))
        .await;
    let posted = fake.state.wait_posted(3).await;
    assert!(posted[2].text.starts_with("Stored"), "{:?}", posted[2]);
    fake.state
        .send_mention(mention("T1", "U1", "jenkins build deploy", "1.4", "E4"))
        .await;
    let posted = fake.state.wait_posted(4).await;
    assert!(
        posted[3].text.starts_with("Started deploy as U1"),
        "{:?}",
        posted[3]
    );
    // … is not linked for the same user id in workspace T2.
    fake.state
        .send_mention(mention("T2", "U1", "jenkins build deploy", "1.5", "E5"))
        .await;
    let posted = fake.state.wait_posted(5).await;
    assert!(
        posted[4].text.starts_with("You haven't linked"),
        "{:?}",
        posted[4]
    );
    assert_eq!(jenkins.seen().len(), 1);

    sigterm(&child);
    assert!(child.wait().await.unwrap().success());
}

#[tokio::test]
async fn envelopes_are_acked_before_a_slow_command_finishes_and_shutdown_sends_it() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    let mut child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;
    fake.state
        .send_dm(dm(
            "T1",
            "U1",
            &format!("jenkins setkey {ALICE_KEY}"),
            "2.1",
            "F1",
        ))
        .await;
    fake.state.wait_posted(1).await;

    let started = jenkins.state.slow_started.notified();
    let env = fake
        .state
        .send_mention(mention("T1", "U1", "jenkins last slow", "2.2", "F2"))
        .await;
    started.await;
    // Jenkins is still thinking, yet the envelope is acked.
    assert!(fake.state.wait_acked(&env).await < Duration::from_secs(3));
    assert_eq!(fake.state.posted().len(), 1);
    sigterm(&child);
    jenkins.state.release_slow.notify_one();
    assert!(child.wait().await.unwrap().success());
    let posted = fake.state.posted();
    assert!(
        posted.iter().any(|p| p.text.starts_with("slow #42")),
        "{posted:?}"
    );
}
