//! Password hashing with Argon2id.
//!
//! [`hash`] uses the `argon2` crate's defaults, which are OWASP's recommendation:
//! Argon2id v19, m = 19456 KiB, t = 2, p = 1, a random 16-byte salt, 32-byte output,
//! encoded as a PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). One hash takes tens of
//! milliseconds and 19 MiB of memory: cap concurrent hashing and rate-limit logins.
//!
//! To avoid revealing which accounts exist, call [`dummy_verify`] when the user is
//! unknown: it costs the same as [`verify`].

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

use crate::error::{Error, Result};

/// Minimum password length in characters.
pub const MIN_LEN: usize = 10;
/// Maximum password length in characters (bounds the work done for one login attempt).
pub const MAX_LEN: usize = 1024;

/// Fixed salt for [`dummy_verify`]; its output is discarded, so it need not be secret.
const DUMMY_SALT: &[u8] = b"steward-dummy-salt-v1";

/// Hashes `password` with Argon2id and a fresh random salt; returns the PHC string.
///
/// # Errors
/// [`Error::PasswordHash`] if the RNG or the hash fails (e.g. out of memory).
pub fn hash(password: &str) -> Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|err| Error::PasswordHash(err.to_string()))
}

/// Checks `password` against a PHC string from [`hash`], in constant time with respect to
/// the password. Parameters are taken from the PHC string, so hashes made with older
/// parameters still verify. A malformed PHC string verifies as `false` (after spending the
/// same time as a real check).
#[must_use]
pub fn verify(phc: &str, password: &str) -> bool {
    match argon2::PasswordHash::new(phc) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => {
            dummy_verify(password);
            false
        }
    }
}

/// Does the work of one [`verify`] with default parameters and throws the result away.
/// Call it when the account does not exist so that the response time does not tell.
pub fn dummy_verify(password: &str) {
    let _ = Argon2::default().hash_password_with_salt(password.as_bytes(), DUMMY_SALT);
}

/// The password policy: at least [`MIN_LEN`] and at most [`MAX_LEN`] characters.
///
/// # Errors
/// A message for the user saying which limit was missed.
pub fn check_strength(password: &str) -> Result<(), String> {
    let n = password.chars().count();
    if n < MIN_LEN {
        return Err(format!(
            "password is too short: use at least {MIN_LEN} characters (a few random words work well)"
        ));
    }
    if n > MAX_LEN {
        return Err(format!(
            "password is too long: use at most {MAX_LEN} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn hash_is_argon2id_with_default_params_and_verifies() {
        let phc = hash("correct horse battery staple").expect("hash");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(verify(&phc, "correct horse battery staple"));
        assert!(!verify(&phc, "correct horse battery stapler"));
        assert!(!verify(&phc, ""));
    }

    #[test]
    fn salts_differ() {
        let a = hash("same password here").expect("hash");
        let b = hash("same password here").expect("hash");
        assert_ne!(a, b);
    }

    #[test]
    fn malformed_phc_does_not_verify() {
        assert!(!verify("not a phc string", "whatever password"));
        assert!(!verify("", "whatever password"));
        dummy_verify("anything at all");
    }

    #[test]
    fn strength_policy() {
        assert!(
            check_strength("123456789")
                .expect_err("9")
                .contains("at least 10")
        );
        assert!(check_strength("1234567890").is_ok());
        assert!(check_strength("ééééééééé").is_err());
        assert!(check_strength(&"x".repeat(1024)).is_ok());
        assert!(
            check_strength(&"x".repeat(1025))
                .expect_err("long")
                .contains("at most 1024")
        );
    }
}
