//! Built-in commands for API-key services: `setkey` (direct messages only), `logout`, `whoami`,
//! and the refusal of a key pasted in public.

use crate::brain::KeyPath;
use crate::chat::{Adapter, Deleted, Message, Reply};
use crate::dispatch::{reply, Dispatcher, Handled};
use crate::pack::{Args, AuthKind, Pack};

use super::{now_secs, Credential, Secret};

/// The reply to a command that needs a credential the user has not linked.
pub fn link_first(pack: &Pack) -> Reply {
    let s = &pack.service;
    Reply::new(match s.auth {
        AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_) => format!(
            "You haven't linked your {} account yet. Run `{} setupauth` and I'll send you a sign-in link.",
            s.name, s.prefixes[0]
        ),
        _ => format!(
            "You haven't linked your {} account yet. In a direct message to me, run: `{} setkey <{}>`",
            s.name,
            s.prefixes[0],
            s.auth.hint()
        ),
    })
}

/// `setkey` in a channel: nothing is stored, the message is deleted where the platform
/// allows, and the user is told the key is exposed.
pub async fn refuse_public(
    msg: &Message,
    pack: Option<&Pack>,
    adapter: &dyn Adapter,
) -> Vec<Reply> {
    let deleted = adapter.delete(msg).await;
    let what = pack.map_or("that".to_string(), |p| format!("your {}", p.service.name));
    let how = pack.map_or("`<service> setkey …`".to_string(), |p| {
        format!(
            "`{} setkey <{}>`",
            p.service.prefixes[0],
            p.service.auth.hint()
        )
    });
    let deletion = match deleted {
        Deleted::Yes => "I deleted your message, but others may already have seen it.".to_string(),
        Deleted::Refused(why) => {
            tracing::warn!(adapter = %msg.adapter, channel = %msg.channel, reason = %why, "could not delete a message holding a secret");
            format!("I could not delete your message ({why}): delete it yourself.")
        }
        Deleted::Unsupported => "I cannot delete messages here: delete it yourself.".to_string(),
    };
    vec![Reply::private(format!(
        "I did not store {what} key: keys are accepted only in a direct message. \
         Everyone in this channel may have seen it, so treat it as exposed: rotate it now, \
         then send me {how} in a direct message. {deletion}"
    ))]
}

/// `setkey <secret>` in a direct message.
pub async fn setkey(d: &Dispatcher, msg: &Message, pack: &Pack, args: &[String]) -> Handled {
    let s = &pack.service;
    let usage = format!("`{} setkey <{}>`", s.prefixes[0], s.auth.hint());
    if !s.auth.is_api_key() {
        return Ok(not_apikey(pack));
    }
    let secret = match args {
        [one] => one,
        [] => return reply(format!("Send the key after the command: {usage}")),
        _ => {
            return reply(format!(
                "That is more than one word; a key has no spaces. Usage: {usage}"
            ))
        }
    };
    if let AuthKind::Basic { .. } = s.auth {
        let ok = secret
            .split_once(':')
            .is_some_and(|(u, t)| !u.is_empty() && !t.is_empty());
        if !ok {
            return reply(format!(
                "{} expects your user name and token joined by a colon. Usage: {usage}",
                s.name
            ));
        }
    }
    if secret.chars().any(char::is_control) {
        return reply(format!(
            "That key has characters a key cannot have. Usage: {usage}"
        ));
    }
    let credential = Credential::ApiKey {
        secret: Secret::new(secret.as_str()),
        linked_at: now_secs(),
    };
    // Acknowledged only once the brain has made the write durable.
    d.brain
        .put(&KeyPath::credential(&msg.owner(), &s.name), &credential)
        .await?;
    tracing::info!(adapter = %msg.adapter, user = %msg.user, service = %s.name, "credential stored");
    let next = if s.whoami.is_some() {
        format!(" Check it with `{} whoami`.", s.prefixes[0])
    } else {
        String::new()
    };
    reply(format!(
        "Stored your {} key (encrypted); commands now run as you.{next}",
        s.name
    ))
}

/// `logout`: forget the user's credential (and any sign-in in progress).
pub async fn logout(d: &Dispatcher, msg: &Message, pack: &Pack) -> Handled {
    let s = &pack.service;
    if !s.auth.needs_credential() {
        return reply(format!(
            "{} needs no account, so there is nothing to forget.",
            s.name
        ));
    }
    let owner = msg.owner();
    let key = KeyPath::credential(&owner, &s.name);
    d.stop_poll(&key);
    // Any sign-in in progress goes too (an OAuth 1.0a flow also has a token index).
    let flow_key = super::oauth1::flow_key(&owner, &s.name);
    if let Ok(Some(flow)) = d.brain.get::<super::oauth1::PendingFlow>(&flow_key).await {
        d.brain
            .delete(&super::oauth1::token_key(&s.name, &flow.request_token))
            .await?;
    }
    d.brain.delete(&flow_key).await?;
    let revoked = match d.brain.get::<Credential>(&key).await? {
        Some(c @ Credential::OAuth2 { .. }) => {
            Some(super::oauth2::revoke(d, &owner, pack, &c).await)
        }
        _ => None,
    };
    let existed = d.brain.delete(&key).await?;
    if let Some(revoked) = revoked {
        return reply(match revoked {
            Ok(true) => format!("Revoked your {} token at {} and deleted it here.", s.name, s.name),
            Ok(false) => format!(
                "Deleted your {} token here. {} declares no way to revoke it, so it stays valid there until it expires or you revoke it yourself.",
                s.name, s.name
            ),
            Err(why) => {
                tracing::warn!(service = %s.name, reason = %why, "token revocation failed");
                format!(
                    "Deleted your {} token here, but could not revoke it at {} ({why}): revoke it there yourself.",
                    s.name, s.name
                )
            }
        });
    }
    let what = if s.auth.is_api_key() {
        "key"
    } else {
        "authorization"
    };
    reply(if existed {
        format!(
            "Deleted your {} {what} from my brain. It stays valid at {} until you revoke it there.",
            s.name, s.name
        )
    } else {
        format!("You had no {} {what} linked; nothing to do.", s.name)
    })
}

/// `whoami`: linked or not, and who the service says the user is when the pack declares how.
pub async fn whoami(d: &Dispatcher, msg: &Message, pack: &Pack) -> Handled {
    let s = &pack.service;
    if !s.auth.needs_credential() {
        return reply(format!("{} needs no account.", s.name));
    }
    let Some(credential) = d.credential(msg, pack).await? else {
        return Ok(vec![link_first(pack)]);
    };
    match (&s.whoami, &credential) {
        (Some(request), _) => d.run(msg, pack, "whoami", request, Args::new(), &[]).await,
        (None, Credential::OAuth1 { .. }) => reply(super::oauth1::linked_as(pack, &credential)),
        (None, Credential::OAuth2 { scopes, .. }) => reply(format!(
            "You are linked to {} (scopes: {}).",
            s.name,
            if scopes.is_empty() {
                "none".to_string()
            } else {
                scopes.join(", ")
            }
        )),
        (None, _) => reply(format!(
            "You are linked to {} with a key stored {}.",
            s.name,
            ago(credential.linked_at())
        )),
    }
}

/// `setkey` on a service that signs in with a link.
pub fn not_apikey(pack: &Pack) -> Vec<Reply> {
    let s = &pack.service;
    vec![Reply::new(match &s.auth {
        AuthKind::None => format!("{} needs no key.", s.name),
        _ => format!(
            "{} links your account with a sign-in link, not a pasted key: run `{} setupauth`.",
            s.name, s.prefixes[0]
        ),
    })]
}

/// `setupauth` / `auth` on a service that takes a pasted key.
pub fn not_oauth(pack: &Pack) -> Vec<Reply> {
    let s = &pack.service;
    vec![Reply::new(match &s.auth {
        AuthKind::None => format!("{} needs no account.", s.name),
        kind => format!(
            "{} uses a key rather than a sign-in link. In a direct message to me, run: `{} setkey <{}>`",
            s.name,
            s.prefixes[0],
            kind.hint()
        ),
    })]
}

fn ago(then: u64) -> String {
    let secs = now_secs().saturating_sub(then);
    match secs {
        0..=119 => "just now".into(),
        120..=7199 => format!("{} minutes ago", secs / 60),
        7200..=172_799 => format!("{} hours ago", secs / 3600),
        _ => format!("{} days ago", secs / 86_400),
    }
}
