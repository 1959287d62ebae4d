//! Secret hygiene across the whole scenario set, through the real `deputy shell` binary with
//! every crate logging at trace level: API keys (stored, rejected by the service, pasted in
//! public), OAuth 1.0a (PIN flow, a wrong PIN, a revoked token, logout), OAuth 2.0 device flow
//! (refresh, a dead grant, revocation over TLS at logout) and browser flow (PKCE, a magic
//! code, a wrong code). Then no secret any of it involved (keys, access and refresh tokens,
//! token secrets, PINs, magic codes, device and authorization codes, the consumer and client
//! secrets, `DEPUTY_SECRET`) may appear in stdout (every chat reply, to anyone), stderr (the
//! logs, and any panic), or any byte of the deputy directory's files (brain included).

mod support;

use deputy::sandbox::oauth2::{OAuth2Options, OAuth2Provider};
use deputy::sandbox::Provider;
use support::*;

/// A live deputy whose every output line is kept.
struct Session {
    live: Live,
    transcript: Vec<String>,
    /// stderr, read as it comes: at trace level a full pipe would stall deputy.
    log: tokio::task::JoinHandle<String>,
}

impl Session {
    fn start(deputy: &Deputy) -> Session {
        let mut live = Live::start(deputy, &["shell", "--user", "alice", "--show-user"]);
        let mut stderr = live.child.stderr.take().unwrap();
        let log = tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            let mut bytes = Vec::new();
            stderr.read_to_end(&mut bytes).await.unwrap();
            String::from_utf8_lossy(&bytes).into_owned()
        });
        Session {
            live,
            transcript: Vec::new(),
            log,
        }
    }

    async fn send(&mut self, line: &str) {
        self.live.send(line).await;
    }

    /// Reads replies until one contains `want`; returns it.
    async fn expect(&mut self, want: &str) -> String {
        loop {
            let line = self.live.line().await;
            // Shown when the test fails (a reply that never came names the step).
            println!("{line}");
            self.transcript.push(line.clone());
            if line.contains(want) {
                return line;
            }
        }
    }

    async fn ask(&mut self, line: &str, want: &str) -> String {
        self.send(line).await;
        self.expect(want).await
    }

    /// Closes stdin; returns (stdout, stderr).
    async fn finish(mut self) -> (String, String) {
        self.live.send("/quit").await;
        self.transcript.extend(self.live.finish().await);
        (self.transcript.join("\n"), self.log.await.unwrap())
    }
}

/// Whether `secret` occurs in `text`; an all-digit one (a PIN, a magic code) only as a whole
/// number, so a timestamp in the log that happens to hold the digits is not mistaken for it.
fn leaks(text: &[u8], secret: &str) -> bool {
    let s = secret.as_bytes();
    if !s.iter().all(u8::is_ascii_digit) {
        return contains(text, s);
    }
    text.windows(s.len()).enumerate().any(|(i, w)| {
        w == s
            && (i == 0 || !text[i - 1].is_ascii_digit())
            && !matches!(text.get(i + s.len()), Some(b) if b.is_ascii_digit())
    })
}

fn copy_pack(deputy: &Deputy, name: &str) {
    std::fs::copy(
        format!("{}/commands/{name}.toml", env!("CARGO_MANIFEST_DIR")),
        deputy.dir.path().join("packs").join(format!("{name}.toml")),
    )
    .unwrap();
}

/// A deputy with the jenkins, twitter and github packs pointed at the fakes, logging at trace.
fn deputy(jenkins: &str, x: &Provider, p: &OAuth2Provider, github: &str, extra: &str) -> Deputy {
    let extra = format!(
        // Not about rate limits: the scenario sends more commands than a burst.
        "\n[services.twitter]\nbase_url = \"{}\"\nconsumer_key = \"{}\"\n\n[limits]\ncommands_per_minute = 0\n\n{extra}",
        x.url,
        deputy::sandbox::CONSUMER_KEY
    );
    let mut d = Deputy::github(p, Some(github), &extra);
    let config = std::fs::read_to_string(d.config()).unwrap();
    std::fs::write(
        d.config(),
        config.replacen("http://127.0.0.1:9", jenkins, 1),
    )
    .unwrap();
    copy_pack(&d, "twitter");
    d.env.push((
        "DEPUTY_TWITTER_CONSUMER_SECRET".into(),
        deputy::sandbox::CONSUMER_SECRET.into(),
    ));
    d.env.push(("RUST_LOG".into(), "trace".into()));
    d
}

#[tokio::test]
async fn no_secret_of_any_flow_reaches_output_logs_or_files() {
    let jenkins = FakeJenkins::start().await;
    let x = Provider::start().await.unwrap();
    let p = OAuth2Provider::start(OAuth2Options::default())
        .await
        .unwrap();
    let mut outputs = Vec::new();
    let mut magic_codes = Vec::new();

    // API keys, OAuth 1.0a and the OAuth 2.0 device flow, in one process.
    let revocable = github_pack(&[(
        "client_auth = \"body\"",
        &format!(
            "client_auth = \"basic\"\nrevocation_url = \"{}/login/oauth/revoke\"",
            p.tls_url
        ),
    )]);
    let d1 = deputy(&jenkins.url, &x, &p, &revocable, "");
    let mut s = Session::start(&d1);
    s.ask(
        &format!("jenkins setkey {ALICE_KEY}"),
        "[alice] Stored your jenkins key",
    )
    .await;
    s.ask(
        "jenkins whoami",
        "[alice] You are alice (full name) on Jenkins.",
    )
    .await;
    s.ask("jenkins last boom", "server error (HTTP 500)").await;
    s.ask("jenkins setkey alice:revoked-token", "[alice] Stored")
        .await;
    s.ask("jenkins last deploy", "credential was rejected (HTTP 401)")
        .await;
    s.ask(&format!("jenkins setkey {ALICE_KEY}"), "[alice] Stored")
        .await;
    // bob pastes his key in a shared channel: refused, and never echoed.
    s.send("/public").await;
    s.send("/user bob").await;
    let refusal = s
        .ask(&format!("@deputy jenkins setkey {BOB_KEY}"), "[bob]")
        .await;
    // Only bob sees it, and the shell says so in the shared channel.
    assert!(
        refusal.starts_with("[bob] (only bob can see this) "),
        "{refusal}"
    );
    s.ask("@deputy jenkins whoami", "[bob] You haven't linked")
        .await;
    s.send("/dm").await;
    s.send("/user alice").await;

    // OAuth 1.0a: a wrong PIN, the right one, calls, a revoked token, logout.
    let reply = s.ask("t setupauth", "then tell me the PIN").await;
    let link = link_in(&reply);
    let pin = approve_and_read_pin(&link, "alice").await;
    let wrong = if pin == "0000000" {
        "0000001"
    } else {
        "0000000"
    };
    s.ask(&format!("t auth {wrong}"), "tries left").await;
    s.ask(
        &format!("t auth {pin}"),
        "[alice] Linked to @alice on twitter",
    )
    .await;
    s.ask("t whoami", "[alice] You are Alice (@alice) on X.")
        .await;
    s.ask("t search rustlang", "[alice] •").await;
    x.state.revoke_tokens_of("alice");
    s.ask("t whoami", "rejected your authorization (HTTP 401)")
        .await;
    let reply = s.ask("t setupauth", "then tell me the PIN").await;
    let pin = approve_and_read_pin(&link_in(&reply), "alice").await;
    s.ask(&format!("t auth {pin}"), "[alice] Linked").await;
    s.ask("t logout", "[alice] Deleted your twitter authorization")
        .await;

    // OAuth 2.0 device flow: link, refresh, a dead grant, link again, revoke at logout.
    for round in 0..2 {
        let reply = s.ask("gh setupauth", "enter the code").await;
        assert!(p.state.approve_device(&user_code(&reply), "alice"));
        s.expect("[alice] Linked your github account").await;
        if round == 0 {
            p.state.expire_access_tokens_of("alice");
            s.ask("gh whoami", "[alice] You are Alice (@alice) on GitHub.")
                .await;
            assert_eq!(p.state.refreshes(), 1);
            p.state.revoke_grants_of("alice");
            s.ask("gh whoami", "sign-in has expired or was revoked")
                .await;
            s.ask("gh logout", "[alice]").await;
        }
    }
    s.ask("gh whoami", "[alice] You are Alice (@alice) on GitHub.")
        .await;
    s.ask("gh logout", "[alice] Revoked your github token")
        .await;
    outputs.push(s.finish().await);

    // OAuth 2.0 browser flow with PKCE and a magic code, in a second process.
    let port = free_port();
    let browser = github_pack(&[("grant = \"device\"", "grant = \"authorization_code\"")]);
    let d2 = deputy(
        &jenkins.url,
        &x,
        &p,
        &browser,
        &format!("[web]\nlisten = \"127.0.0.1:{port}\"\npublic_url = \"http://127.0.0.1:{port}\""),
    );
    let mut s = Session::start(&d2);
    let reply = s.ask("gh setupauth", "code_challenge_method=S256").await;
    let page = reqwest::get(format!("{}&login=alice", link_in(&reply)))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let code = magic_code(&page);
    magic_codes.push(code.clone());
    s.expect("[alice] One more step").await;
    s.send("/user bob").await;
    s.ask(
        &format!("gh auth {code}"),
        "[bob] You have no github sign-in waiting",
    )
    .await;
    s.send("/user alice").await;
    let wrong = if code == "000000" { "000001" } else { "000000" };
    s.ask(&format!("gh auth {wrong}"), "tries left").await;
    s.ask(
        &format!("gh auth {code}"),
        "[alice] Linked your github account",
    )
    .await;
    s.ask("gh whoami", "[alice] You are Alice (@alice) on GitHub.")
        .await;
    s.ask("gh logout", "[alice]").await;
    outputs.push(s.finish().await);

    // Every secret the scenario involved.
    let mut secrets: Vec<(String, String)> = vec![
        (
            "alice's Jenkins token".into(),
            ALICE_KEY.split_once(':').unwrap().1.into(),
        ),
        (
            "bob's Jenkins token (pasted in public)".into(),
            BOB_KEY.split_once(':').unwrap().1.into(),
        ),
        ("a rejected Jenkins token".into(), "revoked-token".into()),
        (
            "alice's Basic header".into(),
            base64::Engine::encode(&base64::engine::general_purpose::STANDARD, ALICE_KEY),
        ),
        ("DEPUTY_SECRET".into(), SECRET_A.into()),
        (
            "the OAuth 1.0a consumer secret".into(),
            deputy::sandbox::CONSUMER_SECRET.into(),
        ),
        (
            "the OAuth 2.0 client secret".into(),
            deputy::sandbox::oauth2::CLIENT_SECRET.into(),
        ),
    ];
    for s in x.state.secrets_issued() {
        secrets.push(("an OAuth 1.0a token secret, access token or PIN".into(), s));
    }
    for s in p.state.secrets_issued() {
        secrets.push((
            "an OAuth 2.0 token, device code or authorization code".into(),
            s,
        ));
    }
    for c in magic_codes {
        secrets.push(("a magic code".into(), c));
    }
    // The scenario really produced them: 2 request secrets, 2 PINs, 2 access tokens with
    // secrets on X; device codes, codes, access and refresh tokens on the OAuth 2.0 side.
    assert!(x.state.secrets_issued().len() >= 8);
    assert!(p.state.secrets_issued().len() >= 8);

    let mut places: Vec<(String, Vec<u8>)> = Vec::new();
    for (i, (out, log)) in outputs.into_iter().enumerate() {
        assert!(log.contains("TRACE"), "logs at trace level");
        assert!(!log.contains("panicked"), "{log}");
        places.push((format!("process {i} stdout"), out.into_bytes()));
        places.push((format!("process {i} stderr"), log.into_bytes()));
    }
    for d in [&d1, &d2] {
        for (path, bytes) in snapshot(d.dir.path()) {
            places.push((path.display().to_string(), bytes));
        }
    }
    assert!(places.len() > 6, "the brain's files were read");
    // The scan finds what is there: the request token, public by design in the sign-in
    // link, is in the replies; the client id is in the config file.
    let request_token = link.split("oauth_token=").nth(1).unwrap();
    assert!(leaks(&places[0].1, request_token));
    assert!(places
        .iter()
        .any(|(_, b)| leaks(b, deputy::sandbox::oauth2::CLIENT_ID)));
    let mut found = Vec::new();
    for (what, secret) in &secrets {
        assert!(secret.len() >= 6, "{what}: {secret}");
        for (place, bytes) in &places {
            if leaks(bytes, secret) {
                found.push(format!("{what} in {place}"));
            }
        }
    }
    assert!(found.is_empty(), "secrets leaked:\n{}", found.join("\n"));
}
