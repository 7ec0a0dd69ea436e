//! Chat: one-to-one and group conversations among the users of one tenant,
//! with per-recipient message status (sent → delivered → read), real-time
//! delivery and history.
//!
//! ```text
//!  WebSocket frame / REST send              writer lane (writer.rs)              hub (hub.rs)
//!  validate, seal with the sender's   →    takes every queued op (≤ BATCH_MAX)   subject → open
//!  key (held by the connection),           into ONE transaction: membership,     connections;
//!  queue of the conversation's lane        ids from the lane's counter block,    bounded outbox
//!  (bounded: WRITER_QUEUE)                 rows (copy_in), receipts, marks   →   per connection
//!                                          commit; then ack each op and push
//! ```
//!
//! * **Group commit.** Concurrent sends share one transaction, so the cost of a
//!   commit is paid once per batch, not per message: the writer never waits to
//!   fill a batch, it takes what queued up while the previous one committed.
//!   A send is acknowledged (`sent`) only after its batch committed, then pushed
//!   to the other members' open connections. Delivered and read marks go the same
//!   way, and their status events go to the senders' connections.
//! * **Checks.** Any account may chat, as its own subject, inside its own tenant.
//!   The policy must declare `chat` for `provision` (and consent, if a custom
//!   policy asks for it, is checked through `processing::permit`); conversations
//!   are visible to their members only (another tenant's or someone else's
//!   conversation answers 404). A member's own use of their chat writes no audit
//!   entry (it is not an access by someone else); conversation and membership
//!   changes do. The employer (the tenant's admin) may read its tenant's
//!   conversations when the policy declares the `employer` recipient for `chat`:
//!   every such read writes one `disclose` entry per person whose chat data it
//!   shows (`history.rs`).
//! * **Encryption.** A message body is sealed with its sender's data key
//!   (`chat_messages.body|<sender>`), a group title with its creator's, a
//!   connection's IP address with the connecting user's. Nothing else holds
//!   text. Erasing a sender clears their bodies (and their key is destroyed);
//!   the rows stay as gaps in the others' history (see `registry.rs`).
//! * **Several processes.** On PostgreSQL, pushes go through the broker
//!   (`relay.rs`): every server process pushes every committed message and
//!   status event to its own open connections, in commit order, and ids
//!   within a conversation increase in commit order (`writer.rs`, `Ids`). On
//!   SQLite one process serves the data directory and pushes directly.

pub mod attachments;
pub mod conversations;
pub mod history;
pub mod hub;
pub mod relay;
pub mod sequence;
pub mod writer;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};
use steward_crypto::DataKey;
use steward_policy::ConsentRule;
use tokio::sync::{mpsc, oneshot};
use utoipa::ToSchema;

use crate::access::Actor;
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};

pub use attachments::Attachment;
pub use conversations::{ConversationKind, NewConversation};
pub use hub::Hub;

/// The policy category of everything here.
pub const CATEGORY: &str = "chat";
/// What a member's own chatting is for.
pub const PURPOSE: &str = "provision";
/// The recipient an employer's read is disclosed to.
pub const EMPLOYER: &str = "employer";

/// Members of a group, the creator included.
pub const MAX_GROUP_MEMBERS: usize = 256;
/// Characters of a group title.
pub const MAX_TITLE_CHARS: usize = 200;
/// Characters of a client's own id for a frame (echoed in the answer).
pub use steward_wire::MAX_CLIENT_ID_CHARS;
/// Page size of history and conversation lists: default and bounds.
pub const DEFAULT_LIMIT: i64 = 50;
pub const MAX_LIMIT: i64 = 200;
/// Operations waiting for a writer lane; a sender waits when it is full.
pub const WRITER_QUEUE: usize = 16_384;
/// Writer lanes on PostgreSQL (SQLite has one).
pub const PG_LANES: usize = 8;
/// Operations per writer transaction, at most.
pub const BATCH_MAX: usize = 2_000;
/// Frames waiting to be written to one connection. A client that falls this
/// far behind is disconnected (it reconnects and reads the history), so one
/// slow reader cannot hold memory or the writer.
pub const OUTBOX: usize = 4_096;

/// A message's state for one recipient. States only move forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReceiptState {
    Sent,
    Delivered,
    Read,
}

impl ReceiptState {
    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptState::Sent => "sent",
            ReceiptState::Delivered => "delivered",
            ReceiptState::Read => "read",
        }
    }

    pub(crate) fn parse(s: &str) -> Result<ReceiptState> {
        match s {
            "sent" => Ok(ReceiptState::Sent),
            "delivered" => Ok(ReceiptState::Delivered),
            "read" => Ok(ReceiptState::Read),
            other => Err(Error::Internal(format!("unknown receipt state {other}"))),
        }
    }
}

/// What a recipient marks: their messages up to an id were delivered, or read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mark {
    Delivered,
    Read,
}

impl Mark {
    pub fn state(self) -> ReceiptState {
        match self {
            Mark::Delivered => ReceiptState::Delivered,
            Mark::Read => ReceiptState::Read,
        }
    }
}

/// One recipient's status of a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Receipt {
    /// The recipient; null once they were erased.
    pub subject_id: Option<String>,
    pub state: ReceiptState,
    pub sent_at: i64,
    pub delivered_at: Option<i64>,
    pub read_at: Option<i64>,
}

/// A chat message as a member (or the employer) sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Message {
    /// Ascending, within a conversation, in the order its messages were stored.
    pub id: i64,
    pub conversation_id: String,
    /// Null once the sender was erased.
    pub sender_subject_id: Option<String>,
    /// Null once the sender was erased.
    pub body: Option<String>,
    pub sent_at: i64,
    /// The reader's own status of a message someone else sent them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<ReceiptState>,
    /// Every recipient's status: on the reader's own messages, and on every
    /// message in the employer's view.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub receipts: Vec<Receipt>,
    /// Files sent with the message.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
}

/// One page of a conversation's history, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A frame the server sends over a chat WebSocket.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame {
    /// A message for one of your conversations (sent by someone else, or by
    /// you from another connection).
    Message { message: Message },
    /// Your message was stored (its status is `sent` for every recipient).
    Sent {
        client_id: Option<String>,
        message: Message,
    },
    /// Your delivered or read mark was stored.
    Marked {
        client_id: Option<String>,
        conversation_id: String,
        state: Mark,
        up_to: i64,
        /// Receipts that moved forward.
        changed: u64,
    },
    /// Recipients' status of messages moved forward (to the senders, and to the
    /// marking user's other connections).
    Status {
        conversation_id: String,
        subject_id: String,
        state: ReceiptState,
        at: i64,
        message_ids: Vec<i64>,
    },
    /// A frame of yours was refused; the connection stays open.
    Error {
        client_id: Option<String>,
        error: FrameError,
    },
}

/// Why a frame was refused: the API's error shape.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FrameError {
    pub code: String,
    pub message: String,
    pub field: Option<String>,
}

impl FrameError {
    pub fn from_error(e: &Error) -> FrameError {
        let message =
            if e.http_status() >= 500 && !matches!(e, Error::Busy(_) | Error::StorageFull(_)) {
                tracing::error!(error = %e, "chat operation failed");
                "internal error; see the server log".to_owned()
            } else {
                e.to_string()
            };
        FrameError {
            code: e.code().to_owned(),
            message,
            field: e.field().map(str::to_owned),
        }
    }
}

impl ServerFrame {
    /// The frame as the JSON text sent over the socket.
    pub fn to_text(&self) -> Arc<str> {
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"type":"error","client_id":null,"error":{"code":"internal","message":"internal error","field":null}}"#.to_owned())
            .into()
    }

    pub fn error(client_id: Option<String>, e: &Error) -> ServerFrame {
        ServerFrame::Error {
            client_id,
            error: FrameError::from_error(e),
        }
    }
}

/// A user about to send: their subject, tenant and data key (loaded once per
/// connection). Holds the key in memory, zeroed on drop.
pub struct Author {
    pub actor: Actor,
    pub subject_id: String,
    pub tenant_id: String,
    key: DataKey,
}

impl Author {
    fn seal(&self, body: &str) -> Result<Vec<u8>> {
        fields::seal(&self.key, "chat_messages.body", &self.subject_id, body)
    }
}

/// The chat service: the realtime hub and the writer lanes' queues. One per
/// server.
pub struct Chat {
    core: Arc<Steward>,
    hub: Arc<Hub>,
    lanes: Vec<mpsc::Sender<writer::Op>>,
    relay: Arc<relay::Relay>,
    /// Set when the service is dropped: the relay's listener stops.
    stop: Arc<AtomicBool>,
}

impl Drop for Chat {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

impl Chat {
    /// Starts the writer lanes. Should a thread not start, the sends of its
    /// conversations fail with an internal error (logged) instead of the server
    /// failing.
    pub fn start(core: Arc<Steward>) -> Arc<Chat> {
        let hub = Arc::new(Hub::default());
        let stop = Arc::new(AtomicBool::new(false));
        // Listening before any lane writes: no batch's notification is missed.
        let relay = Arc::new(relay::Relay::start(&core, &hub, stop.clone()));
        let n = match core.db.backend() {
            steward_store::Backend::Postgres => PG_LANES,
            steward_store::Backend::Sqlite => 1,
        };
        let mut lanes = Vec::with_capacity(n);
        for i in 0..n {
            let (queue, rx) = mpsc::channel(WRITER_QUEUE / n);
            let (c, h, r) = (core.clone(), hub.clone(), relay.clone());
            if let Err(e) = std::thread::Builder::new()
                .name(format!("chat-writer-{i}"))
                .spawn(move || writer::run(&c, &h, &r, rx))
            {
                tracing::error!(error = %e, "could not start a chat writer lane");
            }
            lanes.push(queue);
        }
        Arc::new(Chat {
            core,
            hub,
            lanes,
            relay,
            stop,
        })
    }

    /// Closes every open connection of a subject, on every server process
    /// (their account was disabled, or they were erased). Blocking: on
    /// PostgreSQL one statement tells the other processes.
    pub fn close_subject(&self, subject: &str) {
        self.hub.close_subject(subject);
        self.relay.close(relay::Entry::CloseSubject {
            who: subject.to_owned(),
        });
    }

    /// Closes the connections opened with a session, on every server process
    /// (at logout). Blocking, as [`Chat::close_subject`].
    pub fn close_session(&self, session: &[u8; 32]) {
        self.hub.close_session(session);
        self.relay.close(relay::Entry::CloseSession {
            h: relay::encode_session(session),
        });
    }

    /// The lane of a conversation: always the same one.
    fn lane(&self, conversation_id: &str) -> Result<&mpsc::Sender<writer::Op>> {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in conversation_id.bytes() {
            h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
        let n = self.lanes.len().max(1) as u64;
        self.lanes.get((h % n) as usize).ok_or_else(writer_gone)
    }

    pub fn core(&self) -> &Arc<Steward> {
        &self.core
    }

    pub fn hub(&self) -> &Arc<Hub> {
        &self.hub
    }

    /// The caller as a chat author: checks their own use of chat and loads their
    /// key (blocking: reads the key store).
    pub fn author(&self, actor: &Actor) -> Result<Author> {
        let (subject_id, tenant_id) = own_use(&self.core, actor)?;
        let key = self.core.subject_key(&subject_id)?;
        Ok(Author {
            actor: actor.clone(),
            subject_id,
            tenant_id,
            key,
        })
    }

    /// Validates and seals a message and queues it for the writer. The answer
    /// (stored, or refused) goes to `reply`.
    pub(crate) async fn queue_send(
        &self,
        author: &Author,
        conversation_id: &str,
        body: &str,
        attachments: &[String],
        client_id: Option<String>,
        reply: writer::Reply,
    ) -> Result<()> {
        let op = self.send_op(author, conversation_id, body, attachments, client_id, reply)?;
        self.lane(&op.conversation_id)?
            .send(writer::Op::Send(op))
            .await
            .map_err(|_| writer_gone())
    }

    fn send_op(
        &self,
        author: &Author,
        conversation_id: &str,
        body: &str,
        attachments: &[String],
        client_id: Option<String>,
        reply: writer::Reply,
    ) -> Result<writer::SendOp> {
        let conversation_id = parse_id("conversation_id", conversation_id)?;
        if attachments.len() > attachments::MAX_PER_MESSAGE {
            return Err(Error::invalid(
                "attachments",
                format!(
                    "a message carries at most {} files",
                    attachments::MAX_PER_MESSAGE
                ),
            ));
        }
        let mut files = Vec::with_capacity(attachments.len());
        for (i, a) in attachments.iter().enumerate() {
            let id = parse_id(&format!("attachments[{i}]"), a)?;
            if files.contains(&id) {
                return Err(Error::invalid(
                    &format!("attachments[{i}]"),
                    "the same file is named twice",
                ));
            }
            files.push(id);
        }
        check_body(&self.core, body, files.len())?;
        let client_id = check_client_id(client_id)?;
        Ok(writer::SendOp {
            tenant_id: author.tenant_id.clone(),
            conversation_id,
            sender: author.subject_id.clone(),
            body_enc: author.seal(body)?,
            body: body.to_owned(),
            key: (!files.is_empty()).then(|| author.key.clone()),
            attachments: files,
            client_id,
            reply,
        })
    }

    /// Queues a delivered or read mark for the writer.
    pub(crate) async fn queue_mark(
        &self,
        author: &Author,
        conversation_id: &str,
        mark: Mark,
        up_to: i64,
        client_id: Option<String>,
        reply: writer::Reply,
    ) -> Result<()> {
        let op = mark_op(author, conversation_id, mark, up_to, client_id, reply)?;
        self.lane(&op.conversation_id)?
            .send(writer::Op::Mark(op))
            .await
            .map_err(|_| writer_gone())
    }

    /// Sends a message (with the caller's pending uploads named in
    /// `attachments`) and waits until it is stored; returns it with its
    /// receipts (all `sent`). Pushes it to the other members' connections.
    pub async fn send(
        &self,
        author: &Author,
        conversation_id: &str,
        body: &str,
        attachments: &[String],
        client_id: Option<String>,
    ) -> Result<Message> {
        let (tx, rx) = oneshot::channel();
        self.queue_send(
            author,
            conversation_id,
            body,
            attachments,
            client_id,
            writer::Reply::Once(tx),
        )
        .await?;
        match rx.await.map_err(|_| writer_gone())?? {
            writer::Done::Sent(m) => Ok(m),
            writer::Done::Marked(_) => Err(Error::Internal(
                "the writer answered a send with a mark".into(),
            )),
        }
    }

    /// Marks the caller's messages of a conversation, up to `up_to`, delivered
    /// or read; returns how many receipts moved forward.
    pub async fn mark(
        &self,
        author: &Author,
        conversation_id: &str,
        mark: Mark,
        up_to: i64,
    ) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        self.queue_mark(
            author,
            conversation_id,
            mark,
            up_to,
            None,
            writer::Reply::Once(tx),
        )
        .await?;
        match rx.await.map_err(|_| writer_gone())?? {
            writer::Done::Marked(n) => Ok(n),
            writer::Done::Sent(_) => Err(Error::Internal(
                "the writer answered a mark with a send".into(),
            )),
        }
    }

    /// [`send`](Self::send) for callers without a runtime (the CLI, tests).
    pub fn send_blocking(
        &self,
        author: &Author,
        conversation_id: &str,
        body: &str,
        attachments: &[String],
    ) -> Result<Message> {
        let (tx, rx) = oneshot::channel();
        let op = self.send_op(
            author,
            conversation_id,
            body,
            attachments,
            None,
            writer::Reply::Once(tx),
        )?;
        self.lane(&op.conversation_id)?
            .blocking_send(writer::Op::Send(op))
            .map_err(|_| writer_gone())?;
        match rx.blocking_recv().map_err(|_| writer_gone())?? {
            writer::Done::Sent(m) => Ok(m),
            writer::Done::Marked(_) => Err(Error::Internal(
                "the writer answered a send with a mark".into(),
            )),
        }
    }

    /// [`mark`](Self::mark) for callers without a runtime.
    pub fn mark_blocking(
        &self,
        author: &Author,
        conversation_id: &str,
        mark: Mark,
        up_to: i64,
    ) -> Result<u64> {
        let (tx, rx) = oneshot::channel();
        let op = mark_op(
            author,
            conversation_id,
            mark,
            up_to,
            None,
            writer::Reply::Once(tx),
        )?;
        self.lane(&op.conversation_id)?
            .blocking_send(writer::Op::Mark(op))
            .map_err(|_| writer_gone())?;
        match rx.blocking_recv().map_err(|_| writer_gone())?? {
            writer::Done::Marked(n) => Ok(n),
            writer::Done::Sent(_) => Err(Error::Internal(
                "the writer answered a mark with a send".into(),
            )),
        }
    }
}

/// Records a real-time connection: who, from which IP address (sealed with
/// their key), with which login session. Returns its id. Blocking.
pub fn connection_opened(
    core: &Steward,
    author: &Author,
    session_token: &str,
    ip: Option<&str>,
) -> Result<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let ip_enc = fields::seal_opt(&author.key, "chat_connections.ip", &author.subject_id, ip)?;
    core.write(&author.actor, |tx| {
        tx.conn.execute(
            "INSERT INTO chat_connections (id, tenant_id, subject_id, account_id, session_hash, \
             ip_enc, connected_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
            steward_store::params![
                id.as_str(),
                author.tenant_id.as_str(),
                author.subject_id.as_str(),
                author.actor.account_id.as_deref(),
                steward_crypto::token::hash_token(session_token),
                ip_enc.clone(),
                tx.at
            ],
        )?;
        crate::subjects::touch(tx, &author.subject_id)
    })?;
    Ok(id)
}

/// Records when a connection ended. Blocking.
pub fn connection_closed(core: &Steward, author: &Author, id: &str) -> Result<()> {
    core.write(&author.actor, |tx| {
        tx.conn.execute(
            "UPDATE chat_connections SET closed_at = $1 WHERE id = $2 AND closed_at IS NULL",
            steward_store::params![tx.at, id],
        )?;
        Ok(())
    })?;
    Ok(())
}

fn mark_op(
    author: &Author,
    conversation_id: &str,
    mark: Mark,
    up_to: i64,
    client_id: Option<String>,
    reply: writer::Reply,
) -> Result<writer::MarkOp> {
    let conversation_id = parse_id("conversation_id", conversation_id)?;
    if up_to < 1 {
        return Err(Error::invalid(
            "up_to",
            "up_to is the id of a message (a positive number)",
        ));
    }
    Ok(writer::MarkOp {
        tenant_id: author.tenant_id.clone(),
        conversation_id,
        subject: author.subject_id.clone(),
        mark,
        up_to,
        client_id: check_client_id(client_id)?,
        reply,
    })
}

fn writer_gone() -> Error {
    Error::Internal("the chat writer is not running".into())
}

/// The checks of a user's own use of chat: an account (with its subject), the
/// policy declaring chat for provision, and, where a policy asks for consent,
/// the consent ledger (through `processing::permit`). Returns the subject and
/// tenant.
pub(crate) fn own_use(core: &Steward, actor: &Actor) -> Result<(String, String)> {
    let (Some(subject), Some(tenant)) = (actor.subject_id.clone(), actor.tenant_id.clone()) else {
        return Err(Error::Forbidden(
            "chat is for app users: sign in with an account".into(),
        ));
    };
    let rule = core
        .policy
        .check_use(CATEGORY, PURPOSE)
        .map_err(|e| Error::invalid("category", e.to_string()))?;
    if rule.consent != ConsentRule::NotNeeded {
        core.write(actor, |tx| {
            processing::permit(
                tx,
                &Use {
                    subject_id: &subject,
                    category: CATEGORY,
                    purpose: PURPOSE,
                    recipient: None,
                },
            )
        })?;
    }
    Ok((subject, tenant))
}

/// A conversation or subject id as given by a client: a UUID, in its canonical
/// lower-case form.
pub fn parse_id(field: &str, value: &str) -> Result<String> {
    uuid::Uuid::parse_str(value.trim())
        .map(|u| u.hyphenated().to_string())
        .map_err(|_| {
            Error::invalid(
                field,
                format!(
                    "{field} is not an id of the form 0190c3f2-…: {}",
                    shown(value)
                ),
            )
        })
}

/// A client's value, cut short and with control characters removed, for an
/// error message (never logged).
fn shown(value: &str) -> String {
    let cut: String = value.chars().filter(|c| !c.is_control()).take(40).collect();
    if value.chars().count() > 40 {
        format!("{cut:?}…")
    } else {
        format!("{cut:?}")
    }
}

/// A message body: not longer than the configured maximum, and not empty
/// unless the message carries files.
pub fn check_body(core: &Steward, body: &str, files: usize) -> Result<()> {
    if body.trim().is_empty() && files == 0 {
        return Err(Error::invalid("body", "the message body is empty"));
    }
    let max = core.settings.chat_max_message_bytes;
    if body.len() > max {
        return Err(Error::invalid(
            "body",
            format!(
                "the message body has {} bytes; at most {max} are accepted",
                body.len()
            ),
        ));
    }
    Ok(())
}

fn check_client_id(id: Option<String>) -> Result<Option<String>> {
    match id {
        Some(id) if !steward_wire::frame::usable_client_id(&id) => Err(Error::invalid(
            "client_id",
            format!("client_id has at most {MAX_CLIENT_ID_CHARS} printable characters"),
        )),
        other => Ok(other),
    }
}

/// A page size: default [`DEFAULT_LIMIT`], 1 to [`MAX_LIMIT`].
pub fn check_limit(limit: Option<i64>) -> Result<i64> {
    match limit {
        None => Ok(DEFAULT_LIMIT),
        Some(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
        Some(n) => Err(Error::invalid(
            "limit",
            format!("limit must be 1 to {MAX_LIMIT}, not {n}"),
        )),
    }
}

/// Page cursors are opaque to clients: base64url of `<kind>:<position>`.
/// The pattern of a message-page cursor (`m` or `a` and a message id), as the
/// OpenAPI document states it.
pub const MESSAGE_CURSOR_PATTERN: &str = "^(m[1-9][0-9]{0,17}|a(0|[1-9][0-9]{0,17}))$";
/// The pattern of a conversation-list cursor (`c` and a conversation id).
pub const CONVERSATION_CURSOR_PATTERN: &str =
    "^c[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A page cursor: the kind of position (`c` conversation list, `m` older
/// messages, `a` newer messages) and the position. Clients pass `next_cursor`
/// back as it is; its form is declared (the patterns above) so that the
/// document is exact, and any cursor of that form is a valid position.
pub(crate) fn encode_cursor(kind: char, position: &str) -> String {
    format!("{kind}{position}")
}

pub(crate) fn decode_cursor(kind: char, cursor: &str) -> Result<String> {
    let bad = || {
        Error::invalid(
            "cursor",
            "cursor is not one this server gave out: pass next_cursor from the previous page",
        )
    };
    let position = cursor.strip_prefix(kind).ok_or_else(bad)?;
    match kind {
        'c' if position.trim() == position => parse_id("cursor", position).map_err(|_| bad()),
        'c' => Err(bad()),
        _ => position
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0 && position.len() <= 18)
            .map(|n| n.to_string())
            // Canonical only: no sign, no leading zeros.
            .filter(|n| n == position)
            .ok_or_else(bad),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_strangers() {
        let c = encode_cursor('m', "42");
        assert_eq!(decode_cursor('m', &c).unwrap(), "42");
        let id = "0190c3f2-0000-7000-8000-000000000001";
        assert_eq!(decode_cursor('c', &encode_cursor('c', id)).unwrap(), id);
        let pattern = regex::Regex::new(MESSAGE_CURSOR_PATTERN).unwrap();
        for good in ["m1", "a0", "a7", "m999999999999999999"] {
            assert!(pattern.is_match(good), "{good}");
            let kind = good.chars().next().unwrap();
            assert_eq!(decode_cursor(kind, good).unwrap(), good[1..]);
        }
        let pattern = regex::Regex::new(CONVERSATION_CURSOR_PATTERN).unwrap();
        assert!(pattern.is_match(&encode_cursor('c', id)));
        assert!(decode_cursor('c', &format!("c{id} ")).is_err());
        for bad in [
            "",
            "!!!",
            &encode_cursor('c', "42"),
            &encode_cursor('m', ""),
            "bTo",
            "m-1",
            "m+1",
            "m01",
            "m1234567890123456789",
        ] {
            assert!(!pattern.is_match(bad), "{bad}");
            match decode_cursor('m', bad) {
                Err(Error::Invalid { field, .. }) => assert_eq!(field.as_deref(), Some("cursor")),
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_are_uuids_in_canonical_form() {
        assert_eq!(
            parse_id("conversation_id", " 0190C3F2-0000-7000-8000-000000000001 ").unwrap(),
            "0190c3f2-0000-7000-8000-000000000001"
        );
        match parse_id("conversation_id", "../etc/passwd") {
            Err(Error::Invalid { field, message }) => {
                assert_eq!(field.as_deref(), Some("conversation_id"));
                assert!(message.contains("passwd"), "{message}");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn states_only_order_forward() {
        assert!(ReceiptState::Sent < ReceiptState::Delivered);
        assert!(ReceiptState::Delivered < ReceiptState::Read);
        assert_eq!(ReceiptState::parse("read").unwrap(), ReceiptState::Read);
    }
}
