//! The domain core, checked on both databases: accounts, consent (standing and
//! single-use), the processing check, audit chain tampering, the registry's
//! completeness, and crypto-shredding.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Env, PASSWORD, new_user, provider_staff, seed_tenant};
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::consent::{self, Action, Channel, Record};
use steward::processing::{self, Use};
use steward::registry::{NON_PERSONAL_TABLES, PERSONAL_STORES};
use steward::{Error, audit, subjects};
use steward_store::{Conn, params};

fn grant(subject: &str, category: &str, purpose: &str, action: Action) -> Record {
    Record {
        subject_id: subject.to_owned(),
        category: category.to_owned(),
        purpose: purpose.to_owned(),
        action,
        channel: Channel::App,
        evidence: None,
    }
}

fn scenario(env: &Env) {
    let core = &env.core;
    let a = seed_tenant(core, "core-a");
    let b = seed_tenant(core, "core-b");
    // Staff naming a tenant that does not exist get 404, not an empty list.
    let nowhere = "0190c3f2-0000-7000-8000-000000000000";
    for listed in [
        accounts::list(core, &Actor::cli(), nowhere).map(|l| l.len()),
        steward::directory::list(core, &Actor::cli(), nowhere).map(|l| l.len()),
    ] {
        assert!(matches!(listed, Err(Error::NotFound(_))), "{listed:?}");
    }
    assert_eq!(
        accounts::list(core, &Actor::cli(), &a.tenant.id)
            .unwrap()
            .len(),
        4
    );
    let user = accounts::create_user(
        core,
        &Actor::cli(),
        &a.tenant.id,
        NewUser {
            phone: Some("07700 900456".into()),
            ..new_user("core-a-alice", Role::Subject)
        },
    )
    .unwrap();

    // Login, then the token authenticates as that account; a wrong password does not.
    let session = accounts::login(core, "core-a-alice", PASSWORD, Some("192.0.2.7")).unwrap();
    let alice = accounts::authenticate(core, &session.token).unwrap();
    assert_eq!(alice.subject_id.as_deref(), Some(user.subject_id.as_str()));
    assert!(matches!(
        accounts::login(core, "core-a-alice", "wrong password!", None),
        Err(Error::LoginFailed(_))
    ));
    // Logout revokes the session.
    let other = accounts::login(core, "core-a-alice", PASSWORD, None).unwrap();
    accounts::logout(core, &other.token).unwrap();
    assert!(matches!(
        accounts::authenticate(core, &other.token),
        Err(Error::Unauthenticated)
    ));

    // The subject reads their own record, decrypted and normalised.
    let me = subjects::read(core, &alice, &user.subject_id, "administration").unwrap();
    assert_eq!(me.email.as_deref(), Some("core-a-alice@example.test"));
    assert_eq!(me.phone.as_deref(), Some("+447700900456"));
    // Subjects find nobody else, and staff of another tenant find nothing.
    let b_admin = accounts::actor_for(&b.admin);
    assert!(matches!(
        subjects::read(core, &b_admin, &user.subject_id, "administration"),
        Err(Error::NotFound(_))
    ));
    // The blind index finds alice for her tenant's admin.
    let a_admin = accounts::actor_for(&a.admin);
    let found = subjects::find(
        core,
        &a_admin,
        &a.tenant.id,
        Some(" Core-A-Alice@Example.TEST "),
        None,
    )
    .unwrap();
    assert_eq!(found, vec![user.subject_id.clone()]);
    let found =
        subjects::find(core, &a_admin, &a.tenant.id, None, Some("+44 7700 900456")).unwrap();
    assert_eq!(found, vec![user.subject_id.clone()]);

    // Standing consent: refused without, allowed with, refused after withdrawal.
    let use_contacts = Use {
        subject_id: &user.subject_id,
        category: "device_contacts",
        purpose: "provision",
        recipient: None,
    };
    assert!(matches!(
        processing::check(core, &a_admin, &use_contacts),
        Err(Error::ConsentRequired { .. })
    ));
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "device_contacts",
            "provision",
            Action::Grant,
        ),
    )
    .unwrap();
    let d = processing::check(core, &a_admin, &use_contacts).unwrap();
    assert!(d.allowed);
    // Consent to one use does not unlock another use of the same purpose.
    let use_photos = Use {
        category: "photos_media",
        ..use_contacts.clone()
    };
    assert!(matches!(
        processing::check(core, &a_admin, &use_photos),
        Err(Error::ConsentRequired { .. })
    ));
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "device_contacts",
            "provision",
            Action::Withdraw,
        ),
    )
    .unwrap();
    assert!(matches!(
        processing::check(core, &a_admin, &use_contacts),
        Err(Error::ConsentRequired { .. })
    ));

    // Single-use consent: each grant authorises exactly one credit check.
    let credit = Use {
        subject_id: &user.subject_id,
        category: "credit_checks",
        purpose: "credit_check",
        recipient: Some("credit_agency"),
    };
    assert!(matches!(
        processing::check(core, &a_admin, &credit),
        Err(Error::ConsentRequired { .. })
    ));
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "credit_checks",
            "credit_check",
            Action::Grant,
        ),
    )
    .unwrap();
    let first = processing::check(core, &a_admin, &credit).unwrap();
    assert!(first.consumed_grant.is_some());
    assert!(matches!(
        processing::check(core, &a_admin, &credit),
        Err(Error::ConsentRequired { .. })
    ));
    // Two grants, one withdrawal: the withdrawal voids the unused grants.
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "credit_checks",
            "credit_check",
            Action::Grant,
        ),
    )
    .unwrap();
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "credit_checks",
            "credit_check",
            Action::Grant,
        ),
    )
    .unwrap();
    consent::record(
        core,
        &alice,
        grant(
            &user.subject_id,
            "credit_checks",
            "credit_check",
            Action::Withdraw,
        ),
    )
    .unwrap();
    assert!(matches!(
        processing::check(core, &a_admin, &credit),
        Err(Error::ConsentRequired { .. })
    ));
    // A recipient the policy does not declare for the category is refused.
    let undeclared = Use {
        recipient: Some("mailchimp"),
        ..credit.clone()
    };
    assert!(matches!(
        processing::check(core, &a_admin, &undeclared),
        Err(Error::Forbidden(_))
    ));
    // An undeclared purpose is refused with the declared ones named.
    let bad = Use {
        purpose: "marketing",
        ..use_contacts.clone()
    };
    match processing::check(core, &a_admin, &bad) {
        Err(Error::Invalid { message, .. }) => assert!(message.contains("provision"), "{message}"),
        other => panic!("{other:?}"),
    }

    // Staff record consent received by letter, with evidence; the employer cannot.
    let op = accounts::actor_for(&provider_staff(core, "core-staff-op", Role::Operator));
    let by_letter = Record {
        channel: Channel::Letter,
        evidence: Some("letter of 2026-11-20, ref PCS-123".into()),
        ..grant(&user.subject_id, "photos_media", "provision", Action::Grant)
    };
    consent::record(core, &op, by_letter.clone()).unwrap();
    assert!(matches!(
        consent::record(core, &a_admin, by_letter),
        Err(Error::Forbidden(_))
    ));
    let (states, history) = consent::overview(core, &alice, &user.subject_id).unwrap();
    let photos = states
        .iter()
        .find(|s| s.category == "photos_media")
        .unwrap();
    assert!(photos.granted);
    let contacts = states
        .iter()
        .find(|s| s.category == "device_contacts")
        .unwrap();
    assert!(!contacts.granted);
    let letter = history
        .iter()
        .find(|e| e.channel == Channel::Letter)
        .unwrap();
    assert_eq!(
        letter.evidence.as_deref(),
        Some("letter of 2026-11-20, ref PCS-123")
    );
    assert_eq!(letter.policy_version, core.policy.version());
    // Another tenant's staff cannot see the ledger.
    assert!(matches!(
        consent::overview(core, &b_admin, &user.subject_id),
        Err(Error::NotFound(_))
    ));

    // The audit log records reads by others, consents and disclosures, and verifies.
    subjects::read(core, &a_admin, &user.subject_id, "administration").unwrap();
    let entries = audit::for_subject(&core.db, &user.subject_id).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "read" && e.actor == a_admin.audit_id)
    );
    assert!(
        entries
            .iter()
            .any(|e| e.action == "disclose" && e.recipient.as_deref() == Some("credit_agency"))
    );
    assert!(entries.iter().any(|e| e.action == "consent.consume"));
    assert!(
        entries
            .iter()
            .any(|e| e.action == "process.refused" && e.detail["reason"] == "consent_required"),
        "refusals are audited"
    );
    let v = audit::verify(&core.db, &core.keys).unwrap();
    assert!(v.ok, "{v:?}");
    let n = v.entries;
    assert!(n > 10);

    // Tampering: change one entry; the chain breaks exactly there.
    let victim = n / 2;
    let original: String = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT detail FROM audit_log WHERE seq = $1",
                params![victim],
            )
        })
        .unwrap()
        .unwrap()
        .text(0)
        .unwrap();
    set_detail(env, victim, "{\"forged\":true}");
    let v = audit::verify(&core.db, &core.keys).unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_broken, Some(victim));
    set_detail(env, victim, &original);
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
    // Removing the newest entry is caught through the key store's anchor.
    core.db
        .write(|c: &mut dyn Conn| c.execute("DELETE FROM audit_log WHERE seq = $1", params![n]))
        .unwrap();
    let v = audit::verify(&core.db, &core.keys).unwrap();
    assert!(!v.ok);
    assert_eq!(v.first_broken, Some(n));
    // Removing one in the middle is caught as a gap.
    core.db
        .write(|c: &mut dyn Conn| c.execute("DELETE FROM audit_log WHERE seq = $1", params![3i64]))
        .unwrap();
    assert_eq!(
        audit::verify(&core.db, &core.keys).unwrap().first_broken,
        Some(3)
    );

    // Crypto-shredding: once the key is gone the record cannot be read by anyone,
    // while the rows still exist.
    assert!(core.keys.shred_subject_key(&user.subject_id).unwrap());
    let staff = Actor::cli();
    assert!(subjects::read(core, &staff, &user.subject_id, "administration").is_err());
    // Other subjects are unaffected.
    subjects::read(core, &staff, &a.subject.subject_id, "administration").unwrap();
}

fn set_detail(env: &Env, seq: i64, detail: &str) {
    env.core
        .db
        .write(|c: &mut dyn Conn| {
            c.execute(
                "UPDATE audit_log SET detail = $1 WHERE seq = $2",
                params![detail, seq],
            )
        })
        .unwrap();
}

/// Every table holds personal data and is registered, or is listed as holding none.
fn registry_is_complete(env: &Env) {
    let tables = env.core.db.table_names().unwrap();
    for t in &tables {
        let registered = PERSONAL_STORES.iter().any(|s| s.name == t);
        let exempt = NON_PERSONAL_TABLES.iter().any(|(n, _)| n == t);
        assert!(
            registered ^ exempt,
            "table {t} must be registered in registry.rs as a personal store or listed as non-personal (exactly one)"
        );
    }
    for s in PERSONAL_STORES.iter() {
        assert!(
            tables.contains(&s.name.to_owned()),
            "registered store {} has no table",
            s.name
        );
        let mut cols: Vec<&str> = s.subject_columns.to_vec();
        cols.extend(s.encrypted_columns.iter().map(|(c, _)| *c));
        cols.extend(s.time_column);
        // Selecting the declared columns proves they exist.
        env.core
            .db
            .read(|c| {
                c.query(
                    &format!("SELECT {} FROM {} LIMIT 1", cols.join(", "), s.name),
                    &[],
                )
            })
            .unwrap_or_else(|e| panic!("store {}: {e}", s.name));
        assert!(
            env.core.policy.category(s.category).is_some(),
            "store {}: unknown category",
            s.name
        );
    }
    // Every *_enc column of every table is declared as encrypted by its store.
    for t in &tables {
        let cols = column_names(env, t);
        for c in cols.iter().filter(|c| c.ends_with("_enc")) {
            let store = PERSONAL_STORES.iter().find(|s| s.name == t);
            assert!(
                store.is_some_and(|s| s.encrypted_columns.iter().any(|(e, _)| e == c)),
                "{t}.{c} is encrypted personal data but not declared in registry.rs"
            );
        }
    }
}

fn column_names(env: &Env, table: &str) -> Vec<String> {
    env.core
        .db
        .read(|c| match c.backend() {
            steward_store::Backend::Sqlite => c.query(
                &format!("SELECT name FROM pragma_table_info('{table}')"),
                &[],
            ),
            steward_store::Backend::Postgres => c.query(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1",
                params![table],
            ),
        })
        .unwrap()
        .iter()
        .map(|r| r.text(0).unwrap())
        .collect()
}

/// Keys made and read many at a time match the one-at-a-time calls, keep the
/// order asked for, cross the store's batch size, and a batch holding an id
/// that already has a key stores none of its chunk.
fn key_batches(env: &Env) {
    use steward::keys::KEY_BATCH;
    let keys = &env.core.keys;
    let ids: Vec<String> = (0..KEY_BATCH + 7)
        .map(|i| format!("batch-subject-{i:05}"))
        .collect();
    let made = keys.create_subject_keys(&ids).unwrap();
    assert_eq!(made.len(), ids.len());
    let aad = b"batch test";
    for i in [0, 1, KEY_BATCH - 1, KEY_BATCH, ids.len() - 1] {
        let sealed = made[i].encrypt(ids[i].as_bytes(), aad).unwrap();
        let one = keys.require_subject_key(&ids[i]).unwrap();
        assert_eq!(
            one.decrypt(&sealed, aad).unwrap(),
            ids[i].as_bytes(),
            "key {i}"
        );
    }
    // Read back many at once, in the order asked, with gaps for unknown and
    // shredded subjects.
    assert!(keys.shred_subject_key(&ids[3]).unwrap());
    let ask = vec![
        ids[KEY_BATCH].clone(),
        "no-such-subject".to_owned(),
        ids[3].clone(),
        ids[0].clone(),
    ];
    let got = keys.subject_keys(&ask).unwrap();
    assert_eq!(got.len(), 4);
    let sealed = made[KEY_BATCH].encrypt(b"x", aad).unwrap();
    assert_eq!(
        got[0].as_ref().unwrap().decrypt(&sealed, aad).unwrap(),
        b"x"
    );
    assert!(got[1].is_none() && got[2].is_none());
    let sealed = made[0].encrypt(b"y", aad).unwrap();
    assert_eq!(
        got[3].as_ref().unwrap().decrypt(&sealed, aad).unwrap(),
        b"y"
    );
    assert!(keys.subject_keys(&[]).unwrap().is_empty());
    // A chunk with an id that has a key already is refused whole.
    let clash = vec!["fresh-a".to_owned(), ids[1].clone(), "fresh-b".to_owned()];
    assert!(keys.create_subject_keys(&clash).is_err());
    assert!(
        keys.subject_keys(&clash)
            .unwrap()
            .iter()
            .enumerate()
            .all(|(i, k)| k.is_some() == (i == 1)),
        "only the key that was there before"
    );
    let kept = keys.require_subject_key(&ids[1]).unwrap();
    let sealed = made[1].encrypt(b"z", aad).unwrap();
    assert_eq!(
        kept.decrypt(&sealed, aad).unwrap(),
        b"z",
        "the old key untouched"
    );
}

#[test]
fn core_on_sqlite() {
    let env = Env::sqlite();
    registry_is_complete(&env);
    scenario(&env);
    key_batches(&env);
}

#[test]
fn core_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    registry_is_complete(&env);
    scenario(&env);
    key_batches(&env);
}

#[test]
fn no_identifier_reaches_the_data_directory_in_clear() {
    let env = Env::sqlite();
    let core = &env.core;
    let a = seed_tenant(core, "scan");
    let email = "zebulon.quixote@plaintext-probe.test";
    let name = "Zebulon Quixote-Fairweather";
    let user = accounts::create_user(
        core,
        &Actor::cli(),
        &a.tenant.id,
        NewUser {
            username: "zquixote".into(),
            password: PASSWORD.into(),
            role: Role::Subject,
            email: Some(email.into()),
            phone: Some("+44 7700 900987".into()),
            display_name: Some(name.into()),
        },
    )
    .unwrap();
    let s = accounts::login(core, "zquixote", PASSWORD, Some("198.51.100.77")).unwrap();
    let me = accounts::authenticate(core, &s.token).unwrap();
    let op = accounts::actor_for(&provider_staff(core, "scan-op", Role::Operator));
    consent::record(
        core,
        &op,
        Record {
            channel: Channel::Phone,
            evidence: Some(format!("call with {name}")),
            ..grant(
                &user.subject_id,
                "device_contacts",
                "provision",
                Action::Grant,
            )
        },
    )
    .unwrap();
    subjects::read(core, &me, &user.subject_id, "administration").unwrap();
    // Checkpoint nothing: the WAL and the main file are both scanned as they are.
    for needle in [
        email,
        "zebulon.quixote",
        name,
        "Quixote",
        "+447700900987",
        "7700900987",
        "zquixote",
        "198.51.100.77",
    ] {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
    // The scan can fail: the needle is findable when written in clear.
    std::fs::write(env.data_dir().join("probe.txt"), email).unwrap();
    assert_eq!(common::files_containing(env.data_dir(), email).len(), 1);
}
