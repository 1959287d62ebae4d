//! The AEAD envelope every brain value is sealed in, and the keys behind it.
//!
//! Envelope: `version (1 byte) | key id (8 bytes) | nonce (24 bytes) | ciphertext+tag`.
//! XChaCha20-Poly1305 with a fresh random nonce per write; the associated data is the version,
//! the key id and the record's key path, so a record copied onto another key does not open.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, OsRng, Payload};
use chacha20poly1305::{AeadCore, XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

pub const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
/// Fewest bytes of entropy a secret must carry once decoded.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SealError {
    #[error("the secret must be base64 or hex of at least {MIN_SECRET_BYTES} random bytes (generate one with `deputy keygen`)")]
    WeakSecret,
    #[error("record is too short or not a deputy envelope")]
    Malformed,
    #[error("record uses envelope version {0}, this deputy reads version {VERSION}")]
    UnknownVersion(u8),
    #[error("record was sealed with key {0}, which is not loaded (set DEPUTY_SECRET_PREVIOUS while rotating)")]
    UnknownKey(String),
    #[error("record does not open: wrong key, tampered, or copied from another key path")]
    Rejected,
}

/// One derived key. The key material is zeroized on drop by the cipher.
struct SealKey {
    id: [u8; KEY_ID_LEN],
    cipher: XChaCha20Poly1305,
}

impl SealKey {
    fn derive(secret: &SecretString) -> Result<SealKey, SealError> {
        let ikm = decode_secret(secret.expose_secret())?;
        let hk = Hkdf::<Sha256>::new(Some(b"deputy-brain-v1"), &ikm);
        let mut key = Zeroizing::new([0u8; 32]);
        hk.expand(b"seal key", key.as_mut_slice())
            .expect("32 bytes is a valid HKDF-SHA256 length");
        let mut id = [0u8; KEY_ID_LEN];
        hk.expand(b"key id", &mut id)
            .expect("8 bytes is a valid HKDF-SHA256 length");
        let cipher = XChaCha20Poly1305::new_from_slice(key.as_slice())
            .expect("XChaCha20-Poly1305 takes a 32-byte key");
        Ok(SealKey { id, cipher })
    }
}

/// Decodes a secret given as base64 (standard or URL-safe, padded or not) or hex.
fn decode_secret(s: &str) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let s = s.trim();
    let engines = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ];
    let is_hex = s.len() % 2 == 0 && s.bytes().all(|b| b.is_ascii_hexdigit());
    let decoded = if is_hex {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16))
            .collect::<Result<Vec<u8>, _>>()
            .ok()
    } else {
        engines.iter().find_map(|e| e.decode(s).ok())
    };
    match decoded {
        Some(bytes) if bytes.len() >= MIN_SECRET_BYTES => Ok(Zeroizing::new(bytes)),
        _ => Err(SealError::WeakSecret),
    }
}

/// A fresh secret in the format `DEPUTY_SECRET` expects (base64 of 32 random bytes).
pub fn generate_secret() -> SecretString {
    use rand::RngCore;
    let mut bytes = Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut_slice());
    SecretString::from(base64::engine::general_purpose::STANDARD.encode(bytes.as_slice()))
}

/// Seals with the current key; opens with the current or a previous one (during rotation).
pub struct Sealer {
    current: SealKey,
    previous: Vec<SealKey>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(secret: &SecretString, previous: &[SecretString]) -> Result<Sealer, SealError> {
        Ok(Sealer {
            current: SealKey::derive(secret)?,
            previous: previous
                .iter()
                .map(SealKey::derive)
                .collect::<Result<_, _>>()?,
        })
    }

    /// The current key's id, in hex: safe to log, it reveals nothing about the key.
    pub fn key_id(&self) -> String {
        hex(&self.current.id)
    }

    pub fn seal(&self, key_path: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + 16);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        let aad = aad(&self.current.id, key_path);
        let ct = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: plaintext,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 encryption of an in-memory buffer cannot fail");
        out.extend_from_slice(&ct);
        out
    }

    pub fn open(&self, key_path: &[u8], envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if envelope.len() < HEADER_LEN + 16 {
            return Err(SealError::Malformed);
        }
        if envelope[0] != VERSION {
            return Err(SealError::UnknownVersion(envelope[0]));
        }
        let id: [u8; KEY_ID_LEN] = envelope[1..1 + KEY_ID_LEN].try_into().expect("length");
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| SealError::UnknownKey(hex(&id)))?;
        let nonce = XNonce::from_slice(&envelope[1 + KEY_ID_LEN..HEADER_LEN]);
        let aad = aad(&id, key_path);
        key.cipher
            .decrypt(
                nonce,
                Payload {
                    msg: &envelope[HEADER_LEN..],
                    aad: &aad,
                },
            )
            .map(Zeroizing::new)
            .map_err(|_| SealError::Rejected)
    }

    /// Whether an envelope was sealed with an older key and should be re-sealed.
    pub fn is_stale(&self, envelope: &[u8]) -> bool {
        envelope.get(1..1 + KEY_ID_LEN) != Some(&self.current.id[..])
    }
}

fn aad(key_id: &[u8; KEY_ID_LEN], key_path: &[u8]) -> Vec<u8> {
    let mut aad = Vec::with_capacity(1 + KEY_ID_LEN + key_path.len());
    aad.push(VERSION);
    aad.extend_from_slice(key_id);
    aad.extend_from_slice(key_path);
    aad
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(byte: u8) -> SecretString {
        SecretString::from(base64::engine::general_purpose::STANDARD.encode([byte; 32]))
    }

    #[test]
    fn round_trip_and_fresh_nonce() {
        let s = Sealer::new(&secret(1), &[]).unwrap();
        let a = s.seal(b"cred/x", b"hello");
        let b = s.seal(b"cred/x", b"hello");
        assert_ne!(a, b, "each write must draw a new nonce");
        assert_eq!(&s.open(b"cred/x", &a).unwrap()[..], b"hello");
        assert!(!a.windows(5).any(|w| w == b"hello"));
    }

    #[test]
    fn other_key_path_does_not_open() {
        let s = Sealer::new(&secret(1), &[]).unwrap();
        let a = s.seal(b"cred/shell/local/alice/jenkins", b"alice:token");
        assert_eq!(
            s.open(b"cred/shell/local/bob/jenkins", &a).unwrap_err(),
            SealError::Rejected
        );
    }

    #[test]
    fn wrong_key_and_tampering_rejected() {
        let s1 = Sealer::new(&secret(1), &[]).unwrap();
        let s2 = Sealer::new(&secret(2), &[]).unwrap();
        let mut a = s1.seal(b"k", b"v");
        assert!(matches!(s2.open(b"k", &a), Err(SealError::UnknownKey(_))));
        let last = a.len() - 1;
        a[last] ^= 1;
        assert_eq!(s1.open(b"k", &a).unwrap_err(), SealError::Rejected);
        assert_eq!(s1.open(b"k", &a[..10]).unwrap_err(), SealError::Malformed);
    }

    #[test]
    fn rotation_opens_old_records() {
        let old = Sealer::new(&secret(1), &[]).unwrap();
        let sealed = old.seal(b"k", b"v");
        let new = Sealer::new(&secret(2), &[secret(1)]).unwrap();
        assert!(new.is_stale(&sealed));
        assert_eq!(&new.open(b"k", &sealed).unwrap()[..], b"v");
        assert!(!new.is_stale(&new.seal(b"k", b"v")));
    }

    #[test]
    fn weak_or_malformed_secrets_refused() {
        for s in [
            "",
            "short",
            "correct horse battery staple",
            &"ab".repeat(31),
        ] {
            assert_eq!(
                Sealer::new(&SecretString::from(s.to_string()), &[]).unwrap_err(),
                SealError::WeakSecret,
                "{s:?}"
            );
        }
        assert!(Sealer::new(&SecretString::from("ab".repeat(32)), &[]).is_ok());
        assert!(Sealer::new(&generate_secret(), &[]).is_ok());
    }
}
