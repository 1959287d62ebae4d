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

/// deputy's own HTTP listener: OAuth callbacks and health.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// Address to listen on, e.g. "127.0.0.1:8080". Unset: no listener.
    pub listen: Option<String>,
    /// The URL browsers reach the listener at (behind a proxy: the proxy's). When set,
    /// sign-ins come back to `<public_url>/oauth1/<service>/callback` instead of a PIN.
    pub public_url: Option<String>,
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
        }
        Ok(())
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
    fn line_col_counts_from_one() {
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
        assert_eq!(line_col("ab", 0), (1, 1));
    }
}
