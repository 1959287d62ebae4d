//! The `deputy` binary: a thin clap front over [`deputy::app`].
#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;

use deputy::app::{self, exit, SecretSource, StartError};
use deputy::chat::shell::{self, ShellOptions};
use deputy::chat::Runner;

/// A chat-ops bot that calls external APIs as the chat user who asks.
///
/// Exit codes: 0 ok, 1 runtime error, 2 usage error, 3 invalid config or command pack,
/// 4 missing, malformed or wrong DEPUTY_SECRET.
#[derive(Parser)]
#[command(version, propagate_version = true)]
struct Cli {
    /// The operator's config file. Without this flag and without ./deputy.toml, built-in
    /// defaults are used (packs from ./commands, brain in ./deputy-data).
    #[arg(long, short, global = true, value_name = "PATH")]
    config: Option<PathBuf>,

    #[command(subcommand)]
    command: Command,
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
    },
    /// Run the chat adapters the config enables (for now: the shell). Needs DEPUTY_SECRET.
    Run,
    /// Validate the config, the command packs and DEPUTY_SECRET, print what is loaded, and
    /// exit non-zero on any problem. Writes nothing.
    Check,
    /// Print a new random secret for DEPUTY_SECRET.
    Keygen,
    /// Brain administration.
    Brain {
        #[command(subcommand)]
        command: BrainCommand,
    },
}

#[derive(Subcommand)]
enum BrainCommand {
    /// Re-seal every record with DEPUTY_SECRET after a rotation (the old secret goes in
    /// DEPUTY_SECRET_PREVIOUS), then move the canary to the new key.
    Reseal,
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
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_level)),
        )
        .init();
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
        Command::Shell { user, public } => {
            let user = user
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "you".into());
            serve(&config, true, ShellOptions { user, public }).await
        }
        Command::Run => {
            let user = std::env::var("USER").unwrap_or_else(|_| "operator".into());
            serve(
                &config,
                false,
                ShellOptions {
                    user,
                    public: false,
                },
            )
            .await
        }
        Command::Brain {
            command: BrainCommand::Reseal,
        } => {
            let (sealer, _) = app::sealer(&config, false)?;
            let brain = app::open_brain(&config, sealer)?;
            let n = brain.reseal().await.map_err(|e| StartError {
                code: exit::RUNTIME,
                message: format!("re-sealing failed part-way (run it again): {e:#}"),
            })?;
            brain
                .rewrite_canary(&config.brain_dir())
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
            Ok(())
        }
    }
}

async fn serve(
    config: &deputy::config::Config,
    allow_dev: bool,
    options: ShellOptions,
) -> Result<(), StartError> {
    let (packs, templates) = app::load_packs(config)?;
    let (sealer, source) = app::sealer(config, allow_dev)?;
    if let SecretSource::DevFile { path, created } = &source {
        eprintln!(
            "deputy: WARNING: DEPUTY_SECRET is not set; {} the development key {}. Anyone who \
             can read that directory can read the stored credentials: use it only to try deputy.",
            if *created { "created" } else { "using" },
            path.display()
        );
    }
    let brain = app::open_brain(config, sealer)?;
    let dispatcher = app::dispatcher(config, packs, templates, brain)?;
    tracing::info!(
        services = dispatcher.packs.len(),
        key_id = %dispatcher.brain.key_id(),
        "deputy started"
    );
    let dispatcher = Arc::new(dispatcher);
    let (stop_web, web_stopped) = tokio::sync::oneshot::channel::<()>();
    let web = match &config.web.listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr.as_str())
                .await
                .map_err(|e| StartError {
                    code: exit::RUNTIME,
                    message: format!("[web] listen = {addr:?}: cannot listen there: {e}"),
                })?;
            tracing::info!(addr = %addr, "web listener started");
            let d = dispatcher.clone();
            Some(tokio::spawn(deputy::web::serve(listener, d, async {
                let _ = web_stopped.await;
            })))
        }
        None => None,
    };
    let runner = Runner::new(dispatcher);
    let result = shell::run(runner, options).await.map_err(|e| StartError {
        code: exit::RUNTIME,
        message: format!("shell: {e}"),
    });
    let _ = stop_web.send(());
    if let Some(web) = web {
        let _ = web.await;
    }
    result
}

fn check(config: &deputy::config::Config) -> Result<(), StartError> {
    let (packs, _) = app::load_packs(config)?;
    println!("config: ok (packs from {})", config.packs_dir().display());
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
