//! API keys: generation, hashing and the stored record.
//!
//! A key is `obl_` followed by 43 base62 characters (≈256 bits of entropy). Only its
//! SHA-256 digest is stored; because keys are random and long, a fast unsalted hash is
//! safe here (no dictionary to attack) and lets a lookup be a single indexed equality.
//! The first 12 characters (`obl_` + 8) are kept in clear as the key's *prefix*, which
//! is what listings, logs and the ledger show.

use rand::Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::UnixMillis;

/// Every obleth key starts with this, so leaked keys are recognisable by scanners.
pub const KEY_PREFIX: &str = "obl_";
/// Length of the random part.
const SECRET_LEN: usize = 43;
/// Characters of the key shown in listings (includes [`KEY_PREFIX`]).
pub const DISPLAY_PREFIX_LEN: usize = 12;
/// Longest bearer token we will even hash; anything longer is garbage.
pub const MAX_KEY_LEN: usize = 256;

const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// SHA-256 digest of a presented key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyHash(pub [u8; 32]);

impl KeyHash {
    /// Hashes a presented bearer token.
    pub fn of(secret: &str) -> Self {
        KeyHash(Sha256::digest(secret.as_bytes()).into())
    }

    /// Lowercase hex, the stored form.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }

    /// Parses the stored hex form.
    pub fn from_hex(hex: &str) -> Option<Self> {
        if hex.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(s, 16).ok()?;
        }
        Some(KeyHash(out))
    }
}

impl std::fmt::Debug for KeyHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A digest is not a secret, but eight hex digits are plenty to correlate.
        write!(f, "KeyHash({}…)", &self.to_hex()[..8])
    }
}

/// A freshly generated key: the secret is returned to the caller exactly once.
pub struct GeneratedKey {
    pub secret: String,
    pub prefix: String,
    pub hash: KeyHash,
}

impl std::fmt::Debug for GeneratedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeneratedKey").field("prefix", &self.prefix).field("secret", &"[redacted]").finish()
    }
}

/// Generates a new key from the OS-seeded thread RNG.
pub fn generate() -> GeneratedKey {
    let mut rng = rand::rng();
    let mut secret = String::with_capacity(KEY_PREFIX.len() + SECRET_LEN);
    secret.push_str(KEY_PREFIX);
    for _ in 0..SECRET_LEN {
        secret.push(ALPHABET[rng.random_range(0..ALPHABET.len())] as char);
    }
    GeneratedKey { prefix: display_prefix(&secret), hash: KeyHash::of(&secret), secret }
}

/// The part of a key that may be shown: at most [`DISPLAY_PREFIX_LEN`] characters.
pub fn display_prefix(secret: &str) -> String {
    secret.chars().take(DISPLAY_PREFIX_LEN).collect()
}

/// A stored API key (never the secret itself).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ApiKey {
    pub id: String,
    pub tenant_id: String,
    /// Optional label given at creation.
    pub name: Option<String>,
    /// First characters of the secret, for recognition.
    pub prefix: String,
    pub created_at: UnixMillis,
    pub expires_at: Option<UnixMillis>,
    pub revoked_at: Option<UnixMillis>,
}

impl ApiKey {
    /// Whether the key may authenticate at `now`.
    pub fn is_active(&self, now: UnixMillis) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| now < e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_are_distinct_and_well_formed() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(a.secret.starts_with(KEY_PREFIX));
        assert_eq!(a.secret.len(), KEY_PREFIX.len() + SECRET_LEN);
        assert!(a.secret[KEY_PREFIX.len()..].bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_eq!(a.prefix.len(), DISPLAY_PREFIX_LEN);
        assert!(a.secret.starts_with(&a.prefix));
        assert_eq!(a.hash, KeyHash::of(&a.secret));
        assert!(!format!("{a:?}").contains(&a.secret));
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = KeyHash::of("obl_test");
        assert_eq!(KeyHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(KeyHash::from_hex("zz"), None);
        assert_eq!(KeyHash::from_hex(&"g".repeat(64)), None);
        // Known SHA-256 vector.
        assert_eq!(KeyHash::of("abc").to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn activity() {
        let mut k = ApiKey {
            id: "k".into(),
            tenant_id: "t".into(),
            name: None,
            prefix: "obl_x".into(),
            created_at: 0,
            expires_at: Some(100),
            revoked_at: None,
        };
        assert!(k.is_active(99));
        assert!(!k.is_active(100));
        k.expires_at = None;
        assert!(k.is_active(i64::MAX));
        k.revoked_at = Some(5);
        assert!(!k.is_active(0));
    }
}
