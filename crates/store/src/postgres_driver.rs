//! PostgreSQL driver on the synchronous `postgres` client (which runs
//! `tokio-postgres` underneath). Callers are already on blocking threads.
//!
//! Aggregates that PostgreSQL returns as NUMERIC (for example `SUM(bigint)`) must be
//! cast back in the query (`CAST(SUM(x) AS BIGINT)`), as only BIGINT, TEXT and BYTEA
//! (and the narrower integer types and BOOL) cross the seam.

use std::error::Error as StdError;

use postgres::binary_copy::BinaryCopyInWriter;
use postgres::error::SqlState;
use postgres::types::{IsNull, ToSql, Type, to_sql_checked};
use postgres::{Client, Config, NoTls};

use crate::pool::Pool;
use crate::{Backend, Conn, Driver, Row, StoreError, StoreResult, Value};

const MAX_CONNECTIONS: usize = 8;

pub(crate) struct PostgresDriver {
    pool: Pool<Client>,
    description: String,
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
        let connect = move || -> StoreResult<Client> {
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
            Ok(client)
        };
        // Connect once now so a wrong URL or a stopped server is reported at start.
        let first = connect()?;
        drop(first);
        Ok(PostgresDriver {
            pool: Pool::new(MAX_CONNECTIONS, connect),
            description,
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
            let client = pooled.conn()?;
            let mut tx = client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .map_err(map_err)?;
            let mut c = PgConn { tx: &mut tx };
            f(&mut c)?;
            tx.commit().map_err(map_err)
        })();
        if pooled.conn().map(|c| c.is_closed()).unwrap_or(true) {
            pooled.discard();
        }
        res
    }

    fn with_write(&self, f: &mut dyn FnMut(&mut dyn Conn) -> StoreResult<()>) -> StoreResult<()> {
        let mut pooled = self.pool.get()?;
        let res = (|| {
            let client = pooled.conn()?;
            let mut tx = client.transaction().map_err(map_err)?;
            {
                let mut c = PgConn { tx: &mut tx };
                f(&mut c)?;
            }
            tx.commit().map_err(map_err)
        })();
        if pooled.conn().map(|c| c.is_closed()).unwrap_or(true) {
            pooled.discard();
        }
        res
    }

    fn table_names(&self) -> StoreResult<Vec<String>> {
        let mut pooled = self.pool.get()?;
        let rows = pooled
            .conn()?
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
            let client = pooled.conn()?;
            for t in tables {
                // VACUUM refuses to run in a transaction block: one statement per call.
                client
                    .batch_execute(&format!("VACUUM {t}"))
                    .map_err(map_err)?;
            }
            Ok(())
        })();
        if pooled.conn().map(|c| c.is_closed()).unwrap_or(true) {
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

    fn describe(&self) -> String {
        self.description.clone()
    }
}

struct PgConn<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
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
        self.tx.execute(sql, &as_params(params)).map_err(map_err)
    }

    fn query(&mut self, sql: &str, params: &[Value]) -> StoreResult<Vec<Row>> {
        let rows = self.tx.query(sql, &as_params(params)).map_err(map_err)?;
        rows.iter().map(read_row).collect()
    }

    fn query_each(
        &mut self,
        sql: &str,
        params: &[Value],
        f: &mut dyn FnMut(Row) -> StoreResult<()>,
    ) -> StoreResult<u64> {
        use postgres::fallible_iterator::FallibleIterator;
        let mut rows = self.tx.query_raw(sql, as_params(params)).map_err(map_err)?;
        let mut seen = 0u64;
        while let Some(r) = rows.next().map_err(map_err)? {
            f(read_row(&r)?)?;
            seen += 1;
        }
        Ok(seen)
    }

    fn execute_batch(&mut self, sql: &str) -> StoreResult<()> {
        self.tx.batch_execute(sql).map_err(map_err)
    }

    fn copy_in(
        &mut self,
        table: &str,
        columns: &[&str],
        rows: &mut dyn Iterator<Item = Vec<Value>>,
    ) -> StoreResult<u64> {
        let cols = columns.join(", ");
        // Binary COPY needs the exact column types; ask the table for them.
        let probe = self
            .tx
            .prepare(&format!("SELECT {cols} FROM {table} LIMIT 0"))
            .map_err(map_err)?;
        let types: Vec<Type> = probe.columns().iter().map(|c| c.type_().clone()).collect();
        let sink = self
            .tx
            .copy_in(&format!("COPY {table} ({cols}) FROM STDIN (FORMAT BINARY)"))
            .map_err(map_err)?;
        let mut writer = BinaryCopyInWriter::new(sink, &types);
        for row in rows {
            if row.len() != columns.len() {
                return Err(StoreError::Type {
                    column: row.len(),
                    message: format!("copy_in {table}: expected {} values", columns.len()),
                });
            }
            writer.write(&as_params(&row)).map_err(map_err)?;
        }
        writer.finish().map_err(map_err)
    }
}

fn map_err(e: postgres::Error) -> StoreError {
    if e.code() == Some(&SqlState::UNIQUE_VIOLATION) {
        return StoreError::Conflict(db_message(&e));
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
