//! FreeSWITCH mod_json_cdr and mod_xml_cdr: the real samples and variations on them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use steward_cdr::{
    CallRecord, Disposition, Format, RowError, freeswitch_json, freeswitch_xml, parse_file,
    raw_hash,
};

const JSON: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/freeswitch/json-cdr-fs16.json"
);
const XML: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/freeswitch/xml-cdr-error-call.xml"
);

fn split(
    items: impl Iterator<Item = Result<CallRecord, RowError>>,
) -> (Vec<CallRecord>, Vec<RowError>) {
    let (mut ok, mut err) = (Vec::new(), Vec::new());
    for item in items {
        match item {
            Ok(r) => ok.push(r),
            Err(e) => err.push(e),
        }
    }
    (ok, err)
}

fn json(bytes: &[u8]) -> (Vec<CallRecord>, Vec<RowError>) {
    split(freeswitch_json(bytes))
}

fn xml(bytes: &[u8]) -> (Vec<CallRecord>, Vec<RowError>) {
    split(freeswitch_xml(bytes))
}

fn sample(path: &str) -> String {
    std::fs::read_to_string(path).unwrap()
}

#[test]
fn json_sample_fs16() {
    let bytes = std::fs::read(JSON).unwrap();
    let (records, errors) = json(&bytes);
    assert_eq!((records.len(), errors.len()), (1, 0), "{errors:?}");
    let r = &records[0];
    assert_eq!(r.source_format, Format::FreeswitchJson);
    assert_eq!(r.line, 1);
    assert_eq!(
        r.leg_id.as_deref(),
        Some("3da8bf84-c133-4959-9e24-e72875cb33a1")
    );
    assert_eq!(
        r.linked_id.as_deref(),
        Some("3da8bf84-c133-4959-9e24-e72875cb33a1")
    );
    assert_eq!(r.account_code, None);
    assert_eq!(r.caller_raw, b"1001");
    assert_eq!(r.caller_name_raw.as_deref(), Some(&b"1001"[..]));
    assert_eq!(r.clid_raw.as_deref(), Some(&b"\"1001\" <1001>"[..]));
    assert_eq!(r.callee_raw, b"1002");
    assert_eq!(r.context.as_deref(), Some("default"));
    assert_eq!(
        r.channel.as_deref(),
        Some("sofia/internal/1001@10.10.10.204")
    );
    assert_eq!(
        r.dst_channel.as_deref(),
        Some("sofia/internal/1002@10.10.10.100:5060")
    );
    assert_eq!(r.last_app.as_deref(), Some("bridge"));
    assert_eq!(r.last_data.as_deref(), Some(&b"user/1002@10.10.10.204"[..]));
    // Epochs, not the *_stamp variables (local time: 11:25:44 is 10:25:44 UTC).
    assert_eq!(r.start, 1_515_666_344);
    assert_eq!(r.answer, Some(1_515_666_347));
    assert_eq!(r.end, 1_515_666_415);
    assert_eq!((r.duration_secs, r.billsec), (71, 68));
    assert_eq!(r.disposition, Disposition::Answered);
    assert_eq!(r.hangup_cause.as_deref(), Some("NORMAL_CLEARING"));
    assert_eq!(r.ip_address.as_deref(), Some("10.10.10.100"));
    assert_eq!(r.data_bytes, Some(572_588));
    assert_eq!(r.direction, None);
    assert_eq!(r.roaming_network, None);
    assert_eq!((r.ama_flags.clone(), r.user_field.clone()), (None, None));
    assert_eq!(r.csv_layout, None);
    // The file is exactly one object.
    assert_eq!(r.raw_hash, raw_hash(&bytes));
}

#[test]
fn json_duplicate_keys_keep_the_last_value() {
    let text = sample(JSON);
    // A key repeated inside `variables`, and a whole top-level member repeated.
    let text = text.replacen(
        "\"billsec\": \"68\",",
        "\"billsec\": \"1\",\n\t\t\"billsec\": \"68\",",
        1,
    );
    let text = text.replacen(
        "\"switchname\": \"FSDev1\",",
        "\"switchname\": \"FSDev1\",\n\t\"variables\": {\"uuid\": \"first\"},",
        1,
    );
    assert_eq!(text.matches("\"billsec\":").count(), 2);
    let (records, errors) = json(text.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(records[0].billsec, 68);
    assert_eq!(
        records[0].leg_id.as_deref(),
        Some("3da8bf84-c133-4959-9e24-e72875cb33a1")
    );

    // Both orders: the later one wins.
    let flipped =
        r#"{"variables": {"uuid": "b", "start_epoch": "10", "end_epoch": "20", "uuid": "a"}}"#;
    let (records, errors) = json(flipped.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(records[0].leg_id.as_deref(), Some("a"));
}

fn minimal(uuid: &str, extra: &str) -> String {
    format!(
        r#"{{"variables": {{"uuid": "{uuid}", "caller_id_number": "+441632960001", "destination_number": "+441632960002", "start_epoch": "1700000000", "answer_epoch": "0", "end_epoch": "1700000030", "duration": "30", "billsec": "0", "hangup_cause": "ORIGINATOR_CANCEL"{extra}}}}}"#
    )
}

#[test]
fn json_streams_of_records() {
    let a = minimal("a", "");
    let b = minimal("b", "");
    let concatenated = format!("{a}{b}");
    let per_line = format!("{a}\n{b}\n");
    let array = format!("[\n{a},\n{b}\n]\n");
    for input in [concatenated, per_line, array] {
        let (records, errors) = json(input.as_bytes());
        assert!(errors.is_empty(), "{errors:?}");
        let legs: Vec<_> = records.iter().map(|r| r.leg_id.clone().unwrap()).collect();
        assert_eq!(legs, ["a", "b"]);
        assert_eq!(records[0].raw_hash, raw_hash(a.as_bytes()));
        assert_eq!(records[0].disposition, Disposition::Cancel);
        assert_eq!(records[0].answer, None);
        assert_eq!(records[0].caller_raw, b"+441632960001");
    }
    let (records, _) = json(format!("{a}\n{b}\n").as_bytes());
    assert_eq!(records[1].line, 2);
}

#[test]
fn json_bad_records_do_not_cost_good_ones() {
    let good = |u: &str| minimal(u, "");
    let input = format!(
        "{}\n{}\nstray text\n{}\n{}\n{}\n",
        good("1"),
        r#"{"variables": {"uuid": "2", "start_epoch": "soon"}}"#,
        r#"{"variables": {"uuid": "3", "start_epoch": "1", "#, // never closed
        good("4"),
        r#"{"no_variables": true}"#,
    );
    let (records, errors) = json(input.as_bytes());
    let legs: Vec<_> = records.iter().map(|r| r.leg_id.clone().unwrap()).collect();
    assert_eq!(legs, ["1", "4"]);
    assert_eq!(records[1].line, 5);
    let lines: Vec<u64> = errors.iter().map(|e| e.line).collect();
    assert_eq!(lines, [2, 3, 4, 6], "{errors:#?}");
    assert!(
        errors[0]
            .reason
            .contains("start_epoch should be an integer"),
        "{}",
        errors[0]
    );
    assert!(!errors[0].reason.contains("soon"), "{}", errors[0]);
    assert!(
        errors[1].reason.contains("unexpected text"),
        "{}",
        errors[1]
    );
    assert!(errors[2].reason.contains("not closed"), "{}", errors[2]);
    assert!(
        errors[3].reason.contains("no \"variables\""),
        "{}",
        errors[3]
    );

    let truncated = &sample(JSON)[..5000];
    let (records, errors) = json(truncated.as_bytes());
    assert_eq!(records.len(), 0);
    assert_eq!(errors.len(), 1);
    assert!(errors[0].reason.contains("truncated"), "{}", errors[0]);
}

#[test]
fn json_old_style_callflow_numbers_and_url_encoding() {
    // FreeSWITCH 1.2: callflow is one object; numbers may be JSON numbers; values
    // URL-encoded (the module's default).
    let input = r#"{
  "channel_data": {"direction": "outbound"},
  "variables": {
    "uuid": "old-1", "call_uuid": "call-1",
    "start_epoch": 1400000000, "answer_epoch": 1400000005, "end_epoch": 1400000065,
    "billsec": 60, "duration": 65,
    "hangup_cause": "NORMAL_CLEARING",
    "caller_id": "%22Zo%C3%AB%20B%22%20%3C%2B15551230000%3E",
    "sip_from_user": "%2B15551230000",
    "channel_name": "sofia/external/%2B15551230000%40gw.example",
    "sip_received_ip": "192.0.2.7",
    "rtp_audio_in_media_bytes": "1000", "rtp_audio_out_media_bytes": "2000"
  },
  "callflow": {
    "profile_index": "1",
    "caller_profile": {"caller_id_name": "Zo\u00eb B", "destination_number": "+15551239999"},
    "times": {"created_time": "1400000000000000"}
  }
}"#;
    let (records, errors) = json(input.as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    let r = &records[0];
    assert_eq!(r.linked_id.as_deref(), Some("call-1"));
    assert_eq!(r.caller_raw, b"+15551230000");
    assert_eq!(r.caller_name_raw.as_deref(), Some("Zoë B".as_bytes()));
    assert_eq!(
        r.clid_raw.as_deref(),
        Some("\"Zoë B\" <+15551230000>".as_bytes())
    );
    assert_eq!(r.callee_raw, b"+15551239999");
    assert_eq!(
        r.channel.as_deref(),
        Some("sofia/external/+15551230000@gw.example")
    );
    assert_eq!(r.ip_address.as_deref(), Some("192.0.2.7"));
    assert_eq!(
        (r.start, r.answer, r.end),
        (1_400_000_000, Some(1_400_000_005), 1_400_000_065)
    );
    assert_eq!((r.duration_secs, r.billsec), (65, 60));
    assert_eq!(r.data_bytes, Some(3000));
    assert_eq!(r.direction.as_deref(), Some("outbound"));
}

#[test]
fn json_plus_is_never_a_space() {
    // Not encoded (raw '@' present): '+' and a lone '%' stay as written.
    let input = minimal(
        "p",
        r#", "sip_from_uri": "+4420@x", "caller_id_name": "100% A+B""#,
    );
    let (records, _) = json(input.as_bytes());
    assert_eq!(
        records[0].caller_name_raw.as_deref(),
        Some(&b"100% A+B"[..])
    );
    // Encoded (switch_url_encode writes %2B and %20, never '+'): decoded.
    let input = minimal("q", r#", "caller_id_name": "A%2BB%20C""#).replace("+44", "%2B44");
    let (records, _) = json(input.as_bytes());
    assert_eq!(records[0].caller_name_raw.as_deref(), Some(&b"A+B C"[..]));
    assert_eq!(records[0].caller_raw, b"+441632960001");
    // A raw '+' means the values were not encoded: nothing is decoded.
    let input = minimal("r", r#", "caller_id_name": "A%2BB""#);
    let (records, _) = json(input.as_bytes());
    assert_eq!(records[0].caller_name_raw.as_deref(), Some(&b"A%2BB"[..]));
}

#[test]
fn xml_sample_error_call_from_a_gsm_network() {
    let bytes = std::fs::read(XML).unwrap();
    let (records, errors) = xml(&bytes);
    assert_eq!((records.len(), errors.len()), (1, 0), "{errors:?}");
    let r = &records[0];
    assert_eq!(r.source_format, Format::FreeswitchXml);
    assert_eq!(r.line, 2);
    assert_eq!(
        r.leg_id.as_deref(),
        Some("0006a2fa-b032-43e8-9d70-708f363fe3b7")
    );
    assert_eq!(
        r.linked_id.as_deref(),
        Some("0006a2fa-b032-43e8-9d70-708f363fe3b7")
    );
    assert_eq!(r.caller_raw, b"IMSI510555550000087");
    assert_eq!(
        r.caller_name_raw.as_deref(),
        Some(&b"IMSI510555550000087"[..])
    );
    // URL-decoded.
    assert_eq!(
        r.clid_raw.as_deref(),
        Some(&b"\"IMSI510555550000087\" <IMSI510555550000087>"[..])
    );
    assert_eq!(
        r.channel.as_deref(),
        Some("sofia/openbts/IMSI510555550000087@127.0.0.1:5062")
    );
    assert_eq!(r.callee_raw, b"6281248174025");
    assert_eq!(r.context.as_deref(), Some("default"));
    assert_eq!(r.dst_channel, None);
    assert_eq!(r.last_app.as_deref(), Some("hangup"));
    assert_eq!(r.last_data, None);
    assert_eq!(r.start, 1_423_742_585);
    assert_eq!(r.answer, Some(1_423_742_586));
    assert_eq!(r.end, 1_423_742_586);
    assert_eq!((r.duration_secs, r.billsec), (1, 0));
    // Answered (an announcement was played), billed nothing.
    assert_eq!(r.disposition, Disposition::Answered);
    assert_eq!(r.hangup_cause.as_deref(), Some("NORMAL_CLEARING"));
    assert_eq!(r.ip_address.as_deref(), Some("127.0.0.1"));
    // P-Access-Network-Info: 3GPP-GERAN; cgi-3gpp=5105503e8000a -> MCC 510, MNC 55.
    assert_eq!(r.roaming_network.as_deref(), Some("510-55"));
    assert_eq!(r.data_bytes, Some(0));
    assert_eq!(r.direction.as_deref(), Some("inbound"));

    let text = std::str::from_utf8(&bytes).unwrap();
    let element = &text[text.find("<cdr").unwrap()..text.rfind("</cdr>").unwrap() + 6];
    assert_eq!(r.raw_hash, raw_hash(element.as_bytes()));
}

#[test]
fn xml_streams_entities_and_bad_documents() {
    let one = |uuid: &str, cause: &str| {
        format!(
            "<cdr core-uuid=\"x\">\n  <variables>\n    <uuid>{uuid}</uuid>\n    <start_epoch>1500000000</start_epoch>\n    <end_epoch>1500000009</end_epoch>\n    <hangup_cause>{cause}</hangup_cause>\n    <caller_id_name>A &amp; B &#x2B;1</caller_id_name>\n    <caller_id_number>+15550001111</caller_id_number>\n    <empty/>\n  </variables>\n  <callflow profile_index=\"1\"><caller_profile><destination_number>100</destination_number></caller_profile></callflow>\n  <callflow profile_index=\"2\"><caller_profile><destination_number>200</destination_number><originatee><originatee_caller_profile><destination_number>999</destination_number></originatee_caller_profile></originatee></caller_profile></callflow>\n</cdr>\n"
        )
    };
    let input = format!(
        "<?xml version=\"1.0\"?>\n{}<cdr><variables><uuid>broken</wrong></variables></cdr>\n{}",
        one("a", "USER_BUSY"),
        one("b", "NO_ROUTE_DESTINATION")
    );
    let (records, errors) = xml(input.as_bytes());
    let legs: Vec<_> = records.iter().map(|r| r.leg_id.clone().unwrap()).collect();
    assert_eq!(legs, ["a", "b"], "{errors:?}");
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].line, 15);
    assert!(errors[0].reason.contains("malformed XML"), "{}", errors[0]);
    assert_eq!(records[0].line, 2);
    assert_eq!(records[1].line, 16);
    let r = &records[0];
    // Not URL-encoded (raw '+' and '&'): kept as written, entities resolved.
    assert_eq!(r.caller_name_raw.as_deref(), Some(&b"A & B +1"[..]));
    assert_eq!(r.caller_raw, b"+15550001111");
    // The highest profile_index is the current caller profile; originatees are not it.
    assert_eq!(r.callee_raw, b"200");
    assert_eq!(r.disposition, Disposition::Busy);
    assert_eq!(records[1].disposition, Disposition::Failed);

    let truncated = &one("t", "NONE")[..120];
    let (records, errors) = xml(truncated.as_bytes());
    assert_eq!(records.len(), 0);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].reason.contains("ends inside <cdr>"),
        "{}",
        errors[0]
    );
}

#[test]
fn parse_file_reads_the_freeswitch_samples() {
    for (path, format) in [(JSON, Format::FreeswitchJson), (XML, Format::FreeswitchXml)] {
        let (records, errors) = split(parse_file(path).unwrap());
        assert_eq!((records.len(), errors.len()), (1, 0), "{path}: {errors:?}");
        assert_eq!(records[0].source_format, format);
    }
}

#[test]
fn resent_json_file_gives_the_same_key_and_repeats_are_numbered() {
    let bytes = std::fs::read(JSON).unwrap();
    let mut twice = bytes.clone();
    twice.push(b'\n');
    twice.extend_from_slice(&bytes);
    let (records, errors) = json(&twice);
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].raw_hash, records[1].raw_hash);
    assert_eq!((records[0].occurrence, records[1].occurrence), (0, 1));
    assert_eq!(
        records[1].line,
        bytes.iter().filter(|&&b| b == b'\n').count() as u64 + 2
    );
}

#[test]
fn freeswitch_records_export_as_asterisk_csv() {
    let (mut records, _) = json(&std::fs::read(JSON).unwrap());
    records.extend(xml(&std::fs::read(XML).unwrap()).0);
    let mut csv = Vec::new();
    steward_cdr::write_asterisk_csv(&records, &mut csv).unwrap();
    let (back, errors) = split(steward_cdr::asterisk_csv(&csv[..]));
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(back.len(), 2);
    for (fs, csv) in records.iter().zip(&back) {
        // linked_id is set, so the 21-column layout (with linkedid) is written.
        assert_eq!(csv.csv_layout.unwrap().columns, 21);
        assert_eq!(csv.leg_id, fs.leg_id);
        assert_eq!(csv.linked_id, fs.linked_id);
        assert_eq!(csv.caller_raw, fs.caller_raw);
        assert_eq!(csv.caller_name_raw, fs.caller_name_raw);
        assert_eq!(csv.callee_raw, fs.callee_raw);
        assert_eq!(
            (csv.start, csv.answer, csv.end),
            (fs.start, fs.answer, fs.end)
        );
        assert_eq!(
            (csv.duration_secs, csv.billsec),
            (fs.duration_secs, fs.billsec)
        );
        assert_eq!(csv.disposition, fs.disposition);
        assert_eq!(csv.ama_flags.as_deref(), Some("Unknown"));
    }
}

/// Found by the `freeswitch_json` and `freeswitch_xml` fuzz targets: a record ending
/// before it started was read with a negative duration, and a start time near the end
/// of `i64` plus a duration overflowed.
#[test]
fn times_out_of_order_and_negative_durations_are_row_errors() {
    let cases = [
        (
            r#", "end_epoch": "1699999000", "duration": null"#,
            "end time is before",
        ),
        (r#", "duration": "-30""#, "variables.duration"),
        (r#", "billsec": "-1""#, "variables.billsec"),
        (
            r#", "start_epoch": "9223372036854775800", "end_epoch": "0", "duration": "30""#,
            "out of range",
        ),
    ];
    for (extra, expected) in cases {
        let input = format!("{}\n{}\n", minimal("bad", extra), minimal("good", ""));
        let (records, errors) = json(input.as_bytes());
        assert_eq!(errors.len(), 1, "{extra}: {errors:?}");
        assert_eq!(errors[0].line, 1);
        assert!(
            errors[0].reason.contains(expected),
            "{extra}: {}",
            errors[0]
        );
        assert_eq!(
            records.len(),
            1,
            "the good record behind the bad one is read"
        );
    }
    // Negative media counters are left out, as other malformed ones are.
    let extra = r#", "rtp_audio_in_media_bytes": "-5", "rtp_audio_out_media_bytes": "100""#;
    let (records, errors) = json(minimal("a", extra).as_bytes());
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(records[0].data_bytes, Some(100));
    // The same rule in XML.
    let doc = "<cdr><variables><uuid>x</uuid><start_epoch>1700000000</start_epoch>\
               <end_epoch>1600000000</end_epoch></variables></cdr>\n";
    let (records, errors) = xml(doc.as_bytes());
    assert!(records.is_empty());
    assert!(
        errors[0].reason.contains("end time is before"),
        "{errors:?}"
    );
}

/// Found by the `freeswitch_xml` fuzz target: the line named for markup left open at the
/// end of the input depended on how the input arrived (one buffer, or a few bytes per
/// read). It is now the line where the bad markup begins.
#[test]
fn an_xml_error_names_the_same_line_however_the_input_arrives() {
    let doc = "<cdr><variables><uuid>a</uuid></variables></cdr>\n\n<!DOCTYPE x\nno end\nat all\n";
    let whole: Vec<_> = freeswitch_xml(doc.as_bytes()).collect();
    for step in 1..8 {
        let trickled: Vec<_> =
            freeswitch_xml(std::io::BufReader::with_capacity(step, doc.as_bytes())).collect();
        assert_eq!(whole, trickled, "read {step} bytes at a time");
    }
    let errors: Vec<_> = whole.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(
        errors
            .iter()
            .any(|e| e.line == 3 && e.reason.contains("at line 3")),
        "{errors:?}"
    );
}
