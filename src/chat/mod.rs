//! The chat adapters (one file each: [`shell`], [`discord`], [`slack`], [`web`]) and the [`Runner`] that
//! handles every message in its own task while keeping one user's messages in one conversation
//! in the order they were sent. The vocabulary they speak is in [`crate::message`]; clicks
//! and form submissions go through the same queues ([`Runner::interact`]), so a confirmed
//! command runs in order with the user's other messages.

pub mod discord;
pub mod shell;
pub mod slack;
pub mod split;
pub mod web;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::task::TaskTracker;

use crate::dispatch::Dispatcher;
pub use crate::message::{
    Adapter, Button, ButtonStyle, Deleted, Interaction, Message, Reply, SecretForm, Surfaces,
    Visibility,
};

/// A message, or (with an interaction) who clicked or submitted and where.
type Job = (Message, Option<Interaction>, Arc<dyn Adapter>);
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
        let key = (
            message.adapter.clone(),
            message.workspace.clone(),
            message.channel.clone(),
            message.user.clone(),
        );
        let mut queues = self.queues.lock().expect("queue map poisoned");
        let job = (message, interaction, adapter);
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
            let (message, interaction, adapter) = job;
            if let Some(interaction) = interaction {
                metrics::counter!("deputy_interactions_total", "adapter" => message.adapter.clone())
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
            metrics::counter!("deputy_messages_total", "adapter" => message.adapter.clone())
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
