//! The crate's single error type.

use std::path::PathBuf;

use crate::normalize::NormalizeError;

/// Result alias using [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `steward-crypto`.
///
/// Messages never include key material or plaintext; they may include lengths, format
/// versions, file paths and the non-secret key ids from [`crate::MasterKey::id`].
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator failed: {0}")]
    Rng(getrandom::Error),

    /// Key text or bytes could not be used as a key.
    #[error("invalid key: {0}")]
    InvalidKey(String),

    /// Authentication failed: wrong key, wrong associated data, or a corrupted or
    /// tampered ciphertext. Deliberately does not say which.
    #[error(
        "decryption failed: wrong key, wrong associated data, or corrupted or tampered ciphertext"
    )]
    Decrypt,

    /// A chunk of an encrypted blob failed authentication.
    #[error(
        "encrypted blob chunk {index} failed authentication: the blob was truncated, reordered \
         or tampered with, or the key or associated data is wrong"
    )]
    ChunkDecrypt {
        /// Zero-based chunk position.
        index: u64,
    },

    /// The ciphertext or wrapped key does not have the expected structure.
    #[error("malformed ciphertext: {0}")]
    Malformed(String),

    /// The ciphertext or wrapped key starts with a format version this build does not know.
    #[error("unsupported {what} format version {version}")]
    UnsupportedVersion {
        /// What was being read ("ciphertext", "wrapped key", "stream header").
        what: &'static str,
        /// The version byte found.
        version: u8,
    },

    /// A wrapped key was produced under a different master key.
    #[error("this key was wrapped by master key {found}, but the loaded master key is {expected}")]
    WrongMasterKey {
        /// Id of the master key in use.
        expected: String,
        /// Id recorded in the wrapped key.
        found: String,
    },

    /// Plaintext or associated data exceed AES-GCM's limits (about 64 GiB of plaintext).
    #[error("plaintext or associated data too long for AES-256-GCM")]
    TooLong,

    /// Reading or writing a key file failed.
    #[error("key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// A master key file may be read or written by group or others.
    #[error(
        "master key file {path} has mode {mode:04o}, which lets group or others access it; \
         run `chmod 600 {path}` (or supply the key through the environment instead)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },

    /// Refused to overwrite an existing master key file.
    #[error(
        "master key file {0} already exists; refusing to overwrite it (losing a master key makes \
         all data it protects unreadable)"
    )]
    AlreadyExists(PathBuf),

    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    PasswordHash(String),

    /// Misuse of, or a framing problem in, the streaming API.
    #[error("stream: {0}")]
    Stream(String),

    /// A decrypted value was expected to be UTF-8 text but is not.
    #[error("decrypted value is not valid UTF-8")]
    NotUtf8,

    /// An identifier failed normalization.
    #[error(transparent)]
    Normalize(#[from] NormalizeError),
}

impl From<Error> for std::io::Error {
    /// Keeps the I/O error kind for [`Error::Io`]; everything else becomes
    /// [`std::io::ErrorKind::InvalidData`] with the [`Error`] as its source.
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Io { source, .. } => source.kind(),
            _ => std::io::ErrorKind::InvalidData,
        };
        std::io::Error::new(kind, err)
    }
}
