//! Tests of the sandbox over real HTTP. Requests are signed here with the verifier's own
//! helpers, not with deputy's OAuth client: these tests are about the server.

use std::collections::HashMap;

use reqwest::header::{AUTHORIZATION, LOCATION};
use reqwest::StatusCode;
use serde_json::{json, Value};

use super::oauth1_verify::{hmac_sha1_sign, percent_encode, signature_base_string};
use super::*;

/// (token, secret)
type Token = (String, String);

/// An `Authorization: OAuth ...` value for `method url`, signed as a client would.
fn sign(method: &str, url: &str, token: Option<&Token>, extra: &[(&str, &str)]) -> String {
    sign_with(method, url, token, extra, &random_token(16), unix_now())
}

fn sign_with(
    method: &str,
    url: &str,
    token: Option<&Token>,
    extra: &[(&str, &str)],
    nonce: &str,
    timestamp: u64,
) -> String {
    let timestamp = timestamp.to_string();
    let mut oauth: Vec<(String, String)> = [
        ("oauth_consumer_key", CONSUMER_KEY),
        ("oauth_nonce", nonce),
        ("oauth_signature_method", "HMAC-SHA1"),
        ("oauth_timestamp", &timestamp),
        ("oauth_version", "1.0"),
    ]
    .iter()
    .chain(extra)
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    if let Some((t, _)) = token {
        oauth.push(("oauth_token".into(), t.clone()));
    }
    let mut params = oauth.clone();
    if let Some((_, query)) = url.split_once('?') {
        params.extend(serde_urlencoded::from_str::<Vec<(String, String)>>(query).unwrap());
    }
    let base = signature_base_string(method, url, &params);
    let token_secret = token.map_or("", |(_, s)| s.as_str());
    oauth.push((
        "oauth_signature".into(),
        hmac_sha1_sign(&base, CONSUMER_SECRET, token_secret),
    ));
    let fields: Vec<String> = oauth
        .iter()
        .map(|(n, v)| format!("{}=\"{}\"", percent_encode(n), percent_encode(v)))
        .collect();
    format!("OAuth {}", fields.join(", "))
}

fn form(body: &str) -> HashMap<String, String> {
    serde_urlencoded::from_str(body).unwrap()
}

fn pin(html: &str) -> String {
    let start = html.find("<code id=\"pin\">").expect("a PIN") + "<code id=\"pin\">".len();
    html[start..start + 7].to_string()
}

struct Sandbox {
    p: Provider,
    http: reqwest::Client,
}

impl Sandbox {
    async fn start() -> Sandbox {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let p = Provider::start().await.unwrap();
        Sandbox { p, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.p.url)
    }

    async fn request_token(&self, callback: &str) -> reqwest::Response {
        let url = self.url("/oauth/request_token");
        let auth = sign("POST", &url, None, &[("oauth_callback", callback)]);
        self.http
            .post(&url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .unwrap()
    }

    /// A fresh request token for `callback`.
    async fn new_request_token(&self, callback: &str) -> Token {
        let reply = self.request_token(callback).await;
        assert_eq!(reply.status(), StatusCode::OK);
        let reply = form(&reply.text().await.unwrap());
        assert_eq!(reply["oauth_callback_confirmed"], "true");
        (
            reply["oauth_token"].clone(),
            reply["oauth_token_secret"].clone(),
        )
    }

    async fn authorize(&self, query: &str) -> reqwest::Response {
        let url = self.url(&format!("/oauth/authorize?{query}"));
        self.http.get(url).send().await.unwrap()
    }

    async fn access_token(&self, request: &Token, verifier: &str) -> reqwest::Response {
        let url = self.url("/oauth/access_token");
        let auth = sign("POST", &url, Some(request), &[("oauth_verifier", verifier)]);
        self.http
            .post(&url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .unwrap()
    }

    /// The whole PIN flow for `name`: its access token.
    async fn login(&self, name: &str) -> Token {
        let request = self.new_request_token("oob").await;
        let query = format!("oauth_token={}&screen_name={name}", request.0);
        let pin = pin(&self.authorize(&query).await.text().await.unwrap());
        let reply = self.access_token(&request, &pin).await;
        assert_eq!(reply.status(), StatusCode::OK);
        let reply = form(&reply.text().await.unwrap());
        (
            reply["oauth_token"].clone(),
            reply["oauth_token_secret"].clone(),
        )
    }

    async fn get(&self, path: &str, token: &Token) -> (StatusCode, Value) {
        let url = self.url(path);
        let auth = sign("GET", &url, Some(token), &[]);
        let reply = self
            .http
            .get(&url)
            .header(AUTHORIZATION, auth)
            .send()
            .await
            .unwrap();
        (reply.status(), reply.json().await.unwrap_or(Value::Null))
    }

    async fn tweet(&self, token: &Token, body: Value) -> (StatusCode, Value) {
        let url = self.url("/2/tweets");
        let auth = sign("POST", &url, Some(token), &[]);
        let request = self.http.post(&url).header(AUTHORIZATION, auth).json(&body);
        let reply = request.send().await.unwrap();
        (reply.status(), reply.json().await.unwrap())
    }

    fn last_request(&self) -> Recorded {
        self.p.state.requests().pop().unwrap()
    }
}

#[tokio::test]
async fn pin_flow_then_tweet_and_search() {
    let sb = Sandbox::start().await;
    let request = sb.new_request_token("oob").await;

    let consent = sb.authorize(&format!("oauth_token={}", request.0)).await;
    let consent = consent.text().await.unwrap();
    assert!(consent.contains("Authorize deputy (sandbox) to use your account?"));
    assert!(consent.contains("name=\"screen_name\" value=\"sandbox_user\""));
    assert!(consent.contains("deny=1"));

    let query = format!("oauth_token={}&screen_name=alice", request.0);
    let page = sb.authorize(&query).await.text().await.unwrap();
    let pin = pin(&page);
    assert!(pin.bytes().all(|b| b.is_ascii_digit()), "{pin}");
    assert!(page.contains(&format!("Enter this PIN in chat: t auth {pin}")));

    let wrong = if pin == "0000000" {
        "1111111"
    } else {
        "0000000"
    };
    let reply = sb.access_token(&request, wrong).await;
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(reply.text().await.unwrap(), "Invalid oauth_verifier");
    assert_eq!(sb.p.state.access_tokens_issued(), 0);

    let reply = sb.access_token(&request, &pin).await;
    assert_eq!(reply.status(), StatusCode::OK);
    let reply = form(&reply.text().await.unwrap());
    assert_eq!(reply["screen_name"], "alice");
    assert_eq!(sb.p.state.access_tokens_issued(), 1);
    // The request token is used up.
    let again = sb.access_token(&request, &pin).await;
    assert_eq!(again.status(), StatusCode::UNAUTHORIZED);
    let access = (
        reply["oauth_token"].clone(),
        reply["oauth_token_secret"].clone(),
    );

    let (status, me) = sb.get("/2/users/me", &access).await;
    assert_eq!(status, StatusCode::OK);
    let user = json!({"id": reply["user_id"], "name": "Alice", "username": "alice"});
    assert_eq!(me, json!({ "data": user }));
    assert_eq!(sb.last_request().user.as_deref(), Some("alice"));

    let (status, posted) = sb
        .tweet(&access, json!({"text": "Hello from the Sandbox"}))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{posted}");
    assert_eq!(posted["data"]["text"], "Hello from the Sandbox");
    let path = "/2/tweets/search/recent?query=sandbox%20HELLO&expansions=author_id&tweet.fields=created_at";
    let (status, found) = sb.get(path, &access).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["meta"]["result_count"], 1);
    assert_eq!(found["data"][0]["id"], posted["data"]["id"]);
    assert_eq!(found["data"][0]["author_id"], reply["user_id"]);
    assert_eq!(found["includes"]["users"], json!([user]));
    let tweets = sb.p.state.tweets();
    assert_eq!(tweets.len(), 4);
    assert_eq!(tweets[3].author, "alice");
    assert!(tweets[3].created_at.ends_with('Z'));

    // The seeded tweets, newest first, and max_results.
    let (_, rust) = sb.get("/2/tweets/search/recent?query=rust", &access).await;
    let authors: Vec<&Value> = rust["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| &t["text"])
        .collect();
    assert_eq!(authors.len(), 3, "{rust}");
    assert!(rust["data"][0]["text"]
        .as_str()
        .unwrap()
        .starts_with("Rust 1.95 is out!"));
    let (_, one) = sb
        .get("/2/tweets/search/recent?query=rust&max_results=1", &access)
        .await;
    assert_eq!(one["meta"]["result_count"], 1);
    let (_, none) = sb.get("/2/tweets/search/recent?query=zebra", &access).await;
    assert_eq!(none, json!({"meta": {"result_count": 0}}));

    let (status, _) = sb
        .get("/2/tweets/search/recent?max_results=5", &access)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, body) = sb.tweet(&access, json!({"text": ""})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["detail"], "text is required");
    let (status, body) = sb.tweet(&access, json!({"text": "x".repeat(281)})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["detail"].as_str().unwrap().contains("280"), "{body}");
    assert_eq!(
        sb.last_request().rejection.as_deref(),
        body["detail"].as_str()
    );
}

#[tokio::test]
async fn replayed_nonce_and_stale_timestamp_are_rejected() {
    let sb = Sandbox::start().await;
    let access = sb.login("alice").await;
    let url = sb.url("/2/users/me");
    let auth = sign("GET", &url, Some(&access), &[]);
    for expected in [StatusCode::OK, StatusCode::UNAUTHORIZED] {
        let reply = sb
            .http
            .get(&url)
            .header(AUTHORIZATION, &auth)
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), expected);
    }
    let replay = sb.last_request();
    assert!(replay.rejection.unwrap().contains("already used"));

    let stale = sign_with("GET", &url, Some(&access), &[], "n-stale", unix_now() - 301);
    let reply = sb
        .http
        .get(&url)
        .header(AUTHORIZATION, stale)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["title"], "Unauthorized");
    assert!(body["detail"].as_str().unwrap().contains("oauth_timestamp"));
}

#[tokio::test]
async fn bad_signatures_are_rejected_and_recorded() {
    let sb = Sandbox::start().await;
    let access = sb.login("alice").await;
    let forged = (access.0.clone(), "not-the-secret".to_string());
    let (status, body) = sb.get("/2/users/me", &forged).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["status"], 401);
    let rec = sb.last_request();
    assert!(!rec.signature_ok);
    assert_eq!(rec.user, None);
    assert!(rec.rejection.unwrap().contains("signature does not match"));

    // Signed for one query, sent with another.
    let url = sb.url("/2/tweets/search/recent?query=rust");
    let auth = sign("GET", &url, Some(&access), &[]);
    let tampered = sb.url("/2/tweets/search/recent?query=crab");
    let reply = sb
        .http
        .get(tampered)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);

    let reply = sb.http.get(sb.url("/2/users/me")).send().await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert!(sb
        .last_request()
        .rejection
        .unwrap()
        .contains("missing Authorization"));

    // Consumer-only signature on /2, and a request_token without a callback.
    let (status, _) = sb.get("/2/users/me", &(String::new(), String::new())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let url = sb.url("/oauth/request_token");
    let auth = sign("POST", &url, None, &[]);
    let reply = sb
        .http
        .post(&url)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
    let reply = sb.request_token("ftp://example.com/").await;
    assert_eq!(reply.status(), StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn fail_next_injects_each_fault_once() {
    let sb = Sandbox::start().await;
    let access = sb.login("alice").await;
    let state = &sb.p.state;
    state.fail_next("/2/users", Fault::Status(503));
    state.fail_next(
        "/2/",
        Fault::RateLimited {
            retry_after_secs: 7,
        },
    );
    state.fail_next("/jenkins/", Fault::Garbage);

    assert_eq!(
        sb.get("/2/users/me", &access).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    let url = sb.url("/2/users/me");
    let auth = sign("GET", &url, Some(&access), &[]);
    let reply = sb
        .http
        .get(&url)
        .header(AUTHORIZATION, auth)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(reply.headers()["retry-after"], "7");
    assert_eq!(sb.get("/2/users/me", &access).await.0, StatusCode::OK);

    let recorded = state.requests();
    let faulted: Vec<_> = recorded.iter().rev().skip(1).take(2).collect();
    assert!(faulted.iter().all(|r| r.signature_ok), "{faulted:?}");
    assert!(faulted[0]
        .rejection
        .as_deref()
        .unwrap()
        .contains("RateLimited"));
    assert!(faulted[1]
        .rejection
        .as_deref()
        .unwrap()
        .contains("Status(503)"));

    let jenkins = sb
        .http
        .get(sb.url("/jenkins/api/json"))
        .send()
        .await
        .unwrap();
    assert_eq!(jenkins.status(), StatusCode::OK);
    assert_eq!(jenkins.text().await.unwrap(), "<html>garbage");
}

#[tokio::test]
async fn callback_url_redirects_with_the_verifier() {
    let sb = Sandbox::start().await;
    let request = sb.new_request_token("http://localhost:9/cb?x=1").await;
    let reply = sb
        .authorize(&format!("oauth_token={}&screen_name=bob_2", request.0))
        .await;
    assert_eq!(reply.status(), StatusCode::FOUND);
    let location = reply.headers()[LOCATION].to_str().unwrap();
    let prefix = format!(
        "http://localhost:9/cb?x=1&oauth_token={}&oauth_verifier=",
        request.0
    );
    let verifier = location.strip_prefix(&prefix).expect(location);
    let reply = sb.access_token(&request, verifier).await;
    assert_eq!(reply.status(), StatusCode::OK);
    assert_eq!(form(&reply.text().await.unwrap())["screen_name"], "bob_2");

    let other = sb.new_request_token("oob").await;
    let bad = sb
        .authorize(&format!("oauth_token={}&screen_name=bob%20x", other.0))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let unknown = sb.authorize("oauth_token=nope&screen_name=bob").await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    assert!(unknown
        .text()
        .await
        .unwrap()
        .contains("unknown or expired request token"));
}

#[tokio::test]
async fn deny_ends_the_flow() {
    let sb = Sandbox::start().await;
    let request = sb.new_request_token("https://example.com/cb").await;
    let reply = sb
        .authorize(&format!("oauth_token={}&deny=1", request.0))
        .await;
    assert_eq!(reply.status(), StatusCode::FOUND);
    let expected = format!("https://example.com/cb?denied={}", request.0);
    assert_eq!(reply.headers()[LOCATION], expected.as_str());
    let reply = sb.access_token(&request, "1234567").await;
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);

    let request = sb.new_request_token("oob").await;
    let reply = sb
        .authorize(&format!("oauth_token={}&deny=1", request.0))
        .await;
    assert!(reply.text().await.unwrap().contains("You denied access"));
    assert_eq!(sb.p.state.access_tokens_issued(), 0);
}

#[tokio::test]
async fn revoked_tokens_stop_working() {
    let sb = Sandbox::start().await;
    let (alice, alice_again, bob) = (
        sb.login("alice").await,
        sb.login("alice").await,
        sb.login("bob").await,
    );
    sb.p.state.revoke_tokens_of("alice");
    for token in [&alice, &alice_again] {
        let (status, body) = sb.get("/2/users/me", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(
            body["detail"].as_str().unwrap().contains("revoked"),
            "{body}"
        );
    }
    let (status, me) = sb.get("/2/users/me", &bob).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["data"]["username"], "bob");
    assert_eq!(sb.p.state.access_tokens_issued(), 3);
}

#[tokio::test]
async fn jenkins_checks_the_api_token_and_remembers_builds() {
    let sb = Sandbox::start().await;
    let jenkins = |path: &str| sb.url(&format!("/jenkins{path}"));
    let reply = sb
        .http
        .get(jenkins("/me/api/json"))
        .basic_auth("alice", Some("wrong"))
        .send();
    let reply = reply.await.unwrap();
    assert_eq!(reply.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        reply.headers()["www-authenticate"],
        "Basic realm=\"Jenkins\""
    );

    let me = sb
        .http
        .get(jenkins("/me/api/json"))
        .basic_auth("alice", Some(JENKINS_TOKEN));
    let me: Value = me.send().await.unwrap().json().await.unwrap();
    assert_eq!(me, json!({"id": "alice", "fullName": "Alice (sandbox)"}));

    let build = sb
        .http
        .post(jenkins("/job/deploy/buildWithParameters?env=prod"));
    let reply = build
        .basic_auth("alice", Some(JENKINS_TOKEN))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), StatusCode::CREATED);
    assert_eq!(
        reply.headers()[LOCATION],
        jenkins("/queue/item/1/").as_str()
    );
    let last = sb.http.get(jenkins("/job/deploy/lastBuild/api/json"));
    let last: Value = last
        .basic_auth("bob", Some(JENKINS_TOKEN))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(last["fullDisplayName"], "deploy #1");
    assert_eq!(last["url"], jenkins("/job/deploy/1/").as_str());
    let builds = sb.p.state.builds();
    assert_eq!(
        (builds[0].user.as_str(), builds[0].query.as_str()),
        ("alice", "env=prod")
    );
    // Jenkins calls are not X requests.
    assert!(sb.p.state.requests().is_empty());
}

#[test]
fn rfc3339_formats_utc() {
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00.000Z");
    assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20.000Z");
    assert_eq!(rfc3339(4_107_542_399), "2100-02-28T23:59:59.000Z");
}
