//! The key store: per-subject data keys, the blind-index key and the audit MAC key,
//! each wrapped by the master key, in a database of their own.
//!
//! Erasing a subject deletes their wrapped data key here. Every ciphertext of
//! theirs, in the data store, in blobs, in backups and replicas, is unreadable from
//! that moment (crypto-shredding), provided the key store is backed up apart
//! from the data, with a short retention (see docs/SECURITY.md).

use steward_crypto::{BlindIndexKey, DataKey, IdentifierKind, MacKey, MasterKey};
use steward_store::{Conn, Db, Value, params, placeholders};

use crate::clock::now;
use crate::error::{Error, Result};
use crate::schema::KEY_MIGRATIONS;

pub struct KeyStore {
    db: Db,
    master: MasterKey,
    index_key: BlindIndexKey,
    audit_key: MacKey,
}

/// Keys [`KeyStore::create_subject_keys`] stores per transaction.
pub const KEY_BATCH: usize = 1_000;

fn subject_aad(subject_id: &str) -> Vec<u8> {
    format!("subject-key|{subject_id}").into_bytes()
}

fn system_aad(name: &str) -> Vec<u8> {
    format!("system-key|{name}").into_bytes()
}

impl KeyStore {
    /// Opens the key store, creating the system keys on first use.
    pub fn open(db: Db, master: MasterKey) -> Result<KeyStore> {
        db.migrate(KEY_MIGRATIONS)?;
        let index_key = system_key(
            &db,
            &master,
            "blind-index",
            || {
                let k = BlindIndexKey::generate()?;
                let w = k.wrap(&master, &system_aad("blind-index"))?;
                Ok((k, w))
            },
            |w| BlindIndexKey::unwrap(&master, w, &system_aad("blind-index")),
        )?;
        let audit_key = system_key(
            &db,
            &master,
            "audit-mac",
            || {
                let k = MacKey::generate()?;
                let w = k.wrap(&master, &system_aad("audit-mac"))?;
                Ok((k, w))
            },
            |w| MacKey::unwrap(&master, w, &system_aad("audit-mac")),
        )?;
        Ok(KeyStore {
            db,
            master,
            index_key,
            audit_key,
        })
    }

    pub fn describe(&self) -> String {
        self.db.describe()
    }

    pub fn master_id(&self) -> String {
        self.master.id()
    }

    /// Creates and stores a new data key for a subject.
    pub fn create_subject_key(&self, subject_id: &str) -> Result<DataKey> {
        self.create_subject_keys(&[subject_id.to_owned()])?
            .pop()
            .ok_or_else(|| Error::Internal("the key store made no key".into()))
    }

    /// Creates and stores new data keys for many subjects, in order: one
    /// transaction per [`KEY_BATCH`] keys (their rows through `copy_in`), so a
    /// batch costs a commit per thousand keys instead of one per key. A chunk
    /// is stored whole or not at all (an id that already has a key refuses its
    /// chunk with a conflict); keys of earlier chunks stay, and the caller
    /// shreds what it does not use, as after [`create_subject_key`](Self::create_subject_key).
    pub fn create_subject_keys(&self, subject_ids: &[String]) -> Result<Vec<DataKey>> {
        let mut keys = Vec::with_capacity(subject_ids.len());
        for chunk in subject_ids.chunks(KEY_BATCH) {
            let at = now();
            let mut made = Vec::with_capacity(chunk.len());
            let mut rows = Vec::with_capacity(chunk.len());
            for id in chunk {
                let key = DataKey::generate()?;
                rows.push(vec![
                    Value::from(id.as_str()),
                    Value::Bytes(key.wrap(&self.master, &subject_aad(id))?),
                    Value::from(self.master.id()),
                    Value::Int(at),
                ]);
                made.push(key);
            }
            self.db.write(|c: &mut dyn Conn| -> Result<()> {
                // Insert only while this process's master key is still the
                // store's: after `keys rotate-master` ran elsewhere, a running
                // server must not wrap new keys under the retired master (they
                // would be unreadable after restart).
                let current = c.query_opt(
                    "SELECT 1 FROM system_keys WHERE name = 'blind-index' AND master_id = $1",
                    params![self.master.id()],
                )?;
                if current.is_none() {
                    return Err(Error::Keys(
                        "the master key was rotated by another process: restart Steward with \
                         the new key"
                            .into(),
                    ));
                }
                c.copy_in(
                    "subject_keys",
                    &["subject_id", "wrapped", "master_id", "created_at"],
                    &mut rows.into_iter(),
                )?;
                Ok(())
            })?;
            keys.extend(made);
        }
        Ok(keys)
    }

    /// The data keys of many subjects, in order (`None` for one shredded or
    /// never made): one read, 500 ids per query.
    pub fn subject_keys(&self, subject_ids: &[String]) -> Result<Vec<Option<DataKey>>> {
        let mut wrapped: std::collections::HashMap<String, Vec<u8>> =
            std::collections::HashMap::with_capacity(subject_ids.len());
        self.db
            .read(|c: &mut dyn Conn| -> steward_store::StoreResult<()> {
                for chunk in subject_ids.chunks(500) {
                    let args: Vec<Value> =
                        chunk.iter().map(|id| Value::from(id.as_str())).collect();
                    for r in c.query(
                        &format!(
                            "SELECT subject_id, wrapped FROM subject_keys WHERE subject_id IN ({})",
                            placeholders(1, chunk.len())
                        ),
                        &args,
                    )? {
                        wrapped.insert(r.text(0)?, r.bytes(1)?);
                    }
                }
                Ok(())
            })?;
        subject_ids
            .iter()
            .map(|id| match wrapped.get(id) {
                None => Ok(None),
                Some(w) => Ok(Some(DataKey::unwrap(&self.master, w, &subject_aad(id))?)),
            })
            .collect()
    }

    /// The subject's data key, or `None` once it has been shredded.
    pub fn subject_key(&self, subject_id: &str) -> Result<Option<DataKey>> {
        let row = self.db.read(|c| {
            c.query_opt(
                "SELECT wrapped FROM subject_keys WHERE subject_id = $1",
                params![subject_id],
            )
        })?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some(DataKey::unwrap(
                &self.master,
                &r.bytes(0)?,
                &subject_aad(subject_id),
            )?)),
        }
    }

    /// Like [`subject_key`](Self::subject_key), for callers that cannot proceed without it.
    pub fn require_subject_key(&self, subject_id: &str) -> Result<DataKey> {
        self.subject_key(subject_id)?
            .ok_or_else(|| Error::NotFound("subject data key (the subject was erased)".into()))
    }

    /// Deletes the subject's data key: every copy of their data becomes unreadable.
    /// The key store's write-ahead log is emptied too, so the wrapped key does not
    /// linger there (secure_delete zeroes it in the main file).
    pub fn shred_subject_key(&self, subject_id: &str) -> Result<bool> {
        let n = self.db.write(|c: &mut dyn Conn| {
            c.execute(
                "DELETE FROM subject_keys WHERE subject_id = $1",
                params![subject_id],
            )
        })?;
        self.db.checkpoint()?;
        Ok(n > 0)
    }

    /// Keyed blind index of an already normalised identifier.
    pub fn blind_index(&self, kind: IdentifierKind, normalized: &str) -> Vec<u8> {
        self.index_key.index(kind, normalized).to_vec()
    }

    pub fn audit_key(&self) -> &MacKey {
        &self.audit_key
    }

    /// Re-wraps every key under `new_master` in one transaction. Returns how many
    /// keys were re-wrapped. The caller persists the new master key first.
    pub fn rotate_master(&self, new_master: &MasterKey) -> Result<u64> {
        self.db.write(|c: &mut dyn Conn| -> Result<u64> {
            let mut n = 0u64;
            for r in c.query("SELECT subject_id, wrapped FROM subject_keys", &[])? {
                let id = r.text(0)?;
                let key = DataKey::unwrap(&self.master, &r.bytes(1)?, &subject_aad(&id))?;
                c.execute(
                    "UPDATE subject_keys SET wrapped = $1, master_id = $2 WHERE subject_id = $3",
                    params![
                        key.wrap(new_master, &subject_aad(&id))?,
                        new_master.id(),
                        id
                    ],
                )?;
                n += 1;
            }
            for r in c.query("SELECT name, wrapped FROM system_keys", &[])? {
                let name = r.text(0)?;
                let aad = system_aad(&name);
                let rewrapped = match name.as_str() {
                    "blind-index" => BlindIndexKey::unwrap(&self.master, &r.bytes(1)?, &aad)?
                        .wrap(new_master, &aad)?,
                    "audit-mac" => {
                        MacKey::unwrap(&self.master, &r.bytes(1)?, &aad)?.wrap(new_master, &aad)?
                    }
                    other => return Err(Error::Keys(format!("unknown system key {other}"))),
                };
                c.execute(
                    "UPDATE system_keys SET wrapped = $1, master_id = $2 WHERE name = $3",
                    params![rewrapped, new_master.id(), name],
                )?;
                n += 1;
            }
            Ok(n)
        })
    }

    /// The last audit entry known to the key store: `(seq, hash)`. Kept apart from
    /// the audit log so that removing its newest entries is detected too.
    pub fn audit_anchor(&self) -> Result<Option<(i64, Vec<u8>)>> {
        let row = self
            .db
            .read(|c| c.query_opt("SELECT seq, hash FROM audit_anchor WHERE id = 1", &[]))?;
        Ok(match row {
            Some(r) => Some((r.i64(0)?, r.bytes(1)?)),
            None => None,
        })
    }

    pub fn set_audit_anchor(&self, seq: i64, hash: &[u8]) -> Result<()> {
        self.db.write(|c: &mut dyn Conn| {
            c.execute(
                "INSERT INTO audit_anchor (id, seq, hash, at) VALUES (1, $1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, \
                 at = excluded.at WHERE audit_anchor.seq < excluded.seq",
                params![seq, hash.to_vec(), now()],
            )
        })?;
        Ok(())
    }
}

/// Loads a system key, creating it on first use. Two processes starting at once
/// both try to insert; the loser reads the winner's key.
fn system_key<K>(
    db: &Db,
    master: &MasterKey,
    name: &str,
    create: impl FnOnce() -> std::result::Result<(K, Vec<u8>), steward_crypto::Error>,
    unwrap: impl Fn(&[u8]) -> std::result::Result<K, steward_crypto::Error>,
) -> Result<K> {
    let existing = db.read(|c| {
        c.query_opt(
            "SELECT wrapped FROM system_keys WHERE name = $1",
            params![name],
        )
    })?;
    if let Some(r) = existing {
        return unwrap(&r.bytes(0)?).map_err(|_| {
            Error::Keys(format!(
                "the master key (id {}) cannot unwrap the stored {name} key: \
                 wrong master key for this key store?",
                master.id()
            ))
        });
    }
    let (key, wrapped) = create()?;
    db.write(|c: &mut dyn Conn| {
        c.execute(
            "INSERT INTO system_keys (name, wrapped, master_id, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (name) DO NOTHING",
            params![name, wrapped, master.id(), now()],
        )
    })?;
    let stored = db.read(|c| {
        c.query_opt(
            "SELECT wrapped FROM system_keys WHERE name = $1",
            params![name],
        )
    })?;
    match stored {
        Some(r) => Ok(unwrap(&r.bytes(0)?)?),
        None => Ok(key),
    }
}
