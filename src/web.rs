//! deputy's own HTTP listener: where a browser comes back after an OAuth sign-in
//! (`/oauth1/<service>/callback`), and `/healthz` for the operator's probes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::dispatch::Dispatcher;

pub fn router(dispatcher: Arc<Dispatcher>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/oauth1/{service}/callback", get(oauth1_callback))
        .route("/oauth2/{service}/callback", get(oauth2_callback))
        .with_state(dispatcher)
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dispatcher: Arc<Dispatcher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(dispatcher))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn oauth1_callback(
    State(d): State<Arc<Dispatcher>>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // The provider sends `oauth_token` + `oauth_verifier`, or `denied=<token>` on "cancel".
    let (token, verifier) = match (
        q.get("oauth_token"),
        q.get("oauth_verifier"),
        q.get("denied"),
    ) {
        (Some(t), Some(v), _) => (t.as_str(), Some(v.as_str())),
        (_, _, Some(t)) => (t.as_str(), None),
        _ => return page(
            StatusCode::BAD_REQUEST,
            "This is not a complete sign-in answer (oauth_token and oauth_verifier are missing).",
        ),
    };
    match crate::auth::oauth1::callback(&d, &service, token, verifier).await {
        Ok((true, text)) => page(StatusCode::OK, &format!("{text} You can close this tab.")),
        Ok((false, text)) => page(StatusCode::BAD_REQUEST, &text),
        Err(crate::dispatch::Internal(e)) => {
            tracing::error!(service = %service, error = %format!("{e:#}"), "oauth1 callback failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on deputy's side; the operator can find it in the log.",
            )
        }
    }
}

async fn oauth2_callback(
    State(d): State<Arc<Dispatcher>>,
    Path(service): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    // `code` + `state`, or `error` (access_denied) + `state` (RFC 6749 4.1.2).
    let Some(state) = q.get("state") else {
        return page(
            StatusCode::BAD_REQUEST,
            "This is not a complete sign-in answer (state is missing).",
        );
    };
    let code = match (q.get("code"), q.get("error")) {
        (Some(c), None) => Some(c.as_str()),
        (_, Some(_)) => None,
        (None, None) => {
            return page(
                StatusCode::BAD_REQUEST,
                "This is not a complete sign-in answer (code is missing).",
            )
        }
    };
    match crate::auth::oauth2::callback(&d, &service, state, code).await {
        Ok((true, text)) => page(StatusCode::OK, &text),
        Ok((false, text)) => page(StatusCode::BAD_REQUEST, &text),
        Err(crate::dispatch::Internal(e)) => {
            tracing::error!(service = %service, error = %format!("{e:#}"), "oauth2 callback failed");
            page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong on deputy's side; the operator can find it in the log.",
            )
        }
    }
}

fn page(status: StatusCode, text: &str) -> Response {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    (
        status,
        Html(format!(
            "<!doctype html><meta charset=utf-8><title>deputy</title><p id=result>{escaped}</p>"
        )),
    )
        .into_response()
}
