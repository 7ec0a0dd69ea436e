//! The console in a real browser (headless Chromium through WebDriver): a subject
//! withdraws and gives a consent and asks for a copy of their data; the DPO finds
//! the request in the queue with the right deadline, verifies the requester and
//! produces the bundle; the subject downloads it and the ZIP holds their data.
//! Along the way the test takes the screenshots shown in the README: set
//! `STEWARD_SCREENSHOTS=docs/screenshots` to write them there.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "common/chrome.rs"]
mod chrome;
mod common;
#[path = "common/demo.rs"]
mod demo;

use std::io::Read;

use chrome::{Chrome, DESKTOP, PHONE, screenshot_dir};
use common::{Env, PASSWORD, Server};
use steward::access::Actor;
use steward::consent;

fn granted(env: &Env, subject: &str, category: &str, purpose: &str) -> bool {
    let (states, _) = consent::overview(&env.core, &Actor::cli(), subject).unwrap();
    states
        .iter()
        .find(|s| s.category == category && s.purpose == purpose)
        .map(|s| s.granted)
        .unwrap()
}

#[test]
fn a_subject_gets_a_copy_of_their_data_through_the_console() {
    // Seeding produces a bundle, which blocks on the blob store: outside the runtime.
    let env = Env::sqlite();
    let d = demo::seed(&env);
    // A photo of hers, for the bundle's page to link to.
    let (_, photo_bytes) = common::seed_media(&env.core, &d.gwen, "harbour-walk.jpg");
    block_on(copy_of_my_data(env, d, photo_bytes));
}

/// Runs a browser scenario on a runtime of its own (seeding happens before,
/// outside any runtime, because producing a bundle blocks on the blob store).
fn block_on(scenario: impl std::future::Future<Output = ()>) {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(scenario);
}

async fn copy_of_my_data(env: Env, d: demo::Demo, photo_bytes: Vec<u8>) {
    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let server = Server::start(env.core.clone()).await;
    let base = server.base.clone();
    let shots = screenshot_dir();
    let gwen = &d.gwen;

    // The subject logs in and lands on their portal.
    chrome.login(&base, &gwen.username, PASSWORD).await;
    assert_eq!(chrome.path().await, "/console/me");
    assert!(chrome.text("h1").await.contains("My data"));
    // What is held, and why.
    let held = chrome.text(".held").await;
    assert!(
        held.contains("Call records") || held.contains("call"),
        "{held}"
    );

    // Withdraw a consent, then give it again: each takes effect at once.
    let switch = "button[data-consent='device_contacts/provision']";
    assert!(granted(
        &env,
        &gwen.subject_id,
        "device_contacts",
        "provision"
    ));
    assert_eq!(
        chrome
            .css(switch)
            .await
            .attr("aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    chrome.click(switch).await;
    chrome.css(".flash").await;
    assert_eq!(
        chrome
            .css(switch)
            .await
            .attr("aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("false")
    );
    assert!(!granted(
        &env,
        &gwen.subject_id,
        "device_contacts",
        "provision"
    ));
    chrome.click(switch).await;
    chrome.css(".flash").await;
    assert_eq!(
        chrome
            .css(switch)
            .await
            .attr("aria-checked")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    assert!(granted(
        &env,
        &gwen.subject_id,
        "device_contacts",
        "provision"
    ));

    // Ask for a copy.
    chrome.goto(&format!("{base}/console/me#requests")).await;
    chrome
        .css("#req-kind option[value=access]")
        .await
        .click()
        .await
        .unwrap();
    chrome.click("#request-form button[type=submit]").await;
    chrome.css(".flash").await;
    let path = chrome.path().await;
    let request_id = path
        .strip_prefix("/console/me/requests/")
        .unwrap_or_else(|| panic!("after filing: {path}"))
        .to_owned();
    let today = time::OffsetDateTime::now_utc().date();
    let due = steward::rights::due_date(today, steward_calendar::Region::EnglandAndWales, 10);
    assert!(
        chrome.text("main").await.contains(&due.to_string()),
        "the portal shows the due date {due}"
    );
    chrome.goto(&format!("{base}/console/me")).await;
    chrome.screenshot(&shots, "portal", DESKTOP.0).await;
    chrome
        .screenshot_sized(&shots, "portal-phone", PHONE.0, Some(PHONE.1))
        .await;
    chrome.logout().await;

    // The DPO sees it in the queue with the right deadline.
    chrome.login(&base, &d.dpo.username, PASSWORD).await;
    assert_eq!(chrome.path().await, "/console/requests");
    let row = chrome
        .css(&format!("a[href='/console/requests/{request_id}']"))
        .await;
    let queue = chrome.text("table.queue").await;
    assert!(queue.contains(&due.to_string()), "{queue}");
    assert!(queue.contains("10 working days left"), "{queue}");
    assert!(
        chrome.exists("tr.row-overdue .badge-overdue").await,
        "the seeded overdue requests are marked"
    );
    chrome.screenshot(&shots, "queue", DESKTOP.0).await;
    row.click().await.unwrap();
    chrome
        .wait_for_path(&format!("/console/requests/{request_id}"))
        .await;

    // Nothing can be produced before verification; the form says what is missing.
    assert!(!chrome.exists("#produce-bundle").await);
    chrome.click("form[action$='/verify'] button").await;
    let err = chrome.text("#verify-method-error").await;
    assert!(err.contains("verified"), "{err}");
    assert_eq!(
        chrome
            .css("#verify-method")
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    chrome
        .fill(
            "#verify-method",
            "logged-in portal session; passport copy checked",
        )
        .await;
    chrome.click("form[action$='/verify'] button").await;
    chrome.css("#produce-bundle").await;
    assert!(chrome.text(".flash").await.contains("verification"));
    chrome.screenshot(&shots, "request", DESKTOP.0).await;
    chrome.click("#produce-bundle").await;
    chrome.css("a[href$='/bundle']").await;
    assert!(chrome.text("main").await.contains("Access bundle produced"));

    chrome.goto(&format!("{base}/console/dashboard")).await;
    chrome.css(".chart-svg").await;
    chrome.screenshot(&shots, "dashboard", DESKTOP.0).await;
    chrome.logout().await;

    // The subject downloads the bundle, and the ZIP holds their data.
    chrome.login(&base, &gwen.username, PASSWORD).await;
    chrome
        .goto(&format!("{base}/console/me/requests/{request_id}"))
        .await;
    chrome.click("#download-bundle").await;
    let zip_path = chrome.downloaded(".zip").await;
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&zip_path).unwrap()).unwrap();
    let mut subjects = String::new();
    zip.by_name("data/subjects.json")
        .unwrap()
        .read_to_string(&mut subjects)
        .unwrap();
    assert!(subjects.contains(&d.gwen_email), "{subjects}");
    let mut consents = String::new();
    zip.by_name("data/consent_events.json")
        .unwrap()
        .read_to_string(&mut consents)
        .unwrap();
    assert!(consents.contains("withdraw"), "{consents}");
    let mut calls = String::new();
    zip.by_name("data/call_records.json")
        .unwrap()
        .read_to_string(&mut calls)
        .unwrap();
    assert!(calls.contains("+447700900123"), "{calls}");

    // The bundle explains itself: its index.html, opened offline from the
    // extracted ZIP, lists her calls with readable dates and the numbers she
    // dialled or was called from, and links to her photo.
    let unpacked = tempfile::tempdir().unwrap();
    zip.extract(unpacked.path()).unwrap();
    let index = unpacked.path().join("index.html");
    chrome.goto(&format!("file://{}", index.display())).await;
    let calls_table = chrome.text("#call_records + table").await;
    let stored = steward_store::params![gwen.subject_id.as_str()];
    let stored_calls: Vec<i64> = env
        .core
        .db
        .read(|c| {
            c.query(
                "SELECT start_at FROM call_records \
                 WHERE caller_subject_id = $1 OR callee_subject_id = $1",
                stored,
            )
        })
        .unwrap()
        .iter()
        .map(|r| r.i64(0).unwrap())
        .collect();
    assert_eq!(stored_calls.len(), 6);
    let rows = chrome
        .client
        .find_all(fantoccini::Locator::Css("#call_records + table tbody tr"))
        .await
        .unwrap();
    assert_eq!(rows.len(), stored_calls.len(), "{calls_table}");
    for at in &stored_calls {
        let day = time::OffsetDateTime::from_unix_timestamp(*at)
            .unwrap()
            .date()
            .to_string();
        assert!(calls_table.contains(&day), "{day} in {calls_table}");
    }
    assert!(
        calls_table.contains("+442079460018"),
        "the number she dialled: {calls_table}"
    );
    assert!(
        calls_table.contains("+441614960753"),
        "the caller ID she saw: {calls_table}"
    );
    assert!(calls_table.contains("outgoing") && calls_table.contains("incoming"));
    assert!(
        !calls_table.contains("1772") && !calls_table.contains("redacted"),
        "{calls_table}"
    );
    chrome.screenshot(&shots, "bundle", DESKTOP.0).await;
    let href = chrome
        .css("a[href^='files/media/']")
        .await
        .attr("href")
        .await
        .unwrap()
        .unwrap();
    chrome.click("a[href^='files/media/']").await;
    let opened = chrome.client.current_url().await.unwrap();
    assert!(opened.as_str().ends_with(&href), "{opened} follows {href}");
    assert_eq!(
        std::fs::read(unpacked.path().join(&href)).unwrap(),
        photo_bytes,
        "the linked file is her photo"
    );
    // The download is on the request's timeline and in the audit log.
    let timeline = steward::rights::timeline(&env.core, &Actor::cli(), &request_id).unwrap();
    assert!(timeline.iter().any(|t| t.event == "downloaded"));
    chrome.close().await;
}

/// Seeds a few colleagues into Northwind's directory, for the page to show.
fn seed_directory(env: &Env, d: &demo::Demo) {
    let people = [
        (
            "Priya Shah",
            "Operations Director",
            "priya.shah@northwind.example",
            "+44 20 7946 0010",
        ),
        (
            "Tom Hughes",
            "Support Engineer",
            "tom.hughes@northwind.example",
            "2102",
        ),
        (
            "Asha Patel",
            "Account Manager",
            "asha.patel@northwind.example",
            "+44 20 7946 0031",
        ),
        (
            "Reception",
            "Front desk",
            "reception@northwind.example",
            "2100",
        ),
    ];
    for (name, title, email, phone) in people {
        let typed = |v: &str| steward_vcard::Typed {
            value: v.to_owned(),
            ..Default::default()
        };
        steward::directory::create(
            &env.core,
            &Actor::cli(),
            &d.northwind.id,
            steward::directory::EntryInput {
                display_name: name.into(),
                title: Some(title.into()),
                organization: Some("Northwind Telecom Ltd".into()),
                emails: vec![typed(email)],
                phones: vec![typed(phone)],
                ..Default::default()
            },
        )
        .unwrap();
    }
}

#[test]
fn an_employer_adds_a_directory_entry_that_a_user_receives_through_sync() {
    let env = Env::sqlite();
    let d = demo::seed(&env);
    seed_directory(&env, &d);
    block_on(directory_reaches_the_app(env, d));
}

async fn directory_reaches_the_app(env: Env, d: demo::Demo) {
    use fantoccini::key::Key;

    let Some(chrome) = Chrome::start().await else {
        return;
    };
    let server = Server::start(env.core.clone()).await;
    let base = server.base.clone();
    let shots = screenshot_dir();
    let sync_url = format!("/api/v1/tenants/{}/directory/sync", d.northwind.id);

    // Gwen's App has synced the directory: it holds a token from before the change.
    let gwen = server.login(&d.gwen.username).await;
    let (s, first) = server.call("GET", &sync_url, Some(&gwen), None).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["full"], true);
    assert_eq!(first["upserts"].as_array().unwrap().len(), 4);
    let sync = |since: serde_json::Value| {
        let (server, gwen, url) = (&server, &gwen, &sync_url);
        async move {
            let t = since.as_str().unwrap();
            let (s, page) = server
                .call("GET", &format!("{url}?since={t}"), Some(gwen), None)
                .await;
            assert_eq!(s, 200, "{page}");
            assert_eq!(page["full"], false, "an incremental change: {page}");
            page
        }
    };

    // The employer's admin adds an entry, by keyboard from the first field on.
    chrome.login(&base, &d.admin.username, PASSWORD).await;
    chrome.goto(&format!("{base}/console/directory")).await;
    assert!(chrome.text("h1").await.contains("Northwind Telecom Ltd"));
    chrome.click("#add-display_name").await;
    let typed = [
        "Morgan Lee",
        "Head of Billing",
        "Morgan",
        "Lee",
        "Northwind Telecom Ltd",
        "Finance",
        "morgan.lee@northwind.example",
        "+44 20 7946 0042",
    ];
    for (i, text) in typed.iter().enumerate() {
        let field = chrome.client.active_element().await.unwrap();
        field.send_keys(text).await.unwrap();
        let next = if i + 1 < typed.len() {
            Key::Tab.to_string()
        } else {
            // Tab to the button, Enter to send.
            format!("{}{}", Key::Tab, Key::Enter)
        };
        field.send_keys(&next).await.unwrap();
    }
    let flash = chrome.text(".flash").await;
    assert!(flash.contains("added"), "{flash}");
    let table = chrome.text("table.directory").await;
    assert!(
        table.contains("Morgan Lee") && table.contains("Head of Billing"),
        "{table}"
    );
    chrome.screenshot(&shots, "directory", DESKTOP.0).await;
    chrome
        .screenshot_sized(&shots, "directory-phone", PHONE.0, Some(PHONE.1))
        .await;

    // Gwen's next sync brings it, as a change since her token.
    let page = sync(first["token"].clone()).await;
    let upserts = page["upserts"].as_array().unwrap();
    assert_eq!(upserts.len(), 1, "{page}");
    assert_eq!(upserts[0]["display_name"], "Morgan Lee");
    assert_eq!(upserts[0]["title"], "Head of Billing");
    assert_eq!(
        upserts[0]["emails"][0]["value"],
        "morgan.lee@northwind.example"
    );
    assert!(page["deletions"].as_array().unwrap().is_empty());
    let id = upserts[0]["id"].as_str().unwrap().to_owned();

    // The admin edits it: the change arrives at the next sync.
    chrome
        .goto(&format!("{base}/console/directory?q=morgan"))
        .await;
    chrome.click("table.directory a").await;
    chrome
        .wait_for_path(&format!("/console/directory/{id}"))
        .await;
    chrome.fill("#edit-title", "Director of Billing").await;
    chrome.click("#edit-form button[type=submit]").await;
    chrome.wait_for_path("/console/directory").await;
    assert!(chrome.text(".flash").await.contains("saved"));
    let page = sync(page["token"].clone()).await;
    let upserts = page["upserts"].as_array().unwrap();
    assert_eq!(upserts.len(), 1, "{page}");
    assert_eq!(
        (upserts[0]["id"].as_str(), upserts[0]["title"].as_str()),
        (Some(id.as_str()), Some("Director of Billing"))
    );

    // Removing needs the box ticked; then the deletion reaches the App.
    chrome.goto(&format!("{base}/console/directory/{id}")).await;
    chrome.click("#delete-form button[type=submit]").await;
    let err = chrome.text("#delete-confirm-error").await;
    assert!(err.contains("Tick the box"), "{err}");
    let page_unchanged = sync(page["token"].clone()).await;
    assert!(page_unchanged["deletions"].as_array().unwrap().is_empty());
    chrome.click("#delete-confirm").await;
    chrome.click("#delete-form button[type=submit]").await;
    chrome.wait_for_path("/console/directory").await;
    assert!(chrome.text(".flash").await.contains("removed"));
    assert!(!chrome.text("main").await.contains("Morgan Lee"));
    let page = sync(page["token"].clone()).await;
    assert!(page["upserts"].as_array().unwrap().is_empty(), "{page}");
    assert_eq!(page["deletions"], serde_json::json!([id]));
    chrome.close().await;
}
