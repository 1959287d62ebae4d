//! Tests of the fake OAuth 2.0 provider over real HTTP and TLS, with plain reqwest (and, in
//! one test, the oauth2 crate deputy's client is built on, to catch format mismatches).

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use percent_encoding::{utf8_percent_encode, NON_ALPHANUMERIC};
use reqwest::header::{HeaderMap, AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::*;

/// RFC 7636 appendix B.
const RFC_VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const RFC_CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
const REDIRECT_URI: &str = "http://127.0.0.1:9/callback?from=test";

/// How a test request authenticates the client.
#[derive(Clone, Copy)]
enum Auth<'a> {
    Basic(&'a str, &'a str),
    Body(&'a str, &'a str),
    None,
}

const GOOD: Auth<'static> = Auth::Basic(CLIENT_ID, CLIENT_SECRET);

/// RFC 6749 2.3.1: each half form-urlencoded (over-encoded here, which must still decode).
fn basic(id: &str, secret: &str) -> String {
    let enc = |s| utf8_percent_encode(s, NON_ALPHANUMERIC).to_string();
    format!(
        "Basic {}",
        BASE64.encode(format!("{}:{}", enc(id), enc(secret)))
    )
}

fn fast() -> OAuth2Options {
    OAuth2Options {
        device_interval_secs: 0,
        ..OAuth2Options::default()
    }
}

struct Tokens {
    access: String,
    refresh: String,
}

struct Sandbox {
    p: OAuth2Provider,
    /// Trusts the sandbox's certificate; follows no redirects.
    http: reqwest::Client,
}

impl Sandbox {
    async fn start(options: OAuth2Options) -> Sandbox {
        let p = OAuth2Provider::start(options).await.unwrap();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .add_root_certificate(reqwest::Certificate::from_pem(p.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap();
        Sandbox { p, http }
    }

    async fn post(
        &self,
        url: &str,
        auth: Auth<'_>,
        form: &[(&str, &str)],
    ) -> (StatusCode, HeaderMap, Value) {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        let mut request = self.http.post(url);
        match auth {
            Auth::Basic(id, secret) => request = request.header(AUTHORIZATION, basic(id, secret)),
            Auth::Body(id, secret) => form.extend([("client_id", id), ("client_secret", secret)]),
            Auth::None => {}
        }
        let reply = request.form(&form).send().await.unwrap();
        let (status, headers) = (reply.status(), reply.headers().clone());
        let text = reply.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, headers, body)
    }

    async fn token(&self, auth: Auth<'_>, form: &[(&str, &str)]) -> (StatusCode, Value) {
        let url = format!("{}/login/oauth/access_token", self.p.url);
        let (status, _, body) = self.post(&url, auth, form).await;
        (status, body)
    }

    async fn device_start(&self, scope: &str) -> Value {
        let url = format!("{}/login/device/code", self.p.url);
        let form = [("client_id", CLIENT_ID), ("scope", scope)];
        let (status, _, body) = self.post(&url, Auth::None, &form).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    async fn poll(&self, device: &Value) -> (StatusCode, Value) {
        let code = device["device_code"].as_str().unwrap();
        let form = [("grant_type", DEVICE_GRANT), ("device_code", code)];
        self.token(GOOD, &form).await
    }

    /// The device flow for `login`, approved through the state API.
    async fn login(&self, login: &str, scope: &str) -> Tokens {
        let device = self.device_start(scope).await;
        let user_code = device["user_code"].as_str().unwrap();
        assert!(self.p.state.approve_device(user_code, login));
        let (status, body) = self.poll(&device).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        tokens(&body)
    }

    async fn refresh(&self, auth: Auth<'_>, refresh: &str) -> (StatusCode, Value) {
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        self.token(auth, &form).await
    }

    async fn get(&self, base: &str, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        let url = format!("{base}{path}");
        let reply = self.http.get(url).bearer_auth(token).send().await.unwrap();
        let (status, headers) = (reply.status(), reply.headers().clone());
        (status, headers, reply.json().await.unwrap())
    }

    async fn api(&self, path: &str, token: &str) -> (StatusCode, HeaderMap, Value) {
        self.get(&self.p.url, path, token).await
    }

    async fn create_issue(
        &self,
        repo: &str,
        token: &str,
        body: Value,
    ) -> (StatusCode, HeaderMap, Value) {
        let url = format!("{}/api/repos/{repo}/issues", self.p.url);
        let request = self.http.post(url).bearer_auth(token).json(&body);
        let reply = request.send().await.unwrap();
        let (status, headers) = (reply.status(), reply.headers().clone());
        (status, headers, reply.json().await.unwrap())
    }

    async fn revoke(
        &self,
        base: &str,
        auth: Auth<'_>,
        form: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let url = format!("{base}/login/oauth/revoke");
        let (status, _, body) = self.post(&url, auth, form).await;
        (status, body)
    }

    /// The authorize page for `extra` on top of a valid PKCE request.
    async fn authorize(&self, extra: &[(&str, &str)]) -> reqwest::Response {
        let mut query = vec![
            ("response_type", "code"),
            ("client_id", CLIENT_ID),
            ("redirect_uri", REDIRECT_URI),
            ("scope", "repo read:user"),
            ("state", "st4te"),
            ("code_challenge", RFC_CHALLENGE),
            ("code_challenge_method", "S256"),
        ];
        for (name, value) in extra {
            query.retain(|(n, _)| n != name);
            query.push((name, value));
        }
        let url = format!("{}/login/oauth/authorize", self.p.url);
        self.http.get(url).query(&query).send().await.unwrap()
    }

    /// Approves as `alice`: the code from the redirect.
    async fn code(&self) -> String {
        let reply = self.authorize(&[("login", "alice")]).await;
        assert_eq!(reply.status(), StatusCode::FOUND);
        let location = reply.headers()[LOCATION].to_str().unwrap();
        let query = location
            .strip_prefix(REDIRECT_URI)
            .unwrap()
            .strip_prefix('&')
            .unwrap();
        let pairs: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(pairs["state"], "st4te");
        pairs["code"].clone()
    }

    async fn exchange(
        &self,
        code: &str,
        verifier: &str,
        redirect_uri: &str,
    ) -> (StatusCode, Value) {
        let form = [
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", redirect_uri),
            ("code_verifier", verifier),
        ];
        self.token(GOOD, &form).await
    }

    fn last_request(&self) -> Recorded2 {
        self.p.state.requests().pop().unwrap()
    }
}

fn tokens(body: &Value) -> Tokens {
    Tokens {
        access: body["access_token"].as_str().unwrap().to_string(),
        refresh: body["refresh_token"].as_str().unwrap().to_string(),
    }
}

#[test]
fn s256_matches_rfc_7636_appendix_b() {
    assert_eq!(s256(RFC_VERIFIER), RFC_CHALLENGE);
}

#[test]
fn user_codes_look_like_github_ones() {
    for _ in 0..100 {
        let code = new_user_code();
        let (a, b) = code.split_once('-').unwrap();
        assert_eq!((a.len(), b.len()), (4, 4), "{code}");
        assert!(
            format!("{a}{b}")
                .bytes()
                .all(|c| USER_CODE_ALPHABET.contains(&c)),
            "{code}"
        );
    }
    assert_eq!(normalize_user_code("wdjb mjht"), "WDJBMJHT");
}

#[tokio::test]
async fn device_flow_pending_then_approved_then_consumed() {
    let sb = Sandbox::start(fast()).await;
    let device = sb.device_start("read:user gist").await;
    assert_eq!(
        device["verification_uri"],
        format!("{}/login/device", sb.p.url)
    );
    assert_eq!(device["expires_in"], 600);
    assert_eq!(device["interval"], 0);
    assert!(device["device_code"].as_str().unwrap().len() >= 40);
    let user_code = device["user_code"].as_str().unwrap().to_string();

    // A 0 s interval: polling back to back is never too fast.
    for _ in 0..3 {
        let (status, body) = sb.poll(&device).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(body["error"], "authorization_pending");
    }
    assert_eq!(sb.p.state.slow_downs_sent(), 0);

    let page = sb
        .http
        .get(format!("{}/login/device", sb.p.url))
        .send()
        .await
        .unwrap();
    let page = page.text().await.unwrap();
    assert!(
        page.contains("name=\"user_code\"") && page.contains("name=\"login\""),
        "{page}"
    );

    // Typed the way a user would: lower case, no dash.
    let typed = user_code.replace('-', "").to_lowercase();
    let url = format!("{}/login/device?user_code={typed}&login=alice", sb.p.url);
    let reply = sb.http.get(url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply
        .text()
        .await
        .unwrap()
        .contains("Device approved for alice"));

    let (status, body) = sb.poll(&device).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "read:user gist");
    let t = tokens(&body);
    assert_ne!(t.access, t.refresh);

    let (status, body) = sb.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(sb.p.state.polls().len(), 5);

    let (status, _, me) = sb.api("/api/user", &t.access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["login"], "alice");
    // Approving again is refused: the device code is gone.
    assert!(!sb.p.state.approve_device(&user_code, "mallory"));
}

#[tokio::test]
async fn polling_too_fast_gets_slow_down_and_a_longer_interval() {
    let sb = Sandbox::start(OAuth2Options::default()).await;
    let device = sb.device_start("").await;
    assert_eq!(device["interval"], 1);

    let (_, body) = sb.poll(&device).await;
    assert_eq!(body["error"], "authorization_pending");
    let (status, body) = sb.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "slow_down");
    assert_eq!(body["interval"], 6);
    // Even an approved device answers slow_down to a client that does not back off.
    assert!(sb
        .p
        .state
        .approve_device(device["user_code"].as_str().unwrap(), "alice"));
    let (_, body) = sb.poll(&device).await;
    assert_eq!(body["error"], "slow_down");
    assert_eq!(body["interval"], 11);

    assert_eq!(sb.p.state.slow_downs_sent(), 2);
    let polls = sb.p.state.polls();
    assert_eq!(polls.len(), 3);
    assert!(polls.windows(2).all(|w| w[0] <= w[1]));
    assert!(sb.last_request().note.unwrap().contains("slow_down"));
}

#[tokio::test]
async fn denied_device_gets_access_denied() {
    let sb = Sandbox::start(fast()).await;
    let device = sb.device_start("repo").await;
    let user_code = device["user_code"].as_str().unwrap();
    let url = format!("{}/login/device?user_code={user_code}&deny=1", sb.p.url);
    let reply = sb.http.get(url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::OK);
    assert!(reply.text().await.unwrap().contains("Device denied"));

    let (status, body) = sb.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "access_denied");
    // The decision is final.
    assert!(!sb.p.state.approve_device(user_code, "alice"));
    assert!(!sb.p.state.deny_device(user_code));

    let url = format!("{}/login/device?user_code=BCDF-GHJK&login=alice", sb.p.url);
    let reply = sb.http.get(url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::NOT_FOUND);
    let url = format!(
        "{}/login/device?user_code={user_code}&login=%3Cscript%3E",
        sb.p.url
    );
    let reply = sb.http.get(url).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);

    // Programmatic denial too.
    let device = sb.device_start("repo").await;
    assert!(sb
        .p
        .state
        .deny_device(device["user_code"].as_str().unwrap()));
    assert_eq!(sb.poll(&device).await.1["error"], "access_denied");
}

#[tokio::test]
async fn expired_device_code_gets_expired_token() {
    let options = OAuth2Options {
        device_expires_in_secs: 0,
        ..fast()
    };
    let sb = Sandbox::start(options).await;
    let device = sb.device_start("repo").await;
    assert_eq!(device["expires_in"], 0);
    let user_code = device["user_code"].as_str().unwrap();
    assert!(!sb.p.state.approve_device(user_code, "alice"));
    let url = format!(
        "{}/login/device?user_code={user_code}&login=alice",
        sb.p.url
    );
    assert_eq!(
        sb.http.get(url).send().await.unwrap().status(),
        StatusCode::NOT_FOUND
    );

    let (status, body) = sb.poll(&device).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "expired_token");
}

#[tokio::test]
async fn authorization_code_with_pkce() {
    let sb = Sandbox::start(fast()).await;

    let consent = sb.authorize(&[]).await;
    assert_eq!(consent.status(), StatusCode::OK);
    let consent = consent.text().await.unwrap();
    assert!(consent.contains("name=\"login\""), "{consent}");
    assert!(consent.contains(&format!(
        "name=\"code_challenge\" value=\"{RFC_CHALLENGE}\""
    )));
    assert!(consent.contains("deny=1"));

    let code = sb.code().await;
    let other_verifier = "x".repeat(43);
    let (status, body) = sb.exchange(&code, &other_verifier, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"].as_str().unwrap().contains("PKCE"),
        "{body}"
    );

    let (status, body) = sb
        .exchange(&code, RFC_VERIFIER, "http://127.0.0.1:9/elsewhere")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("redirect_uri"),
        "{body}"
    );

    let (status, body) = sb.exchange(&code, RFC_VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "repo read:user");
    let t = tokens(&body);
    assert_eq!(sb.api("/api/user", &t.access).await.2["login"], "alice");

    let (status, body) = sb.exchange(&code, RFC_VERIFIER, REDIRECT_URI).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert!(
        body["error_description"]
            .as_str()
            .unwrap()
            .contains("already been used"),
        "{body}"
    );

    let (_, body) = sb.exchange("nope", RFC_VERIFIER, REDIRECT_URI).await;
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn authorize_refuses_bad_requests_and_redirects_denials() {
    let sb = Sandbox::start(fast()).await;
    for extra in [
        [("code_challenge_method", "plain")],
        [("code_challenge", "")],
        [("client_id", "someone-else")],
        [("response_type", "token")],
        [("redirect_uri", "javascript:alert(1)")],
    ] {
        let reply = sb.authorize(&extra).await;
        assert_eq!(reply.status(), StatusCode::BAD_REQUEST, "{extra:?}");
    }
    let reply = sb.authorize(&[("deny", "1")]).await;
    assert_eq!(reply.status(), StatusCode::FOUND);
    assert_eq!(
        reply.headers()[LOCATION],
        format!("{REDIRECT_URI}&error=access_denied&state=st4te").as_str()
    );
    let reply = sb
        .authorize(&[
            ("login", "alice"),
            ("redirect_uri", "http://localhost:8/cb"),
        ])
        .await;
    let location = reply.headers()[LOCATION].to_str().unwrap();
    assert!(
        location.starts_with("http://localhost:8/cb?code="),
        "{location}"
    );
}

#[tokio::test]
async fn client_authentication_basic_or_body() {
    let sb = Sandbox::start(fast()).await;
    let t = sb.login("alice", "repo").await;

    // In the body.
    let (status, body) = sb
        .refresh(Auth::Body(CLIENT_ID, CLIENT_SECRET), &t.refresh)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(sb.last_request().client_ok, Some(true));
    let t = tokens(&body);
    // HTTP Basic.
    let (status, body) = sb.refresh(GOOD, &t.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let t = tokens(&body);

    let url = format!("{}/login/oauth/access_token", sb.p.url);
    let form = [
        ("grant_type", "refresh_token"),
        ("refresh_token", t.refresh.as_str()),
    ];
    for auth in [
        Auth::Basic(CLIENT_ID, "wrong"),
        Auth::Body(CLIENT_ID, "wrong"),
        Auth::Basic("someone-else", CLIENT_SECRET),
        Auth::None,
    ] {
        let (status, headers, body) = sb.post(&url, auth, &form).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"], "invalid_client");
        assert!(headers.contains_key(WWW_AUTHENTICATE));
        assert_eq!(sb.last_request().client_ok, Some(false));
    }
    // A client_id alone is not enough at the token endpoint...
    let with_id = [form[0], form[1], ("client_id", CLIENT_ID)];
    assert_eq!(
        sb.token(Auth::None, &with_id).await.0,
        StatusCode::UNAUTHORIZED
    );
    // ...and two methods at once are malformed.
    let with_secret = [form[0], form[1], ("client_secret", CLIENT_SECRET)];
    let (status, body) = sb.token(GOOD, &with_secret).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_request"))
    );
    // None of that used up the refresh token.
    assert_eq!(sb.refresh(GOOD, &t.refresh).await.0, StatusCode::OK);
    assert_eq!(sb.p.state.refreshes(), 3);

    // The device authorization request: a wrong secret is refused even there.
    let url = format!("{}/login/device/code", sb.p.url);
    let (status, _, _) = sb.post(&url, Auth::Basic(CLIENT_ID, "wrong"), &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _, _) = sb.post(&url, GOOD, &[("scope", "repo")]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = sb.post(&url, Auth::None, &[]).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_grant() {
    let sb = Sandbox::start(fast()).await;
    let first = sb.login("alice", "repo").await;
    let other = sb.login("bob", "repo").await;

    let (status, body) = sb.refresh(GOOD, &first.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["scope"], "repo");
    let second = tokens(&body);
    assert_ne!(second.refresh, first.refresh);
    assert_ne!(second.access, first.access);
    assert_eq!(sb.p.state.refreshes(), 1);
    assert_eq!(sb.api("/api/user", &second.access).await.0, StatusCode::OK);

    // The rotated token comes back: someone else has it too.
    let (status, body) = sb.refresh(GOOD, &first.refresh).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "invalid_grant");
    assert_eq!(sb.p.state.grants_revoked_for_reuse(), 1);
    for access in [&first.access, &second.access] {
        let (status, _, body) = sb.api("/api/user", access).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body, json!({"message": "Bad credentials"}));
    }
    let (status, body) = sb.refresh(GOOD, &second.refresh).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::BAD_REQUEST, &json!("invalid_grant"))
    );
    // Counted once, and other grants are untouched.
    assert_eq!(sb.p.state.grants_revoked_for_reuse(), 1);
    assert_eq!(sb.p.state.refreshes(), 1);
    assert_eq!(sb.p.state.valid_access_tokens(), 1);
    assert_eq!(sb.api("/api/user", &other.access).await.0, StatusCode::OK);
}

#[tokio::test]
async fn revocation_only_over_https_and_it_ends_the_grant() {
    let sb = Sandbox::start(fast()).await;
    let t = sb.login("alice", "repo").await;
    let (https, http) = (sb.p.tls_url.clone(), sb.p.url.clone());
    assert!(https.starts_with("https://127.0.0.1:"));

    let form = [
        ("token", t.refresh.as_str()),
        ("token_type_hint", "refresh_token"),
    ];
    let (status, body) = sb.revoke(&http, GOOD, &form).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        body,
        json!({"error": "invalid_request", "error_description": "revocation requires https"})
    );
    assert_eq!(sb.p.state.revocations(), 0);
    assert_eq!(sb.api("/api/user", &t.access).await.0, StatusCode::OK);

    // The same router answers over TLS.
    let (status, _, me) = sb.get(&https, "/api/user", &t.access).await;
    assert_eq!((status, &me["login"]), (StatusCode::OK, &json!("alice")));

    let (status, body) = sb.revoke(&https, Auth::None, &form).await;
    assert_eq!(
        (status, &body["error"]),
        (StatusCode::UNAUTHORIZED, &json!("invalid_client"))
    );

    let (status, _) = sb.revoke(&https, GOOD, &form).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sb.p.state.revocations(), 1);
    let last = sb.last_request();
    assert!(last.tls && last.client_ok == Some(true), "{last:?}");
    assert!(last.note.unwrap().starts_with("revoked grant"));
    // Revoking the refresh token took its access token with it.
    assert_eq!(
        sb.api("/api/user", &t.access).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sb.get(&https, "/api/user", &t.access).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        sb.refresh(GOOD, &t.refresh).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(sb.p.state.valid_access_tokens(), 0);

    // An access token ends its grant too; an unknown token is still a 200 (RFC 7009 2.2).
    let t = sb.login("alice", "repo").await;
    let body_auth = Auth::Body(CLIENT_ID, CLIENT_SECRET);
    assert_eq!(
        sb.revoke(&https, body_auth, &[("token", &t.access)])
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        sb.refresh(GOOD, &t.refresh).await.1["error"],
        "invalid_grant"
    );
    assert_eq!(
        sb.revoke(&https, GOOD, &[("token", "nope")]).await.0,
        StatusCode::OK
    );
    assert_eq!(sb.p.state.revocations(), 3);

    // A client that does not trust the sandbox's certificate cannot connect at all.
    let stranger = reqwest::Client::new();
    assert!(stranger.get(format!("{https}/")).send().await.is_err());
}

#[tokio::test]
async fn api_checks_tokens_and_scopes() {
    let sb = Sandbox::start(fast()).await;
    let reader = sb.login("alice", "read:user").await;
    let writer = sb.login("bob", "repo read:user").await;

    let (status, headers, me) = sb.api("/api/user", &reader.access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers["x-oauth-scopes"], "read:user");
    assert_eq!(me["name"], "Alice");
    let id = me["id"].as_u64().unwrap();
    let again = sb.login("alice", "read:user").await;
    assert_eq!(
        sb.api("/api/user", &again.access).await.2["id"].as_u64(),
        Some(id)
    );
    // GitHub's older scheme.
    let reply = sb.http.get(format!("{}/api/user", sb.p.url));
    let reply = reply.header(AUTHORIZATION, format!("token {}", reader.access));
    assert_eq!(reply.send().await.unwrap().status(), StatusCode::OK);

    for token in ["", "gho_nope"] {
        let (status, _, body) = sb.api("/api/user", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(body["message"], "Bad credentials");
    }

    let (status, _, issues) = sb.api("/api/repos/octo/hello/issues", &reader.access).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(issues.as_array().unwrap().len(), 2);
    assert_eq!(issues[0]["state"], "open");
    assert_eq!(
        issues[1]["html_url"],
        format!("{}/octo/hello/issues/1", sb.p.url)
    );
    let (_, _, none) = sb.api("/api/repos/octo/other/issues", &reader.access).await;
    assert_eq!(none, json!([]));

    let (status, headers, body) = sb
        .create_issue("octo/hello", &reader.access, json!({"title": "Nope"}))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(body["message"], "Resource not accessible by integration");
    assert_eq!(headers["x-accepted-oauth-scopes"], "repo");

    let (status, _, body) = sb
        .create_issue("octo/hello", &writer.access, json!({"title": "  "}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["message"], "Validation Failed");

    let (status, headers, issue) = sb
        .create_issue(
            "octo/hello",
            &writer.access,
            json!({"title": "Typo", "body": "teh"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issue}");
    assert_eq!(headers["x-oauth-scopes"], "repo, read:user");
    assert_eq!(issue["number"], 3);
    assert_eq!(issue["user"]["login"], "bob");
    assert_eq!(
        issue["html_url"],
        format!("{}/octo/hello/issues/3", sb.p.url)
    );
    let stored = sb.p.state.issues();
    assert_eq!(stored.len(), 3);
    assert_eq!(
        stored[2],
        (
            "octo/hello".to_string(),
            3,
            "Typo".to_string(),
            "bob".to_string()
        )
    );
    let (_, _, issues) = sb.api("/api/repos/octo/hello/issues", &reader.access).await;
    assert_eq!(issues[0]["title"], "Typo");
}

#[tokio::test]
async fn expired_access_tokens_get_401_until_refreshed() {
    let sb = Sandbox::start(fast()).await;
    let alice = sb.login("alice", "repo").await;
    let bob = sb.login("bob", "repo").await;
    assert_eq!(sb.p.state.valid_access_tokens(), 2);

    sb.p.state.expire_access_tokens_of("alice");
    let (status, _, body) = sb.api("/api/user", &alice.access).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["message"], "Bad credentials");
    assert!(sb.last_request().note.unwrap().contains("expired"));
    assert_eq!(sb.api("/api/user", &bob.access).await.0, StatusCode::OK);
    assert_eq!(sb.p.state.valid_access_tokens(), 1);

    let (status, body) = sb.refresh(GOOD, &alice.refresh).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        sb.api("/api/user", &tokens(&body).access).await.0,
        StatusCode::OK
    );

    // A zero lifetime: dead on arrival.
    let sb = Sandbox::start(OAuth2Options {
        access_token_ttl_secs: 0,
        ..fast()
    })
    .await;
    let t = sb.login("alice", "repo").await;
    assert_eq!(
        sb.api("/api/user", &t.access).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn fail_next_injects_a_fault_once_and_records_everything() {
    let sb = Sandbox::start(fast()).await;
    let t = sb.login("alice", "repo").await;
    sb.p.state
        .fail_next("/login/oauth/access_token", Fault::Status(503));
    let (status, _) = sb.refresh(GOOD, &t.refresh).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let last = sb.last_request();
    assert_eq!((last.status, last.client_ok), (503, None));
    assert!(last.note.unwrap().contains("injected fault"));
    // The fault did not reach the handler: the refresh token is still good.
    assert_eq!(sb.refresh(GOOD, &t.refresh).await.0, StatusCode::OK);

    let paths: Vec<(String, String, u16)> =
        sb.p.state
            .requests()
            .into_iter()
            .map(|r| (r.method, r.path, r.status))
            .collect();
    assert_eq!(
        paths,
        [
            ("POST", "/login/device/code", 200),
            ("POST", "/login/oauth/access_token", 200),
            ("POST", "/login/oauth/access_token", 503),
            ("POST", "/login/oauth/access_token", 200),
        ]
        .map(|(m, p, s)| (m.to_string(), p.to_string(), s))
    );
}

#[tokio::test]
async fn shutdown_stops_both_listeners() {
    let sb = Sandbox::start(fast()).await;
    assert!(sb.http.get(&sb.p.url).send().await.is_ok());
    sb.p.shutdown();
    // Fresh connections, so no pooled keep-alive connection answers.
    let fresh = || {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(sb.p.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    };
    for url in [&sb.p.url, &sb.p.tls_url] {
        let mut refused = false;
        for _ in 0..50 {
            if fresh().get(url.as_str()).send().await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(refused, "{url} still answers");
    }
}

/// The oauth2 crate, over reqwest: the sandbox's JSON must be what it parses.
mod with_the_oauth2_crate {
    use ::oauth2::basic::BasicClient;
    use ::oauth2::{
        AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl,
        HttpRequest, HttpResponse, PkceCodeChallenge, RedirectUrl, RevocationUrl, Scope,
        StandardDeviceAuthorizationResponse, StandardRevocableToken, TokenResponse, TokenUrl,
    };

    use super::*;

    async fn send(
        http: reqwest::Client,
        request: HttpRequest,
    ) -> Result<HttpResponse, reqwest::Error> {
        let (parts, body) = request.into_parts();
        let reply = http
            .request(parts.method, parts.uri.to_string())
            .headers(parts.headers)
            .body(body)
            .send()
            .await?;
        let mut response = ::oauth2::http::Response::builder().status(reply.status());
        for (name, value) in reply.headers() {
            response = response.header(name, value);
        }
        Ok(response.body(reply.bytes().await?.to_vec()).unwrap())
    }

    #[tokio::test]
    async fn device_pkce_refresh_and_revoke() {
        let sb = Sandbox::start(fast()).await;
        let http = sb.http.clone();
        let client_fn = move |request: HttpRequest| send(http.clone(), request);
        let url = |path: &str| format!("{}{path}", sb.p.url);
        let client = BasicClient::new(ClientId::new(CLIENT_ID.into()))
            .set_client_secret(ClientSecret::new(CLIENT_SECRET.into()))
            .set_auth_uri(AuthUrl::new(url("/login/oauth/authorize")).unwrap())
            .set_token_uri(TokenUrl::new(url("/login/oauth/access_token")).unwrap())
            .set_device_authorization_url(
                DeviceAuthorizationUrl::new(url("/login/device/code")).unwrap(),
            )
            .set_revocation_url(
                RevocationUrl::new(format!("{}/login/oauth/revoke", sb.p.tls_url)).unwrap(),
            )
            .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:9/cb".into()).unwrap());

        let details: StandardDeviceAuthorizationResponse = client
            .exchange_device_code()
            .add_scope(Scope::new("repo".into()))
            .request_async(&client_fn)
            .await
            .unwrap();
        assert!(sb
            .p
            .state
            .approve_device(details.user_code().secret(), "alice"));
        let token = client
            .exchange_device_access_token(&details)
            .request_async(&client_fn, tokio::time::sleep, None)
            .await
            .unwrap();
        assert_eq!(token.scopes().unwrap()[0].as_str(), "repo");
        assert_eq!(token.expires_in(), Some(Duration::from_secs(3600)));

        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let (authorize, csrf) = client
            .authorize_url(CsrfToken::new_random)
            .add_scope(Scope::new("read:user".into()))
            .set_pkce_challenge(challenge)
            .url();
        let approve = format!("{authorize}&login=bob");
        let reply = sb.http.get(approve).send().await.unwrap();
        let location = reply.headers()[LOCATION].to_str().unwrap();
        let query = location.split_once('?').unwrap().1;
        let pairs: HashMap<String, String> = serde_urlencoded::from_str(query).unwrap();
        assert_eq!(&pairs["state"], csrf.secret());
        let code = AuthorizationCode::new(pairs["code"].clone());
        let bob = client
            .exchange_code(code)
            .set_pkce_verifier(verifier)
            .request_async(&client_fn)
            .await
            .unwrap();
        assert_eq!(
            sb.api("/api/user", bob.access_token().secret()).await.2["login"],
            "bob"
        );

        let refreshed = client
            .exchange_refresh_token(bob.refresh_token().unwrap())
            .request_async(&client_fn)
            .await
            .unwrap();
        let revocable =
            StandardRevocableToken::RefreshToken(refreshed.refresh_token().unwrap().clone());
        client
            .revoke_token(revocable)
            .unwrap()
            .request_async(&client_fn)
            .await
            .unwrap();
        assert_eq!(sb.p.state.revocations(), 1);
        let access = refreshed.access_token().secret();
        assert_eq!(
            sb.api("/api/user", access).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            sb.api("/api/user", token.access_token().secret()).await.0,
            StatusCode::OK
        );
    }
}
