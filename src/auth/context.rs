//! What an auth kind works with: the brain, the upstream client, the operator's `[auth]`
//! settings, deputy's public URL, the packs, and the outbox to reach a user outside a reply.
//! The dispatcher builds one and hands it to every kind, so no kind needs the dispatcher.

use std::sync::Arc;

use crate::brain::{Brain, KeyPath, Owner};
use crate::config::AuthConfig;
use crate::message::Outbox;
use crate::pack::Pack;
use crate::upstream::Upstream;

use super::credential::Credential;

/// Cheap to clone: background work (a device-flow poll) takes its own copy.
#[derive(Clone)]
pub struct AuthContext {
    pub brain: Brain,
    pub upstream: Upstream,
    /// Flow lifetime and the lockout after wrong PINs or codes.
    pub config: AuthConfig,
    /// deputy's public URL: OAuth callbacks come back here instead of a PIN.
    pub public_url: Option<String>,
    pub outbox: Outbox,
    pub packs: Arc<Vec<Pack>>,
}

impl AuthContext {
    /// The pack of the service named `service` (callbacks and resumed polls know only the name).
    pub fn pack(&self, service: &str) -> Option<&Pack> {
        self.packs.iter().find(|p| p.service.name == service)
    }

    /// The user's stored credential for a service, if any.
    pub async fn credential(
        &self,
        owner: &Owner,
        service: &str,
    ) -> anyhow::Result<Option<Credential>> {
        self.brain.get(&KeyPath::credential(owner, service)).await
    }

    /// Stores the user's credential; returns once the brain made it durable.
    pub async fn store(
        &self,
        owner: &Owner,
        service: &str,
        credential: &Credential,
    ) -> anyhow::Result<()> {
        self.brain
            .put(&KeyPath::credential(owner, service), credential)
            .await?;
        metrics::counter!("deputy_signins_completed_total", "kind" => credential.kind_name())
            .increment(1);
        Ok(())
    }

    /// Forgets the user's credential; `true` if there was one.
    pub async fn forget(&self, owner: &Owner, service: &str) -> anyhow::Result<bool> {
        self.brain
            .delete(&KeyPath::credential(owner, service))
            .await
    }
}
