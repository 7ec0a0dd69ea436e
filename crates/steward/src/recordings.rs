//! Call recordings (policy category `call_recordings`): "recording both inbound
//! and outbound calls for training and monitoring purposes", "handled with the
//! utmost confidentiality". Legitimate interest, purpose `training_monitoring`,
//! kept 90 days from the call.
//!
//! * **One recording, one call.** An upload names a call record of the caller's
//!   tenant (another tenant's call answers 404) and takes its parties from it.
//!   The recording's owner, whose key encrypts the audio and its file name, is
//!   the call's outside party: the caller of an inbound call, the callee of an
//!   outbound one (the customer whose call it is); when that party is unknown
//!   (a withheld number), the other party owns it. The other party is named by
//!   id only. Erasing the owner deletes the recording and its file; erasing the
//!   other party clears their id and leaves the owner's recording
//!   (`OnErase::DeleteWithOwner` in the registry).
//! * **Who.** Uploading (the PBX integration) and deleting: the tenant's admin or
//!   an operator (deleting also the DPO). Listing, metadata and playback: only
//!   the roles the policy's `access_roles` names for `call_recordings`
//!   (operators and the DPO in the default policy); the employer's admin uploads
//!   but cannot listen. Provider staff act across tenants, as everywhere.
//! * **Every access audited.** Each read (list, metadata, playback or download)
//!   passes `processing::permit` for every party of the recording and writes one
//!   `read` entry per party, with purpose `training_monitoring`; uploads and
//!   deletions write `create` and `delete` entries the same way. Entries name
//!   the recording by its id only: a call id begins with the call's start time,
//!   which is traffic data, and the audit log holds none.
//! * **Upload** streams the audio (`files.rs`): WAV, MP3 or Opus (Ogg), its real
//!   type read from its first bytes and checked against `Content-Type`, its size
//!   checked as it arrives (`--max-recording-bytes`), encrypted under the owner's
//!   key on its way to the blob store. The checks run again when the row is
//!   written; if they fail then, the object is deleted.
//! * **Retention** (90 days from `recorded_at`, the call's start), export (the
//!   audio in the owner's access bundle) and erasure need no code here: the
//!   registry declares the store with its blob and time columns.

use std::io;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, Stream};
use serde::{Deserialize, Serialize};
use steward_store::{Row, params};
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, Tx, blocking, fields};
use crate::error::{Error, Result};
use crate::files::{self, Accept};
use crate::processing::{self, Use};

pub const CATEGORY: &str = "call_recordings";
pub const PURPOSE: &str = "training_monitoring";
/// The registry's store and the blob key segment.
const STORE: &str = "call_recordings";

/// What PBXs record in: WAV (Asterisk MixMonitor, FreeSWITCH), MP3, Opus in Ogg.
pub const TYPES: &[&str] = &["audio/wav", "audio/mpeg", "audio/ogg"];

/// Who uploads: the PBX integration, acting as the tenant's admin or an operator.
const UPLOADERS: &[Role] = &[Role::TenantAdmin, Role::Operator];
/// Who deletes a recording early (an objection, a mistaken upload): the uploaders
/// and the DPO. Deleting discloses nothing.
const DELETERS: &[Role] = &[Role::TenantAdmin, Role::Operator, Role::Dpo];
/// Who reads recordings when the policy names no `access_roles` for them.
const DEFAULT_READERS: &[Role] = &[Role::Operator, Role::Dpo];

/// Seconds a recording may run past its call's recorded duration (whole
/// seconds, rounded differently by the PBX and the recorder).
const DURATION_SLACK: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Someone outside called in: the caller is the outside party.
    Inbound,
    /// A call made from the tenant: the callee is the outside party.
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }

    pub fn parse(s: &str) -> Result<Direction> {
        match s {
            "inbound" => Ok(Direction::Inbound),
            "outbound" => Ok(Direction::Outbound),
            _ => Err(Error::invalid(
                "direction",
                "the direction is inbound or outbound",
            )),
        }
    }
}

/// Which end of the call a recording's owner is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Party {
    Caller,
    Callee,
}

impl Party {
    fn as_str(self) -> &'static str {
        match self {
            Party::Caller => "caller",
            Party::Callee => "callee",
        }
    }

    fn parse(s: &str) -> Result<Party> {
        match s {
            "caller" => Ok(Party::Caller),
            "callee" => Ok(Party::Callee),
            other => Err(Error::Internal(format!("unknown owner party {other:?}"))),
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Recording {
    pub id: String,
    pub tenant_id: String,
    /// The call record it belongs to: 32 hexadecimal digits.
    pub call_id: String,
    pub direction: Direction,
    /// Seconds of audio, as the uploader stated.
    pub duration: u64,
    /// The party whose key encrypts the recording (its owner): `caller` or `callee`.
    pub owner_party: Party,
    /// The owner.
    pub subject_id: String,
    /// The other party; absent when unknown or erased.
    pub other_subject_id: Option<String>,
    /// The type found in the content: `audio/wav`, `audio/mpeg` or `audio/ogg`.
    pub content_type: String,
    /// Bytes.
    pub size: u64,
    /// The file name the uploader sent, if any.
    pub name: Option<String>,
    /// The call's start (Unix seconds): retention counts from it.
    pub recorded_at: i64,
    /// When retention erases it (Unix seconds), by the policy in force.
    pub expires_at: i64,
    /// When it was uploaded.
    pub created_at: i64,
}

/// What the uploader says about a recording, as sent (validated here).
#[derive(Debug, Clone, Default)]
pub struct Upload {
    /// The call record: 32 hexadecimal digits.
    pub call_id: String,
    /// `inbound` or `outbound`.
    pub direction: String,
    /// Whole seconds of audio.
    pub duration: String,
    /// The `Content-Type` sent; must agree with the content when given.
    pub content_type: Option<String>,
    pub name: Option<String>,
}

/// An upload's fields, checked.
struct Checked {
    call_id: [u8; 16],
    direction: Direction,
    duration: i64,
    name: Option<String>,
}

impl Upload {
    fn check(&self) -> Result<Checked> {
        let call_id = parse_call_id(&self.call_id)?;
        let direction = Direction::parse(&self.direction)?;
        let duration = parse_duration(&self.duration)?;
        let name = files::check_name(self.name.as_deref())?;
        Ok(Checked {
            call_id,
            direction,
            duration,
            name,
        })
    }
}

/// A call id as the API and the command line write it: 32 hexadecimal digits.
pub fn parse_call_id(s: &str) -> Result<[u8; 16]> {
    let bad = || {
        Error::invalid(
            "call_id",
            "a call id is 32 hexadecimal digits (as call record ingest returns them)",
        )
    };
    let b = s.as_bytes();
    if b.len() != 32 {
        return Err(bad());
    }
    let mut id = [0u8; 16];
    for (i, out) in id.iter_mut().enumerate() {
        let hi = hex_digit(b[2 * i]).ok_or_else(bad)?;
        let lo = hex_digit(b[2 * i + 1]).ok_or_else(bad)?;
        *out = (hi << 4) | lo;
    }
    Ok(id)
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// A call id for the API: 32 lower-case hexadecimal digits.
pub fn call_id_text(id: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    id.iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xF)]])
        .map(char::from)
        .collect()
}

fn parse_duration(s: &str) -> Result<i64> {
    let bad = |m: &str| Error::invalid("duration", m.to_owned());
    if s.is_empty() || s.len() > 9 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad(
            "the duration is the recording's length in whole seconds, e.g. 93",
        ));
    }
    s.parse::<i64>()
        .map_err(|_| bad("the duration is the recording's length in whole seconds"))
}

fn use_of(subject_id: &str) -> Use<'_> {
    Use {
        subject_id,
        category: CATEGORY,
        purpose: PURPOSE,
        recipient: None,
    }
}

/// The call a recording belongs to, as far as recordings need it.
struct Call {
    tenant_id: String,
    owner: String,
    owner_party: Party,
    other: Option<String>,
    recorded_at: i64,
}

/// Finds the call `id` for an upload by the actor: in their tenant (404
/// otherwise), agreeing with the stated direction and duration, with a party to
/// own the recording. Checks the uploader's role and both parties' permits.
fn call_for_upload(tx: &mut Tx<'_>, up: &Checked) -> Result<Call> {
    let row = tx
        .conn
        .query_opt(
            "SELECT tenant_id, caller_subject_id, callee_subject_id, direction, duration, \
             start_at FROM call_records WHERE id = $1",
            params![up.call_id.to_vec()],
        )?
        .ok_or_else(|| Error::NotFound("call record".into()))?;
    let tenant_id = row.text(0)?;
    tx.actor.require_tenant(&tenant_id, "call record")?;
    tx.actor.require_role(UPLOADERS, "upload call recordings")?;
    let (caller, callee) = (row.opt_text(1)?, row.opt_text(2)?);
    if let Some(d) = row.opt_text(3)?
        && d != up.direction.as_str()
    {
        return Err(Error::invalid(
            "direction",
            format!(
                "the call record says the call was {d}, not {}",
                up.direction.as_str()
            ),
        ));
    }
    let call_duration = row.i64(4)?;
    if up.duration > call_duration + DURATION_SLACK {
        return Err(Error::invalid(
            "duration",
            format!(
                "a recording of {} s is longer than its call ({call_duration} s)",
                up.duration
            ),
        ));
    }
    // The outside party owns the recording; the other one when it is unknown.
    let (outside, inside, outside_party) = match up.direction {
        Direction::Inbound => (caller, callee, Party::Caller),
        Direction::Outbound => (callee, caller, Party::Callee),
    };
    let (owner, owner_party, other) = match (outside, inside) {
        (Some(o), inside) => (o, outside_party, inside),
        (None, Some(i)) => (i, other_party(outside_party), None),
        (None, None) => {
            return Err(Error::Conflict(
                "the call record names no party (withheld numbers, or erased): a recording \
                 needs someone whose key encrypts it"
                    .into(),
            ));
        }
    };
    let other = other.filter(|o| *o != owner);
    permit_parties(tx, &owner, other.as_deref())?;
    Ok(Call {
        tenant_id,
        owner,
        owner_party,
        other,
        recorded_at: row.i64(5)?,
    })
}

fn other_party(p: Party) -> Party {
    match p {
        Party::Caller => Party::Callee,
        Party::Callee => Party::Caller,
    }
}

/// The shared checks (scope, declared use) for each party of a recording.
fn permit_parties(tx: &mut Tx<'_>, owner: &str, other: Option<&str>) -> Result<()> {
    processing::permit(tx, &use_of(owner))?;
    if let Some(o) = other {
        processing::permit(tx, &use_of(o))?;
    }
    Ok(())
}

/// One audit entry per party of a recording: each person's trail shows it.
fn audit_parties(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    parties: &[&str],
    action: &str,
    detail: serde_json::Value,
) -> Result<()> {
    for p in parties {
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            subject_id: Some((*p).to_owned()),
            action: action.into(),
            category: Some(CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: detail.clone(),
            ..Event::default()
        })?;
    }
    Ok(())
}

/// Stores a recording of a call, streaming `body`.
pub async fn upload<S>(core: Arc<Steward>, actor: Actor, up: Upload, body: S) -> Result<Recording>
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    let checked = Arc::new(up.check()?);
    let (call, key) = {
        let (actor, checked) = (actor.clone(), checked.clone());
        blocking(&core, move |core| {
            let call = core.write(&actor, |tx| call_for_upload(tx, &checked))?;
            let key = core.subject_key(&call.owner)?;
            Ok((call, key))
        })
        .await?
    };
    let id = uuid::Uuid::now_v7().to_string();
    let blob_key = files::blob_key(&call.tenant_id, &call.owner, STORE, &id);
    let accept = Accept {
        max_bytes: core.settings.max_recording_bytes,
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
                // Again at the insert: the call's parties may have changed (an
                // erasure) while the audio streamed in.
                let now = call_for_upload(tx, &checked)?;
                if now.owner != call.owner {
                    return Err(Error::Conflict(
                        "the call's parties changed during the upload; send it again".into(),
                    ));
                }
                let name_enc = fields::seal_opt(
                    &key,
                    "call_recordings.name",
                    &now.owner,
                    checked.name.as_deref(),
                )?;
                tx.conn.execute(
                    "INSERT INTO call_recordings (id, tenant_id, call_record_id, subject_id, \
                     other_subject_id, owner_party, direction, duration, blob_key, content_type, \
                     size, name_enc, recorded_at, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
                    params![
                        id.as_str(),
                        now.tenant_id.as_str(),
                        checked.call_id.to_vec(),
                        now.owner.as_str(),
                        now.other.as_deref(),
                        now.owner_party.as_str(),
                        checked.direction.as_str(),
                        checked.duration,
                        blob_key,
                        stored.content_type,
                        stored.size as i64,
                        name_enc,
                        now.recorded_at,
                        tx.at
                    ],
                )?;
                let parties: Vec<&str> = std::iter::once(now.owner.as_str())
                    .chain(now.other.as_deref())
                    .collect();
                audit_parties(
                    tx,
                    &now.tenant_id,
                    &parties,
                    "create",
                    serde_json::json!({ "recording_id": id, "size": stored.size }),
                )?;
                Ok(Recording {
                    expires_at: expires_at(tx.core, now.recorded_at),
                    id,
                    tenant_id: now.tenant_id,
                    call_id: call_id_text(&checked.call_id),
                    direction: checked.direction,
                    duration: checked.duration as u64,
                    owner_party: now.owner_party,
                    subject_id: now.owner,
                    other_subject_id: now.other,
                    content_type: stored.content_type.to_owned(),
                    size: stored.size,
                    name: checked.name.clone(),
                    recorded_at: now.recorded_at,
                    created_at: tx.at,
                })
            })
        },
    )
    .await
}

fn expires_at(core: &Steward, recorded_at: i64) -> i64 {
    core.policy.retention_for(CATEGORY).expires_at(recorded_at)
}

const COLUMNS: &str = "id, tenant_id, call_record_id, subject_id, other_subject_id, owner_party, \
     direction, duration, blob_key, content_type, size, name_enc, recorded_at, created_at";

/// A row, with its blob key.
struct Stored {
    rec: Recording,
    blob_key: String,
    name_enc: Option<Vec<u8>>,
}

fn from_row(core: &Steward, r: &Row) -> Result<Stored> {
    let recorded_at = r.i64(12)?;
    Ok(Stored {
        rec: Recording {
            id: r.text(0)?,
            tenant_id: r.text(1)?,
            call_id: call_id_text(&r.bytes(2)?),
            subject_id: r.text(3)?,
            other_subject_id: r.opt_text(4)?,
            owner_party: Party::parse(&r.text(5)?)?,
            direction: Direction::parse(&r.text(6)?)
                .map_err(|_| Error::Internal("a stored recording has no direction".into()))?,
            duration: u64::try_from(r.i64(7)?).unwrap_or(0),
            content_type: r.text(9)?,
            size: u64::try_from(r.i64(10)?).unwrap_or(0),
            name: None,
            recorded_at,
            expires_at: expires_at(core, recorded_at),
            created_at: r.i64(13)?,
        },
        blob_key: r.text(8)?,
        name_enc: r.opt_bytes(11)?,
    })
}

impl Stored {
    fn parties(&self) -> Vec<&str> {
        std::iter::once(self.rec.subject_id.as_str())
            .chain(self.rec.other_subject_id.as_deref())
            .collect()
    }

    /// The recording with its file name opened (under the owner's key).
    fn open(mut self, core: &Steward) -> Result<Recording> {
        if let Some(sealed) = &self.name_enc {
            let key = core.subject_key(&self.rec.subject_id)?;
            self.rec.name = Some(fields::open(
                &key,
                "call_recordings.name",
                &self.rec.subject_id,
                sealed,
            )?);
        }
        Ok(self.rec)
    }
}

/// The checks for reading recordings of `tenant_id` naming `parties`: the
/// tenant in scope (404 otherwise), the role allowed by the policy, each party
/// permitted for training and monitoring.
fn permit_read(tx: &mut Tx<'_>, tenant_id: &str, parties: &[&str], what: &str) -> Result<()> {
    tx.actor.require_tenant(tenant_id, what)?;
    processing::require_access_role(tx, CATEGORY, DEFAULT_READERS, "open call recordings")?;
    for p in parties {
        processing::permit(tx, &use_of(p)).map_err(|e| match e {
            Error::NotFound(_) => Error::NotFound(what.to_owned()),
            other => other,
        })?;
    }
    Ok(())
}

/// The recordings of a call, oldest first (audited: one `read` entry per party).
pub fn list(core: &Steward, actor: &Actor, call_id: &str) -> Result<Vec<Recording>> {
    let id = parse_call_id(call_id)?;
    let rows = core.write(actor, |tx| {
        let call = tx
            .conn
            .query_opt(
                "SELECT tenant_id FROM call_records WHERE id = $1",
                params![id.to_vec()],
            )?
            .ok_or_else(|| Error::NotFound("call record".into()))?;
        let tenant_id = call.text(0)?;
        tx.actor.require_tenant(&tenant_id, "call record")?;
        let rows = tx.conn.query(
            &format!(
                "SELECT {COLUMNS} FROM call_recordings WHERE call_record_id = $1 \
                 ORDER BY created_at, id"
            ),
            params![id.to_vec()],
        )?;
        let stored = rows
            .iter()
            .map(|r| from_row(tx.core, r))
            .collect::<Result<Vec<_>>>()?;
        let mut parties: Vec<&str> = stored.iter().flat_map(Stored::parties).collect();
        parties.sort_unstable();
        parties.dedup();
        permit_read(tx, &tenant_id, &parties, "call record")?;
        if !stored.is_empty() {
            let ids: Vec<&str> = stored.iter().map(|s| s.rec.id.as_str()).collect();
            audit_parties(
                tx,
                &tenant_id,
                &parties,
                "read",
                serde_json::json!({ "recordings": ids }),
            )?;
        }
        Ok(stored)
    })?;
    rows.into_iter().map(|s| s.open(core)).collect()
}

/// One recording, checked for reading, with its blob key; writes the `read`
/// entries (`what` says what was read: metadata or content).
fn read_one(tx: &mut Tx<'_>, recording_id: &str, what: &str) -> Result<Stored> {
    let row = tx
        .conn
        .query_opt(
            &format!("SELECT {COLUMNS} FROM call_recordings WHERE id = $1"),
            params![recording_id],
        )?
        .ok_or_else(|| Error::NotFound("call recording".into()))?;
    let stored = from_row(tx.core, &row)?;
    let parties = stored.parties();
    permit_read(tx, &stored.rec.tenant_id, &parties, "call recording")?;
    audit_parties(
        tx,
        &stored.rec.tenant_id,
        &parties,
        "read",
        serde_json::json!({ "recording_id": recording_id, "read": what }),
    )?;
    Ok(stored)
}

/// A recording's metadata (audited).
pub fn get(core: &Steward, actor: &Actor, recording_id: &str) -> Result<Recording> {
    core.write(actor, |tx| read_one(tx, recording_id, "metadata"))?
        .open(core)
}

/// A recording and its audio, decrypted as it streams (audited: playback and
/// download are the same read).
pub async fn download(
    core: Arc<Steward>,
    actor: Actor,
    recording_id: String,
) -> Result<(Recording, BoxStream<'static, io::Result<Bytes>>)> {
    let (rec, key, blob_key) = blocking(&core, move |core| {
        let stored = core.write(&actor, |tx| read_one(tx, &recording_id, "content"))?;
        let blob_key = stored.blob_key.clone();
        let rec = stored.open(core)?;
        let key = core.subject_key(&rec.subject_id)?;
        Ok((rec, key, blob_key))
    })
    .await?;
    let stream = files::open(&core.blobs, &key, &blob_key).await?;
    Ok((rec, stream))
}

/// Deletes a recording and its file (audited per party).
pub fn delete(core: &Steward, actor: &Actor, recording_id: &str) -> Result<()> {
    core.write(actor, |tx| {
        let row = tx
            .conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM call_recordings WHERE id = $1"),
                params![recording_id],
            )?
            .ok_or_else(|| Error::NotFound("call recording".into()))?;
        let stored = from_row(tx.core, &row)?;
        tx.actor
            .require_tenant(&stored.rec.tenant_id, "call recording")?;
        tx.actor.require_role(DELETERS, "delete call recordings")?;
        let parties = stored.parties();
        permit_parties(
            tx,
            &stored.rec.subject_id,
            stored.rec.other_subject_id.as_deref(),
        )?;
        tx.conn.execute(
            "DELETE FROM call_recordings WHERE id = $1",
            params![recording_id],
        )?;
        tx.delete_blob_after_commit(&stored.blob_key)?;
        audit_parties(
            tx,
            &stored.rec.tenant_id,
            &parties,
            "delete",
            serde_json::json!({ "recording_id": recording_id }),
        )
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn call_ids_round_trip_as_hex() {
        let id = [
            0x80, 0, 0, 0, 0x69, 0x1a, 0x2b, 0x3c, 1, 2, 3, 4, 5, 6, 0xfe, 0xff,
        ];
        let text = call_id_text(&id);
        assert_eq!(text, "80000000691a2b3c010203040506feff");
        assert_eq!(parse_call_id(&text).unwrap(), id);
        assert_eq!(parse_call_id(&text.to_uppercase()).unwrap(), id);
        for bad in [
            "",
            "80",
            &text[..31],
            &format!("{text}0"),
            &text.replace('8', "g"),
        ] {
            let e = parse_call_id(bad).unwrap_err();
            assert_eq!(e.field(), Some("call_id"), "{bad}");
        }
    }

    #[test]
    fn durations_are_whole_seconds() {
        assert_eq!(parse_duration("0").unwrap(), 0);
        assert_eq!(parse_duration("93").unwrap(), 93);
        for bad in ["", "-1", "1.5", "93s", " 93", "1e3", "9999999999", "+5"] {
            assert_eq!(
                parse_duration(bad).unwrap_err().field(),
                Some("duration"),
                "{bad}"
            );
        }
        assert!(Direction::parse("Inbound").is_err());
        assert_eq!(Direction::parse("outbound").unwrap(), Direction::Outbound);
    }
}
