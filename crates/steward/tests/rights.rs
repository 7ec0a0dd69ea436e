//! Data-subject rights on both databases: deadlines, verification before
//! release, the access bundle (complete, per store), rectification, refusal
//! grounds, erasure everywhere with the "already erased" answer afterwards.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;

use common::{Env, PASSWORD, new_user, provider_staff, seed_tenant};
use steward::access::{Actor, Role};
use steward::accounts::{self, NewUser};
use steward::consent::{self, Action, Channel, Record};
use steward::processing::{self, Use};
use steward::registry::PERSONAL_STORES;
use steward::rights::{
    self, Ground, Kind, NewRequest, RequestChannel, State, SubjectRef, erase, export,
};
use steward::{Error, audit};
use steward_store::params;

const EMAIL: &str = "rosalind.quennell@rights-probe.test";
const NAME: &str = "Rosalind Quennell";

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn request(kind: Kind, subject: SubjectRef) -> NewRequest {
    NewRequest {
        subject,
        kind,
        channel: RequestChannel::Letter,
        received_on: today(),
        region: None,
        details: Some(format!("{NAME} asks about her data")),
    }
}

/// Rows about `subject` per table store, counted directly in the database.
fn counts(env: &Env, subject: &str) -> BTreeMap<String, u64> {
    PERSONAL_STORES
        .iter()
        .map(|s| {
            let n: i64 = s
                .subject_columns
                .iter()
                .map(|col| {
                    env.core
                        .db
                        .read(|c| {
                            c.query_opt(
                                &format!("SELECT COUNT(*) FROM {} WHERE {col} = $1", s.name),
                                params![subject],
                            )
                        })
                        .unwrap()
                        .unwrap()
                        .i64(0)
                        .unwrap()
                })
                .sum();
            (s.name.to_owned(), n as u64)
        })
        .collect()
}

/// The bundle's entries; binary ones (files) as their length.
fn unzip(path: &std::path::Path) -> BTreeMap<String, String> {
    unzip_bytes(path)
        .into_iter()
        .map(|(name, bytes)| {
            let text = String::from_utf8(bytes)
                .unwrap_or_else(|e| format!("<{} bytes>", e.as_bytes().len()));
            (name, text)
        })
        .collect()
}

fn unzip_bytes(path: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut z = zip::ZipArchive::new(std::fs::File::open(path).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

/// Runs the workflow; returns the id of the subject it erased.
fn scenario(env: &Env) -> String {
    let core = &env.core;
    let t = seed_tenant(core, "rights");
    let dpo = accounts::actor_for(&provider_staff(core, "staff-dpo", Role::Dpo));
    let user = accounts::create_user(
        core,
        &Actor::cli(),
        &t.tenant.id,
        NewUser {
            email: Some(EMAIL.into()),
            display_name: Some(NAME.into()),
            phone: Some("07700 900555".into()),
            ..new_user("rquennell", Role::Subject)
        },
    )
    .unwrap();
    let s = user.subject_id.clone();
    // Data in every registered store: sessions, consents (with a disclosure), requests.
    let session = accounts::login(core, "rquennell", PASSWORD, Some("203.0.113.9")).unwrap();
    let me = accounts::authenticate(core, &session.token).unwrap();
    for action in [Action::Grant, Action::Withdraw, Action::Grant] {
        consent::record(
            core,
            &me,
            Record {
                subject_id: s.clone(),
                category: "credit_checks".into(),
                purpose: "credit_check".into(),
                action,
                channel: Channel::App,
                evidence: None,
            },
        )
        .unwrap();
    }
    // A website visit linked to her, kept under her web analytics consent.
    for purpose in ["research_statistics", "service_improvement"] {
        consent::record(
            core,
            &me,
            Record {
                subject_id: s.clone(),
                category: "web_analytics".into(),
                purpose: purpose.into(),
                action: Action::Grant,
                channel: Channel::Web,
                evidence: None,
            },
        )
        .unwrap();
    }
    let visit = steward::analytics::web::clean(
        &steward::analytics::web::Visit {
            visitor_id: "rights-visitor-0000000001".into(),
            page: "/support/rosalind-quennell".into(),
            referrer: Some("https://search.example.test/?q=quennell".into()),
            user_agent: None,
        },
        None,
        Some("203.0.113.9".parse().unwrap()),
    )
    .unwrap();
    assert!(steward::analytics::web::collect_for_subject(core, &s, &visit).unwrap());
    let admin = accounts::actor_for(&t.admin);
    processing::check(
        core,
        &admin,
        &Use {
            subject_id: &s,
            category: "credit_checks",
            purpose: "credit_check",
            recipient: Some("credit_agency"),
        },
    )
    .unwrap();
    // An enquiry she phoned in, a credit check under a new permission, and her
    // "no further contact" request: the CRM stores.
    let enquiry = serde_json::json!({
        "channel": "phone", "name": NAME, "email": EMAIL, "phones": ["07700 900555"],
        "postal_address": "5 Quennell Close, Tamworth", "message": "Please call me about a quote.",
    });
    let e = steward::crm::enquiries::record(
        core,
        &dpo,
        &t.tenant.id,
        &serde_json::from_value(enquiry).unwrap(),
    )
    .unwrap();
    assert_eq!(e.subject_id, s);
    consent::record(
        core,
        &me,
        Record {
            subject_id: s.clone(),
            category: "credit_checks".into(),
            purpose: "credit_check".into(),
            action: Action::Grant,
            channel: Channel::App,
            evidence: None,
        },
    )
    .unwrap();
    let check = serde_json::json!({ "name": NAME, "postal_address": "5 Quennell Close, Tamworth" });
    steward::crm::credit::request(core, &dpo, &s, &serde_json::from_value(check).unwrap()).unwrap();
    steward::crm::marketing::no_further_contact(
        core,
        &me,
        &s,
        &steward::crm::marketing::NoFurtherContact::default(),
    )
    .unwrap();
    // A call she made (traffic data), sent by her employer's PBX.
    let call = serde_json::from_value(serde_json::json!({
        "caller": "07700 900555", "callee": "+44 161 496 0123",
        "start": 1_793_491_300, "answer": 1_793_491_305, "end": 1_793_491_360,
    }))
    .unwrap();
    let first_call = steward::ingest::ingest_records(core, &admin, &t.tenant.id, &[call], false)
        .unwrap()
        .ids
        .remove(0);

    // A call from the subject's phone to someone outside: a record shared by two people.
    let call: steward::ingest::cdr::NewCallRecord = serde_json::from_value(serde_json::json!({
        "leg_id": "rights-1", "caller": "07700 900555", "callee": "+44 1632 960123",
        "start": 1_790_000_000, "answer": 1_790_000_005, "end": 1_790_000_065,
    }))
    .unwrap();
    steward::ingest::cdr::ingest_records(core, &Actor::cli(), &t.tenant.id, &[call], false)
        .unwrap();
    // Her entry in her employer's directory (linked to her by her email), and
    // two contacts she synced from her phone with her consent.
    let entry = steward::directory::create(
        core,
        &admin,
        &t.tenant.id,
        steward::directory::EntryInput {
            display_name: NAME.into(),
            title: Some("Head of Billing".into()),
            emails: vec![steward_vcard::Typed {
                value: EMAIL.to_uppercase(),
                types: vec!["work".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(entry.subject_id, s, "linked to her user by her email");
    consent::record(
        core,
        &me,
        Record {
            subject_id: s.clone(),
            category: "device_contacts".into(),
            purpose: "provision".into(),
            action: Action::Grant,
            channel: Channel::App,
            evidence: None,
        },
    )
    .unwrap();
    for name in ["Bartholomew Ångström", "Ciarán Ó Dálaigh"] {
        steward::contacts::sync(
            core,
            &me,
            steward::contacts::SyncInput::json(steward_vcard::Contact {
                formatted_name: Some(name.into()),
                phones: vec![steward_vcard::Typed {
                    value: "+44 1632 960999".into(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        )
        .unwrap();
    }

    // A photo she keeps in the app (with her consent): a file in the blob store.
    let (photo, photo_bytes) = common::seed_media(core, &user, "rosalind-at-the-beach.jpg");

    // A recording of her first call, stated inbound: she is the outside party, so
    // it is hers (her key, her bundle, gone with her erasure).
    let mut recording_bytes = b"RIFF\x24\x10\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x10\x00\x00".to_vec();
    recording_bytes.extend(b"rosalind-recording ".iter().cycle().take(4096));
    let recording = steward::core::block_on(steward::recordings::upload(
        std::sync::Arc::clone(core),
        Actor::cli(),
        steward::recordings::Upload {
            call_id: first_call,
            direction: "inbound".into(),
            duration: "55".into(),
            content_type: Some("audio/wav".into()),
            name: Some("rosalind-call.wav".into()),
        },
        futures_util::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from(
            recording_bytes.clone(),
        ))]),
    ))
    .unwrap();
    assert_eq!(recording.subject_id, s);
    // An earlier portability request, answered: its bundle is kept for her to
    // download (the access_bundles store).
    let earlier = rights::create(
        core,
        &dpo,
        request(Kind::Portability, SubjectRef::Id(s.clone())),
    )
    .unwrap();
    rights::verify(core, &dpo, &earlier.id, "portal session").unwrap();
    export::for_request(core, &dpo, &earlier.id, &env.dir.path().join("earlier.zip")).unwrap();
    // Chat: a group she started with a colleague, a message each way, her read
    // mark, and her real-time connection (IP address and session).
    let chat = steward::chat::Chat::start(env.core.clone());
    let colleague = accounts::actor_for(&t.subject);
    // The colleague is in the directory: the app shows them by that name.
    steward::directory::create(
        core,
        &admin,
        &t.tenant.id,
        steward::directory::EntryInput {
            display_name: "Tobias Quennell".into(),
            emails: vec![steward_vcard::Typed {
                value: format!("{}@example.test", t.subject.username),
                types: vec!["work".into()],
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .unwrap();
    let (group, _) = steward::chat::conversations::create(
        core,
        &me,
        steward::chat::NewConversation {
            kind: steward::chat::ConversationKind::Group,
            members: vec![t.subject.subject_id.clone()],
            title: Some("Quennell reunion".into()),
        },
    )
    .unwrap();
    let author = chat.author(&me).unwrap();
    let (file, file_bytes) =
        common::seed_attachment(core, &user, &group.id, "quennell-recipe-card.jpg");
    chat.send_blocking(
        &author,
        &group.id,
        "Rosalind's secret recipe",
        std::slice::from_ref(&file.id),
    )
    .unwrap();
    let reply = chat
        .send_blocking(
            &chat.author(&colleague).unwrap(),
            &group.id,
            "Thanks, Rosalind",
            &[],
        )
        .unwrap();
    assert_eq!(
        chat.mark_blocking(&author, &group.id, steward::chat::Mark::Read, reply.id)
            .unwrap(),
        1
    );
    steward::chat::connection_opened(core, &author, &session.token, Some("203.0.113.9")).unwrap();

    // Access request: the deadline is 10 working days on; nothing is released before verification.
    let req = rights::create(
        core,
        &dpo,
        request(Kind::Access, SubjectRef::Email(EMAIL.to_uppercase())),
    )
    .unwrap();
    assert_eq!(req.subject_id.as_deref(), Some(s.as_str()));
    assert_eq!(req.state, State::Received);
    assert_eq!(req.working_days_left, 10, "{req:?}");
    assert_eq!(
        req.details.as_deref(),
        Some("Rosalind Quennell asks about her data")
    );
    let out = env.dir.path().join("bundle.zip");
    assert!(matches!(
        export::for_request(core, &dpo, &req.id, &out),
        Err(Error::Conflict(_))
    ));
    assert!(!out.exists());
    // The employer was told; the subject's employer admin cannot read the request itself.
    let notes: i64 = core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT COUNT(*) FROM notifications WHERE tenant_id = $1 AND request_id = $2",
                params![t.tenant.id.as_str(), req.id.as_str()],
            )
        })
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(notes, 1);
    assert!(rights::list(core, &admin, None).unwrap().is_empty());
    // Another tenant's staff see nothing of it.
    let other = seed_tenant(core, "rights-other");
    assert!(matches!(
        rights::get(core, &accounts::actor_for(&other.dpo), &req.id),
        Err(Error::NotFound(_))
    ));

    // How the identity was verified is one line of 1 to 200 characters, as
    // sent; nothing changes on a refusal.
    for bad in [
        "",
        "   ",
        "passport\nchecked",
        &format!(" {} ", "p".repeat(199)),
    ] {
        match rights::verify(core, &dpo, &req.id, bad) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field.as_deref(), Some("method")),
            other => panic!("{bad:?}: {other:?}"),
        }
        assert_eq!(
            rights::get(core, &dpo, &req.id).unwrap().state,
            State::Received
        );
    }
    let verified = rights::verify(
        core,
        &dpo,
        &req.id,
        "  passport copy checked against the letter ",
    )
    .unwrap();
    assert_eq!(
        verified.verify_method.as_deref(),
        Some("passport copy checked against the letter"),
        "kept trimmed"
    );
    let expected = counts(env, &s);
    let summary = export::for_request(core, &dpo, &req.id, &out).unwrap();
    // Every registered store is in the bundle with exactly what is stored.
    assert_eq!(summary.counts, expected);
    assert!(
        expected.values().all(|n| *n > 0),
        "the scenario fills every store: {expected:?}"
    );
    let files = unzip(&out);
    // Files are in the bundle as they were uploaded.
    assert_eq!(
        unzip_bytes(&out)[&format!("files/media/{}.jpg", photo.id)],
        photo_bytes
    );
    assert_eq!(
        unzip_bytes(&out)[&format!("files/call_recordings/{}.wav", recording.id)],
        recording_bytes
    );
    assert!(summary.missing_files.is_empty());
    for store in PERSONAL_STORES.iter() {
        let rows: Vec<serde_json::Value> =
            serde_json::from_str(&files[&format!("data/{}.json", store.name)]).unwrap();
        assert_eq!(rows.len() as u64, expected[store.name], "{}", store.name);
        let csv_rows = files[&format!("data/{}.csv", store.name)]
            .lines()
            .count()
            .saturating_sub(1);
        assert_eq!(csv_rows as u64, expected[store.name], "{} csv", store.name);
    }
    let subjects: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/subjects.json"]).unwrap();
    assert_eq!(subjects[0]["email"], EMAIL);
    assert_eq!(subjects[0]["name"], NAME);
    assert!(
        subjects[0].get("email_idx").is_none(),
        "derived columns stay out"
    );
    let accounts_json: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/accounts.json"]).unwrap();
    assert!(accounts_json[0].get("password_hash").is_none());
    assert_eq!(accounts_json[0]["username"], "rquennell");
    // Contacts as vCard, besides the generic JSON and CSV.
    let device = steward_vcard::parse(files["contacts/device-contacts.vcf"].as_bytes()).unwrap();
    let names: Vec<_> = device.iter().map(|c| c.formatted_name.clone()).collect();
    assert_eq!(
        names,
        [
            Some("Bartholomew Ångström".to_owned()),
            Some("Ciarán Ó Dálaigh".to_owned())
        ]
    );
    assert!(files["contacts/device-contacts.vcf"].contains("VERSION:4.0"));
    let own = steward_vcard::parse_one(files["contacts/directory-entry.vcf"].as_bytes()).unwrap();
    assert_eq!(own.formatted_name.as_deref(), Some(NAME));
    assert_eq!(own.title.as_deref(), Some("Head of Billing"));
    assert_eq!(own.uid, Some(format!("urn:uuid:{}", entry.id)));
    // Her chat: her messages' text, her status of the message she received
    // (whose sender stays out), her group's title, her connection's IP address.
    let rows = |name: &str| -> Vec<serde_json::Value> {
        serde_json::from_str(&files[&format!("data/{name}.json")]).unwrap()
    };
    assert_eq!(rows("chat_messages")[0]["text"], "Rosalind's secret recipe");
    let receipt = &rows("chat_receipts")[0];
    assert_eq!(
        (receipt["state"].as_str(), receipt["message_id"].as_str()),
        (Some("read"), Some(reply.id.to_string().as_str()))
    );
    assert_eq!(rows("chat_conversations")[0]["title"], "Quennell reunion");
    assert_eq!(
        rows("chat_members")[0]["conversation_id"],
        group.id.as_str()
    );
    assert_eq!(rows("chat_connections")[0]["ip_address"], "203.0.113.9");
    assert!(rows("chat_connections")[0].get("session_hash").is_none());
    assert!(!files["data/chat_receipts.json"].contains("Thanks, Rosalind"));
    assert_eq!(
        rows("chat_attachments")[0]["file_name"],
        "quennell-recipe-card.jpg"
    );
    assert_eq!(
        rows("chat_attachments")[0]["file"],
        format!("files/chat_attachments/{}.jpg", file.id)
    );
    // The conversations as she saw them: the reply she received is there, from
    // its sender as the directory names them or as "a member".
    let conversations: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/conversations.json"]).unwrap();
    let all = serde_json::Value::Array(conversations.clone()).to_string();
    assert!(all.contains("Thanks, Rosalind"), "{all}");
    assert!(all.contains("Rosalind's secret recipe"), "{all}");
    let group_json = conversations
        .iter()
        .find(|c| c["conversation_id"] == group.id.as_str())
        .unwrap();
    assert_eq!(group_json["title"], "Quennell reunion");
    let messages = group_json["messages"].as_array().unwrap();
    assert!(
        messages
            .iter()
            .any(|m| m["from"] == "you" && m["yours"] == true)
    );
    assert!(
        messages
            .iter()
            .any(|m| m["text"] == "Thanks, Rosalind" && m["yours"] == false),
        "{messages:?}"
    );
    assert!(!all.contains("subject_id"), "no member ids: {all}");
    // Every field of every machine-readable file is described in schema.json,
    // and no internal column appears.
    let schema: serde_json::Value = serde_json::from_str(&files["schema.json"]).unwrap();
    common::assert_described(&files, &schema);
    // The page a person opens: each category's items in plain words.
    let index = &files["index.html"];
    assert!(!index.contains("<script"), "no scripts");
    assert!(index.contains("Quennell reunion") && index.contains("Thanks, Rosalind"));
    assert!(index.contains(&format!("href=\"files/media/{}.jpg\"", photo.id)));
    assert!(
        index.contains("Credit reference agency") || index.contains("credit"),
        "disclosures"
    );
    assert_eq!(
        unzip_bytes(&out)[&format!("files/chat_attachments/{}.jpg", file.id)],
        file_bytes
    );
    let art15: serde_json::Value = serde_json::from_str(&files["article15.json"]).unwrap();
    let disclosed = art15["disclosed_to"].as_array().unwrap();
    assert_eq!(disclosed.len(), 1);
    assert_eq!(disclosed[0]["recipient"], "credit_agency");
    assert!(files["article15.md"].contains("Who received your data"));
    assert!(
        files["article15.md"].contains("- Kept: 6 years from your last engagement with us"),
        "{}",
        files["article15.md"]
    );
    for text in [&files["article15.md"], &files["index.html"]] {
        assert!(!text.contains("from from"), "a doubled word: {text}");
    }
    let manifest: serde_json::Value = serde_json::from_str(&files["manifest.json"]).unwrap();
    assert_eq!(manifest["request_id"], req.id.as_str());
    assert_eq!(
        rights::get(core, &dpo, &req.id).unwrap().state,
        State::Fulfilled
    );

    // Rectification replaces the identifier and its index.
    let rect = rights::create(
        core,
        &dpo,
        request(Kind::Rectification, SubjectRef::Id(s.clone())),
    )
    .unwrap();
    assert!(
        rights::rectify(core, &dpo, &rect.id, "email", "new@rights-probe.test").is_err(),
        "not before verification"
    );
    rights::verify(core, &dpo, &rect.id, "known caller").unwrap();
    rights::rectify(
        core,
        &dpo,
        &rect.id,
        "email",
        "Rosalind.New@Rights-Probe.test",
    )
    .unwrap();
    let found = steward::subjects::find(
        core,
        &dpo,
        &t.tenant.id,
        Some("rosalind.new@rights-probe.test"),
        None,
    )
    .unwrap();
    assert_eq!(found, vec![s.clone()]);
    assert!(
        steward::subjects::find(core, &dpo, &t.tenant.id, Some(EMAIL), None)
            .unwrap()
            .is_empty()
    );

    // Refusal grounds: never "backup"; "repetitive" only with an earlier request.
    let first = rights::create(
        core,
        &dpo,
        request(Kind::Erasure, SubjectRef::Id(s.clone())),
    )
    .unwrap();
    match Ground::parse("data is on backups") {
        Err(Error::Invalid { message, .. }) => assert!(message.contains("never a ground")),
        other => panic!("{other:?}"),
    }
    match rights::refuse(core, &dpo, &first.id, Ground::Repetitive) {
        Err(Error::Invalid { message, .. }) => {
            assert!(message.contains("not repetitive"), "{message}")
        }
        other => panic!("{other:?}"),
    }
    let second = rights::create(
        core,
        &dpo,
        request(Kind::Erasure, SubjectRef::Id(s.clone())),
    )
    .unwrap();
    let refused = rights::refuse(core, &dpo, &second.id, Ground::Repetitive).unwrap();
    assert_eq!(refused.state, State::Refused);

    // Erasure of the first request reaches every store and destroys the key.
    rights::verify(core, &dpo, &first.id, "passport").unwrap();
    let report = erase::for_request(core, &dpo, &first.id).unwrap();
    assert!(report.key_destroyed);
    assert!(report.confirmation.email.contains("erased"));
    assert!(
        report
            .confirmation
            .letter
            .contains(&core.policy.meta().controller)
    );
    let after = counts(env, &s);
    assert!(after.values().all(|n| *n == 0), "left behind: {after:?}");
    assert!(core.keys.subject_key(&s).unwrap().is_none());
    // The colleague keeps the group and his message; hers is a gap without text.
    let page = steward::chat::history::history(
        core,
        &colleague,
        &group.id,
        steward::chat::history::Position::Before {
            below: i64::MAX,
            above: 0,
        },
        None,
    )
    .unwrap();
    assert_eq!(page.messages.len(), 2);
    assert_eq!(page.messages[0].body.as_deref(), Some("Thanks, Rosalind"));
    assert_eq!(page.messages[0].receipts[0].subject_id, None);
    assert_eq!(
        (
            page.messages[1].body.as_deref(),
            page.messages[1].sender_subject_id.as_deref()
        ),
        (None, None)
    );
    // Request records remain, without the subject and with their words cleared.
    let kept = rights::get(core, &dpo, &first.id).unwrap();
    assert_eq!(
        (
            kept.subject_id.as_deref(),
            kept.details.as_deref(),
            kept.state
        ),
        (None, None, State::Fulfilled)
    );
    assert_eq!(
        kept.tombstone_id.as_deref(),
        Some(report.tombstone_id.as_str())
    );
    // The audit chain is intact and names no one.
    assert!(audit::verify(&core.db, &core.keys).unwrap().ok);
    // Other people are untouched.
    steward::subjects::read(core, &dpo, &t.subject.subject_id, "administration").unwrap();

    // A later request by the old identifiers is answered from the tombstone.
    let again = rights::create(
        core,
        &dpo,
        request(Kind::Access, SubjectRef::Username("rquennell".into())),
    )
    .unwrap();
    assert_eq!(again.subject_id, None);
    assert_eq!(
        again.tombstone_id.as_deref(),
        Some(report.tombstone_id.as_str())
    );
    rights::verify(core, &dpo, &again.id, "letterhead").unwrap();
    let out2 = env.dir.path().join("erased.zip");
    let s2 = export::for_request(core, &dpo, &again.id, &out2).unwrap();
    assert!(s2.erased_at.is_some());
    assert!(unzip(&out2)["README.txt"].contains("was erased on"));
    // Nobody matches at all: not found.
    assert!(matches!(
        rights::create(
            core,
            &dpo,
            request(Kind::Access, SubjectRef::Email("nobody@x.test".into()))
        ),
        Err(Error::NotFound(_))
    ));
    s
}

#[test]
fn rights_on_sqlite() {
    let env = Env::sqlite();
    let erased = scenario(&env);
    // The destroyed key left no trace in the key store's files (main file or WAL).
    let hits = common::files_containing(&env.data_dir().join("keys"), &erased);
    assert!(
        hits.is_empty(),
        "erased subject's key row lingers in {hits:?}"
    );
    // No identifier of the erased subject is left in clear anywhere in the data directory.
    for needle in [
        EMAIL,
        "rosalind",
        NAME,
        "Quennell",
        "7700900555",
        "rquennell",
        "203.0.113.9",
        "photo-of-rosalind",
        "rosalind-at-the-beach",
        "rosalind-recording",
        "rosalind-call.wav",
    ] {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} in {hits:?}");
    }
}

#[test]
fn rights_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    scenario(&env);
}

#[test]
fn deadlines_from_the_command_line() {
    let bin = env!("CARGO_BIN_EXE_steward");
    let run = |args: &[&str]| {
        let out = std::process::Command::new(bin).args(args).output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).trim().to_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // Christmas, Boxing Day (substitute) and New Year in England and Wales.
    assert_eq!(
        run(&["requests", "deadline", "--received", "2026-12-18"]).1,
        "2027-01-06"
    );
    // Scotland adds 2 January (the 4th, substitute).
    assert_eq!(
        run(&[
            "requests",
            "deadline",
            "--received",
            "2026-12-18",
            "--region",
            "scotland"
        ])
        .1,
        "2027-01-07"
    );
    // Across the 2022 Platinum Jubilee.
    assert_eq!(
        run(&["requests", "deadline", "--received", "2022-05-27"]).1,
        "2022-06-14"
    );
    let (code, out, _) = run(&["requests", "deadline", "--received", "2023-04-28", "--json"]);
    assert_eq!(code, Some(0));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["due"],
        "2023-05-16"
    );
    let (code, _, err) = run(&["requests", "deadline", "--received", "2023-02-29"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("received") && err.contains("29"), "{err}");
    let (code, _, err) = run(&[
        "requests",
        "deadline",
        "--received",
        "2023-01-02",
        "--region",
        "wales",
    ]);
    assert_eq!(code, Some(2));
    assert!(err.contains("england-and-wales"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_subject_asks_for_a_copy_through_the_api() {
    let env = Env::sqlite();
    let t = seed_tenant(&env.core, "api");
    let staff = provider_staff(&env.core, "api-staff-dpo", Role::Dpo);
    let server = common::Server::start(env.core.clone()).await;
    let user = server.login(&t.subject.username).await;
    let dpo = server.login(&staff.username).await;

    // The subject files their own request; received today, due in 10 working days.
    let (s, req) = server
        .call(
            "POST",
            "/api/v1/requests",
            Some(&user),
            Some(serde_json::json!({"kind": "access"})),
        )
        .await;
    assert_eq!(s, 201, "{req}");
    assert_eq!(req["channel"], "portal");
    assert_eq!(req["working_days_left"], 10);
    let id = req["id"].as_str().unwrap().to_owned();
    // They may not name someone else, nor verify themselves.
    let (s, _) = server
        .call(
            "POST",
            "/api/v1/requests",
            Some(&user),
            Some(serde_json::json!({"kind": "access", "subject_id": t.admin.subject_id})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = server
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/verify"),
            Some(&user),
            Some(serde_json::json!({"method": "me"})),
        )
        .await;
    assert_eq!(s, 403);
    // The queue and the metrics show it.
    let (s, queue) = server
        .call("GET", "/api/v1/requests?due_within=10", Some(&dpo), None)
        .await;
    assert_eq!(s, 200);
    assert!(
        queue
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["id"] == id.as_str())
    );
    let (_, metrics) = server.call("GET", "/metrics", None, None).await;
    assert!(
        metrics
            .as_str()
            .unwrap()
            .contains("steward_requests_open 1"),
        "{metrics}"
    );
    // Export before verification is refused; after it, the ZIP comes back.
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/export"),
            Some(&dpo),
            None,
        )
        .await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
    let (s, _) = server
        .call(
            "POST",
            &format!("/api/v1/requests/{id}/verify"),
            Some(&dpo),
            Some(serde_json::json!({"method": "logged-in session + ID"})),
        )
        .await;
    assert_eq!(s, 200);
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/requests/{id}/export")))
        .bearer_auth(&dpo)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/zip");
    let bytes = resp.bytes().await.unwrap();
    let path = env.dir.path().join("api.zip");
    std::fs::write(&path, &bytes).unwrap();
    let files = unzip(&path);
    let subjects: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/subjects.json"]).unwrap();
    assert_eq!(
        subjects[0]["email"],
        format!("{}@example.test", t.subject.username)
    );
    // The subject follows it: fulfilled, with its timeline.
    let (s, detail) = server
        .call("GET", &format!("/api/v1/requests/{id}"), Some(&user), None)
        .await;
    assert_eq!(s, 200);
    assert_eq!(detail["request"]["state"], "fulfilled");
    let events: Vec<&str> = detail["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        events,
        ["received", "employer_notified", "verified", "exported"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_employer_reads_a_request_without_what_the_person_wrote() {
    let env = Env::sqlite();
    let t = seed_tenant(&env.core, "empview");
    let other = seed_tenant(&env.core, "empother");
    let staff = provider_staff(&env.core, "empview-staff-dpo", Role::Dpo);
    let cli = Actor::cli();
    let mut new = request(Kind::Erasure, SubjectRef::Id(t.subject.subject_id.clone()));
    new.details = Some("please delete the photos of my divorce".into());
    let id = rights::create(&env.core, &cli, new).unwrap().id;
    rights::verify(&env.core, &cli, &id, "passport no. 123456789 checked").unwrap();
    let server = common::Server::start(env.core.clone()).await;
    let admin = server.login(&t.admin.username).await;
    let dpo = server.login(&staff.username).await;
    let path = format!("/api/v1/requests/{id}");

    // Staff see everything.
    let (s, full) = server.call("GET", &path, Some(&dpo), None).await;
    assert_eq!(s, 200, "{full}");
    assert_eq!(
        full["request"]["details"],
        "please delete the photos of my divorce"
    );
    assert!(full.to_string().contains("passport no. 123456789"));

    // The employer: kind, dates, state and whose it is; not the details, not
    // how the identity was checked, not by whom.
    let (s, seen) = server.call("GET", &path, Some(&admin), None).await;
    assert_eq!(s, 200, "{seen}");
    let r = &seen["request"];
    assert_eq!(r["kind"], "erasure");
    assert_eq!(r["state"], "in_progress");
    assert_eq!(r["subject_id"], t.subject.subject_id.as_str());
    assert_eq!(r["due_on"], full["request"]["due_on"]);
    for hidden in ["details", "verified_by", "verify_method", "verified_at"] {
        assert!(r[hidden].is_null(), "{hidden}: {r}");
    }
    let text = seen.to_string();
    assert!(
        !text.contains("divorce") && !text.contains("passport"),
        "{text}"
    );
    let events: Vec<&str> = seen["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event"].as_str().unwrap())
        .collect();
    assert_eq!(events, ["received", "employer_notified", "verified"]);
    assert_eq!(seen["timeline"][0]["detail"]["kind"], "erasure");
    assert_eq!(seen["timeline"][2]["detail"], serde_json::json!({}));
    // The domain function says the same.
    let direct = rights::get(&env.core, &accounts::actor_for(&t.admin), &id).unwrap();
    assert!(direct.details.is_none() && direct.verify_method.is_none());

    // Another employer's admin: 404, as for any object of another tenant.
    let stranger = server.login(&other.admin.username).await;
    let (s, body) = server.call("GET", &path, Some(&stranger), None).await;
    assert_eq!(s, 404, "{body}");
    assert!(!body.to_string().contains("erasure"));
}

/// Every column of every registered store is either shown in the bundle (the
/// source of a field of its view), declared internal, or derived (`_idx`,
/// `_hash`): a new column is a decision, not something the bundle leaks or
/// forgets. And every column a view names exists.
#[test]
fn every_column_is_shown_or_declared_internal() {
    use steward::rights::view::{self, Source};
    fn columns_of(s: &Source, out: &mut Vec<&'static str>) {
        match s {
            Source::Col(c) => out.push(c),
            Source::Other { column, owner } => {
                out.push(column);
                out.push(owner);
            }
            Source::Side(sides) => {
                for (side, s) in *sides {
                    out.push(side);
                    columns_of(s, out);
                }
            }
            Source::Fixed(_) | Source::File => {}
        }
    }
    let env = Env::sqlite();
    for store in PERSONAL_STORES {
        let v = view::view(store.name).unwrap();
        let mut used = Vec::new();
        for f in v.fields {
            columns_of(&f.source, &mut used);
        }
        if v.fields.iter().any(|f| matches!(f.source, Source::File)) {
            used.push(store.blob_column.unwrap());
        }
        let columns = env.core.db.column_names(store.name).unwrap();
        for c in &columns {
            if c.ends_with("_idx") || c.ends_with("_hash") {
                continue;
            }
            assert!(
                used.contains(&c.as_str()) || v.internal.contains(&c.as_str()),
                "{}.{c}: neither shown in the bundle (rights/view.rs) nor declared internal",
                store.name
            );
        }
        for c in used.iter().chain(v.internal) {
            assert!(
                columns.iter().any(|x| x == c),
                "{}: the view names a column {c} the table does not have",
                store.name
            );
        }
    }
}

/// A subject with a long call history gets paged HTML and complete data files:
/// every call in `data/call_records.json` and `.csv`, and on the pages, each
/// dated `YYYY-MM-DD`, as many as are stored, with pages linked in order.
#[test]
fn a_long_call_history_is_paged_and_complete() {
    let env = Env::sqlite();
    let core = &env.core;
    let t = seed_tenant(core, "rights-paged");
    let tenant = t.tenant.id.as_str();
    const CALLS: usize = 2_345;
    let start = 1_767_261_600; // 2026-01-01 10:00 UTC
    let records: Vec<steward::ingest::NewCallRecord> = (0..CALLS)
        .map(|i| {
            let other = format!("+44161496{:04}", i % 50);
            let me = "+447700900555".to_owned();
            let (caller, callee) = if i % 2 == 0 { (me, other) } else { (other, me) };
            // About three calls a day, across two years (two clock changes a year).
            let at = start + i as i64 * 28_800;
            serde_json::from_value(serde_json::json!({
                "leg_id": format!("paged-{i}"), "caller": caller, "callee": callee,
                "start": at, "answer": at + 5, "end": at + 125,
            }))
            .unwrap()
        })
        .collect();
    let (subject, summary, files) = calls_bundle(&env, tenant, &records, "+447700900555");
    assert_eq!(summary.counts["call_records"], CALLS as u64);
    // The machine-readable files are complete, oldest first.
    let calls: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/call_records.json"]).unwrap();
    assert_eq!(calls.len(), CALLS);
    let times: Vec<&str> = calls
        .iter()
        .map(|c| c["started_at"].as_str().unwrap())
        .collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert_eq!(files["data/call_records.csv"].lines().count(), CALLS + 1);
    let schema: serde_json::Value = serde_json::from_str(&files["schema.json"]).unwrap();
    common::assert_described(&files, &schema);
    // Three pages of up to 1,000, linked from the index with their dates.
    let index = &files["index.html"];
    for n in 1..=3 {
        assert!(
            index.contains(&format!("href=\"pages/call_records-{n}.html\"")),
            "{n}"
        );
    }
    assert!(!files.contains_key("pages/call_records-4.html"));
    assert!(index.contains("2026-01-01 to "), "the first page's dates");
    let page = |n: usize| &files[&format!("pages/call_records-{n}.html")];
    assert!(page(1).contains("href=\"call_records-2.html\" rel=\"next\""));
    assert!(!page(1).contains("rel=\"prev\""));
    assert!(page(2).contains("rel=\"prev\"") && page(2).contains("rel=\"next\""));
    assert!(
        page(3).contains("href=\"call_records-2.html\" rel=\"prev\"")
            && !page(3).contains("rel=\"next\"")
    );
    assert!(page(1).contains("href=\"../index.html\""));
    // The held-out style check: each stored call's date is on the pages as
    // YYYY-MM-DD, and the pages hold exactly as many calls as are stored.
    let stored: Vec<i64> = core
        .db
        .read(|c| {
            c.query(
                "SELECT start_at FROM call_records WHERE caller_subject_id = $1 OR callee_subject_id = $1",
                params![subject.as_str()],
            )
        })
        .unwrap()
        .iter()
        .map(|r| r.i64(0).unwrap())
        .collect();
    assert_eq!(stored.len(), CALLS);
    let pages_text: String = (1..=3).map(|n| page(n).as_str()).collect();
    let shown_rows = pages_text.matches("<tr><td").count();
    assert_eq!(shown_rows, CALLS, "calls on the pages");
    for at in &stored {
        // The pages show London time; no call is within an hour of midnight UTC,
        // so the London date is the UTC date.
        let day = time::OffsetDateTime::from_unix_timestamp(*at)
            .unwrap()
            .date()
            .to_string();
        assert!(pages_text.contains(&day), "{day}");
    }
    // Summer times are shown as BST, winter ones as GMT.
    assert!(pages_text.contains(" BST") && pages_text.contains(" GMT"));
    assert!(pages_text.contains("+441614960000"), "the numbers dialled");
}

/// Ingests `records`, then produces the access bundle of the subject with
/// `number`: their id, the summary and the bundle's files.
fn calls_bundle(
    env: &Env,
    tenant: &str,
    records: &[steward::ingest::NewCallRecord],
    number: &str,
) -> (String, export::BundleSummary, BTreeMap<String, String>) {
    let core = &env.core;
    let cli = Actor::cli();
    for chunk in records.chunks(1_000) {
        steward::ingest::ingest_records(core, &cli, tenant, chunk, true).unwrap();
    }
    let subject = steward::subjects::find(core, &cli, tenant, None, Some(number))
        .unwrap()
        .remove(0);
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.clone()),
            kind: Kind::Access,
            channel: RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "known caller").unwrap();
    let out = env.dir.path().join(format!("{}.zip", req.id));
    let summary = export::for_request(core, &cli, &req.id, &out).unwrap();
    (subject, summary, unzip(&out))
}

/// A call whose caller withheld their number shows no other party's number:
/// it stays withheld in the subject's copy.
#[test]
fn a_withheld_caller_id_stays_withheld() {
    let env = Env::sqlite();
    let t = seed_tenant(&env.core, "rights-withheld");
    let at = 1_772_442_000;
    let records: Vec<steward::ingest::NewCallRecord> = ["anonymous", "+441614960001"]
        .iter()
        .enumerate()
        .map(|(i, caller)| {
            serde_json::from_value(serde_json::json!({
                "caller": caller, "callee": "+447700900777",
                "start": at + i as i64 * 600, "answer": at + 5 + i as i64 * 600, "end": at + 65 + i as i64 * 600,
            }))
            .unwrap()
        })
        .collect();
    let (_, _, files) = calls_bundle(&env, &t.tenant.id, &records, "+447700900777");
    let calls: Vec<serde_json::Value> =
        serde_json::from_str(&files["data/call_records.json"]).unwrap();
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert_eq!(calls[0]["direction"], "incoming");
    assert_eq!(calls[0]["your_number"], "+447700900777");
    assert_eq!(
        calls[0]["other_party_number"],
        serde_json::Value::Null,
        "{}",
        calls[0]
    );
    assert_eq!(
        calls[1]["other_party_number"], "+441614960001",
        "a presented number is shown"
    );
    assert!(!files["data/call_records.json"].contains("anonymous"));
}
