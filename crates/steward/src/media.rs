//! Photos and media (policy category `photos_media`): files a user chooses to use
//! in the app, kept only with their consent ("We will not use this data if you do
//! not consent"), stored under their tenant ("on our servers relating to the party
//! that has provided you with access to the App").
//!
//! * Only the user themself uploads, lists, downloads and deletes their media;
//!   staff reach it through an access request (the bundle holds the files). No
//!   employer access: the statement gives the employer access to chat data, not
//!   to photos.
//! * Every operation passes `processing::permit` for (`photos_media`,
//!   `provision`), so without standing consent it is refused (403
//!   `consent_required`), the user's own reads included.
//! * Upload streams: its real type is read from its first bytes (images and
//!   videos only), its size is checked as it arrives (`--max-media-bytes`), and
//!   it is encrypted under the user's key on its way to the blob store
//!   (`files.rs`). Consent is checked again when the row is written, so a
//!   withdrawal during a long upload wins.
//! * Withdrawing the consent deletes every item and its file: the registry
//!   declares the `media` store under `photos_media`, and `consent::record`
//!   purges a consent-only category's stores on withdrawal.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream};
use serde::Serialize;
use steward_store::{Row, params};
use utoipa::ToSchema;

use crate::access::Actor;
use crate::audit::Event;
use crate::core::{Steward, Tx, blocking, fields};
use crate::error::{Error, Result};
use crate::files::{self, Accept};
use crate::processing::{self, Use};

pub const CATEGORY: &str = "photos_media";
const PURPOSE: &str = "provision";
/// The registry's store and the blob key segment.
const STORE: &str = "media";

/// Types a phone's photo and video library holds.
pub const TYPES: &[&str] = &[
    "image/jpeg",
    "image/png",
    "image/gif",
    "image/webp",
    "image/heif",
    "video/mp4",
    "video/quicktime",
    "video/webm",
];

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MediaItem {
    pub id: String,
    pub subject_id: String,
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

fn use_of(subject_id: &str) -> Use<'_> {
    Use {
        subject_id,
        category: CATEGORY,
        purpose: PURPOSE,
        recipient: None,
    }
}

/// The checks for any operation on `subject_id`'s media: in scope, consent in
/// force, and the caller is the subject. Returns the subject's tenant.
fn permit_self(tx: &mut Tx<'_>, subject_id: &str) -> Result<String> {
    let permit = processing::permit(tx, &use_of(subject_id))?;
    if !tx.actor.is_self(subject_id) {
        return Err(Error::Forbidden(
            "only the user themself handles their photos and media; staff see them through an \
             access request"
                .into(),
        ));
    }
    Ok(permit.tenant)
}

/// Stores a photo or video for `subject_id`, streaming `body`.
pub async fn upload<S>(
    core: Arc<Steward>,
    actor: Actor,
    subject_id: String,
    up: Upload,
    body: S,
) -> Result<MediaItem>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let name = files::check_name(up.name.as_deref())?;
    let (tenant, key) = {
        let (actor, subject_id) = (actor.clone(), subject_id.clone());
        blocking(&core, move |core| {
            let tenant = core.write(&actor, |tx| permit_self(tx, &subject_id))?;
            Ok((tenant, core.subject_key(&subject_id)?))
        })
        .await?
    };
    let id = uuid::Uuid::now_v7().to_string();
    let blob_key = files::blob_key(&tenant, &subject_id, STORE, &id);
    let accept = Accept {
        max_bytes: core.settings.max_media_bytes,
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
                permit_self(tx, &subject_id)?;
                let name_enc = fields::seal_opt(&key, "media.name", &subject_id, name.as_deref())?;
                tx.conn.execute(
                    "INSERT INTO media (id, tenant_id, subject_id, blob_key, content_type, size, \
                     name_enc, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                    params![
                        id.as_str(),
                        tenant.as_str(),
                        subject_id.as_str(),
                        blob_key,
                        stored.content_type,
                        stored.size as i64,
                        name_enc,
                        tx.at
                    ],
                )?;
                tx.audit(Event {
                    tenant_id: Some(tenant.clone()),
                    subject_id: Some(subject_id.clone()),
                    action: "create".into(),
                    category: Some(CATEGORY.into()),
                    purpose: Some(PURPOSE.into()),
                    detail: serde_json::json!({ "media_id": id, "size": stored.size }),
                    ..Event::default()
                })?;
                crate::subjects::touch(tx, &subject_id)?;
                Ok(MediaItem {
                    id,
                    subject_id,
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

const COLUMNS: &str = "id, subject_id, content_type, size, name_enc, created_at, blob_key";

fn item_from(core: &Steward, r: &Row) -> Result<MediaItem> {
    let subject_id = r.text(1)?;
    let key = core.subject_key(&subject_id)?;
    Ok(MediaItem {
        id: r.text(0)?,
        content_type: r.text(2)?,
        size: r.i64(3)? as u64,
        name: fields::open_opt(&key, "media.name", &subject_id, r.opt_bytes(4)?.as_deref())?,
        created_at: r.i64(5)?,
        subject_id,
    })
}

/// The subject's media, newest first.
pub fn list(core: &Steward, actor: &Actor, subject_id: &str) -> Result<Vec<MediaItem>> {
    let rows = core.write(actor, |tx| {
        permit_self(tx, subject_id)?;
        Ok(tx.conn.query(
            &format!(
                "SELECT {COLUMNS} FROM media WHERE subject_id = $1 ORDER BY created_at DESC, id DESC"
            ),
            params![subject_id],
        )?)
    })?;
    rows.iter().map(|r| item_from(core, r)).collect()
}

/// One item, checked like every other operation on it. Returns it with its blob key.
fn find(tx: &mut Tx<'_>, media_id: &str) -> Result<(Row, String)> {
    let row = tx
        .conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM media WHERE id = $1"),
            params![media_id],
        )?
        .ok_or_else(|| Error::NotFound("media item".into()))?;
    let subject_id = row.text(1)?;
    // Out of scope reads as absent (404), never as forbidden.
    permit_self(tx, &subject_id).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound("media item".into()),
        other => other,
    })?;
    let blob_key = row.text(6)?;
    Ok((row, blob_key))
}

/// The item's metadata.
pub fn get(core: &Steward, actor: &Actor, media_id: &str) -> Result<MediaItem> {
    let (row, _) = core.write(actor, |tx| find(tx, media_id))?;
    item_from(core, &row)
}

/// The item and its content, decrypted as it streams.
pub async fn download(
    core: Arc<Steward>,
    actor: Actor,
    media_id: String,
) -> Result<(MediaItem, BoxStream<'static, io::Result<Bytes>>)> {
    let (item, key, blob_key) = blocking(&core, move |core| {
        let (row, blob_key) = core.write(&actor, |tx| find(tx, &media_id))?;
        let item = item_from(core, &row)?;
        let key = core.subject_key(&item.subject_id)?;
        Ok((item, key, blob_key))
    })
    .await?;
    let stream = files::open(&core.blobs, &key, &blob_key).await?;
    Ok((item, stream))
}

/// Deletes the item and its file.
pub fn delete(core: &Steward, actor: &Actor, media_id: &str) -> Result<()> {
    core.write(actor, |tx| {
        let (row, blob_key) = find(tx, media_id)?;
        let subject_id = row.text(1)?;
        tx.conn
            .execute("DELETE FROM media WHERE id = $1", params![media_id])?;
        tx.delete_blob_after_commit(&blob_key)?;
        let tenant = crate::subjects::tenant_of(tx.conn, &subject_id)?;
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(subject_id),
            action: "delete".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({ "media_id": media_id }),
            ..Event::default()
        })?;
        Ok(())
    })
}
