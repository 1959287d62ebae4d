//! A sliver of the GitHub REST API under `/api`, behind the access tokens of the sandbox's
//! OAuth 2.0 provider ([`super::oauth2`]): who am I, and listing and opening issues.
//!
//! It answers the way GitHub does where deputy cares: 401 `Bad credentials` for any token
//! that is not live, `X-OAuth-Scopes` on success, and 403 with `X-Accepted-OAuth-Scopes`
//! when the token lacks the scope, so a client can tell "log in again" from "ask for more
//! scopes".

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::header::{AUTHORIZATION, LOCATION};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::capitalized;
use super::oauth2::{Caller, Issue, OAuth2Options, OAuth2Provider, OAuth2State};
use super::refuse;

impl OAuth2Provider {
    /// The sandbox's GitHub: the OAuth 2.0 provider with this API under `/api`. Binds two
    /// ports on 127.0.0.1 and serves, on the current tokio runtime, until
    /// [`OAuth2Provider::shutdown`] or the runtime ends. Dropping the provider does not stop
    /// it.
    pub async fn start(options: OAuth2Options) -> anyhow::Result<Self> {
        OAuth2Provider::serve(options, routes()).await
    }
}

/// The scope GitHub wants for creating issues.
const REPO_SCOPE: &str = "repo";

fn routes() -> Router<Arc<OAuth2State>> {
    Router::new()
        .route("/user", get(user))
        .route(
            "/repos/{owner}/{repo}/issues",
            get(list_issues).post(create_issue),
        )
        .fallback(not_found)
}

fn message(status: StatusCode, message: &str, why: &str) -> Response {
    refuse((status, Json(json!({"message": message}))), why)
}

/// The caller behind `Authorization: Bearer T` (or GitHub's older `token T`), or why
/// there is none.
fn authenticate(s: &OAuth2State, headers: &HeaderMap) -> Result<Caller, &'static str> {
    let value = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or("no Authorization header")?;
    let token = value.split_once(' ').and_then(|(scheme, token)| {
        let known = scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token");
        known.then(|| token.trim())
    });
    let token = token
        .filter(|t| !t.is_empty())
        .ok_or("the Authorization header is not \"Bearer TOKEN\" or \"token TOKEN\"")?;
    s.caller(token)
}

/// GitHub's 401 for any token that is not live.
fn bad_credentials(why: &str) -> Response {
    message(StatusCode::UNAUTHORIZED, "Bad credentials", why)
}

/// A success, with the header GitHub uses to tell a client what its token can do.
fn ok(caller: &Caller, status: StatusCode, body: Value) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Ok(scopes) = caller.scopes.join(", ").parse() {
        response.headers_mut().insert("x-oauth-scopes", scopes);
    }
    response
}

/// A stable id per login (FNV-1a), so it is the same in every run.
fn user_id(login: &str) -> u64 {
    let hash = login.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    hash % 90_000_000 + 10_000_000
}

fn issue_json(base_url: &str, issue: &Issue) -> Value {
    json!({
        "number": issue.number,
        "title": issue.title,
        "body": issue.body,
        "state": "open",
        "user": {"login": issue.author},
        "html_url": format!("{base_url}/{}/issues/{}", issue.repo, issue.number),
    })
}

async fn user(AxState(s): AxState<Arc<OAuth2State>>, headers: HeaderMap) -> Response {
    let caller = match authenticate(&s, &headers) {
        Ok(caller) => caller,
        Err(why) => return bad_credentials(why),
    };
    let body = json!({
        "login": caller.login,
        "id": user_id(&caller.login),
        "name": capitalized(&caller.login),
    });
    ok(&caller, StatusCode::OK, body)
}

/// Newest first, as GitHub sorts by default. Owner and repository names match ignoring
/// case, as on GitHub; an unknown repository simply has no issues.
async fn list_issues(
    AxState(s): AxState<Arc<OAuth2State>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let caller = match authenticate(&s, &headers) {
        Ok(caller) => caller,
        Err(why) => return bad_credentials(why),
    };
    let full = format!("{owner}/{repo}");
    let inner = s.lock();
    let issues: Vec<Value> = inner
        .issues
        .iter()
        .rev()
        .filter(|i| i.repo.eq_ignore_ascii_case(&full))
        .map(|i| issue_json(&s.url, i))
        .collect();
    drop(inner);
    ok(&caller, StatusCode::OK, Value::Array(issues))
}

async fn create_issue(
    AxState(s): AxState<Arc<OAuth2State>>,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let caller = match authenticate(&s, &headers) {
        Ok(caller) => caller,
        Err(why) => return bad_credentials(why),
    };
    if !caller.scopes.iter().any(|scope| scope == REPO_SCOPE) {
        let mut response = message(
            StatusCode::FORBIDDEN,
            "Resource not accessible by integration",
            "creating an issue needs the repo scope",
        );
        let headers = response.headers_mut();
        headers.insert(
            "x-accepted-oauth-scopes",
            HeaderValue::from_static(REPO_SCOPE),
        );
        if let Ok(scopes) = caller.scopes.join(", ").parse() {
            headers.insert("x-oauth-scopes", scopes);
        }
        return response;
    }
    let Ok(body) = serde_json::from_slice::<Value>(&body) else {
        return message(
            StatusCode::BAD_REQUEST,
            "Problems parsing JSON",
            "the body is not JSON",
        );
    };
    let title = body
        .get("title")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if title.trim().is_empty() {
        return message(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Validation Failed",
            "title is required",
        );
    }
    let text = body.get("body").and_then(Value::as_str).map(str::to_string);

    let full = format!("{owner}/{repo}");
    let mut inner = s.lock();
    let in_repo = inner
        .issues
        .iter()
        .filter(|i| i.repo.eq_ignore_ascii_case(&full));
    let number = in_repo.map(|i| i.number).max().unwrap_or(0) + 1;
    let issue = Issue {
        repo: full.clone(),
        number,
        title: title.to_string(),
        body: text,
        author: caller.login.clone(),
    };
    let json = issue_json(&s.url, &issue);
    inner.issues.push(issue);
    drop(inner);
    let mut response = ok(&caller, StatusCode::CREATED, json);
    let location = format!("{}/api/repos/{full}/issues/{number}", s.url);
    if let Ok(location) = location.parse() {
        response.headers_mut().insert(LOCATION, location);
    }
    response
}

async fn not_found() -> Response {
    message(StatusCode::NOT_FOUND, "Not Found", "no such API endpoint")
}
