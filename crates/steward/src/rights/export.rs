//! The access and portability bundle: one ZIP that explains itself.
//!
//! * `index.html` (with `pages/` when a table is long): what a person opens.
//!   Who holds their data and why, then one section per category with its
//!   items in plain words, their conversations, who received their data and
//!   their consent history as timelines (`pages.rs`).
//! * `data/<store>.json` and `.csv`: every registered store's rows about the
//!   subject with stable, documented field names (`view.rs`), times in ISO
//!   8601; `data/conversations.json` and `data/disclosures.json`; all
//!   described field by field in `schema.json`.
//! * `files/`: their photos, recordings and chat attachments, decrypted;
//!   `contacts/`: their contacts as vCard 4.0.
//! * `article15.json` and `.md`: the Article 15 information; `manifest.json`.
//!
//! Rows are read page by page and written as they are read (the pages of a
//! long table through a temporary file), so memory does not grow with the
//! bundle. Inside records shared with other people (a call, a chat) only what
//! the subject saw is opened with the other people's keys: the number they
//! dialled or were called from, a chat partner's messages and name as the
//! app showed them, each as the category's `other_parties` decides.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{BufRead, BufReader, BufWriter, Seek, Write};
use std::path::Path;

use serde::Serialize;
use serde_json::{Value as Json, json};
use steward_crypto::DataKey;
use steward_policy::OtherParties;
use steward_store::{Row, Value, params};
use utoipa::ToSchema;
use zip::write::SimpleFileOptions;

use super::pages::{self, Reader, Section, Shown, ShownConversation, ShownMessage, Table};
use super::view::{self, Cell, OtherKeys, Plan, View};
use super::{
    Kind, Request, State, audit_request, for_action, log_event, require_actionable, set_state,
};
use crate::access::Actor;
use crate::audit;
use crate::clock::{now, rfc3339};
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::registry::{PERSONAL_STORES, PersonalStore};

/// Rows read per query.
const PAGE: i64 = 2000;
/// The latest items of a timeline, or messages of a conversation, shown on
/// `index.html` (all of them are in the data files).
const SHOWN_ON_INDEX: usize = 1000;

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BundleSummary {
    pub request_id: String,
    pub subject_id: Option<String>,
    /// Set when the subject had been erased: the bundle says so and holds nothing else.
    pub erased_at: Option<i64>,
    /// Items held per store.
    pub counts: BTreeMap<String, u64>,
    pub files: Vec<String>,
    /// Files the records name whose content is missing from the blob store.
    pub missing_files: Vec<String>,
}

/// Writes the bundle for a verified access or portability request to `out`
/// (via a temporary file, renamed when complete) and fulfils the request.
pub fn for_request(
    core: &Steward,
    actor: &Actor,
    request_id: &str,
    out: &Path,
) -> Result<BundleSummary> {
    let req = core.write(actor, |tx| {
        let req = for_action(tx, request_id, "export data")?;
        require_actionable(&req, &[Kind::Access, Kind::Portability])?;
        Ok(req)
    })?;
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| Error::invalid("out", format!("cannot write {}: {e}", partial.display())))?;
    let summary = match write_bundle(core, &req, BufWriter::new(file)) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out)
        .map_err(|e| Error::invalid("out", format!("cannot write {}: {e}", out.display())))?;
    // The subject's copy, to download from the portal until it expires.
    let stored = store_bundle(core, &req, out)?;
    core.write(actor, |tx| {
        if let (Some((blob_key, size)), Some(subject)) = (&stored, &req.subject_id) {
            tx.conn.execute(
                "INSERT INTO access_bundles (request_id, tenant_id, subject_id, blob_key, size, \
                 created_at) VALUES ($1, $2, $3, $4, $5, $6)",
                params![
                    request_id,
                    req.tenant_id.as_str(),
                    subject.as_str(),
                    blob_key.as_str(),
                    *size as i64,
                    tx.at
                ],
            )?;
        }
        set_state(tx, request_id, State::Fulfilled)?;
        log_event(
            tx,
            request_id,
            "exported",
            json!({ "counts": summary.counts, "stored": stored.is_some() }),
        )?;
        audit_request(
            tx,
            &req,
            "request.export",
            json!({ "request_id": request_id, "counts": summary.counts }),
        )
    })?;
    Ok(summary)
}

fn options() -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .large_file(true)
}

fn zip_err(e: impl std::fmt::Display) -> Error {
    Error::Internal(format!("writing the bundle: {e}"))
}

/// The bundle being written: the archive and what has gone into it.
struct Bundle<W: Write + Seek> {
    zip: zip::ZipWriter<W>,
    summary: BundleSummary,
}

impl<W: Write + Seek> Bundle<W> {
    fn start(&mut self, name: &str) -> Result<()> {
        self.zip.start_file(name, options()).map_err(zip_err)?;
        self.summary.files.push(name.to_owned());
        Ok(())
    }

    fn put(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.start(name)?;
        self.zip.write_all(bytes).map_err(zip_err)
    }

    fn put_json(&mut self, name: &str, v: &Json) -> Result<()> {
        let bytes = serde_json::to_vec_pretty(v).map_err(zip_err)?;
        self.put(name, &bytes)
    }

    /// Copies a spooled file into the archive as `name`.
    fn put_spool(&mut self, name: &str, spool: Spool) -> Result<()> {
        let mut r = spool.reader()?;
        self.start(name)?;
        std::io::copy(&mut r, &mut self.zip).map_err(zip_err)?;
        Ok(())
    }
}

/// A temporary file written while the archive is busy with another entry.
struct Spool(BufWriter<std::fs::File>);

impl Spool {
    fn new() -> Result<Spool> {
        Ok(Spool(BufWriter::new(
            tempfile::tempfile().map_err(zip_err)?,
        )))
    }

    fn reader(self) -> Result<BufReader<std::fs::File>> {
        let mut f = self.0.into_inner().map_err(zip_err)?;
        f.seek(std::io::SeekFrom::Start(0)).map_err(zip_err)?;
        Ok(BufReader::new(f))
    }
}

/// Writes the bundle for `req` into `w`.
pub fn write_bundle<W: Write + Seek>(core: &Steward, req: &Request, w: W) -> Result<BundleSummary> {
    let mut b = Bundle {
        zip: zip::ZipWriter::new(w),
        summary: BundleSummary {
            request_id: req.id.clone(),
            subject_id: req.subject_id.clone(),
            erased_at: None,
            counts: BTreeMap::new(),
            files: Vec::new(),
            missing_files: Vec::new(),
        },
    };
    let Some(subject) = req.subject_id.clone() else {
        // Nothing is held: say so, and when.
        let erased_at = match &req.tombstone_id {
            Some(t) => core
                .db
                .read(|c| {
                    c.query_opt(
                        "SELECT erased_at FROM erasure_tombstones WHERE id = $1",
                        params![t.as_str()],
                    )
                })?
                .map(|r| r.i64(0))
                .transpose()?,
            None => None,
        };
        b.summary.erased_at = erased_at;
        let text = match erased_at {
            Some(at) => format!(
                "We hold no personal data about you. Your data was erased on {} \
                 (reference {}).\n",
                &rfc3339(at)[..10],
                req.tombstone_id.as_deref().unwrap_or("")
            ),
            None => "We hold no personal data about you.\n".to_owned(),
        };
        b.put("README.txt", text.as_bytes())?;
        let m = manifest(core, req, &b.summary);
        b.put_json("manifest.json", &m)?;
        b.zip.finish().map_err(zip_err)?;
        return Ok(b.summary);
    };
    let key = core.subject_key(&subject)?;
    let reader = Reader::new(&core.policy)?;
    let mut others = OtherKeys::new(core);
    // Files first, so that each row can name (and link to) its file.
    let mut files: HashMap<&'static str, HashMap<String, String>> = HashMap::new();
    for store in PERSONAL_STORES.iter() {
        if let Some(blob_column) = store.blob_column {
            let written = write_files(core, &mut b, store, blob_column, &subject, &key)?;
            files.insert(store.name, written);
        }
    }
    let mut tables: Vec<(&'static str, Table)> = Vec::new();
    let mut consent = Timeline::default();
    for store in PERSONAL_STORES.iter() {
        let view = view::view(store.name)
            .ok_or_else(|| Error::Internal(format!("{}: no view of the store", store.name)))?;
        let mut out = StoreOut {
            reader: &reader,
            consent: (store.name == "consent_events").then_some(&mut consent),
        };
        let table = write_store(
            core,
            &mut b,
            store,
            view,
            &subject,
            &key,
            &mut others,
            files.get(store.name),
            &mut out,
        )?;
        b.summary.counts.insert(store.name.to_owned(), table.total);
        if table.total > 0 {
            tables.push((store.category, table));
        }
    }
    let conversations = write_conversations(
        core,
        &mut b,
        &req.tenant_id,
        &subject,
        &key,
        &mut others,
        files.get("chat_attachments"),
        &reader,
    )?;
    // Contacts also as vCard 4.0, the form address books import.
    for (name, text) in vcard_files(core, &subject)? {
        b.put(name, text.as_bytes())?;
    }
    let (disclosed, events) = disclosures_and_events(core, &subject)?;
    write_disclosure_events(&mut b, &events)?;
    let art15 = article15(core, &b.summary, &disclosed);
    b.put_json("article15.json", &art15)?;
    b.put("article15.md", article15_markdown(&art15).as_bytes())?;
    let disclosure_timeline = disclosure_timeline(core, &reader, &events);
    let index = index_page(
        core,
        &reader,
        &art15,
        tables,
        conversations,
        disclosure_timeline,
        consent,
    );
    b.put("index.html", pages::render(&index)?.as_bytes())?;
    b.put_json("schema.json", &schema(core))?;
    let m = manifest(core, req, &b.summary);
    b.put_json("manifest.json", &m)?;
    b.zip.finish().map_err(zip_err)?;
    Ok(b.summary)
}

/// The subject's device contacts and their business directory entry as vCard
/// files (only those they have).
fn vcard_files(core: &Steward, subject: &str) -> Result<Vec<(&'static str, String)>> {
    let mut out = Vec::new();
    let device = crate::contacts::of_subject(core, subject)?;
    if !device.is_empty() {
        let text = device
            .iter()
            .map(|c| crate::contacts::to_vcard(c, steward_vcard::Version::V4))
            .collect();
        out.push(("contacts/device-contacts.vcf", text));
    }
    let entries = crate::directory::entries_about(core, subject)?;
    if !entries.is_empty() {
        let text = entries
            .iter()
            .map(|e| crate::directory::to_vcard(e, steward_vcard::Version::V4))
            .collect();
        out.push(("contacts/directory-entry.vcf", text));
    }
    Ok(out)
}

/// The latest entries of a timeline, and how many earlier ones were left off.
#[derive(Default)]
struct Timeline {
    events: VecDeque<pages::Event>,
    earlier: u64,
}

impl Timeline {
    fn push(&mut self, e: pages::Event) {
        if self.events.len() == SHOWN_ON_INDEX {
            self.events.pop_front();
            self.earlier += 1;
        }
        self.events.push_back(e);
    }
}

/// What a store's pass feeds besides its files.
struct StoreOut<'r, 't> {
    reader: &'r Reader<'r>,
    consent: Option<&'t mut Timeline>,
}

/// The rows of one store about the subject, through one subject column, in
/// the view's order (oldest first), read a page at a time.
struct SideCursor {
    sql_first: String,
    sql_next: String,
    plan: Plan,
    buf: VecDeque<Row>,
    /// (order value, key) of the last row read, for the next page.
    last: Option<(i64, Value)>,
    done: bool,
    /// Whether rows are listed by a time (else by key alone).
    by_time: bool,
    ord_index: usize,
    key_index: usize,
}

impl SideCursor {
    fn new(
        core: &Steward,
        store: &'static PersonalStore,
        view: &View,
        columns: &[String],
        side_index: usize,
    ) -> Result<SideCursor> {
        let side = store.subject_columns[side_index];
        let key_index = columns
            .iter()
            .position(|c| c == store.key_column)
            .ok_or_else(|| {
                Error::Internal(format!(
                    "{}: no key column {}",
                    store.name, store.key_column
                ))
            })?;
        // A row naming the subject in an earlier column was read there.
        let earlier: String = store.subject_columns[..side_index]
            .iter()
            .map(|c| format!(" AND ({c} IS NULL OR {c} <> $1)"))
            .collect();
        let k = store.key_column;
        let (ord, order_by, after) = match view.order {
            Some(o) => (
                format!("COALESCE({o}, 0)"),
                format!("COALESCE({o}, 0), {k}"),
                format!("(COALESCE({o}, 0) > $2 OR (COALESCE({o}, 0) = $2 AND {k} > $3))"),
            ),
            // No time to list by: by key (the order value is a constant).
            None => ("0".to_owned(), k.to_owned(), format!("{k} > $2")),
        };
        let head = format!(
            "SELECT {select}, {ord} FROM {t} WHERE {side} = $1{earlier}",
            select = columns.join(", "),
            t = store.name,
        );
        Ok(SideCursor {
            sql_first: format!("{head} ORDER BY {order_by} LIMIT $2"),
            sql_next: format!(
                "{head} AND {after} ORDER BY {order_by} LIMIT {}",
                if view.order.is_some() { "$4" } else { "$3" }
            ),
            by_time: view.order.is_some(),
            plan: Plan::new(core, store, view, columns, side),
            buf: VecDeque::new(),
            last: None,
            done: false,
            ord_index: columns.len(),
            key_index,
        })
    }

    fn fill(&mut self, core: &Steward, subject: &str) -> Result<()> {
        if !self.buf.is_empty() || self.done {
            return Ok(());
        }
        let rows = core.db.read(|c| match &self.last {
            None => c.query(&self.sql_first, params![subject, PAGE]),
            Some((ord, key)) if self.by_time => c.query(
                &self.sql_next,
                &[
                    Value::from(subject),
                    Value::Int(*ord),
                    key.clone(),
                    Value::Int(PAGE),
                ],
            ),
            Some((_, key)) => c.query(
                &self.sql_next,
                &[Value::from(subject), key.clone(), Value::Int(PAGE)],
            ),
        })?;
        self.done = (rows.len() as i64) < PAGE;
        if let Some(last) = rows.last() {
            self.last = Some((
                last.i64(self.ord_index)?,
                last.0.get(self.key_index).cloned().unwrap_or(Value::Null),
            ));
        }
        self.buf.extend(rows);
        Ok(())
    }

    /// The order (time, key) of the next row, if there is one; `fill` first.
    fn front(&self) -> Result<Option<(i64, &Value)>> {
        match self.buf.front() {
            Some(r) => Ok(Some((
                r.i64(self.ord_index)?,
                r.0.get(self.key_index).unwrap_or(&Value::Null),
            ))),
            None => Ok(None),
        }
    }
}

/// Which of two rows comes first: by time, then by key.
fn row_order(a: (i64, &Value), b: (i64, &Value)) -> std::cmp::Ordering {
    a.0.cmp(&b.0).then_with(|| match (a.1, b.1) {
        (Value::Int(x), Value::Int(y)) => x.cmp(y),
        (Value::Text(x), Value::Text(y)) => x.cmp(y),
        _ => std::cmp::Ordering::Equal,
    })
}

/// Writes one store's rows about the subject: `data/<store>.json` as it reads
/// them, `data/<store>.csv` and the table's pages from spools after. Rows from
/// every subject column (a call the subject made, a call they received) come
/// in one list, oldest first. Returns the table for `index.html`.
#[allow(clippy::too_many_arguments)]
fn write_store<W: Write + Seek>(
    core: &Steward,
    b: &mut Bundle<W>,
    store: &'static PersonalStore,
    view: &'static View,
    subject: &str,
    key: &DataKey,
    others: &mut OtherKeys<'_>,
    files: Option<&HashMap<String, String>>,
    out: &mut StoreOut<'_, '_>,
) -> Result<Table> {
    let columns = core.db.column_names(store.name)?;
    let mut sides = (0..store.subject_columns.len())
        .map(|i| SideCursor::new(core, store, view, &columns, i))
        .collect::<Result<Vec<_>>>()?;
    let key_index = sides.first().map_or(0, |s| s.key_index);
    let shown: Vec<(usize, &view::Field)> = Reader::shown_fields(view.fields).collect();
    let field_at = |name: &str| view.fields.iter().position(|f| f.name == name);
    let (c_at, c_cat, c_purpose, c_action, c_channel) = (
        field_at("at"),
        field_at("category"),
        field_at("purpose"),
        field_at("action"),
        field_at("channel"),
    );

    b.start(&format!("data/{}.json", store.name))?;
    b.zip.write_all(b"[").map_err(zip_err)?;
    let mut csv = csv::Writer::from_writer(Spool::new()?.0);
    csv.write_record(view.fields.iter().map(|f| f.name))
        .map_err(zip_err)?;
    let mut html = Spool::new()?;
    let mut total = 0u64;
    loop {
        // The side whose next row comes first.
        for side in sides.iter_mut() {
            side.fill(core, subject)?;
        }
        let mut next: Option<(usize, (i64, &Value))> = None;
        for (i, side) in sides.iter().enumerate() {
            if let Some(o) = side.front()?
                && next.is_none_or(|(_, best)| row_order(o, best).is_lt())
            {
                next = Some((i, o));
            }
        }
        let Some((i, (ord, _))) = next else { break };
        let side = &mut sides[i];
        let Some(row) = side.buf.pop_front() else {
            break;
        };
        let file = match (files, row.0.get(key_index)) {
            (Some(f), Some(Value::Text(id))) => f.get(id).map(String::as_str),
            _ => None,
        };
        let cells = side.plan.render(&row, key, subject, others, file)?;
        // The machine-readable files.
        b.zip
            .write_all(if total == 0 { b"\n  " } else { b",\n  " })
            .map_err(zip_err)?;
        write_object(&mut b.zip, view, &cells)?;
        csv.write_record(
            view.fields
                .iter()
                .zip(&cells)
                .map(|(f, c)| view::to_csv(f.kind, c)),
        )
        .map_err(zip_err)?;
        // The pages: one line per row, rendered once the count is known.
        let row_shown: Vec<Shown> = shown
            .iter()
            .map(|(j, f)| out.reader.show(f.kind, &cells[*j], ""))
            .collect();
        serde_json::to_writer(
            &mut html.0,
            &(view.order.is_some().then_some(ord), &row_shown),
        )
        .map_err(zip_err)?;
        html.0.write_all(b"\n").map_err(zip_err)?;
        if let Some(t) = out.consent.as_deref_mut() {
            let text = |i: Option<usize>| {
                i.and_then(|i| {
                    view.fields
                        .get(i)
                        .map(|f| out.reader.show(f.kind, &cells[i], "").text)
                })
                .unwrap_or_default()
            };
            t.push(pages::Event {
                at: text(c_at),
                text: format!(
                    "Consent {} for {} ({}), {}",
                    consent_action(&text(c_action)),
                    text(c_purpose),
                    text(c_cat),
                    text(c_channel)
                ),
            });
        }
        total += 1;
    }
    b.zip.write_all(b"\n]\n").map_err(zip_err)?;
    let csv = Spool(csv.into_inner().map_err(zip_err)?);
    b.put_spool(&format!("data/{}.csv", store.name), csv)?;
    let headings = shown
        .iter()
        .map(|(_, f)| view::heading(&core.policy, store.category, store.name, f.name))
        .collect();
    let mut table = Table {
        store: store.name.to_owned(),
        caption: view.caption.to_owned(),
        headings,
        rows: Vec::new(),
        pages: Vec::new(),
        total,
    };
    write_table_pages(b, html, &mut table, out.reader)?;
    Ok(table)
}

/// "given" / "withdrawn" as the timeline says them.
fn consent_action(a: &str) -> &str {
    match a {
        "grant" | "granted" | "give" => "given",
        "withdraw" | "withdrawn" | "revoke" => "withdrawn",
        other => other,
    }
}

/// One row as a JSON object, in the view's field order.
fn write_object(w: &mut impl Write, view: &View, cells: &[Cell]) -> Result<()> {
    w.write_all(b"{").map_err(zip_err)?;
    for (i, (f, c)) in view.fields.iter().zip(cells).enumerate() {
        if i > 0 {
            w.write_all(b", ").map_err(zip_err)?;
        }
        serde_json::to_writer(&mut *w, f.name).map_err(zip_err)?;
        w.write_all(b": ").map_err(zip_err)?;
        serde_json::to_writer(&mut *w, &view::to_json(f.kind, c)).map_err(zip_err)?;
    }
    w.write_all(b"}").map_err(zip_err)
}

/// The table's rows from the spool: on `index.html` when they fit on one
/// page, else as `pages/<store>-<n>.html` that the index links to.
fn write_table_pages<W: Write + Seek>(
    b: &mut Bundle<W>,
    spool: Spool,
    table: &mut Table,
    reader: &Reader<'_>,
) -> Result<()> {
    let mut lines = spool.reader()?.lines();
    let mut read_row = || -> Result<Option<(Option<i64>, Vec<Shown>)>> {
        match lines.next() {
            None => Ok(None),
            Some(line) => {
                let line = line.map_err(zip_err)?;
                Ok(Some(serde_json::from_str(&line).map_err(zip_err)?))
            }
        }
    };
    if table.total as usize <= pages::ROWS_PER_PAGE {
        while let Some((_, row)) = read_row()? {
            table.rows.push(row);
        }
        table.drop_empty_columns();
        return Ok(());
    }
    let of = (table.total as usize).div_ceil(pages::ROWS_PER_PAGE);
    let file_name = |n: usize| format!("{}-{n}.html", table.store);
    for number in 1..=of {
        let mut rows = Vec::with_capacity(pages::ROWS_PER_PAGE);
        let (mut first, mut last) = (None, None);
        while rows.len() < pages::ROWS_PER_PAGE {
            let Some((ord, mut row)) = read_row()? else {
                break;
            };
            first = first.or(ord);
            last = ord.or(last);
            // Links from a page lead up to the bundle's top.
            for c in &mut row {
                if let Some(h) = &mut c.href {
                    *h = format!("../{h}");
                }
            }
            rows.push(row);
        }
        if rows.is_empty() {
            break;
        }
        let span = match (first, last) {
            (Some(a), Some(z)) => Some(format!("{} to {}", reader.date(a), reader.date(z))),
            _ => None,
        };
        let page = pages::Page {
            title: reader.policy.meta().controller.clone(),
            caption: table.caption.clone(),
            number,
            of,
            span: span.clone(),
            headings: table.headings.clone(),
            prev: (number > 1).then(|| file_name(number - 1)),
            next: (number < of).then(|| file_name(number + 1)),
            rows,
        };
        let path = pages::page_path(&table.store, number);
        b.put(&path, pages::render(&page)?.as_bytes())?;
        table.pages.push(pages::PageLink {
            href: path,
            number,
            rows: page.rows.len(),
            span,
        });
    }
    Ok(())
}

/// The files of a store of files (photos, attachments, recordings) that belong
/// to the subject, decrypted, as `files/<store>/<row key>.<extension>`. A file
/// whose object is missing from the blob store is listed in `missing_files`
/// rather than failing the whole bundle. Returns each written file's path by
/// its row's key.
fn write_files<W: Write + Seek>(
    core: &Steward,
    b: &mut Bundle<W>,
    store: &PersonalStore,
    blob_column: &str,
    subject: &str,
    key: &DataKey,
) -> Result<HashMap<String, String>> {
    let mut written = HashMap::new();
    let Some(owner) = store.subject_columns.first() else {
        return Ok(written);
    };
    let mut after = Value::Text(String::new());
    loop {
        let rows = core.db.read(|c| {
            c.query(
                &format!(
                    "SELECT {k}, {blob_column}, content_type FROM {t} \
                     WHERE {owner} = $1 AND {blob_column} IS NOT NULL AND {k} > $2 \
                     ORDER BY {k} LIMIT $3",
                    t = store.name,
                    k = store.key_column
                ),
                &[Value::from(subject), after.clone(), Value::Int(PAGE)],
            )
        })?;
        for r in &rows {
            let id = r.text(0)?;
            let blob_key = r.text(1)?;
            let name = format!(
                "files/{}/{id}.{}",
                store.name,
                crate::files::extension(&r.text(2)?)
            );
            // Media is compressed already: store, do not deflate.
            let opts = SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Stored)
                .large_file(true);
            let z = &mut b.zip;
            let entry = name.as_str();
            let begin = move || {
                z.start_file(entry, opts).map_err(zip_err)?;
                Ok(z)
            };
            match crate::files::copy_to(core, key, &blob_key, begin) {
                Ok(_) => {
                    b.summary.files.push(name.clone());
                    written.insert(id, name);
                }
                Err(Error::NotFound(_)) => b.summary.missing_files.push(name),
                Err(e) => return Err(e),
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => after = Value::Text(last.text(0)?),
            _ => return Ok(written),
        }
    }
}

/// A member of a conversation as the subject saw them in the app: their name
/// in the tenant's business directory, which the app shows.
fn member_name(
    core: &Steward,
    tenant: &str,
    member: &str,
    others: &mut OtherKeys<'_>,
    names: &mut HashMap<String, Option<String>>,
) -> Result<Option<String>> {
    if let Some(n) = names.get(member) {
        return Ok(n.clone());
    }
    let row = core.db.read(|c| {
        c.query_opt(
            "SELECT name_enc FROM directory_entries WHERE tenant_id = $1 AND subject_id = $2",
            params![tenant, member],
        )
    })?;
    let name = match (
        row.map(|r| r.opt_bytes(0)).transpose()?.flatten(),
        others.get(member)?,
    ) {
        (Some(sealed), Some(k)) => {
            Some(fields::open(k, "directory_entries.name", member, &sealed)?)
        }
        _ => None,
    };
    names.insert(member.to_owned(), name.clone());
    Ok(name)
}

/// What the subject saw in a conversation, sealed with its owner's key: their
/// own opened with their key, another member's as the chat category's
/// `other_parties` says (shown: opened with the owner's key; masked or
/// redacted: left out, as masking a text would tell nothing).
struct Seen<'a, 'o, 'c> {
    key: &'a DataKey,
    subject: &'a str,
    policy: OtherParties,
    others: &'o mut OtherKeys<'c>,
}

impl Seen<'_, '_, '_> {
    fn open(
        &mut self,
        owner: &str,
        field: &str,
        sealed: Option<Vec<u8>>,
    ) -> Result<Option<String>> {
        let Some(sealed) = sealed else {
            return Ok(None);
        };
        if owner == self.subject {
            return Ok(Some(fields::open(self.key, field, owner, &sealed)?));
        }
        if self.policy != OtherParties::Show {
            return Ok(None);
        }
        match self.others.get(owner)? {
            Some(k) => Ok(Some(fields::open(k, field, owner, &sealed)?)),
            // An erased member's key is gone.
            None => Ok(None),
        }
    }
}

/// `data/conversations.json` (every conversation the subject is a member of,
/// with all its messages) and the conversations for `index.html` (the latest
/// messages of each). The subject's own messages and file names are opened
/// with their key; the others' as the chat category's `other_parties` says
/// (shown by default: the subject received them), with the others named as
/// the app named them. Others' files are listed, not included.
#[allow(clippy::too_many_arguments)]
fn write_conversations<W: Write + Seek>(
    core: &Steward,
    b: &mut Bundle<W>,
    tenant: &str,
    subject: &str,
    key: &DataKey,
    others: &mut OtherKeys<'_>,
    files: Option<&HashMap<String, String>>,
    reader: &Reader<'_>,
) -> Result<Vec<ShownConversation>> {
    let policy = core
        .policy
        .category("chat")
        .map(|c| c.other_parties)
        .unwrap_or_default();
    let conversations = core.db.read(|c| {
        c.query(
            "SELECT c.id, c.kind, c.created_by, c.title_enc, c.created_at \
             FROM chat_members m JOIN chat_conversations c ON c.id = m.conversation_id \
             WHERE m.subject_id = $1 ORDER BY c.created_at, c.id",
            params![subject],
        )
    })?;
    let mut names: HashMap<String, Option<String>> = HashMap::new();
    let mut shown = Vec::new();
    b.start("data/conversations.json")?;
    b.zip.write_all(b"[").map_err(zip_err)?;
    for (ci, conv) in conversations.iter().enumerate() {
        let id = conv.text(0)?;
        let kind = conv.text(1)?;
        let creator = conv.opt_text(2)?;
        let members = core.db.read(|c| {
            c.query(
                "SELECT subject_id FROM chat_members WHERE conversation_id = $1 ORDER BY joined_at, id",
                params![id.as_str()],
            )
        })?;
        let mut member_names = Vec::new();
        let mut listed = Vec::new();
        for m in &members {
            let m = m.text(0)?;
            if m == subject {
                listed.push(json!({ "name": "you", "you": true }));
                continue;
            }
            let name = member_name(core, tenant, &m, others, &mut names)?;
            member_names.push(name.clone().unwrap_or_else(|| "a member".to_owned()));
            listed.push(json!({ "name": name, "you": false }));
        }
        let mut seen = Seen {
            key,
            subject,
            policy,
            others: &mut *others,
        };
        let title = match &creator {
            Some(c) => seen.open(c, "chat_conversations.title", conv.opt_bytes(3)?)?,
            None => None,
        };
        let heading = title.clone().unwrap_or_else(|| {
            if member_names.is_empty() {
                "A conversation".to_owned()
            } else {
                format!("Conversation with {}", member_names.join(", "))
            }
        });
        let head = json!({
            "conversation_id": id,
            "kind": view::word(view::CONVERSATION_KINDS, &kind),
            "title": title,
            "started_at": rfc3339(conv.i64(4)?),
            "members": listed,
        });
        // The head's fields, then the messages written one by one.
        let head_text = serde_json::to_string(&head).map_err(zip_err)?;
        let head_text = head_text.strip_suffix('}').unwrap_or(&head_text);
        b.zip
            .write_all(if ci == 0 { b"\n  " } else { b",\n  " })
            .map_err(zip_err)?;
        b.zip.write_all(head_text.as_bytes()).map_err(zip_err)?;
        b.zip.write_all(b", \"messages\": [").map_err(zip_err)?;
        let attachments = core.db.read(|c| {
            c.query(
                "SELECT message_seq, id, subject_id, content_type, size, name_enc \
                 FROM chat_attachments WHERE conversation_id = $1 AND message_seq IS NOT NULL \
                 ORDER BY message_seq, id",
                params![id.as_str()],
            )
        })?;
        let mut by_message: HashMap<i64, Vec<&Row>> = HashMap::new();
        for a in &attachments {
            by_message.entry(a.i64(0)?).or_default().push(a);
        }
        let mut latest: VecDeque<ShownMessage> = VecDeque::new();
        let mut earlier = 0u64;
        let mut after = -1i64;
        let mut n = 0u64;
        loop {
            let rows = core.db.read(|c| {
                c.query(
                    "SELECT seq, sender_subject_id, body_enc, sent_at FROM chat_messages \
                     WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                    params![id.as_str(), after, PAGE],
                )
            })?;
            for r in &rows {
                let seq = r.i64(0)?;
                let sender = r.opt_text(1)?;
                let sealed = r.opt_bytes(2)?;
                let mine = sender.as_deref() == Some(subject);
                let mut seen = Seen {
                    key,
                    subject,
                    policy,
                    others: &mut *others,
                };
                // An erased sender's message went with them: no sender, no text.
                let text = match &sender {
                    Some(s) => seen.open(s, "chat_messages.body", sealed)?,
                    None => None,
                };
                let from = match &sender {
                    None => None,
                    Some(_) if mine => Some("you".to_owned()),
                    Some(s) => Some(
                        member_name(core, tenant, s, others, &mut names)?
                            .unwrap_or_else(|| "a member".to_owned()),
                    ),
                };
                let mut files_json = Vec::new();
                let mut files_shown = Vec::new();
                for a in by_message.get(&seq).into_iter().flatten() {
                    let aid = a.text(1)?;
                    let owner = a.text(2)?;
                    let sealed = a.opt_bytes(5)?;
                    let own = owner == subject;
                    let name = Seen {
                        key,
                        subject,
                        policy,
                        others: &mut *others,
                    }
                    .open(&owner, "chat_attachments.name", sealed)?;
                    let path = if own {
                        files.and_then(|f| f.get(&aid)).cloned()
                    } else {
                        None
                    };
                    files_shown.push(Shown {
                        text: name.clone().unwrap_or_else(|| "a file".to_owned()),
                        href: path.clone(),
                    });
                    files_json.push(json!({
                        "file_name": name, "file_type": a.text(3)?, "file_size": a.i64(4)?,
                        "file": path,
                    }));
                }
                let message = json!({
                    "message_id": seq.to_string(),
                    "sent_at": rfc3339(r.i64(3)?),
                    "from": from,
                    "yours": mine,
                    "text": text,
                    "attachments": files_json,
                });
                b.zip
                    .write_all(if n == 0 { b"\n    " } else { b",\n    " })
                    .map_err(zip_err)?;
                serde_json::to_writer(&mut b.zip, &message).map_err(zip_err)?;
                n += 1;
                if latest.len() == SHOWN_ON_INDEX {
                    latest.pop_front();
                    earlier += 1;
                }
                latest.push_back(ShownMessage {
                    at: reader.time(r.i64(3)?),
                    from: from.unwrap_or_else(|| "a former member".to_owned()),
                    text: text.unwrap_or_else(|| match (&sender, policy) {
                        (None, _) => "(erased)".to_owned(),
                        (Some(_), OtherParties::Show) => String::new(),
                        (Some(_), _) => "(not shown)".to_owned(),
                    }),
                    mine,
                    files: files_shown,
                });
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => after = last.i64(0)?,
                _ => break,
            }
        }
        b.zip.write_all(b"\n  ]}").map_err(zip_err)?;
        shown.push(ShownConversation {
            title: heading,
            members: if member_names.is_empty() {
                "nobody else".to_owned()
            } else {
                member_names.join(", ")
            },
            messages: latest.into(),
            more: earlier,
        });
    }
    b.zip.write_all(b"\n]\n").map_err(zip_err)?;
    Ok(shown)
}

/// `data/disclosures.json`: each disclosure of the subject's data, oldest first.
fn write_disclosure_events<W: Write + Seek>(
    b: &mut Bundle<W>,
    events: &[DisclosureEvent],
) -> Result<()> {
    b.start("data/disclosures.json")?;
    b.zip.write_all(b"[").map_err(zip_err)?;
    for (i, e) in events.iter().enumerate() {
        b.zip
            .write_all(if i == 0 { b"\n  " } else { b",\n  " })
            .map_err(zip_err)?;
        serde_json::to_writer(&mut b.zip, e).map_err(zip_err)?;
    }
    b.zip.write_all(b"\n]\n").map_err(zip_err)
}

/// The disclosures as the index's timeline (the latest `SHOWN_ON_INDEX`).
fn disclosure_timeline(
    core: &Steward,
    reader: &Reader<'_>,
    events: &[DisclosureEvent],
) -> Timeline {
    let mut t = Timeline::default();
    for e in events {
        let name = |id: &Option<String>, f: &dyn Fn(&str) -> Option<String>| {
            id.as_deref().map(|i| f(i).unwrap_or_else(|| i.to_owned()))
        };
        let category = name(&e.category, &|c| {
            core.policy.category(c).map(|x| x.name.clone())
        });
        let purpose = name(&e.purpose, &|p| {
            core.policy.purpose(p).map(|x| x.name.clone())
        });
        let mut text = format!(
            "{} ({}) received {}",
            e.recipient_name.as_deref().unwrap_or(&e.recipient),
            e.country.as_deref().unwrap_or("country not recorded"),
            category.as_deref().unwrap_or("your data")
        );
        if let Some(p) = purpose {
            text.push_str(&format!(" for {p}"));
        }
        if let Some(basis) = &e.lawful_basis {
            text.push_str(&format!(" (lawful basis: {basis})"));
        }
        t.push(pages::Event {
            at: reader.time(e.at_secs),
            text,
        });
    }
    t
}

fn index_page(
    core: &Steward,
    reader: &Reader<'_>,
    art15: &Json,
    tables: Vec<(&'static str, Table)>,
    conversations: Vec<ShownConversation>,
    disclosures: Timeline,
    consent: Timeline,
) -> pages::Index {
    let meta = core.policy.meta();
    let mut by_category: BTreeMap<&str, Vec<Table>> = BTreeMap::new();
    for (c, t) in tables {
        by_category.entry(c).or_default().push(t);
    }
    let mut sections = Vec::new();
    // In the policy's order, as the notice lists them.
    for (id, c) in core.policy.categories() {
        let Some(tables) = by_category.remove(id) else {
            continue;
        };
        let items = tables.iter().map(|t| t.total).sum();
        sections.push(Section {
            anchor: format!("category-{id}"),
            name: c.name.clone(),
            description: c.description.clone(),
            items,
            purposes: c
                .purposes
                .iter()
                .map(|p| {
                    (
                        core.policy
                            .purpose(p)
                            .map_or_else(|| p.clone(), |x| x.name.clone()),
                        c.basis_for(p)
                            .map(|b| b.label())
                            .unwrap_or_default()
                            .to_owned(),
                    )
                })
                .collect(),
            retention: format!("{} {}", c.retention, c.retention_starts.label()),
            source: c.source.clone(),
            recipients: c
                .recipients
                .iter()
                .map(|r| {
                    core.policy
                        .recipient(r)
                        .map_or_else(|| r.clone(), |x| x.name.clone())
                })
                .collect(),
            tables,
        });
    }
    pages::Index {
        controller: meta.controller.clone(),
        address: meta.controller_address.clone(),
        contact: meta.contact_email.clone().unwrap_or_default(),
        generated: reader.time(now()),
        policy_version: meta.version.clone(),
        time_zone: meta.time_zone.clone(),
        sections,
        conversations,
        disclosures: disclosures.events.into(),
        disclosures_more: disclosures.earlier,
        consent: consent.events.into(),
        consent_more: consent.earlier,
        rights: art15["your_rights"].as_str().unwrap_or_default().to_owned(),
    }
}

/// `schema.json`: every machine-readable file of the bundle, field by field:
/// its JSON type (a JSON Schema per file) and what it means, in the policy's
/// words and how to read its values.
pub fn schema(core: &Steward) -> Json {
    let mut files = serde_json::Map::new();
    for store in PERSONAL_STORES {
        let Some(v) = view::view(store.name) else {
            continue;
        };
        let category = core
            .policy
            .category(store.category)
            .map_or_else(|| store.category.to_owned(), |c| c.name.clone());
        let mut properties = serde_json::Map::new();
        for f in v.fields {
            let (ty, how) = view::kind_schema(f.kind);
            let mut p = serde_json::Map::new();
            if ty != "any" {
                p.insert("type".into(), json!([ty, "null"]));
            }
            if f.kind == view::Kind::Time {
                p.insert("format".into(), json!("date-time"));
            }
            p.insert(
                "description".into(),
                json!(format!(
                    "{}: {how}",
                    view::heading(&core.policy, store.category, store.name, f.name)
                )),
            );
            properties.insert(f.name.to_owned(), Json::Object(p));
        }
        files.insert(
            format!("data/{}.json", store.name),
            json!({
                "title": v.caption,
                "description": format!("{} (category: {category}). One object per item.", v.caption),
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": properties,
                    "required": v.fields.iter().map(|f| f.name).collect::<Vec<_>>(),
                    "additionalProperties": false,
                },
            }),
        );
        files.insert(
            format!("data/{}.csv", store.name),
            json!({
                "title": v.caption,
                "description": format!(
                    "The items of data/{}.json as CSV (RFC 4180), one line each after a header \
                     line; the columns are the fields of that file, described there, in this order. \
                     An empty value is null.", store.name),
                "columns": v.fields.iter().map(|f| f.name).collect::<Vec<_>>(),
            }),
        );
    }
    let text = |d: &str| json!({ "type": ["string", "null"], "description": d });
    let attachment = json!({
        "type": "object", "additionalProperties": false,
        "required": ["file_name", "file_type", "file_size", "file"], "properties": {
        "file_name": text("The file's name."),
        "file_type": { "type": "string", "description": "Its type (a media type)." },
        "file_size": { "type": "integer", "description": "Its size in bytes." },
        "file": text("The file inside this bundle, for files you sent; null for others' files.") } });
    let message = json!({
        "type": "object", "additionalProperties": false,
        "required": ["message_id", "sent_at", "from", "yours", "text", "attachments"], "properties": {
        "message_id": { "type": "string", "description": "The message: the message_id of data/chat_*.json." },
        "sent_at": { "type": "string", "format": "date-time", "description": "When it was sent: ISO 8601 in UTC." },
        "from": text("Who sent it: \"you\", the sender's name, \"a member\" when no name is held, null when the sender's data was erased."),
        "yours": { "type": "boolean", "description": "Whether you sent it." },
        "text": text("The message; null when the sender's data was erased or the policy does not show others' messages."),
        "attachments": { "type": "array", "description": "Files sent with it.", "items": attachment } } });
    let member = json!({
        "type": "object", "additionalProperties": false, "required": ["name", "you"], "properties": {
        "name": text("The member's name in your organisation's directory, \"you\" for you, null when none is held."),
        "you": { "type": "boolean", "description": "Whether this member is you." } } });
    let conversation = json!({
        "type": "object", "additionalProperties": false,
        "required": ["conversation_id", "kind", "title", "started_at", "members", "messages"],
        "properties": {
        "conversation_id": { "type": "string", "description": "The conversation: the conversation_id of data/chat_*.json." },
        "kind": { "type": "string", "description": "direct conversation (two people) or group." },
        "title": text("A group's title; null for a direct conversation, or when its creator's data was erased."),
        "started_at": { "type": "string", "format": "date-time", "description": "When the conversation was started: ISO 8601 in UTC." },
        "members": { "type": "array", "description": "Who is in it, as the App named them.", "items": member },
        "messages": { "type": "array", "description": "The messages, oldest first.", "items": message } } });
    files.insert(
        "data/conversations.json".into(),
        json!({
            "title": "Your conversations",
            "description": "Every conversation you are a member of, with all its messages, as the App showed them to you.",
            "type": "array",
            "items": conversation,
        }),
    );
    files.insert(
        "data/disclosures.json".into(),
        json!({
            "title": "Who received your data",
            "description": "Each time your data was disclosed to someone outside the provider, oldest first.",
            "type": "array",
            "items": { "type": "object", "additionalProperties": false,
                "required": ["at", "recipient", "recipient_name", "country", "safeguard", "category", "purpose", "lawful_basis"],
                "properties": {
                "at": { "type": "string", "format": "date-time", "description": "When: ISO 8601 in UTC." },
                "recipient": { "type": "string", "description": "The recipient, as the privacy policy names it (article15.json)." },
                "recipient_name": text("The recipient's name."),
                "country": text("The country the data went to."),
                "safeguard": text("The safeguard for a transfer outside the UK."),
                "category": text("The category of data disclosed (article15.json names each)."),
                "purpose": text("The purpose it was disclosed for."),
                "lawful_basis": text("The lawful basis of the disclosure."),
            } },
        }),
    );
    json!({
        "description": "The fields of each machine-readable file in this bundle. Each data/*.json \
            file is described by a JSON Schema (draft 2020-12); each CSV file has the same fields \
            as its JSON file. Times are ISO 8601 in UTC; index.html shows them in the controller's \
            time zone.",
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "time_zone": core.policy.meta().time_zone,
        "files": files,
    })
}

#[derive(Debug, Clone, Serialize)]
pub struct Disclosure {
    pub recipient: String,
    pub name: Option<String>,
    pub country: Option<String>,
    pub safeguard: Option<String>,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub times: u64,
    pub last_at: String,
}

/// (recipient, category, purpose): one line of the disclosure list.
type DisclosureKey = (String, Option<String>, Option<String>);

/// Who a subject's data was disclosed to (from the audit log), for the subject
/// themself and for staff in scope.
pub fn disclosures_for(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Vec<Disclosure>> {
    let tenant = crate::subjects::tenant_of_subject(core, subject_id)?;
    actor.require_subject(&tenant, subject_id)?;
    if !actor.is_self(subject_id) {
        actor.require_role(
            &[crate::access::Role::Dpo, crate::access::Role::Operator],
            "see someone's disclosures",
        )?;
    }
    disclosures(core, subject_id)
}

/// One disclosure of the subject's data, as `data/disclosures.json` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DisclosureEvent {
    pub at: String,
    #[serde(skip)]
    pub at_secs: i64,
    pub recipient: String,
    pub recipient_name: Option<String>,
    pub country: Option<String>,
    pub safeguard: Option<String>,
    pub category: Option<String>,
    pub purpose: Option<String>,
    pub lawful_basis: Option<String>,
}

/// Recipients the subject's data was actually disclosed to, from the audit log.
fn disclosures(core: &Steward, subject: &str) -> Result<Vec<Disclosure>> {
    Ok(disclosures_and_events(core, subject)?.0)
}

/// The disclosures of the subject's data from the audit log: one line per
/// recipient, category and purpose, and each disclosure, oldest first.
fn disclosures_and_events(
    core: &Steward,
    subject: &str,
) -> Result<(Vec<Disclosure>, Vec<DisclosureEvent>)> {
    let mut by: BTreeMap<DisclosureKey, (u64, i64)> = BTreeMap::new();
    let mut events = Vec::new();
    for e in audit::for_subject(&core.db, subject)? {
        if let (Some(r), "disclose") = (&e.recipient, e.action.as_str()) {
            let entry = by
                .entry((r.clone(), e.category.clone(), e.purpose.clone()))
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 = entry.1.max(e.at);
            let recipient = core.policy.recipient(r);
            let basis = match (&e.category, &e.purpose) {
                (Some(c), Some(p)) => core
                    .policy
                    .category(c)
                    .and_then(|c| c.basis_for(p))
                    .map(|b| b.label().to_owned()),
                _ => None,
            };
            events.push(DisclosureEvent {
                at: rfc3339(e.at),
                at_secs: e.at,
                recipient: r.clone(),
                recipient_name: recipient.map(|x| x.name.clone()),
                country: recipient.map(|x| x.country.clone()),
                safeguard: recipient.and_then(|x| x.safeguard.clone()),
                category: e.category.clone(),
                purpose: e.purpose.clone(),
                lawful_basis: basis,
            });
        }
    }
    let list = by
        .into_iter()
        .map(|((recipient, category, purpose), (times, last))| {
            let r = core.policy.recipient(&recipient);
            Disclosure {
                name: r.map(|r| r.name.clone()),
                country: r.map(|r| r.country.clone()),
                safeguard: r.and_then(|r| r.safeguard.clone()),
                recipient,
                category,
                purpose,
                times,
                last_at: rfc3339(last),
            }
        })
        .collect();
    Ok((list, events))
}

fn article15(core: &Steward, summary: &BundleSummary, disclosures: &[Disclosure]) -> Json {
    let meta = core.policy.meta();
    let mut held: BTreeMap<&str, u64> = BTreeMap::new();
    for store in PERSONAL_STORES {
        *held.entry(store.category).or_default() +=
            summary.counts.get(store.name).copied().unwrap_or(0);
    }
    let categories: Vec<Json> = held
        .iter()
        .filter(|(_, n)| **n > 0)
        .filter_map(|(id, n)| core.policy.category(id).map(|c| (id, n, c)))
        .map(|(id, n, c)| {
            let purposes: Vec<Json> = c
                .purposes
                .iter()
                .map(|p| {
                    json!({
                        "purpose": core.policy.purpose(p).map(|x| x.name.clone()).unwrap_or_else(|| p.clone()),
                        "lawful_basis": c.basis_for(p).map(|b| b.label()),
                    })
                })
                .collect();
            json!({
                "category": id, "name": c.name, "description": c.description, "items_held": n,
                "purposes": purposes, "retention": c.retention.to_string(),
                "retention_starts": c.retention_starts.label(), "source": c.source,
                "recipients_declared": c.recipients.iter()
                    .map(|r| core.policy.recipient(r).map(|x| x.name.clone()).unwrap_or_else(|| r.clone()))
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "controller": { "name": meta.controller, "address": meta.controller_address, "contact_email": meta.contact_email },
        "generated_at": rfc3339(now()),
        "policy_version": meta.version,
        "categories": categories,
        "disclosed_to": disclosures,
        "your_rights": "You may ask for a copy of your data, its correction or erasure, restriction of or objection to its processing, and may complain to the Information Commissioner's Office (ico.org.uk).",
    })
}

fn article15_markdown(a: &Json) -> String {
    let mut md = String::from("# The personal data we hold about you\n\n");
    md.push_str(&format!(
        "Controller: {}, {}\n\nGenerated: {}\n\n",
        a["controller"]["name"].as_str().unwrap_or(""),
        a["controller"]["address"].as_str().unwrap_or(""),
        a["generated_at"].as_str().unwrap_or("")
    ));
    for c in a["categories"].as_array().into_iter().flatten() {
        md.push_str(&format!(
            "## {}\n\n{}\n\n",
            c["name"].as_str().unwrap_or(""),
            c["description"].as_str().unwrap_or("")
        ));
        md.push_str(&format!("- Items held: {}\n", c["items_held"]));
        for p in c["purposes"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "- Purpose: {} (lawful basis: {})\n",
                p["purpose"].as_str().unwrap_or(""),
                p["lawful_basis"].as_str().unwrap_or("")
            ));
        }
        md.push_str(&format!(
            "- Kept: {} {}\n- Source: {}\n\n",
            c["retention"].as_str().unwrap_or(""),
            c["retention_starts"].as_str().unwrap_or(""),
            c["source"].as_str().unwrap_or("")
        ));
    }
    md.push_str("## Who received your data\n\n");
    let disclosed = a["disclosed_to"].as_array().cloned().unwrap_or_default();
    if disclosed.is_empty() {
        md.push_str("Nobody outside the provider.\n\n");
    }
    for d in &disclosed {
        md.push_str(&format!(
            "- {} ({}): {} time(s), last {}\n",
            d["name"].as_str().or(d["recipient"].as_str()).unwrap_or(""),
            d["country"].as_str().unwrap_or(""),
            d["times"],
            d["last_at"].as_str().unwrap_or("")
        ));
    }
    md.push_str(&format!(
        "\n## Your rights\n\n{}\n",
        a["your_rights"].as_str().unwrap_or("")
    ));
    md
}

fn manifest(core: &Steward, req: &Request, s: &BundleSummary) -> Json {
    json!({
        "format": "steward-subject-bundle/2",
        "read_me_first": "index.html",
        "schema": "schema.json",
        "request_id": req.id,
        "request_kind": req.kind,
        "subject_id": s.subject_id,
        "erased_at": s.erased_at.map(rfc3339),
        "generated_at": rfc3339(now()),
        "policy_version": core.policy.version(),
        "stores": PERSONAL_STORES.iter().map(|st| json!({
            "store": st.name, "category": st.category, "items": s.counts.get(st.name),
            "files": [format!("data/{}.json", st.name), format!("data/{}.csv", st.name)],
        })).collect::<Vec<_>>(),
        "files": s.files,
        "missing_files": s.missing_files,
    })
}

/// Where the subject's copy of a request's bundle is kept: under the subject's
/// blob prefix (the registry's `bundles` store), so erasure deletes it.
pub fn bundle_key(tenant_id: &str, subject_id: &str, request_id: &str) -> String {
    format!("tenant/{tenant_id}/subject/{subject_id}/bundles/{request_id}.zip")
}

/// Encrypts the finished bundle under the subject's data key (streaming, AAD =
/// the blob key) and puts it in the blob store. Returns the blob key and size,
/// or `None` for a request answered from a tombstone (no subject, key or
/// portal). The `access_bundles` row is written with the request's fulfilment.
fn store_bundle(core: &Steward, req: &Request, zip_path: &Path) -> Result<Option<(String, u64)>> {
    let Some(subject) = &req.subject_id else {
        return Ok(None);
    };
    let key = core.subject_key(subject)?;
    let blob_key = bundle_key(&req.tenant_id, subject, &req.id);
    let io = |e: std::io::Error| Error::Internal(format!("storing the bundle: {e}"));
    let plain = std::fs::File::open(zip_path).map_err(io)?;
    let mut sealed = tempfile::tempfile().map_err(io)?;
    steward_crypto::stream::encrypt_reader_to_writer(
        &key,
        blob_key.as_bytes(),
        std::io::BufReader::new(plain),
        std::io::BufWriter::new(&mut sealed),
    )
    .map_err(io)?;
    sealed.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    let stream = tokio_util::io::ReaderStream::new(tokio::fs::File::from_std(sealed));
    let size = crate::core::block_on(core.blobs.put_stream(&blob_key, stream))?;
    Ok(Some((blob_key, size)))
}

/// When a request's stored bundle was produced, if one is kept.
fn produced_at(core: &Steward, request_id: &str) -> Result<Option<i64>> {
    Ok(core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT created_at FROM access_bundles WHERE request_id = $1",
                params![request_id],
            )
        })?
        .map(|r| r.i64(0))
        .transpose()?)
}

/// Whether a request's bundle can be downloaded, and until when (Unix seconds).
pub fn bundle_available_until(core: &Steward, req: &Request) -> Result<Option<i64>> {
    if !matches!(req.kind, Kind::Access | Kind::Portability)
        || req.state != State::Fulfilled
        || req.subject_id.is_none()
    {
        return Ok(None);
    }
    let Some(at) = produced_at(core, &req.id)? else {
        return Ok(None);
    };
    let until = at + core.settings.bundle_keep_days * 86_400;
    Ok((until > now()).then_some(until))
}

/// The bundle of a fulfilled access or portability request, decrypted into a
/// temporary file (deleted when the handle closes), for the subject themself or
/// staff in scope. Each download is audited and on the request's timeline.
/// After `bundle_keep_days` the copy is deleted and the answer is 404.
pub fn open_bundle(core: &Steward, actor: &Actor, request_id: &str) -> Result<std::fs::File> {
    let req = super::get(core, actor, request_id)?;
    let own = req.subject_id.as_deref().is_some_and(|s| actor.is_self(s));
    if !own {
        actor.require_role(
            &[crate::access::Role::Dpo, crate::access::Role::Operator],
            "download someone's data",
        )?;
    }
    let (Some(subject), Some(at)) = (req.subject_id.clone(), produced_at(core, request_id)?) else {
        return Err(Error::NotFound(
            "bundle (it has not been produced yet)".into(),
        ));
    };
    let blob_key = bundle_key(&req.tenant_id, &subject, request_id);
    if bundle_available_until(core, &req)?.is_none() {
        if at + core.settings.bundle_keep_days * 86_400 <= now() {
            purge_bundle(core, request_id, &blob_key)?;
        }
        return Err(Error::NotFound(
            "bundle (the copy has expired: ask for a new one)".into(),
        ));
    }
    let key = core.subject_key(&subject)?;
    let io = |e: std::io::Error| Error::Internal(format!("reading the bundle: {e}"));
    if crate::core::block_on(core.blobs.size(&blob_key))?.is_none() {
        return Err(Error::NotFound("bundle".into()));
    }
    let mut sealed = crate::core::block_on(async {
        use futures_util::StreamExt;
        let mut stream = core.blobs.get_stream(&blob_key).await?;
        let mut file = tempfile::tempfile().map_err(io)?;
        while let Some(chunk) = stream.next().await {
            file.write_all(&chunk?).map_err(io)?;
        }
        Ok::<_, Error>(file)
    })?;
    sealed.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    let mut plain = tempfile::tempfile().map_err(io)?;
    steward_crypto::stream::decrypt_reader_to_writer(
        &key,
        blob_key.as_bytes(),
        std::io::BufReader::new(sealed),
        std::io::BufWriter::new(&mut plain),
    )
    .map_err(|e| Error::Keys(format!("the stored bundle does not decrypt: {e}")))?;
    plain.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    core.write(actor, |tx| {
        log_event(tx, request_id, "downloaded", json!({ "by_subject": own }))?;
        audit_request(
            tx,
            &req,
            "request.download",
            json!({ "request_id": request_id, "by_subject": own }),
        )
    })?;
    Ok(plain)
}

/// Deletes one stored bundle: its row, then its object (a failure in between
/// leaves an object that erasure's prefix deletion, or the key's destruction,
/// deals with).
fn purge_bundle(core: &Steward, request_id: &str, blob_key: &str) -> Result<()> {
    core.db.write(|c: &mut dyn steward_store::Conn| {
        c.execute(
            "DELETE FROM access_bundles WHERE request_id = $1",
            params![request_id],
        )
    })?;
    crate::core::block_on(core.blobs.delete(blob_key))?;
    Ok(())
}

/// Deletes stored bundles older than `bundle_keep_days` (run with retention).
/// Returns how many were deleted.
pub fn purge_expired_bundles(core: &Steward, now: i64) -> Result<u64> {
    let cutoff = now - core.settings.bundle_keep_days * 86_400;
    let rows = core.db.read(|c| {
        c.query(
            "SELECT request_id, blob_key FROM access_bundles WHERE created_at <= $1",
            params![cutoff],
        )
    })?;
    for r in &rows {
        purge_bundle(core, &r.text(0)?, &r.text(1)?)?;
    }
    Ok(rows.len() as u64)
}
