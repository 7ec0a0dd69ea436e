//! Crashes lose nothing (issue 14, section 3): the real binary killed with SIGKILL at
//! random moments, on SQLite and on PostgreSQL. After each kill, what was stored is
//! stored once, the audit chain verifies, and running the same command again finishes
//! the work. The moments are printed (a seed) so that a failure can be replayed with
//! `STEWARD_CRASH_SEED`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value as Json;
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef};
use steward::tenants;
use steward_store::params;

mod common;
use common::Env;

const BIN: &str = env!("CARGO_BIN_EXE_steward");

/// Rows in the file ingested: enough that a debug build takes several seconds (more
/// than one transaction) over it.
const ROWS: usize = 20_000;
const KILLS: usize = 3;

/// The binary with the environment's stores (SQLite directory, or PostgreSQL schema),
/// as an operator would run it beside the test's own handle on the same data.
fn steward(env: &Env) -> Command {
    let s = &env.settings;
    let mut cmd = Command::new(BIN);
    cmd.arg("--data-dir").arg(&s.data_dir);
    cmd.arg("--master-key-file").arg(s.master_key_path());
    if let (Some(url), Some(schema)) = (&s.database_url, &s.database_schema) {
        cmd.arg("--database-url").arg(url);
        cmd.arg("--database-schema").arg(schema);
    }
    cmd.env_remove("STEWARD_MASTER_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// A small deterministic generator (xorshift), seeded from the clock unless
/// `STEWARD_CRASH_SEED` is set.
struct Rng(u64);

impl Rng {
    fn new(test: &str) -> Rng {
        let seed = std::env::var("STEWARD_CRASH_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .subsec_nanos() as u64
                    | 1
            });
        eprintln!("{test}: STEWARD_CRASH_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// An Asterisk `Master.csv` of `rows` distinct answered calls, the `i`-th from
/// `caller(i)`.
fn write_calls(path: &Path, rows: usize, caller: impl Fn(usize) -> String) {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    for i in 0..rows {
        let start = 1_767_225_600 + i as i64 * 60;
        let (s, a, e) = (
            steward_cdr::format_utc(start),
            steward_cdr::format_utc(start + 5),
            steward_cdr::format_utc(start + 65),
        );
        writeln!(
            out,
            "\"\",\"{}\",\"+4420794{:05}\",\"from-internal\",\"\",\"SIP/100-{i:08x}\",\
             \"SIP/trunk-{i:08x}\",\"Dial\",\"SIP/trunk,30\",\"{s}\",\"{a}\",\"{e}\",65,60,\
             \"ANSWERED\",\"DOCUMENTATION\",\"{start}.{i}\",\"\"",
            caller(i),
            i % 997
        )
        .unwrap();
    }
    out.flush().unwrap();
}

/// Kills `child` with SIGKILL `after` from now, unless it ends first; whether it did.
fn kill_at(mut child: Child, after: Duration) -> bool {
    let started = Instant::now();
    while started.elapsed() < after && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(1));
    }
    let finished = child.try_wait().unwrap().is_some();
    child.kill().ok();
    child.wait().unwrap();
    finished
}

fn count(env: &Env, sql: &str, tenant: &str) -> i64 {
    env.core
        .db
        .read(|c| c.query_opt(sql, params![tenant]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

fn stored(env: &Env, tenant: &str) -> i64 {
    count(
        env,
        "SELECT COUNT(*) FROM call_records WHERE tenant_id = $1",
        tenant,
    )
}

fn audit_verifies(env: &Env) {
    let out = steward(env).args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "audit verify after a kill: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `ingest cdr` killed at random moments within the time one whole ingest of the file
/// took (a transaction commits every few seconds, so most kills land inside one); after
/// each kill the rows stored are distinct and the chain verifies; a last run completes
/// the file, and one more adds nothing.
fn ingest_survives_kills(env: &Env, test: &str) {
    let mut rng = Rng::new(test);
    let file = env.dir.path().join("Master.csv");
    write_calls(&file, ROWS, |i| format!("+4477009{:05}", i % 1000));
    let tenant_of = || {
        tenants::create(&env.core, &Actor::cli(), "PBX Ltd", None)
            .unwrap()
            .id
    };
    let ingest = |tenant: &str| {
        let mut cmd = steward(env);
        cmd.args(["ingest", "cdr", "--json", "--tenant", tenant])
            .arg(&file);
        cmd
    };
    // One whole ingest, into a tenant of its own, times the file.
    let started = Instant::now();
    let out = ingest(&tenant_of()).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let whole = started.elapsed();
    eprintln!("{test}: one ingest of {ROWS} rows takes {whole:?}");

    // Kills until at least one landed mid-ingest; a tenant whose file is complete is
    // left for a new one.
    let mut tenant = tenant_of();
    let (mut kills, mut interrupted) = (0, 0);
    while kills < KILLS || interrupted == 0 {
        assert!(
            kills < 12,
            "no kill landed mid-ingest: the test proved nothing"
        );
        let at = Duration::from_micros(rng.below(whole.as_micros() as u64 + 1));
        let finished = kill_at(ingest(&tenant).spawn().unwrap(), at);
        kills += 1;
        let now = stored(env, &tenant);
        eprintln!("{test}: kill {kills} at {at:?}: {now} stored, finished first: {finished}");
        if !finished {
            interrupted += 1;
        }
        // Stored once: as many distinct PBX leg ids as rows.
        assert_eq!(
            count(
                env,
                "SELECT COUNT(DISTINCT leg_id) FROM call_records WHERE tenant_id = $1",
                &tenant
            ),
            now,
            "a row stored twice"
        );
        assert!(now <= ROWS as i64);
        audit_verifies(env);
        if now == ROWS as i64 && (kills < KILLS || interrupted == 0) {
            tenant = tenant_of();
        }
    }

    // Running the same command again finishes the work: every row once.
    let out = ingest(&tenant).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    let before = ROWS as i64 - report["accepted"].as_i64().unwrap();
    assert_eq!(report["duplicate"].as_i64().unwrap(), before, "{report}");
    assert_eq!(stored(env, &tenant), ROWS as i64);
    let out = ingest(&tenant).output().unwrap();
    let report: Json = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (report["accepted"].as_i64(), report["duplicate"].as_i64()),
        (Some(0), Some(ROWS as i64)),
        "{report}"
    );
    assert_eq!(stored(env, &tenant), ROWS as i64);
    audit_verifies(env);
}

/// Subjects erased by `requests erase`, each killed at a random moment within the time
/// one uninterrupted erasure took. After each kill the subject is either erased
/// completely (no row of theirs, a tombstone, the request fulfilled) or still there
/// with every row and the request open, and erasing again completes it.
fn erasure_survives_kills(env: &Env, test: &str) {
    const SUBJECTS: usize = 5;
    const CALLS_EACH: usize = 1_500;
    let mut rng = Rng::new(test);
    let cli = Actor::cli();
    let tenant = tenants::create(&env.core, &cli, "PBX Ltd", None)
        .unwrap()
        .id;
    let phone = |k: usize| format!("+4477009000{k:02}");
    let subjects = callers(env, &tenant, SUBJECTS, CALLS_EACH, &phone);

    let calls_of = |subject: &str| {
        count(
            env,
            "SELECT COUNT(*) FROM call_records WHERE caller_subject_id = $1",
            subject,
        )
    };
    let erase = |request: &str| {
        steward(env)
            .args(["requests", "erase", request])
            .spawn()
            .unwrap()
    };
    let mut calibration = Duration::ZERO;
    let mut interrupted = 0;
    for (k, subject) in subjects.iter().enumerate() {
        assert_eq!(calls_of(subject), CALLS_EACH as i64);
        let request = rights::create(
            &env.core,
            &cli,
            NewRequest {
                subject: SubjectRef::Id(subject.clone()),
                kind: Kind::Erasure,
                channel: RequestChannel::Email,
                received_on: time::OffsetDateTime::now_utc().date().to_string(),
                region: None,
                details: None,
            },
        )
        .unwrap()
        .id;
        rights::verify(&env.core, &cli, &request, "passport seen").unwrap();
        let state = || {
            env.core
                .db
                .read(|c| {
                    c.query_opt(
                        "SELECT state FROM requests WHERE id = $1",
                        params![request.as_str()],
                    )
                })
                .unwrap()
                .unwrap()
                .text(0)
                .unwrap()
        };
        let open_before = state();
        let present = || count(env, "SELECT COUNT(*) FROM subjects WHERE id = $1", subject) == 1;
        let tombstones = || {
            count(
                env,
                "SELECT COUNT(*) FROM erasure_tombstones WHERE request_id = $1",
                &request,
            )
        };
        let started = Instant::now();
        let mut child = erase(&request);
        if k == 0 {
            // The first, uninterrupted, times one erasure.
            assert!(child.wait().unwrap().success());
            calibration = started.elapsed();
            eprintln!("{test}: one erasure takes {calibration:?}");
        } else {
            let at = Duration::from_micros(rng.below(calibration.as_micros() as u64 + 1));
            let finished = kill_at(child, at.saturating_sub(started.elapsed()));
            eprintln!("{test}: subject {k} killed at {at:?}, finished first: {finished}");
            if present() {
                // Untouched: every row, no tombstone, the request open; erasable again.
                interrupted += 1;
                assert_eq!(
                    calls_of(subject),
                    CALLS_EACH as i64,
                    "rows lost, subject kept"
                );
                assert_eq!(tombstones(), 0);
                assert_eq!(state(), open_before);
                audit_verifies(env);
                assert!(erase(&request).wait().unwrap().success(), "erasing again");
            } else if !finished {
                interrupted += 1;
            }
        }
        // Erased completely, once.
        assert!(!present(), "subject {k} still there");
        assert_eq!(calls_of(subject), 0, "rows of an erased subject");
        assert_eq!(tombstones(), 1);
        assert_eq!(state(), "fulfilled");
        audit_verifies(env);
    }
    assert!(
        interrupted > 0,
        "no kill landed before an erasure ended: the test proved nothing"
    );
}

/// `n` subjects, the `k`-th a user with phone `phone(k)` who made `calls_each` calls
/// (ingested by the binary); their subject ids.
fn callers(
    env: &Env,
    tenant: &str,
    n: usize,
    calls_each: usize,
    phone: &dyn Fn(usize) -> String,
) -> Vec<String> {
    let cli = Actor::cli();
    let subjects: Vec<String> = (0..n)
        .map(|k| {
            let user = NewUser {
                username: format!("caller{}", phone(k).trim_start_matches('+')),
                password: common::PASSWORD.to_owned(),
                role: Role::Subject,
                email: None,
                phone: Some(phone(k)),
                display_name: None,
            };
            accounts::create_user(&env.core, &cli, tenant, user)
                .unwrap()
                .subject_id
        })
        .collect();
    let file = env.dir.path().join(format!("calls-{}.csv", phone(0)));
    write_calls(&file, n * calls_each, |i| phone(i % n));
    let out = steward(env)
        .args(["ingest", "cdr", "--tenant", tenant])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    subjects
}

/// Subjects past retention, with `retention run` killed at random moments within the time
/// one uninterrupted run took: each subject is either erased completely (no row, a
/// tombstone) or still there with every row, and the next run erases the rest.
fn retention_survives_kills(env: &Env, test: &str) {
    const SUBJECTS: usize = 6;
    const CALLS_EACH: usize = 500;
    const SEVEN_YEARS: i64 = 7 * 366 * 86_400;
    let mut rng = Rng::new(test);
    let cli = Actor::cli();
    let tenant = tenants::create(&env.core, &cli, "PBX Ltd", None)
        .unwrap()
        .id;
    let due = |batch: usize| {
        let phone = move |k: usize| format!("+44770090{batch}{k:03}");
        let subjects = callers(env, &tenant, SUBJECTS, CALLS_EACH, &phone);
        let long_ago = time::OffsetDateTime::now_utc().unix_timestamp() - SEVEN_YEARS;
        for s in &subjects {
            env.core
                .db
                .write(|c| {
                    c.execute(
                        "UPDATE subjects SET last_engagement_at = $1 WHERE id = $2",
                        params![long_ago, s.as_str()],
                    )
                })
                .unwrap();
        }
        subjects
    };
    let run = || steward(env).args(["retention", "run"]).spawn().unwrap();
    let present = |s: &str| count(env, "SELECT COUNT(*) FROM subjects WHERE id = $1", s) == 1;
    let calls_of = |s: &str| {
        count(
            env,
            "SELECT COUNT(*) FROM call_records WHERE caller_subject_id = $1",
            s,
        )
    };
    let tombstones = || {
        count(
            env,
            "SELECT COUNT(*) FROM erasure_tombstones WHERE tenant_id = $1 AND reason = 'retention'",
            &tenant,
        )
    };
    let check = |subjects: &[String]| {
        // A start (this one's) finishes what a kill left: keys of erased subjects.
        audit_verifies(env);
        let mut erased = 0;
        for s in subjects {
            let key = env.core.keys.subject_key(s).unwrap();
            if present(s) {
                assert_eq!(calls_of(s), CALLS_EACH as i64, "a kept subject lost rows");
                assert!(key.is_some(), "a kept subject lost their key");
            } else {
                assert_eq!(calls_of(s), 0, "rows of an erased subject");
                assert!(key.is_none(), "the key of an erased subject survived");
                erased += 1;
            }
        }
        erased
    };

    // One uninterrupted run times it.
    let first = due(1);
    let started = Instant::now();
    assert!(run().wait().unwrap().success());
    let whole = started.elapsed();
    eprintln!("{test}: one retention run of {SUBJECTS} subjects takes {whole:?}");
    assert_eq!(check(&first), SUBJECTS);
    assert_eq!(tombstones(), SUBJECTS as i64);

    // Batches of due subjects, each killed until it is all erased; a kill that came
    // too late (the run had finished) moves on to a new batch, until at least one kill
    // landed mid-run.
    let mut batches = vec![first, due(2)];
    let (mut kills, mut interrupted) = (0, 0);
    while kills < KILLS || interrupted == 0 {
        assert!(
            kills < 12,
            "no kill landed before a run ended: the test proved nothing"
        );
        let batch = batches.last().unwrap().clone();
        let at = Duration::from_micros(rng.below(whole.as_micros() as u64 + 1));
        let finished = kill_at(run(), at);
        kills += 1;
        let erased = check(&batch);
        eprintln!(
            "{test}: kill {kills} at {at:?}: {erased} of {SUBJECTS} erased, finished first: {finished}"
        );
        // A tombstone for each subject erased, no more.
        let gone = batches.iter().flatten().filter(|s| !present(s)).count();
        assert_eq!(tombstones(), gone as i64);
        if !finished {
            interrupted += 1;
        }
        if erased == SUBJECTS {
            batches.push(due(batches.len() + 1));
        }
    }
    // The next run erases what is left.
    assert!(run().wait().unwrap().success());
    for batch in &batches {
        assert_eq!(check(batch), SUBJECTS);
    }
    assert_eq!(tombstones(), (batches.len() * SUBJECTS) as i64);
}

#[test]
fn retention_killed_at_random_moments_on_sqlite() {
    retention_survives_kills(&Env::sqlite(), "sqlite");
}

#[test]
fn retention_killed_at_random_moments_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    retention_survives_kills(&env, "postgres");
}

#[test]
fn erasure_killed_at_random_moments_on_sqlite() {
    erasure_survives_kills(&Env::sqlite(), "sqlite");
}

#[test]
fn erasure_killed_at_random_moments_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    erasure_survives_kills(&env, "postgres");
}

#[test]
fn ingest_killed_at_random_moments_on_sqlite() {
    ingest_survives_kills(&Env::sqlite(), "sqlite");
}

#[test]
fn ingest_killed_at_random_moments_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    ingest_survives_kills(&env, "postgres");
}

/// `steward serve` killed while four clients post batches of call records: every batch
/// answered 200 is stored, once; after a restart every batch is sent again (a PBX
/// retries what it did not see acknowledged, and may resend what it did), and each
/// record is stored exactly once.
fn api_posts_survive_a_kill(env: &Env, test: &str) {
    const CLIENTS: usize = 4;
    const BATCHES: usize = 40;
    const PER_BATCH: usize = 50;
    let mut rng = Rng::new(test);
    let t = common::seed_tenant(&env.core, "post");
    let tenant = t.tenant.id.clone();
    let serve = || {
        let mut cmd = steward(env);
        cmd.args(["serve", "--listen", "127.0.0.1:0"]);
        common::spawn_server(cmd)
    };
    let batch = |client: usize, b: usize| -> Json {
        (0..PER_BATCH)
            .map(|i| {
                let start = 1_767_225_600 + (b * PER_BATCH + i) as i64 * 60;
                serde_json::json!({
                    "leg_id": format!("api-{client}-{b}-{i}"),
                    "caller": "+447700900123", "callee": "+442079460000",
                    "start": start, "answer": start + 3, "end": start + 63,
                })
            })
            .collect()
    };
    let post_all = |base: String, token: String, acked: Arc<Mutex<Vec<(usize, usize)>>>| {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let http = reqwest::Client::new();
            let tasks: Vec<_> = (0..CLIENTS)
                .map(|c| {
                    let (http, base, token, acked) =
                        (http.clone(), base.clone(), token.clone(), acked.clone());
                    let bodies: Vec<Json> = (0..BATCHES).map(|b| batch(c, b)).collect();
                    let tenant = tenant.clone();
                    tokio::spawn(async move {
                        for (b, body) in bodies.into_iter().enumerate() {
                            let sent = http
                                .post(format!("{base}/api/v1/tenants/{tenant}/cdrs"))
                                .bearer_auth(&token)
                                .json(&body)
                                .send()
                                .await;
                            match sent {
                                Ok(r) if r.status() == 200 => acked.lock().unwrap().push((c, b)),
                                Ok(r) => panic!("batch {c}/{b}: {}", r.status()),
                                // The server went away: this batch and the rest are
                                // unacknowledged.
                                Err(_) => return,
                            }
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
    };
    let login = |base: &str| -> String {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let r: Json = reqwest::Client::new()
                .post(format!("{base}/api/v1/auth/login"))
                .json(&serde_json::json!({"username": t.admin.username, "password": common::PASSWORD}))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            r["token"].as_str().unwrap().to_owned()
        })
    };

    // One uninterrupted run times the load; its records are then deleted.
    let (mut child, base, _log) = serve();
    let token = login(&base);
    let started = Instant::now();
    post_all(
        base.clone(),
        token.clone(),
        Arc::new(Mutex::new(Vec::new())),
    );
    let whole = started.elapsed();
    child.kill().unwrap();
    child.wait().unwrap();
    let calibrated = stored(env, &tenant);
    assert_eq!(calibrated, (CLIENTS * BATCHES * PER_BATCH) as i64);
    env.core
        .db
        .write(|c| {
            c.execute(
                "DELETE FROM call_records WHERE tenant_id = $1",
                params![tenant.as_str()],
            )
        })
        .unwrap();
    eprintln!("{test}: {CLIENTS} clients posting {BATCHES} batches each take {whole:?}");

    // Killed at a random moment of the same load.
    let (child, base, _log) = serve();
    let token = login(&base);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let at = Duration::from_micros(rng.below(whole.as_micros() as u64 + 1));
    let poster = {
        let (base, token, acked) = (base.clone(), token.clone(), acked.clone());
        std::thread::scope(|scope| {
            let h = scope.spawn(|| post_all(base, token, acked));
            let finished = kill_at(child, at);
            h.join().unwrap();
            finished
        })
    };
    let acked = acked.lock().unwrap().clone();
    let now = stored(env, &tenant);
    eprintln!(
        "{test}: killed at {at:?}: {} batches acknowledged, {now} records stored, finished first: {poster}",
        acked.len()
    );
    // Every acknowledged record is there, once.
    for (c, b) in &acked {
        let n = count(
            env,
            &format!(
                "SELECT COUNT(*) FROM call_records WHERE tenant_id = $1 AND leg_id LIKE 'api-{c}-{b}-%'"
            ),
            &tenant,
        );
        assert_eq!(
            n, PER_BATCH as i64,
            "batch {c}/{b} acknowledged, {n} of it stored"
        );
    }
    assert_eq!(
        count(
            env,
            "SELECT COUNT(DISTINCT leg_id) FROM call_records WHERE tenant_id = $1",
            &tenant
        ),
        now
    );
    audit_verifies(env);

    // Restarted, everything sent again: each record once.
    let (mut child, base, _log) = serve();
    let token = login(&base);
    let all = Arc::new(Mutex::new(Vec::new()));
    post_all(base, token, all.clone());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(all.lock().unwrap().len(), CLIENTS * BATCHES);
    assert_eq!(stored(env, &tenant), (CLIENTS * BATCHES * PER_BATCH) as i64);
    audit_verifies(env);
}

#[test]
fn api_posts_killed_at_a_random_moment_on_sqlite() {
    api_posts_survive_a_kill(&Env::sqlite(), "sqlite");
}

#[test]
fn api_posts_killed_at_a_random_moment_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    api_posts_survive_a_kill(&env, "postgres");
}

/// The state a kill between an erasure's commit and its key's destruction leaves (the
/// subject's rows gone, the key queued in `shred_outbox`): the next start destroys the key.
#[test]
fn a_key_left_queued_by_a_crash_is_destroyed_at_the_next_start() {
    let env = Env::sqlite();
    let t = common::seed_tenant(&env.core, "ko");
    let subject = t.subject.subject_id.clone();
    assert!(env.core.keys.subject_key(&subject).unwrap().is_some());
    env.core
        .db
        .write(|c| {
            c.execute(
                "INSERT INTO shred_outbox (subject_id, queued_at) VALUES ($1, 0)",
                params![subject.as_str()],
            )
        })
        .unwrap();
    let restarted = env.reopen();
    assert!(restarted.keys.subject_key(&subject).unwrap().is_none());
    let left = restarted
        .db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM shred_outbox", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(left, 0);
}
