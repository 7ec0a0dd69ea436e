//! `steward backup …`: a backup of the data and the blobs without the keys, and
//! its restore into a data directory that keeps its own key store.

use std::path::PathBuf;

use clap::Subcommand;

use super::commands::open;
use super::emit;
use crate::access::Actor;
use crate::backup;
use crate::config::Settings;
use crate::error::Result;

#[derive(Debug, Subcommand)]
pub enum BackupCommand {
    /// Take a consistent backup of the data and the blobs into DIR (new or empty,
    /// outside the data directory) while Steward keeps running. The key store and
    /// the master key are left out: back them up apart (docs/OPERATIONS.md).
    Create { dir: PathBuf },
    /// Put the data and the blobs of the backup in DIR back into the data directory
    /// (stop every Steward process on it first). The data directory's key store is
    /// kept, or the one --key-store names; subjects whose key is gone (erased since
    /// the backup) are purged from the restored data.
    Restore { dir: PathBuf },
}

pub(super) fn run(settings: Settings, cmd: BackupCommand, json: bool) -> Result<i32> {
    match cmd {
        BackupCommand::Create { dir } => {
            // Refuse a bad folder before anything is opened or created.
            backup::preflight_create(&settings, &dir)?;
            let core = open(settings)?;
            let r = backup::create(&core, &dir)?;
            let m = &r.manifest;
            let rows: u64 = m.tables.iter().map(|t| t.rows).sum();
            emit(
                json,
                &serde_json::to_value(&r).unwrap_or_default(),
                &format!(
                    "backed up {} tables ({rows} rows) and {} blobs to {} \
                     ({} data store, schema version {}, audit log up to entry {})\n\
                     not in it: the key store and the master key (id {}). Back those up \
                     apart, with a short retention (docs/OPERATIONS.md)",
                    m.tables.len(),
                    m.blobs,
                    r.dir,
                    m.backend,
                    m.schema_version,
                    m.audit_head.as_ref().map_or(0, |h| h.seq),
                    m.master_key_id,
                ),
            );
        }
        BackupCommand::Restore { dir } => {
            let r = backup::restore(&settings, &dir, &Actor::cli())?;
            let rows: u64 = r.tables.iter().map(|t| t.rows).sum();
            let mut text = format!(
                "restored {} tables ({rows} rows) and {} blobs from the backup of {} into {}\n\
                 kept key store {}; audit log verified ({} entries)",
                r.tables.len(),
                r.blobs_restored,
                r.backup_created,
                r.data_dir,
                r.key_store,
                r.audit_entries,
            );
            if let Some(prev) = r.previous_audit_seq {
                text.push_str(&format!(
                    "\nthe replaced audit log had reached entry {prev}; the restore entry records it"
                ));
            }
            if r.purged_subjects.is_empty() {
                text.push_str("\nevery subject in the backup still has a key: nothing purged");
            } else {
                text.push_str(&format!(
                    "\npurged {} subjects without a key (erased since the backup): {}",
                    r.purged_subjects.len(),
                    r.purged_subjects.join(", ")
                ));
            }
            if r.keys_without_data > 0 {
                text.push_str(&format!(
                    "\n{} subjects in the key store are not in the backup (created after it): \
                     their data did not come back",
                    r.keys_without_data
                ));
            }
            text.push_str(&format!(
                "\nrevoked {} sessions: users log in again",
                r.sessions_revoked
            ));
            if r.master_key_rotated_since_backup {
                text.push_str("\nthe master key was rotated since the backup (that is fine)");
            }
            emit(json, &serde_json::to_value(&r).unwrap_or_default(), &text);
        }
    }
    Ok(0)
}
