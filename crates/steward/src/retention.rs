//! Retention: data whose period has run out is hard-erased (the statement's "6 years
//! unless otherwise stipulated ... hard erased after this time", with the clock
//! restarting whenever the subject engages). See `docs/RETENTION.md`.
//!
//! The job walks the subjects page by page and, for each, every table store in the
//! registry by its policy category, so a store added to the registry is covered with
//! no change here:
//!
//! * a category counted from the last engagement expires, for all of the subject's
//!   rows in its stores, when `retention.expires_at(last_engagement_at) <= now`;
//! * a category counted from collection expires row by row, by the store's time
//!   column (a store without one falls back to the last engagement);
//! * when the subject's identity (the `subjects` store) has expired and so has
//!   everything else they have, the whole subject is erased (tombstone, key
//!   destruction) through [`erase::erase_subject_if`]; otherwise only the expired rows
//!   go, as the registry's `on_erase` says, and the identity stays for the rows that
//!   remain;
//! * subjects on legal hold or archive-exempt are kept whole, and rows of categories
//!   the policy marks `archive_exempt` are never erased.
//!
//! [`plan`] says what would go; [`run`] computes the plan and executes exactly it,
//! re-checking each subject inside the transaction that erases it. Reports and logs
//! carry pseudonymous subject ids and counts, never personal data.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use steward_policy::{Policy, RetentionStart};
use steward_store::{Conn, Value, params};

use crate::access::{Actor, Role};
use crate::audit::Event;
use crate::clock::rfc3339;
use crate::core::Steward;
use crate::error::{Error, Result};
use crate::registry::{OnErase, PERSONAL_STORES, PersonalStore};
use crate::rights::erase::{self, Reason};
use crate::subjects;

/// The store holding who the subject is. When its category expires (and nothing
/// else of theirs must stay), the whole subject goes.
pub const IDENTITY_STORE: &str = "subjects";

/// How the job appears in the audit log: `system:retention`.
pub const JOB: &str = "retention";

/// Subjects read per page: memory does not grow with the number of subjects.
const PAGE: i64 = 200;

/// The first scheduled run waits this long after start-up (or one interval, if
/// shorter), so a restart loop does not hammer the database.
pub const FIRST_RUN_DELAY: Duration = Duration::from_secs(60);

/// The default interval between scheduled runs.
pub const DEFAULT_INTERVAL: &str = "24h";

/// What happens to a store's rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemAction {
    Delete,
    /// Kept with the subject's id and their sealed fields cleared.
    Pseudonymise,
}

/// One store's rows of one subject that go (or went). Subject ids are
/// pseudonymous UUIDs; nothing else about the subject is listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlanItem {
    pub subject_id: String,
    pub store: String,
    pub category: String,
    pub action: ItemAction,
    pub rows: u64,
    /// The whole subject goes (tombstone and key destruction), not just these rows.
    pub whole_subject: bool,
}

/// Counts for a plan or a run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub subjects_checked: u64,
    /// Subjects erased whole: every store, tombstone, key destroyed.
    pub subjects_erased: u64,
    /// Subjects kept, with some of their rows erased.
    pub subjects_trimmed: u64,
    /// Rows erased (deleted or pseudonymised), per policy category.
    pub rows: BTreeMap<String, u64>,
    /// Subjects with expired data kept because they are on legal hold.
    pub kept_legal_hold: u64,
    /// Subjects with expired data kept because they are archive-exempt.
    pub kept_archive_exempt: u64,
    /// Subjects whose identity expired but who still have data that must stay
    /// (an archive-exempt category, or a longer or later-starting period).
    pub identity_kept: u64,
}

/// What a run would erase now.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionPlan {
    /// The moment expiry is judged against (Unix seconds).
    pub as_of: i64,
    pub as_of_utc: String,
    pub policy_version: String,
    /// Policy categories never erased by retention (archiving in the public interest).
    pub exempt_categories: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Subject by subject, store by store, in subject-id order.
    pub items: Vec<PlanItem>,
}

/// What a run erased.
#[derive(Debug, Clone, Serialize)]
pub struct RetentionReport {
    pub as_of: i64,
    pub as_of_utc: String,
    pub policy_version: String,
    pub exempt_categories: Vec<String>,
    #[serde(flatten)]
    pub counts: Counts,
    /// Subjects whose data changed between the plan and their turn (they engaged,
    /// were put on hold, were erased on request): left alone, judged again next run.
    pub changed: u64,
    /// Subjects whose erasure failed (ids only); the run went on with the others.
    pub failed: Vec<String>,
    /// The run was stopped (shutdown) before it reached every planned subject.
    pub interrupted: bool,
    /// The `retention.run` audit entry.
    pub audit_seq: Option<i64>,
    /// What was erased, as in the plan.
    pub items: Vec<PlanItem>,
}

/// A subject as the job sees it: ids, clock and flags, nothing personal.
#[derive(Debug, Clone)]
struct SubjectRow {
    id: String,
    tenant_id: String,
    created_at: i64,
    last_engagement_at: i64,
    legal_hold: bool,
    archive_exempt: bool,
}

const SUBJECT_COLUMNS: &str =
    "id, tenant_id, created_at, last_engagement_at, legal_hold, archive_exempt";

impl SubjectRow {
    fn from_row(r: &steward_store::Row) -> Result<SubjectRow> {
        Ok(SubjectRow {
            id: r.text(0)?,
            tenant_id: r.text(1)?,
            created_at: r.i64(2)?,
            last_engagement_at: r.i64(3)?,
            legal_hold: r.bool(4)?,
            archive_exempt: r.bool(5)?,
        })
    }
}

/// Rows of one subject in one store (through one of its subject columns) that
/// have expired.
#[derive(Debug)]
struct Portion {
    store: &'static PersonalStore,
    column: &'static str,
    /// The expired rows' `key_column` values, when rows age one by one; `None`
    /// when all of the subject's rows in this column go.
    keys: Option<Vec<Value>>,
    rows: u64,
}

#[derive(Debug)]
enum Verdict {
    Nothing,
    /// Something expired, but the subject is kept whole.
    Held(HoldKind),
    /// Everything the subject has expired: erase the subject.
    Subject(Vec<Portion>),
    /// Erase these rows; `identity_kept` when the identity expired but must stay.
    Rows {
        portions: Vec<Portion>,
        identity_kept: bool,
    },
}

/// Why a subject is kept past their retention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldKind {
    /// Litigation, an investigation, an authority's preservation order.
    Legal,
    /// Archiving in the public interest (the statement's exception).
    Archive,
}

impl HoldKind {
    pub fn parse(s: &str) -> Result<HoldKind> {
        match s {
            "legal" | "legal_hold" | "legal-hold" => Ok(HoldKind::Legal),
            "archive" | "archive_exempt" | "archive-exempt" => Ok(HoldKind::Archive),
            other => Err(Error::invalid(
                "kind",
                format!("unknown hold {other:?}: expected legal or archive"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Legal => "legal",
            HoldKind::Archive => "archive",
        }
    }

    fn column(self) -> &'static str {
        match self {
            HoldKind::Legal => "legal_hold",
            HoldKind::Archive => "archive_exempt",
        }
    }
}

fn table_stores() -> impl Iterator<Item = &'static PersonalStore> {
    PERSONAL_STORES.iter()
}

fn count_rows(c: &mut dyn Conn, store: &PersonalStore, column: &str, id: &str) -> Result<u64> {
    let n = c
        .query_opt(
            &format!("SELECT COUNT(*) FROM {} WHERE {column} = $1", store.name),
            params![id],
        )?
        .map(|r| r.i64(0))
        .transpose()?
        .unwrap_or(0);
    Ok(u64::try_from(n).unwrap_or(0))
}

/// For a store whose rows belong to their owner (`DeleteWithOwner`), read
/// through another subject column: the owner's hold flags, so that rows the
/// owner's own part deletes can be left to it. Elsewhere two NULLs. Returns the
/// select list and the join.
fn owner_flags(store: &PersonalStore, column: &str) -> (&'static str, String) {
    match store.subject_columns.first() {
        Some(owner) if store.on_erase == OnErase::DeleteWithOwner && *owner != column => (
            "o.legal_hold, o.archive_exempt",
            format!("LEFT JOIN subjects o ON o.id = t.{owner}"),
        ),
        _ => ("NULL, NULL", String::new()),
    }
}

/// Judges one subject. Reads ids, times and flags only.
fn assess(c: &mut dyn Conn, policy: &Policy, now: i64, s: &SubjectRow) -> Result<Verdict> {
    let identity = crate::registry::store(IDENTITY_STORE);
    // The identity row: from the last engagement, or (counted from collection)
    // from when the subject was recorded.
    let identity_expired = identity
        .and_then(|st| policy.category(st.category))
        .is_some_and(|cat| {
            let from = match cat.retention_starts {
                RetentionStart::LastEngagement => s.last_engagement_at,
                RetentionStart::Collection => s.created_at,
            };
            !cat.archive_exempt && cat.retention.expires_at(from) <= now
        });
    // Whether every other row the subject has is expired and may go.
    let mut rest_expired = true;
    let mut portions = Vec::new();
    for store in table_stores().filter(|st| st.name != IDENTITY_STORE) {
        let cat = policy.category(store.category);
        for &column in store.subject_columns {
            let Some(cat) = cat.filter(|c| !c.archive_exempt) else {
                // Never erased by retention (archive-exempt, or a category this
                // policy lacks): such rows keep the identity too.
                if identity_expired && count_rows(c, store, column, &s.id)? > 0 {
                    rest_expired = false;
                }
                continue;
            };
            let time = store
                .time_column
                .filter(|_| cat.retention_starts == RetentionStart::Collection);
            match time {
                Some(time) => {
                    // Rows age one by one. Every period is at least a day, so rows
                    // younger than that cannot have expired.
                    let rows = c.query(
                        &format!(
                            "SELECT t.{key}, t.{time}, {owner_flags} FROM {table} t {join} \
                             WHERE t.{column} = $1 AND t.{time} <= $2 ORDER BY t.{key}",
                            key = store.key_column,
                            table = store.name,
                            owner_flags = owner_flags(store, column).0,
                            join = owner_flags(store, column).1,
                        ),
                        params![s.id.as_str(), now.saturating_sub(86_400)],
                    )?;
                    let mut keys = Vec::new();
                    let mut expired = 0u64;
                    for r in &rows {
                        if cat.retention.expires_at(r.i64(1)?) <= now {
                            expired += 1;
                            // A row its owner deletes in this same run (the owner
                            // is not held) is left to them, so that the two
                            // parties' parts of the plan do not overlap.
                            let owner_deletes = matches!(
                                (r.values().get(2), r.values().get(3)),
                                (Some(Value::Int(0)), Some(Value::Int(0)))
                            );
                            if !owner_deletes {
                                keys.push(r.values().first().cloned().unwrap_or(Value::Null));
                            }
                        }
                    }
                    if identity_expired && count_rows(c, store, column, &s.id)? > expired {
                        rest_expired = false;
                    }
                    if !keys.is_empty() {
                        portions.push(Portion {
                            store,
                            column,
                            rows: keys.len() as u64,
                            keys: Some(keys),
                        });
                    }
                }
                None => {
                    // The statement's clock (also for a collection-counted category
                    // whose store records no time: the last engagement is the latest
                    // moment its rows can have been collected through the subject).
                    let expired = cat.retention.expires_at(s.last_engagement_at) <= now;
                    if !expired && !identity_expired {
                        continue;
                    }
                    let n = count_rows(c, store, column, &s.id)?;
                    if !expired {
                        if n > 0 {
                            rest_expired = false;
                        }
                    } else if n > 0 {
                        portions.push(Portion {
                            store,
                            column,
                            keys: None,
                            rows: n,
                        });
                    }
                }
            }
        }
    }
    let verdict = if identity_expired && rest_expired {
        if let Some(store) = identity {
            portions.insert(
                0,
                Portion {
                    store,
                    column: "id",
                    keys: None,
                    rows: 1,
                },
            );
        }
        Verdict::Subject(portions)
    } else if portions.is_empty() && !identity_expired {
        Verdict::Nothing
    } else {
        Verdict::Rows {
            portions,
            identity_kept: identity_expired,
        }
    };
    Ok(match verdict {
        Verdict::Nothing => Verdict::Nothing,
        _ if s.legal_hold => Verdict::Held(HoldKind::Legal),
        _ if s.archive_exempt => Verdict::Held(HoldKind::Archive),
        v => v,
    })
}

/// Rows per store and what happens to them.
type StoreRows = BTreeMap<(&'static str, ItemAction), u64>;

/// What erasing the subject named in `column` of `store` does to the rows.
fn action_of(store: &PersonalStore, column: &str) -> ItemAction {
    match store.erase_action(column) {
        OnErase::Pseudonymise => ItemAction::Pseudonymise,
        OnErase::Delete | OnErase::DeleteWithOwner => ItemAction::Delete,
    }
}

/// Items from per-store row counts, in registry order (a store whose rows go
/// differently through different subject columns gives one item per action).
fn items_from(subject_id: &str, whole: bool, rows: &StoreRows) -> Vec<PlanItem> {
    table_stores()
        .flat_map(|st| {
            [ItemAction::Delete, ItemAction::Pseudonymise]
                .into_iter()
                .filter_map(move |action| {
                    let n = *rows.get(&(st.name, action))?;
                    (n > 0).then(|| PlanItem {
                        subject_id: subject_id.to_owned(),
                        store: st.name.to_owned(),
                        category: st.category.to_owned(),
                        action,
                        rows: n,
                        whole_subject: whole,
                    })
                })
        })
        .collect()
}

fn portion_rows(portions: &[Portion]) -> StoreRows {
    let mut rows = StoreRows::new();
    for p in portions {
        *rows
            .entry((p.store.name, action_of(p.store, p.column)))
            .or_default() += p.rows;
    }
    rows
}

fn items_of(subject_id: &str, v: &Verdict) -> Vec<PlanItem> {
    match v {
        Verdict::Nothing | Verdict::Held(_) => Vec::new(),
        Verdict::Subject(p) => items_from(subject_id, true, &portion_rows(p)),
        Verdict::Rows { portions, .. } => items_from(subject_id, false, &portion_rows(portions)),
    }
}

fn add_rows(counts: &mut Counts, items: &[PlanItem]) {
    for i in items {
        *counts.rows.entry(i.category.clone()).or_default() += i.rows;
    }
}

fn exempt_categories(policy: &Policy) -> Vec<String> {
    policy
        .categories()
        .filter(|(_, c)| c.archive_exempt)
        .map(|(id, _)| id.to_owned())
        .collect()
}

/// Judges every subject, a page at a time, each page on one read snapshot.
fn walk(
    core: &Steward,
    now: i64,
    mut each: impl FnMut(&SubjectRow, &Verdict) -> Result<()>,
) -> Result<()> {
    let mut after = String::new();
    loop {
        let page = core
            .db
            .read(|c| Ok(judge_page(c, &core.policy, now, &after)))??;
        let Some((last, _)) = page.last() else {
            return Ok(());
        };
        after = last.id.clone();
        for (s, v) in &page {
            each(s, v)?;
        }
    }
}

/// The next page of subjects after `after` (by id), each with its verdict.
fn judge_page(
    c: &mut dyn Conn,
    policy: &Policy,
    now: i64,
    after: &str,
) -> Result<Vec<(SubjectRow, Verdict)>> {
    let rows = c.query(
        &format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE id > $1 ORDER BY id LIMIT $2"),
        params![after, PAGE],
    )?;
    rows.iter()
        .map(|r| {
            let s = SubjectRow::from_row(r)?;
            let v = assess(c, policy, now, &s)?;
            Ok((s, v))
        })
        .collect()
}

/// The plan items of a run at `now` and of one at `later` (not before `now`),
/// in one walk over the subjects. Whatever is due at `now` is due at `later`
/// too (periods only run out, holds do not depend on the time), so only the
/// subjects with something due at `later` are judged a second time, at `now`:
/// the dashboard's outlook costs one plan plus the subjects about to go.
pub fn plan_items_at(
    core: &Steward,
    now: i64,
    later: i64,
) -> Result<(Vec<PlanItem>, Vec<PlanItem>)> {
    let later = later.max(now);
    let (mut at_now, mut at_later) = (Vec::new(), Vec::new());
    let mut after = String::new();
    loop {
        let page = core
            .db
            .read(|c| Ok(judge_page_twice(c, &core.policy, (now, later), &after)))??;
        let Some((last, _, _)) = page.last() else {
            return Ok((at_now, at_later));
        };
        after = last.clone();
        for (_, n, l) in page {
            at_now.extend(n);
            at_later.extend(l);
        }
    }
}

/// A subject's id with its plan items due at two moments (earlier first).
type DueTwice = (String, Vec<PlanItem>, Vec<PlanItem>);

/// The next page of subjects with their items due at `later` and, for those
/// with any, at `now`.
fn judge_page_twice(
    c: &mut dyn Conn,
    policy: &Policy,
    (now, later): (i64, i64),
    after: &str,
) -> Result<Vec<DueTwice>> {
    let page = judge_page(c, policy, later, after)?;
    let mut out = Vec::with_capacity(page.len());
    for (s, v) in &page {
        let due_later = items_of(&s.id, v);
        let due_now = if due_later.is_empty() {
            Vec::new()
        } else {
            items_of(&s.id, &assess(c, policy, now, s)?)
        };
        out.push((s.id.clone(), due_now, due_later));
    }
    Ok(out)
}

/// What a run at `now` (Unix seconds) would erase. Changes nothing and writes no
/// audit entry: it reads ids, times and flags, no personal field.
pub fn plan(core: &Steward, now: i64) -> Result<RetentionPlan> {
    let mut counts = Counts::default();
    let mut items = Vec::new();
    walk(core, now, |s, v| {
        counts.subjects_checked += 1;
        match v {
            Verdict::Nothing => {}
            Verdict::Held(HoldKind::Legal) => counts.kept_legal_hold += 1,
            Verdict::Held(HoldKind::Archive) => counts.kept_archive_exempt += 1,
            Verdict::Subject(_) => counts.subjects_erased += 1,
            Verdict::Rows {
                portions,
                identity_kept,
            } => {
                if *identity_kept {
                    counts.identity_kept += 1;
                }
                if !portions.is_empty() {
                    counts.subjects_trimmed += 1;
                }
            }
        }
        let these = items_of(&s.id, v);
        add_rows(&mut counts, &these);
        items.extend(these);
        Ok(())
    })?;
    Ok(RetentionPlan {
        as_of: now,
        as_of_utc: rfc3339(now),
        policy_version: core.policy.version().to_owned(),
        exempt_categories: exempt_categories(&core.policy),
        counts,
        items,
    })
}

/// Erases what expired at `now`: computes the plan, then executes exactly it.
/// Each subject's part is re-judged inside the transaction that erases it and
/// done only if it is still what the plan says (else counted as `changed`).
/// Records one `retention.run` audit entry with the counts.
pub fn run(core: &Steward, now: i64) -> Result<RetentionReport> {
    run_with(core, now, "direct", &AtomicBool::new(false))
}

/// [`run`], naming what started it (`scheduler`, `cli:<user>`) in the audit
/// entry, and stopping between subjects once `stop` is set.
pub fn run_with(
    core: &Steward,
    now: i64,
    trigger: &str,
    stop: &AtomicBool,
) -> Result<RetentionReport> {
    crate::jobs::exclusive(core, JOB, || run_locked(core, now, trigger, stop))
}

/// [`run_with`] for a caller that holds the job's lock ([`crate::jobs`]).
fn run_locked(
    core: &Steward,
    now: i64,
    trigger: &str,
    stop: &AtomicBool,
) -> Result<RetentionReport> {
    let actor = Actor::system(JOB);
    let planned = plan(core, now)?;
    let mut counts = Counts {
        subjects_checked: planned.counts.subjects_checked,
        kept_legal_hold: planned.counts.kept_legal_hold,
        kept_archive_exempt: planned.counts.kept_archive_exempt,
        identity_kept: planned.counts.identity_kept,
        ..Counts::default()
    };
    let mut done: Vec<PlanItem> = Vec::new();
    let mut changed = 0u64;
    let mut failed = Vec::new();
    let mut interrupted = false;
    let mut trimmed_any = false;
    let mut rest = planned.items.as_slice();
    while let Some(first) = rest.first() {
        if stop.load(Ordering::Relaxed) {
            interrupted = true;
            break;
        }
        let len = rest
            .iter()
            .take_while(|i| i.subject_id == first.subject_id)
            .count();
        let (mine, tail) = rest.split_at(len);
        rest = tail;
        let subject_id = first.subject_id.as_str();
        let outcome = if first.whole_subject {
            erase_whole(core, &actor, now, subject_id, mine)
        } else {
            erase_rows(core, &actor, now, subject_id, mine)
        };
        match outcome {
            Ok(Some(items)) => {
                if first.whole_subject {
                    counts.subjects_erased += 1;
                } else {
                    counts.subjects_trimmed += 1;
                    trimmed_any = true;
                }
                add_rows(&mut counts, &items);
                done.extend(items);
            }
            Ok(None) | Err(Error::NotFound(_)) => changed += 1,
            Err(e) => {
                tracing::warn!(subject_id, error = %e, "retention: erasure failed");
                failed.push(subject_id.to_owned());
            }
        }
    }
    // Copies of access bundles past their download period go with the run.
    let bundles_purged = match crate::rights::export::purge_expired_bundles(core, now) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "retention: purging expired bundles failed");
            0
        }
    };
    if trimmed_any {
        // Leave no erased page in SQLite's write-ahead log (erase_subject does the
        // same after each whole-subject erasure).
        core.db.checkpoint()?;
    }
    for (category, n) in &counts.rows {
        metrics::counter!("steward_retention_erased_total", "category" => category.clone())
            .increment(*n);
    }
    let detail = serde_json::json!({
        "trigger": trigger,
        "as_of": now,
        "policy_version": planned.policy_version,
        "subjects_checked": counts.subjects_checked,
        "subjects_erased": counts.subjects_erased,
        "subjects_trimmed": counts.subjects_trimmed,
        "rows": counts.rows,
        "kept_legal_hold": counts.kept_legal_hold,
        "kept_archive_exempt": counts.kept_archive_exempt,
        "identity_kept": counts.identity_kept,
        "changed": changed,
        "failed": failed.len(),
        "interrupted": interrupted,
        "bundles_purged": bundles_purged,
    });
    let audit_seq = core.write(&actor, |tx| {
        tx.audit(Event {
            action: "retention.run".into(),
            detail,
            ..Event::default()
        })
    })?;
    Ok(RetentionReport {
        as_of: now,
        as_of_utc: planned.as_of_utc,
        policy_version: planned.policy_version,
        exempt_categories: planned.exempt_categories,
        counts,
        changed,
        failed,
        interrupted,
        audit_seq: Some(audit_seq),
        items: done,
    })
}

fn read_subject(c: &mut dyn Conn, id: &str) -> Result<SubjectRow> {
    let row = c
        .query_opt(
            &format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE id = $1"),
            params![id],
        )?
        .ok_or_else(|| Error::NotFound("subject".into()))?;
    SubjectRow::from_row(&row)
}

/// Erases a whole subject if, inside the erasing transaction, the verdict still
/// yields exactly the planned items.
fn erase_whole(
    core: &Steward,
    actor: &Actor,
    now: i64,
    subject_id: &str,
    planned: &[PlanItem],
) -> Result<Option<Vec<PlanItem>>> {
    let report = erase::erase_subject_if(core, actor, subject_id, Reason::Retention, |tx| {
        let s = read_subject(tx.conn, subject_id)?;
        let v = assess(tx.conn, &tx.core.policy, now, &s)?;
        Ok(matches!(v, Verdict::Subject(_)) && items_of(subject_id, &v) == planned)
    })?;
    Ok(report.map(|r| {
        let mut rows = StoreRows::new();
        for (counts, action) in [
            (&r.deleted, ItemAction::Delete),
            (&r.pseudonymised, ItemAction::Pseudonymise),
        ] {
            for (store, n) in counts {
                if let Some(st) = crate::registry::store(store) {
                    *rows.entry((st.name, action)).or_default() += *n;
                }
            }
        }
        items_from(subject_id, true, &rows)
    }))
}

/// Erases a subject's expired rows if the verdict, judged again inside the
/// transaction, still yields exactly the planned items.
fn erase_rows(
    core: &Steward,
    actor: &Actor,
    now: i64,
    subject_id: &str,
    planned: &[PlanItem],
) -> Result<Option<Vec<PlanItem>>> {
    core.write(actor, |tx| {
        let s = read_subject(tx.conn, subject_id)?;
        let v = assess(tx.conn, &tx.core.policy, now, &s)?;
        let Verdict::Rows { portions, .. } = &v else {
            return Ok(None);
        };
        if items_of(subject_id, &v) != planned {
            return Ok(None);
        }
        let mut rows = StoreRows::new();
        // Children before parents: the registry lists parents first.
        for p in portions.iter().rev() {
            let n = erase::clear_rows(tx, p.store, p.column, subject_id, p.keys.as_deref())?;
            *rows
                .entry((p.store.name, action_of(p.store, p.column)))
                .or_default() += n;
        }
        let items = items_from(subject_id, false, &rows);
        let (mut deleted, mut pseudonymised) = (BTreeMap::new(), BTreeMap::new());
        for i in &items {
            match i.action {
                ItemAction::Delete => deleted.insert(i.store.clone(), i.rows),
                ItemAction::Pseudonymise => pseudonymised.insert(i.store.clone(), i.rows),
            };
        }
        let mut categories: Vec<&str> = items.iter().map(|i| i.category.as_str()).collect();
        categories.sort_unstable();
        categories.dedup();
        tx.audit(Event {
            tenant_id: Some(s.tenant_id.clone()),
            subject_id: Some(subject_id.to_owned()),
            action: "retention.erase_rows".into(),
            category: match categories.as_slice() {
                [one] => Some((*one).to_owned()),
                _ => None,
            },
            detail: serde_json::json!({
                "reason": "retention", "as_of": now, "categories": categories,
                "deleted": deleted, "pseudonymised": pseudonymised,
            }),
            ..Event::default()
        })?;
        Ok(Some(items))
    })
}

/// A subject's retention flags.
#[derive(Debug, Clone, Serialize)]
pub struct HoldState {
    pub subject_id: String,
    pub tenant_id: String,
    pub legal_hold: bool,
    pub archive_exempt: bool,
    /// Whether this call changed the flag (false: it was already so).
    pub changed: bool,
}

fn require_staff_dpo(actor: &Actor, what: &str) -> Result<()> {
    actor.require_role(&[Role::Dpo], what)?;
    actor.require_provider_staff(what)
}

/// Places (`on`) or releases a legal hold or an archiving exemption on a subject:
/// while either is set, retention erases nothing of theirs. The provider's DPO (or
/// the CLI) only; audited as `retention.hold` or `retention.release`.
pub fn set_hold(
    core: &Steward,
    actor: &Actor,
    subject_id: &str,
    kind: HoldKind,
    on: bool,
) -> Result<HoldState> {
    require_staff_dpo(
        actor,
        "place or release legal holds and archiving exemptions",
    )?;
    core.write(actor, |tx| {
        let tenant = subjects::tenant_of(tx.conn, subject_id)?;
        actor.require_subject(&tenant, subject_id)?;
        let before = read_subject(tx.conn, subject_id)?;
        let current = match kind {
            HoldKind::Legal => before.legal_hold,
            HoldKind::Archive => before.archive_exempt,
        };
        let changed = current != on;
        if changed {
            tx.conn.execute(
                &format!("UPDATE subjects SET {} = $1 WHERE id = $2", kind.column()),
                params![on, subject_id],
            )?;
            tx.audit(Event {
                tenant_id: Some(tenant.clone()),
                subject_id: Some(subject_id.to_owned()),
                action: if on {
                    "retention.hold"
                } else {
                    "retention.release"
                }
                .into(),
                detail: serde_json::json!({ "hold": kind.as_str() }),
                ..Event::default()
            })?;
        }
        Ok(HoldState {
            subject_id: subject_id.to_owned(),
            tenant_id: tenant,
            legal_hold: if kind == HoldKind::Legal {
                on
            } else {
                before.legal_hold
            },
            archive_exempt: if kind == HoldKind::Archive {
                on
            } else {
                before.archive_exempt
            },
            changed,
        })
    })
}

/// Subjects on legal hold or archive-exempt (ids and flags only).
pub fn holds(core: &Steward, actor: &Actor) -> Result<Vec<HoldState>> {
    require_staff_dpo(actor, "list legal holds and archiving exemptions")?;
    let rows = core.db.read(|c| {
        c.query(
            &format!(
                "SELECT {SUBJECT_COLUMNS} FROM subjects \
                 WHERE legal_hold <> 0 OR archive_exempt <> 0 ORDER BY id"
            ),
            &[],
        )
    })?;
    rows.iter()
        .map(|r| {
            let s = SubjectRow::from_row(r)?;
            Ok(HoldState {
                subject_id: s.id,
                tenant_id: s.tenant_id,
                legal_hold: s.legal_hold,
                archive_exempt: s.archive_exempt,
                changed: false,
            })
        })
        .collect()
}

/// [`plan`] for the console: the provider's operators and DPOs (the plan spans
/// every tenant).
pub fn plan_for(core: &Steward, actor: &Actor, now: i64) -> Result<RetentionPlan> {
    actor.require_role(&[Role::Operator, Role::Dpo], "see the retention plan")?;
    actor.require_provider_staff("see the retention plan")?;
    plan(core, now)
}

/// [`run`] started by a person (the console's run button): the provider's DPO
/// only. The `retention.run` entry names the account as the trigger.
pub fn run_by(core: &Steward, actor: &Actor, now: i64) -> Result<RetentionReport> {
    require_staff_dpo(actor, "run retention")?;
    run_with(core, now, &actor.audit_id, &AtomicBool::new(false))
}

/// Parses a scheduler interval: `0` (disabled), seconds (`3600`), or a number
/// with a unit `s`, `m`, `h` or `d` (`30m`, `24h`, `7d`). `None` means disabled.
pub fn parse_interval(text: &str) -> Result<Option<Duration>> {
    let t = text.trim();
    let bad = || {
        Error::invalid(
            "retention-interval",
            format!("{text:?} is not an interval like 24h, 30m, 3600s or 0 (disabled)"),
        )
    };
    let (digits, unit) = match t.find(|ch: char| !ch.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    if digits.is_empty() {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let per = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(per).ok_or_else(bad)?;
    Ok((secs > 0).then(|| Duration::from_secs(secs)))
}

/// Starts the retention job inside the server: a first look after
/// [`FIRST_RUN_DELAY`] (or `every`, if shorter), then one every
/// [`crate::jobs::tick`]; a look runs the job when it is due and no other
/// process runs it ([`crate::jobs::run_if_due`]), so several servers on one
/// database run it once per interval between them. Each run is on the
/// blocking pool and logs counts only. Setting `stop` ends the task and stops
/// a run in progress between two subjects.
pub fn spawn_scheduler(
    core: Arc<Steward>,
    every: Duration,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut wait = FIRST_RUN_DELAY.min(every);
        loop {
            tokio::time::sleep(wait).await;
            wait = crate::jobs::tick(every);
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let (c, s) = (core.clone(), stop.clone());
            let started = std::time::Instant::now();
            let outcome = tokio::task::spawn_blocking(move || {
                crate::jobs::run_if_due(&c, JOB, every, || {
                    run_locked(&c, crate::clock::now(), "scheduler", &s)
                })
            })
            .await;
            match outcome {
                Ok(Ok(None)) => {}
                Ok(Ok(Some(r))) => tracing::info!(
                    subjects_checked = r.counts.subjects_checked,
                    subjects_erased = r.counts.subjects_erased,
                    subjects_trimmed = r.counts.subjects_trimmed,
                    rows = r.counts.rows.values().sum::<u64>(),
                    kept_legal_hold = r.counts.kept_legal_hold,
                    kept_archive_exempt = r.counts.kept_archive_exempt,
                    identity_kept = r.counts.identity_kept,
                    changed = r.changed,
                    failed = r.failed.len(),
                    interrupted = r.interrupted,
                    seconds = started.elapsed().as_secs_f64(),
                    "retention run"
                ),
                Ok(Err(e)) => tracing::error!(error = %e, "retention run failed"),
                Err(e) => tracing::error!(error = %e, "retention run panicked"),
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(
            parse_interval("24h").ok().flatten(),
            Some(Duration::from_secs(86_400))
        );
        assert_eq!(
            parse_interval("30m").ok().flatten(),
            Some(Duration::from_secs(1800))
        );
        assert_eq!(
            parse_interval("90").ok().flatten(),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_interval("7d").ok().flatten(),
            Some(Duration::from_secs(7 * 86_400))
        );
        assert!(matches!(parse_interval("0"), Ok(None)));
        assert!(matches!(parse_interval("0h"), Ok(None)));
        for bad in ["", "h", "-1h", "1.5h", "1w", "24 h"] {
            assert!(parse_interval(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn holds_parse() {
        assert!(matches!(HoldKind::parse("legal"), Ok(HoldKind::Legal)));
        assert!(matches!(
            HoldKind::parse("archive-exempt"),
            Ok(HoldKind::Archive)
        ));
        assert!(HoldKind::parse("forever").is_err());
    }
}
