//! Work that must run at most once at a time across every process on one data
//! store (the retention run, with the expiry of access bundles it includes),
//! and periodic work that runs once per interval however many server
//! processes are scheduling it.
//!
//! * **The lock** of a job is held by the process running it, and let go by
//!   the operating system or the database when that process ends, however it
//!   ends (SIGKILL included): on PostgreSQL a session advisory lock on a
//!   connection of its own ([`steward_store::Session`]), keyed by the job's
//!   name and the schema; on SQLite an exclusive `flock` of
//!   `<data-dir>/locks/<job>.lock`.
//! * **The schedule** is a row of `scheduled_jobs` per job: when it last
//!   started and finished, in which process, how many runs. A scheduler in
//!   each server process looks every [`tick`] whether the job is due (never
//!   run, its interval passed since the last start, or its last run started
//!   and never finished: the process running it died) and, holding the lock,
//!   starts it. So the job runs once per interval, and when the process that
//!   ran it is gone another takes over at its next look.
//!
//! A run started by hand (`steward retention run`, the console's button)
//! takes the same lock, is refused with 409 while another run holds it, and
//! counts as the interval's run.

use std::time::Duration;

use steward_store::{Backend, params};

use crate::core::Steward;
use crate::error::{Error, Result};

/// What holds a job's lock; dropping it lets go.
pub struct JobLock {
    held: Held,
}

enum Held {
    Postgres {
        session: Box<steward_store::Session>,
        key: i64,
    },
    File(std::fs::File),
}

impl Drop for JobLock {
    fn drop(&mut self) {
        match &mut self.held {
            // Closing the connection would release it as well.
            Held::Postgres { session, key } => {
                let _ = session.unlock(*key);
            }
            Held::File(file) => {
                let _ = file.unlock();
            }
        }
    }
}

/// This process as `scheduled_jobs.holder` names it: host name and pid.
pub fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("{host}:{}", std::process::id())
}

/// The advisory lock key of a job: the namespace `JOBS` in the high 32 bits
/// (apart from the per-tenant locks' namespaces, `tenants::TenantLock`), a
/// hash (FNV-1a) of the schema and the job's name in the low ones, so that
/// instances in different schemas of one database (and test runs) do not
/// hold each other's jobs.
fn key(schema: Option<&str>, job: &str) -> i64 {
    let schema = schema.unwrap_or("");
    let mut h: u32 = 0x811C_9DC5;
    for b in schema.bytes().chain([0]).chain(job.bytes()) {
        h = (h ^ u32::from(b)).wrapping_mul(0x0100_0193);
    }
    (i64::from(u32::from_be_bytes(*b"JOBS")) << 32) | i64::from(h)
}

/// Takes the job's lock if no process holds it.
pub fn try_lock(core: &Steward, job: &str) -> Result<Option<JobLock>> {
    match core.db.backend() {
        Backend::Postgres => {
            let mut session = core
                .db
                .session()?
                .ok_or_else(|| Error::Internal("no PostgreSQL session".into()))?;
            let key = key(core.settings.database_schema.as_deref(), job);
            Ok(session.try_lock(key)?.then(|| JobLock {
                held: Held::Postgres {
                    session: Box::new(session),
                    key,
                },
            }))
        }
        Backend::Sqlite => {
            let dir = core.settings.data_dir.join("locks");
            std::fs::create_dir_all(&dir)
                .map_err(|e| Error::Internal(format!("cannot create {}: {e}", dir.display())))?;
            let path = dir.join(format!("{job}.lock"));
            let file = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(|e| Error::Internal(format!("cannot open {}: {e}", path.display())))?;
            Ok(
                crate::instance::try_lock_file(file, &path)?.map(|file| JobLock {
                    held: Held::File(file),
                }),
            )
        }
    }
}

/// A job's row of `scheduled_jobs`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct JobState {
    pub name: String,
    pub holder: Option<String>,
    pub last_started_at: Option<i64>,
    pub last_finished_at: Option<i64>,
    pub runs: i64,
}

/// The recorded state of a job (`None` before its first run).
pub fn state(core: &Steward, job: &str) -> Result<Option<JobState>> {
    let row = core.db.read(|c| {
        c.query_opt(
            "SELECT name, holder, last_started_at, last_finished_at, runs FROM scheduled_jobs \
             WHERE name = $1",
            params![job],
        )
    })?;
    row.map(|r| -> steward_store::StoreResult<JobState> {
        Ok(JobState {
            name: r.text(0)?,
            holder: r.opt_text(1)?,
            last_started_at: r.opt_i64(2)?,
            last_finished_at: r.opt_i64(3)?,
            runs: r.i64(4)?,
        })
    })
    .transpose()
    .map_err(Error::from)
}

/// Whether a job whose state is `s` is due at `now`, run every `every`.
fn due(s: Option<&JobState>, every: Duration, now: i64) -> bool {
    let Some(s) = s else { return true };
    let Some(started) = s.last_started_at else {
        return true;
    };
    // Started and never finished, and (we hold the lock) nobody runs it now:
    // the process that ran it died.
    let unfinished = s.last_finished_at.is_none_or(|f| f < started);
    unfinished || now >= started.saturating_add(every.as_secs() as i64)
}

fn started(core: &Steward, job: &str, now: i64) -> Result<()> {
    core.db.write(|c| {
        c.execute(
            "INSERT INTO scheduled_jobs (name, holder, last_started_at, runs) \
             VALUES ($1, $2, $3, 1) ON CONFLICT (name) DO UPDATE SET \
             holder = $2, last_started_at = $3, runs = scheduled_jobs.runs + 1",
            params![job, holder(), now],
        )
    })?;
    Ok(())
}

fn finished(core: &Steward, job: &str) {
    let res = core.db.write(|c| {
        c.execute(
            "UPDATE scheduled_jobs SET last_finished_at = $2 WHERE name = $1",
            params![job, crate::clock::now()],
        )
    });
    if let Err(e) = res {
        tracing::warn!(job, error = %e, "could not record the end of a job run");
    }
}

/// Runs `f` holding the job's lock, recorded as a run; 409 while another
/// process (or another run in this one) holds it.
pub fn exclusive<T>(core: &Steward, job: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let Some(lock) = try_lock(core, job)? else {
        let by = state(core, job)
            .ok()
            .flatten()
            .and_then(|s| s.holder)
            .map(|h| format!(" (last started by {h})"))
            .unwrap_or_default();
        return Err(Error::Conflict(format!(
            "a {job} run is in progress in another process{by}: try again when it has finished"
        )));
    };
    run_held(core, job, lock, crate::clock::now(), f)
}

/// Runs `f` if the job is due (see the module documentation) and no process
/// holds its lock; `None` when it was not run.
pub fn run_if_due<T>(
    core: &Steward,
    job: &str,
    every: Duration,
    f: impl FnOnce() -> Result<T>,
) -> Result<Option<T>> {
    let Some(lock) = try_lock(core, job)? else {
        return Ok(None);
    };
    let now = crate::clock::now();
    if !due(state(core, job)?.as_ref(), every, now) {
        return Ok(None);
    }
    run_held(core, job, lock, now, f).map(Some)
}

/// Runs `f` as a recorded run of `job`, whose lock is held, then lets go.
fn run_held<T>(
    core: &Steward,
    job: &str,
    lock: JobLock,
    now: i64,
    f: impl FnOnce() -> Result<T>,
) -> Result<T> {
    started(core, job, now)?;
    let out = f();
    finished(core, job);
    drop(lock);
    out
}

/// How often a scheduler looks whether a job run every `every` is due: a
/// quarter of the interval, between 1 s and 60 s. A run starts at most that
/// late, and a dead process's run is taken over that soon.
pub fn tick(every: Duration) -> Duration {
    (every / 4).clamp(Duration::from_secs(1), Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(started: Option<i64>, finished: Option<i64>) -> JobState {
        JobState {
            name: "j".into(),
            holder: None,
            last_started_at: started,
            last_finished_at: finished,
            runs: 1,
        }
    }

    #[test]
    fn a_job_is_due_when_never_run_interval_passed_or_left_unfinished() {
        let every = Duration::from_secs(100);
        assert!(due(None, every, 1_000));
        assert!(due(Some(&st(None, None)), every, 1_000));
        assert!(!due(Some(&st(Some(950), Some(960))), every, 1_000));
        assert!(due(Some(&st(Some(900), Some(960))), every, 1_000));
        // Started after it last finished: its process died mid-run.
        assert!(due(Some(&st(Some(990), Some(960))), every, 1_000));
        assert!(due(Some(&st(Some(990), None)), every, 1_000));
    }

    #[test]
    fn job_lock_keys_are_apart_from_tenant_locks_and_per_schema() {
        let k = key(Some("t_1"), "retention");
        assert_eq!((k >> 32) as u32, u32::from_be_bytes(*b"JOBS"));
        assert_ne!(k, key(Some("t_2"), "retention"));
        assert_ne!(k, key(Some("t_1"), "other"));
        assert_eq!(key(None, "retention"), key(Some(""), "retention"));
    }

    #[test]
    fn ticks_are_a_quarter_of_the_interval_within_bounds() {
        assert_eq!(tick(Duration::from_secs(2)), Duration::from_secs(1));
        assert_eq!(tick(Duration::from_secs(40)), Duration::from_secs(10));
        assert_eq!(tick(Duration::from_secs(86_400)), Duration::from_secs(60));
    }
}
