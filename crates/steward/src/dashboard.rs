//! Aggregates for the staff console's dashboard: requests by state and by week,
//! consent rates per use over time, records held per category and retention due
//! soon. Counts only, never a person's data; scoped like every other read
//! (provider staff see every tenant, a tenant's operator or DPO their own).

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use steward_policy::ConsentRule;
use steward_store::params;
use time::{Date, Duration, OffsetDateTime};

use crate::access::{Actor, Role};
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::registry::PERSONAL_STORES;
use crate::retention;
use crate::rights::{self, State};

/// Weeks shown in the time series (the current one included).
pub const WEEKS: usize = 12;

/// Days ahead the retention outlook looks.
pub const RETENTION_HORIZON_DAYS: i64 = 30;

/// Working days ahead a request counts as nearly due.
pub const NEARLY_DUE_DAYS: i64 = 3;

#[derive(Debug, Clone, Serialize)]
pub struct Week {
    /// The Monday the week starts on (YYYY-MM-DD).
    pub starts: String,
    pub received: u64,
    pub closed: u64,
}

/// One consentable use's rate at the end of each week: of the subjects who had
/// answered by then, how many had consent in force.
#[derive(Debug, Clone, Serialize)]
pub struct ConsentSeries {
    pub category: String,
    pub purpose: String,
    pub label: String,
    /// (week start, granted, answered), one per week of [`Dashboard::weeks`].
    pub points: Vec<(String, u64, u64)>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CategoryCount {
    pub category: String,
    pub name: String,
    pub records: u64,
}

/// What retention would erase now, and by the end of the horizon.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionOutlook {
    pub horizon_days: i64,
    /// Rows per category due now (the next run would erase them).
    pub due_now: BTreeMap<String, u64>,
    /// Rows per category due within the horizon (those due now included).
    pub due_within: BTreeMap<String, u64>,
    pub subjects_now: u64,
    pub subjects_within: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dashboard {
    pub open: u64,
    pub overdue: u64,
    pub nearly_due: u64,
    pub by_state: Vec<(State, u64)>,
    pub weeks: Vec<Week>,
    pub consent: Vec<ConsentSeries>,
    pub records: Vec<CategoryCount>,
    /// Only for the provider's staff: retention runs across every tenant.
    pub retention: Option<RetentionOutlook>,
}

fn monday_of(d: Date) -> Date {
    d - Duration::days(i64::from(d.weekday().number_days_from_monday()))
}

fn date_of(unix: i64) -> Result<Date> {
    OffsetDateTime::from_unix_timestamp(unix)
        .map(|t| t.date())
        .map_err(|e| Error::Internal(e.to_string()))
}

/// The dashboard as of `now` (Unix seconds), for operators and DPOs.
pub fn dashboard(core: &Steward, actor: &Actor, now: i64) -> Result<Dashboard> {
    actor.require_role(&[Role::Operator, Role::Dpo], "see the dashboard")?;
    let scope = if actor.provider_staff {
        None
    } else {
        Some(
            actor
                .tenant_id
                .clone()
                .ok_or_else(|| Error::Forbidden("the dashboard needs a tenant account".into()))?,
        )
    };
    let today = date_of(now)?;
    let first = monday_of(today) - Duration::weeks(WEEKS as i64 - 1);
    let starts: Vec<Date> = (0..WEEKS as i64)
        .map(|i| first + Duration::weeks(i))
        .collect();
    let week_index = |d: Date| -> Option<usize> {
        if d < first {
            return None;
        }
        let i = ((d - first).whole_days() / 7) as usize;
        (i < WEEKS).then_some(i)
    };

    // Requests: the same scoped list the queue reads.
    let requests = rights::list(core, actor, None)?;
    let mut by_state: Vec<(State, u64)> = [
        State::Received,
        State::Verifying,
        State::InProgress,
        State::Fulfilled,
        State::PartiallyFulfilled,
        State::Refused,
    ]
    .iter()
    .map(|s| (*s, 0))
    .collect();
    let mut weeks: Vec<Week> = starts
        .iter()
        .map(|d| Week {
            starts: d.to_string(),
            received: 0,
            closed: 0,
        })
        .collect();
    let (mut open, mut overdue, mut nearly_due) = (0, 0, 0);
    for r in &requests {
        if let Some(e) = by_state.iter_mut().find(|(s, _)| *s == r.state) {
            e.1 += 1;
        }
        if r.state.is_open() {
            open += 1;
            if r.working_days_left < 0 {
                overdue += 1;
            } else if r.working_days_left <= NEARLY_DUE_DAYS {
                nearly_due += 1;
            }
        }
        if let Ok(d) = steward_calendar::parse_date(&r.received_on)
            && let Some(i) = week_index(d)
        {
            weeks[i].received += 1;
        }
        if let Some(c) = r.closed_at
            && let Some(i) = week_index(date_of(c)?)
        {
            weeks[i].closed += 1;
        }
    }

    let consent = consent_series(core, scope.as_deref(), &starts)?;
    let records = records_per_category(core, scope.as_deref())?;
    let retention = if actor.provider_staff {
        Some(retention_outlook(core, now)?)
    } else {
        None
    };
    Ok(Dashboard {
        open,
        overdue,
        nearly_due,
        by_state,
        weeks,
        consent,
        records,
        retention,
    })
}

/// Replays the consent ledger once per standing use and samples it at the end
/// of every week.
fn consent_series(
    core: &Steward,
    tenant: Option<&str>,
    starts: &[Date],
) -> Result<Vec<ConsentSeries>> {
    let rows = core.db.read(|c| match tenant {
        Some(t) => c.query(
            "SELECT subject_id, category, purpose, action, at FROM consent_events \
             WHERE tenant_id = $1 AND single_use = 0 ORDER BY seq",
            params![t],
        ),
        None => c.query(
            "SELECT subject_id, category, purpose, action, at FROM consent_events \
             WHERE single_use = 0 ORDER BY seq",
            &[],
        ),
    })?;
    // Each week's end: the next Monday at 00:00 UTC.
    let ends: Vec<i64> = starts
        .iter()
        .map(|d| {
            (*d + Duration::weeks(1))
                .midnight()
                .assume_utc()
                .unix_timestamp()
        })
        .collect();
    let mut out = Vec::new();
    for u in core.policy.consentable_uses() {
        if u.consent != ConsentRule::Standing {
            continue;
        }
        let mut state: HashMap<String, bool> = HashMap::new();
        let mut events = rows.iter().filter(|r| {
            r.text(1).is_ok_and(|c| c == u.category) && r.text(2).is_ok_and(|p| p == u.purpose)
        });
        let mut pending = events.next();
        let mut points = Vec::with_capacity(ends.len());
        for (start, end) in starts.iter().zip(&ends) {
            while let Some(r) = pending {
                if r.i64(4)? >= *end {
                    break;
                }
                match r.text(3)?.as_str() {
                    "grant" => {
                        state.insert(r.text(0)?, true);
                    }
                    "withdraw" => {
                        state.insert(r.text(0)?, false);
                    }
                    _ => {}
                }
                pending = events.next();
            }
            let granted = state.values().filter(|g| **g).count() as u64;
            points.push((start.to_string(), granted, state.len() as u64));
        }
        let purpose = core
            .policy
            .purpose(u.purpose)
            .map(|p| p.name.clone())
            .unwrap_or_else(|| u.purpose.to_owned());
        let category = core
            .policy
            .category(u.category)
            .map(|c| c.name.clone())
            .unwrap_or_else(|| u.category.to_owned());
        out.push(ConsentSeries {
            category: u.category.to_owned(),
            purpose: u.purpose.to_owned(),
            label: format!("{category}: {purpose}"),
            points,
        });
    }
    Ok(out)
}

/// Rows held per policy category, over every table store of the registry; rows
/// whose subjects were all erased (pseudonymised) no longer count.
fn records_per_category(core: &Steward, tenant: Option<&str>) -> Result<Vec<CategoryCount>> {
    let by = core.db.read(|c| {
        let mut by: BTreeMap<&'static str, u64> = BTreeMap::new();
        for store in PERSONAL_STORES {
            let cond: Vec<String> = store
                .subject_columns
                .iter()
                .map(|col| match tenant {
                    Some(_) => format!("{col} IN (SELECT id FROM subjects WHERE tenant_id = $1)"),
                    None => format!("{col} IS NOT NULL"),
                })
                .collect();
            let sql = format!(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM {} WHERE {}",
                store.name,
                cond.join(" OR ")
            );
            let row = match tenant {
                Some(t) => c.query_opt(&sql, params![t])?,
                None => c.query_opt(&sql, &[])?,
            };
            let n = row.map(|r| r.i64(0)).transpose()?.unwrap_or(0);
            *by.entry(store.category).or_default() += n.max(0) as u64;
        }
        Ok(by)
    })?;
    Ok(by
        .into_iter()
        .map(|(id, records)| CategoryCount {
            category: id.to_owned(),
            name: core
                .policy
                .category(id)
                .map(|c| c.name.clone())
                .unwrap_or_else(|| id.to_owned()),
            records,
        })
        .collect())
}

fn retention_outlook(core: &Steward, now: i64) -> Result<RetentionOutlook> {
    let rows = |items: &[retention::PlanItem]| {
        let mut by: BTreeMap<String, u64> = BTreeMap::new();
        for i in items {
            *by.entry(i.category.clone()).or_default() += i.rows;
        }
        let subjects = {
            let mut ids: Vec<&str> = items.iter().map(|i| i.subject_id.as_str()).collect();
            ids.dedup();
            ids.len() as u64
        };
        (by, subjects)
    };
    // One walk over the subjects for both moments.
    let (at_now, within) =
        retention::plan_items_at(core, now, now + RETENTION_HORIZON_DAYS * 86_400)?;
    let (due_now, subjects_now) = rows(&at_now);
    let (due_within, subjects_within) = rows(&within);
    Ok(RetentionOutlook {
        horizon_days: RETENTION_HORIZON_DAYS,
        due_now,
        due_within,
        subjects_now,
        subjects_within,
    })
}
