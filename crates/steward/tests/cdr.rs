//! Call detail records on both databases: every real PBX file in ../shared/data
//! ingests (good rows stored, bad rows quarantined with file:line), a second run adds
//! nothing, two legs of one call are two records, a cdr_custom file is refused,
//! parties link to the tenant's users (by phone or extension) and to external
//! subjects found through the blind index, non-UTF-8 bytes survive, the rights
//! walkers export and erase call records, the usage summary adds up, and no number
//! is stored in clear. Plus the CLI's `--json` summary and the API's refusals.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use base64ct::{Base64, Encoding};
use common::{Env, Server, new_user, provider_staff, seed_tenant};
use serde_json::{Value as Json, json};
use steward::access::{Actor, Role};
use steward::accounts::{self, Account, NewUser};
use steward::core::fields;
use steward::ingest::{self, IngestReport, Options};
use steward::rights::{self, Kind, NewRequest, RequestChannel, SubjectRef, erase, export};
use steward::subjects::{self, SubjectKind};
use steward_store::{Value, params};

fn shared() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data")
}

/// Every file of ../shared/data/asterisk and ../shared/data/freeswitch, sorted.
fn pbx_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = ["asterisk", "freeswitch"]
        .iter()
        .flat_map(|d| std::fs::read_dir(shared().join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 5, "{files:?}");
    files
}

const MOCK: &str = "report-generator-mockdata.csv";
/// A caller in the mock data (a UK mobile number under the default region GB).
const MOCK_CALLER: &str = "791-445-9811";
/// Who that caller calls.
const MOCK_CALLEE: &str = "715-413-9112";

fn name_of(p: &str) -> &str {
    Path::new(p).file_name().unwrap().to_str().unwrap()
}

fn by_file(r: &IngestReport) -> BTreeMap<String, (u64, u64, u64)> {
    r.files
        .iter()
        .map(|f| {
            assert!(f.refused.is_none(), "{} refused: {:?}", f.file, f.refused);
            (
                name_of(&f.file).to_owned(),
                (f.accepted, f.duplicate, f.rejected),
            )
        })
        .collect()
}

fn count(env: &Env, sql: &str, args: &[Value]) -> i64 {
    env.core
        .db
        .read(|c| c.query_opt(sql, args))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap()
}

fn ingest_files(env: &Env, tenant: &str, files: &[PathBuf]) -> IngestReport {
    ingest::ingest_files(
        &env.core,
        &Actor::cli(),
        tenant,
        files,
        // Small batches, so that files span several transactions.
        &Options {
            batch_rows: 50,
            ..Options::default()
        },
        &mut |_| {},
    )
    .unwrap()
}

/// The mock data's records with `number` as source or destination, per the parser.
fn mock_legs(number: &str) -> (Vec<steward_cdr::CallRecord>, Vec<steward_cdr::CallRecord>) {
    let all: Vec<_> = steward_cdr::parse_file(shared().join("asterisk").join(MOCK))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let out = all
        .iter()
        .filter(|r| r.caller_raw == number.as_bytes())
        .cloned()
        .collect();
    let inc = all
        .iter()
        .filter(|r| r.callee_raw == number.as_bytes())
        .cloned()
        .collect();
    (out, inc)
}

fn user(env: &Env, tenant: &str, name: &str, phone: Option<&str>) -> Account {
    accounts::create_user(
        &env.core,
        &Actor::cli(),
        tenant,
        NewUser {
            phone: phone.map(str::to_owned),
            ..new_user(name, Role::Subject)
        },
    )
    .unwrap()
}

fn files_scenario(env: &Env) {
    let core = &env.core;
    let cli = Actor::cli();
    let t = seed_tenant(core, "cdr");
    let tenant = t.tenant.id.as_str();
    // A user whose phone number calls in the mock data, written the UK way.
    let caller = user(env, tenant, "cdr-caller", Some("07914 459811"));
    // A user with extension 100, which the Asterisk test suite's calls dial.
    let ext = user(env, tenant, "cdr-ext", None);
    ingest::set_extension(core, &cli, &ext.subject_id, Some("100")).unwrap();

    let files = pbx_files();
    let first = ingest_files(env, tenant, &files);
    let expected: BTreeMap<String, (u64, u64, u64)> = [
        (MOCK, (218, 0, 0)),
        ("testsuite-buggy.csv", (0, 0, 1)),
        ("testsuite-good.csv", (5, 0, 0)),
        ("json-cdr-fs16.json", (1, 0, 0)),
        ("xml-cdr-error-call.xml", (1, 0, 0)),
    ]
    .into_iter()
    .map(|(f, c)| (f.to_owned(), c))
    .collect();
    assert_eq!(by_file(&first), expected);
    assert_eq!(
        (first.accepted, first.duplicate, first.rejected),
        (225, 0, 1)
    );
    // The parser agrees on every file: good rows are records, bad rows errors.
    for f in &files {
        let (ok, bad) =
            steward_cdr::parse_file(f)
                .unwrap()
                .fold((0u64, 0u64), |(o, b), r| match r {
                    Ok(_) => (o + 1, b),
                    Err(_) => (o, b + 1),
                });
        let name = name_of(f.to_str().unwrap()).to_owned();
        assert_eq!((expected[&name].0, expected[&name].2), (ok, bad), "{name}");
    }
    // The bad row is named by file and line, and quarantined (without its bytes).
    let buggy = first
        .files
        .iter()
        .find(|f| f.file.ends_with("testsuite-buggy.csv"))
        .unwrap();
    assert_eq!(buggy.format.as_deref(), Some("asterisk-csv"));
    assert_eq!(buggy.errors.len(), 1);
    assert_eq!(buggy.errors[0].line, 1);
    assert!(
        buggy.errors[0].reason.contains("unterminated"),
        "{:?}",
        buggy.errors
    );
    let quarantined = env
        .core
        .db
        .read(|c| {
            c.query(
                "SELECT source, line, reason FROM cdr_quarantine WHERE tenant_id = $1",
                params![tenant],
            )
        })
        .unwrap();
    assert_eq!(quarantined.len(), 1);
    assert!(
        quarantined[0]
            .text(0)
            .unwrap()
            .ends_with("testsuite-buggy.csv")
    );
    assert_eq!(quarantined[0].i64(1).unwrap(), 1);
    let stored = |env: &Env| {
        count(
            env,
            "SELECT COUNT(*) FROM call_records WHERE tenant_id = $1",
            params![tenant],
        )
    };
    assert_eq!(stored(env), 225);

    // Sending everything again adds nothing: every record is a duplicate.
    let second = ingest_files(env, tenant, &files);
    assert_eq!(
        (second.accepted, second.duplicate, second.rejected),
        (0, 225, 1)
    );
    assert_eq!(second.subjects_created, 0, "parties are found again");
    assert_eq!(stored(env), 225);
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM cdr_quarantine WHERE tenant_id = $1",
            params![tenant]
        ),
        1
    );

    // Two legs of one call (one uniqueid) are two records; the test suite's five
    // rows all share one uniqueid and differ only in billsec or disposition.
    let legs = |id: &str| {
        count(
            env,
            "SELECT COUNT(*) FROM call_records WHERE tenant_id = $1 AND leg_id = $2",
            params![tenant, id],
        )
    };
    assert_eq!(legs("1497952162.0"), 2);
    assert_eq!(legs("1231977075.0"), 5);

    // The user whose phone matches gets the records they made and received.
    let (out, inc) = mock_legs(MOCK_CALLER);
    assert!(!out.is_empty());
    let as_caller = count(
        env,
        "SELECT COUNT(*) FROM call_records WHERE caller_subject_id = $1",
        params![caller.subject_id.as_str()],
    );
    let as_callee = count(
        env,
        "SELECT COUNT(*) FROM call_records WHERE callee_subject_id = $1",
        params![caller.subject_id.as_str()],
    );
    assert_eq!(
        (as_caller as usize, as_callee as usize),
        (out.len(), inc.len())
    );
    // Every one of those rows opens with the user's key (ciphertexts of a value
    // that recurs are made once per run and re-used).
    let key = core.subject_key(&caller.subject_id).unwrap();
    let sealed = env
        .core
        .db
        .read(|c| {
            c.query(
                "SELECT caller_number_enc, caller_raw_enc FROM call_records WHERE caller_subject_id = $1",
                params![caller.subject_id.as_str()],
            )
        })
        .unwrap();
    assert_eq!(sealed.len(), out.len());
    for r in &sealed {
        let open = |i: usize, field: &str| {
            fields::open(&key, field, &caller.subject_id, &r.bytes(i).unwrap()).unwrap()
        };
        assert_eq!(open(0, "call_records.caller_number"), "+447914459811");
        assert_eq!(open(1, "call_records.caller_raw"), MOCK_CALLER);
    }
    // The extension user is the callee of the test suite's calls.
    assert_eq!(
        count(
            env,
            "SELECT COUNT(*) FROM call_records WHERE callee_subject_id = $1",
            params![ext.subject_id.as_str()]
        ),
        5
    );
    // The other party is an external subject, found through the blind index.
    let found = subjects::find(core, &cli, tenant, None, Some(MOCK_CALLEE)).unwrap();
    assert_eq!(found.len(), 1, "one subject per number");
    let other = subjects::read(core, &cli, &found[0], "administration").unwrap();
    assert_eq!(other.kind, SubjectKind::ExternalParty);
    assert_eq!(other.phone.as_deref(), Some("+447154139112"));
    let linked = count(
        env,
        "SELECT COUNT(*) FROM call_records WHERE caller_subject_id = $1 AND callee_subject_id = $2",
        params![caller.subject_id.as_str(), other.id.as_str()],
    );
    assert_eq!(
        linked as usize,
        out.iter()
            .filter(|r| r.callee_raw == MOCK_CALLEE.as_bytes())
            .count()
    );
    // A party that is not a number (FreeSWITCH's IMSI caller) is a subject too,
    // found again by its identifier on the second run.
    let xml_caller = env
        .core
        .db
        .read(|c| {
            c.query_opt(
                "SELECT caller_subject_id FROM call_records WHERE tenant_id = $1 AND \
                 source_format = 'freeswitch-xml'",
                params![tenant],
            )
        })
        .unwrap()
        .unwrap()
        .opt_text(0)
        .unwrap();
    assert!(xml_caller.is_some());

    // Usage for billing in June 2017 adds up the caller's calls and seconds.
    let usage = ingest::usage(core, &cli, tenant, "2017-06").unwrap();
    let mine = usage
        .accounts
        .iter()
        .find(|a| a.subject_id == caller.subject_id)
        .unwrap();
    let secs = |rs: &[steward_cdr::CallRecord]| rs.iter().map(|r| r.billsec).sum::<i64>();
    assert_eq!(mine.outgoing_calls as usize, out.len());
    assert_eq!(mine.incoming_calls as usize, inc.len());
    assert_eq!(mine.outgoing_billsec, secs(&out));
    assert_eq!(mine.billsec, secs(&out) + secs(&inc));
    assert_eq!(mine.minutes, (secs(&out) + secs(&inc) + 59) / 60);
    assert_eq!(
        usage.accounts.len(),
        6,
        "every account of the tenant is listed"
    );
    assert!(
        usage
            .accounts
            .iter()
            .filter(|a| a.subject_id != caller.subject_id)
            .all(|a| a.calls == 0)
    );
    // The tenant's admin may see it; its users, and other tenants' admins, may not.
    assert!(ingest::usage(core, &accounts::actor_for(&t.admin), tenant, "2017-06").is_ok());
    assert!(matches!(
        ingest::usage(core, &accounts::actor_for(&t.subject), tenant, "2017-06"),
        Err(steward::Error::Forbidden(_))
    ));
    let other_tenant = seed_tenant(core, "cdr-other");
    assert!(matches!(
        ingest::usage(
            core,
            &accounts::actor_for(&other_tenant.admin),
            tenant,
            "2017-06"
        ),
        Err(steward::Error::NotFound(_))
    ));
    assert!(matches!(
        ingest::ingest_files(
            core,
            &accounts::actor_for(&other_tenant.admin),
            tenant,
            &files,
            &Options::default(),
            &mut |_| {}
        ),
        Err(steward::Error::NotFound(_))
    ));
    // One audit entry per file (and one for the usage report), not one per row.
    let entries = steward::audit::list(&core.db, 0, 10_000, Some(tenant)).unwrap();
    let ingests = entries.iter().filter(|e| e.action == "ingest").count();
    assert_eq!(ingests, 10, "5 files, twice");
    assert!(entries.iter().any(|e| e.action == "process"
        && e.purpose.as_deref() == Some("billing")
        && e.category.as_deref() == Some("traffic_data")));
    assert!(steward::audit::verify(&core.db, &core.keys).unwrap().ok);
}

/// An Asterisk row, 18 columns; `None` times are empty unquoted fields.
#[allow(clippy::too_many_arguments)]
fn csv_row(
    src: &[u8],
    dst: &[u8],
    clid: &[u8],
    start: &str,
    answer: Option<&str>,
    end: &str,
    duration: i64,
    billsec: i64,
    uniqueid: &str,
    userfield: &[u8],
) -> Vec<u8> {
    let q = |b: &[u8]| {
        let mut out = b"\"".to_vec();
        for &c in b {
            if c == b'"' {
                out.push(b'"');
            }
            out.push(c);
        }
        out.push(b'"');
        out
    };
    let fields: Vec<Vec<u8>> = vec![
        q(b"acct-7"),
        q(src),
        q(dst),
        q(b"from-internal"),
        q(clid),
        q(&[b"SIP/", src, b"-00000001"].concat()),
        q(&[b"SIP/", dst, b"-00000002"].concat()),
        q(b"Dial"),
        q(&[b"SIP/trunk/", dst, b",30"].concat()),
        q(start.as_bytes()),
        answer.map(|a| q(a.as_bytes())).unwrap_or_default(),
        q(end.as_bytes()),
        duration.to_string().into_bytes(),
        billsec.to_string().into_bytes(),
        q(if answer.is_some() {
            b"ANSWERED"
        } else {
            b"NO ANSWER"
        }),
        q(b"DOCUMENTATION"),
        q(uniqueid.as_bytes()),
        q(userfield),
    ];
    let mut line = fields.join(&b","[..]);
    line.push(b'\n');
    line
}

const ROSA_PHONE: &str = "07700 900123";
const ROSA_E164: &str = "+447700900123";
const OTHER_E164: &str = "+441614960000";
/// A caller name in Latin-1, as old PBX configurations write it.
const LATIN1_NAME: &[u8] = b"Ren\xe9e Quarrington";

fn bundle(env: &Env, dpo: &Actor, subject: &str) -> BTreeMap<String, String> {
    bundle_from(&env.core, env, dpo, subject)
}

fn bundle_from(
    core: &steward::Steward,
    env: &Env,
    dpo: &Actor,
    subject: &str,
) -> BTreeMap<String, String> {
    let req = rights::create(
        core,
        dpo,
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
    rights::verify(core, dpo, &req.id, "known caller").unwrap();
    let out = env.dir.path().join(format!("bundle-{}.zip", req.id));
    export::for_request(core, dpo, &req.id, &out).unwrap();
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

fn rights_scenario(env: &Env) {
    let core = &env.core;
    let cli = Actor::cli();
    let t = seed_tenant(core, "cdr-rights");
    let tenant = t.tenant.id.as_str();
    let dpo = accounts::actor_for(&provider_staff(core, "cdr-staff-dpo", Role::Dpo));
    let rosa = user(env, tenant, "cdr-rosa", Some(ROSA_PHONE));
    let mut clid = b"\"".to_vec();
    clid.extend_from_slice(LATIN1_NAME);
    clid.extend_from_slice(b"\" <07700900123>");
    let mut file = csv_row(
        b"07700900123",
        b"0161 496 0000",
        &clid,
        "2026-11-02 09:00:00",
        Some("2026-11-02 09:00:05"),
        "2026-11-02 09:01:05",
        65,
        60,
        "1793610000.1",
        b"\xff\xfe note",
    );
    file.extend(csv_row(
        b"01614960000",
        b"07700900123",
        b"\"\" <01614960000>",
        "2026-11-03 10:00:00",
        None,
        "2026-11-03 10:00:20",
        20,
        0,
        "1793700000.7",
        b"",
    ));
    let path = env.dir.path().join("Master.csv");
    std::fs::write(&path, &file).unwrap();
    let r = ingest_files(env, tenant, std::slice::from_ref(&path));
    assert_eq!((r.accepted, r.rejected), (2, 0));
    let other = subjects::find(core, &cli, tenant, None, Some(OTHER_E164)).unwrap();
    assert_eq!(other.len(), 1);
    let other = other[0].clone();

    // Rosa's access bundle holds both calls from her side, as an itemised
    // bill shows them: the number she dialled and the caller ID she was shown
    // (the policy's default `other_parties = "show"`), and nothing else of the
    // other party: not their id, their raw number or their presented name.
    let files = bundle(env, &dpo, &rosa.subject_id);
    let calls_text = &files["data/call_records.json"];
    let calls: Vec<Json> = serde_json::from_str(calls_text).unwrap();
    assert_eq!(calls.len(), 2, "{calls_text}");
    assert!(
        !calls_text.contains(&other),
        "not the other party's id: {calls_text}"
    );
    assert!(
        !calls_text.contains("161 496") && !calls_text.contains("01614960000"),
        "nor their raw number"
    );
    for internal in [
        "tenant_id",
        "source_format",
        "ama_flags",
        "ingested_at",
        "leg_id",
        "subject_id",
    ] {
        assert!(!calls_text.contains(internal), "{internal} in {calls_text}");
    }
    // Oldest first.
    let made = &calls[0];
    assert_eq!(made["direction"], "outgoing", "{made}");
    assert_eq!(made["your_number"], ROSA_E164);
    assert_eq!(
        made["other_party_number"], OTHER_E164,
        "the number she dialled"
    );
    assert_eq!(made["billed_duration"], 60);
    assert_eq!(made["duration"], 65);
    assert!(
        made["started_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-02T"),
        "{made}"
    );
    // Channel names, dialplan data and the userfield are not kept (minimisation).
    for dropped in ["channel", "dst_channel", "last_data", "user_field"] {
        assert!(made.get(dropped).is_none(), "{dropped} in {made}");
    }
    // Bytes that are not UTF-8 come back exactly, as base64.
    let back = |v: &Json| steward::ingest::cdr::raw_bytes(v.as_str().unwrap());
    assert_eq!(back(&made["your_caller_name"]), LATIN1_NAME);
    assert_eq!(
        made["your_caller_name"],
        format!("base64:{}", Base64::encode_string(LATIN1_NAME))
    );
    let received = &calls[1];
    assert_eq!(received["direction"], "incoming", "{received}");
    assert_eq!(received["your_number"], ROSA_E164);
    assert_eq!(
        received["other_party_number"], OTHER_E164,
        "the caller ID she was shown"
    );
    // What is about the caller's end stays theirs.
    for theirs in ["ip_address", "roaming_network", "your_caller_name"] {
        assert_eq!(received[theirs], Json::Null, "{theirs} in {received}");
    }
    // The page a person reads has both calls, dated, with the dialled number.
    let index = &files["index.html"];
    assert!(
        index.contains("2026-11-02") && index.contains("2026-11-03"),
        "{index}"
    );
    assert!(index.contains(OTHER_E164) && index.contains("outgoing") && index.contains("incoming"));
    assert!(
        index.contains("1 min 05 s"),
        "durations in minutes and seconds"
    );

    // The policy can mask or leave out other parties' numbers instead.
    for (choice, expected) in [("mask", json!("**********000")), ("redact", Json::Null)] {
        let text = include_str!("../../../policy/default.toml").replace(
            "# were shown, as an itemised bill does: they already hold it (docs/POLICY.md).\nother_parties = \"show\"",
            &format!("other_parties = \"{choice}\""),
        );
        assert!(text.contains(&format!("other_parties = \"{choice}\"")));
        let path = env.dir.path().join(format!("policy-{choice}.toml"));
        std::fs::write(&path, text).unwrap();
        let core2 = env.reopen_with(|s| s.policy_file = Some(path.clone()));
        let files = bundle_from(&core2, env, &dpo, &rosa.subject_id);
        let calls: Vec<Json> = serde_json::from_str(&files["data/call_records.json"]).unwrap();
        assert_eq!(calls.len(), 2);
        for c in &calls {
            assert_eq!(c["other_party_number"], expected, "{choice}: {c}");
            assert_eq!(c["your_number"], ROSA_E164);
        }
        assert!(!files["index.html"].contains(OTHER_E164), "{choice}");
    }
    // The CSV has the same columns on every row (one header, then the rows).
    let csv = &files["data/call_records.csv"];
    let widths: Vec<usize> = csv
        .lines()
        .map(|l| {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(l.as_bytes())
                .records()
                .next()
                .map_or(0, |r| r.unwrap().len())
        })
        .collect();
    assert_eq!(widths.len(), 3, "{csv}");
    assert!(widths.iter().all(|w| *w == widths[0]), "{csv}");
    // The Article 15 summary names traffic data.
    assert!(files["article15.json"].contains("traffic_data"));

    // Erasing Rosa keeps both calls for the other party, readable by them.
    let req = rights::create(
        core,
        &dpo,
        NewRequest {
            subject: SubjectRef::Id(rosa.subject_id.clone()),
            kind: Kind::Erasure,
            channel: RequestChannel::Letter,
            received_on: time::OffsetDateTime::now_utc().date().to_string(),
            region: None,
            details: None,
        },
    )
    .unwrap();
    rights::verify(core, &dpo, &req.id, "passport").unwrap();
    let report = erase::for_request(core, &dpo, &req.id).unwrap();
    assert_eq!(report.pseudonymised.get("call_records"), Some(&2));
    let rows = core
        .db
        .read(|c| {
            c.query(
                "SELECT caller_subject_id, callee_subject_id, caller_number_enc, callee_number_enc, \
                 caller_raw_enc, caller_name_enc, callee_raw_enc FROM call_records \
                 WHERE tenant_id = $1 ORDER BY id",
                params![tenant],
            )
        })
        .unwrap();
    assert_eq!(rows.len(), 2);
    let key = core.subject_key(&other).unwrap();
    // Rosa called: her side is gone, the callee's number opens with their key.
    let r0 = &rows[0];
    assert_eq!(r0.opt_text(0).unwrap(), None);
    assert_eq!(r0.opt_text(1).unwrap().as_deref(), Some(other.as_str()));
    for col in [2, 4, 5] {
        assert_eq!(r0.opt_bytes(col).unwrap(), None, "column {col}");
    }
    assert!(r0.opt_bytes(6).unwrap().is_some());
    let sealed = r0.bytes(3).unwrap();
    assert_eq!(
        fields::open(&key, "call_records.callee_number", &other, &sealed).unwrap(),
        OTHER_E164
    );
    // The other party called Rosa.
    let r1 = &rows[1];
    assert_eq!(r1.opt_text(0).unwrap().as_deref(), Some(other.as_str()));
    assert_eq!(r1.opt_text(1).unwrap(), None);
    assert_eq!(r1.opt_bytes(3).unwrap(), None);
    assert_eq!(r1.opt_bytes(6).unwrap(), None);
    assert_eq!(
        fields::open(
            &key,
            "call_records.caller_number",
            &other,
            &r1.bytes(2).unwrap()
        )
        .unwrap(),
        OTHER_E164
    );
    // The other party's own bundle still has both calls.
    let theirs: Vec<Json> =
        serde_json::from_str(&bundle(env, &dpo, &other)["data/call_records.json"]).unwrap();
    assert_eq!(theirs.len(), 2);
    assert!(
        theirs
            .iter()
            .all(|c| c.to_string().contains(OTHER_E164) && !c.to_string().contains("7700900123"))
    );
    // A file that fits no layout Steward reads is refused, and nothing of it is kept.
    let before = count(env, "SELECT COUNT(*) FROM call_records", &[]);
    let custom = env.dir.path().join("custom-Master.csv");
    // cdr_custom with its own order: the start time first, then the numbers.
    let mut custom_rows = Vec::new();
    for i in 0..5 {
        custom_rows.extend(
            format!(
                "\"2026-11-0{} 10:00:00\",\"0770090012{i}\",\"01614960000\",\"hq\",\"\",\"SIP/a\",\
                 \"SIP/b\",\"Dial\",\"x\",\"acct\",,\"2026-11-01 10:00:20\",20,0,\"NO ANSWER\",\
                 \"DOCUMENTATION\",\"17000.{i}\",\"\"\n",
                i + 1
            )
            .into_bytes(),
        );
    }
    std::fs::write(&custom, custom_rows).unwrap();
    let refused = ingest_files(env, tenant, std::slice::from_ref(&custom));
    assert_eq!(refused.refused_files, 1);
    let why = refused.files[0].refused.clone().unwrap();
    assert!(
        why.contains("not an Asterisk cdr_csv file") && why.contains("cdr_custom"),
        "{why}"
    );
    assert!(
        !why.contains("07700900"),
        "the message quotes no value: {why}"
    );
    assert_eq!(count(env, "SELECT COUNT(*) FROM call_records", &[]), before);
}

#[test]
fn call_records_on_sqlite() {
    let env = Env::sqlite();
    files_scenario(&env);
    rights_scenario(&env);
    // No number, name, address or identifier from the files is stored in clear.
    for needle in [
        "7914459811",
        MOCK_CALLER,
        MOCK_CALLEE,
        "7154139112",
        "Marget Biernacki",
        "7700900123",
        "1614960000",
        "IMSI510555550000087",
        "imsi510555550000087",
        "6281248174025",
        "10.10.10.100",
        "sofia/internal/1001",
        "Quarrington",
    ] {
        let hits = common::files_containing(env.data_dir(), needle);
        assert!(hits.is_empty(), "{needle:?} in {hits:?}");
    }
}

#[test]
fn call_records_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    files_scenario(&env);
    rights_scenario(&env);
}

const BIN: &str = env!("CARGO_BIN_EXE_steward");

fn run(data: &Path, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Creates a tenant with the binary in a new data directory; returns its id.
fn cli_tenant(data: &Path) -> String {
    let (code, out, err) = run(
        data,
        &["admin", "create-tenant", "--name", "PBX Ltd", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let tenant: Json = serde_json::from_str(out.trim()).unwrap();
    tenant["id"].as_str().unwrap().to_owned()
}

#[test]
fn cli_prints_the_counts() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tenant = cli_tenant(&data);
    let files: Vec<String> = pbx_files()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut args = vec!["ingest", "cdr", "--tenant", &tenant, "--json"];
    args.extend(files.iter().map(String::as_str));
    let (code, out, err) = run(&data, &args);
    assert_eq!(code, 0, "{err}");
    // Not a terminal: no progress line (nothing to erase in a log file).
    assert!(!err.contains('\r') && !err.contains("rows/s"), "{err:?}");
    let first: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&first["accepted"], &first["duplicate"], &first["rejected"]),
        (&json!(225), &json!(0), &json!(1)),
        "{first}"
    );
    let (code, out, _) = run(&data, &args);
    assert_eq!(code, 0);
    let again: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(
        (&again["accepted"], &again["duplicate"], &again["rejected"]),
        (&json!(0), &json!(225), &json!(1))
    );
    // Text output names the bad row by file and line.
    let (code, out, _) = run(&data, &["ingest", "cdr", "--tenant", &tenant, &files[1]]);
    assert_eq!(code, 0);
    assert!(out.contains("testsuite-buggy.csv:1: unterminated"), "{out}");
    // A file in another layout: refused with a message that says so, exit 2.
    let custom = dir.path().join("Master.csv");
    std::fs::write(&custom, "id,src,dst\n1,2,3\n").unwrap();
    let (code, out, err) = run(
        &data,
        &[
            "ingest",
            "cdr",
            "--tenant",
            &tenant,
            "--json",
            custom.to_str().unwrap(),
        ],
    );
    assert_eq!(code, 2, "{out} {err}");
    assert!(err.contains("cdr_custom"), "{err}");
    let refused: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(refused["refused_files"], 1);
    // An unknown tenant is refused before anything is read.
    let (code, _, err) = run(&data, &["ingest", "cdr", "--tenant", "nope", &files[0]]);
    assert_eq!(code, 3, "{err}");
    // Usage for billing, as JSON.
    let (code, out, err) = run(
        &data,
        &["usage", "--tenant", &tenant, "--month", "2017-06", "--json"],
    );
    assert_eq!(code, 0, "{err}");
    let usage: Json = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(usage["month"], "2017-06");
    let (code, _, err) = run(&data, &["usage", "--tenant", &tenant, "--month", "June"]);
    assert_eq!(code, 2);
    assert!(err.contains("error: month:"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn api_takes_records_and_names_bad_fields() {
    let env = Env::sqlite();
    let core = env.core.clone();
    let t = seed_tenant(&core, "cdr-api");
    let server = Server::start(core.clone()).await;
    let admin = server.login(&t.admin.username).await;
    let path = format!("/api/v1/tenants/{}/cdrs", t.tenant.id);
    // The tenant's user answers extension 1001: calls to it are theirs.
    let ext_path = format!("/api/v1/subjects/{}/extension", t.subject.subject_id);
    let put_extension = |path: String, token: String, body: Json| {
        let server = &server;
        async move { server.call("PUT", &path, Some(&token), Some(body)).await }
    };
    let (s, body) = put_extension(
        ext_path.clone(),
        admin.clone(),
        json!({"extension": "1001"}),
    )
    .await;
    assert_eq!(s, 204, "{body}");
    // Malformed or refused extensions: 400 naming the field, 403, 409.
    for (bad, status, field) in [
        (json!({"extension": "anonymous"}), 400, Some("extension")),
        (
            json!({"extension": "+44 7700 900123"}),
            400,
            Some("extension"),
        ),
        (json!({"extension": ""}), 400, Some("extension")),
        (json!({"extension": "9".repeat(65)}), 400, Some("extension")),
        (json!({"extension": 1001}), 400, Some("extension")),
        (json!({"ext": "1001"}), 400, None),
        // Clearing is an explicit null, never a missing field.
        (json!({}), 400, Some("extension")),
    ] {
        let (s, body) = put_extension(ext_path.clone(), admin.clone(), bad.clone()).await;
        assert_eq!(s, status, "{bad} → {body}");
        if let Some(f) = field {
            assert_eq!(body["error"]["field"], f, "{bad} → {body}");
        }
    }
    let other = format!("/api/v1/subjects/{}/extension", t.admin.subject_id);
    let (s, body) = put_extension(other, admin.clone(), json!({"extension": "1001"})).await;
    assert_eq!(s, 409, "one extension, one user: {body}");
    let call = json!({
        "leg_id": "api-1", "caller": "+44 7700 900456", "callee": "1001",
        "start": 1_793_610_000, "answer": 1_793_610_004, "end": 1_793_610_064,
        "ip_address": "203.0.113.7", "roaming_network": "234-15", "data_bytes": 48_000,
    });
    let (s, body) = server
        .call("POST", &path, Some(&admin), Some(call.clone()))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicate"], &body["rejected"]),
        (&json!(1), &json!(0), &json!(0))
    );
    let (s, body) = server
        .call("POST", &path, Some(&admin), Some(call.clone()))
        .await;
    assert_eq!(
        (s, &body["accepted"], &body["duplicate"]),
        (200, &json!(0), &json!(1))
    );
    let mut second = call.clone();
    second["leg_id"] = json!("api-2");
    let (s, body) = server
        .call("POST", &path, Some(&admin), Some(json!([call, second])))
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(
        (&body["accepted"], &body["duplicate"]),
        (&json!(1), &json!(1))
    );

    // Malformed input: 400, and the field at fault is named.
    let with = |k: &str, v: Json| {
        let mut c = call.clone();
        c[k] = v;
        c
    };
    let without = |k: &str| {
        let mut c = call.clone();
        c.as_object_mut().unwrap().remove(k);
        c
    };
    let cases: Vec<(Json, &str)> = vec![
        (with("start", json!("yesterday")), "start"),
        (without("callee"), "callee"),
        (with("end", json!(1_793_609_000)), "end"),
        (with("ip_address", json!("300.1.1.1")), "ip_address"),
        (with("disposition", json!("HUNG UP")), "disposition"),
        (
            with("roaming_network", json!("Vodafone UK")),
            "roaming_network",
        ),
        (json!([call, with("billsec", json!(-1))]), "[1].billsec"),
        (json!([call, with("start", json!(true))]), "[1].start"),
        (json!([call, with("colour", json!("red"))]), "[1]"),
    ];
    for (body_in, field) in cases {
        let (s, body) = server
            .call("POST", &path, Some(&admin), Some(body_in.clone()))
            .await;
        assert_eq!(s, 400, "{body_in} → {body}");
        assert_eq!(body["error"]["code"], "invalid", "{body}");
        let named = body["error"]["field"].as_str().unwrap_or_default();
        assert!(
            named.starts_with(field),
            "{body_in}: field {named:?}, want {field}: {body}"
        );
    }
    let (s, body) = server
        .raw(
            "POST",
            &path,
            Some(&admin),
            "application/json",
            b"{\"caller\": ".to_vec(),
        )
        .await;
    assert_eq!(s, 400, "{body}");
    // Nothing of the refused requests was stored.
    let n = env
        .core
        .db
        .read(|c| c.query_opt("SELECT COUNT(*) FROM call_records", &[]))
        .unwrap()
        .unwrap()
        .i64(0)
        .unwrap();
    assert_eq!(n, 2);
    // A tenant's user may not send records; the usage route answers the admin.
    let usage_path = format!("/api/v1/tenants/{}/usage?month=2026-11", t.tenant.id);
    let user = server.login(&t.subject.username).await;
    let (s, _) = server
        .call("POST", &path, Some(&user), Some(call.clone()))
        .await;
    assert_eq!(s, 403);
    let (s, body) = server.call("GET", &usage_path, Some(&admin), None).await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["accounts"].as_array().unwrap().len(), 4);
    // The two stored legs to extension 1001 (60 s and 48,000 bytes each) are
    // the user's; nobody else has any.
    let mine = body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["subject_id"] == t.subject.subject_id.as_str())
        .unwrap();
    assert_eq!(
        (
            &mine["calls"],
            &mine["incoming_calls"],
            &mine["billsec"],
            &mine["minutes"],
            &mine["data_bytes"]
        ),
        (&json!(2), &json!(2), &json!(120), &json!(2), &json!(96_000)),
        "{body}"
    );
    assert!(
        body["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["subject_id"] != t.subject.subject_id.as_str())
            .all(|a| a["calls"] == 0 && a["data_bytes"] == 0),
        "{body}"
    );
    // A user may not set extensions; cleared, the extension links no later call
    // to its former user.
    let (s, _) = put_extension(ext_path.clone(), user.clone(), json!({"extension": "1002"})).await;
    assert_eq!(s, 403);
    let (s, _) = put_extension(ext_path.clone(), admin.clone(), json!({"extension": null})).await;
    assert_eq!(s, 204);
    let mut later = call.clone();
    later["leg_id"] = json!("api-3");
    let (s, body) = server.call("POST", &path, Some(&admin), Some(later)).await;
    assert_eq!((s, &body["accepted"]), (200, &json!(1)), "{body}");
    let (_, body) = server.call("GET", &usage_path, Some(&admin), None).await;
    let calls = body["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["subject_id"] == t.subject.subject_id.as_str())
        .unwrap()["calls"]
        .clone();
    assert_eq!(calls, json!(2), "{body}");
    let (s, body) = server
        .call(
            "GET",
            &format!("/api/v1/tenants/{}/usage?month=11-2026", t.tenant.id),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!((s, body["error"]["field"].as_str()), (400, Some("month")));
}

#[test]
fn numbers_are_read_in_the_configured_default_region() {
    let env = Env::sqlite();
    let t = seed_tenant(&env.core, "cdr-region");
    let tenant = t.tenant.id.as_str();
    let cli = Actor::cli();
    // The same national number, as a PBX in the US and one in the UK write it.
    let record = |leg: &str| -> ingest::NewCallRecord {
        serde_json::from_value(json!({
            "leg_id": leg, "caller": "(202) 555-0143", "callee": "020 7946 0000",
            "start": 1_793_610_000, "end": 1_793_610_060,
        }))
        .unwrap()
    };
    let us = env.reopen_with(|s| s.default_region = "US".into());
    ingest::ingest_records(&us, &cli, tenant, &[record("us-1")], false).unwrap();
    // In the US the caller is +1 202 555 0143, found by its E.164 form; the
    // callee, not a US number, is kept as written (a PBX identifier).
    let found = subjects::find(&us, &cli, tenant, None, Some("+1 202 555 0143")).unwrap();
    assert_eq!(found.len(), 1);
    let caller = subjects::read(&us, &cli, &found[0], "administration").unwrap();
    assert_eq!(caller.phone.as_deref(), Some("+12025550143"));
    assert!(
        subjects::find(&us, &cli, tenant, None, Some("+44 20 7946 0000"))
            .unwrap()
            .is_empty()
    );
    // Read in the UK (the default), 020 7946 0000 is London's +44 20 7946 0000.
    ingest::ingest_records(&env.core, &cli, tenant, &[record("gb-1")], false).unwrap();
    let found = subjects::find(&env.core, &cli, tenant, None, Some("+44 20 7946 0000")).unwrap();
    assert_eq!(found.len(), 1);
    let callee = subjects::read(&env.core, &cli, &found[0], "administration").unwrap();
    assert_eq!(callee.phone.as_deref(), Some("+442079460000"));
}

#[test]
fn the_progress_line_shows_on_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let tenant = cli_tenant(&data);
    let file = pbx_files()[0].display().to_string();
    // util-linux `script` runs the command on a pseudo-terminal.
    let quote = |s: &str| format!("'{}'", s.replace('\'', r"'\''"));
    let command = format!(
        "{} --data-dir {} ingest cdr --tenant {} {}",
        quote(BIN),
        quote(&data.display().to_string()),
        quote(&tenant),
        quote(&file)
    );
    let shown = std::process::Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("STEWARD_MASTER_KEY")
        .output()
        .expect("util-linux script runs");
    assert!(shown.status.success(), "{shown:?}");
    let screen = String::from_utf8_lossy(&shown.stdout);
    let name = std::path::Path::new(&file)
        .file_name()
        .unwrap()
        .to_string_lossy()
        .into_owned();
    // A line drawn in place ("\r", erase to the end), naming the file, then
    // erased again before the summary.
    assert!(
        screen.contains(&format!("\r\x1b[K[1/1] {name} [")) && screen.contains(" rows/s"),
        "{screen:?}"
    );
    assert!(screen.contains("accepted"), "{screen:?}");
}

/// Two requests giving one extension to two users at the same moment: exactly
/// one wins, the other is told 409 (on PostgreSQL the check and the write of
/// each run under a per-tenant lock; SQLite has one writer).
fn one_extension_one_user_under_concurrency(env: &Env) {
    let t = seed_tenant(&env.core, "ext-race");
    let admin = accounts::actor_for(&t.admin);
    let users = [t.subject.subject_id.as_str(), t.dpo.subject_id.as_str()];
    for round in 0..20 {
        let ext = format!("7{round:03}");
        let barrier = std::sync::Barrier::new(users.len());
        let results: Vec<Result<(), steward::Error>> = std::thread::scope(|s| {
            let threads: Vec<_> = users
                .iter()
                .map(|user| {
                    let (admin, ext, barrier) = (&admin, &ext, &barrier);
                    s.spawn(move || {
                        barrier.wait();
                        ingest::set_extension(&env.core, admin, user, Some(ext))
                    })
                })
                .collect();
            threads.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let won = results.iter().filter(|r| r.is_ok()).count();
        let refused = results
            .iter()
            .filter(|r| matches!(r, Err(steward::Error::Conflict(_))))
            .count();
        assert_eq!((won, refused), (1, 1), "round {round}: {results:?}");
    }
}

#[test]
fn one_extension_one_user_on_sqlite() {
    one_extension_one_user_under_concurrency(&Env::sqlite());
}

#[test]
fn one_extension_one_user_on_postgres() {
    let Some(env) = Env::postgres() else { return };
    one_extension_one_user_under_concurrency(&env);
}
