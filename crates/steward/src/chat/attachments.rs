//! Files sent in chat ("transmitted files").
//!
//! A member uploads a file to one of their conversations; it streams through
//! `files::store` (its real type read from its first bytes, its size checked as
//! it arrives against `--chat-max-attachment-bytes`, encrypted under the
//! uploader's key on its way to the blob store) and is kept as a pending
//! attachment. A message that names it (`attachments` of a send) takes it, in the
//! writer's transaction: from then on every member of the conversation may
//! download it, decrypted as it streams; before that, only the uploader.
//! Nobody else: another tenant's or a non-member's request is 404, and the
//! employer sees an attachment's type, size and name in its view of the
//! history, not its content.
//!
//! A pending upload can be deleted by its uploader; a sent one stays with its
//! message (messages are not withdrawn either) until the sender is erased,
//! which deletes the row and the object (the registry's `blob_column`).

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream};
use serde::Serialize;
use steward_crypto::DataKey;
use steward_store::{Conn, Row, StoreResult, Value, params, placeholders};
use utoipa::ToSchema;

use super::conversations::member_row;
use super::{own_use, parse_id};
use crate::access::Actor;
use crate::core::{Steward, blocking, fields};
use crate::error::{Error, Result};
use crate::files::{self, Accept};

/// The registry's store and the blob key segment.
pub const STORE: &str = "chat_attachments";
/// Files one message may carry.
pub const MAX_PER_MESSAGE: usize = 10;

/// What chat takes: pictures, videos, voice messages and audio, PDF documents.
pub const TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heif",
    "video/mp4",
    "video/quicktime",
    "video/webm",
    "audio/wav",
    "audio/mpeg",
    "audio/ogg",
    "application/pdf",
];

/// A file sent (or being sent) in a conversation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Attachment {
    pub id: String,
    pub conversation_id: String,
    /// Who sent it.
    pub subject_id: String,
    /// The message that carries it; null while the upload is pending.
    pub message_id: Option<i64>,
    /// The type found in the content.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// The file name the app sent, if any.
    pub name: Option<String>,
    pub created_at: i64,
}

/// What the client says about an upload.
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The `Content-Type` sent; must agree with the content when given.
    pub content_type: Option<String>,
    pub name: Option<String>,
}

pub(crate) const COLUMNS: &str = "id, conversation_id, subject_id, message_seq, content_type, \
                                  size, name_enc, created_at, blob_key, tenant_id";

/// An attachment from a row in [`COLUMNS`] order, its name opened with `key`
/// (the uploader's).
pub(crate) fn from_row(r: &Row, key: Option<&DataKey>) -> Result<Attachment> {
    let subject_id = r.text(2)?;
    let name = match (key, r.opt_bytes(6)?) {
        (Some(k), Some(sealed)) => Some(fields::open(
            k,
            "chat_attachments.name",
            &subject_id,
            &sealed,
        )?),
        _ => None,
    };
    Ok(Attachment {
        id: r.text(0)?,
        conversation_id: r.text(1)?,
        message_id: r.opt_i64(3)?,
        content_type: r.text(4)?,
        size: r.i64(5)? as u64,
        name,
        created_at: r.i64(7)?,
        subject_id,
    })
}

/// Rows of [`of_messages`] as attachments per message id, each name opened
/// with its uploader's key (from `key_of`; none once erased).
pub(crate) fn by_message(
    files: &[Row],
    mut key_of: impl FnMut(&str) -> Result<Option<DataKey>>,
) -> Result<std::collections::HashMap<i64, Vec<Attachment>>> {
    let mut out: std::collections::HashMap<i64, Vec<Attachment>> = std::collections::HashMap::new();
    for f in files {
        let (Some(seq), uploader) = (f.opt_i64(3)?, f.text(2)?) else {
            continue;
        };
        let key = key_of(&uploader)?;
        out.entry(seq).or_default().push(from_row(f, key.as_ref())?);
    }
    Ok(out)
}

/// The attachments of messages, in message and upload order.
pub(crate) fn of_messages(c: &mut dyn Conn, seqs: &[i64]) -> StoreResult<Vec<Row>> {
    let mut out = Vec::new();
    for chunk in seqs.chunks(500) {
        let args: Vec<Value> = chunk.iter().map(|s| Value::Int(*s)).collect();
        out.extend(c.query(
            &format!(
                "SELECT {COLUMNS} FROM chat_attachments WHERE message_seq IN ({}) \
                 ORDER BY message_seq, created_at, id",
                placeholders(1, chunk.len())
            ),
            &args,
        )?);
    }
    Ok(out)
}

/// Uploads a file to one of the caller's conversations, streaming `body`; it
/// stays pending until a message names it.
pub async fn upload<S>(
    core: Arc<Steward>,
    actor: Actor,
    conversation_id: String,
    up: Upload,
    body: S,
) -> Result<Attachment>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let name = files::check_name(up.name.as_deref())?;
    // The member check comes before a byte of the body is read.
    let (me, tenant, conversation, key) = {
        let actor = actor.clone();
        blocking(&core, move |core| {
            let (me, tenant) = own_use(core, &actor)?;
            let id = parse_id("conversation_id", &conversation_id)?;
            let found = core.db.read(|c| member_row(c, &id, &me, &tenant))?;
            if found.is_none() {
                return Err(Error::NotFound("conversation".into()));
            }
            let key = core.subject_key(&me)?;
            Ok((me, tenant, id, key))
        })
        .await?
    };
    let id = uuid::Uuid::now_v7().to_string();
    let blob_key = files::blob_key(&tenant, &me, STORE, &id);
    let accept = Accept {
        max_bytes: core.settings.chat_max_attachment_bytes,
        types: TYPES,
    };
    files::upload(
        &core,
        key.clone(),
        blob_key,
        up.content_type.as_deref(),
        accept,
        body,
        move |core, blob_key, stored| {
            core.write(&actor, |tx| {
                // Still a member now that the upload is in.
                if member_row(tx.conn, &conversation, &me, &tenant)?.is_none() {
                    return Err(Error::NotFound("conversation".into()));
                }
                let name_enc =
                    fields::seal_opt(&key, "chat_attachments.name", &me, name.as_deref())?;
                tx.conn.execute(
                    "INSERT INTO chat_attachments (id, tenant_id, conversation_id, subject_id, \
                     message_seq, blob_key, content_type, size, name_enc, created_at) \
                     VALUES ($1, $2, $3, $4, NULL, $5, $6, $7, $8, $9)",
                    params![
                        id.as_str(),
                        tenant.as_str(),
                        conversation.as_str(),
                        me.as_str(),
                        blob_key,
                        stored.content_type,
                        stored.size as i64,
                        name_enc,
                        tx.at
                    ],
                )?;
                crate::subjects::touch(tx, &me)?;
                Ok(Attachment {
                    id,
                    conversation_id: conversation,
                    subject_id: me,
                    message_id: None,
                    content_type: stored.content_type.to_owned(),
                    size: stored.size,
                    name,
                    created_at: tx.at,
                })
            })
        },
    )
    .await
}

/// The attachment's row if the caller may see it: a member of its
/// conversation, and, while it is pending, its uploader. Otherwise not found.
fn visible(core: &Steward, actor: &Actor, attachment_id: &str) -> Result<(Row, String)> {
    let (me, tenant) = own_use(core, actor)?;
    let id = parse_id("attachment_id", attachment_id)?;
    let row = core.db.read(|c| {
        let Some(row) = c.query_opt(
            &format!("SELECT {COLUMNS} FROM chat_attachments WHERE id = $1 AND tenant_id = $2"),
            params![id.as_str(), tenant.as_str()],
        )?
        else {
            return Ok(None);
        };
        let conversation = row.text(1)?;
        let member = member_row(c, &conversation, &me, &tenant)?.is_some();
        let pending = row.opt_i64(3)?.is_none();
        let uploader = row.text(2)? == me;
        Ok((member && (uploader || !pending)).then_some(row))
    })?;
    let row = row.ok_or_else(|| Error::NotFound("attachment".into()))?;
    Ok((row, me))
}

/// An attachment's details.
pub fn get(core: &Steward, actor: &Actor, attachment_id: &str) -> Result<Attachment> {
    let (row, _) = visible(core, actor, attachment_id)?;
    let key = core.keys.subject_key(&row.text(2)?)?;
    from_row(&row, key.as_ref())
}

/// An attachment and its content, decrypted as it streams.
pub async fn download(
    core: Arc<Steward>,
    actor: Actor,
    attachment_id: String,
) -> Result<(Attachment, BoxStream<'static, io::Result<Bytes>>)> {
    let (item, key, blob_key) = blocking(&core, move |core| {
        let (row, _) = visible(core, &actor, &attachment_id)?;
        let key = core.subject_key(&row.text(2)?)?;
        Ok((from_row(&row, Some(&key))?, key, row.text(8)?))
    })
    .await?;
    let stream = files::open(&core.blobs, &key, &blob_key).await?;
    Ok((item, stream))
}

/// Deletes a pending upload (its uploader only); a sent file stays with its
/// message.
pub fn delete(core: &Steward, actor: &Actor, attachment_id: &str) -> Result<()> {
    let (row, me) = visible(core, actor, attachment_id)?;
    if row.text(2)? != me {
        return Err(Error::Forbidden(
            "only the sender deletes a file, before sending it".into(),
        ));
    }
    let id = row.text(0)?;
    core.write(actor, |tx| {
        let n = tx.conn.execute(
            "DELETE FROM chat_attachments WHERE id = $1 AND subject_id = $2 AND message_seq IS NULL",
            params![id.as_str(), me.as_str()],
        )?;
        if n == 0 {
            return Err(Error::Conflict(
                "the file was sent: it stays with its message".into(),
            ));
        }
        tx.delete_blob_after_commit(&row.text(8)?)
    })
}
