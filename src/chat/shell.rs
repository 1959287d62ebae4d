//! The shell adapter: chat with the bot in a terminal or through a pipe. One message per
//! line; every reply is printed and flushed as soon as it exists; at end of input it waits for
//! replies still in flight. Lines starting with `/` control the shell itself.
//!
//! Through a pipe the shell reads no faster than it answers: at most [`IN_FLIGHT`] messages
//! are being handled at once, so a burst of any size costs the same memory. Replies go to one
//! writer thread, so no async worker ever blocks on a full pipe or a stdout lock.
//!
//! A burst is cheap because nothing wakes another thread per message: the reader stops at
//! [`IN_FLIGHT`] and is woken once half of them are answered, and replies collect in a buffer
//! the writer takes whole: at once when at most [`STEADY`] messages are in flight, else when
//! [`BATCH`] bytes have collected or [`LINGER`] has passed.
//!
//! A steady flow is quick because the reading loop runs on a runtime worker: the worker the
//! poller wakes for a line reads it and runs its task, with no hand-off to another thread
//! until the reply goes to the writer.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::AsyncBufReadExt;
use tokio::sync::{mpsc, oneshot, Notify};

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
/// Replies the writer lets collect before it writes them out.
pub const BATCH: usize = 32 * 1024;
/// The longest a reply waits in the buffer while a burst is being answered.
pub const LINGER: Duration = Duration::from_micros(200);
/// While at most this many messages are in flight (the one being answered included), a reply
/// is written at once. At a steady rate a few are always in flight, and lingering for more
/// would add up to [`LINGER`] to every answer; a burst fills [`IN_FLIGHT`] and batches.
pub const STEADY: usize = 16;

/// Where replies go: the stdout writer thread, or rustyline's printer so the prompt survives.
enum Output {
    Stdout(Arc<Writer>),
    Printer(Mutex<Box<dyn rustyline::ExternalPrinter + Send>>),
}

/// Messages of a pipe being handled, and the reader waiting for room.
#[derive(Default)]
struct Flow {
    in_flight: AtomicUsize,
    room: Notify,
}

impl Flow {
    /// Waits until another message may be read.
    async fn admit(&self) {
        while self.in_flight.load(Ordering::Acquire) >= IN_FLIGHT {
            self.room.notified().await;
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
    }

    /// One message answered; returns how many are left in flight.
    fn done(&self) -> usize {
        let left = self.in_flight.fetch_sub(1, Ordering::AcqRel) - 1;
        // Wake the reader once per half window, not once per message.
        if left == IN_FLIGHT / 2 {
            self.room.notify_one();
        }
        left
    }
}

/// Replies waiting for the writer thread, and what it is asked to do.
#[derive(Default)]
struct Pending {
    bytes: Vec<u8>,
    /// Write out now instead of lingering (nothing else is in flight, or enough collected).
    now: bool,
    /// Answered once everything before them is written.
    synced: Vec<oneshot::Sender<()>>,
}

/// The stdout writer: one thread that takes the collected replies whole. It lives as long as
/// the process; the shell syncs with it before exiting.
struct Writer {
    pending: Mutex<Pending>,
    ready: Condvar,
}

impl Writer {
    fn start() -> Arc<Writer> {
        let w = Arc::new(Writer {
            pending: Mutex::new(Pending::default()),
            ready: Condvar::new(),
        });
        let writer = w.clone();
        std::thread::spawn(move || writer.run());
        w
    }

    /// Adds one line, `parts` joined; `now` to write it without lingering for more.
    fn line(&self, parts: &[&str], now: bool) {
        let mut p = self.pending.lock().expect("writer poisoned");
        let was_empty = p.bytes.is_empty();
        for part in parts {
            p.bytes.extend_from_slice(part.as_bytes());
        }
        p.bytes.push(b'\n');
        if now || p.bytes.len() >= BATCH {
            p.now = true;
            self.ready.notify_one();
        } else if was_empty {
            self.ready.notify_one();
        }
    }

    /// Asks for what collected to be written now.
    fn flush(&self) {
        let mut p = self.pending.lock().expect("writer poisoned");
        if !p.bytes.is_empty() {
            p.now = true;
            self.ready.notify_one();
        }
    }

    /// Waits until everything added so far is written out.
    async fn sync(&self) {
        let (done, written) = oneshot::channel();
        {
            let mut p = self.pending.lock().expect("writer poisoned");
            p.synced.push(done);
            p.now = true;
            self.ready.notify_one();
        }
        let _ = written.await;
    }

    fn run(&self) {
        let mut out = std::io::stdout().lock();
        let mut spare = Vec::with_capacity(BATCH);
        loop {
            let synced = {
                let mut p = self.pending.lock().expect("writer poisoned");
                while p.bytes.is_empty() && p.synced.is_empty() {
                    p = self.ready.wait(p).expect("writer poisoned");
                }
                if !p.now {
                    // More replies are on their way: let them join this write.
                    p = self
                        .ready
                        .wait_timeout_while(p, LINGER, |p| !p.now)
                        .expect("writer poisoned")
                        .0;
                }
                p.now = false;
                std::mem::swap(&mut p.bytes, &mut spare);
                std::mem::take(&mut p.synced)
            };
            // A closed stdout (the reader went away) is not worth a panic.
            let _ = out.write_all(&spare);
            let _ = out.flush();
            spare.clear();
            for done in synced {
                let _ = done.send(());
            }
        }
    }
}

struct ShellAdapter {
    output: Output,
    show_user: bool,
    flow: Arc<Flow>,
}

impl ShellAdapter {
    /// Prints one line, `parts` joined. Both outputs only append to a buffer, so this never
    /// waits.
    fn print(&self, parts: &[&str]) {
        match &self.output {
            Output::Stdout(w) => {
                w.line(parts, self.flow.in_flight.load(Ordering::Acquire) <= STEADY)
            }
            Output::Printer(p) => {
                let _ = p
                    .lock()
                    .expect("printer poisoned")
                    .print(format!("{}\n", parts.concat()));
            }
        }
    }

    /// Prints a reply to `to`, written straight into the output buffer piece by piece.
    fn show(&self, to: &Message, reply: &Reply) {
        let (open, who, close) = if self.show_user {
            ("[", to.user.as_str(), "] ")
        } else {
            ("", "", "")
        };
        match (reply.visibility, to.direct) {
            (Visibility::OnlyUser, false) => self.print(&[
                open,
                who,
                close,
                "(only ",
                &to.user,
                " can see this) ",
                &reply.text,
            ]),
            _ => self.print(&[open, who, close, &reply.text]),
        }
    }

    /// Returns once everything printed so far is written out.
    async fn sync(&self) {
        if let Output::Stdout(w) = &self.output {
            w.sync().await;
        }
    }
}

/// The shell adapter as one message sees it: counted in flight until the runner has sent
/// its replies and dropped it.
struct Tracked {
    inner: Arc<ShellAdapter>,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        if self.inner.flow.done() == 0 {
            if let Output::Stdout(w) = &self.inner.output {
                w.flush();
            }
        }
    }
}

#[async_trait::async_trait]
impl Adapter for Tracked {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        self.inner.show(to, &reply);
        Ok(())
    }

    async fn delete(&self, message: &Message) -> Deleted {
        self.inner.delete(message).await
    }
}

#[async_trait::async_trait]
impl Adapter for ShellAdapter {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()> {
        self.show(to, &reply);
        Ok(())
    }

    async fn delete(&self, _message: &Message) -> Deleted {
        Deleted::Unsupported
    }
}

/// Where lines come from: the pipe itself, read in this task (no hand-off per line), or
/// rustyline's thread in a terminal.
enum Input {
    Pipe(tokio::io::BufReader<Box<dyn tokio::io::AsyncRead + Send + Unpin>>),
    Terminal(mpsc::Receiver<String>),
}

/// Standard input read on the runtime's own poller (epoll) when it is a pipe, so the worker
/// that handles a line is the one woken when it arrives. `tokio::io::stdin()` reads on the
/// blocking pool instead: a hand-off between threads for every read, which at a steady rate
/// is every message. A file or `/dev/null` cannot be polled, and keeps `tokio::io::stdin()`.
struct PolledStdin {
    pipe: tokio::net::unix::pipe::Receiver,
    /// The flags before tokio made the pipe non-blocking, put back on drop: the open pipe is
    /// shared with whoever else holds it.
    flags: nix::fcntl::OFlag,
}

impl PolledStdin {
    fn new() -> Option<PolledStdin> {
        use nix::fcntl::{fcntl, FcntlArg, OFlag};
        use std::os::fd::{AsFd, AsRawFd};
        let file = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned().ok()?);
        let flags = OFlag::from_bits_truncate(fcntl(file.as_raw_fd(), FcntlArg::F_GETFL).ok()?);
        // Checks that it is a pipe open for reading, and makes it non-blocking.
        let pipe = tokio::net::unix::pipe::Receiver::from_file(file).ok()?;
        Some(PolledStdin { pipe, flags })
    }
}

impl Drop for PolledStdin {
    fn drop(&mut self) {
        use std::os::fd::AsRawFd;
        let fd = self.pipe.as_raw_fd();
        let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(self.flags));
    }
}

impl tokio::io::AsyncRead for PolledStdin {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.pipe).poll_read(cx, buf)
    }
}

impl Input {
    async fn next(&mut self) -> Option<String> {
        match self {
            Input::Pipe(r) => read_line(r, MAX_LINE).await.ok().flatten(),
            Input::Terminal(rx) => rx.recv().await,
        }
    }
}

/// Reads messages until end of input (or `/quit`), then waits for every reply.
///
/// The session runs as a task of its own: on a runtime worker, which the poller wakes for
/// input itself, rather than on the thread that blocks on the runtime, which a worker would
/// have to wake for every line.
pub async fn run(runner: Arc<Runner>, options: ShellOptions) -> anyhow::Result<()> {
    match tokio::spawn(session(runner, options)).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(anyhow::anyhow!("the shell stopped: {e}")),
    }
}

async fn session(runner: Arc<Runner>, options: ShellOptions) -> anyhow::Result<()> {
    let flow = Arc::new(Flow::default());
    let adapter: Arc<ShellAdapter>;
    let mut input;
    // Only a pipe needs the limit: a person types slower than any answer.
    let pipe = !std::io::stdin().is_terminal();
    if !pipe {
        let (lines_tx, lines) = mpsc::channel::<String>(16);
        let mut editor = rustyline::DefaultEditor::new()?;
        let printer = editor.create_external_printer()?;
        adapter = Arc::new(ShellAdapter {
            output: Output::Printer(Mutex::new(Box::new(printer))),
            show_user: options.show_user,
            flow: flow.clone(),
        });
        adapter.print(&[&format!(
            "deputy shell: talking as {}, in a {}. Try `help`. ({SHELL_HELP})",
            options.user,
            if options.public {
                "shared channel"
            } else {
                "direct message"
            }
        )]);
        // rustyline blocks: it gets a thread of its own.
        std::thread::spawn(move || {
            while let Ok(line) = editor.readline("you> ") {
                let _ = editor.add_history_entry(line.as_str());
                if lines_tx.blocking_send(line).is_err() {
                    break;
                }
            }
        });
        input = Input::Terminal(lines);
    } else {
        adapter = Arc::new(ShellAdapter {
            output: Output::Stdout(Writer::start()),
            show_user: options.show_user,
            flow: flow.clone(),
        });
        let stdin: Box<dyn tokio::io::AsyncRead + Send + Unpin> = match PolledStdin::new() {
            Some(polled) => Box::new(polled),
            None => Box::new(tokio::io::stdin()),
        };
        input = Input::Pipe(tokio::io::BufReader::with_capacity(64 * 1024, stdin));
    }

    runner
        .dispatcher()
        .register_adapter(ADAPTER, adapter.clone() as Arc<dyn Adapter>);
    runner.dispatcher().resume_background().await;
    let mut state = options;
    let counter = AtomicU64::new(0);
    while let Some(line) = input.next().await {
        if line == TOO_LONG {
            adapter.print(&[&format!(
                "That message is longer than {} KiB, so I did not read it; nothing was done.",
                MAX_LINE / 1024
            )]);
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
                _ => adapter.print(&[SHELL_HELP]),
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
        if pipe {
            flow.admit().await;
        } else {
            flow.in_flight.fetch_add(1, Ordering::AcqRel);
        }
        let tracked = Arc::new(Tracked {
            inner: adapter.clone(),
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
