//! `steward ingest …` (call detail records, call recordings, extensions) and
//! `steward usage`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::json;

use super::commands::{open, resolve_subject};
use super::{SubjectArgs, emit, invalid};
use crate::access::Actor;
use crate::config::Settings;
use crate::core::block_on;
use crate::error::Result;
use crate::ingest::{self, IngestReport, Options, Progress};
use crate::recordings::{self, Upload};

#[derive(Debug, Subcommand)]
pub enum IngestCommand {
    /// Ingest call detail records from PBX files: Asterisk cdr_csv (Master.csv),
    /// FreeSWITCH mod_json_cdr or mod_xml_cdr, detected from the content. Re-sending
    /// a file adds nothing; unreadable rows are quarantined (file:line and reason)
    /// and counted as rejected; a file in another layout is refused.
    Cdr {
        /// The tenant whose PBX wrote the files.
        #[arg(long)]
        tenant: String,
        /// Rows per transaction.
        #[arg(long, default_value_t = 5_000, hide = true)]
        batch_rows: usize,
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Store a call recording (WAV, MP3 or Opus, from its content) against a call
    /// record, encrypted under the key of the call's outside party. The call id is
    /// what `POST /api/v1/tenants/{id}/cdrs` answers (`ids`).
    Recording {
        /// The call record: 32 hexadecimal digits.
        #[arg(long)]
        call: String,
        /// inbound or outbound.
        #[arg(long)]
        direction: String,
        /// The recording's length in whole seconds.
        #[arg(long)]
        duration: String,
        /// The name kept with it (encrypted); default the file's name.
        #[arg(long)]
        name: Option<String>,
        /// The audio file.
        file: PathBuf,
    },
    /// Record a user's PBX extension, so that call records naming it link to them.
    Extension {
        #[command(flatten)]
        subject: SubjectArgs,
        /// The extension as the PBX writes it (for example 1001).
        #[arg(long, group = "ext")]
        extension: Option<String>,
        /// Forget the user's extension.
        #[arg(long, group = "ext")]
        clear: bool,
    },
}

/// `steward usage`: calls, minutes and data per account of a tenant for a month.
#[derive(Debug, Args)]
pub struct UsageArgs {
    #[arg(long)]
    pub tenant: String,
    /// YYYY-MM (UTC); default this month.
    #[arg(long)]
    pub month: Option<String>,
}

pub(super) fn run(settings: Settings, cmd: IngestCommand, json: bool) -> Result<i32> {
    match cmd {
        IngestCommand::Cdr {
            tenant,
            batch_rows,
            files,
        } => {
            if batch_rows == 0 {
                return Err(invalid("batch-rows", "at least 1"));
            }
            let core = open(settings)?;
            let opts = Options {
                batch_rows,
                ..Options::default()
            };
            let mut bar = ProgressLine::new();
            let report =
                ingest::ingest_files(&core, &Actor::cli(), &tenant, &files, &opts, &mut |p| {
                    bar.show(p)
                })?;
            bar.clear();
            emit(
                json,
                &serde_json::to_value(&report).unwrap_or_default(),
                &summary_text(&report, opts.max_listed_errors),
            );
            // A refused file is bad input: say so, and exit 2 (the others were ingested).
            for f in report.files.iter() {
                if let Some(why) = &f.refused {
                    eprintln!("error: file: {why}");
                }
            }
            Ok(if report.refused_files > 0 { 2 } else { 0 })
        }
        IngestCommand::Recording {
            call,
            direction,
            duration,
            name,
            file,
        } => recording(settings, call, direction, duration, name, file, json),
        IngestCommand::Extension {
            subject,
            extension,
            clear,
        } => {
            if extension.is_none() && !clear {
                return Err(invalid("extension", "give --extension EXT, or --clear"));
            }
            let core = open(settings)?;
            let id = resolve_subject(
                &core,
                subject.subject,
                subject.subject_email,
                subject.subject_phone,
                subject.subject_username,
            )?;
            ingest::set_extension(&core, &Actor::cli(), &id, extension.as_deref())?;
            let text = match &extension {
                Some(_) => format!("recorded the extension of subject {id}"),
                None => format!("cleared the extension of subject {id}"),
            };
            emit(
                json,
                &json!({ "subject_id": id, "extension_set": extension.is_some() }),
                &text,
            );
            Ok(0)
        }
    }
}

fn recording(
    settings: Settings,
    call: String,
    direction: String,
    duration: String,
    name: Option<String>,
    file: PathBuf,
    json: bool,
) -> Result<i32> {
    let name = name.or_else(|| file.file_name().map(|n| n.to_string_lossy().into_owned()));
    let up = Upload {
        call_id: call,
        direction,
        duration,
        content_type: None,
        name,
    };
    let core = std::sync::Arc::new(open(settings)?);
    let shown = file.display().to_string();
    let rec = block_on(async move {
        let f = tokio::fs::File::open(&file)
            .await
            .map_err(|e| invalid("file", format!("cannot read {shown}: {e}")))?;
        let stream = tokio_util::io::ReaderStream::with_capacity(f, 64 * 1024);
        recordings::upload(core, Actor::cli(), up, stream).await
    })?;
    emit(
        json,
        &serde_json::to_value(&rec).unwrap_or_default(),
        &format!(
            "stored recording {} of call {} ({}, {} bytes, {} s, {}), encrypted for subject {}",
            rec.id,
            rec.call_id,
            rec.content_type,
            rec.size,
            rec.duration,
            rec.direction.as_str(),
            rec.subject_id
        ),
    );
    Ok(0)
}

pub(super) fn usage(settings: Settings, args: UsageArgs, json: bool) -> Result<i32> {
    let month = args.month.unwrap_or_else(ingest::usage::this_month);
    let core = open(settings)?;
    let r = ingest::usage(&core, &Actor::cli(), &args.tenant, &month)?;
    let mut text = format!(
        "usage of tenant {} in {} (UTC)\n{:<38} {:>7} {:>7} {:>7} {:>9} {:>9} {:>14}",
        r.tenant_id, r.month, "account", "calls", "out", "in", "minutes", "out min", "data bytes"
    );
    for a in &r.accounts {
        text.push_str(&format!(
            "\n{:<38} {:>7} {:>7} {:>7} {:>9} {:>9} {:>14}",
            a.account_id,
            a.calls,
            a.outgoing_calls,
            a.incoming_calls,
            a.minutes,
            a.outgoing_minutes,
            a.data_bytes
        ));
    }
    emit(json, &serde_json::to_value(&r).unwrap_or_default(), &text);
    Ok(0)
}

/// The text summary; `listed` is how many rejected rows a file's report lists.
fn summary_text(r: &IngestReport, listed: usize) -> String {
    const LISTED: usize = 20;
    let mut out = String::new();
    for f in &r.files {
        match &f.refused {
            Some(why) => out.push_str(&format!("{}: refused: {why}\n", f.file)),
            None => {
                out.push_str(&format!(
                    "{}: {}: {} accepted, {} duplicate, {} rejected ({:.2} s)\n",
                    f.file,
                    f.format.as_deref().unwrap_or("?"),
                    f.accepted,
                    f.duplicate,
                    f.rejected,
                    f.seconds
                ));
                for e in f.errors.iter().take(LISTED) {
                    out.push_str(&format!("  {}:{}: {}\n", f.file, e.line, e.reason));
                }
                let more = f.rejected.saturating_sub(LISTED as u64);
                if more > 0 {
                    out.push_str(&format!(
                        "  … and {more} more (--json lists the first {listed} of a file; \
                         every one is in the quarantine table cdr_quarantine)\n"
                    ));
                }
            }
        }
    }
    out.push_str(&format!(
        "total: {} accepted, {} duplicate, {} rejected; {} files refused; {} subjects created",
        r.accepted, r.duplicate, r.rejected, r.refused_files, r.subjects_created
    ));
    out
}

/// A one-line progress display on standard error, only when it is a terminal.
struct ProgressLine {
    enabled: bool,
    file_index: usize,
    started: Instant,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new() -> ProgressLine {
        ProgressLine {
            enabled: std::io::stderr().is_terminal(),
            file_index: 0,
            started: Instant::now(),
            last: None,
        }
    }

    fn show(&mut self, p: &Progress<'_>) {
        if p.file_index != self.file_index {
            self.file_index = p.file_index;
            self.started = Instant::now();
        }
        if !self.enabled
            || self
                .last
                .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let pct = (p.bytes_read.min(p.bytes_total) * 100)
            .checked_div(p.bytes_total)
            .unwrap_or(0) as usize;
        let filled = pct / 4;
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let name = std::path::Path::new(p.file)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K[{}/{}] {name} [{}{}] {pct:>3}% {} rows, {:.0} rows/s",
            p.file_index,
            p.files,
            "#".repeat(filled),
            "-".repeat(25 - filled),
            p.rows,
            p.rows as f64 / secs
        );
        let _ = err.flush();
    }

    fn clear(&mut self) {
        if self.enabled && self.last.is_some() {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
        }
    }
}
