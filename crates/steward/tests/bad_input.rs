//! Bad input: malformed policy files, malformed JSON, oversize bodies, wrong
//! types and unknown fields each get a 4xx (or a CLI exit code) with a message
//! naming the problem; the server keeps serving; nothing stored changes.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::{Env, PASSWORD, Server, new_user};
use serde_json::{Value, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts;
use steward::api::MAX_JSON_BODY;
use steward::config::Settings;
use steward::tenants::{self, PROVIDER_TENANT};
use steward_crypto::IdentifierKind;
use steward_store::params;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// A rejected request, checked to have the API's error shape.
#[derive(Debug)]
struct Rejection {
    what: String,
    message: String,
    field: Option<String>,
}

impl Rejection {
    /// The `field` of the error body is exactly `name`.
    fn field(&self, name: &str) -> &Self {
        assert_eq!(
            self.field.as_deref(),
            Some(name),
            "{}: wrong field in {self:?}",
            self.what
        );
        self
    }

    /// The message (or the field) mentions `needle`.
    fn names(&self, needle: &str) -> &Self {
        assert!(
            self.message.contains(needle) || self.field.as_deref() == Some(needle),
            "{}: expected the error to name {needle:?}, got {self:?}",
            self.what
        );
        self
    }

    /// The message gives a position in the body (JSON syntax errors).
    fn positioned(&self) -> &Self {
        let m = &self.message;
        let at = m
            .find("line ")
            .unwrap_or_else(|| panic!("{}: no line in {m:?}", self.what));
        let rest = &m[at + 5..];
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        assert!(
            !digits.is_empty() && rest[digits.len()..].starts_with(" column "),
            "{}: no line/column in {m:?}",
            self.what
        );
        self
    }
}

/// Asserts `got` is an error with this status and code in the shape
/// `{"error":{"code","message","field"}}`.
fn rejected(what: impl Into<String>, got: (u16, Value), status: u16, code: &str) -> Rejection {
    let what = what.into();
    let (got_status, body) = got;
    assert_eq!(got_status, status, "{what}: status (body {body})");
    let top = body
        .as_object()
        .unwrap_or_else(|| panic!("{what}: body is not a JSON object: {body}"));
    assert_eq!(top.len(), 1, "{what}: extra top-level keys in {body}");
    let err = body["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no error object in {body}"));
    assert_eq!(
        err.get("code").and_then(Value::as_str),
        Some(code),
        "{what}: code in {body}"
    );
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    assert!(!message.is_empty(), "{what}: empty message in {body}");
    let field = match err.get("field") {
        Some(Value::Null) => None,
        Some(Value::String(f)) => Some(f.clone()),
        other => panic!("{what}: field must be null or a string, got {other:?} in {body}"),
    };
    Rejection {
        what,
        message,
        field,
    }
}

/// Every row of every table, in the data store and in the key store.
fn snapshot(env: &Env) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    let db = &env.core.db;
    for table in db.table_names().unwrap() {
        let rows = db
            .read(|c| c.query(&format!("SELECT * FROM {table}"), &[]))
            .unwrap();
        let mut rows: Vec<String> = rows.iter().map(|r| format!("{r:?}")).collect();
        rows.sort();
        out.insert(format!("data.{table}"), rows);
    }
    let keys = rusqlite::Connection::open_with_flags(
        env.data_dir().join("keys").join("keys.sqlite"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let mut stmt = keys
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap();
    let tables: Vec<String> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for table in tables {
        let mut stmt = keys.prepare(&format!("SELECT * FROM {table}")).unwrap();
        let n = stmt.column_count();
        let mut rows: Vec<String> = stmt
            .query_map([], |r| {
                Ok((0..n)
                    .map(|i| format!("{:?}", r.get_ref(i).unwrap()))
                    .collect::<Vec<_>>()
                    .join("|"))
            })
            .unwrap()
            .map(Result::unwrap)
            .collect();
        rows.sort();
        out.insert(format!("keys.{table}"), rows);
    }
    out
}

fn assert_unchanged(before: &BTreeMap<String, Vec<String>>, after: &BTreeMap<String, Vec<String>>) {
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>(),
        "tables changed"
    );
    assert!(
        before.len() >= 10,
        "snapshot saw too few tables: {:?}",
        before.keys()
    );
    for (table, rows) in before {
        let now = &after[table];
        assert_eq!(rows.len(), now.len(), "{table}: row count changed");
        assert!(rows == now, "{table}: contents changed");
    }
}

/// Sends a body the server may refuse before reading it (and then close the
/// connection on): over a connection of its own, so no pooled connection is
/// left broken, retrying if the close raced the upload.
async fn send_unread(s: &Server, path: &str, token: Option<&str>, body: Vec<u8>) -> (u16, Value) {
    let mut last = None;
    for _ in 0..3 {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let mut req = http
            .post(s.url(path))
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                return (
                    status,
                    serde_json::from_str(&text).unwrap_or(Value::String(text)),
                );
            }
            Err(e) => {
                eprintln!("POST {path}: retrying after {e:?}");
                last = Some(e);
            }
        }
    }
    panic!("POST {path}: no response in 3 tries: {last:?}");
}

/// One JSON-body route and a body it would accept.
struct JsonRoute {
    name: &'static str,
    path: String,
    token: Option<String>,
    valid: Value,
    required: &'static [&'static str],
}

impl JsonRoute {
    async fn send(&self, s: &Server, body: Vec<u8>) -> (u16, Value) {
        s.raw(
            "POST",
            &self.path,
            self.token.as_deref(),
            "application/json",
            body,
        )
        .await
    }

    async fn send_json(&self, s: &Server, body: &Value) -> (u16, Value) {
        self.send(s, serde_json::to_vec(body).unwrap()).await
    }

    /// The valid body with `key` set to `value`.
    fn with(&self, key: &str, value: Value) -> Value {
        let mut b = self.valid.clone();
        b[key] = value;
        b
    }

    fn without(&self, key: &str) -> Value {
        let mut b = self.valid.clone();
        b.as_object_mut().unwrap().remove(key);
        b
    }
}

/// The malformed bodies every JSON route must refuse without acting.
async fn generic_json_cases(s: &Server, r: &JsonRoute) {
    let n = r.name;
    let valid = serde_json::to_vec(&r.valid).unwrap();

    // Syntax: truncated, trailing garbage, a second document, empty, not UTF-8.
    let truncated = valid[..valid.len() / 2].to_vec();
    rejected(
        format!("{n}: truncated"),
        r.send(s, truncated).await,
        400,
        "invalid",
    )
    .positioned();
    let mut trailing = valid.clone();
    trailing.extend_from_slice(b" garbage");
    rejected(
        format!("{n}: trailing garbage"),
        r.send(s, trailing).await,
        400,
        "invalid",
    )
    .names("trailing characters")
    .positioned();
    let mut two = valid.clone();
    two.extend_from_slice(&valid);
    rejected(
        format!("{n}: two documents"),
        r.send(s, two).await,
        400,
        "invalid",
    )
    .positioned();
    rejected(
        format!("{n}: empty body"),
        r.send(s, Vec::new()).await,
        400,
        "invalid",
    )
    .names("EOF")
    .positioned();
    let first_key = r.valid.as_object().unwrap().keys().next().unwrap().clone();
    let mut not_utf8 = format!("{{\"{first_key}\": \"").into_bytes();
    not_utf8.extend_from_slice(&[0xff, 0xfe, 0x80]);
    not_utf8.extend_from_slice(b"\"}");
    rejected(
        format!("{n}: non-UTF-8"),
        r.send(s, not_utf8).await,
        400,
        "invalid",
    )
    .positioned();
    rejected(
        format!("{n}: bare garbage"),
        r.send(s, b"\x00\x01garbage".to_vec()).await,
        400,
        "invalid",
    )
    .positioned();

    // Shape: not an object, nesting bomb, duplicate and unknown keys.
    for (label, body) in [
        ("array", json!([1, 2])),
        ("string", json!("x")),
        ("null", Value::Null),
    ] {
        rejected(
            format!("{n}: top-level {label}"),
            r.send_json(s, &body).await,
            400,
            "invalid",
        )
        .names("invalid type");
    }
    let bomb = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    rejected(
        format!("{n}: nesting bomb"),
        r.send(s, bomb.into_bytes()).await,
        400,
        "invalid",
    );
    let text = String::from_utf8(valid.clone()).unwrap();
    let dup = format!("{{\"{first_key}\": {},{}", r.valid[&first_key], &text[1..]);
    rejected(
        format!("{n}: duplicate key"),
        r.send(s, dup.into_bytes()).await,
        400,
        "invalid",
    )
    .names("duplicate field")
    .field(&first_key);
    rejected(
        format!("{n}: unknown field"),
        r.send_json(s, &r.with("surprise_field", json!(true))).await,
        400,
        "invalid",
    )
    .field("surprise_field")
    .names("unknown field");

    // Missing required fields; wrong types and null for every field.
    for key in r.required {
        rejected(
            format!("{n}: missing {key}"),
            r.send_json(s, &r.without(key)).await,
            400,
            "invalid",
        )
        .names("missing field")
        .field(key);
        rejected(
            format!("{n}: null {key}"),
            r.send_json(s, &r.with(key, Value::Null)).await,
            400,
            "invalid",
        )
        .field(key);
    }
    for key in r.valid.as_object().unwrap().keys() {
        for wrong in [json!(12345), json!([1]), json!({"a": 1}), json!(true)] {
            rejected(
                format!("{n}: {key} = {wrong}"),
                r.send_json(s, &r.with(key, wrong.clone())).await,
                400,
                "invalid",
            )
            .field(key)
            .positioned();
        }
    }

    // Content type: missing, wrong, and a look-alike; the right one with
    // parameters and in another case is accepted as JSON (and then refused for
    // its content: an empty object lacks required fields).
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
        "multipart/form-data",
    ] {
        rejected(
            format!("{n}: content type {ct}"),
            s.raw("POST", &r.path, r.token.as_deref(), ct, valid.clone())
                .await,
            415,
            "invalid",
        )
        .names("application/json");
    }
    let mut req = s.http.post(s.url(&r.path)).body(valid.clone());
    if let Some(t) = &r.token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let body: Value = resp.json().await.unwrap();
    rejected(
        format!("{n}: no content type"),
        (status, body),
        415,
        "invalid",
    )
    .names("application/json");
    for ct in [
        "application/json; charset=utf-8",
        "Application/JSON",
        "application/problem+json",
    ] {
        rejected(
            format!("{n}: {{}} as {ct}"),
            s.raw("POST", &r.path, r.token.as_deref(), ct, b"{}".to_vec())
                .await,
            400,
            "invalid",
        )
        .names("missing field");
    }

    // Size: one byte over the limit is refused before it is parsed.
    let mut big = format!("{{\"{first_key}\": \"").into_bytes();
    big.resize(MAX_JSON_BODY + 1 - 2, b'a');
    big.extend_from_slice(b"\"}");
    assert_eq!(big.len(), MAX_JSON_BODY + 1);
    rejected(
        format!("{n}: oversize"),
        send_unread(s, &r.path, r.token.as_deref(), big).await,
        413,
        "payload_too_large",
    )
    .names(&MAX_JSON_BODY.to_string());
    let mut huge = valid.clone();
    huge.resize(2 * MAX_JSON_BODY, b' ');
    rejected(
        format!("{n}: 2 MiB"),
        send_unread(s, &r.path, r.token.as_deref(), huge).await,
        413,
        "payload_too_large",
    );
}

// ---------------------------------------------------------------------------
// 1. The API
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread")]
async fn api_refuses_bad_input_and_changes_nothing() {
    let env = Env::sqlite();
    let core = &env.core;
    let cli = Actor::cli();
    let tenant = tenants::create(core, &cli, "Bad Input Ltd", Some("BI-1")).unwrap();
    let subject =
        accounts::create_user(core, &cli, &tenant.id, new_user("bi-user", Role::Subject)).unwrap();
    accounts::create_user(
        core,
        &cli,
        PROVIDER_TENANT,
        new_user("bi-operator", Role::Operator),
    )
    .unwrap();
    accounts::create_user(core, &cli, PROVIDER_TENANT, new_user("bi-dpo", Role::Dpo)).unwrap();

    let s = Server::start(env.core.clone()).await;
    let operator = s.login("bi-operator").await;
    let dpo = s.login("bi-dpo").await;
    let user = s.login("bi-user").await;
    let sid = subject.subject_id.clone();
    let tid = tenant.id.clone();

    // A body of exactly the limit is not "too large": it is parsed, and this
    // login fails (a failure is counted, so before the snapshot).
    let mut at_limit =
        serde_json::to_vec(&json!({"username": "nobody-at-all", "password": "not the password"}))
            .unwrap();
    at_limit.resize(MAX_JSON_BODY, b' ');
    let (status, body) = s
        .raw(
            "POST",
            "/api/v1/auth/login",
            None,
            "application/json",
            at_limit,
        )
        .await;
    rejected(
        "login: body of exactly the limit",
        (status, body),
        401,
        "login_failed",
    );

    // Everything below must leave the stores exactly as they are now.
    let before = snapshot(&env);

    let routes = [
        JsonRoute {
            name: "login",
            path: "/api/v1/auth/login".into(),
            token: None,
            valid: json!({"username": "bi-operator", "password": PASSWORD}),
            required: &["username", "password"],
        },
        JsonRoute {
            name: "create tenant",
            path: "/api/v1/tenants".into(),
            token: Some(operator.clone()),
            valid: json!({"name": "Another Ltd", "customer_number": "AN-1"}),
            required: &["name"],
        },
        JsonRoute {
            name: "create user",
            path: format!("/api/v1/tenants/{tid}/users"),
            token: Some(operator.clone()),
            valid: json!({"username": "bi-new", "password": PASSWORD, "role": "subject",
                          "email": "new@example.test", "phone": "+44 20 7946 0958", "display_name": "New Person"}),
            required: &["username", "password", "role"],
        },
        JsonRoute {
            name: "consent",
            path: format!("/api/v1/subjects/{sid}/consents"),
            token: Some(user.clone()),
            valid: json!({"category": "device_contacts", "purpose": "provision", "action": "grant",
                          "channel": "app", "evidence": "in-app toggle"}),
            required: &["category", "purpose", "action"],
        },
        JsonRoute {
            name: "processing",
            path: "/api/v1/processing".into(),
            token: Some(operator.clone()),
            valid: json!({"subject_id": sid, "category": "contact_details", "purpose": "administration",
                          "recipient": "hosting"}),
            required: &["subject_id", "category", "purpose"],
        },
    ];
    for r in &routes {
        generic_json_cases(&s, r).await;
    }
    // The CRM's staff routes. Booleans, numbers and lists stay out of the valid
    // bodies (the generic wrong-type values include some that are right for
    // them); tests/crm.rs checks those fields and each route's domain rules.
    let crm_routes = [
        JsonRoute {
            name: "record enquiry",
            path: format!("/api/v1/tenants/{tid}/enquiries"),
            token: Some(operator.clone()),
            valid: json!({"channel": "phone", "name": "A Caller", "email": "caller@example.test",
                          "postal_address": "1 Road", "topic": "prices", "message": "hello"}),
            required: &["channel", "name", "message"],
        },
        JsonRoute {
            name: "credit check",
            path: format!("/api/v1/subjects/{sid}/credit-checks"),
            token: Some(operator.clone()),
            valid: json!({"agency": "credit_agency", "name": "A Person", "postal_address": "1 Road",
                          "previous_address": "2 Road", "date_of_birth": "1980-01-01"}),
            required: &["name", "postal_address"],
        },
        JsonRoute {
            name: "credit check result",
            path: "/api/v1/credit-checks/no-such-check/result".into(),
            token: Some(operator.clone()),
            valid: json!({"decision": "accept", "notes": "fine", "reference": "R-1"}),
            required: &["reference", "decision"],
        },
        JsonRoute {
            name: "suppression",
            path: "/api/v1/marketing/suppressions".into(),
            token: Some(operator.clone()),
            valid: json!({"channel": "email", "email": "x@example.test", "evidence": "reply",
                          "phone": "+44 20 7946 0958"}),
            required: &["channel"],
        },
    ];
    for r in &crm_routes {
        generic_json_cases(&s, r).await;
    }
    let [_login, create_tenant, create_user, consent, processing] = &routes;

    // Domain-invalid values: each names its field.
    let long = "x".repeat(201);
    let cases: Vec<(&JsonRoute, Value, &str, &str)> = vec![
        (
            create_tenant,
            create_tenant.with("name", json!("")),
            "name",
            "1 to 200",
        ),
        (
            create_tenant,
            create_tenant.with("name", json!("   ")),
            "name",
            "1 to 200",
        ),
        (
            create_tenant,
            create_tenant.with("name", json!(long)),
            "name",
            "1 to 200",
        ),
        (
            create_tenant,
            create_tenant.with("customer_number", json!("C 1")),
            "customer_number",
            "letters, digits",
        ),
        (
            create_tenant,
            create_tenant.with("customer_number", json!("")),
            "customer_number",
            "letters, digits",
        ),
        (
            create_tenant,
            create_tenant.with("customer_number", json!("9".repeat(65))),
            "customer_number",
            "1 to 64",
        ),
        (
            create_user,
            create_user.with("role", json!("boss")),
            "role",
            "unknown variant",
        ),
        (
            create_user,
            create_user.with("role", json!("Operator")),
            "role",
            "unknown variant",
        ),
        (
            create_user,
            create_user.with("role", json!(5)),
            "role",
            "field role",
        ),
        (
            create_user,
            create_user.with("email", json!("not-an-email")),
            "email",
            "@",
        ),
        (
            create_user,
            create_user.with("email", json!("a@b@example.test")),
            "email",
            "@",
        ),
        (
            create_user,
            create_user.with("email", json!(format!("{}@example.test", "a".repeat(300)))),
            "email",
            "too long",
        ),
        (
            create_user,
            create_user.with("phone", json!("call me maybe")),
            "phone",
            "phone",
        ),
        (
            create_user,
            create_user.with("phone", json!("+44 12")),
            "phone",
            "phone",
        ),
        (
            create_user,
            create_user.with("password", json!("short")),
            "password",
            "too short",
        ),
        (
            create_user,
            create_user.with("password", json!("")),
            "password",
            "too short",
        ),
        (
            create_user,
            create_user.with("username", json!("has space")),
            "username",
            "not allowed",
        ),
        (
            create_user,
            create_user.with("username", json!("")),
            "username",
            "empty",
        ),
        (
            create_user,
            create_user.with("username", json!("u".repeat(500))),
            "username",
            "too long",
        ),
        (
            create_user,
            create_user.with("display_name", json!(long)),
            "display_name",
            "200",
        ),
        (
            consent,
            consent.with("action", json!("maybe")),
            "action",
            "unknown variant",
        ),
        (
            consent,
            consent.with("action", json!("consume")),
            "action",
            "consumed",
        ),
        (
            consent,
            consent.with("channel", json!("fax")),
            "channel",
            "unknown variant",
        ),
        (
            consent,
            consent.with("purpose", json!("marketing")),
            "purpose",
            "device_contacts/marketing",
        ),
        (
            consent,
            consent.with("purpose", json!("world_domination")),
            "purpose",
            "world_domination",
        ),
        (
            consent,
            consent.with("category", json!("telepathy")),
            "category",
            "telepathy",
        ),
        (
            consent,
            consent.with("evidence", json!("e".repeat(2001))),
            "evidence",
            "2000",
        ),
        (
            processing,
            processing.with("purpose", json!("world_domination")),
            "purpose",
            "world_domination",
        ),
        (
            processing,
            processing.with("category", json!("telepathy")),
            "category",
            "telepathy",
        ),
        (
            processing,
            processing.with("recipient", json!(["hosting"])),
            "recipient",
            "invalid type",
        ),
    ];
    for (r, body, field, needle) in cases {
        rejected(
            format!("{}: {body}", r.name),
            r.send_json(&s, &body).await,
            400,
            "invalid",
        )
        .field(field)
        .names(needle);
    }

    // Bad query strings.
    let q = |path: &str, token: &str| {
        let (s, path, token) = (&s, path.to_owned(), token.to_owned());
        async move { s.call("GET", &path, Some(&token), None).await }
    };
    rejected(
        "audit limit=abc",
        q("/api/v1/audit?limit=abc", &dpo).await,
        400,
        "invalid",
    )
    .names("limit");
    rejected(
        "audit after=1.5",
        q("/api/v1/audit?after=1.5", &dpo).await,
        400,
        "invalid",
    )
    .names("after");
    rejected(
        "audit limit overflow",
        q("/api/v1/audit?limit=99999999999999999999999", &dpo).await,
        400,
        "invalid",
    )
    .names("limit");
    rejected(
        "audit unknown param",
        q("/api/v1/audit?limit=5&colour=red", &dpo).await,
        400,
        "invalid",
    )
    .names("colour");
    rejected(
        "audit repeated param",
        q("/api/v1/audit?limit=5&limit=6", &dpo).await,
        400,
        "invalid",
    )
    .names("limit");
    let find = format!("/api/v1/tenants/{tid}/subjects");
    rejected(
        "find: bad email",
        q(&format!("{find}?email=not-an-email"), &operator).await,
        400,
        "invalid",
    )
    .field("email");
    rejected(
        "find: bad phone",
        q(&format!("{find}?phone=abc"), &operator).await,
        400,
        "invalid",
    )
    .field("phone");
    rejected(
        "find: nothing to find by",
        q(&find, &operator).await,
        400,
        "invalid",
    )
    .field("email");
    rejected(
        "find: unknown param",
        q(&format!("{find}?name=x"), &operator).await,
        400,
        "invalid",
    )
    .names("name");
    let read = format!("/api/v1/subjects/{sid}");
    rejected(
        "read: unknown purpose",
        q(&format!("{read}?purpose=gossip"), &operator).await,
        400,
        "invalid",
    )
    .field("purpose")
    .names("gossip");
    rejected(
        "read: unknown param",
        q(&format!("{read}?why=x"), &operator).await,
        400,
        "invalid",
    )
    .names("why");

    // Path parameters that are not text.
    rejected(
        "path not UTF-8",
        q("/api/v1/tenants/%FF%FE", &operator).await,
        400,
        "invalid",
    )
    .names("UTF-8");
    rejected(
        "path not UTF-8 (consents)",
        q("/api/v1/subjects/%C3%28/consents", &operator).await,
        400,
        "invalid",
    )
    .names("UTF-8");

    // Unknown routes and methods.
    for (method, path) in [
        ("GET", "/api/v1/nope"),
        ("GET", "/nope"),
        ("POST", "/api/v1/tenants/x/y/z"),
        ("GET", "/api/v2/tenants"),
        ("GET", "/api/v1/tenants/../../etc/passwd"),
    ] {
        rejected(
            format!("{method} {path}"),
            s.call(method, path, Some(&operator), None).await,
            404,
            "not_found",
        );
    }
    for (method, path) in [
        ("DELETE", "/api/v1/tenants"),
        ("PUT", "/api/v1/auth/login"),
        ("GET", "/api/v1/processing"),
    ] {
        let resp = s
            .http
            .request(method.parse().unwrap(), s.url(path))
            .bearer_auth(&operator)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        assert!(
            resp.headers().contains_key("allow"),
            "{method} {path}: no Allow header"
        );
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        rejected(
            format!("{method} {path}"),
            (status, body),
            405,
            "method_not_allowed",
        )
        .names(method);
    }

    // Bad tokens.
    let bad_auth: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"Bearer garbage".to_vec()),
        ("empty bearer", b"Bearer ".to_vec()),
        (
            "overlong",
            format!("Bearer {}", "a".repeat(10_000)).into_bytes(),
        ),
        (
            "just too long",
            format!("Bearer {}", "a".repeat(257)).into_bytes(),
        ),
        ("basic scheme", b"Basic Ym9iOnNlY3JldA==".to_vec()),
        ("no scheme", operator.clone().into_bytes()),
        ("not ASCII", b"Bearer \xff\xfe".to_vec()),
        (
            "tampered",
            format!("Bearer {}x", &operator[..operator.len() - 1]).into_bytes(),
        ),
        (
            "two tokens",
            format!("Bearer {operator} {operator}").into_bytes(),
        ),
    ];
    for (label, value) in &bad_auth {
        for (method, path) in [
            ("GET", "/api/v1/me"),
            ("POST", "/api/v1/auth/logout"),
            ("GET", "/api/v1/tenants"),
        ] {
            let resp = s
                .http
                .request(method.parse().unwrap(), s.url(path))
                .header(
                    "authorization",
                    reqwest::header::HeaderValue::from_bytes(value).unwrap(),
                )
                .send()
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let body: Value = resp.json().await.unwrap();
            rejected(
                format!("{label} token on {method} {path}"),
                (status, body),
                401,
                "unauthenticated",
            );
        }
    }
    let (status, body) = s.call("GET", "/api/v1/me", None, None).await;
    rejected("no token", (status, body), 401, "unauthenticated");
    // A bad token is refused before the body is even read.
    let big = vec![b' '; 2 * MAX_JSON_BODY];
    rejected(
        "bad token, oversize body",
        send_unread(&s, "/api/v1/tenants", Some("garbage"), big).await,
        401,
        "unauthenticated",
    );

    // The server kept serving, the good tokens still work, and nothing changed.
    let (status, body) = s.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200, "healthz: {body}");
    assert_eq!(body["status"], "ok");
    for t in [&operator, &dpo, &user] {
        let (status, body) = s.call("GET", "/api/v1/me", Some(t), None).await;
        assert_eq!(status, 200, "me after bad input: {body}");
    }
    let after = snapshot(&env);
    assert_unchanged(&before, &after);
    // Sanity: the snapshot would have seen a change.
    let (status, _) = create_tenant.send_json(&s, &create_tenant.valid).await;
    assert_eq!(status, 201);
    assert_ne!(snapshot(&env)["data.tenants"], after["data.tenants"]);
}

// ---------------------------------------------------------------------------
// 1b. The business directory and device contacts: JSON and vCard bodies
// ---------------------------------------------------------------------------

/// Sends `body` with `content_type` on a fresh connection (the server may answer
/// before reading an oversize body), retrying if the close raced the upload.
async fn send_unread_as(
    s: &Server,
    path: &str,
    token: &str,
    content_type: &str,
    body: Vec<u8>,
) -> (u16, Value) {
    for _ in 0..3 {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        let sent = http
            .post(s.url(path))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.clone())
            .send()
            .await;
        if let Ok(resp) = sent {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            return (
                status,
                serde_json::from_str(&text).unwrap_or(Value::String(text)),
            );
        }
    }
    panic!("POST {path}: no response in 3 tries");
}

#[tokio::test(flavor = "multi_thread")]
async fn contacts_and_directory_refuse_bad_input_and_change_nothing() {
    let env = Env::sqlite();
    let core = &env.core;
    let cli = Actor::cli();
    let tenant = tenants::create(core, &cli, "Contacts Input Ltd", Some("CI-1")).unwrap();
    let user =
        accounts::create_user(core, &cli, &tenant.id, new_user("ci-user", Role::Subject)).unwrap();
    accounts::create_user(
        core,
        &cli,
        &tenant.id,
        new_user("ci-admin", Role::TenantAdmin),
    )
    .unwrap();
    let tid = tenant.id.clone();
    let s = Server::start(env.core.clone()).await;
    let admin = s.login("ci-admin").await;
    let me = s.login("ci-user").await;
    // Something stored in each: an entry, the user's consent and one contact.
    let dir = format!("/api/v1/tenants/{tid}/directory");
    let (st, entry) = s
        .call(
            "POST",
            &dir,
            Some(&admin),
            Some(json!({"display_name": "Kept Person", "emails": [{"value": "kept@ci.example.test"}]})),
        )
        .await;
    assert_eq!(st, 201, "{entry}");
    let one = format!("{dir}/{}", entry["id"].as_str().unwrap());
    let (st, body) = s
        .call(
            "POST",
            &format!("/api/v1/subjects/{}/consents", user.subject_id),
            Some(&me),
            Some(json!({"category": "device_contacts", "purpose": "provision", "action": "grant"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let mine = "/api/v1/me/device-contacts";
    let (st, body) = s
        .call(
            "POST",
            mine,
            Some(&me),
            Some(json!({"uid": "kept-1", "formatted_name": "Kept Friend"})),
        )
        .await;
    assert_eq!(st, 201, "{body}");
    let sync = s
        .call("GET", &format!("{dir}/sync"), Some(&me), None)
        .await
        .1;
    let token = sync["token"].as_str().unwrap().to_owned();

    let before = snapshot(&env);

    // The directory's JSON body: every generic case, then values that name their field.
    let entries = JsonRoute {
        name: "directory entry",
        path: dir.clone(),
        token: Some(admin.clone()),
        // Scalar fields only, so that a wrong type is reported at the field itself
        // (the lists are covered below); the domain also wants an email or phone.
        valid: json!({"display_name": "New Person", "title": "Engineer", "department": "R&D"}),
        required: &["display_name"],
    };
    generic_json_cases(&s, &entries).await;
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            entries.with("display_name", json!("  ")),
            "display_name",
            "empty",
        ),
        (
            entries.with("emails", json!([{"value": "no-at-sign"}])),
            "emails[0].value",
            "@",
        ),
        (
            entries.with("emails", json!([{"value": "a@b.test", "kind": "work"}])),
            "emails[0].kind",
            "unknown field",
        ),
        (
            entries.with(
                "emails",
                json!([{"value": "a@b.test", "types": ["has space"]}]),
            ),
            "emails[0].types[0]",
            "word",
        ),
        (entries.with("emails", json!([])), "emails", "phone number"),
        (
            entries.with("title", json!("t".repeat(300))),
            "title",
            "over the limit",
        ),
        (
            entries.with("title", json!("a\u{0}b")),
            "title",
            "control character",
        ),
        (
            entries.with("phones", json!(vec![json!({"value": "1"}); 21])),
            "phones",
            "21 entries",
        ),
        (
            entries.with("emails", json!([{"value": "kept@ci.example.test"}])),
            "",
            "already has an entry",
        ),
    ];
    for (body, field, needle) in cases {
        let got = entries.send_json(&s, &body).await;
        if field.is_empty() {
            rejected(format!("directory: {body}"), got, 409, "conflict").names(needle);
        } else {
            rejected(format!("directory: {body}"), got, 400, "invalid")
                .field(field)
                .names(needle);
        }
    }
    // The same through PUT, on the stored entry.
    for (body, status, field) in [
        (br#"{"display_name": "X""#.to_vec(), 400, None),
        (
            br#"{"display_name": "X", "nick": 1}"#.to_vec(),
            400,
            Some("nick"),
        ),
        (
            br#"{"display_name": "X", "emails": [{"value": "nope"}]}"#.to_vec(),
            400,
            Some("emails[0].value"),
        ),
        (
            br#"{"emails": [{"value": "x@ci.example.test"}]}"#.to_vec(),
            400,
            Some("display_name"),
        ),
    ] {
        let got = s
            .raw("PUT", &one, Some(&admin), "application/json", body.clone())
            .await;
        let r = rejected(
            format!("PUT entry {}", String::from_utf8_lossy(&body)),
            got,
            status,
            "invalid",
        );
        if let Some(f) = field {
            r.field(f);
        }
    }
    let (st, _) = s
        .raw("PUT", &one, Some(&admin), "text/plain", b"{}".to_vec())
        .await;
    assert_eq!(st, 415);

    // Import: vCard files that cannot be read name the line (and the card).
    let import = format!("{dir}/import");
    let iphone = std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/vcard/iphone-3.0.vcf"),
    )
    .unwrap();
    let vcards: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        (
            "truncated",
            iphone[..iphone.len() / 2].to_vec(),
            "vcard",
            vec!["without END:VCARD", "truncated"],
        ),
        (
            "no BEGIN",
            b"VERSION:3.0\r\nFN:Nobody\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 1", "expected BEGIN:VCARD"],
        ),
        (
            "no END",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Open\r\nEMAIL:o@ci.example.test\r\n".to_vec(),
            "vcard",
            vec!["line 4", "without END:VCARD"],
        ),
        (
            "binary junk",
            vec![0x00, 0xFF, 0xFE, 0x13, 0x37, 0x80, 0x81, b'\n', 0x00],
            "vcard",
            vec!["line 1"],
        ),
        (
            "Latin-1 in a 3.0 card",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Fran\xe7ois\r\nEMAIL:f@ci.example.test\r\nEND:VCARD\r\n"
                .to_vec(),
            "vcard",
            vec!["line 3", "not valid UTF-8"],
        ),
        (
            "bad base64 photo",
            b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:P\r\nEMAIL:p@ci.example.test\r\nPHOTO;ENCODING=b;TYPE=JPEG:/9j/4A**\r\nEND:VCARD\r\n"
                .to_vec(),
            "vcard",
            vec!["line 5", "PHOTO", "base64"],
        ),
        (
            "unsupported version",
            b"BEGIN:VCARD\r\nVERSION:5.0\r\nFN:x\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 2", "VERSION"],
        ),
        ("empty", Vec::new(), "vcard", vec!["empty"]),
        // Both cards are a new person: keys are made for both before the
        // transaction, and destroyed again with it (the key store is in the snapshot).
        (
            "one new person twice",
            b"BEGIN:VCARD\r\nFN:Twin\r\nEMAIL:twin@ci.example.test\r\nEND:VCARD\r\nBEGIN:VCARD\r\nFN:Twin\r\nEMAIL:TWIN@ci.example.test\r\nEND:VCARD\r\n"
                .to_vec(),
            "vcard",
            vec!["card 2", "line 5", "same person as card 1"],
        ),
        (
            "a bad email in the second card",
            b"BEGIN:VCARD\r\nFN:A\r\nEMAIL:a@ci.example.test\r\nEND:VCARD\r\nBEGIN:VCARD\r\nFN:B\r\nEMAIL:b-at-ci\r\nEND:VCARD\r\n"
                .to_vec(),
            "emails[0].value",
            vec!["card 2", "line 5"],
        ),
    ];
    for (label, body, field, needles) in vcards {
        let r = rejected(
            format!("import: {label}"),
            s.raw("POST", &import, Some(&admin), "text/vcard", body)
                .await,
            400,
            "invalid",
        );
        r.field(field);
        for n in needles {
            r.names(n);
        }
    }
    for ct in ["application/json", "text/plain", "multipart/form-data"] {
        rejected(
            format!("import as {ct}"),
            s.raw(
                "POST",
                &import,
                Some(&admin),
                ct,
                b"BEGIN:VCARD\r\nFN:x\r\nTEL:1\r\nEND:VCARD\r\n".to_vec(),
            )
            .await,
            415,
            "invalid",
        )
        .names("text/vcard");
    }
    let mut big = iphone.clone();
    big.resize(steward::directory::MAX_IMPORT_BYTES + 1, b'\n');
    rejected(
        "import over the limit",
        send_unread_as(&s, &import, &admin, "text/vcard", big).await,
        413,
        "payload_too_large",
    );

    // Sync and format parameters.
    let sync_path = format!("{dir}/sync");
    for (query, field) in [
        ("since=garbage", Some("since")),
        ("since=1.AAAAAAAAAAAAAAAAAAAAA", Some("since")),
        (&*format!("since={token}x"), Some("since")),
        ("limit=0", Some("limit")),
        ("limit=100000", Some("limit")),
        ("limit=-1", None),
        ("limit=abc", None),
        ("since=a&since=b", None),
        ("colour=red", None),
    ] {
        let r = rejected(
            format!("sync?{query}"),
            s.call("GET", &format!("{sync_path}?{query}"), Some(&me), None)
                .await,
            400,
            "invalid",
        );
        if let Some(f) = field {
            r.field(f);
        }
    }
    for query in [
        "format=xml",
        "version=2.1",
        "format=json%20",
        "version=",
        "style=x",
    ] {
        rejected(
            format!("entry?{query}"),
            s.call("GET", &format!("{one}?{query}"), Some(&me), None)
                .await,
            400,
            "invalid",
        );
    }
    rejected(
        "export?version=5",
        s.call("GET", &format!("{dir}/export?version=5"), Some(&me), None)
            .await,
        400,
        "invalid",
    )
    .field("version");

    // Device contacts: malformed JSON and vCards, each naming the field or line.
    let raw_json: Vec<(&str, Vec<u8>, Option<&str>, &str)> = vec![
        (
            "truncated",
            br#"{"formatted_name": "A"#.to_vec(),
            None,
            "line 1",
        ),
        (
            "trailing",
            br#"{"formatted_name": "A"} x"#.to_vec(),
            None,
            "trailing",
        ),
        ("not an object", br#"["A"]"#.to_vec(), None, "JSON object"),
        (
            "unknown field",
            br#"{"formatted_name": "A", "nickname": "B"}"#.to_vec(),
            Some("nickname"),
            "unknown field",
        ),
        (
            "duplicate",
            br#"{"formatted_name": "A", "formatted_name": "B"}"#.to_vec(),
            Some("formatted_name"),
            "duplicate",
        ),
        (
            "wrong type",
            br#"{"formatted_name": 5}"#.to_vec(),
            Some("formatted_name"),
            "invalid type",
        ),
        (
            "phones not a list",
            br#"{"phones": "+44"}"#.to_vec(),
            Some("phones"),
            "invalid type",
        ),
        (
            "phone without value",
            br#"{"phones": [{"types": ["cell"]}]}"#.to_vec(),
            Some("phones[0]"),
            "missing field",
        ),
        (
            "photo not base64",
            br#"{"formatted_name": "A", "photo": {"media_type": "image/png", "data": "***"}}"#
                .to_vec(),
            Some("photo.data"),
            "base64",
        ),
        (
            "photo not an image",
            br#"{"formatted_name": "A", "photo": {"media_type": "text/html", "data": "PGI+"}}"#
                .to_vec(),
            Some("photo.media_type"),
            "not an image",
        ),
        ("empty contact", b"{}".to_vec(), Some("contact"), "is empty"),
        (
            "blank name",
            br#"{"formatted_name": "   ", "phones": [{"value": "1"}]}"#.to_vec(),
            Some("formatted_name"),
            "empty",
        ),
        (
            "bad birthday",
            br#"{"formatted_name": "A", "birthday": "19850412"}"#.to_vec(),
            Some("birthday"),
            "1985-04-12",
        ),
        (
            "not UTF-8",
            b"{\"formatted_name\": \"\xff\xfe\"}".to_vec(),
            None,
            "line 1",
        ),
    ];
    for (label, body, field, needle) in raw_json {
        let r = rejected(
            format!("device contact JSON: {label}"),
            s.raw("POST", mine, Some(&me), "application/json", body)
                .await,
            400,
            "invalid",
        );
        r.names(needle);
        if let Some(f) = field {
            r.field(f);
        }
    }
    let big_photo = steward_vcard::to_vcard(
        &steward_vcard::Contact {
            formatted_name: Some("Huge Photo".into()),
            photo: Some(steward_vcard::Photo {
                media_type: "image/jpeg".into(),
                data: vec![0xD8; steward::contacts::LIMITS.max_photo_bytes + 1],
            }),
            ..Default::default()
        },
        steward_vcard::Version::V3,
    );
    let vcards: Vec<(&str, Vec<u8>, &str, Vec<&str>)> = vec![
        (
            "truncated",
            iphone[..iphone.len() / 2].to_vec(),
            "vcard",
            vec!["truncated"],
        ),
        (
            "no BEGIN",
            b"FN:x\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 1", "BEGIN:VCARD"],
        ),
        ("binary junk", vec![0xFF; 64], "vcard", vec!["line 1"]),
        (
            "bad encoding",
            b"BEGIN:VCARD\r\nVERSION:4.0\r\nFN:M\xfcller\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["line 3", "not valid UTF-8"],
        ),
        (
            "huge photo",
            big_photo.into_bytes(),
            "photo.data",
            vec!["over the limit", "line 1"],
        ),
        (
            "two cards",
            b"BEGIN:VCARD\r\nFN:a\r\nEND:VCARD\r\nBEGIN:VCARD\r\nFN:b\r\nEND:VCARD\r\n".to_vec(),
            "vcard",
            vec!["exactly one vCard", "line 4"],
        ),
        ("empty", Vec::new(), "vcard", vec!["empty"]),
    ];
    for (label, body, field, needles) in vcards {
        let r = rejected(
            format!("device contact vCard: {label}"),
            s.raw("POST", mine, Some(&me), "text/vcard", body).await,
            400,
            "invalid",
        );
        r.field(field);
        for n in needles {
            r.names(n);
        }
    }
    for ct in [
        "text/plain",
        "application/x-www-form-urlencoded",
        "application/jsonp",
    ] {
        rejected(
            format!("device contact as {ct}"),
            s.raw("POST", mine, Some(&me), ct, b"{}".to_vec()).await,
            415,
            "invalid",
        );
    }
    let mut huge = b"{\"note\": \"".to_vec();
    huge.resize(steward::contacts::MAX_BODY + 1, b'a');
    rejected(
        "device contact over the body limit",
        send_unread_as(&s, mine, &me, "application/json", huge).await,
        413,
        "payload_too_large",
    );
    rejected(
        "device contact path not UTF-8",
        s.call("GET", &format!("{mine}/%FF"), Some(&me), None).await,
        400,
        "invalid",
    );

    // The server kept serving, and nothing stored changed.
    let (st, body) = s.call("GET", mine, Some(&me), None).await;
    assert_eq!(st, 200, "{body}");
    assert_eq!(body[0]["contact"]["formatted_name"], "Kept Friend");
    assert_unchanged(&before, &snapshot(&env));
    // Sanity: the snapshot sees a good request's change.
    let (st, _) = entries
        .send_json(
            &s,
            &entries.with("emails", json!([{"value": "new@ci.example.test"}])),
        )
        .await;
    assert_eq!(st, 201);
    assert_ne!(
        snapshot(&env)["data.directory_entries"],
        before["data.directory_entries"]
    );
}

// ---------------------------------------------------------------------------
// 2. Login throttling
// ---------------------------------------------------------------------------

async fn login_as(s: &Server, username: &str, password: &str) -> (u16, Option<String>, Value) {
    let resp = s
        .http
        .post(s.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let retry = resp
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, retry, resp.json().await.unwrap())
}

/// The login throttle's (failures, locked_until) for a typed username, if it
/// has an entry. Throttling is keyed by the username's blind index, so that a
/// name that has no account is slowed down exactly like one that has.
fn throttle(env: &Env, username: &str) -> Option<(i64, i64)> {
    let idx = env
        .core
        .keys
        .blind_index(IdentifierKind::Username, username);
    env.core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT failures, locked_until FROM login_throttle WHERE key_idx = $1",
                params![idx],
            )
        })
        .unwrap()
        .map(|r| (r.i64(0).unwrap(), r.i64(1).unwrap()))
}

fn set_throttle(env: &Env, username: &str, failures: i64, locked_until: i64) {
    let idx = env
        .core
        .keys
        .blind_index(IdentifierKind::Username, username);
    let n = env
        .core
        .db
        .write(|c: &mut dyn steward_store::Conn| {
            c.execute(
                "UPDATE login_throttle SET failures = $1, locked_until = $2 WHERE key_idx = $3",
                params![failures, locked_until, idx],
            )
        })
        .unwrap();
    assert_eq!(n, 1, "no throttle entry for {username}");
}

fn sessions_of(env: &Env, account_id: &str) -> usize {
    env.core
        .db
        .read(|c| {
            c.query(
                "SELECT token_hash FROM sessions WHERE account_id = $1",
                params![account_id],
            )
        })
        .unwrap()
        .len()
}

fn now() -> i64 {
    steward::clock::now()
}

#[tokio::test(flavor = "multi_thread")]
async fn repeated_failed_logins_are_throttled_per_account() {
    let env = Env::sqlite();
    let cli = Actor::cli();
    let victim = accounts::create_user(
        &env.core,
        &cli,
        PROVIDER_TENANT,
        new_user("victim", Role::Subject),
    )
    .unwrap();
    accounts::create_user(
        &env.core,
        &cli,
        PROVIDER_TENANT,
        new_user("bystander", Role::Subject),
    )
    .unwrap();
    let s = Server::start(env.core.clone()).await;

    // The first failures are plain 401s, with no Retry-After; a username with
    // no account fails the same way.
    let t0 = now();
    for name in ["victim", "ghost"] {
        for i in 1..=3 {
            let (status, retry, body) = login_as(&s, name, "wrong password").await;
            rejected(
                format!("{name}: failure {i}"),
                (status, body),
                401,
                "login_failed",
            )
            .names("wrong username or password");
            assert_eq!(retry, None);
        }
        // From the third failure on, the next try must wait (1 s, then 2, 4 …).
        let (fails, locked_until) = throttle(&env, name).expect("throttle entry");
        assert_eq!(fails, 3, "{name}");
        assert!(
            locked_until > t0 && locked_until <= now() + 1,
            "{name}: locked_until {locked_until}, t0 {t0}"
        );
    }
    assert_eq!(sessions_of(&env, &victim.id), 0);

    // Skip the short waits (as if they had passed) up to the last failure
    // before the lock: the tenth failure locks the name for 15 minutes.
    set_throttle(&env, "victim", 9, 0);
    let (status, _, body) = login_as(&s, "victim", "wrong again").await;
    rejected("tenth failure", (status, body), 401, "login_failed");
    let (fails, locked_until) = throttle(&env, "victim").unwrap();
    assert_eq!(fails, 10);
    assert!(
        locked_until >= now() + 15 * 60 - 5,
        "locked_until {locked_until}"
    );

    // Now every attempt is 429 with Retry-After, the right password included
    // (in any case of the username), and throttled attempts are not counted.
    for (label, name, password) in [
        ("wrong password", "victim", "still wrong"),
        ("right password", "victim", PASSWORD),
        ("upper case", "VICTIM", PASSWORD),
    ] {
        let (status, retry, body) = login_as(&s, name, password).await;
        rejected(
            format!("throttled, {label}"),
            (status, body),
            429,
            "throttled",
        )
        .names("try again");
        let secs: i64 = retry
            .expect("Retry-After")
            .parse()
            .expect("Retry-After in seconds");
        assert!(
            (15 * 60 - 10..=15 * 60).contains(&secs),
            "Retry-After {secs}"
        );
    }
    assert_eq!(
        throttle(&env, "victim").unwrap().0,
        10,
        "a throttled attempt was counted"
    );
    assert_eq!(
        sessions_of(&env, &victim.id),
        0,
        "a throttled login opened a session"
    );

    // Another account is unaffected, failing or succeeding.
    let (status, retry, body) = login_as(&s, "bystander", "wrong").await;
    rejected(
        "bystander, wrong password",
        (status, body),
        401,
        "login_failed",
    );
    assert_eq!(retry, None);
    let (status, _, body) = login_as(&s, "bystander", PASSWORD).await;
    assert_eq!(status, 200, "bystander: {body}");
    assert_eq!(
        throttle(&env, "bystander"),
        None,
        "a success clears the bystander's count"
    );

    // When the lock has run out, the right password works and clears the count.
    set_throttle(&env, "victim", 10, now() - 1);
    let (status, _, body) = login_as(&s, "victim", PASSWORD).await;
    assert_eq!(status, 200, "after the lock: {body}");
    assert_eq!(throttle(&env, "victim"), None);
    assert_eq!(sessions_of(&env, &victim.id), 1);
    let (status, _) = s.call("GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
}

// ---------------------------------------------------------------------------
// 3. and 4. The command line
// ---------------------------------------------------------------------------

/// Runs the `steward` binary on `data_dir`, with no `STEWARD_*` variables from
/// the environment, feeding `stdin`.
fn steward_cmd(data_dir: &Path, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_steward"));
    cmd.arg("--data-dir").arg(data_dir).args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("STEWARD_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    // The command may exit before reading stdin; a broken pipe is fine then.
    let _ = input.write_all(stdin.as_bytes());
    drop(input);
    child.wait_with_output().unwrap()
}

struct Ran {
    what: String,
    code: i32,
    stdout: String,
    stderr: String,
}

fn run(data_dir: &Path, args: &[&str], stdin: &str) -> Ran {
    let out = steward_cmd(data_dir, args, stdin);
    Ran {
        what: args.join(" "),
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Ran {
    fn exit(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "{}: exit code; stdout {:?} stderr {:?}",
            self.what, self.stdout, self.stderr
        );
        self
    }
    fn stderr_has(&self, needle: &str) -> &Self {
        assert!(
            self.stderr.contains(needle),
            "{}: stderr lacks {needle:?}: {:?}",
            self.what,
            self.stderr
        );
        self
    }
    /// A diagnostic `file:line:column: severity: …` at this line (any line
    /// when `None`) whose message contains `needle`.
    fn diagnostic(&self, file: &Path, line: Option<usize>, severity: &str, needle: &str) -> &Self {
        let file = format!("{}:", file.display());
        let found = self.stderr.lines().any(|l| {
            let Some(at) = l.find(&file) else {
                return false;
            };
            let rest = &l[at + file.len()..];
            let line_no: String = rest.chars().take_while(char::is_ascii_digit).collect();
            let Some(rest) = rest[line_no.len()..].strip_prefix(':') else {
                return false;
            };
            let col: String = rest.chars().take_while(char::is_ascii_digit).collect();
            !line_no.is_empty()
                && line.is_none_or(|want| line_no == want.to_string())
                && !col.is_empty()
                && rest[col.len()..].starts_with(&format!(": {severity}: "))
                && l.contains(needle)
        });
        assert!(
            found,
            "{}: no {severity} at {file}{line:?}:<column> naming {needle:?} in {:?}",
            self.what, self.stderr
        );
        self
    }
    fn json(&self) -> Value {
        let text = self.stdout.trim();
        assert_eq!(
            text.lines().count(),
            1,
            "{}: --json must print one line: {:?}",
            self.what,
            self.stdout
        );
        let v: Value = serde_json::from_str(text)
            .unwrap_or_else(|e| panic!("{}: stdout is not JSON ({e}): {text:?}", self.what));
        assert!(v.is_object(), "{}: not one JSON object: {v}", self.what);
        v
    }
}

/// A small valid policy (the policy crate's test base); line numbers beside.
const BASE: &str = r#"[policy]
version = "t1"
controller = "Example Ltd"
controller_address = "1 High Street, Tamworth"
default_retention = "6 years"
request_deadline_working_days = 10
jurisdiction = "england-and-wales"

[purposes.provision]
name = "Providing the service"
description = "So that it works."
fides_data_use = "essential.service"

[purposes.marketing]
name = "Marketing"
description = "Telling you about offers."
fides_data_use = "marketing.communications"

[recipients.hosting]
name = "Host"
kind = "processor"
country = "GB"
description = "Runs our servers."

[categories.contact]
name = "Contact details"
description = "Email address."
fides_categories = ["user.contact.email"]
subjects = ["contact"]
source = "Web forms"
lawful_basis = "legitimate_interest"
consent_required = false
purposes = ["provision", "marketing"]
purpose_basis = { marketing = "consent" }
recipients = ["hosting"]
"#;
// Lines: 2 version, 6 request_deadline_working_days, 22 country, 33 purposes.

fn policy_file(dir: &Path, name: &str, old: &str, new: &str) -> PathBuf {
    assert!(BASE.contains(old), "BASE lacks {old:?}");
    let path = dir.join(name);
    std::fs::write(&path, BASE.replacen(old, new, 1)).unwrap();
    path
}

fn default_policy() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policy/default.toml")
}

#[test]
fn policy_check_names_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let d = dir.path();

    let ok = policy_file(d, "ok.toml", "", "");
    let r = run(&data, &["policy", "check", ok.to_str().unwrap()], "");
    r.exit(0);
    assert!(r.stdout.contains("ok"), "{:?}", r.stdout);

    let syntax = policy_file(d, "syntax.toml", "version = \"t1\"", "version = \"t1");
    run(&data, &["policy", "check", syntax.to_str().unwrap()], "")
        .exit(1)
        .diagnostic(&syntax, Some(2), "error", "");
    let unknown = policy_file(
        d,
        "unknown.toml",
        "version = \"t1\"\n",
        "version = \"t1\"\ncolour = \"blue\"\n",
    );
    run(&data, &["policy", "check", unknown.to_str().unwrap()], "")
        .exit(1)
        .diagnostic(&unknown, Some(3), "error", "colour");
    let wrong_type = policy_file(
        d,
        "type.toml",
        "request_deadline_working_days = 10",
        "request_deadline_working_days = \"ten\"",
    );
    run(
        &data,
        &["policy", "check", wrong_type.to_str().unwrap()],
        "",
    )
    .exit(1)
    .diagnostic(&wrong_type, Some(6), "error", "");
    let dangling = policy_file(
        d,
        "dangling.toml",
        "purposes = [\"provision\", \"marketing\"]",
        "purposes = [\"provision\", \"telepathy\"]",
    );
    run(&data, &["policy", "check", dangling.to_str().unwrap()], "")
        .exit(1)
        .diagnostic(&dangling, Some(33), "error", "telepathy");
    let missing = d.join("no-such-policy.toml");
    run(&data, &["policy", "check", missing.to_str().unwrap()], "")
        .exit(1)
        .diagnostic(&missing, Some(1), "error", "cannot read");
    let binary = d.join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x01]).unwrap();
    run(&data, &["policy", "check", binary.to_str().unwrap()], "")
        .exit(1)
        .diagnostic(&binary, Some(1), "error", "");

    // With --json the errors come as one object on stdout.
    let r = run(
        &data,
        &["--json", "policy", "check", dangling.to_str().unwrap()],
        "",
    );
    r.exit(1);
    let v = r.json();
    assert_eq!(v["ok"], false);
    let errors = v["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e
            .as_str()
            .unwrap()
            .starts_with(&format!("{}:33:", dangling.display()))),
        "{v}"
    );

    // Privacy Shield is no safeguard: a warning at its line, but the file passes.
    let shield = policy_file(
        d,
        "shield.toml",
        "country = \"GB\"\n",
        "country = \"US\"\nsafeguard = \"EU-US Privacy Shield\"\n",
    );
    run(&data, &["policy", "check", shield.to_str().unwrap()], "")
        .exit(0)
        .diagnostic(&shield, Some(23), "warning", "Privacy Shield");
    // The shipped policy passes, and warns about its Privacy Shield recipients.
    let default = default_policy();
    run(&data, &["policy", "check", default.to_str().unwrap()], "")
        .exit(0)
        .diagnostic(&default, None, "warning", "Privacy Shield");
    // `policy check` does not touch the data directory.
    assert!(!data.exists());
}

#[test]
fn admin_commands_refuse_bad_input_and_create_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let pw = format!("{PASSWORD}\n");
    let user = |extra: &[&str]| {
        let mut a = vec![
            "admin",
            "create-user",
            "--tenant",
            "provider",
            "--username",
            "cli-user",
            "--password-stdin",
        ];
        a.extend_from_slice(extra);
        a.into_iter().map(str::to_owned).collect::<Vec<_>>()
    };
    let runs = |args: Vec<String>, stdin: &str| {
        run(
            &data,
            &args.iter().map(String::as_str).collect::<Vec<_>>(),
            stdin,
        )
    };

    runs(user(&["--role", "boss"]), &pw)
        .exit(2)
        .stderr_has("role")
        .stderr_has("boss");
    runs(user(&["--role", "subject", "--email", "not-an-email"]), &pw)
        .exit(2)
        .stderr_has("email");
    runs(
        user(&["--role", "subject", "--phone", "call me maybe"]),
        &pw,
    )
    .exit(2)
    .stderr_has("phone");
    runs(user(&["--role", "subject"]), "short\n")
        .exit(2)
        .stderr_has("password")
        .stderr_has("too short");
    runs(user(&["--role", "subject"]), "")
        .exit(2)
        .stderr_has("password");
    runs(
        user(&["--role", "subject", "--display-name", &"x".repeat(201)]),
        &pw,
    )
    .exit(2)
    .stderr_has("display_name");
    // A well-formed user for a tenant that does not exist is refused (3), not bad input.
    let mut other = user(&["--role", "subject"]);
    other[3] = "no-such-tenant".into();
    runs(other, &pw).exit(3).stderr_has("tenant not found");
    // The command line itself: a missing flag is a usage error (clap's 2).
    run(
        &data,
        &[
            "admin",
            "create-user",
            "--tenant",
            "provider",
            "--role",
            "subject",
        ],
        &pw,
    )
    .exit(2)
    .stderr_has("--username");
    run(&data, &["admin", "create-tenant", "--name", ""], "")
        .exit(2)
        .stderr_has("name");
    run(&data, &["admin", "create-tenant", "--name", "   "], "")
        .exit(2)
        .stderr_has("name");
    run(
        &data,
        &["admin", "create-tenant", "--name", &"n".repeat(201)],
        "",
    )
    .exit(2)
    .stderr_has("name");
    run(
        &data,
        &[
            "admin",
            "create-tenant",
            "--name",
            "Acme",
            "--customer-number",
            "C 1",
        ],
        "",
    )
    .exit(2)
    .stderr_has("customer_number");
    run(&data, &["admin", "create-tenant"], "")
        .exit(2)
        .stderr_has("--name");
    // A global setting with a value outside its set names the flag and the value.
    run(
        &data,
        &[
            "--chat-synchronous-commit",
            "sometimes",
            "admin",
            "create-tenant",
            "--name",
            "Acme",
        ],
        "",
    )
    .exit(2)
    .stderr_has("--chat-synchronous-commit")
    .stderr_has("sometimes")
    .stderr_has("on or off");

    // Nothing was created by any of that.
    {
        let (core, _) = Steward::open(Settings {
            data_dir: data.clone(),
            ..Settings::default()
        })
        .unwrap();
        let count = |t: &str| {
            core.db
                .read(|c| c.query(&format!("SELECT COUNT(*) FROM {t}"), &[]))
                .unwrap()[0]
                .i64(0)
                .unwrap()
        };
        assert_eq!(count("tenants"), 1, "only the provider tenant");
        for t in [
            "accounts",
            "subjects",
            "audit_log",
            "sessions",
            "consent_events",
        ] {
            assert_eq!(count(t), 0, "{t}");
        }
    }

    // Success: --json prints one JSON object with an id.
    let r = run(
        &data,
        &[
            "--json",
            "admin",
            "create-tenant",
            "--name",
            "Acme",
            "--customer-number",
            "AC-1",
        ],
        "",
    );
    let tenant = r.exit(0).json();
    let tenant_id = tenant["id"].as_str().expect("id").to_owned();
    assert_eq!(tenant["name"], "Acme");
    let r = run(
        &data,
        &[
            "--json",
            "admin",
            "create-user",
            "--tenant",
            &tenant_id,
            "--username",
            "cli-user",
            "--role",
            "subject",
            "--email",
            "cli-user@example.test",
            "--password-stdin",
        ],
        &pw,
    );
    let account = r.exit(0).json();
    assert!(
        account["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{account}"
    );
    assert_eq!(account["tenant_id"], tenant_id.as_str());
    // The same customer number again is a conflict (3) and changes nothing.
    run(
        &data,
        &[
            "admin",
            "create-tenant",
            "--name",
            "Acme again",
            "--customer-number",
            "AC-1",
        ],
        "",
    )
    .exit(3)
    .stderr_has("AC-1");

    let (core, _) = Steward::open(Settings {
        data_dir: data.clone(),
        ..Settings::default()
    })
    .unwrap();
    let listed = tenants::list(&core, &Actor::cli()).unwrap();
    let mut names: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(names, ["Acme", "Provider"]);
    let count = |t: &str| {
        core.db
            .read(|c| c.query(&format!("SELECT COUNT(*) FROM {t}"), &[]))
            .unwrap()[0]
            .i64(0)
            .unwrap()
    };
    assert_eq!(
        (count("accounts"), count("subjects"), count("audit_log")),
        (1, 1, 2)
    );
}

#[test]
fn policy_render_writes_three_files_or_names_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let out = dir.path().join("notice");
    let r = run(
        &data,
        &["policy", "render", "--out", out.to_str().unwrap()],
        "",
    );
    r.exit(0);
    for name in ["privacy-notice.md", "privacy-notice.html", "article30.csv"] {
        let f = out.join(name);
        let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        assert!(text.len() > 100, "{name} is nearly empty");
        assert!(
            r.stdout.contains(name),
            "stdout lacks {name}: {:?}",
            r.stdout
        );
    }
    assert!(
        std::fs::read_to_string(out.join("privacy-notice.md"))
            .unwrap()
            .contains("Pure Cloud Solutions")
    );

    // Under a regular file nothing can be written: exit 2, naming the path.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, "not a folder").unwrap();
    let bad = blocker.join("notice");
    run(
        &data,
        &["policy", "render", "--out", bad.to_str().unwrap()],
        "",
    )
    .exit(2)
    .stderr_has(bad.to_str().unwrap());
    // A broken policy file is reported with its position, and nothing is written.
    let broken = policy_file(dir.path(), "broken.toml", "version = \"t1\"", "version = ");
    let out2 = dir.path().join("notice2");
    run(
        &data,
        &[
            "--policy",
            broken.to_str().unwrap(),
            "policy",
            "render",
            "--out",
            out2.to_str().unwrap(),
        ],
        "",
    )
    .exit(2)
    .diagnostic(&broken, Some(2), "error", "");
    assert!(!out2.exists());
}
