//! Session (and other bearer) tokens.
//!
//! A token is 32 random bytes (256 bits) as unpadded base64url, 43 characters. Store only
//! [`hash_token`] of it: tokens are high-entropy, so a plain SHA-256 (no salt, no slow
//! hash) is enough to make a stolen database useless for logging in, and it allows lookup
//! by hash. Compare stored and computed hashes with [`constant_time_eq`] if you compare
//! them outside the database.

use base64ct::{Base64UrlUnpadded, Encoding};
use subtle::ConstantTimeEq;

use crate::error::Result;
use crate::{fill_random, sha256};

/// Number of random bytes in a token.
pub const TOKEN_BYTES: usize = 32;

/// A new random session token: 32 bytes from the OS RNG as unpadded base64url.
///
/// # Errors
/// [`crate::Error::Rng`] if the RNG fails.
pub fn new_session_token() -> Result<String> {
    let mut bytes = zeroize::Zeroizing::new([0u8; TOKEN_BYTES]);
    fill_random(&mut bytes[..])?;
    Ok(Base64UrlUnpadded::encode_string(&bytes[..]))
}

/// SHA-256 of the token text, for storage and lookup.
#[must_use]
pub fn hash_token(token: &str) -> [u8; 32] {
    sha256(token.as_bytes())
}

/// Compares two byte strings in time that depends only on their lengths.
#[must_use]
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_url_safe_chars_and_unique() {
        let a = new_session_token().expect("rng");
        let b = new_session_token().expect("rng");
        assert_eq!(a.len(), 43);
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        assert_ne!(a, b);
        assert_eq!(
            Base64UrlUnpadded::decode_vec(&a).expect("decodes").len(),
            32
        );
    }

    #[test]
    fn hash_is_sha256_and_stable() {
        let t = new_session_token().expect("rng");
        assert_eq!(hash_token(&t), hash_token(&t));
        assert_ne!(hash_token(&t), hash_token(&format!("{t}x")));
        assert_eq!(
            base16ct::lower::encode_string(&hash_token("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
