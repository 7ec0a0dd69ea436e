//! Chat across server processes (PostgreSQL): what one process commits
//! reaches the open sockets of every other, each conversation in commit order.
//!
//! ```text
//!  writer lane                                      every other process's listener
//!  ── commit ──▶ push to this process's sockets      notices in the order sent:
//!               (through the sequencer) and hand    ─ short bodies opened with the
//!               the entries to the publisher          sender's key (one key-store
//!  publisher thread: NOTIFY steward_chat              read per wake-up), others read
//!   {instance, ms, entries} in a short                by id; nothing read for people
//!   transaction of its own                            not connected here
//!                                                   ─ through the sequencer, to its
//!                                                     sockets
//! ```
//!
//! Entries name ids (conversation, message, its predecessor, sender, up to
//! [`INLINE_RECIPIENTS`] recipients, state, time) and carry a short message's
//! body as stored (sealed with the sender's key), never readable text. A
//! status event carries the moved message ids when there are at most
//! [`INLINE_IDS`]; otherwise the receiving process reads them (the receipts
//! the mark moved at that second). The order of messages comes from
//! `sequence.rs`: a message whose predecessor was not seen waits, and after
//! [`GAP_WAIT`] the missing ones are read from the database.
//!
//! Closing a user's sockets (logout, account disabled, erasure) is sent the
//! same way. When the listener's connection is lost, or the listener falls more
//! than [`LAG_LIMIT_MS`] behind, every socket of the process is closed (1008):
//! its clients reconnect and read what they missed from the history. On SQLite
//! (one process) the relay is [`Relay::Direct`]: pushes go to the hub right
//! after commit.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use steward_crypto::DataKey;
use steward_store::{Conn, Row, StoreResult, Value, params, placeholders};

use base64ct::{Base64UrlUnpadded, Encoding};

use super::hub::Hub;
use super::sequence::Sequencer;
use super::{Message, Receipt, ReceiptState, ServerFrame, attachments};
use crate::broker::{Broker, Delivery, MAX_PAYLOAD};
use crate::core::{Steward, fields};
use crate::error::Result;

/// The broker channel of chat.
pub const CHANNEL: &str = "steward_chat";

/// Moved message ids a status notification carries itself.
pub const INLINE_IDS: usize = 100;

/// Recipients a message notification carries itself (a direct conversation
/// has one).
pub const INLINE_RECIPIENTS: usize = 8;

/// Sealed bodies up to this many bytes travel in the notification (longer
/// ones are read from the database by the receiver).
pub const INLINE_BODY_BYTES: usize = 2_048;

/// A notification older than this when the listener comes to it means the
/// listener is behind (it cannot keep up): it stops reading the backlog,
/// closes its sockets (their clients read the history) and skips ahead until
/// notifications are fresh again, instead of falling ever further behind
/// (and filling PostgreSQL's notification queue). The age counts from when
/// the sending process's publisher sent it. Wall clocks of the machines must
/// agree to well within it (NTP).
pub const LAG_LIMIT_MS: i64 = 10_000;

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
    /// A message was stored: its conversation, id, sender, its recipients
    /// when there are at most [`INLINE_RECIPIENTS`] (else the receiver reads
    /// them), and whether it carries files. A process reads nothing for a
    /// message none of whose people is connected to it.
    #[serde(rename = "m")]
    Message {
        c: String,
        id: i64,
        /// The conversation's previous message id when it was stored (0:
        /// none): see `sequence.rs`.
        #[serde(default)]
        p: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        s: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        r: Option<Vec<String>>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        f: bool,
        /// A short message without files: its body as stored (sealed with
        /// the sender's key, base64url) and its time, so that the receiver
        /// reads nothing but the sender's key.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        b: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<i64>,
    },
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
    /// Close every socket opened with a session (SHA-256 of its token,
    /// base64url).
    #[serde(rename = "q")]
    CloseSession { h: String },
}

#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    /// The sending process.
    o: String,
    /// When it was sent (Unix milliseconds, the sender's clock).
    #[serde(default)]
    ms: i64,
    e: Vec<Entry>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// What a committed batch pushes for one of its entries.
pub(crate) struct Event {
    pub entry: Entry,
    pub pushes: Vec<Push>,
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
    /// This process's pushes of messages, in each conversation's commit order.
    order: Mutex<Sequencer<Push>>,
    /// Committed batches' entries for the publisher thread.
    outgoing: std::sync::mpsc::Sender<Vec<Entry>>,
    /// Set while the listener skips a backlog (see [`LAG_LIMIT_MS`]).
    shedding: AtomicBool,
}

/// How long a message waits for its predecessor's announcement before the
/// relay reads the missing messages from the database.
pub const GAP_WAIT: Duration = Duration::from_millis(250);

/// Conversations idle this long are forgotten by the sequencer.
const IDLE: Duration = Duration::from_secs(600);

impl Relay {
    /// The relay for this database; on PostgreSQL starts the publisher and
    /// the listener, which pushes to `hub` until `stop` is set.
    pub(crate) fn start(core: &Arc<Steward>, hub: &Arc<Hub>, stop: Arc<AtomicBool>) -> Relay {
        let Some(broker) = Broker::open(&core.db).filter(|_| core.settings.chat_fanout) else {
            return Relay::Direct;
        };
        let (outgoing, batches) = std::sync::mpsc::channel::<Vec<Entry>>();
        let shared = Arc::new(Shared {
            broker: broker.clone(),
            order: Mutex::new(Sequencer::default()),
            outgoing,
            shedding: AtomicBool::new(false),
        });
        let publisher = broker.clone();
        if let Err(e) = std::thread::Builder::new()
            .name("chat-publisher".into())
            .spawn(move || publish(&publisher, &batches))
        {
            tracing::error!(error = %e, "chat: cannot start the publisher");
        }
        let (c, h, s) = (core.clone(), hub.clone(), shared.clone());
        if let Err(e) = broker.listen(CHANNEL, stop, move |d| s.received(&c, &h, d)) {
            tracing::error!(error = %e, "chat: cannot listen to other processes");
        }
        Relay::Broker(shared)
    }

    /// After a batch committed: pushes its events to this process's sockets
    /// (messages in each conversation's commit order) and hands its entries
    /// to the publisher, which tells the other processes.
    pub(crate) fn committed(&self, hub: &Hub, events: Vec<Event>) {
        let Relay::Broker(s) = self else {
            for p in events.into_iter().flat_map(|e| e.pushes) {
                hub.push(&p.subject, &p.frame, p.except);
            }
            return;
        };
        if events.is_empty() {
            return;
        }
        let now = Instant::now();
        let mut entries = Vec::with_capacity(events.len());
        {
            let mut order = s.order.lock().unwrap_or_else(PoisonError::into_inner);
            for Event { entry, pushes } in events {
                let ready = match &entry {
                    Entry::Message { c, id, p, .. } => order.message(c, *id, *p, pushes, now),
                    _ => pushes,
                };
                for p in ready {
                    hub.push(&p.subject, &p.frame, p.except);
                }
                entries.push(entry);
            }
        }
        if s.outgoing.send(entries).is_err() {
            tracing::error!("chat: the publisher is gone; other processes will read the history");
        }
    }

    /// Tells the other processes to close sockets (this one closes its own
    /// itself). Blocking (one statement). Failing is logged: their session
    /// check closes them within `SESSION_RECHECK` anyway.
    pub(crate) fn close(&self, entry: Entry) {
        if let Relay::Broker(s) = self
            && let Err(e) = s
                .broker
                .publish_now(CHANNEL, &payloads(s.broker.instance(), vec![entry]))
        {
            tracing::warn!(error = %e, "chat: could not tell other processes to close sockets");
        }
    }
}

/// The publisher thread: each time, every batch committed since it last
/// published, in one statement batch (outside the batches' transactions, so
/// no chat commit waits for PostgreSQL's notification lock). Ends when the
/// relay is gone.
fn publish(broker: &Broker, batches: &std::sync::mpsc::Receiver<Vec<Entry>>) {
    while let Ok(first) = batches.recv() {
        let mut entries = first;
        while let Ok(more) = batches.try_recv() {
            entries.extend(more);
        }
        let payloads = payloads(broker.instance(), entries);
        if let Err(e) = broker.publish_now(CHANNEL, &payloads) {
            // The other processes read what they missed when the next
            // message of those conversations arrives (or their clients do).
            tracing::warn!(error = %e, "chat: could not announce committed messages");
        }
    }
}

/// Notices of at most [`MAX_PAYLOAD`] bytes holding `entries`, in order.
fn payloads(instance: &str, entries: Vec<Entry>) -> Vec<String> {
    let mut out = Vec::new();
    let mut notice = Notice {
        o: instance.to_owned(),
        ms: now_ms(),
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
    /// Resets the order and closes every socket of this process: what was
    /// missed is read from the history by the clients.
    fn resync(&self, hub: &Hub) {
        self.order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        hub.close_every_connection();
    }

    /// The listener's handler: other processes' notices as they arrive, and
    /// messages overdue for their predecessor.
    fn received(&self, core: &Steward, hub: &Hub, delivery: Delivery) {
        let payloads = match delivery {
            Delivery::Gap => {
                // What was announced meanwhile was not received.
                self.resync(hub);
                return;
            }
            Delivery::Idle => Vec::new(),
            Delivery::Payloads(p) => p,
        };
        // This process pushed its own at commit: they are recognised by their
        // first field (`o`, the sender) without being parsed.
        let own = format!("{{\"o\":\"{}\"", self.broker.instance());
        let notices: Vec<Notice> = payloads
            .iter()
            .filter(|p| !p.starts_with(&own))
            .filter_map(|p| match serde_json::from_str::<Notice>(p) {
                Ok(n) => Some(n),
                Err(e) => {
                    tracing::warn!(error = %e, "chat: unreadable notification ignored");
                    None
                }
            })
            .collect();
        // Behind by more than the limit: skip what is stale, once closing
        // every socket (their clients catch up from the history).
        let now = now_ms();
        let stale = |n: &Notice| n.ms > 0 && now - n.ms > LAG_LIMIT_MS;
        if notices.iter().any(stale) && !self.shedding.swap(true, Ordering::AcqRel) {
            tracing::warn!(
                behind_ms = notices.iter().map(|n| now - n.ms).max().unwrap_or(0),
                "chat: the listener fell behind; skipping to the present and closing \
                 this process's sockets (clients read the history)"
            );
            metrics::counter!("steward_chat_relay_sheds_total").increment(1);
            self.resync(hub);
        }
        let notices: Vec<Notice> = notices.into_iter().filter(|n| !stale(n)).collect();
        if !notices.is_empty() {
            self.shedding.store(false, Ordering::Release);
        }
        let started = Instant::now();
        let entries: Vec<&Entry> = notices.iter().flat_map(|n| &n.e).collect();
        if let Err(e) = self.push_remote(core, hub, &entries) {
            tracing::error!(error = %e, "chat: cannot read other processes' messages");
            self.resync(hub);
            return;
        }
        if let Err(e) = self.fill_gaps(core, hub) {
            tracing::error!(error = %e, "chat: cannot read missed messages");
            self.resync(hub);
            return;
        }
        if !entries.is_empty() {
            let took = started.elapsed();
            metrics::histogram!("steward_chat_relay_seconds").record(took.as_secs_f64());
            tracing::debug!(
                notices = notices.len(),
                entries = entries.len(),
                behind_ms = notices.iter().map(|n| now - n.ms).max().unwrap_or(0),
                micros = took.as_micros() as u64,
                "chat relay"
            );
        }
    }

    /// Pushes other processes' entries to this process's sockets.
    fn push_remote(&self, core: &Steward, hub: &Hub, entries: &[&Entry]) -> Result<()> {
        if entries.is_empty() {
            return Ok(());
        }
        let mut fetched = fetch(core, hub, entries)?;
        let now = Instant::now();
        let mut order = self.order.lock().unwrap_or_else(PoisonError::into_inner);
        for e in entries {
            let pushes = fetched.pushes(e);
            let ready = match e {
                Entry::Message { c, id, p, .. } => order.message(c, *id, *p, pushes, now),
                _ => pushes,
            };
            for p in ready {
                hub.push(&p.subject, &p.frame, p.except);
            }
            match e {
                Entry::CloseSubject { who } => hub.close_subject(who),
                Entry::CloseSession { h } => {
                    if let Some(hash) = session_hash(h) {
                        hub.close_session(&hash);
                    }
                }
                _ => {}
            }
        }
        order.prune(IDLE, now);
        metrics::gauge!("steward_chat_relay_conversations").set(order.len() as f64);
        Ok(())
    }

    /// Reads the messages that held ones have waited [`GAP_WAIT`] for (their
    /// announcement was lost, or is late) and pushes them in order.
    fn fill_gaps(&self, core: &Steward, hub: &Hub) -> Result<()> {
        let overdue = self
            .order
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .overdue(GAP_WAIT, Instant::now());
        for (conv, last, upto) in overdue {
            let ids = core.db.read(|c| {
                c.query(
                    "SELECT seq FROM chat_messages WHERE conversation_id = $1 AND seq > $2 \
                     AND seq <= $3 ORDER BY seq",
                    params![conv.as_str(), last, upto],
                )?
                .iter()
                .map(|r| r.i64(0))
                .collect::<StoreResult<Vec<i64>>>()
            })?;
            let entries: Vec<Entry> = ids
                .iter()
                .map(|id| Entry::Message {
                    c: conv.clone(),
                    id: *id,
                    p: 0,
                    s: None,
                    r: None,
                    f: true,
                    b: None,
                    at: None,
                })
                .collect();
            let refs: Vec<&Entry> = entries.iter().collect();
            let mut fetched = fetch(core, hub, &refs)?;
            let filled: Vec<(i64, Vec<Push>)> = entries
                .iter()
                .zip(&ids)
                .map(|(e, id)| (*id, fetched.pushes(e)))
                .collect();
            metrics::counter!("steward_chat_relay_gaps_total").increment(1);
            let ready = self
                .order
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .fill(&conv, upto, filled, Instant::now());
            for p in ready {
                hub.push(&p.subject, &p.frame, p.except);
            }
        }
        Ok(())
    }
}

/// A session token's hash as a notice carries it (base64url).
pub(crate) fn encode_session(hash: &[u8; 32]) -> String {
    Base64UrlUnpadded::encode_string(hash)
}

fn session_hash(text: &str) -> Option<[u8; 32]> {
    Base64UrlUnpadded::decode_vec(text).ok()?.try_into().ok()
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
    // Messages someone here is connected for: known from the notice when it
    // names the recipients; otherwise their receipts say (`unknown`).
    let mut wanted: HashSet<i64> = HashSet::new();
    let mut unknown: Vec<i64> = Vec::new();
    let mut with_files = false;
    // Messages whose sealed body came with the notice: (id, conversation,
    // sender, sealed, sent_at), opened below without reading the database.
    let mut inline: Vec<(i64, &str, &str, Vec<u8>, i64)> = Vec::new();
    for e in entries {
        if let Entry::Message {
            c,
            id,
            s,
            r,
            f,
            b,
            at,
            ..
        } = e
        {
            let sender_here = s.as_deref().is_none_or(|s| hub.is_online(s));
            match r {
                Some(list) => {
                    out.recipients.insert(*id, list.clone());
                    if sender_here || list.iter().any(|who| hub.is_online(who)) {
                        let sealed = b
                            .as_deref()
                            .and_then(|b| Base64UrlUnpadded::decode_vec(b).ok());
                        match (s, sealed, at, f) {
                            (Some(sender), Some(sealed), Some(at), false) => {
                                inline.push((*id, c, sender, sealed, *at));
                            }
                            _ => {
                                wanted.insert(*id);
                                with_files |= *f;
                            }
                        }
                    }
                }
                None => {
                    unknown.push(*id);
                    with_files |= *f;
                }
            }
        }
    }
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
    let (rows, receipts, files) = if wanted.is_empty() && unknown.is_empty() && unlisted.is_empty()
    {
        (Vec::new(), Vec::new(), Vec::new())
    } else {
        read_messages(
            core,
            hub,
            &mut out,
            &mut wanted,
            &unknown,
            with_files,
            &unlisted,
        )?
    };
    for r in &receipts {
        if let Some(who) = r.opt_text(1)? {
            out.recipients.entry(r.i64(0)?).or_default().push(who);
        }
    }
    // Every key needed, in one read of the key store (kept for this wake-up
    // only: an erasure is never outlived by a cached key).
    let mut owners: Vec<String> = inline.iter().map(|m| m.2.to_owned()).collect();
    for r in &rows {
        owners.extend(r.opt_text(2)?);
    }
    for f in &files {
        owners.push(f.text(2)?);
    }
    if owners.is_empty() {
        return Ok(out);
    }
    owners.sort_unstable();
    owners.dedup();
    let mut keys: HashMap<String, Option<DataKey>> = owners
        .iter()
        .cloned()
        .zip(core.keys.subject_keys(&owners)?)
        .collect();
    let mut key_of = |s: &str| -> Result<Option<DataKey>> {
        if !keys.contains_key(s) {
            keys.insert(s.to_owned(), core.keys.subject_key(s)?);
        }
        Ok(keys.get(s).cloned().flatten())
    };
    for (id, conversation, sender, sealed, sent_at) in inline {
        let body = match key_of(sender)? {
            Some(k) => Some(fields::open(&k, "chat_messages.body", sender, &sealed)?),
            None => None,
        };
        let message = stored_message(
            &out,
            id,
            conversation.to_owned(),
            Some(sender.to_owned()),
            body,
            sent_at,
            Vec::new(),
        );
        out.messages.insert(id, message);
    }
    let mut by_file = attachments::by_message(&files, &mut key_of)?;
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
        let message = stored_message(
            &out,
            id,
            r.text(1)?,
            sender,
            body,
            r.i64(4)?,
            by_file.remove(&id).unwrap_or_default(),
        );
        out.messages.insert(id, message);
    }
    Ok(out)
}

/// A message as stored, with every recipient's receipt `sent` (its state at
/// commit: later marks follow as status events, in order).
fn stored_message(
    out: &Fetched,
    id: i64,
    conversation_id: String,
    sender: Option<String>,
    body: Option<String>,
    sent_at: i64,
    attachments: Vec<attachments::Attachment>,
) -> Message {
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
    Message {
        id,
        conversation_id,
        sender_subject_id: sender,
        body,
        sent_at,
        state: None,
        receipts,
        attachments,
    }
}

/// Reads the messages (and receipts, files, moved receipts) that other
/// processes' entries name and the notices did not carry; one read snapshot.
type Read = (Vec<Row>, Vec<Row>, Vec<Row>);

fn read_messages(
    core: &Steward,
    hub: &Hub,
    out: &mut Fetched,
    wanted: &mut HashSet<i64>,
    unknown: &[i64],
    with_files: bool,
    unlisted: &[(&str, &str, ReceiptState, i64, i64)],
) -> Result<Read> {
    Ok(core.db.read(|c| {
        let receipts = by_ids(
            c,
            "SELECT message_seq, recipient_subject_id FROM chat_receipts WHERE message_seq IN",
            " ORDER BY message_seq, id",
            unknown,
        )?;
        for r in &receipts {
            if let Some(who) = r.opt_text(1)?
                && hub.is_online(&who)
            {
                wanted.insert(r.i64(0)?);
            }
        }
        let mut ids: Vec<i64> = wanted
            .iter()
            .copied()
            .chain(unknown.iter().copied())
            .collect();
        ids.sort_unstable();
        ids.dedup();
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
        let files = if with_files {
            attachments::of_messages(c, &seqs)?
        } else {
            Vec::new()
        };
        for (conv, who, st, at, up_to) in unlisted {
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
    })?)
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
                p: 999_999 + i,
                s: Some("0190c3f2-0000-7000-8000-000000000002".into()),
                r: Some(vec!["0190c3f2-0000-7000-8000-000000000003".into()]),
                f: i % 2 == 0,
                b: (i % 2 == 1).then(|| "AAAA".repeat(30)),
                at: Some(1_700_000_000),
            })
            .collect();
        let out = payloads("abc", entries.clone());
        assert!(out.len() > 1, "{}", out.len());
        let mut back = Vec::new();
        for p in &out {
            assert!(p.len() <= MAX_PAYLOAD, "{}", p.len());
            // The listener recognises its own notices by this prefix.
            assert!(p.starts_with(r#"{"o":"abc""#), "{p}");
            let n: Notice = serde_json::from_str(p).unwrap();
            assert_eq!(n.o, "abc");
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
        let out = payloads("abc", vec![e]);
        assert_eq!(out.len(), 1);
        let n: Notice = serde_json::from_str(&out[0]).unwrap();
        assert!(matches!(
            &n.e[0],
            Entry::Status {
                by: None,
                up_to: 4_999,
                ..
            }
        ));
    }

    #[test]
    fn session_hashes_round_trip_through_base64url() {
        let h = [0xab; 32];
        assert_eq!(session_hash(&encode_session(&h)), Some(h));
        assert_eq!(session_hash("zz"), None);
        assert_eq!(session_hash(&encode_session(&h)[..20]), None);
    }
}
