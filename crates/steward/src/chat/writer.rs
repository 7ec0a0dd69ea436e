//! The chat writer: threads ("lanes") that store sends and status marks with
//! group commit. A conversation always goes to the same lane, so its messages
//! are numbered and stored in the order they were sent; SQLite has one lane (it
//! has one writer connection anyway), PostgreSQL [`super::PG_LANES`], so that
//! one lane's commit (a log sync) overlaps the others' work.
//!
//! A lane waits for the first queued operation, then takes every other one
//! already queued (up to [`BATCH_MAX`]) and applies them all in one transaction:
//!
//! 1. the policy check of `chat` for `provision` (once), and consent per sender
//!    when a custom policy asks for it; on PostgreSQL, the rows of the
//!    conversations sent to locked, then their newest message ids read
//!    (several processes may write one conversation, see [`Ids`]);
//! 2. the members of every conversation named (one query for them all): an
//!    operation by someone who is not a member of a conversation of their
//!    tenant is refused with 404, alone;
//! 3. ids for the batch's messages and receipts (SQLite: from the lane's block
//!    of the `chat` counter, a new block of [`ID_BLOCK`] taken in the batch
//!    when it runs out; PostgreSQL: from the `chat_ids` sequence), the rows
//!    through `Conn::copy_in` (a prepared insert on SQLite, one multi-row
//!    INSERT or binary COPY on PostgreSQL), the files taken;
//! 4. each mark: one `UPDATE … RETURNING` that moves the receipts forward and
//!    names each one's sender (to notify);
//! 5. the retention clocks of the subjects who acted (one statement, subjects
//!    in id order so lanes never deadlock), except those this lane moved less
//!    than [`TOUCH_EVERY`] seconds ago.
//!
//! After the commit, the stored messages and status events are pushed through
//! the relay (`relay.rs`: this process's sockets, and an announcement to the
//! other processes) and each operation is answered (its connection's outbox,
//! or the caller waiting on it). A failed transaction (the database, not one
//! operation) refuses every operation of the batch with that error. Nothing is
//! acknowledged before it is committed, and nothing is pushed that was not.
//!
//! The writer writes no audit entry for a member's own messages and marks: a
//! user's own chatting is not an access to someone else's data. Bodies are
//! sealed before they reach the queue; the plain text is kept in memory only to
//! be pushed.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use base64ct::{Base64UrlUnpadded, Encoding};

use steward_crypto::DataKey;
use steward_policy::ConsentRule;
use steward_store::{Value, params, placeholders};
use tokio::sync::{mpsc, oneshot};

use super::attachments::{self, COLUMNS as ATTACHMENT_COLUMNS};
use super::hub::{Hub, Outbox};
use super::relay::{
    Entry, Event, INLINE_BODY_BYTES, INLINE_IDS, INLINE_RECIPIENTS, Relay, message_pushes,
    status_pushes,
};
use super::{BATCH_MAX, CATEGORY, Mark, Message, PURPOSE, Receipt, ReceiptState, ServerFrame};
use crate::access::Actor;
use crate::core::{Steward, Tx};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects;

/// How the writer appears in the audit log (it writes no entry of its own; a
/// consumed single-use consent would be recorded as `system:chat`).
pub const JOB: &str = "chat";

const MESSAGE_COLUMNS: [&str; 6] = [
    "seq",
    "conversation_id",
    "tenant_id",
    "sender_subject_id",
    "body_enc",
    "sent_at",
];

const RECEIPT_COLUMNS: [&str; 8] = [
    "id",
    "message_seq",
    "conversation_id",
    "recipient_subject_id",
    "state",
    "sent_at",
    "delivered_at",
    "read_at",
];

/// Something for the writer to do.
pub(crate) enum Op {
    Send(SendOp),
    Mark(MarkOp),
}

pub(crate) struct SendOp {
    pub tenant_id: String,
    pub conversation_id: String,
    pub sender: String,
    /// The plain text, for the push only: never stored, never logged.
    pub body: String,
    pub body_enc: Vec<u8>,
    /// Ids of the sender's pending uploads the message takes.
    pub attachments: Vec<String>,
    /// The sender's key, to show the files' names in the answer and the push
    /// (only when there are files).
    pub key: Option<DataKey>,
    pub client_id: Option<String>,
    pub reply: Reply,
}

pub(crate) struct MarkOp {
    pub tenant_id: String,
    pub conversation_id: String,
    pub subject: String,
    pub mark: Mark,
    pub up_to: i64,
    pub client_id: Option<String>,
    pub reply: Reply,
}

/// Where the answer to an operation goes.
pub(crate) enum Reply {
    /// A WebSocket connection: the answer is a frame in its outbox.
    Socket(Outbox),
    /// A caller waiting for the result (REST, CLI, tests).
    Once(oneshot::Sender<Result<Done>>),
}

pub(crate) enum Done {
    Sent(Message),
    Marked(u64),
}

impl Op {
    fn reply(&self) -> &Reply {
        match self {
            Op::Send(s) => &s.reply,
            Op::Mark(m) => &m.reply,
        }
    }

    fn conversation(&self) -> (&str, &str) {
        match self {
            Op::Send(s) => (&s.conversation_id, &s.tenant_id),
            Op::Mark(m) => (&m.conversation_id, &m.tenant_id),
        }
    }

    fn subject(&self) -> &str {
        match self {
            Op::Send(s) => &s.sender,
            Op::Mark(m) => &m.subject,
        }
    }
}

/// What an operation did, for its answer and the pushes.
enum Applied {
    Sent {
        message: Message,
        members: Arc<Vec<String>>,
    },
    Marked {
        changed: u64,
        at: i64,
        /// The moved receipts' message ids, per sender (to notify).
        by_sender: BTreeMap<String, Vec<i64>>,
    },
}

/// Ids a lane takes from the `chat` counter at a time (SQLite).
const ID_BLOCK: i64 = 100_000;

/// Where a lane's ids come from.
///
/// * SQLite (one process, one lane): a block of the `chat` counter reserved
///   in memory, `next..end`. Taking from the counter holds its row lock until
///   the batch commits, so the lane reserves blocks rarely.
/// * PostgreSQL (several lanes, maybe several processes): the `chat_ids`
///   sequence, asked for each batch's ids after the batch has locked the
///   conversations it writes to (`lock_conversations`). Two batches writing
///   to one conversation, from any lanes or processes, are serialised by that
///   lock, and the later one asks the sequence later: so ids within a
///   conversation increase in commit order, and a reader who saw message N
///   will never see a message below N arrive in that conversation.
#[derive(Debug, Clone, Copy, Default)]
struct Ids {
    next: i64,
    end: i64,
}

impl Ids {
    /// `n` ids in increasing order, taken inside `tx` (kept only if the batch
    /// commits: on SQLite the block is reserved again otherwise).
    fn take(&mut self, tx: &mut Tx<'_>, n: i64) -> Result<Vec<i64>> {
        if tx.conn.backend() == steward_store::Backend::Postgres {
            let rows = tx.conn.query(
                "SELECT nextval('chat_ids') FROM generate_series(1, $1::bigint)",
                params![n],
            )?;
            let mut ids = rows
                .iter()
                .map(|r| r.i64(0))
                .collect::<steward_store::StoreResult<Vec<i64>>>()?;
            // One session's nextval calls increase; sorting makes sure the
            // order asked for is the order used.
            ids.sort_unstable();
            return Ok(ids);
        }
        if self.end - self.next < n {
            let block = n.max(ID_BLOCK);
            let end = tx
                .conn
                .query_opt(
                    "UPDATE counters SET value = value + $1 WHERE name = 'chat' RETURNING value",
                    params![block],
                )?
                .ok_or_else(|| Error::Internal("the chat counter is missing".into()))?
                .i64(0)?;
            self.next = end - block + 1;
            self.end = end + 1;
        }
        let first = self.next;
        self.next += n;
        Ok((first..first + n).collect())
    }
}

/// PostgreSQL: locks the rows of the conversations a batch sends to, in id
/// order (so that batches never deadlock), until it commits, and then returns
/// each one's newest message id (the predecessor of the batch's first message
/// there; see `relay.rs`). See [`Ids`].
///
/// Two statements, not one: under READ COMMITTED a statement reads from the
/// snapshot it started with, so a `MAX(seq)` in the locking statement itself
/// would be read *before* waiting for another batch's lock and miss the
/// messages that batch committed meanwhile (the scale-out test's order check
/// fails that way).
fn lock_conversations(tx: &mut Tx<'_>, conversations: &[&str]) -> Result<HashMap<String, i64>> {
    let mut newest = HashMap::new();
    if tx.conn.backend() != steward_store::Backend::Postgres || conversations.is_empty() {
        return Ok(newest);
    }
    for chunk in conversations.chunks(IN_CHUNK) {
        let args: Vec<Value> = chunk.iter().map(|c| Value::from(*c)).collect();
        let list = placeholders(1, chunk.len());
        tx.conn.query(
            &format!(
                "SELECT id FROM chat_conversations WHERE id IN ({list}) ORDER BY id FOR UPDATE"
            ),
            &args,
        )?;
        let rows = tx.conn.query(
            &format!(
                "SELECT conversation_id, MAX(seq) FROM chat_messages \
                 WHERE conversation_id IN ({list}) GROUP BY conversation_id"
            ),
            &args,
        )?;
        for r in rows {
            newest.insert(r.text(0)?, r.i64(1)?);
        }
    }
    Ok(newest)
}

/// How far a subject's retention clock (`subjects.last_engagement_at`) may
/// lag behind their latest chat activity, in seconds. A lane moves the clock
/// of a subject it moved less than this long ago only once the time is up:
/// someone chatting all day costs one `UPDATE subjects` a minute, not one per
/// batch, and lanes seldom wait on each other's lock of the same subject row.
/// A minute out of a retention period of years.
pub const TOUCH_EVERY: i64 = 60;

/// The subjects whose retention clock a lane moved, and when (committed
/// batches only). Entries older than [`TOUCH_EVERY`] are dropped when the map
/// reaches `prune_at`, which then doubles what is left (at least 10,000), so
/// pruning costs a constant amount per entry however many people chat.
struct Touched {
    at: HashMap<String, i64>,
    prune_at: usize,
}

impl Default for Touched {
    fn default() -> Self {
        Touched {
            at: HashMap::new(),
            prune_at: TOUCHED_PRUNE,
        }
    }
}

/// The size of [`Touched`] at which it first drops old entries.
const TOUCHED_PRUNE: usize = 10_000;

impl Touched {
    /// Of these subjects (in id order), those the lane has not moved within
    /// [`TOUCH_EVERY`] seconds of `at`.
    fn due<'a>(&self, subjects: impl Iterator<Item = &'a str>, at: i64) -> Vec<&'a str> {
        subjects
            .filter(|s| self.at.get(*s).is_none_or(|t| at - t >= TOUCH_EVERY))
            .collect()
    }

    fn record(&mut self, subjects: Vec<String>, at: i64) {
        if self.at.len() >= self.prune_at {
            self.at.retain(|_, t| at - *t < TOUCH_EVERY);
            self.prune_at = (2 * self.at.len()).max(TOUCHED_PRUNE);
        }
        self.at.extend(subjects.into_iter().map(|s| (s, at)));
    }
}

/// What a committed batch did: each operation's result, and the subjects whose
/// retention clock it moved, at `at`.
struct Batch {
    results: Vec<Result<Applied>>,
    touched: Vec<String>,
    at: i64,
    /// What to push and announce once it has committed.
    events: Vec<Event>,
}

/// A writer lane's loop; returns when every sender of its queue is gone.
pub(crate) fn run(core: &Steward, hub: &Hub, relay: &Relay, mut queue: mpsc::Receiver<Op>) {
    let actor = Actor::system(JOB);
    let mut ids = Ids::default();
    let mut touched = Touched::default();
    while let Some(first) = queue.blocking_recv() {
        let mut ops = Vec::with_capacity(64);
        ops.push(first);
        while ops.len() < BATCH_MAX {
            match queue.try_recv() {
                Ok(op) => ops.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let mut reserved = ids;
        let done = core.write(&actor, |tx| apply(tx, &ops, &mut reserved, &touched, hub));
        let (results, events) = match done {
            Ok(batch) => {
                ids = reserved;
                touched.record(batch.touched, batch.at);
                (batch.results, batch.events)
            }
            Err(e) => {
                tracing::error!(error = %e, operations = ops.len(), "chat batch failed");
                (ops.iter().map(|_| Err(copy(&e))).collect(), Vec::new())
            }
        };
        let took = started.elapsed();
        metrics::histogram!("steward_chat_batch_operations").record(ops.len() as f64);
        metrics::histogram!("steward_chat_batch_seconds").record(took.as_secs_f64());
        tracing::debug!(
            operations = ops.len(),
            micros = took.as_micros() as u64,
            "chat batch"
        );
        relay.committed(hub, events);
        for (op, result) in ops.into_iter().zip(results) {
            answer(op, result);
        }
    }
}

/// The same error again (errors are not `Clone`: the store's carry strings).
fn copy(e: &Error) -> Error {
    match e {
        Error::Invalid { field, message } => Error::Invalid {
            field: field.clone(),
            message: message.clone(),
        },
        Error::Forbidden(m) => Error::Forbidden(m.clone()),
        Error::ConsentRequired { purpose } => Error::ConsentRequired {
            purpose: purpose.clone(),
        },
        Error::NotFound(m) => Error::NotFound(m.clone()),
        Error::Conflict(m) => Error::Conflict(m.clone()),
        Error::TooLarge(m) => Error::TooLarge(m.clone()),
        Error::UnsupportedType(m) => Error::UnsupportedType(m.clone()),
        Error::Busy(m) => Error::Busy(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}

/// Applies a batch inside one transaction. The outer error fails the batch;
/// an inner one refuses only its operation.
fn apply(
    tx: &mut Tx<'_>,
    ops: &[Op],
    ids: &mut Ids,
    touched: &Touched,
    hub: &Hub,
) -> Result<Batch> {
    if !tx.core.settings.chat_synchronous_commit
        && tx.conn.backend() == steward_store::Backend::Postgres
    {
        // The operator's choice (Settings::chat_synchronous_commit): this
        // transaction only; the statement is prepared once per connection.
        tx.conn.execute("SET LOCAL synchronous_commit = off", &[])?;
    }
    let rule = match tx.policy().check_use(CATEGORY, PURPOSE) {
        Ok(rule) => rule,
        Err(e) => {
            let e = Error::invalid("category", e.to_string());
            return Ok(Batch {
                results: ops.iter().map(|_| Err(copy(&e))).collect(),
                touched: Vec::new(),
                at: tx.at,
                events: Vec::new(),
            });
        }
    };
    // The members of every conversation the batch names (one query), with
    // the conversation's tenant.
    let named: BTreeSet<&str> = ops.iter().map(|op| op.conversation().0).collect();
    let sending: Vec<&str> = ops
        .iter()
        .filter(|op| matches!(op, Op::Send(_)))
        .map(|op| op.conversation().0)
        .collect::<BTreeSet<&str>>()
        .into_iter()
        .collect();
    // Several processes: each message names its predecessor (sequence.rs).
    let mut newest = lock_conversations(tx, &sending)?;
    let mut members: HashMap<String, (String, Arc<Vec<String>>)> = HashMap::new();
    let named: Vec<&str> = named.into_iter().collect();
    for chunk in named.chunks(IN_CHUNK) {
        let rows = tx.conn.query(
            &format!(
                "SELECT m.conversation_id, c.tenant_id, m.subject_id FROM chat_members m \
                 JOIN chat_conversations c ON c.id = m.conversation_id \
                 WHERE m.conversation_id IN ({}) ORDER BY m.conversation_id, m.subject_id",
                placeholders(1, chunk.len())
            ),
            &chunk.iter().map(|c| Value::from(*c)).collect::<Vec<_>>(),
        )?;
        let mut lists: HashMap<String, (String, Vec<String>)> = HashMap::new();
        for r in &rows {
            let entry = lists
                .entry(r.text(0)?)
                .or_insert_with(|| (String::new(), Vec::new()));
            entry.0 = r.text(1)?;
            entry.1.push(r.text(2)?);
        }
        members.extend(
            lists
                .into_iter()
                .map(|(conv, (tenant, list))| (conv, (tenant, Arc::new(list)))),
        );
    }
    // Consent, only where a custom policy asks for it.
    let mut refused: HashMap<&str, Error> = HashMap::new();
    if rule.consent != ConsentRule::NotNeeded {
        let subjects: HashSet<&str> = ops.iter().map(Op::subject).collect();
        for s in subjects {
            let use_ = Use {
                subject_id: s,
                category: CATEGORY,
                purpose: PURPOSE,
                recipient: None,
            };
            if let Err(e) = processing::permit(tx, &use_) {
                refused.insert(s, e);
            }
        }
    }
    let mut claimed: HashSet<&str> = HashSet::new();
    let mut checked: Vec<Result<Checked>> = Vec::with_capacity(ops.len());
    for op in ops {
        if let Some(e) = refused.get(op.subject()) {
            checked.push(Err(copy(e)));
            continue;
        }
        let (conversation, tenant) = op.conversation();
        let members = match members.get(conversation) {
            Some((t, list)) if t == tenant && list.iter().any(|m| m == op.subject()) => {
                list.clone()
            }
            _ => {
                checked.push(Err(Error::NotFound("conversation".into())));
                continue;
            }
        };
        let files = match op {
            Op::Send(s) if !s.attachments.is_empty() => {
                let files = pending_files(tx, s)?;
                let taken = s.attachments.iter().any(|a| claimed.contains(a.as_str()));
                if files.len() != s.attachments.len() || taken {
                    checked.push(Err(Error::NotFound(
                        "attachment (one of yours, uploaded to this conversation and not sent yet)"
                            .into(),
                    )));
                    continue;
                }
                claimed.extend(s.attachments.iter().map(String::as_str));
                files
            }
            _ => Vec::new(),
        };
        checked.push(Ok(Checked { members, files }));
    }

    let sent = store_sends(tx, ops, &checked, ids)?;
    let mut sent = sent.into_iter();
    // Each mark moves its receipts and learns their senders (one statement).
    let mut moved: Vec<Option<Vec<Moved>>> = Vec::with_capacity(ops.len());
    for (op, check) in ops.iter().zip(&checked) {
        moved.push(match (op, check) {
            (Op::Mark(m), Ok(_)) => Some(apply_mark(tx, m)?),
            _ => None,
        });
    }
    let mut results: Vec<Result<Applied>> = Vec::with_capacity(ops.len());
    for ((op, check), moved) in ops.iter().zip(checked).zip(moved) {
        let result = match (op, check) {
            (_, Err(e)) => Err(e),
            (Op::Send(_), Ok(Checked { members, .. })) => match sent.next() {
                Some(message) => Ok(Applied::Sent { message, members }),
                None => Err(Error::Internal("a stored message went missing".into())),
            },
            (Op::Mark(_), Ok(_)) => {
                let moved = moved.unwrap_or_default();
                let changed = moved.len() as u64;
                let mut by_sender: BTreeMap<String, Vec<i64>> = BTreeMap::new();
                for (seq, sender) in moved {
                    if let Some(sender) = sender {
                        by_sender.entry(sender).or_default().push(seq);
                    }
                }
                Ok(Applied::Marked {
                    changed,
                    at: tx.at,
                    by_sender,
                })
            }
        };
        results.push(result);
    }
    // The retention clocks of those who did something, in id order (so lanes
    // never deadlock), where this lane has not moved them within TOUCH_EVERY.
    let active: BTreeSet<&str> = ops
        .iter()
        .zip(&results)
        .filter(|(_, r)| r.is_ok())
        .map(|(op, _)| op.subject())
        .collect();
    let due = touched.due(active.into_iter(), tx.at);
    subjects::touch_all(tx, &due)?;
    let events = announced(ops, &results, hub, &mut newest);
    Ok(Batch {
        results,
        touched: due.into_iter().map(str::to_owned).collect(),
        at: tx.at,
        events,
    })
}

/// What a batch tells the other processes (ids) and pushes to sockets
/// (frames): the stored messages to the other members (and the sender's
/// other sockets), each mark's status events to the senders whose receipts
/// moved (and the marking user's other sockets).
fn announced(
    ops: &[Op],
    results: &[Result<Applied>],
    hub: &Hub,
    newest: &mut HashMap<String, i64>,
) -> Vec<Event> {
    let mut events = Vec::new();
    for (op, result) in ops.iter().zip(results) {
        let origin = match op.reply() {
            Reply::Socket(o) => Some(o.id),
            Reply::Once(_) => None,
        };
        match (op, result) {
            (Op::Send(s), Ok(Applied::Sent { message, members })) => {
                let recipients: Vec<String> = members
                    .iter()
                    .filter(|m| **m != s.sender)
                    .cloned()
                    .collect();
                let prev = newest
                    .insert(message.conversation_id.clone(), message.id)
                    .unwrap_or(0);
                let entry = Entry::Message {
                    c: message.conversation_id.clone(),
                    id: message.id,
                    p: prev,
                    s: Some(s.sender.clone()),
                    r: (recipients.len() <= INLINE_RECIPIENTS).then(|| recipients.clone()),
                    f: !message.attachments.is_empty(),
                    b: (message.attachments.is_empty() && s.body_enc.len() <= INLINE_BODY_BYTES)
                        .then(|| Base64UrlUnpadded::encode_string(&s.body_enc)),
                    at: Some(message.sent_at),
                };
                let to_sender = hub.has_others(&s.sender, origin);
                events.push(Event {
                    entry,
                    pushes: message_pushes(message, &recipients, origin, to_sender),
                });
            }
            (Op::Mark(m), Ok(Applied::Marked { at, by_sender, .. })) if !by_sender.is_empty() => {
                let ids: usize = by_sender.values().map(Vec::len).sum();
                let entry = Entry::Status {
                    c: m.conversation_id.clone(),
                    who: m.subject.clone(),
                    st: m.mark.state(),
                    at: *at,
                    up_to: m.up_to,
                    by: (ids <= INLINE_IDS).then(|| by_sender.clone()),
                };
                events.push(Event {
                    entry,
                    pushes: status_pushes(
                        &m.conversation_id,
                        &m.subject,
                        m.mark.state(),
                        *at,
                        by_sender,
                        origin,
                    ),
                });
            }
            _ => {}
        }
    }
    events
}

/// What the checks found for an operation they let through.
struct Checked {
    members: Arc<Vec<String>>,
    /// The pending uploads a send takes (rows in `attachments::COLUMNS` order).
    files: Vec<steward_store::Row>,
}

/// The sender's pending uploads to this conversation among those a send names.
fn pending_files(tx: &mut Tx<'_>, s: &SendOp) -> Result<Vec<steward_store::Row>> {
    let mut args = vec![
        Value::from(s.sender.as_str()),
        Value::from(s.conversation_id.as_str()),
    ];
    args.extend(s.attachments.iter().map(|a| Value::from(a.as_str())));
    Ok(tx.conn.query(
        &format!(
            "SELECT {ATTACHMENT_COLUMNS} FROM chat_attachments WHERE subject_id = $1 \
             AND conversation_id = $2 AND message_seq IS NULL AND id IN ({}) \
             ORDER BY created_at, id",
            placeholders(3, s.attachments.len())
        ),
        &args,
    )?)
}

/// Stores the batch's accepted sends; returns their messages in order.
fn store_sends(
    tx: &mut Tx<'_>,
    ops: &[Op],
    checked: &[Result<Checked>],
    reserved: &mut Ids,
) -> Result<Vec<Message>> {
    let accepted: Vec<(&SendOp, &Checked)> = ops
        .iter()
        .zip(checked)
        .filter_map(|(op, c)| match (op, c) {
            (Op::Send(s), Ok(c)) => Some((s, c)),
            _ => None,
        })
        .collect();
    if accepted.is_empty() {
        return Ok(Vec::new());
    }
    let ids: usize = accepted.iter().map(|(_, c)| c.members.len()).sum();
    let mut next = reserved.take(tx, ids as i64)?.into_iter();
    let mut id = move || {
        next.next()
            .ok_or_else(|| Error::Internal("the chat ids ran out in a batch".into()))
    };
    let at = tx.at;
    let mut messages = Vec::with_capacity(accepted.len());
    let mut message_rows = Vec::with_capacity(accepted.len());
    let mut receipt_rows = Vec::with_capacity(ids - accepted.len());
    let mut taken: Vec<(i64, &str)> = Vec::new();
    for (s, Checked { members, files }) in accepted {
        let seq = id()?;
        message_rows.push(vec![
            Value::Int(seq),
            Value::from(s.conversation_id.as_str()),
            Value::from(s.tenant_id.as_str()),
            Value::from(s.sender.as_str()),
            Value::Bytes(s.body_enc.clone()),
            Value::Int(at),
        ]);
        let mut receipts = Vec::with_capacity(members.len().saturating_sub(1));
        for m in members.iter().filter(|m| **m != s.sender) {
            receipt_rows.push(vec![
                Value::Int(id()?),
                Value::Int(seq),
                Value::from(s.conversation_id.as_str()),
                Value::from(m.as_str()),
                Value::from(ReceiptState::Sent.as_str()),
                Value::Int(at),
                Value::Null,
                Value::Null,
            ]);
            receipts.push(Receipt {
                subject_id: Some(m.clone()),
                state: ReceiptState::Sent,
                sent_at: at,
                delivered_at: None,
                read_at: None,
            });
        }
        let mut sent_files = Vec::with_capacity(files.len());
        for f in files {
            let mut a = attachments::from_row(f, s.key.as_ref())?;
            a.message_id = Some(seq);
            sent_files.push(a);
        }
        taken.extend(s.attachments.iter().map(|a| (seq, a.as_str())));
        messages.push(Message {
            id: seq,
            conversation_id: s.conversation_id.clone(),
            sender_subject_id: Some(s.sender.clone()),
            body: Some(s.body.clone()),
            sent_at: at,
            state: None,
            receipts,
            attachments: sent_files,
        });
    }
    tx.conn.copy_in(
        "chat_messages",
        &MESSAGE_COLUMNS,
        &mut message_rows.into_iter(),
    )?;
    if !receipt_rows.is_empty() {
        tx.conn.copy_in(
            "chat_receipts",
            &RECEIPT_COLUMNS,
            &mut receipt_rows.into_iter(),
        )?;
    }
    for (seq, id) in taken {
        tx.conn.execute(
            "UPDATE chat_attachments SET message_seq = $1 WHERE id = $2",
            params![seq, id],
        )?;
    }
    metrics::counter!("steward_chat_messages_total").increment(messages.len() as u64);
    Ok(messages)
}

/// A receipt a mark moved: its message's id and sender (`None` once erased).
type Moved = (i64, Option<String>);

/// Moves the marking user's receipts forward; returns the ids of the messages
/// whose receipts moved, each with its sender (none when the sender was
/// erased), in id order.
fn apply_mark(tx: &mut Tx<'_>, m: &MarkOp) -> Result<Vec<Moved>> {
    let (pending, set) = match m.mark {
        Mark::Delivered => ("state = 'sent'", "state = 'delivered', delivered_at = $4"),
        Mark::Read => (
            "state IN ('sent', 'delivered')",
            "state = 'read', read_at = $4, delivered_at = COALESCE(delivered_at, $4)",
        ),
    };
    // The sender comes back with each moved receipt (a subquery in RETURNING:
    // SQLite allows no joined table there), so no second query finds them.
    let rows = tx.conn.query(
        &format!(
            "UPDATE chat_receipts SET {set} WHERE recipient_subject_id = $1 \
             AND conversation_id = $2 AND message_seq <= $3 AND {pending} \
             RETURNING message_seq, (SELECT sender_subject_id FROM chat_messages \
             WHERE chat_messages.seq = chat_receipts.message_seq)"
        ),
        params![
            m.subject.as_str(),
            m.conversation_id.as_str(),
            m.up_to,
            tx.at
        ],
    )?;
    let mut moved = rows
        .iter()
        .map(|r| Ok((r.i64(0)?, r.opt_text(1)?)))
        .collect::<steward_store::StoreResult<Vec<_>>>()?;
    moved.sort_unstable();
    Ok(moved)
}

/// Values per `IN (…)` list (SQLite caps a statement's parameters).
const IN_CHUNK: usize = 500;

/// Answers one operation: `sent` or `marked` (or the error) to its socket, or
/// the result to the caller waiting for it.
fn answer(op: Op, result: Result<Applied>) {
    match (op, result) {
        (Op::Send(s), Ok(Applied::Sent { message, .. })) => match s.reply {
            Reply::Socket(o) => o.answer(
                &ServerFrame::Sent {
                    client_id: s.client_id,
                    message,
                }
                .to_text(),
            ),
            Reply::Once(tx) => {
                let _ = tx.send(Ok(Done::Sent(message)));
            }
        },
        (Op::Mark(m), Ok(Applied::Marked { changed, .. })) => match m.reply {
            Reply::Socket(o) => o.answer(
                &ServerFrame::Marked {
                    client_id: m.client_id,
                    conversation_id: m.conversation_id,
                    state: m.mark,
                    up_to: m.up_to,
                    changed,
                }
                .to_text(),
            ),
            Reply::Once(tx) => {
                let _ = tx.send(Ok(Done::Marked(changed)));
            }
        },
        (op, result) => {
            let e = match result {
                Err(e) => e,
                Ok(_) => Error::Internal("the writer mixed up an operation's result".into()),
            };
            let client_id = match &op {
                Op::Send(s) => s.client_id.clone(),
                Op::Mark(m) => m.client_id.clone(),
            };
            match op {
                Op::Send(SendOp { reply, .. }) | Op::Mark(MarkOp { reply, .. }) => match reply {
                    Reply::Socket(o) => o.answer(&ServerFrame::error(client_id, &e).to_text()),
                    Reply::Once(tx) => {
                        let _ = tx.send(Err(e));
                    }
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{TOUCH_EVERY, TOUCHED_PRUNE, Touched};

    #[test]
    fn a_lane_moves_each_clock_at_most_once_per_interval() {
        let mut touched = Touched::default();
        let at = 1_000_000;
        // Nobody moved yet: everyone is due, in the order given.
        assert_eq!(touched.due(["a", "b"].into_iter(), at), ["a", "b"]);
        touched.record(vec!["a".into(), "b".into()], at);
        // Within the interval only a newcomer is due; at its end everyone again.
        assert_eq!(
            touched.due(["a", "b", "c"].into_iter(), at + TOUCH_EVERY - 1),
            ["c"]
        );
        assert_eq!(
            touched.due(["a", "b"].into_iter(), at + TOUCH_EVERY),
            ["a", "b"]
        );
    }

    #[test]
    fn the_lane_forgets_clocks_it_would_move_anyway() {
        let mut touched = Touched::default();
        let names = |from: usize, n: usize| -> Vec<String> {
            (from..from + n).map(|i| format!("s{i}")).collect()
        };
        touched.record(names(0, TOUCHED_PRUNE), 0);
        assert_eq!(touched.at.len(), TOUCHED_PRUNE);
        // Past the bound, entries older than the interval go before new ones land.
        touched.record(vec!["fresh".into()], TOUCH_EVERY);
        assert_eq!(touched.at.len(), 1);
        assert_eq!(
            touched.due(["fresh"].into_iter(), TOUCH_EVERY + 1),
            Vec::<&str>::new()
        );
        assert_eq!(touched.due(["s1"].into_iter(), TOUCH_EVERY + 1), ["s1"]);
        // Many people active within one interval: nothing can be dropped, and
        // the next pruning waits until the map has doubled (no scan per batch).
        let busy = 3 * TOUCHED_PRUNE;
        touched.record(names(0, busy), TOUCH_EVERY + 1);
        touched.record(vec!["one".into()], TOUCH_EVERY + 2);
        assert_eq!(touched.prune_at, 2 * (busy + 1));
        assert_eq!(touched.at.len(), busy + 2);
    }
}
