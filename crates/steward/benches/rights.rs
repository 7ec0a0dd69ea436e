//! Data-subject rights at volume, against the raw DELETE of the same database in
//! the same run: `cargo bench -p steward --bench rights`.
//!
//! One database per backend grows through the levels of `STEWARD_BENCH_LEVELS`
//! (call records in total; default `1000000,3000000`; the range is
//! `STEWARD_BENCH_LEVELS=1000000,10000000`). At each level:
//!
//! 1. **Subjects** are created the real way, by `ingest::ingest_records` (one seed
//!    call each: blind index, subject row, data key in the key store, sealed
//!    fields): `STEWARD_BENCH_SUBJECTS_PER_MILLION` background subjects per million
//!    records (default 20,000, so about 100 calls each), plus this level's probe
//!    subjects: six groups of `STEWARD_BENCH_GROUP` subjects (default 50) with
//!    `STEWARD_BENCH_CALLS_PER_SUBJECT` calls each (default 100, half made, half
//!    received, the seed call included), and at the first level one access
//!    subject with `STEWARD_BENCH_ACCESS_CALLS` calls (default 1,000).
//! 2. **Fill**: the rest of the level's records go in through `Conn::copy_in`
//!    (`ingest::cdr::COLUMNS`, transactions of 200,000 rows), pre-built the way
//!    the ingest builds them: ids of start time and 8 random bytes, each party's
//!    E.164 number and number as written (and for half of the calls the caller's
//!    name) sealed with `fields::seal` under that party's real data key. So export
//!    opens them and erasure clears them as it would ingested rows; parsing,
//!    linking and de-duplication (measured by the `cdr_ingest` benchmark) are
//!    skipped, because the ingest runs at about half that speed and 10 million
//!    records must fit in a run. On SQLite the writer connection gets a 1 GiB
//!    page cache for the fill only (Steward's 32 MiB is put back before
//!    measuring). The probe subjects' calls are spread at random through the
//!    level's new records, with background subjects at the other end. Then,
//!    untimed: PostgreSQL `VACUUM` + `ANALYZE` of the big tables (the server here
//!    runs without autovacuum, so this is what it would have done), SQLite a WAL
//!    checkpoint.
//! 3. **Access bundle** of the access subject (the same 1,000 calls at every
//!    level): `rights::export::write_bundle` to a file, `STEWARD_BENCH_BUNDLE_RUNS`
//!    times (default 9; median, min and first), after `rights::create` and
//!    `verify`; and `export::for_request` once (request fulfilled). The ratio to
//!    the first level should stay near 1.0.
//! 4. **Time to unreadable**: group E is erased through verified erasure requests
//!    (`erase::for_request`, which runs `erase_subject`), one subject at a time,
//!    the request made and verified beforehand (untimed), while a second thread
//!    polls `core.keys.subject_key(id)` every 200 µs and notes when it first
//!    answers `None`: the time from calling the erasure to the subject being
//!    unreadable everywhere (every copy of their data is sealed with that key).
//!    The start of its last query that still found the key is kept too: the key
//!    went between the two (the gap is the poll interval, plus any time the
//!    observer was descheduled on a busy machine).
//!    Group S has only its key destroyed (`KeyStore::shred_subject_key`), timed
//!    alone. Median and p99 (nearest rank: of 50 samples, the largest) against the
//!    10 ms target.
//! 5. **Purge and retention rates**, in call_records rows per second: group E's
//!    erasures (the whole `for_request`, VACUUM on PostgreSQL included);
//!    `retention::run` after group R's `last_engagement_at` was set 7 years back
//!    by SQL (the default policy keeps everything 6 years from the last
//!    engagement, so they are erased whole), with the plan's walk over every
//!    subject timed apart. Baselines, same table, same database, same run, one
//!    transaction per subject as Steward does: group D's rows removed by the raw
//!    `DELETE FROM call_records WHERE caller_subject_id = $1` (and `callee_…`), and
//!    group U's by the same pseudonymising `UPDATE` erasure issues (call_records
//!    is `Pseudonymise` in the registry: a call's other party keeps their record),
//!    and group V's by that `UPDATE` followed, per subject, by the clean-up erasure
//!    runs (`Db::vacuum`: VACUUM on PostgreSQL, a WAL checkpoint on SQLite).
//!    Between phases, untimed: PostgreSQL VACUUM, SQLite WAL checkpoint.
//!
//! SQLite always; PostgreSQL at `STEWARD_BENCH_DATABASE_URL` (else
//! `STEWARD_TEST_DATABASE_URL`, else postgres://postgres@127.0.0.1:5432/test) when
//! reachable (`STEWARD_BENCH_BACKENDS=sqlite` or `=postgres` runs one). Results:
//! printed, and written to `bench-results/rights.json` at the workspace root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};
use steward::Steward;
use steward::access::Actor;
use steward::config::Settings;
use steward::core::fields;
use steward::ingest::parties::{PartyKey, party_key};
use steward::ingest::{self, NewCallRecord};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase, export};
use steward::{clock, registry, retention, tenants};
use steward_crypto::{DataKey, IdentifierKind};
use steward_store::{Backend, StoreError, Value, params};

/// Rows per fill transaction (as the ingest's TX_ROWS).
const FILL_TX_ROWS: usize = 200_000;
/// Rows per message from the row builder to the writer.
const FILL_CHUNK: usize = 2_048;
/// SQLite page cache for the fill, and Steward's own (`sqlite_driver::connect`).
const FILL_CACHE_KIB: i64 = 1 << 20;
const STEWARD_CACHE_KIB: i64 = 32_768;
/// Seed calls per `ingest_records` call.
const SEED_CHUNK: usize = 5_000;
/// How often the observer asks the key store during an erasure.
const POLL: Duration = Duration::from_micros(200);
/// The target for "erased subject unreadable everywhere".
const TARGET_MS: f64 = 10.0;

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
    fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            v.swap(i, j);
        }
    }
}

struct Config {
    levels: Vec<usize>,
    subjects_per_million: usize,
    group: usize,
    calls_per_subject: usize,
    access_calls: usize,
    bundle_runs: usize,
}

/// The five probe groups of a level.
const GROUPS: [&str; 6] = [
    "erase",
    "shred",
    "retention",
    "raw_delete",
    "raw_update",
    "raw_update_vacuum",
];

/// A subject as the bench knows it: id, number, and the data key the fill seals with.
struct Subj {
    id: String,
    raw: String,
    e164: String,
    key: DataKey,
}

/// Where one backend's database lives.
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

    fn postgres(url: &str) -> Option<Target> {
        let schema = format!("bench_rights_{}", std::process::id());
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

/// The database as it grows, and who is in it.
struct World {
    tenant: String,
    subjects: Vec<Subj>,
    /// Indexes into `subjects` of the background subjects.
    background: Vec<usize>,
    access: Option<usize>,
    next_number: usize,
    /// Calls written so far by the fill (their start times follow each other).
    calls: u64,
    t0: i64,
    rng: Rng,
}

fn number(k: usize) -> String {
    format!("077{:08}", (k as u64 * 7919) % 100_000_000)
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn count(core: &Steward, sql: &str) -> i64 {
    core.db
        .read(|c| c.query_opt(sql, &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

/// Untimed, between phases: what the database would do on its own by then.
fn settle(core: &Steward) {
    match core.db.backend() {
        Backend::Postgres => core.db.vacuum(&["call_records", "subjects"]).unwrap(),
        Backend::Sqlite => core.db.checkpoint().unwrap(),
    }
}

impl World {
    fn new_number(&mut self, region: &str) -> (String, String) {
        let raw = number(self.next_number);
        self.next_number += 1;
        match party_key(raw.as_bytes(), region) {
            Some(PartyKey::Phone(e164)) => (raw, e164),
            other => panic!("{raw} is not a phone number to the ingest: {other:?}"),
        }
    }

    /// Creates subjects through the ingest (one seed call each), then looks up
    /// their ids and keys. Returns their indexes in `subjects`. Background
    /// subjects call each other in pairs; probe subjects each call a background
    /// subject, so that a probe has exactly one seed call.
    fn create_subjects(&mut self, core: &Steward, n: usize, probe: bool) -> Vec<usize> {
        let region = core.settings.default_region.clone();
        let numbers: Vec<(String, String)> = (0..n).map(|_| self.new_number(&region)).collect();
        let seed_start = self.t0 - 86_400;
        let mut calls: Vec<(String, String)> = Vec::new();
        if probe {
            for (raw, _) in &numbers {
                let b = self.background[self.rng.below(self.background.len() as u64) as usize];
                calls.push((raw.clone(), self.subjects[b].raw.clone()));
            }
        } else {
            for pair in numbers.chunks(2) {
                // An odd one out calls the first new number.
                let callee = pair.get(1).unwrap_or(&numbers[0]);
                calls.push((pair[0].0.clone(), callee.0.clone()));
            }
        }
        let mut records = Vec::with_capacity(calls.len());
        for (i, (caller, callee)) in calls.into_iter().enumerate() {
            records.push(NewCallRecord {
                leg_id: Some(format!("seed-{}-{i}", self.next_number)),
                linked_id: None,
                account_code: None,
                caller,
                caller_name: None,
                callee,
                start: seed_start + i as i64,
                answer: Some(seed_start + i as i64 + 5),
                end: seed_start + i as i64 + 65,
                duration: None,
                billsec: None,
                disposition: None,
                hangup_cause: None,
                direction: None,
                ip_address: None,
                roaming_network: None,
                data_bytes: None,
            });
        }
        let cli = Actor::cli();
        for chunk in records.chunks(SEED_CHUNK) {
            ingest::ingest_records(core, &cli, &self.tenant, chunk, true).unwrap();
        }
        // Ids by blind index, then keys.
        let mut by_idx: HashMap<Vec<u8>, String> = HashMap::with_capacity(n);
        let idx: Vec<Vec<u8>> = numbers
            .iter()
            .map(|(_, e)| core.keys.blind_index(IdentifierKind::Phone, e))
            .collect();
        for chunk in idx.chunks(500) {
            let mut args = vec![Value::from(self.tenant.as_str())];
            args.extend(chunk.iter().map(|i| Value::Bytes(i.clone())));
            let sql = format!(
                "SELECT id, phone_idx FROM subjects WHERE tenant_id = $1 AND phone_idx IN ({})",
                steward_store::placeholders(2, chunk.len())
            );
            for r in core.db.read(|c| c.query(&sql, &args)).unwrap() {
                by_idx.insert(r.bytes(1).unwrap(), r.text(0).unwrap());
            }
        }
        let mut out = Vec::with_capacity(n);
        for ((raw, e164), i) in numbers.into_iter().zip(&idx) {
            let id = by_idx.get(i).expect("seeded subject not found").clone();
            let key = core.keys.subject_key(&id).unwrap().expect("no key");
            out.push(self.subjects.len());
            self.subjects.push(Subj { id, raw, e164, key });
        }
        out
    }
}

/// Builds call rows the way the ingest does (see the module documentation).
struct RowMaker<'a> {
    subjects: &'a [Subj],
    tenant: &'a str,
    at: i64,
    rng: Rng,
}

impl RowMaker<'_> {
    fn seal(&self, s: &Subj, field: &str, value: &str) -> Value {
        Value::Bytes(fields::seal(&s.key, &format!("call_records.{field}"), &s.id, value).unwrap())
    }

    fn row(&mut self, caller: usize, callee: usize, start: i64) -> Vec<Value> {
        let (a, b) = (&self.subjects[caller], &self.subjects[callee]);
        let mut id = ((start as u64) ^ (1 << 63)).to_be_bytes().to_vec();
        id.extend_from_slice(&self.rng.next().to_be_bytes());
        let ring = self.rng.below(25) as i64;
        let answered = self.rng.below(10) < 7;
        let talk = if answered {
            self.rng.below(600) as i64 + 1
        } else {
            0
        };
        let end = start + ring + talk;
        let name = (self.rng.below(2) == 0).then(|| format!("Caller {}", &a.raw[7..]));
        vec![
            Value::Bytes(id),
            Value::Text(self.tenant.to_owned()),
            Value::Text("asterisk-csv".into()),
            Value::Text(format!("{start}.{}", self.rng.below(1_000_000))),
            Value::Null,
            Value::Text(a.id.clone()),
            Value::Text(b.id.clone()),
            self.seal(a, "caller_number", &a.e164),
            self.seal(a, "caller_raw", &a.raw),
            name.map_or(Value::Null, |n| self.seal(a, "caller_name", &n)),
            Value::Null,
            Value::Null,
            self.seal(b, "callee_number", &b.e164),
            self.seal(b, "callee_raw", &b.raw),
            Value::Int(start),
            if answered {
                Value::Int(start + ring)
            } else {
                Value::Null
            },
            Value::Int(end),
            Value::Int(end - start),
            Value::Int(if answered { talk } else { 0 }),
            Value::Text(if answered { "ANSWERED" } else { "NO ANSWER" }.into()),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Text("from-internal".into()),
            Value::Text("DOCUMENTATION".into()),
            Value::Int(self.at),
        ]
    }
}

/// Writes `rows` calls: background calls, with `probes` (subject, calls) spread
/// through them at random. Returns the seconds taken.
fn fill(core: &Steward, world: &mut World, rows: usize, probes: &[(usize, usize)]) -> f64 {
    // Each probe call: the subject makes it or receives it, alternately.
    let mut events: Vec<(usize, bool)> = probes
        .iter()
        .flat_map(|&(s, n)| (0..n).map(move |j| (s, j % 2 == 0)))
        .collect();
    assert!(events.len() <= rows, "level too small for its probe calls");
    world.rng.shuffle(&mut events);
    let first_call = world.calls;
    world.calls += rows as u64;
    let seed = world.rng.next();
    let (t0, tenant) = (world.t0, world.tenant.clone());
    let subjects = &world.subjects;
    let background = &world.background;
    let sqlite = core.db.backend() == Backend::Sqlite;
    if sqlite {
        // The fill only: a bigger page cache on the (single) writer connection keeps
        // the subject-id indexes' random inserts in memory. Steward's own value is
        // put back below, before anything is measured.
        set_cache(core, FILL_CACHE_KIB);
    }
    let started = Instant::now();
    let (tx, rx) = mpsc::sync_channel::<Vec<Vec<Value>>>(8);
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut maker = RowMaker {
                subjects,
                tenant: &tenant,
                at: clock::now(),
                rng: Rng(seed | 1),
            };
            let mut pick = Rng(seed.rotate_left(17) | 1);
            let mut next_event = events.into_iter();
            let mut events_left = next_event.len() as u64;
            let bg = |r: &mut Rng| background[r.below(background.len() as u64) as usize];
            let mut buf = Vec::with_capacity(FILL_CHUNK);
            for i in 0..rows {
                let start = t0 + 2 * (first_call + i as u64) as i64;
                // Selection sampling: probe calls land uniformly among the rows.
                let rows_left = (rows - i) as u64;
                let (caller, callee) = if events_left > 0 && pick.below(rows_left) < events_left {
                    events_left -= 1;
                    let (s, makes) = next_event.next().unwrap();
                    let other = bg(&mut pick);
                    if makes { (s, other) } else { (other, s) }
                } else {
                    let a = bg(&mut pick);
                    let mut b = bg(&mut pick);
                    if b == a {
                        b = bg(&mut pick);
                    }
                    (a, b)
                };
                buf.push(maker.row(caller, callee, start));
                if buf.len() == FILL_CHUNK && tx.send(std::mem::take(&mut buf)).is_err() {
                    return;
                }
            }
            if !buf.is_empty() {
                let _ = tx.send(buf);
            }
        });
        let mut all = rx.into_iter().flatten();
        let mut left = rows;
        while left > 0 {
            let n = left.min(FILL_TX_ROWS);
            let mut part = all.by_ref().take(n);
            let written = core
                .db
                .write(|c| c.copy_in("call_records", &ingest::cdr::COLUMNS, &mut part))
                .unwrap();
            assert_eq!(written as usize, n, "the row builder stopped early");
            left -= n;
        }
    });
    let secs = started.elapsed().as_secs_f64();
    if sqlite {
        set_cache(core, STEWARD_CACHE_KIB);
    }
    secs
}

/// SQLite page cache of the writer connection, in KiB.
fn set_cache(core: &Steward, kib: i64) {
    core.db
        .write(|c| c.execute_batch(&format!("PRAGMA cache_size = -{kib}")))
        .unwrap();
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(f64::total_cmp);
    v
}

fn ms(secs: f64) -> f64 {
    (secs * 1e5).round() / 100.0
}

/// A ratio to three significant figures (purge ratios can be far below 0.01).
fn r3(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    let scale = 10f64.powi(2 - x.abs().log10().floor() as i32);
    (x * scale).round() / scale
}

fn r2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn new_request(core: &Steward, subject: &str, kind: Kind) -> rights::Request {
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind,
            channel: RequestChannel::Letter,
            received_on: today(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "bench: identity taken as verified").unwrap()
}

struct BundleM {
    secs: Vec<f64>,
    for_request_secs: f64,
    rows: u64,
    bytes: u64,
}

fn bundle(core: &Steward, subject: &str, runs: usize, calls: usize, dir: &Path) -> BundleM {
    let req = new_request(core, subject, Kind::Access);
    let mut secs = Vec::with_capacity(runs);
    let mut rows = 0;
    let mut bytes = 0;
    for r in 0..runs.max(1) {
        let path = dir.join(format!("bundle-{r}.zip"));
        let file = BufWriter::new(std::fs::File::create(&path).unwrap());
        let t = Instant::now();
        let summary = export::write_bundle(core, &req, file).unwrap();
        secs.push(t.elapsed().as_secs_f64());
        rows = summary.counts.get("call_records").copied().unwrap_or(0);
        assert_eq!(rows as usize, calls, "{summary:?}");
        bytes = std::fs::metadata(&path).unwrap().len();
        std::fs::remove_file(&path).unwrap();
    }
    let req = new_request(core, subject, Kind::Access);
    let out = dir.join("bundle.zip");
    let t = Instant::now();
    export::for_request(core, &Actor::cli(), &req.id, &out).unwrap();
    let for_request_secs = t.elapsed().as_secs_f64();
    std::fs::remove_file(&out).unwrap();
    BundleM {
        secs,
        for_request_secs,
        rows,
        bytes,
    }
}

struct EraseM {
    /// When the observer first saw the key gone (an upper bound).
    unreadable: Vec<f64>,
    /// When the observer's last query that still found the key began (a lower bound).
    still_readable: Vec<f64>,
    total: Vec<f64>,
    rows: u64,
    secs: f64,
}

/// Erases each subject while a second thread watches for its key to vanish. The
/// key went between the start of the observer's last query that found it and the
/// end of its first that did not: both ends are kept, since on a busy machine the
/// observer can be descheduled between two queries.
fn erase_group(core: &Steward, ids: &[String]) -> EraseM {
    let cli = Actor::cli();
    let (ask, asked) = mpsc::channel::<(String, Instant)>();
    let (tell, told) = mpsc::channel::<(f64, f64)>();
    let mut m = EraseM {
        unreadable: Vec::new(),
        still_readable: Vec::new(),
        total: Vec::new(),
        rows: 0,
        secs: 0.0,
    };
    std::thread::scope(|scope| {
        scope.spawn(move || {
            for (id, t0) in asked {
                let mut last_found = 0.0;
                loop {
                    let asked_at = t0.elapsed().as_secs_f64();
                    if core.keys.subject_key(&id).unwrap().is_none() {
                        tell.send((last_found, t0.elapsed().as_secs_f64())).unwrap();
                        break;
                    }
                    last_found = asked_at;
                    std::thread::sleep(POLL);
                }
            }
        });
        for id in ids {
            // A verified erasure request, as the DPO would have it (untimed).
            let req = new_request(core, id, Kind::Erasure);
            let t0 = Instant::now();
            ask.send((id.clone(), t0)).unwrap();
            let report = erase::for_request(core, &cli, &req.id).unwrap();
            let total = t0.elapsed().as_secs_f64();
            assert!(report.key_destroyed);
            assert!(core.keys.subject_key(id).unwrap().is_none());
            let (lower, upper) = told.recv().unwrap();
            m.still_readable.push(lower);
            m.unreadable.push(upper);
            m.total.push(total);
            m.secs += total;
            m.rows += report
                .deleted
                .get("call_records")
                .into_iter()
                .chain(report.pseudonymised.get("call_records"))
                .sum::<u64>();
        }
        drop(ask);
    });
    m
}

fn shred_group(core: &Steward, ids: &[String]) -> Vec<f64> {
    ids.iter()
        .map(|id| {
            let t = Instant::now();
            assert!(core.keys.shred_subject_key(id).unwrap());
            let secs = t.elapsed().as_secs_f64();
            assert!(core.keys.subject_key(id).unwrap().is_none());
            secs
        })
        .collect()
}

struct RetentionM {
    plan_secs: f64,
    run_secs: f64,
    rows: u64,
    subjects_checked: u64,
}

fn retention_group(core: &Steward, ids: &[String]) -> RetentionM {
    // Seven years without engagement: past the default policy's six.
    let old = clock::now() - 7 * 366 * 86_400;
    core.db
        .write(|c| {
            for id in ids {
                c.execute(
                    "UPDATE subjects SET last_engagement_at = $1 WHERE id = $2",
                    params![old, id.as_str()],
                )?;
            }
            Ok::<_, StoreError>(())
        })
        .unwrap();
    settle(core);
    let now = clock::now();
    let t = Instant::now();
    let plan = retention::plan(core, now).unwrap();
    let plan_secs = t.elapsed().as_secs_f64();
    assert_eq!(
        plan.counts.subjects_erased as usize,
        ids.len(),
        "{:?}",
        plan.counts
    );
    let t = Instant::now();
    let report = retention::run(core, now).unwrap();
    let run_secs = t.elapsed().as_secs_f64();
    assert_eq!(report.counts.subjects_erased as usize, ids.len());
    assert!(report.failed.is_empty() && report.changed == 0);
    for id in ids {
        assert!(core.keys.subject_key(id).unwrap().is_none());
    }
    RetentionM {
        plan_secs,
        run_secs,
        rows: report
            .items
            .iter()
            .filter(|i| i.store == "call_records")
            .map(|i| i.rows)
            .sum(),
        subjects_checked: report.counts.subjects_checked,
    }
}

/// One transaction per subject, each running `statements` with the subject's id,
/// and with `vacuum` the clean-up erasure does after each subject (`Db::vacuum`:
/// VACUUM on PostgreSQL, a WAL checkpoint on SQLite). Returns (rows, seconds).
fn raw_group(core: &Steward, ids: &[String], statements: &[String], vacuum: bool) -> (u64, f64) {
    let mut rows = 0;
    let t = Instant::now();
    for id in ids {
        rows += core
            .db
            .write(|c| {
                let mut n = 0;
                for s in statements {
                    n += c.execute(s, params![id.as_str()])?;
                }
                Ok::<_, StoreError>(n)
            })
            .unwrap();
        if vacuum {
            core.db.vacuum(&["call_records"]).unwrap();
        }
    }
    (rows, t.elapsed().as_secs_f64())
}

/// The pseudonymising statements erasure issues for call_records (as
/// `erase::clear_rows` builds them from the registry).
fn pseudonymise_sql() -> Vec<String> {
    let store = registry::store("call_records").unwrap();
    store
        .subject_columns
        .iter()
        .map(|col| {
            let mut sets = vec![format!("{col} = NULL")];
            sets.extend(
                store
                    .encrypted_columns
                    .iter()
                    .filter(|(_, owner)| owner == col)
                    .map(|(c, _)| format!("{c} = NULL")),
            );
            format!(
                "UPDATE call_records SET {} WHERE {col} = $1",
                sets.join(", ")
            )
        })
        .collect()
}

fn delete_sql() -> Vec<String> {
    registry::store("call_records")
        .unwrap()
        .subject_columns
        .iter()
        .map(|col| format!("DELETE FROM call_records WHERE {col} = $1"))
        .collect()
}

fn run_backend(name: &str, target: &Target, cfg: &Config) -> Json {
    let core = target.open();
    let cli = Actor::cli();
    let tenant = tenants::create(&core, &cli, "Bench PBX Ltd", Some("BENCH-R")).unwrap();
    let max_level = *cfg.levels.iter().max().unwrap() as i64;
    let mut world = World {
        tenant: tenant.id,
        subjects: Vec::new(),
        background: Vec::new(),
        access: None,
        next_number: 0,
        calls: 0,
        // Calls two seconds apart, ending about a day ago.
        t0: clock::now() - 2 * max_level - 86_400,
        rng: Rng(0x5EED_0000_0000_0042),
    };
    let out_dir = tempfile::tempdir().unwrap();
    let mut levels = Vec::new();
    let mut first_bundle: Option<f64> = None;
    for &level in &cfg.levels {
        let t = Instant::now();
        // Background subjects in proportion to the records; this level's probes.
        let want_bg = (level as u128 * cfg.subjects_per_million as u128 / 1_000_000) as usize;
        let new_bg = want_bg.max(2).saturating_sub(world.background.len());
        let made = world.create_subjects(&core, new_bg, false);
        world.background.extend(made);
        let mut probes: Vec<(usize, usize)> = Vec::new();
        if world.access.is_none() {
            let a = world.create_subjects(&core, 1, true)[0];
            world.access = Some(a);
            probes.push((a, cfg.access_calls.saturating_sub(1)));
        }
        let mut groups: Vec<Vec<String>> = Vec::new();
        for _ in GROUPS {
            let g = world.create_subjects(&core, cfg.group, true);
            probes.extend(
                g.iter()
                    .map(|&s| (s, cfg.calls_per_subject.saturating_sub(1))),
            );
            groups.push(g.iter().map(|&s| world.subjects[s].id.clone()).collect());
        }
        let seed_secs = t.elapsed().as_secs_f64();
        let have = count(&core, "SELECT COUNT(*) FROM call_records") as usize;
        let rows = level
            .checked_sub(have)
            .unwrap_or_else(|| panic!("level {level} is below the {have} records already there"));
        let fill_secs = fill(&core, &mut world, rows, &probes);
        let t = Instant::now();
        if core.db.backend() == Backend::Postgres {
            core.db
                .write(|c| c.execute_batch("ANALYZE call_records; ANALYZE subjects"))
                .unwrap();
        }
        settle(&core);
        let prepare_secs = t.elapsed().as_secs_f64();
        let total = count(&core, "SELECT COUNT(*) FROM call_records");
        let subjects = count(&core, "SELECT COUNT(*) FROM subjects");
        println!(
            "  {name} {level}: {total} records, {subjects} subjects; seeded in {seed_secs:.1} s, \
             filled {rows} in {fill_secs:.1} s ({:.0} rows/s), vacuum/analyze {prepare_secs:.1} s",
            rows as f64 / fill_secs
        );

        // Access bundle.
        let access = world.subjects[world.access.unwrap()].id.clone();
        let b = bundle(
            &core,
            &access,
            cfg.bundle_runs,
            cfg.access_calls,
            out_dir.path(),
        );
        let bs = sorted(b.secs.clone());
        let median = percentile(&bs, 0.5);
        let ratio = median / *first_bundle.get_or_insert(median);
        println!(
            "    access bundle ({} calls, {} KB): median {:.1} ms (min {:.1}, first {:.1}) = {ratio:.2}x \
             the first level; for_request {:.1} ms",
            b.rows,
            b.bytes / 1000,
            median * 1e3,
            bs[0] * 1e3,
            b.secs[0] * 1e3,
            b.for_request_secs * 1e3
        );

        // Time to unreadable, and the erasure rate.
        settle(&core);
        let e = erase_group(&core, &groups[0]);
        settle(&core);
        let shred = sorted(shred_group(&core, &groups[1]));
        let unreadable = sorted(e.unreadable.clone());
        let still = sorted(e.still_readable.clone());
        let total_erase = sorted(e.total.clone());
        // Per subject: surely under the target (seen gone before it), surely over
        // (seen still there after it); for the rest the observer's gap straddles it.
        let surely_under = unreadable.iter().filter(|u| **u * 1e3 < TARGET_MS).count();
        let surely_over = still.iter().filter(|l| **l * 1e3 >= TARGET_MS).count();
        println!(
            "    unreadable after erasure was called: median {:.2} ms, p99 {:.2} ms (target {TARGET_MS} ms; \
             last seen readable: median {:.2} ms, p99 {:.2} ms); whole erasure: median {:.2} ms, p99 {:.2} ms; \
             key destruction alone: median {:.2} ms, p99 {:.2} ms; of {} subjects {surely_under} surely under \
             the target, {surely_over} surely over",
            percentile(&unreadable, 0.5) * 1e3,
            percentile(&unreadable, 0.99) * 1e3,
            percentile(&still, 0.5) * 1e3,
            percentile(&still, 0.99) * 1e3,
            percentile(&total_erase, 0.5) * 1e3,
            percentile(&total_erase, 0.99) * 1e3,
            percentile(&shred, 0.5) * 1e3,
            percentile(&shred, 0.99) * 1e3,
            unreadable.len(),
        );

        // Retention and the raw baselines.
        settle(&core);
        let r = retention_group(&core, &groups[2]);
        settle(&core);
        let (d_rows, d_secs) = raw_group(&core, &groups[3], &delete_sql(), false);
        settle(&core);
        let (u_rows, u_secs) = raw_group(&core, &groups[4], &pseudonymise_sql(), false);
        settle(&core);
        let (v_rows, v_secs) = raw_group(&core, &groups[5], &pseudonymise_sql(), true);
        settle(&core);
        let raw_delete = d_rows as f64 / d_secs;
        let raw_update = u_rows as f64 / u_secs;
        let raw_update_vacuum = v_rows as f64 / v_secs;
        let erase_rate = e.rows as f64 / e.secs;
        let retention_rate = r.rows as f64 / r.run_secs;
        let retention_exec = r.rows as f64 / (r.run_secs - r.plan_secs).max(1e-9);
        println!(
            "    raw DELETE: {raw_delete:.0} rows/s ({d_rows} rows); raw pseudonymising UPDATE: {raw_update:.0} rows/s \
             = {} of DELETE; the UPDATE with a vacuum after each subject: {raw_update_vacuum:.0} rows/s = {}",
            r3(raw_update / raw_delete),
            r3(raw_update_vacuum / raw_delete)
        );
        println!(
            "    erasure (for_request): {erase_rate:.0} rows/s = {} of raw DELETE, {} of raw UPDATE, {} of \
             UPDATE + vacuum ({} rows, {} subjects)",
            r3(erase_rate / raw_delete),
            r3(erase_rate / raw_update),
            r3(erase_rate / raw_update_vacuum),
            e.rows,
            groups[0].len()
        );
        println!(
            "    retention::run: {retention_rate:.0} rows/s = {} of raw DELETE ({} rows in {:.2} s, of which \
             {:.2} s the walk over {} subjects); without the walk {retention_exec:.0} rows/s = {}",
            r3(retention_rate / raw_delete),
            r.rows,
            r.run_secs,
            r.plan_secs,
            r.subjects_checked,
            r3(retention_exec / raw_delete)
        );
        levels.push(json!({
            "level": level,
            "call_records": total,
            "subjects": subjects,
            "setup": {
                "seed_secs": r2(seed_secs),
                "fill_rows": rows,
                "fill_secs": r2(fill_secs),
                "fill_rows_per_sec": (rows as f64 / fill_secs).round(),
                "vacuum_analyze_secs": r2(prepare_secs),
            },
            "access_bundle": {
                "calls": b.rows,
                "zip_bytes": b.bytes,
                "runs": b.secs.len(),
                "median_ms": ms(median),
                "min_ms": ms(bs[0]),
                "first_ms": ms(b.secs[0]),
                "for_request_ms": ms(b.for_request_secs),
                "ratio_to_first_level": r2(ratio),
            },
            "unreadable": {
                "subjects": unreadable.len(),
                "poll_us": POLL.as_micros() as u64,
                "after_erase_median_ms": ms(percentile(&unreadable, 0.5)),
                "after_erase_p99_ms": ms(percentile(&unreadable, 0.99)),
                "last_seen_readable_median_ms": ms(percentile(&still, 0.5)),
                "last_seen_readable_p99_ms": ms(percentile(&still, 0.99)),
                "erasure_whole_median_ms": ms(percentile(&total_erase, 0.5)),
                "erasure_whole_p99_ms": ms(percentile(&total_erase, 0.99)),
                "key_destruction_median_ms": ms(percentile(&shred, 0.5)),
                "key_destruction_p99_ms": ms(percentile(&shred, 0.99)),
                "target_ms": TARGET_MS,
                "target_met": percentile(&unreadable, 0.99) * 1e3 < TARGET_MS,
                "surely_under_target": surely_under,
                "surely_over_target": surely_over,
            },
            "purge": {
                "subjects_per_group": groups[0].len(),
                "calls_per_subject": cfg.calls_per_subject,
                "raw_delete_rows": d_rows,
                "raw_delete_rows_per_sec": raw_delete.round(),
                "raw_update_rows": u_rows,
                "raw_update_rows_per_sec": raw_update.round(),
                "raw_update_ratio_to_raw_delete": r3(raw_update / raw_delete),
                "raw_update_vacuum_rows": v_rows,
                "raw_update_vacuum_rows_per_sec": raw_update_vacuum.round(),
                "raw_update_vacuum_ratio_to_raw_delete": r3(raw_update_vacuum / raw_delete),
                "erase_rows": e.rows,
                "erase_rows_per_sec": erase_rate.round(),
                "erase_ratio_to_raw_delete": r3(erase_rate / raw_delete),
                "erase_ratio_to_raw_update": r3(erase_rate / raw_update),
                "erase_ratio_to_raw_update_vacuum": r3(erase_rate / raw_update_vacuum),
                "retention_rows": r.rows,
                "retention_secs": r2(r.run_secs),
                "retention_walk_secs": r2(r.plan_secs),
                "retention_subjects_checked": r.subjects_checked,
                "retention_rows_per_sec": retention_rate.round(),
                "retention_ratio_to_raw_delete": r3(retention_rate / raw_delete),
                "retention_without_walk_rows_per_sec": retention_exec.round(),
                "retention_without_walk_ratio_to_raw_delete": r3(retention_exec / raw_delete),
            },
        }));
    }
    json!({ "levels": levels })
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
        println!("rights: run with `cargo bench -p steward --bench rights`");
        return;
    }
    if let Ok(filter) = std::env::var("STEWARD_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .try_init();
    }
    let mut levels: Vec<usize> = std::env::var("STEWARD_BENCH_LEVELS")
        .unwrap_or_else(|_| "1000000,3000000".into())
        .split(',')
        .filter_map(|v| v.trim().replace('_', "").parse().ok())
        .collect();
    levels.sort_unstable();
    levels.dedup();
    assert!(!levels.is_empty(), "STEWARD_BENCH_LEVELS: no level");
    let cfg = Config {
        levels,
        subjects_per_million: env_usize("STEWARD_BENCH_SUBJECTS_PER_MILLION", 20_000),
        group: env_usize("STEWARD_BENCH_GROUP", 50).max(1),
        calls_per_subject: env_usize("STEWARD_BENCH_CALLS_PER_SUBJECT", 100).max(2),
        access_calls: env_usize("STEWARD_BENCH_ACCESS_CALLS", 1_000).max(2),
        bundle_runs: env_usize("STEWARD_BENCH_BUNDLE_RUNS", 9).max(1),
    };
    let nproc = std::thread::available_parallelism().map_or(0, |n| n.get());
    let cpu = cpu_model();
    println!(
        "rights: levels {:?} call records; {} background subjects per million; groups of {} subjects \
         with {} calls; access subject with {} calls; {nproc} cores, {cpu}",
        cfg.levels, cfg.subjects_per_million, cfg.group, cfg.calls_per_subject, cfg.access_calls
    );
    let url = std::env::var("STEWARD_BENCH_DATABASE_URL")
        .or_else(|_| std::env::var("STEWARD_TEST_DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let only = std::env::var("STEWARD_BENCH_BACKENDS").unwrap_or_default();
    let wanted = |b: &str| only.is_empty() || only.split(',').any(|x| x.trim() == b);
    let started = Instant::now();
    let mut results = serde_json::Map::new();
    if wanted("sqlite") {
        let t = Target::sqlite();
        results.insert("sqlite".into(), run_backend("sqlite", &t, &cfg));
    }
    if wanted("postgres")
        && let Some(t) = Target::postgres(&url)
    {
        results.insert("postgres".into(), run_backend("postgres", &t, &cfg));
    }
    let report = json!({
        "benchmark": "rights",
        "levels": cfg.levels,
        "background_subjects_per_million": cfg.subjects_per_million,
        "subjects_per_group": cfg.group,
        "calls_per_subject": cfg.calls_per_subject,
        "access_calls": cfg.access_calls,
        "bundle_runs": cfg.bundle_runs,
        "fill": "subjects through ingest_records; records through Conn::copy_in, sealed under the parties' keys",
        "machine": { "nproc": nproc, "cpu": cpu },
        "profile": if cfg!(debug_assertions) { "debug" } else { "release" },
        "total_secs": started.elapsed().as_secs_f64().round(),
        "results": Json::Object(results),
    });
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../bench-results");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("rights.json");
    std::fs::write(&out, serde_json::to_string_pretty(&report).unwrap() + "\n").unwrap();
    println!(
        "  wrote {} ({:.0} s in all)",
        out.display(),
        started.elapsed().as_secs_f64()
    );
}
