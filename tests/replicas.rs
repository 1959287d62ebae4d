//! Several deputy processes on one real Redis brain: a sign-in started on one replica
//! finishes on another, a due token is refreshed once however many replicas need it, a
//! Slack event delivered to every replica is answered once, and a Confirm click reaching
//! every replica runs the command once.

mod support;

use std::time::Duration;

use deputy::sandbox::oauth2::{OAuth2Options, OAuth2Provider};
use deputy::sandbox::Provider;
use support::slack::{FakeSlack, Mention};
use support::*;

#[tokio::test]
async fn a_pin_flow_started_on_one_replica_finishes_on_another() {
    let redis = RedisServer::start().await;
    let x = Provider::start().await.unwrap();
    let (a, b) = (Deputy::twitter(&x.url, ""), Deputy::twitter(&x.url, ""));
    a.use_redis(&redis.url());
    b.use_redis(&redis.url());
    let mut on_a = Live::start(&a, &["shell", "--user", "alice"]);
    let mut on_b = Live::start(&b, &["shell", "--user", "alice"]);
    let reply = on_a.ask("t setupauth").await;
    let pin = approve_and_read_pin(&link_in(&reply), "alice").await;
    // The pending flow carries Redis's own expiry.
    let client = redis::Client::open(redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ttl: i64 = redis::cmd("TTL")
        .arg("deputy:r:flow/shell/local/alice/twitter")
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(ttl > 0, "the flow expires in Redis: TTL {ttl}");
    assert_eq!(
        on_b.ask(&format!("t auth {pin}")).await,
        "Linked to @alice on twitter. Commands now run as you; `t logout` unlinks."
    );
    assert_eq!(on_a.ask("t whoami").await, "You are Alice (@alice) on X.");
    // The flow is gone on both: the PIN cannot be used twice.
    assert!(on_a
        .ask(&format!("t auth {pin}"))
        .await
        .contains("no twitter sign-in waiting"));
    on_a.finish().await;
    on_b.finish().await;
}

#[tokio::test]
async fn a_dead_token_is_refreshed_once_across_replicas() {
    let redis = RedisServer::start().await;
    let p = OAuth2Provider::start(OAuth2Options::default())
        .await
        .unwrap();
    let (a, b) = (Deputy::github(&p, None, ""), Deputy::github(&p, None, ""));
    a.use_redis(&redis.url());
    b.use_redis(&redis.url());
    let mut on_a = Live::start(&a, &["shell", "--user", "alice"]);
    let reply = on_a.ask("gh setupauth").await;
    assert!(p.state.approve_device(&user_code(&reply), "alice"));
    assert!(on_a.line().await.starts_with("Linked your github account"));
    let mut on_b = Live::start(&b, &["shell", "--user", "alice"]);
    assert_eq!(
        on_b.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    // The provider kills the access token: both replicas are refused with it at once, and
    // both need a fresh one.
    p.state.expire_access_tokens_of("alice");
    on_a.send("gh whoami").await;
    on_b.send("gh whoami").await;
    assert_eq!(on_a.line().await, "You are Alice (@alice) on GitHub.");
    assert_eq!(on_b.line().await, "You are Alice (@alice) on GitHub.");
    assert_eq!(p.state.refreshes(), 1, "one refresh for both replicas");
    assert_eq!(
        p.state.grants_revoked_for_reuse(),
        0,
        "a rotated refresh token was reused"
    );
    // The rotated refresh token reached the shared brain: the next refresh works too.
    p.state.expire_access_tokens_of("alice");
    assert_eq!(
        on_b.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    assert_eq!(p.state.refreshes(), 2);
    on_a.finish().await;
    on_b.finish().await;
}

fn mention_help(ts: &str, event_id: &str) -> Mention {
    Mention {
        team: "T1".into(),
        channel: "C0GENERAL".into(),
        user: "U1".into(),
        text: format!("<@{}> help", support::slack::BOT_USER),
        ts: ts.into(),
        event_id: event_id.into(),
        thread_ts: None,
    }
}

fn slack_replica(fake: &FakeSlack, redis: &str) -> Deputy {
    let d = Deputy::new(
        "http://127.0.0.1:9",
        &format!(
            "\n[slack]\nenabled = true\napi_url = \"{}/\"\nconnections = 1\n",
            fake.api_url
        ),
    );
    let mut d = d;
    d.env
        .push(("SLACK_APP_TOKEN".into(), support::slack::APP_TOKEN.into()));
    d.env
        .push(("SLACK_BOT_TOKEN".into(), support::slack::BOT_TOKEN.into()));
    // The replica that leaves an event to another says so at debug level: the test waits
    // for that line rather than for time to pass.
    d.env.push(("RUST_LOG".into(), "info,deputy=debug".into()));
    d.use_redis(redis);
    d
}

#[tokio::test]
async fn a_slack_event_delivered_to_every_replica_is_answered_once() {
    let redis = RedisServer::start().await;
    let fake = FakeSlack::start().await;
    let (a, b) = (
        slack_replica(&fake, &redis.url()),
        slack_replica(&fake, &redis.url()),
    );
    let mut ca = a.spawn(&["run"]);
    fake.state.wait_connections(1).await;
    let mut cb = b.spawn(&["run"]);
    fake.state.wait_connections(2).await;
    let (left_tx, mut left) = tokio::sync::mpsc::unbounded_channel::<()>();
    for child in [&mut ca, &mut cb] {
        use tokio::io::AsyncBufReadExt;
        let mut err = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let tx = left_tx.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err.next_line().await {
                if line.contains("another replica took this Slack event") {
                    let _ = tx.send(());
                }
            }
        });
    }
    let envelopes = fake
        .state
        .send_mention_to_all(mention_help("100.1", "EvShared"))
        .await;
    assert_eq!(envelopes.len(), 2);
    for e in &envelopes {
        assert!(
            fake.state.wait_acked(e).await < Duration::from_secs(3),
            "both replicas ack"
        );
    }
    // One replica leaves the event to the other, which answers it.
    tokio::time::timeout(Duration::from_secs(20), left.recv())
        .await
        .expect("one replica left the event to the other");
    let posted = fake.state.wait_posted(1).await;
    assert_eq!(posted[0].thread_ts.as_deref(), Some("100.1"));
    assert!(
        posted[0].text.contains("I run commands"),
        "{}",
        posted[0].text
    );
    // The replica that left it posts nothing more; the other answers a new event normally.
    let later = fake
        .state
        .send_mention_to_all(mention_help("101.1", "EvLater"))
        .await;
    for e in &later {
        fake.state.wait_acked(e).await;
    }
    tokio::time::timeout(Duration::from_secs(20), left.recv())
        .await
        .expect("again one replica left it");
    let posted = fake.state.wait_posted(2).await;
    let threads: Vec<Option<&str>> = posted.iter().map(|p| p.thread_ts.as_deref()).collect();
    assert_eq!(
        threads,
        [Some("100.1"), Some("101.1")],
        "each event answered once"
    );
}

#[tokio::test]
async fn an_oauth_callback_landing_on_another_replica_links_the_user() {
    let redis = RedisServer::start().await;
    let x = Provider::start().await.unwrap();
    let (port_a, port_b) = (free_port(), free_port());
    // The load balancer in front of both sends this callback to B.
    let web = |listen: u16| {
        format!(
            "[web]\nlisten = \"127.0.0.1:{listen}\"\npublic_url = \"http://127.0.0.1:{port_b}\""
        )
    };
    let (a, b) = (
        Deputy::twitter(&x.url, &web(port_a)),
        Deputy::twitter(&x.url, &web(port_b)),
    );
    a.use_redis(&redis.url());
    b.use_redis(&redis.url());
    let mut on_a = Live::start(&a, &["shell", "--user", "alice"]);
    let mut on_b = Live::start(&b, &["shell", "--user", "bob"]);
    // A one-line answer: B is up and its output is drained.
    assert!(on_b.ask("jenkins bild").await.contains("build"), "B is up");
    let reply = on_a.ask("t setupauth").await;
    assert!(
        reply.contains("I'll tell you here when it worked"),
        "{reply}"
    );
    let page = reqwest::get(format!("{}&screen_name=alice", link_in(&reply)))
        .await
        .unwrap();
    assert_eq!(page.url().port(), Some(port_b), "the callback landed on B");
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Linked to @alice on twitter."));
    // B finished the flow A started, and told the user through its own adapter.
    assert!(on_b
        .line()
        .await
        .starts_with("Linked to @alice on twitter."));
    assert_eq!(on_a.ask("t whoami").await, "You are Alice (@alice) on X.");
    on_a.finish().await;
    on_b.finish().await;
}

#[tokio::test]
async fn a_confirm_click_reaching_every_replica_runs_the_command_once() {
    let redis = RedisServer::start().await;
    let jenkins = FakeJenkins::start().await;
    let fake = FakeSlack::start().await;
    let replica = || {
        let mut d = Deputy::new(
            &jenkins.url,
            &format!(
                "\n[slack]\nenabled = true\napi_url = \"{}\"\nconnections = 1\n",
                fake.api_url
            ),
        );
        d.env
            .push(("SLACK_APP_TOKEN".into(), support::slack::APP_TOKEN.into()));
        d.env
            .push(("SLACK_BOT_TOKEN".into(), support::slack::BOT_TOKEN.into()));
        d.use_redis(&redis.url());
        d
    };
    let (a, b) = (replica(), replica());
    let _ca = a.spawn(&["run"]);
    fake.state.wait_connections(1).await;
    let _cb = b.spawn(&["run"]);
    fake.state.wait_connections(2).await;
    fake.state
        .send_dm(support::slack::DirectMessage {
            team: "T1".into(),
            channel: "DU1".into(),
            user: "U1".into(),
            text: format!("jenkins setkey {ALICE_KEY}"),
            ts: "200.1".into(),
            event_id: "EvKey".into(),
        })
        .await;
    fake.state.wait_posted(1).await;
    fake.state
        .send_mention(Mention {
            team: "T1".into(),
            channel: "C0GENERAL".into(),
            user: "U1".into(),
            text: format!("<@{}> jenkins abort deploy", support::slack::BOT_USER),
            ts: "200.2".into(),
            thread_ts: None,
            event_id: "EvAsk".into(),
        })
        .await;
    let question = fake.state.wait_posted(2).await[1].clone();
    let confirm = question.buttons()[0].0.clone();
    fake.state
        .click_on_all("T1", "C0GENERAL", "U1", &confirm)
        .await;
    let answers: Vec<String> = fake.state.wait_posted(4).await[2..]
        .iter()
        .map(|p| p.text.clone())
        .collect();
    assert_eq!(
        answers
            .iter()
            .filter(|t| t.contains("Asked Jenkins to abort the last build of deploy"))
            .count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        answers
            .iter()
            .filter(|t| t.contains("expired or was already used"))
            .count(),
        1,
        "{answers:?}"
    );
    assert_eq!(jenkins.seen(), vec![Seen::abort("alice", "deploy")]);
}
