//! The access bundle of a subject with a long call history, against the raw
//! read of the same rows in the same run: `cargo bench -p steward --bench bundle`.
//!
//! One SQLite database (and PostgreSQL at `STEWARD_BENCH_DATABASE_URL`, else
//! `STEWARD_TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/test,
//! when reachable; `STEWARD_BENCH_BACKENDS=sqlite` runs one). A subject is given
//! `STEWARD_BENCH_BUNDLE_CALLS` calls (default 100,000; half made, half
//! received, with 200 other numbers) through the real ingest
//! (`ingest::ingest_records`), and a small subject 1,000 the same way. Measured:
//!
//! * **Bundle**: `rights::export::write_bundle` of each subject to a file
//!   (`STEWARD_BENCH_BUNDLE_RUNS` runs, default 3; the median): its time, its
//!   size, and how many HTML pages the calls take.
//! * **Baseline, raw read**: the same subject's call rows read with one plain
//!   `SELECT` per side (every column, no decryption) and each row written as a
//!   JSON array into one deflated ZIP entry: the least any bundle of these rows
//!   costs. The bundle's ratio to it is the price of opening the sealed fields,
//!   the other parties' numbers, the CSV and the pages.
//! * **Per call**: the large bundle's time per call over the small one's (1.0 is
//!   linear).
//!
//! Results: printed, and written to `bench-results/bundle.json`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use steward::access::Actor;
use steward::config::Settings;
use steward::ingest::{self, NewCallRecord};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, export};
use steward::{Steward, subjects, tenants};
use steward_store::{Value, params};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

/// Gives `number` `calls` calls (half made, half received) with 200 others.
fn seed_calls(core: &Steward, tenant: &str, number: &str, calls: usize, tag: &str) -> String {
    let cli = Actor::cli();
    let start = 1_767_225_600; // 2026-01-01
    let records: Vec<NewCallRecord> = (0..calls)
        .map(|i| {
            let other = format!("+44161496{:04}", i % 200);
            let (caller, callee) = if i % 2 == 0 {
                (number.to_owned(), other)
            } else {
                (other, number.to_owned())
            };
            let at = start + (i as i64) * 300;
            serde_json::from_value(serde_json::json!({
                "leg_id": format!("{tag}-{i}"),
                "caller": caller,
                "callee": callee,
                "start": at,
                "answer": at + 5,
                "end": at + 65 + (i as i64 % 600),
                "data_bytes": 1_000_000 + i as i64,
            }))
            .unwrap()
        })
        .collect();
    for chunk in records.chunks(5_000) {
        ingest::ingest_records(core, &cli, tenant, chunk, true).unwrap();
    }
    let found = subjects::find(core, &cli, tenant, None, Some(number)).unwrap();
    found[0].clone()
}

fn request(core: &Steward, subject: &str) -> rights::Request {
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind: Kind::Access,
            channel: RequestChannel::Letter,
            received_on: today(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "bench: identity taken as verified").unwrap()
}

struct Measured {
    secs: f64,
    bytes: u64,
    pages: usize,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn bundle(core: &Steward, subject: &str, calls: usize, runs: usize, dir: &Path) -> Measured {
    let req = request(core, subject);
    let mut secs = Vec::new();
    let (mut bytes, mut pages) = (0, 0);
    for r in 0..runs {
        let path = dir.join(format!("bundle-{r}.zip"));
        let file = BufWriter::new(std::fs::File::create(&path).unwrap());
        let t = Instant::now();
        let summary = export::write_bundle(core, &req, file).unwrap();
        secs.push(t.elapsed().as_secs_f64());
        assert_eq!(summary.counts["call_records"] as usize, calls);
        bytes = std::fs::metadata(&path).unwrap().len();
        let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        pages = z
            .file_names()
            .filter(|n| {
                n.as_ref()
                    .is_ok_and(|n| n.starts_with("pages/call_records-"))
            })
            .count();
        // The data file is complete.
        let mut text = String::new();
        z.by_name("data/call_records.json")
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        let rows: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(rows.len(), calls);
        std::fs::remove_file(&path).unwrap();
    }
    Measured {
        secs: median(secs),
        bytes,
        pages,
    }
}

/// The raw read: every column of the subject's call rows, as JSON arrays, into
/// one deflated ZIP entry.
fn raw_read(core: &Steward, subject: &str, calls: usize, runs: usize, dir: &Path) -> Measured {
    let mut secs = Vec::new();
    let mut bytes = 0;
    for r in 0..runs {
        let path = dir.join(format!("raw-{r}.zip"));
        let t = Instant::now();
        let mut zip = zip::ZipWriter::new(BufWriter::new(std::fs::File::create(&path).unwrap()));
        zip.start_file(
            "call_records.json",
            zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated),
        )
        .unwrap();
        let mut n = 0;
        for side in ["caller_subject_id", "callee_subject_id"] {
            let rows = core
                .db
                .read(|c| {
                    c.query(
                        &format!("SELECT * FROM call_records WHERE {side} = $1"),
                        params![subject],
                    )
                })
                .unwrap();
            for row in &rows {
                let values: Vec<serde_json::Value> = row
                    .0
                    .iter()
                    .map(|v| match v {
                        Value::Null => serde_json::Value::Null,
                        Value::Int(i) => serde_json::json!(i),
                        Value::Text(t) => serde_json::json!(t),
                        Value::Bytes(b) => serde_json::json!(b.len()),
                    })
                    .collect();
                serde_json::to_writer(&mut zip, &values).unwrap();
                zip.write_all(b"\n").unwrap();
                n += 1;
            }
        }
        zip.finish().unwrap();
        secs.push(t.elapsed().as_secs_f64());
        assert_eq!(n, calls);
        bytes = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
    }
    Measured {
        secs: median(secs),
        bytes,
        pages: 0,
    }
}

fn run(name: &str, settings: Settings, large: usize, runs: usize) -> serde_json::Value {
    let (core, _) = Steward::open(settings).unwrap();
    let tenant = tenants::create(&core, &Actor::cli(), "Bench Telecom", None)
        .unwrap()
        .id;
    let t = Instant::now();
    let big = seed_calls(&core, &tenant, "+447700900001", large, "big");
    let small = seed_calls(&core, &tenant, "+447700900002", 1_000, "small");
    let seed_secs = t.elapsed().as_secs_f64();
    let dir = tempfile::tempdir().unwrap();
    let raw = raw_read(&core, &big, large, runs, dir.path());
    let b = bundle(&core, &big, large, runs, dir.path());
    let s = bundle(&core, &small, 1_000, runs, dir.path());
    let ratio = b.secs / raw.secs;
    let per_call = (b.secs / large as f64) / (s.secs / 1_000.0);
    println!(
        "{name}: {large} calls: bundle {:.2} s, {:.1} MB, {} pages of calls; raw read {:.2} s \
         ({:.1} MB) = {ratio:.2}x; 1,000 calls {:.3} s; per call {per_call:.2}x (seeded in {seed_secs:.0} s)",
        b.secs,
        b.bytes as f64 / 1e6,
        b.pages,
        raw.secs,
        raw.bytes as f64 / 1e6,
        s.secs
    );
    serde_json::json!({
        "backend": name,
        "calls": large,
        "bundle_secs": b.secs,
        "bundle_bytes": b.bytes,
        "call_pages": b.pages,
        "raw_read_secs": raw.secs,
        "raw_read_bytes": raw.bytes,
        "bundle_ratio_to_raw_read": ratio,
        "small_bundle_secs": s.secs,
        "per_call_ratio_large_to_small": per_call,
        "runs": runs,
    })
}

fn main() {
    let large = env_usize("STEWARD_BENCH_BUNDLE_CALLS", 100_000);
    let runs = env_usize("STEWARD_BENCH_BUNDLE_RUNS", 3).max(1);
    let backends = std::env::var("STEWARD_BENCH_BACKENDS").unwrap_or_default();
    let mut results = Vec::new();
    if backends.is_empty() || backends.contains("sqlite") {
        let dir = tempfile::tempdir().unwrap();
        let settings = Settings {
            data_dir: dir.path().join("data"),
            ..Settings::default()
        };
        results.push(run("sqlite", settings, large, runs));
    }
    if backends.is_empty() || backends.contains("postgres") {
        let url = std::env::var("STEWARD_BENCH_DATABASE_URL")
            .or_else(|_| std::env::var("STEWARD_TEST_DATABASE_URL"))
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let dir = tempfile::tempdir().unwrap();
        let schema = format!("bench_bundle_{}", std::process::id());
        let settings = Settings {
            data_dir: dir.path().join("data"),
            database_url: Some(url.clone()),
            database_schema: Some(schema.clone()),
            ..Settings::default()
        };
        match Steward::open(settings.clone()) {
            Ok(_) => {
                results.push(run("postgres", settings, large, runs));
                if let Ok(mut c) = postgres::Client::connect(&url, postgres::NoTls) {
                    let _ = c.batch_execute(&format!(
                        "DROP SCHEMA IF EXISTS {schema} CASCADE; DROP SCHEMA IF EXISTS {schema}_keys CASCADE"
                    ));
                }
            }
            Err(e) => eprintln!("skipping PostgreSQL: {url} unreachable ({e})"),
        }
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(
        out.join("bundle.json"),
        serde_json::to_string_pretty(&serde_json::json!({ "results": results })).unwrap(),
    )
    .unwrap();
}
