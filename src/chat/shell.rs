//! The shell adapter: chat with the bot in a terminal or through a pipe. One message per
//! line; every reply is printed and flushed as soon as it exists; at end of input it waits for
//! replies still in flight. Lines starting with `/` control the shell itself.
//!
//! Through a pipe the shell reads no faster than it answers: at most [`IN_FLIGHT`] messages
//! are being handled at once, so a burst of any size costs the same memory. Replies go to one
//! writer thread that buffers stdout and flushes whenever it has caught up, so no async worker
//! ever blocks on a full pipe or a stdout lock.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

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

/// The longest message the shell reads; the rest of a longer line is skipped unread into
/// memory (chat platforms cap messages too: Slack at 40,000 characters).
pub const MAX_LINE: usize = 64 * 1024;

/// What stands for a line that was too long: the dispatcher never sees it.
const TOO_LONG: &str = "\u{0}too long";

/// Reads one line of at most `max` bytes. A longer line is consumed to its end without
/// being kept, and comes back as [`TOO_LONG`], so a 100 MB line costs no memory.
async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    max: usize,
) -> std::io::Result<Option<String>> {
    let mut line = Vec::new();
    let mut overflow = false;
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(if line.is_empty() && !overflow {
                None
            } else if overflow {
                Some(TOO_LONG.into())
            } else {
                Some(String::from_utf8_lossy(&line).into_owned())
            });
        }
        let (chunk, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (&buf[..i], Some(i + 1)),
            None => (buf, None),
        };
        if !overflow {
            if line.len() + chunk.len() > max {
                overflow = true;
                line = Vec::new();
            } else {
                line.extend_from_slice(chunk);
            }
        }
        let used = done.unwrap_or(buf.len());
        r.consume(used);
        if done.is_some() {
            if overflow {
                return Ok(Some(TOO_LONG.into()));
            }
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            return Ok(Some(String::from_utf8_lossy(&line).into_owned()));
        }
    }
}

/// Messages being handled at once when reading a pipe.
pub const IN_FLIGHT: usize = 1024;

/// Where replies go: the stdout writer thread, or rustyline's printer so the prompt survives.
enum Output {
    Stdout(mpsc::Sender<Out>),
    Printer(Mutex<Box<dyn rustyline::ExternalPrinter + Send>>),
}

enum Out {
    Line(String),
    /// Flush everything before this, then answer.
    Sync(oneshot::Sender<()>),
}

/// The stdout writer: buffered, flushed each time the queue runs dry.
fn stdout_writer() -> mpsc::Sender<Out> {
    let (tx, mut rx) = mpsc::channel::<Out>(IN_FLIGHT);
    std::thread::spawn(move || {
        let mut out = std::io::BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
        while let Some(first) = rx.blocking_recv() {
            let mut next = Some(first);
            while let Some(item) = next {
                match item {
                    // A closed stdout (the reader went away) is not worth a panic.
                    Out::Line(text) => {
                        let _ = out.write_all(text.as_bytes());
                        let _ = out.write_all(b"\n");
                    }
                    Out::Sync(done) => {
                        let _ = out.flush();
                        let _ = done.send(());
                    }
                }
                next = rx.try_recv().ok();
            }
            let _ = out.flush();
        }
    });
    tx
}

struct ShellAdapter {
    output: Output,
    show_user: bool,
}

impl ShellAdapter {
    async fn print(&self, text: String) {
        match &self.output {
            Output::Stdout(tx) => {
                let _ = tx.send(Out::Line(text)).await;
            }
            Output::Printer(p) => {
                let _ = p
                    .lock()
                    .expect("printer poisoned")
                    .print(format!("{text}\n"));
            }
        }
    }

    /// Returns once everything printed so far is written out.
    async fn sync(&self) {
        if let Output::Stdout(tx) = &self.output {
            let (done, written) = oneshot::channel();
            if tx.send(Out::Sync(done)).await.is_ok() {
                let _ = written.await;
            }
        }
    }
}

/// The shell adapter as one message sees it: holding the message's in-flight permit until
/// the runner has sent its replies and dropped it.
struct Tracked {
    inner: Arc<ShellAdapter>,
    _permit: Option<OwnedSemaphorePermit>,
}

#[async_trait::async_trait]
impl Adapter for Tracked {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        self.inner.send(to, reply).await
    }

    async fn delete(&self, message: &Message) -> Deleted {
        self.inner.delete(message).await
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
            self.print(format!("[{}] {text}", to.user)).await;
        } else {
            self.print(text).await;
        }
        Ok(())
    }

    async fn delete(&self, _message: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

/// Reads messages until end of input (or `/quit`), then waits for every reply.
pub async fn run(runner: Arc<Runner>, options: ShellOptions) -> anyhow::Result<()> {
    let (lines_tx, mut lines) = mpsc::channel::<String>(IN_FLIGHT);
    let adapter: Arc<ShellAdapter>;
    // Only a pipe needs the limit: a person types slower than any answer.
    let mut limit = None;
    if std::io::stdin().is_terminal() {
        let mut editor = rustyline::DefaultEditor::new()?;
        let printer = editor.create_external_printer()?;
        adapter = Arc::new(ShellAdapter {
            output: Output::Printer(Mutex::new(Box::new(printer))),
            show_user: options.show_user,
        });
        adapter
            .print(format!(
                "deputy shell: talking as {}, in a {}. Try `help`. ({SHELL_HELP})",
                options.user,
                if options.public {
                    "shared channel"
                } else {
                    "direct message"
                }
            ))
            .await;
        // rustyline blocks: it gets a thread of its own.
        std::thread::spawn(move || {
            while let Ok(line) = editor.readline("you> ") {
                let _ = editor.add_history_entry(line.as_str());
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
    } else {
        adapter = Arc::new(ShellAdapter {
            output: Output::Stdout(stdout_writer()),
            show_user: options.show_user,
        });
        limit = Some(Arc::new(Semaphore::new(IN_FLIGHT)));
        tokio::spawn(async move {
            let mut stdin = tokio::io::BufReader::with_capacity(64 * 1024, tokio::io::stdin());
            while let Ok(Some(line)) = read_line(&mut stdin, MAX_LINE).await {
                if lines_tx.send(line).await.is_err() {
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
        if line == TOO_LONG {
            adapter
                .print(format!(
                    "That message is longer than {} KiB, so I did not read it; nothing was done.",
                    MAX_LINE / 1024
                ))
                .await;
            continue;
        }
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
                _ => adapter.print(SHELL_HELP.to_string()).await,
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
        let permit = match &limit {
            Some(l) => Some(l.clone().acquire_owned().await?),
            None => None,
        };
        let tracked = Arc::new(Tracked {
            inner: adapter.clone(),
            _permit: permit,
        });
        runner.submit(message, tracked);
    }
    runner.drain().await;
    adapter.sync().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn long_lines_are_skipped_whole_and_short_ones_kept() {
        let mut input: Vec<u8> = b"first\r\n".to_vec();
        input.extend(std::iter::repeat(b'x').take(1000));
        input.extend(b"\nlast");
        let mut r = tokio::io::BufReader::with_capacity(16, &input[..]);
        assert_eq!(
            read_line(&mut r, 100).await.unwrap().as_deref(),
            Some("first")
        );
        assert_eq!(
            read_line(&mut r, 100).await.unwrap().as_deref(),
            Some(TOO_LONG)
        );
        assert_eq!(
            read_line(&mut r, 100).await.unwrap().as_deref(),
            Some("last")
        );
        assert_eq!(read_line(&mut r, 100).await.unwrap(), None);
    }
}
