//! Replies every auth kind shares: "link your account first", a key pasted in public, a
//! built-in that does not fit the service's kind, and what `logout` forgot.

use crate::message::{Adapter, Button, Deleted, Message, Outbox, Reply};
use crate::pack::Pack;

/// A sign-in link, only for the user: the text (which holds the link, for adapters without
/// buttons) and a "Sign in to <service>" button opening the first URL in it.
pub fn sign_in(text: String, service: &str) -> Reply {
    let url = text
        .split_whitespace()
        .find(|w| w.starts_with("https://") || w.starts_with("http://"))
        .map(str::to_string);
    let reply = Reply::private(text);
    match url {
        Some(url) => reply.with_buttons(vec![Button::link(format!("Sign in to {service}"), url)]),
        None => reply,
    }
}

/// A command needs an account the user has not linked, on a service that signs in with a link.
pub fn link_first_signin(pack: &Pack) -> Reply {
    let s = &pack.service;
    Reply::new(format!(
        "You haven't linked your {} account yet. Run `{} setupauth` and I'll send you a sign-in link.",
        s.name, s.prefixes[0]
    ))
}

/// A command needs a key the user has not linked.
pub fn link_first_key(pack: &Pack) -> Reply {
    let s = &pack.service;
    // Joined, not formatted: every command of a user who has not linked yet answers this,
    // and `format!` costs several times a plain copy.
    Reply::new(
        [
            "You haven't linked your ",
            &s.name,
            " account yet. In a direct message to me, run: `",
            &s.prefixes[0],
            " setkey <",
            s.auth.hint(),
            ">`",
        ]
        .concat(),
    )
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

/// `setkey` on a service that signs in with a link.
pub fn not_apikey(pack: &Pack) -> Vec<Reply> {
    let s = &pack.service;
    vec![Reply::new(format!(
        "{} links your account with a sign-in link, not a pasted key: run `{} setupauth`.",
        s.name, s.prefixes[0]
    ))]
}

/// `setupauth` / `auth` on a service that takes a pasted key.
pub fn not_oauth(pack: &Pack) -> Vec<Reply> {
    let s = &pack.service;
    vec![Reply::new(format!(
        "{} uses a key rather than a sign-in link. In a direct message to me, run: `{} setkey <{}>`",
        s.name,
        s.prefixes[0],
        s.auth.hint()
    ))]
}

/// `logout` of a credential that cannot be revoked from here: `what` is `key` or
/// `authorization`; `existed` whether there was one to forget.
pub fn forgotten(pack: &Pack, what: &str, existed: bool) -> Reply {
    let s = &pack.service;
    Reply::new(if existed {
        format!(
            "Deleted your {} {what} from my brain. It stays valid at {} until you revoke it there.",
            s.name, s.name
        )
    } else {
        format!("You had no {} {what} linked; nothing to do.", s.name)
    })
}

/// The user declined on the provider's page: told in chat, and the callback page's outcome.
pub async fn declined(outbox: &Outbox, to: &Message, service: &str) -> (bool, String) {
    outbox
        .notify(
            to,
            Reply::private(format!(
                "You declined the {service} sign-in; nothing was linked."
            )),
        )
        .await;
    (false, "You declined; nothing was linked.".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sign_in_reply_buttons_the_first_link_in_its_text() {
        let r = sign_in(
            "To link your x account, open https://x.test/auth?t=1 , then type the PIN.".into(),
            "x",
        );
        assert_eq!(r.visibility, crate::message::Visibility::OnlyUser);
        assert_eq!(r.buttons.len(), 1);
        assert_eq!(r.buttons[0].url.as_deref(), Some("https://x.test/auth?t=1"));
        assert_eq!(r.buttons[0].label, "Sign in to x");
        assert!(sign_in("no link here".into(), "x").buttons.is_empty());
    }
}
