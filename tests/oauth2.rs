//! OAuth 2.0 end to end: the real `deputy` binary through its shell adapter against the
//! sandbox's fake provider on 127.0.0.1, which checks client authentication, PKCE, `state`,
//! the device-flow polling rules, refresh-token rotation, and revocation over loopback TLS.

mod support;

use std::time::Duration;

use deputy::sandbox::oauth2::{OAuth2Options, OAuth2Provider};
use support::*;

async fn provider(options: OAuth2Options) -> OAuth2Provider {
    OAuth2Provider::start(options).await.unwrap()
}

/// Device flow: setupauth, approve as `login`, wait for deputy's "Linked" line.
async fn link_device(live: &mut Live, p: &OAuth2Provider, login: &str) {
    let reply = live.ask("gh setupauth").await;
    assert!(
        reply.contains(&format!("{}/login/device", p.url)),
        "{reply}"
    );
    assert!(p.state.approve_device(&user_code(&reply), login));
    let linked = live.line().await;
    assert!(linked.starts_with("Linked your github account"), "{linked}");
}

#[tokio::test]
async fn device_flow_links_the_user_who_then_works_as_themselves() {
    let p = provider(OAuth2Options::default()).await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(live.ask("gh whoami").await.contains("Run `gh setupauth`"));
    let reply = live.ask("gh setupauth").await;
    // Approve only after deputy has polled a few times, so the intervals can be checked.
    p.state.wait_polls(3).await;
    assert!(p.state.approve_device(&user_code(&reply), "alice"));
    assert!(live.line().await.starts_with("Linked your github account"));
    assert_eq!(
        live.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    let issue = live.ask(r#"gh issue octo/hello "Deploy is broken""#).await;
    assert!(issue.starts_with("Opened #3 on octo/hello: "), "{issue}");
    let mine: Vec<_> = p
        .state
        .issues()
        .into_iter()
        .filter(|i| i.3 == "alice")
        .collect();
    assert_eq!(mine.len(), 1);
    assert_eq!(mine[0].2, "Deploy is broken");
    assert!(live
        .ask("gh issues ../../user")
        .await
        .contains("I can't use that argument: \"../../user\" is not a path like owner/name"));
    assert!(live
        .ask("gh logout")
        .await
        .contains("declares no way to revoke it"));
    let log = live.finish_with_log().await;
    // Token-endpoint calls are audited like API calls, and never log a token.
    for step in ["setupauth", "device poll"] {
        assert!(
            log.lines()
                .any(|l| l.contains("deputy::audit") && l.contains(&format!("command=\"{step}\""))),
            "no audit line for {step}:\n{log}"
        );
    }
    assert!(!log.contains(deputy::sandbox::oauth2::CLIENT_SECRET));
    // deputy never polled faster than the interval the provider asked for.
    assert_eq!(p.state.slow_downs_sent(), 0);
    let polls = p.state.polls();
    assert!(polls.len() >= 4, "{polls:?}");
    for w in polls.windows(2) {
        assert!(
            w[1] - w[0] >= Duration::from_millis(950),
            "{:?}",
            w[1] - w[0]
        );
    }
}

#[tokio::test]
async fn slow_down_makes_deputy_poll_less_often() {
    let p = provider(OAuth2Options::default()).await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    p.state.force_slow_down_next();
    let reply = live.ask("gh setupauth").await;
    // Approved at once, but the first poll is answered slow_down whatever its timing.
    assert!(p.state.approve_device(&user_code(&reply), "alice"));
    assert!(live.line().await.starts_with("Linked"));
    assert_eq!(p.state.slow_downs_sent(), 1);
    live.finish().await;
    let polls = p.state.polls();
    assert!(polls.len() >= 2, "{polls:?}");
    // RFC 8628 3.5: after slow_down the interval grows by 5 s (1 s + 5 s here).
    assert!(
        polls[1] - polls[0] >= Duration::from_millis(5900),
        "{:?}",
        polls[1] - polls[0]
    );
}

#[tokio::test]
async fn denied_and_expired_device_flows_are_reported() {
    let p = provider(OAuth2Options::default()).await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let reply = live.ask("gh setupauth").await;
    assert!(p.state.deny_device(&user_code(&reply)));
    assert_eq!(
        live.line().await,
        "You declined the github sign-in; nothing was linked."
    );
    live.finish().await;

    let p = provider(OAuth2Options {
        device_expires_in_secs: 0,
        ..OAuth2Options::default()
    })
    .await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    live.ask("gh setupauth").await;
    assert!(live
        .line()
        .await
        .starts_with("The github code expired before it was entered"));
    live.finish().await;
}

#[tokio::test]
async fn an_unreachable_token_endpoint_is_named_not_hidden_as_expiry() {
    let p = provider(OAuth2Options {
        device_expires_in_secs: 3,
        ..OAuth2Options::default()
    })
    .await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    live.ask("gh setupauth").await;
    p.shutdown();
    let text = live.line().await;
    assert!(
        text.contains("couldn't reach github's sign-in server"),
        "{text}"
    );
    live.finish().await;
}

#[tokio::test]
async fn browser_flow_with_pkce_and_a_magic_code_typed_by_the_right_user() {
    let p = provider(OAuth2Options::default()).await;
    let port = free_port();
    let pack = github_pack(&[("grant = \"device\"", "grant = \"authorization_code\"")]);
    let deputy = Deputy::github(
        &p,
        Some(&pack),
        &format!("[web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
    );
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let reply = live.ask("gh setupauth").await;
    assert!(reply.contains("code_challenge_method=S256"), "{reply}");
    // A callback with a state deputy never issued links nothing.
    let forged = reqwest::get(format!(
        "http://127.0.0.1:{port}/oauth2/github/callback?code=x&state=forged"
    ))
    .await
    .unwrap();
    assert_eq!(forged.status(), 400);
    assert!(forged.text().await.unwrap().contains("state mismatch"));

    // The browser: sign in as alice; the provider redirects to deputy, which shows a code.
    let page = reqwest::get(format!("{}&login=alice", link_in(&reply)))
        .await
        .unwrap();
    assert_eq!(page.url().port(), Some(port));
    let page = page.text().await.unwrap();
    let code = magic_code(&page);
    assert!(live.line().await.starts_with("One more step"));
    // Replaying the callback does not issue another code.
    assert!(live.ask("gh whoami").await.contains("Run `gh setupauth`"));

    // bob has the code (a leaked page): it does nothing for him, and costs alice nothing.
    live.send("/user bob").await;
    assert!(live
        .ask(&format!("gh auth {code}"))
        .await
        .starts_with("You have no github sign-in waiting"));
    live.send("/user alice").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    assert!(live
        .ask(&format!("gh auth {wrong}"))
        .await
        .contains("(4 tries left)"));
    assert!(live
        .ask(&format!("gh auth {code}"))
        .await
        .starts_with("Linked your github account"));
    assert_eq!(
        live.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    live.finish().await;
}

#[tokio::test]
async fn concurrent_commands_share_one_refresh_of_a_rotating_token() {
    // Tokens that live 30 s are always within deputy's 60 s refresh margin. The token
    // endpoint takes 300 ms to answer a refresh, as a real one can: both commands must find
    // the old token before the first has stored the new one, and a busy machine once let the
    // first refresh finish before the second command had begun. (Nothing outside deputy
    // shows that the second command is waiting, so a slow endpoint is the window.)
    let p = provider(OAuth2Options {
        access_token_ttl_secs: 30,
        refresh_delay_ms: 300,
        ..OAuth2Options::default()
    })
    .await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    link_device(&mut live, &p, "alice").await;
    // Two conversations run side by side: both find the token due at once. One write, so the
    // shell reads both commands together even when this process is slow to write the next line
    // (a busy machine once let the first command finish its refresh before the second began).
    live.send("gh whoami\n/public\n@deputy gh whoami").await;
    for _ in 0..2 {
        assert_eq!(live.line().await, "You are Alice (@alice) on GitHub.");
    }
    assert_eq!(p.state.refreshes(), 1, "one refresh for both commands");
    assert_eq!(
        p.state.grants_revoked_for_reuse(),
        0,
        "a rotated refresh token was reused"
    );
    assert_eq!(
        live.ask("@deputy gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    assert_eq!(
        p.state.refreshes(),
        2,
        "the rotated refresh token was saved and works"
    );
    live.finish().await;
}

#[tokio::test]
async fn a_rejected_token_is_refreshed_once_and_a_dead_grant_asks_to_sign_in_again() {
    let p = provider(OAuth2Options::default()).await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    link_device(&mut live, &p, "alice").await;
    p.state.expire_access_tokens_of("alice");
    assert_eq!(
        live.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    assert_eq!(p.state.refreshes(), 1);

    p.state.revoke_grants_of("alice");
    let r = live.ask("gh whoami").await;
    assert!(
        r.starts_with("Your github sign-in has expired or was revoked."),
        "{r}"
    );
    assert!(
        r.contains("enter the code"),
        "a fresh sign-in in the same reply: {r}"
    );
    live.finish().await;
}

#[tokio::test]
async fn logout_revokes_over_tls_and_missing_scopes_are_named() {
    let p = provider(OAuth2Options::default()).await;
    let revocable = github_pack(&[(
        "client_auth = \"body\"",
        &format!(
            "client_auth = \"basic\"\nrevocation_url = \"{}/login/oauth/revoke\"",
            p.tls_url
        ),
    )]);
    // First without the `issue` command: the token is granted read:user only.
    let reader = revocable
        .split("[[command]]\nname = \"issue\"")
        .next()
        .unwrap()
        .to_string();
    let deputy = Deputy::github(&p, Some(&reader), "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    link_device(&mut live, &p, "alice").await;
    live.finish().await;

    // The operator adds `issue`, which needs `repo`: alice is told to sign in again.
    std::fs::write(deputy.dir.path().join("packs/github.toml"), &revocable).unwrap();
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let r = live.ask("gh issue octo/hello title").await;
    assert!(
        r.contains("needs the repo scope(s)") && r.contains("gh setupauth"),
        "{r}"
    );
    assert!(p.state.issues().iter().all(|i| i.3 != "alice"));
    let valid = p.state.valid_access_tokens();
    let r = live.ask("gh logout").await;
    assert_eq!(
        r,
        "Revoked your github token at github and deleted it here."
    );
    assert_eq!(p.state.revocations(), 1);
    assert_eq!(
        p.state.valid_access_tokens(),
        valid - 1,
        "the grant ended at the provider"
    );
    assert!(live.ask("gh whoami").await.contains("Run `gh setupauth`"));
    live.finish().await;
}

/// `deputy shell --sandbox` runs the device flow offline too.
#[tokio::test]
async fn the_sandbox_shell_links_github_with_the_device_flow() {
    let mut deputy = Deputy::new("http://127.0.0.1:9", "");
    deputy.secret = None;
    let mut live = Live::start(&deputy, &["shell", "--sandbox", "--user", "alice"]);
    let reply = live.ask("gh setupauth").await;
    let page = link_in(&reply);
    let approved = reqwest::get(format!(
        "{page}?user_code={}&login=alice",
        user_code(&reply)
    ))
    .await
    .unwrap();
    assert!(approved.status().is_success());
    assert!(live.line().await.starts_with("Linked your github account"));
    assert_eq!(
        live.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
    live.finish().await;
}

#[tokio::test]
async fn a_wrong_client_secret_and_an_http_revocation_url_get_clear_replies() {
    let p = provider(OAuth2Options::default()).await;
    let http_revoke = github_pack(&[(
        "client_auth = \"body\"",
        &format!(
            "client_auth = \"body\"\nrevocation_url = \"{}/login/oauth/revoke\"",
            p.url
        ),
    )]);
    let mut deputy = Deputy::github(&p, Some(&http_revoke), "");
    let right = deputy.env.pop().unwrap();
    deputy.env.push((right.0.clone(), "not-the-secret".into()));
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let r = live.ask("gh setupauth").await;
    assert!(
        r.starts_with("I couldn't start a github sign-in: github said invalid_client"),
        "{r}"
    );
    assert!(!r.contains("not-the-secret"));
    live.finish().await;

    deputy.env.pop();
    deputy.env.push(right);
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    link_device(&mut live, &p, "alice").await;
    let r = live.ask("gh logout").await;
    assert!(
        r.contains("could not revoke it at github (its revocation URL is not https"),
        "{r}"
    );
    assert!(r.starts_with("Deleted your github token here"), "{r}");
    assert_eq!(p.state.revocations(), 0);
    live.finish().await;
}

#[tokio::test]
async fn a_device_sign_in_survives_a_restart_and_logout_cancels_one() {
    let p = provider(OAuth2Options::default()).await;
    let deputy = Deputy::github(&p, None, "");
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let code = user_code(&live.ask("gh setupauth").await);
    live.finish().await;
    // deputy is gone; alice approves anyway; the restarted deputy picks the poll up.
    let mut live = Live::start(&deputy, &["shell", "--user", "alice"]);
    assert!(p.state.approve_device(&code, "alice"));
    assert!(live.line().await.starts_with("Linked your github account"));
    assert_eq!(
        live.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );

    // logout during a pending sign-in stops it: approving later links nothing.
    let code = user_code(&live.ask("gh setupauth").await);
    assert!(live
        .ask("gh logout")
        .await
        .starts_with("Deleted your github token here"));
    assert!(p.state.approve_device(&code, "alice"));
    live.finish().await;
    let live = Live::start(&deputy, &["shell", "--user", "alice"]);
    let log = live.finish_with_log().await;
    assert!(
        !log.contains("resumed device-flow"),
        "the cancelled flow stays cancelled: {log}"
    );
}
