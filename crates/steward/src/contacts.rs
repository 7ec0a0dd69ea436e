//! Device contacts (policy category `device_contacts`, purpose `provision`,
//! lawful basis: consent). The statement: "we ask you for your consent to use
//! your device contacts. We will not use this data if you do not consent", and
//! "the data is stored on the device and on per single contact base the user can
//! request to sync this data to our server".
//!
//! **Whose.** A synced contact belongs to the App user who synced it: the row
//! names them (`subject_id`), their consent is the one checked, and every field
//! is sealed with their data key (the card as JSON in `card_enc`, the photo
//! apart in `photo_enc`, so listing does not open photos). The person in the
//! contact is not made a subject and is not indexed: a blind index of their
//! number or address would let the provider link people across users' address
//! books, which the statement does not ask for. Erasing the user, or the
//! withdrawal of their consent, deletes the contacts they synced.
//!
//! **Consent.** Syncing, listing and reading pass `processing::permit` for
//! `device_contacts`/`provision` inside their transaction: without the user's
//! standing consent they are refused (403 `consent_required`) and nothing is
//! read or stored. Deleting a contact needs no consent (stopping is always
//! allowed).
//!
//! **Sync.** One contact per call, as JSON ([`Contact`]) or as one vCard (2.1,
//! 3.0 or 4.0), checked against [`LIMITS`] (a photo of at most 256 KiB, ...). A
//! contact with a UID replaces the user's contact with the same UID (found by a
//! keyed hash of the user and the UID, `uid_idx`); one without is added. A
//! user holds at most [`MAX_CONTACTS`].
//!
//! **Audit.** A sync is audited (`device_contact.sync`: contact id, created or
//! replaced) and so is a deletion; the user reading their own contacts is not
//! (self-service, as a subject reading their own record).

use serde::Serialize;
use steward_crypto::IdentifierKind;
use steward_store::{Row, params};
use steward_vcard::{Contact, Limits, Photo, Version};
use utoipa::ToSchema;

use crate::access::Actor;
use crate::audit::Event;
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects;

/// The policy category of synced device contacts.
pub const CATEGORY: &str = "device_contacts";
/// The purpose they serve.
pub const PURPOSE: &str = "provision";
/// Most contacts one user keeps synced.
pub const MAX_CONTACTS: i64 = 5000;
/// Largest sync body (JSON or vCard): a photo at the limit, in base64, fits.
pub const MAX_BODY: usize = 1024 * 1024;
/// Size limits of a contact's fields.
pub const LIMITS: Limits = Limits {
    max_text_bytes: 1024,
    max_note_bytes: 16 * 1024,
    max_entries: 50,
    max_photo_bytes: 256 * 1024,
};

const UID_KIND: IdentifierKind = IdentifierKind::Other("device_contact_uid");

/// How a contact arrives.
pub enum SyncInput {
    Json(Box<Contact>),
    /// One vCard (2.1, 3.0 or 4.0).
    Vcard(Vec<u8>),
}

impl SyncInput {
    pub fn json(contact: Contact) -> SyncInput {
        SyncInput::Json(Box::new(contact))
    }
}

/// A synced contact.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceContact {
    pub id: String,
    /// Whether the contact has a photo (lists leave the photo out; reading the
    /// contact gives it).
    pub has_photo: bool,
    pub contact: Contact,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The signed-in user whose contacts these are.
fn owner(actor: &Actor) -> Result<String> {
    actor.subject_id.clone().ok_or_else(|| {
        Error::Forbidden("device contacts belong to an App user: sign in as one".into())
    })
}

/// Checks, inside the transaction, that the user may use their device contacts
/// now (scope, declared use, standing consent). Returns the user's tenant.
fn permit(tx: &mut Tx<'_>, owner: &str) -> Result<String> {
    let p = processing::permit(
        tx,
        &Use {
            subject_id: owner,
            category: CATEGORY,
            purpose: PURPOSE,
            recipient: None,
        },
    )?;
    Ok(p.tenant)
}

/// The contact a sync body holds, checked.
fn read_input(input: SyncInput) -> Result<Contact> {
    let (contact, at) = match input {
        SyncInput::Json(c) => (*c, String::new()),
        SyncInput::Vcard(bytes) => {
            let mut cards = steward_vcard::parse_located(&bytes)
                .map_err(|e| Error::invalid("vcard", e.to_string()))?;
            if cards.len() > 1 {
                let second = cards.get(1).map(|c| c.line).unwrap_or_default();
                return Err(Error::invalid(
                    "vcard",
                    format!(
                        "expected exactly one vCard, found {} (the second BEGIN:VCARD is at line \
                         {second}): sync one contact per request",
                        cards.len()
                    ),
                ));
            }
            let card = cards
                .pop()
                .ok_or_else(|| Error::invalid("vcard", "no vCard found: the body is empty"))?;
            (
                card.contact,
                format!("card 1 (BEGIN:VCARD at line {}): ", card.line),
            )
        }
    };
    contact.validate(&LIMITS).map_err(|e| {
        let first = e
            .problems
            .first()
            .map(|p| p.field.clone())
            .unwrap_or_else(|| "contact".into());
        let all: Vec<String> = e
            .problems
            .iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect();
        Error::invalid(&first, format!("{at}{}", all.join("; ")))
    })?;
    Ok(contact)
}

fn seal_json<T: Serialize>(
    key: &steward_crypto::DataKey,
    field: &str,
    owner: &str,
    v: &T,
) -> Result<Vec<u8>> {
    let json = serde_json::to_string(v).map_err(|e| Error::Internal(e.to_string()))?;
    fields::seal(key, &format!("device_contacts.{field}"), owner, &json)
}

fn open_json<T: serde::de::DeserializeOwned>(
    key: &steward_crypto::DataKey,
    field: &str,
    owner: &str,
    sealed: &[u8],
) -> Result<T> {
    let json = fields::open(key, &format!("device_contacts.{field}"), owner, sealed)?;
    serde_json::from_str(&json)
        .map_err(|e| Error::Internal(format!("device_contacts.{field}: {e}")))
}

const COLUMNS: &str = "id, subject_id, card_enc, photo_enc, created_at, updated_at";

/// The contact in `r` (selected with [`COLUMNS`]); its photo only if `with_photo`.
fn decrypt(core: &Steward, r: &Row, with_photo: bool) -> Result<DeviceContact> {
    let owner = r.text(1)?;
    let key = core.subject_key(&owner)?;
    let mut contact: Contact = open_json(&key, "card", &owner, &r.bytes(2)?)?;
    let photo = r.opt_bytes(3)?;
    if with_photo && let Some(p) = &photo {
        contact.photo = Some(open_json::<Photo>(&key, "photo", &owner, p)?);
    }
    Ok(DeviceContact {
        id: r.text(0)?,
        has_photo: photo.is_some(),
        contact,
        created_at: r.i64(4)?,
        updated_at: r.i64(5)?,
    })
}

/// Stores one contact for the signed-in user: a new one, or over their contact
/// with the same UID. Returns the stored contact and whether it is new. Refused
/// without the user's consent (nothing is stored).
pub fn sync(core: &Steward, actor: &Actor, input: SyncInput) -> Result<(DeviceContact, bool)> {
    let owner = owner(actor)?;
    let contact = read_input(input)?;
    let uid_idx = contact
        .uid
        .as_deref()
        .map(|u| core.keys.blind_index(UID_KIND, &format!("{owner}\n{u}")));
    core.write(actor, |tx| {
        let tenant = permit(tx, &owner)?;
        let existing = match &uid_idx {
            Some(idx) => tx
                .conn
                .query_opt(
                    "SELECT id, created_at FROM device_contacts \
                     WHERE subject_id = $1 AND uid_idx = $2",
                    params![owner.as_str(), idx.clone()],
                )?
                .map(|r| Ok::<_, Error>((r.text(0)?, r.i64(1)?)))
                .transpose()?,
            None => None,
        };
        if existing.is_none() {
            let held = tx
                .conn
                .query_opt(
                    "SELECT COUNT(*) FROM device_contacts WHERE subject_id = $1",
                    params![owner.as_str()],
                )?
                .map(|r| r.i64(0))
                .transpose()?
                .unwrap_or(0);
            if held >= MAX_CONTACTS {
                return Err(Error::Conflict(format!(
                    "you have {held} synced contacts, the most kept: delete some first"
                )));
            }
        }
        let key = tx.core.subject_key(&owner)?;
        let mut card = contact.clone();
        let photo = card.photo.take();
        let card_enc = seal_json(&key, "card", &owner, &card)?;
        let photo_enc = photo
            .as_ref()
            .map(|p| seal_json(&key, "photo", &owner, p))
            .transpose()?;
        let (id, created_at, created) = match existing {
            Some((id, created_at)) => {
                tx.conn.execute(
                    "UPDATE device_contacts SET card_enc = $1, photo_enc = $2, updated_at = $3 \
                     WHERE id = $4",
                    params![card_enc, photo_enc, tx.at, id.as_str()],
                )?;
                (id, created_at, false)
            }
            None => {
                let id = uuid::Uuid::now_v7().to_string();
                tx.conn.execute(
                    "INSERT INTO device_contacts (id, subject_id, tenant_id, uid_idx, card_enc, \
                     photo_enc, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7)",
                    params![
                        id.as_str(),
                        owner.as_str(),
                        tenant.as_str(),
                        uid_idx.clone(),
                        card_enc,
                        photo_enc,
                        tx.at
                    ],
                )?;
                (id, tx.at, true)
            }
        };
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(owner.clone()),
            action: "device_contact.sync".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({ "contact_id": id, "created": created }),
            ..Event::default()
        })?;
        subjects::touch(tx, &owner)?;
        Ok((
            DeviceContact {
                id,
                has_photo: photo.is_some(),
                contact,
                created_at,
                updated_at: tx.at,
            },
            created,
        ))
    })
}

/// The signed-in user's synced contacts, oldest first, without photos.
pub fn list(core: &Steward, actor: &Actor) -> Result<Vec<DeviceContact>> {
    let owner = owner(actor)?;
    core.write(actor, |tx| {
        permit(tx, &owner)?;
        let rows = tx.conn.query(
            &format!("SELECT {COLUMNS} FROM device_contacts WHERE subject_id = $1 ORDER BY id"),
            params![owner.as_str()],
        )?;
        rows.iter().map(|r| decrypt(tx.core, r, false)).collect()
    })
}

/// One of the signed-in user's synced contacts, with its photo.
pub fn get(core: &Steward, actor: &Actor, contact_id: &str) -> Result<DeviceContact> {
    let owner = owner(actor)?;
    core.write(actor, |tx| {
        permit(tx, &owner)?;
        let row = tx
            .conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM device_contacts WHERE id = $1 AND subject_id = $2"),
                params![contact_id, owner.as_str()],
            )?
            .ok_or_else(|| Error::NotFound("contact".into()))?;
        decrypt(tx.core, &row, true)
    })
}

/// Deletes one of the signed-in user's synced contacts (no consent needed).
pub fn delete(core: &Steward, actor: &Actor, contact_id: &str) -> Result<()> {
    let owner = owner(actor)?;
    core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, &owner)?;
        tx.actor.require_subject(&tenant, &owner)?;
        let n = tx.conn.execute(
            "DELETE FROM device_contacts WHERE id = $1 AND subject_id = $2",
            params![contact_id, owner.as_str()],
        )?;
        if n == 0 {
            return Err(Error::NotFound("contact".into()));
        }
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(owner.clone()),
            action: "delete".into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({ "store": "device_contacts", "contact_id": contact_id }),
            ..Event::default()
        })?;
        Ok(())
    })
}

/// A synced contact as a vCard; a contact synced without a UID gets
/// `urn:uuid:<contact id>`.
pub fn to_vcard(c: &DeviceContact, version: Version) -> String {
    let mut contact = c.contact.clone();
    if contact.uid.is_none() {
        contact.uid = Some(format!("urn:uuid:{}", c.id));
    }
    steward_vcard::to_vcard(&contact, version)
}

/// Every contact `subject_id` synced, with photos (for their access bundle).
pub(crate) fn of_subject(core: &Steward, subject_id: &str) -> Result<Vec<DeviceContact>> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM device_contacts WHERE subject_id = $1 ORDER BY id"),
            params![subject_id],
        )
    })?;
    rows.iter().map(|r| decrypt(core, r, true)).collect()
}
