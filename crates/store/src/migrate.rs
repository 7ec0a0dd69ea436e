//! Schema migrations: an ordered list of SQL scripts, each applied once, in its
//! own transaction, and recorded in `schema_migrations`.

use crate::{Backend, Conn, Db, StoreError, StoreResult, params};

/// One schema change. Write `BYTEA` for binary columns; the SQLite driver reads it
/// as `BLOB`. Lines from `-- begin postgres only` to `-- end postgres only` run on
/// PostgreSQL alone (sequences and the like, which SQLite has no use for).
/// Never edit a migration that has shipped: add a new one.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

fn dialect(backend: Backend, sql: &str) -> String {
    match backend {
        Backend::Postgres => sql.to_owned(),
        Backend::Sqlite => {
            let mut kept = String::with_capacity(sql.len());
            let mut skipping = false;
            for line in sql.lines() {
                match line.trim() {
                    "-- begin postgres only" => skipping = true,
                    "-- end postgres only" => skipping = false,
                    _ if !skipping => {
                        kept.push_str(line);
                        kept.push('\n');
                    }
                    _ => {}
                }
            }
            kept.replace("BYTEA", "BLOB")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_only_lines_are_left_out_on_sqlite() {
        let sql = "CREATE TABLE t (b BYTEA);\n-- begin postgres only\nCREATE SEQUENCE s;\n-- end postgres only\nCREATE INDEX i ON t (b);\n";
        assert_eq!(
            dialect(Backend::Sqlite, sql),
            "CREATE TABLE t (b BLOB);\nCREATE INDEX i ON t (b);\n"
        );
        assert_eq!(dialect(Backend::Postgres, sql), sql);
    }
}

pub(crate) fn run(db: &Db, migrations: &[Migration]) -> StoreResult<()> {
    db.write(|c: &mut dyn Conn| {
        c.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version BIGINT PRIMARY KEY,
                name TEXT NOT NULL,
                applied_at BIGINT NOT NULL
            )",
        )
    })?;
    for m in migrations {
        db.write(|c: &mut dyn Conn| -> StoreResult<()> {
            if c.backend() == Backend::Postgres {
                // Two processes starting at once must not apply a migration twice.
                c.execute_batch("SELECT pg_advisory_xact_lock(727274)")?;
            }
            let done = c
                .query_opt(
                    "SELECT version FROM schema_migrations WHERE version = $1",
                    params![m.version],
                )?
                .is_some();
            if done {
                return Ok(());
            }
            c.execute_batch(&dialect(c.backend(), m.sql))
                .map_err(|e| StoreError::Migration {
                    version: m.version,
                    name: m.name.to_owned(),
                    message: e.to_string(),
                })?;
            c.execute(
                "INSERT INTO schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
                params![m.version, m.name, now()],
            )?;
            Ok(())
        })?;
    }
    Ok(())
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
