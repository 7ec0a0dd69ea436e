//! The business directory and device contacts, on both databases and over
//! HTTP: linking entries to people, the employer's changes reaching users
//! through incremental sync (deletions and erasures included), tokens of other
//! tenants refused, vCard import and export (4.0 and 3.0) with real phone
//! exports, device contacts refused without consent and deleted with it,
//! malformed vCards refused with the line at fault and nothing stored lost, and
//! nothing readable in the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Env, Server, new_user, seed_tenant};
use serde_json::{Value, json};
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::consent::{self, Action, Channel, Record};
use steward::contacts::{self, SyncInput};
use steward::directory::{self, EntryInput};
use steward::rights::erase::{self, Reason};
use steward::subjects::{self, SubjectKind};
use steward::{Error, Steward, audit};
use steward_store::{Conn, params};
use steward_vcard::{Contact, Photo, Typed, Version};

const IPHONE: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/iphone-3.0.vcf"
));
const ANDROID: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/android-2.1.vcf"
));
const RFC6350: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/vcard/rfc6350-4.0.vcf"
));

fn typed(value: &str) -> Typed {
    Typed {
        value: value.to_owned(),
        ..Typed::default()
    }
}

fn input(name: &str, emails: &[&str], phones: &[&str]) -> EntryInput {
    EntryInput {
        display_name: name.to_owned(),
        emails: emails.iter().map(|e| typed(e)).collect(),
        phones: phones.iter().map(|p| typed(p)).collect(),
        ..EntryInput::default()
    }
}

fn ids(entries: &[directory::Entry]) -> BTreeSet<String> {
    entries.iter().map(|e| e.id.clone()).collect()
}

fn invalid_field<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, String) {
    match r {
        Err(Error::Invalid { field, message }) => (field.unwrap_or_default(), message),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn count(core: &Steward, sql: &str, p: &str) -> i64 {
    core.db
        .read(|c| c.query_opt(sql, params![p]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

fn contacts_of(core: &Steward, subject: &str) -> i64 {
    count(
        core,
        "SELECT COUNT(*) FROM device_contacts WHERE subject_id = $1",
        subject,
    )
}

/// Everything the directory tables hold for a tenant, to prove a refusal changed nothing.
fn directory_rows(core: &Steward, tenant: &str) -> Vec<String> {
    let mut out = Vec::new();
    for sql in [
        "SELECT * FROM directory_entries WHERE tenant_id = $1 ORDER BY id",
        "SELECT * FROM directory_changes WHERE tenant_id = $1 ORDER BY seq",
        "SELECT * FROM directory_state WHERE tenant_id = $1",
        "SELECT id FROM subjects WHERE tenant_id = $1 ORDER BY id",
    ] {
        let rows = core.db.read(|c| c.query(sql, params![tenant])).unwrap();
        out.extend(rows.iter().map(|r| format!("{r:?}")));
    }
    out
}

fn consent_to_contacts(core: &Steward, who: &Actor, subject: &str, action: Action) {
    consent::record(
        core,
        who,
        Record {
            subject_id: subject.to_owned(),
            category: "device_contacts".into(),
            purpose: "provision".into(),
            action,
            channel: Channel::App,
            evidence: None,
        },
    )
    .unwrap();
}

fn audit_actions(core: &Steward, tenant: &str) -> Vec<audit::Entry> {
    audit::list(&core.db, 0, 100_000, Some(tenant)).unwrap()
}

// ---------------------------------------------------------------------------
// The directory
// ---------------------------------------------------------------------------

fn directory_scenario(env: &Env) {
    let core = &env.core;
    let t = seed_tenant(core, "dir");
    let other = seed_tenant(core, "dir-other");
    let cli = Actor::cli();
    let admin = accounts::actor_for(&t.admin);
    let user = accounts::actor_for(&t.subject);
    let other_admin = accounts::actor_for(&other.admin);
    let other_user = accounts::actor_for(&other.subject);
    let tid = t.tenant.id.as_str();

    // An entry for an existing user, by her email written differently: it is
    // linked to her subject and sealed with her key.
    let own = directory::create(
        core,
        &admin,
        tid,
        input("Person dir-user", &[" DIR-USER@Example.TEST "], &[]),
    )
    .unwrap();
    assert_eq!(own.subject_id, t.subject.subject_id);
    assert_eq!(own.fields.emails[0].value, "DIR-USER@Example.TEST");
    // Someone with no account: a subject of kind contact is created for him.
    let ext = directory::create(
        core,
        &admin,
        tid,
        EntryInput {
            display_name: "Þórður Ærøskøbing-Ñúñez 李小龍".into(),
            given_name: Some("Þórður".into()),
            family_name: Some("Ærøskøbing-Ñúñez".into()),
            organization: Some("Dir Ltd".into()),
            department: Some("Vertrieb & Marketing".into()),
            title: Some("Leiter Vertrieb".into()),
            emails: vec![Typed {
                value: "thordur@dir.example.test".into(),
                types: vec!["work".into()],
                pref: true,
                label: None,
            }],
            phones: vec![
                Typed {
                    value: "020 7946 0002".into(),
                    types: vec!["work".into(), "voice".into()],
                    ..Typed::default()
                },
                Typed {
                    value: "2101".into(),
                    label: Some("Extension".into()),
                    ..Typed::default()
                },
            ],
        },
    )
    .unwrap();
    assert_ne!(ext.subject_id, t.subject.subject_id);
    let person = subjects::read(core, &cli, &ext.subject_id, "administration").unwrap();
    assert_eq!(person.kind, SubjectKind::Contact);
    assert_eq!(person.tenant_id, tid);
    assert_eq!(person.email.as_deref(), Some("thordur@dir.example.test"));
    assert_eq!(person.phone.as_deref(), Some("+442079460002"));
    assert_eq!(
        person.name.as_deref(),
        Some("Þórður Ærøskøbing-Ñúñez 李小龍")
    );
    assert_eq!(
        directory::get(core, &user, tid, &ext.id).unwrap().fields,
        ext.fields,
        "non-ASCII fields come back as written"
    );

    // One entry per person: found again by email, by number, by extension.
    for again in [
        input("Again", &["Thordur@Dir.Example.Test"], &[]),
        input("Again", &[], &["+44 20 7946 0002"]),
        input("Again", &[], &["2101"]),
    ] {
        match directory::create(core, &admin, tid, again) {
            Err(Error::Conflict(m)) => assert!(m.contains(&ext.id), "{m}"),
            other => panic!("{other:?}"),
        }
    }

    // Roles and tenants: users read but do not manage; other tenants see nothing.
    assert!(matches!(
        directory::create(core, &user, tid, input("X", &["x@dir.example.test"], &[])),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        directory::update(core, &user, tid, &ext.id, input("X", &["x@d.test"], &[])),
        Err(Error::Forbidden(_))
    ));
    assert!(matches!(
        directory::delete(core, &user, tid, &ext.id),
        Err(Error::Forbidden(_))
    ));
    for r in [
        directory::create(core, &other_admin, tid, input("X", &["x@d.test"], &[])).map(|_| ()),
        directory::update(
            core,
            &other_admin,
            tid,
            &ext.id,
            input("X", &["x@d.test"], &[]),
        )
        .map(|_| ()),
        directory::delete(core, &other_admin, tid, &ext.id),
        directory::list(core, &other_user, tid).map(|_| ()),
        directory::get(core, &other_user, tid, &ext.id).map(|_| ()),
        directory::sync(core, &other_user, tid, None, None).map(|_| ()),
        // Another tenant's entry through one's own tenant: not found either.
        directory::get(core, &other_admin, &other.tenant.id, &ext.id).map(|_| ()),
        directory::delete(core, &other_admin, &other.tenant.id, &ext.id),
    ] {
        assert!(matches!(r, Err(Error::NotFound(_))), "{r:?}");
    }

    // Bad values name their field, and nothing changes.
    let before = directory_rows(core, tid);
    let long = "x".repeat(257);
    for (bad, field, says) in [
        (input("X", &["not-an-email"], &[]), "emails[0].value", "@"),
        (
            input("   ", &["a@dir.example.test"], &[]),
            "display_name",
            "empty",
        ),
        (input("X", &[], &[]), "emails", "phone number"),
        (
            EntryInput {
                title: Some(long.clone()),
                ..input("X", &["a@dir.example.test"], &[])
            },
            "title",
            "over the limit",
        ),
        (
            EntryInput {
                department: Some("Sales\u{7}".into()),
                ..input("X", &["a@dir.example.test"], &[])
            },
            "department",
            "control character",
        ),
        (
            input("X", &["a@dir.example.test"], &["1"; 21]),
            "phones",
            "21 entries",
        ),
        (
            EntryInput {
                phones: vec![Typed {
                    value: "1".into(),
                    types: vec!["no spaces allowed".into()],
                    ..Typed::default()
                }],
                ..input("X", &[], &[])
            },
            "phones[0].types[0]",
            "word",
        ),
    ] {
        let (f, m) = invalid_field(directory::create(core, &admin, tid, bad.clone()));
        assert_eq!(f, field, "{m}");
        assert!(m.contains(says), "{m}");
        let (f, _) = invalid_field(directory::update(core, &admin, tid, &ext.id, bad));
        assert_eq!(f, field);
    }
    assert_eq!(
        directory_rows(core, tid),
        before,
        "refusals changed nothing"
    );

    // A user's first sync is full and holds the directory.
    let p1 = directory::sync(core, &user, tid, None, None).unwrap();
    assert!(p1.full && !p1.more && p1.deletions.is_empty());
    assert_eq!(
        ids(&p1.upserts),
        BTreeSet::from([own.id.clone(), ext.id.clone()])
    );
    // Nothing changed: nothing to send, same token.
    let p = directory::sync(core, &user, tid, Some(&p1.token), None).unwrap();
    assert!(!p.full && p.upserts.is_empty() && p.deletions.is_empty());
    assert_eq!(p.token, p1.token);

    // The employer edits an entry: only that entry comes.
    let edited = directory::update(
        core,
        &admin,
        tid,
        &ext.id,
        EntryInput {
            title: Some("Geschäftsführer".into()),
            ..ext.fields.clone()
        },
    )
    .unwrap();
    assert_eq!(edited.subject_id, ext.subject_id);
    assert!(edited.seq > ext.seq);
    let p2 = directory::sync(core, &user, tid, Some(&p1.token), None).unwrap();
    assert_eq!(ids(&p2.upserts), BTreeSet::from([ext.id.clone()]));
    assert_eq!(
        p2.upserts[0].fields.title.as_deref(),
        Some("Geschäftsführer")
    );
    assert_ne!(p2.token, p1.token);
    // Writing the same fields again is no change.
    directory::update(core, &admin, tid, &ext.id, edited.fields.clone()).unwrap();
    let p = directory::sync(core, &user, tid, Some(&p2.token), None).unwrap();
    assert!(p.upserts.is_empty() && p.token == p2.token);

    // A new entry, then its removal: the removal comes as an id.
    let temp = directory::create(
        core,
        &admin,
        tid,
        input("Temporary Person", &["temp@dir.example.test"], &[]),
    )
    .unwrap();
    let p3 = directory::sync(core, &user, tid, Some(&p2.token), None).unwrap();
    assert_eq!(ids(&p3.upserts), BTreeSet::from([temp.id.clone()]));
    directory::delete(core, &admin, tid, &temp.id).unwrap();
    assert!(matches!(
        directory::get(core, &user, tid, &temp.id),
        Err(Error::NotFound(_))
    ));
    let p4 = directory::sync(core, &user, tid, Some(&p3.token), None).unwrap();
    assert!(p4.upserts.is_empty());
    assert_eq!(p4.deletions, vec![temp.id.clone()]);
    // A device that last synced before the entry existed hears of the deletion too.
    let p = directory::sync(core, &user, tid, Some(&p2.token), None).unwrap();
    assert_eq!(p.deletions, vec![temp.id.clone()]);

    // Erasing the person (not through the directory) removes the entry, and
    // every device hears of it at its next sync.
    erase::erase_subject(core, &cli, &ext.subject_id, Reason::Request("test".into())).unwrap();
    let p5 = directory::sync(core, &user, tid, Some(&p4.token), None).unwrap();
    assert!(p5.upserts.is_empty());
    assert_eq!(p5.deletions, vec![ext.id.clone()]);
    assert!(
        audit_actions(core, tid)
            .iter()
            .any(|e| e.action == "directory.reconcile")
    );
    let p = directory::sync(core, &user, tid, None, None).unwrap();
    assert_eq!(ids(&p.upserts), BTreeSet::from([own.id.clone()]));

    // Tokens: another tenant's, an altered or a malformed one are refused.
    let theirs = directory::sync(core, &other_user, &other.tenant.id, None, None)
        .unwrap()
        .token;
    // Of the token's form but not issued here: a conflict (a full sync resolves it).
    let (seq, mac) = p5.token.split_once('.').unwrap();
    let seq: i64 = seq.parse().unwrap();
    let mut altered = mac.to_owned();
    altered.replace_range(..1, if mac.starts_with('A') { "B" } else { "A" });
    for foreign in [
        theirs.clone(),
        format!("{}.{mac}", seq - 1),
        format!("{seq}.{altered}"),
    ] {
        match directory::sync(core, &user, tid, Some(&foreign), None) {
            Err(steward::Error::Conflict(m)) => {
                assert!(m.contains("not issued by this tenant"), "{m}")
            }
            other => panic!("{foreign}: {other:?}"),
        }
    }
    for bad in [
        format!("{seq}.{}", &mac[1..]),
        format!("0{seq}.{mac}"),
        format!(" {seq}.{mac}"),
        String::new(),
        "abc".into(),
        "12".into(),
        "12.".into(),
        ".AAAA".into(),
        "-1.AAAA".into(),
        "1.2.3".into(),
        "99999999999999999999.AAAA".into(),
        "1.AA+A".into(),
        "x".repeat(100),
    ] {
        let (f, _) = invalid_field(directory::sync(core, &user, tid, Some(&bad), None));
        assert_eq!(f, "since", "{bad:?}");
    }
    for limit in [0, directory::SYNC_PAGE_MAX + 1] {
        let (f, _) = invalid_field(directory::sync(core, &user, tid, None, Some(limit)));
        assert_eq!(f, "limit");
    }

    // Pages: twelve more entries, five at a time, each change exactly once.
    for i in 0..12 {
        directory::create(
            core,
            &admin,
            tid,
            input(
                &format!("Paged Person {i:02}"),
                &[&format!("paged{i}@dir.example.test")],
                &[],
            ),
        )
        .unwrap();
    }
    let mut token = p5.token.clone();
    let mut got = Vec::new();
    let mut pages = 0;
    loop {
        let p = directory::sync(core, &user, tid, Some(&token), Some(5)).unwrap();
        pages += 1;
        got.extend(p.upserts.iter().map(|e| e.fields.display_name.clone()));
        token = p.token;
        if !p.more {
            break;
        }
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..12).map(|i| format!("Paged Person {i:02}")).collect();
    assert_eq!(got, want);
    // A first sync in pages: `full` on every page of it, the live entries once.
    let first = directory::sync(core, &user, tid, None, Some(10)).unwrap();
    assert!(first.full && first.more);
    let rest = directory::sync(core, &user, tid, Some(&first.token), None).unwrap();
    assert!(!rest.more);
    assert_eq!(first.upserts.len() + rest.upserts.len(), 13);

    // Old deletion markers are pruned at the next write; a token from before
    // them gets a full resync, one from after them does not.
    core.db
        .write(|c: &mut dyn Conn| {
            c.execute(
                "UPDATE directory_changes SET changed_at = changed_at - $1 \
                 WHERE tenant_id = $2 AND deleted = 1",
                params![directory::DELETION_MARKER_TTL + 86_400, tid],
            )
        })
        .unwrap();
    let latest = directory::sync(core, &user, tid, Some(&token), None).unwrap();
    directory::create(
        core,
        &admin,
        tid,
        input("After Pruning", &["after@dir.example.test"], &[]),
    )
    .unwrap();
    assert_eq!(
        count(
            core,
            "SELECT COUNT(*) FROM directory_changes WHERE tenant_id = $1 AND deleted = 1",
            tid
        ),
        0
    );
    let old = directory::sync(core, &user, tid, Some(&p3.token), None).unwrap();
    assert!(old.full, "a token older than the pruned markers resyncs");
    assert_eq!(old.upserts.len(), 14);
    assert!(old.deletions.is_empty());
    let recent = directory::sync(core, &user, tid, Some(&latest.token), None).unwrap();
    assert!(!recent.full);
    assert_eq!(recent.upserts.len(), 1);

    // An entry made before its person had an account moves to the user's
    // subject (and key) at its next edit.
    let early = directory::create(
        core,
        &admin,
        tid,
        input("Late Joiner", &["late.joiner@dir.example.test"], &[]),
    )
    .unwrap();
    let joined = accounts::create_user(
        core,
        &cli,
        tid,
        NewUser {
            email: Some("Late.Joiner@dir.example.test".into()),
            ..new_user("dir-late", Role::Subject)
        },
    )
    .unwrap();
    assert_ne!(early.subject_id, joined.subject_id);
    let moved = directory::update(core, &admin, tid, &early.id, early.fields.clone()).unwrap();
    assert_eq!(moved.subject_id, joined.subject_id);
    assert_eq!(moved.id, early.id);
    assert!(audit_actions(core, tid).iter().any(|e| {
        e.action == "directory.update"
            && e.detail["moved_from_subject"] == early.subject_id.as_str()
    }));

    // Changes are audited with the entry and the person; members' reads are
    // not, reads from outside the tenant are.
    let entries = audit_actions(core, tid);
    assert!(entries.iter().any(|e| e.action == "directory.create"
        && e.subject_id.as_deref() == Some(own.subject_id.as_str())
        && e.detail["entry_id"] == own.id.as_str()
        && e.category.as_deref() == Some("business_contacts")));
    assert!(
        entries
            .iter()
            .any(|e| e.action == "directory.delete" && e.detail["entry_id"] == temp.id.as_str())
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "subject.create" && e.detail["source"] == "business directory")
    );
    let reads = |core: &Steward| {
        audit_actions(core, tid)
            .iter()
            .filter(|e| e.action == "read" && e.category.as_deref() == Some("business_contacts"))
            .count()
    };
    let reads_before = reads(core);
    directory::list(core, &user, tid).unwrap();
    directory::sync(core, &admin, tid, None, None).unwrap();
    assert_eq!(reads(core), reads_before);
    directory::list(core, &cli, tid).unwrap();
    assert_eq!(reads(core), reads_before + 1);
    // The user's listing is sorted by name.
    let names: Vec<String> = directory::list(core, &user, tid)
        .unwrap()
        .into_iter()
        .map(|e| e.fields.display_name.to_lowercase())
        .collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted);

    // A token from the future resyncs: a restore from a backup taken before
    // the token was issued puts the tenant's sequence (and its changes) back.
    let now = directory::sync(core, &user, tid, None, None).unwrap();
    core.db
        .write(|c: &mut dyn Conn| {
            c.execute(
                "DELETE FROM directory_changes WHERE tenant_id = $1 AND seq > \
                 (SELECT seq - 3 FROM directory_state WHERE tenant_id = $1)",
                params![tid],
            )?;
            c.execute(
                "UPDATE directory_state SET seq = seq - 3 WHERE tenant_id = $1",
                params![tid],
            )
        })
        .unwrap();
    let p = directory::sync(core, &user, tid, Some(&now.token), None).unwrap();
    assert!(p.full, "{p:?}");
}

fn import_scenario(env: &Env) {
    let core = &env.core;
    let t = seed_tenant(core, "imp");
    let admin = accounts::actor_for(&t.admin);
    let user = accounts::actor_for(&t.subject);
    let tid = t.tenant.id.as_str();

    // The iPhone export: folded lines, grouped itemN. properties, TYPE lists,
    // a large embedded photo. What a directory entry does not keep is reported.
    let r = directory::import_vcard(core, &admin, tid, IPHONE).unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (1, 0, 0));
    assert_eq!(r.cards[0].line, 1);
    assert_eq!(
        r.cards[0].ignored,
        ["birthday", "photo", "addresses", "urls"]
    );
    let e = directory::get(core, &user, tid, &r.cards[0].entry_id).unwrap();
    assert_eq!(e.fields.display_name, "Mr. John Richter James Doe Sr.");
    assert_eq!(e.fields.organization.as_deref(), Some("IBM"));
    assert_eq!(e.fields.department.as_deref(), Some("Accounting"));
    assert_eq!(e.fields.title.as_deref(), Some("Money Counter"));
    assert_eq!(e.fields.phones.len(), 7);
    assert_eq!(
        e.fields.phones[6].label.as_deref(),
        Some("AssistantPhone"),
        "item2.X-ABLabel"
    );
    assert_eq!(e.fields.emails[0].value, "john.doe@ibm.com");
    // Importing it again changes nothing: no change number is used up.
    let token = directory::sync(core, &user, tid, None, None).unwrap().token;
    let r = directory::import_vcard(core, &admin, tid, IPHONE).unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (0, 0, 1));
    let p = directory::sync(core, &user, tid, Some(&token), None).unwrap();
    assert!(p.upserts.is_empty() && p.token == token);
    // The RFC 6350 example (vCard 4.0, tel: URIs, quoted TYPE lists).
    let r = directory::import_vcard(core, &admin, tid, RFC6350).unwrap();
    assert_eq!(r.created, 1);

    // The export is a vCard 4.0 or 3.0 file of every entry; importing it back
    // finds every entry by its UID and changes nothing.
    for version in [Version::V4, Version::V3] {
        let text = directory::export_vcard(core, &user, tid, version).unwrap();
        let want = match version {
            Version::V4 => "VERSION:4.0",
            Version::V3 => "VERSION:3.0",
        };
        assert_eq!(text.matches(want).count(), 2, "{text}");
        let cards = steward_vcard::parse(text.as_bytes()).unwrap();
        assert!(
            cards
                .iter()
                .all(|c| c.uid.as_deref().is_some_and(|u| u.starts_with("urn:uuid:")))
        );
        let r = directory::import_vcard(core, &admin, tid, text.as_bytes()).unwrap();
        assert_eq!(
            (r.created, r.updated, r.unchanged),
            (0, 0, 2),
            "{version:?}"
        );
    }
    // An edited export updates the entry it names.
    let text = directory::export_vcard(core, &user, tid, Version::V3)
        .unwrap()
        .replace("TITLE:Money Counter", "TITLE:Chief Money Counter");
    let r = directory::import_vcard(core, &admin, tid, text.as_bytes()).unwrap();
    assert_eq!((r.created, r.updated, r.unchanged), (0, 1, 1));
    // A card without a name is named by its email address.
    let r = directory::import_vcard(
        core,
        &admin,
        tid,
        b"BEGIN:VCARD\r\nVERSION:2.1\r\nEMAIL;PREF:nameless@imp.example.test\r\nEND:VCARD\r\n",
    )
    .unwrap();
    let e = directory::get(core, &user, tid, &r.cards[0].entry_id).unwrap();
    assert_eq!(e.fields.display_name, "nameless@imp.example.test");

    // Refusals: the whole file, naming the card, its line and the field; nothing
    // stored changes.
    let before = directory_rows(core, tid);
    let refuse = |bytes: &[u8], field: &str, says: &[&str]| {
        let (f, m) = invalid_field(directory::import_vcard(core, &admin, tid, bytes));
        assert_eq!(f, field, "{m}");
        for s in says {
            assert!(m.contains(s), "{m:?} lacks {s:?}");
        }
        assert_eq!(directory_rows(core, tid), before, "{m}");
    };
    // The Android export: its fifth card has a quoted-printable "email" of Ñs.
    refuse(
        ANDROID,
        "emails[1].value",
        &["card 5", "line 36", "emails[1].value", "@"],
    );
    // Two cards for one person.
    refuse(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:New One\r\nEMAIL:twin@imp.example.test\r\nEND:VCARD\r\n\
          BEGIN:VCARD\r\nVERSION:3.0\r\nFN:New Two\r\nEMAIL:TWIN@imp.example.test\r\nEND:VCARD\r\n",
        "vcard",
        &["card 2", "line 6", "same person as card 1"],
    );
    // A good card, then a bad one: the good one is not kept either.
    refuse(
        b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Good Card\r\nEMAIL:good@imp.example.test\r\nEND:VCARD\r\n\
          BEGIN:VCARD\r\nVERSION:3.0\r\nFN:No Identifier\r\nNOTE:nothing to reach\r\nEND:VCARD\r\n",
        "emails",
        &["card 2", "line 6"],
    );
    let cut = &IPHONE[..IPHONE.len() / 2];
    for (bytes, says) in [
        (cut, vec!["truncated", "without END:VCARD"]),
        (
            &b"VERSION:3.0\r\nFN:Nobody\r\nEND:VCARD\r\n"[..],
            vec!["line 1", "expected BEGIN:VCARD"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Half\r\n",
            vec!["line 3", "truncated"],
        ),
        (
            b"\x00\xff\xfe\x01binary junk\x02\x03",
            vec!["line 1", "expected BEGIN:VCARD"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:M\xfcller\r\nEMAIL:m@imp.example.test\r\nEND:VCARD\r\n",
            vec!["line 3", "not valid UTF-8"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4AAQ!!!!\r\nEND:VCARD\r\n",
            vec!["line 4", "PHOTO", "base64"],
        ),
        (b"", vec!["empty"]),
    ] {
        refuse(bytes, "vcard", &says);
    }
    let many: String = (0..=directory::MAX_IMPORT_CARDS)
        .map(|i| format!("BEGIN:VCARD\r\nFN:P{i}\r\nTEL:{i}\r\nEND:VCARD\r\n"))
        .collect();
    refuse(many.as_bytes(), "vcard", &["5001 cards", "at most 5000"]);
    // Users do not import.
    assert!(matches!(
        directory::import_vcard(core, &user, tid, RFC6350),
        Err(Error::Forbidden(_))
    ));
}

/// Writers of one tenant racing each other and a device syncing all along: the
/// chain of incremental syncs sees every change exactly as the directory ends
/// up, and one person racing into the directory twice gets one entry.
fn concurrent_scenario(env: &Env) {
    let core = env.core.clone();
    let t = seed_tenant(&core, "race");
    let tid = t.tenant.id.clone();
    let admin = accounts::actor_for(&t.admin);
    let user = accounts::actor_for(&t.subject);
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let syncer = {
        let (core, user, tid, done) = (core.clone(), user.clone(), tid.clone(), done.clone());
        std::thread::spawn(move || {
            let mut token: Option<String> = None;
            let mut seen = std::collections::BTreeMap::new();
            let mut rounds = 0;
            loop {
                let last = done.load(std::sync::atomic::Ordering::SeqCst);
                let p = directory::sync(&core, &user, &tid, token.as_deref(), Some(7)).unwrap();
                assert!(
                    !p.full || token.is_none(),
                    "an incremental sync fell back to full"
                );
                for e in p.upserts {
                    seen.insert(e.id.clone(), e.fields.display_name.clone());
                }
                for d in p.deletions {
                    seen.remove(&d);
                }
                token = Some(p.token);
                rounds += 1;
                if last && !p.more {
                    return (seen, rounds);
                }
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (core, admin, tid) = (core.clone(), admin.clone(), tid.clone());
            std::thread::spawn(move || {
                for i in 0..8 {
                    let e = directory::create(
                        &core,
                        &admin,
                        &tid,
                        input(
                            &format!("Writer {w} Person {i}"),
                            &[&format!("w{w}p{i}@race.example.test")],
                            &[],
                        ),
                    )
                    .unwrap();
                    if i % 3 == 0 {
                        directory::delete(&core, &admin, &tid, &e.id).unwrap();
                    } else if i % 3 == 1 {
                        directory::update(
                            &core,
                            &admin,
                            &tid,
                            &e.id,
                            EntryInput {
                                display_name: format!("Writer {w} Person {i} (edited)"),
                                ..e.fields.clone()
                            },
                        )
                        .unwrap();
                    }
                }
            })
        })
        .collect();
    // The same new person, twice at once, a few times over.
    let twins: Vec<_> = (0..2)
        .map(|_| {
            let (core, admin, tid) = (core.clone(), admin.clone(), tid.clone());
            std::thread::spawn(move || {
                (0..5)
                    .map(|i| {
                        directory::create(
                            &core,
                            &admin,
                            &tid,
                            input("Twin", &[&format!("twin{i}@race.example.test")], &[]),
                        )
                        .is_ok()
                    })
                    .collect::<Vec<bool>>()
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    let twins: Vec<Vec<bool>> = twins.into_iter().map(|t| t.join().unwrap()).collect();
    for i in 0..5 {
        assert_eq!(
            twins.iter().filter(|t| t[i]).count(),
            1,
            "twin {i}: exactly one create wins"
        );
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, rounds) = syncer.join().unwrap();
    let now: std::collections::BTreeMap<String, String> = directory::list(&core, &user, &tid)
        .unwrap()
        .into_iter()
        .map(|e| (e.id, e.fields.display_name))
        .collect();
    assert_eq!(now.len(), 4 * 5 + 5);
    assert_eq!(seen, now, "after {rounds} syncs");
}

#[test]
fn concurrent_writers_and_sync_on_sqlite() {
    concurrent_scenario(&Env::sqlite());
}

#[test]
fn concurrent_writers_and_sync_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    concurrent_scenario(&env);
}

#[test]
fn directory_on_sqlite() {
    let env = Env::sqlite();
    directory_scenario(&env);
    import_scenario(&env);
}

#[test]
fn directory_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    directory_scenario(&env);
    import_scenario(&env);
}

// ---------------------------------------------------------------------------
// Device contacts
// ---------------------------------------------------------------------------

/// The `n`th card (1-based) of a multi-card file, as its own bytes.
fn nth_card(file: &[u8], n: usize) -> Vec<u8> {
    let text = String::from_utf8(file.to_vec()).unwrap();
    let start = text.match_indices("BEGIN:VCARD").nth(n - 1).unwrap().0;
    let end = text[start..].find("END:VCARD").unwrap() + start + "END:VCARD".len();
    text.as_bytes()[start..end].to_vec()
}

fn device_contacts_scenario(env: &Env) {
    let core = &env.core;
    let t = seed_tenant(core, "dev");
    let user = accounts::actor_for(&t.subject);
    let me = t.subject.subject_id.as_str();
    let other = accounts::actor_for(&t.admin);
    let json = |c: Contact| SyncInput::json(c);
    let friend = Contact {
        uid: Some("device-contact-1".into()),
        formatted_name: Some("Jörg Müller-Lüdenscheidt 🎉".into()),
        given_name: Some("Jörg".into()),
        phones: vec![typed("+49 30 1234567")],
        emails: vec![typed("joerg@example.de")],
        ..Contact::default()
    };

    // Without consent: refused, nothing stored or read.
    for r in [
        contacts::sync(core, &user, json(friend.clone())).map(|_| ()),
        contacts::sync(core, &user, SyncInput::Vcard(IPHONE.to_vec())).map(|_| ()),
        contacts::list(core, &user).map(|_| ()),
        contacts::get(core, &user, "0192f0c4-7b1e-7c3a-9d2e-1f0a2b3c4d5e").map(|_| ()),
    ] {
        assert!(matches!(r, Err(Error::ConsentRequired { .. })), "{r:?}");
    }
    assert_eq!(contacts_of(core, me), 0);

    // With consent: JSON, and real vCards of every version.
    consent_to_contacts(core, &user, me, Action::Grant);
    let (c1, created) = contacts::sync(core, &user, json(friend.clone())).unwrap();
    assert!(created);
    assert_eq!(c1.contact, friend);
    // The same UID again replaces it.
    let renamed = Contact {
        formatted_name: Some("Jörg M.".into()),
        ..friend.clone()
    };
    let (c1b, created) = contacts::sync(core, &user, json(renamed.clone())).unwrap();
    assert!(!created);
    assert_eq!(c1b.id, c1.id);
    assert_eq!(contacts::get(core, &user, &c1.id).unwrap().contact, renamed);
    let (iphone, _) = contacts::sync(core, &user, SyncInput::Vcard(IPHONE.to_vec())).unwrap();
    let stored = contacts::get(core, &user, &iphone.id).unwrap();
    assert!(stored.has_photo);
    assert_eq!(stored.contact, steward_vcard::parse_one(IPHONE).unwrap());
    assert_eq!(stored.contact.photo.as_ref().unwrap().data.len(), 32_531);
    // Android 2.1: quoted-printable with soft line breaks, UTF-8 Ñ, an embedded photo.
    let android5 = nth_card(ANDROID, 5);
    let (a5, _) = contacts::sync(core, &user, SyncInput::Vcard(android5)).unwrap();
    let want = steward_vcard::parse(ANDROID).unwrap().remove(4);
    assert_eq!(contacts::get(core, &user, &a5.id).unwrap().contact, want);
    assert_eq!(want.emails[1].value, "Ñ".repeat(14));
    let (rfc, _) = contacts::sync(core, &user, SyncInput::Vcard(RFC6350.to_vec())).unwrap();

    // Listing leaves photos out (and says which have one).
    let list = contacts::list(core, &user).unwrap();
    assert_eq!(
        list.iter().map(|c| c.id.clone()).collect::<Vec<_>>(),
        [
            c1.id.clone(),
            iphone.id.clone(),
            a5.id.clone(),
            rfc.id.clone()
        ]
    );
    assert!(list.iter().all(|c| c.contact.photo.is_none()));
    assert_eq!(
        list.iter().map(|c| c.has_photo).collect::<Vec<_>>(),
        [false, true, true, false]
    );
    // As vCard 4.0 and 3.0, each reads back as stored (with a UID if it had none).
    for id in [&c1.id, &iphone.id, &a5.id, &rfc.id] {
        let c = contacts::get(core, &user, id).unwrap();
        for v in [Version::V4, Version::V3] {
            let back = steward_vcard::parse_one(contacts::to_vcard(&c, v).as_bytes()).unwrap();
            let mut want = c.contact.clone();
            want.uid.get_or_insert_with(|| format!("urn:uuid:{id}"));
            assert_eq!(back, want, "{v:?}");
        }
    }

    // Refusals name the field or the line; what is stored stays as it was.
    let snapshot = || {
        core.db
            .read(|c| {
                c.query(
                    "SELECT id, card_enc, photo_enc, updated_at FROM device_contacts \
                     WHERE subject_id = $1 ORDER BY id",
                    params![me],
                )
            })
            .unwrap()
    };
    let before = snapshot();
    let big_photo = Photo {
        media_type: "image/jpeg".into(),
        data: vec![0xFF; contacts::LIMITS.max_photo_bytes + 1],
    };
    let (f, m) = invalid_field(contacts::sync(
        core,
        &user,
        json(Contact {
            photo: Some(big_photo.clone()),
            ..friend.clone()
        }),
    ));
    assert_eq!(f, "photo.data");
    assert!(m.contains("over the limit of 262144 bytes"), "{m}");
    let huge_card = steward_vcard::to_vcard(
        &Contact {
            formatted_name: Some("Big Photo".into()),
            photo: Some(big_photo),
            ..Contact::default()
        },
        Version::V3,
    );
    let (f, m) = invalid_field(contacts::sync(
        core,
        &user,
        SyncInput::Vcard(huge_card.into_bytes()),
    ));
    assert_eq!(f, "photo.data");
    assert!(m.contains("card 1 (BEGIN:VCARD at line 1)"), "{m}");
    for (bytes, field, says) in [
        (
            ANDROID.to_vec(),
            "vcard",
            vec!["exactly one vCard", "found 6", "line 6"],
        ),
        (
            IPHONE[..IPHONE.len() / 3].to_vec(),
            "vcard",
            vec!["without END:VCARD", "truncated"],
        ),
        (
            b"FN:No Begin\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 1", "expected BEGIN:VCARD"],
        ),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00binary".to_vec(),
            "vcard",
            vec!["line 1"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nN:Gr\xfc\xdf;Hans\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 3", "not valid UTF-8"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:x\r\nTEL;TYPE=CELL\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 4"],
        ),
        (
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nNOTE:only a note\r\nEND:VCARD\r\n".to_vec(),
            "contact",
            vec!["is empty", "card 1"],
        ),
        (Vec::new(), "vcard", vec!["empty"]),
    ] {
        let (f, m) = invalid_field(contacts::sync(core, &user, SyncInput::Vcard(bytes)));
        assert_eq!(f, field, "{m}");
        for s in says {
            assert!(m.contains(s), "{m:?} lacks {s:?}");
        }
    }
    let (f, _) = invalid_field(contacts::sync(
        core,
        &user,
        json(Contact {
            formatted_name: Some("Tab\u{0}Null".into()),
            ..Contact::default()
        }),
    ));
    assert_eq!(f, "formatted_name");
    assert_eq!(snapshot(), before, "refusals changed nothing stored");

    // Someone else's contact is not found; the CLI has no address book.
    consent_to_contacts(core, &other, &t.admin.subject_id, Action::Grant);
    let (theirs, _) = contacts::sync(core, &other, json(friend.clone())).unwrap();
    assert_ne!(
        theirs.id, c1.id,
        "the same UID in another book is another contact"
    );
    assert!(matches!(
        contacts::get(core, &other, &c1.id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        contacts::delete(core, &other, &c1.id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        contacts::list(core, &Actor::cli()),
        Err(Error::Forbidden(_))
    ));

    // Deleting one contact.
    contacts::delete(core, &user, &rfc.id).unwrap();
    assert!(matches!(
        contacts::get(core, &user, &rfc.id),
        Err(Error::NotFound(_))
    ));
    assert!(matches!(
        contacts::delete(core, &user, &rfc.id),
        Err(Error::NotFound(_))
    ));
    let entries = audit_actions(core, &t.tenant.id);
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "device_contact.sync" && e.subject_id.as_deref() == Some(me))
            .count(),
        5
    );
    assert!(entries.iter().any(|e| e.action == "delete"
        && e.category.as_deref() == Some("device_contacts")
        && e.detail["contact_id"] == rfc.id.as_str()));

    // Withdrawing consent deletes every contact the user synced, and only theirs.
    assert_eq!(contacts_of(core, me), 3);
    consent_to_contacts(core, &user, me, Action::Withdraw);
    assert_eq!(contacts_of(core, me), 0);
    assert!(matches!(
        contacts::list(core, &user),
        Err(Error::ConsentRequired { .. })
    ));
    assert_eq!(contacts_of(core, &t.admin.subject_id), 1);
    // Consent again: the book starts empty.
    consent_to_contacts(core, &user, me, Action::Grant);
    assert!(contacts::list(core, &user).unwrap().is_empty());
}

#[test]
fn device_contacts_on_sqlite() {
    device_contacts_scenario(&Env::sqlite());
}

#[test]
fn device_contacts_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    device_contacts_scenario(&env);
}

// ---------------------------------------------------------------------------
// Nothing readable on disk
// ---------------------------------------------------------------------------

#[test]
fn no_contact_reaches_the_data_directory_in_clear() {
    let env = Env::sqlite();
    let core = &env.core;
    let t = seed_tenant(core, "scan");
    let admin = accounts::actor_for(&t.admin);
    let user = accounts::actor_for(&t.subject);
    let me = t.subject.subject_id.as_str();
    directory::create(
        core,
        &admin,
        &t.tenant.id,
        EntryInput {
            display_name: "Philippa Quarrington-Vole".into(),
            department: Some("Zanzibar Logistics Desk".into()),
            title: Some("Chief Quokka Wrangler".into()),
            emails: vec![typed("philippa.quarrington@scan-probe.test")],
            phones: vec![typed("+44 1632 960321"), typed("7731")],
            ..EntryInput::default()
        },
    )
    .unwrap();
    directory::import_vcard(core, &admin, &t.tenant.id, IPHONE).unwrap();
    consent_to_contacts(core, &user, me, Action::Grant);
    contacts::sync(
        core,
        &user,
        SyncInput::json(Contact {
            formatted_name: Some("Ottoline Brackenbury-Fisk".into()),
            emails: vec![typed("ottoline.fisk@scan-probe.test")],
            phones: vec![typed("+44 1632 960654")],
            note: Some("Met at the Quillfeather conference".into()),
            ..Contact::default()
        }),
    )
    .unwrap();
    contacts::sync(core, &user, SyncInput::Vcard(IPHONE.to_vec())).unwrap();
    let needles = [
        "Philippa Quarrington-Vole",
        "Quarrington",
        "philippa.quarrington@scan-probe.test",
        "Zanzibar Logistics",
        "Chief Quokka Wrangler",
        "+441632960321",
        "1632 960321",
        "Ottoline",
        "Brackenbury-Fisk",
        "ottoline.fisk@scan-probe.test",
        "1632 960654",
        "Quillfeather",
        // From the iPhone sample, imported into the directory and synced.
        "john.doe@ibm.com",
        "Money Counter",
        "905-555-1234",
        "Silicon Alley",
        // The photo's first bytes, as base64 and raw.
        "/9j/4AAQSkZJRgABAQAAAQABAAD/4QBYRXhpZgAATU0",
    ];
    let scan = || {
        for needle in needles {
            let hits = common::files_containing(env.data_dir(), needle);
            assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
        }
    };
    scan();
    // Withdrawal deletes the contacts' ciphertext too (the WAL is emptied), not
    // just the rows: the user's key still exists and would open it.
    let sealed: Vec<Vec<u8>> = core
        .db
        .read(|c| {
            c.query(
                "SELECT card_enc FROM device_contacts WHERE subject_id = $1",
                params![me],
            )
        })
        .unwrap()
        .iter()
        .map(|r| r.bytes(0).unwrap())
        .collect();
    assert_eq!(sealed.len(), 2);
    consent_to_contacts(core, &user, me, Action::Withdraw);
    assert_eq!(contacts_of(core, me), 0);
    for s in &sealed {
        let probe = &s[s.len() - 48..];
        for f in common::files_under(env.data_dir()) {
            let bytes = std::fs::read(&f).unwrap_or_default();
            assert!(
                !bytes.windows(probe.len()).any(|w| w == probe),
                "a deleted contact's ciphertext is still in {f:?}"
            );
        }
    }
    scan();
}

// ---------------------------------------------------------------------------
// Over HTTP
// ---------------------------------------------------------------------------

async fn get_text(
    s: &Server,
    path: &str,
    token: &str,
    accept: Option<&str>,
) -> (u16, String, String) {
    let mut req = s.http.get(s.url(path)).bearer_auth(token);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ct, resp.text().await.unwrap())
}

fn error_of(body: &Value) -> (&str, &str, Option<&str>) {
    (
        body["error"]["code"].as_str().unwrap_or_default(),
        body["error"]["message"].as_str().unwrap_or_default(),
        body["error"]["field"].as_str(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_and_device_contacts_over_http() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "http");
    let other = seed_tenant(&core, "http-other");
    let s = Server::start(core.clone()).await;
    let admin = s.login(&t.admin.username).await;
    let user = s.login(&t.subject.username).await;
    let stranger = s.login(&other.subject.username).await;
    let tid = t.tenant.id.clone();
    let dir = format!("/api/v1/tenants/{tid}/directory");

    // A tenant-admin adds an entry that a user then receives through sync.
    let (st, body) = s
        .call("GET", &format!("{dir}/sync"), Some(&user), None)
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["full"], true);
    assert_eq!(body["upserts"], json!([]));
    let token = body["token"].as_str().unwrap().to_owned();
    let (st, entry) = s
        .call(
            "POST",
            &dir,
            Some(&admin),
            Some(json!({
                "display_name": "Åsa Lindqvist-Øberg",
                "department": "Kundtjänst",
                "title": "Teamledare",
                "emails": [{"value": "asa.lindqvist@http.example.test", "types": ["work"]}],
                "phones": [{"value": "+46 8 123 456 78", "types": ["work", "voice"], "pref": true}],
            })),
        )
        .await;
    assert_eq!(st, 201, "{entry}");
    let entry_id = entry["id"].as_str().unwrap().to_owned();
    let (st, body) = s
        .call(
            "GET",
            &format!("{dir}/sync?since={token}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["full"], false);
    assert_eq!(body["upserts"][0]["id"], entry_id.as_str());
    assert_eq!(body["upserts"][0]["display_name"], "Åsa Lindqvist-Øberg");
    assert_eq!(body["upserts"][0]["phones"][0]["pref"], true);
    assert_eq!(body["deletions"], json!([]));
    let token2 = body["token"].as_str().unwrap().to_owned();
    // Users do not manage; strangers see nothing; bad tokens are 400.
    let (st, body) = s
        .call(
            "POST",
            &dir,
            Some(&user),
            Some(json!({"display_name": "X", "emails": [{"value": "x@http.example.test"}]})),
        )
        .await;
    assert_eq!((st, error_of(&body).0), (403, "forbidden"), "{body}");
    let (st, _) = s.call("GET", &dir, Some(&stranger), None).await;
    assert_eq!(st, 404);
    let their_token = s
        .call(
            "GET",
            &format!("/api/v1/tenants/{}/directory/sync", other.tenant.id),
            Some(&stranger),
            None,
        )
        .await
        .1["token"]
        .as_str()
        .unwrap()
        .to_owned();
    for bad in ["garbage", "1.AAAA"] {
        let (st, body) = s
            .call("GET", &format!("{dir}/sync?since={bad}"), Some(&user), None)
            .await;
        assert_eq!(st, 400, "{bad}: {body}");
        assert_eq!(error_of(&body).2, Some("since"));
    }
    let (st, body) = s
        .call(
            "GET",
            &format!("{dir}/sync?since={their_token}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!((st, error_of(&body).0), (409, "conflict"), "{body}");
    let (st, body) = s
        .call("GET", &format!("{dir}/sync?after=1"), Some(&user), None)
        .await;
    assert_eq!((st, error_of(&body).0), (400, "invalid"), "{body}");

    // Import a vCard file (text/vcard); other content types are 415.
    let (st, body) = s
        .raw(
            "POST",
            &format!("{dir}/import"),
            Some(&admin),
            "text/vcard; charset=utf-8",
            IPHONE.to_vec(),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body["created"], 1);
    assert_eq!(body["cards"][0]["ignored"][1], "photo");
    for ct in ["application/json", "text/plain"] {
        let (st, _) = s
            .raw(
                "POST",
                &format!("{dir}/import"),
                Some(&admin),
                ct,
                IPHONE.to_vec(),
            )
            .await;
        assert_eq!(st, 415, "{ct}");
    }
    let (st, body) = s
        .raw(
            "POST",
            &format!("{dir}/import"),
            Some(&admin),
            "text/vcard",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Broken\r\nEMAIL:b@http.example.test\r\nthis is not a property\r\nEND:VCARD\r\n".to_vec(),
        )
        .await;
    let (code, message, field) = error_of(&body);
    assert_eq!((st, code, field), (400, "invalid", Some("vcard")), "{body}");
    assert!(message.contains("line 5"), "{message}");
    // Over the import limit: 413 before anything is read.
    let mut big = IPHONE.to_vec();
    big.resize(directory::MAX_IMPORT_BYTES + 1, b'\n');
    let resp = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(s.url(&format!("{dir}/import")))
        .bearer_auth(&admin)
        .header("content-type", "text/vcard")
        .body(big)
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 413);
    }

    // Export: vCard 4.0 by default, 3.0 by query or Accept.
    let (st, ct, text) = get_text(&s, &format!("{dir}/export"), &user, None).await;
    assert_eq!(st, 200, "{text}");
    assert!(ct.starts_with("text/vcard"), "{ct}");
    assert_eq!(text.matches("VERSION:4.0").count(), 2, "{text}");
    assert!(text.contains("ORG:;Kundtjänst\r\n"), "{text}");
    let (_, _, v3) = get_text(&s, &format!("{dir}/export?version=3.0"), &user, None).await;
    assert_eq!(v3.matches("VERSION:3.0").count(), 2);
    let (_, _, v3) = get_text(
        &s,
        &format!("{dir}/export"),
        &user,
        Some("text/vcard; version=3.0"),
    )
    .await;
    assert_eq!(v3.matches("VERSION:3.0").count(), 2);
    let cards = steward_vcard::parse(v3.as_bytes()).unwrap();
    assert!(
        cards
            .iter()
            .any(|c| c.formatted_name.as_deref() == Some("Åsa Lindqvist-Øberg"))
    );
    let (st, _, body) = get_text(&s, &format!("{dir}/export?version=2.1"), &user, None).await;
    assert_eq!(st, 400, "{body}");
    // One entry: JSON by default, vCard on request.
    let one = format!("{dir}/{entry_id}");
    let (st, ct, body) = get_text(&s, &one, &user, None).await;
    assert_eq!(st, 200);
    assert!(ct.starts_with("application/json"), "{ct}");
    assert!(body.contains("Kundtjänst"));
    let (_, ct, body) = get_text(&s, &one, &user, Some("text/x-vcard")).await;
    assert!(
        ct.starts_with("text/vcard") && body.contains("VERSION:3.0"),
        "{body}"
    );
    let (_, _, body) = get_text(&s, &format!("{one}?format=vcard"), &user, None).await;
    assert!(body.contains("VERSION:4.0") && body.contains(&format!("UID:urn:uuid:{entry_id}")));
    let (st, _, _) = get_text(&s, &format!("{one}?format=xml"), &user, None).await;
    assert_eq!(st, 400);
    // Edit, then remove: the user's device hears of both.
    let (st, body) = s
        .call(
            "PUT",
            &one,
            Some(&admin),
            Some(json!({
                "display_name": "Åsa Lindqvist",
                "emails": [{"value": "asa.lindqvist@http.example.test"}],
            })),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let (st, _) = s.call("DELETE", &one, Some(&admin), None).await;
    assert_eq!(st, 204);
    let (_, body) = s
        .call(
            "GET",
            &format!("{dir}/sync?since={token2}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(body["deletions"], json!([entry_id]), "{body}");
    let (st, _) = s.call("GET", &one, Some(&user), None).await;
    assert_eq!(st, 404);

    // Device contacts: refused without consent, then synced as vCard and JSON.
    let mine = "/api/v1/me/device-contacts";
    let (st, body) = s
        .raw("POST", mine, Some(&user), "text/vcard", RFC6350.to_vec())
        .await;
    assert_eq!((st, error_of(&body).0), (403, "consent_required"), "{body}");
    let consents = format!("/api/v1/subjects/{}/consents", t.subject.subject_id);
    let (st, body) = s
        .call(
            "POST",
            &consents,
            Some(&user),
            Some(json!({"category": "device_contacts", "purpose": "provision", "action": "grant"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let (st, body) = s
        .raw("POST", mine, Some(&user), "text/vcard", IPHONE.to_vec())
        .await;
    assert_eq!(st, 201, "{body}");
    let iphone_id = body["id"].as_str().unwrap().to_owned();
    assert_eq!(body["has_photo"], true);
    assert_eq!(body["contact"]["phones"][6]["label"], "AssistantPhone");
    let contact = json!({
        "uid": "http-1",
        "formatted_name": "Zoë Ñúñez 李小龍",
        "phones": [{"value": "+34 600 000 000", "types": ["cell"]}],
    });
    let (st, body) = s
        .call("POST", mine, Some(&user), Some(contact.clone()))
        .await;
    assert_eq!(st, 201, "{body}");
    let zoe = body["id"].as_str().unwrap().to_owned();
    let (st, body) = s.call("POST", mine, Some(&user), Some(contact)).await;
    assert_eq!(
        (st, body["id"].as_str()),
        (200, Some(zoe.as_str())),
        "{body}"
    );
    let (st, body) = s.call("GET", mine, Some(&user), None).await;
    assert_eq!(st, 200);
    assert_eq!(body.as_array().unwrap().len(), 2);
    assert!(body[0]["contact"].get("photo").is_none());
    let (st, ct, text) = get_text(
        &s,
        &format!("{mine}/{zoe}?format=vcard&version=3.0"),
        &user,
        None,
    )
    .await;
    assert_eq!(st, 200);
    assert!(ct.starts_with("text/vcard"));
    let back = steward_vcard::parse_one(text.as_bytes()).unwrap();
    assert_eq!(back.formatted_name.as_deref(), Some("Zoë Ñúñez 李小龍"));
    assert_eq!(back.uid.as_deref(), Some("http-1"));
    let (_, _, text) = get_text(
        &s,
        &format!("{mine}/{iphone_id}"),
        &user,
        Some("text/vcard"),
    )
    .await;
    assert!(text.contains("VERSION:4.0") && text.contains("PHOTO:data:image/jpeg;base64,"));
    // Malformed bodies: 400 naming the field or line, 413, 415.
    let (st, body) = s
        .call(
            "POST",
            mine,
            Some(&user),
            Some(json!({"formatted_name": "A", "nickname": "B"})),
        )
        .await;
    assert_eq!((st, error_of(&body).2), (400, Some("nickname")), "{body}");
    let (st, body) = s
        .raw(
            "POST",
            mine,
            Some(&user),
            "application/json",
            br#"{"formatted_name": "A", "photo": {"media_type": "image/png", "data": "not base64!"}}"#.to_vec(),
        )
        .await;
    assert_eq!(st, 400, "{body}");
    assert!(error_of(&body).1.contains("base64"), "{body}");
    let big_photo = steward_vcard::to_vcard(
        &Contact {
            formatted_name: Some("Big".into()),
            photo: Some(Photo {
                media_type: "image/jpeg".into(),
                data: vec![0xAB; 300 * 1024],
            }),
            ..Contact::default()
        },
        Version::V4,
    );
    let (st, body) = s
        .raw(
            "POST",
            mine,
            Some(&user),
            "text/vcard",
            big_photo.into_bytes(),
        )
        .await;
    assert_eq!((st, error_of(&body).2), (400, Some("photo.data")), "{body}");
    let (st, body) = s
        .raw("POST", mine, Some(&user), "text/plain", RFC6350.to_vec())
        .await;
    assert_eq!(st, 415, "{body}");
    let mut huge = IPHONE.to_vec();
    huge.resize(contacts::MAX_BODY + 1, b'\n');
    let resp = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
        .post(s.url(mine))
        .bearer_auth(&user)
        .header("content-type", "text/vcard")
        .body(huge)
        .send()
        .await;
    if let Ok(resp) = resp {
        assert_eq!(resp.status().as_u16(), 413);
    }
    let (st, body) = s
        .raw(
            "POST",
            mine,
            Some(&user),
            "text/vcard",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cut".to_vec(),
        )
        .await;
    let (code, message, field) = error_of(&body);
    assert_eq!((st, code, field), (400, "invalid", Some("vcard")));
    assert!(
        message.contains("line 3") && message.contains("truncated"),
        "{message}"
    );
    // Another user cannot see it; deleting it works once.
    let (st, _) = s
        .call("GET", &format!("{mine}/{zoe}"), Some(&admin), None)
        .await;
    assert!(st == 403 || st == 404);
    let (st, _) = s
        .call("DELETE", &format!("{mine}/{zoe}"), Some(&user), None)
        .await;
    assert_eq!(st, 204);
    let (st, _) = s
        .call("DELETE", &format!("{mine}/{zoe}"), Some(&user), None)
        .await;
    assert_eq!(st, 404);
    // Withdrawing the consent through the API deletes what is left.
    let (st, body) = s
        .call(
            "POST",
            &consents,
            Some(&user),
            Some(json!({"category": "device_contacts", "purpose": "provision", "action": "withdraw"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    assert_eq!(contacts_of(&core, &t.subject.subject_id), 0);
    let (st, body) = s.call("GET", mine, Some(&user), None).await;
    assert_eq!((st, error_of(&body).0), (403, "consent_required"));

    // Every route is in the OpenAPI document.
    let (_, doc) = s.call("GET", "/api/v1/openapi.json", None, None).await;
    for path in [
        "/api/v1/tenants/{tenant_id}/directory",
        "/api/v1/tenants/{tenant_id}/directory/sync",
        "/api/v1/tenants/{tenant_id}/directory/export",
        "/api/v1/tenants/{tenant_id}/directory/import",
        "/api/v1/tenants/{tenant_id}/directory/{entry_id}",
        "/api/v1/me/device-contacts",
        "/api/v1/me/device-contacts/{contact_id}",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
    assert!(
        doc["paths"]["/api/v1/me/device-contacts"]["post"]["requestBody"]["content"]
            .get("text/vcard")
            .is_some()
    );
}
