//! What adapters, the dispatcher and the auth kinds exchange: a [`Message`] in, [`Reply`]s out,
//! the [`Adapter`] trait a chat platform implements, the [`Outbox`] that reaches a user outside
//! a reply, and the split between a user's error (a reply) and an [`Internal`] one (logged).
//!
//! Besides text, a reply may carry [`Button`]s or ask the adapter to open a private
//! [`SecretForm`]; what the user does with them comes back as an [`Interaction`]. An adapter
//! says what it can show with [`Adapter::surfaces`]; the dispatcher writes a text-only reply
//! (type `yes` to confirm) for one that shows neither.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::brain::Owner;
use crate::secret::Secret;

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
    /// Buttons under the text; a click comes back as [`Interaction::Button`] with the button's
    /// id. Set only for adapters whose [`Surfaces::buttons`] is true, except link buttons
    /// ([`Button::url`]), which an adapter without buttons ignores.
    pub buttons: Vec<Button>,
    /// Instead of a message: open this private form for the user (a Slack modal, a Discord
    /// modal), in answer to the interaction that brought the message. Only set when
    /// [`Surfaces::forms`] is true for that message; `text` is then what an adapter posts if
    /// opening the form fails. Boxed: replies travel in `Result`s, and most have no form.
    pub form: Option<Box<SecretForm>>,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Reply {
        Reply {
            text: text.into(),
            visibility: Visibility::Conversation,
            buttons: Vec::new(),
            form: None,
        }
    }

    pub fn private(text: impl Into<String>) -> Reply {
        Reply {
            visibility: Visibility::OnlyUser,
            ..Reply::new(text)
        }
    }

    /// The same reply with buttons under its text.
    pub fn with_buttons(mut self, buttons: Vec<Button>) -> Reply {
        self.buttons = buttons;
        self
    }
}

/// How a button looks: the platform's primary (blue/green) or danger (red) style.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonStyle {
    Primary,
    Danger,
    /// The platform's plain button (Cancel).
    Secondary,
}

/// A button under a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Button {
    /// The callback id to hand back in [`Interaction::Button`]: opaque, unguessable, at most
    /// [`MAX_CALLBACK_ID`] ASCII characters (Slack `action_id`, Discord `custom_id`).
    /// [`LINK_BUTTON_ID`] for a link button.
    pub id: String,
    pub label: String,
    pub style: ButtonStyle,
    /// A link button: opens this URL in the browser and hands nothing back (a sign-in link,
    /// also written in the reply's text, so adapters without buttons may ignore it).
    pub url: Option<String>,
}

/// The id of every link button. Slack still reports clicks on them (`block_actions`); the
/// dispatcher answers those with nothing.
pub const LINK_BUTTON_ID: &str = "deputy-link";

impl Button {
    /// A button whose click comes back as an interaction with `id`.
    pub fn new(id: impl Into<String>, label: impl Into<String>, style: ButtonStyle) -> Button {
        Button {
            id: id.into(),
            label: label.into(),
            style,
            url: None,
        }
    }

    /// A button that opens `url`.
    pub fn link(label: impl Into<String>, url: impl Into<String>) -> Button {
        Button {
            id: LINK_BUTTON_ID.into(),
            label: label.into(),
            style: ButtonStyle::Primary,
            url: Some(url.into()),
        }
    }
}

/// A private form with one password-style input: a secret typed here never becomes a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretForm {
    /// The callback id to hand back in [`Interaction::Form`] (Slack `callback_id`, Discord
    /// modal `custom_id`); the same shape as [`Button::id`].
    pub id: String,
    /// The form's title (at most 24 characters: Slack's limit for a modal title).
    pub title: String,
    /// The input's label (at most 45 characters: Discord's limit).
    pub label: String,
    /// The placeholder inside the input (what to paste: `user:token`).
    pub hint: String,
}

/// The longest callback id deputy makes (Discord allows 100 characters, Slack 255).
pub const MAX_CALLBACK_ID: usize = 64;

/// What an adapter can show for replies to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Surfaces {
    /// Buttons under a reply, whose clicks come back as interactions.
    pub buttons: bool,
    /// A [`SecretForm`] can be opened now, in answer to this message (Slack: it came with a
    /// `trigger_id`; Discord: it is an interaction not yet answered).
    pub forms: bool,
}

/// What a user did with a button or form deputy offered, as the adapter received it.
#[derive(Debug, Clone)]
pub enum Interaction {
    /// A click on the button with this id.
    Button { id: String },
    /// A submitted form: its id and the one value typed into it.
    Form { id: String, value: Secret },
}

impl Interaction {
    /// The callback id the adapter received.
    pub fn id(&self) -> &str {
        match self {
            Interaction::Button { id } | Interaction::Form { id, .. } => id,
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
    /// What replies to `message` may carry besides text. Text only unless the adapter says so.
    fn surfaces(&self, _message: &Message) -> Surfaces {
        Surfaces::default()
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
