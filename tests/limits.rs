//! Abuse limits at the runner's door, which every adapter's messages pass: a user flooding
//! commands is told once and their extra commands are dropped, so another user is answered
//! while the flood is still unanswered; a conversation's queue is bounded; an over-long
//! message is refused unread. Ordering is asserted through events (replies and upstream
//! arrivals), never through sleeps.

mod support;

use std::sync::Arc;

use deputy::brain::seal::Sealer;
use deputy::chat::{Adapter, Deleted, Message, Reply, Runner, Visibility};
use deputy::config::{Config, LimitsConfig};
use secrecy::SecretString;
use support::*;
use tokio::sync::mpsc;

/// Every reply, as (user, text, visibility), in the order sent.
struct Recording(mpsc::UnboundedSender<(String, String, Visibility)>);

#[async_trait::async_trait]
impl Adapter for Recording {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        let _ = self.0.send((to.user.clone(), reply.text, reply.visibility));
        Ok(())
    }
    async fn delete(&self, _: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

fn runner(dir: &std::path::Path, jenkins: &str, limits: LimitsConfig) -> Arc<Runner> {
    let mut config = Config::default();
    config.bot.packs = concat!(env!("CARGO_MANIFEST_DIR"), "/commands").into();
    config.brain.path = dir.join("brain");
    config.services.insert(
        "jenkins".into(),
        deputy::config::ServiceOverride {
            base_url: Some(jenkins.into()),
            ..Default::default()
        },
    );
    let (packs, templates) = deputy::app::load_packs(&config).unwrap();
    let secret = SecretString::from(SECRET_A.to_string());
    let brain = deputy::app::open_brain(&config, Sealer::new(&secret, &[]).unwrap()).unwrap();
    let d = deputy::app::dispatcher(&config, packs, templates, brain, &[]).unwrap();
    Runner::with_limits(d, &limits)
}

fn msg(user: &str, direct: bool, text: &str) -> Message {
    Message {
        adapter: "test".into(),
        workspace: "w1".into(),
        user: user.into(),
        user_name: user.into(),
        channel: if direct {
            format!("dm:{user}")
        } else {
            "general".into()
        },
        id: "1".into(),
        thread: None,
        direct,
        text: text.into(),
    }
}

type Replies = mpsc::UnboundedReceiver<(String, String, Visibility)>;

async fn next(rx: &mut Replies) -> (String, String, Visibility) {
    tokio::time::timeout(std::time::Duration::from_secs(20), rx.recv())
        .await
        .expect("a reply within 20 s")
        .unwrap()
}

/// Links `uN` with the token the fake Jenkins knows for them.
async fn link(runner: &Arc<Runner>, adapter: &Arc<dyn Adapter>, rx: &mut Replies, n: u32) {
    let user = format!("u{n}");
    runner.submit(
        msg(&user, true, &format!("jenkins setkey u{n}:tok-{n}")),
        adapter.clone(),
    );
    let (who, text, _) = next(rx).await;
    assert_eq!(who, user);
    assert!(text.starts_with("Stored your jenkins key"), "{text}");
}

const OVER_RATE: &str = "You are sending me commands faster than I take them";

#[tokio::test]
async fn a_flood_of_ten_thousand_commands_is_told_once_and_delays_no_one_else() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitsConfig {
        commands_per_minute: 60,
        burst: 5,
        ..LimitsConfig::default()
    };
    let runner = runner(dir.path(), &jenkins.url, limits);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let adapter: Arc<dyn Adapter> = Arc::new(Recording(tx));
    link(&runner, &adapter, &mut rx, 1).await;
    link(&runner, &adapter, &mut rx, 2).await;

    // u1 floods; their first command hangs on Jenkins until released.
    for _ in 0..10_000 {
        runner.submit(msg("u1", true, "jenkins last slow"), adapter.clone());
    }
    jenkins.state.slow_started.notified().await;
    runner.submit(msg("u2", true, "jenkins last quick"), adapter.clone());
    let mut before = Vec::new();
    let answer = loop {
        let r = next(&mut rx).await;
        if r.0 == "u2" {
            break r;
        }
        before.push(r);
    };
    assert_eq!(
        answer.1,
        "quick #42: SUCCESS (http://jenkins.test/job/quick/42/)"
    );
    // Meanwhile none of u1's commands has been answered: at most the notice about the limit.
    assert!(
        before
            .iter()
            .all(|r| r.0 == "u1" && r.1.starts_with(OVER_RATE)),
        "{before:?}"
    );

    // Release u1's accepted commands one by one until the runner has answered everything.
    jenkins.state.release_slow.notify_waiters();
    let r = runner.clone();
    let mut drained = tokio::spawn(async move { r.drain().await });
    loop {
        tokio::select! {
            _ = &mut drained => break,
            _ = jenkins.state.slow_started.notified() => jenkins.state.release_slow.notify_waiters(),
        }
    }
    let mut u1 = before;
    while let Ok(r) = rx.try_recv() {
        u1.push(r);
    }
    assert!(u1.iter().all(|r| r.0 == "u1"), "{u1:?}");
    // One notice for the whole flood, only for u1's eyes.
    let notices: Vec<_> = u1.iter().filter(|r| r.1.starts_with(OVER_RATE)).collect();
    assert_eq!(notices.len(), 1, "{notices:?}");
    assert!(
        notices[0].1.contains("5 at once, then 60 a minute"),
        "{}",
        notices[0].1
    );
    assert_eq!(notices[0].2, Visibility::OnlyUser);
    let answered = u1
        .iter()
        .filter(|r| r.1.starts_with("slow #42: SUCCESS"))
        .count();
    assert_eq!(answered + 1, u1.len(), "{u1:?}");
    // The burst (less the setkey), plus what the rate refilled while the test ran: a
    // handful, never thousands.
    println!("of 10,000 flooded commands {answered} ran");
    assert!((4..100).contains(&answered), "{answered} answered");
    let slow_calls = jenkins
        .seen()
        .iter()
        .filter(|s| s.path.contains("/slow/"))
        .count();
    assert_eq!(slow_calls, answered);
}

#[tokio::test]
async fn a_conversation_queue_is_bounded_and_each_refused_message_is_answered() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitsConfig {
        commands_per_minute: 0,
        max_queued: 4,
        ..LimitsConfig::default()
    };
    let runner = runner(dir.path(), &jenkins.url, limits);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let adapter: Arc<dyn Adapter> = Arc::new(Recording(tx));
    link(&runner, &adapter, &mut rx, 1).await;
    runner.submit(msg("u1", true, "jenkins last slow"), adapter.clone());
    jenkins.state.slow_started.notified().await;
    // The first is in flight: 4 may wait behind it, the rest are refused.
    for i in 0..100 {
        runner.submit(
            msg("u1", true, &format!("jenkins last after{i}")),
            adapter.clone(),
        );
    }
    for _ in 0..96 {
        let (_, text, vis) = next(&mut rx).await;
        assert!(
            text.starts_with("I am still working on 4 earlier messages of yours here"),
            "{text}"
        );
        assert_eq!(vis, Visibility::OnlyUser);
    }
    jenkins.state.release_slow.notify_one();
    let mut answered = Vec::new();
    for _ in 0..5 {
        answered.push(next(&mut rx).await.1);
    }
    assert!(answered[0].starts_with("slow #42"), "{answered:?}");
    // The ones that waited are the first four, in order.
    for (i, a) in answered[1..].iter().enumerate() {
        assert!(a.starts_with(&format!("after{i} #42")), "{answered:?}");
    }
    runner.drain().await;
    assert!(rx.try_recv().is_err());

    // In a shared channel, chatter that finds the queue full is dropped without a word; a
    // command is told.
    runner.submit(
        msg("u1", false, "@deputy jenkins last slow"),
        adapter.clone(),
    );
    jenkins.state.slow_started.notified().await;
    for _ in 0..4 {
        runner.submit(msg("u1", false, "just chatting"), adapter.clone());
    }
    runner.submit(msg("u1", false, "still chatting"), adapter.clone());
    runner.submit(
        msg("u1", false, "@deputy jenkins last loud"),
        adapter.clone(),
    );
    let (_, text, _) = next(&mut rx).await;
    assert!(text.starts_with("I am still working on 4"), "{text}");
    jenkins.state.release_slow.notify_one();
    assert!(next(&mut rx).await.1.starts_with("slow #42"));
    runner.drain().await;
    assert!(rx.try_recv().is_err(), "no reply to chatter");
}

#[tokio::test]
async fn an_over_long_message_is_refused_unread_for_every_adapter() {
    let jenkins = FakeJenkins::start().await;
    let dir = tempfile::tempdir().unwrap();
    let limits = LimitsConfig {
        max_message_bytes: 1000,
        ..LimitsConfig::default()
    };
    let runner = runner(dir.path(), &jenkins.url, limits);
    let (tx, mut rx) = mpsc::unbounded_channel();
    let adapter: Arc<dyn Adapter> = Arc::new(Recording(tx));
    link(&runner, &adapter, &mut rx, 1).await;
    let long = format!("@deputy jenkins last {}", "x".repeat(2000));
    runner.submit(msg("u1", false, &long), adapter.clone());
    // Chatter not meant for the bot gets no reply, however long.
    runner.submit(msg("u1", false, &"é".repeat(5000)), adapter.clone());
    runner.submit(
        msg("u1", false, "@deputy jenkins last fine"),
        adapter.clone(),
    );
    runner.drain().await;
    let mut replies = vec![next(&mut rx).await, next(&mut rx).await];
    // The refusal and the answer are sent by different tasks: either may come first.
    replies.sort_by_key(|r| !r.1.starts_with("fine #42"));
    assert!(replies[0].1.starts_with("fine #42"), "{replies:?}");
    assert_eq!(
        replies[1].1,
        "That message is longer than 1000 bytes, so I did not read it; nothing was done."
    );
    assert_eq!(replies[1].2, Visibility::OnlyUser);
    assert!(rx.try_recv().is_err());
    assert!(
        jenkins.seen().iter().all(|s| !s.path.contains("xxx")),
        "the long message was never run"
    );
}

#[tokio::test]
async fn through_the_shell_a_flooder_cannot_starve_another_user() {
    // Without the rate limit, the flooder's commands would take every one of the shell's
    // in-flight slots while Jenkins hangs, and alice's line would never be read.
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(&jenkins.url, "\n[limits]\nburst = 3\n");
    let mut live = Live::start(&deputy, &["shell", "--show-user"]);
    live.send("/user u1").await;
    assert!(live.ask("jenkins setkey u1:tok-1").await.contains("Stored"));
    live.send("/user alice").await;
    assert!(live
        .ask(&format!("jenkins setkey {ALICE_KEY}"))
        .await
        .contains("Stored"));
    // Bounded: without the limit deputy stops reading stdin and this write would block.
    let mut before = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        live.send("/user u1").await;
        let flood: String = "jenkins last slow\n".repeat(10_000);
        live.send(flood.trim_end()).await;
        jenkins.state.slow_started.notified().await;
        live.send("/user alice").await;
        live.send("jenkins last quick").await;
        let mut before = Vec::new();
        loop {
            let line = live.line().await;
            if line.starts_with("[alice]") {
                assert_eq!(
                    line,
                    "[alice] quick #42: SUCCESS (http://jenkins.test/job/quick/42/)"
                );
                break;
            }
            before.push(line);
        }
        before
    })
    .await
    .expect("alice is answered while the flood's first command hangs");
    // None of the flood was answered before alice; u1 heard about the limit once.
    if before.is_empty() {
        before.push(live.line().await);
    }
    assert_eq!(before.len(), 1, "{before:?}");
    assert!(
        before[0].starts_with(&format!("[u1] {OVER_RATE}")),
        "{before:?}"
    );
    drop(live);
}

#[tokio::test]
async fn check_shows_the_limits_and_names_a_bad_one() {
    let jenkins = FakeJenkins::start().await;
    let deputy = Deputy::new(
        &jenkins.url,
        "max_concurrent = 4\n\n[limits]\ncommands_per_minute = 12\nburst = 3\n",
    );
    let run = deputy.run_with_input(&["check"], &[]).await.ok();
    assert!(
        run.stdout().contains(
            "limits: 12 commands a minute per user (burst 3), messages up to 16384 bytes, 32 \
             queued per conversation; upstream: 64 calls in flight and 1024 waiting per service, \
             2 retries, bodies up to 4194304 bytes"
        ),
        "{}",
        run.stdout()
    );
    for (bad, why) in [
        ("[limits]\nburst = 0", "[limits] burst must be at least 1"),
        (
            "[http]\nmax_body_bytes = 12",
            "[http] max_body_bytes = 12 is too small",
        ),
        ("[limits]\nburts = 3", "unknown field `burts`"),
    ] {
        let deputy = Deputy::new(&jenkins.url, &format!("\n{bad}\n"));
        let run = deputy.run_with_input(&["check"], &[]).await;
        assert_eq!(run.code(), Some(3), "{bad}: {}", run.stderr());
        assert!(run.stderr().contains(why), "{bad}: {}", run.stderr());
    }
}
