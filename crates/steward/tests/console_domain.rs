//! The domain functions behind the console, on SQLite and PostgreSQL: the
//! dashboard's aggregates, what is held about a subject, subject search, the
//! queue's filters, the employer's notices and answers, password resets, and
//! stored access bundles (encrypted, downloadable by the subject, expiring,
//! erased with the subject).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, Seeded, provider_staff, seed_tenant};
use steward::access::{Actor, Role};
use steward::accounts;
use steward::consent::{self, Action, Channel, Record};
use steward::error::Error;
use steward::rights::{
    self, EmployerAnswer, Kind, NewRequest, RequestChannel, State, StateFilter, SubjectRef,
};
use steward::{dashboard, subjects};

fn today() -> time::Date {
    time::OffsetDateTime::now_utc().date()
}

fn file(env: &Env, subject: &str, kind: Kind, days_ago: i64) -> String {
    rights::create(
        &env.core,
        &Actor::cli(),
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind,
            channel: RequestChannel::Email,
            received_on: (today() - time::Duration::days(days_ago)).to_string(),
            region: None,
            details: Some("please".into()),
        },
    )
    .unwrap()
    .id
}

fn actor(a: &accounts::Account) -> Actor {
    accounts::actor_for(a)
}

fn consent(env: &Env, subject: &str, category: &str, purpose: &str, action: Action) {
    consent::record(
        &env.core,
        &Actor::cli(),
        Record {
            subject_id: subject.to_owned(),
            category: category.into(),
            purpose: purpose.into(),
            action,
            channel: Channel::Letter,
            evidence: None,
        },
    )
    .unwrap();
}

fn scenario(env: Env) {
    let core = &env.core;
    let a = seed_tenant(core, "dash-a");
    let b = seed_tenant(core, "dash-b");
    let staff_dpo = provider_staff(core, "dash-staff-dpo", Role::Dpo);
    let staff = actor(&staff_dpo);

    // Requests: two open in A (one overdue), one fulfilled in B.
    let overdue = file(&env, &a.subject.subject_id, Kind::Access, 30);
    let fresh = file(&env, &a.admin.subject_id, Kind::Erasure, 0);
    let done = file(&env, &b.subject.subject_id, Kind::Access, 1);
    rights::verify(core, &staff, &done, "letter with ID").unwrap();
    let out = env.dir.path().join("b.zip");
    rights::export::for_request(core, &staff, &done, &out).unwrap();

    // Consents: in A, device contacts granted by two, then withdrawn by one.
    consent(
        &env,
        &a.subject.subject_id,
        "device_contacts",
        "provision",
        Action::Grant,
    );
    consent(
        &env,
        &a.admin.subject_id,
        "device_contacts",
        "provision",
        Action::Grant,
    );
    consent(
        &env,
        &a.admin.subject_id,
        "device_contacts",
        "provision",
        Action::Withdraw,
    );
    consent(
        &env,
        &b.subject.subject_id,
        "device_contacts",
        "provision",
        Action::Grant,
    );

    // The provider's DPO sees everything.
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let d = dashboard::dashboard(core, &staff, now).unwrap();
    assert_eq!((d.open, d.overdue), (2, 1), "{d:?}");
    let state =
        |d: &dashboard::Dashboard, s: State| d.by_state.iter().find(|x| x.0 == s).unwrap().1;
    assert_eq!(state(&d, State::Received), 2);
    assert_eq!(state(&d, State::Fulfilled), 1);
    assert_eq!(d.weeks.len(), dashboard::WEEKS);
    assert_eq!(d.weeks.iter().map(|w| w.received).sum::<u64>(), 3);
    assert_eq!(d.weeks.last().unwrap().closed, 1);
    let dc = d
        .consent
        .iter()
        .find(|c| c.category == "device_contacts" && c.purpose == "provision")
        .unwrap();
    let last = dc.points.last().unwrap();
    assert_eq!(
        (last.1, last.2),
        (2, 3),
        "granted 2 of 3 who answered: {dc:?}"
    );
    let records = |d: &dashboard::Dashboard, c: &str| {
        d.records.iter().find(|r| r.category == c).unwrap().records
    };
    // Eight accounts and the staff account; eight subjects plus staff.
    assert!(records(&d, "account_credentials") >= 9);
    // Three requests and B's stored bundle.
    assert_eq!(records(&d, "rights_requests"), 4);
    assert_eq!(records(&d, "consent_records"), 4);
    assert!(d.retention.is_some());

    // The retention outlook, from one walk, says what two plans say: one person
    // due now, another within the 30 days.
    let six_years = 6 * 365 + 2;
    for (who, days) in [(&b.operator, six_years + 3), (&b.dpo, six_years - 12)] {
        core.db
            .write(|c| {
                c.execute(
                    "UPDATE subjects SET last_engagement_at = $1, created_at = $1 WHERE id = $2",
                    steward_store::params![now - days * 86_400, who.subject_id.as_str()],
                )
            })
            .unwrap();
    }
    let d = dashboard::dashboard(core, &staff, now).unwrap();
    let outlook = d.retention.unwrap();
    let by_category = |p: &steward::retention::RetentionPlan| {
        let mut by = std::collections::BTreeMap::new();
        for i in &p.items {
            *by.entry(i.category.clone()).or_insert(0u64) += i.rows;
        }
        by
    };
    let plan_now = steward::retention::plan(core, now).unwrap();
    let plan_later = steward::retention::plan(core, now + 30 * 86_400).unwrap();
    assert_eq!(outlook.due_now, by_category(&plan_now));
    assert_eq!(outlook.due_within, by_category(&plan_later));
    assert_eq!((outlook.subjects_now, outlook.subjects_within), (1, 2));
    assert!(
        outlook.due_now.get("contact_details") == Some(&1),
        "{outlook:?}"
    );

    // A's own DPO sees A only, and no retention outlook (it spans every tenant).
    let d = dashboard::dashboard(core, &actor(&a.dpo), now).unwrap();
    assert_eq!((d.open, state(&d, State::Fulfilled)), (2, 0));
    assert_eq!(records(&d, "rights_requests"), 2);
    assert_eq!(records(&d, "consent_records"), 3);
    assert!(d.retention.is_none());
    for who in [&a.subject, &a.admin] {
        assert!(matches!(
            dashboard::dashboard(core, &actor(who), now),
            Err(Error::Forbidden(_))
        ));
    }

    // Who acted, by username: one lookup for a page's actors, scoped, audited.
    let actors = [
        format!("account:{}", a.admin.id),
        format!("account:{}", b.admin.id),
        format!("account:{}", staff_dpo.id),
        "cli:root".to_owned(),
        "system:retention".to_owned(),
        "account:no-such-account".to_owned(),
    ];
    let refs: Vec<&str> = actors.iter().map(String::as_str).collect();
    let reads = |env: &Env| {
        steward::audit::list(&env.core.db, 0, 100_000, None)
            .unwrap()
            .iter()
            .filter(|e| e.action == "read" && e.detail["view"] == "test_page")
            .count()
    };
    let names = accounts::names(core, &staff, &refs, "test_page").unwrap();
    assert_eq!(names.len(), 3, "{names:?}");
    let admin_name = &names[&actors[0]];
    assert_eq!(
        (admin_name.username.as_str(), admin_name.role),
        (a.admin.username.as_str(), Role::TenantAdmin)
    );
    assert_eq!(names[&actors[2]].role, Role::Dpo);
    assert_eq!(reads(&env), 1);
    // A's DPO: A's accounts only (B's and the provider's stay ids).
    let names = accounts::names(core, &actor(&a.dpo), &refs, "test_page").unwrap();
    assert_eq!(names.keys().collect::<Vec<_>>(), [&actors[0]]);
    // Nothing to show, nothing decrypted, nothing audited; users may not look.
    assert!(
        accounts::names(core, &staff, &["cli:root"], "test_page")
            .unwrap()
            .is_empty()
    );
    assert_eq!(reads(&env), 2);
    assert!(matches!(
        accounts::names(core, &actor(&a.admin), &refs, "test_page"),
        Err(Error::Forbidden(_))
    ));

    // The queue: open by default, most urgent first; filters by state and kind.
    let q = rights::queue(core, &staff, StateFilter::Open, None).unwrap();
    assert_eq!(
        q.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        [overdue.as_str(), fresh.as_str()]
    );
    let q = rights::queue(core, &staff, StateFilter::All, None).unwrap();
    assert_eq!(q.last().unwrap().id, done, "closed ones after open ones");
    let q = rights::queue(
        core,
        &staff,
        StateFilter::Only(State::Fulfilled),
        Some(Kind::Access),
    )
    .unwrap();
    assert_eq!(q.len(), 1);
    assert!(
        rights::queue(core, &staff, StateFilter::Open, Some(Kind::Portability))
            .unwrap()
            .is_empty()
    );
    assert!(rights::queue(core, &actor(&a.subject), StateFilter::Open, None).is_err());
    assert!(StateFilter::parse("lost").is_err());

    // What is held about A's subject, counted over the registry.
    let held = subjects::holdings(core, &actor(&a.subject), &a.subject.subject_id).unwrap();
    let n = |c: &str| held.iter().find(|h| h.category == c).map(|h| h.records);
    assert_eq!(n("contact_details"), Some(1));
    assert_eq!(n("account_credentials"), Some(1), "one account, no session");
    assert_eq!(n("consent_records"), Some(1));
    assert_eq!(n("rights_requests"), Some(1));
    let cd = held
        .iter()
        .find(|h| h.category == "contact_details")
        .unwrap();
    assert!(
        cd.purposes
            .iter()
            .any(|(_, basis)| basis.contains("Art. 6(1)"))
    );
    assert!(!cd.retention.is_empty());
    // Staff in scope may look (audited); another tenant's staff and users may not.
    subjects::holdings(core, &actor(&a.operator), &a.subject.subject_id).unwrap();
    assert!(matches!(
        subjects::holdings(core, &actor(&b.dpo), &a.subject.subject_id),
        Err(Error::NotFound(_))
    ));
    assert!(subjects::holdings(core, &actor(&a.admin), &a.subject.subject_id).is_err());

    // Search by email, phone, username; scoped to what the caller sees.
    let email = format!("{}@example.test", a.subject.username);
    let hits = subjects::search(core, &staff, &email).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].subject_id, a.subject.subject_id);
    assert_eq!(hits[0].matched_by, subjects::MatchedBy::Email);
    let hits = subjects::search(core, &staff, &a.subject.username.to_uppercase()).unwrap();
    assert_eq!(hits[0].matched_by, subjects::MatchedBy::Username);
    assert!(
        subjects::search(core, &actor(&b.dpo), &email)
            .unwrap()
            .is_empty()
    );
    assert!(subjects::search(core, &actor(&a.subject), &email).is_err());
    assert!(matches!(
        subjects::search(core, &staff, "+44 20"),
        Err(Error::Invalid { .. })
    ));

    // The employer's notices: A's admin sees A's two requests (kind, dates, who),
    // never the details; answers an open one; cannot answer B's or a closed one.
    let admin = actor(&a.admin);
    let notices = rights::employer_notices(core, &admin).unwrap();
    assert_eq!(notices.len(), 2);
    assert!(
        notices
            .iter()
            .any(|n| n.username.as_deref() == Some(a.subject.username.as_str()))
    );
    rights::employer_input(core, &admin, &overdue, EmployerAnswer::KeepForContract).unwrap();
    let notices = rights::employer_notices(core, &admin).unwrap();
    let n = notices.iter().find(|n| n.request_id == overdue).unwrap();
    assert_eq!(n.answer, Some(EmployerAnswer::KeepForContract));
    let timeline = rights::timeline(core, &staff, &overdue).unwrap();
    assert!(
        timeline
            .iter()
            .any(|t| t.event == "employer_input" && t.detail["answer"] == "keep_for_contract")
    );
    assert!(matches!(
        rights::employer_input(core, &admin, &done, EmployerAnswer::NoObjection),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        rights::employer_input(core, &actor(&b.admin), &done, EmployerAnswer::NoObjection),
        Err(Error::Conflict(_))
    ));
    assert!(
        rights::employer_input(core, &actor(&a.dpo), &overdue, EmployerAnswer::NoObjection)
            .is_err()
    );

    // Password resets: the employer for its users, not for staff roles, and the
    // old sessions end.
    let session = accounts::login(core, &a.subject.username, common::PASSWORD, None).unwrap();
    accounts::reset_password(core, &admin, &a.subject.id, "a completely new password").unwrap();
    assert!(accounts::authenticate(core, &session.token).is_err());
    accounts::login(core, &a.subject.username, "a completely new password", None).unwrap();
    assert!(matches!(
        accounts::reset_password(core, &admin, &a.operator.id, "a completely new password"),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        accounts::reset_password(core, &admin, &b.subject.id, "a completely new password"),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        accounts::reset_password(core, &admin, &a.admin.id, "short"),
        Err(Error::Invalid { .. })
    ));
    assert!(
        accounts::reset_password(core, &staff, &a.operator.id, "a completely new password")
            .is_err(),
        "a DPO resets no passwords"
    );
    let ops = actor(&provider_staff(core, "dash-staff-op", Role::Operator));
    accounts::reset_password(core, &ops, &a.operator.id, "a completely new password").unwrap();

    bundles(&env, &b, &done, &staff);
}

/// The stored bundle of B's fulfilled access request.
fn bundles(env: &Env, b: &Seeded, done: &str, staff: &Actor) {
    let core = &env.core;
    let req = rights::get(core, staff, done).unwrap();
    let until = rights::export::bundle_available_until(core, &req)
        .unwrap()
        .unwrap();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(until > now + 29 * 86_400 && until <= now + 30 * 86_400 + 5);
    // Kept encrypted: the blob holds no plaintext of the subject's.
    let email = format!("{}@example.test", b.subject.username);
    let blobs = env.data_dir().join("blobs");
    assert!(!common::files_under(&blobs).is_empty());
    assert!(common::files_containing(&blobs, &email).is_empty());
    assert!(common::files_containing(&blobs, "data/subjects.json").is_empty());
    // The subject downloads it, and so may staff; the employer and others may not.
    let read = |a: &Actor| {
        rights::export::open_bundle(core, a, done).map(|f| {
            let mut z = zip::ZipArchive::new(f).unwrap();
            let mut s = String::new();
            std::io::Read::read_to_string(&mut z.by_name("data/subjects.json").unwrap(), &mut s)
                .unwrap();
            s
        })
    };
    assert!(read(&actor(&b.subject)).unwrap().contains(&email));
    assert!(read(staff).unwrap().contains(&email));
    assert!(matches!(read(&actor(&b.admin)), Err(Error::Forbidden(_))));
    assert!(
        read(&actor(&b.operator)).is_ok(),
        "B's own operator is in scope"
    );
    let other = seed_tenant(core, "dash-c");
    assert!(matches!(read(&actor(&other.dpo)), Err(Error::NotFound(_))));
    let timeline = rights::timeline(core, staff, done).unwrap();
    assert_eq!(
        timeline.iter().filter(|t| t.event == "downloaded").count(),
        3
    );

    // After the keep period the copy is gone (a process with a shorter setting).
    let mut short = env.settings.clone();
    short.bundle_keep_days = 0;
    let (expired, _) = steward::Steward::open(short).unwrap();
    let e = rights::export::open_bundle(&expired, &actor(&b.subject), done).unwrap_err();
    assert!(
        matches!(e, Error::NotFound(ref m) if m.contains("expired")),
        "{e}"
    );
    assert!(
        common::files_under(&blobs).is_empty(),
        "the expired copy was deleted"
    );
    // The retention run purges expired copies too; erasure deletes any copy.
    assert_eq!(
        rights::export::purge_expired_bundles(&expired, now).unwrap(),
        0
    );
}

fn erasure_deletes_the_bundle(env: Env) {
    let core = &env.core;
    let a = seed_tenant(core, "bundle-erase");
    let staff = actor(&provider_staff(core, "bundle-erase-staff", Role::Dpo));
    let copy = file(&env, &a.subject.subject_id, Kind::Access, 0);
    rights::verify(core, &staff, &copy, "ID").unwrap();
    rights::export::for_request(core, &staff, &copy, &env.dir.path().join("x.zip")).unwrap();
    let blobs = env.data_dir().join("blobs");
    assert_eq!(common::files_under(&blobs).len(), 1);
    let erase = file(&env, &a.subject.subject_id, Kind::Erasure, 0);
    rights::verify(core, &staff, &erase, "ID").unwrap();
    let report = rights::erase::for_request(core, &staff, &erase).unwrap();
    assert_eq!(report.blobs_deleted, 1);
    assert!(common::files_under(&blobs).is_empty());
    // The answer to send says the data was erased.
    let c = rights::confirmation(core, &staff, &erase).unwrap().unwrap();
    assert!(c.email.contains("erased") && c.email.contains(&report.tombstone_id));
}

#[test]
fn console_domain_on_sqlite() {
    scenario(Env::sqlite());
}

#[test]
fn console_domain_on_postgres() {
    if let Some(env) = Env::postgres() {
        scenario(env);
    }
}

#[test]
fn erasure_deletes_stored_bundles_on_sqlite() {
    erasure_deletes_the_bundle(Env::sqlite());
}

#[test]
fn erasure_deletes_stored_bundles_on_postgres() {
    if let Some(env) = Env::postgres() {
        erasure_deletes_the_bundle(env);
    }
}

/// The answer to send greets the subject by the name held ("Dear Gwen Parry"),
/// in the letter and in the email; someone with no name held gets the letter's
/// general greeting and an email without one.
#[test]
fn answers_greet_the_subject_by_the_name_held() {
    let env = Env::sqlite();
    let core = &env.core;
    let a = seed_tenant(core, "greet");
    let staff = actor(&provider_staff(core, "greet-staff", Role::Dpo));
    let person = |username: &str, name: Option<&str>| {
        let mut new = common::new_user(username, Role::Subject);
        new.display_name = name.map(str::to_owned);
        accounts::create_user(core, &Actor::cli(), &a.tenant.id, new)
            .unwrap()
            .subject_id
    };
    let gwen = person("greet-gwen", Some("Gwen Parry"));
    let nameless = person("greet-nameless", None);

    for kind in [Kind::Access, Kind::Erasure] {
        let id = file(&env, &gwen, kind, 0);
        let c = rights::confirmation(core, &staff, &id).unwrap().unwrap();
        assert!(
            c.letter.contains("\n\nDear Gwen Parry,\n\n"),
            "{}",
            c.letter
        );
        assert!(!c.letter.contains("Dear data subject"), "{}", c.letter);
        assert!(
            c.email
                .contains("\n\nDear Gwen Parry,\n\nWe received your request"),
            "{}",
            c.email
        );
        // Still by name once the request is under way.
        rights::verify(core, &staff, &id, "passport seen").unwrap();
        let c = rights::confirmation(core, &staff, &id).unwrap().unwrap();
        assert!(c.letter.contains("Dear Gwen Parry,"), "{}", c.letter);
    }
    let id = file(&env, &nameless, Kind::Access, 0);
    let c = rights::confirmation(core, &staff, &id).unwrap().unwrap();
    assert!(
        c.letter.contains("\n\nDear data subject,\n\n"),
        "{}",
        c.letter
    );
    assert!(!c.email.contains("Dear"), "{}", c.email);
    // Reading the name for the greeting is a read of the subject's record, audited.
    let reads = steward::audit::list(&core.db, 0, 100_000, None)
        .unwrap()
        .into_iter()
        .filter(|e| {
            e.action == "read"
                && e.subject_id.as_deref() == Some(gwen.as_str())
                && e.category.as_deref() == Some("contact_details")
        })
        .count();
    assert!(reads >= 1, "the name read is audited");
}
