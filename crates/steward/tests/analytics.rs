//! Usage statistics (consent-gated, anonymous from the outset, small cells
//! suppressed) and the website's cookie consent and visit collector (nothing
//! stored without analytics consent; withdrawal deletes what was stored), on
//! both databases; and, through the real binary, that no identifier of the
//! submitting user reaches the data directory or the server's log.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{Env, Server, provider_staff, seed_tenant};
use serde_json::{Value, json};
use steward::access::{Actor, Role};
use steward::accounts;
use steward::analytics::web::VISITOR_ID_KIND;
use steward::consent::{self, Action, Channel, Record};
use steward::core::fields;
use steward_store::params;

/// The address the tests' clients connect from (any 127/8 address is local on
/// Linux): distinctive, so that a scan for it finds only what the request left.
const USER_IP: &str = "127.83.41.7";
const VISITOR_IP: &str = "127.61.22.5";
const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

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

/// Runs blocking domain code from a test's async body (the sync PostgreSQL
/// client must not run on a runtime thread).
fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

fn count(env: &Env, sql: &str, args: &[steward_store::Value]) -> i64 {
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

fn usage_rows(env: &Env) -> Vec<Vec<String>> {
    sync(|| {
        env.core
            .db
            .read(|c| {
                c.query(
                    "SELECT day, feature, platform, app_version, count FROM usage_stats \
                 ORDER BY day, feature, platform, app_version",
                    &[],
                )
            })
            .unwrap()
            .iter()
            .map(|r| {
                vec![
                    r.text(0).unwrap(),
                    r.text(1).unwrap(),
                    r.text(2).unwrap(),
                    r.text(3).unwrap(),
                    r.i64(4).unwrap().to_string(),
                ]
            })
            .collect()
    })
}

fn today() -> String {
    time::OffsetDateTime::now_utc().date().to_string()
}

fn usage_body(events: &[(&str, i64)]) -> Value {
    json!({
        "events": events.iter().map(|(f, c)| json!({"feature": f, "count": c})).collect::<Vec<_>>(),
        "app_version": "4.2.1",
        "platform": "ios",
    })
}

fn usage_consent(env: &Env, subject: &str, me: &Actor, purpose: &str, action: Action) {
    sync(|| {
        consent::record(
            &env.core,
            me,
            Record {
                subject_id: subject.to_owned(),
                category: "usage_statistics".into(),
                purpose: purpose.into(),
                action,
                channel: Channel::App,
                evidence: None,
            },
        )
        .unwrap()
    });
}

async fn usage_scenario(env: &Env) {
    let core = env.core.clone();
    let t = sync(|| seed_tenant(&core, "usage"));
    let dpo = sync(|| provider_staff(&core, "usage-staff-dpo", Role::Dpo));
    let server = Server::start(core.clone()).await;
    let http = client_from(USER_IP);
    let base = server.base.clone();
    let user = &t.subject;
    let (s, login) = call(
        &http,
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": user.username, "password": common::PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    let me = sync(|| accounts::authenticate(&core, &token).unwrap());
    let submit = |events: Vec<(&'static str, i64)>| {
        let (http, base, token) = (http.clone(), base.clone(), token.clone());
        async move {
            call(
                &http,
                &base,
                "POST",
                "/api/v1/usage-statistics",
                Some(&token),
                Some(usage_body(&events)),
            )
            .await
        }
    };
    let rows = |env: &Env| count(env, "SELECT COUNT(*) FROM usage_stats", &[]);

    // Without consent: refused, nothing stored.
    let (s, body) = submit(vec![("dialpad", 3)]).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("consent_required")),
        "{body}"
    );
    assert_eq!(rows(env), 0);
    // Consent to one of the two purposes the counters serve is not enough.
    usage_consent(
        env,
        &user.subject_id,
        &me,
        "research_statistics",
        Action::Grant,
    );
    let (s, body) = submit(vec![("dialpad", 3)]).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("consent_required")),
        "{body}"
    );
    assert_eq!(rows(env), 0);
    // Without a token: 401.
    let (s, _) = call(
        &http,
        &base,
        "POST",
        "/api/v1/usage-statistics",
        None,
        Some(usage_body(&[("dialpad", 1)])),
    )
    .await;
    assert_eq!(s, 401);

    usage_consent(
        env,
        &user.subject_id,
        &me,
        "service_improvement",
        Action::Grant,
    );
    let audit_before = sync(|| {
        steward::audit::list(&core.db, 0, 100_000, None)
            .unwrap()
            .len()
    });
    let engaged_before = count(
        env,
        "SELECT last_engagement_at FROM subjects WHERE id = $1",
        params![user.subject_id.as_str()],
    );

    // With consent: day-level aggregates. 9 dialpad uses (suppressed later) and
    // 12 voicemail uses, in several submissions that add up.
    let (s, body) = submit(vec![("dialpad", 4), ("voicemail", 5)]).await;
    assert_eq!(s, 201, "{body}");
    assert_eq!(
        (body["stored"].as_bool(), body["day"].as_str()),
        (Some(true), Some(today().as_str()))
    );
    let (s, _) = submit(vec![("dialpad", 5), ("voicemail", 7)]).await;
    assert_eq!(s, 201);
    let (s, _) = submit(vec![("chat", 10)]).await;
    assert_eq!(s, 201);
    assert_eq!(
        usage_rows(env),
        vec![
            vec![
                today(),
                "chat".into(),
                "ios".into(),
                "4.2.1".into(),
                "10".into()
            ],
            vec![
                today(),
                "dialpad".into(),
                "ios".into(),
                "4.2.1".into(),
                "9".into()
            ],
            vec![
                today(),
                "voicemail".into(),
                "ios".into(),
                "4.2.1".into(),
                "12".into()
            ],
        ]
    );
    // The table has exactly these columns: nothing that could name the user,
    // their tenant, device, session or address, and no time finer than a day.
    assert_eq!(
        sync(|| core.db.column_names("usage_stats").unwrap()),
        ["day", "feature", "platform", "app_version", "count"]
    );
    // And no stored value carries one of the user's identifiers.
    let stored = format!("{:?}", usage_rows(env)).to_lowercase();
    for needle in [
        &user.subject_id,
        &user.id,
        &user.username,
        &t.tenant.id,
        &token,
        &USER_IP.to_owned(),
    ] {
        assert!(
            !stored.contains(&needle.to_lowercase()),
            "{needle} in usage_stats"
        );
    }
    // No audit entry, no retention touch: nothing records that this user sent usage.
    assert_eq!(
        sync(|| steward::audit::list(&core.db, 0, 100_000, None)
            .unwrap()
            .len()),
        audit_before
    );
    assert_eq!(
        count(
            env,
            "SELECT last_engagement_at FROM subjects WHERE id = $1",
            params![user.subject_id.as_str()]
        ),
        engaged_before
    );

    // Strict input: fixed features, bounded counts, no free text. Nothing stored.
    for (body, field) in [
        (usage_body(&[("user_jsmith", 1)]), "events[0].feature"),
        (usage_body(&[("dialpad", 0)]), "events[0].count"),
        (usage_body(&[("dialpad", 1001)]), "events[0].count"),
        (usage_body(&[]), "events"),
        (
            json!({"events": [{"feature": "dialpad", "count": 1}], "app_version": "4.2.1 (jsmith)", "platform": "ios"}),
            "app_version",
        ),
        (
            json!({"events": [{"feature": "dialpad", "count": 1}], "app_version": "4.2.1", "platform": "Jane's iPhone"}),
            "platform",
        ),
        (
            json!({"events": [{"feature": "dialpad", "count": 1}], "app_version": "4.2.1", "platform": "ios", "device_id": "abc"}),
            "device_id",
        ),
        (
            json!({"events": [{"feature": "dialpad", "count": "1"}], "app_version": "4.2.1", "platform": "ios"}),
            "events[0].count",
        ),
        (
            json!({"events": [{"feature": "dialpad", "count": 1}], "platform": "ios"}),
            "app_version",
        ),
    ] {
        let (s, resp) = call(
            &http,
            &base,
            "POST",
            "/api/v1/usage-statistics",
            Some(&token),
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            (s, resp["error"]["field"].as_str()),
            (400, Some(field)),
            "{body}: {resp}"
        );
    }
    assert_eq!(usage_rows(env).len(), 3);

    // The report: provider staff only; cells under 10 suppressed, no totals.
    let staff_token = server.login(&dpo.username).await;
    let path = format!(
        "/api/v1/usage-statistics/report?from={}&to={}",
        today(),
        today()
    );
    let (s, report) = call(&http, &base, "GET", &path, Some(&staff_token), None).await;
    assert_eq!(s, 200, "{report}");
    assert_eq!(report["min_count"], 10);
    let cells = report["cells"].as_array().unwrap();
    let cell = |f: &str| cells.iter().find(|c| c["feature"] == f).unwrap().clone();
    assert_eq!(
        (
            cell("dialpad")["count"].clone(),
            cell("dialpad")["suppressed"].clone()
        ),
        (Value::Null, json!(true))
    );
    assert_eq!(
        (
            cell("voicemail")["count"].clone(),
            cell("voicemail")["suppressed"].clone()
        ),
        (json!(12), json!(false))
    );
    assert_eq!(cell("chat")["count"], 10, "10 is shown");
    // Nothing from which the 9 could be recovered: no totals, and the number
    // appears nowhere in the answer.
    let keys: Vec<&String> = report.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["cells", "from", "min_count", "to"]);
    assert!(cells.iter().all(|c| c["count"] != 9));
    // The default range (the last 30 days) includes today.
    let (s, report) = call(
        &http,
        &base,
        "GET",
        "/api/v1/usage-statistics/report",
        Some(&staff_token),
        None,
    )
    .await;
    assert_eq!(
        (s, report["cells"].as_array().map(Vec::len)),
        (200, Some(3)),
        "{report}"
    );
    for (q, field) in [
        ("?from=2026-02-30", "from"),
        ("?from=2026-01-02&to=2026-01-01", "from"),
        ("?from=2020-01-01&to=2026-01-01", "from"),
    ] {
        let (s, body) = call(
            &http,
            &base,
            "GET",
            &format!("/api/v1/usage-statistics/report{q}"),
            Some(&staff_token),
            None,
        )
        .await;
        assert_eq!(
            (s, body["error"]["field"].as_str()),
            (400, Some(field)),
            "{q}: {body}"
        );
    }
    // Not for the user, nor for a customer tenant's operator or DPO.
    for who in [&t.subject, &t.operator, &t.dpo, &t.admin] {
        let tok = server.login(&who.username).await;
        let (s, body) = call(&http, &base, "GET", &path, Some(&tok), None).await;
        assert_eq!(s, 403, "{}: {body}", who.username);
    }

    // Withdrawal: refused again, nothing added.
    usage_consent(
        env,
        &user.subject_id,
        &me,
        "research_statistics",
        Action::Withdraw,
    );
    let (s, body) = submit(vec![("voicemail", 1)]).await;
    assert_eq!(
        (s, body["error"]["code"].as_str()),
        (403, Some("consent_required")),
        "{body}"
    );
    assert_eq!(cell("voicemail")["count"], 12);
    assert_eq!(usage_rows(env)[2][4], "12");
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_statistics_on_sqlite() {
    let env = Env::sqlite();
    usage_scenario(&env).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_statistics_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    usage_scenario(&env).await;
    sync(move || drop(env));
}

/// The visitor subject recorded for a visitor id, if any.
fn visitor_subject(env: &Env, visitor_id: &str) -> Option<String> {
    let idx = env.core.keys.blind_index(VISITOR_ID_KIND, visitor_id);
    sync(|| {
        env.core
            .db
            .read(|c| {
                c.query_opt(
                    "SELECT id FROM subjects WHERE visitor_idx = $1",
                    params![idx],
                )
            })
            .unwrap()
            .map(|r| r.text(0).unwrap())
    })
}

fn visits_of(env: &Env, subject: &str) -> Vec<[Option<String>; 4]> {
    sync(|| visits_of_now(env, subject))
}

fn visits_of_now(env: &Env, subject: &str) -> Vec<[Option<String>; 4]> {
    let key = env.core.subject_key(subject).unwrap();
    let open = |field: &str, b: Option<Vec<u8>>| {
        b.map(|b| fields::open(&key, &format!("web_visits.{field}"), subject, &b).unwrap())
    };
    env.core
        .db
        .read(|c| {
            c.query(
                "SELECT page_enc, referrer_domain_enc, ip_enc, browser_enc FROM web_visits \
                 WHERE subject_id = $1 ORDER BY id",
                params![subject],
            )
        })
        .unwrap()
        .iter()
        .map(|r| {
            [
                open("page", r.opt_bytes(0).unwrap()),
                open("referrer_domain", r.opt_bytes(1).unwrap()),
                open("ip", r.opt_bytes(2).unwrap()),
                open("browser", r.opt_bytes(3).unwrap()),
            ]
        })
        .collect()
}

/// The web_analytics purposes granted, sorted.
fn granted(env: &Env, subject: &str) -> Vec<String> {
    let (states, _) = sync(|| consent::overview(&env.core, &Actor::cli(), subject).unwrap());
    let mut g: Vec<String> = states
        .iter()
        .filter(|s| s.category == "web_analytics" && s.granted)
        .map(|s| s.purpose.clone())
        .collect();
    g.sort();
    g
}

fn choice(visitor: &str, analytics: bool, marketing: bool) -> Value {
    json!({"visitor_id": visitor, "necessary": true, "analytics": analytics, "marketing": marketing})
}

fn visit(visitor: &str) -> Value {
    json!({
        "visitor_id": visitor,
        "page": "https://www.pcs.test/pricing/teams?email=jane.probe@example.test#plans",
        "referrer": "https://search.referrer-probe.test/results?q=jane+probe",
        "user_agent": FIREFOX,
    })
}

async fn web_scenario(env: &Env) {
    let core = env.core.clone();
    let server = Server::start(core.clone()).await;
    let http = client_from(VISITOR_IP);
    let base = server.base.clone();
    let post = |path: &'static str, body: Value| {
        let (http, base) = (http.clone(), base.clone());
        async move { call(&http, &base, "POST", path, None, Some(body)).await }
    };
    let all_visits = |env: &Env| count(env, "SELECT COUNT(*) FROM web_visits", &[]);
    let visitors = |env: &Env| {
        count(
            env,
            "SELECT COUNT(*) FROM subjects WHERE kind = 'visitor'",
            &[],
        )
    };
    let vid = uuid::Uuid::now_v7().to_string();

    // Unknown visitor, no consent: nothing stored, and the answer says so.
    let (s, body) = post("/api/v1/web/visits", visit(&vid)).await;
    assert_eq!((s, body.clone()), (202, json!({"stored": false})), "{body}");
    assert_eq!((all_visits(env), visitors(env)), (0, 0));
    // Refusing everything records nobody.
    let (s, body) = post("/api/v1/web/consent", choice(&vid, false, false)).await;
    assert_eq!(
        (s, body["recorded"].as_bool()),
        (200, Some(false)),
        "{body}"
    );
    assert_eq!(visitors(env), 0);

    // Analytics consent: a visitor subject, two grants in the ledger (web channel).
    let (s, body) = post("/api/v1/web/consent", choice(&vid, true, false)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["recorded"], true);
    assert_eq!(
        body["changes"],
        json!([{"purpose": "research_statistics", "action": "grant"}, {"purpose": "service_improvement", "action": "grant"}])
    );
    let subject = visitor_subject(env, &vid).expect("visitor recorded");
    assert_eq!(visitors(env), 1);
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM subjects WHERE id = $1 AND tenant_id = 'provider' AND email_enc IS NULL",
            params![subject.as_str()]
        ),
        1
    );
    assert_eq!(
        granted(env, &subject),
        ["research_statistics", "service_improvement"]
    );
    let (_, history) = sync(|| consent::overview(&core, &Actor::cli(), &subject).unwrap());
    assert!(history.iter().all(|e| e.channel == Channel::Web));
    // The same choice again appends nothing.
    let (s, body) = post("/api/v1/web/consent", choice(&vid, true, false)).await;
    assert_eq!((s, body["changes"].clone()), (200, json!([])), "{body}");

    // Now the visit is stored: path only, domain only, the connection's address,
    // the browser reduced; sealed.
    let (s, body) = post("/api/v1/web/visits", visit(&vid)).await;
    assert_eq!((s, body.clone()), (201, json!({"stored": true})), "{body}");
    assert_eq!(
        visits_of(env, &subject),
        vec![[
            Some("/pricing/teams".to_owned()),
            Some("search.referrer-probe.test".to_owned()),
            Some(VISITOR_IP.to_owned()),
            Some("Firefox 128; Linux; desktop".to_owned()),
        ]]
    );
    // No user agent in the body: the header's is used.
    let (s, _) = post(
        "/api/v1/web/visits",
        json!({"visitor_id": vid, "page": "/contact"}),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(visits_of(env, &subject)[1][1], None);
    assert_eq!(all_visits(env), 2);

    // Marketing is recorded independently of analytics.
    let (s, body) = post("/api/v1/web/consent", choice(&vid, true, true)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        body["changes"],
        json!([{"purpose": "marketing", "action": "grant"}, {"purpose": "profiling", "action": "grant"}])
    );
    assert_eq!(all_visits(env), 2, "marketing leaves the visits alone");
    assert_eq!(
        granted(env, &subject),
        [
            "marketing",
            "profiling",
            "research_statistics",
            "service_improvement"
        ]
    );

    // Withdrawing analytics: withdrawals recorded, the stored visits deleted,
    // marketing still granted, and no further visit stored.
    let (s, body) = post("/api/v1/web/consent", choice(&vid, false, true)).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["visits_deleted"], 2);
    assert_eq!(
        body["changes"],
        json!([{"purpose": "research_statistics", "action": "withdraw"}, {"purpose": "service_improvement", "action": "withdraw"}])
    );
    assert_eq!(all_visits(env), 0);
    assert_eq!(granted(env, &subject), ["marketing", "profiling"]);
    let (s, body) = post("/api/v1/web/visits", visit(&vid)).await;
    assert_eq!((s, body["stored"].as_bool()), (202, Some(false)));
    assert_eq!(all_visits(env), 0);
    let deletions: Vec<_> = sync(|| steward::audit::list(&core.db, 0, 100_000, None))
        .unwrap()
        .into_iter()
        .filter(|e| e.subject_id.as_deref() == Some(subject.as_str()) && e.action == "delete")
        .collect();
    assert_eq!(deletions.len(), 1, "{deletions:?}");
    assert_eq!(deletions[0].detail["rows"], 2);
    assert_eq!(deletions[0].category.as_deref(), Some("web_analytics"));

    // A withdrawal recorded elsewhere (staff, from a letter) also stops
    // collection, and the next reported visit removes what was stored before.
    let (s, _) = post("/api/v1/web/consent", choice(&vid, true, true)).await;
    assert_eq!(s, 200);
    let (s, _) = post("/api/v1/web/visits", visit(&vid)).await;
    assert_eq!(s, 201);
    assert_eq!(all_visits(env), 1);
    sync(|| {
        consent::record(
            &core,
            &Actor::cli(),
            Record {
                subject_id: subject.clone(),
                category: "web_analytics".into(),
                purpose: "service_improvement".into(),
                action: Action::Withdraw,
                channel: Channel::Letter,
                evidence: None,
            },
        )
        .unwrap()
    });
    let (s, _) = post("/api/v1/web/visits", visit(&vid)).await;
    assert_eq!(s, 202);
    assert_eq!(all_visits(env), 0);

    // Marketing consent alone never lets visits in.
    let other = uuid::Uuid::now_v7().simple().to_string();
    let (s, body) = post("/api/v1/web/consent", choice(&other, false, true)).await;
    assert_eq!((s, body["recorded"].as_bool()), (200, Some(true)), "{body}");
    let (s, _) = post("/api/v1/web/visits", visit(&other)).await;
    assert_eq!(s, 202);
    assert_eq!(all_visits(env), 0);
    let other_subject = visitor_subject(env, &other).unwrap();
    assert_eq!(granted(env, &other_subject), ["marketing", "profiling"]);

    // Malformed bodies: 400 naming the field, nothing stored or recorded.
    let ledger = count(env, "SELECT COUNT(*) FROM consent_events", &[]);
    let subjects_before = count(env, "SELECT COUNT(*) FROM subjects", &[]);
    let fresh = uuid::Uuid::now_v7().to_string();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "/api/v1/web/consent",
            json!({"necessary": true, "analytics": true, "marketing": false}),
            "visitor_id",
        ),
        (
            "/api/v1/web/consent",
            choice("short", true, false),
            "visitor_id",
        ),
        (
            "/api/v1/web/consent",
            choice("has spaces in it, 1234", true, false),
            "visitor_id",
        ),
        (
            "/api/v1/web/consent",
            json!({"visitor_id": fresh, "necessary": false, "analytics": true, "marketing": false}),
            "necessary",
        ),
        (
            "/api/v1/web/consent",
            json!({"visitor_id": fresh, "necessary": true, "analytics": "yes", "marketing": false}),
            "analytics",
        ),
        (
            "/api/v1/web/consent",
            json!({"visitor_id": fresh, "necessary": true, "analytics": true}),
            "marketing",
        ),
        (
            "/api/v1/web/consent",
            json!({"visitor_id": fresh, "necessary": true, "analytics": true, "marketing": false, "email": "x@y.test"}),
            "email",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": "pricing"}),
            "page",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": format!("/{}", "a".repeat(600))}),
            "page",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": "/a", "referrer": "not a url"}),
            "referrer",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": "/a", "user_agent": "x".repeat(1025)}),
            "user_agent",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": "/a", "user_agent": "bad\u{7}agent"}),
            "user_agent",
        ),
        ("/api/v1/web/visits", json!({"visitor_id": vid}), "page"),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": 42, "page": "/a"}),
            "visitor_id",
        ),
        (
            "/api/v1/web/visits",
            json!({"visitor_id": vid, "page": "/a", "ip": "203.0.113.5"}),
            "ip",
        ),
    ];
    for (path, body, field) in cases {
        let (s, resp) = post(path, body.clone()).await;
        assert_eq!(
            (s, resp["error"]["field"].as_str()),
            (400, Some(field)),
            "{path} {body}: {resp}"
        );
    }
    // Too big, not JSON.
    let big = json!({"visitor_id": vid, "page": "/a", "user_agent": "x".repeat(9000)});
    let (s, resp) = post("/api/v1/web/visits", big).await;
    assert_eq!(
        (s, resp["error"]["code"].as_str()),
        (413, Some("payload_too_large")),
        "{resp}"
    );
    let (s, _) = server
        .raw(
            "POST",
            "/api/v1/web/consent",
            None,
            "text/plain",
            choice(&fresh, true, true).to_string().into_bytes(),
        )
        .await;
    assert_eq!(s, 415);
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM consent_events", &[]),
        ledger
    );
    assert_eq!(
        count(env, "SELECT COUNT(*) FROM subjects", &[]),
        subjects_before
    );
    assert_eq!(all_visits(env), 0);

    // A token is not needed, and one does no harm.
    let t = sync(|| seed_tenant(&core, "web"));
    let token = server.login(&t.subject.username).await;
    let (s, body) = call(
        &http,
        &base,
        "POST",
        "/api/v1/web/consent",
        Some(&token),
        Some(choice(&fresh, true, false)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, _) = call(
        &http,
        &base,
        "POST",
        "/api/v1/web/visits",
        Some(&token),
        Some(visit(&fresh)),
    )
    .await;
    assert_eq!(s, 201);
    // The visit is the visitor's, not the signed-in user's.
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM web_visits WHERE subject_id = $1",
            params![t.subject.subject_id.as_str()]
        ),
        0
    );
    assert!(sync(|| steward::audit::verify(&core.db, &core.keys)
        .unwrap()
        .ok));
}

#[tokio::test(flavor = "multi_thread")]
async fn web_analytics_on_sqlite() {
    let env = Env::sqlite();
    web_scenario(&env).await;
    // Stored visits are sealed: the page, referrer, address and visitor id are
    // nowhere in clear in the data directory (database, WAL, key store).
    let server = Server::start(env.core.clone()).await;
    let http = client_from(VISITOR_IP);
    let vid = "scan-probe-visitor-4f1c2b7e9d";
    for (path, body) in [
        ("/api/v1/web/consent", choice(vid, true, false)),
        ("/api/v1/web/visits", visit(vid)),
    ] {
        let (s, resp) = call(&http, &server.base, "POST", path, None, Some(body)).await;
        assert!(s == 200 || s == 201, "{resp}");
    }
    assert_eq!(count(&env, "SELECT COUNT(*) FROM web_visits", &[]), 2);
    for needle in [
        "/pricing/teams",
        "pricing/teams",
        "search.referrer-probe.test",
        "referrer-probe",
        VISITOR_IP,
        vid,
        "jane.probe",
        "Firefox 128",
    ] {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} in clear in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn web_analytics_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    web_scenario(&env).await;
    sync(move || drop(env));
}

#[tokio::test(flavor = "multi_thread")]
async fn public_web_routes_are_rate_limited_per_address() {
    let env = Env::sqlite();
    let server = Server::start(env.core.clone()).await;
    let noisy = client_from("127.44.0.1");
    let quiet = client_from("127.44.0.2");
    let bad = json!({"visitor_id": "short", "page": "/"});
    for i in 0..steward_limit() {
        let (s, _) = call(
            &noisy,
            &server.base,
            "POST",
            "/api/v1/web/visits",
            None,
            Some(bad.clone()),
        )
        .await;
        assert_eq!(s, 400, "request {i}");
    }
    let resp = noisy
        .post(server.url("/api/v1/web/consent"))
        .json(&choice("0f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a", true, false))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "throttled");
    // Nothing was recorded for the refused request; another address is unaffected.
    assert_eq!(
        count(
            &env,
            "SELECT COUNT(*) FROM subjects WHERE kind = 'visitor'",
            &[]
        ),
        0
    );
    let (s, _) = call(
        &quiet,
        &server.base,
        "POST",
        "/api/v1/web/visits",
        None,
        Some(bad),
    )
    .await;
    assert_eq!(s, 400);
    // The authenticated usage route is not behind the website's limit.
    let (s, _) = call(
        &noisy,
        &server.base,
        "POST",
        "/api/v1/usage-statistics",
        None,
        Some(usage_body(&[("chat", 1)])),
    )
    .await;
    assert_eq!(s, 401);
}

fn steward_limit() -> u32 {
    300
}

// ---------------------------------------------------------------------------
// Through the real binary: the data directory and the server's own log.

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn steward_cli(data: &Path, args: &[&str], stdin: Option<&str>) -> Value {
    let mut child = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("STEWARD_MASTER_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

struct Served {
    child: Child,
    base: String,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `steward serve` logging at debug level, its stderr captured.
fn serve(data: &Path) -> Served {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--retention-interval",
            "0",
            "--data-dir",
        ])
        .arg(data)
        .env_remove("STEWARD_MASTER_KEY")
        .env("STEWARD_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            sink.lock().unwrap().push(line);
        }
    });
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if let Some(rest) = line.split("serving on ").nth(1) {
                let _ = tx.send(rest.split_whitespace().next().unwrap_or("").to_owned());
            }
            sink.lock().unwrap().push(line);
        }
    });
    let base = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("server did not start");
    Served { child, base, log }
}

/// How often `needle` occurs in the bytes of every file under `dir`.
fn occurrences(dir: &Path, needle: &str) -> usize {
    let n = needle.as_bytes();
    common::files_under(dir)
        .iter()
        .map(|f| {
            let bytes = std::fs::read(f).unwrap_or_default();
            bytes.windows(n.len()).filter(|w| *w == n).count()
        })
        .sum()
}

/// Folds the write-ahead log into the database file, as a second connection
/// beside the running server, so that two scans compare like with like.
fn checkpoint(data: &Path) {
    let db = rusqlite::Connection::open(data.join("steward.sqlite")).unwrap();
    db.busy_timeout(Duration::from_secs(10)).unwrap();
    let busy: i64 = db
        .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(busy, 0, "checkpoint blocked");
}

#[tokio::test(flavor = "multi_thread")]
async fn no_identifier_of_the_submitting_user_reaches_storage_or_the_log() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("steward-data");
    let server = serve(&data);
    let tenant = steward_cli(
        &data,
        &[
            "admin",
            "create-tenant",
            "--name",
            "Usage Probe Ltd",
            "--json",
        ],
        None,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let password = "usage probe password 1";
    let account = steward_cli(
        &data,
        &[
            "admin",
            "create-user",
            "--tenant",
            &tenant,
            "--username",
            "uprobe-kestrel",
            "--role",
            "subject",
            "--password-stdin",
            "--json",
        ],
        Some(&format!("{password}\n")),
    );
    let account_id = account["id"].as_str().unwrap().to_owned();
    let subject = account["subject_id"].as_str().unwrap().to_owned();
    let http = client_from(USER_IP);
    let base = server.base.clone();
    let (s, login) = call(
        &http,
        &base,
        "POST",
        "/api/v1/auth/login",
        None,
        Some(json!({"username": "uprobe-kestrel", "password": password})),
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let token = login["token"].as_str().unwrap().to_owned();
    for purpose in ["research_statistics", "service_improvement"] {
        let (s, body) = call(
            &http,
            &base,
            "POST",
            &format!("/api/v1/subjects/{subject}/consents"),
            Some(&token),
            Some(json!({"category": "usage_statistics", "purpose": purpose, "action": "grant"})),
        )
        .await;
        assert_eq!(s, 201, "{body}");
    }

    // What the data directory holds of the user before any usage is sent: ids
    // in clear (they are pseudonymous keys), never the username, token or IP.
    let needles = [
        subject.as_str(),
        account_id.as_str(),
        tenant.as_str(),
        "uprobe-kestrel",
        token.as_str(),
        USER_IP,
    ];
    checkpoint(&data);
    let before: Vec<usize> = needles.iter().map(|n| occurrences(&data, n)).collect();
    assert!(
        before[0] > 0,
        "the scan finds the subject id where it is meant to be"
    );
    for (i, events) in [
        vec![("dialpad", 3), ("voicemail", 1)],
        vec![("dialpad", 2)],
        vec![("chat", 7), ("presence", 1)],
    ]
    .into_iter()
    .enumerate()
    {
        let (s, body) = call(
            &http,
            &base,
            "POST",
            "/api/v1/usage-statistics",
            Some(&token),
            Some(usage_body(&events)),
        )
        .await;
        assert_eq!(s, 201, "submission {i}: {body}");
    }
    checkpoint(&data);
    let after: Vec<usize> = needles.iter().map(|n| occurrences(&data, n)).collect();
    // The submissions added no copy of any identifier anywhere in the data
    // directory (database, write-ahead log, key store), and the username, the
    // token and the address are nowhere at all.
    assert_eq!(after, before, "needles {needles:?}");
    assert_eq!(&after[3..], [0, 0, 0], "username, token, IP in clear");
    // The counters are there.
    let db = rusqlite::Connection::open(data.join("steward.sqlite")).unwrap();
    let dialpad: i64 = db
        .query_row(
            "SELECT count FROM usage_stats WHERE feature = 'dialpad'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dialpad, 5);
    drop(db);

    // A visitor's consent and visit through the same server.
    let visitor = "binprobe-visitor-7d3e9a1b2c";
    let web = client_from(VISITOR_IP);
    let (s, body) = call(
        &web,
        &base,
        "POST",
        "/api/v1/web/consent",
        None,
        Some(choice(visitor, true, false)),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = call(
        &web,
        &base,
        "POST",
        "/api/v1/web/visits",
        None,
        Some(visit(visitor)),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    // The log: every request is there by its route template, and none of the
    // user's or the visitor's identifiers is.
    std::thread::sleep(Duration::from_millis(200));
    let log = server.log.lock().unwrap().join("\n");
    assert!(
        log.contains("/api/v1/usage-statistics"),
        "requests are logged: {log}"
    );
    assert!(
        log.contains("/api/v1/web/visits"),
        "requests are logged: {log}"
    );
    for needle in needles.iter().chain(&[
        visitor,
        VISITOR_IP,
        "pricing/teams",
        "referrer-probe",
        "jane.probe",
        password,
    ]) {
        assert!(
            !log.contains(needle),
            "server log contains {needle:?}:\n{log}"
        );
    }
}
