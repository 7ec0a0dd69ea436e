//! Chat on both databases, through a real server and real WebSockets: a
//! message sent by one user reaches another user's open socket and its status
//! moves to delivered, then read (seen through REST and by the sender's
//! socket); groups; members only (404 for everyone else, in the tenant or
//! not); the employer's audited read, and its refusal under a policy without
//! the `employer` recipient; pagination; malformed frames and bodies; the
//! erasure of a sender; no message text on disk in clear.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::{Env, PASSWORD, Server, new_user, seed_tenant};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts::{self, Account};
use steward::config::Settings;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Runs blocking domain code from a test's async body (the sync PostgreSQL
/// client must not run on a runtime thread).
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn user(core: &Steward, tenant: &str, name: &str) -> Account {
    sync(|| {
        accounts::create_user(core, &Actor::cli(), tenant, new_user(name, Role::Subject)).unwrap()
    })
}

fn ws_url(server: &Server) -> String {
    format!("{}/api/v1/chat/ws", server.base.replace("http://", "ws://"))
}

/// Opens a chat socket with the token in the Authorization header.
async fn connect(server: &Server, token: &str) -> Ws {
    let mut req = ws_url(server).into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws
}

async fn send(ws: &mut Ws, frame: Value) {
    ws.send(WsMessage::Text(frame.to_string().into()))
        .await
        .unwrap();
}

/// The next JSON text frame, within 10 s.
async fn next(ws: &mut Ws) -> Value {
    loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a frame within 10 s")
            .expect("the socket is open")
            .expect("a frame");
        match msg {
            WsMessage::Text(t) => return serde_json::from_str(t.as_str()).unwrap(),
            WsMessage::Close(c) => panic!("socket closed: {c:?}"),
            _ => {}
        }
    }
}

/// Frames until one of type `kind` (others are returned too, in order).
async fn until(ws: &mut Ws, kind: &str) -> (Value, Vec<Value>) {
    let mut skipped = Vec::new();
    loop {
        let f = next(ws).await;
        if f["type"] == kind {
            return (f, skipped);
        }
        skipped.push(f);
    }
}

/// Nothing arrives on `ws` for a moment.
async fn quiet(ws: &mut Ws) {
    if let Ok(Some(Ok(m))) = tokio::time::timeout(Duration::from_millis(300), ws.next()).await {
        panic!("unexpected frame: {m:?}");
    }
}

/// Holds the database's write lock for `how_long` on a thread of its own
/// (another writer), returning once it is held.
fn hold_database(core: &Arc<Steward>, how_long: Duration) -> std::thread::JoinHandle<()> {
    let (held, holding) = std::sync::mpsc::channel();
    let core = core.clone();
    let busy = std::thread::spawn(move || {
        core.write(&steward::access::Actor::system("test"), |_tx| {
            held.send(()).unwrap();
            std::thread::sleep(how_long);
            Ok(())
        })
        .unwrap()
    });
    holding.recv().unwrap();
    busy
}

/// The code of the close frame the server sends next (frames before it are
/// skipped); `None` when the socket ends without one. Fails after 10 s.
async fn close_code(ws: &mut Ws) -> Option<u16> {
    common::close_code(ws, Duration::from_secs(10)).await
}

async fn create_direct(server: &Server, token: &str, other: &str) -> Value {
    let (s, body) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(token),
            Some(json!({"kind": "direct", "members": [other]})),
        )
        .await;
    assert!(s == 201 || s == 200, "{s} {body}");
    body
}

fn messages_path(conversation: &str) -> String {
    format!("/api/v1/chat/conversations/{conversation}/messages")
}

fn audit_for(env: &Env, subject: &str) -> Vec<steward::audit::Entry> {
    sync(|| steward::audit::for_subject(&env.core.db, subject).unwrap())
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

/// The acceptance path, a group, members only, the employer's read,
/// pagination, and many concurrent senders through the writer.
async fn realtime_scenario(env: &Env) {
    let core = env.core.clone();
    let t = sync(|| seed_tenant(&core, "chat-a"));
    let other = sync(|| seed_tenant(&core, "chat-b"));
    let ann = user(&core, &t.tenant.id, "chat-ann");
    let bob = user(&core, &t.tenant.id, "chat-bob");
    let cat = user(&core, &t.tenant.id, "chat-cat");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let cat_t = server.login(&cat.username).await;

    // Ann and Bob have their sockets open; Ann starts a direct conversation.
    let mut ann_ws = connect(&server, &ann_t).await;
    let mut bob_ws = connect(&server, &bob_t).await;
    let direct = create_direct(&server, &ann_t, &bob.subject_id).await;
    let conv = direct["id"].as_str().unwrap().to_owned();
    assert_eq!(direct["kind"], "direct");
    assert_eq!(direct["members"].as_array().unwrap().len(), 2);
    // Asking again returns the same conversation (200), from either side.
    let again = create_direct(&server, &bob_t, &ann.subject_id).await;
    assert_eq!(again["id"], conv.as_str());

    // Ann's and Bob's retention clocks stand far in the past before they chat.
    let engaged = |who: &Account| {
        count(
            env,
            &format!(
                "SELECT last_engagement_at FROM subjects WHERE id = '{}'",
                who.subject_id
            ),
        )
    };
    sync(|| {
        core.db
            .write(|c: &mut dyn steward_store::Conn| {
                c.execute(
                    "UPDATE subjects SET last_engagement_at = 1000 WHERE id IN ($1, $2)",
                    steward_store::params![ann.subject_id.as_str(), bob.subject_id.as_str()],
                )
            })
            .unwrap()
    });
    let before_chat = steward::clock::now();

    // Ann sends over her socket; Bob's open socket receives it.
    send(
        &mut ann_ws,
        json!({"type": "send", "conversation_id": conv, "body": "Lunch at noon?", "client_id": "m-1"}),
    )
    .await;
    let (sent, _) = until(&mut ann_ws, "sent").await;
    assert_eq!(sent["client_id"], "m-1");
    let id = sent["message"]["id"].as_i64().unwrap();
    assert_eq!(sent["message"]["receipts"][0]["state"], "sent");
    assert_eq!(
        sent["message"]["receipts"][0]["subject_id"],
        bob.subject_id.as_str()
    );
    let pushed = next(&mut bob_ws).await;
    assert_eq!(pushed["type"], "message", "{pushed}");
    assert_eq!(pushed["message"]["id"], id);
    assert_eq!(pushed["message"]["body"], "Lunch at noon?");
    assert_eq!(
        pushed["message"]["sender_subject_id"],
        ann.subject_id.as_str()
    );
    assert_eq!(pushed["message"]["state"], "sent");

    // Bob's app acknowledges delivery: the status moves to delivered, Ann's
    // socket hears it, and REST shows it.
    send(
        &mut bob_ws,
        json!({"type": "delivered", "conversation_id": conv, "up_to": id, "client_id": "d-1"}),
    )
    .await;
    let (marked, _) = until(&mut bob_ws, "marked").await;
    assert_eq!(
        (marked["changed"].as_i64(), marked["state"].as_str()),
        (Some(1), Some("delivered"))
    );
    let (status, _) = until(&mut ann_ws, "status").await;
    assert_eq!(status["state"], "delivered");
    assert_eq!(status["subject_id"], bob.subject_id.as_str());
    assert_eq!(status["message_ids"], json!([id]));
    // Sending restarted Ann's retention clock, acknowledging restarted Bob's.
    assert!(engaged(&ann) >= before_chat, "the sender's clock moved");
    assert!(engaged(&bob) >= before_chat, "the recipient's clock moved");
    let (s, page) = server
        .call("GET", &messages_path(&conv), Some(&ann_t), None)
        .await;
    assert_eq!(s, 200, "{page}");
    let r = &page["messages"][0]["receipts"][0];
    assert_eq!(r["state"], "delivered");
    assert!(r["delivered_at"].as_i64().is_some() && r["read_at"].is_null());
    // A second delivered mark changes nothing: states only move forward.
    send(
        &mut bob_ws,
        json!({"type": "delivered", "conversation_id": conv, "up_to": id}),
    )
    .await;
    assert_eq!(until(&mut bob_ws, "marked").await.0["changed"], 0);

    // Bob reads it: read, with both times, on Ann's socket and through REST.
    send(
        &mut bob_ws,
        json!({"type": "read", "conversation_id": conv, "up_to": id}),
    )
    .await;
    assert_eq!(until(&mut bob_ws, "marked").await.0["changed"], 1);
    let (status, _) = until(&mut ann_ws, "status").await;
    assert_eq!(status["state"], "read");
    let (_, page) = server
        .call("GET", &messages_path(&conv), Some(&ann_t), None)
        .await;
    let r = &page["messages"][0]["receipts"][0];
    assert_eq!(r["state"], "read");
    assert!(r["read_at"].as_i64().is_some() && r["delivered_at"].as_i64().is_some());
    let (_, page) = server
        .call("GET", &messages_path(&conv), Some(&bob_t), None)
        .await;
    assert_eq!(page["messages"][0]["state"], "read", "{page}");
    assert!(page["messages"][0].get("receipts").is_none(), "{page}");
    // Delivered after read does not move it back.
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conv}/delivered"),
            Some(&bob_t),
            Some(json!({"up_to": id})),
        )
        .await;
    assert_eq!((s, body["changed"].as_i64()), (200, Some(0)), "{body}");

    // A message sent through REST reaches the other side's socket too.
    let (s, m) = server
        .call(
            "POST",
            &messages_path(&conv),
            Some(&bob_t),
            Some(json!({"body": "Yes, see you there"})),
        )
        .await;
    assert_eq!(s, 201, "{m}");
    let (pushed, _) = until(&mut ann_ws, "message").await;
    assert_eq!(pushed["message"]["id"], m["id"]);
    assert_eq!(pushed["message"]["body"], "Yes, see you there");
    // REST marks reach the sender's socket as status events.
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conv}/read"),
            Some(&ann_t),
            Some(json!({"up_to": m["id"]})),
        )
        .await;
    assert_eq!((s, body["changed"].as_i64()), (200, Some(1)), "{body}");
    let (status, _) = until(&mut bob_ws, "status").await;
    assert_eq!(
        (status["state"].as_str(), status["message_ids"][0].as_i64()),
        (Some("read"), m["id"].as_i64())
    );
    // The conversation list shows it, with nothing unread for Ann.
    let (s, list) = server
        .call("GET", "/api/v1/chat/conversations", Some(&ann_t), None)
        .await;
    assert_eq!(s, 200, "{list}");
    let c0 = &list["conversations"][0];
    assert_eq!(
        (c0["id"].as_str(), c0["unread"].as_i64()),
        (Some(conv.as_str()), Some(0))
    );
    assert_eq!(c0["last_message_id"], m["id"]);

    // A group of three: a message reaches both other members.
    let mut cat_ws = connect(&server, &cat_t).await;
    let (s, group) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&ann_t),
            Some(json!({"kind": "group", "title": "Release planning", "members": [bob.subject_id, cat.subject_id]})),
        )
        .await;
    assert_eq!(s, 201, "{group}");
    let gid = group["id"].as_str().unwrap().to_owned();
    assert_eq!(group["title"], "Release planning");
    send(
        &mut ann_ws,
        json!({"type": "send", "conversation_id": gid, "body": "Kick-off on Monday"}),
    )
    .await;
    let (sent, _) = until(&mut ann_ws, "sent").await;
    assert_eq!(sent["message"]["receipts"].as_array().unwrap().len(), 2);
    for ws in [&mut bob_ws, &mut cat_ws] {
        let (m, _) = until(ws, "message").await;
        assert_eq!(m["message"]["body"], "Kick-off on Monday");
        assert_eq!(m["message"]["conversation_id"], gid.as_str());
    }
    // Cat is not in the direct conversation: not found, over REST and the socket.
    for (method, path, body) in [
        ("GET", messages_path(&conv), None),
        (
            "POST",
            messages_path(&conv),
            Some(json!({"body": "let me in"})),
        ),
        ("GET", format!("/api/v1/chat/conversations/{conv}"), None),
        (
            "POST",
            format!("/api/v1/chat/conversations/{conv}/read"),
            Some(json!({"up_to": id})),
        ),
    ] {
        let (s, body) = server.call(method, &path, Some(&cat_t), body).await;
        assert_eq!(s, 404, "{method} {path}: {body}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    send(
        &mut cat_ws,
        json!({"type": "send", "conversation_id": conv, "body": "let me in", "client_id": "x"}),
    )
    .await;
    let (e, _) = until(&mut cat_ws, "error").await;
    assert_eq!(
        (e["client_id"].as_str(), e["error"]["code"].as_str()),
        (Some("x"), Some("not_found"))
    );
    quiet(&mut ann_ws).await;
    quiet(&mut bob_ws).await;
    // Another tenant's user: not found either, and cannot add to or start with them.
    let outsider_t = server.login(&other.subject.username).await;
    let (s, _) = server
        .call("GET", &messages_path(&conv), Some(&outsider_t), None)
        .await;
    assert_eq!(s, 404);
    let (s, body) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&outsider_t),
            Some(json!({"kind": "direct", "members": [ann.subject_id]})),
        )
        .await;
    assert_eq!(s, 404, "{body}");
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{gid}/members"),
            Some(&ann_t),
            Some(json!({"subject_id": other.subject.subject_id})),
        )
        .await;
    assert_eq!(s, 404, "{body}");

    // Members: any member adds; only the owner removes others; anyone leaves.
    let dan = user(&core, &t.tenant.id, "chat-dan");
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{gid}/members"),
            Some(&bob_t),
            Some(json!({"subject_id": dan.subject_id})),
        )
        .await;
    assert_eq!(
        (s, body["members"].as_array().map(Vec::len)),
        (200, Some(4)),
        "{body}"
    );
    let (s, body) = server
        .call(
            "DELETE",
            &format!(
                "/api/v1/chat/conversations/{gid}/members/{}",
                cat.subject_id
            ),
            Some(&bob_t),
            None,
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, _) = server
        .call(
            "DELETE",
            &format!(
                "/api/v1/chat/conversations/{gid}/members/{}",
                dan.subject_id
            ),
            Some(&ann_t),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = server
        .call(
            "DELETE",
            &format!(
                "/api/v1/chat/conversations/{gid}/members/{}",
                cat.subject_id
            ),
            Some(&cat_t),
            None,
        )
        .await;
    assert_eq!(s, 204);
    let (s, _) = server
        .call("GET", &messages_path(&gid), Some(&cat_t), None)
        .await;
    assert_eq!(s, 404, "a member who left reads nothing more");
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conv}/members"),
            Some(&ann_t),
            Some(json!({"subject_id": cat.subject_id})),
        )
        .await;
    assert_eq!(s, 409, "a direct conversation stays two: {body}");

    // The employer (the tenant's admin) reads, audited as a disclosure to
    // `employer` for every person shown; another tenant's admin gets 404.
    let admin_t = server.login(&t.admin.username).await;
    let before = audit_for(env, &ann.subject_id).len();
    let (s, page) = server
        .call(
            "GET",
            &format!(
                "/api/v1/tenants/{}/chat/conversations/{conv}/messages",
                t.tenant.id
            ),
            Some(&admin_t),
            None,
        )
        .await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert_eq!(page["messages"][1]["body"], "Lunch at noon?");
    assert_eq!(page["messages"][1]["receipts"][0]["state"], "read");
    for who in [&ann, &bob] {
        let entries = audit_for(env, &who.subject_id);
        let d = entries.last().unwrap();
        assert_eq!(
            (
                d.action.as_str(),
                d.recipient.as_deref(),
                d.category.as_deref(),
                d.purpose.as_deref(),
                d.actor.clone()
            ),
            (
                "disclose",
                Some("employer"),
                Some("chat"),
                Some("security"),
                format!("account:{}", t.admin.id)
            )
        );
        assert_eq!(d.detail["conversation_id"], conv.as_str());
    }
    assert_eq!(audit_for(env, &ann.subject_id).len(), before + 1);
    let (s, list) = server
        .call(
            "GET",
            &format!(
                "/api/v1/tenants/{}/chat/conversations?purpose=provision",
                t.tenant.id
            ),
            Some(&admin_t),
            None,
        )
        .await;
    assert_eq!(s, 200, "{list}");
    assert_eq!(list["conversations"].as_array().unwrap().len(), 2);
    let d = audit_for(env, &bob.subject_id).pop().unwrap();
    assert_eq!(
        (d.action.as_str(), d.purpose.as_deref()),
        ("disclose", Some("provision"))
    );
    let (s, body) = server
        .call(
            "GET",
            &format!(
                "/api/v1/tenants/{}/chat/conversations?purpose=marketing",
                t.tenant.id
            ),
            Some(&admin_t),
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["field"].as_str()),
        (400, Some("purpose")),
        "{body}"
    );
    let other_admin_t = server.login(&other.admin.username).await;
    for path in [
        format!("/api/v1/tenants/{}/chat/conversations", t.tenant.id),
        format!(
            "/api/v1/tenants/{}/chat/conversations/{conv}/messages",
            t.tenant.id
        ),
        format!(
            "/api/v1/tenants/{}/chat/conversations/{conv}/messages",
            other.tenant.id
        ),
    ] {
        let (s, body) = server.call("GET", &path, Some(&other_admin_t), None).await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    // Users who are not the employer's admin may not.
    let (s, _) = server
        .call(
            "GET",
            &format!("/api/v1/tenants/{}/chat/conversations", t.tenant.id),
            Some(&ann_t),
            None,
        )
        .await;
    assert_eq!(s, 403);
    // The members' own reading wrote no audit entry.
    let bob_reads = audit_for(env, &bob.subject_id)
        .iter()
        .filter(|e| e.action == "read" || e.action == "process")
        .count();
    assert_eq!(bob_reads, 0);

    // Pagination: newest first, bounded pages, an opaque cursor.
    for i in 0..7 {
        let (s, _) = server
            .call(
                "POST",
                &messages_path(&gid),
                Some(&bob_t),
                Some(json!({"body": format!("page test {i}")})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            None => format!("{}?limit=3", messages_path(&gid)),
            Some(c) => format!("{}?limit=3&cursor={c}", messages_path(&gid)),
        };
        let (s, page) = server.call("GET", &path, Some(&ann_t), None).await;
        assert_eq!(s, 200, "{page}");
        pages += 1;
        for m in page["messages"].as_array().unwrap() {
            seen.push(m["id"].as_i64().unwrap());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    assert_eq!((seen.len(), pages), (8, 3), "{seen:?}");
    assert!(
        seen.windows(2).all(|w| w[0] > w[1]),
        "newest first: {seen:?}"
    );

    // Eight concurrent senders through the writer: every message acknowledged
    // once, with its own id, and stored.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let sender = user(&core, &t.tenant.id, &format!("chat-load-{i}"));
        let token = server.login(&sender.username).await;
        let c = create_direct(&server, &token, &ann.subject_id).await;
        let conv = c["id"].as_str().unwrap().to_owned();
        let mut ws = connect(&server, &token).await;
        tasks.push(tokio::spawn(async move {
            for n in 0..50 {
                send(
                    &mut ws,
                    json!({"type": "send", "conversation_id": conv, "body": format!("load {i}.{n}"), "client_id": format!("{i}.{n}")}),
                )
                .await;
            }
            let mut ids = Vec::new();
            while ids.len() < 50 {
                let f = next(&mut ws).await;
                assert_eq!(f["type"], "sent", "{f}");
                assert_eq!(f["client_id"], format!("{i}.{}", ids.len()), "in order");
                ids.push(f["message"]["id"].as_i64().unwrap());
            }
            ids
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 400);
    let mut ann_got = 0;
    while ann_got < 400 {
        let f = next(&mut ann_ws).await;
        if f["type"] == "message"
            && f["message"]["body"]
                .as_str()
                .is_some_and(|b| b.starts_with("load "))
        {
            ann_got += 1;
        }
    }
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM chat_messages WHERE sender_subject_id IS NOT NULL"
        ),
        1 + 1 + 1 + 7 + 400
    );
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_on_sqlite() {
    let env = Env::sqlite();
    realtime_scenario(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn chat_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    realtime_scenario(&env).await;
    sync(move || drop(env));
}

/// The same on PostgreSQL with `--chat-synchronous-commit off`: the writer's
/// `SET LOCAL synchronous_commit = off` runs in every batch, and everything
/// the scenario checks (storage, order, receipts, pushes) holds.
#[tokio::test(flavor = "multi_thread")]
async fn chat_on_postgres_without_synchronous_commit() {
    // Opened (and the first handle dropped) off the runtime: the PostgreSQL
    // client runs a runtime of its own.
    let env = sync(|| {
        let mut env = Env::postgres()?;
        env.settings.chat_synchronous_commit = false;
        env.core = Arc::new(Steward::open(env.settings.clone()).unwrap().0);
        Some(env)
    });
    let Some(env) = env else {
        return;
    };
    realtime_scenario(&env).await;
    sync(move || drop(env));
}

/// A Steward with a policy whose `chat` category lacks the `employer` recipient.
fn without_employer(dir: &Path) -> Arc<Steward> {
    let default = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy/default.toml"),
    )
    .unwrap();
    let old = r#"recipients = ["hosting", "employer", "processing_centre_us", "processing_centre_in", "authorities", "assignees"]"#;
    let at = default.find("[categories.chat]").unwrap();
    let end = at + default[at..].find(old).unwrap();
    let mut policy = default.clone();
    policy.replace_range(
        end..end + old.len(),
        r#"recipients = ["hosting", "processing_centre_us", "processing_centre_in", "authorities", "assignees"]"#,
    );
    let file = dir.join("policy.toml");
    std::fs::write(&file, policy).unwrap();
    let settings = Settings {
        data_dir: dir.join("data"),
        policy_file: Some(file),
        ..Settings::default()
    };
    Arc::new(Steward::open(settings).unwrap().0)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_employer_reads_only_when_the_policy_declares_it() {
    let dir = tempfile::tempdir().unwrap();
    let core = without_employer(dir.path());
    let t = seed_tenant(&core, "noemp");
    let ann = user(&core, &t.tenant.id, "noemp-ann");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let c = create_direct(&server, &ann_t, &t.subject.subject_id).await;
    let conv = c["id"].as_str().unwrap();
    let (s, _) = server
        .call(
            "POST",
            &messages_path(conv),
            Some(&ann_t),
            Some(json!({"body": "private"})),
        )
        .await;
    assert_eq!(s, 201, "members still chat");
    let admin_t = server.login(&t.admin.username).await;
    for path in [
        format!("/api/v1/tenants/{}/chat/conversations", t.tenant.id),
        format!(
            "/api/v1/tenants/{}/chat/conversations/{conv}/messages",
            t.tenant.id
        ),
    ] {
        let (s, body) = server.call("GET", &path, Some(&admin_t), None).await;
        assert_eq!(s, 403, "{path}: {body}");
        assert!(
            body.to_string().contains("employer"),
            "the refusal names the recipient: {body}"
        );
        assert!(!body.to_string().contains("private"));
    }
    let entries = steward::audit::list(&core.db, 0, 10_000, Some(&t.tenant.id)).unwrap();
    let refused: Vec<_> = entries
        .iter()
        .filter(|e| e.action == "process.refused" && e.recipient.as_deref() == Some("employer"))
        .collect();
    assert_eq!(refused.len(), 2, "each refused read is audited");
    assert!(!entries.iter().any(|e| e.action == "disclose"));
}

/// Raw text frames to a socket, for malformed input.
async fn send_text(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::Text(text.to_owned().into()))
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_frames_and_bodies_get_clear_errors_and_lose_nothing() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "bad");
    let ann = user(&core, &t.tenant.id, "bad-ann");
    let bob = user(&core, &t.tenant.id, "bad-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let conv = create_direct(&server, &ann_t, &bob.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ann_ws = connect(&server, &ann_t).await;
    let mut bob_ws = connect(&server, &bob_t).await;
    send(
        &mut ann_ws,
        json!({"type": "send", "conversation_id": conv, "body": "stored before"}),
    )
    .await;
    until(&mut ann_ws, "sent").await;
    until(&mut bob_ws, "message").await;
    let stored = count(&env, "SELECT COUNT(*) FROM chat_messages");

    let max = core.settings.chat_max_message_bytes;
    let long = "x".repeat(max + 1);
    let cases: Vec<(String, Option<&str>, &str)> = vec![
        ("{\"type\": \"send\",".into(), None, "invalid JSON"),
        ("[\"send\"]".into(), None, "JSON object"),
        ("\"hello\"".into(), None, "JSON object"),
        (json!({"conversation_id": conv, "body": "x"}).to_string(), Some("type"), "type"),
        (json!({"type": 7}).to_string(), Some("type"), "string"),
        (json!({"type": "shout", "body": "x"}).to_string(), Some("type"), "shout"),
        (json!({"type": "send", "conversation_id": conv}).to_string(), Some("body"), "body"),
        (json!({"type": "send", "conversation_id": conv, "body": 5}).to_string(), Some("body"), "body"),
        (json!({"type": "send", "conversation_id": conv, "body": "x", "colour": "red"}).to_string(), Some("colour"), "colour"),
        (json!({"type": "send", "conversation_id": conv, "body": ""}).to_string(), Some("body"), "empty"),
        (json!({"type": "send", "conversation_id": conv, "body": "   \n "}).to_string(), Some("body"), "empty"),
        (json!({"type": "send", "conversation_id": conv, "body": long}).to_string(), Some("body"), "at most"),
        (json!({"type": "send", "conversation_id": "not-an-id", "body": "x"}).to_string(), Some("conversation_id"), "not-an-id"),
        (json!({"type": "send", "conversation_id": conv, "body": "x", "client_id": "c".repeat(65)}).to_string(), Some("client_id"), "64"),
        (json!({"type": "read", "conversation_id": conv, "up_to": "all"}).to_string(), Some("up_to"), "up_to"),
        (json!({"type": "read", "conversation_id": conv, "up_to": 0}).to_string(), Some("up_to"), "positive"),
        (json!({"type": "delivered", "conversation_id": "0190c3f2-0000-7000-8000-000000000001", "up_to": 1}).to_string(), None, "not found"),
    ];
    for (text, field, needle) in &cases {
        send_text(&mut ann_ws, text).await;
        let f = next(&mut ann_ws).await;
        assert_eq!(f["type"], "error", "{text}: {f}");
        let e = &f["error"];
        assert_eq!(e["field"].as_str(), *field, "{text}: {f}");
        assert!(
            e["message"].as_str().unwrap().contains(needle),
            "{text}: expected {needle:?} in {f}"
        );
        assert!(e["code"] == "invalid" || e["code"] == "not_found", "{f}");
    }
    // The client id comes back with the error when the frame had one.
    send_text(
        &mut ann_ws,
        &json!({"type": "send", "conversation_id": conv, "body": "", "client_id": "e-1"})
            .to_string(),
    )
    .await;
    assert_eq!(next(&mut ann_ws).await["client_id"], "e-1");
    // A binary frame is refused with an error frame too.
    ann_ws
        .send(WsMessage::Binary(vec![0u8, 159, 146, 150].into()))
        .await
        .unwrap();
    let f = next(&mut ann_ws).await;
    assert!(
        f["error"]["message"].as_str().unwrap().contains("binary"),
        "{f}"
    );
    // The socket still works, and Bob's saw none of it.
    send(
        &mut ann_ws,
        json!({"type": "send", "conversation_id": conv, "body": "still here", "client_id": "ok"}),
    )
    .await;
    let (sent, skipped) = until(&mut ann_ws, "sent").await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(sent["client_id"], "ok");
    let (m, skipped) = until(&mut bob_ws, "message").await;
    assert!(skipped.is_empty(), "{skipped:?}");
    assert_eq!(m["message"]["body"], "still here");
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM chat_messages"),
        stored + 1
    );

    // A frame beyond the socket's limit closes that socket only.
    let huge = "y".repeat(max * 8 + 8192);
    let _ = ann_ws
        .send(WsMessage::Text(
            json!({"type": "send", "conversation_id": conv, "body": huge})
                .to_string()
                .into(),
        ))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match ann_ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(WsMessage::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .expect("the oversize socket closes");
    assert!(matches!(closed, None | Some(1009)), "{closed:?}");
    send(
        &mut bob_ws,
        json!({"type": "send", "conversation_id": conv, "body": "Bob is fine", "client_id": "b"}),
    )
    .await;
    assert_eq!(until(&mut bob_ws, "sent").await.0["client_id"], "b");
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM chat_messages"),
        stored + 2
    );

    // REST: bodies and parameters.
    let path = messages_path(&conv);
    // (method, path, body, status, field at fault)
    type Case<'a> = (&'a str, String, Option<Value>, u16, Option<&'a str>);
    let bad: Vec<Case> = vec![
        (
            "POST",
            path.clone(),
            Some(json!({"body": ""})),
            400,
            Some("body"),
        ),
        (
            "POST",
            path.clone(),
            Some(json!({"body": long})),
            400,
            Some("body"),
        ),
        ("POST", path.clone(), Some(json!({})), 400, Some("body")),
        (
            "POST",
            path.clone(),
            Some(json!({"body": "x", "to": "y"})),
            400,
            Some("to"),
        ),
        (
            "POST",
            path.clone(),
            Some(json!({"body": ["x"]})),
            400,
            Some("body"),
        ),
        (
            "POST",
            messages_path("nope"),
            Some(json!({"body": "x"})),
            400,
            Some("conversation_id"),
        ),
        (
            "GET",
            messages_path("nope"),
            None,
            400,
            Some("conversation_id"),
        ),
        (
            "GET",
            format!("{path}?cursor=garbage"),
            None,
            400,
            Some("cursor"),
        ),
        (
            "GET",
            format!("{path}?cursor=Yzp4"),
            None,
            400,
            Some("cursor"),
        ),
        ("GET", format!("{path}?after=-1"), None, 400, Some("after")),
        (
            "GET",
            format!("{path}?after=latest"),
            None,
            400,
            Some("after"),
        ),
        (
            "GET",
            format!("{path}?after=1&cursor=Yzp4"),
            None,
            400,
            Some("cursor"),
        ),
        ("GET", format!("{path}?limit=0"), None, 400, Some("limit")),
        ("GET", format!("{path}?limit=201"), None, 400, Some("limit")),
        ("GET", format!("{path}?limit=ten"), None, 400, Some("limit")),
        ("GET", format!("{path}?colour=red"), None, 400, None),
        (
            "POST",
            format!("/api/v1/chat/conversations/{conv}/read"),
            Some(json!({"up_to": -3})),
            400,
            Some("up_to"),
        ),
        (
            "POST",
            format!("/api/v1/chat/conversations/{conv}/read"),
            Some(json!({"up_to": "all"})),
            400,
            Some("up_to"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "direct", "members": ["bob"]})),
            400,
            Some("members[0]"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "direct", "members": [bob.subject_id, t.subject.subject_id]})),
            400,
            Some("members"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "direct", "members": [bob.subject_id], "title": "x"})),
            400,
            Some("title"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "group", "members": [bob.subject_id], "title": "t".repeat(201)})),
            400,
            Some("title"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "group", "members": [bob.subject_id], "title": "   "})),
            400,
            Some("title"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "group", "members": [bob.subject_id], "title": "two\nlines"})),
            400,
            Some("title"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            // 200 characters as sent, spaces around counted: too long.
            Some(
                json!({"kind": "group", "members": [bob.subject_id], "title": format!(" {} ", "t".repeat(199))}),
            ),
            400,
            Some("title"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "channel", "members": [bob.subject_id]})),
            400,
            Some("kind"),
        ),
        (
            "POST",
            "/api/v1/chat/conversations".into(),
            Some(json!({"kind": "group", "members": []})),
            400,
            Some("members"),
        ),
    ];
    for (method, path, body, status, field) in bad {
        let (s, b) = server.call(method, &path, Some(&ann_t), body.clone()).await;
        assert_eq!(s, status, "{method} {path} {body:?}: {b}");
        assert_eq!(
            b["error"]["field"].as_str(),
            field,
            "{method} {path} {body:?}: {b}"
        );
    }
    for (ct, bytes) in [
        ("application/json", b"{\"body\": \"x\"".to_vec()),
        ("application/json", Vec::new()),
        ("text/plain", b"hello".to_vec()),
    ] {
        let (s, b) = server.raw("POST", &path, Some(&ann_t), ct, bytes).await;
        assert!(s == 400 || s == 415, "{ct}: {s} {b}");
        assert!(b["error"]["message"].is_string(), "{b}");
    }
    // The socket route refuses plain requests and requests without a session.
    let (s, b) = server
        .call("GET", "/api/v1/chat/ws", Some(&ann_t), None)
        .await;
    assert_eq!(s, 400, "{b}");
    assert!(
        b["error"]["message"]
            .as_str()
            .unwrap()
            .contains("WebSocket"),
        "{b}"
    );
    let (s, _) = server.call("GET", "/api/v1/chat/ws", None, None).await;
    assert_eq!(s, 401);
    let (s, _) = server
        .call("GET", "/api/v1/chat/ws?token=abc", Some(&ann_t), None)
        .await;
    assert_eq!(s, 400);
    // Last: the server answers an oversize body without reading it and closes
    // that connection, which a pooled client could otherwise reuse.
    let (s, b) = server
        .raw(
            "POST",
            &path,
            Some(&ann_t),
            "application/json",
            format!("{{\"body\": \"{}\"}}", "z".repeat(2 * 1024 * 1024)).into_bytes(),
        )
        .await;
    assert_eq!(s, 413, "{b}");
    assert_eq!(
        count(&env, "SELECT COUNT(*) FROM chat_messages"),
        stored + 2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_socket_takes_the_token_three_ways_and_closes_at_logout() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "sock");
    let ann = user(&core, &t.tenant.id, "sock-ann");
    let server = Server::start(core.clone()).await;
    let token = server.login(&ann.username).await;
    // No token, or a wrong one: 401 before any upgrade.
    for req in [
        ws_url(&server).into_client_request().unwrap(),
        format!("{}?access_token=not-a-session", ws_url(&server))
            .into_client_request()
            .unwrap(),
    ] {
        match tokio_tungstenite::connect_async(req).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
                assert_eq!(r.status().as_u16(), 401)
            }
            other => panic!("{other:?}"),
        }
    }
    // A subprotocol: the server selects steward.chat.v1, never the token.
    let mut req = ws_url(&server).into_client_request().unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("steward.chat.v1, bearer.{token}").parse().unwrap(),
    );
    let (mut by_protocol, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"].to_str().unwrap(),
        "steward.chat.v1"
    );
    // The query string.
    let req = format!("{}?access_token={token}", ws_url(&server))
        .into_client_request()
        .unwrap();
    let (mut by_query, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    // Both work: each gets the other's message (same user, other device).
    let conv = create_direct(&server, &token, &t.subject.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    send(
        &mut by_query,
        json!({"type": "send", "conversation_id": conv, "body": "from my phone"}),
    )
    .await;
    until(&mut by_query, "sent").await;
    let (m, _) = until(&mut by_protocol, "message").await;
    assert_eq!(m["message"]["body"], "from my phone");
    assert!(
        m["message"]["receipts"].is_array(),
        "own message with receipts: {m}"
    );
    // Each connection was recorded with its (sealed) IP and session.
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM chat_connections WHERE ip_enc IS NOT NULL AND session_hash IS NOT NULL"
        ),
        2
    );
    // Logging out closes both sockets at once.
    let (s, _) = server
        .call("POST", "/api/v1/auth/logout", Some(&token), None)
        .await;
    assert_eq!(s, 204);
    for ws in [&mut by_protocol, &mut by_query] {
        assert_eq!(close_code(ws).await, Some(1008));
    }
    // Their ends are recorded.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM chat_connections WHERE closed_at IS NOT NULL"
        ),
        2
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_closes_the_sockets_and_records_their_end_first() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "stop");
    let ann = user(&core, &t.tenant.id, "stop-ann");
    let bob = user(&core, &t.tenant.id, "stop-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let mut sockets = Vec::new();
    for token in [&ann_t, &bob_t, &ann_t] {
        sockets.push(connect(&server, token).await);
    }
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM chat_connections WHERE closed_at IS NULL"
        ),
        3
    );
    // The database is busy as the server stops (another writer holds it for a
    // moment), so recording the ends takes a while; still, by the time `serve`
    // returns every end is recorded, without the clients reading anything ...
    let busy = hold_database(&core, Duration::from_millis(500));
    server.stop().await;
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM chat_connections WHERE closed_at IS NULL"
        ),
        0
    );
    busy.join().unwrap();
    // ... and each client was told why (1001, going away).
    for ws in &mut sockets {
        assert_eq!(close_code(ws).await, Some(1001));
    }
}

/// A stopping server answers every operation a socket had queued before it
/// closes the socket: what is stored was acknowledged, nothing queued is
/// dropped unanswered (the writer is held up by a busy database meanwhile).
#[tokio::test(flavor = "multi_thread")]
async fn a_stopping_server_answers_queued_sends_before_closing() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "drain");
    let ann = user(&core, &t.tenant.id, "drain-ann");
    let bob = user(&core, &t.tenant.id, "drain-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let conv = create_direct(&server, &ann_t, &bob.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut ws = connect(&server, &ann_t).await;
    let busy = hold_database(&core, Duration::from_millis(700));
    for i in 0..50 {
        send(
            &mut ws,
            json!({"type": "send", "conversation_id": conv, "body": format!("queued {i}"), "client_id": format!("c{i}")}),
        )
        .await;
    }
    // The server has read them (they wait for the writer) when it is told to stop.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopping = tokio::spawn(server.stop());
    let mut answered = 0;
    let code = loop {
        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
            Ok(Some(Ok(WsMessage::Text(t)))) => {
                let v: Value = serde_json::from_str(t.as_str()).unwrap();
                if v["type"] == "sent" {
                    answered += 1;
                }
            }
            Ok(Some(Ok(WsMessage::Close(c)))) => break c.map(|c| u16::from(c.code)),
            Ok(Some(Ok(_))) => {}
            other => panic!("{other:?}"),
        }
    };
    stopping.await.unwrap();
    busy.join().unwrap();
    assert_eq!(code, Some(1001));
    let stored = count(
        &env,
        "SELECT COUNT(*) FROM chat_messages WHERE sender_subject_id IS NOT NULL",
    );
    assert_eq!(stored, 50);
    assert_eq!(
        answered, 50,
        "every stored message was acknowledged before the close"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn erasing_a_sender_leaves_nothing_of_theirs_readable() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "erase");
    let ann = user(&core, &t.tenant.id, "erase-ann");
    let bob = user(&core, &t.tenant.id, "erase-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let conv = create_direct(&server, &ann_t, &bob.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, group) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&ann_t),
            Some(json!({"kind": "group", "title": "Quillfeather Strategy", "members": [bob.subject_id]})),
        )
        .await;
    assert_eq!(s, 201);
    let gid = group["id"].as_str().unwrap().to_owned();
    let secret = "Zanzibar marmalade protocol";
    for (c, tok, body) in [
        (&conv, &ann_t, secret),
        (&gid, &ann_t, secret),
        (&conv, &bob_t, "Bob keeps this"),
    ] {
        let (s, _) = server
            .call(
                "POST",
                &messages_path(c),
                Some(tok),
                Some(json!({"body": body})),
            )
            .await;
        assert_eq!(s, 201);
    }
    let (s, file) = upload(
        &server,
        &ann_t,
        &conv,
        "zanzibar.jpg",
        "image/jpeg",
        common::jpeg("Zanzibar-file-bytes"),
    )
    .await;
    assert_eq!(s, 201);
    let file_id = file["id"].as_str().unwrap().to_owned();
    let (s, _) = server
        .call(
            "POST",
            &messages_path(&conv),
            Some(&ann_t),
            Some(json!({"body": "the file", "attachments": [file_id]})),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(download(&server, &bob_t, &file_id).await.0, 200);
    let (s, _) = server
        .call(
            "POST",
            &format!("/api/v1/chat/conversations/{conv}/read"),
            Some(&ann_t),
            Some(json!({"up_to": 1_000_000})),
        )
        .await;
    assert_eq!(s, 200);
    let mut ann_ws = connect(&server, &ann_t).await;
    // An answered frame: the connection is recorded and registered.
    send(
        &mut ann_ws,
        json!({"type": "read", "conversation_id": conv, "up_to": 1_000_000}),
    )
    .await;
    until(&mut ann_ws, "marked").await;

    // Erasure, as the rights workflow does it.
    sync(|| {
        let dpo = Actor::cli();
        let req = steward::rights::create(
            &core,
            &dpo,
            steward::rights::NewRequest {
                subject: steward::rights::SubjectRef::Id(ann.subject_id.clone()),
                kind: steward::rights::Kind::Erasure,
                channel: steward::rights::RequestChannel::Letter,
                received_on: time::OffsetDateTime::now_utc().date().to_string(),
                region: None,
                details: None,
            },
        )
        .unwrap();
        steward::rights::verify(&core, &dpo, &req.id, "passport").unwrap();
        let report = steward::rights::erase::for_request(&core, &dpo, &req.id).unwrap();
        assert!(report.key_destroyed);
        assert_eq!(report.pseudonymised["chat_messages"], 3);
        assert_eq!(report.deleted["chat_attachments"], 1);
        assert_eq!(report.pseudonymised["chat_receipts"], 1);
        assert_eq!(report.pseudonymised["chat_conversations"], 2);
        assert_eq!(report.deleted["chat_members"], 2);
        assert_eq!(report.deleted["chat_connections"], 1);
    });
    // Her socket no longer authenticates (closed at the next check, or now if
    // the erasure went through the API); sending through it finds no member.
    send(
        &mut ann_ws,
        json!({"type": "send", "conversation_id": conv, "body": "after erasure"}),
    )
    .await;
    if let Ok(Some(Ok(WsMessage::Text(t)))) =
        tokio::time::timeout(Duration::from_secs(5), ann_ws.next()).await
    {
        let f: Value = serde_json::from_str(t.as_str()).unwrap();
        assert_eq!(f["type"], "error", "{f}");
    }
    // Bob still has both conversations; her messages are gaps without text or
    // sender, his own message is intact, the group lost its title.
    let (s, page) = server
        .call("GET", &messages_path(&conv), Some(&bob_t), None)
        .await;
    assert_eq!(s, 200, "{page}");
    let msgs = page["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3);
    // Newest first: her file message, his message, her first message.
    assert_eq!(msgs[1]["body"], "Bob keeps this");
    assert_eq!(msgs[1]["receipts"][0]["subject_id"], Value::Null);
    assert_eq!(
        msgs[1]["receipts"][0]["state"], "read",
        "his message's status stays"
    );
    for gap in [&msgs[0], &msgs[2]] {
        assert_eq!(
            (gap["body"].clone(), gap["sender_subject_id"].clone()),
            (Value::Null, Value::Null),
            "{gap}"
        );
        assert!(
            gap.get("attachments").is_none(),
            "the file went with her: {gap}"
        );
    }
    assert_eq!(download(&server, &bob_t, &file_id).await.0, 404);
    let (_, g) = server
        .call(
            "GET",
            &format!("/api/v1/chat/conversations/{gid}"),
            Some(&bob_t),
            None,
        )
        .await;
    assert_eq!(
        (g["title"].clone(), g["created_by"].clone()),
        (Value::Null, Value::Null)
    );
    assert_eq!(g["members"].as_array().unwrap().len(), 1);
    assert_eq!(
        count(
            &env,
            &format!(
                "SELECT COUNT(*) FROM chat_messages WHERE sender_subject_id = '{}'",
                ann.subject_id
            )
        ),
        0
    );
    let env_dir = env.data_dir().to_path_buf();
    drop(ann_ws);
    drop(server);
    sync(|| env.core.db.checkpoint().unwrap());
    assert!(
        common::files_under(&env_dir.join("blobs")).is_empty(),
        "her file's object is gone"
    );
    for needle in [secret, "Zanzibar", "Quillfeather"] {
        let hits = common::files_containing(&env_dir, needle);
        assert!(hits.is_empty(), "{needle:?} found in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn no_message_text_reaches_the_data_directory_in_clear() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "scan");
    let ann = user(&core, &t.tenant.id, "scan-ann");
    let bob = user(&core, &t.tenant.id, "scan-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let mut bob_ws = connect(&server, &bob_t).await;
    let mut ann_ws = connect(&server, &ann_t).await;
    let conv = create_direct(&server, &ann_t, &bob.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (s, _) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&ann_t),
            Some(json!({"kind": "group", "title": "Operation Xylophone Heron", "members": [bob.subject_id]})),
        )
        .await;
    assert_eq!(s, 201);
    let texts = [
        "The vault code is Pumpernickel-7741",
        "Meet Wilhelmina Crabtree at the quay",
        "Überraschung für Zoë, nicht verraten",
    ];
    for text in texts {
        send(
            &mut ann_ws,
            json!({"type": "send", "conversation_id": conv, "body": text}),
        )
        .await;
        until(&mut ann_ws, "sent").await;
        until(&mut bob_ws, "message").await;
    }
    // Nothing checkpointed: the WAL and the main file are scanned as they are.
    for needle in texts.iter().copied().chain([
        "Pumpernickel",
        "Wilhelmina Crabtree",
        "Überraschung",
        "Xylophone Heron",
    ]) {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
    // The scan can fail: the text is findable when written in clear.
    std::fs::write(env.data_dir().join("probe.txt"), texts[1]).unwrap();
    assert_eq!(
        common::files_containing(env.data_dir(), "Wilhelmina Crabtree").len(),
        1
    );
    let _ = PASSWORD;
}

/// Uploads `bytes` to a conversation as `content_type`.
async fn upload(
    server: &Server,
    token: &str,
    conversation: &str,
    name: &str,
    content_type: &str,
    bytes: Vec<u8>,
) -> (u16, Value) {
    server
        .raw(
            "POST",
            &format!("/api/v1/chat/conversations/{conversation}/attachments?name={name}"),
            Some(token),
            content_type,
            bytes,
        )
        .await
}

/// The bytes and content type of a download.
async fn download(server: &Server, token: &str, id: &str) -> (u16, Option<String>, Vec<u8>) {
    let resp = server
        .http
        .get(server.url(&format!("/api/v1/chat/attachments/{id}/content")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

/// Files sent in chat: upload (pending, the uploader's only), send with a
/// message, download by members only (decrypted), refusals.
async fn attachments_scenario(env: &Env, local_blobs: bool) {
    let core = env.core.clone();
    let t = sync(|| seed_tenant(&core, "files"));
    let other = sync(|| seed_tenant(&core, "files-other"));
    let ann = user(&core, &t.tenant.id, "files-ann");
    let bob = user(&core, &t.tenant.id, "files-bob");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let bob_t = server.login(&bob.username).await;
    let cat_t = server.login(&t.subject.username).await;
    let outsider_t = server.login(&other.subject.username).await;
    let conv = create_direct(&server, &ann_t, &bob.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut bob_ws = connect(&server, &bob_t).await;

    let photo = common::jpeg("Marzipan-Lighthouse-4417");
    let (s, file) = upload(
        &server,
        &ann_t,
        &conv,
        "lighthouse.jpg",
        "image/jpeg",
        photo.clone(),
    )
    .await;
    assert_eq!(s, 201, "{file}");
    let id = file["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (
            file["content_type"].as_str(),
            file["size"].as_u64(),
            file["message_id"].clone()
        ),
        (Some("image/jpeg"), Some(photo.len() as u64), Value::Null)
    );
    // Pending: the uploader sees it; Bob, though a member, not yet.
    let (s, _) = server
        .call(
            "GET",
            &format!("/api/v1/chat/attachments/{id}"),
            Some(&ann_t),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(download(&server, &bob_t, &id).await.0, 404);

    // Sent with a message (no text needed): pushed with its details.
    send(
        &mut connect(&server, &ann_t).await,
        json!({"type": "send", "conversation_id": conv, "attachments": [id]}),
    )
    .await;
    let (m, _) = until(&mut bob_ws, "message").await;
    let a = &m["message"]["attachments"][0];
    assert_eq!(
        (a["id"].as_str(), a["name"].as_str()),
        (Some(id.as_str()), Some("lighthouse.jpg"))
    );
    let message_id = m["message"]["id"].as_i64().unwrap();
    assert_eq!(a["message_id"], message_id);
    // Members download it, decrypted; nobody else does.
    let (s, ct, bytes) = download(&server, &bob_t, &id).await;
    assert_eq!((s, ct.as_deref()), (200, Some("image/jpeg")));
    assert_eq!(bytes, photo);
    assert_eq!(download(&server, &ann_t, &id).await.2, photo);
    for token in [&cat_t, &outsider_t] {
        assert_eq!(download(&server, token, &id).await.0, 404);
        let (s, _) = server
            .call(
                "GET",
                &format!("/api/v1/chat/attachments/{id}"),
                Some(token),
                None,
            )
            .await;
        assert_eq!(s, 404);
    }
    // History shows it; the employer sees its details, not its content.
    let (_, page) = server
        .call("GET", &messages_path(&conv), Some(&bob_t), None)
        .await;
    assert_eq!(page["messages"][0]["attachments"][0]["id"], id.as_str());
    let admin_t = server.login(&t.admin.username).await;
    let (s, page) = server
        .call(
            "GET",
            &format!(
                "/api/v1/tenants/{}/chat/conversations/{conv}/messages",
                t.tenant.id
            ),
            Some(&admin_t),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        page["messages"][0]["attachments"][0]["name"],
        "lighthouse.jpg"
    );
    assert_eq!(download(&server, &admin_t, &id).await.0, 404);
    // A sent file is not sent twice, nor deleted; Bob cannot delete Ann's.
    let (s, body) = server
        .call(
            "POST",
            &messages_path(&conv),
            Some(&ann_t),
            Some(json!({"body": "again", "attachments": [id]})),
        )
        .await;
    assert_eq!(s, 404, "{body}");
    let del = format!("/api/v1/chat/attachments/{id}");
    assert_eq!(server.call("DELETE", &del, Some(&ann_t), None).await.0, 409);
    assert_eq!(server.call("DELETE", &del, Some(&bob_t), None).await.0, 403);
    // A pending upload can be deleted: row and object.
    let (s, second) = upload(
        &server,
        &ann_t,
        &conv,
        "draft.jpg",
        "image/jpeg",
        common::jpeg("draft"),
    )
    .await;
    assert_eq!(s, 201);
    let del2 = format!(
        "/api/v1/chat/attachments/{}",
        second["id"].as_str().unwrap()
    );
    assert_eq!(
        server.call("DELETE", &del2, Some(&ann_t), None).await.0,
        204
    );
    assert_eq!(server.call("GET", &del2, Some(&ann_t), None).await.0, 404);
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM chat_attachments"),
        1,
        "the deleted upload's row is gone"
    );
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM blob_outbox"),
        0,
        "and its object"
    );

    // Refusals: content that is not what it says or not taken, a conversation
    // the uploader is not in, bad ids; nothing is kept of any of them.
    // (token, conversation, declared type, content, status)
    type Refusal<'a> = (&'a str, &'a str, &'a str, Vec<u8>, u16);
    let refusals: Vec<Refusal> = vec![
        (&cat_t, conv.as_str(), "image/jpeg", common::jpeg("x"), 404),
        (
            &outsider_t,
            conv.as_str(),
            "image/jpeg",
            common::jpeg("x"),
            404,
        ),
        (
            &ann_t,
            "not-a-conversation",
            "image/jpeg",
            common::jpeg("x"),
            400,
        ),
        (&ann_t, conv.as_str(), "image/png", common::jpeg("x"), 415),
        (
            &ann_t,
            conv.as_str(),
            "text/html",
            b"<html>hello</html>".to_vec(),
            415,
        ),
        (
            &ann_t,
            conv.as_str(),
            "application/pdf",
            b"plain text, no PDF".to_vec(),
            415,
        ),
        (&ann_t, conv.as_str(), "image/jpeg", Vec::new(), 415),
    ];
    for (token, c, ct, bytes, status) in refusals {
        let (s, body) = upload(&server, token, c, "x.jpg", ct, bytes).await;
        assert_eq!(s, status, "{c} {ct}: {body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    }
    assert_eq!(count(env, "SELECT COUNT(*) FROM chat_attachments"), 1);
    let eleven: Vec<String> = (0..11)
        .map(|i| format!("0190c3f2-0000-7000-8000-0000000000{i:02}"))
        .collect();
    for (body, field) in [
        (json!({"attachments": ["nope"]}), "attachments[0]"),
        (json!({"attachments": eleven}), "attachments"),
        (json!({"attachments": [id, id]}), "attachments[1]"),
        (json!({"attachments": "x"}), "attachments"),
    ] {
        let (s, b) = server
            .call(
                "POST",
                &messages_path(&conv),
                Some(&ann_t),
                Some(body.clone()),
            )
            .await;
        assert_eq!(
            (s, b["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {b}"
        );
    }
    if local_blobs {
        // The file's bytes never reach the data directory (blobs included) in clear.
        let hits = common::files_containing(env.data_dir(), "Marzipan-Lighthouse-4417");
        assert!(hits.is_empty(), "found in clear in {hits:?}");
    }
    drop(server);
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_on_sqlite() {
    let env = Env::sqlite();
    attachments_scenario(&env, true).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    attachments_scenario(&env, true).await;
    sync(move || drop(env));
}

#[tokio::test(flavor = "multi_thread")]
async fn attachments_on_s3() {
    let Some(env) = sync(|| Env::sqlite_s3("attachments_on_s3")) else {
        return;
    };
    attachments_scenario(&env, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_attachment_over_the_limit_is_stopped_and_nothing_kept() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        data_dir: dir.path().join("data"),
        chat_max_attachment_bytes: 4096,
        ..Settings::default()
    };
    let core = Arc::new(Steward::open(settings).unwrap().0);
    let t = seed_tenant(&core, "big");
    let ann = user(&core, &t.tenant.id, "big-ann");
    let server = Server::start(core.clone()).await;
    let ann_t = server.login(&ann.username).await;
    let conv = create_direct(&server, &ann_t, &t.subject.subject_id).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut big = common::jpeg("big");
    big.resize(64 * 1024, b'x');
    let (s, body) = upload(&server, &ann_t, &conv, "big.jpg", "image/jpeg", big).await;
    assert_eq!(s, 413, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("4096"),
        "{body}"
    );
    let n: i64 = core
        .db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM chat_attachments", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(n, 0);
    let blobs = common::files_under(&dir.path().join("data").join("blobs"));
    assert!(blobs.is_empty(), "nothing of it stored: {blobs:?}");
}

/// A user holds at most 16 sockets on one server; one more is refused with 429 and
/// `Retry-After` before any upgrade, and a socket closed frees its place.
#[tokio::test(flavor = "multi_thread")]
async fn a_user_holds_at_most_sixteen_sockets() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "cap");
    let ann = user(&core, &t.tenant.id, "cap-ann");
    let bob = user(&core, &t.tenant.id, "cap-bob");
    let server = Server::start(core.clone()).await;
    let token = server.login(&ann.username).await;
    let mut open = Vec::new();
    for _ in 0..steward::chat::hub::MAX_SOCKETS_PER_SUBJECT {
        open.push(connect(&server, &token).await);
    }
    let one_more = || {
        let mut req = ws_url(&server).into_client_request().unwrap();
        req.headers_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    match one_more().await {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status().as_u16(), 429);
            assert_eq!(r.headers()["retry-after"], "5");
            let body: Value = serde_json::from_slice(r.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "too_many_sockets", "{body}");
        }
        other => panic!("a 17th socket: {other:?}"),
    }
    // Another user is not held back.
    let bob_token = server.login(&bob.username).await;
    let _bob = connect(&server, &bob_token).await;
    // Closing one frees its place (once the server has seen it close).
    let mut first = open.remove(0);
    first.close(None).await.unwrap();
    drop(first);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match one_more().await {
            Ok(_) => break,
            Err(e) => assert!(
                tokio::time::Instant::now() < deadline,
                "no place after a close: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A socket sending more than its frame budget (a burst of 200, then 50 a second) gets
/// `rate_limited` errors for the frames over it, each with its `client_id`, and the
/// socket stays open and works again once the budget has refilled.
#[tokio::test(flavor = "multi_thread")]
async fn a_flood_of_frames_is_answered_rate_limited() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "flood");
    let ann = user(&core, &t.tenant.id, "flood-ann");
    let server = Server::start(core.clone()).await;
    let token = server.login(&ann.username).await;
    let mut ws = connect(&server, &token).await;
    // Marks on a conversation that does not exist: each frame parses, takes a token,
    // and (when carried out) is refused as not found.
    const SENT: usize = 400;
    let nowhere = "0190a1b2-0000-7000-8000-000000000001";
    for i in 0..SENT {
        send(
            &mut ws,
            json!({"type": "read", "conversation_id": nowhere, "up_to": 1, "client_id": format!("c{i}")}),
        )
        .await;
    }
    let mut limited = Vec::new();
    for _ in 0..SENT {
        let f = next(&mut ws).await;
        assert_eq!(f["type"], "error", "{f}");
        if f["error"]["code"] == "rate_limited" {
            limited.push(f["client_id"].as_str().unwrap().to_owned());
        } else {
            assert_eq!(f["error"]["code"], "not_found", "{f}");
        }
    }
    // The burst was carried out; most of the rest was not (a few tokens came back
    // while the frames were sent).
    assert!(
        limited.len() >= SENT - 200 - 50,
        "{} limited",
        limited.len()
    );
    assert!(!limited.contains(&"c0".to_owned()) && limited.contains(&format!("c{}", SENT - 1)));
    // A second later the socket works again.
    tokio::time::sleep(Duration::from_secs(1)).await;
    send(
        &mut ws,
        json!({"type": "read", "conversation_id": nowhere, "up_to": 1, "client_id": "after"}),
    )
    .await;
    let f = next(&mut ws).await;
    assert_eq!(
        (&f["client_id"], &f["error"]["code"]),
        (&json!("after"), &json!("not_found")),
        "{f}"
    );
}
