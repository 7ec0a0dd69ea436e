//! Call recordings over HTTP on SQLite, PostgreSQL and S3: upload linked to a
//! call record (WAV, MP3, Opus), refusals of malformed uploads that leave nothing
//! behind, playback only for the roles the policy allows with an audit entry per
//! party on every access, the audio in the owner's access bundle, retention at
//! 90 days from the call, erasure of the owner (row and file go) and of the
//! other party (their id cleared, the owner's recording kept), and the
//! plaintext scan of the data directory and blob folder.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::{self, Read};
use std::sync::Arc;

use bytes::Bytes;
use common::{Env, Server, files_containing, holds, new_user, provider_staff, seed_tenant};
use futures_util::stream;
use serde_json::{Value, json};
use steward::Steward;
use steward::access::{Actor, Role};
use steward::accounts::{self, Account, NewUser};
use steward::recordings::{self, Upload};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase, export};

const DAY: i64 = 86_400;
/// A small limit for these tests, so that "too large" costs little to send.
const LIMIT: u64 = 256 * 1024;

const CUSTOMER: &str = "+44 7700 900555";
const CUSTOMER_DIGITS: &str = "7700900555";
const CUSTOMER2: &str = "+44 20 7946 0123";
const AGENT_PHONE: &str = "+44 7700 900111";
const FILE_NAME: &str = "in-07700900555-rosalind.wav";

fn sync<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// `len` bytes of `marker` repeated: the audio samples.
fn samples(marker: &str, len: usize) -> Vec<u8> {
    marker.bytes().cycle().take(len).collect()
}

/// A PCM WAV file as Asterisk's MixMonitor writes it: 8 kHz, 16-bit, mono.
fn wav(marker: &str, data_len: usize) -> Vec<u8> {
    let data = samples(marker, data_len);
    let mut v = b"RIFF".to_vec();
    v.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    v.extend_from_slice(b"WAVEfmt ");
    v.extend_from_slice(&16u32.to_le_bytes());
    v.extend_from_slice(&1u16.to_le_bytes()); // PCM
    v.extend_from_slice(&1u16.to_le_bytes()); // mono
    v.extend_from_slice(&8000u32.to_le_bytes());
    v.extend_from_slice(&16000u32.to_le_bytes()); // byte rate
    v.extend_from_slice(&2u16.to_le_bytes()); // block align
    v.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
    v.extend_from_slice(b"data");
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v.extend_from_slice(&data);
    v
}

/// An MP3 file: an ID3v2.4 tag, then MPEG-1 layer III frames (128 kbit/s, 44.1 kHz).
fn mp3(marker: &str) -> Vec<u8> {
    let mut v = b"ID3\x04\x00\x00\x00\x00\x00\x0a".to_vec();
    v.extend_from_slice(&[0; 10]);
    for _ in 0..20 {
        v.extend_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
        v.extend_from_slice(&samples(marker, 413));
    }
    v
}

/// An Opus file: an Ogg page (beginning of stream) holding the OpusHead packet,
/// then a page of audio.
fn opus(marker: &str) -> Vec<u8> {
    let mut v = b"OggS\x00\x02".to_vec();
    v.extend_from_slice(&[0; 8]); // granule position
    v.extend_from_slice(&0x1234_5678u32.to_le_bytes()); // serial
    v.extend_from_slice(&0u32.to_le_bytes()); // page sequence
    v.extend_from_slice(&0u32.to_le_bytes()); // checksum
    v.extend_from_slice(&[1, 19]); // one segment of 19 bytes
    v.extend_from_slice(b"OpusHead\x01\x01");
    v.extend_from_slice(&312u16.to_le_bytes()); // pre-skip
    v.extend_from_slice(&48_000u32.to_le_bytes());
    v.extend_from_slice(&[0, 0, 0]); // gain, mapping family
    v.extend_from_slice(b"OggS\x00\x00");
    v.extend_from_slice(&[0; 20]);
    v.extend_from_slice(&[1, 200]);
    v.extend_from_slice(&samples(marker, 200));
    v
}

fn count(core: &Steward, sql: &str) -> i64 {
    sync(|| {
        core.db
            .read(|c| c.query_opt(sql, &[]))
            .unwrap()
            .unwrap()
            .i64(0)
            .unwrap()
    })
}

async fn objects(core: &Steward) -> Vec<String> {
    core.blobs
        .list("tenant")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("/call_recordings/"))
        .collect()
}

/// `read` audit entries about `subject` for call recordings, with what was read.
fn reads(core: &Steward, subject: &str) -> Vec<Value> {
    sync(|| steward::audit::for_subject(&core.db, subject).unwrap())
        .into_iter()
        .filter(|e| e.action == "read" && e.category.as_deref() == Some("call_recordings"))
        .inspect(|e| assert_eq!(e.purpose.as_deref(), Some("training_monitoring")))
        .map(|e| e.detail)
        .collect()
}

async fn get_bytes(
    srv: &Server,
    path: &str,
    token: &str,
) -> (u16, Vec<u8>, BTreeMap<String, String>) {
    let resp = srv
        .http
        .get(srv.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
        .collect();
    (status, resp.bytes().await.unwrap().to_vec(), headers)
}

fn bundle(core: &Steward, subject: &str, out: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind: Kind::Access,
            channel: RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "known caller").unwrap();
    export::for_request(core, &cli, &req.id, out).unwrap();
    let mut z = zip::ZipArchive::new(std::fs::File::open(out).unwrap()).unwrap();
    (0..z.len())
        .map(|i| {
            let mut f = z.by_index(i).unwrap();
            let mut b = Vec::new();
            f.read_to_end(&mut b).unwrap();
            (f.name().unwrap().to_string(), b)
        })
        .collect()
}

fn erase_by_request(core: &Steward, subject: &str) -> erase::ErasureReport {
    let cli = Actor::cli();
    let req = rights::create(
        core,
        &cli,
        NewRequest {
            subject: SubjectRef::Id(subject.to_owned()),
            kind: Kind::Erasure,
            channel: RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &cli, &req.id, "signed letter").unwrap();
    erase::for_request(core, &cli, &req.id).unwrap()
}

/// A user of the tenant with a phone number (a member of staff who takes calls).
fn agent(core: &Steward, tenant: &str, tag: &str) -> Account {
    accounts::create_user(
        core,
        &Actor::cli(),
        tenant,
        NewUser {
            phone: Some(AGENT_PHONE.into()),
            ..new_user(&format!("{tag}-agent"), Role::Subject)
        },
    )
    .unwrap()
}

/// Everything a flow needs: the tenants, the calls and the people.
struct Calls {
    /// Inbound from CUSTOMER to the agent; outbound from the agent to CUSTOMER2;
    /// inbound from a withheld number to the agent.
    inbound: String,
    outbound: String,
    withheld: String,
    /// A call of tenant B.
    b_call: String,
    start: i64,
}

async fn ingest_calls(
    srv: &Server,
    admin: &str,
    tenant: &str,
    b_admin: &str,
    b_tenant: &str,
) -> Calls {
    let start = steward::clock::now() - 3600;
    let call = |caller: &str, callee: &str, direction: &str, offset: i64| {
        json!({
            "caller": caller, "callee": callee, "direction": direction,
            "start": start + offset, "answer": start + offset + 5, "end": start + offset + 125,
        })
    };
    let (s, body) = srv
        .call(
            "POST",
            &format!("/api/v1/tenants/{tenant}/cdrs"),
            Some(admin),
            Some(json!([
                call(CUSTOMER, AGENT_PHONE, "inbound", 0),
                call(AGENT_PHONE, CUSTOMER2, "outbound", 300),
                call("anonymous", AGENT_PHONE, "inbound", 600),
            ])),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    let ids: Vec<String> = body["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3, "{body}");
    // Re-sending names the same calls.
    let (_, again) = srv
        .call(
            "POST",
            &format!("/api/v1/tenants/{tenant}/cdrs"),
            Some(admin),
            Some(call(CUSTOMER, AGENT_PHONE, "inbound", 0)),
        )
        .await;
    assert_eq!(again["ids"], json!([ids[0]]), "{again}");
    assert_eq!(again["duplicate"], 1);
    let (s, b) = srv
        .call(
            "POST",
            &format!("/api/v1/tenants/{b_tenant}/cdrs"),
            Some(b_admin),
            Some(call(CUSTOMER, "+44 7700 900999", "inbound", 0)),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    Calls {
        inbound: ids[0].clone(),
        outbound: ids[1].clone(),
        withheld: ids[2].clone(),
        b_call: b["ids"][0].as_str().unwrap().to_owned(),
        start,
    }
}

fn upload_path(call: &str, direction: &str, duration: &str) -> String {
    format!("/api/v1/calls/{call}/recordings?direction={direction}&duration={duration}")
}

async fn recordings_flow(env: &Env) {
    // The same stores, with a small upload limit.
    let core = Arc::new(sync(|| env.reopen_with(|s| s.max_recording_bytes = LIMIT)));
    let (a, b) = sync(|| (seed_tenant(&core, "ra"), seed_tenant(&core, "rb")));
    let agent = sync(|| agent(&core, &a.tenant.id, "ra"));
    let staff = sync(|| provider_staff(&core, "rec-staff-op", Role::Operator));
    let srv = Server::start(core.clone()).await;
    let admin = srv.login(&a.admin.username).await;
    let operator = srv.login(&a.operator.username).await;
    let dpo = srv.login(&a.dpo.username).await;
    let user = srv.login(&a.subject.username).await;
    let staff_op = srv.login(&staff.username).await;
    let b_admin = srv.login(&b.admin.username).await;
    let b_operator = srv.login(&b.operator.username).await;
    let calls = ingest_calls(&srv, &admin, &a.tenant.id, &b_admin, &b.tenant.id).await;

    // ---- upload: WAV, MP3, Opus ----
    let audio_wav = wav("inbound-call-audio-marker ", 48_000);
    let (s, rec) = srv
        .raw(
            "POST",
            &format!(
                "{}&name={FILE_NAME}",
                upload_path(&calls.inbound, "inbound", "118")
            ),
            Some(&admin),
            "audio/wav",
            audio_wav.clone(),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    assert_eq!(rec["content_type"], "audio/wav");
    assert_eq!(rec["size"], audio_wav.len() as u64);
    assert_eq!(rec["direction"], "inbound");
    assert_eq!(rec["duration"], 118);
    assert_eq!(rec["call_id"], calls.inbound.as_str());
    assert_eq!(rec["tenant_id"], a.tenant.id.as_str());
    assert_eq!(rec["name"], FILE_NAME);
    assert_eq!(rec["recorded_at"], calls.start);
    assert_eq!(rec["expires_at"], calls.start + 90 * DAY);
    // The caller of an inbound call (the customer) owns it; the agent is the other party.
    assert_eq!(rec["owner_party"], "caller");
    assert_eq!(rec["other_subject_id"], agent.subject_id.as_str());
    let customer = rec["subject_id"].as_str().unwrap().to_owned();
    assert_ne!(customer, agent.subject_id);
    let rec_id = rec["id"].as_str().unwrap().to_owned();

    let audio_mp3 = mp3("outbound-call-audio ");
    let (s, rec2) = srv
        .raw(
            "POST",
            &upload_path(&calls.outbound, "outbound", "120"),
            Some(&operator),
            "audio/mpeg",
            audio_mp3.clone(),
        )
        .await;
    assert_eq!(s, 201, "{rec2}");
    assert_eq!(rec2["content_type"], "audio/mpeg");
    // The callee of an outbound call owns it.
    assert_eq!(rec2["owner_party"], "callee");
    assert_eq!(rec2["other_subject_id"], agent.subject_id.as_str());
    let customer2 = rec2["subject_id"].as_str().unwrap().to_owned();
    let rec2_id = rec2["id"].as_str().unwrap().to_owned();

    let audio_opus = opus("withheld-call-audio ");
    let (s, rec3) = srv
        .raw(
            "POST",
            &upload_path(&calls.withheld, "inbound", "121"),
            Some(&admin),
            "audio/opus",
            audio_opus.clone(),
        )
        .await;
    assert_eq!(s, 201, "{rec3}");
    assert_eq!(rec3["content_type"], "audio/ogg");
    // A withheld caller: the agent's key encrypts it, and nobody else is named.
    assert_eq!(rec3["owner_party"], "callee");
    assert_eq!(rec3["subject_id"], agent.subject_id.as_str());
    assert_eq!(rec3["other_subject_id"], Value::Null);
    let rec3_id = rec3["id"].as_str().unwrap().to_owned();
    assert_eq!(objects(&core).await.len(), 3);
    let n = |core: &Steward| count(core, "SELECT COUNT(*) FROM call_recordings");
    assert_eq!(n(&core), 3);

    // ---- malformed uploads: refused, nothing stored, nothing lost ----
    let inbound = |d: &str| upload_path(&calls.inbound, "inbound", d);
    let unknown_call = "8000000069000000aaaaaaaaaaaaaaaa";
    type Case<'a> = (String, &'a str, Vec<u8>, u16, Option<&'a str>);
    let bad: Vec<Case> = vec![
        (
            inbound("60"),
            "text/plain",
            b"not audio at all".to_vec(),
            415,
            None,
        ),
        (inbound("60"), "audio/wav", mp3("x"), 415, None), // declared WAV, content MP3
        (inbound("60"), "audio/mpeg", opus("x"), 415, None),
        (inbound("60"), "image/jpeg", common::jpeg("x"), 415, None),
        (
            inbound("60"),
            "audio/wav",
            b"RIFF\x00\x00\x00\x00AVI LIST".to_vec(),
            415,
            None,
        ),
        (inbound("60"), "audio/wav", Vec::new(), 415, None),
        (
            inbound("60"),
            "audio/wav",
            wav("x", LIMIT as usize),
            413,
            None,
        ),
        (
            upload_path(unknown_call, "inbound", "60"),
            "audio/wav",
            wav("x", 100),
            404,
            None,
        ),
        (
            upload_path("not-a-call", "inbound", "60"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("call_id"),
        ),
        (
            upload_path(&calls.inbound[..30], "inbound", "60"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("call_id"),
        ),
        (
            upload_path(&calls.b_call, "inbound", "60"),
            "audio/wav",
            wav("x", 100),
            404,
            None,
        ),
        (
            inbound("-5"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("duration"),
        ),
        (
            inbound("ninety"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("duration"),
        ),
        (
            inbound("1.5"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("duration"),
        ),
        (
            inbound("99999"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("duration"),
        ),
        (
            upload_path(&calls.inbound, "sideways", "60"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("direction"),
        ),
        (
            upload_path(&calls.inbound, "outbound", "60"),
            "audio/wav",
            wav("x", 100),
            400,
            Some("direction"),
        ),
        (
            format!("/api/v1/calls/{}/recordings?duration=60", calls.inbound),
            "audio/wav",
            wav("x", 100),
            400,
            Some("direction"),
        ),
        (
            format!(
                "/api/v1/calls/{}/recordings?direction=inbound",
                calls.inbound
            ),
            "audio/wav",
            wav("x", 100),
            400,
            Some("duration"),
        ),
        (
            format!("{}&speed=2", inbound("60")),
            "audio/wav",
            wav("x", 100),
            400,
            None,
        ),
        (
            format!("{}&name=", inbound("60")),
            "audio/wav",
            wav("x", 100),
            400,
            Some("name"),
        ),
        (
            format!("{}&name=a%0Ab.wav", inbound("60")),
            "audio/wav",
            wav("x", 100),
            400,
            Some("name"),
        ),
    ];
    for (path, ct, body, status, field) in bad {
        let (got, err) = srv.raw("POST", &path, Some(&admin), ct, body).await;
        assert_eq!(got, status, "{path} {ct}: {err}");
        if let Some(f) = field {
            assert_eq!(err["error"]["field"], f, "{path}: {err}");
        }
        assert!(
            err["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{err}"
        );
    }
    // Roles that do not upload.
    for t in [&user, &dpo] {
        let (got, err) = srv
            .raw("POST", &inbound("60"), Some(t), "audio/wav", wav("x", 100))
            .await;
        assert_eq!(got, 403, "{err}");
    }
    // Another tenant's staff do not see A's call exist.
    let (got, _) = srv
        .raw(
            "POST",
            &inbound("60"),
            Some(&b_admin),
            "audio/wav",
            wav("x", 100),
        )
        .await;
    assert_eq!(got, 404);
    assert_eq!(n(&core), 3);
    assert_eq!(objects(&core).await.len(), 3);
    assert_eq!(count(&core, "SELECT COUNT(*) FROM blob_outbox"), 0);

    // A client that goes away midway (the body stream fails): nothing is kept.
    let mut pieces: Vec<io::Result<Bytes>> = wav("cut ", 200_000)
        .chunks(64 * 1024)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    pieces.truncate(2);
    pieces.push(Err(io::Error::new(
        io::ErrorKind::ConnectionReset,
        "client gone",
    )));
    let err = recordings::upload(
        core.clone(),
        accounts::actor_for(&a.admin),
        Upload {
            call_id: calls.inbound.clone(),
            direction: "inbound".into(),
            duration: "60".into(),
            content_type: Some("audio/wav".into()),
            name: None,
        },
        stream::iter(pieces),
    )
    .await
    .unwrap_err();
    assert_eq!(
        (err.http_status(), err.field()),
        (400, Some("body")),
        "{err}"
    );
    assert_eq!(n(&core), 3);
    assert_eq!(objects(&core).await.len(), 3);

    // ---- reads: only the roles the policy allows, each audited per party ----
    let list = format!("/api/v1/calls/{}/recordings", calls.inbound);
    let content = format!("/api/v1/recordings/{rec_id}/content");
    let meta = format!("/api/v1/recordings/{rec_id}");
    for t in [&admin, &user] {
        for path in [&list, &meta, &content] {
            let (s, _, _) = get_bytes(&srv, path, t).await;
            assert_eq!(s, 403, "{path}");
        }
    }
    for t in [&b_admin, &b_operator] {
        for path in [&list, &meta, &content] {
            let (s, body, _) = get_bytes(&srv, path, t).await;
            assert_eq!(s, 404, "{path}");
            let text = String::from_utf8_lossy(&body);
            assert!(
                !text.contains(&customer) && !text.contains(&rec_id),
                "{text}"
            );
        }
    }
    // Refusals read nothing, so they record no read.
    assert!(reads(&core, &customer).is_empty());
    for t in [&operator, &dpo, &staff_op] {
        let (s, list_body) = srv.call("GET", &list, Some(t), None).await;
        assert_eq!(s, 200, "{list_body}");
        assert_eq!(list_body.as_array().unwrap().len(), 1, "{list_body}");
        assert_eq!(list_body[0]["id"], rec_id.as_str());
        assert_eq!(list_body[0]["name"], FILE_NAME);
    }
    let (s, m) = srv.call("GET", &meta, Some(&operator), None).await;
    assert_eq!((s, &m["name"]), (200, &json!(FILE_NAME)), "{m}");
    let before = reads(&core, &customer).len();
    assert_eq!(before, 4, "three lists and one metadata read");
    for (i, t) in [&operator, &staff_op].into_iter().enumerate() {
        let (s, bytes, h) = get_bytes(&srv, &content, t).await;
        assert_eq!(s, 200);
        assert_eq!(bytes, audio_wav, "the audio comes back as uploaded");
        assert_eq!(h["content-type"], "audio/wav");
        assert_eq!(h["content-length"], audio_wav.len().to_string());
        assert_eq!(h["cache-control"], "private, no-store");
        // Each playback: one read entry about each party of the call.
        for who in [&customer, &agent.subject_id] {
            let r = reads(&core, who);
            let plays: Vec<&Value> = r.iter().filter(|d| d["read"] == "content").collect();
            assert_eq!(plays.len(), i + 1, "{who}: {r:?}");
            assert_eq!(plays[i]["recording_id"], rec_id.as_str());
            // Ids only: the call id would tell when the call was.
            assert_eq!(
                plays[i].as_object().unwrap().keys().collect::<Vec<_>>(),
                ["read", "recording_id"]
            );
        }
    }
    let (s, bytes, h) =
        get_bytes(&srv, &format!("/api/v1/recordings/{rec2_id}/content"), &dpo).await;
    assert_eq!((s, h["content-type"].as_str()), (200, "audio/mpeg"));
    assert_eq!(bytes, audio_mp3);
    let (s, bytes, h) =
        get_bytes(&srv, &format!("/api/v1/recordings/{rec3_id}/content"), &dpo).await;
    assert_eq!((s, h["content-type"].as_str()), (200, "audio/ogg"));
    assert_eq!(bytes, audio_opus);
    let (s, _) = srv
        .call("GET", "/api/v1/calls/zz/recordings", Some(&operator), None)
        .await;
    assert_eq!(s, 400);
    let (s, _) = srv
        .call(
            "GET",
            "/api/v1/recordings/no-such-id",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // A path parameter that is not UTF-8 once decoded.
    let (s, err) = srv
        .call(
            "GET",
            "/api/v1/recordings/%C3%28/content",
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(
        (s, err["error"]["code"].as_str()),
        (400, Some("invalid")),
        "{err}"
    );

    // ---- the bundle: the owner gets the audio, the other party the row only ----
    let files = sync(|| bundle(&core, &customer, &env.dir.path().join("customer.zip")));
    assert_eq!(
        files[&format!("files/call_recordings/{rec_id}.wav")],
        audio_wav
    );
    let rows: Value = serde_json::from_slice(&files["data/call_recordings.json"]).unwrap();
    assert_eq!(rows[0]["file_name"], FILE_NAME, "{rows}");
    assert_eq!(
        rows[0]["file"],
        format!("files/call_recordings/{rec_id}.wav"),
        "{rows}"
    );
    assert!(rows[0].get("other_subject_id").is_none(), "{rows}");
    let files = sync(|| bundle(&core, &agent.subject_id, &env.dir.path().join("agent.zip")));
    assert!(!files.contains_key(&format!("files/call_recordings/{rec_id}.wav")));
    assert_eq!(
        files[&format!("files/call_recordings/{rec3_id}.ogg")],
        audio_opus
    );
    let rows: Value = serde_json::from_slice(&files["data/call_recordings.json"]).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3, "{rows}");
    // Recordings owned by others (the customer's) are in the agent's list
    // without their file or their name (sealed with the owner's key).
    let theirs: Vec<&Value> = rows
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["file"].is_null())
        .collect();
    assert_eq!(theirs.len(), 2, "{rows}");
    assert!(theirs.iter().all(|r| r["file_name"].is_null()), "{rows}");
    assert!(!rows.to_string().contains(rec_id.as_str()), "{rows}");

    // ---- delete: the uploader's role may; the row and the object go ----
    let (s, _) = srv
        .call(
            "DELETE",
            &format!("/api/v1/recordings/{rec2_id}"),
            Some(&user),
            None,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = srv
        .call(
            "DELETE",
            &format!("/api/v1/recordings/{rec2_id}"),
            Some(&b_admin),
            None,
        )
        .await;
    assert_eq!(s, 404);
    let (s, _) = srv
        .call(
            "DELETE",
            &format!("/api/v1/recordings/{rec2_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(s, 204);
    assert_eq!(n(&core), 2);
    assert_eq!(objects(&core).await.len(), 2);
    let deleted = sync(|| steward::audit::for_subject(&core.db, &customer2).unwrap());
    assert!(
        deleted
            .iter()
            .any(|e| e.action == "delete" && e.detail["recording_id"] == rec2_id.as_str())
    );

    // ---- retention: 90 days from the call ----
    let plan = sync(|| steward::retention::plan(&core, calls.start + 89 * DAY).unwrap());
    assert!(
        !plan.items.iter().any(|i| i.store == "call_recordings"),
        "{:?}",
        plan.items
    );
    let report = sync(|| steward::retention::run(&core, calls.start + 91 * DAY).unwrap());
    // The agent's own recording, and the customer's (left to its owner, not
    // pseudonymised first for the agent): two rows, nothing left for next run.
    assert_eq!(
        report.counts.rows.get("call_recordings"),
        Some(&2),
        "{report:?}"
    );
    assert_eq!(report.changed, 0, "{report:?}");
    assert_eq!(n(&core), 0);
    assert!(
        objects(&core).await.is_empty(),
        "retention deletes the audio too"
    );
    assert_eq!(count(&core, "SELECT COUNT(*) FROM blob_outbox"), 0);
    // The call records (6 years) and the people stay.
    assert_eq!(count(&core, "SELECT COUNT(*) FROM call_records"), 4);
    let (s, _) = srv.call("GET", &meta, Some(&operator), None).await;
    assert_eq!(s, 404);

    // ---- erasure ----
    let (s, again) = srv
        .raw(
            "POST",
            &inbound("118"),
            Some(&admin),
            "audio/wav",
            audio_wav.clone(),
        )
        .await;
    assert_eq!(s, 201, "{again}");
    let kept_id = again["id"].as_str().unwrap().to_owned();
    let (s, own) = srv
        .raw(
            "POST",
            &upload_path(&calls.withheld, "inbound", "100"),
            Some(&admin),
            "audio/ogg",
            audio_opus.clone(),
        )
        .await;
    assert_eq!(s, 201, "{own}");
    assert_eq!(objects(&core).await.len(), 2);
    // While both are stored, their objects read raw from the blob store (folder
    // or S3) hold none of the audio.
    for key in objects(&core).await {
        let raw = core.blobs.get(&key).await.unwrap();
        for marker in [&b"inbound-call-audio-marker"[..], b"withheld-call-audio"] {
            assert!(!holds(&raw, marker), "{key} holds audio in clear");
        }
    }
    // Erasing the agent: their own recording (withheld caller) goes with its file;
    // the customer's stays, without the agent's id.
    let report = sync(|| erase_by_request(&core, &agent.subject_id));
    assert_eq!(
        report.deleted.get("call_recordings"),
        Some(&1),
        "{report:?}"
    );
    assert_eq!(
        report.pseudonymised.get("call_recordings"),
        Some(&1),
        "{report:?}"
    );
    let left = objects(&core).await;
    assert_eq!(left.len(), 1);
    assert!(left[0].ends_with(&kept_id), "{left:?}");
    let (s, m) = srv
        .call(
            "GET",
            &format!("/api/v1/recordings/{kept_id}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(s, 200, "{m}");
    assert_eq!(m["other_subject_id"], Value::Null);
    assert_eq!(m["subject_id"], customer.as_str());
    let (s, bytes, _) = get_bytes(
        &srv,
        &format!("/api/v1/recordings/{kept_id}/content"),
        &operator,
    )
    .await;
    assert_eq!((s, bytes == audio_wav), (200, true));
    // Erasing the customer: the recording and its file go.
    let report = sync(|| erase_by_request(&core, &customer));
    assert_eq!(
        report.deleted.get("call_recordings"),
        Some(&1),
        "{report:?}"
    );
    assert_eq!(n(&core), 0);
    assert!(objects(&core).await.is_empty());
    let (s, _) = srv
        .call(
            "GET",
            &format!("/api/v1/recordings/{kept_id}"),
            Some(&operator),
            None,
        )
        .await;
    assert_eq!(s, 404);
    // The call record itself answers: a new upload needs a party to own it.
    let (s, err) = srv
        .raw(
            "POST",
            &inbound("118"),
            Some(&admin),
            "audio/wav",
            audio_wav.clone(),
        )
        .await;
    assert_eq!(s, 409, "{err}");
    release(srv, core).await;
}

/// Stops the server and drops the reopened Steward off the runtime's threads
/// (the sync PostgreSQL client must not be dropped on one).
async fn release(srv: Server, core: Arc<Steward>) {
    drop(srv);
    for _ in 0..500 {
        if Arc::strong_count(&core) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    sync(move || drop(core));
}

#[tokio::test(flavor = "multi_thread")]
async fn recordings_on_sqlite() {
    let env = Env::sqlite();
    recordings_flow(&env).await;
    // Nothing of the audio, the file name or the parties' numbers is readable
    // in the data directory (database, WAL, key store, blob folder).
    assert!(env.data_dir().join("blobs").exists());
    for needle in [
        "inbound-call-audio-marker",
        "outbound-call-audio",
        "withheld-call-audio",
        FILE_NAME,
        "rosalind",
        CUSTOMER_DIGITS,
        "7700900111",
        "2079460123",
    ] {
        let hits = files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} found in clear in {hits:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn recordings_on_postgres() {
    let Some(env) = sync(Env::postgres) else {
        return;
    };
    recordings_flow(&env).await;
    sync(move || drop(env));
}

#[tokio::test(flavor = "multi_thread")]
async fn recordings_on_s3() {
    let Some(env) = Env::sqlite_s3("recordings_on_s3") else {
        return;
    };
    recordings_flow(&env).await;
    // Nothing of the audio reached the local folder: it went to S3, encrypted.
    assert!(!env.data_dir().join("blobs").exists());
}

/// The policy decides who plays recordings back: a policy that gives them to
/// the employer's admin and not to operators is obeyed.
#[tokio::test(flavor = "multi_thread")]
async fn the_policy_names_who_may_play_back() {
    let env = Env::sqlite();
    let policy = include_str!("../../../policy/default.toml").replace(
        r#"access_roles = ["operator", "dpo"]"#,
        r#"access_roles = ["tenant-admin"]"#,
    );
    assert!(policy.contains(r#"access_roles = ["tenant-admin"]"#));
    let path = env.dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    let core = Arc::new(sync(|| {
        env.reopen_with(|s| s.policy_file = Some(path.clone()))
    }));
    let (a, b) = sync(|| (seed_tenant(&core, "pa"), seed_tenant(&core, "pb")));
    sync(|| agent(&core, &a.tenant.id, "pa"));
    let srv = Server::start(core.clone()).await;
    let admin = srv.login(&a.admin.username).await;
    let operator = srv.login(&a.operator.username).await;
    let b_admin = srv.login(&b.admin.username).await;
    let calls = ingest_calls(&srv, &admin, &a.tenant.id, &b_admin, &b.tenant.id).await;
    let audio = wav("policy-test ", 1000);
    let (s, rec) = srv
        .raw(
            "POST",
            &upload_path(&calls.inbound, "inbound", "60"),
            Some(&admin),
            "audio/x-wav",
            audio.clone(),
        )
        .await;
    assert_eq!(s, 201, "{rec}");
    let content = format!("/api/v1/recordings/{}/content", rec["id"].as_str().unwrap());
    let (s, bytes, _) = get_bytes(&srv, &content, &admin).await;
    assert_eq!((s, bytes == audio), (200, true));
    let resp = srv
        .http
        .get(srv.url(&content))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let body: Value = resp.json().await.unwrap();
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("tenant-admin"), "{msg}");
    // B's admin is allowed by role, not by tenant.
    let (s, _, _) = get_bytes(&srv, &content, &b_admin).await;
    assert_eq!(s, 404);
    // The OpenAPI document describes the upload's parameters and body.
    let (_, doc) = srv.call("GET", "/api/v1/openapi.json", None, None).await;
    let post = &doc["paths"]["/api/v1/calls/{call_id}/recordings"]["post"];
    let params: BTreeMap<String, bool> = post["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["required"].as_bool().unwrap_or(false),
            )
        })
        .collect();
    let expected: BTreeMap<String, bool> = [
        ("call_id", true),
        ("direction", true),
        ("duration", true),
        ("name", false),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    assert_eq!(params, expected, "{post}");
    assert!(
        post["requestBody"]["content"]["audio/wav"].is_object(),
        "{post}"
    );
    // Stored files are answered in the type found in them at upload: each
    // such route declares every type its upload takes.
    for (path, types) in [
        (
            "/api/v1/recordings/{recording_id}/content",
            steward::recordings::TYPES,
        ),
        ("/api/v1/media/{media_id}/content", steward::media::TYPES),
        (
            "/api/v1/chat/attachments/{attachment_id}/content",
            steward::chat::attachments::TYPES,
        ),
    ] {
        let content = doc["paths"][path]["get"]["responses"]["200"]["content"]
            .as_object()
            .unwrap();
        let mut declared: Vec<&str> = content.keys().map(String::as_str).collect();
        let mut expected = types.to_vec();
        declared.sort_unstable();
        expected.sort_unstable();
        assert_eq!(declared, expected, "{path}");
    }
    for path in [
        "/api/v1/recordings/{recording_id}",
        "/api/v1/recordings/{recording_id}/content",
    ] {
        assert!(doc["paths"][path]["get"]["security"].is_array(), "{path}");
    }
    release(srv, core).await;
}

/// `steward ingest recording` stores a file against a call, and refuses bad input
/// with the field named and exit code 2.
#[test]
fn cli_stores_a_recording() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let settings = steward::config::Settings {
        data_dir: data.clone(),
        ..Default::default()
    };
    let call = {
        let (core, _) = Steward::open(settings).unwrap();
        let t = steward::tenants::create(&core, &Actor::cli(), "CLI Tenant", None).unwrap();
        agent(&core, &t.id, "cli");
        let start = steward::clock::now() - 600;
        let r: steward::ingest::NewCallRecord = serde_json::from_value(json!({
            "caller": AGENT_PHONE, "callee": CUSTOMER, "start": start, "answer": start + 3,
            "end": start + 63,
        }))
        .unwrap();
        let report =
            steward::ingest::ingest_records(&core, &Actor::cli(), &t.id, &[r], false).unwrap();
        report.ids[0].clone()
    };
    let file = dir.path().join("1700000000.42.mp3");
    std::fs::write(&file, mp3("cli-audio ")).unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_steward"))
            .arg("--data-dir")
            .arg(&data)
            .args(args)
            .env_remove("STEWARD_MASTER_KEY")
            .output()
            .unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let f = file.to_str().unwrap();
    let (code, out, err) = run(&[
        "ingest",
        "recording",
        "--call",
        &call,
        "--direction",
        "outbound",
        "--duration",
        "60",
        "--json",
        f,
    ]);
    assert_eq!(code, 0, "{out} {err}");
    let rec: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rec["content_type"], "audio/mpeg");
    assert_eq!(rec["name"], "1700000000.42.mp3");
    assert_eq!(rec["owner_party"], "callee");
    let text = dir.path().join("notes.txt");
    std::fs::write(&text, "meeting notes").unwrap();
    for (args, field) in [
        (
            vec![
                "--call",
                &call,
                "--direction",
                "outbound",
                "--duration",
                "60",
                text.to_str().unwrap(),
            ],
            None,
        ),
        (
            vec![
                "--call",
                "xyz",
                "--direction",
                "outbound",
                "--duration",
                "60",
                f,
            ],
            Some("call_id"),
        ),
        (
            vec!["--call", &call, "--direction", "out", "--duration", "60", f],
            Some("direction"),
        ),
        (
            vec![
                "--call",
                &call,
                "--direction",
                "outbound",
                "--duration",
                "2m",
                f,
            ],
            Some("duration"),
        ),
        (
            vec![
                "--call",
                &call,
                "--direction",
                "outbound",
                "--duration",
                "60",
                "/no/such/file.wav",
            ],
            Some("file"),
        ),
    ] {
        let mut all = vec!["ingest", "recording"];
        all.extend(args);
        let (code, out, err) = run(&all);
        assert_eq!(code, 2, "{all:?}: {out} {err}");
        assert!(err.starts_with("error: "), "{err}");
        if let Some(f) = field {
            assert!(err.starts_with(&format!("error: {f}: ")), "{err}");
        }
    }
    let (code, _, err) = run(&[
        "ingest",
        "recording",
        "--call",
        "8000000069000000aaaaaaaaaaaaaaaa",
        "--direction",
        "outbound",
        "--duration",
        "60",
        f,
    ]);
    assert_eq!(code, 3, "{err}");
}

/// Sends one call record through the domain; returns its call id.
fn ingest_one(core: &Steward, tenant: &str, caller: &str, callee: &str, start: i64) -> String {
    let r: steward::ingest::NewCallRecord = serde_json::from_value(json!({
        "caller": caller, "callee": callee, "start": start, "answer": start + 2,
        "end": start + 62,
    }))
    .unwrap();
    steward::ingest::ingest_records(core, &Actor::cli(), tenant, &[r], false)
        .unwrap()
        .ids
        .remove(0)
}

fn store_recording(core: &Arc<Steward>, call: &str, marker: &str) -> recordings::Recording {
    steward::core::block_on(recordings::upload(
        core.clone(),
        Actor::cli(),
        Upload {
            call_id: call.to_owned(),
            direction: "inbound".into(),
            duration: "60".into(),
            content_type: Some("audio/wav".into()),
            name: None,
        },
        stream::iter([Ok::<_, io::Error>(Bytes::from(wav(marker, 2000)))]),
    ))
    .unwrap()
}

/// One retention run deletes every expired recording, whichever party's turn
/// comes first (the owner's here: the customer is older than the agent), and a
/// legal hold on the owner keeps theirs while the other party's id still goes.
fn retention_whatever_the_order(env: &Env) {
    let core = &env.core;
    let t = seed_tenant(core, "rr");
    let start = steward::clock::now() - 3600;
    // The customers become subjects before the agent does.
    ingest_one(core, &t.tenant.id, CUSTOMER, "+44 1632 960555", start);
    ingest_one(core, &t.tenant.id, CUSTOMER2, "+44 1632 960556", start);
    let agent = agent(core, &t.tenant.id, "rr");
    let c1 = ingest_one(core, &t.tenant.id, CUSTOMER, AGENT_PHONE, start + 100);
    let c2 = ingest_one(core, &t.tenant.id, CUSTOMER2, AGENT_PHONE, start + 200);
    let c3 = ingest_one(core, &t.tenant.id, "withheld", AGENT_PHONE, start + 300);
    let r1 = store_recording(core, &c1, "r1 ");
    let r2 = store_recording(core, &c2, "r2 ");
    let r3 = store_recording(core, &c3, "r3 ");
    assert!(
        r1.subject_id < agent.subject_id,
        "the owner's turn comes first"
    );
    assert_eq!(r3.subject_id, agent.subject_id);
    // The second customer is on legal hold: their recording stays.
    steward::retention::set_hold(
        core,
        &Actor::cli(),
        &r2.subject_id,
        steward::retention::HoldKind::Legal,
        true,
    )
    .unwrap();
    let at = start + 91 * DAY;
    let plan = steward::retention::plan(core, at).unwrap();
    let report = steward::retention::run(core, at).unwrap();
    assert_eq!(report.changed, 0, "{report:?}");
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(report.items, plan.items, "the run does what the plan said");
    let left = count(core, "SELECT COUNT(*) FROM call_recordings");
    assert_eq!(left, 1, "only the held owner's recording stays");
    let kept = recordings::get(core, &Actor::cli(), &r2.id).unwrap();
    assert_eq!(
        kept.other_subject_id, None,
        "the agent's id is cleared from it"
    );
    let keys: Vec<String> = steward::core::block_on(core.blobs.list("tenant"))
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .filter(|k| k.contains("/call_recordings/"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert!(keys[0].ends_with(&r2.id));
    for gone in [&r1.id, &r3.id] {
        assert!(recordings::get(core, &Actor::cli(), gone).is_err());
    }
    // Nothing more to do on the next run.
    let again = steward::retention::plan(core, at).unwrap();
    assert!(
        !again.items.iter().any(|i| i.store == "call_recordings"),
        "{:?}",
        again.items
    );
}

#[test]
fn retention_on_sqlite() {
    retention_whatever_the_order(&Env::sqlite());
}

#[test]
fn retention_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    retention_whatever_the_order(&env);
}
