//! What adapters, the dispatcher and the auth kinds exchange: a [`Message`] in, [`Reply`]s out,
//! the [`Adapter`] trait a chat platform implements, the [`Outbox`] that reaches a user outside
//! a reply, and the split between a user's error (a reply) and an [`Internal`] one (logged).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::brain::Owner;

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

/// The running adapters by name, to tell a user something outside a reply (an OAuth callback,
/// a finished device-flow poll).
#[derive(Clone, Default)]
pub struct Outbox {
    adapters: Arc<RwLock<HashMap<String, Arc<dyn Adapter>>>>,
}

impl Outbox {
    /// Makes an adapter reachable for messages outside a reply.
    pub fn register(&self, name: &str, adapter: Arc<dyn Adapter>) {
        self.adapters
            .write()
            .expect("adapter map poisoned")
            .insert(name.to_string(), adapter);
    }

    /// Sends `reply` to the conversation `to` through its adapter, if that adapter runs.
    pub async fn notify(&self, to: &Message, reply: Reply) {
        let adapter = self
            .adapters
            .read()
            .expect("adapter map poisoned")
            .get(&to.adapter)
            .cloned();
        match adapter {
            Some(a) => {
                if let Err(e) = a.send(to, reply).await {
                    tracing::warn!(adapter = %to.adapter, error = %e, "could not notify a user");
                }
            }
            None => {
                tracing::warn!(adapter = %to.adapter, "no running adapter to notify a user through")
            }
        }
    }
}

/// Something went wrong on deputy's side: logged with a reference, never shown in full.
#[derive(Debug)]
pub struct Internal(pub anyhow::Error);

impl<E: Into<anyhow::Error>> From<E> for Internal {
    fn from(e: E) -> Internal {
        Internal(e.into())
    }
}

/// The replies to one message, or an internal error.
pub type Handled = Result<Vec<Reply>, Internal>;

/// One reply in the conversation.
pub fn reply(text: impl Into<String>) -> Handled {
    Ok(vec![Reply::new(text)])
}
