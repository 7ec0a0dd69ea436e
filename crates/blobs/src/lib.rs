//! steward-blobs: the blob store.
//!
//! Holds opaque bytes (Steward's core has already encrypted them per data subject) under
//! keys such as `tenant/<tenant-id>/subject/<subject-id>/media/<uuid>`, on one of:
//!
//! * a local folder (`<data_dir>/blobs` by default, or `file:///absolute/path`);
//! * an S3-compatible server (`s3://bucket[/prefix]?endpoint=...&region=...&allow_http=true`,
//!   plus the usual `AWS_*` environment variables);
//! * memory (`memory:`, for tests).
//!
//! All operations are async and need a tokio runtime.
//!
//! Keys use `A-Z a-z 0-9 - _ .` separated by `/`; see [`BlobError::InvalidKey`]. On a local
//! folder a key cannot also be the prefix of another key (`a/b` and `a/b/c` cannot both
//! exist), which Steward's key layout never needs.

use std::io;
use std::path::{Path as FsPath, PathBuf};
use std::pin::pin;
use std::sync::Arc;

pub use bytes::Bytes;
pub use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, PutPayloadMut, WriteMultipart};

mod key;
mod open;
pub mod testing;

pub use key::{MAX_KEY_LEN, MAX_SEGMENT_LEN};

/// Size of one multipart-upload part (S3's minimum for all but the last part is 5 MiB).
/// Objects up to this size are written with a single PUT. With S3's 10,000-part limit this
/// caps one object at about 48 GiB.
pub const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts uploaded at once by [`BlobStore::put_stream`]; with the part being filled this
/// bounds an upload's memory to about `(PARTS_IN_FLIGHT + 1) * PART_SIZE`.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Passes [`BlobStore::delete_prefix`] makes before giving up on objects that keep appearing.
const DELETE_PREFIX_PASSES: usize = 3;

/// Errors from the blob store. Messages never contain credentials.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlobError {
    /// The key (or prefix) is not acceptable.
    #[error("invalid blob key {key:?}: {reason}")]
    InvalidKey { key: String, reason: String },
    /// No object under this key.
    #[error("blob not found: {key}")]
    NotFound { key: String },
    /// The store URL is malformed or names an unsupported store.
    #[error("invalid blob store URL: {0}")]
    InvalidUrl(String),
    /// The store could not be opened (e.g. its folder cannot be created).
    #[error("cannot open blob store: {0}")]
    Open(String),
    /// The caller's input stream failed; nothing was stored.
    #[error("input stream for blob {key} failed: {source}")]
    Input {
        key: String,
        #[source]
        source: io::Error,
    },
    /// The backend failed (I/O, network, server error...).
    #[error("blob store {op} failed for {key:?}: {source}")]
    Backend {
        op: &'static str,
        key: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },
}

impl BlobError {
    fn backend(op: &'static str, key: &str, e: object_store::Error) -> BlobError {
        match e {
            object_store::Error::NotFound { .. } => BlobError::NotFound {
                key: key.to_owned(),
            },
            other => BlobError::Backend {
                op,
                key: key.to_owned(),
                source: Box::new(other),
            },
        }
    }

    /// True for [`BlobError::NotFound`].
    pub fn is_not_found(&self) -> bool {
        matches!(self, BlobError::NotFound { .. })
    }
}

/// A blob store: a local folder, an S3-compatible bucket (optionally under a prefix) or
/// memory. Cheap to clone; clones share the backend.
#[derive(Clone)]
pub struct BlobStore {
    store: Arc<dyn ObjectStore>,
    description: String,
    local_root: Option<PathBuf>,
    part_size: usize,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobStore")
            .field("store", &self.description)
            .finish()
    }
}

/// Aborts a multipart upload that was neither finished nor aborted, e.g. because the
/// `put_stream` future was dropped (client disconnected, timeout).
struct PendingUpload(Option<WriteMultipart>);

impl Drop for PendingUpload {
    fn drop(&mut self) {
        let Some(writer) = self.0.take() else {
            return;
        };
        // Without a runtime (shutting down) the abort cannot run; S3 lifecycle rules
        // (AbortIncompleteMultipartUpload) are the backstop.
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            drop(rt.spawn(async move {
                let _ignored = writer.abort().await;
            }));
        }
    }
}

impl BlobStore {
    /// Opens a blob store.
    ///
    /// * `None` -> the local folder `<data_dir>/blobs` (created if missing);
    /// * `"file:///abs/path"` -> that folder (must exist);
    /// * `"s3://bucket[/prefix]"` -> an S3-compatible bucket. Query parameters `endpoint`,
    ///   `region`, `allow_http`, `virtual_hosted_style_request`, `access_key_id`,
    ///   `secret_access_key`, `session_token` override the `AWS_*` environment variables
    ///   (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, ...). Requests are path-style
    ///   unless `virtual_hosted_style_request=true`.
    /// * `"memory:"` -> in memory (tests only).
    ///
    /// Nothing is contacted here: a wrong endpoint or credentials show up on first use.
    pub fn open(url: Option<&str>, data_dir: &FsPath) -> Result<BlobStore, BlobError> {
        let opened = open::open(url, data_dir)?;
        Ok(BlobStore {
            store: opened.store,
            description: opened.description,
            local_root: opened.local_root,
            part_size: PART_SIZE,
        })
    }

    #[cfg(test)]
    pub(crate) fn from_object_store(
        store: Arc<dyn ObjectStore>,
        description: &str,
        part_size: usize,
    ) -> BlobStore {
        BlobStore {
            store,
            description: description.to_owned(),
            local_root: None,
            part_size,
        }
    }

    /// What this store is, for logs: kind, folder or bucket/prefix, endpoint. Never
    /// includes credentials.
    pub fn describe(&self) -> String {
        self.description.clone()
    }

    /// The folder holding the blobs, for a local store.
    pub fn local_root(&self) -> Option<&FsPath> {
        self.local_root.as_deref()
    }

    /// Stores `bytes` under `key`, replacing any existing object. Atomic: readers see the
    /// old object or the new one, never a partial one.
    pub async fn put(&self, key: &str, bytes: impl Into<Bytes>) -> Result<(), BlobError> {
        let path = key::validate_key(key)?;
        self.store
            .put(&path, PutPayload::from(bytes.into()))
            .await
            .map_err(|e| BlobError::backend("put", key, e))?;
        Ok(())
    }

    /// Stores a stream under `key` and returns its length. Objects up to [`PART_SIZE`]
    /// are written with one PUT; larger ones with a multipart upload of at most
    /// [`PARTS_IN_FLIGHT`] parts at a time, so memory stays bounded whatever the size.
    ///
    /// If the stream or the backend fails, the upload is aborted and nothing is stored
    /// under `key` (an existing object is left as it was). If the returned future is
    /// dropped mid-upload, the abort is started in the background.
    pub async fn put_stream<S>(&self, key: &str, stream: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send,
    {
        let path = key::validate_key(key)?;
        self.put_stream_path(&path, key, stream).await
    }

    async fn put_stream_path<S>(&self, path: &Path, key: &str, stream: S) -> Result<u64, BlobError>
    where
        S: Stream<Item = io::Result<Bytes>> + Send,
    {
        let mut stream = pin!(stream);
        let input_err = |source: io::Error| BlobError::Input {
            key: key.to_owned(),
            source,
        };

        // Small objects: one PUT.
        let mut head = PutPayloadMut::new();
        let mut total: u64 = 0;
        loop {
            match stream.next().await {
                None => {
                    self.store
                        .put(path, head.freeze())
                        .await
                        .map_err(|e| BlobError::backend("put_stream", key, e))?;
                    return Ok(total);
                }
                Some(Err(e)) => return Err(input_err(e)),
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    head.push(chunk);
                    if head.content_length() > self.part_size {
                        break;
                    }
                }
            }
        }

        // Large objects: multipart.
        let upload = self
            .store
            .put_multipart(path)
            .await
            .map_err(|e| BlobError::backend("put_stream", key, e))?;
        let mut pending = PendingUpload(Some(WriteMultipart::new_with_chunk_size(
            upload,
            self.part_size,
        )));
        let failure = loop {
            let Some(writer) = pending.0.as_mut() else {
                return Err(internal(key));
            };
            if !head.is_empty() {
                for chunk in std::mem::take(&mut head).freeze() {
                    writer.put(chunk);
                }
            }
            if let Err(e) = writer.wait_for_capacity(PARTS_IN_FLIGHT).await {
                break BlobError::backend("put_stream", key, e);
            }
            match stream.next().await {
                None => {
                    let Some(writer) = pending.0.take() else {
                        return Err(internal(key));
                    };
                    // `finish` aborts the upload itself when it fails.
                    writer
                        .finish()
                        .await
                        .map_err(|e| BlobError::backend("put_stream", key, e))?;
                    return Ok(total);
                }
                Some(Err(e)) => break input_err(e),
                Some(Ok(chunk)) => {
                    total += chunk.len() as u64;
                    writer.put(chunk);
                }
            }
        };
        match pending.0.take() {
            Some(writer) => match writer.abort().await {
                Ok(()) => Err(failure),
                Err(abort) => Err(BlobError::Backend {
                    op: "put_stream",
                    key: key.to_owned(),
                    source: format!(
                        "{failure}; aborting the multipart upload also failed: {abort}"
                    )
                    .into(),
                }),
            },
            None => Err(failure),
        }
    }

    /// Reads a whole object into memory.
    pub async fn get(&self, key: &str) -> Result<Bytes, BlobError> {
        let path = key::validate_key(key)?;
        let result = self
            .store
            .get(&path)
            .await
            .map_err(|e| BlobError::backend("get", key, e))?;
        result
            .bytes()
            .await
            .map_err(|e| BlobError::backend("get", key, e))
    }

    /// Streams an object. A missing object fails here with [`BlobError::NotFound`], before
    /// any byte is produced.
    pub async fn get_stream(
        &self,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let path = key::validate_key(key)?;
        self.get_stream_path(&path, key).await
    }

    async fn get_stream_path(
        &self,
        path: &Path,
        key: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, BlobError>>, BlobError> {
        let result = self
            .store
            .get(path)
            .await
            .map_err(|e| BlobError::backend("get_stream", key, e))?;
        let key = key.to_owned();
        Ok(result
            .into_stream()
            .map_err(move |e| BlobError::backend("get_stream", &key, e))
            .boxed())
    }

    /// The object's size, or `None` if there is no object under `key`.
    pub async fn size(&self, key: &str) -> Result<Option<u64>, BlobError> {
        let path = key::validate_key(key)?;
        match self.store.head(&path).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(BlobError::backend("size", key, e)),
        }
    }

    /// Deletes an object; returns whether it existed. Deleting a missing object is not an
    /// error. On a local folder the file is unlinked and emptied parent folders removed.
    pub async fn delete(&self, key: &str) -> Result<bool, BlobError> {
        let path = key::validate_key(key)?;
        match self.store.head(&path).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => return Ok(false),
            Err(e) => return Err(BlobError::backend("delete", key, e)),
        }
        match self.store.delete(&path).await {
            Ok(()) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(BlobError::backend("delete", key, e)),
        }
    }

    /// Deletes every object under `prefix` (whole segments: `tenant/1` does not cover
    /// `tenant/10/...`) and returns how many were deleted. The prefix must not be empty.
    ///
    /// Fails if objects remain after a few passes (e.g. something keeps writing there), so
    /// a success means the prefix was seen empty.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, BlobError> {
        let Some(path) = key::validate_prefix(prefix)? else {
            return Err(BlobError::InvalidKey {
                key: String::new(),
                reason: "delete_prefix needs a non-empty prefix".to_owned(),
            });
        };
        let mut deleted = 0u64;
        for _ in 0..DELETE_PREFIX_PASSES {
            let locations = self.store.list(Some(&path)).map_ok(|m| m.location).boxed();
            let mut results = self.store.delete_stream(locations);
            while let Some(result) = results.next().await {
                match result {
                    Ok(_) => deleted += 1,
                    Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(BlobError::backend("delete_prefix", prefix, e)),
                }
            }
            let mut check = self.store.list(Some(&path));
            match check.next().await {
                None => {
                    if let Some(root) = &self.local_root {
                        sweep_local_leftovers(root, &path).await.map_err(|e| {
                            BlobError::Backend {
                                op: "delete_prefix",
                                key: prefix.to_owned(),
                                source: Box::new(e),
                            }
                        })?;
                    }
                    return Ok(deleted);
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Err(BlobError::backend("delete_prefix", prefix, e)),
            }
        }
        Err(BlobError::Backend {
            op: "delete_prefix",
            key: prefix.to_owned(),
            source: format!(
                "objects still present after {DELETE_PREFIX_PASSES} passes \
                 ({deleted} deleted); is something writing under this prefix?"
            )
            .into(),
        })
    }

    /// Lists the objects under `prefix` (whole segments; `""` for all) as `(key, size)`,
    /// sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<(String, u64)>, BlobError> {
        let path = key::validate_prefix(prefix)?;
        let mut out: Vec<(String, u64)> = self
            .store
            .list(path.as_ref())
            .map_ok(|m| (m.location.to_string(), m.size))
            .try_collect()
            .await
            .map_err(|e| BlobError::backend("list", prefix, e))?;
        out.sort_unstable();
        Ok(out)
    }

    /// Copies every object of this store into `other`, under the same keys, streaming one
    /// object at a time; returns how many were copied. Objects deleted while the copy runs
    /// are skipped. Existing objects in `other` with the same keys are overwritten; others
    /// are left alone.
    pub async fn copy_all_to(&self, other: &BlobStore) -> Result<u64, BlobError> {
        let mut listing = self.store.list(None);
        let mut copied = 0u64;
        while let Some(meta) = listing.next().await {
            let meta = meta.map_err(|e| BlobError::backend("copy_all_to (list)", "", e))?;
            let key = meta.location.to_string();
            let source = match self.get_stream_path(&meta.location, &key).await {
                Ok(s) => s,
                Err(BlobError::NotFound { .. }) => continue,
                Err(e) => return Err(e),
            };
            other
                .put_stream_path(&meta.location, &key, source.map_err(io::Error::other))
                .await?;
            copied += 1;
        }
        Ok(copied)
    }
}

/// After the objects under `prefix` are deleted from a local folder, removes what
/// `object_store` does not list: staging files of uploads interrupted by a crash
/// (`<name>#<digits>`; `#` never occurs in a valid key) and the directories left empty, so an
/// erased subject leaves nothing on disk.
async fn sweep_local_leftovers(root: &FsPath, prefix: &Path) -> io::Result<()> {
    let root = root.to_path_buf();
    // The prefix was validated: plain segments, no `.`/`..`, so this stays under `root`.
    let dir = prefix
        .parts()
        .fold(root.clone(), |d, part| d.join(part.as_ref()));
    tokio::task::spawn_blocking(move || {
        fn is_staging(name: &std::ffi::OsStr) -> bool {
            name.to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        }
        fn sweep(dir: &FsPath) -> io::Result<()> {
            for entry in std::fs::read_dir(dir)? {
                let entry = entry?;
                let kind = entry.file_type()?;
                if kind.is_dir() {
                    sweep(&entry.path())?;
                    // Fails (and is left) if not empty.
                    let _ = std::fs::remove_dir(entry.path());
                } else if is_staging(&entry.file_name()) {
                    match std::fs::remove_file(entry.path()) {
                        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                        _ => {}
                    }
                }
            }
            Ok(())
        }
        match sweep(&dir) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
        // The prefix directory itself and its parents, up to (not including) the root.
        let mut current = Some(dir.as_path());
        while let Some(d) = current {
            if d == root || std::fs::remove_dir(d).is_err() {
                break;
            }
            current = d.parent();
        }
        Ok(())
    })
    .await
    .map_err(io::Error::other)?
}

fn internal(key: &str) -> BlobError {
    BlobError::Backend {
        op: "put_stream",
        key: key.to_owned(),
        source: "internal error: upload state lost".into(),
    }
}

#[cfg(test)]
mod backpressure_tests;
