//! The web chat adapter end to end: the real `deputy run` binary with `[web.chat]`, a real
//! WebSocket client, and tokens signed in the test without deputy's JWT library. Every
//! refusal happens at the upgrade (an HTTP status, no socket); a web user links a key,
//! runs commands as themselves against a loopback Jenkins that checks Basic auth, and signs in
//! with the sandbox's OAuth 2.0 device flow; RS256 from a PEM file and ES256 from a JWKS served
//! on loopback; a token that expires closes its session; the abuse limits hold.

mod support;
mod web_support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use support::*;
use web_support::*;

fn refused(r: Result<Chat, (u16, String)>) -> (u16, String) {
    match r {
        Ok(_) => panic!("the connection was accepted"),
        Err(e) => e,
    }
}

#[tokio::test]
async fn bad_tokens_and_origins_are_refused_before_a_socket_exists() {
    let (deputy, port) = WebDeputy::config("http://127.0.0.1:9", "", HS256);
    let d = WebDeputy::start(&deputy, port).await;
    let good = hs256(&claims("alice", 600));
    // The good token works, from the allowed origin and from deputy's own page.
    d.connect(&good).await;
    assert!(d.try_connect(Some(&d.url), Some(&good)).await.is_ok());

    let mut tokens = Vec::new();
    let mut check = |token: String, want: &str| {
        tokens.push(token.clone());
        (token, want.to_string())
    };
    let mut expired = claims("alice", 0);
    expired["exp"] = json!(now() - 300);
    let mut early = claims("alice", 600);
    early["nbf"] = json!(now() + 300);
    // CVE-2026-25537's shape: an nbf of the wrong type must not be skipped.
    let mut string_nbf = claims("alice", 600);
    string_nbf["nbf"] = json!((now() + 300).to_string());
    let mut audience = claims("alice", 600);
    audience["aud"] = json!("someone-else");
    let mut issuer = claims("alice", 600);
    issuer["iss"] = json!("https://evil.test");
    let mut no_exp = claims("alice", 600);
    no_exp.as_object_mut().unwrap().remove("exp");
    let mut no_user = claims("alice", 600);
    no_user.as_object_mut().unwrap().remove("sub");
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"}).to_string()),
        b64(claims("alice", 600).to_string())
    );
    // alice's valid signature on a payload that says bob.
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(claims("bob", 600).to_string()),
        parts[2]
    );
    let wrong_key = hs256_with(
        b"another-site-secret-0123456789abcdef",
        json!({"alg": "HS256"}),
        &claims("alice", 600),
    );
    let cases = vec![
        check(hs256(&expired), "expired"),
        check(hs256(&early), "not valid yet"),
        check(hs256(&string_nbf), "nbf has the wrong type"),
        check(hs256(&audience), "another audience"),
        check(hs256(&issuer), "another issuer"),
        check(hs256(&no_exp), "exp is missing"),
        check(hs256(&no_user), "sub is missing"),
        check(unsigned, "not signed with HS256"),
        check(tampered, "signature does not verify"),
        check(wrong_key, "signature does not verify"),
        check("not-a-jwt".into(), "unreadable"),
    ];
    for (token, want) in cases {
        let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), Some(&token)).await);
        assert_eq!(status, 401, "{want}: {body}");
        assert!(body.contains(&want), "want {want:?}, got {body:?}");
    }
    let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), None).await);
    assert_eq!((status, body.contains("no token")), (401, true), "{body}");
    for origin in [Some("http://evil.test"), None] {
        let (status, body) = refused(d.try_connect(origin, Some(&good)).await);
        assert_eq!(status, 403, "{body}");
        assert!(body.contains("allowed_origins"), "{body}");
    }
    // No token, and not the secret, ever reaches the log.
    let log = d.log();
    assert!(log.contains("web chat: token refused"), "{log}");
    for t in tokens.iter().chain([&good]) {
        assert!(!log.contains(t.as_str()), "a token was logged");
    }
    assert!(!log.contains(SITE_SECRET));
}

#[tokio::test]
async fn a_web_user_links_a_key_and_runs_commands_as_themselves() {
    let jenkins = FakeJenkins::start().await;
    let (deputy, port) = WebDeputy::config(&jenkins.url, "", HS256);
    let mut d = WebDeputy::start(&deputy, port).await;
    let mut alice = d.connect(&hs256(&claims("alice", 600))).await;
    let help = alice.ask("help").await;
    assert!(help.contains("jenkins") && help.contains('\n'), "{help}");
    let first = alice.ask("jenkins last deploy").await;
    assert!(first.contains("`jenkins setkey <"), "{first}");
    assert!(jenkins.seen().is_empty(), "nothing is called without a key");
    // A web session is private: setkey is accepted there.
    let stored = alice.ask(&format!("jenkins setkey {ALICE_KEY}")).await;
    assert!(stored.starts_with("Stored your jenkins key"), "{stored}");
    assert_eq!(
        alice.ask("jenkins last deploy").await,
        "deploy #42: SUCCESS (http://jenkins.test/job/deploy/42/)"
    );
    let seen = jenkins.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].user.as_deref(), Some("alice"));

    // bob is someone else: alice's key is not his.
    let mut bob = d.connect(&hs256(&claims("bob", 600))).await;
    assert!(bob.ask("jenkins last deploy").await.contains("setkey"));
    assert_eq!(jenkins.seen().len(), 1);
    assert!(!d.log().contains("11a2b3c4d5e6alicetoken"));
    d.child.kill().await.unwrap();

    // The credential is keyed web/<workspace>/<user>.
    let out = deputy
        .command(&[
            "brain",
            "forget",
            "--adapter",
            "web",
            "--workspace",
            "acme",
            "--user",
            "alice",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.contains("erased 1 record(s) of web user alice"),
        "{out}"
    );
    assert!(out.contains("web/acme/alice"), "{out}");
}

#[tokio::test]
async fn a_device_sign_in_finishes_in_the_open_session() {
    use deputy::sandbox::oauth2::{OAuth2Options, OAuth2Provider};
    let p = OAuth2Provider::start(OAuth2Options::default())
        .await
        .unwrap();
    let port = free_port();
    let mut deputy = Deputy::github(&p, None, &web_config(port, "", HS256));
    deputy
        .env
        .push(("DEPUTY_WEB_JWT_SECRET".into(), SITE_SECRET.into()));
    let d = WebDeputy::start(&deputy, port).await;
    let mut alice = d.connect(&hs256(&claims("alice", 600))).await;
    let reply = alice.ask("gh setupauth").await;
    assert!(
        reply.contains(&format!("{}/login/device", p.url)),
        "{reply}"
    );
    assert!(p.state.approve_device(&user_code(&reply), "alice"));
    // Told through the Outbox, in the session that asked, with no message from the user.
    let linked = alice.reply().await;
    assert!(linked.starts_with("Linked your github account"), "{linked}");
    assert_eq!(
        alice.ask("gh whoami").await,
        "You are Alice (@alice) on GitHub."
    );
}

#[tokio::test]
async fn rs256_tokens_verify_with_the_sites_pem_and_other_algorithms_are_refused() {
    let pem = fixture("web-rs256-pub.pem");
    let identity = format!("algorithm = \"RS256\"\npublic_key_file = {pem:?}");
    let (deputy, port) = WebDeputy::config("http://127.0.0.1:9", "", &identity);
    let d = WebDeputy::start(&deputy, port).await;
    let mut alice = d.connect(&rs256(&claims("alice", 600))).await;
    assert!(alice.ask("help").await.contains("jenkins"));
    // Algorithm confusion: HS256 keyed with the public key's PEM text.
    let public = std::fs::read(&pem).unwrap();
    let confused = hs256_with(&public, json!({"alg": "HS256"}), &claims("alice", 600));
    let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), Some(&confused)).await);
    assert_eq!(status, 401);
    assert!(body.contains("not signed with RS256"), "{body}");
    let mut expired = claims("alice", 0);
    expired["exp"] = json!(now() - 300);
    let (status, body) = refused(
        d.try_connect(Some(SITE_ORIGIN), Some(&rs256(&expired)))
            .await,
    );
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");
}

/// A site's JWKS on loopback: the keys it publishes now, and how often it was fetched.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
}

async fn jwks(keys: Vec<Value>) -> Jwks {
    let keys = Arc::new(Mutex::new(keys));
    let fetches = Arc::new(AtomicUsize::new(0));
    let (k, f) = (keys.clone(), fetches.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (k, f) = (k.clone(), f.clone());
            async move {
                f.fetch_add(1, Ordering::SeqCst);
                axum::Json(json!({"keys": k.lock().unwrap().clone()}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!(
        "http://{}/.well-known/jwks.json",
        listener.local_addr().unwrap()
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Jwks { url, keys, fetches }
}

#[tokio::test]
async fn es256_keys_come_from_the_jwks_refetched_on_an_unknown_kid_at_a_bounded_rate() {
    let (k1, k2) = (Es256::generate("k1"), Es256::generate("k2"));
    // An RSA key and a key for encryption are in the set too; deputy skips them.
    let site = jwks(vec![
        json!({"kty": "RSA", "kid": "rsa", "n": "AQAB", "e": "AQAB"}),
        json!({"kty": "EC", "crv": "P-256", "use": "enc", "kid": "enc", "x": k2.jwk()["x"], "y": k2.jwk()["y"]}),
        k1.jwk(),
    ])
    .await;
    let identity = format!(
        "algorithm = \"ES256\"\njwks_url = \"{}\"\njwks_min_refresh_secs = 3600",
        site.url
    );
    let (deputy, port) = WebDeputy::config("http://127.0.0.1:9", "", &identity);
    let d = WebDeputy::start(&deputy, port).await;
    // Fetched at the first token, not at start.
    assert_eq!(site.fetches.load(Ordering::SeqCst), 0);
    d.connect(&k1.sign(&claims("alice", 600))).await;
    assert_eq!(site.fetches.load(Ordering::SeqCst), 1);

    // The site rotates: k2's first token makes deputy fetch again.
    site.keys.lock().unwrap().push(k2.jwk());
    let mut bob = d.connect(&k2.sign(&claims("bob", 600))).await;
    assert!(bob.ask("help").await.contains("jenkins"));
    assert_eq!(site.fetches.load(Ordering::SeqCst), 2);

    // A flood of made-up kids: refused, and the site is not asked again within the interval.
    for i in 0..20 {
        let (status, body) = refused(
            d.try_connect(
                Some(SITE_ORIGIN),
                Some(&k1.sign_as(&format!("made-up-{i}"), &claims("alice", 600))),
            )
            .await,
        );
        assert_eq!(status, 401);
        assert!(body.contains("does not know"), "{body}");
    }
    assert_eq!(site.fetches.load(Ordering::SeqCst), 2);
    // k2's key under k1's name, and the encryption key's kid: refused.
    for (token, want) in [
        (k2.sign_as("k1", &claims("alice", 600)), "signature"),
        (k2.sign_as("enc", &claims("alice", 600)), "does not know"),
    ] {
        let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), Some(&token)).await);
        assert_eq!(status, 401);
        assert!(body.contains(want), "{body}");
    }
}

#[tokio::test]
async fn an_expiring_token_ends_the_session_with_a_request_to_reconnect() {
    let (deputy, port) = WebDeputy::config(
        "http://127.0.0.1:9",
        "",
        &format!("{HS256}\nleeway_secs = 0"),
    );
    let d = WebDeputy::start(&deputy, port).await;
    let token = hs256(&claims("alice", 2));
    let mut alice = d.connect(&token).await;
    assert!(alice.ask("help").await.contains("jenkins"));
    // Nothing more is sent: the next thing is the expiry, then the close.
    let expired = alice.next().await;
    assert_eq!(expired["type"], "expired", "{expired}");
    assert!(
        expired["text"].as_str().unwrap().contains("fresh token"),
        "{expired}"
    );
    match alice.event().await {
        End::Closed(code, reason) => {
            assert_eq!(code, Some(4001));
            assert_eq!(reason, "token expired");
        }
        other => panic!("{other:?}"),
    }
    let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), Some(&token)).await);
    assert_eq!((status, body.contains("expired")), (401, true), "{body}");
    // A fresh token gets a new session.
    d.connect(&hs256(&claims("alice", 600))).await;
}

#[tokio::test]
async fn message_size_rate_and_connection_limits_hold() {
    let chat =
        "max_message_bytes = 100\nburst = 3\nmessages_per_minute = 1\nmax_connections_per_user = 2";
    let (deputy, port) = WebDeputy::config("http://127.0.0.1:9", chat, HS256);
    let d = WebDeputy::start(&deputy, port).await;
    let token = hs256(&claims("alice", 600));
    let mut alice = d.connect(&token).await;

    // Too long: refused with the limit, and the session goes on.
    alice.say(&"x".repeat(101)).await;
    let v = alice.next().await;
    assert_eq!(v["type"], "error");
    assert!(
        v["text"].as_str().unwrap().contains("the limit is 100"),
        "{v}"
    );
    // A frame that is not a message is explained.
    alice.send_raw("hello".into()).await;
    let v = alice.next().await;
    assert!(
        v["text"].as_str().unwrap().contains("could not read"),
        "{v}"
    );

    // A burst of 3, then the rate applies.
    for _ in 0..4 {
        alice.say("help").await;
    }
    let (mut replies, mut slow) = (0, 0);
    while replies + slow < 4 {
        let v = alice.next().await;
        match v["type"].as_str() {
            Some("reply") => replies += 1,
            Some("error") if v["text"].as_str().unwrap().starts_with("Slow down") => slow += 1,
            _ => panic!("{v}"),
        }
    }
    assert_eq!((replies, slow), (3, 1));

    // Two connections per user; a third is refused; bob is not counted with alice.
    let second = d.connect(&token).await;
    let (status, body) = refused(d.try_connect(Some(SITE_ORIGIN), Some(&token)).await);
    assert_eq!(status, 429, "{body}");
    assert!(body.contains("2 chat sessions open"), "{body}");
    d.connect(&hs256(&claims("bob", 600))).await;
    // Closing one frees its slot. The server drops it just after its close reply, which the
    // client cannot observe, so the reconnect is retried briefly.
    second.close().await;
    let mut again = None;
    for _ in 0..100 {
        if let Ok(c) = d.try_connect(Some(SITE_ORIGIN), Some(&token)).await {
            again = Some(c);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "the closed connection's slot was never freed"
    );
    // A frame over the hard cap closes the connection.
    alice.say(&"y".repeat(5000)).await;
    loop {
        match alice.event().await {
            End::Frame(_) => continue,
            End::Closed(code, _) => {
                assert_ne!(code, Some(4001));
                break;
            }
        }
    }
}

#[tokio::test]
async fn check_explains_web_chat_config_mistakes() {
    let port = free_port();
    let cases: Vec<(String, &str)> = vec![
        (
            web_config(port, "", &format!("{HS256}\nworkspace_claim = \"org\"")),
            "not both",
        ),
        (
            web_config(
                port,
                "",
                &format!("{HS256}\njwks_url = \"https://x.test/jwks\""),
            ),
            "public_key_file and jwks_url are for RS256 and ES256",
        ),
        (
            web_config(port, "", "algorithm = \"RS256\""),
            "RS256 and ES256 need the site's public key",
        ),
        (
            web_config(port, "", "algorithm = \"HS384\""),
            "unknown variant `HS384`",
        ),
        (
            web_config(port, "", &format!("{HS256}\nisuer = \"x\"")),
            "unknown field `isuer`",
        ),
        (
            web_config(port, "allowed_origins = [\"https://x.test/app\"]", HS256)
                .replace(&format!("allowed_origins = [\"{SITE_ORIGIN}\"]\n"), ""),
            "must be only scheme, host and port",
        ),
        (
            format!("\n[web]\nlisten = \"127.0.0.1:{port}\"\n[web.chat]\nenabled = true\n"),
            "needs [web.identity]",
        ),
        (
            web_config(
                port,
                "",
                "algorithm = \"ES256\"\npublic_key_file = \"nope.pem\"",
            ),
            "nope.pem",
        ),
    ];
    for (config, want) in cases {
        let mut deputy = Deputy::new("http://127.0.0.1:9", &config);
        deputy
            .env
            .push(("DEPUTY_WEB_JWT_SECRET".into(), SITE_SECRET.into()));
        let out = deputy.command(&["check"]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{want}: {err}");
        assert!(err.contains(want), "want {want:?} in {err}");
    }
    // The secret: missing, then too short, then fine.
    let mut deputy = Deputy::new("http://127.0.0.1:9", &web_config(port, "", HS256));
    let out = deputy.command(&["check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("DEPUTY_WEB_JWT_SECRET is not set"), "{err}");
    deputy
        .env
        .push(("DEPUTY_WEB_JWT_SECRET".into(), "short".into()));
    let out = deputy.command(&["check"]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too short for HS256"), "{err}");
    deputy.env.pop();
    deputy
        .env
        .push(("DEPUTY_WEB_JWT_SECRET".into(), SITE_SECRET.into()));
    let out = deputy.command(&["check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("web chat: enabled on /chat, tokens from issuer \"https://intranet.test\""),
        "{stdout}"
    );
    assert!(stdout.contains("DEPUTY_WEB_JWT_SECRET (set)"), "{stdout}");
    assert!(!stdout.contains(SITE_SECRET));
    let help = deputy.command(&["--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&help.stdout).contains("DEPUTY_WEB_JWT_SECRET"));
}

#[tokio::test]
async fn a_key_the_site_withdraws_stops_working_once_the_cached_keys_are_old() {
    let (k1, k2) = (Es256::generate("k1"), Es256::generate("k2"));
    let site = jwks(vec![k1.jwk()]).await;
    let identity = format!(
        "algorithm = \"ES256\"\njwks_url = \"{}\"\njwks_max_age_secs = 2",
        site.url
    );
    let (deputy, port) = WebDeputy::config("http://127.0.0.1:9", "", &identity);
    let d = WebDeputy::start(&deputy, port).await;
    d.connect(&k1.sign(&claims("alice", 600))).await;
    assert_eq!(site.fetches.load(Ordering::SeqCst), 1);
    *site.keys.lock().unwrap() = vec![k2.jwk()];
    // Within the age, the cached k1 still works and the site is not asked.
    d.connect(&k1.sign(&claims("alice", 600))).await;
    assert_eq!(site.fetches.load(Ordering::SeqCst), 1);
    // The age is a span of time: nothing to await but the clock.
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let (status, body) = refused(
        d.try_connect(Some(SITE_ORIGIN), Some(&k1.sign(&claims("alice", 600))))
            .await,
    );
    assert_eq!(status, 401);
    assert!(body.contains("does not know"), "{body}");
    assert!(site.fetches.load(Ordering::SeqCst) >= 2);
    d.connect(&k2.sign(&claims("bob", 600))).await;
}
