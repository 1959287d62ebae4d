//! The AEAD envelope every brain value is sealed in, and the keys behind it.
//!
//! Envelope: `version (1 byte) | key id (8 bytes) | nonce (24 bytes) | ciphertext+tag`.
//! XChaCha20-Poly1305 with a fresh random nonce per write; the associated data is the version,
//! the key id and the record's key path, so a record copied onto another key does not open.
//!
//! XChaCha20-Poly1305 is built the standard way (draft-irtf-cfrg-xchacha): HChaCha20 of the
//! key and the nonce's first 16 bytes gives a subkey for ChaCha20-Poly1305 (RFC 8439) with
//! the nonce's last 8 bytes. HChaCha20 comes from the `chacha20` crate and the AEAD from
//! `ring`: RustCrypto's poly1305 picks an AVX2 backend that costs ~2 µs on a 90-byte record,
//! ring's takes ~0.3 µs (BENCHMARKS.md). The bytes are those of `chacha20poly1305`'s
//! `XChaCha20Poly1305`, which the tests check in both directions.

use base64::Engine;
use chacha20::cipher::consts::U10;
use hkdf::Hkdf;
use rand::rngs::OsRng;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use zeroize::Zeroizing;

pub const VERSION: u8 = 1;
const KEY_ID_LEN: usize = 8;
const NONCE_LEN: usize = 24;
const HEADER_LEN: usize = 1 + KEY_ID_LEN + NONCE_LEN;
const TAG_LEN: usize = 16;
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

/// One derived key, zeroized on drop.
struct SealKey {
    id: [u8; KEY_ID_LEN],
    key: Zeroizing<[u8; 32]>,
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
        Ok(SealKey { id, key })
    }

    /// The ChaCha20-Poly1305 key and nonce that XChaCha20-Poly1305 uses for `nonce`.
    fn cipher(&self, nonce: &[u8; NONCE_LEN]) -> (LessSafeKey, Nonce) {
        let mut subkey: Zeroizing<[u8; 32]> = Zeroizing::new(
            chacha20::hchacha::<U10>(
                chacha20::Key::from_slice(self.key.as_slice()),
                nonce[..16].into(),
            )
            .into(),
        );
        let key = LessSafeKey::new(
            UnboundKey::new(&CHACHA20_POLY1305, subkey.as_slice())
                .expect("ChaCha20-Poly1305 takes a 32-byte key"),
        );
        subkey.fill(0);
        let mut short = [0u8; 12];
        short[4..].copy_from_slice(&nonce[16..]);
        (key, Nonce::assume_unique_for_key(short))
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
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(HEADER_LEN + plaintext.len() + TAG_LEN);
        out.push(VERSION);
        out.extend_from_slice(&self.current.id);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let aad = aad(&self.current.id, key_path);
        let (key, short) = self.current.cipher(&nonce);
        let tag = key
            .seal_in_place_separate_tag(short, Aad::from(&aad), &mut out[HEADER_LEN..])
            .expect("ChaCha20-Poly1305 sealing of an in-memory buffer cannot fail");
        out.extend_from_slice(tag.as_ref());
        out
    }

    pub fn open(&self, key_path: &[u8], envelope: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if envelope.len() < HEADER_LEN + TAG_LEN {
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
        let nonce: &[u8; NONCE_LEN] = envelope[1 + KEY_ID_LEN..HEADER_LEN]
            .try_into()
            .expect("length");
        let aad = aad(&id, key_path);
        let (cipher, short) = key.cipher(nonce);
        let mut plain = Zeroizing::new(envelope[HEADER_LEN..].to_vec());
        let len = cipher
            .open_in_place(short, Aad::from(&aad), &mut plain)
            .map_err(|_| SealError::Rejected)?
            .len();
        plain.truncate(len);
        Ok(plain)
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

    /// The envelope's ciphertext is exactly what RustCrypto's `XChaCha20Poly1305` makes: an
    /// implementation written apart from ours opens what we seal, and we open what it seals.
    #[test]
    fn same_bytes_as_rustcrypto_xchacha20poly1305() {
        use chacha20poly1305::aead::{Aead, KeyInit, Payload};
        use chacha20poly1305::{XChaCha20Poly1305, XNonce};
        let s = Sealer::new(&secret(3), &[]).unwrap();
        let theirs = XChaCha20Poly1305::new_from_slice(s.current.key.as_slice()).unwrap();
        for len in [0usize, 1, 15, 16, 63, 64, 65, 90, 200, 1000] {
            let plain: Vec<u8> = (0..len).map(|i| (i * 7 + len) as u8).collect();
            let path = format!("cred/shell/local/u{len}/jenkins");
            let ours = s.seal(path.as_bytes(), &plain);
            let nonce = XNonce::from_slice(&ours[1 + KEY_ID_LEN..HEADER_LEN]);
            let aad = aad(&s.current.id, path.as_bytes());
            let opened = theirs
                .decrypt(
                    nonce,
                    Payload {
                        msg: &ours[HEADER_LEN..],
                        aad: &aad,
                    },
                )
                .expect("RustCrypto opens our envelope");
            assert_eq!(opened, plain);
            let sealed = theirs
                .encrypt(
                    nonce,
                    Payload {
                        msg: &plain,
                        aad: &aad,
                    },
                )
                .unwrap();
            assert_eq!(
                sealed,
                ours[HEADER_LEN..],
                "same ciphertext and tag for len {len}"
            );
            let mut envelope = ours[..HEADER_LEN].to_vec();
            envelope.extend_from_slice(&sealed);
            assert_eq!(&s.open(path.as_bytes(), &envelope).unwrap()[..], &plain[..]);
        }
    }

    /// draft-irtf-cfrg-xchacha-03, A.3.1: the AEAD_XChaCha20_Poly1305 test vector.
    #[test]
    fn xchacha_draft_test_vector() {
        let unhex = |s: &str| -> Vec<u8> {
            let s: String = s.split_whitespace().collect();
            (0..s.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
                .collect()
        };
        let key = SealKey {
            id: [0; KEY_ID_LEN],
            key: Zeroizing::new(
                unhex("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f")
                    .try_into()
                    .unwrap(),
            ),
        };
        let nonce: [u8; NONCE_LEN] = unhex("404142434445464748494a4b4c4d4e4f5051525354555657")
            .try_into()
            .unwrap();
        let aad = unhex("50515253c0c1c2c3c4c5c6c7");
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.".to_vec();
        let (cipher, short) = key.cipher(&nonce);
        let tag = cipher
            .seal_in_place_separate_tag(short, Aad::from(&aad), &mut buf)
            .unwrap();
        assert_eq!(
            buf,
            unhex(
                "bd6d179d3e83d43b9576579493c0e939572a1700252bfaccbed2902c21396cbb
                 731c7f1b0b4aa6440bf3a82f4eda7e39ae64c6708c54c216cb96b72e1213b452
                 2f8c9ba40db5d945b11b69b982c1bb9e3f3fac2bc369488f76b2383565d3fff9
                 21f9664c97637da9768812f615c68b13b52e"
            )
        );
        assert_eq!(tag.as_ref(), &unhex("c0875924c1c7987947deafd8780acf49")[..]);
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
