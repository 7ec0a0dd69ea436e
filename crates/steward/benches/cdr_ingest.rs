//! Call record ingest against the raw insert ceiling of the same database, in the
//! same run: `cargo bench -p steward --bench cdr_ingest`.
//!
//! 1. Writes an Asterisk `cdr_csv` file of `STEWARD_BENCH_ROWS` rows (default
//!    1,000,000): calls between `STEWARD_BENCH_USERS` users of one tenant (default
//!    200, DIDs 01632 960xxx, extensions in the channel names) and
//!    `STEWARD_BENCH_EXTERNALS` outside numbers (default 20,000, skewed so that some
//!    call often), 45% outbound, 45% inbound, 10% internal, 70% answered.
//! 2. **Ceiling**: a fresh database with the same migrations (same `call_records`
//!    table and indexes) filled with plain pre-built values of the same shape through
//!    `Conn::copy_in` in one transaction: one prepared statement on SQLite, binary
//!    COPY on PostgreSQL.
//! 3. **Ingest**: a fresh database with the tenant's users; `ingest_files` on the
//!    file, everything included: reading, parsing, normalising numbers, linking and
//!    creating subjects (and their keys), sealing, ids, de-duplication, audit.
//! 4. **Re-ingest**: the same file again (every row a duplicate).
//!
//! SQLite always; PostgreSQL at `STEWARD_BENCH_DATABASE_URL` (else
//! `STEWARD_TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/test) when
//! reachable (`STEWARD_BENCH_BACKENDS=sqlite` or `=postgres` runs one). Results: printed, and written to `bench-results/cdr_ingest.json` at the
//! workspace root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::fmt::Write as _;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Value as Json, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::config::Settings;
use steward::ingest::{self, Options};
use steward::tenants;
use steward_store::Value;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(default)
}

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    /// 0.0..1.0
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[derive(Clone, Copy)]
enum Party {
    User(usize),
    External(usize),
}

/// One generated call, shared by the file writer and the ceiling's values.
struct Call {
    caller: Party,
    callee: Party,
    start: i64,
    answer: Option<i64>,
    end: i64,
}

struct Plan {
    rows: usize,
    users: usize,
    externals: usize,
}

fn user_number(i: usize) -> String {
    format!("01632960{i:03}")
}

fn external_number(k: usize) -> String {
    format!("077{:08}", (k as u64 * 7919) % 100_000_000)
}

fn number(p: Party) -> String {
    match p {
        Party::User(i) => user_number(i),
        Party::External(k) => external_number(k),
    }
}

fn calls(plan: &Plan) -> impl Iterator<Item = Call> + '_ {
    let mut rng = Rng(0x5EED_CAFE_F00D_0001);
    let t0: i64 = 1_793_491_200; // 2026-11-01
    let step = (30 * 86_400) as f64 / plan.rows as f64;
    (0..plan.rows).map(move |i| {
        let user = Party::User(rng.below(plan.users as u64) as usize);
        // Skewed: a few numbers call often, most rarely.
        let u = rng.unit();
        let external = Party::External(((u * u) * plan.externals as f64) as usize);
        let (caller, callee) = match rng.below(20) {
            0..=8 => (user, external),
            9..=17 => (external, user),
            _ => (user, Party::User(rng.below(plan.users as u64) as usize)),
        };
        let start = t0 + (i as f64 * step) as i64;
        let ring = rng.below(25) as i64;
        let answered = rng.below(10) < 7;
        let talk = if answered {
            rng.below(600) as i64 + 1
        } else {
            0
        };
        Call {
            caller,
            callee,
            start,
            answer: answered.then_some(start + ring),
            end: start + ring + talk,
        }
    })
}

fn ts(unix: i64) -> String {
    steward_cdr::format_utc(unix)
}

/// Writes the Asterisk file; returns the number of distinct outside numbers in it.
fn write_file(plan: &Plan, path: &Path) -> usize {
    let mut seen = vec![false; plan.externals];
    let mut out = BufWriter::with_capacity(1 << 20, std::fs::File::create(path).unwrap());
    let mut line = String::with_capacity(400);
    for (i, c) in calls(plan).enumerate() {
        for p in [c.caller, c.callee] {
            if let Party::External(k) = p {
                seen[k] = true;
            }
        }
        let (src, dst) = (number(c.caller), number(c.callee));
        let (name, channel) = match c.caller {
            Party::User(u) => (format!("Person {u}"), format!("SIP/{}-{i:08x}", 1000 + u)),
            Party::External(_) => (String::new(), format!("SIP/trunk-{i:08x}")),
        };
        let dst_channel = match c.callee {
            Party::User(u) => format!("SIP/{}-{:08x}", 1000 + u, i + 1),
            Party::External(_) => format!("SIP/trunk-{:08x}", i + 1),
        };
        line.clear();
        let _ = writeln!(
            line,
            "\"\",\"{src}\",\"{dst}\",\"from-internal\",\"\"\"{name}\"\" <{src}>\",\"{channel}\",\
             \"{dst_channel}\",\"Dial\",\"SIP/trunk/{dst},30\",\"{}\",{},\"{}\",{},{},\"{}\",\
             \"DOCUMENTATION\",\"{}.{i}\",\"\"",
            ts(c.start),
            c.answer
                .map(|a| format!("\"{}\"", ts(a)))
                .unwrap_or_default(),
            ts(c.end),
            c.end - c.start,
            c.answer.map_or(0, |a| c.end - a),
            if c.answer.is_some() {
                "ANSWERED"
            } else {
                "NO ANSWER"
            },
            c.start,
        );
        out.write_all(line.as_bytes()).unwrap();
    }
    out.flush().unwrap();
    seen.iter().filter(|s| **s).count()
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
        let schema = format!("bench_{tag}_{}", std::process::id());
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

/// Random bytes of a sealed field's length (29 bytes of overhead + the text).
fn blob(rng: &mut Rng, text_len: usize) -> Vec<u8> {
    (0..text_len + 29).map(|_| rng.next() as u8).collect()
}

/// The ceiling: the table filled with pre-built values of the same shape, through
/// one prepared statement (SQLite) or binary COPY (PostgreSQL), in one transaction.
fn ceiling(target: &Target, plan: &Plan) -> f64 {
    let core = target.open();
    let mut rng = Rng(42);
    // Pre-built: ids (time-ordered like the real ones), subject ids, sealed blobs.
    let subject_ids: Vec<String> = (0..plan.users + plan.externals)
        .map(|_| uuid_like(&mut rng))
        .collect();
    let sid = |p: Party| match p {
        Party::User(u) => subject_ids[u].clone(),
        Party::External(k) => subject_ids[plan.users + k].clone(),
    };
    let pool: Vec<[Vec<u8>; 3]> = (0..4096)
        .map(|_| {
            [
                blob(&mut rng, 13), // number, E.164
                blob(&mut rng, 11), // raw
                blob(&mut rng, 10), // name
            ]
        })
        .collect();
    let calls: Vec<Call> = calls(plan).collect();
    let ids: Vec<Vec<u8>> = calls
        .iter()
        .map(|c| {
            let mut id = ((c.start as u64) ^ (1 << 63)).to_be_bytes().to_vec();
            id.extend_from_slice(&rng.next().to_be_bytes());
            id
        })
        .collect();
    let tenant = "bench-tenant".to_owned();
    let at = steward::clock::now();
    let started = Instant::now();
    let mut rows = calls.iter().zip(&ids).enumerate().map(|(i, (c, id))| {
        let b = &pool[i % pool.len()];
        let user_name = matches!(c.caller, Party::User(_));
        vec![
            Value::Bytes(id.clone()),
            Value::Text(tenant.clone()),
            Value::Text("asterisk-csv".into()),
            Value::Text(format!("{}.{i}", c.start)),
            Value::Null,
            Value::Text(sid(c.caller)),
            Value::Text(sid(c.callee)),
            Value::Bytes(b[0].clone()),
            Value::Bytes(b[1].clone()),
            if user_name {
                Value::Bytes(b[2].clone())
            } else {
                Value::Null
            },
            Value::Null,
            Value::Null,
            Value::Bytes(b[0].clone()),
            Value::Bytes(b[1].clone()),
            Value::Int(c.start),
            c.answer.map_or(Value::Null, Value::Int),
            Value::Int(c.end),
            Value::Int(c.end - c.start),
            Value::Int(c.answer.map_or(0, |a| c.end - a)),
            Value::Text(
                if c.answer.is_some() {
                    "ANSWERED"
                } else {
                    "NO ANSWER"
                }
                .into(),
            ),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Text("from-internal".into()),
            Value::Text("DOCUMENTATION".into()),
            Value::Int(at),
        ]
    });
    let n = core
        .db
        .write(|c| c.copy_in("call_records", &ingest::cdr::COLUMNS, &mut rows))
        .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(n as usize, plan.rows);
    plan.rows as f64 / secs
}

fn uuid_like(rng: &mut Rng) -> String {
    let (a, b) = (rng.next(), rng.next());
    format!(
        "{:08x}-{:04x}-7{:03x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFF,
        (b >> 48) & 0xFFFF,
        b & 0xFFFF_FFFF_FFFF
    )
}

struct Measured {
    ingest: f64,
    reingest: f64,
    subjects_created: u64,
    setup_secs: f64,
}

fn full_ingest(target: &Target, plan: &Plan, file: &Path) -> Measured {
    let core = target.open();
    let cli = Actor::cli();
    let setup = Instant::now();
    let tenant = tenants::create(&core, &cli, "Bench PBX Ltd", Some("BENCH-1")).unwrap();
    for u in 0..plan.users {
        accounts::create_user(
            &core,
            &cli,
            &tenant.id,
            NewUser {
                username: format!("bench-user-{u}"),
                password: "correct horse battery staple".into(),
                role: Role::Subject,
                email: None,
                phone: Some(user_number(u)),
                display_name: Some(format!("Person {u}")),
            },
        )
        .unwrap();
    }
    let setup_secs = setup.elapsed().as_secs_f64();
    let files = [file.to_path_buf()];
    let started = Instant::now();
    let r = ingest::ingest_files(
        &core,
        &cli,
        &tenant.id,
        &files,
        &Options::default(),
        &mut |_| {},
    )
    .unwrap();
    let secs = started.elapsed().as_secs_f64();
    assert_eq!(
        (r.accepted as usize, r.rejected, r.duplicate),
        (plan.rows, 0, 0),
        "{r:?}"
    );
    let again = Instant::now();
    let r2 = ingest::ingest_files(
        &core,
        &cli,
        &tenant.id,
        &files,
        &Options::default(),
        &mut |_| {},
    )
    .unwrap();
    let resecs = again.elapsed().as_secs_f64();
    assert_eq!((r2.accepted, r2.duplicate as usize), (0, plan.rows));
    Measured {
        ingest: plan.rows as f64 / secs,
        reingest: plan.rows as f64 / resecs,
        subjects_created: r.subjects_created,
        setup_secs,
    }
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

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` would pass nothing to say
    // "run": only measure when asked to.
    if !std::env::args().any(|a| a == "--bench") {
        println!("cdr_ingest: run with `cargo bench -p steward --bench cdr_ingest`");
        return;
    }
    // STEWARD_LOG=steward::ingest=debug shows where the ingest's time goes.
    if let Ok(filter) = std::env::var("STEWARD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let plan = Plan {
        rows: env_usize("STEWARD_BENCH_ROWS", 1_000_000),
        users: env_usize("STEWARD_BENCH_USERS", 200).clamp(1, 1000),
        externals: env_usize("STEWARD_BENCH_EXTERNALS", 20_000).max(1),
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model();
    println!(
        "cdr_ingest: {} rows, {} users, {} outside numbers; {nproc} cores, {cpu}",
        plan.rows, plan.users, plan.externals
    );
    let work = tempfile::tempdir().unwrap();
    let file = work.path().join("Master.csv");
    let t = Instant::now();
    let distinct = write_file(&plan, &file);
    let size = std::fs::metadata(&file).unwrap().len();
    println!(
        "  wrote {} ({:.0} MB, {distinct} distinct outside numbers) in {:.1} s",
        file.display(),
        size as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );
    let url = std::env::var("STEWARD_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STEWARD_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let mut results = serde_json::Map::new();
    type Make = Box<dyn Fn(&str) -> Option<Target>>;
    let backends: Vec<(&str, Make)> = vec![
        ("sqlite", Box::new(|_| Some(Target::sqlite()))),
        ("postgres", Box::new(move |tag| Target::postgres(&url, tag))),
    ];
    // STEWARD_BENCH_BACKENDS=sqlite (or postgres) measures one of them only.
    let only = std::env::var("STEWARD_BENCH_BACKENDS").unwrap_or_default();
    for (name, make) in &backends {
        if !only.is_empty() && !only.split(',').any(|b| b.trim() == *name) {
            continue;
        }
        let Some(ceiling_target) = make("ceiling") else {
            continue;
        };
        let ceil = ceiling(&ceiling_target, &plan);
        drop(ceiling_target);
        println!("  {name}: ceiling (copy_in, one transaction): {ceil:>9.0} rows/s");
        let Some(ingest_target) = make("ingest") else {
            continue;
        };
        let m = full_ingest(&ingest_target, &plan, &file);
        drop(ingest_target);
        let ratio = m.ingest / ceil;
        println!(
            "  {name}: ingest (everything included):   {:>9.0} rows/s = {ratio:.2} of the ceiling \
             ({} subjects created)",
            m.ingest, m.subjects_created
        );
        println!(
            "  {name}: re-ingest (all duplicates):     {:>9.0} rows/s",
            m.reingest
        );
        results.insert(
            (*name).to_owned(),
            json!({
                "ceiling_rows_per_sec": ceil.round(),
                "ingest_rows_per_sec": m.ingest.round(),
                "ratio": (ratio * 100.0).round() / 100.0,
                "reingest_rows_per_sec": m.reingest.round(),
                "subjects_created": m.subjects_created,
                "user_setup_secs": (m.setup_secs * 10.0).round() / 10.0,
            }),
        );
    }
    let report = json!({
        "benchmark": "cdr_ingest",
        "rows": plan.rows,
        "users": plan.users,
        "outside_numbers": plan.externals,
        "distinct_outside_numbers_in_file": distinct,
        "file_bytes": size,
        "batch_rows": Options::default().batch_rows,
        "machine": { "nproc": nproc, "cpu": cpu },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "results": Json::Object(results),
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("cdr_ingest.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    println!("  wrote {}", out.display());
}
