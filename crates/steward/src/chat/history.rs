//! Reading chat: a member's history of their own conversation, and the
//! employer's view of its tenant's conversations.
//!
//! History pages go from the newest message back; the cursor is opaque to
//! clients (it holds the id to continue below). A member's own reading writes
//! no audit entry. The employer's reading (the tenant's admin: the statement's
//! "party that has provided you with access to the App ... has access to the
//! data located on the server") is a disclosure to the `employer` recipient:
//! each read passes `processing::permit` for every person whose chat data it
//! shows (members, senders, recipients on the page) and writes one `disclose`
//! entry for each, before anything is decrypted. A policy that does not declare
//! `employer` for `chat` refuses the read (403), and the refused attempt is
//! audited as `process.refused`.

use std::collections::{BTreeSet, HashMap};

use steward_crypto::DataKey;
use steward_policy::UseError;
use steward_store::{Conn, Row, StoreResult, Value, params, placeholders};

use super::attachments;
use super::conversations::{self, ConversationPage};
use super::{
    CATEGORY, EMPLOYER, Message, MessagePage, Receipt, ReceiptState, check_limit, decode_cursor,
    encode_cursor, own_use, parse_id,
};
use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};

/// Whose view a page is built for.
#[derive(Clone, Copy)]
enum View<'a> {
    /// A member: their own status of others' messages, and every recipient's
    /// status of their own.
    Member(&'a str),
    /// The employer: every recipient's status of every message.
    Employer,
}

/// Where a page of history starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The messages below `below` and above `above`, newest first (the first
    /// page: below `i64::MAX`, above 0).
    Before { below: i64, above: i64 },
    /// The messages above this id, oldest first: what a client that holds
    /// everything up to the id missed (ids in a conversation increase in
    /// commit order, so nothing committed after it is below it).
    After(i64),
}

impl Position {
    /// From the query: an opaque `cursor` of an earlier page and `after` (a
    /// message id); neither is the newest page. Both together are the cursor's
    /// page with nothing at or below `after`: going back through history, the
    /// pages stop at the id the client already holds.
    pub fn parse(cursor: Option<&str>, after: Option<&str>) -> Result<Position> {
        let bad_cursor = || {
            Error::invalid(
                "cursor",
                "cursor is not one this server gave out: pass next_cursor from the previous page",
            )
        };
        let after = after
            .map(|a| {
                a.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0 && !a.starts_with('+'))
                    .ok_or_else(|| {
                        Error::invalid(
                            "after",
                            "after is the id of the newest message you have (a whole number, 0 for all)",
                        )
                    })
            })
            .transpose()?;
        let Some(c) = cursor else {
            return Ok(match after {
                Some(a) => Position::After(a),
                None => Position::Before {
                    below: i64::MAX,
                    above: 0,
                },
            });
        };
        let (kind, id) = match decode_cursor('m', c) {
            Ok(p) => ('m', p),
            Err(_) => ('a', decode_cursor('a', c)?),
        };
        let id = id.parse::<i64>().map_err(|_| bad_cursor())?;
        match kind {
            'm' if id > 0 => Ok(Position::Before {
                below: id,
                above: after.unwrap_or(0),
            }),
            'a' => Ok(Position::After(id.max(after.unwrap_or(0)))),
            _ => Err(bad_cursor()),
        }
    }

    /// The cursor of the page after one whose last message is `id`.
    fn next(self, id: i64) -> String {
        match self {
            Position::Before { .. } => encode_cursor('m', &id.to_string()),
            Position::After(_) => encode_cursor('a', &id.to_string()),
        }
    }
}

/// One page of a conversation's history for one of its members: newest first
/// from `Before`, oldest first from `After`.
pub fn history(
    core: &Steward,
    actor: &Actor,
    conversation_id: &str,
    position: Position,
    limit: Option<i64>,
) -> Result<MessagePage> {
    let (me, tenant) = own_use(core, actor)?;
    let id = parse_id("conversation_id", conversation_id)?;
    let limit = check_limit(limit)?;
    let read = core.db.read(|c| {
        if conversations::member_row(c, &id, &me, &tenant)?.is_none() {
            return Ok(None);
        }
        let rows = messages(c, &id, position, limit)?;
        let receipts = receipts(c, &id, &rows, limit, View::Member(&me))?;
        let files = files(c, &rows, limit)?;
        Ok(Some((rows, receipts, files)))
    })?;
    let (rows, receipts, files) = read.ok_or_else(|| Error::NotFound("conversation".into()))?;
    build(
        core,
        &id,
        (rows, receipts, files),
        limit,
        View::Member(&me),
        position,
    )
}

/// Up to `limit + 1` messages from `position` (the extra one says whether
/// there is another page).
fn messages(
    c: &mut dyn Conn,
    conversation: &str,
    position: Position,
    limit: i64,
) -> StoreResult<Vec<Row>> {
    match position {
        Position::Before { below, above } => c.query(
            "SELECT seq, sender_subject_id, body_enc, sent_at FROM chat_messages \
             WHERE conversation_id = $1 AND seq < $2 AND seq > $3 ORDER BY seq DESC LIMIT $4",
            params![conversation, below, above, limit + 1],
        ),
        Position::After(id) => c.query(
            "SELECT seq, sender_subject_id, body_enc, sent_at FROM chat_messages \
             WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $3",
            params![conversation, id, limit + 1],
        ),
    }
}

/// The files of the page's messages (the first `limit` of `rows`).
fn files(c: &mut dyn Conn, rows: &[Row], limit: i64) -> StoreResult<Vec<Row>> {
    let seqs = rows
        .iter()
        .take(limit as usize)
        .map(|r| r.i64(0))
        .collect::<StoreResult<Vec<i64>>>()?;
    attachments::of_messages(c, &seqs)
}

/// The receipts a view shows for the page's messages (the first `limit` of `rows`).
fn receipts(
    c: &mut dyn Conn,
    conversation: &str,
    rows: &[Row],
    limit: i64,
    view: View<'_>,
) -> StoreResult<Vec<Row>> {
    let page = &rows[..rows.len().min(limit as usize)];
    let (Some(a), Some(b)) = (page.first(), page.last()) else {
        return Ok(Vec::new());
    };
    // Pages run either way: the bounds are the smaller and the larger end.
    let (newest, oldest) = if a.i64(0)? >= b.i64(0)? {
        (a, b)
    } else {
        (b, a)
    };
    const SELECT: &str = "SELECT message_seq, recipient_subject_id, state, sent_at, delivered_at, \
                          read_at FROM chat_receipts";
    match view {
        View::Employer => c.query(
            &format!(
                "{SELECT} WHERE conversation_id = $1 AND message_seq >= $2 AND message_seq <= $3 \
                 ORDER BY message_seq, id"
            ),
            params![conversation, oldest.i64(0)?, newest.i64(0)?],
        ),
        View::Member(me) => {
            let mut out = c.query(
                &format!(
                    "{SELECT} WHERE recipient_subject_id = $1 AND conversation_id = $2 \
                     AND state IN ('sent', 'delivered', 'read') \
                     AND message_seq >= $3 AND message_seq <= $4 ORDER BY message_seq"
                ),
                params![me, conversation, oldest.i64(0)?, newest.i64(0)?],
            )?;
            // Every recipient's status of the reader's own messages, by id.
            let own: Vec<Value> = page
                .iter()
                .filter(|r| matches!(r.opt_text(1), Ok(Some(s)) if s == me))
                .map(|r| r.0.first().cloned().unwrap_or(Value::Null))
                .collect();
            for chunk in own.chunks(500) {
                out.extend(c.query(
                    &format!(
                        "{SELECT} WHERE message_seq IN ({}) ORDER BY message_seq, id",
                        placeholders(1, chunk.len())
                    ),
                    chunk,
                )?);
            }
            Ok(out)
        }
    }
}

/// Decrypts and shapes a page. Bodies are opened with their senders' keys; a
/// sender whose key is gone (being erased) shows no body.
/// A page as read: its message rows, their receipts and their files.
type PageRows = (Vec<Row>, Vec<Row>, Vec<Row>);

fn build(
    core: &Steward,
    conversation: &str,
    (mut rows, receipts, files): PageRows,
    limit: i64,
    view: View<'_>,
    position: Position,
) -> Result<MessagePage> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut by_message: HashMap<i64, Vec<Receipt>> = HashMap::new();
    for r in &receipts {
        by_message.entry(r.i64(0)?).or_default().push(Receipt {
            subject_id: r.opt_text(1)?,
            state: ReceiptState::parse(&r.text(2)?)?,
            sent_at: r.i64(3)?,
            delivered_at: r.opt_i64(4)?,
            read_at: r.opt_i64(5)?,
        });
    }
    let mut keys: HashMap<String, Option<DataKey>> = HashMap::new();
    let mut key_of = |s: &str| -> Result<Option<DataKey>> {
        if !keys.contains_key(s) {
            keys.insert(s.to_owned(), core.keys.subject_key(s)?);
        }
        Ok(keys.get(s).cloned().flatten())
    };
    let mut by_file = attachments::by_message(&files, &mut key_of)?;
    let mut messages = Vec::with_capacity(rows.len());
    for r in &rows {
        let id = r.i64(0)?;
        let sender = r.opt_text(1)?;
        let body = match (&sender, r.opt_bytes(2)?) {
            (Some(s), Some(sealed)) => match key_of(s)? {
                Some(k) => Some(fields::open(&k, "chat_messages.body", s, &sealed)?),
                None => None,
            },
            _ => None,
        };
        let mut all = by_message.remove(&id).unwrap_or_default();
        let (state, receipts) = match view {
            View::Employer => (None, all),
            View::Member(me) if sender.as_deref() == Some(me) => {
                all.retain(|x| x.subject_id.as_deref() != Some(me));
                (None, all)
            }
            View::Member(me) => (
                all.iter()
                    .find(|x| x.subject_id.as_deref() == Some(me))
                    .map(|x| x.state),
                Vec::new(),
            ),
        };
        messages.push(Message {
            id,
            conversation_id: conversation.to_owned(),
            sender_subject_id: sender,
            body,
            sent_at: r.i64(3)?,
            state,
            receipts,
            attachments: by_file.remove(&id).unwrap_or_default(),
        });
    }
    let next_cursor = match messages.last() {
        Some(last) if more => Some(position.next(last.id)),
        _ => None,
    };
    Ok(MessagePage {
        messages,
        next_cursor,
    })
}

/// The checks of an employer's read before anything is read: the tenant (404
/// for another's), the role, the purpose declared for chat and the `employer`
/// recipient declared for chat.
fn employer_scope(core: &Steward, actor: &Actor, tenant_id: &str, purpose: &str) -> Result<()> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(&[Role::TenantAdmin], "read the tenant's chat")?;
    if actor.role().is_none() {
        return Err(Error::Forbidden(
            "the employer's access to chat is for the tenant's admin account".into(),
        ));
    }
    core.policy.check_use(CATEGORY, purpose).map_err(|e| {
        let field = match e {
            UseError::UnknownCategory { .. } => "category",
            UseError::UndeclaredPurpose { .. } => "purpose",
        };
        Error::invalid(field, e.to_string())
    })?;
    Ok(())
}

/// Records the employer's read: for each subject, the processing check with
/// the `employer` recipient and a `disclose` entry; with no subject on the page,
/// one entry for the tenant. A refusal (a policy without the recipient, say) is
/// recorded as `process.refused` and returned.
fn disclose(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    purpose: &str,
    subjects: &BTreeSet<String>,
    detail: serde_json::Value,
) -> Result<()> {
    let done = core.write(actor, |tx| {
        if subjects.is_empty() {
            let declared = tx
                .policy()
                .category(CATEGORY)
                .is_some_and(|c| c.recipients.iter().any(|r| r.as_str() == EMPLOYER));
            if !declared {
                return Err(Error::Forbidden(format!(
                    "{EMPLOYER:?} is not a declared recipient of {CATEGORY} in the policy"
                )));
            }
            tx.audit(Event {
                tenant_id: Some(tenant_id.to_owned()),
                action: "disclose".into(),
                category: Some(CATEGORY.into()),
                purpose: Some(purpose.to_owned()),
                recipient: Some(EMPLOYER.into()),
                detail: detail.clone(),
                ..Event::default()
            })?;
            return Ok(());
        }
        for s in subjects {
            let use_ = Use {
                subject_id: s,
                category: CATEGORY,
                purpose,
                recipient: Some(EMPLOYER),
            };
            let permit = processing::permit(tx, &use_)?;
            tx.audit(Event {
                tenant_id: Some(permit.tenant),
                subject_id: Some(s.clone()),
                action: "disclose".into(),
                category: Some(CATEGORY.into()),
                purpose: Some(purpose.to_owned()),
                recipient: Some(EMPLOYER.into()),
                detail: detail.clone(),
            })?;
        }
        Ok(())
    });
    match done {
        Err(e @ (Error::ConsentRequired { .. } | Error::Forbidden(_))) => {
            core.write(actor, |tx| {
                tx.audit(Event {
                    tenant_id: Some(tenant_id.to_owned()),
                    action: "process.refused".into(),
                    category: Some(CATEGORY.into()),
                    purpose: Some(purpose.to_owned()),
                    recipient: Some(EMPLOYER.into()),
                    detail: serde_json::json!({ "reason": e.code(), "read": detail, "subjects": subjects.len() }),
                    ..Event::default()
                })
            })?;
            Err(e)
        }
        other => other,
    }
}

/// The employer's list of its tenant's conversations (with their members).
pub fn employer_conversations(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    purpose: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<ConversationPage> {
    employer_scope(core, actor, tenant_id, purpose)?;
    let limit = check_limit(limit)?;
    let after = cursor.map(|c| decode_cursor('c', c)).transpose()?;
    let (raws, more) = core.db.read(|c| {
        let rows = c.query(
            &format!(
                "SELECT {} FROM chat_conversations c WHERE c.tenant_id = $1 AND c.id > $2 \
                 ORDER BY c.id LIMIT $3",
                conversations::COLUMNS
            ),
            params![tenant_id, after.as_deref().unwrap_or(""), limit + 1],
        )?;
        conversations::load_page(c, rows, limit, None)
    })?;
    // Nothing is opened (titles) before the read is recorded.
    let subjects: BTreeSet<String> = conversations::subjects_of(&raws)?;
    disclose(
        core,
        actor,
        tenant_id,
        purpose,
        &subjects,
        serde_json::json!({ "read": "conversations", "conversations": raws.len() }),
    )?;
    conversations::page(core, raws, more)
}

/// The employer's read of one conversation's history (every recipient's status
/// of every message).
pub fn employer_history(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    conversation_id: &str,
    purpose: &str,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<MessagePage> {
    employer_scope(core, actor, tenant_id, purpose)?;
    let id = parse_id("conversation_id", conversation_id)?;
    let limit = check_limit(limit)?;
    let position = Position::parse(cursor, None)?;
    let read = core.db.read(|c| {
        let found = c.query_opt(
            "SELECT id FROM chat_conversations WHERE id = $1 AND tenant_id = $2",
            params![id.as_str(), tenant_id],
        )?;
        if found.is_none() {
            return Ok(None);
        }
        let rows = messages(c, &id, position, limit)?;
        let receipts = receipts(c, &id, &rows, limit, View::Employer)?;
        let members = c.query(
            "SELECT subject_id FROM chat_members WHERE conversation_id = $1",
            params![id.as_str()],
        )?;
        let files = files(c, &rows, limit)?;
        Ok(Some((rows, receipts, members, files)))
    })?;
    let (rows, receipts, members, files) =
        read.ok_or_else(|| Error::NotFound("conversation".into()))?;
    let mut subjects = BTreeSet::new();
    for r in &members {
        subjects.insert(r.text(0)?);
    }
    for r in rows.iter().take(limit as usize) {
        subjects.extend(r.opt_text(1)?);
    }
    for r in &receipts {
        subjects.extend(r.opt_text(1)?);
    }
    let shown = rows.len().min(limit as usize);
    disclose(
        core,
        actor,
        tenant_id,
        purpose,
        &subjects,
        serde_json::json!({ "read": "messages", "conversation_id": id, "messages": shown }),
    )?;
    build(
        core,
        &id,
        (rows, receipts, files),
        limit,
        View::Employer,
        position,
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn field(r: Result<Position>) -> Option<String> {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn pages_start_at_the_newest_after_an_id_or_at_a_cursor() {
        let newest = Position::Before {
            below: i64::MAX,
            above: 0,
        };
        assert_eq!(Position::parse(None, None).unwrap(), newest);
        assert_eq!(
            Position::parse(None, Some("42")).unwrap(),
            Position::After(42)
        );
        assert_eq!(
            Position::parse(None, Some("0")).unwrap(),
            Position::After(0)
        );
        let after = Position::After(42).next(99);
        assert_eq!(
            Position::parse(Some(&after), None).unwrap(),
            Position::After(99)
        );
        let before = newest.next(7);
        assert_eq!(
            Position::parse(Some(&before), None).unwrap(),
            Position::Before { below: 7, above: 0 }
        );
        // Both: the cursor's page, stopping at `after`.
        assert_eq!(
            Position::parse(Some(&before), Some("3")).unwrap(),
            Position::Before { below: 7, above: 3 }
        );
        assert_eq!(
            Position::parse(Some(&after), Some("120")).unwrap(),
            Position::After(120)
        );
        assert_eq!(
            Position::parse(Some(&after), Some("5")).unwrap(),
            Position::After(99)
        );
        for bad in ["-1", "x", "", "1.5", " 42 ", "+4"] {
            assert_eq!(
                field(Position::parse(None, Some(bad))).as_deref(),
                Some("after"),
                "{bad}"
            );
        }
        for bad in ["bTow", "m0", "", "m"] {
            assert_eq!(
                field(Position::parse(Some(bad), None)).as_deref(),
                Some("cursor"),
                "{bad}"
            );
        }
        assert_eq!(
            field(Position::parse(Some(&encode_cursor('c', "5")), None)).as_deref(),
            Some("cursor")
        );
    }
}
