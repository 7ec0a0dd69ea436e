//! Several `steward serve` processes on one PostgreSQL database and one S3
//! bucket behave as one system: chat pushed across processes in commit order,
//! receipts moving across, nothing acknowledged lost when a process is killed,
//! the retention job run once between them and taken over when its process is
//! gone. The real binary, twice. Under `CI=true` it fails without PostgreSQL or
//! the S3 test server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::{Value, json};
use steward::access::{Actor, Role};
use steward::accounts::{self, Account};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

mod common;
use common::{Env, Server, new_user};

const BIN: &str = env!("CARGO_BIN_EXE_steward");

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One `steward serve` process.
struct Process {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn server(&self) -> Server {
        Server::at(&self.base)
    }
}

/// Starts a server on the environment's database, key store, master key and
/// bucket, with a data directory of its own (as on another machine).
fn start(env: &Env, name: &str, retention: &str) -> Process {
    let s = &env.settings;
    let data = env.dir.path().join(name);
    let mut cmd = Command::new(BIN);
    cmd.args([
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--retention-interval",
        retention,
    ])
    .arg("--data-dir")
    .arg(&data)
    .arg("--master-key-file")
    .arg(s.master_key_path())
    .arg("--database-url")
    .arg(s.database_url.as_deref().unwrap())
    .arg("--database-schema")
    .arg(s.database_schema.as_deref().unwrap());
    if let Some(blobs) = &s.blob_url {
        cmd.arg("--blob-url").arg(blobs);
    }
    cmd.env_remove("STEWARD_MASTER_KEY")
        .env("STEWARD_LOG", "info");
    let (child, base, log) = common::spawn_server(cmd);
    Process { child, base, log }
}

/// Blocking work (the PostgreSQL client runs a runtime of its own) from a test
/// on the runtime.
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// PostgreSQL with blobs in a fresh bucket of the S3 test server.
fn env() -> Option<Env> {
    let mut env = Env::postgres()?;
    let s3 = steward_blobs::testing::S3TestServer::require("scale_out").unwrap()?;
    let bucket = steward_blobs::testing::unique_bucket();
    s3.create_bucket(&bucket).unwrap();
    env.settings.blob_url = Some(s3.url(&bucket, "steward"));
    Some(env)
}

fn user(env: &Env, tenant: &str, name: &str) -> Account {
    sync(|| {
        accounts::create_user(
            &env.core,
            &Actor::cli(),
            tenant,
            new_user(name, Role::Subject),
        )
        .unwrap()
    })
}

async fn connect(server: &Server, token: &str) -> Ws {
    let mut req = format!("{}/api/v1/chat/ws", server.base.replacen("http", "ws", 1))
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

/// The next frame of type `kind` within `wait` (others are skipped).
async fn next_of(ws: &mut Ws, kind: &str, wait: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {kind} frame within {wait:?}"))
            .expect("the socket is open")
            .expect("a frame");
        if let WsMessage::Text(t) = msg {
            let v: Value = serde_json::from_str(t.as_str()).unwrap();
            if v["type"] == kind {
                return v;
            }
        }
    }
}

async fn send(server: &Server, token: &str, conversation: &str, body: &str) -> (u16, Value) {
    server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conversation}/messages"),
            Some(token),
            Some(json!({ "body": body })),
        )
        .await
}

/// Every message of a conversation through `server`, oldest first: (id, body).
async fn history(server: &Server, token: &str, conversation: &str) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/api/v1/chat/conversations/{conversation}/messages?limit=200");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (s, page) = server.call("GET", &path, Some(token), None).await;
        assert_eq!(s, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            out.push((
                m["id"].as_i64().unwrap(),
                m["body"].as_str().unwrap_or("").to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    out.reverse();
    out
}

/// The retention job's row: (runs, holder).
fn retention_job(env: &Env) -> (i64, String) {
    match sync(|| steward::jobs::state(&env.core, "retention").unwrap()) {
        Some(s) => (s.runs, s.holder.unwrap_or_default()),
        None => (0, String::new()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_database_behave_as_one_system() {
    let Some(env) = sync(env) else { return };
    // The seeding core writes nothing more once the processes run.
    let seeded = sync(|| common::seed_tenant(&env.core, "so"));
    let (_ann, bob, cat) = (
        user(&env, &seeded.tenant.id, "so-ann"),
        user(&env, &seeded.tenant.id, "so-bob"),
        user(&env, &seeded.tenant.id, "so-cat"),
    );
    let mut a = sync(|| start(&env, "a", "2s"));
    let b = sync(|| start(&env, "b", "2s"));
    let (sa, sb) = (a.server(), b.server());
    let ann_a = sa.login("so-ann").await;
    let bob_b = sb.login("so-bob").await;
    let cat_a = sa.login("so-cat").await;
    let ann_b = sb.login("so-ann").await;

    // A group of the three, made through A.
    let (s, conv) = sa
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&ann_a),
            Some(json!({"kind": "group", "title": "Two servers", "members": [bob.subject_id, cat.subject_id]})),
        )
        .await;
    assert_eq!(s, 201, "{conv}");
    let conv = conv["id"].as_str().unwrap().to_owned();

    // Bob listens on B, Ann on A (and on B, another device), Cat on A.
    let mut bob_ws = connect(&sb, &bob_b).await;
    let mut ann_ws = connect(&sa, &ann_a).await;
    let mut ann_other = connect(&sb, &ann_b).await;
    let mut cat_ws = connect(&sa, &cat_a).await;

    // 1. A message sent through A reaches Bob's socket on B, Ann's other
    // device on B, and Cat on A.
    let (s, sent) = send(&sa, &ann_a, &conv, "hello from A").await;
    assert_eq!(s, 201, "{sent} {:?}", a.log.lock().unwrap());
    let first = sent["id"].as_i64().unwrap();
    let got = next_of(&mut bob_ws, "message", Duration::from_secs(10)).await;
    assert_eq!(got["message"]["id"], first);
    assert_eq!(got["message"]["body"], "hello from A");
    assert_eq!(got["message"]["state"], "sent");
    let own = next_of(&mut ann_other, "message", Duration::from_secs(10)).await;
    assert_eq!(own["message"]["id"], first);
    assert_eq!(own["message"]["receipts"].as_array().unwrap().len(), 2);
    let got = next_of(&mut cat_ws, "message", Duration::from_secs(10)).await;
    assert_eq!(got["message"]["id"], first);
    // A long one is too big for the notification: B reads it from the database.
    let long = "a long message ".repeat(300);
    let (s, sent) = send(&sa, &ann_a, &conv, &long).await;
    assert_eq!(s, 201, "{sent}");
    let got = next_of(&mut bob_ws, "message", Duration::from_secs(10)).await;
    assert_eq!(got["message"]["id"], sent["id"]);
    assert_eq!(got["message"]["body"], long.as_str());
    let own = next_of(&mut ann_other, "message", Duration::from_secs(10)).await;
    assert_eq!(own["message"]["body"], long.as_str());
    let got = next_of(&mut cat_ws, "message", Duration::from_secs(10)).await;
    assert_eq!(got["message"]["body"], long.as_str());

    // 2. Bob reads it through B: Ann's socket on A gets the status event.
    let (s, marked) = sb
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conv}/read"),
            Some(&bob_b),
            Some(json!({"up_to": first})),
        )
        .await;
    assert_eq!(s, 200, "{marked}");
    let status = next_of(&mut ann_ws, "status", Duration::from_secs(10)).await;
    assert_eq!(status["subject_id"], bob.subject_id.as_str());
    assert_eq!(status["state"], "read");
    assert_eq!(status["message_ids"], json!([first]));

    // 3. 50 messages sent alternately through A (Ann) and B (Bob): both
    // processes' history has them in the order they were committed.
    let mut order = Vec::new();
    for i in 0..50 {
        let (server, token, who) = if i % 2 == 0 {
            (&sa, &ann_a, "ann")
        } else {
            (&sb, &bob_b, "bob")
        };
        let body = format!("alt {i} {who}");
        let (s, m) = send(server, token, &conv, &body).await;
        assert_eq!(s, 201, "{m}");
        order.push((m["id"].as_i64().unwrap(), body));
    }
    assert!(
        order.windows(2).all(|w| w[0].0 < w[1].0),
        "ids follow commit order: {order:?}"
    );
    let from_a = history(&sa, &ann_a, &conv).await;
    let from_b = history(&sb, &bob_b, &conv).await;
    assert_eq!(from_a, from_b);
    assert_eq!(&from_a[2..], &order[..]);

    // 4. Both send at once, 60 each, through different processes: Cat's
    // socket (on A) sees every message once, in increasing id order, which is
    // the history's order.
    let mut seen_before: HashSet<i64> = from_a.iter().map(|(id, _)| *id).collect();
    // Drain what Cat received so far (the 50 above) and check their order.
    let mut cat_ids = Vec::new();
    while cat_ids.len() < 50 {
        let m = next_of(&mut cat_ws, "message", Duration::from_secs(10)).await;
        cat_ids.push(m["message"]["id"].as_i64().unwrap());
    }
    assert_eq!(cat_ids, order.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    let burst = |server: Server, token: String, who: &'static str, conv: String| async move {
        let mut acked = Vec::new();
        for i in 0..60 {
            let (s, m) = send(&server, &token, &conv, &format!("burst {who} {i}")).await;
            assert_eq!(s, 201, "{m}");
            acked.push(m["id"].as_i64().unwrap());
        }
        acked
    };
    let (x, y) = tokio::join!(
        tokio::spawn(burst(a.server(), ann_a.clone(), "ann", conv.clone())),
        tokio::spawn(burst(b.server(), bob_b.clone(), "bob", conv.clone())),
    );
    let (x, y) = (x.unwrap(), y.unwrap());
    let mut pushed = Vec::new();
    while pushed.len() < 120 {
        let m = next_of(&mut cat_ws, "message", Duration::from_secs(10)).await;
        pushed.push(m["message"]["id"].as_i64().unwrap());
    }
    assert!(
        pushed.windows(2).all(|w| w[0] < w[1]),
        "pushed in commit order: {pushed:?}"
    );
    let all = history(&sa, &cat_a, &conv).await;
    let after: Vec<i64> = all
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !seen_before.contains(id))
        .collect();
    assert_eq!(pushed, after);
    let mut sent_ids: Vec<i64> = x.iter().chain(&y).copied().collect();
    sent_ids.sort_unstable();
    assert_eq!(sent_ids, after);
    seen_before.extend(after);

    // 5. The retention job: run once per interval between the two (each
    // would run it every 2 s on its own), by one of them.
    let (runs_then, _) = retention_job(&env);
    tokio::time::sleep(Duration::from_secs(8)).await;
    let (runs_now, holder) = retention_job(&env);
    let in_window = runs_now - runs_then;
    assert!(
        (2..=5).contains(&in_window),
        "{in_window} retention runs in 8 s with an interval of 2 s between two processes"
    );
    assert!(
        holder.ends_with(&format!(":{}", a.pid())) || holder.ends_with(&format!(":{}", b.pid())),
        "{holder}"
    );

    let cat_last = *pushed.last().unwrap();

    // 6. A is killed in the middle of traffic: every message either process
    // acknowledged is in the history exactly once.
    let acked: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(Vec::new()));
    let sender = |server: Server,
                  token: String,
                  who: &'static str,
                  acked: Arc<Mutex<Vec<String>>>,
                  conv: String| async move {
        for i in 0..400 {
            let body = format!("kill {who} {i}");
            match tokio::time::timeout(
                Duration::from_secs(5),
                server
                    .http
                    .post(server.url(&format!("/api/v1/chat/conversations/{conv}/messages")))
                    .bearer_auth(&token)
                    .json(&json!({ "body": body }))
                    .send(),
            )
            .await
            {
                Ok(Ok(r)) if r.status().as_u16() == 201 => acked.lock().unwrap().push(body),
                _ => break,
            }
        }
    };
    let ta = tokio::spawn(sender(
        a.server(),
        ann_a.clone(),
        "ann",
        acked.clone(),
        conv.clone(),
    ));
    let tb = tokio::spawn(sender(
        b.server(),
        bob_b.clone(),
        "bob",
        acked.clone(),
        conv.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(700)).await;
    let killed_pid = a.pid();
    tokio::task::spawn_blocking(move || a.kill()).await.ok();
    ta.await.unwrap();
    tb.await.unwrap();
    let acked = acked.lock().unwrap().clone();
    assert!(
        acked.iter().any(|b| b.starts_with("kill ann")),
        "A acknowledged some before it died"
    );
    assert!(acked.iter().any(|b| b.starts_with("kill bob")));
    let all = history(&sb, &bob_b, &conv).await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (_, body) in &all {
        *count.entry(body.as_str()).or_default() += 1;
    }
    for body in &acked {
        assert_eq!(
            count.get(body.as_str()),
            Some(&1),
            "{body} once in the history"
        );
    }
    assert!(count.values().all(|n| *n == 1), "nothing stored twice");
    assert!(all.windows(2).all(|w| w[0].0 < w[1].0));

    // Cat's socket was on A. Cat reconnects to B and resumes after the last
    // message it had: exactly the rest of the history, oldest first, once.
    let cat_b = sb.login("so-cat").await;
    let mut resumed: Vec<(i64, String)> = Vec::new();
    let mut path = format!("/api/v1/chat/conversations/{conv}/messages?after={cat_last}&limit=200");
    loop {
        let (s, page) = sb.call("GET", &path, Some(&cat_b), None).await;
        assert_eq!(s, 200, "{page}");
        for m in page["messages"].as_array().unwrap() {
            resumed.push((
                m["id"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            ));
        }
        match page["next_cursor"].as_str() {
            Some(c) => {
                path = format!("/api/v1/chat/conversations/{conv}/messages?cursor={c}&limit=200")
            }
            None => break,
        }
    }
    let expected: Vec<(i64, String)> = all
        .iter()
        .filter(|(id, _)| *id > cat_last)
        .cloned()
        .collect();
    assert!(expected.len() > 200, "paged: {}", expected.len());
    assert_eq!(resumed, expected);

    // 7. With A gone, B takes the retention job over.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (runs, holder) = retention_job(&env);
        if holder.ends_with(&format!(":{}", b.pid())) && runs > runs_now {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "B did not take the retention job over from A (pid {killed_pid}): {holder}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // B's sockets are still served.
    let (s, _) = send(&sb, &bob_b, &conv, "after A").await;
    assert_eq!(s, 201);
    // (Ann's other device on B has every earlier message queued before it.)
    loop {
        let got = next_of(&mut ann_other, "message", Duration::from_secs(10)).await;
        if got["message"]["body"] == "after A" {
            break;
        }
    }
    drop((bob_ws, ann_ws, cat_ws, b));
    sync(move || drop(env));
}

/// Logging out through one process closes that session's socket on another;
/// disabling an account through one closes its sockets everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_and_disable_close_sockets_on_every_process() {
    let Some(env) = sync(env) else { return };
    let seeded = sync(|| common::seed_tenant(&env.core, "sc"));
    let ann = user(&env, &seeded.tenant.id, "sc-ann");
    let a = sync(|| start(&env, "a", "0"));
    let b = sync(|| start(&env, "b", "0"));
    let (sa, sb) = (a.server(), b.server());
    let token = sa.login("sc-ann").await;
    let mut on_b = connect(&sb, &token).await;
    let (s, _) = sa
        .call("POST", "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(s, 204);
    assert_eq!(closed(&mut on_b).await, Some(1008));

    let token = sb.login("sc-ann").await;
    let mut on_b = connect(&sb, &token).await;
    let admin = sa.login("sc-admin").await;
    let (s, body) = sa
        .call(
            "POST",
            &format!("/api/v1/accounts/{}/disable", ann.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(closed(&mut on_b).await, Some(1008));
    drop((a, b));
    sync(move || drop(env));
}

/// The close code the server sent, within 5 s (well under the 30 s session
/// check that would close it anyway).
async fn closed(ws: &mut Ws) -> Option<u16> {
    common::close_code(ws, Duration::from_secs(5)).await
}
