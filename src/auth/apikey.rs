//! API keys a user pastes with `setkey` in a direct message: `basic` (`user:token`), `bearer`
//! and a custom `header`. The key is applied as a header marked sensitive.

use base64::Engine as _;

use crate::message::{reply, Handled, Internal, Message, Reply};
use crate::pack::{AuthKind, Pack};
use crate::upstream::Auth;

use super::context::AuthContext;
use super::credential::{now_secs, Credential};
use super::replies;
use super::scheme::{AuthScheme, Rejected};
use crate::secret::Secret;

pub struct ApiKey;

#[async_trait::async_trait]
impl AuthScheme for ApiKey {
    fn name(&self) -> &'static str {
        "apikey"
    }

    fn handles(&self, kind: &AuthKind) -> bool {
        kind.is_api_key()
    }

    fn help(&self, pack: &Pack) -> String {
        let p = &pack.service.prefixes[0];
        format!(
            "Your account:\n\
             `{p} setkey <{}>` — link it (in a direct message only; the key is stored encrypted)\n\
             `{p} setkey` — on Slack: a private form to paste the key into, never a message\n\
             `{p} whoami` — whether you are linked, and as whom\n\
             `{p} logout` — forget your key\n",
            pack.service.auth.hint()
        )
    }

    fn link_first(&self, pack: &Pack) -> Reply {
        replies::link_first_key(pack)
    }

    /// `setkey <secret>` in a direct message.
    async fn setkey(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        args: &[String],
    ) -> Handled {
        match args {
            [one] => {
                self.store_key(cx, msg, pack, &Secret::new(one.as_str()))
                    .await
            }
            [] => reply(format!("Send the key after the command: {}", usage(pack))),
            _ => reply(format!(
                "That is more than one word; a key has no spaces. Usage: {}",
                usage(pack)
            )),
        }
    }

    fn takes_key(&self) -> bool {
        true
    }

    fn check_key(&self, pack: &Pack, key: &str) -> Result<(), String> {
        let s = &pack.service;
        if key.is_empty() {
            return Err("That key is empty.".into());
        }
        if let AuthKind::Basic { .. } = s.auth {
            let ok = key
                .split_once(':')
                .is_some_and(|(u, t)| !u.is_empty() && !t.is_empty());
            if !ok {
                return Err(format!(
                    "{} expects your user name and token joined by a colon.",
                    s.name
                ));
            }
        }
        if key.chars().any(char::is_control) {
            return Err("That key has characters a key cannot have.".into());
        }
        Ok(())
    }

    /// A key from `setkey <key>` or from a private form: checked, stored, acknowledged.
    async fn store_key(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        key: &Secret,
    ) -> Handled {
        let s = &pack.service;
        // A form keeps what was pasted around the key (a trailing newline); a word has none.
        let secret = key.expose().trim();
        if let Err(why) = self.check_key(pack, secret) {
            return reply(format!("{why} Usage: {}", usage(pack)));
        }
        let credential = Credential::ApiKey {
            secret: Secret::new(secret),
            linked_at: now_secs(),
        };
        // Acknowledged only once the brain has made the write durable.
        cx.store(&msg.owner(), &s.name, &credential).await?;
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

    async fn logout(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled {
        let existed = cx.forget(&msg.owner(), &pack.service.name).await?;
        Ok(vec![replies::forgotten(pack, "key", existed)])
    }

    fn linked_as(&self, pack: &Pack, credential: &Credential) -> String {
        format!(
            "You are linked to {} with a key stored {}.",
            pack.service.name,
            ago(credential.linked_at())
        )
    }

    fn apply<'a>(&self, pack: &'a Pack, credential: &'a Credential) -> Result<Auth<'a>, Reply> {
        let Credential::ApiKey { secret, .. } = credential else {
            return Ok(Auth::Anonymous);
        };
        let (header, value) = match &pack.service.auth {
            AuthKind::Basic { .. } => {
                let encoded = base64::engine::general_purpose::STANDARD.encode(secret.expose());
                ("authorization".to_string(), format!("Basic {encoded}"))
            }
            AuthKind::Header { header, prefix, .. } => {
                (header.clone(), format!("{prefix}{}", secret.expose()))
            }
            _ => (
                "authorization".to_string(),
                format!("Bearer {}", secret.expose()),
            ),
        };
        Ok(Auth::Key { header, value })
    }

    async fn rejected(
        &self,
        _cx: &AuthContext,
        _msg: &Message,
        pack: &Pack,
        _credential: Option<&Credential>,
        status: u16,
        _retried: bool,
    ) -> Result<Rejected, Internal> {
        let s = &pack.service;
        Ok(Rejected::Reply(Reply::new(format!(
            "Your {} credential was rejected (HTTP {status}). Run `{} setkey <{}>` in a direct message to me to link a fresh one.",
            s.name, s.prefixes[0], s.auth.hint()
        ))))
    }
}

/// `` `jenkins setkey <user:token>` ``.
fn usage(pack: &Pack) -> String {
    let s = &pack.service;
    format!("`{} setkey <{}>`", s.prefixes[0], s.auth.hint())
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
