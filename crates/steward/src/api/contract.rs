//! The OpenAPI document as the exact contract: what every route shares is added
//! here once, from what the route declares, instead of by hand on each route.
//!
//! Each handler declares its own answers (its success, and the refusals its
//! domain operation gives: 403, 404, 409, …). The answers that come from the
//! extractors and layers every route passes through are added below, by rule:
//!
//! | the operation has                  | it can also answer                                  |
//! |------------------------------------|-----------------------------------------------------|
//! | `security` (the `Authed` extractor) | 401: no token, or one unknown, expired or revoked  |
//! | parameters or a request body       | 400: a parameter or the body malformed              |
//! | path parameters                    | 404: no such resource (or not one the caller sees) |
//! | a JSON request body                | 413 (over [`MAX_JSON_BODY`](super::MAX_JSON_BODY)), 415 (not JSON) |
//! | anything                           | 500 (see the server log), 503 with `Retry-After` (the database is busy or unreachable, or its disk is full) |
//!
//! Path ids share one rule too: `{tenant_id}` is a UUID or `provider`, `{call_id}` 32
//! hexadecimal digits (as call record ingest returns them), every other `{…_id}` a UUID
//! (Steward's ids are UUIDv7).
//!
//! A route that answers something else declares it itself; the contract test
//! (`tests/contract.rs`, Schemathesis) fails on any answer the document does
//! not declare.
//!
//! Constraints that depend on the running server (the policy's categories,
//! purposes and recipients; configured sizes) cannot be written in a handler's
//! attributes: [`FILLS`] names each such place in the document and what fills
//! it, at start-up, from the policy and settings the server runs with.

use serde_json::{Map, Value, json};

use crate::chat;
use crate::core::Steward;

/// A place in the document: `schema:Name.property` (a property of a component
/// schema) or `param:METHOD /path name` (a parameter of an operation, path as
/// the document writes it, without `/api/v1`).
type Target = &'static str;

/// What the running server puts at a [`Target`]: JSON Schema keywords merged
/// into what is there.
type Fill = fn(&Steward) -> Value;

/// Every constraint the running policy or settings decide, and the forms a domain
/// module defines (cursors), taken from its own constants.
const FILLS: &[(Target, Fill)] = &[
    (
        "param:GET /subjects/{subject_id} purpose",
        |core| json!({"enum": purposes_of(core, "contact_details")}),
    ),
    ("schema:ExportRequest.recipient", |core| {
        let mut allowed: Vec<Value> = recipients_of(core, "contact_details")
            .into_iter()
            .map(Value::String)
            .collect();
        allowed.push(Value::Null);
        json!({ "enum": allowed })
    }),
    (
        "schema:SendMessage.body",
        |core| json!({"maxLength": core.settings.chat_max_message_bytes}),
    ),
    (
        "param:GET /tenants/{tenant_id}/chat/conversations purpose",
        |core| json!({"enum": purposes_of(core, chat::CATEGORY)}),
    ),
    (
        "param:GET /tenants/{tenant_id}/chat/conversations/{conversation_id}/messages purpose",
        |core| json!({"enum": purposes_of(core, chat::CATEGORY)}),
    ),
    // Names and ids as the server checks them, by the shared forms below
    // (`line` only where `crm::text` checks: it counts before it trims).
    ("schema:CreditCheckRequest.name", |_| {
        line(crate::crm::credit::MAX_NAME)
    }),
    ("schema:CreditResult.reference", |_| {
        line(crate::crm::credit::MAX_REFERENCE)
    }),
    ("param:POST /subjects/{subject_id}/media name", |_| {
        file_name()
    }),
    (
        "param:POST /chat/conversations/{conversation_id}/attachments name",
        |_| file_name(),
    ),
    ("schema:CookieChoice.visitor_id", |_| visitor_id()),
    (
        "schema:StaffEnquiry.channel",
        |_| json!({"enum": ["phone", "email", "letter"]}),
    ),
    (
        "schema:NewCallRecord.start",
        |_| json!({"minimum": 0, "maximum": crate::ingest::cdr::MAX_TIME}),
    ),
    ("schema:Visit.visitor_id", |_| visitor_id()),
    (
        "param:GET /usage-statistics/report from",
        |_| json!({"format": "date"}),
    ),
    (
        "param:GET /usage-statistics/report to",
        |_| json!({"format": "date"}),
    ),
    (
        "param:GET /tenants/{tenant_id}/usage month",
        |_| json!({"pattern": "^[0-9]{4}-(0[1-9]|1[0-2])$"}),
    ),
    (
        "param:GET /tenants/{tenant_id}/directory/sync since",
        |_| json!({"pattern": crate::directory::SYNC_TOKEN_PATTERN}),
    ),
    ("schema:AddMember.subject_id", |_| json!({"format": "uuid"})),
    ("schema:CreateUser.username", |_| username()),
    ("schema:CreateUser.password", |_| {
        json!({
            "minLength": steward_crypto::password::MIN_LEN,
            "maxLength": steward_crypto::password::MAX_LEN,
        })
    }),
    ("schema:CreateRequest.subject_username", |_| username()),
    ("schema:CreateConversation.title", |_| {
        line(chat::MAX_TITLE_CHARS)
    }),
    ("schema:VerifyBody.method", |_| {
        line(crate::rights::MAX_VERIFY_METHOD)
    }),
    (
        "schema:RectifyBody.field",
        |_| json!({"enum": ["email", "phone", "name"]}),
    ),
    ("schema:CookieChoice.necessary", |_| json!({"enum": [true]})),
    (
        "schema:UsageEvent.feature",
        |_| json!({"enum": crate::analytics::usage::FEATURES}),
    ),
    (
        "schema:UsageEvent.count",
        |_| json!({"minimum": 1, "maximum": crate::analytics::usage::MAX_COUNT}),
    ),
    (
        "schema:Submission.events",
        |_| json!({"minItems": 1, "maxItems": crate::analytics::usage::MAX_EVENTS}),
    ),
    (
        "schema:Submission.app_version",
        |_| json!({"pattern": "^[0-9]{1,4}\\.[0-9]{1,4}(\\.[0-9]{1,4})?$"}),
    ),
    (
        "schema:Submission.platform",
        |_| json!({"enum": crate::analytics::usage::PLATFORMS}),
    ),
    // Cursors: fixed forms, declared from the chat module's own patterns.
    (
        "param:GET /chat/conversations cursor",
        |_| json!({"pattern": chat::CONVERSATION_CURSOR_PATTERN}),
    ),
    (
        "param:GET /tenants/{tenant_id}/chat/conversations cursor",
        |_| json!({"pattern": chat::CONVERSATION_CURSOR_PATTERN}),
    ),
    (
        "param:GET /chat/conversations/{conversation_id}/messages cursor",
        |_| json!({"pattern": chat::MESSAGE_CURSOR_PATTERN}),
    ),
    (
        "param:GET /tenants/{tenant_id}/chat/conversations/{conversation_id}/messages cursor",
        |_| json!({"pattern": chat::MESSAGE_CURSOR_PATTERN}),
    ),
];

/// The purposes the policy declares for `category`.
fn purposes_of(core: &Steward, category: &str) -> Vec<String> {
    core.policy
        .category(category)
        .map(|c| c.purposes.clone())
        .unwrap_or_default()
}

/// The recipients the policy declares for `category`.
fn recipients_of(core: &Steward, category: &str) -> Vec<String> {
    core.policy
        .category(category)
        .map(|c| c.recipients.clone())
        .unwrap_or_default()
}

/// Code points no text field takes: C0 and C1 controls and DEL (Rust's
/// `char::is_control`), as a character-class body.
const CONTROLS: &str = "\\x00-\\x1f\\x7f-\\x9f";

/// A required one-line text of at most `max` characters: not blank, no
/// control characters (line breaks among them). The server trims it and
/// counts its length before trimming.
fn line(max: usize) -> Value {
    json!({
        "minLength": 1,
        "maxLength": max,
        "pattern": format!("^[^{CONTROLS}]*[^\\s{CONTROLS}][^{CONTROLS}]*$"),
    })
}

/// A file name as a client sends it: 1 to 255 characters, no control
/// characters (kept as sent, not trimmed).
fn file_name() -> Value {
    json!({"minLength": 1, "maxLength": 255, "pattern": format!("^[^{CONTROLS}]*$")})
}

/// A username as `normalize::username` takes it: 1 to 64 of `a-z 0-9 . _ @ -`
/// (capitals are lowered), with any spaces around it trimmed.
fn username() -> Value {
    json!({"pattern": format!(
        "^\\s*[A-Za-z0-9._@-]{{1,{}}}\\s*$",
        steward_crypto::normalize::USERNAME_MAX_LEN
    )})
}

/// The website's visitor id.
fn visitor_id() -> Value {
    json!({"pattern": format!(
        "^[A-Za-z0-9_-]{{{},{}}}$",
        crate::analytics::web::VISITOR_ID_MIN,
        crate::analytics::web::VISITOR_ID_MAX
    )})
}

/// Fills every [`FILLS`] target from `core`'s policy and settings. A target
/// the document lacks is a defect (a renamed schema or parameter) and panics at
/// start-up in debug builds, so every test that starts a server checks them.
pub(crate) fn fill(doc: &mut Value, core: &Steward) {
    for (target, f) in FILLS {
        let found = locate(doc, target).map(|slot| merge(slot, f(core)));
        debug_assert!(
            found.is_some(),
            "contract fill target {target} is not in the document"
        );
    }
    for (method, path, types) in FILE_RESPONSES {
        let found = file_response(doc, method, path, types);
        debug_assert!(
            found.is_some(),
            "contract file response {method} {path} is not in the document"
        );
    }
}

/// Routes that answer with a stored file in the type found in its content
/// when it was uploaded: their 200 declares each type the upload takes
/// (utoipa writes one).
const FILE_RESPONSES: &[(&str, &str, &[&str])] = &[
    ("get", "/media/{media_id}/content", crate::media::TYPES),
    (
        "get",
        "/chat/attachments/{attachment_id}/content",
        chat::attachments::TYPES,
    ),
    (
        "get",
        "/recordings/{recording_id}/content",
        crate::recordings::TYPES,
    ),
];

fn file_response(doc: &mut Value, method: &str, path: &str, types: &[&str]) -> Option<()> {
    let ok = doc
        .get_mut("paths")?
        .get_mut(format!("/api/v1{path}"))?
        .get_mut(method)?
        .get_mut("responses")?
        .get_mut("200")?
        .as_object_mut()?;
    let content: Map<String, Value> = types
        .iter()
        .map(|t| {
            (
                (*t).to_owned(),
                json!({"schema": {"type": "string", "format": "binary"}}),
            )
        })
        .collect();
    ok.insert("content".into(), Value::Object(content));
    Some(())
}

fn locate<'a>(doc: &'a mut Value, target: &str) -> Option<&'a mut Value> {
    if let Some(rest) = target.strip_prefix("schema:") {
        let (name, prop) = rest.split_once('.')?;
        return doc.pointer_mut(&format!("/components/schemas/{name}/properties/{prop}"));
    }
    let rest = target.strip_prefix("param:")?;
    let (method, rest) = rest.split_once(' ')?;
    let (path, name) = rest.rsplit_once(' ')?;
    let op = doc
        .get_mut("paths")?
        .get_mut(format!("/api/v1{path}"))?
        .get_mut(method.to_ascii_lowercase())?;
    op.get_mut("parameters")?
        .as_array_mut()?
        .iter_mut()
        .find(|p| p.get("name").and_then(Value::as_str) == Some(name))?
        .get_mut("schema")
}

fn merge(slot: &mut Value, add: Value) {
    if let (Some(slot), Value::Object(add)) = (slot.as_object_mut(), add) {
        slot.extend(add);
    }
}

const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// The answer every route may give for `status`, by rule, with its description.
fn shared(status: &str) -> Value {
    let description = match status {
        "400" => "invalid: a parameter or the body is malformed; `field` names it",
        "401" => "unauthenticated: no bearer token, or one that is unknown, expired or revoked",
        "404" => "not_found: no such resource, or none the caller may see",
        "413" => "payload_too_large: the body is over the limit",
        "415" => "the body is not sent as Content-Type: application/json",
        "500" => "internal: see the server log",
        "503" => {
            "busy (the database is busy or unreachable) or storage_full (its disk is full; nothing was written); retry after the time given"
        }
        _ => "an error",
    };
    let mut response = json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    });
    if status == "503" {
        response["headers"] = json!({
            "Retry-After": {
                "description": "seconds to wait before retrying",
                "schema": {"type": "integer", "minimum": 1},
            }
        });
    }
    response
}

/// Adds the shared answers to every operation of `doc` (an OpenAPI 3.1
/// document as JSON) that lacks them, and mends two things utoipa writes
/// that do not say what the server does (see [`binary_body`] and
/// [`open_flattened`]).
pub(crate) fn complete(doc: &mut Value) {
    open_flattened(doc);
    complete_operations(doc);
}

/// A type that flattens (`#[serde(flatten)]`) a type that refuses unknown
/// fields is written as `allOf: [{$ref: Inner}, {…own fields}]`, and the
/// inner `additionalProperties: false` then forbids the outer type's own
/// fields: no value could match. The reference is replaced by a copy of the
/// inner schema without that keyword.
fn open_flattened(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .cloned()
    else {
        return;
    };
    let Some(targets) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for schema in targets.values_mut() {
        for part in schema
            .get_mut("allOf")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            let inner = part
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| r.strip_prefix("#/components/schemas/"))
                .and_then(|name| schemas.get(name));
            if let Some(mut copy) = inner
                .filter(|i| i.get("additionalProperties") == Some(&Value::Bool(false)))
                .cloned()
            {
                copy.as_object_mut()
                    .map(|o| o.remove("additionalProperties"));
                *part = copy;
            }
        }
    }
}

/// A raw upload (`request_body(content = Vec<u8>, content_type = "audio/wav")`)
/// is written as an array of integers, which no client can send as a WAV file
/// or an image. It is what the server reads: the body's bytes.
fn binary_body(op: &mut Map<String, Value>) {
    for (media, content) in op
        .get_mut("requestBody")
        .and_then(|b| b.get_mut("content"))
        .and_then(Value::as_object_mut)
        .into_iter()
        .flatten()
    {
        let bytes = content.pointer("/schema/type") == Some(&json!("array"))
            && content.pointer("/schema/items/type") == Some(&json!("integer"));
        if bytes && !media.contains("json") {
            content["schema"] = json!({"type": "string", "format": "binary"});
        }
    }
}

fn complete_operations(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for method in METHODS {
            if let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) {
                complete_operation(op);
            }
        }
    }
}

/// The schema of a path id, by its name (see the module's documentation).
fn path_id(name: &str) -> Option<Value> {
    const UUID: &str = "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}";
    Some(match name {
        "tenant_id" => json!({
            "type": "string",
            "pattern": format!("^(provider|{UUID})$"),
            "description": "a tenant id, or `provider` for the provider's own staff",
        }),
        "call_id" => json!({"type": "string", "pattern": "^[0-9a-fA-F]{32}$"}),
        n if n.ends_with("_id") => json!({"type": "string", "format": "uuid"}),
        _ => return None,
    })
}

fn complete_operation(op: &mut Map<String, Value>) {
    binary_body(op);
    for param in op
        .get_mut("parameters")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        if param.get("in").and_then(Value::as_str) != Some("path") {
            continue;
        }
        if let Some(schema) = param.get("name").and_then(Value::as_str).and_then(path_id) {
            param["schema"] = schema;
        }
    }
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let params: Vec<&str> = op
        .get("parameters")
        .and_then(Value::as_array)
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p.get("in").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let in_path = params.contains(&"path");
    let has_params = !params.is_empty();
    let body_types: Vec<String> = op
        .get("requestBody")
        .and_then(|b| b.get("content"))
        .and_then(Value::as_object)
        .map(|c| c.keys().cloned().collect())
        .unwrap_or_default();
    let json_body = body_types.iter().any(|t| t == "application/json");

    let mut add: Vec<&str> = Vec::new();
    if secured {
        add.push("401");
    }
    if has_params || !body_types.is_empty() {
        add.push("400");
    }
    if in_path {
        add.push("404");
    }
    if json_body {
        add.extend(["413", "415"]);
    }
    add.extend(["500", "503"]);

    let responses = op
        .entry("responses")
        .or_insert_with(|| json!({}))
        .as_object_mut();
    let Some(responses) = responses else {
        return;
    };
    for status in add {
        responses
            .entry(status.to_owned())
            .or_insert_with(|| shared(status));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn adds_by_rule_and_keeps_what_a_route_declares() {
        let mut doc = json!({"paths": {
            "/a/{id}": {"post": {
                "security": [{"bearer": []}],
                "parameters": [
                    {"name": "id", "in": "path", "schema": {"type": "string"}},
                    {"name": "tenant_id", "in": "path", "schema": {"type": "string"}},
                    {"name": "media_id", "in": "path", "schema": {"type": "string"}},
                ],
                "requestBody": {"content": {"application/json": {}}},
                "responses": {"201": {"description": "made"}, "404": {"description": "mine"}},
            }},
            "/public": {"get": {"responses": {"200": {"description": "ok"}}}},
        }});
        complete(&mut doc);
        let a = doc["paths"]["/a/{id}"]["post"]["responses"]
            .as_object()
            .unwrap();
        let codes: Vec<&str> = a.keys().map(String::as_str).collect();
        assert_eq!(
            codes,
            ["201", "400", "401", "404", "413", "415", "500", "503"]
        );
        assert_eq!(
            a["404"]["description"], "mine",
            "a route's own answer stays"
        );
        assert!(a["503"]["headers"]["Retry-After"].is_object());
        let params = &doc["paths"]["/a/{id}"]["post"]["parameters"];
        assert_eq!(
            params[0]["schema"],
            json!({"type": "string"}),
            "not an id by name"
        );
        assert_eq!(
            params[1]["schema"]["pattern"],
            format!(
                "^(provider|{})$",
                "[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
            )
        );
        assert_eq!(params[2]["schema"]["format"], "uuid");
        let public = doc["paths"]["/public"]["get"]["responses"]
            .as_object()
            .unwrap();
        let codes: Vec<&str> = public.keys().map(String::as_str).collect();
        assert_eq!(codes, ["200", "500", "503"], "no 401, 400 or 404 by rule");
    }

    #[test]
    fn uploads_are_bytes_and_flattened_closed_schemas_open() {
        let mut doc = json!({
            "paths": {"/up": {"post": {"requestBody": {"content": {
                "audio/wav": {"schema": {"type": "array", "items": {"type": "integer"}}},
                "application/json": {"schema": {"type": "array", "items": {"type": "integer"}}},
            }}, "responses": {}}}},
            "components": {"schemas": {
                "Inner": {"type": "object", "additionalProperties": false,
                          "properties": {"a": {"type": "string"}}},
                "Outer": {"allOf": [{"$ref": "#/components/schemas/Inner"},
                                    {"type": "object", "properties": {"id": {"type": "string"}}}]},
            }},
        });
        complete(&mut doc);
        let content = &doc["paths"]["/up"]["post"]["requestBody"]["content"];
        assert_eq!(
            content["audio/wav"]["schema"],
            json!({"type": "string", "format": "binary"})
        );
        assert_eq!(content["application/json"]["schema"]["type"], "array");
        let outer = &doc["components"]["schemas"]["Outer"]["allOf"][0];
        assert_eq!(outer["properties"]["a"]["type"], "string");
        assert!(outer.get("additionalProperties").is_none());
        assert_eq!(
            doc["components"]["schemas"]["Inner"]["additionalProperties"], false,
            "the inner type itself stays closed"
        );
    }

    #[test]
    fn text_forms_match_what_the_server_takes() {
        let pattern = |v: Value| regex::Regex::new(v["pattern"].as_str().unwrap()).unwrap();
        let l = pattern(line(200));
        for ok in ["a", " a ", "Acme Ltd", "é"] {
            assert!(l.is_match(ok), "{ok:?}");
            assert!(crate::crm::required_text("f", ok, 200, false).is_ok());
        }
        for bad in ["", "  ", "a\nb", "a\u{7}", "\u{85}x"] {
            assert!(!l.is_match(bad), "{bad:?}");
            assert!(crate::crm::required_text("f", bad, 200, false).is_err());
        }
        let f = pattern(file_name());
        assert!(f.is_match("holiday.jpg") && !f.is_match("a\u{0}b"));
        let v = pattern(visitor_id());
        assert!(v.is_match(&"a".repeat(16)) && !v.is_match(&"a".repeat(15)));
    }
}
