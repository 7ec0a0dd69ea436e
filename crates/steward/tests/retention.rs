//! Retention on both databases: subjects whose last engagement is older than the
//! policy's 6 years are erased whole, newer ones kept, held and archive-exempt ones
//! kept; rows of a collection-counted category age one by one; archive-exempt
//! categories stay; the dry run lists exactly what the real run erases; reports
//! carry no personal data; the scheduler and the command line do the same.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use common::{Env, PASSWORD, new_user, provider_staff, seed_tenant};
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::clock::now;
use steward::config::Settings;
use steward::consent::{self, Action, Channel, Record};
use steward::registry::PERSONAL_STORES;
use steward::retention::{self, HoldKind, ItemAction, RetentionPlan, RetentionReport};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase};
use steward::{Error, Steward, audit, subjects};
use steward_crypto::IdentifierKind;
use steward_store::params;

const DAY: i64 = 86_400;
/// Longer than any 6 calendar years (at most 2192 days).
const OVER_SIX_YEARS: i64 = 6 * 366 * DAY;
const FIVE_YEARS: i64 = 5 * 365 * DAY;

/// A person with identifiers that must never appear in a report.
struct Person {
    username: String,
    email: String,
    name: String,
    phone: &'static str,
    ip: &'static str,
    subject: String,
}

impl Person {
    fn identifiers(&self) -> Vec<&str> {
        vec![
            &self.username,
            &self.email,
            &self.name,
            self.phone,
            "7700900",
            self.ip,
        ]
    }
}

/// A user with an account, a session (login IP) and consent events.
fn person(
    core: &Steward,
    tenant: &str,
    tag: &str,
    phone: &'static str,
    ip: &'static str,
) -> Person {
    let username = format!("ret-{tag}");
    let email = format!("{tag}.wetherall@retention-probe.test");
    let name = format!("Ottoline {tag} Wetherall");
    let acc = accounts::create_user(
        core,
        &Actor::cli(),
        tenant,
        NewUser {
            email: Some(email.clone()),
            display_name: Some(name.clone()),
            phone: Some(phone.into()),
            ..new_user(&username, Role::Subject)
        },
    )
    .unwrap();
    let session = accounts::login(core, &username, PASSWORD, Some(ip)).unwrap();
    let me = accounts::authenticate(core, &session.token).unwrap();
    for action in [Action::Grant, Action::Withdraw] {
        consent::record(
            core,
            &me,
            Record {
                subject_id: acc.subject_id.clone(),
                category: "credit_checks".into(),
                purpose: "credit_check".into(),
                action,
                channel: Channel::App,
                evidence: Some(format!("{name} agreed in the app")),
            },
        )
        .unwrap();
    }
    Person {
        username,
        email,
        name,
        phone,
        ip,
        subject: acc.subject_id,
    }
}

fn set_last_engagement(core: &Steward, subject: &str, at: i64) {
    let n = core
        .db
        .write(|c| {
            c.execute(
                "UPDATE subjects SET last_engagement_at = $1 WHERE id = $2",
                params![at, subject],
            )
        })
        .unwrap();
    assert_eq!(n, 1);
}

/// Rows about `subject` per table store, counted directly in the database.
fn counts(core: &Steward, subject: &str) -> BTreeMap<String, u64> {
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
            (s.name.to_owned(), n as u64)
        })
        .collect()
}

/// The planned or erased rows of one subject, per store.
fn rows_of(items: &[retention::PlanItem], subject: &str) -> BTreeMap<String, u64> {
    items
        .iter()
        .filter(|i| i.subject_id == subject)
        .map(|i| (i.store.clone(), i.rows))
        .collect()
}

fn assert_no_identifiers(what: &str, text: &str, people: &[&Person]) {
    for p in people {
        for needle in p.identifiers() {
            assert!(
                !text.to_lowercase().contains(&needle.to_lowercase()),
                "{what} contains {needle:?}: {text}"
            );
        }
    }
}

fn json_of(plan: &RetentionPlan, report: &RetentionReport) -> String {
    format!(
        "{}\n{}",
        serde_json::to_string(plan).unwrap(),
        serde_json::to_string(report).unwrap()
    )
}

/// The acceptance scenario under the default policy (6 years from the last engagement).
fn scenario(env: &Env) {
    let core = &env.core;
    let t = seed_tenant(core, "ret");
    let dpo = accounts::actor_for(&provider_staff(core, "ret-staff-dpo", Role::Dpo));
    let staff_operator = accounts::actor_for(&provider_staff(core, "ret-staff-op", Role::Operator));
    let old = person(core, &t.tenant.id, "old", "07700 900111", "203.0.113.11");
    let new = person(core, &t.tenant.id, "new", "07700 900222", "203.0.113.22");
    let held = person(core, &t.tenant.id, "held", "07700 900333", "203.0.113.33");
    let exempt = person(core, &t.tenant.id, "exempt", "07700 900444", "203.0.113.44");
    // A request about the old subject: its record outlives the erasure, pseudonymised.
    let req = rights::create(
        core,
        &dpo,
        NewRequest {
            subject: SubjectRef::Id(old.subject.clone()),
            kind: Kind::Access,
            channel: RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: Some(format!("{} wants a copy", old.name)),
        },
    )
    .unwrap();

    // Holds: provider DPO (or the CLI) only, audited.
    for who in [
        &accounts::actor_for(&t.dpo),
        &accounts::actor_for(&t.admin),
        &staff_operator,
    ] {
        assert!(matches!(
            retention::set_hold(core, who, &held.subject, HoldKind::Legal, true),
            Err(Error::Forbidden(_))
        ));
    }
    let h = retention::set_hold(core, &dpo, &held.subject, HoldKind::Legal, true).unwrap();
    assert!(h.legal_hold && !h.archive_exempt && h.changed);
    assert!(
        !retention::set_hold(core, &dpo, &held.subject, HoldKind::Legal, true)
            .unwrap()
            .changed
    );
    let e = retention::set_hold(
        core,
        &Actor::cli(),
        &exempt.subject,
        HoldKind::Archive,
        true,
    )
    .unwrap();
    assert!(e.archive_exempt && !e.legal_hold);
    let listed: Vec<String> = retention::holds(core, &dpo)
        .unwrap()
        .into_iter()
        .map(|h| h.subject_id)
        .collect();
    let mut expect = vec![held.subject.clone(), exempt.subject.clone()];
    expect.sort();
    assert_eq!(listed, expect);
    assert!(retention::holds(core, &staff_operator).is_err());
    let entries = audit::for_subject(&core.db, &held.subject).unwrap();
    assert!(entries.iter().any(|e| e.action == "retention.hold"
        && e.detail["hold"] == "legal"
        && e.actor_role == "dpo"));

    // Move the clocks: three subjects last engaged over 6 years ago, one 5 years ago.
    let now = now();
    for p in [&old, &held, &exempt] {
        set_last_engagement(core, &p.subject, now - OVER_SIX_YEARS);
    }
    set_last_engagement(core, &new.subject, now - FIVE_YEARS);
    let before: BTreeMap<String, BTreeMap<String, u64>> = [&old, &new, &held, &exempt]
        .iter()
        .map(|p| (p.subject.clone(), counts(core, &p.subject)))
        .collect();
    for store in [
        "subjects",
        "accounts",
        "sessions",
        "consent_events",
        "requests",
    ] {
        assert!(before[&old.subject][store] > 0, "{store}: {before:?}");
    }

    // The dry run lists the old subject, every store, whole; nothing else.
    let plan = retention::plan(core, now).unwrap();
    let total = core
        .db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM subjects", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(plan.counts.subjects_checked, total as u64);
    assert_eq!(plan.counts.subjects_erased, 1);
    assert_eq!(plan.counts.subjects_trimmed, 0);
    assert_eq!(plan.counts.kept_legal_hold, 1);
    assert_eq!(plan.counts.kept_archive_exempt, 1);
    assert_eq!(plan.counts.identity_kept, 0);
    assert!(
        plan.items
            .iter()
            .all(|i| i.subject_id == old.subject && i.whole_subject)
    );
    assert_eq!(rows_of(&plan.items, &old.subject), {
        let mut m = before[&old.subject].clone();
        m.retain(|_, n| *n > 0);
        m
    });
    assert!(
        plan.items
            .iter()
            .any(|i| i.store == "requests" && i.action == ItemAction::Pseudonymise)
    );
    // Planning changed nothing.
    assert_eq!(counts(core, &old.subject), before[&old.subject]);

    // The real run erases exactly that.
    let report = retention::run(core, now).unwrap();
    assert_eq!(report.items, plan.items);
    assert_eq!(report.counts, plan.counts);
    assert_eq!(report.changed, 0);
    assert!(report.failed.is_empty() && !report.interrupted);
    let after = counts(core, &old.subject);
    assert!(after.values().all(|n| *n == 0), "left behind: {after:?}");
    assert!(core.keys.subject_key(&old.subject).unwrap().is_none());
    // The tombstone says why; the request record stays without the subject.
    let (tomb, _) = erase::tombstone_for(core, IdentifierKind::Email, &old.email)
        .unwrap()
        .expect("a tombstone for the erased subject");
    let reason = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT reason, request_id FROM erasure_tombstones WHERE id = $1",
                params![tomb.as_str()],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(reason.text(0).unwrap(), "retention");
    assert_eq!(reason.opt_text(1).unwrap(), None);
    let r = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT subject_id, details_enc, tombstone_id FROM requests WHERE id = $1",
                params![req.id.as_str()],
            )
        })
        .unwrap()
        .unwrap();
    assert_eq!(r.opt_text(0).unwrap(), None);
    assert_eq!(r.opt_bytes(1).unwrap(), None);
    assert_eq!(r.opt_text(2).unwrap(), Some(tomb.clone()));
    let erased = audit::for_subject(&core.db, &old.subject).unwrap();
    let erase_entry = erased.iter().find(|e| e.action == "erase").unwrap();
    assert_eq!(erase_entry.actor, "system:retention");
    assert_eq!(erase_entry.detail["reason"], "retention");

    // The newer, held and exempt subjects are all there and readable.
    for p in [&new, &held, &exempt] {
        assert_eq!(
            counts(core, &p.subject),
            before[&p.subject],
            "{}",
            p.username
        );
        let s = subjects::read(core, &Actor::cli(), &p.subject, "administration").unwrap();
        assert_eq!(s.email.as_deref(), Some(p.email.as_str()));
    }

    // One retention.run entry with the counts; the chain verifies; nothing personal
    // in the plan, the report or the audit log.
    let run_entry = audit::list(&core.db, 0, 10_000, None)
        .unwrap()
        .into_iter()
        .find(|e| e.action == "retention.run")
        .unwrap();
    assert_eq!(Some(run_entry.seq), report.audit_seq);
    assert_eq!(run_entry.actor, "system:retention");
    assert_eq!(run_entry.detail["subjects_erased"], 1);
    assert_eq!(run_entry.detail["kept_legal_hold"], 1);
    assert_eq!(run_entry.detail["rows"]["contact_details"], 1);
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
    let people = [&old, &new, &held, &exempt];
    assert_no_identifiers("plan and report", &json_of(&plan, &report), &people);
    let log = serde_json::to_string(&audit::list(&core.db, 0, 10_000, None).unwrap()).unwrap();
    assert_no_identifiers("audit log", &log, &people);

    // A second run finds nothing more to erase.
    let again = retention::run(core, now).unwrap();
    assert!(again.items.is_empty(), "{:?}", again.items);
    assert_eq!(again.counts.subjects_erased, 0);
    assert!(again.counts.rows.is_empty());
    assert_eq!(again.counts.kept_legal_hold, 1);
    assert_eq!(again.counts.kept_archive_exempt, 1);

    // Released, the hold no longer protects: the next run erases the subject.
    let r = retention::set_hold(core, &dpo, &held.subject, HoldKind::Legal, false).unwrap();
    assert!(r.changed && !r.legal_hold);
    assert!(
        audit::for_subject(&core.db, &held.subject)
            .unwrap()
            .iter()
            .any(|e| e.action == "retention.release")
    );
    let plan = retention::plan(core, now).unwrap();
    assert_eq!(plan.counts.kept_legal_hold, 0);
    assert_eq!(plan.counts.subjects_erased, 1);
    assert!(plan.items.iter().all(|i| i.subject_id == held.subject));
    let report = retention::run(core, now).unwrap();
    assert_eq!(report.items, plan.items);
    assert!(counts(core, &held.subject).values().all(|n| *n == 0));
    assert!(core.keys.subject_key(&held.subject).unwrap().is_none());
    // The new subject goes once its own 6 years have run out, and not a day before.
    let new_expiry = core
        .policy
        .retention_for("contact_details")
        .expires_at(now - FIVE_YEARS);
    assert!(
        retention::plan(core, new_expiry - 1)
            .unwrap()
            .items
            .iter()
            .all(|i| i.subject_id != new.subject)
    );
    let later = retention::plan(core, new_expiry).unwrap();
    assert!(later.items.iter().any(|i| i.subject_id == new.subject));
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
}

#[test]
fn retention_on_sqlite() {
    let env = Env::sqlite();
    scenario(&env);
    // Nothing of the erased subjects is left in clear in the data directory.
    for needle in [
        "old.wetherall@retention-probe.test",
        "Ottoline old Wetherall",
        "ret-old",
        "203.0.113.11",
        "held.wetherall",
    ] {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} in {hits:?}");
    }
}

#[test]
fn retention_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    scenario(&env);
}

/// The default policy with app credentials kept 30 days from collection (so
/// sessions age row by row) and consent records exempt for archiving.
fn variant_policy(dir: &Path) -> std::path::PathBuf {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../policy/default.toml"
    ))
    .unwrap();
    let text = text
        .replacen(
            "[categories.account_credentials]\n",
            "[categories.account_credentials]\nretention = \"30 days\"\nretention_starts = \"collection\"\n",
            1,
        )
        .replacen(
            "[categories.consent_records]\n",
            "[categories.consent_records]\narchive_exempt = true\n",
            1,
        );
    assert!(text.contains("retention = \"30 days\""));
    let path = dir.join("variant.toml");
    std::fs::write(&path, text).unwrap();
    path
}

fn rows_scenario(env: &Env) {
    let settings = Settings {
        policy_file: Some(variant_policy(env.dir.path())),
        ..env.settings.clone()
    };
    let (core, _) = Steward::open(settings).unwrap();
    let cat = core.policy.category("account_credentials").unwrap();
    assert_eq!(
        cat.retention_starts,
        steward_policy::RetentionStart::Collection
    );
    let t = seed_tenant(&core, "rows");

    // A current user with three sessions, two of them 40 days old.
    let user = person(&core, &t.tenant.id, "rows", "07700 900555", "203.0.113.55");
    for _ in 0..2 {
        accounts::login(&core, &user.username, PASSWORD, Some(user.ip)).unwrap();
    }
    let now = now();
    let n = core
        .db
        .write(|c| {
            c.execute(
                "UPDATE sessions SET created_at = $1 WHERE token_hash IN \
                 (SELECT token_hash FROM sessions WHERE subject_id = $2 ORDER BY token_hash LIMIT 2)",
                params![now - 40 * DAY, user.subject.as_str()],
            )
        })
        .unwrap();
    assert_eq!(n, 2);
    // A user last seen 7 years ago, who never logged in: their consent records are
    // archive-exempt, so the identity stays for them; the account goes.
    let acc = accounts::create_user(
        &core,
        &Actor::cli(),
        &t.tenant.id,
        NewUser {
            email: Some("archived.wetherall@retention-probe.test".into()),
            ..new_user("ret-archived", Role::Subject)
        },
    )
    .unwrap();
    let archived = acc.subject_id.clone();
    consent::record(
        &core,
        &Actor::cli(),
        Record {
            subject_id: archived.clone(),
            category: "credit_checks".into(),
            purpose: "credit_check".into(),
            action: Action::Grant,
            channel: Channel::Letter,
            evidence: None,
        },
    )
    .unwrap();
    set_last_engagement(&core, &archived, now - 7 * 366 * DAY);

    let plan = retention::plan(&core, now).unwrap();
    assert_eq!(plan.exempt_categories, vec!["consent_records".to_owned()]);
    assert_eq!(plan.counts.subjects_erased, 0);
    assert_eq!(plan.counts.subjects_trimmed, 2);
    assert_eq!(plan.counts.identity_kept, 1);
    assert_eq!(
        rows_of(&plan.items, &user.subject),
        BTreeMap::from([("sessions".to_owned(), 2)])
    );
    assert_eq!(
        rows_of(&plan.items, &archived),
        BTreeMap::from([("accounts".to_owned(), 1)])
    );
    assert!(plan.items.iter().all(|i| !i.whole_subject));
    assert_eq!(
        plan.counts.rows,
        BTreeMap::from([("account_credentials".to_owned(), 3)])
    );

    let report = retention::run(&core, now).unwrap();
    assert_eq!(report.items, plan.items);
    assert_eq!(report.counts, plan.counts);
    let left = counts(&core, &user.subject);
    assert_eq!(left["sessions"], 1);
    assert_eq!(left["accounts"], 1);
    assert_eq!(left["subjects"], 1);
    let left = counts(&core, &archived);
    assert_eq!(left["accounts"], 0);
    assert_eq!(left["subjects"], 1);
    assert_eq!(left["consent_events"], 1);
    // Kept subjects keep their keys; the change is audited per subject.
    assert!(core.keys.subject_key(&user.subject).unwrap().is_some());
    assert!(core.keys.subject_key(&archived).unwrap().is_some());
    let entries = audit::for_subject(&core.db, &user.subject).unwrap();
    let e = entries
        .iter()
        .find(|e| e.action == "retention.erase_rows")
        .unwrap();
    assert_eq!(e.detail["deleted"]["sessions"], 2);
    assert_eq!(e.category.as_deref(), Some("account_credentials"));
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
    assert_no_identifiers("plan and report", &json_of(&plan, &report), &[&user]);

    // Nothing more now. 30 days on, the last session has aged out, and so has the
    // account (a store without a time column counts from the last engagement).
    let again = retention::run(&core, now).unwrap();
    assert!(again.items.is_empty(), "{:?}", again.items);
    assert_eq!(again.counts.identity_kept, 1);
    let later = retention::plan(&core, now + 31 * DAY).unwrap();
    assert_eq!(
        rows_of(&later.items, &user.subject),
        BTreeMap::from([("accounts".to_owned(), 1), ("sessions".to_owned(), 1)])
    );
}

#[test]
fn rows_age_one_by_one_on_sqlite() {
    rows_scenario(&Env::sqlite());
}

#[test]
fn rows_age_one_by_one_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    rows_scenario(&env);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_runs_inside_the_server() {
    // Domain code is synchronous: run it on the blocking pool, as the server does.
    let (env, old) = tokio::task::spawn_blocking(|| {
        let env = Env::sqlite();
        let t = seed_tenant(&env.core, "sched");
        let p = person(
            &env.core,
            &t.tenant.id,
            "sched",
            "07700 900666",
            "203.0.113.66",
        );
        set_last_engagement(&env.core, &p.subject, now() - OVER_SIX_YEARS);
        (env, p.subject)
    })
    .await
    .unwrap();
    let core = env.core.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let task = retention::spawn_scheduler(core.clone(), Duration::from_secs(1), stop.clone());
    // Wait for the run's closing audit entry (written after its erasures).
    let mut run = None;
    for _ in 0..40 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let c = core.clone();
        run = tokio::task::spawn_blocking(move || {
            audit::list(&c.db, 0, 10_000, None)
                .unwrap()
                .into_iter()
                .find(|e| e.action == "retention.run")
        })
        .await
        .unwrap();
        if run.is_some() {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    task.abort();
    let run = run.expect("the scheduler did not run within 10 seconds");
    assert_eq!(run.detail["trigger"], "scheduler");
    assert_eq!(run.actor, "system:retention");
    assert_eq!(run.detail["subjects_erased"], 1);
    let c = core.clone();
    let gone = tokio::task::spawn_blocking(move || c.keys.subject_key(&old).unwrap().is_none())
        .await
        .unwrap();
    assert!(gone, "the scheduled run did not erase the expired subject");
}

fn steward(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_steward"))
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn retention_from_the_command_line() {
    let env = Env::sqlite();
    let core = &env.core;
    let t = seed_tenant(core, "cli");
    let old = person(core, &t.tenant.id, "cliold", "07700 900777", "203.0.113.77");
    let held = person(
        core,
        &t.tenant.id,
        "clihold",
        "07700 900888",
        "203.0.113.88",
    );
    let now = now();
    set_last_engagement(core, &old.subject, now - OVER_SIX_YEARS);
    set_last_engagement(core, &held.subject, now - OVER_SIX_YEARS);
    let data = env.data_dir();

    // Holds by identifier, as the DPO would place them.
    let (code, out, err) = steward(
        data,
        &[
            "retention",
            "hold",
            "--subject-email",
            &held.email,
            "--kind",
            "legal",
            "--json",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let h: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(h["subject_id"], held.subject.as_str());
    assert_eq!(h["legal_hold"], true);
    let (code, out, _) = steward(data, &["retention", "holds", "--json"]);
    assert_eq!(code, 0);
    let holds: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(holds["holds"][0]["subject_id"], held.subject.as_str());
    let (code, _, err) = steward(
        data,
        &[
            "retention",
            "hold",
            "--subject",
            &held.subject,
            "--kind",
            "forever",
        ],
    );
    assert_eq!(code, 2, "{err}");

    // The dry run lists; the real run erases exactly that.
    let (code, out, err) = steward(data, &["retention", "run", "--dry-run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let dry: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["subjects_erased"], 1);
    assert_eq!(dry["kept_legal_hold"], 1);
    assert!(
        dry["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["subject_id"] == old.subject.as_str())
    );
    assert!(core.keys.subject_key(&old.subject).unwrap().is_some());
    let (code, text, _) = steward(data, &["retention", "run", "--dry-run"]);
    assert_eq!(code, 0);
    assert!(
        text.contains(&old.subject) && text.contains("whole subject"),
        "{text}"
    );
    assert_no_identifiers("dry-run output", &format!("{out}{text}"), &[&old, &held]);

    // A future day is for dry runs only.
    let (code, _, err) = steward(data, &["retention", "run", "--as-of", "2999-01-01"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("as-of"), "{err}");
    let (code, out, _) = steward(
        data,
        &[
            "retention",
            "run",
            "--dry-run",
            "--as-of",
            "2999-01-01",
            "--json",
        ],
    );
    assert_eq!(code, 0);
    let future: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(future["subjects_erased"].as_u64().unwrap() > 1);

    let (code, out, err) = steward(data, &["retention", "run", "--json"]);
    assert_eq!(code, 0, "{err}");
    let real: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(real["dry_run"], false);
    assert_eq!(real["items"], dry["items"]);
    assert_eq!(real["rows"], dry["rows"]);
    assert!(real["audit_seq"].as_i64().is_some());
    assert_no_identifiers("run output", &out, &[&old, &held]);
    assert!(core.keys.subject_key(&old.subject).unwrap().is_none());
    assert!(counts(core, &old.subject).values().all(|n| *n == 0));
    assert_eq!(counts(core, &held.subject)["subjects"], 1);
    let entries = audit::list(&core.db, 0, 10_000, None).unwrap();
    let run = entries
        .iter()
        .find(|e| e.action == "retention.run")
        .unwrap();
    assert!(run.detail["trigger"].as_str().unwrap().starts_with("cli:"));

    // Released by the command line, the held subject goes on the next run.
    let (code, _, err) = steward(
        data,
        &[
            "retention",
            "release",
            "--subject",
            &held.subject,
            "--kind",
            "legal",
        ],
    );
    assert_eq!(code, 0, "{err}");
    let (code, text, _) = steward(data, &["retention", "run"]);
    assert_eq!(code, 0);
    assert!(text.contains("1 erased whole"), "{text}");
    assert!(core.keys.subject_key(&held.subject).unwrap().is_none());
    let (code, out, _) = steward(data, &["audit", "verify", "--json"]);
    assert_eq!(code, 0, "{out}");

    // A bad scheduler interval stops `serve` before it listens.
    let (code, _, err) = steward(
        data,
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--retention-interval",
            "soon",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("retention-interval"), "{err}");
}
