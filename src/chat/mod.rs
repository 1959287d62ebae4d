//! What adapters and the dispatcher exchange: a [`Message`] in, [`Reply`]s out, and the
//! [`Runner`] that handles every message in its own task while keeping one user's messages in
//! one conversation in the order they were sent.

pub mod discord;
pub mod shell;
pub mod slack;
pub mod split;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::brain::Owner;
use crate::dispatch::Dispatcher;

/// One chat message as an adapter saw it.
#[derive(Debug, Clone)]
pub struct Message {
    /// `shell`, `discord`, `slack`: the namespace of user ids.
    pub adapter: String,
    /// Discord: `global` (a user id is one person everywhere); Slack: the team id.
    pub workspace: String,
    pub user: String,
    /// A display name, for replies and templates; never used for identity.
    pub user_name: String,
    pub channel: String,
    /// The platform's id of this message (for deletion and threading).
    pub id: String,
    /// The thread replies belong in, where the platform keeps threads apart from channels
    /// (Slack's `thread_ts`); `None` elsewhere.
    pub thread: Option<String>,
    /// A direct message: only the user and the bot can read it. Secrets are accepted only here.
    pub direct: bool,
    pub text: String,
}

impl Message {
    pub fn owner(&self) -> Owner {
        Owner {
            adapter: self.adapter.clone(),
            workspace: self.workspace.clone(),
            user: self.user.clone(),
        }
    }
}

/// Who may see a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Visibility {
    /// Wherever the message was: the channel, or the DM.
    Conversation,
    /// Only the user who asked (an ephemeral message, or a DM).
    OnlyUser,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub visibility: Visibility,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            visibility: Visibility::Conversation,
        }
    }

    pub fn private(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            visibility: Visibility::OnlyUser,
        }
    }
}

/// What happened when the dispatcher asked to delete a user's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deleted {
    Yes,
    /// The platform refused (missing permission, a DM on Discord): the reason, for the reply.
    Refused(String),
    /// The platform has no such thing (the shell, Slack for user messages).
    Unsupported,
}

/// A chat platform as the dispatcher sees it: it can send replies and try to delete messages.
#[async_trait::async_trait]
pub trait Adapter: Send + Sync + 'static {
    async fn send(&self, to: &Message, reply: Reply) -> anyhow::Result<()>;
    async fn delete(&self, message: &Message) -> Deleted;
    /// Shows that the bot is working on `message` (a typing indicator) until the returned
    /// guard is dropped. Most adapters show nothing.
    async fn busy(&self, _message: &Message) -> Option<Box<dyn Send>> {
        None
    }
}

type Job = (Message, Arc<dyn Adapter>);
type ConversationKey = (String, String, String, String);

/// Runs the dispatcher on incoming messages: one task per conversation queue, so a slow
/// upstream for one user delays no one else, and one user's messages stay in order.
pub struct Runner {
    dispatcher: Arc<Dispatcher>,
    queues: Mutex<HashMap<ConversationKey, mpsc::UnboundedSender<Job>>>,
    tasks: TaskTracker,
}

impl Runner {
    pub fn new(dispatcher: Arc<Dispatcher>) -> Arc<Runner> {
        Arc::new(Runner {
            dispatcher,
            queues: Mutex::new(HashMap::new()),
            tasks: TaskTracker::new(),
        })
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Queues a message; returns at once.
    pub fn submit(self: &Arc<Self>, message: Message, adapter: Arc<dyn Adapter>) {
        let key = (
            message.adapter.clone(),
            message.workspace.clone(),
            message.channel.clone(),
            message.user.clone(),
        );
        let mut queues = self.queues.lock().expect("queue map poisoned");
        let job = (message, adapter);
        let job = match queues.get(&key) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tx.send(job).expect("receiver is alive");
        queues.insert(key.clone(), tx);
        drop(queues);
        let this = Arc::clone(self);
        self.tasks.spawn(async move { this.work(key, rx).await });
    }

    async fn work(&self, key: ConversationKey, mut rx: mpsc::UnboundedReceiver<Job>) {
        loop {
            let job = match rx.try_recv() {
                Ok(job) => job,
                Err(_) => {
                    // Leave only when nothing is queued, checked under the lock `submit` takes,
                    // so no message is left behind in a queue nobody reads.
                    let mut queues = self.queues.lock().expect("queue map poisoned");
                    match rx.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            queues.remove(&key);
                            return;
                        }
                    }
                }
            };
            let (message, adapter) = job;
            // Only for messages meant for the bot: chatter in a channel shows no typing.
            let addressed = self
                .dispatcher
                .addressing
                .strip(&message.text, message.direct)
                .is_some();
            let _busy = if addressed {
                adapter.busy(&message).await
            } else {
                None
            };
            for reply in self.dispatcher.handle(&message, adapter.as_ref()).await {
                if let Err(e) = adapter.send(&message, reply).await {
                    tracing::warn!(adapter = %message.adapter, error = %e, "could not send a reply");
                }
            }
        }
    }

    /// Waits until every submitted message has been answered.
    pub async fn drain(&self) {
        self.tasks.close();
        self.tasks.wait().await;
        self.tasks.reopen();
    }
}
