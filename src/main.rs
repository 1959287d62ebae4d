//! The `deputy` binary: a thin clap front over [`deputy::app`].
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use deputy::app::{self, exit, SecretSource, StartError};
use deputy::chat::shell::{self, ShellOptions};
use deputy::chat::Runner;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `deputy --version`: the crate's version and the git revision it was built from.
const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("DEPUTY_GIT_REV"), ")");

/// A chat-ops bot that calls external APIs as the chat user who asks.
///
/// Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 invalid config or command pack or a
/// missing platform token,
/// 4 missing, malformed or wrong DEPUTY_SECRET.
///
/// Environment (secrets come only from here, never from the config file):
/// DEPUTY_SECRET (the brain's key; `deputy keygen` makes one), DEPUTY_SECRET_PREVIOUS (the old
/// key while rotating), DEPUTY_REDIS_PASSWORD (a Redis brain), DISCORD_TOKEN, SLACK_APP_TOKEN
/// and SLACK_BOT_TOKEN (the enabled adapters), DEPUTY_<SERVICE>_CONSUMER_KEY /
/// DEPUTY_<SERVICE>_CONSUMER_SECRET (OAuth 1.0a packs), DEPUTY_<SERVICE>_CLIENT_ID /
/// DEPUTY_<SERVICE>_CLIENT_SECRET (OAuth 2.0 packs), DEPUTY_WEB_JWT_SECRET (the web chat's HS256
/// token secret, or the variable `[web.identity] secret_env` names), RUST_LOG (log filter), USER (the shell's
/// default user).
#[derive(Parser)]
#[command(version = VERSION, propagate_version = true)]
struct Cli {
    /// The operator's config file. Without this flag and without ./deputy.toml, built-in
    /// defaults are used (packs from ./commands, brain in ./deputy-data).
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    /// Log lines as text (default) or as one JSON object per line.
    #[arg(
        long,
        global = true,
        value_enum,
        env = "DEPUTY_LOG_FORMAT",
        default_value = "text"
    )]
    log_format: LogFormat,

    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Chat with the bot in this terminal (or through a pipe: one message per line).
    ///
    /// Without DEPUTY_SECRET it creates a development key next to the brain and says so.
    /// Lines starting with / control the shell: /user NAME, /public, /dm, /quit.
    Shell {
        /// Who is talking [default: $USER].
        #[arg(long, value_name = "ID")]
        user: Option<String>,
        /// Talk in a shared channel instead of a direct message (keys are refused there).
        #[arg(long)]
        public: bool,
        /// Prefix each reply with the user it answers, `[NAME] …`: for scripts that talk as
        /// several users through one pipe.
        #[arg(long)]
        show_user: bool,
        /// Start a local fake X (OAuth 1.0a with a PIN page) and Jenkins on 127.0.0.1 and
        /// point the twitter and jenkins packs at them: try every flow offline. The brain is
        /// a temporary directory, deleted at exit.
        #[arg(long)]
        sandbox: bool,
    },
    /// Run the chat adapters the config enables (Discord, Slack, the web chat; the shell when none is). Needs
    /// DEPUTY_SECRET and the tokens of the enabled adapters; stops cleanly on SIGINT/SIGTERM.
    Run,
    /// Validate the config, the command packs and DEPUTY_SECRET, print what is loaded, and
    /// exit non-zero on any problem. Writes nothing.
    Check,
    /// Print a new random secret for DEPUTY_SECRET.
    Keygen,
    /// Print a completion script for a shell: `deputy completions bash > /etc/bash_completion.d/deputy`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// List every command pack and where it comes from (built in, or the packs folder).
    Packs {
        #[command(subcommand)]
        command: Option<PacksCommand>,
    },
    /// Brain administration.
    Brain {
        #[command(subcommand)]
        command: BrainCommand,
    },
}

#[derive(Subcommand)]
enum PacksCommand {
    /// Write a commented skeleton pack, NAME.toml, into the packs folder (created if need be).
    New {
        /// The service's name, also its chat prefix: lowercase letters, digits, `-`.
        name: String,
    },
}

/// Every brain command opens the brain exclusively (it refuses while deputy or another
/// command has it open) and prints no secret.
#[derive(Subcommand)]
enum BrainCommand {
    /// Re-seal every record with DEPUTY_SECRET after a rotation (the old secret goes in
    /// DEPUTY_SECRET_PREVIOUS), then move the canary to the new key. Interrupted, it can simply
    /// be run again: it resumes with the records still under the old key.
    Reseal,
    /// Records per adapter and service, pending sign-ins, size on disk.
    Stats,
    /// Open every record; list those that do not open and exit 1 if there are any.
    Verify,
    /// Erase a person: their credentials, pending sign-ins and sign-in state.
    Forget {
        /// The chat platform: shell, discord, slack, web.
        #[arg(long)]
        adapter: String,
        /// The workspace (Slack team, Discord guild); every workspace when left out.
        #[arg(long)]
        workspace: Option<String>,
        /// The platform's user id.
        #[arg(long)]
        user: String,
        /// Only this service; every service when left out.
        #[arg(long)]
        service: Option<String>,
    },
    /// Write a sealed backup of every record to FILE (it opens only with the same secret).
    Export { file: PathBuf },
    /// Restore a backup written by `export`: checked whole first, then written at once, so
    /// it lands completely or not at all. Records with the same key are replaced.
    Import { file: PathBuf },
    /// Copy every record, sealed as it is, from one brain to another (a sled directory or a
    /// redis:// URL), checking each opens. Run it again after an interruption: records
    /// already copied are skipped.
    Migrate {
        #[arg(long, value_name = "PATH|URL")]
        from: String,
        #[arg(long, value_name = "PATH|URL")]
        to: String,
    },
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    // Everything deputy creates (brain files, key files) is private to its user.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let default_level = match cli.command {
        Command::Run => "info",
        _ => "warn",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level))
        // slack-morphism and tungstenite trace every websocket frame whole, and frames carry
        // what users type into deputy's private forms and DMs: never below debug for them,
        // whatever RUST_LOG says.
        .add_directive("slack_morphism=debug".parse().expect("a valid directive"))
        .add_directive("tungstenite=debug".parse().expect("a valid directive"))
        .add_directive(
            "tokio_tungstenite=debug"
                .parse()
                .expect("a valid directive"),
        );
    let logs = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(filter);
    match cli.log_format {
        // One JSON object per line, fields at the top level, for log shippers.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .init(),
        // Colour codes only for a person at a terminal, not in log files or pipes.
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("deputy: cannot start the async runtime: {e}");
            return ExitCode::from(exit::RUNTIME);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::from(exit::OK),
        Err(e) => {
            eprintln!("deputy: {e}");
            ExitCode::from(e.code)
        }
    }
}

async fn run(cli: Cli) -> Result<(), StartError> {
    let (config_path, explicit) = match cli.config {
        Some(p) => (p, true),
        None => (PathBuf::from("deputy.toml"), false),
    };
    let config = app::load_config(&config_path, explicit)?;
    match cli.command {
        Command::Keygen => {
            println!("{}", deputy::brain::seal::generate_secret().expose_secret());
            Ok(())
        }
        Command::Check => check(&config),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "deputy", &mut std::io::stdout());
            Ok(())
        }
        Command::Packs { command: None } => {
            let (packs, _) = app::load_packs(&config)?;
            for p in &packs {
                let from = if deputy::pack::builtin::is_built_in(&p.file) {
                    "built in".to_string()
                } else {
                    p.file.display().to_string()
                };
                println!(
                    "{:<10} {:<22} {from}",
                    p.service.name,
                    p.service.prefixes.join(", ")
                );
            }
            Ok(())
        }
        Command::Packs {
            command: Some(PacksCommand::New { name }),
        } => new_pack(&config, &name),
        Command::Shell {
            user,
            public,
            show_user,
            sandbox,
        } => {
            let user = user
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "you".into());
            let options = ShellOptions {
                user,
                public,
                show_user,
            };
            if sandbox {
                sandbox_shell(config, options).await
            } else {
                install_metrics(&config);
                let early = app::open_meanwhile(&config, true);
                let (packs, templates) = app::load_packs(&config)?;
                warn_missing_consumers(&packs);
                let opening = app::Opening::or_later(early, &config, true)?;
                warn_dev_secret(opening.source());
                let brain = opening.open(&config).await?;
                serve(&config, packs, templates, brain, Front::Shell(options), &[]).await
            }
        }
        Command::Run => {
            let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            install_metrics(&config);
            let tokens = chat_tokens(&config);
            // Nothing opens before the platform tokens are known to be there.
            let early = tokens
                .is_ok()
                .then(|| app::open_meanwhile(&config, false))
                .flatten();
            let (packs, templates) = app::load_packs(&config)?;
            warn_missing_consumers(&packs);
            let opening = app::Opening::or_later(early, &config, false)?;
            let options = ShellOptions {
                user,
                public: false,
                show_user: false,
            };
            // Missing platform tokens are reported after the packs and the secret.
            let tokens = tokens?;
            let front = if config.discord.enabled || config.slack.enabled || config.web.chat.enabled
            {
                Front::Chat(tokens)
            } else {
                Front::Shell(options)
            };
            let brain = opening.open(&config).await?;
            serve(&config, packs, templates, brain, front, &[]).await
        }
        Command::Brain { command } => brain_command(&config, command).await,
    }
}

async fn brain_command(
    config: &deputy::config::Config,
    command: BrainCommand,
) -> Result<(), StartError> {
    use deputy::brain::admin;
    let dir = config.brain_dir();
    // A shell-made development key is used when it is there; none is ever created here.
    let allow_dev = dir.join(deputy::brain::DEV_SECRET_FILE).exists();
    let (sealer, _) = app::sealer(config, allow_dev)?;
    if let BrainCommand::Migrate { from, to } = &command {
        return migrate(config, from, to).await;
    }
    let brain = if config.brain.url.is_some() {
        app::open_configured_brain(config, sealer).await?
    } else {
        app::open_existing_brain(config, sealer)?
    };
    let failed = |what: &str, e: &dyn std::fmt::Display| StartError {
        code: exit::RUNTIME,
        message: format!("{what}: {e:#}"),
    };
    match command {
        BrainCommand::Reseal => {
            let n = brain
                .reseal_with(|done, total| eprintln!("re-sealed {done}/{total}"))
                .await
                .map_err(|e| StartError {
                    code: exit::RUNTIME,
                    message: format!("re-sealing failed part-way (run it again): {e:#}"),
                })?;
            brain
                .rewrite_canary_here(&dir)
                .await
                .map_err(|e| StartError {
                    code: exit::RUNTIME,
                    message: format!(
                        "records re-sealed, but the canary could not be rewritten: {e}"
                    ),
                })?;
            println!(
                "re-sealed {n} record(s) with key {}; DEPUTY_SECRET_PREVIOUS can now be removed",
                brain.key_id()
            );
        }
        BrainCommand::Stats => {
            let stats = admin::stats(&brain, &dir)
                .await
                .map_err(|e| failed("cannot read the brain", &e))?;
            println!(
                "brain {} (key id {})\n{stats}",
                dir.display(),
                brain.key_id()
            );
        }
        BrainCommand::Verify => {
            let v = admin::verify(&brain)
                .await
                .map_err(|e| failed("cannot read the brain", &e))?;
            for (key, why) in &v.failures {
                println!("FAILED {key}: {why}");
            }
            if !v.failures.is_empty() {
                return Err(StartError {
                    code: exit::RUNTIME,
                    message: format!(
                        "{} of {} record(s) do not open (listed above)",
                        v.failures.len(),
                        v.records
                    ),
                });
            }
            println!("all {} record(s) open", v.records);
        }
        BrainCommand::Forget {
            adapter,
            workspace,
            user,
            service,
        } => {
            let who = admin::Person {
                adapter: &adapter,
                workspace: workspace.as_deref(),
                user: &user,
                service: service.as_deref(),
            };
            let gone = admin::forget(&brain, &who)
                .await
                .map_err(|e| failed("nothing was erased", &e))?;
            for key in &gone {
                println!("erased {key}");
            }
            println!("erased {} record(s) of {adapter} user {user}", gone.len());
        }
        BrainCommand::Export { file } => {
            let (bytes, n) = admin::export(&brain)
                .await
                .map_err(|e| failed("cannot read the brain", &e))?;
            deputy::brain::write_private(&file, &bytes)
                .map_err(|e| failed(&format!("cannot write {}", file.display()), &e))?;
            println!(
                "exported {n} record(s) to {} (sealed with key {}; it opens only with this secret)",
                file.display(),
                brain.key_id()
            );
        }
        BrainCommand::Import { file } => {
            let bytes = std::fs::read(&file)
                .map_err(|e| failed(&format!("cannot read {}", file.display()), &e))?;
            let n = admin::import(&brain, &bytes)
                .await
                .map_err(|e| failed(&format!("{} was not imported", file.display()), &e))?;
            println!("imported {n} record(s) from {}", file.display());
        }
        BrainCommand::Migrate { .. } => unreachable!("handled above"),
    }
    Ok(())
}

/// `brain migrate`: both ends opened with the same secret (the target's canary is checked,
/// or written when it is new), then every source record copied in atomic chunks.
async fn migrate(config: &deputy::config::Config, from: &str, to: &str) -> Result<(), StartError> {
    let open = |place: &str| {
        let mut c = config.clone();
        if place.starts_with("redis://") || place.starts_with("rediss://") {
            c.brain.url = Some(place.to_string());
        } else {
            c.brain.url = None;
            c.brain.path = PathBuf::from(place);
        }
        c
    };
    let (from_config, to_config) = (open(from), open(to));
    let (sealer, _) = app::sealer(config, false)?;
    let source = if from_config.brain.url.is_some() {
        app::open_configured_brain(&from_config, sealer).await?
    } else {
        app::open_existing_brain(&from_config, sealer)?
    };
    let (sealer, _) = app::sealer(config, false)?;
    let target = app::open_configured_brain(&to_config, sealer).await?;
    let report = deputy::brain::admin::migrate(&source, &target)
        .await
        .map_err(|e| StartError {
            code: exit::RUNTIME,
            message: format!("migration stopped (run it again to resume): {e:#}"),
        })?;
    for (key, why) in &report.failed {
        println!("FAILED {key}: {why}");
    }
    println!(
        "copied {} record(s), {} already there, {} failed",
        report.copied,
        report.already,
        report.failed.len()
    );
    if report.failed.is_empty() {
        Ok(())
    } else {
        Err(StartError {
            code: exit::RUNTIME,
            message: format!(
                "{} record(s) do not open and were not copied",
                report.failed.len()
            ),
        })
    }
}

fn warn_missing_consumers(packs: &[deputy::pack::Pack]) {
    for line in app::missing_consumers(packs) {
        tracing::warn!("{line}");
    }
}

fn warn_dev_secret(source: &SecretSource) {
    if let SecretSource::DevFile { path, created } = source {
        eprintln!(
            "deputy: WARNING: DEPUTY_SECRET is not set; {} the development key {}. Anyone who \
             can read that directory can read the stored credentials: use it only to try deputy.",
            if *created { "created" } else { "using" },
            path.display()
        );
    }
}

/// `shell --sandbox`: the fake provider in this process, the packs pointed at it, a
/// throw-away brain with a random key.
async fn sandbox_shell(
    mut config: deputy::config::Config,
    options: ShellOptions,
) -> Result<(), StartError> {
    use deputy::sandbox;
    let runtime = |message: String| StartError {
        code: exit::RUNTIME,
        message,
    };
    let provider = sandbox::Provider::start()
        .await
        .map_err(|e| runtime(format!("cannot start the sandbox: {e}")))?;
    let github = sandbox::oauth2::OAuth2Provider::start(Default::default())
        .await
        .map_err(|e| {
            runtime(format!(
                "cannot start the sandbox's OAuth 2.0 provider: {e}"
            ))
        })?;
    let (mut packs, templates) = app::load_packs(&config)?;
    let url = |s: &str| reqwest::Url::parse(s).expect("the sandbox's own URL");
    for p in &mut packs {
        match p.service.name.as_str() {
            "twitter" => {
                p.service.base_url = url(&provider.url);
                p.service.auth_base_url = url(&provider.url);
                p.service.consumer = Some(deputy::pack::Consumer {
                    key: sandbox::CONSUMER_KEY.into(),
                    secret: deputy::auth::Secret::new(sandbox::CONSUMER_SECRET),
                });
            }
            "jenkins" => p.service.base_url = url(&format!("{}/jenkins", provider.url)),
            "github" => {
                p.service.base_url = url(&format!("{}/api", github.url));
                p.service.auth_base_url = url(&github.url);
                p.service.consumer = Some(deputy::pack::Consumer {
                    key: sandbox::oauth2::CLIENT_ID.into(),
                    secret: deputy::auth::Secret::new(sandbox::oauth2::CLIENT_SECRET),
                });
            }
            _ => {}
        }
    }
    let dir = std::env::temp_dir().join(format!(
        "deputy-sandbox-{}-{:08x}",
        std::process::id(),
        rand::random::<u32>()
    ));
    config.brain.path = dir.clone();
    let sealer = deputy::brain::seal::Sealer::new(&deputy::brain::seal::generate_secret(), &[])
        .map_err(|e| runtime(e.to_string()))?;
    eprintln!(
        "deputy sandbox: a fake X and Jenkins on {url} (nothing leaves this machine; the brain is \
         {dir}, deleted at exit).\n  X:       t setupauth → open the link (or curl \"<link>&screen_name=alice\") → \
         t auth <PIN> → t tweet hello → t search hello\n  GitHub:  gh setupauth → open the page and \
         enter the code (or curl \"{gh}/login/device?user_code=<code>&login=alice\") → gh whoami → \
         gh issue octo/hello \"a title\"\n  Jenkins: jenkins setkey alice:{token} → \
         jenkins build deploy → jenkins last deploy",
        url = provider.url,
        gh = github.url,
        dir = dir.display(),
        token = sandbox::JENKINS_TOKEN,
    );
    install_metrics(&config);
    // Errors fall through to the clean-up below, which deletes the throw-away brain.
    let result = async {
        let brain = app::open_configured_brain(&config, sealer).await?;
        let roots = std::slice::from_ref(&github.ca_pem);
        serve(
            &config,
            packs,
            templates,
            brain,
            Front::Shell(options),
            roots,
        )
        .await
    }
    .await;
    provider.shutdown();
    github.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// What the bot talks through.
enum Front {
    /// The terminal (or a pipe).
    Shell(ShellOptions),
    /// The chat platforms the config enables.
    Chat(ChatTokens),
}

/// Platform tokens, read from the environment only.
struct ChatTokens {
    discord: Option<secrecy::SecretString>,
    slack: Option<(secrecy::SecretString, secrecy::SecretString)>,
}

fn chat_tokens(config: &deputy::config::Config) -> Result<ChatTokens, StartError> {
    let env = |name: &str| {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(secrecy::SecretString::from)
            .ok_or_else(|| StartError {
                code: exit::CONFIG,
                message: format!(
                    "{name} is not set; the adapter that needs it is enabled in the config"
                ),
            })
    };
    Ok(ChatTokens {
        discord: config
            .discord
            .enabled
            .then(|| env("DISCORD_TOKEN"))
            .transpose()?,
        slack: if config.slack.enabled {
            Some((env("SLACK_APP_TOKEN")?, env("SLACK_BOT_TOKEN")?))
        } else {
            None
        },
    })
}

/// Runs the enabled chat adapters until SIGINT or SIGTERM, then stops taking messages,
/// sends the replies in flight and returns.
async fn chat(
    config: &deputy::config::Config,
    runner: std::sync::Arc<Runner>,
    tokens: ChatTokens,
) -> Result<(), StartError> {
    use tokio::signal::unix::{signal, SignalKind};
    let failed = |what: &str, e: &dyn std::fmt::Display| StartError {
        code: exit::RUNTIME,
        message: format!("{what}: {e}"),
    };
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| failed("signals", &e))?;
    let mut discord = None;
    if let Some(token) = &tokens.discord {
        let mut d = deputy::chat::discord::Discord::new(
            token.expose_secret(),
            config.discord.proxy.as_deref(),
            runner.clone(),
        )
        .await
        .map_err(|e| failed("discord", &e))?;
        let shards = d.shard_manager();
        let range = config.discord.shard_range().map_err(|message| StartError {
            code: exit::CONFIG,
            message,
        })?;
        let task = tokio::spawn(async move {
            match range {
                // serenity reads the range's end as the last shard id, inclusive.
                Some((first, last, total)) => d.client.start_shard_range(first..last, total).await,
                None => d.client.start().await,
            }
        });
        discord = Some((shards, task));
    }
    let mut slack = None;
    if let Some((app, bot)) = &tokens.slack {
        slack = Some(
            deputy::chat::slack::Slack::start(
                config.slack.api_url.as_deref(),
                config.slack.connections.unwrap_or(2).max(1),
                app.expose_secret(),
                bot.expose_secret(),
                runner.clone(),
            )
            .await
            .map_err(|e| failed("slack", &e))?,
        );
    }
    runner.dispatcher().resume_background().await;
    let discord_ended = async {
        match &mut discord {
            Some((_, task)) => task.await,
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        _ = terminate.recv() => Ok(()),
        ended = discord_ended => match ended {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(failed("discord", &e)),
            Err(e) => Err(failed("discord", &e)),
        },
    };
    tracing::info!("shutting down: finishing replies in flight");
    if let Some((shards, _)) = discord.as_ref() {
        shards.shutdown_all().await;
    }
    if let Some(slack) = slack {
        slack.stop().await;
    }
    runner.drain().await;
    result
}

/// Installs the metrics recorder before anything is counted, when a listener can serve them.
fn install_metrics(config: &deputy::config::Config) {
    if config.web.listen.is_some() {
        deputy::metrics::install();
    }
}

async fn serve(
    config: &deputy::config::Config,
    packs: Vec<deputy::pack::Pack>,
    templates: deputy::pack::Templates,
    brain: deputy::brain::Brain,
    front: Front,
    extra_roots: &[String],
) -> Result<(), StartError> {
    for line in app::unfilled_groups(config, &packs) {
        tracing::warn!("{line}");
    }
    let dispatcher = app::dispatcher(config, packs, templates, brain, extra_roots)?;
    tracing::info!(
        services = dispatcher.packs.len(),
        key_id = %dispatcher.brain.key_id(),
        "deputy started"
    );
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let runner = Runner::with_limits(dispatcher.clone(), &config.limits);
    let web_chat = if config.web.chat.enabled {
        let chat =
            deputy::chat::web::WebChat::start(config, runner.clone()).map_err(|message| {
                StartError {
                    code: exit::CONFIG,
                    message,
                }
            })?;
        if let Some(identity) = &config.web.identity {
            tracing::info!(
                "web chat on /chat: {}",
                deputy::chat::web::identity::Identity::describe(identity)
            );
        }
        Some(chat)
    } else {
        None
    };
    let web = match &config.web.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| StartError {
                    code: exit::RUNTIME,
                    message: format!("[web] listen = {addr:?}: cannot listen there: {e}"),
                })?;
            tracing::info!(addr = %addr, "web listener started");
            let mut app = deputy::web::router(dispatcher.clone());
            if let Some(chat) = &web_chat {
                app = app.merge(chat.router());
            }
            Some(tokio::spawn(deputy::web::serve_router(
                listener,
                app,
                async {
                    let _ = web_stopped.await;
                },
            )))
        }
        None => None,
    };
    let result = match front {
        Front::Shell(options) => shell::run(runner, options).await.map_err(|e| StartError {
            code: exit::RUNTIME,
            message: format!("shell: {e}"),
        }),
        Front::Chat(tokens) => chat(config, runner, tokens).await,
    };
    if let Some(chat) = &web_chat {
        chat.stop();
    }
    let _ = stop_web.send(());
    if let Some(web) = web {
        let _ = web.await;
    }
    result
}

/// `packs new NAME`: a skeleton that `deputy check` accepts as it is.
fn new_pack(config: &deputy::config::Config, name: &str) -> Result<(), StartError> {
    let valid = !name.is_empty()
        && name.len() <= 32
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        return Err(StartError {
            code: exit::USAGE,
            message: format!(
                "{name:?} is not a pack name: use lowercase letters, digits and '-', starting \
                 with a letter (at most 32)"
            ),
        });
    }
    let dir = config.packs_dir();
    let file = dir.join(format!("{name}.toml"));
    let failed = |e: std::io::Error| StartError {
        code: exit::RUNTIME,
        message: format!("cannot write {}: {e}", file.display()),
    };
    std::fs::create_dir_all(&dir).map_err(failed)?;
    // create_new: an existing pack is never overwritten.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&file)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                StartError {
                    code: exit::USAGE,
                    message: format!("{} exists already; nothing was written", file.display()),
                }
            } else {
                failed(e)
            }
        })?;
    f.write_all(deputy::pack::builtin::skeleton(name).as_bytes())
        .map_err(failed)?;
    println!(
        "wrote {}: edit it, then `deputy check` validates it",
        file.display()
    );
    Ok(())
}

fn check(config: &deputy::config::Config) -> Result<(), StartError> {
    let (packs, _) = app::load_packs(config)?;
    println!("config: ok (packs from {})", config.packs_dir().display());
    println!("{}", config.limits_summary());
    let env: Vec<String> = app::environment_read(config, &packs)
        .into_iter()
        .map(|(name, set)| format!("{name} ({})", if set { "set" } else { "not set" }))
        .collect();
    println!("environment read: {}", env.join(", "));
    for line in app::missing_consumers(&packs)
        .into_iter()
        .chain(app::unfilled_groups(config, &packs))
    {
        println!("warning: {line}");
    }
    for p in &packs {
        println!(
            "service {} ({}) from {}: {} command(s), base_url {}",
            p.service.name,
            p.service.prefixes.join(", "),
            p.file.display(),
            p.commands.len(),
            p.service.base_url
        );
    }
    let tokens = chat_tokens(config)?;
    for (name, on) in [
        ("discord", tokens.discord.is_some()),
        ("slack", tokens.slack.is_some()),
    ] {
        if on {
            println!("{name}: enabled, token(s) present");
        }
    }
    if config.web.chat.enabled {
        if let Some(identity) = &config.web.identity {
            deputy::chat::web::identity::Identity::from_config(config, reqwest::Client::new())
                .map_err(|message| StartError {
                    code: exit::CONFIG,
                    message,
                })?;
            println!(
                "web chat: enabled on /chat, {}",
                deputy::chat::web::identity::Identity::describe(identity)
            );
        }
    }
    let (sealer, _) = app::sealer(config, false)?;
    deputy::brain::check_canary(&config.brain_dir(), &sealer).map_err(|e| StartError {
        code: exit::SECRET,
        message: e.to_string(),
    })?;
    println!(
        "secret: ok (key id {}; brain {})",
        sealer.key_id(),
        config.brain_dir().display()
    );
    Ok(())
}
