//! What the brain holds for one user and service once an account is linked, and the clock the
//! auth kinds measure it by.

use serde::{Deserialize, Serialize};

use crate::secret::Secret;

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
    /// The kind's name, for metrics: `api_key`, `oauth1`, `oauth2`.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Credential::ApiKey { .. } => "api_key",
            Credential::OAuth1 { .. } => "oauth1",
            Credential::OAuth2 { .. } => "oauth2",
        }
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
