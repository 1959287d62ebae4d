//! A tiny "site backend" for deputy's web chat: it signs users in (by name only: a demo, not
//! a login system), issues each a short-lived HS256 token naming them, and embeds deputy's
//! `/chat` page in an iframe that asks this site for a fresh token whenever it needs one.
//!
//! ```sh
//! export DEPUTY_WEB_JWT_SECRET=$(cargo run -q -- keygen)             # shared by the site and deputy
//! cargo run --example web_site                                     # this site, http://127.0.0.1:8081
//! cargo run -- --config examples/web_site.toml shell --sandbox     # deputy, its chat on :8080
//! ```
//!
//! The token is what a real site's backend would issue after its own login: `iss` (this
//! site), `aud` (`deputy`), `sub` (the user's stable id), `name`, `iat`, and an `exp` a few
//! minutes away. The secret never reaches the browser.

use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use clap::Parser;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Deserialize;

#[derive(Parser, Clone)]
struct Args {
    /// Where this site listens.
    #[arg(long, default_value = "127.0.0.1:8081")]
    listen: String,
    /// deputy's public URL (its `[web] public_url`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    deputy: String,
    /// The token's audience (deputy's `[web.identity] audience`).
    #[arg(long, default_value = "deputy")]
    audience: String,
    /// Token lifetime in seconds: short, since the chat asks for a fresh one when it expires.
    #[arg(long, default_value_t = 300)]
    ttl: u64,
}

#[derive(Clone)]
struct Site {
    args: Args,
    issuer: String,
    key: EncodingKey,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let Some(secret) = std::env::var("DEPUTY_WEB_JWT_SECRET")
        .ok()
        .filter(|s| s.len() >= 32)
    else {
        eprintln!(
            "set DEPUTY_WEB_JWT_SECRET (at least 32 characters; `deputy keygen` prints one) to \
             the same value for this site and for deputy"
        );
        std::process::exit(2);
    };
    let site = Site {
        issuer: format!("http://{}", args.listen),
        key: EncodingKey::from_secret(secret.as_bytes()).expect("an HMAC key of any length"),
        args: args.clone(),
    };
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login))
        .route("/token", get(token))
        .with_state(site);
    let listener = tokio::net::TcpListener::bind(&args.listen)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on {}: {e}", args.listen));
    println!(
        "example site on http://{} (issuer http://{}), embedding {}/chat",
        args.listen, args.listen, args.deputy
    );
    axum::serve(listener, app).await.unwrap();
}

/// The signed-in user, from the demo cookie.
fn user(headers: &HeaderMap) -> Option<String> {
    let cookies = headers.get(header::COOKIE)?.to_str().ok()?;
    cookies
        .split(';')
        .filter_map(|c| c.trim().strip_prefix("demo_user="))
        .map(str::to_string)
        .find(|u| {
            !u.is_empty()
                && u.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

#[derive(Deserialize)]
struct Login {
    user: String,
}

async fn login(Query(q): Query<Login>) -> Response {
    let name: String = q
        .user
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .take(32)
        .collect();
    if name.is_empty() {
        return Redirect::to("/").into_response();
    }
    (
        [(
            header::SET_COOKIE,
            format!("demo_user={name}; Path=/; HttpOnly; SameSite=Strict"),
        )],
        Redirect::to("/"),
    )
        .into_response()
}

/// `/token`: what the page's script fetches (same origin, with the cookie) and hands to the
/// chat iframe.
async fn token(State(site): State<Site>, headers: HeaderMap) -> Response {
    let Some(user) = user(&headers) else {
        return (StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": site.issuer,
        "aud": site.args.audience,
        "sub": user,
        "name": user,
        "iat": now,
        "exp": now + site.args.ttl,
    });
    match jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &site.key) {
        Ok(t) => (
            [(header::CACHE_CONTROL, "no-store")],
            axum::Json(serde_json::json!({ "token": t })),
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
    }
}

async fn home(State(site): State<Site>, headers: HeaderMap) -> Html<String> {
    let Some(user) = user(&headers) else {
        return Html(
            "<!doctype html><meta charset=utf-8><title>Example site</title>\
             <h1>Example site</h1><form action=/login>Sign in as \
             <input name=user placeholder=alice autofocus> <button>Sign in</button></form>"
                .into(),
        );
    };
    let deputy = site.args.deputy.trim_end_matches('/');
    Html(format!(
        r#"<!doctype html><meta charset=utf-8><title>Example site</title>
<style>body{{font:15px system-ui;margin:2rem}} iframe{{width:100%;max-width:48rem;height:32rem;border:1px solid #ccc;border-radius:.5rem}}</style>
<h1>Example site</h1><p>Signed in as <b>{user}</b>. Ask deputy something (try <code>help</code>):</p>
<iframe id=deputy src="{deputy}/chat" title="deputy"></iframe>
<script>
// The chat asks for a token when it starts and whenever its token has expired; the site's
// backend issues one for the signed-in user.
const deputyOrigin = new URL("{deputy}").origin;
window.addEventListener("message", async (ev) => {{
  if (ev.origin !== deputyOrigin || !ev.data || ev.data.type !== "deputy-need-token") return;
  const r = await fetch("/token", {{ credentials: "same-origin" }});
  if (!r.ok) return;
  const {{ token }} = await r.json();
  document.getElementById("deputy").contentWindow.postMessage({{ type: "deputy-token", token }}, deputyOrigin);
}});
</script>"#
    ))
}
