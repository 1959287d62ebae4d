//! deputy's own HTTP listener: where a browser comes back after an OAuth sign-in
//! (`/<kind>/<service>/callback`), `/healthz` for the operator's probes, `/metrics` in the
//! Prometheus text format ([`crate::metrics`]), and the web chat's routes when it is on
//! ([`crate::chat::web`], merged in by the binary).

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
        .route("/metrics", get(metrics))
        .route("/{kind}/{service}/callback", get(callback))
        .with_state(dispatcher)
}

/// `/metrics`: counts linked credentials per service (a scan of key paths, no record
/// opened), then renders everything recorded.
async fn metrics(State(d): State<Arc<Dispatcher>>) -> Response {
    let Some(handle) = crate::metrics::install() else {
        return (StatusCode::SERVICE_UNAVAILABLE, "metrics are off\n").into_response();
    };
    match crate::brain::admin::linked_by_service(&d.brain).await {
        Ok(linked) => {
            for pack in d.packs.iter() {
                let n = linked.get(&pack.service.name).copied().unwrap_or(0);
                metrics::gauge!("deputy_linked_users", "service" => pack.service.name.clone())
                    .set(n as f64);
            }
        }
        Err(e) => tracing::warn!(error = %format!("{e:#}"), "metrics: cannot count linked users"),
    }
    (
        [("content-type", "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// Serves until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    dispatcher: Arc<Dispatcher>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_router(listener, router(dispatcher), shutdown).await
}

/// Serves `app` (the listener's routes, with the web chat's merged in) until `shutdown`.
pub async fn serve_router(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app)
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
        Some(Ok(Callback::Failed(text))) => {
            metrics::counter!("deputy_signins_failed_total", "kind" => kind_label(&kind))
                .increment(1);
            page(StatusCode::BAD_REQUEST, &text)
        }
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

/// A kind from a URL as a metric label: only names deputy knows, never what a client sent.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "oauth1" => "oauth1",
        "oauth2" => "oauth2",
        _ => "other",
    }
}
