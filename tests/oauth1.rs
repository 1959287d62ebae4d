//! The OAuth 1.0a PIN flow end to end: the real `deputy` binary through its shell adapter,
//! against the sandbox's fake X on 127.0.0.1, which verifies every request's HMAC-SHA1
//! signature with an RFC 5849 verifier written apart from the client's signing code.

mod support;

use deputy::sandbox::{Fault, Provider};
use support::*;

/// setupauth → the browser approves → `t auth <PIN>`; returns the screen name's reply.
async fn link(live: &mut Live, user: &str, screen_name: &str) -> String {
    live.send(&format!("/user {user}")).await;
    let reply = live.ask("t setupauth").await;
    assert!(reply.contains("then tell me the PIN"), "{reply}");
    let pin = approve_and_read_pin(&link_in(&reply), screen_name).await;
    live.ask(&format!("t auth {pin}")).await
}

fn all_signed(provider: &Provider) {
    // The authorize page is the browser's, and unsigned by design.
    // A revoked token is refused on purpose by the test itself.
    let revoked = |r: &deputy::sandbox::Recorded| {
        r.rejection
            .as_deref()
            .is_some_and(|w| w.contains("revoked"))
    };
    for r in provider
        .state
        .requests()
        .into_iter()
        .filter(|r| r.path != "/oauth/authorize" && !revoked(r))
    {
        assert!(
            r.signature_ok,
            "deputy sent a request the verifier refused: {r:?}"
        );
    }
}

#[tokio::test]
async fn pin_flow_then_tweet_search_and_whoami_as_the_user() {
    let x = Provider::start().await.unwrap();
    let deputy = Deputy::twitter(&x.url, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(live
        .ask("t tweet hello")
        .await
        .contains("Run `t setupauth`"));
    let linked = link(&mut live, "alice", "alice").await;
    assert_eq!(
        linked,
        "Linked to @alice on twitter. Commands now run as you; `t logout` unlinks."
    );
    assert_eq!(live.ask("t whoami").await, "You are Alice (@alice) on X.");
    let posted = live.ask("t tweet hello from deputy, café & co").await;
    assert!(
        posted.starts_with("Posted: hello from deputy, café & co"),
        "{posted}"
    );
    let tweets = x.state.tweets();
    let mine: Vec<_> = tweets.iter().filter(|t| t.author == "alice").collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].text, "hello from deputy, café & co");
    let found = live.ask("t search café co").await;
    assert!(found.starts_with("• @alice ("), "{found}");
    assert!(found.contains("hello from deputy, café & co"), "{found}");
    assert_eq!(
        live.ask("t search nothing-matches-this").await,
        "No recent posts match \"nothing-matches-this\"."
    );
    let out = live.ask("t logout").await;
    assert!(
        out.starts_with("Deleted your twitter authorization"),
        "{out}"
    );
    assert!(live.ask("t whoami").await.contains("Run `t setupauth`"));
    live.finish().await;
    all_signed(&x);
    assert_eq!(x.state.access_tokens_issued(), 1);
}

#[tokio::test]
async fn two_users_interleave_and_a_pin_only_works_for_its_own_flow() {
    let x = Provider::start().await.unwrap();
    let deputy = Deputy::twitter(&x.url, "");
    let mut live = Live::start(&deputy, &["shell"]);
    live.send("/user alice").await;
    let alice_link = link_in(&live.ask("t setupauth").await);
    live.send("/user bob").await;
    let bob_link = link_in(&live.ask("t setupauth").await);
    assert_ne!(alice_link, bob_link);
    let alice_pin = approve_and_read_pin(&alice_link, "alice").await;
    let bob_pin = approve_and_read_pin(&bob_link, "bob").await;
    // carol has no flow: alice's PIN gets her nowhere.
    live.send("/user carol").await;
    assert!(live
        .ask(&format!("t auth {alice_pin}"))
        .await
        .starts_with("You have no twitter sign-in waiting"));
    // bob types alice's PIN: it is bound to alice's request token, so it fails for bob…
    live.send("/user bob").await;
    assert!(live
        .ask(&format!("t auth {alice_pin}"))
        .await
        .contains("did not accept that PIN"));
    // …and bob's own PIN still works, as does alice's afterwards.
    assert!(live
        .ask(&format!("t auth {bob_pin}"))
        .await
        .starts_with("Linked to @bob"));
    live.send("/user alice").await;
    assert!(live
        .ask(&format!("t auth {alice_pin}"))
        .await
        .starts_with("Linked to @alice"));
    live.send("/user bob").await;
    assert!(live.ask("t tweet from bob").await.starts_with("Posted"));
    live.send("/user alice").await;
    assert!(live.ask("t tweet from alice").await.starts_with("Posted"));
    live.finish().await;
    for t in x
        .state
        .tweets()
        .iter()
        .filter(|t| t.text.starts_with("from "))
    {
        assert_eq!(t.text, format!("from {}", t.author));
    }
    all_signed(&x);
}

#[tokio::test]
async fn wrong_pins_are_counted_and_lock_the_flow_out() {
    let x = Provider::start().await.unwrap();
    let deputy = Deputy::twitter(&x.url, "[auth]\nmax_attempts = 3");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let reply = live.ask("t setupauth").await;
    let pin = approve_and_read_pin(&link_in(&reply), "alice").await;
    assert!(live.ask("t auth").await.contains("Send the PIN"));
    assert!(live
        .ask("t auth 12 34")
        .await
        .contains("doesn't look like a PIN"));
    assert!(live
        .ask("t auth 0000000")
        .await
        .ends_with("(2 tries left)."));
    assert!(live.ask("t auth 0000001").await.ends_with("(1 try left)."));
    let last = live.ask("t auth 0000002").await;
    assert!(
        last.contains("that was the last try: this sign-in is cancelled"),
        "{last}"
    );
    // The right PIN is too late now.
    let after = live.ask(&format!("t auth {pin}")).await;
    assert!(
        after.starts_with("You have no twitter sign-in waiting"),
        "{after}"
    );
    assert!(!after.contains(&pin));
    live.finish().await;
    assert_eq!(x.state.access_tokens_issued(), 0);
}

#[tokio::test]
async fn an_expired_flow_asks_for_a_new_link() {
    let x = Provider::start().await.unwrap();
    // A zero lifetime: every flow is expired by the time the PIN comes back.
    let deputy = Deputy::twitter(&x.url, "[auth]\nflow_ttl_secs = 0");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let pin = approve_and_read_pin(&link_in(&live.ask("t setupauth").await), "alice").await;
    assert_eq!(
        live.ask(&format!("t auth {pin}")).await,
        "That sign-in link expired; run `t setupauth` for a new one."
    );
    assert!(live
        .ask(&format!("t auth {pin}"))
        .await
        .starts_with("You have no twitter sign-in waiting"));
    live.finish().await;
    assert_eq!(
        x.state.access_tokens_issued(),
        0,
        "an expired flow is never exchanged"
    );
}

#[tokio::test]
async fn provider_failures_at_each_step_get_clear_replies_and_lose_nothing() {
    let x = Provider::start().await.unwrap();
    let deputy = Deputy::twitter(&x.url, "timeout_secs = 1");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);

    // Request token step.
    x.state
        .fail_next("/oauth/request_token", Fault::Status(500));
    assert!(live
        .ask("t setupauth")
        .await
        .contains("server error (HTTP 500)"));
    x.state.fail_next(
        "/oauth/request_token",
        Fault::RateLimited {
            retry_after_secs: 9,
        },
    );
    assert!(live.ask("t setupauth").await.contains("try again in 9 s"));
    x.state.fail_next("/oauth/request_token", Fault::Garbage);
    assert!(live.ask("t setupauth").await.contains("couldn't read"));
    x.state
        .fail_next("/oauth/request_token", Fault::Status(401));
    assert!(live
        .ask("t setupauth")
        .await
        .contains("refused it (HTTP 401)"));

    // Access token step: failures that are not a wrong PIN keep the flow and its attempts.
    let pin = approve_and_read_pin(&link_in(&live.ask("t setupauth").await), "alice").await;
    for (fault, want) in [
        (Fault::Status(503), "server error (HTTP 503)"),
        (
            Fault::RateLimited {
                retry_after_secs: 4,
            },
            "try again in 4 s",
        ),
        (Fault::Garbage, "couldn't read"),
        (Fault::Hang, "did not answer within 1 s"),
    ] {
        x.state.fail_next("/oauth/access_token", fault);
        let r = live.ask(&format!("t auth {pin}")).await;
        assert!(r.contains(want) && r.contains("still waiting"), "{r}");
    }
    assert!(live
        .ask(&format!("t auth {pin}"))
        .await
        .starts_with("Linked to @alice"));

    // API step.
    for (fault, want) in [
        (Fault::Status(500), "twitter had a server error (HTTP 500)"),
        (
            Fault::RateLimited {
                retry_after_secs: 30,
            },
            "try again in 30 s",
        ),
        (Fault::Garbage, "couldn't read"),
    ] {
        x.state.fail_next("/2/tweets", fault);
        let r = live.ask("t tweet hi").await;
        assert!(r.contains(want), "{r}");
    }
    assert!(live.ask("t tweet hi").await.starts_with("Posted: hi"));

    // The provider revokes the token: the reply carries a fresh sign-in link.
    x.state.revoke_tokens_of("alice");
    let r = live.ask("t tweet again").await;
    assert!(r.contains("rejected your authorization (HTTP 401)"), "{r}");
    let pin = approve_and_read_pin(&link_in(&r), "alice").await;
    assert!(live
        .ask(&format!("t auth {pin}"))
        .await
        .starts_with("Linked to @alice"));
    assert!(live.ask("t tweet again").await.starts_with("Posted: again"));
    live.finish().await;
    all_signed(&x);
}

/// Shapes reqwest-oauth1 0.3 signs wrongly (crate-notes): deputy refuses them before sending.
#[tokio::test]
async fn query_shapes_the_signer_gets_wrong_are_refused_before_sending() {
    let x = Provider::start().await.unwrap();
    let deputy = Deputy::twitter(&x.url, "");
    let packs = deputy.dir.path().join("packs");
    std::fs::create_dir(&packs).unwrap();
    let shipped = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/commands/twitter.toml"
    ))
    .unwrap();
    std::fs::write(
        packs.join("twitter.toml"),
        format!(
            "{shipped}\n[[command]]\nname = \"dup\"\nhelp = \"x\"\nargs = [\"a\", \"b\"]\npath = \"/2/users/me\"\nquery = \"q={{{{ a | segment }}}}&q={{{{ b | segment }}}}\"\n\n[[command]]\nname = \"weird\"\nhelp = \"x\"\nargs = [\"a\"]\npath = \"/2/users/me\"\nquery = \"user%5Bname%5D={{{{ a | segment }}}}\"\n"
        ),
    )
    .unwrap();
    std::fs::copy(
        concat!(env!("CARGO_MANIFEST_DIR"), "/commands/jenkins.toml"),
        packs.join("jenkins.toml"),
    )
    .unwrap();
    deputy.use_packs(&packs);

    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(link(&mut live, "alice", "alice")
        .await
        .starts_with("Linked"));
    let before = x.state.requests().len();
    let r = live.ask("t dup Z é").await;
    assert!(
        r.contains("can't sign this request") && r.contains("appears more than once"),
        "{r}"
    );
    let r = live.ask("t weird x").await;
    assert!(r.contains("needs percent-encoding"), "{r}");
    assert_eq!(x.state.requests().len(), before, "nothing was sent");
    // Ordinary shapes sign fine: spaces, UTF-8 and reserved characters in values.
    let found = live.ask(r#"t search "a+b&c=d!*'()~ é""#).await;
    assert!(found.starts_with("No recent posts match"), "{found}");
    live.finish().await;
    all_signed(&x);
}

/// The same shapes signed directly with reqwest-oauth1 fail the independent verifier: the
/// reason for the guard above. If the crate is fixed, this test says so.
#[tokio::test]
async fn reqwest_oauth1_signs_repeated_and_encoded_keys_wrongly() {
    use reqwest_oauth1::OAuthClientProvider;
    let x = Provider::start().await.unwrap();
    let secrets = reqwest_oauth1::Secrets::new(
        deputy::sandbox::CONSUMER_KEY,
        deputy::sandbox::CONSUMER_SECRET,
    );
    for query in ["q=Z&q=%C3%A9", "user%5Bname%5D=x"] {
        let resp = reqwest::Client::new()
            .oauth1(secrets.clone())
            .post(format!(
                "{}/oauth/request_token?oauth_callback=oob&{query}",
                x.url
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 401, "{query}");
    }
    let ok = reqwest::Client::new()
        .oauth1(secrets)
        .post(format!(
            "{}/oauth/request_token?oauth_callback=oob&q=plain",
            x.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test]
async fn browser_callback_links_the_user_and_tells_them_in_chat() {
    let x = Provider::start().await.unwrap();
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let deputy = Deputy::twitter(
        &x.url,
        &format!("[web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
    );
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let reply = live.ask("t setupauth").await;
    assert!(
        reply.contains("I'll tell you here when it worked"),
        "{reply}"
    );
    let health = reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.text().await.unwrap(), "ok\n");

    // The browser: approve on the provider, which redirects to deputy's callback.
    let page = reqwest::get(format!("{}&screen_name=alice", link_in(&reply)))
        .await
        .unwrap();
    assert_eq!(page.url().port(), Some(port), "redirected to deputy");
    assert_eq!(page.status(), 200);
    assert!(page
        .text()
        .await
        .unwrap()
        .contains("Linked to @alice on twitter."));
    assert!(
        live.line()
            .await
            .starts_with("Linked to @alice on twitter."),
        "told in chat"
    );
    assert_eq!(live.ask("t whoami").await, "You are Alice (@alice) on X.");

    // Replaying the callback, or a made-up token, links nothing.
    let bogus = reqwest::get(format!(
        "http://127.0.0.1:{port}/oauth1/twitter/callback?oauth_token=made-up&oauth_verifier=1"
    ))
    .await
    .unwrap();
    assert_eq!(bogus.status(), 400);

    // Declining on the provider's page is reported in chat too.
    let reply = live.ask("t setupauth").await;
    let declined = reqwest::get(format!("{}&deny=1", link_in(&reply)))
        .await
        .unwrap();
    assert!(declined.text().await.unwrap().contains("You declined"));
    assert!(live
        .line()
        .await
        .starts_with("You declined the twitter sign-in"));
    live.finish().await;
    all_signed(&x);
}

/// The README's first command: `deputy shell --sandbox` runs every flow offline.
#[tokio::test]
async fn the_sandbox_shell_runs_the_pin_flow_and_jenkins_offline() {
    let mut deputy = Deputy::new("http://127.0.0.1:9", "");
    deputy.secret = None;
    let mut live = Live::start(&deputy, &["shell", "--sandbox", "--user", "alice"]);
    let reply = live.ask("t setupauth").await;
    let pin = approve_and_read_pin(&link_in(&reply), "alice").await;
    assert!(live
        .ask(&format!("t auth {pin}"))
        .await
        .starts_with("Linked to @alice"));
    assert!(live
        .ask("t tweet hello sandbox")
        .await
        .starts_with("Posted: hello sandbox"));
    assert!(live
        .ask("jenkins setkey alice:sandbox-token")
        .await
        .starts_with("Stored"));
    assert!(live
        .ask("jenkins build deploy")
        .await
        .starts_with("Started deploy as alice"));
    assert!(live
        .ask("jenkins last deploy")
        .await
        .starts_with("deploy #1: SUCCESS"));
    live.finish().await;
    assert!(
        !deputy.brain_dir().exists(),
        "the sandbox keeps its brain out of the real one"
    );
}
