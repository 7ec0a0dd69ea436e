//! The broker seam: how one server process tells the others on the same
//! database what it committed, in commit order.
//!
//! The engine is PostgreSQL's own `LISTEN`/`NOTIFY` (no other server to run).
//! A process publishes after its own commits, in a short transaction of its
//! own; every listener receives notifications in the order they were sent.
//! Publishing inside the data's transaction would order them by commit for
//! free, but PostgreSQL then holds one lock across the commits of every
//! notifying transaction, log flush included, and chat latency grew fivefold
//! (measured: docs/PERFORMANCE.md); chat orders its messages itself instead
//! (`chat/sequence.rs`). docs/ARCHITECTURE.md, "Several processes", says why
//! this was chosen over NATS. Payloads carry ids and ciphertext at most,
//! never readable personal data: PostgreSQL keeps its queue on disk until
//! every listener has read it.
//!
//! SQLite has no broker: one process serves a data directory (`instance.rs`),
//! so there is nobody to tell.
//!
//! * [`Broker::publish_now`] sends payloads at once, in order.
//! * [`Broker::listen`] starts a thread with its own connection that hands
//!   every batch of notifications to a handler, in order. When the connection
//!   is lost it reconnects (with back-off) and then calls the handler with
//!   [`Delivery::Gap`]: notifications sent meanwhile were missed, and the
//!   handler must make its users catch up from the database.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use steward_store::{Backend, Db, params};

use crate::error::{Error, Result};

/// PostgreSQL's limit on a payload is 8000 bytes; a publisher keeps under it.
pub const MAX_PAYLOAD: usize = 7_900;

/// How long a listener waits for a notification before it tells its handler
/// [`Delivery::Idle`].
pub const IDLE_TICK: Duration = Duration::from_millis(100);

/// What a listener's handler receives.
#[derive(Debug)]
pub enum Delivery {
    /// Payloads, in the order they were sent.
    Payloads(Vec<String>),
    /// Nothing arrived for a while ([`IDLE_TICK`]): a chance to do timed
    /// work.
    Idle,
    /// The listening connection was lost and is back: what was sent in
    /// between was not received.
    Gap,
}

/// The broker of one process (PostgreSQL only).
pub struct Broker {
    db: Db,
    /// This process, as payloads name it (so it knows its own).
    instance: String,
}

impl Broker {
    /// The broker for this database: `None` on SQLite.
    pub fn open(db: &Db) -> Option<Arc<Broker>> {
        (db.backend() == Backend::Postgres).then(|| {
            Arc::new(Broker {
                db: db.clone(),
                instance: uuid::Uuid::new_v4().simple().to_string(),
            })
        })
    }

    /// A random id of this process, made at start.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Sends `payloads` on `channel` at once, outside any transaction, in
    /// one transaction of their own that does not wait for the log flush (a
    /// notification is not data: if the database crashes it is gone either
    /// way). Listeners receive them in this order, after whatever committed
    /// before.
    pub fn publish_now(&self, channel: &str, payloads: &[String]) -> Result<()> {
        for p in payloads {
            check(p)?;
        }
        if payloads.is_empty() {
            return Ok(());
        }
        self.db.write(|c| -> steward_store::StoreResult<()> {
            c.execute("SET LOCAL synchronous_commit = off", &[])?;
            for p in payloads {
                c.execute("SELECT pg_notify($1, $2)", params![channel, p.as_str()])?;
            }
            Ok(())
        })?;
        Ok(())
    }

    /// Starts listening on `channel`: a thread that calls `handler` with each
    /// batch of payloads, in the order they were sent, until `stop` is set. Returns once
    /// the first `LISTEN` is in place (or failed: then the thread keeps
    /// trying, and its first success is reported as a [`Delivery::Gap`]), so
    /// that nothing committed after this call is missed.
    pub fn listen(
        self: &Arc<Self>,
        channel: &'static str,
        stop: Arc<AtomicBool>,
        mut handler: impl FnMut(Delivery) + Send + 'static,
    ) -> Result<std::thread::JoinHandle<()>> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<bool>();
        let db = self.db.clone();
        let thread = std::thread::Builder::new()
            .name(format!("broker-{channel}"))
            .spawn(move || {
                let mut ready = Some(ready_tx);
                let mut missed = false;
                let mut backoff = Duration::from_millis(100);
                while !stop.load(Ordering::Relaxed) {
                    let session = db.session().and_then(|s| {
                        let mut s = s.ok_or_else(|| {
                            steward_store::StoreError::Connect("no PostgreSQL session".into())
                        })?;
                        s.listen(channel)?;
                        Ok(s)
                    });
                    let mut session = match session {
                        Ok(s) => s,
                        Err(e) => {
                            if let Some(r) = ready.take() {
                                let _ = r.send(false);
                            }
                            missed = true;
                            tracing::warn!(error = %e, channel, "broker: cannot listen; retrying");
                            std::thread::sleep(backoff);
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                            continue;
                        }
                    };
                    backoff = Duration::from_millis(100);
                    if let Some(r) = ready.take() {
                        let _ = r.send(true);
                    }
                    if missed {
                        tracing::warn!(channel, "broker: listening again after a gap");
                        handler(Delivery::Gap);
                        missed = false;
                    }
                    while !stop.load(Ordering::Relaxed) {
                        match session.wait(IDLE_TICK) {
                            Ok(batch) if batch.is_empty() => handler(Delivery::Idle),
                            Ok(batch) => handler(Delivery::Payloads(
                                batch.into_iter().map(|n| n.payload).collect(),
                            )),
                            Err(e) => {
                                tracing::warn!(error = %e, channel, "broker: connection lost");
                                missed = true;
                                break;
                            }
                        }
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the broker thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(30)) {
            Ok(true) => {}
            _ => tracing::error!(channel, "broker: not listening yet; events may be missed"),
        }
        Ok(thread)
    }
}

fn check(payload: &str) -> Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(Error::Internal(format!(
            "a broker payload of {} bytes is over {MAX_PAYLOAD}",
            payload.len()
        )));
    }
    Ok(())
}
