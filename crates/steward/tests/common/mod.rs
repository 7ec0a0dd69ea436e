//! Test harness: a real Steward on a temporary data directory (SQLite) or a
//! fresh PostgreSQL schema, and a real HTTP server on a loopback port.
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Value, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts::{self, Account, NewUser};
use steward::config::Settings;
use steward::consent;
use steward::media::{self, MediaItem, Upload};
use steward::recordings::{self, Recording};
use steward::tenants::{self, Tenant};
use steward_store::testing::PgSchema;

pub const PASSWORD: &str = "correct horse battery staple";

pub struct Env {
    pub dir: tempfile::TempDir,
    pub settings: Settings,
    pub core: Arc<Steward>,
    pg: Option<PgSchema>,
}

impl Env {
    /// The embedded default in a temporary data directory.
    pub fn sqlite() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        let (core, _) = Steward::open(settings.clone()).unwrap();
        Env {
            dir,
            settings,
            core: Arc::new(core),
            pg: None,
        }
    }

    /// PostgreSQL in a fresh schema; `None` (skip) when unreachable outside CI.
    pub fn postgres() -> Option<Env> {
        let pg = PgSchema::create().unwrap()?;
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            database_url: Some(pg.url.clone()),
            database_schema: Some(pg.schema.clone()),
            ..Settings::default()
        };
        let (core, _) = Steward::open(settings.clone()).unwrap();
        Some(Env {
            dir,
            settings,
            core: Arc::new(core),
            pg: Some(pg),
        })
    }

    /// The embedded database with blobs in a fresh bucket of the S3 test server;
    /// `None` (skip) when it is unreachable outside CI.
    pub fn sqlite_s3(test: &str) -> Option<Env> {
        let server = steward_blobs::testing::S3TestServer::require(test).unwrap()?;
        let bucket = steward_blobs::testing::unique_bucket();
        server.create_bucket(&bucket).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            blob_url: Some(server.url(&bucket, "steward")),
            ..Settings::default()
        };
        let (core, _) = Steward::open(settings.clone()).unwrap();
        Some(Env {
            dir,
            settings,
            core: Arc::new(core),
            pg: None,
        })
    }

    pub fn data_dir(&self) -> &Path {
        &self.settings.data_dir
    }

    /// Re-opens the same stores (another process would see the same).
    pub fn reopen(&self) -> Steward {
        Steward::open(self.settings.clone()).unwrap().0
    }

    /// Re-opens the same stores with some settings changed (a size limit, a
    /// policy file), as a restart with other flags would.
    pub fn reopen_with(&self, change: impl FnOnce(&mut Settings)) -> Steward {
        let mut settings = self.settings.clone();
        change(&mut settings);
        Steward::open(settings).unwrap().0
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        if let Some(pg) = &self.pg {
            // The key store lives in a sibling schema.
            if let Ok(mut c) = postgres::Client::connect(&pg.url, postgres::NoTls) {
                let _ =
                    c.batch_execute(&format!("DROP SCHEMA IF EXISTS {}_keys CASCADE", pg.schema));
            }
        }
    }
}

/// A tenant with one account in every role.
pub struct Seeded {
    pub tenant: Tenant,
    pub subject: Account,
    pub admin: Account,
    pub operator: Account,
    pub dpo: Account,
}

impl Seeded {
    pub fn all(&self) -> [&Account; 4] {
        [&self.subject, &self.admin, &self.operator, &self.dpo]
    }
}

pub fn new_user(username: &str, role: Role) -> NewUser {
    NewUser {
        username: username.to_owned(),
        password: PASSWORD.to_owned(),
        role,
        email: Some(format!("{username}@example.test")),
        phone: None,
        display_name: Some(format!("Person {username}")),
    }
}

/// Creates a tenant and one account per role; `tag` keeps usernames unique.
pub fn seed_tenant(core: &Steward, tag: &str) -> Seeded {
    let cli = Actor::cli();
    let tenant = tenants::create(
        core,
        &cli,
        &format!("Tenant {tag}"),
        Some(&format!("C-{tag}")),
    )
    .unwrap();
    let mk = |name: &str, role| {
        accounts::create_user(
            core,
            &cli,
            &tenant.id,
            new_user(&format!("{tag}-{name}"), role),
        )
        .unwrap()
    };
    Seeded {
        subject: mk("user", Role::Subject),
        admin: mk("admin", Role::TenantAdmin),
        operator: mk("operator", Role::Operator),
        dpo: mk("dpo", Role::Dpo),
        tenant,
    }
}

/// A provider staff account (operator or dpo of the provider's own tenant).
pub fn provider_staff(core: &Steward, username: &str, role: Role) -> Account {
    accounts::create_user(
        core,
        &Actor::cli(),
        tenants::PROVIDER_TENANT,
        new_user(username, role),
    )
    .unwrap()
}

/// A small JPEG whose bytes contain `marker`.
pub fn jpeg(marker: &str) -> Vec<u8> {
    let mut v = vec![
        0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x10, b'J', b'F', b'I', b'F', 0,
    ];
    for _ in 0..64 {
        v.extend_from_slice(marker.as_bytes());
    }
    v.extend_from_slice(&[0xFF, 0xD9]);
    v
}

/// The user (as themself) consents to photos and uploads one, named `name`,
/// through the media feature. From synchronous test code. Returns the item and
/// the bytes uploaded.
pub fn seed_media(core: &Arc<Steward>, user: &Account, name: &str) -> (MediaItem, Vec<u8>) {
    let me = accounts::actor_for(user);
    consent::record(
        core,
        &me,
        consent::Record {
            subject_id: user.subject_id.clone(),
            category: "photos_media".into(),
            purpose: "provision".into(),
            action: consent::Action::Grant,
            channel: consent::Channel::App,
            evidence: None,
        },
    )
    .unwrap();
    let bytes = jpeg(&format!("photo-of-{name}"));
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes.clone()))]);
    let item = steward::core::block_on(media::upload(
        core.clone(),
        me,
        user.subject_id.clone(),
        Upload {
            content_type: Some("image/jpeg".into()),
            name: Some(name.to_owned()),
        },
        body,
    ))
    .unwrap();
    (item, bytes)
}

/// A call in `tenant` (between two outside numbers, ingested through the API
/// path) and `n` WAV recordings of it whose audio repeats `marker`, uploaded by
/// the CLI. From synchronous test code. Returns the call id and the recordings.
pub fn seed_recordings(
    core: &Arc<Steward>,
    tenant: &str,
    marker: &str,
    n: usize,
) -> (String, Vec<Recording>) {
    let start = steward::clock::now() - 600;
    let record: steward::ingest::NewCallRecord = serde_json::from_value(json!({
        "caller": "+44 7700 900321", "callee": "+44 1632 960321",
        "start": start, "answer": start + 2, "end": start + 62,
    }))
    .unwrap();
    let call = steward::ingest::ingest_records(core, &Actor::cli(), tenant, &[record], false)
        .unwrap()
        .ids
        .remove(0);
    let mut wav = b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x10\x00\x00".to_vec();
    wav.extend(marker.bytes().cycle().take(4096));
    let recs = (0..n)
        .map(|_| {
            let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
                wav.clone(),
            ))]);
            steward::core::block_on(recordings::upload(
                core.clone(),
                Actor::cli(),
                recordings::Upload {
                    call_id: call.clone(),
                    direction: "inbound".into(),
                    duration: "60".into(),
                    content_type: Some("audio/wav".into()),
                    name: None,
                },
                body,
            ))
            .unwrap()
        })
        .collect();
    (call, recs)
}

/// The user uploads a JPEG (its bytes contain `name`) to a chat conversation,
/// pending until a message names it. From synchronous test code. Returns the
/// attachment and the bytes uploaded.
pub fn seed_attachment(
    core: &Arc<Steward>,
    user: &Account,
    conversation_id: &str,
    name: &str,
) -> (steward::chat::Attachment, Vec<u8>) {
    let bytes = jpeg(&format!("chat-file-{name}"));
    let body =
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(bytes.clone()))]);
    let item = steward::core::block_on(steward::chat::attachments::upload(
        core.clone(),
        accounts::actor_for(user),
        conversation_id.to_owned(),
        steward::chat::attachments::Upload {
            content_type: Some("image/jpeg".into()),
            name: Some(name.to_owned()),
        },
        body,
    ))
    .unwrap();
    (item, bytes)
}

/// A running HTTP server on 127.0.0.1 with a random port.
pub struct Server {
    pub base: String,
    pub http: reqwest::Client,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub async fn start(core: Arc<Steward>) -> Server {
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
        Server {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// A server running elsewhere (another process) at `base`.
    pub fn at(base: &str) -> Server {
        Server {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
            shutdown: None,
            task: None,
        }
    }

    /// Stops the server and waits until `api::serve` has returned.
    pub async fn stop(mut self) {
        if let Some(s) = self.shutdown.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.expect("the server task ended cleanly");
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn login(&self, username: &str) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/api/v1/auth/login",
                None,
                Some(json!({"username": username, "password": PASSWORD})),
            )
            .await;
        assert_eq!(status, 200, "login {username}: {body}");
        body["token"].as_str().unwrap().to_owned()
    }

    /// Sends a request; returns the status and the body parsed as JSON (or as a
    /// JSON string when it is not JSON).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method.parse().unwrap(), self.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// Sends raw bytes with the given content type.
    pub async fn raw(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        content_type: &str,
        body: Vec<u8>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("content-type", content_type)
            .body(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Every file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Whether `needle` occurs in `bytes`.
pub fn holds(bytes: &[u8], needle: &[u8]) -> bool {
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// Files under `dir` whose bytes contain `needle` (as UTF-8, and as UTF-16LE).
pub fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let utf8 = needle.as_bytes().to_vec();
    let utf16: Vec<u8> = needle
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    files_under(dir)
        .into_iter()
        .filter(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            [&utf8, &utf16].iter().any(|n| holds(&bytes, n))
        })
        .collect()
}

/// Starts a `steward serve` command (its stderr is read here) and waits, at
/// most 60 s, for the address it serves on. Returns the child, the base URL
/// and every line it logs.
pub fn spawn_server(
    mut cmd: std::process::Command,
) -> (
    std::process::Child,
    String,
    Arc<std::sync::Mutex<Vec<String>>>,
) {
    use std::io::BufRead;
    let mut child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("serving on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
            if let Ok(mut l) = sink.lock() {
                l.push(line);
            }
        }
    });
    let base = rx
        .recv_timeout(std::time::Duration::from_secs(60))
        .unwrap_or_else(|_| {
            panic!(
                "the server did not start: {:?}",
                log.lock().map(|l| l.clone())
            )
        });
    (child, base, log)
}

/// The code of the close frame a WebSocket receives next (other frames are
/// skipped); `None` when it ends without one. Fails after `within`.
pub async fn close_code<S>(ws: &mut S, within: std::time::Duration) -> Option<u16>
where
    S: futures_util::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(within, async {
        loop {
            match ws.next().await {
                None | Some(Err(_)) => return None,
                Some(Ok(Message::Close(c))) => return c.map(|c| u16::from(c.code)),
                Some(Ok(_)) => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("the server closed the socket within {within:?}"))
}

/// Asserts that every field of every machine-readable file of an access
/// bundle (`data/*.json`, `data/*.csv`) is described in its `schema.json`, and
/// that no internal column (tenant ids, subject ids, storage formats, blob
/// keys, sealed, derived or ingestion columns) appears in any of them.
#[allow(dead_code)]
pub fn assert_described(
    files: &std::collections::BTreeMap<String, String>,
    schema: &serde_json::Value,
) {
    fn walk(path: &str, v: &serde_json::Value, s: &serde_json::Value) {
        match v {
            serde_json::Value::Array(_) if s.get("items").is_none() => {
                assert!(
                    s["description"]
                        .as_str()
                        .is_some_and(|d| d.contains("as it was given")),
                    "{path}: {s}"
                );
            }
            serde_json::Value::Array(items) => {
                for item in items {
                    walk(path, item, &s["items"]);
                }
            }
            // A value kept as it was given (a contact card, what was sent to
            // a credit agency): described as a whole, its own keys are its words.
            serde_json::Value::Object(_)
                if s.get("properties").is_none() && s.get("items").is_none() =>
            {
                assert!(
                    s["description"]
                        .as_str()
                        .is_some_and(|d| d.contains("as it was given")),
                    "{path}: {s}"
                );
            }
            serde_json::Value::Object(o) => {
                let props = s["properties"]
                    .as_object()
                    .unwrap_or_else(|| panic!("{path}: schema has no properties: {s}"));
                for (k, v) in o {
                    let internal = [
                        "tenant_id",
                        "source_format",
                        "ingested_at",
                        "blob_key",
                        "leg_id",
                    ]
                    .contains(&k.as_str())
                        || k.ends_with("_enc")
                        || k.ends_with("_idx")
                        || k.ends_with("_hash")
                        || k.ends_with("subject_id");
                    assert!(!internal, "{path}.{k}: an internal column in the bundle");
                    let p = props
                        .get(k)
                        .unwrap_or_else(|| panic!("{path}.{k} is not described in schema.json"));
                    assert!(
                        p["description"].as_str().is_some_and(|d| d.len() > 3),
                        "{path}.{k}: no description"
                    );
                    walk(&format!("{path}.{k}"), v, p);
                }
                for required in s["required"].as_array().into_iter().flatten() {
                    assert!(
                        o.contains_key(required.as_str().unwrap()),
                        "{path}: {required} missing"
                    );
                }
            }
            _ => {}
        }
    }
    let described = schema["files"]
        .as_object()
        .expect("schema.json lists files");
    let mut seen = 0;
    for (name, text) in files {
        if !name.starts_with("data/") {
            continue;
        }
        let s = described
            .get(name)
            .unwrap_or_else(|| panic!("{name} is not described in schema.json"));
        if name.ends_with(".json") {
            let v: serde_json::Value = serde_json::from_str(text).unwrap();
            walk(name, &v, s);
        } else if name.ends_with(".csv") {
            let header: Vec<String> = csv::Reader::from_reader(text.as_bytes())
                .headers()
                .unwrap()
                .iter()
                .map(str::to_owned)
                .collect();
            let columns: Vec<String> = s["columns"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(header, columns, "{name}");
            let json_name = name.replace(".csv", ".json");
            let props = described[&json_name]["items"]["properties"]
                .as_object()
                .unwrap();
            for c in &columns {
                assert!(props.contains_key(c), "{name}: column {c} not described");
            }
        }
        seen += 1;
    }
    assert!(seen > 2, "the bundle has data files");
}
