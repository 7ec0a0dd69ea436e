//! The realtime hub: which subjects have open connections, and a bounded
//! outbox per connection. The writer pushes stored messages and status events
//! here after each commit; a connection's task writes its outbox to the socket.
//!
//! Frames are JSON text, built once per event and shared by every connection
//! that receives it. Pushing never blocks: a connection whose outbox is full
//! (a client that stopped reading) is cancelled, and its task closes the
//! socket; the client reconnects and reads what it missed from the history.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};

use super::OUTBOX;

/// Where frames for one connection go.
#[derive(Clone)]
pub struct Outbox {
    pub id: u64,
    tx: mpsc::Sender<Arc<str>>,
    cancel: CancellationToken,
    /// SHA-256 of the connection's session token, to close it at logout.
    session: [u8; 32],
    /// Operations of this connection queued for the writer and not answered
    /// yet: a stopping server writes their answers before it closes.
    pending: Arc<AtomicUsize>,
}

impl Outbox {
    /// An operation of this connection was queued for the writer.
    pub fn queued(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    /// Queues the writer's answer to one of this connection's operations.
    pub fn answer(&self, frame: &Arc<str>) {
        self.push(frame);
        self.answered();
    }

    /// An operation of this connection was answered (or never queued).
    pub fn answered(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    /// Operations queued and not answered yet.
    pub fn pending(&self) -> usize {
        self.pending.load(Ordering::Acquire)
    }

    /// Queues a frame; a full outbox cancels the connection. Returns whether
    /// the frame was queued.
    pub fn push(&self, frame: &Arc<str>) -> bool {
        match self.tx.try_send(frame.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(
                    connection = self.id,
                    "chat connection fell {OUTBOX} frames behind: closing it"
                );
                metrics::counter!("steward_chat_slow_disconnects_total").increment(1);
                self.cancel.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// What a connection's task holds: its outbox's receiving end and the token
/// that tells it to close. Dropping it takes the connection out of the hub.
pub struct Registration {
    pub id: u64,
    pub frames: mpsc::Receiver<Arc<str>>,
    pub cancel: CancellationToken,
    pub outbox: Outbox,
    hub: Arc<Hub>,
    subject: String,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.hub.unregister(&self.subject, self.id);
    }
}

/// Chat sockets one subject may hold open on one process (phones, tablets,
/// desktops and browser tabs); one more is refused with 429 until one closes. Kept
/// in this process's memory: with several processes a subject may hold this many on
/// each.
pub const MAX_SOCKETS_PER_SUBJECT: usize = 16;

#[derive(Default)]
pub struct Hub {
    by_subject: RwLock<HashMap<String, Vec<Outbox>>>,
    next_id: AtomicU64,
    /// Cancelled when the server shuts down: every connection closes.
    closing: CancellationToken,
    /// Connection tasks that have not finished yet (their end recorded), so
    /// that a stopping server can wait for them.
    tasks: TaskTracker,
}

impl Hub {
    /// Registers a new connection of `subject`, opened with the session whose
    /// token hashes to `session`; `None` when the subject already has
    /// [`MAX_SOCKETS_PER_SUBJECT`] open on this process.
    pub fn register(self: &Arc<Self>, subject: &str, session: [u8; 32]) -> Option<Registration> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
        let (tx, frames) = mpsc::channel(OUTBOX);
        let cancel = self.closing.child_token();
        let outbox = Outbox {
            id,
            tx,
            cancel: cancel.clone(),
            session,
            pending: Arc::new(AtomicUsize::new(0)),
        };
        let mut map = self
            .by_subject
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let open = map.entry(subject.to_owned()).or_default();
        if open.len() >= MAX_SOCKETS_PER_SUBJECT {
            return None;
        }
        open.push(outbox.clone());
        let open: usize = map.values().map(Vec::len).sum();
        drop(map);
        metrics::gauge!("steward_chat_connections").set(open as f64);
        Some(Registration {
            id,
            frames,
            cancel,
            outbox,
            hub: self.clone(),
            subject: subject.to_owned(),
        })
    }

    /// Forgets a connection (its registration was dropped).
    fn unregister(&self, subject: &str, id: u64) {
        let mut map = self
            .by_subject
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(list) = map.get_mut(subject) {
            list.retain(|o| o.id != id);
            if list.is_empty() {
                map.remove(subject);
            }
        }
        let open: usize = map.values().map(Vec::len).sum();
        drop(map);
        metrics::gauge!("steward_chat_connections").set(open as f64);
    }

    /// Sends `frame` to every open connection of `subject` except `except`.
    /// Returns the number of connections it was queued for.
    pub fn push(&self, subject: &str, frame: &Arc<str>, except: Option<u64>) -> usize {
        let map = self
            .by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        map.get(subject).map_or(0, |list| {
            list.iter()
                .filter(|o| Some(o.id) != except)
                .filter(|o| o.push(frame))
                .count()
        })
    }

    /// Open connections, in all.
    pub fn connections(&self) -> usize {
        self.by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .map(Vec::len)
            .sum()
    }

    /// Whether `subject` has an open connection.
    pub fn is_online(&self, subject: &str) -> bool {
        self.by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(subject)
    }

    /// Whether `subject` has an open connection other than `except`.
    pub fn has_others(&self, subject: &str, except: Option<u64>) -> bool {
        self.by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(subject)
            .is_some_and(|list| list.iter().any(|o| Some(o.id) != except))
    }

    /// Closes the connections opened with a session (at logout).
    pub fn close_session(&self, session: &[u8; 32]) {
        let map = self
            .by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for o in map.values().flatten().filter(|o| &o.session == session) {
            o.cancel.cancel();
        }
    }

    /// Closes every connection of a subject (their account was disabled, or
    /// they were erased).
    pub fn close_subject(&self, subject: &str) {
        let map = self
            .by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for o in map.get(subject).into_iter().flatten() {
            o.cancel.cancel();
        }
    }

    /// Closes every connection, the server going on (events may have been
    /// missed: the clients reconnect and read the history).
    pub fn close_every_connection(&self) {
        let map = self
            .by_subject
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        for o in map.values().flatten() {
            o.cancel.cancel();
        }
    }

    /// Tells every connection to close (the server is stopping).
    pub fn close_all(&self) {
        self.closing.cancel();
    }

    /// Counts a connection's task as running until the token is dropped: from
    /// before the upgrade is answered until the connection's end is recorded.
    pub fn track(&self) -> TaskTrackerToken {
        self.tasks.token()
    }

    /// Waits, at most `limit`, until every tracked connection task has
    /// finished (after [`Hub::close_all`]: they are closing). Returns whether
    /// they all did.
    pub async fn closed(&self, limit: std::time::Duration) -> bool {
        self.tasks.close();
        tokio::time::timeout(limit, self.tasks.wait()).await.is_ok()
    }

    /// Whether the server is stopping.
    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn pushes_reach_every_connection_but_the_excepted_one() {
        let hub = Arc::new(Hub::default());
        let mut a1 = hub.register("a", [1; 32]).unwrap();
        let mut a2 = hub.register("a", [2; 32]).unwrap();
        let frame: Arc<str> = Arc::from("{}");
        assert_eq!(hub.push("a", &frame, Some(a1.id)), 1);
        assert!(a1.frames.try_recv().is_err());
        assert_eq!(&*a2.frames.try_recv().unwrap(), "{}");
        assert_eq!(hub.push("nobody", &frame, None), 0);
        hub.close_session(&[2; 32]);
        assert!(a2.cancel.is_cancelled() && !a1.cancel.is_cancelled());
        hub.close_subject("a");
        assert!(a1.cancel.is_cancelled());
        drop((a1, a2));
        assert_eq!(hub.connections(), 0);
    }

    #[test]
    fn a_subject_holds_at_most_the_cap_of_sockets() {
        let hub = Arc::new(Hub::default());
        let mut held: Vec<_> = (0..MAX_SOCKETS_PER_SUBJECT)
            .map(|_| hub.register("a", [0; 32]).unwrap())
            .collect();
        assert!(hub.register("a", [0; 32]).is_none());
        // Another subject is not affected, and a closed socket frees its place.
        assert!(hub.register("b", [0; 32]).is_some());
        held.pop();
        assert!(hub.register("a", [0; 32]).is_some());
    }

    #[test]
    fn a_full_outbox_cancels_its_connection_only() {
        let hub = Arc::new(Hub::default());
        let slow = hub.register("a", [0; 32]).unwrap();
        let fast = hub.register("b", [0; 32]).unwrap();
        let frame: Arc<str> = Arc::from("{}");
        for _ in 0..OUTBOX {
            assert!(slow.outbox.push(&frame));
        }
        assert!(!slow.outbox.push(&frame));
        assert!(slow.cancel.is_cancelled());
        assert!(!fast.cancel.is_cancelled());
        hub.close_all();
        assert!(fast.cancel.is_cancelled());
    }
}
