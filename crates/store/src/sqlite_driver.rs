//! SQLite driver: one writer connection and a few readers, all in WAL mode, so a
//! second process (the CLI while `serve` runs) can work on the same file.
//!
//! The write-ahead log is folded back into the main file by a thread of its
//! own (a PASSIVE checkpoint every [`CHECKPOINT_EVERY`]), not by the writer at
//! the end of a commit: a checkpoint writes pages and syncs the file, and done
//! by the writer it holds up every transaction queued behind that commit (chat
//! sends waited tens of milliseconds for it; see docs/PERFORMANCE.md). Should
//! that thread fall behind, the writer still checkpoints once the log reaches
//! [`WRITER_AUTOCHECKPOINT`] pages.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::pool::Pool;
use crate::{Backend, Conn, Driver, Row, StoreError, StoreResult, Value, to_sqlite_placeholders};

const READERS: usize = 4;

/// How often the checkpoint thread runs.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(200);
/// Log pages after which the writer checkpoints itself (SQLite's default is
/// 1,000; about 40 MB at 4 KiB pages).
const WRITER_AUTOCHECKPOINT: u32 = 10_000;

pub(crate) struct SqliteDriver {
    path: PathBuf,
    writer: Pool<Connection>,
    readers: Pool<Connection>,
    /// Dropping it stops the checkpoint thread (and waits for it).
    _checkpoints: Option<Checkpointer>,
}

/// The checkpoint thread. Dropping this stops it and waits until it has closed
/// its connection, so that a dropped `Db` leaves the file closed (a restore
/// checks that nobody has it open, and SQLite removes the log files when the
/// last connection closes).
struct Checkpointer {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Starts the thread that checkpoints `path` until the returned handle (or the
/// driver holding it) is dropped. `None` if the thread could not start: then
/// the writer's own checkpoints keep the log bounded.
fn spawn_checkpointer(path: PathBuf) -> Option<Checkpointer> {
    let (stop, stopped) = mpsc::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("sqlite-checkpoint".into())
        .spawn(move || {
            let mut conn: Option<Connection> = None;
            while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(CHECKPOINT_EVERY)
            {
                if conn.is_none() {
                    conn = connect(&path).ok();
                }
                // PASSIVE copies what it can without waiting for readers or the
                // writer, which keeps appending meanwhile.
                let done = conn
                    .as_ref()
                    .map(|c| c.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())));
                // A failure (the file locked by a restore, say) is retried on a
                // fresh connection next time.
                if let Some(Err(_)) = done {
                    conn = None;
                }
            }
        })
        .ok()?;
    Some(Checkpointer {
        stop: Some(stop),
        thread: Some(thread),
    })
}

fn connect(path: &Path) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))?;
    // Another process may hold the write lock for a moment: wait rather than fail.
    conn.busy_timeout(Duration::from_secs(10))
        .map_err(map_err)?;
    // WAL lets readers and one writer (possibly in another process) work at once;
    // NORMAL sync is durable across application crashes and the usual WAL choice.
    // secure_delete overwrites deleted content so erased personal data does not
    // linger in free pages. Foreign keys keep references honest.
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;
         PRAGMA secure_delete = ON;
         PRAGMA cache_size = -32768;",
    )
    .map_err(map_err)?;
    Ok(conn)
}

impl SqliteDriver {
    pub(crate) fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| StoreError::Connect(format!("{}: {e}", dir.display())))?;
        }
        // Open once eagerly so a bad path fails here, with its name.
        let first = connect(path)?;
        let p1 = path.to_path_buf();
        let p2 = path.to_path_buf();
        let writer = Pool::new(1, move || {
            let conn = connect(&p1)?;
            conn.execute_batch(&format!(
                "PRAGMA wal_autocheckpoint = {WRITER_AUTOCHECKPOINT};"
            ))
            .map_err(map_err)?;
            Ok(conn)
        });
        drop(first);
        Ok(SqliteDriver {
            path: path.to_path_buf(),
            writer,
            readers: Pool::new(READERS, move || connect(&p2)),
            _checkpoints: spawn_checkpointer(path.to_path_buf()),
        })
    }
}

impl Driver for SqliteDriver {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn with_read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()> {
        let mut pooled = self.readers.get()?;
        let conn = pooled.conn()?;
        let tx = conn.transaction().map_err(map_err)?;
        let mut c = SqliteConn { conn: &tx };
        f(&mut c)
        // Dropping the read transaction ends the snapshot.
    }

    fn with_write(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()> {
        let mut pooled = self.writer.get()?;
        let conn = pooled.conn()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(map_err)?;
        let res = {
            let mut c = SqliteConn { conn: &tx };
            f(&mut c)
        };
        match res {
            Ok(()) => tx.commit().map_err(map_err),
            Err(e) => {
                // Rollback happens on drop; report the original error.
                drop(tx);
                Err(e)
            }
        }
    }

    fn table_names(&self) -> StoreResult<Vec<String>> {
        let mut pooled = self.readers.get()?;
        let conn = pooled.conn()?;
        let mut stmt = conn
            .prepare(
                "SELECT name FROM sqlite_master WHERE type = 'table' \
                 AND name NOT LIKE 'sqlite_%' ORDER BY name",
            )
            .map_err(map_err)?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(names)
    }

    fn column_names(&self, table: &str) -> StoreResult<Vec<String>> {
        let mut pooled = self.readers.get()?;
        let conn = pooled.conn()?;
        let mut stmt = conn
            .prepare("SELECT name FROM pragma_table_info(?1) ORDER BY cid")
            .map_err(map_err)?;
        let names = stmt
            .query_map([table], |r| r.get::<_, String>(0))
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(names)
    }

    fn checkpoint(&self) -> StoreResult<()> {
        let mut pooled = self.writer.get()?;
        pooled
            .conn()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(map_err)
    }

    fn vacuum(&self, _tables: &[&str]) -> StoreResult<()> {
        // secure_delete has already overwritten the deleted content in the main
        // file; what may remain is older page images in the write-ahead log.
        self.checkpoint()
    }

    fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        if dest.exists() {
            return Err(StoreError::Sqlite(format!(
                "backup: {} already exists",
                dest.display()
            )));
        }
        let mut pooled = self.readers.get()?;
        let src = pooled.conn()?;
        let mut dst = Connection::open_with_flags(
            dest,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| StoreError::Connect(format!("{}: {e}", dest.display())))?;
        copy_pages(src, &mut dst)?;
        // One self-contained file: no -wal beside it.
        dst.execute_batch("PRAGMA journal_mode = DELETE;")
            .map_err(map_err)?;
        dst.close().map_err(|(_, e)| map_err(e))
    }

    fn describe(&self) -> String {
        format!("sqlite:{}", self.path.display())
    }
}

/// Copies every page of `src` into `dst` in one step of the online backup API.
/// One step reads the whole source inside a single read transaction, so the copy
/// is one consistent snapshot even while other processes write (WAL mode lets
/// them); an incremental backup would restart whenever another process wrote.
fn copy_pages(src: &Connection, dst: &mut Connection) -> StoreResult<()> {
    use rusqlite::backup::{Backup, StepResult};
    let backup = Backup::new(src, dst).map_err(map_err)?;
    // The source's read lock can be refused for a moment (a checkpoint resetting
    // the log); wait as long as a writer would (the 10 s busy timeout).
    for _ in 0..100 {
        match backup.step(-1).map_err(map_err)? {
            StepResult::Done => return Ok(()),
            StepResult::More => continue,
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(StoreError::Busy(
        "the database stayed locked for 10 s during the backup".into(),
    ))
}

fn open_exclusive(path: &Path) -> StoreResult<Option<Connection>> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Connect(format!("{}: {e}", path.display())))?;
    // No busy timeout: someone else holding the file is the answer, not a wait.
    // In exclusive locking mode the first access takes an EXCLUSIVE lock on the
    // file and keeps it until the connection closes; every other connection in WAL
    // mode holds a SHARED lock for as long as it is open, so this fails while any
    // other connection (in any process) has the database open.
    conn.execute_batch("PRAGMA locking_mode = EXCLUSIVE;")
        .map_err(map_err)?;
    match conn.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
        Ok(()) => Ok(Some(conn)),
        Err(e) => match map_err(e) {
            StoreError::Busy(_) => Ok(None),
            other => Err(other),
        },
    }
}

pub(crate) fn in_use(path: &Path) -> StoreResult<bool> {
    if !path.exists() {
        return Ok(false);
    }
    Ok(open_exclusive(path)?.is_none())
}

pub(crate) fn replace(dest: &Path, src: &Path) -> StoreResult<()> {
    let src_conn = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Connect(format!("{}: {e}", src.display())))?;
    let Some(mut dst) = open_exclusive(dest)? else {
        return Err(StoreError::Busy(format!(
            "{} is open in another process (a running server?): stop it first",
            dest.display()
        )));
    };
    dst.execute_batch("PRAGMA secure_delete = ON;")
        .map_err(map_err)?;
    copy_pages(&src_conn, &mut dst)?;
    // Fold the new pages into the main file and empty the log.
    dst.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(map_err)?;
    drop(src_conn);
    dst.close().map_err(|(_, e)| map_err(e))
}

struct SqliteConn<'a> {
    conn: &'a Connection,
}

impl rusqlite::ToSql for Value {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Value::Null => ToSqlOutput::Borrowed(ValueRef::Null),
            Value::Int(v) => ToSqlOutput::Borrowed(ValueRef::Integer(*v)),
            Value::Text(v) => ToSqlOutput::Borrowed(ValueRef::Text(v.as_bytes())),
            Value::Bytes(v) => ToSqlOutput::Borrowed(ValueRef::Blob(v)),
        })
    }
}

fn read_row(row: &rusqlite::Row<'_>, n: usize) -> rusqlite::Result<Row> {
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        out.push(match row.get_ref(i)? {
            ValueRef::Null => Value::Null,
            ValueRef::Integer(v) => Value::Int(v),
            // Steward stores no floating point; keep whole numbers if one appears.
            ValueRef::Real(v) => Value::Int(v as i64),
            ValueRef::Text(v) => Value::Text(String::from_utf8_lossy(v).into_owned()),
            ValueRef::Blob(v) => Value::Bytes(v.to_vec()),
        });
    }
    Ok(Row(out))
}

impl Conn for SqliteConn<'_> {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let mut stmt = self
            .conn
            .prepare_cached(&to_sqlite_placeholders(sql))
            .map_err(map_err)?;
        let n = stmt
            .execute(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        Ok(n as u64)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let mut stmt = self
            .conn
            .prepare_cached(&to_sqlite_placeholders(sql))
            .map_err(map_err)?;
        // The column count is read from each row, after the step: a cached
        // statement is prepared again by its first step when the schema changed,
        // and only then counts the table's new columns.
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params.iter()), |r| {
                read_row(r, r.as_ref().column_count())
            })
            .map_err(map_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(map_err)?;
        Ok(rows)
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        let mut stmt = self
            .conn
            .prepare(&to_sqlite_placeholders(sql))
            .map_err(map_err)?;
        let n = stmt.column_count();
        let mut rows = stmt
            .query(rusqlite::params_from_iter(params.iter()))
            .map_err(map_err)?;
        let mut seen = 0u64;
        while let Some(r) = rows.next().map_err(map_err)? {
            f(read_row(r, n).map_err(map_err)?)?;
            seen += 1;
        }
        Ok(seen)
    }

    fn execute_batch(&mut self, sql: &str) -> StoreResult<()> {
        self.conn.execute_batch(sql).map_err(map_err)
    }

    fn copy_in(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> StoreResult<u64> {
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("?{i}")).collect();
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES ({})",
            columns.join(", "),
            placeholders.join(", ")
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(map_err)?;
        let mut n = 0u64;
        for row in rows {
            if row.len() != columns.len() {
                return Err(StoreError::Type {
                    column: row.len(),
                    message: format!("copy_in {table}: expected {} values", columns.len()),
                });
            }
            stmt.execute(rusqlite::params_from_iter(row.iter()))
                .map_err(map_err)?;
            n += 1;
        }
        Ok(n)
    }
}

fn map_err(e: rusqlite::Error) -> StoreError {
    if let rusqlite::Error::SqliteFailure(code, msg) = &e {
        let text = msg.clone().unwrap_or_else(|| code.to_string());
        match code.code {
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => return StoreError::Busy(text),
            ErrorCode::DiskFull => return StoreError::Full(text),
            ErrorCode::ConstraintViolation
                if code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || code.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY =>
            {
                return StoreError::Conflict(text);
            }
            _ => {}
        }
    }
    StoreError::Sqlite(e.to_string())
}
