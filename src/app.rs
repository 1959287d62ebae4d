//! Start-up wiring shared by the CLI and the tests: config → packs → secret → brain →
//! dispatcher, each step failing with an exit code and a message that names the fix.

use std::path::Path;
use std::sync::Arc;

use secrecy::SecretString;

use crate::brain::seal::Sealer;
use crate::brain::{self, Brain, BrainError};
use crate::config::{Config, PREVIOUS_SECRET_ENV, SECRET_ENV};
use crate::dispatch::parse::Addressing;
use crate::dispatch::Dispatcher;
use crate::pack::{self, Pack, Templates};
use crate::upstream::Upstream;

/// Exit codes, as documented in the README.
pub mod exit {
    pub const OK: u8 = 0;
    pub const RUNTIME: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const CONFIG: u8 = 3;
    pub const SECRET: u8 = 4;
}

/// A start-up failure: the message is for the operator and never holds a secret.
#[derive(Debug)]
pub struct StartError {
    pub code: u8,
    pub message: String,
}

impl StartError {
    fn config(message: impl Into<String>) -> StartError {
        StartError {
            code: exit::CONFIG,
            message: message.into(),
        }
    }

    fn secret(message: impl Into<String>) -> StartError {
        StartError {
            code: exit::SECRET,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub fn load_config(path: &Path, explicit: bool) -> Result<Config, StartError> {
    Config::load(path, explicit).map_err(|e| StartError::config(e.to_string()))
}

/// Loads the packs and gives OAuth services the operator's consumer credentials
/// (`DEPUTY_<SERVICE>_CONSUMER_KEY`/`_SECRET`, or `consumer_key` in `[services.NAME]`).
/// A service without them still loads: its sign-in explains what the operator must set.
pub fn load_packs(config: &Config) -> Result<(Vec<Pack>, Templates), StartError> {
    let (mut packs, templates) = load_packs_only(config)?;
    for pack in &mut packs {
        let name = &pack.service.name;
        let (key_env, secret_env) = match consumer_envs(pack) {
            Some(e) => e,
            None => continue,
        };
        let env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
        let from_config = config.services.get(name).and_then(|o| {
            if matches!(pack.service.auth, pack::AuthKind::OAuth2(_)) {
                o.client_id.clone()
            } else {
                o.consumer_key.clone()
            }
        });
        let key = env(&key_env).or(from_config);
        if let (Some(key), Some(secret)) = (key, env(&secret_env)) {
            pack.service.consumer = Some(pack::Consumer {
                key,
                secret: crate::secret::Secret::new(secret),
            });
        }
    }
    Ok((packs, templates))
}

/// The environment variables holding an OAuth service's client credentials.
fn consumer_envs(pack: &Pack) -> Option<(String, String)> {
    crate::auth::Kinds::new()
        .of(&pack.service.auth)
        .operator_env(&pack.service.name)
}

/// The environment variables this config reads, with whether each is set: for `deputy
/// check`, which prints names only, never a value.
pub fn environment_read(config: &Config, packs: &[Pack]) -> Vec<(String, bool)> {
    let mut names: Vec<String> = vec![SECRET_ENV.into(), PREVIOUS_SECRET_ENV.into()];
    if config.brain.url.is_some() {
        names.push(REDIS_PASSWORD_ENV.into());
    }
    if config.discord.enabled {
        names.push("DISCORD_TOKEN".into());
    }
    if config.slack.enabled {
        names.extend(["SLACK_APP_TOKEN".into(), "SLACK_BOT_TOKEN".into()]);
    }
    if let Some(identity) = config
        .web
        .identity
        .as_ref()
        .filter(|_| config.web.chat.enabled)
    {
        if identity.algorithm == crate::config::JwtAlgorithm::HS256 {
            names.push(identity.secret_env().to_string());
        }
    }
    for p in packs {
        if let Some((key, secret)) = consumer_envs(p) {
            names.extend([key, secret]);
        }
    }
    // Named only when set: then every call to a service goes through that proxy.
    names.extend(crate::upstream::proxy_variables());
    names
        .into_iter()
        .map(|n| {
            let set = std::env::var_os(&n).is_some_and(|v| !v.is_empty());
            (n, set)
        })
        .collect()
}

/// One line per permission group a pack command names that the config does not fill: that
/// command refuses everyone until it is.
pub fn unfilled_groups(config: &Config, packs: &[Pack]) -> Vec<String> {
    let mut lines = Vec::new();
    for p in packs {
        for c in &p.commands {
            for g in &c.allow {
                if config.permissions.get(g).map_or(true, Vec::is_empty) {
                    lines.push(format!(
                        "`{} {}` is allowed to group {g}, which [permissions] does not fill: no one can run it",
                        p.service.prefixes[0], c.name
                    ));
                }
            }
        }
    }
    lines
}

/// One line per OAuth service that has no consumer credentials: its users cannot sign in.
pub fn missing_consumers(packs: &[Pack]) -> Vec<String> {
    packs
        .iter()
        .filter(|p| p.service.auth.is_oauth() && p.service.consumer.is_none())
        .filter_map(|p| {
            let name = &p.service.name;
            let (key, secret) = consumer_envs(p)?;
            Some(format!(
                "service {name} has no OAuth client credentials: set {key} and {secret} (or disable it with [services.{name}] enabled = false); until then its sign-in tells users it is not set up"
            ))
        })
        .collect()
}

fn load_packs_only(config: &Config) -> Result<(Vec<Pack>, Templates), StartError> {
    pack::load_all(config).map_err(|errors| {
        let lines: Vec<String> = errors.iter().map(ToString::to_string).collect();
        StartError::config(format!(
            "{} problem(s) in the command packs:\n{}",
            lines.len(),
            lines.join("\n")
        ))
    })
}

/// Where the brain's key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Environment,
    /// A development key file next to the brain; `created` when this start made it.
    DevFile {
        path: std::path::PathBuf,
        created: bool,
    },
}

/// Reads `DEPUTY_SECRET` (and `DEPUTY_SECRET_PREVIOUS`). Without one, `allow_dev` lets the
/// shell use (or create) a development key file in the brain directory.
pub fn sealer(config: &Config, allow_dev: bool) -> Result<(Sealer, SecretSource), StartError> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(SecretString::from)
    };
    let previous: Vec<SecretString> = env(PREVIOUS_SECRET_ENV).into_iter().collect();
    let bad = |name: &str, e: brain::seal::SealError| StartError::secret(format!("{name}: {e}"));
    match env(SECRET_ENV) {
        Some(secret) => {
            let sealer = Sealer::new(&secret, &[])
                .map_err(|e| bad(SECRET_ENV, e))
                .and_then(|_| {
                    Sealer::new(&secret, &previous).map_err(|e| bad(PREVIOUS_SECRET_ENV, e))
                })?;
            Ok((sealer, SecretSource::Environment))
        }
        None if allow_dev => {
            let dir = config.brain_dir();
            let (secret, created) = brain::dev_secret(&dir).map_err(|e| {
                StartError::secret(format!(
                    "{SECRET_ENV} is not set and the development key in {} cannot be used: {e}",
                    dir.display()
                ))
            })?;
            let sealer = Sealer::new(&secret, &previous).map_err(|e| {
                StartError::secret(format!(
                    "the development key {}: {e}",
                    dir.join(brain::DEV_SECRET_FILE).display()
                ))
            })?;
            Ok((
                sealer,
                SecretSource::DevFile {
                    path: dir.join(brain::DEV_SECRET_FILE),
                    created,
                },
            ))
        }
        None => Err(StartError::secret(format!(
            "{SECRET_ENV} is not set. It holds the key that encrypts users' credentials: \
             generate one with `deputy keygen` and keep it in your secret store."
        ))),
    }
}

pub fn open_brain(config: &Config, sealer: Sealer) -> Result<Brain, StartError> {
    Brain::open_dir(&config.brain_dir(), sealer).map_err(brain_error)
}

/// Opens the brain the config names: Redis when `[brain] url` is set, else sled.
pub async fn open_configured_brain(config: &Config, sealer: Sealer) -> Result<Brain, StartError> {
    match &config.brain.url {
        Some(url) => {
            let password = std::env::var(REDIS_PASSWORD_ENV)
                .ok()
                .filter(|p| !p.is_empty())
                .map(SecretString::from);
            Brain::open_redis(url, password.as_ref(), &config.brain.prefix, sealer)
                .await
                .map_err(brain_error)
        }
        None => open_brain(config, sealer),
    }
}

/// The brain on its way: opening on a runtime worker already ([`open_meanwhile`]), or with
/// its secret read and the opening still to come.
pub enum Opening {
    Meanwhile {
        source: SecretSource,
        task: tokio::task::JoinHandle<Result<Brain, StartError>>,
    },
    Later {
        sealer: Sealer,
        source: SecretSource,
    },
}

/// Starts opening the brain now, on a runtime worker, so that it opens while this thread loads
/// the packs: the two are most of start-up, and on 2 cores they take half the time side by
/// side. Only when that can leave nothing behind if the packs then fail to load: a sled brain
/// already on disk with its canary, and a secret that needs no new development key. Otherwise
/// `None`, and [`Opening::or_later`] reads the secret after the packs, as a new brain needs.
pub fn open_meanwhile(config: &Config, allow_dev: bool) -> Option<Opening> {
    let dir = config.brain_dir();
    if config.brain.url.is_some() || !Brain::on_disk(&dir) {
        return None;
    }
    let allow_dev = allow_dev && dir.join(brain::DEV_SECRET_FILE).exists();
    // A secret that fails here fails again, with its message, in `or_later`.
    let (sealer, source) = sealer(config, allow_dev).ok()?;
    let config = config.clone();
    let task = tokio::spawn(async move { open_configured_brain(&config, sealer).await });
    Some(Opening::Meanwhile { source, task })
}

impl Opening {
    /// `early` if [`open_meanwhile`] started one; else reads the secret now. The errors come
    /// in the same order either way: the packs' (before this), the secret's, the brain's.
    pub fn or_later(
        early: Option<Opening>,
        config: &Config,
        allow_dev: bool,
    ) -> Result<Opening, StartError> {
        match early {
            Some(opening) => Ok(opening),
            None => {
                let (sealer, source) = sealer(config, allow_dev)?;
                Ok(Opening::Later { sealer, source })
            }
        }
    }

    /// Where the secret came from.
    pub fn source(&self) -> &SecretSource {
        match self {
            Opening::Meanwhile { source, .. } | Opening::Later { source, .. } => source,
        }
    }

    /// The brain, open.
    pub async fn open(self, config: &Config) -> Result<Brain, StartError> {
        match self {
            Opening::Later { sealer, .. } => open_configured_brain(config, sealer).await,
            Opening::Meanwhile { task, .. } => match task.await {
                Ok(brain) => brain,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => Err(StartError {
                    code: exit::RUNTIME,
                    message: format!("the brain did not finish opening: {e}"),
                }),
            },
        }
    }
}

/// The Redis brain's password.
pub const REDIS_PASSWORD_ENV: &str = "DEPUTY_REDIS_PASSWORD";

/// For administration: the brain must exist already.
pub fn open_existing_brain(config: &Config, sealer: Sealer) -> Result<Brain, StartError> {
    Brain::open_existing(&config.brain_dir(), sealer).map_err(brain_error)
}

fn brain_error(e: BrainError) -> StartError {
    match e {
        BrainError::WrongSecret { .. } | BrainError::Secret(_) => StartError::secret(e.to_string()),
        BrainError::Io { .. } => StartError {
            code: exit::RUNTIME,
            message: e.to_string(),
        },
    }
}

/// The dispatcher, ready to share. `extra_roots` are PEM certificates to trust besides the
/// system's and `[http] ca_file`'s (the sandbox's own).
pub fn dispatcher(
    config: &Config,
    packs: Vec<Pack>,
    templates: Templates,
    brain: Brain,
    extra_roots: &[String],
) -> Result<Arc<Dispatcher>, StartError> {
    let mut roots = Vec::new();
    if let Some(file) = &config.http.ca_file {
        let file = config.resolve(file);
        roots.push(
            std::fs::read_to_string(&file).map_err(|e| {
                StartError::config(format!("[http] ca_file {}: {e}", file.display()))
            })?,
        );
    }
    roots.extend(extra_roots.iter().cloned());
    let upstream = Upstream::new(&config.http, &roots)
        .map_err(|e| StartError {
            code: exit::CONFIG,
            message: format!("cannot build the HTTP client: {e}"),
        })?
        .with_services(&config.http, &config.services);
    Ok(Dispatcher::new(
        Addressing::new(&config.bot.name, &config.bot.aliases),
        packs,
        templates,
        brain,
        upstream,
        config,
    ))
}
