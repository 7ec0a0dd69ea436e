//! HMAC-SHA256 and SHA-256 helpers.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// A fresh HMAC-SHA256 instance keyed with `key`.
#[allow(
    clippy::expect_used,
    reason = "HMAC accepts keys of any length (RFC 2104): hmac's `new_from_slice` never returns Err"
)]
fn keyed(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC accepts keys of any length")
}

/// HMAC-SHA256 over the plain concatenation of `data` (no framing).
///
/// Callers must make the concatenation unambiguous themselves.
pub(crate) fn hmac_concat(key: &[u8], data: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed(key);
    for d in data {
        mac.update(d);
    }
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA256 over `parts`, each preceded by its length as a big-endian `u64`.
///
/// The length prefix makes the encoding injective, so `["ab", "c"]` and `["a", "bc"]`
/// (or `["abc"]`) give different MACs. Used for the audit hash chain (see
/// [`crate::MacKey::mac`], which is this function keyed with the audit key).
#[must_use]
pub fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// Verifies, in constant time, a tag produced by [`hmac_sha256`].
#[must_use]
pub(crate) fn hmac_sha256_verify(key: &[u8], parts: &[&[u8]], tag: &[u8]) -> bool {
    let mut mac = keyed(key);
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    mac.verify_slice(tag).is_ok()
}

/// SHA-256 of `data`.
#[must_use]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    Sha256::digest(data).into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        base16ct::lower::encode_string(bytes)
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex(&sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn hmac_matches_rfc4231_case_2_when_unframed() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        let tag = hmac_concat(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(
            hex(&tag),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn framed_hmac_is_injective() {
        let key = [7u8; 32];
        let a = hmac_sha256(&key, &[b"ab", b"c"]);
        let b = hmac_sha256(&key, &[b"a", b"bc"]);
        let c = hmac_sha256(&key, &[b"abc"]);
        let d = hmac_sha256(&key, &[b"abc", b""]);
        assert_ne!(a, b);
        assert_ne!(a, c);
        assert_ne!(b, c);
        assert_ne!(c, d);
        assert_eq!(a, hmac_sha256(&key, &[b"ab", b"c"]));
        assert_ne!(a, hmac_sha256(&[8u8; 32], &[b"ab", b"c"]));
        assert!(hmac_sha256_verify(&key, &[b"ab", b"c"], &a));
        assert!(!hmac_sha256_verify(&key, &[b"a", b"bc"], &a));
        assert!(!hmac_sha256_verify(&key, &[b"ab", b"c"], &a[..31]));
    }
}
