//! The monthly usage summary for billing: per account of a tenant, the calls it
//! made and received in a calendar month (UTC), their billable time and the data
//! they used. Processing traffic data for `billing`: every account's subject
//! passes the processing check, and the summary is one audit entry.

use serde::Serialize;
use steward_store::params;
use utoipa::ToSchema;

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::processing::{self, Use};

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct AccountUsage {
    pub account_id: String,
    pub subject_id: String,
    /// Call legs the account took part in (made or received).
    pub calls: i64,
    pub outgoing_calls: i64,
    pub incoming_calls: i64,
    /// Billable seconds of all those calls.
    pub billsec: i64,
    /// Billable seconds of the calls the account made.
    pub outgoing_billsec: i64,
    /// `billsec` in minutes, rounded up.
    pub minutes: i64,
    /// `outgoing_billsec` in minutes, rounded up.
    pub outgoing_minutes: i64,
    /// Media bytes, where the PBX reported them.
    pub data_bytes: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    pub tenant_id: String,
    /// `YYYY-MM`.
    pub month: String,
    /// The month's first second (Unix, UTC), inclusive.
    pub from: i64,
    /// The next month's first second, exclusive.
    pub to: i64,
    /// Every account of the tenant, with zeros for those without calls.
    pub accounts: Vec<AccountUsage>,
}

/// `YYYY-MM` → the month's bounds in Unix seconds.
pub fn month_bounds(month: &str) -> Result<(i64, i64)> {
    let bad = || Error::invalid("month", format!("{month:?} is not a month like 2026-11"));
    let (y, m) = month.split_once('-').ok_or_else(bad)?;
    if y.len() != 4 || m.len() != 2 {
        return Err(bad());
    }
    let year: i32 = y.parse().map_err(|_| bad())?;
    let month_no: u8 = m.parse().map_err(|_| bad())?;
    let first = |year: i32, m: u8| -> Result<i64> {
        let month = time::Month::try_from(m).map_err(|_| bad())?;
        let date = time::Date::from_calendar_date(year, month, 1).map_err(|_| bad())?;
        Ok(date.midnight().assume_utc().unix_timestamp())
    };
    let from = first(year, month_no)?;
    let to = if month_no == 12 {
        first(year + 1, 1)?
    } else {
        first(year, month_no + 1)?
    };
    Ok((from, to))
}

/// The current month (UTC), `YYYY-MM`.
pub fn this_month() -> String {
    let d = time::OffsetDateTime::now_utc().date();
    format!("{:04}-{:02}", d.year(), u8::from(d.month()))
}

const USAGE_SQL: &str = "\
SELECT a.id, a.subject_id, \
 CAST(COALESCE(SUM(u.outgoing), 0) AS BIGINT), CAST(COALESCE(SUM(u.incoming), 0) AS BIGINT), \
 CAST(COALESCE(SUM(u.billsec), 0) AS BIGINT), CAST(COALESCE(SUM(u.outgoing * u.billsec), 0) AS BIGINT), \
 CAST(COALESCE(SUM(u.data_bytes), 0) AS BIGINT) \
FROM accounts a LEFT JOIN ( \
 SELECT caller_subject_id AS subject_id, 1 AS outgoing, 0 AS incoming, billsec, \
   COALESCE(data_bytes, 0) AS data_bytes FROM call_records \
   WHERE tenant_id = $1 AND start_at >= $2 AND start_at < $3 AND caller_subject_id IS NOT NULL \
 UNION ALL \
 SELECT callee_subject_id, 0, 1, billsec, COALESCE(data_bytes, 0) FROM call_records \
   WHERE tenant_id = $1 AND start_at >= $2 AND start_at < $3 AND callee_subject_id IS NOT NULL \
) u ON u.subject_id = a.subject_id \
WHERE a.tenant_id = $1 \
GROUP BY a.id, a.subject_id ORDER BY a.id";

/// The usage summary of `tenant_id` for `month` (`YYYY-MM`): tenant admins and
/// operators, for a tenant they see.
pub fn usage(core: &Steward, actor: &Actor, tenant_id: &str, month: &str) -> Result<UsageReport> {
    actor.require_tenant(tenant_id, "tenant")?;
    actor.require_role(
        &[Role::TenantAdmin, Role::Operator],
        "see usage for billing",
    )?;
    let (from, to) = month_bounds(month)?;
    core.write(actor, |tx| {
        tx.conn
            .query_opt("SELECT id FROM tenants WHERE id = $1", params![tenant_id])?
            .ok_or_else(|| Error::NotFound("tenant".into()))?;
        let rows = tx.conn.query(USAGE_SQL, params![tenant_id, from, to])?;
        let mut accounts = Vec::with_capacity(rows.len());
        for r in rows {
            let subject_id = r.text(1)?;
            // Billing is a declared use of traffic data; the check also applies any
            // consent rule a custom policy sets for it.
            processing::permit(
                tx,
                &Use {
                    subject_id: &subject_id,
                    category: "traffic_data",
                    purpose: "billing",
                    recipient: None,
                },
            )?;
            let (outgoing_calls, incoming_calls) = (r.i64(2)?, r.i64(3)?);
            let (billsec, outgoing_billsec) = (r.i64(4)?, r.i64(5)?);
            accounts.push(AccountUsage {
                account_id: r.text(0)?,
                subject_id,
                calls: outgoing_calls + incoming_calls,
                outgoing_calls,
                incoming_calls,
                billsec,
                outgoing_billsec,
                minutes: (billsec + 59) / 60,
                outgoing_minutes: (outgoing_billsec + 59) / 60,
                data_bytes: r.i64(6)?,
            });
        }
        tx.audit(Event {
            tenant_id: Some(tenant_id.to_owned()),
            action: "process".into(),
            category: Some("traffic_data".into()),
            purpose: Some("billing".into()),
            detail: serde_json::json!({
                "report": "usage", "month": month, "accounts": accounts.len(),
            }),
            ..Event::default()
        })?;
        Ok(UsageReport {
            tenant_id: tenant_id.to_owned(),
            month: month.to_owned(),
            from,
            to,
            accounts,
        })
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn months() {
        assert_eq!(
            month_bounds("2026-11").unwrap(),
            (1_793_491_200, 1_796_083_200)
        );
        assert_eq!(month_bounds("2025-12").unwrap().1, 1_767_225_600);
        for bad in ["2026-13", "2026-1", "26-11", "2026/11", "", "2026-00"] {
            assert!(month_bounds(bad).is_err(), "{bad}");
        }
    }
}
