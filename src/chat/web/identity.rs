//! Who a web chat user is: the host site's signed token (a JWT), verified with `jsonwebtoken`
//! against the operator's `[web.identity]`: the algorithm the operator fixed (never the
//! token's own choice), the issuer, the audience, `exp` and `nbf`, and a key that is an HS256
//! secret from the environment, a PEM public key, or a JWKS fetched from the site (cached for
//! `jwks_max_age_secs`, refetched on an unknown `kid` at most once per `jwks_min_refresh_secs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use crate::config::{
    Config, JwtAlgorithm, WebIdentityConfig, WEB_DEFAULT_WORKSPACE, WEB_JWT_SECRET_ENV,
};

/// The shortest HS256 secret accepted: RFC 7518 3.2 asks for a key at least as long as the
/// hash (32 bytes).
pub const MIN_SECRET_BYTES: usize = 32;
/// The longest user or workspace id taken from a token.
const MAX_ID: usize = 128;

/// A verified token: who is talking, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub workspace: String,
    pub user: String,
    pub name: String,
    /// The token's `exp`, in Unix seconds: the session ends then.
    pub expires_at: u64,
}

/// Why a token was refused. The text is shown to the page (it holds nothing secret: never
/// the token, never the key).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no token: open the WebSocket with the subprotocols \"deputy\" and the site's token")]
    Missing,
    #[error("the token has expired: get a fresh one from the site and reconnect")]
    Expired,
    #[error("the token is not valid yet (nbf is in the future)")]
    NotYetValid,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token comes from another issuer")]
    Issuer,
    #[error("the token is not signed with {0}, the algorithm this deputy expects")]
    Algorithm(&'static str),
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token is signed with a key this deputy does not know (kid {0:?})")]
    UnknownKey(String),
    #[error("the token is unreadable: {0}")]
    Malformed(String),
    #[error("the token's {0}")]
    Claim(String),
    #[error("deputy cannot fetch the site's keys right now; try again shortly")]
    KeysUnavailable,
}

impl Refused {
    fn from_jwt(e: jsonwebtoken::errors::Error, alg: &'static str) -> Refused {
        use jsonwebtoken::errors::ErrorKind as K;
        match e.kind() {
            K::ExpiredSignature => Refused::Expired,
            K::ImmatureSignature => Refused::NotYetValid,
            K::InvalidAudience => Refused::Audience,
            K::InvalidIssuer => Refused::Issuer,
            K::InvalidSignature => Refused::Signature,
            K::InvalidAlgorithm | K::InvalidAlgorithmName | K::UnsupportedAlgorithm => {
                Refused::Algorithm(alg)
            }
            K::MissingRequiredClaim(c) => Refused::Claim(format!("claim {c} is missing")),
            K::InvalidClaimFormat(c) => Refused::Claim(format!("claim {c} has the wrong type")),
            _ => Refused::Malformed("not a signed JWT".into()),
        }
    }
}

/// The verifier for `[web.identity]`.
pub struct Identity {
    algorithm: Algorithm,
    validation: Validation,
    keys: Keys,
    user_claim: String,
    name_claim: Option<String>,
    workspace: Workspace,
}

enum Workspace {
    Fixed(String),
    Claim(String),
}

enum Keys {
    Fixed(DecodingKey),
    Jwks(Box<Jwks>),
}

/// A site's JWKS: fetched at the first token, refetched when a token names a `kid` it lacks,
/// but never sooner than `min_refresh` after the last refetch.
struct Jwks {
    url: reqwest::Url,
    client: reqwest::Client,
    min_refresh: Duration,
    max_age: Duration,
    state: tokio::sync::Mutex<JwksState>,
}

#[derive(Default)]
struct JwksState {
    keys: HashMap<String, DecodingKey>,
    /// Keys without a `kid` (a site with one key often leaves it out).
    unnamed: Vec<DecodingKey>,
    loaded: bool,
    last_refetch: Option<Instant>,
    /// When the keys were last asked for (successfully or not).
    asked_at: Option<Instant>,
}

impl Identity {
    /// Reads the key the config names (the secret from the environment, the PEM file). A JWKS
    /// is not fetched here: deputy starts while the site is down, and tokens wait for it.
    pub fn from_config(config: &Config, client: reqwest::Client) -> Result<Identity, String> {
        let Some(c) = &config.web.identity else {
            return Err("[web.chat] is enabled but [web.identity] is missing".into());
        };
        let algorithm = match c.algorithm {
            JwtAlgorithm::HS256 => Algorithm::HS256,
            JwtAlgorithm::RS256 => Algorithm::RS256,
            JwtAlgorithm::ES256 => Algorithm::ES256,
        };
        let keys =
            match c.algorithm {
                JwtAlgorithm::HS256 => Keys::Fixed(hs256_key(c)?),
                JwtAlgorithm::RS256 | JwtAlgorithm::ES256 => {
                    match (&c.public_key_file, &c.jwks_url) {
                        (Some(file), _) => {
                            let path = config.resolve(file);
                            let pem = std::fs::read(&path).map_err(|e| {
                                format!("[web.identity] public_key_file {}: {e}", path.display())
                            })?;
                            let key = if algorithm == Algorithm::RS256 {
                                DecodingKey::from_rsa_pem(&pem)
                            } else {
                                DecodingKey::from_ec_pem(&pem)
                            };
                            Keys::Fixed(key.map_err(|e| {
                                format!(
                            "[web.identity] public_key_file {}: not a PEM {} public key ({e})",
                            path.display(),
                            if algorithm == Algorithm::RS256 { "RSA" } else { "P-256 EC" }
                        )
                            })?)
                        }
                        (None, Some(url)) => Keys::Jwks(Box::new(Jwks {
                            url: reqwest::Url::parse(url)
                                .map_err(|e| format!("[web.identity] jwks_url: {e}"))?,
                            client,
                            min_refresh: Duration::from_secs(c.jwks_min_refresh_secs),
                            max_age: Duration::from_secs(c.jwks_max_age_secs),
                            state: tokio::sync::Mutex::default(),
                        })),
                        (None, None) => {
                            return Err("[web.identity] needs public_key_file or jwks_url".into())
                        }
                    }
                }
            };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&c.issuer]);
        validation.set_audience(&[&c.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.leeway = c.leeway_secs;
        let workspace = match (&c.workspace, &c.workspace_claim) {
            (_, Some(claim)) => Workspace::Claim(claim.clone()),
            (Some(w), None) => Workspace::Fixed(w.clone()),
            (None, None) => Workspace::Fixed(WEB_DEFAULT_WORKSPACE.into()),
        };
        Ok(Identity {
            algorithm,
            validation,
            keys,
            user_claim: c.user_claim.clone(),
            name_claim: c.name_claim.clone(),
            workspace,
        })
    }

    /// One line for `deputy check` and the start-up log: how tokens are verified.
    pub fn describe(config: &WebIdentityConfig) -> String {
        let key = match config.algorithm {
            JwtAlgorithm::HS256 => format!("HS256 with the secret in {}", config.secret_env()),
            alg => match (&config.public_key_file, &config.jwks_url) {
                (Some(f), _) => format!("{alg:?} with the public key {}", f.display()),
                (None, Some(u)) => format!("{alg:?} with the keys at {u}"),
                (None, None) => format!("{alg:?} with no key"),
            },
        };
        format!(
            "tokens from issuer {:?} for audience {:?}, {key}",
            config.issuer, config.audience
        )
    }

    fn alg_name(&self) -> &'static str {
        match self.algorithm {
            Algorithm::HS256 => "HS256",
            Algorithm::RS256 => "RS256",
            _ => "ES256",
        }
    }

    /// Verifies `token` and reads who it names.
    pub async fn verify(&self, token: &str) -> Result<Verified, Refused> {
        let alg = self.alg_name();
        // `alg: none`, another algorithm, or an unreadable header: refused before any key is
        // looked up (jsonwebtoken has no `none`, so such a header does not even parse).
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::Json(_) => Refused::Algorithm(alg),
            _ => Refused::Malformed("not a JWT (header.payload.signature)".into()),
        })?;
        if header.alg != self.algorithm {
            return Err(Refused::Algorithm(alg));
        }
        let key = match &self.keys {
            Keys::Fixed(k) => k.clone(),
            Keys::Jwks(jwks) => jwks.key(header.kid.as_deref(), self.algorithm).await?,
        };
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &self.validation)
            .map_err(|e| Refused::from_jwt(e, alg))?;
        let claims = data.claims;
        let user = id_claim(&claims, &self.user_claim)?;
        let workspace = match &self.workspace {
            Workspace::Fixed(w) => w.clone(),
            Workspace::Claim(c) => id_claim(&claims, c)?,
        };
        let name = self
            .name_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str)
            .map(|n| n.chars().filter(|c| !c.is_control()).take(MAX_ID).collect())
            .unwrap_or_else(|| user.clone());
        let expires_at = claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or_else(|| Refused::Claim("claim exp is not a number of seconds".into()))?;
        Ok(Verified {
            workspace,
            user,
            name,
            expires_at,
        })
    }
}

/// The HS256 secret from the environment, checked for length.
fn hs256_key(c: &WebIdentityConfig) -> Result<DecodingKey, String> {
    let var = c.secret_env();
    let secret = std::env::var(var).unwrap_or_default();
    if secret.trim().is_empty() {
        return Err(format!(
            "{var} is not set: [web.identity] algorithm = \"HS256\" verifies chat tokens with the secret the site signs them with{}",
            if var == WEB_JWT_SECRET_ENV { "" } else { " (secret_env names this variable)" }
        ));
    }
    if secret.len() < MIN_SECRET_BYTES {
        return Err(format!(
            "{var} is too short for HS256: use at least {MIN_SECRET_BYTES} random bytes (`deputy keygen` prints one)"
        ));
    }
    DecodingKey::from_secret(secret.as_bytes()).map_err(|e| format!("{var}: {e}"))
}

/// A user or workspace id from a claim: a string (or a number), printable, at most 128
/// characters.
fn id_claim(claims: &Map<String, Value>, name: &str) -> Result<String, Refused> {
    let value = match claims.get(name) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        Some(_) => return Err(Refused::Claim(format!("claim {name} is not a string"))),
        None => return Err(Refused::Claim(format!("claim {name} is missing"))),
    };
    if value.is_empty() || value.len() > MAX_ID || value.chars().any(char::is_control) {
        return Err(Refused::Claim(format!(
            "claim {name} must be 1 to {MAX_ID} printable characters"
        )));
    }
    Ok(value)
}

impl Jwks {
    async fn key(&self, kid: Option<&str>, alg: Algorithm) -> Result<DecodingKey, Refused> {
        let mut state = self.state.lock().await;
        if !state.loaded {
            self.fetch(&mut state, alg).await?;
        } else if state.asked_at.map_or(true, |t| t.elapsed() >= self.max_age) {
            // Old keys: ask again, so a key the site withdrew stops working. If the site is
            // down, the cached keys go on working (the failure is logged) until the next age.
            let _ = self.fetch(&mut state, alg).await;
        }
        if let Some(k) = find(&state, kid) {
            return Ok(k);
        }
        // An unknown key: the site may have rotated. Refetch, unless we did so lately: a
        // flood of made-up kids must not turn into a flood of requests to the site.
        let recent = state
            .last_refetch
            .is_some_and(|t| t.elapsed() < self.min_refresh);
        if !recent {
            state.last_refetch = Some(Instant::now());
            self.fetch(&mut state, alg).await?;
            if let Some(k) = find(&state, kid) {
                return Ok(k);
            }
        }
        Err(Refused::UnknownKey(
            kid.unwrap_or("none").chars().take(64).collect(),
        ))
    }

    async fn fetch(&self, state: &mut JwksState, alg: Algorithm) -> Result<(), Refused> {
        state.asked_at = Some(Instant::now());
        let set = match self.get().await {
            Ok(set) => set,
            Err(e) => {
                tracing::warn!(url = %self.url, error = %format!("{e:#}"), "cannot fetch the web chat's JWKS");
                return Err(Refused::KeysUnavailable);
            }
        };
        state.keys.clear();
        state.unnamed.clear();
        let mut skipped = 0;
        for raw in set {
            match usable(raw, alg) {
                Some((Some(kid), key)) => {
                    state.keys.insert(kid, key);
                }
                Some((None, key)) => state.unnamed.push(key),
                None => skipped += 1,
            }
        }
        state.loaded = true;
        tracing::info!(url = %self.url, keys = state.keys.len() + state.unnamed.len(), skipped, "fetched the web chat's JWKS");
        Ok(())
    }

    async fn get(&self) -> anyhow::Result<Vec<Value>> {
        let response = self.client.get(self.url.clone()).send().await?;
        anyhow::ensure!(
            response.status().is_success(),
            "the JWKS URL answered {}",
            response.status()
        );
        let body: Value = response.json().await?;
        match body.get("keys") {
            Some(Value::Array(keys)) => Ok(keys.clone()),
            _ => anyhow::bail!("the JWKS has no \"keys\" array"),
        }
    }
}

fn find(state: &JwksState, kid: Option<&str>) -> Option<DecodingKey> {
    match kid {
        Some(kid) => state.keys.get(kid).cloned(),
        // No kid: only unambiguous when the site publishes exactly one key.
        None => match (state.keys.len(), state.unnamed.len()) {
            (0, 1) => state.unnamed.first().cloned(),
            (1, 0) => state.keys.values().next().cloned(),
            _ => None,
        },
    }
}

/// A JWK this deputy can verify `alg` with: the right key type (and curve), not marked for
/// another algorithm or for encryption only.
fn usable(raw: Value, alg: Algorithm) -> Option<(Option<String>, DecodingKey)> {
    let jwk: Jwk = serde_json::from_value(raw).ok()?;
    if jwk
        .common
        .key_algorithm
        .is_some_and(|a| a.to_string() != format!("{alg:?}"))
    {
        return None;
    }
    if jwk
        .common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != jsonwebtoken::jwk::PublicKeyUse::Signature)
    {
        return None;
    }
    let fits = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
        (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
        _ => false,
    };
    if !fits {
        return None;
    }
    let key = DecodingKey::from_jwk(&jwk).ok()?;
    Some((jwk.common.key_id.clone(), key))
}
