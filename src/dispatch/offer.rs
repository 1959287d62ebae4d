//! Buttons and forms deputy has offered and not yet seen used: each is a sealed brain record
//! under an unguessable token, bound to the user it was offered to, expiring, and taken at
//! most once (an atomic marker in the brain, so two replicas or a replayed click cannot both
//! use it). Callback ids are `dp1.<token>.<action>`.
//!
//! A user has at most one open question and one open key form or button: a new one replaces
//! the last (whose buttons then answer "expired"), so unanswered offers cannot pile up in a
//! brain without native expiry.

use serde::{Deserialize, Serialize};

use crate::auth::conversation::Conversation;
use crate::auth::pending;
use crate::brain::{Brain, KeyPath};
use crate::message::{Interaction, Message};

/// Every callback id deputy makes starts with this (the `1` is the id format's version).
pub const ID_PREFIX: &str = "dp1.";

/// What was offered.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub enum Offered {
    /// The "Link your account" button: a click opens the key form for `service`.
    LinkButton { service: String },
    /// The private key form for `service`.
    KeyForm { service: String },
    /// Confirm / Cancel of a pack command, with the words given after its name.
    Confirm {
        service: String,
        command: String,
        words: Vec<String>,
    },
}

/// What a callback id asks for: its last part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// The "Link your account" button.
    Link,
    /// The key form, submitted.
    Key,
    /// Confirm.
    Yes,
    /// Cancel.
    No,
}

impl Action {
    fn word(self) -> &'static str {
        match self {
            Action::Link => "link",
            Action::Key => "key",
            Action::Yes => "yes",
            Action::No => "no",
        }
    }

    fn parse(word: &str) -> Option<Action> {
        [Action::Link, Action::Key, Action::Yes, Action::No]
            .into_iter()
            .find(|a| a.word() == word)
    }

    /// Whether this action fits what was offered and how it came back (a click or a form).
    fn fits(self, what: &Offered, interaction: &Interaction) -> bool {
        let form = matches!(interaction, Interaction::Form { .. });
        match (self, what) {
            (Action::Link, Offered::LinkButton { .. }) => !form,
            (Action::Key, Offered::KeyForm { .. }) => form,
            (Action::Yes | Action::No, Offered::Confirm { .. }) => !form,
            _ => false,
        }
    }
}

/// One offer as the brain keeps it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Offer {
    /// Who it was offered to, and where.
    pub to: Conversation,
    pub what: Offered,
    pub expires_at: u64,
}

/// The callback id of `action` on the offer `token`.
pub fn callback_id(token: &str, action: Action) -> String {
    format!("{ID_PREFIX}{token}.{}", action.word())
}

/// A callback id split into its token and action, if it is one of deputy's.
pub fn parse_id(id: &str) -> Option<(&str, Action)> {
    let rest = id.strip_prefix(ID_PREFIX)?;
    let (token, action) = rest.split_once('.')?;
    let ok = token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit());
    Some((token, Action::parse(action)?)).filter(|_| ok)
}

/// Why an interaction was refused; nothing was used or stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Not an id deputy made, or one that does not fit what was offered.
    Unknown,
    /// Expired, already used, or never offered.
    Gone,
    /// Offered to someone else.
    NotYours,
}

fn offer_key(token: &str) -> KeyPath {
    KeyPath::of("offer", &[token])
}

/// Where a typed `yes` in a conversation finds its confirmation (adapters without buttons).
fn typed_key(msg: &Message) -> KeyPath {
    KeyPath::of(
        "typed",
        &[&msg.adapter, &msg.workspace, &msg.channel, &msg.user],
    )
}

/// Where the token of the user's open offer of this sort is kept.
fn latest_key(to: &Message, what: &Offered) -> KeyPath {
    let sort = match what {
        Offered::Confirm { .. } => "confirm",
        Offered::LinkButton { .. } | Offered::KeyForm { .. } => "key",
    };
    KeyPath::of("offers", &[&to.adapter, &to.workspace, &to.user, sort])
}

/// Records an offer to the user of `to` for `ttl_secs`, replacing their open one of the same
/// sort; returns its token.
pub async fn make(
    brain: &Brain,
    to: &Message,
    what: Offered,
    ttl_secs: u64,
) -> anyhow::Result<String> {
    // 128 random bits: not guessable, and the record is bound to the user besides.
    let token = format!("{:032x}", rand::random::<u128>());
    let latest = latest_key(to, &what);
    if let Some(old) = brain.get::<String>(&latest).await? {
        brain.delete(&offer_key(&old)).await?;
    }
    let offer = Offer {
        to: Conversation::of(to),
        what,
        expires_at: pending::expiry(ttl_secs),
    };
    brain
        .put_expiring(&offer_key(&token), &offer, offer.expires_at)
        .await?;
    brain
        .put_expiring(&latest, &token, offer.expires_at)
        .await?;
    Ok(token)
}

/// Makes `token` the confirmation a typed `yes` or `no` from the user of `to`, in that
/// conversation, answers.
pub async fn expect_typed(
    brain: &Brain,
    to: &Message,
    token: &str,
    ttl_secs: u64,
) -> anyhow::Result<()> {
    brain
        .put_expiring(&typed_key(to), &token, pending::expiry(ttl_secs))
        .await
}

/// The confirmation waiting for a typed answer from this user in this conversation.
pub async fn typed(brain: &Brain, from: &Message) -> anyhow::Result<Option<String>> {
    brain.get(&typed_key(from)).await
}

/// The live offer an interaction from `from` names, without using it up: `None` unless it is
/// one deputy made, offered to that user, not yet used or expired, and fits the interaction.
pub async fn peek(
    brain: &Brain,
    from: &Message,
    interaction: &Interaction,
) -> anyhow::Result<Option<Offer>> {
    let Some((token, action)) = parse_id(interaction.id()) else {
        return Ok(None);
    };
    let Some(offer) = brain.get::<Offer>(&offer_key(token)).await? else {
        return Ok(None);
    };
    let to = &offer.to;
    let mine =
        (&to.adapter, &to.workspace, &to.user) == (&from.adapter, &from.workspace, &from.user);
    let live = action.fits(&offer.what, interaction) && !pending::expired(offer.expires_at);
    Ok((mine && live).then_some(offer))
}

/// Checks an interaction from `from` against what was offered and, if it holds, uses the
/// offer up: an offer is taken once, by the user it was offered to, before it expires.
pub async fn take(
    brain: &Brain,
    from: &Message,
    interaction: &Interaction,
) -> anyhow::Result<Result<(Offer, Action), Refusal>> {
    let Some((token, action)) = parse_id(interaction.id()) else {
        return Ok(Err(Refusal::Unknown));
    };
    let key = offer_key(token);
    let Some(offer) = brain.get::<Offer>(&key).await? else {
        return Ok(Err(Refusal::Gone));
    };
    if !action.fits(&offer.what, interaction) {
        return Ok(Err(Refusal::Unknown));
    }
    let to = &offer.to;
    // Someone else's click leaves the offer for its owner.
    if (&to.adapter, &to.workspace, &to.user) != (&from.adapter, &from.workspace, &from.user) {
        return Ok(Err(Refusal::NotYours));
    }
    if pending::expired(offer.expires_at) {
        brain.delete(&key).await?;
        return Ok(Err(Refusal::Gone));
    }
    // The marker outlives the offer, so a replay after the record is gone is still refused.
    let ttl = offer.expires_at.saturating_sub(crate::auth::now_secs()) + 60;
    if !brain.first_sighting(&format!("offer/{token}"), ttl).await? {
        return Ok(Err(Refusal::Gone));
    }
    brain.delete(&key).await?;
    if matches!(offer.what, Offered::Confirm { .. })
        && typed(brain, &to.message()).await?.as_deref() == Some(token)
    {
        brain.delete(&typed_key(&to.message())).await?;
    }
    Ok(Ok((offer, action)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_strangers_do_not_parse() {
        let token = format!("{:032x}", 7u128);
        let id = callback_id(&token, Action::Yes);
        assert!(id.len() <= crate::message::MAX_CALLBACK_ID);
        assert_eq!(parse_id(&id), Some((token.as_str(), Action::Yes)));
        assert_eq!(parse_id("dp1.abc.yes"), None);
        assert_eq!(parse_id(&format!("dp1.{token}.maybe")), None);
        assert_eq!(parse_id(&format!("dp2.{token}.yes")), None);
        assert_eq!(parse_id("deputy-link"), None);
    }
}
