//! The Jenkins half of the sandbox, under `/jenkins`: an API-key service (HTTP Basic, any
//! user name, password [`JENKINS_TOKEN`]) with two jobs, for trying `setkey` and the jenkins
//! pack offline.

use std::sync::Arc;

use axum::extract::{Path, RawQuery, State as AxState};
use axum::http::header::{AUTHORIZATION, LOCATION, WWW_AUTHENTICATE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::json;

use super::oauth1_verify::percent_encode;
use super::{capitalized, refuse, State, JENKINS_TOKEN};

/// A build started through `buildWithParameters`.
#[derive(Clone, Debug)]
pub struct Build {
    pub job: String,
    /// The Basic-auth user who started it.
    pub user: String,
    /// The raw query string (the build parameters).
    pub query: String,
}

pub(super) fn routes() -> Router<Arc<State>> {
    Router::new()
        .route("/me/api/json", get(me))
        .route("/api/json", get(jobs))
        .route("/job/{job}/buildWithParameters", post(build))
        .route("/job/{job}/lastBuild/api/json", get(last_build))
        .route("/job/{job}/lastBuild/stop", post(stop))
}

/// The user name of a valid Basic credential.
fn authenticate(headers: &HeaderMap) -> Option<String> {
    let pair = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b64| BASE64.decode(b64.trim()).ok())
        .and_then(|bytes| String::from_utf8(bytes).ok())?;
    match pair.split_once(':') {
        Some((user, token)) if !user.is_empty() && token == JENKINS_TOKEN => Some(user.to_string()),
        _ => None,
    }
}

/// Jenkins' 401.
fn denied() -> Response {
    let response = (
        StatusCode::UNAUTHORIZED,
        [(WWW_AUTHENTICATE, "Basic realm=\"Jenkins\"")],
        "Invalid password/token",
    );
    refuse(response, "jenkins: bad or missing Basic credential")
}

async fn me(headers: HeaderMap) -> Response {
    let Some(user) = authenticate(&headers) else {
        return denied();
    };
    let full_name = format!("{} (sandbox)", capitalized(&user));
    Json(json!({"id": user, "fullName": full_name})).into_response()
}

async fn jobs(headers: HeaderMap) -> Response {
    if authenticate(&headers).is_none() {
        return denied();
    }
    Json(json!({"jobs": [
        {"name": "deploy", "color": "blue"},
        {"name": "nightly", "color": "red"},
    ]}))
    .into_response()
}

async fn build(
    AxState(s): AxState<Arc<State>>,
    Path(job): Path<String>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
) -> Response {
    let Some(user) = authenticate(&headers) else {
        return denied();
    };
    let mut inner = s.lock();
    inner.builds.push(Build {
        job,
        user,
        query: query.unwrap_or_default(),
    });
    let item = inner.builds.len();
    drop(inner);
    let location = format!("{}/jenkins/queue/item/{item}/", s.url);
    (StatusCode::CREATED, [(LOCATION, location)]).into_response()
}

/// Jenkins answers a stop with a redirect to the build; 200 is enough here.
async fn stop(
    AxState(s): AxState<Arc<State>>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    let Some(user) = authenticate(&headers) else {
        return denied();
    };
    s.lock().aborts.push((job, user));
    StatusCode::OK.into_response()
}

async fn last_build(
    AxState(s): AxState<Arc<State>>,
    Path(job): Path<String>,
    headers: HeaderMap,
) -> Response {
    if authenticate(&headers).is_none() {
        return denied();
    }
    let number = s
        .lock()
        .builds
        .iter()
        .filter(|b| b.job == job)
        .count()
        .max(1);
    Json(json!({
        "fullDisplayName": format!("{job} #{number}"),
        "result": "SUCCESS",
        "url": format!("{}/jenkins/job/{}/{number}/", s.url, percent_encode(&job)),
    }))
    .into_response()
}
