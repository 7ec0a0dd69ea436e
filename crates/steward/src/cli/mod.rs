//! The `steward` command line. Every command takes the storage flags, and
//! `--json` makes it print one JSON object. Exit codes: 0 success, 1 failure,
//! 2 bad input, 3 refused (not found, forbidden, conflict).

mod backup;
mod commands;
mod ingest;
mod marketing;
mod requests;
mod retention;

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::Settings;
use crate::error::Error;

#[derive(Debug, Parser)]
#[command(
    name = "steward",
    version,
    about = "Personal data of a cloud communications provider, with data protection built in"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct Global {
    /// Folder for the embedded database, key store, master key and blobs.
    #[arg(
        long,
        global = true,
        env = "STEWARD_DATA_DIR",
        default_value = "steward-data"
    )]
    pub data_dir: PathBuf,
    /// Use PostgreSQL instead of the embedded SQLite file (postgres://user@host/db).
    #[arg(
        long,
        global = true,
        env = "STEWARD_DATABASE_URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// PostgreSQL schema for Steward's tables.
    #[arg(long, global = true, env = "STEWARD_DATABASE_SCHEMA")]
    pub database_schema: Option<String>,
    /// Key store location: an SQLite file path or a postgres:// URL.
    #[arg(long, global = true, env = "STEWARD_KEY_STORE", hide_env_values = true)]
    pub key_store: Option<String>,
    /// Master key file (default <data-dir>/master.key, created on first start).
    #[arg(long, global = true, env = "STEWARD_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Blob store: s3://bucket/prefix?endpoint=…&region=…, or file:///path.
    #[arg(long, global = true, env = "STEWARD_BLOB_URL", hide_env_values = true)]
    pub blob_url: Option<String>,
    /// Policy file (default: the built-in policy/default.toml).
    #[arg(long, global = true, env = "STEWARD_POLICY")]
    pub policy: Option<PathBuf>,
    /// Region for phone numbers without a country code.
    #[arg(
        long,
        global = true,
        env = "STEWARD_DEFAULT_REGION",
        default_value = "GB"
    )]
    pub default_region: String,
    /// Largest photo or video a user may upload, in bytes.
    #[arg(
        long,
        global = true,
        env = "STEWARD_MAX_MEDIA_BYTES",
        default_value_t = 100 * 1024 * 1024
    )]
    pub max_media_bytes: u64,
    /// Largest call recording that may be uploaded, in bytes (default 256 MiB: an
    /// hour of 16 kHz 16-bit stereo WAV).
    #[arg(
        long,
        global = true,
        env = "STEWARD_MAX_RECORDING_BYTES",
        default_value_t = crate::config::DEFAULT_MAX_RECORDING_BYTES
    )]
    pub max_recording_bytes: u64,
    /// Days a produced access bundle stays downloadable from the portal (1 to 3650).
    #[arg(
        long,
        global = true,
        env = "STEWARD_BUNDLE_KEEP_DAYS",
        default_value_t = 30,
        value_parser = clap::value_parser!(i64).range(1..=3650)
    )]
    pub bundle_keep_days: i64,
    /// Largest chat message text, in bytes (UTF-8).
    #[arg(
        long,
        global = true,
        env = "STEWARD_CHAT_MAX_MESSAGE_BYTES",
        default_value_t = crate::config::CHAT_MAX_MESSAGE_BYTES,
        value_parser = message_limit
    )]
    pub chat_max_message_bytes: usize,
    /// Largest file sent in chat, in bytes.
    #[arg(
        long,
        global = true,
        env = "STEWARD_CHAT_MAX_ATTACHMENT_BYTES",
        default_value_t = crate::config::CHAT_MAX_ATTACHMENT_BYTES
    )]
    pub chat_max_attachment_bytes: u64,
    /// On PostgreSQL: `off` lets chat batches commit without waiting for the log
    /// to reach the disk (lower latency; a database server crash may lose the
    /// last moments of acknowledged chat). See docs/PERFORMANCE.md, "Chat".
    #[arg(
        long,
        global = true,
        env = "STEWARD_CHAT_SYNCHRONOUS_COMMIT",
        default_value = "on",
        value_name = "on|off",
        value_parser = on_off,
        action = clap::ArgAction::Set
    )]
    pub chat_synchronous_commit: bool,
    /// Print one JSON object instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// A chat message limit: 1 byte to 1 MiB (the largest JSON body the API reads).
fn message_limit(text: &str) -> Result<usize, String> {
    match text.trim().parse::<usize>() {
        Ok(n) if (1..=crate::api::MAX_JSON_BODY).contains(&n) => Ok(n),
        _ => Err(format!(
            "{text:?}: give a number of bytes from 1 to {}",
            crate::api::MAX_JSON_BODY
        )),
    }
}

/// `on` or `off` (PostgreSQL's own words for the setting), also `true`/`false`.
fn on_off(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "on" | "true" => Ok(true),
        "off" | "false" => Ok(false),
        _ => Err(format!("{text:?}: give on or off")),
    }
}

impl Global {
    pub fn settings(&self) -> Settings {
        Settings {
            data_dir: self.data_dir.clone(),
            database_url: self.database_url.clone(),
            database_schema: self.database_schema.clone(),
            key_store: self.key_store.clone(),
            // The master key itself is only ever read from the environment, so it
            // never appears in a process list.
            master_key: std::env::var("STEWARD_MASTER_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
            master_key_file: self.master_key_file.clone(),
            blob_url: self.blob_url.clone(),
            policy_file: self.policy.clone(),
            default_region: self.default_region.clone(),
            max_media_bytes: self.max_media_bytes,
            max_recording_bytes: self.max_recording_bytes,
            bundle_keep_days: self.bundle_keep_days,
            chat_max_message_bytes: self.chat_max_message_bytes,
            chat_max_attachment_bytes: self.chat_max_attachment_bytes,
            chat_synchronous_commit: self.chat_synchronous_commit,
            ..Settings::default()
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server.
    Serve {
        #[arg(long, env = "STEWARD_LISTEN", default_value = "127.0.0.1:8080")]
        listen: String,
        /// Log format: json (structured) or text.
        #[arg(long, env = "STEWARD_LOG_FORMAT", default_value = "json")]
        log_format: String,
        /// How often the retention job runs inside the server (24h, 30m, 3600s);
        /// 0 disables it. See docs/RETENTION.md.
        #[arg(long, env = "STEWARD_RETENTION_INTERVAL", default_value = crate::retention::DEFAULT_INTERVAL)]
        retention_interval: String,
        /// Mark the console's session cookie Secure (and __Host-) on every
        /// response: set it when a TLS-terminating proxy sits in front.
        #[arg(long, env = "STEWARD_SECURE_COOKIES")]
        secure_cookies: bool,
    },
    /// Tenants and users.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Record consent received by phone, letter or email.
    #[command(subcommand)]
    Consent(ConsentCommand),
    /// Check and render the policy file.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// The audit log.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Key management.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Data-subject requests: access, portability, rectification, erasure, …
    #[command(subcommand)]
    Requests(RequestsCommand),
    /// Retention: erase data whose period ran out; legal holds and archiving exemptions.
    #[command(subcommand)]
    Retention(RetentionCommand),
    /// Backups of data and blobs without the keys, and their restore.
    #[command(subcommand)]
    Backup(backup::BackupCommand),
    /// Ingest traffic data: call detail records from PBX files; users' extensions.
    #[command(subcommand)]
    Ingest(ingest::IngestCommand),
    /// Calls, minutes and data per account of a tenant for a month, for billing.
    Usage(ingest::UsageArgs),
    /// Marketing: the mailing-tool export, "no further contact", and lifting it.
    #[command(subcommand)]
    Marketing(marketing::MarketingCommand),
}

#[derive(Debug, Subcommand)]
pub enum RetentionCommand {
    /// Hard-erase data whose retention period has run out (see docs/RETENTION.md).
    Run {
        /// List what would be erased, and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Judge expiry as of this day (YYYY-MM-DD, 00:00 UTC) instead of now, to
        /// test a policy change. A day in the future needs --dry-run.
        #[arg(long, hide = true)]
        as_of: Option<String>,
    },
    /// Place a legal hold or an archiving exemption: retention erases nothing of the subject's.
    Hold {
        #[command(flatten)]
        subject: SubjectArgs,
        /// legal or archive.
        #[arg(long)]
        kind: String,
    },
    /// Release a legal hold or an archiving exemption.
    Release {
        #[command(flatten)]
        subject: SubjectArgs,
        /// legal or archive.
        #[arg(long)]
        kind: String,
    },
    /// Subjects on legal hold or archive-exempt (ids only).
    Holds,
}

#[derive(Debug, Args)]
pub struct SubjectArgs {
    /// The subject's id.
    #[arg(long, group = "subject_ref")]
    pub subject: Option<String>,
    #[arg(long, group = "subject_ref")]
    pub subject_email: Option<String>,
    #[arg(long, group = "subject_ref")]
    pub subject_phone: Option<String>,
    #[arg(long, group = "subject_ref")]
    pub subject_username: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RequestsCommand {
    /// Record a request received by letter, email, phone or the portal.
    Create {
        /// access, portability, rectification, erasure, restriction or objection.
        #[arg(long)]
        kind: String,
        #[command(flatten)]
        subject: SubjectArgs,
        /// letter, email, phone or portal.
        #[arg(long)]
        channel: String,
        /// The day the request was received (YYYY-MM-DD); default today (UTC).
        #[arg(long)]
        received: Option<String>,
        /// england-and-wales, scotland or northern-ireland (default: the policy's).
        #[arg(long)]
        region: Option<String>,
        /// What the subject asked, in their words.
        #[arg(long)]
        details: Option<String>,
    },
    /// Record that the requester's identity was verified, and how.
    Verify {
        id: String,
        #[arg(long)]
        method: String,
    },
    /// Write the access/portability bundle (ZIP) and fulfil the request.
    Export {
        id: String,
        #[arg(long)]
        out: PathBuf,
    },
    /// Erase the subject of a verified erasure request everywhere.
    Erase { id: String },
    /// Correct one identifier (email, phone or name) for a rectification request.
    Rectify {
        id: String,
        #[arg(long)]
        field: String,
        #[arg(long)]
        value: String,
    },
    /// Refuse with a recorded ground.
    Refuse {
        id: String,
        /// repetitive, manifestly_unfounded, disproportionate_effort or others_privacy.
        #[arg(long)]
        ground: String,
    },
    /// Close a verified restriction or objection request.
    Complete {
        id: String,
        #[arg(long)]
        partially: bool,
    },
    /// One request with its timeline.
    Show { id: String },
    /// Requests, most urgent first.
    List {
        /// Only open requests due within this many working days (overdue included).
        #[arg(long)]
        due_within: Option<i64>,
    },
    /// The due date for a request received on a day.
    Deadline {
        #[arg(long)]
        received: String,
        #[arg(long)]
        region: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Create a tenant (a business customer).
    CreateTenant {
        #[arg(long)]
        name: String,
        #[arg(long)]
        customer_number: Option<String>,
    },
    /// Create an app account; the password is read from standard input.
    CreateUser {
        /// Tenant id (`provider` for the provider's own staff).
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        username: String,
        /// subject, tenant-admin, operator or dpo.
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: Option<String>,
        #[arg(long)]
        phone: Option<String>,
        #[arg(long)]
        display_name: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long, required = true)]
        password_stdin: bool,
    },
}

#[derive(Debug, Args)]
pub struct ConsentArgs {
    /// The subject's id.
    #[arg(long, group = "who")]
    pub subject: Option<String>,
    #[arg(long, group = "who")]
    pub subject_email: Option<String>,
    #[arg(long, group = "who")]
    pub subject_phone: Option<String>,
    #[arg(long, group = "who")]
    pub subject_username: Option<String>,
    /// The category consented to (device_contacts, photos_media, marketing via contact_details, …).
    #[arg(long)]
    pub category: String,
    #[arg(long)]
    pub purpose: String,
    /// phone, letter, email, app or web.
    #[arg(long)]
    pub channel: String,
    /// What proves the consent (a letter's reference, a call's note).
    #[arg(long)]
    pub evidence: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConsentCommand {
    Grant(ConsentArgs),
    Withdraw(ConsentArgs),
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Validate a policy file; errors name file:line:column.
    Check { file: PathBuf },
    /// Write the privacy notice (Markdown, HTML) and the Article 30 record (CSV).
    Render {
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Re-compute the hash chain; exits 1 and names the first broken entry.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Generate a new master key and re-wrap every key with it.
    RotateMaster {
        /// Where to write the new key when the current one came from STEWARD_MASTER_KEY.
        #[arg(long)]
        new_key_file: Option<PathBuf>,
    },
}

/// Runs the command line; returns the process exit code.
pub fn main() -> i32 {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut cmd = command();
    let matches = match cmd.try_get_matches_from_mut(&argv) {
        Ok(m) => m,
        Err(e) => return usage_error(&e, &cmd, &argv),
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e.format(&mut cmd), &cmd, &argv),
    };
    let path = matched_path(&matches);
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // Bad input names the field at fault, as the API's error body does.
            match e.field() {
                Some(field) => eprintln!("error: {field}: {e}"),
                None => eprintln!("error: {e}"),
            }
            // A command's own check for a value that was not given (one of
            // several flags, a flag needed only in some setups) is a missing
            // argument too: the field at fault names a flag the call left out.
            if let Some(field) = e.field()
                && e.exit_code() == 2
                && left_out(&cmd, &path, &matches, field)
                && let Some(example) = example(&path)
            {
                eprintln!("Example: {example}");
            }
            e.exit_code()
        }
    }
}

/// The command line's definition, each command's example shown after its help.
pub fn command() -> clap::Command {
    with_examples(Cli::command(), "")
}

fn with_examples(cmd: clap::Command, path: &str) -> clap::Command {
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_owned())
        .collect();
    let mut cmd = match example(path) {
        Some(e) => cmd.after_help(format!("Example: {e}")),
        None => cmd,
    };
    for name in names {
        let sub_path = if path.is_empty() {
            name.clone()
        } else {
            format!("{path} {name}")
        };
        cmd = cmd.mut_subcommand(&name, |s| with_examples(s, &sub_path));
    }
    cmd
}

/// One correct call of each command that takes a value it cannot do without,
/// keyed by the command's path (`requests create`). Printed after an error for
/// a missing argument and after the command's `--help`; `tests` checks that
/// every such command has one and that each one parses.
pub const EXAMPLES: &[(&str, &str)] = &[
    ("serve", "steward serve --listen 127.0.0.1:8080"),
    (
        "admin create-tenant",
        "steward admin create-tenant --name \"Acme Telecom Ltd\" --customer-number PCS-1001",
    ),
    (
        "admin create-user",
        "steward admin create-user --tenant provider --username dana --role dpo --password-stdin",
    ),
    (
        "consent grant",
        "steward consent grant --subject-email gwen@example.com --category photos_media \
         --purpose provision --channel phone --evidence \"call of 2026-11-26 10:14\"",
    ),
    (
        "consent withdraw",
        "steward consent withdraw --subject-username gwen --category photos_media \
         --purpose provision --channel letter",
    ),
    ("policy check", "steward policy check policy/default.toml"),
    ("policy render", "steward policy render --out site"),
    (
        "keys rotate-master",
        "steward keys rotate-master --new-key-file /secure/steward-master.key",
    ),
    (
        "requests create",
        "steward requests create --kind access --subject-email gwen@example.com \
         --channel letter --received 2026-12-07",
    ),
    (
        "requests verify",
        "steward requests verify REQUEST_ID --method \"passport seen\"",
    ),
    (
        "requests export",
        "steward requests export REQUEST_ID --out copy.zip",
    ),
    ("requests erase", "steward requests erase REQUEST_ID"),
    (
        "requests rectify",
        "steward requests rectify REQUEST_ID --field email --value gwen.parry@example.com",
    ),
    (
        "requests refuse",
        "steward requests refuse REQUEST_ID --ground manifestly_unfounded",
    ),
    ("requests complete", "steward requests complete REQUEST_ID"),
    ("requests show", "steward requests show REQUEST_ID"),
    (
        "requests deadline",
        "steward requests deadline --received 2026-12-18",
    ),
    (
        "retention hold",
        "steward retention hold --subject-email gwen@example.com --kind legal",
    ),
    (
        "retention release",
        "steward retention release --subject-email gwen@example.com --kind legal",
    ),
    (
        "backup create",
        "steward backup create /var/backups/steward-2026-12-07",
    ),
    (
        "backup restore",
        "steward backup restore /var/backups/steward-2026-12-07",
    ),
    (
        "ingest cdr",
        "steward ingest cdr --tenant TENANT_ID /var/log/asterisk/cdr-csv/Master.csv",
    ),
    (
        "ingest recording",
        "steward ingest recording --call 0123456789abcdef0123456789abcdef \
         --direction inbound --duration 95 call.wav",
    ),
    (
        "ingest extension",
        "steward ingest extension --subject-username gwen --extension 1001",
    ),
    ("usage", "steward usage --tenant TENANT_ID --month 2026-11"),
    (
        "marketing suppress",
        "steward marketing suppress --email gwen@example.com --channel letter",
    ),
    (
        "marketing check",
        "steward marketing check --email gwen@example.com",
    ),
    (
        "marketing resume",
        "steward marketing resume --subject-email gwen@example.com --channel letter \
         --evidence \"letter of 2026-12-01\"",
    ),
];

/// The example call of the command at `path`, if it has one.
pub fn example(path: &str) -> Option<&'static str> {
    EXAMPLES.iter().find(|(p, _)| *p == path).map(|(_, e)| *e)
}

/// Prints clap's error (or help, or version) as clap would, then, when the
/// error is a missing argument or a flag given without its value, the
/// command's example. Returns the exit code.
fn usage_error(e: &clap::Error, cmd: &clap::Command, argv: &[std::ffi::OsString]) -> i32 {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let _ = e.print();
    let missing = match e.kind() {
        ErrorKind::MissingRequiredArgument => true,
        // "a value is required for '--kind <KIND>' but none was supplied"
        ErrorKind::InvalidValue => matches!(
            e.get(ContextKind::InvalidValue),
            Some(ContextValue::String(v)) if v.is_empty()
        ),
        _ => false,
    };
    if missing && let Some(example) = example(&argv_path(cmd, argv)) {
        eprintln!("Example: {example}");
    }
    e.exit_code()
}

/// The path of the command a command line names (`requests create`), read
/// from its words: a parse error does not say which command it was in.
/// Flags are skipped with their values.
pub fn argv_path(root: &clap::Command, argv: &[std::ffi::OsString]) -> String {
    let mut cmd = root;
    let mut path: Vec<&str> = Vec::new();
    let mut words = argv.iter().skip(1).map(|w| w.to_string_lossy());
    while let Some(w) = words.next() {
        if w == "--" {
            break;
        }
        if let Some(long) = w.strip_prefix("--") {
            let takes_value = cmd
                .get_arguments()
                .chain(root.get_arguments())
                .find(|a| a.get_long() == Some(long))
                .is_some_and(|a| a.get_action().takes_values());
            if takes_value {
                words.next();
            }
        } else if !w.starts_with('-')
            && let Some(sub) = cmd.find_subcommand(w.as_ref())
        {
            path.push(sub.get_name());
            cmd = sub;
        }
    }
    path.join(" ")
}

/// The path of the command that was parsed.
fn matched_path(matches: &clap::ArgMatches) -> String {
    let mut path = Vec::new();
    let mut m = matches;
    while let Some((name, sub)) = m.subcommand() {
        path.push(name);
        m = sub;
    }
    path.join(" ")
}

/// Whether `field` (as an error names it: `new-key-file`, `subject`) is an
/// argument of the command at `path` that the call did not give.
fn left_out(root: &clap::Command, path: &str, matches: &clap::ArgMatches, field: &str) -> bool {
    let id = field.replace('-', "_");
    let mut cmd = root;
    let mut m = matches;
    for name in path.split_whitespace() {
        match (cmd.find_subcommand(name), m.subcommand_matches(name)) {
            (Some(c), Some(sub)) => (cmd, m) = (c, sub),
            _ => return false,
        }
    }
    cmd.get_arguments().any(|a| a.get_id() == id.as_str()) && !m.contains_id(&id)
}

/// Prints a result as JSON or as text.
pub(crate) fn emit(json: bool, value: &serde_json::Value, text: &str) {
    if json {
        println!("{value}");
    } else {
        println!("{text}");
    }
}

pub(crate) fn invalid(field: &str, msg: impl Into<String>) -> Error {
    Error::invalid(field, msg)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::{Cli, EXAMPLES};

    /// An example's words, as a shell splits them (double quotes only).
    fn words(line: &str) -> Vec<String> {
        let mut out = Vec::new();
        let mut word = String::new();
        let (mut quoted, mut started) = (false, false);
        for c in line.chars() {
            match c {
                '"' => (quoted, started) = (!quoted, true),
                c if c.is_whitespace() && !quoted => {
                    if started {
                        out.push(std::mem::take(&mut word));
                    }
                    started = false;
                }
                c => (word, started) = (word + &c.to_string(), true),
            }
        }
        if started {
            out.push(word);
        }
        out
    }

    /// Every command (a leaf of the tree) by its path, with whether it takes
    /// a value it cannot do without (a required argument or group).
    fn commands(cmd: &clap::Command, path: &str, out: &mut Vec<(String, bool)>) {
        for sub in cmd.get_subcommands() {
            let p = format!("{path} {}", sub.get_name()).trim().to_owned();
            if sub.has_subcommands() {
                commands(sub, &p, out);
            } else {
                let needs = sub.get_arguments().any(|a| a.is_required_set())
                    || sub.get_groups().any(|g| g.is_required_set());
                out.push((p, needs));
            }
        }
    }

    #[test]
    fn every_command_with_a_required_value_has_an_example_that_parses() {
        let mut cmd = super::command();
        cmd.build();
        let mut all = Vec::new();
        commands(&cmd, "", &mut all);
        let without: Vec<&str> = all
            .iter()
            .filter(|(p, needs)| *needs && super::example(p).is_none())
            .map(|(p, _)| p.as_str())
            .collect();
        assert!(without.is_empty(), "no example for: {without:?}");
        // "requests create" needs --kind and --channel at least.
        assert!(all.contains(&("requests create".to_owned(), true)));
        for (path, example) in EXAMPLES {
            assert!(
                all.iter().any(|(p, _)| p == path),
                "{path:?} is not a command"
            );
            assert!(
                example.starts_with(&format!("steward {path} ")),
                "{path}: {example}"
            );
            let argv = words(example);
            let parsed = super::command().try_get_matches_from(&argv);
            let parsed_path = parsed.as_ref().map(super::matched_path);
            assert_eq!(
                parsed_path.as_deref().map_err(|e| e.to_string()),
                Ok(*path),
                "{example}"
            );
            assert!(Cli::try_parse_from(&argv).is_ok(), "{example}");
            let os: Vec<std::ffi::OsString> = argv.iter().map(Into::into).collect();
            assert_eq!(&super::argv_path(&cmd, &os), path, "{example}");
        }
        // The help of a command ends with its example.
        let help = cmd
            .find_subcommand_mut("requests")
            .and_then(|r| r.find_subcommand_mut("create"))
            .map(|c| c.render_help().to_string())
            .unwrap_or_default();
        assert!(
            help.contains("Example: steward requests create --kind access"),
            "{help}"
        );
    }

    #[test]
    fn the_path_of_a_command_line_skips_flags_and_their_values() {
        let mut cmd = super::command();
        cmd.build();
        let path = |args: &[&str]| {
            let argv: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
            super::argv_path(&cmd, &argv)
        };
        assert_eq!(
            path(&[
                "steward",
                "--data-dir",
                "requests",
                "requests",
                "create",
                "--kind"
            ]),
            "requests create"
        );
        assert_eq!(
            path(&["steward", "--json", "requests", "verify", "--method=x"]),
            "requests verify"
        );
        assert_eq!(path(&["steward", "usage"]), "usage");
        assert_eq!(path(&["steward", "--", "requests"]), "");
    }

    fn sync_commit(args: &[&str]) -> Result<bool, String> {
        let mut argv = vec!["steward"];
        argv.extend_from_slice(args);
        argv.push("serve");
        Cli::try_parse_from(argv)
            .map(|cli| cli.global.settings().chat_synchronous_commit)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn chat_synchronous_commit_is_on_unless_turned_off() {
        // The environment could set it; these tests run without it.
        if std::env::var_os("STEWARD_CHAT_SYNCHRONOUS_COMMIT").is_some() {
            return;
        }
        assert_eq!(sync_commit(&[]), Ok(true));
        for off in ["off", "OFF", "false", " off "] {
            assert_eq!(
                sync_commit(&["--chat-synchronous-commit", off]),
                Ok(false),
                "{off:?}"
            );
        }
        assert_eq!(sync_commit(&["--chat-synchronous-commit", "on"]), Ok(true));
        let refused = sync_commit(&["--chat-synchronous-commit", "0"]);
        assert!(
            refused
                .as_ref()
                .is_err_and(|e| e.contains("give on or off")),
            "{refused:?}"
        );
    }
}
