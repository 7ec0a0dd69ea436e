//! `steward requests …`: the DPO's request workflow from the command line.

use serde_json::json;
use steward_calendar::{Region, parse_date};

use super::commands::open;
use super::{RequestsCommand, SubjectArgs, emit, invalid};
use crate::access::Actor;
use crate::config::Settings;
use crate::error::Result;
use crate::rights::{self, Ground, NewRequest, Request, SubjectRef, erase, export};

fn subject_ref(a: SubjectArgs) -> Result<SubjectRef> {
    match (
        a.subject,
        a.subject_email,
        a.subject_phone,
        a.subject_username,
    ) {
        (Some(id), ..) => Ok(SubjectRef::Id(id)),
        (None, Some(e), ..) => Ok(SubjectRef::Email(e)),
        (None, None, Some(p), _) => Ok(SubjectRef::Phone(p)),
        (None, None, None, Some(u)) => Ok(SubjectRef::Username(u)),
        _ => Err(invalid(
            "subject",
            "name the subject: --subject, --subject-email, --subject-phone or --subject-username",
        )),
    }
}

fn line(r: &Request) -> String {
    line_noted(r, "")
}

/// [`line`] with a note after the day received (` (today: …)`).
fn line_noted(r: &Request, received_note: &str) -> String {
    format!(
        "{id}  {kind:<13} {state:<19} received {received}{received_note}  due {due} ({left} working days{over})",
        id = r.id,
        kind = r.kind.as_str(),
        state = r.state.as_str(),
        received = r.received_on,
        due = r.due_on,
        left = r.working_days_left,
        over = if r.state.is_open() && r.working_days_left < 0 {
            ", OVERDUE"
        } else {
            ""
        },
    )
}

fn emit_request(json: bool, r: &Request) {
    emit(json, &serde_json::to_value(r).unwrap_or_default(), &line(r));
}

pub(super) fn run(settings: Settings, cmd: RequestsCommand, json: bool) -> Result<i32> {
    if let RequestsCommand::Deadline { received, region } = &cmd {
        // Pure date arithmetic: needs no data directory.
        let date = parse_date(received).map_err(|e| invalid("received", e.to_string()))?;
        let policy = match &settings.policy_file {
            Some(f) => {
                steward_policy::load(f)
                    .map_err(|d| {
                        invalid(
                            "policy",
                            d.iter()
                                .map(|d| d.to_string())
                                .collect::<Vec<_>>()
                                .join("\n"),
                        )
                    })?
                    .policy
            }
            None => steward_policy::Policy::default_policy(),
        };
        let region = match region {
            Some(r) => r
                .parse::<Region>()
                .map_err(|e| invalid("region", e.to_string()))?,
            None => rights::region_of(policy.jurisdiction()),
        };
        let due = rights::due_date(date, region, policy.deadline_working_days());
        emit(
            json,
            &json!({ "received": date.to_string(), "region": region.as_str(), "due": due.to_string() }),
            &due.to_string(),
        );
        return Ok(0);
    }
    let core = open(settings)?;
    let actor = Actor::cli();
    match cmd {
        RequestsCommand::Create {
            kind,
            subject,
            channel,
            received,
            region,
            details,
        } => {
            // Without --received the request is dated today, and the answer says
            // so: its deadline runs from that day.
            let defaulted = received.is_none();
            let received_on = received.unwrap_or_else(|| crate::clock::today().to_string());
            let r = rights::create(
                &core,
                &actor,
                NewRequest {
                    subject: subject_ref(subject)?,
                    kind: kind.parse()?,
                    channel: channel.parse()?,
                    received_on,
                    region,
                    details,
                },
            )?;
            let text = line_noted(
                &r,
                if defaulted {
                    " (today: --received not given)"
                } else {
                    ""
                },
            );
            let mut value = serde_json::to_value(&r).unwrap_or_default();
            if defaulted {
                value["received_defaulted"] = json!(true);
            }
            emit(json, &value, &text);
        }
        RequestsCommand::Verify { id, method } => {
            emit_request(json, &rights::verify(&core, &actor, &id, &method)?)
        }
        RequestsCommand::Refuse { id, ground } => emit_request(
            json,
            &rights::refuse(&core, &actor, &id, Ground::parse(&ground)?)?,
        ),
        RequestsCommand::Complete { id, partially } => {
            emit_request(json, &rights::complete(&core, &actor, &id, partially)?)
        }
        RequestsCommand::Rectify { id, field, value } => {
            emit_request(json, &rights::rectify(&core, &actor, &id, &field, &value)?)
        }
        RequestsCommand::Export { id, out } => {
            let s = export::for_request(&core, &actor, &id, &out)?;
            let total: u64 = s.counts.values().sum();
            emit(
                json,
                &json!({ "id": id, "state": "fulfilled", "out": out.display().to_string(), "bundle": s }),
                &format!(
                    "wrote {} ({} items); request {id} fulfilled",
                    out.display(),
                    total
                ),
            );
        }
        RequestsCommand::Erase { id } => {
            let rep = erase::for_request(&core, &actor, &id)?;
            emit(
                json,
                &json!({ "id": id, "state": "fulfilled", "erasure": rep }),
                &format!(
                    "erased subject {} (tombstone {}); request {id} fulfilled\n\n{}",
                    rep.subject_id, rep.tombstone_id, rep.confirmation.email
                ),
            );
        }
        RequestsCommand::Show { id } => {
            let r = rights::get(&core, &actor, &id)?;
            let timeline = rights::timeline(&core, &actor, &id)?;
            let text = std::iter::once(line(&r))
                .chain(timeline.iter().map(|t| {
                    format!(
                        "  {}  {:<18} {}",
                        crate::clock::rfc3339(t.at),
                        t.event,
                        t.actor
                    )
                }))
                .collect::<Vec<_>>()
                .join("\n");
            emit(json, &json!({ "request": r, "timeline": timeline }), &text);
        }
        RequestsCommand::List { due_within } => {
            let all = rights::list(&core, &actor, due_within)?;
            let text = if all.is_empty() {
                "no requests".to_owned()
            } else {
                all.iter().map(line).collect::<Vec<_>>().join("\n")
            };
            emit(json, &json!({ "requests": all }), &text);
        }
        RequestsCommand::Deadline { .. } => {}
    }
    Ok(0)
}
