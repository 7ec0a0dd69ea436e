//! End to end, as a new user would do it: the real binary with no configuration,
//! the CLI beside a running server, the API, consent, the audit chain, and a
//! look at every byte the data directory and the logs hold.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

mod common;

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn steward(data: &Path, args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("STEWARD_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn json_of(stdout: &str) -> Value {
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON object ({e}): {stdout}"))
}

struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `steward serve` with no configuration but a data directory and a free port.
fn serve(data: &Path) -> Served {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env_remove("STEWARD_MASTER_KEY");
    let (child, base, log) = common::spawn_server(cmd);
    Served { child, base, log }
}

fn call(
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut req =
            reqwest::Client::new().request(method.parse().unwrap(), format!("{base}{path}"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    })
}

fn login(base: &str, username: &str, password: &str) -> String {
    let (s, body) = call(
        base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": username, "password": password})),
    );
    assert_eq!(s, 200, "{body}");
    body["token"].as_str().unwrap().to_owned()
}

#[test]
fn a_new_user_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("steward-data");
    let server = serve(&data);
    let base = server.base.clone();
    {
        let log = server.log.lock().unwrap();
        assert!(
            log.iter()
                .any(|l| l.contains("created a new master key at") && l.contains("master.key")),
            "first start must say where the master key is: {log:?}"
        );
    }
    let (s, body) = call(&base, "GET", "/healthz", None, None);
    assert_eq!((s, body["status"].as_str()), (200, Some("ok")));
    // A browser pointed at the server finds the console: `/` sends it to the
    // console's start page (303), which sends a visitor to the login form.
    {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (status, location, login) = rt.block_on(async {
            let http = reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap();
            let r = http.get(format!("{base}/")).send().await.unwrap();
            let location = r.headers()["location"].to_str().unwrap().to_owned();
            let login = reqwest::get(format!("{base}/")).await.unwrap();
            let login = (login.url().path().to_owned(), login.text().await.unwrap());
            (r.status().as_u16(), location, login)
        });
        assert_eq!((status, location.as_str()), (303, "/console"));
        assert_eq!(login.0, "/console/login");
        assert!(login.1.contains("name=\"password\""), "{}", login.1);
    }

    // The CLI works on the same embedded store while the server runs.
    let (code, out, err) = steward(
        &data,
        &[
            "admin",
            "create-tenant",
            "--name",
            "Acme Telecom Ltd",
            "--customer-number",
            "PCS-1001",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let tenant = json_of(&out)["id"].as_str().unwrap().to_owned();
    let admin_pw = "admin password 123";
    let (code, out, err) = steward(
        &data,
        &[
            "admin",
            "create-user",
            "--tenant",
            &tenant,
            "--username",
            "acme-admin",
            "--role",
            "tenant-admin",
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{admin_pw}\n")),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["role"], "tenant-admin");

    // The admin creates a user through the API.
    let admin = login(&base, "acme-admin", admin_pw);
    let email = "gwendolyn.oakenshield@acme-probe.test";
    let name = "Gwendolyn Oakenshield";
    let user_pw = "user password 456";
    let (s, created) = call(
        &base,
        "POST",
        &format!("/api/v1/tenants/{tenant}/users"),
        Some(&admin),
        Some(
            json!({"username": "gwen", "password": user_pw, "role": "subject", "email": email, "phone": "07700 900321", "display_name": name}),
        ),
    );
    assert_eq!(s, 201, "{created}");
    let subject = created["subject_id"].as_str().unwrap().to_owned();

    // The user logs in and gives, then withdraws, a consent; a consent-based
    // operation succeeds in between and is refused after.
    let user = login(&base, "gwen", user_pw);
    let (s, me) = call(&base, "GET", "/api/v1/me", Some(&user), None);
    assert_eq!((s, me["username"].as_str()), (200, Some("gwen")));
    let consent = |action: &str| {
        call(
            &base,
            "POST",
            &format!("/api/v1/subjects/{subject}/consents"),
            Some(&user),
            Some(
                json!({"category": "device_contacts", "purpose": "provision", "action": action, "channel": "app"}),
            ),
        )
    };
    let process = || {
        call(
            &base,
            "POST",
            "/api/v1/processing",
            Some(&admin),
            Some(
                json!({"subject_id": subject, "category": "device_contacts", "purpose": "provision"}),
            ),
        )
    };
    let (s, body) = process();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("consent_required")),
        "{body}"
    );
    let (s, body) = consent("grant");
    assert_eq!(s, 201, "{body}");
    let (s, body) = process();
    assert_eq!((s, body["allowed"].as_bool()), (200, Some(true)), "{body}");
    let (s, _) = consent("withdraw");
    assert_eq!(s, 201);
    let (s, body) = process();
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("consent_required")),
        "{body}"
    );
    // The ledger keeps the whole history.
    let (s, body) = call(
        &base,
        "GET",
        &format!("/api/v1/subjects/{subject}/consents"),
        Some(&user),
        None,
    );
    assert_eq!(s, 200);
    assert_eq!(body["history"].as_array().unwrap().len(), 2);

    // Consent received by phone, recorded by an operator with the CLI.
    let (code, out, err) = steward(
        &data,
        &[
            "consent",
            "grant",
            "--subject-email",
            email,
            "--category",
            "photos_media",
            "--purpose",
            "provision",
            "--channel",
            "phone",
            "--evidence",
            "call 2026-11-26 10:14",
            "--json",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(json_of(&out)["channel"], "phone");
    let (code, _, err) = steward(
        &data,
        &[
            "consent",
            "withdraw",
            "--subject-username",
            "gwen",
            "--category",
            "photos_media",
            "--purpose",
            "provision",
            "--channel",
            "letter",
        ],
        None,
    );
    assert_eq!(code, 0, "{err}");

    // The audit chain verifies while the server runs.
    let (code, out, err) = steward(&data, &["audit", "verify"], None);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("intact"), "{out}");
    let (s, _) = call(&base, "GET", "/metrics", None, None);
    assert_eq!(s, 200);

    // The server's own log carries no personal data.
    {
        let log = server.log.lock().unwrap().join("\n");
        for needle in [
            email,
            name,
            "Oakenshield",
            "7700900321",
            user_pw,
            admin_pw,
            &user,
            &admin,
        ] {
            assert!(!log.contains(needle), "server log contains {needle:?}");
        }
        assert!(log.contains("\"route\""), "requests are logged: {log}");
    }
    drop(server);

    // Every byte of the data directory (database, WAL, key store, blobs): no
    // identifier in clear.
    for needle in [
        email,
        "oakenshield",
        name,
        "+447700900321",
        "gwen\u{0}",
        "acme-admin",
    ] {
        let hits = common::files_containing(&data, needle);
        assert!(hits.is_empty(), "{needle:?} in clear in {hits:?}");
    }

    // Master key rotation (offline): data stays readable under the new key.
    let old_key = std::fs::read(data.join("master.key")).unwrap();
    let (code, out, err) = steward(&data, &["keys", "rotate-master", "--json"], None);
    assert_eq!(code, 0, "{err}");
    assert!(json_of(&out)["rewrapped"].as_u64().unwrap() >= 3);
    assert_ne!(std::fs::read(data.join("master.key")).unwrap(), old_key);
    let (code, _, err) = steward(
        &data,
        &[
            "consent",
            "grant",
            "--subject-username",
            "gwen",
            "--category",
            "photos_media",
            "--purpose",
            "provision",
            "--channel",
            "letter",
        ],
        None,
    );
    assert_eq!(code, 0, "after rotation: {err}");
    let (code, _, _) = steward(&data, &["audit", "verify"], None);
    assert_eq!(code, 0);

    // Alter one audit row behind Steward's back: verify fails and names it.
    let db = rusqlite::Connection::open(data.join("steward.sqlite")).unwrap();
    let n = db
        .execute(
            "UPDATE audit_log SET actor = 'account:someone-else' WHERE seq = 4",
            [],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(db);
    let (code, out, err) = steward(&data, &["audit", "verify"], None);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("entry 4"), "{out}");
    let (code, out, _) = steward(&data, &["audit", "verify", "--json"], None);
    assert_eq!(code, 1);
    assert_eq!(json_of(&out)["first_broken"], 4);
}

#[test]
fn a_second_start_reuses_the_master_key_and_a_wrong_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let (code, _, err) = steward(&data, &["admin", "create-tenant", "--name", "T"], None);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("created a new master key"), "{err}");
    let (code, _, err) = steward(&data, &["admin", "create-tenant", "--name", "U"], None);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("created a new master key"), "{err}");
    // Another master key cannot open this key store.
    let other = tmp.path().join("other.key");
    let out = Command::new(BIN)
        .args(["audit", "verify", "--data-dir"])
        .arg(&data)
        .arg("--master-key-file")
        .arg(&other)
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("master key"), "{err}");
}

/// SQLite serves one process: a second `steward serve` on the same data
/// directory exits at once, naming the directory and the server that holds it,
/// and stores nothing; master key rotation refuses beside a running server;
/// once the first server is gone, a new one starts.
#[test]
fn a_second_server_on_one_sqlite_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut first = serve(&data);
    let pid = first.child.id();
    let started = std::time::Instant::now();
    let (code, _, err) = steward(
        &data,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--retention-interval",
            "0",
        ],
        None,
    );
    assert_eq!(code, 3, "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it exits at once"
    );
    assert!(err.contains(&data.display().to_string()), "{err}");
    assert!(err.contains(&format!("pid {pid}")), "{err}");
    assert!(err.contains("in use by a running steward serve"), "{err}");
    assert!(!err.contains("serving on"), "{err}");

    let (code, _, err) = steward(&data, &["keys", "rotate-master"], None);
    assert_eq!(code, 3, "{err}");
    assert!(
        err.contains("stop it before rotating the master key"),
        "{err}"
    );
    // Read-only and ordinary commands still run beside the server.
    let (code, out, err) = steward(&data, &["audit", "verify", "--json"], None);
    assert_eq!(code, 0, "{out} {err}");

    first.child.kill().unwrap();
    first.child.wait().unwrap();
    let second = serve(&data);
    let (status, _) = call(&second.base, "GET", "/healthz", None, None);
    assert_eq!(status, 200);
}

/// `requests create` without `--received` dates the request today and says so;
/// with it, the day given.
#[test]
fn a_request_recorded_without_a_day_is_received_today() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    let (code, out, err) = steward(
        &data,
        &["admin", "create-tenant", "--name", "T", "--json"],
        None,
    );
    assert_eq!(code, 0, "{err}");
    let tenant = json_of(&out)["id"].as_str().unwrap().to_owned();
    let (code, _, err) = steward(
        &data,
        &[
            "admin",
            "create-user",
            "--tenant",
            &tenant,
            "--username",
            "gwen",
            "--role",
            "subject",
            "--password-stdin",
        ],
        Some("a long password\n"),
    );
    assert_eq!(code, 0, "{err}");
    let today = || time::OffsetDateTime::now_utc().date().to_string();
    let before = today();
    let create = |extra: &[&str]| {
        let mut args = vec![
            "requests",
            "create",
            "--kind",
            "access",
            "--subject-username",
            "gwen",
            "--channel",
            "letter",
        ];
        args.extend_from_slice(extra);
        steward(&data, &args, None)
    };
    let (code, out, err) = create(&[]);
    assert_eq!(code, 0, "{err}");
    let after = today();
    // (Around midnight UTC the day may turn between the two readings.)
    let day = if out.contains(&format!("received {before} ")) {
        before
    } else {
        after
    };
    assert!(
        out.contains(&format!(
            "received {day} (today: --received not given)  due "
        )),
        "{out}"
    );
    let (_, due, _) = steward(&data, &["requests", "deadline", "--received", &day], None);
    assert!(
        out.contains(&format!("due {} (", due.trim())),
        "{out} / {due}"
    );
    // As JSON: the day, and that it was taken for want of --received.
    let (code, out, err) = create(&["--json"]);
    assert_eq!(code, 0, "{err}");
    let r = json_of(&out);
    assert_eq!(r["received_defaulted"], true, "{r}");
    assert_eq!(r["due_on"], due.trim(), "{r}");
    // A day given is taken as given, with no note.
    let (code, out, err) = create(&["--received", "2026-01-05"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("received 2026-01-05  due "), "{out}");
    assert!(!out.contains("--received not given"), "{out}");
}

/// A command missing an argument, whether clap finds it missing or the
/// command does (one of several flags, a value only some calls need), says
/// what is missing and shows one correct call; a value given but wrong does
/// not get the example.
#[test]
fn a_missing_argument_is_answered_with_an_example() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("d");
    for (args, example) in [
        // Missing to clap: required flags, a positional, a flag without its value.
        (
            &["requests", "create", "--kind", "access"][..],
            "Example: steward requests create --kind access --subject-email ",
        ),
        (
            &["requests", "verify"][..],
            "Example: steward requests verify REQUEST_ID --method ",
        ),
        (
            &["requests", "deadline", "--received"][..],
            "Example: steward requests deadline --received ",
        ),
        (
            &["admin", "create-tenant"][..],
            "Example: steward admin create-tenant --name ",
        ),
        (
            &["--json", "policy", "render"][..],
            "Example: steward policy render --out ",
        ),
        // Missing to the command itself.
        (
            &[
                "requests",
                "create",
                "--kind",
                "access",
                "--channel",
                "letter",
            ][..],
            "Example: steward requests create ",
        ),
        (
            &["ingest", "extension", "--subject-username", "gwen"][..],
            "Example: steward ingest extension --subject-username gwen --extension 1001",
        ),
        (
            &["marketing", "suppress", "--channel", "letter"][..],
            "Example: steward marketing suppress --email ",
        ),
    ] {
        let (code, _, err) = steward(&data, args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(example), "{args:?}: {err}");
        assert_eq!(err.matches("Example: ").count(), 1, "{args:?}: {err}");
    }
    // Given but wrong: the message names what is wrong, with no example.
    for args in [
        &["requests", "deadline", "--received", "2023-02-29"][..],
        &[
            "requests",
            "create",
            "--kind",
            "access",
            "--channel",
            "letter",
            "--subject-email",
            "not an email",
        ][..],
    ] {
        let (code, _, err) = steward(&data, args, None);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(!err.contains("Example: "), "{args:?}: {err}");
    }
    // The help of a command ends with its example too.
    let (code, out, _) = steward(&data, &["requests", "create", "--help"], None);
    assert_eq!(code, 0);
    assert!(
        out.contains("Example: steward requests create --kind access"),
        "{out}"
    );
}
