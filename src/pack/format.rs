//! The pack format: what a pack author writes in `commands/<service>.toml`, as serde types.
//! This file is the author's reference; `validate.rs` turns these into a [`super::Pack`] and
//! names the file and line of every mistake.
//!
//! ```toml
//! [service]
//! name = "jenkins"
//! prefixes = ["jenkins", "j"]
//! summary = "Build and inspect Jenkins jobs as yourself"
//! base_url = "https://jenkins.example.com"
//! auth = { kind = "basic", hint = "user:token" }
//! whoami = { path = "/me/api/json", reply = "You are {{ body.fullName }}." }
//!
//! [[command]]
//! name = "build"
//! help = "Start a build of <job>"
//! args = ["job", "params*"]
//! method = "POST"
//! path = "/job/{{ job | urlencode }}/buildWithParameters"
//! query = "{{ params | join('&') }}"
//! reply = "Started {{ job }}"
//!
//! [[command]]
//! name = "abort"
//! help = "Abort the running build of <job>"
//! args = ["job"]
//! confirm = true            # asks "Abort …?" with Confirm / Cancel before calling
//! method = "POST"
//! path = "/job/{{ job | urlencode }}/lastBuild/stop"
//! ```
//!
//! Templates are minijinja; request templates see the arguments, `user` and `service`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

/// How the answer is read (`response = "json"`, the default, `"text"` or `"form"`).
pub use crate::upstream::ResponseKind;

/// How a service's users link their account.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthKind {
    /// No credential: commands run anonymously.
    None,
    /// HTTP Basic with a `user:token` secret.
    Basic { hint: Option<String> },
    /// `Authorization: Bearer <secret>`.
    Bearer { hint: Option<String> },
    /// A custom header, such as `PRIVATE-TOKEN: <secret>`, with an optional value prefix.
    Header {
        header: String,
        #[serde(default)]
        prefix: String,
        hint: Option<String>,
    },
    /// OAuth 1.0a with the PIN (`oob`) flow, or a browser callback when deputy has a public
    /// URL. Endpoint paths are relative to the service's `auth_base_url` (default `base_url`).
    #[serde(rename = "oauth1")]
    OAuth1 {
        #[serde(default = "default_request_token_url")]
        request_token_url: String,
        #[serde(default = "default_authorize_url")]
        authorize_url: String,
        #[serde(default = "default_access_token_url")]
        access_token_url: String,
        /// Where the endpoints live when not on `base_url` (operators override it).
        base_url: Option<String>,
    },
    /// OAuth 2.0: the device flow or the browser flow with PKCE and a magic code.
    #[serde(rename = "oauth2")]
    OAuth2(OAuth2Def),
}

/// Which OAuth 2.0 grant a service links with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// RFC 8628: the user enters a short code on the provider's page; deputy polls.
    Device,
    /// Browser redirect with PKCE, then a magic code typed in chat.
    AuthorizationCode,
}

/// How deputy authenticates itself (the client) at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// HTTP Basic with the client id and secret (RFC 6749 2.3.1, the default).
    #[default]
    Basic,
    /// `client_id` and `client_secret` in the form body (GitHub's way).
    Body,
}

/// An OAuth 2.0 service's endpoints and scopes, as a pack declares them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Def {
    pub grant: Grant,
    /// Where the endpoints live when not on `base_url` (GitHub: github.com vs api.github.com).
    pub base_url: Option<String>,
    pub device_authorization_url: Option<String>,
    pub authorize_url: Option<String>,
    pub token_url: String,
    /// RFC 7009; without it `logout` only forgets the token.
    pub revocation_url: Option<String>,
    /// Scopes every sign-in asks for, besides those commands declare.
    #[serde(default)]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
}

fn default_request_token_url() -> String {
    "/oauth/request_token".into()
}
fn default_authorize_url() -> String {
    "/oauth/authorize".into()
}
fn default_access_token_url() -> String {
    "/oauth/access_token".into()
}

impl AuthKind {
    /// Whether the user pastes a key with `setkey`.
    pub fn is_api_key(&self) -> bool {
        matches!(
            self,
            AuthKind::Basic { .. } | AuthKind::Bearer { .. } | AuthKind::Header { .. }
        )
    }

    /// Whether the user signs in with a link (OAuth) rather than pasting a key.
    pub fn is_oauth(&self) -> bool {
        matches!(self, AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_))
    }

    /// Whether commands need the user's credential at all.
    pub fn needs_credential(&self) -> bool {
        !matches!(self, AuthKind::None)
    }

    /// What to paste after `setkey`, as the pack author described it.
    pub fn hint(&self) -> &str {
        match self {
            AuthKind::None | AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_) => "",
            AuthKind::Basic { hint } => hint.as_deref().unwrap_or("user:token"),
            AuthKind::Bearer { hint } | AuthKind::Header { hint, .. } => {
                hint.as_deref().unwrap_or("your API token")
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackFile {
    /// `[service]`: the one service this file declares.
    pub service: ServiceDef,
    /// `[[command]]`, one table per command.
    #[serde(default)]
    pub command: Vec<Spanned<CommandDef>>,
}

/// `[service]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceDef {
    /// One lowercase word (letters, digits, `-`, `_`): the service's name in replies, the brain and `[services.NAME]`.
    pub name: Spanned<String>,
    /// The words that select the service in chat (`jenkins`, `j`); empty: the name.
    pub prefixes: Spanned<Vec<String>>,
    /// One line for `help`.
    #[serde(default)]
    pub summary: String,
    /// The API's root URL; every command `path` is appended to it (operators override it).
    pub base_url: Spanned<String>,
    /// Seconds to wait for the API (default `[http] timeout_secs`).
    pub timeout_secs: Option<u64>,
    /// How users link their account: see [`AuthKind`] (default `none`).
    #[serde(default = "no_auth")]
    pub auth: AuthKind,
    /// The request `whoami` sends to tell users who the service thinks they are.
    pub whoami: Option<Spanned<RequestDef>>,
}

fn no_auth() -> AuthKind {
    AuthKind::None
}

/// A request and its reply: the `whoami` table, and the request half of a `[[command]]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestDef {
    /// GET (default), POST, PUT, PATCH or DELETE.
    #[serde(default = "get")]
    pub method: Spanned<String>,
    /// A template appended to `base_url`; starts with `/`.
    pub path: Spanned<String>,
    /// A template for the query string, without `?`.
    pub query: Option<Spanned<String>>,
    /// Extra headers, each a template; never `Authorization` (that comes from the user's credential).
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    /// A template for the body.
    pub body: Option<Spanned<String>>,
    /// The body's content type (default `application/json`).
    pub content_type: Option<String>,
    /// How to read the answer: see [`ResponseKind`].
    #[serde(default)]
    pub response: ResponseKind,
    /// The reply template; it sees the arguments, `user`, `service`, `status`, `headers` and `body`.
    pub reply: Option<Spanned<String>>,
}

/// `[[command]]`: one command users type after the service's prefix.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandDef {
    /// One lowercase word, not a built-in (`setupauth`, `auth`, `setkey`, `logout`, `whoami`, `help`).
    pub name: String,
    /// One line for `help <service>`.
    pub help: String,
    /// Shown in help and on a wrong call; generated from `args` when left out.
    pub usage: Option<String>,
    /// Argument specs in order: `job` (one word), `job?` (optional), `params*` (the rest, maybe none), `ids+` (the rest, at least one), `text...` (the rest joined by spaces). Only the last may take the rest.
    #[serde(default)]
    pub args: Vec<String>,
    /// OAuth 2.0 scopes the command needs (oauth2 services only).
    #[serde(default)]
    pub scopes: Vec<String>,
    /// For a dangerous command the service itself cannot refuse: the permission groups whose
    /// members may run it (`allow = ["deployers"]`). The operator lists each group's members
    /// in deputy.toml: `[permissions] deployers = ["slack:T123:U456"]`. A group the operator
    /// has not filled lets no one in.
    #[serde(default)]
    pub allow: Vec<String>,
    /// For a command worth a second thought (start a production build, delete something):
    /// deputy asks the user to confirm first, with Confirm / Cancel buttons where the platform
    /// has them (only the user sees them) or a typed `yes` / `no` in the shell, and runs the
    /// call only after the same user confirms within `[bot] confirm_ttl_secs` (default 120).
    #[serde(default)]
    pub confirm: bool,
    // The request, as in [`RequestDef`].
    #[serde(default = "get")]
    pub method: Spanned<String>,
    pub path: Spanned<String>,
    pub query: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub body: Option<Spanned<String>>,
    pub content_type: Option<String>,
    #[serde(default)]
    pub response: ResponseKind,
    pub reply: Option<Spanned<String>>,
}

fn get() -> Spanned<String> {
    Spanned::new(0..0, "GET".into())
}

impl CommandDef {
    /// The request half of a command.
    pub fn request(&self) -> RequestDef {
        RequestDef {
            method: self.method.clone(),
            path: self.path.clone(),
            query: self.query.clone(),
            headers: self.headers.clone(),
            body: self.body.clone(),
            content_type: self.content_type.clone(),
            response: self.response,
            reply: self.reply.clone(),
        }
    }
}

/// The reply of a request that declares none.
pub const DEFAULT_REPLY: &str = "Done (HTTP {{ status }}).";
