//! The business directory in the employer console (tenant-admin; operators for
//! their scope): list and search, add, edit, remove with a confirmation, import
//! a vCard file, export as vCard 4.0 or 3.0. The rules stay in `directory.rs`;
//! this file turns forms into entries and the domain's errors into messages
//! next to the field at fault.

use std::collections::HashMap;

use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use steward_vcard::Typed;

use super::employer::tenant_of_page;
use super::session::{Console, CsrfForm, CsrfUpload, decode};
use super::views::{Errors, Layout, Problem, render, when};
use super::{WebError, WebPath, WebQuery, WebResult, blocking, form_error, see_other};
use crate::access::Role;
use crate::api::AppState;
use crate::api::vcard::vcard_response;
use crate::core::Steward;
use crate::directory::{self, Entry, EntryInput, ImportReport, MAX_IMPORT_BYTES};
use crate::error::{Error, Result};
use crate::tenants;

/// The fields of the entry form, as the domain names them.
const ENTRY_FIELDS: &[&str] = &[
    "display_name",
    "given_name",
    "family_name",
    "organization",
    "department",
    "title",
    "emails",
    "phones",
];

/// The directory pages are for those who manage it; every account of the
/// tenant reads it through the API and the App.
fn require_manager(c: &Console) -> Result<()> {
    c.actor.require_role(
        &[Role::TenantAdmin, Role::Operator],
        "manage the business directory",
    )
}

/// The tenant a directory page is about, for someone who may manage it.
fn tenant_for(c: &Console, named: &str) -> Result<String> {
    require_manager(c)?;
    tenant_of_page(c, Some(named))
}

/// The entry form: one field per entry field, emails and phone numbers one
/// per line.
#[derive(Debug, Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
pub struct EntryForm {
    #[serde(default)]
    pub tenant: String,
    #[serde(default)]
    pub display_name: String,
    #[serde(default)]
    pub given_name: String,
    #[serde(default)]
    pub family_name: String,
    #[serde(default)]
    pub organization: String,
    #[serde(default)]
    pub department: String,
    #[serde(default)]
    pub title: String,
    #[serde(default)]
    pub emails: String,
    #[serde(default)]
    pub phones: String,
}

fn opt(s: &str) -> Option<String> {
    Some(s.to_owned())
}

fn lines_of(values: &[Typed]) -> String {
    values
        .iter()
        .map(|t| t.value.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// One value per non-empty line; a value the entry had keeps its types,
/// preference and label (as an import brought them), a new one has none.
fn typed(text: &str, before: &[Typed]) -> Vec<Typed> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(|l| {
            before
                .iter()
                .find(|t| t.value == l)
                .cloned()
                .unwrap_or_else(|| Typed {
                    value: l.to_owned(),
                    ..Typed::default()
                })
        })
        .collect()
}

impl EntryForm {
    fn of(tenant: &str, e: &EntryInput) -> EntryForm {
        let text = |v: &Option<String>| v.clone().unwrap_or_default();
        EntryForm {
            tenant: tenant.to_owned(),
            display_name: e.display_name.clone(),
            given_name: text(&e.given_name),
            family_name: text(&e.family_name),
            organization: text(&e.organization),
            department: text(&e.department),
            title: text(&e.title),
            emails: lines_of(&e.emails),
            phones: lines_of(&e.phones),
        }
    }

    /// The entry the form describes (blank optional fields left out by the
    /// domain's trimming); `before` is the entry being edited.
    fn input(&self, before: Option<&EntryInput>) -> EntryInput {
        let none = Vec::new();
        EntryInput {
            display_name: self.display_name.clone(),
            given_name: opt(&self.given_name),
            family_name: opt(&self.family_name),
            organization: opt(&self.organization),
            department: opt(&self.department),
            title: opt(&self.title),
            emails: typed(&self.emails, before.map_or(&none, |b| &b.emails)),
            phones: typed(&self.phones, before.map_or(&none, |b| &b.phones)),
        }
    }
}

/// The domain's error as a problem of the form: `emails[2].value` is the
/// third line of the emails field.
fn entry_problem(form: &str, e: Error) -> WebResult<(StatusCode, Errors)> {
    let (status, mut p) = form_error(e)?;
    if let Some(f) = p.field.clone()
        && let Some((list, rest)) = f.split_once('[')
        && let Some((n, _)) = rest.split_once(']')
        && let Ok(n) = n.parse::<usize>()
    {
        let message = p
            .message
            .strip_prefix(&format!("{f}: "))
            .unwrap_or(&p.message)
            .to_owned();
        p = Problem {
            field: Some(list.to_owned()),
            message: super::sentence(&format!("line {}: {message}", n + 1)),
        };
    } else if let Some(f) = &p.field {
        // "display_name: is empty: ..." reads better without the field's code name.
        if let Some(m) = p.message.strip_prefix(&format!("{f}: ")) {
            p.message = super::sentence(m);
        }
    }
    Ok((status, Errors::on(form, p, ENTRY_FIELDS)))
}

// ------------------------------------------------------------------ the list

pub struct EntryRow {
    pub id: String,
    pub name: String,
    /// Job title, department and organisation, as one line.
    pub role: String,
    pub emails: Vec<String>,
    pub phones: Vec<String>,
    pub updated: String,
}

fn row(e: &Entry) -> EntryRow {
    let f = &e.fields;
    let role: Vec<&str> = [&f.title, &f.department, &f.organization]
        .iter()
        .filter_map(|v| v.as_deref())
        .collect();
    EntryRow {
        id: e.id.clone(),
        name: f.display_name.clone(),
        role: role.join(", "),
        emails: f.emails.iter().map(|t| t.value.clone()).collect(),
        phones: f.phones.iter().map(|t| t.value.clone()).collect(),
        updated: when(e.updated_at),
    }
}

/// Whether an entry matches a search: any of its texts contains every word.
fn matches(e: &Entry, q: &str) -> bool {
    let f = &e.fields;
    let mut text = vec![f.display_name.to_lowercase()];
    for v in [
        &f.given_name,
        &f.family_name,
        &f.organization,
        &f.department,
        &f.title,
    ]
    .into_iter()
    .flatten()
    {
        text.push(v.to_lowercase());
    }
    for t in f.emails.iter().chain(&f.phones) {
        text.push(t.value.to_lowercase());
    }
    let all = text.join("\n");
    q.split_whitespace()
        .all(|w| all.contains(&w.to_lowercase()))
}

/// One card of an import, as the report shows it.
pub struct ImportRow {
    pub card: usize,
    pub line: usize,
    pub outcome: &'static str,
    pub entry_id: String,
    pub name: String,
    pub ignored: String,
}

#[derive(Template)]
#[template(path = "console/directory.html")]
struct DirectoryPage {
    l: Layout,
    tenant_id: String,
    tenant_name: String,
    total: usize,
    rows: Vec<EntryRow>,
    q: String,
    errors: Errors,
    form: EntryForm,
    form_id: &'static str,
    import: Option<(u64, u64, u64, Vec<ImportRow>)>,
    max_import: String,
}

fn flash_of(code: Option<&str>) -> Option<String> {
    let m = match code? {
        "created" => "The entry was added. Your users' devices receive it at their next sync.",
        "updated" => {
            "The entry was saved. Your users' devices receive the change at their next sync."
        }
        "deleted" => "The entry was removed. Your users' devices drop it at their next sync.",
        _ => return None,
    };
    Some(m.to_owned())
}

struct ListView<'a> {
    q: &'a str,
    errors: Errors,
    form: EntryForm,
    flash: Option<String>,
    import: Option<&'a ImportReport>,
}

fn directory_html(core: &Steward, c: &Console, tenant: &str, v: ListView<'_>) -> Result<String> {
    let t = tenants::get(core, &c.actor, tenant)?;
    let entries = directory::list(core, &c.actor, tenant)?;
    let import = v.import.map(|r| {
        let names: HashMap<&str, &str> = entries
            .iter()
            .map(|e| (e.id.as_str(), e.fields.display_name.as_str()))
            .collect();
        let rows = r
            .cards
            .iter()
            .map(|card| ImportRow {
                card: card.card,
                line: card.line,
                outcome: match card.outcome.as_str() {
                    "created" => "Added",
                    "updated" => "Updated",
                    _ => "Unchanged",
                },
                name: names
                    .get(card.entry_id.as_str())
                    .copied()
                    .unwrap_or_default()
                    .to_owned(),
                entry_id: card.entry_id.clone(),
                ignored: card.ignored.join(", "),
            })
            .collect();
        (r.created, r.updated, r.unchanged, rows)
    });
    let q = v.q.trim();
    let page = DirectoryPage {
        l: Layout::new(c, "Directory", "/console/directory", v.flash),
        tenant_name: t.name,
        tenant_id: t.id,
        total: entries.len(),
        rows: entries.iter().filter(|e| matches(e, q)).map(row).collect(),
        q: q.to_owned(),
        errors: v.errors,
        form: v.form,
        form_id: "add",
        import,
        max_import: format!("{} MiB", MAX_IMPORT_BYTES / (1024 * 1024)),
    };
    Ok(render(&page))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct DirectoryQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    q: String,
    #[serde(default)]
    done: Option<String>,
}

pub async fn list(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<DirectoryQuery>,
) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &q.tenant)?;
        let view = ListView {
            q: &q.q,
            errors: Errors::none(),
            form: EntryForm::default(),
            flash: flash_of(q.done.as_deref()),
            import: None,
        };
        directory_html(core, &c, &tenant, view)
    })
    .await??;
    Ok(Html(html))
}

fn back_to_list(tenant: &str, done: &str) -> Response {
    see_other(&format!("/console/directory?tenant={tenant}&done={done}"))
}

pub async fn create(
    State(s): State<AppState>,
    CsrfForm(c, f): CsrfForm<EntryForm>,
) -> WebResult<Response> {
    let form = f.clone();
    let (outcome, c) = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &form.tenant)?;
        let res = directory::create(core, &c.actor, &tenant, form.input(None));
        Ok((res.map(|_| tenant.clone()).map_err(|e| (e, tenant)), c))
    })
    .await??;
    match outcome {
        Ok(tenant) => Ok(back_to_list(&tenant, "created")),
        Err((e, tenant)) => {
            let (status, errors) = entry_problem("add", e)?;
            let html = blocking(&s, move |core| {
                let view = ListView {
                    q: "",
                    errors,
                    form: f,
                    flash: None,
                    import: None,
                };
                directory_html(core, &c, &tenant, view)
            })
            .await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

// ------------------------------------------------------------------ one entry

#[derive(Template)]
#[template(path = "console/directory_entry.html")]
struct EntryPage {
    l: Layout,
    tenant_id: String,
    id: String,
    name: String,
    created: String,
    updated: String,
    errors: Errors,
    form: EntryForm,
    form_id: &'static str,
}

fn entry_html(
    core: &Steward,
    c: &Console,
    tenant: &str,
    entry: &Entry,
    form: Option<EntryForm>,
    errors: Errors,
) -> Result<String> {
    tenants::get(core, &c.actor, tenant)?;
    let page = EntryPage {
        l: Layout::new(
            c,
            entry.fields.display_name.clone(),
            "/console/directory",
            None,
        ),
        tenant_id: tenant.to_owned(),
        id: entry.id.clone(),
        name: entry.fields.display_name.clone(),
        created: when(entry.created_at),
        updated: when(entry.updated_at),
        errors,
        form: form.unwrap_or_else(|| EntryForm::of(tenant, &entry.fields)),
        form_id: "edit",
    };
    Ok(render(&page))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct TenantQuery {
    #[serde(default)]
    tenant: String,
}

pub async fn entry(
    State(s): State<AppState>,
    c: Console,
    WebPath(id): WebPath<String>,
    WebQuery(q): WebQuery<TenantQuery>,
) -> WebResult<Html<String>> {
    let html = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &q.tenant)?;
        let entry = directory::get(core, &c.actor, &tenant, &id)?;
        entry_html(core, &c, &tenant, &entry, None, Errors::none())
    })
    .await??;
    Ok(Html(html))
}

pub async fn update(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<EntryForm>,
) -> WebResult<Response> {
    let form = f.clone();
    let (outcome, c) = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &form.tenant)?;
        let before = directory::get(core, &c.actor, &tenant, &id)?;
        let res = directory::update(
            core,
            &c.actor,
            &tenant,
            &id,
            form.input(Some(&before.fields)),
        );
        Ok((
            res.map(|_| tenant.clone()).map_err(|e| (e, tenant, before)),
            c,
        ))
    })
    .await??;
    match outcome {
        Ok(tenant) => Ok(back_to_list(&tenant, "updated")),
        Err((e, tenant, before)) => {
            let (status, errors) = entry_problem("edit", e)?;
            let html = blocking(&s, move |core| {
                entry_html(core, &c, &tenant, &before, Some(f), errors)
            })
            .await??;
            Ok((status, Html(html)).into_response())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeleteForm {
    #[serde(default)]
    tenant: String,
    /// The confirmation box; without it nothing is removed.
    #[serde(default)]
    confirm: Option<String>,
}

pub async fn delete(
    State(s): State<AppState>,
    WebPath(id): WebPath<String>,
    CsrfForm(c, f): CsrfForm<DeleteForm>,
) -> WebResult<Response> {
    let outcome = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &f.tenant)?;
        if f.confirm.as_deref() == Some("yes") {
            directory::delete(core, &c.actor, &tenant, &id)?;
            return Ok(Ok(tenant));
        }
        // Not confirmed: the entry page again, the message at the box.
        let entry = directory::get(core, &c.actor, &tenant, &id)?;
        let errors = Errors::on(
            "delete",
            Problem {
                field: Some("confirm".into()),
                message: "Tick the box to confirm that the entry should be removed.".into(),
            },
            &["confirm"],
        );
        Ok(Err(entry_html(core, &c, &tenant, &entry, None, errors)?))
    })
    .await??;
    match outcome {
        Ok(tenant) => Ok(back_to_list(&tenant, "deleted")),
        Err(html) => Ok((StatusCode::BAD_REQUEST, Html(html)).into_response()),
    }
}

// ------------------------------------------------------------ import, export

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportForm {
    #[serde(default)]
    tenant: String,
}

pub async fn import(
    State(s): State<AppState>,
    CsrfUpload(c, upload): CsrfUpload<MAX_IMPORT_BYTES>,
) -> WebResult<Response> {
    let form: ImportForm = decode(&upload.fields)?;
    let html = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &form.tenant)?;
        let problem = |message: String| Problem {
            field: Some("file".into()),
            message,
        };
        let outcome = match upload.file {
            Err(m) => Err((StatusCode::PAYLOAD_TOO_LARGE, problem(m))),
            Ok(None) => Err((
                StatusCode::BAD_REQUEST,
                problem("Choose a vCard file (.vcf) to import.".into()),
            )),
            Ok(Some(bytes)) => match directory::import_vcard(core, &c.actor, &tenant, &bytes) {
                Ok(report) => Ok(report),
                // The message names the card, its line and the field.
                Err(Error::Invalid { message, .. }) => {
                    Err((StatusCode::BAD_REQUEST, problem(super::sentence(&message))))
                }
                Err(e) => return Err(e),
            },
        };
        let (status, errors, report) = match outcome {
            Ok(report) => (StatusCode::OK, Errors::none(), Some(report)),
            Err((status, p)) => (status, Errors::on("import", p, &["file"]), None),
        };
        let view = ListView {
            q: "",
            errors,
            form: EntryForm::default(),
            flash: report
                .as_ref()
                .map(|_| "The file was imported: the report is below.".to_owned()),
            import: report.as_ref(),
        };
        Ok((status, directory_html(core, &c, &tenant, view)?))
    })
    .await?
    .map_err(WebError::from)?;
    Ok((html.0, Html(html.1)).into_response())
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    tenant: String,
    #[serde(default)]
    version: Option<String>,
}

pub async fn export(
    State(s): State<AppState>,
    c: Console,
    WebQuery(q): WebQuery<ExportQuery>,
) -> WebResult<Response> {
    let version = directory::parse_version("version", q.version.as_deref().unwrap_or("4.0"))?;
    let text = blocking(&s, move |core| {
        let tenant = tenant_for(&c, &q.tenant)?;
        directory::export_vcard(core, &c.actor, &tenant, version)
    })
    .await??;
    let name = match version {
        steward_vcard::Version::V3 => "directory-vcard3.vcf",
        _ => "directory.vcf",
    };
    Ok(vcard_response(text, Some(name)))
}
