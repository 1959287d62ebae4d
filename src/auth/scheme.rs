//! [`AuthScheme`]: what one auth kind does. The dispatcher routes every built-in account
//! command (`setupauth`, `auth`, `setkey`, `logout`, `whoami`) and every credential it sends
//! through this trait, and names no kind itself.

use std::collections::HashMap;

use crate::message::{Handled, Internal, Message, Reply};
use crate::pack::{AuthKind, Pack};
use crate::upstream::Auth;

use super::context::AuthContext;
use super::credential::Credential;
use super::replies;

/// What `whoami` found.
pub enum Whoami {
    /// The answer (not linked, linked as whom, or no account needed).
    Reply(Reply),
    /// Linked: ask the service who the user is with the pack's `whoami` request.
    AskService,
}

/// What a credential the service rejected (HTTP 401/403) leads to.
pub enum Rejected {
    /// A fresh credential (refreshed): send the request once more with it.
    Retry(Credential),
    /// Tell the user (and maybe offer a fresh sign-in in the same reply).
    Reply(Reply),
}

/// The page a browser sees after coming back to `/<kind>/<service>/callback`.
pub enum Callback {
    /// HTTP 200.
    Done(String),
    /// HTTP 400: declined, expired, unknown, or not a complete answer.
    Failed(String),
}

/// Result of a step that either goes on with a value or ends with a reply to the user.
pub type Step<T> = Result<Result<T, Reply>, Internal>;

/// One auth kind: how a service's users link their account and how a stored credential goes
/// onto a request. One implementation per file under `src/auth/`, registered in
/// [`super::Kinds::new`]. Defaults fit a kind that has nothing to say for a command.
#[async_trait::async_trait]
pub trait AuthScheme: Send + Sync + 'static {
    /// The name in callback URLs (`/oauth1/<service>/callback`) and logs.
    fn name(&self) -> &'static str;

    /// Whether this kind serves a pack's `auth = { kind = ... }`.
    fn handles(&self, kind: &AuthKind) -> bool;

    /// Whether commands need the user's credential at all.
    fn needs_credential(&self) -> bool {
        true
    }

    /// The account part of `help <service>` ("Your account:" and one line per command), each
    /// line ending in `\n`.
    fn help(&self, pack: &Pack) -> String;

    /// The reply to a command that needs a credential the user has not linked.
    fn link_first(&self, pack: &Pack) -> Reply;

    /// The environment variables holding the operator's client credentials (key, secret),
    /// for kinds that need them.
    fn operator_env(&self, _service: &str) -> Option<(String, String)> {
        None
    }

    /// `setupauth`.
    async fn setupauth(&self, _cx: &AuthContext, _msg: &Message, pack: &Pack) -> Handled {
        Ok(replies::not_oauth(pack))
    }

    /// `auth <PIN|code>`.
    async fn auth(
        &self,
        _cx: &AuthContext,
        _msg: &Message,
        pack: &Pack,
        _args: &[String],
    ) -> Handled {
        Ok(replies::not_oauth(pack))
    }

    /// `setkey <secret>` (the dispatcher has already refused it outside a direct message).
    async fn setkey(
        &self,
        _cx: &AuthContext,
        _msg: &Message,
        pack: &Pack,
        _args: &[String],
    ) -> Handled {
        Ok(replies::not_apikey(pack))
    }

    /// Whether the user links with a key (`setkey`), which deputy can also take through a
    /// private form ([`AuthScheme::store_key`]).
    fn takes_key(&self) -> bool {
        false
    }

    /// What is wrong with `key` as this service's key, written for the user; checked before
    /// anything is stored, and by a form that can show the problem beside its input.
    fn check_key(&self, _pack: &Pack, _key: &str) -> Result<(), String> {
        Ok(())
    }

    /// Stores a key the user typed into a private form: the same checks and reply as
    /// `setkey <key>` in a direct message.
    async fn store_key(
        &self,
        _cx: &AuthContext,
        _msg: &Message,
        pack: &Pack,
        _key: &crate::secret::Secret,
    ) -> Handled {
        Ok(replies::not_apikey(pack))
    }

    /// `logout`: forget (and, where the kind can, revoke) the user's credential.
    async fn logout(&self, cx: &AuthContext, msg: &Message, pack: &Pack) -> Handled;

    /// `whoami`.
    async fn whoami(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
    ) -> Result<Whoami, Internal> {
        let Some(credential) = cx.credential(&msg.owner(), &pack.service.name).await? else {
            return Ok(Whoami::Reply(self.link_first(pack)));
        };
        if pack.service.whoami.is_some() {
            return Ok(Whoami::AskService);
        }
        Ok(Whoami::Reply(Reply::new(self.linked_as(pack, &credential))))
    }

    /// `whoami` for a linked user when the pack declares no `whoami` request.
    fn linked_as(&self, pack: &Pack, credential: &Credential) -> String;

    /// Makes a stored credential ready for `command` (scopes, a refresh when about to expire).
    async fn prepare(
        &self,
        _cx: &AuthContext,
        _msg: &Message,
        _pack: &Pack,
        _command: &str,
        _scopes: &[String],
        credential: Credential,
    ) -> Step<Credential> {
        Ok(Ok(credential))
    }

    /// How the credential goes onto a request: a header, a signature, a bearer token.
    fn apply<'a>(&self, pack: &'a Pack, credential: &'a Credential) -> Result<Auth<'a>, Reply>;

    /// The service rejected the credential (HTTP `status`); `retried` when this was already
    /// the second try.
    async fn rejected(
        &self,
        cx: &AuthContext,
        msg: &Message,
        pack: &Pack,
        credential: Option<&Credential>,
        status: u16,
        retried: bool,
    ) -> Result<Rejected, Internal>;

    /// The browser came back to `/<name>/<service>/callback` with `query`; `None` for kinds
    /// without a browser callback (a 404).
    async fn callback(
        &self,
        _cx: &AuthContext,
        _service: &str,
        _query: &HashMap<String, String>,
    ) -> Option<Result<Callback, Internal>> {
        None
    }

    /// Resumes work a previous run left unfinished (device-flow polls); logs what it did.
    async fn resume(&self, _cx: &AuthContext) {}
}
