//! Auth kinds: how a service's users link their account, and how their credential goes onto
//! a request. One file per kind, each an [`AuthScheme`]:
//!
//! - [`none`]: no account; [`apikey`]: `basic`, `bearer`, `header` keys pasted with `setkey`;
//! - [`oauth1`]: OAuth 1.0a, PIN or browser callback;
//! - [`oauth2`]: OAuth 2.0 device flow, or browser + PKCE + magic code, with refresh and
//!   revocation (and its background polls and refresh locks).
//!
//! What the kinds share has a home of its own: [`context`] (what a kind may use),
//! [`credential`] (what the brain holds), [`conversation`] (where to answer later),
//! [`pending`] (flows in progress, expiry, the lockout), [`replies`] ("link first" and
//! friends). Kinds import only these, never each other; [`Kinds`] here registers them.

pub mod apikey;
pub mod context;
pub mod conversation;
pub mod credential;
pub mod none;
pub mod oauth1;
pub mod oauth2;
pub mod pending;
pub mod replies;
pub mod scheme;

pub use self::context::AuthContext;
pub use self::credential::{now_secs, Credential};
pub use self::scheme::{AuthScheme, Callback, Rejected, Whoami};
pub use crate::secret::Secret;

use crate::pack::AuthKind;

/// Every auth kind deputy knows, asked in order which one serves a pack's `auth.kind`.
pub struct Kinds(Vec<Box<dyn AuthScheme>>);

impl Default for Kinds {
    fn default() -> Kinds {
        Kinds::new()
    }
}

impl Kinds {
    /// The registry: a new kind is one more line here.
    pub fn new() -> Kinds {
        Kinds(vec![
            Box::new(none::NoAccount),
            Box::new(apikey::ApiKey),
            Box::new(oauth1::OAuth1),
            Box::new(oauth2::OAuth2::default()),
        ])
    }

    /// The kind serving `kind`.
    pub fn of(&self, kind: &AuthKind) -> &dyn AuthScheme {
        self.0
            .iter()
            .find(|k| k.handles(kind))
            .map(AsRef::as_ref)
            .expect("every auth kind a pack can declare is registered")
    }

    /// The kind whose callback URLs start with `/<name>/`.
    pub fn named(&self, name: &str) -> Option<&dyn AuthScheme> {
        self.0.iter().find(|k| k.name() == name).map(AsRef::as_ref)
    }

    pub fn iter(&self) -> impl Iterator<Item = &dyn AuthScheme> {
        self.0.iter().map(AsRef::as_ref)
    }
}
