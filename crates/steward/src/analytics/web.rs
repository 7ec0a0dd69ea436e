//! Cookie consent and website visits (policy category `web_analytics`).
//!
//! **Visitors.** The website gives each browser a random visitor id in a cookie
//! (a strictly necessary cookie: it remembers the visitor's choice). Steward never
//! stores that id: a visitor is a subject of kind `visitor` in the provider's
//! tenant, found by the blind index of the id (`IdentifierKind::Other("visitor")`,
//! column `subjects.visitor_idx`). The subject is created on the first choice that
//! grants something; a visitor who refuses everything is not recorded at all (the
//! banner's own cookie remembers the refusal, and nothing about them needs proving).
//!
//! **Choices.** The banner sends `necessary` (always true), `analytics` and
//! `marketing`. They are recorded in the consent ledger (channel `web`) as the
//! `web_analytics` uses the policy makes consentable:
//!
//! | Banner switch | `web_analytics` purposes |
//! |---|---|
//! | analytics | `research_statistics`, `service_improvement` |
//! | marketing | `marketing`, `profiling` |
//!
//! Only changes are appended (re-sending the same choice adds nothing). Turning
//! analytics off records the withdrawals first, then deletes every visit stored
//! for the visitor (audited as `delete`, with the row count): processing stops
//! and what it produced goes. (The ledger's own operation opens its own
//! transactions, so these are separate steps: a visit whose transaction checked
//! consent just before the withdrawal committed can land after the deletion.
//! The next visit reported for the visitor is refused and removes it, as it
//! removes visits left by a withdrawal recorded elsewhere, by staff from a letter
//! say; at the latest, retention removes it.)
//!
//! **Visits.** [`collect`] stores a page visit only while standing consent is in
//! force for every analytics purpose the policy declares for `web_analytics`,
//! checked by `processing::permit` inside the transaction that inserts the row;
//! otherwise nothing is stored and the answer says so. What is kept is what the
//! privacy statement lists, minimised: the page as a path (query string and
//! fragment dropped: they often carry identifiers), the referring domain (not the
//! URL), the IP address (from the connection), the browser as family, major
//! version, operating system and device class (not the whole user agent, which is
//! close to a fingerprint), and the time to the second, each sealed with the
//! visitor's data key. The internet provider's domain is not looked up: a reverse
//! DNS query would send the IP address to a resolver. No audit entry is written
//! per visit (the consent ledger shows the basis; the rows are the record), and
//! visits do not restart the visitor's retention clock: `web_visits` rows expire
//! 13 months after collection (the policy's retention for `web_analytics`).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use steward_crypto::IdentifierKind;
use steward_store::params;
use utoipa::ToSchema;

use crate::access::{Actor, ActorKind, Role};
use crate::audit::Event;
use crate::consent::{self, Action, Channel, Record};
use crate::core::{Steward, fields};
use crate::error::{Error, Result};
use crate::processing::{self, Use};
use crate::subjects::{self, NewSubject, SubjectKind};
use crate::tenants::PROVIDER_TENANT;

/// The policy category of website visits and cookies.
pub const CATEGORY: &str = "web_analytics";

/// The blind-index kind of visitor ids.
pub const VISITOR_ID_KIND: IdentifierKind = IdentifierKind::Other("visitor");

/// `web_analytics` purposes the banner's analytics switch stands for.
pub const ANALYTICS_PURPOSES: &[&str] = &["research_statistics", "service_improvement"];

/// `web_analytics` purposes the banner's marketing switch stands for.
pub const MARKETING_PURPOSES: &[&str] = &["marketing", "profiling"];

/// A visitor id is 16 to 128 characters of `A-Z a-z 0-9 - _` (a UUID, or
/// base64url of at least 12 random bytes).
pub const VISITOR_ID_MIN: usize = 16;
pub const VISITOR_ID_MAX: usize = 128;
/// Longest page or referrer URL accepted.
pub const MAX_URL: usize = 2048;
/// Longest page path kept (after the query string and fragment are dropped).
pub const MAX_PATH: usize = 512;
/// Longest user agent accepted.
pub const MAX_USER_AGENT: usize = 1024;

const EVIDENCE: &str = "website cookie banner";

/// The cookie banner's choice.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CookieChoice {
    /// The random id in the visitor's cookie (16 to 128 of `A-Za-z0-9-_`).
    pub visitor_id: String,
    /// Strictly necessary cookies need no consent and cannot be refused: must be true.
    pub necessary: bool,
    pub analytics: bool,
    pub marketing: bool,
}

/// One ledger entry a choice appended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Change {
    pub purpose: String,
    pub action: Action,
}

/// What a choice did.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ConsentOutcome {
    /// Whether Steward keeps a record of this visitor (false for a visitor who
    /// refused everything and was never recorded).
    pub recorded: bool,
    pub necessary: bool,
    pub analytics: bool,
    pub marketing: bool,
    /// Grants and withdrawals appended to the consent ledger (only changes).
    pub changes: Vec<Change>,
    /// Stored visits deleted because analytics consent is off.
    pub visits_deleted: u64,
}

/// A page visit as the website reports it.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Visit {
    pub visitor_id: String,
    /// The page: a path (`/pricing`) or an absolute http(s) URL; only the path is kept.
    pub page: String,
    /// The referring URL; only its domain is kept.
    pub referrer: Option<String>,
    /// The browser's user agent; only family, major version, system and device
    /// class are kept. Default: the request's `User-Agent` header.
    pub user_agent: Option<String>,
}

/// Whether a visit was stored.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct VisitOutcome {
    pub stored: bool,
}

/// A visit reduced to what is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CleanVisit {
    pub page: String,
    pub referrer_domain: Option<String>,
    pub browser: Option<String>,
    pub ip: Option<String>,
}

pub fn check_visitor_id(id: &str) -> Result<()> {
    let ok = (VISITOR_ID_MIN..=VISITOR_ID_MAX).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "visitor_id",
            format!(
                "a visitor id is {VISITOR_ID_MIN} to {VISITOR_ID_MAX} characters of A-Z, a-z, 0-9, - and _"
            ),
        ))
    }
}

fn check_text(field: &str, s: &str, max: usize) -> Result<()> {
    if s.chars().count() > max {
        return Err(Error::invalid(field, format!("at most {max} characters")));
    }
    if s.chars().any(char::is_control) {
        return Err(Error::invalid(field, "control characters are not allowed"));
    }
    Ok(())
}

/// The part after `http://` or `https://` (any case), if `s` has that scheme.
fn after_scheme(s: &str) -> Option<&str> {
    let (scheme, rest) = s.split_once("://")?;
    (scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")).then_some(rest)
}

/// Splits `authority/path?query#fragment` after the scheme.
fn split_authority(rest: &str) -> (&str, &str) {
    match rest.find(['/', '?', '#']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    }
}

/// The page as a path, without query string or fragment.
pub fn page_path(raw: &str) -> Result<String> {
    check_text("page", raw, MAX_URL)?;
    let raw = raw.trim();
    let path_and_more = if let Some(rest) = after_scheme(raw) {
        let (authority, tail) = split_authority(rest);
        if authority.is_empty() {
            return Err(Error::invalid("page", "the URL has no host"));
        }
        tail
    } else if raw.starts_with('/') && !raw.starts_with("//") {
        raw
    } else {
        return Err(Error::invalid(
            "page",
            "expected a path starting with / or an absolute http(s) URL",
        ));
    };
    let path = match path_and_more.find(['?', '#']) {
        Some(i) => &path_and_more[..i],
        None => path_and_more,
    };
    let path = if path.is_empty() { "/" } else { path };
    if path.chars().count() > MAX_PATH {
        return Err(Error::invalid(
            "page",
            format!("the page's path has at most {MAX_PATH} characters"),
        ));
    }
    Ok(path.to_owned())
}

/// The referring domain (lower case, without port or user info), if any.
pub fn referrer_domain(raw: Option<&str>) -> Result<Option<String>> {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return Ok(None);
    };
    check_text("referrer", raw, MAX_URL)?;
    let bad = || Error::invalid("referrer", "expected an absolute http(s) URL");
    let rest = after_scheme(raw).ok_or_else(bad)?;
    let (authority, _) = split_authority(rest);
    let host = authority.rsplit('@').next().unwrap_or(authority);
    let host = if host.starts_with('[') {
        // An IPv6 literal: up to the closing bracket.
        let end = host.find(']').ok_or_else(bad)?;
        let inner = &host[1..end];
        if inner.is_empty()
            || !inner
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return Err(bad());
        }
        &host[..=end]
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            Some(_) => return Err(bad()),
            None => host,
        }
    };
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let valid = !host.is_empty()
        && host.len() <= 253
        && (host.starts_with('[')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !valid {
        return Err(bad());
    }
    Ok(Some(host))
}

/// The browser as `family major; system; device class`: enough for the
/// statement's "identity of your browser or device", without the full user
/// agent string.
pub fn browser_of(ua: &str) -> String {
    let major = |token: &str| -> Option<String> {
        let i = ua.find(token)? + token.len();
        let v: String = ua[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .take(4)
            .collect();
        (!v.is_empty()).then_some(v)
    };
    let first = |tokens: &[&str]| tokens.iter().find_map(|t| major(t));
    let lower = ua.to_ascii_lowercase();
    let (family, version) = if let Some(v) = first(&["Edg/", "EdgA/", "EdgiOS/"]) {
        ("Edge", Some(v))
    } else if let Some(v) = first(&["OPR/", "Opera/"]) {
        ("Opera", Some(v))
    } else if let Some(v) = major("SamsungBrowser/") {
        ("Samsung Internet", Some(v))
    } else if let Some(v) = first(&["Firefox/", "FxiOS/"]) {
        ("Firefox", Some(v))
    } else if let Some(v) = first(&["CriOS/", "Chrome/"]) {
        ("Chrome", Some(v))
    } else if ua.contains("Safari/") {
        ("Safari", major("Version/"))
    } else {
        ("other", None)
    };
    let system = if ua.contains("Windows") {
        "Windows"
    } else if ua.contains("iPhone") || ua.contains("iPad") || ua.contains("iPod") {
        "iOS"
    } else if ua.contains("Android") {
        "Android"
    } else if ua.contains("CrOS") {
        "ChromeOS"
    } else if ua.contains("Macintosh") || ua.contains("Mac OS X") {
        "macOS"
    } else if ua.contains("Linux") {
        "Linux"
    } else {
        "other"
    };
    let device = if ["bot", "spider", "crawl"].iter().any(|b| lower.contains(b)) {
        "bot"
    } else if ua.contains("iPad")
        || ua.contains("Tablet")
        || (ua.contains("Android") && !ua.contains("Mobile"))
    {
        "tablet"
    } else if ua.contains("Mobi") || ua.contains("iPhone") {
        "mobile"
    } else {
        "desktop"
    };
    match version {
        Some(v) => format!("{family} {v}; {system}; {device}"),
        None => format!("{family}; {system}; {device}"),
    }
}

/// Checks a reported visit and reduces it to what is kept. `user_agent_header`
/// is used when the body names no user agent; `ip` is the connection's address.
pub fn clean(
    visit: &Visit,
    user_agent_header: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<CleanVisit> {
    check_visitor_id(&visit.visitor_id)?;
    let page = page_path(&visit.page)?;
    let referrer_domain = referrer_domain(visit.referrer.as_deref())?;
    let browser = match visit.user_agent.as_deref() {
        Some(ua) => {
            check_text("user_agent", ua, MAX_USER_AGENT)?;
            Some(ua)
        }
        // A header that is too long or odd is not the visitor's fault: ignore it.
        None => user_agent_header.filter(|ua| check_text("user_agent", ua, MAX_USER_AGENT).is_ok()),
    }
    .map(str::trim)
    .filter(|ua| !ua.is_empty())
    .map(browser_of);
    Ok(CleanVisit {
        page,
        referrer_domain,
        browser,
        ip: ip.map(|a| a.to_canonical().to_string()),
    })
}

/// The subject acting for themself through the website. It is not an account:
/// it may do only what a subject may do about their own data.
fn visitor_actor(tenant: &str, subject_id: &str) -> Actor {
    Actor {
        audit_id: format!("web:{subject_id}"),
        kind: ActorKind::Account(Role::Subject),
        account_id: None,
        tenant_id: Some(tenant.to_owned()),
        subject_id: Some(subject_id.to_owned()),
        provider_staff: false,
    }
}

/// The `web_analytics` purposes among `wanted` that the policy lets subjects consent to.
fn consentable(core: &Steward, wanted: &[&str]) -> Vec<String> {
    let uses = core.policy.consentable_uses();
    wanted
        .iter()
        .filter(|p| {
            uses.iter()
                .any(|u| u.category == CATEGORY && u.purpose == **p)
        })
        .map(|p| (*p).to_owned())
        .collect()
}

/// The analytics purposes the policy declares for `web_analytics`; a visit is
/// stored only when every one of them is allowed (consented to, where needed).
fn analytics_purposes(core: &Steward) -> Vec<String> {
    core.policy
        .category(CATEGORY)
        .map(|c| {
            c.purposes
                .iter()
                .filter(|p| ANALYTICS_PURPOSES.contains(&p.as_str()))
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// The visitor (subject id and tenant) behind a visitor id, if recorded.
fn find_visitor(core: &Steward, visitor_id: &str) -> Result<Option<(String, String)>> {
    let idx = core.keys.blind_index(VISITOR_ID_KIND, visitor_id);
    let row = core.db.read(|c| {
        c.query_opt(
            "SELECT id, tenant_id FROM subjects WHERE visitor_idx = $1",
            params![idx],
        )
    })?;
    row.map(|r| Ok((r.text(0)?, r.text(1)?))).transpose()
}

/// Records a new visitor: a subject of kind `visitor` in the provider's tenant,
/// holding only the blind index of their id. Returns `(subject id, tenant)`.
fn create_visitor(core: &Steward, visitor_id: &str) -> Result<(String, String)> {
    let idx = core.keys.blind_index(VISITOR_ID_KIND, visitor_id);
    let system = Actor::system("web");
    let mut created: Option<String> = None;
    let res = core.write(&system, |tx| {
        // Another request for the same visitor may have been first.
        if let Some(r) = tx.conn.query_opt(
            "SELECT id FROM subjects WHERE visitor_idx = $1",
            params![idx.clone()],
        )? {
            return r.text(0).map_err(Into::into);
        }
        let none = subjects::normalize_new(tx.core, &NewSubject::default())?;
        let id = subjects::insert(tx, PROVIDER_TENANT, SubjectKind::Visitor, &none)?;
        created = Some(id.clone());
        tx.conn.execute(
            "UPDATE subjects SET visitor_idx = $1 WHERE id = $2",
            params![idx.clone(), id.as_str()],
        )?;
        tx.audit(Event {
            tenant_id: Some(PROVIDER_TENANT.to_owned()),
            subject_id: Some(id.clone()),
            action: "subject.create".into(),
            category: Some("consent_records".into()),
            purpose: Some("accountability".into()),
            detail: serde_json::json!({ "kind": "visitor", "source": "cookie banner" }),
            ..Event::default()
        })?;
        Ok(id)
    });
    match res {
        Ok(id) => Ok((id, PROVIDER_TENANT.to_owned())),
        Err(e) => {
            // The row was rolled back: the key made for it is destroyed.
            if let Some(id) = created {
                core.keys.shred_subject_key(&id)?;
            }
            match e {
                // Lost a race (PostgreSQL): the winner's subject is used.
                Error::Conflict(_) => find_visitor(core, visitor_id)?
                    .ok_or_else(|| Error::Conflict("visitor was recorded concurrently".into())),
                e => Err(e),
            }
        }
    }
}

/// Deletes every stored visit of a subject (audited with the count).
fn delete_visits(core: &Steward, actor: &Actor, subject_id: &str, reason: &str) -> Result<u64> {
    let stored = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT COUNT(*) FROM web_visits WHERE subject_id = $1",
                params![subject_id],
            )
        })?
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0);
    if stored == 0 {
        return Ok(0);
    }
    core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        let n = tx.conn.execute(
            "DELETE FROM web_visits WHERE subject_id = $1",
            params![subject_id],
        )?;
        if n > 0 {
            tx.audit(Event {
                tenant_id: Some(tenant),
                subject_id: Some(subject_id.to_owned()),
                action: "delete".into(),
                category: Some(CATEGORY.into()),
                detail: serde_json::json!({ "store": "web_visits", "rows": n, "reason": reason }),
                ..Event::default()
            })?;
        }
        Ok(n)
    })
}

/// Records the cookie banner's choice for a visitor (public: the visitor id is
/// the credential). See the module documentation for what each switch means.
pub fn set_consent(core: &Steward, choice: &CookieChoice) -> Result<ConsentOutcome> {
    check_visitor_id(&choice.visitor_id)?;
    if !choice.necessary {
        return Err(Error::invalid(
            "necessary",
            "strictly necessary cookies (the one remembering this choice among them) need no \
             consent and cannot be switched off: send true",
        ));
    }
    let analytics_uses = consentable(core, ANALYTICS_PURPOSES);
    let marketing_uses = consentable(core, MARKETING_PURPOSES);
    if choice.analytics && analytics_uses.is_empty() {
        return Err(Error::invalid(
            "analytics",
            format!("the policy has no analytics purpose of {CATEGORY} that takes consent"),
        ));
    }
    if choice.marketing && marketing_uses.is_empty() {
        return Err(Error::invalid(
            "marketing",
            format!("the policy has no marketing purpose of {CATEGORY} that takes consent"),
        ));
    }
    let (subject_id, tenant) = match find_visitor(core, &choice.visitor_id)? {
        Some(v) => v,
        None if !choice.analytics && !choice.marketing => {
            return Ok(ConsentOutcome {
                recorded: false,
                necessary: true,
                analytics: false,
                marketing: false,
                changes: Vec::new(),
                visits_deleted: 0,
            });
        }
        None => create_visitor(core, &choice.visitor_id)?,
    };
    let actor = visitor_actor(&tenant, &subject_id);
    let (states, _) = consent::overview(core, &actor, &subject_id)?;
    let mut changes = Vec::new();
    // Withdrawals first, so that processing stops before anything new starts.
    let mut wanted: Vec<(&String, bool)> = analytics_uses
        .iter()
        .map(|p| (p, choice.analytics))
        .chain(marketing_uses.iter().map(|p| (p, choice.marketing)))
        .collect();
    wanted.sort_by_key(|(_, want)| *want);
    for (purpose, want) in wanted {
        let granted = states
            .iter()
            .any(|s| s.category == CATEGORY && s.purpose == *purpose && s.granted);
        if granted == want {
            continue;
        }
        let action = if want {
            Action::Grant
        } else {
            Action::Withdraw
        };
        consent::record(
            core,
            &actor,
            Record {
                subject_id: subject_id.clone(),
                category: CATEGORY.to_owned(),
                purpose: purpose.clone(),
                action,
                channel: Channel::Web,
                evidence: Some(EVIDENCE.to_owned()),
            },
        )?;
        changes.push(Change {
            purpose: purpose.clone(),
            action,
        });
    }
    let visits_deleted = if choice.analytics {
        0
    } else {
        delete_visits(core, &actor, &subject_id, "analytics consent withdrawn")?
    };
    Ok(ConsentOutcome {
        recorded: true,
        necessary: true,
        analytics: choice.analytics,
        marketing: choice.marketing,
        changes,
        visits_deleted,
    })
}

/// Stores a reported visit if its visitor has analytics consent in force;
/// otherwise stores nothing. Malformed input is refused before anything is read.
pub fn collect(
    core: &Steward,
    visit: &Visit,
    user_agent_header: Option<&str>,
    ip: Option<IpAddr>,
) -> Result<VisitOutcome> {
    let clean = clean(visit, user_agent_header, ip)?;
    let stored = match find_visitor(core, &visit.visitor_id)? {
        None => false,
        Some((subject_id, _)) => collect_for_subject(core, &subject_id, &clean)?,
    };
    let label = if stored { "true" } else { "false" };
    metrics::counter!("steward_web_visits_total", "stored" => label).increment(1);
    Ok(VisitOutcome { stored })
}

/// Stores a visit for a known subject (a visitor found by their cookie, or a
/// subject whose website visits are linked to them otherwise) if analytics
/// consent is in force. Returns whether it was stored. Without consent, visits
/// stored before a withdrawal recorded elsewhere (staff, by phone or letter)
/// are deleted as well.
pub fn collect_for_subject(core: &Steward, subject_id: &str, visit: &CleanVisit) -> Result<bool> {
    let tenant = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT tenant_id FROM subjects WHERE id = $1",
                params![subject_id],
            )
        })?
        .map(|r| r.text(0))
        .transpose()?;
    let Some(tenant) = tenant else {
        return Ok(false);
    };
    let purposes = analytics_purposes(core);
    if purposes.is_empty() {
        return Ok(false);
    }
    let actor = visitor_actor(&tenant, subject_id);
    let res = core.write(&actor, |tx| {
        for purpose in &purposes {
            processing::permit(
                tx,
                &Use {
                    subject_id,
                    category: CATEGORY,
                    purpose,
                    recipient: None,
                },
            )?;
        }
        let key = tx.core.subject_key(subject_id)?;
        let seal = |field: &str, v: Option<&str>| {
            fields::seal_opt(&key, &format!("web_visits.{field}"), subject_id, v)
        };
        let id = uuid::Uuid::now_v7().to_string();
        tx.conn.execute(
            "INSERT INTO web_visits (id, subject_id, tenant_id, at, page_enc, referrer_domain_enc, \
             ip_enc, browser_enc) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            params![
                id.as_str(),
                subject_id,
                tenant.as_str(),
                tx.at,
                fields::seal(&key, "web_visits.page", subject_id, &visit.page)?,
                seal("referrer_domain", visit.referrer_domain.as_deref())?,
                seal("ip", visit.ip.as_deref())?,
                seal("browser", visit.browser.as_deref())?
            ],
        )?;
        Ok(())
    });
    match res {
        Ok(()) => Ok(true),
        // No consent, or the subject (or their key) went in the meantime.
        Err(Error::ConsentRequired { .. } | Error::NotFound(_)) => {
            delete_visits(core, &actor, subject_id, "no analytics consent")?;
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(r: Result<impl std::fmt::Debug>) -> Option<String> {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            _ => None,
        }
    }

    #[test]
    fn visitor_ids() {
        assert!(check_visitor_id("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a").is_ok());
        assert!(check_visitor_id("AbCdEfGhIjKlMnOp").is_ok());
        for bad in [
            "short",
            "has space in it 123",
            "ümlaut-ümlaut-ümlaut",
            &"a".repeat(129),
        ] {
            assert_eq!(
                field(check_visitor_id(bad)).as_deref(),
                Some("visitor_id"),
                "{bad}"
            );
        }
    }

    #[test]
    fn pages_keep_the_path_only() {
        let ok = |s: &str| page_path(s).ok();
        assert_eq!(ok("/pricing").as_deref(), Some("/pricing"));
        assert_eq!(
            ok("/pricing?email=a@b.test#top").as_deref(),
            Some("/pricing")
        );
        assert_eq!(
            ok("https://www.example.test/a/b?x=1").as_deref(),
            Some("/a/b")
        );
        assert_eq!(ok("HTTPS://www.example.test").as_deref(), Some("/"));
        assert_eq!(ok("https://www.example.test?x=1").as_deref(), Some("/"));
        for bad in [
            "pricing",
            "//evil.test/x",
            "ftp://x.test/",
            "https:///x",
            "/a\nb",
        ] {
            assert_eq!(field(page_path(bad)).as_deref(), Some("page"), "{bad}");
        }
        assert!(page_path(&format!("/{}", "a".repeat(MAX_PATH))).is_err());
        assert!(page_path(&format!("/{}", "a".repeat(MAX_URL))).is_err());
    }

    #[test]
    fn referrers_keep_the_domain_only() {
        let ok = |s: &str| referrer_domain(Some(s)).ok().flatten();
        assert_eq!(
            ok("https://Search.Example.TEST/q?name=jane").as_deref(),
            Some("search.example.test")
        );
        assert_eq!(
            ok("http://user:pw@news.example.test:8080/a").as_deref(),
            Some("news.example.test")
        );
        assert_eq!(
            ok("https://[2001:db8::1]:443/x").as_deref(),
            Some("[2001:db8::1]")
        );
        assert_eq!(referrer_domain(None).ok().flatten(), None);
        assert_eq!(referrer_domain(Some("  ")).ok().flatten(), None);
        for bad in [
            "search.example.test",
            "javascript:alert(1)",
            "https://exa mple.test/",
            "https://x.test:abc/",
        ] {
            assert_eq!(
                field(referrer_domain(Some(bad))).as_deref(),
                Some("referrer"),
                "{bad}"
            );
        }
    }

    #[test]
    fn browsers_are_reduced() {
        let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        assert_eq!(browser_of(firefox), "Firefox 128; Linux; desktop");
        let iphone = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 \
                      (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
        assert_eq!(browser_of(iphone), "Safari 17; iOS; mobile");
        let edge = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) \
                    Chrome/126.0.0.0 Safari/537.36 Edg/126.0.2592.87";
        assert_eq!(browser_of(edge), "Edge 126; Windows; desktop");
        let android = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) \
                       Chrome/126.0.6478.71 Mobile Safari/537.36";
        assert_eq!(browser_of(android), "Chrome 126; Android; mobile");
        assert_eq!(browser_of("curl/8.5.0"), "other; other; desktop");
        assert_eq!(
            browser_of("Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"),
            "other; other; bot"
        );
    }
}
