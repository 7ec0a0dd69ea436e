//! [`Steward`]: the opened system (database, key store, policy, blobs) and
//! [`Tx`], the one path by which domain operations write. A `Tx` couples each
//! change with its audit entry in the same database transaction.

use std::sync::Arc;

use steward_blobs::BlobStore;
use steward_crypto::{DataKey, MasterKey};
use steward_policy::Policy;
use steward_store::{Conn, Db};

use crate::access::Actor;
use crate::audit;
use crate::clock::now;
use crate::config::Settings;
use crate::error::{Error, Result};
use crate::keys::KeyStore;
use crate::schema::MIGRATIONS;

pub struct Steward {
    pub db: Db,
    pub keys: KeyStore,
    pub policy: Arc<Policy>,
    pub blobs: BlobStore,
    pub settings: Settings,
}

/// What `open` did that the operator should hear about.
#[derive(Debug, Default)]
pub struct OpenReport {
    /// Set when a new master key file was written on this start.
    pub created_master_key: Option<std::path::PathBuf>,
    pub policy_warnings: Vec<String>,
}

impl Steward {
    /// Opens (and on first use, creates) everything the settings point at.
    pub fn open(settings: Settings) -> Result<(Steward, OpenReport)> {
        let mut report = OpenReport::default();
        create_private_dir(&settings.data_dir)?;
        let policy = match &settings.policy_file {
            None => Policy::default_policy(),
            Some(path) => match steward_policy::load(path) {
                Ok(checked) => {
                    report.policy_warnings =
                        checked.warnings.iter().map(|w| w.to_string()).collect();
                    checked.policy
                }
                Err(diags) => {
                    let text: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
                    return Err(Error::invalid("policy", text.join("\n")));
                }
            },
        };
        let master = match &settings.master_key {
            Some(text) => {
                MasterKey::parse(text).map_err(|e| Error::invalid("master-key", e.to_string()))?
            }
            None => {
                let path = settings.master_key_path();
                let (key, created) = MasterKey::load_or_create(&path)
                    .map_err(|e| Error::invalid("master-key-file", e.to_string()))?;
                if created {
                    report.created_master_key = Some(path);
                }
                key
            }
        };
        let db = match &settings.database_url {
            Some(url) => Db::open_postgres(url, settings.database_schema.as_deref())?,
            None => Db::open_sqlite(&settings.sqlite_path())?,
        };
        db.migrate(MIGRATIONS)?;
        let key_db = match (&settings.key_store, &settings.database_url) {
            (Some(ks), _) if ks.starts_with("postgres://") || ks.starts_with("postgresql://") => {
                Db::open_postgres(ks, Some(&key_schema(&settings)))?
            }
            (Some(path), _) => Db::open_sqlite(std::path::Path::new(path))?,
            (None, Some(url)) => Db::open_postgres(url, Some(&key_schema(&settings)))?,
            (None, None) => Db::open_sqlite(&settings.data_dir.join("keys").join("keys.sqlite"))?,
        };
        let keys = KeyStore::open(key_db, master)?;
        let blobs = BlobStore::open(settings.blob_url.as_deref(), &settings.data_dir)?;
        let core = Steward {
            db,
            keys,
            policy: Arc::new(policy),
            blobs,
            settings,
        };
        crate::tenants::ensure_provider(&core)?;
        // Objects of files whose rows were deleted just before a crash.
        if let Err(e) = crate::files::drain_outbox(&core) {
            tracing::warn!(error = %e, "could not delete the objects of deleted files yet");
        }
        // Keys of subjects erased just before a crash.
        if let Err(e) = core.drain_shred_outbox() {
            tracing::warn!(error = %e, "could not destroy the keys of erased subjects yet");
        }
        Ok((core, report))
    }

    /// Destroys a subject key an erasure queued in `shred_outbox` (in the transaction
    /// that deleted the subject's rows), then its queue row; whether a key was there.
    pub(crate) fn shred_queued_key(&self, subject_id: &str) -> Result<bool> {
        let destroyed = self.keys.shred_subject_key(subject_id)?;
        self.db.write(|c| {
            c.execute(
                "DELETE FROM shred_outbox WHERE subject_id = $1",
                steward_store::params![subject_id],
            )
        })?;
        Ok(destroyed)
    }

    /// Destroys the keys that erasures committed just before a crash left queued;
    /// how many there were.
    pub fn drain_shred_outbox(&self) -> Result<u64> {
        let queued = self.db.read(|c| {
            c.query(
                "SELECT subject_id FROM shred_outbox ORDER BY subject_id",
                &[],
            )
        })?;
        let mut destroyed = 0;
        for row in &queued {
            if self.shred_queued_key(&row.text(0)?)? {
                destroyed += 1;
            }
        }
        Ok(destroyed)
    }

    /// Runs `f` in one write transaction. Audit entries it appends are chained
    /// in the same transaction, and the key store's anchor moves after commit.
    pub fn write<T>(&self, actor: &Actor, f: impl FnOnce(&mut Tx<'_>) -> Result<T>) -> Result<T> {
        let mut head = None;
        let mut blobs_queued = false;
        let out = self.db.write(|conn: &mut dyn Conn| -> Result<T> {
            let mut tx = Tx {
                conn,
                core: self,
                actor,
                at: now(),
                audit_head: None,
                blobs_queued: false,
            };
            let v = f(&mut tx)?;
            head = tx.audit_head.take();
            blobs_queued = tx.blobs_queued;
            Ok(v)
        })?;
        if blobs_queued && let Err(e) = crate::files::drain_outbox(self) {
            // The rows are gone and the objects stay queued: the next drain (at the
            // latest, the next start) deletes them.
            tracing::warn!(error = %e, "could not delete the objects of deleted files yet");
        }
        if let Some((seq, hash)) = head
            && let Err(e) = self.keys.set_audit_anchor(seq, &hash)
        {
            // The change is committed; failing the call now would misreport it. A
            // lagging anchor only narrows what truncation `audit verify` can see.
            tracing::warn!(error = %e, seq, "could not move the audit anchor");
        }
        Ok(out)
    }

    /// The subject's data key; an erased subject has none.
    pub fn subject_key(&self, subject_id: &str) -> Result<DataKey> {
        self.keys.require_subject_key(subject_id)
    }
}

/// Creates the data directory readable by its owner only (it holds the database,
/// the key store and the master key file). An existing directory is left as is.
pub(crate) fn create_private_dir(dir: &std::path::Path) -> Result<()> {
    if dir.exists() {
        return Ok(());
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder
        .create(dir)
        .map_err(|e| Error::invalid("data-dir", format!("cannot create {}: {e}", dir.display())))
}

fn key_schema(settings: &Settings) -> String {
    match &settings.database_schema {
        Some(s) => format!("{s}_keys"),
        None => "steward_keys".to_owned(),
    }
}

/// A write transaction on behalf of one actor.
pub struct Tx<'a> {
    pub conn: &'a mut dyn Conn,
    pub core: &'a Steward,
    pub actor: &'a Actor,
    /// The transaction's timestamp, shared by everything it writes.
    pub at: i64,
    audit_head: Option<(i64, Vec<u8>)>,
    blobs_queued: bool,
}

impl Tx<'_> {
    /// Records `ev` in the audit log as done by this transaction's actor.
    pub fn audit(&mut self, ev: audit::Event) -> Result<i64> {
        let (seq, hash) = audit::append(
            self.conn,
            &self.core.keys,
            &self.actor.audit_id,
            self.actor.role_name(),
            self.at,
            ev,
        )?;
        self.audit_head = Some((seq, hash));
        Ok(seq)
    }

    pub fn policy(&self) -> &Policy {
        &self.core.policy
    }

    /// Deletes the blob store object at `blob_key` once this transaction has
    /// committed (nothing happens if it rolls back). See `files.rs`.
    pub fn delete_blob_after_commit(&mut self, blob_key: &str) -> Result<()> {
        crate::files::queue_delete(self.conn, blob_key, self.at)?;
        self.blobs_queued = true;
        Ok(())
    }
}

/// Encryption of one personal field. The AAD binds the ciphertext to its field
/// and subject, so a value cannot be moved to another row or column unnoticed.
pub mod fields {
    use steward_crypto::DataKey;

    use crate::error::{Error, Result};

    pub fn seal(key: &DataKey, field: &str, subject_id: &str, value: &str) -> Result<Vec<u8>> {
        Ok(key.encrypt(value.as_bytes(), aad(field, subject_id).as_bytes())?)
    }

    pub fn seal_opt(
        key: &DataKey,
        field: &str,
        subject_id: &str,
        value: Option<&str>,
    ) -> Result<Option<Vec<u8>>> {
        value.map(|v| seal(key, field, subject_id, v)).transpose()
    }

    pub fn open(key: &DataKey, field: &str, subject_id: &str, sealed: &[u8]) -> Result<String> {
        let plain = key
            .decrypt(sealed, aad(field, subject_id).as_bytes())
            .map_err(|_| {
                Error::Keys(format!("{field} of subject {subject_id} does not decrypt"))
            })?;
        String::from_utf8(plain).map_err(|_| Error::Keys(format!("{field} is not UTF-8")))
    }

    pub fn open_opt(
        key: &DataKey,
        field: &str,
        subject_id: &str,
        sealed: Option<&[u8]>,
    ) -> Result<Option<String>> {
        sealed.map(|s| open(key, field, subject_id, s)).transpose()
    }

    fn aad(field: &str, subject_id: &str) -> String {
        format!("{field}|{subject_id}")
    }
}

/// Runs synchronous domain code (which may block on the database) from async
/// code, on Tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    core: &Arc<Steward>,
    f: impl FnOnce(&Steward) -> Result<T> + Send + 'static,
) -> Result<T> {
    let core = core.clone();
    tokio::task::spawn_blocking(move || f(&core))
        .await
        .map_err(|e| Error::Internal(format!("task failed: {e}")))?
}

/// Runs async work (the blob store) from synchronous domain code: on the
/// caller's runtime when there is one (API handlers run domain code on its
/// blocking pool), otherwise on a small runtime of its own (the CLI, tests).
pub fn block_on<T, E: Into<Error>>(
    f: impl std::future::Future<Output = std::result::Result<T, E>>,
) -> Result<T> {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(f).map_err(Into::into),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start a runtime: {e}")))?
            .block_on(f)
            .map_err(Into::into),
    }
}
