//! `steward retention …`: the retention job by hand, and legal holds and
//! archiving exemptions. See docs/RETENTION.md.

use std::sync::atomic::AtomicBool;

use serde_json::json;
use steward_calendar::parse_date;

use super::commands::{open, resolve_subject};
use super::{RetentionCommand, SubjectArgs, emit, invalid};
use crate::access::Actor;
use crate::clock::now;
use crate::config::Settings;
use crate::error::Result;
use crate::retention::{self, Counts, HoldKind, HoldState, PlanItem};

pub(super) fn run(settings: Settings, cmd: RetentionCommand, json: bool) -> Result<i32> {
    match cmd {
        RetentionCommand::Run { dry_run, as_of } => {
            let at = match as_of.as_deref() {
                None => now(),
                Some(day) => {
                    let date = parse_date(day).map_err(|e| invalid("as-of", e.to_string()))?;
                    let at = date.midnight().assume_utc().unix_timestamp();
                    if at > now() && !dry_run {
                        return Err(invalid(
                            "as-of",
                            "a day in the future would erase data before its time: \
                             use it with --dry-run only",
                        ));
                    }
                    at
                }
            };
            let core = open(settings)?;
            if dry_run {
                let plan = retention::plan(&core, at)?;
                let mut value = serde_json::to_value(&plan).unwrap_or_default();
                value["dry_run"] = json!(true);
                let mut text = header("would erase", &plan.as_of_utc, &plan.policy_version);
                text.push_str(&summary(&plan.counts, "would be "));
                for i in &plan.items {
                    text.push('\n');
                    text.push_str(&item_line(i));
                }
                emit(json, &value, &text);
                Ok(0)
            } else {
                let trigger = Actor::cli().audit_id;
                let report = retention::run_with(&core, at, &trigger, &AtomicBool::new(false))?;
                let mut value = serde_json::to_value(&report).unwrap_or_default();
                value["dry_run"] = json!(false);
                let mut text = header("erased", &report.as_of_utc, &report.policy_version);
                text.push_str(&summary(&report.counts, ""));
                if report.changed > 0 {
                    text.push_str(&format!(
                        "\n{} subjects changed since the plan and were left for the next run",
                        report.changed
                    ));
                }
                if !report.failed.is_empty() {
                    text.push_str(&format!(
                        "\nFAILED for {} subjects: {}",
                        report.failed.len(),
                        report.failed.join(", ")
                    ));
                }
                if let Some(seq) = report.audit_seq {
                    text.push_str(&format!("\nrecorded as audit entry {seq}"));
                }
                emit(json, &value, &text);
                Ok(if report.failed.is_empty() { 0 } else { 1 })
            }
        }
        RetentionCommand::Hold { subject, kind } => hold(settings, subject, &kind, true, json),
        RetentionCommand::Release { subject, kind } => hold(settings, subject, &kind, false, json),
        RetentionCommand::Holds => {
            let core = open(settings)?;
            let list = retention::holds(&core, &Actor::cli())?;
            let text = if list.is_empty() {
                "no subject is on legal hold or archive-exempt".to_owned()
            } else {
                list.iter().map(hold_line).collect::<Vec<_>>().join("\n")
            };
            emit(json, &json!({ "holds": list }), &text);
            Ok(0)
        }
    }
}

fn hold(settings: Settings, subject: SubjectArgs, kind: &str, on: bool, json: bool) -> Result<i32> {
    let kind = HoldKind::parse(kind)?;
    let core = open(settings)?;
    let id = resolve_subject(
        &core,
        subject.subject,
        subject.subject_email,
        subject.subject_phone,
        subject.subject_username,
    )?;
    let state = retention::set_hold(&core, &Actor::cli(), &id, kind, on)?;
    let what = match kind {
        HoldKind::Legal => "legal hold",
        HoldKind::Archive => "archiving exemption",
    };
    let text = match (on, state.changed) {
        (true, true) => format!("placed a {what} on subject {id}"),
        (true, false) => format!("subject {id} already had a {what}"),
        (false, true) => format!("released the {what} on subject {id}"),
        (false, false) => format!("subject {id} had no {what}"),
    };
    emit(
        json,
        &serde_json::to_value(&state).unwrap_or_default(),
        &text,
    );
    Ok(0)
}

fn header(verb: &str, as_of: &str, policy: &str) -> String {
    format!("retention as of {as_of} (policy {policy}): {verb}\n")
}

fn summary(c: &Counts, would: &str) -> String {
    let mut out = format!(
        "{} subjects checked; {} {would}erased whole, {} {would}kept with expired rows erased",
        c.subjects_checked, c.subjects_erased, c.subjects_trimmed
    );
    for (category, n) in &c.rows {
        out.push_str(&format!("\n  {category}: {n} rows"));
    }
    out.push_str(&format!(
        "\nkept: {} on legal hold, {} archive-exempt, {} identities kept for data still in its period",
        c.kept_legal_hold, c.kept_archive_exempt, c.identity_kept
    ));
    out
}

fn item_line(i: &PlanItem) -> String {
    format!(
        "{}  {:<16} {:<20} {:>6} rows  {}{}",
        i.subject_id,
        i.store,
        i.category,
        i.rows,
        match i.action {
            retention::ItemAction::Delete => "delete",
            retention::ItemAction::Pseudonymise => "pseudonymise",
        },
        if i.whole_subject {
            "  (whole subject)"
        } else {
            ""
        }
    )
}

fn hold_line(h: &HoldState) -> String {
    let mut flags = Vec::new();
    if h.legal_hold {
        flags.push("legal hold");
    }
    if h.archive_exempt {
        flags.push("archive-exempt");
    }
    format!(
        "{}  tenant {}  {}",
        h.subject_id,
        h.tenant_id,
        flags.join(", ")
    )
}
