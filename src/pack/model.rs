//! A loaded, validated pack: what the dispatcher and the auth kinds work with.

use std::path::PathBuf;
use std::time::Duration;

use super::args::{self, ArgSpec, Args};
use super::format::{AuthKind, ResponseKind};
use crate::secret::Consumer;
use crate::upstream::Target;

/// A loaded, validated pack.
#[derive(Debug, Clone)]
pub struct Pack {
    pub file: PathBuf,
    pub service: Service,
    pub commands: Vec<Command>,
}

#[derive(Debug, Clone)]
pub struct Service {
    pub name: String,
    pub prefixes: Vec<String>,
    pub summary: String,
    pub base_url: reqwest::Url,
    pub timeout: Option<Duration>,
    pub auth: AuthKind,
    /// Where OAuth endpoints live (the pack's `auth.base_url`, else `base_url`).
    pub auth_base_url: reqwest::Url,
    /// The operator's OAuth consumer (client) credentials, from the environment or config.
    pub consumer: Option<Consumer>,
    pub whoami: Option<Request>,
}

impl Service {
    /// An auth endpoint: a path joined to `auth_base_url`, or an absolute URL as written.
    pub fn auth_url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("http://") || path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!(
                "{}{}",
                self.auth_base_url.as_str().trim_end_matches('/'),
                path_or_url
            )
        }
    }

    /// Where an upstream call for this service goes, for its timeout and audit line.
    pub fn target(&self) -> Target<'_> {
        Target {
            name: &self.name,
            timeout: self.timeout,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Command {
    pub name: String,
    pub usage: String,
    pub help: String,
    pub args: Vec<ArgSpec>,
    /// OAuth 2.0 scopes the user's token must carry.
    pub scopes: Vec<String>,
    /// Permission groups allowed to run it; empty: everyone.
    pub allow: Vec<String>,
    /// Ask the user to confirm before calling.
    pub confirm: bool,
    pub request: Request,
}

/// One HTTP call and its reply, as template names in [`super::Templates`].
#[derive(Debug, Clone)]
pub struct Request {
    pub method: reqwest::Method,
    pub path: String,
    pub query: Option<String>,
    pub headers: Vec<(String, String)>,
    pub body: Option<String>,
    pub content_type: String,
    pub response: ResponseKind,
    pub reply: String,
}

/// Words every service answers to before its pack's commands.
pub const BUILTIN_WORDS: &[&str] = &["setupauth", "auth", "setkey", "logout", "whoami", "help"];

impl Command {
    /// Matches words against the argument specs.
    pub fn bind(&self, words: &[String]) -> Result<Args, String> {
        args::bind(&self.args, words)
    }
}
