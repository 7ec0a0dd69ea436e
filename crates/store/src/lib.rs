//! Steward's storage seam.
//!
//! Every query Steward runs is written once, in a portable subset of SQL that both
//! SQLite (the embedded default) and PostgreSQL understand, and executed through
//! [`Db`]. The two drivers differ only in how they connect, pool and bind values:
//!
//! * placeholders are written PostgreSQL-style (`$1`, `$2`, …); the SQLite driver
//!   rewrites them to SQLite's numbered form (`?1`, `?2`, …);
//! * the only column types used are `BIGINT`, `TEXT` and `BYTEA` (rewritten to `BLOB`
//!   for SQLite in migrations); booleans are `BIGINT` 0/1, times are Unix seconds;
//! * `INSERT … ON CONFLICT`, `RETURNING` and `LIMIT` work the same on both.
//!
//! The API is synchronous on purpose: domain operations are short, run on a
//! blocking thread, and are easier to read without `async` transactions. The
//! HTTP layer moves them off the async runtime with `spawn_blocking`.

mod migrate;
mod pool;
mod postgres_driver;
mod session;
mod sqlite_driver;
pub mod testing;
mod value;

use std::path::Path;
use std::sync::Arc;

pub use migrate::Migration;
pub use session::{Notification, Session};
pub use value::{Row, Value};

/// Which database a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

/// Everything that can go wrong below the domain layer.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A UNIQUE or PRIMARY KEY constraint refused the write.
    #[error("conflict: {0}")]
    Conflict(String),
    /// The database is locked by another writer for longer than the busy timeout.
    #[error("database busy: {0}")]
    Busy(String),
    /// The disk holding the database is full (SQLite `SQLITE_FULL`, PostgreSQL
    /// `disk_full`): the write was rolled back, what was stored is intact.
    #[error("the database's disk is full: {0}")]
    Full(String),
    #[error("sqlite: {0}")]
    Sqlite(String),
    #[error("postgres: {0}")]
    Postgres(String),
    /// A column held a different type than the caller asked for.
    #[error("column {column}: {message}")]
    Type { column: usize, message: String },
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("migration {version} ({name}) failed: {message}")]
    Migration {
        version: i64,
        name: String,
        message: String,
    },
}

pub type StoreResult<T> = Result<T, StoreError>;

/// One connection inside a transaction (or a read snapshot).
pub trait Conn {
    fn backend(&self) -> Backend;
    /// Runs one statement; returns the number of rows changed.
    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64>;
    /// Runs one query and returns all rows.
    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>>;
    /// Runs several `;`-separated statements without parameters (migrations).
    fn execute_batch(&mut self, sql: &str) -> StoreResult<()>;
    /// Appends many rows to one table as fast as the database allows: a cached
    /// prepared statement on SQLite, binary `COPY` on PostgreSQL. Every row must
    /// have one value per column.
    fn copy_in(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> StoreResult<u64>;

    /// The first row of a query, if any.
    fn query_opt(&mut self, sql: &str, params: &[Value]) -> StoreResult<Option<Row>> {
        Ok(self.query(sql, params)?.into_iter().next())
    }

    /// Runs one query and hands each row to `f` as it arrives, so a whole table can
    /// be read (a backup's export) without holding it in memory. Stops at the first
    /// error `f` returns. Returns the number of rows seen.
    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        let mut n = 0u64;
        for row in self.query(sql, params)? {
            f(row)?;
            n += 1;
        }
        Ok(n)
    }
}

/// What a driver offers; [`Db`] wraps it with typed helpers.
pub(crate) trait Driver: Send + Sync {
    fn backend(&self) -> Backend;
    fn with_read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()>;
    fn with_write(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()>;
    fn table_names(&self) -> StoreResult<Vec<String>>;
    fn column_names(&self, table: &str) -> StoreResult<Vec<String>>;
    fn checkpoint(&self) -> StoreResult<()>;
    fn vacuum(&self, tables: &[&str]) -> StoreResult<()>;
    fn backup_to(&self, dest: &Path) -> StoreResult<()>;
    fn describe(&self) -> String;
    /// A dedicated connection outside the pool; `None` where the backend has
    /// no such thing (SQLite).
    fn session(&self) -> StoreResult<Option<Session>> {
        Ok(None)
    }
}

/// A handle on one database; cheap to clone, safe to share between threads.
#[derive(Clone)]
pub struct Db {
    driver: Arc<dyn Driver>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Db({})", self.driver.describe())
    }
}

impl Db {
    /// Opens (creating if needed) an SQLite database file in WAL mode.
    pub fn open_sqlite(path: &Path) -> StoreResult<Db> {
        Ok(Db {
            driver: Arc::new(sqlite_driver::SqliteDriver::open(path)?),
        })
    }

    /// Connects to PostgreSQL. With `schema`, every connection uses that schema
    /// (created if missing), so several Steward instances or test runs can share
    /// one database without seeing each other.
    pub fn open_postgres(url: &str, schema: Option<&str>) -> StoreResult<Db> {
        Ok(Db {
            driver: Arc::new(postgres_driver::PostgresDriver::open(url, schema)?),
        })
    }

    pub fn backend(&self) -> Backend {
        self.driver.backend()
    }

    /// Where this database lives, without credentials.
    pub fn describe(&self) -> String {
        self.driver.describe()
    }

    /// PostgreSQL only: a connection of its own, outside the pool, for what
    /// lives as long as a connection rather than a transaction (session
    /// advisory locks, `LISTEN`). `None` on SQLite.
    pub fn session(&self) -> StoreResult<Option<Session>> {
        self.driver.session()
    }

    /// Runs `f` on a consistent read snapshot.
    pub fn read<T>(&self, f: impl FnOnce(&mut dyn Conn) -> StoreResult<T>) -> StoreResult<T> {
        let mut f = Some(f);
        let mut out = None;
        self.driver.with_read(&mut |conn| {
            if let Some(f) = f.take() {
                out = Some(f(conn)?);
            }
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Sqlite("read closure did not run".into()))
    }

    /// Runs `f` in one write transaction: committed when `f` returns `Ok`, rolled
    /// back otherwise. Writers are serialised (SQLite `BEGIN IMMEDIATE`; on
    /// PostgreSQL, row locks taken by the statements themselves).
    pub fn write<T, E>(&self, f: impl FnOnce(&mut dyn Conn) -> Result<T, E>) -> Result<T, E>
    where
        E: From<StoreError>,
    {
        let mut f = Some(f);
        let mut out: Option<Result<T, E>> = None;
        let res = self.driver.with_write(&mut |conn| {
            let Some(f) = f.take() else {
                return Ok(());
            };
            match f(conn) {
                Ok(v) => {
                    out = Some(Ok(v));
                    Ok(())
                }
                Err(e) => {
                    out = Some(Err(e));
                    // Any error makes the driver roll back; the real error is in `out`.
                    Err(StoreError::Sqlite("rolled back".into()))
                }
            }
        });
        match (out, res) {
            (Some(Err(e)), _) => Err(e),
            (_, Err(e)) => Err(e.into()),
            (Some(Ok(v)), Ok(())) => Ok(v),
            (None, Ok(())) => Err(StoreError::Sqlite("write closure did not run".into()).into()),
        }
    }

    /// Applies every migration not applied yet, each in its own transaction.
    pub fn migrate(&self, migrations: &[Migration]) -> StoreResult<()> {
        migrate::run(self, migrations)
    }

    /// Names of the tables in this database (or schema), sorted.
    pub fn table_names(&self) -> StoreResult<Vec<String>> {
        self.driver.table_names()
    }

    /// A table's columns in declaration order.
    pub fn column_names(&self, table: &str) -> StoreResult<Vec<String>> {
        self.driver.column_names(table)
    }

    /// Moves committed changes out of any write-ahead log into the main file and
    /// empties the log (SQLite), so deleted bytes do not linger there. PostgreSQL
    /// reclaims dead rows through (auto)vacuum; this is a no-op there.
    pub fn checkpoint(&self) -> StoreResult<()> {
        self.driver.checkpoint()
    }

    /// Reclaims the space of deleted rows in `tables`, so their bytes stop lingering
    /// in the database files sooner: `VACUUM <table>` on PostgreSQL (one statement per
    /// table, outside any transaction; dead tuples otherwise wait for autovacuum).
    /// On SQLite, where `secure_delete` already overwrites deleted content, this is a
    /// [`checkpoint`](Self::checkpoint). Table names must be plain identifiers.
    pub fn vacuum(&self, tables: &[&str]) -> StoreResult<()> {
        if let Some(bad) = tables.iter().find(|t| !is_identifier(t)) {
            return Err(StoreError::Type {
                column: 0,
                message: format!("vacuum: {bad:?} is not a plain table name"),
            });
        }
        self.driver.vacuum(tables)
    }

    /// SQLite only: writes a consistent copy of the whole database to the new file
    /// `dest` with SQLite's online backup API, while other connections (and other
    /// processes, such as a running server) keep reading and writing. The copy is
    /// one self-contained file (rollback-journal mode, no `-wal`). `dest` must not
    /// exist. On PostgreSQL this is an error: export a snapshot with [`Db::read`]
    /// and [`Conn::query_each`] instead.
    pub fn backup_to(&self, dest: &Path) -> StoreResult<()> {
        self.driver.backup_to(dest)
    }

    /// SQLite only: whether another connection, in this process or another one
    /// (a running `steward serve`), has the database file at `path` open. A missing
    /// file is not in use.
    pub fn sqlite_in_use(path: &Path) -> StoreResult<bool> {
        sqlite_driver::in_use(path)
    }

    /// SQLite only: replaces the contents of the database at `dest` (created if
    /// missing) with those of the database file `src`, page by page with the backup
    /// API, while holding an exclusive lock on `dest`. Fails with
    /// [`StoreError::Busy`], changing nothing, when another connection has `dest`
    /// open. Leftover `-wal` content of `dest` is folded in first, so nothing of
    /// the old contents survives in the log.
    pub fn sqlite_replace(dest: &Path, src: &Path) -> StoreResult<()> {
        sqlite_driver::replace(dest, src)
    }
}

/// A plain SQL identifier: lower-case ASCII letters, digits and `_`, not starting
/// with a digit. Table names interpolated into SQL must pass this.
pub fn is_identifier(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with(|c: char| c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Rewrites `$1`-style placeholders to SQLite's `?1`, leaving string literals alone.
pub(crate) fn to_sqlite_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut in_quote = false;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\'' {
            in_quote = !in_quote;
            out.push(c);
        } else if c == '$' && !in_quote && chars.peek().is_some_and(|n| n.is_ascii_digit()) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

/// `$first, $first+1, …` for `n` parameters: the list of an `IN (…)` built
/// for a chunk of values (keep chunks at 500 or fewer: SQLite caps a
/// statement's parameters).
pub fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholder_lists_number_from_the_first() {
        assert_eq!(placeholders(1, 3), "$1, $2, $3");
        assert_eq!(placeholders(3, 2), "$3, $4");
        assert_eq!(placeholders(1, 0), "");
    }

    #[test]
    fn placeholders_are_rewritten_outside_literals() {
        assert_eq!(
            to_sqlite_placeholders("SELECT '$1', a FROM t WHERE b = $1 AND c = $12"),
            "SELECT '$1', a FROM t WHERE b = ?1 AND c = ?12"
        );
    }
}
