//! The access and portability bundle: one ZIP with a manifest, every registered
//! store's rows about the subject as JSON and CSV, their device contacts and
//! business directory entry as vCard 4.0 files, and the Article 15
//! information (purposes, categories, recipients actually disclosed to, from the
//! audit log, retention and source).
//!
//! Written row page by row page straight into the archive, so memory does not
//! grow with the bundle. Inside records shared with other people (a call, a
//! chat), the other people's ids and fields are left out: their columns are
//! sealed with their keys, which this export never opens.

use std::collections::BTreeMap;
use std::io::{Seek, Write};
use std::path::Path;

use base64ct::{Base64, Encoding};
use serde::Serialize;
use serde_json::{Map, Value as Json, json};
use steward_store::{Row, Value, params};
use utoipa::ToSchema;
use zip::write::SimpleFileOptions;

use super::{
    Kind, Request, State, audit_request, for_action, log_event, require_actionable, set_state,
};
use crate::access::Actor;
use crate::audit;
use crate::clock::{now, rfc3339};
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::registry::{PERSONAL_STORES, PersonalStore};

const PAGE: i64 = 500;

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
    let summary = match write_bundle(core, &req, std::io::BufWriter::new(file)) {
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

/// Writes the bundle for `req` into `w`.
pub fn write_bundle<W: Write + Seek>(core: &Steward, req: &Request, w: W) -> Result<BundleSummary> {
    let mut zip = zip::ZipWriter::new(w);
    let mut summary = BundleSummary {
        request_id: req.id.clone(),
        subject_id: req.subject_id.clone(),
        erased_at: None,
        counts: BTreeMap::new(),
        files: Vec::new(),
        missing_files: Vec::new(),
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
        summary.erased_at = erased_at;
        let text = match erased_at {
            Some(at) => format!(
                "We hold no personal data about you. Your data was erased on {} \
                 (reference {}).\n",
                &rfc3339(at)[..10],
                req.tombstone_id.as_deref().unwrap_or("")
            ),
            None => "We hold no personal data about you.\n".to_owned(),
        };
        put(&mut zip, &mut summary, "README.txt", text.as_bytes())?;
        let m = manifest(core, req, &summary);
        put_json(&mut zip, &mut summary, "manifest.json", &m)?;
        zip.finish().map_err(zip_err)?;
        return Ok(summary);
    };
    let key = core.subject_key(&subject)?;
    for store in PERSONAL_STORES.iter() {
        let columns = core.db.column_names(store.name)?;
        let n = write_store(core, &mut zip, store, &columns, &subject, &key)?;
        summary.counts.insert(store.name.to_owned(), n);
        summary.files.push(format!("data/{}.json", store.name));
        summary.files.push(format!("data/{}.csv", store.name));
        if let Some(blob_column) = store.blob_column {
            write_files(
                core,
                &mut zip,
                &mut summary,
                store,
                blob_column,
                &subject,
                &key,
            )?;
        }
    }
    // Contacts also as vCard 4.0, the form address books import.
    for (name, text) in vcard_files(core, &subject)? {
        put(&mut zip, &mut summary, name, text.as_bytes())?;
    }
    let disclosures = disclosures(core, &subject)?;
    let art15 = article15(core, &summary, &disclosures);
    put_json(&mut zip, &mut summary, "article15.json", &art15)?;
    put(
        &mut zip,
        &mut summary,
        "article15.md",
        article15_markdown(&art15).as_bytes(),
    )?;
    let m = manifest(core, req, &summary);
    put_json(&mut zip, &mut summary, "manifest.json", &m)?;
    zip.finish().map_err(zip_err)?;
    Ok(summary)
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

fn put<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    s: &mut BundleSummary,
    name: &str,
    bytes: &[u8],
) -> Result<()> {
    zip.start_file(name, options()).map_err(zip_err)?;
    zip.write_all(bytes).map_err(zip_err)?;
    s.files.push(name.to_owned());
    Ok(())
}

fn put_json<W: Write + Seek>(
    zip: &mut zip::ZipWriter<W>,
    s: &mut BundleSummary,
    name: &str,
    v: &Json,
) -> Result<()> {
    let bytes = serde_json::to_vec_pretty(v).map_err(zip_err)?;
    put(zip, s, name, &bytes)
}

/// The columns an export shows, in order, with how to produce each.
enum Out {
    Plain(usize),
    Sealed { index: usize, field: String },
    Redacted,
}

fn plan(store: &PersonalStore, columns: &[String], subject_col: &str) -> Vec<(String, Out)> {
    let mut out = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if c.ends_with("_idx") || c.ends_with("_hash") {
            continue; // derived values, not the subject's data
        }
        if let Some((_, owner)) = store.encrypted_columns.iter().find(|(e, _)| e == c) {
            let name = c.strip_suffix("_enc").unwrap_or(c).to_owned();
            if *owner == subject_col {
                out.push((
                    name,
                    Out::Sealed {
                        index: i,
                        field: store.field_name(c),
                    },
                ));
            } else {
                // Sealed with someone else's key: not theirs to receive. Named all
                // the same, so that every row of a store shared by two people (a
                // call) has the same columns, whichever side the subject is on.
                out.push((name, Out::Redacted));
            }
            continue;
        }
        if store.subject_columns.contains(&c.as_str()) && c != subject_col {
            out.push((c.clone(), Out::Redacted));
            continue;
        }
        out.push((c.clone(), Out::Plain(i)));
    }
    out
}

fn value_json(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Text(t) => json!(t),
        Value::Bytes(b) => json!(format!("base64:{}", Base64::encode_string(b))),
    }
}

fn render(
    plan: &[(String, Out)],
    row: &Row,
    key: &steward_crypto::DataKey,
    subject: &str,
) -> Result<Vec<(String, Json)>> {
    plan.iter()
        .map(|(name, how)| {
            let v = match how {
                Out::Plain(i) => row.0.get(*i).map(value_json).unwrap_or(Json::Null),
                Out::Redacted => Json::String("redacted".into()),
                Out::Sealed { index, field } => match row.0.get(*index) {
                    Some(Value::Bytes(b)) => json!(fields::open(key, field, subject, b)?),
                    _ => Json::Null,
                },
            };
            Ok((name.clone(), v))
        })
        .collect()
}

/// Pages through the subject's rows of one store (for each column naming them),
/// calling `each` on every rendered row. Returns the row count.
fn for_each_row(
    core: &Steward,
    store: &PersonalStore,
    columns: &[String],
    subject: &str,
    key: &steward_crypto::DataKey,
    mut each: impl FnMut(Vec<(String, Json)>) -> Result<()>,
) -> Result<u64> {
    let key_index = columns
        .iter()
        .position(|c| c == store.key_column)
        .ok_or_else(|| {
            Error::Internal(format!(
                "{}: no key column {}",
                store.name, store.key_column
            ))
        })?;
    let select = columns.join(", ");
    let mut n = 0u64;
    for col in store.subject_columns {
        let plan = plan(store, columns, col);
        let mut after: Option<Value> = None;
        loop {
            let rows = core.db.read(|c| match &after {
                None => c.query(
                    &format!(
                        "SELECT {select} FROM {t} WHERE {col} = $1 ORDER BY {k} LIMIT $2",
                        t = store.name,
                        k = store.key_column
                    ),
                    params![subject, PAGE],
                ),
                Some(last) => c.query(
                    &format!(
                        "SELECT {select} FROM {t} WHERE {col} = $1 AND {k} > $2 ORDER BY {k} LIMIT $3",
                        t = store.name,
                        k = store.key_column
                    ),
                    &[Value::from(subject), last.clone(), Value::Int(PAGE)],
                ),
            })?;
            for r in &rows {
                each(render(&plan, r, key, subject)?)?;
                n += 1;
            }
            match rows.last() {
                Some(last) if rows.len() as i64 == PAGE => after = last.0.get(key_index).cloned(),
                _ => break,
            }
        }
    }
    Ok(n)
}

fn write_store<W: Write + Seek>(
    core: &Steward,
    zip: &mut zip::ZipWriter<W>,
    store: &PersonalStore,
    columns: &[String],
    subject: &str,
    key: &steward_crypto::DataKey,
) -> Result<u64> {
    // JSON: an array of objects, written element by element.
    zip.start_file(format!("data/{}.json", store.name), options())
        .map_err(zip_err)?;
    zip.write_all(b"[").map_err(zip_err)?;
    let mut first = true;
    let n = for_each_row(core, store, columns, subject, key, |row| {
        let obj: Map<String, Json> = row.into_iter().collect();
        if !first {
            zip.write_all(b",").map_err(zip_err)?;
        }
        first = false;
        zip.write_all(b"\n  ").map_err(zip_err)?;
        serde_json::to_writer(&mut *zip, &obj).map_err(zip_err)
    })?;
    zip.write_all(b"\n]\n").map_err(zip_err)?;
    // CSV: a header from the first plan, then one line per row.
    zip.start_file(format!("data/{}.csv", store.name), options())
        .map_err(zip_err)?;
    let mut header_written = false;
    {
        let mut csv = csv::Writer::from_writer(&mut *zip);
        for_each_row(core, store, columns, subject, key, |row| {
            if !header_written {
                csv.write_record(row.iter().map(|(k, _)| k.as_str()))
                    .map_err(zip_err)?;
                header_written = true;
            }
            csv.write_record(row.iter().map(|(_, v)| match v {
                Json::String(s) => s.clone(),
                Json::Null => String::new(),
                other => other.to_string(),
            }))
            .map_err(zip_err)
        })?;
        csv.flush().map_err(zip_err)?;
    }
    Ok(n)
}

/// The files of a store of files (photos, attachments, recordings) that belong
/// to the subject, decrypted, as `files/<store>/<row key>.<extension>`. A file
/// whose object is missing from the blob store is listed in `missing_files`
/// rather than failing the whole bundle.
fn write_files<W: Write + Seek>(
    core: &Steward,
    zip: &mut zip::ZipWriter<W>,
    summary: &mut BundleSummary,
    store: &PersonalStore,
    blob_column: &str,
    subject: &str,
    key: &steward_crypto::DataKey,
) -> Result<()> {
    let Some(owner) = store.subject_columns.first() else {
        return Ok(());
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
            let z = &mut *zip;
            let entry = name.as_str();
            let begin = move || {
                z.start_file(entry, opts).map_err(zip_err)?;
                Ok(z)
            };
            match crate::files::copy_to(core, key, &blob_key, begin) {
                Ok(_) => summary.files.push(name),
                Err(Error::NotFound(_)) => summary.missing_files.push(name),
                Err(e) => return Err(e),
            }
        }
        match rows.last() {
            Some(last) if rows.len() as i64 == PAGE => after = Value::Text(last.text(0)?),
            _ => return Ok(()),
        }
    }
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

/// Recipients the subject's data was actually disclosed to, from the audit log.
fn disclosures(core: &Steward, subject: &str) -> Result<Vec<Disclosure>> {
    let mut by: BTreeMap<DisclosureKey, (u64, i64)> = BTreeMap::new();
    for e in audit::for_subject(&core.db, subject)? {
        if let (Some(r), "disclose") = (&e.recipient, e.action.as_str()) {
            let entry = by
                .entry((r.clone(), e.category.clone(), e.purpose.clone()))
                .or_insert((0, 0));
            entry.0 += 1;
            entry.1 = entry.1.max(e.at);
        }
    }
    Ok(by
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
        .collect())
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
            "- Kept: {} from {}\n- Source: {}\n\n",
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
        "format": "steward-subject-bundle/1",
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
