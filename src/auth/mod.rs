//! Credentials and how they are applied to a request. The built-in commands that create and
//! remove them live beside each auth kind ([`apikey`]).

pub mod apikey;
pub mod oauth1;
pub mod oauth2;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pack::AuthKind;

/// A secret that cannot be printed by accident: `Debug` shows `[redacted]`, it has no
/// `Display`, and its memory is zeroized on drop. It serializes only into the sealed brain.
#[derive(Clone)]
pub struct Secret(SecretString);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(SecretString::from(s.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        Ok(Secret::new(String::deserialize(d)?))
    }
}

/// What the brain holds for one (adapter, workspace, user, service).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credential {
    /// A key the user pasted with `setkey`.
    ApiKey {
        secret: Secret,
        /// Unix seconds.
        linked_at: u64,
    },
    /// An OAuth 1.0a access token from `setupauth` + `auth <PIN>` (or the browser callback).
    #[serde(rename = "oauth1")]
    OAuth1 {
        token: Secret,
        token_secret: Secret,
        user_id: Option<String>,
        screen_name: Option<String>,
        linked_at: u64,
    },
    /// An OAuth 2.0 token from the device or browser flow.
    #[serde(rename = "oauth2")]
    OAuth2 {
        access_token: Secret,
        refresh_token: Option<Secret>,
        /// Unix seconds when the access token expires, if the provider said.
        expires_at: Option<u64>,
        /// Scopes the provider granted.
        scopes: Vec<String>,
        linked_at: u64,
    },
}

impl Credential {
    /// Adds the credential to a request as the service's auth kind says.
    pub fn apply(
        &self,
        kind: &AuthKind,
        req: reqwest::RequestBuilder,
    ) -> anyhow::Result<reqwest::RequestBuilder> {
        let Credential::ApiKey { secret, .. } = self else {
            anyhow::bail!("an OAuth 1.0a token is applied by signing the request, not a header");
        };
        let value = match kind {
            AuthKind::None | AuthKind::OAuth1 { .. } | AuthKind::OAuth2(_) => return Ok(req),
            AuthKind::Basic { .. } => {
                use base64::Engine;
                let encoded = base64::engine::general_purpose::STANDARD.encode(secret.expose());
                ("authorization".to_string(), format!("Basic {encoded}"))
            }
            AuthKind::Bearer { .. } => (
                "authorization".to_string(),
                format!("Bearer {}", secret.expose()),
            ),
            AuthKind::Header { header, prefix, .. } => {
                (header.clone(), format!("{prefix}{}", secret.expose()))
            }
        };
        let name = reqwest::header::HeaderName::from_bytes(value.0.as_bytes())?;
        let mut header = reqwest::header::HeaderValue::from_str(&value.1)
            .map_err(|_| anyhow::anyhow!("the stored key has characters a header cannot carry"))?;
        // Marked sensitive so HTTP-layer debug logging redacts it.
        header.set_sensitive(true);
        Ok(req.header(name, header))
    }

    pub fn linked_at(&self) -> u64 {
        match self {
            Credential::ApiKey { linked_at, .. }
            | Credential::OAuth1 { linked_at, .. }
            | Credential::OAuth2 { linked_at, .. } => *linked_at,
        }
    }
}

pub fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_do_not_debug_print() {
        let c = Credential::ApiKey {
            secret: Secret::new("alice:hunter2"),
            linked_at: 1,
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2"), "{s}");
        assert!(s.contains("redacted"));
    }
}
