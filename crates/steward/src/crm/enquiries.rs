//! Enquiries (policy category `contact_details`, purpose `answer_enquiries`,
//! legitimate interest): "whenever you complete an online form or make a
//! telephone enquiry".
//!
//! **Intake.** The website's form ([`submit_web`], public) and staff recording
//! an enquiry received by telephone, email or letter ([`record`]) both go to
//! one path: the input is checked and normalised before anything is read; the
//! person is found among the tenant's `contact` subjects by the blind index of
//! their email, or, when they gave no email, of one of their phone numbers; if
//! nobody matches, a new contact is created (with its own data key). The
//! enquiry row keeps the channel and, sealed with the contact's key, everything
//! the person gave with it: name, email, phone numbers, postal address, topic
//! and message. Web-form enquiries always go to the provider's own tenant.
//!
//! Staff spoke with the person, so a staff-recorded enquiry is matched more
//! widely (any subject of the tenant: an app user, the external party of
//! earlier calls; by email, then by phone) and fills in an identifier the
//! record lacks (email, phone, name). A web-form submission never changes an
//! existing record and is never matched by phone when it gives an email:
//! anyone can type anyone's details into a form, and a record that gained a
//! stranger's email would later answer an access request made with it.
//!
//! **Abuse.** The form's answer is the same whether the person was known or
//! not (`{"received": true, "reference": …}`); a honeypot field filled in by a
//! bot gets that same answer and nothing is stored. Body size and the rate per
//! address are limited in the API (`api/enquiries.rs`).
//!
//! **Marketing consent** ticked on the form (or given on the phone) goes to the
//! consent ledger as `contact_details`/`marketing`, with the enquiry's channel.
//! A tick on a web form is not proof that the address's owner ticked it: the
//! evidence says "address not verified" (see docs/ARCHITECTURE.md, "Enquiries,
//! marketing and credit checks"). It never lifts a "no further contact"
//! suppression: the export still leaves a suppressed address out.
//!
//! **Reading.** Listing and reading enquiries is for operators and DPOs in the
//! tenant; each is checked by `processing::permit` for `answer_enquiries` and
//! audited as a `read` of the contact.

use serde::{Deserialize, Serialize};
use steward_crypto::{IdentifierKind, normalize};
use steward_store::{Row, params};
use utoipa::ToSchema;

use super::{CONTACT_CATEGORY, EnquiryChannel, person_actor, required_text, text};
use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::consent::{self, Action, Record};
use crate::core::{Steward, Tx, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects::{self, NewSubject, SubjectKind};
use crate::tenants::PROVIDER_TENANT;

/// The purpose enquiries are kept and read for.
pub const PURPOSE: &str = "answer_enquiries";

pub const MAX_NAME: usize = 200;
pub const MAX_TOPIC: usize = 200;
pub const MAX_POSTAL_ADDRESS: usize = 500;
pub const MAX_MESSAGE: usize = 5000;
pub const MAX_PHONES: usize = 3;
/// Most enquiries one list call returns.
pub const MAX_PAGE: i64 = 100;

/// How the website's form appears in the audit log: `system:enquiry-form`.
pub const FORM_JOB: &str = "enquiry-form";

/// The website's enquiry form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebEnquiry {
    /// 1 to 200 characters.
    pub name: String,
    /// An email address or at least one phone number is required, to answer.
    pub email: Option<String>,
    /// Up to 3 phone numbers; without a country code they are read in the
    /// default region (`--default-region`).
    #[serde(default)]
    pub phones: Vec<String>,
    /// Up to 500 characters; line breaks allowed.
    pub postal_address: Option<String>,
    /// Up to 200 characters.
    pub topic: Option<String>,
    /// 1 to 5000 characters; line breaks allowed.
    pub message: String,
    /// "Keep me informed": consent to marketing (`contact_details`/`marketing`).
    #[serde(default)]
    pub marketing_consent: bool,
    /// A honeypot: a field the form hides from people. When it is filled in
    /// the answer is the usual one and nothing is stored.
    pub website: Option<String>,
}

/// An enquiry received by telephone, email or letter, recorded by staff.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StaffEnquiry {
    pub name: String,
    /// `phone`, `email` or `letter` (web enquiries come through the form).
    pub channel: EnquiryChannel,
    pub email: Option<String>,
    #[serde(default)]
    pub phones: Vec<String>,
    pub postal_address: Option<String>,
    pub topic: Option<String>,
    pub message: String,
    /// When it was received (Unix seconds, not in the future); default now.
    pub received_at: Option<i64>,
    /// The person agreed, on this channel, to hear about services by email.
    #[serde(default)]
    pub marketing_consent: bool,
}

/// The form's answer: the same whether or not the person was known.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Received {
    pub received: bool,
    /// A reference to quote when following up.
    pub reference: String,
}

/// An enquiry, decrypted.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Enquiry {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    pub channel: EnquiryChannel,
    pub received_at: i64,
    /// Audit id of who recorded it (`system:enquiry-form` for the website).
    pub recorded_by: String,
    pub name: String,
    pub email: Option<String>,
    /// E.164.
    pub phones: Vec<String>,
    pub postal_address: Option<String>,
    pub topic: Option<String>,
    pub message: String,
    /// Whether this call created the contact (only in the answer to `record`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_contact: Option<bool>,
}

/// One line of the enquiry list.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnquirySummary {
    pub id: String,
    pub tenant_id: String,
    pub subject_id: String,
    pub channel: EnquiryChannel,
    pub received_at: i64,
    pub name: String,
    pub topic: Option<String>,
}

/// An enquiry's fields, checked and normalised.
#[derive(Debug, Clone)]
struct Clean {
    channel: EnquiryChannel,
    name: String,
    email: Option<String>,
    phones: Vec<String>,
    postal_address: Option<String>,
    topic: Option<String>,
    message: String,
    received_at: Option<i64>,
    marketing_consent: bool,
}

#[allow(clippy::too_many_arguments)]
fn clean(
    core: &Steward,
    channel: EnquiryChannel,
    name: &str,
    email: Option<&str>,
    phones: &[String],
    postal_address: Option<&str>,
    topic: Option<&str>,
    message: &str,
    received_at: Option<i64>,
    marketing_consent: bool,
) -> Result<Clean> {
    let name = required_text("name", name, MAX_NAME, false)?;
    let email = match email.map(str::trim).filter(|e| !e.is_empty()) {
        None => None,
        Some(e) => Some(normalize::email(e).map_err(|e| Error::invalid("email", e.to_string()))?),
    };
    if phones.len() > MAX_PHONES {
        return Err(Error::invalid(
            "phones",
            format!("at most {MAX_PHONES} phone numbers"),
        ));
    }
    let mut normalized = Vec::with_capacity(phones.len());
    for (i, p) in phones.iter().enumerate() {
        let n = normalize::phone(p, &core.settings.default_region)
            .map_err(|e| Error::invalid(&format!("phones[{i}]"), e.to_string()))?;
        if !normalized.contains(&n) {
            normalized.push(n);
        }
    }
    if email.is_none() && normalized.is_empty() {
        return Err(Error::invalid(
            "email",
            "give an email address or a phone number, so that the enquiry can be answered",
        ));
    }
    let postal_address = text("postal_address", postal_address, MAX_POSTAL_ADDRESS, true)?;
    let topic = text("topic", topic, MAX_TOPIC, false)?;
    let message = required_text("message", message, MAX_MESSAGE, true)?;
    Ok(Clean {
        channel,
        name,
        email,
        phones: normalized,
        postal_address,
        topic,
        message,
        received_at,
        marketing_consent,
    })
}

/// Records an enquiry from the website's form in the provider's tenant. The
/// answer does not say whether the person was known. Malformed input is
/// refused (400, naming the field) before anything is read or stored.
pub fn submit_web(core: &Steward, form: &WebEnquiry) -> Result<Received> {
    let clean = clean(
        core,
        EnquiryChannel::Web,
        &form.name,
        form.email.as_deref(),
        &form.phones,
        form.postal_address.as_deref(),
        form.topic.as_deref(),
        &form.message,
        None,
        form.marketing_consent,
    )?;
    if form
        .website
        .as_deref()
        .is_some_and(|w| !w.trim().is_empty())
    {
        // A bot filled in the hidden field: the usual answer, nothing stored.
        metrics::counter!("steward_web_enquiries_total", "stored" => "false").increment(1);
        return Ok(Received {
            received: true,
            reference: uuid::Uuid::now_v7().to_string(),
        });
    }
    let actor = Actor::system(FORM_JOB);
    let (enquiry, _) = intake(core, &actor, PROVIDER_TENANT, &clean, false)?;
    metrics::counter!("steward_web_enquiries_total", "stored" => "true").increment(1);
    Ok(Received {
        received: true,
        reference: enquiry,
    })
}

/// Records an enquiry staff received by telephone, email or letter (operators
/// and DPOs, in a tenant they see). Returns it, decrypted.
pub fn record(core: &Steward, actor: &Actor, tenant_id: &str, e: &StaffEnquiry) -> Result<Enquiry> {
    actor.require_role(&[Role::Operator, Role::Dpo], "record enquiries")?;
    if e.channel == EnquiryChannel::Web {
        return Err(Error::invalid(
            "channel",
            "web enquiries come through the website's form: use phone, email or letter",
        ));
    }
    let now = crate::clock::now();
    if let Some(at) = e.received_at
        && !(1..=now + 300).contains(&at)
    {
        return Err(Error::invalid(
            "received_at",
            "a time in Unix seconds, not in the future",
        ));
    }
    let clean = clean(
        core,
        e.channel,
        &e.name,
        e.email.as_deref(),
        &e.phones,
        e.postal_address.as_deref(),
        e.topic.as_deref(),
        &e.message,
        e.received_at,
        e.marketing_consent,
    )?;
    actor.require_tenant(tenant_id, "tenant")?;
    let (id, new_contact) = intake(core, actor, tenant_id, &clean, true)?;
    let row = core
        .db
        .read(|c| {
            c.query_opt(
                &format!("SELECT {COLUMNS} FROM enquiries WHERE id = $1"),
                params![id.as_str()],
            )
        })?
        .ok_or_else(|| Error::Internal("the enquiry just recorded is missing".into()))?;
    let mut enquiry = decrypt(core, &row)?;
    enquiry.new_contact = Some(new_contact);
    Ok(enquiry)
}

/// The shared intake: finds or creates the contact and stores the enquiry in
/// one transaction, then records marketing consent if it was given. Returns
/// the enquiry id and whether the contact is new.
fn intake(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    clean: &Clean,
    by_staff: bool,
) -> Result<(String, bool)> {
    let keys = &core.keys;
    let email_idx = clean
        .email
        .as_deref()
        .map(|e| keys.blind_index(IdentifierKind::Email, e));
    let phone_idxs: Vec<Vec<u8>> = clean
        .phones
        .iter()
        .map(|p| keys.blind_index(IdentifierKind::Phone, p))
        .collect();
    let mut created: Option<String> = None;
    let res = core.write(actor, |tx| {
        if tx.conn.query_opt("SELECT 1 FROM tenants WHERE id = $1", params![tenant_id])?.is_none() {
            return Err(Error::NotFound("tenant".into()));
        }
        let found = find_person(tx, tenant_id, email_idx.as_deref(), &phone_idxs, by_staff)?;
        let (subject_id, new_contact) = match found {
            Some(id) => {
                if by_staff {
                    fill_in(tx, &id, clean)?;
                }
                (id, false)
            }
            None => {
                let n = subjects::normalize_new(
                    tx.core,
                    &NewSubject {
                        email: clean.email.clone(),
                        phone: clean.phones.first().cloned(),
                        name: Some(clean.name.clone()),
                    },
                )?;
                let id = subjects::insert(tx, tenant_id, SubjectKind::Contact, &n)?;
                created = Some(id.clone());
                tx.audit(Event {
                    tenant_id: Some(tenant_id.to_owned()),
                    subject_id: Some(id.clone()),
                    action: "subject.create".into(),
                    category: Some(CONTACT_CATEGORY.into()),
                    purpose: Some(PURPOSE.into()),
                    detail: serde_json::json!({ "kind": "contact", "source": clean.channel.as_str() }),
                    ..Event::default()
                })?;
                (id, true)
            }
        };
        let permit = processing::permit(
            tx,
            &Use {
                subject_id: &subject_id,
                category: CONTACT_CATEGORY,
                purpose: PURPOSE,
                recipient: None,
            },
        )?;
        let id = uuid::Uuid::now_v7().to_string();
        let key = tx.core.subject_key(&subject_id)?;
        let seal = |field: &str, v: Option<&str>| {
            fields::seal_opt(&key, &format!("enquiries.{field}"), &subject_id, v)
        };
        let phones = if clean.phones.is_empty() {
            None
        } else {
            Some(serde_json::to_string(&clean.phones).map_err(|e| Error::Internal(e.to_string()))?)
        };
        tx.conn.execute(
            "INSERT INTO enquiries (id, tenant_id, subject_id, channel, received_at, recorded_by, \
             name_enc, email_enc, phones_enc, postal_address_enc, topic_enc, message_enc) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            params![
                id.as_str(),
                tenant_id,
                subject_id.as_str(),
                clean.channel.as_str(),
                clean.received_at.unwrap_or(tx.at),
                tx.actor.audit_id.as_str(),
                seal("name", Some(&clean.name))?,
                seal("email", clean.email.as_deref())?,
                seal("phones", phones.as_deref())?,
                seal("postal_address", clean.postal_address.as_deref())?,
                seal("topic", clean.topic.as_deref())?,
                seal("message", Some(&clean.message))?
            ],
        )?;
        tx.audit(Event {
            tenant_id: Some(permit.tenant),
            subject_id: Some(subject_id.clone()),
            action: "enquiry.receive".into(),
            category: Some(CONTACT_CATEGORY.into()),
            purpose: Some(PURPOSE.into()),
            detail: serde_json::json!({
                "enquiry_id": id, "channel": clean.channel.as_str(), "new_contact": new_contact,
            }),
            ..Event::default()
        })?;
        subjects::touch(tx, &subject_id)?;
        Ok((id, subject_id, new_contact))
    });
    let (id, subject_id, new_contact) = match res {
        Ok(v) => v,
        Err(e) => {
            // The contact's row was rolled back: the key made for it goes too.
            if let Some(id) = created {
                core.keys.shred_subject_key(&id)?;
            }
            return Err(e);
        }
    };
    if clean.marketing_consent {
        grant_marketing(core, actor, tenant_id, &subject_id, &id, clean.channel)?;
    }
    Ok((id, new_contact))
}

/// The person an enquiry is from: the tenant's oldest subject with this email
/// or, failing that, one of these phone numbers.
///
/// From the web form only `contact` subjects are candidates, and phone numbers
/// only count when no email was given: a stranger typing someone's number
/// next to their own email must not land on that person's record. Staff, who
/// spoke with the person, also find the tenant's other subjects (an app user,
/// the external party of earlier calls) and fall back to the phone numbers.
fn find_person(
    tx: &mut Tx<'_>,
    tenant_id: &str,
    email_idx: Option<&[u8]>,
    phone_idxs: &[Vec<u8>],
    by_staff: bool,
) -> Result<Option<String>> {
    let mut lookups: Vec<(&str, &[u8])> = email_idx.map(|e| ("email_idx", e)).into_iter().collect();
    if by_staff || email_idx.is_none() {
        lookups.extend(phone_idxs.iter().map(|p| ("phone_idx", p.as_slice())));
    }
    let kind = if by_staff {
        ""
    } else {
        "AND kind = 'contact' "
    };
    for (col, idx) in lookups {
        if let Some(r) = tx.conn.query_opt(
            &format!(
                "SELECT id FROM subjects WHERE tenant_id = $1 {kind}AND {col} = $2 \
                 ORDER BY created_at, id LIMIT 1"
            ),
            params![tenant_id, idx],
        )? {
            return Ok(Some(r.text(0)?));
        }
    }
    Ok(None)
}

/// Fills in the identifiers a contact's record lacks (staff-recorded enquiries).
fn fill_in(tx: &mut Tx<'_>, subject_id: &str, clean: &Clean) -> Result<()> {
    let row = tx
        .conn
        .query_opt(
            "SELECT email_idx, phone_idx, name_enc FROM subjects WHERE id = $1",
            params![subject_id],
        )?
        .ok_or_else(|| Error::NotFound("subject".into()))?;
    let key = tx.core.subject_key(subject_id)?;
    let keys = &tx.core.keys;
    if row.opt_bytes(0)?.is_none()
        && let Some(e) = &clean.email
    {
        tx.conn.execute(
            "UPDATE subjects SET email_enc = $1, email_idx = $2 WHERE id = $3",
            params![
                fields::seal(&key, "subjects.email", subject_id, e)?,
                keys.blind_index(IdentifierKind::Email, e),
                subject_id
            ],
        )?;
    }
    if row.opt_bytes(1)?.is_none()
        && let Some(p) = clean.phones.first()
    {
        tx.conn.execute(
            "UPDATE subjects SET phone_enc = $1, phone_idx = $2 WHERE id = $3",
            params![
                fields::seal(&key, "subjects.phone", subject_id, p)?,
                keys.blind_index(IdentifierKind::Phone, p),
                subject_id
            ],
        )?;
    }
    if row.opt_bytes(2)?.is_none() {
        tx.conn.execute(
            "UPDATE subjects SET name_enc = $1 WHERE id = $2",
            params![
                fields::seal(&key, "subjects.name", subject_id, &clean.name)?,
                subject_id
            ],
        )?;
    }
    Ok(())
}

/// Records marketing consent given with an enquiry, unless it is in force already.
fn grant_marketing(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    subject_id: &str,
    enquiry_id: &str,
    channel: EnquiryChannel,
) -> Result<()> {
    // On the website the person gives their own consent; staff record consent
    // given to them.
    let person;
    let (who, evidence) = if channel == EnquiryChannel::Web {
        person = person_actor(tenant_id, subject_id);
        (
            &person,
            format!("website enquiry form, enquiry {enquiry_id} (address not verified)"),
        )
    } else {
        (actor, format!("given with enquiry {enquiry_id}"))
    };
    let granted = super::marketing::consent_in_force(core, subject_id)?;
    if granted {
        return Ok(());
    }
    consent::record(
        core,
        who,
        Record {
            subject_id: subject_id.to_owned(),
            category: CONTACT_CATEGORY.into(),
            purpose: super::marketing::PURPOSE.into(),
            action: Action::Grant,
            channel: channel.consent_channel(),
            evidence: Some(evidence),
        },
    )?;
    Ok(())
}

const COLUMNS: &str = "id, tenant_id, subject_id, channel, received_at, recorded_by, name_enc, \
                       email_enc, phones_enc, postal_address_enc, topic_enc, message_enc";

fn decrypt(core: &Steward, r: &Row) -> Result<Enquiry> {
    let subject_id = r.text(2)?;
    let key = core.subject_key(&subject_id)?;
    let open = |i: usize, field: &str| -> Result<Option<String>> {
        fields::open_opt(
            &key,
            &format!("enquiries.{field}"),
            &subject_id,
            r.opt_bytes(i)?.as_deref(),
        )
    };
    let phones = match open(8, "phones")? {
        None => Vec::new(),
        Some(j) => serde_json::from_str(&j)
            .map_err(|e| Error::Internal(format!("enquiries.phones is not a list: {e}")))?,
    };
    Ok(Enquiry {
        id: r.text(0)?,
        tenant_id: r.text(1)?,
        channel: EnquiryChannel::parse(&r.text(3)?)?,
        received_at: r.i64(4)?,
        recorded_by: r.text(5)?,
        name: open(6, "name")?.unwrap_or_default(),
        email: open(7, "email")?,
        phones,
        postal_address: open(9, "postal_address")?,
        topic: open(10, "topic")?,
        message: open(11, "message")?.unwrap_or_default(),
        new_contact: None,
        subject_id,
    })
}

/// Checks and audits a staff read of a contact's enquiries, inside `tx`.
fn audit_read(tx: &mut Tx<'_>, subject_id: &str, ids: &[String]) -> Result<()> {
    let permit = processing::permit(
        tx,
        &Use {
            subject_id,
            category: CONTACT_CATEGORY,
            purpose: PURPOSE,
            recipient: None,
        },
    )?;
    tx.audit(Event {
        tenant_id: Some(permit.tenant),
        subject_id: Some(subject_id.to_owned()),
        action: "read".into(),
        category: Some(CONTACT_CATEGORY.into()),
        purpose: Some(PURPOSE.into()),
        detail: serde_json::json!({ "enquiries": ids }),
        ..Event::default()
    })?;
    Ok(())
}

/// One enquiry, decrypted (operators and DPOs of its tenant; audited).
pub fn get(core: &Steward, actor: &Actor, enquiry_id: &str) -> Result<Enquiry> {
    actor.require_role(&[Role::Operator, Role::Dpo], "read enquiries")?;
    let row = core.write(actor, |tx| {
        let row = tx
            .conn
            .query_opt(
                &format!("SELECT {COLUMNS} FROM enquiries WHERE id = $1"),
                params![enquiry_id],
            )?
            .ok_or_else(|| Error::NotFound("enquiry".into()))?;
        actor.require_tenant(&row.text(1)?, "enquiry")?;
        audit_read(tx, &row.text(2)?, &[enquiry_id.to_owned()])?;
        Ok(row)
    })?;
    decrypt(core, &row)
}

/// A tenant's enquiries, newest recorded first, `limit` (1 to 100) at a time
/// after the enquiry `before` (operators and DPOs; each contact listed is
/// audited as read).
pub fn list(
    core: &Steward,
    actor: &Actor,
    tenant_id: &str,
    before: Option<&str>,
    limit: Option<i64>,
) -> Result<Vec<EnquirySummary>> {
    actor.require_role(&[Role::Operator, Role::Dpo], "list enquiries")?;
    let limit = limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(Error::invalid("limit", format!("from 1 to {MAX_PAGE}")));
    }
    actor.require_tenant(tenant_id, "tenant")?;
    let rows = core.write(actor, |tx| {
        if tx
            .conn
            .query_opt("SELECT 1 FROM tenants WHERE id = $1", params![tenant_id])?
            .is_none()
        {
            return Err(Error::NotFound("tenant".into()));
        }
        let rows = match before {
            None => tx.conn.query(
                &format!(
                    "SELECT {COLUMNS} FROM enquiries WHERE tenant_id = $1 ORDER BY id DESC LIMIT $2"
                ),
                params![tenant_id, limit],
            )?,
            Some(b) => tx.conn.query(
                &format!(
                    "SELECT {COLUMNS} FROM enquiries WHERE tenant_id = $1 AND id < $2 \
                     ORDER BY id DESC LIMIT $3"
                ),
                params![tenant_id, b, limit],
            )?,
        };
        let mut by_subject: std::collections::BTreeMap<String, Vec<String>> = Default::default();
        for r in &rows {
            by_subject.entry(r.text(2)?).or_default().push(r.text(0)?);
        }
        for (subject, ids) in &by_subject {
            audit_read(tx, subject, ids)?;
        }
        Ok(rows)
    })?;
    rows.iter()
        .map(|r| {
            let e = decrypt(core, r)?;
            Ok(EnquirySummary {
                id: e.id,
                tenant_id: e.tenant_id,
                subject_id: e.subject_id,
                channel: e.channel,
                received_at: e.received_at,
                name: e.name,
                topic: e.topic,
            })
        })
        .collect()
}

/// The email addresses and phone numbers (normalised) a subject gave with their
/// enquiries: "no further contact" suppresses these too.
pub(crate) fn identifiers_of(
    core: &Steward,
    subject_id: &str,
) -> Result<(Vec<String>, Vec<String>)> {
    let rows = core.db.read(|c| {
        c.query(
            &format!("SELECT {COLUMNS} FROM enquiries WHERE subject_id = $1"),
            params![subject_id],
        )
    })?;
    let mut emails = Vec::new();
    let mut phones = Vec::new();
    for r in &rows {
        let e = decrypt(core, r)?;
        emails.extend(e.email);
        phones.extend(e.phones);
    }
    emails.sort();
    emails.dedup();
    phones.sort();
    phones.dedup();
    Ok((emails, phones))
}
