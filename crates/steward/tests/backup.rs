//! Backups leave the keys out, so erasure reaches them: back up, erase subject A,
//! restore the old backup in place, and A stays gone (unreadable, purged, no
//! identifier anywhere) while everyone else is back. On SQLite the backup is taken
//! by the real binary while `steward serve` keeps writing; on PostgreSQL while
//! other threads write.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use base64ct::{Base64, Encoding};
use common::{Env, PASSWORD, files_containing, files_under, new_user, provider_staff};
use serde_json::{Value, json};
use steward::access::{Actor, Role};
use steward::accounts::{self, Account, NewUser};
use steward::config::Settings;
use steward::consent::{self, Action, Channel, Record};
use steward::core::{block_on, fields};
use steward::registry::PERSONAL_STORES;
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase};
use steward::{Error, Steward, audit, backup, subjects, tenants};
use steward_crypto::IdentifierKind;
use steward_store::params;

const BIN: &str = env!("CARGO_BIN_EXE_steward");

const A_EMAIL: &str = "wilhelmina.ashcombe@backup-probe.test";
const A_PHONE: &str = "07700 900871";
const A_PHONE_E164: &str = "+447700900871";
const A_NAME: &str = "Wilhelmina Ashcombe";
const B_EMAIL: &str = "barnaby.quist@backup-probe.test";
const B_NAME: &str = "Barnaby Quist";

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

struct People {
    tenant: String,
    a: Account,
    b: Account,
    dpo: Actor,
}

/// A tenant with subjects A and B, each with identifiers and data in every
/// registered store: account, session, consents, a request, a call record
/// between them, and a blob each.
fn seed(core: &Arc<Steward>, tag: &str) -> People {
    let cli = Actor::cli();
    let tenant = tenants::create(core, &cli, &format!("Backup {tag}"), None).unwrap();
    let dpo = accounts::actor_for(&provider_staff(core, &format!("{tag}-dpo"), Role::Dpo));
    let mk = |username: &str, email: &str, phone: Option<&str>, name: &str| {
        accounts::create_user(
            core,
            &cli,
            &tenant.id,
            NewUser {
                email: Some(email.into()),
                phone: phone.map(str::to_owned),
                display_name: Some(name.into()),
                ..new_user(username, Role::Subject)
            },
        )
        .unwrap()
    };
    let a = mk(&format!("{tag}-ashcombe"), A_EMAIL, Some(A_PHONE), A_NAME);
    let b = mk(
        &format!("{tag}-quist"),
        B_EMAIL,
        Some("07700 900872"),
        B_NAME,
    );
    for acc in [&a, &b] {
        let s = accounts::login(core, &acc.username, PASSWORD, Some("198.51.100.23")).unwrap();
        let me = accounts::authenticate(core, &s.token).unwrap();
        consent::record(
            core,
            &me,
            Record {
                subject_id: acc.subject_id.clone(),
                category: "credit_checks".into(),
                purpose: "credit_check".into(),
                action: Action::Grant,
                channel: Channel::App,
                evidence: Some(format!("signed form of {}", acc.username)),
            },
        )
        .unwrap();
        // A website visit under web analytics consent (the web_visits store).
        for purpose in ["research_statistics", "service_improvement"] {
            consent::record(
                core,
                &me,
                Record {
                    subject_id: acc.subject_id.clone(),
                    category: "web_analytics".into(),
                    purpose: purpose.into(),
                    action: Action::Grant,
                    channel: Channel::Web,
                    evidence: None,
                },
            )
            .unwrap();
        }
        let visit = steward::analytics::web::clean(
            &steward::analytics::web::Visit {
                visitor_id: format!("backup-visitor-{}", acc.username),
                page: "/pricing".into(),
                referrer: None,
                user_agent: None,
            },
            None,
            Some("198.51.100.23".parse().unwrap()),
        )
        .unwrap();
        assert!(
            steward::analytics::web::collect_for_subject(core, &acc.subject_id, &visit).unwrap()
        );
        rights::create(
            core,
            &dpo,
            NewRequest {
                subject: SubjectRef::Id(acc.subject_id.clone()),
                kind: Kind::Access,
                channel: RequestChannel::Letter,
                received_on: today(),
                region: None,
                details: Some(format!("letter from {}", acc.username)),
            },
        )
        .unwrap();
        // A directory entry about them, and a contact they synced (with consent).
        steward::directory::create(
            core,
            &cli,
            &tenant.id,
            steward::directory::EntryInput {
                display_name: format!("Directory {}", acc.username),
                emails: vec![steward_vcard::Typed {
                    value: if acc.id == a.id { A_EMAIL } else { B_EMAIL }.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .unwrap();
        consent::record(
            core,
            &me,
            Record {
                subject_id: acc.subject_id.clone(),
                category: "device_contacts".into(),
                purpose: "provision".into(),
                action: Action::Grant,
                channel: Channel::App,
                evidence: None,
            },
        )
        .unwrap();
        steward::contacts::sync(
            core,
            &me,
            steward::contacts::SyncInput::json(steward_vcard::Contact {
                formatted_name: Some(format!("Friend of {}", acc.username)),
                ..Default::default()
            }),
        )
        .unwrap();
        common::seed_media(core, acc, &format!("{}-photo.jpg", acc.username));
        // A produced portability bundle: the subject's stored copy (access_bundles).
        let copy = rights::create(
            core,
            &dpo,
            NewRequest {
                subject: SubjectRef::Id(acc.subject_id.clone()),
                kind: Kind::Portability,
                channel: RequestChannel::Portal,
                received_on: today(),
                region: None,
                details: None,
            },
        )
        .unwrap();
        rights::verify(core, &dpo, &copy.id, "portal session").unwrap();
        let out = tempfile::NamedTempFile::new().unwrap();
        rights::export::for_request(core, &dpo, &copy.id, out.path()).unwrap();
    }
    // An enquiry, a credit check (using the permission above) and a "no further
    // contact" entry each: the CRM stores.
    for (acc, email, name) in [(&a, A_EMAIL, A_NAME), (&b, B_EMAIL, B_NAME)] {
        let enquiry = json!({
            "channel": "phone", "name": name, "email": email,
            "message": format!("{name} asked about a contract"),
        });
        let e = steward::crm::enquiries::record(
            core,
            &cli,
            &tenant.id,
            &serde_json::from_value(enquiry).unwrap(),
        )
        .unwrap();
        assert_eq!(e.subject_id, acc.subject_id);
        let check = json!({ "name": name, "postal_address": "4 Backup Street, Tamworth" });
        steward::crm::credit::request(
            core,
            &cli,
            &acc.subject_id,
            &serde_json::from_value(check).unwrap(),
        )
        .unwrap();
        steward::crm::marketing::no_further_contact(
            core,
            &cli,
            &acc.subject_id,
            &steward::crm::marketing::NoFurtherContact {
                channel: Some(Channel::Letter),
                evidence: Some(format!("letter from {name}")),
            },
        )
        .unwrap();
    }
    call_record(core, &tenant.id, &a, &b);
    call_recording(core);
    chat(core, &a, &b);
    // Every registered table store holds some of A's rows.
    let counts = rows_about(core, &a.subject_id);
    for store in PERSONAL_STORES.iter() {
        assert!(
            counts[store.name] > 0,
            "the seed misses store {}: {counts:?}",
            store.name
        );
    }
    People {
        tenant: tenant.id,
        a,
        b,
        dpo,
    }
}

/// A recording of the call from A to B, made by B's side (outbound for B's
/// tenant: B, the callee, owns it and its file; A is the other party).
fn call_recording(core: &Arc<Steward>) {
    let mut wav = b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x10\x00\x00".to_vec();
    wav.extend(b"backup-recording ".iter().cycle().take(4096));
    let body = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(wav))]);
    block_on(steward::recordings::upload(
        core.clone(),
        Actor::cli(),
        steward::recordings::Upload {
            call_id: "01".repeat(16),
            direction: "outbound".into(),
            duration: "55".into(),
            content_type: Some("audio/wav".into()),
            name: None,
        },
        body,
    ))
    .unwrap();
}

/// Chat between A and B: a group A started and a direct conversation B
/// started, a message each way in each, read marks, a connection each.
fn chat(core: &Arc<Steward>, a: &Account, b: &Account) {
    use steward::chat::{Chat, ConversationKind, Mark, NewConversation, conversations};
    let chat = Chat::start(core.clone());
    let (actor_a, actor_b) = (accounts::actor_for(a), accounts::actor_for(b));
    let (author_a, author_b) = (
        chat.author(&actor_a).unwrap(),
        chat.author(&actor_b).unwrap(),
    );
    let start = |actor, kind, other: &Account, title: Option<&str>| {
        conversations::create(
            core,
            actor,
            NewConversation {
                kind,
                members: vec![other.subject_id.clone()],
                title: title.map(str::to_owned),
            },
        )
        .unwrap()
        .0
    };
    let group = start(
        &actor_a,
        ConversationKind::Group,
        b,
        Some("Ashcombe and Quist"),
    );
    let direct = start(&actor_b, ConversationKind::Direct, a, None);
    for (who, author) in [(a, &author_a), (b, &author_b)] {
        let (file, _) =
            common::seed_attachment(core, who, &group.id, &format!("{}.jpg", who.username));
        chat.send_blocking(author, &group.id, "", &[file.id])
            .unwrap();
    }
    for conv in [&group.id, &direct.id] {
        let from_a = chat
            .send_blocking(&author_a, conv, &format!("{A_NAME} writes"), &[])
            .unwrap();
        let from_b = chat
            .send_blocking(&author_b, conv, &format!("{B_NAME} answers"), &[])
            .unwrap();
        chat.mark_blocking(&author_b, conv, Mark::Read, from_a.id)
            .unwrap();
        chat.mark_blocking(&author_a, conv, Mark::Delivered, from_b.id)
            .unwrap();
    }
    for author in [&author_a, &author_b] {
        steward::chat::connection_opened(
            core,
            author,
            "backup-session-token",
            Some("198.51.100.23"),
        )
        .unwrap();
    }
}

/// A call from A to B, each party's number sealed under their own key.
fn call_record(core: &Steward, tenant: &str, a: &Account, b: &Account) {
    if !core
        .db
        .table_names()
        .unwrap()
        .contains(&"call_records".to_owned())
    {
        return;
    }
    let ka = core.subject_key(&a.subject_id).unwrap();
    let kb = core.subject_key(&b.subject_id).unwrap();
    let now = steward::clock::now();
    core.db
        .write(|c: &mut dyn steward_store::Conn| {
            c.execute(
                "INSERT INTO call_records (id, tenant_id, source_format, caller_subject_id, \
                 callee_subject_id, caller_number_enc, callee_number_enc, start_at, end_at, \
                 duration, billsec, disposition, ingested_at) \
                 VALUES ($1, $2, 'test', $3, $4, $5, $6, $7, $7, 60, 55, 'ANSWERED', $7)",
                params![
                    vec![1u8; 16],
                    tenant,
                    a.subject_id.as_str(),
                    b.subject_id.as_str(),
                    fields::seal(
                        &ka,
                        "call_records.caller_number",
                        &a.subject_id,
                        A_PHONE_E164
                    )
                    .unwrap(),
                    fields::seal(
                        &kb,
                        "call_records.callee_number",
                        &b.subject_id,
                        "+447700900872"
                    )
                    .unwrap(),
                    now
                ],
            )
        })
        .unwrap();
}

/// Rows naming `subject` per registered table store.
fn rows_about(core: &Steward, subject: &str) -> BTreeMap<String, i64> {
    PERSONAL_STORES
        .iter()
        .map(|s| {
            let n: i64 = s
                .subject_columns
                .iter()
                .map(|col| {
                    core.db
                        .read(|c| {
                            c.query_opt(
                                &format!("SELECT COUNT(*) FROM {} WHERE {col} = $1", s.name),
                                params![subject],
                            )
                        })
                        .unwrap()
                        .unwrap()
                        .i64(0)
                        .unwrap()
                })
                .sum();
            (s.name.to_owned(), n)
        })
        .collect()
}

fn erase_a(core: &Steward, p: &People) {
    let req = rights::create(
        core,
        &p.dpo,
        NewRequest {
            subject: SubjectRef::Email(A_EMAIL.into()),
            kind: Kind::Erasure,
            channel: RequestChannel::Email,
            received_on: today(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &p.dpo, &req.id, "called back on the number we hold").unwrap();
    let rep = erase::for_request(core, &p.dpo, &req.id).unwrap();
    assert!(rep.key_destroyed);
    assert!(core.keys.subject_key(&p.a.subject_id).unwrap().is_none());
}

/// After restoring the pre-erasure backup: B is back and readable, A is gone from
/// every store, unreadable, tombstoned, and the audit chain verifies.
fn check_restored(core: &Steward, p: &People) {
    // The audit chain first (the read below adds an entry of its own).
    let v = audit::verify(&core.db, &core.keys).unwrap();
    assert!(v.ok, "{v:?}");
    let entries = audit::list(&core.db, 0, 100_000, None).unwrap();
    let purge = entries
        .iter()
        .find(|e| e.action == "restore.purge")
        .expect("a restore.purge entry");
    assert_eq!(purge.subject_id.as_deref(), Some(p.a.subject_id.as_str()));
    assert_eq!(purge.tenant_id.as_deref(), Some(p.tenant.as_str()));
    let last = entries.last().unwrap();
    assert_eq!(last.action, "restore");
    assert!(last.seq > purge.seq);
    let b = subjects::read(core, &Actor::cli(), &p.b.subject_id, "administration").unwrap();
    assert_eq!(b.email.as_deref(), Some(B_EMAIL));
    assert_eq!(b.name.as_deref(), Some(B_NAME));
    let b_rows = rows_about(core, &p.b.subject_id);
    assert!(b_rows.values().all(|n| *n > 0), "B's rows: {b_rows:?}");
    assert!(core.keys.subject_key(&p.a.subject_id).unwrap().is_none());
    let left = rows_about(core, &p.a.subject_id);
    assert!(left.values().all(|n| *n == 0), "A's rows left: {left:?}");
    assert!(matches!(
        subjects::read(core, &Actor::cli(), &p.a.subject_id, "administration"),
        Err(Error::NotFound(_))
    ));
    // A later request about A is told the data is gone.
    assert!(
        erase::tombstone_for(core, IdentifierKind::Email, A_EMAIL)
            .unwrap()
            .is_some()
    );
    // B's blob is back, A's is not.
    let blobs: Vec<String> = block_on(core.blobs.list(""))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert!(
        blobs.iter().any(|k| k.contains(&p.b.subject_id)),
        "{blobs:?}"
    );
    assert!(
        !blobs.iter().any(|k| k.contains(&p.a.subject_id)),
        "{blobs:?}"
    );
    // The backup's open sessions were revoked.
    let open = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT COUNT(*) FROM sessions WHERE revoked_at IS NULL",
                &[],
            )
        })
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(open, 0);
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
}

/// None of A's identifiers, in any form, in any file under `dir`.
fn assert_no_identifiers_of_a(dir: &Path) {
    for needle in [A_EMAIL, A_PHONE, A_PHONE_E164, A_NAME, "wilhelmina"] {
        let found = files_containing(dir, needle);
        assert!(found.is_empty(), "{needle:?} in clear in {found:?}");
    }
}

/// No key material in the backup: no key-store or master-key file, and neither
/// the master key (as written or raw) nor any wrapped key among its bytes.
fn assert_no_keys(backup: &Path, master_key_file: &Path, key_store: &Path) {
    for f in files_under(backup) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            !["master.key", "keys.sqlite", "keys.sqlite-wal"].contains(&name.as_str()),
            "{f:?}"
        );
    }
    let text = std::fs::read_to_string(master_key_file).unwrap();
    let raw = Base64::decode_vec(text.trim()).unwrap();
    assert_eq!(raw.len(), 32);
    let keys = rusqlite::Connection::open(key_store).unwrap();
    let mut wrapped: Vec<Vec<u8>> = keys
        .prepare("SELECT wrapped FROM subject_keys UNION ALL SELECT wrapped FROM system_keys")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(wrapped.len() >= 4);
    wrapped.push(raw);
    wrapped.push(text.trim().as_bytes().to_vec());
    for f in files_under(backup) {
        let bytes = std::fs::read(&f).unwrap();
        for w in &wrapped {
            assert!(
                !bytes.windows(w.len()).any(|win| win == w.as_slice()),
                "key material in {f:?}"
            );
        }
    }
}

/// Every file under `dir` with its bytes: "nothing changed" is this, equal.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(&f).unwrap();
            (f, b)
        })
        .collect()
}

fn steward(args: &[&str]) -> (i32, Value, String) {
    let out = Command::new(BIN)
        .args(args)
        .arg("--json")
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_str(stdout.trim()).unwrap_or(Value::String(stdout)),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

struct Served {
    child: Child,
    base: String,
}

impl Served {
    fn start(data: &Path) -> Served {
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--log-format", "text"])
            .arg("--data-dir")
            .arg(data)
            .env_remove("STEWARD_MASTER_KEY")
            .env("STEWARD_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(rest) = line.split("serving on ").nth(1) {
                    let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
                }
            }
        });
        let base = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("server did not start");
        Served { child, base }
    }

    /// SIGTERM, then wait: the server shuts down gracefully.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn call(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .json(&body);
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

/// Writes consents for B through the API until told to stop; counts them.
fn keep_writing(base: String, b: Account, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let (s, body) = call(
            &base,
            "/api/v1/auth/login",
            None,
            json!({"username": b.username, "password": PASSWORD}),
        )
        .await;
        assert_eq!(s, 200, "{body}");
        let token = body["token"].as_str().unwrap().to_owned();
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let action = if i.is_multiple_of(2) {
                "withdraw"
            } else {
                "grant"
            };
            let (s, body) = call(
                &base,
                &format!("/api/v1/subjects/{}/consents", b.subject_id),
                Some(&token),
                // Marketing consent: its withdrawal deletes nothing, so B's stores
                // stay as seeded (a credit-check withdrawal deletes the checks).
                json!({"category": "contact_details", "purpose": "marketing", "action": action}),
            )
            .await;
            assert_eq!(s, 201, "{body}");
            i += 1;
            done.store(i, Ordering::Relaxed);
        }
    });
}

#[test]
fn backup_erase_restore_on_sqlite_with_a_running_server() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup_dir = tmp.path().join("backup");
    let settings = Settings {
        data_dir: data.clone(),
        ..Settings::default()
    };
    let core = Arc::new(Steward::open(settings.clone()).unwrap().0);
    let people = seed(&core, "sq");

    // The server runs and B keeps writing through the API while the backup is taken.
    let server = Served::start(&data);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let writer = {
        let (base, b, stop, done) = (
            server.base.clone(),
            people.b.clone(),
            stop.clone(),
            done.clone(),
        );
        std::thread::spawn(move || keep_writing(base, b, stop, done))
    };
    while done.load(Ordering::Relaxed) < 20 {
        std::thread::sleep(Duration::from_millis(20));
    }

    // Bad folders are refused before anything is made.
    let inside = data.join("backups");
    let (code, _, err) = steward(&["backup", "create", p(&inside), "--data-dir", p(&data)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("inside the data directory"), "{err}");
    assert!(!inside.exists());
    let busy = tmp.path().join("busy");
    std::fs::create_dir(&busy).unwrap();
    std::fs::write(busy.join("notes.txt"), "keep me").unwrap();
    let (code, _, err) = steward(&["backup", "create", p(&busy), "--data-dir", p(&data)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(files_under(&busy).len(), 1);

    let before = done.load(Ordering::Relaxed);
    let (code, report, err) =
        steward(&["backup", "create", p(&backup_dir), "--data-dir", p(&data)]);
    assert_eq!(code, 0, "{err}");
    let after = done.load(Ordering::Relaxed);
    let manifest = &report["manifest"];
    assert_eq!(manifest["format"], "steward-backup");
    assert_eq!(manifest["format_version"], 1);
    assert_eq!(manifest["backend"], "sqlite");
    assert_eq!(manifest["keys_included"], false);
    // Two photos, B's call recording, a stored access bundle each, two chat files.
    assert_eq!(manifest["blobs"], 7);
    assert_eq!(manifest["master_key_id"], json!(core.keys.master_id()));
    assert!(manifest["schema_version"].as_i64().unwrap() >= 2);
    let on_disk: Value =
        serde_json::from_str(&std::fs::read_to_string(backup_dir.join("manifest.json")).unwrap())
            .unwrap();
    assert_eq!(&on_disk, manifest);

    // Restoring while the server runs is refused.
    let (code, _, err) = steward(&["backup", "restore", p(&backup_dir), "--data-dir", p(&data)]);
    assert_eq!(code, 3, "{err}");
    assert!(err.contains("stop it"), "{err}");

    while done.load(Ordering::Relaxed) <= after + 5 {
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    server.stop();
    assert!(
        done.load(Ordering::Relaxed) > after && after > before,
        "the server kept writing through the backup: {before} {after}"
    );

    assert_no_keys(
        &backup_dir,
        &data.join("master.key"),
        &data.join("keys").join("keys.sqlite"),
    );

    // The backup opens on its own and its audit chain verifies: restore it into a
    // new data directory, with a copy of the key store and the master key.
    let elsewhere = tmp.path().join("elsewhere");
    let keys_copy = tmp.path().join("keys-copy");
    std::fs::create_dir(&keys_copy).unwrap();
    for f in ["keys.sqlite", "keys.sqlite-wal"] {
        let from = data.join("keys").join(f);
        if from.exists() {
            std::fs::copy(&from, keys_copy.join(f)).unwrap();
        }
    }
    let other = Settings {
        data_dir: elsewhere.clone(),
        key_store: Some(p(&keys_copy.join("keys.sqlite")).to_owned()),
        master_key_file: Some(data.join("master.key")),
        ..Settings::default()
    };
    let r = backup::restore(&other, &backup_dir, &Actor::cli()).unwrap();
    assert!(r.purged_subjects.is_empty(), "{r:?}");
    assert_eq!(r.blobs_restored, 7);
    {
        let copy = Steward::open(other).unwrap().0;
        let v = audit::verify(&copy.db, &copy.keys).unwrap();
        assert!(v.ok, "{v:?}");
        assert!(v.entries > manifest["audit_head"]["seq"].as_i64().unwrap());
        let b =
            subjects::read(&copy, &Actor::cli(), &people.b.subject_id, "administration").unwrap();
        assert_eq!(b.email.as_deref(), Some(B_EMAIL));
    }

    // Erase A, then restore the old backup in place.
    erase_a(&core, &people);
    drop(core);
    let untouched = snapshot(&data);
    // Bad backups are refused and change nothing.
    let empty = tmp.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let (code, _, err) = steward(&["backup", "restore", p(&empty), "--data-dir", p(&data)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("no manifest.json"), "{err}");
    let newer = tmp.path().join("newer");
    std::fs::create_dir(&newer).unwrap();
    let mut future = on_disk.clone();
    future["format_version"] = json!(99);
    std::fs::write(newer.join("manifest.json"), future.to_string()).unwrap();
    let (code, _, err) = steward(&["backup", "restore", p(&newer), "--data-dir", p(&data)]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("newer"), "{err}");
    let (code, _, err) = steward(&[
        "backup",
        "restore",
        p(&backup_dir),
        "--data-dir",
        p(&tmp.path().join("no-keys-here")),
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("master key") || err.contains("key store"),
        "{err}"
    );
    assert!(!tmp.path().join("no-keys-here").exists());
    assert_eq!(
        snapshot(&data),
        untouched,
        "a refused restore changed the data directory"
    );

    let (code, r, err) = steward(&["backup", "restore", p(&backup_dir), "--data-dir", p(&data)]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(r["purged_subjects"], json!([people.a.subject_id]));
    // A's photo, bundle and chat file are purged with A.
    assert_eq!(r["blobs_restored"], 7);
    assert_eq!(r["blobs_purged"], 3);
    assert_eq!(r["keys_without_data"], 0);
    assert_eq!(r["sessions_revoked"], 2, "{r}");
    assert_eq!(r["purged_rows"]["subjects"], json!(1), "{r}");
    assert!(!data.join(".steward-restore").exists());

    let core = Steward::open(settings).unwrap().0;
    check_restored(&core, &people);
    drop(core);
    assert_no_identifiers_of_a(&data);
    assert_no_identifiers_of_a(&backup_dir);
}

#[test]
fn backup_erase_restore_on_postgres() {
    let Some(env) = Env::postgres() else {
        return;
    };
    let core = &env.core;
    let people = seed(core, "pg");
    let backup_dir = env.dir.path().join("backup");

    // Other threads keep writing while the snapshot is exported.
    let stop = AtomicBool::new(false);
    let report = std::thread::scope(|s| {
        let writer = s.spawn(|| {
            let me = accounts::actor_for(&people.b);
            let mut n = 0;
            while !stop.load(Ordering::Relaxed) {
                consent::record(
                    core,
                    &me,
                    Record {
                        subject_id: people.b.subject_id.clone(),
                        category: "contact_details".into(),
                        purpose: "marketing".into(),
                        action: if n % 2 == 0 {
                            Action::Withdraw
                        } else {
                            Action::Grant
                        },
                        channel: Channel::App,
                        evidence: None,
                    },
                )
                .unwrap();
                n += 1;
            }
            n
        });
        std::thread::sleep(Duration::from_millis(200));
        let r = backup::create(core, &backup_dir).unwrap();
        stop.store(true, Ordering::Relaxed);
        assert!(writer.join().unwrap() > 0);
        r
    });
    assert_eq!(report.manifest.backend, "postgres");
    assert!(backup_dir.join("data").join("subjects.jsonl").exists());
    // Two photos, B's call recording, a stored access bundle each, two chat files.
    assert_eq!(report.manifest.blobs, 7);
    for f in files_under(&backup_dir) {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(!name.contains("key"), "{f:?}");
    }
    let raw = std::fs::read_to_string(env.data_dir().join("master.key")).unwrap();
    assert!(files_containing(&backup_dir, raw.trim()).is_empty());

    erase_a(core, &people);
    // Someone who arrives after the backup does not come back with it.
    let late = accounts::create_user(
        core,
        &Actor::cli(),
        &people.tenant,
        new_user("pg-latecomer", Role::Subject),
    )
    .unwrap();
    // A second backup folder is refused once used.
    assert!(matches!(
        backup::create(core, &backup_dir),
        Err(Error::Invalid { .. })
    ));

    let r = backup::restore(&env.settings, &backup_dir, &Actor::cli()).unwrap();
    assert_eq!(r.purged_subjects, vec![people.a.subject_id.clone()]);
    assert_eq!(r.backend, "postgres");
    assert_eq!(r.keys_without_data, 1);
    let restored = env.reopen();
    check_restored(&restored, &people);
    assert!(matches!(
        subjects::read(&restored, &Actor::cli(), &late.subject_id, "administration"),
        Err(Error::NotFound(_))
    ));
    // Chat goes on numbering above every restored id (PostgreSQL's chat_ids
    // sequence is not in a backup).
    let restored = Arc::new(restored);
    let (conv, top) = restored
        .db
        .read(|c| {
            let conv = c
                .query_opt(
                    "SELECT conversation_id FROM chat_members WHERE subject_id = $1",
                    steward_store::params![people.b.subject_id.as_str()],
                )?
                .unwrap()
                .text(0)?;
            let top = c
                .query_opt("SELECT MAX(seq) FROM chat_messages", &[])?
                .unwrap()
                .i64(0)?;
            Ok((conv, top))
        })
        .unwrap();
    let chat = steward::chat::Chat::start(restored.clone());
    let author = chat.author(&accounts::actor_for(&people.b)).unwrap();
    let after = chat
        .send_blocking(&author, &conv, "after the restore", &[])
        .unwrap();
    assert!(after.id > top, "{} after {top}", after.id);
    drop(chat);
    assert_no_identifiers_of_a(env.data_dir());
    assert_no_identifiers_of_a(&backup_dir);
    // The staging schema is gone.
    let mut pg =
        postgres::Client::connect(&steward_store::testing::postgres_url(), postgres::NoTls)
            .unwrap();
    let staged = pg
        .query(
            "SELECT 1 FROM information_schema.schemata WHERE schema_name = $1",
            &[&format!(
                "{}_restore",
                env.settings.database_schema.as_deref().unwrap()
            )],
        )
        .unwrap();
    assert!(staged.is_empty());
}

/// A key store of another installation does not match the backup's audit chain:
/// restore refuses instead of purging everyone, and changes nothing.
#[test]
fn restore_with_a_foreign_key_store_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let backup_dir = tmp.path().join("backup");
    let settings = Settings {
        data_dir: data.clone(),
        ..Settings::default()
    };
    {
        let core = Arc::new(Steward::open(settings.clone()).unwrap().0);
        seed(&core, "fk");
        backup::create(&core, &backup_dir).unwrap();
    }
    // Another installation: its own master key and key store.
    let other_dir = tmp.path().join("other");
    drop(
        Steward::open(Settings {
            data_dir: other_dir.clone(),
            ..Settings::default()
        })
        .unwrap(),
    );
    let foreign = Settings {
        key_store: Some(p(&other_dir.join("keys").join("keys.sqlite")).to_owned()),
        master_key_file: Some(other_dir.join("master.key")),
        ..settings.clone()
    };
    let untouched = snapshot(&data);
    let err = backup::restore(&foreign, &backup_dir, &Actor::cli()).unwrap_err();
    assert!(matches!(err, Error::Conflict(_)), "{err}");
    assert!(err.to_string().contains("does not verify"), "{err}");
    assert_eq!(snapshot(&data), untouched);
    // The right key store still restores, and nobody is purged.
    let r = backup::restore(&settings, &backup_dir, &Actor::cli()).unwrap();
    assert!(r.purged_subjects.is_empty());
}
