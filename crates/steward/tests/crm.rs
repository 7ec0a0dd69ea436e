//! Enquiries and CRM contacts, marketing preferences and the mailing-tool
//! export, and credit checks, on both databases: web-form and staff intake,
//! "no further contact" surviving erasure and retention, the export leaving out
//! suppressed and non-consenting people (its CSV parsed back), credit checks
//! refused without a single-use permission, allowed once, refused again, and
//! deleted on withdrawal; the disclosures in the access bundle. Then malformed
//! input, the rate limit, the command line through the real binary, and a
//! plain-text scan of the data directory.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::process::{Command, Output};

use common::{Env, Server, provider_staff, seed_tenant};
use serde_json::{Value, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::audit;
use steward::consent::{self, Action, Channel, Record};
use steward::crm::marketing::{self, CSV_HEADER};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase, export};
use steward::tenants::PROVIDER_TENANT;
use steward_crypto::IdentifierKind;
use steward_store::{Value as DbValue, params};

fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn client_from(ip: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

async fn call(
    http: &reqwest::Client,
    base: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = http.request(method.parse().unwrap(), format!("{base}{path}"));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn count(env: &Env, sql: &str, args: &[DbValue]) -> i64 {
    sync(|| {
        env.core
            .db
            .read(|c| c.query_opt(sql, args))
            .unwrap()
            .unwrap()
            .i64(0)
            .unwrap()
    })
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn email_idx(core: &Steward, email: &str) -> Vec<u8> {
    core.keys.blind_index(IdentifierKind::Email, email)
}

/// The contact subjects of a tenant with this email (through the blind index).
fn contacts_with(env: &Env, tenant: &str, email: &str) -> Vec<String> {
    let idx = email_idx(&env.core, email);
    sync(|| {
        env.core
            .db
            .read(|c| {
                c.query(
                    "SELECT id FROM subjects WHERE tenant_id = $1 AND email_idx = $2 \
                     ORDER BY created_at, id",
                    params![tenant, idx],
                )
            })
            .unwrap()
            .iter()
            .map(|r| r.text(0).unwrap())
            .collect()
    })
}

fn web_enquiry(name: &str, email: Option<&str>, phones: &[&str], consent: bool) -> Value {
    let mut b = json!({
        "name": name,
        "phones": phones,
        "postal_address": "12 Larkspur Row\nTamworth B77 1AA",
        "topic": "Hosted telephony for 40 seats",
        "message": format!("Hello, this is {name}. Please call me about pricing."),
        "marketing_consent": consent,
    });
    if let Some(e) = email {
        b["email"] = json!(e);
    }
    b
}

fn credit_grant(subject: &str, action: Action) -> Record {
    Record {
        subject_id: subject.to_owned(),
        category: "credit_checks".into(),
        purpose: "credit_check".into(),
        action,
        channel: Channel::Phone,
        evidence: Some("permission given on a recorded call".into()),
    }
}

/// The access bundle of `subject`, unzipped (an access request, verified and exported).
fn bundle(env: &Env, subject: &str) -> BTreeMap<String, String> {
    let core = &env.core;
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind: Kind::Access,
            channel: RequestChannel::Letter,
            received_on: today(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "test").unwrap();
    let out = env.dir.path().join(format!("bundle-{}.zip", req.id));
    export::for_request(core, &cli, &req.id, &out).unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(&out).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut s = String::new();
            f.read_to_string(&mut s).unwrap();
            (f.name().unwrap().to_string(), s)
        })
        .collect()
}

fn disclosed_to(files: &BTreeMap<String, String>) -> Vec<String> {
    let art15: Value = serde_json::from_str(&files["article15.json"]).unwrap();
    art15["disclosed_to"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["recipient"].as_str().unwrap().to_owned())
        .collect()
}

fn erase_subject(env: &Env, subject: &str) {
    let core = &env.core;
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind: Kind::Erasure,
            channel: RequestChannel::Email,
            received_on: today(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "replied from the address we hold").unwrap();
    let report = erase::for_request(core, &cli, &req.id).unwrap();
    assert!(report.key_destroyed);
}

/// Parses an export back: header, then (email, name, day) rows.
fn parse_csv(text: &str) -> (Vec<String>, Vec<[String; 3]>) {
    let mut r = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = r.headers().unwrap().iter().map(str::to_owned).collect();
    let rows = r
        .records()
        .map(|rec| {
            let rec = rec.unwrap();
            assert_eq!(rec.len(), 3, "{rec:?}");
            [rec[0].to_owned(), rec[1].to_owned(), rec[2].to_owned()]
        })
        .collect();
    (header, rows)
}

async fn export_csv(
    server: &Server,
    token: &str,
    tenant: &str,
    body: Value,
) -> (u16, String, reqwest::header::HeaderMap) {
    let resp = server
        .http
        .post(server.url(&format!("/api/v1/tenants/{tenant}/marketing/export")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, resp.text().await.unwrap(), headers)
}

// ---------------------------------------------------------------------------
// Enquiries

async fn enquiries_scenario(env: &Env, ip: &str) {
    let core = env.core.clone();
    let server = Server::start(core.clone()).await;
    let web = client_from(ip);
    let (op, t) = sync(|| {
        (
            provider_staff(&core, "crm-enq-op", Role::Operator),
            seed_tenant(&core, "crm-enq"),
        )
    });
    let staff = server.login(&op.username).await;

    // A new person writes through the website's form.
    let (s, first) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(web_enquiry(
            "Philippa Thorncastle",
            Some("P.Thorncastle@Enquiry-Probe.test"),
            &["07700 900311"],
            true,
        )),
    )
    .await;
    assert_eq!(s, 202, "{first}");
    assert_eq!(first["received"], true);
    let reference = first["reference"].as_str().unwrap().to_owned();
    let contacts = contacts_with(env, PROVIDER_TENANT, "p.thorncastle@enquiry-probe.test");
    assert_eq!(
        contacts.len(),
        1,
        "one contact, found by the normalised email"
    );
    let contact = contacts[0].clone();
    let kind: String = sync(|| {
        core.db
            .read(|c| {
                c.query_opt(
                    "SELECT kind FROM subjects WHERE id = $1",
                    params![contact.as_str()],
                )
            })
            .unwrap()
            .unwrap()
            .text(0)
            .unwrap()
    });
    assert_eq!(kind, "contact");

    // Staff read it back, decrypted; the read is audited.
    let (s, e) = server
        .call(
            "GET",
            &format!("/api/v1/enquiries/{reference}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(s, 200, "{e}");
    assert_eq!(e["channel"], "web");
    assert_eq!(e["subject_id"], contact.as_str());
    assert_eq!(e["tenant_id"], PROVIDER_TENANT);
    assert_eq!(e["name"], "Philippa Thorncastle");
    assert_eq!(e["email"], "p.thorncastle@enquiry-probe.test");
    assert_eq!(e["phones"], json!(["+447700900311"]));
    assert_eq!(e["postal_address"], "12 Larkspur Row\nTamworth B77 1AA");
    assert_eq!(e["topic"], "Hosted telephony for 40 seats");
    assert!(e["message"].as_str().unwrap().contains("Please call me"));
    assert_eq!(e["recorded_by"], "system:enquiry-form");
    let entries = sync(|| audit::for_subject(&core.db, &contact).unwrap());
    assert!(entries.iter().any(|x| x.action == "enquiry.receive"
        && x.purpose.as_deref() == Some("answer_enquiries")
        && x.detail["channel"] == "web"));
    assert!(entries.iter().any(|x| x.action == "read"
        && x.actor == format!("account:{}", op.id)
        && x.category.as_deref() == Some("contact_details")));
    // The ticked box is in the consent ledger, marked unverified.
    let (states, history) = sync(|| consent::overview(&core, &Actor::cli(), &contact).unwrap());
    assert!(
        states
            .iter()
            .any(|c| c.category == "contact_details" && c.purpose == "marketing" && c.granted)
    );
    let tick = history.iter().find(|h| h.purpose == "marketing").unwrap();
    assert_eq!(tick.channel, Channel::Web);
    assert!(tick.evidence.as_deref().unwrap().contains("not verified"));

    // The same person again (another case): the same contact, the same answer shape.
    let (s, again) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(web_enquiry(
            "Philippa Thorncastle",
            Some("p.thorncastle@enquiry-probe.TEST"),
            &[],
            true,
        )),
    )
    .await;
    assert_eq!(s, 202);
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&again),
        keys(&first),
        "known and unknown get the same answer"
    );
    assert_ne!(again["reference"], first["reference"]);
    assert_eq!(
        contacts_with(env, PROVIDER_TENANT, "p.thorncastle@enquiry-probe.test"),
        vec![contact.clone()]
    );
    // No second marketing grant: it was in force already.
    let (_, history) = sync(|| consent::overview(&core, &Actor::cli(), &contact).unwrap());
    assert_eq!(
        history.iter().filter(|h| h.purpose == "marketing").count(),
        1
    );
    // By phone only: found by the phone number.
    let (s, _) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(web_enquiry(
            "P Thorncastle",
            None,
            &["+44 7700 900311"],
            false,
        )),
    )
    .await;
    assert_eq!(s, 202);
    let n = count(
        env,
        "SELECT COUNT(*) FROM enquiries WHERE subject_id = $1",
        params![contact.as_str()],
    );
    assert_eq!(n, 3);
    // A stranger's email beside her number: a new contact, her record untouched.
    let (s, _) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(web_enquiry(
            "Someone Else",
            Some("someone@enquiry-probe.test"),
            &["07700 900311"],
            false,
        )),
    )
    .await;
    assert_eq!(s, 202);
    let other = contacts_with(env, PROVIDER_TENANT, "someone@enquiry-probe.test");
    assert_eq!(other.len(), 1);
    assert_ne!(other[0], contact);
    let theirs = sync(|| {
        steward::subjects::read(&core, &Actor::cli(), &contact, "answer_enquiries").unwrap()
    });
    assert_eq!(
        theirs.email.as_deref(),
        Some("p.thorncastle@enquiry-probe.test")
    );

    // A bot fills in the honeypot: the usual answer, nothing stored.
    let before = count(env, "SELECT COUNT(*) FROM enquiries", &[]);
    let subjects_before = count(env, "SELECT COUNT(*) FROM subjects", &[]);
    let mut bot = web_enquiry("Buy Now", Some("bot@spam-probe.test"), &[], true);
    bot["website"] = json!("http://spam.example.test");
    let (s, b) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(bot),
    )
    .await;
    assert_eq!(s, 202);
    assert_eq!(keys(&b), keys(&first));
    assert_eq!(count(env, "SELECT COUNT(*) FROM enquiries", &[]), before);
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM subjects", &[]),
        subjects_before
    );

    // Staff of a customer tenant record a phone enquiry from one of its users:
    // found by email, the missing phone number filled in.
    let t_op = server.login(&t.operator.username).await;
    let user_email = format!("{}@example.test", t.subject.username);
    let (s, rec) = server
        .call(
            "POST",
            &format!("/api/v1/tenants/{}/enquiries", t.tenant.id),
            Some(&t_op),
            Some(json!({
                "channel": "phone",
                "name": "Person on the phone",
                "email": user_email.to_uppercase(),
                "phones": ["01632 960 444", "+44 1632 960444"],
                "message": "Asked about call recording retention.",
            })),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    assert_eq!(rec["subject_id"], t.subject.subject_id.as_str());
    assert_eq!(rec["new_contact"], false);
    assert_eq!(
        rec["phones"],
        json!(["+441632960444"]),
        "duplicates collapse"
    );
    assert_eq!(rec["channel"], "phone");
    let found = sync(|| {
        steward::subjects::find(
            &core,
            &Actor::cli(),
            &t.tenant.id,
            None,
            Some("01632 960444"),
        )
        .unwrap()
    });
    assert_eq!(found, vec![t.subject.subject_id.clone()]);
    // A letter with a received date; a new contact with marketing consent by letter.
    let (s, rec) = server
        .call(
            "POST",
            &format!("/api/v1/tenants/{}/enquiries", t.tenant.id),
            Some(&t_op),
            Some(json!({
                "channel": "letter",
                "name": "Ambrose Kettleby",
                "postal_address": "3 Mill Lane, Lichfield",
                "phones": ["01632 960555"],
                "message": "Please send a brochure.",
                "received_at": 1_790_000_000,
                "marketing_consent": true,
            })),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    assert_eq!(rec["new_contact"], true);
    assert_eq!(rec["received_at"], 1_790_000_000);
    let kettleby = rec["subject_id"].as_str().unwrap().to_owned();
    let (_, history) = sync(|| consent::overview(&core, &Actor::cli(), &kettleby).unwrap());
    assert_eq!(history[0].channel, Channel::Letter);
    assert_eq!(history[0].recorded_by, format!("account:{}", t.operator.id));

    // Who may do what: the tenant's operator cannot read the provider's enquiries
    // (404), its admin and users may not read enquiries at all (403).
    let (s, _) = server
        .call(
            "GET",
            &format!("/api/v1/enquiries/{reference}"),
            Some(&t_op),
            None,
        )
        .await;
    assert_eq!(s, 404);
    for acc in [&t.admin, &t.subject] {
        let tok = server.login(&acc.username).await;
        let (s, _) = server
            .call(
                "GET",
                &format!("/api/v1/enquiries/{reference}"),
                Some(&tok),
                None,
            )
            .await;
        assert_eq!(s, 403, "{}", acc.username);
        let (s, _) = server
            .call(
                "GET",
                &format!("/api/v1/tenants/{}/enquiries", t.tenant.id),
                Some(&tok),
                None,
            )
            .await;
        assert_eq!(s, 403, "{}", acc.username);
    }
    let (s, _) = server
        .call(
            "GET",
            "/api/v1/tenants/provider/enquiries",
            Some(&t_op),
            None,
        )
        .await;
    assert_eq!(s, 404);

    // The list pages newest first; each listed contact's read is audited.
    let (s, page1) = server
        .call(
            "GET",
            "/api/v1/tenants/provider/enquiries?limit=2",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(s, 200, "{page1}");
    let page1 = page1.as_array().unwrap().clone();
    assert_eq!(page1.len(), 2);
    let last = page1[1]["id"].as_str().unwrap();
    let (s, page2) = server
        .call(
            "GET",
            &format!("/api/v1/tenants/provider/enquiries?limit=100&before={last}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(s, 200);
    let page2 = page2.as_array().unwrap().clone();
    assert_eq!(
        page1.len() + page2.len(),
        4,
        "four enquiries in the provider tenant"
    );
    assert!(page1[0]["id"].as_str() > page1[1]["id"].as_str());
    assert!(page2.iter().all(|e| e["id"].as_str() < Some(last)));
    assert!(
        page1
            .iter()
            .chain(&page2)
            .any(|e| e["name"] == "Someone Else")
    );
    let reads = sync(|| audit::for_subject(&core.db, &other[0]).unwrap())
        .into_iter()
        .filter(|e| e.action == "read")
        .count();
    assert_eq!(reads, 1);
    for bad in ["limit=0", "limit=101", "limit=x", "surprise=1"] {
        let (s, body) = server
            .call(
                "GET",
                &format!("/api/v1/tenants/provider/enquiries?{bad}"),
                Some(&staff),
                None,
            )
            .await;
        assert_eq!(s, 400, "{bad}: {body}");
    }
    let (s, _) = server
        .call(
            "GET",
            "/api/v1/enquiries/no-such-enquiry",
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(s, 404);
}

#[tokio::test(flavor = "multi_thread")]
async fn enquiries_on_sqlite() {
    let env = Env::sqlite();
    enquiries_scenario(&env, "127.71.0.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn enquiries_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    enquiries_scenario(&env, "127.71.0.2").await;
    sync(move || drop(env));
}

// ---------------------------------------------------------------------------
// Marketing: consent, suppression, export

async fn marketing_scenario(env: &Env, ip: &str) {
    let core = env.core.clone();
    let server = Server::start(core.clone()).await;
    let web = client_from(ip);
    let (op, t) = sync(|| {
        (
            provider_staff(&core, "crm-mkt-op", Role::Operator),
            seed_tenant(&core, "crm-mkt"),
        )
    });
    let staff = server.login(&op.username).await;
    let form =
        |name: &str, email: &str, consent: bool| web_enquiry(name, Some(email), &[], consent);
    let people = [
        ("Agatha Loveday", "agatha@mkt-probe.test", true),
        ("Bertram Quill", "bertram@mkt-probe.test", false),
        ("Cordelia Vane", "cordelia@mkt-probe.test", true),
        ("Dorian Ashby", "dorian@mkt-probe.test", true),
        (
            "=HYPERLINK(\"http://x.test\",\"Eve\")",
            "eve@mkt-probe.test",
            true,
        ),
        ("Zoë \"Zed\" Ó Briain, Jr.", "zoe@mkt-probe.test", true),
    ];
    for (name, email, consent) in people {
        let (s, body) = call(
            &web,
            &server.base,
            "POST",
            "/api/v1/web/enquiries",
            None,
            Some(form(name, email, consent)),
        )
        .await;
        assert_eq!(s, 202, "{body}");
    }
    let id = |email: &str| contacts_with(env, PROVIDER_TENANT, email)[0].clone();
    let (agatha, dorian, cordelia, zoe) = (
        id("agatha@mkt-probe.test"),
        id("dorian@mkt-probe.test"),
        id("cordelia@mkt-probe.test"),
        id("zoe@mkt-probe.test"),
    );
    // A caller with consent but no email; Dorian withdraws; Cordelia asks for no
    // further contact by email (staff record it).
    let (s, phone_only) = server
        .call(
            "POST",
            "/api/v1/tenants/provider/enquiries",
            Some(&staff),
            Some(
                json!({"channel": "phone", "name": "Fenella Marsh", "phones": ["01632 960777"],
                        "message": "Call me back.", "marketing_consent": true}),
            ),
        )
        .await;
    assert_eq!(s, 201, "{phone_only}");
    let (s, _) = server
        .call(
            "POST",
            &format!("/api/v1/subjects/{dorian}/consents"),
            Some(&staff),
            Some(
                json!({"category": "contact_details", "purpose": "marketing", "action": "withdraw",
                        "channel": "email", "evidence": "unsubscribe reply"}),
            ),
        )
        .await;
    assert_eq!(s, 201);
    let (s, nfc) = server
        .call(
            "POST",
            &format!("/api/v1/subjects/{cordelia}/no-further-contact"),
            Some(&staff),
            Some(json!({"channel": "email", "evidence": "replied 'no further contact' on 3 Dec"})),
        )
        .await;
    assert_eq!(s, 200, "{nfc}");
    assert_eq!(nfc["consents_withdrawn"], 1);
    assert_eq!(nfc["evidence_kept"], true);
    assert_eq!(nfc["entries"].as_array().unwrap().len(), 1, "her email");
    assert_eq!(nfc["entries"][0]["kind"], "email");
    assert_eq!(nfc["entries"][0]["already"], false);
    // Staff need a channel when acting for someone; twice is harmless.
    let (s, body) = server
        .call(
            "POST",
            &format!("/api/v1/subjects/{cordelia}/no-further-contact"),
            Some(&staff),
            Some(json!({})),
        )
        .await;
    assert_eq!(s, 400);
    assert_eq!(body["error"]["field"], "channel");
    let (s, again) = server
        .call(
            "POST",
            &format!("/api/v1/subjects/{cordelia}/no-further-contact"),
            Some(&staff),
            Some(json!({"channel": "letter"})),
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(again["entries"][0]["already"], true);
    assert_eq!(again["consents_withdrawn"], 0);

    // The export: Agatha, Eve and Zoë; not Bertram (never consented), Cordelia
    // (suppressed), Dorian (withdrew), Fenella (no email).
    let (s, text, headers) = export_csv(&server, &staff, PROVIDER_TENANT, json!({})).await;
    assert_eq!(s, 200, "{text}");
    assert!(
        headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, CSV_HEADER.to_vec());
    let mut emails: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    emails.sort();
    assert_eq!(
        emails,
        vec![
            "agatha@mkt-probe.test",
            "eve@mkt-probe.test",
            "zoe@mkt-probe.test"
        ]
    );
    let by_email: BTreeMap<&str, &[String; 3]> = rows.iter().map(|r| (r[0].as_str(), r)).collect();
    assert_eq!(
        by_email["zoe@mkt-probe.test"][1],
        "Zoë \"Zed\" Ó Briain, Jr."
    );
    assert_eq!(
        by_email["eve@mkt-probe.test"][1], "'=HYPERLINK(\"http://x.test\",\"Eve\")",
        "no formula"
    );
    assert_eq!(by_email["agatha@mkt-probe.test"][2], today());
    assert!(
        text.contains("\"Zoë \"\"Zed\"\" Ó Briain, Jr.\""),
        "RFC 4180 quoting: {text}"
    );
    assert_eq!(headers["x-steward-exported"], "3");
    assert_eq!(
        headers["x-steward-left-out-suppressed"], "0",
        "Cordelia's consent went with her request"
    );
    assert_eq!(headers["x-steward-left-out-no-consent"], "2");
    assert_eq!(headers["x-steward-left-out-no-email"], "1");
    // Each exported person's disclosure to Mailchimp is in the audit log, and in
    // their access bundle; nobody else's.
    let disclosed = |s: &str| {
        sync(|| audit::for_subject(&core.db, s).unwrap())
            .into_iter()
            .filter(|e| e.action == "disclose" && e.recipient.as_deref() == Some("mailchimp"))
            .count()
    };
    assert_eq!(disclosed(&agatha), 1);
    assert_eq!(disclosed(&zoe), 1);
    assert_eq!(disclosed(&cordelia), 0);
    assert_eq!(disclosed(&dorian), 0);
    assert_eq!(disclosed(&id("bertram@mkt-probe.test")), 0);
    let files = sync(|| bundle(env, &agatha));
    assert_eq!(disclosed_to(&files), vec!["mailchimp".to_owned()]);
    let files = sync(|| bundle(env, &cordelia));
    assert!(disclosed_to(&files).is_empty());
    // Cordelia's bundle shows her suppression entry (without the keyed hash) and its evidence.
    let rows: Vec<Value> =
        serde_json::from_str(&files["data/marketing_suppressions.json"]).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["kind"], "email");
    assert_eq!(rows[0]["evidence"], "replied 'no further contact' on 3 Dec");
    assert!(rows[0].get("identifier_idx").is_none());
    let batch = sync(|| audit::list(&core.db, 0, 100_000, None).unwrap())
        .into_iter()
        .rfind(|e| e.action == "marketing.export")
        .unwrap();
    assert_eq!(batch.recipient.as_deref(), Some("mailchimp"));
    assert_eq!(batch.detail["exported"], 3);
    // Another declared recipient is named in the disclosures; an undeclared one is refused.
    let (s, _, _) = export_csv(
        &server,
        &staff,
        PROVIDER_TENANT,
        json!({"recipient": "crm"}),
    )
    .await;
    assert_eq!(s, 200);
    let before = count(env, "SELECT COUNT(*) FROM audit_log", &[]);
    for (body, field) in [
        (json!({"recipient": "credit_agency"}), Some("recipient")),
        (json!({"recipient": 5}), Some("recipient")),
        (json!({"surprise": 1}), Some("surprise")),
    ] {
        let (s, text, _) = export_csv(&server, &staff, PROVIDER_TENANT, body.clone()).await;
        assert_eq!(s, 400, "{body}: {text}");
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["field"].as_str(), field, "{text}");
    }
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM audit_log", &[]),
        before,
        "refused exports record nothing"
    );
    // Roles: a customer tenant's operator sees no provider list; admins and users may not export.
    let t_op = server.login(&t.operator.username).await;
    let (s, _, _) = export_csv(&server, &t_op, PROVIDER_TENANT, json!({})).await;
    assert_eq!(s, 404);
    let t_admin = server.login(&t.admin.username).await;
    let (s, _, _) = export_csv(&server, &t_admin, &t.tenant.id, json!({})).await;
    assert_eq!(s, 403);
    let (s, text, _) = export_csv(&server, &t_op, &t.tenant.id, json!({})).await;
    assert_eq!(s, 200, "its own tenant's (empty) list");
    assert_eq!(parse_csv(&text).1.len(), 0);

    // "No further contact" for a bare address (provider staff only): Agatha's.
    let (s, body) = server
        .call(
            "POST",
            "/api/v1/marketing/suppressions",
            Some(&t_op),
            Some(json!({"email": "agatha@mkt-probe.test", "channel": "email"})),
        )
        .await;
    assert_eq!(s, 403, "{body}");
    let (s, sup) = server
        .call(
            "POST",
            "/api/v1/marketing/suppressions",
            Some(&staff),
            Some(json!({"email": " Agatha@MKT-probe.test ", "channel": "email", "evidence": "email of 4 Dec"})),
        )
        .await;
    assert_eq!(s, 201, "{sup}");
    assert_eq!(sup["consents_withdrawn"], 1);
    // An address Steward holds nothing about is suppressed all the same.
    let (s, stranger) = server
        .call(
            "POST",
            "/api/v1/marketing/suppressions",
            Some(&staff),
            Some(json!({"email": "gideon@mkt-probe.test", "phone": "07700 900999", "channel": "letter", "evidence": "letter"})),
        )
        .await;
    assert_eq!(s, 201, "{stranger}");
    assert_eq!(stranger["entries"].as_array().unwrap().len(), 2);
    assert_eq!(stranger["evidence_kept"], false, "no key to seal it under");
    let entries = sync(|| {
        marketing::check(&core, &Actor::cli(), Some("gideon@mkt-probe.test"), None).unwrap()
    });
    assert_eq!(entries.len(), 1);
    assert!(
        sync(
            || marketing::check(&core, &Actor::cli(), Some("nobody@mkt-probe.test"), None).unwrap()
        )
        .is_empty()
    );

    // Agatha is erased. Her suppression entry stays, without her.
    let agatha_idx = email_idx(&core, "agatha@mkt-probe.test");
    sync(|| erase_subject(env, &agatha));
    let left = |idx: &[u8]| {
        sync(|| {
            core.db
                .read(|c| {
                    c.query(
                        "SELECT subject_id, evidence_enc FROM marketing_suppressions WHERE identifier_idx = $1",
                        params![idx],
                    )
                })
                .unwrap()
        })
    };
    let rows = left(&agatha_idx);
    assert_eq!(rows.len(), 1, "the suppression survives erasure");
    assert_eq!(rows[0].opt_text(0).unwrap(), None, "pseudonymised");
    assert_eq!(rows[0].opt_bytes(1).unwrap(), None, "evidence cleared");
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM subjects WHERE id = $1",
            params![agatha.as_str()]
        ),
        0
    );
    // She writes again months later and ticks the box: a new contact with
    // consent in force, and still left out of every export.
    let (s, _) = call(
        &web,
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(form("Agatha Loveday", "agatha@mkt-probe.test", true)),
    )
    .await;
    assert_eq!(s, 202);
    let agatha2 = id("agatha@mkt-probe.test");
    assert_ne!(agatha2, agatha);
    let (states, _) = sync(|| consent::overview(&core, &Actor::cli(), &agatha2).unwrap());
    assert!(
        states
            .iter()
            .any(|c| c.category == "contact_details" && c.purpose == "marketing" && c.granted)
    );
    let (s, text, headers) = export_csv(&server, &staff, PROVIDER_TENANT, json!({})).await;
    assert_eq!(s, 200);
    let emails: Vec<String> = parse_csv(&text)
        .1
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(
        !emails.contains(&"agatha@mkt-probe.test".to_owned()),
        "{emails:?}"
    );
    assert_eq!(emails.len(), 2, "Eve and Zoë: {emails:?}");
    assert_eq!(headers["x-steward-left-out-suppressed"], "1");
    assert_eq!(disclosed(&agatha2), 0);

    // Resuming contact is staff acting on the person's own request: the suppression
    // of their email is lifted and their consent recorded with the evidence.
    let r = sync(|| {
        marketing::resume(
            &core,
            &Actor::cli(),
            &cordelia,
            Channel::Letter,
            "signed letter of 9 Dec asking to hear from us",
        )
        .unwrap()
    });
    assert_eq!(r.lifted, 1);
    let (_, text, _) = export_csv(&server, &staff, PROVIDER_TENANT, json!({})).await;
    let emails: Vec<String> = parse_csv(&text)
        .1
        .into_iter()
        .map(|r| r[0].clone())
        .collect();
    assert!(
        emails.contains(&"cordelia@mkt-probe.test".to_owned()),
        "{emails:?}"
    );
    assert!(matches!(
        marketing::resume(&core, &Actor::cli(), &cordelia, Channel::Letter, "  "),
        Err(steward::Error::Invalid { .. })
    ));

    // A user asks for no further contact in the app (channel app by default);
    // another tenant's staff cannot act for them.
    let me = server.login(&t.subject.username).await;
    let path = format!(
        "/api/v1/subjects/{}/no-further-contact",
        t.subject.subject_id
    );
    let other = sync(|| seed_tenant(&core, "crm-mkt-other"));
    let other_op = server.login(&other.operator.username).await;
    let (s, _) = server
        .call(
            "POST",
            &path,
            Some(&other_op),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = server
        .call(
            "POST",
            &path,
            Some(&t_admin),
            Some(json!({"channel": "email"})),
        )
        .await;
    assert_eq!(
        s, 403,
        "the employer cannot object on the employee's behalf"
    );
    let (s, body) = server.call("POST", &path, Some(&me), Some(json!({}))).await;
    assert_eq!(s, 200, "{body}");
    let found = sync(|| {
        marketing::check(
            &core,
            &Actor::cli(),
            Some(&format!("{}@example.test", t.subject.username)),
            None,
        )
        .unwrap()
    });
    assert_eq!(found.len(), 1);
    let suppress_entry = sync(|| audit::for_subject(&core.db, &t.subject.subject_id).unwrap())
        .into_iter()
        .find(|e| e.action == "marketing.suppress")
        .unwrap();
    assert_eq!(suppress_entry.detail["channel"], "app");

    // Retention: a person whose data expires is erased whole; their suppression stays.
    let six_years_ago = steward::clock::now() - 6 * 366 * 86_400 - 86_400;
    let zoe_idx = email_idx(&core, "zoe@mkt-probe.test");
    sync(|| {
        marketing::no_further_contact(
            &core,
            &Actor::cli(),
            &zoe,
            &marketing::NoFurtherContact {
                channel: Some(Channel::Email),
                evidence: None,
            },
        )
        .unwrap();
        core.db
            .write(|c: &mut dyn steward_store::Conn| {
                c.execute(
                    "UPDATE subjects SET last_engagement_at = $1 WHERE id = $2",
                    params![six_years_ago, zoe.as_str()],
                )
            })
            .unwrap();
        let report = steward::retention::run(&core, steward::clock::now()).unwrap();
        assert!(
            report
                .items
                .iter()
                .any(|i| i.subject_id == zoe && i.whole_subject),
            "{:?}",
            report.items
        );
    });
    let rows = left(&zoe_idx);
    assert_eq!(rows.len(), 1, "suppression survives retention");
    assert_eq!(rows[0].opt_text(0).unwrap(), None);
    assert!(sync(|| core.keys.subject_key(&zoe).unwrap()).is_none());
    assert!(sync(|| audit::verify(&core.db, &core.keys).unwrap()).ok);
}

#[tokio::test(flavor = "multi_thread")]
async fn marketing_on_sqlite() {
    let env = Env::sqlite();
    marketing_scenario(&env, "127.72.0.1").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn marketing_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    marketing_scenario(&env, "127.72.0.2").await;
    sync(move || drop(env));
}

// ---------------------------------------------------------------------------
// Credit checks

async fn credit_scenario(env: &Env) {
    let core = env.core.clone();
    let server = Server::start(core.clone()).await;
    let (op, dpo, t) = sync(|| {
        (
            provider_staff(&core, "crm-credit-staff-op", Role::Operator),
            provider_staff(&core, "crm-credit-staff-dpo", Role::Dpo),
            seed_tenant(&core, "crm-credit"),
        )
    });
    let staff = server.login(&op.username).await;
    let (s, rec) = server
        .call(
            "POST",
            "/api/v1/tenants/provider/enquiries",
            Some(&staff),
            Some(json!({"channel": "phone", "name": "Horatio Blackwood", "email": "horatio@credit-probe.test",
                        "message": "Wants a 36-month contract."})),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let subject = rec["subject_id"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/subjects/{subject}/credit-checks");
    let check = json!({
        "name": "Horatio Blackwood",
        "postal_address": "7 Quarry Hill\nTamworth B78 2AA",
        "previous_address": "1 Old Road, Lichfield",
        "date_of_birth": "1979-04-23",
    });
    let stored = || {
        count(
            env,
            "SELECT COUNT(*) FROM credit_checks WHERE subject_id = $1",
            params![subject.as_str()],
        )
    };

    // Without permission: refused, nothing stored, the attempt audited.
    let (s, body) = server
        .call("POST", &path, Some(&staff), Some(check.clone()))
        .await;
    assert_eq!(s, 403, "{body}");
    assert_eq!(body["error"]["code"], "consent_required");
    assert_eq!(stored(), 0);
    let refused = sync(|| audit::for_subject(&core.db, &subject).unwrap())
        .into_iter()
        .filter(|e| {
            e.action == "process.refused" && e.recipient.as_deref() == Some("credit_agency")
        })
        .count();
    assert_eq!(refused, 1);

    // With one permission: allowed once, disclosed to the agency.
    let (s, _) = server
        .call(
            "POST",
            &format!("/api/v1/subjects/{subject}/consents"),
            Some(&staff),
            Some(
                json!({"category": "credit_checks", "purpose": "credit_check", "action": "grant",
                        "channel": "phone", "evidence": "recorded call 11:02"}),
            ),
        )
        .await;
    assert_eq!(s, 201);
    let (s, made) = server
        .call("POST", &path, Some(&staff), Some(check.clone()))
        .await;
    assert_eq!(s, 201, "{made}");
    assert_eq!(made["agency"], "credit_agency");
    assert_eq!(made["sent"]["date_of_birth"], "1979-04-23");
    assert_eq!(
        made["sent"]["postal_address"],
        "7 Quarry Hill\nTamworth B78 2AA"
    );
    assert!(made["result"].is_null());
    assert!(made["grant_id"].as_str().is_some());
    let check_id = made["id"].as_str().unwrap().to_owned();
    let entries = sync(|| audit::for_subject(&core.db, &subject).unwrap());
    assert_eq!(
        entries
            .iter()
            .filter(|e| e.action == "disclose" && e.recipient.as_deref() == Some("credit_agency"))
            .count(),
        1
    );
    assert!(entries.iter().any(|e| e.action == "consent.consume"));
    // A second check without a new permission: refused again.
    let (s, body) = server
        .call("POST", &path, Some(&staff), Some(check.clone()))
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "consent_required");
    assert_eq!(stored(), 1);

    // The agency's answer, once.
    let result = json!({"reference": "CRA-2026-118822", "decision": "refer", "score": 612,
                        "notes": "Thin file; ask for proof of address."});
    let rpath = format!("/api/v1/credit-checks/{check_id}/result");
    for (body, field) in [
        (
            json!({"reference": "x", "decision": "accept", "score": 10_000}),
            "score",
        ),
        (
            json!({"reference": "x", "decision": "accept", "score": -1}),
            "score",
        ),
        (json!({"reference": " ", "decision": "accept"}), "reference"),
        (
            json!({"reference": "x".repeat(101), "decision": "accept"}),
            "reference",
        ),
        (json!({"reference": "x", "decision": "maybe"}), "decision"),
        (
            json!({"reference": "x", "decision": "accept", "notes": "n".repeat(2001)}),
            "notes",
        ),
    ] {
        let (s, b) = server
            .call("POST", &rpath, Some(&staff), Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(b["error"]["field"], field, "{b}");
    }
    let (s, done) = server
        .call("POST", &rpath, Some(&staff), Some(result.clone()))
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["result"]["decision"], "refer");
    assert_eq!(done["result"]["score"], 612);
    assert_eq!(done["result"]["reference"], "CRA-2026-118822");
    let (s, _) = server
        .call("POST", &rpath, Some(&staff), Some(result.clone()))
        .await;
    assert_eq!(s, 409);
    // Reading: staff (audited) and the list; a customer tenant's staff see nothing.
    let dpo_token = server.login(&dpo.username).await;
    let (s, one) = server
        .call(
            "GET",
            &format!("/api/v1/credit-checks/{check_id}"),
            Some(&dpo_token),
            None,
        )
        .await;
    assert_eq!(s, 200);
    assert_eq!(
        one["result"]["notes"],
        "Thin file; ask for proof of address."
    );
    let (s, list) = server.call("GET", &path, Some(&staff), None).await;
    assert_eq!(s, 200);
    assert_eq!(list.as_array().unwrap().len(), 1);
    let t_op = server.login(&t.operator.username).await;
    for p in [format!("/api/v1/credit-checks/{check_id}"), path.clone()] {
        let (s, _) = server.call("GET", &p, Some(&t_op), None).await;
        assert_eq!(s, 404, "{p}");
    }
    let (s, _) = server
        .call("POST", &path, Some(&t_op), Some(check.clone()))
        .await;
    assert_eq!(s, 404);
    // The disclosure is in the subject's access bundle.
    let files = sync(|| bundle(env, &subject));
    assert_eq!(disclosed_to(&files), vec!["credit_agency".to_owned()]);
    let rows: Vec<Value> = serde_json::from_str(&files["data/credit_checks.json"]).unwrap();
    assert_eq!(rows.len(), 1);
    // What was sent, as the structured object it was.
    assert!(rows[0]["sent"].is_object(), "{}", rows[0]);
    assert!(rows[0]["sent"].to_string().contains("Quarry Hill"));
    assert_eq!(rows[0]["decision"], "refer");

    // A permission withdrawn before use: refused. Withdrawal deletes the stored checks.
    sync(|| {
        consent::record(&core, &Actor::cli(), credit_grant(&subject, Action::Grant)).unwrap();
        consent::record(
            &core,
            &Actor::cli(),
            credit_grant(&subject, Action::Withdraw),
        )
        .unwrap();
    });
    let (s, body) = server
        .call("POST", &path, Some(&staff), Some(check.clone()))
        .await;
    assert_eq!(s, 403);
    assert_eq!(body["error"]["code"], "consent_required");
    assert_eq!(stored(), 0, "withdrawal deleted what the consent allowed");
    let purged = sync(|| audit::for_subject(&core.db, &subject).unwrap())
        .into_iter()
        .find(|e| e.action == "consent.purge" && e.category.as_deref() == Some("credit_checks"))
        .unwrap();
    assert_eq!(purged.detail["deleted"]["credit_checks"], 1);
    let (s, _) = server
        .call(
            "GET",
            &format!("/api/v1/credit-checks/{check_id}"),
            Some(&staff),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // The disclosure itself stays on record (the audit log), so the bundle still
    // names the agency.
    let files = sync(|| bundle(env, &subject));
    assert_eq!(disclosed_to(&files), vec!["credit_agency".to_owned()]);

    // Agencies: only credit agencies the policy declares for the category.
    sync(|| consent::record(&core, &Actor::cli(), credit_grant(&subject, Action::Grant)).unwrap());
    for agency in ["mailchimp", "hosting", "no_such_agency"] {
        let mut b = check.clone();
        b["agency"] = json!(agency);
        let (s, body) = server.call("POST", &path, Some(&staff), Some(b)).await;
        assert_eq!(s, 400, "{agency}: {body}");
        assert_eq!(body["error"]["field"], "agency");
    }
    // Who may: not the employer, not the person; the grant is still there for staff.
    let admin = server.login(&t.admin.username).await;
    let (s, _) = server
        .call("POST", &path, Some(&admin), Some(check.clone()))
        .await;
    assert_eq!(s, 403);
    let mut b = check.clone();
    b["agency"] = json!("credit_agency");
    let (s, _) = server.call("POST", &path, Some(&dpo_token), Some(b)).await;
    assert_eq!(s, 201);
    // A user reads their own checks; their employer may not.
    let user_path = format!("/api/v1/subjects/{}/credit-checks", t.subject.subject_id);
    let me = server.login(&t.subject.username).await;
    let (s, mine) = server.call("GET", &user_path, Some(&me), None).await;
    assert_eq!(s, 200);
    assert_eq!(mine, json!([]));
    let (s, _) = server.call("GET", &user_path, Some(&admin), None).await;
    assert_eq!(s, 403);
}

#[tokio::test(flavor = "multi_thread")]
async fn credit_checks_on_sqlite() {
    let env = Env::sqlite();
    credit_scenario(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn credit_checks_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    credit_scenario(&env).await;
    sync(move || drop(env));
}

// ---------------------------------------------------------------------------
// Malformed input and the rate limit

/// Every row count, to show refused input stored nothing.
fn row_counts(env: &Env) -> BTreeMap<String, i64> {
    sync(|| {
        env.core
            .db
            .table_names()
            .unwrap()
            .into_iter()
            .map(|t| {
                let n = env
                    .core
                    .db
                    .read(|c| c.query_opt(&format!("SELECT COUNT(*) FROM {t}"), &[]))
                    .unwrap()
                    .unwrap()
                    .i64(0)
                    .unwrap();
                (t, n)
            })
            .collect()
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_input_is_refused_and_stores_nothing() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let server = Server::start(core.clone()).await;
    let op = sync(|| provider_staff(&core, "crm-bad-op", Role::Operator));
    let staff = server.login(&op.username).await;
    // A contact with a credit permission, for the credit routes.
    let (s, rec) = server
        .call(
            "POST",
            "/api/v1/tenants/provider/enquiries",
            Some(&staff),
            Some(json!({"channel": "email", "name": "Imogen Fairfax", "email": "imogen@bad-probe.test",
                        "message": "Hello"})),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let subject = rec["subject_id"].as_str().unwrap().to_owned();
    sync(|| consent::record(&core, &Actor::cli(), credit_grant(&subject, Action::Grant)).unwrap());
    let before = row_counts(&env);

    // The web form, from addresses of its own (the limit is per address).
    let valid = web_enquiry(
        "Jasper Nightingale",
        Some("jasper@bad-probe.test"),
        &["07700 900123"],
        true,
    );
    let with = |k: &str, v: Value| {
        let mut b = valid.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = valid.clone();
        b.as_object_mut().unwrap().remove(k);
        b
    };
    let cases: Vec<(Value, Option<&str>, &str)> = vec![
        (with("email", json!("not-an-email")), Some("email"), "@"),
        (
            with("email", json!("a@b@bad-probe.test")),
            Some("email"),
            "@",
        ),
        (
            with(
                "email",
                json!(format!("{}@bad-probe.test", "a".repeat(300))),
            ),
            Some("email"),
            "too long",
        ),
        (with("email", json!(5)), Some("email"), "invalid type"),
        (
            with("phones", json!(["call me maybe"])),
            Some("phones[0]"),
            "digits",
        ),
        (
            with("phones", json!(["07700 900123", "+44 12"])),
            Some("phones[1]"),
            "not valid",
        ),
        (
            with(
                "phones",
                json!([
                    "01632 960001",
                    "01632 960002",
                    "01632 960003",
                    "01632 960004"
                ]),
            ),
            Some("phones"),
            "at most 3",
        ),
        (
            with("phones", json!("07700 900123")),
            Some("phones"),
            "invalid type",
        ),
        (
            with("phones", json!([7700900123_i64])),
            Some("phones[0]"),
            "invalid type",
        ),
        (with("name", json!("")), Some("name"), "empty"),
        (with("name", json!("   ")), Some("name"), "empty"),
        (with("name", json!("n".repeat(201))), Some("name"), "200"),
        (
            with("name", json!("Jasper\nNightingale")),
            Some("name"),
            "control",
        ),
        (with("name", json!(null)), Some("name"), "invalid type"),
        (without("name"), Some("name"), "missing field"),
        (without("message"), Some("message"), "missing field"),
        (
            with("message", json!("m".repeat(5001))),
            Some("message"),
            "5000",
        ),
        (
            with("message", json!("bell\u{7}")),
            Some("message"),
            "control",
        ),
        (with("topic", json!("t".repeat(201))), Some("topic"), "200"),
        (
            with("postal_address", json!("p".repeat(501))),
            Some("postal_address"),
            "500",
        ),
        (
            with("marketing_consent", json!("yes")),
            Some("marketing_consent"),
            "invalid type",
        ),
        (
            with("surprise", json!(true)),
            Some("surprise"),
            "unknown field",
        ),
        (
            {
                let mut b = without("email");
                b["phones"] = json!([]);
                b
            },
            Some("email"),
            "phone number",
        ),
        (json!("an enquiry"), None, "invalid type"),
        (json!({}), Some("name"), "missing field"),
    ];
    let web = client_from("127.73.0.1");
    for (i, (body, field, needle)) in cases.iter().enumerate() {
        // Fresh addresses keep each batch under the limit.
        let client = if i < 15 {
            web.clone()
        } else {
            client_from("127.73.0.2")
        };
        let (s, b) = call(
            &client,
            &server.base,
            "POST",
            "/api/v1/web/enquiries",
            None,
            Some(body.clone()),
        )
        .await;
        assert_eq!(s, 400, "{body}: {b}");
        assert_eq!(b["error"]["code"], "invalid");
        assert_eq!(b["error"]["field"].as_str(), *field, "{body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap();
        assert!(
            msg.contains(needle),
            "{body}: {msg:?} should name {needle:?}"
        );
        assert!(
            !msg.contains("bad-probe"),
            "the message does not echo the address: {msg}"
        );
    }
    let other = client_from("127.73.0.3");
    let resp = other
        .post(server.url("/api/v1/web/enquiries"))
        .header("content-type", "text/plain")
        .body(serde_json::to_vec(&valid).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    for (body, what) in [
        (b"{\"name\": \"x\", ".to_vec(), "truncated"),
        (b"\xff\xfe".to_vec(), "not UTF-8"),
        (Vec::new(), "empty"),
    ] {
        let resp = other
            .post(server.url("/api/v1/web/enquiries"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 400, "{what}");
    }
    let mut big = with("message", json!("m".repeat(40_000)));
    big["name"] = json!("Big");
    let resp = client_from("127.73.0.4")
        .post(server.url("/api/v1/web/enquiries"))
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 413);
    let b: Value = resp.json().await.unwrap();
    assert_eq!(b["error"]["code"], "payload_too_large");
    assert!(b["error"]["message"].as_str().unwrap().contains("32768"));

    // Staff routes: domain-invalid values, each naming its field.
    let staff_enquiry = json!({"channel": "phone", "name": "Kit Marlowe", "email": "kit@bad-probe.test",
                               "message": "Hello"});
    let swith = |k: &str, v: Value| {
        let mut b = staff_enquiry.clone();
        b[k] = v;
        b
    };
    let credit = json!({"name": "Imogen Fairfax", "postal_address": "1 Bad Lane"});
    let cwith = |k: &str, v: Value| {
        let mut b = credit.clone();
        b[k] = v;
        b
    };
    let future = steward::clock::now() + 86_400;
    let staff_cases: Vec<(String, Value, &str)> = vec![
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("channel", json!("web")),
            "channel",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("channel", json!("fax")),
            "channel",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("received_at", json!(future)),
            "received_at",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("received_at", json!(-5)),
            "received_at",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("received_at", json!("yesterday")),
            "received_at",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("email", json!("kit at bad-probe")),
            "email",
        ),
        (
            "/api/v1/tenants/provider/enquiries".into(),
            swith("unknown", json!(1)),
            "unknown",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("date_of_birth", json!("1979-02-30")),
            "date_of_birth",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("date_of_birth", json!("23/04/1979")),
            "date_of_birth",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("date_of_birth", json!(today())),
            "date_of_birth",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("date_of_birth", json!("1850-01-01")),
            "date_of_birth",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("name", json!("")),
            "name",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("postal_address", json!("a".repeat(501))),
            "postal_address",
        ),
        (
            format!("/api/v1/subjects/{subject}/credit-checks"),
            cwith("agency", json!(["credit_agency"])),
            "agency",
        ),
        (
            "/api/v1/marketing/suppressions".into(),
            json!({"channel": "email"}),
            "email",
        ),
        (
            "/api/v1/marketing/suppressions".into(),
            json!({"email": "nope", "channel": "email"}),
            "email",
        ),
        (
            "/api/v1/marketing/suppressions".into(),
            json!({"phone": "12", "channel": "email"}),
            "phone",
        ),
        (
            "/api/v1/marketing/suppressions".into(),
            json!({"email": "x@bad-probe.test", "channel": "fax"}),
            "channel",
        ),
        (
            "/api/v1/marketing/suppressions".into(),
            json!({"email": "x@bad-probe.test", "channel": "email", "evidence": "e".repeat(2001)}),
            "evidence",
        ),
        (
            format!("/api/v1/subjects/{subject}/no-further-contact"),
            json!({"channel": "pigeon"}),
            "channel",
        ),
        (
            format!("/api/v1/subjects/{subject}/no-further-contact"),
            json!({"channel": "email", "evidence": 5}),
            "evidence",
        ),
    ];
    for (path, body, field) in &staff_cases {
        let (s, b) = server
            .call("POST", path, Some(&staff), Some(body.clone()))
            .await;
        assert_eq!(s, 400, "{path} {body}: {b}");
        assert_eq!(
            b["error"]["field"].as_str(),
            Some(*field),
            "{path} {body}: {b}"
        );
    }
    assert_eq!(row_counts(&env), before, "refused input changed nothing");

    // The rate limit: 20 submissions per address per 10 minutes, then 429 with Retry-After.
    let noisy = client_from("127.73.0.9");
    for i in 0..20 {
        let (s, _) = call(
            &noisy,
            &server.base,
            "POST",
            "/api/v1/web/enquiries",
            None,
            Some(json!({"name": 1})),
        )
        .await;
        assert_eq!(s, 400, "request {i}");
    }
    let resp = noisy
        .post(server.url("/api/v1/web/enquiries"))
        .json(&valid)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=600).contains(&retry), "{retry}");
    assert_eq!(
        row_counts(&env),
        before,
        "the refused submission stored nothing"
    );
    let (s, _) = call(
        &client_from("127.73.0.10"),
        &server.base,
        "POST",
        "/api/v1/web/enquiries",
        None,
        Some(valid.clone()),
    )
    .await;
    assert_eq!(s, 202, "another address is not limited");
}

// ---------------------------------------------------------------------------
// The command line, through the real binary, and the plain-text scan

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn steward(data: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .unwrap()
}

fn ok(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

#[test]
fn command_line_export_and_suppression_and_nothing_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = steward::config::Settings {
        data_dir: data.clone(),
        ..steward::config::Settings::default()
    };
    let email = "wilberforce.gruntle@cli-probe.test";
    let name = "Wilberforce Gruntle-Peabody";
    let phone = "+447700900642";
    let message = "Zanzibar-flavoured enquiry about SIP trunks";
    let address = "Flat 9, Umbrage Court";
    let subject;
    {
        let (core, _) = Steward::open(settings.clone()).unwrap();
        let cli = Actor::cli();
        let e = steward::crm::enquiries::record(
            &core,
            &cli,
            PROVIDER_TENANT,
            &serde_json::from_value(json!({
                "channel": "phone", "name": name, "email": email, "phones": ["07700 900642"],
                "postal_address": address, "message": message, "marketing_consent": true,
            }))
            .unwrap(),
        )
        .unwrap();
        subject = e.subject_id.clone();
        steward::crm::enquiries::submit_web(
            &core,
            &serde_json::from_value(
                json!({"name": "Other Person", "email": "other@cli-probe.test",
                                           "message": "hi", "marketing_consent": true}),
            )
            .unwrap(),
        )
        .unwrap();
        consent::record(&core, &cli, credit_grant(&subject, Action::Grant)).unwrap();
        steward::crm::credit::request(
            &core,
            &cli,
            &subject,
            &serde_json::from_value(
                json!({"name": name, "postal_address": address, "date_of_birth": "1961-07-04"}),
            )
            .unwrap(),
        )
        .unwrap();
    }

    // Export to a file: both people, the CSV parses back.
    let out = dir.path().join("list.csv");
    let v = ok(&steward(
        &data,
        &[
            "marketing",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(v["exported"], 2);
    assert_eq!(v["recipient"], "mailchimp");
    let text = std::fs::read_to_string(&out).unwrap();
    let (header, rows) = parse_csv(&text);
    assert_eq!(header, CSV_HEADER.to_vec());
    let emails: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert!(
        emails.contains(&email) && emails.contains(&"other@cli-probe.test"),
        "{emails:?}"
    );
    assert!(!dir.path().join("list.partial").exists());
    // To standard output, with the summary on stderr.
    let o = steward(&data, &["marketing", "export", "--recipient", "crm"]);
    assert!(o.status.success());
    let (_, rows) = parse_csv(&String::from_utf8(o.stdout.clone()).unwrap());
    assert_eq!(rows.len(), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("exported 2 addresses for crm"));

    // No further contact by address; then the export leaves them out.
    let v = ok(&steward(
        &data,
        &[
            "marketing",
            "suppress",
            "--email",
            &email.to_uppercase(),
            "--channel",
            "email",
            "--json",
        ],
    ));
    assert_eq!(v["consents_withdrawn"], 1);
    let v = ok(&steward(
        &data,
        &["marketing", "check", "--email", email, "--json"],
    ));
    assert_eq!(v["suppressed"], true);
    let v = ok(&steward(
        &data,
        &["marketing", "check", "--phone", "07700 900001", "--json"],
    ));
    assert_eq!(v["suppressed"], false);
    let v = ok(&steward(
        &data,
        &[
            "marketing",
            "export",
            "--out",
            out.to_str().unwrap(),
            "--json",
        ],
    ));
    assert_eq!(v["exported"], 1);
    assert!(!std::fs::read_to_string(&out).unwrap().contains(email));
    // By subject: every address of theirs (the phone too).
    let v = ok(&steward(
        &data,
        &[
            "marketing",
            "suppress",
            "--subject",
            &subject,
            "--channel",
            "letter",
            "--json",
        ],
    ));
    let kinds: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, vec!["email", "phone"]);
    let v = ok(&steward(
        &data,
        &["marketing", "check", "--phone", "07700 900642", "--json"],
    ));
    assert_eq!(v["suppressed"], true);

    // Bad input: exit 2 with the field named; unknown tenant: exit 3; nothing written.
    for (args, code, needle) in [
        (
            vec!["marketing", "suppress", "--channel", "email"],
            2,
            "error: email:",
        ),
        (
            vec![
                "marketing",
                "suppress",
                "--email",
                "x@cli-probe.test",
                "--channel",
                "fax",
            ],
            2,
            "error: channel:",
        ),
        (
            vec![
                "marketing",
                "suppress",
                "--email",
                "not an email",
                "--channel",
                "email",
            ],
            2,
            "error: email:",
        ),
        (
            vec!["marketing", "export", "--recipient", "credit_agency"],
            2,
            "error: recipient:",
        ),
        (
            vec!["marketing", "export", "--tenant", "no-such-tenant"],
            3,
            "tenant not found",
        ),
        (vec!["marketing", "check"], 2, "error: email:"),
        (
            vec![
                "marketing",
                "resume",
                "--subject",
                subject.as_str(),
                "--channel",
                "letter",
                "--evidence",
                " ",
            ],
            2,
            "error: evidence:",
        ),
    ] {
        let o = steward(&data, &args);
        assert_eq!(
            o.status.code(),
            Some(code),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(needle),
            "{args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            o.stdout.is_empty() || !String::from_utf8_lossy(&o.stdout).contains('@'),
            "{args:?}"
        );
    }
    let bad_out = dir.path().join("no-such-dir").join("x.csv");
    let o = steward(
        &data,
        &["marketing", "export", "--out", bad_out.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("error: out:"));

    // Nothing of theirs in clear anywhere in the data directory (the exports were
    // written outside it).
    for needle in [
        email,
        "wilberforce",
        name,
        "Gruntle",
        phone,
        "7700900642",
        message,
        "Zanzibar",
        address,
        "Umbrage",
        "1961-07-04",
    ] {
        let hits = common::files_containing(&data, needle);
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
    // The scan can fail: the needle is findable when written in clear.
    std::fs::write(data.join("probe.txt"), message).unwrap();
    assert_eq!(common::files_containing(&data, message).len(), 1);
    // The audit chain verifies after everything the CLI did.
    let v = ok(&steward(&data, &["audit", "verify", "--json"]));
    assert_eq!(v["ok"], true);
}
