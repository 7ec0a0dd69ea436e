//! The web console over HTTP: every console route (from `steward::web::routes()`,
//! the list the router itself is built from) is called by every role of tenant
//! A against tenant B's objects and must yield nothing of B; roles a page is not
//! for get 403 or 404; provider staff get through with the same requests, so the
//! refusals are isolation, not typos. Also: sessions and their cookies, CSRF,
//! the Content-Security-Policy with no inline script or style on any page,
//! labelled form fields, and refusals of malformed input.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;

use common::{Env, PASSWORD, Seeded, Server, provider_staff, seed_tenant};
use reqwest::redirect::Policy;
use steward::access::{Actor, Role};
use steward::web::{self, Audience, Route};

/// A browser-like client: its own cookie jar, no redirects followed.
struct Browser {
    http: reqwest::Client,
    base: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(Policy::none())
        .build()
        .unwrap()
}

fn login_token(html: &str) -> String {
    attr_after(html, "name=\"login_csrf\" value=\"")
}

fn attr_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("no {marker} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

async fn text(r: reqwest::Response) -> (u16, String, reqwest::header::HeaderMap) {
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, r.text().await.unwrap(), headers)
}

impl Browser {
    async fn login(server: &Server, username: &str) -> Browser {
        let http = client();
        let base = server.base.clone();
        let (_, html, _) = text(
            http.get(format!("{base}/console/login"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        let form = [
            ("username", username),
            ("password", PASSWORD),
            ("login_csrf", &login_token(&html)),
        ];
        let r = http
            .post(format!("{base}/console/login"))
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 303, "login {username}");
        let home = r.headers()["location"].to_str().unwrap().to_owned();
        let (s, html, _) = text(http.get(format!("{base}{home}")).send().await.unwrap()).await;
        assert_eq!(s, 200, "{home}: {html}");
        let csrf = attr_after(&html, "name=\"csrf-token\" content=\"");
        Browser { http, base, csrf }
    }

    async fn call(
        &self,
        method: &str,
        url: &str,
        form: &[(String, String)],
    ) -> (u16, String, reqwest::header::HeaderMap) {
        self.send(method, url, form, None).await
    }

    /// A GET, or a POST of `form` with the CSRF token: urlencoded, or as
    /// `multipart/form-data` (the token first, as the pages put it) with
    /// `file` as the field `file`.
    async fn send(
        &self,
        method: &str,
        url: &str,
        form: &[(String, String)],
        file: Option<&[u8]>,
    ) -> (u16, String, reqwest::header::HeaderMap) {
        let url = format!("{}{url}", self.base);
        let r = match (method, file) {
            ("GET", _) => self.http.get(url).send().await.unwrap(),
            (_, Some(bytes)) => {
                let mut m = reqwest::multipart::Form::new().text("csrf", self.csrf.clone());
                for (k, v) in form {
                    m = m.text(k.clone(), v.clone());
                }
                let part = reqwest::multipart::Part::bytes(bytes.to_vec())
                    .file_name("contacts.vcf")
                    .mime_str("text/vcard")
                    .unwrap();
                m = m.part("file", part);
                self.http.post(url).multipart(m).send().await.unwrap()
            }
            _ => {
                let mut f: Vec<(String, String)> = form.to_vec();
                f.push(("csrf".into(), self.csrf.clone()));
                self.http.post(url).form(&f).send().await.unwrap()
            }
        };
        text(r).await
    }
}

/// B's directory entry: its name, email and number are needles too.
const B_ENTRY_NAME: &str = "Xanthe Directoryperson";
const B_ENTRY_EMAIL: &str = "xanthe.directory@zulu.test";
const B_ENTRY_PHONE: &str = "+44 20 7946 0999";

fn b_entry(core: &steward::Steward, b: &Seeded) -> String {
    steward::directory::create(
        core,
        &Actor::cli(),
        &b.tenant.id,
        steward::directory::EntryInput {
            display_name: B_ENTRY_NAME.into(),
            title: Some("Head of Zulu Logistics".into()),
            emails: vec![steward_vcard::Typed {
                value: B_ENTRY_EMAIL.into(),
                ..Default::default()
            }],
            phones: vec![steward_vcard::Typed {
                value: B_ENTRY_PHONE.into(),
                ..Default::default()
            }],
            ..Default::default()
        },
    )
    .unwrap()
    .id
}

/// A vCard file B's directory can import.
const B_IMPORT: &str = "BEGIN:VCARD\r\nVERSION:4.0\r\nFN:Imported Zuluperson\r\n\
                        EMAIL:imported@zulu.test\r\nEND:VCARD\r\n";

/// Tenant B's identifiers; none may appear in an answer to A.
fn needles(b: &Seeded) -> Vec<String> {
    let t = &b.tenant;
    let mut n = vec![t.id.clone(), t.name.clone()];
    n.extend(
        [B_ENTRY_NAME, B_ENTRY_EMAIL, "Zulu Logistics", "7946 0999"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    n.extend(t.customer_number.clone());
    for a in b.all() {
        n.push(a.id.clone());
        n.push(a.subject_id.clone());
        n.push(a.username.clone());
        n.push(format!("{}@example.test", a.username));
        n.push(format!("Person {}", a.username));
    }
    n
}

fn leaked(b: &Seeded, body: &str) -> Vec<String> {
    let lower = body.to_lowercase();
    needles(b)
        .into_iter()
        .filter(|n| lower.contains(&n.to_lowercase()))
        .collect()
}

/// A concrete request for a console route, aimed at B.
struct Call {
    url: String,
    /// What the page echoes back from the request itself (a search box).
    echo: Option<String>,
    form: Vec<(String, String)>,
    /// A file sent as `multipart/form-data` with the form.
    file: Option<Vec<u8>>,
    names_b: bool,
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn call_for(route: &Route, b: &Seeded, request_id: &str, entry_id: &str) -> Call {
    let mut url = String::new();
    let mut names_b = false;
    let mut rest = route.path;
    while let Some(start) = rest.find('{') {
        let end = start + rest[start..].find('}').unwrap();
        url.push_str(&rest[..start]);
        let value = match &rest[start + 1..end] {
            "request_id" => request_id.to_owned(),
            "subject_id" => b.subject.subject_id.clone(),
            "account_id" => b.subject.id.clone(),
            "entry_id" => entry_id.to_owned(),
            "file" if route.path.starts_with("/console/static") => "console.css".into(),
            "file" => "article30.csv".into(),
            other => panic!(
                "console route {} has path parameter {{{other}}}, which tests/console.rs cannot \
                 fill in: add tenant B's matching id to `call_for`",
                route.path
            ),
        };
        names_b |= value != "console.css" && value != "article30.csv";
        url.push_str(&value);
        rest = &rest[end + 1..];
    }
    url.push_str(rest);
    let tenant = b.tenant.id.as_str();
    let mut echo = None;
    let mut file = None;
    let entry = |name: &str, email: &str, phone: &str| {
        pairs(&[
            ("tenant", tenant),
            ("display_name", name),
            ("given_name", ""),
            ("family_name", ""),
            ("organization", "Zulu Ltd"),
            ("department", ""),
            ("title", "Head of Zulu Logistics"),
            ("emails", email),
            ("phones", phone),
        ])
    };
    let form = match (route.method, route.path) {
        ("GET", "/console/directory") | ("GET", "/console/directory/{entry_id}") => {
            url.push_str(&format!("?tenant={tenant}"));
            names_b = true;
            vec![]
        }
        ("GET", "/console/directory/export") => {
            url.push_str(&format!("?tenant={tenant}&version=3.0"));
            names_b = true;
            vec![]
        }
        ("POST", "/console/directory") => {
            names_b = true;
            entry("Zuluadded Person", "zulu.added@zulu.test", "2101")
        }
        ("POST", "/console/directory/{entry_id}") => entry(
            &format!("{B_ENTRY_NAME} Edited"),
            B_ENTRY_EMAIL,
            B_ENTRY_PHONE,
        ),
        ("POST", "/console/directory/{entry_id}/delete") => {
            pairs(&[("tenant", tenant), ("confirm", "yes")])
        }
        ("POST", "/console/directory/import") => {
            names_b = true;
            file = Some(B_IMPORT.as_bytes().to_vec());
            pairs(&[("tenant", tenant)])
        }
        ("GET", "/console/users") => {
            url.push_str(&format!("?tenant={tenant}"));
            names_b = true;
            vec![]
        }
        ("GET", "/console/subjects") => {
            let q = format!("{}@example.test", b.subject.username);
            url.push_str(&format!("?q={q}"));
            echo = Some(q);
            vec![]
        }
        ("GET", _) => vec![],
        ("POST", "/console/login") => pairs(&[
            ("username", &b.subject.username),
            ("password", "wrong password!"),
            ("login_csrf", "x"),
        ]),
        ("POST", "/console/logout")
        | ("POST", "/console/retention/run")
        | ("POST", "/console/audit/verify") => vec![],
        ("POST", "/console/requests") => {
            // Named by B's subject's email: another tenant's person is "nobody
            // in your scope", said next to the field that echoes it.
            let email = format!("{}@example.test", b.subject.username);
            echo = Some(email.clone());
            names_b = true;
            pairs(&[
                ("kind", "access"),
                ("channel", "letter"),
                ("received_on", ""),
                ("by", "email"),
                ("identifier", &email),
                ("details", "recorded from the console"),
            ])
        }
        ("POST", "/console/requests/{request_id}/verify") => {
            pairs(&[("method", "console isolation test")])
        }
        ("POST", "/console/requests/{request_id}/export")
        | ("POST", "/console/requests/{request_id}/erase") => vec![],
        ("POST", "/console/requests/{request_id}/rectify") => {
            pairs(&[("field", "name"), ("value", "Changed By A")])
        }
        ("POST", "/console/requests/{request_id}/refuse") => pairs(&[("ground", "repetitive")]),
        ("POST", "/console/requests/{request_id}/complete") => vec![],
        ("POST", "/console/users") => {
            names_b = true;
            pairs(&[
                ("tenant", tenant),
                ("username", "console-new-user"),
                ("password", PASSWORD),
                ("role", "subject"),
                ("email", ""),
                ("phone", ""),
                ("display_name", ""),
            ])
        }
        ("POST", "/console/users/{account_id}/disable")
        | ("POST", "/console/users/{account_id}/enable") => vec![],
        ("POST", "/console/users/{account_id}/password") => pairs(&[
            ("tenant", tenant),
            ("password", "a brand new long password"),
        ]),
        ("POST", "/console/notices/{request_id}") => pairs(&[("answer", "no_objection")]),
        ("POST", "/console/me/consents") => pairs(&[
            ("category", "device_contacts"),
            ("purpose", "provision"),
            ("action", "withdraw"),
        ]),
        ("POST", "/console/me/requests") => pairs(&[("kind", "objection"), ("details", "")]),
        (m, p) => panic!(
            "console route {m} {p} has no form in tests/console.rs: add one to `call_for` that \
             builds a valid request aimed at tenant B"
        ),
    };
    Call {
        url,
        echo,
        form,
        file,
        names_b,
    }
}

/// Problems in a page's markup: inline script or style, event handler
/// attributes, form fields without a label.
fn markup_problems(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let lower = html.to_lowercase();
    for (i, _) in lower.match_indices("<script") {
        let tag_end = lower[i..].find('>').map(|e| i + e).unwrap_or(lower.len());
        if !lower[i..tag_end].contains("src=") {
            out.push("an inline <script>".into());
        }
    }
    if lower.contains("<style") {
        out.push("an inline <style>".into());
    }
    if lower.contains(" style=") {
        out.push("a style attribute".into());
    }
    for handler in [" onclick=", " onchange=", " onsubmit=", " onload="] {
        if lower.contains(handler) {
            out.push(format!("an event handler attribute ({handler})"));
        }
    }
    for tag in ["<input", "<select", "<textarea"] {
        for (i, _) in html.match_indices(tag) {
            let end = html[i..].find('>').map(|e| i + e).unwrap_or(html.len());
            let el = &html[i..end];
            if el.contains("type=\"hidden\"") || el.contains("type=\"submit\"") {
                continue;
            }
            if el.contains("aria-label") {
                continue;
            }
            match el.split("id=\"").nth(1).and_then(|r| r.split('"').next()) {
                Some(id) if html.contains(&format!("for=\"{id}\"")) => {}
                _ => out.push(format!("a field without a label: {el}>")),
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn tenant_a_gets_nothing_of_tenant_b_on_any_console_page() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let a = seed_tenant(&core, "alpha");
    let b = seed_tenant(&core, "zulu");
    let request_id = steward::rights::create(
        &core,
        &Actor::cli(),
        steward::rights::NewRequest {
            subject: steward::rights::SubjectRef::Id(b.subject.subject_id.clone()),
            kind: steward::rights::Kind::Access,
            channel: steward::rights::RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: Some("console isolation test".into()),
        },
    )
    .unwrap()
    .id;
    let entry_id = b_entry(&core, &b);
    let staff_op = provider_staff(&core, "console-op", Role::Operator);
    let staff_dpo = provider_staff(&core, "console-dpo", Role::Dpo);
    let server = Server::start(core.clone()).await;
    let routes = web::routes();
    assert!(
        routes.len() >= 25,
        "suspiciously few console routes: {}",
        routes.len()
    );
    let calls: Vec<(Route, Call)> = routes
        .iter()
        .map(|r| (*r, call_for(r, &b, &request_id, &entry_id)))
        .collect();
    let mut failures = Vec::new();
    let mut matrix = Vec::new();

    // Without a session: every route but the public ones sends the browser to log in.
    let anon = client();
    for (route, call) in &calls {
        if route.audience == Audience::Public {
            continue;
        }
        let url = format!("{}{}", server.base, call.url);
        let r = match route.method {
            "GET" => anon.get(url).send().await.unwrap(),
            _ => anon.post(url).form(&call.form).send().await.unwrap(),
        };
        let (s, body, h) = text(r).await;
        let to_login = h.get("location").is_some_and(|l| l == "/console/login");
        if !(s == 303 && to_login) {
            failures.push(format!(
                "no session: {} {} gave {s}, expected 303 to the login",
                route.method, route.path
            ));
        }
        if !leaked(&b, &body).is_empty() {
            failures.push(format!(
                "no session: {} {} leaked B",
                route.method, route.path
            ));
        }
    }

    // Every role of A, every route.
    // Each role tries a wrong password on a different account of B: four failures
    // on one username would (rightly) slow that username down, and B's subject
    // logs in below.
    let roles = [
        ("subject", &a.subject, &b.admin),
        ("tenant-admin", &a.admin, &b.operator),
        ("operator", &a.operator, &b.dpo),
        ("dpo", &a.dpo, &b.subject),
    ];
    for (role_name, account, b_target) in roles {
        let mut browser = Browser::login(&server, &account.username).await;
        for (route, call) in &calls {
            if route.method == "POST" && route.path == "/console/login" {
                // Logging in is by credentials: a wrong password for B's user fails.
                let http = client();
                let (_, html, _) = text(
                    http.get(format!("{}/console/login", server.base))
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                let form = pairs(&[
                    ("username", &b_target.username),
                    ("password", "not the password"),
                    ("login_csrf", &login_token(&html)),
                ]);
                let (s, body, _) = text(
                    http.post(format!("{}/console/login", server.base))
                        .form(&form)
                        .send()
                        .await
                        .unwrap(),
                )
                .await;
                if s != 401 || !body.to_lowercase().contains("wrong username or password") {
                    failures.push(format!(
                        "A's {role_name}: logging in as B with a wrong password gave {s}"
                    ));
                }
                continue;
            }
            let (s, body, _) = browser
                .send(route.method, &call.url, &call.form, call.file.as_deref())
                .await;
            matrix.push(format!(
                "{role_name:<13} {:<5} {:<45} {s}",
                route.method, route.path
            ));
            let admitted = route.audience.admits(account.role, false);
            let nobody = route.path == "/console/requests"
                && s == 400
                && body.contains("Nobody in your scope");
            let refused = s == 403 || s == 404 || nobody;
            if call.names_b && !refused {
                failures.push(format!(
                    "A's {role_name}: {} {} naming B gave {s}, expected 403 or 404",
                    route.method, route.path
                ));
            } else if !call.names_b && !admitted && !refused {
                failures.push(format!(
                    "A's {role_name}: {} {} is not for this role but gave {s}",
                    route.method, route.path
                ));
            } else if !call.names_b
                && admitted
                && route.method == "GET"
                && s != 200
                && route.path != "/console"
            {
                failures.push(format!(
                    "A's {role_name}: {} {} is for this role but gave {s}: {body}",
                    route.method, route.path
                ));
            } else if s >= 500 {
                failures.push(format!(
                    "A's {role_name}: {} {} gave {s}",
                    route.method, route.path
                ));
            }
            let shown = match &call.echo {
                Some(e) => body.replace(e.as_str(), ""),
                None => body.clone(),
            };
            let l = leaked(&b, &shown);
            if !l.is_empty() {
                failures.push(format!(
                    "A's {role_name}: {} {} ({s}) revealed B's {l:?}",
                    route.method, route.path
                ));
            }
            if s == 200
                && route.method == "GET"
                && !route.path.contains("static")
                && !route.path.contains("{file}")
            {
                for p in markup_problems(&body) {
                    failures.push(format!("{} as {role_name}: {p}", route.path));
                }
            }
            if route.path == "/console/logout" && s == 303 {
                browser = Browser::login(&server, &account.username).await;
            }
        }
    }

    // B untouched: no account disabled, consent ledger and users as before.
    let b_users = steward::accounts::list(&core, &Actor::cli(), &b.tenant.id).unwrap();
    if b_users.iter().any(|u| u.disabled) || b_users.len() != 4 {
        failures.push(format!("B's users changed: {b_users:?}"));
    }
    let a_actors: Vec<String> = a
        .all()
        .iter()
        .map(|x| format!("account:{}", x.id))
        .collect();
    for e in steward::audit::list(&core.db, 0, 100_000, Some(&b.tenant.id)).unwrap() {
        if a_actors.contains(&e.actor) {
            failures.push(format!("A's account acted on B's data: {e:?}"));
        }
    }

    // B's directory as it was.
    let b_dir = steward::directory::list(&core, &Actor::cli(), &b.tenant.id).unwrap();
    if b_dir.len() != 1 || b_dir[0].fields.display_name != B_ENTRY_NAME {
        failures.push(format!("B's directory changed: {b_dir:?}"));
    }

    // Baseline: provider staff (or B's own admin and subject, for their pages)
    // get through with the same requests, in an order the workflow allows.
    let op = Browser::login(&server, &staff_op.username).await;
    let dpo = Browser::login(&server, &staff_dpo.username).await;
    let b_admin = Browser::login(&server, &b.admin.username).await;
    let b_subject = Browser::login(&server, &b.subject.username).await;
    // The employer answers while the request is open; B's subject looks before
    // anything ends their session; the account changes come last.
    let first = [
        "/console/notices/{request_id}",
        "/console/me/requests/{request_id}",
        "/console/requests/{request_id}/verify",
        "/console/requests/{request_id}/export",
        "/console/requests/{request_id}/bundle",
    ];
    let last = [
        "/console/directory/{entry_id}/delete",
        "/console/users/{account_id}/password",
        "/console/users/{account_id}/disable",
        "/console/users/{account_id}/enable",
    ];
    let rank = |p: &str| match (
        first.iter().position(|x| *x == p),
        last.iter().position(|x| *x == p),
    ) {
        (Some(i), _) => i,
        (_, Some(i)) => 100 + i,
        _ => 50,
    };
    let mut baseline: Vec<&(Route, Call)> = calls.iter().filter(|(_, c)| c.names_b).collect();
    baseline.sort_by_key(|(r, _)| rank(r.path));
    let mut checked = BTreeSet::new();
    for (route, call) in baseline {
        let who = match route.audience {
            Audience::Roles(r) if r == [Role::TenantAdmin] => &b_admin,
            Audience::Roles(r) if r == [Role::Subject] => &b_subject,
            _ if route.path.contains("/users") || route.path.contains("/directory") => &op,
            _ => &dpo,
        };
        let (s, body, h) = who
            .send(route.method, &call.url, &call.form, call.file.as_deref())
            .await;
        let expected: &[u16] = match route.path {
            "/console/directory/import" => &[200],
            "/console/requests/{request_id}/rectify"
            | "/console/requests/{request_id}/erase"
            | "/console/requests/{request_id}/refuse"
            | "/console/requests/{request_id}/complete" => &[409],
            _ if route.method == "POST" => &[303],
            _ => &[200],
        };
        if !expected.contains(&s) {
            failures.push(format!(
                "baseline: {} {} gave {s}, expected {expected:?}: {body}",
                route.method, route.path
            ));
        }
        if route.method == "GET"
            && s == 200
            && leaked(&b, &body).is_empty()
            && h["content-type"] != "application/zip"
        {
            failures.push(format!(
                "baseline: {} {} shows none of B",
                route.method, route.path
            ));
        }
        checked.insert(route.path);
    }
    assert!(checked.len() >= 10, "baseline covered {checked:?}");

    eprintln!("{}", matrix.join("\n"));
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sessions_cookies_csrf_and_headers() {
    let env = Env::sqlite();
    let a = seed_tenant(&env.core, "cookie");
    let server = Server::start(env.core.clone()).await;
    let base = &server.base;

    // The login page sets the login cookie; its headers carry the CSP.
    let http = client();
    let r = http
        .get(format!("{base}/console/login"))
        .send()
        .await
        .unwrap();
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains("script-src 'self'")
            && csp.contains("style-src 'self'")
            && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert_eq!(r.headers()["cache-control"], "no-store");
    let set = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        set.starts_with("steward_login=")
            && set.contains("HttpOnly")
            && set.contains("SameSite=Strict"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain HTTP: not Secure: {set}");
    let html = r.text().await.unwrap();
    assert!(
        markup_problems(&html).is_empty(),
        "{:?}",
        markup_problems(&html)
    );

    // A login form posted without the login cookie (as from another site) fails.
    let stranger = client();
    let (s, body, _) = text(
        stranger
            .post(format!("{base}/console/login"))
            .form(&pairs(&[
                ("username", &a.subject.username),
                ("password", PASSWORD),
                ("login_csrf", &login_token(&html)),
            ]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    // A cross-site Origin is refused too.
    let (s, _, _) = text(
        http.post(format!("{base}/console/login"))
            .header("origin", "https://evil.example")
            .form(&pairs(&[
                ("username", &a.subject.username),
                ("password", PASSWORD),
                ("login_csrf", &login_token(&html)),
            ]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 403);

    // Behind a TLS proxy the session cookie is Secure and __Host- prefixed.
    let tls = client();
    let r = tls
        .get(format!("{base}/console/login"))
        .header("x-forwarded-proto", "https")
        .send()
        .await
        .unwrap();
    assert!(
        r.headers()["strict-transport-security"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let html = r.text().await.unwrap();
    let r = tls
        .post(format!("{base}/console/login"))
        .header("x-forwarded-proto", "https")
        .form(&pairs(&[
            ("username", &a.subject.username),
            ("password", PASSWORD),
            ("login_csrf", &login_token(&html)),
        ]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let cookies: Vec<String> = r
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    let session = cookies
        .iter()
        .find(|c| c.starts_with("__Host-steward_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/", "Secure"] {
        assert!(session.contains(flag), "{flag} missing: {session}");
    }

    // A logged-in subject: a POST without the CSRF token, or with another
    // session's, is refused and changes nothing.
    let user = Browser::login(&server, &a.subject.username).await;
    let other = Browser::login(&server, &a.admin.username).await;
    assert_ne!(user.csrf, other.csrf);
    let form = pairs(&[
        ("category", "device_contacts"),
        ("purpose", "provision"),
        ("action", "grant"),
    ]);
    let r = user
        .http
        .post(format!("{base}/console/me/consents"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let mut wrong = form.clone();
    wrong.push(("csrf".into(), other.csrf.clone()));
    let r = user
        .http
        .post(format!("{base}/console/me/consents"))
        .form(&wrong)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let (states, history) =
        steward::consent::overview(&env.core, &Actor::cli(), &a.subject.subject_id).unwrap();
    assert!(history.is_empty() && states.iter().all(|s| !s.granted));
    // With the token it works and takes effect at once.
    let (s, _, h) = user.call("POST", "/console/me/consents", &form).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (303, "/console/me?done=consent#consents")
    );
    let (states, _) =
        steward::consent::overview(&env.core, &Actor::cli(), &a.subject.subject_id).unwrap();
    assert!(
        states
            .iter()
            .any(|s| s.category == "device_contacts" && s.granted)
    );

    // Logout revokes the session: the old cookie no longer works.
    let (s, _, _) = user.call("POST", "/console/logout", &[]).await;
    assert_eq!(s, 303);
    let (s, _, h) = user.call("GET", "/console/me", &[]).await;
    assert_eq!(
        (s, h["location"].to_str().unwrap()),
        (303, "/console/login")
    );
    let revoked = env
        .core
        .db
        .read(|c| {
            c.query(
                "SELECT revoked_at FROM sessions WHERE revoked_at IS NOT NULL",
                &[],
            )
        })
        .unwrap();
    assert!(!revoked.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn malformed_console_input_is_refused_with_a_clear_message() {
    let env = Env::sqlite();
    let a = seed_tenant(&env.core, "bad");
    let staff = provider_staff(&env.core, "bad-staff-dpo", Role::Dpo);
    let server = Server::start(env.core.clone()).await;
    let base = &server.base;
    let dpo = Browser::login(&server, &staff.username).await;
    let user = Browser::login(&server, &a.subject.username).await;

    // Unknown filters name what is allowed.
    let (s, body, _) = dpo.call("GET", "/console/requests?state=lost", &[]).await;
    assert_eq!(s, 400);
    assert!(
        body.contains("Unknown state") && body.contains("received"),
        "{body}"
    );
    let (s, body, _) = dpo
        .call("GET", "/console/requests?kind=everything", &[])
        .await;
    assert!(s == 400 && body.contains("Unknown kind"), "{body}");
    let (s, _, _) = dpo.call("GET", "/console/requests?colour=red", &[]).await;
    assert_eq!(s, 400);
    // A search the blind indexes cannot take: the message sits next to the field.
    let (s, body, _) = dpo.call("GET", "/console/subjects?q=%20%20", &[]).await;
    assert_eq!(s, 400);
    assert!(
        body.contains("id=\"q-error\"") && body.contains("aria-invalid=\"true\""),
        "{body}"
    );
    let (s, body, _) = dpo
        .call("GET", "/console/subjects?q=not%40an%40email", &[])
        .await;
    assert!(s == 400 && body.contains("q-error"), "{s} {body}");
    // A request that does not exist.
    let (s, _, _) = dpo
        .call("GET", "/console/requests/no-such-request", &[])
        .await;
    assert_eq!(s, 404);
    let (s, _, _) = dpo
        .call(
            "POST",
            "/console/requests/no-such-request/verify",
            &pairs(&[("method", "x")]),
        )
        .await;
    assert_eq!(s, 404);

    // Forms: a field the page does not send, a missing one, bad encoding, the
    // wrong content type, an oversize body.
    let (s, body, _) = user
        .call(
            "POST",
            "/console/me/requests",
            &pairs(&[("kind", "access"), ("admin", "1")]),
        )
        .await;
    assert!(s == 400 && body.contains("admin"), "{s} {body}");
    let (s, body, _) = user
        .call(
            "POST",
            "/console/me/consents",
            &pairs(&[("category", "photos_media")]),
        )
        .await;
    assert!(s == 400 && body.contains("purpose"), "{s} {body}");
    let r = user
        .http
        .post(format!("{base}/console/me/requests"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("kind=%ZZ&csrf={}", user.csrf))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let r = user
        .http
        .post(format!("{base}/console/me/requests"))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    // (The server answers before reading the whole body and closes the
    // connection: not one for the client to pool and reuse.)
    let r = user
        .http
        .post(format!("{base}/console/me/requests"))
        .header("content-type", "application/x-www-form-urlencoded")
        .header("connection", "close")
        .body(format!(
            "csrf={}&details={}",
            user.csrf,
            "x".repeat(200_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 413);
    // A kind the portal does not offer, and a use the policy does not know:
    // the page again, with the message.
    let (s, body, _) = user
        .call(
            "POST",
            "/console/me/requests",
            &pairs(&[("kind", "restriction")]),
        )
        .await;
    assert!(s == 400 && body.contains("req-kind-error"), "{s} {body}");
    let (s, body, _) = user
        .call(
            "POST",
            "/console/me/consents",
            &pairs(&[
                ("category", "telepathy"),
                ("purpose", "provision"),
                ("action", "grant"),
            ]),
        )
        .await;
    assert!(s == 400 && body.contains("telepathy"), "{s} {body}");
    // Nothing was filed by the refused forms.
    let requests = steward::rights::list(&env.core, &Actor::cli(), None).unwrap();
    assert!(requests.is_empty(), "{requests:?}");

    // Login: an empty username and a wrong password are shown at their fields.
    let http = client();
    let (_, html, _) = text(
        http.get(format!("{base}/console/login"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    let token = login_token(&html);
    let (s, body, _) = text(
        http.post(format!("{base}/console/login"))
            .form(&pairs(&[
                ("username", ""),
                ("password", "x"),
                ("login_csrf", &token),
            ]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s == 400 && body.contains("username-error"), "{body}");
    // Each form carries a fresh token (and cookie).
    let token = login_token(&body);
    let (s, body, _) = text(
        http.post(format!("{base}/console/login"))
            .form(&pairs(&[
                ("username", &a.subject.username),
                ("password", "wrong"),
                ("login_csrf", &token),
            ]))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(s == 401 && body.contains("password-error"), "{body}");
    // The staff form on a request page: an empty verification method.
    let id = steward::rights::create(
        &env.core,
        &Actor::cli(),
        steward::rights::NewRequest {
            subject: steward::rights::SubjectRef::Id(a.subject.subject_id.clone()),
            kind: steward::rights::Kind::Rectification,
            channel: steward::rights::RequestChannel::Email,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: None,
        },
    )
    .unwrap()
    .id;
    let (s, body, _) = dpo
        .call(
            "POST",
            &format!("/console/requests/{id}/verify"),
            &pairs(&[("method", "  ")]),
        )
        .await;
    assert!(s == 400 && body.contains("verify-method-error"), "{body}");
    let (s, _, _) = dpo
        .call(
            "POST",
            &format!("/console/requests/{id}/verify"),
            &pairs(&[("method", "call-back")]),
        )
        .await;
    assert_eq!(s, 303);
    let (s, body, _) = dpo
        .call(
            "POST",
            &format!("/console/requests/{id}/rectify"),
            &pairs(&[("field", "phone"), ("value", "not a number")]),
        )
        .await;
    assert!(s == 400 && body.contains("rectify-value-error"), "{body}");
    let (s, body, _) = dpo
        .call(
            "POST",
            &format!("/console/requests/{id}/refuse"),
            &pairs(&[("ground", "it is on a backup")]),
        )
        .await;
    assert!(
        s == 400 && body.contains("refuse-ground-error") && body.contains("backups"),
        "{body}"
    );

    // Recording a request received by letter, phone or email: each problem
    // next to its field, nothing recorded.
    let before = steward::rights::list(&env.core, &Actor::cli(), None)
        .unwrap()
        .len();
    let record = |kind: &str, channel: &str, received: &str, by: &str, who: &str| {
        pairs(&[
            ("kind", kind),
            ("channel", channel),
            ("received_on", received),
            ("by", by),
            ("identifier", who),
            ("details", "Letter of 3 March, ref. 77"),
        ])
    };
    let email = format!("{}@example.test", a.subject.username);
    let tomorrow = (time::OffsetDateTime::now_utc().date() + time::Duration::days(1)).to_string();
    for (form, field) in [
        (record("gossip", "letter", "", "email", &email), "rec-kind"),
        (
            record("access", "portal", "", "email", &email),
            "rec-channel",
        ),
        (
            record("access", "pigeon", "", "email", &email),
            "rec-channel",
        ),
        (
            record("access", "letter", &tomorrow, "email", &email),
            "rec-received",
        ),
        (
            record("access", "letter", "3rd of May", "email", &email),
            "rec-received",
        ),
        (
            record("access", "letter", "", "email", "not an email"),
            "rec-identifier",
        ),
        (
            record("access", "letter", "", "email", "nobody@nowhere.test"),
            "rec-identifier",
        ),
        (
            record("access", "letter", "", "phone", "07700 900999"),
            "rec-identifier",
        ),
        (
            record("access", "letter", "", "email", " "),
            "rec-identifier",
        ),
        (record("access", "letter", "", "fax", &email), "rec-by"),
    ] {
        let (s, body, _) = dpo.call("POST", "/console/requests", &form).await;
        assert!(
            s == 400 && body.contains(&format!("id=\"{field}-error\"")),
            "{form:?}: {s} {body}"
        );
        assert!(body.contains("<details class=\"card\" id=\"record\" open>"));
    }
    assert_eq!(
        steward::rights::list(&env.core, &Actor::cli(), None)
            .unwrap()
            .len(),
        before
    );
    // Recorded by username, received last week: due ten working days after.
    let week_ago = (time::OffsetDateTime::now_utc().date() - time::Duration::days(7)).to_string();
    let (s, _, h) = dpo
        .call(
            "POST",
            "/console/requests",
            &record(
                "erasure",
                "phone",
                &week_ago,
                "username",
                &a.subject.username,
            ),
        )
        .await;
    assert_eq!(s, 303);
    let location = h["location"].to_str().unwrap().to_owned();
    let new_id = location
        .strip_prefix("/console/requests/")
        .unwrap()
        .split('?')
        .next()
        .unwrap();
    let req = steward::rights::get(&env.core, &Actor::cli(), new_id).unwrap();
    assert_eq!(
        req.subject_id.as_deref(),
        Some(a.subject.subject_id.as_str())
    );
    assert_eq!(
        (req.kind.as_str(), req.channel.as_str()),
        ("erasure", "phone")
    );
    assert_eq!(req.received_on, week_ago);
    assert_eq!(req.details.as_deref(), Some("Letter of 3 March, ref. 77"));
    assert_eq!(req.created_by, format!("account:{}", staff.id));
    let (s, body, _) = dpo.call("GET", &location, &[]).await;
    assert!(
        s == 200 && body.contains("The request was recorded"),
        "{body}"
    );
    // The timeline names who recorded it by username and role; the account id
    // is only in the cell's title (on hover), never its text.
    assert!(
        body.contains(&format!(
            "title=\"account:{}\">{} (DPO)</td>",
            staff.id, staff.username
        )),
        "{body}"
    );
    assert!(!body.contains(&format!(">account:{}", staff.id)), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn directory_pages_refuse_bad_input_next_to_the_field() {
    let env = Env::sqlite();
    let a = seed_tenant(&env.core, "dirbad");
    let server = Server::start(env.core.clone()).await;
    let admin = Browser::login(&server, &a.admin.username).await;
    let tenant = a.tenant.id.as_str();
    let entries = || steward::directory::list(&env.core, &Actor::cli(), tenant).unwrap();
    let form = |name: &str, emails: &str, phones: &str| {
        pairs(&[
            ("tenant", tenant),
            ("display_name", name),
            ("title", ""),
            ("emails", emails),
            ("phones", phones),
        ])
    };
    let invalid_at = |body: &str, id: &str| {
        body.contains(&format!("id=\"{id}-error\""))
            && body.contains(&format!("aria-describedby=\"{id}-error"))
            && body.contains("aria-invalid=\"true\"")
    };

    // The entry form: each problem next to its field, what was typed kept.
    let (s, body, _) = admin
        .call(
            "POST",
            "/console/directory",
            &form(" ", "ann@dirbad.test", ""),
        )
        .await;
    assert!(
        s == 400 && invalid_at(&body, "add-display_name"),
        "{s} {body}"
    );
    assert!(body.contains("ann@dirbad.test"), "the form keeps the input");
    let (s, body, _) = admin
        .call(
            "POST",
            "/console/directory",
            &form("Ann", "ann@dirbad.test\nnot an address", ""),
        )
        .await;
    assert!(s == 400 && invalid_at(&body, "add-emails"), "{s} {body}");
    assert!(body.contains("Line 2"), "{body}");
    let (s, body, _) = admin
        .call("POST", "/console/directory", &form("Ann", "", ""))
        .await;
    assert!(s == 400 && invalid_at(&body, "add-emails"), "{s} {body}");
    let (s, body, _) = admin
        .call(
            "POST",
            "/console/directory",
            &form(&"x".repeat(300), "ann@dirbad.test", ""),
        )
        .await;
    assert!(
        s == 400 && invalid_at(&body, "add-display_name"),
        "{s} {body}"
    );
    assert!(entries().is_empty());
    // A field the page does not send.
    let mut extra = form("Ann", "ann@dirbad.test", "");
    extra.push(("subject_id".into(), "x".into()));
    let (s, body, _) = admin.call("POST", "/console/directory", &extra).await;
    assert!(s == 400 && body.contains("subject_id"), "{s} {body}");

    // Added; the same person again is a conflict shown above the form.
    let (s, _, h) = admin
        .call(
            "POST",
            "/console/directory",
            &form("Ann Example", "ann@dirbad.test", "+44 20 7946 0101"),
        )
        .await;
    assert_eq!(s, 303);
    assert!(h["location"].to_str().unwrap().contains("done=created"));
    let (s, body, _) = admin
        .call(
            "POST",
            "/console/directory",
            &form("Ann Again", "ANN@dirbad.test", ""),
        )
        .await;
    assert!(s == 409 && body.contains("role=\"alert\""), "{s} {body}");
    let id = entries()[0].id.clone();

    // Search.
    let (s, body, _) = admin
        .call(
            "GET",
            &format!("/console/directory?tenant={tenant}&q=7946+0101"),
            &[],
        )
        .await;
    assert!(s == 200 && body.contains("Ann Example"), "{body}");
    let (_, body, _) = admin
        .call("GET", "/console/directory?q=nobody-here", &[])
        .await;
    assert!(!body.contains("Ann Example") && body.contains("No entry matches"));

    // Editing: a bad second email line; removing without the box ticked.
    let (s, body, _) = admin
        .call(
            "POST",
            &format!("/console/directory/{id}"),
            &form("Ann Example", "ann@dirbad.test\n@@", ""),
        )
        .await;
    assert!(s == 400 && invalid_at(&body, "edit-emails"), "{s} {body}");
    let (s, body, _) = admin
        .call(
            "POST",
            &format!("/console/directory/{id}/delete"),
            &pairs(&[("tenant", tenant)]),
        )
        .await;
    assert!(
        s == 400 && invalid_at(&body, "delete-confirm"),
        "{s} {body}"
    );
    assert_eq!(entries().len(), 1);
    // Another tenant's or an unknown entry: 404.
    let (s, _, _) = admin
        .call("GET", "/console/directory/no-such-entry", &[])
        .await;
    assert_eq!(s, 404);

    // Import: a file whose second card has a bad email is refused whole, the
    // card and its line named next to the file field.
    let bad = "BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Bo Good\r\nEMAIL:bo@dirbad.test\r\nEND:VCARD\r\n\
               BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Cy Bad\r\nEMAIL:cy at dirbad\r\nEND:VCARD\r\n";
    let upload = |bytes: &[u8]| {
        let bytes = bytes.to_vec();
        let admin = &admin;
        async move {
            admin
                .send(
                    "POST",
                    "/console/directory/import",
                    &pairs(&[("tenant", tenant)]),
                    Some(&bytes),
                )
                .await
        }
    };
    let (s, body, _) = upload(bad.as_bytes()).await;
    assert!(s == 400 && invalid_at(&body, "import-file"), "{s} {body}");
    assert!(
        body.contains("Card 2") && body.contains("line 6"),
        "the card and its line: {body}"
    );
    assert_eq!(entries().len(), 1, "nothing imported");
    let (s, body, _) = upload(b"").await;
    assert!(s == 400 && body.contains("Choose a vCard file"), "{body}");
    let (s, body, _) = upload(b"this is not a vcard").await;
    assert!(s == 400 && invalid_at(&body, "import-file"), "{s} {body}");
    let mut big = b"BEGIN:VCARD\r\n".to_vec();
    big.resize(steward::directory::MAX_IMPORT_BYTES + 1, b'\n');
    let (s, body, _) = upload(&big).await;
    assert!(s == 413 && invalid_at(&body, "import-file"), "{s}");
    assert!(body.contains("larger than 16 MiB"), "{body}");
    assert_eq!(entries().len(), 1);
    // A real phone export: imported, with what a directory entry does not keep.
    let iphone = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/data/vcard/iphone-3.0.vcf"
    ))
    .unwrap();
    let (s, body, _) = upload(&iphone).await;
    assert!(s == 200 && body.contains("Import report"), "{s} {body}");
    assert!(body.contains("photo"), "{body}");
    assert_eq!(entries().len(), 2);

    // The upload's CSRF token: missing, another session's, or after the file.
    let base = &server.base;
    let part = || reqwest::multipart::Part::bytes(bad.as_bytes().to_vec()).file_name("x.vcf");
    let r = admin
        .http
        .post(format!("{base}/console/directory/import"))
        .multipart(
            reqwest::multipart::Form::new()
                .text("tenant", tenant.to_owned())
                .part("file", part()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = admin
        .http
        .post(format!("{base}/console/directory/import"))
        .multipart(
            reqwest::multipart::Form::new()
                .part("file", part())
                .text("csrf", admin.csrf.clone()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = admin
        .http
        .post(format!("{base}/console/directory/import"))
        .form(&pairs(&[("csrf", &admin.csrf), ("tenant", tenant)]))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 415);
    assert_eq!(entries().len(), 2);

    // Export: both versions, every entry, its UID for re-import.
    for (v, marker) in [("4.0", "VERSION:4.0"), ("3.0", "VERSION:3.0")] {
        let (s, body, h) = admin
            .call(
                "GET",
                &format!("/console/directory/export?version={v}"),
                &[],
            )
            .await;
        assert_eq!(s, 200);
        assert!(
            h["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/vcard")
        );
        assert!(
            h["content-disposition"]
                .to_str()
                .unwrap()
                .contains("attachment")
        );
        assert_eq!(body.matches(marker).count(), 2, "{body}");
        assert!(body.contains(&format!("urn:uuid:{id}")));
    }
    let (s, body, _) = admin
        .call("GET", "/console/directory/export?version=2.1", &[])
        .await;
    assert!(s == 400 && body.contains("2.1"), "{body}");

    // Removing with the box ticked.
    let (s, _, h) = admin
        .call(
            "POST",
            &format!("/console/directory/{id}/delete"),
            &pairs(&[("tenant", tenant), ("confirm", "yes")]),
        )
        .await;
    assert_eq!(s, 303);
    assert!(h["location"].to_str().unwrap().contains("done=deleted"));
    assert_eq!(entries().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_audit_page_verifies_on_demand_and_names_who_acted() {
    let env = Env::sqlite();
    let a = seed_tenant(&env.core, "auditpage");
    let staff = provider_staff(&env.core, "auditpage-staff", Role::Dpo);
    let server = Server::start(env.core.clone()).await;
    let dpo = Browser::login(&server, &staff.username).await;
    let verifications = || {
        steward::audit::list(&env.core.db, 0, 100_000, None)
            .unwrap()
            .into_iter()
            .filter(|e| e.action == steward::audit::VERIFY_ACTION)
            .collect::<Vec<_>>()
    };

    // Loading the page does not walk the chain: it says no check was recorded.
    let (s, body, _) = dpo.call("GET", "/console/audit", &[]).await;
    assert_eq!(s, 200);
    assert!(body.contains("has not been verified"), "{body}");
    assert!(verifications().is_empty());
    // Actors by username and role, not by account id (kept in the title).
    assert!(
        body.contains(&format!(
            "title=\"account:{}\">{} (DPO)</td>",
            staff.id, staff.username
        )),
        "{body}"
    );
    assert!(!body.contains(&format!(">account:{}", staff.id)), "{body}");
    assert!(body.contains("root (command line)") || body.contains("(command line)"));
    // Steward's own jobs by name.
    steward::retention::run_with(
        &env.core,
        steward::clock::now(),
        "test",
        &std::sync::atomic::AtomicBool::new(false),
    )
    .unwrap();
    let (_, body, _) = dpo.call("GET", "/console/audit", &[]).await;
    assert!(
        body.contains("title=\"system:retention\">system: retention</td>"),
        "{body}"
    );

    // The button verifies the whole chain and records the result.
    let (s, body, _) = dpo.call("POST", "/console/audit/verify", &[]).await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Chain verified"), "{body}");
    let v = verifications();
    assert_eq!(v.len(), 1);
    assert_eq!(v[0].detail["ok"], true);
    assert_eq!(v[0].actor, format!("account:{}", staff.id));
    // Later loads show it, with the entries added since.
    steward::accounts::set_disabled(&env.core, &Actor::cli(), &a.subject.id, true).unwrap();
    let (_, body, _) = dpo.call("GET", "/console/audit", &[]).await;
    assert!(body.contains("Chain verified"), "{body}");
    assert!(
        body.contains("entries were added since and are not covered"),
        "{body}"
    );

    // An entry altered behind Steward's back: the next check says where.
    let db = rusqlite::Connection::open(env.settings.sqlite_path()).unwrap();
    db.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    db.execute(
        "UPDATE audit_log SET action = 'nothing.to.see' WHERE seq = 2",
        [],
    )
    .unwrap();
    let (_, body, _) = dpo.call("POST", "/console/audit/verify", &[]).await;
    assert!(
        body.contains("Chain broken") && body.contains("entry 2 was modified"),
        "{body}"
    );
    assert_eq!(verifications().last().unwrap().detail["ok"], false);

    // A tenant's DPO sees the tenant's entries, no chain and no button; the
    // route refuses them.
    let tenant_dpo = Browser::login(&server, &a.dpo.username).await;
    let (s, body, _) = tenant_dpo.call("GET", "/console/audit", &[]).await;
    assert!(s == 200 && !body.contains("verify-chain"), "{body}");
    let (s, _, _) = tenant_dpo.call("POST", "/console/audit/verify", &[]).await;
    assert_eq!(s, 403);
}
