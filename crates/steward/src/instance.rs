//! One server per SQLite data directory.
//!
//! SQLite is the embedded default for one process: its chat writer numbers
//! messages from memory, its hub reaches the sockets of its own process only,
//! and nothing tells a second process what the first one holds. So
//! `steward serve` on SQLite takes an exclusive `flock` of
//! `<data-dir>/serve.lock` for as long as it runs (the operating system lets
//! go when the process ends, however it ends) and writes its pid, start time
//! and address there; a second server on the same directory exits at once
//! naming the directory and the process that holds it. Commands that are
//! unsafe beside a running server (master key rotation) ask the same lock.
//! Other CLI commands run beside a server: SQLite's own locking serialises
//! their writes with the server's (see the README).
//!
//! On PostgreSQL there is no such lock: several servers share one database
//! (see `docs/OPERATIONS.md`, "Running several processes").

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::config::Settings;
use crate::error::{Error, Result};

/// Held by a running server on SQLite; dropping it lets go.
#[derive(Debug)]
pub struct ServerLock {
    _file: std::fs::File,
}

fn path(settings: &Settings) -> PathBuf {
    settings.data_dir.join("serve.lock")
}

/// Whether this configuration is the single-process SQLite one.
fn on_sqlite(settings: &Settings) -> bool {
    settings.database_url.is_none()
}

fn open(settings: &Settings) -> Result<std::fs::File> {
    crate::core::create_private_dir(&settings.data_dir)?;
    let p = path(settings);
    std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&p)
        .map_err(|e| Error::invalid("data-dir", format!("cannot open {}: {e}", p.display())))
}

/// Takes an exclusive `flock` of `file` if no one holds it (`None` when
/// someone does); the operating system lets go when the file is closed or
/// the process ends.
pub(crate) fn try_lock_file(file: std::fs::File, path: &Path) -> Result<Option<std::fs::File>> {
    match file.try_lock() {
        Ok(()) => Ok(Some(file)),
        Err(std::fs::TryLockError::WouldBlock) => Ok(None),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::invalid(
            "data-dir",
            format!("cannot lock {}: {e}", path.display()),
        )),
    }
}

fn in_use(settings: &Settings, what: &str) -> Error {
    let holder = std::fs::read_to_string(path(settings))
        .ok()
        .map(|t| t.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "another process".to_owned());
    Error::Conflict(format!(
        "data directory {} is in use by a running steward serve ({holder}): {what}. SQLite \
         serves one process; run several servers on PostgreSQL instead",
        settings.data_dir.display()
    ))
}

/// For `steward serve` on SQLite: claims the data directory, or refuses
/// when another server holds it. `None` on PostgreSQL.
pub fn claim_for_server(settings: &Settings, listen: &str) -> Result<Option<ServerLock>> {
    if !on_sqlite(settings) {
        return Ok(None);
    }
    let Some(mut file) = try_lock_file(open(settings)?, &path(settings))? else {
        return Err(in_use(settings, "a second server cannot open it"));
    };
    let text = format!(
        "pid {} since {} on {listen}\n",
        std::process::id(),
        crate::clock::rfc3339(crate::clock::now())
    );
    let written = file
        .set_len(0)
        .and_then(|()| file.write_all(text.as_bytes()))
        .and_then(|()| file.flush());
    if let Err(e) = written {
        tracing::warn!(error = %e, "could not record this server in serve.lock");
    }
    Ok(Some(ServerLock { _file: file }))
}

/// For a command that must not run beside a server on SQLite: refuses when a
/// server holds the data directory (the check holds the lock only for its
/// own duration).
pub fn require_no_server(settings: &Settings, what: &str) -> Result<()> {
    if !on_sqlite(settings) || !settings.data_dir.exists() {
        return Ok(());
    }
    match try_lock_file(open(settings)?, &path(settings))? {
        Some(file) => {
            let _ = file.unlock();
            Ok(())
        }
        None => Err(in_use(settings, what)),
    }
}
