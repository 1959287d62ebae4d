//! The chat adapters (one file each: [`shell`], [`discord`], [`slack`], [`web`]) and the [`Runner`] that
//! handles every message in its own task while keeping one user's messages in one conversation
//! in the order they were sent. The vocabulary they speak is in [`crate::message`]; clicks
//! and form submissions go through the same queues ([`Runner::interact`]), so a confirmed
//! command runs in order with the user's other messages.
//!
//! Every adapter's messages pass the same door here, before anything is queued: a message
//! longer than `[limits] max_message_bytes` is refused unread, a user over their rate limit
//! is told once and their extra commands are dropped, and each conversation's queue is
//! bounded (`max_queued`), so no flood grows memory.

pub mod discord;
pub mod shell;
pub mod slack;
pub mod split;
pub mod web;

use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::config::LimitsConfig;
use crate::dispatch::limits::{self, RateLimiter, Verdict};
use crate::dispatch::Dispatcher;
pub use crate::message::{
    Adapter, Button, ButtonStyle, Deleted, Interaction, Message, Reply, SecretForm, Surfaces,
    Visibility,
};

/// A message, or (with an interaction) who clicked or submitted and where.
type Job = (Message, Option<Interaction>, Arc<dyn Adapter>);

/// One conversation, its adapter, workspace, channel and user, as one run of bytes: each
/// part after its length, so two conversations never share a key whatever their ids hold.
/// Every message builds one: a single allocation, where the four parts cloned made four.
#[derive(Clone, PartialEq, Eq, Hash)]
struct ConversationKey(Vec<u8>);

impl ConversationKey {
    fn of(message: &Message) -> ConversationKey {
        let parts = [
            &message.adapter,
            &message.workspace,
            &message.channel,
            &message.user,
        ];
        let mut key = Vec::with_capacity(parts.iter().map(|p| 8 + p.len()).sum());
        for part in parts {
            key.extend_from_slice(&(part.len() as u64).to_le_bytes());
            key.extend_from_slice(part.as_bytes());
        }
        ConversationKey(key)
    }
}

/// Runs the dispatcher on incoming messages: one task per conversation queue, so a slow
/// upstream for one user delays no one else, and one user's messages stay in order.
pub struct Runner {
    dispatcher: Arc<Dispatcher>,
    // foldhash: SipHash over the key was a sixth of the work of reading a message.
    queues: Mutex<foldhash::HashMap<ConversationKey, mpsc::Sender<Job>>>,
    tasks: TaskTracker,
    limits: LimitsConfig,
    rate: RateLimiter,
}

impl Runner {
    /// A runner with the default `[limits]`.
    pub fn new(dispatcher: Arc<Dispatcher>) -> Arc<Runner> {
        Runner::with_limits(dispatcher, &LimitsConfig::default())
    }

    pub fn with_limits(dispatcher: Arc<Dispatcher>, limits: &LimitsConfig) -> Arc<Runner> {
        Arc::new(Runner {
            dispatcher,
            queues: Mutex::new(foldhash::HashMap::default()),
            tasks: TaskTracker::new(),
            limits: limits.clone(),
            rate: RateLimiter::new(limits),
        })
    }

    pub fn dispatcher(&self) -> &Arc<Dispatcher> {
        &self.dispatcher
    }

    /// Why `message` is not queued, and what to tell its sender (`None`: nothing, as for
    /// chatter not meant for the bot or a flood already told).
    fn refuse(&self, message: &Message) -> Option<Option<String>> {
        let too_long = message.text.len() > self.limits.max_message_bytes;
        // Only the start is looked at: a mention comes first, and a huge text is not scanned.
        let mut head = self.limits.max_message_bytes.min(message.text.len());
        while !message.text.is_char_boundary(head) {
            head -= 1;
        }
        let addressed = self
            .dispatcher
            .addressing
            .strip(&message.text[..head], message.direct)
            .is_some();
        if too_long {
            tracing::info!(adapter = %message.adapter, user = %message.user, bytes = message.text.len(), "message over the length limit refused");
            return Some(addressed.then(|| limits::too_long(&self.limits)));
        }
        if !addressed {
            return None;
        }
        match self
            .rate
            .check(&message.adapter, &message.workspace, &message.user)
        {
            Verdict::Go => None,
            Verdict::Over { tell, wait } => {
                metrics::counter!("deputy_rate_limited_total", "adapter" => message.adapter.clone())
                    .increment(1);
                if tell {
                    tracing::warn!(adapter = %message.adapter, workspace = %message.workspace, user = %message.user, "user over the rate limit; dropping their commands");
                }
                Some(tell.then(|| limits::over_rate(&self.limits, wait)))
            }
        }
    }

    /// Tells the sender of a message that was not queued why, only to them.
    fn tell(&self, message: Message, adapter: Arc<dyn Adapter>, text: String) {
        self.tasks.spawn(async move {
            if let Err(e) = adapter.send(&message, Reply::private(text)).await {
                tracing::warn!(adapter = %message.adapter, error = %e, "could not send a reply");
            }
        });
    }

    /// Queues a message; returns at once.
    pub fn submit(self: &Arc<Self>, message: Message, adapter: Arc<dyn Adapter>) {
        if let Some(told) = self.refuse(&message) {
            if let Some(text) = told {
                self.tell(message, adapter, text);
            }
            return;
        }
        self.queue(message, None, adapter);
    }

    /// Queues a click or form submission by the user of `from` (a [`Message`] with empty
    /// text standing for who and where); the replies go to `from`. Returns at once.
    pub fn interact(
        self: &Arc<Self>,
        from: Message,
        interaction: Interaction,
        adapter: Arc<dyn Adapter>,
    ) {
        self.queue(from, Some(interaction), adapter);
    }

    fn queue(
        self: &Arc<Self>,
        message: Message,
        interaction: Option<Interaction>,
        adapter: Arc<dyn Adapter>,
    ) {
        let key = ConversationKey::of(&message);
        let mut queues = self.queues.lock().expect("queue map poisoned");
        let job = (message, interaction, adapter);
        let job = match queues.get(&key) {
            Some(tx) => match tx.try_send(job) {
                Ok(()) => return,
                Err(mpsc::error::TrySendError::Full((message, _, adapter))) => {
                    drop(queues);
                    tracing::info!(adapter = %message.adapter, user = %message.user, "conversation queue full; message refused");
                    // Chatter not meant for the bot is dropped without a word.
                    let addressed = self
                        .dispatcher
                        .addressing
                        .strip(&message.text, message.direct)
                        .is_some();
                    if addressed {
                        self.tell(message, adapter, limits::queue_full(&self.limits));
                    }
                    return;
                }
                Err(mpsc::error::TrySendError::Closed(job)) => job,
            },
            None => job,
        };
        let adapter_name = job.0.adapter.clone();
        let (tx, rx) = mpsc::channel(self.limits.max_queued);
        tx.try_send(job)
            .unwrap_or_else(|_| unreachable!("a new queue has room"));
        queues.insert(key.clone(), tx);
        drop(queues);
        let this = Arc::clone(self);
        self.tasks
            .spawn(async move { this.work(key, adapter_name, rx).await });
    }

    /// Answers one conversation's queue, `adapter_name` being its adapter's.
    async fn work(&self, key: ConversationKey, adapter_name: String, mut rx: mpsc::Receiver<Job>) {
        // A conversation is one adapter's, so its counters are looked up once, not per message.
        let mut messages: Option<metrics::Counter> = None;
        let mut interactions: Option<metrics::Counter> = None;
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
            let (message, interaction, adapter) = job;
            if let Some(interaction) = interaction {
                interactions
                    .get_or_insert_with(|| {
                        metrics::counter!("deputy_interactions_total", "adapter" => adapter_name.clone())
                    })
                    .increment(1);
                let replies = self
                    .dispatcher
                    .interact(&message, &interaction, adapter.as_ref())
                    .await;
                for reply in replies {
                    if let Err(e) = adapter.send(&message, reply).await {
                        tracing::warn!(adapter = %message.adapter, error = %e, "could not answer an interaction");
                    }
                }
                continue;
            }
            messages
                .get_or_insert_with(
                    || metrics::counter!("deputy_messages_total", "adapter" => adapter_name.clone()),
                )
                .increment(1);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn message(adapter: &str, workspace: &str, channel: &str, user: &str) -> Message {
        Message {
            adapter: adapter.into(),
            workspace: workspace.into(),
            user: user.into(),
            user_name: user.into(),
            channel: channel.into(),
            id: "1".into(),
            thread: None,
            direct: false,
            text: "hi".into(),
        }
    }

    #[test]
    fn conversations_whose_ids_run_together_keep_apart() {
        let key = |a, w, c, u| ConversationKey::of(&message(a, w, c, u));
        assert!(key("slack", "T1", "C1", "U1") == key("slack", "T1", "C1", "U1"));
        // The same bytes in a row, cut in different places: different conversations.
        assert!(key("a", "bc", "d", "e") != key("ab", "c", "d", "e"));
        assert!(key("web", "x", "dm:u", "1") != key("web", "x", "dm:u1", ""));
        assert!(key("s", "w", "", "c") != key("s", "w", "c", ""));
    }
}
