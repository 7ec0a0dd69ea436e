//! Faults of the machine under Steward (issue 14, section 3): a full disk under the
//! SQLite data directory. Writes are refused with a clear error (503 `storage_full`),
//! reads go on, nothing stored is damaged, and writes work again once space is freed.
//!
//! The disk is a small tmpfs mounted for the test (as root, which CI is); elsewhere,
//! without the right to mount, the test prints a notice and skips, except under
//! `CI=true`, where it fails.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! PostgreSQL going away: a TCP proxy between the server and the database, cut and
//! restored.

use std::io::Write;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;
use steward::Steward;
use steward::access::Actor;
use steward::config::Settings;
use steward::error::Error;
use steward::ingest::cdr::{NewCallRecord, ingest_records};
use steward::tenants;
use steward_store::params;

/// A tmpfs of `size` mounted on a temporary directory, unmounted on drop.
struct Tmpfs {
    _dir: tempfile::TempDir,
    mnt: PathBuf,
}

impl Tmpfs {
    fn mount(size: &str) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let mnt = dir.path().join("disk");
        std::fs::create_dir(&mnt).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&mnt)
            .output();
        match out {
            Ok(o) if o.status.success() => Some(Tmpfs { _dir: dir, mnt }),
            other => {
                let why = format!("cannot mount a tmpfs for the full-disk test: {other:?}");
                assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
                eprintln!("skipping: {why}");
                None
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
    }
}

mod common;

fn batch(from: usize, n: usize) -> Vec<NewCallRecord> {
    records(from, n)
        .into_iter()
        .map(|r| serde_json::from_value(r).unwrap())
        .collect()
}

/// Call records as the API takes them.
fn records(from: usize, n: usize) -> Vec<serde_json::Value> {
    (from..from + n)
        .map(|i| {
            let start = 1_767_225_600 + i as i64 * 60;
            json!({
                "leg_id": format!("full-{i}"), "caller": "+447700900123",
                "callee": "+442079460000", "start": start, "answer": start + 3,
                "end": start + 63, "hangup_cause": "x".repeat(200),
            })
        })
        .collect()
}

fn stored(core: &Steward, tenant: &str) -> i64 {
    core.db
        .read(|c| {
            c.query_opt(
                "SELECT COUNT(*) FROM call_records WHERE tenant_id = $1",
                params![tenant],
            )
        })
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

#[test]
fn a_full_disk_refuses_writes_keeps_reads_and_recovers() {
    let Some(disk) = Tmpfs::mount("24m") else {
        return;
    };
    let settings = Settings {
        data_dir: disk.mnt.join("data"),
        ..Settings::default()
    };
    let (core, _) = Steward::open(settings.clone()).unwrap();
    let cli = Actor::cli();
    let tenant = tenants::create(&core, &cli, "PBX Ltd", None).unwrap().id;
    const N: usize = 200;
    ingest_records(&core, &cli, &tenant, &batch(0, N), true).unwrap();

    // Fill the disk.
    let filler = disk.mnt.join("filler");
    let mut f = std::fs::File::create(&filler).unwrap();
    for chunk in [1 << 20, 4096, 512] {
        let bytes = vec![0u8; chunk];
        while f.write_all(&bytes).is_ok() {}
    }
    drop(f);

    // Writes go on until the space left (free pages, the log) is used, then are refused.
    let mut next = N;
    let refusal = loop {
        assert!(next < 200 * N, "a full disk never refused a write");
        match ingest_records(&core, &cli, &tenant, &batch(next, N), true) {
            Ok(_) => next += N,
            Err(e) => break e,
        }
    };
    assert!(matches!(refusal, Error::StorageFull(_)), "{refusal:?}");
    assert_eq!(refusal.http_status(), 503);
    assert_eq!(refusal.code(), "storage_full");
    assert!(refusal.to_string().contains("storage is full"), "{refusal}");

    // Reads go on, and what was stored is whole: every accepted batch, none of the refused.
    assert_eq!(stored(&core, &tenant), next as i64);
    assert!(steward::audit::verify(&core.db, &core.keys).unwrap().ok);
    // Refused again, the same way, while the disk stays full.
    let again = ingest_records(&core, &cli, &tenant, &batch(next, N), true).unwrap_err();
    assert!(matches!(again, Error::StorageFull(_)), "{again:?}");

    // Space freed: writes work again, without a restart.
    std::fs::remove_file(&filler).unwrap();
    let report = ingest_records(&core, &cli, &tenant, &batch(next, N), true).unwrap();
    assert_eq!(report.accepted, N as u64);
    assert_eq!(stored(&core, &tenant), (next + N) as i64);
    drop(core);
    // And after a restart everything is there and the chain verifies.
    let (core, _) = Steward::open(settings).unwrap();
    assert_eq!(stored(&core, &tenant), (next + N) as i64);
    assert!(steward::audit::verify(&core.db, &core.keys).unwrap().ok);
}

/// Blocking work (the PostgreSQL client is blocking) from a test on the runtime.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// A TCP proxy in front of PostgreSQL that can be cut (every connection dropped, new
/// ones closed at once, as a database restart or a network cut does) and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    cut: Arc<tokio::sync::Notify>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let cut = Arc::new(tokio::sync::Notify::new());
        let (up2, cut2) = (up.clone(), cut.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !up2.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (upstream, cut) = (upstream.clone(), cut2.clone());
                tokio::spawn(async move {
                    let Ok(mut server) = tokio::net::TcpStream::connect(&upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        () = cut.notified() => {}
                    }
                });
            }
        });
        Proxy { port, up, cut }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        self.cut.notify_waiters();
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// PostgreSQL going away under a server and coming back: requests meanwhile get 503
/// with `Retry-After` at once (not a hang, not a 500), the server recovers without a
/// restart, and what was acknowledged before is there.
#[tokio::test(flavor = "multi_thread")]
async fn postgres_going_away_answers_503_and_the_server_recovers() {
    let Some(env) = sync(common::Env::postgres) else {
        return;
    };
    let t = sync(|| common::seed_tenant(&env.core, "pgaway"));
    let url = env.settings.database_url.clone().unwrap();
    let upstream = url
        .split('@')
        .nth(1)
        .and_then(|rest| rest.split('/').next())
        .unwrap()
        .to_owned();
    let proxy = Proxy::start(upstream.clone()).await;
    let via_proxy = url.replace(&upstream, &format!("127.0.0.1:{}", proxy.port));
    let core = Arc::new(sync(|| {
        env.reopen_with(|s| s.database_url = Some(via_proxy.clone()))
    }));
    let server = common::Server::start(core).await;
    let token = server.login(&t.admin.username).await;
    let path = format!("/api/v1/tenants/{}/cdrs", t.tenant.id);
    let body = |from: usize| serde_json::to_value(records(from, 20)).unwrap();
    let post = |from: usize| {
        server
            .http
            .post(format!("{}{path}", server.base))
            .bearer_auth(&token)
            .json(&body(from))
            .send()
    };
    assert_eq!(post(0).await.unwrap().status(), 200);

    proxy.cut();
    for from in [20, 40] {
        let started = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(20), post(from))
            .await
            .expect("an answer, not a hang")
            .unwrap();
        assert_eq!(r.status(), 503, "{:?}", r.text().await);
        assert!(r.headers().contains_key("retry-after"));
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(b["error"]["code"], "busy", "{b}");
        assert!(started.elapsed() < Duration::from_secs(20));
    }
    let (status, _) = server
        .call(
            "GET",
            &format!("/api/v1/tenants/{}/users", t.tenant.id),
            Some(&token),
            None,
        )
        .await;
    assert_eq!(status, 503);

    // Back: the next requests succeed, without a restart.
    proxy.restore();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let r = post(20).await.unwrap();
        if r.status() == 200 {
            break;
        }
        assert_eq!(r.status(), 503);
        assert!(tokio::time::Instant::now() < deadline, "no recovery");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(post(40).await.unwrap().status(), 200);
    let stored = sync(|| stored(&env.core, &t.tenant.id));
    assert_eq!(stored, 60, "acknowledged before the cut, and re-sent after");
    // PostgreSQL handles are dropped off the runtime.
    sync(move || drop((server, env)));
}
