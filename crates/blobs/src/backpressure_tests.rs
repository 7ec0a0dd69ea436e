//! `put_stream` keeps memory bounded and cleans up after itself: checked with a wrapper
//! store whose part uploads are slow and counted.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream};
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, UploadPart,
};

use super::*;

#[derive(Debug, Default)]
struct Counters {
    /// Bytes whose part upload has completed.
    completed: AtomicU64,
    aborts: AtomicUsize,
    uploads: AtomicUsize,
    /// The "network": one part at a time.
    link: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
struct SlowParts {
    inner: InMemory,
    counters: Arc<Counters>,
}

impl fmt::Display for SlowParts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SlowParts")
    }
}

#[derive(Debug)]
struct SlowUpload {
    inner: Box<dyn MultipartUpload>,
    counters: Arc<Counters>,
}

#[async_trait]
impl MultipartUpload for SlowUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let len = data.content_length() as u64;
        let fut = self.inner.put_part(data);
        let counters = Arc::clone(&self.counters);
        Box::pin(async move {
            let _link = counters.link.lock().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
            let r = fut.await;
            counters.completed.fetch_add(len, Ordering::SeqCst);
            r
        })
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        self.inner.complete().await
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.counters.aborts.fetch_add(1, Ordering::SeqCst);
        self.inner.abort().await
    }
}

#[async_trait]
impl ObjectStore for SlowParts {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.counters.uploads.fetch_add(1, Ordering::SeqCst);
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(SlowUpload {
            inner,
            counters: Arc::clone(&self.counters),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.inner.copy_opts(from, to, options).await
    }
}

const PART: usize = 256 * 1024;
const CHUNK: usize = 64 * 1024;

fn slow_store() -> (BlobStore, Arc<Counters>) {
    let counters = Arc::new(Counters::default());
    let store = SlowParts {
        inner: InMemory::new(),
        counters: Arc::clone(&counters),
    };
    (
        BlobStore::from_object_store(Arc::new(store), "slow", PART),
        counters,
    )
}

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn put_stream_applies_backpressure() {
    let (store, counters) = slow_store();
    const TOTAL: u64 = 16 * 1024 * 1024;
    let max_lag = Arc::new(AtomicU64::new(0));
    let lag = Arc::clone(&max_lag);
    let c = Arc::clone(&counters);
    // Chunks are generated lazily; each time one is asked for, note how far the producer
    // is ahead of the bytes whose upload has completed.
    let input = stream::unfold(0u64, move |produced| {
        let c = Arc::clone(&c);
        let lag = Arc::clone(&lag);
        async move {
            if produced >= TOTAL {
                return None;
            }
            let ahead = produced - c.completed.load(Ordering::SeqCst);
            lag.fetch_max(ahead, Ordering::SeqCst);
            let chunk: Vec<u8> = (produced..produced + CHUNK as u64).map(byte_at).collect();
            Some((Ok(Bytes::from(chunk)), produced + CHUNK as u64))
        }
    });
    let n = store.put_stream("big/object", input).await.unwrap();
    assert_eq!(n, TOTAL);
    assert_eq!(counters.uploads.load(Ordering::SeqCst), 1);
    assert_eq!(counters.completed.load(Ordering::SeqCst), TOTAL);

    let bound = (PART * (PARTS_IN_FLIGHT + 2) + CHUNK) as u64;
    let seen = max_lag.load(Ordering::SeqCst);
    assert!(
        seen <= bound,
        "producer ran {seen} bytes ahead of completed uploads (bound {bound})"
    );

    let back = store.get("big/object").await.unwrap();
    assert_eq!(back.len() as u64, TOTAL);
    assert!(
        back.iter()
            .enumerate()
            .all(|(i, b)| *b == byte_at(i as u64))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_stream_is_a_single_put() {
    let (store, counters) = slow_store();
    let input = stream::iter((0..3).map(|_| Ok(Bytes::from(vec![7u8; CHUNK]))));
    assert_eq!(
        store.put_stream("small", input).await.unwrap(),
        3 * CHUNK as u64
    );
    assert_eq!(counters.uploads.load(Ordering::SeqCst), 0);
    let empty = stream::iter(Vec::<io::Result<Bytes>>::new());
    assert_eq!(store.put_stream("empty", empty).await.unwrap(), 0);
    assert_eq!(store.size("empty").await.unwrap(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_input_aborts_the_upload() {
    let (store, counters) = slow_store();
    let chunks = (0..(3 * PART / CHUNK)).map(|_| Ok(Bytes::from(vec![1u8; CHUNK])));
    let input = stream::iter(chunks).chain(stream::once(async {
        Err(io::Error::other("client went away"))
    }));
    let err = store.put_stream("broken", input).await.unwrap_err();
    assert!(matches!(err, BlobError::Input { .. }), "{err:?}");
    assert!(err.to_string().contains("client went away"), "{err}");
    assert_eq!(counters.aborts.load(Ordering::SeqCst), 1);
    assert!(store.get("broken").await.unwrap_err().is_not_found());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_upload_is_aborted() {
    let (store, counters) = slow_store();
    let chunks = (0..(3 * PART / CHUNK)).map(|_| Ok(Bytes::from(vec![1u8; CHUNK])));
    // Never ends: the upload is cut short by the timeout, which drops the future.
    let input = stream::iter(chunks).chain(stream::pending());
    let cut = tokio::time::timeout(
        Duration::from_millis(300),
        store.put_stream("dropped", input),
    )
    .await;
    assert!(cut.is_err(), "the upload should still be waiting for input");
    assert_eq!(counters.uploads.load(Ordering::SeqCst), 1);
    for _ in 0..100 {
        if counters.aborts.load(Ordering::SeqCst) == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(counters.aborts.load(Ordering::SeqCst), 1);
    assert!(store.get("dropped").await.unwrap_err().is_not_found());
}
