//! Chat delivery through the real server, against the raw insert rate of the
//! same rows in the same run: `cargo bench -p steward --bench chat`.
//!
//! Per backend, on a fresh database, with the server (`api::serve`) and the
//! clients (tokio-tungstenite WebSockets) in this one process, so both share the
//! machine's cores, as the targets assume:
//!
//! 1. **Baseline (raw insert)**: `STEWARD_BENCH_RAW` messages (default 200,000)
//!    with their receipt (one recipient each: a direct conversation), pre-built
//!    rows of the writer's shape (sealed body of a typical length, ids from the
//!    counter's range), through `Conn::copy_in` in one transaction: one cached
//!    prepared INSERT on SQLite, binary COPY on PostgreSQL. Messages per second.
//! 2. **Per-message transactions**: the same two rows, one transaction each
//!    (`Steward::write`), one after another for two seconds: what a writer
//!    without group commit would manage, and the time of each transaction
//!    (p50, p99, max): the floor under any acknowledgement that waits for a
//!    commit, measured in the same run.
//! 3. **Throughput**: 8 senders, each with its own socket and a direct
//!    conversation with its own recipient, whose socket is open too; each sender
//!    keeps up to `STEWARD_BENCH_WINDOW` (default 256) sends unacknowledged and
//!    counts `sent` acknowledgements (a message is accepted when its batch has
//!    committed); each recipient reads the pushed messages and acknowledges
//!    delivery once per burst (`delivered` up to the newest id: one frame per
//!    read-ready burst, as an app would). One second of warm-up, then
//!    `STEWARD_BENCH_SECONDS` (default 10) measured. Accepted messages/s
//!    (target ≥ 8,000).
//! 4. **Latency**: 50 clients in 25 direct conversations; each sends 20 messages
//!    a second to its partner (1,000 messages/s in all, on a fixed staggered
//!    schedule that a stall does not shift), each body carrying its send time;
//!    the receiver notes the time from the send call to the pushed message's
//!    arrival on its socket, and acknowledges delivery as above. Two seconds of warm-up, then `STEWARD_BENCH_SECONDS` measured. p50,
//!    p90, p99 and max (target p99 < 10 ms). Before it, untimed, the database
//!    settles after the throughput run (`Target::settle`).
//! 5. **Latency without synchronous commit** (PostgreSQL only): step 4 again on
//!    a server started with `chat_synchronous_commit = false` (chat batches do
//!    not wait for the log flush; see docs/PERFORMANCE.md).
//!
//! 6. **Without the broker** (PostgreSQL only): step 4 again on a server
//!    that pushes to its own sockets only (`chat_fanout = false`, right for
//!    exactly one server): the same-run baseline of what the broker costs.
//! 7. **Two servers** (PostgreSQL only): steps 3 and 4 again with two servers
//!    on the one database, each its own `Steward` (pool, writer lanes, hub,
//!    broker listener: what two processes have; they share the bench's cores,
//!    as two processes on this machine would). Senders and recipients, and the
//!    latency clients and their partners, are on different servers, so every
//!    delivery crosses over through the broker. Send-to-delivery p50/p99
//!    across (target p99 < 20 ms at 1,000 messages/s) first, then accepted
//!    messages/s in all and per server, and what reached the other server's
//!    sockets (flat out, the receiving side may fall behind and shed: see
//!    docs/PERFORMANCE.md).
//!
//! SQLite always; PostgreSQL at `STEWARD_BENCH_DATABASE_URL` (else
//! `STEWARD_TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/test)
//! when reachable (`STEWARD_BENCH_BACKENDS=sqlite` or `=postgres` runs one).
//! Results: printed, and written to `bench-results/chat.json` at the workspace
//! root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use serde::Deserialize;
use serde_json::{Value as Json, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::chat::{ConversationKind, NewConversation, conversations};
use steward::config::Settings;
use steward::tenants;
use steward_store::Value;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const PASSWORD: &str = "correct horse battery staple";
/// A typical short chat message.
const BODY: &str = "On my way, see you at the front desk in five minutes";

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// Where one measurement runs.
struct Target {
    settings: Settings,
    pg: Option<(String, String)>,
    _dir: tempfile::TempDir,
}

impl Target {
    fn sqlite() -> Target {
        let dir = tempfile::tempdir().unwrap();
        Target {
            settings: Settings {
                data_dir: dir.path().join("data"),
                ..Settings::default()
            },
            pg: None,
            _dir: dir,
        }
    }

    fn postgres(url: &str, tag: &str) -> Option<Target> {
        let schema = format!("bench_chat_{tag}_{}", std::process::id());
        let dir = tempfile::tempdir().unwrap();
        let t = Target {
            settings: Settings {
                data_dir: dir.path().join("data"),
                database_url: Some(url.to_owned()),
                database_schema: Some(schema.clone()),
                ..Settings::default()
            },
            pg: Some((url.to_owned(), schema)),
            _dir: dir,
        };
        match Steward::open(t.settings.clone()) {
            Ok(_) => Some(t),
            Err(e) => {
                eprintln!("skipping PostgreSQL: {url} unreachable ({e})");
                None
            }
        }
    }

    fn open(&self) -> Steward {
        Steward::open(self.settings.clone()).unwrap().0
    }

    /// Untimed, between the throughput and the latency runs, as pgbench vacuums
    /// before it measures: the chat tables vacuumed (a WAL checkpoint on SQLite)
    /// and, on PostgreSQL, a CHECKPOINT, so the latency run does not also time
    /// the clean-up of the throughput run's half a million rows.
    fn settle(&self, core: &Steward) {
        core.db
            .vacuum(&["chat_messages", "chat_receipts", "subjects"])
            .unwrap();
        if let Some((url, _)) = &self.pg {
            let mut c = postgres::Client::connect(url, postgres::NoTls).unwrap();
            c.batch_execute("CHECKPOINT").unwrap();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        if let Some((url, schema)) = &self.pg
            && let Ok(mut c) = postgres::Client::connect(url, postgres::NoTls)
        {
            let _ = c.batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_keys CASCADE"
            ));
        }
    }
}

/// A tenant, `n` users with sessions, and a direct conversation per pair
/// (user 2k with user 2k+1). Returns the tokens and the conversation of each
/// pair.
struct People {
    tokens: Vec<String>,
    conversations: Vec<String>,
}

fn people(core: &Steward, tag: &str, n: usize) -> People {
    let cli = Actor::cli();
    let tenant = tenants::create(core, &cli, &format!("Bench {tag}"), None).unwrap();
    let mut accounts = Vec::with_capacity(n);
    let mut tokens = Vec::with_capacity(n);
    for i in 0..n {
        let username = format!("bench-{tag}-{i}");
        let a = accounts::create_user(
            core,
            &cli,
            &tenant.id,
            NewUser {
                username: username.clone(),
                password: PASSWORD.into(),
                role: Role::Subject,
                email: None,
                phone: None,
                display_name: None,
            },
        )
        .unwrap();
        tokens.push(
            accounts::login(core, &username, PASSWORD, Some("127.0.0.1"))
                .unwrap()
                .token,
        );
        accounts.push(a);
    }
    let conversations = accounts
        .chunks(2)
        .map(|pair| {
            let (c, _) = conversations::create(
                core,
                &accounts::actor_for(&pair[0]),
                NewConversation {
                    kind: ConversationKind::Direct,
                    members: vec![pair[1].subject_id.clone()],
                    title: None,
                },
            )
            .unwrap();
            c.id
        })
        .collect();
    People {
        tokens,
        conversations,
    }
}

fn uuid_like(i: u64) -> String {
    format!("01900000-0000-7000-8000-{i:012x}")
}

/// The raw insert rate of messages with one receipt each, in one transaction.
fn raw_insert(target: &Target, n: usize) -> f64 {
    let core = target.open();
    let key = steward_crypto::DataKey::generate().unwrap();
    let sealed: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            key.encrypt(format!("{BODY} {i}").as_bytes(), b"aad")
                .unwrap()
        })
        .collect();
    let conversations: Vec<String> = (0..64).map(uuid_like).collect();
    let senders: Vec<String> = (1000..1128).map(uuid_like).collect();
    let at = steward::clock::now();
    let started = Instant::now();
    core.db
        .write(|c| {
            let mut messages = (0..n).map(|i| {
                vec![
                    Value::Int(2 * i as i64 + 1),
                    Value::Text(conversations[i % 64].clone()),
                    Value::Text("bench-tenant".into()),
                    Value::Text(senders[i % 128].clone()),
                    Value::Bytes(sealed[i % 1024].clone()),
                    Value::Int(at),
                ]
            });
            c.copy_in(
                "chat_messages",
                &[
                    "seq",
                    "conversation_id",
                    "tenant_id",
                    "sender_subject_id",
                    "body_enc",
                    "sent_at",
                ],
                &mut messages,
            )?;
            let mut receipts = (0..n).map(|i| {
                vec![
                    Value::Int(2 * i as i64 + 2),
                    Value::Int(2 * i as i64 + 1),
                    Value::Text(conversations[i % 64].clone()),
                    Value::Text(senders[(i + 1) % 128].clone()),
                    Value::Text("sent".into()),
                    Value::Int(at),
                    Value::Null,
                    Value::Null,
                ]
            });
            c.copy_in(
                "chat_receipts",
                &[
                    "id",
                    "message_seq",
                    "conversation_id",
                    "recipient_subject_id",
                    "state",
                    "sent_at",
                    "delivered_at",
                    "read_at",
                ],
                &mut receipts,
            )
        })
        .unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// One transaction per message, one after another.
struct PerMessage {
    per_sec: f64,
    /// Each transaction's time in ms, sorted.
    commit_ms: Vec<f64>,
}

/// The same rows, one transaction per message, for `secs`; ids from `first_id`.
fn per_message_transactions(target: &Target, secs: f64, first_id: i64) -> PerMessage {
    let core = target.open();
    let key = steward_crypto::DataKey::generate().unwrap();
    let sealed = key.encrypt(BODY.as_bytes(), b"aad").unwrap();
    let actor = Actor::system("bench");
    let at = steward::clock::now();
    let started = Instant::now();
    let mut n = 0i64;
    let mut commit_ms = Vec::new();
    while started.elapsed().as_secs_f64() < secs {
        let one = Instant::now();
        core.write(&actor, |tx| {
            tx.conn.execute(
                "INSERT INTO chat_messages (seq, conversation_id, tenant_id, sender_subject_id, \
                 body_enc, sent_at) VALUES ($1, $2, $3, $4, $5, $6)",
                steward_store::params![
                    first_id + 2 * n,
                    uuid_like(1),
                    "bench-tenant",
                    uuid_like(2),
                    sealed.clone(),
                    at
                ],
            )?;
            tx.conn.execute(
                "INSERT INTO chat_receipts (id, message_seq, conversation_id, \
                 recipient_subject_id, state, sent_at) VALUES ($1, $2, $3, $4, 'sent', $5)",
                steward_store::params![
                    first_id + 2 * n + 1,
                    first_id + 2 * n,
                    uuid_like(1),
                    uuid_like(3),
                    at
                ],
            )?;
            Ok(())
        })
        .unwrap();
        commit_ms.push(one.elapsed().as_secs_f64() * 1e3);
        n += 1;
    }
    commit_ms.sort_by(f64::total_cmp);
    PerMessage {
        per_sec: n as f64 / started.elapsed().as_secs_f64(),
        commit_ms,
    }
}

/// A server on a loopback port.
struct Served {
    ws_url: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Served {
    /// Stops the server; returns once every connection's end is recorded
    /// (before the database goes away).
    async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap();
    }
}

async fn serve(core: Arc<Steward>) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        steward::api::serve(core, listener, async {
            let _ = rx.await;
        })
        .await
        .unwrap();
    });
    Served {
        ws_url: format!("ws://{addr}/api/v1/chat/ws"),
        stop: tx,
        task,
    }
}

async fn connect(url: &str, token: &str) -> Ws {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    // Without Nagle's algorithm, as browsers and apps open their sockets.
    tokio_tungstenite::connect_async_with_config(req, None, true)
        .await
        .unwrap()
        .0
}

/// What the clients read of a server frame.
#[derive(Deserialize)]
struct Frame {
    #[serde(rename = "type")]
    kind: String,
    message: Option<FrameMessage>,
}

#[derive(Deserialize)]
struct FrameMessage {
    id: i64,
    conversation_id: String,
    body: Option<String>,
}

fn frame(text: &str) -> Option<Frame> {
    serde_json::from_str(text).ok()
}

/// Reads pushed messages and acknowledges delivery once per burst. Calls
/// `each` for every pushed message.
async fn receive(
    ws: Ws,
    stop: Arc<AtomicBool>,
    received: Arc<AtomicU64>,
    mut each: impl FnMut(&FrameMessage) + Send + 'static,
) {
    let (mut sink, mut stream) = ws.split();
    loop {
        let first = tokio::select! {
            m = stream.next() => m,
            () = tokio::time::sleep(Duration::from_millis(100)) => {
                if stop.load(Ordering::Relaxed) { return } else { continue }
            }
        };
        let Some(Ok(first)) = first else { return };
        let mut newest: Option<(String, i64)> = None;
        let mut handle = |m: WsMessage| {
            if let WsMessage::Text(t) = m
                && let Some(f) = frame(t.as_str())
                && f.kind == "message"
                && let Some(msg) = f.message
            {
                received.fetch_add(1, Ordering::Relaxed);
                each(&msg);
                newest = Some((msg.conversation_id.clone(), msg.id));
            }
        };
        handle(first);
        // The rest of the burst, without waiting.
        while let Some(Some(Ok(m))) = stream.next().now_or_never() {
            handle(m);
        }
        if let Some((conv, id)) = newest {
            let ack = json!({"type": "delivered", "conversation_id": conv, "up_to": id});
            if sink
                .send(WsMessage::Text(ack.to_string().into()))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// Sends as fast as the window allows; counts acknowledgements.
async fn send_flat_out(
    ws: Ws,
    conversation: String,
    window: usize,
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicU64>,
) {
    let (mut sink, mut stream) = ws.split();
    let permits = Arc::new(Semaphore::new(window));
    let reader = {
        let permits = permits.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let WsMessage::Text(t) = m
                    && let Some(f) = frame(t.as_str())
                    && f.kind == "sent"
                {
                    accepted.fetch_add(1, Ordering::Relaxed);
                    permits.add_permits(1);
                }
            }
        })
    };
    let text = json!({"type": "send", "conversation_id": conversation, "body": BODY}).to_string();
    while !stop.load(Ordering::Relaxed) {
        match permits.try_acquire() {
            Ok(p) => p.forget(),
            Err(_) => {
                // Out of window: let the server see what is buffered, then wait.
                if sink.flush().await.is_err() {
                    break;
                }
                match tokio::time::timeout(Duration::from_millis(200), permits.acquire()).await {
                    Ok(Ok(p)) => p.forget(),
                    _ => continue,
                }
            }
        }
        if sink
            .feed(WsMessage::Text(text.clone().into()))
            .await
            .is_err()
        {
            break;
        }
    }
    let _ = sink.flush().await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    reader.abort();
}

struct Throughput {
    accepted_per_sec: f64,
    delivered_per_sec: f64,
    /// Accepted messages/s per server (senders are spread over them).
    accepted_per_server: Vec<f64>,
}

/// Pair `p`'s sender connects to server `p mod n`, its recipient to the next
/// one (with two servers, every delivery crosses from one to the other).
async fn throughput(urls: &[String], people: &People, window: usize, secs: f64) -> Throughput {
    let stop = Arc::new(AtomicBool::new(false));
    let per_server: Vec<Arc<AtomicU64>> =
        urls.iter().map(|_| Arc::new(AtomicU64::new(0))).collect();
    let received = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let n = urls.len();
    for (pair, conv) in people.conversations.iter().enumerate() {
        let sender = connect(&urls[pair % n], &people.tokens[2 * pair]).await;
        let recipient = connect(&urls[(pair + 1) % n], &people.tokens[2 * pair + 1]).await;
        let accepted = per_server[pair % n].clone();
        tasks.push(tokio::spawn(receive(
            recipient,
            stop.clone(),
            received.clone(),
            |_| {},
        )));
        tasks.push(tokio::spawn(send_flat_out(
            sender,
            conv.clone(),
            window,
            stop.clone(),
            accepted.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let counts = |v: &[Arc<AtomicU64>]| -> Vec<u64> {
        v.iter().map(|a| a.load(Ordering::Relaxed)).collect()
    };
    let (a0, r0, t0) = (
        counts(&per_server),
        received.load(Ordering::Relaxed),
        Instant::now(),
    );
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let (a1, r1, elapsed) = (
        counts(&per_server),
        received.load(Ordering::Relaxed),
        t0.elapsed().as_secs_f64(),
    );
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let accepted_per_server: Vec<f64> = a1
        .iter()
        .zip(&a0)
        .map(|(x, y)| (x - y) as f64 / elapsed)
        .collect();
    Throughput {
        accepted_per_sec: accepted_per_server.iter().sum(),
        delivered_per_sec: (r1 - r0) as f64 / elapsed,
        accepted_per_server,
    }
}

struct Latency {
    sent_per_sec: f64,
    samples: Vec<f64>,
}

/// Each of `people` sends `per_client` messages a second to its partner;
/// client `i` connects to server `i mod n` (with two servers, partners are on
/// different ones).
async fn latency(
    urls: &[String],
    people: &People,
    per_client: f64,
    secs: f64,
    warmup: f64,
) -> Latency {
    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let received = Arc::new(AtomicU64::new(0));
    let samples = Arc::new(std::sync::Mutex::new(Vec::<f64>::new()));
    let n = people.tokens.len();
    let mut tasks = Vec::new();
    for i in 0..n {
        let ws = connect(&urls[i % urls.len()], &people.tokens[i]).await;
        let conv = people.conversations[i / 2].clone();
        let (mut sink, stream) = ws.split();
        // Reading (and acknowledging) on one task, sending on another.
        let (ack_tx, mut ack_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
        let recorder = {
            let (samples, measuring) = (samples.clone(), measuring.clone());
            move |m: &FrameMessage| {
                let at = base.elapsed().as_nanos() as u64;
                if let Some(sent_at) = m
                    .body
                    .as_deref()
                    .and_then(|b| b.strip_prefix("t="))
                    .and_then(|b| b.split(' ').next())
                    .and_then(|t| t.parse::<u64>().ok())
                    && measuring.load(Ordering::Relaxed)
                {
                    samples
                        .lock()
                        .unwrap()
                        .push(at.saturating_sub(sent_at) as f64 / 1e6);
                }
            }
        };
        let (stop_r, received_r) = (stop.clone(), received.clone());
        tasks.push(tokio::spawn(async move {
            let mut stream = stream;
            loop {
                let first = tokio::select! {
                    m = stream.next() => m,
                    () = tokio::time::sleep(Duration::from_millis(100)) => {
                        if stop_r.load(Ordering::Relaxed) { return } else { continue }
                    }
                };
                let Some(Ok(first)) = first else { return };
                let mut newest = None;
                let mut handle = |m: WsMessage| {
                    if let WsMessage::Text(t) = m
                        && let Some(f) = frame(t.as_str())
                        && f.kind == "message"
                        && let Some(msg) = f.message
                    {
                        received_r.fetch_add(1, Ordering::Relaxed);
                        recorder(&msg);
                        newest = Some(msg.id);
                    }
                };
                handle(first);
                while let Some(Some(Ok(m))) = stream.next().now_or_never() {
                    handle(m);
                }
                if let Some(id) = newest
                    && ack_tx.send(id.to_string()).is_err()
                {
                    return;
                }
            }
        }));
        let (stop_s, sent_s) = (stop.clone(), sent.clone());
        let period = Duration::from_secs_f64(1.0 / per_client);
        // Staggered starts spread the clients' sends over the period.
        let offset = period.mul_f64(i as f64 / n as f64);
        tasks.push(tokio::spawn(async move {
            // A fixed schedule: each send is due at start + k periods. A stall
            // that delays sends does not move the ones after it (missed ticks
            // fire at once, then the grid goes on), so the clients keep their
            // stagger instead of falling into step after every stall (which
            // bunched their sends for the rest of a run: p50 doubled).
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        if stop_s.load(Ordering::Relaxed) { break }
                        let now = base.elapsed().as_nanos();
                        let text = json!({"type": "send", "conversation_id": conv,
                                          "body": format!("t={now} {BODY}")}).to_string();
                        if sink.send(WsMessage::Text(text.into())).await.is_err() { break }
                        sent_s.fetch_add(1, Ordering::Relaxed);
                    }
                    id = ack_rx.recv() => {
                        let Some(id) = id else { break };
                        let ack = json!({"type": "delivered", "conversation_id": conv, "up_to": id.parse::<i64>().unwrap_or(0)});
                        if sink.send(WsMessage::Text(ack.to_string().into())).await.is_err() { break }
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(warmup)).await;
    measuring.store(true, Ordering::Relaxed);
    let (s0, t0) = (sent.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    measuring.store(false, Ordering::Relaxed);
    let sent_per_sec = (sent.load(Ordering::Relaxed) - s0) as f64 / t0.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let mut samples = std::mem::take(&mut *samples.lock().unwrap());
    samples.sort_by(f64::total_cmp);
    Latency {
        sent_per_sec,
        samples,
    }
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into())
}

fn round(v: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (v * f).round() / f
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("chat: run with `cargo bench -p steward --bench chat`");
        return;
    }
    // STEWARD_LOG=steward::chat=debug shows every writer batch (size, time).
    if let Ok(filter) = std::env::var("STEWARD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let secs = env_usize("STEWARD_BENCH_SECONDS", 10) as f64;
    let window = env_usize("STEWARD_BENCH_WINDOW", 256);
    let raw_rows = env_usize("STEWARD_BENCH_RAW", 200_000);
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model();
    println!("chat: {secs} s per measurement, window {window}; {nproc} cores, {cpu}");
    let url = std::env::var("STEWARD_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STEWARD_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let only = std::env::var("STEWARD_BENCH_BACKENDS").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut results = serde_json::Map::new();
    type Make = Box<dyn Fn(&str) -> Option<Target>>;
    let backends: Vec<(&str, Make)> = vec![
        ("sqlite", Box::new(|_| Some(Target::sqlite()))),
        ("postgres", Box::new(move |tag| Target::postgres(&url, tag))),
    ];
    for (name, make) in &backends {
        if !only.is_empty() && !only.split(',').any(|b| b.trim() == *name) {
            continue;
        }
        let Some(raw_target) = make("raw") else {
            continue;
        };
        let raw = raw_insert(&raw_target, raw_rows);
        let one_tx = per_message_transactions(&raw_target, 2.0, 2 * raw_rows as i64 + 1);
        let per_tx = one_tx.per_sec;
        let commit = &one_tx.commit_ms;
        drop(raw_target);
        println!(
            "  {name}: baseline, raw insert (copy_in, one transaction): {raw:>9.0} messages/s"
        );
        println!(
            "  {name}: one transaction per message:                  {per_tx:>9.0} messages/s \
             (each: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms)",
            pct(commit, 50.0),
            pct(commit, 99.0),
            commit.last().copied().unwrap_or(f64::NAN)
        );

        let Some(target) = make("server") else {
            continue;
        };
        let core = Arc::new(target.open());
        let senders = people(&core, "tp", 16);
        let clients = people(&core, "lat", 50);
        let (tp, lat) = runtime.block_on(async {
            let served = serve(core.clone()).await;
            let one = [served.ws_url.clone()];
            let tp = throughput(&one, &senders, window, secs).await;
            // On a thread of its own: the PostgreSQL client runs a runtime.
            std::thread::scope(|s| s.spawn(|| target.settle(&core)).join().unwrap());
            let lat = latency(&one, &clients, 20.0, secs, 2.0).await;
            served.stop().await;
            (tp, lat)
        });
        drop(core);
        // Step 3 again on a server whose settings `change` made.
        let latency_with = |change: &dyn Fn(&mut Settings)| {
            let mut settings = target.settings.clone();
            change(&mut settings);
            let core = Arc::new(Steward::open(settings).unwrap().0);
            target.settle(&core);
            let lat = runtime.block_on(async {
                let served = serve(core.clone()).await;
                let urls = std::slice::from_ref(&served.ws_url);
                let lat = latency(urls, &clients, 20.0, secs, 2.0).await;
                served.stop().await;
                lat
            });
            drop(core);
            lat
        };
        // PostgreSQL again, with chat batches not waiting for the log flush.
        let lat_async = target
            .pg
            .is_some()
            .then(|| latency_with(&|s| s.chat_synchronous_commit = false));
        // PostgreSQL, one server pushing to its own sockets only (no broker):
        // the same-run baseline of what the fan-out costs.
        let lat_local = target
            .pg
            .is_some()
            .then(|| latency_with(&|s| s.chat_fanout = false));
        // PostgreSQL with two servers, each its own Steward (pool, writer
        // lanes, hub, broker listener) as two processes would have; every
        // delivery goes from one to the other.
        let two = target.pg.is_some().then(|| {
            let (a, b) = (Arc::new(target.open()), Arc::new(target.open()));
            target.settle(&a);
            runtime.block_on(async {
                let (sa, sb) = (serve(a.clone()).await, serve(b.clone()).await);
                let urls = [sa.ws_url.clone(), sb.ws_url.clone()];
                // Latency first: the flat-out run leaves a backlog of
                // notifications for the receiving side to work through.
                let lat = latency(&urls, &clients, 20.0, secs, 2.0).await;
                std::thread::scope(|s| s.spawn(|| target.settle(&a)).join().unwrap());
                let tp = throughput(&urls, &senders, window, secs).await;
                sa.stop().await;
                sb.stop().await;
                (tp, lat)
            })
        });
        drop(target);
        let ratio = tp.accepted_per_sec / raw;
        println!(
            "  {name}: 8 senders, accepted:  {:>9.0} messages/s = {ratio:.3} of the raw insert \
             ({:.0} delivered/s to the recipients' sockets)",
            tp.accepted_per_sec, tp.delivered_per_sec
        );
        let show = |label: &str, lat: &Latency| {
            let s = &lat.samples;
            println!(
                "  {name}: 50 clients at {:.0} messages/s{label}: send-to-delivery p50 {:.2} ms, \
                 p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} samples); p99 = {:.1}x one commit's",
                lat.sent_per_sec,
                pct(s, 50.0),
                pct(s, 90.0),
                pct(s, 99.0),
                s.last().copied().unwrap_or(f64::NAN),
                s.len(),
                pct(s, 99.0) / pct(commit, 99.0)
            );
        };
        show("", &lat);
        if let Some(l) = &lat_async {
            show(" (synchronous commit off)", l);
        }
        if let Some(l) = &lat_local {
            show(" (one server, no broker: baseline)", l);
        }
        if let Some((tp2, lat2)) = &two {
            println!(
                "  {name}: two servers, 8 senders, accepted: {:>9.0} messages/s = {:.3} of one \
                 server's (per server {:?}; {:.0} delivered/s across)",
                tp2.accepted_per_sec,
                tp2.accepted_per_sec / tp.accepted_per_sec,
                tp2.accepted_per_server
                    .iter()
                    .map(|v| v.round())
                    .collect::<Vec<_>>(),
                tp2.delivered_per_sec
            );
            show(" across two servers", lat2);
        }
        let latency_json = |lat: &Latency| {
            let s = &lat.samples;
            json!({
                "clients": 50,
                "target_rate": 1000,
                "sent_messages_per_sec": lat.sent_per_sec.round(),
                "samples": s.len(),
                "p50_ms": round(pct(s, 50.0), 3),
                "p90_ms": round(pct(s, 90.0), 3),
                "p99_ms": round(pct(s, 99.0), 3),
                "max_ms": round(s.last().copied().unwrap_or(f64::NAN), 3),
                "p99_ratio_to_one_commit_p99": round(pct(s, 99.0) / pct(commit, 99.0), 2),
                "target_p99_ms": 10,
            })
        };
        results.insert(
            (*name).to_owned(),
            json!({
                "baseline_raw_insert_messages_per_sec": raw.round(),
                "one_transaction_per_message_per_sec": per_tx.round(),
                "throughput": {
                    "senders": 8,
                    "window": window,
                    "accepted_messages_per_sec": tp.accepted_per_sec.round(),
                    "delivered_messages_per_sec": tp.delivered_per_sec.round(),
                    "ratio_to_raw_insert": round(ratio, 3),
                    "ratio_to_one_transaction_per_message": round(tp.accepted_per_sec / per_tx, 1),
                    "target_messages_per_sec": 8000,
                },
                "one_transaction_per_message_ms": {
                    "p50": round(pct(commit, 50.0), 3),
                    "p99": round(pct(commit, 99.0), 3),
                    "max": round(commit.last().copied().unwrap_or(f64::NAN), 3),
                },
                "latency": latency_json(&lat),
                "latency_synchronous_commit_off": lat_async.as_ref().map(latency_json),
                "latency_one_server_without_broker": lat_local.as_ref().map(latency_json),
                "two_servers": two.as_ref().map(|(tp2, lat2)| json!({
                    "accepted_messages_per_sec": tp2.accepted_per_sec.round(),
                    "accepted_per_server": tp2.accepted_per_server.iter().map(|v| v.round()).collect::<Vec<_>>(),
                    "delivered_messages_per_sec": tp2.delivered_per_sec.round(),
                    "ratio_to_one_server": round(tp2.accepted_per_sec / tp.accepted_per_sec, 3),
                    "latency_across": latency_json(lat2),
                    "target_cross_process_p99_ms": 20,
                })),
            }),
        );
    }
    let report = json!({
        "benchmark": "chat",
        "seconds_per_measurement": secs,
        "raw_insert_messages": raw_rows,
        "machine": { "nproc": nproc, "cpu": cpu },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "results": Json::Object(results),
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("chat.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    println!("  wrote {}", out.display());
}
