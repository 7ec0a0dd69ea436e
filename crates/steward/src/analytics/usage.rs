//! App usage statistics: consent-gated and anonymous from the outset.
//!
//! The App sends how often features were used (`dialpad` 3 times, …), its
//! version and its platform. [`submit`] checks, inside one transaction, that the
//! signed-in user has consent in force for every purpose the policy declares for
//! `usage_statistics` (the default policy: `research_statistics` and
//! `service_improvement`; the counters serve both and cannot be split by purpose
//! later, so both are needed), and then adds the counts to day-level counters in
//! `usage_stats`. Without consent the transaction rolls back: nothing is stored.
//!
//! What is stored is only `(day, feature, platform, app_version) → count`:
//!
//! * no user, subject, account, session or device id, no IP address, and no
//!   time finer than the day (UTC, taken from the server's clock, not the App's);
//! * no tenant id: the tenant is the employer, not the person, but a tenant with
//!   one App user (or one user on a rare platform) would make its counters that
//!   person's usage;
//! * no free text: features come from the fixed list [`FEATURES`], platforms
//!   from [`PLATFORMS`], versions must look like `4.2` or `4.2.1`, counts are
//!   bounded. A field that could carry an identifier does not exist.
//!
//! Deliberately not written:
//!
//! * no audit entry per submission: an entry naming the user at the moment
//!   counters moved would itself link the person to their usage (and its
//!   time). Consent is demonstrated by the consent ledger, and the volume by the
//!   `steward_usage_statistics_submissions_total` metric, which carries only
//!   the outcome;
//! * no `subjects::touch`: the retention clock's new value would be a per-user
//!   timestamp of App usage;
//! * nothing in the logs: the request log names the route template only.
//!
//! Reports ([`report`]) are for the provider's operators and DPO. They list the
//! stored cells at that one granularity; every cell counting fewer than
//! [`MIN_CELL`] shows as suppressed without its number. There are no totals,
//! subtotals or other groupings, and the cells of one day are the same whatever
//! range is asked for, so no subtraction (of a total, or of two overlapping
//! ranges) recovers a suppressed cell.

use serde::{Deserialize, Serialize};
use steward_store::params;
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::clock::now;
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::processing::{self, Use};

use super::{day_of, parse_day};

/// The policy category these statistics belong to.
pub const CATEGORY: &str = "usage_statistics";

/// Cells counting fewer than this are suppressed in reports.
pub const MIN_CELL: i64 = 10;

/// Features the App may report. A fixed list rather than a pattern: a pattern
/// such as `[a-z_]+` would let a (buggy or hostile) App send `user_jsmith`.
/// Add a feature here when the App gains one.
pub const FEATURES: &[&str] = &[
    "call_forwarding",
    "call_history",
    "call_hold",
    "call_incoming",
    "call_outgoing",
    "call_recording",
    "call_transfer",
    "chat",
    "chat_attachment",
    "conference",
    "contacts_business",
    "contacts_device",
    "dialpad",
    "do_not_disturb",
    "presence",
    "screen_share",
    "settings",
    "sms",
    "video_call",
    "voicemail",
];

/// Platforms the App runs on.
pub const PLATFORMS: &[&str] = &["android", "ios", "linux", "macos", "web", "windows"];

/// At most this many events per submission.
pub const MAX_EVENTS: usize = 50;

/// A count per event is 1 to this.
pub const MAX_COUNT: i64 = 1000;

/// Days one report may span.
pub const MAX_REPORT_DAYS: i64 = 366;

/// One feature and how often it was used since the App's last submission.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UsageEvent {
    /// One of the known features (dialpad, chat, voicemail, …).
    pub feature: String,
    /// 1 to 1000.
    pub count: i64,
}

/// What the App sends.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// 1 to 50 events, each feature at most once.
    pub events: Vec<UsageEvent>,
    /// `major.minor` or `major.minor.patch`, digits only (`4.2.1`).
    pub app_version: String,
    /// android, ios, linux, macos, web or windows.
    pub platform: String,
}

/// The answer to a submission: what was added, to which day.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Submitted {
    pub stored: bool,
    /// The UTC day the counts were added to.
    pub day: String,
    pub events: usize,
}

/// One cell of a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Cell {
    pub day: String,
    pub feature: String,
    pub platform: String,
    pub app_version: String,
    /// The count; `null` when the cell is suppressed.
    pub count: Option<i64>,
    /// The cell counts fewer than `min_count` and its number is not shown.
    pub suppressed: bool,
}

/// Usage between two days. No totals: see the module documentation.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Report {
    pub from: String,
    pub to: String,
    /// Cells counting fewer than this are suppressed.
    pub min_count: i64,
    pub cells: Vec<Cell>,
}

fn check_version(v: &str) -> bool {
    let parts: Vec<&str> = v.split('.').collect();
    (2..=3).contains(&parts.len())
        && parts
            .iter()
            .all(|p| (1..=4).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Checks a submission field by field; the error names the field at fault.
pub fn validate(s: &Submission) -> Result<()> {
    if s.events.is_empty() {
        return Err(Error::invalid("events", "send at least one event"));
    }
    if s.events.len() > MAX_EVENTS {
        return Err(Error::invalid(
            "events",
            format!("at most {MAX_EVENTS} events per submission"),
        ));
    }
    for (i, e) in s.events.iter().enumerate() {
        if !FEATURES.contains(&e.feature.as_str()) {
            return Err(Error::invalid(
                &format!("events[{i}].feature"),
                format!("unknown feature: expected one of {}", FEATURES.join(", ")),
            ));
        }
        if s.events[..i].iter().any(|o| o.feature == e.feature) {
            return Err(Error::invalid(
                &format!("events[{i}].feature"),
                "each feature at most once per submission: add the counts up",
            ));
        }
        if !(1..=MAX_COUNT).contains(&e.count) {
            return Err(Error::invalid(
                &format!("events[{i}].count"),
                format!("a count is 1 to {MAX_COUNT}"),
            ));
        }
    }
    if !check_version(&s.app_version) {
        return Err(Error::invalid(
            "app_version",
            "expected major.minor or major.minor.patch, digits only (4.2.1)",
        ));
    }
    if !PLATFORMS.contains(&s.platform.as_str()) {
        return Err(Error::invalid(
            "platform",
            format!("expected one of {}", PLATFORMS.join(", ")),
        ));
    }
    Ok(())
}

/// Adds a signed-in user's usage to today's counters, if they consented.
/// Nothing that identifies them is stored, audited or logged.
pub fn submit(core: &Steward, actor: &Actor, s: &Submission) -> Result<Submitted> {
    validate(s)?;
    let subject_id = actor
        .subject_id
        .clone()
        .ok_or_else(|| Error::Forbidden("usage statistics come from an App user".into()))?;
    let purposes: Vec<String> = core
        .policy
        .category(CATEGORY)
        .map(|c| c.purposes.clone())
        .unwrap_or_default();
    if purposes.is_empty() {
        return Err(Error::Forbidden(format!(
            "the policy declares no purpose for {CATEGORY}: nothing may be collected"
        )));
    }
    let result = core.write(actor, |tx| {
        // The consent check reads the user's ledger; it writes nothing (no audit
        // entry, no retention touch), so the transaction's only change is the
        // anonymous counters below.
        for purpose in &purposes {
            processing::permit(
                tx,
                &Use {
                    subject_id: &subject_id,
                    category: CATEGORY,
                    purpose,
                    recipient: None,
                },
            )?;
        }
        let day = day_of(tx.at)?;
        for e in &s.events {
            tx.conn.execute(
                "INSERT INTO usage_stats (day, feature, platform, app_version, count) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (day, feature, platform, app_version) \
                 DO UPDATE SET count = usage_stats.count + excluded.count",
                params![
                    day.as_str(),
                    e.feature.as_str(),
                    s.platform.as_str(),
                    s.app_version.as_str(),
                    e.count
                ],
            )?;
        }
        Ok(Submitted {
            stored: true,
            day,
            events: s.events.len(),
        })
    });
    let outcome = match &result {
        Ok(_) => "stored",
        Err(Error::ConsentRequired { .. }) => "no_consent",
        Err(_) => "failed",
    };
    metrics::counter!("steward_usage_statistics_submissions_total", "outcome" => outcome)
        .increment(1);
    result
}

/// The usage report between two days (inclusive, UTC): the provider's operators
/// and DPO. Cells under [`MIN_CELL`] are suppressed; there are no totals.
pub fn report(
    core: &Steward,
    actor: &Actor,
    from: Option<&str>,
    to: Option<&str>,
) -> Result<Report> {
    actor.require_role(&[Role::Operator, Role::Dpo], "read usage statistics")?;
    actor.require_provider_staff("read usage statistics")?;
    let today = parse_day("to", &day_of(now())?)?;
    let to = match to {
        Some(t) => parse_day("to", t)?,
        None => today,
    };
    let from = match from {
        Some(f) => parse_day("from", f)?,
        None => to - time::Duration::days(29),
    };
    if from > to {
        return Err(Error::invalid("from", "from is after to"));
    }
    if (to - from).whole_days() >= MAX_REPORT_DAYS {
        return Err(Error::invalid(
            "from",
            format!("a report spans at most {MAX_REPORT_DAYS} days"),
        ));
    }
    let (from, to) = (from.to_string(), to.to_string());
    let rows = core.db.read(|c| {
        c.query(
            "SELECT day, feature, platform, app_version, count FROM usage_stats \
             WHERE day >= $1 AND day <= $2 ORDER BY day, feature, platform, app_version",
            params![from.as_str(), to.as_str()],
        )
    })?;
    let cells = rows
        .iter()
        .map(|r| {
            let count = r.i64(4)?;
            let suppressed = count < MIN_CELL;
            Ok(Cell {
                day: r.text(0)?,
                feature: r.text(1)?,
                platform: r.text(2)?,
                app_version: r.text(3)?,
                count: (!suppressed).then_some(count),
                suppressed,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(Report {
        from,
        to,
        min_count: MIN_CELL,
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(events: Vec<(&str, i64)>, version: &str, platform: &str) -> Submission {
        Submission {
            events: events
                .into_iter()
                .map(|(f, c)| UsageEvent {
                    feature: f.into(),
                    count: c,
                })
                .collect(),
            app_version: version.into(),
            platform: platform.into(),
        }
    }

    fn field(r: Result<()>) -> Option<String> {
        match r {
            Err(Error::Invalid { field, .. }) => field,
            _ => None,
        }
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&sub(vec![("dialpad", 3)], "4.2.1", "ios")).is_ok());
        assert!(validate(&sub(vec![("chat", 1000)], "10.0", "android")).is_ok());
        let cases = [
            (sub(vec![], "4.2", "ios"), "events"),
            (
                sub(vec![("user_jsmith", 1)], "4.2", "ios"),
                "events[0].feature",
            ),
            (
                sub(vec![("dialpad", 1), ("dialpad", 1)], "4.2", "ios"),
                "events[1].feature",
            ),
            (sub(vec![("dialpad", 0)], "4.2", "ios"), "events[0].count"),
            (
                sub(vec![("dialpad", 1001)], "4.2", "ios"),
                "events[0].count",
            ),
            (
                sub(vec![("dialpad", 1)], "4.2.1-jsmith", "ios"),
                "app_version",
            ),
            (sub(vec![("dialpad", 1)], "4", "ios"), "app_version"),
            (
                sub(vec![("dialpad", 1)], "4.2.1.77777", "ios"),
                "app_version",
            ),
            (
                sub(vec![("dialpad", 1)], "4.2", "iPhone of Jane"),
                "platform",
            ),
        ];
        for (s, want) in cases {
            assert_eq!(field(validate(&s)).as_deref(), Some(want), "{s:?}");
        }
        let many: Vec<(&str, i64)> = FEATURES.iter().map(|f| (*f, 1)).collect();
        assert!(validate(&sub(many, "1.0", "web")).is_ok());
    }
}
