//! Streaming encryption of arbitrarily large blobs in constant memory.
//!
//! Blobs are cut into 64 KiB chunks and encrypted with the STREAM construction
//! (Hoang, Reyhanitabar, Rogaway, Vizár, "Online Authenticated-Encryption and its
//! Nonce-Reuse Misuse-Resistance", 2015) as implemented by RustCrypto's `aead-stream`
//! crate (`StreamBE32` flavour) over AES-256-GCM. Each chunk's nonce contains its
//! position and a "last chunk" flag, so reordering, dropping, duplicating or truncating
//! chunks is detected.
//!
//! Every blob gets its own random 256-bit *file key*, stored in the header encrypted
//! under the subject's [`DataKey`] (envelope encryption). Deleting the subject's data key
//! therefore shreds their blobs too, and no two blobs ever share a STREAM key.
//!
//! # On-disk format (version 1)
//!
//! ```text
//! header (73 bytes):
//!   magic "STWB" (4) || version 0x01 (1) || nonce prefix (7 random bytes)
//!   || wrapped file key (61) = DataKey::encrypt(file key, aad =
//!        "steward-crypto/stream/v1" || 0x00 || magic || version || nonce prefix || caller aad)
//! chunks:
//!   chunk 0 .. chunk n-2: exactly 65536 + 16 bytes each (ciphertext || GCM tag)
//!   chunk n-1 (last):     16 ..= 65536 + 16 bytes
//! chunk i = AES-256-GCM(file key,
//!                       nonce = nonce prefix || i as big-endian u32 || (1 if last else 0),
//!                       aad = empty, plaintext chunk i)
//! ```
//!
//! There is always at least one chunk; empty input gives a single empty last chunk.
//! [`encrypt_reader_to_writer`] never emits an empty last chunk after full ones (a blob
//! whose length is a multiple of 64 KiB ends with a full last chunk), but decryption
//! accepts either. The total length is [`encrypted_len`].
//!
//! # Trust in partial output
//!
//! Decryption authenticates each chunk before releasing it, but truncation is only known
//! at the end. Treat what a decryptor has produced as provisional until the last chunk has
//! decrypted successfully ([`StreamDecryptor::finish`] or [`decrypt_reader_to_writer`]
//! returned `Ok`); e.g. write to a temporary file and rename it only then.

use std::fmt;
use std::io::{self, Read, Write};

use aead_stream::{DecryptorBE32, EncryptorBE32};
use aes_gcm::Aes256Gcm;
use aes_gcm::aead::KeyInit;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::fill_random;
use crate::keys::{DataKey, FIELD_OVERHEAD, KEY_LEN};

/// Plaintext bytes per chunk (64 KiB).
pub const CHUNK_SIZE: usize = 64 * 1024;
/// GCM tag bytes added to every chunk.
pub const TAG_SIZE: usize = 16;
/// Ciphertext bytes of every chunk but the last.
pub const ENCRYPTED_CHUNK_SIZE: usize = CHUNK_SIZE + TAG_SIZE;

const MAGIC: &[u8; 4] = b"STWB";
const VERSION: u8 = 1;
const NONCE_PREFIX_LEN: usize = 7;
const WRAPPED_FILE_KEY_LEN: usize = FIELD_OVERHEAD + KEY_LEN;
const PREFIX_LEN: usize = MAGIC.len() + 1 + NONCE_PREFIX_LEN;
/// Length of the header that starts every encrypted blob.
pub const HEADER_LEN: usize = PREFIX_LEN + WRAPPED_FILE_KEY_LEN;

const FILE_KEY_AAD_LABEL: &[u8] = b"steward-crypto/stream/v1\0";

/// Total encrypted size, header included, of a blob of `plaintext_len` bytes as written
/// by [`encrypt_reader_to_writer`].
#[must_use]
pub fn encrypted_len(plaintext_len: u64) -> u64 {
    let chunk = CHUNK_SIZE as u64;
    let chunks = if plaintext_len == 0 {
        1
    } else {
        plaintext_len.div_ceil(chunk)
    };
    HEADER_LEN as u64 + plaintext_len + chunks * TAG_SIZE as u64
}

fn file_key_aad(prefix: &[u8], aad: &[u8]) -> Vec<u8> {
    let mut full = Vec::with_capacity(FILE_KEY_AAD_LABEL.len() + prefix.len() + aad.len());
    full.extend_from_slice(FILE_KEY_AAD_LABEL);
    full.extend_from_slice(prefix);
    full.extend_from_slice(aad);
    full
}

fn stream_cipher(file_key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(file_key.into())
}

/// Encrypts one blob chunk by chunk. See the [module documentation](self) for the format.
pub struct StreamEncryptor {
    inner: EncryptorBE32<Aes256Gcm>,
    chunks: u64,
}

impl fmt::Debug for StreamEncryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamEncryptor")
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl StreamEncryptor {
    /// Starts a blob: returns the header to write first, and the encryptor.
    ///
    /// `aad` binds the blob to its place (e.g. `b"blobs|<subject-id>|<blob-id>"`); the
    /// same `aad` is needed to decrypt.
    ///
    /// # Errors
    /// [`Error::Rng`] if the RNG fails.
    pub fn new(key: &DataKey, aad: &[u8]) -> Result<(Vec<u8>, StreamEncryptor)> {
        let mut file_key = Zeroizing::new([0u8; KEY_LEN]);
        fill_random(&mut file_key[..])?;
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        fill_random(&mut nonce_prefix)?;

        let mut header = Vec::with_capacity(HEADER_LEN);
        header.extend_from_slice(MAGIC);
        header.push(VERSION);
        header.extend_from_slice(&nonce_prefix);
        let wrapped = key.encrypt(&file_key[..], &file_key_aad(&header, aad))?;
        header.extend_from_slice(&wrapped);
        debug_assert_eq!(header.len(), HEADER_LEN);

        let inner = EncryptorBE32::from_aead(stream_cipher(&file_key), (&nonce_prefix).into());
        Ok((header, StreamEncryptor { inner, chunks: 0 }))
    }

    /// Encrypts a chunk that is not the last one. It must be exactly [`CHUNK_SIZE`] bytes;
    /// the result is [`ENCRYPTED_CHUNK_SIZE`] bytes.
    ///
    /// # Errors
    /// [`Error::Stream`] if the chunk has the wrong size or the blob exceeds 2^32 - 1
    /// chunks (256 TiB).
    pub fn encrypt_chunk(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(ENCRYPTED_CHUNK_SIZE);
        buf.extend_from_slice(chunk);
        self.encrypt_chunk_in_place(&mut buf)?;
        Ok(buf)
    }

    fn encrypt_chunk_in_place(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.len() != CHUNK_SIZE {
            return Err(Error::Stream(format!(
                "every chunk but the last must be exactly {CHUNK_SIZE} bytes, got {}",
                buf.len()
            )));
        }
        self.inner
            .encrypt_next_in_place(&[], buf)
            .map_err(|_| Error::Stream("blob has too many chunks (limit 2^32 - 1)".into()))?;
        self.chunks += 1;
        Ok(())
    }

    /// Encrypts the last chunk (0 ..= [`CHUNK_SIZE`] bytes) and ends the blob.
    ///
    /// # Errors
    /// [`Error::Stream`] if the chunk is longer than [`CHUNK_SIZE`].
    pub fn finish(self, last_chunk: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(last_chunk.len() + TAG_SIZE);
        buf.extend_from_slice(last_chunk);
        self.finish_in_place(&mut buf)?;
        Ok(buf)
    }

    fn finish_in_place(self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.len() > CHUNK_SIZE {
            return Err(Error::Stream(format!(
                "the last chunk may be at most {CHUNK_SIZE} bytes, got {}",
                buf.len()
            )));
        }
        self.inner
            .encrypt_last_in_place(&[], buf)
            .map_err(|_| Error::Stream("could not encrypt the last chunk".into()))
    }
}

/// Decrypts one blob chunk by chunk: give it the header, then every chunk but the last
/// (each exactly [`ENCRYPTED_CHUNK_SIZE`] bytes) to [`decrypt_chunk`](Self::decrypt_chunk),
/// then the last one to [`finish`](Self::finish).
pub struct StreamDecryptor {
    inner: DecryptorBE32<Aes256Gcm>,
    chunks: u64,
}

impl fmt::Debug for StreamDecryptor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StreamDecryptor")
            .field("chunks", &self.chunks)
            .finish_non_exhaustive()
    }
}

impl StreamDecryptor {
    /// Reads the [`HEADER_LEN`]-byte header and recovers the blob's file key.
    ///
    /// # Errors
    /// [`Error::Malformed`] if this is not a blob header, [`Error::UnsupportedVersion`],
    /// or [`Error::Decrypt`] if `key` or `aad` is wrong or the header was modified.
    pub fn new(key: &DataKey, aad: &[u8], header: &[u8]) -> Result<StreamDecryptor> {
        if header.len() < PREFIX_LEN || &header[..MAGIC.len()] != MAGIC {
            return Err(Error::Malformed(
                "not an encrypted blob (missing \"STWB\" header)".into(),
            ));
        }
        let version = header[MAGIC.len()];
        if version != VERSION {
            return Err(Error::UnsupportedVersion {
                what: "stream header",
                version,
            });
        }
        if header.len() != HEADER_LEN {
            return Err(Error::Malformed(format!(
                "blob header must be {HEADER_LEN} bytes, got {}",
                header.len()
            )));
        }
        let (prefix, wrapped) = header.split_at(PREFIX_LEN);
        let mut nonce_prefix = [0u8; NONCE_PREFIX_LEN];
        nonce_prefix.copy_from_slice(&prefix[MAGIC.len() + 1..]);
        let file_key = Zeroizing::new(key.decrypt(wrapped, &file_key_aad(prefix, aad))?);
        let mut key_bytes = Zeroizing::new([0u8; KEY_LEN]);
        if file_key.len() != KEY_LEN {
            return Err(Error::Malformed(
                "blob file key has the wrong length".into(),
            ));
        }
        key_bytes.copy_from_slice(&file_key);
        let inner = DecryptorBE32::from_aead(stream_cipher(&key_bytes), (&nonce_prefix).into());
        Ok(StreamDecryptor { inner, chunks: 0 })
    }

    /// Decrypts a chunk that is not the last one ([`ENCRYPTED_CHUNK_SIZE`] bytes).
    ///
    /// # Errors
    /// [`Error::Stream`] on a wrong size, [`Error::ChunkDecrypt`] if the chunk is not the
    /// authentic next chunk of this blob (tampered, reordered, or actually the last).
    pub fn decrypt_chunk(&mut self, chunk: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(chunk.len());
        buf.extend_from_slice(chunk);
        self.decrypt_chunk_in_place(&mut buf)?;
        Ok(buf)
    }

    fn decrypt_chunk_in_place(&mut self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.len() != ENCRYPTED_CHUNK_SIZE {
            return Err(Error::Stream(format!(
                "every encrypted chunk but the last must be exactly {ENCRYPTED_CHUNK_SIZE} \
                 bytes, got {}",
                buf.len()
            )));
        }
        self.inner
            .decrypt_next_in_place(&[], buf)
            .map_err(|_| Error::ChunkDecrypt { index: self.chunks })?;
        self.chunks += 1;
        Ok(())
    }

    /// Decrypts the last chunk (16 ..= [`ENCRYPTED_CHUNK_SIZE`] bytes). Only when this
    /// succeeds is the blob known to be complete.
    ///
    /// # Errors
    /// [`Error::Stream`] on a wrong size, [`Error::ChunkDecrypt`] if it is not the
    /// authentic last chunk (e.g. the blob was truncated at a chunk boundary).
    pub fn finish(self, last_chunk: &[u8]) -> Result<Vec<u8>> {
        let mut buf = Vec::with_capacity(last_chunk.len());
        buf.extend_from_slice(last_chunk);
        self.finish_in_place(&mut buf)?;
        Ok(buf)
    }

    fn finish_in_place(self, buf: &mut Vec<u8>) -> Result<()> {
        if buf.len() < TAG_SIZE || buf.len() > ENCRYPTED_CHUNK_SIZE {
            return Err(Error::Stream(format!(
                "the last encrypted chunk must be {TAG_SIZE} to {ENCRYPTED_CHUNK_SIZE} bytes, \
                 got {} (truncated blob?)",
                buf.len()
            )));
        }
        let index = self.chunks;
        self.inner
            .decrypt_last_in_place(&[], buf)
            .map_err(|_| Error::ChunkDecrypt { index })
    }
}

/// Reads until `buf` is full or the reader is exhausted; returns the bytes read.
fn read_full(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Encrypts everything from `reader` into `writer` (header and chunks), in constant
/// memory (about 130 KiB). Returns the number of plaintext bytes read; the number written
/// is [`encrypted_len`] of that. Flushes `writer` at the end.
///
/// # Errors
/// I/O errors from either side; encryption errors (RNG failure, more than 256 TiB) as
/// [`io::ErrorKind::InvalidData`] wrapping an [`Error`].
pub fn encrypt_reader_to_writer(
    key: &DataKey,
    aad: &[u8],
    mut reader: impl Read,
    mut writer: impl Write,
) -> io::Result<u64> {
    let (header, mut enc) = StreamEncryptor::new(key, aad)?;
    writer.write_all(&header)?;

    // One byte of look-ahead tells whether the current chunk is the last one.
    let mut buf = Zeroizing::new(vec![0u8; CHUNK_SIZE + 1]);
    let mut work = Zeroizing::new(Vec::with_capacity(ENCRYPTED_CHUNK_SIZE));
    let mut filled = read_full(&mut reader, &mut buf[..])?;
    let mut total = 0u64;
    loop {
        work.clear();
        if filled <= CHUNK_SIZE {
            work.extend_from_slice(&buf[..filled]);
            enc.finish_in_place(&mut work)?;
            writer.write_all(&work)?;
            total += filled as u64;
            break;
        }
        work.extend_from_slice(&buf[..CHUNK_SIZE]);
        enc.encrypt_chunk_in_place(&mut work)?;
        writer.write_all(&work)?;
        total += CHUNK_SIZE as u64;
        buf[0] = buf[CHUNK_SIZE];
        filled = 1 + read_full(&mut reader, &mut buf[1..])?;
    }
    writer.flush()?;
    Ok(total)
}

/// Decrypts a blob written by [`encrypt_reader_to_writer`] (or the chunk API) from
/// `reader` into `writer`, in constant memory. Returns the number of plaintext bytes
/// written. Flushes `writer` at the end.
///
/// Output is written chunk by chunk as each is authenticated; if this returns an error,
/// discard what was written (see the module documentation).
///
/// # Errors
/// I/O errors from either side; a short header, wrong key or `aad`, tampering, reordering
/// or truncation as [`io::ErrorKind::InvalidData`] wrapping an [`Error`].
pub fn decrypt_reader_to_writer(
    key: &DataKey,
    aad: &[u8],
    mut reader: impl Read,
    mut writer: impl Write,
) -> io::Result<u64> {
    let mut header = [0u8; HEADER_LEN];
    let n = read_full(&mut reader, &mut header)?;
    if n < HEADER_LEN {
        return Err(Error::Malformed(format!(
            "blob is {n} bytes, shorter than its {HEADER_LEN}-byte header"
        ))
        .into());
    }
    let mut dec = StreamDecryptor::new(key, aad, &header)?;

    let mut buf = vec![0u8; ENCRYPTED_CHUNK_SIZE + 1];
    let mut work = Zeroizing::new(Vec::with_capacity(ENCRYPTED_CHUNK_SIZE));
    let mut filled = read_full(&mut reader, &mut buf[..])?;
    let mut total = 0u64;
    loop {
        work.clear();
        if filled <= ENCRYPTED_CHUNK_SIZE {
            work.extend_from_slice(&buf[..filled]);
            dec.finish_in_place(&mut work)?;
            writer.write_all(&work)?;
            total += work.len() as u64;
            break;
        }
        work.extend_from_slice(&buf[..ENCRYPTED_CHUNK_SIZE]);
        dec.decrypt_chunk_in_place(&mut work)?;
        writer.write_all(&work)?;
        total += work.len() as u64;
        buf[0] = buf[ENCRYPTED_CHUNK_SIZE];
        filled = 1 + read_full(&mut reader, &mut buf[1..])?;
    }
    writer.flush()?;
    Ok(total)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const AAD: &[u8] = b"blobs|subject-1|blob-9";

    fn key() -> DataKey {
        DataKey::generate().expect("rng")
    }

    /// Deterministic, non-repeating test data.
    fn data(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
            .collect()
    }

    fn encrypt(key: &DataKey, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let n = encrypt_reader_to_writer(key, AAD, Cursor::new(plain), &mut out).expect("enc");
        assert_eq!(n, plain.len() as u64);
        out
    }

    fn decrypt(key: &DataKey, aad: &[u8], ct: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        let n = decrypt_reader_to_writer(key, aad, Cursor::new(ct), &mut out)?;
        assert_eq!(n, out.len() as u64);
        Ok(out)
    }

    fn inner_error(err: &io::Error) -> Option<&Error> {
        err.get_ref().and_then(|e| e.downcast_ref::<Error>())
    }

    #[test]
    fn round_trips_at_boundaries() {
        let k = key();
        for len in [
            0,
            1,
            CHUNK_SIZE - 1,
            CHUNK_SIZE,
            CHUNK_SIZE + 1,
            2 * CHUNK_SIZE,
            200 * 1024,
        ] {
            let plain = data(len);
            let ct = encrypt(&k, &plain);
            assert_eq!(ct.len() as u64, encrypted_len(len as u64), "len {len}");
            assert_eq!(&ct[..4], MAGIC);
            assert_eq!(decrypt(&k, AAD, &ct).expect("dec"), plain, "len {len}");
        }
    }

    #[test]
    fn encrypted_len_counts_chunks() {
        let h = HEADER_LEN as u64;
        assert_eq!(HEADER_LEN, 73);
        assert_eq!(encrypted_len(0), h + 16);
        assert_eq!(encrypted_len(1), h + 17);
        assert_eq!(encrypted_len(CHUNK_SIZE as u64), h + CHUNK_SIZE as u64 + 16);
        assert_eq!(
            encrypted_len(CHUNK_SIZE as u64 + 1),
            h + CHUNK_SIZE as u64 + 1 + 32
        );
        // 200 KiB = 3 full chunks + 8 KiB.
        assert_eq!(encrypted_len(200 * 1024), h + 200 * 1024 + 4 * 16);
    }

    #[test]
    fn wrong_key_or_aad_fails_at_header() {
        let k = key();
        let ct = encrypt(&k, &data(1000));
        let err = decrypt(&key(), AAD, &ct).expect_err("wrong key");
        assert!(matches!(inner_error(&err), Some(Error::Decrypt)), "{err}");
        let err = decrypt(&k, b"blobs|subject-2|blob-9", &ct).expect_err("wrong aad");
        assert!(matches!(inner_error(&err), Some(Error::Decrypt)), "{err}");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn every_flipped_header_byte_fails() {
        let k = key();
        let ct = encrypt(&k, &data(10));
        for i in 0..HEADER_LEN {
            let mut bad = ct.clone();
            bad[i] ^= 0x80;
            assert!(decrypt(&k, AAD, &bad).is_err(), "header byte {i}");
        }
    }

    #[test]
    fn flipped_bit_in_any_chunk_fails() {
        let k = key();
        let plain = data(200 * 1024);
        let ct = encrypt(&k, &plain);
        for pos in [
            HEADER_LEN,
            HEADER_LEN + 100,
            HEADER_LEN + ENCRYPTED_CHUNK_SIZE - 1,
            HEADER_LEN + ENCRYPTED_CHUNK_SIZE + 5,
            ct.len() - 20,
            ct.len() - 1,
        ] {
            let mut bad = ct.clone();
            bad[pos] ^= 0x01;
            let err = decrypt(&k, AAD, &bad).expect_err("flipped");
            assert!(
                matches!(inner_error(&err), Some(Error::ChunkDecrypt { .. })),
                "pos {pos}: {err}"
            );
        }
    }

    #[test]
    fn truncation_is_detected() {
        let k = key();
        let plain = data(200 * 1024);
        let ct = encrypt(&k, &plain);
        // Truncated inside the last chunk.
        assert!(decrypt(&k, AAD, &ct[..ct.len() - 1]).is_err());
        // Last chunk dropped entirely: the stream now ends on a full, non-last chunk.
        let without_last = &ct[..HEADER_LEN + 3 * ENCRYPTED_CHUNK_SIZE];
        let err = decrypt(&k, AAD, without_last).expect_err("dropped last");
        assert!(
            matches!(inner_error(&err), Some(Error::ChunkDecrypt { index: 2 })),
            "{err}"
        );
        // Only the header.
        assert!(decrypt(&k, AAD, &ct[..HEADER_LEN]).is_err());
        // Shorter than the header.
        assert!(decrypt(&k, AAD, &ct[..HEADER_LEN - 1]).is_err());
        assert!(decrypt(&k, AAD, &[]).is_err());
        // Truncated at every chunk boundary and a few other points.
        for cut in [
            HEADER_LEN + 1,
            HEADER_LEN + 15,
            HEADER_LEN + ENCRYPTED_CHUNK_SIZE,
            HEADER_LEN + 2 * ENCRYPTED_CHUNK_SIZE,
            HEADER_LEN + 2 * ENCRYPTED_CHUNK_SIZE + 16,
        ] {
            assert!(decrypt(&k, AAD, &ct[..cut]).is_err(), "cut at {cut}");
        }
        // Appended data.
        let mut longer = ct.clone();
        longer.extend_from_slice(&[0u8; 16]);
        assert!(decrypt(&k, AAD, &longer).is_err());
    }

    #[test]
    fn truncation_of_exact_multiple_is_detected() {
        // 2 full chunks; the second is the (full) last chunk.
        let k = key();
        let ct = encrypt(&k, &data(2 * CHUNK_SIZE));
        assert_eq!(ct.len(), HEADER_LEN + 2 * ENCRYPTED_CHUNK_SIZE);
        let err = decrypt(&k, AAD, &ct[..HEADER_LEN + ENCRYPTED_CHUNK_SIZE]).expect_err("cut");
        assert!(
            matches!(inner_error(&err), Some(Error::ChunkDecrypt { index: 0 })),
            "{err}"
        );
    }

    #[test]
    fn dropping_or_swapping_chunks_fails() {
        let k = key();
        let plain = data(200 * 1024);
        let ct = encrypt(&k, &plain);
        let header = &ct[..HEADER_LEN];
        let chunks: Vec<&[u8]> = ct[HEADER_LEN..].chunks(ENCRYPTED_CHUNK_SIZE).collect();
        assert_eq!(chunks.len(), 4);

        let assemble = |order: &[usize]| {
            let mut v = header.to_vec();
            for &i in order {
                v.extend_from_slice(chunks[i]);
            }
            v
        };
        // Sanity: the original order decrypts.
        assert_eq!(
            decrypt(&k, AAD, &assemble(&[0, 1, 2, 3])).expect("ok"),
            plain
        );
        // Drop a middle chunk.
        let err = decrypt(&k, AAD, &assemble(&[0, 2, 3])).expect_err("dropped");
        assert!(
            matches!(inner_error(&err), Some(Error::ChunkDecrypt { index: 1 })),
            "{err}"
        );
        // Swap two chunks.
        let err = decrypt(&k, AAD, &assemble(&[1, 0, 2, 3])).expect_err("swapped");
        assert!(
            matches!(inner_error(&err), Some(Error::ChunkDecrypt { index: 0 })),
            "{err}"
        );
        // Duplicate a chunk.
        assert!(decrypt(&k, AAD, &assemble(&[0, 0, 1, 2, 3])).is_err());
        // Chunks from another blob under the same key.
        let other = encrypt(&k, &plain);
        let mut mixed = assemble(&[0]);
        mixed.extend_from_slice(&other[HEADER_LEN + ENCRYPTED_CHUNK_SIZE..]);
        assert!(decrypt(&k, AAD, &mixed).is_err());
    }

    #[test]
    fn chunk_api_round_trip_and_misuse() {
        let k = key();
        let plain = data(3 * CHUNK_SIZE + 123);
        let (header, mut enc) = StreamEncryptor::new(&k, AAD).expect("new");
        assert_eq!(header.len(), HEADER_LEN);
        let mut cts = Vec::new();
        for c in plain[..3 * CHUNK_SIZE].chunks(CHUNK_SIZE) {
            let ct = enc.encrypt_chunk(c).expect("chunk");
            assert_eq!(ct.len(), ENCRYPTED_CHUNK_SIZE);
            cts.push(ct);
        }
        assert!(matches!(
            enc.encrypt_chunk(&[0u8; 10]),
            Err(Error::Stream(_))
        ));
        let last = enc.finish(&plain[3 * CHUNK_SIZE..]).expect("finish");
        assert_eq!(last.len(), 123 + TAG_SIZE);

        let mut dec = StreamDecryptor::new(&k, AAD, &header).expect("header");
        let mut out = Vec::new();
        for ct in &cts {
            out.extend(dec.decrypt_chunk(ct).expect("chunk"));
        }
        assert!(matches!(dec.decrypt_chunk(&last), Err(Error::Stream(_))));
        out.extend(dec.finish(&last).expect("last"));
        assert_eq!(out, plain);

        // The chunk API output is the same format as the reader/writer one.
        let mut all = header.clone();
        for ct in &cts {
            all.extend_from_slice(ct);
        }
        all.extend_from_slice(&last);
        assert_eq!(decrypt(&k, AAD, &all).expect("dec"), plain);

        // Finishing on a non-last chunk fails.
        let dec = StreamDecryptor::new(&k, AAD, &header).expect("header");
        assert!(matches!(
            dec.finish(&cts[0]),
            Err(Error::ChunkDecrypt { index: 0 })
        ));
        // Oversized last chunk is refused.
        let (_, enc) = StreamEncryptor::new(&k, AAD).expect("new");
        assert!(matches!(
            enc.finish(&vec![0u8; CHUNK_SIZE + 1]),
            Err(Error::Stream(_))
        ));
    }

    #[test]
    fn non_canonical_empty_last_chunk_is_accepted() {
        let k = key();
        let plain = data(CHUNK_SIZE);
        let (mut all, mut enc) = StreamEncryptor::new(&k, AAD).expect("new");
        all.extend(enc.encrypt_chunk(&plain).expect("chunk"));
        all.extend(enc.finish(&[]).expect("finish"));
        assert_eq!(decrypt(&k, AAD, &all).expect("dec"), plain);
    }

    #[test]
    fn header_errors_are_specific() {
        let k = key();
        let (header, _) = StreamEncryptor::new(&k, AAD).expect("new");
        assert!(matches!(
            StreamDecryptor::new(&k, AAD, b"nope"),
            Err(Error::Malformed(_))
        ));
        let mut v2 = header.clone();
        v2[4] = 2;
        assert!(matches!(
            StreamDecryptor::new(&k, AAD, &v2),
            Err(Error::UnsupportedVersion { version: 2, .. })
        ));
        assert!(matches!(
            StreamDecryptor::new(&k, AAD, &header[..HEADER_LEN - 1]),
            Err(Error::Malformed(_))
        ));
    }

    #[test]
    fn same_plaintext_gives_different_blobs() {
        let k = key();
        let plain = data(5000);
        assert_ne!(encrypt(&k, &plain), encrypt(&k, &plain));
    }

    /// A reader that returns at most 1000 bytes per call and is interrupted sometimes.
    struct Dribble<'a> {
        data: &'a [u8],
        calls: usize,
    }

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.calls += 1;
            if self.calls == 7 {
                self.calls = 0;
                return Err(io::Error::from(io::ErrorKind::Interrupted));
            }
            let n = buf.len().min(1000).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn short_reads_are_handled() {
        let k = key();
        let plain = data(150 * 1024 + 7);
        let mut ct = Vec::new();
        encrypt_reader_to_writer(
            &k,
            AAD,
            Dribble {
                data: &plain,
                calls: 0,
            },
            &mut ct,
        )
        .expect("enc");
        // Same framing as the one-shot path (contents differ: random key and nonce).
        assert_eq!(ct.len() as u64, encrypted_len(plain.len() as u64));
        let mut out = Vec::new();
        decrypt_reader_to_writer(
            &k,
            AAD,
            Dribble {
                data: &ct,
                calls: 0,
            },
            &mut out,
        )
        .expect("dec");
        assert_eq!(out, plain);
    }
}
