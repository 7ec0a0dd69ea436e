//! Who a call record concerns. Each party's value as the PBX wrote it (`src`,
//! `dst`, `caller_id_number`, …) becomes a [`PartyKey`]:
//!
//! * a **phone number** (digits and `+ - ( ) .` and spaces only) normalised to
//!   E.164 with the configured default region, found through `subjects.phone_idx`:
//!   a tenant user whose phone is that number, else an existing subject of the tenant
//!   with that number, else a new `external_party` subject holding it;
//! * any **other identifier** (an extension such as `1001`, a SIP user, an IMSI, a
//!   short code), trimmed and lower-cased, found through `subjects.party_idx` (a
//!   blind index of kind `other:pbx_party`): a user whose extension it is
//!   ([`set_extension`]), else the subject created the first time the tenant's PBX
//!   named it;
//! * **nobody**: an empty value, a withheld marker (`anonymous`, `unknown`,
//!   `restricted`, `private`, `withheld`, `unavailable`, `blocked`) or one of
//!   Asterisk's special one-letter extensions (`s`, `h`, `i`, `t`, `o`, `a`, `e`).
//!   Nothing about that side of the call is stored, as there is no one whose key
//!   could seal it.
//!
//! Matching is per tenant; a user wins over other subjects with the same number,
//! then the oldest. Parties are cached for the run (bounded), so each distinct
//! party costs one look-up and one key-store read, or, when new, one key-store
//! write; the new subjects' rows are inserted by the caller in the same
//! transaction as the first call records naming them.

use std::collections::HashMap;
use std::sync::Arc;

use steward_crypto::{DataKey, IdentifierKind, normalize};
use steward_store::{Value, params, placeholders};

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::subjects;
use crate::tenants::{self, TenantLock};

/// Parties kept before the cache is emptied (memory stays bounded on files with
/// millions of distinct parties).
const MAX_CACHED: usize = 200_000;
/// Blind indexes per look-up query.
const LOOKUP_CHUNK: usize = 500;
/// The longest identifier kept as a party (longer values are cut here first).
const MAX_IDENTIFIER: usize = 128;

const NOBODY: [&str; 14] = [
    "anonymous",
    "unknown",
    "restricted",
    "private",
    "withheld",
    "unavailable",
    "blocked",
    "s",
    "h",
    "i",
    "t",
    "o",
    "a",
    "e",
];

/// The columns of a new subject row, as [`Parties::resolve`] builds them.
pub(crate) const SUBJECT_COLUMNS: [&str; 8] = [
    "id",
    "tenant_id",
    "kind",
    "phone_enc",
    "phone_idx",
    "party_idx",
    "created_at",
    "last_engagement_at",
];

/// A party as Steward recognises it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PartyKey {
    /// A phone number, E.164.
    Phone(String),
    /// Another PBX identifier (extension, SIP user, IMSI), trimmed and lower-cased.
    Pbx(String),
}

/// The party a PBX value names, if any (see the module documentation).
pub fn party_key(raw: &[u8], default_region: &str) -> Option<PartyKey> {
    let text = String::from_utf8_lossy(raw.trim_ascii());
    let mut text: &str = &text;
    if let Some(inner) = text.strip_prefix('<').and_then(|t| t.strip_suffix('>')) {
        text = inner.trim();
    }
    if text.is_empty() {
        return None;
    }
    let lower = text.to_lowercase();
    if NOBODY.contains(&lower.as_str()) {
        return None;
    }
    let phone_like = lower
        .chars()
        .all(|c| c.is_ascii_digit() || " +-().".contains(c))
        && lower.chars().any(|c| c.is_ascii_digit());
    if phone_like && let Ok(e164) = normalize::phone(&lower, default_region) {
        return Some(PartyKey::Phone(e164));
    }
    let mut end = lower.len().min(MAX_IDENTIFIER);
    while !lower.is_char_boundary(end) {
        end -= 1;
    }
    Some(PartyKey::Pbx(lower[..end].to_owned()))
}

pub(crate) fn blind_index(core: &Steward, key: &PartyKey) -> Vec<u8> {
    match key {
        PartyKey::Phone(p) => core.keys.blind_index(IdentifierKind::Phone, p),
        PartyKey::Pbx(x) => core.keys.blind_index(IdentifierKind::Other("pbx_party"), x),
    }
}

/// A linked subject and its data key.
pub(crate) struct Party {
    pub id: Arc<str>,
    pub key: DataKey,
}

struct Slot {
    key: PartyKey,
    party: Option<Party>,
}

/// A party of the current batch: an index into the cache.
pub(crate) type SlotId = usize;

/// The parties of one tenant, resolved and cached for one ingest run.
pub(crate) struct Parties {
    tenant_id: String,
    region: String,
    by_raw: HashMap<Vec<u8>, Option<SlotId>>,
    by_key: HashMap<PartyKey, SlotId>,
    slots: Vec<Slot>,
    /// Subjects created so far.
    pub created: u64,
    /// Seconds spent per step (for the debug log): look-ups, reading existing
    /// subjects' keys, creating keys.
    pub timings: [f64; 3],
}

impl Parties {
    pub fn new(core: &Steward, tenant_id: &str) -> Parties {
        Parties {
            tenant_id: tenant_id.to_owned(),
            region: core.settings.default_region.clone(),
            by_raw: HashMap::new(),
            by_key: HashMap::new(),
            slots: Vec::new(),
            created: 0,
            timings: [0.0; 3],
        }
    }

    /// Call before a batch: empties the cache when it has grown too large, and then
    /// says so (slot ids of earlier batches no longer mean the same party).
    pub fn begin_batch(&mut self) -> bool {
        if self.slots.len() >= MAX_CACHED || self.by_raw.len() >= MAX_CACHED {
            self.by_raw.clear();
            self.by_key.clear();
            self.slots.clear();
            return true;
        }
        false
    }

    /// The party a raw value names (cached: normalising a number is the slow part).
    pub fn slot_of(&mut self, raw: &[u8]) -> Option<SlotId> {
        if let Some(s) = self.by_raw.get(raw) {
            return *s;
        }
        let slot = party_key(raw, &self.region).map(|k| match self.by_key.get(&k) {
            Some(s) => *s,
            None => {
                self.slots.push(Slot {
                    key: k.clone(),
                    party: None,
                });
                self.by_key.insert(k, self.slots.len() - 1);
                self.slots.len() - 1
            }
        });
        self.by_raw.insert(raw.to_vec(), slot);
        slot
    }

    pub fn key(&self, slot: SlotId) -> Option<&PartyKey> {
        self.slots.get(slot).map(|s| &s.key)
    }

    pub fn party(&self, slot: SlotId) -> Option<&Party> {
        self.slots.get(slot).and_then(|s| s.party.as_ref())
    }

    /// Resolves every slot in `wanted` not resolved yet: found in the tenant, or
    /// new. Returns the rows of the new subjects ([`SUBJECT_COLUMNS`]), which the
    /// caller must insert before (or with) the records that name them.
    pub fn resolve(
        &mut self,
        core: &Steward,
        wanted: impl IntoIterator<Item = SlotId>,
        at: i64,
    ) -> Result<Vec<Vec<Value>>> {
        let mut missing: Vec<SlotId> = wanted
            .into_iter()
            .filter(|s| self.slots.get(*s).is_some_and(|x| x.party.is_none()))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if missing.is_empty() {
            return Ok(Vec::new());
        }
        let indexes: Vec<Vec<u8>> = missing
            .iter()
            .filter_map(|s| self.slots.get(*s))
            .map(|s| blind_index(core, &s.key))
            .collect();
        let t = std::time::Instant::now();
        let found = self.look_up(core, &missing, &indexes)?;
        self.timings[0] += t.elapsed().as_secs_f64();

        // Existing subjects: their keys (an erased subject's row may linger
        // without a key: such a party gets a new subject).
        let t = std::time::Instant::now();
        let existing: Vec<(SlotId, String)> = missing
            .iter()
            .zip(&indexes)
            .filter_map(|(s, idx)| found.get(idx).map(|id| (*s, id.clone())))
            .collect();
        let ids: Vec<String> = existing.iter().map(|(_, id)| id.clone()).collect();
        let keys = core.keys.subject_keys(&ids)?;
        let mut resolved = std::collections::HashSet::new();
        for ((slot, id), key) in existing.into_iter().zip(keys) {
            if let (Some(key), Some(s)) = (key, self.slots.get_mut(slot)) {
                s.party = Some(Party { id: id.into(), key });
                resolved.insert(slot);
            }
        }
        self.timings[1] += t.elapsed().as_secs_f64();

        // New subjects: keys first (as subjects::insert does), rows for the caller.
        let t = std::time::Instant::now();
        let new: Vec<(SlotId, &Vec<u8>)> = missing
            .iter()
            .zip(&indexes)
            .filter(|(s, _)| !resolved.contains(*s))
            .map(|(s, idx)| (*s, idx))
            .collect();
        let ids: Vec<String> = new
            .iter()
            .map(|_| uuid::Uuid::now_v7().to_string())
            .collect();
        let keys = core.keys.create_subject_keys(&ids)?;
        let mut rows = Vec::with_capacity(new.len());
        for (((slot, idx), id), key) in new.into_iter().zip(ids).zip(keys) {
            let Some(s) = self.slots.get_mut(slot) else {
                continue;
            };
            let (phone_enc, phone_idx, party_idx) = match &s.key {
                PartyKey::Phone(p) => (
                    Value::Bytes(fields::seal(&key, "subjects.phone", &id, p)?),
                    Value::Bytes(idx.clone()),
                    Value::Null,
                ),
                PartyKey::Pbx(_) => (Value::Null, Value::Null, Value::Bytes(idx.clone())),
            };
            rows.push(vec![
                Value::Text(id.clone()),
                Value::Text(self.tenant_id.clone()),
                Value::Text(subjects::SubjectKind::ExternalParty.as_str().to_owned()),
                phone_enc,
                phone_idx,
                party_idx,
                Value::Int(at),
                Value::Int(at),
            ]);
            s.party = Some(Party { id: id.into(), key });
        }
        self.created += rows.len() as u64;
        self.timings[2] += t.elapsed().as_secs_f64();
        Ok(rows)
    }

    /// Subject ids of the tenant by blind index; a user wins over other kinds,
    /// then the oldest subject.
    fn look_up(
        &self,
        core: &Steward,
        slots: &[SlotId],
        indexes: &[Vec<u8>],
    ) -> Result<HashMap<Vec<u8>, String>> {
        let mut found = HashMap::new();
        for column in ["phone_idx", "party_idx"] {
            let wanted: Vec<&Vec<u8>> = slots
                .iter()
                .zip(indexes)
                .filter(|(s, _)| {
                    self.key(**s)
                        .is_some_and(|k| matches!(k, PartyKey::Phone(_)) == (column == "phone_idx"))
                })
                .map(|(_, i)| i)
                .collect();
            for chunk in wanted.chunks(LOOKUP_CHUNK) {
                let sql = format!(
                    "SELECT id, {column} FROM subjects WHERE tenant_id = $1 AND {column} IN ({}) \
                     ORDER BY CASE kind WHEN 'user' THEN 0 ELSE 1 END, created_at, id",
                    placeholders(2, chunk.len())
                );
                let mut values = Vec::with_capacity(chunk.len() + 1);
                values.push(Value::from(self.tenant_id.as_str()));
                values.extend(chunk.iter().map(|i| Value::Bytes((*i).clone())));
                let rows = core.db.read(|c| c.query(&sql, &values))?;
                for r in rows {
                    found.entry(r.bytes(1)?).or_insert(r.text(0)?);
                }
            }
        }
        Ok(found)
    }
}

/// The audit entry for subjects created while ingesting.
pub(crate) fn created_event(tenant_id: &str, count: usize) -> Event {
    Event {
        tenant_id: Some(tenant_id.to_owned()),
        action: "subject.create".into(),
        category: Some("contact_details".into()),
        purpose: Some("provision".into()),
        detail: serde_json::json!({
            "kind": "external_party", "count": count, "source": "call records",
        }),
        ..Event::default()
    }
}

/// Records a user's PBX extension (or clears it with `None`), so that call
/// records naming that extension link to the user. Only its blind index is kept.
pub fn set_extension(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    extension: Option<&str>,
) -> Result<()> {
    actor.require_role(&[Role::TenantAdmin, Role::Operator], "set extensions")?;
    let idx = match extension {
        None => None,
        Some(e) => match party_key(e.as_bytes(), &core.settings.default_region) {
            Some(k @ PartyKey::Pbx(_)) if e.trim().chars().count() <= 64 => {
                Some(blind_index(core, &k))
            }
            Some(PartyKey::Phone(_)) => {
                return Err(Error::invalid(
                    "extension",
                    "that is a phone number: record it as the user's phone number instead",
                ));
            }
            _ => {
                return Err(Error::invalid(
                    "extension",
                    "an extension has 1 to 64 characters and is not a withheld marker such as \
                     'anonymous' or a special extension such as 's'",
                ));
            }
        },
    };
    core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        actor.require_subject(&tenant, subject_id)?;
        let kind = tx
            .conn
            .query_opt(
                "SELECT kind FROM subjects WHERE id = $1",
                params![subject_id],
            )?
            .ok_or_else(|| Error::NotFound("subject".into()))?
            .text(0)?;
        if kind != subjects::SubjectKind::User.as_str() {
            return Err(Error::invalid(
                "subject",
                "only a tenant's users have extensions",
            ));
        }
        // One user per extension in a tenant: a call to it must name one person.
        // The lock keeps two requests for the same extension from both passing.
        tenants::lock(tx.conn, TenantLock::Extensions, &tenant)?;
        if let Some(idx) = &idx
            && tx
                .conn
                .query_opt(
                    "SELECT id FROM subjects WHERE tenant_id = $1 AND party_idx = $2 \
                     AND kind = $3 AND id <> $4",
                    params![
                        tenant.as_str(),
                        idx.clone(),
                        subjects::SubjectKind::User.as_str(),
                        subject_id
                    ],
                )?
                .is_some()
        {
            return Err(Error::Conflict(
                "another user of this tenant has that extension".into(),
            ));
        }
        tx.conn.execute(
            "UPDATE subjects SET party_idx = $1 WHERE id = $2",
            params![idx.clone(), subject_id],
        )?;
        tx.audit(Event {
            tenant_id: Some(tenant),
            subject_id: Some(subject_id.to_owned()),
            action: "subject.update".into(),
            category: Some("contact_details".into()),
            purpose: Some("provision".into()),
            detail: serde_json::json!({ "field": "extension", "cleared": idx.is_none() }),
            ..Event::default()
        })?;
        Ok(())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn parties_from_pbx_values() {
        let gb = "GB";
        assert_eq!(
            party_key(b" 07700 900123 ", gb),
            Some(PartyKey::Phone("+447700900123".into()))
        );
        assert_eq!(
            party_key(b"+44 (0)20 7946 0000", gb),
            Some(PartyKey::Phone("+442079460000".into()))
        );
        assert_eq!(party_key(b"1001", gb), Some(PartyKey::Pbx("1001".into())));
        assert_eq!(
            party_key(b"IMSI510555550000087", gb),
            Some(PartyKey::Pbx("imsi510555550000087".into()))
        );
        assert_eq!(party_key(b"test", gb), Some(PartyKey::Pbx("test".into())));
        for nobody in [&b""[..], b"  ", b"Anonymous", b"<unknown>", b"s", b"h"] {
            assert_eq!(party_key(nobody, gb), None, "{nobody:?}");
        }
        // Not UTF-8: still a party, under its lossy text.
        assert!(matches!(party_key(b"caf\xe9", gb), Some(PartyKey::Pbx(_))));
    }
}
