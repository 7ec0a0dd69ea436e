//! Call detail records into `call_records`, from PBX files and from the API.
//!
//! A file is detected (Asterisk `cdr_csv`, FreeSWITCH JSON or XML; see
//! `steward_cdr`) and streamed through two threads:
//!
//! ```text
//!  producer thread (batches of 10,000 rows)        calling thread
//!  parse → party of each number (E.164, cached)    one transaction per ~3 s of
//!  → link subjects (look up / new: key first,  →   batches (≤ 200,000 rows):
//!  cached) → id (keyed hash) → seal each           new subjects, then the records
//!  party's fields with their key                   not stored yet (copy_in), then
//!  (bounded channel: 2 batches)                    the quarantined rows
//! ```
//!
//! Memory stays bounded: one batch being built, two in flight, one being written,
//! and capped caches. Re-sending a record adds nothing: its id is a keyed hash of
//! the tenant, the source format and the parser's key `(leg_id, raw_hash,
//! occurrence)`, and ids already stored are skipped. A row that cannot be read
//! costs only itself: it is counted as rejected and recorded in `cdr_quarantine` by
//! file, line and reason (never its content). A file whose layout is not one
//! Steward reads is refused as a whole, with a message saying so, and nothing of it
//! is stored.
//!
//! Raw values (numbers as written, names) are kept as text: as they were when they
//! are UTF-8, else as `base64:` followed by the bytes in base64 (see [`raw_text`]).
//! Each file ends with one audit entry (`ingest`, with counts); each transaction
//! that creates subjects writes one `subject.create` entry. Figures and the
//! reasoning behind the batch and transaction sizes: `docs/PERFORMANCE.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{BufReader, Cursor, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::Instant;

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use steward_cdr::{CallRecord, Disposition, Format, Records, RowError, SNIFF_BYTES};
use steward_crypto::IdentifierKind;
use steward_store::{Conn, Value, params, placeholders};
use utoipa::ToSchema;

use super::parties::{Parties, Party, PartyKey, SUBJECT_COLUMNS, SlotId, created_event};
use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::clock::now;
use crate::core::{Steward, Tx};
use crate::error::{Error, Result};
use crate::tenants::{self, TenantLock};

/// The table's columns, in the order rows are built.
pub const COLUMNS: [&str; 27] = [
    "id",
    "tenant_id",
    "source_format",
    "leg_id",
    "linked_id",
    "caller_subject_id",
    "callee_subject_id",
    "caller_number_enc",
    "caller_raw_enc",
    "caller_name_enc",
    "ip_enc",
    "roaming_network_enc",
    "callee_number_enc",
    "callee_raw_enc",
    "start_at",
    "answer_at",
    "end_at",
    "duration",
    "billsec",
    "disposition",
    "hangup_cause",
    "direction",
    "data_bytes",
    "account_code",
    "context",
    "ama_flags",
    "ingested_at",
];

/// Prefix of a raw value that was not UTF-8 (or that starts with this prefix).
pub const RAW_BASE64_PREFIX: &str = "base64:";

/// A transaction takes batches until it holds this many rows or has run this
/// long, waiting at most `TX_WAIT` for the next batch.
const TX_ROWS: usize = 200_000;
const TX_TIME: std::time::Duration = std::time::Duration::from_secs(3);
const TX_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// Ids per "already stored?" query (SQLite allows 32,766 parameters).
const EXISTING_CHUNK: usize = 1_000;

const QUARANTINE_SQL: &str = "INSERT INTO cdr_quarantine (id, tenant_id, source, line, reason, \
     source_format, first_seen_at) VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO NOTHING";

/// Tuning for file ingest.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows (good and bad) per transaction.
    pub batch_rows: usize,
    /// Rejected rows listed per file in the report (all are counted and quarantined).
    pub max_listed_errors: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            batch_rows: 10_000,
            max_listed_errors: 1_000,
        }
    }
}

/// A row that could not be read.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quarantined {
    pub line: u64,
    pub reason: String,
}

/// What happened to one file.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FileReport {
    /// The file as named.
    pub file: String,
    /// `asterisk-csv`, `freeswitch-json` or `freeswitch-xml`.
    pub format: Option<String>,
    pub accepted: u64,
    /// Records already stored (sent before).
    pub duplicate: u64,
    /// Rows that could not be read (quarantined).
    pub rejected: u64,
    /// Set when the file was refused as a whole: nothing of it was stored.
    pub refused: Option<String>,
    /// The rejected rows, the first [`Options::max_listed_errors`] of them.
    pub errors: Vec<Quarantined>,
    /// Rejected rows beyond those listed.
    pub errors_not_listed: u64,
    pub seconds: f64,
}

/// What one `ingest cdr` run did, over all its files.
#[derive(Debug, Clone, Default, Serialize)]
pub struct IngestReport {
    pub tenant_id: String,
    pub accepted: u64,
    pub duplicate: u64,
    pub rejected: u64,
    /// Files refused as a whole.
    pub refused_files: u64,
    /// `external_party` subjects created for parties seen for the first time.
    pub subjects_created: u64,
    pub files: Vec<FileReport>,
}

/// The answer to records sent through the API.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RecordsReport {
    pub accepted: u64,
    pub duplicate: u64,
    /// Always 0: a request with an invalid record is refused as a whole.
    pub rejected: u64,
    pub subjects_created: u64,
    /// Each record's call id (32 hexadecimal digits), in the order sent, also
    /// for duplicates: what a recording of the call is uploaded against.
    pub ids: Vec<String>,
}

/// Where a file ingest is, for a progress display.
#[derive(Debug, Clone)]
pub struct Progress<'a> {
    pub file: &'a str,
    /// 1-based.
    pub file_index: usize,
    pub files: usize,
    pub bytes_read: u64,
    pub bytes_total: u64,
    /// Rows (good and bad) done in this file.
    pub rows: u64,
    pub accepted: u64,
}

/// Who may ingest: a tenant's admin or an operator, for a tenant they see, when
/// the policy declares traffic data for providing the service.
fn check_ingest(core: &Steward, actor: &Actor, tenant_id: &str) -> Result<()> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(&[Role::TenantAdmin, Role::Operator], "ingest call records")?;
    core.policy
        .check_use("traffic_data", "provision")
        .map_err(|e| Error::invalid("category", e.to_string()))?;
    core.db
        .read(|c| c.query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id]))?
        .ok_or_else(|| Error::NotFound("tenant".into()))?;
    Ok(())
}

/// Ingests PBX files into `tenant_id`, in order. A refused file is reported (and
/// the others still ingested); any other failure stops the run with an error, and
/// what was committed before it stays (a second run skips it as duplicate).
pub fn ingest_files(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    files: &[PathBuf],
    opts: &Options,
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<IngestReport> {
    check_ingest(core, actor, tenant_id)?;
    let mut builder = Builder::new(core, actor, tenant_id);
    let mut report = IngestReport {
        tenant_id: tenant_id.to_owned(),
        ..IngestReport::default()
    };
    for (i, path) in files.iter().enumerate() {
        let created_before = builder.parties.created;
        let f = ingest_file(
            &mut builder,
            path,
            opts,
            (i + 1, files.len()),
            &mut *progress,
        )?;
        let created = builder.parties.created - created_before;
        if f.refused.is_none() {
            core.write(actor, |tx| {
                tx.audit(Event {
                    tenant_id: Some(tenant_id.to_owned()),
                    action: "ingest".into(),
                    category: Some("traffic_data".into()),
                    purpose: Some("provision".into()),
                    detail: serde_json::json!({
                        "source": "file", "format": f.format, "accepted": f.accepted,
                        "duplicate": f.duplicate, "rejected": f.rejected,
                        "subjects_created": created,
                    }),
                    ..Event::default()
                })
            })?;
        } else {
            report.refused_files += 1;
        }
        report.accepted += f.accepted;
        report.duplicate += f.duplicate;
        report.rejected += f.rejected;
        report.files.push(f);
    }
    report.subjects_created = builder.parties.created;
    Ok(report)
}

/// A reader that counts the bytes read through it (for the progress display).
struct Counting<R> {
    inner: R,
    count: Arc<AtomicU64>,
}

impl<R: Read> Read for Counting<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Opens and sniffs a file: its records, its format and its size; or why it is refused.
fn open(path: &Path, shown: &str, count: Arc<AtomicU64>) -> Result<(Records, Format, u64), String> {
    let mut file = File::open(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let mut head = Vec::new();
    (&mut file)
        .take(SNIFF_BYTES as u64)
        .read_to_end(&mut head)
        .map_err(|e| format!("cannot read {shown}: {e}"))?;
    let format = steward_cdr::detect(&head, Some(shown)).map_err(|e| e.to_string())?;
    let input = Counting {
        inner: Cursor::new(head).chain(file),
        count,
    };
    let records =
        steward_cdr::parse_reader(BufReader::with_capacity(SNIFF_BYTES, input), Some(shown))
            .map_err(|e| e.to_string())?;
    Ok((records, format, total))
}

fn ingest_file(
    builder: &mut Builder<'_>,
    path: &Path,
    opts: &Options,
    (file_index, files): (usize, usize),
    progress: &mut dyn FnMut(&Progress<'_>),
) -> Result<FileReport> {
    let started = Instant::now();
    let shown = path.display().to_string();
    let mut report = FileReport {
        file: shown.clone(),
        ..FileReport::default()
    };
    let count = Arc::new(AtomicU64::new(0));
    let (records, format, total) = match open(path, &shown, count.clone()) {
        Ok(opened) => opened,
        Err(why) => {
            report.refused = Some(why);
            return Ok(report);
        }
    };
    report.format = Some(format.as_str().to_owned());
    // The quarantine names the file by its full path when it can.
    let source = std::fs::canonicalize(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| shown.clone());
    let core = builder.core;
    let actor = builder.actor;
    let batch_rows = opts.batch_rows.max(1);
    let mut rows_done = 0u64;
    let producing = &mut *builder;
    std::thread::scope(|s| -> Result<()> {
        let (tx, rx) = mpsc::sync_channel::<Result<Batch>>(2);
        let producer =
            s.spawn(move || produce(producing, records, batch_rows, format, &source, tx));
        let mut failed = None;
        let mut write_secs = 0.0;
        let mut wait_secs = 0.0;
        let mut transactions = 0u32;
        loop {
            // Wait for work outside any transaction: the write lock is never held idle.
            let wait = Instant::now();
            let first = match rx.recv() {
                Ok(Ok(b)) => b,
                Ok(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                Err(_) => break,
            };
            wait_secs += wait.elapsed().as_secs_f64();
            let t = Instant::now();
            // Several batches per transaction: fewer commits rewrite fewer index
            // pages (SQLite) and flush the log less often (both).
            let done = core.write(actor, |tx| {
                let mut done: Vec<Written> = Vec::new();
                let mut next = Some(first);
                let mut rows = 0usize;
                while let Some(b) = next.take() {
                    let w = write_batch_in(tx, b)?;
                    rows += w.rows as usize;
                    done.push(w);
                    progress(&Progress {
                        file: &shown,
                        file_index,
                        files,
                        bytes_read: count.load(Ordering::Relaxed),
                        bytes_total: total,
                        rows: rows_done + rows as u64,
                        accepted: report.accepted + done.iter().map(|w| w.accepted).sum::<u64>(),
                    });
                    if rows >= TX_ROWS || t.elapsed() >= TX_TIME {
                        break;
                    }
                    next = match rx.recv_timeout(TX_WAIT) {
                        Ok(Ok(b)) => Some(b),
                        Ok(Err(e)) => return Err(e),
                        Err(_) => None,
                    };
                }
                Ok(done)
            });
            write_secs += t.elapsed().as_secs_f64();
            transactions += 1;
            let done = match done {
                Ok(done) => done,
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            };
            for w in done {
                report.accepted += w.accepted;
                report.duplicate += w.records - w.accepted;
                report.rejected += w.bad.len() as u64;
                for e in w.bad {
                    if report.errors.len() < opts.max_listed_errors {
                        report.errors.push(Quarantined {
                            line: e.line,
                            reason: e.reason,
                        });
                    } else {
                        report.errors_not_listed += 1;
                    }
                }
                rows_done += w.rows;
            }
        }
        tracing::debug!(write_secs, wait_secs, transactions, "call record writer");
        // Stops the producer if we stopped early (its next send fails).
        drop(rx);
        let produced = producer
            .join()
            .map_err(|_| Error::Internal("the call record reader panicked".into()))?;
        match failed {
            Some(e) => Err(e),
            None => produced,
        }
    })?;
    report.seconds = started.elapsed().as_secs_f64();
    tracing::debug!(
        file = %report.file,
        seconds = report.seconds,
        link_secs = builder.link_secs,
        link_steps = ?builder.parties.timings,
        build_secs = builder.build_secs,
        "call record file ingested"
    );
    Ok(report)
}

/// The producer thread: reads records and sends built batches until the input
/// ends, the consumer hangs up, or something fails (sent as the last item).
fn produce(
    builder: &mut Builder<'_>,
    records: Records,
    batch_rows: usize,
    format: Format,
    source: &str,
    tx: mpsc::SyncSender<Result<Batch>>,
) -> Result<()> {
    let mut good: Vec<CallRecord> = Vec::with_capacity(batch_rows);
    let mut bad: Vec<RowError> = Vec::new();
    let mut records = records;
    loop {
        for item in records.by_ref() {
            match item {
                Ok(r) => good.push(r),
                Err(e) => bad.push(e),
            }
            if good.len() + bad.len() >= batch_rows {
                break;
            }
        }
        if good.is_empty() && bad.is_empty() {
            break;
        }
        let batch = builder.build(
            std::mem::replace(&mut good, Vec::with_capacity(batch_rows)),
            std::mem::take(&mut bad),
            format,
            source,
        );
        let failed = batch.is_err();
        if tx.send(batch).is_err() || failed {
            break;
        }
    }
    Ok(())
}

/// Rows ready to insert, and the rows that could not be read.
struct Batch {
    tenant_id: String,
    /// `ingested_at` of the rows.
    at: i64,
    /// New `external_party` subjects named by `rows` ([`SUBJECT_COLUMNS`]).
    subjects: Vec<Vec<Value>>,
    rows: Vec<Prepared>,
    quarantine: Vec<Vec<Value>>,
    bad: Vec<RowError>,
}

/// A record ready to store: linked, sealed, with its id, held in few allocations
/// (ciphertexts and subject ids are shared with the caches). The writer turns it
/// into column values ([`Prepared::values`]) as it inserts, so that the values
/// are allocated and freed by the same thread, as the ceiling's are.
struct Prepared {
    id: [u8; 16],
    source_format: Format,
    leg_id: Option<String>,
    linked_id: Option<String>,
    caller_id: Option<Arc<str>>,
    callee_id: Option<Arc<str>>,
    /// In [`COLUMNS`] order: caller number, raw, name, IP, roaming network;
    /// callee number, raw.
    sealed: [Option<Arc<[u8]>>; 7],
    start: i64,
    answer: Option<i64>,
    end: i64,
    duration: i64,
    billsec: i64,
    disposition: Disposition,
    hangup_cause: Option<String>,
    direction: Option<String>,
    data_bytes: Option<i64>,
    account_code: Option<String>,
    context: Option<String>,
    ama_flags: Option<String>,
}

impl Prepared {
    /// The row, in [`COLUMNS`] order.
    fn values(self, tenant_id: &str, at: i64) -> Vec<Value> {
        let id = |p: Option<Arc<str>>| p.map_or(Value::Null, |p| Value::Text(p.to_string()));
        let mut v = Vec::with_capacity(COLUMNS.len());
        v.push(Value::Bytes(self.id.to_vec()));
        v.push(Value::Text(tenant_id.to_owned()));
        v.push(Value::Text(self.source_format.as_str().to_owned()));
        v.push(Value::from(self.leg_id));
        v.push(Value::from(self.linked_id));
        v.push(id(self.caller_id));
        v.push(id(self.callee_id));
        for s in self.sealed {
            v.push(s.map_or(Value::Null, |b| Value::Bytes(b.to_vec())));
        }
        v.push(Value::Int(self.start));
        v.push(int(self.answer));
        v.push(Value::Int(self.end));
        v.push(Value::Int(self.duration));
        v.push(Value::Int(self.billsec));
        v.push(Value::Text(self.disposition.as_asterisk().to_owned()));
        v.push(Value::from(self.hangup_cause));
        v.push(Value::from(self.direction));
        v.push(int(self.data_bytes));
        v.push(Value::from(self.account_code));
        v.push(Value::from(self.context));
        v.push(Value::from(self.ama_flags));
        v.push(Value::Int(at));
        v
    }
}

/// What writing one batch did.
struct Written {
    /// Records in the batch, and how many of them were new.
    records: u64,
    accepted: u64,
    /// Rows of the source (good and bad).
    rows: u64,
    bad: Vec<RowError>,
}

/// Writes one batch inside `tx`: new subjects, then the records (skipping those
/// already stored), then the quarantined rows.
fn write_batch_in(tx: &mut Tx<'_>, batch: Batch) -> Result<Written> {
    let Batch {
        tenant_id,
        at,
        subjects,
        rows,
        quarantine,
        bad,
    } = batch;
    let records = rows.len() as u64;
    if !subjects.is_empty() {
        let n = subjects.len();
        tx.conn
            .copy_in("subjects", &SUBJECT_COLUMNS, &mut subjects.into_iter())?;
        tx.audit(created_event(&tenant_id, n))?;
    }
    let accepted = insert_rows(tx.conn, &tenant_id, at, rows)?;
    for q in &quarantine {
        tx.conn.execute(QUARANTINE_SQL, q)?;
    }
    Ok(Written {
        records,
        accepted,
        rows: records + bad.len() as u64,
        bad,
    })
}

/// Inserts rows, skipping ids already stored (and repeats within the batch);
/// returns how many were new.
///
/// Both databases take the rows through `Conn::copy_in` (a cached prepared insert
/// on SQLite, binary COPY on PostgreSQL), which cannot skip conflicts, so the ids
/// already stored are asked for first. Ids begin with the start time, so for a
/// batch spanning at most a day one range query on `(tenant_id, start_at)` finds
/// every candidate (nothing, for new traffic); a wider batch asks by id. SQLite has
/// one writer; on PostgreSQL a per-tenant transaction lock keeps two ingests of a
/// tenant from passing each other between the question and the COPY.
fn insert_rows(conn: &mut dyn Conn, tenant_id: &str, at: i64, rows: Vec<Prepared>) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    tenants::lock(conn, TenantLock::CallRecords, tenant_id)?;
    let stored = stored_ids(conn, tenant_id, &rows)?;
    let keep: Vec<bool> = {
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        rows.iter()
            .map(|r| !stored.contains(r.id.as_slice()) && seen.insert(r.id))
            .collect()
    };
    let mut fresh = rows
        .into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then(|| row.values(tenant_id, at)));
    Ok(conn.copy_in("call_records", &COLUMNS, &mut fresh)?)
}

/// The ids of `rows` already in `call_records`.
fn stored_ids(
    conn: &mut dyn Conn,
    tenant_id: &str,
    rows: &[Prepared],
) -> Result<std::collections::HashSet<Vec<u8>>> {
    let (lo, hi) = rows.iter().fold((i64::MAX, i64::MIN), |(lo, hi), r| {
        (lo.min(r.start), hi.max(r.start))
    });
    let mut stored = std::collections::HashSet::new();
    if hi.saturating_sub(lo) <= 86_400 {
        for r in conn.query(
            "SELECT id FROM call_records WHERE tenant_id = $1 AND start_at >= $2 AND start_at <= $3",
            params![tenant_id, lo, hi],
        )? {
            stored.insert(r.bytes(0)?);
        }
        return Ok(stored);
    }
    let ids: Vec<Value> = rows.iter().map(|r| Value::Bytes(r.id.to_vec())).collect();
    for chunk in ids.chunks(EXISTING_CHUNK) {
        for r in conn.query(
            &format!(
                "SELECT id FROM call_records WHERE id IN ({})",
                placeholders(1, chunk.len())
            ),
            chunk,
        )? {
            stored.insert(r.bytes(0)?);
        }
    }
    Ok(stored)
}

/// Raw PBX bytes as text: unchanged when UTF-8, else `base64:` and the bytes in
/// base64 (also when UTF-8 text happens to start with `base64:`). [`raw_bytes`]
/// reverses it.
pub fn raw_text(bytes: &[u8]) -> String {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.starts_with(RAW_BASE64_PREFIX) => s.to_owned(),
        _ => format!("{RAW_BASE64_PREFIX}{}", Base64::encode_string(bytes)),
    }
}

/// [`raw_text`] without a copy when the bytes are UTF-8 already.
fn raw_str(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    match std::str::from_utf8(bytes) {
        Ok(s) if !s.starts_with(RAW_BASE64_PREFIX) => std::borrow::Cow::Borrowed(s),
        _ => std::borrow::Cow::Owned(raw_text(bytes)),
    }
}

/// The bytes a [`raw_text`] value stands for.
pub fn raw_bytes(text: &str) -> Vec<u8> {
    match text.strip_prefix(RAW_BASE64_PREFIX) {
        Some(b64) => Base64::decode_vec(b64).unwrap_or_else(|_| text.as_bytes().to_vec()),
        None => text.as_bytes().to_vec(),
    }
}

fn hex(bytes: &[u8], out: &mut String) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xF)]));
    }
}

fn int(v: Option<i64>) -> Value {
    v.map_or(Value::Null, Value::Int)
}

/// Ciphertexts made so far in this run, per party, field and value. A party's
/// number, name and address recur in many rows; the ciphertext of the same value
/// under the same key and associated data (`call_records.<field>|<subject id>`)
/// is re-used instead of sealing it again, which costs a key schedule and a
/// system call for the nonce each time. This only shows that a value repeats,
/// among rows that the subject column already ties to that party.
/// Ciphertexts of one party's field, by plaintext.
type Sealed = HashMap<String, Arc<[u8]>>;

#[derive(Default)]
struct SealCache {
    by_field: HashMap<(SlotId, &'static str), Sealed>,
    entries: usize,
}

/// Values cached before the cache is emptied.
const MAX_SEALED: usize = 400_000;

impl SealCache {
    /// `value` sealed as `call_records.<field>` of `party`; nothing without a party.
    fn seal(
        &mut self,
        aad: &mut String,
        party: Option<(SlotId, &Party)>,
        field: &'static str,
        value: Option<&str>,
    ) -> Result<Option<Arc<[u8]>>> {
        let (Some((slot, p)), Some(v)) = (party, value) else {
            return Ok(None);
        };
        if let Some(c) = self.by_field.get(&(slot, field)).and_then(|m| m.get(v)) {
            return Ok(Some(c.clone()));
        }
        aad.clear();
        let _ = write!(aad, "call_records.{field}|{}", p.id);
        let sealed: Arc<[u8]> = p.key.encrypt(v.as_bytes(), aad.as_bytes())?.into();
        if self.entries >= MAX_SEALED {
            self.by_field.clear();
            self.entries = 0;
        }
        self.by_field
            .entry((slot, field))
            .or_default()
            .insert(v.to_owned(), sealed.clone());
        self.entries += 1;
        Ok(Some(sealed))
    }
}

/// Turns parsed records into rows: links parties, seals, computes ids.
struct Builder<'a> {
    core: &'a Steward,
    actor: &'a Actor,
    tenant_id: String,
    /// `ingested_at` of every row of the run.
    at: i64,
    parties: Parties,
    sealed: SealCache,
    aad: String,
    mac_input: String,
    /// Time spent linking parties and building rows (for the debug log).
    link_secs: f64,
    build_secs: f64,
}

impl<'a> Builder<'a> {
    fn new(core: &'a Steward, actor: &'a Actor, tenant_id: &str) -> Builder<'a> {
        Builder {
            core,
            actor,
            tenant_id: tenant_id.to_owned(),
            at: now(),
            parties: Parties::new(core, tenant_id),
            sealed: SealCache::default(),
            aad: String::with_capacity(96),
            mac_input: String::with_capacity(160),
            link_secs: 0.0,
            build_secs: 0.0,
        }
    }

    fn build(
        &mut self,
        records: Vec<CallRecord>,
        bad: Vec<RowError>,
        format: Format,
        source: &str,
    ) -> Result<Batch> {
        let t = Instant::now();
        if self.parties.begin_batch() {
            self.sealed = SealCache::default();
        }
        let slots: Vec<(Option<SlotId>, Option<SlotId>)> = records
            .iter()
            .map(|r| {
                (
                    self.parties.slot_of(&r.caller_raw),
                    self.parties.slot_of(&r.callee_raw),
                )
            })
            .collect();
        let subjects = self.parties.resolve(
            self.core,
            slots
                .iter()
                .flat_map(|(a, b)| a.iter().chain(b.iter()).copied()),
            self.at,
        )?;
        self.link_secs += t.elapsed().as_secs_f64();
        let t = Instant::now();
        let mut rows = Vec::with_capacity(records.len());
        for (r, (caller, callee)) in records.into_iter().zip(slots) {
            rows.push(self.row(r, caller, callee)?);
        }
        let quarantine = bad
            .iter()
            .map(|e| self.quarantine_row(e, format, source))
            .collect();
        self.build_secs += t.elapsed().as_secs_f64();
        Ok(Batch {
            tenant_id: self.tenant_id.clone(),
            at: self.at,
            subjects,
            rows,
            quarantine,
            bad,
        })
    }

    fn quarantine_row(&mut self, e: &RowError, format: Format, source: &str) -> Vec<Value> {
        self.mac_input.clear();
        let _ = write!(
            self.mac_input,
            "{}\0{source}\0{}\0{}",
            self.tenant_id, e.line, e.reason
        );
        let id = self
            .core
            .keys
            .blind_index(IdentifierKind::Other("cdr_quarantine"), &self.mac_input);
        vec![
            Value::Bytes(id),
            Value::Text(self.tenant_id.clone()),
            Value::Text(source.to_owned()),
            Value::Int(i64::try_from(e.line).unwrap_or(i64::MAX)),
            Value::Text(e.reason.clone()),
            Value::Text(format.as_str().to_owned()),
            Value::Int(self.at),
        ]
    }

    /// 8 bytes of start time (sign bit flipped, big-endian: byte order is time
    /// order) and 8 bytes of a keyed hash of the tenant, the format and the
    /// parser's de-duplication key.
    fn record_id(&mut self, r: &CallRecord) -> [u8; 16] {
        self.mac_input.clear();
        let _ = write!(
            self.mac_input,
            "{}\0{}\0{}\0",
            self.tenant_id,
            r.source_format.as_str(),
            r.leg_id.as_deref().unwrap_or("")
        );
        hex(&r.raw_hash, &mut self.mac_input);
        let _ = write!(self.mac_input, "\0{}", r.occurrence);
        let mac = self
            .core
            .keys
            .blind_index(IdentifierKind::Other("cdr_record"), &self.mac_input);
        let mut id = [0u8; 16];
        let (time, keyed) = id.split_at_mut(8);
        time.copy_from_slice(&((r.start as u64) ^ (1 << 63)).to_be_bytes());
        for (d, s) in keyed.iter_mut().zip(&mac) {
            *d = *s;
        }
        id
    }

    fn row(
        &mut self,
        r: CallRecord,
        caller_slot: Option<SlotId>,
        callee_slot: Option<SlotId>,
    ) -> Result<Prepared> {
        let id = self.record_id(&r);
        let parties = &self.parties;
        let aad = &mut self.aad;
        let sealed = &mut self.sealed;
        let caller = caller_slot.and_then(|s| parties.party(s).map(|p| (s, p)));
        let callee = callee_slot.and_then(|s| parties.party(s).map(|p| (s, p)));
        let e164 = |s: Option<SlotId>| match s.and_then(|s| parties.key(s)) {
            Some(PartyKey::Phone(p)) => Some(p.as_str()),
            _ => None,
        };
        fn raw(b: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
            (!b.is_empty()).then(|| raw_str(b))
        }
        let caller_raw = raw(&r.caller_raw);
        let callee_raw = raw(&r.callee_raw);
        let name = r.caller_name_raw.as_deref().and_then(raw);
        let mut seal = |party, field, value: Option<&str>| sealed.seal(aad, party, field, value);
        let sealed = [
            // The caller's end of the call, under the caller's key.
            seal(caller, "caller_number", e164(caller_slot))?,
            seal(caller, "caller_raw", caller_raw.as_deref())?,
            seal(caller, "caller_name", name.as_deref())?,
            seal(caller, "ip", r.ip_address.as_deref())?,
            seal(caller, "roaming_network", r.roaming_network.as_deref())?,
            // The called end, under the callee's key.
            seal(callee, "callee_number", e164(callee_slot))?,
            seal(callee, "callee_raw", callee_raw.as_deref())?,
        ];
        Ok(Prepared {
            id,
            source_format: r.source_format,
            leg_id: r.leg_id,
            linked_id: r.linked_id,
            caller_id: caller.map(|(_, p)| p.id.clone()),
            callee_id: callee.map(|(_, p)| p.id.clone()),
            sealed,
            start: r.start,
            answer: r.answer,
            end: r.end,
            duration: r.duration_secs,
            billsec: r.billsec,
            disposition: r.disposition,
            hangup_cause: r.hangup_cause,
            direction: r.direction,
            data_bytes: r.data_bytes,
            account_code: r.account_code,
            context: r.context,
            ama_flags: r.ama_flags,
        })
    }
}

/// How a call ended, as Asterisk words it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum CallDisposition {
    #[serde(rename = "ANSWERED")]
    Answered,
    #[serde(rename = "NO ANSWER")]
    NoAnswer,
    #[serde(rename = "BUSY")]
    Busy,
    #[serde(rename = "FAILED")]
    Failed,
    #[serde(rename = "CONGESTION")]
    Congestion,
    #[serde(rename = "CANCEL")]
    Cancel,
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl From<CallDisposition> for Disposition {
    fn from(d: CallDisposition) -> Disposition {
        match d {
            CallDisposition::Answered => Disposition::Answered,
            CallDisposition::NoAnswer => Disposition::NoAnswer,
            CallDisposition::Busy => Disposition::Busy,
            CallDisposition::Failed => Disposition::Failed,
            CallDisposition::Congestion => Disposition::Congestion,
            CallDisposition::Cancel => Disposition::Cancel,
            CallDisposition::Unknown => Disposition::Unknown,
        }
    }
}

/// One call leg sent through the API. Times are Unix seconds (UTC).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCallRecord {
    /// The PBX's id of this leg (Asterisk `uniqueid`, FreeSWITCH `uuid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leg_id: Option<String>,
    /// The id shared by the legs of one call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_code: Option<String>,
    /// Calling number or PBX identifier, as the PBX wrote it.
    pub caller: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caller_name: Option<String>,
    /// Called number or PBX identifier, as dialled.
    pub callee: String,
    pub start: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub answer: Option<i64>,
    pub end: i64,
    /// Seconds from start to end; default `end - start`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<i64>,
    /// Billable seconds; default `end - answer`, or 0 when not answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub billsec: Option<i64>,
    /// Default `ANSWERED` when `answer` is set, else `NO ANSWER`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disposition: Option<CallDisposition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hangup_cause: Option<String>,
    /// `inbound` or `outbound`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direction: Option<String>,
    /// The caller's signalling address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
    /// The visited mobile network, `MCC-MNC` (e.g. `234-15`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roaming_network: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_bytes: Option<i64>,
}

/// Latest time accepted: the end of year 9999.
/// The latest call time accepted: the end of 9999, in Unix seconds.
pub const MAX_TIME: i64 = 253_402_300_799;
const MAX_TEXT: usize = 256;

impl NewCallRecord {
    /// Checks the record; `field` names a field as the request body does (`start`,
    /// or `[3].start` inside an array).
    fn to_call_record(&self, field: &dyn Fn(&str) -> String, index: usize) -> Result<CallRecord> {
        let bad = |name: &str, msg: &str| Error::invalid(&field(name), msg.to_owned());
        for (name, value) in [
            ("caller", Some(&self.caller)),
            ("callee", Some(&self.callee)),
            ("leg_id", self.leg_id.as_ref()),
            ("linked_id", self.linked_id.as_ref()),
            ("account_code", self.account_code.as_ref()),
            ("caller_name", self.caller_name.as_ref()),
            ("hangup_cause", self.hangup_cause.as_ref()),
        ] {
            if value.is_some_and(|v| v.len() > MAX_TEXT) {
                return Err(bad(name, "at most 256 bytes"));
            }
        }
        if !(0..=MAX_TIME).contains(&self.start) {
            return Err(bad(
                "start",
                "Unix seconds between 1970 and the end of 9999",
            ));
        }
        if self.end < self.start || self.end > MAX_TIME {
            return Err(bad("end", "must not be before start"));
        }
        if let Some(a) = self.answer
            && !(self.start..=self.end).contains(&a)
        {
            return Err(bad("answer", "must be between start and end"));
        }
        let duration = self.duration.unwrap_or(self.end - self.start);
        if duration < 0 {
            return Err(bad("duration", "must not be negative"));
        }
        let billsec = self
            .billsec
            .unwrap_or_else(|| self.answer.map_or(0, |a| self.end - a));
        if billsec < 0 || billsec > duration {
            return Err(bad("billsec", "must be between 0 and the duration"));
        }
        if self.data_bytes.is_some_and(|d| d < 0) {
            return Err(bad("data_bytes", "must not be negative"));
        }
        if let Some(ip) = &self.ip_address
            && ip.parse::<std::net::IpAddr>().is_err()
        {
            return Err(bad("ip_address", "not an IPv4 or IPv6 address"));
        }
        if let Some(n) = &self.roaming_network {
            let ok = n.split_once('-').is_some_and(|(mcc, mnc)| {
                mcc.len() == 3
                    && (2..=3).contains(&mnc.len())
                    && mcc.chars().chain(mnc.chars()).all(|c| c.is_ascii_digit())
            });
            if !ok {
                return Err(bad("roaming_network", "MCC-MNC, e.g. 234-15"));
            }
        }
        if let Some(d) = &self.direction
            && d != "inbound"
            && d != "outbound"
        {
            return Err(bad("direction", "inbound or outbound"));
        }
        let disposition =
            self.disposition
                .map(Disposition::from)
                .unwrap_or(if self.answer.is_some() {
                    Disposition::Answered
                } else {
                    Disposition::NoAnswer
                });
        let canonical = serde_json::to_vec(self).map_err(|e| Error::Internal(e.to_string()))?;
        let blank = |s: &Option<String>| s.clone().filter(|v| !v.is_empty());
        Ok(CallRecord {
            source_format: Format::Api,
            line: index as u64 + 1,
            leg_id: blank(&self.leg_id),
            linked_id: blank(&self.linked_id),
            account_code: blank(&self.account_code),
            caller_raw: self.caller.as_bytes().to_vec(),
            caller_name_raw: blank(&self.caller_name).map(String::into_bytes),
            clid_raw: None,
            callee_raw: self.callee.as_bytes().to_vec(),
            context: None,
            channel: None,
            dst_channel: None,
            last_app: None,
            last_data: None,
            start: self.start,
            answer: self.answer,
            end: self.end,
            duration_secs: duration,
            billsec,
            disposition,
            hangup_cause: blank(&self.hangup_cause),
            ama_flags: None,
            user_field: None,
            peer_account: None,
            sequence: None,
            ip_address: self.ip_address.clone(),
            roaming_network: self.roaming_network.clone(),
            data_bytes: self.data_bytes,
            direction: self.direction.clone(),
            csv_layout: None,
            raw_hash: steward_cdr::raw_hash(&canonical),
            occurrence: 0,
        })
    }
}

/// Ingests records sent through the API, in one transaction. Any invalid record
/// refuses the whole request (400 naming the field, `[i].field` in an array);
/// re-sent records count as duplicates.
pub fn ingest_records(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    records: &[NewCallRecord],
    as_array: bool,
) -> Result<RecordsReport> {
    check_ingest(core, actor, tenant_id)?;
    let mut parsed = Vec::with_capacity(records.len());
    let mut last: Option<([u8; 32], u32)> = None;
    for (i, r) in records.iter().enumerate() {
        let field = |name: &str| {
            if as_array {
                format!("[{i}].{name}")
            } else {
                name.to_owned()
            }
        };
        let mut rec = r.to_call_record(&field, i)?;
        // Identical records in a row are distinct calls, as in a file.
        rec.occurrence = match last {
            Some((h, n)) if h == rec.raw_hash => n.saturating_add(1),
            _ => 0,
        };
        last = Some((rec.raw_hash, rec.occurrence));
        parsed.push(rec);
    }
    let mut builder = Builder::new(core, actor, tenant_id);
    let batch = builder.build(parsed, Vec::new(), Format::Api, "api")?;
    let ids = batch
        .rows
        .iter()
        .map(|r| crate::recordings::call_id_text(&r.id))
        .collect();
    let written = core.write(actor, |tx| write_batch_in(tx, batch))?;
    let (accepted, total) = (written.accepted, written.records);
    let created = builder.parties.created;
    if total > 0 {
        core.write(actor, |tx| {
            tx.audit(Event {
                tenant_id: Some(tenant_id.to_owned()),
                action: "ingest".into(),
                category: Some("traffic_data".into()),
                purpose: Some("provision".into()),
                detail: serde_json::json!({
                    "source": "api", "accepted": accepted, "duplicate": total - accepted,
                    "rejected": 0, "subjects_created": created,
                }),
                ..Event::default()
            })
        })?;
    }
    Ok(RecordsReport {
        accepted,
        duplicate: total - accepted,
        rejected: 0,
        subjects_created: created,
        ids,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn raw_values_round_trip_as_text() {
        for raw in [
            &b"+44 7700 900123"[..],
            b"caf\xe9 \xff",
            b"base64:looks-encoded",
            b"",
        ] {
            let t = raw_text(raw);
            assert!(std::str::from_utf8(t.as_bytes()).is_ok());
            assert_eq!(raw_bytes(&t), raw);
        }
        assert_eq!(raw_text(b"1001"), "1001");
        assert_eq!(raw_text(b"\xe9"), "base64:6Q==");
    }

    #[test]
    fn start_at_is_where_the_rows_put_it() {
        assert_eq!(COLUMNS[14], "start_at");
    }
}
