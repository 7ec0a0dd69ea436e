//! A small, realistic data set for the browser tests and their screenshots: two
//! employers with users, provider staff, consents given and withdrawn over the
//! last weeks, calls, and requests at every stage (some overdue).
//!
//! Everything goes through the domain functions, except that the seeded consent
//! ledger is backdated afterwards with one SQL update per event, so the consent
//! chart has a history to show (the domain stamps every event with the time it
//! is recorded, as it must).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward::access::{Actor, Role};
use steward::accounts::{self, Account, NewUser};
use steward::consent::{self, Action, Channel, Record};
use steward::rights::{self, Ground, Kind, NewRequest, RequestChannel, SubjectRef};
use steward::tenants::{self, PROVIDER_TENANT, Tenant};

use crate::common::{Env, PASSWORD};

pub struct Demo {
    pub northwind: Tenant,
    pub harbour: Tenant,
    pub gwen: Account,
    pub gwen_email: String,
    pub admin: Account,
    pub dpo: Account,
    pub operator: Account,
    pub users: Vec<Account>,
}

fn user(core: &steward::Steward, tenant: &str, username: &str, name: &str, role: Role) -> Account {
    let email = format!("{username}@{}.example", tenant_domain(tenant));
    accounts::create_user(
        core,
        &Actor::cli(),
        tenant,
        NewUser {
            username: username.to_owned(),
            password: PASSWORD.to_owned(),
            role,
            email: Some(email),
            phone: None,
            display_name: Some(name.to_owned()),
        },
    )
    .unwrap()
}

fn tenant_domain(tenant: &str) -> &str {
    if tenant == PROVIDER_TENANT {
        "provider"
    } else {
        "customer"
    }
}

fn days_ago(n: i64) -> String {
    (time::OffsetDateTime::now_utc().date() - time::Duration::days(n)).to_string()
}

fn request(
    core: &steward::Steward,
    subject: &str,
    kind: Kind,
    channel: RequestChannel,
    days: i64,
) -> String {
    rights::create(
        core,
        &Actor::cli(),
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind,
            channel,
            received_on: days_ago(days),
            region: None,
            details: None,
        },
    )
    .unwrap()
    .id
}

pub fn seed(env: &Env) -> Demo {
    let core = &env.core;
    let cli = Actor::cli();
    let northwind = tenants::create(core, &cli, "Northwind Telecom Ltd", Some("PCS-1001")).unwrap();
    let harbour = tenants::create(core, &cli, "Harbour Freight plc", Some("PCS-1002")).unwrap();
    let dpo = user(core, PROVIDER_TENANT, "dana.dpo", "Dana Okafor", Role::Dpo);
    let operator = user(
        core,
        PROVIDER_TENANT,
        "oliver.ops",
        "Oliver Grant",
        Role::Operator,
    );
    let admin = user(
        core,
        &northwind.id,
        "nw.admin",
        "Priya Shah",
        Role::TenantAdmin,
    );
    let gwen_email = "gwen.parry@northwind.example".to_owned();
    let gwen = accounts::create_user(
        core,
        &cli,
        &northwind.id,
        NewUser {
            username: "gwen.parry".into(),
            password: PASSWORD.into(),
            role: Role::Subject,
            email: Some(gwen_email.clone()),
            phone: Some("+44 7700 900123".into()),
            display_name: Some("Gwen Parry".into()),
        },
    )
    .unwrap();
    let names = [
        (&northwind.id, "tom.hughes", "Tom Hughes"),
        (&northwind.id, "asha.patel", "Asha Patel"),
        (&northwind.id, "li.wei", "Li Wei"),
        (&northwind.id, "rhys.evans", "Rhys Evans"),
        (&northwind.id, "sara.jones", "Sara Jones"),
        (&northwind.id, "mo.ali", "Mo Ali"),
        (&harbour.id, "sam.obi", "Sam Obi"),
        (&harbour.id, "maria.k", "Maria Kowalska"),
        (&harbour.id, "ben.t", "Ben Taylor"),
        (&harbour.id, "ivy.chen", "Ivy Chen"),
    ];
    let users: Vec<Account> = names
        .iter()
        .map(|(t, u, n)| user(core, t, u, n, Role::Subject))
        .collect();

    // Consents: some given, some given then withdrawn.
    let mut everyone = vec![gwen.clone()];
    everyone.extend(users.iter().cloned());
    let uses = [
        ("device_contacts", "provision"),
        ("photos_media", "provision"),
        ("usage_statistics", "service_improvement"),
    ];
    let mut events: Vec<(String, i64)> = Vec::new();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    for (i, a) in everyone.iter().enumerate() {
        for (j, (category, purpose)) in uses.iter().enumerate() {
            let give = (i + j) % 4 != 3;
            if !give && i != 0 {
                continue;
            }
            let rec = |action| Record {
                subject_id: a.subject_id.clone(),
                category: (*category).to_owned(),
                purpose: (*purpose).to_owned(),
                action,
                channel: Channel::App,
                evidence: None,
            };
            let ev = consent::record(core, &cli, rec(Action::Grant)).unwrap();
            // Spread over the last eleven weeks.
            let weeks_ago = ((i * 3 + j * 5) % 11) as i64 + 1;
            events.push((ev.id, now - weeks_ago * 7 * 86_400));
            if (i + 2 * j) % 5 == 1 && i != 0 {
                let ev = consent::record(core, &cli, rec(Action::Withdraw)).unwrap();
                events.push((ev.id, now - (weeks_ago / 2) * 7 * 86_400));
            }
        }
    }
    let db = rusqlite::Connection::open(env.settings.sqlite_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    for (id, at) in &events {
        db.execute(
            "UPDATE consent_events SET at = ?1 WHERE id = ?2",
            rusqlite::params![at, id],
        )
        .unwrap();
    }

    // Calls: Gwen's phone number links her to them.
    let call = |i: i64, caller: &str, callee: &str| {
        serde_json::from_value::<steward::ingest::NewCallRecord>(serde_json::json!({
            "caller": caller,
            "callee": callee,
            "start": now - 86_400 * (i + 1),
            "answer": now - 86_400 * (i + 1) + 5,
            "end": now - 86_400 * (i + 1) + 65 + 30 * i,
        }))
        .unwrap()
    };
    let calls: Vec<_> = (0..6)
        .map(|i| {
            if i % 2 == 0 {
                call(i, "+44 7700 900123", "+44 20 7946 0018")
            } else {
                call(i, "+44 161 496 0753", "+44 7700 900123")
            }
        })
        .collect();
    steward::ingest::ingest_records(core, &cli, &northwind.id, &calls, true).unwrap();

    // Requests at every stage.
    let u = |n: usize| users[n].subject_id.as_str();
    request(core, u(0), Kind::Access, RequestChannel::Letter, 24);
    request(core, u(6), Kind::Erasure, RequestChannel::Email, 19);
    let soon = request(core, u(1), Kind::Rectification, RequestChannel::Phone, 11);
    rights::verify(core, &cli, &soon, "call-back to the number on file").unwrap();
    request(core, u(7), Kind::Portability, RequestChannel::Portal, 9);
    request(core, u(2), Kind::Objection, RequestChannel::Email, 4);
    request(core, u(8), Kind::Access, RequestChannel::Portal, 2);
    let done = request(core, u(3), Kind::Access, RequestChannel::Portal, 30);
    rights::verify(core, &cli, &done, "logged-in portal session").unwrap();
    let out = env.dir.path().join("seed-bundle.zip");
    rights::export::for_request(core, &cli, &done, &out).unwrap();
    let refused = request(core, u(4), Kind::Erasure, RequestChannel::Letter, 40);
    rights::refuse(core, &cli, &refused, Ground::ManifestlyUnfounded).unwrap();
    let restricted = request(core, u(9), Kind::Restriction, RequestChannel::Email, 50);
    rights::verify(core, &cli, &restricted, "signed letter").unwrap();
    rights::complete(core, &cli, &restricted, false).unwrap();

    // Two people whose last engagement was six years ago, give or take: one is
    // due for erasure now, the other within the month (for the retention views).
    let six_years = 6 * 365 + 2;
    for (who, days) in [(&users[8], six_years + 3), (&users[9], six_years - 12)] {
        db.execute(
            "UPDATE subjects SET last_engagement_at = ?1, created_at = ?1 WHERE id = ?2",
            rusqlite::params![now - days * 86_400, who.subject_id],
        )
        .unwrap();
    }

    Demo {
        northwind,
        harbour,
        gwen,
        gwen_email,
        admin,
        dpo,
        operator,
        users,
    }
}
