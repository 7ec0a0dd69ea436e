//! Backups of the data and the blobs, never of the keys, and their restore.
//!
//! A backup is a folder:
//!
//! ```text
//! DIR/manifest.json          what the backup holds (written last: no manifest, no backup)
//! DIR/data/steward.sqlite    SQLite: a consistent copy made with the online backup API
//! DIR/data/<table>.jsonl     PostgreSQL: one file per table, from one REPEATABLE READ snapshot
//! DIR/blobs/…                every blob, copied after the data snapshot
//! ```
//!
//! The key store and the master key are not in it: they are backed up apart, with a
//! short retention (docs/OPERATIONS.md). So once a subject's key is destroyed, their
//! rows in every older backup are ciphertext nobody can open, and restoring such a
//! backup finds subjects without keys: restore purges them from the restored data
//! (rows deleted or pseudonymised as erasure does, a tombstone from their blind
//! indexes, a `restore.purge` audit entry), so their ciphertext does not come back.
//!
//! Restore puts the data and the blobs of a backup back under a data directory and
//! keeps that directory's key store (or the one `--key-store` names). It checks the
//! manifest, stages the data beside the live store, proves that the key store
//! belongs to the same installation (the backup's audit chain must verify under the
//! key store's audit key and end at the manifest's head), purges the subjects
//! without keys, and only then swaps the staged data in.

use std::collections::BTreeMap;
use std::io::{BufRead, BufWriter, Write};
use std::path::{Component, Path, PathBuf};

use base64ct::{Base64, Encoding};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};
use steward_blobs::BlobStore;
use steward_store::{Backend, Conn, Db, StoreError, Value, is_identifier, params};

use crate::access::Actor;
use crate::audit::{self, Event};
use crate::clock::{now, rfc3339};
use crate::config::Settings;
use crate::core::{Steward, Tx, block_on};
use crate::error::{Error, Result};
use crate::registry::{OnErase, PERSONAL_STORES};
use crate::schema::MIGRATIONS;

/// What [`Manifest::format`] says.
pub const FORMAT: &str = "steward-backup";
/// The newest manifest format this Steward writes and reads.
pub const FORMAT_VERSION: i64 = 1;
/// The manifest's file name inside a backup folder.
pub const MANIFEST: &str = "manifest.json";
/// Folder and file names inside a backup.
const DATA_DIR: &str = "data";
const SQLITE_FILE: &str = "steward.sqlite";
const BLOBS_DIR: &str = "blobs";
/// The key store's tables: a data store holding them would carry keys into backups.
const KEY_TABLES: &[&str] = &["subject_keys", "system_keys", "audit_anchor"];
/// The SQLite restore stages the backup here, inside the data directory.
const STAGE_DIR: &str = ".steward-restore";

/// `DIR/manifest.json`: what a backup holds. Ids and counts only.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT`].
    pub format: String,
    pub format_version: i64,
    /// Unix seconds, and the same as RFC 3339.
    pub created_at: i64,
    pub created: String,
    pub steward_version: String,
    /// `sqlite` or `postgres`: the data store it was taken from.
    pub backend: String,
    /// The newest migration applied to the data store.
    pub schema_version: i64,
    /// Every table, parents before children (the order restore loads them in).
    pub tables: Vec<TableRows>,
    /// Objects in `blobs/`.
    pub blobs: u64,
    /// Id (a fingerprint, not the key) of the master key that wrapped the key store
    /// when the backup was taken. Key-store backups from then need that master key.
    pub master_key_id: String,
    /// The newest audit entry in the backup; restore checks the chain ends there.
    pub audit_head: Option<AuditHead>,
    /// Always false: keys are never in a Steward backup.
    pub keys_included: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    pub name: String,
    pub rows: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditHead {
    pub seq: i64,
    /// The entry's HMAC, base64.
    pub hash: String,
}

/// What `backup create` did.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub dir: String,
    pub manifest: Manifest,
}

/// What `backup restore` did.
#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub data_dir: String,
    pub backup_dir: String,
    pub backup_created: String,
    pub backend: String,
    /// The schema version of the backup; the restored data was then migrated to
    /// this Steward's newest.
    pub backup_schema_version: i64,
    pub schema_version: i64,
    /// Rows restored per table, as the manifest listed them.
    pub tables: Vec<TableRows>,
    /// The key store kept (described without credentials).
    pub key_store: String,
    /// True when the master key is not the one the backup recorded (rotated since).
    pub master_key_rotated_since_backup: bool,
    /// Audit entries in the restored log, all verified, the restore's own included.
    pub audit_entries: i64,
    /// Where the replaced log had got to: entries after the backup's head are not
    /// in the restored log (the restore's own entry records this number).
    pub previous_audit_seq: Option<i64>,
    /// Subjects in the backup whose key is no longer in the key store (erased
    /// since the backup was taken), purged from the restored data.
    pub purged_subjects: Vec<String>,
    /// Keys in the key store of subjects that are not in the backup (created after
    /// it was taken): their data did not come back. The keys protect nothing now.
    pub keys_without_data: u64,
    /// Rows deleted, and rows kept with the subject's id and fields cleared, per
    /// store, over all purged subjects.
    pub purged_rows: BTreeMap<String, u64>,
    pub pseudonymised_rows: BTreeMap<String, u64>,
    /// Sessions open in the backup, revoked: every user logs in again.
    pub sessions_revoked: u64,
    /// Objects removed from the blob store before the backup's were put back.
    pub blobs_removed: u64,
    pub blobs_restored: u64,
    /// Objects of purged subjects removed again after the copy.
    pub blobs_purged: u64,
}

// ---------------------------------------------------------------------------
// backup create
// ---------------------------------------------------------------------------

/// Checks that `dir` may receive a backup of the data directory `settings` name,
/// before anything is opened or created: it must be a new or empty folder outside
/// the data directory, and there must be data to back up.
pub fn preflight_create(settings: &Settings, dir: &Path) -> Result<()> {
    let target = resolve(dir)?;
    let data_dir = resolve(&settings.data_dir)?;
    if target.starts_with(&data_dir) {
        return Err(Error::invalid(
            "dir",
            format!(
                "{} is inside the data directory {}: keep backups elsewhere (a backup inside \
                 the data directory would sit beside the keys)",
                dir.display(),
                settings.data_dir.display()
            ),
        ));
    }
    if dir.exists() {
        if !dir.is_dir() {
            return Err(Error::invalid(
                "dir",
                format!("{} exists and is not a folder", dir.display()),
            ));
        }
        let mut entries = std::fs::read_dir(dir).map_err(|e| io_err("dir", dir, e))?;
        if entries.next().is_some() {
            return Err(Error::invalid(
                "dir",
                format!(
                    "{} is not empty: a backup goes into a new or empty folder",
                    dir.display()
                ),
            ));
        }
    }
    if settings.database_url.is_none() && !settings.sqlite_path().exists() {
        return Err(Error::invalid(
            "data-dir",
            format!(
                "no data store at {}: nothing to back up",
                settings.sqlite_path().display()
            ),
        ));
    }
    Ok(())
}

/// Takes a backup of the data store and the blobs into `dir` (new or empty),
/// while Steward keeps running. The key store and the master key are left out.
pub fn create(core: &Steward, dir: &Path) -> Result<BackupReport> {
    preflight_create(&core.settings, dir)?;
    let target = resolve(dir)?;
    if let Some(root) = core.blobs.local_root()
        && target.starts_with(resolve(root)?)
    {
        return Err(Error::invalid(
            "dir",
            format!(
                "{} is inside the blob folder {}: the backup would copy itself",
                dir.display(),
                root.display()
            ),
        ));
    }
    refuse_keys_in_data(&core.db)?;
    refuse_keys_in_blobs(core)?;
    let existed = dir.exists();
    make_private_dir(dir)?;
    let res = write_backup(core, dir);
    if res.is_err() {
        // Leave nothing half-made behind: the folder was new or empty.
        if existed {
            for name in [DATA_DIR, BLOBS_DIR, "manifest.json.tmp"] {
                let p = dir.join(name);
                let _ = if p.is_dir() {
                    std::fs::remove_dir_all(&p)
                } else {
                    std::fs::remove_file(&p)
                };
            }
        } else {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    res
}

fn write_backup(core: &Steward, dir: &Path) -> Result<BackupReport> {
    let data = dir.join(DATA_DIR);
    make_private_dir(&data)?;
    let (tables, schema_version, audit_head) = match core.db.backend() {
        Backend::Sqlite => {
            let file = data.join(SQLITE_FILE);
            core.db.backup_to(&file)?;
            // Describe the copy itself: it, not the live store, is what a restore gets.
            let copy = Db::open_sqlite(&file)?;
            let integrity = copy
                .read(|c| c.query_opt("PRAGMA quick_check", &[]))?
                .map(|r| r.text(0))
                .transpose()?;
            if integrity.as_deref() != Some("ok") {
                return Err(Error::Store(format!(
                    "the copy failed SQLite's integrity check: {}",
                    integrity.unwrap_or_default()
                )));
            }
            let names = ordered_tables(&copy)?;
            let described = copy.read(|c| describe(c, &names))?;
            copy.checkpoint()?;
            described
        }
        Backend::Postgres => export_postgres(&core.db, &data)?,
    };
    // Blobs after the data: every object the snapshot refers to and that still
    // exists is in the copy (objects written later are harmless extras).
    make_private_dir(&dir.join(BLOBS_DIR))?;
    let target = BlobStore::open(None, dir)?;
    let blobs = block_on(core.blobs.copy_all_to(&target))?;
    let at = now();
    let manifest = Manifest {
        format: FORMAT.to_owned(),
        format_version: FORMAT_VERSION,
        created_at: at,
        created: rfc3339(at),
        steward_version: env!("CARGO_PKG_VERSION").to_owned(),
        backend: core.db.backend().to_string(),
        schema_version,
        tables,
        blobs,
        master_key_id: core.keys.master_id(),
        audit_head,
        keys_included: false,
    };
    // Written last, under a temporary name first: a folder without a manifest is
    // not a backup, and restore says so.
    let tmp = dir.join("manifest.json.tmp");
    let text = serde_json::to_string_pretty(&manifest)
        .map_err(|e| Error::Internal(format!("manifest: {e}")))?;
    write_synced(&tmp, text.as_bytes())?;
    std::fs::rename(&tmp, dir.join(MANIFEST)).map_err(|e| io_err("dir", dir, e))?;
    Ok(BackupReport {
        dir: dir.display().to_string(),
        manifest,
    })
}

/// Row counts, schema version and audit head, all inside one snapshot.
fn describe(
    c: &mut dyn Conn,
    names: &[String],
) -> Result<(Vec<TableRows>, i64, Option<AuditHead>), StoreError> {
    let mut tables = Vec::with_capacity(names.len());
    for name in names {
        tables.push(TableRows {
            name: name.clone(),
            rows: count_rows(c, name)?,
        });
    }
    Ok((tables, schema_version(c)?, audit_head(c)?))
}

fn count_rows(c: &mut dyn Conn, table: &str) -> Result<u64, StoreError> {
    let n = c
        .query_opt(&format!("SELECT COUNT(*) FROM {table}"), &[])?
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

fn schema_version(c: &mut dyn Conn) -> Result<i64, StoreError> {
    Ok(c.query_opt(
        "SELECT CAST(MAX(version) AS BIGINT) FROM schema_migrations",
        &[],
    )?
    .map(|r| r.opt_i64(0))
    .transpose()?
    .flatten()
    .unwrap_or(0))
}

fn audit_head(c: &mut dyn Conn) -> Result<Option<AuditHead>, StoreError> {
    let row = c.query_opt(
        "SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1",
        &[],
    )?;
    row.map(|r| {
        Ok(AuditHead {
            seq: r.i64(0)?,
            hash: Base64::encode_string(&r.bytes(1)?),
        })
    })
    .transpose()
}

/// PostgreSQL: every table into `data/<table>.jsonl`, in one REPEATABLE READ
/// read-only transaction, so the files form one consistent snapshot while
/// Steward keeps writing.
///
/// A file is a header line `{"table": …, "columns": [...]}` and then one JSON
/// array per row: `null`, an integer, a string (TEXT), or `{"base64": "…"}` (BYTEA).
fn export_postgres(db: &Db, data: &Path) -> Result<(Vec<TableRows>, i64, Option<AuditHead>)> {
    let names = ordered_tables(db)?;
    let mut columns = Vec::with_capacity(names.len());
    for name in &names {
        columns.push(db.column_names(name)?);
    }
    // Writing files inside the snapshot: an I/O failure is kept here and the
    // snapshot is abandoned with a placeholder store error.
    let mut io_failure: Option<Error> = None;
    let described = db.read(|c| {
        for (name, cols) in names.iter().zip(&columns) {
            let path = data.join(format!("{name}.jsonl"));
            let mut out = match std::fs::File::create(&path) {
                Ok(f) => BufWriter::new(f),
                Err(e) => {
                    io_failure = Some(io_err("dir", &path, e));
                    return Err(StoreError::Postgres("export stopped".into()));
                }
            };
            let header = json!({ "table": name, "columns": cols });
            let mut write = |line: &Json, out: &mut BufWriter<std::fs::File>| {
                writeln!(out, "{line}").map_err(|e| {
                    io_failure = Some(io_err("dir", &path, e));
                    StoreError::Postgres("export stopped".into())
                })
            };
            write(&header, &mut out)?;
            c.query_each(
                &format!("SELECT {} FROM {name}", cols.join(", ")),
                &[],
                &mut |row| {
                    let line = Json::Array(row.values().iter().map(encode).collect());
                    write(&line, &mut out)
                },
            )?;
            let synced = out
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all());
            if let Err(e) = synced {
                io_failure = Some(io_err("dir", &data.join(format!("{name}.jsonl")), e));
                return Err(StoreError::Postgres("export stopped".into()));
            }
        }
        describe(c, &names)
    });
    match (described, io_failure) {
        (_, Some(e)) => Err(e),
        (res, None) => Ok(res?),
    }
}

fn encode(v: &Value) -> Json {
    match v {
        Value::Null => Json::Null,
        Value::Int(i) => json!(i),
        Value::Text(t) => Json::String(t.clone()),
        Value::Bytes(b) => json!({ "base64": Base64::encode_string(b) }),
    }
}

fn decode(v: &Json) -> Option<Value> {
    Some(match v {
        Json::Null => Value::Null,
        Json::Number(n) => Value::Int(n.as_i64()?),
        Json::String(s) => Value::Text(s.clone()),
        Json::Object(o) if o.len() == 1 => {
            Value::Bytes(Base64::decode_vec(o.get("base64")?.as_str()?).ok()?)
        }
        _ => return None,
    })
}

/// The data store's tables in the order Steward's migrations create them
/// (`schema_migrations` first): parents before children, so rows can be loaded
/// in this order and deleted in the reverse one.
fn ordered_tables(db: &Db) -> Result<Vec<String>> {
    let present = db.table_names()?;
    if let Some(k) = present.iter().find(|t| KEY_TABLES.contains(&t.as_str())) {
        return Err(Error::Conflict(format!(
            "the data store holds the key store's table {k}: a backup of it would carry \
             the keys. Give the key store a place of its own (--key-store)"
        )));
    }
    let order = creation_order();
    if let Some(unknown) = present.iter().find(|t| !order.contains(t)) {
        return Err(Error::Conflict(format!(
            "table {unknown} is not one of Steward's (made by a newer version?): \
             refusing to back up a data store this version does not know"
        )));
    }
    Ok(order.into_iter().filter(|t| present.contains(t)).collect())
}

fn creation_order() -> Vec<String> {
    let mut out = vec!["schema_migrations".to_owned()];
    for m in MIGRATIONS {
        for (at, _) in m.sql.match_indices("CREATE TABLE ") {
            let rest = m.sql[at + "CREATE TABLE ".len()..].trim_start();
            let rest = rest.strip_prefix("IF NOT EXISTS ").unwrap_or(rest);
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() && !out.contains(&name) {
                out.push(name);
            }
        }
    }
    out
}

fn refuse_keys_in_data(db: &Db) -> Result<()> {
    ordered_tables(db).map(|_| ())
}

/// A blob folder that holds the key store or the master key file would carry
/// them into the backup.
fn refuse_keys_in_blobs(core: &Steward) -> Result<()> {
    let Some(root) = core.blobs.local_root() else {
        return Ok(());
    };
    let root = resolve(root)?;
    let mut key_files = vec![core.settings.master_key_path()];
    if let KeyStoreAt::Sqlite(p) = key_store_at(&core.settings) {
        key_files.push(p);
    }
    for f in key_files {
        if resolve(&f)?.starts_with(&root) {
            return Err(Error::Conflict(format!(
                "the blob folder {} holds {}: a backup of the blobs would carry keys. \
                 Keep keys out of the blob folder",
                root.display(),
                f.display()
            )));
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// backup restore
// ---------------------------------------------------------------------------

/// Reads and checks `DIR/manifest.json` and the files it promises.
pub fn read_manifest(dir: &Path) -> Result<Manifest> {
    let path = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Error::invalid(
                "dir",
                format!(
                    "{} has no {MANIFEST}: not a Steward backup, or one that did not finish",
                    dir.display()
                ),
            ));
        }
        Err(e) => return Err(io_err("dir", &path, e)),
    };
    let bad = |why: String| Error::invalid("dir", format!("{}: {why}", path.display()));
    let raw: Json = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON ({e})")))?;
    if raw.get("format").and_then(Json::as_str) != Some(FORMAT) {
        return Err(bad(format!("not a {FORMAT} manifest")));
    }
    let version = raw
        .get("format_version")
        .and_then(Json::as_i64)
        .ok_or_else(|| bad("format_version is missing".into()))?;
    if version > FORMAT_VERSION {
        return Err(bad(format!(
            "the backup has format {version}, newer than this Steward reads \
             (up to {FORMAT_VERSION}): restore it with a newer Steward"
        )));
    }
    if version < 1 {
        return Err(bad(format!("unknown format version {version}")));
    }
    let m: Manifest = serde_json::from_value(raw).map_err(|e| bad(e.to_string()))?;
    let newest = MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0);
    if m.schema_version > newest {
        return Err(bad(format!(
            "the data has schema version {}, newer than this Steward's {newest}: \
             restore it with a newer Steward",
            m.schema_version
        )));
    }
    if m.keys_included {
        return Err(bad("it says it holds keys; Steward backups never do".into()));
    }
    let order = creation_order();
    for t in &m.tables {
        if !order.contains(&t.name) || !is_identifier(&t.name) {
            return Err(bad(format!("unknown table {:?}", t.name)));
        }
    }
    let data = dir.join(DATA_DIR);
    let missing: Vec<PathBuf> = match m.backend.as_str() {
        "sqlite" => vec![data.join(SQLITE_FILE)],
        "postgres" => m
            .tables
            .iter()
            .map(|t| data.join(format!("{}.jsonl", t.name)))
            .collect(),
        other => return Err(bad(format!("unknown backend {other:?}"))),
    }
    .into_iter()
    .chain([dir.join(BLOBS_DIR)])
    .filter(|p| !p.exists())
    .collect();
    if let Some(p) = missing.first() {
        return Err(bad(format!("{} is missing", p.display())));
    }
    Ok(m)
}

/// Where the key store of `settings` lives (the same rules as `Steward::open`).
#[derive(Debug, Clone)]
enum KeyStoreAt {
    Sqlite(PathBuf),
    Postgres { url: String, schema: String },
}

fn key_store_at(settings: &Settings) -> KeyStoreAt {
    let schema = match &settings.database_schema {
        Some(s) => format!("{s}_keys"),
        None => "steward_keys".to_owned(),
    };
    match (&settings.key_store, &settings.database_url) {
        (Some(ks), _) if ks.starts_with("postgres://") || ks.starts_with("postgresql://") => {
            KeyStoreAt::Postgres {
                url: ks.clone(),
                schema,
            }
        }
        (Some(path), _) => KeyStoreAt::Sqlite(PathBuf::from(path)),
        (None, Some(url)) => KeyStoreAt::Postgres {
            url: url.clone(),
            schema,
        },
        (None, None) => KeyStoreAt::Sqlite(settings.data_dir.join("keys").join("keys.sqlite")),
    }
}

/// Opens the key store that exists (never creates one: a new key store holds no
/// subject keys, and restoring against it would purge everyone).
fn open_existing_key_store(at: &KeyStoreAt) -> Result<Db> {
    let missing = |what: String| {
        Error::invalid(
            "key-store",
            format!(
                "no key store at {what}: restore keeps the data directory's key store or \
                 the one --key-store names, and needs one that exists"
            ),
        )
    };
    let db = match at {
        KeyStoreAt::Sqlite(p) => {
            if !p.is_file() {
                return Err(missing(p.display().to_string()));
            }
            Db::open_sqlite(p)?
        }
        KeyStoreAt::Postgres { url, schema } => Db::open_postgres(url, Some(schema))?,
    };
    if !db.table_names()?.iter().any(|t| t == "system_keys") {
        return Err(missing(db.describe()));
    }
    Ok(db)
}

fn read_anchor(keys: &Db) -> Result<Option<(i64, Vec<u8>)>> {
    let row = keys.read(|c| c.query_opt("SELECT seq, hash FROM audit_anchor WHERE id = 1", &[]))?;
    row.map(|r| Ok((r.i64(0)?, r.bytes(1)?))).transpose()
}

/// Sets the key store's audit anchor to `anchor` (or removes it), backwards too:
/// restoring a backup rolls the log back to the backup's head on purpose.
fn put_anchor(keys: &Db, anchor: Option<&(i64, Vec<u8>)>) -> Result<()> {
    keys.write(|c: &mut dyn Conn| {
        c.execute("DELETE FROM audit_anchor", &[])?;
        if let Some((seq, hash)) = anchor {
            c.execute(
                "INSERT INTO audit_anchor (id, seq, hash, at) VALUES (1, $1, $2, $3)",
                params![*seq, hash.clone(), now()],
            )?;
        }
        Ok::<_, StoreError>(())
    })?;
    Ok(())
}

/// Where the restore stages the backup's data before swapping it in.
enum Stage {
    Sqlite {
        dir: PathBuf,
        file: PathBuf,
    },
    Postgres {
        db: Db,
        schema: String,
        target: String,
    },
}

/// Restores the backup in `dir` into the data directory (and database) that
/// `settings` name, keeping their key store. Every Steward process on that data
/// directory must be stopped first (checked on SQLite).
pub fn restore(settings: &Settings, dir: &Path, actor: &Actor) -> Result<RestoreReport> {
    let manifest = read_manifest(dir)?;
    let target_backend = if settings.database_url.is_some() {
        Backend::Postgres
    } else {
        Backend::Sqlite
    };
    if manifest.backend != target_backend.to_string() {
        return Err(Error::invalid(
            "dir",
            format!(
                "the backup is of a {} data store and the target is {}: restoring across \
                 databases is not supported",
                manifest.backend, target_backend
            ),
        ));
    }
    let backup = resolve(dir)?;
    let data_dir = resolve(&settings.data_dir)?;
    if backup.starts_with(&data_dir) || data_dir.starts_with(&backup) {
        return Err(Error::invalid(
            "dir",
            format!(
                "the backup {} and the data directory {} must not contain each other",
                dir.display(),
                settings.data_dir.display()
            ),
        ));
    }
    if let Some(url) = &settings.blob_url
        && let Some(path) = url.strip_prefix("file://")
    {
        let root = resolve(Path::new(path))?;
        if backup.starts_with(&root) || root.starts_with(&backup) {
            return Err(Error::invalid(
                "blob-url",
                "the blob folder and the backup must not contain each other",
            ));
        }
    }
    if settings.master_key.is_none() && !settings.master_key_path().is_file() {
        return Err(Error::invalid(
            "master-key-file",
            format!(
                "no master key at {}: restore needs the master key of the key store it keeps \
                 (--master-key-file or STEWARD_MASTER_KEY)",
                settings.master_key_path().display()
            ),
        ));
    }
    let key_at = key_store_at(settings);
    if target_backend == Backend::Sqlite && Db::sqlite_in_use(&settings.sqlite_path())? {
        return Err(running(settings));
    }
    let key_db = open_existing_key_store(&key_at)?;
    if !settings.data_dir.exists() {
        make_private_dir(&settings.data_dir)?;
    }

    let previous = read_anchor(&key_db)?;
    let stage = stage_data(settings, dir, &manifest)?;
    let outcome = restore_staged(
        &Staged {
            settings,
            dir,
            manifest: &manifest,
            stage: &stage,
            key_db: &key_db,
            key_at: &key_at,
            previous_seq: previous.as_ref().map(|(s, _)| *s),
        },
        actor,
    );
    let outcome = match outcome {
        Ok(v) => swap_in(settings, &stage).map(|()| v),
        Err(e) => Err(e),
    };
    let mut report = match outcome {
        Ok(r) => r,
        Err(e) => {
            // Nothing of the live data changed: put the anchor back where it was.
            let _ = put_anchor(&key_db, previous.as_ref());
            discard_stage(&stage);
            return Err(e);
        }
    };
    discard_stage(&stage);
    restore_blobs(settings, dir, &mut report)?;
    Ok(report)
}

fn running(settings: &Settings) -> Error {
    Error::Conflict(format!(
        "a Steward process has {} open (steward serve, or another command): stop it, \
         then restore",
        settings.sqlite_path().display()
    ))
}

/// Copies (SQLite) or loads (PostgreSQL) the backup's data into a staging area
/// and checks it against the manifest.
fn stage_data(settings: &Settings, dir: &Path, m: &Manifest) -> Result<Stage> {
    match settings.database_url.as_deref() {
        None => {
            let stage_dir = settings.data_dir.join(STAGE_DIR);
            if stage_dir.exists() {
                // Left by a restore that stopped half-way.
                std::fs::remove_dir_all(&stage_dir)
                    .map_err(|e| io_err("data-dir", &stage_dir, e))?;
            }
            make_private_dir(&stage_dir)?;
            let file = stage_dir.join("steward.sqlite");
            let stage = Stage::Sqlite {
                dir: stage_dir,
                file: file.clone(),
            };
            let checked = (|| {
                std::fs::copy(dir.join(DATA_DIR).join(SQLITE_FILE), &file)
                    .map_err(|e| io_err("dir", &file, e))?;
                let db = Db::open_sqlite(&file)?;
                let ok = db
                    .read(|c| c.query_opt("PRAGMA quick_check", &[]))?
                    .map(|r| r.text(0))
                    .transpose()?;
                if ok.as_deref() != Some("ok") {
                    return Err(Error::invalid(
                        "dir",
                        "the backup's database fails SQLite's integrity check",
                    ));
                }
                check_counts(&db, m)?;
                db.checkpoint()?;
                Ok(())
            })();
            if let Err(e) = checked {
                discard_stage(&stage);
                return Err(e);
            }
            Ok(stage)
        }
        Some(url) => {
            let target_db = Db::open_postgres(url, settings.database_schema.as_deref())?;
            let target = target_db
                .read(|c| c.query_opt("SELECT current_schema()", &[]))?
                .map(|r| r.text(0))
                .transpose()?
                .ok_or_else(|| Error::Store("the connection has no current schema".into()))?;
            let schema = format!("{target}_restore");
            if !is_identifier(&target) || schema.len() > 63 {
                return Err(Error::invalid(
                    "database-schema",
                    format!("cannot restore into schema {target:?}: use a plain lower-case name"),
                ));
            }
            target_db.write(|c: &mut dyn Conn| {
                c.execute_batch(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            })?;
            let db = Db::open_postgres(url, Some(&schema))?;
            let stage = Stage::Postgres {
                db: db.clone(),
                schema,
                target,
            };
            if let Err(e) = load_jsonl(&db, dir, m) {
                discard_stage(&stage);
                return Err(e);
            }
            Ok(stage)
        }
    }
}

fn check_counts(db: &Db, m: &Manifest) -> Result<()> {
    let names: Vec<String> = m.tables.iter().map(|t| t.name.clone()).collect();
    let present = ordered_tables(db)?;
    let (found, version, _) = db.read(|c| describe(c, &present))?;
    let expected: Vec<TableRows> = m.tables.clone();
    if present != names || found != expected || version != m.schema_version {
        return Err(Error::invalid(
            "dir",
            "the backup's data does not match its manifest (tables, row counts or schema \
             version differ): the backup is damaged or was altered",
        ));
    }
    Ok(())
}

/// PostgreSQL: creates the backup's schema version in the staging schema and
/// loads every table file into it, in one transaction, checking the counts.
fn load_jsonl(db: &Db, dir: &Path, m: &Manifest) -> Result<()> {
    let upto: Vec<_> = MIGRATIONS
        .iter()
        .filter(|mig| mig.version <= m.schema_version)
        .copied()
        .collect();
    db.migrate(&upto)?;
    let mut failure: Option<Error> = None;
    let res = db.write(|c: &mut dyn Conn| -> Result<()> {
        // The migrations seeded some rows (counters, schema_migrations): the
        // backup's rows replace them.
        for t in m.tables.iter().rev() {
            c.execute(&format!("DELETE FROM {}", t.name), &[])?;
        }
        for t in &m.tables {
            let path = dir.join(DATA_DIR).join(format!("{}.jsonl", t.name));
            let file = std::fs::File::open(&path).map_err(|e| io_err("dir", &path, e))?;
            let mut lines = std::io::BufReader::new(file).lines();
            let damaged = |why: &str| Error::invalid("dir", format!("{}: {why}", path.display()));
            let header: Json = lines
                .next()
                .transpose()
                .map_err(|e| io_err("dir", &path, e))?
                .and_then(|l| serde_json::from_str(&l).ok())
                .ok_or_else(|| damaged("no header line"))?;
            let columns: Vec<String> = header
                .get("columns")
                .and_then(|c| serde_json::from_value(c.clone()).ok())
                .ok_or_else(|| damaged("the header names no columns"))?;
            if header.get("table").and_then(Json::as_str) != Some(t.name.as_str())
                || columns.is_empty()
                || !columns.iter().all(|c| is_identifier(c))
            {
                return Err(damaged("the header does not match the manifest"));
            }
            let cols: Vec<&str> = columns.iter().map(String::as_str).collect();
            let width = cols.len();
            let mut rows = lines.map_while(|line| {
                let parsed = line.map_err(|e| io_err("dir", &path, e)).and_then(|l| {
                    serde_json::from_str::<Json>(&l)
                        .ok()
                        .and_then(|j| {
                            j.as_array()
                                .filter(|a| a.len() == width)
                                .and_then(|a| a.iter().map(decode).collect::<Option<Vec<_>>>())
                        })
                        .ok_or_else(|| damaged("a row is not a list of typed values"))
                });
                match parsed {
                    Ok(v) => Some(v),
                    Err(e) => {
                        failure = Some(e);
                        None
                    }
                }
            });
            let n = c.copy_in(&t.name, &cols, &mut rows)?;
            drop(rows);
            if let Some(e) = failure.take() {
                return Err(e);
            }
            if n != t.rows {
                return Err(damaged(&format!(
                    "{n} rows, the manifest says {}: the backup is damaged or was altered",
                    t.rows
                )));
            }
        }
        Ok(())
    });
    res?;
    check_counts(db, m)?;
    continue_chat_ids(db)
}

/// PostgreSQL numbers chat from the `chat_ids` sequence (migration 62),
/// which a backup does not carry: the restored store's sequence continues
/// above every id it holds.
fn continue_chat_ids(db: &Db) -> Result<()> {
    db.write(|c: &mut dyn Conn| {
        let has_sequence = c
            .query_opt(
                "SELECT 1::bigint FROM pg_class WHERE relkind = 'S' AND relname = 'chat_ids' \
                 AND relnamespace = current_schema()::regnamespace",
                &[],
            )?
            .is_some();
        if has_sequence {
            c.execute(
                "SELECT setval('chat_ids', GREATEST(\
                 (SELECT value FROM counters WHERE name = 'chat'), \
                 (SELECT COALESCE(MAX(seq), 0) FROM chat_messages), \
                 (SELECT COALESCE(MAX(id), 0) FROM chat_receipts)) + 1, false)",
                &[],
            )?;
        }
        Ok(())
    })
}

/// What the steps between staging and the swap work on.
struct Staged<'a> {
    settings: &'a Settings,
    dir: &'a Path,
    manifest: &'a Manifest,
    stage: &'a Stage,
    key_db: &'a Db,
    key_at: &'a KeyStoreAt,
    /// Where the key store's anchor stood: the head of the log being replaced.
    previous_seq: Option<i64>,
}

/// Everything between staging and the swap: open the staged data with the kept
/// key store, prove they belong together, purge the subjects without keys.
fn restore_staged(s: &Staged<'_>, actor: &Actor) -> Result<RestoreReport> {
    let (settings, dir, m) = (s.settings, s.dir, s.manifest);
    let core = open_staged(settings, s.stage, s.key_at)?;
    // The backup's chain must verify under this key store's audit key and end at
    // the manifest's head: the key store is this installation's, and the backup's
    // log is whole.
    let head = m
        .audit_head
        .as_ref()
        .map(|h| {
            Base64::decode_vec(&h.hash)
                .map(|hash| (h.seq, hash))
                .map_err(|_| Error::invalid("dir", "the manifest's audit head is not base64"))
        })
        .transpose()?;
    put_anchor(s.key_db, head.as_ref())?;
    let v = audit::verify(&core.db, &core.keys)?;
    if !v.ok {
        return Err(Error::Conflict(format!(
            "the backup's audit log does not verify with this key store ({}): either the \
             key store belongs to another installation (see --key-store) or the backup was \
             altered. Nothing was changed",
            v.problem.unwrap_or_default()
        )));
    }

    let mut report = RestoreReport {
        data_dir: settings.data_dir.display().to_string(),
        backup_dir: dir.display().to_string(),
        backup_created: m.created.clone(),
        backend: m.backend.clone(),
        backup_schema_version: m.schema_version,
        schema_version: MIGRATIONS.iter().map(|m| m.version).max().unwrap_or(0),
        tables: m.tables.clone(),
        key_store: core.keys.describe(),
        master_key_rotated_since_backup: core.keys.master_id() != m.master_key_id,
        audit_entries: 0,
        previous_audit_seq: s.previous_seq,
        purged_subjects: Vec::new(),
        keys_without_data: 0,
        purged_rows: BTreeMap::new(),
        pseudonymised_rows: BTreeMap::new(),
        sessions_revoked: 0,
        blobs_removed: 0,
        blobs_restored: 0,
        blobs_purged: 0,
    };

    // Subjects whose key was destroyed since the backup (erased) are purged.
    let subjects = core
        .db
        .read(|c| c.query("SELECT id, tenant_id FROM subjects ORDER BY id", &[]))?;
    let known: std::collections::HashSet<String> = subjects
        .iter()
        .map(|r| r.text(0))
        .collect::<Result<_, _>>()?;
    report.keys_without_data = s.key_db.read(|c| {
        let mut n = 0u64;
        c.query_each("SELECT subject_id FROM subject_keys", &[], &mut |r| {
            if !known.contains(&r.text(0)?) {
                n += 1;
            }
            Ok(())
        })?;
        Ok(n)
    })?;
    for r in &subjects {
        let (id, tenant) = (r.text(0)?, r.text(1)?);
        if core.keys.subject_key(&id)?.is_some() {
            continue;
        }
        let (deleted, pseudonymised) = core.write(actor, |tx| purge_subject(tx, &id, &tenant))?;
        for (k, n) in deleted {
            *report.purged_rows.entry(k).or_default() += n;
        }
        for (k, n) in pseudonymised {
            *report.pseudonymised_rows.entry(k).or_default() += n;
        }
        report.purged_subjects.push(id);
    }

    report.sessions_revoked = core.write(actor, |tx| {
        // Sessions revoked after the backup (logout, a disabled account) would
        // come back to life: every session of the backup is revoked instead.
        let revoked = tx.conn.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE revoked_at IS NULL",
            params![tx.at],
        )?;
        tx.audit(Event {
            action: "restore".into(),
            detail: json!({
                "backup_created_at": m.created_at,
                "backup_schema_version": m.schema_version,
                "backup_audit_seq": m.audit_head.as_ref().map(|h| h.seq),
                "replaced_audit_seq": s.previous_seq,
                "backup_master_key_id": m.master_key_id,
                "purged_subjects": report.purged_subjects.len(),
                "sessions_revoked": revoked,
            }),
            ..Event::default()
        })?;
        Ok(revoked)
    })?;
    let v = audit::verify(&core.db, &core.keys)?;
    if !v.ok {
        return Err(Error::Internal(format!(
            "the restored audit log does not verify: {}",
            v.problem.unwrap_or_default()
        )));
    }
    report.audit_entries = v.entries;
    core.db.checkpoint()?;
    Ok(report)
}

/// A Steward on the staged data, with the kept key store, the policy and a
/// throw-away blob store (blobs are restored after the swap).
fn open_staged(settings: &Settings, stage: &Stage, key_at: &KeyStoreAt) -> Result<Steward> {
    match stage {
        Stage::Sqlite { dir, .. } => {
            let staged = Settings {
                data_dir: dir.clone(),
                key_store: Some(match key_at {
                    KeyStoreAt::Sqlite(p) => p.display().to_string(),
                    KeyStoreAt::Postgres { url, .. } => url.clone(),
                }),
                master_key_file: Some(settings.master_key_path()),
                blob_url: Some("memory:".into()),
                ..settings.clone()
            };
            Ok(Steward::open(staged)?.0)
        }
        Stage::Postgres { db, .. } => {
            let (mut core, _) = Steward::open(Settings {
                blob_url: Some("memory:".into()),
                ..settings.clone()
            })?;
            db.migrate(MIGRATIONS)?;
            core.db = db.clone();
            crate::tenants::ensure_provider(&core)?;
            Ok(core)
        }
    }
}

type Counts = BTreeMap<String, u64>;

/// Removes a subject who has no key any more from the restored data, walking the
/// registry as erasure does: rows deleted, or kept with the subject's id and
/// fields cleared. A tombstone (their blind indexes, nothing readable) lets a
/// later request be told the data is gone. Their ciphertext could not be read
/// anyway; this keeps it from lingering.
fn purge_subject(tx: &mut Tx<'_>, subject_id: &str, tenant: &str) -> Result<(Counts, Counts)> {
    let ids = tx
        .conn
        .query_opt(
            "SELECT email_idx, phone_idx FROM subjects WHERE id = $1",
            params![subject_id],
        )?
        .ok_or_else(|| Error::NotFound("subject".into()))?;
    let username_idx = tx
        .conn
        .query_opt(
            "SELECT username_idx FROM accounts WHERE subject_id = $1",
            params![subject_id],
        )?
        .map(|r| r.bytes(0))
        .transpose()?;
    let tombstone_id = uuid::Uuid::now_v7().to_string();
    tx.conn.execute(
        "UPDATE requests SET tombstone_id = $1 WHERE subject_id = $2",
        params![tombstone_id.as_str(), subject_id],
    )?;
    let mut deleted = Counts::new();
    let mut pseudonymised = Counts::new();
    for store in PERSONAL_STORES.iter().rev() {
        for col in store.subject_columns {
            match store.erase_action(col) {
                OnErase::Delete | OnErase::DeleteWithOwner => {
                    let n = tx.conn.execute(
                        &format!("DELETE FROM {} WHERE {col} = $1", store.name),
                        params![subject_id],
                    )?;
                    *deleted.entry(store.name.to_owned()).or_default() += n;
                }
                OnErase::Pseudonymise => {
                    let mut sets = vec![format!("{col} = NULL")];
                    sets.extend(
                        store
                            .encrypted_columns
                            .iter()
                            .filter(|(_, owner)| owner == col)
                            .map(|(c, _)| format!("{c} = NULL")),
                    );
                    let n = tx.conn.execute(
                        &format!(
                            "UPDATE {} SET {} WHERE {col} = $1",
                            store.name,
                            sets.join(", ")
                        ),
                        params![subject_id],
                    )?;
                    *pseudonymised.entry(store.name.to_owned()).or_default() += n;
                }
            }
        }
    }
    tx.conn.execute(
        "INSERT INTO erasure_tombstones (id, tenant_id, erased_at, reason, request_id, \
         email_idx, phone_idx, username_idx) VALUES ($1, $2, $3, 'restore', NULL, $4, $5, $6)",
        params![
            tombstone_id.as_str(),
            tenant,
            tx.at,
            ids.opt_bytes(0)?,
            ids.opt_bytes(1)?,
            username_idx
        ],
    )?;
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        action: "restore.purge".into(),
        detail: json!({
            "reason": "no data key in the key store (erased after the backup was taken)",
            "tombstone_id": tombstone_id,
            "deleted": deleted,
            "pseudonymised": pseudonymised,
        }),
        ..Event::default()
    })?;
    Ok((deleted, pseudonymised))
}

/// Replaces the live data with the staged data.
fn swap_in(settings: &Settings, stage: &Stage) -> Result<()> {
    match stage {
        Stage::Sqlite { file, .. } => {
            Db::sqlite_replace(&settings.sqlite_path(), file).map_err(|e| match e {
                StoreError::Busy(_) => running(settings),
                other => other.into(),
            })
        }
        Stage::Postgres { db, schema, target } => {
            let url = settings
                .database_url
                .as_deref()
                .ok_or_else(|| Error::Internal("no database URL".into()))?;
            let tables = db.table_names()?;
            if let Some(bad) = tables.iter().find(|t| !is_identifier(t)) {
                return Err(Error::Store(format!("unexpected table name {bad:?}")));
            }
            let target_db = Db::open_postgres(url, settings.database_schema.as_deref())?;
            // One transaction: readers see the old tables or the new ones.
            target_db.write(|c: &mut dyn Conn| {
                for t in &tables {
                    c.execute_batch(&format!("DROP TABLE IF EXISTS {target}.{t} CASCADE"))?;
                }
                for t in &tables {
                    c.execute_batch(&format!("ALTER TABLE {schema}.{t} SET SCHEMA {target}"))?;
                }
                // Sequences too (chat_ids), continued above the restored ids.
                let sequences = c.query(
                    &format!(
                        "SELECT relname::text FROM pg_class WHERE relkind = 'S' \
                         AND relnamespace = '{schema}'::regnamespace ORDER BY relname"
                    ),
                    &[],
                )?;
                for r in &sequences {
                    let name = r.text(0)?;
                    if !is_identifier(&name) {
                        return Err(StoreError::Postgres(format!(
                            "unexpected sequence name {name:?}"
                        )));
                    }
                    c.execute_batch(&format!(
                        "DROP SEQUENCE IF EXISTS {target}.{name}; \
                         ALTER SEQUENCE {schema}.{name} SET SCHEMA {target}"
                    ))?;
                }
                c.execute_batch(&format!("DROP SCHEMA {schema}"))
            })?;
            // The purge's deleted rows are dead tuples until vacuumed.
            let personal: Vec<&str> = PERSONAL_STORES.iter().map(|s| s.name).collect();
            target_db.vacuum(&personal)?;
            Ok(())
        }
    }
}

fn discard_stage(stage: &Stage) {
    match stage {
        Stage::Sqlite { dir, .. } => {
            let _ = std::fs::remove_dir_all(dir);
        }
        Stage::Postgres { db, schema, .. } => {
            let _ = db.write(|c: &mut dyn Conn| {
                c.execute_batch(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            });
        }
    }
}

/// Empties the data directory's blob store, copies the backup's blobs in, and
/// removes those of purged subjects again.
fn restore_blobs(settings: &Settings, dir: &Path, report: &mut RestoreReport) -> Result<()> {
    let target = BlobStore::open(settings.blob_url.as_deref(), &settings.data_dir)?;
    let source = BlobStore::open(None, dir)?;
    let purged = report.purged_subjects.clone();
    let (removed, restored, again) = block_on(async {
        let mut removed = 0u64;
        for (key, _) in target.list("").await? {
            if target.delete(&key).await? {
                removed += 1;
            }
        }
        let restored = source.copy_all_to(&target).await?;
        let mut again = 0u64;
        for (key, _) in target.list("").await? {
            // tenant/<tenant>/subject/<subject>/…
            let mut parts = key.split('/');
            if let (Some("tenant"), Some(_), Some("subject"), Some(s)) =
                (parts.next(), parts.next(), parts.next(), parts.next())
                && purged.iter().any(|p| p == s)
                && target.delete(&key).await?
            {
                again += 1;
            }
        }
        Ok::<_, steward_blobs::BlobError>((removed, restored, again))
    })
    .map_err(|e| {
        Error::Blobs(format!(
            "the data was restored, but the blobs were not: {e}. Run the restore again"
        ))
    })?;
    report.blobs_removed = removed;
    report.blobs_restored = restored;
    report.blobs_purged = again;
    Ok(())
}

// ---------------------------------------------------------------------------
// files
// ---------------------------------------------------------------------------

/// An absolute form of `p` with `.` and `..` folded and symbolic links of its
/// existing part resolved, for "is this inside that" checks on paths that may
/// not exist yet.
fn resolve(p: &Path) -> Result<PathBuf> {
    let abs = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| io_err("dir", Path::new("."), e))?
            .join(p)
    };
    let mut lexical = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                lexical.pop();
            }
            other => lexical.push(other),
        }
    }
    let mut existing = lexical.clone();
    let mut rest = Vec::new();
    while !existing.exists() {
        match existing.file_name() {
            Some(name) => {
                rest.push(name.to_owned());
                existing.pop();
            }
            None => break,
        }
    }
    let mut out = existing.canonicalize().unwrap_or(existing);
    for name in rest.iter().rev() {
        out.push(name);
    }
    Ok(out)
}

fn make_private_dir(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir).map_err(|e| io_err("dir", dir, e))
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = std::fs::File::create(path).map_err(|e| io_err("dir", path, e))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(|e| io_err("dir", path, e))
}

fn io_err(field: &str, path: &Path, e: std::io::Error) -> Error {
    Error::invalid(field, format!("{}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_come_parents_first() {
        let order = creation_order();
        let at = |t: &str| order.iter().position(|x| x == t);
        assert_eq!(at("schema_migrations"), Some(0));
        assert!(at("tenants") < at("subjects"));
        assert!(at("subjects") < at("accounts"));
        assert!(at("accounts") < at("sessions"));
        assert!(at("requests") < at("request_events"));
        assert!(at("requests") < at("notifications"));
        for t in KEY_TABLES {
            assert_eq!(at(t), None);
        }
    }

    #[test]
    fn values_round_trip_through_json() {
        for v in [
            Value::Null,
            Value::Int(-5),
            Value::Int(i64::MAX),
            Value::Text("{\"base64\":\"x\"}".into()),
            Value::Bytes(vec![0, 1, 255]),
        ] {
            let line = encode(&v).to_string();
            let back = decode(&serde_json::from_str(&line).unwrap_or(Json::Null));
            assert_eq!(back, Some(v));
        }
        assert_eq!(decode(&json!(1.5)), None);
        assert_eq!(decode(&json!([1])), None);
    }
}
