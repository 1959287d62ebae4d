//! The X (Twitter) half of the sandbox: the OAuth 1.0a three-legged flow under `/oauth/` and
//! a few X API v2 endpoints under `/2/`.
//!
//! [`check`] runs for every signed request before its handler (from `super::observe`): it
//! verifies the signature against the tokens this sandbox issued, the timestamp (within
//! 300 s) and the nonce (never seen before), and yields the [`Signed`] the handlers use.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, State as AxState};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, HOST};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use rand::Rng as _;
use serde_json::{json, Value};

use super::oauth1_verify::{self, SignedRequest, Verified, VerifyError};
use super::{
    capitalized, esc, page, page_refusal, random_token, redirect, refuse, unix_now, State,
};
use super::{CONSUMER_KEY, CONSUMER_SECRET};

/// How far `oauth_timestamp` may be from the sandbox's clock, either way.
const MAX_CLOCK_SKEW_SECS: u64 = 300;
const MAX_TWEET_CHARS: usize = 280;

pub(super) struct RequestToken {
    secret: String,
    /// `oob` or an http(s) URL.
    callback: String,
    /// (verifier, screen name) once the user approved on the authorize page.
    approved: Option<(String, String)>,
}

pub(super) struct AccessToken {
    secret: String,
    pub(super) screen_name: String,
    pub(super) revoked: bool,
}

/// A request whose signature, timestamp and nonce checked out.
#[derive(Clone)]
pub(super) struct Signed {
    verified: Verified,
    /// The access token's screen name; always set on `/2/*`.
    pub(super) user: Option<String>,
}

pub(super) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/oauth/request_token", post(request_token))
        .route("/oauth/authorize", get(authorize))
        .route("/oauth/access_token", post(access_token))
        .route("/2/users/me", get(users_me))
        .route("/2/tweets", post(post_tweet))
        .route("/2/tweets/search/recent", get(search_recent))
}

/// Verifies an `/oauth/*` or `/2/*` request; `Err` is the reason for the 401.
pub(super) fn check(s: &State, parts: &Parts, body: &[u8]) -> Result<Signed, String> {
    let header = |name| parts.headers.get(name).and_then(|v| v.to_str().ok());
    // The client signed the URL it asked for, and that is what its Host header says.
    let host = header(HOST)
        .map(str::to_string)
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .unwrap_or_else(|| s.url.trim_start_matches("http://").to_string());
    let path = parts.uri.path();
    let url = match parts.uri.query() {
        Some(query) => format!("http://{host}{path}?{query}"),
        None => format!("http://{host}{path}"),
    };
    let req = SignedRequest {
        method: parts.method.as_str(),
        url: &url,
        authorization: header(AUTHORIZATION),
        content_type: header(CONTENT_TYPE),
        body,
    };
    let api = path.starts_with("/2/");
    let mut inner = s.lock();
    let verified = oauth1_verify::verify(
        &req,
        |key| (key == CONSUMER_KEY).then(|| CONSUMER_SECRET.to_string()),
        // `/oauth/*` is signed with a request token, `/2/*` with an access token.
        |token| {
            if api {
                let access = inner.access_tokens.get(token).filter(|t| !t.revoked);
                access.map(|t| t.secret.clone())
            } else {
                inner.request_tokens.get(token).map(|t| t.secret.clone())
            }
        },
    )
    .map_err(|e| match e {
        VerifyError::UnknownToken(t)
            if api && inner.access_tokens.get(&t).is_some_and(|a| a.revoked) =>
        {
            format!("access token {t:?} has been revoked")
        }
        VerifyError::UnknownToken(t) if !api => {
            format!("unknown or already used request token {t:?}")
        }
        // The base string has no secrets in it, and diffing it against the client's is
        // the quickest way to find a signing bug.
        VerifyError::BadSignature => match oauth1_verify::request_base_string(&req) {
            Ok(base) => format!("signature does not match (the sandbox's base string: {base})"),
            Err(_) => e.to_string(),
        },
        e => e.to_string(),
    })?;

    let timestamp: u64 = verified
        .timestamp()
        .parse()
        .map_err(|_| "oauth_timestamp is out of range".to_string())?;
    let now = unix_now();
    if timestamp.abs_diff(now) > MAX_CLOCK_SKEW_SECS {
        return Err(format!(
            "oauth_timestamp {timestamp} is more than {MAX_CLOCK_SKEW_SECS} s from the sandbox clock ({now})"
        ));
    }
    let nonce = (verified.consumer_key.clone(), verified.nonce().to_string());
    if !inner.nonces.insert(nonce) {
        return Err(format!(
            "oauth_nonce {:?} was already used (replayed request)",
            verified.nonce()
        ));
    }
    let user = match (&verified.token, api) {
        (Some(token), true) => inner
            .access_tokens
            .get(token)
            .map(|t| t.screen_name.clone()),
        (None, true) => return Err("this endpoint needs a user access token (oauth_token)".into()),
        (_, false) => None,
    };
    Ok(Signed { verified, user })
}

/// The 401 for a request [`check`] refused, in the style of the endpoint.
pub(super) fn unauthorized(path: &str, reason: &str) -> Response {
    if path.starts_with("/2/") {
        problem(StatusCode::UNAUTHORIZED, "Unauthorized", reason)
    } else {
        (StatusCode::UNAUTHORIZED, reason.to_string()).into_response()
    }
}

/// An X API v2 error ("problem") body.
fn problem(status: StatusCode, title: &str, detail: &str) -> Response {
    let body =
        json!({"title": title, "type": "about:blank", "status": status.as_u16(), "detail": detail});
    refuse((status, Json(body)), detail)
}

fn invalid_request(detail: &str) -> Response {
    problem(StatusCode::BAD_REQUEST, "Invalid Request", detail)
}

fn oauth_refusal(status: StatusCode, reason: &str) -> Response {
    refuse((status, reason.to_string()), reason)
}

fn form_reply(pairs: &[(&str, &str)]) -> Response {
    let body = serde_urlencoded::to_string(pairs).unwrap_or_default();
    ([(CONTENT_TYPE, "application/x-www-form-urlencoded")], body).into_response()
}

/// A stable numeric id per screen name (FNV-1a), so it is the same in every run.
fn user_id(screen_name: &str) -> String {
    let hash = screen_name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    (hash % 9_000_000_000_000_000_000 + 1_000_000_000_000_000_000).to_string()
}

fn user_json(screen_name: &str) -> Value {
    json!({"id": user_id(screen_name), "name": capitalized(screen_name), "username": screen_name})
}

fn query_pairs(query: Option<&str>) -> Result<Vec<(String, String)>, String> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| format!("malformed query string: {e}"))
}

fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"));
    rest.is_some_and(|rest| {
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        !host.is_empty() && !url.chars().any(char::is_whitespace)
    })
}

async fn request_token(
    AxState(s): AxState<Arc<State>>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let callback = signed.verified.param("oauth_callback").unwrap_or_default();
    if callback != "oob" && !is_http_url(callback) {
        return oauth_refusal(
            StatusCode::BAD_REQUEST,
            "oauth_callback is required: \"oob\" or an absolute http(s) URL",
        );
    }
    let (token, secret) = (random_token(32), random_token(40));
    // The request token itself is shown to the user in the sign-in link; its secret is not.
    s.lock().issued.push(secret.clone());
    s.lock().request_tokens.insert(
        token.clone(),
        RequestToken {
            secret: secret.clone(),
            callback: callback.to_string(),
            approved: None,
        },
    );
    form_reply(&[
        ("oauth_token", &token),
        ("oauth_token_secret", &secret),
        ("oauth_callback_confirmed", "true"),
    ])
}

/// The page the user's browser opens: consent form, then a PIN or a redirect.
async fn authorize(AxState(s): AxState<Arc<State>>, RawQuery(query): RawQuery) -> Response {
    let pairs = match query_pairs(query.as_deref()) {
        Ok(pairs) => pairs,
        Err(why) => return page_refusal(StatusCode::BAD_REQUEST, &why),
    };
    let Some(token) = param(&pairs, "oauth_token").filter(|t| !t.is_empty()) else {
        return page_refusal(StatusCode::BAD_REQUEST, "oauth_token is required");
    };
    let mut inner = s.lock();
    let Some(request) = inner.request_tokens.get_mut(token) else {
        return page_refusal(StatusCode::NOT_FOUND, "unknown or expired request token");
    };
    let oob = request.callback == "oob";

    if param(&pairs, "deny") == Some("1") {
        let callback = request.callback.clone();
        inner.request_tokens.remove(token);
        let response = if oob {
            let body = "<p>deputy (sandbox) was not linked to your account.</p>";
            page(StatusCode::OK, "You denied access", body)
        } else {
            redirect(&callback, &[("denied", token)])
        };
        return refuse(response, "the user denied access");
    }

    let Some(name) = param(&pairs, "screen_name") else {
        let token = esc(token);
        let form = format!(
            "<p>This is the deputy sandbox, a local fake of X: no real account is involved, \
             pick any screen name.</p>\n\
             <form method=\"get\" action=\"/oauth/authorize\">\n\
             <input type=\"hidden\" name=\"oauth_token\" value=\"{token}\">\n\
             <label>Screen name <input type=\"text\" name=\"screen_name\" value=\"sandbox_user\"></label>\n\
             <button type=\"submit\">Authorize</button>\n</form>\n\
             <p><a href=\"/oauth/authorize?oauth_token={token}&amp;deny=1\">Deny</a></p>"
        );
        return page(
            StatusCode::OK,
            "Authorize deputy (sandbox) to use your account?",
            &form,
        );
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return page_refusal(
            StatusCode::BAD_REQUEST,
            "screen_name may contain only letters, digits and _",
        );
    }
    let verifier = format!("{:07}", rand::thread_rng().gen_range(0..10_000_000));
    request.approved = Some((verifier.clone(), name.to_string()));
    let callback = request.callback.clone();
    inner.issued.push(verifier.clone());
    if oob {
        let body = format!(
            "<p>Your PIN: <code id=\"pin\">{verifier}</code></p>\n\
             <p>Enter this PIN in chat: t auth {verifier}</p>"
        );
        page(StatusCode::OK, "deputy (sandbox) is authorized", &body)
    } else {
        redirect(
            &callback,
            &[("oauth_token", token), ("oauth_verifier", &verifier)],
        )
    }
}

async fn access_token(
    AxState(s): AxState<Arc<State>>,
    Extension(signed): Extension<Signed>,
) -> Response {
    let unauthorized = |why| oauth_refusal(StatusCode::UNAUTHORIZED, why);
    let Some(token) = signed.verified.token.as_deref() else {
        return unauthorized("oauth_token (the request token) is required");
    };
    let mut inner = s.lock();
    let Some(request) = inner.request_tokens.get(token) else {
        return unauthorized("unknown or already used request token");
    };
    let Some((verifier, name)) = request.approved.clone() else {
        return unauthorized("the request token has not been authorized yet");
    };
    // A wrong PIN leaves the request token usable: the user may just have mistyped it.
    if signed.verified.param("oauth_verifier") != Some(verifier.as_str()) {
        return unauthorized("Invalid oauth_verifier");
    }
    inner.request_tokens.remove(token);
    // X's access tokens start with the user id.
    let access = format!("{}-{}", user_id(&name), random_token(30));
    let secret = random_token(45);
    inner.access_tokens.insert(
        access.clone(),
        AccessToken {
            secret: secret.clone(),
            screen_name: name.clone(),
            revoked: false,
        },
    );
    inner.access_tokens_issued += 1;
    inner.issued.extend([access.clone(), secret.clone()]);
    drop(inner);
    form_reply(&[
        ("oauth_token", &access),
        ("oauth_token_secret", &secret),
        ("user_id", &user_id(&name)),
        ("screen_name", &name),
    ])
}

async fn users_me(Extension(signed): Extension<Signed>) -> Response {
    let name = signed.user.unwrap_or_default();
    Json(json!({"data": user_json(&name)})).into_response()
}

async fn post_tweet(
    AxState(s): AxState<Arc<State>>,
    Extension(signed): Extension<Signed>,
    body: Bytes,
) -> Response {
    let body: Value = match serde_json::from_slice(&body) {
        Ok(body) => body,
        Err(e) => return invalid_request(&format!("the body is not JSON: {e}")),
    };
    let text = body.get("text").and_then(Value::as_str).unwrap_or_default();
    if text.trim().is_empty() {
        return invalid_request("text is required");
    }
    let chars = text.chars().count();
    if chars > MAX_TWEET_CHARS {
        return invalid_request(&format!(
            "text is {chars} characters long; the limit is {MAX_TWEET_CHARS}"
        ));
    }
    let author = signed.user.unwrap_or_default();
    let tweet = s.add_tweet(&author, text, unix_now());
    let body = json!({"data": {"id": tweet.id, "text": tweet.text}});
    (StatusCode::CREATED, Json(body)).into_response()
}

/// Newest first; every word of the query must appear in the text, ignoring case. The
/// author and `created_at` are always included, as with `expansions=author_id` and
/// `tweet.fields=created_at`; other parameters are ignored.
async fn search_recent(AxState(s): AxState<Arc<State>>, RawQuery(query): RawQuery) -> Response {
    let pairs = match query_pairs(query.as_deref()) {
        Ok(pairs) => pairs,
        Err(why) => return invalid_request(&why),
    };
    let Some(q) = param(&pairs, "query").filter(|q| !q.trim().is_empty()) else {
        return invalid_request("query is required");
    };
    let max = match param(&pairs, "max_results").map(str::parse::<usize>) {
        None => 10,
        Some(Ok(n)) if (1..=100).contains(&n) => n,
        Some(_) => return invalid_request("max_results must be a number from 1 to 100"),
    };
    let words: Vec<String> = q.split_whitespace().map(str::to_lowercase).collect();
    let found: Vec<super::Tweet> = s
        .lock()
        .tweets
        .iter()
        .rev()
        .filter(|t| {
            let text = t.text.to_lowercase();
            words.iter().all(|w| text.contains(w.as_str()))
        })
        .take(max)
        .cloned()
        .collect();
    let (Some(newest), Some(oldest)) = (found.first(), found.last()) else {
        return Json(json!({"meta": {"result_count": 0}})).into_response();
    };
    let mut authors: Vec<&str> = Vec::new();
    for t in &found {
        if !authors.contains(&t.author.as_str()) {
            authors.push(&t.author);
        }
    }
    let data: Vec<Value> = found
        .iter()
        .map(|t| json!({"id": t.id, "text": t.text, "author_id": user_id(&t.author), "created_at": t.created_at}))
        .collect();
    let users: Vec<Value> = authors.into_iter().map(user_json).collect();
    Json(json!({
        "data": data,
        "includes": {"users": users},
        "meta": {"result_count": found.len(), "newest_id": newest.id, "oldest_id": oldest.id},
    }))
    .into_response()
}
