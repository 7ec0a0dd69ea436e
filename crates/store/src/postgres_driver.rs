//! PostgreSQL driver on the synchronous `postgres` client (which runs
//! `tokio-postgres` underneath). Callers are already on blocking threads.
//!
//! Aggregates that PostgreSQL returns as NUMERIC (for example `SUM(bigint)`) must be
//! cast back in the query (`CAST(SUM(x) AS BIGINT)`), as only BIGINT, TEXT and BYTEA
//! (and the narrower integer types and BOOL) cross the seam.

use std::collections::HashMap;
use std::error::Error as StdError;
use std::sync::Arc;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls, Statement};

use crate::pool::Pool;
use crate::{Backend, Conn, Driver, Row, StoreError, StoreResult, Value};

const MAX_CONNECTIONS: usize = 16;

/// Prepared statements kept per connection. Enough for every fixed statement
/// Steward runs plus the `IN (…)` lists of the sizes in use; past it the least
/// recently used is closed.
const STATEMENT_CACHE: usize = 256;

/// `copy_in` with at most this many rows is one multi-row `INSERT … SELECT
/// FROM unnest(…)` (one round trip with a cached statement); more rows go
/// through binary `COPY` (three round trips, then the fastest per row).
const SMALL_COPY: usize = 256;

pub(crate) struct PostgresDriver {
    pool: Pool<PgClient>,
    description: String,
    /// Opens a connection configured like the pool's (schema, settings), for
    /// a [`crate::Session`] outside the pool.
    connect: Arc<Connect>,
}

type Connect = dyn Fn() -> StoreResult<PgClient> + Send + Sync;

/// A pooled connection and the statements prepared on it.
struct PgClient {
    client: Client,
    statements: Statements,
}

/// A connection's prepared statements by SQL text, as `sqlx` and
/// `deadpool-postgres` keep them: a query run again is one round trip (bind and
/// execute) instead of two (parse and describe first). Each run is still
/// planned for its values (`plan_cache_mode = force_custom_plan`, set on every
/// connection). Server-side prepared
/// statements belong to the session and survive a rolled-back transaction;
/// `execute_batch` (migrations, DDL) empties the cache, so no statement planned
/// against an old table shape is reused.
#[derive(Default)]
struct Statements {
    by_sql: HashMap<String, (Statement, u64)>,
    clock: u64,
}

impl Statements {
    fn get(&mut self, tx: &mut postgres::Transaction<'_>, sql: &str) -> StoreResult<Statement> {
        self.clock += 1;
        if let Some((statement, used)) = self.by_sql.get_mut(sql) {
            *used = self.clock;
            return Ok(statement.clone());
        }
        let statement = tx.prepare(sql).map_err(map_err)?;
        if self.by_sql.len() >= STATEMENT_CACHE
            && let Some(oldest) = self
                .by_sql
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
        {
            // Dropping the statement closes it on the server.
            self.by_sql.remove(&oldest);
        }
        self.by_sql
            .insert(sql.to_owned(), (statement.clone(), self.clock));
        Ok(statement)
    }

    /// Maps a statement's error; a plan the server can no longer use (a table
    /// changed shape under a cached statement) empties the cache, so the next
    /// transaction prepares afresh.
    fn failed(&mut self, e: postgres::Error) -> StoreError {
        if e.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
            self.by_sql.clear();
        }
        map_err(e)
    }
}

impl PostgresDriver {
    pub(crate) fn open(url: &str, schema: Option<&str>) -> StoreResult<Self> {
        let config: Config = url
            .parse()
            .map_err(|e| StoreError::Connect(format!("invalid PostgreSQL URL: {e}")))?;
        if let Some(s) = schema
            && (s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            return Err(StoreError::Connect(format!(
                "schema name {s:?} must be lowercase letters, digits and _"
            )));
        }
        let description = describe(&config, schema);
        let schema = schema.map(str::to_owned);
        let connect = move || -> StoreResult<PgClient> {
            let mut client = config
                .connect(NoTls)
                .map_err(|e| StoreError::Connect(e.to_string()))?;
            if let Some(s) = &schema {
                client
                    .batch_execute(&format!(
                        "CREATE SCHEMA IF NOT EXISTS {s}; SET search_path TO {s}"
                    ))
                    .map_err(map_err)?;
            }
            // Cached statements are planned for their values each time, as
            // unnamed ones were: after five runs PostgreSQL would otherwise try
            // a generic plan, which for `tenant_id = $1 AND x IN ($2, …)` scans
            // the whole tenant. Caching saves the parse round trip, not planning.
            client
                .batch_execute("SET plan_cache_mode = force_custom_plan")
                .map_err(map_err)?;
            Ok(PgClient {
                client,
                statements: Statements::default(),
            })
        };
        // Connect once now so a wrong URL or a stopped server is reported at start.
        let first = connect()?;
        drop(first);
        let connect = Arc::new(connect);
        let pooled = connect.clone();
        Ok(PostgresDriver {
            pool: Pool::new(MAX_CONNECTIONS, move || pooled()),
            description,
            connect,
        })
    }
}

fn describe(config: &Config, schema: Option<&str>) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_default();
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres://{}@{host}:{port}/{}{}",
        config.get_user().unwrap_or(""),
        config.get_dbname().unwrap_or(""),
        schema.map(|s| format!(" (schema {s})")).unwrap_or_default()
    )
}

impl Driver for PostgresDriver {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn with_read(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()> {
        // A REPEATABLE READ read-only transaction gives the same snapshot guarantee
        // as SQLite's deferred read transaction.
        let mut pooled = self.pool.get()?;
        let res = (|| {
            let PgClient { client, statements } = pooled.conn()?;
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(map_err)?;
            let mut c = PgConn {
                tx: &mut tx,
                statements,
            };
            f(&mut c)?;
            tx.commit().map_err(map_err)
        })();
        if pooled.conn().map(|c| c.client.is_closed()).unwrap_or(true) {
            pooled.discard();
        }
        res
    }

    fn with_write(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()> {
        let mut pooled = self.pool.get()?;
        let res = (|| {
            let PgClient { client, statements } = pooled.conn()?;
            let mut tx = client.transaction().map_err(map_err)?;
            {
                let mut c = PgConn {
                    tx: &mut tx,
                    statements,
                };
                f(&mut c)?;
            }
            tx.commit().map_err(map_err)
        })();
        if pooled.conn().map(|c| c.client.is_closed()).unwrap_or(true) {
            pooled.discard();
        }
        res
    }

    fn table_names(&self) -> StoreResult<Vec<String>> {
        let mut pooled = self.pool.get()?;
        let rows = pooled
            .conn()?
            .client
            .query(
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() AND table_type = 'BASE TABLE' \
                 ORDER BY 1",
                &[],
            )
            .map_err(map_err)?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0).map_err(map_err))
            .collect()
    }

    fn column_names(&self, table: &str) -> StoreResult<Vec<String>> {
        let mut pooled = self.pool.get()?;
        let rows = pooled
            .conn()?
            .client
            .query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
                &[&table],
            )
            .map_err(map_err)?;
        rows.iter()
            .map(|r| r.try_get::<_, String>(0).map_err(map_err))
            .collect()
    }

    fn checkpoint(&self) -> StoreResult<()> {
        Ok(())
    }

    fn vacuum(&self, tables: &[&str]) -> StoreResult<()> {
        let mut pooled = self.pool.get()?;
        let res = (|| {
            let client = &mut pooled.conn()?.client;
            for t in tables {
                // VACUUM refuses to run in a transaction block: one statement per call.
                client
                    .batch_execute(&format!("VACUUM {t}"))
                    .map_err(map_err)?;
            }
            Ok(())
        })();
        if pooled.conn().map(|c| c.client.is_closed()).unwrap_or(true) {
            pooled.discard();
        }
        res
    }

    fn backup_to(&self, _dest: &std::path::Path) -> StoreResult<()> {
        Err(StoreError::Postgres(
            "a file backup is for SQLite; on PostgreSQL export a snapshot (Db::read and \
             Conn::query_each in one REPEATABLE READ transaction)"
                .into(),
        ))
    }

    fn session(&self) -> StoreResult<Option<crate::Session>> {
        let PgClient { client, .. } = (self.connect)()?;
        Ok(Some(crate::Session::new(client)))
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

struct PgConn<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    statements: &'a mut Statements,
}

impl PgConn<'_, '_> {
    fn prepared(&mut self, sql: &str) -> StoreResult<Statement> {
        self.statements.get(self.tx, sql)
    }

    /// Rows as one `INSERT … SELECT * FROM unnest($1::t1[], …)`: one array
    /// parameter per column, one round trip.
    fn insert_unnest(
        &mut self,
        table: &str,
        cols: &str,
        types: &[Type],
        rows: Vec<Vec<Value>>,
    ) -> StoreResult<u64> {
        let arrays: Vec<String> = types
            .iter()
            .enumerate()
            .map(|(i, t)| format!("${}::{}[]", i + 1, t.name()))
            .collect();
        let sql = format!(
            "INSERT INTO {table} ({cols}) SELECT * FROM unnest({})",
            arrays.join(", ")
        );
        let mut columns: Vec<Vec<Value>> = (0..types.len())
            .map(|_| Vec::with_capacity(rows.len()))
            .collect();
        for row in rows {
            for (column, v) in columns.iter_mut().zip(row) {
                column.push(v);
            }
        }
        let statement = self.prepared(&sql)?;
        let params: Vec<&(dyn ToSql + Sync)> =
            columns.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        self.tx
            .execute(&statement, &params)
            .map_err(|e| self.statements.failed(e))
    }
}

impl ToSql for Value {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => match *ty {
                Type::INT8 => v.to_sql(ty, out),
                Type::INT4 => i32::try_from(*v)?.to_sql(ty, out),
                Type::INT2 => i16::try_from(*v)?.to_sql(ty, out),
                Type::BOOL => (*v != 0).to_sql(ty, out),
                _ => Err(format!("cannot bind an integer to a {ty} column").into()),
            },
            Value::Text(v) => v.to_sql(ty, out),
            Value::Bytes(v) => v.to_sql(ty, out),
        }
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

fn read_row(row: &postgres::Row) -> StoreResult<Row> {
    let mut out = Vec::with_capacity(row.len());
    for (i, col) in row.columns().iter().enumerate() {
        let ty = col.type_();
        let v = match *ty {
            Type::INT8 => row.try_get::<_, Option<i64>>(i).map(|o| o.map(Value::Int)),
            Type::INT4 => row
                .try_get::<_, Option<i32>>(i)
                .map(|o| o.map(|v| Value::Int(i64::from(v)))),
            Type::INT2 => row
                .try_get::<_, Option<i16>>(i)
                .map(|o| o.map(|v| Value::Int(i64::from(v)))),
            Type::BOOL => row
                .try_get::<_, Option<bool>>(i)
                .map(|o| o.map(|v| Value::Int(i64::from(v)))),
            Type::BYTEA => row
                .try_get::<_, Option<Vec<u8>>>(i)
                .map(|o| o.map(Value::Bytes)),
            Type::TEXT | Type::VARCHAR | Type::NAME | Type::BPCHAR | Type::UNKNOWN => row
                .try_get::<_, Option<String>>(i)
                .map(|o| o.map(Value::Text)),
            _ => {
                return Err(StoreError::Type {
                    column: i,
                    message: format!(
                        "column {} has type {ty}; cast it to BIGINT, TEXT or BYTEA in the query",
                        col.name()
                    ),
                });
            }
        }
        .map_err(map_err)?;
        out.push(v.unwrap_or(Value::Null));
    }
    Ok(Row(out))
}

fn as_params(params: &[Value]) -> Vec<&(dyn ToSql + Sync)> {
    params.iter().map(|p| p as &(dyn ToSql + Sync)).collect()
}

impl Conn for PgConn<'_, '_> {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    fn execute(&mut self, sql: &str, params: &[Value]) -> StoreResult<u64> {
        let statement = self.prepared(sql)?;
        self.tx
            .execute(&statement, &as_params(params))
            .map_err(|e| self.statements.failed(e))
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let statement = self.prepared(sql)?;
        let rows = self
            .tx
            .query(&statement, &as_params(params))
            .map_err(|e| self.statements.failed(e))?;
        rows.iter().map(read_row).collect()
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        use postgres::fallible_iterator::FallibleIterator;
        let statement = self.prepared(sql)?;
        let mut rows = self
            .tx
            .query_raw(&statement, as_params(params))
            .map_err(|e| self.statements.failed(e))?;
        let mut seen = 0u64;
        while let Some(r) = rows.next().map_err(map_err)? {
            f(read_row(&r)?)?;
            seen += 1;
        }
        Ok(seen)
    }

    fn execute_batch(&mut self, sql: &str) -> StoreResult<()> {
        // DDL may change what a cached statement was planned against.
        self.statements.by_sql.clear();
        self.tx.batch_execute(sql).map_err(map_err)
    }

    fn copy_in(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> StoreResult<u64> {
        let cols = columns.join(", ");
        // The column types, from a cached probe (binary COPY and the arrays of
        // the small path both need them exactly).
        let probe = self.prepared(&format!("SELECT {cols} FROM {table} LIMIT 0"))?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let check = |row: &Vec<Value>| -> StoreResult<()> {
            if row.len() == columns.len() {
                Ok(())
            } else {
                Err(StoreError::Type {
                    column: row.len(),
                    message: format!("copy_in {table}: expected {} values", columns.len()),
                })
            }
        };
        // Up to SMALL_COPY rows: one INSERT (built-in types only: their names
        // need no schema).
        let mut first = Vec::new();
        let builtin = types.iter().all(|t| t.schema() == "pg_catalog");
        if builtin {
            for row in &mut *rows {
                check(&row)?;
                first.push(row);
                if first.len() > SMALL_COPY {
                    break;
                }
            }
            if first.is_empty() {
                return Ok(0);
            }
            if first.len() <= SMALL_COPY {
                return self.insert_unnest(table, &cols, &types, first);
            }
        }
        let sink = self
            .tx
            .copy_in(&format!("COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)"))
            .map_err(map_err)?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for row in first.into_iter().chain(rows) {
            check(&row)?;
            writer.write(&as_params(&row)).map_err(map_err)?;
        }
        writer.finish().map_err(map_err)
    }
}

pub(crate) fn map_err(e: postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(db_message(&e));
    }
    if e.code() == Some(&SqlState::DISK_FULL) {
        return StoreError::Full(db_message(&e));
    }
    if e.is_closed() {
        return StoreError::Connect(e.to_string());
    }
    StoreError::Postgres(db_message(&e))
}

fn db_message(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{} ({d})", db.message()),
            None => db.message().to_owned(),
        },
        None => e.to_string(),
    }
}
