//! Files and photos/media: encrypted streaming storage (`files.rs`) on a local
//! folder and on S3, and the consent-gated media feature over HTTP on SQLite and
//! PostgreSQL: refused without consent, allowed with it, everything deleted
//! (rows and objects) when the consent is withdrawn.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use common::{Env, Server, files_containing, holds, seed_tenant};
use futures_util::{StreamExt, stream};
use serde_json::{Value, json};
use steward::files::{self, Accept};
use steward_blobs::BlobStore;
use steward_crypto::DataKey;
use steward_crypto::stream::{CHUNK_SIZE, encrypted_len};

fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A PNG signature followed by `len - 8` bytes of a recognisable pattern.
fn png(len: usize, marker: &str) -> Vec<u8> {
    let mut v = b"\x89PNG\r\n\x1a\n".to_vec();
    let pattern = marker.as_bytes();
    while v.len() < len {
        v.push(pattern[v.len() % pattern.len()]);
    }
    v.truncate(len.max(8));
    v
}

fn jpeg(marker: &str) -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    for _ in 0..200 {
        v.extend_from_slice(marker.as_bytes());
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// `bytes` as a stream of pieces of `piece` bytes.
fn pieces(
    bytes: Vec<u8>,
    piece: usize,
) -> impl futures_util::Stream<Item = io::Result<Bytes>> + Send + 'static {
    let chunks: Vec<io::Result<Bytes>> = bytes
        .chunks(piece)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    stream::iter(chunks)
}

async fn read_all(blobs: &BlobStore, key: &DataKey, blob_key: &str) -> io::Result<Vec<u8>> {
    let mut s = files::open(blobs, key, blob_key)
        .await
        .map_err(io::Error::other)?;
    let mut out = Vec::new();
    while let Some(p) = s.next().await {
        out.extend_from_slice(&p?);
    }
    Ok(out)
}

const IMAGES: Accept = Accept {
    max_bytes: 1 << 20,
    types: &["image/png", "image/jpeg"],
};

async fn round_trips(blobs: &BlobStore) {
    let key = DataKey::generate().unwrap();
    // Empty chunks, one chunk, exactly two chunks, and a ragged end.
    for (n, len) in [
        10,
        CHUNK_SIZE - 1,
        CHUNK_SIZE,
        2 * CHUNK_SIZE,
        3 * CHUNK_SIZE + 7,
    ]
    .into_iter()
    .enumerate()
    {
        let plain = png(len, "round-trip-marker ");
        let blob_key = files::blob_key("t1", "s1", "media", &format!("f{n}"));
        let stored = files::store(
            blobs,
            &key,
            &blob_key,
            Some("image/png"),
            &IMAGES,
            pieces(plain.clone(), 1000 + n * 777),
        )
        .await
        .unwrap();
        assert_eq!(stored.size, len as u64);
        assert_eq!(stored.content_type, "image/png");
        assert_eq!(
            blobs.size(&blob_key).await.unwrap(),
            Some(encrypted_len(len as u64)),
            "{len} bytes"
        );
        let raw = blobs.get(&blob_key).await.unwrap();
        assert!(
            !holds(&raw, b"round-trip-marker "),
            "the object holds the plaintext"
        );
        assert_eq!(read_all(blobs, &key, &blob_key).await.unwrap(), plain);
        // Another subject's key, or the object moved to another key, does not open it.
        let other = DataKey::generate().unwrap();
        assert!(read_all(blobs, &other, &blob_key).await.is_err());
        let moved = files::blob_key("t1", "s2", "media", &format!("f{n}"));
        blobs.put(&moved, raw).await.unwrap();
        assert!(read_all(blobs, &key, &moved).await.is_err());
    }
}

async fn refusals_leave_nothing(blobs: &BlobStore) {
    let key = DataKey::generate().unwrap();
    let k = files::blob_key("t1", "s1", "media", "refused");
    let cases: Vec<(Option<&str>, Vec<u8>, u16)> = vec![
        (
            Some("image/png"),
            png(IMAGES.max_bytes as usize + 1, "x"),
            413,
        ),
        (Some("image/png"), jpeg("x"), 415), // declared PNG, content JPEG
        (None, b"GIF89a\x01\x00\x01\x00".to_vec(), 415), // a type not accepted here
        (
            Some("image/png"),
            b"<html>not an image</html>".to_vec(),
            415,
        ),
        (Some("image/png"), Vec::new(), 415),
        (Some("text/html"), png(100, "x"), 415),
    ];
    for (declared, body, status) in cases {
        let err = files::store(blobs, &key, &k, declared, &IMAGES, pieces(body, 4096))
            .await
            .unwrap_err();
        assert_eq!(err.http_status(), status, "{declared:?}: {err}");
        assert_eq!(
            blobs.size(&k).await.unwrap(),
            None,
            "{declared:?} left an object"
        );
    }
    // A client that goes away midway (the body stream fails).
    let mut chunks: Vec<io::Result<Bytes>> = png(3 * CHUNK_SIZE, "x")
        .chunks(CHUNK_SIZE)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    chunks.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client gone",
    )));
    let err = files::store(blobs, &key, &k, None, &IMAGES, stream::iter(chunks))
        .await
        .unwrap_err();
    assert_eq!(err.http_status(), 400, "{err}");
    assert_eq!(err.field(), Some("body"));
    assert_eq!(blobs.size(&k).await.unwrap(), None);
}

#[tokio::test(flavor = "multi_thread")]
async fn files_on_a_local_folder() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(None, dir.path()).unwrap();
    round_trips(&blobs).await;
    refusals_leave_nothing(&blobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_on_s3() {
    let Some(env) = Env::sqlite_s3("files_on_s3") else {
        return;
    };
    round_trips(&env.core.blobs).await;
    refusals_leave_nothing(&env.core.blobs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn altered_or_cut_files_fail_at_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = BlobStore::open(None, dir.path()).unwrap();
    let key = DataKey::generate().unwrap();
    let k = files::blob_key("t1", "s1", "media", "f");
    let plain = png(2 * CHUNK_SIZE + 100, "tamper ");
    files::store(&blobs, &key, &k, None, &IMAGES, pieces(plain, 8192))
        .await
        .unwrap();
    let raw = blobs.get(&k).await.unwrap().to_vec();
    let mut flipped = raw.clone();
    let i = flipped.len() / 2;
    flipped[i] ^= 1;
    blobs.put(&k, flipped).await.unwrap();
    assert!(read_all(&blobs, &key, &k).await.is_err(), "a flipped bit");
    // Cut at a chunk boundary: every chunk left authenticates, the end does not.
    blobs
        .put(&k, raw[..raw.len() - 100 - 16].to_vec())
        .await
        .unwrap();
    assert!(read_all(&blobs, &key, &k).await.is_err(), "a cut file");
    blobs.put(&k, raw[..40].to_vec()).await.unwrap();
    assert!(read_all(&blobs, &key, &k).await.is_err(), "a cut header");
}

// ---------- the media feature, over HTTP ----------

async fn set_consent(srv: &Server, token: &str, subject: &str, action: &str) {
    let (status, body) = srv
        .call(
            "POST",
            &format!("/api/v1/subjects/{subject}/consents"),
            Some(token),
            Some(json!({"category": "photos_media", "purpose": "provision", "action": action})),
        )
        .await;
    assert_eq!(status, 201, "{action}: {body}");
}

async fn get_bytes(srv: &Server, path: &str, token: &str) -> (u16, Vec<u8>, String) {
    let resp = srv
        .http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, resp.bytes().await.unwrap().to_vec(), ct)
}

fn count(env: &Env, sql: &str) -> i64 {
    sync(|| {
        env.core
            .db
            .read(|c| c.query_opt(sql, &[]))
            .unwrap()
            .unwrap()
            .i64(0)
            .unwrap()
    })
}

async fn objects(env: &Env, prefix: &str) -> Vec<(String, u64)> {
    env.core.blobs.list(prefix).await.unwrap()
}

async fn media_flow(env: &Env) {
    let core = env.core.clone();
    let (a, b) = sync(|| (seed_tenant(&core, "ma"), seed_tenant(&core, "mb")));
    let srv = Server::start(env.core.clone()).await;
    let user = srv.login(&a.subject.username).await;
    let me = a.subject.subject_id.clone();
    let photo = jpeg("holiday-photo-marker ");
    let upload = format!("/api/v1/subjects/{me}/media?name=beach%20day.jpg");

    // Without consent: refused, nothing stored.
    let (status, body) = srv
        .raw("POST", &upload, Some(&user), "image/jpeg", photo.clone())
        .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"]["code"], "consent_required");
    let (status, _) = srv
        .call(
            "GET",
            &format!("/api/v1/subjects/{me}/media"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(status, 403);
    assert!(objects(env, "tenant").await.is_empty());

    // With consent: stored, listed, downloaded as uploaded.
    set_consent(&srv, &user, &me, "grant").await;
    let (status, item) = srv
        .raw("POST", &upload, Some(&user), "image/jpeg", photo.clone())
        .await;
    assert_eq!(status, 201, "{item}");
    assert_eq!(item["content_type"], "image/jpeg");
    assert_eq!(item["size"], photo.len() as u64);
    assert_eq!(item["name"], "beach day.jpg");
    let id = item["id"].as_str().unwrap().to_owned();
    let second = png(3 * CHUNK_SIZE + 5, "second-photo ");
    let (status, item2) = srv
        .raw(
            "POST",
            &format!("/api/v1/subjects/{me}/media"),
            Some(&user),
            "image/png",
            second.clone(),
        )
        .await;
    assert_eq!(status, 201, "{item2}");
    let (status, list) = srv
        .call(
            "GET",
            &format!("/api/v1/subjects/{me}/media"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let (status, bytes, ct) = get_bytes(&srv, &format!("/api/v1/media/{id}/content"), &user).await;
    assert_eq!((status, ct.as_str()), (200, "image/jpeg"));
    assert_eq!(bytes, photo);
    let id2 = item2["id"].as_str().unwrap();
    let (_, bytes2, _) = get_bytes(&srv, &format!("/api/v1/media/{id2}/content"), &user).await;
    assert_eq!(bytes2, second);

    // Nobody else: the employer and staff of the tenant are refused, another
    // tenant does not see it exist.
    for who in [&a.admin, &a.operator, &a.dpo] {
        let t = srv.login(&who.username).await;
        let (status, body) = srv
            .call("GET", &format!("/api/v1/media/{id}"), Some(&t), None)
            .await;
        assert_eq!(status, 403, "{}: {body}", who.username);
        let (status, _, _) = get_bytes(&srv, &format!("/api/v1/media/{id}/content"), &t).await;
        assert_eq!(status, 403);
    }
    for who in b.all() {
        let t = srv.login(&who.username).await;
        let (status, _, _) = get_bytes(&srv, &format!("/api/v1/media/{id}/content"), &t).await;
        assert_eq!(status, 404, "{}", who.username);
        let (status, _) = srv
            .raw("POST", &upload, Some(&t), "image/jpeg", photo.clone())
            .await;
        assert_eq!(status, 404, "{}", who.username);
    }

    // Bad input: wrong type, type mismatch, a bad name; nothing stored is lost.
    let bad: Vec<(String, &str, Vec<u8>, u16, &str)> = vec![
        (
            upload.clone(),
            "text/html",
            b"<script>".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            upload.clone(),
            "image/png",
            photo.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            upload.clone(),
            "application/pdf",
            b"%PDF-1.4".to_vec(),
            415,
            "unsupported_media_type",
        ),
        (
            format!("/api/v1/subjects/{me}/media?name="),
            "image/jpeg",
            photo.clone(),
            400,
            "invalid",
        ),
        (
            format!("/api/v1/subjects/{me}/media?nom=x"),
            "image/jpeg",
            photo.clone(),
            400,
            "invalid",
        ),
    ];
    for (path, ct, body, status, code) in bad {
        let (got, err) = srv.raw("POST", &path, Some(&user), ct, body).await;
        assert_eq!(
            (got, err["error"]["code"].as_str()),
            (status, Some(code)),
            "{path} {ct}: {err}"
        );
    }
    assert_eq!(count(env, "SELECT COUNT(*) FROM media"), 2);

    // Delete one: the row and its object go.
    let (status, _) = srv
        .call("DELETE", &format!("/api/v1/media/{id2}"), Some(&user), None)
        .await;
    assert_eq!(status, 204);
    let prefix = format!("tenant/{}/subject/{me}/media", a.tenant.id);
    assert_eq!(objects(env, &prefix).await.len(), 1);
    // While the photo is stored: its object, read raw from the blob store
    // (folder or S3), holds none of it; nor does the data directory, its name.
    for (key, _) in objects(env, &prefix).await {
        let raw = env.core.blobs.get(&key).await.unwrap();
        assert!(
            !holds(&raw, b"holiday-photo-marker"),
            "{key} holds the photo in clear"
        );
    }
    for needle in ["holiday-photo-marker", "beach day.jpg"] {
        assert!(
            sync(|| files_containing(env.data_dir(), needle)).is_empty(),
            "{needle} in clear under the data directory"
        );
    }

    // Withdrawal deletes everything the feature holds: rows and objects.
    set_consent(&srv, &user, &me, "withdraw").await;
    assert_eq!(count(env, "SELECT COUNT(*) FROM media"), 0);
    assert!(objects(env, &prefix).await.is_empty());
    assert_eq!(count(env, "SELECT COUNT(*) FROM blob_outbox"), 0);
    let (status, _, _) = get_bytes(&srv, &format!("/api/v1/media/{id}/content"), &user).await;
    assert_eq!(status, 404);
    let purge = sync(|| steward::audit::for_subject(&env.core.db, &me).unwrap())
        .into_iter()
        .find(|e| e.action == "consent.purge")
        .expect("a consent.purge audit entry");
    assert_eq!(purge.category.as_deref(), Some("photos_media"));
    assert_eq!(purge.detail["deleted"]["media"], 1);
    // Granting again does not bring anything back.
    set_consent(&srv, &user, &me, "grant").await;
    let (_, list) = srv
        .call(
            "GET",
            &format!("/api/v1/subjects/{me}/media"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(list, Value::Array(vec![]));
}

#[tokio::test(flavor = "multi_thread")]
async fn media_on_sqlite() {
    let env = Env::sqlite();
    media_flow(&env).await;
    // Nothing of the photos or their names is readable on disk.
    for needle in ["holiday-photo-marker", "second-photo", "beach day.jpg"] {
        assert!(
            files_containing(env.data_dir(), needle).is_empty(),
            "{needle}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn media_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    media_flow(&env).await;
    // Dropping the schema uses the sync client: not on a runtime thread.
    sync(move || drop(env));
}

#[tokio::test(flavor = "multi_thread")]
async fn media_on_s3() {
    let Some(env) = Env::sqlite_s3("media_on_s3") else {
        return;
    };
    media_flow(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_object_left_queued_is_deleted_at_the_next_start() {
    let env = Env::sqlite();
    let k = "tenant/t1/subject/s1/media/left-behind";
    env.core.blobs.put(k, b"ciphertext".to_vec()).await.unwrap();
    sync(|| {
        env.core
            .db
            .write(|c| {
                c.execute(
                    "INSERT INTO blob_outbox (blob_key, queued_at, attempts) VALUES ($1, 0, 0)",
                    steward_store::params![k],
                )
            })
            .unwrap()
    });
    let reopened = sync(|| env.reopen());
    assert_eq!(reopened.blobs.size(k).await.unwrap(), None);
    assert_eq!(count(&env, "SELECT COUNT(*) FROM blob_outbox"), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_photo_over_a_mebibyte_streams_and_one_over_the_limit_is_refused_over_http() {
    let env = Env::sqlite();
    // A 2 MiB limit: above the API's 1 MiB limit for JSON bodies, which an
    // upload (a raw body, streamed) must not meet.
    let core = Arc::new(sync(|| {
        env.reopen_with(|s| s.max_media_bytes = 2 * 1024 * 1024)
    }));
    let a = sync(|| seed_tenant(&core, "big"));
    let srv = Server::start(core.clone()).await;
    let user = srv.login(&a.subject.username).await;
    let me = a.subject.subject_id.clone();
    set_consent(&srv, &user, &me, "grant").await;
    let upload = format!("/api/v1/subjects/{me}/media?name=big.png");

    let photo = png(3 * 1024 * 1024 / 2, "big-photo-marker ");
    let (status, body) = srv
        .raw("POST", &upload, Some(&user), "image/png", photo.clone())
        .await;
    assert_eq!(status, 201, "{body}");
    let id = body["id"].as_str().unwrap().to_owned();
    let (status, got, ct) = get_bytes(&srv, &format!("/api/v1/media/{id}/content"), &user).await;
    assert_eq!((status, ct.as_str()), (200, "image/png"));
    assert!(got == photo, "the photo comes back byte for byte");

    // One byte over the limit: 413, and neither a row nor an object is left.
    let prefix = format!("tenant/{}/subject/{me}/media", a.tenant.id);
    let (status, body) = srv
        .raw(
            "POST",
            &upload,
            Some(&user),
            "image/png",
            png(2 * 1024 * 1024 + 1, "too-big "),
        )
        .await;
    assert_eq!(status, 413, "{body}");
    // (`env` has the same database and blob store open.)
    assert_eq!(count(&env, "SELECT COUNT(*) FROM media"), 1);
    assert_eq!(objects(&env, &prefix).await.len(), 1);
}
