//! The OpenAPI document is the exact contract: Schemathesis (from PyPI) runs
//! against a real server on loopback with seeded data, authenticated as each role
//! in turn (and anonymously), all checks on, stateful phase included, and must
//! find nothing: no undocumented status, no valid request refused, no response
//! outside its schema, no link to a resource that is not there.
//!
//! Schemathesis is found through `STEWARD_SCHEMATHESIS` (the path of its `st`
//! command; `.ci/run` installs it into a virtual environment and sets this) or
//! as `st` on the PATH. Without it the test prints a notice and skips, except
//! under `CI=true`, where it fails.
//!
//! Knobs for a developer chasing a finding: `STEWARD_CONTRACT_ROLES` (a comma
//! separated subset of `anonymous,subject,tenant-admin,operator,dpo`),
//! `STEWARD_CONTRACT_EXAMPLES` (examples per operation, default 25) and
//! `STEWARD_CONTRACT_SEED` (default 1). Each role's full report is written to
//! `target/contract/<role>.txt`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
#[path = "common/demo.rs"]
mod demo;

use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;

use common::{Env, Server};

/// The roles in the order they run: the least powerful first, because a staff
/// run may erase or disable what the seeded users need to log in.
const ROLES: [(&str, Option<&str>); 5] = [
    ("anonymous", None),
    ("subject", Some("gwen.parry")),
    ("tenant-admin", Some("nw.admin")),
    ("operator", Some("oliver.ops")),
    ("dpo", Some("dana.dpo")),
];

/// Contract breaks known and not yet fixed (issue 14, listed in
/// docs/SECURITY.md): (operation, Schemathesis check). The test fails on any
/// other; fixing one means deleting its line. This list only shrinks.
const KNOWN: &[(&str, &str)] = &[];

/// The longest one Schemathesis run may take before the test gives up on it
/// (a hang is a failure). Runs are bounded by the number of examples, not by
/// time (`--max-time` would repeat the fuzzing phase until it is spent).
const RUN_LIMIT: Duration = Duration::from_secs(240);

fn schemathesis() -> Option<PathBuf> {
    let found = std::env::var_os("STEWARD_SCHEMATHESIS")
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|p| p.join("st"))
                    .find(|p| p.is_file())
            })
        })
        .filter(|p| {
            Command::new(p)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    if found.is_none() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "CI=true and Schemathesis is not installed (pip install schemathesis==4.32.5, \
                 then set STEWARD_SCHEMATHESIS to its `st`)"
            );
        }
        eprintln!(
            "contract: Schemathesis not found (STEWARD_SCHEMATHESIS or `st` on PATH); skipping"
        );
    }
    found
}

fn knob(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

/// The seeded data the generated requests meet: the demo's two employers, staff,
/// users, consents, calls and requests at every stage, plus a conversation with
/// messages, a photo, a call with recordings and a directory entry.
async fn seeded(env: &Env, d: &demo::Demo) -> Server {
    let server = Server::start(env.core.clone()).await;
    let gwen = server.login("gwen.parry").await;
    let (status, conv) = server
        .call(
            "POST",
            "/api/v1/chat/conversations",
            Some(&gwen),
            Some(json!({"kind": "direct", "members": [d.users[0].subject_id]})),
        )
        .await;
    assert!(
        status == 200 || status == 201,
        "conversation: {status} {conv}"
    );
    let conv = conv["id"].as_str().unwrap().to_owned();
    for body in ["Morning Tom", "Are we on for 10?"] {
        let (status, msg) = server
            .call(
                "POST",
                &format!("/api/v1/chat/conversations/{conv}/messages"),
                Some(&gwen),
                Some(json!({"body": body})),
            )
            .await;
        assert!(status == 200 || status == 201, "message: {status} {msg}");
    }
    let (core, gwen_account) = (env.core.clone(), d.gwen.clone());
    tokio::task::spawn_blocking(move || {
        common::seed_attachment(&core, &gwen_account, &conv, "plan.jpg")
    })
    .await
    .unwrap();
    let admin = server.login("nw.admin").await;
    let (status, entry) = server
        .call(
            "POST",
            &format!("/api/v1/tenants/{}/directory", d.northwind.id),
            Some(&admin),
            Some(json!({"display_name": "Reception", "phones": [{"value": "+44 20 7946 0000"}]})),
        )
        .await;
    assert!(
        status == 200 || status == 201,
        "directory entry: {status} {entry}"
    );
    server
}

#[test]
#[ignore = "issue 14: contract breaks remain (docs/SECURITY.md); run with --ignored"]
fn schemathesis_finds_nothing_for_any_role() {
    let Some(st) = schemathesis() else { return };
    // The synchronous seeding first, then the server and the runs on a runtime.
    let env = Env::sqlite();
    let d = demo::seed(&env);
    common::seed_media(&env.core, &d.gwen, "holiday.jpg");
    common::seed_recordings(&env.core, &d.northwind.id, "contract", 1);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
        .block_on(run(&st, &env, &d));
}

async fn run(st: &std::path::Path, env: &Env, d: &demo::Demo) {
    let server = seeded(env, d).await;
    let chosen = knob(
        "STEWARD_CONTRACT_ROLES",
        "anonymous,subject,tenant-admin,operator,dpo",
    );
    let examples = knob("STEWARD_CONTRACT_EXAMPLES", "25");
    let seed = knob("STEWARD_CONTRACT_SEED", "1");
    let reports = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("contract");
    std::fs::create_dir_all(&reports).unwrap();
    let schema = server.url("/api/v1/openapi.json");
    let config = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/schemathesis.toml");

    let mut failed = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (role, username) in ROLES {
        if !chosen.split(',').any(|c| c.trim() == role) {
            continue;
        }
        let token = match username {
            Some(u) => Some(server.login(u).await),
            None => None,
        };
        // Logging out ends the token every other request carries, so logout has
        // a run of its own, after the rest: every route is exercised.
        for (pass, filter) in [
            ("all", ["--exclude-path", "/api/v1/auth/logout"]),
            ("logout", ["--include-path", "/api/v1/auth/logout"]),
        ] {
            let mut cmd = tokio::process::Command::new(st);
            cmd.arg("--config-file")
                .arg(&config)
                .arg("run")
                .arg(&schema)
                .args(["--checks", "all"])
                .args(["--max-examples", &examples, "--seed", &seed])
                .args(["--request-timeout", "30"])
                .args(filter)
                .current_dir(&reports)
                .kill_on_drop(true);
            if let Some(t) = &token {
                cmd.args(["-H", &format!("Authorization: Bearer {t}")]);
            }
            let began = Instant::now();
            let out = tokio::time::timeout(RUN_LIMIT, cmd.output())
                .await
                .unwrap_or_else(|_| panic!("{role}/{pass}: Schemathesis ran past its budget"))
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            let file = reports.join(format!("{role}-{pass}.txt"));
            std::fs::write(&file, &text).unwrap();
            eprintln!(
                "contract: {role}/{pass}: exit {:?} in {:.0?} ({})",
                out.status.code(),
                began.elapsed(),
                file.display()
            );
            let found = findings(&text);
            let new: Vec<_> = found
                .iter()
                .filter(|f| !KNOWN.contains(&(f.0.as_str(), f.1.as_str())))
                .collect();
            if !new.is_empty() || (found.is_empty() && !out.status.success()) {
                failed.push(format!("{role}/{pass}: {new:?}\n{}", summary(&text)));
            }
            seen.extend(found);
        }
    }
    let fixed: Vec<_> = KNOWN
        .iter()
        .filter(|k| !seen.iter().any(|f| (f.0.as_str(), f.1.as_str()) == **k))
        .collect();
    if !fixed.is_empty() {
        eprintln!(
            "contract: known breaks not met in this run (fixed? remove them from KNOWN): {fixed:?}"
        );
    }
    server.stop().await;
    assert!(
        failed.is_empty(),
        "Schemathesis found contract breaks (full reports in {}):\n{}",
        reports.display(),
        failed.join("\n")
    );
}

/// What a report found: (operation, check code) pairs, `error` for an operation
/// Schemathesis could not test at all. Stateful failures count under
/// `Stateful tests`.
fn findings(report: &str) -> std::collections::BTreeSet<(String, String)> {
    let mut out = std::collections::BTreeSet::new();
    let mut current: Option<String> = None;
    let mut checks = 0;
    let close = |op: &Option<String>, checks: usize, out: &mut std::collections::BTreeSet<_>| {
        if let Some(op) = op
            && checks == 0
        {
            out.insert((op.clone(), "error".to_owned()));
        }
    };
    for line in report.lines() {
        let t = line.trim();
        if let Some(op) = t
            .strip_prefix('_')
            .and_then(|r| r.strip_suffix('_'))
            .map(|r| r.trim_matches('_').trim())
            .filter(|r| !r.is_empty() && t.starts_with("___"))
        {
            close(&current, checks, &mut out);
            current = Some(op.to_owned());
            checks = 0;
        } else if t.starts_with("====") {
            close(&current, checks, &mut out);
            current = None;
        } else if let (Some(op), Some(rest)) = (&current, t.strip_prefix("- ST")) {
            let code: String = rest.chars().take_while(char::is_ascii_digit).collect();
            out.insert((op.clone(), format!("ST{code}")));
            checks += 1;
        }
    }
    close(&current, checks, &mut out);
    out
}

/// The failure headings of a Schemathesis report, one per line, and its closing
/// summary.
fn summary(report: &str) -> String {
    let mut lines: Vec<&str> = report
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            t.starts_with("_") && t.ends_with("_") && t.len() > 6
                || t.starts_with("- ")
                || t.starts_with("[")
        })
        .collect();
    lines.extend(
        report
            .lines()
            .rev()
            .take(6)
            .collect::<Vec<_>>()
            .into_iter()
            .rev(),
    );
    lines.join("\n")
}
