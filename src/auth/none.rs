//! `kind = "none"`: services whose commands run anonymously. Every account command says so.

use crate::message::{reply, Handled, Internal, Message, Reply};
use crate::pack::{AuthKind, Pack};
use crate::upstream::Auth;

use super::context::AuthContext;
use super::credential::Credential;
use super::scheme::{AuthScheme, Rejected, Whoami};

pub struct NoAccount;

fn no_account(pack: &Pack) -> Reply {
    Reply::new(format!("{} needs no account.", pack.service.name))
}

#[async_trait::async_trait]
impl AuthScheme for NoAccount {
    fn name(&self) -> &'static str {
        "none"
    }

    fn handles(&self, kind: &AuthKind) -> bool {
        matches!(kind, AuthKind::None)
    }

    fn needs_credential(&self) -> bool {
        false
    }

    fn help(&self, _pack: &Pack) -> String {
        "No account needed.\n".into()
    }

    fn link_first(&self, pack: &Pack) -> Reply {
        no_account(pack)
    }

    async fn setupauth(&self, _cx: &AuthContext, _msg: &Message, pack: &Pack) -> Handled {
        Ok(vec![no_account(pack)])
    }

    async fn auth(&self, _: &AuthContext, _: &Message, pack: &Pack, _: &[String]) -> Handled {
        Ok(vec![no_account(pack)])
    }

    async fn setkey(&self, _: &AuthContext, _: &Message, pack: &Pack, _: &[String]) -> Handled {
        reply(format!("{} needs no key.", pack.service.name))
    }

    async fn logout(&self, _cx: &AuthContext, _msg: &Message, pack: &Pack) -> Handled {
        reply(format!(
            "{} needs no account, so there is nothing to forget.",
            pack.service.name
        ))
    }

    async fn whoami(&self, _: &AuthContext, _: &Message, pack: &Pack) -> Result<Whoami, Internal> {
        Ok(Whoami::Reply(no_account(pack)))
    }

    fn linked_as(&self, pack: &Pack, _credential: &Credential) -> String {
        no_account(pack).text
    }

    fn apply<'a>(&self, _pack: &'a Pack, _credential: &'a Credential) -> Result<Auth<'a>, Reply> {
        Ok(Auth::Anonymous)
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
        Ok(Rejected::Reply(Reply::new(format!(
            "{} refused the request (HTTP {status}).",
            pack.service.name
        ))))
    }
}
