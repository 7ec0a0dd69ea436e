//! Chat across server processes: what the writer pushes to open sockets goes
//! through the broker (`crate::broker`), so every process pushes every
//! committed message and status event to its own sockets in commit order.
//!
//! ```text
//!  writer lane, inside the batch's transaction         every process's listener thread
//!  ─ the batch's pushes kept in this process's  ──▶   notifications in commit order:
//!    stash under a token (before commit)              ─ its own (same instance): the
//!  ─ NOTIFY steward_chat {instance, token,              stash's pushes, as built
//!    ids of messages and moved receipts}              ─ another's: the messages read by
//!  ── commit ──▶ answer each op (ack to sender)         id from the database (bodies
//!                                                        opened with the senders' keys),
//!                                                        pushed to this process's sockets
//! ```
//!
//! So a process pushes even its own batches only when their notification
//! comes back: its sockets see its own and the other processes' events in one
//! order, the commit order. Payloads hold ids (conversation, message, subject,
//! state, time), never text. A status event carries the moved message ids
//! when there are at most [`INLINE_IDS`]; otherwise the receiving process
//! reads them (the receipts the mark moved at that second).
//!
//! Closing a user's sockets (logout, account disabled, erasure) is sent the
//! same way, outside a transaction.
//!
//! When the listener's connection is lost it reconnects and every socket of
//! the process is closed (code 1008): its clients reconnect and read what they
//! missed from the history, as after falling behind. On SQLite (one process)
//! the relay is [`Relay::Direct`]: pushes go to the hub right after commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steward_crypto::DataKey;
use steward_store::{Conn, Row, StoreResult, Value, params, placeholders};

use super::hub::Hub;
use super::{Message, Receipt, ReceiptState, ServerFrame, attachments};
use crate::broker::{Broker, Delivery, MAX_PAYLOAD};
use crate::core::{Steward, Tx, fields};
use crate::error::Result;

/// The broker channel of chat.
pub const CHANNEL: &str = "steward_chat";

/// Moved message ids a status notification carries itself.
pub const INLINE_IDS: usize = 100;

/// How long a stashed batch waits for its notification before it is
/// dropped (it was lost in a gap of the listening connection).
const STASH_KEEP: Duration = Duration::from_secs(60);

/// One frame for one subject's open sockets, except one.
pub(crate) struct Push {
    pub subject: String,
    pub frame: Arc<str>,
    pub except: Option<u64>,
}

/// What a notification announces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "k")]
pub(crate) enum Entry {
    /// A message was stored.
    #[serde(rename = "m")]
    Message { c: String, id: i64 },
    /// `who` marked their receipts of conversation `c` up to `up_to`; `by`
    /// names the moved ones per sender (absent when there were too many).
    #[serde(rename = "s")]
    Status {
        c: String,
        who: String,
        st: ReceiptState,
        at: i64,
        up_to: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<BTreeMap<String, Vec<i64>>>,
    },
    /// Close every socket of a subject.
    #[serde(rename = "x")]
    CloseSubject { who: String },
    /// Close every socket opened with a session (hex SHA-256 of its token).
    #[serde(rename = "q")]
    CloseSession { h: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The sending process.
    o: String,
    /// Its token for the batch (0 outside a batch).
    t: u64,
    e: Vec<Entry>,
}

/// How pushes reach the sockets.
pub(crate) enum Relay {
    /// One process (SQLite): the writer pushes after commit.
    Direct,
    /// Several processes (PostgreSQL): through the broker.
    Broker(Arc<Shared>),
}

pub(crate) struct Shared {
    broker: Arc<Broker>,
    next: AtomicU64,
    stash: Mutex<HashMap<u64, (Instant, Vec<Push>)>>,
}

impl Relay {
    /// The relay for this database; on PostgreSQL starts the listener, which
    /// pushes to `hub` until `stop` is set.
    pub(crate) fn start(core: &Arc<Steward>, hub: &Arc<Hub>, stop: Arc<AtomicBool>) -> Relay {
        let Some(broker) = Broker::open(&core.db) else {
            return Relay::Direct;
        };
        let shared = Arc::new(Shared {
            broker: broker.clone(),
            next: AtomicU64::new(1),
            stash: Mutex::new(HashMap::new()),
        });
        let (c, h, s) = (core.clone(), hub.clone(), shared.clone());
        if let Err(e) = broker.listen(CHANNEL, stop, move |d| s.received(&c, &h, d)) {
            tracing::error!(error = %e, "chat: cannot listen to other processes");
        }
        Relay::Broker(shared)
    }

    /// A token for a batch's pushes (`None` when pushes are direct).
    pub(crate) fn token(&self) -> Option<u64> {
        match self {
            Relay::Direct => None,
            Relay::Broker(s) => Some(s.next.fetch_add(1, Ordering::Relaxed)),
        }
    }

    /// Inside the batch's transaction: keeps `pushes` under `token` and
    /// announces `entries`. Direct: hands the pushes back, to be pushed after
    /// commit.
    pub(crate) fn announce(
        &self,
        tx: &mut Tx<'_>,
        token: Option<u64>,
        entries: Vec<Entry>,
        pushes: Vec<Push>,
    ) -> Result<Vec<Push>> {
        let (Relay::Broker(s), Some(token)) = (self, token) else {
            return Ok(pushes);
        };
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        s.stash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(token, (Instant::now(), pushes));
        for payload in payloads(s.broker.instance(), token, entries) {
            s.broker.publish(tx.conn, CHANNEL, &payload)?;
        }
        Ok(Vec::new())
    }

    /// The batch of `token` did not commit: its pushes are dropped.
    pub(crate) fn forget(&self, token: Option<u64>) {
        if let (Relay::Broker(s), Some(t)) = (self, token) {
            s.stash
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(&t);
        }
    }

    /// Tells the other processes to close sockets (this one closes its own
    /// itself). Blocking (one statement). Failing is logged: their session
    /// check closes them within `SESSION_RECHECK` anyway.
    pub(crate) fn close(&self, entry: Entry) {
        if let Relay::Broker(s) = self {
            for payload in payloads(s.broker.instance(), 0, vec![entry]) {
                if let Err(e) = s.broker.publish_now(CHANNEL, &payload) {
                    tracing::warn!(error = %e, "chat: could not tell other processes to close sockets");
                }
            }
        }
    }
}

/// Notices of at most [`MAX_PAYLOAD`] bytes holding `entries`, in order.
fn payloads(instance: &str, token: u64, entries: Vec<Entry>) -> Vec<String> {
    let mut out = Vec::new();
    let mut notice = Notice {
        o: instance.to_owned(),
        t: token,
        e: Vec::new(),
    };
    let base = serde_json::to_string(&notice).map_or(64, |s| s.len());
    let mut size = base;
    for mut entry in entries {
        let mut len = serde_json::to_string(&entry).map_or(0, |s| s.len()) + 1;
        if base + len > MAX_PAYLOAD {
            // Only a status with many ids can be this long: the receiver reads them.
            if let Entry::Status { by, .. } = &mut entry {
                *by = None;
            }
            len = serde_json::to_string(&entry).map_or(0, |s| s.len()) + 1;
        }
        if size + len > MAX_PAYLOAD && !notice.e.is_empty() {
            out.extend(serde_json::to_string(&notice));
            notice.e.clear();
            size = base;
        }
        size += len;
        notice.e.push(entry);
    }
    if !notice.e.is_empty() {
        out.extend(serde_json::to_string(&notice));
    }
    out
}

impl Shared {
    /// The listener's handler: notices in commit order.
    fn received(&self, core: &Steward, hub: &Hub, delivery: Delivery) {
        let payloads = match delivery {
            Delivery::Gap => {
                self.stash
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clear();
                // What was committed meanwhile was not pushed: the clients
                // reconnect and read the history.
                hub.close_every_connection();
                return;
            }
            Delivery::Payloads(p) => p,
        };
        let notices: Vec<Notice> = payloads
            .iter()
            .filter_map(|p| match serde_json::from_str(p) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "chat: unreadable notification ignored");
                    None
                }
            })
            .collect();
        let me = self.broker.instance();
        let remote: Vec<&Entry> = notices
            .iter()
            .filter(|n| n.o != me)
            .flat_map(|n| &n.e)
            .collect();
        let mut fetched = match fetch(core, hub, &remote) {
            Ok(f) => f,
            Err(e) => {
                tracing::error!(error = %e, "chat: cannot read other processes' messages");
                // Their sockets would miss these: they reconnect and read.
                hub.close_every_connection();
                return;
            }
        };
        let mut seen: HashSet<u64> = HashSet::new();
        for n in &notices {
            if n.o == me {
                // A batch's first notice pushes it; the others add nothing.
                if n.t != 0 && seen.insert(n.t) {
                    let stashed = self
                        .stash
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&n.t);
                    for p in stashed.map(|(_, p)| p).unwrap_or_default() {
                        hub.push(&p.subject, &p.frame, p.except);
                    }
                }
                continue;
            }
            for e in &n.e {
                for p in fetched.pushes(e) {
                    hub.push(&p.subject, &p.frame, None);
                }
                match e {
                    Entry::CloseSubject { who } => hub.close_subject(who),
                    Entry::CloseSession { h } => {
                        if let Some(hash) = from_hex(h) {
                            hub.close_session(&hash);
                        }
                    }
                    _ => {}
                }
            }
        }
        self.stash
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|_, (at, _)| at.elapsed() < STASH_KEEP);
    }
}

pub(crate) fn to_hex(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn from_hex(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    if text.len() != 64 {
        return None;
    }
    for (i, o) in out.iter_mut().enumerate() {
        *o = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What the database says about other processes' entries, for this
/// process's sockets.
#[derive(Default)]
struct Fetched {
    /// Stored messages by id (only those someone here is connected for).
    messages: HashMap<i64, Message>,
    /// Each message's recipients when it was stored.
    recipients: HashMap<i64, Vec<String>>,
    /// Moved receipts per status entry that did not carry them: (conversation,
    /// subject, at) → sender → ids.
    moved: HashMap<(String, String, i64), BTreeMap<String, Vec<i64>>>,
}

impl Fetched {
    /// The pushes of one entry from another process.
    fn pushes(&mut self, e: &Entry) -> Vec<Push> {
        match e {
            Entry::Message { id, .. } => {
                let Some(message) = self.messages.get(id) else {
                    return Vec::new();
                };
                let recipients = self.recipients.get(id).cloned().unwrap_or_default();
                message_pushes(message, &recipients, None, true)
            }
            Entry::Status {
                c, who, st, at, by, ..
            } => {
                let by = match by {
                    Some(b) => b.clone(),
                    None => self
                        .moved
                        .remove(&(c.clone(), who.clone(), *at))
                        .unwrap_or_default(),
                };
                status_pushes(c, who, *st, *at, &by, None)
            }
            Entry::CloseSubject { .. } | Entry::CloseSession { .. } => Vec::new(),
        }
    }
}

/// The pushes of a stored message: to its recipients (their status `sent`),
/// and to the sender's other sockets (with every recipient's receipt) when
/// `to_sender`.
pub(crate) fn message_pushes(
    message: &Message,
    recipients: &[String],
    origin: Option<u64>,
    to_sender: bool,
) -> Vec<Push> {
    let mut out = Vec::with_capacity(recipients.len() + 1);
    let for_recipients = ServerFrame::Message {
        message: Message {
            state: Some(ReceiptState::Sent),
            receipts: Vec::new(),
            ..message.clone()
        },
    }
    .to_text();
    for r in recipients {
        out.push(Push {
            subject: r.clone(),
            frame: for_recipients.clone(),
            except: None,
        });
    }
    if let (true, Some(sender)) = (to_sender, &message.sender_subject_id) {
        out.push(Push {
            subject: sender.clone(),
            frame: ServerFrame::Message {
                message: message.clone(),
            }
            .to_text(),
            except: origin,
        });
    }
    out
}

/// The pushes of a mark: a status event to each sender whose messages' receipts
/// moved, and to the marking user's other sockets.
pub(crate) fn status_pushes(
    conversation: &str,
    who: &str,
    state: ReceiptState,
    at: i64,
    by_sender: &BTreeMap<String, Vec<i64>>,
    origin: Option<u64>,
) -> Vec<Push> {
    let mut out = Vec::with_capacity(2 * by_sender.len());
    for (sender, ids) in by_sender {
        let frame = ServerFrame::Status {
            conversation_id: conversation.to_owned(),
            subject_id: who.to_owned(),
            state,
            at,
            message_ids: ids.clone(),
        }
        .to_text();
        out.push(Push {
            subject: sender.clone(),
            frame: frame.clone(),
            except: None,
        });
        out.push(Push {
            subject: who.to_owned(),
            frame,
            except: origin,
        });
    }
    out
}

/// Reads what other processes' entries need, for the subjects connected here
/// only (one read snapshot; bodies opened with their senders' keys).
fn fetch(core: &Steward, hub: &Hub, entries: &[&Entry]) -> Result<Fetched> {
    let mut out = Fetched::default();
    let ids: Vec<i64> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Message { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    let unlisted: Vec<(&str, &str, ReceiptState, i64, i64)> = entries
        .iter()
        .filter_map(|e| match e {
            Entry::Status {
                c,
                who,
                st,
                at,
                up_to,
                by: None,
            } => Some((c.as_str(), who.as_str(), *st, *at, *up_to)),
            _ => None,
        })
        .collect();
    if ids.is_empty() && unlisted.is_empty() {
        return Ok(out);
    }
    let (rows, receipts, files) = core.db.read(|c| {
        let receipts = by_ids(
            c,
            "SELECT message_seq, recipient_subject_id FROM chat_receipts WHERE message_seq IN",
            " ORDER BY message_seq, id",
            &ids,
        )?;
        let mut wanted: HashSet<i64> = HashSet::new();
        for r in &receipts {
            if let Some(who) = r.opt_text(1)?
                && hub.is_online(&who)
            {
                wanted.insert(r.i64(0)?);
            }
        }
        let senders = by_ids(
            c,
            "SELECT seq, conversation_id, sender_subject_id, body_enc, sent_at FROM chat_messages \
             WHERE seq IN",
            " ORDER BY seq",
            &ids,
        )?;
        let mut rows = Vec::new();
        for r in senders {
            let online = r.opt_text(2)?.is_some_and(|s| hub.is_online(&s));
            if online || wanted.contains(&r.i64(0)?) {
                rows.push(r);
            }
        }
        let seqs = rows
            .iter()
            .map(|r| r.i64(0))
            .collect::<StoreResult<Vec<i64>>>()?;
        let files = attachments::of_messages(c, &seqs)?;
        for (conv, who, st, at, up_to) in &unlisted {
            let column = match st {
                ReceiptState::Read => "read_at",
                _ => "delivered_at",
            };
            let moved = c.query(
                &format!(
                    "SELECT r.message_seq, m.sender_subject_id FROM chat_receipts r \
                     JOIN chat_messages m ON m.seq = r.message_seq \
                     WHERE r.recipient_subject_id = $1 AND r.conversation_id = $2 \
                     AND r.message_seq <= $3 AND r.{column} = $4 ORDER BY r.message_seq"
                ),
                params![*who, *conv, *up_to, *at],
            )?;
            let mut by: BTreeMap<String, Vec<i64>> = BTreeMap::new();
            for m in moved {
                if let Some(sender) = m.opt_text(1)? {
                    by.entry(sender).or_default().push(m.i64(0)?);
                }
            }
            out.moved
                .insert(((*conv).to_owned(), (*who).to_owned(), *at), by);
        }
        Ok((rows, receipts, files))
    })?;
    for r in &receipts {
        if let Some(who) = r.opt_text(1)? {
            out.recipients.entry(r.i64(0)?).or_default().push(who);
        }
    }
    let mut keys: HashMap<String, Option<DataKey>> = HashMap::new();
    let mut key_of = |s: &str| -> Result<Option<DataKey>> {
        if !keys.contains_key(s) {
            keys.insert(s.to_owned(), core.keys.subject_key(s)?);
        }
        Ok(keys.get(s).cloned().flatten())
    };
    let mut by_file: HashMap<i64, Vec<attachments::Attachment>> = HashMap::new();
    for f in &files {
        let (Some(seq), uploader) = (f.opt_i64(3)?, f.text(2)?) else {
            continue;
        };
        let key = key_of(&uploader)?;
        by_file
            .entry(seq)
            .or_default()
            .push(attachments::from_row(f, key.as_ref())?);
    }
    for r in &rows {
        let id = r.i64(0)?;
        let sender = r.opt_text(2)?;
        let body = match (&sender, r.opt_bytes(3)?) {
            (Some(s), Some(sealed)) => match key_of(s)? {
                Some(k) => Some(fields::open(&k, "chat_messages.body", s, &sealed)?),
                None => None,
            },
            _ => None,
        };
        let sent_at = r.i64(4)?;
        let receipts = out
            .recipients
            .get(&id)
            .map(|list| {
                list.iter()
                    .map(|who| Receipt {
                        subject_id: Some(who.clone()),
                        state: ReceiptState::Sent,
                        sent_at,
                        delivered_at: None,
                        read_at: None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        out.messages.insert(
            id,
            Message {
                id,
                conversation_id: r.text(1)?,
                sender_subject_id: sender,
                body,
                sent_at,
                state: None,
                receipts,
                attachments: by_file.remove(&id).unwrap_or_default(),
            },
        );
    }
    Ok(out)
}

/// Rows of `select (…ids…) order`, in chunks of 500 ids.
fn by_ids(c: &mut dyn Conn, select: &str, order: &str, ids: &[i64]) -> StoreResult<Vec<Row>> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let args: Vec<Value> = chunk.iter().map(|i| Value::Int(*i)).collect();
        out.extend(c.query(
            &format!("{select} ({}){order}", placeholders(1, chunk.len())),
            &args,
        )?);
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn notices_stay_under_the_payload_limit_and_keep_order() {
        let entries: Vec<Entry> = (0..500)
            .map(|i| Entry::Message {
                c: "0190c3f2-0000-7000-8000-000000000001".into(),
                id: 1_000_000 + i,
            })
            .collect();
        let out = payloads("abc", 7, entries.clone());
        assert!(out.len() > 1, "{}", out.len());
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            let n: Notice = serde_json::from_str(p).unwrap();
            assert_eq!((n.o.as_str(), n.t), ("abc", 7));
            back.extend(n.e);
        }
        assert_eq!(back, entries);
    }

    #[test]
    fn a_status_with_too_many_ids_leaves_them_to_the_receiver() {
        let mut by = BTreeMap::new();
        by.insert("s".to_owned(), (0..5_000).collect::<Vec<i64>>());
        let e = Entry::Status {
            c: "c".into(),
            who: "w".into(),
            st: ReceiptState::Read,
            at: 5,
            up_to: 4_999,
            by: Some(by),
        };
        let out = payloads("abc", 1, vec![e]);
        assert_eq!(out.len(), 1);
        let n: Notice = serde_json::from_str(&out[0]).unwrap();
        assert!(matches!(&n.e[0], Entry::Status { by: None, up_to: 4_999, .. }));
    }

    #[test]
    fn session_hashes_round_trip_through_hex() {
        let h = [0xab; 32];
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex("zz"), None);
    }
}
