//! The shell adapter: chat with the bot in a terminal or through a pipe. One message per
//! line; every reply is printed and flushed as soon as it exists; at end of input it waits for
//! replies still in flight. Lines starting with `/` control the shell itself.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncBufReadExt;
use tokio::sync::mpsc;

use super::{Adapter, Deleted, Message, Reply, Runner, Visibility};

pub const ADAPTER: &str = "shell";
pub const WORKSPACE: &str = "local";

#[derive(Debug, Clone)]
pub struct ShellOptions {
    /// Who is talking.
    pub user: String,
    /// Messages go to a shared channel instead of a direct message.
    pub public: bool,
    /// Prefix every reply with `[user] `, for scripts that talk as several users at once.
    pub show_user: bool,
}

const SHELL_HELP: &str = "shell commands: /user NAME (talk as NAME), /public (a shared channel), \
/dm (a direct message), /quit";

/// Where replies go: plain stdout, or rustyline's printer so the prompt survives.
enum Output {
    Stdout,
    Printer(Mutex<Box<dyn rustyline::ExternalPrinter + Send>>),
}

struct ShellAdapter {
    output: Output,
    show_user: bool,
}

impl ShellAdapter {
    fn print(&self, text: &str) {
        match &self.output {
            Output::Stdout => {
                let mut out = std::io::stdout().lock();
                // A closed stdout (the reader went away) is not worth a panic.
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Output::Printer(p) => {
                let _ = p
                    .lock()
                    .expect("printer poisoned")
                    .print(format!("{text}\n"));
            }
        }
    }
}

#[async_trait::async_trait]
impl Adapter for ShellAdapter {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        let text = match (reply.visibility, to.direct) {
            (Visibility::OnlyUser, false) => {
                format!("(only {} can see this) {}", to.user, reply.text)
            }
            _ => reply.text,
        };
        if self.show_user {
            self.print(&format!("[{}] {text}", to.user));
        } else {
            self.print(&text);
        }
        Ok(())
    }

    async fn delete(&self, _message: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

/// Reads messages until end of input (or `/quit`), then waits for every reply.
pub async fn run(runner: Arc<Runner>, options: ShellOptions) -> anyhow::Result<()> {
    let (lines_tx, mut lines) = mpsc::unbounded_channel::<String>();
    let adapter: Arc<ShellAdapter>;
    if std::io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new()?;
        let printer = editor.create_external_printer()?;
        adapter = Arc::new(ShellAdapter {
            output: Output::Printer(Mutex::new(Box::new(printer))),
            show_user: options.show_user,
        });
        adapter.print(&format!(
            "deputy shell: talking as {}, in a {}. Try `help`. ({SHELL_HELP})",
            options.user,
            if options.public {
                "shared channel"
            } else {
                "direct message"
            }
        ));
        // rustyline blocks: it gets a thread of its own.
        std::thread::spawn(move || {
            while let Ok(line) = editor.readline("you> ") {
                let _ = editor.add_history_entry(line.as_str());
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        adapter = Arc::new(ShellAdapter {
            output: Output::Stdout,
            show_user: options.show_user,
        });
        tokio::spawn(async move {
            let mut stdin = tokio::io::BufReader::new(tokio::io::stdin()).lines();
            while let Ok(Some(line)) = stdin.next_line().await {
                if lines_tx.send(line).is_err() {
                    break;
                }
            }
        });
    }

    runner
        .dispatcher()
        .register_adapter(ADAPTER, adapter.clone() as Arc<dyn Adapter>);
    runner.dispatcher().resume_background().await;
    let mut state = options;
    let counter = AtomicU64::new(0);
    while let Some(line) = lines.recv().await {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(cmd) = line.strip_prefix('/') {
            let mut parts = cmd.split_whitespace();
            match (parts.next(), parts.next()) {
                (Some("user"), Some(name)) => state.user = name.to_string(),
                (Some("public"), None) => state.public = true,
                (Some("dm"), None) => state.public = false,
                (Some("quit"), None) => break,
                _ => adapter.print(SHELL_HELP),
            }
            continue;
        }
        let id = counter.fetch_add(1, Ordering::Relaxed);
        let message = Message {
            adapter: ADAPTER.into(),
            workspace: WORKSPACE.into(),
            user: state.user.clone(),
            user_name: state.user.clone(),
            channel: if state.public {
                "#shell".into()
            } else {
                format!("dm:{}", state.user)
            },
            id: id.to_string(),
            thread: None,
            direct: !state.public,
            text: line.to_string(),
        };
        runner.submit(message, adapter.clone());
    }
    runner.drain().await;
    Ok(())
}
