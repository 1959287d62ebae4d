//! The Slack adapter end to end: slack-morphism's Socket Mode client inside `deputy run`,
//! against a fake Slack on 127.0.0.1 (Web API over plain HTTP, Socket Mode on a websocket).

mod support;

use std::time::Duration;

use support::slack::{
    DirectMessage, FakeSlack, Mention, OpenedView, Posted, APP_TOKEN, BOT_TOKEN, BOT_USER,
};
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

/// The key's token part, which must appear in no message, request body or log line.
const ALICE_TOKEN: &str = "11a2b3c4d5e6alicetoken";
const BOB_TOKEN: &str = "99f8e7d6c5b4bobtoken";

/// Every message the bot posted and every request body Slack received is free of both keys.
fn assert_no_key_in(fake: &FakeSlack) {
    for p in fake.state.posted() {
        for key in [ALICE_TOKEN, BOB_TOKEN] {
            assert!(!p.text.contains(key), "{p:?}");
            assert!(!format!("{:?}", p.blocks).contains(key), "{p:?}");
        }
    }
    for body in fake.state.bodies() {
        for key in [ALICE_TOKEN, BOB_TOKEN] {
            assert!(!body.contains(key), "{body}");
        }
    }
}

/// Waits for the `n`th post and returns it.
async fn nth_post(fake: &FakeSlack, n: usize) -> Posted {
    fake.state.wait_posted(n).await[n - 1].clone()
}

async fn stop(child: tokio::process::Child) -> String {
    sigterm(&child);
    let out = child.wait_with_output().await.unwrap();
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_key_typed_into_the_slash_command_modal_is_stored_used_and_never_posted() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let mut deputy = slack_deputy(&jenkins.url, &fake);
    // Even at the chattiest log level no frame with the key is logged.
    deputy.env.push(("RUST_LOG".into(), "trace".into()));
    let mut child = deputy.spawn(&["run"]);
    // Read the log as it comes: a full stderr pipe would stall deputy.
    let mut stderr = child.stderr.take().unwrap();
    let log = tokio::spawn(async move {
        let mut log = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stderr, &mut log)
            .await
            .unwrap();
        log
    });
    fake.state.wait_connected().await;

    let env = fake
        .state
        .send_slash_command("T1", "C0GENERAL", "U1", "jenkins setkey")
        .await;
    assert!(fake.state.wait_acked(&env).await < Duration::from_secs(3));
    let view = fake.state.wait_views(1).await[0].clone();
    assert_eq!(view.user, "U1");
    assert_eq!(view.view["title"]["text"], "Link jenkins");
    assert!(view.callback_id.starts_with("dp1."), "{view:?}");
    assert_eq!(view.private_metadata, "C0GENERAL");
    let input = &view.view["blocks"][0];
    assert_eq!(input["type"], "input");
    assert_eq!(input["element"]["type"], "plain_text_input");
    assert!(input["element"]["placeholder"]["text"]
        .as_str()
        .unwrap()
        .contains("user:token"));
    assert!(fake.state.posted().is_empty(), "a modal, not a message");

    // A key that cannot be right is shown beside the input; the modal stays open and usable.
    let env = fake
        .state
        .submit_view(&view.id, "U1", "no-colon-here")
        .await;
    fake.state.wait_acked(&env).await;
    let ack = fake.state.ack_payload(&env).expect("an errors response");
    assert_eq!(ack["response_action"], "errors");
    let problem = ack["errors"][input["block_id"].as_str().unwrap()]
        .as_str()
        .expect("the error sits on the modal's input block");
    assert!(problem.contains("joined by a colon"), "{problem}");
    assert!(fake.state.posted().is_empty());

    let env = fake.state.submit_view(&view.id, "U1", ALICE_KEY).await;
    fake.state.wait_acked(&env).await;
    assert_eq!(fake.state.ack_payload(&env), None, "the modal closes");
    let stored = nth_post(&fake, 1).await;
    assert_eq!(stored.method, "chat.postEphemeral");
    assert_eq!(
        (stored.channel.as_str(), stored.user.as_deref()),
        ("C0GENERAL", Some("U1"))
    );
    assert!(
        stored.text.starts_with("Stored your jenkins key"),
        "{stored:?}"
    );

    // The key from the modal is the one the command sends.
    fake.state
        .send_mention(mention("T1", "U1", "jenkins last deploy", "3.1", "G1"))
        .await;
    let last = nth_post(&fake, 2).await;
    assert!(last.text.contains("deploy #42: SUCCESS"), "{last:?}");
    assert_eq!(jenkins.seen()[0].user.as_deref(), Some("alice"));

    // The same view submitted again (a replay) stores nothing, even with another key.
    fake.state.submit_view(&view.id, "U1", BOB_KEY).await;
    let replay = nth_post(&fake, 3).await;
    assert!(
        replay.text.contains("expired or was already used"),
        "{replay:?}"
    );
    assert_eq!(replay.method, "chat.postEphemeral");

    // A view deputy never opened (an unknown callback id) stores nothing for its sender.
    let forged = OpenedView {
        callback_id: "link_account".into(),
        user: "U2".into(),
        ..view.clone()
    };
    fake.state.submit_view_as(&forged, "U2", BOB_KEY).await;
    let unknown = nth_post(&fake, 4).await;
    assert!(
        unknown.text.contains("I don't know that button or form"),
        "{unknown:?}"
    );
    assert_eq!(unknown.user.as_deref(), Some("U2"));
    fake.state
        .send_mention(mention("T1", "U2", "jenkins whoami", "3.2", "G2"))
        .await;
    assert!(nth_post(&fake, 5)
        .await
        .text
        .starts_with("You haven't linked"));
    fake.state
        .send_mention(mention("T1", "U1", "jenkins last deploy", "3.3", "G3"))
        .await;
    nth_post(&fake, 6).await;
    assert_eq!(
        jenkins.seen()[1].user.as_deref(),
        Some("alice"),
        "still alice's key"
    );

    stop(child).await;
    let log = log.await.unwrap();
    assert!(log.contains("TRACE"), "a trace-level log");
    assert_no_key_in(&fake);
    for secret in [ALICE_TOKEN, BOB_TOKEN] {
        assert!(!log.contains(secret), "{secret} in the log:\n{log}");
    }
}

#[tokio::test]
async fn bare_setkey_in_a_channel_offers_a_private_button_that_opens_the_modal() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    let child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;

    fake.state
        .send_mention(mention("T1", "U1", "jenkins setkey", "4.1", "H1"))
        .await;
    let offer = nth_post(&fake, 1).await;
    assert_eq!(offer.method, "chat.postEphemeral");
    assert_eq!(offer.user.as_deref(), Some("U1"));
    assert!(offer.text.contains("Press the button"), "{offer:?}");
    let buttons = offer.buttons();
    assert_eq!(buttons.len(), 1);
    assert_eq!(buttons[0].1, "Link your account");
    assert_eq!(buttons[0].2.as_deref(), Some("primary"));

    let env = fake
        .state
        .click("T1", "C0GENERAL", "U1", &buttons[0].0, true)
        .await;
    fake.state.wait_acked(&env).await;
    let view = fake.state.wait_views(1).await[0].clone();
    assert_eq!(view.user, "U1");
    // The thread the question was asked in travels with the modal.
    assert_eq!(view.private_metadata, "C0GENERAL");

    // Someone else submitting U1's modal stores nothing, for either of them.
    fake.state.submit_view(&view.id, "U2", BOB_KEY).await;
    let refused = nth_post(&fake, 2).await;
    assert!(
        refused.text.contains("offered to someone else"),
        "{refused:?}"
    );
    assert_eq!(refused.user.as_deref(), Some("U2"));
    fake.state
        .send_mention(mention("T1", "U2", "jenkins whoami", "4.2", "H2"))
        .await;
    assert!(nth_post(&fake, 3)
        .await
        .text
        .starts_with("You haven't linked"));

    fake.state.submit_view(&view.id, "U1", ALICE_KEY).await;
    let stored = nth_post(&fake, 4).await;
    assert!(
        stored.text.starts_with("Stored your jenkins key"),
        "{stored:?}"
    );
    assert_eq!(stored.user.as_deref(), Some("U1"));

    stop(child).await;
    assert_no_key_in(&fake);
}

#[tokio::test]
async fn a_confirmation_runs_for_its_user_only_and_cancel_runs_nothing() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    let child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;
    fake.state
        .send_dm(dm(
            "T1",
            "U1",
            &format!("jenkins setkey {ALICE_KEY}"),
            "5.1",
            "J1",
        ))
        .await;
    nth_post(&fake, 1).await;

    fake.state
        .send_mention(mention("T1", "U1", "jenkins abort deploy", "5.2", "J2"))
        .await;
    let question = nth_post(&fake, 2).await;
    assert_eq!(question.method, "chat.postEphemeral");
    assert_eq!(question.user.as_deref(), Some("U1"));
    assert!(
        question.text.contains("Run `jenkins abort deploy` as you?"),
        "{question:?}"
    );
    let buttons = question.buttons();
    let labels: Vec<(&str, Option<&str>)> = buttons
        .iter()
        .map(|(_, l, s)| (l.as_str(), s.as_deref()))
        .collect();
    assert_eq!(labels, [("Confirm", Some("danger")), ("Cancel", None)]);
    assert!(jenkins.seen().is_empty(), "nothing runs before the answer");

    // Another user's click runs nothing.
    fake.state
        .click("T1", "C0GENERAL", "U2", &buttons[0].0, true)
        .await;
    let refused = nth_post(&fake, 3).await;
    assert!(
        refused.text.contains("offered to someone else"),
        "{refused:?}"
    );
    assert!(jenkins.seen().is_empty());

    fake.state
        .click("T1", "C0GENERAL", "U1", &buttons[0].0, true)
        .await;
    let done = nth_post(&fake, 4).await;
    assert!(
        done.text
            .contains("Asked Jenkins to abort the last build of deploy"),
        "{done:?}"
    );
    assert_eq!(jenkins.seen(), vec![Seen::abort("alice", "deploy")]);

    // A second question, cancelled.
    fake.state
        .send_mention(mention("T1", "U1", "jenkins abort nightly", "5.3", "J3"))
        .await;
    let question = nth_post(&fake, 5).await;
    let cancel = question.buttons()[1].0.clone();
    fake.state
        .click("T1", "C0GENERAL", "U1", &cancel, true)
        .await;
    let cancelled = nth_post(&fake, 6).await;
    assert!(
        cancelled
            .text
            .contains("Cancelled: `jenkins abort` was not run."),
        "{cancelled:?}"
    );
    assert_eq!(cancelled.method, "chat.postEphemeral");
    assert_eq!(jenkins.seen().len(), 1);
    stop(child).await;
}

#[tokio::test]
async fn an_expired_confirmation_runs_nothing() {
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let deputy = slack_deputy(&jenkins.url, &fake);
    // A confirmation that lives 0 s: expired by the time of any click, no clock to wait on.
    deputy.bot("confirm_ttl_secs = 0");
    let child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;
    fake.state
        .send_dm(dm(
            "T1",
            "U1",
            &format!("jenkins setkey {ALICE_KEY}"),
            "6.1",
            "K1",
        ))
        .await;
    nth_post(&fake, 1).await;
    fake.state
        .send_mention(mention("T1", "U1", "jenkins abort deploy", "6.2", "K2"))
        .await;
    let question = nth_post(&fake, 2).await;
    let confirm = question.buttons()[0].0.clone();
    fake.state
        .click("T1", "C0GENERAL", "U1", &confirm, true)
        .await;
    let expired = nth_post(&fake, 3).await;
    assert!(
        expired.text.contains("expired or was already used"),
        "{expired:?}"
    );
    assert!(jenkins.seen().is_empty());
    stop(child).await;
}

#[tokio::test]
async fn a_sign_in_link_asked_for_in_a_channel_goes_only_to_the_user_with_a_button() {
    let x = deputy::sandbox::Provider::start().await.unwrap();
    let fake = FakeSlack::start().await;
    let mut deputy = Deputy::twitter(
        &x.url,
        &format!(
            "\n[slack]\nenabled = true\napi_url = \"{}\"\nconnections = 1\n",
            fake.api_url
        ),
    );
    deputy
        .env
        .push(("SLACK_APP_TOKEN".into(), APP_TOKEN.into()));
    deputy
        .env
        .push(("SLACK_BOT_TOKEN".into(), BOT_TOKEN.into()));
    let child = deputy.spawn(&["run"]);
    fake.state.wait_connected().await;
    fake.state
        .send_mention(mention("T1", "U1", "t setupauth", "7.1", "L1"))
        .await;
    let link = nth_post(&fake, 1).await;
    assert_eq!(link.method, "chat.postEphemeral");
    assert_eq!(link.user.as_deref(), Some("U1"));
    assert_eq!(link.thread_ts.as_deref(), Some("7.1"));
    let url = link_in(&link.text);
    assert!(url.starts_with(&x.url), "{link:?}");
    assert_eq!(link.button_urls(), [url]);
    assert_eq!(link.buttons()[0].1, "Sign in to twitter");
    stop(child).await;
}

/// The manifest operators copy from the README is the one in contrib/, and it asks for what
/// the forms, buttons and slash command need.
#[test]
fn the_slack_manifest_in_the_readme_and_contrib_agree_and_enable_interactivity() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let start = readme.find("```yaml\n").expect("a yaml block") + "```yaml\n".len();
    let end = start + readme[start..].find("```").unwrap();
    let file = std::fs::read_to_string(root.join("contrib/slack-manifest.yaml")).unwrap();
    let body: String = file
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(&readme[start..end], body);
    for needed in [
        "socket_mode_enabled: true",
        "interactivity:\n    is_enabled: true",
        "- command: /deputy",
        "commands,",
        "chat:write",
    ] {
        assert!(body.contains(needed), "{needed} missing from the manifest");
    }
}
