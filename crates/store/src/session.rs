//! A PostgreSQL connection of its own, outside the pool, for what lasts as long
//! as a connection rather than a transaction: session advisory locks (held
//! until released or until the connection ends, so a process that dies, even
//! by SIGKILL, lets go of them at once) and `LISTEN` (notifications sent with
//! `NOTIFY` by any connection, delivered in the order their transactions
//! committed).
//!
//! Used by the scheduler's job locks and the broker (`steward::jobs`,
//! `steward::broker`). A session is used by one thread at a time.

use std::time::Duration;

use postgres::Client;
use postgres::fallible_iterator::FallibleIterator;

use crate::{StoreError, StoreResult};

/// One notification received on a [`Session`] that listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub channel: String,
    pub payload: String,
}

/// A dedicated PostgreSQL connection (see the module documentation).
pub struct Session {
    client: Client,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Session")
    }
}

impl Session {
    pub(crate) fn new(client: Client) -> Session {
        Session { client }
    }

    /// Takes the session advisory lock `key` if no other session holds it.
    /// Held until [`Session::unlock`] or the end of the connection.
    pub fn try_lock(&mut self, key: i64) -> StoreResult<bool> {
        let row = self
            .client
            .query_one("SELECT pg_try_advisory_lock($1)", &[&key])
            .map_err(crate::postgres_driver::map_err)?;
        Ok(row.get::<_, bool>(0))
    }

    /// Releases the advisory lock `key`; whether this session held it.
    pub fn unlock(&mut self, key: i64) -> StoreResult<bool> {
        let row = self
            .client
            .query_one("SELECT pg_advisory_unlock($1)", &[&key])
            .map_err(crate::postgres_driver::map_err)?;
        Ok(row.get::<_, bool>(0))
    }

    /// Starts listening on `channel` (a plain identifier).
    pub fn listen(&mut self, channel: &str) -> StoreResult<()> {
        if !crate::is_identifier(channel) {
            return Err(StoreError::Postgres(format!(
                "{channel:?} is not a channel name"
            )));
        }
        self.client
            .batch_execute(&format!("LISTEN {channel}"))
            .map_err(crate::postgres_driver::map_err)
    }

    /// Waits up to `timeout` for a notification, then takes every other one
    /// already received; in the order they were sent (commit order). Empty
    /// when none came. An error means the connection is gone: open a new
    /// session (notifications sent meanwhile were not received).
    pub fn wait(&mut self, timeout: Duration) -> StoreResult<Vec<Notification>> {
        let mut out = Vec::new();
        {
            let mut notifications = self.client.notifications();
            let first = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(crate::postgres_driver::map_err)?;
            if let Some(n) = first {
                out.push(convert(&n));
            }
            let mut pending = notifications.iter();
            while let Some(n) = pending.next().map_err(crate::postgres_driver::map_err)? {
                out.push(convert(&n));
            }
        }
        if out.is_empty() && self.client.is_closed() {
            return Err(StoreError::Connect(
                "the listening connection closed".into(),
            ));
        }
        Ok(out)
    }
}

fn convert(n: &postgres::Notification) -> Notification {
    Notification {
        channel: n.channel().to_owned(),
        payload: n.payload().to_owned(),
    }
}
