//! Files: personal data held as bytes in the blob store (photos and media, chat
//! attachments, call recordings). A feature keeps one row per file in a table of
//! its own (declared in the registry with a `blob_column`), and the bytes here:
//!
//! * **In**: [`store`] streams the upload, checks its real type from its first
//!   bytes (never trusting the declared one alone) and its size as it goes, and
//!   encrypts it under the subject's data key (`steward_crypto::stream`, 64 KiB
//!   chunks, AAD = the blob key) on its way to the blob store. Memory stays at a
//!   few chunks whatever the file's size; an upload that fails midway leaves
//!   nothing behind.
//! * **Out**: [`open`] streams the object back, decrypting chunk by chunk; a
//!   tampered or truncated object ends the stream with an error instead of
//!   yielding unauthenticated bytes. [`copy_to`] does the same into a writer
//!   (the access bundle).
//! * **Gone**: a row deleted inside a transaction queues its object in
//!   `blob_outbox` ([`crate::core::Tx::delete_blob_after_commit`]); the objects
//!   are deleted once the transaction has committed ([`drain_outbox`]), and any
//!   left by a crash are deleted at the next start. A rolled-back transaction
//!   deletes nothing. Erasure also deletes the subject's whole prefix, and
//!   destroying the subject's key makes every copy unreadable anyway.
//!
//! Objects live under `tenant/<tenant>/subject/<subject>/<store>/<id>`.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::stream::{self, BoxStream, Stream, StreamExt};
use steward_blobs::BlobStore;
use steward_crypto::DataKey;
use steward_crypto::stream::{
    CHUNK_SIZE, ENCRYPTED_CHUNK_SIZE, HEADER_LEN, StreamDecryptor, StreamEncryptor,
};
use steward_store::{Conn, params};

use crate::core::{Steward, block_on};
use crate::error::{Error, Result};

/// The blob key of one file.
pub fn blob_key(tenant: &str, subject: &str, store: &str, id: &str) -> String {
    format!("tenant/{tenant}/subject/{subject}/{store}/{id}")
}

/// Binds an object's ciphertext to its key: a copy moved to another key (or
/// another subject's prefix) does not decrypt.
fn aad(blob_key: &str) -> Vec<u8> {
    format!("steward/file|{blob_key}").into_bytes()
}

/// What a feature accepts.
#[derive(Debug, Clone, Copy)]
pub struct Accept {
    /// Largest file, in bytes.
    pub max_bytes: u64,
    /// Canonical content types (as [`sniff`] names them).
    pub types: &'static [&'static str],
}

/// A stored file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// Plaintext bytes.
    pub size: u64,
    /// The type found in the content.
    pub content_type: &'static str,
}

/// Bytes enough for every type [`sniff`] knows.
const SNIFF_LEN: usize = 64;

/// The content type of a file from its first bytes, in canonical form.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if let Some(t) = infer::get(head) {
        let canonical = canonical_type(t.mime_type());
        if canonical.is_some() {
            return canonical;
        }
    }
    // MPEG audio without an ID3 tag starts with a frame header: 11 sync bits,
    // a version other than "reserved" (01) and a layer other than "reserved" (00).
    // `infer` only knows the 0xFFFB form.
    match head {
        [0xFF, b, ..] if b & 0xE0 == 0xE0 && (b >> 3) & 0x03 != 0x01 && (b >> 1) & 0x03 != 0 => {
            Some("audio/mpeg")
        }
        _ => None,
    }
}

/// The canonical form of a declared content type: parameters dropped, case
/// folded, common aliases merged. `None` for types Steward does not store.
pub fn canonical_type(declared: &str) -> Option<&'static str> {
    let essence = declared
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    Some(match essence.as_str() {
        "image/jpeg" | "image/jpg" | "image/pjpeg" => "image/jpeg",
        "image/png" => "image/png",
        "image/gif" => "image/gif",
        "image/webp" => "image/webp",
        "image/heic" | "image/heif" => "image/heif",
        "video/mp4" => "video/mp4",
        "video/quicktime" => "video/quicktime",
        "video/webm" => "video/webm",
        "audio/wav" | "audio/x-wav" | "audio/wave" | "audio/vnd.wave" => "audio/wav",
        "audio/mpeg" | "audio/mp3" | "audio/mpeg3" | "audio/x-mpeg" | "audio/x-mp3" => "audio/mpeg",
        "audio/opus" | "audio/ogg" | "application/ogg" => "audio/ogg",
        "application/pdf" => "application/pdf",
        _ => return None,
    })
}

/// A file extension for a canonical type, for the names in an access bundle.
pub fn extension(content_type: &str) -> &'static str {
    match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/gif" => "gif",
        "image/webp" => "webp",
        "image/heif" => "heic",
        "video/mp4" => "mp4",
        "video/quicktime" => "mov",
        "video/webm" => "webm",
        "audio/wav" => "wav",
        "audio/mpeg" => "mp3",
        "audio/ogg" => "ogg",
        "application/pdf" => "pdf",
        _ => "bin",
    }
}

/// A file's name as the client sent it (kept sealed): 1 to 255 characters, no
/// control characters.
pub fn check_name(name: Option<&str>) -> Result<Option<String>> {
    let Some(n) = name else { return Ok(None) };
    if n.is_empty() || n.chars().count() > 255 || n.chars().any(char::is_control) {
        return Err(Error::invalid(
            "name",
            "a file name has 1 to 255 characters and no control characters",
        ));
    }
    Ok(Some(n.to_owned()))
}

/// The upload every store of files shares: [`store`] the body under
/// `blob_key`, then `record` its row, given the blob key and what was stored
/// (on the blocking pool; the row's transaction checks the caller's rights
/// again, since the upload took time).
/// If `record` fails, the object is deleted again: no object without a row.
#[allow(clippy::too_many_arguments)]
pub async fn upload<S, T>(
    core: &Arc<Steward>,
    key: DataKey,
    blob_key: String,
    declared: Option<&str>,
    accept: Accept,
    body: S,
    record: impl FnOnce(&Steward, &str, Stored) -> Result<T> + Send + 'static,
) -> Result<T>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
    T: Send + 'static,
{
    let stored = store(&core.blobs, &key, &blob_key, declared, &accept, body).await?;
    let row_key = blob_key.clone();
    let written = crate::core::blocking(core, move |core| record(core, &row_key, stored)).await;
    if written.is_err()
        && let Err(e) = core.blobs.delete(&blob_key).await
    {
        tracing::warn!(error = %e, "could not delete the object of a refused upload");
    }
    written
}

/// Why an upload stopped before its end.
enum Refusal {
    TooLarge(u64),
    Type(String),
}

/// Encrypts `body` under `key` into the blob store at `blob_key`, accepting only
/// what `accept` allows. `declared` is the content type the client sent: when
/// given, it must agree with the content. Nothing is stored when this fails.
pub async fn store<S>(
    blobs: &BlobStore,
    key: &DataKey,
    blob_key: &str,
    declared: Option<&str>,
    accept: &Accept,
    body: S,
) -> Result<Stored>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let declared = match declared {
        None => None,
        Some(d) => Some(canonical_type(d).ok_or_else(|| {
            Error::UnsupportedType(format!(
                "content type {:?} is not taken here (accepted: {})",
                d.chars().take(100).collect::<String>(),
                accept.types.join(", ")
            ))
        })?),
    };
    let outcome = Arc::new(Mutex::new(Outcome::default()));
    let enc = Encrypting {
        input: body.boxed(),
        key: key.clone(),
        aad: aad(blob_key),
        accept: *accept,
        declared,
        encryptor: None,
        buf: Vec::with_capacity(CHUNK_SIZE + 1),
        eof: false,
        total: 0,
        done: false,
        outcome: outcome.clone(),
    };
    let result = blobs
        .put_stream(
            blob_key,
            stream::unfold(enc, |mut e| async move {
                e.next_piece().await.map(|piece| (piece, e))
            }),
        )
        .await;
    let outcome = std::mem::take(
        &mut *outcome
            .lock()
            .map_err(|_| Error::Internal("upload state poisoned".into()))?,
    );
    match (result, outcome.refusal, outcome.content_type) {
        (_, Some(Refusal::TooLarge(max)), _) => Err(Error::TooLarge(format!(
            "the file is larger than the {max} bytes allowed"
        ))),
        (_, Some(Refusal::Type(m)), _) => Err(Error::UnsupportedType(m)),
        (Err(steward_blobs::BlobError::Input { source, .. }), None, _) => Err(Error::invalid(
            "body",
            format!("the upload was cut short: {source}"),
        )),
        (Err(e), None, _) => Err(e.into()),
        (Ok(_), None, Some(content_type)) => Ok(Stored {
            size: outcome.size,
            content_type,
        }),
        (Ok(_), None, None) => Err(Error::Internal("upload ended without a type".into())),
    }
}

#[derive(Default)]
struct Outcome {
    refusal: Option<Refusal>,
    content_type: Option<&'static str>,
    size: u64,
}

/// The upload stream's state: plaintext in, header then encrypted chunks out.
struct Encrypting {
    input: BoxStream<'static, io::Result<Bytes>>,
    key: DataKey,
    aad: Vec<u8>,
    accept: Accept,
    declared: Option<&'static str>,
    encryptor: Option<StreamEncryptor>,
    buf: Vec<u8>,
    eof: bool,
    total: u64,
    done: bool,
    outcome: Arc<Mutex<Outcome>>,
}

impl Encrypting {
    fn refuse(&mut self, r: Refusal) -> io::Error {
        let message = match &r {
            Refusal::TooLarge(_) => "file too large".to_owned(),
            Refusal::Type(m) => m.clone(),
        };
        if let Ok(mut o) = self.outcome.lock() {
            o.refusal = Some(r);
        }
        self.done = true;
        io::Error::new(io::ErrorKind::InvalidData, message)
    }

    /// Reads until more than `n` bytes are buffered or the input ends.
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() <= n && !self.eof {
            match self.input.next().await {
                None => self.eof = true,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                Some(Ok(b)) => {
                    self.total += b.len() as u64;
                    if self.total > self.accept.max_bytes {
                        return Err(self.refuse(Refusal::TooLarge(self.accept.max_bytes)));
                    }
                    self.buf.extend_from_slice(&b);
                }
            }
        }
        Ok(())
    }

    fn check_type(&mut self) -> io::Result<&'static str> {
        let found = sniff(&self.buf);
        let accepted = |t: &str| self.accept.types.contains(&t);
        match (found, self.declared) {
            (Some(f), Some(d)) if f != d => Err(self.refuse(Refusal::Type(format!(
                "the content is {f}, not the declared {d}"
            )))),
            (Some(f), _) if accepted(f) => Ok(f),
            (Some(f), _) => Err(self.refuse(Refusal::Type(format!(
                "{f} is not taken here (accepted: {})",
                self.accept.types.join(", ")
            )))),
            (None, _) => Err(self.refuse(Refusal::Type(format!(
                "the content is not a recognised file type (accepted: {})",
                self.accept.types.join(", ")
            )))),
        }
    }

    async fn next_piece(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        Some(self.piece().await)
    }

    async fn piece(&mut self) -> io::Result<Bytes> {
        if self.encryptor.is_none() {
            // First piece: sniff, then the header.
            self.fill(SNIFF_LEN).await?;
            let t = self.check_type()?;
            if let Ok(mut o) = self.outcome.lock() {
                o.content_type = Some(t);
            }
            let (header, enc) =
                StreamEncryptor::new(&self.key, &self.aad).map_err(io::Error::other)?;
            self.encryptor = Some(enc);
            return Ok(Bytes::from(header));
        }
        self.fill(CHUNK_SIZE).await?;
        if self.buf.len() > CHUNK_SIZE {
            let rest = self.buf.split_off(CHUNK_SIZE);
            let chunk = std::mem::replace(&mut self.buf, rest);
            let enc = self
                .encryptor
                .as_mut()
                .ok_or_else(|| io::Error::other("no encryptor"))?;
            return enc
                .encrypt_chunk(&chunk)
                .map(Bytes::from)
                .map_err(io::Error::other);
        }
        // The input has ended: the rest is the last chunk.
        self.done = true;
        let enc = self
            .encryptor
            .take()
            .ok_or_else(|| io::Error::other("no encryptor"))?;
        let last = enc.finish(&self.buf).map_err(io::Error::other)?;
        if let Ok(mut o) = self.outcome.lock() {
            o.size = self.total;
        }
        Ok(Bytes::from(last))
    }
}

/// Streams the file at `blob_key` back, decrypted. The stream ends with an error
/// if the object was altered or cut short.
pub async fn open(
    blobs: &BlobStore,
    key: &DataKey,
    blob_key: &str,
) -> Result<BoxStream<'static, io::Result<Bytes>>> {
    let input = blobs.get_stream(blob_key).await.map_err(|e| {
        if e.is_not_found() {
            Error::NotFound("file content".into())
        } else {
            e.into()
        }
    })?;
    let dec = Decrypting {
        input,
        key: key.clone(),
        aad: aad(blob_key),
        decryptor: None,
        buf: Vec::with_capacity(ENCRYPTED_CHUNK_SIZE + 1),
        eof: false,
        done: false,
    };
    Ok(stream::unfold(dec, |mut d| async move {
        d.next_piece().await.map(|piece| (piece, d))
    })
    .boxed())
}

struct Decrypting {
    input: BoxStream<'static, std::result::Result<Bytes, steward_blobs::BlobError>>,
    key: DataKey,
    aad: Vec<u8>,
    decryptor: Option<StreamDecryptor>,
    buf: Vec<u8>,
    eof: bool,
    done: bool,
}

impl Decrypting {
    async fn fill(&mut self, n: usize) -> io::Result<()> {
        while self.buf.len() <= n && !self.eof {
            match self.input.next().await {
                None => self.eof = true,
                Some(Err(e)) => return Err(io::Error::other(e.to_string())),
                Some(Ok(b)) => self.buf.extend_from_slice(&b),
            }
        }
        Ok(())
    }

    async fn next_piece(&mut self) -> Option<io::Result<Bytes>> {
        if self.done {
            return None;
        }
        let piece = self.piece().await;
        if piece.is_err() {
            self.done = true;
        }
        Some(piece)
    }

    async fn piece(&mut self) -> io::Result<Bytes> {
        let bad = |_| io::Error::new(io::ErrorKind::InvalidData, "the file does not decrypt");
        if self.decryptor.is_none() {
            self.fill(HEADER_LEN).await?;
            if self.buf.len() < HEADER_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the file is shorter than its header",
                ));
            }
            let rest = self.buf.split_off(HEADER_LEN);
            let header = std::mem::replace(&mut self.buf, rest);
            self.decryptor =
                Some(StreamDecryptor::new(&self.key, &self.aad, &header).map_err(bad)?);
        }
        self.fill(ENCRYPTED_CHUNK_SIZE).await?;
        if self.buf.len() > ENCRYPTED_CHUNK_SIZE {
            let rest = self.buf.split_off(ENCRYPTED_CHUNK_SIZE);
            let chunk = std::mem::replace(&mut self.buf, rest);
            let dec = self
                .decryptor
                .as_mut()
                .ok_or_else(|| io::Error::other("no decryptor"))?;
            return dec.decrypt_chunk(&chunk).map(Bytes::from).map_err(bad);
        }
        self.done = true;
        let dec = self
            .decryptor
            .take()
            .ok_or_else(|| io::Error::other("no decryptor"))?;
        dec.finish(&self.buf).map(Bytes::from).map_err(bad)
    }
}

/// Writes the decrypted file at `blob_key` into the writer `begin` returns
/// (from synchronous code: the access bundle). `begin` runs once the object is
/// found, so a missing object (`NotFound`) leaves the writer untouched.
/// Returns the bytes written.
pub fn copy_to<W: Write>(
    core: &Steward,
    key: &DataKey,
    blob_key: &str,
    begin: impl FnOnce() -> Result<W>,
) -> Result<u64> {
    block_on(async {
        let mut s = open(&core.blobs, key, blob_key).await?;
        let mut w = begin()?;
        let mut n = 0u64;
        while let Some(piece) = s.next().await {
            let piece = piece.map_err(|e| Error::Blobs(format!("{blob_key}: {e}")))?;
            w.write_all(&piece)
                .map_err(|e| Error::Internal(format!("writing {blob_key}: {e}")))?;
            n += piece.len() as u64;
        }
        Ok::<u64, Error>(n)
    })
}

/// Queues an object for deletion once the current transaction commits.
pub(crate) fn queue_delete(conn: &mut dyn Conn, blob_key: &str, at: i64) -> Result<()> {
    conn.execute(
        "INSERT INTO blob_outbox (blob_key, queued_at, attempts) VALUES ($1, $2, 0) \
         ON CONFLICT (blob_key) DO NOTHING",
        params![blob_key, at],
    )?;
    Ok(())
}

/// Deletes the objects queued in `blob_outbox`, then their queue rows. An object
/// that cannot be deleted now stays queued (its attempt counted) for the next
/// drain. Returns how many were deleted.
pub fn drain_outbox(core: &Steward) -> Result<u64> {
    const PAGE: i64 = 500;
    let mut deleted = 0;
    let mut after = String::new();
    loop {
        let keys = core.db.read(|c| {
            c.query(
                "SELECT blob_key FROM blob_outbox WHERE blob_key > $1 ORDER BY blob_key LIMIT $2",
                params![after.as_str(), PAGE],
            )
        })?;
        let Some(last) = keys.last() else {
            return Ok(deleted);
        };
        after = last.text(0)?;
        for row in &keys {
            let key = row.text(0)?;
            match block_on(core.blobs.delete(&key)) {
                Ok(_) => {
                    core.db.write(|c| {
                        c.execute(
                            "DELETE FROM blob_outbox WHERE blob_key = $1",
                            params![key.as_str()],
                        )
                    })?;
                    deleted += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not delete a file's object; it stays queued");
                    core.db.write(|c| {
                        c.execute(
                            "UPDATE blob_outbox SET attempts = attempts + 1 WHERE blob_key = $1",
                            params![key.as_str()],
                        )
                    })?;
                }
            }
        }
        if (keys.len() as i64) < PAGE {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_the_types_steward_stores() {
        let wav = b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00";
        assert_eq!(sniff(wav), Some("audio/wav"));
        assert_eq!(
            sniff(b"ID3\x04\x00\x00\x00\x00\x00\x00"),
            Some("audio/mpeg")
        );
        // MPEG-1 layer III and MPEG-2 layer III frame headers without ID3.
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some("audio/mpeg"));
        assert_eq!(sniff(&[0xFF, 0xF3, 0x48, 0xC4]), Some("audio/mpeg"));
        let mut opus = b"OggS\x00\x02".to_vec();
        opus.resize(28, 0);
        opus.extend_from_slice(b"OpusHead\x01\x02");
        assert_eq!(sniff(&opus), Some("audio/ogg"));
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0]), Some("image/jpeg"));
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"),
            Some("image/png")
        );
        assert_eq!(sniff(b"plain text"), None);
        assert_eq!(sniff(b""), None);
        // A reserved layer is not MPEG audio.
        assert_eq!(sniff(&[0xFF, 0xF9, 0x00]), None);
    }

    #[test]
    fn declared_types_are_canonicalised() {
        assert_eq!(canonical_type("Audio/X-WAV; rate=8000"), Some("audio/wav"));
        assert_eq!(canonical_type("audio/opus"), Some("audio/ogg"));
        assert_eq!(canonical_type("image/jpg"), Some("image/jpeg"));
        assert_eq!(canonical_type("text/html"), None);
        assert_eq!(extension("audio/ogg"), "ogg");
    }
}
