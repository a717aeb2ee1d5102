//! Encryption of stored Trackly API keys, and the masked form shown to users.
//!
//! Each value is sealed with XChaCha20-Poly1305 under a random 192-bit nonce, which is large
//! enough that random nonces never repeat in practice. The Discord user id is bound in as
//! associated data, so a sealed key copied to another user's row fails to open.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use zeroize::Zeroizing;

const NONCE_LEN: usize = 24;

/// A sealed API key as stored: which key sealed it, and the nonce followed by the ciphertext.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedKey {
    pub key_id: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("the stored key was sealed with encryption key id {0:?}, which is not configured")]
    UnknownKeyId(String),
    #[error("the stored key failed authentication; it was altered or belongs to another user")]
    Authentication,
}

pub struct KeyCipher {
    key_id: String,
    cipher: XChaCha20Poly1305,
}

impl KeyCipher {
    pub fn new(key: &[u8; 32], key_id: impl Into<String>) -> Self {
        Self {
            key_id: key_id.into(),
            cipher: XChaCha20Poly1305::new(key.into()),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    /// Seals `api_key` for the Discord user `owner_id`.
    pub fn seal(&self, api_key: &str, owner_id: u64) -> SealedKey {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = associated_data(&self.key_id, owner_id);
        let ciphertext = self
            .cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: api_key.as_bytes(),
                    aad: &aad,
                },
            )
            // Encryption fails only for messages near 2^38 bytes, far beyond an API key.
            .expect("XChaCha20-Poly1305 encryption of a short message");
        let mut bytes = nonce.to_vec();
        bytes.extend_from_slice(&ciphertext);
        SealedKey {
            key_id: self.key_id.clone(),
            bytes,
        }
    }

    /// Opens a value sealed by [`KeyCipher::seal`] for the same user.
    pub fn open(
        &self,
        sealed: &SealedKey,
        owner_id: u64,
    ) -> Result<Zeroizing<String>, CryptoError> {
        if sealed.key_id != self.key_id {
            return Err(CryptoError::UnknownKeyId(sealed.key_id.clone()));
        }
        if sealed.bytes.len() <= NONCE_LEN {
            return Err(CryptoError::Authentication);
        }
        let (nonce, ciphertext) = sealed.bytes.split_at(NONCE_LEN);
        let aad = associated_data(&self.key_id, owner_id);
        let plaintext = Zeroizing::new(
            self.cipher
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::Authentication)?,
        );
        String::from_utf8(plaintext.to_vec())
            .map(Zeroizing::new)
            .map_err(|_| CryptoError::Authentication)
    }
}

fn associated_data(key_id: &str, owner_id: u64) -> Vec<u8> {
    format!("trackly-bot/api-key/v1/{key_id}/{owner_id}").into_bytes()
}

/// Masks an API key for display as `trk_…a1b2`: the prefix and the last four characters only.
pub fn mask_api_key(api_key: &str) -> String {
    let chars: Vec<char> = api_key.chars().collect();
    if chars.len() < 12 {
        return "trk_…".to_owned();
    }
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("trk_…{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "trk_AbCdAbCdAbCdAbCd0123012301230123";

    fn cipher() -> KeyCipher {
        KeyCipher::new(&[7u8; 32], "k1")
    }

    #[test]
    fn seal_open_round_trip() {
        let cipher = cipher();
        let sealed = cipher.seal(KEY, 42);
        assert_eq!(sealed.key_id, "k1");
        assert_eq!(cipher.open(&sealed, 42).unwrap().as_str(), KEY);
    }

    #[test]
    fn sealed_bytes_hide_key() {
        let sealed = cipher().seal(KEY, 42);
        let needle = &KEY.as_bytes()[4..];
        assert!(!sealed.bytes.windows(needle.len()).any(|w| w == needle));
    }

    #[test]
    fn nonce_differs_per_seal() {
        let cipher = cipher();
        assert_ne!(cipher.seal(KEY, 42).bytes, cipher.seal(KEY, 42).bytes);
    }

    #[test]
    fn open_rejects_other_user() {
        let cipher = cipher();
        let sealed = cipher.seal(KEY, 42);
        assert_eq!(
            cipher.open(&sealed, 43).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn open_rejects_tampering_and_truncation() {
        let cipher = cipher();
        let mut sealed = cipher.seal(KEY, 42);
        let last = sealed.bytes.len() - 1;
        sealed.bytes[last] ^= 1;
        assert_eq!(
            cipher.open(&sealed, 42).unwrap_err(),
            CryptoError::Authentication
        );
        sealed.bytes.truncate(10);
        assert_eq!(
            cipher.open(&sealed, 42).unwrap_err(),
            CryptoError::Authentication
        );
    }

    #[test]
    fn open_rejects_other_key_id() {
        let sealed = cipher().seal(KEY, 42);
        let other = KeyCipher::new(&[7u8; 32], "k2");
        assert_eq!(
            other.open(&sealed, 42).unwrap_err(),
            CryptoError::UnknownKeyId("k1".into())
        );
    }

    #[test]
    fn mask_shows_last_four() {
        assert_eq!(mask_api_key(KEY), "trk_…0123");
        assert_eq!(mask_api_key("short"), "trk_…");
    }
}
