//! One conformance suite, run against a local folder, memory and an S3-compatible server.
//!
//! S3: start the test server with `.ci/start-s3` (moto on 127.0.0.1:9327), or point
//! `STEWARD_TEST_S3_ENDPOINT` at another one. When it is unreachable the S3 test is skipped
//! with a notice, except under `CI=true`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use futures::{StreamExt, stream};
use steward_blobs::testing::{S3TestServer, unique_bucket};
use steward_blobs::{BlobError, BlobStore, Bytes};

const MIB: usize = 1024 * 1024;
const BIG_CHUNKS: u64 = 20;
const BIG: &str = "tenant/t1/subject/big/media/0b6f5c1e-8a4e-4c55-9d0a-3c1f3b2a9e10";

fn byte_at(i: u64) -> u8 {
    (i.wrapping_mul(2_654_435_761) >> 13) as u8
}

/// `n` chunks of 1 MiB, each generated only when the uploader asks for it.
fn lazy_chunks(n: u64) -> impl futures::Stream<Item = io::Result<Bytes>> + Send {
    stream::unfold(0u64, move |i| async move {
        if i == n {
            return None;
        }
        let start = i * MIB as u64;
        let chunk: Vec<u8> = (start..start + MIB as u64).map(byte_at).collect();
        Some((Ok(Bytes::from(chunk)), i + 1))
    })
}

/// Files (relative paths) and directories under a local blob folder.
fn walk(root: &Path) -> (Vec<String>, Vec<String>) {
    fn go(root: &Path, dir: &Path, files: &mut Vec<String>, dirs: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                dirs.push(rel);
                go(root, &path, files, dirs);
            } else {
                files.push(rel);
            }
        }
    }
    let (mut files, mut dirs) = (vec![], vec![]);
    go(root, root, &mut files, &mut dirs);
    files.sort();
    dirs.sort();
    (files, dirs)
}

// ---------- the conformance suite ----------

struct Backend<'a> {
    store: BlobStore,
    /// Local folder: checked on disk after deletes.
    local_root: Option<PathBuf>,
    /// S3: checked for left-over multipart uploads.
    s3: Option<(&'a S3TestServer, &'a str)>,
    /// Memory streams a whole object as one chunk; the others must not.
    streams_in_chunks: bool,
}

impl Backend<'_> {
    fn assert_no_leftovers(&self, what: &str) {
        if let Some(root) = &self.local_root {
            let (files, _) = walk(root);
            assert!(
                files.iter().all(|f| !f.contains('#')),
                "{what}: staging files left behind: {files:?}"
            );
        }
        if let Some((server, bucket)) = self.s3 {
            assert_eq!(
                server.pending_uploads(bucket).unwrap(),
                0,
                "{what}: multipart upload left behind"
            );
        }
    }

    fn assert_not_on_disk(&self, key: &str) {
        if let Some(root) = &self.local_root {
            assert!(!root.join(key).exists(), "{key} still on disk");
            let (files, _) = walk(root);
            assert!(
                !files.iter().any(|f| f == key),
                "{key} still on disk: {files:?}"
            );
        }
    }
}

async fn expect_not_found<T: std::fmt::Debug>(r: Result<T, BlobError>, key: &str) {
    match r {
        Err(BlobError::NotFound { key: k }) => assert_eq!(k, key),
        other => panic!("{key}: expected NotFound, got {other:?}"),
    }
}

fn expect_invalid<T: std::fmt::Debug>(r: Result<T, BlobError>, what: &str) {
    match r {
        Err(e @ BlobError::InvalidKey { .. }) => {
            assert!(e.to_string().contains("invalid blob key"), "{e}")
        }
        other => panic!("{what}: expected InvalidKey, got {other:?}"),
    }
}

async fn conformance(b: &Backend<'_>) {
    let s = &b.store;

    // Invalid keys are rejected by every operation, before touching the backend.
    for key in [
        "", "/abs", "a//b", "a/../b", "a/b/", "a/b c", "a/\u{e9}", "..",
    ] {
        expect_invalid(s.put(key, b"x".to_vec()).await, key);
        expect_invalid(s.get(key).await, key);
        expect_invalid(s.get_stream(key).await.map(|_| ()), key);
        expect_invalid(s.size(key).await, key);
        expect_invalid(s.delete(key).await, key);
        expect_invalid(
            s.put_stream(key, stream::iter(vec![Ok(Bytes::from_static(b"x"))]))
                .await,
            key,
        );
    }
    expect_invalid(s.list("../x").await, "list ../x");
    expect_invalid(s.delete_prefix("").await, "delete_prefix of everything");
    expect_invalid(s.delete_prefix("/").await, "delete_prefix /");
    assert!(s.list("").await.unwrap().is_empty(), "nothing was stored");

    // Round trip, overwrite, Vec and Bytes.
    let k1 = "tenant/t1/subject/s1/media/one";
    s.put(k1, b"first version".to_vec()).await.unwrap();
    assert_eq!(
        s.get(k1).await.unwrap(),
        Bytes::from_static(b"first version")
    );
    s.put(k1, Bytes::from_static(b"second")).await.unwrap();
    assert_eq!(s.get(k1).await.unwrap(), Bytes::from_static(b"second"));
    assert_eq!(s.size(k1).await.unwrap(), Some(6));
    s.put("tenant/t1/subject/s1/empty", Vec::new())
        .await
        .unwrap();
    assert_eq!(s.get("tenant/t1/subject/s1/empty").await.unwrap().len(), 0);
    assert_eq!(s.size("tenant/t1/subject/s1/empty").await.unwrap(), Some(0));

    // Missing keys.
    let missing = "tenant/t1/subject/s1/media/missing";
    expect_not_found(s.get(missing).await, missing).await;
    expect_not_found(s.get_stream(missing).await.map(|_| ()), missing).await;
    assert_eq!(s.size(missing).await.unwrap(), None);
    assert!(
        !s.delete(missing).await.unwrap(),
        "missing key reported as existing"
    );
    // A "directory" on a local folder is not an object either.
    expect_not_found(s.get("tenant/t1/subject").await, "tenant/t1/subject").await;
    assert_eq!(s.size("tenant/t1/subject").await.unwrap(), None);

    // 20 MiB streamed in, chunk by chunk, and streamed out without collecting it.
    let total = BIG_CHUNKS * MIB as u64;
    assert_eq!(
        s.put_stream(BIG, lazy_chunks(BIG_CHUNKS)).await.unwrap(),
        total
    );
    assert_eq!(s.size(BIG).await.unwrap(), Some(total));
    let mut out = s.get_stream(BIG).await.unwrap();
    let (mut offset, mut chunks, mut largest) = (0u64, 0usize, 0usize);
    while let Some(chunk) = out.next().await {
        let chunk = chunk.unwrap();
        for (i, byte) in chunk.iter().enumerate() {
            let at = offset + i as u64;
            assert_eq!(
                *byte,
                byte_at(at),
                "byte {at} of the streamed object differs"
            );
        }
        offset += chunk.len() as u64;
        chunks += 1;
        largest = largest.max(chunk.len());
    }
    assert_eq!(offset, total);
    if b.streams_in_chunks {
        assert!(
            chunks > 1 && (largest as u64) < total,
            "get_stream returned the object in {chunks} chunk(s), largest {largest}"
        );
    }

    // A failing input stream stores nothing, in the single-PUT and in the multipart case,
    // and leaves an existing object alone.
    for n in [2u64, 8] {
        let key = format!("tenant/t1/subject/s1/media/broken-{n}");
        let input = lazy_chunks(n).chain(stream::once(async {
            Err(io::Error::other("caller's stream broke"))
        }));
        let err = s.put_stream(&key, input).await.unwrap_err();
        assert!(matches!(err, BlobError::Input { .. }), "{err:?}");
        assert!(err.to_string().contains("caller's stream broke"), "{err}");
        expect_not_found(s.get(&key).await, &key).await;
        b.assert_no_leftovers(&format!("broken stream of {n} MiB"));
    }
    let input = lazy_chunks(7).chain(stream::once(async { Err(io::Error::other("broke")) }));
    assert!(s.put_stream(k1, input).await.is_err());
    assert_eq!(s.get(k1).await.unwrap(), Bytes::from_static(b"second"));
    b.assert_no_leftovers("broken overwrite");

    // Listing by prefix: whole segments only.
    let layout: &[(&str, &[u8])] = &[
        ("tenant/t1/subject/s1/media/a", b"aa"),
        ("tenant/t1/subject/s1/media/b", b"bbb"),
        ("tenant/t1/subject/s1/calls/2026-11", b"cccc"),
        ("tenant/t1/subject/s10/media/a", b"lookalike"),
        ("tenant/t2/subject/s1/media/a", b"other tenant"),
    ];
    for (k, v) in layout {
        s.put(k, v.to_vec()).await.unwrap();
    }
    let s1_expected: Vec<(String, u64)> = vec![
        ("tenant/t1/subject/s1/calls/2026-11".to_owned(), 4),
        ("tenant/t1/subject/s1/empty".to_owned(), 0),
        ("tenant/t1/subject/s1/media/a".to_owned(), 2),
        ("tenant/t1/subject/s1/media/b".to_owned(), 3),
        ("tenant/t1/subject/s1/media/one".to_owned(), 6),
    ];
    assert_eq!(s.list("tenant/t1/subject/s1").await.unwrap(), s1_expected);
    assert_eq!(s.list("tenant/t1/subject/s1/").await.unwrap(), s1_expected);
    assert_eq!(
        s.list("tenant/t1/subject/s1/media").await.unwrap(),
        s1_expected[2..].to_vec()
    );
    assert!(s.list("tenant/t3").await.unwrap().is_empty());
    assert!(s.list("tenant/t1/subject/s").await.unwrap().is_empty());
    let all = s.list("").await.unwrap();
    assert_eq!(all.len(), s1_expected.len() + 3, "{all:?}");

    // Delete: idempotent, and really gone (from disk, for a local folder).
    let ka = "tenant/t1/subject/s1/media/a";
    assert!(s.delete(ka).await.unwrap());
    expect_not_found(s.get(ka).await, ka).await;
    assert_eq!(s.size(ka).await.unwrap(), None);
    assert!(!s.delete(ka).await.unwrap());
    b.assert_not_on_disk(ka);

    // Copy into this store from another one, and out of it into a fresh one.
    let source = BlobStore::open(Some("memory:"), Path::new("/unused")).unwrap();
    source.put("backup/in/x", b"xx".to_vec()).await.unwrap();
    source
        .put_stream("backup/in/big", lazy_chunks(6))
        .await
        .unwrap();
    assert_eq!(source.copy_all_to(s).await.unwrap(), 2);
    assert_eq!(
        s.get("backup/in/x").await.unwrap(),
        Bytes::from_static(b"xx")
    );
    assert_eq!(s.size("backup/in/big").await.unwrap(), Some(6 * MIB as u64));

    let everything = s.list("").await.unwrap();
    let copy = BlobStore::open(Some("memory:"), Path::new("/unused")).unwrap();
    assert_eq!(s.copy_all_to(&copy).await.unwrap(), everything.len() as u64);
    assert_eq!(copy.list("").await.unwrap(), everything);
    for (key, _) in &everything {
        assert_eq!(
            copy.get(key).await.unwrap(),
            s.get(key).await.unwrap(),
            "{key}"
        );
    }

    // delete_prefix removes all and only what is under the prefix.
    assert_eq!(s.delete_prefix("tenant/t1/subject/s1").await.unwrap(), 4);
    assert!(s.list("tenant/t1/subject/s1").await.unwrap().is_empty());
    for k in ["tenant/t1/subject/s1/media/b", "tenant/t1/subject/s1/empty"] {
        expect_not_found(s.get(k).await, k).await;
        b.assert_not_on_disk(k);
    }
    assert_eq!(
        s.get("tenant/t1/subject/s10/media/a").await.unwrap(),
        Bytes::from_static(b"lookalike")
    );
    assert_eq!(
        s.get("tenant/t2/subject/s1/media/a").await.unwrap(),
        Bytes::from_static(b"other tenant")
    );
    assert_eq!(s.size(BIG).await.unwrap(), Some(total));
    assert_eq!(s.delete_prefix("tenant/t1/subject/s1").await.unwrap(), 0);
    assert_eq!(s.delete_prefix("tenant/t9").await.unwrap(), 0);
    if let Some(root) = &b.local_root {
        let (files, dirs) = walk(root);
        assert!(
            !files
                .iter()
                .chain(&dirs)
                .any(|p| p.starts_with("tenant/t1/subject/s1/") || p == "tenant/t1/subject/s1"),
            "erased subject left traces on disk: {files:?} {dirs:?}"
        );
    }

    // Clean up everything; the store is empty again.
    assert_eq!(s.delete_prefix("tenant").await.unwrap(), 3);
    assert_eq!(s.delete_prefix("backup").await.unwrap(), 2);
    assert!(s.list("").await.unwrap().is_empty());
    if let Some(root) = &b.local_root {
        assert_eq!(walk(root), (vec![], vec![]), "local folder not left empty");
    }
    b.assert_no_leftovers("end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_local_folder() {
    let data = tempfile::tempdir().unwrap();
    let store = BlobStore::open(None, data.path()).unwrap();
    let root = std::fs::canonicalize(data.path().join("blobs")).unwrap();
    assert!(root.is_dir(), "<data_dir>/blobs was not created");
    assert_eq!(store.local_root(), Some(root.as_path()));
    assert_eq!(store.describe(), format!("local folder {}", root.display()));
    conformance(&Backend {
        store,
        local_root: Some(root),
        s3: None,
        streams_in_chunks: true,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_memory() {
    let store = BlobStore::open(Some("memory:"), Path::new("/unused")).unwrap();
    assert!(store.describe().contains("in-memory"));
    conformance(&Backend {
        store,
        local_root: None,
        s3: None,
        streams_in_chunks: false,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_s3() {
    let Some(server) = S3TestServer::require("conformance_s3").unwrap() else {
        return;
    };
    let started = Instant::now();
    let bucket = unique_bucket();
    server.create_bucket(&bucket).unwrap();
    let url = server.url(&bucket, "steward/blobs");
    let store = BlobStore::open(Some(&url), Path::new("/unused")).unwrap();
    assert_eq!(
        store.describe(),
        format!(
            "S3 bucket '{bucket}' prefix 'steward/blobs' at {} (region us-east-1)",
            server.endpoint
        )
    );

    // The prefix really is applied: seen from the bucket root, keys sit under it.
    store.put("probe/x", b"p".to_vec()).await.unwrap();
    let root_url = url.replace("/steward/blobs?", "?");
    let root = BlobStore::open(Some(&root_url), Path::new("/unused")).unwrap();
    assert_eq!(
        root.list("").await.unwrap(),
        vec![("steward/blobs/probe/x".to_owned(), 1)]
    );
    assert!(store.delete("probe/x").await.unwrap());

    conformance(&Backend {
        store,
        local_root: None,
        s3: Some((&server, &bucket)),
        streams_in_chunks: true,
    })
    .await;
    assert!(root.list("").await.unwrap().is_empty());
    server.delete_bucket(&bucket).unwrap();
    eprintln!("conformance_s3 took {:.1?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erasing_a_local_subject_removes_crash_leftovers() {
    let data = tempfile::tempdir().unwrap();
    let store = BlobStore::open(None, data.path()).unwrap();
    let root = store.local_root().unwrap().to_path_buf();
    store
        .put("tenant/t1/subject/s1/media/a", b"a".to_vec())
        .await
        .unwrap();
    store
        .put("tenant/t1/subject/s2/media/a", b"b".to_vec())
        .await
        .unwrap();
    // What an upload interrupted by a crash leaves: a staging file object_store never lists.
    std::fs::create_dir_all(root.join("tenant/t1/subject/s1/calls")).unwrap();
    std::fs::write(root.join("tenant/t1/subject/s1/calls/x#7"), b"partial").unwrap();
    std::fs::write(root.join("tenant/t1/subject/s2/media/y#3"), b"partial").unwrap();
    assert_eq!(store.list("tenant/t1/subject/s1").await.unwrap().len(), 1);

    assert_eq!(
        store.delete_prefix("tenant/t1/subject/s1").await.unwrap(),
        1
    );
    let (files, dirs) = walk(&root);
    assert_eq!(
        files,
        vec![
            "tenant/t1/subject/s2/media/a",
            "tenant/t1/subject/s2/media/y#3"
        ],
        "only the other subject's files may remain"
    );
    assert!(!dirs.iter().any(|d| d.contains("s1")), "{dirs:?}");

    assert_eq!(store.delete_prefix("tenant").await.unwrap(), 1);
    assert_eq!(walk(&root), (vec![], vec![]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn file_url_opens_an_existing_folder() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("file://{}", dir.path().display());
    let store = BlobStore::open(Some(&url), Path::new("/unused")).unwrap();
    store.put("a/b/c", b"hello".to_vec()).await.unwrap();
    assert_eq!(
        std::fs::read(dir.path().join("a/b/c")).unwrap(),
        b"hello".to_vec()
    );
    assert!(store.delete("a/b/c").await.unwrap());
    assert!(
        !dir.path().join("a").exists(),
        "emptied folders not removed"
    );
    assert!(dir.path().is_dir(), "the root folder itself must stay");

    let gone = dir.path().join("not-there");
    let err = BlobStore::open(
        Some(&format!("file://{}", gone.display())),
        Path::new("/unused"),
    )
    .unwrap_err();
    assert!(err.to_string().contains("does not exist"), "{err}");
}

#[test]
fn malformed_urls_give_clear_errors() {
    let cases: &[(&str, &str)] = &[
        ("s3://", "missing bucket name"),
        ("ftp://x", "unsupported scheme 'ftp'"),
        (
            "s3://bucket?nonsense=1",
            "unknown query parameter 'nonsense'",
        ),
        ("s3://bucket?allow_http=perhaps", "allow_http"),
        ("s3://bucket?endpoint=", "has no value"),
    ];
    for (url, needle) in cases {
        match BlobStore::open(Some(url), Path::new("/unused")) {
            Err(e @ BlobError::InvalidUrl(_)) => {
                let msg = e.to_string();
                assert!(msg.contains(needle), "{url}: {msg:?} lacks {needle:?}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

#[test]
fn store_and_futures_are_send() {
    fn assert_send<T: Send>(_: &T) {}
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<BlobStore>();
    let store = BlobStore::open(Some("memory:"), Path::new("/unused")).unwrap();
    let other = store.clone();
    // Futures are only built, never polled: this checks they can cross threads (axum).
    assert_send(&store.put("a", Vec::new()));
    assert_send(&store.put_stream("a", lazy_chunks(1)));
    assert_send(&store.get("a"));
    assert_send(&store.get_stream("a"));
    assert_send(&store.size("a"));
    assert_send(&store.delete("a"));
    assert_send(&store.delete_prefix("a"));
    assert_send(&store.list("a"));
    assert_send(&store.copy_all_to(&other));
}
