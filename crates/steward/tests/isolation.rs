//! Tenant isolation, per endpoint, enumerated: every route of the server's own
//! OpenAPI document is called by every role of tenant A against tenant B's
//! objects, and must yield nothing of B. A route added later is covered without
//! touching this file, unless it has a path parameter or a request body this file
//! does not know yet, in which case the test fails and says what to add.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Env, PASSWORD, Seeded, Server, provider_staff, seed_tenant};
use serde_json::{Value, json};
use steward::access::{Actor, Role};
use steward::accounts::Account;

/// HTTP methods an OpenAPI path item can hold operations under.
const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "patch", "head", "options", "trace",
];

/// Operations that need no token, with the reason. Any other operation the
/// document declares without `security` fails the test.
const PUBLIC: [(&str, &str, &str); 5] = [
    (
        "POST",
        "/api/v1/auth/login",
        "logging in is by credentials, not by tenant",
    ),
    (
        "GET",
        "/api/v1/policy",
        "the privacy notice as data: no tenant data",
    ),
    (
        "POST",
        "/api/v1/web/consent",
        "the website's cookie banner: the visitor's random cookie id names the visitor (in \
         the provider's tenant); the answer echoes the choice and counts, no tenant data",
    ),
    (
        "POST",
        "/api/v1/web/visits",
        "the website's visit collector: named by the visitor's cookie id; the answer is only \
         whether the visit was stored",
    ),
    (
        "POST",
        "/api/v1/web/enquiries",
        "the website's enquiry form: always the provider's tenant; the answer is the same \
         whether or not the person was known (received, and a new reference)",
    ),
];

const LOGIN: &str = "/api/v1/auth/login";
const LOGOUT: &str = "/api/v1/auth/logout";

/// One operation of the OpenAPI document.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Op {
    method: String,
    path: String,
    /// Declares `security` (needs a bearer token).
    secured: bool,
}

impl Op {
    fn key(&self) -> (String, String) {
        (self.method.clone(), self.path.clone())
    }
}

/// What staff calling a request naming B must get, proving it points at B's
/// real objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StaffExpect {
    Success,
    /// A specific refusal that proves the object was found and checked (for
    /// example 409 for an action the request's state does not allow yet).
    Status(u16),
    /// Creating a tenant with B's customer number collides with B.
    Conflict,
    /// A refusal whose message only a found object can give (a bundle not
    /// produced yet, where another tenant's request is simply "not found").
    Message(u16, &'static str),
    /// Only the object's owner may use it, staff included (B's device
    /// contacts): the baseline is B's own user, who must succeed.
    Owner,
    /// Only the members of B's conversation reach it (provider staff are not
    /// members): the baseline is B's subject, a member, who must succeed.
    Member,
    /// As `Member`, but B's subject gets this refusal, which proves the object
    /// was found and checked (a sent file cannot be deleted: 409).
    MemberStatus(u16),
    /// Only B's employer (B's tenant admin) reads B's chat: the baseline is
    /// B's admin, who must succeed.
    Employer,
}

/// A concrete request for an operation, aimed at tenant B.
#[derive(Debug, Clone)]
struct Request {
    url: String,
    body: Option<Value>,
    /// A vCard body (sent as `text/vcard` instead of `body`).
    vcard: Option<String>,
    /// The request names one of B's objects (path or body): A must get 403/404.
    names_b: bool,
    staff: StaffExpect,
}

/// Tenant B's identifiers: none may appear in any answer to A.
struct TenantB {
    seeded: Seeded,
    /// An access request about B's subject, named by `{request_id}`.
    request_id: String,
    /// A photo of B's subject, named by `{media_id}`.
    media_id: String,
    /// An enquiry recorded in B's tenant, named by `{enquiry_id}`.
    enquiry_id: String,
    /// A credit check of B's subject, named by `{check_id}`.
    check_id: String,
    /// A call of B's, named by `{call_id}`.
    call_id: String,
    /// A recording of that call, named by `{recording_id}` (its audio repeats
    /// B's tenant id, so a leaked file is found by the scan).
    recording_id: String,
    /// Another recording of it, for the DELETE route (staff delete it; the
    /// other routes still find theirs).
    spare_recording_id: String,
    /// A directory entry of B, named by `{entry_id}`, and another one that the
    /// DELETE route removes (so the other routes still find the first).
    entry_id: String,
    spare_entry_id: String,
    /// A device contact of B's subject, named by `{contact_id}`, and a spare one
    /// for DELETE.
    contact_id: String,
    spare_contact_id: String,
    /// A group conversation of B's subject (owner) and B's operator, with a
    /// message, named by `{conversation_id}`.
    conversation_id: String,
    /// A file B's subject sent in that conversation, named by `{attachment_id}`.
    attachment_id: String,
}

impl TenantB {
    fn tenant_id(&self) -> &str {
        &self.seeded.tenant.id
    }
    fn subject(&self) -> &Account {
        &self.seeded.subject
    }
    /// The account named by `{account_id}`.
    fn account(&self) -> &Account {
        &self.seeded.subject
    }

    fn needles(&self) -> Vec<String> {
        let t = &self.seeded.tenant;
        let mut n = vec![t.id.clone(), t.name.clone()];
        n.extend(t.customer_number.clone());
        for a in self.seeded.all() {
            n.push(a.id.clone());
            n.push(a.subject_id.clone());
            n.push(a.username.clone());
            n.push(format!("{}@example.test", a.username));
            n.push(format!("Person {}", a.username));
        }
        n.extend(B_PERSONAL.iter().map(|s| (*s).to_owned()));
        n.push(self.entry_id.clone());
        n.push(self.spare_entry_id.clone());
        n.push(self.contact_id.clone());
        n.push(self.spare_contact_id.clone());
        // The content of B's chat file (seed_attachment writes its name into it).
        n.push("chat-file-zulu-plan.jpg".into());
        n.into_iter().map(|s| s.to_lowercase()).collect()
    }

    /// B's identifiers found in `body`.
    fn found_in(&self, body: &Value) -> Vec<String> {
        let text = body.to_string().to_lowercase();
        self.needles()
            .into_iter()
            .filter(|n| text.contains(n.as_str()))
            .collect()
    }
}

/// Every operation in the document.
fn operations(doc: &Value) -> Vec<Op> {
    let paths = doc["paths"]
        .as_object()
        .expect("the OpenAPI document has paths");
    let mut ops = Vec::new();
    for (path, item) in paths {
        let item = item.as_object().expect("a path item is an object");
        for m in METHODS {
            if let Some(op) = item.get(m) {
                let secured = op
                    .get("security")
                    .and_then(Value::as_array)
                    .is_some_and(|s| !s.is_empty());
                ops.push(Op {
                    method: m.to_uppercase(),
                    path: path.clone(),
                    secured,
                });
            }
        }
    }
    ops.sort();
    ops
}

/// Every parameter the document declares `in: path` is a `{name}` of its path
/// template and every `{name}` is declared; the others are in the query. (A
/// query struct without `#[into_params(parameter_in = Query)]` is documented as
/// path parameters, which clients generated from the document get wrong.)
fn parameters_are_where_they_are_sent(doc: &Value) {
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            let Some(op) = item.get(m) else { continue };
            let params = op["parameters"].as_array().cloned().unwrap_or_default();
            let declared_in_path: BTreeSet<String> = params
                .iter()
                .filter(|p| p["in"] == "path")
                .map(|p| p["name"].as_str().unwrap_or_default().to_owned())
                .collect();
            let in_template: BTreeSet<String> = path
                .split('{')
                .skip(1)
                .filter_map(|s| s.split('}').next())
                .map(str::to_owned)
                .collect();
            assert_eq!(
                declared_in_path, in_template,
                "{m} {path}: the document's path parameters differ from the template's"
            );
            for p in &params {
                assert!(
                    p["in"] == "path" || p["in"] == "query",
                    "{m} {path}: parameter {p} is neither in the path nor in the query"
                );
            }
        }
    }
}

/// Substitutes path parameters with B's ids; fails for a parameter this test
/// does not know.
fn substitute(path: &str, b: &TenantB) -> (String, bool) {
    let mut out = String::new();
    let mut named = false;
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let end = rest[start..]
            .find('}')
            .map(|e| start + e)
            .unwrap_or_else(|| panic!("malformed path template {path}"));
        out.push_str(&rest[..start]);
        let param = &rest[start + 1..end];
        let value = match param {
            "tenant_id" => b.tenant_id().to_owned(),
            "subject_id" => b.subject().subject_id.clone(),
            "account_id" => b.account().id.clone(),
            "request_id" => b.request_id.clone(),
            "media_id" => b.media_id.clone(),
            "enquiry_id" => b.enquiry_id.clone(),
            "check_id" => b.check_id.clone(),
            "call_id" => b.call_id.clone(),
            "recording_id" => b.recording_id.clone(),
            "entry_id" => b.entry_id.clone(),
            "contact_id" => b.contact_id.clone(),
            "conversation_id" => b.conversation_id.clone(),
            "attachment_id" => b.attachment_id.clone(),
            // A member of B's conversation (not B's subject, who stays in it).
            "member_id" => b.seeded.operator.subject_id.clone(),
            other => panic!(
                "route {path} has path parameter {{{other}}}, which tests/isolation.rs cannot \
                 fill in: add a substitution with tenant B's matching id to `substitute`, so that \
                 tenant isolation is checked for this route"
            ),
        };
        out.push_str(&value);
        named = true;
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    (out, named)
}

/// A valid request for `op` aimed at B: path parameters, query and body.
fn request_for(op: &Op, b: &TenantB) -> Request {
    let (mut url, named_in_path) = substitute(&op.path, b);
    let mut staff = StaffExpect::Success;
    let mut names_b = named_in_path;
    let mut vcard = None;
    // DELETE removes B's spare objects, so that the other routes (staff go in
    // method order) still find the first ones.
    match (op.method.as_str(), op.path.as_str()) {
        ("DELETE", "/api/v1/tenants/{tenant_id}/directory/{entry_id}") => {
            url = url.replace(&b.entry_id, &b.spare_entry_id);
        }
        ("DELETE", "/api/v1/me/device-contacts/{contact_id}") => {
            url = url.replace(&b.contact_id, &b.spare_contact_id);
            staff = StaffExpect::Owner;
        }
        ("GET", "/api/v1/me/device-contacts/{contact_id}") => staff = StaffExpect::Owner,
        _ => {}
    }
    // Query parameters that make a request meaningful (without them staff would
    // get 400 and the baseline would prove nothing).
    match (op.method.as_str(), op.path.as_str()) {
        ("GET", "/api/v1/tenants/{tenant_id}/subjects") => {
            url.push_str(&format!("?email={}@example.test", b.subject().username));
        }
        // All entries, not a first page, so nothing escapes the scan.
        ("GET", "/api/v1/audit") => url.push_str("?limit=1000"),
        ("GET", "/api/v1/tenants/{tenant_id}/usage") => url.push_str("?month=2026-11"),
        ("GET", "/api/v1/usage-statistics/report") => {
            url.push_str("?from=2026-11-01&to=2026-11-30")
        }
        ("POST", "/api/v1/calls/{call_id}/recordings") => {
            url.push_str("?direction=inbound&duration=10")
        }
        // Staff delete B's spare recording, so the GET routes keep theirs.
        ("DELETE", "/api/v1/recordings/{recording_id}") => {
            url = url.replace(&b.recording_id, &b.spare_recording_id)
        }
        _ => {}
    }
    if op.method == "GET" && (op.path.contains("/media")) {
        staff = StaffExpect::Status(403);
    }
    if op.path.starts_with("/api/v1/chat/conversations/") {
        staff = StaffExpect::Member;
    }
    if op.path.starts_with("/api/v1/chat/attachments/") {
        staff = StaffExpect::Member;
    }
    if op.path.starts_with("/api/v1/tenants/{tenant_id}/chat/") {
        staff = StaffExpect::Employer;
    }
    let body = match (op.method.as_str(), op.path.as_str()) {
        // B's request is not verified yet (verify comes later in path order), so
        // staff hear that its bundle was not produced: proof the request was found.
        ("GET", "/api/v1/requests/{request_id}/bundle") => {
            staff = StaffExpect::Message(404, "not been produced");
            None
        }
        ("GET", _) => None,
        ("DELETE", "/api/v1/tenants/{tenant_id}/directory/{entry_id}")
        | ("DELETE", "/api/v1/me/device-contacts/{contact_id}") => None,
        // Special cases handled by the caller.
        ("POST", LOGIN) | ("POST", LOGOUT) => None,
        ("POST", "/api/v1/tenants") => {
            names_b = true;
            staff = StaffExpect::Conflict;
            Some(json!({
                "name": b.seeded.tenant.name,
                "customer_number": b.seeded.tenant.customer_number,
            }))
        }
        ("POST", "/api/v1/tenants/{tenant_id}/users") => Some(json!({
            "username": "isolation-new-user",
            "password": PASSWORD,
            "role": "subject",
            "email": "isolation-new-user@example.test",
        })),
        // A call between two numbers of B's tenant; staff's ingest links it to subjects.
        ("POST", "/api/v1/tenants/{tenant_id}/cdrs") => Some(json!({
            "caller": "+44 1632 960001",
            "callee": "+44 1632 960999",
            "start": 1_793_491_300,
            "answer": 1_793_491_305,
            "end": 1_793_491_400,
        })),
        ("POST", "/api/v1/accounts/{account_id}/disable")
        | ("POST", "/api/v1/accounts/{account_id}/enable") => None,
        ("PUT", "/api/v1/subjects/{subject_id}/extension") => Some(json!({"extension": "2001"})),
        ("POST", "/api/v1/subjects/{subject_id}/consents") => Some(json!({
            "category": "device_contacts",
            "purpose": "provision",
            "action": "withdraw",
            "channel": "phone",
            "evidence": "isolation test",
        })),
        ("POST", "/api/v1/processing") => {
            names_b = true;
            Some(json!({
                "subject_id": b.subject().subject_id,
                "category": "contact_details",
                "purpose": "administration",
            }))
        }
        ("POST", "/api/v1/requests") => {
            names_b = true;
            // An objection, so that B's access request stays the only one of its kind.
            Some(
                json!({ "kind": "objection", "channel": "letter", "subject_id": b.subject().subject_id }),
            )
        }
        // B's request is an unverified access request, and staff send these in
        // path order: complete, erase, export and rectify are refused for its
        // state or kind (409), refuse on "repetitive" is invalid (no earlier
        // request), and verify (last) succeeds. Each answer proves the request
        // was found.
        ("POST", "/api/v1/requests/{request_id}/complete") => {
            staff = StaffExpect::Status(409);
            Some(json!({}))
        }
        ("POST", "/api/v1/requests/{request_id}/erase")
        | ("POST", "/api/v1/requests/{request_id}/export") => {
            staff = StaffExpect::Status(409);
            None
        }
        ("POST", "/api/v1/requests/{request_id}/rectify") => {
            staff = StaffExpect::Status(409);
            Some(json!({ "field": "name", "value": "Changed By A" }))
        }
        ("POST", "/api/v1/requests/{request_id}/refuse") => {
            staff = StaffExpect::Status(400);
            Some(json!({ "ground": "repetitive" }))
        }
        ("POST", "/api/v1/requests/{request_id}/verify") => {
            Some(json!({ "method": "isolation test" }))
        }
        // Anonymous counters: no tenant's objects are named (A's callers lack the
        // consent, so they get 403 and nothing is stored).
        ("POST", "/api/v1/usage-statistics") => Some(json!({
            "events": [{ "feature": "dialpad", "count": 1 }],
            "app_version": "4.2.1",
            "platform": "ios",
        })),
        // Public website routes: a visitor of the provider's own website, no tenant.
        ("POST", "/api/v1/web/consent") => Some(json!({
            "visitor_id": "isolation-visitor-0000000001",
            "necessary": true,
            "analytics": true,
            "marketing": false,
        })),
        ("POST", "/api/v1/web/visits") => Some(json!({
            "visitor_id": "isolation-visitor-0000000001",
            "page": "/isolation",
        })),
        // Media is the user's own: staff of the provider are refused (403) after
        // the item (or the subject, with consent in force) was found.
        ("POST", "/api/v1/subjects/{subject_id}/media") => {
            staff = StaffExpect::Status(403);
            Some(json!({}))
        }
        ("DELETE", "/api/v1/media/{media_id}") => {
            staff = StaffExpect::Status(403);
            None
        }
        // The website's enquiry form: the provider's own contacts, no tenant.
        ("POST", "/api/v1/web/enquiries") => Some(json!({
            "name": "Isolation Visitor",
            "email": "isolation-visitor@example.test",
            "message": "isolation test",
        })),
        ("POST", "/api/v1/tenants/{tenant_id}/enquiries") => Some(json!({
            "channel": "phone",
            "name": "Isolation Caller",
            "email": "isolation-caller@example.test",
            "message": "isolation test",
        })),
        ("POST", "/api/v1/tenants/{tenant_id}/marketing/export") => Some(json!({})),
        // B's user's address on the provider's suppression list.
        ("POST", "/api/v1/marketing/suppressions") => {
            names_b = true;
            Some(json!({
                "email": format!("{}@example.test", b.subject().username),
                "channel": "email",
            }))
        }
        ("POST", "/api/v1/subjects/{subject_id}/no-further-contact") => {
            Some(json!({ "channel": "letter", "evidence": "isolation test" }))
        }
        // B's subject gave a credit-check permission for staff's baseline call.
        ("POST", "/api/v1/subjects/{subject_id}/credit-checks") => Some(json!({
            "name": "Person of B",
            "postal_address": "1 Isolation Road",
        })),
        ("POST", "/api/v1/credit-checks/{check_id}/result") => Some(json!({
            "reference": "ISO-1",
            "decision": "accept",
        })),
        // A JSON body is not audio: staff get 415, which the upload answers only
        // once it has found the call and checked the caller's role and scope.
        ("POST", "/api/v1/calls/{call_id}/recordings") => {
            staff = StaffExpect::Status(415);
            Some(json!({}))
        }
        ("DELETE", "/api/v1/recordings/{recording_id}") => None,
        // A new directory entry for B (staff add it; A must not).
        ("POST", "/api/v1/tenants/{tenant_id}/directory") => Some(json!({
            "display_name": "Isolation Entry",
            "emails": [{ "value": "isolation-entry@example.test" }],
        })),
        // B's entry rewritten with its own identifiers (so it stays linked).
        ("PUT", "/api/v1/tenants/{tenant_id}/directory/{entry_id}") => Some(json!({
            "display_name": "Zulu Directory Person (edited)",
            "emails": [{ "value": "zulu.directory@example.test" }],
        })),
        ("POST", "/api/v1/tenants/{tenant_id}/directory/import") => {
            vcard = Some(
                "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Isolation Import\r\n\
                 EMAIL;TYPE=work:isolation-import@example.test\r\nEND:VCARD\r\n"
                    .to_owned(),
            );
            None
        }
        // The caller's own device contact (A's accounts sync into their own book).
        ("POST", "/api/v1/me/device-contacts") => Some(json!({
            "formatted_name": "Isolation Friend",
            "phones": [{ "value": "+44 1632 960555" }],
        })),
        // Chat: members of B's conversation only; starting one names B's admin.
        ("POST", "/api/v1/chat/conversations") => {
            names_b = true;
            staff = StaffExpect::Member;
            Some(json!({ "kind": "direct", "members": [b.seeded.admin.subject_id] }))
        }
        ("POST", "/api/v1/chat/conversations/{conversation_id}/members") => {
            Some(json!({ "subject_id": b.seeded.dpo.subject_id }))
        }
        ("DELETE", "/api/v1/chat/conversations/{conversation_id}/members/{member_id}") => None,
        ("POST", "/api/v1/chat/conversations/{conversation_id}/messages") => {
            Some(json!({ "body": "isolation test" }))
        }
        // The body is JSON, not a file: B's member gets 415 after the member check.
        ("POST", "/api/v1/chat/conversations/{conversation_id}/attachments") => {
            staff = StaffExpect::MemberStatus(415);
            Some(json!({}))
        }
        // A sent file stays with its message: B's member gets 409.
        ("DELETE", "/api/v1/chat/attachments/{attachment_id}") => {
            staff = StaffExpect::MemberStatus(409);
            None
        }
        ("POST", "/api/v1/chat/conversations/{conversation_id}/delivered")
        | ("POST", "/api/v1/chat/conversations/{conversation_id}/read") => {
            Some(json!({ "up_to": 1 }))
        }
        (m, p) => panic!(
            "route {m} {p} has no request builder in tests/isolation.rs: add one to \
             `request_for` that builds a valid request aimed at tenant B, so that tenant \
             isolation is checked for this route"
        ),
    };
    Request {
        url,
        body,
        vcard,
        names_b,
        staff,
    }
}

/// B's personal data held outside the accounts: none may reach A.
const B_PERSONAL: [&str; 6] = [
    "Zulu Directory Person",
    "zulu.directory@example.test",
    "Zulu Spare Person",
    "Zulu Device Friend",
    "+441632960777",
    "Zulu Spare Friend",
];

/// Sends `req` (JSON or vCard body) with `token`.
async fn send(server: &Server, op: &Op, req: &Request, token: Option<&str>) -> (u16, Value) {
    match &req.vcard {
        Some(v) => {
            server
                .raw(
                    &op.method,
                    &req.url,
                    token,
                    "text/vcard",
                    v.clone().into_bytes(),
                )
                .await
        }
        None => {
            server
                .call(&op.method, &req.url, token, req.body.clone())
                .await
        }
    }
}

async fn login_with(server: &Server, username: &str, password: &str) -> (u16, Value) {
    server
        .call(
            "POST",
            LOGIN,
            None,
            Some(json!({"username": username, "password": password})),
        )
        .await
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_a_gets_nothing_of_tenant_b_on_any_route() {
    let started = std::time::Instant::now();
    let env = Env::sqlite();
    let core = env.core.clone();
    let a = seed_tenant(&core, "alpha");
    let seeded = seed_tenant(&core, "zulu");
    let request_id = steward::rights::create(
        &core,
        &steward::access::Actor::cli(),
        steward::rights::NewRequest {
            subject: steward::rights::SubjectRef::Id(seeded.subject.subject_id.clone()),
            kind: steward::rights::Kind::Access,
            channel: steward::rights::RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: Some("isolation test".into()),
        },
    )
    .unwrap()
    .id;
    let (photo, _) = tokio::task::block_in_place(|| {
        common::seed_media(&core, &seeded.subject, "isolation-photo.jpg")
    });
    // B's enquiry, marketing consent and credit check (with a second permission
    // left for the staff baseline to use).
    let cli = steward::access::Actor::cli();
    let enquiry_id = steward::crm::enquiries::record(
        &core,
        &cli,
        &seeded.tenant.id,
        &serde_json::from_value(json!({
            "channel": "phone",
            "name": format!("Person {}", seeded.subject.username),
            "email": format!("{}@example.test", seeded.subject.username),
            "message": "isolation test",
            "marketing_consent": true,
        }))
        .unwrap(),
    )
    .unwrap()
    .id;
    let credit = |action| steward::consent::Record {
        subject_id: seeded.subject.subject_id.clone(),
        category: "credit_checks".into(),
        purpose: "credit_check".into(),
        action,
        channel: steward::consent::Channel::Phone,
        evidence: None,
    };
    steward::consent::record(&core, &cli, credit(steward::consent::Action::Grant)).unwrap();
    let check_id = steward::crm::credit::request(
        &core,
        &cli,
        &seeded.subject.subject_id,
        &serde_json::from_value(json!({"name": "Person of B", "postal_address": "1 B Road"}))
            .unwrap(),
    )
    .unwrap()
    .id;
    steward::consent::record(&core, &cli, credit(steward::consent::Action::Grant)).unwrap();
    let (call_id, recs) = tokio::task::block_in_place(|| {
        common::seed_recordings(&core, &seeded.tenant.id, &seeded.tenant.id, 2)
    });
    // B's directory (two entries) and B's user's device contacts (two), with
    // the consent device contacts need. A's accounts consent too, so that what
    // refuses them B's contacts is isolation, not a missing consent.
    let entry = |name: &str, email: &str| {
        steward::directory::create(
            &core,
            &cli,
            &seeded.tenant.id,
            steward::directory::EntryInput {
                display_name: name.to_owned(),
                emails: vec![steward_vcard::Typed {
                    value: email.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            },
        )
        .unwrap()
        .id
    };
    let entry_id = entry("Zulu Directory Person", "zulu.directory@example.test");
    let spare_entry_id = entry("Zulu Spare Person", "zulu.spare@example.test");
    let grant_contacts = |account: &Account| {
        steward::consent::record(
            &core,
            &steward::accounts::actor_for(account),
            steward::consent::Record {
                subject_id: account.subject_id.clone(),
                category: "device_contacts".into(),
                purpose: "provision".into(),
                action: steward::consent::Action::Grant,
                channel: steward::consent::Channel::App,
                evidence: None,
            },
        )
        .unwrap();
    };
    for account in a.all().into_iter().chain([&seeded.subject]) {
        grant_contacts(account);
    }
    let b_user = steward::accounts::actor_for(&seeded.subject);
    let contact = |name: &str, phone: &str| {
        steward::contacts::sync(
            &core,
            &b_user,
            steward::contacts::SyncInput::json(steward_vcard::Contact {
                formatted_name: Some(name.to_owned()),
                phones: vec![steward_vcard::Typed {
                    value: phone.to_owned(),
                    ..Default::default()
                }],
                ..Default::default()
            }),
        )
        .unwrap()
        .0
        .id
    };
    let contact_id = contact("Zulu Device Friend", "+441632960777");
    let spare_contact_id = contact("Zulu Spare Friend", "+441632960778");
    // B's chat: a group of B's subject and operator, with a message from B's subject.
    let (conversation_id, attachment_id) = tokio::task::block_in_place(|| {
        let chat = steward::chat::Chat::start(core.clone());
        let owner = steward::accounts::actor_for(&seeded.subject);
        let (c, _) = steward::chat::conversations::create(
            &core,
            &owner,
            steward::chat::NewConversation {
                kind: steward::chat::ConversationKind::Group,
                members: vec![seeded.operator.subject_id.clone()],
                title: Some("Zulu planning".into()),
            },
        )
        .unwrap();
        let author = chat.author(&owner).unwrap();
        let (file, _) = common::seed_attachment(&core, &seeded.subject, &c.id, "zulu-plan.jpg");
        chat.send_blocking(
            &author,
            &c.id,
            "isolation hello",
            std::slice::from_ref(&file.id),
        )
        .unwrap();
        (c.id, file.id)
    });
    let b = TenantB {
        seeded,
        request_id,
        media_id: photo.id,
        enquiry_id,
        check_id,
        call_id,
        recording_id: recs[0].id.clone(),
        spare_recording_id: recs[1].id.clone(),
        entry_id,
        spare_entry_id,
        contact_id,
        spare_contact_id,
        conversation_id,
        attachment_id,
    };
    let staff_op = provider_staff(&core, "staff-op", Role::Operator);
    let staff_dpo = provider_staff(&core, "staff-dpo", Role::Dpo);
    let server = Server::start(core.clone()).await;

    // B's footprint: a consent, a processing check, a read.
    let b_subject_token = server.login(&b.subject().username).await;
    let b_admin_token = server.login(&b.seeded.admin.username).await;
    let consents = format!("/api/v1/subjects/{}/consents", b.subject().subject_id);
    let grant = json!({"category": "device_contacts", "purpose": "provision", "action": "grant"});
    let (s, body) = server
        .call("POST", &consents, Some(&b_subject_token), Some(grant))
        .await;
    assert_eq!(s, 201, "B's subject grants consent: {body}");
    let check = json!({"subject_id": b.subject().subject_id, "category": "device_contacts", "purpose": "provision"});
    let (s, body) = server
        .call(
            "POST",
            "/api/v1/processing",
            Some(&b_admin_token),
            Some(check),
        )
        .await;
    assert_eq!(s, 200, "B's admin checks processing: {body}");
    assert_eq!(body["allowed"], true, "{body}");
    let (s, body) = server
        .call(
            "GET",
            &format!("/api/v1/subjects/{}", b.subject().subject_id),
            Some(&b_admin_token),
            None,
        )
        .await;
    assert_eq!(s, 200, "B's admin reads B's subject: {body}");
    let b_users_before = steward::accounts::list(&core, &Actor::cli(), b.tenant_id()).unwrap();
    let (b_consent_before, b_history_before) =
        steward::consent::overview(&core, &Actor::cli(), &b.subject().subject_id).unwrap();

    // The routes, from the server itself.
    let (s, doc) = server.call("GET", "/api/v1/openapi.json", None, None).await;
    assert_eq!(s, 200, "{doc}");
    let ops = operations(&doc);
    parameters_are_where_they_are_sent(&doc);
    assert!(
        ops.len() >= 10,
        "suspiciously few operations in the OpenAPI document: {ops:?}"
    );
    let declared_public: BTreeSet<(String, String)> =
        ops.iter().filter(|o| !o.secured).map(Op::key).collect();
    let known_public: BTreeSet<(String, String)> = PUBLIC
        .iter()
        .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(
        declared_public, known_public,
        "the operations the OpenAPI document declares without `security` differ from the \
         ones tests/isolation.rs knows to be public; a new public route needs a reason in PUBLIC \
         (and a check that it reveals no tenant data)"
    );
    // Build every request first: an unknown parameter or body fails before any call.
    let requests: Vec<(Op, Request)> = ops
        .iter()
        .map(|o| (o.clone(), request_for(o, &b)))
        .collect();

    let mut failures: Vec<String> = Vec::new();
    let mut exercised: BTreeSet<(String, String)> = BTreeSet::new();
    let mut calls = 0usize;
    // Status per route and role of A, printed at the end (run with --nocapture).
    let mut matrix: Vec<String> = Vec::new();

    // Without a token: every non-public route answers 401.
    for (op, req) in &requests {
        if !op.secured {
            continue;
        }
        let (s, body) = send(&server, op, req, None).await;
        calls += 1;
        if s != 401 {
            failures.push(format!(
                "no token: {} {} gave {s}, expected 401: {body}",
                op.method, op.path
            ));
        }
        let leaked = b.found_in(&body);
        if !leaked.is_empty() {
            failures.push(format!(
                "no token: {} {} leaked {leaked:?}: {body}",
                op.method, op.path
            ));
        }
    }

    // Every role of A, every route.
    let a_accounts: [(&str, &Account); 4] = [
        ("subject", &a.subject),
        ("tenant-admin", &a.admin),
        ("operator", &a.operator),
        ("dpo", &a.dpo),
    ];
    let b_accounts = b.seeded.all();
    for (i, (role, account)) in a_accounts.iter().enumerate() {
        let mut token = server.login(&account.username).await;
        for (op, req) in &requests {
            exercised.insert(op.key());
            let who = format!("A's {role} ({})", account.username);
            let (s, body) = match (op.method.as_str(), op.path.as_str()) {
                // Log in is by credentials: A (of any role) cannot log in as B's
                // user without B's password.
                ("POST", LOGIN) => {
                    let target = &b_accounts[i];
                    let (s, body) =
                        login_with(&server, &target.username, "not the password at all").await;
                    if s != 401 {
                        failures.push(format!(
                            "{who}: logging in as B's {} with a wrong password gave {s}, expected 401: {body}",
                            target.role.as_str()
                        ));
                    }
                    (s, body)
                }
                _ => {
                    let (s, body) = send(&server, op, req, Some(&token)).await;
                    if req.names_b && !(s == 403 || s == 404) {
                        failures.push(format!(
                            "{who}: {} {} naming B gave {s}, expected 403 or 404: {body}",
                            op.method, op.path
                        ));
                    } else if !req.names_b && s >= 500 {
                        failures.push(format!("{who}: {} {} gave {s}: {body}", op.method, op.path));
                    }
                    (s, body)
                }
            };
            calls += 1;
            matrix.push(format!("{:<13} {:<6} {:<45} {s}", role, op.method, op.path));
            let leaked = b.found_in(&body);
            if !leaked.is_empty() {
                failures.push(format!(
                    "{who}: {} {} ({s}) revealed B's identifiers {leaked:?}: {body}",
                    op.method, op.path
                ));
            }
            // Sanity for the scan: A's DPO reads A's own audit entries.
            if op.method == "GET" && op.path == "/api/v1/audit" && account.role == Role::Dpo {
                let entries = body.as_array().map_or(0, Vec::len);
                if s != 200
                    || entries == 0
                    || entries >= 1000
                    || !body.to_string().contains(&a.tenant.id)
                {
                    failures.push(format!("{who}: GET /audit should list A's entries (and fewer than a page): {s} {body}"));
                }
            }
            if op.path == LOGOUT && (200..300).contains(&s) {
                token = server.login(&account.username).await;
            }
        }
    }

    // Public routes need no token and reveal nothing of B either.
    let (s, body) = server.call("GET", "/api/v1/policy", None, None).await;
    assert_eq!(s, 200);
    assert!(b.found_in(&body).is_empty(), "the public policy names B");
    for path in ["/healthz", "/metrics"] {
        let (_, body) = server.call("GET", path, None, None).await;
        let leaked = b.found_in(&body);
        assert!(
            leaked.is_empty(),
            "{path} reveals B's identifiers {leaked:?}"
        );
    }

    let doc_ops: BTreeSet<(String, String)> = ops.iter().map(Op::key).collect();
    assert_eq!(
        exercised, doc_ops,
        "every route of the OpenAPI document was exercised"
    );
    assert_eq!(exercised.len(), ops.len());

    // B is untouched: same users, none disabled, same consent, no entry by A in
    // B's audit trail, and B's sessions still work.
    let b_users_after = steward::accounts::list(&core, &Actor::cli(), b.tenant_id()).unwrap();
    if b_users_after.len() != b_users_before.len() {
        failures.push(format!(
            "B's user count changed: {} before, {} after",
            b_users_before.len(),
            b_users_after.len()
        ));
    }
    for u in b_users_after.iter().filter(|u| u.disabled) {
        failures.push(format!("B's account {} was disabled", u.username));
    }
    let (b_consent_after, b_history_after) =
        steward::consent::overview(&core, &Actor::cli(), &b.subject().subject_id).unwrap();
    let device_contacts = |states: &[steward::consent::ConsentState]| {
        states
            .iter()
            .find(|c| c.category == "device_contacts" && c.purpose == "provision")
            .map(|c| c.granted)
    };
    assert_eq!(device_contacts(&b_consent_before), Some(true));
    if device_contacts(&b_consent_after) != Some(true) {
        failures.push("B's device_contacts/provision consent is no longer granted".into());
    }
    if b_history_after.len() != b_history_before.len() {
        failures.push(format!(
            "B's consent ledger changed: {} events before, {} after",
            b_history_before.len(),
            b_history_after.len()
        ));
    }
    let a_actors: Vec<String> = a
        .all()
        .iter()
        .map(|x| format!("account:{}", x.id))
        .collect();
    let b_audit = steward::audit::list(&core.db, 0, 100_000, Some(b.tenant_id())).unwrap();
    for e in b_audit.iter().filter(|e| a_actors.contains(&e.actor)) {
        failures.push(format!("A's account acted on B's data: {e:?}"));
    }
    for (who, t) in [("subject", &b_subject_token), ("admin", &b_admin_token)] {
        let (s, body) = server.call("GET", "/api/v1/me", Some(t), None).await;
        if s != 200 {
            failures.push(format!("B's {who} session no longer works: {s} {body}"));
        }
    }

    // Baseline: the provider's staff get through with the same requests, so the
    // substitutions and bodies point at B's real objects and the 403/404s above
    // are isolation, not typos. (After the checks above: these do change B.)
    let staff_tokens = [
        ("staff operator", server.login(&staff_op.username).await),
        ("staff dpo", server.login(&staff_dpo.username).await),
    ];
    let mut baseline = 0usize;
    for (op, req) in &requests {
        if !req.names_b {
            continue;
        }
        let mut outcomes = Vec::new();
        let mut ok = false;
        // B's own callers get fresh sessions: the staff baselines before
        // (disable, then enable B's subject) revoked the earlier ones.
        let b_callers: Vec<(&str, String)> = match req.staff {
            StaffExpect::Member | StaffExpect::MemberStatus(_) => vec![(
                "B's subject (a member)",
                server.login(&b.subject().username).await,
            )],
            StaffExpect::Employer => vec![(
                "B's admin (the employer)",
                server.login(&b.seeded.admin.username).await,
            )],
            _ => Vec::new(),
        };
        let owner = [("B's own user", b_subject_token.clone())];
        let baseline_tokens: &[(&str, String)] = match req.staff {
            StaffExpect::Owner => &owner,
            StaffExpect::Member | StaffExpect::MemberStatus(_) | StaffExpect::Employer => {
                &b_callers
            }
            _ => &staff_tokens,
        };
        for (who, token) in baseline_tokens {
            let (s, body) = send(&server, op, req, Some(token)).await;
            calls += 1;
            let passed = match req.staff {
                StaffExpect::Success
                | StaffExpect::Owner
                | StaffExpect::Member
                | StaffExpect::Employer => (200..300).contains(&s),
                StaffExpect::Conflict => s == 409,
                StaffExpect::MemberStatus(code) => s == code,
                StaffExpect::Status(code) => s == code,
                StaffExpect::Message(code, m) => s == code && body.to_string().contains(m),
            };
            // What staff see of B is what the scan looks for in A's answers.
            if passed
                && op.method == "GET"
                && matches!(
                    req.staff,
                    StaffExpect::Success | StaffExpect::Member | StaffExpect::Employer
                )
                && b.found_in(&body).is_empty()
            {
                failures.push(format!(
                    "{who}: {} {} shows none of B's identifiers: {body}",
                    op.method, op.path
                ));
            }
            ok |= passed;
            outcomes.push(format!("{who}: {s} {body}"));
        }
        if ok {
            baseline += 1;
        } else {
            failures.push(format!(
                "baseline: {} could not {} {} ({:?} expected): {outcomes:?}",
                match req.staff {
                    StaffExpect::Member | StaffExpect::MemberStatus(_) => "B's member",
                    StaffExpect::Employer => "B's employer",
                    StaffExpect::Owner => "B's own user",
                    _ => "provider staff",
                },
                op.method,
                op.path,
                req.staff
            ));
        }
    }
    // The list routes A called do hold B's data for those allowed to see it, so
    // A's clean answers there are filtering, not emptiness.
    for (path, token) in [
        ("/api/v1/tenants", &staff_tokens[0].1),
        ("/api/v1/audit?limit=1000", &staff_tokens[1].1),
    ] {
        let (s, body) = server.call("GET", path, Some(token), None).await;
        calls += 1;
        if s != 200 || b.found_in(&body).is_empty() {
            failures.push(format!(
                "baseline: staff GET {path} shows none of B: {s} {body}"
            ));
        }
    }
    let gets_naming_b = requests
        .iter()
        .filter(|(o, r)| r.names_b && o.method == "GET")
        .count();
    assert!(
        gets_naming_b >= 2,
        "expected GET routes naming B (tenant, subject)"
    );

    eprintln!("{}", matrix.join("\n"));
    assert!(
        failures.is_empty(),
        "{} isolation failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    eprintln!(
        "isolation: {} operations x {} roles of A, {} staff baselines, {calls} calls in {:?}",
        ops.len(),
        a_accounts.len(),
        baseline,
        started.elapsed()
    );
}
