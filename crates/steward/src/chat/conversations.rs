//! Conversations and their members. A direct conversation has exactly two
//! members and there is one per pair (asking again returns it); a group has a
//! title (optional), an owner (its creator) and up to [`MAX_GROUP_MEMBERS`]
//! members. Members are users (accounts) of the same tenant. Any member may add
//! members to a group; a member may leave it; its owner may remove others.
//! Conversation and membership changes are audited (ids only).

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use steward_store::{Conn, Row, StoreResult, params};
use utoipa::ToSchema;

use super::{
    CATEGORY, MAX_GROUP_MEMBERS, MAX_TITLE_CHARS, PURPOSE, check_limit, decode_cursor,
    encode_cursor, own_use, parse_id,
};
use crate::access::Actor;
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::tenants::{self, TenantLock};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ConversationKind {
    Direct,
    Group,
}

impl ConversationKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationKind::Direct => "direct",
            ConversationKind::Group => "group",
        }
    }

    fn parse(s: &str) -> Result<ConversationKind> {
        match s {
            "direct" => Ok(ConversationKind::Direct),
            "group" => Ok(ConversationKind::Group),
            other => Err(Error::Internal(format!(
                "unknown conversation kind {other}"
            ))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemberRole {
    /// A group's creator: may remove other members.
    Owner,
    Member,
}

impl MemberRole {
    fn as_str(self) -> &'static str {
        match self {
            MemberRole::Owner => "owner",
            MemberRole::Member => "member",
        }
    }

    fn parse(s: &str) -> MemberRole {
        if s == "owner" {
            MemberRole::Owner
        } else {
            MemberRole::Member
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Member {
    pub subject_id: String,
    pub role: MemberRole,
    pub joined_at: i64,
}

/// A conversation as a member (or the employer) sees it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Conversation {
    pub id: String,
    pub tenant_id: String,
    pub kind: ConversationKind,
    /// A group's title; null for direct conversations, and once the creator was erased.
    pub title: Option<String>,
    /// Null once the creator was erased.
    pub created_by: Option<String>,
    pub created_at: i64,
    pub members: Vec<Member>,
    /// The newest message's id, if any.
    pub last_message_id: Option<i64>,
    /// Messages the reader has not read yet (0 in the employer's view).
    pub unread: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A conversation to start.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub kind: ConversationKind,
    /// Subject ids of the other members (the caller is added).
    pub members: Vec<String>,
    pub title: Option<String>,
}

/// Starts a conversation (or, for a direct one that exists, returns it).
/// Returns the conversation and whether it was created now.
pub fn create(core: &Steward, actor: &Actor, new: NewConversation) -> Result<(Conversation, bool)> {
    let (me, tenant) = own_use(core, actor)?;
    // Each other member, with where the request named them (for a refusal).
    let mut others = BTreeMap::new();
    for (i, m) in new.members.iter().enumerate() {
        let id = parse_id(&format!("members[{i}]"), m)?;
        if id != me {
            others.entry(id).or_insert(i);
        }
    }
    // Length and characters are checked on what was sent, then it is trimmed
    // (as the OpenAPI document's maxLength and pattern see it).
    let title = match (new.kind, new.title.as_deref()) {
        (_, None) => None,
        (ConversationKind::Direct, Some(_)) => {
            return Err(Error::invalid(
                "title",
                "a direct conversation has no title; start a group for one",
            ));
        }
        (ConversationKind::Group, Some(raw))
            if raw.trim().is_empty()
                || raw.chars().count() > MAX_TITLE_CHARS
                || raw.chars().any(char::is_control) =>
        {
            return Err(Error::invalid(
                "title",
                format!(
                    "a group title has 1 to {MAX_TITLE_CHARS} characters on one line, not all spaces"
                ),
            ));
        }
        (ConversationKind::Group, Some(raw)) => Some(raw.trim().to_owned()),
    };
    match new.kind {
        ConversationKind::Direct if others.len() != 1 => {
            return Err(Error::invalid(
                "members",
                "a direct conversation is with exactly one other user",
            ));
        }
        ConversationKind::Group if others.is_empty() => {
            return Err(Error::invalid("members", "name at least one other user"));
        }
        ConversationKind::Group if others.len() + 1 > MAX_GROUP_MEMBERS => {
            return Err(Error::invalid(
                "members",
                format!("a group has at most {MAX_GROUP_MEMBERS} members"),
            ));
        }
        _ => {}
    }
    let sealed_title = match &title {
        Some(t) => Some(fields::seal(
            &core.subject_key(&me)?,
            "chat_conversations.title",
            &me,
            t,
        )?),
        None => None,
    };
    let (id, created) = core.write(actor, |tx| {
        for (other, i) in &others {
            require_user(tx.conn, other, &tenant).map_err(|e| match e {
                Error::NotFound(_) => Error::NotFound(format!("members[{i}]: user")),
                e => e,
            })?;
        }
        if new.kind == ConversationKind::Direct {
            // One direct conversation per pair: the look-up and the insert must not
            // interleave with another creation (SQLite has one writer already).
            tenants::lock(tx.conn, TenantLock::DirectChats, &tenant)?;
            let other = others.keys().next().map(String::as_str).unwrap_or_default();
            let existing = tx.conn.query_opt(
                "SELECT c.id FROM chat_conversations c \
                 JOIN chat_members a ON a.conversation_id = c.id AND a.subject_id = $1 \
                 JOIN chat_members b ON b.conversation_id = c.id AND b.subject_id = $2 \
                 WHERE c.kind = 'direct' AND c.tenant_id = $3",
                params![me.as_str(), other, tenant.as_str()],
            )?;
            if let Some(r) = existing {
                return Ok((r.text(0)?, false));
            }
        }
        let id = uuid::Uuid::now_v7().to_string();
        tx.conn.execute(
            "INSERT INTO chat_conversations (id, tenant_id, kind, created_by, title_enc, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            params![
                id.as_str(),
                tenant.as_str(),
                new.kind.as_str(),
                me.as_str(),
                sealed_title.clone(),
                tx.at
            ],
        )?;
        let my_role = match new.kind {
            ConversationKind::Group => MemberRole::Owner,
            ConversationKind::Direct => MemberRole::Member,
        };
        insert_member(tx, &id, &me, &tenant, my_role)?;
        for other in others.keys() {
            insert_member(tx, &id, other, &tenant, MemberRole::Member)?;
        }
        tx.audit(Event {
            tenant_id: Some(tenant.clone()),
            subject_id: Some(me.clone()),
            action: "chat.conversation.create".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({
                "conversation_id": id, "kind": new.kind.as_str(), "members": others.len() + 1,
            }),
            ..Event::default()
        })?;
        Ok((id, true))
    })?;
    Ok((get(core, actor, &id)?, created))
}

/// A subject that may be added: a user with an enabled account in `tenant`.
/// Anything else is "not found", in whatever tenant it is (the answer does not
/// repeat the id).
fn require_user(c: &mut dyn Conn, subject: &str, tenant: &str) -> Result<()> {
    c.query_opt(
        "SELECT 1 FROM accounts WHERE subject_id = $1 AND tenant_id = $2 AND disabled = 0",
        params![subject, tenant],
    )?
    .map(|_| ())
    .ok_or_else(|| Error::NotFound("user".into()))
}

fn insert_member(
    tx: &mut Tx<'_>,
    conversation: &str,
    subject: &str,
    tenant: &str,
    role: MemberRole,
) -> Result<()> {
    tx.conn.execute(
        "INSERT INTO chat_members (id, conversation_id, subject_id, tenant_id, role, joined_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
        params![
            uuid::Uuid::now_v7().to_string(),
            conversation,
            subject,
            tenant,
            role.as_str(),
            tx.at
        ],
    )?;
    Ok(())
}

/// The conversation's row if `subject` is one of its members in `tenant`.
pub(crate) fn member_row(
    c: &mut dyn Conn,
    conversation: &str,
    subject: &str,
    tenant: &str,
) -> StoreResult<Option<Row>> {
    c.query_opt(
        &format!(
            "SELECT {COLUMNS} FROM chat_conversations c \
             JOIN chat_members m ON m.conversation_id = c.id AND m.subject_id = $2 \
             WHERE c.id = $1 AND c.tenant_id = $3"
        ),
        params![conversation, subject, tenant],
    )
}

/// [`member_row`], or not found (the same answer for every other case).
pub(crate) fn require_member(
    c: &mut dyn Conn,
    conversation: &str,
    subject: &str,
    tenant: &str,
) -> Result<Row> {
    member_row(c, conversation, subject, tenant)?
        .ok_or_else(|| Error::NotFound("conversation".into()))
}

pub(crate) const COLUMNS: &str =
    "c.id, c.tenant_id, c.kind, c.created_by, c.title_enc, c.created_at";

/// A conversation's rows as read, before its title is opened.
pub(crate) struct Raw {
    row: Row,
    members: Vec<Row>,
    last_message_id: Option<i64>,
    unread: i64,
}

/// Reads what the conversations of `rows` (in [`COLUMNS`] order) show: their
/// members, newest message and, for `reader`, unread count.
pub(crate) fn load(
    c: &mut dyn Conn,
    rows: Vec<Row>,
    reader: Option<&str>,
) -> StoreResult<Vec<Raw>> {
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.text(0)?;
        let members = c.query(
            "SELECT subject_id, role, joined_at FROM chat_members \
             WHERE conversation_id = $1 ORDER BY joined_at, subject_id",
            params![id.as_str()],
        )?;
        let last_message_id = c
            .query_opt(
                "SELECT MAX(seq) FROM chat_messages WHERE conversation_id = $1",
                params![id.as_str()],
            )?
            .map(|r| r.opt_i64(0))
            .transpose()?
            .flatten();
        let unread = match reader {
            Some(me) => c
                .query_opt(
                    "SELECT COUNT(*) FROM chat_receipts WHERE recipient_subject_id = $1 \
                     AND conversation_id = $2 AND state IN ('sent', 'delivered')",
                    params![me, id.as_str()],
                )?
                .map(|r| r.i64(0))
                .transpose()?
                .unwrap_or(0),
            None => 0,
        };
        out.push(Raw {
            row,
            members,
            last_message_id,
            unread,
        });
    }
    Ok(out)
}

/// Builds the conversations; titles are opened with their creators' keys (gone
/// once a creator is erased: then no title).
pub(crate) fn assemble(core: &Steward, raws: Vec<Raw>) -> Result<Vec<Conversation>> {
    let mut out = Vec::with_capacity(raws.len());
    let mut keys = HashMap::new();
    for raw in raws {
        let r = &raw.row;
        let created_by = r.opt_text(3)?;
        let title = match (&created_by, r.opt_bytes(4)?) {
            (Some(creator), Some(sealed)) => {
                if !keys.contains_key(creator) {
                    keys.insert(creator.clone(), core.keys.subject_key(creator)?);
                }
                match keys.get(creator) {
                    Some(Some(k)) => Some(fields::open(
                        k,
                        "chat_conversations.title",
                        creator,
                        &sealed,
                    )?),
                    _ => None,
                }
            }
            _ => None,
        };
        let members = raw
            .members
            .iter()
            .map(|m| {
                Ok(Member {
                    subject_id: m.text(0)?,
                    role: MemberRole::parse(&m.text(1)?),
                    joined_at: m.i64(2)?,
                })
            })
            .collect::<Result<Vec<Member>>>()?;
        out.push(Conversation {
            id: r.text(0)?,
            tenant_id: r.text(1)?,
            kind: ConversationKind::parse(&r.text(2)?)?,
            title,
            created_by,
            created_at: r.i64(5)?,
            members,
            last_message_id: raw.last_message_id,
            unread: raw.unread,
        });
    }
    Ok(out)
}

/// One of the caller's conversations.
pub fn get(core: &Steward, actor: &Actor, conversation_id: &str) -> Result<Conversation> {
    let (me, tenant) = own_use(core, actor)?;
    let id = parse_id("conversation_id", conversation_id)?;
    let raws = core.db.read(|c| match member_row(c, &id, &me, &tenant)? {
        Some(row) => load(c, vec![row], Some(&me)),
        None => Ok(Vec::new()),
    })?;
    assemble(core, raws)?
        .pop()
        .ok_or_else(|| Error::NotFound("conversation".into()))
}

/// The caller's conversations, oldest first (a stable order for the cursor;
/// sort by `last_message_id` for recent activity).
pub fn list(
    core: &Steward,
    actor: &Actor,
    cursor: Option<&str>,
    limit: Option<i64>,
) -> Result<ConversationPage> {
    let (me, tenant) = own_use(core, actor)?;
    let limit = check_limit(limit)?;
    let after = cursor.map(|c| decode_cursor('c', c)).transpose()?;
    let (raws, more) = core.db.read(|c| {
        let rows = c.query(
            &format!(
                "SELECT {COLUMNS} FROM chat_conversations c \
                 JOIN chat_members m ON m.conversation_id = c.id AND m.subject_id = $1 \
                 WHERE c.tenant_id = $2 AND c.id > $3 ORDER BY c.id LIMIT $4"
            ),
            params![
                me.as_str(),
                tenant.as_str(),
                after.as_deref().unwrap_or(""),
                limit + 1
            ],
        )?;
        load_page(c, rows, limit, Some(&me))
    })?;
    page(core, raws, more)
}

/// The first `limit` of `rows` loaded, and whether there were more.
pub(crate) fn load_page(
    c: &mut dyn Conn,
    mut rows: Vec<Row>,
    limit: i64,
    reader: Option<&str>,
) -> StoreResult<(Vec<Raw>, bool)> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    Ok((load(c, rows, reader)?, more))
}

/// Everyone the loaded conversations name: members and creators.
pub(crate) fn subjects_of(raws: &[Raw]) -> Result<std::collections::BTreeSet<String>> {
    let mut out = std::collections::BTreeSet::new();
    for raw in raws {
        out.extend(raw.row.opt_text(3)?);
        for m in &raw.members {
            out.insert(m.text(0)?);
        }
    }
    Ok(out)
}

pub(crate) fn page(core: &Steward, raws: Vec<Raw>, more: bool) -> Result<ConversationPage> {
    let conversations = assemble(core, raws)?;
    let next_cursor = match conversations.last() {
        Some(last) if more => Some(encode_cursor('c', &last.id)),
        _ => None,
    };
    Ok(ConversationPage {
        conversations,
        next_cursor,
    })
}

/// Adds a user to a group the caller is a member of.
pub fn add_member(
    core: &Steward,
    actor: &Actor,
    conversation_id: &str,
    subject_id: &str,
) -> Result<Conversation> {
    let (me, tenant) = own_use(core, actor)?;
    let id = parse_id("conversation_id", conversation_id)?;
    let subject = parse_id("subject_id", subject_id)?;
    core.write(actor, |tx| {
        let row = require_member(tx.conn, &id, &me, &tenant)?;
        if ConversationKind::parse(&row.text(2)?)? == ConversationKind::Direct {
            return Err(Error::Conflict(
                "a direct conversation has exactly two members; start a group to add people".into(),
            ));
        }
        require_user(tx.conn, &subject, &tenant)?;
        let count = tx
            .conn
            .query_opt(
                "SELECT COUNT(*) FROM chat_members WHERE conversation_id = $1",
                params![id.as_str()],
            )?
            .map(|r| r.i64(0))
            .transpose()?
            .unwrap_or(0);
        let present = tx.conn.query_opt(
            "SELECT 1 FROM chat_members WHERE conversation_id = $1 AND subject_id = $2",
            params![id.as_str(), subject.as_str()],
        )?;
        if present.is_some() {
            return Err(Error::Conflict("that user is a member already".into()));
        }
        if count as usize >= MAX_GROUP_MEMBERS {
            return Err(Error::Conflict(format!(
                "a group has at most {MAX_GROUP_MEMBERS} members"
            )));
        }
        insert_member(tx, &id, &subject, &tenant, MemberRole::Member)?;
        membership_event(tx, &tenant, &subject, "chat.member.add", &id)
    })?;
    get(core, actor, &id)
}

/// Removes a member from a group: the caller themself (leaving), or anyone, by
/// the group's owner. The member's messages stay in the group's history.
pub fn remove_member(
    core: &Steward,
    actor: &Actor,
    conversation_id: &str,
    subject_id: &str,
) -> Result<()> {
    let (me, tenant) = own_use(core, actor)?;
    let id = parse_id("conversation_id", conversation_id)?;
    let subject = parse_id("subject_id", subject_id)?;
    core.write(actor, |tx| {
        let row = require_member(tx.conn, &id, &me, &tenant)?;
        if ConversationKind::parse(&row.text(2)?)? == ConversationKind::Direct {
            return Err(Error::Conflict(
                "a direct conversation has exactly two members; nobody can leave it".into(),
            ));
        }
        if subject != me {
            let role = tx
                .conn
                .query_opt(
                    "SELECT role FROM chat_members WHERE conversation_id = $1 AND subject_id = $2",
                    params![id.as_str(), me.as_str()],
                )?
                .map(|r| r.text(0))
                .transpose()?;
            if role.as_deref() != Some("owner") {
                return Err(Error::Forbidden(
                    "only the group's owner removes other members; you may leave".into(),
                ));
            }
        }
        let n = tx.conn.execute(
            "DELETE FROM chat_members WHERE conversation_id = $1 AND subject_id = $2",
            params![id.as_str(), subject.as_str()],
        )?;
        if n == 0 {
            return Err(Error::NotFound("member".into()));
        }
        membership_event(tx, &tenant, &subject, "chat.member.remove", &id)
    })
}

fn membership_event(
    tx: &mut Tx<'_>,
    tenant: &str,
    subject: &str,
    action: &str,
    conversation: &str,
) -> Result<()> {
    tx.audit(Event {
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject.to_owned()),
        action: action.into(),
        category: Some(CATEGORY.into()),
        purpose: Some(PURPOSE.into()),
        detail: serde_json::json!({ "conversation_id": conversation }),
        ..Event::default()
    })?;
    Ok(())
}
