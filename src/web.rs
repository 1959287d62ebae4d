//! deputy's own HTTP listener: where a browser comes back after an OAuth sign-in
//! (`/<kind>/<service>/callback`), and `/healthz` for the operator's probes.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::Router;

use crate::auth::Callback;
use crate::dispatch::Dispatcher;
use crate::message::Internal;

pub fn router(dispatcher: Arc<Dispatcher>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/{kind}/{service}/callback", get(callback))
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

/// `/oauth1/<service>/callback`, `/oauth2/<service>/callback`: the auth kind of that name
/// reads the provider's answer.
async fn callback(
    State(d): State<Arc<Dispatcher>>,
    Path((kind, service)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    match d.callback(&kind, &service, &q).await {
        None => StatusCode::NOT_FOUND.into_response(),
        Some(Ok(Callback::Done(text))) => page(StatusCode::OK, &text),
        Some(Ok(Callback::Failed(text))) => page(StatusCode::BAD_REQUEST, &text),
        Some(Err(Internal(e))) => {
            tracing::error!(service = %service, error = %format!("{e:#}"), "{kind} callback failed");
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
