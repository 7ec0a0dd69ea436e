//! # steward-crypto
//!
//! Key hierarchy, field encryption, blind indexes, password hashing, session tokens,
//! audit-chain MACs and streaming blob encryption for Steward.
//!
//! Every primitive comes from the RustCrypto project (`aes-gcm`, `aead-stream`, `hmac`,
//! `sha2`, `argon2`); this crate only chooses parameters, formats and key purposes.
//!
//! ## Key hierarchy
//!
//! ```text
//!                 MasterKey  (32 bytes; a 0600 file, or an environment variable)
//!                     │  AES-256-GCM key wrapping (`wrap` / `unwrap`)
//!     ┌───────────────┼──────────────────────┬──────────────────────┐
//!  DataKey (one per subject)         BlindIndexKey (one)        MacKey (one)
//!     │ AES-256-GCM per field,          HMAC-SHA256 of            HMAC-SHA256 chain
//!     │ STREAM for blobs                normalized identifiers    over audit records
//! ```
//!
//! * The **master key** never encrypts data itself. It only wraps (encrypts) the
//!   32-byte keys below it, and it is the only secret that must be kept outside the
//!   database. [`MasterKey::id`] is a non-secret fingerprint that is recorded in every
//!   wrapped key so that a wrong master key gives a clear error.
//! * Each data subject gets their own **data key** ([`DataKey`]). Their personal fields
//!   are encrypted with it ([`DataKey::encrypt`]) and so are their blobs
//!   ([`stream`]). Only the wrapped form ([`DataKey::wrap`]) is stored.
//! * A single **blind-index key** ([`BlindIndexKey`]) turns normalized identifiers
//!   (e-mail, phone, username; see [`normalize`]) into keyed hashes so subjects can be
//!   found by identifier without storing the identifier in clear.
//! * A single **audit MAC key** ([`MacKey`]) authenticates the audit hash chain.
//!
//! ## Crypto-shredding
//!
//! Deleting a subject's wrapped data key makes every copy of their ciphertext (database
//! rows, replicas, blobs, **backups**) permanently unreadable, because the only way to
//! the plaintext is through that key. This is how erasure requests are honoured for
//! copies that cannot practically be rewritten. (Blind indexes are keyed hashes, not
//! ciphertexts: delete the subject's index rows too.)
//!
//! ## Associated data
//!
//! Every encryption takes *associated data* (AAD) that is authenticated but not stored:
//! pass where the value lives, e.g. `b"subjects.email|<subject-id>"`. A ciphertext copied
//! to another row or column then fails to decrypt instead of silently decrypting as the
//! wrong person's data. AAD strings beginning with `steward-crypto/` are reserved for
//! this crate's internal use.
//!
//! ## Errors
//!
//! There is one [`Error`] type. Its messages never contain key material or plaintext
//! (normalization errors describe the problem without echoing the input).

mod error;
mod keys;
mod mac;
pub mod normalize;
pub mod password;
pub mod stream;
pub mod token;

pub use error::{Error, Result};
pub use keys::{
    BlindIndexKey, DataKey, IdentifierKind, KEY_LEN, MacKey, MasterKey, wrapped_key_master_id,
};
pub use mac::{hmac_sha256, sha256};
pub use normalize::NormalizeError;

/// Fills `buf` from the operating system's cryptographically secure RNG.
pub(crate) fn fill_random(buf: &mut [u8]) -> Result<()> {
    getrandom::fill(buf).map_err(Error::Rng)
}
