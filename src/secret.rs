//! The secret types every layer shares: below both `auth` (stored credentials) and `pack` (the
//! operator's OAuth consumer secrets), so neither has to import the other for it.

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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

/// An OAuth consumer key and secret, supplied by the operator, never by a pack.
#[derive(Debug, Clone)]
pub struct Consumer {
    pub key: String,
    pub secret: Secret,
}
