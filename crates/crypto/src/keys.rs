//! Key types: the master key, and the 32-byte keys it wraps.
//!
//! # Formats
//!
//! **Field ciphertext** ([`DataKey::encrypt`]), AES-256-GCM:
//!
//! ```text
//! 0x01 (version) || nonce (12 random bytes) || ciphertext (len = plaintext) || tag (16)
//! ```
//!
//! The AEAD associated data is exactly the caller's `aad`.
//!
//! **Wrapped key** ([`DataKey::wrap`], [`BlindIndexKey::wrap`], [`MacKey::wrap`]), 69 bytes,
//! AES-256-GCM under the master key:
//!
//! ```text
//! 0x01 (version) || master key id (8) || nonce (12 random bytes) || encrypted key (32) || tag (16)
//! ```
//!
//! The AEAD associated data is
//! `"steward-crypto/wrap/v1" || 0x00 || purpose || 0x00 || version || master key id || aad`,
//! where `purpose` is `data-key`, `blind-index-key` or `mac-key`, so a wrapped key of one
//! kind can never be unwrapped as another, nor moved to a different owner when the caller
//! passes e.g. the subject id as `aad`.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, AeadInOut, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64ct::{Base64, Base64Unpadded, Base64Url, Base64UrlUnpadded, Encoding};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::error::{Error, Result};
use crate::fill_random;
use crate::mac::{hmac_concat, hmac_sha256, hmac_sha256_verify};

/// Length in bytes of every key in this crate.
pub const KEY_LEN: usize = 32;

const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Version byte of field ciphertexts.
const FIELD_VERSION: u8 = 1;
/// Version byte of wrapped keys.
const WRAP_VERSION: u8 = 1;
/// Length of the raw master key id recorded in wrapped keys.
const MASTER_ID_LEN: usize = 8;
/// Total length of a wrapped key.
const WRAPPED_LEN: usize = 1 + MASTER_ID_LEN + NONCE_LEN + KEY_LEN + TAG_LEN;

/// Field ciphertext overhead: version byte, nonce and tag.
pub(crate) const FIELD_OVERHEAD: usize = 1 + NONCE_LEN + TAG_LEN;

const WRAP_AAD_LABEL: &[u8] = b"steward-crypto/wrap/v1\0";
const MASTER_ID_LABEL: &[u8] = b"steward-crypto/master-key-id/v1";

// ---------------------------------------------------------------------------------------
// Key32: the shared 32-byte secret.
// ---------------------------------------------------------------------------------------

/// 32 secret bytes, wiped from memory on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
struct Key32([u8; KEY_LEN]);

impl Key32 {
    fn generate() -> Result<Self> {
        let mut key = Key32([0u8; KEY_LEN]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    fn from_slice(bytes: &[u8], what: &str) -> Result<Self> {
        let arr: [u8; KEY_LEN] = bytes.try_into().map_err(|_| {
            Error::InvalidKey(format!(
                "{what} must be {KEY_LEN} bytes, got {} bytes",
                bytes.len()
            ))
        })?;
        Ok(Key32(arr))
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new((&self.0).into())
    }

    /// Encrypts `plaintext` with AES-256-GCM and a fresh random nonce, appending
    /// `nonce || ciphertext || tag` to `out`.
    fn seal_into(&self, aad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) -> Result<()> {
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        out.reserve(NONCE_LEN + plaintext.len() + TAG_LEN);
        out.extend_from_slice(&nonce);
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self
            .cipher()
            .encrypt_inout_detached(&Nonce::from(nonce), aad, (&mut out[start..]).into())
            .map_err(|_| Error::TooLong)?;
        out.extend_from_slice(&tag);
        Ok(())
    }

    /// Opens `nonce || ciphertext || tag` produced by [`Key32::seal_into`].
    fn open(&self, aad: &[u8], body: &[u8]) -> Result<Vec<u8>> {
        let Some((nonce, rest)) = body.split_first_chunk::<NONCE_LEN>() else {
            return Err(Error::Malformed("shorter than nonce and tag".into()));
        };
        if rest.len() < TAG_LEN {
            return Err(Error::Malformed("shorter than nonce and tag".into()));
        }
        self.cipher()
            .decrypt(nonce.into(), Payload { msg: rest, aad })
            .map_err(|_| Error::Decrypt)
    }
}

// ---------------------------------------------------------------------------------------
// MasterKey
// ---------------------------------------------------------------------------------------

/// The root key. It only wraps other keys ([`DataKey`], [`BlindIndexKey`], [`MacKey`]).
///
/// Zeroized on drop; `Debug` prints only its [`id`](MasterKey::id).
#[derive(Clone)]
pub struct MasterKey {
    key: Key32,
    id: [u8; MASTER_ID_LEN],
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id()).finish()
    }
}

impl MasterKey {
    fn from_key32(key: Key32) -> Self {
        let tag = hmac_concat(&key.0, &[MASTER_ID_LABEL]);
        let mut id = [0u8; MASTER_ID_LEN];
        id.copy_from_slice(&tag[..MASTER_ID_LEN]);
        MasterKey { key, id }
    }

    /// A new random master key from the operating system's RNG.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn generate() -> Result<MasterKey> {
        Ok(Self::from_key32(Key32::generate()?))
    }

    /// A master key from exactly 32 raw bytes.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if `bytes` is not 32 bytes long.
    pub fn from_bytes(bytes: &[u8]) -> Result<MasterKey> {
        Ok(Self::from_key32(Key32::from_slice(bytes, "master key")?))
    }

    /// Parses a master key written as base64 (standard or URL-safe alphabet, with or
    /// without padding) or as 64 hexadecimal characters. Surrounding whitespace is ignored.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] naming the expected forms and the length found (never the text).
    pub fn parse(text: &str) -> Result<MasterKey> {
        let t = text.trim();
        if t.is_empty() {
            return Err(Error::InvalidKey("master key text is empty".into()));
        }
        if t.len() == 2 * KEY_LEN && t.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut buf = Zeroizing::new([0u8; KEY_LEN]);
            base16ct::mixed::decode(t, &mut buf[..])
                .map_err(|_| Error::InvalidKey("master key is not valid hexadecimal".into()))?;
            return Self::from_bytes(&buf[..]);
        }
        let decoded = Base64::decode_vec(t)
            .or_else(|_| Base64Unpadded::decode_vec(t))
            .or_else(|_| Base64Url::decode_vec(t))
            .or_else(|_| Base64UrlUnpadded::decode_vec(t))
            .map(Zeroizing::new)
            .map_err(|_| {
                Error::InvalidKey(format!(
                    "master key must be 32 bytes written as base64 (44 characters, standard or \
                     URL-safe alphabet) or as 64 hexadecimal characters; got {} characters that \
                     are neither",
                    t.chars().count()
                ))
            })?;
        if decoded.len() != KEY_LEN {
            return Err(Error::InvalidKey(format!(
                "master key must be 32 bytes, but its base64 text decodes to {} bytes",
                decoded.len()
            )));
        }
        Self::from_bytes(&decoded)
    }

    /// Reads a master key from the environment variable `var`.
    ///
    /// Returns `Ok(None)` if the variable is not set.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] if it is set but is not valid Unicode or not a valid key
    /// (see [`MasterKey::parse`]).
    pub fn from_env(var: &str) -> Result<Option<MasterKey>> {
        match std::env::var_os(var) {
            None => Ok(None),
            Some(value) => {
                let text = Zeroizing::new(value.into_string().map_err(|_| {
                    Error::InvalidKey(format!("environment variable {var} is not valid Unicode"))
                })?);
                Self::parse(&text).map(Some).map_err(|err| match err {
                    Error::InvalidKey(msg) => {
                        Error::InvalidKey(format!("environment variable {var}: {msg}"))
                    }
                    other => other,
                })
            }
        }
    }

    /// The key as standard base64 with padding (44 characters). This is secret: the
    /// returned string is not wiped from memory, so drop it promptly.
    #[must_use]
    pub fn encode(&self) -> String {
        Base64::encode_string(&self.key.0)
    }

    /// A short, non-secret fingerprint: 16 hex characters, the first 8 bytes of
    /// HMAC-SHA256(key, `"steward-crypto/master-key-id/v1"`). Recorded in every wrapped
    /// key so that the master key that wrapped it can be identified.
    #[must_use]
    pub fn id(&self) -> String {
        base16ct::lower::encode_string(&self.id)
    }

    /// Loads the master key file at `path`, or creates it with a new random key if it does
    /// not exist. Returns the key and whether it was created.
    ///
    /// Creation makes missing parent directories (mode 0700 on Unix), writes the key as
    /// base64 to a temporary file with mode 0600 and links it into place atomically, so a
    /// concurrent reader never sees a partial file and two concurrent creators end up with
    /// the same key (the loser loads the winner's file).
    ///
    /// # Errors
    /// * [`Error::InsecurePermissions`] if an existing file can be read or written by group
    ///   or others (Unix). This is a deliberate refusal, like `ssh` does for private keys,
    ///   rather than a warning: fix it with `chmod 600`, or pass the key through the
    ///   environment ([`MasterKey::from_env`]).
    /// * [`Error::InvalidKey`] if the file does not hold a key.
    /// * [`Error::Io`] for file system errors, [`Error::Rng`] if the RNG fails.
    pub fn load_or_create(path: &Path) -> Result<(MasterKey, bool)> {
        match Self::read_from(path) {
            Ok(key) => return Ok((key, false)),
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
            Err(err) => return Err(err),
        }
        let key = Self::generate()?;
        match key.write_to(path) {
            Ok(()) => Ok((key, true)),
            // Another process created it between our read and our write: use theirs.
            Err(Error::AlreadyExists(_)) => Ok((Self::read_from(path)?, false)),
            Err(err) => Err(err),
        }
    }

    /// Reads a master key file written by [`MasterKey::write_to`] (or by hand: any form
    /// accepted by [`MasterKey::parse`]).
    ///
    /// # Errors
    /// As for [`MasterKey::load_or_create`]; a missing file is an [`Error::Io`] with kind
    /// `NotFound`.
    pub fn read_from(path: &Path) -> Result<MasterKey> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io_err)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o7777;
            if mode & 0o077 != 0 {
                return Err(Error::InsecurePermissions {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        let mut text = Zeroizing::new(String::with_capacity(128));
        file.take(4096).read_to_string(&mut text).map_err(io_err)?;
        Self::parse(&text).map_err(|err| match err {
            Error::InvalidKey(msg) => Error::InvalidKey(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    /// Writes the key (base64 and a newline) to a new file at `path` with mode 0600,
    /// atomically (temporary file in the same directory, fsync, then link into place).
    /// Missing parent directories are created with mode 0700.
    ///
    /// Refuses to replace an existing file: overwriting a master key would make everything
    /// it protects unreadable. Remove the old file deliberately first if that is intended.
    ///
    /// # Errors
    /// [`Error::AlreadyExists`] if `path` exists; [`Error::Io`] for other failures.
    pub fn write_to(&self, path: &Path) -> Result<()> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path.file_name().ok_or_else(|| {
            io_err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "path has no file name",
            ))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        create_private_dir_all(&dir).map_err(io_err)?;

        let mut suffix = [0u8; 8];
        fill_random(&mut suffix)?;
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(file_name);
        tmp_name.push(format!(
            ".tmp-{}-{}",
            std::process::id(),
            base16ct::lower::encode_string(&suffix)
        ));
        let tmp = dir.join(tmp_name);

        let result = self.write_tmp_and_link(&tmp, path, &dir);
        // Best effort: the temporary file is either linked into place or unwanted.
        let _ = std::fs::remove_file(&tmp);
        result
    }

    fn write_tmp_and_link(&self, tmp: &Path, path: &Path, dir: &Path) -> Result<()> {
        let io_err = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        {
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            let mut file = options.open(tmp).map_err(io_err)?;
            let mut text = Zeroizing::new(self.encode());
            text.push('\n');
            file.write_all(text.as_bytes()).map_err(io_err)?;
            file.sync_all().map_err(io_err)?;
        }
        // A hard link fails if the destination exists, which makes creation atomic and
        // non-clobbering. Fall back to a checked rename where hard links are unsupported.
        match std::fs::hard_link(tmp, path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(path.to_path_buf()));
            }
            Err(_) => {
                if std::fs::symlink_metadata(path).is_ok() {
                    return Err(Error::AlreadyExists(path.to_path_buf()));
                }
                std::fs::rename(tmp, path).map_err(io_err)?;
            }
        }
        #[cfg(unix)]
        {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err)?;
        }
        #[cfg(not(unix))]
        let _ = dir;
        Ok(())
    }

    /// Wraps a 32-byte key for `purpose`.
    fn wrap_key(&self, purpose: &[u8], key: &Key32, aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(WRAPPED_LEN);
        out.push(WRAP_VERSION);
        out.extend_from_slice(&self.id);
        let full_aad = wrap_aad(purpose, &out, aad);
        self.key.seal_into(&full_aad, &key.0, &mut out)?;
        Ok(out)
    }

    /// Unwraps a 32-byte key for `purpose`.
    fn unwrap_key(&self, purpose: &[u8], wrapped: &[u8], aad: &[u8]) -> Result<Key32> {
        let Some((&version, _)) = wrapped.split_first() else {
            return Err(Error::Malformed("wrapped key is empty".into()));
        };
        if version != WRAP_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "wrapped key",
                version,
            });
        }
        if wrapped.len() != WRAPPED_LEN {
            return Err(Error::Malformed(format!(
                "wrapped key must be {WRAPPED_LEN} bytes, got {}",
                wrapped.len()
            )));
        }
        let (header, body) = wrapped.split_at(1 + MASTER_ID_LEN);
        if header[1..] != self.id {
            return Err(Error::WrongMasterKey {
                expected: self.id(),
                found: base16ct::lower::encode_string(&header[1..]),
            });
        }
        let full_aad = wrap_aad(purpose, header, aad);
        let plain = Zeroizing::new(self.key.open(&full_aad, body)?);
        Key32::from_slice(&plain, "unwrapped key")
    }
}

fn wrap_aad(purpose: &[u8], header: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full =
        Vec::with_capacity(WRAP_AAD_LABEL.len() + purpose.len() + 1 + header.len() + aad.len());
    full.extend_from_slice(WRAP_AAD_LABEL);
    full.extend_from_slice(purpose);
    full.push(0);
    full.extend_from_slice(header);
    full.extend_from_slice(aad);
    full
}

/// The id (as from [`MasterKey::id`]) of the master key that wrapped `wrapped`, or `None`
/// if `wrapped` is not a wrapped key in a format this build knows. Useful for key rotation.
#[must_use]
pub fn wrapped_key_master_id(wrapped: &[u8]) -> Option<String> {
    if wrapped.len() != WRAPPED_LEN || wrapped.first() != Some(&WRAP_VERSION) {
        return None;
    }
    Some(base16ct::lower::encode_string(
        &wrapped[1..1 + MASTER_ID_LEN],
    ))
}

#[cfg(unix)]
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir_all(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

// ---------------------------------------------------------------------------------------
// Wrapped 32-byte keys: DataKey, BlindIndexKey, MacKey.
// ---------------------------------------------------------------------------------------

macro_rules! wrappable_key {
    ($name:ident, $purpose:literal, $what:literal) => {
        impl $name {
            const PURPOSE: &'static [u8] = $purpose;

            #[doc = concat!("A new random ", $what, " from the operating system's RNG.")]
            ///
            /// # Errors
            /// [`Error::Rng`] if the RNG fails.
            pub fn generate() -> Result<Self> {
                Ok(Self(Key32::generate()?))
            }

            #[doc = concat!("Encrypts this ", $what, " under `master` for storage.")]
            ///
            /// `aad` binds the wrapped key to its owner (e.g. the subject id): unwrapping
            /// with different `aad` fails. The result records [`MasterKey::id`].
            ///
            /// # Errors
            /// [`Error::Rng`] if the RNG fails.
            pub fn wrap(&self, master: &MasterKey, aad: &[u8]) -> Result<Vec<u8>> {
                master.wrap_key(Self::PURPOSE, &self.0, aad)
            }

            #[doc = concat!("Decrypts a ", $what, " produced by `wrap` with the same master key and `aad`.")]
            ///
            /// # Errors
            /// [`Error::WrongMasterKey`] if another master key wrapped it,
            /// [`Error::Decrypt`] if `aad` differs or it was tampered with (or is a
            /// different kind of wrapped key), [`Error::Malformed`] /
            /// [`Error::UnsupportedVersion`] if it is not a wrapped key.
            pub fn unwrap(master: &MasterKey, wrapped: &[u8], aad: &[u8]) -> Result<Self> {
                Ok(Self(master.unwrap_key(Self::PURPOSE, wrapped, aad)?))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

/// A per-subject AES-256-GCM key for personal fields ([`DataKey::encrypt`]) and blobs
/// ([`crate::stream`]). Stored only wrapped by the [`MasterKey`]; deleting the wrapped
/// copy crypto-shreds the subject's data. Zeroized on drop.
#[derive(Clone)]
pub struct DataKey(Key32);

wrappable_key!(DataKey, b"data-key", "data key");

impl DataKey {
    /// Encrypts a personal field with AES-256-GCM and a random 96-bit nonce.
    ///
    /// Output: `0x01 || nonce (12) || ciphertext || tag (16)`, i.e. 29 bytes longer than
    /// the plaintext. `aad` should name the value's place (e.g.
    /// `b"subjects.email|<subject-id>"`) so the ciphertext cannot be moved elsewhere.
    ///
    /// A single key should not encrypt more than about 2^32 values (random-nonce limit of
    /// NIST SP 800-38D); per-subject keys are far below that.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails, [`Error::TooLong`] past AES-GCM's size limits.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let mut out = Vec::with_capacity(FIELD_OVERHEAD + plaintext.len());
        out.push(FIELD_VERSION);
        self.0.seal_into(aad, plaintext, &mut out)?;
        Ok(out)
    }

    /// Decrypts a value produced by [`DataKey::encrypt`] with the same `aad`.
    ///
    /// # Errors
    /// [`Error::Decrypt`] on a wrong key, wrong `aad` or any modification;
    /// [`Error::Malformed`] / [`Error::UnsupportedVersion`] if it is not a field ciphertext.
    pub fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Vec<u8>> {
        let Some((&version, body)) = ciphertext.split_first() else {
            return Err(Error::Malformed("ciphertext is empty".into()));
        };
        if version != FIELD_VERSION {
            return Err(Error::UnsupportedVersion {
                what: "ciphertext",
                version,
            });
        }
        if ciphertext.len() < FIELD_OVERHEAD {
            return Err(Error::Malformed(format!(
                "ciphertext must be at least {FIELD_OVERHEAD} bytes, got {}",
                ciphertext.len()
            )));
        }
        self.0.open(aad, body)
    }

    /// [`DataKey::encrypt`] for text.
    ///
    /// # Errors
    /// As for [`DataKey::encrypt`].
    pub fn encrypt_str(&self, plaintext: &str, aad: &[u8]) -> Result<Vec<u8>> {
        self.encrypt(plaintext.as_bytes(), aad)
    }

    /// [`DataKey::decrypt`] for text encrypted with [`DataKey::encrypt_str`].
    ///
    /// # Errors
    /// As for [`DataKey::decrypt`], plus [`Error::NotUtf8`].
    pub fn decrypt_string(&self, ciphertext: &[u8], aad: &[u8]) -> Result<String> {
        let bytes = self.decrypt(ciphertext, aad)?;
        String::from_utf8(bytes).map_err(|err| {
            // Wipe the rejected plaintext before dropping it.
            let _wiped = Zeroizing::new(err.into_bytes());
            Error::NotUtf8
        })
    }
}

/// What kind of identifier a blind index is computed over. Each kind has its own label,
/// so the same string indexed as an e-mail and as a username gives unrelated indexes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IdentifierKind {
    /// An e-mail address, normalized by [`crate::normalize::email`].
    Email,
    /// A phone number in E.164, normalized by [`crate::normalize::phone`].
    Phone,
    /// A username, normalized by [`crate::normalize::username`].
    Username,
    /// Any other identifier kind. Its label is `"other:" + name`; `name` must not contain
    /// a NUL byte.
    Other(&'static str),
}

impl IdentifierKind {
    /// The label fed to the HMAC (`email`, `phone`, `username` or `other:<name>`).
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            IdentifierKind::Email => "email".into(),
            IdentifierKind::Phone => "phone".into(),
            IdentifierKind::Username => "username".into(),
            IdentifierKind::Other(name) => format!("other:{name}"),
        }
    }
}

/// The key for blind indexes: keyed hashes of normalized identifiers that allow lookup
/// by equality without storing identifiers in clear. Zeroized on drop.
#[derive(Clone)]
pub struct BlindIndexKey(Key32);

wrappable_key!(BlindIndexKey, b"blind-index-key", "blind-index key");

impl BlindIndexKey {
    /// HMAC-SHA256(key, label || 0x00 || normalized), with the label from
    /// [`IdentifierKind::label`].
    ///
    /// Normalize first (see [`crate::normalize`]): the index is only as stable as its input.
    #[must_use]
    pub fn index(&self, kind: IdentifierKind, normalized: &str) -> [u8; 32] {
        let label = kind.label();
        hmac_concat(
            &self.0.0,
            &[label.as_bytes(), &[0u8], normalized.as_bytes()],
        )
    }
}

/// The key authenticating the audit hash chain. Zeroized on drop.
#[derive(Clone)]
pub struct MacKey(Key32);

wrappable_key!(MacKey, b"mac-key", "audit MAC key");

impl MacKey {
    /// [`crate::hmac_sha256`] keyed with this key (each part length-prefixed).
    #[must_use]
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 32] {
        hmac_sha256(&self.0.0, parts)
    }

    /// Checks `tag` against [`MacKey::mac`] of `parts` in constant time.
    #[must_use]
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        hmac_sha256_verify(&self.0.0, parts, tag)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn master() -> MasterKey {
        MasterKey::generate().expect("rng")
    }

    #[test]
    fn field_round_trip_and_format() {
        let key = DataKey::generate().expect("rng");
        let aad = b"subjects.email|subj-1";
        let ct = key.encrypt(b"alice@example.com", aad).expect("encrypt");
        assert_eq!(ct.len(), 1 + 12 + 17 + 16);
        assert_eq!(ct[0], FIELD_VERSION);
        assert_eq!(
            key.decrypt(&ct, aad).expect("decrypt"),
            b"alice@example.com"
        );
        // Random nonces: same input, different ciphertext.
        assert_ne!(ct, key.encrypt(b"alice@example.com", aad).expect("encrypt"));
        // Empty plaintext works too.
        let empty = key.encrypt(b"", aad).expect("encrypt");
        assert_eq!(empty.len(), FIELD_OVERHEAD);
        assert_eq!(key.decrypt(&empty, aad).expect("decrypt"), b"");
    }

    #[test]
    fn string_round_trip() {
        let key = DataKey::generate().expect("rng");
        let ct = key
            .encrypt_str("Zoë O'Brien", b"subjects.name|s1")
            .expect("encrypt");
        assert_eq!(
            key.decrypt_string(&ct, b"subjects.name|s1")
                .expect("decrypt"),
            "Zoë O'Brien"
        );
        let bad = key.encrypt(&[0xff, 0xfe], b"x").expect("encrypt");
        assert!(matches!(
            key.decrypt_string(&bad, b"x"),
            Err(Error::NotUtf8)
        ));
    }

    #[test]
    fn field_decrypt_rejects_wrong_key_aad_and_tampering() {
        let key = DataKey::generate().expect("rng");
        let other = DataKey::generate().expect("rng");
        let aad = b"subjects.email|subj-1";
        let ct = key.encrypt(b"secret value", aad).expect("encrypt");

        assert!(matches!(other.decrypt(&ct, aad), Err(Error::Decrypt)));
        assert!(matches!(
            key.decrypt(&ct, b"subjects.email|subj-2"),
            Err(Error::Decrypt)
        ));
        assert!(matches!(key.decrypt(&ct, b""), Err(Error::Decrypt)));

        // Flip every bit after the version byte, one at a time.
        for i in 1..ct.len() {
            for bit in 0..8 {
                let mut bad = ct.clone();
                bad[i] ^= 1 << bit;
                assert!(
                    matches!(key.decrypt(&bad, aad), Err(Error::Decrypt)),
                    "flip byte {i} bit {bit}"
                );
            }
        }
        // Version byte.
        let mut bad = ct.clone();
        bad[0] = 2;
        assert!(matches!(
            key.decrypt(&bad, aad),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        // Truncation, at every length.
        for len in 0..ct.len() {
            assert!(key.decrypt(&ct[..len], aad).is_err(), "truncated to {len}");
        }
        // Extension.
        let mut longer = ct.clone();
        longer.push(0);
        assert!(key.decrypt(&longer, aad).is_err());
    }

    #[test]
    fn error_messages_do_not_leak_plaintext() {
        let key = DataKey::generate().expect("rng");
        let ct = key.encrypt(b"PLAINTEXT-MARKER", b"a").expect("encrypt");
        let err = key.decrypt(&ct, b"b").expect_err("wrong aad");
        assert!(!format!("{err} {err:?}").contains("PLAINTEXT-MARKER"));
    }

    #[test]
    fn wrap_unwrap_round_trip_for_all_key_kinds() {
        let m = master();
        let dk = DataKey::generate().expect("rng");
        let wrapped = dk.wrap(&m, b"subject:42").expect("wrap");
        assert_eq!(wrapped.len(), WRAPPED_LEN);
        assert_eq!(wrapped_key_master_id(&wrapped), Some(m.id()));
        let back = DataKey::unwrap(&m, &wrapped, b"subject:42").expect("unwrap");
        let ct = dk.encrypt(b"x", b"y").expect("encrypt");
        assert_eq!(back.decrypt(&ct, b"y").expect("decrypt"), b"x");

        let bk = BlindIndexKey::generate().expect("rng");
        let w = bk.wrap(&m, b"").expect("wrap");
        let bk2 = BlindIndexKey::unwrap(&m, &w, b"").expect("unwrap");
        assert_eq!(
            bk.index(IdentifierKind::Email, "a@b.c"),
            bk2.index(IdentifierKind::Email, "a@b.c")
        );

        let mk = MacKey::generate().expect("rng");
        let w = mk.wrap(&m, b"audit").expect("wrap");
        let mk2 = MacKey::unwrap(&m, &w, b"audit").expect("unwrap");
        let tag = mk.mac(&[b"record-1", b"prev"]);
        assert_eq!(tag, mk2.mac(&[b"record-1", b"prev"]));
        assert!(mk2.verify(&[b"record-1", b"prev"], &tag));
        assert!(!mk2.verify(&[b"record-1", b"prev2"], &tag));
    }

    #[test]
    fn unwrap_fails_with_other_master_aad_kind_or_tampering() {
        let m = master();
        let other = master();
        assert_ne!(m.id(), other.id());
        let dk = DataKey::generate().expect("rng");
        let wrapped = dk.wrap(&m, b"subject:42").expect("wrap");

        match DataKey::unwrap(&other, &wrapped, b"subject:42") {
            Err(Error::WrongMasterKey { expected, found }) => {
                assert_eq!(expected, other.id());
                assert_eq!(found, m.id());
            }
            other => panic!("expected WrongMasterKey, got {other:?}"),
        }
        // Even if the recorded id is forged to match, the key itself does not open it.
        let mut forged = wrapped.clone();
        forged[1..1 + MASTER_ID_LEN].copy_from_slice(&other.id);
        assert!(matches!(
            DataKey::unwrap(&other, &forged, b"subject:42"),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            DataKey::unwrap(&m, &wrapped, b"subject:43"),
            Err(Error::Decrypt)
        ));
        // A wrapped data key cannot be unwrapped as another kind of key.
        assert!(matches!(
            BlindIndexKey::unwrap(&m, &wrapped, b"subject:42"),
            Err(Error::Decrypt)
        ));
        assert!(matches!(
            MacKey::unwrap(&m, &wrapped, b"subject:42"),
            Err(Error::Decrypt)
        ));
        for i in 1 + MASTER_ID_LEN..wrapped.len() {
            let mut bad = wrapped.clone();
            bad[i] ^= 0x01;
            assert!(
                DataKey::unwrap(&m, &bad, b"subject:42").is_err(),
                "byte {i}"
            );
        }
        assert!(matches!(
            DataKey::unwrap(&m, &wrapped[..WRAPPED_LEN - 1], b"subject:42"),
            Err(Error::Malformed(_))
        ));
        assert!(matches!(
            DataKey::unwrap(&m, &[], b"subject:42"),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn blind_index_stable_and_separated() {
        let k1 = BlindIndexKey::generate().expect("rng");
        let k2 = BlindIndexKey::generate().expect("rng");
        let a = k1.index(IdentifierKind::Email, "alice@example.com");
        assert_eq!(a, k1.index(IdentifierKind::Email, "alice@example.com"));
        assert_ne!(a, k2.index(IdentifierKind::Email, "alice@example.com"));
        assert_ne!(a, k1.index(IdentifierKind::Username, "alice@example.com"));
        assert_ne!(a, k1.index(IdentifierKind::Email, "alice@example.org"));
        let p = k1.index(IdentifierKind::Phone, "+447700900123");
        assert_ne!(p, k1.index(IdentifierKind::Username, "+447700900123"));
        assert_ne!(p, k1.index(IdentifierKind::Other("phone"), "+447700900123"));
        assert_ne!(
            k1.index(IdentifierKind::Other("imei"), "1"),
            k1.index(IdentifierKind::Other("imsi"), "1")
        );
        assert_eq!(IdentifierKind::Other("imei").label(), "other:imei");
    }

    #[test]
    fn blind_index_matches_documented_formula() {
        let key = BlindIndexKey(Key32([9u8; KEY_LEN]));
        let expected = hmac_concat(&[9u8; KEY_LEN], &[b"email\0alice@example.com"]);
        assert_eq!(
            key.index(IdentifierKind::Email, "alice@example.com"),
            expected
        );
    }

    #[test]
    fn master_key_parse_forms() {
        let m = master();
        let b64 = m.encode();
        assert_eq!(b64.len(), 44);
        assert_eq!(MasterKey::parse(&b64).expect("std").id(), m.id());
        assert_eq!(
            MasterKey::parse(&format!("  {b64}\n"))
                .expect("trimmed")
                .id(),
            m.id()
        );
        let url = Base64UrlUnpadded::encode_string(&m.key.0);
        assert_eq!(MasterKey::parse(&url).expect("url").id(), m.id());
        let url_padded = Base64Url::encode_string(&m.key.0);
        assert_eq!(
            MasterKey::parse(&url_padded).expect("url padded").id(),
            m.id()
        );
        let unpadded = Base64Unpadded::encode_string(&m.key.0);
        assert_eq!(MasterKey::parse(&unpadded).expect("unpadded").id(), m.id());
        let hex = base16ct::lower::encode_string(&m.key.0);
        assert_eq!(MasterKey::parse(&hex).expect("hex").id(), m.id());
        assert_eq!(
            MasterKey::parse(&hex.to_uppercase()).expect("HEX").id(),
            m.id()
        );
        assert_eq!(MasterKey::from_bytes(&m.key.0).expect("bytes").id(), m.id());
    }

    #[test]
    fn master_key_parse_rejects_wrong_lengths_clearly() {
        let short = Base64::encode_string(&[1u8; 31]);
        let msg = MasterKey::parse(&short).expect_err("31").to_string();
        assert!(
            msg.contains("32 bytes") && msg.contains("decodes to 31 bytes"),
            "{msg}"
        );

        let long = Base64::encode_string(&[1u8; 33]);
        let msg = MasterKey::parse(&long).expect_err("33").to_string();
        assert!(msg.contains("decodes to 33 bytes"), "{msg}");

        let hex62 = "ab".repeat(31);
        let msg = MasterKey::parse(&hex62).expect_err("62 hex").to_string();
        assert!(msg.contains("32 bytes"), "{msg}");

        let msg = MasterKey::parse("not a key!")
            .expect_err("junk")
            .to_string();
        assert!(
            msg.contains("base64") && msg.contains("64 hexadecimal"),
            "{msg}"
        );
        assert!(
            !msg.contains("not a key!"),
            "must not echo the input: {msg}"
        );

        let msg = MasterKey::parse("   ").expect_err("empty").to_string();
        assert!(msg.contains("empty"), "{msg}");

        let msg = MasterKey::from_bytes(&[0u8; 16])
            .expect_err("16")
            .to_string();
        assert!(msg.contains("must be 32 bytes, got 16"), "{msg}");
    }

    #[test]
    fn debug_never_prints_key_material() {
        let m = MasterKey::from_bytes(&[0xAB; KEY_LEN]).expect("bytes");
        let dbg = format!("{m:?}");
        assert!(dbg.contains(&m.id()), "{dbg}");
        assert!(!dbg.to_lowercase().contains("abab"), "{dbg}");
        assert!(!dbg.contains(&m.encode()), "{dbg}");
        let d = format!(
            "{:?} {:?} {:?}",
            DataKey(Key32([0xAB; KEY_LEN])),
            BlindIndexKey(Key32([0xAB; KEY_LEN])),
            MacKey(Key32([0xAB; KEY_LEN]))
        );
        assert!(
            !d.contains("171") && !d.to_lowercase().contains("ab,"),
            "{d}"
        );
    }

    #[test]
    fn master_id_is_16_hex_and_deterministic() {
        let m = MasterKey::from_bytes(&[1u8; KEY_LEN]).expect("bytes");
        let id = m.id();
        assert_eq!(id.len(), 16);
        assert!(id.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(
            id,
            MasterKey::from_bytes(&[1u8; KEY_LEN]).expect("bytes").id()
        );
        assert_ne!(
            id,
            MasterKey::from_bytes(&[2u8; KEY_LEN]).expect("bytes").id()
        );
    }

    #[cfg(unix)]
    #[test]
    fn key_file_created_0600_and_reloads() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("nested/keys/master.key");
        let (k1, created) = MasterKey::load_or_create(&path).expect("create");
        assert!(created);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let parent_mode = std::fs::metadata(path.parent().expect("parent"))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(parent_mode, 0o700);
        let (k2, created) = MasterKey::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(k1.id(), k2.id());
        assert_eq!(MasterKey::read_from(&path).expect("read").id(), k1.id());
        // No temporary files left behind.
        let entries: Vec<_> = std::fs::read_dir(path.parent().expect("parent"))
            .expect("read_dir")
            .collect();
        assert_eq!(entries.len(), 1);
        // The file holds base64 text.
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(text.trim(), k1.encode());
    }

    #[cfg(unix)]
    #[test]
    fn write_to_refuses_to_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let k1 = master();
        k1.write_to(&path).expect("write");
        let k2 = master();
        assert!(matches!(k2.write_to(&path), Err(Error::AlreadyExists(_))));
        assert_eq!(MasterKey::read_from(&path).expect("read").id(), k1.id());
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 1);
    }

    #[cfg(unix)]
    #[test]
    fn refuses_group_or_world_readable_key_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        master().write_to(&path).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        match MasterKey::load_or_create(&path) {
            Err(Error::InsecurePermissions { mode, .. }) => assert_eq!(mode, 0o644),
            other => panic!("expected InsecurePermissions, got {other:?}"),
        }
        let msg = MasterKey::read_from(&path)
            .expect_err("insecure")
            .to_string();
        assert!(msg.contains("chmod 600"), "{msg}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).expect("chmod");
        assert!(MasterKey::read_from(&path).is_ok());
    }

    #[cfg(unix)]
    #[test]
    fn hand_written_hex_key_file_loads_and_bad_file_is_reported() {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("master.key");
        let hex = "0f".repeat(32);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .expect("open");
        f.write_all(format!("{hex}\n").as_bytes()).expect("write");
        drop(f);
        let (k, created) = MasterKey::load_or_create(&path).expect("load");
        assert!(!created);
        assert_eq!(
            k.id(),
            MasterKey::from_bytes(&[0x0f; 32]).expect("bytes").id()
        );

        let bad = dir.path().join("bad.key");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&bad)
            .expect("open");
        f.write_all(b"short\n").expect("write");
        drop(f);
        let msg = MasterKey::load_or_create(&bad)
            .expect_err("bad")
            .to_string();
        assert!(msg.contains("bad.key"), "{msg}");
    }

    #[test]
    fn from_env_reads_and_reports() {
        // Only variables that already exist are read: setting variables in a
        // multi-threaded test process is not sound.
        assert!(
            MasterKey::from_env("STEWARD_CRYPTO_TEST_SURELY_UNSET_1F2E")
                .expect("ok")
                .is_none()
        );
        if std::env::var_os("PATH").is_some() {
            let msg = MasterKey::from_env("PATH")
                .expect_err("not a key")
                .to_string();
            assert!(
                msg.starts_with("invalid key: environment variable PATH:"),
                "{msg}"
            );
        }
    }
}
