//! What each command does. Commands open Steward, act as the local
//! administrator (`Actor::cli`), and print.

use std::io::BufRead;
use std::sync::Arc;

use serde_json::json;
use steward_crypto::{IdentifierKind, MasterKey, normalize};
use steward_store::params;

use super::{
    AdminCommand, AuditCommand, Cli, Command, ConsentArgs, ConsentCommand, KeysCommand,
    PolicyCommand, emit, invalid,
};
use crate::access::{Actor, Role};
use crate::accounts::{self, NewUser};
use crate::config::Settings;
use crate::consent::{self, Action, Channel, Record};
use crate::core::{OpenReport, Steward};
use crate::error::{Error, Result};
use crate::{audit, tenants};

pub(super) fn run(cli: Cli) -> Result<i32> {
    let json = cli.global.json;
    let settings = cli.global.settings();
    match cli.command {
        Command::Serve {
            listen,
            log_format,
            retention_interval,
            secure_cookies,
        } => serve(
            Settings {
                secure_cookies,
                ..settings
            },
            &listen,
            &log_format,
            &retention_interval,
        ),
        Command::Policy(PolicyCommand::Check { file }) => policy_check(&file, json),
        Command::Policy(PolicyCommand::Render { out }) => policy_render(&settings, &out, json),
        Command::Admin(cmd) => {
            let core = open(settings)?;
            admin(&core, cmd, json)
        }
        Command::Consent(cmd) => {
            let core = open(settings)?;
            let (action, args) = match cmd {
                ConsentCommand::Grant(a) => (Action::Grant, a),
                ConsentCommand::Withdraw(a) => (Action::Withdraw, a),
            };
            consent_cmd(&core, action, args, json)
        }
        Command::Audit(AuditCommand::Verify) => {
            let core = open(settings)?;
            let v = audit::verify(&core.db, &core.keys)?;
            let text = match (&v.first_broken, &v.problem) {
                (Some(seq), Some(p)) => format!("audit log BROKEN at entry {seq}: {p}"),
                _ => format!("audit log intact: {} entries verified", v.entries),
            };
            emit(json, &serde_json::to_value(&v).unwrap_or_default(), &text);
            Ok(if v.ok { 0 } else { 1 })
        }
        Command::Keys(KeysCommand::RotateMaster { new_key_file }) => {
            rotate_master(settings, new_key_file, json)
        }
        Command::Requests(cmd) => super::requests::run(settings, cmd, json),
        Command::Retention(cmd) => super::retention::run(settings, cmd, json),
        Command::Backup(cmd) => super::backup::run(settings, cmd, json),
        Command::Ingest(cmd) => super::ingest::run(settings, cmd, json),
        Command::Usage(args) => super::ingest::usage(settings, args, json),
        Command::Marketing(cmd) => super::marketing::run(settings, cmd, json),
    }
}

/// Opens Steward and reports first-start events on stderr.
pub(crate) fn open(settings: Settings) -> Result<Steward> {
    let (core, report) = open_with_recovery(settings)?;
    announce(&report);
    for w in crate::rights::view::policy_problems(&core.policy) {
        eprintln!("policy: warning: {w}");
    }
    Ok(core)
}

fn announce(report: &OpenReport) {
    if let Some(path) = &report.created_master_key {
        eprintln!(
            "steward: created a new master key at {} — back it up apart from the data; \
             without it nothing stored can be read",
            path.display()
        );
    }
    for w in &report.policy_warnings {
        eprintln!("{w}");
    }
}

/// A master-key rotation interrupted after the key store was re-wrapped leaves
/// the new key in `<file>.new`: finish the rotation by promoting it.
fn open_with_recovery(settings: Settings) -> Result<(Steward, OpenReport)> {
    match Steward::open(settings.clone()) {
        Err(Error::Keys(msg)) if settings.master_key.is_none() => {
            let path = settings.master_key_path();
            let pending = pending_path(&path);
            if !pending.exists() {
                return Err(Error::Keys(msg));
            }
            let mut retry = settings.clone();
            retry.master_key_file = Some(pending.clone());
            let opened = Steward::open(retry)?;
            std::fs::rename(&pending, &path)
                .map_err(|e| Error::Keys(format!("cannot promote {}: {e}", pending.display())))?;
            eprintln!("steward: finished an interrupted master key rotation");
            Ok(opened)
        }
        other => other,
    }
}

fn pending_path(path: &std::path::Path) -> std::path::PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".new");
    p.into()
}

fn serve(
    settings: Settings,
    listen: &str,
    log_format: &str,
    retention_interval: &str,
) -> Result<i32> {
    init_logging(log_format)?;
    let addr: std::net::SocketAddr = listen.parse().map_err(|_| {
        invalid(
            "listen",
            format!("{listen:?} is not an address like 127.0.0.1:8080"),
        )
    })?;
    let retention_every = crate::retention::parse_interval(retention_interval)?;
    // Held until the process ends: a second server on this SQLite directory
    // is refused.
    let _claim = crate::instance::claim_for_server(&settings, listen)?;
    let core = Arc::new(open(settings)?);
    let runtime = tokio::runtime::Runtime::new().map_err(|e| Error::Internal(e.to_string()))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|e| invalid("listen", format!("cannot listen on {addr}: {e}")))?;
        let local = listener
            .local_addr()
            .map_err(|e| Error::Internal(e.to_string()))?;
        eprintln!(
            "steward: serving on http://{local} (database {}, key store {}, blobs {})",
            core.db.describe(),
            core.keys.describe(),
            core.blobs.describe()
        );
        eprintln!("steward: console at http://{local}/console");
        tracing::info!(%local, "listening");
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let retention = retention_every.map(|every| {
            tracing::info!(interval_secs = every.as_secs(), "retention job scheduled");
            crate::retention::spawn_scheduler(core.clone(), every, stop.clone())
        });
        let served = crate::api::serve(core, listener, shutdown_signal())
            .await
            .map_err(|e| Error::Internal(e.to_string()));
        // A run in progress stops at the next subject; the runtime waits for it.
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(task) = retention {
            task.abort();
        }
        served
    })?;
    Ok(0)
}

/// Resolves on Ctrl-C or SIGTERM (what service managers send), so in-flight
/// requests finish before the process exits.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}

fn init_logging(format: &str) -> Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STEWARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let res = match format {
        "json" => builder.json().try_init(),
        "text" => builder.try_init(),
        other => {
            return Err(invalid(
                "log-format",
                format!("{other:?}: expected json or text"),
            ));
        }
    };
    res.map_err(|e| Error::Internal(e.to_string()))
}

fn policy_check(file: &std::path::Path, json: bool) -> Result<i32> {
    match steward_policy::load(file) {
        Ok(checked) => {
            let mut warnings: Vec<String> =
                checked.warnings.iter().map(|w| w.to_string()).collect();
            warnings.extend(
                crate::rights::view::policy_problems(&checked.policy)
                    .into_iter()
                    .map(|w| format!("{}: warning: {w}", file.display())),
            );
            for w in &warnings {
                eprintln!("{w}");
            }
            emit(
                json,
                &json!({ "ok": true, "errors": [], "warnings": warnings }),
                &format!("{}: ok ({} warnings)", file.display(), warnings.len()),
            );
            Ok(0)
        }
        Err(diags) => {
            let all: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
            if json {
                println!("{}", json!({ "ok": false, "errors": all }));
            } else {
                for d in &all {
                    eprintln!("{d}");
                }
            }
            Ok(1)
        }
    }
}

fn policy_render(settings: &Settings, out: &std::path::Path, json: bool) -> Result<i32> {
    let policy = match &settings.policy_file {
        None => steward_policy::Policy::default_policy(),
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
    };
    let files = steward_policy::render::render_to_dir(&policy, out)
        .map_err(|e| invalid("out", format!("cannot write to {}: {e}", out.display())))?;
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    emit(json, &json!({ "files": names }), &names.join("\n"));
    Ok(0)
}

fn admin(core: &Steward, cmd: AdminCommand, json: bool) -> Result<i32> {
    let actor = Actor::cli();
    match cmd {
        AdminCommand::CreateTenant {
            name,
            customer_number,
        } => {
            let t = tenants::create(core, &actor, &name, customer_number.as_deref())?;
            emit(
                json,
                &serde_json::to_value(&t).unwrap_or_default(),
                &format!("created tenant {} ({})", t.id, t.name),
            );
        }
        AdminCommand::CreateUser {
            tenant,
            username,
            role,
            email,
            phone,
            display_name,
            password_stdin: _,
        } => {
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .map_err(|e| invalid("password", format!("cannot read standard input: {e}")))?;
            let password = password.trim_end_matches(['\n', '\r']).to_owned();
            let acc = accounts::create_user(
                core,
                &actor,
                &tenant,
                NewUser {
                    username,
                    password,
                    role: Role::parse(&role)?,
                    email,
                    phone,
                    display_name,
                },
            )?;
            emit(
                json,
                &serde_json::to_value(&acc).unwrap_or_default(),
                &format!(
                    "created {} account {} (id {}, subject {})",
                    acc.role.as_str(),
                    acc.username,
                    acc.id,
                    acc.subject_id
                ),
            );
        }
    }
    Ok(0)
}

/// Resolves `--subject*` to one subject id, across all tenants.
pub(crate) fn resolve_subject(
    core: &Steward,
    id: Option<String>,
    email: Option<String>,
    phone: Option<String>,
    username: Option<String>,
) -> Result<String> {
    if let Some(id) = id {
        return Ok(id);
    }
    let (sql, idx) = if let Some(e) = email {
        let n = normalize::email(&e).map_err(|e| invalid("subject-email", e.to_string()))?;
        (
            "SELECT id FROM subjects WHERE email_idx = $1",
            core.keys.blind_index(IdentifierKind::Email, &n),
        )
    } else if let Some(p) = phone {
        let n = normalize::phone(&p, &core.settings.default_region)
            .map_err(|e| invalid("subject-phone", e.to_string()))?;
        (
            "SELECT id FROM subjects WHERE phone_idx = $1",
            core.keys.blind_index(IdentifierKind::Phone, &n),
        )
    } else if let Some(u) = username {
        let n = normalize::username(&u).map_err(|e| invalid("subject-username", e.to_string()))?;
        (
            "SELECT subject_id FROM accounts WHERE username_idx = $1",
            core.keys.blind_index(IdentifierKind::Username, &n),
        )
    } else {
        return Err(invalid(
            "subject",
            "name the subject: --subject, --subject-email, --subject-phone or --subject-username",
        ));
    };
    let rows = core.db.read(|c| c.query(sql, params![idx]))?;
    match rows.as_slice() {
        [] => Err(Error::NotFound("subject".into())),
        [one] => Ok(one.text(0)?),
        many => Err(invalid(
            "subject",
            format!("{} subjects match; name one with --subject ID", many.len()),
        )),
    }
}

fn consent_cmd(core: &Steward, action: Action, a: ConsentArgs, json: bool) -> Result<i32> {
    let subject_id = resolve_subject(
        core,
        a.subject,
        a.subject_email,
        a.subject_phone,
        a.subject_username,
    )?;
    let ev = consent::record(
        core,
        &Actor::cli(),
        Record {
            subject_id,
            category: a.category,
            purpose: a.purpose,
            action,
            channel: Channel::parse(&a.channel)?,
            evidence: a.evidence,
        },
    )?;
    emit(
        json,
        &serde_json::to_value(&ev).unwrap_or_default(),
        &format!(
            "recorded consent {} for {} (event {})",
            if action == Action::Grant {
                "grant"
            } else {
                "withdrawal"
            },
            ev.purpose,
            ev.id
        ),
    );
    Ok(0)
}

fn rotate_master(
    settings: Settings,
    new_key_file: Option<std::path::PathBuf>,
    json: bool,
) -> Result<i32> {
    // A running server keeps the old master key in memory and could not
    // unwrap the keys re-wrapped under the new one.
    crate::instance::require_no_server(&settings, "stop it before rotating the master key")?;
    let from_env = settings.master_key.is_some();
    let target = match (&new_key_file, from_env) {
        (Some(p), _) => p.clone(),
        (None, false) => settings.master_key_path(),
        (None, true) => {
            return Err(invalid(
                "new-key-file",
                "the master key comes from STEWARD_MASTER_KEY: give --new-key-file PATH for the new one",
            ));
        }
    };
    let core = open(settings)?;
    let new = MasterKey::generate()?;
    // Write the new key beside the old one first: if we stop half-way, the next
    // start finds it and finishes the rotation (see open_with_recovery).
    let pending = pending_path(&target);
    if pending.exists() {
        // The current key opened the store, so a leftover pending key belongs to a
        // rotation that stopped before re-wrapping anything: it is unused.
        std::fs::remove_file(&pending)
            .map_err(|e| Error::Keys(format!("cannot remove stale {}: {e}", pending.display())))?;
    }
    new.write_to(&pending).map_err(|e| {
        invalid(
            "new-key-file",
            format!("cannot write {}: {e}", pending.display()),
        )
    })?;
    let n = core.keys.rotate_master(&new)?;
    std::fs::rename(&pending, &target)
        .map_err(|e| Error::Keys(format!("cannot move {} into place: {e}", pending.display())))?;
    let mut text = format!(
        "re-wrapped {n} keys under master key {} ({})",
        new.id(),
        target.display()
    );
    if from_env {
        text.push_str("\nset STEWARD_MASTER_KEY to the new key's contents before the next start");
    }
    emit(
        json,
        &json!({ "rewrapped": n, "master_key_id": new.id(), "file": target.display().to_string() }),
        &text,
    );
    Ok(0)
}
