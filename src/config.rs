//! The operator's configuration (`deputy.toml`). Typos fail loudly (`deny_unknown_fields`);
//! secrets are never read from this file, only from the environment.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Environment variable holding the brain's master secret.
pub const SECRET_ENV: &str = "DEPUTY_SECRET";
/// Environment variable holding the previous secret while rotating.
pub const PREVIOUS_SECRET_ENV: &str = "DEPUTY_SECRET_PREVIOUS";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub bot: BotConfig,
    pub brain: BrainConfig,
    pub http: HttpConfig,
    pub auth: AuthConfig,
    pub web: WebConfig,
    pub discord: DiscordConfig,
    pub slack: SlackConfig,
    /// What one user may ask of the bot: rate, message length, queued messages.
    pub limits: LimitsConfig,
    /// Per-service overrides of what the packs declare, keyed by service name.
    pub services: BTreeMap<String, ServiceOverride>,
    /// Members of the permission groups pack commands name in `allow`.
    pub permissions: Permissions,
    /// Where the file was loaded from; relative paths are resolved against its folder.
    #[serde(skip)]
    pub base_dir: PathBuf,
    /// The file it was loaded from, if any (for messages).
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BotConfig {
    /// The bot answers to `@name` and `name:`.
    pub name: String,
    /// Extra prefixes that address the bot, such as `!`.
    pub aliases: Vec<String>,
    /// Folder of command packs.
    pub packs: PathBuf,
    /// Operators who may use `admin …` in chat, as `adapter:workspace:user`
    /// (`"slack:T123:U456"`, `"shell:local:alice"`).
    pub admins: Vec<String>,
    /// Seconds a user has to confirm a command whose pack says `confirm = true`; after that
    /// the Confirm button does nothing and the command must be asked again.
    pub confirm_ttl_secs: u64,
}

/// `[permissions]`: group name → members (`adapter:workspace:user`), for pack commands that
/// declare `allow = ["group"]`.
pub type Permissions = BTreeMap<String, Vec<String>>;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrainConfig {
    /// The brain's data directory (created 0700), for the embedded sled brain.
    pub path: PathBuf,
    /// A shared Redis brain instead (`redis://host:port/db`, `rediss://` for TLS), for several
    /// replicas. Its password comes from `DEPUTY_REDIS_PASSWORD`, never from this file.
    pub url: Option<String>,
    /// Prefix of every Redis key deputy writes, so one Redis can hold several brains.
    pub prefix: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Seconds to wait for a TCP/TLS connection to an upstream.
    pub connect_timeout_secs: u64,
    /// Seconds to wait for a whole upstream call, unless a service says otherwise.
    pub timeout_secs: u64,
    /// A PEM file of extra CA certificates to trust (self-hosted services with a private CA).
    pub ca_file: Option<PathBuf>,
    /// Extra attempts for a call that may safely be sent again (GET, HEAD, OPTIONS) after a
    /// connection failure, a 502/503/504, or a 429 with a short `Retry-After`; 0: none.
    pub retries: u32,
    /// The first wait before a retry; it doubles each time, with random jitter.
    pub retry_backoff_ms: u64,
    /// The longest `Retry-After` deputy waits out itself; a longer one is told to the user.
    pub retry_after_max_secs: u64,
    /// Calls in flight to one service at once; more wait for a turn within their timeout.
    pub max_concurrent: usize,
    /// Calls waiting for a turn to one service; more are refused at once ("busy").
    pub max_waiting: usize,
    /// The largest response body read from an upstream; reading stops there.
    pub max_body_bytes: usize,
}

/// `[limits]`: what one chat user may ask of the bot.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Commands one user (adapter, workspace, user) may send per minute, sustained; 0: no limit.
    pub commands_per_minute: u32,
    /// Commands one user may send at once before the per-minute rate applies.
    pub burst: u32,
    /// The longest message deputy reads, in bytes; a longer one is refused unread.
    pub max_message_bytes: usize,
    /// Messages from one user in one conversation waiting for their turn; more are refused.
    pub max_queued: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            commands_per_minute: 60,
            burst: 20,
            max_message_bytes: 16 * 1024,
            max_queued: 32,
        }
    }
}

/// Sign-in flows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// How long a started sign-in (PIN link, device code) stays valid.
    pub flow_ttl_secs: u64,
    /// Wrong PINs or codes before a sign-in is dropped.
    pub max_attempts: u32,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            flow_ttl_secs: 15 * 60,
            max_attempts: 5,
        }
    }
}

/// The Discord adapter. The bot token comes only from `DISCORD_TOKEN`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscordConfig {
    pub enabled: bool,
    /// A Discord-compatible REST base (a rate-limit proxy such as nirn-proxy, or a test
    /// server); unset: discord.com.
    pub proxy: Option<String>,
    /// The shards this process runs, `"FIRST-LAST/TOTAL"` or `"ID/TOTAL"` (`"0-1/4"`: shards 0
    /// and 1 of 4), so replicas split the gateway between them; unset: all of them
    /// (Discord's recommended count).
    pub shards: Option<String>,
}

impl DiscordConfig {
    /// `shards` as (first, last, total), checked.
    pub fn shard_range(&self) -> Result<Option<(u32, u32, u32)>, String> {
        let Some(spec) = &self.shards else {
            return Ok(None);
        };
        let bad = || {
            format!("[discord] shards = {spec:?}: expected \"FIRST-LAST/TOTAL\" such as \"0-1/4\", or \"ID/TOTAL\"")
        };
        let (range, total) = spec.trim().split_once('/').ok_or_else(bad)?;
        let total: u32 = total.trim().parse().map_err(|_| bad())?;
        let (first, last) = match range.split_once('-') {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let id: u32 = range.trim().parse().map_err(|_| bad())?;
                (id, id)
            }
        };
        if total == 0 || first > last || last >= total {
            return Err(format!(
                "[discord] shards = {spec:?}: shards {first} to {last} are not within 0 to {}",
                total.saturating_sub(1)
            ));
        }
        Ok(Some((first, last, total)))
    }
}

/// The Slack adapter (Socket Mode). Tokens come only from `SLACK_APP_TOKEN` (xapp-…) and
/// `SLACK_BOT_TOKEN` (xoxb-…).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    pub enabled: bool,
    /// Slack's Web API base; unset: https://slack.com/api.
    pub api_url: Option<String>,
    /// Socket Mode connections to keep open (Slack spreads events over them); default 2.
    pub connections: Option<u32>,
}

/// deputy's own HTTP listener: OAuth callbacks, health, and the web chat.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, e.g. "127.0.0.1:8080". Unset: no listener.
    pub listen: Option<String>,
    /// The URL browsers reach the listener at (behind a proxy: the proxy's). When set,
    /// sign-ins come back to `<public_url>/oauth1/<service>/callback` instead of a PIN.
    pub public_url: Option<String>,
    /// The web chat adapter (`/chat`, `/chat/ws`).
    #[serde(default)]
    pub chat: WebChatConfig,
    /// Who a web chat user is: the host site's signed token (required by `[web.chat]`).
    pub identity: Option<WebIdentityConfig>,
}

/// `[web.chat]`: the embeddable chat page and its WebSocket, and their abuse limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebChatConfig {
    pub enabled: bool,
    /// Origins (`https://intranet.example.com`) whose pages may open the chat WebSocket and
    /// frame the chat page, besides deputy's own (`public_url`'s).
    pub allowed_origins: Vec<String>,
    /// The longest message a user may send, in bytes.
    pub max_message_bytes: usize,
    /// Messages one connection may send per minute (a token bucket of `burst`).
    pub messages_per_minute: u32,
    /// Messages one connection may send at once before the per-minute rate applies.
    pub burst: u32,
    /// Open chat connections (tabs) one user may have at once.
    pub max_connections_per_user: usize,
}

impl Default for WebChatConfig {
    fn default() -> Self {
        WebChatConfig {
            enabled: false,
            allowed_origins: Vec::new(),
            max_message_bytes: 4000,
            messages_per_minute: 30,
            burst: 10,
            max_connections_per_user: 5,
        }
    }
}

/// The signature algorithm the host site signs chat tokens with. Fixed by the operator:
/// a token's own `alg` header is never trusted to choose it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum JwtAlgorithm {
    HS256,
    RS256,
    ES256,
}

/// `[web.identity]`: how a chat token is verified and read.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebIdentityConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (deputy's name at the site).
    pub audience: String,
    pub algorithm: JwtAlgorithm,
    /// The claim holding the user's id.
    #[serde(default = "default_user_claim")]
    pub user_claim: String,
    /// A claim holding a display name (replies and templates only; never identity).
    pub name_claim: Option<String>,
    /// A fixed workspace for every web user...
    pub workspace: Option<String>,
    /// ...or the claim that names it (a tenant, an organisation).
    pub workspace_claim: Option<String>,
    /// HS256: the environment variable holding the shared secret.
    pub secret_env: Option<String>,
    /// RS256/ES256: a PEM file of the site's public key.
    pub public_key_file: Option<PathBuf>,
    /// RS256/ES256: the site's JWKS URL (keys cached, refetched on an unknown `kid`).
    pub jwks_url: Option<String>,
    /// The least time between two JWKS fetches caused by unknown `kid`s.
    #[serde(default = "default_jwks_min_refresh")]
    pub jwks_min_refresh_secs: u64,
    /// How long fetched JWKS keys are used before they are asked for again (so a key the site
    /// withdraws stops working).
    #[serde(default = "default_jwks_max_age")]
    pub jwks_max_age_secs: u64,
    /// Clock skew allowed on `exp` and `nbf`.
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

/// Where an HS256 secret is read from when `secret_env` is not set.
pub const WEB_JWT_SECRET_ENV: &str = "DEPUTY_WEB_JWT_SECRET";
/// The workspace of web users when neither `workspace` nor `workspace_claim` is set.
pub const WEB_DEFAULT_WORKSPACE: &str = "default";

fn default_user_claim() -> String {
    "sub".into()
}
fn default_jwks_min_refresh() -> u64 {
    60
}
fn default_jwks_max_age() -> u64 {
    3600
}
fn default_leeway() -> u64 {
    30
}

impl WebIdentityConfig {
    /// The environment variable an HS256 secret comes from.
    pub fn secret_env(&self) -> &str {
        self.secret_env.as_deref().unwrap_or(WEB_JWT_SECRET_ENV)
    }

    fn validate(&self) -> Result<(), String> {
        let e = |m: &str| Err(format!("[web.identity] {m}"));
        if self.issuer.trim().is_empty() || self.audience.trim().is_empty() {
            return e("issuer and audience must not be empty: tokens are checked against both");
        }
        if self.user_claim.trim().is_empty() {
            return e("user_claim must name a claim, such as \"sub\"");
        }
        if self.workspace.is_some() && self.workspace_claim.is_some() {
            return e("set workspace (one fixed value) or workspace_claim (read from the token), not both");
        }
        if self
            .workspace
            .as_deref()
            .is_some_and(|w| w.trim().is_empty() || w.contains('/'))
        {
            return e("workspace must be a non-empty name without '/'");
        }
        match self.algorithm {
            JwtAlgorithm::HS256 => {
                if self.public_key_file.is_some() || self.jwks_url.is_some() {
                    return e("algorithm = \"HS256\" uses a shared secret from the environment (secret_env); public_key_file and jwks_url are for RS256 and ES256");
                }
            }
            JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                if self.secret_env.is_some() {
                    return e("secret_env is for HS256; RS256 and ES256 verify with the site's public key (public_key_file or jwks_url)");
                }
                match (&self.public_key_file, &self.jwks_url) {
                    (Some(_), Some(_)) => return e("set public_key_file or jwks_url, not both"),
                    (None, None) => {
                        return e("RS256 and ES256 need the site's public key: public_key_file = \"site.pem\" or jwks_url = \"https://…/jwks.json\"")
                    }
                    (None, Some(url)) => {
                        let u = reqwest::Url::parse(url)
                            .map_err(|err| format!("[web.identity] jwks_url: not a URL ({err})"))?;
                        if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
                            return e("jwks_url must be an http(s) URL with a host");
                        }
                    }
                    (Some(_), None) => {}
                }
            }
        }
        if self.jwks_max_age_secs == 0 {
            return e("jwks_max_age_secs must be at least 1");
        }
        if self.jwks_min_refresh_secs == 0 {
            return e("jwks_min_refresh_secs must be at least 1, so a flood of unknown key ids cannot hammer the JWKS server");
        }
        Ok(())
    }
}

impl WebConfig {
    fn validate(&self) -> Result<(), String> {
        let chat = &self.chat;
        if !chat.enabled {
            return Ok(());
        }
        if self.listen.is_none() {
            return Err("[web.chat] enabled needs [web] listen: the chat is served by deputy's HTTP listener".into());
        }
        let Some(identity) = &self.identity else {
            return Err("[web.chat] enabled needs [web.identity]: web users are identified only by the site's signed token".into());
        };
        identity.validate()?;
        for o in &chat.allowed_origins {
            origin_of(o).map_err(|m| format!("[web.chat] allowed_origins: {m}"))?;
        }
        if chat.max_message_bytes == 0
            || chat.messages_per_minute == 0
            || chat.burst == 0
            || chat.max_connections_per_user == 0
        {
            return Err("[web.chat] max_message_bytes, messages_per_minute, burst and max_connections_per_user must be at least 1".into());
        }
        Ok(())
    }
}

/// `scheme://host[:port]` of an origin as browsers send it in `Origin`, or why it is not one.
pub fn origin_of(text: &str) -> Result<String, String> {
    let u = reqwest::Url::parse(text).map_err(|e| format!("{text:?} is not an origin ({e})"))?;
    if !matches!(u.scheme(), "http" | "https") || u.host_str().is_none() {
        return Err(format!("{text:?} must be http(s)://host[:port]"));
    }
    if u.path() != "/" || u.query().is_some() || u.fragment().is_some() || !u.username().is_empty()
    {
        return Err(format!(
            "{text:?} must be only scheme, host and port, like \"https://intranet.example.com\""
        ));
    }
    Ok(u.origin().ascii_serialization())
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceOverride {
    /// `false` disables the pack entirely.
    pub enabled: Option<bool>,
    /// Replaces the pack's `base_url` (a self-hosted Jenkins, a proxy, a test server).
    pub base_url: Option<String>,
    /// Replaces the pack's request timeout.
    pub timeout_secs: Option<u64>,
    /// Replaces `[http] max_concurrent` for this service.
    pub max_concurrent: Option<usize>,
    /// Replaces `[http] retries` for this service.
    pub retries: Option<u32>,
    /// Replaces where the pack's OAuth endpoints live (default: follows `base_url`).
    pub auth_base_url: Option<String>,
    /// The OAuth 1.0a consumer key (the secret comes only from `DEPUTY_<SERVICE>_CONSUMER_SECRET`).
    pub consumer_key: Option<String>,
    /// The OAuth 2.0 client id (the secret comes only from `DEPUTY_<SERVICE>_CLIENT_SECRET`).
    pub client_id: Option<String>,
}

impl Default for BotConfig {
    fn default() -> Self {
        BotConfig {
            name: "deputy".into(),
            aliases: Vec::new(),
            packs: PathBuf::from("commands"),
            admins: Vec::new(),
            confirm_ttl_secs: 120,
        }
    }
}

impl Default for BrainConfig {
    fn default() -> Self {
        BrainConfig {
            path: PathBuf::from("deputy-data"),
            url: None,
            prefix: "deputy:".into(),
        }
    }
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout_secs: 5,
            timeout_secs: 20,
            ca_file: None,
            retries: 2,
            retry_backoff_ms: 200,
            retry_after_max_secs: 10,
            max_concurrent: 64,
            max_waiting: 1024,
            max_body_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bot: BotConfig::default(),
            brain: BrainConfig::default(),
            http: HttpConfig::default(),
            auth: AuthConfig::default(),
            web: WebConfig::default(),
            discord: DiscordConfig::default(),
            slack: SlackConfig::default(),
            limits: LimitsConfig::default(),
            services: BTreeMap::new(),
            permissions: BTreeMap::new(),
            base_dir: PathBuf::from("."),
            path: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

impl Config {
    /// Loads `path`; when `required` is false and the file does not exist, returns the
    /// built-in defaults rooted at the current directory.
    pub fn load(path: &Path, required: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                return Ok(Config::default());
            }
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })
            }
        };
        let mut config = Config::parse(&text, path)?;
        config.path = Some(path.to_owned());
        config.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(config)
    }

    /// Parses config text; `path` only names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            ConfigError::Parse {
                path: path.to_owned(),
                line,
                column,
                message: toml_message(&e),
            }
        })?;
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        if let Err(e) = self.discord.shard_range() {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: e,
            });
        }
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        if self.bot.name.trim().is_empty() || self.bot.name.contains(char::is_whitespace) {
            return Err(invalid(
                "[bot] name must be one word, such as \"deputy\"".into(),
            ));
        }
        if self.bot.aliases.iter().any(|a| a.trim().is_empty()) {
            return Err(invalid("[bot] aliases must not be empty strings".into()));
        }
        if self.http.timeout_secs == 0 || self.http.connect_timeout_secs == 0 {
            return Err(invalid("[http] timeouts must be at least 1 second".into()));
        }
        if self.http.max_concurrent == 0 {
            return Err(invalid(
                "[http] max_concurrent must be at least 1 (calls in flight per service)".into(),
            ));
        }
        if self.http.max_body_bytes < 1024 {
            return Err(invalid(format!(
                "[http] max_body_bytes = {} is too small to read any answer; use at least 1024",
                self.http.max_body_bytes
            )));
        }
        if self.http.retries > 10 {
            return Err(invalid(format!(
                "[http] retries = {} would hammer a failing service; use 10 or fewer",
                self.http.retries
            )));
        }
        let l = &self.limits;
        if l.burst == 0 {
            return Err(invalid(
                "[limits] burst must be at least 1 (commands a user may send at once)".into(),
            ));
        }
        if l.max_message_bytes < 64 {
            return Err(invalid(format!(
                "[limits] max_message_bytes = {} is too small for a command; use at least 64",
                l.max_message_bytes
            )));
        }
        if l.max_queued == 0 {
            return Err(invalid(
                "[limits] max_queued must be at least 1 (messages waiting per conversation)".into(),
            ));
        }
        if self.auth.max_attempts == 0 {
            return Err(invalid("[auth] max_attempts must be at least 1".into()));
        }
        if let Some(listen) = &self.web.listen {
            listen.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(format!(
                    "[web] listen = {listen:?} must be an address and port, like \"127.0.0.1:8080\""
                ))
            })?;
        }
        if let Some(url) = &self.discord.proxy {
            check_base_url(url).map_err(|m| invalid(format!("[discord] proxy: {m}")))?;
        }
        if let Some(url) = &self.slack.api_url {
            check_base_url(url).map_err(|m| invalid(format!("[slack] api_url: {m}")))?;
        }
        if let Some(url) = &self.web.public_url {
            check_base_url(url).map_err(|m| invalid(format!("[web] public_url: {m}")))?;
        }
        self.web.validate().map_err(invalid)?;
        for (name, o) in &self.services {
            if let Some(url) = &o.auth_base_url {
                check_base_url(url)
                    .map_err(|m| invalid(format!("[services.{name}] auth_base_url: {m}")))?;
            }
            if let Some(url) = &o.base_url {
                check_base_url(url)
                    .map_err(|m| invalid(format!("[services.{name}] base_url: {m}")))?;
            }
            if o.timeout_secs == Some(0) {
                return Err(invalid(format!(
                    "[services.{name}] timeout_secs must be at least 1"
                )));
            }
            if o.max_concurrent == Some(0) {
                return Err(invalid(format!(
                    "[services.{name}] max_concurrent must be at least 1"
                )));
            }
            if o.retries.is_some_and(|r| r > 10) {
                return Err(invalid(format!(
                    "[services.{name}] retries must be 10 or fewer"
                )));
            }
        }
        Ok(())
    }

    /// The limits in force, in one line for `deputy check`.
    pub fn limits_summary(&self) -> String {
        let l = &self.limits;
        let rate = if l.commands_per_minute == 0 {
            "no rate limit per user".to_string()
        } else {
            format!(
                "{} commands a minute per user (burst {})",
                l.commands_per_minute, l.burst
            )
        };
        let h = &self.http;
        format!(
            "limits: {rate}, messages up to {} bytes, {} queued per conversation; upstream: \
             {} calls in flight and {} waiting per service, {} retries, bodies up to {} bytes",
            l.max_message_bytes,
            l.max_queued,
            h.max_concurrent,
            h.max_waiting,
            h.retries,
            h.max_body_bytes
        )
    }

    /// A path from the config, resolved against the config file's folder.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        if p.is_absolute() {
            p.to_owned()
        } else {
            self.base_dir.join(p)
        }
    }

    pub fn packs_dir(&self) -> PathBuf {
        self.resolve(&self.bot.packs)
    }

    pub fn brain_dir(&self) -> PathBuf {
        self.resolve(&self.brain.path)
    }
}

/// A base URL must be absolute http(s) with a host and nothing after the path.
pub fn check_base_url(url: &str) -> Result<reqwest::Url, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("{url:?} has no host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("{url:?} must not have a query or fragment"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // Not echoed: the URL itself holds a secret here.
        return Err("the URL must not carry credentials; users link their own".into());
    }
    Ok(parsed)
}

/// What toml says is wrong. It says nothing for some characters (a control character in a
/// comment, found by fuzzing the pack loader), which left the user a line number and no reason.
pub fn toml_message(e: &toml::de::Error) -> String {
    match e.message().trim() {
        "" => "a character that is not allowed here (a control character?)".to_string(),
        m => m.to_string(),
    }
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_without_file() {
        let c = Config::load(Path::new("/nonexistent/deputy.toml"), false).unwrap();
        assert_eq!(c.bot.name, "deputy");
        assert_eq!(c.packs_dir(), PathBuf::from("./commands"));
    }

    #[test]
    fn required_file_missing_is_an_error() {
        let e = Config::load(Path::new("/nonexistent/deputy.toml"), true).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/deputy.toml"), "{e}");
    }

    #[test]
    fn typo_names_line() {
        let e = Config::parse("[bot]\nname = \"x\"\npakcs = \"c\"\n", Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("d.toml:3:"), "{e}");
        assert!(e.contains("pakcs"), "{e}");
    }

    #[test]
    fn relative_paths_follow_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("deputy.toml");
        std::fs::write(&p, "[brain]\npath = \"data\"\n").unwrap();
        let c = Config::load(&p, true).unwrap();
        assert_eq!(c.brain_dir(), dir.path().join("data"));
    }

    #[test]
    fn base_url_with_credentials_refused() {
        let e = Config::parse(
            "[services.jenkins]\nbase_url = \"https://u:p@jenkins.example.com\"\n",
            Path::new("d.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("must not carry credentials"), "{e}");
        assert!(
            !e.contains("u:p"),
            "the URL's secret must not be echoed: {e}"
        );
    }

    #[test]
    fn bad_limits_are_named() {
        for (toml, want) in [
            (
                "[http]\nmax_concurrent = 0\n",
                "[http] max_concurrent must be at least 1",
            ),
            (
                "[http]\nmax_body_bytes = 10\n",
                "[http] max_body_bytes = 10 is too small",
            ),
            ("[http]\nretries = 50\n", "[http] retries = 50 would hammer"),
            ("[limits]\nburst = 0\n", "[limits] burst must be at least 1"),
            (
                "[limits]\nmax_message_bytes = 3\n",
                "[limits] max_message_bytes = 3",
            ),
            (
                "[limits]\nmax_queued = 0\n",
                "[limits] max_queued must be at least 1",
            ),
            (
                "[services.jenkins]\nmax_concurrent = 0\n",
                "[services.jenkins] max_concurrent",
            ),
            (
                "[services.jenkins]\nretries = 11\n",
                "[services.jenkins] retries",
            ),
        ] {
            let e = Config::parse(toml, Path::new("d.toml"))
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("d.toml: ") && e.contains(want), "{toml}: {e}");
        }
        let e = Config::parse("[limits]\nper_minute = 3\n", Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("d.toml:2:") && e.contains("per_minute"),
            "{e}"
        );
        let c = Config::parse(
            "[limits]\ncommands_per_minute = 0\n[http]\nretries = 0\n",
            Path::new("d.toml"),
        )
        .unwrap();
        assert_eq!((c.limits.commands_per_minute, c.http.retries), (0, 0));
    }

    #[test]
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
