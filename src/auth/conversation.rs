//! The conversation a sign-in belongs to: where to tell the user how it ended when the answer
//! comes from outside their message (a browser callback, a background poll).

use serde::{Deserialize, Serialize};

use crate::brain::Owner;
use crate::message::Message;

/// Where to answer a user outside the message that asked (the browser callback).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Conversation {
    pub adapter: String,
    pub workspace: String,
    pub user: String,
    pub user_name: String,
    pub channel: String,
    pub direct: bool,
    #[serde(default)]
    pub thread: Option<String>,
}

impl Conversation {
    pub fn of(msg: &Message) -> Conversation {
        Conversation {
            adapter: msg.adapter.clone(),
            workspace: msg.workspace.clone(),
            user: msg.user.clone(),
            user_name: msg.user_name.clone(),
            channel: msg.channel.clone(),
            direct: msg.direct,
            thread: msg.thread.clone(),
        }
    }

    /// A message standing for this conversation, to address replies with.
    pub fn message(&self) -> Message {
        Message {
            adapter: self.adapter.clone(),
            workspace: self.workspace.clone(),
            user: self.user.clone(),
            user_name: self.user_name.clone(),
            channel: self.channel.clone(),
            id: String::new(),
            thread: self.thread.clone(),
            direct: self.direct,
            text: String::new(),
        }
    }

    pub fn owner(&self) -> Owner {
        Owner {
            adapter: self.adapter.clone(),
            workspace: self.workspace.clone(),
            user: self.user.clone(),
        }
    }
}
