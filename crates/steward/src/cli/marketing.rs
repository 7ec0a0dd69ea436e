//! `steward marketing …`: the mailing-tool export, "no further contact", and
//! lifting it when the person asks to hear from the provider again.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::json;

use super::commands::{open, resolve_subject};
use super::{SubjectArgs, emit, invalid};
use crate::access::Actor;
use crate::config::Settings;
use crate::consent::Channel;
use crate::crm::marketing::{
    self, ExportSummary, NoFurtherContact, SuppressRequest, SuppressionOutcome,
};
use crate::error::{Error, Result};
use crate::tenants::PROVIDER_TENANT;

#[derive(Debug, Subcommand)]
pub enum MarketingCommand {
    /// Write the CSV a mailing tool imports (Email Address, Full Name, Consent
    /// Date): the tenant's people whose marketing consent is in force and none
    /// of whose addresses is suppressed. Each one is recorded as disclosed to
    /// the recipient.
    Export {
        /// The file to write (replaced once complete); default standard output.
        #[arg(long)]
        out: Option<PathBuf>,
        /// The tenant whose list to export.
        #[arg(long, default_value = PROVIDER_TENANT)]
        tenant: String,
        /// The mailing tool (a recipient of contact_details in the policy).
        #[arg(long, default_value = marketing::DEFAULT_RECIPIENT)]
        recipient: String,
    },
    /// Record "no further contact": for an email address or phone number
    /// (whoever it belongs to, known or not), or for a subject (every address
    /// Steward has for them). Kept as a keyed hash that survives erasure.
    Suppress {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        /// The subject's id: suppress every email and phone Steward has for them.
        #[arg(long, conflicts_with_all = ["email", "phone"])]
        subject: Option<String>,
        /// How the request came: email, letter, phone, web or app.
        #[arg(long)]
        channel: String,
        /// What proves it (kept sealed when the address belongs to a subject).
        #[arg(long)]
        evidence: Option<String>,
    },
    /// Whether an email address or phone number is suppressed, and since when.
    Check {
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
    },
    /// The person asked to hear from us again: lift the suppression of their
    /// email and phone and record their marketing consent.
    Resume {
        #[command(flatten)]
        subject: SubjectArgs,
        /// How they asked: email, letter, phone, web or app.
        #[arg(long)]
        channel: String,
        /// What proves they asked (required).
        #[arg(long)]
        evidence: String,
    },
}

pub(super) fn run(settings: Settings, cmd: MarketingCommand, json: bool) -> Result<i32> {
    let actor = Actor::cli();
    match cmd {
        MarketingCommand::Export {
            out,
            tenant,
            recipient,
        } => {
            let core = open(settings)?;
            let summary = match &out {
                Some(path) => export_to_file(&core, &actor, &tenant, &recipient, path)?,
                None => {
                    let stdout = std::io::stdout();
                    let mut lock = stdout.lock();
                    marketing::export(&core, &actor, &tenant, Some(&recipient), &mut lock)?
                }
            };
            let text = format!(
                "exported {} addresses for {} (left out: {} suppressed, {} without consent, \
                 {} without an email address); disclosures recorded, audit entry {}",
                summary.exported,
                summary.recipient,
                summary.left_out_suppressed,
                summary.left_out_no_consent,
                summary.left_out_no_email,
                summary.audit_seq
            );
            let value = serde_json::to_value(&summary).unwrap_or_default();
            if out.is_some() {
                emit(json, &value, &text);
            } else if json {
                // Standard output holds the CSV: the summary goes to stderr.
                eprintln!("{value}");
            } else {
                eprintln!("{text}");
            }
            Ok(0)
        }
        MarketingCommand::Suppress {
            email,
            phone,
            subject,
            channel,
            evidence,
        } => {
            let channel = Channel::parse(&channel)?;
            let core = open(settings)?;
            let outcome = match subject {
                Some(id) => marketing::no_further_contact(
                    &core,
                    &actor,
                    &id,
                    &NoFurtherContact {
                        channel: Some(channel),
                        evidence,
                    },
                )?,
                None => {
                    if email.is_none() && phone.is_none() {
                        return Err(invalid(
                            "email",
                            "give --email, --phone or --subject: who is not to be contacted",
                        ));
                    }
                    marketing::suppress(
                        &core,
                        &actor,
                        &SuppressRequest {
                            email,
                            phone,
                            channel,
                            evidence,
                        },
                    )?
                }
            };
            emit(
                json,
                &serde_json::to_value(&outcome).unwrap_or_default(),
                &suppress_text(&outcome),
            );
            Ok(0)
        }
        MarketingCommand::Check { email, phone } => {
            let core = open(settings)?;
            let found = marketing::check(&core, &actor, email.as_deref(), phone.as_deref())?;
            let text = if found.is_empty() {
                "not suppressed".to_owned()
            } else {
                found
                    .iter()
                    .map(|e| {
                        format!(
                            "{} suppressed since {}",
                            e.kind,
                            crate::clock::rfc3339(e.since)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            emit(
                json,
                &json!({ "suppressed": !found.is_empty(), "entries": found }),
                &text,
            );
            Ok(0)
        }
        MarketingCommand::Resume {
            subject,
            channel,
            evidence,
        } => {
            let channel = Channel::parse(&channel)?;
            let core = open(settings)?;
            let id = resolve_subject(
                &core,
                subject.subject,
                subject.subject_email,
                subject.subject_phone,
                subject.subject_username,
            )?;
            let r = marketing::resume(&core, &actor, &id, channel, &evidence)?;
            emit(
                json,
                &serde_json::to_value(&r).unwrap_or_default(),
                &format!(
                    "lifted {} suppression entries; marketing consent recorded (event {})",
                    r.lifted, r.consent_event
                ),
            );
            Ok(0)
        }
    }
}

fn suppress_text(o: &SuppressionOutcome) -> String {
    let mut lines: Vec<String> = o
        .entries
        .iter()
        .map(|e| {
            if e.already {
                format!(
                    "{} already suppressed since {}",
                    e.kind,
                    crate::clock::rfc3339(e.since)
                )
            } else {
                format!("{} suppressed", e.kind)
            }
        })
        .collect();
    lines.push(format!(
        "marketing consent withdrawn for {} subject(s)",
        o.consents_withdrawn
    ));
    lines.join("\n")
}

/// Exports into `<out>.partial`, renamed to `out` once complete, so a
/// half-written file never looks like an export.
fn export_to_file(
    core: &crate::core::Steward,
    actor: &Actor,
    tenant: &str,
    recipient: &str,
    out: &Path,
) -> Result<ExportSummary> {
    let partial = out.with_extension("partial");
    let file = std::fs::File::create(&partial)
        .map_err(|e| invalid("out", format!("cannot write {}: {e}", partial.display())))?;
    let mut w = std::io::BufWriter::new(file);
    let res = marketing::export(core, actor, tenant, Some(recipient), &mut w).and_then(|s| {
        w.flush()
            .map_err(|e| invalid("out", format!("cannot write {}: {e}", partial.display())))?;
        Ok(s)
    });
    let summary = match res {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, out).map_err(|e| {
        Error::invalid(
            "out",
            format!(
                "the export is complete in {} but cannot be moved to {}: {e}",
                partial.display(),
                out.display()
            ),
        )
    })?;
    Ok(summary)
}
